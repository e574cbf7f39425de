/*
 * The Raft core: a deterministic state machine with no I/O.
 *
 * struct cons_node implements Raft as described in Ongaro's dissertation,
 * with the extensions a production cluster needs: PreVote and CheckQuorum,
 * pipelined and flow-controlled replication with fast conflict back-off,
 * ReadIndex reads (on followers too), leadership transfer, single-server
 * membership changes with learners, and log compaction with chunked snapshot
 * transfer.
 *
 * The core reads no clock, opens no file or socket and starts no thread. The
 * host drives it with a few calls (tick, step, propose, read_index, change,
 * transfer, persisted, snapshot calls) and, after each batch of calls, takes a
 * struct cons_update listing the work to do: hard state and entries to persist,
 * messages to send, committed entries to apply, read requests that are ready,
 * snapshot chunks to store. Because nothing else goes in or out, a test runs
 * whole clusters of cores in one process, and a seed replays any run.
 *
 * The host loop, in this order, for every update taken:
 *   1. Persist: the hard state (if changed), then the snapshot chunk or
 *      install (if any), then the entries (truncating the stored log from the
 *      first entry's index). Writes are applied in the order updates were taken;
 *      a later update's writes never overtake an earlier one's.
 *   2. Send: a message with wait_durable == false may be sent at once; one with
 *      wait_durable == true only once every write of this update (and of the
 *      updates before it) is durable. This lets a leader replicate in parallel
 *      with its own disk write (thesis 10.2.1) while a vote or an ack is never
 *      sent for state that could still be lost.
 *   3. When the writes are durable, call cons_node_persisted() with the tag
 *      of that update. The tag lets the core drop
 *      a completion that raced with a truncation (etcd-io/raft's ABA case).
 *   4. Apply the committed entries in order; they are all durable locally.
 *   5. Complete the read requests listed in reads once the local applied index
 *      reaches their index.
 *
 * Caveats:
 * - Not thread-safe: one thread owns a node (the host's loop thread).
 * - Pointers in a struct cons_update stay valid until the next call into the
 *   same node; the host copies what it keeps.
 * - Entry data given to the core is copied; the core never keeps a caller's
 *   pointer.
 */
#ifndef RAFTFS_CONSENSUS_CORE_CORE_H
#define RAFTFS_CONSENSUS_CORE_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/entry.h"
#include "../../common/types.h"

/* Longest peer address a configuration can carry, NUL included. */
#define CONS_ADDR_MAX 64
/* Most servers (voters, learners and observers) a configuration can hold. */
#define CONS_MAX_SERVERS 64
/* A member's public signing key (Ed25519, crypto_sign_PUBLICKEYBYTES). */
#define CONS_KEY_BYTES 32

enum cons_role {
    CONS_FOLLOWER = 0,
    CONS_PRECANDIDATE,
    CONS_CANDIDATE,
    CONS_LEADER,
};

/* enum cons_entry_type, struct cons_entry and struct cons_hard_state, the
 * log's records, are in common/entry.h: the store keeps them too. */

enum cons_server_role {
    CONS_VOTER = 1,
    CONS_LEARNER = 2, /* Receives the log, never votes or campaigns. */
    /* Receives the log like a learner, but for good: never promoted, and
     * never holds a follower read lease, since the leader would then wait
     * for its acks before committing (cons__flease_cap) and a slow or dead
     * observer would slow every commit. Observers are the hosts of a fleet
     * that only read the state (docs/design.md). */
    CONS_OBSERVER = 3,
};

/* "voter", "learner" or "observer" (status lines, /.raftfs/members). */
const char *cons_server_role_name(uint8_t role);

struct cons_server {
    rfs_nodeid_t id;
    uint8_t role; /* enum cons_server_role */
    char addr[CONS_ADDR_MAX];
    /* Its data folder's id (store_data_id), as the leader of the time saw
     * it first; 0: not recorded yet (or a configuration from a build that
     * did not record it). Peers refuse a node showing another id: its disk
     * was wiped or replaced (host_hello). */
    uint64_t data_id;
    /* Its Ed25519 public signing key (made by raftfs init, sent in its
     * hello), as the leader of the time saw it first; all zero: not
     * recorded yet. Recorded once, never replaced: the verifier of gossip
     * (consensus/gossip.h) takes voters' keys from here. */
    uint8_t key[CONS_KEY_BYTES];
};

