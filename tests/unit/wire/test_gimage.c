/*
 * Unit tests of image statements and the fetch messages
 * (consensus/gimage.h): a statement verifies only under the key of the
 * voter it names and only with every field as signed; an unknown signer is
 * told apart from a forged signature; configuration bytes altered in
 * transit are refused; and the codec refuses every truncation, trailing
 * byte and out-of-bound length.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "../../../common/err.h"
#include "../../../common/heap.h"
#include "../../../consensus/gimage.h"

/* Voters 1 and 2 have keys in the configuration; node 9 has a key that is
 * not in it. */
static struct gossip_key keys[2];
static uint8_t sk1[GOSSIP_SK_BYTES], sk2[GOSSIP_SK_BYTES];
static uint8_t sk9[GOSSIP_SK_BYTES];
static uint8_t image[3000];
static const char conf[] = "voters 1 2; observers 3 4 5";

static int group_setup(void **state)
{
    (void)state;
    if (sodium_init() < 0) {
        return -1;
    }
    keys[0].id = 1;
    gossip_keypair(keys[0].pk, sk1);
    keys[1].id = 2;
    gossip_keypair(keys[1].pk, sk2);
    uint8_t pk9[GOSSIP_PK_BYTES];
    gossip_keypair(pk9, sk9);
    for (size_t i = 0; i < sizeof(image); i++) {
        image[i] = (uint8_t)(i * 31 + 7);
    }
    return 0;
}

/* A statement of image at index 500 signed by signer with sk. */
static struct gimage_stmt stmt_by(rfs_nodeid_t signer, const uint8_t *sk)
{
    struct gimage_stmt s = {.index = 500, .term = 7, .size = sizeof(image),
                            .signer = signer};
    memset(s.chain, 0xc4, sizeof(s.chain));
    gimage_hash(image, sizeof(image), s.image);
    gimage_hash(conf, strlen(conf), s.conf);
    gimage_stmt_sign(&s, sk);
    return s;
}

static const struct rfs_buf conf_buf = {.base = (void *)conf,
                                        .len = sizeof(conf) - 1};

/* A voter's statement verifies, with and without its configuration. */
static void test_stmt_verifies(void **state)
{
    (void)state;
    struct gimage_stmt s = stmt_by(1, sk1);
    assert_int_equal(gimage_stmt_verify(&s, &conf_buf, keys, 2), 0);
    assert_int_equal(gimage_stmt_verify(&s, NULL, keys, 2), 0);
    s = stmt_by(2, sk2);
    assert_int_equal(gimage_stmt_verify(&s, &conf_buf, keys, 2), 0);
}

/* Every signed field matters: changing any one after signing is refused as
 * a forgery of a known voter's word. */
static void test_stmt_binds_every_field(void **state)
{
    (void)state;
    const struct gimage_stmt good = stmt_by(1, sk1);
    struct gimage_stmt v[8];
    for (unsigned k = 0; k < 8; k++) {
        v[k] = good;
    }
    v[0].index++;
    v[1].term++;
    v[2].chain[31] ^= 1;
    v[3].size--;
    v[4].image[0] ^= 0x80;
    v[5].conf[12] ^= 4;
    v[6].signer = 2; /* Voter 1's signature claimed as voter 2's. */
    v[7].sig[5] ^= 1;
    for (unsigned k = 0; k < 8; k++) {
        assert_int_equal(gimage_stmt_verify(&v[k], NULL, keys, 2), RFS_EAUTH);
    }
}

/* A signer the caller does not know is not a forgery (it may be a voter of
 * a newer configuration): -ENOKEY, which names nobody. A key outside the
 * configuration claiming a voter's id is a forgery. */
static void test_stmt_unknown_signer(void **state)
{
    (void)state;
    struct gimage_stmt s = stmt_by(9, sk9);
    assert_int_equal(gimage_stmt_verify(&s, NULL, keys, 2), -ENOKEY);
    assert_int_equal(gimage_stmt_verify(&s, NULL, keys, 0), -ENOKEY);
    s = stmt_by(1, sk9);
    assert_int_equal(gimage_stmt_verify(&s, NULL, keys, 2), RFS_EAUTH);
    /* Voter 2's key set alone does not know voter 1. */
    s = stmt_by(1, sk1);
    assert_int_equal(gimage_stmt_verify(&s, NULL, &keys[1], 1), -ENOKEY);
}

/* Configuration bytes that do not hash to the signed ones were altered by
 * whoever sent them. */
