/*
 * Private to store/: the struct behind struct store, column families, key
 * and value encodings, and error mapping shared by the store's files.
 */
#ifndef RAFTFS_STORE_STORE_I_H
#define RAFTFS_STORE_STORE_I_H

#include <pthread.h>
#include <rocksdb/c.h>

#include "../common/crc32c.h"
#include "../common/endian.h"
#include "../common/err.h"
#include "store.h"

enum store_cf {
    CF_DEFAULT = 0,
    CF_LOG,      /* BE index -> crc, term, type, data. */
    CF_META,     /* "hs", "snap", "applied", "boot". */
    CF_INODES,   /* BE ino -> struct store_attr (+ symlink target or rdev). */
    CF_DENTRIES, /* BE parent + name -> ino, type. */
    CF_CHUNKS,   /* BE ino + BE chunk -> bytes. */
    CF_SESSIONS, /* 'S' client boot seq -> result; 'B' client -> boot;
                  * "chain" -> chain(applied) (store.h, "The chain").
                  * 'L' client -> node session (boot, ttl, live);
                  * 'E' client boot ino -> parent, name: an ephemeral
                  * file of that session. */
    CF_ORPHANS,  /* This node only: unlinked files still open here. BE ino
                  * -> record; BE ino + BE chunk -> bytes. Never in a
                  * snapshot; emptied at open (see store_orphan_*). */
    CF_XATTRS,   /* BE ino + name -> value: extended attributes. */
    CF_LINKS,    /* BE ino + BE parent + name -> "": every directory entry
                  * by the inode it names (for paths). Derived from
                  * CF_DENTRIES, never in a snapshot (see history.c). */
    CF_HISTORY,  /* This node only: BE revision -> change (history.c). */
    CF_LOCKS,    /* 'H' or 'W' + BE ino + ...: lock holders and waiters
                  * (store/locks.c). */
    CF_COUNT,
};

/* The inode record format this build writes and reads (check_format). */
#define STORE_FORMAT 2

struct store {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_column_family_handle_t *cf[CF_COUNT];
    rocksdb_writeoptions_t *wo_sync;
    rocksdb_writeoptions_t *wo_async;
    rocksdb_readoptions_t *ro;
    struct store_options o;
    char dir[4096];
    pthread_mutex_t err_lock; /* Protects errmsg. */
    char errmsg[RFS_ERRMSG_SZ];
    int failed;          /* First write failure; writes refused after it. */
    /* Free-space checks (rocks.c, check_space): bytes that may still be
     * written before the next statvfs, and until when. Any thread. */
    _Atomic uint64_t space_allowance;
    _Atomic uint64_t space_until_ns;
    rfs_index_t applied;  /* Writer thread only. */
    uint8_t chain[STORE_CHAIN_BYTES]; /* chain(applied), if chain_known. */
    bool chain_known;                 /* Writer thread only, as applied. */
    rfs_index_t log_last; /* Last stored log index; writer thread only. */
    store_keep_fn keep;   /* Asked at apply before a file's last name goes. */
    void *keep_arg;
    pthread_mutex_t orphan_lock; /* Serialises changes to CF_ORPHANS. */
};

struct store_view {
    const rocksdb_snapshot_t *snap;
    rocksdb_readoptions_t *ro;
};

/* rocks.c: errors, checked writes, a view's read options. */
/* The code for RocksDB error message err: -ENOSPC, RFS_ECORRUPT, -EACCES,
 * -EINVAL, else -EIO. */
