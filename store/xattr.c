/*
 * Extended attributes at apply: setxattr and removexattr, the namespaces
 * raftfs accepts and who may change what in them, and the per-inode bound
 * on their total size. Stored in CF_XATTRS (records.c reads and drops
 * them); the names with rules of their own (ACLs, file capabilities) are
 * acl.c's.
 */
#include <errno.h>
#include <string.h>

#include "store_i.h"

static bool is_name(const struct store_cmd *c, const char *name, size_t len)
{
    return c->name_len == len && memcmp(c->name, name, len) == 0;
}

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
    int rv = store__handle_get(t, c->ino, a);
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
    } else if (c->name_len == sizeof(store__caps_name) - 1 &&
               memcmp(c->name, store__caps_name, c->name_len) == 0) {
        /* Any type, as Linux: the kernel checked CAP_SETFCAP and the
         * value's format before sending it, and so does the proposer. */
    } else if (is_name(c, store__acl_access_name,
                       sizeof(store__acl_access_name) - 1)) {
        if (a->type == STORE_SYMLINK) {
            return EOPNOTSUPP; /* A symlink has no ACL on Linux. */
        }
    } else if (is_name(c, store__acl_default_name,
                       sizeof(store__acl_default_name) - 1)) {
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
    int rv = store__xattr_walk(t->s, NULL, ino, xattr_add_one, &u);
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
    return store__inode_update(t, a);
}

int store__op_setxattr(struct tx *t, const struct store_cmd *c,
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
    if (klen == 8 + sizeof(store__caps_name) - 1 &&
        memcmp(k + 8, store__caps_name, sizeof(store__caps_name) - 1) == 0 &&
        !store_caps_valid(c->data, c->data_len)) {
        return EINVAL;
    }
    bool acl =
        is_name(c, store__acl_access_name, sizeof(store__acl_access_name) - 1);
    bool acl_equiv = false;
    if (is_name(c, store__acl_default_name,
                sizeof(store__acl_default_name) - 1)) {
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
        acl_equiv = store__acl_mode(c->data, c->data_len, &perm);
        a.mode = (a.mode & ~(uint32_t)0777) | perm;
    }
    char *v;
    size_t vlen;
    rv = store__get(t->s, t->s->ro, CF_XATTRS, k, klen, &v, &vlen,
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

int store__op_removexattr(struct tx *t, const struct store_cmd *c,
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
    rv = store__get(t->s, t->s->ro, CF_XATTRS, k, klen, &v, &vlen,
             "reading an extended attribute");
    if (rv != 0) {
        return rv;
    }
    if (v == NULL) {
        /* Removing an access ACL that is not there succeeds, as on ext4
         * (the kernel removes ACLs through set_acl, with no
         * XATTR_REPLACE). */
        if (is_name(c, store__acl_access_name,
                    sizeof(store__acl_access_name) - 1) ||
            is_name(c, store__acl_default_name,
                    sizeof(store__acl_default_name) - 1)) {
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