/* Removed servers a configuration remembers by id and index. */
#define CONS_MAX_REMOVED 64

/* A removed server: its id may never join again (RAFT-PITFALLS 5). */
struct cons_removed {
    rfs_nodeid_t id;
    rfs_index_t index; /* Of the configuration entry that removed it. */
};

/*
 * A cluster configuration: the set of servers and their roles, and the ids
 * removed so far. A server that rejoined under a removed id with a wiped
 * disk would have forgotten its vote, so ids are never reused. The last
 * CONS_MAX_REMOVED removals are kept with their index; older ones are
 * folded into removed_upto: every id up to it that is not a member counts
 * as removed (conservative: it may refuse an id never used, never accept
 * a removed one).
 */
struct cons_conf {
    unsigned n;
    struct cons_server servers[CONS_MAX_SERVERS];
    unsigned n_removed;
    struct cons_removed removed[CONS_MAX_REMOVED]; /* Oldest first. */
    rfs_nodeid_t removed_upto;
};

/* What a snapshot stands for: every entry up to and including index. */
struct cons_snap_meta {
    rfs_index_t index;
    rfs_term_t term;
    struct cons_conf conf; /* The configuration in force at index. */
    uint64_t size;         /* Bytes of the host's snapshot image. */
};

enum cons_msg_type {
    CONS_MSG_APPEND = 1,       /* AppendEntries; doubles as a probe. */
    CONS_MSG_APPEND_RESP,
    CONS_MSG_VOTE,             /* RequestVote. */
    CONS_MSG_VOTE_RESP,
    CONS_MSG_PREVOTE,          /* PreVote (thesis 9.6). */
    CONS_MSG_PREVOTE_RESP,
    CONS_MSG_HEARTBEAT,        /* Commit index + read round; no entries. */
    CONS_MSG_HEARTBEAT_RESP,
    CONS_MSG_SNAPSHOT,         /* One chunk of InstallSnapshot. */
    CONS_MSG_SNAPSHOT_RESP,
    CONS_MSG_TIMEOUT_NOW,      /* Leadership transfer: campaign now. */
    CONS_MSG_PROPOSE,          /* A follower forwarding proposals. */
    CONS_MSG_READ_INDEX,       /* A follower asking for a read index. */
    CONS_MSG_READ_INDEX_RESP,
    CONS_MSG_TYPE_MAX,
};

/*
 * One message. Fields are used per type as noted; the rest are zero. When the
 * core hands a message out, entries and data point into core memory (valid
 * until the next call); when the host steps a message in, the core copies what
 * it keeps.
 */
struct cons_msg {
    uint8_t type; /* enum cons_msg_type */
    rfs_nodeid_t from;
    rfs_nodeid_t to;
    rfs_term_t term; /* Sender's term; 0 only for PROPOSE/READ_INDEX(_RESP). */

    /* APPEND: prev_index/prev_term, entries, commit.
     * VOTE/PREVOTE: last log position in prev_index/prev_term; transfer flag.
     * HEARTBEAT: commit, round. SNAPSHOT: snap, offset, data, last. */
    rfs_index_t prev_index;
    rfs_term_t prev_term;
    rfs_index_t commit;
    unsigned n_entries;
    struct cons_entry *entries;

    /* APPEND_RESP: index = last index matched on success; on reject, index =
     * the rejected prev_index and hint_index/hint_term = where to retry. */
    bool reject;
    rfs_index_t index;
    rfs_index_t hint_index;
    rfs_term_t hint_term;

    uint64_t round;  /* HEARTBEAT(_RESP): read-confirmation round. */
    /* Follower read leases (docs/core.md). APPEND_RESP and HEARTBEAT_RESP:
     * lease_seq numbers the answer (0: none; CONS_LEASE_SEQ_MASK bits).
     * APPEND and HEARTBEAT: the leader grants lease_ticks ticks counted
     * from when the follower sent answer lease_seq (0: no grant). */
    uint32_t lease_seq;
    uint8_t lease_ticks;
    uint64_t ctx;    /* READ_INDEX(_RESP): the requester's id. */
    bool transfer;   /* VOTE/PREVOTE: campaign started by TIMEOUT_NOW. */
    uint8_t hops;    /* PROPOSE: forwards so far (bounded, no loops). */