static void test_stmt_conf_altered(void **state)
{
    (void)state;
    struct gimage_stmt s = stmt_by(1, sk1);
    char other[sizeof(conf)];
    memcpy(other, conf, sizeof(conf));
    other[7] = '9';
    struct rfs_buf b = {.base = other, .len = sizeof(conf) - 1};
    assert_int_equal(gimage_stmt_verify(&s, &b, keys, 2), RFS_EFORGED);
    b.base = (void *)conf;
    b.len--;
    assert_int_equal(gimage_stmt_verify(&s, &b, keys, 2), RFS_EFORGED);
}

/* A commit point's signature over the same key never stands for a
 * statement: the tags differ. */
static void test_stmt_not_a_commit_point(void **state)
{
    (void)state;
    struct gimage_stmt s = stmt_by(1, sk1);
    struct gossip_cert c = {.index = s.index, .term = s.term, .signer = 1};
    memcpy(c.hash, s.chain, sizeof(c.hash));
    gossip_cert_sign(&c, sk1);
    assert_int_equal(gossip_cert_verify(&c, keys, 2), 0);
    memcpy(s.sig, c.sig, sizeof(s.sig));
    assert_int_equal(gimage_stmt_verify(&s, NULL, keys, 2), RFS_EAUTH);
}

/* The streaming hash, fed in uneven pieces, equals the one-shot hash, and
 * one changed byte changes it. */
static void test_hash_streams(void **state)
{
    (void)state;
    uint8_t one[GOSSIP_HASH_BYTES], streamed[GOSSIP_HASH_BYTES];
    gimage_hash(image, sizeof(image), one);
    struct gimage_hash h;
    gimage_hash_init(&h);
    size_t off = 0, step = 1;
    while (off < sizeof(image)) {
        size_t n = step < sizeof(image) - off ? step : sizeof(image) - off;
        gimage_hash_update(&h, image + off, n);
        off += n;
        step = step * 3 + 1;
    }
    gimage_hash_final(&h, streamed);
    assert_memory_equal(one, streamed, sizeof(one));
    image[1234] ^= 1;
    gimage_hash(image, sizeof(image), streamed);
    image[1234] ^= 1;
    assert_memory_not_equal(one, streamed, sizeof(one));
}

/* Encode m, decode it back, check that every truncation and one trailing
 * byte are refused; returns the decoded message (its buffers point into
 * *enc, which the caller frees). */
static struct gimage_msg round_trip(const struct gimage_msg *m,
                                    struct rfs_buf *enc)
{
    assert_int_equal(gimage_msg_encode(m, enc), 0);
    struct gimage_msg d;
    assert_int_equal(gimage_msg_decode(enc, &d), 0);
    assert_int_equal(d.kind, m->kind);
    assert_int_equal(d.from, m->from);
    for (size_t cut = 0; cut < enc->len; cut++) {
        struct rfs_buf t = {.base = enc->base, .len = cut};
        struct gimage_msg x;
        assert_int_equal(gimage_msg_decode(&t, &x), RFS_EMALFORMED);
    }
    uint8_t *longer = rfs_malloc(enc->len + 1);
    assert_non_null(longer);
    memcpy(longer, enc->base, enc->len);
    longer[enc->len] = 0;
    struct rfs_buf t = {.base = longer, .len = enc->len + 1};
    struct gimage_msg x;
    assert_int_equal(gimage_msg_decode(&t, &x), RFS_EMALFORMED);
    rfs_free(longer);
    return d;
}

