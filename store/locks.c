/*
 * Cluster-wide flock(2) and POSIX record locks: the lock table and its
 * waiter queue, decided at apply time like every other condition, so that
 * every node grants the same lock to the same owner at the same index.
 *
 * Layout (CF_LOCKS, in snapshots):
 *   'H' ino client boot owner kind start -> end, type, pid, revision
 *                                           [, order]
 *   'W' ino index                        -> client, boot, owner, kind,
 *                                           type, start, end, pid, flags
 *                                           [, order]
 *   'U' ino client boot owner kind       -> order
 *   'V' client boot seq                  -> 'U' key, order
 * The order is written only when not 0, so the records of requests
 * without one are those of older builds, byte for byte. A 'U' record
 * keeps the highest order that an unlock or cancel of the owner applied
 * with (only requests with an order write one), so that a lock request
 * sent before it but applied after it is refused (see "Order" in
 * store.h). The request it guards against is one whose caller gave up
 * (a timeout, EINTR) and then released: its node had submitted it before
 * the caller gave up, so before the unlock, and gave it a lower seq. Once
 * the client's first outstanding seq passes the unlock's, every such
 * request has applied or never will (sessions.c refuses it, ESTALE), and
 * the 'U' record can go. (A lock and an unlock of one open file from two
 * threads at once may get seqs in either order; whichever applies first,
 * the lock's caller is answered, so nothing is left held unseen.) The 'V' record, keyed by the unlock's seq, finds it then
 * (locks_forget, beside the session's own forgetting); without it every
 * open file that was ever flocked and closed would leave a record until
 * its node's session ended. Whatever is left goes with the session, like
 * the holdings.
 * Holders sort by owner and range; waiters by the index of the request
 * that queued them, which is their arrival order.
 *
 * Each change loads one inode's whole table, edits it in memory and
 * writes it back (deleting the old keys, putting the new ones in the same
 * batch). Tables are small: a few owners per file.
 *
 * Deadlock detection walks the waiters of every inode (the 'W' keys are
 * contiguous, so that is one scan of the cluster's blocked requests) and
 * reads the tables of those it follows; it runs only when a blocking
 * POSIX request of a process meets a conflict.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../common/heap.h"
#include "store_i.h"

#define HKEY 42
#define HVAL 21
#define HVAL_ORDER 29 /* With the order, after revision. */
#define WKEY 17
#define WVAL 54
#define WVAL_ORDER 62 /* With the order, at byte 54. */
#define UKEY 34
#define UVAL 8
#define VKEY 25
#define VVAL (UKEY + 8)
#define WFLAG_OFD 0x1 /* Waiter byte 46 (0 in records of older builds). */

struct table {
    uint64_t ino;
    struct store_lock *v; /* Holders, then (from n_hold on) waiters. */
    size_t n, cap;
    /* Keys read, deleted before the new table is written. */
    uint8_t (*old_h)[HKEY];
    size_t n_old_h;
    uint8_t (*old_w)[WKEY];
    size_t n_old_w;
};

static void hkey(uint8_t *k, uint64_t ino, const struct store_lock *l)
{
    k[0] = 'H';
    rfs_put_be64(k + 1, ino);
    rfs_put_be64(k + 9, l->client);
    rfs_put_be64(k + 17, l->boot);
    rfs_put_be64(k + 25, l->owner);
    k[33] = l->kind;
    rfs_put_be64(k + 34, l->start);
}

/* A waiter record (key k, value v) into l. */
static void wdecode(const uint8_t *k, const uint8_t *v, size_t vlen,
                    struct store_lock *l)
{
    l->revision = rfs_get_be64(k + 9);
    l->client = rfs_get_le64(v);
    l->boot = rfs_get_le64(v + 8);
    l->owner = rfs_get_le64(v + 16);
    l->kind = v[24];
    l->type = v[25];
    l->start = rfs_get_le64(v + 26);
    l->end = rfs_get_le64(v + 34);
    l->pid = rfs_get_le32(v + 42);
    l->ofd = (v[46] & WFLAG_OFD) != 0;
    l->order = vlen == WVAL_ORDER ? rfs_get_le64(v + WVAL) : 0;
    l->waiting = true;
}

