/*
 * The operations that change nothing: lookup, getattr, open, read,
 * directories, symlinks, statfs, xattrs. In linearizable mode each one that
 * could show stale state passes a read barrier first and then runs on the
 * loop thread; reads of an open handle's data need none (the handle's
 * snapshot was taken after one).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "../common/heap.h"
#include "fs_i.h"

void fs__op_init(void *userdata, struct fuse_conn_info *conn)
{
    struct fs *fs = userdata;
    /* O_TRUNC comes with open, so the truncate can be staged and fused
     * with the first write instead of arriving as a separate setattr. */
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) {
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    }
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) {
        conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    }
    /* POSIX ACLs: the kernel reads system.posix_acl_* through getxattr
     * and checks permissions with them (default_permissions); the store
     * keeps the mode and the ACL in agreement at apply, and hands a
     * directory's default ACL to new entries. A default ACL replaces the
     * umask, so the kernel must leave the umask to us (DONT_MASK): it
     * comes with each create, mkdir and mknod, and apply decides. Were
     * DONT_MASK refused, the kernel would take the umask away first and
     * apply would take it again: the same mode, except under a default
     * ACL. */
    if (conn->capable & FUSE_CAP_POSIX_ACL) {
        conn->want |= FUSE_CAP_POSIX_ACL;
    }
    if (conn->capable & FUSE_CAP_DONT_MASK) {
        conn->want |= FUSE_CAP_DONT_MASK;
    }
    /* Write-through: a write returns only once committed, so the kernel
     * must not buffer writes in its page cache. */
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    /* One write() of up to max_write bytes arrives as one request, hence
     * one entry; libfuse asks the kernel for the pages this needs. */
    conn->max_write = fs->o.max_write;
    /* Locks go through the replicated lock table (fs/locks.c), not the
     * kernel's own per-node one. */
    if (conn->capable & FUSE_CAP_POSIX_LOCKS) {
        conn->want |= FUSE_CAP_POSIX_LOCKS;
    }
    if (conn->capable & FUSE_CAP_FLOCK_LOCKS) {
        conn->want |= FUSE_CAP_FLOCK_LOCKS;
    }
}

/* ------------------------------------------------------------------------ */
/* lookup                                                                    */

struct lookup_arg {
    uint64_t parent;
    size_t len;
    char name[];
};

static void lookup_run(struct fs *fs, fuse_req_t req, void *arg)
{
    struct lookup_arg *l = arg;
    struct store_attr a;
    rfs_index_t seen = node_read_floor(fs->node);
    int rv = store_lookup(node_store(fs->node), NULL, l->parent, l->name,
                          l->len, &a);
    if (rv == -ENOENT) {
        pthread_mutex_lock(&fs->lock);
        struct fs_handle *h =
            fs__pending_by_name(fs, l->parent, l->name, l->len);
        if (h != NULL) {
            fs__pending_attr(h, &a);
            rv = 0;
        }
        pthread_mutex_unlock(&fs->lock);
    }
    rfs_free(l);
    if (rv == 0 && fs->o.linearizable) {
        fs__dc_reply_entry(fs, req, &a, seen);
    } else if (rv == 0) {
        fs__reply_entry(fs, req, &a);
    } else if (rv == -ENOENT && fs__timeout(fs) > 0) {
        /* A negative entry, cached like the positive ones (and dropped
         * when a create elsewhere applies here). */
        struct fuse_entry_param e;
        memset(&e, 0, sizeof(e));
        e.entry_timeout = fs__timeout(fs);
        fuse_reply_entry(req, &e);
    } else {
        fs__reply_err(req, rv);
    }
}

void fs__op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fs *fs = fuse_req_userdata(req);
    size_t len = strlen(name);
    if (len > STORE_NAME_MAX) {
        fuse_reply_err(req, ENAMETOOLONG);
        return;
    }
    struct store_attr a;
    if (parent == FS_VDIR_INO || fs__is_vname(parent, name)) {
        uint64_t ino = parent == FS_VDIR_INO ? fs__vlookup(name)
                                             : FS_VDIR_INO;
        int rv = ino ? fs__vattr(fs, ino, &a) : -ENOENT;
        if (rv != 0) {
            fs__reply_err(req, rv);
            return;
        }
        struct fuse_entry_param e;
        memset(&e, 0, sizeof(e));
        e.ino = ino;
        fs__attr_to_stat(&a, &e.attr);
        fuse_reply_entry(req, &e);
        return;
    }
    if (fs__test_stuck(fs, parent, name)) {
        return; /* Tests only: never answered (see fs_i.h). */
    }
    struct lookup_arg *l = rfs_malloc(sizeof(*l) + len);
    if (l == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    l->parent = parent;
    l->len = len;
    memcpy(l->name, name, len);
    fs__after_barrier(fs, req, lookup_run, l);
}

