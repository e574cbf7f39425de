/*
 * Reads of the filesystem state, the front door's read half: views,
 * attributes, lookups, file contents, links, listings and extended
 * attributes, and the usage totals. Reads come straight from RocksDB on
 * any thread, optionally through a view (a RocksDB snapshot), so a reader
 * is never torn by a concurrent apply.
 */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "../common/heap.h"
#include "store_i.h"

struct store_view *store_view_new(struct store *s)
{
    struct store_view *v = rfs_calloc(1, sizeof(*v));
    if (v == NULL) {
        return NULL;
    }
    v->snap = rocksdb_create_snapshot(s->db);
    v->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(v->ro, 1);
    rocksdb_readoptions_set_snapshot(v->ro, v->snap);
    return v;
}

void store_view_free(struct store *s, struct store_view *v)
{
    if (v == NULL) {
        return;
    }
    rocksdb_readoptions_destroy(v->ro);
    rocksdb_release_snapshot(s->db, v->snap);
    rfs_free(v);
}

int store_getattr(struct store *s, const struct store_view *v, uint64_t ino,
                  struct store_attr *out)
{
    return store__inode_get(s, store__ro(s, v), ino, out, NULL, NULL);
}

int store_lookup(struct store *s, const struct store_view *v, uint64_t parent,
                 const char *name, size_t name_len, struct store_attr *out)
{
    const rocksdb_readoptions_t *ro = store__ro(s, v);
    uint64_t ino;
    uint8_t type;
    int rv = store__dentry_get(s, ro, parent, name, name_len, &ino, &type);
    if (rv != 0) {
        return rv;
    }
    return store__inode_get(s, ro, ino, out, NULL, NULL);
}

/* Read len bytes at off of a file of size `size` whose chunks are in cf:
 * holes read as zeros. */
int store__read_chunks(struct store *s, const struct store_view *v,
                       int cf, uint64_t ino, uint64_t size, uint64_t off,
                       size_t len, void *buf, size_t *got)
{
    *got = 0;
    if (off >= size) {
        return 0;
    }
    if (len > size - off) {
        len = (size_t)(size - off);
    }
    memset(buf, 0, len); /* Holes read as zeros. */
    uint8_t from[16], end[8];
    store__chunk_key(from, ino, off / STORE_CHUNK_SIZE);
    struct store_iter i;
    store__iter_open(s, v, cf, from, 16, end, store__prefix_end(from, 8, end),
                     &i);
    rocksdb_iterator_t *it = i.it;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
        if (klen != 16 || rfs_get_be64(k) != ino) {
            break;
        }
        uint64_t cstart = rfs_get_be64(k + 8) * STORE_CHUNK_SIZE;
        if (cstart >= off + len) {
            break;
        }
        const char *val = rocksdb_iter_value(it, &vlen);
        uint64_t a0 = cstart > off ? cstart : off;
        uint64_t a1 = cstart + vlen < off + len ? cstart + vlen : off + len;
        if (a1 > a0) {
            memcpy((uint8_t *)buf + (a0 - off), val + (a0 - cstart),
                   (size_t)(a1 - a0));
        }
    }
    char what[64];
    snprintf(what, sizeof(what), "reading file %llu", (unsigned long long)ino);
    int rv = store__iter_close(s, &i, what);
    if (rv != 0) {
        return rv;
    }
    *got = len;
    return 0;
}

int store_read(struct store *s, const struct store_view *v, uint64_t ino,
               uint64_t off, size_t len, void *buf, size_t *got)
{
    const rocksdb_readoptions_t *ro = store__ro(s, v);
    struct store_attr a;
    *got = 0;
    int rv = store__inode_get(s, ro, ino, &a, NULL, NULL);
    if (rv != 0) {
        return rv;
    }
    if (a.type == STORE_DIR) {
        return -EISDIR;
    }
    return store__read_chunks(s, v, CF_CHUNKS, ino, a.size, off, len, buf,
                              got);
}

int store_readlink(struct store *s, const struct store_view *v, uint64_t ino,
                   char *buf, size_t cap, size_t *len)
{
    struct store_attr a;
    char *raw;
    size_t rawlen;
    int rv = store__inode_get(s, store__ro(s, v), ino, &a, &raw, &rawlen);
    if (rv != 0) {
        return rv;
    }
    if (a.type != STORE_SYMLINK) {
        rocksdb_free(raw);
        return -EINVAL;
    }
    size_t n = rawlen - INODE_VALUE_SIZE;
    *len = n;
    memcpy(buf, raw + INODE_VALUE_SIZE, n < cap ? n : cap);
    rocksdb_free(raw);
    return 0;
}

