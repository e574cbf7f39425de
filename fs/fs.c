/*
 * The filesystem's shared machinery: handles, staged creates, aliases, read
 * barriers, error mapping, the /.raftfs/ files and the invalidation thread.
 * The operations themselves are in ops_read.c and ops_write.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../common/err.h"
#include "../common/heap.h"
#include "../consensus/status.h"
#include "fs_i.h"

void fs_options_default(struct fs_options *o)
{
    memset(o, 0, sizeof(*o));
    o->linearizable = true;
    o->cache_timeout = 1.0;
    o->dircache = true;
    o->max_write = 1u << 20;
}

int fs_errno(int code)
{
    if (code >= 0) {
        return code; /* Already a positive errno (an apply result). */
    }
    if (code > -4096) {
        return -code;
    }
    switch (code) {
    case RFS_ESHUTDOWN:
        /* The mount is going away: what a dead FUSE daemon answers too. */
        return ENOTCONN;
    case RFS_EREMOVED:
        /* This node left the cluster: its copy no longer changes. */
        return EROFS;
    case RFS_ETOOBIG:
    case RFS_EBUSY:
        return EAGAIN;
    default:
        return EIO;
    }
}

double fs__timeout(const struct fs *fs)
{
    return fs->o.linearizable ? 0.0 : fs->o.cache_timeout;
}

void fs__handle_flags(const struct fs *fs, const struct fs_handle *h,
                      struct fuse_file_info *fi)
{
    fi->keep_cache = !fs->o.linearizable;
    /* A linearizable read-only handle reads its snapshot exactly, past
     * whatever size the kernel cached: a writer's O_TRUNC open on this
     * node sets the kernel's size to 0 before the truncate (staged with
     * its first write) exists anywhere, and readers there got 0 bytes.
     * The cost: such a handle cannot be mmapped MAP_SHARED.
     * An O_APPEND handle writes around the page cache as well: through
     * it, the kernel splits a write that starts inside a page it does not
     * hold into two requests, and each is applied at the end of the file
     * as of its own apply, so another node's append could land between
     * the halves and tear both (found by the chaos run). Direct I/O sends
     * each write() whole, up to max_write; MAP_SHARED is refused there
     * too (ENODEV; libfuse 3.14 cannot ask for FUSE_DIRECT_IO_ALLOW_MMAP). */
    fi->direct_io = h->writable ? h->append : fs->o.linearizable;
    /* A read-only handle stages nothing, but its close must still FLUSH:
     * that is how the kernel releases the closer's POSIX locks (a
     * read lock needs only a read-only descriptor). */
    fi->noflush = 0;
    if (h->staged_create) {
        /* Except a create through it: the close that ends the handle
         * commits the create, so its FLUSH must come. Nothing of the file
         * is cached yet, nor is there a snapshot to read directly; a
         * lookup would find nothing before the create commits. (Set by
         * this thread before the kernel knows the handle.) */
        fi->keep_cache = 0;
        fi->noflush = 0;
        fi->direct_io = h->writable && h->append;
    }
}

void fs__reply_err(fuse_req_t req, int code)
{
    fuse_reply_err(req, fs_errno(code));
}

/* ------------------------------------------------------------------------ */
/* Attributes                                                                */

mode_t fs__type_mode(uint8_t type)
{
    switch (type) {
    case STORE_DIR:
        return S_IFDIR;
    case STORE_SYMLINK:
        return S_IFLNK;
    case STORE_FIFO:
        return S_IFIFO;
    case STORE_SOCK:
        return S_IFSOCK;
    case STORE_CHR:
        return S_IFCHR;
    case STORE_BLK:
        return S_IFBLK;
    default:
        return S_IFREG;
    }
}

