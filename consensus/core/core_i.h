/*
 * Private to consensus/core: the node's fields, the in-memory log, and the
 * helpers the core's files share.
 *
 * The protocol is split along its seams, as etcd-io/raft splits tracker/
 * and quorum/ off raft.go: raft.c holds roles, elections, the commit rule,
 * step and the public API; progress.c the leader's view of each peer and
 * what it sends them; readindex.c read rounds and the leader lease;
 * snapshot.c taking a snapshot and moving one to a follower; conf.c
 * configurations and membership changes; log.c the in-memory log. They all
 * work on one struct cons_node, defined here, and call each other through
 * the cons__ functions below.
 *
 * Never included from outside this folder.
 */
#ifndef RAFTFS_CONSENSUS_CORE_CORE_I_H
#define RAFTFS_CONSENSUS_CORE_CORE_I_H

#include <stdbool.h>

#include "core.h"

#define CONS_MAX_INFLIGHT 256

/*
 * The log held in memory: the entries after base_index, where base_index is
 * the snapshot point or, when trailing entries are kept after a snapshot,
 * a little before it. e[0] has index base_index + 1 and base_term is the term
 * of the entry at base_index. Each entry owns its data buffer.
 */
struct cons_log {
    struct cons_entry *e;
    size_t n;
    size_t cap;
    rfs_index_t base_index; /* Index just before e[0]. */
    rfs_term_t base_term;
};

void cons__log_init(struct cons_log *l);
void cons__log_close(struct cons_log *l);
rfs_index_t cons__log_last_index(const struct cons_log *l);
rfs_term_t cons__log_last_term(const struct cons_log *l);
/* Term of index: 0 on success; RFS_ECOMPACTED or RFS_EUNAVAIL otherwise. */
int cons__log_term(const struct cons_log *l, rfs_index_t index,
                   rfs_term_t *term);
/* Term of index or 0 when unknown (compacted or past the end). */
rfs_term_t cons__log_term_or0(const struct cons_log *l, rfs_index_t index);
/* The entry at index, or NULL if not held. */
struct cons_entry *cons__log_get(const struct cons_log *l, rfs_index_t index);
/* Append a copy of e (its index must be last + 1). 0 or -ENOMEM. */
int cons__log_append(struct cons_log *l, const struct cons_entry *e);
/* Append an entry taking ownership of its data. 0 or -ENOMEM. */
int cons__log_append_owned(struct cons_log *l, struct cons_entry *e);
/* Drop entries with index >= from. */
void cons__log_truncate(struct cons_log *l, rfs_index_t from);
/* Drop entries with index <= upto (which must be held or be the base). */
void cons__log_compact(struct cons_log *l, rfs_index_t upto);
/* Replace the whole log by an empty one based at a snapshot point. */
void cons__log_reset(struct cons_log *l, rfs_index_t base_index,
                     rfs_term_t base_term);

/* Mutation testing: the test suite builds the core again with one known
 * Raft bug switched on (CONS_MUTATION = k) and requires the simulator to
 * catch it. The normal build has CONS_MUTATION == 0 and no mutant code. */
#ifndef CONS_MUTATION
#define CONS_MUTATION 0
#endif
#define MUTANT(k) (CONS_MUTATION == (k))

#define SNAP_WINDOW 4        /* Snapshot chunks in flight per follower. */
#define MAX_FORWARD_HOPS 3   /* A forwarded proposal is dropped after this. */
#define STALL_HEARTBEATS 2   /* Heartbeats without an ack before re-probing. */
/* Read rounds whose send tick a leader remembers for its lease. */
#define ROUND_RING 64
/* Ticks a lease falls short of the election timeout: one for the tick
 * quantization of the follower's timer, one for clock-rate drift (up to
 * about 10% between the leader's and a follower's clock at the default
 * timeouts). */
#define LEASE_MARGIN_TICKS 2
/* Answers a follower remembers the send tick of, for follower leases. */
#define FLEASE_RING 32