    /* SNAPSHOT: chunk [offset, offset + data.len) of the image described by
     * snap; last is set on the final chunk. The core never holds image bytes:
     * a leader's outgoing chunk has data.base == NULL and data.len set, and the
     * host fills it from its image before sending. SNAPSHOT_RESP: offset =
     * bytes the follower holds; reject = restart from offset. */
    struct cons_snap_meta *snap;
    uint64_t offset;
    struct rfs_buf data;
    bool last;
};

/* The bits of lease_seq a message carries (the rest of its u32 on the wire
 * holds lease_ticks). */
#define CONS_LEASE_SEQ_MASK 0xffffffu

/* An outgoing message and whether it must wait for this update's writes. */
struct cons_out_msg {
    struct cons_msg msg;
    bool wait_durable;
};

/* A read request that is ready once applied index >= index. */
struct cons_read_state {
    uint64_t ctx;
    rfs_index_t index;
};

/* A snapshot chunk the host must store (follower side). */
struct cons_snap_chunk {
    struct cons_snap_meta meta;
    uint64_t offset;
    struct rfs_buf data; /* Borrowed until the next call. */
    bool last;           /* The image is complete: install it. */
    /* The image was fetched from a peer (cons_node_install_image): its
     * bytes are in the host's fetch file, not in the file a leader's
     * chunks fill, so that the two transfers never write one file. */
    bool fetched;
};

/*
 * Identifies one update's writes. seq orders updates; (term, index) is the
 * last log position when the update was taken, so that a completion racing
 * with a truncation is recognised as stale.
 */
struct cons_persist_tag {
    uint64_t seq;
    rfs_term_t term;
    rfs_index_t index;
};

/*
 * The work the core asks of the host. See the host loop in the file comment.
 * All pointers are valid until the next call into the node.
 */
struct cons_update {
    bool hs_changed;
    struct cons_hard_state hs;

    /* Snapshot chunks to store, in order; after a chunk with last set,
     * install the image as the new state, discard the whole stored log and
     * record chunk.meta as the snapshot (the log restarts after its index). */
    unsigned n_chunks;
    const struct cons_snap_chunk *chunks;

    /* Entries to persist; the stored log is truncated from entries[0].index
     * first. */
    unsigned n_entries;
    const struct cons_entry *entries;

    /* Pass tag to cons_node_persisted() once every write above is durable.
     * needs_persist is false when the update has nothing to write. */
    bool needs_persist;
    struct cons_persist_tag tag;

    unsigned n_msgs;
    const struct cons_out_msg *msgs;

    /* Committed, locally durable entries to apply, in index order. */
    unsigned n_committed;
    const struct cons_entry *committed;

    unsigned n_reads;
    const struct cons_read_state *reads;
    /* Read requests that failed (leadership lost before confirmation); the
     * host may retry them under a fresh ctx. */
    unsigned n_reads_failed;
    const uint64_t *reads_failed;

    /* The role or the known leader changed since the last update, for the
     * host's logs and waiters (a follower learning its new leader counts:
     * proposals held back while none was known can go now). */
    bool role_changed;
    enum cons_role role;
    rfs_nodeid_t leader;
};