static void wkey(uint8_t *k, uint64_t ino, uint64_t index)
{
    k[0] = 'W';
    rfs_put_be64(k + 1, ino);
    rfs_put_be64(k + 9, index);
}

bool store_lock_conflicts(const struct store_lock *a,
                          const struct store_lock *b)
{
    if (a->kind != b->kind) {
        return false; /* flock and fcntl locks are separate, as on Linux. */
    }
    if (a->client == b->client && a->boot == b->boot && a->owner == b->owner) {
        return false;
    }
    if (a->end < b->start || b->end < a->start) {
        return false;
    }
    return a->type == STORE_LK_WR || b->type == STORE_LK_WR;
}

static bool same_owner(const struct store_lock *a, const struct store_lock *b)
{
    return a->client == b->client && a->boot == b->boot &&
           a->owner == b->owner && a->kind == b->kind;
}

static int push(struct table *tb, const struct store_lock *l)
{
    if (tb->n == tb->cap) {
        size_t cap = tb->cap ? tb->cap * 2 : 8;
        struct store_lock *v = rfs_realloc(tb->v, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        tb->v = v;
        tb->cap = cap;
    }
    tb->v[tb->n++] = *l;
    return 0;
}

static void drop_at(struct table *tb, size_t i)
{
    memmove(&tb->v[i], &tb->v[i + 1], (tb->n - i - 1) * sizeof(*tb->v));
    tb->n--;
}

static void table_free(struct table *tb)
{
    rfs_free(tb->v);
    rfs_free(tb->old_h);
    rfs_free(tb->old_w);
}

/* Read ino's table (holders, then waiters in arrival order). keep: also
 * remember the keys, to delete them when the table is written back. */
static int table_load(struct store *s, uint64_t ino, struct table *tb,
                      bool keep)
{
    memset(tb, 0, sizeof(*tb));
    tb->ino = ino;
    int rv = 0;
    for (int pass = 0; pass < 2 && rv == 0; pass++) {
        uint8_t pre[9], end[9];
        pre[0] = pass == 0 ? 'H' : 'W';
        rfs_put_be64(pre + 1, ino);
        struct store_iter i;
        store__iter_open(s, NULL, CF_LOCKS, pre, 9, end,
                         store__prefix_end(pre, 9, end), &i);
        rocksdb_iterator_t *it = i.it;
        for (; rv == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t klen, vlen;
            const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
            if (klen < 9 || memcmp(k, pre, 9) != 0) {
                break;
            }
            const uint8_t *v =
                (const uint8_t *)rocksdb_iter_value(it, &vlen);
            struct store_lock l = {0};
            if (pass == 0 && klen == HKEY &&
                (vlen == HVAL || vlen == HVAL_ORDER)) {
                l.client = rfs_get_be64(k + 9);
                l.boot = rfs_get_be64(k + 17);
                l.owner = rfs_get_be64(k + 25);
                l.kind = k[33];
                l.start = rfs_get_be64(k + 34);
                l.end = rfs_get_le64(v);
                l.type = v[8];
                l.pid = rfs_get_le32(v + 9);
                l.revision = rfs_get_le64(v + 13);
                l.order = vlen == HVAL_ORDER ? rfs_get_le64(v + HVAL) : 0;
            } else if (pass == 1 && klen == WKEY &&
                       (vlen == WVAL || vlen == WVAL_ORDER)) {
                wdecode(k, v, vlen, &l);
            } else {
                rv = store__set_err(s, RFS_ECORRUPT,
                                    "a damaged lock record of inode %llu",
                                    (unsigned long long)ino);
                break;
            }
            rv = push(tb, &l);
            if (rv == 0 && keep && pass == 0) {
                void *p = rfs_realloc(tb->old_h, (tb->n_old_h + 1) * HKEY);
                rv = p == NULL ? -ENOMEM : 0;
                if (p != NULL) {
                    tb->old_h = p;
                    memcpy(tb->old_h[tb->n_old_h++], k, HKEY);
                }
            } else if (rv == 0 && keep) {
                void *p = rfs_realloc(tb->old_w, (tb->n_old_w + 1) * WKEY);
                rv = p == NULL ? -ENOMEM : 0;
                if (p != NULL) {
                    tb->old_w = p;
                    memcpy(tb->old_w[tb->n_old_w++], k, WKEY);
                }
            }
        }
        char what[64];
        snprintf(what, sizeof(what), "reading the locks of inode %llu",
                 (unsigned long long)ino);
        int crv = store__iter_close(s, &i, what);
        if (rv == 0) {
            rv = crv;
        }
    }
    if (rv != 0) {
        table_free(tb);
        memset(tb, 0, sizeof(*tb));
    }
    return rv;
}

/* Write tb back, and record in the history what it granted and released
 * (store__history_locks compares it with the table before the entry). */
static int table_write(struct tx *t, const struct table *tb)
{
    int rv = store__history_locks(t, tb->ino, tb->v, tb->n);
    if (rv != 0) {
        return rv;
    }
    rocksdb_column_family_handle_t *cf = t->s->cf[CF_LOCKS];
    for (size_t i = 0; i < tb->n_old_h; i++) {
        rocksdb_writebatch_delete_cf(t->b, cf, (char *)tb->old_h[i], HKEY);
    }
    for (size_t i = 0; i < tb->n_old_w; i++) {
        rocksdb_writebatch_delete_cf(t->b, cf, (char *)tb->old_w[i], WKEY);
    }
    for (size_t i = 0; i < tb->n; i++) {
        const struct store_lock *l = &tb->v[i];
        if (!l->waiting) {
            uint8_t k[HKEY], v[HVAL_ORDER];
            hkey(k, tb->ino, l);
            rfs_put_le64(v, l->end);
            v[8] = l->type;
            rfs_put_le32(v + 9, l->pid);
            rfs_put_le64(v + 13, l->revision);
            rfs_put_le64(v + HVAL, l->order);
            rocksdb_writebatch_put_cf(t->b, cf, (char *)k, HKEY, (char *)v,
                                      l->order ? HVAL_ORDER : HVAL);
        } else {
            uint8_t k[WKEY], v[WVAL_ORDER];
            memset(v, 0, sizeof(v));
            wkey(k, tb->ino, l->revision);
            rfs_put_le64(v, l->client);
            rfs_put_le64(v + 8, l->boot);
            rfs_put_le64(v + 16, l->owner);
            v[24] = l->kind;
            v[25] = l->type;
            rfs_put_le64(v + 26, l->start);
            rfs_put_le64(v + 34, l->end);
            rfs_put_le32(v + 42, l->pid);
            v[46] = l->ofd ? WFLAG_OFD : 0;
            rfs_put_le64(v + WVAL, l->order);
            rocksdb_writebatch_put_cf(t->b, cf, (char *)k, WKEY, (char *)v,
                                      l->order ? WVAL_ORDER : WVAL);
        }
    }
    return 0;
}

/* Whether l was made by a request older than order (see "Order" in
 * store.h): always, for an order of 0. */
static bool made_before(const struct store_lock *l, uint64_t order)
{
    return order == 0 || l->order < order;
}

/* Remove [start, end] from the owner's holdings made before order,
 * splitting a range that straddles it. */
static int carve(struct table *tb, const struct store_lock *o, uint64_t start,
                 uint64_t end, uint64_t order)
{
    size_t n = tb->n;
    for (size_t i = 0; i < n;) {
        struct store_lock *l = &tb->v[i];
        if (l->waiting || !same_owner(l, o) || l->end < start ||
            end < l->start || !made_before(l, order)) {
            i++;
            continue;
        }
        struct store_lock left = *l, right = *l;
        drop_at(tb, i);
        n--;
        if (left.start < start) {
            left.end = start - 1;
            if (push(tb, &left) != 0) {
                return -ENOMEM;
            }
        }
        if (right.end > end) {
            right.start = end + 1;
            if (push(tb, &right) != 0) {
                return -ENOMEM;
            }
        }
    }
    return 0;
}

/* Give l to its owner: the range replaces whatever the owner held there
 * (upgrade, downgrade), and touching ranges of the same type merge. */
static int hold(struct table *tb, struct store_lock l)
{
    l.waiting = false;
    int rv = carve(tb, &l, l.start, l.end, 0);
    for (size_t i = 0; rv == 0 && i < tb->n;) {
        struct store_lock *m = &tb->v[i];
        bool touches = (m->end == STORE_LK_EOF || m->end + 1 >= l.start) &&
                       (l.end == STORE_LK_EOF || l.end + 1 >= m->start);
        if (!m->waiting && same_owner(m, &l) && m->type == l.type &&
            touches) {
            l.start = m->start < l.start ? m->start : l.start;
            l.end = m->end > l.end ? m->end : l.end;
            l.order = m->order > l.order ? m->order : l.order;
            drop_at(tb, i);
            continue;
        }
        i++;
    }
    return rv == 0 ? push(tb, &l) : rv;
}

static bool blocked_by_holders(const struct table *tb,
                               const struct store_lock *l)
{
    for (size_t i = 0; i < tb->n; i++) {
        if (!tb->v[i].waiting && store_lock_conflicts(&tb->v[i], l)) {
            return true;
        }
    }
    return false;
}

/* Grant every waiter that conflicts neither with a holder nor with an
 * earlier waiter still queued, in arrival order. */
static int grant_waiters(struct tx *t, struct table *tb)
{
    for (bool again = true; again;) {
        again = false;
        for (size_t i = 0; i < tb->n; i++) {
            if (!tb->v[i].waiting) {
                continue;
            }
            struct store_lock w = tb->v[i];
            bool blocked = blocked_by_holders(tb, &w);
            for (size_t j = 0; !blocked && j < tb->n; j++) {
                blocked = tb->v[j].waiting &&
                          tb->v[j].revision < w.revision &&
                          store_lock_conflicts(&tb->v[j], &w);
            }
            if (blocked) {
                continue;
            }
            drop_at(tb, i);
            w.revision = t->index; /* The fencing token. */
            int rv = hold(tb, w);
            if (rv != 0) {
                return rv;
            }
            t->granted++;
            again = true; /* Indices moved: scan again from the front. */
            break;
        }
    }
    return 0;
}

/* Drop the waiters of owner o (kind included) queued before order. true
 * if any. */
static bool drop_waiters(struct table *tb, const struct store_lock *o,
                         uint64_t order)
{
    bool any = false;
    for (size_t i = 0; i < tb->n;) {
        if (tb->v[i].waiting && same_owner(&tb->v[i], o) &&
            made_before(&tb->v[i], order)) {
            drop_at(tb, i);
            any = true;
            continue;
        }
        i++;
    }
    return any;
}

/* ---- Deadlock detection ---- */

/* A waiter of any inode, for the walk. */
struct dl_waiter {
    uint64_t ino;
    struct store_lock l;
};

/* The owners the walk reached, in the order reached: a queue whose
 * entries [0, n) are also the set already seen. */
struct dl_walk {
    const struct store_lock *me;
    struct store_lock seen[STORE_LK_DL_OWNERS];
    size_t n;
};

static int dl_push(struct dl_waiter **v, size_t *n, size_t *cap,
                   uint64_t ino, const struct store_lock *l)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        struct dl_waiter *p = rfs_realloc(*v, c * sizeof(*p));
        if (p == NULL) {
            return -ENOMEM;
        }
        *v = p;
        *cap = c;
    }
    (*v)[*n].ino = ino;
    (*v)[(*n)++].l = *l;
    return 0;
}