struct progress {
    rfs_nodeid_t id;
    rfs_index_t match;
    rfs_index_t next;
    enum cons_progress_state state;
    bool probe_sent;     /* PROBE: one APPEND outstanding until answered. */
    bool recent_active;  /* Heard from since the last quorum check. */
    bool acked;          /* Any APPEND_RESP since the last heartbeat. */
    unsigned stalls;     /* Heartbeats in REPLICATE with inflight and no ack. */
    rfs_index_t sent_commit;
    uint64_t round_acked;
    unsigned in_n;   /* APPENDs in flight (REPLICATE)... */
    unsigned in_head; /* ...as a ring in in_last, oldest first. */
    /* SNAPSHOT state: which image, and how far. */
    rfs_index_t snap_index;
    uint64_t snap_acked;
    uint64_t snap_sent;
    bool snap_moved; /* An ack came since the last heartbeat. */
    bool snap_rewound; /* Resending from snap_acked after a reject. */
    /* Follower read lease (flease.c): no entry this follower has not
     * acknowledged commits before tick promise_until; grant_seq and
     * grant_ticks go out with the next APPEND or HEARTBEAT. */
    uint64_t promise_until;
    uint32_t grant_seq;
    uint8_t grant_ticks;
    /* The number of the latest answer received from this follower, echoed
     * once with the next APPEND or HEARTBEAT (node sessions: flease.c). */
    uint32_t echo_seq;
    /* Observers with gossip_observers: the match the last answer showed,
     * answered heartbeats since it last moved, and whether this leader
     * feeds it because gossip did not (fed_by_gossip). */
    rfs_index_t gossip_match;
    unsigned gossip_stalls;
    bool gossip_fed;
    /* Last index of each APPEND in flight; kept last so that a reset can
     * clear everything above it cheaply. */
    rfs_index_t in_last[CONS_MAX_INFLIGHT];
};

/* An answer a follower sent its leader, for follower leases. */
struct flease_sent {
    uint32_t seq;
    uint64_t tick;
    rfs_term_t term;
    rfs_nodeid_t to;
};

struct pending_read {
    uint64_t ctx;
    rfs_nodeid_t from; /* 0: this node's host. */
    rfs_index_t index;
    uint64_t round;
};

struct read_queue {
    struct pending_read *r;
    size_t n;
    size_t cap;
};

/* A queued message. APPEND entries are kept as an index range and resolved
 * at take time, because the log array may move in between; a message whose
 * range changed meanwhile is dropped (the protocol retransmits). */
struct outbox_msg {
    struct cons_out_msg out;
    rfs_index_t first;
    unsigned count;
    rfs_term_t last_term;
    struct cons_entry *owned; /* PROPOSE: copies of forwarded commands. */
    unsigned owned_cap;
};

struct cons_node {
    struct cons_options o;
    rfs_nodeid_t id;
    enum cons_role role;
    rfs_term_t term;
    rfs_nodeid_t vote;
    rfs_nodeid_t leader;

    struct cons_log log;
    rfs_index_t commit;
    rfs_index_t stable;     /* Highest index known durable here. */
    rfs_index_t handed_out; /* Highest index given to the host to apply. */
    struct cons_snap_meta snap;

    struct cons_conf conf; /* In force: the latest in the log. */
    rfs_index_t conf_index;

    uint64_t ticks; /* Since this core was created. */
    /* Tick of the last message from a leader (heard_leader()); valid when
     * heard is set. Unlike election_elapsed, adopting a higher term from
     * some other message does not reset it: it is what the promise to
     * ignore candidates (cons__in_lease()) counts from. */
    uint64_t heard_tick;
    bool heard;
    unsigned election_elapsed;
    unsigned heartbeat_elapsed;
    unsigned randomized_timeout;
    unsigned transfer_elapsed;
    uint64_t rng;

    /* Candidate and pre-candidate. */
    struct {
        rfs_nodeid_t id;
        bool granted;
    } votes[CONS_MAX_SERVERS];
    unsigned n_votes;

