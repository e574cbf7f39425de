/*
 * gimage_fetch: a far-behind observer's fetch of one vouched image from its
 * peers (see gimage.h for the policy, docs/protocol.md for the protocol).
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "../common/err.h"
#include "../common/heap.h"
#include "gimage.h"

/* A checked offer: who, what, and the configuration bytes it covers. */
struct cand {
    rfs_nodeid_t peer;
    struct gimage_stmt stmt;
    uint8_t *conf;
    size_t conf_len;
};

struct gimage_fetch {
    struct gimage_fetch_options o;
    rfs_index_t gap;
    rfs_nodeid_t leader;
    struct gossip_key *keys;
    unsigned nkeys;
    struct cand cands[GIMAGE_FETCH_CANDS];
    unsigned ncands;
    rfs_nodeid_t banned[GIMAGE_FETCH_BANNED]; /* A ring: oldest replaced. */
    unsigned nbanned;
    /* The transfer: a copy of the offer it follows (it outlives the
     * candidate, which a later offer of the same peer may replace). */
    bool active, waiting, done;
    struct cand xfer;
    uint64_t off;
    uint32_t want;
    uint64_t sent_ms;  /* The current GET's last sending. */
    uint64_t first_ms; /* Its first. */
    struct gimage_hash hash;
    bool asked;
    uint64_t asked_ms;
    struct gimage_fetch_stats st;
};

struct gimage_fetch *gimage_fetch_new(const struct gimage_fetch_options *o,
                                      rfs_index_t gap, rfs_nodeid_t leader)
{
    if (o->chunk == 0 || o->chunk > GIMAGE_CHUNK_MAX) {
        return NULL;
    }
    struct gimage_fetch *f = rfs_calloc(1, sizeof(*f));
    if (f != NULL) {
        f->o = *o;
        f->gap = gap;
        f->leader = leader;
    }
    return f;
}

static void cand_clear(struct cand *c)
{
    rfs_free(c->conf);
    memset(c, 0, sizeof(*c));
}

void gimage_fetch_free(struct gimage_fetch *f)
{
    if (f == NULL) {
        return;
    }
    for (unsigned i = 0; i < f->ncands; i++) {
        cand_clear(&f->cands[i]);
    }
    cand_clear(&f->xfer);
    rfs_free(f->keys);
    rfs_free(f);
}

int gimage_fetch_set_voters(struct gimage_fetch *f,
                            const struct gossip_key *keys, unsigned n)
{
    return gossip_keys_replace(&f->keys, &f->nkeys, keys, n);
}

void gimage_fetch_set_leader(struct gimage_fetch *f, rfs_nodeid_t leader)
{
    f->leader = leader;
}

static bool is_banned(const struct gimage_fetch *f, rfs_nodeid_t peer)
{
    unsigned n = f->nbanned < GIMAGE_FETCH_BANNED ? f->nbanned
                                                  : GIMAGE_FETCH_BANNED;
    for (unsigned i = 0; i < n; i++) {
        if (f->banned[i] == peer) {
            return true;
        }
    }
    return false;
}

/* Forget peer's offer (it stalled, or lied). */
static void drop_cand(struct gimage_fetch *f, rfs_nodeid_t peer)
{
    for (unsigned i = 0; i < f->ncands; i++) {
        if (f->cands[i].peer == peer) {
            cand_clear(&f->cands[i]);
            f->cands[i] = f->cands[--f->ncands];
            memset(&f->cands[f->ncands], 0, sizeof(struct cand));
            return;
        }
    }
}

/* Stop the transfer; the next step starts another from offset 0. */
static void stop(struct gimage_fetch *f)
{
    if (f->active) {
        f->st.restarts++;
    }
    f->active = false;
    f->waiting = false;
    cand_clear(&f->xfer);
}

static void refuse(struct gimage_fetch *f, rfs_nodeid_t peer, int code,
                   struct gossip_verdict *out, const char *what)
{
    out->refused = code;
    out->culprits[0] = peer;
    out->nculprits = 1;
    snprintf(out->why, sizeof(out->why),
             "image %llu from node %llu: %s: refused",
             (unsigned long long)(f->active ? f->xfer.stmt.index : 0),
             (unsigned long long)peer, what);
    f->st.refused++;
    if (!is_banned(f, peer)) {
        f->banned[f->nbanned++ % GIMAGE_FETCH_BANNED] = peer;
    }
    drop_cand(f, peer);
    if (f->active && f->xfer.peer == peer) {
        stop(f); /* Nothing more from it: the next step asks another. */
    }
}

