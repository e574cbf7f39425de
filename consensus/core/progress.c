/*
 * The leader's view of each peer, and what it sends them (thesis 3.5, 10.2).
 *
 * Each peer has a struct progress: match (the last index known to be in its
 * log) and next (the next index to send). A peer is in one of three states:
 * PROBE, one APPEND at a time until a reply shows where its log matches
 * ours; REPLICATE, APPENDs pipelined up to max_inflight, each remembered in
 * a ring so that acks free the window; SNAPSHOT, the entries it needs are
 * compacted away, so it gets the image in chunks, a few in flight. The
 * replies that move a peer between these states are handled in raft.c
 * (leader_append_resp, leader_snapshot_resp, leader_heartbeat_tick); this
 * file only keeps the bookkeeping and builds the messages.
 *
 * Kept apart from raft.c because it is the leader's flow control, which
 * changes for throughput reasons, while raft.c holds the rules that make
 * the protocol safe. Nothing here decides what is committed.
 */
#include <stddef.h>
#include <string.h>

#include "../../common/assert.h"
#include "core_i.h"

void cons__progress_reset(struct cons_node *n, struct progress *p,
                          rfs_nodeid_t id)
{
    memset(p, 0, offsetof(struct progress, in_last));
    p->id = id;
    p->next = last_index(n) + 1;
    p->state = CONS_PROGRESS_PROBE;
    if (id == n->id) {
        p->match = n->stable;
    }
}

/* Make the leader's progress set match the configuration: keep what is
 * known about servers that stay, start new ones in PROBE. */
/* Every member gets a progress, observers included. With
 * gossip_observers, an observer's progress only tracks how far gossip
 * brought it (cons__send_gossip_probe); cons__send_append sends it
 * nothing. */
void cons__progress_sync(struct cons_node *n)
{
    unsigned k = 0;
    for (unsigned j = 0; j < n->n_prs; j++) {
        if (cons_conf_get(&n->conf, n->prs[j].id) != NULL) {
            if (k != j) {
                n->prs[k] = n->prs[j];
            }
            k++;
        } else {
            cons__flease_forget(n, &n->prs[j]);
        }
    }
    n->n_prs = k;
    for (unsigned i = 0; i < n->conf.n; i++) {
        rfs_nodeid_t id = n->conf.servers[i].id;
        if (progress_get(n, id) == NULL) {
            RFS_ASSERT(n->n_prs < CONS_MAX_SERVERS);
            cons__progress_reset(n, &n->prs[n->n_prs++], id);
        }
    }
}

static void inflight_add(struct cons_node *n, struct progress *p,
                         rfs_index_t last)
{
    unsigned cap = n->o.max_inflight;
    RFS_ASSERT(p->in_n < cap);
    p->in_last[(p->in_head + p->in_n) % cap] = last;
    p->in_n++;
}

void cons__inflight_free_to(struct cons_node *n, struct progress *p,
                            rfs_index_t index)
{
    unsigned cap = n->o.max_inflight;
    while (p->in_n > 0 && p->in_last[p->in_head] <= index) {
        p->in_head = (p->in_head + 1) % cap;
        p->in_n--;
    }
}

void cons__become_probe(struct progress *p)
{
    p->state = CONS_PROGRESS_PROBE;
    p->probe_sent = false;
    p->in_n = 0;
    p->in_head = 0;
    p->stalls = 0;
    p->next = p->match + 1;
}

void cons__become_replicate(struct progress *p)
{
    p->state = CONS_PROGRESS_REPLICATE;
    p->probe_sent = false;
    p->in_n = 0;
    p->in_head = 0;
    p->stalls = 0;
    p->next = p->match + 1;
}

void cons__send_snapshot_chunks(struct cons_node *n, struct progress *p)
{
    if (p->snap_index != n->snap.index) {
        /* A newer image replaced the one being sent: start over with it. */
        p->snap_index = n->snap.index;
        p->snap_acked = 0;
        p->snap_sent = 0;
        p->snap_rewound = false;
    }
    uint64_t size = n->snap.size;
    uint64_t chunk = n->o.snap_chunk_bytes;
    while (p->snap_sent < size &&
           p->snap_sent - p->snap_acked < SNAP_WINDOW * chunk) {
        uint64_t len = size - p->snap_sent;
        if (len > chunk) {
            len = chunk;
        }
        struct outbox_msg *o = cons__ob_new(n, CONS_MSG_SNAPSHOT, p->id);
        if (o == NULL) {
            return;
        }
        o->out.msg.offset = p->snap_sent;
        o->out.msg.data.len = (size_t)len;
        o->out.msg.last = p->snap_sent + len == size;
        o->out.msg.index = n->snap.index;
        o->first = n->snap.index; /* Resolved to the meta at take time. */
        p->snap_sent += len;
    }
}

static void start_snapshot(struct cons_node *n, struct progress *p)
{
    cons__trace(n, "send snapshot %llu to %llu",
                (unsigned long long)n->snap.index, (unsigned long long)p->id);
    p->state = CONS_PROGRESS_SNAPSHOT;
    p->in_n = 0;
    p->in_head = 0;
    p->snap_index = n->snap.index;
    p->snap_acked = 0;
    p->snap_sent = 0;
    p->snap_rewound = false;
    p->snap_moved = false;
    cons__send_snapshot_chunks(n, p);
}

/* Send what peer p lacks, if flow control allows. With empty set, an APPEND
 * with no entries is sent to carry a newer commit index. */
