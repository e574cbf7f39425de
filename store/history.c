/*
 * The change history (raftfs watch) and the reverse index of names it takes
 * its paths from.
 *
 * Links. The tree is stored by (parent id, name); a directory's record
 * knows its parent's id but not its own name, and a file knows neither.
 * CF_LINKS keeps every directory entry a second time, keyed by the inode
 * it names (BE ino + BE parent + name), so a path is a walk up the tree
 * with one seek per level. It is written in the same batch as the entry it
 * mirrors (records.c's store__dentry_put and store__dentry_del), so it is
 * replicated state in effect, but derived: it is left out of snapshot
 * images, and rebuilt from the image's entries when one is installed
 * (snap.c) and from CF_DENTRIES when a store made by an older build is
 * opened.
 *
 * History. Each entry that changed the tree adds one record to CF_HISTORY,
 * keyed by its index (BE), value: op u8, path length LE u32, path, second
 * path length LE u32, second path. The paths are computed from the state
 * just before the entry, which every node has alike, so the records are
 * the same everywhere; but what is kept is this node's business
 * (store_options.history_entries; a snapshot install starts it afresh), so
 * the column family stays out of snapshots. Pruning deletes, as entry i
 * applies, the record of entry i - history_entries: one point delete per
 * entry, no range tombstones on the apply path (see store__chunks_drop).
 *
 * meta "hist_from": the history is complete only after this index (the
 * last snapshot installed, or where an older store started recording).
 * meta "hist_w": the bound the records were pruned with, so that a larger
 * bound after a restart does not claim records already deleted.
 */
#include <errno.h>
#include <string.h>

#include "../common/heap.h"
#include "store_i.h"

static const char *const change_names[STORE_CH_MAX] = {
    [STORE_CH_CREATE] = "create",   [STORE_CH_MKDIR] = "mkdir",
    [STORE_CH_WRITE] = "write",     [STORE_CH_TRUNCATE] = "truncate",
    [STORE_CH_SETATTR] = "setattr", [STORE_CH_UNLINK] = "unlink",
    [STORE_CH_RMDIR] = "rmdir",     [STORE_CH_RENAME] = "rename",
    [STORE_CH_LINK] = "link",       [STORE_CH_SYMLINK] = "symlink",
    [STORE_CH_MKNOD] = "mknod",     [STORE_CH_SETXATTR] = "setxattr",
    [STORE_CH_REMOVEXATTR] = "removexattr",
    [STORE_CH_LOCK] = "lock",       [STORE_CH_UNLOCK] = "unlock",
};

const char *store_change_name(uint8_t op)
{
    return op > 0 && op < STORE_CH_MAX ? change_names[op] : "?";
}

/* ---- Links ------------------------------------------------------------ */

static size_t link_key(uint8_t *k, uint64_t ino, uint64_t parent,
                       const char *name, size_t len)
{
    rfs_put_be64(k, ino);
    rfs_put_be64(k + 8, parent);
    memcpy(k + 16, name, len);
    return 16 + len;
}

void store__link_put(struct store *s, rocksdb_writebatch_t *b, uint64_t ino,
                     uint64_t parent, const char *name, size_t len)
{
    uint8_t k[16 + STORE_NAME_MAX];
    size_t kl = link_key(k, ino, parent, name, len);
    rocksdb_writebatch_put_cf(b, s->cf[CF_LINKS], (char *)k, kl, "", 0);
}

void store__link_del(struct store *s, rocksdb_writebatch_t *b, uint64_t ino,
                     uint64_t parent, const char *name, size_t len)
{
    uint8_t k[16 + STORE_NAME_MAX];
    size_t kl = link_key(k, ino, parent, name, len);
    rocksdb_writebatch_delete_cf(b, s->cf[CF_LINKS], (char *)k, kl);
}

/* The path of ino, built backwards from the end of buf (cap bytes): one
 * seek per level to ino's first link. *start gets where it begins. */