/* memcmp compares statements whole: no padding in them to differ. */
_Static_assert(sizeof(struct gimage_stmt) ==
                   3 * sizeof(uint64_t) + sizeof(rfs_nodeid_t) +
                       3 * GOSSIP_HASH_BYTES + GOSSIP_SIG_BYTES,
               "struct gimage_stmt has padding");

/* Whether from's offer is the one it offered last, byte for byte: verified
 * then, so not verified again. A peer repeating a valid offer (never
 * banned: it is not lying) would otherwise cost a signature check on the
 * loop each time. */
static bool offered_already(const struct gimage_fetch *f, rfs_nodeid_t from,
                            const struct gimage_msg *offer)
{
    for (unsigned i = 0; i < f->ncands; i++) {
        const struct cand *c = &f->cands[i];
        if (c->peer == from) {
            return memcmp(&c->stmt, &offer->stmt, sizeof(c->stmt)) == 0 &&
                   c->conf_len == offer->conf.len &&
                   (c->conf_len == 0 ||
                    memcmp(c->conf, offer->conf.base, c->conf_len) == 0);
        }
    }
    return false;
}

int gimage_fetch_offer(struct gimage_fetch *f, rfs_nodeid_t from,
                       const struct gimage_msg *offer,
                       struct gossip_verdict *out)
{
    memset(out, 0, sizeof(*out));
    if (f->done || is_banned(f, from) || offer->stmt.index < f->gap) {
        return 0;
    }
    f->st.offers++;
    if (offered_already(f, from, offer)) {
        f->st.repeats++;
        return 0;
    }
    int rv = gimage_stmt_verify(&offer->stmt, &offer->conf, f->keys,
                                f->nkeys);
    if (rv == -ENOKEY) {
        /* Perhaps a voter of a configuration this observer has not
         * reached: nobody is at fault, and the leader remains. */
        f->st.unknown++;
        return 0;
    }
    if (rv != 0) {
        refuse(f, from, rv, out,
               rv == RFS_EAUTH ? "a statement without its signer's signature"
                               : "configuration bytes its statement does "
                                 "not cover");
        /* refuse() names the transfer's image; this one was another's. */
        snprintf(out->why, sizeof(out->why),
                 "image offer %llu from node %llu claiming signer %llu: %s: "
                 "refused",
                 (unsigned long long)offer->stmt.index,
                 (unsigned long long)from,
                 (unsigned long long)offer->stmt.signer,
                 rv == RFS_EAUTH ? "bad signature" : "altered configuration");
        return 0;
    }
    struct cand *c = NULL;
    for (unsigned i = 0; i < f->ncands && c == NULL; i++) {
        if (f->cands[i].peer == from) {
            c = &f->cands[i];
        }
    }
    if (c == NULL && f->ncands < GIMAGE_FETCH_CANDS) {
        c = &f->cands[f->ncands]; /* Zeroed (calloc, drop_cand). */
    }
    if (c == NULL) {
        /* Full: a newer image takes the place of the oldest. */
        struct cand *low = &f->cands[0];
        for (unsigned i = 1; i < f->ncands; i++) {
            if (f->cands[i].stmt.index < low->stmt.index) {
                low = &f->cands[i];
            }
        }
        if (low->stmt.index >= offer->stmt.index) {
            return 0;
        }
        c = low;
    }
    uint8_t *conf = NULL;
    if (offer->conf.len > 0) {
        conf = rfs_malloc(offer->conf.len);
        if (conf == NULL) {
            return -ENOMEM; /* c keeps its old offer, or stays unused. */
        }
        memcpy(conf, offer->conf.base, offer->conf.len);
    }
    if (c == &f->cands[f->ncands]) {
        f->ncands++;
    }
    rfs_free(c->conf);
    c->peer = from;
    c->stmt = offer->stmt;
    c->conf = conf;
    c->conf_len = offer->conf.len;
    return 0;
}

/* The offer to fetch: highest index, then not the leader, then lowest id. */
static const struct cand *best(const struct gimage_fetch *f)
{
    const struct cand *b = NULL;
    for (unsigned i = 0; i < f->ncands; i++) {
        const struct cand *c = &f->cands[i];
        if (b == NULL || c->stmt.index > b->stmt.index) {
            b = c;
            continue;
        }
        if (c->stmt.index < b->stmt.index) {
            continue;
        }
        bool cl = c->peer == f->leader, bl = b->peer == f->leader;
        if ((bl && !cl) || (cl == bl && c->peer < b->peer)) {
            b = c;
        }
    }
    return b;
}

static uint32_t next_len(const struct gimage_fetch *f)
{
    uint64_t left = f->xfer.stmt.size - f->off;
    return left < f->o.chunk ? (uint32_t)left : f->o.chunk;
}

