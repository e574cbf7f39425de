/*
 * store: everything raftfs keeps on disk, in one RocksDB database.
 *
 * Two halves share the database so that one WriteBatch can span them:
 *
 * - The Raft log and its metadata (column families "log" and "meta"): entries
 *   keyed by big-endian index, each stored with a CRC32C that is verified on
 *   every read; the hard state; the snapshot metadata. Log writes are synced
 *   WriteBatches, one per group of updates (group commit).
 * - The filesystem state machine (column families "inodes", "dentries",
 *   "chunks", "sessions", "xattrs", and "links" derived from "dentries";
 *   "history" is this node's change history): files and directories have
 *   cluster-wide inode ids
 *   (the index of the entry that created them, or an id its proposer chose
 *   in advance), directory entries map
 *   (parent, name) to an id, file contents live in 64 KiB chunks keyed by
 *   (id, chunk number), extended attributes are keyed by (id, name).
 *   Each applied entry is one WriteBatch holding the
 *   change, the applied index and the client's de-duplication record, so a
 *   crash at any point leaves a state equal to applying a prefix of the log.
 *
 * Commands (the payload of NORMAL log entries) are encoded by store_cmd_*
 * and decided at apply time only: every condition (EEXIST, ENOTEMPTY, ...) is
 * checked against the state at that index, identically on every node.
 *
 * Caveats:
 * - One writer thread: log writes, apply and snapshot install must not run
 *   concurrently with each other. Reads (store_*_get, readdir, read) are
 *   thread-safe and may run from any thread, concurrently with the writer.
 * - Errors are negative codes (see common/err.h); the store's errmsg (see
 *   store_errmsg) names the file, index or key concerned. Each function
 *   lists what it returns; two sets recur, named here once:
 *   - READ ERRORS: a RocksDB read or iterator failed, and store__rocks_err
 *     mapped its status: RFS_ECORRUPT ("Corruption"), -EACCES ("Permission
 *     denied"), -EINVAL ("Invalid argument"), -ENOSPC ("No space left"),
 *     -EIO (anything else).
 *   - WRITE ERRORS: -ENOSPC when free space is below the reserve (nothing
 *     is written and the store stays usable); or RocksDB's write failed,
 *     mapped as above (-EIO, -ENOSPC, RFS_ECORRUPT, -EACCES, -EINVAL),
 *     and from then on every write returns that same code (store_failed).
 *   Positive values are never returned; the one positive errno in this API
 *   is struct store_result's err, an apply's replicated outcome.
 * - Writes are refused with -ENOSPC while the disk has less free space than
 *   the reserve (min_free_bytes): nothing is written, and writes resume once
 *   space is freed. After any other write error, the store refuses further
 *   writes (store_failed() says why) until reopened: it never acknowledges
 *   anything that might not be durable.
 */
#ifndef RAFTFS_STORE_STORE_H
#define RAFTFS_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/entry.h"
#include "../common/types.h"

#define STORE_ROOT_INO 1
#define STORE_CHUNK_SIZE (64 * 1024)
#define STORE_NAME_MAX 255
#define STORE_SYMLINK_MAX 4095

/* Inode ids a proposer may choose (CREATE/MKDIR/SYMLINK with ino != 0):
 * bit 62 set, bit 63 clear. Index-derived ids stay below 2^62, and ids with
 * bit 63 set are free for a host's own virtual files. */
#define STORE_INO_CHOSEN (UINT64_C(1) << 62)
#define STORE_INO_CHOSEN_MASK (UINT64_C(3) << 62)

struct store;

/* The largest file size (and end of a write): the kernel's own limit for a
 * FUSE file (s_maxbytes, MAX_LFS_FILESIZE on 64-bit). Holes cost nothing:
 * what is bounded is the bytes a file stores (max_file_bytes). */
#define STORE_MAX_FILE_SIZE ((uint64_t)INT64_MAX)

struct store_options {
    uint64_t max_file_bytes; /* Bytes one file may store in its chunks:
                              * EFBIG past this (default 64 MiB). Decides
                              * apply results: the same on every node. */
    bool sync;               /* Sync log writes (default true; tests only). */
    uint64_t min_free_bytes; /* Refuse writes below this much free disk
                              * (default 128 MiB; 0 disables). */
    uint64_t history_entries; /* Change history kept: the changes of the
                               * last this many log entries (default
                               * 100,000; see store_history). This node's
                               * own bound, not a replicated decision. */
};

void store_options_default(struct store_options *o);

/*
 * Open (creating if needed) the database in directory dir. On failure
 * returns a negative code and fills errmsg (RFS_ERRMSG_SZ bytes).
 * Returns 0; -ENOMEM; mkdir(dir)'s negated errno (-EACCES, -ENOENT,
 * -ENOTDIR, -EROFS, ...); RocksDB's open status mapped as READ ERRORS
 * (another process holding the folder's LOCK is -EIO); RFS_ECORRUPT for a
 * folder written in another record format (or, with no format record,
 * whose root inode cannot be read);
 * READ ERRORS; WRITE ERRORS (creating the root, dropping old orphans).
 */
int store_open(const char *dir, const struct store_options *o,
               struct store **out, char *errmsg);
void store_close(struct store *s);

/* The last error's description (valid until the next call on s). */
const char *store_errmsg(const struct store *s);
/* Non-zero once a write failed: the code it failed with (RocksDB's status
 * as WRITE ERRORS maps it; a refusal below the reserve does not count). */
int store_failed(const struct store *s);

/* ---- The Raft log ----------------------------------------------------- */

/*
 * What a snapshot stands for: every entry up to and including index. conf
 * is the configuration in force at index, as the bytes the consensus
 * encoded it to (cons_conf_encode): the store keeps them without reading
 * them, so it knows nothing of configurations.
 */
