/*
 * The filesystem state machine: apply and read.
 *
 * Apply. Each committed entry becomes one RocksDB WriteBatch holding the
 * change, the new applied index and the client's session record, written
 * unsynced: the log entry is already durable, and a batch lost in a crash is
 * simply applied again from the log, because the applied index moves with the
 * change (RAFT-PITFALLS 6). Entries apply one batch at a time so that each
 * reads the state its predecessors left; every condition is checked here,
 * never at proposal time, so every node reaches the same result.
 *
 * Exactly once. A command carries (client, boot, seq, first_outstanding).
 * The session table keeps the result of each applied seq above
 * first_outstanding (everything below has been answered and is forgotten), so
 * a request retried after a leader change returns its first result instead
 * of applying twice. A new boot id for a client ends its previous boot's
 * session; a request from an older boot than the one recorded is refused
 * (ESTALE): its process is gone, and its session with it.
 *
 * Reads come straight from RocksDB on any thread, optionally through a view
 * (a RocksDB snapshot), so a reader is never torn by a concurrent apply.
 */
#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/heap.h"
#include "store_i.h"



/* Where a change's file chunks live: the replicated state, or this node's
 * orphans (same keys). */
static int chunks_cf(const struct tx *t)
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

static void chunk_key(uint8_t *k, uint64_t ino, uint64_t chunk)
{
    rfs_put_be64(k, ino);
    rfs_put_be64(k + 8, chunk);
}

/* ---- Low-level reads (any thread) ------------------------------------- */

static int get(struct store *s, const rocksdb_readoptions_t *ro, int cf,
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

static int inode_get(struct store *s, const rocksdb_readoptions_t *ro,
                     uint64_t ino, struct store_attr *a, char **raw,
                     size_t *rawlen)
{
    uint8_t k[8];
    rfs_put_be64(k, ino);
    char *v;
    size_t len;
    int rv = get(s, ro, CF_INODES, k, 8, &v, &len, "reading an inode");
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

static int dentry_get(struct store *s, const rocksdb_readoptions_t *ro,
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
    int rv = get(s, ro, CF_DENTRIES, k, 8 + len, &v, &vlen,
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

static void inode_put(struct tx *t, const struct store_attr *a,
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
static int inode_update(struct tx *t, const struct store_attr *a)
{
    if (a->type != STORE_SYMLINK) {
        inode_put(t, a, NULL, 0);
        return 0;
    }
    struct store_attr old;
    char *raw;
    size_t len;
    int rv = inode_get(t->s, t->s->ro, a->ino, &old, &raw, &len);
    if (rv != 0) {
        return rv;
    }
    inode_put(t, a, raw + INODE_VALUE_SIZE, len - INODE_VALUE_SIZE);
    rocksdb_free(raw);
    return 0;
}

/* The link (history.c) of the entry (parent, name) as it stands before
 * this entry, if any, goes with it: removed, or replaced by dentry_put. */
static void link_drop(struct tx *t, uint64_t parent, const char *name,
                      size_t len)
{
    uint64_t old;
    uint8_t type;
    int rv = dentry_get(t->s, t->s->ro, parent, name, len, &old, &type);
    if (rv == 0) {
        store__link_del(t->s, t->b, old, parent, name, len);
    } else if (rv != -ENOENT && t->err == 0) {
        t->err = rv;
    }
}

static void dentry_put(struct tx *t, uint64_t parent, const char *name,
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

static void dentry_del(struct tx *t, uint64_t parent, const char *name,
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
static int chunks_drop(struct tx *t, uint64_t ino, uint64_t from,
                       uint64_t *dropped)
{
    uint8_t k[16];
    chunk_key(k, ino, from);
    uint64_t bytes = 0;
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(t->s->db, t->s->ro,
                                   t->s->cf[chunks_cf(t)]);
    for (rocksdb_iter_seek(it, (char *)k, 16); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen != 16 || rfs_get_be64((const uint8_t *)key) != ino) {
            break;
        }
        rocksdb_iter_value(it, &vlen);
        bytes += vlen;
        rocksdb_writebatch_delete_cf(t->b, t->s->cf[chunks_cf(t)], key, klen);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err != NULL) {
        return store__rocks_err(t->s, err, "listing the chunks of %llu",
                                (unsigned long long)ino);
    }
    if (dropped != NULL) {
        *dropped = bytes;
    }
    return 0;
}

/* Copy file a's record and chunks into this node's orphans, in the
 * entry's batch, so that the copy and the delete happen together. */
static int orphan_keep(struct tx *t, const struct store_attr *a)
{
    uint8_t k[16];
    rfs_put_be64(k, a->ino);
    struct store_attr o = *a;
    o.nlink = 0;
    uint8_t v[INODE_VALUE_SIZE];
    store__attr_encode(&o, v);
    rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_ORPHANS], (char *)k, 8,
                              (char *)v, sizeof(v));
    chunk_key(k, a->ino, 0);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(t->s->db, t->s->ro, t->s->cf[CF_CHUNKS]);
    for (rocksdb_iter_seek(it, (char *)k, 16); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen != 16 || rfs_get_be64((const uint8_t *)key) != a->ino) {
            break;
        }
        const char *val = rocksdb_iter_value(it, &vlen);
        rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_ORPHANS], key, klen, val,
                                  vlen);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err != NULL) {
        return store__rocks_err(t->s, err, "keeping open file %llu",
                                (unsigned long long)a->ino);
    }
    return 0;
}

/* Call fn for each extended attribute of ino (key = ino, then the name),
 * in name order, as ro sees them. 0 or the iterator's error. */
typedef void (*xattr_fn)(void *arg, const char *key, size_t klen,
                         const char *val, size_t vlen);

static int xattr_walk(struct store *s, const rocksdb_readoptions_t *ro,
                      uint64_t ino, xattr_fn fn, void *arg)
{
    uint8_t k[8];
    rfs_put_be64(k, ino);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro,
                                                        s->cf[CF_XATTRS]);
    for (rocksdb_iter_seek(it, (char *)k, 8); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen <= 8 || memcmp(key, k, 8) != 0) {
            break;
        }
        const char *val = rocksdb_iter_value(it, &vlen);
        fn(arg, key, klen, val, vlen);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err != NULL) {
        return store__rocks_err(s, err,
                                "listing the extended attributes of %llu",
                                (unsigned long long)ino);
    }
    return 0;
}

static void xattr_delete_one(void *arg, const char *key, size_t klen,
                             const char *val, size_t vlen)
{
    struct tx *t = arg;
    (void)val, (void)vlen;
    rocksdb_writebatch_delete_cf(t->b, t->s->cf[CF_XATTRS], key, klen);
}

/* Delete every extended attribute of ino, in the entry's batch (point
 * deletes, as chunks_drop). */
static int xattrs_drop(struct tx *t, uint64_t ino)
{
    return xattr_walk(t->s, t->s->ro, ino, xattr_delete_one, t);
}

static int name_drop(struct tx *t, struct store_attr *a);

/* Drop one name's hold on ino: the inode, its extended attributes and a
 * file's chunks go with its last name. An orphan kept here (open on this
 * node) keeps its record and chunks but not its attributes: they leave the
 * replicated state with the inode, identically on every node. */
static int inode_drop(struct tx *t, uint64_t ino)
{
    struct store_attr a;
    int rv = inode_get(t->s, t->s->ro, ino, &a, NULL, NULL);
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
        rv = orphan_keep(t, &a);
        if (rv != 0) {
            return rv;
        }
    }
    rocksdb_writebatch_delete_cf(t->b, t->s->cf[CF_INODES], (char *)k, 8);
    rv = xattrs_drop(t, ino);
    if (rv == 0 && a.type == STORE_FILE) {
        rv = chunks_drop(t, ino, 0, NULL);
    }
    return rv;
}

static int dir_is_empty(struct store *s, const rocksdb_readoptions_t *ro,
                        uint64_t ino, bool *empty)
{
    uint8_t k[8];
    rfs_put_be64(k, ino);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_DENTRIES]);
    rocksdb_iter_seek(it, (char *)k, 8);
    *empty = true;
    if (rocksdb_iter_valid(it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(it, &klen);
        *empty = !(klen >= 8 && memcmp(key, k, 8) == 0);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err != NULL) {
        return store__rocks_err(s, err, "listing directory %llu",
                                (unsigned long long)ino);
    }
    return 0;
}

/* ---- Operations ------------------------------------------------------- */

static int check_name(const char *name, size_t len)
{
    if (len == 0 || memchr(name, '/', len) != NULL ||
        memchr(name, '\0', len) != NULL || (len == 1 && name[0] == '.') ||
        (len == 2 && name[0] == '.' && name[1] == '.')) {
        return EINVAL;
    }
    if (len > STORE_NAME_MAX) {
        return ENAMETOOLONG;
    }
    return 0;
}

/* Negative codes are store failures (abort the entry); positive are the
 * operation's result. */
static int dir_get(struct tx *t, uint64_t ino, struct store_attr *a)
{
    int rv = inode_get(t->s, t->s->ro, ino, a, NULL, NULL);
    if (rv == -ENOENT) {
        return ENOENT;
    }
    if (rv != 0) {
        return rv;
    }
    return a->type == STORE_DIR ? 0 : ENOTDIR;
}

/* New inode ids: a proposer that had to name the inode before the entry
 * committed (the filesystem's staged create) proposes one in c->ino, with
 * STORE_INO_CHOSEN set so it can never meet an index-derived id; otherwise
 * the id is the index of the creating entry, plus one so that no index, not
 * even 1, collides with the root. Either way every node decides the same.
 * A proposed id already in use (a 62-bit random collision, or a malformed
 * entry) fails with EAGAIN: the proposer retries under a fresh id. */
static int new_ino(struct tx *t, const struct store_cmd *c, uint64_t *ino)
{
    if (c->ino == 0) {
        *ino = t->index + STORE_ROOT_INO;
        return 0;
    }
    if ((c->ino & STORE_INO_CHOSEN_MASK) != STORE_INO_CHOSEN) {
        return EINVAL;
    }
    struct store_attr a;
    int rv = inode_get(t->s, t->s->ro, c->ino, &a, NULL, NULL);
    if (rv == 0) {
        return EAGAIN;
    }
    if (rv != -ENOENT) {
        return rv;
    }
    *ino = c->ino;
    return 0;
}

static void touch(struct tx *t, struct store_attr *a)
{
    a->mtime_ns = a->ctime_ns = t->now;
    a->revision = t->index;
}

