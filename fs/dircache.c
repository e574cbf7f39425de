/*
 * Directories cached by the kernel under the lease (reads=linearizable,
 * lease=on; issue 15 part 2; docs/fs.md, "Directories cached under the
 * lease").
 *
 * A linearizable mount answers with zero timeouts, so every path walk asks
 * the daemon for each directory's entry and attributes. While this node
 * holds a lease (a leader's, or a follower's read lease), a directory's name
 * and attributes may instead be cached by the kernel for the time the lease
 * has left, provided nothing that could complete anywhere is missing from
 * them and anything that could is dropped before it completes:
 *
 * 1. Granted only for a read that saw this node's whole log (node_read_floor
 *    before the store read, node_cache_ttl_ns after): an entry that is in
 *    the log, even uncommitted, may complete after the reply, and its
 *    on_log call may already have run.
 * 2. Dropped in on_log, on the loop thread, before this node persists,
 *    acknowledges or applies an entry: a leader commits nothing a lease
 *    holder has not acknowledged (and its own log is counted only once
 *    written), so no change completes anywhere while a holder's kernel
 *    still shows what it changed. A leader handing over drops everything
 *    before its TimeoutNow leaves.
 * 3. No grant outlives its lease: the timeout is what the lease has left
 *    less a margin (jiffies round up), and since the kernel starts counting
 *    only when the asking task takes the reply in, the loop's tick also
 *    drops every grant two ticks before its lease's end.
 * 4. Attributes only in GETATTR replies, which the kernel sends only for an
 *    inode it holds: a drop cannot reach an inode a LOOKUP reply has yet to
 *    make, and such an inode has no attribute version to refuse an older
 *    answer by. A LOOKUP reply carries the name's timeout alone.
 *
 * Attributes are dropped with FUSE_NOTIFY_INVAL_INODE (attributes only),
 * names with FUSE_NOTIFY_INC_EPOCH (kernel 6.16 and later), which ages every
 * cached name at once. Neither takes an inode lock, so a drop never waits
 * for a request that waits for this very apply (the deadlock of
 * FUSE_NOTIFY_INVAL_ENTRY, which takes the parent's lock). Both are raced
 * safely by a reply in flight: the kernel notes the attribute version and
 * the epoch before it sends a request, and keeps nothing from an answer
 * older than the last drop. A grant is decided under the table's lock with
 * the lease read inside it, so an entry logged after that read finds it
 * recorded and drops it.
 *
 * Only directories: a file's attributes change with every write, and its
 * name is the one R1 reads once.
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/fuse.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "fs_i.h"

/* The kernel's notification code (include/uapi/linux/fuse.h, 7.44), which
 * Debian 12's headers lack. */
#define FS_NOTIFY_INC_EPOCH 8

/* The margin kept from the lease's end: two jiffies at HZ=100 (the
 * coarsest tick Linux builds with; rounding up and the tick itself) and 5
 * ms for the reply's way to the kernel. */
#define DC_MARGIN_NS (25u * 1000000u)
/* No grant with less lease left than the margin and this: the tick drops
 * a grant at the first tick two ticks before its lease ends (fs_on_tick),
 * so a grant this short is dropped by the next tick, still at least a tick
 * (at the default 20 ms) before its lease ends, as every grant is. */
#define DC_MIN_NS (20u * 1000000u)

static uint64_t boottime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Write FUSE_NOTIFY_INC_EPOCH (a header alone). 0 or a negative errno. */
static int send_epoch(struct fuse_session *se)
{
    int fd = se != NULL ? fuse_session_fd(se) : -1;
    if (fd < 0) {
        return -EBADF;
    }
    struct fuse_out_header oh = {.len = sizeof(oh),
                                 .error = FS_NOTIFY_INC_EPOCH,
                                 .unique = 0};
    ssize_t n = write(fd, &oh, sizeof(oh));
    return n == (ssize_t)sizeof(oh) ? 0 : -errno;
}

