/*
 * The store's database and the Raft log half: open/close, log records,
 * hard state, snapshot metadata. Errors and checked writes are rocks.c's.
 *
 * Every log record is stored as [crc32c][term][type][data], the checksum
 * covering the record's index too, so a record read back from the wrong key
 * or with a flipped bit is reported with its index and never used. Log
 * writes are synced WriteBatches: the hard state and a group of entries go to
 * disk in one fsync, and a batch either lands whole or not at all.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "../common/heap.h"
#include "store_i.h"

static const char *cf_names[CF_COUNT] = {
    "default", "log", "meta", "inodes", "dentries", "chunks", "sessions",
    "orphans", "xattrs", "links", "history", "locks",
};

#define LOG_HDR 13 /* crc32c u32, term u64, type u8 */

void store_options_default(struct store_options *o)
{
    memset(o, 0, sizeof(*o));
    o->max_file_bytes = 64ull << 20;
    o->sync = true;
    o->min_free_bytes = 128ull << 20;
    o->history_entries = 100000;
}

/*
 * The record format of this build: 2 since inode records carry their
 * stored bytes and a device number. A folder written in another format is
 * refused with a clear message, never misread (there is no conversion yet:
 * raftfs is not released, and old folders are test data).
 */
static int check_format(struct store *s, char *errmsg)
{
    char *err = NULL;
    size_t len = 0;
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[CF_META], "format", 6, &len,
                             &err);
    if (err != NULL) {
        int code = store__rocks_err(s, err, "reading the format");
        snprintf(errmsg, RFS_ERRMSG_SZ, "%s", s->errmsg);
        return code;
    }
    bool found = v != NULL;
    uint32_t fmt = found && len == 4 ? rfs_get_le32((uint8_t *)v) : 0;
    rocksdb_free(v);
    struct store_attr root;
    bool fresh = !found && store__inode_get(s, s->ro, STORE_ROOT_INO, &root,
                                            NULL, NULL) == -ENOENT;
    if (fresh || fmt == STORE_FORMAT) {
        return 0;
    }
    snprintf(errmsg, RFS_ERRMSG_SZ,
             "%.120s holds records of format %u, and this raftfs reads "
             "format %u: start a new data folder (or use the raftfs that "
             "wrote it)",
             s->dir, fmt ? fmt : 1, STORE_FORMAT);
    return RFS_ECORRUPT;
}