/* Tunables. Times are in ticks; the host chooses the tick length. */
struct cons_options {
    rfs_nodeid_t id;
    unsigned election_ticks;    /* Base election timeout (>= 2 heartbeats). */
    unsigned heartbeat_ticks;   /* Leader heartbeat interval. */
    bool pre_vote;              /* PreVote (default true). */
    bool check_quorum;          /* CheckQuorum + leader stickiness. */
    /* Leader lease reads: a leader that a quorum answered within the last
     * election timeout (less a margin) answers ReadIndex at once, without a
     * heartbeat round. Needs check_quorum, and ticks that follow real time
     * at rates within about 10% of each other: the host catches up missed
     * ticks before it steps anything (docs/core.md). Off by default. */
    bool lease_reads;
    /* Ignore candidates for the first election timeout after start, as
     * lease_reads does. A cluster whose members differ in lease_reads must
     * set this on all of them: any leader's lease counts on every voter. */
    bool boot_hold;
    /* Follower read leases (docs/core.md): a leader inside its lease grants
     * caught-up followers a read lease and commits nothing a lease holder
     * has not acknowledged; a follower inside its lease answers
     * cons_node_read_index at once, at its last log index. Needs
     * lease_reads on the leader; a node with it off asks for none. */
    bool follower_leases;
    /* Observers are fed by gossip (docs/design.md, "Observers fed by
     * gossip"), not by this node as leader: it sends them no entries and
     * no commit-only APPENDs, only one APPEND without entries per
     * heartbeat interval, whose answer says how far gossip brought them
     * (their match), and the snapshot one needs if that point was
     * compacted away. An observer whose match is below the latest
     * configuration entry is fed as a learner is, up to it: that entry
     * holds the voters' keys its verifier trusts, so a joining observer
     * could not check anything before it has it. So is one more than
     * gossip_behind_max entries behind the commit index whose answers
     * showed no progress for gossip_stall_heartbeats heartbeats, until it
     * is within: peers answer pulls from their caches and voters from
     * their logs, but what it lacks may be in no peer's reach. Observers
     * take entries with cons_node_commit_proven.
     * Every member of a cluster must agree on it: an observer that waits
     * for gossip under a leader that feeds it gets entries twice
     * (harmless); one that waits for the leader's entries under a leader
     * that does not gets none. Off by default. */
    bool gossip_observers;
    /* See gossip_observers (default 4096, spread.h's cache of entries kept
     * for pulls). */
    uint64_t gossip_behind_max;
    /* See gossip_observers (default 100: 4 s at the node's 40 ms
     * heartbeat, four of an observer's digest periods, in which it pulls
     * from a voter's log; 2 s was too short on a loaded machine). */
    unsigned gossip_stall_heartbeats;
    /* With gossip_observers: peers serve images (docs/protocol.md,
     * "Observers: images from peers"), so an observer whose match was
     * compacted away is probed at the log's base, and gets this node's
     * snapshot only once it is more than gossip_behind_max behind and
     * its answers showed no progress for gossip_stall_heartbeats (as any
     * far observer), not at once: it fetches an image from a peer
     * meanwhile, and one within gossip_behind_max is fed by its peers'
     * caches. Off: the snapshot goes at once. */
    bool gossip_images;
    unsigned max_inflight;      /* Unacked APPENDs per follower. */
    size_t max_msg_bytes;       /* Payload bytes per APPEND (soft: >= 1 entry). */
    size_t max_uncommitted;     /* Leader refuses proposals past this. */
    size_t snap_chunk_bytes;    /* Bytes per SNAPSHOT chunk. */
    uint64_t seed;              /* Seeds the election timeout PRNG. */
    /* Trace hook: one line per protocol decision. May be NULL. */
    void (*trace)(void *data, rfs_nodeid_t id, const char *line);
    void *trace_data;
};

/* Fill opts with defaults for node id. */
void cons_options_default(struct cons_options *opts, rfs_nodeid_t id);

/*
 * What the host loaded from disk at start. The core copies everything.
 * entries are the stored log after snap.index, in order, contiguous.
 * applied is the state machine's durable applied index (>= snap.index).
 * A fresh node that will join an existing cluster loads nothing (all zero);
 * a node that bootstraps a new cluster loads the entry made by
 * cons_bootstrap_entry().
 */
struct cons_load {
    struct cons_hard_state hs;
    struct cons_snap_meta snap;
    unsigned n_entries;
    const struct cons_entry *entries;
    rfs_index_t applied;
};

struct cons_node; /* Opaque. */

/*
 * Create a node from options and loaded state. On success *out is set and
 * the caller frees it with cons_node_free(). Returns 0, -ENOMEM, or
 * RFS_ECORRUPT if the loaded state is inconsistent (gaps, terms going down).
 */
int cons_node_new(const struct cons_options *opts, const struct cons_load *load,
                  struct cons_node **out);