struct store_snap_meta {
    rfs_index_t index;
    rfs_term_t term;
    uint64_t size;       /* Bytes of the snapshot image. */
    struct rfs_buf conf; /* Encoded configuration. */
};

/*
 * Everything the core needs at start. entries/n_entries: the log after the
 * snapshot, allocated here; snap.conf too (base NULL when no snapshot was
 * recorded); free both with store_loaded_free(). Every record is
 * checksum-verified; a bad one fails with RFS_ECORRUPT naming its index.
 * Returns 0; RFS_ECORRUPT (hard state, snapshot metadata or a log record
 * fails its checksum, a log key is malformed, or the log after the
 * snapshot has a gap); -ENOMEM; READ ERRORS. On failure *out holds nothing
 * to free.
 */
struct store_loaded {
    struct cons_hard_state hs;
    struct store_snap_meta snap;
    struct cons_entry *entries;
    unsigned n_entries;
    rfs_index_t applied;
};
int store_load(struct store *s, struct store_loaded *out);
void store_loaded_free(struct store_loaded *l);

/*
 * One synced write of a group of core updates: hard state (if hs != NULL),
 * then entries, which replace the stored log from entries[0].index on.
 * Returns 0, -ENOMEM, WRITE ERRORS (nothing of the group is stored).
 */
int store_log_write(struct store *s, const struct cons_hard_state *hs,
                    const struct cons_entry *entries, unsigned n);

/* Drop stored log entries up to and including upto (after a snapshot).
 * Returns 0, WRITE ERRORS. */
int store_log_compact(struct store *s, rfs_index_t upto);

/* Read one stored entry (verifying its checksum); caller frees data.base
 * with rfs_free. Returns 0, -ENOENT (not stored: compacted, or never
 * written), RFS_ECORRUPT (fails its checksum), -ENOMEM, READ ERRORS. */
int store_log_get(struct store *s, rfs_index_t index, struct cons_entry *e);

/* ---- Commands --------------------------------------------------------- */

enum store_op {
    STORE_OP_NOOP = 0,
    STORE_OP_CREATE,   /* parent, name, mode, uid, gid, flags, [data]. */
    STORE_OP_MKDIR,    /* parent, name, mode, uid, gid. */
    STORE_OP_SYMLINK,  /* parent, name, target (data), uid, gid. */
    STORE_OP_UNLINK,   /* parent, name. */
    STORE_OP_RMDIR,    /* parent, name. */
    STORE_OP_RENAME,   /* parent, name, new_parent, new_name, flags. */
    STORE_OP_WRITE,    /* ino, offset, data, flags (STORE_TRUNC first). */
    STORE_OP_SETATTR,  /* ino, valid, mode, uid, gid, size, atime, mtime. */
    STORE_OP_MKNOD,    /* parent, name, mode (S_IFIFO/S_IFSOCK/S_IFCHR/
                        * S_IFBLK | permissions), uid, gid, offset (rdev). */
    STORE_OP_LINK,     /* ino, parent, name: a new name for ino. */
    STORE_OP_SETXATTR, /* ino, name (the attribute's full name), data (its
                        * value), flags (STORE_XATTR_CREATE/REPLACE). */
    STORE_OP_REMOVEXATTR, /* ino, name. */
    STORE_OP_SESSION_OPEN, /* The proposer's (client, boot) opens its node
                            * session; offset: its TTL in ms (see "Node
                            * sessions" below). */
    STORE_OP_SESSION_END,  /* ino: a client, offset: its boot: end that
                            * session (its TTL ran out on the leader, or
                            * its node stops cleanly). */
    STORE_OP_PUT,      /* parent, name, data, mode, uid, gid, flags
                        * (STORE_IF_REVISION, STORE_KILL_PRIV), offset (the
                        * revision asked for): create the file or replace
                        * its whole content (raftfs put). */
    STORE_OP_LOCK,     /* ino, parent (lock owner), valid (STORE_LK_FLOCK or
                        * STORE_LK_POSIX), mode (STORE_LK_RD/WR/UN),
                        * offset..size (first and last byte, inclusive),
                        * uid (the holder's pid on its node), flags
                        * (STORE_LK_WAIT, STORE_LK_OFD), new_parent (flock:
                        * its order among the node's flock requests, or 0).
                        * See "Locks" below. */
    STORE_OP_LOCK_CANCEL, /* ino, parent, valid: drop the owner's waiter. */
    STORE_OP_MAX,
};

/* Flags. */
#define STORE_EXCL 0x1     /* CREATE: fail with EEXIST if the name exists. */
#define STORE_TRUNC 0x2    /* CREATE/WRITE: truncate to 0 first. */
#define STORE_NOREPLACE 0x4 /* RENAME_NOREPLACE. */
#define STORE_EXCHANGE 0x8  /* RENAME_EXCHANGE. */
#define STORE_APPEND 0x10   /* CREATE/WRITE: at the end of file as of apply
                             * time, so appends from several nodes never
                             * overwrite each other (O_APPEND, `>>`). */
#define STORE_KILL_PRIV 0x80 /* CREATE/WRITE with data or STORE_TRUNC,
                              * SETATTR with a size: the caller lacks
                              * CAP_FSETID, so apply clears setuid, and
                              * setgid if group-exec is set (Linux
                              * file_remove_privs), from the mode as of
                              * apply time. */
#define STORE_UMASK 0x100  /* CREATE, MKDIR, MKNOD: size holds the caller's
                            * umask (the kernel leaves it to us:
                            * FUSE_CAP_DONT_MASK); apply takes it from the
                            * new inode's mode unless the parent directory
                            * has a default ACL, which decides instead. */
#define STORE_IF_REVISION 0x200 /* PUT: only if the name's file still has
                                 * revision `offset` at apply time (0: only
                                 * if the name does not exist); ECANCELED
                                 * otherwise. */