int store_open(const char *dir, const struct store_options *o,
               struct store **out, char *errmsg)
{
    struct store *s = rfs_calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "out of memory opening %s", dir);
        return -ENOMEM;
    }
    pthread_mutex_init(&s->err_lock, NULL);
    pthread_mutex_init(&s->orphan_lock, NULL);
    if (o != NULL) {
        s->o = *o;
    } else {
        store_options_default(&s->o);
    }
    snprintf(s->dir, sizeof(s->dir), "%s", dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        snprintf(errmsg, RFS_ERRMSG_SZ, "cannot create %s: %s", dir,
                 strerror(e));
        pthread_mutex_destroy(&s->err_lock);
        pthread_mutex_destroy(&s->orphan_lock);
        rfs_free(s);
        return -e;
    }
    s->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->opts, 1);
    rocksdb_options_set_create_missing_column_families(s->opts, 1);
    /* Verify checksums aggressively: a damaged database must be refused,
     * not served. */
    rocksdb_options_set_paranoid_checks(s->opts, 1);
    rocksdb_options_set_info_log_level(s->opts, 2 /* WARN */);
    /* After a crash, tolerate only an incomplete last WAL record (a write
     * that was never acknowledged); any other damage fails the open instead
     * of silently dropping acknowledged log entries, as the default
     * point-in-time recovery would. */
    rocksdb_options_set_wal_recovery_mode(s->opts, 0);
    rocksdb_options_set_keep_log_file_num(s->opts, 3);
    rocksdb_options_set_max_open_files(s->opts, 256);
    rocksdb_options_set_write_buffer_size(s->opts, 16u << 20);
    const rocksdb_options_t *cfo[CF_COUNT];
    for (int i = 0; i < CF_COUNT; i++) {
        cfo[i] = s->opts;
    }
    char *err = NULL;
    s->db = rocksdb_open_column_families(s->opts, dir, CF_COUNT, cf_names,
                                         cfo, s->cf, &err);
    if (err != NULL) {
        int code = store__map_rocks(err);
        snprintf(errmsg, RFS_ERRMSG_SZ, "cannot open store %s: %s", dir, err);
        rocksdb_free(err);
        rocksdb_options_destroy(s->opts);
        pthread_mutex_destroy(&s->err_lock);
        pthread_mutex_destroy(&s->orphan_lock);
        rfs_free(s);
        return code;
    }
    s->wo_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wo_sync, 1);
    s->wo_async = rocksdb_writeoptions_create();
    s->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(s->ro, 1);

    /* The applied index, and the root directory of a new filesystem. */
    size_t len = 0;
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[CF_META], "applied", 7,
                             &len, &err);
    if (err != NULL) {
        int code = store__rocks_err(s, err, "reading the applied index");
        snprintf(errmsg, RFS_ERRMSG_SZ, "%s", s->errmsg);
        store_close(s);
        return code;
    }
    if (v != NULL && len == 8) {
        s->applied = rfs_get_le64((const uint8_t *)v);
    }
    rocksdb_free(v);
    int crv = store__chain_load(s);
    if (crv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "%s", s->errmsg);
        store_close(s);
        return crv;
    }
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(s->db, s->ro, s->cf[CF_LOG]);
    rocksdb_iter_seek_to_last(it);
    if (rocksdb_iter_valid(it)) {
        size_t klen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen == 8) {
            s->log_last = rfs_get_be64((const uint8_t *)k);
        }
    }
    rocksdb_iter_destroy(it);
    int frv = check_format(s, errmsg);
    if (frv != 0) {
        store_close(s);
        return frv;
    }
    struct store_attr root;
    if (store__inode_get(s, s->ro, STORE_ROOT_INO, &root, NULL, NULL) ==
        -ENOENT) {
        memset(&root, 0, sizeof(root));
        root.ino = STORE_ROOT_INO;
        root.type = STORE_DIR;
        root.mode = 0755;
        root.nlink = 2;
        root.parent = STORE_ROOT_INO;
        uint8_t key[8], val[INODE_VALUE_SIZE];
        rfs_put_be64(key, STORE_ROOT_INO);
        store__attr_encode(&root, val);
        rocksdb_writebatch_t *b = rocksdb_writebatch_create();
        rocksdb_writebatch_put_cf(b, s->cf[CF_INODES], (char *)key, 8,
                                  (char *)val, sizeof(val));
        uint8_t fmt[4];
        rfs_put_le32(fmt, STORE_FORMAT);
        rocksdb_writebatch_put_cf(b, s->cf[CF_META], "format", 6,
                                  (char *)fmt, 4);
        int rv = store__write(s, b, true, "creating the root directory");
        rocksdb_writebatch_destroy(b);
        if (rv != 0) {
            snprintf(errmsg, RFS_ERRMSG_SZ, "%s", s->errmsg);
            store_close(s);
            return rv;
        }
    }
    /* Orphans were files open in the previous run: no descriptor names
     * them any more. */
    int orv = store__orphans_clear(s);
    if (orv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "%s", s->errmsg);
        store_close(s);
        return orv;
    }
    int lrv = store__links_init(s);
    if (lrv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "%s", s->errmsg);
        store_close(s);
        return lrv;
    }
    *out = s;
    return 0;
}

void store_close(struct store *s)
{
    if (s == NULL) {
        return;
    }
    if (s->db != NULL) {
        for (int i = 0; i < CF_COUNT; i++) {
            rocksdb_column_family_handle_destroy(s->cf[i]);
        }
        rocksdb_close(s->db);
    }
    if (s->wo_sync) {
        rocksdb_writeoptions_destroy(s->wo_sync);
    }
    if (s->wo_async) {
        rocksdb_writeoptions_destroy(s->wo_async);
    }
    if (s->ro) {
        rocksdb_readoptions_destroy(s->ro);
    }
    rocksdb_options_destroy(s->opts);
    pthread_mutex_destroy(&s->err_lock);
    pthread_mutex_destroy(&s->orphan_lock);
    rfs_free(s);
}

/* ---- Log records ------------------------------------------------------ */

static uint32_t log_crc(rfs_index_t index, const uint8_t *rec, size_t len)
{
    uint8_t k[8];
    rfs_put_be64(k, index);
    uint32_t c = rfs_crc32c(0, k, 8);
    return rfs_crc32c(c, rec + 4, len - 4);
}

