/*
 * The filesystem operations, as apply runs them: create, write, setattr,
 * mkdir, symlink, mknod, link, unlink, rmdir, rename and put. Each decides
 * on the state as of its entry (never at proposal time), so every node
 * reaches the same result, and writes its change into the entry's batch
 * (struct tx). A positive result is the operation's errno (the entry then
 * changes nothing but its session); a negative one is the store's failure.
 * The rules a change implies beyond what it names (setuid and setgid that
 * go, a setgid directory's group, an inherited ACL) are applied here too,
 * for the same reason. Extended attributes are xattr.c's, ACLs and file
 * capabilities acl.c's.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/heap.h"
#include "store_i.h"

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
    int rv = store__inode_get(t->s, t->s->ro, ino, a, NULL, NULL);
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
    int rv = store__inode_get(t->s, t->s->ro, c->ino, &a, NULL, NULL);
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
void store__write_kill_priv(const struct store_cmd *c, bool created,
                            struct store_attr *a)
{
    if ((c->flags & STORE_KILL_PRIV) &&
        (((c->flags & STORE_TRUNC) && !created) || c->data_len > 0)) {
        kill_priv(a);
    }
}

/* What a SETATTR implies beyond the fields it sets, on the replicated
 * state and on an orphan alike: a truncate by a caller without
 * CAP_FSETID, and any chown of a non-directory (even to the same owner,
 * even by root, as on Linux), clear setuid and setgid (see kill_priv);
 * UTIME_NOW takes the entry's own time, so atime, mtime and ctime agree. */
