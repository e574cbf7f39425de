/*
 * The cluster simulator. See sim.h.
 *
 * Everything happens in an event heap ordered by (virtual time, sequence):
 * ticks, message deliveries, disk completions, chunk reads, snapshots,
 * client requests and nemesis actions. Each simulated node is the real host
 * driver (consensus/host.c, the code the node runtime runs) around a real
 * core; this file is only its I/O, done deterministically:
 *
 * - the clock: virtual time, running 5% fast or slow per node when leases
 *   are on, and jumping forward or back when the nemesis says so;
 * - the network: frames encoded by the wire codec, dropped, delayed,
 *   reordered, duplicated and partitioned;
 * - the disk: one synced write at a time, completing after a random delay,
 *   sometimes refused (ENOSPC, retried by the driver) or failed (EIO: the
 *   node stops, and the operator restarts it);
 * - the state machine: registers and exactly-once sessions modelled on the
 *   store's (store/sessions.c), applied unsynced, as RocksDB applies them: a
 *   crash keeps only what the last synced write carried to the disk, and a
 *   restarted node applies the rest again from its log.
 *
 * A crash loses the write in flight, or lands it whole (a RocksDB WriteBatch
 * is atomic; a torn tail is dropped at recovery), at random.
 */
#include "sim.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/assert.h"
#include "../../common/err.h"
#include "../../common/heap.h"
#include "../../consensus/batch.h"
#include "../../consensus/core/core.h"
#include "../../consensus/host.h"
#include "../../consensus/wire.h"
#include "../../store/store.h"
#include "../chaos/checker.h"

#define MAX_NODES 16
#define TICK_MS 10
#define ELECTION_TICKS 10
#define HEARTBEAT_TICKS 2
#define IMG_MAGIC 0x52465353494d4722ULL
#define KEYS 4
#define COMMIT_TIMEOUT_MS 2000
/* Liveness: a connected majority, stable this long, must commit. */
#define LIVE_WINDOW_MS 3000
/* Percent of seeds in Figure 8 mode (see figure8()). */
#define FIG8_PCT 25
/* Lease runs (not in Figure 8 mode) that stage the election race. */
#define RACE_PCT 50
/* Search states the linearizability check may explore per key and run.
 * Most keys need a few thousand; a run whose requests wait for seconds
 * (slow disk, partitions) has tens of writes overlapping, and the search
 * then meets every subset of them: seed 1783 needs over 2 million for one
 * key, and before this bound one key took 6 minutes. Such a key counts as
 * unfinished (main prints how many; about 4% of keys over seeds 1..2000),
 * which keeps the suite's 2,000 seeds within a third of their time. */
#define LIN_BUDGET 50000
#define LIN_UNREAD (-2) /* Any value no read returned (never a write's). */

#define CORE(n) host_core((n)->h)

enum ev_type {
    EV_TICK = 1,
    EV_DELIVER,
    EV_DISK,
    EV_CLIENT,
    EV_NEMESIS,
    EV_RESTART,
    EV_RESUME,
    EV_HEAL,
    EV_CHUNK,
    EV_SNAP,
    EV_ATTACK, /* The lease attack's second step. */
    EV_READ,   /* A linearizable read on one node. */
    EV_KILL,   /* Figure 8 mode: crash this incarnation of a node. */
    EV_WRITE_BEGIN, /* The writer starts: the queued batch joins its write. */
};

/* A frame on the wire: the encoded message, as TCP would carry it. */
struct smsg {
    rfs_nodeid_t from, to;
    uint64_t to_boot; /* The receiver's run it was sent to: like a TCP
                       * connection, it dies with that process. */
    struct rfs_buf plain;
    struct smsg *next;
};

struct ev {
    uint64_t at;
    uint64_t seq;
    int type;
    int node;
    uint64_t boot;
    struct smsg *msg;
    void *ptr; /* EV_CHUNK: the driver's chunk. */
};

/* One client's exactly-once record, as the store keeps it. */
struct sess {
    bool found;
    uint64_t boot;
    uint64_t purged;   /* Seqs below have no record left. */
    uint64_t *seqs;    /* Applied seqs >= purged, with their results. */
    rfs_index_t *at;
    size_t n, cap;
};

/* The state machine: registers written by commands, a hash of everything
 * applied (the ledger compares it across nodes), and the sessions. */
struct sm {
    rfs_index_t applied;
    uint64_t hash;
    uint64_t reg[KEYS];
    rfs_index_t reg_at[KEYS]; /* Index of the write that set it. */
    struct sess sess[MAX_NODES + 1];
};

/* What survives a crash. */
struct disk {
    struct cons_hard_state hs;
    struct cons_snap_meta snap;
    uint8_t *img; /* The state machine at snap.index, encoded. */
    size_t img_len;
    struct cons_entry *log; /* Entries after log_base. */
    size_t n;
    size_t cap;
    rfs_index_t log_base;
    rfs_term_t log_base_term;
    /* The state machine's applied index that the last synced write carried
     * to the disk: RocksDB's WAL is one file, so a sync makes every apply
     * written before it durable too. */
    rfs_index_t durable_applied;
    /* A snapshot being received. */
    uint8_t *recv;
    size_t recv_len;
    /* Peers' data folder ids, pinned on first hello (synced at once). */
    uint64_t pins[MAX_NODES + 1];
};

struct pending_read {
    uint64_t ctx;
    rfs_index_t min;
};

struct snode {
    struct sim *s;
    rfs_nodeid_t id;
    bool exists;
    bool up;
    bool paused;
    int drift_pm;        /* Clock rate error, per mille. */
    int64_t clock_off;   /* ms the local clock is ahead (jumps, restarts). */
    int64_t wall_off;    /* ms the wall clock is off (it may go back). */
    uint64_t boot;
    struct host *h;
    struct sm sm;        /* Applied, not necessarily durable. */
    struct disk d;
    const struct batch_writes *writing; /* In flight. */
    rfs_index_t write_applied;          /* sm.applied when it started. */
    uint8_t *snap_img;   /* Being taken: the image, and its index. */
    size_t snap_len;
    rfs_index_t snap_idx;
    uint8_t *taken_img;  /* Taken, being reported to the driver. */
    size_t taken_len;
    rfs_index_t taken_idx;
    struct smsg *held;   /* Delivered while paused. */
    struct smsg *held_tail;
    struct pending_read *reads;
    size_t n_reads;
    size_t cap_reads;
    rfs_index_t seen_commit;
    rfs_index_t seen_stable; /* The core's stable index, last checked. */
    uint64_t stable_since; /* Up and running, unpaused, since then. */
    uint64_t data_id;      /* Of its disk: a wipe makes another. */
    bool wiped;            /* Came back under its id with a wiped disk. */
    /* The data id each peer's connection showed and host_hello accepted,
     * for this process: connections die with it. */
    uint64_t greeted[MAX_NODES + 1];
};

/* A client request made through a node's host driver. */
struct sreq {
    struct sim *s;
    rfs_nodeid_t node;
    uint64_t node_boot;
    bool read;
    unsigned key;
    uint64_t value;  /* Writes. */
    rfs_index_t min; /* Reads: cluster commit index when asked. */
    rfs_index_t min_write; /* Reads: newest acked write of key when asked. */
    unsigned completions;
    /* For the linearizability check: when it was asked and answered
     * (lin_time), and what a read returned (the register's value, 0 for
     * never written). known: it returned a definite outcome. */
    uint64_t call_t, ret_t;
    uint64_t got;
    bool known;
};

/* (client, boot, seq) -> the index where it took effect. */
struct applied_id {
    rfs_nodeid_t client;
    uint64_t boot, seq;
    rfs_index_t index;
};

/*
 * The election race (race_start and below; docs/testing.md): a scripted
 * nemesis, staged at most once per run, that puts a voter where leader
 * stickiness alone must keep a lease: it acknowledged the leader L, then
 * learns a higher term from an answer (no leader known, no vote cast), and
 * a candidate with L's whole log asks for its vote while L's lease runs.
 * With PreVote and every voter of a leasing leader ignoring candidates, a
 * term above L's exists only if a campaign won its pre-votes from voters
 * that had voted for L but not yet heard it, and then lost its votes: a
 * race of one network delay at an election. The steps:
 *
 * ISOLATE  the leader L0 is cut off, its frames held (not lost), until
 *          some voter X becomes a candidate;
 * ELECT    X's vote requests are lost while another voter L wins term T;
 * HOLD     L's first frames wait until X's pre-votes for T+1 have passed
 *          (at most until L's first quorum check), then X's vote requests
 *          are lost again: X holds T+1, above the leader's term;
 * SETTLE   L's frames go out; L0 rejoins as L's follower; X answers L0's
 *          held frames from when it led with T+1, and those answers wait;
 * ADOPT    a follower W holding L's whole log is cut from L, campaigns,
 *          adopts T+1 from X's refusal and asks again, for T+2: its
 *          pre-vote to L0 waits;
 * PIVOT    right after L0 acknowledged L's latest round, L0 is cut from L
 *          and gets X's answers, then W's pre-vote. W's majority is W, X
 *          and L0; L's lease rests on L0's acknowledgement.
 *
 * Frames are lost or held where they are delivered. Each step gives up
 * after a bound, and the cluster goes on as after any partition.
 */
#define RACE_VOTERS 5

enum race_phase {
    RACE_OFF,
    RACE_ISOLATE,
    RACE_ELECT,
    RACE_HOLD,
    RACE_SETTLE,
    RACE_ADOPT,
    RACE_PIVOT,
    RACE_DONE,
};

struct race {
    enum race_phase phase;
    uint64_t since; /* When this phase began. */
    rfs_nodeid_t ids[RACE_VOTERS];
    rfs_nodeid_t l0, x, l, w;
    rfs_term_t t;   /* L's term. */
    bool vote_held; /* W's pre-vote for T+2 to L0 waits. */
    bool acked;     /* L0 acknowledged L since. */
    /* Frames held on each link, in order: [from][to]. */
    struct smsg *head[MAX_NODES + 1][MAX_NODES + 1];
    struct smsg *tail[MAX_NODES + 1][MAX_NODES + 1];
};

struct sim {
    struct sim_options o;
    struct sim_result *r;
    uint64_t rng;
    uint64_t now;
    uint64_t seq;
    struct ev *heap;
    size_t heap_n;
    size_t heap_cap;
    struct snode nodes[MAX_NODES + 1]; /* Index = node id. */
    unsigned n_ids;                    /* Highest id created. */
    bool blocked[MAX_NODES + 1][MAX_NODES + 1];
    uint64_t link_since[MAX_NODES + 1][MAX_NODES + 1]; /* Unblocked since. */
    /* Network and disk fault rates, per seed. */
    unsigned drop_pct;
    unsigned dup_pct;
    unsigned delay_max;
    unsigned snap_every;
    size_t chunk_bytes;
    unsigned disk_min;  /* Write latency range, ms. */
    unsigned disk_span;
    unsigned enospc_pm; /* Per mille of writes refused for space. */
    unsigned eio_pm;    /* Per mille of writes failing (node stops). */
    bool chaos;        /* Chaos phase (nemesis, membership, transfers). */
    bool wiped_one;    /* At most one wipe per run. */
    bool fig8;         /* Figure 8 mode: leaders crash soon after acting. */
    uint64_t next_ctx;
    uint64_t next_value;
    /* Ledgers: what the cluster committed and applied, by index. */
    struct {
        rfs_term_t term;
        uint64_t h;   /* Hash of the entry. */
        uint64_t cum; /* State machine hash after applying it (0: unknown). */
        rfs_term_t seen; /* Lowest term in which a node saw it committed:
                          * never below the committing leader's term. */
    } *ledger;
    size_t ledger_cap;
    rfs_index_t global_commit;
    uint64_t commit_at;  /* When global_commit last moved. */
    rfs_nodeid_t *leaders; /* By term. */
    size_t leaders_cap;
    struct sreq **reqs;
    size_t n_reqs;
    size_t cap_reqs;
    struct applied_id *ids; /* Open addressing, cap a power of two. */
    size_t n_ids_applied, cap_ids;
    rfs_index_t acked_write[KEYS]; /* Newest acked write's index per key. */
    uint64_t quiet_until; /* Lease attack: no writes, no other fault. */
    uint64_t lin_ms, lin_sub; /* lin_time(): last ms, events within it. */
    bool race_seed;   /* This run stages the election race... */
    uint64_t race_at; /* ...at the first nemesis action after this. */
    struct race race;
    char marker[32];
    bool marker_sent;
    uint64_t marker_at;        /* When it was last proposed. */
    rfs_index_t marker_index;  /* Where it committed (0: not yet). */
};

