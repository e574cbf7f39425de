/*
 * Unit tests of the observer's proof (consensus/gossip.h): entries are
 * released only in log order, only up to a commit point signed by a known
 * voter, and only when they chain to it; forged, reordered, uncommitted or
 * unsigned ones are refused and whoever sent them is named. And the message
 * codec refuses every truncation.
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
#include "../../../consensus/gossip.h"

#define N 40

/* A committed log of N entries and its chain; voters 1 and 2 have keys,
 * node 9 has one that is not in the configuration. */
static struct cons_entry log_[N + 1];
static char data[N + 1][32];
static uint8_t chain[N + 1][GOSSIP_HASH_BYTES];
static struct gossip_key keys[2];
static uint8_t sk1[GOSSIP_SK_BYTES], sk2[GOSSIP_SK_BYTES];
static uint8_t sk9[GOSSIP_SK_BYTES];

static int group_setup(void **state)
{
    (void)state;
    if (sodium_init() < 0) {
        return -1;
    }
    memset(chain[0], 0, GOSSIP_HASH_BYTES);
    for (unsigned i = 1; i <= N; i++) {
        snprintf(data[i], sizeof(data[i]), "put /k%u v%u", i, i * 7);
        log_[i] = (struct cons_entry){
            .term = 1 + i / 10, .index = i,
            .type = i % 13 == 0 ? CONS_ENTRY_NOOP : CONS_ENTRY_NORMAL,
            .data = {.base = data[i], .len = strlen(data[i])}};
        store_chain_next(chain[i - 1], &log_[i], chain[i]);
    }
    keys[0].id = 1;
    gossip_keypair(keys[0].pk, sk1);
    keys[1].id = 2;
    gossip_keypair(keys[1].pk, sk2);
    uint8_t pk9[GOSSIP_PK_BYTES];
    gossip_keypair(pk9, sk9);
    return 0;
}

static struct gossip_cert cert_at(rfs_index_t i, rfs_nodeid_t signer,
                                  const uint8_t *sk)
{
    struct gossip_cert c = {.index = i, .term = log_[i].term,
                            .signer = signer};
    memcpy(c.hash, chain[i], GOSSIP_HASH_BYTES);
    gossip_cert_sign(&c, sk);
    return c;
}

static struct gossip_verifier *fresh(void)
{
    struct gossip_verifier *v = gossip_verifier_new(0, chain[0]);
    assert_non_null(v);
    assert_int_equal(gossip_verifier_set_voters(v, keys, 2), 0);
    return v;
}

static void offer(struct gossip_verifier *v, rfs_nodeid_t from,
                  const struct cons_entry *e, struct gossip_verdict *d)
{
    assert_int_equal(gossip_verifier_offer(v, from, e, d), 0);
}

/* Take everything released; check it is the committed log in order. */
static rfs_index_t take_all(struct gossip_verifier *v, rfs_index_t from)
{
    struct cons_entry e;
    while (gossip_verifier_take(v, &e)) {
        from++;
        assert_int_equal(e.index, from);
        assert_int_equal(e.term, log_[from].term);
        assert_int_equal(e.data.len, log_[from].data.len);
        assert_memory_equal(e.data.base, log_[from].data.base, e.data.len);
        rfs_free(e.data.base);
    }
    return from;
}

/* The chain changes with every field of an entry. */
static void test_chain_binds_every_field(void **state)
{
    (void)state;
    struct cons_entry e = log_[5];
    uint8_t h[GOSSIP_HASH_BYTES];
    store_chain_next(chain[4], &e, h);
    assert_memory_equal(h, chain[5], sizeof(h));
    struct cons_entry variants[4] = {e, e, e, e};
    variants[0].term++;
    variants[1].index++;
    variants[2].type = CONS_ENTRY_CONF;
    variants[3].data.len--;
    for (unsigned k = 0; k < 4; k++) {
        store_chain_next(chain[4], &variants[k], h);
        assert_memory_not_equal(h, chain[5], sizeof(h));
    }
    store_chain_next(chain[3], &e, h); /* Another history before. */
    assert_memory_not_equal(h, chain[5], sizeof(h));
}

/* Entries arriving out of order, from several peers, with the commit point
 * first: released only once all are held, then all of them, in order. */
