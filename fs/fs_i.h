/* Private to fs/: the state the FUSE operations share. */
#ifndef RAFTFS_FS_FS_I_H
#define RAFTFS_FS_FS_I_H

#include <pthread.h>
#include <stdatomic.h>

#include "fs.h"

/* Ids of the read-only /.raftfs/ folder: bit 63, which the store never
 * hands out (see STORE_INO_CHOSEN). */
#define FS_VIRT_BIT (UINT64_C(1) << 63)
#define FS_VDIR_INO (FS_VIRT_BIT | 1)
#define FS_VDIR_NAME ".raftfs"
enum fs_vfile {
    FS_VF_STATUS = 2,
    FS_VF_LEADER,
    FS_VF_MEMBERS,
    FS_VF_TRANSPORT,
    FS_VF_END,
};
#define FS_REVISION_XATTR "user.raftfs.revision"
/* getxattr: the changes under a path after a revision (fs/watch.c). */
#define FS_CHANGES_XATTR "user.raftfs.changes."
/* An answer is at most FS_WATCH_MAX bytes (the kernel's largest xattr
 * value); a buffer under FS_WATCH_MIN is refused (ERANGE). */
#define FS_WATCH_MAX 65536
#define FS_WATCH_MIN 4096
/* setxattr on a directory: raftfs put (ops_write.c, put_submit). */
#define FS_PUT_XATTR "user.raftfs.put"
/* The fencing token of a lock this node holds on the file. */
#define FS_LOCK_XATTR "user.raftfs.lock"

/* Extended attribute namespaces, by what raftfs does with them. */
enum fs_xattr_ns {
    FS_XNS_USER,     /* user.*: stored; files and directories only. */
    FS_XNS_TRUSTED,  /* trusted.*: stored; CAP_SYS_ADMIN only. */
    FS_XNS_RESERVED, /* user.raftfs.*: raftfs's own (virtual); EPERM;
                      * but user.raftfs.ephemeral is FS_XNS_USER. */
    FS_XNS_CAPS,     /* security.capability: stored; anyone reads it,
                      * setting it needs CAP_SETFCAP. */
    FS_XNS_ACL,      /* system.posix_acl_access, system.posix_acl_default:
                      * stored (the store keeps access ACLs only);
                      * anyone reads them, the owner or CAP_FOWNER sets
                      * them. */
    FS_XNS_UNSTORED, /* other security.*, system.*: never any (ENODATA),
                      * and cannot be set (EOPNOTSUPP). */
    FS_XNS_OTHER,    /* No such namespace: EOPNOTSUPP. */
};

enum fs_handle_kind {
    FS_H_FILE = 1,
    FS_H_DIR,
    FS_H_VIRT,
};

struct fs_dent {
    uint64_t ino;
    uint8_t type; /* enum store_type */
    char *name;
};

/*
 * An open file or directory (fuse_file_info.fh). Counted references: the
 * kernel's (until release) and one per change in flight that names it.
 */
struct fs_handle {
    struct fs *fs;
    atomic_int refs;
    enum fs_handle_kind kind;
    uint64_t kino;       /* The id the kernel knows. */
    uint64_t ino;        /* The store's id (differs after an alias). */
    bool writable;
    bool append;
    struct store_view *view; /* Read-only files, directories. */
    /* Under fs->lock, read-only files with kept pages (reads=local):
     * fs->inval_pushed when this handle last found its view current, and
     * whether the file changed since the view (see read_handle). */
    uint64_t inval_seen;
    bool view_behind;
    /* Under fs->lock: the file lost its last name while open here and
     * lives on as this node's orphan (store_orphan_*), until the last
     * handle on it goes (see fs__orphan_*). */
    bool orphan;

