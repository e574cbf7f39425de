/* Assertion failure: print where, then abort so a core dump shows why. */
#include "assert.h"

#include <stdio.h>
#include <stdlib.h>

void rfs_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "raftfs: assertion failed: %s (%s:%d)\n", expr, file,
            line);
    fflush(stderr);
    abort();
}