/* Every waiter of the cluster: tb's (in memory already), then those of
 * the other inodes in key order. tb's own range of keys is skipped, as a
 * herd of waiters on one file would otherwise be read twice per request. */
static int dl_waiters(struct store *s, const struct table *tb,
                      struct dl_waiter **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    int rv = 0;
    for (size_t i = 0; rv == 0 && i < tb->n; i++) {
        if (tb->v[i].waiting) {
            rv = dl_push(out, n, &cap, tb->ino, &tb->v[i]);
        }
    }
    struct store_iter i;
    store__iter_open(s, NULL, CF_LOCKS, "W", 1, "X", 1, &i);
    rocksdb_iterator_t *it = i.it;
    for (; rv == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
        if (klen < 1 || k[0] != 'W') {
            break;
        }
        if (klen >= 9 && rfs_get_be64(k + 1) == tb->ino) {
            if (tb->ino == UINT64_MAX) {
                break;
            }
            uint8_t next[9];
            next[0] = 'W';
            rfs_put_be64(next + 1, tb->ino + 1);
            rocksdb_iter_seek(it, (char *)next, sizeof(next));
            if (!rocksdb_iter_valid(it)) {
                break;
            }
            k = (const uint8_t *)rocksdb_iter_key(it, &klen);
            if (klen < 1 || k[0] != 'W') {
                break;
            }
        }
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        if (klen != WKEY || (vlen != WVAL && vlen != WVAL_ORDER)) {
            rv = store__set_err(s, RFS_ECORRUPT, "a damaged lock waiter");
            break;
        }
        struct store_lock l = {0};
        wdecode(k, v, vlen, &l);
        rv = dl_push(out, n, &cap, rfs_get_be64(k + 1), &l);
    }
    int crv = store__iter_close(s, &i, "reading the lock waiters");
    if (rv == 0) {
        rv = crv;
    }
    if (rv != 0) {
        rfs_free(*out);
        *out = NULL;
        *n = 0;
    }
    return rv;
}