    /* Staged changes, under fs->lock. staged_create/staged_trunc: not yet
     * sent. pending: the create was staged or sent but is not applied, so
     * lookup and getattr answer from the fields below. */
    bool staged_create;
    bool staged_trunc;
    bool pending;
    /* A staged create or truncate was taken by one change and is in
     * flight: every other change through this handle waits for it
     * (fs->stage_cond), or the log could order it before the truncate. */
    bool stage_inflight;
    pid_t opener; /* The process (thread) that staged it: see send_staged. */
    uint32_t open_flags;
    uint64_t parent;
    char name[STORE_NAME_MAX + 1];
    uint16_t name_len;
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    int64_t ctime_ns;
    bool kill_priv; /* Opened with O_TRUNC by a caller without CAP_FSETID:
                     * the staged truncate clears setuid/setgid. */
    uint32_t shown_gid; /* The group lookups show while the create is
                         * pending: a setgid parent's (apply decides). */
    uint32_t umask;      /* The creator's, sent with the create
                          * (STORE_UMASK). */
    uint32_t shown_mode; /* The mode shown while the create is pending:
                          * after the umask or the parent's default ACL
                          * (apply decides). */
    struct fs_handle *pnext; /* In fs->pending. */
    struct fs_handle *anext, *aprev; /* In fs->all. */

    /* Directories: the listing, taken from the view at the first readdir. */
    pthread_mutex_t dlock;
    struct fs_dent *ents;
    size_t n_ents;
    bool listed;

    /* Under fs->lock: the last POSIX owner that locked through this
     * handle (an OFD lock's owner is its open file: no FLUSH releases it,
     * so RELEASE does; see fs/locks.c). */
    bool lk_posix;
    uint64_t lk_owner;

    /* /.raftfs/ files: the text rendered at open. */
    char *text;
    size_t text_len;
};

/* A kernel notification waiting for the invalidation thread. */
struct fs_inval {
    struct fs_inval *next;
    uint64_t ino;    /* Inode to invalidate, or 0. */
    uint64_t parent; /* With name: entry to invalidate, or 0. */
    uint64_t off;    /* With ino: the pages from off, len bytes of them */
    uint64_t len;    /* (0: attributes and every page). */
    uint16_t name_len;
    char name[];
};

struct fs_alias {
    uint64_t from; /* Id the kernel was told at create. */
    uint64_t to;   /* Id the store gave the file (it existed already). */
};

/* A (file, lock owner, kind) this node sent a lock for: its close costs
 * an unlock entry; any other close costs none. */
struct fs_lkown {
    uint64_t ino;
    uint64_t owner;
    uint8_t kind;
};
struct fs_lkwait;
struct fs_lkun;

/* dircache.c: directories the kernel caches under the lease. */
#define FS_DC_MAX 64 /* Directories cached at once; past it, none more. */
#define FS_DC_BOOTS 256 /* Clients whose boot is remembered (observers too). */
enum { FS_DC_UNKNOWN = 0, FS_DC_YES, FS_DC_NO };
struct fs_dircache {
    bool on;              /* reads=linearizable, lease=on, dircache=on. */
    bool nodrop;          /* RAFTFS_TEST_DIRCACHE_NODROP (tests only). */
    unsigned reply_delay_us; /* RAFTFS_TEST_DIRCACHE_REPLY_DELAY_US (tests). */
    double kernel_slack_s; /* RAFTFS_TEST_DIRCACHE_KERNEL_SLACK_MS (tests). */
    pthread_mutex_t lock; /* From here to the counters. */
    int epoch;            /* Whether FUSE_NOTIFY_INC_EPOCH works here. */
    uint64_t names_until; /* A name may be cached until then (0: none). */
    unsigned n;
    uint64_t ino[FS_DC_MAX]; /* Directories whose attributes may be cached, */
    uint64_t until[FS_DC_MAX]; /* until then (CLOCK_BOOTTIME; 0: not yet). */
    uint64_t granted, dropped, epochs, expired;
    /* Not under lock, loop thread only: the newest boot applied per
     * client (fs__dc_applied). */
    struct {
        rfs_nodeid_t client;
        uint64_t boot;
    } boots[FS_DC_BOOTS];
    unsigned nboots, next_boot;
};
struct fs_dc_counters {
    uint64_t granted; /* Replies with a timeout. */
    uint64_t dropped; /* Attributes dropped (FUSE_NOTIFY_INVAL_INODE). */
    uint64_t epochs;  /* Names dropped (FUSE_NOTIFY_INC_EPOCH). */
    uint64_t expired; /* Dropped by the tick as their lease ran out. */
    unsigned cached;  /* Directories recorded now. */
    bool names;       /* Names are cached too. */
};
void fs__dc_init(struct fs *fs);
void fs__dc_free(struct fs *fs);
/* Reply to a lookup or getattr with the timeouts the lease allows a
 * directory (none for anything else); seen: node_read_floor() taken
 * before the store read that gave a. */