void fs__attr_to_stat(const struct store_attr *a, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = a->ino;
    /* A fifo, socket or device: the kernel sees its type and number and
     * serves its I/O itself; nothing of it reaches us but its name. */
    st->st_mode = fs__type_mode(a->type) | (a->mode & 07777);
    st->st_rdev = (dev_t)a->rdev;
    st->st_nlink = a->nlink;
    st->st_uid = a->uid;
    st->st_gid = a->gid;
    st->st_size = (off_t)a->size;
    st->st_blksize = 4096;
    /* A file's blocks are what its chunks hold, so a sparse file shows
     * few (`du`); the size may be far larger. */
    uint64_t held = a->type == STORE_FILE ? a->stored : a->size;
    st->st_blocks = (blkcnt_t)((held + 511) / 512);
    st->st_atim.tv_sec = a->atime_ns / 1000000000;
    st->st_atim.tv_nsec = a->atime_ns % 1000000000;
    st->st_mtim.tv_sec = a->mtime_ns / 1000000000;
    st->st_mtim.tv_nsec = a->mtime_ns % 1000000000;
    st->st_ctim.tv_sec = a->ctime_ns / 1000000000;
    st->st_ctim.tv_nsec = a->ctime_ns % 1000000000;
}

void fs__reply_entry(struct fs *fs, fuse_req_t req, const struct store_attr *a)
{
    struct fuse_entry_param e;
    memset(&e, 0, sizeof(e));
    e.ino = a->ino;
    fs__attr_to_stat(a, &e.attr);
    e.attr_timeout = fs__timeout(fs);
    e.entry_timeout = fs__timeout(fs);
    fuse_reply_entry(req, &e);
}

/* ------------------------------------------------------------------------ */
/* Handles                                                                   */

struct fs_handle *fs__handle_new(struct fs *fs, enum fs_handle_kind kind,
                                 uint64_t ino)
{
    struct fs_handle *h = rfs_calloc(1, sizeof(*h));
    if (h == NULL) {
        return NULL;
    }
    h->fs = fs;
    atomic_init(&h->refs, 1);
    h->kind = kind;
    h->kino = ino;
    h->ino = ino;
    pthread_mutex_init(&h->dlock, NULL);
    pthread_mutex_lock(&fs->lock);
    h->anext = fs->all;
    if (fs->all != NULL) {
        fs->all->aprev = h;
    }
    fs->all = h;
    pthread_mutex_unlock(&fs->lock);
    return h;
}

static void handle_free(struct fs *fs, struct fs_handle *h);

bool fs__handle_tryget(struct fs_handle *h)
{
    int r = atomic_load(&h->refs);
    while (r > 0 && !atomic_compare_exchange_weak(&h->refs, &r, r + 1)) {
    }
    return r > 0;
}

void fs__handle_put(struct fs_handle *h)
{
    if (h == NULL || atomic_fetch_sub(&h->refs, 1) != 1) {
        return;
    }
    struct fs *fs = h->fs;
    pthread_mutex_lock(&fs->lock);
    if (h->pending) {
        fs__pending_remove(fs, h);
    }
    if (h->aprev != NULL) {
        h->aprev->anext = h->anext;
    } else {
        fs->all = h->anext;
    }
    if (h->anext != NULL) {
        h->anext->aprev = h->aprev;
    }
    /* The last handle on an orphan: its data goes, as a local
     * filesystem frees an unlinked inode at its last close. */
    bool drop = h->orphan && !fs->store_gone;
    for (struct fs_handle *o = fs->all; drop && o; o = o->anext) {
        drop = !(o->orphan && o->ino == h->ino);
    }
    pthread_mutex_unlock(&fs->lock);
    if (drop) {
        (void)store_orphan_drop(node_store(fs->node), h->ino);
    }
    handle_free(fs, h);
}

/* The store's keep hook (store_set_keep), on the loop thread while an
 * entry applies: a file losing its last name is kept as an orphan if any
 * handle here has it open. Read-only handles read their view anyway; the
 * orphan also answers fstat for them. The handles are marked only once
 * the batch holding the orphan is written (mark_kept): a handle marked
 * earlier could look for its orphan before it exists. */
static bool keep_open(void *arg, uint64_t ino)
{
    struct fs *fs = arg;
    bool found = false;
    pthread_mutex_lock(&fs->lock);
    for (struct fs_handle *h = fs->all; h && !found; h = h->anext) {
        found = h->kind == FS_H_FILE && h->ino == ino;
    }
    if (found && fs->n_kept == fs->cap_kept) {
        size_t cap = fs->cap_kept ? 2 * fs->cap_kept : 8;
        uint64_t *k = rfs_realloc(fs->kept, cap * sizeof(*k));
        if (k == NULL) {
            found = false; /* No orphan: its handles answer ESTALE. */
        } else {
            fs->kept = k;
            fs->cap_kept = cap;
        }
    }
    if (found) {
        fs->kept[fs->n_kept++] = ino;
    }
    pthread_mutex_unlock(&fs->lock);
    return found;
}