static int log_decode(struct store *s, rfs_index_t index, const char *v,
                      size_t len, struct cons_entry *e)
{
    const uint8_t *p = (const uint8_t *)v;
    if (len < LOG_HDR || rfs_get_le32(p) != log_crc(index, p, len)) {
        return store__set_err(s, RFS_ECORRUPT,
                              "log record %llu in %s fails its checksum: "
                              "refusing to use it",
                              (unsigned long long)index, s->dir);
    }
    memset(e, 0, sizeof(*e));
    e->index = index;
    e->term = rfs_get_le64(p + 4);
    e->type = p[12];
    e->data.len = len - LOG_HDR;
    if (e->data.len > 0) {
        e->data.base = rfs_memdup(p + LOG_HDR, e->data.len);
        if (e->data.base == NULL) {
            return -ENOMEM;
        }
    }
    return 0;
}

int store_log_get(struct store *s, rfs_index_t index, struct cons_entry *e)
{
    uint8_t k[8];
    rfs_put_be64(k, index);
    char *err = NULL;
    size_t len;
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[CF_LOG], (char *)k, 8, &len,
                             &err);
    if (err != NULL) {
        return store__rocks_err(s, err, "reading log record %llu",
                                (unsigned long long)index);
    }
    if (v == NULL) {
        return -ENOENT;
    }
    int rv = log_decode(s, index, v, len, e);
    rocksdb_free(v);
    return rv;
}

static void put_entry(struct store *s, rocksdb_writebatch_t *b,
                      const struct cons_entry *e, uint8_t *rec)
{
    uint8_t k[8];
    rfs_put_be64(k, e->index);
    rfs_put_le64(rec + 4, e->term);
    rec[12] = e->type;
    if (e->data.len > 0) {
        memcpy(rec + LOG_HDR, e->data.base, e->data.len);
    }
    size_t len = LOG_HDR + e->data.len;
    rfs_put_le32(rec, log_crc(e->index, rec, len));
    rocksdb_writebatch_put_cf(b, s->cf[CF_LOG], (char *)k, 8, (char *)rec,
                              len);
}

static void put_hs(struct store *s, rocksdb_writebatch_t *b,
                   const struct cons_hard_state *hs)
{
    uint8_t v[28];
    rfs_put_le64(v + 4, hs->term);
    rfs_put_le64(v + 12, hs->vote);
    rfs_put_le64(v + 20, hs->commit);
    rfs_put_le32(v, rfs_crc32c(0, v + 4, 24));
    rocksdb_writebatch_put_cf(b, s->cf[CF_META], "hs", 2, (char *)v,
                              sizeof(v));
}

int store_log_write(struct store *s, const struct cons_hard_state *hs,
                    const struct cons_entry *entries, unsigned n)
{
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    if (hs != NULL) {
        put_hs(s, b, hs);
    }
    int rv = 0;
    if (n > 0) {
        /* The new entries replace whatever suffix was stored from the first
         * one on: a conflicting tail left behind would be read at restart.
         * Only a real truncation deletes (point deletes: RocksDB 7.8 pays
         * for every range tombstone in the memtable on each read). */
        rfs_index_t new_last = entries[n - 1].index;
        for (rfs_index_t i = new_last + 1; i <= s->log_last; i++) {
            uint8_t k[8];
            rfs_put_be64(k, i);
            rocksdb_writebatch_delete_cf(b, s->cf[CF_LOG], (char *)k, 8);
        }
        size_t max = 0;
        for (unsigned i = 0; i < n; i++) {
            if (entries[i].data.len > max) {
                max = entries[i].data.len;
            }
        }
        uint8_t *rec = rfs_malloc(LOG_HDR + max);
        if (rec == NULL) {
            rocksdb_writebatch_destroy(b);
            return -ENOMEM;
        }
        for (unsigned i = 0; i < n; i++) {
            put_entry(s, b, &entries[i], rec);
        }
        rfs_free(rec);
    }
    char what[96];
    snprintf(what, sizeof(what), "writing log entries %llu..%llu",
             n ? (unsigned long long)entries[0].index : 0ull,
             n ? (unsigned long long)entries[n - 1].index : 0ull);
    rv = store__write(s, b, true, what);
    rocksdb_writebatch_destroy(b);
    if (rv == 0 && n > 0) {
        s->log_last = entries[n - 1].index;
    }
    return rv;
}