void fs__op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    (void)nlookup;
    /* Ids are the store's, so there is nothing to count, except an alias:
     * the kernel only ever learnt that id from the create that staged it,
     * so once it forgets the id the alias can go. */
    if ((ino & STORE_INO_CHOSEN_MASK) == STORE_INO_CHOSEN) {
        fs__alias_drop(fuse_req_userdata(req), ino);
    }
    fuse_reply_none(req);
}

void fs__op_forget_multi(fuse_req_t req, size_t count,
                         struct fuse_forget_data *forgets)
{
    struct fs *fs = fuse_req_userdata(req);
    for (size_t i = 0; i < count; i++) {
        if ((forgets[i].ino & STORE_INO_CHOSEN_MASK) == STORE_INO_CHOSEN) {
            fs__alias_drop(fs, forgets[i].ino);
        }
    }
    fuse_reply_none(req);
}

/* ------------------------------------------------------------------------ */
/* getattr                                                                   */

struct getattr_arg {
    uint64_t ino;
    struct fs_handle *h; /* A reference, if asked through an open file. */
};

static void getattr_run(struct fs *fs, fuse_req_t req, void *arg)
{
    struct getattr_arg *g = arg;
    struct store_attr a;
    struct store *s = node_store(fs->node);
    rfs_index_t seen = node_read_floor(fs->node);
    int rv = store_getattr(s, NULL, fs__resolve(fs, g->ino), &a);
    if (rv == -ENOENT) {
        /* Unlinked or replaced while open here: fstat of the orphan (the
         * kernel's fstat names no handle). */
        rv = fs__orphan_attr(fs, g->ino, &a);
    }
    if (rv == -ENOENT && g->h != NULL && g->h->view != NULL) {
        /* Unlinked elsewhere while this handle reads its snapshot: what
         * fstat shows for an unlinked open file. */
        rv = store_getattr(s, g->h->view, g->h->ino, &a);
        a.nlink = 0;
    }
    if (rv == -ENOENT) {
        /* The inode went (unlinked or replaced elsewhere) after the kernel
         * looked its name up: ESTALE makes the kernel look the path up
         * again, where ENOENT would claim the name is gone. */
        rv = -ESTALE;
    }
    if (rv == 0 && fs->o.linearizable) {
        /* An orphan's or a view's attributes are no directory's: no
         * timeout (only a directory gets one). */
        fs__dc_reply_attr(fs, req, &a, seen);
    } else if (rv == 0) {
        struct stat st;
        fs__attr_to_stat(&a, &st);
        fuse_reply_attr(req, &st, fs__timeout(fs));
    } else {
        fs__reply_err(req, rv);
    }
    fs__handle_put(g->h);
    rfs_free(g);
}