void fs__dc_init(struct fs *fs)
{
    struct fs_dircache *d = &fs->dc;
    pthread_mutex_init(&d->lock, NULL);
    d->on = fs->o.linearizable && fs->o.dircache;
    /* Tests only: the mutant test_dircache_without_drops_is_caught must
     * catch (nothing is dropped on_log). */
    d->nodrop = getenv("RAFTFS_TEST_DIRCACHE_NODROP") != NULL;
    /* Tests only: each grant reaches the kernel with this much more than
     * its lease, as a reply taken in late would (test_dircache_tick_drops). */
    const char *slack = getenv("RAFTFS_TEST_DIRCACHE_KERNEL_SLACK_MS");
    d->kernel_slack_s = slack != NULL ? atoi(slack) / 1000.0 : 0;
    /* Tests only: hold each granted reply back (test_dircache_races). */
    const char *delay = getenv("RAFTFS_TEST_DIRCACHE_REPLY_DELAY_US");
    d->reply_delay_us = delay != NULL ? (unsigned)atoi(delay) : 0;
}

void fs__dc_free(struct fs *fs)
{
    pthread_mutex_destroy(&fs->dc.lock);
}

/* Ask the kernel, once, whether it takes FUSE_NOTIFY_INC_EPOCH (EINVAL
 * before 6.16). An epoch more costs only lookups. Under d->lock. */
static bool names_droppable(struct fs *fs)
{
    struct fs_dircache *d = &fs->dc;
    if (d->epoch == FS_DC_UNKNOWN) {
        d->epoch = send_epoch(fs->se) == 0 ? FS_DC_YES : FS_DC_NO;
        if (d->epoch == FS_DC_NO) {
            RFS_LOG(RFS_LOG_INFO, "this kernel cannot drop cached names at "
                    "once (FUSE_NOTIFY_INC_EPOCH, Linux 6.16): only "
                    "directories' attributes are cached under the lease");
        }
    }
    return d->epoch == FS_DC_YES;
}

/* ino's slot in the table, added if need be (in place of one whose last
 * grant has run out, when the table is full); -1 if there is no room.
 * Under d->lock. */
static int slot(struct fs *fs, uint64_t ino, uint64_t now)
{
    struct fs_dircache *d = &fs->dc;
    int free_at = -1;
    for (unsigned i = 0; i < d->n; i++) {
        if (d->ino[i] == ino) {
            return (int)i;
        }
        if (free_at < 0 && d->until[i] < now) {
            free_at = (int)i;
        }
    }
    if (d->n < FS_DC_MAX) {
        free_at = (int)d->n++;
    } else if (free_at < 0) {
        return -1;
    } else {
        /* Its grant ran out, unless the tick that should have dropped it
         * was late: one write settles it. */
        fuse_lowlevel_notify_inval_inode(fs->se, d->ino[free_at], -1, 0);
    }
    d->ino[free_at] = ino;
    d->until[free_at] = 0;
    return free_at;
}

/* The timeout (seconds, 0 for none) for what a read that saw seen
 * returned: directory ino's attributes (ino 0: none), or every name (name:
 * the epoch drops them all at once). The lease is read under d->lock with
 * the grant already recorded: an entry logged after that read finds it and
 * drops it, and no slot is reused while a grant for it is being decided. */
static double grant(struct fs *fs, uint64_t ino, bool name, rfs_index_t seen)
{
    struct fs_dircache *d = &fs->dc;
    if (!d->on || fs->node == NULL) {
        return 0;
    }
    pthread_mutex_lock(&d->lock);
    uint64_t now = boottime_ns();
    int i = -1;
    bool room = name ? names_droppable(fs) : (i = slot(fs, ino, now)) >= 0;
    uint64_t left = room ? node_cache_ttl_ns(fs->node, seen) : 0;
    if (left < DC_MARGIN_NS + DC_MIN_NS) {
        pthread_mutex_unlock(&d->lock);
        return 0;
    }
    /* The tick drops what is granted before until: see fs_on_tick. */
    uint64_t *until = name ? &d->names_until : &d->until[i];
    if (*until < now + left) {
        *until = now + left;
    }
    d->granted++;
    pthread_mutex_unlock(&d->lock);
    return (double)(left - DC_MARGIN_NS) / 1e9 + d->kernel_slack_s;
}

