/*
 * Follower read leases: a follower answers linearizable reads from its own
 * copy while the leader has promised not to commit anything it has not
 * acknowledged (docs/core.md, "Follower read leases").
 *
 * The follower's side numbers each answer it sends its leader and notes the
 * tick it left at; a grant names one of those answers, and the lease runs
 * from that tick, never from when the grant arrived, so a delayed grant can
 * only shorten it. The leader's side grants on receipt, for no longer than
 * its own lease has left, and caps every commit by the match index of each
 * follower whose promise still runs (and by none at all while a removed
 * holder's promise runs). Everything here is off unless
 * cons_options.follower_leases is set, and the leader grants only while it
 * holds its own lease (lease_reads).
 *
 * Node sessions use the same numbering, with or without leases: a follower
 * always numbers its answers, the leader echoes the latest number it got
 * (alone, or as the grant's), and the follower keeps the send tick of the
 * latest echoed answer (echoed_tick): the last moment a leader is known to
 * have heard from it. Nothing the follower merely received from the leader
 * moves it, so an asymmetric partition (the leader's messages arrive, ours
 * do not) cannot make a cut-off node believe its session is kept alive.
 */
#include "core_i.h"

/* The follower's lease in its own ticks, from a grant of g leader ticks:
 * 9/10 covers a 10% clock-rate difference, the 2 the quantization of both
 * tick counters. */
static uint64_t follower_ticks(unsigned g)
{
    unsigned f = g * 9 / 10;
    return f > 2 ? f - 2 : 0;
}

void cons__flease_drop(struct cons_node *n)
{
    n->flease_end = 0;
}

bool cons__flease_valid(const struct cons_node *n)
{
    if (!n->o.follower_leases || n->role != CONS_FOLLOWER ||
        n->leader == RFS_NODE_NONE || cons_conf_get(&n->conf, n->id) == NULL) {
        return false;
    }
    return MUTANT(12) ? n->flease_end != 0 : n->ticks < n->flease_end;
}

void cons__flease_stamp(struct cons_node *n, struct cons_msg *r)
{
    if (n->role != CONS_FOLLOWER || r->to != n->leader) {
        return;
    }
    n->flease_seq = (n->flease_seq + 1) & CONS_LEASE_SEQ_MASK;
    if (n->flease_seq == 0) {
        n->flease_seq = 1; /* 0 means "no number" on the wire. */
    }
    struct flease_sent *s = &n->flease_sent[n->flease_seq % FLEASE_RING];
    s->seq = n->flease_seq;
    s->tick = n->ticks;
    s->term = n->term;
    s->to = r->to;
    r->lease_seq = n->flease_seq;
}

void cons__flease_granted(struct cons_node *n, const struct cons_msg *m)
{
    if (m->lease_seq == 0) {
        return;
    }
    const struct flease_sent *s = &n->flease_sent[m->lease_seq % FLEASE_RING];
    /* Only an answer this node sent to this leader in this term: the
     * promise is the one that leader made on receiving it. */
    if (s->seq != m->lease_seq || s->term != n->term || s->to != m->from ||
        m->term != n->term) {
        return;
    }
    if (s->tick > n->echoed_tick) {
        n->echoed_tick = s->tick; /* That leader heard us then. */
    }
    if (!n->o.follower_leases || m->lease_ticks == 0) {
        return;
    }
    uint64_t end = s->tick + follower_ticks(m->lease_ticks);
    if (end > n->flease_end) {
        n->flease_end = end;
    }
}

/* The last tick of this leader's own lease, if it holds one. */
static bool leader_lease_last(const struct cons_node *n, uint64_t *last)
{
    return cons__lease_last_tick(n, last) && n->ticks <= *last;
}

