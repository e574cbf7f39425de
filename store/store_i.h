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
    /* Free-space checks (store.c, check_space): bytes that may still be
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
                  * links of dentry_put, dentry_del): the entry fails. */
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

void store__attr_encode(const struct store_attr *a, uint8_t *out);
int store__attr_decode(uint64_t ino, const char *v, size_t len,
                       struct store_attr *a);

#endif /* RAFTFS_STORE_STORE_I_H */