/* After an apply (loop thread): mark the handles of the files it kept as
 * orphans. An orphan whose handles all closed meanwhile goes at once. */
static void mark_kept(struct fs *fs)
{
    pthread_mutex_lock(&fs->lock);
    if (fs->n_kept == 0) {
        pthread_mutex_unlock(&fs->lock);
        return;
    }
    size_t n_drop = 0;
    for (size_t i = 0; i < fs->n_kept; i++) {
        bool found = false;
        for (struct fs_handle *h = fs->all; h; h = h->anext) {
            if (h->kind == FS_H_FILE && h->ino == fs->kept[i]) {
                h->orphan = true;
                found = true;
            }
        }
        if (!found) {
            fs->kept[n_drop++] = fs->kept[i]; /* Reuses the array. */
        }
    }
    fs->n_kept = 0;
    pthread_mutex_unlock(&fs->lock);
    /* Only the loop thread appends to kept, and it is here. */
    for (size_t i = 0; i < n_drop; i++) {
        (void)store_orphan_drop(node_store(fs->node), fs->kept[i]);
    }
}

int fs__orphan_attr(struct fs *fs, uint64_t ino, struct store_attr *a)
{
    uint64_t real = 0;
    pthread_mutex_lock(&fs->lock);
    for (struct fs_handle *h = fs->all; h; h = h->anext) {
        if (h->orphan && (h->ino == ino || h->kino == ino)) {
            real = h->ino;
            break;
        }
    }
    pthread_mutex_unlock(&fs->lock);
    if (real == 0) {
        return -ENOENT;
    }
    int rv = store_orphan_getattr(node_store(fs->node), real, a);
    if (rv == 0) {
        a->ino = ino; /* The id the kernel knows. */
    }
    return rv;
}

static void handle_free(struct fs *fs, struct fs_handle *h)
{
    if (h->view != NULL) {
        store_view_free(node_store(fs->node), h->view);
    }
    for (size_t i = 0; i < h->n_ents; i++) {
        rfs_free(h->ents[i].name);
    }
    rfs_free(h->ents);
    rfs_free(h->text);
    pthread_mutex_destroy(&h->dlock);
    rfs_free(h);
}

struct fs_handle *fs__pending_by_ino(struct fs *fs, uint64_t kino)
{
    for (struct fs_handle *h = fs->pending; h; h = h->pnext) {
        if (h->kino == kino) {
            return h;
        }
    }
    return NULL;
}

struct fs_handle *fs__pending_by_name(struct fs *fs, uint64_t parent,
                                      const char *name, size_t len)
{
    for (struct fs_handle *h = fs->pending; h; h = h->pnext) {
        if (h->parent == parent && h->name_len == len &&
            memcmp(h->name, name, len) == 0) {
            return h;
        }
    }
    return NULL;
}

void fs__pending_remove(struct fs *fs, struct fs_handle *h)
{
    for (struct fs_handle **p = &fs->pending; *p; p = &(*p)->pnext) {
        if (*p == h) {
            *p = h->pnext;
            break;
        }
    }
    h->pending = false;
    h->pnext = NULL;
}

/* What a staged file looks like until its create applies: empty, new. */
void fs__pending_attr(const struct fs_handle *h, struct store_attr *a)
{
    memset(a, 0, sizeof(*a));
    a->ino = h->kino;
    a->type = STORE_FILE;
    a->mode = h->shown_mode & 07777;
    a->uid = h->uid;
    a->gid = h->shown_gid;
    a->nlink = 1;
    a->atime_ns = a->mtime_ns = a->ctime_ns = h->ctime_ns;
}

/* ------------------------------------------------------------------------ */
/* Aliases: a staged create that found the name taken at apply time wrote
 * into the existing file; the kernel still knows the id it was told.      */

uint64_t fs__resolve(struct fs *fs, uint64_t ino)
{
    if ((ino & STORE_INO_CHOSEN_MASK) != STORE_INO_CHOSEN) {
        return ino;
    }
    pthread_mutex_lock(&fs->lock);
    for (size_t i = 0; i < fs->n_aliases; i++) {
        if (fs->aliases[i].from == ino) {
            ino = fs->aliases[i].to;
            break;
        }
    }
    pthread_mutex_unlock(&fs->lock);
    return ino;
}