int store_readdir(struct store *s, const struct store_view *v, uint64_t ino,
                  const char *after, size_t after_len, store_dirent_cb cb,
                  void *arg)
{
    uint8_t k[8 + STORE_NAME_MAX + 1];
    rfs_put_be64(k, ino);
    size_t klen0 = 8;
    if (after != NULL && after_len <= STORE_NAME_MAX) {
        memcpy(k + 8, after, after_len);
        k[8 + after_len] = '\0'; /* Just past `after` in key order. */
        klen0 = 8 + after_len + 1;
    }
    uint8_t end[8];
    struct store_iter i;
    store__iter_open(s, v, CF_DENTRIES, k, klen0, end,
                     store__prefix_end(k, 8, end), &i);
    rocksdb_iterator_t *it = i.it;
    bool damaged = false;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &klen);
        if (klen < 8 || rfs_get_be64(key) != ino) {
            break;
        }
        const char *val = rocksdb_iter_value(it, &vlen);
        if (vlen != 9) {
            /* Refused as store__dentry_get refuses it: a listing that left the
             * name out would disagree with the lookup of that name. */
            damaged = true;
            break;
        }
        if (cb(arg, (const char *)key + 8, klen - 8,
               rfs_get_le64((const uint8_t *)val), (uint8_t)val[8]) != 0) {
            break;
        }
    }
    char what[64];
    snprintf(what, sizeof(what), "listing directory %llu",
             (unsigned long long)ino);
    int rv = store__iter_close(s, &i, what);
    if (rv == 0 && damaged) {
        return store__set_err(s, RFS_ECORRUPT,
                              "directory entry in %llu of %s is damaged",
                              (unsigned long long)ino, s->dir);
    }
    return rv;
}

int store_getxattr(struct store *s, const struct store_view *v, uint64_t ino,
                   const char *name, size_t name_len, void *buf, size_t cap,
                   size_t *len)
{
    const rocksdb_readoptions_t *ro = store__ro(s, v);
    struct store_attr a;
    *len = 0;
    if (name_len == 0 || name_len > STORE_XATTR_NAME_MAX) {
        return -ENODATA;
    }
    int rv = store__inode_get(s, ro, ino, &a, NULL, NULL);
    if (rv != 0) {
        return rv;
    }
    uint8_t k[8 + STORE_XATTR_NAME_MAX];
    rfs_put_be64(k, ino);
    memcpy(k + 8, name, name_len);
    char *val;
    size_t vlen;
    rv = store__get(s, ro, CF_XATTRS, k, 8 + name_len, &val, &vlen,
             "reading an extended attribute");
    if (rv != 0) {
        return rv;
    }
    if (val == NULL) {
        return -ENODATA;
    }
    *len = vlen;
    if (cap > 0) {
        memcpy(buf, val, vlen < cap ? vlen : cap);
    }
    rocksdb_free(val);
    return 0;
}

struct xattr_names {
    char *buf;
    size_t cap, n;
};

/* Names, each with its NUL, as far as they fit; n counts them all. */
static void xattr_name_one(void *arg, const char *key, size_t klen,
                           const char *val, size_t vlen)
{
    struct xattr_names *l = arg;
    (void)val, (void)vlen;
    size_t nl = klen - 8;
    if (l->n + nl + 1 <= l->cap) {
        memcpy(l->buf + l->n, key + 8, nl);
        l->buf[l->n + nl] = '\0';
    }
    l->n += nl + 1;
}

int store_listxattr(struct store *s, const struct store_view *v,
                    uint64_t ino, char *buf, size_t cap, size_t *len)
{
    const rocksdb_readoptions_t *ro = store__ro(s, v);
    struct store_attr a;
    *len = 0;
    int rv = store__inode_get(s, ro, ino, &a, NULL, NULL);
    if (rv != 0) {
        return rv;
    }
    struct xattr_names l = {buf, cap, 0};
    rv = store__xattr_walk(s, v, ino, xattr_name_one, &l);
    if (rv == 0) {
        *len = l.n;
    }
    return rv;
}

int store_usage(struct store *s, struct store_usage *u)
{
    memset(u, 0, sizeof(*u));
    char *v = rocksdb_property_value_cf(s->db, s->cf[CF_INODES],
                                        "rocksdb.estimate-num-keys");
    if (v != NULL) {
        u->files = strtoull(v, NULL, 10);
        rocksdb_free(v);
    }
    const char *props[] = {"rocksdb.total-sst-files-size",
                           "rocksdb.cur-size-all-mem-tables"};
    for (int cf = 0; cf < CF_COUNT; cf++) {
        for (int i = 0; i < 2; i++) {
            v = rocksdb_property_value_cf(s->db, s->cf[cf], props[i]);
            if (v != NULL) {
                u->bytes += strtoull(v, NULL, 10);
                rocksdb_free(v);
            }
        }
    }
    return 0;
}