static int path_build(struct store *s, const rocksdb_readoptions_t *ro,
                      uint64_t ino, char *buf, size_t cap, size_t *start)
{
    size_t pos = cap;
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_LINKS]);
    int rv = 0;
    while (ino != STORE_ROOT_INO) {
        uint8_t k[8];
        rfs_put_be64(k, ino);
        rocksdb_iter_seek(it, (char *)k, 8);
        size_t kl;
        const char *key = rocksdb_iter_valid(it) ? rocksdb_iter_key(it, &kl)
                                                 : NULL;
        if (key == NULL || kl < 16 || memcmp(key, k, 8) != 0) {
            char *err = NULL;
            rocksdb_iter_get_error(it, &err);
            rv = err != NULL ? store__rocks_err(s, err, "reading links")
                             : -ENOENT;
            break;
        }
        size_t nl = kl - 16;
        if (nl == 0 || nl > STORE_NAME_MAX) {
            rv = store__set_err(s, RFS_ECORRUPT, "link of inode %llu: bad "
                                "name length %zu", (unsigned long long)ino, nl);
            break;
        }
        if (pos < nl + 1) {
            rv = -ENAMETOOLONG;
            break;
        }
        pos -= nl;
        memcpy(buf + pos, key + 16, nl);
        buf[--pos] = '/';
        ino = rfs_get_be64((const uint8_t *)key + 8);
    }
    rocksdb_iter_destroy(it);
    if (rv == 0 && pos == cap) {
        if (cap == 0) {
            return -ENAMETOOLONG;
        }
        buf[--pos] = '/';
    }
    *start = pos;
    return rv;
}

int store_path(struct store *s, const struct store_view *v, uint64_t ino,
               char *buf, size_t cap, size_t *len)
{
    size_t start;
    int rv = path_build(s, store__ro(s, v), ino, buf, cap, &start);
    if (rv == 0) {
        *len = cap - start;
        memmove(buf, buf + start, *len);
    }
    return rv;
}

/* ---- Records ---------------------------------------------------------- */

/* A path being assembled for a record: parent's path, then "/name". */
struct rec_path {
    char buf[STORE_PATH_MAX];
    size_t len;
};

static int path_of(struct store *s, uint64_t ino, struct rec_path *p)
{
    size_t start;
    int rv = path_build(s, s->ro, ino, p->buf, sizeof(p->buf), &start);
    if (rv == 0) {
        p->len = sizeof(p->buf) - start;
        memmove(p->buf, p->buf + start, p->len);
    }
    return rv;
}

static int path_of_name(struct store *s, uint64_t parent, const char *name,
                        size_t nl, struct rec_path *p)
{
    int rv = path_of(s, parent, p);
    if (rv != 0) {
        return rv;
    }
    if (p->len == 1) {
        p->len = 0; /* The root: "/name", not "//name". */
    }
    if (p->len + 1 + nl > sizeof(p->buf)) {
        return -ENAMETOOLONG;
    }
    p->buf[p->len++] = '/';
    memcpy(p->buf + p->len, name, nl);
    p->len += nl;
    return 0;
}

static int name_exists(struct store *s, uint64_t parent, const char *name,
                       size_t nl, bool *exists)
{
    uint8_t k[8 + STORE_NAME_MAX];
    rfs_put_be64(k, parent);
    memcpy(k + 8, name, nl);
    char *err = NULL;
    size_t vl;
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[CF_DENTRIES], (char *)k,
                             8 + nl, &vl, &err);
    if (err != NULL) {
        return store__rocks_err(s, err, "reading an entry for the history");
    }
    *exists = v != NULL;
    rocksdb_free(v);
    return 0;
}

/* A lock record's holder, after the paths: client, boot, owner, start,
 * end, revision (LE u64 each), kind, type, cause. */
#define HOLDER_BYTES 51

static void holder_encode(uint8_t *v, const struct store_lock *h,
                          uint8_t cause)
{
    rfs_put_le64(v, h->client);
    rfs_put_le64(v + 8, h->boot);
    rfs_put_le64(v + 16, h->owner);
    rfs_put_le64(v + 24, h->start);
    rfs_put_le64(v + 32, h->end);
    rfs_put_le64(v + 40, h->revision);
    v[48] = h->kind;
    v[49] = h->type;
    v[50] = cause;
}

