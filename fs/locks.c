/*
 * flock(2) and fcntl record locks, cluster-wide: each request is a
 * STORE_OP_LOCK entry, decided at apply time by the store's lock table
 * (store/locks.c), so every node agrees on who holds what.
 *
 * A blocking request (F_SETLKW, flock without LOCK_NB) that the store
 * queues stays unanswered, parked in fs->lkwaits. The apply of a later
 * entry that grants waiters says so (store_result.granted); fs_on_apply
 * then looks up this node's parked waiters in the table and answers those
 * granted. Nothing polls. A waiter is also looked up once when its own
 * entry's completion parks it, in case the grant applied first.
 *
 * A blocking POSIX request that would close a cycle of waiting owners is
 * refused by the store at apply (EDEADLK, answered as any other error):
 * no waiter is parked for it.
 *
 * Ctrl-C: the kernel's FUSE_INTERRUPT reaches lk_interrupt, which proposes
 * LOCK_CANCEL. If the cancel applies first, the waiter is gone and the
 * request answers EINTR; if a grant applied first, the lock is held and
 * the request answers 0 (as a local lock granted just before the signal):
 * either way nothing is left that no process owns.
 *
 * Releases: the kernel handles a POSIX unlock on close through FLUSH
 * (lock_owner: the closing process's files), an flock's through RELEASE
 * (FUSE_RELEASE_FLOCK_UNLOCK with the file's owner), and sends nothing for
 * an OFD lock (its owner is the open file itself): the handle remembers
 * the POSIX owners that locked through it, and its RELEASE unlocks those
 * still recorded. Only owners recorded here cost an entry at close.
 *
 * An unlock (LOCK_UN, F_UNLCK, the close or exit that releases) is
 * answered as soon as it is proposed: the lock stays held in the
 * replicated table until the unlock applies, so nobody else gets it
 * early; only the releaser stops waiting for the commit. Two proposals may
 * reach the log in either order, and a lock applied before the unlock
 * would be undone by it, so: flock requests carry their order on this
 * node, and the store makes an unlock end only what older requests made
 * (store.h, "Order"); every unlock is recorded in fs->lkuns until it
 * applies, and a later request of the same file and owner from this node
 * waits for it unless both carry an order (POSIX ranges merge, so an
 * order could not tell them apart; and orders go out only while every
 * member knows them, node_lock_orders).
 * An unlock that times out is proposed again, with its order, until it
 * applies or this node's session ends (which frees every lock of the
 * session anyway). Unlocks commute with each other and do not wait.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>

#include "../common/err.h"
#include "../common/heap.h"
#include "fs_i.h"

struct fs_lkwait {
    struct fs_lkwait *next;
    struct fs *fs;
    fuse_req_t req;
    struct fs_handle *h; /* A reference. */
    struct store_cmd c;  /* The request as sent. */
    bool parked;         /* Queued by the store, in fs->lkwaits. */
    bool interrupted;
    bool cancelling;
    bool answered;
};

/* Set while lk_interrupt submits a cancel: libfuse runs it holding the
 * request's lock, and a node stopping runs the cancel's completion on this
 * very thread, whose answer must not take that lock again. */
static __thread bool lk_in_interrupt;

/* ---- Owners this node has locked with ---- */

static bool touched_find(struct fs *fs, uint64_t ino, uint64_t owner,
                         uint8_t kind, bool remove)
{
    for (size_t i = 0; i < fs->n_lkown; i++) {
        struct fs_lkown *o = &fs->lkown[i];
        if (o->ino == ino && o->owner == owner && o->kind == kind) {
            if (remove) {
                fs->lkown[i] = fs->lkown[--fs->n_lkown];
            }
            return true;
        }
    }
    return false;
}

/* Under fs->lock. Without memory the owner goes unrecorded, and its lock
 * then lives until the node's session ends. */
static void touched_add(struct fs *fs, uint64_t ino, uint64_t owner,
                        uint8_t kind)
{
    if (touched_find(fs, ino, owner, kind, false)) {
        return;
    }
    if (fs->n_lkown == fs->cap_lkown) {
        size_t cap = fs->cap_lkown ? fs->cap_lkown * 2 : 16;
        struct fs_lkown *p = rfs_realloc(fs->lkown, cap * sizeof(*p));
        if (p == NULL) {
            return;
        }
        fs->lkown = p;
        fs->cap_lkown = cap;
    }
    fs->lkown[fs->n_lkown++] = (struct fs_lkown){ino, owner, kind};
}

