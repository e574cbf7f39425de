/* rfs_strerror(): one table for raftfs codes, strerror() for the rest. */
#include "err.h"

#include <string.h>

const char *rfs_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
#define RFS_ERR_CASE(name, value, msg) \
    case name:                         \
        return msg;
        RFS_ERR_TABLE(RFS_ERR_CASE)
#undef RFS_ERR_CASE
    default:
        break;
    }
    if (code < 0 && code > -4096) {
        return strerror(-code);
    }
    return "unknown error";
}