void cons_node_free(struct cons_node *n);

/*
 * The first log entry of a new cluster: index 1, term 1, the configuration
 * conf. Every founding member persists the same entry, so their logs agree.
 * data.base is allocated with rfs_malloc; the caller frees it.
 */
int cons_bootstrap_entry(const struct cons_conf *conf, struct cons_entry *out);

/* Advance logical time by one tick: elections, heartbeats, quorum checks. */
void cons_node_tick(struct cons_node *n);

/*
 * Feed a received message. Messages from unknown or removed peers, from stale
 * terms, or duplicated and reordered by the network are handled as Raft
 * prescribes (ignored or answered); none can corrupt the node. Returns 0, or
 * -ENOMEM (the message is dropped; the protocol retransmits).
 */
int cons_node_step(struct cons_node *n, const struct cons_msg *m);

/*
 * Propose a command. On the leader it is appended at once and *index (if not
 * NULL) gets its index. On a follower that knows a leader it is forwarded there
 * (*index = 0): the caller recognises the command when it is applied, by an id
 * inside data, never by index. data is copied.
 * Returns 0, RFS_ENOLEADER (no leader known: the caller waits and retries),
 * RFS_ETRANSFER (leadership is being handed over), RFS_ETOOBIG (the leader's
 * uncommitted log is full: quorum is probably lost), -ENOMEM.
 * A forwarded proposal can still be lost (the leader changes meanwhile): the
 * caller retries with the same id inside data, and the state machine applies
 * it once.
 */
int cons_node_propose(struct cons_node *n, const struct rfs_buf *data,
                      rfs_index_t *index);

/*
 * Observers fed by gossip: entries e[0..count), in log order, that a signed
 * commit point proved committed (consensus/gossip.h), whoever sent them.
 * Each is appended unless the log already holds it (same index and term;
 * an uncommitted entry of another term is truncated with everything after
 * it), and the commit index moves to the last one, so they are persisted,
 * then applied as any committed entry. An entry of a newer term than this
 * node's raises its term (the hard state is written with the entries), as
 * a message of that term would. Entries at or below the snapshot are
 * skipped. Not on a leader. 0; -EINVAL (a leader, or entries that are not
 * contiguous or start past the log's end); RFS_ECORRUPT (an entry at or
 * below the commit index disagrees with the log, or a configuration entry
 * does not decode: this log and the proven one differ); -ENOMEM.
 */
int cons_node_commit_proven(struct cons_node *n, const struct cons_entry *e,
                            unsigned count);

/*
 * Observers fed by gossip: an image of the state at meta (index, term,
 * size, configuration), vouched for by a voter's signed statement and
 * fetched from a peer (consensus/gimage.h), whose bytes the host already
 * wrote to its receiving file. Installed as a leader's snapshot is: the
 * update's chunks hold one empty chunk at offset meta->size with last set
 * (the host installs the file it holds, discards the stored log and
 * records meta), and the log, commit index and configuration restart at
 * meta->index. Not on a voter (a leader or a follower voter: the reset
 * would drop entries it acknowledged). 0; -EINVAL (a voter, or size 0);
 * -EALREADY (meta->index is at or below the commit index: nothing to
 * gain, nothing done); -ENOMEM.
 */
int cons_node_install_image(struct cons_node *n,
                            const struct cons_snap_meta *meta);

/*
 * Ask for a linearizable read point. ctx must be unique per attempt. The
 * answer comes later in an update's reads (or reads_failed). A follower asks
 * its leader; that request can be lost, so the caller retries on a timeout
 * with a fresh ctx. A leader holding a lease (lease_reads) answers in the
 * next update, without a round. Returns 0, RFS_ENOLEADER, -ENOMEM.
 */
int cons_node_read_index(struct cons_node *n, uint64_t ctx);

/*
 * The lease, for a host that answers reads off its loop thread: the tick
 * count (as counted by cons_node_tick) at which this leader's lease ends, or
 * 0 when it holds none. Until then, reading a state that includes this
 * node's commit index (as of this call) is linearizable. It only moves when
 * the node is stepped or ticked.
 */