/* Linux's rule for a file whose contents or owner change (file_remove_privs,
 * and notify_change's ATTR_KILL_SUID/ATTR_KILL_SGID): setuid goes, and
 * setgid goes only with group-exec, since setgid without it marks
 * mandatory locking rather than a privilege. Decided on the mode as of
 * this entry, so a chmod applied just before is taken into account the
 * same way on every node. */
static void kill_priv(struct store_attr *a)
{
    a->mode &= ~(uint32_t)S_ISUID;
    if ((a->mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP)) {
        a->mode &= ~(uint32_t)S_ISGID;
    }
}

/* A write or truncate by a caller without CAP_FSETID (the proposer's
 * check, carried as STORE_KILL_PRIV): the kernel clears the bits itself
 * before buffered writes, but not before direct I/O (O_APPEND handles)
 * nor at an O_TRUNC open, so apply does it for every one. As on Linux,
 * the truncate of a file this very entry creates does not count (its
 * creator chose its mode); data written into it does. */
static void write_kill_priv(const struct store_cmd *c, bool created,
                            struct store_attr *a)
{
    if ((c->flags & STORE_KILL_PRIV) &&
        (((c->flags & STORE_TRUNC) && !created) || c->data_len > 0)) {
        kill_priv(a);
    }
}

/* security.capability: the file capabilities setcap sets. */
static const char caps_name[] = "security.capability";

bool store_caps_valid(const void *val, size_t len)
{
    if (len < 4) {
        return false;
    }
    const uint8_t *p = val;
    uint32_t rev = (uint32_t)p[3] << 24; /* magic_etc, little-endian. */
    return (len == XATTR_CAPS_SZ_2 && rev == VFS_CAP_REVISION_2) ||
           (len == XATTR_CAPS_SZ_3 && rev == VFS_CAP_REVISION_3);
}

/* Drop ino's file capabilities, if it has any, in the entry's batch: on
 * Linux every write, truncate or chown of a file takes them away, whoever
 * the caller (the kernel's file_remove_privs and setattr_prepare call
 * cap_inode_killpriv without asking for CAP_FSETID), so that a changed
 * program never keeps the privileges of the one setcap blessed. The
 * kernel sends that removal itself before a buffered write, a truncate
 * and a chown, decided on what the proposer saw; apply decides it again
 * on the state as of the entry, for the paths the kernel skips (direct
 * I/O writes, an O_TRUNC open) and the races it cannot see. A point
 * lookup first, so the common write (no capabilities) leaves no
 * tombstone behind. */
static int caps_kill(struct tx *t, uint64_t ino)
{
    uint8_t k[8 + sizeof(caps_name) - 1];
    rfs_put_be64(k, ino);
    memcpy(k + 8, caps_name, sizeof(caps_name) - 1);
    char *v;
    size_t vlen;
    int rv = get(t->s, t->s->ro, CF_XATTRS, k, sizeof(k), &v, &vlen,
                 "reading the file capabilities");
    if (rv != 0 || v == NULL) {
        return rv;
    }
    rocksdb_free(v);
    rocksdb_writebatch_delete_cf(t->b, t->s->cf[CF_XATTRS], (char *)k,
                                 sizeof(k));
    return 0;
}

/* ---- POSIX ACLs ------------------------------------------------------- */

/*
 * system.posix_acl_access holds an access ACL in Linux's xattr format
 * (include/uapi/linux/posix_acl_xattr.h): a le32 version (2), then
 * entries of le16 tag, le16 perm, le32 id. The kernel checks permissions
 * with it (FUSE_POSIX_ACL); what it leaves to a FUSE filesystem is kept
 * here, at apply: the format, the mode's permission bits that mirror the
 * ACL, and the ACL entries that mirror a chmod.
 */
static const char acl_access_name[] = STORE_ACL_ACCESS;
static const char acl_default_name[] = STORE_ACL_DEFAULT;

enum {
    ACL_TAG_USER_OBJ = 0x01,
    ACL_TAG_USER = 0x02,
    ACL_TAG_GROUP_OBJ = 0x04,
    ACL_TAG_GROUP = 0x08,
    ACL_TAG_MASK = 0x10,
    ACL_TAG_OTHER = 0x20,
};

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

int store_acl_check(const void *val, size_t len)
{
    const uint8_t *p = val;
    if (len < 4 || (len - 4) % 8 != 0 || rfs_get_le32(p) != 2) {
        return EINVAL;
    }
    size_t n = (len - 4) / 8;
    if (n == 0) {
        return EINVAL; /* No entries: the kernel sends a removal instead. */
    }
    if (n > STORE_ACL_MAX_ENTRIES) {
        return E2BIG;
    }
    /* The entries come in tag order (each tag's bit above the last one's),
     * named users and groups by increasing id, and each of the four
     * singular tags at most once: Linux's posix_acl_valid. */
    unsigned seen = 0;
    uint16_t last_tag = 0;
    uint32_t last_id = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = p + 4 + 8 * i;
        uint16_t tag = get_le16(e);
        uint16_t perm = get_le16(e + 2);
        uint32_t id = rfs_get_le32(e + 4);
        if (perm & ~7u) {
            return EINVAL;
        }
        switch (tag) {
        case ACL_TAG_USER:
        case ACL_TAG_GROUP:
            if (tag == last_tag && id <= last_id) {
                return EINVAL; /* Unsorted, or the same id twice. */
            }
            break;
        case ACL_TAG_USER_OBJ:
        case ACL_TAG_GROUP_OBJ:
        case ACL_TAG_MASK:
        case ACL_TAG_OTHER:
            if (tag == last_tag) {
                return EINVAL;
            }
            break;
        default:
            return EINVAL;
        }
        if (tag < last_tag) {
            return EINVAL;
        }
        seen |= tag;
        last_tag = tag;
        last_id = id;
    }
    unsigned need = ACL_TAG_USER_OBJ | ACL_TAG_GROUP_OBJ | ACL_TAG_OTHER;
    if ((seen & need) != need) {
        return EINVAL;
    }
    if ((seen & (ACL_TAG_USER | ACL_TAG_GROUP)) && !(seen & ACL_TAG_MASK)) {
        return EINVAL;
    }
    return 0;
}

unsigned store_acl_perm(const void *val, size_t len, uint32_t owner,
                        uint32_t group, uint32_t uid, const uint32_t *gids,
                        size_t ngids)
{
    const uint8_t *p = val;
    size_t n = (len - 4) / 8;
    unsigned mask = 7, other = 0, groups = 0;
    bool user = false, in_group = false;
    unsigned user_perm = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = p + 4 + 8 * i;
        unsigned perm = get_le16(e + 2) & 7u;
        uint32_t id = rfs_get_le32(e + 4);
        bool member = false;
        switch (get_le16(e)) {
        case ACL_TAG_USER_OBJ:
            if (uid == owner) {
                return perm; /* The owner's entry, unmasked. */
            }
            break;
        case ACL_TAG_USER:
            if (id == uid && !user) {
                user = true;
                user_perm = perm;
            }
            break;
        case ACL_TAG_GROUP_OBJ:
            id = group;
            /* Fall through. */
        case ACL_TAG_GROUP:
            for (size_t g = 0; g < ngids; g++) {
                member = member || gids[g] == id;
            }
            if (member) {
                in_group = true;
                groups |= perm;
            }
            break;
        case ACL_TAG_MASK:
            mask = perm;
            break;
        case ACL_TAG_OTHER:
            other = perm;
            break;
        }
    }
    /* POSIX.1e: a named user's entry, else the union of the matching
     * group entries, both limited by the mask; else the others'. */
    if (user) {
        return user_perm & mask;
    }
    return in_group ? groups & mask : other;
}

/* The permission bits a valid ACL gives the mode (Linux's
 * posix_acl_equiv_mode): the owner's from USER_OBJ, the group's from MASK
 * if there is one, else from GROUP_OBJ, the others' from OTHER. Returns
 * whether the ACL says no more than those bits: three entries, no MASK,
 * no named user or group. Such an ACL is not stored. */
static bool acl_mode(const uint8_t *p, size_t len, uint32_t *perm)
{
    size_t n = (len - 4) / 8;
    uint32_t m = 0;
    bool equiv = true;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = p + 4 + 8 * i;
        uint32_t bits = get_le16(e + 2) & 7u;
        switch (get_le16(e)) {
        case ACL_TAG_USER_OBJ:
            m |= bits << 6;
            break;
        case ACL_TAG_GROUP_OBJ:
            m |= bits << 3;
            break;
        case ACL_TAG_MASK: /* Sorted after GROUP_OBJ: it overrides. */
            m = (m & ~(uint32_t)S_IRWXG) | bits << 3;
            equiv = false;
            break;
        case ACL_TAG_OTHER:
            m |= bits;
            break;
        default:
            equiv = false;
            break;
        }
    }
    *perm = m & 0777;
    return equiv;
}

/* Bring the ACL (len bytes at p, valid) in line with the mode's permission
 * bits: USER_OBJ with the owner's, MASK (or GROUP_OBJ without one) with the
 * group's, OTHER with the others'; named entries keep theirs, the mask
 * limits them. At create (Linux's posix_acl_create_masq) each keeps only
 * what the create mode allows (limit); after a chmod (posix_acl_chmod) each
 * takes the mode's bits. */
static void acl_bits_from_mode(uint8_t *p, size_t len, uint32_t mode,
                               bool limit)
{
    size_t n = (len - 4) / 8;
    bool has_mask = false;
    for (size_t i = 0; i < n; i++) {
        has_mask = has_mask || get_le16(p + 4 + 8 * i) == ACL_TAG_MASK;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t *e = p + 4 + 8 * i;
        uint32_t bits;
        switch (get_le16(e)) {
        case ACL_TAG_USER_OBJ:
            bits = mode >> 6 & 7;
            break;
        case ACL_TAG_GROUP_OBJ:
            if (has_mask) {
                continue;
            }
            bits = mode >> 3 & 7;
            break;
        case ACL_TAG_MASK:
            bits = mode >> 3 & 7;
            break;
        case ACL_TAG_OTHER:
            bits = mode & 7;
            break;
        default:
            continue;
        }
        if (limit) {
            e[2] &= (uint8_t)bits;
        } else {
            e[2] = (uint8_t)bits;
            e[3] = 0;
        }
    }
}

