/*
 * Snapshot images: a deterministic dump of the state machine.
 *
 * Format: "RFSSNAP2", applied index (u64), then one record per key of the
 * state column families in key order, [cf u8][key len u32][value len u32]
 * [key][value], then [0xff][record count u64][crc32c of everything before
 * it]. Two nodes at the same applied index hold the same keys and values, so
 * they write the same bytes: a follower can resume a transfer from any
 * leader (docs/design.md). The dump reads through a RocksDB snapshot, so
 * apply goes on meanwhile.
 *
 * Install verifies the whole image before touching anything, then replaces
 * the state, the log and the snapshot metadata in one synced WriteBatch:
 * after a crash either the old state or the new one is there.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/heap.h"
#include "store_i.h"

/* The image's version follows the inode record format (store.c: the
 * "format" key): an image of another format is refused, not misread. */
#define SNAP_MAGIC "RFSSNAP2"

/* Extended attributes came last (a folder of an older build gets the
 * family at open, empty): an image without them installs as it did. */
static const int state_cfs[] = {CF_INODES, CF_DENTRIES, CF_CHUNKS,
                                CF_SESSIONS, CF_XATTRS, CF_LOCKS};

struct out {
    int fd;
    uint8_t *buf;
    size_t n;
    uint32_t crc;
    uint64_t total;
    int err;
    crypto_generichash_state *hash; /* NULL: no sums asked for. */
};

static void out_flush(struct out *o)
{
    /* Every byte of the image passes here once, in order. */
    if (o->hash != NULL && o->n > 0) {
        crypto_generichash_update(o->hash, o->buf, o->n);
    }
    size_t off = 0;
    while (off < o->n && o->err == 0) {
        ssize_t w = write(o->fd, o->buf + off, o->n - off);
        if (w < 0) {
            if (errno != EINTR) {
                o->err = -errno;
            }
            continue;
        }
        off += (size_t)w;
    }
    o->n = 0;
}

static void out_put(struct out *o, const void *p, size_t len)
{
    o->crc = rfs_crc32c(o->crc, p, len);
    o->total += len;
    const uint8_t *b = p;
    while (len > 0) {
        size_t room = (1u << 20) - o->n;
        size_t k = len < room ? len : room;
        memcpy(o->buf + o->n, b, k);
        o->n += k;
        b += k;
        len -= k;
        if (o->n == (1u << 20)) {
            out_flush(o);
        }
    }
}

static int fsync_dir(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", path);
    int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        return -errno;
    }
    int rv = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rv;
}

int store_snapshot_write(struct store *s, const char *path,
                         rfs_index_t *index, uint64_t *size)
{
    return store_snapshot_write_sums(s, path, index, size, NULL);
}