static void test_msg_codec(void **state)
{
    (void)state;
    struct rfs_buf enc;
    struct gimage_msg m = {.kind = GIMAGE_ASK, .from = 42, .at = 12345};
    struct gimage_msg d = round_trip(&m, &enc);
    assert_int_equal(d.at, 12345);
    rfs_free(enc.base);

    m = (struct gimage_msg){.kind = GIMAGE_OFFER, .from = 3,
                            .stmt = stmt_by(2, sk2), .conf = conf_buf};
    d = round_trip(&m, &enc);
    assert_memory_equal(&d.stmt, &m.stmt, sizeof(m.stmt));
    assert_int_equal(d.conf.len, conf_buf.len);
    assert_memory_equal(d.conf.base, conf, conf_buf.len);
    /* What came over the wire still verifies with what it carried. */
    assert_int_equal(gimage_stmt_verify(&d.stmt, &d.conf, keys, 2), 0);
    rfs_free(enc.base);

    m = (struct gimage_msg){.kind = GIMAGE_GET, .from = 4, .index = 500,
                            .off = 1u << 20, .len = GIMAGE_CHUNK_MAX};
    d = round_trip(&m, &enc);
    assert_int_equal(d.index, 500);
    assert_int_equal(d.off, 1u << 20);
    assert_int_equal(d.len, GIMAGE_CHUNK_MAX);
    rfs_free(enc.base);

    m = (struct gimage_msg){.kind = GIMAGE_CHUNK, .from = 5, .index = 500,
                            .off = 1000, .last = true,
                            .data = {.base = image + 1000, .len = 2000}};
    d = round_trip(&m, &enc);
    assert_int_equal(d.index, 500);
    assert_int_equal(d.off, 1000);
    assert_true(d.last);
    assert_int_equal(d.data.len, 2000);
    assert_memory_equal(d.data.base, image + 1000, 2000);
    rfs_free(enc.base);

    /* An empty final chunk (an image whose size is a multiple of the
     * chunk) and an offer without configuration bytes are valid. */
    m = (struct gimage_msg){.kind = GIMAGE_CHUNK, .from = 5, .index = 500,
                            .off = sizeof(image), .last = true};
    d = round_trip(&m, &enc);
    assert_int_equal(d.data.len, 0);
    assert_null(d.data.base);
    rfs_free(enc.base);
}

/* Bounds: the encoder refuses what the decoder would, and the decoder
 * refuses lengths over their bound, bad flags, wrapping offsets and kinds
 * it does not know (gossip's included). */
static void test_msg_bounds(void **state)
{
    (void)state;
    struct rfs_buf enc;
    struct gimage_msg m = {.kind = GIMAGE_GET, .len = GIMAGE_CHUNK_MAX + 1};
    assert_int_equal(gimage_msg_encode(&m, &enc), -EINVAL);
    m = (struct gimage_msg){.kind = GIMAGE_CHUNK,
                            .data = {.base = image,
                                     .len = GIMAGE_CHUNK_MAX + 1}};
    assert_int_equal(gimage_msg_encode(&m, &enc), -EINVAL);
    m = (struct gimage_msg){.kind = GIMAGE_OFFER,
                            .conf = {.base = image,
                                     .len = GIMAGE_CONF_MAX + 1}};
    assert_int_equal(gimage_msg_encode(&m, &enc), -EINVAL);
    m = (struct gimage_msg){.kind = GOSSIP_PUSH};
    assert_int_equal(gimage_msg_encode(&m, &enc), -EINVAL);

    /* GET: len over the bound; off + len past 2^64. */
    m = (struct gimage_msg){.kind = GIMAGE_GET, .index = 1, .len = 10};
    assert_int_equal(gimage_msg_encode(&m, &enc), 0);
    uint8_t *p = enc.base;
    struct gimage_msg d;
    p[9 + 16 + 2] = 0x20; /* len = 0x200000a */
    assert_int_equal(gimage_msg_decode(&enc, &d), RFS_EMALFORMED);
    p[9 + 16 + 2] = 0;
    memset(p + 9 + 8, 0xff, 8); /* off = 2^64 - 1 */
    assert_int_equal(gimage_msg_decode(&enc, &d), RFS_EMALFORMED);
    rfs_free(enc.base);

    /* CHUNK: a last flag of 2; a length that disagrees with the bytes. */
    m = (struct gimage_msg){.kind = GIMAGE_CHUNK, .index = 1,
                            .data = {.base = image, .len = 10}};
    assert_int_equal(gimage_msg_encode(&m, &enc), 0);
    p = enc.base;
    assert_int_equal(gimage_msg_decode(&enc, &d), 0);
    p[9 + 16] = 2;
    assert_int_equal(gimage_msg_decode(&enc, &d), RFS_EMALFORMED);
    p[9 + 16] = 0;
    p[9 + 17] = 9;
    assert_int_equal(gimage_msg_decode(&enc, &d), RFS_EMALFORMED);
    p[9 + 17] = 10;
    memset(p + 9 + 8, 0xff, 8);
    assert_int_equal(gimage_msg_decode(&enc, &d), RFS_EMALFORMED);
    /* Gossip's kinds and unknown ones are not this codec's. */
    for (unsigned k = 0; k < 256; k++) {
        p[0] = (uint8_t)k;
        bool mine = k >= GIMAGE_ASK && k <= GIMAGE_CHUNK;
        assert_int_equal(gimage_is_kind((uint8_t)k), mine);
        if (!mine) {
            assert_int_equal(gimage_msg_decode(&enc, &d), RFS_EMALFORMED);
        }
    }
    assert_false(gimage_is_kind(GOSSIP_PUSH));
    assert_false(gimage_is_kind(GOSSIP_DIGEST));
    assert_false(gimage_is_kind(GOSSIP_PULL));
    rfs_free(enc.base);

    /* OFFER: a configuration length that disagrees with the bytes. */
    m = (struct gimage_msg){.kind = GIMAGE_OFFER, .stmt = stmt_by(1, sk1),
                            .conf = conf_buf};
    assert_int_equal(gimage_msg_encode(&m, &enc), 0);
    p = enc.base;
    size_t lenat = enc.len - conf_buf.len - 4;
    assert_int_equal(p[lenat], conf_buf.len);
    p[lenat]++;
    assert_int_equal(gimage_msg_decode(&enc, &d), RFS_EMALFORMED);
    p[lenat] -= 2;
    assert_int_equal(gimage_msg_decode(&enc, &d), RFS_EMALFORMED);
    rfs_free(enc.base);
}