static void holder_decode(const uint8_t *v, struct store_change *ch)
{
    ch->holder.client = rfs_get_le64(v);
    ch->holder.boot = rfs_get_le64(v + 8);
    ch->holder.owner = rfs_get_le64(v + 16);
    ch->holder.start = rfs_get_le64(v + 24);
    ch->holder.end = rfs_get_le64(v + 32);
    ch->holder.revision = rfs_get_le64(v + 40);
    ch->holder.kind = v[48];
    ch->holder.type = v[49];
    ch->lock_cause = v[50];
}

static bool is_lock_op(uint8_t op)
{
    return op == STORE_CH_LOCK || op == STORE_CH_UNLOCK;
}

/* Key: BE revision, then (for the second and later changes of one entry,
 * as the files a session's end removes) BE sub: readers order by both. */
static int put_record_h(struct store *s, rocksdb_writebatch_t *b,
                        rfs_index_t index, uint16_t sub, uint8_t op,
                        const struct rec_path *p, const struct rec_path *p2,
                        const struct store_lock *h, uint8_t cause)
{
    size_t l2 = p2 != NULL ? p2->len : 0;
    size_t vl = 1 + 4 + p->len + 4 + l2 + (h != NULL ? HOLDER_BYTES : 0);
    uint8_t *v = rfs_malloc(vl);
    if (v == NULL) {
        return -ENOMEM;
    }
    v[0] = op;
    rfs_put_le32(v + 1, (uint32_t)p->len);
    memcpy(v + 5, p->buf, p->len);
    rfs_put_le32(v + 5 + p->len, (uint32_t)l2);
    if (l2 > 0) {
        memcpy(v + 9 + p->len, p2->buf, l2);
    }
    if (h != NULL) {
        holder_encode(v + 9 + p->len + l2, h, cause);
    }
    uint8_t k[10];
    rfs_put_be64(k, index);
    k[8] = (uint8_t)(sub >> 8);
    k[9] = (uint8_t)sub;
    rocksdb_writebatch_put_cf(b, s->cf[CF_HISTORY], (char *)k,
                              sub > 0 ? 10 : 8, (char *)v, vl);
    rfs_free(v);
    return 0;
}

static int put_record(struct store *s, rocksdb_writebatch_t *b,
                      rfs_index_t index, uint16_t sub, uint8_t op,
                      const struct rec_path *p, const struct rec_path *p2)
{
    return put_record_h(s, b, index, sub, op, p, p2, NULL, 0);
}

int store__history_add(struct store *s, rocksdb_writebatch_t *b,
                       rfs_index_t index, const struct store_cmd *c)
{
    /* Two paths: the record's buffers are large, so off the stack. */
    struct rec_path *p = rfs_malloc(2 * sizeof(*p));
    if (p == NULL) {
        return -ENOMEM;
    }
    struct rec_path *p2 = p + 1;
    bool two = false, exists = false;
    uint8_t op = 0;
    int rv = 0;
    switch (c->op) {
    case STORE_OP_CREATE:
    case STORE_OP_PUT:
        rv = name_exists(s, c->parent, c->name, c->name_len, &exists);
        if (!exists) {
            op = STORE_CH_CREATE;
        } else if (c->data_len > 0 || c->op == STORE_OP_PUT) {
            op = STORE_CH_WRITE;
        } else if (c->flags & STORE_TRUNC) {
            op = STORE_CH_TRUNCATE;
        } /* Else an open(O_CREAT) of a file that exists: no change. */
        break;
    case STORE_OP_MKDIR:
        op = STORE_CH_MKDIR;
        break;
    case STORE_OP_SYMLINK:
        op = STORE_CH_SYMLINK;
        break;
    case STORE_OP_MKNOD:
        op = STORE_CH_MKNOD;
        break;
    case STORE_OP_UNLINK:
        op = STORE_CH_UNLINK;
        break;
    case STORE_OP_RMDIR:
        op = STORE_CH_RMDIR;
        break;
    case STORE_OP_LINK:
        op = STORE_CH_LINK;
        break;
    case STORE_OP_RENAME:
        op = STORE_CH_RENAME;
        two = true;
        break;
    case STORE_OP_WRITE:
        op = c->data_len > 0             ? STORE_CH_WRITE
             : (c->flags & STORE_TRUNC) ? STORE_CH_TRUNCATE
                                         : 0;
        break;
    case STORE_OP_SETATTR:
        op = c->valid & STORE_SET_SIZE ? STORE_CH_TRUNCATE : STORE_CH_SETATTR;
        break;
    case STORE_OP_SETXATTR:
        op = STORE_CH_SETXATTR;
        break;
    case STORE_OP_REMOVEXATTR:
        op = STORE_CH_REMOVEXATTR;
        break;
    default:
        break;
    }
    if (rv == 0 && op != 0) {
        switch (c->op) {
        case STORE_OP_WRITE:
        case STORE_OP_SETATTR:
        case STORE_OP_SETXATTR:
        case STORE_OP_REMOVEXATTR:
            rv = path_of(s, c->ino, p);
            break;
        default:
            rv = path_of_name(s, c->parent, c->name, c->name_len, p);
            break;
        }
        if (rv == 0 && two) {
            rv = path_of_name(s, c->new_parent, c->new_name, c->new_name_len,
                              p2);
        }
        if (rv == -ENAMETOOLONG || rv == -ENOENT) {
            /* Deeper than a record holds, or (cannot happen in a
             * consistent tree) nameless: the change goes unrecorded
             * rather than the entry failing everywhere. */
            op = 0;
            rv = 0;
        }
    }
    if (rv == 0 && op != 0) {
        rv = put_record(s, b, index, 0, op, p, two ? p2 : NULL);
    }
    rfs_free(p);
    return rv;
}