static bool dl_same(const struct store_lock *a, const struct store_lock *b)
{
    return a->client == b->client && a->boot == b->boot &&
           a->owner == b->owner;
}

/* Queue the owners of tb's holders that block w. true when one is the
 * requester's owner: the cycle closes. Owners past the bound are not
 * followed (the walk then finds no cycle through them). */
static bool dl_blockers(struct dl_walk *dw, const struct table *tb,
                        const struct store_lock *w)
{
    for (size_t i = 0; i < tb->n; i++) {
        const struct store_lock *h = &tb->v[i];
        if (h->waiting || !store_lock_conflicts(h, w)) {
            continue;
        }
        if (dl_same(h, dw->me)) {
            return true;
        }
        bool known = false;
        for (size_t j = 0; !known && j < dw->n; j++) {
            known = dl_same(&dw->seen[j], h);
        }
        if (!known && dw->n < STORE_LK_DL_OWNERS) {
            dw->seen[dw->n++] = *h;
        }
    }
    return false;
}

/* Whether me, a blocking POSIX request that tb's holders block, would
 * wait on an owner that (transitively) waits on me's owner. Follows, level
 * by level, the owners reached: each one's waiters that are process
 * requests (flock and OFD waiters are no process's wait), and the holders
 * blocking those. Deterministic: every node reads the same table in the
 * same order. */