uint32_t store_acl_create_mode(const void *val, size_t len, uint32_t mode)
{
    uint8_t buf[4 + 8 * STORE_ACL_MAX_ENTRIES];
    if (len > sizeof(buf)) {
        return mode; /* Cannot happen: a valid ACL fits. */
    }
    memcpy(buf, val, len);
    acl_bits_from_mode(buf, len, mode, true);
    uint32_t perm;
    acl_mode(buf, len, &perm);
    return (mode & ~(uint32_t)0777) | perm;
}

static bool is_name(const struct store_cmd *c, const char *name, size_t len)
{
    return c->name_len == len && memcmp(c->name, name, len) == 0;
}

/* The key of ino's access ACL in CF_XATTRS. */
static size_t acl_key(uint8_t *k, uint64_t ino)
{
    rfs_put_be64(k, ino);
    memcpy(k + 8, acl_access_name, sizeof(acl_access_name) - 1);
    return 8 + sizeof(acl_access_name) - 1;
}

/* A new inode a (type and mode set, not yet written) in directory dir:
 * with a default ACL there, a gets it as its access ACL, limited by the
 * create mode, and a new directory also as its default ACL; the umask
 * does not count (POSIX). Without one, the umask the command carries is
 * taken from the mode. In the entry's batch. */
static int acl_inherit(struct tx *t, const struct store_cmd *c,
                       const struct store_attr *dir, struct store_attr *a)
{
    uint8_t k[8 + sizeof(acl_default_name)];
    rfs_put_be64(k, dir->ino);
    memcpy(k + 8, acl_default_name, sizeof(acl_default_name) - 1);
    size_t klen = 8 + sizeof(acl_default_name) - 1;
    char *v;
    size_t vlen;
    int rv = get(t->s, t->s->ro, CF_XATTRS, k, klen, &v, &vlen,
                 "reading a default ACL");
    if (rv != 0) {
        return rv;
    }
    if (v == NULL || store_acl_check(v, vlen) != 0) {
        rocksdb_free(v);
        if (c->flags & STORE_UMASK) {
            a->mode &= ~((uint32_t)c->size & 0777);
        }
        return 0;
    }
    if (a->type == STORE_DIR) {
        rfs_put_be64(k, a->ino);
        rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_XATTRS], (char *)k, klen,
                                  v, vlen);
    }
    acl_bits_from_mode((uint8_t *)v, vlen, a->mode, true);
    uint32_t perm;
    if (!acl_mode((uint8_t *)v, vlen, &perm)) {
        uint8_t ak[8 + sizeof(acl_access_name)];
        size_t aklen = acl_key(ak, a->ino);
        rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_XATTRS], (char *)ak,
                                  aklen, v, vlen);
    }
    a->mode = (a->mode & ~(uint32_t)0777) | perm;
    rocksdb_free(v);
    return 0;
}

/* A chmod of an inode with an access ACL carries the new bits into the
 * ACL, in the entry's batch, so that the kernel's check (which reads the
 * ACL, not the mode, for group and named entries) agrees with what
 * `ls -l` shows. */
static int acl_follow_mode(struct tx *t, uint64_t ino, uint32_t mode)
{
    uint8_t k[8 + sizeof(acl_access_name)];
    size_t klen = acl_key(k, ino);
    char *v;
    size_t vlen;
    int rv = get(t->s, t->s->ro, CF_XATTRS, k, klen, &v, &vlen,
                 "reading an access ACL");
    if (rv != 0 || v == NULL) {
        return rv;
    }
    if (store_acl_check(v, vlen) == 0) { /* Stored only once checked. */
        acl_bits_from_mode((uint8_t *)v, vlen, mode, false);
        rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_XATTRS], (char *)k, klen,
                                  v, vlen);
    }
    rocksdb_free(v);
    return 0;
}

/* What a SETATTR implies beyond the fields it sets, on the replicated
 * state and on an orphan alike: a truncate by a caller without
 * CAP_FSETID, and any chown of a non-directory (even to the same owner,
 * even by root, as on Linux), clear setuid and setgid (see kill_priv);
 * UTIME_NOW takes the entry's own time, so atime, mtime and ctime agree. */
static void setattr_rules(const struct tx *t, const struct store_cmd *c,
                          struct store_attr *a)
{
    if ((c->valid & STORE_SET_SIZE) && (c->flags & STORE_KILL_PRIV)) {
        kill_priv(a);
    }
    if ((c->valid & (STORE_SET_UID | STORE_SET_GID)) &&
        a->type != STORE_DIR) {
        kill_priv(a);
    }
    if ((c->valid & STORE_SET_ATIME) && (c->valid & STORE_SET_ATIME_NOW)) {
        a->atime_ns = t->now;
    }
    if ((c->valid & STORE_SET_MTIME) && (c->valid & STORE_SET_MTIME_NOW)) {
        a->mtime_ns = t->now;
    }
}

/* A setgid directory hands its group to every new entry in it, and its
 * setgid bit to new subdirectories (ext4's inode_init_owner). The setgid
 * bit a non-member asks for on a new file never reaches us: the kernel
 * strips it before it sends the request (vfs_prepare_mode). */
static void inherit_group(const struct store_attr *dir, struct store_attr *a)
{
    if (dir->mode & S_ISGID) {
        a->gid = dir->gid;
        if (a->type == STORE_DIR) {
            a->mode |= S_ISGID;
        }
    }
}

/* Write data at offset into file a (whose size is a->size as seen so far in
 * this entry), updating a. Bytes past the old size read as zeros; chunks
 * not written stay holes. a->stored follows the bytes the chunks hold:
 * EFBIG if that would pass max_file_bytes (the caller's batch is then
 * dropped whole). */
static int write_data(struct tx *t, struct store_attr *a, uint64_t off,
                      const uint8_t *data, size_t len)
{
    if (len == 0) {
        return 0;
    }
    if (off + len > STORE_MAX_FILE_SIZE || off + len < off) {
        return EFBIG;
    }
    uint8_t *buf = rfs_malloc(STORE_CHUNK_SIZE);
    if (buf == NULL) {
        return -ENOMEM;
    }
    uint64_t stored = a->stored;
    size_t done = 0;
    while (done < len) {
        uint64_t pos = off + done;
        uint64_t cn = pos / STORE_CHUNK_SIZE;
        uint64_t cstart = cn * STORE_CHUNK_SIZE;
        size_t in = (size_t)(pos - cstart);
        size_t n = STORE_CHUNK_SIZE - in;
        if (n > len - done) {
            n = len - done;
        }
        /* Existing bytes of this chunk that lie within the file (read also
         * for a whole-chunk write: the bytes it held leave the count). */
        size_t have = 0;
        size_t old = 0;
        memset(buf, 0, STORE_CHUNK_SIZE);
        if (cstart < a->size) {
            uint8_t k[16];
            chunk_key(k, a->ino, cn);
            char *v;
            size_t vlen;
            int rv = get(t->s, t->s->ro, chunks_cf(t), k, 16, &v, &vlen,
                         "reading a chunk");
            if (rv != 0) {
                rfs_free(buf);
                return rv;
            }
            if (v != NULL) {
                old = vlen;
                have = vlen;
                if (cstart + have > a->size) {
                    have = (size_t)(a->size - cstart);
                }
                memcpy(buf, v, have);
                rocksdb_free(v);
            }
        }
        memcpy(buf + in, data + done, n);
        size_t clen = in + n > have ? in + n : have;
        stored = stored - old + clen;
        uint8_t k[16];
        chunk_key(k, a->ino, cn);
        rocksdb_writebatch_put_cf(t->b, t->s->cf[chunks_cf(t)], (char *)k,
                                  16, (char *)buf, clen);
        done += n;
    }
    rfs_free(buf);
    if (stored > t->s->o.max_file_bytes && stored > a->stored) {
        return EFBIG;
    }
    a->stored = stored;
    if (off + len > a->size) {
        a->size = off + len;
    }
    return 0;
}

/* Truncate or extend file a to size. Growing stores nothing (a hole);
 * shrinking drops the chunks past the end and trims the last partial one,
 * so stale bytes never reappear when the file grows again. */
static int set_size(struct tx *t, struct store_attr *a, uint64_t size)
{
    if (size > STORE_MAX_FILE_SIZE) {
        return EFBIG;
    }
    if (size < a->size) {
        uint64_t keep = (size + STORE_CHUNK_SIZE - 1) / STORE_CHUNK_SIZE;
        uint64_t dropped;
        int rv = chunks_drop(t, a->ino, keep, &dropped);
        if (rv != 0) {
            return rv;
        }
        a->stored -= dropped < a->stored ? dropped : a->stored;
        size_t tail = (size_t)(size % STORE_CHUNK_SIZE);
        if (tail != 0) {
            uint8_t k[16];
            chunk_key(k, a->ino, size / STORE_CHUNK_SIZE);
            char *v;
            size_t vlen;
            rv = get(t->s, t->s->ro, chunks_cf(t), k, 16, &v, &vlen,
                     "reading a chunk");
            if (rv != 0) {
                return rv;
            }
            if (v != NULL && vlen > tail) {
                rocksdb_writebatch_put_cf(t->b, t->s->cf[chunks_cf(t)],
                                          (char *)k, 16, v, tail);
                a->stored -= vlen - tail < a->stored ? vlen - tail
                                                     : a->stored;
            }
            rocksdb_free(v);
        }
    }
    a->size = size;
    return 0;
}

/* Apply a command's data to file a: truncated first if asked, written at the
 * offset or (append) at the end as of apply time; then stored. */
static int file_write(struct tx *t, struct store_attr *a,
                      const struct store_cmd *c, bool created)
{
    int rv = 0;
    if (c->flags & STORE_TRUNC) {
        rv = set_size(t, a, 0);
    }
    uint64_t off = c->flags & STORE_APPEND ? a->size : c->offset;
    if (rv == 0) {
        rv = write_data(t, a, off, c->data, c->data_len);
    }
    if (rv != 0) {
        return rv;
    }
    if ((c->flags & STORE_TRUNC) || c->data_len > 0) {
        touch(t, a);
        if (!created) {
            rv = caps_kill(t, a->ino);
            if (rv != 0) {
                return rv;
            }
        }
    }
    write_kill_priv(c, created, a);
    inode_put(t, a, NULL, 0);
    return 0;
}

static int ephemeral_note(struct tx *t, const struct store_cmd *c,
                          uint64_t ino);