void cons__flease_answer(struct cons_node *n, struct progress *p,
                         const struct cons_msg *m)
{
    if (m->lease_seq != 0 && !m->reject) {
        p->echo_seq = m->lease_seq; /* Echoed with the next message. */
    }
    uint64_t last;
    /* A transfer is about to let a candidate through the followers'
     * stickiness: promise nothing new (cons__flease_running gates the
     * TimeoutNow until the old promises ran out). */
    /* Never to an observer: its promise would hold every commit until it
     * acked (cons__flease_cap), so a dead observer would stall writes. */
    const struct cons_server *s = cons_conf_get(&n->conf, p->id);
    if (!n->o.follower_leases || m->lease_seq == 0 || m->reject ||
        p->id == n->id || n->transferee != RFS_NODE_NONE || n->lease_off ||
        s == NULL || s->role == CONS_OBSERVER ||
        p->match < n->commit || !leader_lease_last(n, &last)) {
        return;
    }
    uint64_t g = last + 1 - n->ticks;
    if (g > n->o.election_ticks) {
        g = n->o.election_ticks;
    }
    if (g > 255) {
        g = 255;
    }
    if (follower_ticks((unsigned)g) == 0) {
        return; /* Too little left to be worth a promise. */
    }
    p->grant_seq = m->lease_seq;
    p->grant_ticks = (uint8_t)g;
    if (n->ticks + g > p->promise_until) {
        p->promise_until = n->ticks + g;
    }
}

void cons__flease_fill(struct progress *p, struct cons_msg *out)
{
    /* Once: an echo repeated later could name a number the follower,
     * restarted meanwhile, has given to another answer. */
    out->lease_seq = p->grant_seq != 0 ? p->grant_seq : p->echo_seq;
    out->lease_ticks = p->grant_ticks;
    p->grant_seq = 0;
    p->grant_ticks = 0;
    p->echo_seq = 0;
}

bool cons_node_session_base(const struct cons_node *n, uint64_t *tick)
{
    uint64_t t = n->echoed_tick, c;
    if (cons__confirmed_tick(n, &c) && c > t) {
        t = c;
    }
    *tick = t;
    return t != 0;
}

rfs_index_t cons__flease_cap(const struct cons_node *n, rfs_index_t c)
{
    for (unsigned i = 0; i < n->n_gone; i++) {
        if (n->gone[i].until > n->ticks) {
            return n->commit; /* A removed holder acks nothing more. */
        }
    }
    for (unsigned i = 0; i < n->n_prs; i++) {
        const struct progress *p = &n->prs[i];
        if (p->id != n->id && p->promise_until > n->ticks && p->match < c) {
            c = p->match;
        }
    }
    return c;
}

bool cons__flease_running(const struct cons_node *n)
{
    for (unsigned i = 0; i < n->n_gone; i++) {
        if (n->gone[i].until > n->ticks) {
            return true;
        }
    }
    for (unsigned i = 0; i < n->n_prs; i++) {
        if (n->prs[i].id != n->id && n->prs[i].promise_until > n->ticks) {
            return true;
        }
    }
    return false;
}

void cons__flease_forget(struct cons_node *n, const struct progress *p)
{
    if (p->promise_until <= n->ticks) {
        return;
    }
    /* Keep the promise: the removed node may serve reads until it ends. */
    unsigned k = 0;
    for (unsigned i = 0; i < n->n_gone; i++) {
        if (n->gone[i].until > n->ticks) {
            n->gone[k++] = n->gone[i];
        }
    }
    n->n_gone = k;
    if (n->n_gone < CONS_MAX_SERVERS) {
        n->gone[n->n_gone].id = p->id;
        n->gone[n->n_gone].until = p->promise_until;
        n->n_gone++;
    } else {
        /* Full (cannot happen: at most CONS_MAX_SERVERS promises run):
         * fold into the longest one, which only delays commits. */
        for (unsigned i = 0; i < n->n_gone; i++) {
            if (n->gone[i].until < p->promise_until) {
                n->gone[i].until = p->promise_until;
            }
        }
    }
}

rfs_index_t cons_node_lease_index(const struct cons_node *n)
{
    return n->role == CONS_LEADER ? n->commit : last_index(n);
}

rfs_index_t cons_node_last_index(const struct cons_node *n)
{
    return last_index(n);
}