int store_snapshot_write_sums(struct store *s, const char *path,
                              rfs_index_t *index, uint64_t *size,
                              struct store_snap_sums *sums)
{
    _Static_assert(sizeof(sums->chain) == STORE_CHAIN_BYTES, "chain size");
    _Static_assert(sizeof(sums->image) == crypto_generichash_BYTES,
                   "BLAKE2b-256");
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    crypto_generichash_state hs;
    struct out o = {.fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY, 0600)};
    if (sums != NULL) {
        memset(sums, 0, sizeof(*sums));
        crypto_generichash_init(&hs, NULL, 0, sizeof(sums->image));
        o.hash = &hs;
    }
    if (o.fd < 0) {
        int e = errno;
        return store__set_err(s, -e, "cannot create snapshot %s: %s", tmp,
                              strerror(e));
    }
    o.buf = rfs_malloc(1u << 20);
    if (o.buf == NULL) {
        close(o.fd);
        unlink(tmp);
        return -ENOMEM;
    }
    const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(s->db);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(ro, snap);
    rocksdb_readoptions_set_verify_checksums(ro, 1);
    /* A dump reads everything once: keep it out of the block cache. */
    rocksdb_readoptions_set_fill_cache(ro, 0);

    int rv = 0;
    char *err = NULL;
    size_t alen = 0;
    char *av = rocksdb_get_cf(s->db, ro, s->cf[CF_META], "applied", 7, &alen,
                              &err);
    uint64_t applied = 0;
    if (err != NULL) {
        rv = store__rocks_err(s, err, "reading the applied index");
    } else if (av != NULL && alen == 8) {
        applied = rfs_get_le64((uint8_t *)av);
    }
    rocksdb_free(av);
    if (rv == 0 && sums != NULL) {
        /* The chain at the dump's own applied index: applies go on
         * meanwhile, so only the snapshot's view of it is the image's. */
        size_t clen = 0;
        char *cv = rocksdb_get_cf(s->db, ro, s->cf[CF_SESSIONS],
                                  STORE__CHAIN_KEY,
                                  sizeof(STORE__CHAIN_KEY) - 1, &clen, &err);
        if (err != NULL) {
            rv = store__rocks_err(s, err, "reading the chain hash");
        } else if (cv != NULL && clen == STORE_CHAIN_BYTES) {
            memcpy(sums->chain, cv, clen);
            sums->chain_known = true;
        } else if (cv == NULL && applied == 0) {
            sums->chain_known = true; /* chain(0): zeros. */
        }
        rocksdb_free(cv);
    }

    uint8_t hdr[16];
    memcpy(hdr, SNAP_MAGIC, 8);
    rfs_put_le64(hdr + 8, applied);
    out_put(&o, hdr, 16);
    uint64_t count = 0;
    for (size_t i = 0; rv == 0 && i < sizeof(state_cfs) / sizeof(*state_cfs);
         i++) {
        rocksdb_iterator_t *it =
            rocksdb_create_iterator_cf(s->db, ro, s->cf[state_cfs[i]]);
        for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
             rocksdb_iter_next(it)) {
            size_t klen, vlen;
            const char *k = rocksdb_iter_key(it, &klen);
            const char *v = rocksdb_iter_value(it, &vlen);
            uint8_t rh[9];
            rh[0] = (uint8_t)state_cfs[i];
            rfs_put_le32(rh + 1, (uint32_t)klen);
            rfs_put_le32(rh + 5, (uint32_t)vlen);
            out_put(&o, rh, 9);
            out_put(&o, k, klen);
            out_put(&o, v, vlen);
            count++;
        }
        rocksdb_iter_get_error(it, &err);
        rocksdb_iter_destroy(it);
        if (err != NULL) {
            rv = store__rocks_err(s, err, "dumping the state to %s", path);
        }
    }
    uint8_t tr[9];
    tr[0] = 0xff;
    rfs_put_le64(tr + 1, count);
    out_put(&o, tr, 9);
    uint8_t c[4];
    rfs_put_le32(c, o.crc);
    o.total += 4;
    memcpy(o.buf + o.n, c, 4);
    o.n += 4;
    out_flush(&o);
    rocksdb_readoptions_destroy(ro);
    rocksdb_release_snapshot(s->db, snap);
    rfs_free(o.buf);
    if (rv == 0 && o.err != 0) {
        rv = store__set_err(s, o.err, "writing snapshot %s: %s", tmp,
                            strerror(-o.err));
    }
    if (rv == 0 && fsync(o.fd) != 0) {
        int e = errno;
        rv = store__set_err(s, -e, "syncing snapshot %s: %s", tmp,
                            strerror(e));
    }
    close(o.fd);
    /* Rename only a complete, synced image, then make the rename durable:
     * a crash leaves either the old image or the new one (etcd#6368). */
    if (rv == 0 && rename(tmp, path) != 0) {
        int e = errno;
        rv = store__set_err(s, -e, "renaming snapshot %s: %s", tmp,
                            strerror(e));
    }
    if (rv == 0) {
        rv = fsync_dir(path);
        if (rv != 0) {
            store__set_err(s, rv, "syncing the folder of %s", path);
        }
    }
    if (rv != 0) {
        unlink(tmp);
        return rv;
    }
    *index = applied;
    *size = o.total;
    if (sums != NULL) {
        crypto_generichash_final(&hs, sums->image, sizeof(sums->image));
    }
    return 0;
}

static int read_all(const char *path, uint8_t **out, size_t *len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return -errno;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    uint8_t *p = rfs_malloc((size_t)st.st_size + 1);
    if (p == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t off = 0;
    while (off < (size_t)st.st_size) {
        ssize_t r = read(fd, p + off, (size_t)st.st_size - off);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            rfs_free(p);
            close(fd);
            return -e;
        }
        off += (size_t)r;
    }
    close(fd);
    *out = p;
    *len = off;
    return 0;
}

