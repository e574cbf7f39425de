/*
 * POSIX ACLs and file capabilities: the two extended attributes whose
 * contents the filesystem itself must keep in step with other changes.
 * An access ACL mirrors the mode's permission bits both ways, a default
 * ACL is inherited by new entries, and file capabilities go with any
 * write, truncate or chown. The kernel checks access with them; what it
 * leaves to us is done here, at apply, so every node does it alike.
 */
#include <errno.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/stat.h>

#include "store_i.h"

/* security.capability: the file capabilities setcap sets. */
const char store__caps_name[] = "security.capability";

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
int store__caps_kill(struct tx *t, uint64_t ino)
{
    uint8_t k[8 + sizeof(store__caps_name) - 1];
    rfs_put_be64(k, ino);
    memcpy(k + 8, store__caps_name, sizeof(store__caps_name) - 1);
    char *v;
    size_t vlen;
    int rv = store__get(t->s, t->s->ro, CF_XATTRS, k, sizeof(k), &v, &vlen,
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
const char store__acl_access_name[] = STORE_ACL_ACCESS;
const char store__acl_default_name[] = STORE_ACL_DEFAULT;

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
bool store__acl_mode(const uint8_t *p, size_t len, uint32_t *perm)
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
    store__acl_mode(buf, len, &perm);
    return (mode & ~(uint32_t)0777) | perm;
}

/* The key of ino's access ACL in CF_XATTRS. */
static size_t acl_key(uint8_t *k, uint64_t ino)
{
    rfs_put_be64(k, ino);
    memcpy(k + 8, store__acl_access_name, sizeof(store__acl_access_name) - 1);
    return 8 + sizeof(store__acl_access_name) - 1;
}

/* A new inode a (type and mode set, not yet written) in directory dir:
 * with a default ACL there, a gets it as its access ACL, limited by the
 * create mode, and a new directory also as its default ACL; the umask
 * does not count (POSIX). Without one, the umask the command carries is
 * taken from the mode. In the entry's batch. */
int store__acl_inherit(struct tx *t, const struct store_cmd *c,
                       const struct store_attr *dir, struct store_attr *a)
{
    uint8_t k[8 + sizeof(store__acl_default_name)];
    rfs_put_be64(k, dir->ino);
    memcpy(k + 8, store__acl_default_name, sizeof(store__acl_default_name) - 1);
    size_t klen = 8 + sizeof(store__acl_default_name) - 1;
    char *v;
    size_t vlen;
    int rv = store__get(t->s, t->s->ro, CF_XATTRS, k, klen, &v, &vlen,
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
    if (!store__acl_mode((uint8_t *)v, vlen, &perm)) {
        uint8_t ak[8 + sizeof(store__acl_access_name)];
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
int store__acl_follow_mode(struct tx *t, uint64_t ino, uint32_t mode)
{
    uint8_t k[8 + sizeof(store__acl_access_name)];
    size_t klen = acl_key(k, ino);
    char *v;
    size_t vlen;
    int rv = store__get(t->s, t->s->ro, CF_XATTRS, k, klen, &v, &vlen,
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