static int op_create(struct tx *t, const struct store_cmd *c, uint64_t *ino)
{
    int rv = check_name(c->name, c->name_len);
    if (rv != 0) {
        return rv;
    }
    struct store_attr dir;
    rv = dir_get(t, c->parent, &dir);
    if (rv != 0) {
        return rv;
    }
    uint64_t have;
    uint8_t type;
    rv = dentry_get(t->s, t->s->ro, c->parent, c->name, c->name_len, &have,
                    &type);
    struct store_attr a;
    bool created = rv == -ENOENT;
    if (rv == 0) {
        if (c->flags & STORE_EXCL) {
            return EEXIST;
        }
        if (type == STORE_DIR) {
            return EISDIR;
        }
        if (type != STORE_FILE) {
            return EEXIST;
        }
        rv = inode_get(t->s, t->s->ro, have, &a, NULL, NULL);
        if (rv != 0) {
            return rv == -ENOENT ? ENOENT : rv;
        }
    } else if (rv == -ENOENT) {
        memset(&a, 0, sizeof(a));
        rv = new_ino(t, c, &a.ino);
        if (rv != 0) {
            return rv;
        }
        a.type = STORE_FILE;
        a.mode = c->mode & 07777;
        a.uid = c->uid;
        a.gid = c->gid;
        inherit_group(&dir, &a);
        rv = acl_inherit(t, c, &dir, &a);
        if (rv != 0) {
            return rv;
        }
        a.nlink = 1;
        a.atime_ns = t->now;
        touch(t, &a);
        dentry_put(t, c->parent, c->name, c->name_len, a.ino, STORE_FILE);
        touch(t, &dir);
        inode_put(t, &dir, NULL, 0);
    } else {
        return rv;
    }
    rv = file_write(t, &a, c, created);
    if (rv != 0) {
        return rv;
    }
    if (created) {
        rv = ephemeral_note(t, c, a.ino);
        if (rv != 0) {
            return rv;
        }
    }
    *ino = a.ino;
    return 0;
}

/* raftfs put: create the file or replace its whole content, in one
 * entry, with the name resolved here; with STORE_IF_REVISION only if the
 * name's file still has revision c->offset (0: only if the name is free).
 * A refusal changes nothing. */
static int op_put(struct tx *t, const struct store_cmd *c, uint64_t *ino)
{
    int rv = check_name(c->name, c->name_len);
    if (rv != 0) {
        return rv;
    }
    struct store_attr dir;
    rv = dir_get(t, c->parent, &dir);
    if (rv != 0) {
        return rv;
    }
    uint64_t have;
    uint8_t type;
    rv = dentry_get(t->s, t->s->ro, c->parent, c->name, c->name_len, &have,
                    &type);
    if (rv != 0 && rv != -ENOENT) {
        return rv;
    }
    bool exists = rv == 0;
    if (exists && type == STORE_DIR) {
        return EISDIR;
    }
    if (exists && type != STORE_FILE) {
        return EINVAL;
    }
    if (c->flags & STORE_IF_REVISION) {
        if (!exists) {
            if (c->offset != 0) {
                return ECANCELED;
            }
        } else {
            struct store_attr a;
            rv = inode_get(t->s, t->s->ro, have, &a, NULL, NULL);
            if (rv != 0) {
                return rv == -ENOENT ? ENOENT : rv;
            }
            if (c->offset == 0 || a.revision != c->offset) {
                return ECANCELED;
            }
        }
    }
    struct store_cmd w = *c;
    w.op = STORE_OP_CREATE;
    w.flags = STORE_TRUNC | (c->flags & STORE_KILL_PRIV);
    w.offset = 0;
    return op_create(t, &w, ino);
}

/* The inode an open handle names: ESTALE once it was unlinked, anywhere in
 * the cluster. */
static int handle_get(struct tx *t, uint64_t ino, struct store_attr *a)
{
    int rv = inode_get(t->s, t->s->ro, ino, a, NULL, NULL);
    return rv == -ENOENT ? ESTALE : rv;
}

static int op_write(struct tx *t, const struct store_cmd *c, uint64_t *ino)
{
    struct store_attr a;
    int rv = handle_get(t, c->ino, &a);
    if (rv != 0) {
        return rv;
    }
    if (a.type == STORE_DIR) {
        return EISDIR;
    }
    if (a.type != STORE_FILE) {
        return EINVAL;
    }
    rv = file_write(t, &a, c, false);
    if (rv != 0) {
        return rv;
    }
    *ino = a.ino;
    return 0;
}

static int op_setattr(struct tx *t, const struct store_cmd *c, uint64_t *ino)
{
    struct store_attr a;
    int rv = handle_get(t, c->ino, &a);
    if (rv != 0) {
        return rv;
    }
    if (c->valid & STORE_SET_SIZE) {
        if (a.type == STORE_DIR) {
            return EISDIR;
        }
        if (a.type != STORE_FILE) {
            return EINVAL;
        }
        rv = set_size(t, &a, c->size);
        if (rv != 0) {
            return rv;
        }
        a.mtime_ns = t->now;
    }
    if (c->valid & STORE_SET_MODE) {
        a.mode = c->mode & 07777;
    }
    if (c->valid & STORE_SET_UID) {
        a.uid = c->uid;
    }
    if (c->valid & STORE_SET_GID) {
        a.gid = c->gid;
    }
    if (c->valid & STORE_SET_ATIME) {
        a.atime_ns = c->atime_ns;
    }
    if (c->valid & STORE_SET_MTIME) {
        a.mtime_ns = c->mtime_ns;
    }
    setattr_rules(t, c, &a);
    if (c->valid & STORE_SET_MODE) {
        rv = acl_follow_mode(t, a.ino, a.mode);
        if (rv != 0) {
            return rv;
        }
    }
    if ((c->valid & STORE_SET_SIZE) ||
        ((c->valid & (STORE_SET_UID | STORE_SET_GID)) &&
         a.type != STORE_DIR)) {
        rv = caps_kill(t, a.ino);
        if (rv != 0) {
            return rv;
        }
    }
    a.ctime_ns = t->now;
    a.revision = t->index;
    rv = inode_update(t, &a);
    if (rv != 0) {
        return rv;
    }
    *ino = a.ino;
    return 0;
}

static int op_mknode(struct tx *t, const struct store_cmd *c, uint8_t type,
                     uint64_t *ino)
{
    int rv = check_name(c->name, c->name_len);
    if (rv != 0) {
        return rv;
    }
    if (type == STORE_SYMLINK &&
        (c->data_len == 0 || c->data_len > STORE_SYMLINK_MAX)) {
        return c->data_len == 0 ? ENOENT : ENAMETOOLONG;
    }
    struct store_attr dir;
    rv = dir_get(t, c->parent, &dir);
    if (rv != 0) {
        return rv;
    }
    uint64_t have;
    uint8_t htype;
    rv = dentry_get(t->s, t->s->ro, c->parent, c->name, c->name_len, &have,
                    &htype);
    if (rv == 0) {
        return EEXIST;
    }
    if (rv != -ENOENT) {
        return rv;
    }
    struct store_attr a;
    memset(&a, 0, sizeof(a));
    rv = new_ino(t, c, &a.ino);
    if (rv != 0) {
        return rv;
    }
    a.type = type;
    a.uid = c->uid;
    a.gid = c->gid;
    a.atime_ns = t->now;
    touch(t, &a);
    if (type != STORE_SYMLINK) {
        a.mode = c->mode & 07777;
        rv = acl_inherit(t, c, &dir, &a);
        if (rv != 0) {
            return rv;
        }
    }
    if (type == STORE_DIR) {
        inherit_group(&dir, &a);
        a.nlink = 2;
        a.parent = c->parent;
        dir.nlink++;
        inode_put(t, &a, NULL, 0);
    } else {
        a.mode = type == STORE_SYMLINK ? 0777 : a.mode;
        a.rdev = type == STORE_CHR || type == STORE_BLK ? c->offset : 0;
        inherit_group(&dir, &a);
        a.nlink = 1;
        a.size = c->data_len;
        inode_put(t, &a, c->data, c->data_len);
    }
    dentry_put(t, c->parent, c->name, c->name_len, a.ino, type);
    touch(t, &dir);
    inode_put(t, &dir, NULL, 0);
    *ino = a.ino;
    return 0;
}

static int op_remove(struct tx *t, const struct store_cmd *c, bool dir_op,
                     uint64_t *removed)
{
    int rv = check_name(c->name, c->name_len);
    if (rv != 0) {
        return rv == ENAMETOOLONG ? rv : (dir_op ? EINVAL : rv);
    }
    struct store_attr dir;
    rv = dir_get(t, c->parent, &dir);
    if (rv != 0) {
        return rv;
    }
    uint64_t ino;
    uint8_t type;
    rv = dentry_get(t->s, t->s->ro, c->parent, c->name, c->name_len, &ino,
                    &type);
    if (rv == -ENOENT) {
        return ENOENT;
    }
    if (rv != 0) {
        return rv;
    }
    if (dir_op && type != STORE_DIR) {
        return ENOTDIR;
    }
    if (!dir_op && type == STORE_DIR) {
        return EISDIR;
    }
    if (dir_op) {
        bool empty;
        rv = dir_is_empty(t->s, t->s->ro, ino, &empty);
        if (rv != 0) {
            return rv;
        }
        if (!empty) {
            return ENOTEMPTY;
        }
        dir.nlink--;
    }
    dentry_del(t, c->parent, c->name, c->name_len);
    rv = inode_drop(t, ino);
    if (rv != 0) {
        return rv;
    }
    touch(t, &dir);
    inode_put(t, &dir, NULL, 0);
    *removed = ino; /* A file's other names see its nlink change. */
    return 0;
}

/* Is `dir` the directory `anc` or inside it? Walks parent pointers up. */
static int is_within(struct tx *t, uint64_t dir, uint64_t anc, bool *within)
{
    *within = false;
    for (unsigned depth = 0; depth < 100000; depth++) {
        if (dir == anc) {
            *within = true;
            return 0;
        }
        if (dir == STORE_ROOT_INO) {
            return 0;
        }
        struct store_attr a;
        int rv = inode_get(t->s, t->s->ro, dir, &a, NULL, NULL);
        if (rv != 0) {
            return rv == -ENOENT ? 0 : rv;
        }
        dir = a.parent;
    }
    return store__set_err(t->s, RFS_ECORRUPT,
                          "directory parents of %s loop", t->s->dir);
}

/* An inode that changed names in place (RENAME_EXCHANGE): its ctime and
 * revision move, as ext4's rename moves them. */
static int name_moved(struct tx *t, uint64_t ino)
{
    struct store_attr a;
    int rv = inode_get(t->s, t->s->ro, ino, &a, NULL, NULL);
    if (rv != 0) {
        return rv == -ENOENT ? 0 : rv;
    }
    a.ctime_ns = t->now;
    a.revision = t->index;
    return inode_update(t, &a);
}

