/*
 * The Raft protocol: roles, elections, the commit rule, replication as the
 * follower sees it, step and the public API. See core.h for the contract
 * with the host, and core_i.h for how the core is split: the leader's
 * per-peer flow control is in progress.c, read rounds and the lease in
 * readindex.c, membership in conf.c, the snapshot transfer in snapshot.c.
 *
 * Shape. Every input (tick, step, propose, ...) changes the node's fields and
 * queues output in the outbox; cons_node_take_update() then flushes what is
 * best done once per batch (AppendEntries to followers, a read-confirmation
 * round) and hands everything to the host. Batching at that point is what
 * makes group commit work: a host that drains many proposals before taking an
 * update gets one disk write and one AppendEntries per follower for all of
 * them.
 *
 * Durability. A message is marked wait_durable when it acknowledges state
 * (a vote, entries, snapshot chunks) or when the node's term or vote changed
 * and the host has not yet confirmed that write: nothing in a new term leaves
 * before that term is on disk (RAFT-PITFALLS 1). A leader's replication
 * traffic does not wait: the leader counts itself toward commitment only once
 * cons_node_persisted() says its entries are durable (thesis 10.2.1).
 *
 * Roles are dispatched in one place, step_role(); term bookkeeping common to
 * all roles happens before it, in cons_node_step().
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../../common/assert.h"
#include "../../common/err.h"
#include "../../common/heap.h"
#include "core_i.h"

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

void cons__trace(struct cons_node *n, const char *fmt, ...)
{
    if (n->o.trace == NULL) {
        return;
    }
    char line[256];
    int off = snprintf(line, sizeof(line), "term %llu %s: ",
                       (unsigned long long)n->term, cons_role_name(n->role));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + off, sizeof(line) - (size_t)off, fmt, ap);
    va_end(ap);
    n->o.trace(n->o.trace_data, n->id, line);
}

/* Grow *arr (of *cap elements of size sz) to hold at least need. */
int cons__grow(void **arr, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap) {
        return 0;
    }
    size_t c = *cap == 0 ? 8 : *cap;
    while (c < need) {
        c *= 2;
    }
    void *p = rfs_realloc(*arr, c * sz);
    if (p == NULL) {
        return -ENOMEM;
    }
    *arr = p;
    *cap = c;
    return 0;
}

