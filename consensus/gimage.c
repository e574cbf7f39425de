/*
 * gimage: image statements and the fetch messages (see gimage.h for what
 * they prove and docs/protocol.md for the fetch).
 */
#include "gimage.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "../common/endian.h"
#include "../common/err.h"
#include "../common/heap.h"

/* Not "raftfs-commit-v1" (gossip.c) nor a prefix of it: a statement's
 * signature never verifies as a commit point's, nor the reverse. */
static const char stmt_tag[] = "raftfs-image-v1";

_Static_assert(sizeof(((struct gimage_hash *)0)->state) >=
                   sizeof(crypto_generichash_state),
               "gimage_hash too small for libsodium's state");
_Static_assert(GOSSIP_HASH_BYTES == crypto_generichash_BYTES,
               "BLAKE2b-256 is 32 bytes");

void gimage_hash_init(struct gimage_hash *h)
{
    crypto_generichash_init((crypto_generichash_state *)h->state, NULL, 0,
                            GOSSIP_HASH_BYTES);
}

void gimage_hash_update(struct gimage_hash *h, const void *data, size_t len)
{
    crypto_generichash_update((crypto_generichash_state *)h->state, data, len);
}

void gimage_hash_final(struct gimage_hash *h, uint8_t out[GOSSIP_HASH_BYTES])
{
    crypto_generichash_final((crypto_generichash_state *)h->state, out,
                             GOSSIP_HASH_BYTES);
}

void gimage_hash(const void *data, size_t len, uint8_t out[GOSSIP_HASH_BYTES])
{
    struct gimage_hash h;
    gimage_hash_init(&h);
    gimage_hash_update(&h, data, len);
    gimage_hash_final(&h, out);
}

/* The statement's fields on the wire and under the signature, in order. */
#define STMT_BODY (8 + 8 + GOSSIP_HASH_BYTES + 8 + 2 * GOSSIP_HASH_BYTES + 8)
#define STMT_WIRE (STMT_BODY + GOSSIP_SIG_BYTES)
#define STMT_MSG (sizeof(stmt_tag) - 1 + STMT_BODY)

static void stmt_put(uint8_t *p, const struct gimage_stmt *s)
{
    rfs_put_le64(p, s->index);
    rfs_put_le64(p + 8, s->term);
    p += 16;
    memcpy(p, s->chain, GOSSIP_HASH_BYTES);
    p += GOSSIP_HASH_BYTES;
    rfs_put_le64(p, s->size);
    p += 8;
    memcpy(p, s->image, GOSSIP_HASH_BYTES);
    p += GOSSIP_HASH_BYTES;
    memcpy(p, s->conf, GOSSIP_HASH_BYTES);
    p += GOSSIP_HASH_BYTES;
    rfs_put_le64(p, s->signer);
}

static void stmt_get(const uint8_t *p, struct gimage_stmt *s)
{
    s->index = rfs_get_le64(p);
    s->term = rfs_get_le64(p + 8);
    p += 16;
    memcpy(s->chain, p, GOSSIP_HASH_BYTES);
    p += GOSSIP_HASH_BYTES;
    s->size = rfs_get_le64(p);
    p += 8;
    memcpy(s->image, p, GOSSIP_HASH_BYTES);
    p += GOSSIP_HASH_BYTES;
    memcpy(s->conf, p, GOSSIP_HASH_BYTES);
    p += GOSSIP_HASH_BYTES;
    s->signer = rfs_get_le64(p);
    memcpy(s->sig, p + 8, GOSSIP_SIG_BYTES);
}

static void stmt_bytes(const struct gimage_stmt *s, uint8_t m[STMT_MSG])
{
    size_t o = sizeof(stmt_tag) - 1;
    memcpy(m, stmt_tag, o);
    stmt_put(m + o, s);
}

void gimage_stmt_sign(struct gimage_stmt *s, const uint8_t sk[GOSSIP_SK_BYTES])
{
    uint8_t m[STMT_MSG];
    stmt_bytes(s, m);
    crypto_sign_detached(s->sig, NULL, m, sizeof(m), sk);
}

int gimage_stmt_verify(const struct gimage_stmt *s, const struct rfs_buf *conf,
                       const struct gossip_key *keys, unsigned n)
{
    const struct gossip_key *k = NULL;
    for (unsigned i = 0; i < n && k == NULL; i++) {
        if (keys[i].id == s->signer) {
            k = &keys[i];
        }
    }
    if (k == NULL) {
        return -ENOKEY;
    }
    uint8_t m[STMT_MSG];
    stmt_bytes(s, m);
    if (crypto_sign_verify_detached(s->sig, m, sizeof(m), k->pk) != 0) {
        return RFS_EAUTH;
    }
    if (conf != NULL) {
        uint8_t h[GOSSIP_HASH_BYTES];
        gimage_hash(conf->base, conf->len, h);
        if (sodium_memcmp(h, s->conf, sizeof(h)) != 0) {
            return RFS_EFORGED;
        }
    }
    return 0;
}