static void test_release_in_order_once_proven(void **state)
{
    (void)state;
    struct gossip_verifier *v = fresh();
    struct gossip_verdict d;
    struct gossip_cert c = cert_at(10, 2, sk2);
    assert_int_equal(gossip_verifier_certify(v, 5, &c, &d), 0);
    assert_int_equal(d.refused, 0);
    assert_int_equal(d.ready, 0);
    for (unsigned i = 10; i >= 2; i--) {
        offer(v, 10 + i % 3, &log_[i], &d);
        assert_int_equal(d.ready, 0);
    }
    assert_int_equal(gossip_verifier_gap(v), 1);
    offer(v, 7, &log_[1], &d);
    assert_int_equal(d.ready, 10);
    assert_int_equal(take_all(v, 0), 10);
    /* Entries 11..20 with no commit point yet: held, not released. */
    for (unsigned i = 11; i <= 20; i++) {
        offer(v, 7, &log_[i], &d);
        assert_int_equal(d.ready, 0);
    }
    struct cons_entry e;
    assert_false(gossip_verifier_take(v, &e));
    c = cert_at(15, 1, sk1);
    assert_int_equal(gossip_verifier_certify(v, 8, &c, &d), 0);
    assert_int_equal(d.ready, 5);
    assert_int_equal(take_all(v, 10), 15);
    struct gossip_cert last;
    assert_true(gossip_verifier_last_cert(v, &last));
    assert_int_equal(last.index, 15);
    uint8_t h[GOSSIP_HASH_BYTES];
    assert_int_equal(gossip_verifier_applied(v, h), 15);
    assert_memory_equal(h, chain[15], sizeof(h));
    gossip_verifier_free(v);
}

/* A forged entry (altered bytes), a reordered pair, and an uncommitted
 * entry of another history are refused at the commit point; whoever is
 * proven to have sent a wrong copy is named; the honest copies then go
 * through. */
static void test_forged_entries_refused_and_named(void **state)
{
    (void)state;
    struct gossip_verifier *v = fresh();
    struct gossip_verdict d;
    char evil[32] = "put /k3 stolen";
    struct cons_entry forged = log_[3];
    forged.data.base = evil;
    forged.data.len = strlen(evil);
    for (unsigned i = 1; i <= 5; i++) {
        offer(v, i == 3 ? 66 : 4, i == 3 ? &forged : &log_[i], &d);
    }
    struct gossip_cert c = cert_at(5, 1, sk1);
    assert_int_equal(gossip_verifier_certify(v, 4, &c, &d), 0);
    assert_int_equal(d.refused, RFS_EFORGED);
    assert_int_equal(d.ready, 0);
    /* Not yet known which copy is wrong: nobody is named, and the run is
     * asked for again. */
    assert_int_equal(d.nculprits, 0);
    assert_non_null(strstr(d.why, "do not chain"));
    assert_int_equal(gossip_verifier_gap(v), 1);
    struct cons_entry e;
    assert_false(gossip_verifier_take(v, &e));
    /* The honest copy, from someone else, passes against the kept point
     * and proves the forger's wrong. */
    offer(v, 8, &log_[3], &d);
    assert_int_equal(d.ready, 5);
    assert_int_equal(d.refused, RFS_EFORGED);
    assert_int_equal(d.nculprits, 1);
    assert_int_equal(d.culprits[0], 66);
    assert_int_equal(take_all(v, 0), 5);

    /* Reordered: entries 6 and 7 swapped in place (each claims the other's
     * index): refused. */
    struct cons_entry a = log_[7], b = log_[6];
    a.index = 6;
    b.index = 7;
    offer(v, 77, &a, &d);
    offer(v, 77, &b, &d);
    c = cert_at(7, 2, sk2);
    assert_int_equal(gossip_verifier_certify(v, 3, &c, &d), 0);
    assert_int_equal(d.refused, RFS_EFORGED);
    assert_int_equal(d.culprits[0], 77);

    /* Uncommitted: an entry of a deposed leader's term that never
     * committed, offered at 6, 7: refused the same way. */
    struct cons_entry u6 = log_[6], u7 = log_[7];
    u6.term = u7.term = 99;
    offer(v, 78, &u6, &d);
    offer(v, 78, &u7, &d);
    assert_int_equal(d.refused, RFS_EFORGED); /* Checked at the kept point. */
    offer(v, 4, &log_[6], &d);
    offer(v, 4, &log_[7], &d);
    assert_int_equal(d.refused, 0);
    assert_int_equal(d.ready, 2);
    assert_int_equal(take_all(v, 5), 7);
    gossip_verifier_free(v);
}

/* A poisoner sending the first copy of one entry gets only itself named:
 * the honest peers that sent the rest of the run, or the true copy of that
 * entry after it, are not (the runtime bans whoever is named), and the
 * true copy held aside releases the run with no new pull. */