/* The server offers its image only to an asker it takes further, and
 * answers GETs only for that image, cut at its end. */
static void test_server_offers_and_reads(void **state)
{
    (void)state;
    struct gimage_server *s = gimage_server_new();
    assert_non_null(s);
    struct gimage_msg o;
    assert_false(gimage_server_ask(s, 1, 10, &o)); /* Nothing held. */
    struct gimage_stmt st = stmt_by(1, sk1);
    assert_int_equal(gimage_server_set(s, &st, &conf_buf), 0);
    assert_false(gimage_server_ask(s, 1, 501, &o)); /* Too old to help. */
    assert_true(gimage_server_ask(s, 1, 500, &o));
    assert_int_equal(o.kind, GIMAGE_OFFER);
    assert_int_equal(o.from, 1);
    assert_memory_equal(&o.stmt, &st, sizeof(st));
    assert_int_equal(gimage_stmt_verify(&o.stmt, &o.conf, keys, 2), 0);
    assert_true(gimage_server_ask(s, 1, 3, &o));

    struct gimage_read r;
    struct gimage_msg g = {.kind = GIMAGE_GET, .index = 499, .len = 1000};
    assert_int_equal(gimage_server_get(s, 5, &g, &r), RFS_ENOSNAP);
    g.index = 500;
    g.off = sizeof(image) + 1;
    assert_int_equal(gimage_server_get(s, 5, &g, &r), RFS_ENOSNAP);
    g.off = 2500;
    assert_int_equal(gimage_server_get(s, 5, &g, &r), 0);
    assert_int_equal(r.to, 5);
    assert_int_equal(r.index, 500);
    assert_int_equal(r.off, 2500);
    assert_int_equal(r.len, sizeof(image) - 2500);
    assert_true(r.last);
    assert_true(gimage_server_done(s, &r));
    g.off = 0;
    assert_int_equal(gimage_server_get(s, 5, &g, &r), 0);
    assert_int_equal(r.len, 1000);
    assert_false(r.last);
    /* A newer image replaces it: the read in flight answers nothing. */
    st.index = 600;
    gimage_stmt_sign(&st, sk1);
    assert_int_equal(gimage_server_set(s, &st, &conf_buf), 0);
    assert_false(gimage_server_done(s, &r));
    assert_int_equal(gimage_server_reading(s, 0), 0);
    gimage_server_clear(s);
    assert_false(gimage_server_ask(s, 1, 3, &o));
    g.index = 600;
    assert_int_equal(gimage_server_get(s, 5, &g, &r), RFS_ENOSNAP);
    gimage_server_free(s);
}

/* One read in flight per peer and GIMAGE_SERVE_MAX in all: a hundred
 * observers asking at once hold a few chunks of memory, and a freed slot
 * serves the next. */
static void test_server_bounds_reads(void **state)
{
    (void)state;
    struct gimage_server *s = gimage_server_new();
    assert_non_null(s);
    struct gimage_stmt st = stmt_by(2, sk2);
    assert_int_equal(gimage_server_set(s, &st, &conf_buf), 0);
    struct gimage_msg g = {.kind = GIMAGE_GET, .index = 500, .len = 100};
    struct gimage_read r[GIMAGE_SERVE_MAX], x;
    for (unsigned i = 0; i < GIMAGE_SERVE_MAX; i++) {
        g.off = 100 * i;
        assert_int_equal(gimage_server_get(s, 10 + i, &g, &r[i]), 0);
        /* The same peer again, before its read finished. */
        assert_int_equal(gimage_server_get(s, 10 + i, &g, &x), RFS_EBUSY);
        assert_int_equal(gimage_server_reading(s, 10 + i), 1);
    }
    assert_int_equal(gimage_server_reading(s, 0), GIMAGE_SERVE_MAX);
    for (unsigned p = 100; p < 200; p++) {
        assert_int_equal(gimage_server_get(s, p, &g, &x), RFS_EBUSY);
    }
    assert_true(gimage_server_done(s, &r[1]));
    assert_int_equal(gimage_server_reading(s, 11), 0);
    assert_int_equal(gimage_server_get(s, 150, &g, &x), 0);
    assert_int_equal(gimage_server_get(s, 151, &g, &x), RFS_EBUSY);
    assert_int_equal(gimage_server_get(s, 11, &g, &x), RFS_EBUSY);
    gimage_server_free(s);
}