int store__history_add_more(struct store *s, rocksdb_writebatch_t *b,
                            rfs_index_t index, uint16_t sub, uint8_t op,
                            uint64_t parent, const char *name, size_t len)
{
    struct rec_path *p = rfs_malloc(sizeof(*p));
    if (p == NULL) {
        return -ENOMEM;
    }
    int rv = path_of_name(s, parent, name, len, p);
    if (rv == 0) {
        rv = put_record(s, b, index, sub, op, p, NULL);
    } else if (rv == -ENAMETOOLONG || rv == -ENOENT) {
        rv = 0; /* As store__history_add: unrecorded, not failed. */
    }
    rfs_free(p);
    return rv;
}

static bool same_holder(const struct store_lock *a,
                        const struct store_lock *b)
{
    return a->client == b->client && a->boot == b->boot &&
           a->owner == b->owner && a->kind == b->kind;
}

int store__history_locks(struct tx *t, uint64_t ino,
                         const struct store_lock *now, size_t n)
{
    /* Before: the state the entry started from (the batch is not written
     * yet, and an entry writes one inode's table once), which every node
     * has alike, so the records are the same everywhere. */
    struct store_lock *old = NULL;
    size_t n_old = 0;
    int rv = store_lock_list(t->s, ino, &old, &n_old);
    struct rec_path *p = rv == 0 ? rfs_malloc(sizeof(*p)) : NULL;
    if (rv == 0 && p == NULL) {
        rv = -ENOMEM;
    }
    bool any = false;
    for (size_t i = 0; rv == 0 && !any && i < n; i++) {
        any = !now[i].waiting && now[i].revision == t->index;
    }
    for (size_t i = 0; rv == 0 && !any && i < n_old; i++) {
        any = !old[i].waiting;
    }
    if (rv == 0 && any) {
        rv = path_of(t->s, ino, p);
        if (rv == -ENAMETOOLONG || rv == -ENOENT) {
            any = false; /* No name (unlinked, open): nothing to record. */
            rv = 0;
        }
    }
    /* Releases first: the grants they make room for come after them. A
     * holding ends when its owner holds nothing of its range any more. */
    uint8_t cause = t->locks_by_session ? STORE_LKC_SESSION
                                        : STORE_LKC_UNLOCK;
    for (size_t i = 0; rv == 0 && any && i < n_old; i++) {
        const struct store_lock *o = &old[i];
        bool kept = o->waiting;
        for (size_t j = 0; !kept && j < n; j++) {
            kept = !now[j].waiting && same_holder(&now[j], o) &&
                   now[j].start <= o->end && o->start <= now[j].end;
        }
        if (!kept) {
            rv = put_record_h(t->s, t->b, t->index, ++t->history_sub,
                              STORE_CH_UNLOCK, p, NULL, o, cause);
        }
    }
    for (size_t i = 0; rv == 0 && any && i < n; i++) {
        if (!now[i].waiting && now[i].revision == t->index) {
            rv = put_record_h(t->s, t->b, t->index, ++t->history_sub,
                              STORE_CH_LOCK, p, NULL, &now[i], 0);
        }
    }
    rfs_free(p);
    rfs_free(old);
    return rv;
}

