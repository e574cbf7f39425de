/*
 * The store's edge with RocksDB, which every other file of the store
 * writes and fails through: error messages and the mapping of RocksDB's
 * errors to codes, the checked write (free space first, then the failed
 * state that refuses every write after one went wrong), and the read
 * options of a view. Apart from store.c (the database and the log) so
 * that the state machine's files, which need only these, do not depend
 * on the file that opens the store, and store.c in turn reads the state
 * only through records.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "../common/assert.h"
#include "store_i.h"

int store__set_err(struct store *s, int code, const char *fmt, ...)
{
    pthread_mutex_lock(&s->err_lock);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&s->err_lock);
    return code;
}

int store__map_rocks(const char *err)
{
    if (strstr(err, "No space left") != NULL) {
        return -ENOSPC;
    }
    if (strncmp(err, "Corruption", 10) == 0) {
        return RFS_ECORRUPT;
    }
    if (strstr(err, "Permission denied") != NULL) {
        return -EACCES;
    }
    if (strncmp(err, "Invalid argument", 16) == 0) {
        return -EINVAL;
    }
    return -EIO;
}

int store__rocks_err(struct store *s, char *err, const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    int code = store__map_rocks(err);
    store__set_err(s, code, "%s in %s: %s", what, s->dir, err);
    rocksdb_free(err);
    return code;
}

/* Refuse a write when the disk is nearly full. RocksDB must never meet
 * ENOSPC itself: Debian's build asserts (aborts) on the write after a failed
 * WAL append, and a half-failed write leaves its state unknown. Refusing
 * first is clean: nothing was written, and writes resume once space is
 * freed. */
/*
 * Not a statvfs per write (two per applied entry): a check that finds
 * headroom above the reserve lets the next headroom/4 bytes of batches (at
 * most 16 MiB) through, for at most 100 ms, before looking again. RocksDB
 * writes a batch about twice (WAL, then a flushed table), so a quarter of
 * the headroom keeps clear of the reserve; the time bound covers what
 * compactions and other programs take meanwhile. Near the reserve the
 * allowance shrinks to nothing and every write looks.
 */
#define SPACE_RECHECK_NS (100ull * 1000 * 1000)
#define SPACE_ALLOWANCE_MAX (16ull << 20)

static uint64_t coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int check_space(struct store *s, rocksdb_writebatch_t *b,
                       const char *what)
{
    if (s->o.min_free_bytes == 0) {
        return 0;
    }
    size_t bytes = 0;
    (void)rocksdb_writebatch_data(b, &bytes);
    uint64_t now = coarse_ns();
    uint64_t left = atomic_load(&s->space_allowance);
    if (now < atomic_load(&s->space_until_ns) && left >= bytes &&
        atomic_compare_exchange_strong(&s->space_allowance, &left,
                                       left - bytes)) {
        return 0;
    }
    struct statvfs v;
    if (statvfs(s->dir, &v) != 0) {
        return 0;
    }
    uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize;
    if (avail >= s->o.min_free_bytes) {
        uint64_t allow = (avail - s->o.min_free_bytes) / 4;
        atomic_store(&s->space_allowance,
                     allow < SPACE_ALLOWANCE_MAX ? allow : SPACE_ALLOWANCE_MAX);
        atomic_store(&s->space_until_ns, now + SPACE_RECHECK_NS);
        return 0;
    }
    atomic_store(&s->space_allowance, 0);
    return store__set_err(s, -ENOSPC,
                          "%s refused: disk nearly full, %llu bytes free in "
                          "%s, below the %llu byte reserve",
                          what, (unsigned long long)avail, s->dir,
                          (unsigned long long)s->o.min_free_bytes);
}

int store__write(struct store *s, rocksdb_writebatch_t *b, bool sync,
                 const char *what)
{
    if (s->failed != 0) {
        return s->failed;
    }
    int rv = check_space(s, b, what);
    if (rv != 0) {
        return rv;
    }
    char *err = NULL;
    rocksdb_write(s->db, sync && s->o.sync ? s->wo_sync : s->wo_async, b,
                  &err);
    if (err != NULL) {
        /* After a failed write nothing more may be acknowledged: RocksDB
         * may hold part of it in memory, and the disk state is unknown. */
        s->failed = store__rocks_err(s, err, "%s", what);
        return s->failed;
    }
    return 0;
}

const rocksdb_readoptions_t *store__ro(const struct store *s,
                                       const struct store_view *v)
{
    return v != NULL ? v->ro : s->ro;
}

void store__iter_open(struct store *s, const struct store_view *v, int cf,
                      const void *lo, size_t lolen, const void *hi,
                      size_t hilen, struct store_iter *i)
{
    RFS_ASSERT(hilen <= sizeof(i->hi));
    i->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(i->ro, 1);
    if (v != NULL) {
        rocksdb_readoptions_set_snapshot(i->ro, v->snap);
    }
    if (hilen > 0) {
        memcpy(i->hi, hi, hilen);
        rocksdb_readoptions_set_iterate_upper_bound(i->ro, (const char *)i->hi,
                                                    hilen);
    }
    i->it = rocksdb_create_iterator_cf(s->db, i->ro, s->cf[cf]);
    rocksdb_iter_seek(i->it, lo, lolen);
}

size_t store__prefix_end(const void *p, size_t n, uint8_t *out)
{
    memcpy(out, p, n);
    while (n > 0 && out[n - 1] == 0xff) {
        n--;
    }
    if (n > 0) {
        out[n - 1]++;
    }
    return n;
}

int store__iter_close(struct store *s, struct store_iter *i, const char *what)
{
    char *err = NULL;
    rocksdb_iter_get_error(i->it, &err);
    rocksdb_iter_destroy(i->it);
    rocksdb_readoptions_destroy(i->ro);
    if (err != NULL) {
        return store__rocks_err(s, err, "%s", what);
    }
    return 0;
}

const char *store_errmsg(const struct store *s)
{
    return s->errmsg;
}

int store_failed(const struct store *s)
{
    return s->failed;
}