/* A directory moved to another parent records its new parent. */
static int set_parent(struct tx *t, uint64_t dir, uint64_t parent)
{
    struct store_attr a;
    int rv = inode_get(t->s, t->s->ro, dir, &a, NULL, NULL);
    if (rv != 0) {
        return rv;
    }
    a.parent = parent;
    a.ctime_ns = t->now;
    a.revision = t->index;
    inode_put(t, &a, NULL, 0);
    return 0;
}

static int op_rename(struct tx *t, const struct store_cmd *c, uint64_t *out)
{
    int rv = check_name(c->name, c->name_len);
    if (rv == 0) {
        rv = check_name(c->new_name, c->new_name_len);
    }
    if (rv != 0) {
        return rv;
    }
    if ((c->flags & STORE_NOREPLACE) && (c->flags & STORE_EXCHANGE)) {
        return EINVAL;
    }
    struct store_attr sp, dp;
    rv = dir_get(t, c->parent, &sp);
    if (rv != 0) {
        return rv;
    }
    rv = dir_get(t, c->new_parent, &dp);
    if (rv != 0) {
        return rv;
    }
    uint64_t sino, dino = 0;
    uint8_t stype, dtype = 0;
    rv = dentry_get(t->s, t->s->ro, c->parent, c->name, c->name_len, &sino,
                    &stype);
    if (rv == -ENOENT) {
        return ENOENT;
    }
    if (rv != 0) {
        return rv;
    }
    rv = dentry_get(t->s, t->s->ro, c->new_parent, c->new_name,
                    c->new_name_len, &dino, &dtype);
    bool dst = rv == 0;
    if (rv != 0 && rv != -ENOENT) {
        return rv;
    }
    bool same_dir = c->parent == c->new_parent;
    *out = sino;
    /* A directory cannot move into itself or its own subtree. */
    if (stype == STORE_DIR && !same_dir) {
        bool within;
        rv = is_within(t, c->new_parent, sino, &within);
        if (rv != 0) {
            return rv;
        }
        if (within) {
            return EINVAL;
        }
    }
    if (c->flags & STORE_EXCHANGE) {
        if (!dst) {
            return ENOENT;
        }
        if (dtype == STORE_DIR && !same_dir) {
            bool within;
            rv = is_within(t, c->parent, dino, &within);
            if (rv != 0) {
                return rv;
            }
            if (within) {
                return EINVAL;
            }
        }
        if (sino == dino) {
            return 0;
        }
        dentry_put(t, c->parent, c->name, c->name_len, dino, dtype);
        dentry_put(t, c->new_parent, c->new_name, c->new_name_len, sino,
                   stype);
        if (!same_dir) {
            int dirs = (stype == STORE_DIR) - (dtype == STORE_DIR);
            sp.nlink = (uint32_t)((int)sp.nlink - dirs);
            dp.nlink = (uint32_t)((int)dp.nlink + dirs);
            if (stype == STORE_DIR) {
                rv = set_parent(t, sino, c->new_parent);
            }
            if (rv == 0 && dtype == STORE_DIR) {
                rv = set_parent(t, dino, c->parent);
            }
            if (rv != 0) {
                return rv;
            }
        }
        /* set_parent() moved the ctime of a directory that changed
         * parent; the others move here (each inode is put once). */
        if (same_dir || stype != STORE_DIR) {
            rv = name_moved(t, sino);
        }
        if (rv == 0 && (same_dir || dtype != STORE_DIR)) {
            rv = name_moved(t, dino);
        }
        if (rv != 0) {
            return rv;
        }
        goto touch_parents;
    }
    if (dst) {
        if (c->flags & STORE_NOREPLACE) {
            return EEXIST;
        }
        if (sino == dino) {
            return 0; /* Two names of one file: POSIX says do nothing. */
        }
        if (dtype == STORE_DIR) {
            if (stype != STORE_DIR) {
                return EISDIR;
            }
            bool empty;
            rv = dir_is_empty(t->s, t->s->ro, dino, &empty);
            if (rv != 0) {
                return rv;
            }
            if (!empty) {
                return ENOTEMPTY;
            }
            dp.nlink--;
        } else if (stype == STORE_DIR) {
            return ENOTDIR;
        }
        rv = inode_drop(t, dino);
        if (rv != 0) {
            return rv;
        }
    }
    dentry_del(t, c->parent, c->name, c->name_len);
    dentry_put(t, c->new_parent, c->new_name, c->new_name_len, sino, stype);
    {
        struct store_attr a;
        char *raw;
        size_t len;
        rv = inode_get(t->s, t->s->ro, sino, &a, &raw, &len);
        if (rv != 0) {
            return rv == -ENOENT ? ENOENT : rv;
        }
        if (stype == STORE_DIR && !same_dir) {
            a.parent = c->new_parent;
            sp.nlink--;
            dp.nlink++;
        }
        a.ctime_ns = t->now;
        a.revision = t->index;
        inode_put(t, &a, raw + INODE_VALUE_SIZE, len - INODE_VALUE_SIZE);
        rocksdb_free(raw);
    }
touch_parents:
    if (same_dir) {
        /* sp and dp are the same directory; only dp's copy was changed
         * (link counts move only between different directories). */
        touch(t, &dp);
        inode_put(t, &dp, NULL, 0);
    } else {
        touch(t, &sp);
        touch(t, &dp);
        inode_put(t, &sp, NULL, 0);
        inode_put(t, &dp, NULL, 0);
    }
    return 0;
}

/* ---- Special files and hard links ------------------------------------ */

/* A fifo, socket or device node: only its type and number are stored; the
 * kernel of each node serves its I/O. Who may create a device is the
 * proposer's check (CAP_MKNOD, fs/), made before the entry exists. */
static int op_mknod(struct tx *t, const struct store_cmd *c, uint64_t *ino)
{
    uint8_t type;
    switch (c->mode & S_IFMT) {
    case S_IFIFO:
        type = STORE_FIFO;
        break;
    case S_IFSOCK:
        type = STORE_SOCK;
        break;
    case S_IFCHR:
        type = STORE_CHR;
        break;
    case S_IFBLK:
        type = STORE_BLK;
        break;
    default:
        /* Regular files are CREATE, directories MKDIR. */
        return EINVAL;
    }
    if (c->data_len != 0) {
        return EINVAL;
    }
    return op_mknode(t, c, type, ino);
}

/* One name fewer for a non-directory that keeps others: its ctime moves
 * (POSIX), and so does its revision, since its nlink changed. */
static int name_drop(struct tx *t, struct store_attr *a)
{
    a->nlink--;
    a->ctime_ns = t->now;
    a->revision = t->index;
    return inode_update(t, a);
}

/* link(2): a new name in c->parent for inode c->ino. The checks come in the
 * kernel's order: the new name's directory, the name, then the inode.
 * Directories never get a second name (EPERM, as on ext4: their parent
 * pointer, and rename's loop check, rely on one name). An inode with no
 * name left (open, unlinked) cannot get one back (ENOENT, as Linux). */
static int op_link(struct tx *t, const struct store_cmd *c, uint64_t *ino)
{
    int rv = check_name(c->name, c->name_len);
    if (rv != 0) {
        return rv;
    }
    struct store_attr dir;
    rv = dir_get(t, c->parent, &dir);
    if (rv != 0) {
        return rv;
    }
    uint64_t have;
    uint8_t htype;
    rv = dentry_get(t->s, t->s->ro, c->parent, c->name, c->name_len, &have,
                    &htype);
    if (rv == 0) {
        return EEXIST;
    }
    if (rv != -ENOENT) {
        return rv;
    }
    struct store_attr a;
    rv = inode_get(t->s, t->s->ro, c->ino, &a, NULL, NULL);
    if (rv == -ENOENT || (rv == 0 && a.nlink == 0)) {
        return ENOENT;
    }
    if (rv != 0) {
        return rv;
    }
    if (a.type == STORE_DIR) {
        return EPERM;
    }
    if (a.nlink >= STORE_LINK_MAX) {
        return EMLINK;
    }
    dentry_put(t, c->parent, c->name, c->name_len, a.ino, a.type);
    a.nlink++;
    a.ctime_ns = t->now;
    a.revision = t->index;
    rv = inode_update(t, &a);
    if (rv != 0) {
        return rv;
    }
    touch(t, &dir);
    inode_put(t, &dir, NULL, 0);
    *ino = a.ino;
    return 0;
}

/* ---- Extended attributes ---------------------------------------------- */

static bool has_prefix(const char *name, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(name, prefix, n) == 0;
}

/* The checks setxattr and removexattr share, in Linux's order: the name's
 * length (ERANGE, as the kernel's copy of it), the inode (ESTALE: it is
 * named by id, as a handle names it), then the namespace's rules. Fills *a
 * and the attribute's key (k, *klen). */
static int xattr_check(struct tx *t, const struct store_cmd *c,
                       struct store_attr *a, uint8_t *k, size_t *klen)
{
    if (c->name_len == 0 || c->name_len > STORE_XATTR_NAME_MAX) {
        return ERANGE;
    }
    if (memchr(c->name, '\0', c->name_len) != NULL) {
        return EINVAL;
    }
    int rv = handle_get(t, c->ino, a);
    if (rv != 0) {
        return rv;
    }
    if (has_prefix(c->name, c->name_len, "user.")) {
        if (a->type != STORE_FILE && a->type != STORE_DIR) {
            return EPERM; /* ext4's rule (the kernel's xattr_permission). */
        }
        if (c->name_len == sizeof(STORE_EPHEMERAL_XATTR) - 1 &&
            memcmp(c->name, STORE_EPHEMERAL_XATTR, c->name_len) == 0) {
            /* The one stored raftfs name: it marks a directory. */
            if (a->type != STORE_DIR) {
                return EPERM;
            }
            if (c->op == STORE_OP_SETXATTR &&
                (c->data_len != 1 || *(const char *)c->data != '1')) {
                return EINVAL;
            }
        } else if (has_prefix(c->name, c->name_len, "user.raftfs.")) {
            return EPERM; /* raftfs's own, virtual names. */
        }
    } else if (c->name_len == sizeof(caps_name) - 1 &&
               memcmp(c->name, caps_name, c->name_len) == 0) {
        /* Any type, as Linux: the kernel checked CAP_SETFCAP and the
         * value's format before sending it, and so does the proposer. */
    } else if (is_name(c, acl_access_name, sizeof(acl_access_name) - 1)) {
        if (a->type == STORE_SYMLINK) {
            return EOPNOTSUPP; /* A symlink has no ACL on Linux. */
        }
    } else if (is_name(c, acl_default_name, sizeof(acl_default_name) - 1)) {
        /* Only a directory has one (the kernel's vfs_set_acl says EACCES
         * first); removing one that is not there succeeds, below. */
        if (c->op == STORE_OP_SETXATTR && a->type != STORE_DIR) {
            return EACCES;
        }
    } else if (!has_prefix(c->name, c->name_len, "trusted.")) {
        return EOPNOTSUPP; /* other security.*, system.*: not stored. */
    }
    rfs_put_be64(k, c->ino);
    memcpy(k + 8, c->name, c->name_len);
    *klen = 8 + c->name_len;
    return 0;
}