/* ---- Answers ---- */

static void lk_free(struct fs_lkwait *w)
{
    if (w->h != NULL) {
        fs__handle_put(w->h);
    }
    rfs_free(w);
}

/* Answer w's request once (err 0: the lock is held). Takes fs->lock. */
static void lk_answer(struct fs_lkwait *w, int err)
{
    struct fs *fs = w->fs;
    pthread_mutex_lock(&fs->lock);
    bool first = !w->answered;
    w->answered = true;
    pthread_mutex_unlock(&fs->lock);
    if (!first) {
        return;
    }
    /* Waits for an interrupt callback running on another thread, after
     * which none can come: w may then go. */
    if (!lk_in_interrupt) {
        fuse_req_interrupt_func(w->req, NULL, NULL);
    }
    fuse_reply_err(w->req, err);
}

static void lk_unpark(struct fs *fs, struct fs_lkwait *w)
{
    for (struct fs_lkwait **p = &fs->lkwaits; *p != NULL; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            return;
        }
    }
}

/* Whether w's owner now holds what it asked for, and whether it still
 * waits. */
static int lk_state(struct fs *fs, const struct store_cmd *c, bool *held,
                    bool *waiting)
{
    rfs_nodeid_t id;
    uint64_t boot;
    node_identity(fs->node, &id, &boot);
    struct store_lock *v;
    size_t n;
    int rv = store_lock_list(node_store(fs->node), c->ino, &v, &n);
    if (rv != 0) {
        return rv;
    }
    *held = *waiting = false;
    for (size_t i = 0; i < n; i++) {
        const struct store_lock *l = &v[i];
        if (l->client != id || l->boot != boot || l->owner != c->parent ||
            l->kind != c->valid) {
            continue;
        }
        if (l->waiting) {
            *waiting = true;
        } else if (l->type == c->mode &&
                   (c->valid == STORE_LK_FLOCK ||
                    (l->start <= c->offset && l->end >= c->size))) {
            *held = true;
        }
    }
    rfs_free(v);
    return 0;
}

/* Loop thread: settle a parked waiter whose state may have changed. Under
 * no lock; w is parked. Returns true if it was answered (and unparked;
 * freed unless a cancel is still in flight, whose completion frees it). */
static bool lk_check(struct fs *fs, struct fs_lkwait *w)
{
    bool held = false, waiting = false;
    int rv = lk_state(fs, &w->c, &held, &waiting);
    if (rv == 0 && waiting) {
        return false;
    }
    pthread_mutex_lock(&fs->lock);
    lk_unpark(fs, w);
    bool cancelling = w->cancelling;
    w->parked = false;
    pthread_mutex_unlock(&fs->lock);
    /* Gone from the queue without the lock: the cancel won (its
     * completion answers) or the session ended (ENOLCK). */
    if (rv != 0) {
        lk_answer(w, fs_errno(rv));
    } else if (held) {
        lk_answer(w, 0);
    } else if (!cancelling) {
        lk_answer(w, ENOLCK);
    }
    if (!cancelling) {
        lk_free(w);
    }
    return true;
}

static void cancel_done(void *arg, int err, const struct store_result *r)
{
    struct fs_lkwait *w = arg;
    struct fs *fs = w->fs;
    pthread_mutex_lock(&fs->lock);
    lk_unpark(fs, w);
    w->parked = false;
    pthread_mutex_unlock(&fs->lock);
    if (err != 0) {
        /* The cancel's outcome is unknown: the owner may hold the lock or
         * still wait; the close of the descriptor (or the session's end)
         * releases either. */
        lk_answer(w, EINTR);
    } else if (r->err == ENOENT) {
        lk_answer(w, 0); /* Granted before the cancel applied. */
    } else {
        lk_answer(w, EINTR);
    }
    lk_free(w);
}

/* A cancel carries its request's order; with one, it may ask for its
 * 'U' record to be forgotten once answered (store.h, STORE_LK_FORGET). */
static void lk_cancel_flags(struct fs *fs, struct store_cmd *c)
{
    c->flags &= ~(uint32_t)STORE_LK_FORGET;
    if (c->new_parent != 0 && node_lock_forget(fs->node)) {
        c->flags |= STORE_LK_FORGET;
    }
}

