/*
 * The host driver: the ordering around the Raft core. See host.h for the
 * numbered host loop; process() below is where it reads in one place.
 *
 * Failure handling. A request that is not applied within commit_timeout_ms
 * fails with -ETIMEDOUT and a log line saying why (no leader known, or how
 * many voters are reachable). Proposals are re-sent after a leader change
 * and periodically; the state machine applies each (client, boot, seq)
 * once. A write refused for lack of space is retried every second while
 * nothing is acknowledged; any other storage error stops Raft activity.
 */
#include "host_i.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../common/assert.h"
#include "../common/err.h"
#include "../common/heap.h"
#include "wire.h"

#define DISK_RETRY_MS 1000

/* Test builds re-introduce one known bug each (see MUTANT() in
 * core/raft.c); 10 is the driver's: only the timer catches up the clock. */
#ifndef CONS_MUTATION
#define CONS_MUTATION 0
#endif
#define MUTANT(k) (CONS_MUTATION == (k))

/* An encoded message, held until the batch it depends on is durable. */
struct held {
    struct held *next;
    rfs_nodeid_t to;
    struct rfs_buf plain;
};

struct hbatch {
    struct batch_writes w;
    struct held *held;
    struct held **held_tail;
};

/* An outgoing SNAPSHOT message whose chunk is being read. */
struct pending_chunk {
    struct host_chunk c; /* First: host_chunk_done() gets it back. */
    struct cons_msg m;
    struct cons_snap_meta meta;
    bool done;
    int rv;
    struct pending_chunk *next;
};
/* ------------------------------------------------------------------------ */
/* Logging                                                                   */

