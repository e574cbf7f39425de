/*
 * Frames and the Raft message codec. See wire.h.
 *
 * The decoder is written for hostile input: every length is checked against
 * what remains before it is used, counts are bounded by the bytes that could
 * hold them, and nothing is allocated before the frame it belongs to has
 * passed its checksum. tests/fuzz drives it with libFuzzer.
 */
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../common/crc32c.h"
#include "../common/endian.h"
#include "../common/err.h"
#include "../common/heap.h"

#define ENTRY_HDR 21 /* term u64, index u64, type u8, len u32 */

void wire_frame_header(uint8_t type, const void *body, uint32_t len,
                       uint8_t hdr[WIRE_HDR])
{
    rfs_put_le32(hdr, WIRE_MAGIC);
    hdr[4] = WIRE_VERSION;
    hdr[5] = type;
    hdr[6] = 0;
    hdr[7] = 0;
    rfs_put_le32(hdr + 8, len);
    uint32_t c = rfs_crc32c(0, hdr, 12);
    rfs_put_le32(hdr + 12, rfs_crc32c(c, body, len));
}

/* ---- Reader ----------------------------------------------------------- */

void wire_reader_init(struct wire_reader *r)
{
    memset(r, 0, sizeof(*r));
}

void wire_reader_close(struct wire_reader *r)
{
    rfs_free(r->buf);
    memset(r, 0, sizeof(*r));
}

static int fail(struct wire_reader *r, const char *why)
{
    r->err = RFS_EMALFORMED;
    snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
    return r->err;
}

static void drop_handed_out(struct wire_reader *r)
{
    if (r->skip > 0) {
        memmove(r->buf, r->buf + r->skip, r->len - r->skip);
        r->len -= r->skip;
        r->skip = 0;
    }
}

int wire_reader_feed(struct wire_reader *r, const void *data, size_t len)
{
    if (r->err != 0) {
        return r->err;
    }
    drop_handed_out(r);
    /* Never hold more than one maximal frame plus what just arrived: a
     * peer that floods us is cut off by the length check in next(). */
    if (r->len + len > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + len) {
            cap *= 2;
        }
        uint8_t *b = rfs_realloc(r->buf, cap);
        if (b == NULL) {
            return -ENOMEM;
        }
        r->buf = b;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, len);
    r->len += len;
    return 0;
}

int wire_reader_next(struct wire_reader *r, struct wire_frame *f)
{
    if (r->err != 0) {
        return r->err;
    }
    drop_handed_out(r);
    if (r->len < WIRE_HDR) {
        /* Check what we have early: a stranger is refused at its first
         * bytes, not after it sent a whole header. */
        static const uint8_t magic[4] = {'R', 'F', 'S', 'W'};
        size_t k = r->len < 4 ? r->len : 4;
        if (memcmp(r->buf, magic, k) != 0) {
            return fail(r, "bad magic: not a raftfs peer");
        }
        return 0;
    }
    const uint8_t *h = r->buf;
    if (rfs_get_le32(h) != WIRE_MAGIC) {
        return fail(r, "bad magic: not a raftfs peer");
    }
    if (h[4] != WIRE_VERSION) {
        return fail(r, "unsupported protocol version");
    }
    if (h[5] == 0 || h[5] >= WIRE_TYPE_MAX || h[6] != 0 || h[7] != 0) {
        return fail(r, "bad frame type or flags");
    }
    uint32_t len = rfs_get_le32(h + 8);
    if (len > WIRE_MAX_BODY) {
        return fail(r, "frame longer than the limit");
    }
    if (r->len < WIRE_HDR + (size_t)len) {
        return 0;
    }
    uint32_t c = rfs_crc32c(0, h, 12);
    if (rfs_crc32c(c, h + WIRE_HDR, len) != rfs_get_le32(h + 12)) {
        return fail(r, "frame checksum mismatch");
    }
    f->type = h[5];
    f->body = h + WIRE_HDR;
    f->len = len;
    r->skip = WIRE_HDR + (size_t)len;
    return 1;
}

/* ---- Raft messages ---------------------------------------------------- */

#define MSG_FIXED 103 /* Every field before the entry count. */

int wire_msg_encode(const struct cons_msg *m, struct rfs_buf *out)
{
    size_t len = MSG_FIXED + 4 + 1 + 4;
    for (unsigned i = 0; i < m->n_entries; i++) {
        len += ENTRY_HDR + m->entries[i].data.len;
    }
    struct rfs_buf conf = {NULL, 0};
    if (m->snap != NULL) {
        int rv = cons_conf_encode(&m->snap->conf, &conf);
        if (rv != 0) {
            return rv;
        }
        len += 24 + 4 + conf.len;
    }
    len += m->data.len;
    if (len > WIRE_MAX_BODY) {
        rfs_free(conf.base);
        return -EINVAL;
    }
    uint8_t *p = rfs_malloc(len);
    if (p == NULL) {
        rfs_free(conf.base);
        return -ENOMEM;
    }
    uint8_t *q = p;
    *q++ = m->type;
    rfs_put_le64(q, m->from), q += 8;
    rfs_put_le64(q, m->to), q += 8;
    rfs_put_le64(q, m->term), q += 8;
    rfs_put_le64(q, m->prev_index), q += 8;
    rfs_put_le64(q, m->prev_term), q += 8;
    rfs_put_le64(q, m->commit), q += 8;
    *q++ = (uint8_t)(m->reject | m->transfer << 1 | m->last << 2);
    rfs_put_le64(q, m->index), q += 8;
    rfs_put_le64(q, m->hint_index), q += 8;
    rfs_put_le64(q, m->hint_term), q += 8;
    rfs_put_le64(q, m->round), q += 8;
    rfs_put_le64(q, m->ctx), q += 8;
    *q++ = m->hops;
    rfs_put_le64(q, m->offset), q += 8;
    /* Once reserved (0): old builds send no lease and ignore this one. */
    rfs_put_le32(q, (m->lease_seq & CONS_LEASE_SEQ_MASK) |
                        (uint32_t)m->lease_ticks << 24),
        q += 4;
    rfs_put_le32(q, m->n_entries), q += 4;
    for (unsigned i = 0; i < m->n_entries; i++) {
        const struct cons_entry *e = &m->entries[i];
        rfs_put_le64(q, e->term), q += 8;
        rfs_put_le64(q, e->index), q += 8;
        *q++ = e->type;
        rfs_put_le32(q, (uint32_t)e->data.len), q += 4;
        if (e->data.len > 0) {
            memcpy(q, e->data.base, e->data.len);
        }
        q += e->data.len;
    }
    *q++ = m->snap != NULL;
    if (m->snap != NULL) {
        rfs_put_le64(q, m->snap->index), q += 8;
        rfs_put_le64(q, m->snap->term), q += 8;
        rfs_put_le64(q, m->snap->size), q += 8;
        rfs_put_le32(q, (uint32_t)conf.len), q += 4;
        memcpy(q, conf.base, conf.len);
        q += conf.len;
        rfs_free(conf.base);
    }
    rfs_put_le32(q, (uint32_t)m->data.len), q += 4;
    if (m->data.len > 0) {
        memcpy(q, m->data.base, m->data.len);
    }
    out->base = p;
    out->len = len;
    return 0;
}