int store_log_compact(struct store *s, rfs_index_t upto)
{
    uint8_t from[8], to[8];
    rfs_put_be64(from, 0);
    rfs_put_be64(to, upto + 1);
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    rocksdb_writebatch_delete_range_cf(b, s->cf[CF_LOG], (char *)from, 8,
                                       (char *)to, 8);
    int rv = store__write(s, b, false, "compacting the log");
    rocksdb_writebatch_destroy(b);
    return rv;
}

/* ---- Metadata --------------------------------------------------------- */

/* The "snap" record: u32 CRC32C of the rest, u64 index, term, size, then
 * the configuration's bytes as the caller encoded them. */
static int snap_encode(const struct store_snap_meta *m, struct rfs_buf *out)
{
    size_t len = 4 + 24 + m->conf.len;
    uint8_t *p = rfs_malloc(len);
    if (p == NULL) {
        return -ENOMEM;
    }
    rfs_put_le64(p + 4, m->index);
    rfs_put_le64(p + 12, m->term);
    rfs_put_le64(p + 20, m->size);
    if (m->conf.len > 0) {
        memcpy(p + 28, m->conf.base, m->conf.len);
    }
    rfs_put_le32(p, rfs_crc32c(0, p + 4, len - 4));
    out->base = p;
    out->len = len;
    return 0;
}

void store__put_snap_meta(struct store *s, rocksdb_writebatch_t *b,
                          const struct rfs_buf *enc);
void store__put_snap_meta(struct store *s, rocksdb_writebatch_t *b,
                          const struct rfs_buf *enc)
{
    rocksdb_writebatch_put_cf(b, s->cf[CF_META], "snap", 4, enc->base,
                              enc->len);
}

int store_snapshot_meta_put(struct store *s, const struct store_snap_meta *m)
{
    struct rfs_buf enc;
    int rv = snap_encode(m, &enc);
    if (rv != 0) {
        return rv;
    }
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    store__put_snap_meta(s, b, &enc);
    rv = store__write(s, b, true, "recording snapshot metadata");
    rocksdb_writebatch_destroy(b);
    rfs_free(enc.base);
    return rv;
}

static int get_meta(struct store *s, const char *key, char **v, size_t *len)
{
    char *err = NULL;
    *v = rocksdb_get_cf(s->db, s->ro, s->cf[CF_META], key, strlen(key), len,
                        &err);
    if (err != NULL) {
        return store__rocks_err(s, err, "reading %s", key);
    }
    return 0;
}

/* The largest boot id any client's session records ('B' records). */
static int sessions_max_boot(struct store *s, uint64_t *out)
{
    *out = 0;
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(s->db, s->ro, s->cf[CF_SESSIONS]);
    for (rocksdb_iter_seek(it, "B", 1); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen == 0 || k[0] != 'B') {
            break;
        }
        const char *v = rocksdb_iter_value(it, &vlen);
        if (klen == 9 && vlen == 16) {
            uint64_t b = rfs_get_le64((const uint8_t *)v);
            if (b > *out) {
                *out = b;
            }
        }
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err != NULL) {
        return store__rocks_err(s, err, "reading sessions");
    }
    return 0;
}

int store_boot_next(struct store *s, uint64_t now_ns, uint64_t *out)
{
    char *v;
    size_t len;
    int rv = get_meta(s, "boot", &v, &len);
    if (rv != 0) {
        return rv;
    }
    uint64_t next;
    if (v != NULL) {
        const uint8_t *p = (const uint8_t *)v;
        bool ok = len == 12 && rfs_get_le32(p) == rfs_crc32c(0, p + 4, 8);
        next = ok ? rfs_get_le64(p + 4) + 1 : 0;
        rocksdb_free(v);
        if (!ok) {
            return store__set_err(s, RFS_ECORRUPT,
                                  "the boot counter in %s is damaged",
                                  s->dir);
        }
    } else {
        /* First run with the counter: above every id of the old scheme. */
        uint64_t seen;
        rv = sessions_max_boot(s, &seen);
        if (rv != 0) {
            return rv;
        }
        next = (seen > now_ns ? seen : now_ns) + 1;
    }
    uint8_t rec[12];
    rfs_put_le64(rec + 4, next);
    rfs_put_le32(rec, rfs_crc32c(0, rec + 4, 8));
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    rocksdb_writebatch_put_cf(b, s->cf[CF_META], "boot", 4, (char *)rec,
                              sizeof(rec));
    rv = store__write(s, b, true, "recording the boot counter");
    rocksdb_writebatch_destroy(b);
    if (rv == 0) {
        *out = next;
    }
    return rv;
}