    /* Leader. */
    struct progress *prs; /* CONS_MAX_SERVERS slots. */
    unsigned n_prs;
    rfs_index_t term_start; /* Index of this term's no-op. */
    rfs_nodeid_t transferee;
    size_t uncommitted;
    uint64_t read_round;
    uint64_t round_tick[ROUND_RING]; /* Tick at which each round was sent. */
    bool lease_off; /* TIMEOUT_NOW sent: no lease reads for this term. */
    bool need_broadcast;
    struct read_queue reads_noop;    /* Wait for this term's first commit. */
    struct read_queue reads_unsent;  /* Wait for the next round. */
    struct read_queue reads_pending; /* Wait for their round's quorum. */

    /* Follower receiving a snapshot. */
    rfs_index_t recv_index;
    rfs_term_t recv_term;
    uint64_t recv_offset;

    /* Accumulated output. */
    rfs_term_t taken_term;
    rfs_nodeid_t taken_vote;
    uint64_t seq;
    uint64_t hs_pending_seq; /* Term/vote write not yet durable (0: none). */
    /* Truncations (RAFT-PITFALLS 10): trunc_next is the lowest index cut
     * since the last update was taken (0: none). trunc_seq is the update
     * that carries the latest cut to disk, trunc_from the lowest index cut
     * by any write whose completion is still awaited (0 in trunc_seq: no
     * such write). A completion of an earlier write proves nothing at or
     * past trunc_from: the entries it wrote there may be overwritten on
     * disk before the log is whole again, even when the same (term, index)
     * comes back later, as it does when a third leader restores what the
     * second cut. */
    rfs_index_t trunc_next;
    uint64_t trunc_seq;
    rfs_index_t trunc_from;
    rfs_index_t dirty_from;  /* First index to persist (0: none). */
    struct outbox_msg *ob;
    size_t ob_n;
    size_t ob_cap;
    struct cons_snap_chunk *chunks;
    size_t chunks_n;
    size_t chunks_cap;
    struct cons_read_state *ready;
    size_t ready_n;
    size_t ready_cap;
    uint64_t *failed;
    size_t failed_n;
    size_t failed_cap;
    bool role_changed;

    /* Handed to the host; released at the next take. */
    struct cons_out_msg *msgs;
    size_t msgs_cap;
    struct outbox_msg *given;
    size_t given_n;
    size_t given_cap;
    struct cons_snap_chunk *given_chunks;
    size_t given_chunks_n;
    size_t given_chunks_cap;
    struct cons_read_state *given_ready;
    size_t given_ready_cap;
    uint64_t *given_failed;
    size_t given_failed_cap;
    struct cons_snap_meta out_snap; /* Meta pointed to by SNAPSHOT msgs. */

    /* Follower read lease (flease.c): valid while ticks < flease_end. */
    uint32_t flease_seq;
    struct flease_sent flease_sent[FLEASE_RING];
    uint64_t flease_end;
    uint64_t flease_reads;
    /* Node sessions (flease.c): the send tick of the latest answer a leader
     * echoed, i.e. is known to have received (0: none yet). */
    uint64_t echoed_tick;
    /* Leader: promises to followers removed from the configuration, kept
     * until they end (no commit meanwhile). */
    struct {
        rfs_nodeid_t id;
        uint64_t until;
    } gone[CONS_MAX_SERVERS];
    unsigned n_gone;
};

/* ---- Small helpers (cons__ ones in raft.c) ------------------------------- */

static inline rfs_index_t last_index(const struct cons_node *n)
{
    return cons__log_last_index(&n->log);
}

static inline rfs_term_t last_term(const struct cons_node *n)
{
    return cons__log_last_term(&n->log);
}

static inline rfs_term_t term_at(const struct cons_node *n, rfs_index_t i)
{
    return cons__log_term_or0(&n->log, i);
}

static inline bool is_voter(const struct cons_node *n, rfs_nodeid_t id)
{
    const struct cons_server *s = cons_conf_get(&n->conf, id);
    return s != NULL && s->role == CONS_VOTER;
}