static int deadlock(struct store *s, const struct table *tb,
                    const struct store_lock *me, bool *found)
{
    *found = false;
    struct dl_walk *dw = rfs_malloc(sizeof(*dw));
    if (dw == NULL) {
        return -ENOMEM;
    }
    dw->me = me;
    dw->n = 0;
    dl_blockers(dw, tb, me); /* Never me's owner: conflicts exclude it. */
    struct dl_waiter *ws = NULL;
    size_t nw = 0;
    int rv = dw->n > 0 ? dl_waiters(s, tb, &ws, &nw) : 0;
    size_t from = 0;
    for (int depth = 0;
         rv == 0 && !*found && depth < STORE_LK_DL_DEPTH && from < dw->n;
         depth++) {
        size_t to = dw->n;
        for (size_t i = from; rv == 0 && !*found && i < to; i++) {
            for (size_t j = 0; rv == 0 && !*found && j < nw; j++) {
                const struct store_lock *w = &ws[j].l;
                if (w->kind != STORE_LK_POSIX || w->ofd ||
                    !dl_same(w, &dw->seen[i])) {
                    continue;
                }
                struct table wt;
                rv = table_load(s, ws[j].ino, &wt, false);
                if (rv == 0) {
                    *found = dl_blockers(dw, &wt, w);
                    table_free(&wt);
                }
            }
        }
        from = to;
    }
    rfs_free(ws);
    rfs_free(dw);
    return rv;
}