/* A u64 in meta under key, as a 12-byte record (crc32c, value), synced. */
static int put_meta_u64(struct store *s, const char *key, uint64_t v,
                        const char *what)
{
    uint8_t rec[12];
    rfs_put_le64(rec + 4, v);
    rfs_put_le32(rec, rfs_crc32c(0, rec + 4, 8));
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    rocksdb_writebatch_put_cf(b, s->cf[CF_META], key, strlen(key),
                              (char *)rec, sizeof(rec));
    int rv = store__write(s, b, true, what);
    rocksdb_writebatch_destroy(b);
    return rv;
}

/* 0 with *found and *v, or RFS_ECORRUPT naming what is damaged. */
static int get_meta_u64(struct store *s, const char *key, const char *what,
                        bool *found, uint64_t *v)
{
    char *raw;
    size_t len;
    int rv = get_meta(s, key, &raw, &len);
    if (rv != 0) {
        return rv;
    }
    *found = raw != NULL;
    *v = 0;
    if (raw == NULL) {
        return 0;
    }
    const uint8_t *p = (const uint8_t *)raw;
    bool ok = len == 12 && rfs_get_le32(p) == rfs_crc32c(0, p + 4, 8);
    if (ok) {
        *v = rfs_get_le64(p + 4);
    }
    rocksdb_free(raw);
    if (!ok) {
        return store__set_err(s, RFS_ECORRUPT, "%s in %s is damaged", what,
                              s->dir);
    }
    return 0;
}

int store_data_id(struct store *s, uint64_t *out)
{
    bool found;
    int rv = get_meta_u64(s, "data_id", "the data folder's id", &found, out);
    if (rv != 0 || (found && *out != 0)) {
        return rv;
    }
    /* A folder made before ids existed gets one now: peers that knew it
     * pin it from the next hello on. */
    uint64_t id = 0;
    while (id == 0) {
        if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id)) {
            return store__set_err(s, -EIO, "no random bytes for the id of "
                                           "%s: %s", s->dir, strerror(errno));
        }
    }
    rv = put_meta_u64(s, "data_id", id, "recording the data folder's id");
    if (rv == 0) {
        *out = id;
    }
    return rv;
}

int store_peer_pin(struct store *s, rfs_nodeid_t peer, uint64_t data_id,
                   uint64_t *pinned)
{
    char key[40];
    snprintf(key, sizeof(key), "pin/%" PRIu64, peer);
    bool found;
    int rv = get_meta_u64(s, key, "a peer's pinned data folder id", &found,
                          pinned);
    if (rv != 0 || found) {
        return rv;
    }
    rv = put_meta_u64(s, key, data_id, "pinning a peer's data folder id");
    if (rv == 0) {
        *pinned = data_id;
    }
    return rv;
}

int store__snap_encode(const struct store_snap_meta *m, struct rfs_buf *out);
int store__snap_encode(const struct store_snap_meta *m, struct rfs_buf *out)
{
    return snap_encode(m, out);
}

void store_loaded_free(struct store_loaded *l)
{
    for (unsigned i = 0; i < l->n_entries; i++) {
        rfs_free(l->entries[i].data.base);
    }
    rfs_free(l->entries);
    rfs_free(l->snap.conf.base);
    memset(l, 0, sizeof(*l));
}