/* ------------------------------------------------------------------------ */
static uint64_t rnd(struct sim *s)
{
    /* splitmix64: one state word, good enough spread for fault choices. */
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static unsigned rndn(struct sim *s, unsigned n)
{
    return n == 0 ? 0 : (unsigned)(rnd(s) % n);
}

static bool chance(struct sim *s, unsigned pct)
{
    return rndn(s, 100) < pct;
}

static void tracef(struct sim *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void tracef(struct sim *s, const char *fmt, ...)
{
    if (s->o.trace == NULL) {
        return;
    }
    fprintf(s->o.trace, "t=%" PRIu64 " ", s->now);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(s->o.trace, fmt, ap);
    va_end(ap);
    fputc('\n', s->o.trace);
}

static void violation(struct sim *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void violation(struct sim *s, const char *fmt, ...)
{
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (s->r->violations == 0) {
        snprintf(s->r->first, sizeof(s->r->first), "t=%" PRIu64 ": %s",
                 s->now, buf);
    }
    s->r->violations++;
    tracef(s, "VIOLATION: %s", buf);
}

/* ------------------------------------------------------------------------ */
/* Event heap                                                                */

static bool ev_less(const struct ev *a, const struct ev *b)
{
    return a->at != b->at ? a->at < b->at : a->seq < b->seq;
}

static void push_ptr(struct sim *s, uint64_t at, int type, int node,
                     struct smsg *msg, void *ptr)
{
    if (s->heap_n == s->heap_cap) {
        s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 256;
        s->heap = realloc(s->heap, s->heap_cap * sizeof(*s->heap));
        RFS_ASSERT(s->heap != NULL);
    }
    struct ev e = {at, s->seq++, type, node,
                   node > 0 ? s->nodes[node].boot : 0, msg, ptr};
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ev_less(&e, &s->heap[p])) {
            break;
        }
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = e;
}

static void push(struct sim *s, uint64_t at, int type, int node,
                 struct smsg *msg)
{
    push_ptr(s, at, type, node, msg, NULL);
}

static bool pop(struct sim *s, struct ev *out)
{
    if (s->heap_n == 0) {
        return false;
    }
    *out = s->heap[0];
    struct ev last = s->heap[--s->heap_n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < s->heap_n && ev_less(&s->heap[l], &last)) {
            m = l;
        }
        if (l + 1 < s->heap_n &&
            ev_less(&s->heap[l + 1], m == i ? &last : &s->heap[m])) {
            m = l + 1;
        }
        if (m == i) {
            break;
        }
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (s->heap_n > 0) {
        s->heap[i] = last;
    }
    return true;
}

static void core_trace(void *data, rfs_nodeid_t id, const char *line)
{
    struct sim *s = data;
    tracef(s, "n%" PRIu64 " %s", id, line);
}

static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t entry_hash(const struct cons_entry *e)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv(h, &e->term, sizeof(e->term));
    h = fnv(h, &e->index, sizeof(e->index));
    h = fnv(h, &e->type, sizeof(e->type));
    return fnv(h, e->data.base, e->data.len);
}

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */

static void msg_free(struct smsg *m)
{
    if (m == NULL) {
        return;
    }
    rfs_free(m->plain.base);
    free(m);
}

static struct smsg *msg_dup(const struct smsg *m)
{
    struct smsg *c = calloc(1, sizeof(*c));
    RFS_ASSERT(c != NULL);
    *c = *m;
    c->next = NULL;
    c->plain.base = rfs_malloc(m->plain.len + 1);
    RFS_ASSERT(c->plain.base != NULL);
    memcpy(c->plain.base, m->plain.base, m->plain.len);
    return c;
}

static void describe(const struct cons_msg *m, char *buf, size_t len)
{
    snprintf(buf, len,
             "%s t%" PRIu64 " prev=%" PRIu64 "/%" PRIu64 " n=%u commit=%" PRIu64
             " idx=%" PRIu64 "%s off=%" PRIu64 " round=%" PRIu64,
             cons_msg_type_name(m->type), m->term, m->prev_index, m->prev_term,
             m->n_entries, m->commit, m->index, m->reject ? " reject" : "",
             m->offset, m->round);
}

/* Put a frame on the wire: maybe dropped, delayed or duplicated. */
static void net_send(struct sim *s, struct smsg *m)
{
    rfs_nodeid_t from = m->from, to = m->to;
    if (to == 0 || to > s->n_ids || s->blocked[from][to] ||
        chance(s, s->drop_pct)) {
        msg_free(m);
        return;
    }
    m->to_boot = s->nodes[to].boot;
    unsigned delay = 1 + rndn(s, s->delay_max);
    if (chance(s, 2)) {
        delay += 50 + rndn(s, 200); /* A straggler: reordering. */
    }
    if (chance(s, s->dup_pct)) {
        push(s, s->now + delay + rndn(s, 30), EV_DELIVER, (int)to,
             msg_dup(m));
    }
    push(s, s->now + delay, EV_DELIVER, (int)to, m);
}

/* ------------------------------------------------------------------------ */
/* Disk                                                                      */

static void copy_entry(struct cons_entry *dst, const struct cons_entry *src)
{
    *dst = *src;
    dst->data.base = NULL;
    if (src->data.len > 0) {
        dst->data.base = malloc(src->data.len);
        RFS_ASSERT(dst->data.base != NULL);
        memcpy(dst->data.base, src->data.base, src->data.len);
    }
}

static void free_entries(struct cons_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].data.base);
    }
    free(e);
}

static void disk_truncate(struct disk *d, rfs_index_t from)
{
    if (from <= d->log_base) {
        from = d->log_base + 1;
    }
    size_t keep = (size_t)(from - d->log_base - 1);
    if (keep >= d->n) {
        return;
    }
    for (size_t i = keep; i < d->n; i++) {
        free(d->log[i].data.base);
    }
    d->n = keep;
}

static void disk_append(struct disk *d, const struct cons_entry *e)
{
    RFS_ASSERT(e->index == d->log_base + d->n + 1);
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->log = realloc(d->log, d->cap * sizeof(*d->log));
        RFS_ASSERT(d->log != NULL);
    }
    copy_entry(&d->log[d->n++], e);
}

static void disk_compact(struct disk *d, rfs_index_t upto)
{
    if (upto <= d->log_base) {
        return;
    }
    size_t drop = (size_t)(upto - d->log_base);
    if (drop > d->n) {
        drop = d->n;
    }
    d->log_base_term = d->log[drop - 1].term;
    for (size_t i = 0; i < drop; i++) {
        free(d->log[i].data.base);
    }
    memmove(d->log, d->log + drop, (d->n - drop) * sizeof(*d->log));
    d->n -= drop;
    d->log_base += drop;
}

static void disk_free(struct disk *d)
{
    free_entries(d->log, d->n);
    free(d->img);
    free(d->recv);
    memset(d, 0, sizeof(*d));
}

static const struct cons_entry *disk_entry(const struct disk *d,
                                           rfs_index_t i)
{
    if (i <= d->log_base || i > d->log_base + d->n) {
        return NULL;
    }
    return &d->log[i - d->log_base - 1];
}

/* ------------------------------------------------------------------------ */
/* The state machine: registers and sessions                                 */

static void sm_free(struct sm *m)
{
    for (unsigned i = 0; i <= MAX_NODES; i++) {
        free(m->sess[i].seqs);
        free(m->sess[i].at);
    }
    memset(m, 0, sizeof(*m));
}

static void sess_forget_below(struct sess *x, uint64_t below)
{
    size_t k = 0;
    for (size_t i = 0; i < x->n; i++) {
        if (x->seqs[i] >= below) {
            x->seqs[k] = x->seqs[i];
            x->at[k++] = x->at[i];
        }
    }
    x->n = k;
}

static void sess_add(struct sess *x, uint64_t seq, rfs_index_t at)
{
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 16;
        x->seqs = realloc(x->seqs, x->cap * sizeof(*x->seqs));
        x->at = realloc(x->at, x->cap * sizeof(*x->at));
        RFS_ASSERT(x->seqs != NULL && x->at != NULL);
    }
    x->seqs[x->n] = seq;
    x->at[x->n++] = at;
}

/* The image: magic, applied, hash, registers, sessions, then a checksum of
 * all of it, so a chunk put back in the wrong place is caught at install. */
static uint8_t *sm_encode(const struct sm *m, size_t *len)
{
    size_t n = 8 * (3 + 2 * KEYS) + 8;
    for (unsigned i = 0; i <= MAX_NODES; i++) {
        n += 8 * 4 + 16 * m->sess[i].n;
    }
    uint64_t *p = malloc(n);
    RFS_ASSERT(p != NULL);
    size_t k = 0;
    p[k++] = IMG_MAGIC;
    p[k++] = m->applied;
    p[k++] = m->hash;
    for (unsigned i = 0; i < KEYS; i++) {
        p[k++] = m->reg[i];
        p[k++] = m->reg_at[i];
    }
    for (unsigned i = 0; i <= MAX_NODES; i++) {
        const struct sess *x = &m->sess[i];
        p[k++] = x->found;
        p[k++] = x->boot;
        p[k++] = x->purged;
        p[k++] = x->n;
        for (size_t j = 0; j < x->n; j++) {
            p[k++] = x->seqs[j];
            p[k++] = x->at[j];
        }
    }
    p[k] = fnv(0xcbf29ce484222325ULL, p, k * 8);
    *len = n;
    return (uint8_t *)p;
}

static bool sm_decode_words(const uint64_t *p, size_t n, size_t *kp,
                            struct sm *m);

static bool sm_decode(const uint8_t *b, size_t len, struct sm *m)
{
    memset(m, 0, sizeof(*m));
    if (len % 8 != 0 || len < 8 * (4 + 2 * KEYS)) {
        return false;
    }
    uint64_t *p = malloc(len);
    RFS_ASSERT(p != NULL);
    memcpy(p, b, len);
    size_t n = len / 8, k = 0;
    bool ok = sm_decode_words(p, n, &k, m);
    free(p);
    return ok && k == n - 1;
}

static bool sm_decode_words(const uint64_t *p, size_t n, size_t *kp,
                            struct sm *m)
{
    size_t k = 0;
    if (p[n - 1] != fnv(0xcbf29ce484222325ULL, p, (n - 1) * 8) ||
        p[k++] != IMG_MAGIC) {
        return false;
    }
    m->applied = p[k++];
    m->hash = p[k++];
    for (unsigned i = 0; i < KEYS; i++) {
        m->reg[i] = p[k++];
        m->reg_at[i] = p[k++];
    }
    for (unsigned i = 0; i <= MAX_NODES; i++) {
        struct sess *x = &m->sess[i];
        if (k + 4 > n - 1) {
            return false;
        }
        x->found = p[k++] != 0;
        x->boot = p[k++];
        x->purged = p[k++];
        uint64_t cnt = p[k++];
        if (k + 2 * cnt > n - 1) {
            return false;
        }
        for (uint64_t j = 0; j < cnt; j++) {
            sess_add(x, p[k], p[k + 1]);
            k += 2;
        }
    }
    *kp = k;
    return true;
}

static void ledger_reserve(struct sim *s, rfs_index_t index)
{
    if (index < s->ledger_cap) {
        return;
    }
    size_t cap = s->ledger_cap ? s->ledger_cap : 1024;
    while (cap <= index) {
        cap *= 2;
    }
    s->ledger = realloc(s->ledger, cap * sizeof(*s->ledger));
    RFS_ASSERT(s->ledger != NULL);
    memset(s->ledger + s->ledger_cap, 0,
           (cap - s->ledger_cap) * sizeof(*s->ledger));
    s->ledger_cap = cap;
}

/* Record that entry e is committed at its index; it must never differ. */
static void ledger_commit(struct sim *s, struct snode *n,
                          const struct cons_entry *e)
{
    ledger_reserve(s, e->index);
    uint64_t h = entry_hash(e);
    struct cons_status st;
    cons_node_status(CORE(n), &st);
    if (s->ledger[e->index].seen == 0 || st.term < s->ledger[e->index].seen) {
        s->ledger[e->index].seen = st.term;
    }
    if (s->ledger[e->index].term == 0) {
        s->ledger[e->index].term = e->term;
        s->ledger[e->index].h = h;
    } else if (s->ledger[e->index].h != h) {
        violation(s,
                  "state machine safety: n%" PRIu64 " committed term %" PRIu64
                  " at %" PRIu64 ", cluster committed term %" PRIu64,
                  n->id, e->term, e->index, s->ledger[e->index].term);
    }
    if (e->index > s->global_commit) {
        s->global_commit = e->index;
        s->commit_at = s->now;
    }
    if (s->marker_sent && s->marker_index == 0 &&
        e->type == CONS_ENTRY_NORMAL && e->data.len == strlen(s->marker) &&
        memcmp(e->data.base, s->marker, e->data.len) == 0) {
        s->marker_index = e->index;
    }
}

/* The index where (client, boot, seq) took effect, or 0; with set != 0,
 * record it there. */
static rfs_index_t applied_id(struct sim *s, rfs_nodeid_t client,
                              uint64_t boot, uint64_t seq, rfs_index_t set)
{
    if (set != 0 && (s->n_ids_applied + 1) * 2 > s->cap_ids) {
        size_t cap = s->cap_ids ? s->cap_ids * 2 : 1024;
        struct applied_id *t = calloc(cap, sizeof(*t));
        RFS_ASSERT(t != NULL);
        for (size_t i = 0; i < s->cap_ids; i++) {
            if (s->ids[i].index == 0) {
                continue;
            }
            uint64_t h = fnv(fnv(fnv(0, &s->ids[i].client, 8),
                                 &s->ids[i].boot, 8),
                             &s->ids[i].seq, 8);
            size_t j = h & (cap - 1);
            while (t[j].index != 0) {
                j = (j + 1) & (cap - 1);
            }
            t[j] = s->ids[i];
        }
        free(s->ids);
        s->ids = t;
        s->cap_ids = cap;
    }
    if (s->cap_ids == 0) {
        return 0;
    }
    uint64_t h = fnv(fnv(fnv(0, &client, 8), &boot, 8), &seq, 8);
    size_t j = h & (s->cap_ids - 1);
    while (s->ids[j].index != 0) {
        struct applied_id *a = &s->ids[j];
        if (a->client == client && a->boot == boot && a->seq == seq) {
            return a->index;
        }
        j = (j + 1) & (s->cap_ids - 1);
    }
    if (set != 0) {
        s->ids[j] = (struct applied_id){client, boot, seq, set};
        s->n_ids_applied++;
    }
    return 0;
}