#define STORE_XATTR_CREATE 0x20  /* SETXATTR: EEXIST if the name is set. */
#define STORE_XATTR_REPLACE 0x40 /* SETXATTR: ENODATA if it is not. */

/* Extended attributes (SETXATTR, REMOVEXATTR), decided at apply time.
 * Names: 1 to 255 bytes, else ERANGE; values: up to 64 KiB, else E2BIG
 * (man 2 setxattr, Linux's XATTR_NAME_MAX and XATTR_SIZE_MAX). Only the
 * "user." and "trusted." namespaces, security.capability and
 * system.posix_acl_access are stored (EOPNOTSUPP otherwise);
 * "user." only on files and directories (EPERM on other types, as ext4),
 * and "user.raftfs." is reserved for raftfs's own virtual names (EPERM).
 * Per inode, the names listed together (each with its NUL) fit in
 * STORE_XATTR_LIST_MAX, so listxattr can always return them, and names and
 * values together in STORE_XATTR_TOTAL_MAX: ENOSPC past either. */
#define STORE_XATTR_NAME_MAX 255
#define STORE_XATTR_SIZE_MAX 65536
#define STORE_XATTR_LIST_MAX 65536
#define STORE_XATTR_TOTAL_MAX (1024 * 1024)

/* A directory with this attribute set to "1" makes every regular file
 * created directly in it (CREATE) ephemeral: tied to its creator's node
 * session (client, boot), it is unlinked, on every node at the same index,
 * when that session ends. The one user.raftfs. name that is stored. */
#define STORE_EPHEMERAL_XATTR "user.raftfs.ephemeral"
/* ---- Locks ----
 * flock(2) and POSIX record locks, decided at apply time, keyed by (ino,
 * client, boot, lock owner): one exclusive holder or shared holders per
 * byte, granted in log order. flock and POSIX locks never conflict with
 * each other (as on Linux). A conflicting LOCK without STORE_LK_WAIT
 * fails with EAGAIN; with it, it is queued (result EINPROGRESS) and
 * granted by the apply of a later entry that frees the range, waiters in
 * arrival order (a waiter never overtakes an earlier one it conflicts
 * with). An unlock (STORE_LK_UN) also drops the owner's waiters of that
 * kind on ino. LOCK_CANCEL: ENOENT if the owner has no waiter there (it
 * was granted first). Each grant records the index that granted it (the
 * fencing token). A client's new boot drops its old boot's locks.
 *
 * Order (flock only): a node numbers its flock requests in the order its
 * callers made them (new_parent, increasing within a boot; 0 for none:
 * also while some member may run a build that does not know orders,
 * node_lock_orders).
 * An unlock then ends only the owner's holding and waiters that an
 * earlier request made, so an unlock that reaches the log after the
 * owner's next lock (two proposals of one node may land in either order)
 * leaves that lock alone. The node need not wait for an unlock to apply
 * before it sends the owner's next lock. POSIX ranges merge, so they get
 * no order: their node still waits. A LOCK_CANCEL carries the order of
 * the request it cancels and drops only the waiters of that request and
 * older ones, not those of the owner's next request. The store keeps, per
 * file and owner, the highest order an unlock or cancel applied with; a
 * lock request with an order at or below it (sent before that unlock, and
 * given up by its caller: a timeout, EINTR) applies as EINTR, holding and
 * queueing nothing, instead of granting a lock that nobody would release
 * before the session ends.
 *
 * Deadlocks (as Linux's F_SETLKW): a blocking POSIX request of a process
 * owner (not STORE_LK_OFD) fails with EDEADLK, at apply, when an owner
 * holding a conflicting range waits itself, directly or through other
 * waiting owners, for a range the requester's owner holds. The walk reads
 * only the replicated table: from the conflicting holders' owners to the
 * waiters of those owners (on any inode), to the holders those waiters
 * conflict with, and so on, at most STORE_LK_DL_DEPTH owners deep and
 * STORE_LK_DL_OWNERS owners in all, in key order; past either bound the
 * request waits (no verdict), as Linux gives up after 10 steps. flock
 * and OFD locks (STORE_LK_OFD) neither are checked nor carry the walk. */
#define STORE_LK_FLOCK 1
#define STORE_LK_POSIX 2 /* fcntl and OFD locks (FUSE does not tell
                          * them apart: both come with an owner). */
#define STORE_LK_RD 1
#define STORE_LK_WR 2
#define STORE_LK_UN 3
#define STORE_LK_WAIT 0x1
#define STORE_LK_OFD 0x2 /* The owner is an open file description, not a
                          * process: no deadlock detection (as Linux). */
#define STORE_LK_FORGET 0x4 /* An ordered flock unlock or cancel whose 'U'
                             * record goes once its node answered it
                             * (store/locks.c); sent only while every
                             * member knows it (node_lock_forget): older
                             * builds ignore the bit and keep the record,
                             * so every node must agree to drop it. */
#define STORE_LK_DL_DEPTH 10
#define STORE_LK_DL_OWNERS 64
#define STORE_LK_EOF UINT64_MAX

/* One entry of an inode's lock table. */
struct store_lock {
    rfs_nodeid_t client;
    uint64_t boot;
    uint64_t owner;
    uint8_t kind;  /* STORE_LK_FLOCK, STORE_LK_POSIX */
    uint8_t type;  /* STORE_LK_RD, STORE_LK_WR */
    uint64_t start, end; /* Inclusive; flock: 0..STORE_LK_EOF. */
    uint32_t pid;
    uint64_t revision; /* Holders: the index that granted it; waiters:
                        * the index of the request (arrival). */
    uint64_t order;    /* flock: the order of the request that made it
                        * (see "Order"), 0 if it had none. */
    bool waiting;
    bool ofd; /* Waiters: requested with STORE_LK_OFD. */
};
/* Whether a and b conflict: same kind, other owners, overlapping, one
 * of them exclusive. */