static uint64_t rng_next(struct cons_node *n)
{
    /* xorshift64*: small, fast, and fully determined by the seed. */
    uint64_t x = n->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    n->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void reset_randomized_timeout(struct cons_node *n)
{
    unsigned et = n->o.election_ticks;
    n->randomized_timeout = et + (unsigned)(rng_next(n) % et);
}

static void mark_dirty(struct cons_node *n, rfs_index_t from)
{
    if (n->dirty_from == 0 || from < n->dirty_from) {
        n->dirty_from = from;
    }
}

/* ------------------------------------------------------------------------ */
/* Output                                                                    */

struct outbox_msg *cons__ob_new(struct cons_node *n, uint8_t type,
                                rfs_nodeid_t to)
{
    if (cons__grow((void **)&n->ob, &n->ob_cap, n->ob_n + 1,
                   sizeof(*n->ob)) != 0) {
        return NULL;
    }
    struct outbox_msg *m = &n->ob[n->ob_n++];
    memset(m, 0, sizeof(*m));
    m->out.msg.type = type;
    m->out.msg.from = n->id;
    m->out.msg.to = to;
    m->out.msg.term = n->term;
    return m;
}

/* Queue a message with no payload. Failure to allocate drops it: every
 * message is retransmitted or re-derived by the protocol. */
struct cons_msg *cons__send(struct cons_node *n, uint8_t type, rfs_nodeid_t to)
{
    struct outbox_msg *m = cons__ob_new(n, type, to);
    return m != NULL ? &m->out.msg : NULL;
}

/* ------------------------------------------------------------------------ */
/* Log mutation                                                              */

/* Append one entry to the local log (leader side), taking data. */
int cons__append_local(struct cons_node *n, uint8_t type, void *data,
                       size_t len, rfs_index_t *index)
{
    struct cons_entry e = {
        .term = n->term,
        .index = last_index(n) + 1,
        .type = type,
        .data = {data, len},
    };
    int rv = cons__log_append_owned(&n->log, &e);
    if (rv != 0) {
        return rv;
    }
    mark_dirty(n, e.index);
    n->uncommitted += len;
    n->need_broadcast = true;
    if (type == CONS_ENTRY_CONF) {
        cons__conf_from_entry(n, cons__log_get(&n->log, e.index));
    }
    if (index != NULL) {
        *index = e.index;
    }
    return 0;
}

static void truncate_from(struct cons_node *n, rfs_index_t from)
{
    RFS_ASSERT(from > n->commit);
    cons__trace(n, "truncate log from %llu", (unsigned long long)from);
    bool conf_lost = n->conf_index >= from;
    cons__log_truncate(&n->log, from);
    if (n->trunc_next == 0 || from < n->trunc_next) {
        n->trunc_next = from;
    }
    if (n->stable >= from) {
        n->stable = from - 1;
    }
    if (conf_lost) {
        cons__conf_rollback(n);
    }
}

/* ------------------------------------------------------------------------ */
/* Role transitions                                                          */

static void set_role(struct cons_node *n, enum cons_role role)
{
    if (n->role != role) {
        n->role_changed = true;
        cons__flease_drop(n);
    }
    n->role = role;
}

static void leave_leadership(struct cons_node *n)
{
    /* A quorum heard this node at its last confirmed round: that stays the
     * base of its node session (cons_node_session_base) as a follower. */
    uint64_t confirmed;
    if (cons__confirmed_tick(n, &confirmed) && confirmed > n->echoed_tick) {
        n->echoed_tick = confirmed;
    }
    cons__fail_queue(n, &n->reads_noop);
    cons__fail_queue(n, &n->reads_unsent);
    cons__fail_queue(n, &n->reads_pending);
    n->n_prs = 0;
    n->transferee = 0;
    n->need_broadcast = false;
    n->uncommitted = 0;
}

static void become_follower(struct cons_node *n, rfs_term_t term,
                            rfs_nodeid_t leader)
{
    if (n->role == CONS_LEADER) {
        leave_leadership(n);
    }
    if (term > n->term) {
        n->term = term;
        n->vote = RFS_NODE_NONE;
        cons__flease_drop(n);
    }
    if (n->leader != leader) {
        n->role_changed = true;
        cons__flease_drop(n);
    }
    n->leader = leader;
    set_role(n, CONS_FOLLOWER);
    n->election_elapsed = 0;
    reset_randomized_timeout(n);
    cons__trace(n, "follower, leader %llu", (unsigned long long)leader);
}

static void become_leader(struct cons_node *n)
{
    set_role(n, CONS_LEADER);
    n->leader = n->id;
    n->role_changed = true;
    n->election_elapsed = 0;
    n->heartbeat_elapsed = 0;
    n->transferee = 0;
    n->lease_off = false;
    n->uncommitted = 0;
    n->n_prs = 0;
    n->n_gone = 0; /* Promises of earlier terms ended before this one. */
    cons__progress_sync(n);
    for (unsigned i = 0; i < n->n_prs; i++) {
        cons__progress_reset(n, &n->prs[i], n->prs[i].id);
        n->prs[i].recent_active = n->prs[i].id == n->id;
    }
    cons__trace(n, "leader");
    /* The no-op lets this term commit, and with it every earlier entry
     * (thesis 3.6.2); reads wait for it (RAFT-PITFALLS 2). */
    if (cons__append_local(n, CONS_ENTRY_NOOP, NULL, 0, &n->term_start) != 0) {
        /* Without the no-op this leader could never commit: give up. */
        become_follower(n, n->term, RFS_NODE_NONE);
    }
}

static bool promotable(const struct cons_node *n)
{
    return is_voter(n, n->id);
}

static void tally(struct cons_node *n, rfs_nodeid_t from, bool granted)
{
    for (unsigned i = 0; i < n->n_votes; i++) {
        if (n->votes[i].id == from) {
            return; /* Duplicates count once. */
        }
    }
    if (n->n_votes < CONS_MAX_SERVERS) {
        n->votes[n->n_votes].id = from;
        n->votes[n->n_votes].granted = granted;
        n->n_votes++;
    }
}

/* 1: won, -1: lost, 0: undecided. Only voters of the configuration count. */
static int poll(const struct cons_node *n)
{
    unsigned yes = 0, no = 0;
    for (unsigned i = 0; i < n->n_votes; i++) {
        if (!is_voter(n, n->votes[i].id)) {
            continue;
        }
        if (n->votes[i].granted) {
            yes++;
        } else {
            no++;
        }
    }
    unsigned q = quorum(n);
    if (yes >= q) {
        return 1;
    }
    if (no > cons_conf_voters(&n->conf) - q) {
        return -1;
    }
    return 0;
}

static void campaign(struct cons_node *n, bool pre, bool transfer);

static void check_poll(struct cons_node *n)
{
    int r = poll(n);
    if (r > 0) {
        if (n->role == CONS_PRECANDIDATE) {
            campaign(n, false, false);
        } else {
            become_leader(n);
        }
    } else if (r < 0) {
        become_follower(n, n->term, RFS_NODE_NONE);
    }
}

static void campaign(struct cons_node *n, bool pre, bool transfer)
{
    if (!promotable(n)) {
        return; /* Learners and removed servers never campaign. */
    }
    if (n->role == CONS_LEADER) {
        leave_leadership(n);
    }
    n->n_votes = 0;
    n->leader = RFS_NODE_NONE;
    n->election_elapsed = 0;
    reset_randomized_timeout(n);
    rfs_term_t t;
    if (pre) {
        /* PreVote (thesis 9.6): ask whether we could win before bumping the
         * term, so a partitioned node cannot disrupt a healthy cluster. */
        set_role(n, CONS_PRECANDIDATE);
        t = n->term + 1;
    } else {
        set_role(n, CONS_CANDIDATE);
        n->term++;
        n->vote = n->id;
        t = n->term;
    }
    n->role_changed = true;
    cons__trace(n, "campaign%s for term %llu", pre ? " (pre-vote)" : "",
                (unsigned long long)t);
    tally(n, n->id, true);
    for (unsigned i = 0; i < n->conf.n; i++) {
        const struct cons_server *s = &n->conf.servers[i];
        if (s->id == n->id || s->role != CONS_VOTER) {
            continue;
        }
        struct cons_msg *m =
            cons__send(n, pre ? CONS_MSG_PREVOTE : CONS_MSG_VOTE, s->id);
        if (m != NULL) {
            m->term = t;
            m->prev_index = last_index(n);
            m->prev_term = last_term(n);
            m->transfer = transfer;
        }
    }
    check_poll(n);
}

/* ------------------------------------------------------------------------ */
/* Leader: commitment and replies (progress.c sends, readindex.c reads)      */

/* Commit by counting replicas, only for entries of this term (thesis
 * Figure 3.7; RAFT-PITFALLS 2). Returns whether commit moved. */
static bool maybe_commit(struct cons_node *n)
{
    rfs_index_t m[CONS_MAX_SERVERS];
    unsigned k = 0;
    for (unsigned i = 0; i < n->n_prs; i++) {
        if (is_voter(n, n->prs[i].id)) {
            m[k++] = n->prs[i].id == n->id ? n->stable : n->prs[i].match;
        }
    }
    unsigned q = quorum(n);
    if (k < q) {
        return false;
    }
    for (unsigned i = 1; i < k; i++) {
        for (unsigned j = i; j > 0 && m[j] > m[j - 1]; j--) {
            rfs_index_t t = m[j];
            m[j] = m[j - 1];
            m[j - 1] = t;
        }
    }
    /* Nothing a follower holding a read lease lacks (flease.c). */
    rfs_index_t c = cons__flease_cap(n, m[q - 1]);
    if (c <= n->commit || (term_at(n, c) != n->term && !MUTANT(1))) {
        return false;
    }
    for (rfs_index_t i = n->commit + 1; i <= c; i++) {
        const struct cons_entry *e = cons__log_get(&n->log, i);
        if (e != NULL && e->term == n->term) {
            n->uncommitted -= e->data.len < n->uncommitted ? e->data.len
                                                            : n->uncommitted;
        }
    }
    n->commit = c;
    n->need_broadcast = true;
    cons__reads_after_noop(n);
    /* A leader removed or demoted by a committed configuration steps down
     * (thesis 4.2.2; RAFT-PITFALLS 5). */
    if (n->conf_index <= n->commit && !is_voter(n, n->id)) {
        cons__trace(n, "no longer a voter: step down");
        become_follower(n, n->term, RFS_NODE_NONE);
    }
    return true;
}

static void maybe_send_timeout_now(struct cons_node *n, struct progress *p)
{
    /* Not while a follower lease runs: the target's candidacy skips the
     * stickiness that bounds every lease this leader granted. */
    if (n->transferee == p->id && p->match == last_index(n) &&
        !cons__flease_running(n)) {
        cons__trace(n, "transfer: %llu caught up, send timeout-now",
                    (unsigned long long)p->id);
        n->lease_off = true;
        cons__send(n, CONS_MSG_TIMEOUT_NOW, p->id);
    }
}

static void leader_append_resp(struct cons_node *n, const struct cons_msg *m,
                               struct progress *p)
{
    p->recent_active = true;
    p->acked = true;
    if (m->reject) {
        /* A reject at or below match answers an older message (or comes
         * from a follower that lost acked entries): acting on it would
         * resend forever, once per duplicate. */
        bool stale = m->index <= p->match ||
                     (p->state == CONS_PROGRESS_PROBE &&
                      p->next - 1 != m->index);
        if (stale || p->state == CONS_PROGRESS_SNAPSHOT) {
            return;
        }
        /* Skip a whole conflicting term at once (thesis 5.3 optimization;
         * etcd's findConflictByTerm). */
        rfs_index_t probe = m->hint_index;
        if (m->hint_term > 0) {
            while (probe > n->log.base_index &&
                   term_at(n, probe) > m->hint_term) {
                probe--;
            }
        }
        rfs_index_t next = m->index < probe + 1 ? m->index : probe + 1;
        cons__become_probe(p);
        if (next > p->match + 1) {
            p->next = next;
        }
        cons__trace(n, "append rejected by %llu at %llu, retry from %llu",
                    (unsigned long long)p->id, (unsigned long long)m->index,
                    (unsigned long long)p->next);
        cons__send_append(n, p, false);
        return;
    }
    cons__inflight_free_to(n, p, m->index);
    if (m->index <= p->match) {
        if (p->state == CONS_PROGRESS_PROBE && p->next - 1 == m->index) {
            p->probe_sent = false;
            cons__send_append(n, p, false);
        }
        return;
    }
    p->match = m->index;
    if (p->next <= p->match) {
        p->next = p->match + 1;
    }
    p->stalls = 0;
    if (p->state == CONS_PROGRESS_PROBE) {
        cons__become_replicate(p);
    } else if (p->state == CONS_PROGRESS_SNAPSHOT && p->match >= p->snap_index) {
        cons__become_replicate(p);
    }
    if (maybe_commit(n)) {
        if (n->role != CONS_LEADER) {
            return;
        }
    }
    /* Also tell it a commit index it has not seen: a follower applies (and
     * answers its own clients) only once it learns the commit. */
    cons__send_append(n, p, p->sent_commit < n->commit);
    maybe_send_timeout_now(n, p);
}

/* At each heartbeat, before fed_by_gossip: whether gossip moves an
 * observer far behind. Only answered heartbeats count, so an observer cut
 * off is not taken over the moment it comes back: its peers get the
 * first gossip_stall_heartbeats to feed it. */
static void gossip_watch(struct cons_node *n, struct progress *p)
{
    if (!n->o.gossip_observers) {
        return;
    }
    if (p->match + n->o.gossip_behind_max >= n->commit) {
        /* Within reach of its peers' caches: nothing to watch. */
        p->gossip_fed = false;
        p->gossip_stalls = 0;
        p->gossip_match = p->match;
        return;
    }
    if (p->match > p->gossip_match) {
        p->gossip_match = p->match;
        p->gossip_stalls = 0;
    } else if (p->acked && p->gossip_stalls < n->o.gossip_stall_heartbeats) {
        p->gossip_stalls++;
    }
    if (p->gossip_stalls >= n->o.gossip_stall_heartbeats) {
        p->gossip_fed = true;
    }
}

static void leader_heartbeat_tick(struct cons_node *n)
{
    /* Renews the lease while a quorum answers; without leases, still the
     * base of this leader's node session (cons_node_session_base). */
    cons__new_round(n);
    for (unsigned i = 0; i < n->n_prs; i++) {
        struct progress *p = &n->prs[i];
        if (p->id == n->id) {
            continue;
        }
        if (p->state == CONS_PROGRESS_REPLICATE && p->in_n > 0) {
            /* Acks can be lost on a broken link; rather than wait forever
             * with a full window, fall back to probing. */
            p->stalls = p->acked ? 0 : p->stalls + 1;
            if (p->stalls >= STALL_HEARTBEATS) {
                cons__become_probe(p);
            }
        }
        gossip_watch(n, p); /* Before acked is cleared: it reads it. */
        p->acked = false;
        if (p->state == CONS_PROGRESS_SNAPSHOT) {
            if (!p->snap_moved) {
                p->snap_sent = p->snap_acked; /* Resend the window. */
            }
            p->snap_moved = false;
            p->snap_rewound = false;
            cons__send_snapshot_chunks(n, p);
        }
        if (fed_by_gossip(n, p)) {
            cons__send_gossip_probe(n, p);
        } else {
            cons__send_heartbeat(n, p);
        }
    }
}

static bool quorum_active(struct cons_node *n)
{
    unsigned active = 0;
    for (unsigned i = 0; i < n->n_prs; i++) {
        struct progress *p = &n->prs[i];
        if (is_voter(n, p->id) && (p->recent_active || p->id == n->id)) {
            active++;
        }
        if (p->id != n->id) {
            p->recent_active = false;
        }
    }
    return active >= quorum(n);
}

/* ------------------------------------------------------------------------ */
/* Per-role message handling                                                 */

static void respond_append(struct cons_node *n, const struct cons_msg *in,
                           bool reject, rfs_index_t index,
                           rfs_index_t hint_index, rfs_term_t hint_term)
{
    struct cons_msg *m = cons__send(n, CONS_MSG_APPEND_RESP, in->from);
    if (m != NULL) {
        m->reject = reject;
        m->index = index;
        m->hint_index = hint_index;
        m->hint_term = hint_term;
        if (!reject) {
            cons__flease_stamp(n, m);
        }
    }
}

void cons__follower_commit_to(struct cons_node *n, rfs_index_t c)
{
    if (c > n->commit) {
        n->commit = c;
    }
}

static void handle_append(struct cons_node *n, const struct cons_msg *m)
{
    if (m->prev_index < n->commit) {
        /* Everything up to commit is settled; say so and let the leader
         * continue from there. */
        respond_append(n, m, false, n->commit, 0, 0);
        return;
    }
    rfs_term_t t;
    if (cons__log_term(&n->log, m->prev_index, &t) != 0 ||
        t != m->prev_term) {
        /* Hint: the last index at or before prev_index whose term is at
         * most prev_term; the leader can skip everything after it. */
        rfs_index_t hint = m->prev_index < last_index(n) ? m->prev_index
                                                          : last_index(n);
        while (hint > n->log.base_index && term_at(n, hint) > m->prev_term) {
            hint--;
        }
        cons__trace(n, "reject append at %llu (hint %llu)",
                    (unsigned long long)m->prev_index,
                    (unsigned long long)hint);
        respond_append(n, m, true, m->prev_index, hint, term_at(n, hint));
        return;
    }
    /* Find the first entry we do not already hold; only a real conflict
     * truncates, so an old or duplicated message never shortens the log
     * (RAFT-PITFALLS 3). */
    unsigned i = 0;
    for (; i < m->n_entries; i++) {
        const struct cons_entry *e = &m->entries[i];
        if (e->index != m->prev_index + 1 + i) {
            return; /* Malformed: entries must be contiguous. */
        }
        rfs_term_t have;
        if (cons__log_term(&n->log, e->index, &have) != 0) {
            break;
        }
        if (have != e->term) {
            truncate_from(n, e->index);
            break;
        }
    }
    for (; i < m->n_entries; i++) {
        const struct cons_entry *e = &m->entries[i];
        if (e->index != last_index(n) + 1 || e->term < last_term(n) ||
            e->term > m->term) {
            break; /* Malformed remainder: keep the valid prefix. */
        }
        struct cons_conf c;
        if (e->type == CONS_ENTRY_CONF && cons_conf_decode(&e->data, &c) != 0) {
            break;
        }
        if (cons__log_append(&n->log, e) != 0) {
            break;
        }
        mark_dirty(n, e->index);
        if (e->type == CONS_ENTRY_CONF) {
            cons__conf_from_entry(n, cons__log_get(&n->log, e->index));
        }
    }
    rfs_index_t last_new = m->prev_index + i;
    /* Commit no further than this message proved (RAFT-PITFALLS 3). */
    cons__follower_commit_to(n, m->commit < last_new || MUTANT(4) ? m->commit
                                                                  : last_new);
    respond_append(n, m, false, last_new, 0, 0);
}

static void handle_heartbeat(struct cons_node *n, const struct cons_msg *m)
{
    rfs_index_t c = m->commit < last_index(n) ? m->commit : last_index(n);
    cons__follower_commit_to(n, c);
    struct cons_msg *r = cons__send(n, CONS_MSG_HEARTBEAT_RESP, m->from);
    if (r != NULL) {
        r->round = m->round;
        cons__flease_stamp(n, r);
    }
}

static int leader_propose(struct cons_node *n, const struct rfs_buf *data,
                          rfs_index_t *index)
{
    if (n->transferee != RFS_NODE_NONE) {
        return RFS_ETRANSFER;
    }
    if (n->uncommitted > 0 &&
        n->uncommitted + data->len > n->o.max_uncommitted) {
        return RFS_ETOOBIG;
    }
    void *copy = NULL;
    if (data->len > 0) {
        copy = rfs_memdup(data->base, data->len);
        if (copy == NULL) {
            return -ENOMEM;
        }
    }
    int rv = cons__append_local(n, CONS_ENTRY_NORMAL, copy, data->len, index);
    if (rv != 0) {
        rfs_free(copy);
    }
    return rv;
}

/* Queue a proposal for the leader, merging with a PROPOSE already queued for
 * it so that a burst of forwarded writes travels as one message. */
static int forward(struct cons_node *n, const struct rfs_buf *data,
                   uint8_t hops)
{
    struct outbox_msg *o = NULL;
    if (n->ob_n > 0) {
        struct outbox_msg *last = &n->ob[n->ob_n - 1];
        if (last->out.msg.type == CONS_MSG_PROPOSE &&
            last->out.msg.to == n->leader && last->out.msg.hops == hops &&
            last->out.msg.n_entries < 1024) {
            o = last;
        }
    }
    if (o == NULL) {
        o = cons__ob_new(n, CONS_MSG_PROPOSE, n->leader);
        if (o == NULL) {
            return -ENOMEM;
        }
        o->out.msg.term = 0;
        o->out.msg.hops = hops;
    }
    size_t cap = o->owned_cap;
    if (cons__grow((void **)&o->owned, &cap, o->out.msg.n_entries + 1,
                   sizeof(*o->owned)) != 0) {
        return -ENOMEM;
    }
    o->owned_cap = (unsigned)cap;
    struct cons_entry *e = &o->owned[o->out.msg.n_entries];
    memset(e, 0, sizeof(*e));
    e->type = CONS_ENTRY_NORMAL;
    e->data.len = data->len;
    if (data->len > 0) {
        e->data.base = rfs_memdup(data->base, data->len);
        if (e->data.base == NULL) {
            return -ENOMEM;
        }
    }
    o->out.msg.n_entries++;
    return 0;
}

static void step_leader(struct cons_node *n, const struct cons_msg *m)
{
    struct progress *p = progress_get(n, m->from);
    switch (m->type) {
    case CONS_MSG_APPEND_RESP:
        if (p != NULL) {
            leader_append_resp(n, m, p);
            if (n->role == CONS_LEADER) {
                cons__flease_answer(n, p, m);
            }
        }
        break;
    case CONS_MSG_HEARTBEAT_RESP:
        if (p == NULL) {
            break;
        }
        p->recent_active = true;
        if (m->round > p->round_acked) {
            p->round_acked = m->round;
        }
        cons__flease_answer(n, p, m);
        if (p->state == CONS_PROGRESS_PROBE) {
            p->probe_sent = false;
        }
        if (p->match < last_index(n)) {
            cons__send_append(n, p, false);
        }
        cons__release_reads(n);
        break;
    case CONS_MSG_SNAPSHOT_RESP:
        if (p != NULL) {
            cons__leader_snapshot_resp(n, m, p);
        }
        break;
    case CONS_MSG_PROPOSE:
        for (unsigned i = 0; i < m->n_entries; i++) {
            if (leader_propose(n, &m->entries[i].data, NULL) != 0) {
                break; /* Dropped: the proposer retries on its timeout. */
            }
        }
        break;
    case CONS_MSG_READ_INDEX:
        cons__handle_read_index(n, m);
        break;
    default:
        break;
    }
}

static void step_candidate(struct cons_node *n, const struct cons_msg *m)
{
    uint8_t want =
        n->role == CONS_PRECANDIDATE ? CONS_MSG_PREVOTE_RESP : CONS_MSG_VOTE_RESP;
    switch (m->type) {
    case CONS_MSG_APPEND:
    case CONS_MSG_HEARTBEAT:
    case CONS_MSG_SNAPSHOT:
        /* A leader exists for this term (m->term >= ours here). */
        become_follower(n, m->term, m->from);
        if (m->type == CONS_MSG_APPEND) {
            handle_append(n, m);
        } else if (m->type == CONS_MSG_HEARTBEAT) {
            handle_heartbeat(n, m);
        } else {
            cons__handle_snapshot(n, m);
        }
        break;
    case CONS_MSG_VOTE_RESP:
    case CONS_MSG_PREVOTE_RESP:
        if (m->type != want) {
            break;
        }
        tally(n, m->from, !m->reject);
        check_poll(n);
        break;
    default:
        break;
    }
}

/* A follower hears from the leader of its term. Learning who that is counts
 * as a change for the host: a voter learns the winner only from its first
 * message, and proposals the host could not send while no leader was known
 * must go out now, not one retry interval later. */
static void heard_leader(struct cons_node *n, rfs_nodeid_t from)
{
    n->election_elapsed = 0;
    n->heard_tick = n->ticks;
    n->heard = true;
    if (n->leader != from) {
        n->leader = from;
        n->role_changed = true;
        cons__flease_drop(n);
    }
}

static void step_follower(struct cons_node *n, const struct cons_msg *m)
{
    switch (m->type) {
    case CONS_MSG_APPEND:
        heard_leader(n, m->from);
        handle_append(n, m);
        cons__flease_granted(n, m);
        break;
    case CONS_MSG_HEARTBEAT:
        heard_leader(n, m->from);
        handle_heartbeat(n, m);
        cons__flease_granted(n, m);
        break;
    case CONS_MSG_SNAPSHOT:
        heard_leader(n, m->from);
        cons__handle_snapshot(n, m);
        break;
    case CONS_MSG_TIMEOUT_NOW:
        cons__trace(n, "timeout-now from %llu", (unsigned long long)m->from);
        campaign(n, false, true);
        break;
    case CONS_MSG_PROPOSE:
        if (n->leader != RFS_NODE_NONE && m->hops < MAX_FORWARD_HOPS) {
            for (unsigned i = 0; i < m->n_entries; i++) {
                if (forward(n, &m->entries[i].data, m->hops + 1) != 0) {
                    break;
                }
            }
        }
        break;
    case CONS_MSG_READ_INDEX_RESP:
        if (cons__grow((void **)&n->ready, &n->ready_cap, n->ready_n + 1,
                       sizeof(*n->ready)) == 0) {
            n->ready[n->ready_n].ctx = m->ctx;
            n->ready[n->ready_n].index = m->index;
            n->ready_n++;
        }
        break;
    default:
        break;
    }
}

static void step_role(struct cons_node *n, const struct cons_msg *m)
{
    switch (n->role) {
    case CONS_LEADER:
        step_leader(n, m);
        break;
    case CONS_CANDIDATE:
    case CONS_PRECANDIDATE:
        step_candidate(n, m);
        break;
    case CONS_FOLLOWER:
        step_follower(n, m);
        break;
    }
}

static void handle_vote(struct cons_node *n, const struct cons_msg *m)
{
    bool pre = m->type == CONS_MSG_PREVOTE;
    /* A server that holds no configuration at all has never been a member:
     * it is joining, or it came back with a wiped disk under an old id and
     * forgot how it voted and what it acknowledged. Its vote could elect a
     * leader that lacks a committed entry. A real voter always holds the
     * configuration that added it (entries or snapshot). */
    /* Leader stickiness for a request of our own term too: a term taken
     * from an answer leaves no vote and no leader here, yet the leader we
     * heard last still counts on our promise (cons_node_step checks the
     * higher terms; cons__in_lease). The candidate we voted for is
     * answered as before, and a transfer's candidate was asked for. */
    bool sticky = !m->transfer && n->vote != m->from && cons__in_lease(n);
    bool can_vote = n->conf.n > 0 && !sticky &&
                    (n->vote == m->from ||
                     (n->vote == RFS_NODE_NONE && n->leader == RFS_NODE_NONE) ||
                     (pre && m->term > n->term));
    /* Election restriction (thesis 3.6.1): only for a log at least as
     * up-to-date as ours. */
    bool up_to_date =
        m->prev_term > last_term(n) ||
        (m->prev_term == last_term(n) && m->prev_index >= last_index(n));
    struct cons_msg *r =
        cons__send(n, pre ? CONS_MSG_PREVOTE_RESP : CONS_MSG_VOTE_RESP,
                   m->from);
    bool grant = can_vote && (up_to_date || MUTANT(5));
    cons__trace(n, "%s from %llu for term %llu: %s", pre ? "pre-vote" : "vote",
                (unsigned long long)m->from, (unsigned long long)m->term,
                grant ? "grant" : "reject");
    if (r == NULL) {
        return;
    }
    if (grant) {
        /* A pre-vote answer carries the term asked about, so the asker
         * counts it; granting it changes nothing here. */
        r->term = m->term;
        if (!pre) {
            n->vote = m->from;
            n->election_elapsed = 0;
        }
    } else {
        r->reject = true;
    }
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

void cons_options_default(struct cons_options *o, rfs_nodeid_t id)
{
    memset(o, 0, sizeof(*o));
    o->id = id;
    o->election_ticks = 10;
    o->heartbeat_ticks = 1;
    o->pre_vote = true;
    o->check_quorum = true;
    o->max_inflight = 64;
    o->max_msg_bytes = 1 << 20;
    o->max_uncommitted = 64u << 20;
    o->snap_chunk_bytes = 1 << 20;
    o->gossip_behind_max = 4096;
    o->gossip_stall_heartbeats = 100;
    o->seed = id;
}

static int load(struct cons_node *n, const struct cons_load *l)
{
    n->snap = l->snap;
    cons__log_reset(&n->log, l->snap.index, l->snap.term);
    rfs_term_t prev = l->snap.term;
    for (unsigned i = 0; i < l->n_entries; i++) {
        const struct cons_entry *e = &l->entries[i];
        if (e->index != l->snap.index + 1 + i || e->term < prev) {
            return RFS_ECORRUPT;
        }
        if (e->type == CONS_ENTRY_CONF) {
            struct cons_conf c;
            if (cons_conf_decode(&e->data, &c) != 0) {
                return RFS_ECORRUPT;
            }
        }
        int rv = cons__log_append(&n->log, e);
        if (rv != 0) {
            return rv;
        }
        prev = e->term;
    }
    /* Every entry was appended in a term this node had already made
     * durable (the term write is ordered before the log writes), so a hard
     * state behind the log means a lost or reordered term/vote write: the
     * vote of that term may be forgotten, and voting again could elect two
     * leaders (RAFT-PITFALLS 1). The only exception is a founder that has
     * written the bootstrap entry (term 1) and nothing else yet. */
    if (l->hs.term < last_term(n) &&
        !(l->hs.term == 0 && last_term(n) == 1)) {
        return RFS_ECORRUPT;
    }
    n->term = l->hs.term > last_term(n) ? l->hs.term : last_term(n);
    n->vote = l->hs.vote;
    /* The stored commit is only a hint and may lag what was applied
     * (RAFT-PITFALLS 6); the applied index is exact. */
    if (l->applied > last_index(n) || l->applied < l->snap.index) {
        return RFS_ECORRUPT;
    }
    n->commit = l->hs.commit;
    if (n->commit < l->applied) {
        n->commit = l->applied;
    }
    if (n->commit > last_index(n)) {
        n->commit = last_index(n);
    }
    n->stable = last_index(n);
    n->handed_out = l->applied;
    n->conf = l->snap.conf;
    n->conf_index = l->snap.index;
    cons__conf_rollback(n);
    n->taken_term = n->term;
    n->taken_vote = n->vote;
    return 0;
}

int cons_node_new(const struct cons_options *opts, const struct cons_load *l,
                  struct cons_node **out)
{
    if (opts->id == RFS_NODE_NONE || opts->election_ticks < 2 ||
        opts->heartbeat_ticks == 0 ||
        opts->heartbeat_ticks >= opts->election_ticks ||
        opts->max_inflight == 0 || opts->max_inflight > CONS_MAX_INFLIGHT ||
        opts->snap_chunk_bytes == 0 ||
        (opts->lease_reads &&
         (!opts->check_quorum ||
          opts->election_ticks <= LEASE_MARGIN_TICKS + 1))) {
        return -EINVAL;
    }
    struct cons_node *n = rfs_calloc(1, sizeof(*n));
    if (n == NULL) {
        return -ENOMEM;
    }
    n->prs = rfs_calloc(CONS_MAX_SERVERS, sizeof(*n->prs));
    if (n->prs == NULL) {
        rfs_free(n);
        return -ENOMEM;
    }
    n->o = *opts;
    n->id = opts->id;
    n->rng = opts->seed * 0x9E3779B97F4A7C15ULL + opts->id;
    if (n->rng == 0) {
        n->rng = 0x853c49e6748fea9bULL;
    }
    /* Answer numbers start anywhere, so that a restarted node's reuse
     * matching a grant meant for its previous run is unlikely even where
     * a message could outlive a connection (flease.c). */
    n->flease_seq = (uint32_t)rng_next(n) & CONS_LEASE_SEQ_MASK;
    cons__log_init(&n->log);
    int rv = load(n, l);
    if (rv != 0) {
        cons_node_free(n);
        return rv;
    }
    n->role = CONS_FOLLOWER;
    reset_randomized_timeout(n);
    *out = n;
    return 0;
}

static void release_given(struct cons_node *n)
{
    for (size_t i = 0; i < n->given_n; i++) {
        struct outbox_msg *o = &n->given[i];
        for (unsigned j = 0; j < o->out.msg.n_entries && o->owned; j++) {
            rfs_free(o->owned[j].data.base);
        }
        rfs_free(o->owned);
    }
    n->given_n = 0;
    for (size_t i = 0; i < n->given_chunks_n; i++) {
        rfs_free(n->given_chunks[i].data.base);
    }
    n->given_chunks_n = 0;
}

void cons_node_free(struct cons_node *n)
{
    if (n == NULL) {
        return;
    }
    release_given(n);
    for (size_t i = 0; i < n->ob_n; i++) {
        struct outbox_msg *o = &n->ob[i];
        for (unsigned j = 0; j < o->out.msg.n_entries && o->owned; j++) {
            rfs_free(o->owned[j].data.base);
        }
        rfs_free(o->owned);
    }
    for (size_t i = 0; i < n->chunks_n; i++) {
        rfs_free(n->chunks[i].data.base);
    }
    cons__log_close(&n->log);
    rfs_free(n->ob);
    rfs_free(n->chunks);
    rfs_free(n->ready);
    rfs_free(n->failed);
    rfs_free(n->msgs);
    rfs_free(n->given);
    rfs_free(n->given_chunks);
    rfs_free(n->given_ready);
    rfs_free(n->given_failed);
    rfs_free(n->reads_noop.r);
    rfs_free(n->reads_unsent.r);
    rfs_free(n->reads_pending.r);
    rfs_free(n->prs);
    rfs_free(n);
}

int cons_bootstrap_entry(const struct cons_conf *conf, struct cons_entry *out)
{
    if (conf->n == 0 || cons_conf_voters(conf) == 0) {
        return RFS_EBADCONF;
    }
    memset(out, 0, sizeof(*out));
    out->term = 1;
    out->index = 1;
    out->type = CONS_ENTRY_CONF;
    return cons_conf_encode(conf, &out->data);
}

void cons_node_tick(struct cons_node *n)
{
    n->ticks++;
    if (n->role != CONS_LEADER) {
        n->election_elapsed++;
        if (promotable(n) && n->election_elapsed >= n->randomized_timeout) {
            n->election_elapsed = 0;
            campaign(n, n->o.pre_vote, false);
        } else if (!promotable(n) && n->leader != RFS_NODE_NONE &&
                   n->election_elapsed >= 2 * n->o.election_ticks) {
            /* A voter that stops hearing its leader campaigns, and so
             * forgets it. A learner or observer never campaigns: without
             * this it would name a leader it has not heard for hours (a
             * wiped node its peers refuse did), and its host would wait
             * for that leader instead of saying it knows none. */
            cons__trace(n, "leader %llu not heard: forgotten",
                        (unsigned long long)n->leader);
            n->leader = RFS_NODE_NONE;
            n->role_changed = true;
            cons__flease_drop(n);
        }
        return;
    }
    n->heartbeat_elapsed++;
    n->election_elapsed++;
    if (n->transferee != RFS_NODE_NONE &&
        ++n->transfer_elapsed >= n->o.election_ticks) {
        cons__trace(n, "transfer to %llu abandoned",
                    (unsigned long long)n->transferee);
        n->transferee = RFS_NODE_NONE;
    }
    if (n->election_elapsed >= n->o.election_ticks) {
        n->election_elapsed = 0;
        /* CheckQuorum: a leader that has not heard from a quorum for an
         * election timeout steps down, so a partitioned leader stops
         * serving and the majority side can elect another. */
        if (n->o.check_quorum && !quorum_active(n)) {
            cons__trace(n, "lost quorum: step down");
            become_follower(n, n->term, RFS_NODE_NONE);
            return;
        }
    }
    if (n->heartbeat_elapsed >= n->o.heartbeat_ticks) {
        n->heartbeat_elapsed = 0;
        leader_heartbeat_tick(n);
    }
    if (n->o.follower_leases) {
        /* A promise that ran out may free a commit, or a transfer. */
        maybe_commit(n);
        struct progress *t = n->transferee != RFS_NODE_NONE
                                 ? progress_get(n, n->transferee)
                                 : NULL;
        if (n->role == CONS_LEADER && t != NULL) {
            maybe_send_timeout_now(n, t);
        }
    }
}

int cons_node_step(struct cons_node *n, const struct cons_msg *m)
{
    if (m->type == 0 || m->type >= CONS_MSG_TYPE_MAX || m->from == n->id ||
        m->from == RFS_NODE_NONE) {
        return 0;
    }
    bool termless = m->type == CONS_MSG_PROPOSE ||
                    m->type == CONS_MSG_READ_INDEX ||
                    m->type == CONS_MSG_READ_INDEX_RESP;
    if (termless) {
        step_role(n, m);
        return 0;
    }
    bool vote_req = m->type == CONS_MSG_VOTE || m->type == CONS_MSG_PREVOTE;
    if (m->term > n->term) {
        if (vote_req && !m->transfer && cons__in_lease(n)) {
            /* Leader stickiness: we heard from a live leader within the
             * election timeout, so this candidate is disrupting, not
             * replacing a dead leader (thesis 4.2.3). */
            cons__trace(n, "ignore %s from %llu: leader %llu is alive",
                        cons_msg_type_name(m->type),
                        (unsigned long long)m->from,
                        (unsigned long long)n->leader);
            return 0;
        }
        bool keep_term =
            m->type == CONS_MSG_PREVOTE ||
            (m->type == CONS_MSG_PREVOTE_RESP && !m->reject);
        if (!keep_term) {
            bool from_leader = m->type == CONS_MSG_APPEND ||
                               m->type == CONS_MSG_HEARTBEAT ||
                               m->type == CONS_MSG_SNAPSHOT;
            become_follower(n, m->term, from_leader ? m->from : RFS_NODE_NONE);
        }
    } else if (m->term < n->term) {
        if (m->type == CONS_MSG_APPEND || m->type == CONS_MSG_HEARTBEAT ||
            m->type == CONS_MSG_SNAPSHOT) {
            /* A stale leader: tell it our term so it steps down. With
             * PreVote and CheckQuorum it would otherwise never learn. */
            struct cons_msg *r = cons__send(n, CONS_MSG_APPEND_RESP, m->from);
            if (r != NULL) {
                r->reject = true;
            }
        } else if (m->type == CONS_MSG_PREVOTE) {
            struct cons_msg *r = cons__send(n, CONS_MSG_PREVOTE_RESP, m->from);
            if (r != NULL) {
                r->reject = true;
            }
        }
        return 0;
    }
    if (vote_req) {
        handle_vote(n, m);
        return 0;
    }
    step_role(n, m);
    return 0;
}

int cons_node_propose(struct cons_node *n, const struct rfs_buf *data,
                      rfs_index_t *index)
{
    if (index != NULL) {
        *index = 0;
    }
    if (n->role == CONS_LEADER) {
        return leader_propose(n, data, index);
    }
    if (n->role != CONS_FOLLOWER || n->leader == RFS_NODE_NONE) {
        return RFS_ENOLEADER;
    }
    return forward(n, data, 0);
}

int cons_node_commit_proven(struct cons_node *n, const struct cons_entry *e,
                            unsigned count)
{
    if (n->role == CONS_LEADER) {
        return -EINVAL;
    }
    for (unsigned i = 0; i < count; i++) {
        if (i > 0 && e[i].index != e[i - 1].index + 1) {
            return -EINVAL;
        }
    }
    for (unsigned i = 0; i < count; i++) {
        const struct cons_entry *x = &e[i];
        if (x->index <= n->log.base_index) {
            continue; /* In the snapshot already. */
        }
        if (x->index > last_index(n) + 1) {
            return -EINVAL;
        }
        if (x->index <= last_index(n)) {
            if (term_at(n, x->index) == x->term) {
                continue;
            }
            if (x->index <= n->commit) {
                cons__trace(n, "proven entry %llu has term %llu, the log "
                            "%llu", (unsigned long long)x->index,
                            (unsigned long long)x->term,
                            (unsigned long long)term_at(n, x->index));
                return RFS_ECORRUPT;
            }
            /* Uncommitted here, and another entry committed there. */
            truncate_from(n, x->index);
        }
        struct cons_conf c;
        if (x->type == CONS_ENTRY_CONF && cons_conf_decode(&x->data, &c) != 0) {
            return RFS_ECORRUPT;
        }
        if (x->term > n->term) {
            /* A leader of that term exists: hear it as a message of that
             * term would be heard. The hard state is written with the
             * entries, so a restart never finds the log ahead of the term
             * (load's check). */
            become_follower(n, x->term, RFS_NODE_NONE);
        }
        int rv = cons__log_append(&n->log, x);
        if (rv != 0) {
            return rv;
        }
        mark_dirty(n, x->index);
        if (x->type == CONS_ENTRY_CONF) {
            cons__conf_from_entry(n, cons__log_get(&n->log, x->index));
        }
    }
    if (count > 0) {
        rfs_index_t last = e[count - 1].index;
        cons__follower_commit_to(n, last < last_index(n) ? last
                                                         : last_index(n));
    }
    return 0;
}

int cons_node_install_image(struct cons_node *n,
                            const struct cons_snap_meta *meta)
{
    /* Never on a voter: the install resets the log, and a voter's entries
     * past the image may be the ones its acknowledgements counted toward
     * a commit. Only an observer fetches images. */
    if (n->role == CONS_LEADER || is_voter(n, n->id) || meta->size == 0) {
        return -EINVAL;
    }
    if (meta->index <= n->commit) {
        return -EALREADY;
    }
    if (cons__grow((void **)&n->chunks, &n->chunks_cap, n->chunks_n + 1,
                   sizeof(*n->chunks)) != 0) {
        return -ENOMEM;
    }
    /* The bytes are in the host's receiving file already: one empty last
     * chunk at the image's end makes the host install it by the same
     * path as a leader's last chunk. */
    struct cons_snap_chunk *c = &n->chunks[n->chunks_n++];
    *c = (struct cons_snap_chunk){.meta = *meta, .offset = meta->size,
                                  .last = true, .fetched = true};
    if (meta->term > n->term) {
        /* As cons_node_commit_proven: a leader of that term exists, and
         * the hard state goes out with the install, so a restart never
         * finds the snapshot ahead of the term. */
        become_follower(n, meta->term, RFS_NODE_NONE);
    }
    cons__snapshot_install(n, meta);
    return 0;
}

int cons_node_transfer(struct cons_node *n, rfs_nodeid_t to)
{
    if (n->role != CONS_LEADER) {
        return RFS_ENOTLEADER;
    }
    if (to == RFS_NODE_NONE) {
        rfs_index_t best = 0;
        for (unsigned i = 0; i < n->n_prs; i++) {
            struct progress *p = &n->prs[i];
            if (p->id != n->id && is_voter(n, p->id) &&
                (to == RFS_NODE_NONE || p->match > best)) {
                to = p->id;
                best = p->match;
            }
        }
    }
    /* Learners never lead (RAFT-PITFALLS 5). */
    if (to == n->id || !is_voter(n, to)) {
        return RFS_EBADCONF;
    }
    struct progress *p = progress_get(n, to);
    if (p == NULL) {
        return RFS_EBADCONF;
    }
    cons__trace(n, "transfer leadership to %llu", (unsigned long long)to);
    n->transferee = to;
    n->transfer_elapsed = 0;
    if (p->match == last_index(n)) {
        maybe_send_timeout_now(n, p);
    } else {
        cons__send_append(n, p, false);
    }
    return 0;
}

void cons_node_persisted(struct cons_node *n, const struct cons_persist_tag *t)
{
    if (n->hs_pending_seq != 0 && t->seq >= n->hs_pending_seq) {
        n->hs_pending_seq = 0;
    }
    rfs_index_t upto = t->index;
    if (n->trunc_seq != 0 && !MUTANT(7)) {
        if (t->seq >= n->trunc_seq) {
            n->trunc_seq = 0; /* Every cut is on disk now. */
        } else if (upto >= n->trunc_from) {
            upto = n->trunc_from - 1;
        }
    }
    if (upto <= n->stable) {
        return;
    }
    rfs_term_t have;
    if ((cons__log_term(&n->log, t->index, &have) != 0 || have != t->term) &&
        !MUTANT(7)) {
        cons__trace(n, "stale persist completion (%llu, %llu) ignored",
                    (unsigned long long)t->term, (unsigned long long)t->index);
        return; /* RAFT-PITFALLS 10: the log moved on since. */
    }
    n->stable = upto < last_index(n) ? upto : last_index(n);
    if (n->role == CONS_LEADER) {
        struct progress *self = progress_get(n, n->id);
        if (self != NULL) {
            self->match = n->stable;
        }
        maybe_commit(n);
    }
}

/* Work best done once per batch: replication and read rounds. */
static void flush(struct cons_node *n)
{
    if (n->role != CONS_LEADER) {
        return;
    }
    if (n->need_broadcast) {
        n->need_broadcast = false;
        cons__broadcast_append(n);
    }
    if (n->reads_unsent.n > 0) {
        cons__new_round(n);
        for (size_t i = 0; i < n->reads_unsent.n; i++) {
            struct pending_read r = n->reads_unsent.r[i];
            r.round = n->read_round;
            if (cons__queue_push(&n->reads_pending, &r) != 0) {
                cons__read_failed(n, &r);
            }
        }
        n->reads_unsent.n = 0;
        cons__broadcast_heartbeat(n);
        cons__release_reads(n);
    }
}

bool cons_node_has_update(const struct cons_node *n)
{
    return n->ob_n > 0 || n->dirty_from != 0 || n->chunks_n > 0 ||
           n->ready_n > 0 || n->failed_n > 0 || n->role_changed ||
           n->term != n->taken_term || n->vote != n->taken_vote ||
           n->handed_out < (n->commit < n->stable ? n->commit : n->stable) ||
           (n->role == CONS_LEADER &&
            (n->need_broadcast || n->reads_unsent.n > 0));
}

static bool acks_durable_state(const struct cons_msg *m)
{
    switch (m->type) {
    case CONS_MSG_APPEND_RESP:
    case CONS_MSG_SNAPSHOT_RESP:
        return !m->reject;
    case CONS_MSG_VOTE_RESP:
        return !m->reject && !MUTANT(2);
    default:
        return false;
    }
}

void cons_node_take_update(struct cons_node *n, struct cons_update *u)
{
    release_given(n);
    flush(n);
    memset(u, 0, sizeof(*u));

    u->hs.term = n->term;
    u->hs.vote = n->vote;
    u->hs.commit = n->commit;
    u->hs_changed = n->term != n->taken_term || n->vote != n->taken_vote;
    n->taken_term = n->term;
    n->taken_vote = n->vote;

    /* Swap chunk buffers: what was accumulated is given out. */
    struct cons_snap_chunk *tc = n->given_chunks;
    size_t tcap = n->given_chunks_cap;
    n->given_chunks = n->chunks;
    n->given_chunks_cap = n->chunks_cap;
    n->given_chunks_n = n->chunks_n;
    n->chunks = tc;
    n->chunks_cap = tcap;
    n->chunks_n = 0;
    u->n_chunks = (unsigned)n->given_chunks_n;
    u->chunks = n->given_chunks;

    if (n->dirty_from != 0 && n->dirty_from <= last_index(n)) {
        const struct cons_entry *e = cons__log_get(&n->log, n->dirty_from);
        RFS_ASSERT(e != NULL);
        u->entries = e;
        u->n_entries = (unsigned)(last_index(n) - n->dirty_from + 1);
    }
    n->dirty_from = 0;

    if (u->hs_changed || u->n_chunks > 0 || u->n_entries > 0) {
        u->needs_persist = true;
        u->tag.seq = ++n->seq;
        u->tag.term = last_term(n);
        u->tag.index = last_index(n);
        if (u->hs_changed) {
            n->hs_pending_seq = u->tag.seq;
        }
        if (n->trunc_next != 0) {
            if (n->trunc_seq == 0 || n->trunc_next < n->trunc_from) {
                n->trunc_from = n->trunc_next;
            }
            n->trunc_seq = u->tag.seq;
            n->trunc_next = 0;
        }
    }

    /* Messages: resolve entry ranges against the log as it is now. */
    struct outbox_msg *tg = n->given;
    size_t tgcap = n->given_cap;
    n->given = n->ob;
    n->given_cap = n->ob_cap;
    n->given_n = n->ob_n;
    n->ob = tg;
    n->ob_cap = tgcap;
    n->ob_n = 0;
    if (cons__grow((void **)&n->msgs, &n->msgs_cap, n->given_n,
                   sizeof(*n->msgs)) != 0) {
        n->given_n = n->msgs_cap < n->given_n ? n->msgs_cap : n->given_n;
    }
    n->out_snap = n->snap;
    unsigned k = 0;
    for (size_t i = 0; i < n->given_n; i++) {
        struct outbox_msg *o = &n->given[i];
        struct cons_msg *m = &o->out.msg;
        if (m->type == CONS_MSG_APPEND && o->count > 0) {
            rfs_index_t lastm = o->first + o->count - 1;
            if (o->first <= n->log.base_index || lastm > last_index(n) ||
                term_at(n, lastm) != o->last_term) {
                continue; /* Compacted or rewritten meanwhile. */
            }
            m->entries = cons__log_get(&n->log, o->first);
            m->n_entries = o->count;
        } else if (m->type == CONS_MSG_SNAPSHOT) {
            if (o->first != n->snap.index) {
                continue;
            }
            m->snap = &n->out_snap;
        } else if (m->type == CONS_MSG_PROPOSE) {
            m->entries = o->owned;
        }
        o->out.wait_durable =
            acks_durable_state(m) ||
            (m->term != 0 && n->hs_pending_seq != 0 && !MUTANT(2));
        n->msgs[k++] = o->out;
    }
    u->n_msgs = k;
    u->msgs = n->msgs;

    rfs_index_t upto = n->commit < n->stable ? n->commit : n->stable;
    if (upto > n->handed_out) {
        u->committed = cons__log_get(&n->log, n->handed_out + 1);
        RFS_ASSERT(u->committed != NULL);
        u->n_committed = (unsigned)(upto - n->handed_out);
        n->handed_out = upto;
    }

    struct cons_read_state *tr = n->given_ready;
    size_t trcap = n->given_ready_cap;
    n->given_ready = n->ready;
    n->given_ready_cap = n->ready_cap;
    u->reads = n->given_ready;
    u->n_reads = (unsigned)n->ready_n;
    n->ready = tr;
    n->ready_cap = trcap;
    n->ready_n = 0;

    uint64_t *tf = n->given_failed;
    size_t tfcap = n->given_failed_cap;
    n->given_failed = n->failed;
    n->given_failed_cap = n->failed_cap;
    u->reads_failed = n->given_failed;
    u->n_reads_failed = (unsigned)n->failed_n;
    n->failed = tf;
    n->failed_cap = tfcap;
    n->failed_n = 0;

    u->role_changed = n->role_changed;
    u->role = n->role;
    u->leader = n->leader;
    n->role_changed = false;
}

void cons_node_status(const struct cons_node *n, struct cons_status *st)
{
    memset(st, 0, sizeof(*st));
    st->id = n->id;
    st->role = n->role;
    st->term = n->term;
    st->vote = n->vote;
    st->leader = n->leader;
    st->first_index = n->log.base_index + 1;
    st->last_index = last_index(n);
    st->last_term = last_term(n);
    st->commit = n->commit;
    st->stable = n->stable;
    st->handed_out = n->handed_out;
    st->snap_index = n->snap.index;
    st->conf_index = n->conf_index;
    st->transferee = n->transferee;
    st->uncommitted_bytes = n->uncommitted;
    st->leased_reads = n->flease_reads;
}

const struct cons_entry *cons_node_entry(const struct cons_node *n,
                                         rfs_index_t index)
{
    return cons__log_get(&n->log, index);
}

const struct cons_conf *cons_node_conf(const struct cons_node *n)
{
    return &n->conf;
}

int cons_node_progress(const struct cons_node *n, rfs_nodeid_t id,
                       struct cons_progress *out)
{
    if (n->role != CONS_LEADER) {
        return RFS_ENOTLEADER;
    }
    for (unsigned i = 0; i < n->n_prs; i++) {
        const struct progress *p = &n->prs[i];
        if (p->id == id) {
            out->match = p->id == n->id ? n->stable : p->match;
            out->next = p->next;
            out->state = p->state;
            out->recent_active = p->recent_active;
            out->inflight = p->in_n;
            return 0;
        }
    }
    return RFS_EBADCONF;
}

const char *cons_role_name(enum cons_role role)
{
    switch (role) {
    case CONS_FOLLOWER:
        return "follower";
    case CONS_PRECANDIDATE:
        return "pre-candidate";
    case CONS_CANDIDATE:
        return "candidate";
    case CONS_LEADER:
        return "leader";
    }
    return "?";
}

const char *cons_msg_type_name(int type)
{
    static const char *names[CONS_MSG_TYPE_MAX] = {
        [CONS_MSG_APPEND] = "append",
        [CONS_MSG_APPEND_RESP] = "append-resp",
        [CONS_MSG_VOTE] = "vote",
        [CONS_MSG_VOTE_RESP] = "vote-resp",
        [CONS_MSG_PREVOTE] = "pre-vote",
        [CONS_MSG_PREVOTE_RESP] = "pre-vote-resp",
        [CONS_MSG_HEARTBEAT] = "heartbeat",
        [CONS_MSG_HEARTBEAT_RESP] = "heartbeat-resp",
        [CONS_MSG_SNAPSHOT] = "snapshot",
        [CONS_MSG_SNAPSHOT_RESP] = "snapshot-resp",
        [CONS_MSG_TIMEOUT_NOW] = "timeout-now",
        [CONS_MSG_PROPOSE] = "propose",
        [CONS_MSG_READ_INDEX] = "read-index",
        [CONS_MSG_READ_INDEX_RESP] = "read-index-resp",
    };
    if (type <= 0 || type >= CONS_MSG_TYPE_MAX) {
        return "?";
    }
    return names[type];
}