void fs__dc_reply_entry(struct fs *fs, fuse_req_t req,
                        const struct store_attr *a, rfs_index_t seen)
{
    struct fuse_entry_param e;
    memset(&e, 0, sizeof(e));
    e.ino = a->ino;
    fs__attr_to_stat(a, &e.attr);
    /* The name only. Attributes in a LOOKUP reply may make a new inode in
     * the kernel, which a drop sent before that (FUSE_NOTIFY_INVAL_INODE
     * finds no inode: ENOENT) cannot reach, and which starts with no
     * attribute version to refuse them by. A GETATTR is only ever sent for
     * an inode the kernel holds, so its reply is refused if a drop came
     * after it was sent (found by review). The epoch, which guards names,
     * is read before any LOOKUP is sent. */
    if (a->type == STORE_DIR) {
        e.entry_timeout = grant(fs, 0, true, seen);
    }
    if (e.entry_timeout > 0 && fs->dc.reply_delay_us) {
        usleep(fs->dc.reply_delay_us);
    }
    fuse_reply_entry(req, &e);
}

void fs__dc_reply_attr(struct fs *fs, fuse_req_t req,
                       const struct store_attr *a, rfs_index_t seen)
{
    struct stat st;
    fs__attr_to_stat(a, &st);
    double ttl = a->type == STORE_DIR ? grant(fs, a->ino, false, seen) : 0;
    if (ttl > 0 && fs->dc.reply_delay_us) {
        usleep(fs->dc.reply_delay_us);
    }
    fuse_reply_attr(req, &st, ttl);
}

/* Remove slot i (the last slot takes its place); its ino. Under d->lock. */
static uint64_t take(struct fs_dircache *d, unsigned i)
{
    uint64_t ino = d->ino[i];
    d->n--;
    d->ino[i] = d->ino[d->n];
    d->until[i] = d->until[d->n];
    return ino;
}

/* Drop the inodes in want[0..n) that are cached (all of them, with all),
 * and the names, with names. On the loop thread. */
static void drop(struct fs *fs, const uint64_t *want, unsigned n, bool all,
                 bool names)
{
    struct fs_dircache *d = &fs->dc;
    uint64_t out[FS_DC_MAX];
    unsigned k = 0;
    pthread_mutex_lock(&d->lock);
    for (unsigned i = 0; i < d->n;) {
        bool hit = all;
        for (unsigned j = 0; j < n && !hit; j++) {
            hit = d->ino[i] == want[j];
        }
        if (hit) {
            /* Also one whose grant ran out: a late tick may have left it
             * in the kernel. */
            out[k++] = take(d, i);
        } else {
            i++;
        }
    }
    bool epoch = names && d->names_until != 0;
    if (names) {
        d->names_until = 0;
    }
    d->dropped += k;
    d->epochs += epoch;
    pthread_mutex_unlock(&d->lock);
    for (unsigned i = 0; i < k; i++) {
        fuse_lowlevel_notify_inval_inode(fs->se, out[i], -1, 0);
    }
    if (epoch) {
        send_epoch(fs->se);
    }
}

/* The newest boot of each client whose commands applied here
 * (fs__dc_applied). A command entering the log from a boot newer than
 * that may end the client's older session when it applies: counted from
 * what applied, not from what entered the log, since an entry may be cut
 * from the log and come again at another index. Loop thread only. */
static unsigned boot_at(struct fs_dircache *d, rfs_nodeid_t client)
{
    unsigned i = 0;
    while (i < d->nboots && d->boots[i].client != client) {
        i++;
    }
    return i;
}

static bool new_boot(struct fs_dircache *d, rfs_nodeid_t client, uint64_t boot)
{
    unsigned i = boot_at(d, client);
    return client != 0 && (i == d->nboots || boot > d->boots[i].boot);
}

void fs__dc_applied(struct fs *fs, const struct store_cmd *c)
{
    struct fs_dircache *d = &fs->dc;
    if (!d->on || c == NULL || c->client == 0) {
        return;
    }
    unsigned i = boot_at(d, c->client);
    if (i == d->nboots) {
        /* Full: forget one; its next command drops everything once. */
        i = d->nboots < FS_DC_BOOTS ? d->nboots++
                                    : d->next_boot++ % FS_DC_BOOTS;
        d->boots[i].client = c->client;
        d->boots[i].boot = c->boot;
    } else if (c->boot > d->boots[i].boot) {
        d->boots[i].boot = c->boot;
    }
}