uint64_t cons_node_lease_end(const struct cons_node *n);
/* The index a leased read must wait for this node to apply: the commit
 * index on a leader, the last log index on a follower (a follower holding
 * a lease has every entry that may have committed). */
rfs_index_t cons_node_lease_index(const struct cons_node *n);
/* The index of the last entry in this node's log, committed or not. */
rfs_index_t cons_node_last_index(const struct cons_node *n);
/*
 * Node sessions (docs/core.md): the last tick (this node's count) at which
 * this node sent a message that a leader is known to have received: for a
 * follower, the send tick of the latest answer a leader echoed back; for a
 * leader, also the send tick of its latest round a quorum acknowledged.
 * Never moved by what this node merely received. false (and *tick 0) while
 * there is none yet.
 */
bool cons_node_session_base(const struct cons_node *n, uint64_t *tick);

enum cons_change_type {
    CONS_ADD_LEARNER = 1, /* New server, non-voting. */
    CONS_PROMOTE,         /* Learner becomes voter. */
    CONS_DEMOTE,          /* Voter becomes learner. */
    CONS_REMOVE,          /* Server leaves. */
    CONS_ADD_OBSERVER,    /* New server, non-voting for good. */
};

/*
 * Propose a one-server configuration change (leader only). Safe by the
 * thesis' rule plus its errata: at most one uncommitted configuration, and
 * none before this leader committed an entry of its own term.
 * Returns 0 (appended, *index set), RFS_ENOTLEADER, RFS_EBUSY (a change or
 * this term's first commit is pending: retry later), RFS_EBADCONF (no such
 * server, already a member, would leave no voter, bad address, promoting
 * or demoting an observer),
 * RFS_EIDREMOVED (adding an id that was removed: ids are never reused, see
 * cons_conf_removed()), -ENOMEM.
 */
int cons_node_change(struct cons_node *n, enum cons_change_type type,
                     rfs_nodeid_t id, const char *addr, rfs_index_t *index);
/* A member's data folder id, to record (cons_node_record_data_ids). */
struct cons_data_id {
    rfs_nodeid_t id;
    uint64_t data_id;
};

/*
 * Propose recording the data folder ids of k members (leader only), in one
 * configuration change under the same rules as cons_node_change (no vote
 * or role moves): one entry for all, so a cluster founded together binds
 * every folder after a single commit. Only ids not recorded yet are set: a
 * recorded one never changes, since a different folder under the same node
 * id is a wiped node. Returns 0 (appended, *index set), RFS_ENOTLEADER,
 * RFS_EBUSY, RFS_EBADCONF (k 0, not a member, data id 0, or one already
 * recorded), -ENOMEM.
 */
int cons_node_record_data_ids(struct cons_node *n,
                              const struct cons_data_id *ids, unsigned k,
                              rfs_index_t *index);

/* A member's public signing key, to record (cons_node_record_keys). */
struct cons_key {
    rfs_nodeid_t id;
    uint8_t key[CONS_KEY_BYTES];
};

/*
 * Propose recording the public signing keys of k members (leader only),
 * in one configuration change, as cons_node_record_data_ids does for data
 * folder ids: only keys not recorded yet are set, a recorded one never
 * changes. Returns 0 (appended, *index set), RFS_ENOTLEADER, RFS_EBUSY,
 * RFS_EBADCONF (k 0, not a member, an all-zero key, or one already
 * recorded), -ENOMEM.
 */
int cons_node_record_keys(struct cons_node *n, const struct cons_key *keys,
                          unsigned k, rfs_index_t *index);

/*
 * Hand leadership to voter `to` (0: the most up-to-date voter). The target is
 * caught up, then sent TIMEOUT_NOW; proposals are refused meanwhile. The
 * transfer is abandoned after one election timeout.
 * Returns 0, RFS_ENOTLEADER, RFS_EBADCONF (not a voter, or self).
 */
int cons_node_transfer(struct cons_node *n, rfs_nodeid_t to);

/*
 * The writes of the update tagged tag (and so of every update before it) are
 * durable. A stale tag (the log was truncated or rewritten since) marks no
 * entry durable.
 */
void cons_node_persisted(struct cons_node *n,
                         const struct cons_persist_tag *tag);

