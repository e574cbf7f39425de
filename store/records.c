/*
 * The records of the replicated state, as every other file of the state
 * machine reads and writes them: the inode record's encoding, the keys of
 * chunks, and the reads and batch writes of inodes, directory entries,
 * chunks and extended attributes. One place knows each record's shape, so
 * that a damaged one is refused the same way by apply and by reads
 * (RFS_ECORRUPT), and the derived records that must follow a change (a
 * directory entry's link, a last name's chunks and attributes) follow it
 * wherever it is made.
 *
 * Reads take the read options they are given (any thread, optionally
 * through a view); writes go into the entry's batch (struct tx) on the
 * writer thread, and read the state as it was before the entry.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store_i.h"

/* Where a change's file chunks live: the replicated state, or this node's
 * orphans (same keys). */
int store__chunks_cf(const struct tx *t)
{
    return t->orphan ? CF_ORPHANS : CF_CHUNKS;
}

/* ---- Encodings -------------------------------------------------------- */

void store__attr_encode(const struct store_attr *a, uint8_t *p)
{
    p[0] = a->type;
    rfs_put_le32(p + 1, a->mode);
    rfs_put_le32(p + 5, a->uid);
    rfs_put_le32(p + 9, a->gid);
    rfs_put_le32(p + 13, a->nlink);
    rfs_put_le64(p + 17, a->size);
    rfs_put_le64(p + 25, (uint64_t)a->atime_ns);
    rfs_put_le64(p + 33, (uint64_t)a->mtime_ns);
    rfs_put_le64(p + 41, (uint64_t)a->ctime_ns);
    rfs_put_le64(p + 49, a->revision);
    rfs_put_le64(p + 57, a->parent);
    rfs_put_le64(p + 65, a->stored);
}

int store__attr_decode(uint64_t ino, const char *v, size_t len,
                       struct store_attr *a)
{
    const uint8_t *p = (const uint8_t *)v;
    if (len < INODE_VALUE_SIZE || p[0] < STORE_FILE || p[0] > STORE_BLK) {
        return RFS_ECORRUPT;
    }
    bool dev = p[0] == STORE_CHR || p[0] == STORE_BLK;
    if (dev && len != INODE_VALUE_SIZE + INODE_RDEV_SIZE) {
        return RFS_ECORRUPT;
    }
    a->rdev = dev ? rfs_get_le64(p + INODE_VALUE_SIZE) : 0;
    a->ino = ino;
    a->type = p[0];
    a->mode = rfs_get_le32(p + 1);
    a->uid = rfs_get_le32(p + 5);
    a->gid = rfs_get_le32(p + 9);
    a->nlink = rfs_get_le32(p + 13);
    a->size = rfs_get_le64(p + 17);
    a->atime_ns = (int64_t)rfs_get_le64(p + 25);
    a->mtime_ns = (int64_t)rfs_get_le64(p + 33);
    a->ctime_ns = (int64_t)rfs_get_le64(p + 41);
    a->revision = rfs_get_le64(p + 49);
    a->parent = rfs_get_le64(p + 57);
    a->stored = rfs_get_le64(p + 65);
    return 0;
}

void store__chunk_key(uint8_t *k, uint64_t ino, uint64_t chunk)
{
    rfs_put_be64(k, ino);
    rfs_put_be64(k + 8, chunk);
}

/* ---- Low-level reads (any thread) ------------------------------------- */

int store__get(struct store *s, const rocksdb_readoptions_t *ro, int cf,
               const void *key, size_t klen, char **v, size_t *vlen,
               const char *what)
{
    char *err = NULL;
    *v = rocksdb_get_cf(s->db, ro, s->cf[cf], key, klen, vlen, &err);
    if (err != NULL) {
        return store__rocks_err(s, err, "%s", what);
    }
    return 0;
}

int store__inode_get(struct store *s, const rocksdb_readoptions_t *ro,
                     uint64_t ino, struct store_attr *a, char **raw,
                     size_t *rawlen)
{
    uint8_t k[8];
    rfs_put_be64(k, ino);
    char *v;
    size_t len;
    int rv = store__get(s, ro, CF_INODES, k, 8, &v, &len, "reading an inode");
    if (rv != 0) {
        return rv;
    }
    if (v == NULL) {
        return -ENOENT;
    }
    rv = store__attr_decode(ino, v, len, a);
    if (rv != 0) {
        rocksdb_free(v);
        return store__set_err(s, rv, "inode %llu in %s is damaged",
                              (unsigned long long)ino, s->dir);
    }
    if (raw != NULL) {
        *raw = v;
        *rawlen = len;
    } else {
        rocksdb_free(v);
    }
    return 0;
}