int store_load(struct store *s, struct store_loaded *l)
{
    memset(l, 0, sizeof(*l));
    char *v;
    size_t len;
    int rv = get_meta(s, "hs", &v, &len);
    if (rv != 0) {
        return rv;
    }
    if (v != NULL) {
        const uint8_t *p = (const uint8_t *)v;
        if (len != 28 || rfs_get_le32(p) != rfs_crc32c(0, p + 4, 24)) {
            rocksdb_free(v);
            return store__set_err(s, RFS_ECORRUPT,
                                  "hard state in %s fails its checksum",
                                  s->dir);
        }
        l->hs.term = rfs_get_le64(p + 4);
        l->hs.vote = rfs_get_le64(p + 12);
        l->hs.commit = rfs_get_le64(p + 20);
        rocksdb_free(v);
    }
    rv = get_meta(s, "snap", &v, &len);
    if (rv != 0) {
        return rv;
    }
    if (v != NULL) {
        const uint8_t *p = (const uint8_t *)v;
        if (len < 28 || rfs_get_le32(p) != rfs_crc32c(0, p + 4, len - 4)) {
            rocksdb_free(v);
            return store__set_err(s, RFS_ECORRUPT,
                                  "snapshot metadata in %s is damaged",
                                  s->dir);
        }
        l->snap.index = rfs_get_le64(p + 4);
        l->snap.term = rfs_get_le64(p + 12);
        l->snap.size = rfs_get_le64(p + 20);
        l->snap.conf.len = len - 28;
        /* One byte more: base is non-NULL whenever the record exists, so
         * that the caller can tell an empty configuration (which the core's
         * decoder refuses) from no snapshot at all. */
        l->snap.conf.base = rfs_malloc(len - 28 + 1);
        if (l->snap.conf.base == NULL) {
            rocksdb_free(v);
            return -ENOMEM;
        }
        memcpy(l->snap.conf.base, p + 28, len - 28);
        rocksdb_free(v);
    }
    l->applied = s->applied;

    /* The log after the snapshot, contiguous. */
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(s->db, s->ro, s->cf[CF_LOG]);
    uint8_t k[8];
    rfs_put_be64(k, l->snap.index + 1);
    rocksdb_iter_seek(it, (char *)k, 8);
    size_t cap = 0;
    rfs_index_t expect = l->snap.index + 1;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(it, &klen);
        const char *val = rocksdb_iter_value(it, &vlen);
        if (klen != 8) {
            rv = store__set_err(s, RFS_ECORRUPT, "bad log key in %s", s->dir);
            break;
        }
        rfs_index_t idx = rfs_get_be64((const uint8_t *)key);
        if (idx != expect) {
            rv = store__set_err(s, RFS_ECORRUPT,
                                "log in %s has a gap: %llu follows %llu",
                                s->dir, (unsigned long long)idx,
                                (unsigned long long)(expect - 1));
            break;
        }
        if (l->n_entries == cap) {
            cap = cap ? cap * 2 : 256;
            struct cons_entry *ne =
                rfs_realloc(l->entries, cap * sizeof(*ne));
            if (ne == NULL) {
                rv = -ENOMEM;
                break;
            }
            l->entries = ne;
        }
        rv = log_decode(s, idx, val, vlen, &l->entries[l->n_entries]);
        if (rv != 0) {
            break;
        }
        l->n_entries++;
        expect++;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    if (err != NULL && rv == 0) {
        rv = store__rocks_err(s, err, "reading the log");
    } else if (err != NULL) {
        rocksdb_free(err);
    }
    rocksdb_iter_destroy(it);
    if (rv != 0) {
        store_loaded_free(l);
    }
    return rv;
}

/* ---- The chain (store.h) -------------------------------------------------- */

int store__chain_load(struct store *s)
{
    char *err = NULL;
    size_t len = 0;
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[CF_SESSIONS],
                             STORE__CHAIN_KEY, sizeof(STORE__CHAIN_KEY) - 1,
                             &len, &err);
    if (err != NULL) {
        return store__rocks_err(s, err, "reading the chain hash");
    }
    int rv = 0;
    memset(s->chain, 0, sizeof(s->chain));
    if (v != NULL && len == STORE_CHAIN_BYTES) {
        memcpy(s->chain, v, len);
        s->chain_known = true;
    } else if (v != NULL) {
        rv = store__set_err(s, RFS_ECORRUPT,
                            "the chain hash in %s is %zu bytes, not %d",
                            s->dir, len, STORE_CHAIN_BYTES);
    } else {
        s->chain_known = s->applied == 0;
    }
    rocksdb_free(v);
    return rv;
}

int store_chain(struct store *s, rfs_index_t *index,
                uint8_t hash[STORE_CHAIN_BYTES])
{
    if (!s->chain_known) {
        return -ENOENT;
    }
    *index = s->applied;
    memcpy(hash, s->chain, STORE_CHAIN_BYTES);
    return 0;
}