void fs__dc_reply_entry(struct fs *fs, fuse_req_t req,
                        const struct store_attr *a, rfs_index_t seen);
void fs__dc_reply_attr(struct fs *fs, fuse_req_t req,
                       const struct store_attr *a, rfs_index_t seen);
void fs__dc_counters(struct fs *fs, struct fs_dc_counters *c);
/* From fs_on_apply, for every applied command (loop thread). */
void fs__dc_applied(struct fs *fs, const struct store_cmd *c);

struct fs {
    struct fs_options o;
    struct fs_dircache dc;
    char data_dir[1024];
    struct node *node;
    struct fuse_session *se;
    uint64_t mnt_id; /* The kernel's id for our mount, or 0 if unknown. */

    pthread_mutex_t lock; /* Everything below. */
    struct fs_handle *pending;
    struct fs_handle *all; /* Every live handle, for shutdown. */
    struct fs_alias *aliases;
    size_t n_aliases;
    size_t cap_aliases;
    bool quorum_lost; /* A request timed out; cleared once a leader shows. */
    bool store_gone;  /* After fs_drop_views: the store closes soon. */
    /* Files the store kept as orphans during the apply in progress; their
     * handles are marked once the apply's batches are written. */
    uint64_t *kept;
    size_t n_kept;
    size_t cap_kept;
    struct fs_counters cnt;
    struct fs_lkwait *lkwaits; /* Lock requests the store queued. */
    struct fs_lkown *lkown;
    size_t n_lkown;
    size_t cap_lkown;
    struct fs_lkun *lkuns; /* Unlocks answered, not yet applied. */
    uint64_t lk_order;     /* The last flock request's order (store.h,
                            * "Order"). */

    pthread_t inval_thread;
    bool inval_started;
    bool inval_stop;
    pthread_cond_t stage_cond; /* Some handle's stage_inflight ended. */
    int test_stage_delay_ms;   /* RAFTFS_TEST_STAGE_DELAY_MS (tests). */

    pthread_cond_t inval_cond;
    struct fs_inval *inval_head;
    struct fs_inval **inval_tail;
    uint64_t inval_pushed; /* Invalidations ever queued (under lock). */

    pthread_mutex_t watch_lock; /* watches (fs/watch.c). */
    struct fs_watch *watches;   /* Parked getxattr of FS_CHANGES_XATTR. */

    /* RAFTFS_TEST_STUCK_LOOKUP (tests only): see fs__test_stuck(). */
    char test_stuck[64];
};

/* watch.c. fs__watch_getxattr: answers (or parks) a getxattr of
 * FS_CHANGES_XATTR..., false for any other name. fs__watch_applied: after
 * each applied entry, on the loop thread. fs__watch_free: at fs_free. */
bool fs__watch_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                        size_t size);
void fs__watch_applied(struct fs *fs);
void fs__watch_free(struct fs *fs);

/* fs.c */
double fs__timeout(const struct fs *fs);
/* The kernel's caching of a new file handle h (keep_cache, direct_io,
 * noflush), decided in one place for open and both kinds of create
 * (h->staged_create already set for a staged one). */
void fs__handle_flags(const struct fs *fs, const struct fs_handle *h,
                      struct fuse_file_info *fi);
/* Tests only: true if this lookup is the one RAFTFS_TEST_STUCK_LOOKUP
 * names. It is then never answered, and the invalidation thread is sent to
 * drop that very entry, so it waits uninterruptibly for the directory lock
 * the lookup holds: the state in which a kill -9 cannot finish, which the
 * watchdog in mount-tools/raftfs.c exists for. */