int store__dentry_get(struct store *s, const rocksdb_readoptions_t *ro,
                      uint64_t parent, const char *name, size_t len,
                      uint64_t *ino, uint8_t *type)
{
    uint8_t k[8 + STORE_NAME_MAX];
    if (len > STORE_NAME_MAX) {
        return -ENAMETOOLONG;
    }
    rfs_put_be64(k, parent);
    memcpy(k + 8, name, len);
    char *v;
    size_t vlen;
    int rv = store__get(s, ro, CF_DENTRIES, k, 8 + len, &v, &vlen,
                 "reading a directory entry");
    if (rv != 0) {
        return rv;
    }
    if (v == NULL) {
        return -ENOENT;
    }
    if (vlen != 9) {
        rocksdb_free(v);
        return store__set_err(s, RFS_ECORRUPT,
                              "directory entry in %llu of %s is damaged",
                              (unsigned long long)parent, s->dir);
    }
    *ino = rfs_get_le64((const uint8_t *)v);
    *type = (uint8_t)v[8];
    rocksdb_free(v);
    return 0;
}

/* ---- Writes into the entry's batch ------------------------------------ */

void store__inode_put(struct tx *t, const struct store_attr *a,
                      const void *target, size_t tlen)
{
    uint8_t k[8];
    uint8_t v[INODE_VALUE_SIZE + STORE_SYMLINK_MAX];
    rfs_put_be64(k, a->ino);
    store__attr_encode(a, v);
    uint8_t rdev[INODE_RDEV_SIZE];
    if (a->type == STORE_CHR || a->type == STORE_BLK) {
        /* A device's number is its record's tail, as a symlink's target
         * is: records of the other types keep their old length. */
        rfs_put_le64(rdev, a->rdev);
        target = rdev;
        tlen = sizeof(rdev);
    }
    if (tlen > 0) {
        memcpy(v + INODE_VALUE_SIZE, target, tlen);
    }
    rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_INODES], (char *)k, 8,
                              (char *)v, INODE_VALUE_SIZE + tlen);
}

/* Rewrite an inode's attributes, keeping a symlink's target. */
int store__inode_update(struct tx *t, const struct store_attr *a)
{
    if (a->type != STORE_SYMLINK) {
        store__inode_put(t, a, NULL, 0);
        return 0;
    }
    struct store_attr old;
    char *raw;
    size_t len;
    int rv = store__inode_get(t->s, t->s->ro, a->ino, &old, &raw, &len);
    if (rv != 0) {
        return rv;
    }
    store__inode_put(t, a, raw + INODE_VALUE_SIZE, len - INODE_VALUE_SIZE);
    rocksdb_free(raw);
    return 0;
}

/* The link (history.c) of the entry (parent, name) as it stands before
 * this entry, if any, goes with it: removed, or replaced by store__dentry_put.
 */
static void link_drop(struct tx *t, uint64_t parent, const char *name,
                      size_t len)
{
    uint64_t old;
    uint8_t type;
    int rv = store__dentry_get(t->s, t->s->ro, parent, name, len, &old, &type);
    if (rv == 0) {
        store__link_del(t->s, t->b, old, parent, name, len);
    } else if (rv != -ENOENT && t->err == 0) {
        t->err = rv;
    }
}

void store__dentry_put(struct tx *t, uint64_t parent, const char *name,
                       size_t len, uint64_t ino, uint8_t type)
{
    link_drop(t, parent, name, len);
    store__link_put(t->s, t->b, ino, parent, name, len);
    uint8_t k[8 + STORE_NAME_MAX], v[9];
    rfs_put_be64(k, parent);
    memcpy(k + 8, name, len);
    rfs_put_le64(v, ino);
    v[8] = type;
    rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_DENTRIES], (char *)k, 8 + len,
                              (char *)v, 9);
}

void store__dentry_del(struct tx *t, uint64_t parent, const char *name,
                       size_t len)
{
    link_drop(t, parent, name, len);
    uint8_t k[8 + STORE_NAME_MAX];
    rfs_put_be64(k, parent);
    memcpy(k + 8, name, len);
    rocksdb_writebatch_delete_cf(t->b, t->s->cf[CF_DENTRIES], (char *)k,
                                 8 + len);
}

/* Drop the chunks of file ino from chunk number `from` on; *dropped (may
 * be NULL) gets the bytes they held. The chunks that exist are listed
 * rather than every chunk number the size covers: a sparse file may be
 * terabytes long and hold three chunks. Point deletes, one per chunk:
 * RocksDB 7.8 re-fragments every range tombstone in the memtable on each
 * read, so range deletes stay off the apply path. Reads the state before
 * this entry, like every read of apply: call it before putting chunks of
 * the same file in this entry. */