void fs__op_getattr(fuse_req_t req, fuse_ino_t ino,
                    struct fuse_file_info *fi)
{
    struct fs *fs = fuse_req_userdata(req);
    struct store_attr a;
    struct stat st;
    if (ino & FS_VIRT_BIT) {
        int rv = fs__vattr(fs, ino, &a);
        if (rv != 0) {
            fs__reply_err(req, rv);
            return;
        }
        fs__attr_to_stat(&a, &st);
        fuse_reply_attr(req, &st, 0);
        return;
    }
    pthread_mutex_lock(&fs->lock);
    struct fs_handle *p = fs__pending_by_ino(fs, ino);
    if (p != NULL) {
        fs__pending_attr(p, &a);
    }
    pthread_mutex_unlock(&fs->lock);
    if (p != NULL) {
        fs__attr_to_stat(&a, &st);
        fuse_reply_attr(req, &st, 0);
        return;
    }
    struct getattr_arg *g = rfs_calloc(1, sizeof(*g));
    if (g == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    g->ino = ino;
    if (fi != NULL && fi->fh != 0) {
        g->h = (struct fs_handle *)(uintptr_t)fi->fh;
        if (g->h->kind == FS_H_FILE) {
            atomic_fetch_add(&g->h->refs, 1);
        } else {
            g->h = NULL;
        }
    }
    if (ino == STORE_ROOT_INO && fs->o.linearizable) {
        /* Every path walk checks the root's permissions first: when the
         * node is cut off, or knows no leader to ask (a barrier could
         * only time out, commit_timeout later, and then answer the
         * same), answer from the local copy at once, so that
         * /.raftfs/status stays readable to say why nothing else is. */
        if (fs__cut_off(fs) || fs__degraded(fs)) {
            getattr_run(fs, req, g);
        } else {
            fs__after_barrier_or_local(fs, req, getattr_run, g);
        }
        return;
    }
    fs__after_barrier(fs, req, getattr_run, g);
}

/* ------------------------------------------------------------------------ */
/* open, read                                                                */

struct open_arg {
    uint64_t ino;
    struct fuse_file_info fi;
};

static struct open_arg *open_arg_new(fuse_req_t req, uint64_t ino,
                                     const struct fuse_file_info *fi)
{
    struct open_arg *o = rfs_malloc(sizeof(*o));
    if (o == NULL) {
        fuse_reply_err(req, ENOMEM);
        return NULL;
    }
    o->ino = ino;
    o->fi = *fi;
    return o;
}

/* Hand h to the kernel; if the caller was interrupted and is gone, drop
 * it. */
static void reply_open(fuse_req_t req, struct fuse_file_info *fi,
                       struct fs_handle *h)
{
    fi->fh = (uintptr_t)h;
    if (fuse_reply_open(req, fi) != 0) {
        fs__handle_put(h);
    }
}

static void open_run(struct fs *fs, fuse_req_t req, void *arg)
{
    struct open_arg *o = arg;
    uint64_t real = fs__resolve(fs, o->ino);
    struct store_attr a;
    int rv = store_getattr(node_store(fs->node), NULL, real, &a);
    if (rv == -ENOENT) {
        pthread_mutex_lock(&fs->lock);
        if (fs__pending_by_ino(fs, o->ino) != NULL) {
            rv = 0; /* Its create is on the way; writes follow it. */
            a.type = STORE_FILE;
        }
        pthread_mutex_unlock(&fs->lock);
    }
    if (rv == -ENOENT) {
        rv = -ESTALE; /* As in getattr_run: re-resolve the path. */
    }
    if (rv == 0 && a.type == STORE_DIR) {
        rv = -EISDIR;
    }
    struct fs_handle *h = NULL;
    if (rv == 0) {
        h = fs__handle_new(fs, FS_H_FILE, o->ino);
        rv = h == NULL ? -ENOMEM : 0;
    }
    if (rv != 0) {
        fs__reply_err(req, rv);
        rfs_free(o);
        return;
    }
    h->ino = real;
    int acc = o->fi.flags & O_ACCMODE;
    h->writable = acc != O_RDONLY;
    h->append = (o->fi.flags & O_APPEND) != 0;
    h->open_flags = (uint32_t)o->fi.flags;
    if (!h->writable) {
        /* Taken after the barrier: the whole file as of a linearizable
         * point, never torn by a writer. The count first: a change that
         * the view misses queues its invalidation after it. */
        pthread_mutex_lock(&fs->lock);
        h->inval_seen = fs->inval_pushed;
        pthread_mutex_unlock(&fs->lock);
        h->view = store_view_new(node_store(fs->node));
    } else if (o->fi.flags & O_TRUNC) {
        /* As ext4's open(O_TRUNC), the truncate clears setuid/setgid for
         * a caller without CAP_FSETID; the kernel does not here, since
         * the truncate travels with the open (FUSE_CAP_ATOMIC_O_TRUNC). */
        bool kill = fs__caller_kills_priv(req);
        pthread_mutex_lock(&fs->lock);
        h->staged_trunc = true;
        h->opener = fuse_req_ctx(req)->pid;
        h->kill_priv = kill;
        pthread_mutex_unlock(&fs->lock);
    }
    fs__handle_flags(fs, h, &o->fi);
    reply_open(req, &o->fi, h);
    rfs_free(o);
}

void fs__op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs *fs = fuse_req_userdata(req);
    if (ino & FS_VIRT_BIT) {
        if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
            fuse_reply_err(req, EACCES);
            return;
        }
        struct fs_handle *h = fs__handle_new(fs, FS_H_VIRT, ino);
        int rv = h ? fs__vrender(fs, ino, &h->text, &h->text_len) : -ENOMEM;
        if (rv != 0) {
            fs__handle_put(h);
            fs__reply_err(req, rv);
            return;
        }
        fi->direct_io = 1; /* Its size changes with every render. */
        fi->noflush = 1;
        reply_open(req, fi, h);
        return;
    }
    struct open_arg *o = open_arg_new(req, ino, fi);
    if (o == NULL) {
        return;
    }
    if ((fi->flags & O_ACCMODE) != O_RDONLY) {
        /* A writable handle reads the latest state and its writes are
         * decided at apply time (ESTALE if the file is gone by then):
         * nothing it does depends on a barrier here. */
        open_run(fs, req, o);
        return;
    }
    fs__after_barrier(fs, req, open_run, o);
}