int store__snap_encode(const struct store_snap_meta *m, struct rfs_buf *out);
void store__put_snap_meta(struct store *s, rocksdb_writebatch_t *b,
                          const struct rfs_buf *enc);

int store_snapshot_install(struct store *s, const char *path,
                           const struct store_snap_meta *meta)
{
    uint8_t *p = NULL;
    size_t len = 0;
    int rv = read_all(path, &p, &len);
    if (rv != 0) {
        return store__set_err(s, rv, "reading snapshot %s: %s", path,
                              strerror(-rv));
    }
    /* Verify everything before changing anything. */
    rv = RFS_ECORRUPT;
    if (len < 16 + 9 + 4 || memcmp(p, SNAP_MAGIC, 8) != 0 ||
        rfs_get_le32(p + len - 4) != rfs_crc32c(0, p, len - 4)) {
        store__set_err(s, rv, "snapshot %s is damaged (checksum)", path);
        goto out;
    }
    if (rfs_get_le64(p + 8) != meta->index) {
        store__set_err(s, rv, "snapshot %s holds index %llu, expected %llu",
                       path, (unsigned long long)rfs_get_le64(p + 8),
                       (unsigned long long)meta->index);
        goto out;
    }
    size_t off = 16;
    uint64_t count = 0;
    while (off < len - 4 && p[off] != 0xff) {
        if (len - 4 - off < 9) {
            break;
        }
        uint8_t cf = p[off];
        uint32_t kl = rfs_get_le32(p + off + 1), vl = rfs_get_le32(p + off + 5);
        if ((cf != CF_INODES && cf != CF_DENTRIES && cf != CF_CHUNKS &&
             cf != CF_SESSIONS && cf != CF_XATTRS && cf != CF_LOCKS) ||
            (uint64_t)kl + vl > len - 4 - off - 9) {
            break;
        }
        off += 9 + (size_t)kl + vl;
        count++;
    }
    if (off != len - 13 || p[off] != 0xff || rfs_get_le64(p + off + 1) != count) {
        store__set_err(s, rv, "snapshot %s is damaged (record %llu)", path,
                       (unsigned long long)count);
        goto out;
    }

    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    uint8_t lo[1] = {0}, hi[300];
    memset(hi, 0xff, sizeof(hi));
    for (size_t i = 0; i < sizeof(state_cfs) / sizeof(*state_cfs); i++) {
        rocksdb_writebatch_delete_range_cf(b, s->cf[state_cfs[i]], (char *)lo,
                                           0, (char *)hi, sizeof(hi));
    }
    rocksdb_writebatch_delete_range_cf(b, s->cf[CF_LOG], (char *)lo, 0,
                                       (char *)hi, 9);
    store__history_reset(s, b, meta->index);
    for (off = 16; off < len - 13;) {
        uint8_t cf = p[off];
        uint32_t kl = rfs_get_le32(p + off + 1), vl = rfs_get_le32(p + off + 5);
        rocksdb_writebatch_put_cf(b, s->cf[cf], (char *)p + off + 9, kl,
                                  (char *)p + off + 9 + kl, vl);
        if (cf == CF_DENTRIES && kl > 8 && kl <= 8 + STORE_NAME_MAX &&
            vl >= 8) {
            /* Links are derived, not in the image (history.c). */
            store__link_put(s, b, rfs_get_le64(p + off + 9 + kl),
                            rfs_get_be64(p + off + 9), (char *)p + off + 17,
                            kl - 8);
        }
        off += 9 + (size_t)kl + vl;
    }
    struct rfs_buf enc;
    rv = store__snap_encode(meta, &enc);
    if (rv == 0) {
        store__put_snap_meta(s, b, &enc);
        rfs_free(enc.base);
        uint8_t v[8];
        rfs_put_le64(v, meta->index);
        rocksdb_writebatch_put_cf(b, s->cf[CF_META], "applied", 7, (char *)v,
                                  8);
        rv = store__write(s, b, true, "installing a snapshot");
    }
    rocksdb_writebatch_destroy(b);
    if (rv == 0) {
        s->applied = meta->index;
        s->log_last = meta->index;
        rv = store__chain_load(s); /* The image's, if it has one. */
    }
out:
    rfs_free(p);
    return rv;
}
