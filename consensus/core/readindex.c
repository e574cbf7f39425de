/*
 * Linearizable reads without a log entry: ReadIndex rounds and the leader
 * lease (thesis 6.4, 6.4.1).
 *
 * A read asks the leader for its commit index, then waits until the host
 * has applied that far. The index is only safe if this node is still the
 * leader when it is read, so the leader proves it: it starts a read round,
 * every heartbeat carries the round number, and once a quorum of voters
 * acknowledged a round, every read queued before that round is released.
 * A new leader first waits for an entry of its own term to commit (its
 * commit index may lag until then), so reads wait in three queues:
 * reads_noop (this term's no-op not committed yet), reads_unsent (the next
 * round, started once per batch in raft.c's flush) and reads_pending (their
 * round is out, waiting for acks).
 *
 * With lease_reads, a round acknowledged at tick t also buys a lease: the
 * voters that acked promised to ignore candidates for an election timeout
 * (cons__in_lease, here because the lease is only as good as that promise),
 * so until shortly before then the leader answers from its commit index at
 * once. Kept apart from raft.c because none of it changes the log or the
 * term: it only decides when a read may be answered.
 */
#include <errno.h>

#include "../../common/err.h"
#include "core_i.h"

int cons__queue_push(struct read_queue *q, const struct pending_read *r)
{
    int rv = cons__grow((void **)&q->r, &q->cap, q->n + 1, sizeof(*q->r));
    if (rv != 0) {
        return rv;
    }
    q->r[q->n++] = *r;
    return 0;
}

static void read_ready(struct cons_node *n, const struct pending_read *r,
                       rfs_index_t index)
{
    if (r->from == RFS_NODE_NONE || r->from == n->id) {
        if (cons__grow((void **)&n->ready, &n->ready_cap, n->ready_n + 1,
                       sizeof(*n->ready)) == 0) {
            n->ready[n->ready_n].ctx = r->ctx;
            n->ready[n->ready_n].index = index;
            n->ready_n++;
        }
        return;
    }
    struct cons_msg *m = cons__send(n, CONS_MSG_READ_INDEX_RESP, r->from);
    if (m != NULL) {
        m->term = 0;
        m->ctx = r->ctx;
        m->index = index;
    }
}

void cons__read_failed(struct cons_node *n, const struct pending_read *r)
{
    if (r->from != RFS_NODE_NONE && r->from != n->id) {
        return; /* The remote asker times out and retries. */
    }
    if (cons__grow((void **)&n->failed, &n->failed_cap, n->failed_n + 1,
                   sizeof(*n->failed)) == 0) {
        n->failed[n->failed_n++] = r->ctx;
    }
}

void cons__fail_queue(struct cons_node *n, struct read_queue *q)
{
    for (size_t i = 0; i < q->n; i++) {
        cons__read_failed(n, &q->r[i]);
    }
    q->n = 0;
}

/* Start a read round: every heartbeat sent from now on carries it, and its
 * quorum of acks proves this node was leader at the round's tick. */
void cons__new_round(struct cons_node *n)
{
    n->read_round++;
    n->round_tick[n->read_round % ROUND_RING] = n->ticks;
}

/* The highest read round acknowledged by a quorum of voters (0: none). */
static uint64_t quorum_round(const struct cons_node *n)
{
    uint64_t acks[CONS_MAX_SERVERS];
    unsigned k = 0;
    for (unsigned i = 0; i < n->n_prs; i++) {
        if (is_voter(n, n->prs[i].id)) {
            acks[k++] = n->prs[i].id == n->id ? n->read_round
                                              : n->prs[i].round_acked;
        }
    }
    unsigned q = quorum(n);
    if (k < q) {
        return 0;
    }
    /* Sort descending (k is small). */
    for (unsigned i = 1; i < k; i++) {
        for (unsigned j = i; j > 0 && acks[j] > acks[j - 1]; j--) {
            uint64_t t = acks[j];
            acks[j] = acks[j - 1];
            acks[j - 1] = t;
        }
    }
    return acks[q - 1];
}

/*
 * Whether this leader may answer a read from its commit index without a
 * round. A quorum acknowledged a round sent at tick t; each of those voters
 * then ignores candidates for an election timeout from when it heard it
 * (leader stickiness, and the boot hold in in_lease), so no other leader
 * can exist before t + election_ticks - 1 ticks of a follower's clock. The
 * lease ends LEASE_MARGIN_TICKS before that on this node's clock. Ticks
 * must follow real time: the host catches up missed ticks before it steps
 * anything (docs/core.md). A leader that sent TIMEOUT_NOW gave its
 * followers leave to ignore the lease, so it stops using it.
 */
bool cons__lease_last_tick(const struct cons_node *n, uint64_t *last)
{
    if (n->role != CONS_LEADER || !n->o.lease_reads || n->lease_off ||
        n->commit < n->term_start) {
        return false;
    }
    uint64_t r = quorum_round(n);
    if (r == 0 || n->read_round - r >= ROUND_RING) {
        return false;
    }
    if (MUTANT(8)) {
        *last = UINT64_MAX; /* A lease without an end. */
        return true;
    }
    uint64_t sent = n->round_tick[r % ROUND_RING];
    *last = sent + n->o.election_ticks - 1 - LEASE_MARGIN_TICKS;
    return true;
}

