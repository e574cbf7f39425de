/*
 * raftfs error codes.
 *
 * Fallible functions across raftfs return an int: 0 on success, a negated
 * errno for OS-like failures (-EIO, -ENOSPC), or one of the RFS_E* codes
 * below. The raftfs codes live below -30000 so they can never collide with
 * an errno value; the table is defined once here and generates both the enum
 * and rfs_strerror().
 *
 * Caveats:
 * - Never a positive errno, never -1 (it reads as -EPERM), never errno
 *   itself: capture it and return -e.
 * - One documented exception: an apply's outcome (struct store_result's
 *   err, store/store.h) is 0 or a positive errno. It is a replicated value
 *   recorded in the sessions, not a failure of the call that carries it;
 *   the store's apply helpers (store/ops.c, xattr.c, sessions.c, locks.c)
 *   return it positive and keep negative for store failures, which abort
 *   the entry.
 * - fs/ maps these to a positive errno in exactly one place, fs_errno(),
 *   called through fs__reply_err() before replying to the kernel; anything
 *   unknown there becomes EIO. An op that decides an errno itself (EBADF,
 *   EACCES for a /.raftfs/ file opened for writing) may pass it straight
 *   to fuse_reply_err: nothing is mapped there.
 */
#ifndef RAFTFS_COMMON_ERR_H
#define RAFTFS_COMMON_ERR_H

#define RFS_ERRMSG_SZ 256

/* X(name, value, message) */
#define RFS_ERR_TABLE(X)                                                    \
    X(RFS_ENOTLEADER, -30001, "this node is not the leader")               \
    X(RFS_ENOLEADER, -30002, "no leader is known")                         \
    X(RFS_ESHUTDOWN, -30003, "shutting down")                              \
    X(RFS_ECORRUPT, -30004, "corrupted record")                            \
    X(RFS_EBUSY, -30005, "another change is in progress")                  \
    X(RFS_EBADCONF, -30006, "invalid configuration change")                \
    X(RFS_ECOMPACTED, -30007, "log entries were compacted away")           \
    X(RFS_EUNAVAIL, -30008, "log entries are not available")              \
    X(RFS_ETRANSFER, -30009, "leadership transfer in progress")            \
    X(RFS_ETOOBIG, -30010, "uncommitted log is over its size limit")       \
    X(RFS_EREMOVED, -30011, "this node was removed from the cluster")      \
    X(RFS_EMALFORMED, -30012, "malformed message")                         \
    X(RFS_ENOSNAP, -30013, "snapshot is not available")                    \
    X(RFS_EAUTH, -30014, "peer failed authentication")                     \
    X(RFS_EIDREMOVED, -30015, "this node id was removed; ids are never reused") \
    X(RFS_EFORGED, -30020, "entries fail their commit proof")

enum rfs_err {
#define RFS_ERR_ENUM(name, value, msg) name = (value),
    RFS_ERR_TABLE(RFS_ERR_ENUM)
#undef RFS_ERR_ENUM
};

/*
 * Human-readable text for a code returned by any raftfs function: a raftfs
 * code, a negated errno, or 0. Never returns NULL; the string is static.
 */
const char *rfs_strerror(int code);

#endif /* RAFTFS_COMMON_ERR_H */