bool store_lock_conflicts(const struct store_lock *a,
                          const struct store_lock *b);
/* ino's holders (in key order) then waiters (in arrival order), in an
 * array allocated with rfs_malloc (NULL when empty). Any thread. 0,
 * -ENOMEM, RFS_ECORRUPT, READ ERRORS. */
int store_lock_list(struct store *s, uint64_t ino, struct store_lock **out,
                    size_t *n);

/* SETATTR valid bits. */
#define STORE_SET_MODE 0x1
#define STORE_SET_UID 0x2
#define STORE_SET_GID 0x4
#define STORE_SET_SIZE 0x8
#define STORE_SET_ATIME 0x10
#define STORE_SET_MTIME 0x20
#define STORE_SET_ATIME_NOW 0x40 /* With STORE_SET_ATIME: the entry's time
                                  * (utimensat UTIME_NOW, touch), so atime,
                                  * mtime and ctime agree to the ns. */
#define STORE_SET_MTIME_NOW 0x80 /* With STORE_SET_MTIME: likewise. */

/*
 * A filesystem command. Strings and data are borrowed when encoding and
 * point into the encoded buffer after decoding.
 */
struct store_cmd {
    /* Client identity: who asked, for exactly-once application. */
    rfs_nodeid_t client;
    uint64_t boot;
    uint64_t seq;
    uint64_t first_outstanding; /* Every seq below is answered: forget it. */
    int64_t time_ns;            /* Proposer's clock, for mtime/ctime. */
    uint8_t op;
    uint32_t flags;
    uint32_t valid;
    uint64_t ino;               /* WRITE, SETATTR, LINK, SETXATTR,
                                 * REMOVEXATTR; CREATE, MKDIR,
                                 * SYMLINK, MKNOD:
                                 * 0, or the id to give the new inode
                                 * (see STORE_INO_CHOSEN). */
    uint64_t parent;
    uint64_t new_parent;
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    uint64_t offset;            /* WRITE; MKNOD: the device number. */
    uint64_t size;              /* SETATTR; with STORE_UMASK, the umask. */
    int64_t atime_ns;
    int64_t mtime_ns;
    const char *name;           /* Not NUL-terminated after decode. */
    uint16_t name_len;
    const char *new_name;
    uint16_t new_name_len;
    const void *data;           /* WRITE/CREATE data, SYMLINK target,
                                 * SETXATTR value. */
    uint32_t data_len;
};

/* Encode into a buffer allocated with rfs_malloc. 0; -EINVAL (op is not a
 * STORE_OP_*, or a name is longer than STORE_NAME_MAX + 1 bytes); -ENOMEM. */
int store_cmd_encode(const struct store_cmd *c, struct rfs_buf *out);
/* Decode (no allocation). 0 or RFS_EMALFORMED (too short, another
 * version, an unknown op, or lengths that disagree with the buffer's). */
int store_cmd_decode(const struct rfs_buf *in, struct store_cmd *c);

/* ---- The state machine ------------------------------------------------ */

/*
 * The outcome of applying one entry: 0 or a positive errno, and the inode
 * the command created or changed (0 if none). err is positive, unlike every
 * return code: it is a replicated value, decided identically on every node
 * and recorded in the session (as a le32) for retries, not a failure of
 * this call (those are store_apply's negative returns). fs/ hands it to its
 * one mapping helper like any other code.
 *
 * err per op (names: check_name gives EINVAL for "", ".", "..", '/' or NUL
 * in a name and ENAMETOOLONG past STORE_NAME_MAX; "parent" gives ENOENT if
 * it is gone, ENOTDIR if not a directory; "handle" gives ESTALE if the
 * inode is gone; a chosen id gives EINVAL without STORE_INO_CHOSEN, EAGAIN
 * if taken; data past max_file_bytes or STORE_MAX_FILE_SIZE gives EFBIG):
 * - any op: ESTALE (request from an older boot than its session records,
 *   or a seq already forgotten); EINVAL (undecodable entry, unknown op);
 *   EROFS (its (client, boot) node session has ended: the node must open
 *   a new one under a new boot first).
 * - SESSION_OPEN: EINVAL (a TTL of 0).
 * - SESSION_END: ENOENT (no such live session: ended already, or
 *   replaced by a newer boot).
 * - CREATE: names, parent, chosen id, EEXIST (STORE_EXCL and the name
 *   exists, or it names a non-file), EISDIR (names a directory), EFBIG.
 * - MKDIR: names, parent, chosen id, EEXIST.
 * - SYMLINK: as MKDIR, and ENOENT (empty target), ENAMETOOLONG (target
 *   over STORE_SYMLINK_MAX).
 * - MKNOD: as MKDIR, and EINVAL (a type other than fifo, socket, char or
 *   block device, or data attached).
 * - UNLINK, RMDIR: names, parent, ENOENT, EISDIR (UNLINK of a directory),
 *   ENOTDIR (RMDIR of a non-directory), ENOTEMPTY.
 * - RENAME: names, parents, ENOENT, EINVAL (a directory into itself or its
 *   subtree, STORE_NOREPLACE with STORE_EXCHANGE), EEXIST (STORE_NOREPLACE), EISDIR, ENOTDIR,
 *   ENOTEMPTY.
 * - LINK: names, parent, EEXIST, ENOENT (ino gone or unlinked), EPERM (a
 *   directory), EMLINK (STORE_LINK_MAX).
 * - WRITE: handle, EISDIR, EINVAL (not a regular file), EFBIG.
 * - SETATTR: handle, and with a size: EISDIR, EINVAL (not a regular
 *   file), EFBIG.
 * - PUT: names, parent, EISDIR (names a directory), EINVAL (names
 *   another non-file), EFBIG, ECANCELED (STORE_IF_REVISION and the
 *   condition does not hold: nothing changes).
 * - SETXATTR, REMOVEXATTR: handle, and the rules above
 *   STORE_XATTR_NAME_MAX: ERANGE, EINVAL (a NUL in the name), EPERM,
 *   EOPNOTSUPP; SETXATTR also
 *   E2BIG, EEXIST, ENODATA, ENOSPC, and for an access ACL the rules of
 *   store_acl_check (EINVAL, E2BIG), and EACCES for a default ACL on
 *   other than a directory; REMOVEXATTR ENODATA (not for ACLs).
 *   E2BIG, EEXIST, ENODATA, ENOSPC; REMOVEXATTR ENODATA.
 * - LOCK: ESTALE (ino gone), EINVAL (bad kind, type or range), EAGAIN
 *   (conflict, no STORE_LK_WAIT), EINPROGRESS (queued: not an error, the
 *   queue changed), EDEADLK (STORE_LK_WAIT on a POSIX process lock that
 *   would close a cycle of waiting owners: see "Locks"). LOCK_CANCEL:
 *   ENOENT (no waiter: granted already).
 */