void cons__send_append(struct cons_node *n, struct progress *p, bool empty)
{
    if (p->id == n->id) {
        return;
    }
    if (p->state == CONS_PROGRESS_SNAPSHOT) {
        cons__send_snapshot_chunks(n, p);
        return;
    }
    if (fed_by_gossip(n, p)) {
        /* Neither entries nor a commit index per entry: that is what made
         * the leader's bytes grow with observers. The heartbeat tick
         * probes it instead. */
        return;
    }
    if ((p->state == CONS_PROGRESS_PROBE && p->probe_sent) ||
        (p->state == CONS_PROGRESS_REPLICATE &&
         p->in_n >= n->o.max_inflight)) {
        return;
    }
    rfs_index_t prev = p->next - 1;
    rfs_term_t prev_term;
    if (cons__log_term(&n->log, prev, &prev_term) != 0) {
        start_snapshot(n, p);
        return;
    }
    rfs_index_t last = last_index(n);
    if (n->o.gossip_observers && last > n->conf_index && !p->gossip_fed &&
        cons_conf_get(&n->conf, p->id) != NULL &&
        cons_conf_get(&n->conf, p->id)->role == CONS_OBSERVER) {
        /* An observer behind the configuration gets entries up to it
         * only (fed_by_gossip): the rest comes by gossip. */
        last = n->conf_index;
    }
    unsigned count = 0;
    size_t bytes = 0;
    while (p->next + count <= last) {
        const struct cons_entry *e = cons__log_get(&n->log, p->next + count);
        if (count > 0 && bytes + e->data.len > n->o.max_msg_bytes) {
            break;
        }
        bytes += e->data.len;
        count++;
    }
    if (count == 0 && !empty && p->state != CONS_PROGRESS_PROBE) {
        return;
    }
    struct outbox_msg *o = cons__ob_new(n, CONS_MSG_APPEND, p->id);
    if (o == NULL) {
        return;
    }
    o->out.msg.prev_index = prev;
    o->out.msg.prev_term = prev_term;
    o->out.msg.commit = n->commit;
    cons__flease_fill(p, &o->out.msg);
    o->first = p->next;
    o->count = count;
    o->last_term = count > 0 ? term_at(n, p->next + count - 1) : prev_term;
    p->sent_commit = n->commit;
    if (p->state == CONS_PROGRESS_REPLICATE) {
        if (count > 0) {
            p->next += count;
            inflight_add(n, p, p->next - 1);
        }
    } else {
        p->probe_sent = true;
    }
}

void cons__broadcast_append(struct cons_node *n)
{
    for (unsigned i = 0; i < n->n_prs; i++) {
        struct progress *p = &n->prs[i];
        cons__send_append(n, p, p->sent_commit < n->commit);
    }
}

void cons__send_heartbeat(struct cons_node *n, struct progress *p)
{
    struct cons_msg *m = cons__send(n, CONS_MSG_HEARTBEAT, p->id);
    if (m == NULL) {
        return;
    }
    /* Never tell a follower to commit past what it is known to hold: it
     * cannot check the rest of its log against ours (RAFT-PITFALLS 3). */
    m->commit = p->match < n->commit ? p->match : n->commit;
    m->round = n->read_round;
    cons__flease_fill(p, m);
}

void cons__broadcast_heartbeat(struct cons_node *n)
{
    /* A read round: observers never count toward it, and the gossip-fed
     * ones hear from this leader on its heartbeat tick only. */
    for (unsigned i = 0; i < n->n_prs; i++) {
        if (n->prs[i].id != n->id && !fed_by_gossip(n, &n->prs[i])) {
            cons__send_heartbeat(n, &n->prs[i]);
        }
    }
}

void cons__send_gossip_probe(struct cons_node *n, struct progress *p)
{
    if (p->state == CONS_PROGRESS_SNAPSHOT) {
        return; /* The tick resends its chunks. */
    }
    rfs_index_t prev = p->next - 1;
    rfs_term_t prev_term;
    if (cons__log_term(&n->log, prev, &prev_term) != 0) {
        if (!n->o.gossip_images || p->gossip_fed) {
            /* What it lacks was compacted away, and may be gone from
             * every peer's gossip cache too: it gets the image from
             * here. */
            start_snapshot(n, p);
            return;
        }
        /* Its peers may serve it an image: probe at the log's base, which
         * it answers with its match until it holds the base (an image
         * installed); the snapshot from here waits for gossip_watch to
         * find it far behind and stalled. One within gossip_behind_max
         * lacks only what its peers' caches hold. next stays: a reject's
         * hint keeps it below. */
        prev = n->log.base_index;
        prev_term = n->log.base_term;
    }
    /* No entries. The observer answers with its commit index if prev is
     * below it (handle_append), else with prev if it holds it, else with a
     * reject whose hint moves next down: either way match follows gossip,
     * one round per heartbeat interval. The commit sent is capped at prev
     * by the observer itself (it commits no further than a message
     * proves). */
    struct outbox_msg *o = cons__ob_new(n, CONS_MSG_APPEND, p->id);
    if (o == NULL) {
        return;
    }
    o->out.msg.prev_index = prev;
    o->out.msg.prev_term = prev_term;
    o->out.msg.commit = n->commit;
    o->first = p->next;
    o->count = 0;
    o->last_term = prev_term;
    p->sent_commit = n->commit;
    p->probe_sent = true;
}