bool fs__test_stuck(struct fs *fs, uint64_t parent, const char *name);
/* Queues the dropping of everything the kernel caches of inode kino: its
 * attributes and its pages. */
void fs__inval_inode(struct fs *fs, uint64_t kino);
/* Queues the dropping of kino's attributes and of its pages holding bytes
 * off to off + len (len > 0), unless an invalidation still queued covers
 * them; one queued for an adjacent or overlapping range of kino grows to
 * cover them instead (sequential reads through an old descriptor queue
 * one notification, not one per read). */
void fs__inval_range(struct fs *fs, uint64_t kino, uint64_t off,
                     uint64_t len);
/* uring.c. On a ring's own thread: submits the replies this thread has
 * queued in its ring. An io_uring reply reaches the kernel only at the
 * next io_uring_enter, while a notification from the invalidation thread
 * goes through /dev/fuse at once: a caller that must have the kernel take
 * its reply before a notification it queues next (a read whose pages the
 * notification is to drop) calls this first. Elsewhere, and without
 * io_uring, replies are written at once and this does nothing. */
void fs__uring_flush(void);
uint64_t fs__resolve(struct fs *fs, uint64_t ino);
void fs__alias_add(struct fs *fs, uint64_t from, uint64_t to);
void fs__alias_drop(struct fs *fs, uint64_t from);
/* S_IFREG, S_IFDIR, ... for an enum store_type. */
mode_t fs__type_mode(uint8_t type);
void fs__attr_to_stat(const struct store_attr *a, struct stat *st);
void fs__reply_entry(struct fs *fs, fuse_req_t req,
                     const struct store_attr *a);
void fs__reply_err(fuse_req_t req, int code);
struct fs_handle *fs__handle_new(struct fs *fs, enum fs_handle_kind kind,
                                 uint64_t ino);
void fs__handle_put(struct fs_handle *h);
/* A reference to a handle found in fs->pending (under fs->lock), unless
 * its last reference is being dropped concurrently. */
bool fs__handle_tryget(struct fs_handle *h);
/* A pending create for kernel id kino or (parent, name); under fs->lock. */
struct fs_handle *fs__pending_by_ino(struct fs *fs, uint64_t kino);
struct fs_handle *fs__pending_by_name(struct fs *fs, uint64_t parent,
                                      const char *name, size_t len);
void fs__pending_attr(const struct fs_handle *h, struct store_attr *a);
void fs__pending_remove(struct fs *fs, struct fs_handle *h);
bool fs__is_vname(uint64_t parent, const char *name);
int fs__vattr(struct fs *fs, uint64_t ino, struct store_attr *a);
uint64_t fs__vlookup(const char *name);  /* /.raftfs/NAME's id, or 0. */
const char *fs__vname(uint64_t ino);      /* Its name, or NULL. */
int fs__vrender(struct fs *fs, uint64_t ino, char **text, size_t *len);

/* Attributes of an orphan (an unlinked file open here) that kernel id or
 * store id ino names, nlink 0. 0, -ENOENT if none. */
int fs__orphan_attr(struct fs *fs, uint64_t ino, struct store_attr *a);

/* A request timed out and no leader is reachable since: changes and
 * linearizable reads fail at once (see fs__degraded_code). */
bool fs__degraded(struct fs *fs);
/* This node has no leader to ask right now (none known, or none it is
 * connected to): a barrier could only time out. */
bool fs__cut_off(struct fs *fs);
/* What a change answers at once while degraded: -ETIMEDOUT in
 * reads=linearizable, where reads fail too, so "read-only" would be a lie
 * and every request of the mount then says the same thing; -EROFS in
 * reads=local, where the mount really is read-only for now. */
int fs__degraded_code(const struct fs *fs);

/* Read barrier (linearizable mode) then fn on the loop thread; at once on
 * this thread in local mode. On a barrier error, replies with it. */
typedef void (*fs_read_fn)(struct fs *fs, fuse_req_t req, void *arg);
void fs__after_barrier(struct fs *fs, fuse_req_t req, fs_read_fn fn,
                       void *arg);