struct store_result {
    int err;
    uint64_t ino;
    bool duplicate; /* A retry of an applied request: first result returned. */
    uint32_t granted; /* Lock waiters (of any node) this entry granted: a
                       * host with waiters of its own looks them up. */
};

/*
 * Apply committed entries in order; entries at or below the applied index
 * are skipped (replay after a crash is idempotent). results[i] (may be
 * NULL) gets each entry's outcome. CONF and NOOP entries only advance the
 * applied index. Returns 0; -EINVAL (an entry is not the next index: a
 * gap, nothing applied from it on); READ ERRORS (deciding an entry),
 * -ENOMEM, WRITE ERRORS: nothing of the failed entry is applied, entries
 * before it are. A malformed command is not an error: it applies as EINVAL,
 * identically everywhere.
 */
int store_apply(struct store *s, const struct cons_entry *entries, unsigned n,
                struct store_result *results);

rfs_index_t store_applied(struct store *s);

enum store_type {
    STORE_FILE = 1,
    STORE_DIR = 2,
    STORE_SYMLINK = 3,
    STORE_FIFO = 4,
    STORE_SOCK = 5,
    STORE_CHR = 6, /* Character device: rdev is its number. */
    STORE_BLK = 7, /* Block device: rdev is its number. */
};

/* Most names one inode may have (LINK beyond it: EMLINK). ext4's limit,
 * so a tree copied from ext4 fits. */
#define STORE_LINK_MAX 65000

struct store_attr {
    uint64_t ino;
    uint8_t type; /* enum store_type */
    uint32_t mode; /* Permission bits only. */
    uint32_t uid;
    uint32_t gid;
    uint32_t nlink;
    uint64_t size;
    int64_t atime_ns;
    int64_t mtime_ns;
    int64_t ctime_ns;
    uint64_t revision; /* Index of the entry that last changed it. */
    uint64_t parent;   /* Directories: the parent directory. Files may
                        * have several names (nlink), so no parent. */
    uint64_t rdev;     /* STORE_CHR, STORE_BLK: the device number
                        * (dev_t as makedev() builds it); else 0. */
    uint64_t stored;   /* Files: bytes held in chunks (holes are not),
                        * kept at apply; st_blocks. */
};

/* A consistent read view (a RocksDB snapshot); NULL means "latest".
 * store_view_new returns NULL only when out of memory. */
struct store_view;
struct store_view *store_view_new(struct store *s);
void store_view_free(struct store *s, struct store_view *v);

/* Look up name in directory parent. 0, -ENOENT, -ENAMETOOLONG (over
 * STORE_NAME_MAX), RFS_ECORRUPT (a damaged entry or inode), READ ERRORS.
 * parent is not checked: a non-directory has no entries, so -ENOENT. */
int store_lookup(struct store *s, const struct store_view *v, uint64_t parent,
                 const char *name, size_t name_len, struct store_attr *out);
/* Attributes of ino. 0, -ENOENT, RFS_ECORRUPT, READ ERRORS. */
int store_getattr(struct store *s, const struct store_view *v, uint64_t ino,
                  struct store_attr *out);
/* Read up to len bytes at off; *got is set (short at end of file). 0,
 * -ENOENT, -EISDIR, RFS_ECORRUPT, READ ERRORS. */
int store_read(struct store *s, const struct store_view *v, uint64_t ino,
               uint64_t off, size_t len, void *buf, size_t *got);
/* A symlink's target: its full length in *len, up to cap bytes of it in
 * buf. 0, -ENOENT, -EINVAL (not a symlink), RFS_ECORRUPT, READ ERRORS. */
int store_readlink(struct store *s, const struct store_view *v, uint64_t ino,
                   char *buf, size_t cap, size_t *len);

/* List directory ino starting after name `after` (NULL: from the start).
 * cb returns non-zero to stop. Entries come in name order. 0 (also when
 * cb stops it, and for an ino that is not a directory: nothing listed),
 * RFS_ECORRUPT (a damaged entry, after cb saw the names before it), READ
 * ERRORS. */
typedef int (*store_dirent_cb)(void *arg, const char *name, size_t name_len,
                               uint64_t ino, uint8_t type);
int store_readdir(struct store *s, const struct store_view *v, uint64_t ino,
                  const char *after, size_t after_len, store_dirent_cb cb,
                  void *arg);

/*
 * Extended attribute `name` of ino: its value's length in *len, and up to
 * cap bytes of it copied to buf (buf may be NULL when cap is 0). Any
 * thread. 0, -ENOENT (no such inode), -ENODATA (no such attribute; also
 * for a name of 0 or over STORE_XATTR_NAME_MAX bytes, before ino is
 * looked up), RFS_ECORRUPT, READ ERRORS.
 */