/* ---- Fetching ---- */

static const struct gimage_fetch_options fopts = {
    .chunk = 1000, .ask_ms = 100, .stall_ms = 500};

static struct gimage_fetch *fetch_new(rfs_index_t gap, rfs_nodeid_t leader)
{
    struct gimage_fetch *f = gimage_fetch_new(&fopts, gap, leader);
    assert_non_null(f);
    assert_int_equal(gimage_fetch_set_voters(f, keys, 2), 0);
    return f;
}

static void give_offer(struct gimage_fetch *f, rfs_nodeid_t from,
                       const struct gimage_stmt *st, int refused)
{
    struct gimage_msg o = {.kind = GIMAGE_OFFER, .from = from, .stmt = *st,
                           .conf = conf_buf};
    struct gossip_verdict d;
    assert_int_equal(gimage_fetch_offer(f, from, &o, &d), 0);
    assert_int_equal(d.refused, refused);
    if (refused != 0) {
        assert_int_equal(d.nculprits, 1);
        assert_int_equal(d.culprits[0], from);
    }
}

/* Answer the GET in *step as a server of image bytes src would. */
static enum gimage_chunk_fate answer(struct gimage_fetch *f,
                                     const struct gimage_step *step,
                                     const uint8_t *src,
                                     struct gossip_verdict *d)
{
    assert_int_equal(step->kind, GIMAGE_GET);
    struct gimage_msg c = {
        .kind = GIMAGE_CHUNK, .from = step->to, .index = step->msg.index,
        .off = step->msg.off,
        .data = {.base = (void *)(src + step->msg.off), .len = step->msg.len},
        .last = step->msg.off + step->msg.len == sizeof(image)};
    return gimage_fetch_chunk(f, step->to, &c, d);
}

/* Fetch to the end from whoever the steps name; returns the last fate. */
static enum gimage_chunk_fate fetch_all(struct gimage_fetch *f,
                                        uint64_t now, const uint8_t *src,
                                        rfs_nodeid_t from,
                                        struct gossip_verdict *d)
{
    struct gimage_step step;
    enum gimage_chunk_fate fate;
    uint64_t off = 0;
    do {
        gimage_fetch_next(f, now, &step);
        assert_int_equal(step.to, from);
        assert_int_equal(step.msg.off, off);
        assert_int_equal(step.fresh, off == 0);
        fate = answer(f, &step, src, d);
        off += step.msg.len;
    } while (fate == GIMAGE_CHUNK_WRITE);
    return fate;
}

/* With no offer the fetch asks, at most every ask_ms; offered the same
 * image by the leader and an observer, it takes it from the observer, and
 * the newest image before an older one; chunks from anyone else, late or
 * out of place, change nothing; the image installs with its statement. */