static void test_poisoner_alone_named(void **state)
{
    (void)state;
    struct gossip_verifier *v = fresh();
    struct gossip_verdict d;
    char evil[32] = "put /k5 poisoned";
    struct cons_entry p5 = log_[5];
    p5.data.base = evil;
    p5.data.len = strlen(evil);
    /* Point last: the poisoner's copy of 5 first, the true one after. */
    for (unsigned i = 1; i <= 8; i++) {
        if (i == 5) {
            offer(v, 66, &p5, &d);
            offer(v, 7, &log_[5], &d);
        } else {
            offer(v, 4, &log_[i], &d);
        }
    }
    struct gossip_cert c = cert_at(8, 1, sk1);
    assert_int_equal(gossip_verifier_certify(v, 4, &c, &d), 0);
    assert_int_equal(d.ready, 8);
    assert_int_equal(d.refused, RFS_EFORGED);
    assert_int_equal(d.nculprits, 1);
    assert_int_equal(d.culprits[0], 66);
    assert_int_equal(take_all(v, 0), 8);

    /* Point first, the true copy of 10 only after the run failed: no one
     * is named at the failure, then only the poisoner. */
    struct cons_entry p10 = log_[10];
    p10.term = 99;
    c = cert_at(12, 2, sk2);
    assert_int_equal(gossip_verifier_certify(v, 4, &c, &d), 0);
    for (unsigned i = 9; i <= 12; i++) {
        offer(v, i == 10 ? 66 : 4, i == 10 ? &p10 : &log_[i], &d);
    }
    assert_int_equal(d.refused, RFS_EFORGED);
    assert_int_equal(d.nculprits, 0);
    assert_int_equal(d.ready, 0);
    assert_int_equal(gossip_verifier_gap(v), 9); /* Asked for again. */
    offer(v, 4, &log_[11], &d); /* The same copy again changes nothing. */
    assert_int_equal(d.refused, 0);
    struct cons_entry p10b = p10;
    p10b.term = 98;
    offer(v, 66, &p10b, &d); /* Nor a second copy of 10 from one sender. */
    assert_int_equal(d.refused, 0);
    assert_int_equal(gossip_verifier_gap(v), 9);
    offer(v, 5, &log_[10], &d);
    assert_int_equal(d.ready, 4);
    assert_int_equal(d.nculprits, 1);
    assert_int_equal(d.culprits[0], 66);
    assert_int_equal(take_all(v, 8), 12);

    /* A peer that sent the whole failing run alone is proven wrong at
     * once, and its copies are dropped. */
    struct cons_entry u13 = log_[13], u14 = log_[14];
    u13.term = u14.term = 99;
    offer(v, 67, &u13, &d);
    offer(v, 4, &log_[13], &d);
    offer(v, 67, &u14, &d);
    c = cert_at(14, 2, sk2);
    assert_int_equal(gossip_verifier_certify(v, 4, &c, &d), 0);
    assert_int_equal(d.refused, RFS_EFORGED);
    assert_int_equal(d.nculprits, 1);
    assert_int_equal(d.culprits[0], 67);
    assert_int_equal(gossip_verifier_gap(v), 13);
    offer(v, 4, &log_[14], &d);
    assert_int_equal(d.ready, 2);
    assert_int_equal(d.refused, 0);
    assert_int_equal(take_all(v, 12), 14);
    gossip_verifier_free(v);
}

/* A commit point signed by a key outside the configuration, an altered
 * point, or a signer id that does not match its key: refused, nothing
 * released, the forwarder named. */
static void test_bad_commit_points_refused(void **state)
{
    (void)state;
    struct gossip_verifier *v = fresh();
    struct gossip_verdict d;
    for (unsigned i = 1; i <= 8; i++) {
        offer(v, 4, &log_[i], &d);
    }
    struct gossip_cert bad[4];
    bad[0] = cert_at(8, 9, sk9); /* Not a voter. */
    bad[1] = cert_at(8, 1, sk9); /* Claims voter 1, signed by 9. */
    bad[2] = cert_at(8, 1, sk1);
    bad[2].index = 7; /* Altered after signing. */
    bad[3] = cert_at(8, 2, sk2);
    bad[3].hash[0] ^= 1;
    for (unsigned k = 0; k < 4; k++) {
        assert_int_equal(gossip_verifier_certify(v, 55, &bad[k], &d), 0);
        assert_int_equal(d.refused, RFS_EAUTH);
        /* A signer not in the configuration here names no one: it may be
         * a voter of a configuration not applied here yet. */
        assert_int_equal(d.nculprits, k == 0 ? 0 : 1);
        if (k > 0) {
            assert_int_equal(d.culprits[0], 55);
        }
        assert_int_equal(d.ready, 0);
    }
    assert_int_equal(gossip_verifier_applied(v, NULL), 0);
    /* With voter 2 removed from the configuration, its points no longer
     * count. */
    assert_int_equal(gossip_verifier_set_voters(v, keys, 1), 0);
    struct gossip_cert c = cert_at(8, 2, sk2);
    assert_int_equal(gossip_verifier_certify(v, 4, &c, &d), 0);
    assert_int_equal(d.refused, RFS_EAUTH);
    assert_int_equal(d.nculprits, 0); /* Its forwarder is not banned. */
    c = cert_at(8, 1, sk1);
    assert_int_equal(gossip_verifier_certify(v, 4, &c, &d), 0);
    assert_int_equal(d.ready, 8);
    gossip_verifier_free(v);
}