int store_getxattr(struct store *s, const struct store_view *v, uint64_t ino,
                   const char *name, size_t name_len, void *buf, size_t cap,
                   size_t *len);
/*
 * Is (val, len) a security.capability value Linux accepts (the check of
 * its cap_convert_nscap): a revision 2 header in 20 bytes, or revision 3
 * (with the namespace's root uid) in 24. The store refuses others at apply
 * (EINVAL). Any thread.
 */
bool store_caps_valid(const void *val, size_t len);
/*
 * POSIX ACLs (system.posix_acl_access) in Linux's xattr format: a le32
 * version 2, then entries of le16 tag, le16 perm, le32 id. At apply an
 * access ACL sets the mode's permission bits (owner: USER_OBJ, group:
 * MASK if any, else GROUP_OBJ, others: OTHER), is not kept when it says
 * no more than the mode (no MASK, no named entry), and follows every
 * chmod (USER_OBJ, MASK or GROUP_OBJ, OTHER take the new bits). Not on a
 * symlink (EOPNOTSUPP). Removing an absent ACL succeeds. A default ACL
 * (system.posix_acl_default) is for directories only (EACCES, as the
 * kernel's vfs_set_acl), kept as given (the mode is not touched), and
 * inherited at create (CREATE, MKDIR, MKNOD; not SYMLINK): the new inode
 * gets it as its access ACL masked by the create mode (see
 * store_acl_create_mode), a new directory also as its default ACL, and
 * the umask (STORE_UMASK) is then not applied.
 */
#define STORE_ACL_ACCESS "system.posix_acl_access"
#define STORE_ACL_DEFAULT "system.posix_acl_default"
/* The kernel reads an ACL into one page (fs/fuse/acl.c): 4 + 8 * 511. */
#define STORE_ACL_MAX_ENTRIES 511
/*
 * Is (val, len) an ACL Linux accepts (its posix_acl_valid): version 2,
 * whole entries, at least one; perms within rwx; tags in order (USER_OBJ,
 * USER, GROUP_OBJ, GROUP, MASK, OTHER), named users and groups by
 * increasing id without repeats; exactly one USER_OBJ, GROUP_OBJ and
 * OTHER; a MASK when there is a named entry. 0, EINVAL, or E2BIG (more
 * than STORE_ACL_MAX_ENTRIES). Positive: an apply outcome. Any thread.
 */
int store_acl_check(const void *val, size_t len);
/*
 * The mode a new inode gets in a directory with the valid default ACL
 * (val, len), asked for with mode (POSIX's rule, Linux's
 * posix_acl_create_masq): the owner's bits are USER_OBJ and the mode's,
 * the group's MASK (GROUP_OBJ without one) and the mode's, the others'
 * OTHER and the mode's; bits above 0777 are kept. Any thread.
 */
uint32_t store_acl_create_mode(const void *val, size_t len, uint32_t mode);
/*
 * The permissions (a mask of 4 read, 2 write, 1 execute) that the valid
 * access ACL (val, len) gives a caller with uid and groups gids (its
 * primary group among them) on an inode owned by owner and group: the
 * owner's entry; else a named user's, masked; else the union of the
 * matching group entries (owning group and named), masked; else the
 * others'. The union is exact for one wanted bit; for several, Linux
 * asks that one entry grant them all. Any thread.
 */
unsigned store_acl_perm(const void *val, size_t len, uint32_t owner,
                        uint32_t group, uint32_t uid, const uint32_t *gids,
                        size_t ngids);
/*
 * The names of ino's extended attributes, each followed by a NUL, in name
 * order (listxattr's format): the list's length in *len, and as much of it
 * as fits in cap bytes copied to buf. Any thread. 0, -ENOENT,
 * RFS_ECORRUPT, READ ERRORS.
 */
int store_listxattr(struct store *s, const struct store_view *v,
                    uint64_t ino, char *buf, size_t cap, size_t *len);

/*
 * Node sessions. A session is a client's (client, boot) pair, opened by
 * STORE_OP_SESSION_OPEN and ended by STORE_OP_SESSION_END or by the first
 * applied command of a newer boot of the same client. Ending one unlinks
 * its ephemeral files (STORE_EPHEMERAL_XATTR); every change from an ended
 * session is then refused (EROFS) at apply, which fences a node that was
 * cut off past its TTL. A client that never opened a session is not
 * fenced (older nodes, tools). The table is replicated (in snapshots).
 *
 * store_sessions walks the latest session of each client: cb(arg, client,
 * boot, ttl_ms, live), in client order; cb returns non-zero to stop. Any
 * thread. 0, READ ERRORS.
 */
typedef int (*store_session_cb)(void *arg, rfs_nodeid_t client,
                                uint64_t boot, uint32_t ttl_ms, bool live);
int store_sessions(struct store *s, store_session_cb cb, void *arg);

/* Usage for statfs: files and bytes stored, from RocksDB's estimates.
 * Always 0 (an estimate it cannot give counts as 0). */
struct store_usage {
    uint64_t files;
    uint64_t bytes;
};
int store_usage(struct store *s, struct store_usage *u);

/* ---- Change history (store/history.c) --------------------------------- */