static void lk_interrupt(fuse_req_t req, void *data)
{
    (void)req;
    struct fs_lkwait *w = data;
    struct fs *fs = w->fs;
    pthread_mutex_lock(&fs->lock);
    w->interrupted = true;
    bool go = w->parked && !w->cancelling && !w->answered;
    w->cancelling = w->cancelling || go;
    pthread_mutex_unlock(&fs->lock);
    if (go) {
        struct store_cmd c = w->c;
        c.op = STORE_OP_LOCK_CANCEL;
        lk_cancel_flags(fs, &c);
        lk_in_interrupt = true;
        int rv = node_submit(fs->node, &c, cancel_done, w);
        lk_in_interrupt = false;
        if (rv != 0) {
            /* Left parked: a grant or the descriptor's close ends it. */
            pthread_mutex_lock(&fs->lock);
            w->cancelling = false;
            pthread_mutex_unlock(&fs->lock);
        }
    }
}

/* A lock request refused because this node's session ended or may have
 * ended (EROFS, for changes) answers ENOLCK, as the store does at apply:
 * "no locks available" until the new session opens. */
static int lock_errno(int e)
{
    return e == EROFS ? ENOLCK : e;
}

static void lock_done(void *arg, int err, const struct store_result *r)
{
    struct fs_lkwait *w = arg;
    struct fs *fs = w->fs;
    if (err != 0 || r->err != EINPROGRESS) {
        lk_answer(w, lock_errno(err != 0 ? fs_errno(err) : r->err));
        lk_free(w);
        return;
    }
    pthread_mutex_lock(&fs->lock);
    w->parked = true;
    w->next = fs->lkwaits;
    fs->lkwaits = w;
    bool cancel = w->interrupted && !w->cancelling;
    w->cancelling = w->cancelling || cancel;
    pthread_mutex_unlock(&fs->lock);
    if (cancel) {
        /* Interrupted before the store queued it. */
        struct store_cmd c = w->c;
        c.op = STORE_OP_LOCK_CANCEL;
        lk_cancel_flags(fs, &c);
        if (node_submit(fs->node, &c, cancel_done, w) != 0) {
            struct store_result rr = {.err = 0};
            cancel_done(w, -ENOMEM, &rr);
        }
        return;
    }
    lk_check(fs, w); /* A grant may have applied before this ran. */
}

void fs__locks_on_apply(struct fs *fs, const struct store_result *r)
{
    if (r != NULL && r->granted == 0) {
        return;
    }
    /* Waiters are freed only on this (the loop) thread, so the pointers
     * taken here stay valid while each is checked. */
    pthread_mutex_lock(&fs->lock);
    size_t n = 0;
    for (struct fs_lkwait *w = fs->lkwaits; w != NULL; w = w->next) {
        n++;
    }
    struct fs_lkwait **v = n ? rfs_malloc(n * sizeof(*v)) : NULL;
    size_t i = 0;
    for (struct fs_lkwait *w = fs->lkwaits; v != NULL && w != NULL;
         w = w->next) {
        v[i++] = w;
    }
    pthread_mutex_unlock(&fs->lock);
    /* Without memory the waiters stay parked until the next grant. */
    for (size_t j = 0; v != NULL && j < n; j++) {
        lk_check(fs, v[j]);
    }
    rfs_free(v);
}

int fs__locks_token(struct fs *fs, uint64_t ino, uint64_t *token)
{
    rfs_nodeid_t id;
    uint64_t boot;
    node_identity(fs->node, &id, &boot);
    struct store_lock *v;
    size_t n;
    int rv = store_lock_list(node_store(fs->node), ino, &v, &n);
    if (rv != 0) {
        return rv;
    }
    *token = 0;
    for (size_t i = 0; i < n; i++) {
        if (!v[i].waiting && v[i].client == id && v[i].boot == boot &&
            v[i].revision > *token) {
            *token = v[i].revision;
        }
    }
    rfs_free(v);
    return *token != 0 ? 0 : -ENODATA;
}

static void lkun_free_all(struct fs *fs);

void fs__locks_free(struct fs *fs)
{
    while (fs->lkwaits != NULL) {
        struct fs_lkwait *w = fs->lkwaits;
        fs->lkwaits = w->next;
        lk_free(w);
    }
    /* Unlocks still in flight at unmount: the node's stop ran their
     * completions; any left died with the mount, and the session's end
     * frees what they held. */
    lkun_free_all(fs);
}

