/*
 * Orphans: files unlinked while a descriptor on this node holds them open
 * (docs/fs.md, "Open, then unlinked"). When an entry removes a file's last
 * name, the host's keep hook decides whether its record and chunks are
 * copied into CF_ORPHANS in the same batch as the delete; from then on
 * this node alone reads and changes its copy, outside the log, until the
 * last close drops it. Never in a snapshot, emptied at open.
 */
#include <errno.h>
#include <stdio.h>

#include "store_i.h"

/* Copy file a's record and chunks into this node's orphans, in the
 * entry's batch, so that the copy and the delete happen together. */
int store__orphan_keep(struct tx *t, const struct store_attr *a)
{
    uint8_t k[16];
    rfs_put_be64(k, a->ino);
    struct store_attr o = *a;
    o.nlink = 0;
    uint8_t v[INODE_VALUE_SIZE];
    store__attr_encode(&o, v);
    rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_ORPHANS], (char *)k, 8,
                              (char *)v, sizeof(v));
    store__chunk_key(k, a->ino, 0);
    uint8_t end[8];
    struct store_iter i;
    store__iter_open(t->s, NULL, CF_CHUNKS, k, 16, end,
                     store__prefix_end(k, 8, end), &i);
    rocksdb_iterator_t *it = i.it;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen != 16 || rfs_get_be64((const uint8_t *)key) != a->ino) {
            break;
        }
        const char *val = rocksdb_iter_value(it, &vlen);
        rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_ORPHANS], key, klen, val,
                                  vlen);
    }
    char what[64];
    snprintf(what, sizeof(what), "keeping open file %llu",
             (unsigned long long)a->ino);
    return store__iter_close(t->s, &i, what);
}

void store_set_keep(struct store *s, store_keep_fn fn, void *arg)
{
    s->keep = fn;
    s->keep_arg = arg;
}

static int orphan_get(struct store *s, uint64_t ino, struct store_attr *a)
{
    uint8_t k[8];
    rfs_put_be64(k, ino);
    char *v;
    size_t len;
    int rv =
        store__get(s, s->ro, CF_ORPHANS, k, 8, &v, &len, "reading an orphan");
    if (rv != 0) {
        return rv;
    }
    if (v == NULL) {
        return -ENOENT;
    }
    rv = store__attr_decode(ino, v, len, a);
    rocksdb_free(v);
    if (rv != 0) {
        return store__set_err(s, rv, "orphan %llu in %s is damaged",
                              (unsigned long long)ino, s->dir);
    }
    return 0;
}

int store_orphan_getattr(struct store *s, uint64_t ino,
                         struct store_attr *out)
{
    return orphan_get(s, ino, out);
}

int store_orphan_read(struct store *s, uint64_t ino, uint64_t off,
                      size_t len, void *buf, size_t *got)
{
    struct store_attr a;
    *got = 0;
    int rv = orphan_get(s, ino, &a);
    if (rv != 0) {
        return rv;
    }
    return store__read_chunks(s, NULL, CF_ORPHANS, ino, a.size, off, len, buf,
                       got);
}

/* The orphan's change, decided like store__op_write/store__op_setattr but on
 * this node's copy. Positive results are the operation's errno. */