void fs__alias_add(struct fs *fs, uint64_t from, uint64_t to)
{
    pthread_mutex_lock(&fs->lock);
    if (fs->n_aliases == fs->cap_aliases) {
        size_t cap = fs->cap_aliases ? 2 * fs->cap_aliases : 8;
        struct fs_alias *a = rfs_realloc(fs->aliases, cap * sizeof(*a));
        if (a == NULL) {
            /* The kernel's id then reads as gone (ESTALE), which is what
             * an unlinked file looks like: degraded, not wrong. */
            pthread_mutex_unlock(&fs->lock);
            return;
        }
        fs->aliases = a;
        fs->cap_aliases = cap;
    }
    fs->aliases[fs->n_aliases++] = (struct fs_alias){from, to};
    pthread_mutex_unlock(&fs->lock);
}

void fs__alias_drop(struct fs *fs, uint64_t from)
{
    pthread_mutex_lock(&fs->lock);
    for (size_t i = 0; i < fs->n_aliases; i++) {
        if (fs->aliases[i].from == from) {
            fs->aliases[i] = fs->aliases[--fs->n_aliases];
            break;
        }
    }
    pthread_mutex_unlock(&fs->lock);
}

/* ------------------------------------------------------------------------ */
/* Read barriers                                                             */

struct barrier {
    struct fs *fs;
    fuse_req_t req;
    fs_read_fn fn;
    void *arg;
    bool local_if_cut_off;
};

static void barrier_done(void *data, int err, const struct store_result *r)
{
    (void)r;
    struct barrier *b = data;
    if (err == -ETIMEDOUT) {
        /* Also when the answer is then served locally: every later request
         * of the same system call (the kernel may send a getattr, a
         * revalidating lookup and a lookup for one open) must fail at once
         * instead of waiting out the timeout again. */
        pthread_mutex_lock(&b->fs->lock);
        b->fs->quorum_lost = true;
        pthread_mutex_unlock(&b->fs->lock);
    }
    /* RFS_ENOLEADER: the leader it asked stepped down, and none is known
     * now (it asked NODE_READ_LEADERLESS_FAILS). Answered locally, as a
     * node that knows no leader answers at once (fs__cut_off), without
     * marking the quorum lost: an election may well be under way. */
    if (b->local_if_cut_off && (err == RFS_EREMOVED || err == -ETIMEDOUT ||
                                err == RFS_ENOLEADER)) {
        err = 0; /* See fs__after_barrier_or_local(). */
    }
    if (err != 0) {
        fs__reply_err(b->req, err);
        rfs_free(b->arg);
    } else {
        b->fn(b->fs, b->req, b->arg);
    }
    rfs_free(b);
}

/* No leader to ask: none known, or one known only by name (another node,
 * and no peer connection open: a node its peers refuse, or cut off since
 * it last heard one). A single-node cluster leads itself with no peers. */
static bool cut_off(const struct node_status *st)
{
    return st->core.leader == RFS_NODE_NONE ||
           (st->core.leader != st->core.id && st->peers_connected == 0);
}

bool fs__cut_off(struct fs *fs)
{
    struct node_status st;
    node_status(fs->node, &st);
    return cut_off(&st);
}

bool fs__degraded(struct fs *fs)
{
    pthread_mutex_lock(&fs->lock);
    bool lost = fs->quorum_lost;
    pthread_mutex_unlock(&fs->lock);
    if (!lost) {
        return false;
    }
    struct node_status st;
    node_status(fs->node, &st);
    if (st.removed) {
        /* The node refuses at once itself, with the precise answer
         * (RFS_EREMOVED: EROFS). Its removal failed what was in flight
         * with ETIMEDOUT, which set quorum_lost. */
        return false;
    }
    if (cut_off(&st)) {
        return true;
    }
    pthread_mutex_lock(&fs->lock);
    fs->quorum_lost = false;
    pthread_mutex_unlock(&fs->lock);
    return false;
}

int fs__degraded_code(const struct fs *fs)
{
    return fs->o.linearizable ? -ETIMEDOUT : -EROFS;
}

static void after_barrier(struct fs *fs, fuse_req_t req, fs_read_fn fn,
                          void *arg, bool local_if_cut_off);