/* ---- Unlocks answered before they apply ---- */

/* A request waiting for an unlock of its file, owner and kind. */
struct lk_after_un {
    struct lk_after_un *next;
    fuse_req_t req;
    struct fs_handle *h; /* A reference, or NULL. */
    struct store_cmd c;
};

struct fs_lkun {
    struct fs_lkun *next;
    struct fs *fs;
    struct store_cmd c;
    struct lk_after_un *after; /* In arrival order. */
};

static bool lkun_same(const struct store_cmd *a, const struct store_cmd *b)
{
    return a->ino == b->ino && a->parent == b->parent && a->valid == b->valid;
}

/* Under fs->lock. */
static struct fs_lkun *lkun_find(struct fs *fs, const struct store_cmd *c,
                                 const struct fs_lkun *skip)
{
    for (struct fs_lkun *u = fs->lkuns; u != NULL; u = u->next) {
        if (u != skip && lkun_same(&u->c, c)) {
            return u;
        }
    }
    return NULL;
}

static void lk_submit_now(fuse_req_t req, struct fs_handle *h,
                          const struct store_cmd *c);

static void lkun_done(void *arg, int err, const struct store_result *r);

/* u's unlock applied, or never will from here: forget it, and send the
 * requests that waited for it unless another unlock of theirs is still
 * pending (they then wait for that one). Loop thread, or the submitter. */
static void lkun_finish(struct fs *fs, struct fs_lkun *u, int err)
{
    pthread_mutex_lock(&fs->lock);
    for (struct fs_lkun **p = &fs->lkuns; *p != NULL; p = &(*p)->next) {
        if (*p == u) {
            *p = u->next;
            break;
        }
    }
    struct lk_after_un *a = u->after;
    struct fs_lkun *other = lkun_find(fs, &u->c, u);
    if (other != NULL && a != NULL) {
        struct lk_after_un **t = &other->after;
        while (*t != NULL) {
            t = &(*t)->next;
        }
        *t = a;
        a = NULL;
    }
    pthread_mutex_unlock(&fs->lock);
    rfs_free(u);
    while (a != NULL) {
        struct lk_after_un *next = a->next;
        if (err == RFS_ESHUTDOWN) {
            fuse_reply_err(a->req, ENOLCK); /* The node is stopping. */
        } else {
            lk_submit_now(a->req, a->h, &a->c);
        }
        if (a->h != NULL) {
            fs__handle_put(a->h);
        }
        rfs_free(a);
        a = next;
    }
}

static void lkun_done(void *arg, int err, const struct store_result *r)
{
    (void)r; /* Applied: an unlock's own error (ENOLCK, the session ended)
              * leaves nothing held either. */
    struct fs_lkun *u = arg;
    /* Its outcome unknown (no quorum, a new leader): propose it again,
     * or the lock would stay held until the session ends. Removed,
     * stopping, or the storage failed: nothing more to do here. */
    if (err == -ETIMEDOUT && node_submit(u->fs->node, &u->c, lkun_done, u) == 0) {
        return;
    }
    lkun_finish(u->fs, u, err);
}

/* Propose the unlock c without waiting for it. 0, or ENOMEM (nothing
 * proposed). */
static int lkun_start(struct fs *fs, const struct store_cmd *c)
{
    struct fs_lkun *u = rfs_calloc(1, sizeof(*u));
    if (u == NULL) {
        return ENOMEM;
    }
    u->fs = fs;
    u->c = *c;
    pthread_mutex_lock(&fs->lock);
    u->next = fs->lkuns;
    fs->lkuns = u;
    fs->cnt.changes++;
    pthread_mutex_unlock(&fs->lock);
    if (node_submit(fs->node, &u->c, lkun_done, u) != 0) {
        lkun_finish(fs, u, -ENOMEM);
        return ENOMEM;
    }
    return 0;
}

/* Under fs->lock: if an unlock of c's file, owner and kind is pending,
 * queue req behind it (true). False: send it now (also without memory:
 * the request then takes its chance, as before unlocks were answered
 * early). */
