/*
 * spread: push with a bounded fan-out, digests and pulls (see spread.h).
 */
#include "spread.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "../common/heap.h"

#define PEERS_MAX 1024
#define VOTERS_MAX 64
/* How long a peer whose message the verifier refused is not listened to,
 * in digest periods: long enough that a poisoner cannot keep an observer
 * from the honest copies, short enough that a peer wrongly blamed (it
 * forwarded what another forged) comes back. */
#define BAN_DIGESTS 10
/* A voter reading its log (spread_options.log_entry) keeps the chain hash
 * of every MARK_EVERY-th index it applied: an answer from the log hashes
 * at most MARK_EVERY + pull_max entries to sign its point, and a million
 * entries cost 4,096 marks (160 KiB). At MARKS_MAX the older half goes. */
#define MARK_EVERY 256
#define MARKS_MAX 65536
/* Answers to a peer's DIGESTs and PULLs are metered, per peer, in entries:
 * a bucket holding ANSWER_BURST pulls' worth (pull_max entries each: 4,096
 * by default, so an honest observer far behind catches up at once),
 * refilled with ANSWER_RATE pulls' worth per digest period. Without it, one admitted peer asking in
 * a loop makes a node send its cache at line rate. A commit point signed
 * for an answer costs SIGN_COST entries of it: an Ed25519 signature costs
 * about as much as hashing that many small entries, and a peer asking for
 * one entry at a time must not make a voter sign at line rate either. */
#define ANSWER_BURST 8
#define ANSWER_RATE 2
#define SIGN_COST 32
/* Commit points a voter keeps once signed, to give again to any answer
 * ending at one of them (or ending there rather than at a new one). */
#define POINTS_KEPT 8

struct mark {
    rfs_index_t index;
    uint8_t hash[GOSSIP_HASH_BYTES]; /* chain(index) */
};

struct cached {
    struct cons_entry e; /* data owned */
    uint8_t hash[GOSSIP_HASH_BYTES]; /* chain(e.index) */
};

struct peer {
    rfs_nodeid_t id;
    rfs_index_t holds; /* The highest index it claimed to have applied. */
    bool voter;        /* Fed by Raft: never pushed to. */
    rfs_index_t pulled_after; /* The last pull sent to it, and until when */
    uint64_t pulled_until;    /* it is not repeated (no answer: lost). */
    uint64_t banned_until;    /* Sent something the verifier refused. */
    /* Its answer budget (ANSWER_RATE): entries times digest_ms, as of
     * budget_at; full when first metered. */
    uint64_t budget, budget_at;
    bool metered;
    /* No connection to it (spread_set_reachable): a push or a digest to it
     * would be lost, and the fanout it took would not reach anyone. */
    bool unreachable;
};

struct spread {
    struct spread_options o;
    rfs_index_t applied;
    uint8_t hash[GOSSIP_HASH_BYTES];
    /* Entries (applied - count, applied], entry i at ring[i % cap]. */
    struct cached *ring;
    unsigned count;
    struct peer *peers;
    unsigned npeers;
    struct gossip_verifier *v; /* Observers. */
    uint8_t sk[GOSSIP_SK_BYTES];
    bool has_key;
    rfs_index_t pushed_to; /* Voters: the last point pushed. */
    uint64_t last_point_ms;
    bool pointed;
    uint64_t next_digest_ms;
    uint64_t rng;
    rfs_index_t head; /* Proven: applied, or a valid point held. */
    rfs_nodeid_t voters[VOTERS_MAX];
    unsigned nvoters;
    struct gossip_cert points[POINTS_KEPT]; /* A voter's last points. */
    unsigned npoints, points_next;
    uint64_t now; /* The last time the caller passed. */
    int err;      /* An allocation failed mid-release: stuck, say so. */
    /* Released, not yet taken (observers). */
    struct cons_entry *rel;
    unsigned rel_head, rel_n, rel_cap;
    struct spread_out *out;
    unsigned nout, capout;
    char refusal[160];
    struct spread_stats st;
    /* Voters with log_entry: chain hashes at MARK_EVERY steps, ascending. */
    struct mark *marks;
    unsigned nmarks, capmarks;
};