/* Apply one command's session rules, as store/sessions.c does: a request from
 * a replaced boot, or one already forgotten, changes nothing (ESTALE); a
 * duplicate returns its first result; a new one is applied and recorded,
 * and what the client says it no longer waits for is forgotten. */
static void sm_cmd(struct sim *s, struct snode *n, struct sm *m,
                   const struct cons_entry *e, const struct store_cmd *c,
                   struct store_result *r, bool live)
{
    memset(r, 0, sizeof(*r));
    if (c->client == 0 || c->client > MAX_NODES) {
        r->err = EINVAL;
        return;
    }
    struct sess *x = &m->sess[c->client];
    if (x->found && c->boot < x->boot) {
        r->err = ESTALE;
        return;
    }
    if (x->found && c->boot == x->boot) {
        if (c->seq < x->purged) {
            r->err = ESTALE;
            return;
        }
        for (size_t i = 0; i < x->n; i++) {
            if (x->seqs[i] == c->seq) {
                r->ino = x->at[i];
                r->duplicate = true;
                return;
            }
        }
    }
    /* New: it takes effect here. Across the cluster's history a request
     * may take effect at one index only, whatever the retries. */
    if (live) {
        rfs_index_t at = applied_id(s, c->client, c->boot, c->seq, 0);
        if (at != 0 && at != e->index) {
            violation(s, "n%" PRIu64 " applies request (n%" PRIu64
                         ", boot %" PRIu64 ", seq %" PRIu64 ") at %" PRIu64
                         ", already applied at %" PRIu64 " (applied twice)",
                      n->id, c->client, c->boot, c->seq, e->index, at);
        } else if (at == 0) {
            applied_id(s, c->client, c->boot, c->seq, e->index);
        }
    }
    if (c->op == STORE_OP_WRITE && c->data_len == 8) {
        unsigned k = (unsigned)(c->ino % KEYS);
        memcpy(&m->reg[k], c->data, 8);
        m->reg_at[k] = e->index;
    }
    r->ino = e->index;
    if (!x->found || c->boot > x->boot) {
        x->found = true;
        x->boot = c->boot;
        x->purged = 0;
        x->n = 0;
    }
    if (c->first_outstanding > x->purged) {
        x->purged = c->first_outstanding;
        sess_forget_below(x, x->purged);
    }
    if (c->seq >= x->purged) {
        sess_add(x, c->seq, e->index);
    }
}

/* Apply entry e to m. live: a running node applying (ledgers checked);
 * otherwise a restart rebuilding what RocksDB kept. */
static void sm_apply(struct sim *s, struct snode *n, struct sm *m,
                     const struct cons_entry *e, struct store_result *r,
                     bool live)
{
    if (e->index != m->applied + 1) {
        violation(s, "n%" PRIu64 " applies %" PRIu64 " after %" PRIu64
                     " (double or skipped apply)",
                  n->id, e->index, m->applied);
        return;
    }
    if (live) {
        ledger_commit(s, n, e);
    }
    m->hash = fnv(m->hash, &e->index, sizeof(e->index));
    m->hash = fnv(m->hash, &e->term, sizeof(e->term));
    m->hash = fnv(m->hash, e->data.base, e->data.len);
    m->applied = e->index;
    struct store_result none;
    struct store_cmd c;
    if (e->type == CONS_ENTRY_NORMAL && store_cmd_decode(&e->data, &c) == 0) {
        sm_cmd(s, n, m, e, &c, r ? r : &none, live);
    }
    m->hash = fnv(m->hash, m->reg, sizeof(m->reg));
    ledger_reserve(s, e->index);
    if (s->ledger[e->index].cum == 0) {
        s->ledger[e->index].cum = m->hash;
    } else if (s->ledger[e->index].cum != m->hash) {
        violation(s, "n%" PRIu64 " state after %" PRIu64 " differs", n->id,
                  e->index);
    }
}

/* After a crash: the state machine is what the disk kept, the snapshot
 * image plus the applies the last synced write made durable. */
static void sm_rebuild(struct sim *s, struct snode *n)
{
    sm_free(&n->sm);
    if (n->d.img != NULL && !sm_decode(n->d.img, n->d.img_len, &n->sm)) {
        violation(s, "n%" PRIu64 " cannot read its own snapshot image",
                  n->id);
        return;
    }
    for (rfs_index_t i = n->sm.applied + 1; i <= n->d.durable_applied; i++) {
        const struct cons_entry *e = disk_entry(&n->d, i);
        if (e == NULL) {
            violation(s, "n%" PRIu64 " applied %" PRIu64 " durably but its "
                         "log lacks it",
                      n->id, i);
            return;
        }
        sm_apply(s, n, &n->sm, e, NULL, false);
    }
}

/* ------------------------------------------------------------------------ */
/* Clients' requests                                                         */

/* Simulated time for the linearizability check, in ns: the ms of virtual
 * time, then the order of calls and returns within that ms. The checker
 * takes equal times as concurrent; events in one ms do happen in the
 * heap's order, so two ops that did not overlap are not made to. */
static uint64_t lin_time(struct sim *s)
{
    if (s->now != s->lin_ms) {
        s->lin_ms = s->now;
        s->lin_sub = 0;
    }
    return s->now * 1000000 + ++s->lin_sub;
}

static void req_done(void *arg, int err, const void *result)
{
    struct sreq *q = arg;
    struct sim *s = q->s;
    struct snode *n = &s->nodes[q->node];
    q->completions++;
    if (q->completions > 1) {
        violation(s, "a request of n%" PRIu64 " completed twice", q->node);
        return;
    }
    q->ret_t = lin_time(s);
    if (err == 0 && q->read) {
        /* A read barrier is linearizable only if this node has applied
         * everything committed anywhere before it was asked; and it keeps
         * its contract of waiting until the answered index is applied. */
        rfs_index_t index = *(const rfs_index_t *)result;
        if (!s->o.lin_only &&
            (index < q->min || n->sm.applied < index)) {
            violation(s, "read barrier on n%" PRIu64 " passed with index %"
                         PRIu64 " at applied %" PRIu64,
                      q->node, index, n->sm.applied);
        }
        if (!s->o.lin_only && n->sm.applied < q->min) {
            violation(s, "read barrier on n%" PRIu64 " passed at applied %"
                         PRIu64 ", below commit %" PRIu64 " known when asked",
                      q->node, n->sm.applied, q->min);
        }
        /* The register read now: never older than a write that returned
         * to its caller before this read was asked (linearizability of
         * each register, in simulated time). */
        if (!s->o.lin_only && n->sm.reg_at[q->key] < q->min_write) {
            violation(s, "stale read on n%" PRIu64 ": key %u holds the write "
                         "at %" PRIu64 ", but the write at %" PRIu64
                         " had returned before the read began",
                      q->node, q->key, n->sm.reg_at[q->key], q->min_write);
        }
        q->got = n->sm.reg[q->key];
        q->known = true;
        s->r->barriers++;
    } else if (err == 0) {
        const struct store_result *r = result;
        s->r->acked++;
        if (r->err == 0 && r->ino > s->acked_write[q->key]) {
            s->acked_write[q->key] = r->ino;
        }
        if (r->err != 0) {
            /* ESTALE here means the session forgot a request its client
             * still waited for: a retry could then apply twice. */
            violation(s, "write on n%" PRIu64 " answered errno %d", q->node,
                      r->err);
        }
        q->known = r->err == 0;
    } else if (err == -ETIMEDOUT) {
        s->r->timeouts++;
    }
}

static struct sreq *sreq_new(struct sim *s, rfs_nodeid_t node, bool read)
{
    if (s->n_reqs == s->cap_reqs) {
        s->cap_reqs = s->cap_reqs ? s->cap_reqs * 2 : 256;
        s->reqs = realloc(s->reqs, s->cap_reqs * sizeof(*s->reqs));
        RFS_ASSERT(s->reqs != NULL);
    }
    struct sreq *q = calloc(1, sizeof(*q));
    RFS_ASSERT(q != NULL);
    q->s = s;
    q->node = node;
    q->node_boot = s->nodes[node].boot;
    q->read = read;
    q->min = s->global_commit;
    q->key = rndn(s, KEYS);
    q->min_write = s->acked_write[q->key];
    q->call_t = lin_time(s);
    s->reqs[s->n_reqs++] = q;
    return q;
}

/* ------------------------------------------------------------------------ */
/* The driver's I/O                                                          */

/* The node's clock: virtual time at its own rate, plus any jump. */
static uint64_t io_now_ns(void *data)
{
    struct snode *n = data;
    int64_t ms = (int64_t)(n->s->now * (uint64_t)(1000 + n->drift_pm) / 1000) +
                 n->clock_off;
    return (uint64_t)(ms > 0 ? ms : 0) * 1000000u + 1000000000000ull;
}

static int64_t io_wall_ns(void *data)
{
    struct snode *n = data;
    return ((int64_t)n->s->now + n->wall_off) * 1000000;
}

static void io_write(void *data, const struct batch_writes *w)
{
    struct snode *n = data;
    struct sim *s = n->s;
    RFS_ASSERT(n->writing == NULL); /* The driver writes one at a time. */
    n->writing = w;
    n->write_applied = n->sm.applied;
    unsigned took = s->disk_min + rndn(s, s->disk_span);
    if (chance(s, 75)) {
        /* As the runtime's pool thread: the write starts some time after
         * it was handed over, and takes in what was queued by then
         * (host_write_begin). Pushed first: at the same instant it still
         * comes before the completion. */
        push(s, s->now + rndn(s, took + 1), EV_WRITE_BEGIN, (int)n->id,
             NULL);
    }
    push(s, s->now + took, EV_DISK, (int)n->id, NULL);
}

static void io_send(void *data, rfs_nodeid_t to, struct rfs_buf plain)
{
    struct snode *n = data;
    struct smsg *m = calloc(1, sizeof(*m));
    RFS_ASSERT(m != NULL);
    m->from = n->id;
    m->to = to;
    m->plain = plain;
    if (n->s->o.trace != NULL) {
        struct cons_msg cm;
        if (wire_msg_decode(plain.base, plain.len, &cm) == 0) {
            char buf[200];
            describe(&cm, buf, sizeof(buf));
            tracef(n->s, "n%" PRIu64 " -> n%" PRIu64 " %s", n->id, to, buf);
            wire_msg_free(&cm);
        }
    }
    net_send(n->s, m);
}

static void io_read_chunk(void *data, struct host_chunk *c)
{
    struct snode *n = data;
    push_ptr(n->s, n->s->now + 1 + rndn(n->s, 3), EV_CHUNK, (int)n->id, NULL,
             c);
}

static void io_snapshot(void *data)
{
    struct snode *n = data;
    struct sim *s = n->s;
    RFS_ASSERT(n->snap_img == NULL);
    /* As RocksDB's snapshot: the state as of now, written meanwhile. */
    n->snap_img = sm_encode(&n->sm, &n->snap_len);
    n->snap_idx = n->sm.applied;
    push(s, s->now + 1 + rndn(s, 20), EV_SNAP, (int)n->id, NULL);
}

static int io_snapshot_record(void *data, const struct cons_snap_meta *meta,
                              rfs_index_t compact_to, rfs_index_t old_index)
{
    struct snode *n = data;
    (void)old_index;
    RFS_ASSERT(n->taken_img != NULL && meta->index == n->taken_idx);
    free(n->d.img);
    n->d.img = n->taken_img;
    n->d.img_len = n->taken_len;
    n->taken_img = NULL;
    n->d.snap = *meta;
    /* Recording the metadata is a synced write: the applies before it are
     * durable with it. */
    n->d.durable_applied = n->sm.applied;
    disk_compact(&n->d, compact_to);
    return 0;
}

static int io_apply(void *data, const struct cons_entry *e, unsigned cnt,
                    struct store_result *res)
{
    struct snode *n = data;
    /* Below the reserve the store refuses the whole batch before writing
     * anything; the driver keeps the entries and tries again. */
    if (n->s->enospc_pm > 0 && rndn(n->s, 1000) < n->s->enospc_pm) {
        tracef(n->s, "n%" PRIu64 " apply of %u entries refused: disk full",
               n->id, cnt);
        return -ENOSPC;
    }
    for (unsigned i = 0; i < cnt; i++) {
        sm_apply(n->s, n, &n->sm, &e[i], &res[i], true);
    }
    return 0;
}

static rfs_index_t io_applied(void *data)
{
    return ((struct snode *)data)->sm.applied;
}

static bool io_connected(void *data, rfs_nodeid_t id)
{
    struct snode *n = data;
    return id <= n->s->n_ids && n->s->nodes[id].up &&
           !n->s->blocked[n->id][id];
}

static int io_pin(void *data, rfs_nodeid_t peer, uint64_t data_id,
                  uint64_t *pinned)
{
    struct snode *n = data;
    RFS_ASSERT(peer <= MAX_NODES);
    if (n->d.pins[peer] == 0) {
        n->d.pins[peer] = data_id;
    }
    *pinned = n->d.pins[peer];
    return 0;
}

/* The transport's hello, once per connection: the first message from a
 * peer since this process started, or since the peer's disk changed,
 * passes host_hello first; a refused peer's messages are dropped. */
static bool greet(struct sim *s, struct snode *n, rfs_nodeid_t from)
{
    uint64_t id = s->nodes[from].data_id;
    if (n->greeted[from] == id) {
        return true;
    }
    if (!host_hello(n->h, from, id)) {
        return false;
    }
    /* Once removed, it counts in no quorum: accepting it is harmless. */
    if (s->nodes[from].wiped &&
        cons_conf_get(cons_node_conf(CORE(n)), from) != NULL) {
        s->r->wiped_accepted++;
        tracef(s, "HELLO n%" PRIu64 " accepts wiped n%" PRIu64, n->id, from);
    }
    n->greeted[from] = id;
    return true;
}