struct xattr_sum {
    const uint8_t *skip;
    size_t skip_len;
    uint64_t list, total;
};

static void xattr_add_one(void *arg, const char *key, size_t klen,
                          const char *val, size_t vlen)
{
    struct xattr_sum *u = arg;
    (void)val;
    if (klen == u->skip_len && memcmp(key, u->skip, klen) == 0) {
        return;
    }
    u->list += klen - 8 + 1;
    u->total += klen - 8 + vlen;
}

/* What ino's attributes take besides `skip` (the one being replaced):
 * the listxattr list (names and their NULs) and names plus values. */
static int xattr_usage(struct tx *t, uint64_t ino, const uint8_t *skip,
                       size_t skip_len, uint64_t *list, uint64_t *total)
{
    struct xattr_sum u = {skip, skip_len, 0, 0};
    int rv = xattr_walk(t->s, t->s->ro, ino, xattr_add_one, &u);
    *list = u.list;
    *total = u.total;
    return rv;
}

/* An attribute set or removed changes the inode's ctime (and revision),
 * not its mtime, as on a local filesystem. */
static int xattr_touch(struct tx *t, struct store_attr *a)
{
    a->ctime_ns = t->now;
    a->revision = t->index;
    return inode_update(t, a);
}

static int op_setxattr(struct tx *t, const struct store_cmd *c,
                       uint64_t *ino)
{
    struct store_attr a;
    uint8_t k[8 + STORE_XATTR_NAME_MAX];
    size_t klen;
    int rv = xattr_check(t, c, &a, k, &klen);
    if (rv != 0) {
        return rv;
    }
    if (c->data_len > STORE_XATTR_SIZE_MAX) {
        return E2BIG;
    }
    if (klen == 8 + sizeof(caps_name) - 1 &&
        memcmp(k + 8, caps_name, sizeof(caps_name) - 1) == 0 &&
        !store_caps_valid(c->data, c->data_len)) {
        return EINVAL;
    }
    bool acl = is_name(c, acl_access_name, sizeof(acl_access_name) - 1);
    bool acl_equiv = false;
    if (is_name(c, acl_default_name, sizeof(acl_default_name) - 1)) {
        /* Kept as given, even one that says no more than a mode: it is
         * what new entries inherit. */
        rv = store_acl_check(c->data, c->data_len);
        if (rv != 0) {
            return rv;
        }
    }
    if (acl) {
        rv = store_acl_check(c->data, c->data_len);
        if (rv != 0) {
            return rv;
        }
        /* The mode's permission bits mirror the ACL (the kernel leaves
         * that to a FUSE filesystem: fuse_set_acl), and an ACL that says
         * no more than the mode is not kept (ext4 does the same). */
        uint32_t perm;
        acl_equiv = acl_mode(c->data, c->data_len, &perm);
        a.mode = (a.mode & ~(uint32_t)0777) | perm;
    }
    char *v;
    size_t vlen;
    rv = get(t->s, t->s->ro, CF_XATTRS, k, klen, &v, &vlen,
             "reading an extended attribute");
    if (rv != 0) {
        return rv;
    }
    bool exists = v != NULL;
    rocksdb_free(v);
    if (exists && (c->flags & STORE_XATTR_CREATE)) {
        return EEXIST;
    }
    if (!exists && (c->flags & STORE_XATTR_REPLACE)) {
        return ENODATA;
    }
    if (acl_equiv) {
        if (exists) {
            rocksdb_writebatch_delete_cf(t->b, t->s->cf[CF_XATTRS], (char *)k,
                                         klen);
        }
        rv = xattr_touch(t, &a);
        if (rv != 0) {
            return rv;
        }
        *ino = a.ino;
        return 0;
    }
    uint64_t list, total;
    rv = xattr_usage(t, c->ino, k, klen, &list, &total);
    if (rv != 0) {
        return rv;
    }
    if (list + c->name_len + 1 > STORE_XATTR_LIST_MAX ||
        total + c->name_len + c->data_len > STORE_XATTR_TOTAL_MAX) {
        return ENOSPC; /* ext4's answer when an inode's attributes are full. */
    }
    rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_XATTRS], (char *)k, klen,
                              c->data_len ? c->data : "", c->data_len);
    rv = xattr_touch(t, &a);
    if (rv != 0) {
        return rv;
    }
    *ino = a.ino;
    return 0;
}

static int op_removexattr(struct tx *t, const struct store_cmd *c,
                          uint64_t *ino)
{
    struct store_attr a;
    uint8_t k[8 + STORE_XATTR_NAME_MAX];
    size_t klen;
    int rv = xattr_check(t, c, &a, k, &klen);
    if (rv != 0) {
        return rv;
    }
    char *v;
    size_t vlen;
    rv = get(t->s, t->s->ro, CF_XATTRS, k, klen, &v, &vlen,
             "reading an extended attribute");
    if (rv != 0) {
        return rv;
    }
    if (v == NULL) {
        /* Removing an access ACL that is not there succeeds, as on ext4
         * (the kernel removes ACLs through set_acl, with no
         * XATTR_REPLACE). */
        if (is_name(c, acl_access_name, sizeof(acl_access_name) - 1) ||
            is_name(c, acl_default_name, sizeof(acl_default_name) - 1)) {
            *ino = a.ino;
            return 0;
        }
        return ENODATA;
    }
    rocksdb_free(v);
    rocksdb_writebatch_delete_cf(t->b, t->s->cf[CF_XATTRS], (char *)k, klen);
    rv = xattr_touch(t, &a);
    if (rv != 0) {
        return rv;
    }
    *ino = a.ino;
    return 0;
}

/* ---- Sessions --------------------------------------------------------- */

static void session_key(uint8_t *k, rfs_nodeid_t client, uint64_t boot,
                        uint64_t seq)
{
    k[0] = 'S';
    rfs_put_be64(k + 1, client);
    rfs_put_be64(k + 9, boot);
    rfs_put_be64(k + 17, seq);
}

enum session_state {
    SESSION_NEW,       /* Apply it. */
    SESSION_DUPLICATE, /* Applied before: *r holds the first result. */
    SESSION_STALE,     /* From a client boot that has since been replaced. */
};

/* The client's record: its current boot and how far its answered
 * requests were forgotten. */
struct session_head {
    bool found;
    uint64_t boot;
    uint64_t purged; /* Seqs below this have no record left. */
};

/* Look the request up; writes nothing. */
static int session_check(struct tx *t, const struct store_cmd *c,
                         struct store_result *r, enum session_state *st,
                         struct session_head *h)
{
    uint8_t bk[9];
    bk[0] = 'B';
    rfs_put_be64(bk + 1, c->client);
    char *v;
    size_t len;
    int rv = get(t->s, t->s->ro, CF_SESSIONS, bk, 9, &v, &len,
                 "reading a session");
    if (rv != 0) {
        return rv;
    }
    memset(h, 0, sizeof(*h));
    if (v != NULL && len == 16) {
        h->found = true;
        h->boot = rfs_get_le64((uint8_t *)v);
        h->purged = rfs_get_le64((uint8_t *)v + 8);
    }
    rocksdb_free(v);
    *st = SESSION_NEW;
    if (h->found && c->boot < h->boot) {
        *st = SESSION_STALE;
        return 0;
    }
    if (!h->found || c->boot > h->boot) {
        return 0;
    }
    if (c->seq < h->purged) {
        /* Answered and forgotten: the client moved past it, so this copy
         * is a stray duplicate that nobody waits for. Never apply twice. */
        *st = SESSION_STALE;
        return 0;
    }
    uint8_t k[25];
    session_key(k, c->client, c->boot, c->seq);
    rv = get(t->s, t->s->ro, CF_SESSIONS, k, 25, &v, &len,
             "reading a session");
    if (rv != 0) {
        return rv;
    }
    if (v != NULL) {
        if (len == 12) {
            r->err = (int)rfs_get_le32((uint8_t *)v);
            r->ino = rfs_get_le64((uint8_t *)v + 4);
        }
        r->duplicate = true;
        *st = SESSION_DUPLICATE;
        rocksdb_free(v);
    }
    return 0;
}

/* Point-delete the records of client/boot with seq in [from, to). */
static int session_forget(struct tx *t, rfs_nodeid_t client, uint64_t boot,
                          uint64_t from, uint64_t to)
{
    uint8_t a[25], z[25];
    session_key(a, client, boot, from);
    session_key(z, client, boot, to);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(t->s->db, t->s->ro, t->s->cf[CF_SESSIONS]);
    for (rocksdb_iter_seek(it, (char *)a, 25); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen != 25 || memcmp(k, z, 25) >= 0) {
            break;
        }
        rocksdb_writebatch_delete_cf(t->b, t->s->cf[CF_SESSIONS], k, klen);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err != NULL) {
        return store__rocks_err(t->s, err, "forgetting answered requests");
    }
    return 0;
}

static int session_end(struct tx *t, rfs_nodeid_t client, uint64_t boot);

/* Record the result of a new request, start the client's new boot if this is
 * one (ending the old boot's session), and forget answered requests. */
