/*
 * Assertions for programmer errors.
 *
 * RFS_ASSERT(x) aborts with file and line when x is false, in every build:
 * a broken Raft invariant must stop the process rather than corrupt replicated
 * state. RFS_NEVER(x) guards a condition that should be impossible but is
 * handled anyway: it asserts in debug builds and evaluates to x in release
 * builds so the caller can take the defensive path.
 */
#ifndef RAFTFS_COMMON_ASSERT_H
#define RAFTFS_COMMON_ASSERT_H

#include <stdbool.h>

_Noreturn void rfs_assert_fail(const char *expr, const char *file, int line);

#define RFS_ASSERT(x)                                   \
    do {                                                \
        if (!(x)) {                                     \
            rfs_assert_fail(#x, __FILE__, __LINE__);    \
        }                                               \
    } while (0)

#ifdef NDEBUG
#define RFS_NEVER(x) (x)
#else
#define RFS_NEVER(x) \
    ((x) ? (rfs_assert_fail(#x, __FILE__, __LINE__), true) : false)
#endif

#endif /* RAFTFS_COMMON_ASSERT_H */