static uint64_t next_rand(struct spread *s)
{
    /* splitmix64: good enough to pick peers, and replayable. */
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Remember chain(index) = hash. Best effort: without memory, answers from
 * the log start at a later mark (older pulls get too_old). */
static void add_mark(struct spread *s, rfs_index_t index,
                     const uint8_t hash[GOSSIP_HASH_BYTES])
{
    if (s->nmarks == MARKS_MAX) {
        memmove(s->marks, s->marks + MARKS_MAX / 2,
                (MARKS_MAX / 2) * sizeof(*s->marks));
        s->nmarks = MARKS_MAX / 2;
    }
    if (s->nmarks == s->capmarks) {
        unsigned cap = s->capmarks ? 2 * s->capmarks : 64;
        struct mark *m = rfs_realloc(s->marks, cap * sizeof(*m));
        if (m == NULL) {
            return;
        }
        s->marks = m;
        s->capmarks = cap;
    }
    s->marks[s->nmarks].index = index;
    memcpy(s->marks[s->nmarks].hash, hash, GOSSIP_HASH_BYTES);
    s->nmarks++;
}

struct spread *spread_new(const struct spread_options *o, rfs_index_t applied,
                          const uint8_t hash[GOSSIP_HASH_BYTES])
{
    struct spread_options d = *o;
    d.fanout = d.fanout ? d.fanout : 3;
    d.cache = d.cache ? d.cache : 4096;
    d.pull_max = d.pull_max ? d.pull_max : 512;
    d.digest_ms = d.digest_ms ? d.digest_ms : 1000;
    d.point_ms = d.point_ms ? d.point_ms : 20;
    if (d.fanout > 64 || d.pull_max > GOSSIP_MSG_ENTRIES_MAX ||
        d.cache < d.pull_max) {
        return NULL;
    }
    struct spread *s = rfs_calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->o = d;
    s->applied = applied;
    s->pushed_to = applied;
    s->head = applied;
    memcpy(s->hash, hash, GOSSIP_HASH_BYTES);
    s->rng = d.seed ^ ((uint64_t)d.self << 32);
    s->ring = rfs_calloc(d.cache, sizeof(*s->ring));
    s->peers = rfs_calloc(PEERS_MAX, sizeof(*s->peers));
    if (d.voter && d.log_entry != NULL) {
        add_mark(s, applied, hash); /* Where the log's answers can start. */
    }
    if (!d.voter) {
        s->v = gossip_verifier_new(applied, hash);
    }
    if (s->ring == NULL || s->peers == NULL || (!d.voter && s->v == NULL)) {
        spread_free(s);
        return NULL;
    }
    return s;
}

void spread_free(struct spread *s)
{
    if (s == NULL) {
        return;
    }
    if (s->ring != NULL) {
        for (unsigned i = 0; i < s->o.cache; i++) {
            rfs_free(s->ring[i].e.data.base);
        }
    }
    rfs_free(s->ring);
    rfs_free(s->peers);
    rfs_free(s->marks);
    gossip_verifier_free(s->v);
    for (unsigned i = 0; i < s->rel_n; i++) {
        rfs_free(s->rel[(s->rel_head + i) % s->rel_cap].data.base);
    }
    rfs_free(s->rel);
    spread_outbox_clear(s);
    rfs_free(s->out);
    sodium_memzero(s->sk, sizeof(s->sk));
    rfs_free(s);
}

static struct peer *peer_get(struct spread *s, rfs_nodeid_t id, bool add)
{
    for (unsigned i = 0; i < s->npeers; i++) {
        if (s->peers[i].id == id) {
            return &s->peers[i];
        }
    }
    if (!add || id == s->o.self || id == 0 || s->npeers == PEERS_MAX) {
        return NULL;
    }
    s->peers[s->npeers] = (struct peer){.id = id};
    for (unsigned i = 0; i < s->nvoters; i++) {
        s->peers[s->npeers].voter |= s->voters[i] == id;
    }
    return &s->peers[s->npeers++];
}

int spread_set_peers(struct spread *s, const rfs_nodeid_t *ids, unsigned n)
{
    struct peer *old = rfs_calloc(s->npeers ? s->npeers : 1, sizeof(*old));
    if (old == NULL) {
        return -ENOMEM;
    }
    unsigned nold = s->npeers;
    if (nold > 0) { /* No peers yet: no array either. */
        memcpy(old, s->peers, nold * sizeof(*old));
    }
    s->npeers = 0;
    for (unsigned i = 0; i < n; i++) {
        struct peer *p = peer_get(s, ids[i], true);
        for (unsigned k = 0; p != NULL && k < nold; k++) {
            if (old[k].id == p->id) {
                /* What we knew still holds: its claim, a ban (a new
                 * configuration must not lift it), the pull in flight,
                 * whether we can reach it. */
                bool voter = p->voter;
                *p = old[k];
                p->voter = voter;
            }
        }
    }
    rfs_free(old);
    return 0;
}

void spread_set_reachable(struct spread *s, rfs_nodeid_t id, bool up)
{
    struct peer *p = peer_get(s, id, false);
    if (p != NULL) {
        p->unreachable = !up;
    }
}

int spread_set_voters(struct spread *s, const struct gossip_key *keys,
                      unsigned n)
{
    s->nvoters = 0;
    for (unsigned i = 0; i < n && i < VOTERS_MAX; i++) {
        s->voters[s->nvoters++] = keys[i].id;
    }
    for (unsigned k = 0; k < s->npeers; k++) {
        s->peers[k].voter = false;
        for (unsigned i = 0; i < s->nvoters; i++) {
            s->peers[k].voter |= s->voters[i] == s->peers[k].id;
        }
    }
    return s->v != NULL ? gossip_verifier_set_voters(s->v, keys, n) : 0;
}

void spread_set_key(struct spread *s, const uint8_t sk[GOSSIP_SK_BYTES])
{
    memcpy(s->sk, sk, GOSSIP_SK_BYTES);
    s->has_key = true;
}

/* ---- The cache ----------------------------------------------------------- */

static rfs_index_t cache_first(const struct spread *s)
{
    return s->applied - s->count + 1;
}

static const struct cached *cache_at(const struct spread *s, rfs_index_t i)
{
    return &s->ring[i % s->o.cache];
}

static int cache_add(struct spread *s, const struct cons_entry *e)
{
    if (e->index != s->applied + 1) {
        return -EINVAL;
    }
    void *copy = rfs_malloc(e->data.len ? e->data.len : 1);
    if (copy == NULL) {
        return -ENOMEM;
    }
    if (e->data.len > 0) { /* An empty entry (a no-op) may have no base. */
        memcpy(copy, e->data.base, e->data.len);
    }
    struct cached *c = &s->ring[e->index % s->o.cache];
    if (s->count == s->o.cache) {
        rfs_free(c->e.data.base);
    } else {
        s->count++;
    }
    c->e = *e;
    c->e.data.base = copy;
    store_chain_next(s->hash, e, c->hash);
    memcpy(s->hash, c->hash, GOSSIP_HASH_BYTES);
    s->applied = e->index;
    if (s->o.voter && s->o.log_entry != NULL && e->index % MARK_EVERY == 0) {
        add_mark(s, e->index, c->hash);
    }
    if (s->head < s->applied) {
        s->head = s->applied;
    }
    return 0;
}

/* ---- Sending ------------------------------------------------------------- */

static int queue(struct spread *s, rfs_nodeid_t to, const struct gossip_msg *m)
{
    if (s->nout == s->capout) {
        unsigned cap = s->capout ? 2 * s->capout : 16;
        struct spread_out *o = rfs_realloc(s->out, cap * sizeof(*o));
        if (o == NULL) {
            return -ENOMEM;
        }
        s->out = o;
        s->capout = cap;
    }
    struct rfs_buf b;
    int rv = gossip_msg_encode(m, &b);
    if (rv != 0) {
        return rv;
    }
    s->out[s->nout++] = (struct spread_out){.to = to, .bytes = b};
    s->st.msgs_out++;
    s->st.bytes_out += b.len;
    return 0;
}

/* The highest point this voter kept with after < index <= end, or NULL. */
static const struct gossip_cert *point_kept(const struct spread *s,
                                            rfs_index_t after, rfs_index_t end)
{
    const struct gossip_cert *best = NULL;
    for (unsigned i = 0; i < s->npoints; i++) {
        const struct gossip_cert *c = &s->points[i];
        if (c->index > after && c->index <= end &&
            (best == NULL || c->index > best->index)) {
            best = c;
        }
    }
    return best;
}

static void point_keep(struct spread *s, const struct gossip_cert *c)
{
    s->points[s->points_next] = *c;
    s->points_next = (s->points_next + 1) % POINTS_KEPT;
    if (s->npoints < POINTS_KEPT) {
        s->npoints++;
    }
}

/* The point to send with entries ending at `end`: a voter signs one there,
 * an observer forwards the one that proved its last release (at or above
 * end, or none). */
static bool point_for(struct spread *s, rfs_index_t end, struct gossip_cert *c)
{
    if (s->o.voter) {
        if (!s->has_key || end < cache_first(s) || end > s->applied) {
            return false;
        }
        const struct gossip_cert *kept = point_kept(s, end - 1, end);
        if (kept != NULL) {
            *c = *kept; /* One signature per point, however many ask. */
            return true;
        }
        const struct cached *k = cache_at(s, end);
        memset(c, 0, sizeof(*c));
        c->index = end;
        c->term = k->e.term;
        memcpy(c->hash, k->hash, GOSSIP_HASH_BYTES);
        c->signer = s->o.self;
        gossip_cert_sign(c, s->sk);
        s->st.points_signed++;
        point_keep(s, c);
        return true;
    }
    return gossip_verifier_last_cert(s->v, c) && c->index >= end;
}

/* The entry at index (at most applied): from the cache, else from the
 * caller's log (a voter's); NULL if neither holds it. */
static const struct cons_entry *entry_at(struct spread *s, rfs_index_t i)
{
    if (i >= cache_first(s)) {
        return &cache_at(s, i)->e;
    }
    const struct cons_entry *e = s->o.voter && s->o.log_entry != NULL
                                     ? s->o.log_entry(s->o.log_arg, i)
                                     : NULL;
    return e != NULL && e->index == i ? e : NULL;
}

/* A pull below the cache (issue 16: an observer cut off for longer than
 * the cache lasts). A voter that reads its log answers it from there,
 * with a point it signs at the answer's end: the chain up to it is hashed
 * from the nearest mark at or below `after`. Anyone else, or a voter whose
 * log no longer holds the entries (compacted), answers nothing and counts
 * too_old: the observer needs a snapshot. */
static int push_from_log(struct spread *s, rfs_nodeid_t to,
                         rfs_index_t after, rfs_index_t end)
{
    const struct mark *m = NULL;
    for (unsigned i = s->nmarks; i-- > 0;) {
        if (s->marks[i].index <= after) {
            m = &s->marks[i];
            break;
        }
    }
    if (m == NULL || !s->has_key) {
        s->st.too_old++;
        return 0;
    }
    if (end - after > s->o.pull_max) {
        end = after + s->o.pull_max;
    }
    const struct gossip_cert *kept = point_kept(s, after, end);
    if (kept != NULL) {
        end = kept->index; /* Ends where a point is signed already. */
    }
    unsigned n = (unsigned)(end - after);
    struct cons_entry *es = rfs_malloc(n * sizeof(*es));
    if (es == NULL) {
        return -ENOMEM;
    }
    uint8_t hash[GOSSIP_HASH_BYTES];
    memcpy(hash, m->hash, GOSSIP_HASH_BYTES);
    const struct cons_entry *e = NULL;
    for (rfs_index_t i = m->index + 1; i <= end; i++) {
        e = entry_at(s, i);
        if (e == NULL) {
            rfs_free(es);
            s->st.too_old++;
            return 0;
        }
        uint8_t next[GOSSIP_HASH_BYTES];
        store_chain_next(hash, e, next);
        memcpy(hash, next, GOSSIP_HASH_BYTES);
        if (i > after) {
            es[i - after - 1] = *e;
        }
    }
    struct gossip_msg msg = {.kind = GOSSIP_PUSH, .from = s->o.self,
                             .entries = es, .n_entries = n, .has_cert = true};
    if (kept != NULL) {
        msg.cert = *kept;
    } else {
        msg.cert.index = end;
        msg.cert.term = e->term;
        memcpy(msg.cert.hash, hash, GOSSIP_HASH_BYTES);
        msg.cert.signer = s->o.self;
        gossip_cert_sign(&msg.cert, s->sk);
        s->st.points_signed++;
        point_keep(s, &msg.cert);
    }
    int rv = queue(s, to, &msg);
    rfs_free(es);
    if (rv == 0) {
        s->st.entries_out += n;
        s->st.from_log += n;
    }
    return rv;
}

/* Push entries (after, end] (at most pull_max, the lowest first) from the
 * cache to `to`, with a point. Nothing if the cache starts above after + 1
 * (counted: the peer needs a snapshot). An answer (to a DIGEST or a PULL)
 * from a voter ends at a point it signed already, if one is in the range,
 * rather than at a new one. */
static int push(struct spread *s, rfs_nodeid_t to, rfs_index_t after,
                rfs_index_t end, bool answer)
{
    if (end > s->applied) {
        end = s->applied;
    }
    if (end <= after) {
        return 0;
    }
    if (after + 1 < cache_first(s)) {
        return push_from_log(s, to, after, end);
    }
    if (end - after > s->o.pull_max) {
        end = after + s->o.pull_max;
    }
    if (answer && s->o.voter && point_kept(s, end - 1, end) == NULL) {
        /* Rather end where a point is signed already than sign one. */
        const struct gossip_cert *kept = point_kept(s, after, end);
        if (kept != NULL) {
            end = kept->index;
        }
    }
    unsigned n = (unsigned)(end - after);
    struct cons_entry *es = rfs_malloc(n * sizeof(*es));
    if (es == NULL) {
        return -ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        es[i] = cache_at(s, after + 1 + i)->e;
    }
    struct gossip_msg m = {.kind = GOSSIP_PUSH, .from = s->o.self,
                           .entries = es, .n_entries = n};
    m.has_cert = point_for(s, end, &m.cert);
    int rv = queue(s, to, &m);
    rfs_free(es);
    if (rv == 0) {
        s->st.entries_out += n;
    }
    return rv;
}

/* How many entries p may be answered now: its bucket, refilled by the
 * time since it was last metered (ANSWER_RATE). */
static uint64_t answer_allowance(struct spread *s, struct peer *p)
{
    uint64_t cap = (uint64_t)ANSWER_BURST * s->o.pull_max * s->o.digest_ms;
    if (!p->metered) {
        p->metered = true;
        p->budget = cap;
        p->budget_at = s->now;
    }
    if (s->now > p->budget_at) {
        uint64_t gain = (s->now - p->budget_at) * ANSWER_RATE * s->o.pull_max;
        p->budget = gain >= cap - p->budget ? cap : p->budget + gain;
        p->budget_at = s->now;
    }
    return p->budget / s->o.digest_ms;
}

/* Answer p's DIGEST or PULL with entries (after, end], as far as its budget
 * goes; nothing (counted in answers_refused) once it is spent, or to a peer
 * that cannot be metered (past PEERS_MAX). */
static int answer(struct spread *s, struct peer *p, rfs_index_t after,
                  rfs_index_t end)
{
    if (end <= after) {
        return 0;
    }
    uint64_t allow = p != NULL ? answer_allowance(s, p) : 0;
    if (allow == 0) {
        s->st.answers_refused++;
        return 0;
    }
    uint64_t want = end - after < s->o.pull_max ? end - after : s->o.pull_max;
    if (want > allow) {
        end = after + allow;
        s->st.answers_cut++;
    }
    uint64_t entries = s->st.entries_out, points = s->st.points_signed;
    int rv = push(s, p->id, after, end, true);
    uint64_t cost = (s->st.entries_out - entries +
                     SIGN_COST * (s->st.points_signed - points)) *
                    s->o.digest_ms;
    p->budget = cost >= p->budget ? 0 : p->budget - cost;
    return rv;
}

/* Push the run (from, applied] to up to fanout peers not known to hold its
 * end, never to `except`. */
static int push_run(struct spread *s, rfs_index_t from, rfs_nodeid_t except)
{
    unsigned cand[PEERS_MAX];
    unsigned nc = 0;
    for (unsigned i = 0; i < s->npeers; i++) {
        if (s->peers[i].id != except && !s->peers[i].voter &&
            !s->peers[i].unreachable && s->peers[i].holds < s->applied) {
            cand[nc++] = i;
        }
    }
    unsigned k = nc < s->o.fanout ? nc : s->o.fanout;
    for (unsigned i = 0; i < k; i++) {
        unsigned j = i + (unsigned)(next_rand(s) % (nc - i));
        unsigned t = cand[i];
        cand[i] = cand[j];
        cand[j] = t;
        struct peer *p = &s->peers[cand[i]];
        /* Entries it is known to hold are not sent again; one far behind
         * gets the run (the newest pull_max of it) and pulls the rest. */
        rfs_index_t after = p->holds > from ? p->holds : from;
        if (s->applied - after > s->o.pull_max) {
            after = s->applied - s->o.pull_max;
        }
        int rv = push(s, p->id, after, s->applied, false);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* A voter's point, once point_ms passed since the last. */
static int maybe_point(struct spread *s, uint64_t now_ms)
{
    if (!s->o.voter || s->applied <= s->pushed_to ||
        (s->pointed && now_ms - s->last_point_ms < s->o.point_ms)) {
        return 0;
    }
    rfs_index_t from = s->pushed_to;
    s->pushed_to = s->applied;
    s->last_point_ms = now_ms;
    s->pointed = true;
    return push_run(s, from, 0);
}

int spread_applied(struct spread *s, const struct cons_entry *e, unsigned n,
                   uint64_t now_ms)
{
    s->now = now_ms;
    for (unsigned i = 0; i < n; i++) {
        int rv = cache_add(s, &e[i]);
        if (rv != 0) {
            return rv;
        }
    }
    return maybe_point(s, now_ms);
}

/* ---- Receiving ----------------------------------------------------------- */

static int rel_push(struct spread *s, const struct cons_entry *e)
{
    if (s->rel_n == s->rel_cap) {
        unsigned cap = s->rel_cap ? 2 * s->rel_cap : 64;
        struct cons_entry *r = rfs_malloc(cap * sizeof(*r));
        if (r == NULL) {
            return -ENOMEM;
        }
        for (unsigned i = 0; i < s->rel_n; i++) {
            r[i] = s->rel[(s->rel_head + i) % s->rel_cap];
        }
        rfs_free(s->rel);
        s->rel = r;
        s->rel_cap = cap;
        s->rel_head = 0;
    }
    s->rel[(s->rel_head + s->rel_n++) % s->rel_cap] = *e;
    return 0;
}

static void note_verdict(struct spread *s, const struct gossip_verdict *d)
{
    if (d->refused == 0) {
        return;
    }
    s->st.refusals++;
    int n = snprintf(s->refusal, sizeof(s->refusal), "%s", d->why);
    for (unsigned i = 0; i < d->nculprits; i++) {
        /* Who is proven to have sent a wrong copy: the operator needs the
         * name, and the observer stops listening to it for a while, or a
         * poisoner that keeps sending wrong copies first would fill the
         * verifier's copies of an index and its byte budget. */
        if (n > 0 && (size_t)n < sizeof(s->refusal)) {
            n += snprintf(s->refusal + n, sizeof(s->refusal) - (size_t)n,
                          "%s%llu", i == 0 ? "; sent by node " : ", ",
                          (unsigned long long)d->culprits[i]);
        }
        struct peer *p = peer_get(s, d->culprits[i], true);
        if (p != NULL && !p->voter) {
            p->banned_until = s->now + BAN_DIGESTS * s->o.digest_ms;
        }
    }
}

/* Move what the verifier released into the cache and the take queue. A
 * failed allocation here loses a released entry: the observer cannot go
 * on, and every later call says so (s->err). */
static int drain(struct spread *s)
{
    struct cons_entry e;
    while (gossip_verifier_take(s->v, &e)) {
        int rv = cache_add(s, &e);
        if (rv == 0) {
            rv = rel_push(s, &e);
        }
        if (rv != 0) {
            rfs_free(e.data.base);
            s->err = rv;
            return rv;
        }
    }
    return 0;
}

/* Ask p for what we lack, if it claims to have it: from the first index
 * not held (held entries wait in the verifier for their point), once per
 * digest period for the same start, so that an answer which does not
 * reach a point (an observer forwards only its newest) leads to the next
 * piece, not to the same one again. A gap the verifier's window cannot
 * bridge to an observer's point goes to a voter, which signs where its
 * answer ends. */
static int maybe_pull(struct spread *s, struct peer *p)
{
    if (s->o.voter || p == NULL) {
        return 0;
    }
    rfs_index_t gap = gossip_verifier_gap(s->v);
    if (p->holds < gap) {
        return 0;
    }
    rfs_index_t after = gap - 1;
    /* An observer keeps only its last `cache` entries (the same option
     * everywhere) and cannot prove older ones: a gap below that goes to a
     * voter, which answers from its log. */
    bool beyond_cache = p->holds > after + s->o.cache;
    if (!p->voter && (beyond_cache ||
                      after + s->o.pull_max > s->applied + GOSSIP_WINDOW)) {
        struct peer *v = NULL;
        for (unsigned i = 0, k = 0; i < s->npeers; i++) {
            if (s->peers[i].voter && !s->peers[i].unreachable &&
                next_rand(s) % ++k == 0) {
                v = &s->peers[i];
            }
        }
        if (v == NULL) {
            return 0; /* Only a voter can prove it; none known. */
        }
        p = v;
        after = s->applied;
    }
    if (p->pulled_after == after && s->now < p->pulled_until) {
        return 0;
    }
    p->pulled_after = after;
    p->pulled_until = s->now + s->o.digest_ms;
    struct gossip_msg q = {.kind = GOSSIP_PULL, .from = s->o.self,
                           .after = after, .max = s->o.pull_max};
    return queue(s, p->id, &q);
}

static int recv_push(struct spread *s, struct peer *p, rfs_nodeid_t from,
                     const struct gossip_msg *m)
{
    rfs_index_t before = s->applied;
    int rv = 0;
    for (unsigned i = 0; rv == 0 && i < m->n_entries; i++) {
        struct gossip_verdict d;
        rv = gossip_verifier_offer(s->v, from, &m->entries[i], &d);
        note_verdict(s, &d);
    }
    if (rv == 0 && m->has_cert) {
        struct gossip_verdict d;
        rv = gossip_verifier_certify(s->v, from, &m->cert, &d);
        note_verdict(s, &d);
    }
    if (rv == 0) {
        rv = drain(s);
    }
    if (rv != 0) {
        return rv;
    }
    rfs_index_t proven = gossip_verifier_proven(s->v);
    if (s->head < proven) {
        s->head = proven;
    }
    if (s->applied > before) {
        rv = push_run(s, before, from);
    }
    /* A gap below what the sender showed: ask it for the rest. */
    if (rv == 0 && (p == NULL || s->now >= p->banned_until)) {
        rv = maybe_pull(s, p);
    }
    return rv;
}

int spread_recv(struct spread *s, rfs_nodeid_t from,
                const struct gossip_msg *m, uint64_t now_ms)
{
    s->now = now_ms;
    if (s->err != 0) {
        return s->err;
    }
    struct peer *p = peer_get(s, from, true);
    if (p != NULL && now_ms < p->banned_until) {
        return 0;
    }
    switch (m->kind) {
    case GOSSIP_PUSH: {
        /* The sender claims what it sends and the point it sends. A liar
         * only makes us skip it as a push target and pull from it in vain
         * (once per digest period): the verifier decides what we apply,
         * and only proven indexes count as known (spread_known_head). */
        rfs_index_t top = m->n_entries ? m->entries[m->n_entries - 1].index
                                       : 0;
        if (m->has_cert && m->cert.index > top) {
            top = m->cert.index;
        }
        if (p != NULL && p->holds < top) {
            p->holds = top;
        }
        return s->o.voter ? 0 : recv_push(s, p, from, m);
    }
    case GOSSIP_DIGEST:
        if (p != NULL && p->holds < m->applied) {
            p->holds = m->applied;
        }
        if (m->applied < s->applied && !s->o.voter &&
            m->applied + 1 < cache_first(s)) {
            /* Below what an observer can answer: say what it holds, so
             * that the asker takes its gap to a voter (maybe_pull). */
            s->st.too_old++;
            struct gossip_msg d = {.kind = GOSSIP_DIGEST, .from = s->o.self,
                                   .applied = s->applied,
                                   .proven = gossip_verifier_proven(s->v)};
            return queue(s, from, &d);
        }
        if (m->applied < s->applied) {
            return answer(s, p, m->applied, s->applied);
        }
        return maybe_pull(s, p);
    case GOSSIP_PULL: {
        if (p != NULL && p->holds < m->after) {
            p->holds = m->after;
        }
        s->st.pulls_answered++;
        uint32_t max = m->max < s->o.pull_max ? m->max : s->o.pull_max;
        rfs_index_t end = m->after + max;
        if (end < m->after) {
            end = s->applied; /* Wrapped: as much as we have. */
        }
        return answer(s, p, m->after, end < s->applied ? end : s->applied);
    }
    default:
        return 0;
    }
}

int spread_tick(struct spread *s, uint64_t now_ms)
{
    s->now = now_ms;
    if (s->err != 0) {
        return s->err;
    }
    int rv = maybe_point(s, now_ms);
    if (rv != 0 || s->o.voter || s->npeers == 0) {
        return rv;
    }
    if (now_ms < s->next_digest_ms) {
        return 0;
    }
    s->next_digest_ms = now_ms + s->o.digest_ms;
    /* One reachable peer at random (reservoir sampling): one we cannot
     * reach would lose the digest, and the repair with it. */
    struct peer *p = NULL;
    for (unsigned i = 0, k = 0; i < s->npeers; i++) {
        if (!s->peers[i].unreachable && next_rand(s) % ++k == 0) {
            p = &s->peers[i];
        }
    }
    if (p == NULL) {
        return 0;
    }
    struct gossip_msg m = {.kind = GOSSIP_DIGEST, .from = s->o.self,
                           .applied = s->applied,
                           .proven = gossip_verifier_proven(s->v)};
    return queue(s, p->id, &m);
}

bool spread_take(struct spread *s, struct cons_entry *e)
{
    if (s->rel_n == 0) {
        return false;
    }
    *e = s->rel[s->rel_head];
    s->rel_head = (s->rel_head + 1) % s->rel_cap;
    s->rel_n--;
    return true;
}

const struct spread_out *spread_outbox(const struct spread *s, unsigned *n)
{
    *n = s->nout;
    return s->out;
}

void spread_outbox_clear(struct spread *s)
{
    for (unsigned i = 0; i < s->nout; i++) {
        rfs_free(s->out[i].bytes.base);
    }
    s->nout = 0;
}

rfs_index_t spread_applied_index(const struct spread *s,
                                 uint8_t hash[GOSSIP_HASH_BYTES])
{
    if (hash != NULL) {
        memcpy(hash, s->hash, GOSSIP_HASH_BYTES);
    }
    return s->applied;
}

rfs_index_t spread_known_head(const struct spread *s)
{
    return s->head;
}

const char *spread_refusal(const struct spread *s)
{
    return s->refusal;
}

void spread_get_stats(const struct spread *s, struct spread_stats *st)
{
    *st = s->st;
}