void gimage_fetch_next(struct gimage_fetch *f, uint64_t now_ms,
                       struct gimage_step *step)
{
    memset(step, 0, sizeof(*step));
    if (f->done) {
        return;
    }
    if (f->active && f->waiting) {
        if (now_ms - f->first_ms < f->o.stall_ms) {
            if (now_ms - f->sent_ms < f->o.stall_ms / 4) {
                return;
            }
            /* A server over its bounds drops a GET unanswered (so does a
             * full send queue): ask the same peer for the same bytes
             * again, rather than throw the transfer away for one busy
             * moment. Every byte still comes from that one peer. */
            f->sent_ms = now_ms;
            step->kind = GIMAGE_GET;
            step->to = f->xfer.peer;
            step->msg = (struct gimage_msg){.kind = GIMAGE_GET,
                                            .index = f->xfer.stmt.index,
                                            .off = f->off, .len = f->want};
            return;
        }
        /* Silent: maybe busy or gone, not a liar; its offer goes, it may
         * offer again. */
        drop_cand(f, f->xfer.peer);
        stop(f);
    }
    if (!f->active) {
        const struct cand *c = best(f);
        if (c == NULL) {
            if (!f->asked || now_ms - f->asked_ms >= f->o.ask_ms) {
                f->asked = true;
                f->asked_ms = now_ms;
                f->st.asks++;
                step->kind = GIMAGE_ASK;
                step->msg = (struct gimage_msg){.kind = GIMAGE_ASK,
                                                .at = f->gap};
            }
            return;
        }
        f->xfer = *c;
        f->xfer.conf = NULL;
        if (c->conf_len > 0) {
            f->xfer.conf = rfs_malloc(c->conf_len);
            if (f->xfer.conf == NULL) {
                return; /* Tried again at the next step. */
            }
            memcpy(f->xfer.conf, c->conf, c->conf_len);
        }
        f->active = true;
        f->off = 0;
        gimage_hash_init(&f->hash);
        step->fresh = true;
    }
    f->want = next_len(f);
    f->waiting = true;
    f->sent_ms = f->first_ms = now_ms;
    step->kind = GIMAGE_GET;
    step->to = f->xfer.peer;
    step->msg = (struct gimage_msg){.kind = GIMAGE_GET,
                                    .index = f->xfer.stmt.index,
                                    .off = f->off, .len = f->want};
}

enum gimage_chunk_fate gimage_fetch_chunk(struct gimage_fetch *f,
                                          rfs_nodeid_t from,
                                          const struct gimage_msg *chunk,
                                          struct gossip_verdict *out)
{
    memset(out, 0, sizeof(*out));
    if (!f->active || !f->waiting || from != f->xfer.peer ||
        chunk->index != f->xfer.stmt.index || chunk->off != f->off) {
        return GIMAGE_CHUNK_IGNORE;
    }
    bool end = f->off + f->want == f->xfer.stmt.size;
    if (chunk->data.len != f->want || chunk->last != end) {
        refuse(f, from, RFS_EMALFORMED, out,
               "a chunk of another length than asked");
        return GIMAGE_CHUNK_REFUSED;
    }
    gimage_hash_update(&f->hash, chunk->data.base, chunk->data.len);
    f->off += chunk->data.len;
    f->st.bytes += chunk->data.len;
    f->waiting = false;
    if (!end) {
        return GIMAGE_CHUNK_WRITE;
    }
    uint8_t h[GOSSIP_HASH_BYTES];
    gimage_hash_final(&f->hash, h);
    if (sodium_memcmp(h, f->xfer.stmt.image, sizeof(h)) != 0) {
        char what[96];
        snprintf(what, sizeof(what),
                 "bytes that do not hash to node %llu's statement",
                 (unsigned long long)f->xfer.stmt.signer);
        refuse(f, from, RFS_EFORGED, out, what);
        return GIMAGE_CHUNK_REFUSED;
    }
    f->done = true;
    return GIMAGE_CHUNK_INSTALL;
}

void gimage_fetch_abort(struct gimage_fetch *f)
{
    /* Also after the last chunk checked out: its write may still fail,
     * and then the image is not on disk. Kept as done, the fetch asked for
     * nothing more, and the observer waited for the leader's snapshot. */
    f->done = false;
    stop(f);
}

const struct gimage_stmt *gimage_fetch_result(const struct gimage_fetch *f,
                                              struct rfs_buf *conf)
{
    if (!f->done) {
        return NULL;
    }
    conf->base = f->xfer.conf;
    conf->len = f->xfer.conf_len;
    return &f->xfer.stmt;
}

void gimage_fetch_get_stats(const struct gimage_fetch *f,
                            struct gimage_fetch_stats *st)
{
    *st = f->st;
}