bool cons__confirmed_tick(const struct cons_node *n, uint64_t *tick)
{
    if (n->role != CONS_LEADER) {
        return false;
    }
    uint64_t r = quorum_round(n);
    if (r == 0 || n->read_round - r >= ROUND_RING) {
        return false;
    }
    *tick = n->round_tick[r % ROUND_RING];
    return true;
}

static bool lease_valid(const struct cons_node *n)
{
    uint64_t last;
    return cons__lease_last_tick(n, &last) && n->ticks <= last;
}

/* Release every pending read whose round a quorum has acknowledged. */
void cons__release_reads(struct cons_node *n)
{
    if (n->reads_pending.n == 0) {
        return;
    }
    uint64_t confirmed = quorum_round(n);
    if (confirmed == 0) {
        return;
    }
    size_t keep = 0;
    for (size_t i = 0; i < n->reads_pending.n; i++) {
        struct pending_read *r = &n->reads_pending.r[i];
        if (r->round <= confirmed) {
            read_ready(n, r, r->index);
        } else {
            n->reads_pending.r[keep++] = *r;
        }
    }
    n->reads_pending.n = keep;
}

/* Move reads that waited for this term's first commit on to a round. */
void cons__reads_after_noop(struct cons_node *n)
{
    if (n->commit < n->term_start) {
        return;
    }
    for (size_t i = 0; i < n->reads_noop.n; i++) {
        struct pending_read r = n->reads_noop.r[i];
        r.index = n->commit;
        if (cons__queue_push(&n->reads_unsent, &r) != 0) {
            cons__read_failed(n, &r);
        }
    }
    n->reads_noop.n = 0;
}

bool cons__in_lease(const struct cons_node *n)
{
    /* With lease reads, a node that just started may have acknowledged a
     * leader's round before it went down, and that leader counts on it:
     * it holds off candidates for its first election timeout as well. */
    bool boot = (n->o.lease_reads || n->o.boot_hold) &&
                n->ticks < n->o.election_ticks &&
                !MUTANT(9);
    if (!n->o.check_quorum) {
        return false;
    }
    if (n->role == CONS_LEADER) {
        return n->election_elapsed < n->o.election_ticks;
    }
    /* A voter's promise lasts a full election timeout from the last message
     * of a leader, whatever happened since: a higher term adopted from a
     * heartbeat answer or a pre-vote reply leaves no leader known here, yet
     * the old leader still counts on that promise for its lease
     * (RAFT-PITFALLS 8). */
    bool heard = MUTANT(11) ? n->leader != RFS_NODE_NONE &&
                                  n->election_elapsed < n->o.election_ticks
                            : n->heard && n->ticks - n->heard_tick <
                                              n->o.election_ticks;
    return heard || (boot && n->election_elapsed < n->o.election_ticks);
}

void cons__handle_read_index(struct cons_node *n, const struct cons_msg *m)
{
    struct pending_read r = {.ctx = m->ctx, .from = m->from};
    if (n->commit < n->term_start && !MUTANT(3)) {
        if (cons__queue_push(&n->reads_noop, &r) != 0) {
            cons__read_failed(n, &r);
        }
        return;
    }
    r.index = n->commit;
    if (lease_valid(n)) {
        read_ready(n, &r, r.index);
        return;
    }
    if (cons__queue_push(&n->reads_unsent, &r) != 0) {
        cons__read_failed(n, &r);
    }
}

uint64_t cons_node_lease_end(const struct cons_node *n)
{
    if (n->role == CONS_FOLLOWER) {
        return cons__flease_valid(n) ? n->flease_end : 0;
    }
    uint64_t last;
    if (!cons__lease_last_tick(n, &last) || n->ticks > last) {
        return 0;
    }
    return last == UINT64_MAX ? last : last + 1;
}

int cons_node_read_index(struct cons_node *n, uint64_t ctx)
{
    if (n->role == CONS_LEADER) {
        struct cons_msg m = {.ctx = ctx, .from = RFS_NODE_NONE};
        cons__handle_read_index(n, &m);
        return 0;
    }
    if (n->role != CONS_FOLLOWER || n->leader == RFS_NODE_NONE) {
        return RFS_ENOLEADER;
    }
    if (cons__flease_valid(n)) {
        /* Every entry that may have committed is in this log already (the
         * leader's promise): applying all of it is enough. */
        struct pending_read r = {.ctx = ctx, .from = RFS_NODE_NONE};
        read_ready(n, &r, last_index(n));
        n->flease_reads++;
        return 0;
    }
    struct cons_msg *m = cons__send(n, CONS_MSG_READ_INDEX, n->leader);
    if (m == NULL) {
        return -ENOMEM;
    }
    m->term = 0;
    m->ctx = ctx;
    return 0;
}