static void ukey(uint8_t *k, uint64_t ino, const struct store_lock *l)
{
    k[0] = 'U';
    rfs_put_be64(k + 1, ino);
    rfs_put_be64(k + 9, l->client);
    rfs_put_be64(k + 17, l->boot);
    rfs_put_be64(k + 25, l->owner);
    k[33] = l->kind;
}

/* The highest order an unlock or cancel of l's owner applied with on ino
 * (its 'U' record), into *order; 0 if none. */
static int unlocked_through(struct store *s, uint64_t ino,
                            const struct store_lock *l, uint64_t *order)
{
    uint8_t k[UKEY];
    ukey(k, ino, l);
    size_t vlen = 0;
    char *err = NULL;
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[CF_LOCKS], (char *)k, UKEY,
                             &vlen, &err);
    *order = 0;
    if (err != NULL) {
        return store__rocks_err(s, err, "reading the locks of inode %llu",
                                (unsigned long long)ino);
    }
    int rv = 0;
    if (v != NULL && vlen == UVAL) {
        *order = rfs_get_le64((uint8_t *)v);
    } else if (v != NULL) {
        rv = store__set_err(s, RFS_ECORRUPT,
                            "a damaged lock record of inode %llu",
                            (unsigned long long)ino);
    }
    rocksdb_free(v);
    return rv;
}

static void vkey(uint8_t *k, rfs_nodeid_t client, uint64_t boot,
                 uint64_t seq)
{
    k[0] = 'V';
    rfs_put_be64(k + 1, client);
    rfs_put_be64(k + 9, boot);
    rfs_put_be64(k + 17, seq);
}

/* An unlock or cancel with l's order applies, as request seq of its
 * client: requests of the owner up to it are settled, and one of them
 * that applies later is refused. The 'U' record is tracked under seq
 * either way (when it keeps a higher order, under that order), so that
 * locks_forget finds it once seq is answered. */
static int unlocked_put(struct tx *t, uint64_t ino, const struct store_lock *l,
                        uint64_t seq, bool track)
{
    uint64_t was;
    int rv = unlocked_through(t->s, ino, l, &was);
    if (rv != 0) {
        return rv;
    }
    uint8_t k[UKEY], v[UVAL], vk[VKEY], vv[VVAL];
    ukey(k, ino, l);
    uint64_t order = l->order > was ? l->order : was;
    if (l->order > was) {
        rfs_put_le64(v, l->order);
        rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_LOCKS], (char *)k, UKEY,
                                  (char *)v, UVAL);
    }
    if (!track) {
        return 0; /* Kept until the session ends, as older builds do. */
    }
    vkey(vk, l->client, l->boot, seq);
    memcpy(vv, k, UKEY);
    rfs_put_le64(vv + UKEY, order);
    rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_LOCKS], (char *)vk, VKEY,
                              (char *)vv, VVAL);
    return 0;
}