static const char *io_errmsg(void *data)
{
    (void)data;
    return "simulated disk error";
}

static void io_log(void *data, enum rfs_log_level lv, const char *line)
{
    struct snode *n = data;
    (void)lv;
    tracef(n->s, "n%" PRIu64 " host: %s", n->id, line);
}

static void check_reads(struct sim *s, struct snode *n,
                        const struct cons_update *u)
{
    for (unsigned i = 0; i < u->n_reads; i++) {
        for (size_t j = 0; j < n->n_reads; j++) {
            if (n->reads[j].ctx != u->reads[i].ctx) {
                continue;
            }
            if (!s->o.lin_only && u->reads[i].index < n->reads[j].min) {
                violation(s,
                          "n%" PRIu64 " read index %" PRIu64
                          " below commit %" PRIu64 " known at request",
                          n->id, u->reads[i].index, n->reads[j].min);
            }
            s->r->reads++;
            n->reads[j] = n->reads[--n->n_reads];
            break;
        }
    }
    for (unsigned i = 0; i < u->n_reads_failed; i++) {
        for (size_t j = 0; j < n->n_reads; j++) {
            if (n->reads[j].ctx == u->reads_failed[i]) {
                n->reads[j] = n->reads[--n->n_reads];
                break;
            }
        }
    }
}

static void check_new_leader(struct sim *s, struct snode *n)
{
    struct cons_status st;
    cons_node_status(CORE(n), &st);
    if (st.term >= s->leaders_cap) {
        size_t cap = s->leaders_cap ? s->leaders_cap : 64;
        while (cap <= st.term) {
            cap *= 2;
        }
        s->leaders = realloc(s->leaders, cap * sizeof(*s->leaders));
        RFS_ASSERT(s->leaders != NULL);
        memset(s->leaders + s->leaders_cap, 0,
               (cap - s->leaders_cap) * sizeof(*s->leaders));
        s->leaders_cap = cap;
    }
    if (s->leaders[st.term] != 0 && s->leaders[st.term] != n->id) {
        violation(s, "election safety: n%" PRIu64 " and n%" PRIu64
                     " both lead term %" PRIu64,
                  s->leaders[st.term], n->id, st.term);
    }
    s->leaders[st.term] = n->id;
    s->r->elections++;
    /* Leader completeness: every entry committed in an earlier term is in
     * the new leader's log. */
    for (rfs_index_t i = st.snap_index + 1; i <= s->global_commit; i++) {
        if (i >= s->ledger_cap || s->ledger[i].term == 0 ||
            s->ledger[i].seen >= st.term) {
            continue;
        }
        const struct cons_entry *e = cons_node_entry(CORE(n), i);
        if (e == NULL) {
            if (i > st.last_index) {
                violation(s, "leader completeness: n%" PRIu64
                             " leads term %" PRIu64 " without entry %" PRIu64,
                          n->id, st.term, i);
                return;
            }
            continue;
        }
        if (entry_hash(e) != s->ledger[i].h) {
            violation(s, "leader completeness: n%" PRIu64 " entry %" PRIu64
                         " differs from the committed one",
                      n->id, i);
            return;
        }
    }
}

/*
 * Lease exclusivity: while a leader's lease runs, no leader of a later term
 * exists. That is the whole claim a lease read rests on (the voters that
 * acknowledged its round ignore candidates for an election timeout from
 * hearing it, and the lease ends early enough to absorb clock drift and
 * tick quantization), so a correct core never trips this. It catches a
 * broken promise at the moment the new leader is elected, without waiting
 * for a write to reach it and a read to land on the old leader inside the
 * few ticks the lease has left. Both ends are measured on the old leader's
 * own clock, which is what it compares its lease with: host_lease_end_ns
 * accounts for ticks it has not been given yet (a paused process), so a
 * stalled old leader is judged by its real lease, not by its frozen ticks.
 */
static void check_lease_exclusive(struct sim *s, struct snode *n)
{
    struct cons_status st;
    cons_node_status(CORE(n), &st);
    for (unsigned i = 1; i <= s->n_ids; i++) {
        struct snode *m = &s->nodes[i];
        if (m == n || !m->up || m->h == NULL) {
            continue;
        }
        struct cons_status ms;
        cons_node_status(CORE(m), &ms);
        if (ms.role != CONS_LEADER || ms.term >= st.term) {
            continue;
        }
        uint64_t end = host_lease_end_ns(m->h), now = io_now_ns(m);
        if (end > now && !s->o.lin_only) {
            violation(s, "lease overlap: n%" PRIu64 " leads term %" PRIu64
                         " while n%" PRIu64 "'s lease for term %" PRIu64
                         " runs %" PRIu64 " us more",
                      n->id, st.term, m->id, ms.term, (end - now) / 1000);
        }
    }
}

static void io_observe(void *data, const struct cons_update *u)
{
    struct snode *n = data;
    if (u->role_changed && u->role == CONS_LEADER) {
        check_new_leader(n->s, n);
        check_lease_exclusive(n->s, n);
        if (n->s->fig8 && n->s->chaos && chance(n->s, 50)) {
            /* Before its no-op reaches a majority, often: the entries of
             * earlier terms it is sending are then all a majority holds. */
            push(n->s, n->s->now + 1 + rndn(n->s, 12), EV_KILL, (int)n->id,
                 NULL);
        }
    }
    check_reads(n->s, n, u);
}

/*
 * Durability as the core counts it: every entry up to its stable index is
 * on this node's disk, as the core holds it. A leader counts itself at
 * stable towards commitment, and a node hands entries to apply only up to
 * it, so this is what those rest on. Sound: the simulated disk is written
 * before the driver hears the write completed, and the core's stable only
 * moves up on such a completion (down on a truncation, or to a snapshot
 * the disk holds). It catches a completion that vouches for entries a
 * newer leader put in place of the ones it wrote (RAFT-PITFALLS 10)
 * without needing the crash that would lose them. Only the top of the
 * range is compared: that is where a stale completion shows.
 */
static void check_stable(struct sim *s, struct snode *n,
                         const struct cons_status *st)
{
    if (st->stable == n->seen_stable) {
        return;
    }
    n->seen_stable = st->stable;
    rfs_index_t lo = st->stable > 64 ? st->stable - 64 : 0;
    if (lo < n->d.log_base) {
        lo = n->d.log_base; /* At or below: in the disk's snapshot. */
    }
    for (rfs_index_t i = lo + 1; i <= st->stable; i++) {
        const struct cons_entry *e = cons_node_entry(CORE(n), i);
        if (e == NULL) {
            continue; /* Compacted in memory. */
        }
        const struct cons_entry *d = disk_entry(&n->d, i);
        if (d == NULL || d->term != e->term) {
            violation(s, "n%" PRIu64 " counts entry %" PRIu64 " (term %"
                         PRIu64 ") durable, but its disk holds %s %" PRIu64,
                      n->id, i, e->term, d ? "term" : "no entry, last",
                      d ? d->term : n->d.log_base + n->d.n);
            return;
        }
    }
}