static void read_handle(struct fs *fs, fuse_req_t req, struct fs_handle *h,
                        size_t size, off_t off);

void fs__op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                 struct fuse_file_info *fi)
{
    (void)ino;
    struct fs *fs = fuse_req_userdata(req);
    struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
    /* Hold the handle while replying from it: FUSE workers may run this
     * read and the handle's release out of order (ASan caught one). */
    if (!fs__handle_tryget(h)) {
        fuse_reply_err(req, EBADF);
        return;
    }
    read_handle(fs, req, h, size, off);
    fs__handle_put(h);
}

/* With kept pages (reads=local), what a read returns stays in the
 * kernel's page cache for later opens too. A handle reads its view, so
 * when the file changed after the view was taken, the pages just filled
 * are older than the change, whose invalidation may already have passed:
 * nothing would drop them before the cache timeout. Queue another
 * invalidation of the bytes just read, behind the reply, so the kernel
 * drops them once it has them (merged with one still queued for the same
 * file); this handle's own reads just come back to its view. Costs
 * nothing until some change is applied on this node after the open, and
 * two attribute reads the first time one is. */
static void drop_if_behind(struct fs *fs, struct fs_handle *h, uint64_t off,
                           uint64_t len)
{
    pthread_mutex_lock(&fs->lock);
    uint64_t pushed = fs->inval_pushed;
    bool behind = h->view_behind;
    bool check = !behind && pushed != h->inval_seen;
    pthread_mutex_unlock(&fs->lock);
    if (check) {
        struct store *s = node_store(fs->node);
        struct store_attr then, now;
        behind = store_getattr(s, h->view, h->ino, &then) != 0 ||
                 store_getattr(s, NULL, h->ino, &now) != 0 ||
                 then.revision != now.revision;
        pthread_mutex_lock(&fs->lock);
        h->view_behind = behind;
        h->inval_seen = pushed;
        pthread_mutex_unlock(&fs->lock);
    }
    if (behind) {
        fs__uring_flush(); /* The reply first, then the invalidation. */
        fs__inval_range(fs, h->kino, off, len);
    }
}