static void test_fetch_prefers_peers_over_leader(void **state)
{
    (void)state;
    struct gimage_fetch *f = fetch_new(100, 1);
    struct gimage_step step;
    gimage_fetch_next(f, 1000, &step);
    assert_int_equal(step.kind, GIMAGE_ASK);
    assert_int_equal(step.msg.at, 100);
    gimage_fetch_next(f, 1050, &step);
    assert_int_equal(step.kind, 0);
    gimage_fetch_next(f, 1100, &step);
    assert_int_equal(step.kind, GIMAGE_ASK);

    struct gimage_stmt st = stmt_by(1, sk1), old = st;
    old.index = 450;
    old.signer = 2;
    gimage_stmt_sign(&old, sk2);
    give_offer(f, 1, &st, 0);
    give_offer(f, 8, &old, 0);
    give_offer(f, 7, &st, 0);
    gimage_fetch_next(f, 1200, &step);
    assert_int_equal(step.kind, GIMAGE_GET);
    assert_int_equal(step.to, 7);
    assert_true(step.fresh);
    assert_int_equal(step.msg.index, 500);
    assert_int_equal(step.msg.off, 0);
    assert_int_equal(step.msg.len, 1000);
    /* Nothing more while the chunk is awaited. */
    struct gimage_step again;
    gimage_fetch_next(f, 1300, &again);
    assert_int_equal(again.kind, 0);
    struct gossip_verdict d;
    struct gimage_msg wrong = {.kind = GIMAGE_CHUNK, .index = 500, .off = 0,
                               .data = {.base = image, .len = 1000}};
    assert_int_equal(gimage_fetch_chunk(f, 1, &wrong, &d), GIMAGE_CHUNK_IGNORE);
    wrong.off = 1000;
    assert_int_equal(gimage_fetch_chunk(f, 7, &wrong, &d), GIMAGE_CHUNK_IGNORE);
    assert_int_equal(answer(f, &step, image, &d), GIMAGE_CHUNK_WRITE);
    /* The same chunk again (a duplicate) is not the one awaited. */
    assert_int_equal(answer(f, &step, image, &d), GIMAGE_CHUNK_IGNORE);
    gimage_fetch_next(f, 1300, &step);
    assert_int_equal(step.to, 7);
    assert_false(step.fresh);
    assert_int_equal(step.msg.off, 1000);
    assert_null(gimage_fetch_result(f, &(struct rfs_buf){0}));
    assert_int_equal(answer(f, &step, image, &d), GIMAGE_CHUNK_WRITE);
    gimage_fetch_next(f, 1300, &step);
    assert_int_equal(step.msg.len, 1000);
    assert_int_equal(answer(f, &step, image, &d), GIMAGE_CHUNK_INSTALL);
    struct rfs_buf got;
    const struct gimage_stmt *r = gimage_fetch_result(f, &got);
    assert_non_null(r);
    assert_memory_equal(r, &st, sizeof(st));
    assert_int_equal(got.len, conf_buf.len);
    assert_memory_equal(got.base, conf, got.len);
    gimage_fetch_next(f, 5000, &step);
    assert_int_equal(step.kind, 0); /* Done: no more asks. */
    struct gimage_fetch_stats fs;
    gimage_fetch_get_stats(f, &fs);
    assert_int_equal(fs.asks, 2);
    assert_int_equal(fs.bytes, sizeof(image));
    assert_int_equal(fs.restarts, 0);
    gimage_fetch_free(f);

    /* Only the leader offers: it serves, as the last resort among peers. */
    f = fetch_new(100, 1);
    give_offer(f, 1, &st, 0);
    assert_int_equal(fetch_all(f, 0, image, 1, &d), GIMAGE_CHUNK_INSTALL);
    gimage_fetch_free(f);
}

/* A peer serving altered bytes is refused when the image ends, named,
 * banned (its offers ignored from then on), and the fetch starts again
 * from offset 0 with an honest peer, and installs. */
static void test_fetch_forged_image_refused(void **state)
{
    (void)state;
    uint8_t forged[sizeof(image)];
    memcpy(forged, image, sizeof(image));
    forged[2999] ^= 0x40;
    struct gimage_fetch *f = fetch_new(100, 1);
    struct gimage_stmt st = stmt_by(2, sk2);
    give_offer(f, 5, &st, 0);
    give_offer(f, 6, &st, 0);
    struct gossip_verdict d;
    assert_int_equal(fetch_all(f, 0, forged, 5, &d), GIMAGE_CHUNK_REFUSED);
    assert_int_equal(d.refused, RFS_EFORGED);
    assert_int_equal(d.nculprits, 1);
    assert_int_equal(d.culprits[0], 5);
    assert_non_null(strstr(d.why, "node 5"));
    assert_null(gimage_fetch_result(f, &(struct rfs_buf){0}));
    give_offer(f, 5, &st, 0); /* Ignored: banned. */
    assert_int_equal(fetch_all(f, 0, image, 6, &d), GIMAGE_CHUNK_INSTALL);
    struct gimage_fetch_stats fs;
    gimage_fetch_get_stats(f, &fs);
    assert_int_equal(fs.refused, 1);
    assert_int_equal(fs.restarts, 1);
    assert_int_equal(fs.offers, 2);
    gimage_fetch_free(f);

    /* A chunk of another length than asked is refused at once. */
    f = fetch_new(100, 1);
    give_offer(f, 5, &st, 0);
    give_offer(f, 6, &st, 0);
    struct gimage_step step;
    gimage_fetch_next(f, 0, &step);
    assert_int_equal(step.to, 5);
    step.msg.len--;
    assert_int_equal(answer(f, &step, image, &d), GIMAGE_CHUNK_REFUSED);
    assert_int_equal(d.refused, RFS_EMALFORMED);
    assert_int_equal(d.culprits[0], 5);
    gimage_fetch_next(f, 0, &step);
    assert_int_equal(step.to, 6);
    assert_true(step.fresh);
    gimage_fetch_free(f);
}