void fs__after_barrier(struct fs *fs, fuse_req_t req, fs_read_fn fn,
                       void *arg)
{
    after_barrier(fs, req, fn, arg, false);
}

void fs__after_barrier_or_local(struct fs *fs, fuse_req_t req, fs_read_fn fn,
                                void *arg)
{
    after_barrier(fs, req, fn, arg, true);
}

static void after_barrier(struct fs *fs, fuse_req_t req, fs_read_fn fn,
                          void *arg, bool local_if_cut_off)
{
    if (!fs->o.linearizable) {
        fn(fs, req, arg);
        return;
    }
    if (fs__degraded(fs)) {
        /* The last wait for a quorum already ran out and no leader has
         * shown since: answer at once, as the wait would have (locally
         * where the wait would have fallen back to the local state). */
        if (local_if_cut_off) {
            fn(fs, req, arg);
            return;
        }
        fuse_reply_err(req, ETIMEDOUT);
        rfs_free(arg);
        return;
    }
    struct barrier *b = rfs_malloc(sizeof(*b));
    if (b == NULL) {
        fuse_reply_err(req, ENOMEM);
        rfs_free(arg);
        return;
    }
    *b = (struct barrier){fs, req, fn, arg, local_if_cut_off};
    pthread_mutex_lock(&fs->lock);
    fs->cnt.barriers++;
    pthread_mutex_unlock(&fs->lock);
    /* Concurrent barriers share one ReadIndex round: the core confirms
     * leadership once for every read asked since its last round. */
    int rv = node_read_barrier(
        fs->node, local_if_cut_off ? NODE_READ_LEADERLESS_FAILS : 0,
        barrier_done, b);
    if (rv != 0) {
        fs__reply_err(req, rv);
        rfs_free(arg);
        rfs_free(b);
    }
}

/* ------------------------------------------------------------------------ */
/* /.raftfs/                                                                 */

static const char *const vnames[FS_VF_END] = {
    [FS_VF_STATUS] = "status",
    [FS_VF_LEADER] = "leader",
    [FS_VF_MEMBERS] = "members",
    [FS_VF_TRANSPORT] = "transport",
};

bool fs__is_vname(uint64_t parent, const char *name)
{
    return parent == STORE_ROOT_INO && strcmp(name, FS_VDIR_NAME) == 0;
}

uint64_t fs__vlookup(const char *name)
{
    for (unsigned k = FS_VF_STATUS; k < FS_VF_END; k++) {
        if (strcmp(name, vnames[k]) == 0) {
            return FS_VIRT_BIT | k;
        }
    }
    return 0;
}

const char *fs__vname(uint64_t ino)
{
    uint64_t k = ino & ~FS_VIRT_BIT;
    return k >= FS_VF_STATUS && k < FS_VF_END ? vnames[k] : NULL;
}

static size_t transport(const struct node_status *st, char *buf, size_t cap)
{
    (void)st;
    return fs_uring_describe(buf, cap);
}

/* /.raftfs/transport's second line: what the kernel caches (dircache.c). */
static size_t dircache_line(struct fs *fs, char *buf, size_t cap)
{
    struct fs_dc_counters c;
    fs__dc_counters(fs, &c);
    int n = snprintf(buf, cap,
                     "dircache %s names=%s cached=%u granted=%" PRIu64
                     " dropped=%" PRIu64 " epochs=%" PRIu64
                     " expired=%" PRIu64 "\n",
                     fs->dc.on ? "on" : "off", c.names ? "yes" : "no",
                     c.cached, c.granted, c.dropped, c.epochs, c.expired);
    return n < 0 ? 0 : (size_t)n;
}

int fs__vrender(struct fs *fs, uint64_t ino, char **text, size_t *len)
{
    struct node_status st;
    node_status(fs->node, &st);
    size_t (*render)(const struct node_status *, char *, size_t);
    switch (ino & ~FS_VIRT_BIT) {
    case FS_VF_STATUS:
        render = status_json;
        break;
    case FS_VF_LEADER:
        render = status_leader;
        break;
    case FS_VF_MEMBERS:
        render = status_members;
        break;
    case FS_VF_TRANSPORT:
        render = transport;
        break;
    default:
        return -ENOENT;
    }
    bool dc = render == transport;
    size_t head = render(&st, NULL, 0);
    size_t need = head + (dc ? dircache_line(fs, NULL, 0) + 64 : 0);
    char *buf = rfs_malloc(need + 1);
    if (buf == NULL) {
        return -ENOMEM;
    }
    render(&st, buf, need + 1);
    if (dc) {
        /* The counters may have grown since they were measured: the
         * 64 bytes spare cover that, and snprintf cuts what they do not. */
        size_t room = need - head;
        size_t line = dircache_line(fs, buf + head, room + 1);
        need = head + (line < room ? line : room);
    }
    *text = buf;
    *len = need;
    return 0;
}

