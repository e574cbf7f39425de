/*
 * The cluster simulator. See sim.h.
 *
 * Everything happens in an event heap ordered by (virtual time, sequence):
 * ticks, message deliveries, disk write completions, client requests and
 * nemesis actions. After every event the nodes it touched hand over their
 * updates (host_process), and the invariant checks run.
 *
 * The host side of each node follows core.h to the letter, because the point
 * is to find bugs in the core, not to hide them behind a lenient host:
 * writes complete in order; a wait_durable message leaves only after the
 * writes queued before it; a crash throws away every write not yet complete.
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
#include "../../consensus/requests.h"
#include "../../consensus/core/core.h"

#define MAX_NODES 16
#define TICK_MS 10
#define ELECTION_TICKS 10
#define HEARTBEAT_TICKS 2
#define IMG_MAGIC 0x52465353494d4721ULL

enum ev_type {
    EV_TICK = 1,
    EV_DELIVER,
    EV_DISK,
    EV_CLIENT,
    EV_NEMESIS,
    EV_RESTART,
    EV_RESUME,
    EV_HEAL,
};

struct smsg {
    struct cons_msg m;
    struct cons_entry *ents;
    struct cons_snap_meta snap;
    void *data;
    struct smsg *next;
};

struct ev {
    uint64_t at;
    uint64_t seq;
    int type;
    int node;
    uint64_t boot;
    struct smsg *msg;
};

/* A write queued to a node's disk: completes at done_at, in order. The
 * merging of updates into it is the node runtime's own (consensus/batch.c). */
struct pwrite {
    uint64_t done_at;
    struct batch_writes w;
    struct smsg *held; /* wait_durable messages released on completion. */
    struct pwrite *next;
};

/* What survives a crash. */
struct disk {
    struct cons_hard_state hs;
    struct cons_snap_meta snap;
    uint8_t *img;
    size_t img_len;
    struct cons_entry *log; /* Entries after log_base. */
    size_t n;
    size_t cap;
    rfs_index_t log_base;
    rfs_term_t log_base_term;
    /* The state machine, written atomically with its applied index. */
    rfs_index_t applied;
    uint64_t hash;
    /* A snapshot being received. */
    uint8_t *recv;
    size_t recv_len;
};

struct pending_read {
    uint64_t ctx;
    rfs_index_t min;
};

struct snode {
    rfs_nodeid_t id;
    bool exists;
    bool up;
    bool paused;
    unsigned missed;   /* Ticks due while paused. */
    int drift_pm;      /* Clock rate error, per mille. */
    unsigned tick_acc; /* Tick period remainder, in µs. */
    uint64_t boot;
    struct cons_node *core;
    struct disk d;
    struct pwrite *wq;
    struct pwrite *wq_tail;
    struct smsg *held; /* Delivered while paused. */
    struct smsg *held_tail;
    struct pending_read *reads;
    size_t n_reads;
    size_t cap_reads;
    rfs_index_t seen_commit;
    struct requests rq; /* The node runtime's request tracking. */
};