int store__chunks_drop(struct tx *t, uint64_t ino, uint64_t from,
                       uint64_t *dropped)
{
    uint8_t k[16], end[8];
    store__chunk_key(k, ino, from);
    uint64_t bytes = 0;
    struct store_iter i;
    store__iter_open(t->s, NULL, store__chunks_cf(t), k, 16, end,
                     store__prefix_end(k, 8, end), &i);
    rocksdb_iterator_t *it = i.it;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen != 16 || rfs_get_be64((const uint8_t *)key) != ino) {
            break;
        }
        rocksdb_iter_value(it, &vlen);
        bytes += vlen;
        rocksdb_writebatch_delete_cf(t->b, t->s->cf[store__chunks_cf(t)], key,
                                     klen);
    }
    char what[64];
    snprintf(what, sizeof(what), "listing the chunks of %llu",
             (unsigned long long)ino);
    int rv = store__iter_close(t->s, &i, what);
    if (rv != 0) {
        return rv;
    }
    if (dropped != NULL) {
        *dropped = bytes;
    }
    return 0;
}

int store__xattr_walk(struct store *s, const struct store_view *v,
                      uint64_t ino, xattr_fn fn, void *arg)
{
    uint8_t k[8], end[8];
    rfs_put_be64(k, ino);
    struct store_iter i;
    store__iter_open(s, v, CF_XATTRS, k, 8, end, store__prefix_end(k, 8, end),
                     &i);
    rocksdb_iterator_t *it = i.it;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen <= 8 || memcmp(key, k, 8) != 0) {
            break;
        }
        const char *val = rocksdb_iter_value(it, &vlen);
        fn(arg, key, klen, val, vlen);
    }
    char what[64];
    snprintf(what, sizeof(what), "listing the extended attributes of %llu",
             (unsigned long long)ino);
    return store__iter_close(s, &i, what);
}

static void xattr_delete_one(void *arg, const char *key, size_t klen,
                             const char *val, size_t vlen)
{
    struct tx *t = arg;
    (void)val, (void)vlen;
    rocksdb_writebatch_delete_cf(t->b, t->s->cf[CF_XATTRS], key, klen);
}

/* Delete every extended attribute of ino, in the entry's batch (point
 * deletes, as store__chunks_drop). */
static int xattrs_drop(struct tx *t, uint64_t ino)
{
    return store__xattr_walk(t->s, NULL, ino, xattr_delete_one, t);
}

/* One name fewer for a non-directory that keeps others: its ctime moves
 * (POSIX), and so does its revision, since its nlink changed. */
static int name_drop(struct tx *t, struct store_attr *a)
{
    a->nlink--;
    a->ctime_ns = t->now;
    a->revision = t->index;
    return store__inode_update(t, a);
}

/* Drop one name's hold on ino: the inode, its extended attributes and a
 * file's chunks go with its last name. An orphan kept here (open on this
 * node) keeps its record and chunks but not its attributes: they leave the
 * replicated state with the inode, identically on every node. */
int store__inode_drop(struct tx *t, uint64_t ino)
{
    struct store_attr a;
    int rv = store__inode_get(t->s, t->s->ro, ino, &a, NULL, NULL);
    if (rv != 0) {
        return rv == -ENOENT ? 0 : rv;
    }
    if (a.type != STORE_DIR && a.nlink > 1) {
        return name_drop(t, &a);
    }
    uint8_t k[8];
    rfs_put_be64(k, ino);
    if (a.type == STORE_FILE && t->s->keep != NULL &&
        t->s->keep(t->s->keep_arg, ino)) {
        rv = store__orphan_keep(t, &a);
        if (rv != 0) {
            return rv;
        }
    }
    rocksdb_writebatch_delete_cf(t->b, t->s->cf[CF_INODES], (char *)k, 8);
    rv = xattrs_drop(t, ino);
    if (rv == 0 && a.type == STORE_FILE) {
        rv = store__chunks_drop(t, ino, 0, NULL);
    }
    return rv;
}

int store__dir_is_empty(struct store *s, const struct store_view *v,
                        uint64_t ino, bool *empty)
{
    uint8_t k[8], end[8];
    rfs_put_be64(k, ino);
    struct store_iter i;
    store__iter_open(s, v, CF_DENTRIES, k, 8, end,
                     store__prefix_end(k, 8, end), &i);
    rocksdb_iterator_t *it = i.it;
    *empty = true;
    if (rocksdb_iter_valid(it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(it, &klen);
        *empty = !(klen >= 8 && memcmp(key, k, 8) == 0);
    }
    char what[64];
    snprintf(what, sizeof(what), "listing directory %llu",
             (unsigned long long)ino);
    return store__iter_close(s, &i, what);
}