static bool lkun_defer(struct fs *fs, fuse_req_t req, struct fs_handle *h,
                       const struct store_cmd *c)
{
    /* An ordered flock request need not wait for an ordered unlock: the
     * store keeps it from that unlock (store.h, "Order"). It does wait for
     * one sent without an order (before every member knew them), which
     * would end it. */
    struct fs_lkun *u = fs->lkuns;
    while (u != NULL && (!lkun_same(&u->c, c) ||
                         (c->new_parent != 0 && u->c.new_parent != 0))) {
        u = u->next;
    }
    if (u == NULL) {
        return false;
    }
    struct lk_after_un *a = rfs_calloc(1, sizeof(*a));
    if (a == NULL) {
        return false;
    }
    a->req = req;
    a->c = *c;
    if (h != NULL && fs__handle_tryget(h)) {
        a->h = h;
    }
    struct lk_after_un **t = &u->after;
    while (*t != NULL) {
        t = &(*t)->next;
    }
    *t = a;
    return true;
}

static void lkun_free_all(struct fs *fs)
{
    while (fs->lkuns != NULL) {
        struct fs_lkun *u = fs->lkuns;
        fs->lkuns = u->next;
        while (u->after != NULL) {
            struct lk_after_un *a = u->after;
            u->after = a->next;
            if (a->h != NULL) {
                fs__handle_put(a->h);
            }
            rfs_free(a);
        }
        rfs_free(u);
    }
}

/* ---- Requests ---- */