static int session_record(struct tx *t, const struct store_cmd *c,
                          const struct session_head *h,
                          const struct store_result *r)
{
    struct session_head nh = *h;
    int rv = 0;
    if (!h->found || c->boot > h->boot) {
        if (h->found) {
            rv = session_forget(t, c->client, h->boot, 0, UINT64_MAX);
            if (rv == 0) {
                rv = session_end(t, c->client, h->boot);
            }
        }
        nh.boot = c->boot;
        nh.purged = 0;
    }
    /* Everything below first_outstanding was answered: forget it, which
     * bounds the table by the client's requests in flight. Each record is
     * deleted once, when the low-water mark passes it. */
    if (rv == 0 && c->first_outstanding > nh.purged) {
        rv = session_forget(t, c->client, c->boot, nh.purged,
                            c->first_outstanding);
        nh.purged = c->first_outstanding;
    }
    if (rv != 0) {
        return rv;
    }
    uint8_t bk[9], bv[16];
    bk[0] = 'B';
    rfs_put_be64(bk + 1, c->client);
    rfs_put_le64(bv, nh.boot);
    rfs_put_le64(bv + 8, nh.purged);
    rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_SESSIONS], (char *)bk, 9,
                              (char *)bv, 16);
    if (c->seq >= nh.purged) {
        uint8_t k[25], v[12];
        session_key(k, c->client, c->boot, c->seq);
        rfs_put_le32(v, (uint32_t)r->err);
        rfs_put_le64(v + 4, r->ino);
        rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_SESSIONS], (char *)k, 25,
                                  (char *)v, 12);
    }
    return 0;
}

/* ---- Node sessions ---------------------------------------------------- */

/* A client's latest node session: 'L' client -> le64 boot, le32 ttl_ms,
 * u8 live. One record per client, kept once ended so that the ended boot
 * stays fenced (its late changes fail with EROFS). */
struct live_session {
    bool found;
    uint64_t boot;
    uint32_t ttl_ms;
    bool live;
};

#define LIVE_VALUE_SIZE 13

static void live_key(uint8_t *k, rfs_nodeid_t client)
{
    k[0] = 'L';
    rfs_put_be64(k + 1, client);
}

static int live_get(struct tx *t, rfs_nodeid_t client, struct live_session *l)
{
    uint8_t k[9];
    live_key(k, client);
    char *v;
    size_t len;
    int rv = get(t->s, t->s->ro, CF_SESSIONS, k, 9, &v, &len,
                 "reading a node session");
    if (rv != 0) {
        return rv;
    }
    memset(l, 0, sizeof(*l));
    if (v != NULL && len == LIVE_VALUE_SIZE) {
        const uint8_t *p = (const uint8_t *)v;
        l->found = true;
        l->boot = rfs_get_le64(p);
        l->ttl_ms = rfs_get_le32(p + 8);
        l->live = p[12] != 0;
    }
    rocksdb_free(v);
    return 0;
}

static void live_put(struct tx *t, rfs_nodeid_t client,
                     const struct live_session *l)
{
    uint8_t k[9], v[LIVE_VALUE_SIZE];
    live_key(k, client);
    rfs_put_le64(v, l->boot);
    rfs_put_le32(v + 8, l->ttl_ms);
    v[12] = l->live;
    rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_SESSIONS], (char *)k, 9,
                              (char *)v, LIVE_VALUE_SIZE);
}

/* 'E' client boot ino -> le64 parent + name. */
static void ephemeral_key(uint8_t *k, rfs_nodeid_t client, uint64_t boot,
                          uint64_t ino)
{
    k[0] = 'E';
    rfs_put_be64(k + 1, client);
    rfs_put_be64(k + 9, boot);
    rfs_put_be64(k + 17, ino);
}

/* CREATE made file ino: if its directory is marked ephemeral, tie the file
 * (by its name there) to the creator's session. */
static int ephemeral_note(struct tx *t, const struct store_cmd *c,
                          uint64_t ino)
{
    if (c->client == 0) {
        return 0;
    }
    size_t nlen = sizeof(STORE_EPHEMERAL_XATTR) - 1;
    uint8_t xk[8 + sizeof(STORE_EPHEMERAL_XATTR)];
    rfs_put_be64(xk, c->parent);
    memcpy(xk + 8, STORE_EPHEMERAL_XATTR, nlen);
    char *v;
    size_t vlen;
    int rv = get(t->s, t->s->ro, CF_XATTRS, xk, 8 + nlen, &v, &vlen,
                 "reading an extended attribute");
    if (rv != 0) {
        return rv;
    }
    bool marked = v != NULL && vlen == 1 && v[0] == '1';
    rocksdb_free(v);
    if (!marked) {
        return 0;
    }
    uint8_t k[25];
    ephemeral_key(k, c->client, c->boot, ino);
    uint8_t *val = rfs_malloc(8 + c->name_len);
    if (val == NULL) {
        return -ENOMEM;
    }
    rfs_put_le64(val, c->parent);
    memcpy(val + 8, c->name, c->name_len);
    rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_SESSIONS], (char *)k, 25,
                              (char *)val, 8 + c->name_len);
    rfs_free(val);
    return 0;
}

/* Unlink the session's ephemeral files that still bear the name they were
 * created under (one renamed away, or replaced by another file of that
 * name, is left alone), and forget their records. */
static int ephemeral_drop(struct tx *t, rfs_nodeid_t client, uint64_t boot)
{
    uint8_t a[25], z[25];
    ephemeral_key(a, client, boot, 0);
    ephemeral_key(z, client, boot + 1, 0);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(t->s->db, t->s->ro, t->s->cf[CF_SESSIONS]);
    int rv = 0;
    for (rocksdb_iter_seek(it, (char *)a, 25);
         rv == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen != 25 || memcmp(k, z, 25) >= 0 || k[0] != 'E') {
            break;
        }
        const char *v = rocksdb_iter_value(it, &vlen);
        rocksdb_writebatch_delete_cf(t->b, t->s->cf[CF_SESSIONS], k, klen);
        if (vlen < 9 || vlen > 8 + STORE_NAME_MAX) {
            continue; /* A damaged record: forget it, unlink nothing. */
        }
        uint64_t ino = rfs_get_be64((const uint8_t *)k + 17);
        struct store_cmd u = {.op = STORE_OP_UNLINK};
        u.parent = rfs_get_le64((const uint8_t *)v);
        u.name = v + 8;
        u.name_len = (uint16_t)(vlen - 8);
        uint64_t have;
        uint8_t type;
        rv = dentry_get(t->s, t->s->ro, u.parent, u.name, u.name_len, &have,
                        &type);
        if (rv == -ENOENT || (rv == 0 && (have != ino || type != STORE_FILE))) {
            rv = 0;
            continue;
        }
        if (rv == 0 && !t->orphan) {
            /* Watchers see it go, as any unlink (raftfs watch). */
            rv = store__history_add_more(t->s, t->b, t->index, ++t->history_sub,
                                         STORE_CH_UNLINK, u.parent, u.name,
                                         u.name_len);
        }
        if (rv == 0) {
            uint64_t gone;
            rv = op_remove(t, &u, false, &gone);
            rv = rv > 0 ? 0 : rv; /* Gone meanwhile: nothing to do. */
        }
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err != NULL) {
        return store__rocks_err(t->s, err, "reading ephemeral files");
    }
    return rv;
}

/*
 * The session (client, boot) ends: mark it ended (fencing its late
 * changes) and drop everything tied to it. Called when a SESSION_END entry
 * applies and when a newer boot of the client first applies a command. The
 * one place where what belongs to a session is released.
 */
static int session_end(struct tx *t, rfs_nodeid_t client, uint64_t boot)
{
    struct live_session l;
    int rv = live_get(t, client, &l);
    if (rv != 0) {
        return rv;
    }
    /* An entry that opened the client's new session has written its record
     * already (same batch): the old one is replaced, not marked. */
    if (l.found && l.boot == boot && l.live && !t->session_opened) {
        l.live = false;
        live_put(t, client, &l);
    }
    t->locks_by_session = true; /* The history says why they ended. */
    rv = locks_drop_session(t, client, boot);
    t->locks_by_session = false;
    if (rv != 0) {
        return rv;
    }
    return ephemeral_drop(t, client, boot);
}

static int op_session_open(struct tx *t, const struct store_cmd *c)
{
    if (c->offset == 0 || c->offset > UINT32_MAX || c->client == 0) {
        return EINVAL;
    }
    struct live_session l = {.found = true, .boot = c->boot,
                             .ttl_ms = (uint32_t)c->offset, .live = true};
    live_put(t, c->client, &l);
    t->session_opened = true;
    return 0;
}

static int op_session_end(struct tx *t, const struct store_cmd *c)
{
    struct live_session l;
    int rv = live_get(t, c->ino, &l);
    if (rv != 0) {
        return rv;
    }
    if (!l.found || !l.live || l.boot != c->offset) {
        return ENOENT; /* Ended already, or a newer boot replaced it. */
    }
    return session_end(t, c->ino, c->offset);
}

/* Whether c's (client, boot) session has ended: its changes are refused. */
static int session_fenced(struct tx *t, const struct store_cmd *c,
                          bool *fenced)
{
    struct live_session l;
    int rv = live_get(t, c->client, &l);
    *fenced = rv == 0 && l.found && !l.live && l.boot == c->boot;
    return rv;
}

int store_sessions(struct store *s, store_session_cb cb, void *arg)
{
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(s->db, s->ro, s->cf[CF_SESSIONS]);
    for (rocksdb_iter_seek(it, "L", 1); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen == 0 || k[0] != 'L') {
            break;
        }
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        if (klen != 9 || vlen != LIVE_VALUE_SIZE) {
            continue;
        }
        if (cb(arg, rfs_get_be64((const uint8_t *)k + 1), rfs_get_le64(v),
               rfs_get_le32(v + 8), v[12] != 0) != 0) {
            break;
        }
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err != NULL) {
        return store__rocks_err(s, err, "reading node sessions");
    }
    return 0;
}

/* ---- Apply ------------------------------------------------------------ */