/* The same, but if the node turns out cut off from the cluster (removed,
 * the barrier timed out, or the leader it asked stepped down and none is
 * known), fn runs anyway on the local state: for the root's attributes,
 * which every path walk needs, /.raftfs/ included. */
void fs__after_barrier_or_local(struct fs *fs, fuse_req_t req, fs_read_fn fn,
                                void *arg);

/*
 * The FUSE operations. Each lists its valid replies (as libfuse's
 * fuse_lowlevel.h does: exactly one of them is sent on every path) and the
 * errnos raftfs answers with. Every code from the store or the node goes
 * through fs__reply_err (fs_errno: a negated errno becomes that errno;
 * RFS_ESHUTDOWN ENOTCONN, RFS_EREMOVED EROFS, RFS_ETOOBIG and RFS_EBUSY
 * EAGAIN, any other RFS_E* (RFS_ECORRUPT: a damaged record) EIO; apply
 * results are already positive). Sets that recur:
 * - BARRIER, with reads=linearizable only (fs__after_barrier): ETIMEDOUT
 *   (the barrier timed out, or at once while degraded), EROFS (this node
 *   was removed), EIO (this node's storage failed), ENOTCONN (shutting
 *   down), ENOMEM. fs__after_barrier_or_local (the root's getattr) answers
 *   from the local copy instead of ETIMEDOUT and EROFS.
 * - CHANGE, every replicated change (node_submit): ETIMEDOUT (not applied
 *   here within commit_timeout, including while this node's disk is below
 *   the store's reserve: the log write is retried, never refused to the
 *   caller; or at once while degraded with reads=linearizable), EROFS
 *   (degraded with reads=local, or this node was removed), EIO (this
 *   node's storage failed, also an apply below the reserve, which stops
 *   the node), ENOTCONN, ENOMEM; then the apply result of the op's store
 *   command (struct store_result in store/store.h), where a change made by
 *   path (not through a handle) answers ENOENT for ESTALE.
 * - STORE, a read of the store: ENOENT or ESTALE as listed, EIO
 *   (RFS_ECORRUPT, RocksDB's I/O errors), and rarely EACCES, EINVAL or
 *   ENOSPC (RocksDB's status, as store.h's READ ERRORS).
 * - NAME, a change naming an entry (check_name): EPERM (inside /.raftfs/;
 *   unlink, rmdir or rename of /.raftfs itself), EEXIST (creating or
 *   linking to the name /.raftfs: the kernel's lookup usually answers
 *   first), ENAMETOOLONG (over 255 bytes).
 * - ORPHAN, a write or setattr through a handle whose file this node keeps
 *   as an orphan (store_orphan_change, local, not replicated): ESTALE
 *   (the orphan is gone), EFBIG, ENOSPC (below the reserve: refused, the
 *   node goes on), EIO, ENOMEM.
 */

/* ops_read.c */
/* Not a request: no reply. */
void fs__op_init(void *userdata, struct fuse_conn_info *conn);
/* Valid replies: fuse_reply_entry, fuse_reply_err. ENOENT,
 * ENAMETOOLONG (over 255 bytes), ENOMEM, BARRIER, STORE. */
void fs__op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
/* Valid replies: fuse_reply_none. */
void fs__op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
/* Valid replies: fuse_reply_none. */
void fs__op_forget_multi(fuse_req_t req, size_t count,
                         struct fuse_forget_data *forgets);
/* Valid replies: fuse_reply_attr, fuse_reply_err. ESTALE (the inode is
 * gone: the kernel looks the path up again), ENOMEM, BARRIER (the root:
 * local instead of ETIMEDOUT and EROFS), STORE. */
void fs__op_getattr(fuse_req_t req, fuse_ino_t ino,
                    struct fuse_file_info *fi);
/* Valid replies: fuse_reply_open, fuse_reply_err. EACCES (a /.raftfs/
 * file for writing or with O_TRUNC), ESTALE (the inode is gone), EISDIR,
 * ENOMEM, BARRIER, STORE. */