void wire_msg_free(struct cons_msg *m)
{
    rfs_free(m->entries);
    rfs_free(m->snap);
    m->entries = NULL;
    m->snap = NULL;
}

int wire_msg_decode(const uint8_t *p, size_t len, struct cons_msg *m)
{
    memset(m, 0, sizeof(*m));
    const uint8_t *end = p + len;
    if (len < MSG_FIXED + 4 + 1 + 4) {
        return RFS_EMALFORMED;
    }
    const uint8_t *q = p;
    m->type = *q++;
    if (m->type == 0 || m->type >= CONS_MSG_TYPE_MAX) {
        return RFS_EMALFORMED;
    }
    m->from = rfs_get_le64(q), q += 8;
    m->to = rfs_get_le64(q), q += 8;
    m->term = rfs_get_le64(q), q += 8;
    m->prev_index = rfs_get_le64(q), q += 8;
    m->prev_term = rfs_get_le64(q), q += 8;
    m->commit = rfs_get_le64(q), q += 8;
    uint8_t flags = *q++;
    if (flags & ~7u) {
        return RFS_EMALFORMED;
    }
    m->reject = flags & 1;
    m->transfer = (flags >> 1) & 1;
    m->last = (flags >> 2) & 1;
    m->index = rfs_get_le64(q), q += 8;
    m->hint_index = rfs_get_le64(q), q += 8;
    m->hint_term = rfs_get_le64(q), q += 8;
    m->round = rfs_get_le64(q), q += 8;
    m->ctx = rfs_get_le64(q), q += 8;
    m->hops = *q++;
    m->offset = rfs_get_le64(q), q += 8;
    uint32_t lease = rfs_get_le32(q);
    q += 4;
    m->lease_seq = lease & CONS_LEASE_SEQ_MASK;
    m->lease_ticks = (uint8_t)(lease >> 24);
    uint32_t n = rfs_get_le32(q);
    q += 4;
    /* Each entry needs at least its header: bound n before allocating. */
    if ((size_t)n > (size_t)(end - q) / ENTRY_HDR) {
        return RFS_EMALFORMED;
    }
    if (n > 0) {
        m->entries = rfs_calloc(n, sizeof(*m->entries));
        if (m->entries == NULL) {
            return -ENOMEM;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        if ((size_t)(end - q) < ENTRY_HDR) {
            goto bad;
        }
        struct cons_entry *e = &m->entries[i];
        e->term = rfs_get_le64(q), q += 8;
        e->index = rfs_get_le64(q), q += 8;
        e->type = *q++;
        uint32_t dl = rfs_get_le32(q);
        q += 4;
        if (e->type < CONS_ENTRY_NORMAL || e->type > CONS_ENTRY_CONF ||
            dl > (size_t)(end - q)) {
            goto bad;
        }
        e->data.base = dl ? (void *)q : NULL;
        e->data.len = dl;
        q += dl;
    }
    m->n_entries = n;
    if (end - q < 1) {
        goto bad;
    }
    uint8_t has_snap = *q++;
    if (has_snap > 1) {
        goto bad;
    }
    if (has_snap) {
        if (end - q < 28) {
            goto bad;
        }
        m->snap = rfs_calloc(1, sizeof(*m->snap));
        if (m->snap == NULL) {
            wire_msg_free(m);
            return -ENOMEM;
        }
        m->snap->index = rfs_get_le64(q), q += 8;
        m->snap->term = rfs_get_le64(q), q += 8;
        m->snap->size = rfs_get_le64(q), q += 8;
        uint32_t cl = rfs_get_le32(q);
        q += 4;
        if (cl > (size_t)(end - q)) {
            goto bad;
        }
        struct rfs_buf cb = {(void *)q, cl};
        if (cons_conf_decode(&cb, &m->snap->conf) != 0) {
            goto bad;
        }
        q += cl;
    }
    if (end - q < 4) {
        goto bad;
    }
    uint32_t dl = rfs_get_le32(q);
    q += 4;
    if (dl != (size_t)(end - q)) {
        goto bad;
    }
    m->data.base = dl ? (void *)q : NULL;
    m->data.len = dl;
    return 0;
bad:
    wire_msg_free(m);
    return RFS_EMALFORMED;
}