int store__map_rocks(const char *err);
/* Record a RocksDB error (err is freed here) and map it to a code. */
int store__rocks_err(struct store *s, char *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Record an error message. Returns code. */
int store__set_err(struct store *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Write a batch; on failure the store enters the failed state. */
int store__write(struct store *s, rocksdb_writebatch_t *b, bool sync,
                 const char *what);
const rocksdb_readoptions_t *store__ro(const struct store *s,
                                       const struct store_view *v);

/* An iterator bounded above. Without a bound, a Next past the range's last
 * live key steps over every deleted key that follows it until a live one
 * turns up: after 20,000 creates on the leader, a follower's every apply
 * (its session records sit just before the leader's, all deleted) spent 4
 * ms walking them (store/sessions.c). With one, RocksDB stops at the bound.
 * Open seeks to lo; hi is the first key past the range (hilen 0: none).
 * The struct holds the bound RocksDB points at: do not copy or move it
 * while open. v: the view to read (NULL: the latest state). */
struct store_iter {
    rocksdb_iterator_t *it;
    rocksdb_readoptions_t *ro;
    uint8_t hi[32];
};
void store__iter_open(struct store *s, const struct store_view *v, int cf,
                      const void *lo, size_t lolen, const void *hi,
                      size_t hilen, struct store_iter *i);
/* The first key after every key that starts with p[0..n): into out (n
 * bytes at most); its length, or 0 when there is none (all 0xff). */
size_t store__prefix_end(const void *p, size_t n, uint8_t *out);
/* Close i: 0, or the iterator's error recorded (store__rocks_err) with
 * what, a message naming what was read. */
int store__iter_close(struct store *s, struct store_iter *i, const char *what);

/* Keys are big-endian (they sort); values little-endian (common/endian.h). */

#define INODE_VALUE_SIZE 73
/* Device inodes (STORE_CHR, STORE_BLK) add their number, LE u64. */
#define INODE_RDEV_SIZE 8

/* Empty CF_ORPHANS (at open). 0, -EIO, -ENOSPC. */
int store__orphans_clear(struct store *s);
/* The chain's key in CF_SESSIONS, out of the way of its 'S' and 'B'
 * prefixes. */
#define STORE__CHAIN_KEY "chain"
/* Set s->chain and s->chain_known from the state (at open, and after a
 * snapshot install): the stored value; zeros at index 0; unknown when a
 * state past 0 has none (chain.c). 0, RFS_ECORRUPT, READ ERRORS. */
int store__chain_load(struct store *s);

/* history.c. Link records follow every directory entry put or deleted at
 * apply (the batch b holds both). */
void store__link_put(struct store *s, rocksdb_writebatch_t *b, uint64_t ino,
                     uint64_t parent, const char *name, size_t len);
void store__link_del(struct store *s, rocksdb_writebatch_t *b, uint64_t ino,
                     uint64_t parent, const char *name, size_t len);
/* Record c, applied at index without error, in b: reads the state before
 * it. 0, -ENOMEM, RFS_ECORRUPT, READ ERRORS. */
/* One more change made by the entry at index (sub from 1: the files a
 * session's end removes), of the name parent/name as it stands before the
 * entry. 0, -ENOMEM, READ ERRORS. */
int store__history_add_more(struct store *s, rocksdb_writebatch_t *b,
                            rfs_index_t index, uint16_t sub, uint8_t op,
                            uint64_t parent, const char *name, size_t len);
int store__history_add(struct store *s, rocksdb_writebatch_t *b,
                       rfs_index_t index, const struct store_cmd *c);
/* Lock records (store/locks.c, as it writes ino's table back): compare
 * ino's holders before the entry with now (n entries, waiters among
 * them) and record grants and whole releases as t's next sub-records; a
 * release is by t->locks_by_session or by its owner. 0, -ENOMEM, READ
 * ERRORS. */
struct tx;
int store__history_locks(struct tx *t, uint64_t ino,
                         const struct store_lock *now, size_t n);
/* As entry index applies: drop the record that falls out of the bound. */
void store__history_prune(struct store *s, rocksdb_writebatch_t *b,
                          rfs_index_t index);
/* Snapshot install (b replaces the state by one at index): empty links and
 * history; the history starts after index. Links of the image's entries
 * are added by the caller with store__link_put. */
void store__history_reset(struct store *s, rocksdb_writebatch_t *b,
                          rfs_index_t index);
/* At open: build the links of a store that has none (made by an older
 * build); its history starts at its applied index. 0, READ ERRORS, WRITE
 * ERRORS. */
int store__links_init(struct store *s);

struct tx {
    struct store *s;
    rocksdb_writebatch_t *b;
    rfs_index_t index;
    int64_t now;
    bool orphan; /* A change to a node-local orphan (CF_ORPHANS). */
    bool session_opened; /* This entry opened its client's new session. */
    uint16_t history_sub; /* Changes recorded beyond the entry's own. */
    int err;     /* A read failed where a helper cannot return it (the
                  * links of store__dentry_put, store__dentry_del): the
                  * entry fails. */
    uint32_t granted; /* Waiters this entry granted (store/locks.c). */
    bool locks_by_session; /* Locks dropped now end by a session's end
                            * (their history records say so). */
};

/* store/locks.c: STORE_OP_LOCK and STORE_OP_LOCK_CANCEL (a positive errno
 * or 0, or a negative store error). */
int locks_apply(struct tx *t, const struct store_cmd *c);
/* Release every lock of session (client, boot) and drop its waiters,
 * granting the next waiters. 0 or a negative store error. */
int locks_drop_session(struct tx *t, rfs_nodeid_t client, uint64_t boot);
/* c's client answered its requests [from, to) (c->first_outstanding moved):
 * forget the flock unlock records they tracked, as the session forgets
 * their results (store/locks.c, 'V'). r: c's result. 0 or a read error. */
int locks_forget(struct tx *t, const struct store_cmd *c,
                 const struct store_result *r, uint64_t from, uint64_t to);

/*
 * The state machine's files share what follows: records.c the records,
 * ops.c, xattr.c and acl.c the operations, sessions.c the sessions,
 * reads.c the reads, orphans.c this node's orphans, state.c apply. Writes
 * go into the entry's batch (t->b) and read the state as it was before
 * the entry (t->s->ro); a positive result is the operation's errno, a
 * negative one the store's failure (READ ERRORS: a RocksDB read error,
 * RFS_ECORRUPT for a damaged record).
 */

/* records.c: encodings. */
void store__attr_encode(const struct store_attr *a, uint8_t *out);
int store__attr_decode(uint64_t ino, const char *v, size_t len,
                       struct store_attr *a);
/* CF_CHUNKS, or CF_ORPHANS for a change to an orphan (same keys). */
int store__chunks_cf(const struct tx *t);
/* k (16 bytes) = BE ino, BE chunk number. */
void store__chunk_key(uint8_t *k, uint64_t ino, uint64_t chunk);

/* records.c: reads, with the read options given (any thread). */
/* Key key of family cf into *v (NULL if absent; the caller frees it with
 * rocksdb_free). 0 or the read's error, recorded as `what`. */
int store__get(struct store *s, const rocksdb_readoptions_t *ro, int cf,
               const void *key, size_t klen, char **v, size_t *vlen,
               const char *what);
/* Inode ino into *a; with raw, the whole record too (the caller frees it
 * with rocksdb_free). 0, -ENOENT, READ ERRORS. */
int store__inode_get(struct store *s, const rocksdb_readoptions_t *ro,
                     uint64_t ino, struct store_attr *a, char **raw,
                     size_t *rawlen);
/* The entry name in directory parent. 0, -ENOENT, -ENAMETOOLONG, READ
 * ERRORS. */
int store__dentry_get(struct store *s, const rocksdb_readoptions_t *ro,
                      uint64_t parent, const char *name, size_t len,
                      uint64_t *ino, uint8_t *type);
/* *empty: directory ino has no entry. 0 or READ ERRORS. */
int store__dir_is_empty(struct store *s, const struct store_view *v,
                        uint64_t ino, bool *empty);
/* Call fn for each extended attribute of ino (key = ino, then the name),
 * in name order, as ro sees them. 0 or the iterator's error. */
typedef void (*xattr_fn)(void *arg, const char *key, size_t klen,
                         const char *val, size_t vlen);
int store__xattr_walk(struct store *s, const struct store_view *v,
                      uint64_t ino, xattr_fn fn, void *arg);

/* records.c: writes into the entry's batch. */
/* Put a's record; target (tlen bytes) is a symlink's target. */
void store__inode_put(struct tx *t, const struct store_attr *a,
                      const void *target, size_t tlen);
/* Rewrite a's attributes, keeping a symlink's target. 0 or READ ERRORS. */
int store__inode_update(struct tx *t, const struct store_attr *a);
/* Put or delete a directory entry and its link (history.c); a failed
 * read of the entry it replaces is left in t->err. */
void store__dentry_put(struct tx *t, uint64_t parent, const char *name,
                       size_t len, uint64_t ino, uint8_t type);
void store__dentry_del(struct tx *t, uint64_t parent, const char *name,
                       size_t len);
/* Drop file ino's chunks from chunk number from on; *dropped (may be
 * NULL) gets the bytes they held. 0 or READ ERRORS. */
int store__chunks_drop(struct tx *t, uint64_t ino, uint64_t from,
                       uint64_t *dropped);
/* Drop one name's hold on ino (with its last name: the inode, its
 * extended attributes, a file's chunks, or its orphan copy kept). 0 or
 * READ ERRORS. */
int store__inode_drop(struct tx *t, uint64_t ino);

/* ops.c: the operations apply_cmd runs (state.c). Each returns 0, a
 * positive errno, or a negative store error; *ino (*removed, *out) gets
 * the inode the operation made or changed. */
int store__op_create(struct tx *t, const struct store_cmd *c, uint64_t *ino);
int store__op_put(struct tx *t, const struct store_cmd *c, uint64_t *ino);
int store__op_write(struct tx *t, const struct store_cmd *c, uint64_t *ino);
int store__op_setattr(struct tx *t, const struct store_cmd *c, uint64_t *ino);
/* mkdir and symlink (type STORE_DIR or STORE_SYMLINK), and mknod's. */
int store__op_mknode(struct tx *t, const struct store_cmd *c, uint8_t type,
                     uint64_t *ino);
int store__op_mknod(struct tx *t, const struct store_cmd *c, uint64_t *ino);
/* unlink, or rmdir with dir_op. */
int store__op_remove(struct tx *t, const struct store_cmd *c, bool dir_op,
                     uint64_t *removed);
int store__op_rename(struct tx *t, const struct store_cmd *c, uint64_t *out);
int store__op_link(struct tx *t, const struct store_cmd *c, uint64_t *ino);
/* ops.c: what orphans.c and xattr.c decide the same way. */
/* The inode ino an open handle names, into *a: ESTALE once unlinked. */
int store__handle_get(struct tx *t, uint64_t ino, struct store_attr *a);
/* setuid and setgid that a write or truncate without CAP_FSETID clears. */
void store__write_kill_priv(const struct store_cmd *c, bool created,
                            struct store_attr *a);
/* What a SETATTR implies beyond the fields it sets. */
void store__setattr_rules(const struct tx *t, const struct store_cmd *c,
                          struct store_attr *a);
/* Write data at off into file a, updating a. 0, EFBIG, READ ERRORS. */
int store__write_data(struct tx *t, struct store_attr *a, uint64_t off,
                      const uint8_t *data, size_t len);
/* Set file a's size, dropping or cutting the chunks past it. 0, EFBIG,
 * READ ERRORS. */
int store__set_size(struct tx *t, struct store_attr *a, uint64_t size);

/* xattr.c: STORE_OP_SETXATTR and STORE_OP_REMOVEXATTR, as the ops above. */
int store__op_setxattr(struct tx *t, const struct store_cmd *c,
                       uint64_t *ino);
int store__op_removexattr(struct tx *t, const struct store_cmd *c,
                          uint64_t *ino);

/* acl.c: the names of the attributes with rules of their own. */
extern const char store__caps_name[sizeof("security.capability")];
extern const char store__acl_access_name[sizeof(STORE_ACL_ACCESS)];
extern const char store__acl_default_name[sizeof(STORE_ACL_DEFAULT)];
/* Drop ino's file capabilities, if any. 0 or READ ERRORS. */
int store__caps_kill(struct tx *t, uint64_t ino);
/* *perm: the mode's permission bits ACL p (checked) mirrors; true if the
 * ACL says no more than those bits (it need not be stored). */
bool store__acl_mode(const uint8_t *p, size_t len, uint32_t *perm);
/* New inode a in directory dir takes dir's default ACL, or c's umask.
 * 0 or READ ERRORS. */
int store__acl_inherit(struct tx *t, const struct store_cmd *c,
                       const struct store_attr *dir, struct store_attr *a);
/* A chmod of ino to mode carries the bits into its access ACL. 0 or READ
 * ERRORS. */
int store__acl_follow_mode(struct tx *t, uint64_t ino, uint32_t mode);

/* sessions.c: what apply (state.c) asks of a command's session. */
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
/* Look c up in its client's session: *st, and *r if a duplicate; writes
 * nothing. 0 or READ ERRORS. */
int store__session_check(struct tx *t, const struct store_cmd *c,
                         struct store_result *r, enum session_state *st,
                         struct session_head *h);
/* *fenced: c's node session has ended (c must change nothing). 0 or READ
 * ERRORS. */
int store__session_fenced(struct tx *t, const struct store_cmd *c,
                          bool *fenced);
/* Record c's result r in its session (h from store__session_check). 0 or
 * READ ERRORS. */
int store__session_record(struct tx *t, const struct store_cmd *c,
                          const struct session_head *h,
                          const struct store_result *r);
/* STORE_OP_SESSION_OPEN and STORE_OP_SESSION_END, as the ops above. */
int store__op_session_open(struct tx *t, const struct store_cmd *c);
int store__op_session_end(struct tx *t, const struct store_cmd *c);
/* CREATE c made file ino: if its directory is marked ephemeral, tie the
 * file to c's node session (it goes when the session ends). 0 or READ
 * ERRORS. */
int store__ephemeral_note(struct tx *t, const struct store_cmd *c,
                          uint64_t ino);

/* reads.c: len bytes at off of file ino (size bytes long) from family cf
 * (CF_CHUNKS or CF_ORPHANS) into buf; holes read as zeros. 0 or READ
 * ERRORS. */
int store__read_chunks(struct store *s, const struct store_view *v,
                       int cf, uint64_t ino, uint64_t size, uint64_t off,
                       size_t len, void *buf, size_t *got);

/* orphans.c: copy file a's record and chunks into this node's orphans, in
 * the entry's batch. 0 or READ ERRORS. */
int store__orphan_keep(struct tx *t, const struct store_attr *a);

#endif /* RAFTFS_STORE_STORE_I_H */