/* Offers are checked as they come: a known voter's bad signature or
 * altered configuration bytes name the sender; an unknown signer and an
 * image below the gap are ignored without blame; with nothing usable the
 * fetch keeps asking. */
static void test_fetch_offer_checks(void **state)
{
    (void)state;
    struct gimage_fetch *f = fetch_new(600, 0);
    struct gimage_stmt st = stmt_by(1, sk1);
    give_offer(f, 8, &st, 0); /* 500 < gap 600: ignored. */
    st.index = 700;
    gimage_stmt_sign(&st, sk9); /* Voter 1's id, another key. */
    give_offer(f, 5, &st, RFS_EAUTH);
    struct gimage_stmt u = st;
    u.signer = 9; /* Unknown here: perhaps a newer voter. */
    gimage_stmt_sign(&u, sk9);
    give_offer(f, 6, &u, 0);
    gimage_stmt_sign(&st, sk1);
    struct gimage_msg o = {.kind = GIMAGE_OFFER, .stmt = st,
                           .conf = {.base = (void *)"voters 1 9",
                                    .len = 10}};
    struct gossip_verdict d;
    assert_int_equal(gimage_fetch_offer(f, 7, &o, &d), 0);
    assert_int_equal(d.refused, RFS_EFORGED);
    assert_int_equal(d.culprits[0], 7);
    struct gimage_step step;
    gimage_fetch_next(f, 0, &step);
    assert_int_equal(step.kind, GIMAGE_ASK);
    struct gimage_fetch_stats fs;
    gimage_fetch_get_stats(f, &fs);
    assert_int_equal(fs.unknown, 1);
    assert_int_equal(fs.refused, 2);
    /* The refused senders stay refused even with a good offer; node 6,
     * which only relayed an unknown signer's statement, is heard. */
    give_offer(f, 5, &st, 0);
    give_offer(f, 7, &st, 0);
    gimage_fetch_next(f, 1000, &step);
    assert_int_equal(step.kind, GIMAGE_ASK);
    give_offer(f, 6, &st, 0);
    gimage_fetch_next(f, 1000, &step);
    assert_int_equal(step.kind, GIMAGE_GET);
    assert_int_equal(step.to, 6);
    gimage_fetch_free(f);
}

/* A GET the server dropped (busy) and sent again is answered: the
 * transfer goes on from there with the same peer, no restart. Without the
 * resend, one dropped GET threw the whole transfer away after stall_ms. */
static void test_fetch_resent_get_goes_on(void **state)
{
    (void)state;
    struct gimage_fetch *f = fetch_new(100, 0);
    struct gimage_stmt st = stmt_by(1, sk1);
    give_offer(f, 5, &st, 0);
    struct gimage_step step;
    struct gossip_verdict d;
    gimage_fetch_next(f, 0, &step);
    assert_int_equal(step.msg.off, 0);
    gimage_fetch_next(f, 130, &step);
    assert_int_equal(step.kind, GIMAGE_GET);
    assert_int_equal(step.msg.off, 0);
    assert_int_equal(answer(f, &step, image, &d), GIMAGE_CHUNK_WRITE);
    gimage_fetch_next(f, 600, &step);
    assert_int_equal(step.to, 5);
    assert_int_equal(step.msg.off, 1000);
    struct gimage_fetch_stats fs;
    gimage_fetch_get_stats(f, &fs);
    assert_int_equal(fs.restarts, 0);
    gimage_fetch_free(f);
}

/* A peer repeating its offer byte for byte costs no second signature
 * check; the same statement with any field changed is checked again, and
 * refused, naming the peer. */
static void test_fetch_repeated_offer_not_verified_again(void **state)
{
    (void)state;
    struct gimage_fetch *f = fetch_new(100, 0);
    struct gimage_stmt st = stmt_by(1, sk1);
    for (int i = 0; i < 5; i++) {
        give_offer(f, 5, &st, 0);
    }
    struct gimage_fetch_stats fs;
    gimage_fetch_get_stats(f, &fs);
    assert_int_equal(fs.offers, 5);
    assert_int_equal(fs.repeats, 4);
    st.size--; /* The signature no longer covers it. */
    give_offer(f, 5, &st, RFS_EAUTH);
    gimage_fetch_get_stats(f, &fs);
    assert_int_equal(fs.repeats, 4);
    assert_int_equal(fs.refused, 1);
    gimage_fetch_free(f);
}