/* A client request made through a node's requests tracker. */
struct sreq {
    struct sim *s;
    rfs_nodeid_t node;
    bool read;
    rfs_index_t min; /* Reads: cluster commit index when asked. */
    unsigned completions;
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
    /* Network fault rates, per seed. */
    unsigned drop_pct;
    unsigned dup_pct;
    unsigned delay_max;
    unsigned snap_every;
    size_t chunk_bytes;
    unsigned disk_min;  /* Write latency range, ms. */
    unsigned disk_span;
    bool chaos;        /* Chaos phase (nemesis, membership, transfers). */
    uint64_t next_ctx;
    uint64_t next_prop;
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
    rfs_nodeid_t *leaders; /* By term. */
    size_t leaders_cap;
    struct sreq **reqs;
    size_t n_reqs;
    size_t cap_reqs;
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

static void core_trace(void *data, rfs_nodeid_t id, const char *line)
{
    struct sim *s = data;
    tracef(s, "n%" PRIu64 " %s", id, line);
}

static void req_done(void *arg, int err, const void *result)
{
    struct sreq *q = arg;
    struct sim *s = q->s;
    q->completions++;
    if (q->completions > 1) {
        violation(s, "a request of n%" PRIu64 " completed twice", q->node);
        return;
    }
    if (err == 0 && q->read) {
        /* A read barrier is linearizable only if this node has applied
         * everything committed anywhere before it was asked; and it keeps
         * its contract of waiting until the answered index is applied. */
        rfs_index_t index = *(const rfs_index_t *)result;
        if (index < q->min || s->nodes[q->node].d.applied < index) {
            violation(s, "read barrier on n%" PRIu64 " passed with index %"
                         PRIu64 " at applied %" PRIu64,
                      q->node, index, s->nodes[q->node].d.applied);
        }
        if (s->nodes[q->node].d.applied < q->min) {
            violation(s, "read barrier on n%" PRIu64 " passed at applied %"
                         PRIu64 ", below commit %" PRIu64 " known when asked",
                      q->node, s->nodes[q->node].d.applied, q->min);
        }
        s->r->barriers++;
    } else if (err == 0) {
        s->r->acked++;
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
    q->read = read;
    q->min = s->global_commit;
    s->reqs[s->n_reqs++] = q;
    return q;
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
/* Event heap                                                                */

static bool ev_less(const struct ev *a, const struct ev *b)
{
    return a->at != b->at ? a->at < b->at : a->seq < b->seq;
}

static void push(struct sim *s, uint64_t at, int type, int node,
                 struct smsg *msg)
{
    if (s->heap_n == s->heap_cap) {
        s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 256;
        s->heap = realloc(s->heap, s->heap_cap * sizeof(*s->heap));
        RFS_ASSERT(s->heap != NULL);
    }
    struct ev e = {at, s->seq++, type, node,
                   node > 0 ? s->nodes[node].boot : 0, msg};
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

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */

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

static struct smsg *msg_copy(const struct cons_msg *m)
{
    struct smsg *c = calloc(1, sizeof(*c));
    RFS_ASSERT(c != NULL);
    c->m = *m;
    if (m->n_entries > 0) {
        c->ents = calloc(m->n_entries, sizeof(*c->ents));
        RFS_ASSERT(c->ents != NULL);
        for (unsigned i = 0; i < m->n_entries; i++) {
            copy_entry(&c->ents[i], &m->entries[i]);
        }
    }
    c->m.entries = c->ents;
    if (m->snap != NULL) {
        c->snap = *m->snap;
        c->m.snap = &c->snap;
    }
    if (m->data.len > 0 && m->data.base != NULL) {
        c->data = malloc(m->data.len);
        RFS_ASSERT(c->data != NULL);
        memcpy(c->data, m->data.base, m->data.len);
        c->m.data.base = c->data;
    }
    return c;
}

static void msg_free(struct smsg *m)
{
    if (m == NULL) {
        return;
    }
    free_entries(m->ents, m->m.n_entries);
    free(m->data);
    free(m);
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

/* Put a message on the wire: maybe dropped, delayed or duplicated. */
static void net_send(struct sim *s, struct smsg *m)
{
    rfs_nodeid_t from = m->m.from, to = m->m.to;
    if (to == 0 || to > s->n_ids || s->blocked[from][to] ||
        chance(s, s->drop_pct)) {
        msg_free(m);
        return;
    }
    unsigned delay = 1 + rndn(s, s->delay_max);
    if (chance(s, 2)) {
        delay += 50 + rndn(s, 200); /* A straggler: reordering. */
    }
    if (chance(s, s->dup_pct)) {
        push(s, s->now + delay + rndn(s, 30), EV_DELIVER, (int)to,
             msg_copy(&m->m));
    }
    push(s, s->now + delay, EV_DELIVER, (int)to, m);
}

/* ------------------------------------------------------------------------ */
/* Disk and state machine                                                    */

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

/* The image: applied index, hash, magic, then filler derived from the hash,
 * so a chunk put back in the wrong place is caught at install. */
static uint8_t *image_make(rfs_index_t applied, uint64_t hash, size_t *len)
{
    size_t n = 24 + (size_t)(hash % 200);
    uint8_t *p = malloc(n);
    RFS_ASSERT(p != NULL);
    uint64_t magic = IMG_MAGIC;
    memcpy(p, &applied, 8);
    memcpy(p + 8, &hash, 8);
    memcpy(p + 16, &magic, 8);
    for (size_t i = 24; i < n; i++) {
        p[i] = (uint8_t)(hash >> (i % 56)) ^ (uint8_t)i;
    }
    *len = n;
    return p;
}

static bool image_read(const uint8_t *p, size_t n, rfs_index_t *applied,
                       uint64_t *hash)
{
    uint64_t magic;
    if (n < 24) {
        return false;
    }
    memcpy(applied, p, 8);
    memcpy(hash, p + 8, 8);
    memcpy(&magic, p + 16, 8);
    if (magic != IMG_MAGIC || n != 24 + (size_t)(*hash % 200)) {
        return false;
    }
    for (size_t i = 24; i < n; i++) {
        if (p[i] != ((uint8_t)(*hash >> (i % 56)) ^ (uint8_t)i)) {
            return false;
        }
    }
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
    cons_node_status(n->core, &st);
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
    }
    if (s->marker_sent && s->marker_index == 0 &&
        e->type == CONS_ENTRY_NORMAL && e->data.len == strlen(s->marker) &&
        memcmp(e->data.base, s->marker, e->data.len) == 0) {
        s->marker_index = e->index;
    }
}

static void sm_apply(struct sim *s, struct snode *n, const struct cons_entry *e)
{
    if (e->index != n->d.applied + 1) {
        violation(s, "n%" PRIu64 " applies %" PRIu64 " after %" PRIu64
                     " (double or skipped apply)",
                  n->id, e->index, n->d.applied);
        return;
    }
    ledger_commit(s, n, e);
    n->d.hash = fnv(n->d.hash, &e->index, sizeof(e->index));
    n->d.hash = fnv(n->d.hash, &e->term, sizeof(e->term));
    n->d.hash = fnv(n->d.hash, e->data.base, e->data.len);
    n->d.applied = e->index;
    if (s->ledger[e->index].cum == 0) {
        s->ledger[e->index].cum = n->d.hash;
    } else if (s->ledger[e->index].cum != n->d.hash) {
        violation(s, "n%" PRIu64 " state after %" PRIu64 " differs",
                  n->id, e->index);
    }
    /* A request of this node's current boot: complete it by identity. */
    unsigned long long node, boot, seq;
    char text[64];
    size_t len = e->data.len < sizeof(text) - 1 ? e->data.len
                                                : sizeof(text) - 1;
    if (e->type == CONS_ENTRY_NORMAL && len > 0) {
        memcpy(text, e->data.base, len);
        text[len] = '\0';
        if (sscanf(text, "r:%llu:%llu:%llu", &node, &boot, &seq) == 3 &&
            node == n->id && boot == n->boot) {
            requests_applied(&n->rq, seq, e);
        }
    }
}

/* Take a snapshot when the log has grown past the threshold. */
static void maybe_snapshot(struct sim *s, struct snode *n)
{
    if (n->d.applied < n->d.snap.index + s->snap_every) {
        return;
    }
    size_t len;
    uint8_t *img = image_make(n->d.applied, n->d.hash, &len);
    struct cons_snap_meta meta;
    rfs_index_t trailing = rndn(s, 6);
    int rv = cons_node_snapshot_taken(n->core, n->d.applied, len, trailing,
                                      &meta);
    if (rv != 0) {
        free(img);
        return;
    }
    free(n->d.img);
    n->d.img = img;
    n->d.img_len = len;
    n->d.snap = meta;
    rfs_index_t upto = meta.index > trailing ? meta.index - trailing : 0;
    disk_compact(&n->d, upto);
}

static void disk_install(struct sim *s, struct snode *n,
                         const struct cons_snap_meta *meta)
{
    rfs_index_t applied;
    uint64_t hash;
    if (!image_read(n->d.recv, n->d.recv_len, &applied, &hash) ||
        applied != meta->index) {
        violation(s, "n%" PRIu64 " received a damaged snapshot image %" PRIu64,
                  n->id, meta->index);
        return;
    }
    if (applied < s->ledger_cap && s->ledger[applied].cum != 0 &&
        s->ledger[applied].cum != hash) {
        violation(s, "n%" PRIu64 " snapshot %" PRIu64 " has another state",
                  n->id, applied);
    }
    free(n->d.img);
    n->d.img = n->d.recv;
    n->d.img_len = n->d.recv_len;
    n->d.recv = NULL;
    n->d.recv_len = 0;
    n->d.snap = *meta;
    free_entries(n->d.log, n->d.n);
    n->d.log = NULL;
    n->d.n = n->d.cap = 0;
    n->d.log_base = meta->index;
    n->d.log_base_term = meta->term;
    n->d.applied = applied;
    n->d.hash = hash;
    s->r->snapshots_sent++;
}

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
    if (c->last) {
        disk_install(s, n, &c->meta);
    }
}

/* ------------------------------------------------------------------------ */
/* Host                                                                      */

static void pwrite_free(struct pwrite *w)
{
    batch_writes_close(&w->w);
    while (w->held != NULL) {
        struct smsg *m = w->held;
        w->held = m->next;
        msg_free(m);
    }
    free(w);
}

static void check_reads(struct sim *s, struct snode *n,
                        const struct cons_update *u)
{
    for (unsigned i = 0; i < u->n_reads; i++) {
        for (size_t j = 0; j < n->n_reads; j++) {
            if (n->reads[j].ctx != u->reads[i].ctx) {
                continue;
            }
            if (u->reads[i].index < n->reads[j].min) {
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
    cons_node_status(n->core, &st);
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
        const struct cons_entry *e = cons_node_entry(n->core, i);
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

/* Release a message now, or hold it behind the last queued write. */
static void host_send(struct sim *s, struct snode *n,
                      const struct cons_out_msg *om)
{
    struct smsg *m = msg_copy(&om->msg);
    if (m->m.type == CONS_MSG_SNAPSHOT) {
        /* Fill the chunk from the stored image, as a real host would. */
        if (n->d.img == NULL || n->d.snap.index != m->m.snap->index ||
            m->m.offset + m->m.data.len > n->d.img_len) {
            cons_node_snapshot_failed(n->core, m->m.to);
            msg_free(m);
            return;
        }
        m->data = malloc(m->m.data.len + 1);
        RFS_ASSERT(m->data != NULL);
        memcpy(m->data, n->d.img + m->m.offset, m->m.data.len);
        m->m.data.base = m->data;
    }
    if (s->o.trace != NULL) {
        char buf[200];
        describe(&m->m, buf, sizeof(buf));
        tracef(s, "n%" PRIu64 " -> n%" PRIu64 " %s%s", m->m.from, m->m.to, buf,
               om->wait_durable && n->wq ? " (after disk)" : "");
    }
    if (om->wait_durable && n->wq_tail != NULL) {
        struct smsg **p = &n->wq_tail->held;
        while (*p != NULL) {
            p = &(*p)->next;
        }
        *p = m;
        return;
    }
    net_send(s, m);
}

/* Queue an update's writes. One write is in flight at a time; updates
 * taken meanwhile merge into the next one, which is group commit as a real
 * host does it (and what keeps a slow disk from building a backlog). */
static void queue_write(struct sim *s, struct snode *n,
                        const struct cons_update *u)
{
    struct pwrite *w = n->wq_tail;
    if (w == NULL || w == n->wq) {
        w = calloc(1, sizeof(*w));
        RFS_ASSERT(w != NULL);
        batch_writes_init(&w->w);
        uint64_t start = n->wq_tail ? n->wq_tail->done_at : s->now;
        if (start < s->now) {
            start = s->now;
        }
        w->done_at = start + s->disk_min + rndn(s, s->disk_span);
        if (n->wq_tail) {
            n->wq_tail->next = w;
        } else {
            n->wq = w;
            push(s, w->done_at, EV_DISK, (int)n->id, NULL);
        }
        n->wq_tail = w;
    }
    RFS_ASSERT(batch_writes_add(&w->w, u) == 0);
}

static void host_process(struct sim *s, struct snode *n)
{
    if (!n->up || n->paused) {
        return;
    }
    while (cons_node_has_update(n->core)) {
        struct cons_update u;
        cons_node_take_update(n->core, &u);
        if (u.role_changed && u.role == CONS_LEADER) {
            check_new_leader(s, n);
        }
        if (u.needs_persist) {
            queue_write(s, n, &u);
        }
        for (unsigned i = 0; i < u.n_msgs; i++) {
            host_send(s, n, &u.msgs[i]);
        }
        for (unsigned i = 0; i < u.n_committed; i++) {
            sm_apply(s, n, &u.committed[i]);
        }
        check_reads(s, n, &u);
        requests_update(&n->rq, n->core, &u, s->now);
        if (u.n_committed > 0) {
            maybe_snapshot(s, n);
        }
    }
    requests_check(&n->rq, n->core, n->d.applied, s->now);
    if (cons_node_has_update(n->core)) {
        host_process(s, n); /* Re-sent requests produced work. */
        return;
    }
    /* Commits seen by this node join the ledger. */
    struct cons_status st;
    cons_node_status(n->core, &st);
    for (rfs_index_t i = n->seen_commit + 1; i <= st.commit; i++) {
        const struct cons_entry *e = cons_node_entry(n->core, i);
        if (e != NULL) {
            ledger_commit(s, n, e);
        }
    }
    if (st.commit > n->seen_commit) {
        n->seen_commit = st.commit;
    }
}

static void disk_done(struct sim *s, struct snode *n)
{
    while (n->wq != NULL && n->wq->done_at <= s->now) {
        struct pwrite *w = n->wq;
        n->wq = w->next;
        if (n->wq == NULL) {
            n->wq_tail = NULL;
        }
        if (w->w.has_hs) {
            n->d.hs = w->w.hs;
        }
        for (unsigned i = 0; i < w->w.n_chunks; i++) {
            disk_chunk(s, n, &w->w.chunks[i]);
        }
        if (w->w.n_ents > 0) {
            disk_truncate(&n->d, w->w.ents[0].index);
            for (unsigned i = 0; i < w->w.n_ents; i++) {
                disk_append(&n->d, &w->w.ents[i]);
            }
        }
        while (w->held != NULL) {
            struct smsg *m = w->held;
            w->held = m->next;
            m->next = NULL;
            net_send(s, m);
        }
        cons_node_persisted(n->core, &w->w.tag);
        pwrite_free(w);
    }
    if (n->wq != NULL) {
        push(s, n->wq->done_at, EV_DISK, (int)n->id, NULL);
    }
    host_process(s, n);
}

static void node_start(struct sim *s, struct snode *n)
{
    struct cons_options o;
    cons_options_default(&o, n->id);
    o.election_ticks = ELECTION_TICKS;
    o.heartbeat_ticks = HEARTBEAT_TICKS;
    o.max_inflight = 8;
    o.max_msg_bytes = 64;
    o.max_uncommitted = 4096;
    o.snap_chunk_bytes = s->chunk_bytes;
    o.seed = rnd(s);
    o.trace = s->o.trace ? core_trace : NULL;
    o.trace_data = s;
    o.lease_reads = s->o.lease_reads;
    struct cons_load l;
    memset(&l, 0, sizeof(l));
    l.hs = n->d.hs;
    l.snap = n->d.snap;
    l.entries = n->d.log;
    l.n_entries = (unsigned)n->d.n;
    l.applied = n->d.applied;
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
    int rv = cons_node_new(&o, &l, &n->core);
    if (rv != 0) {
        violation(s, "n%" PRIu64 " cannot restart from its disk: %d", n->id,
                  rv);
        n->up = false;
        return;
    }
    n->up = true;
    n->paused = false;
    n->missed = 0;
    if (s->o.lease_reads) {
        n->drift_pm = (int)rndn(s, 101) - 50;
    }
    n->boot++;
    struct cons_status st;
    cons_node_status(n->core, &st);
    n->seen_commit = st.commit;
    n->n_reads = 0;
    /* As the runtime: 2 s to complete, re-send every two election
     * timeouts. */
    requests_init(&n->rq, 2000, 2ull * ELECTION_TICKS * TICK_MS, rnd(s));
    push(s, s->now + 1 + rndn(s, TICK_MS), EV_TICK, (int)n->id, NULL);
}

static void node_crash(struct sim *s, struct snode *n)
{
    tracef(s, "n%" PRIu64 " CRASH (%s)", n->id,
           n->wq ? "unsynced writes lost" : "nothing pending");
    while (n->wq != NULL) {
        struct pwrite *w = n->wq;
        n->wq = w->next;
        pwrite_free(w);
    }
    n->wq_tail = NULL;
    while (n->held != NULL) {
        struct smsg *m = n->held;
        n->held = m->next;
        msg_free(m);
    }
    n->held_tail = NULL;
    free(n->d.recv); /* A partial image does not survive. */
    n->d.recv = NULL;
    n->d.recv_len = 0;
    requests_close(&n->rq, RFS_ESHUTDOWN); /* The process died with them. */
    cons_node_free(n->core);
    n->core = NULL;
    n->up = false;
    n->paused = false;
    n->boot++;
}

static struct snode *node_create(struct sim *s, bool founder,
                                 const struct cons_conf *conf)
{
    RFS_ASSERT(s->n_ids < MAX_NODES);
    struct snode *n = &s->nodes[++s->n_ids];
    memset(n, 0, sizeof(*n));
    n->id = s->n_ids;
    n->exists = true;
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
        cons_node_status(x->core, &sa);
        for (unsigned b = a + 1; b <= s->n_ids; b++) {
            struct snode *y = &s->nodes[b];
            if (!y->up) {
                continue;
            }
            struct cons_status sb;
            cons_node_status(y->core, &sb);
            rfs_index_t lo = sa.first_index > sb.first_index ? sa.first_index
                                                              : sb.first_index;
            rfs_index_t hi = sa.last_index < sb.last_index ? sa.last_index
                                                            : sb.last_index;
            rfs_index_t top = 0;
            for (rfs_index_t i = hi; i >= lo && i > 0; i--) {
                const struct cons_entry *ea = cons_node_entry(x->core, i);
                const struct cons_entry *eb = cons_node_entry(y->core, i);
                if (ea && eb && ea->term == eb->term) {
                    top = i;
                    break;
                }
            }
            for (rfs_index_t i = lo; i <= top; i++) {
                const struct cons_entry *ea = cons_node_entry(x->core, i);
                const struct cons_entry *eb = cons_node_entry(y->core, i);
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

/* ------------------------------------------------------------------------ */
/* Clients and nemesis                                                       */

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
        if (s->nodes[i].up && s->nodes[i].wq != NULL) {
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
        cons_node_status(n->core, &st);
        if (st.role == CONS_LEADER && st.term >= best_term) {
            best = n;
            best_term = st.term;
        }
    }
    return best;
}

static void client(struct sim *s)
{
    struct snode *n = random_up(s);
    if (n != NULL) {
        unsigned what = rndn(s, 100);
        if (what < 35) {
            char buf[48];
            int len = snprintf(buf, sizeof(buf), "p%" PRIu64 "-n%" PRIu64,
                               ++s->next_prop, n->id);
            struct rfs_buf b = {buf, (size_t)len};
            if (cons_node_propose(n->core, &b, NULL) == 0) {
                s->r->proposals++;
            }
        } else if (what < 70) {
            /* Through the runtime's request tracking: identity inside. */
            uint64_t seq = requests_next_seq(&n->rq);
            char buf[80];
            int len = snprintf(buf, sizeof(buf), "r:%" PRIu64 ":%" PRIu64
                                                 ":%" PRIu64 ":%" PRIu64,
                               n->id, n->boot, seq, ++s->next_prop);
            struct rfs_buf b = {rfs_memdup(buf, (size_t)len), (size_t)len};
            struct sreq *q = sreq_new(s, n->id, false);
            RFS_ASSERT(requests_propose(&n->rq, n->core, seq, b, s->now,
                                        req_done, q) == 0);
            s->r->proposals++;
        } else if (what < 85) {
            struct sreq *q = sreq_new(s, n->id, true);
            RFS_ASSERT(requests_read(&n->rq, n->core, s->now, req_done, q) ==
                       0);
        } else {
            /* Raw ReadIndex ids live apart from the request tracker's. */
            uint64_t ctx = ++s->next_ctx | (1ull << 63);
            if (cons_node_read_index(n->core, ctx) == 0) {
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
        }
        host_process(s, n);
    }
    if (s->chaos) {
        push(s, s->now + 1 + rndn(s, 25), EV_CLIENT, 0, NULL);
    }
}

static void heal(struct sim *s)
{
    tracef(s, "HEAL network");
    memset(s->blocked, 0, sizeof(s->blocked));
}

static void membership(struct sim *s)
{
    struct snode *l = find_leader(s);
    if (l == NULL) {
        return;
    }
    const struct cons_conf *c = cons_node_conf(l->core);
    unsigned voters = cons_conf_voters(c);
    int rv = 0;
    unsigned pick = rndn(s, 4);
    if (pick == 0 && c->n < 7 && s->n_ids < MAX_NODES) {
        /* A new node joins as a learner. */
        rfs_nodeid_t id = s->n_ids + 1;
        char addr[32];
        snprintf(addr, sizeof(addr), "sim:%" PRIu64, id);
        rv = cons_node_change(l->core, CONS_ADD_LEARNER, id, addr, NULL);
        tracef(s, "NEMESIS add learner n%" PRIu64 ": %d", id, rv);
        if (rv == 0) {
            node_create(s, false, NULL);
        }
    } else if (pick == 1) {
        for (unsigned i = 0; i < c->n; i++) {
            if (c->servers[i].role == CONS_LEARNER) {
                rv = cons_node_change(l->core, CONS_PROMOTE, c->servers[i].id,
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
        rv = cons_node_change(l->core, demote ? CONS_DEMOTE : CONS_REMOVE, id,
                              NULL, NULL);
        tracef(s, "NEMESIS %s n%" PRIu64 ": %d", demote ? "demote" : "remove",
               id, rv);
    }
    host_process(s, l);
}

static void nemesis(struct sim *s)
{
    if (!s->chaos) {
        return;
    }
    push(s, s->now + 30 + rndn(s, 250), EV_NEMESIS, 0, NULL);
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
        push(s, s->now + 150 + rndn(s, 1500), EV_RESUME, (int)v->id, NULL);
    } else if (what < 65) {
        heal(s);
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
            int rv = cons_node_transfer(l->core, 0);
            tracef(s, "NEMESIS transfer leadership from n%" PRIu64 ": %d",
                   l->id, rv);
            host_process(s, l);
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
    /* As the runtime does: the ticks the pause swallowed come first, so a
     * leader learns its lease ran out before it answers anything. */
    unsigned catch_up = n->missed;
    if (catch_up > 2 * ELECTION_TICKS + 2) {
        catch_up = 2 * ELECTION_TICKS + 2;
    }
    n->missed = 0;
    for (unsigned i = 0; i < catch_up; i++) {
        cons_node_tick(n->core);
    }
    struct smsg *m = n->held;
    n->held = n->held_tail = NULL;
    while (m != NULL) {
        struct smsg *next = m->next;
        m->next = NULL;
        cons_node_step(n->core, &m->m);
        msg_free(m);
        m = next;
    }
    if (n->wq != NULL) {
        push(s, s->now, EV_DISK, (int)n->id, NULL);
    }
    host_process(s, n);
}

/* The next tick's delay on n's drifting clock, in whole ms. */
static uint64_t tick_period(struct snode *n)
{
    n->tick_acc += (unsigned)(TICK_MS * (1000 + n->drift_pm));
    uint64_t ms = n->tick_acc / 1000;
    n->tick_acc %= 1000;
    return ms;
}

static void handle(struct sim *s, const struct ev *e)
{
    struct snode *n = e->node > 0 ? &s->nodes[e->node] : NULL;
    switch (e->type) {
    case EV_TICK:
        if (!n->up || e->boot != n->boot) {
            break;
        }
        push(s, s->now + tick_period(n), EV_TICK, e->node, NULL);
        if (!n->paused) {
            cons_node_tick(n->core);
            host_process(s, n);
        } else {
            n->missed++;
        }
        break;
    case EV_DELIVER:
        if (!n->up) {
            msg_free(e->msg);
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
        if (s->o.trace != NULL) {
            char buf[200];
            describe(&e->msg->m, buf, sizeof(buf));
            tracef(s, "n%" PRIu64 " <- n%" PRIu64 " %s", e->msg->m.to,
                   e->msg->m.from, buf);
        }
        cons_node_step(n->core, &e->msg->m);
        msg_free(e->msg);
        host_process(s, n);
        break;
    case EV_DISK:
        if (n->up && !n->paused && e->boot == n->boot) {
            disk_done(s, n);
        }
        break;
    case EV_CLIENT:
        client(s);
        break;
    case EV_NEMESIS:
        nemesis(s);
        break;
    case EV_RESTART:
        if (!n->up) {
            tracef(s, "n%" PRIu64 " RESTART", n->id);
            node_start(s, n);
            host_process(s, n);
        }
        break;
    case EV_RESUME:
        resume(s, n);
        break;
    case EV_HEAL:
        heal(s);
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
            int rv = cons_node_propose(l->core, &b, NULL);
            tracef(s, "CHECK propose %s at leader n%" PRIu64 ": %d", s->marker,
                   l->id, rv);
            if (rv == 0) {
                s->marker_sent = true;
                s->marker_at = s->now;
            }
            host_process(s, l);
        }
        return false;
    }
    const struct cons_conf *c = cons_node_conf(l->core);
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].role != CONS_VOTER) {
            continue;
        }
        rfs_nodeid_t id = c->servers[i].id;
        if (id > s->n_ids || s->nodes[id].d.applied < s->marker_index) {
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
     * durability, where crash bugs live. */
    bool slow = chance(s, 40);
    s->disk_min = slow ? 3 : 1;
    s->disk_span = slow ? 30 : 4;
    tracef(s,
           "seed %" PRIu64 ": %u nodes, drop %u%%, dup %u%%, delay <= %u ms, "
           "snapshot every %u, chunk %zu, disk %u-%u ms%s",
           o->seed, nodes, s->drop_pct, s->dup_pct, s->delay_max,
           s->snap_every, s->chunk_bytes, s->disk_min,
           s->disk_min + s->disk_span,
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
    if (r->violations == 0 && !ok) {
        violation(s, "no recovery: %u ms after healing, no leader committed "
                     "a new entry on all its voters",
                  o->heal_ms);
    }
    r->committed = s->global_commit;

    /* Tear down, quietly: these are not crashes of the run. */
    s->o.trace = NULL;
    while (pop(s, &e)) {
        if (e.type == EV_DELIVER) {
            msg_free(e.msg);
        }
    }
    for (unsigned i = 1; i <= s->n_ids; i++) {
        struct snode *n = &s->nodes[i];
        if (n->up) {
            node_crash(s, n);
        }
        disk_free(&n->d);
        free(n->reads);
    }
    for (size_t i = 0; i < s->n_reqs; i++) {
        free(s->reqs[i]);
    }
    free(s->reqs);
    free(s->heap);
    free(s->ledger);
    free(s->leaders);
    unsigned v = r->violations;
    free(s);
    return v == 0 ? 0 : -1;
}