/* After each call into the driver: commits it saw join the ledger. */
static void io_idle(void *data)
{
    struct snode *n = data;
    struct sim *s = n->s;
    if (n->h == NULL) {
        return;
    }
    struct cons_status st;
    cons_node_status(CORE(n), &st);
    check_stable(s, n, &st);
    for (rfs_index_t i = n->seen_commit + 1; i <= st.commit; i++) {
        const struct cons_entry *e = cons_node_entry(CORE(n), i);
        if (e != NULL) {
            ledger_commit(s, n, e);
        }
    }
    if (st.commit > n->seen_commit) {
        n->seen_commit = st.commit;
        if (s->fig8 && s->chaos && st.role == CONS_LEADER && chance(s, 50)) {
            /* Figure 8 mode: the leader dies as it commits, before its
             * followers hear of it or hold all it sent. */
            push(s, s->now, EV_KILL, (int)n->id, NULL);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Nodes: start, disk completions, crash                                     */

static void disk_chunk(struct sim *s, struct snode *n,
                       const struct batch_chunk *c)
{
    if (c->offset == 0) {
        free(n->d.recv);
        n->d.recv = NULL;
        n->d.recv_len = 0;
    }
    RFS_ASSERT(c->offset == n->d.recv_len);
    n->d.recv = realloc(n->d.recv, n->d.recv_len + c->data.len + 1);
    RFS_ASSERT(n->d.recv != NULL);
    memcpy(n->d.recv + n->d.recv_len, c->data.base, c->data.len);
    n->d.recv_len += c->data.len;
    if (!c->last) {
        return;
    }
    struct sm m;
    if (!sm_decode(n->d.recv, n->d.recv_len, &m) ||
        m.applied != c->meta.index) {
        violation(s, "n%" PRIu64 " received a damaged snapshot image %" PRIu64,
                  n->id, c->meta.index);
        sm_free(&m);
        return;
    }
    if (m.applied < s->ledger_cap && s->ledger[m.applied].cum != 0 &&
        s->ledger[m.applied].cum != m.hash) {
        violation(s, "n%" PRIu64 " snapshot %" PRIu64 " has another state",
                  n->id, m.applied);
    }
    free(n->d.img);
    n->d.img = n->d.recv;
    n->d.img_len = n->d.recv_len;
    n->d.recv = NULL;
    n->d.recv_len = 0;
    n->d.snap = c->meta;
    free_entries(n->d.log, n->d.n);
    n->d.log = NULL;
    n->d.n = n->d.cap = 0;
    n->d.log_base = c->meta.index;
    n->d.log_base_term = c->meta.term;
    sm_free(&n->sm);
    n->sm = m;
    s->r->snapshots_sent++;
}

/* The write in flight reaches the disk whole (RocksDB's WriteBatch is
 * atomic: a torn one is dropped at recovery, as if it never started). */
static void disk_land(struct sim *s, struct snode *n,
                      const struct batch_writes *w)
{
    if (w->has_hs) {
        n->d.hs = w->hs;
    }
    for (unsigned i = 0; i < w->n_chunks; i++) {
        disk_chunk(s, n, &w->chunks[i]);
    }
    if (w->n_ents > 0) {
        disk_truncate(&n->d, w->ents[0].index);
        for (unsigned i = 0; i < w->n_ents; i++) {
            disk_append(&n->d, &w->ents[i]);
        }
    }
    bool installed = false;
    for (unsigned i = 0; i < w->n_chunks; i++) {
        installed |= w->chunks[i].last;
    }
    if (installed) {
        n->d.durable_applied = n->sm.applied;
    } else if (n->write_applied > n->d.durable_applied) {
        n->d.durable_applied = n->write_applied;
    }
}

static void node_crash(struct sim *s, struct snode *n);

static void disk_done(struct sim *s, struct snode *n)
{
    const struct batch_writes *w = n->writing;
    if (w == NULL) {
        return;
    }
    if (s->chaos && s->enospc_pm > 0 && rndn(s, 1000) < s->enospc_pm) {
        /* Refused for lack of space: nothing written; the driver retries
         * the same batch and acknowledges nothing meanwhile. */
        tracef(s, "n%" PRIu64 " DISK FULL", n->id);
        n->writing = NULL;
        host_write_done(n->h, -ENOSPC, "simulated ENOSPC");
        return;
    }
    if (s->chaos && s->eio_pm > 0 && rndn(s, 1000) < s->eio_pm) {
        /* The fsync failed: whether anything reached the disk is unknown
         * (half the time it did). The driver stops; the operator restarts
         * the node after checking its disk. */
        tracef(s, "n%" PRIu64 " DISK EIO", n->id);
        n->writing = NULL;
        bool landed = chance(s, 50);
        if (landed) {
            disk_land(s, n, w);
        }
        host_write_done(n->h, -EIO, "simulated fsync failure");
        if (!host_failed(n->h)) {
            violation(s, "n%" PRIu64 " goes on after its fsync failed", n->id);
        }
        node_crash(s, n);
        push(s, s->now + 100 + rndn(s, 400), EV_RESTART, (int)n->id, NULL);
        return;
    }
    n->writing = NULL;
    disk_land(s, n, w);
    host_write_done(n->h, 0, NULL);
}

static void node_start(struct sim *s, struct snode *n)
{
    n->s = s;
    if (s->o.lease_reads) {
        n->drift_pm = (int)rndn(s, 101) - 50;
    }
    n->boot++;
    /* A restarted process reads the clock afresh; its ticks restart. */
    struct host_options o = {
        .id = n->id,
        .boot = n->boot,
        .data_id = n->data_id,
        .tick_ms = TICK_MS,
        .election_ticks = ELECTION_TICKS,
        .heartbeat_ticks = HEARTBEAT_TICKS,
        .commit_timeout_ms = COMMIT_TIMEOUT_MS,
        .ids_from = rnd(s),
        .lease_reads = s->o.lease_reads,
        .boot_hold = s->o.lease_reads,
        .follower_leases = s->o.lease_reads,
        .snapshot_entries = s->snap_every,
        .snapshot_bytes = UINT64_MAX,
        .snap_index = n->d.snap.index,
        .seed = rnd(s),
        .max_inflight = 8,
        .max_msg_bytes = 64,
        .max_uncommitted = 4096,
        .snap_chunk_bytes = s->chunk_bytes,
        .trace = s->o.trace ? core_trace : NULL,
        .trace_data = s,
    };
    struct host_io io = {
        .data = n,
        .now_ns = io_now_ns,
        .wall_ns = io_wall_ns,
        .write = io_write,
        .send = io_send,
        .read_chunk = io_read_chunk,
        .snapshot = io_snapshot,
        .snapshot_record = io_snapshot_record,
        .apply = io_apply,
        .applied = io_applied,
        .connected = io_connected,
        .errmsg = io_errmsg,
        .pin = io_pin,
        .idle = io_idle,
        .log = io_log,
        .observe = io_observe,
    };
    struct cons_load l;
    memset(&l, 0, sizeof(l));
    l.hs = n->d.hs;
    l.snap = n->d.snap;
    l.entries = n->d.log;
    l.n_entries = (unsigned)n->d.n;
    l.applied = n->sm.applied;
    if (l.snap.index < n->d.log_base) {
        /* Never: the disk log starts at or before the snapshot point. */
        RFS_ASSERT(!"disk log starts after the snapshot");
    }
    /* The core wants the log after the snapshot; trailing entries kept
     * before it are skipped. */
    size_t skip = (size_t)(l.snap.index - n->d.log_base);
    if (skip > n->d.n) {
        skip = n->d.n;
    }
    l.entries += skip;
    l.n_entries -= (unsigned)skip;
    int rv = host_new(&o, &io, &l, &n->h);
    if (rv != 0) {
        violation(s, "n%" PRIu64 " cannot restart from its disk: %d", n->id,
                  rv);
        n->up = false;
        n->h = NULL;
        return;
    }
    n->up = true;
    n->paused = false;
    n->stable_since = s->now;
    memset(n->greeted, 0, sizeof(n->greeted));
    struct cons_status st;
    cons_node_status(CORE(n), &st);
    n->seen_commit = st.commit;
    n->n_reads = 0;
    push(s, s->now + 1 + rndn(s, TICK_MS), EV_TICK, (int)n->id, NULL);
}

static void node_crash(struct sim *s, struct snode *n)
{
    tracef(s, "n%" PRIu64 " CRASH (%s)", n->id,
           n->writing ? "write in flight" : "nothing pending");
    if (n->writing != NULL && chance(s, 50)) {
        tracef(s, "n%" PRIu64 " its write in flight reached the disk", n->id);
        disk_land(s, n, n->writing);
    }
    n->writing = NULL;
    while (n->held != NULL) {
        struct smsg *m = n->held;
        n->held = m->next;
        msg_free(m);
    }
    n->held_tail = NULL;
    free(n->d.recv); /* A partial image does not survive. */
    n->d.recv = NULL;
    n->d.recv_len = 0;
    free(n->snap_img);
    n->snap_img = NULL;
    free(n->taken_img);
    n->taken_img = NULL;
    struct cons_status st;
    cons_node_status(CORE(n), &st);
    s->r->leased_reads += st.leased_reads;
    /* The process died with its waiting requests. */
    host_close(n->h, RFS_ESHUTDOWN);
    host_free(n->h);
    n->h = NULL;
    n->up = false;
    n->paused = false;
    n->boot++;
    /* What RocksDB kept: unsynced applies are gone. */
    sm_rebuild(s, n);
}

static struct snode *node_create(struct sim *s, bool founder,
                                 const struct cons_conf *conf)
{
    RFS_ASSERT(s->n_ids < MAX_NODES);
    struct snode *n = &s->nodes[++s->n_ids];
    memset(n, 0, sizeof(*n));
    n->id = s->n_ids;
    n->exists = true;
    n->s = s;
    n->data_id = rnd(s) | 1;
    for (unsigned i = 1; i <= MAX_NODES; i++) {
        s->link_since[n->id][i] = s->link_since[i][n->id] = s->now;
    }
    if (founder) {
        struct cons_entry e;
        RFS_ASSERT(cons_bootstrap_entry(conf, &e) == 0);
        disk_append(&n->d, &e);
        rfs_free(e.data.base);
    }
    node_start(s, n);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                    */

/* Log matching (thesis Figure 3.2): if two logs hold an entry with the same
 * index and term, they are identical up to it. */
static void check_log_matching(struct sim *s)
{
    for (unsigned a = 1; a <= s->n_ids; a++) {
        struct snode *x = &s->nodes[a];
        if (!x->up) {
            continue;
        }
        struct cons_status sa;
        cons_node_status(CORE(x), &sa);
        for (unsigned b = a + 1; b <= s->n_ids; b++) {
            struct snode *y = &s->nodes[b];
            if (!y->up) {
                continue;
            }
            struct cons_status sb;
            cons_node_status(CORE(y), &sb);
            rfs_index_t lo = sa.first_index > sb.first_index ? sa.first_index
                                                              : sb.first_index;
            rfs_index_t hi = sa.last_index < sb.last_index ? sa.last_index
                                                            : sb.last_index;
            rfs_index_t top = 0;
            for (rfs_index_t i = hi; i >= lo && i > 0; i--) {
                const struct cons_entry *ea = cons_node_entry(CORE(x), i);
                const struct cons_entry *eb = cons_node_entry(CORE(y), i);
                if (ea && eb && ea->term == eb->term) {
                    top = i;
                    break;
                }
            }
            for (rfs_index_t i = lo; i <= top; i++) {
                const struct cons_entry *ea = cons_node_entry(CORE(x), i);
                const struct cons_entry *eb = cons_node_entry(CORE(y), i);
                if (ea && eb && entry_hash(ea) != entry_hash(eb)) {
                    violation(s, "log matching: n%u and n%u agree at %" PRIu64
                                 " but differ at %" PRIu64,
                              a, b, top, i);
                    return;
                }
            }
        }
    }
}

static struct snode *random_up(struct sim *s)
{
    unsigned k = 0;
    unsigned ids[MAX_NODES];
    for (unsigned i = 1; i <= s->n_ids; i++) {
        if (s->nodes[i].up && !s->nodes[i].paused) {
            ids[k++] = i;
        }
    }
    return k ? &s->nodes[ids[rndn(s, k)]] : NULL;
}

static struct snode *with_pending_writes(struct sim *s)
{
    unsigned k = 0;
    unsigned ids[MAX_NODES];
    for (unsigned i = 1; i <= s->n_ids; i++) {
        if (s->nodes[i].up && s->nodes[i].writing != NULL) {
            ids[k++] = i;
        }
    }
    return k ? &s->nodes[ids[rndn(s, k)]] : NULL;
}

static struct snode *find_leader(struct sim *s)
{
    struct snode *best = NULL;
    rfs_term_t best_term = 0;
    for (unsigned i = 1; i <= s->n_ids; i++) {
        struct snode *n = &s->nodes[i];
        if (!n->up || n->paused) {
            continue;
        }
        struct cons_status st;
        cons_node_status(CORE(n), &st);
        if (st.role == CONS_LEADER && st.term >= best_term) {
            best = n;
            best_term = st.term;
        }
    }
    return best;
}

/* ------------------------------------------------------------------------ */
/* Liveness during the run                                                   */

/*
 * A majority of the voters that has been up, unpaused and fully connected
 * for LIVE_WINDOW_MS must have committed something meanwhile (clients
 * propose all the time). Checked during the chaos phase, not only after the
 * final heal: a cluster that recovers only once every fault is gone is not
 * live. The configuration is that of the node with the newest committed
 * one.
 */
static void check_liveness(struct sim *s)
{
    if (!s->chaos || s->now < LIVE_WINDOW_MS + 500) {
        return;
    }
    const struct cons_conf *c = NULL;
    rfs_index_t best = 0;
    for (unsigned i = 1; i <= s->n_ids; i++) {
        struct snode *n = &s->nodes[i];
        if (!n->up) {
            continue;
        }
        struct cons_status st;
        cons_node_status(CORE(n), &st);
        if (c == NULL || (st.conf_index <= st.commit && st.conf_index > best)) {
            c = cons_node_conf(CORE(n));
            best = st.conf_index;
        }
    }
    if (c == NULL) {
        return;
    }
    /* The voters, and whether each is steady. */
    rfs_nodeid_t v[CONS_MAX_SERVERS];
    unsigned nv = 0, voters = 0;
    uint64_t since = s->now - LIVE_WINDOW_MS;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].role != CONS_VOTER) {
            continue;
        }
        voters++;
        rfs_nodeid_t id = c->servers[i].id;
        if (id <= s->n_ids && s->nodes[id].up && !s->nodes[id].paused &&
            !s->nodes[id].wiped && s->nodes[id].stable_since <= since) {
            v[nv++] = id;
        }
    }
    if (nv < voters / 2 + 1 || nv > 16) {
        return;
    }
    /* Any majority among them, pairwise connected both ways the whole
     * window? (At most 7 voters: try every subset.) */
    bool found = false;
    for (unsigned mask = 1; mask < (1u << nv) && !found; mask++) {
        if ((unsigned)__builtin_popcount(mask) < voters / 2 + 1) {
            continue;
        }
        bool ok = true;
        for (unsigned a = 0; a < nv && ok; a++) {
            for (unsigned b = 0; b < nv && ok; b++) {
                if (a == b || !(mask & (1u << a)) || !(mask & (1u << b))) {
                    continue;
                }
                ok = !s->blocked[v[a]][v[b]] &&
                     s->link_since[v[a]][v[b]] <= since;
            }
        }
        found = ok;
    }
    if (found && s->commit_at < since) {
        violation(s, "liveness: a majority of %u voters has been up and "
                     "connected for %u ms, and nothing committed since t=%"
                     PRIu64, voters, LIVE_WINDOW_MS, s->commit_at);
    }
}

/* ------------------------------------------------------------------------ */
/* Clients                                                                   */

static void client(struct sim *s)
{
    struct snode *n = random_up(s);
    if (n != NULL) {
        unsigned what = rndn(s, 100);
        if (s->now < s->quiet_until && what < 65) {
            what = 65; /* Only reads while the lease attack sets up. */
        }
        if (what < 25) {
            /* Straight to the core: a command with no session. */
            char buf[48];
            int len = snprintf(buf, sizeof(buf), "p%" PRIu64 "-n%" PRIu64,
                               ++s->next_value, n->id);
            struct rfs_buf b = {buf, (size_t)len};
            if (cons_node_propose(CORE(n), &b, NULL) == 0) {
                s->r->proposals++;
            }
            host_poke(n->h);
        } else if (what < 65) {
            /* Through the driver, as a FUSE write: a session, retries. */
            struct sreq *q = sreq_new(s, n->id, false);
            q->value = ++s->next_value;
            struct store_cmd c = {.op = STORE_OP_WRITE, .ino = q->key,
                                  .data = &q->value, .data_len = 8};
            if (host_submit(n->h, &c, req_done, q) == 0) {
                s->r->proposals++;
            } else {
                q->completions = 1; /* Refused: never runs. */
            }
        } else if (what < 85) {
            struct sreq *q = sreq_new(s, n->id, true);
            if (host_read(n->h, false, req_done, q) != 0) {
                q->completions = 1;
            }
        } else {
            /* Raw ReadIndex ids live apart from the driver's. */
            uint64_t ctx = ++s->next_ctx | (1ull << 63);
            if (cons_node_read_index(CORE(n), ctx) == 0) {
                if (n->n_reads == n->cap_reads) {
                    n->cap_reads = n->cap_reads ? n->cap_reads * 2 : 16;
                    n->reads = realloc(n->reads,
                                       n->cap_reads * sizeof(*n->reads));
                    RFS_ASSERT(n->reads != NULL);
                }
                n->reads[n->n_reads].ctx = ctx;
                n->reads[n->n_reads].min = s->global_commit;
                n->n_reads++;
            }
            host_poke(n->h);
        }
    }
    if (s->chaos) {
        push(s, s->now + 1 + rndn(s, 25), EV_CLIENT, 0, NULL);
    }
}

static void heal(struct sim *s)
{
    tracef(s, "HEAL network");
    for (unsigned i = 0; i <= MAX_NODES; i++) {
        for (unsigned j = 0; j <= MAX_NODES; j++) {
            if (s->blocked[i][j]) {
                s->link_since[i][j] = s->now;
            }
        }
    }
    memset(s->blocked, 0, sizeof(s->blocked));
}

static void membership(struct sim *s)
{
    struct snode *l = find_leader(s);
    if (l == NULL) {
        return;
    }
    const struct cons_conf *c = cons_node_conf(CORE(l));
    unsigned voters = cons_conf_voters(c);
    int rv = 0;
    unsigned pick = rndn(s, 4);
    if (pick == 0 && c->n < 7 && s->n_ids < MAX_NODES) {
        /* A new node joins as a learner. */
        rfs_nodeid_t id = s->n_ids + 1;
        char addr[32];
        snprintf(addr, sizeof(addr), "sim:%" PRIu64, id);
        rv = cons_node_change(CORE(l), CONS_ADD_LEARNER, id, addr, NULL);
        tracef(s, "NEMESIS add learner n%" PRIu64 ": %d", id, rv);
        if (rv == 0) {
            node_create(s, false, NULL);
        }
    } else if (pick == 1) {
        for (unsigned i = 0; i < c->n; i++) {
            if (c->servers[i].role == CONS_LEARNER) {
                rv = cons_node_change(CORE(l), CONS_PROMOTE, c->servers[i].id,
                                      NULL, NULL);
                tracef(s, "NEMESIS promote n%" PRIu64 ": %d", c->servers[i].id,
                       rv);
                break;
            }
        }
    } else if (pick == 2 && voters > 3) {
        const struct cons_server *v = &c->servers[rndn(s, c->n)];
        rfs_nodeid_t id = v->id;
        bool demote = chance(s, 30) && v->role == CONS_VOTER;
        rv = cons_node_change(CORE(l), demote ? CONS_DEMOTE : CONS_REMOVE, id,
                              NULL, NULL);
        tracef(s, "NEMESIS %s n%" PRIu64 ": %d", demote ? "demote" : "remove",
               id, rv);
    }
    host_poke(l->h);
}

static void cut(struct sim *s, rfs_nodeid_t a, rfs_nodeid_t b)
{
    s->blocked[a][b] = s->blocked[b][a] = true;
}

/*
 * The case a restarted voter's hold protects (RAFT-PITFALLS 8): leader L
 * is cut from a minority M; a follower F of L's majority restarts at once
 * and is cut from L. M with F is a majority; F must not vote for one of M
 * before its election timeout is up, because L still counts on its last
 * ack for its lease and serves reads from it. Reads on L follow.
 *
 * Two steps: M is cut first, long enough for its election timers to run
 * out (the majority keeps ignoring it: it hears from L); then F restarts.
 * No writes meanwhile, so that M's logs stay as fresh as F's (else F's
 * election restriction, not its hold, would refuse them); writes resume
 * with the restart, and reach whoever M and F elect.
 */
static void lease_attack(struct sim *s)
{
    struct snode *l = find_leader(s);
    if (l == NULL) {
        return;
    }
    const struct cons_conf *c = cons_node_conf(CORE(l));
    struct cons_status st;
    cons_node_status(CORE(l), &st);
    unsigned voters = cons_conf_voters(c), fresh = 0, cuts = 0;
    rfs_nodeid_t m[CONS_MAX_SERVERS];
    /* Only voters with the leader's whole log: M must be electable. */
    for (unsigned i = 0; i < c->n; i++) {
        rfs_nodeid_t id = c->servers[i].id;
        struct cons_progress p;
        if (c->servers[i].role == CONS_VOTER && id != l->id &&
            id <= s->n_ids && s->nodes[id].up && !s->nodes[id].paused &&
            cons_node_progress(CORE(l), id, &p) == 0 &&
            p.match == st.last_index) {
            m[fresh++] = id;
        }
    }
    if (fresh < voters / 2 + 1) {
        return; /* Not enough up-to-date voters for M and F. */
    }
    for (unsigned i = 0; i < voters / 2; i++) {
        cut(s, l->id, m[i]);
        cuts++;
    }
    tracef(s, "NEMESIS lease attack on leader n%" PRIu64 ": %u cut off",
           l->id, cuts);
    uint64_t step2 = s->now + 2 * ELECTION_TICKS * TICK_MS + rndn(s, 60);
    s->quiet_until = step2;
    push(s, step2, EV_ATTACK, (int)l->id, NULL);
    push(s, s->now + 600 + rndn(s, 700), EV_HEAL, 0, NULL);
}

static void lease_attack_restart(struct sim *s, struct snode *l)
{
    if (!l->up || l->paused) {
        return;
    }
    const struct cons_conf *c = cons_node_conf(CORE(l));
    rfs_nodeid_t others[CONS_MAX_SERVERS];
    unsigned k = 0, voters = 0;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].role != CONS_VOTER) {
            continue;
        }
        voters++;
        if (c->servers[i].id != l->id && c->servers[i].id <= s->n_ids &&
            s->nodes[c->servers[i].id].up) {
            others[k++] = c->servers[i].id;
        }
    }
    /* F: one the leader still hears from. */
    rfs_nodeid_t f = 0;
    for (unsigned i = 0; i < k && f == 0; i++) {
        if (!s->blocked[l->id][others[i]]) {
            f = others[i];
        }
    }
    (void)voters;
    if (f == 0 || !l->up || l->paused) {
        return;
    }
    tracef(s, "NEMESIS lease attack on leader n%" PRIu64 ": restart n%" PRIu64
              " and cut it from the leader",
           l->id, f);
    struct snode *fn = &s->nodes[f];
    node_crash(s, fn);
    cut(s, l->id, f);
    /* Reads on L for as long as its lease could last. */
    for (unsigned t = 5; t < 2 * ELECTION_TICKS * TICK_MS; t += 5) {
        push(s, s->now + t, EV_READ, (int)l->id, NULL);
    }
    push(s, s->now + 1 + rndn(s, 5), EV_RESTART, (int)f, NULL);
    push(s, s->now + 300 + rndn(s, 700), EV_HEAL, 0, NULL);
}

