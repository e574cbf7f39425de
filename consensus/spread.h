/*
 * spread: which committed entries go to which observer, and when (issue 16,
 * step 3: dissemination by push and pull; docs/design.md, "Observers fed by
 * gossip").
 *
 * The leader replicates to voters only. Each voter, as it applies, signs a
 * commit point (gossip.h) at most every point_ms and pushes the entries
 * applied since its last point, with that point, to `fanout` observers
 * chosen at random among those not known to hold them. An observer that
 * releases a run (its verifier proved it) pushes it on, once, with the
 * point that proved it, to `fanout` peers not known to hold it, never back
 * to its sender. Push alone loses runs to lost messages and to the random
 * choice; every digest_ms each observer tells one random peer what it holds
 * (DIGEST: applied, proven), and the two sides pull what the other has
 * (PULL: after, max; answered by a PUSH from the answerer's cache). So the
 * leader sends about fanout copies of each entry, whatever the number of
 * observers, and the rest of the fleet feeds itself.
 *
 * Contract:
 * - Pure: no I/O, no clock (the caller passes now_ms), no threads; its
 *   random choices come from the seed, so a simulation replays exactly.
 * - One struct spread per node, used from one thread.
 * - Outgoing messages are encoded at once (gossip_msg_encode) and queued:
 *   spread_outbox lists them, the caller sends and then clears them.
 * - An observer's spread owns its verifier: what it receives from anyone is
 *   released by spread_take only once proven, in log order; a refusal is
 *   counted, kept for spread_refusal, and nothing refused is pushed on.
 * - A voter trusts what its host applied (it applies only committed
 *   entries) and computes the chain itself from the hash it started at, so
 *   its points match its store's chain (store_chain_next).
 * - Only the last `cache` entries are kept to answer pulls. A voter given
 *   log_entry answers older ones from its log, signing a point at the
 *   answer's end (it keeps the chain hash every 256 entries to compute
 *   it); an observer cannot prove old entries and does not. A peer asking
 *   for what nobody can answer gets nothing and is counted in
 *   stats.too_old; it needs a snapshot (not this module's job).
 * - Pushes and digests go only to peers marked reachable
 *   (spread_set_reachable).
 * - Nothing is pushed to a voter (Raft feeds them); a peer the verifier
 *   refused is not listened to for 10 digest periods; what peers claim to
 *   hold only steers pushes and pulls, never what counts as known.
 * - A failed allocation while releasing loses an entry the verifier let
 *   go: every later call returns -ENOMEM, and the caller must start the
 *   observer's feed again from its store.
 */
#ifndef RAFTFS_CONSENSUS_SPREAD_H
#define RAFTFS_CONSENSUS_SPREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip.h"

struct spread_options {
    rfs_nodeid_t self;
    bool voter;        /* Signs points and pushes; else an observer. */
    unsigned fanout;   /* Peers a new run goes to (0: 3). */
    unsigned cache;    /* Recent entries kept for pulls (0: 4096). */
    uint32_t pull_max; /* Entries per answer (0: 512; at most
                        * GOSSIP_MSG_ENTRIES_MAX). */
    uint64_t digest_ms; /* An observer's digest period (0: 1000). */
    uint64_t point_ms;  /* A voter signs at most this often (0: 20). */
    uint64_t seed;
    /* Voters: the committed entry at index from this node's log (its Raft
     * log: what it persisted and has not compacted), or NULL. With it, a
     * pull below the cache is answered from the log (see the contract).
     * Called only for indexes at or below the applied one. */
    const struct cons_entry *(*log_entry)(void *arg, rfs_index_t index);
    void *log_arg;
};

struct spread_stats {
    uint64_t msgs_out, bytes_out;
    uint64_t entries_out;  /* Entries carried by this node's pushes. */
    uint64_t points_signed;
    uint64_t pulls_answered;
    uint64_t too_old;      /* Pulls reaching below what can be answered. */
    uint64_t from_log;     /* Entries answered from the log (voters). */
    uint64_t refusals;     /* Verifier refusals (observers). */
    /* Answers to DIGESTs and PULLs not sent, or cut short, because the
     * asker spent its budget (spread.c, ANSWER_RATE). */
    uint64_t answers_refused, answers_cut;
};

/* An encoded message for peer `to`. */
struct spread_out {
    rfs_nodeid_t to;
    struct rfs_buf bytes;
};

struct spread;

/* A node that has applied up to `applied`, whose chain hash there is hash.
 * NULL on -ENOMEM or bad options (fanout or pull_max out of range). */
struct spread *spread_new(const struct spread_options *o, rfs_index_t applied,
                          const uint8_t hash[GOSSIP_HASH_BYTES]);
void spread_free(struct spread *s);

/* The peers this node gossips with (replaces the list; self is skipped).
 * A node that hears from a peer not on it adds it. 0 or -ENOMEM. */
int spread_set_peers(struct spread *s, const rfs_nodeid_t *ids, unsigned n);
/* Whether the transport holds a connection to peer id now (a peer not on
 * the list is ignored; a new one counts as reachable). Pushes and digests
 * go only to reachable peers, so a peer this node cannot reach (a
 * firewall, a peer down) does not take a share of the fanout; answers go
 * back to whoever asked. The caller refreshes it as connections come and
 * go. */
void spread_set_reachable(struct spread *s, rfs_nodeid_t id, bool up);
/* Observers: the voters whose points count. 0 or -ENOMEM. */
int spread_set_voters(struct spread *s, const struct gossip_key *keys,
                      unsigned n);
/* Voters: the secret half of this node's signing key. */
void spread_set_key(struct spread *s, const uint8_t sk[GOSSIP_SK_BYTES]);

/* Voters: entries e[0..n) were applied here, in order, right after the
 * last ones. Pushes once point_ms passed since the last point (else at a
 * later spread_tick). 0, -EINVAL (a gap or a repeat), -ENOMEM. */
int spread_applied(struct spread *s, const struct cons_entry *e, unsigned n,
                   uint64_t now_ms);

/* A message decoded from peer `from` (gossip_msg_decode). 0 or -ENOMEM
 * (then for good, see above). */
int spread_recv(struct spread *s, rfs_nodeid_t from,
                const struct gossip_msg *m, uint64_t now_ms);

/* Timers: a voter's overdue point, an observer's digest. 0 or -ENOMEM. */
int spread_tick(struct spread *s, uint64_t now_ms);

/* Observers: the next proven entry, in log order (its data the caller's,
 * rfs_free). false when none. */
bool spread_take(struct spread *s, struct cons_entry *e);

/* Messages queued since the last clear. */
const struct spread_out *spread_outbox(const struct spread *s, unsigned *n);
void spread_outbox_clear(struct spread *s);

/* Applied index and its hash (an observer: what the verifier released). */
rfs_index_t spread_applied_index(const struct spread *s,
                                 uint8_t hash[GOSSIP_HASH_BYTES]);
/* The highest index proven: applied, or a valid point held above it (an
 * observer's known lag is this minus applied). Claims count for nothing. */
rfs_index_t spread_known_head(const struct spread *s);
/* The last refusal's text ("" if none). */
const char *spread_refusal(const struct spread *s);
void spread_get_stats(const struct spread *s, struct spread_stats *st);

#endif /* RAFTFS_CONSENSUS_SPREAD_H */