void host__log(struct host *h, enum rfs_log_level lv, const char *fmt, ...)
{
    if (h->io.log == NULL) {
        return;
    }
    char line[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    h->io.log(h->io.data, lv, line);
}

static uint64_t now_ms(struct host *h)
{
    return h->io.now_ns(h->io.data) / 1000000u;
}

/* ------------------------------------------------------------------------ */
/* The clock                                                                 */

/*
 * Give the core every tick that the I/O clock says is due. The timer alone
 * would not do: after a stall it fires once, and the first thing to arrive
 * may be a peer's message, a disk completion or a read. A leader must learn
 * that its lease ran out before it answers anything, so every entry point
 * runs this first. More than two election timeouts at once are as good as
 * two.
 */
static void catch_up(struct host *h)
{
    uint64_t now = h->io.now_ns(h->io.data);
    if (now < h->clock_origin_ns) {
        return; /* A clock that went back: wait for it. */
    }
    uint64_t due = (now - h->clock_origin_ns) /
                   ((uint64_t)h->o.tick_ms * 1000000u);
    if (due <= h->ticks_given || h->failed) {
        return;
    }
    uint64_t k = due - h->ticks_given;
    uint64_t cap = 2ull * h->o.election_ticks + 2;
    h->ticks_given = due;
    uint64_t first = h->core_ticks + 1;
    for (uint64_t i = 0; i < (k < cap ? k : cap); i++) {
        cons_node_tick(h->core);
        h->core_ticks++;
    }
    if (k > cap) {
        host__stall_note(h, first);
    }
}

uint64_t host_lease_end_ns(const struct host *h)
{
    if (h->removed || h->failed || h->closed) {
        return 0;
    }
    uint64_t end = cons_node_lease_end(h->core);
    if (end == 0 || end == UINT64_MAX) {
        return 0;
    }
    /* The lease's end is in core ticks; after a stall the core counts fewer
     * ticks than real time (catch_up), so the difference is added back. */
    uint64_t real_tick = end + (h->ticks_given - h->core_ticks);
    return h->clock_origin_ns + real_tick * h->o.tick_ms * 1000000u;
}

static void publish(struct host *h)
{
    if (h->io.publish != NULL) {
        h->io.publish(h->io.data);
    }
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */

/* Why a request could not complete, for the timeout's log line. */
static void why_stuck(struct host *h, char *buf, size_t len)
{
    struct cons_status st;
    cons_node_status(h->core, &st);
    if (h->failed) {
        snprintf(buf, len, "storage failed: %s", h->io.errmsg(h->io.data));
        return;
    }
    if (h->disk_full) {
        snprintf(buf, len, "the disk is full: %s", h->io.errmsg(h->io.data));
        return;
    }
    if (st.leader == RFS_NODE_NONE) {
        const struct cons_conf *c = cons_node_conf(h->core);
        unsigned voters = cons_conf_voters(c), up = 0;
        for (unsigned i = 0; i < c->n; i++) {
            if (c->servers[i].role != CONS_VOTER) {
                continue;
            }
            up += c->servers[i].id == h->o.id ||
                  h->io.connected(h->io.data, c->servers[i].id);
        }
        snprintf(buf, len, "no leader; no quorum: %u of %u voters reachable",
                 up, voters);
        return;
    }
    snprintf(buf, len, "leader %" PRIu64 " did not commit it in time",
             st.leader);
}

static void on_expired(void *data, bool read, uint64_t id)
{
    struct host *h = data;
    char why[160];
    why_stuck(h, why, sizeof(why));
    host__log(h, RFS_LOG_WARN, "%s %" PRIu64 " timed out after %u ms: %s",
              read ? "read barrier" : "write", id, h->o.commit_timeout_ms, why);
}

/* Storage failed: no more Raft work here. What waits fails now with EIO
 * (its outcome is unknown: it may still commit on the others), and so does
 * every later request, instead of each waiting out commit_timeout. */
static void stop(struct host *h)
{
    h->failed = true;
    requests_close(&h->rq, -EIO);
}

/* ------------------------------------------------------------------------ */
/* Write batches (group commit)                                              */

static void batch_free(struct hbatch *b)
{
    batch_writes_close(&b->w);
    while (b->held) {
        struct held *o = b->held;
        b->held = o->next;
        rfs_free(o->plain.base);
        rfs_free(o);
    }
    rfs_free(b);
}

static void start_batch(struct host *h)
{
    if (h->inflight != NULL || h->next_batch == NULL || h->failed ||
        h->holds > 0) {
        return;
    }
    pthread_mutex_lock(&h->batch_mu);
    h->inflight = h->next_batch;
    h->next_batch = NULL;
    pthread_mutex_unlock(&h->batch_mu);
    h->io.write(h->io.data, &h->inflight->w);
}

static void batch_add(struct host *h, const struct cons_update *u)
{
    pthread_mutex_lock(&h->batch_mu);
    if (h->next_batch == NULL) {
        h->next_batch = rfs_calloc(1, sizeof(*h->next_batch));
        RFS_ASSERT(h->next_batch != NULL); /* Out of memory: stop. */
        h->next_batch->held_tail = &h->next_batch->held;
        batch_writes_init(&h->next_batch->w);
    }
    /* Out of memory while holding writes the core counts on: stop rather
     * than acknowledge something never written. */
    RFS_ASSERT(batch_writes_add(&h->next_batch->w, u) == 0);
    pthread_mutex_unlock(&h->batch_mu);
}

/*
 * The writer's thread, as its write starts: the batch in flight takes
 * every update queued since it was handed over, with the messages held
 * behind them. A frame that arrived while the pool thread was waking (the
 * next lock after an unlock, the APPEND carrying it) then shares the one
 * fsync instead of waiting for it and paying its own. Only the hand-over
 * crosses threads: the core is never called here. The merged batch keeps
 * the latest tag (writes complete in order), so cons_node_persisted()
 * covers everything it holds.
 */
void host_write_begin(struct host *h)
{
    struct hbatch *later = NULL;
    pthread_mutex_lock(&h->batch_mu);
    struct hbatch *b = h->inflight;
    if (b != NULL && h->next_batch != NULL &&
        batch_writes_take(&b->w, &h->next_batch->w) == 0) {
        later = h->next_batch;
        h->next_batch = NULL;
        if (later->held != NULL) {
            *b->held_tail = later->held;
            b->held_tail = later->held_tail;
            later->held = NULL;
        }
        h->batches_taken++;
    }
    pthread_mutex_unlock(&h->batch_mu);
    if (later != NULL) {
        batch_free(later); /* Empty now: its arrays only. */
    }
}

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */

static void send_now(struct host *h, rfs_nodeid_t to, struct rfs_buf plain)
{
    h->io.send(h->io.data, to, plain);
}

/* Encode m and send it now, or hold it behind the batch its writes are in
 * (the one being filled, or else the one in flight). */
static void send_msg(struct host *h, const struct cons_msg *m,
                     bool wait_durable)
{
    struct rfs_buf plain;
    if (wire_msg_encode(m, &plain) != 0) {
        return; /* Out of memory: Raft retransmits. */
    }
    if (!wait_durable) {
        send_now(h, m->to, plain);
        return;
    }
    struct held *o = rfs_malloc(sizeof(*o));
    if (o == NULL) {
        rfs_free(plain.base);
        return;
    }
    o->to = m->to;
    o->plain = plain;
    o->next = NULL;
    /* Under the lock: the writer may be moving the batch being filled into
     * the one in flight (host_write_begin) right now. */
    pthread_mutex_lock(&h->batch_mu);
    struct hbatch *b = h->next_batch ? h->next_batch : h->inflight;
    if (b != NULL) {
        *b->held_tail = o;
        b->held_tail = &o->next;
    }
    pthread_mutex_unlock(&h->batch_mu);
    if (b == NULL) {
        send_now(h, o->to, o->plain);
        rfs_free(o);
    }
}

/* A SNAPSHOT message carries no bytes from the core: read its chunk from
 * the image first, off the owner thread. */
static void send_chunk(struct host *h, const struct cons_out_msg *om)
{
    struct pending_chunk *p = rfs_calloc(1, sizeof(*p));
    void *buf = rfs_malloc(om->msg.data.len + 1);
    if (p == NULL || buf == NULL) {
        rfs_free(p);
        rfs_free(buf);
        cons_node_snapshot_failed(h->core, om->msg.to);
        return;
    }
    p->m = om->msg;
    p->meta = *om->msg.snap;
    p->m.snap = &p->meta;
    p->c.snap_index = p->meta.index;
    p->c.offset = p->m.offset;
    p->c.len = p->m.data.len;
    p->c.buf = buf;
    *h->chunks_tail = p;
    h->chunks_tail = &p->next;
    h->io.read_chunk(h->io.data, &p->c);
}

/* ------------------------------------------------------------------------ */
/* Apply and snapshots                                                       */

/* Apply n committed entries and complete this node's requests among them.
 * 0, -ENOSPC (nothing was applied: try again later) or another code (the
 * node has stopped). */
static int apply_entries(struct host *h, const struct cons_entry *ents,
                         unsigned n)
{
    struct store_result *res = rfs_calloc(n, sizeof(*res));
    if (res == NULL) {
        /* The core has handed these entries out and will not again: going
         * on without them would leave a hole in this replica. */
        host__log(h, RFS_LOG_ERROR, "out of memory applying %u entries, this "
                  "node stops", n);
        stop(h);
        return -ENOMEM;
    }
    int rv = h->io.apply(h->io.data, ents, n, res);
    if (rv == -ENOSPC) {
        rfs_free(res);
        return rv;
    }
    if (rv != 0) {
        host__log(h, RFS_LOG_ERROR, "apply failed, this node stops: %s",
                  h->io.errmsg(h->io.data));
        stop(h);
        rfs_free(res);
        return rv;
    }
    for (unsigned i = 0; i < n; i++) {
        const struct cons_entry *e = &ents[i];
        h->bytes_since_snap += e->data.len;
        struct store_cmd c;
        if (e->type != CONS_ENTRY_NORMAL ||
            store_cmd_decode(&e->data, &c) != 0) {
            continue;
        }
        /* Any boot of this process: requests of a boot it has replaced
         * (a new node session) still complete, by their seq. */
        bool own = c.client == h->o.id && c.boot >= h->first_boot &&
                   c.boot <= h->o.boot;
        host__session_applied(h, e->index, &c, &res[i]);
        /* A NOOP may still matter to the host: the first command of a new
         * boot ends the old boot's session, granting its locks' waiters. */
        if (h->o.on_apply != NULL &&
            (c.op != STORE_OP_NOOP || res[i].granted > 0)) {
            h->o.on_apply(h->o.apply_data, e->index, &c, &res[i], own);
        }
        if (own) {
            requests_applied(&h->rq, c.seq, &res[i]);
        }
    }
    rfs_free(res);
    return 0;
}

/* Keep copies of entries the store could not take yet, in order: the core
 * hands each committed entry out once. */
static int backlog_add(struct host *h, const struct cons_entry *ents,
                       unsigned n)
{
    if (h->n_backlog + n > h->cap_backlog) {
        unsigned cap = h->cap_backlog ? h->cap_backlog : 16;
        while (cap < h->n_backlog + n) {
            cap *= 2;
        }
        struct cons_entry *b = rfs_realloc(h->backlog, cap * sizeof(*b));
        if (b == NULL) {
            return -ENOMEM;
        }
        h->backlog = b;
        h->cap_backlog = cap;
    }
    for (unsigned i = 0; i < n; i++) {
        struct cons_entry *d = &h->backlog[h->n_backlog];
        *d = ents[i];
        d->data.base = NULL;
        if (ents[i].data.len > 0) {
            d->data.base = rfs_malloc(ents[i].data.len);
            if (d->data.base == NULL) {
                return -ENOMEM;
            }
            memcpy(d->data.base, ents[i].data.base, ents[i].data.len);
        }
        h->n_backlog++;
    }
    return 0;
}

static void backlog_free(struct host *h)
{
    for (unsigned i = 0; i < h->n_backlog; i++) {
        rfs_free(h->backlog[i].data.base);
    }
    h->n_backlog = 0;
}

/*
 * Apply an update's committed entries. Below the store's free-space reserve
 * the store refuses them (-ENOSPC) before writing anything: the node keeps
 * them, in order, and tries again every DISK_RETRY_MS, instead of stopping.
 * Meanwhile it applies nothing (order), its waiting requests time out, and
 * reads wait for the applied index; once space is freed it goes on by
 * itself. The log write is refused the same way (host_write_done).
 */
static void apply(struct host *h, const struct cons_update *u)
{
    int rv = h->n_backlog > 0 ? -ENOSPC
                              : apply_entries(h, u->committed, u->n_committed);
    if (rv != -ENOSPC) {
        return;
    }
    if (backlog_add(h, u->committed, u->n_committed) != 0) {
        host__log(h, RFS_LOG_ERROR,
                  "out of memory keeping %u entries to apply, this node stops",
                  u->n_committed);
        stop(h);
        return;
    }
    if (h->apply_retry_at == 0) {
        host__log(h, RFS_LOG_ERROR, "not applying committed entries: %s; "
                  "retrying every %u ms", h->io.errmsg(h->io.data),
                  (unsigned)DISK_RETRY_MS);
        h->apply_retry_at = h->io.now_ns(h->io.data) +
                            DISK_RETRY_MS * 1000000ull;
    }
}

/* host_tick: try the kept entries again. */
static void apply_retry(struct host *h)
{
    if (h->n_backlog == 0 ||
        h->io.now_ns(h->io.data) < h->apply_retry_at) {
        return;
    }
    /* A snapshot installed meanwhile may hold some of them already. */
    rfs_index_t applied = h->io.applied(h->io.data);
    unsigned skip = 0;
    while (skip < h->n_backlog && h->backlog[skip].index <= applied) {
        skip++;
    }
    int rv = skip == h->n_backlog
                 ? 0
                 : apply_entries(h, h->backlog + skip, h->n_backlog - skip);
    if (rv == -ENOSPC) {
        h->apply_retry_at = h->io.now_ns(h->io.data) +
                            DISK_RETRY_MS * 1000000ull;
        return;
    }
    if (rv == 0) {
        host__log(h, RFS_LOG_INFO, "applied %u kept entries: space is back",
                  h->n_backlog);
    }
    backlog_free(h);
    h->apply_retry_at = 0;
}

static void maybe_snapshot(struct host *h)
{
    if (h->snapshot_running || h->failed || h->closed) {
        return;
    }
    if (h->inflight != NULL && h->inflight->w.n_chunks > 0) {
        /* An install may be replacing the state on the worker right now:
         * the applied index read here could be the new image's, and the
         * snapshot would race it for the same file name. Wait for
         * host_write_done, which knows the new snapshot index. */
        return;
    }
    rfs_index_t applied = h->io.applied(h->io.data);
    if (!h->snapshot_now &&
        applied < h->snap_index + h->o.snapshot_entries &&
        h->bytes_since_snap < h->o.snapshot_bytes) {
        return;
    }
    h->snapshot_now = false;
    if (applied == h->snap_index) {
        return; /* Nothing new since the last one. */
    }
    h->bytes_since_snap = 0;
    h->snapshot_running = true;
    h->io.snapshot(h->io.data);
}

/* ------------------------------------------------------------------------ */
/* Membership housekeeping (the leader's, and a removed node's)              */

/* The data folder ids host_hello accepted (see struct host). */
static void folder_set(struct host *h, rfs_nodeid_t peer, uint64_t data_id,
                       const uint8_t *key)
{
    unsigned slot = CONS_MAX_SERVERS;
    for (unsigned i = 0; i < CONS_MAX_SERVERS; i++) {
        if (h->folders[i].peer == peer) {
            slot = i;
        }
    }
    if (slot == CONS_MAX_SERVERS) {
        slot = h->folders_next;
        h->folders_next = (h->folders_next + 1) % CONS_MAX_SERVERS;
    }
    h->folders[slot].peer = peer;
    h->folders[slot].data_id = data_id;
    h->folders[slot].has_key = key != NULL;
    if (key != NULL) {
        memcpy(h->folders[slot].key, key, CONS_KEY_BYTES);
    }
}

/* The signing key peer's accepted hello carried (or ours): false if
 * none. */
static bool key_get(const struct host *h, rfs_nodeid_t peer,
                    uint8_t key[CONS_KEY_BYTES])
{
    if (peer == h->o.id) {
        static const uint8_t zero[CONS_KEY_BYTES];
        memcpy(key, h->o.sign_pk, CONS_KEY_BYTES);
        return memcmp(key, zero, CONS_KEY_BYTES) != 0;
    }
    for (unsigned i = 0; i < CONS_MAX_SERVERS; i++) {
        if (h->folders[i].peer == peer && h->folders[i].has_key) {
            memcpy(key, h->folders[i].key, CONS_KEY_BYTES);
            return true;
        }
    }
    return false;
}

/* The leader records the members' public signing keys as record_data_ids
 * does their folder ids, in a change of its own (the core takes one
 * change at a time: this one waits for the next tick if that one went
 * first). The gossip verifier takes voters' keys from the configuration;
 * a key already recorded is left alone, whatever a hello says now. */
static void record_keys(struct host *h)
{
    struct cons_status st;
    cons_node_status(h->core, &st);
    if (st.role != CONS_LEADER || st.conf_index > st.commit) {
        return;
    }
    const struct cons_conf *c = cons_node_conf(h->core);
    static const uint8_t zero[CONS_KEY_BYTES];
    struct cons_key keys[CONS_MAX_SERVERS];
    unsigned k = 0;
    for (unsigned i = 0; i < c->n; i++) {
        if (memcmp(c->servers[i].key, zero, CONS_KEY_BYTES) == 0 &&
            key_get(h, c->servers[i].id, keys[k].key)) {
            keys[k].id = c->servers[i].id;
            k++;
        }
    }
    rfs_index_t idx;
    if (k == 0 || cons_node_record_keys(h->core, keys, k, &idx) != 0) {
        return;
    }
    for (unsigned j = 0; j < k; j++) {
        host__log(h, RFS_LOG_INFO, "recording node %" PRIu64 "'s signing key "
                  "%02x%02x%02x%02x... in the configuration at index %" PRIu64,
                  keys[j].id, keys[j].key[0], keys[j].key[1], keys[j].key[2],
                  keys[j].key[3], idx);
    }
}

static uint64_t folder_get(const struct host *h, rfs_nodeid_t peer)
{
    if (peer == h->o.id) {
        return h->o.data_id;
    }
    for (unsigned i = 0; i < CONS_MAX_SERVERS; i++) {
        if (h->folders[i].peer == peer) {
            return h->folders[i].data_id;
        }
    }
    return 0;
}

/* The leader records in the configuration the data folder ids of the
 * members recorded without one (joined, founded or last configured by an
 * older build), as their hellos showed them (and its own): from then on
 * every peer refuses such a member under another folder, also a peer that
 * never heard it before (host_hello). Until then the pin alone guards it,
 * so all known ids go in one change. A busy core (another change not yet
 * committed) is asked again on the next tick. */
static void record_data_ids(struct host *h)
{
    struct cons_status st;
    cons_node_status(h->core, &st);
    if (st.role != CONS_LEADER || st.conf_index > st.commit) {
        return;
    }
    const struct cons_conf *c = cons_node_conf(h->core);
    struct cons_data_id ids[CONS_MAX_SERVERS];
    unsigned k = 0;
    for (unsigned i = 0; i < c->n; i++) {
        uint64_t data_id = folder_get(h, c->servers[i].id);
        if (c->servers[i].data_id == 0 && data_id != 0) {
            ids[k].id = c->servers[i].id;
            ids[k].data_id = data_id;
            k++;
        }
    }
    rfs_index_t idx;
    if (k == 0 || cons_node_record_data_ids(h->core, ids, k, &idx) != 0) {
        return;
    }
    for (unsigned j = 0; j < k; j++) {
        host__log(h, RFS_LOG_INFO,
                  "recording node %" PRIu64 "'s data folder id %016" PRIx64
                  " in the configuration at index %" PRIu64,
                  ids[j].id, ids[j].data_id, idx);
    }
}

/* The leader promotes a learner once it has caught up (within a few
 * entries of the log's end, replicating normally): joining needs no second
 * step from the operator. One change at a time; the core refuses others. */
static void promote_learners(struct host *h)
{
    struct cons_status st;
    cons_node_status(h->core, &st);
    if (st.role != CONS_LEADER || st.conf_index > st.commit) {
        return;
    }
    const struct cons_conf *c = cons_node_conf(h->core);
    for (unsigned i = 0; i < c->n; i++) {
        struct cons_progress p;
        if (c->servers[i].role != CONS_LEARNER ||
            cons_node_progress(h->core, c->servers[i].id, &p) != 0 ||
            p.state != CONS_PROGRESS_REPLICATE || p.match + 64 < st.last_index) {
            continue;
        }
        rfs_nodeid_t id = c->servers[i].id;
        rfs_index_t idx;
        if (cons_node_change(h->core, CONS_PROMOTE, id, NULL, &idx) == 0) {
            host__log(h, RFS_LOG_INFO,
                      "learner %" PRIu64 " caught up (match %" PRIu64 " of %"
                      PRIu64 "): promoting it to voter at index %" PRIu64,
                      id, p.match, st.last_index, idx);
        }
        return;
    }
}

/* A configuration that no longer holds this node, once committed, means it
 * was removed: it stops serving changes and says so, once. */
static void check_removed(struct host *h)
{
    struct cons_status st;
    cons_node_status(h->core, &st);
    const struct cons_conf *c = cons_node_conf(h->core);
    bool member = cons_conf_get(c, h->o.id) != NULL;
    /* Uncommitted, the configuration could still be truncated away; but
     * with no leader either, nothing could be served anyway, and a leader
     * replicating to us again clears the flag (host_recv). */
    if (!member && c->n > 0 && st.conf_index > 0 && !h->removed &&
        (st.conf_index <= st.commit || st.leader == RFS_NODE_NONE)) {
        h->removed = true;
        host__log(h, RFS_LOG_ERROR,
                  "this node was removed from the cluster (by the "
                  "configuration at index %" PRIu64 "): it serves no more "
                  "changes or linearizable reads", st.conf_index);
        /* What is in flight may still have committed: its outcome is
         * unknown, which is what a timeout says. New requests are refused
         * (RFS_EREMOVED) before they are proposed. */
        requests_close(&h->rq, -ETIMEDOUT);
    }
}

/* ------------------------------------------------------------------------ */
/* The host loop                                                             */

static void process(struct host *h)
{
    if (h->failed) {
        return;
    }
    while (cons_node_has_update(h->core)) {
        struct cons_update u;
        cons_node_take_update(h->core, &u);
        if (h->io.observe != NULL) {
            h->io.observe(h->io.data, &u);
        }
        publish(h);
        if (u.role_changed) {
            host__log(h, RFS_LOG_INFO,
                      "%s in term %" PRIu64 ", leader %" PRIu64,
                      cons_role_name(u.role), u.hs.term, u.leader);
            bool leading = u.role == CONS_LEADER;
            if (leading && !h->leading) {
                h->lead_tick = h->core_ticks; /* Every session heard now. */
            }
            h->leading = leading;
        }
        /* 1. Persist: join the next batch. */
        if (u.needs_persist) {
            batch_add(h, &u);
        }
        /* 2. Send, or hold behind the batch. */
        for (unsigned i = 0; i < u.n_msgs; i++) {
            if (u.msgs[i].msg.type == CONS_MSG_SNAPSHOT) {
                send_chunk(h, &u.msgs[i]);
            } else {
                send_msg(h, &u.msgs[i].msg, u.msgs[i].wait_durable);
            }
        }
        /* 4. Apply, and complete this node's proposals. */
        if (u.n_committed > 0) {
            apply(h, &u);
            if (h->failed) {
                return;
            }
        }
        /* 5. Read answers and leader changes. */
        requests_update(&h->rq, h->core, &u, now_ms(h));
        start_batch(h);
    }
    requests_check(&h->rq, h->core, h->io.applied(h->io.data), now_ms(h));
    if (cons_node_has_update(h->core)) {
        process(h); /* Re-sent requests produced work. */
        return;
    }
    /* 6. Snapshot policy. */
    maybe_snapshot(h);
    publish(h);
}

/* Every entry point: clock first, then the work, then the loop. */
static void enter_as(struct host *h, bool timer)
{
    h->depth++;
    if (timer || !MUTANT(10)) {
        catch_up(h);
    }
}

static void enter(struct host *h)
{
    enter_as(h, false);
}

static void leave(struct host *h)
{
    if (h->holds > 0) {
        h->depth--; /* host_release() runs the loop. */
        return;
    }
    if (h->depth == 1) {
        host__session_work(h);
    }
    process(h);
    if (--h->depth == 0 && h->io.idle != NULL) {
        h->io.idle(h->io.data);
    }
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                              */

void host_tick(struct host *h)
{
    enter_as(h, true);
    if (!h->failed) {
        apply_retry(h);
        record_data_ids(h);
        record_keys(h);
        promote_learners(h);
        check_removed(h);
        host__session_expire(h);
        if (h->disk_retry_at != 0 && h->inflight != NULL &&
            h->io.now_ns(h->io.data) >= h->disk_retry_at && !h->closed) {
            h->disk_retry_at = 0;
            h->io.write(h->io.data, &h->inflight->w);
        }
    }
    leave(h);
}

void host_recv(struct host *h, const struct cons_msg *m)
{
    enter(h);
    if (m->type == CONS_MSG_APPEND && h->removed) {
        /* A leader replicates to us again: we were added back. */
        h->removed = false;
        host__log(h, RFS_LOG_INFO, "node %" PRIu64 " replicates to this node "
                  "again: serving as a member", m->from);
    }
    if (!h->failed) {
        if (h->leading) {
            host__heard_from(h, m->from);
        }
        cons_node_step(h->core, m);
    }
    leave(h);
}

bool host_hello(struct host *h, rfs_nodeid_t peer, uint64_t data_id)
{
    return host_hello_key(h, peer, data_id, NULL);
}

bool host_hello_key(struct host *h, rfs_nodeid_t peer, uint64_t data_id,
                    const uint8_t *key)
{
    /* The core is only read: no clock catch-up needed. An old peer that
     * sends no id cannot be checked (docs/protocol.md). */
    if (data_id == 0) {
        return true;
    }
    /* The configuration's record first: it binds the folder for peers
     * that never heard the node before its disk was wiped. */
    const struct cons_server *sv = cons_conf_get(cons_node_conf(h->core),
                                                 peer);
    uint64_t known = sv != NULL ? sv->data_id : 0;
    const char *source = "recorded in the configuration as";
    if (known == 0 || known == data_id) {
        /* Then the pin (trust on first use), also when the configuration
         * agrees: a node pinned under another folder before the leader
         * recorded one was wiped in between. */
        source = "first seen as";
        if (h->io.pin != NULL) {
            int rv = h->io.pin(h->io.data, peer, data_id, &known);
            if (rv != 0) {
                /* Refusing is safe: the peer retries after its backoff. */
                host__log(h, RFS_LOG_ERROR, "cannot record node %" PRIu64 "'s "
                          "data folder id, refusing it for now: %s", peer,
                          h->io.errmsg(h->io.data));
                return false;
            }
        } else {
            known = data_id;
        }
    }
    if (known == data_id) {
        folder_set(h, peer, data_id, key);
        return true;
    }
    h->refusals++;
    if (h->refused_peer != peer || h->refused_data != data_id) {
        h->refused_peer = peer;
        h->refused_data = data_id;
        host__log(h, RFS_LOG_ERROR,
                  "refusing node %" PRIu64 ": its data folder is not the one "
                  "it had (id %016" PRIx64 ", %s %016" PRIx64 "); wiped or "
                  "replaced, it has forgotten its votes and entries. Remove "
                  "it (raftfs members remove %" PRIu64 ") and let it join "
                  "again under a new id", peer, data_id, source, known, peer);
    }
    return false;
}

uint64_t host_refusals(const struct host *h)
{
    return h->refusals;
}

void host_poke(struct host *h)
{
    enter(h);
    leave(h);
}

void host_hold(struct host *h)
{
    h->holds++;
}

void host_release(struct host *h)
{
    RFS_ASSERT(h->holds > 0);
    if (--h->holds == 0) {
        enter(h);
        start_batch(h); /* One kept back by a write's completion. */
        leave(h);
    }
}

void host_write_done(struct host *h, int rv, const char *errmsg)
{
    enter(h);
    struct hbatch *b = h->inflight;
    RFS_ASSERT(b != NULL);
    if (rv == -ENOSPC && !h->closed) {
        /* Nothing was written. Keep the batch (and the acks it holds) and
         * try again in a second: no write is acknowledged meanwhile, and
         * writing resumes by itself once space is freed. */
        if (!h->disk_full) {
            host__log(h, RFS_LOG_ERROR, "not accepting writes: %s", errmsg);
            h->disk_full = true;
        }
        h->disk_retry_at = h->io.now_ns(h->io.data) +
                           DISK_RETRY_MS * 1000000ull;
        leave(h);
        return;
    }
    /* No write runs now: the writer's thread has let go of b. */
    pthread_mutex_lock(&h->batch_mu);
    h->inflight = NULL;
    pthread_mutex_unlock(&h->batch_mu);
    if (rv != 0) {
        host__log(h, RFS_LOG_ERROR, "storage failed, this node stops: %s",
                  errmsg);
        stop(h);
        batch_free(b);
        leave(h);
        return;
    }
    if (h->disk_full) {
        host__log(h, RFS_LOG_INFO, "disk has room again: accepting writes");
        h->disk_full = false;
    }
    h->batches++;
    /* 3. Durable: tell the core, release what waited. */
    for (unsigned i = 0; i < b->w.n_chunks; i++) {
        if (b->w.chunks[i].last) {
            /* The installed image is now this node's snapshot: the next
             * one taken here replaces (and deletes) it. */
            h->snap_index = b->w.chunks[i].meta.index;
            h->bytes_since_snap = 0;
            host__log(h, RFS_LOG_INFO, "installed snapshot at %" PRIu64,
                      h->snap_index);
            if (h->o.on_apply != NULL) {
                h->o.on_apply(h->o.apply_data, h->io.applied(h->io.data),
                              NULL, NULL, false);
            }
        }
    }
    cons_node_persisted(h->core, &b->w.tag);
    while (b->held) {
        struct held *o = b->held;
        b->held = o->next;
        send_now(h, o->to, o->plain);
        rfs_free(o);
    }
    b->held_tail = &b->held;
    batch_free(b);
    start_batch(h);
    leave(h);
}

void host_chunk_done(struct host *h, struct host_chunk *c, int rv)
{
    enter(h);
    struct pending_chunk *p = (struct pending_chunk *)c;
    p->done = true;
    p->rv = rv;
    while (h->chunks != NULL && h->chunks->done) {
        p = h->chunks;
        h->chunks = p->next;
        if (h->chunks == NULL) {
            h->chunks_tail = &h->chunks;
        }
        if (p->rv != 0) {
            cons_node_snapshot_failed(h->core, p->m.to);
        } else {
            p->m.data.base = p->c.buf;
            send_msg(h, &p->m, false);
        }
        rfs_free(p->c.buf);
        rfs_free(p);
    }
    leave(h);
}

void host_snapshot_done(struct host *h, int rv, rfs_index_t idx,
                        uint64_t size)
{
    enter(h);
    h->snapshot_running = false;
    h->snapshot_err = rv;
    if (rv != 0) {
        host__log(h, RFS_LOG_ERROR, "snapshot failed: %s",
                  h->io.errmsg(h->io.data));
        /* Try again after as many entries. */
        h->snap_index = h->io.applied(h->io.data);
        leave(h);
        return;
    }
    if (idx <= h->snap_index) {
        /* A snapshot installed while this one was taken is newer (or the
         * same state): recording this one would move the node's snapshot
         * index back, and the installed image would never be deleted. */
        host__log(h, RFS_LOG_INFO, "snapshot at %" PRIu64 " superseded by the "
                  "installed one at %" PRIu64, idx, h->snap_index);
        leave(h);
        return;
    }
    rfs_index_t trailing = h->trailing;
    struct cons_snap_meta meta;
    rv = cons_node_snapshot_taken(h->core, idx, size, trailing, &meta);
    if (rv == 0) {
        rfs_index_t old = h->snap_index != idx ? h->snap_index : 0;
        rv = h->io.snapshot_record(h->io.data, &meta,
                                   idx > trailing ? idx - trailing : 0, old);
        h->snap_index = idx;
    }
    host__log(h, RFS_LOG_INFO, "snapshot at %" PRIu64 " (%" PRIu64 " bytes)%s",
              idx, size, rv == 0 ? "" : ", but recording it failed");
    leave(h);
}

int host_submit(struct host *h, const struct store_cmd *cmd, request_cb cb,
                void *arg)
{
    if (h->closed) {
        return h->close_err;
    }
    if (h->removed || h->failed) {
        return h->failed ? -EIO : RFS_EREMOVED;
    }
    enter(h);
    bool session_op = cmd->op == STORE_OP_SESSION_OPEN ||
                      cmd->op == STORE_OP_SESSION_END;
    host__session_view(h);
    if (host_session_fenced(h) && !session_op) {
        /* The session may have ended: a change now could land after
         * another node was told this node's locks and files are gone. */
        leave(h);
        return -EROFS;
    }
    struct store_cmd c = *cmd;
    c.client = h->o.id;
    c.boot = h->o.boot;
    if (c.op == STORE_OP_SESSION_END && c.ino == 0) {
        c.ino = h->o.id; /* This node's own session: a clean stop. */
        c.offset = h->o.boot;
        h->sess_closing = true;
    }
    c.seq = requests_next_seq(&h->rq);
    c.first_outstanding = requests_first_outstanding(&h->rq);
    c.time_ns = h->io.wall_ns(h->io.data);
    struct rfs_buf enc;
    int rv = store_cmd_encode(&c, &enc);
    if (rv == 0) {
        rv = requests_propose(&h->rq, h->core, c.seq, enc, now_ms(h), cb,
                              arg);
        h->proposed += rv == 0;
    }
    leave(h);
    return rv;
}

int host_read(struct host *h, bool leaderless_fails, request_cb cb,
              void *arg)
{
    if (h->closed) {
        return h->close_err;
    }
    if (h->removed || h->failed) {
        return h->failed ? -EIO : RFS_EREMOVED;
    }
    enter(h);
    int rv = requests_read(&h->rq, h->core, now_ms(h), leaderless_fails, cb,
                           arg);
    leave(h);
    return rv;
}

bool host_snapshot_pending(const struct host *h)
{
    return h->snapshot_running || h->snapshot_now;
}

int host_snapshot_error(const struct host *h)
{
    return h->snapshot_err;
}

void host_snapshot_now(struct host *h)
{
    enter(h);
    h->snapshot_now = true;
    maybe_snapshot(h);
    leave(h);
}

/* ------------------------------------------------------------------------ */
/* Life cycle and state                                                      */

int host_new(const struct host_options *o, const struct host_io *io,
             const struct cons_load *l, struct host **out)
{
    struct host *h = rfs_calloc(1, sizeof(*h));
    if (h == NULL) {
        return -ENOMEM;
    }
    /* A default mutex holds no resource on Linux: the error paths below
     * free h without destroying it. */
    pthread_mutex_init(&h->batch_mu, NULL);
    h->o = *o;
    h->io = *io;
    struct cons_options co;
    cons_options_default(&co, o->id);
    co.election_ticks = o->election_ticks;
    co.heartbeat_ticks = o->heartbeat_ticks;
    co.lease_reads = o->lease_reads;
    co.gossip_observers = o->gossip_observers;
    if (o->gossip_behind_max != 0) {
        co.gossip_behind_max = o->gossip_behind_max;
    }
    h->trailing = o->snapshot_entries / 4;
    if (o->gossip_observers && h->trailing < co.gossip_behind_max) {
        /* An observer within gossip_behind_max of the commit index never
         * gets the leader's snapshot: it counts on its peers for those
         * entries, and the oldest of them stay only in voters' logs. With
         * a short snapshot interval a voter compacted them away, and such
         * an observer waited for the commit index to move on. */
        h->trailing = co.gossip_behind_max;
    }
    if (o->gossip_stall_heartbeats != 0) {
        co.gossip_stall_heartbeats = o->gossip_stall_heartbeats;
    }
    co.gossip_images = o->gossip_images;
    co.boot_hold = o->boot_hold;
    co.follower_leases = o->follower_leases;
    co.seed = o->seed;
    co.trace = o->trace;
    co.trace_data = o->trace_data;
    if (o->max_inflight != 0) {
        co.max_inflight = o->max_inflight;
    }
    if (o->max_msg_bytes != 0) {
        co.max_msg_bytes = o->max_msg_bytes;
    }
    if (o->max_uncommitted != 0) {
        co.max_uncommitted = o->max_uncommitted;
    }
    if (o->snap_chunk_bytes != 0) {
        co.snap_chunk_bytes = o->snap_chunk_bytes;
    }
    int rv = cons_node_new(&co, l, &h->core);
    if (rv != 0) {
        rfs_free(h);
        return rv;
    }
    /* Re-send an unanswered request every two election timeouts. */
    requests_init(&h->rq, o->commit_timeout_ms,
                  2ull * o->election_ticks * o->tick_ms, o->ids_from);
    h->rq.expired = on_expired;
    h->rq.expired_data = h;
    h->snap_index = o->snap_index;
    h->chunks_tail = &h->chunks;
    h->clock_origin_ns = io->now_ns(io->data);
    h->first_boot = o->boot;
    if (o->session_ttl_ms != 0) {
        h->sess.state = HOST_SESSION_OPENING;
        h->sess.boot = o->boot;
        h->sess.ttl_ms = o->session_ttl_ms;
    }
    *out = h;
    return 0;
}

void host_close(struct host *h, int err)
{
    h->closed = true;
    h->close_err = err;
    requests_close(&h->rq, err);
}

void host_free(struct host *h)
{
    if (h == NULL) {
        return;
    }
    requests_close(&h->rq, h->closed ? h->close_err : RFS_ESHUTDOWN);
    if (h->inflight != NULL) {
        batch_free(h->inflight);
    }
    if (h->next_batch != NULL) {
        batch_free(h->next_batch);
    }
    while (h->chunks != NULL) {
        struct pending_chunk *p = h->chunks;
        h->chunks = p->next;
        rfs_free(p->c.buf);
        rfs_free(p);
    }
    backlog_free(h);
    rfs_free(h->backlog);
    cons_node_free(h->core);
    pthread_mutex_destroy(&h->batch_mu);
    rfs_free(h);
}

struct cons_node *host_core(struct host *h)
{
    return h->core;
}

bool host_failed(const struct host *h)
{
    return h->failed;
}

bool host_removed(const struct host *h)
{
    return h->removed;
}

rfs_index_t host_snap_index(const struct host *h)
{
    return h->snap_index;
}

uint64_t host_proposed(const struct host *h)
{
    return h->proposed;
}

uint64_t host_batches(const struct host *h)
{
    return h->batches;
}

uint64_t host_batches_taken(const struct host *h)
{
    return h->batches_taken;
}