/*
 * Figure 8 mode (Raft paper, Figure 8; the "Figure8Unreliable" pattern):
 * a leader appends and crashes before its entry reaches a majority, a new
 * leader appends a conflicting entry at the same index and crashes in
 * turn, and old leaders come back. Logs then hold different terms at one
 * index on different minorities, and a leader that counted replicas of an
 * earlier term's entry would commit what the next leader overwrites. Only
 * a bare majority is kept up at times, so that whoever is up must elect
 * from stale, divergent logs.
 */
static void figure8(struct sim *s)
{
    struct snode *l = find_leader(s);
    if (l != NULL) {
        /* Several entries: a later leader sends them in more than one
         * message, so a majority may hold some of them but not its no-op. */
        unsigned burst = 1 + rndn(s, 6);
        for (unsigned i = 0; i < burst; i++) {
            char buf[48];
            int len = snprintf(buf, sizeof(buf), "f8-%" PRIu64 "-n%" PRIu64,
                               ++s->next_value, l->id);
            struct rfs_buf b = {buf, (size_t)len};
            if (cons_node_propose(CORE(l), &b, NULL) == 0) {
                s->r->proposals++;
            }
        }
        host_poke(l->h);
        tracef(s, "NEMESIS figure 8: n%" PRIu64 " proposes, then crashes",
               l->id);
        push(s, s->now + rndn(s, 15), EV_KILL, (int)l->id, NULL);
    }
    /* Bring back one of the down nodes, so that about a bare majority is
     * up: the crashes above and the restarts race. */
    unsigned down[MAX_NODES], k = 0;
    for (unsigned i = 1; i <= s->n_ids; i++) {
        if (s->nodes[i].exists && !s->nodes[i].up) {
            down[k++] = i;
        }
    }
    if (k > 0 && chance(s, 70)) {
        push(s, s->now + rndn(s, 30), EV_RESTART, (int)down[rndn(s, k)],
             NULL);
    }
}

/* ------------------------------------------------------------------------ */
/* The election race (struct race)                                          */

enum race_verdict { FRAME_PASS, FRAME_LOSE, FRAME_HOLD };

static bool race_active(const struct sim *s)
{
    return s->race.phase != RACE_OFF && s->race.phase != RACE_DONE;
}

/* The status of a voter the race plays with, if it is up and running. */
static bool race_status(struct sim *s, rfs_nodeid_t id, struct cons_status *st)
{
    struct snode *n = &s->nodes[id];
    if (id == 0 || !n->up || n->paused || n->h == NULL) {
        return false;
    }
    cons_node_status(CORE(n), st);
    return true;
}

/* Let the frames held on one link go, in their order, or lose them. */
static void race_release(struct sim *s, rfs_nodeid_t from, rfs_nodeid_t to,
                         bool deliver)
{
    struct race *r = &s->race;
    struct smsg *m = r->head[from][to];
    r->head[from][to] = r->tail[from][to] = NULL;
    while (m != NULL) {
        struct smsg *next = m->next;
        m->next = NULL;
        if (deliver) {
            push(s, s->now + 1, EV_DELIVER, (int)to, m);
        } else {
            msg_free(m);
        }
        m = next;
    }
}

static void race_end(struct sim *s)
{
    for (unsigned i = 0; i <= MAX_NODES; i++) {
        for (unsigned j = 0; j <= MAX_NODES; j++) {
            race_release(s, i, j, false);
        }
    }
    if (race_active(s)) {
        tracef(s, "NEMESIS election race ends at step %d", s->race.phase);
        s->race.phase = RACE_DONE;
        s->quiet_until = s->now;
    }
}

static void race_enter(struct sim *s, enum race_phase p)
{
    s->race.phase = p;
    s->race.since = s->now;
    s->r->race_step = p;
}

/* With five voters, all up: L's majority is L, L0 and one more; W's is W,
 * X and L0. (With three there is no room for X; seven would need two more
 * voters on each side.) */
static bool race_start(struct sim *s)
{
    struct snode *l0 = find_leader(s);
    if (l0 == NULL) {
        return false;
    }
    const struct cons_conf *c = cons_node_conf(CORE(l0));
    if (c->n != RACE_VOTERS || cons_conf_voters(c) != RACE_VOTERS) {
        return false;
    }
    for (unsigned i = 0; i < c->n; i++) {
        rfs_nodeid_t id = c->servers[i].id;
        if (id > s->n_ids || !s->nodes[id].up || s->nodes[id].paused) {
            return false;
        }
    }
    heal(s);
    struct race *r = &s->race;
    for (unsigned i = 0; i < c->n; i++) {
        r->ids[i] = c->servers[i].id;
    }
    r->l0 = l0->id;
    /* No writes (the logs of L0 and W must stay equal) and no other
     * fault until it is over. */
    s->quiet_until = UINT64_MAX / 2;
    race_enter(s, RACE_ISOLATE);
    tracef(s, "NEMESIS election race: isolate leader n%" PRIu64
              ", its frames held",
           l0->id);
    return true;
}

/* What happens to a frame about to be delivered, by the step. */
static enum race_verdict race_filter(struct sim *s, rfs_nodeid_t f,
                                     rfs_nodeid_t t, const struct cons_msg *m)
{
    struct race *r = &s->race;
    if (f == r->x && m->type == CONS_MSG_VOTE) {
        return FRAME_LOSE; /* X must not win, nor move anyone's term. */
    }
    if (r->phase <= RACE_HOLD) {
        /* L0 is cut off, so that the others elect without it; what it
         * sends waits, for X to answer once it holds T+1. */
        if (t == r->l0) {
            return FRAME_LOSE;
        }
        if (f == r->l0) {
            return FRAME_HOLD;
        }
        /* L's first appends wait while X's pre-votes pass; X never hears
         * L (it would follow it). */
        if (r->phase == RACE_HOLD && f == r->l) {
            return t == r->x ? FRAME_LOSE : FRAME_HOLD;
        }
        return FRAME_PASS;
    }
    /* X holds a term above L's: either would end the other. */
    if ((f == r->x && t == r->l) || (f == r->l && t == r->x)) {
        return FRAME_LOSE;
    }
    /* W stops hearing L, so that it campaigns; L must not see its term. */
    if (r->phase >= RACE_ADOPT &&
        ((f == r->l && t == r->w) || (f == r->w && t == r->l))) {
        return FRAME_LOSE;
    }
    if (r->phase == RACE_PIVOT) {
        /* L must not hear L0's higher term before W is elected. */
        return (f == r->l0 && t == r->l) || (f == r->l && t == r->l0)
                   ? FRAME_LOSE
                   : FRAME_PASS;
    }
    /* X's answers to L0 (T+1) wait for the pivot. */
    if (f == r->x && t == r->l0) {
        return FRAME_HOLD;
    }
    /* W's pre-vote for T+2 waits for the pivot too. Its earlier ones to
     * L0 are lost: held, they would reach L0 once it holds T+1, where a
     * pre-vote of the same term is granted whatever L0 heard, and W would
     * count that stale grant in its next pre-campaign. */
    if (r->phase == RACE_ADOPT && f == r->w && t == r->l0) {
        if (m->type == CONS_MSG_PREVOTE && m->term == r->t + 2) {
            r->vote_held = true;
            return FRAME_HOLD;
        }
        return FRAME_LOSE;
    }
    /* The pivot comes right after L0 acknowledged a round: L's lease
     * then rests on it for as long as it can. */
    if (r->phase == RACE_ADOPT && r->vote_held && f == r->l0 && t == r->l &&
        (m->type == CONS_MSG_APPEND_RESP ||
         m->type == CONS_MSG_HEARTBEAT_RESP) &&
        !m->reject) {
        r->acked = true;
    }
    return FRAME_PASS;
}

/* At delivery: true if the race took the frame (lost or held). */
static bool race_intercept(struct sim *s, struct smsg *m)
{
    struct cons_msg cm;
    if (wire_msg_decode(m->plain.base, m->plain.len, &cm) != 0) {
        return false;
    }
    enum race_verdict v = race_filter(s, m->from, m->to, &cm);
    if (v != FRAME_PASS && s->o.trace != NULL) {
        char buf[200];
        describe(&cm, buf, sizeof(buf));
        tracef(s, "n%" PRIu64 " -> n%" PRIu64 " %s: %s by the race", m->from,
               m->to, buf, v == FRAME_LOSE ? "lost" : "held");
    }
    wire_msg_free(&cm);
    if (v == FRAME_LOSE) {
        msg_free(m);
        return true;
    }
    if (v == FRAME_HOLD) {
        struct race *r = &s->race;
        m->next = NULL;
        if (r->tail[m->from][m->to] != NULL) {
            r->tail[m->from][m->to]->next = m;
        } else {
            r->head[m->from][m->to] = m;
        }
        r->tail[m->from][m->to] = m;
        return true;
    }
    return false;
}

/* After every event while the race runs: move on when the cluster has
 * reached the next step, give up when it went another way. */