/* ---- Messages -------------------------------------------------------------- */

#define HEAD GOSSIP_MSG_HEAD      /* kind, from */
#define ASK_BODY 8                /* at */
#define GET_BODY (8 + 8 + 4)      /* index, off, len */
#define CHUNK_HEAD (8 + 8 + 1 + 4) /* index, off, last, len */

bool gimage_is_kind(uint8_t first)
{
    return first >= GIMAGE_ASK && first <= GIMAGE_CHUNK;
}

int gimage_msg_encode(const struct gimage_msg *m, struct rfs_buf *out)
{
    size_t len = HEAD;
    switch (m->kind) {
    case GIMAGE_ASK:
        len += ASK_BODY;
        break;
    case GIMAGE_OFFER:
        if (m->conf.len > GIMAGE_CONF_MAX) {
            return -EINVAL;
        }
        len += STMT_WIRE + 4 + m->conf.len;
        break;
    case GIMAGE_GET:
        if (m->len > GIMAGE_CHUNK_MAX) {
            return -EINVAL;
        }
        len += GET_BODY;
        break;
    case GIMAGE_CHUNK:
        if (m->data.len > GIMAGE_CHUNK_MAX) {
            return -EINVAL;
        }
        len += CHUNK_HEAD + m->data.len;
        break;
    default:
        return -EINVAL;
    }
    uint8_t *p = gossip_msg_start(out, len, m->kind, m->from);
    if (p == NULL) {
        return -ENOMEM;
    }
    switch (m->kind) {
    case GIMAGE_ASK:
        rfs_put_le64(p, m->at);
        break;
    case GIMAGE_OFFER:
        stmt_put(p, &m->stmt);
        memcpy(p + STMT_BODY, m->stmt.sig, GOSSIP_SIG_BYTES);
        rfs_put_le32(p + STMT_WIRE, (uint32_t)m->conf.len);
        if (m->conf.len > 0) {
            memcpy(p + STMT_WIRE + 4, m->conf.base, m->conf.len);
        }
        break;
    case GIMAGE_GET:
        rfs_put_le64(p, m->index);
        rfs_put_le64(p + 8, m->off);
        rfs_put_le32(p + 16, m->len);
        break;
    default: /* GIMAGE_CHUNK */
        rfs_put_le64(p, m->index);
        rfs_put_le64(p + 8, m->off);
        p[16] = m->last ? 1 : 0;
        rfs_put_le32(p + 17, (uint32_t)m->data.len);
        if (m->data.len > 0) {
            memcpy(p + CHUNK_HEAD, m->data.base, m->data.len);
        }
        break;
    }
    return 0;
}

int gimage_msg_decode(const struct rfs_buf *in, struct gimage_msg *m)
{
    const uint8_t *p = in->base;
    size_t left = in->len;
    memset(m, 0, sizeof(*m));
    if (left < HEAD) {
        return RFS_EMALFORMED;
    }
    m->kind = p[0];
    m->from = rfs_get_le64(p + 1);
    p += HEAD;
    left -= HEAD;
    switch (m->kind) {
    case GIMAGE_ASK:
        if (left != ASK_BODY) {
            return RFS_EMALFORMED;
        }
        m->at = rfs_get_le64(p);
        return 0;
    case GIMAGE_OFFER: {
        if (left < STMT_WIRE + 4) {
            return RFS_EMALFORMED;
        }
        stmt_get(p, &m->stmt);
        uint32_t cl = rfs_get_le32(p + STMT_WIRE);
        left -= STMT_WIRE + 4;
        if (cl > GIMAGE_CONF_MAX || cl != left) {
            return RFS_EMALFORMED;
        }
        m->conf.base = cl > 0 ? (void *)(p + STMT_WIRE + 4) : NULL;
        m->conf.len = cl;
        return 0;
    }
    case GIMAGE_GET:
        if (left != GET_BODY) {
            return RFS_EMALFORMED;
        }
        m->index = rfs_get_le64(p);
        m->off = rfs_get_le64(p + 8);
        m->len = rfs_get_le32(p + 16);
        /* A request past 2^64 can name no byte of any image. */
        if (m->len > GIMAGE_CHUNK_MAX || m->off > UINT64_MAX - m->len) {
            return RFS_EMALFORMED;
        }
        return 0;
    case GIMAGE_CHUNK: {
        if (left < CHUNK_HEAD) {
            return RFS_EMALFORMED;
        }
        m->index = rfs_get_le64(p);
        m->off = rfs_get_le64(p + 8);
        uint32_t dl = rfs_get_le32(p + 17);
        if (p[16] > 1 || dl > GIMAGE_CHUNK_MAX || dl != left - CHUNK_HEAD ||
            m->off > UINT64_MAX - dl) {
            return RFS_EMALFORMED;
        }
        m->last = p[16] == 1;
        m->data.base = dl > 0 ? (void *)(p + CHUNK_HEAD) : NULL;
        m->data.len = dl;
        m->len = dl;
        return 0;
    }
    default:
        return RFS_EMALFORMED;
    }
}