/*
 * The host took a snapshot of its state machine at applied index `index`
 * (<= the last index the core handed out to apply) whose image is `size`
 * bytes, and the core may drop entries up to index - trailing (keeping a few
 * lets slightly lagging followers catch up from the log). *meta (may be NULL)
 * receives the snapshot metadata to store with the image.
 * Returns 0, -EINVAL (size 0), RFS_EUNAVAIL (index not handed out to apply
 * yet), RFS_ECOMPACTED (older than the current snapshot).
 */
int cons_node_snapshot_taken(struct cons_node *n, rfs_index_t index,
                             uint64_t size, rfs_index_t trailing,
                             struct cons_snap_meta *meta);

/* The host could not read the chunk for peer `to`: restart its transfer. */
void cons_node_snapshot_failed(struct cons_node *n, rfs_nodeid_t to);

/* Is there anything for cons_node_take_update() to return? */
bool cons_node_has_update(const struct cons_node *n);

/*
 * Take the accumulated work. The update and everything it points to stays
 * valid until the next call into n. The core assumes the host does what the
 * update lists, in the order of the file comment.
 */
void cons_node_take_update(struct cons_node *n, struct cons_update *u);

/* Introspection, for hosts, status pages and tests. */
struct cons_status {
    rfs_nodeid_t id;
    enum cons_role role;
    rfs_term_t term;
    rfs_nodeid_t vote;
    rfs_nodeid_t leader;
    rfs_index_t first_index; /* First entry held in memory. */
    rfs_index_t last_index;
    rfs_term_t last_term;
    rfs_index_t commit;
    rfs_index_t stable;      /* Highest index known durable locally. */
    rfs_index_t handed_out;  /* Highest index given to the host to apply. */
    rfs_index_t snap_index;
    rfs_index_t conf_index;  /* Index of the configuration in force. */
    rfs_nodeid_t transferee; /* Leadership transfer target, or 0. */
    size_t uncommitted_bytes;
    uint64_t leased_reads;   /* Reads a follower answered from its lease. */
};

void cons_node_status(const struct cons_node *n, struct cons_status *st);

/* The entry at index if the node holds it in memory, else NULL. Valid until
 * the next call into n. */
const struct cons_entry *cons_node_entry(const struct cons_node *n,
                                         rfs_index_t index);

/* The configuration in force (the latest in the log, committed or not). */
const struct cons_conf *cons_node_conf(const struct cons_node *n);

enum cons_progress_state {
    CONS_PROGRESS_PROBE = 0,
    CONS_PROGRESS_REPLICATE,
    CONS_PROGRESS_SNAPSHOT,
};

/* The leader's view of one peer's replication. */
struct cons_progress {
    rfs_index_t match;
    rfs_index_t next;
    enum cons_progress_state state;
    bool recent_active;
    unsigned inflight;
};

/* Leader only: fill *p for peer id. Returns 0, RFS_ENOTLEADER, RFS_EBADCONF. */
int cons_node_progress(const struct cons_node *n, rfs_nodeid_t id,
                       struct cons_progress *p);

/* Configuration helpers. */
const struct cons_server *cons_conf_get(const struct cons_conf *c,
                                        rfs_nodeid_t id);
unsigned cons_conf_voters(const struct cons_conf *c);
/* Whether id was removed from the cluster: true with *index set to the
 * entry that removed it, or 0 when it is only covered by removed_upto. */
bool cons_conf_removed(const struct cons_conf *c, rfs_nodeid_t id,
                       rfs_index_t *index);
/* Record id as removed by the entry at index (folding the oldest record
 * into removed_upto when the list is full). */
void cons_conf_add_removed(struct cons_conf *c, rfs_nodeid_t id,
                           rfs_index_t index);
/* Encode/decode a configuration for a CONF entry. Decode returns 0 or
 * RFS_EMALFORMED; encode allocates out->base with rfs_malloc. */
int cons_conf_encode(const struct cons_conf *c, struct rfs_buf *out);
int cons_conf_decode(const struct rfs_buf *in, struct cons_conf *c);

const char *cons_role_name(enum cons_role role);
const char *cons_msg_type_name(int type);

#endif /* RAFTFS_CONSENSUS_CORE_CORE_H */