/* An observer far behind: the newest point is beyond its window, but the
 * lower points it holds let it release run by run. */
static void test_far_behind_releases_run_by_run(void **state)
{
    (void)state;
    struct gossip_verifier *v = fresh();
    struct gossip_verdict d;
    for (rfs_index_t i = N; i >= 5; i -= 5) {
        struct gossip_cert c = cert_at(i, 1, sk1);
        assert_int_equal(gossip_verifier_certify(v, 4, &c, &d), 0);
        assert_int_equal(d.refused, 0);
    }
    assert_int_equal(gossip_verifier_proven(v), N);
    rfs_index_t got = 0;
    for (unsigned i = 1; i <= N; i++) {
        offer(v, 4, &log_[i], &d);
        assert_int_equal(d.ready, i % 5 == 0 ? 5 : 0);
        got = take_all(v, got);
    }
    assert_int_equal(got, N);
    /* Entries at or below the applied index are ignored. */
    offer(v, 4, &log_[3], &d);
    assert_int_equal(d.ready, 0);
    gossip_verifier_free(v);
}

/* Beyond the window: ignored until the caller takes what is released. */
static void test_window_bounds_memory(void **state)
{
    (void)state;
    struct gossip_verifier *v = fresh();
    struct gossip_verdict d;
    struct cons_entry far = log_[1];
    far.index = GOSSIP_WINDOW + 1;
    offer(v, 4, &far, &d);
    assert_int_equal(gossip_verifier_gap(v), 1);
    far.index = GOSSIP_WINDOW;
    offer(v, 4, &far, &d); /* Inside: held. */
    gossip_verifier_free(v); /* Frees what it holds (ASan checks). */
}

/* A peer stuffing the window far ahead with large entries (the review's
 * 4096 pushes of an 8 MiB entry each: 32 GiB held) is held to the byte
 * budget, and the honest low entries that arrive after it still get in,
 * pushing its junk out, and are released. */
static void test_held_bytes_bounded(void **state)
{
    (void)state;
    struct gossip_verifier *v = fresh();
    struct gossip_verdict d;
    static char junk[256 << 10];
    memset(junk, 'j', sizeof(junk));
    for (rfs_index_t i = N + 1; i <= GOSSIP_WINDOW; i++) {
        struct cons_entry e = {.term = 9, .index = i,
                               .type = CONS_ENTRY_NORMAL,
                               .data = {.base = junk, .len = sizeof(junk)}};
        offer(v, 7, &e, &d);
        assert_true(gossip_verifier_held_bytes(v) <= GOSSIP_HELD_MAX_BYTES);
    }
    assert_true(gossip_verifier_held_bytes(v) >
                GOSSIP_HELD_MAX_BYTES - sizeof(junk));
    /* The honest run, one entry at a time, then its point. */
    struct gossip_cert c = cert_at(N, 1, sk1);
    for (rfs_index_t i = 1; i <= N; i++) {
        offer(v, 3, &log_[i], &d);
        assert_true(gossip_verifier_held_bytes(v) <= GOSSIP_HELD_MAX_BYTES);
    }
    assert_int_equal(gossip_verifier_certify(v, 1, &c, &d), 0);
    assert_int_equal(d.ready, N);
    assert_int_equal(take_all(v, 0), N);
    gossip_verifier_free(v);
}

/* An entry larger than the whole budget still passes when the next
 * release needs it: the lowest missing entry under a held commit point. */