static int apply_cmd(struct tx *t, const struct store_cmd *c,
                     struct store_result *r)
{
    uint64_t ino = 0;
    int rv;
    switch (c->op) {
    case STORE_OP_NOOP:
        rv = 0;
        break;
    case STORE_OP_CREATE:
        rv = op_create(t, c, &ino);
        break;
    case STORE_OP_MKDIR:
        rv = op_mknode(t, c, STORE_DIR, &ino);
        break;
    case STORE_OP_SYMLINK:
        rv = op_mknode(t, c, STORE_SYMLINK, &ino);
        break;
    case STORE_OP_UNLINK:
        rv = op_remove(t, c, false, &ino);
        break;
    case STORE_OP_RMDIR:
        rv = op_remove(t, c, true, &ino);
        break;
    case STORE_OP_RENAME:
        rv = op_rename(t, c, &ino);
        break;
    case STORE_OP_WRITE:
        rv = op_write(t, c, &ino);
        break;
    case STORE_OP_SETATTR:
        rv = op_setattr(t, c, &ino);
        break;
    case STORE_OP_MKNOD:
        rv = op_mknod(t, c, &ino);
        break;
    case STORE_OP_LINK:
        rv = op_link(t, c, &ino);
        break;
    case STORE_OP_SETXATTR:
        rv = op_setxattr(t, c, &ino);
        break;
    case STORE_OP_REMOVEXATTR:
        rv = op_removexattr(t, c, &ino);
        break;
    case STORE_OP_SESSION_OPEN:
        rv = op_session_open(t, c);
        break;
    case STORE_OP_SESSION_END:
        rv = op_session_end(t, c);
        break;
    case STORE_OP_PUT:
        rv = op_put(t, c, &ino);
        break;
    case STORE_OP_LOCK:
    case STORE_OP_LOCK_CANCEL:
        rv = locks_apply(t, c);
        ino = c->ino;
        break;
    default:
        rv = EINVAL;
        break;
    }
    if (rv < 0) {
        return rv; /* The store failed: nothing of this entry applies. */
    }
    r->err = rv;
    r->ino = rv == 0 ? ino : 0;
    return 0;
}

static int apply_one(struct store *s, const struct cons_entry *e,
                     struct store_result *r)
{
    memset(r, 0, sizeof(*r));
    struct tx t = {.s = s, .index = e->index};
    t.b = rocksdb_writebatch_create();
    int rv = 0;
    struct store_cmd c;
    if (e->type != CONS_ENTRY_NORMAL) {
        /* CONF and NOOP entries only move the applied index. */
    } else if (store_cmd_decode(&e->data, &c) != 0) {
        r->err = EINVAL; /* The same bytes fail the same way everywhere. */
    } else {
        t.now = c.time_ns;
        enum session_state st = SESSION_NEW;
        struct session_head h = {0};
        if (c.client != 0) {
            rv = session_check(&t, &c, r, &st, &h);
        }
        bool fenced = false;
        if (rv == 0 && st == SESSION_NEW && c.client != 0) {
            rv = session_fenced(&t, &c, &fenced);
        }
        if (rv == 0 && st == SESSION_STALE) {
            r->err = ESTALE;
        } else if (rv == 0 && st == SESSION_NEW) {
            if (fenced) {
                /* Its node session ended before this applied: a node cut
                 * off past its TTL changes nothing any more, and holds no
                 * lock (the contract's ENOLCK for a lock request). */
                r->err = c.op == STORE_OP_LOCK || c.op == STORE_OP_LOCK_CANCEL
                             ? ENOLCK
                             : EROFS;
            } else {
                rv = apply_cmd(&t, &c, r);
                if (rv == 0) {
                    rv = t.err;
                }
            }
            if (rv == 0 && r->err == EINPROGRESS) {
                /* A queued lock waiter: a replicated outcome that does
                 * change the state (the queue). */
            } else if (rv == 0 && r->err != 0) {
                /* A refused operation changes nothing but its session. */
                rocksdb_writebatch_clear(t.b);
            } else if (rv == 0) {
                rv = store__history_add(s, t.b, e->index, &c);
            }
            if (rv == 0 && c.client != 0) {
                rv = session_record(&t, &c, &h, r);
            }
        }
    }
    uint8_t chain[STORE_CHAIN_BYTES];
    if (rv == 0 && s->chain_known) {
        /* In the replicated state, beside what it hashes: every node at
         * this index holds the same value, and a snapshot carries it. */
        store_chain_next(s->chain, e, chain);
        rocksdb_writebatch_put_cf(t.b, s->cf[CF_SESSIONS], STORE__CHAIN_KEY,
                                  sizeof(STORE__CHAIN_KEY) - 1,
                                  (char *)chain, sizeof(chain));
    }
    if (rv == 0) {
        store__history_prune(s, t.b, e->index);
        uint8_t v[8];
        rfs_put_le64(v, e->index);
        rocksdb_writebatch_put_cf(t.b, s->cf[CF_META], "applied", 7,
                                  (char *)v, 8);
        char what[64];
        snprintf(what, sizeof(what), "applying entry %llu",
                 (unsigned long long)e->index);
        rv = store__write(s, t.b, false, what);
    }
    rocksdb_writebatch_destroy(t.b);
    r->granted = t.granted;
    if (rv == 0) {
        s->applied = e->index;
        if (s->chain_known) {
            memcpy(s->chain, chain, sizeof(chain));
        }
    }
    return rv;
}

int store_apply(struct store *s, const struct cons_entry *entries, unsigned n,
                struct store_result *results)
{
    for (unsigned i = 0; i < n; i++) {
        struct store_result r;
        if (entries[i].index <= s->applied) {
            if (results != NULL) {
                memset(&results[i], 0, sizeof(results[i]));
                results[i].duplicate = true;
            }
            continue;
        }
        if (entries[i].index != s->applied + 1) {
            return store__set_err(s, -EINVAL,
                                  "apply %llu after %llu in %s: a gap",
                                  (unsigned long long)entries[i].index,
                                  (unsigned long long)s->applied, s->dir);
        }
        int rv = apply_one(s, &entries[i], &r);
        if (rv != 0) {
            return rv;
        }
        if (results != NULL) {
            results[i] = r;
        }
    }
    return 0;
}

rfs_index_t store_applied(struct store *s)
{
    return s->applied;
}

/* ---- Reads ------------------------------------------------------------ */

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
    return inode_get(s, store__ro(s, v), ino, out, NULL, NULL);
}

int store_lookup(struct store *s, const struct store_view *v, uint64_t parent,
                 const char *name, size_t name_len, struct store_attr *out)
{
    const rocksdb_readoptions_t *ro = store__ro(s, v);
    uint64_t ino;
    uint8_t type;
    int rv = dentry_get(s, ro, parent, name, name_len, &ino, &type);
    if (rv != 0) {
        return rv;
    }
    return inode_get(s, ro, ino, out, NULL, NULL);
}

/* Read len bytes at off of a file of size `size` whose chunks are in cf:
 * holes read as zeros. */
static int read_chunks(struct store *s, const rocksdb_readoptions_t *ro,
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
    uint8_t from[16];
    chunk_key(from, ino, off / STORE_CHUNK_SIZE);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[cf]);
    for (rocksdb_iter_seek(it, (char *)from, 16); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
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
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err != NULL) {
        return store__rocks_err(s, err, "reading file %llu",
                                (unsigned long long)ino);
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
    int rv = inode_get(s, ro, ino, &a, NULL, NULL);
    if (rv != 0) {
        return rv;
    }
    if (a.type == STORE_DIR) {
        return -EISDIR;
    }
    return read_chunks(s, ro, CF_CHUNKS, ino, a.size, off, len, buf, got);
}

int store_readlink(struct store *s, const struct store_view *v, uint64_t ino,
                   char *buf, size_t cap, size_t *len)
{
    struct store_attr a;
    char *raw;
    size_t rawlen;
    int rv = inode_get(s, store__ro(s, v), ino, &a, &raw, &rawlen);
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
    const rocksdb_readoptions_t *ro = store__ro(s, v);
    uint8_t k[8 + STORE_NAME_MAX + 1];
    rfs_put_be64(k, ino);
    size_t klen0 = 8;
    if (after != NULL && after_len <= STORE_NAME_MAX) {
        memcpy(k + 8, after, after_len);
        k[8 + after_len] = '\0'; /* Just past `after` in key order. */
        klen0 = 8 + after_len + 1;
    }
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_DENTRIES]);
    bool damaged = false;
    for (rocksdb_iter_seek(it, (char *)k, klen0); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &klen);
        if (klen < 8 || rfs_get_be64(key) != ino) {
            break;
        }
        const char *val = rocksdb_iter_value(it, &vlen);
        if (vlen != 9) {
            /* Refused as dentry_get refuses it: a listing that left the
             * name out would disagree with the lookup of that name. */
            damaged = true;
            break;
        }
        if (cb(arg, (const char *)key + 8, klen - 8,
               rfs_get_le64((const uint8_t *)val), (uint8_t)val[8]) != 0) {
            break;
        }
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (damaged && err == NULL) {
        return store__set_err(s, RFS_ECORRUPT,
                              "directory entry in %llu of %s is damaged",
                              (unsigned long long)ino, s->dir);
    }
    if (err != NULL) {
        return store__rocks_err(s, err, "listing directory %llu",
                                (unsigned long long)ino);
    }
    return 0;
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
    int rv = inode_get(s, ro, ino, &a, NULL, NULL);
    if (rv != 0) {
        return rv;
    }
    uint8_t k[8 + STORE_XATTR_NAME_MAX];
    rfs_put_be64(k, ino);
    memcpy(k + 8, name, name_len);
    char *val;
    size_t vlen;
    rv = get(s, ro, CF_XATTRS, k, 8 + name_len, &val, &vlen,
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
    int rv = inode_get(s, ro, ino, &a, NULL, NULL);
    if (rv != 0) {
        return rv;
    }
    struct xattr_names l = {buf, cap, 0};
    rv = xattr_walk(s, ro, ino, xattr_name_one, &l);
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

/* ---- Orphans (this node only) ----------------------------------------- */

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
    int rv = get(s, s->ro, CF_ORPHANS, k, 8, &v, &len, "reading an orphan");
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
    return read_chunks(s, s->ro, CF_ORPHANS, ino, a.size, off, len, buf,
                       got);
}

/* The orphan's change, decided like op_write/op_setattr but on this
 * node's copy. Positive results are the operation's errno. */
static int orphan_apply(struct tx *t, const struct store_cmd *c,
                        struct store_attr *a)
{
    int rv = 0;
    if (c->op == STORE_OP_WRITE) {
        if (c->flags & STORE_TRUNC) {
            rv = set_size(t, a, 0);
        }
        uint64_t off = c->flags & STORE_APPEND ? a->size : c->offset;
        if (rv == 0) {
            rv = write_data(t, a, off, c->data, c->data_len);
        }
        if (rv == 0 && ((c->flags & STORE_TRUNC) || c->data_len > 0)) {
            a->mtime_ns = a->ctime_ns = t->now;
        }
        if (rv == 0) {
            write_kill_priv(c, false, a);
        }
        return rv;
    }
    if (c->op != STORE_OP_SETATTR) {
        return EINVAL;
    }
    if (c->valid & STORE_SET_SIZE) {
        rv = set_size(t, a, c->size);
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
    setattr_rules(t, c, a);
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
    int rv = chunks_drop(&t, ino, 0, NULL);
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
