/*
 * fs: the replicated state machine as a POSIX directory tree, through the
 * libfuse3 low-level API.
 *
 * Contract (see docs/fs.md for the user-facing version):
 * - Every change (write, create, truncate, unlink, mkdir, rmdir, rename,
 *   symlink, chmod, chown, utimens) is answered only once its entry is
 *   committed and applied on this node. The waiting fuse_req_t is parked
 *   with the node's request and answered from its completion on the node's
 *   loop thread: no FUSE worker thread waits for consensus.
 * - A non-exclusive create and an O_TRUNC open are staged: the kernel gets
 *   its answer at once (with an inode id chosen here, see STORE_INO_CHOSEN),
 *   and the staged create or truncate travels in the same entry as the first
 *   write, so `echo v > f` is one Raft entry. A handle closed without
 *   writing commits what it staged at flush. O_EXCL creates, mkdir and
 *   rename commit before answering: their conditions are decided at apply
 *   time, identically on every node, so they are cluster-wide locks.
 * - reads=linearizable: lookup, getattr, open, opendir, readlink and
 *   getxattr pass a ReadIndex barrier first, and the kernel caches nothing
 *   (zero timeouts, page cache dropped at open). reads=local: served from
 *   this node's state with kernel caching; changes applied here that other
 *   nodes made invalidate the kernel's pages and entries (from a separate
 *   thread: a notification may wait for a kernel lock held by a request
 *   that waits for the loop thread).
 * - A read-only handle reads one RocksDB snapshot taken at open; a writable
 *   handle reads the latest state, hence its own writes.
 * - Errors: see fs_errno() and docs/fs.md. After a change or a read
 *   barrier times out, and while no leader is known, further changes and
 *   linearizable reads fail at once with ETIMEDOUT (changes with EROFS in
 *   reads=local, where reads go on).
 *
 * Caveats:
 * - The fuse_lowlevel_ops run on FUSE worker threads; completions run on the
 *   node's loop thread. All fs state they share is under one mutex; handles
 *   are reference-counted (the kernel's, and one per change in flight).
 * - A flush reads the caller's /proc/PID/fdinfo (see ops_write.c): run the
 *   daemon as root, or as the user of the mount, for one entry per
 *   `echo v > f`; otherwise staged changes go at the first flush (two
 *   entries, still correct).
 */
#ifndef RAFTFS_FS_FS_H
#define RAFTFS_FS_FS_H

#include <stdbool.h>
#include <stdint.h>

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>

#include "../consensus/node.h"

struct fs_options {
    bool linearizable;          /* reads=linearizable (default) or local. */
    double cache_timeout;       /* reads=local: attr/entry cache seconds. */
    /* reads=linearizable with the lease: directories' names and
     * attributes cached by the kernel while the lease holds (dircache=,
     * default on; fs/dircache.c). */
    bool dircache;
    uint32_t max_write;         /* Largest write asked of the kernel. */
    const char *data_dir;       /* For statfs: the disk the store is on. */
    uint64_t min_free_bytes;    /* statfs: the store's reserve. */
    uint64_t max_file_bytes;    /* The store's: bytes one file stores. */
};

void fs_options_default(struct fs_options *o);

struct fs;

/* Create the filesystem state. The node is attached later (fs_attach),
 * because the node's options must point at fs_on_apply first. */
int fs_new(const struct fs_options *o, struct fs **out);
void fs_attach(struct fs *fs, struct node *n, struct fuse_session *se);
/* After mounting: the mount's id (mountinfo's first field), so that a
 * flush can tell whether its caller still holds the file (see ops_write.c). */
void fs_set_mount_id(struct fs *fs, uint64_t mnt_id);
/* After the session loop ended, before node_stop(): release the store
 * views of handles the kernel still holds (the store closes with the
 * node). */
void fs_drop_views(struct fs *fs);
/* Stop the invalidation thread and free every handle left; call after the
 * session loop ended and the node stopped. */
void fs_free(struct fs *fs);

/* The operations; userdata for fuse_session_new() is the struct fs. */
extern const struct fuse_lowlevel_ops fs_ops;

/* The node's on_apply hook (node_options.on_apply, apply_data = fs). */
/* node_options.on_log: drops what the kernel cached under the lease that
 * these entries may change (fs/dircache.c). */
void fs_on_log(void *data, const struct cons_entry *e, unsigned n,
               bool reset);
/* node_options.on_tick: drops what the kernel cached under a lease that is
 * about to end. */
void fs_on_tick(void *data, uint64_t tick_ns);
void fs_on_apply(void *data, rfs_index_t index, const struct store_cmd *c,
                 const struct store_result *r, bool own);

/* The positive errno a caller sees for a raftfs or negated errno code. */
int fs_errno(int code);

/* Counters, for tests and status. */
struct fs_counters {
    uint64_t changes;        /* Changes submitted. */
    uint64_t fused;          /* Staged creates/truncates sent with data. */
    uint64_t barriers;       /* Read barriers asked. */
    uint64_t invalidations;  /* Kernel notifications sent. */
};
void fs_counters(struct fs *fs, struct fs_counters *c);

/* FUSE over io_uring (fs/uring.c), the `uring=` mount option. */
enum fs_uring_mode {
    FS_URING_OFF = 0, /* Requests come by read(/dev/fuse) only. */
    FS_URING_AUTO,    /* io_uring where the kernel offers it, else /dev/fuse
                       * with one info line in the log (raftfs's default:
                       * the kernel offers it only once root has set the
                       * fuse module's enable_uring, which is the opt-in). */
    FS_URING_ON,      /* The same, but the fallback's line is a warning. */
};
/* After fuse_session_mount(), before the session loop: route the session's
 * I/O through fs/uring.c so that INIT can switch the mount to io_uring
 * (see uring.c for how). Returns 0, or the negative error of
 * fuse_session_custom_io(). One session per process. */
int fs_uring_attach(struct fuse_session *se, enum fs_uring_mode mode);
/* As soon as the session loop ended, before fs_drop_views(): stop the
 * queue threads, so that no request reaches fs_ops any more. Replies made
 * after it go to /dev/fuse (and are dropped, as the mount is going). */
void fs_uring_stop(void);
/* After the node stopped (no reply can come any more), before
 * fuse_session_unmount(): free the rings and buffers. Closing the rings
 * is what lets the kernel end the connection's queues. */
void fs_uring_close(void);
/* One line for /.raftfs/transport: "io_uring queues=N depth=D requests=R"
 * or "dev_fuse (WHY) requests_over_io_uring=R". Like snprintf. */
size_t fs_uring_describe(char *buf, size_t cap);

#endif /* RAFTFS_FS_FS_H */