static void race_step(struct sim *s)
{
    struct race *r = &s->race;
    struct cons_status st, ls;
    switch (r->phase) {
    case RACE_ISOLATE:
        if (s->now > r->since + 800) {
            race_end(s);
            return;
        }
        for (unsigned i = 0; i < RACE_VOTERS; i++) {
            if (r->ids[i] != r->l0 && race_status(s, r->ids[i], &st) &&
                st.role == CONS_CANDIDATE) {
                r->x = r->ids[i];
                r->t = st.term;
                race_enter(s, RACE_ELECT);
                tracef(s, "NEMESIS election race: n%" PRIu64
                          " campaigns for term %" PRIu64
                          ", its vote requests lost",
                       r->x, r->t);
                return;
            }
        }
        break;
    case RACE_ELECT:
        if (s->now > r->since + 500 || !race_status(s, r->x, &st) ||
            st.term != r->t) {
            race_end(s);
            return;
        }
        for (unsigned i = 0; i < RACE_VOTERS; i++) {
            rfs_nodeid_t id = r->ids[i];
            if (id != r->l0 && id != r->x && race_status(s, id, &st) &&
                st.role == CONS_LEADER && st.term == r->t) {
                r->l = id;
                race_enter(s, RACE_HOLD);
                tracef(s, "NEMESIS election race: n%" PRIu64
                          " wins term %" PRIu64 ", its frames held",
                       r->l, r->t);
                return;
            }
        }
        break;
    case RACE_HOLD:
        /* Not past L's first quorum check: it would step down. */
        if (s->now > r->since + 80 || !race_status(s, r->l, &ls) ||
            ls.role != CONS_LEADER || ls.term != r->t ||
            !race_status(s, r->x, &st)) {
            race_end(s);
            return;
        }
        if (st.role == CONS_CANDIDATE && st.term == r->t + 1) {
            rfs_nodeid_t rest[2];
            unsigned k = 0;
            for (unsigned i = 0; i < RACE_VOTERS; i++) {
                rfs_nodeid_t id = r->ids[i];
                if (id != r->l0 && id != r->x && id != r->l) {
                    rest[k++] = id;
                }
            }
            r->w = rest[rndn(s, 2)];
            for (unsigned i = 0; i < RACE_VOTERS; i++) {
                race_release(s, r->l, r->ids[i], true);
                race_release(s, r->l0, r->ids[i], r->ids[i] == r->x);
            }
            race_enter(s, RACE_SETTLE);
            tracef(s, "NEMESIS election race: n%" PRIu64
                      " holds term %" PRIu64 " above leader n%" PRIu64
                      "'s; L's and L0's frames go out",
                   r->x, r->t + 1, r->l);
        }
        break;
    case RACE_SETTLE: {
        if (s->now > r->since + 400) {
            race_end(s);
            return;
        }
        struct cons_status l0s, ws, xs;
        struct snode *l = &s->nodes[r->l];
        if (race_status(s, r->l, &ls) && ls.role == CONS_LEADER &&
            ls.term == r->t && host_lease_end_ns(l->h) > io_now_ns(l) &&
            race_status(s, r->l0, &l0s) && l0s.term == r->t &&
            l0s.leader == r->l && race_status(s, r->w, &ws) &&
            ws.term == r->t && ws.last_index >= ls.last_index &&
            race_status(s, r->x, &xs) && xs.term == r->t + 1 &&
            r->head[r->x][r->l0] != NULL) {
            race_enter(s, RACE_ADOPT);
            tracef(s, "NEMESIS election race: n%" PRIu64
                      " cut from leader n%" PRIu64,
                   r->w, r->l);
        }
        break;
    }
    case RACE_ADOPT:
        if (s->now > r->since + 600 || !race_status(s, r->l, &ls) ||
            ls.role != CONS_LEADER || ls.term != r->t ||
            !race_status(s, r->l0, &st) || st.term != r->t) {
            race_end(s);
            return;
        }
        if (r->vote_held && r->acked) {
            /* X's answers first, then W's pre-vote, to L0. */
            race_release(s, r->x, r->l0, true);
            race_release(s, r->w, r->l0, true);
            race_enter(s, RACE_PIVOT);
            tracef(s, "NEMESIS election race: n%" PRIu64
                      " cut from leader n%" PRIu64
                      ", gets n%" PRIu64 "'s answers and n%" PRIu64
                      "'s pre-vote",
                   r->l0, r->l, r->x, r->w);
        }
        break;
    case RACE_PIVOT:
        if (s->now > r->since + 200) {
            race_end(s);
        }
        break;
    default:
        break;
    }
}

static void nemesis(struct sim *s)
{
    if (!s->chaos) {
        return;
    }
    if (s->fig8 && chance(s, 80)) {
        push(s, s->now + 10 + rndn(s, 80), EV_NEMESIS, 0, NULL);
        s->r->faults++;
        figure8(s);
        return;
    }
    push(s, s->now + 30 + rndn(s, 250), EV_NEMESIS, 0, NULL);
    if (s->now < s->quiet_until + 200) {
        return; /* Let the lease attack (or the race) play out. */
    }
    if (s->race_seed && s->race.phase == RACE_OFF && s->now >= s->race_at &&
        race_start(s)) {
        s->r->faults++;
        return;
    }
    unsigned what = rndn(s, 100);
    if (!s->o.faults) {
        what = 90 + rndn(s, 10);
    }
    s->r->faults++;
    if (what < 15) {
        /* Isolate one node, the leader more often than not. */
        struct snode *v = chance(s, 60) ? find_leader(s) : random_up(s);
        if (v == NULL) {
            return;
        }
        tracef(s, "NEMESIS isolate n%" PRIu64, v->id);
        for (unsigned i = 1; i <= MAX_NODES; i++) {
            s->blocked[v->id][i] = s->blocked[i][v->id] = true;
        }
        push(s, s->now + 100 + rndn(s, 1500), EV_HEAL, 0, NULL);
    } else if (what < 25) {
        /* Split into a minority and a majority. */
        bool side[MAX_NODES + 1];
        for (unsigned i = 1; i <= s->n_ids; i++) {
            side[i] = chance(s, 40);
        }
        tracef(s, "NEMESIS split");
        for (unsigned i = 1; i <= s->n_ids; i++) {
            for (unsigned j = 1; j <= s->n_ids; j++) {
                if (side[i] != side[j]) {
                    s->blocked[i][j] = true;
                }
            }
        }
        push(s, s->now + 100 + rndn(s, 1500), EV_HEAL, 0, NULL);
    } else if (what < 35) {
        /* One-way link failures. */
        unsigned k = 1 + rndn(s, 4);
        for (unsigned i = 0; i < k; i++) {
            unsigned a = 1 + rndn(s, s->n_ids), b = 1 + rndn(s, s->n_ids);
            tracef(s, "NEMESIS block n%u -> n%u", a, b);
            s->blocked[a][b] = true;
        }
        push(s, s->now + 100 + rndn(s, 1500), EV_HEAL, 0, NULL);
    } else if (what < 50) {
        /* Kill a node, preferably one with writes in flight: the moment
         * where acting before durability turns into lost votes or acks. */
        struct snode *v = chance(s, 60) ? with_pending_writes(s) : NULL;
        if (v == NULL) {
            v = chance(s, 50) ? find_leader(s) : random_up(s);
        }
        if (v == NULL) {
            return;
        }
        node_crash(s, v);
        push(s, s->now + 20 + rndn(s, 500), EV_RESTART, (int)v->id, NULL);
    } else if (what < 60) {
        struct snode *v = chance(s, 60) ? find_leader(s) : random_up(s);
        if (v == NULL) {
            return;
        }
        tracef(s, "NEMESIS pause n%" PRIu64, v->id);
        v->paused = true;
        v->stable_since = UINT64_MAX;
        push(s, s->now + 150 + rndn(s, 1500), EV_RESUME, (int)v->id, NULL);
    } else if (what < 61) {
        heal(s);
    } else if (what < 63) {
        if (s->o.lease_reads) {
            lease_attack(s);
        }
    } else if (what < 65) {
        /* The monotonic clock leaps forward with no time passing (a real
         * suspend is a pause: the nemesis above). That breaks the
         * bounded-drift assumption leases rest on both ways: a follower
         * whose clock leaps stops honouring the leader's lease early, a
         * leader whose clock leaps ends its promises to read-lease holders
         * early. So only runs without leases get leaps. */
        struct snode *v = random_up(s);
        if (v == NULL) {
            return;
        }
        unsigned ms = 50 + rndn(s, 2000);
        if (!s->o.lease_reads) {
            tracef(s, "NEMESIS clock of n%" PRIu64 " jumps %u ms ahead",
                   v->id, ms);
            v->clock_off += ms;
        }
        /* Its wall clock is stepped, back as often as forward (NTP, an
         * operator): only mtimes may follow it, nothing that orders. */
        int64_t step = (int64_t)rndn(s, 20000) - 10000;
        tracef(s, "NEMESIS wall clock of n%" PRIu64 " stepped %" PRId64
                  " ms", v->id, step);
        v->wall_off += step;
    } else if (what < 66 && s->o.wipes && !s->wiped_one) {
        /* A disk wiped or replaced, and the node restarted under its old
         * id (an operator's mistake): it forgot its votes and the entries
         * it acknowledged. Its peers must refuse it (host_hello), or it
         * could elect a leader that lacks a committed entry. A node with
         * writes in flight has just acknowledged something. */
        struct snode *v = chance(s, 60) ? with_pending_writes(s) : NULL;
        if (v == NULL) {
            v = random_up(s);
        }
        if (v == NULL) {
            return;
        }
        tracef(s, "NEMESIS wipe n%" PRIu64 "'s disk", v->id);
        node_crash(s, v);
        disk_free(&v->d);
        memset(&v->d, 0, sizeof(v->d));
        sm_free(&v->sm);
        memset(&v->sm, 0, sizeof(v->sm));
        v->data_id = rnd(s) | 1;
        v->wiped = true;
        s->wiped_one = true;
        s->r->wipes = 1;
        push(s, s->now + 20 + rndn(s, 500), EV_RESTART, (int)v->id, NULL);
    } else if (what < 85) {
        /* Sometimes a burst: a correct leader refuses all but the first
         * change until it commits. */
        unsigned burst = chance(s, 30) ? 2 + rndn(s, 2) : 1;
        for (unsigned i = 0; i < burst && s->o.membership; i++) {
            membership(s);
        }
    } else {
        struct snode *l = find_leader(s);
        if (l != NULL && s->o.transfers) {
            int rv = cons_node_transfer(CORE(l), 0);
            tracef(s, "NEMESIS transfer leadership from n%" PRIu64 ": %d",
                   l->id, rv);
            host_poke(l->h);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Main loop                                                                 */

static void resume(struct sim *s, struct snode *n)
{
    if (!n->up || !n->paused) {
        return;
    }
    tracef(s, "n%" PRIu64 " RESUME", n->id);
    n->paused = false;
    n->stable_since = s->now;
    /* A caller's read may race the sockets: after SIGCONT the loop sees
     * the FUSE thread's wake-up and the peers' frames at once, in any
     * order. A stale leader must not answer it from its old lease. */
    if (chance(s, 50)) {
        struct sreq *q = sreq_new(s, n->id, true);
        tracef(s, "n%" PRIu64 " read before any message", n->id);
        if (host_read(n->h, false, req_done, q) != 0) {
            q->completions = 1;
        }
    }
    /* Whatever arrived meanwhile comes next, as a real loop runs I/O
     * callbacks before timers: the driver must catch up its clock itself. */
    struct smsg *m = n->held;
    n->held = n->held_tail = NULL;
    while (m != NULL && n->up && !n->paused) {
        struct smsg *next = m->next;
        struct cons_msg cm;
        if (greet(s, n, m->from) &&
            wire_msg_decode(m->plain.base, m->plain.len, &cm) == 0) {
            host_recv(n->h, &cm);
            wire_msg_free(&cm);
        }
        msg_free(m);
        m = next;
    }
    while (m != NULL) {
        struct smsg *next = m->next;
        msg_free(m);
        m = next;
    }
    if (n->writing != NULL) {
        push(s, s->now, EV_DISK, (int)n->id, NULL);
    }
}

static void handle(struct sim *s, const struct ev *e)
{
    struct snode *n = e->node > 0 ? &s->nodes[e->node] : NULL;
    switch (e->type) {
    case EV_TICK:
        if (!n->up || e->boot != n->boot) {
            break;
        }
        push(s, s->now + TICK_MS, EV_TICK, e->node, NULL);
        if (!n->paused) {
            host_tick(n->h);
        }
        break;
    case EV_DELIVER: {
        if (!n->up || e->msg->to_boot != n->boot) {
            msg_free(e->msg);
            break;
        }
        if (race_active(s) && race_intercept(s, e->msg)) {
            break;
        }
        if (n->paused) {
            e->msg->next = NULL;
            if (n->held_tail) {
                n->held_tail->next = e->msg;
            } else {
                n->held = e->msg;
            }
            n->held_tail = e->msg;
            break;
        }
        if (!greet(s, n, e->msg->from)) {
            msg_free(e->msg);
            break;
        }
        struct cons_msg cm;
        if (wire_msg_decode(e->msg->plain.base, e->msg->plain.len, &cm) !=
            0) {
            violation(s, "n%" PRIu64 " cannot decode a frame from n%" PRIu64,
                      n->id, e->msg->from);
            msg_free(e->msg);
            break;
        }
        if (s->o.trace != NULL) {
            char buf[200];
            describe(&cm, buf, sizeof(buf));
            tracef(s, "n%" PRIu64 " <- n%" PRIu64 " %s", cm.to, cm.from, buf);
        }
        host_recv(n->h, &cm);
        wire_msg_free(&cm);
        msg_free(e->msg);
        break;
    }
    case EV_WRITE_BEGIN:
        /* A paused process's writer does not run either; one left over
         * from an earlier write of this boot merges into the current one,
         * which is as valid (any instant before its completion is). */
        if (n->up && e->boot == n->boot && !n->paused && n->writing != NULL) {
            uint64_t before = host_batches_taken(n->h);
            host_write_begin(n->h);
            if (host_batches_taken(n->h) > before) {
                s->r->writes_merged++;
                tracef(s, "n%" PRIu64 " write takes the queued batch in",
                       n->id);
            }
        }
        break;
    case EV_DISK:
        if (n->up && e->boot == n->boot) {
            if (n->paused) {
                /* The completion waits for the process to run again. */
                break;
            }
            disk_done(s, n);
        }
        break;
    case EV_CHUNK:
        if (n->up && e->boot == n->boot) {
            if (n->paused) {
                push_ptr(s, s->now + 10, EV_CHUNK, e->node, NULL, e->ptr);
                break;
            }
            struct host_chunk *c = e->ptr;
            int rv = -EIO;
            if (n->d.img != NULL && n->d.snap.index == c->snap_index &&
                c->offset + c->len <= n->d.img_len) {
                memcpy(c->buf, n->d.img + c->offset, c->len);
                rv = 0;
            }
            host_chunk_done(n->h, c, rv);
        }
        break;
    case EV_SNAP:
        if (n->up && e->boot == n->boot && n->snap_img != NULL) {
            if (n->paused) {
                push(s, s->now + 10, EV_SNAP, e->node, NULL);
                break;
            }
            n->taken_img = n->snap_img;
            n->taken_len = n->snap_len;
            n->taken_idx = n->snap_idx;
            n->snap_img = NULL;
            host_snapshot_done(n->h, 0, n->taken_idx, n->taken_len);
            /* Not recorded (an install overtook it): drop the image. */
            free(n->taken_img);
            n->taken_img = NULL;
        }
        break;
    case EV_CLIENT:
        client(s);
        break;
    case EV_NEMESIS:
        nemesis(s);
        check_liveness(s);
        break;
    case EV_RESTART:
        if (!n->up) {
            tracef(s, "n%" PRIu64 " RESTART", n->id);
            node_start(s, n);
            if (n->h != NULL) {
                host_poke(n->h);
            }
        }
        break;
    case EV_RESUME:
        resume(s, n);
        break;
    case EV_HEAL:
        heal(s);
        break;
    case EV_ATTACK:
        if (s->chaos && n->up && e->boot == n->boot) {
            lease_attack_restart(s, n);
        }
        break;
    case EV_KILL:
        if (s->chaos && n->up && e->boot == n->boot) {
            node_crash(s, n);
            push(s, s->now + 30 + rndn(s, 400), EV_RESTART, (int)n->id,
                 NULL);
        }
        break;
    case EV_READ:
        if (n->up && !n->paused && e->boot == n->boot) {
            struct sreq *q = sreq_new(s, n->id, true);
            if (host_read(n->h, false, req_done, q) != 0) {
                q->completions = 1;
            }
        }
        break;
    }
}

void sim_options_default(struct sim_options *o, uint64_t seed)
{
    memset(o, 0, sizeof(*o));
    o->seed = seed;
    o->duration_ms = 3000;
    o->heal_ms = 6000;
    o->faults = true;
    o->membership = true;
    o->transfers = true;
    o->lease_reads = seed % 2 == 1;
}

/* The clients' registers, checked for linearizability as a whole history
 * (tests/chaos/checker.c, the chaos run's checker): the check in req_done
 * sees only a read older than a write that had returned, not two reads
 * that disagree on the order of writes, a read of a write that had not yet
 * begun, or one of a write that never happened. Reads are the driver's
 * barriers (ReadIndex, or a lease) followed by the register as the node
 * applied it. A write that timed out, or was still waiting when the run
 * ended, may or may not have taken effect: it gets a return at infinity,
 * unless no read saw its value, in which case leaving it out changes
 * nothing (no read needs it) and keeps the search small. A refused
 * request never ran and is left out. Values no read returned all become
 * one (LIN_UNREAD): no read tells them apart, so the verdict is the same,
 * and the search, which remembers (linearized set, value) pairs, meets
 * far fewer of them when many such writes overlap (slow runs have tens). */
static void check_linearizable(struct sim *s)
{
    struct lin_op *ops = calloc(s->n_reqs + 1, sizeof(*ops));
    RFS_ASSERT(ops != NULL);
    size_t n = 0;
    for (size_t i = 0; i < s->n_reqs; i++) {
        const struct sreq *q = s->reqs[i];
        if (q->read && !q->known) {
            continue;
        }
        if (q->completions > 0 && q->ret_t == 0) {
            continue; /* Refused by the driver: never proposed. */
        }
        bool seen = q->read;
        for (size_t j = 0; j < s->n_reqs && !seen; j++) {
            const struct sreq *p = s->reqs[j];
            seen = p->read && p->known && p->key == q->key &&
                   p->got == q->value;
        }
        if (!q->read && !q->known && !seen) {
            continue;
        }
        uint64_t v = q->read ? q->got : q->value;
        ops[n++] = (struct lin_op){
            .key = (int)q->key,
            .kind = q->read ? LIN_READ : LIN_WRITE,
            .value = v == 0 ? LIN_ABSENT : !seen ? LIN_UNREAD : (int64_t)v,
            .call = q->call_t,
            .ret = q->known ? q->ret_t : LIN_NEVER,
            .client = (int)q->node,
        };
    }
    struct lin_report rep;
    if (lin_check_budget(ops, n, LIN_BUDGET, &rep) > 0) {
        int key = rep.first_bad_key;
        size_t upto = lin_minimal_prefix(ops, n, key), of_key = 0;
        for (size_t i = 0; i < n; i++) {
            of_key += ops[i].key == key;
        }
        violation(s, "not linearizable: key %d has no linearization of its "
                     "%zu operations (the first %zu already have none)",
                  key, of_key, upto);
        printf("seed %" PRIu64 ": key %d, the last operations of the "
               "shortest history with no linearization (client = node; "
               "-1: never written, -2: a value no read returned; "
               "[call, return] in ns of simulated time):\n",
               s->o.seed, key);
        lin_print_key_range(ops, n, key, upto, 24);
        fflush(stdout);
    }
    s->r->lin_ops += n;
    s->r->lin_unfinished += rep.unfinished_keys;
    s->r->lin_explored += rep.explored;
    free(ops);
}

/* After healing: a leader must emerge and commit a fresh proposal on every
 * voter of its configuration. */
static bool recovered(struct sim *s)
{
    struct snode *l = find_leader(s);
    if (l == NULL) {
        return false;
    }
    if (s->marker_index == 0) {
        /* Propose (again, if the last attempt was lost with a leader). */
        if (!s->marker_sent || s->now - s->marker_at > 1000) {
            snprintf(s->marker, sizeof(s->marker), "marker-%" PRIu64,
                     s->o.seed);
            struct rfs_buf b = {s->marker, strlen(s->marker)};
            int rv = cons_node_propose(CORE(l), &b, NULL);
            tracef(s, "CHECK propose %s at leader n%" PRIu64 ": %d", s->marker,
                   l->id, rv);
            if (rv == 0) {
                s->marker_sent = true;
                s->marker_at = s->now;
            }
            host_poke(l->h);
        }
        return false;
    }
    const struct cons_conf *c = cons_node_conf(CORE(l));
    for (unsigned i = 0; i < c->n; i++) {
        rfs_nodeid_t id = c->servers[i].id;
        if (id <= s->n_ids && s->nodes[id].wiped) {
            /* What docs/guide.md tells the operator to do with a node its
             * peers refuse: remove it (it may be the leader by now, if it
             * caught up from a peer that never knew its old disk). */
            int rv = cons_node_change(CORE(l), CONS_REMOVE, id, NULL, NULL);
            tracef(s, "CHECK remove wiped n%" PRIu64 " at leader n%" PRIu64
                      ": %d", id, l->id, rv);
            host_poke(l->h);
            return false;
        }
    }
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].role != CONS_VOTER) {
            continue;
        }
        rfs_nodeid_t id = c->servers[i].id;
        if (id > s->n_ids || s->nodes[id].sm.applied < s->marker_index) {
            return false;
        }
    }
    return true;
}