void fs__op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
/* Valid replies: fuse_reply_buf, fuse_reply_err. EBADF (no handle),
 * EISDIR, ESTALE (the file went as the handle opened: no orphan),
 * ENOMEM, STORE. No barrier: a handle reads its view or the latest. */
void fs__op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                 struct fuse_file_info *fi);
/* Valid replies: fuse_reply_open, fuse_reply_err. ESTALE, ENOTDIR,
 * ENOMEM, BARRIER, STORE. */
void fs__op_opendir(fuse_req_t req, fuse_ino_t ino,
                    struct fuse_file_info *fi);
/* Valid replies: fuse_reply_buf, fuse_reply_err (readdir and
 * readdirplus). ENOMEM, STORE. */
void fs__op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi);
void fs__op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
                        off_t off, struct fuse_file_info *fi);
/* Valid replies: fuse_reply_err (always 0). */
void fs__op_releasedir(fuse_req_t req, fuse_ino_t ino,
                       struct fuse_file_info *fi);
/* Valid replies: fuse_reply_readlink, fuse_reply_err. EINVAL (a
 * /.raftfs/ name, or not a symlink), ESTALE, ENOMEM, BARRIER, STORE. */
void fs__op_readlink(fuse_req_t req, fuse_ino_t ino);
/* Valid replies: fuse_reply_statfs, fuse_reply_err. statvfs(2)'s errno
 * on the data folder. */
void fs__op_statfs(fuse_req_t req, fuse_ino_t ino);
/* Valid replies: fuse_reply_buf, fuse_reply_xattr (size 0: the length),
 * fuse_reply_err. ENODATA (not set; security.*, system.*; trusted.*
 * without CAP_SYS_ADMIN; names over 255 bytes; /.raftfs/ files),
 * EOPNOTSUPP (another namespace), ERANGE (buffer too small), ESTALE (the
 * inode is gone), ENOMEM, BARRIER, STORE. */
void fs__op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                     size_t size);
/* Valid replies: fuse_reply_buf, fuse_reply_xattr, fuse_reply_err.
 * ERANGE (buffer too small), ESTALE, ENOMEM, BARRIER, STORE. */
void fs__op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
enum fs_xattr_ns fs__xattr_ns(const char *name);

/* ops_write.c */
/* Whether the request's caller has capability cap (linux/capability.h) in
 * its effective set, read from /proc/PID/status (which never enters a
 * filesystem, so this cannot wait on our own mount). Unreadable (a caller
 * in another pid namespace has pid 0): uid 0 has it, no one else. */
bool fs__caller_has_cap(fuse_req_t req, int cap);
/* Whether a write, truncate or O_TRUNC open by this request's caller clears
 * setuid and setgid (STORE_KILL_PRIV): the caller lacks CAP_FSETID. Asked
 * on the thread libfuse called the op handler on, before any hop to the
 * loop thread: the kernel's verdict (FUSE_HANDLE_KILLPRIV_V2, see
 * fs__kernel_kill_priv) when it gave one, else /proc/PID/status. */
bool fs__caller_kills_priv(fuse_req_t req);

/* uring.c */
/* For the request being dispatched on this thread: 1 if the kernel flagged
 * it to clear setuid/setgid (FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID,
 * FUSE_OPEN_KILL_SUIDGID), 0 if it did not, -1 if the kernel gives no
 * verdict (FUSE_HANDLE_KILLPRIV_V2 not in force, or an opcode without
 * one). */
int fs__kernel_kill_priv(void);
/* Valid replies: fuse_reply_err (0 on success). EINVAL (flags), ERANGE,
 * E2BIG, EPERM, EACCES, EOPNOTSUPP (see ops_write.c), CHANGE (SETXATTR:
 * EEXIST, ENODATA, ENOSPC, ESTALE). */
void fs__op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                     const char *value, size_t size, int flags);
/* Valid replies: fuse_reply_err (0 on success). ERANGE, EPERM, EACCES,
 * ENODATA (security.*, system.*), EOPNOTSUPP, CHANGE (REMOVEXATTR). */