static void read_handle(struct fs *fs, fuse_req_t req, struct fs_handle *h,
                        size_t size, off_t off)
{
    if (h->kind == FS_H_VIRT) {
        size_t o = (size_t)off < h->text_len ? (size_t)off : h->text_len;
        size_t n = h->text_len - o < size ? h->text_len - o : size;
        fuse_reply_buf(req, h->text + o, n);
        return;
    }
    if (h->kind != FS_H_FILE) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    pthread_mutex_lock(&fs->lock);
    bool empty = h->staged_trunc || h->pending;
    uint64_t real = h->ino;
    pthread_mutex_unlock(&fs->lock);
    if (empty) {
        fuse_reply_buf(req, NULL, 0); /* As the staged change will leave it. */
        return;
    }
    char *buf = rfs_malloc(size ? size : 1);
    if (buf == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t got = 0;
    int rv = store_read(node_store(fs->node), h->view, real, (uint64_t)off,
                        size, buf, &got);
    if (rv == -ENOENT) {
        /* A writable handle's file lost its last name: read this node's
         * orphan (ESTALE if there is none, e.g. the handle was opened as
         * the unlink applied). */
        pthread_mutex_lock(&fs->lock);
        bool orphan = h->orphan;
        pthread_mutex_unlock(&fs->lock);
        rv = orphan ? store_orphan_read(node_store(fs->node), real,
                                        (uint64_t)off, size, buf, &got)
                    : -ENOENT;
    }
    if (rv == -ENOENT) {
        rv = -ESTALE;
    }
    if (rv == 0) {
        fuse_reply_buf(req, buf, got);
        /* The range asked, not got: the kernel zero-fills what a short
         * read left of its pages, and keeps those too. */
        if (h->view != NULL && !fs->o.linearizable && size > 0) {
            drop_if_behind(fs, h, (uint64_t)off, size);
        }
    } else {
        fs__reply_err(req, rv);
    }
    rfs_free(buf);
}

/* ------------------------------------------------------------------------ */
/* Directories                                                               */

static void opendir_run(struct fs *fs, fuse_req_t req, void *arg)
{
    struct open_arg *o = arg;
    struct store_attr a;
    int rv = store_getattr(node_store(fs->node), NULL, o->ino, &a);
    if (rv == -ENOENT) {
        rv = -ESTALE;
    }
    if (rv == 0 && a.type != STORE_DIR) {
        rv = -ENOTDIR;
    }
    struct fs_handle *h = NULL;
    if (rv == 0) {
        h = fs__handle_new(fs, FS_H_DIR, o->ino);
        rv = h == NULL ? -ENOMEM : 0;
    }
    if (rv != 0) {
        fs__reply_err(req, rv);
        rfs_free(o);
        return;
    }
    h->view = store_view_new(node_store(fs->node));
    reply_open(req, &o->fi, h);
    rfs_free(o);
}

void fs__op_opendir(fuse_req_t req, fuse_ino_t ino,
                    struct fuse_file_info *fi)
{
    struct fs *fs = fuse_req_userdata(req);
    if (ino == FS_VDIR_INO) {
        struct fs_handle *h = fs__handle_new(fs, FS_H_DIR, ino);
        if (h == NULL) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        reply_open(req, fi, h);
        return;
    }
    struct open_arg *o = open_arg_new(req, ino, fi);
    if (o != NULL) {
        fs__after_barrier(fs, req, opendir_run, o);
    }
}

static int dent_add(struct fs_handle *h, const char *name, size_t len,
                    uint64_t ino, uint8_t type)
{
    if ((h->n_ents & (h->n_ents + 1)) == 0) { /* 0, 1, 3, 7, ...: grow. */
        struct fs_dent *e =
            rfs_realloc(h->ents, 2 * (h->n_ents + 1) * sizeof(*e));
        if (e == NULL) {
            return -ENOMEM;
        }
        h->ents = e;
    }
    char *copy = rfs_malloc(len + 1);
    if (copy == NULL) {
        return -ENOMEM;
    }
    memcpy(copy, name, len);
    copy[len] = '\0';
    h->ents[h->n_ents++] = (struct fs_dent){ino, type, copy};
    return 0;
}

static int dent_cb(void *arg, const char *name, size_t name_len, uint64_t ino,
                   uint8_t type)
{
    return dent_add(arg, name, name_len, ino, type) != 0;
}

/* The whole listing, once per handle (and again on rewind): FUSE offsets
 * are positions in it, stable however the directory changes meanwhile. */
static int list_dir(struct fs *fs, struct fs_handle *h)
{
    for (size_t i = 0; i < h->n_ents; i++) {
        rfs_free(h->ents[i].name);
    }
    rfs_free(h->ents);
    h->ents = NULL;
    h->n_ents = 0;
    int rv = dent_add(h, ".", 1, h->ino, STORE_DIR);
    if (rv == 0) {
        rv = dent_add(h, "..", 2, h->ino, STORE_DIR);
    }
    if (rv != 0) {
        return rv;
    }
    if (h->ino == FS_VDIR_INO) {
        for (unsigned k = FS_VF_STATUS; k < FS_VF_END && rv == 0; k++) {
            const char *n = fs__vname(FS_VIRT_BIT | k);
            rv = dent_add(h, n, strlen(n), FS_VIRT_BIT | k, STORE_FILE);
        }
        return rv;
    }
    if (h->ino == STORE_ROOT_INO) {
        rv = dent_add(h, FS_VDIR_NAME, strlen(FS_VDIR_NAME), FS_VDIR_INO,
                      STORE_DIR);
        if (rv != 0) {
            return rv;
        }
    }
    return store_readdir(node_store(fs->node), h->view, h->ino, NULL, 0,
                         dent_cb, h);
}

/* The attributes a readdirplus entry hands the kernel, which caches them
 * for the entry and attribute timeouts. A handle with a view (reads=local)
 * lists the directory as it was at opendir, but attributes from that view
 * could be older than a change whose invalidation has already passed (the
 * same hazard as drop_if_behind's pages): an `ls -l` through an old
 * descriptor would put an old size back, and later opens would read the
 * new bytes cut at it. So the attributes come from the latest state, and
 * only while the name still names the same inode there; otherwise
 * -ESTALE: list the name without attributes. */
static int plus_attr(struct fs *fs, const struct fs_handle *h,
                     const struct fs_dent *d, struct store_attr *a)
{
    if (d->ino & FS_VIRT_BIT) {
        return fs__vattr(fs, d->ino, a);
    }
    struct store *s = node_store(fs->node);
    if (h->view == NULL) {
        return store_getattr(s, NULL, d->ino, a);
    }
    int rv = store_lookup(s, NULL, h->ino, d->name, strlen(d->name), a);
    if (rv == -ENOENT || (rv == 0 && a->ino != d->ino)) {
        return -ESTALE;
    }
    return rv;
}

static void readdir_common(fuse_req_t req, size_t size, off_t off,
                           struct fuse_file_info *fi, bool plus)
{
    struct fs *fs = fuse_req_userdata(req);
    struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
    pthread_mutex_lock(&h->dlock);
    if (off == 0 || !h->listed) {
        int rv = list_dir(fs, h);
        if (rv != 0) {
            pthread_mutex_unlock(&h->dlock);
            fs__reply_err(req, rv);
            return;
        }
        h->listed = true;
    }
    char *buf = rfs_malloc(size ? size : 1);
    if (buf == NULL) {
        pthread_mutex_unlock(&h->dlock);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t pos = 0;
    for (size_t i = (size_t)off; i < h->n_ents; i++) {
        const struct fs_dent *d = &h->ents[i];
        size_t need;
        if (!plus) {
            struct stat st;
            memset(&st, 0, sizeof(st));
            st.st_ino = d->ino;
            st.st_mode = fs__type_mode(d->type);
            need = fuse_add_direntry(req, buf + pos, size - pos, d->name, &st,
                                     (off_t)i + 1);
        } else {
            struct fuse_entry_param e;
            memset(&e, 0, sizeof(e));
            if (i < 2) {
                /* "." and "..": no entry, so no lookup to count. */
                e.attr.st_ino = d->ino;
                e.attr.st_mode = S_IFDIR;
            } else {
                struct store_attr a;
                int rv = plus_attr(fs, h, d, &a);
                if (rv == -ESTALE) {
                    /* Listed, but not attributes to cache: a plain entry
                     * (nodeid 0), which the kernel looks up if used. */
                    e.attr.st_ino = d->ino;
                    e.attr.st_mode = fs__type_mode(d->type);
                    goto add;
                }
                if (rv != 0) {
                    continue;
                }
                e.ino = d->ino;
                fs__attr_to_stat(&a, &e.attr);
                bool virt = d->ino & FS_VIRT_BIT;
                e.attr_timeout = virt ? 0 : fs__timeout(fs);
                e.entry_timeout = virt ? 0 : fs__timeout(fs);
            }
        add:
            need = fuse_add_direntry_plus(req, buf + pos, size - pos, d->name,
                                          &e, (off_t)i + 1);
        }
        if (need > size - pos) {
            break;
        }
        pos += need;
    }
    pthread_mutex_unlock(&h->dlock);
    fuse_reply_buf(req, buf, pos);
    rfs_free(buf);
}

void fs__op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)ino;
    readdir_common(req, size, off, fi, false);
}