int sim_run(const struct sim_options *o, struct sim_result *r)
{
    struct sim *s = calloc(1, sizeof(*s));
    RFS_ASSERT(s != NULL);
    memset(r, 0, sizeof(*r));
    s->o = *o;
    s->r = r;
    s->rng = o->seed;
    r->lease_runs = o->lease_reads;
    /* Drawn apart from the run's stream, so that the other seeds play out
     * as they did before this mode existed. */
    uint64_t h = o->seed * 0x9E3779B97F4A7C15ULL;
    s->fig8 = o->faults && ((h ^ (h >> 29)) % 100) < FIG8_PCT;
    /* The election race, likewise: some lease runs stage it once. */
    uint64_t g = (o->seed ^ 0x632BE59BD9B4E019ULL) * 0xD6E8FEB86659FD93ULL;
    g ^= g >> 31;
    s->race_seed = o->faults && o->lease_reads && !s->fig8 &&
                   g % 100 < RACE_PCT;
    s->race_at = 300 + (g >> 8) % 1500;
    unsigned nodes = o->nodes;
    if (nodes == 0) {
        static const unsigned sizes[] = {3, 5, 7};
        nodes = sizes[rndn(s, 3)];
    }
    s->drop_pct = rndn(s, 6);
    s->dup_pct = rndn(s, 4);
    s->delay_max = 2 + rndn(s, 14);
    s->snap_every = 8 + rndn(s, 40);
    s->chunk_bytes = 16 + rndn(s, 64);
    /* Some seeds get a slow disk: wider windows between a decision and its
     * durability, where crash bugs live; some a disk that fills up or
     * fails. */
    bool slow = chance(s, 40);
    s->disk_min = slow ? 3 : 1;
    s->disk_span = slow ? 30 : 4;
    s->enospc_pm = o->faults && chance(s, 20) ? 1 + rndn(s, 20) : 0;
    s->eio_pm = o->faults && chance(s, 10) ? 1 + rndn(s, 3) : 0;
    tracef(s,
           "seed %" PRIu64 ": %u nodes, drop %u%%, dup %u%%, delay <= %u ms, "
           "snapshot every %u, chunk %zu, disk %u-%u ms, ENOSPC %u/1000, "
           "EIO %u/1000%s",
           o->seed, nodes, s->drop_pct, s->dup_pct, s->delay_max,
           s->snap_every, s->chunk_bytes, s->disk_min,
           s->disk_min + s->disk_span, s->enospc_pm, s->eio_pm,
           o->lease_reads ? ", lease reads" : "");

    struct cons_conf conf;
    memset(&conf, 0, sizeof(conf));
    for (unsigned i = 1; i <= nodes; i++) {
        conf.servers[conf.n].id = i;
        conf.servers[conf.n].role = CONS_VOTER;
        snprintf(conf.servers[conf.n].addr, CONS_ADDR_MAX, "sim:%u", i);
        conf.n++;
    }
    for (unsigned i = 1; i <= nodes; i++) {
        node_create(s, true, &conf);
    }
    s->chaos = true;
    push(s, 50, EV_CLIENT, 0, NULL);
    push(s, 300 + rndn(s, 300), EV_NEMESIS, 0, NULL);

    struct ev e;
    uint64_t end_chaos = o->duration_ms;
    uint64_t end = o->duration_ms + o->heal_ms;
    bool healed = false, ok = false;
    while (pop(s, &e)) {
        if (e.at > end) {
            if (e.type == EV_DELIVER) {
                msg_free(e.msg);
            }
            continue;
        }
        s->now = e.at;
        if (!healed && s->now >= end_chaos) {
            /* Heal everything; from here on the cluster must recover. */
            healed = true;
            s->chaos = false;
            race_end(s);
            heal(s);
            for (unsigned i = 1; i <= s->n_ids; i++) {
                struct snode *n = &s->nodes[i];
                if (!n->up) {
                    node_start(s, n);
                } else if (n->paused) {
                    resume(s, n);
                }
            }
        }
        handle(s, &e);
        if (race_active(s)) {
            race_step(s);
        }
        r->steps++;
        if (r->steps > 3000000) {
            violation(s, "livelock: over 3,000,000 events in one run");
            break;
        }
        if (r->steps % 64 == 0) {
            check_log_matching(s);
        }
        if (r->violations > 0) {
            break;
        }
        if (healed && r->steps % 16 == 0 && recovered(s)) {
            ok = true;
            break;
        }
    }
    if (r->violations == 0) {
        check_log_matching(s);
    }
    if (r->violations == 0) {
        check_linearizable(s);
    }
    if (r->violations == 0 && !ok) {
        violation(s, "no recovery: %u ms after healing, no leader committed "
                     "a new entry on all its voters",
                  o->heal_ms);
    }
    r->committed = s->global_commit;

    /* Tear down, quietly: these are not crashes of the run. */
    s->o.trace = NULL;
    race_end(s);
    for (unsigned i = 1; i <= s->n_ids; i++) {
        struct snode *n = &s->nodes[i];
        if (n->up) {
            node_crash(s, n);
        }
    }
    while (pop(s, &e)) {
        if (e.type == EV_DELIVER) {
            msg_free(e.msg);
        }
    }
    for (unsigned i = 1; i <= s->n_ids; i++) {
        struct snode *n = &s->nodes[i];
        disk_free(&n->d);
        sm_free(&n->sm);
        free(n->reads);
    }
    for (size_t i = 0; i < s->n_reqs; i++) {
        free(s->reqs[i]);
    }
    free(s->reqs);
    free(s->ids);
    free(s->heap);
    free(s->ledger);
    free(s->leaders);
    unsigned v = r->violations;
    free(s);
    return v == 0 ? 0 : -1;
}