/* The last chunk checks out, but writing it fails (a full disk): the
 * fetch starts again (it asks for offers anew), rather than staying done
 * with no image on disk and asking for nothing more. */
static void test_fetch_abort_after_last_chunk_restarts(void **state)
{
    (void)state;
    struct gimage_fetch *f = fetch_new(100, 0);
    struct gimage_stmt st = stmt_by(1, sk1);
    give_offer(f, 5, &st, 0);
    struct gossip_verdict d;
    assert_int_equal(fetch_all(f, 0, image, 5, &d), GIMAGE_CHUNK_INSTALL);
    gimage_fetch_abort(f);
    struct gimage_step step;
    gimage_fetch_next(f, 10000, &step);
    assert_int_not_equal(step.kind, 0);
    gimage_fetch_free(f);
}

/* A peer that leaves a GET unanswered for stall_ms loses its offer; the
 * transfer starts again from offset 0 with another, and the silent peer's
 * late chunk is ignored. */
static void test_fetch_stall_moves_on(void **state)
{
    (void)state;
    struct gimage_fetch *f = fetch_new(100, 0);
    struct gimage_stmt st = stmt_by(1, sk1);
    give_offer(f, 5, &st, 0);
    give_offer(f, 6, &st, 0);
    struct gimage_step s5, step;
    struct gossip_verdict d;
    gimage_fetch_next(f, 0, &s5);
    assert_int_equal(s5.to, 5);
    assert_int_equal(answer(f, &s5, image, &d), GIMAGE_CHUNK_WRITE);
    gimage_fetch_next(f, 10, &s5);
    assert_int_equal(s5.msg.off, 1000);
    gimage_fetch_next(f, 100, &step);
    assert_int_equal(step.kind, 0);
    /* Unanswered for a quarter of stall_ms: the same GET again, to the
     * same peer (a busy server drops what is over its bounds). */
    gimage_fetch_next(f, 140, &step);
    assert_int_equal(step.kind, GIMAGE_GET);
    assert_int_equal(step.to, 5);
    assert_false(step.fresh);
    assert_int_equal(step.msg.off, 1000);
    gimage_fetch_next(f, 200, &step);
    assert_int_equal(step.kind, 0);
    gimage_fetch_next(f, 509, &step);
    assert_int_equal(step.to, 5);
    assert_int_equal(step.msg.off, 1000);
    /* stall_ms after the first sending: its offer goes. */
    gimage_fetch_next(f, 510, &step);
    assert_int_equal(step.kind, GIMAGE_GET);
    assert_int_equal(step.to, 6);
    assert_true(step.fresh);
    assert_int_equal(step.msg.off, 0);
    assert_int_equal(answer(f, &s5, image, &d), GIMAGE_CHUNK_IGNORE);
    assert_int_equal(d.refused, 0);
    /* Writing failed here: the transfer starts over, from the best offer
     * left (node 6's). */
    gimage_fetch_abort(f);
    gimage_fetch_next(f, 520, &step);
    assert_int_equal(step.to, 6);
    assert_true(step.fresh);
    struct gimage_fetch_stats fs;
    gimage_fetch_get_stats(f, &fs);
    assert_int_equal(fs.restarts, 2);
    gimage_fetch_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stmt_verifies),
        cmocka_unit_test(test_stmt_binds_every_field),
        cmocka_unit_test(test_stmt_unknown_signer),
        cmocka_unit_test(test_stmt_conf_altered),
        cmocka_unit_test(test_stmt_not_a_commit_point),
        cmocka_unit_test(test_hash_streams),
        cmocka_unit_test(test_msg_codec),
        cmocka_unit_test(test_msg_bounds),
        cmocka_unit_test(test_server_offers_and_reads),
        cmocka_unit_test(test_server_bounds_reads),
        cmocka_unit_test(test_fetch_prefers_peers_over_leader),
        cmocka_unit_test(test_fetch_forged_image_refused),
        cmocka_unit_test(test_fetch_offer_checks),
        cmocka_unit_test(test_fetch_stall_moves_on),
        cmocka_unit_test(test_fetch_abort_after_last_chunk_restarts),
        cmocka_unit_test(test_fetch_resent_get_goes_on),
        cmocka_unit_test(test_fetch_repeated_offer_not_verified_again),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