/* Submit c for req; the answer comes from lock_done. */
static void lk_submit_now(fuse_req_t req, struct fs_handle *h,
                          const struct store_cmd *c)
{
    struct fs *fs = fuse_req_userdata(req);
    if (fs__degraded(fs)) {
        fuse_reply_err(req, fs_errno(fs__degraded_code(fs)));
        return;
    }
    if (c->mode == STORE_LK_UN) {
        /* Answered once proposed (see the file comment). */
        fuse_reply_err(req, lkun_start(fs, c));
        return;
    }
    pthread_mutex_lock(&fs->lock);
    touched_add(fs, c->ino, c->parent, (uint8_t)c->valid);
    bool deferred = lkun_defer(fs, req, h, c);
    pthread_mutex_unlock(&fs->lock);
    if (deferred) {
        return; /* Sent once the pending unlock applied. */
    }
    struct fs_lkwait *w = rfs_calloc(1, sizeof(*w));
    if (w == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    w->fs = fs;
    w->req = req;
    w->c = *c;
    if (h != NULL && fs__handle_tryget(h)) {
        w->h = h;
    }
    pthread_mutex_lock(&fs->lock);
    fs->cnt.changes++;
    pthread_mutex_unlock(&fs->lock);
    if (c->flags & STORE_LK_WAIT) {
        fuse_req_interrupt_func(req, lk_interrupt, w);
    }
    int rv = node_submit(fs->node, c, lock_done, w);
    if (rv != 0) {
        lk_answer(w, lock_errno(fs_errno(rv)));
        lk_free(w);
    }
}

/* A lock on a file opened with O_CREAT and not written yet (`flock FILE
 * cmd` on a new lock file): its create is still staged on this node, so
 * the lock would reach the log before the file exists (ESTALE). The
 * create goes first, the lock once it applied. */
struct lk_after {
    fuse_req_t req;
    struct fs_handle *h;
    struct store_cmd c;
};

static void lk_after_create(void *arg, int err)
{
    struct lk_after *a = arg;
    if (err != 0) {
        fuse_reply_err(a->req, err);
    } else {
        a->c.ino = a->h->ino;
        lk_submit_now(a->req, a->h, &a->c);
    }
    fs__handle_put(a->h);
    rfs_free(a);
}

static void lk_submit(fuse_req_t req, struct fs_handle *h,
                      const struct store_cmd *c)
{
    struct fs *fs = fuse_req_userdata(req);
    bool staged = false;
    if (h != NULL) {
        pthread_mutex_lock(&fs->lock);
        staged = h->staged_create || h->staged_trunc;
        pthread_mutex_unlock(&fs->lock);
    }
    if (!staged || !fs__handle_tryget(h)) {
        lk_submit_now(req, h, c);
        return;
    }
    struct lk_after *a = rfs_malloc(sizeof(*a));
    if (a == NULL) {
        fs__handle_put(h);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    a->req = req;
    a->h = h;
    a->c = *c;
    fs__unstage_then(req, h, lk_after_create, a);
}

static int lk_handle(fuse_ino_t ino, struct fuse_file_info *fi,
                     struct fs_handle **out)
{
    struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
    if ((ino & FS_VIRT_BIT) || h == NULL || h->kind != FS_H_FILE) {
        return EINVAL; /* /.raftfs/ files take no locks. */
    }
    *out = h;
    return 0;
}

/* A struct flock's range as first and last byte. */
static int lk_range(const struct flock *l, uint64_t *start, uint64_t *end)
{
    if (l->l_start < 0 || l->l_len < 0) {
        return EINVAL; /* The kernel sends absolute, positive ranges. */
    }
    *start = (uint64_t)l->l_start;
    *end = l->l_len == 0 ? STORE_LK_EOF
                         : (uint64_t)l->l_start + (uint64_t)l->l_len - 1;
    return 0;
}

void fs__op_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                  struct flock *lock)
{
    struct fs *fs = fuse_req_userdata(req);
    struct fs_handle *h;
    uint64_t start, end;
    int rv = lk_handle(ino, fi, &h);
    if (rv == 0) {
        rv = lk_range(lock, &start, &end);
    }
    if (rv != 0) {
        fuse_reply_err(req, rv);
        return;
    }
    rfs_nodeid_t id;
    uint64_t boot;
    node_identity(fs->node, &id, &boot);
    struct store_lock probe = {
        .client = id,
        .boot = boot,
        .owner = fi->lock_owner,
        .kind = STORE_LK_POSIX,
        .type = lock->l_type == F_WRLCK ? STORE_LK_WR : STORE_LK_RD,
        .start = start,
        .end = end,
    };
    struct store_lock *v;
    size_t n;
    rv = store_lock_list(node_store(fs->node), h->ino, &v, &n);
    if (rv != 0) {
        fuse_reply_err(req, fs_errno(rv));
        return;
    }
    struct flock out = *lock;
    out.l_type = F_UNLCK;
    for (size_t i = 0; i < n; i++) {
        if (v[i].waiting || !store_lock_conflicts(&v[i], &probe)) {
            continue;
        }
        out.l_type = v[i].type == STORE_LK_WR ? F_WRLCK : F_RDLCK;
        out.l_whence = SEEK_SET;
        out.l_start = (off_t)v[i].start;
        out.l_len = v[i].end == STORE_LK_EOF
                        ? 0
                        : (off_t)(v[i].end - v[i].start + 1);
        /* A holder on another node has no pid here: 0, as NFS reports
         * for a remote holder (docs/fs.md). */
        out.l_pid = v[i].client == id && v[i].boot == boot
                        ? (pid_t)v[i].pid
                        : 0;
        break;
    }
    rfs_free(v);
    fuse_reply_lock(req, &out);
}

void fs__op_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                  struct flock *lock, int sleep)
{
    struct fs_handle *h;
    uint64_t start, end;
    int rv = lk_handle(ino, fi, &h);
    if (rv == 0) {
        rv = lk_range(lock, &start, &end);
    }
    if (rv == 0 && lock->l_type != F_RDLCK && lock->l_type != F_WRLCK &&
        lock->l_type != F_UNLCK) {
        rv = EINVAL;
    }
    if (rv != 0) {
        fuse_reply_err(req, rv);
        return;
    }
    struct store_cmd c;
    memset(&c, 0, sizeof(c));
    c.op = STORE_OP_LOCK;
    c.ino = h->ino;
    c.parent = fi->lock_owner;
    c.valid = STORE_LK_POSIX;
    c.mode = lock->l_type == F_RDLCK   ? STORE_LK_RD
             : lock->l_type == F_WRLCK ? STORE_LK_WR
                                       : STORE_LK_UN;
    c.offset = start;
    c.size = end;
    c.uid = (uint32_t)fuse_req_ctx(req)->pid;
    /* Never STORE_LK_OFD: FUSE sends an OFD lock as it sends a process's
     * (an owner id, nothing more), so F_SETLKW of either may answer
     * EDEADLK, where Linux checks only process locks (docs/fs.md). */
    c.flags = sleep && c.mode != STORE_LK_UN ? STORE_LK_WAIT : 0;
    struct fs *fs = fuse_req_userdata(req);
    if (c.mode == STORE_LK_UN) {
        pthread_mutex_lock(&fs->lock);
        bool known = touched_find(fs, c.ino, c.parent, STORE_LK_POSIX, false);
        pthread_mutex_unlock(&fs->lock);
        if (!known) {
            fuse_reply_err(req, 0); /* Nothing of this owner's here. */
            return;
        }
    } else {
        /* For OFD locks, which no FLUSH releases: see fs__locks_release. */
        pthread_mutex_lock(&fs->lock);
        h->lk_owner = fi->lock_owner;
        h->lk_posix = true;
        pthread_mutex_unlock(&fs->lock);
    }
    lk_submit(req, h, &c);
}