int locks_forget(struct tx *t, const struct store_cmd *c,
                 const struct store_result *r, uint64_t from, uint64_t to)
{
    /* This entry's own unlock, if it wrote (c is still in the batch: not
     * refused), may rewrite the 'U' record: keep it (tracked again under
     * its own seq if it asked to be forgotten, else kept for good). */
    uint8_t mine[UKEY];
    bool writes = (r->err == 0 || r->err == EINPROGRESS) &&
                  c->valid == STORE_LK_FLOCK && c->new_parent != 0 &&
                  (c->op == STORE_OP_LOCK_CANCEL ||
                   (c->op == STORE_OP_LOCK && c->mode == STORE_LK_UN));
    if (writes) {
        struct store_lock l = {.client = c->client, .boot = c->boot,
                               .owner = c->parent, .kind = STORE_LK_FLOCK};
        ukey(mine, c->ino, &l);
    }
    uint8_t a[VKEY], z[VKEY];
    vkey(a, c->client, c->boot, from);
    vkey(z, c->client, c->boot, to);
    struct store_iter i;
    store__iter_open(t->s, NULL, CF_LOCKS, a, VKEY, z, VKEY, &i);
    int rv = 0;
    for (; rv == 0 && rocksdb_iter_valid(i.it); rocksdb_iter_next(i.it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(i.it, &klen);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(i.it, &vlen);
        rocksdb_writebatch_delete_cf(t->b, t->s->cf[CF_LOCKS], k, klen);
        if (klen != VKEY || vlen != VVAL || v[0] != 'U' ||
            (writes && memcmp(v, mine, UKEY) == 0)) {
            continue;
        }
        size_t ulen = 0;
        char *err = NULL;
        char *u = rocksdb_get_cf(t->s->db, t->s->ro, t->s->cf[CF_LOCKS],
                                 (const char *)v, UKEY, &ulen, &err);
        if (err != NULL) {
            rv = store__rocks_err(t->s, err, "reading an unlock record");
        } else if (u != NULL && ulen == UVAL &&
                   rfs_get_le64((uint8_t *)u) == rfs_get_le64(v + UKEY)) {
            /* No later unlock raised it (that one tracks it now). */
            rocksdb_writebatch_delete_cf(t->b, t->s->cf[CF_LOCKS],
                                         (const char *)v, UKEY);
        }
        rocksdb_free(u);
    }
    int crv = store__iter_close(t->s, &i, "reading unlock records");
    return rv != 0 ? rv : crv;
}

int locks_apply(struct tx *t, const struct store_cmd *c)
{
    struct store_lock l = {
        .client = c->client,
        .boot = c->boot,
        .owner = c->parent,
        .kind = (uint8_t)c->valid,
        .type = (uint8_t)c->mode,
        .start = c->offset,
        .end = c->size,
        .pid = c->uid,
        .revision = t->index,
        .ofd = (c->flags & STORE_LK_OFD) != 0,
        .order = c->valid == STORE_LK_FLOCK ? c->new_parent : 0,
    };
    if ((l.kind != STORE_LK_FLOCK && l.kind != STORE_LK_POSIX) ||
        c->valid > 0xff || (c->op == STORE_OP_LOCK &&
                            (c->mode < STORE_LK_RD || c->mode > STORE_LK_UN ||
                             l.start > l.end))) {
        return EINVAL;
    }
    if (l.kind == STORE_LK_FLOCK) {
        l.start = 0;
        l.end = STORE_LK_EOF;
    }
    struct store_attr a;
    int rv = store_getattr(t->s, NULL, c->ino, &a);
    if (rv == -ENOENT) {
        return ESTALE;
    }
    if (rv != 0) {
        return rv;
    }
    struct table tb;
    rv = table_load(t->s, c->ino, &tb, true);
    if (rv != 0) {
        return rv;
    }
    int res = 0;
    uint64_t settled = 0;
    if (l.order != 0) {
        rv = c->op == STORE_OP_LOCK_CANCEL || l.type == STORE_LK_UN
                 ? unlocked_put(t, c->ino, &l, c->seq,
                                (c->flags & STORE_LK_FORGET) != 0)
                 : unlocked_through(t->s, c->ino, &l, &settled);
    }
    if (rv != 0) {
        /* The entry fails as a whole (a failed read). */
    } else if (c->op == STORE_OP_LOCK_CANCEL) {
        /* Only the cancelled request's waiter, and older ones: the
         * owner's next request may already wait too. */
        res = drop_waiters(&tb, &l, l.order ? l.order + 1 : 0) ? 0 : ENOENT;
    } else if (l.type == STORE_LK_UN) {
        rv = carve(&tb, &l, l.start, l.end, l.order);
        drop_waiters(&tb, &l, l.order);
    } else if (l.order != 0 && l.order <= settled) {
        /* Sent before an unlock or cancel of its owner that applied first:
         * its caller gave up on it (a timeout, EINTR) and released, so a
         * grant now would stay held with nobody to release it. */
        res = EINTR;
    } else if (blocked_by_holders(&tb, &l)) {
        bool cycle = false;
        if ((c->flags & STORE_LK_WAIT) && l.kind == STORE_LK_POSIX &&
            !l.ofd) {
            rv = deadlock(t->s, &tb, &l, &cycle);
        }
        /* A failed read (rv) fails the entry as a whole. */
        if (rv == 0 && cycle) {
            res = EDEADLK;
        } else if (rv == 0 && (c->flags & STORE_LK_WAIT)) {
            l.waiting = true;
            rv = push(&tb, &l);
            res = EINPROGRESS;
        } else if (rv == 0) {
            res = EAGAIN;
        }
    } else {
        rv = hold(&tb, l);
    }
    if (rv == 0 && res != EAGAIN && res != ENOENT && res != EDEADLK &&
        res != EINTR) {
        rv = grant_waiters(t, &tb);
        if (rv == 0) {
            rv = table_write(t, &tb);
        }
    }
    table_free(&tb);
    return rv != 0 ? rv : res;
}

int locks_drop_session(struct tx *t, rfs_nodeid_t client, uint64_t boot)
{
    /* Find the inodes where the session holds or waits: a scan of the
     * table, which a new boot (rare) can afford. */
    uint64_t *inos = NULL;
    size_t n = 0;
    int rv = 0;
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(t->s->db, t->s->ro, t->s->cf[CF_LOCKS]);
    for (rocksdb_iter_seek_to_first(it); rv == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        bool mine = false;
        if ((k[0] == 'U' && klen == UKEY) || (k[0] == 'V' && klen == VKEY)) {
            /* Not needed once the session ended: its late requests apply
             * as ENOLCK (store/state.c). */
            int at = k[0] == 'U' ? 9 : 1;
            if (rfs_get_be64(k + at) == client &&
                rfs_get_be64(k + at + 8) == boot) {
                rocksdb_writebatch_delete_cf(t->b, t->s->cf[CF_LOCKS],
                                             (const char *)k, klen);
            }
            continue;
        }
        if (k[0] == 'H' && klen == HKEY) {
            mine = rfs_get_be64(k + 9) == client &&
                   rfs_get_be64(k + 17) == boot;
        } else if (k[0] == 'W' && klen == WKEY &&
                   (vlen == WVAL || vlen == WVAL_ORDER)) {
            mine = rfs_get_le64(v) == client && rfs_get_le64(v + 8) == boot;
        }
        uint64_t ino = klen >= 9 ? rfs_get_be64(k + 1) : 0;
        if (mine && (n == 0 || inos[n - 1] != ino)) {
            uint64_t *p = rfs_realloc(inos, (n + 1) * sizeof(*p));
            if (p == NULL) {
                rv = -ENOMEM;
                break;
            }
            inos = p;
            inos[n++] = ino;
        }
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err != NULL) {
        rv = store__rocks_err(t->s, err, "reading the lock table");
    }
    for (size_t i = 0; rv == 0 && i < n; i++) {
        if (i > 0 && inos[i] == inos[i - 1]) {
            continue; /* Seen among holders and again among waiters. */
        }
        bool dup = false;
        for (size_t j = 0; j < i; j++) {
            dup = dup || inos[j] == inos[i];
        }
        if (dup) {
            continue;
        }
        struct table tb;
        rv = table_load(t->s, inos[i], &tb, true);
        if (rv != 0) {
            break;
        }
        for (size_t j = 0; j < tb.n;) {
            if (tb.v[j].client == client && tb.v[j].boot == boot) {
                drop_at(&tb, j);
                continue;
            }
            j++;
        }
        rv = grant_waiters(t, &tb);
        if (rv == 0) {
            rv = table_write(t, &tb);
        }
        table_free(&tb);
    }
    rfs_free(inos);
    return rv;
}

int store_lock_list(struct store *s, uint64_t ino, struct store_lock **out,
                    size_t *n)
{
    struct table tb;
    int rv = table_load(s, ino, &tb, false);
    *out = rv == 0 ? tb.v : NULL;
    *n = rv == 0 ? tb.n : 0;
    return rv;
}
