/*
 * Dissemination (consensus/spread.h) in simulated time: 3 voters and tens of
 * observers on a lossy network with 1 to 4 ms of delay. Every observer must
 * release every committed entry, in order and unchanged, and end with the
 * voters' chain hash; the leader's bytes per entry must not grow with the
 * number of observers; kills, a cut and a leader change must not stop it; a
 * peer pushing forged entries is refused and named. Deterministic: the
 * seeds are fixed, so a failure replays.
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
#include "../../../consensus/spread.h"

#define VOTERS 3
#define OBS_MAX 64
#define NODES (VOTERS + OBS_MAX + 1)
#define LOG_MAX 20000
#define HOSTILE 200

struct msg {
    uint64_t at;
    rfs_nodeid_t from, to;
    struct rfs_buf bytes;
};

struct sim {
    unsigned nobs;
    double loss;
    uint64_t rng;
    /* The committed log, as the voters applied it. */
    struct cons_entry log[LOG_MAX + 1];
    char data[LOG_MAX + 1][80];
    uint64_t committed_at[LOG_MAX + 1];
    rfs_index_t last;
    uint8_t chain[GOSSIP_HASH_BYTES]; /* chain(last) */
    /* Nodes: voters 1..3, observers 101.. */
    struct spread *sp[NODES];
    rfs_nodeid_t id[NODES];
    bool dead[NODES];
    bool cut[NODES];
    /* No connection from slot i to slot j: what i sends j is lost (each
     * node sends on the connection it dialed, so this is one way). */
    bool unreach[NODES][NODES];
    uint8_t sk[VOTERS][GOSSIP_SK_BYTES];
    struct gossip_key keys[VOTERS];
    int leader; /* Slot of the voter counted as leader. */
    uint64_t leader_bytes;
    uint64_t voter_in_bytes; /* Delivered to the leader. */
    uint64_t msgs;           /* Sent, by anyone. */
    rfs_index_t leader_from; /* First entry committed under this leader. */
    /* Observers' progress. */
    rfs_index_t got[NODES];
    uint8_t got_hash[NODES][GOSSIP_HASH_BYTES];
    uint32_t *lags;
    size_t nlags, caplags;
    /* In flight. */
    struct msg *q;
    size_t nq, capq;
    uint64_t now;
    uint64_t refusals;
};