static uint64_t window(const struct store *s)
{
    return s->o.history_entries > 0 ? s->o.history_entries : 1;
}

void store__history_prune(struct store *s, rocksdb_writebatch_t *b,
                          rfs_index_t index)
{
    uint64_t w = window(s);
    if (index > w) {
        /* The entry's records: its own key and any BE sub after it. */
        uint8_t a[8], z[8];
        rfs_put_be64(a, index - w);
        rfs_put_be64(z, index - w + 1);
        rocksdb_writebatch_delete_range_cf(b, s->cf[CF_HISTORY], (char *)a, 8,
                                           (char *)z, 8);
    }
}

static void put_meta64(struct store *s, rocksdb_writebatch_t *b,
                       const char *key, uint64_t val)
{
    uint8_t v[8];
    rfs_put_le64(v, val);
    rocksdb_writebatch_put_cf(b, s->cf[CF_META], key, strlen(key), (char *)v,
                              8);
}

void store__history_reset(struct store *s, rocksdb_writebatch_t *b,
                          rfs_index_t index)
{
    uint8_t lo[1] = {0}, hi[300];
    memset(hi, 0xff, sizeof(hi));
    rocksdb_writebatch_delete_range_cf(b, s->cf[CF_LINKS], (char *)lo, 0,
                                       (char *)hi, sizeof(hi));
    rocksdb_writebatch_delete_range_cf(b, s->cf[CF_HISTORY], (char *)lo, 0,
                                       (char *)hi, 9);
    put_meta64(s, b, "hist_from", index);
}

/* A u64 meta record: *found false if absent. */
static int get_meta64(struct store *s, const rocksdb_readoptions_t *ro,
                      const char *key, uint64_t *val, bool *found)
{
    char *err = NULL;
    size_t len;
    char *v = rocksdb_get_cf(s->db, ro, s->cf[CF_META], key, strlen(key),
                             &len, &err);
    if (err != NULL) {
        return store__rocks_err(s, err, "reading meta %s", key);
    }
    *found = v != NULL;
    if (v != NULL && len != 8) {
        rocksdb_free(v);
        return store__set_err(s, RFS_ECORRUPT, "meta %s: %zu bytes", key,
                              len);
    }
    *val = v != NULL ? rfs_get_le64((const uint8_t *)v) : 0;
    rocksdb_free(v);
    return 0;
}

int store__links_init(struct store *s)
{
    bool have_links, have_from, have_w;
    uint64_t unused, from, w_old;
    int rv = get_meta64(s, s->ro, "links", &unused, &have_links);
    if (rv == 0) {
        rv = get_meta64(s, s->ro, "hist_from", &from, &have_from);
    }
    if (rv == 0) {
        rv = get_meta64(s, s->ro, "hist_w", &w_old, &have_w);
    }
    if (rv != 0) {
        return rv;
    }
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    if (!have_links) {
        /* A store from before the history: every entry gets its link,
         * and the history starts here. */
        rocksdb_iterator_t *it =
            rocksdb_create_iterator_cf(s->db, s->ro, s->cf[CF_DENTRIES]);
        for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
             rocksdb_iter_next(it)) {
            size_t kl, vl;
            const char *k = rocksdb_iter_key(it, &kl);
            const char *v = rocksdb_iter_value(it, &vl);
            if (kl > 8 && kl <= 8 + STORE_NAME_MAX && vl >= 8) {
                store__link_put(s, b, rfs_get_le64((const uint8_t *)v),
                                rfs_get_be64((const uint8_t *)k), k + 8,
                                kl - 8);
            }
        }
        char *err = NULL;
        rocksdb_iter_get_error(it, &err);
        rocksdb_iter_destroy(it);
        if (err != NULL) {
            rocksdb_writebatch_destroy(b);
            return store__rocks_err(s, err, "reading entries for links");
        }
        from = s->applied;
    }
    uint64_t w = window(s);
    if (have_w && w > w_old && s->applied > w_old && s->applied - w_old > from) {
        /* Records below applied - w_old are gone already. */
        from = s->applied - w_old;
    }
    if (!have_links || !have_w || w != w_old) {
        put_meta64(s, b, "links", 1);
        put_meta64(s, b, "hist_from", from);
        put_meta64(s, b, "hist_w", w);
        rv = store__write(s, b, true, "recording the history's start");
    }
    rocksdb_writebatch_destroy(b);
    return rv;
}