void fs__op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
                        off_t off, struct fuse_file_info *fi)
{
    (void)ino;
    readdir_common(req, size, off, fi, true);
}

void fs__op_releasedir(fuse_req_t req, fuse_ino_t ino,
                       struct fuse_file_info *fi)
{
    (void)ino;
    fs__handle_put((struct fs_handle *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* ------------------------------------------------------------------------ */
/* readlink, statfs                                                          */

struct ino_arg {
    uint64_t ino;
    size_t size;
};

static void readlink_run(struct fs *fs, fuse_req_t req, void *arg)
{
    struct ino_arg *r = arg;
    char buf[STORE_SYMLINK_MAX + 1];
    size_t len = 0;
    int rv = store_readlink(node_store(fs->node), NULL, r->ino, buf,
                            sizeof(buf) - 1, &len);
    rfs_free(r);
    if (rv == -ENOENT) {
        rv = -ESTALE;
    }
    if (rv != 0) {
        fs__reply_err(req, rv);
        return;
    }
    buf[len] = '\0';
    fuse_reply_readlink(req, buf);
}

void fs__op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    struct fs *fs = fuse_req_userdata(req);
    if (ino & FS_VIRT_BIT) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    struct ino_arg *r = rfs_calloc(1, sizeof(*r));
    if (r == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    r->ino = ino;
    fs__after_barrier(fs, req, readlink_run, r);
}

void fs__op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    struct fs *fs = fuse_req_userdata(req);
    struct statvfs disk;
    if (statvfs(fs->data_dir[0] ? fs->data_dir : "/", &disk) != 0) {
        fuse_reply_err(req, errno);
        return;
    }
    struct store_usage u = {0};
    store_usage(node_store(fs->node), &u);
    /* The disk's real size and free space, less the reserve below which
     * the store refuses writes (ENOSPC) so it can always apply what it
     * has committed. */
    uint64_t frsize = disk.f_frsize ? disk.f_frsize : 4096;
    uint64_t reserve = fs->o.min_free_bytes / frsize;
    struct statvfs st;
    memset(&st, 0, sizeof(st));
    st.f_bsize = 4096;
    st.f_frsize = frsize;
    st.f_blocks = disk.f_blocks;
    st.f_bfree = disk.f_bfree > reserve ? disk.f_bfree - reserve : 0;
    st.f_bavail = disk.f_bavail > reserve ? disk.f_bavail - reserve : 0;
    st.f_files = u.files + disk.f_favail;
    st.f_ffree = disk.f_favail;
    st.f_favail = disk.f_favail;
    st.f_namemax = STORE_NAME_MAX;
    fuse_reply_statfs(req, &st);
}

/* ------------------------------------------------------------------------ */
/* xattrs: "user.", "trusted.", security.capability and POSIX ACLs are stored (replicated,
 * read from this node's copy); user.raftfs.revision is virtual: the index of
 * the entry that last changed a file, readable by name and never listed;
 * user.raftfs.ephemeral is stored like a user. name (docs/fs.md).
 * Changes are in ops_write.c. */

enum fs_xattr_ns fs__xattr_ns(const char *name)
{
    if (strcmp(name, STORE_EPHEMERAL_XATTR) == 0) {
        /* The one stored raftfs name: it marks a directory whose new
         * files are ephemeral (the store checks the type and value). */
        return FS_XNS_USER;
    }
    if (strncmp(name, "user.raftfs.", 12) == 0) {
        return FS_XNS_RESERVED;
    }
    if (strncmp(name, "user.", 5) == 0) {
        return FS_XNS_USER;
    }
    if (strncmp(name, "trusted.", 8) == 0) {
        return FS_XNS_TRUSTED;
    }
    if (strcmp(name, "security.capability") == 0) {
        return FS_XNS_CAPS;
    }
    if (strcmp(name, STORE_ACL_ACCESS) == 0 ||
        strcmp(name, STORE_ACL_DEFAULT) == 0) {
        return FS_XNS_ACL;
    }
    if (strncmp(name, "security.", 9) == 0 ||
        strncmp(name, "system.", 7) == 0) {
        return FS_XNS_UNSTORED;
    }
    return FS_XNS_OTHER;
}

/* ino has no record in the store, but the kernel may still name it: a
 * create staged on this node, or an orphan (a file unlinked while open
 * here). Neither has attributes. */
static bool xattr_nameless(struct fs *fs, uint64_t ino)
{
    pthread_mutex_lock(&fs->lock);
    bool pending = fs__pending_by_ino(fs, ino) != NULL;
    pthread_mutex_unlock(&fs->lock);
    struct store_attr a;
    return pending || fs__orphan_attr(fs, ino, &a) == 0;
}

/* Answer a getxattr or listxattr of `len` bytes in val: the size for a
 * size-0 probe, ERANGE when the caller's buffer is too small. */
static void reply_xattr(fuse_req_t req, size_t size, const void *val,
                        size_t len)
{
    if (size == 0) {
        fuse_reply_xattr(req, len);
    } else if (size < len) {
        fuse_reply_err(req, ERANGE);
    } else {
        fuse_reply_buf(req, val, len);
    }
}

struct xattr_arg {
    uint64_t ino;
    size_t size;
    bool revision;     /* getxattr of user.raftfs.revision. */
    bool lock;         /* getxattr of user.raftfs.lock. */
    size_t name_len;
    char name[];
};

static void getxattr_run(struct fs *fs, fuse_req_t req, void *arg)
{
    struct xattr_arg *x = arg;
    struct store *st = node_store(fs->node);
    uint64_t ino = fs__resolve(fs, x->ino);
    int rv;
    if (x->lock) {
        uint64_t token = 0;
        rv = fs__locks_token(fs, ino, &token);
        if (rv == 0) {
            char val[32];
            int len = snprintf(val, sizeof(val), "%" PRIu64, token);
            reply_xattr(req, x->size, val, (size_t)len);
            rfs_free(x);
            return;
        }
    } else if (x->revision) {
        struct store_attr a;
        rv = store_getattr(st, NULL, ino, &a);
        if (rv == 0) {
            char val[32];
            int len = snprintf(val, sizeof(val), "%" PRIu64, a.revision);
            reply_xattr(req, x->size, val, (size_t)len);
            rfs_free(x);
            return;
        }
    } else {
        /* A value is at most STORE_XATTR_SIZE_MAX: a larger buffer is
         * never needed. */
        size_t cap = x->size < STORE_XATTR_SIZE_MAX ? x->size
                                                    : STORE_XATTR_SIZE_MAX;
        void *buf = cap > 0 ? rfs_malloc(cap) : NULL;
        size_t len = 0;
        rv = cap > 0 && buf == NULL
                 ? -ENOMEM
                 : store_getxattr(st, NULL, ino, x->name, x->name_len, buf,
                                  cap, &len);
        if (rv == 0) {
            reply_xattr(req, x->size, buf, len);
            rfs_free(buf);
            rfs_free(x);
            return;
        }
        rfs_free(buf);
        if (rv == -ENOENT && xattr_nameless(fs, x->ino)) {
            rv = -ENODATA;
        }
    }
    rfs_free(x);
    fs__reply_err(req, rv == -ENOENT ? -ESTALE : rv);
}

void fs__op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                     size_t size)
{
    if (fs__watch_getxattr(req, ino, name, size)) {
        return;
    }
    struct fs *fs = fuse_req_userdata(req);
    bool revision = strcmp(name, FS_REVISION_XATTR) == 0;
    bool lock = strcmp(name, FS_LOCK_XATTR) == 0;
    size_t len = strlen(name);
    int e = 0;
    switch (fs__xattr_ns(name)) {
    case FS_XNS_USER:
    case FS_XNS_CAPS: /* getcap works for anyone, as on ext4. */
    case FS_XNS_ACL:  /* So does getfacl; the kernel reads them too. */
        break;
    case FS_XNS_TRUSTED:
        /* ext4: only CAP_SYS_ADMIN sees trusted.* (the kernel asks the
         * same before it sends the request). */
        e = fs__caller_has_cap(req, CAP_SYS_ADMIN) ? 0 : ENODATA;
        break;
    case FS_XNS_RESERVED:
        e = revision || lock ? 0 : ENODATA;
        break;
    case FS_XNS_UNSTORED:
        /* No SELinux label: "nothing here", which is what cp -a and
         * rsync -X take quietly. */
        e = ENODATA;
        break;
    case FS_XNS_OTHER:
        e = EOPNOTSUPP; /* No such namespace (ext4 says the same). */
        break;
    }
    if (e == 0 && ((ino & FS_VIRT_BIT) || len > STORE_XATTR_NAME_MAX)) {
        e = ENODATA;
    }
    if (e != 0) {
        fuse_reply_err(req, e);
        return;
    }
    struct xattr_arg *x = rfs_calloc(1, sizeof(*x) + len);
    if (x == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    x->ino = ino;
    x->size = size;
    x->revision = revision;
    x->lock = lock;
    x->name_len = len;
    memcpy(x->name, name, len);
    fs__after_barrier(fs, req, getxattr_run, x);
}

static void listxattr_run(struct fs *fs, fuse_req_t req, void *arg)
{
    struct xattr_arg *x = arg;
    /* The store keeps every inode's list within STORE_XATTR_LIST_MAX. */
    char *buf = rfs_malloc(STORE_XATTR_LIST_MAX);
    size_t len = 0;
    int rv = buf == NULL ? -ENOMEM
                         : store_listxattr(node_store(fs->node), NULL,
                                           fs__resolve(fs, x->ino), buf,
                                           STORE_XATTR_LIST_MAX, &len);
    if (rv == -ENOENT && xattr_nameless(fs, x->ino)) {
        rv = 0;
        len = 0;
    }
    bool trusted = false;
    for (size_t i = 0; rv == 0 && i < len; i += strlen(buf + i) + 1) {
        trusted = trusted || fs__xattr_ns(buf + i) == FS_XNS_TRUSTED;
    }
    /* Only a list that names trusted.* attributes needs the caller's
     * capabilities: /proc is read for those alone (a small read that never
     * enters a filesystem, so it cannot wait on this mount, also when this
     * runs on the loop thread). */
    if (trusted && !fs__caller_has_cap(req, CAP_SYS_ADMIN)) {
        /* Drop trusted.* names, as ext4 does for such a caller. */
        size_t out = 0;
        for (size_t i = 0; i < len;) {
            size_t n = strlen(buf + i) + 1;
            if (fs__xattr_ns(buf + i) != FS_XNS_TRUSTED) {
                memmove(buf + out, buf + i, n);
                out += n;
            }
            i += n;
        }
        len = out;
    }
    if (rv == 0 && len > STORE_XATTR_LIST_MAX) {
        rv = -E2BIG; /* Cannot happen: the store refuses it (ENOSPC). */
    }
    if (rv == 0) {
        reply_xattr(req, x->size, buf, len);
    } else {
        fs__reply_err(req, rv == -ENOENT ? -ESTALE : rv);
    }
    rfs_free(buf);
    rfs_free(x);
}

void fs__op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    struct fs *fs = fuse_req_userdata(req);
    /* The revision is virtual and not listed (CephFS does the same with
     * its virtual attributes): `cp -a`, `mv` and `rsync -X` copy what
     * listxattr names, and setting the revision fails with EPERM. It stays
     * readable by name. */
    if (ino & FS_VIRT_BIT) {
        reply_xattr(req, size, NULL, 0);
        return;
    }
    struct xattr_arg *x = rfs_calloc(1, sizeof(*x));
    if (x == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    x->ino = ino;
    x->size = size;
    fs__after_barrier(fs, req, listxattr_run, x);
}