void store__setattr_rules(const struct tx *t, const struct store_cmd *c,
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
int store__write_data(struct tx *t, struct store_attr *a, uint64_t off,
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
            store__chunk_key(k, a->ino, cn);
            char *v;
            size_t vlen;
            int rv = store__get(t->s, t->s->ro, store__chunks_cf(t), k, 16, &v,
                                &vlen, "reading a chunk");
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
        store__chunk_key(k, a->ino, cn);
        rocksdb_writebatch_put_cf(t->b, t->s->cf[store__chunks_cf(t)],
                                  (char *)k, 16, (char *)buf, clen);
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
int store__set_size(struct tx *t, struct store_attr *a, uint64_t size)
{
    if (size > STORE_MAX_FILE_SIZE) {
        return EFBIG;
    }
    if (size < a->size) {
        uint64_t keep = (size + STORE_CHUNK_SIZE - 1) / STORE_CHUNK_SIZE;
        uint64_t dropped;
        int rv = store__chunks_drop(t, a->ino, keep, &dropped);
        if (rv != 0) {
            return rv;
        }
        a->stored -= dropped < a->stored ? dropped : a->stored;
        size_t tail = (size_t)(size % STORE_CHUNK_SIZE);
        if (tail != 0) {
            uint8_t k[16];
            store__chunk_key(k, a->ino, size / STORE_CHUNK_SIZE);
            char *v;
            size_t vlen;
            rv = store__get(t->s, t->s->ro, store__chunks_cf(t), k, 16, &v,
                            &vlen, "reading a chunk");
            if (rv != 0) {
                return rv;
            }
            if (v != NULL && vlen > tail) {
                rocksdb_writebatch_put_cf(t->b, t->s->cf[store__chunks_cf(t)],
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
        rv = store__set_size(t, a, 0);
    }
    uint64_t off = c->flags & STORE_APPEND ? a->size : c->offset;
    if (rv == 0) {
        rv = store__write_data(t, a, off, c->data, c->data_len);
    }
    if (rv != 0) {
        return rv;
    }
    if ((c->flags & STORE_TRUNC) || c->data_len > 0) {
        touch(t, a);
        if (!created) {
            rv = store__caps_kill(t, a->ino);
            if (rv != 0) {
                return rv;
            }
        }
    }
    store__write_kill_priv(c, created, a);
    store__inode_put(t, a, NULL, 0);
    return 0;
}

int store__op_create(struct tx *t, const struct store_cmd *c, uint64_t *ino)
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
    rv = store__dentry_get(t->s, t->s->ro, c->parent, c->name, c->name_len,
                           &have, &type);
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
        rv = store__inode_get(t->s, t->s->ro, have, &a, NULL, NULL);
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
        rv = store__acl_inherit(t, c, &dir, &a);
        if (rv != 0) {
            return rv;
        }
        a.nlink = 1;
        a.atime_ns = t->now;
        touch(t, &a);
        store__dentry_put(t, c->parent, c->name, c->name_len, a.ino,
                          STORE_FILE);
        touch(t, &dir);
        store__inode_put(t, &dir, NULL, 0);
    } else {
        return rv;
    }
    rv = file_write(t, &a, c, created);
    if (rv != 0) {
        return rv;
    }
    if (created) {
        rv = store__ephemeral_note(t, c, a.ino);
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
int store__op_put(struct tx *t, const struct store_cmd *c, uint64_t *ino)
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
    rv = store__dentry_get(t->s, t->s->ro, c->parent, c->name, c->name_len,
                           &have, &type);
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
            rv = store__inode_get(t->s, t->s->ro, have, &a, NULL, NULL);
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
    return store__op_create(t, &w, ino);
}

/* The inode an open handle names: ESTALE once it was unlinked, anywhere in
 * the cluster. */
int store__handle_get(struct tx *t, uint64_t ino, struct store_attr *a)
{
    int rv = store__inode_get(t->s, t->s->ro, ino, a, NULL, NULL);
    return rv == -ENOENT ? ESTALE : rv;
}

int store__op_write(struct tx *t, const struct store_cmd *c, uint64_t *ino)
{
    struct store_attr a;
    int rv = store__handle_get(t, c->ino, &a);
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

int store__op_setattr(struct tx *t, const struct store_cmd *c, uint64_t *ino)
{
    struct store_attr a;
    int rv = store__handle_get(t, c->ino, &a);
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
        rv = store__set_size(t, &a, c->size);
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
    store__setattr_rules(t, c, &a);
    if (c->valid & STORE_SET_MODE) {
        rv = store__acl_follow_mode(t, a.ino, a.mode);
        if (rv != 0) {
            return rv;
        }
    }
    if ((c->valid & STORE_SET_SIZE) ||
        ((c->valid & (STORE_SET_UID | STORE_SET_GID)) &&
         a.type != STORE_DIR)) {
        rv = store__caps_kill(t, a.ino);
        if (rv != 0) {
            return rv;
        }
    }
    a.ctime_ns = t->now;
    a.revision = t->index;
    rv = store__inode_update(t, &a);
    if (rv != 0) {
        return rv;
    }
    *ino = a.ino;
    return 0;
}

int store__op_mknode(struct tx *t, const struct store_cmd *c, uint8_t type,
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
    rv = store__dentry_get(t->s, t->s->ro, c->parent, c->name, c->name_len,
                           &have, &htype);
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
        rv = store__acl_inherit(t, c, &dir, &a);
        if (rv != 0) {
            return rv;
        }
    }
    if (type == STORE_DIR) {
        inherit_group(&dir, &a);
        a.nlink = 2;
        a.parent = c->parent;
        dir.nlink++;
        store__inode_put(t, &a, NULL, 0);
    } else {
        a.mode = type == STORE_SYMLINK ? 0777 : a.mode;
        a.rdev = type == STORE_CHR || type == STORE_BLK ? c->offset : 0;
        inherit_group(&dir, &a);
        a.nlink = 1;
        a.size = c->data_len;
        store__inode_put(t, &a, c->data, c->data_len);
    }
    store__dentry_put(t, c->parent, c->name, c->name_len, a.ino, type);
    touch(t, &dir);
    store__inode_put(t, &dir, NULL, 0);
    *ino = a.ino;
    return 0;
}

int store__op_remove(struct tx *t, const struct store_cmd *c, bool dir_op,
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
    rv = store__dentry_get(t->s, t->s->ro, c->parent, c->name, c->name_len,
                           &ino, &type);
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
        rv = store__dir_is_empty(t->s, NULL, ino, &empty);
        if (rv != 0) {
            return rv;
        }
        if (!empty) {
            return ENOTEMPTY;
        }
        dir.nlink--;
    }
    store__dentry_del(t, c->parent, c->name, c->name_len);
    rv = store__inode_drop(t, ino);
    if (rv != 0) {
        return rv;
    }
    touch(t, &dir);
    store__inode_put(t, &dir, NULL, 0);
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
        int rv = store__inode_get(t->s, t->s->ro, dir, &a, NULL, NULL);
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
    int rv = store__inode_get(t->s, t->s->ro, ino, &a, NULL, NULL);
    if (rv != 0) {
        return rv == -ENOENT ? 0 : rv;
    }
    a.ctime_ns = t->now;
    a.revision = t->index;
    return store__inode_update(t, &a);
}

/* A directory moved to another parent records its new parent. */
static int set_parent(struct tx *t, uint64_t dir, uint64_t parent)
{
    struct store_attr a;
    int rv = store__inode_get(t->s, t->s->ro, dir, &a, NULL, NULL);
    if (rv != 0) {
        return rv;
    }
    a.parent = parent;
    a.ctime_ns = t->now;
    a.revision = t->index;
    store__inode_put(t, &a, NULL, 0);
    return 0;
}

int store__op_rename(struct tx *t, const struct store_cmd *c, uint64_t *out)
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
    rv = store__dentry_get(t->s, t->s->ro, c->parent, c->name, c->name_len,
                           &sino, &stype);
    if (rv == -ENOENT) {
        return ENOENT;
    }
    if (rv != 0) {
        return rv;
    }
    rv = store__dentry_get(t->s, t->s->ro, c->new_parent, c->new_name,
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
        store__dentry_put(t, c->parent, c->name, c->name_len, dino, dtype);
        store__dentry_put(t, c->new_parent, c->new_name, c->new_name_len, sino,
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
            rv = store__dir_is_empty(t->s, NULL, dino, &empty);
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
        rv = store__inode_drop(t, dino);
        if (rv != 0) {
            return rv;
        }
    }
    store__dentry_del(t, c->parent, c->name, c->name_len);
    store__dentry_put(t, c->new_parent, c->new_name, c->new_name_len, sino,
                      stype);
    {
        struct store_attr a;
        char *raw;
        size_t len;
        rv = store__inode_get(t->s, t->s->ro, sino, &a, &raw, &len);
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
        store__inode_put(t, &a, raw + INODE_VALUE_SIZE, len - INODE_VALUE_SIZE);
        rocksdb_free(raw);
    }
touch_parents:
    if (same_dir) {
        /* sp and dp are the same directory; only dp's copy was changed
         * (link counts move only between different directories). */
        touch(t, &dp);
        store__inode_put(t, &dp, NULL, 0);
    } else {
        touch(t, &sp);
        touch(t, &dp);
        store__inode_put(t, &sp, NULL, 0);
        store__inode_put(t, &dp, NULL, 0);
    }
    return 0;
}

/* ---- Special files and hard links ------------------------------------ */

/* A fifo, socket or device node: only its type and number are stored; the
 * kernel of each node serves its I/O. Who may create a device is the
 * proposer's check (CAP_MKNOD, fs/), made before the entry exists. */
int store__op_mknod(struct tx *t, const struct store_cmd *c, uint64_t *ino)
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
    return store__op_mknode(t, c, type, ino);
}

/* link(2): a new name in c->parent for inode c->ino. The checks come in the
 * kernel's order: the new name's directory, the name, then the inode.
 * Directories never store__get a second name (EPERM, as on ext4: their parent
 * pointer, and rename's loop check, rely on one name). An inode with no
 * name left (open, unlinked) cannot store__get one back (ENOENT, as Linux). */
int store__op_link(struct tx *t, const struct store_cmd *c, uint64_t *ino)
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
    rv = store__dentry_get(t->s, t->s->ro, c->parent, c->name, c->name_len,
                           &have, &htype);
    if (rv == 0) {
        return EEXIST;
    }
    if (rv != -ENOENT) {
        return rv;
    }
    struct store_attr a;
    rv = store__inode_get(t->s, t->s->ro, c->ino, &a, NULL, NULL);
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
    store__dentry_put(t, c->parent, c->name, c->name_len, a.ino, a.type);
    a.nlink++;
    a.ctime_ns = t->now;
    a.revision = t->index;
    rv = store__inode_update(t, &a);
    if (rv != 0) {
        return rv;
    }
    touch(t, &dir);
    store__inode_put(t, &dir, NULL, 0);
    *ino = a.ino;
    return 0;
}