static uint64_t rnd(struct sim *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned slots(const struct sim *s)
{
    return VOTERS + s->nobs;
}

static int slot_of(const struct sim *s, rfs_nodeid_t id)
{
    for (unsigned i = 0; i < slots(s); i++) {
        if (s->id[i] == id) {
            return (int)i;
        }
    }
    return -1;
}

/* An observer knows the voters and 6 other observers at random, as a seed
 * list would give it; whoever calls it adds itself. */
static void observer_start(struct sim *s, unsigned i, rfs_index_t applied,
                           const uint8_t *hash)
{
    struct spread_options o = {.self = s->id[i], .seed = 77 + i};
    s->sp[i] = spread_new(&o, applied, hash);
    assert_non_null(s->sp[i]);
    assert_int_equal(spread_set_voters(s->sp[i], s->keys, VOTERS), 0);
    rfs_nodeid_t peers[VOTERS + 6];
    unsigned n = 0;
    for (unsigned v = 0; v < VOTERS; v++) {
        peers[n++] = s->id[v];
    }
    for (unsigned k = 0; k < 6; k++) {
        peers[n++] = s->id[VOTERS + rnd(s) % s->nobs];
    }
    assert_int_equal(spread_set_peers(s->sp[i], peers, n), 0);
}

static void sim_init(struct sim *s, unsigned nobs, double loss, uint64_t seed)
{
    memset(s, 0, sizeof(*s));
    s->nobs = nobs;
    s->loss = loss;
    s->rng = seed;
    rfs_nodeid_t obs_ids[OBS_MAX];
    for (unsigned v = 0; v < VOTERS; v++) {
        s->id[v] = v + 1;
        s->keys[v].id = v + 1;
        gossip_keypair(s->keys[v].pk, s->sk[v]);
    }
    for (unsigned k = 0; k < nobs; k++) {
        s->id[VOTERS + k] = 101 + k;
        obs_ids[k] = 101 + k;
    }
    uint8_t zero[GOSSIP_HASH_BYTES] = {0};
    for (unsigned v = 0; v < VOTERS; v++) {
        struct spread_options o = {.self = s->id[v], .voter = true,
                                   .seed = 5 + v};
        s->sp[v] = spread_new(&o, 0, zero);
        assert_non_null(s->sp[v]);
        spread_set_key(s->sp[v], s->sk[v]);
        assert_int_equal(spread_set_peers(s->sp[v], obs_ids, nobs), 0);
    }
    for (unsigned k = 0; k < nobs; k++) {
        observer_start(s, VOTERS + k, 0, zero);
    }
}

static void sim_free(struct sim *s)
{
    for (unsigned i = 0; i < NODES; i++) {
        spread_free(s->sp[i]);
    }
    for (size_t k = 0; k < s->nq; k++) {
        rfs_free(s->q[k].bytes.base);
    }
    rfs_free(s->q);
    rfs_free(s->lags);
    for (rfs_index_t i = 1; i <= s->last; i++) {
        (void)i;
    }
}

static void send_all(struct sim *s, unsigned i)
{
    unsigned n;
    const struct spread_out *out = spread_outbox(s->sp[i], &n);
    for (unsigned k = 0; k < n; k++) {
        if ((int)i == s->leader) {
            s->leader_bytes += out[k].bytes.len;
        }
        int to = slot_of(s, out[k].to);
        s->msgs++;
        if (to == s->leader) {
            s->voter_in_bytes += out[k].bytes.len;
        }
        bool lost = (double)(rnd(s) % 10000) / 10000.0 < s->loss;
        if (to < 0 || lost || s->cut[i] || s->cut[to] || s->unreach[i][to]) {
            continue;
        }
        if (s->nq == s->capq) {
            s->capq = s->capq ? 2 * s->capq : 1024;
            s->q = rfs_realloc(s->q, s->capq * sizeof(*s->q));
            assert_non_null(s->q);
        }
        struct msg *m = &s->q[s->nq++];
        m->at = s->now + 1 + rnd(s) % 4;
        m->from = s->id[i];
        m->to = out[k].to;
        m->bytes.base = rfs_memdup(out[k].bytes.base, out[k].bytes.len);
        m->bytes.len = out[k].bytes.len;
    }
    spread_outbox_clear(s->sp[i]);
}

/* Take what observer slot i released: in order, equal to the log. */
static void check_released(struct sim *s, unsigned i)
{
    struct cons_entry e;
    while (spread_take(s->sp[i], &e)) {
        assert_int_equal(e.index, s->got[i] + 1);
        assert_true(e.index <= s->last);
        assert_int_equal(e.data.len, s->log[e.index].data.len);
        assert_memory_equal(e.data.base, s->log[e.index].data.base,
                            e.data.len);
        s->got[i] = e.index;
        if (s->nlags == s->caplags) {
            s->caplags = s->caplags ? 2 * s->caplags : 4096;
            s->lags = rfs_realloc(s->lags, s->caplags * sizeof(*s->lags));
            assert_non_null(s->lags);
        }
        s->lags[s->nlags++] = (uint32_t)(s->now - s->committed_at[e.index]);
        rfs_free(e.data.base);
    }
    spread_applied_index(s->sp[i], s->got_hash[i]);
}

static void deliver(struct sim *s)
{
    size_t k = 0;
    while (k < s->nq) {
        struct msg m = s->q[k];
        if (m.at > s->now) {
            k++;
            continue;
        }
        s->q[k] = s->q[--s->nq];
        int to = slot_of(s, m.to);
        if (to >= 0 && !s->dead[to] && !s->cut[to]) {
            struct gossip_msg gm;
            struct cons_entry es[GOSSIP_MSG_ENTRIES_MAX];
            assert_int_equal(
                gossip_msg_decode(&m.bytes, &gm, es, GOSSIP_MSG_ENTRIES_MAX),
                0);
            assert_int_equal(spread_recv(s->sp[to], m.from, &gm, s->now), 0);
            if (to >= VOTERS) {
                check_released(s, (unsigned)to);
            }
            send_all(s, (unsigned)to);
        }
        rfs_free(m.bytes.base);
    }
}

/* The cluster commits 0 to 3 entries this millisecond; every live voter
 * applies them. */
static void commit_some(struct sim *s)
{
    unsigned k = (unsigned)(rnd(s) % 4);
    struct cons_entry batch[4];
    for (unsigned j = 0; j < k && s->last < LOG_MAX; j++) {
        rfs_index_t i = ++s->last;
        int len = snprintf(s->data[i], sizeof(s->data[i]),
                           "put /srv/registry/host%u web=10.0.%u.%u:8080",
                           (unsigned)(i % 97), (unsigned)(i % 251),
                           (unsigned)(i % 13));
        s->log[i] = (struct cons_entry){.term = 1, .index = i,
                                        .type = CONS_ENTRY_NORMAL,
                                        .data = {s->data[i], (size_t)len}};
        s->committed_at[i] = s->now;
        uint8_t next[GOSSIP_HASH_BYTES];
        store_chain_next(s->chain, &s->log[i], next);
        memcpy(s->chain, next, GOSSIP_HASH_BYTES);
        batch[j] = s->log[i];
    }
    for (unsigned v = 0; v < VOTERS; v++) {
        if (!s->dead[v] && k > 0) {
            assert_int_equal(spread_applied(s->sp[v], batch, k, s->now), 0);
        }
    }
}

static void step(struct sim *s, bool commit)
{
    s->now++;
    if (commit) {
        commit_some(s);
    }
    for (unsigned i = 0; i < slots(s); i++) {
        if (!s->dead[i]) {
            assert_int_equal(spread_tick(s->sp[i], s->now), 0);
            send_all(s, i);
        }
    }
    deliver(s);
}

static bool all_caught_up(const struct sim *s)
{
    for (unsigned i = VOTERS; i < slots(s); i++) {
        if (!s->dead[i] && !s->cut[i] && s->got[i] != s->last) {
            return false;
        }
    }
    return true;
}

/* Run: commit for `ms`, then up to 30 s more until every observer caught
 * up. The time it took after the last commit, in ms. */
static uint64_t run(struct sim *s, uint64_t ms)
{
    uint64_t end = s->now + ms;
    while (s->now < end) {
        step(s, true);
    }
    uint64_t t0 = s->now;
    while (!all_caught_up(s) && s->now < t0 + 30000) {
        step(s, false);
    }
    return s->now - t0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint32_t pct(struct sim *s, double p)
{
    qsort(s->lags, s->nlags, sizeof(*s->lags), cmp_u32);
    return s->nlags ? s->lags[(size_t)(p * (double)(s->nlags - 1))] : 0;
}

static bool identical(const struct sim *s)
{
    for (unsigned i = VOTERS; i < slots(s); i++) {
        if (s->got[i] != s->last ||
            memcmp(s->got_hash[i], s->chain, GOSSIP_HASH_BYTES) != 0) {
            return false;
        }
    }
    return true;
}

/* The mean size of an entry alone, as a learner fed by the leader would
 * receive it (index, term, type, length, data). */
static double entry_bytes(const struct sim *s)
{
    double sum = 0;
    for (rfs_index_t i = 1; i <= s->last; i++) {
        sum += 8 + 8 + 1 + 4 + (double)s->log[i].data.len;
    }
    return s->last ? sum / (double)s->last : 0;
}

static void report(struct sim *s, const char *what)
{
    double per = (double)s->leader_bytes / (double)(s->last - s->leader_from);
    uint32_t p50 = pct(s, 0.50), p99 = pct(s, 0.99);
    printf("spread-sim (%s): observers=%u entries=%llu lag_p50_ms=%u "
           "lag_p99_ms=%u leader_bytes_per_entry=%.0f (fed by the leader: "
           "%.0f; into the leader: %.1f) all_identical=%s\n",
           what, s->nobs, (unsigned long long)s->last, p50, p99, per,
           entry_bytes(s) * s->nobs,
           (double)s->voter_in_bytes / (double)(s->last - s->leader_from),
           identical(s) ? "yes" : "no");
}

static int group_setup(void **state)
{
    (void)state;
    return sodium_init() < 0 ? -1 : 0;
}

static void test_thirty_observers_converge(void **state)
{
    (void)state;
    static struct sim s;
    sim_init(&s, 30, 0.02, 1);
    uint64_t tail = run(&s, 4000);
    report(&s, "2% loss");
    assert_true(identical(&s));
    assert_true(tail < 3000); /* Pulls repair within a few digests. */
    double per = (double)s.leader_bytes / (double)s.last;
    /* fanout (3) copies of each entry and a point per push: far below the
     * 30 copies a leader feeding every observer sends. */
    assert_true(per < 6 * entry_bytes(&s));
    assert_true(pct(&s, 0.5) < 60);
    sim_free(&s);
}

/* The leader's bytes per entry stay flat from 10 to 60 observers. */
static void test_leader_bytes_flat(void **state)
{
    (void)state;
    static struct sim a, b;
    sim_init(&a, 10, 0.0, 2);
    run(&a, 3000);
    report(&a, "no loss");
    sim_init(&b, 60, 0.0, 2);
    run(&b, 3000);
    report(&b, "no loss");
    assert_true(identical(&a) && identical(&b));
    double pa = (double)a.leader_bytes / (double)a.last;
    double pb = (double)b.leader_bytes / (double)b.last;
    assert_true(pb < 1.5 * pa);
    /* Nor does what the leader receives: observers never push to voters
     * (it would come back to the leader as N copies of each run); what is
     * left is digests and pulls, a few bytes per entry. */
    double ia = (double)a.voter_in_bytes / (double)a.last;
    double ib = (double)b.voter_in_bytes / (double)b.last;
    assert_true(ia < 20 && ib < 20);
    sim_free(&a);
    sim_free(&b);
}

/* Observer 101 killed for 1 s and restarted from what it applied (its
 * store); observer 105 cut off for 2 s; the leader (voter 1) dies and
 * voter 2 leads on. */
static void test_kills_cut_and_leader_change(void **state)
{
    (void)state;
    static struct sim s;
    sim_init(&s, 30, 0.02, 3);
    run(&s, 1000);
    s.dead[VOTERS] = true;
    run(&s, 1000);
    rfs_index_t kept = s.got[VOTERS];
    uint8_t hash[GOSSIP_HASH_BYTES];
    memcpy(hash, s.got_hash[VOTERS], sizeof(hash));
    spread_free(s.sp[VOTERS]);
    observer_start(&s, VOTERS, kept, hash);
    s.dead[VOTERS] = false;
    s.cut[VOTERS + 4] = true;
    run(&s, 1000);
    s.dead[0] = true;
    s.leader = 1;
    s.leader_bytes = 0;
    s.leader_from = s.last;
    run(&s, 1000);
    s.cut[VOTERS + 4] = false;
    uint64_t tail = run(&s, 1000);
    report(&s, "kills, a cut, a leader change");
    assert_true(identical(&s));
    assert_true(tail < 5000);
    sim_free(&s);
}

/* Observers 101 to 105 are cut off while 40 entries commit. Node 200 then
 * pushes them forged copies of those entries (altered data, the right
 * indexes) with the true commit point a voter signed at the end (points
 * are public), and, to observer 101, a point of its own key. They refuse,
 * name node 200, release nothing of it and push none of it on; healed,
 * they end identical to the voters. */
static void test_forged_pushes_refused(void **state)
{
    (void)state;
    static struct sim s;
    sim_init(&s, 30, 0.0, 4);
    run(&s, 500);
    for (unsigned v = 0; v < 5; v++) {
        s.cut[VOTERS + v] = true;
    }
    rfs_index_t base = s.last;
    while (s.last < base + 40) {
        step(&s, true);
    }
    rfs_index_t at = s.last;
    struct gossip_cert real = {.index = at, .term = 1, .signer = 2};
    memcpy(real.hash, s.chain, GOSSIP_HASH_BYTES);
    gossip_cert_sign(&real, s.sk[1]);
    uint8_t pk[GOSSIP_PK_BYTES], sk[GOSSIP_SK_BYTES];
    gossip_keypair(pk, sk);
    for (unsigned v = 0; v < 5; v++) {
        unsigned i = VOTERS + v;
        rfs_index_t from = s.got[i];
        unsigned n = (unsigned)(at - from);
        struct cons_entry *forged = rfs_calloc(n, sizeof(*forged));
        char (*fdata)[40] = rfs_calloc(n, sizeof(*fdata));
        assert_true(forged != NULL && fdata != NULL);
        for (unsigned k = 0; k < n; k++) {
            forged[k] = s.log[from + 1 + k];
            if (k == n / 2) { /* One altered entry is enough. */
                snprintf(fdata[k], sizeof(fdata[k]), "put /srv/evil x");
                forged[k].data.base = fdata[k];
                forged[k].data.len = strlen(fdata[k]);
            }
        }
        struct gossip_msg m = {.kind = GOSSIP_PUSH, .from = HOSTILE,
                               .entries = forged, .n_entries = n,
                               .has_cert = true, .cert = real};
        if (v == 0) { /* An unknown signer's point. */
            struct gossip_cert own = real;
            own.signer = HOSTILE;
            gossip_cert_sign(&own, sk);
            m.cert = own;
        }
        struct spread_stats st0;
        spread_get_stats(s.sp[i], &st0);
        assert_int_equal(spread_recv(s.sp[i], HOSTILE, &m, s.now), 0);
        check_released(&s, i);
        assert_int_equal(s.got[i], from); /* Nothing released. */
        printf("# observer %u refused: %s\n", (unsigned)s.id[i],
               spread_refusal(s.sp[i]));
        assert_true(strstr(spread_refusal(s.sp[i]), "200") != NULL);
        struct spread_stats st;
        spread_get_stats(s.sp[i], &st);
        assert_true(st.refusals > 0);
        assert_int_equal(st.entries_out, st0.entries_out); /* Nothing on. */
        spread_outbox_clear(s.sp[i]); /* Its pulls go nowhere (cut). */
        rfs_free(forged);
        rfs_free(fdata);
    }
    for (unsigned v = 0; v < 5; v++) {
        s.cut[VOTERS + v] = false;
    }
    run(&s, 500);
    report(&s, "forged pushes");
    assert_true(identical(&s));
    sim_free(&s);
}

/* Two observers 1,500 entries apart (more than pull_max) and no voter to
 * ask: the one behind pulls piece by piece from the first index it lacks,
 * the other's point proves the lot at the end, and the exchange stays a
 * few messages (pulling again from the applied index, a piece that cannot
 * reach the point, went on forever). */
static void test_far_behind_observer_catches_up_from_a_peer(void **state)
{
    (void)state;
    static struct sim s;
    sim_init(&s, 2, 0.0, 5);
    s.cut[VOTERS + 1] = true;
    run(&s, 1000);
    for (unsigned v = 0; v < VOTERS; v++) {
        s.dead[v] = true;
    }
    s.cut[VOTERS + 1] = false;
    uint64_t msgs = s.msgs;
    run(&s, 0);
    printf("# %llu entries behind, caught up in %llu messages\n",
           (unsigned long long)s.last,
           (unsigned long long)(s.msgs - msgs));
    assert_int_equal(s.got[VOTERS + 1], s.last);
    assert_true(s.last > 1000);
    assert_true(s.msgs - msgs < 100);
    sim_free(&s);
}

/* Most peers are out of reach (a firewall lets each observer reach only the
 * next two, and the voters only the first two observers): each node is
 * told which (spread_set_reachable), so its fanout goes to peers it can
 * reach and every entry reaches every observer by pushes alone, well
 * within a digest period. A fanout spent on unreachable peers leaves most
 * entries to the digests' pulls, a second or more late. */
static void test_pushes_go_to_reachable_peers(void **state)
{
    (void)state;
    static struct sim s;
    const unsigned nobs = 12;
    sim_init(&s, nobs, 0.0, 3);
    rfs_nodeid_t all[VOTERS + OBS_MAX];
    for (unsigned i = 0; i < slots(&s); i++) {
        all[i] = s.id[i];
    }
    for (unsigned i = 0; i < slots(&s); i++) {
        /* Everyone knows everyone, as the configuration tells it. */
        assert_int_equal(spread_set_peers(s.sp[i], all, slots(&s)), 0);
        for (unsigned j = 0; j < slots(&s); j++) {
            bool up;
            if (i < VOTERS) {
                up = j == VOTERS || j == VOTERS + 1;
            } else {
                up = j < VOTERS || j == i + 1 || j == i + 2;
            }
            s.unreach[i][j] = !up;
            spread_set_reachable(s.sp[i], s.id[j], up);
        }
    }
    run(&s, 2000);
    report(&s, "most peers unreachable");
    assert_true(identical(&s));
    /* A voter's point every 20 ms, then a few hops of 1 to 4 ms. */
    assert_true(pct(&s, 1.0) < 100);
    sim_free(&s);
}

/* The voters' Raft log, as spread_options.log_entry reads it. */
static const struct cons_entry *sim_log_entry(void *arg, rfs_index_t index)
{
    struct sim *s = arg;
    return index >= 1 && index <= s->last ? &s->log[index] : NULL;
}

/* An observer cut off while 3 times its peers' cache (512 entries) commits
 * catches up from a voter's log (spread_options.log_entry), each answer
 * proven by a point the voter signs at its end; a voter without the log
 * answers nothing (too_old) and the observer stays behind. Voter 1 reads
 * its log; voters 2 and 3 are down, so only it can answer. */
static void test_far_behind_observer_fed_from_a_voters_log(void **state)
{
    (void)state;
    static struct sim s;
    sim_init(&s, 2, 0.0, 11);
    uint8_t zero[GOSSIP_HASH_BYTES] = {0};
    spread_free(s.sp[0]);
    struct spread_options o = {.self = s.id[0], .voter = true, .seed = 5,
                               .cache = 512, .log_entry = sim_log_entry,
                               .log_arg = &s};
    s.sp[0] = spread_new(&o, 0, zero);
    assert_non_null(s.sp[0]);
    spread_set_key(s.sp[0], s.sk[0]);
    rfs_nodeid_t obs[2] = {s.id[VOTERS], s.id[VOTERS + 1]};
    assert_int_equal(spread_set_peers(s.sp[0], obs, 2), 0);
    s.dead[1] = s.dead[2] = true;
    s.cut[VOTERS + 1] = true;
    while (s.last < 3 * 512) {
        step(&s, true);
    }
    s.cut[VOTERS + 1] = false;
    run(&s, 0);
    struct spread_stats st;
    spread_get_stats(s.sp[0], &st);
    printf("# %llu entries behind: %llu answered from the log\n",
           (unsigned long long)s.last, (unsigned long long)st.from_log);
    assert_int_equal(s.got[VOTERS + 1], s.last);
    assert_memory_equal(s.got_hash[VOTERS + 1], s.chain, GOSSIP_HASH_BYTES);
    assert_true(st.from_log >= s.last - 512);
    sim_free(&s);
}

/* The one message in slot i's outbox, decoded (then cleared). */
static void only_message(struct sim *s, unsigned i, rfs_nodeid_t *to,
                         struct gossip_msg *m, struct cons_entry *es)
{
    unsigned n;
    const struct spread_out *out = spread_outbox(s->sp[i], &n);
    assert_int_equal(n, 1);
    *to = out[0].to;
    static uint8_t copy[1 << 16];
    assert_true(out[0].bytes.len <= sizeof(copy));
    memcpy(copy, out[0].bytes.base, out[0].bytes.len);
    struct rfs_buf b = {copy, out[0].bytes.len};
    spread_outbox_clear(s->sp[i]);
    assert_int_equal(gossip_msg_decode(&b, m, es, GOSSIP_MSG_ENTRIES_MAX), 0);
}

/* An observer whose gap lies below a peer observer's cache gets no entries
 * from it (it could not prove them): the peer answers the digest with its
 * own, and the asker takes its gap to a voter it can reach, which answers
 * from its log, instead of waiting for a digest to land on a voter. */
static void test_far_behind_digest_goes_to_a_voter(void **state)
{
    (void)state;
    static struct sim s;
    static struct cons_entry es[GOSSIP_MSG_ENTRIES_MAX];
    sim_init(&s, 2, 0.0, 13);
    unsigned a = VOTERS, b = VOTERS + 1;
    spread_free(s.sp[a]);
    /* A starts far ahead (from its store, say), B at 0: both keep the
     * default cache of 4,096. */
    struct spread_options o = {.self = s.id[a], .seed = 1};
    uint8_t h[GOSSIP_HASH_BYTES] = {7};
    s.sp[a] = spread_new(&o, 5000, h);
    assert_non_null(s.sp[a]);
    assert_int_equal(spread_set_voters(s.sp[a], s.keys, VOTERS), 0);
    rfs_nodeid_t peers[] = {1, 2, 3, s.id[b]};
    assert_int_equal(spread_set_peers(s.sp[a], peers, 4), 0);
    spread_set_reachable(s.sp[b], 2, false);
    spread_set_reachable(s.sp[b], 3, false);
    struct gossip_msg d = {.kind = GOSSIP_DIGEST, .from = s.id[b]};
    assert_int_equal(spread_recv(s.sp[a], s.id[b], &d, 1), 0);
    rfs_nodeid_t to;
    struct gossip_msg m;
    only_message(&s, a, &to, &m, es);
    assert_int_equal(to, s.id[b]);
    assert_int_equal(m.kind, GOSSIP_DIGEST);
    assert_int_equal(m.applied, 5000);
    assert_int_equal(spread_recv(s.sp[b], s.id[a], &m, 2), 0);
    only_message(&s, b, &to, &m, es);
    assert_int_equal(to, 1);
    assert_int_equal(m.kind, GOSSIP_PULL);
    assert_int_equal(m.after, 0);
    sim_free(&s);
}

/* A peer that claims to have applied far more than exists moves no
 * observer's known head (only proven indexes count), and gets at most one
 * pull per claim. */
static void test_lying_digest_changes_nothing(void **state)
{
    (void)state;
    static struct sim s;
    sim_init(&s, 10, 0.0, 6);
    unsigned i = VOTERS;
    unsigned pulls = 0, lies = 0;
    for (unsigned k = 0; k < 100; k++) {
        step(&s, true);
        struct gossip_msg m = {.kind = GOSSIP_DIGEST, .from = HOSTILE,
                               .applied = (rfs_index_t)1 << 60,
                               .proven = (rfs_index_t)1 << 60};
        send_all(&s, i);
        assert_int_equal(spread_recv(s.sp[i], HOSTILE, &m, s.now), 0);
        lies++;
        unsigned n;
        const struct spread_out *out = spread_outbox(s.sp[i], &n);
        for (unsigned j = 0; j < n; j++) {
            pulls += out[j].to == HOSTILE;
        }
        send_all(&s, i);
        assert_true(spread_known_head(s.sp[i]) <= s.last);
    }
    run(&s, 0);
    assert_true(pulls <= lies);
    assert_true(identical(&s));
    sim_free(&s);
}

/* A poisoner keeps pushing forged copies of the entries an observer lacks
 * ahead of the honest ones: once an honest copy proves its copy wrong it
 * is named, the observer stops listening to it for a while, and
 * converges. */
static void test_poisoner_is_ignored(void **state)
{
    (void)state;
    static struct sim s;
    sim_init(&s, 10, 0.0, 7);
    run(&s, 300);
    unsigned i = VOTERS;
    s.cut[i] = true;
    rfs_index_t base = s.last;
    while (s.last < base + 60) {
        step(&s, true);
    }
    s.cut[i] = false;
    for (unsigned k = 0; k < 400; k++) {
        rfs_index_t from = s.got[i];
        struct cons_entry forged[16];
        char fdata[16][24];
        unsigned n = 0;
        for (; n < 16 && from + 1 + n <= s.last; n++) {
            forged[n] = s.log[from + 1 + n];
            snprintf(fdata[n], sizeof(fdata[n]), "forged %u", k);
            forged[n].data.base = fdata[n];
            forged[n].data.len = strlen(fdata[n]);
        }
        struct gossip_msg m = {.kind = GOSSIP_PUSH, .from = HOSTILE,
                               .entries = forged, .n_entries = n};
        assert_int_equal(spread_recv(s.sp[i], HOSTILE, &m, s.now), 0);
        check_released(&s, i);
        send_all(&s, i);
        step(&s, k < 200);
    }
    run(&s, 0);
    struct spread_stats st;
    spread_get_stats(s.sp[i], &st);
    printf("# %llu refusals; %s\n", (unsigned long long)st.refusals,
           spread_refusal(s.sp[i]));
    assert_true(identical(&s));
    assert_true(st.refusals <= 5);
    sim_free(&s);
}

/* A peer asking in a loop: a voter holding 3,000 entries gets 20,000 PULLs
 * for one entry each, at one instant, from HOSTILE. It answers within the
 * peer's budget (at most its cache, then ANSWER_RATE pulls' worth per
 * digest period), counts the rest, and signs few points: a point it signed
 * already is given again to whoever asks for it, or an answer ends there
 * rather than at a new one. Another peer is metered apart. */
static void test_answers_metered_per_peer(void **state)
{
    (void)state;
    static struct sim s;
    sim_init(&s, 2, 0.0, 9);
    while (s.last < 3000) {
        step(&s, true);
    }
    run(&s, 0);
    struct spread *v = s.sp[0];
    spread_outbox_clear(v);
    struct spread_stats st0, st;
    spread_get_stats(v, &st0);
    uint64_t now = s.now + 1;
    for (unsigned k = 0; k < 20000; k++) {
        struct gossip_msg m = {.kind = GOSSIP_PULL, .from = HOSTILE,
                               .after = 1 + k % 2900, .max = 1};
        assert_int_equal(spread_recv(v, HOSTILE, &m, now), 0);
        spread_outbox_clear(v);
    }
    spread_get_stats(v, &st);
    uint64_t sent = st.entries_out - st0.entries_out;
    uint64_t signed_ = st.points_signed - st0.points_signed;
    printf("# 20000 one-entry pulls: %llu entries sent, %llu points signed, "
           "%llu answers refused\n", (unsigned long long)sent,
           (unsigned long long)signed_,
           (unsigned long long)(st.answers_refused - st0.answers_refused));
    assert_true(sent <= 4096);
    assert_true(signed_ <= 4096 / 32 + 1);
    assert_true(st.answers_refused - st0.answers_refused >= 19000);
    /* A digest period later, a little more. */
    struct gossip_msg m = {.kind = GOSSIP_PULL, .from = HOSTILE,
                           .after = 10, .max = 512};
    assert_int_equal(spread_recv(v, HOSTILE, &m, now + 1000), 0);
    spread_get_stats(v, &st0);
    assert_true(st0.entries_out > st.entries_out);
    /* Another peer asking the same is answered whole, with a point signed
     * already (an answer ends at the last point below what it asked). */
    spread_outbox_clear(v);
    m.from = s.id[VOTERS];
    assert_int_equal(spread_recv(v, s.id[VOTERS], &m, now + 1000), 0);
    spread_get_stats(v, &st);
    assert_int_equal(st.points_signed, st0.points_signed);
    assert_true(st.entries_out > st0.entries_out);
    assert_int_equal(st.answers_refused, st0.answers_refused);
    spread_outbox_clear(v);
    sim_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thirty_observers_converge),
        cmocka_unit_test(test_leader_bytes_flat),
        cmocka_unit_test(test_kills_cut_and_leader_change),
        cmocka_unit_test(test_forged_pushes_refused),
        cmocka_unit_test(test_far_behind_observer_catches_up_from_a_peer),
        cmocka_unit_test(test_pushes_go_to_reachable_peers),
        cmocka_unit_test(test_far_behind_observer_fed_from_a_voters_log),
        cmocka_unit_test(test_far_behind_digest_goes_to_a_voter),
        cmocka_unit_test(test_lying_digest_changes_nothing),
        cmocka_unit_test(test_poisoner_is_ignored),
        cmocka_unit_test(test_answers_metered_per_peer),
    };
    return cmocka_run_group_tests_name("spread", tests, group_setup, NULL);
}