static int orphan_apply(struct tx *t, const struct store_cmd *c,
                        struct store_attr *a)
{
    int rv = 0;
    if (c->op == STORE_OP_WRITE) {
        if (c->flags & STORE_TRUNC) {
            rv = store__set_size(t, a, 0);
        }
        uint64_t off = c->flags & STORE_APPEND ? a->size : c->offset;
        if (rv == 0) {
            rv = store__write_data(t, a, off, c->data, c->data_len);
        }
        if (rv == 0 && ((c->flags & STORE_TRUNC) || c->data_len > 0)) {
            a->mtime_ns = a->ctime_ns = t->now;
        }
        if (rv == 0) {
            store__write_kill_priv(c, false, a);
        }
        return rv;
    }
    if (c->op != STORE_OP_SETATTR) {
        return EINVAL;
    }
    if (c->valid & STORE_SET_SIZE) {
        rv = store__set_size(t, a, c->size);
        if (rv != 0) {
            return rv;
        }
        a->mtime_ns = t->now;
    }
    if (c->valid & STORE_SET_MODE) {
        a->mode = c->mode & 07777;
    }
    if (c->valid & STORE_SET_UID) {
        a->uid = c->uid;
    }
    if (c->valid & STORE_SET_GID) {
        a->gid = c->gid;
    }
    if (c->valid & STORE_SET_ATIME) {
        a->atime_ns = c->atime_ns;
    }
    if (c->valid & STORE_SET_MTIME) {
        a->mtime_ns = c->mtime_ns;
    }
    store__setattr_rules(t, c, a);
    a->ctime_ns = t->now;
    return 0;
}

int store_orphan_change(struct store *s, const struct store_cmd *c,
                        int64_t now_ns, struct store_attr *out)
{
    pthread_mutex_lock(&s->orphan_lock);
    struct store_attr a;
    int rv = orphan_get(s, c->ino, &a);
    struct tx t = {.s = s, .now = now_ns, .orphan = true};
    t.b = rv == 0 ? rocksdb_writebatch_create() : NULL;
    if (rv == 0) {
        rv = orphan_apply(&t, c, &a);
        rv = rv > 0 ? -rv : rv;
    }
    if (rv == 0) {
        uint8_t k[8], v[INODE_VALUE_SIZE];
        rfs_put_be64(k, a.ino);
        store__attr_encode(&a, v);
        rocksdb_writebatch_put_cf(t.b, s->cf[CF_ORPHANS], (char *)k, 8,
                                  (char *)v, sizeof(v));
        /* Unsynced: an orphan does not outlive this run anyway. */
        rv = store__write(s, t.b, false, "writing an orphan");
    }
    if (t.b != NULL) {
        rocksdb_writebatch_destroy(t.b);
    }
    pthread_mutex_unlock(&s->orphan_lock);
    if (rv == 0 && out != NULL) {
        *out = a;
    }
    return rv;
}

int store_orphan_drop(struct store *s, uint64_t ino)
{
    pthread_mutex_lock(&s->orphan_lock);
    struct tx t = {.s = s, .orphan = true};
    t.b = rocksdb_writebatch_create();
    uint8_t k[8];
    rfs_put_be64(k, ino);
    rocksdb_writebatch_delete_cf(t.b, s->cf[CF_ORPHANS], (char *)k, 8);
    int rv = store__chunks_drop(&t, ino, 0, NULL);
    if (rv == 0) {
        rv = store__write(s, t.b, false, "dropping an orphan");
    }
    rocksdb_writebatch_destroy(t.b);
    pthread_mutex_unlock(&s->orphan_lock);
    return rv;
}

/* Visit every orphan key: count the records, or delete everything. */
static int orphans_scan(struct store *s, uint64_t *records,
                        rocksdb_writebatch_t *del)
{
    uint64_t n = 0;
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(s->db, s->ro, s->cf[CF_ORPHANS]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(it, &klen);
        n += klen == 8;
        if (del != NULL) {
            rocksdb_writebatch_delete_cf(del, s->cf[CF_ORPHANS], key, klen);
        }
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err != NULL) {
        return store__rocks_err(s, err, "listing orphans");
    }
    if (records != NULL) {
        *records = n;
    }
    return 0;
}

int store_orphan_count(struct store *s, uint64_t *n)
{
    return orphans_scan(s, n, NULL);
}

int store__orphans_clear(struct store *s)
{
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    uint64_t n = 0;
    int rv = orphans_scan(s, &n, b);
    if (rv == 0 && n + rocksdb_writebatch_count(b) > 0) {
        rv = store__write(s, b, false, "dropping orphans of the last run");
    }
    rocksdb_writebatch_destroy(b);
    return rv;
}