void fs__op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);
/* Valid replies: fuse_reply_attr, fuse_reply_err. EPERM (/.raftfs/
 * files), CHANGE (SETATTR), ORPHAN. */
void fs__op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
                    int to_set, struct fuse_file_info *fi);
/* Valid replies: fuse_reply_create, fuse_reply_err. NAME, ENOMEM; with
 * O_EXCL, CHANGE (CREATE); without, the create is staged and its
 * errors come with the first write, flush, fsync or release. */
void fs__op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
                   mode_t mode, struct fuse_file_info *fi);
/* Valid replies: fuse_reply_write, fuse_reply_err. EBADF (no handle),
 * CHANGE (WRITE, and a staged create or truncate riding on it), ORPHAN. */
void fs__op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
                  size_t size, off_t off, struct fuse_file_info *fi);
/* Valid replies: fuse_reply_err. 0, or CHANGE for a staged create or
 * truncate sent now. fsync and release: the same. */
void fs__op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
/* Send h's staged create or truncate (an open file not yet written), if
 * any, then call cont(arg, 0 or the errno it failed with) once it applied,
 * on the loop thread; at once if nothing was staged. A command about the
 * file that must not reach the log before its create (a lock) waits for
 * it this way. Replies nothing to req. */
void fs__unstage_then(fuse_req_t req, struct fs_handle *h,
                      void (*cont)(void *arg, int err), void *arg);
void fs__op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
                  struct fuse_file_info *fi);
void fs__op_release(fuse_req_t req, fuse_ino_t ino,
                    struct fuse_file_info *fi);
/* Valid replies: fuse_reply_entry, fuse_reply_err (mkdir, symlink,
 * mknod, link). NAME, ENOMEM, CHANGE (the op's apply result); symlink:
 * ENAMETOOLONG (target over 4095 bytes); mknod: EINVAL (not a fifo,
 * socket or device; a regular file is a CREATE with STORE_EXCL), EPERM
 * (a device without CAP_MKNOD); link: EPERM (of a /.raftfs/ file). */
void fs__op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
                  mode_t mode);
void fs__op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
                    const char *name);
void fs__op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
                  mode_t mode, dev_t rdev);
/* Valid replies: fuse_reply_err (unlink, rmdir, rename). NAME, CHANGE;
 * rename: EINVAL (RENAME_WHITEOUT, or other flags). */
void fs__op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs__op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs__op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
                   fuse_ino_t newparent, const char *newname,
                   unsigned int flags);
void fs__op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
                 const char *newname);

/* locks.c: flock and fcntl locks (see there). */
/* Valid replies: fuse_reply_lock, fuse_reply_err. EINVAL (/.raftfs/
 * files, a negative range), ENOMEM, STORE. */
void fs__op_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                  struct flock *lock);
/* Valid replies: fuse_reply_err. 0, EAGAIN (held elsewhere, not
 * waiting), EINTR (a wait interrupted), ENOLCK (the session ended while
 * waiting), EINVAL (/.raftfs/ files, bad type or range), CHANGE. */
void fs__op_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                  struct flock *lock, int sleep);
void fs__op_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                  int op);
/* Loop thread, after each applied entry (r NULL: a snapshot): answer the
 * parked waiters it granted. */
void fs__locks_on_apply(struct fs *fs, const struct store_result *r);
/* The fencing token of the newest lock this node's session holds on ino
 * (the revision that granted it). 0, -ENODATA (none held here), STORE. */
int fs__locks_token(struct fs *fs, uint64_t ino, uint64_t *token);
/* At fs_free: forget parked waiters (their handle references too). */
void fs__locks_free(struct fs *fs);
/* At FLUSH and RELEASE: propose the unlocks of what the closing owner
 * holds here, without waiting for them (the caller answers). */
void fs__locks_flush(struct fs *fs, struct fs_handle *h,
                     struct fuse_file_info *fi);
void fs__locks_release(struct fs *fs, struct fs_handle *h,
                       struct fuse_file_info *fi);

#endif /* RAFTFS_FS_FS_I_H */