int fs__vattr(struct fs *fs, uint64_t ino, struct store_attr *a)
{
    memset(a, 0, sizeof(*a));
    a->ino = ino;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    a->atime_ns = a->mtime_ns = a->ctime_ns =
        (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    if (ino == FS_VDIR_INO) {
        a->type = STORE_DIR;
        a->mode = 0555;
        a->nlink = 2;
        return 0;
    }
    char *text;
    size_t len;
    int rv = fs__vrender(fs, ino, &text, &len);
    if (rv != 0) {
        return rv;
    }
    rfs_free(text);
    a->type = STORE_FILE;
    a->mode = 0444;
    a->nlink = 1;
    a->size = len;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Invalidation (reads=local)                                                */

static void inval_push(struct fs *fs, uint64_t ino, uint64_t parent,
                       const char *name, uint16_t name_len)
{
    struct fs_inval *v = rfs_malloc(sizeof(*v) + name_len);
    if (v == NULL) {
        return; /* The cache timeout still bounds the staleness. */
    }
    v->next = NULL;
    v->ino = ino;
    v->parent = parent;
    v->off = 0;
    v->len = 0;
    v->name_len = name_len;
    if (name_len) {
        memcpy(v->name, name, name_len);
    }
    pthread_mutex_lock(&fs->lock);
    *fs->inval_tail = v;
    fs->inval_tail = &v->next;
    fs->inval_pushed++;
    pthread_cond_signal(&fs->inval_cond);
    pthread_mutex_unlock(&fs->lock);
}

static void *inval_main(void *arg)
{
    struct fs *fs = arg;
    pthread_mutex_lock(&fs->lock);
    for (;;) {
        while (fs->inval_head == NULL && !fs->inval_stop) {
            pthread_cond_wait(&fs->inval_cond, &fs->lock);
        }
        if (fs->inval_stop) {
            break;
        }
        struct fs_inval *v = fs->inval_head;
        fs->inval_head = v->next;
        if (fs->inval_head == NULL) {
            fs->inval_tail = &fs->inval_head;
        }
        struct fuse_session *se = fs->se;
        fs->cnt.invalidations++;
        pthread_mutex_unlock(&fs->lock);
        /* -ENOENT only means the kernel holds nothing to drop. */
        if (se != NULL && v->parent != 0) {
            fuse_lowlevel_notify_inval_entry(se, v->parent, v->name,
                                             v->name_len);
        }
        if (se != NULL && v->ino != 0) {
            fuse_lowlevel_notify_inval_inode(se, v->ino, (off_t)v->off,
                                             (off_t)v->len);
        }
        rfs_free(v);
        pthread_mutex_lock(&fs->lock);
    }
    pthread_mutex_unlock(&fs->lock);
    return NULL;
}

void fs__inval_inode(struct fs *fs, uint64_t kino)
{
    inval_push(fs, kino, 0, NULL, 0);
}

void fs__inval_range(struct fs *fs, uint64_t kino, uint64_t off,
                     uint64_t len)
{
    uint64_t end = off + len;
    pthread_mutex_lock(&fs->lock);
    for (struct fs_inval *v = fs->inval_head; v != NULL; v = v->next) {
        if (v->ino != kino || v->parent != 0) {
            continue;
        }
        /* Still queued, so it goes out after this caller's reply. */
        if (v->len != 0) {
            if (off > v->off + v->len || end < v->off) {
                continue; /* Apart: merging would drop pages not read. */
            }
            uint64_t vend = v->off + v->len;
            v->off = off < v->off ? off : v->off;
            v->len = (end > vend ? end : vend) - v->off;
        }
        pthread_mutex_unlock(&fs->lock);
        return;
    }
    pthread_mutex_unlock(&fs->lock);
    struct fs_inval *v = rfs_malloc(sizeof(*v));
    if (v == NULL) {
        return; /* The cache timeout still bounds the staleness. */
    }
    *v = (struct fs_inval){.ino = kino, .off = off, .len = len};
    pthread_mutex_lock(&fs->lock);
    *fs->inval_tail = v;
    fs->inval_tail = &v->next;
    fs->inval_pushed++;
    pthread_cond_signal(&fs->inval_cond);
    pthread_mutex_unlock(&fs->lock);
}

bool fs__test_stuck(struct fs *fs, uint64_t parent, const char *name)
{
    if (fs->test_stuck[0] == '\0' || strcmp(name, fs->test_stuck) != 0) {
        return false;
    }
    inval_push(fs, 0, parent, name, (uint16_t)strlen(name));
    return true;
}

void fs_on_apply(void *data, rfs_index_t index, const struct store_cmd *c,
                 const struct store_result *r, bool own)
{
    (void)index;
    struct fs *fs = data;
    mark_kept(fs);
    fs__dc_applied(fs, c);
    fs__watch_applied(fs);
    fs__locks_on_apply(fs, r);
    /* Linearizable mounts cache nothing; changes made through this mount
     * are known to the kernel already, except a put's (a setxattr to the
     * kernel: it replaced a file's pages and maybe made a name). */
    if (fs->o.linearizable || (own && (c == NULL || c->op != STORE_OP_PUT))) {
        return;
    }
    if (c == NULL) {
        /* A snapshot replaced everything. There is no "drop all" call;
         * the root's attributes go now and the rest age out within the
         * cache timeout (docs/fs.md). */
        inval_push(fs, STORE_ROOT_INO, 0, NULL, 0);
        return;
    }
    if (r->err != 0 || r->duplicate) {
        return;
    }
    switch (c->op) {
    case STORE_OP_WRITE:
    case STORE_OP_SETATTR:
    case STORE_OP_SETXATTR:    /* ctime */
    case STORE_OP_REMOVEXATTR:
        inval_push(fs, c->ino, 0, NULL, 0);
        break;
    case STORE_OP_CREATE:
    case STORE_OP_PUT:
        inval_push(fs, r->ino, c->parent, c->name, c->name_len);
        inval_push(fs, c->parent, 0, NULL, 0);
        break;
    case STORE_OP_MKDIR:
    case STORE_OP_SYMLINK:
    case STORE_OP_MKNOD:
    case STORE_OP_RMDIR:
        inval_push(fs, c->parent, c->parent, c->name, c->name_len);
        break;
    case STORE_OP_UNLINK:
    case STORE_OP_LINK:
        /* The file's other names show its new nlink and ctime: the
         * kernel caches them per inode, not per name. */
        inval_push(fs, c->parent, c->parent, c->name, c->name_len);
        inval_push(fs, r->ino, 0, NULL, 0);
        break;
    case STORE_OP_RENAME:
        inval_push(fs, c->parent, c->parent, c->name, c->name_len);
        inval_push(fs, c->new_parent, c->new_parent, c->new_name,
                   c->new_name_len);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                 */

int fs_new(const struct fs_options *o, struct fs **out)
{
    struct fs *fs = rfs_calloc(1, sizeof(*fs));
    if (fs == NULL) {
        return -ENOMEM;
    }
    fs->o = *o;
    if (o->data_dir != NULL) {
        snprintf(fs->data_dir, sizeof(fs->data_dir), "%s", o->data_dir);
    }
    fs->o.data_dir = fs->data_dir;
    if (fs->o.max_write == 0) {
        fs->o.max_write = 1u << 20;
    }
    pthread_mutex_init(&fs->lock, NULL);
    pthread_mutex_init(&fs->watch_lock, NULL);
    pthread_cond_init(&fs->inval_cond, NULL);
    pthread_cond_init(&fs->stage_cond, NULL);
    const char *delay = getenv("RAFTFS_TEST_STAGE_DELAY_MS");
    fs->test_stage_delay_ms = delay != NULL ? atoi(delay) : 0;
    fs->inval_tail = &fs->inval_head;
    if (!fs->o.linearizable) {
        if (pthread_create(&fs->inval_thread, NULL, inval_main, fs) != 0) {
            pthread_cond_destroy(&fs->inval_cond);
            pthread_cond_destroy(&fs->stage_cond);
            pthread_mutex_destroy(&fs->watch_lock);
            pthread_mutex_destroy(&fs->lock);
            rfs_free(fs);
            return -EAGAIN;
        }
        fs->inval_started = true;
        const char *stuck = getenv("RAFTFS_TEST_STUCK_LOOKUP");
        if (stuck != NULL) {
            snprintf(fs->test_stuck, sizeof(fs->test_stuck), "%s", stuck);
        }
    }
    fs__dc_init(fs);
    *out = fs;
    return 0;
}

void fs_attach(struct fs *fs, struct node *n, struct fuse_session *se)
{
    pthread_mutex_lock(&fs->lock);
    fs->node = n;
    fs->se = se;
    pthread_mutex_unlock(&fs->lock);
    store_set_keep(node_store(n), keep_open, fs);
}

void fs_set_mount_id(struct fs *fs, uint64_t mnt_id)
{
    pthread_mutex_lock(&fs->lock);
    fs->mnt_id = mnt_id;
    pthread_mutex_unlock(&fs->lock);
}

void fs_counters(struct fs *fs, struct fs_counters *c)
{
    pthread_mutex_lock(&fs->lock);
    *c = fs->cnt;
    pthread_mutex_unlock(&fs->lock);
}

void fs_drop_views(struct fs *fs)
{
    pthread_mutex_lock(&fs->lock);
    fs->store_gone = true; /* Orphans go at the next open anyway. */
    for (struct fs_handle *h = fs->all; h; h = h->anext) {
        if (h->view != NULL) {
            store_view_free(node_store(fs->node), h->view);
            h->view = NULL;
        }
    }
    pthread_mutex_unlock(&fs->lock);
}

void fs_free(struct fs *fs)
{
    if (fs == NULL) {
        return;
    }
    /* Waiters parked at unmount: their requests died with the mount. */
    fs__locks_free(fs);
    rfs_free(fs->lkown);
    /* Handles the kernel never released (files open at unmount). */
    while (fs->all != NULL) {
        struct fs_handle *h = fs->all;
        fs->all = h->anext;
        handle_free(fs, h);
    }
    if (fs->inval_started) {
        pthread_mutex_lock(&fs->lock);
        fs->inval_stop = true;
        pthread_cond_signal(&fs->inval_cond);
        pthread_mutex_unlock(&fs->lock);
        pthread_join(fs->inval_thread, NULL);
    }
    while (fs->inval_head) {
        struct fs_inval *v = fs->inval_head;
        fs->inval_head = v->next;
        rfs_free(v);
    }
    rfs_free(fs->aliases);
    rfs_free(fs->kept);
    fs__watch_free(fs); /* Parked watches: the kernel's side is gone. */
    pthread_mutex_destroy(&fs->watch_lock);
    fs__dc_free(fs);
    pthread_cond_destroy(&fs->inval_cond);
    pthread_cond_destroy(&fs->stage_cond);
    pthread_mutex_destroy(&fs->lock);
    rfs_free(fs);
}

const struct fuse_lowlevel_ops fs_ops = {
    .init = fs__op_init,
    .lookup = fs__op_lookup,
    .forget = fs__op_forget,
    .forget_multi = fs__op_forget_multi,
    .getattr = fs__op_getattr,
    .setattr = fs__op_setattr,
    .readlink = fs__op_readlink,
    .mknod = fs__op_mknod,
    .mkdir = fs__op_mkdir,
    .unlink = fs__op_unlink,
    .rmdir = fs__op_rmdir,
    .symlink = fs__op_symlink,
    .rename = fs__op_rename,
    .link = fs__op_link,
    .open = fs__op_open,
    .read = fs__op_read,
    .write = fs__op_write,
    .flush = fs__op_flush,
    .release = fs__op_release,
    .fsync = fs__op_fsync,
    .opendir = fs__op_opendir,
    .readdir = fs__op_readdir,
    .readdirplus = fs__op_readdirplus,
    .releasedir = fs__op_releasedir,
    .statfs = fs__op_statfs,
    .setxattr = fs__op_setxattr,
    .getxattr = fs__op_getxattr,
    .listxattr = fs__op_listxattr,
    .removexattr = fs__op_removexattr,
    .create = fs__op_create,
    .getlk = fs__op_getlk,
    .setlk = fs__op_setlk,
    .flock = fs__op_flock,
};