/* An observer the leader does not feed (cons_options.gossip_observers):
 * gossip brings it entries, the leader only finds out how far it got.
 * Except in two cases, fed as a learner is, up to a point:
 * - below the latest configuration entry (fed up to it): the
 *   configuration is what an observer's verifier trusts (the voters'
 *   keys), and a joining observer has none;
 * - more than gossip_behind_max entries behind the commit index and
 *   stalled (its answers showed no progress for gossip_stall_heartbeats
 *   heartbeats; fed until it is within, p->gossip_fed): its peers answer
 *   from their caches and voters from their logs, so an observer far
 *   behind is normally fed by them, but what it lacks may be in no peer's
 *   reach (compacted, or only in this leader's log). */
static inline bool fed_by_gossip(const struct cons_node *n,
                                 const struct progress *p)
{
    if (!n->o.gossip_observers || p->match < n->conf_index || p->gossip_fed) {
        return false;
    }
    const struct cons_server *s = cons_conf_get(&n->conf, p->id);
    return s != NULL && s->role == CONS_OBSERVER;
}

static inline unsigned quorum(const struct cons_node *n)
{
    return cons_conf_voters(&n->conf) / 2 + 1;
}

static inline struct progress *progress_get(struct cons_node *n, rfs_nodeid_t id)
{
    for (unsigned i = 0; i < n->n_prs; i++) {
        if (n->prs[i].id == id) {
            return &n->prs[i];
        }
    }
    return NULL;
}

/* Emit a trace line, prefixed with the term and role, through the host's
 * hook (if any). */