/*
 * Each applied entry that changes the tree leaves one record in this
 * node's history (column family "history", never in a snapshot): its
 * revision (the entry's index), what it did, and the path of what it
 * changed, from the root ("/a/b"), as the tree stood just before the
 * entry. Paths come from a reverse index of directory entries (column
 * family "links", derived from "dentries" and rebuilt from them at
 * snapshot install and on a store that lacks it). A change by inode
 * (write, truncate, setattr, setxattr, removexattr) on a file with several
 * names records its first name in (parent id, name) order. A path longer
 * than STORE_PATH_MAX is not recorded.
 *
 * Locks (store/locks.c) leave records too, on the locked file's path: a
 * LOCK for each grant (at the entry that asked, or at the later entry
 * that granted a queued waiter: the unlock, or the session end, before
 * it), an UNLOCK for each holding that the entry ended entirely (by its
 * owner, or by its holder's session end), with the holder. Releases come
 * before grants within an entry. Changes that leave the owner holding
 * part of its range (a POSIX unlock of a part, a flock upgrade or
 * downgrade by the same owner) record only the grant, if any. Queued
 * waiters and cancels change no holding and leave no record. A lock on a
 * file that has no name any more (unlinked, still open) is not recorded.
 *
 * Bounds: the records of the last store_options.history_entries log
 * entries are kept; the one that falls out is deleted as each entry
 * applies. A node that installed a snapshot has history only after the
 * snapshot's index. Both make up store_history's "compacted" answer.
 */
#define STORE_PATH_MAX 16384

/* Why a lock ended (STORE_CH_UNLOCK). */
enum store_lock_cause {
    STORE_LKC_UNLOCK = 1, /* Its owner unlocked it (or closed the file). */
    STORE_LKC_SESSION,    /* Its holder's node session ended. */
};

enum store_change_op {
    STORE_CH_CREATE = 1, /* A new file (also `put` of a new name). */
    STORE_CH_MKDIR,
    STORE_CH_WRITE,      /* Data written; a whole file replaced (put). */
    STORE_CH_TRUNCATE,   /* Size changed without data (O_TRUNC, truncate). */
    STORE_CH_SETATTR,    /* chmod, chown, utimens. */
    STORE_CH_UNLINK,
    STORE_CH_RMDIR,
    STORE_CH_RENAME,     /* path: the old name, path2: the new one. */
    STORE_CH_LINK,       /* path: the new name. */
    STORE_CH_SYMLINK,
    STORE_CH_MKNOD,
    STORE_CH_SETXATTR,
    STORE_CH_REMOVEXATTR,
    STORE_CH_LOCK,       /* A lock granted: holder says to whom. */
    STORE_CH_UNLOCK,     /* A lock released: holder, and lock_cause. */
    STORE_CH_MAX,
};
/* The stable lower-case name of op ("create", ...), "?" if unknown. */
const char *store_change_name(uint8_t op);

struct store_change {
    uint64_t revision;
    uint8_t op;            /* enum store_change_op */
    const char *path;      /* Not NUL-terminated. */
    uint32_t path_len;
    const char *path2;     /* RENAME: the new path; else NULL. */
    uint32_t path2_len;
    /* LOCK and UNLOCK: the holder (client, boot, owner, kind, type, start,
     * end; revision: the grant's index, which is the record's own for a
     * LOCK), and for UNLOCK why it ended. */
    struct store_lock holder;
    uint8_t lock_cause; /* enum store_lock_cause */
};
typedef int (*store_change_cb)(void *arg, const struct store_change *ch);

/*
 * Every recorded change with a revision above since, in order, from one
 * consistent view; cb returns non-zero to stop. *upto gets the applied
 * index of that view (everything up to it was seen, or cb stopped).
 * Any thread. Returns 0; RFS_ECOMPACTED (since is below *first, the
 * oldest revision the kept history can continue from: nothing listed);
 * -EINVAL (since is above the applied index); RFS_ECORRUPT; READ ERRORS.
 * first may be NULL. since STORE_HISTORY_NOW lists nothing and returns 0:
 * it only asks for *upto.
 */
#define STORE_HISTORY_NOW UINT64_MAX
int store_history(struct store *s, uint64_t since, store_change_cb cb,
                  void *arg, uint64_t *upto, uint64_t *first);

/*
 * The path of ino from the root ("/" for the root), as in the history:
 * for a file with several names, the first in (parent id, name) order.
 * Any thread. 0, -ENOENT (no such inode, or it has no name), -ENAMETOOLONG
 * (longer than cap), RFS_ECORRUPT, READ ERRORS.
 */
int store_path(struct store *s, const struct store_view *v, uint64_t ino,
               char *buf, size_t cap, size_t *len);

/* ---- Orphans: unlinked files still open on this node ------------------ */

/*
 * A file whose last name goes (unlink, rename over it) while this node
 * holds it open lives on here, and only here, until the host drops it at
 * the last close (ext4's orphan list is the model). The replicated state
 * is the same on every node; the orphan lives beside it, in a column
 * family that no snapshot includes, and store_open() empties it: after a
 * restart no descriptor is left to name it.
 *
 * keep is called on the writer thread, while an entry applies, before a
 * file's record and chunks are deleted; if it returns true, they are
 * copied into the orphan area in the same batch. It must not call the
 * store. fn NULL: nothing is kept.
 */
typedef bool (*store_keep_fn)(void *arg, uint64_t ino);
void store_set_keep(struct store *s, store_keep_fn fn, void *arg);

/* An orphan's attributes (nlink 0) and data. Any thread. 0, -ENOENT
 * (no such orphan), RFS_ECORRUPT, READ ERRORS. */
int store_orphan_getattr(struct store *s, uint64_t ino,
                         struct store_attr *out);
int store_orphan_read(struct store *s, uint64_t ino, uint64_t off,
                      size_t len, void *buf, size_t *got);
/*
 * Apply c to orphan c->ino on this node only (nobody else can name it): a
 * WRITE (STORE_TRUNC, STORE_APPEND as usual) or a SETATTR, with times from
 * now_ns. out (may be NULL) gets the attributes after. Any thread; orphan
 * changes are serialised. Returns 0, -ENOENT (no such orphan), -EFBIG,
 * -EINVAL (a command of another kind), -ENOMEM, RFS_ECORRUPT, READ
 * ERRORS, WRITE ERRORS.
 */