void fs__op_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                  int op)
{
    struct fs_handle *h;
    int rv = lk_handle(ino, fi, &h);
    if (rv != 0) {
        fuse_reply_err(req, rv);
        return;
    }
    struct store_cmd c;
    memset(&c, 0, sizeof(c));
    c.op = STORE_OP_LOCK;
    c.ino = h->ino;
    c.parent = fi->lock_owner;
    c.valid = STORE_LK_FLOCK;
    int what = op & (LOCK_SH | LOCK_EX | LOCK_UN);
    c.mode = what == LOCK_SH   ? STORE_LK_RD
             : what == LOCK_EX ? STORE_LK_WR
                               : STORE_LK_UN;
    c.offset = 0;
    c.size = STORE_LK_EOF;
    c.uid = (uint32_t)fuse_req_ctx(req)->pid;
    c.flags = !(op & LOCK_NB) && c.mode != STORE_LK_UN ? STORE_LK_WAIT : 0;
    struct fs *fs = fuse_req_userdata(req);
    /* Without an order (a member may run an older build, which would
     * misread it) the request waits for a pending unlock, as before. */
    bool ordered = node_lock_orders(fs->node);
    pthread_mutex_lock(&fs->lock);
    c.new_parent = ordered ? ++fs->lk_order : 0;
    pthread_mutex_unlock(&fs->lock);
    if (ordered && c.mode == STORE_LK_UN && node_lock_forget(fs->node)) {
        c.flags |= STORE_LK_FORGET;
    }
    lk_submit(req, h, &c);
}

/* Unlock the owners' locks of h's file that this node recorded, without
 * waiting for them to apply: the close answers at once (see the file
 * comment; without memory the session's end frees them). */
static void lk_close(struct fs *fs, struct fs_handle *h,
                     const uint64_t *owners, const uint8_t *kinds, int n)
{
    struct store_cmd c[2];
    int m = 0;
    bool ordered = node_lock_orders(fs->node);
    bool forget = node_lock_forget(fs->node);
    pthread_mutex_lock(&fs->lock);
    for (int i = 0; i < n; i++) {
        if (touched_find(fs, h->ino, owners[i], kinds[i], true)) {
            memset(&c[m], 0, sizeof(c[m]));
            c[m].op = STORE_OP_LOCK;
            c[m].ino = h->ino;
            c[m].parent = owners[i];
            c[m].valid = kinds[i];
            c[m].mode = STORE_LK_UN;
            c[m].size = STORE_LK_EOF;
            c[m].new_parent = kinds[i] == STORE_LK_FLOCK && ordered
                                  ? ++fs->lk_order
                                  : 0;
            c[m].flags = c[m].new_parent != 0 && forget ? STORE_LK_FORGET
                                                        : 0;
            m++;
        }
    }
    pthread_mutex_unlock(&fs->lock);
    for (int i = 0; i < m; i++) {
        lkun_start(fs, &c[i]);
    }
}

void fs__locks_flush(struct fs *fs, struct fs_handle *h,
                     struct fuse_file_info *fi)
{
    if (h->kind != FS_H_FILE) {
        return;
    }
    uint64_t owner = fi->lock_owner;
    uint8_t kind = STORE_LK_POSIX;
    lk_close(fs, h, &owner, &kind, 1);
}

void fs__locks_release(struct fs *fs, struct fs_handle *h,
                       struct fuse_file_info *fi)
{
    if (h->kind != FS_H_FILE) {
        return;
    }
    uint64_t owners[2];
    uint8_t kinds[2];
    int n = 0;
    if (fi->flock_release) {
        owners[n] = fi->lock_owner;
        kinds[n++] = STORE_LK_FLOCK;
    }
    pthread_mutex_lock(&fs->lock);
    if (h->lk_posix) {
        owners[n] = h->lk_owner;
        kinds[n++] = STORE_LK_POSIX;
    }
    pthread_mutex_unlock(&fs->lock);
    lk_close(fs, h, owners, kinds, n);
}