/* ---- The serving side ------------------------------------------------------ */

struct gimage_server {
    bool held;
    struct gimage_stmt stmt;
    uint8_t *conf;
    size_t conf_len;
    /* Who each read in flight is for (to 0: a free slot; node ids start
     * at 1). Few slots: a scan is cheaper than any map. */
    rfs_nodeid_t reading[GIMAGE_SERVE_MAX];
};

struct gimage_server *gimage_server_new(void)
{
    return rfs_calloc(1, sizeof(struct gimage_server));
}

void gimage_server_free(struct gimage_server *s)
{
    if (s != NULL) {
        rfs_free(s->conf);
        rfs_free(s);
    }
}

int gimage_server_set(struct gimage_server *s, const struct gimage_stmt *st,
                      const struct rfs_buf *conf)
{
    uint8_t *c = NULL;
    if (conf->len > 0) {
        c = rfs_malloc(conf->len);
        if (c == NULL) {
            gimage_server_clear(s);
            return -ENOMEM;
        }
        memcpy(c, conf->base, conf->len);
    }
    rfs_free(s->conf);
    s->conf = c;
    s->conf_len = conf->len;
    s->stmt = *st;
    s->held = true;
    return 0;
}

void gimage_server_clear(struct gimage_server *s)
{
    rfs_free(s->conf);
    s->conf = NULL;
    s->conf_len = 0;
    s->held = false;
}

bool gimage_server_ask(const struct gimage_server *s, rfs_nodeid_t self,
                       rfs_index_t at, struct gimage_msg *offer)
{
    /* An image at or below what the asker applied would take it nowhere. */
    if (!s->held || s->stmt.index < at) {
        return false;
    }
    *offer = (struct gimage_msg){.kind = GIMAGE_OFFER, .from = self,
                                 .stmt = s->stmt,
                                 .conf = {.base = s->conf,
                                          .len = s->conf_len}};
    return true;
}

int gimage_server_get(struct gimage_server *s, rfs_nodeid_t from,
                      const struct gimage_msg *get, struct gimage_read *r)
{
    if (!s->held || get->index != s->stmt.index || get->off > s->stmt.size) {
        return RFS_ENOSNAP;
    }
    unsigned mine = 0;
    int slot = -1;
    for (unsigned i = 0; i < GIMAGE_SERVE_MAX; i++) {
        if (s->reading[i] == from) {
            mine++;
        } else if (s->reading[i] == 0 && slot < 0) {
            slot = (int)i;
        }
    }
    if (mine >= GIMAGE_SERVE_PER_PEER || slot < 0) {
        return RFS_EBUSY;
    }
    uint64_t left = s->stmt.size - get->off;
    s->reading[slot] = from;
    *r = (struct gimage_read){.to = from, .index = get->index,
                              .off = get->off,
                              .len = left < get->len ? (uint32_t)left
                                                     : get->len};
    r->last = r->off + r->len == s->stmt.size;
    return 0;
}

bool gimage_server_done(struct gimage_server *s, const struct gimage_read *r)
{
    for (unsigned i = 0; i < GIMAGE_SERVE_MAX; i++) {
        if (s->reading[i] == r->to) {
            s->reading[i] = 0;
            break;
        }
    }
    return s->held && s->stmt.index == r->index;
}

unsigned gimage_server_reading(const struct gimage_server *s,
                               rfs_nodeid_t peer)
{
    unsigned k = 0;
    for (unsigned i = 0; i < GIMAGE_SERVE_MAX; i++) {
        k += peer == 0 ? s->reading[i] != 0 : s->reading[i] == peer;
    }
    return k;
}