int store_orphan_change(struct store *s, const struct store_cmd *c,
                        int64_t now_ns, struct store_attr *out);
/* Forget orphan ino and its data (its last descriptor closed). 0, READ
 * ERRORS, WRITE ERRORS. */
int store_orphan_drop(struct store *s, uint64_t ino);
/* How many orphans this node holds (for status and tests). 0, READ
 * ERRORS. */
int store_orphan_count(struct store *s, uint64_t *n);

/* ---- Snapshots -------------------------------------------------------- */

/*
 * Write a point-in-time image of the state at the current applied index to
 * path (written to a temporary file, fsynced, renamed, directory fsynced).
 * The image is a deterministic function of the state: two nodes with the
 * same applied index produce the same bytes. *index and *size get the
 * image's applied index and length. Returns 0; the negated errno of
 * open, write, fsync or rename of the file or its folder (-ENOSPC,
 * -EDQUOT, -EIO, -EACCES, -ENOENT, ...; the temporary file is removed);
 * -ENOMEM; READ ERRORS. The store stays usable either way.
 */
int store_snapshot_write(struct store *s, const char *path,
                         rfs_index_t *index, uint64_t *size);
/* What an image is, for a statement vouching for it (consensus/gimage.h):
 * the chain hash at its applied index, read under the same RocksDB
 * snapshot as the dump (chain_known false if the state predates the
 * chain), and the BLAKE2b-256 of its bytes, hashed as they are written so
 * the image is not read a second time. */
struct store_snap_sums {
    bool chain_known;
    uint8_t chain[32]; /* STORE_CHAIN_BYTES */
    uint8_t image[32];
};
/* store_snapshot_write, and the sums of the image written into *sums. */
int store_snapshot_write_sums(struct store *s, const char *path,
                              rfs_index_t *index, uint64_t *size,
                              struct store_snap_sums *sums);

/*
 * Replace the whole state by the image at path (checksum-verified first),
 * drop the whole stored log, and record meta as the snapshot. Atomic: after
 * a crash either the old or the new state is found. Returns 0; the
 * negated errno of open, fstat or read of path (-ENOENT, -EACCES, -EIO; a
 * file shorter than fstat said is -EIO); -ENOMEM; RFS_ECORRUPT (the image
 * is damaged, or holds another index than meta: nothing changed); WRITE
 * ERRORS.
 */
int store_snapshot_install(struct store *s, const char *path,
                           const struct store_snap_meta *meta);

/*
 * The boot id of a new run of this node: one more than the last one handed
 * out, recorded (synced) in meta "boot" before it is returned, so boot ids
 * grow across restarts whatever the clock does. The session rule refuses a
 * request from an older boot than the one recorded (ESTALE), so a boot id
 * taken from a clock set back would make every write fail.
 *
 * A data folder without the counter (new, or from a version that used the
 * start time in nanoseconds) starts above both the largest boot id in its
 * sessions and now_ns (the caller's CLOCK_REALTIME): the old ids of this
 * node, recorded here or only on more up-to-date members, were start times
 * before now. Returns 0, RFS_ECORRUPT (a damaged record), READ ERRORS,
 * WRITE ERRORS.
 */
int store_boot_next(struct store *s, uint64_t now_ns, uint64_t *out);

/*
 * The id of this data folder: a random non-zero u64 made the first time it
 * is asked for (synced), the same for the folder's whole life. A folder
 * wiped or replaced gets another one, which is how peers tell that a node
 * came back without the votes and entries it had promised (see
 * store_peer_pin). 0, RFS_ECORRUPT (a damaged record), -EIO (getrandom
 * failed), READ ERRORS, WRITE ERRORS.
 */
int store_data_id(struct store *s, uint64_t *out);

/* ---- The chain ---------------------------------------------------------- */

/*
 * One hash that pins the whole committed log up to the applied index, in
 * order, for observers that hear entries from peers they cannot trust
 * (consensus/gossip.h): chain(i) = BLAKE2b-256("raftfs-chain-v1" |
 * chain(i-1) | le64 index | le64 term | type | le64 length | data), and
 * chain(0) = 32 zero bytes. Every entry counts, NOOP and CONF included.
 * It is part of the replicated state (written with each apply, carried by
 * snapshots), so nodes at the same index hold the same value.
 *
 * A folder whose state predates the chain (an older build, or a snapshot
 * image from one) does not know it: store_chain then says -ENOENT, and
 * goes on saying so; such a node cannot vouch for commit points, the
 * others can.
 */
#define STORE_CHAIN_BYTES 32
void store_chain_next(const uint8_t prev[STORE_CHAIN_BYTES],
                      const struct cons_entry *e,
                      uint8_t out[STORE_CHAIN_BYTES]);
/* chain(applied) into hash, and the applied index into *index. 0 or
 * -ENOENT (not known here, above). Writer thread, as store_apply. */
int store_chain(struct store *s, rfs_index_t *index,
                uint8_t hash[STORE_CHAIN_BYTES]);

/*
 * Trust on first use: the data folder id peer presented first, recorded
 * (synced) in meta "pin/<peer>" the first time and returned in *pinned
 * ever after. The caller refuses a peer whose id differs from *pinned. The
 * pins are this node's own (meta is not in snapshots). 0, RFS_ECORRUPT
 * (a damaged record), READ ERRORS, WRITE ERRORS.
 */
int store_peer_pin(struct store *s, rfs_nodeid_t peer, uint64_t data_id,
                   uint64_t *pinned);

/* Record snapshot metadata after a local snapshot (synced). 0, -ENOMEM,
 * WRITE ERRORS. */
int store_snapshot_meta_put(struct store *s, const struct store_snap_meta *m);

#endif /* RAFTFS_STORE_STORE_H */