/* ---- Reading ---------------------------------------------------------- */

int store_history(struct store *s, uint64_t since, store_change_cb cb,
                  void *arg, uint64_t *upto, uint64_t *first)
{
    const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(s->db);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(ro, 1);
    rocksdb_readoptions_set_snapshot(ro, snap);
    uint64_t applied = 0, from = 0;
    bool found;
    int rv = get_meta64(s, ro, "applied", &applied, &found);
    if (rv == 0) {
        rv = get_meta64(s, ro, "hist_from", &from, &found);
    }
    uint64_t w = window(s);
    uint64_t oldest = from;
    if (applied > w && applied - w > oldest) {
        oldest = applied - w;
    }
    if (first != NULL) {
        *first = oldest;
    }
    *upto = applied;
    if (rv == 0 && since == STORE_HISTORY_NOW) {
        since = applied; /* Nothing is above it in this view. */
    } else if (rv == 0 && since > applied) {
        rv = -EINVAL;
    } else if (rv == 0 && since < oldest) {
        rv = RFS_ECOMPACTED;
    }
    rocksdb_iterator_t *it =
        rv == 0 ? rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_HISTORY])
                : NULL;
    if (it != NULL) {
        uint8_t k[8];
        rfs_put_be64(k, since + 1);
        for (rocksdb_iter_seek(it, (char *)k, 8); rocksdb_iter_valid(it);
             rocksdb_iter_next(it)) {
            size_t kl, vl;
            const char *key = rocksdb_iter_key(it, &kl);
            const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
            struct store_change ch = {0};
            uint32_t l1 = vl >= 5 ? rfs_get_le32(v + 1) : 0;
            uint32_t l2 = vl >= 9 && l1 <= vl - 9 ? rfs_get_le32(v + 5 + l1)
                                                  : 0;
            size_t extra = vl >= 1 && is_lock_op(v[0]) ? HOLDER_BYTES : 0;
            if ((kl != 8 && kl != 10) || vl < 9 + extra ||
                l1 > vl - 9 - extra || l2 != vl - 9 - extra - l1) {
                rv = store__set_err(s, RFS_ECORRUPT, "history record "
                                    "damaged (%zu bytes)", vl);
                break;
            }
            ch.revision = rfs_get_be64((const uint8_t *)key);
            if (ch.revision > applied) {
                break;
            }
            ch.op = v[0];
            ch.path = (const char *)v + 5;
            ch.path_len = l1;
            ch.path2 = l2 > 0 ? (const char *)v + 9 + l1 : NULL;
            ch.path2_len = l2;
            if (extra > 0) {
                holder_decode(v + 9 + l1 + l2, &ch);
            }
            if (cb(arg, &ch) != 0) {
                break;
            }
        }
        char *err = NULL;
        rocksdb_iter_get_error(it, &err);
        if (err != NULL && rv == 0) {
            rv = store__rocks_err(s, err, "reading the history");
        } else if (err != NULL) {
            rocksdb_free(err);
        }
        rocksdb_iter_destroy(it);
    }
    rocksdb_readoptions_destroy(ro);
    rocksdb_release_snapshot(s->db, snap);
    return rv;
}