void cons__trace(struct cons_node *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Grow *arr (of *cap elements of size sz) to hold at least need. 0 or
 * -ENOMEM (*arr is unchanged). */
int cons__grow(void **arr, size_t *cap, size_t need, size_t sz);

/* ---- Log and commit (raft.c) --------------------------------------------- */

/* Append one entry to the local log (leader side), taking data; a CONF
 * entry is in force at once. *index (may be NULL) gets its index. 0 or
 * -ENOMEM (data is then still the caller's). */
int cons__append_local(struct cons_node *n, uint8_t type, void *data,
                       size_t len, rfs_index_t *index);
/* Follower: move the commit index up to c (never down, never past what is
 * held). */
void cons__follower_commit_to(struct cons_node *n, rfs_index_t c);

/* ---- Membership (conf.c) ------------------------------------------------- */

/* Put configuration c (at log index index) in force. */
void cons__conf_set(struct cons_node *n, const struct cons_conf *c,
                    rfs_index_t index);
/* A CONF entry entered the log: put it in force. */
void cons__conf_from_entry(struct cons_node *n, const struct cons_entry *e);
/* After a truncation: back to the latest configuration still held. */
void cons__conf_rollback(struct cons_node *n);
/* The configuration in force at index. 0 or RFS_EMALFORMED. */
int cons__conf_at(const struct cons_node *n, rfs_index_t index,
                  struct cons_conf *out);

/* ---- Snapshots (snapshot.c) ---------------------------------------------- */

/* Leader: a SNAPSHOT_RESP from the peer p tracks. */
void cons__leader_snapshot_resp(struct cons_node *n,
                                const struct cons_msg *m, struct progress *p);
/* Follower: one chunk of an image from the leader. */
void cons__handle_snapshot(struct cons_node *n, const struct cons_msg *m);
/* Install the image meta describes as the node's state: the log, commit
 * index and configuration restart at meta->index (a leader's last chunk,
 * cons_node_install_image). The caller queued the chunk that makes the
 * host install it. */
void cons__snapshot_install(struct cons_node *n,
                            const struct cons_snap_meta *meta);

/* ---- Output (raft.c) ----------------------------------------------------- */

/* A new outbox message of type to peer to, in the current term; NULL when
 * out of memory (the message is dropped: the protocol resends). */
struct outbox_msg *cons__ob_new(struct cons_node *n, uint8_t type,
                                rfs_nodeid_t to);
/* The same, for a message with no payload. */
struct cons_msg *cons__send(struct cons_node *n, uint8_t type,
                            rfs_nodeid_t to);

/* ---- progress.c: per-peer progress and replication ----------------------- */

/* Start tracking peer id from scratch (PROBE, next after our last). */
void cons__progress_reset(struct cons_node *n, struct progress *p,
                          rfs_nodeid_t id);
/* Make the progress set match the configuration. */
void cons__progress_sync(struct cons_node *n);
/* Forget the APPENDs in flight up to index (acknowledged). */
void cons__inflight_free_to(struct cons_node *n, struct progress *p,
                            rfs_index_t index);
/* Switch p to PROBE or REPLICATE from its match index. */
void cons__become_probe(struct progress *p);
void cons__become_replicate(struct progress *p);
/* Send the next snapshot chunks the window allows. */
void cons__send_snapshot_chunks(struct cons_node *n, struct progress *p);
/* Send p what it lacks (or, with empty, at least the commit index). */
void cons__send_append(struct cons_node *n, struct progress *p, bool empty);
void cons__broadcast_append(struct cons_node *n);
void cons__send_heartbeat(struct cons_node *n, struct progress *p);
void cons__broadcast_heartbeat(struct cons_node *n);
/* A gossip-fed observer's heartbeat: an APPEND with no entries (or the
 * snapshot it needs), once per heartbeat interval. */
void cons__send_gossip_probe(struct cons_node *n, struct progress *p);

/* ---- readindex.c: read index rounds, the lease --------------------------- */

/* Queue a read. 0 or -ENOMEM. */
int cons__queue_push(struct read_queue *q, const struct pending_read *r);
/* Tell the asker its read cannot be served (the host retries). */
void cons__read_failed(struct cons_node *n, const struct pending_read *r);
/* Fail every read in q and empty it. */
void cons__fail_queue(struct cons_node *n, struct read_queue *q);
/* Start a new read round (heartbeats carry it). */
void cons__new_round(struct cons_node *n);
/* Release the pending reads whose round a quorum acknowledged. */
void cons__release_reads(struct cons_node *n);
/* Move reads that waited for this term's first commit on to a round. */
void cons__reads_after_noop(struct cons_node *n);
/* Whether this node promised to ignore candidates for now (leader
 * stickiness, the boot hold): see readindex.c. */
bool cons__in_lease(const struct cons_node *n);
/* A READ_INDEX from a follower (or, from == 0, this node's host): leader
 * only. */
void cons__handle_read_index(struct cons_node *n, const struct cons_msg *m);

/* The last tick of this leader's lease (valid or not): see readindex.c. */
bool cons__lease_last_tick(const struct cons_node *n, uint64_t *last);

/* Leader: the send tick of the latest round a quorum acknowledged. */
bool cons__confirmed_tick(const struct cons_node *n, uint64_t *tick);

/* ---- flease.c: follower read leases ------------------------------------- */
/* Follower: the lease ends now (term, role or leader changed). */
void cons__flease_drop(struct cons_node *n);
/* Follower: whether it may answer a read from its own log now. */
bool cons__flease_valid(const struct cons_node *n);
/* Follower: number an answer r to the leader, noting when it left. */
void cons__flease_stamp(struct cons_node *n, struct cons_msg *r);
/* Follower: an APPEND or HEARTBEAT from the leader, maybe with a grant. */
void cons__flease_granted(struct cons_node *n, const struct cons_msg *m);
/* Leader: a follower's answer m; grant it a lease if it qualifies. */
void cons__flease_answer(struct cons_node *n, struct progress *p,
                         const struct cons_msg *m);
/* Leader: put p's grant in an outgoing APPEND or HEARTBEAT. */
void cons__flease_fill(struct progress *p, struct cons_msg *out);
/* Leader: the highest index it may commit up to c, given its promises. */
rfs_index_t cons__flease_cap(const struct cons_node *n, rfs_index_t c);
/* Leader: whether any promise still runs. */
bool cons__flease_running(const struct cons_node *n);
/* Leader: p leaves the configuration; keep its promise until it ends. */
void cons__flease_forget(struct cons_node *n, const struct progress *p);

#endif /* RAFTFS_CONSENSUS_CORE_CORE_I_H */