void fs_on_tick(void *data, uint64_t tick_ns)
{
    struct fs *fs = data;
    struct fs_dircache *d = &fs->dc;
    if (!d->on) {
        return;
    }
    /* A grant ends at the latest when the lease it was made under ends
     * (until), whenever the kernel got the reply: a reply taken in late by
     * the task that asked would otherwise keep its timeout past the lease,
     * where a change may complete without this node. Two ticks early, so
     * this tick or the next does it in time. */
    uint64_t by = boottime_ns() + 2 * tick_ns;
    uint64_t out[FS_DC_MAX];
    unsigned k = 0;
    pthread_mutex_lock(&d->lock);
    for (unsigned i = 0; i < d->n;) {
        if (d->until[i] != 0 && d->until[i] <= by) {
            out[k++] = take(d, i);
        } else {
            i++;
        }
    }
    bool epoch = d->names_until != 0 && d->names_until <= by;
    if (epoch) {
        d->names_until = 0;
    }
    d->expired += k + epoch;
    pthread_mutex_unlock(&d->lock);
    for (unsigned i = 0; i < k; i++) {
        fuse_lowlevel_notify_inval_inode(fs->se, out[i], -1, 0);
    }
    if (epoch) {
        send_epoch(fs->se);
    }
}

void fs_on_log(void *data, const struct cons_entry *e, unsigned n, bool reset)
{
    struct fs *fs = data;
    if (!fs->dc.on || fs->dc.nodrop) {
        return;
    }
    if (reset) {
        /* A snapshot replaced everything, or this leader hands over. */
        drop(fs, NULL, 0, true, true);
    }
    for (unsigned i = 0; i < n; i++) {
        if (e[i].type != CONS_ENTRY_NORMAL) {
            continue; /* A no-op or a configuration: no file changes. */
        }
        struct store_cmd c;
        if (store_cmd_decode(&e[i].data, &c) != 0) {
            drop(fs, NULL, 0, true, true); /* Apply will say what it is. */
            continue;
        }
        if (new_boot(&fs->dc, c.client, c.boot)) {
            /* A newer boot of a client ends its old session at apply
             * (store/sessions.c), removing its ephemeral files wherever
             * they are: directories this entry does not name. */
            drop(fs, NULL, 0, true, true);
        }
        uint64_t want[1] = {0};
        switch (c.op) {
        case STORE_OP_CREATE:
        case STORE_OP_MKDIR:
        case STORE_OP_SYMLINK:
        case STORE_OP_MKNOD:
        case STORE_OP_UNLINK:
        case STORE_OP_PUT:
        case STORE_OP_LINK:
            want[0] = c.parent; /* Its mtime, ctime, nlink, size. */
            drop(fs, want, 1, false, false);
            break;
        case STORE_OP_SETATTR:
        case STORE_OP_SETXATTR: /* ctime; an ACL decides permissions. */
        case STORE_OP_REMOVEXATTR:
            want[0] = c.ino;
            drop(fs, want, 1, false, false);
            break;
        case STORE_OP_WRITE:
        case STORE_OP_LOCK:
        case STORE_OP_LOCK_CANCEL:
        case STORE_OP_NOOP:
            break; /* Files' data and the lock table: no directory. */
        default:
            /* A rename or rmdir may move or remove a cached directory (and
             * change its parent's and its own attributes), and a session's
             * end or reopening removes its ephemeral files wherever they
             * are: which directories these touch is known only at apply,
             * so all go. */
            drop(fs, NULL, 0, true, true);
            break;
        }
    }
}

void fs__dc_counters(struct fs *fs, struct fs_dc_counters *c)
{
    struct fs_dircache *d = &fs->dc;
    pthread_mutex_lock(&d->lock);
    c->granted = d->granted;
    c->dropped = d->dropped;
    c->epochs = d->epochs;
    c->expired = d->expired;
    c->cached = d->n;
    c->names = d->epoch == FS_DC_YES;
    pthread_mutex_unlock(&d->lock);
}