static void test_entry_above_budget_passes_alone(void **state)
{
    (void)state;
    size_t len = GOSSIP_HELD_MAX_BYTES + 1;
    char *big = malloc(len);
    assert_non_null(big);
    memset(big, 'b', len);
    struct cons_entry e = {.term = 1, .index = 1, .type = CONS_ENTRY_NORMAL,
                           .data = {.base = big, .len = len}};
    uint8_t h[GOSSIP_HASH_BYTES];
    store_chain_next(chain[0], &e, h);
    struct gossip_cert c = {.index = 1, .term = 1, .signer = 1};
    memcpy(c.hash, h, sizeof(h));
    gossip_cert_sign(&c, sk1);
    struct gossip_verifier *v = fresh();
    struct gossip_verdict d;
    offer(v, 3, &e, &d); /* No point yet: not needed by a release. */
    assert_int_equal(gossip_verifier_gap(v), 1);
    assert_int_equal(gossip_verifier_certify(v, 1, &c, &d), 0);
    offer(v, 3, &e, &d);
    assert_int_equal(d.ready, 1);
    struct cons_entry got;
    assert_true(gossip_verifier_take(v, &got));
    assert_int_equal(got.data.len, len);
    rfs_free(got.data.base);
    assert_int_equal(gossip_verifier_held_bytes(v), 0);
    gossip_verifier_free(v);
    free(big);
}

/* Messages round-trip; every truncation and trailing byte is refused. */
static void test_msg_codec(void **state)
{
    (void)state;
    struct gossip_msg m = {.kind = GOSSIP_PUSH, .from = 12,
                           .entries = &log_[3], .n_entries = 4,
                           .has_cert = true, .cert = cert_at(6, 1, sk1)};
    struct rfs_buf b;
    assert_int_equal(gossip_msg_encode(&m, &b), 0);
    struct cons_entry es[8];
    struct gossip_msg r;
    assert_int_equal(gossip_msg_decode(&b, &r, es, 8), 0);
    assert_int_equal(r.kind, GOSSIP_PUSH);
    assert_int_equal(r.from, 12);
    assert_int_equal(r.n_entries, 4);
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(es[i].index, 3 + i);
        assert_memory_equal(es[i].data.base, log_[3 + i].data.base,
                            log_[3 + i].data.len);
    }
    assert_true(r.has_cert);
    assert_int_equal(gossip_cert_verify(&r.cert, keys, 2), 0);
    assert_int_equal(gossip_msg_decode(&b, &r, es, 3), RFS_EMALFORMED);
    for (size_t len = 0; len < b.len; len++) {
        struct rfs_buf t = {.base = b.base, .len = len};
        assert_int_equal(gossip_msg_decode(&t, &r, es, 8), RFS_EMALFORMED);
    }
    /* Entries out of order inside one message. */
    uint8_t *p = b.base;
    p[9 + 4 + 8] ^= 0x7; /* The first entry's index. */
    assert_int_equal(gossip_msg_decode(&b, &r, es, 8), RFS_EMALFORMED);
    rfs_free(b.base);

    struct gossip_msg dg = {.kind = GOSSIP_DIGEST, .from = 3, .applied = 40,
                            .proven = 45};
    assert_int_equal(gossip_msg_encode(&dg, &b), 0);
    assert_int_equal(gossip_msg_decode(&b, &r, es, 8), 0);
    assert_int_equal(r.applied, 40);
    assert_int_equal(r.proven, 45);
    rfs_free(b.base);
    struct gossip_msg pl = {.kind = GOSSIP_PULL, .from = 3, .after = 17,
                            .max = 256};
    assert_int_equal(gossip_msg_encode(&pl, &b), 0);
    assert_int_equal(gossip_msg_decode(&b, &r, es, 8), 0);
    assert_int_equal(r.after, 17);
    assert_int_equal(r.max, 256);
    ((uint8_t *)b.base)[0] = 9; /* Unknown kind. */
    assert_int_equal(gossip_msg_decode(&b, &r, es, 8), RFS_EMALFORMED);
    rfs_free(b.base);
    struct gossip_msg unknown = {.kind = 42};
    assert_int_equal(gossip_msg_encode(&unknown, &b), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_binds_every_field),
        cmocka_unit_test(test_release_in_order_once_proven),
        cmocka_unit_test(test_forged_entries_refused_and_named),
        cmocka_unit_test(test_poisoner_alone_named),
        cmocka_unit_test(test_bad_commit_points_refused),
        cmocka_unit_test(test_far_behind_releases_run_by_run),
        cmocka_unit_test(test_window_bounds_memory),
        cmocka_unit_test(test_held_bytes_bounded),
        cmocka_unit_test(test_entry_above_budget_passes_alone),
        cmocka_unit_test(test_msg_codec),
    };
    return cmocka_run_group_tests_name("gossip", tests, group_setup, NULL);
}
