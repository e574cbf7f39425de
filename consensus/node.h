/*
 * node: a running raftfs node. The host driver (host.h: the core and the
 * ordering around it), the store, the snapshot files and the peer transport,
 * driven by one libuv loop thread.
 *
 * The loop thread owns the driver, the peer connections and the timers; no
 * other thread touches them. Synced log writes, snapshot images and chunk
 * reads run in libuv's threadpool; committed entries are applied in order on
 * the loop thread.
 *
 * Other threads (FUSE workers, tests) submit commands and read barriers with
 * node_submit() and node_read_barrier(), and get a callback once the command
 * is applied on this node (with its result) or the barrier is passed, or
 * with an error. A command is identified by (this node, boot id, sequence
 * number), so one retried after a leader change is applied once.
 *
 * Which thread runs a callback:
 * - the loop thread, normally (so it must not block);
 * - the caller's own thread, before the call returns, in two cases: a read
 *   barrier passed at once on a leader inside its lease
 *   (node_read_barrier), and any request submitted after node_stop() began
 *   (RFS_ESHUTDOWN).
 *
 * Caveats:
 * - Every callback of a call that returned 0 runs exactly once: with its
 *   result, an error, or RFS_ESHUTDOWN if the node stops first (on the loop
 *   thread while it winds down, or on the caller's thread as above).
 * - A node removed from the cluster answers every new request with
 *   RFS_EREMOVED (and fails those in flight) until a leader replicates to
 *   it again (it was added back).
 */
#ifndef RAFTFS_CONSENSUS_NODE_H
#define RAFTFS_CONSENSUS_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/log.h"
#include "../common/types.h"
#include "../store/store.h"
#include "core/core.h"
#include "host.h"


struct node_options {
    rfs_nodeid_t id;
    const char *dir;            /* Data folder: db/, secret, snapshots/. */
    const char *listen;         /* "host:port" for peers. */
    unsigned tick_ms;           /* Logical clock (default 20). */
    unsigned election_ticks;    /* Default 10. */
    unsigned heartbeat_ticks;   /* Default 2. */
    unsigned commit_timeout_ms; /* Default 30000. */
    /* Leader lease reads (default on): see cons_options.lease_reads. The
     * node keeps its ticks on CLOCK_BOOTTIME, so a paused or suspended
     * process learns at once that its lease ran out. */
    bool lease_reads;
    /* Node session TTL (docs/node.md): 0 (the default here) opens none;
     * the raftfs mount's session_ttl= sets it (10 s by default). */
    unsigned session_ttl_ms;
    uint64_t snapshot_entries;  /* Snapshot after this many applied... */
    uint64_t snapshot_bytes;    /* ...or this many bytes of entries. */
    uint64_t history_entries;   /* store_options.history_entries (0: the
                                 * store's default). */
    /* Observers fed by gossip (docs/design.md, "Observers fed by gossip";
     * the raftfs mount's gossip=on). As a voter this node signs commit
     * points and pushes what it applies to observers; as an observer it
     * applies what gossip brings and a signed point proves; as leader it
     * sends observers no entries (cons_options.gossip_observers). Every
     * member of a cluster must agree on it. Off by default. */
    bool gossip;
    /* With gossip: the recent entries each node keeps to answer pulls
     * (spread_options.cache; 0: 4096, at least 512), and how far behind
     * an observer counts as far (cons_options.gossip_behind_max). Tests
     * make it small to cut an observer off for longer than it lasts. */
    unsigned gossip_cache;
    /* If set and the store is empty: found a cluster with this
     * configuration (every founder must use the same one). */
    const struct cons_conf *bootstrap;
    /* If set: called on the loop thread after every applied command, from
     * any proposer (own: this node process submitted it), so a host can
     * invalidate caches. After a snapshot replaced the whole state it is
     * called once with c == NULL and r == NULL. Must not block. */
    void (*on_apply)(void *data, rfs_index_t index, const struct store_cmd *c,
                     const struct store_result *r, bool own);
    /* If set: called on the loop thread with the entries of every update
     * as they enter this node's log (proposed here or received), and with
     * reset set when a snapshot is about to replace the whole state or this
     * leader hands its leadership over (TimeoutNow: its lease no longer
     * holds the next leader back); after
     * node_cache_ttl_ns() counts them, before this node persists,
     * acknowledges or applies them. What a host cached on the strength of
     * the lease (node_cache_ttl_ns) and these entries may change must be
     * dropped here, synchronously. Must not block. */
    void (*on_log)(void *data, const struct cons_entry *e, unsigned n,
                   bool reset);
    /* If set: called on the loop thread at every tick (tick_ns apart), so
     * a host can drop what it cached under the lease before the lease's
     * end. */
    void (*on_tick)(void *data, uint64_t tick_ns);
    void *apply_data;
};

void node_options_default(struct node_options *o);

struct node;

/* Open the store, start the loop thread and listen. 0 or a negative code
 * with errmsg (RFS_ERRMSG_SZ) naming the file or address concerned. */
int node_start(const struct node_options *o, struct node **out,
               char *errmsg);
/* Stop: pending callbacks run with RFS_ESHUTDOWN; then close everything. */
void node_stop(struct node *n);

/* Completion: err is 0 or a negative code; r is the apply result (valid
 * only when err == 0; r->err is the operation's own errno). */
typedef void (*node_cb)(void *arg, int err, const struct store_result *r);

/*
 * Submit a command (any thread). The node fills client, boot, seq,
 * first_outstanding and time_ns; strings and data are copied. cb runs once:
 * with 0 once applied here; -ETIMEDOUT after commit_timeout_ms (the log says
 * why), also for what was in flight when this node learned it was removed;
 * RFS_EREMOVED (removed: refused before it is proposed); -EIO (this node's
 * storage failed, now or earlier: its outcome is unknown); -EINVAL or
 * -ENOMEM (store_cmd_encode refused it); RFS_ESHUTDOWN. Returns 0 or -ENOMEM
 * (cb then never runs).
 */
int node_submit(struct node *n, const struct store_cmd *cmd, node_cb cb,
                void *arg);

/* Linearizable read barrier (any thread): cb runs once this node applied
 * everything committed before the call, on the loop thread; except that a
 * leader inside its lease that has applied its commit index runs cb at
 * once, on the calling thread, before this returns (see the file comment).
 * Same errors as node_submit; and with NODE_READ_LEADERLESS_FAILS,
 * RFS_ENOLEADER as soon as this node has no leader to ask (none known, or
 * the leader it asked stepped down) instead of waiting up to
 * commit_timeout for one: for callers with a local answer to give then. */
enum { NODE_READ_LEADERLESS_FAILS = 1u << 0 };
int node_read_barrier(struct node *n, unsigned flags, node_cb cb, void *arg);

/* Kernel caching under the lease (docs/fs.md, "Directories cached under
 * the lease"), any thread. node_read_floor: an index every store read
 * started after this call sees at least (what is applied, as published).
 * node_cache_ttl_ns: how long what such a read returned may be cached,
 * given the floor taken before it: while this node holds a lease (leader
 * or follower) and seen covers its whole log (so every change that could
 * still complete went through on_log after the cache was filled), the
 * time left in the lease, on CLOCK_BOOTTIME; else 0. */
rfs_index_t node_read_floor(struct node *n);
uint64_t node_cache_ttl_ns(struct node *n, rfs_index_t seen);

/* An operator's command. The text an operator types is parsed by the
 * raftfs command (mount-tools); the node takes it typed. */
enum node_admin_op {
    NODE_ADMIN_STATUS = 1, /* This node's status, one JSON object. */
    NODE_ADMIN_SNAPSHOT,   /* Take a snapshot here now (in the background). */
    NODE_ADMIN_MEMBERS,    /* The leader's view, one line per member. */
    NODE_ADMIN_ADD,        /* Add id at addr as a learner (promoted once
                            * caught up). */
    NODE_ADMIN_REMOVE,     /* Remove member id. */
    NODE_ADMIN_TRANSFER,   /* Hand leadership to id (0: the best voter). */
    NODE_ADMIN_ADD_OBSERVER, /* Add id at addr as an observer (for good). */
};

struct node_admin_cmd {
    enum node_admin_op op;
    rfs_nodeid_t id;           /* ADD, ADD_OBSERVER, REMOVE, TRANSFER. */
    char addr[CONS_ADDR_MAX];  /* ADD, ADD_OBSERVER: "IPv4:port". */
};

/*
 * Run an operator's command (any thread; c is copied). STATUS and SNAPSHOT
 * run here; the others run on the leader (a follower forwards them; "no
 * leader is known" is an error at once). cb runs once on the loop thread
 * with 0 or a code and a text (the answer or the reason). Returns 0,
 * -EINVAL (no such op) or -ENOMEM, and cb then never runs.
 */
typedef void (*node_admin_cb)(void *arg, int err, const char *text);
int node_admin(struct node *n, const struct node_admin_cmd *c,
               node_admin_cb cb, void *arg);

/* The store, for reads (thread-safe). */
struct store *node_store(struct node *n);
/* The (client, boot) this node's commands carry: its session, which the
 * store's lock table keys on. Any thread, after node_start. */
void node_identity(struct node *n, rfs_nodeid_t *id, uint64_t *boot);
/* Whether flock requests may carry their order (store.h, "Order"): every
 * other member of the configuration said, in its last hello, a protocol
 * level that knows them (docs/protocol.md, "Upgrades: flock orders").
 * Any thread. */
bool node_lock_orders(struct node *n);
/* Whether ordered flock unlocks may ask for their record to be forgotten
 * once answered (STORE_LK_FORGET): every other member said protocol level
 * 2. Any thread. */
bool node_lock_forget(struct node *n);

/* What gossip did on this node (node_options.gossip). */
struct node_gossip {
    bool on;                 /* node_options.gossip. */
    uint8_t role;            /* NODE_GOSSIP_*: how this node takes part. */
    rfs_index_t applied;     /* Fed (a voter) or released (an observer). */
    rfs_index_t known_head;  /* The highest index proven (observers). */
    uint64_t msgs_out, bytes_out; /* Gossip messages this node sent. */
    uint64_t entries_out;    /* Entries its pushes carried. */
    uint64_t points_signed;  /* Commit points it signed (voters). */
    uint64_t pulls_answered, too_old;
    uint64_t from_log;       /* Entries answered from its log (voters). */
    uint64_t refusals;       /* Refused by its verifier (observers). */
    /* DIGEST and PULL answers not sent, or cut short, because the asker
     * spent its answer budget (spread.c, ANSWER_RATE). */
    uint64_t answers_refused, answers_cut;
    uint64_t entries_taken;  /* Released entries given to its log. */
    /* Raft traffic this node sent to observers (a leader feeding them
     * by Raft sends them every entry; fed by gossip, ~0 per entry). */
    uint64_t raft_msgs_to_observers, raft_bytes_to_observers;
    /* Raft snapshot bytes this node sent as leader (to anyone): what
     * images from peers spare it (docs/protocol.md). */
    uint64_t raft_snap_bytes;
    /* Images from peers: statements this voter signed; images (their last
     * chunks) and bytes it served; images it fetched and installed, their
     * bytes; offers and chunks it refused. */
    uint64_t images_signed, images_served, image_bytes_served;
    uint64_t images_fetched, image_bytes_fetched, image_refusals;
    char last_refusal[160];  /* The verifier's last refusal ("" none). */
    /* The chain hash at `applied` (store.h, "The chain"): two nodes at the
     * same index with the same hash hold the same committed log. */
    uint8_t chain[STORE_CHAIN_BYTES];
};
#define NODE_GOSSIP_NONE 0     /* Off, or a learner, or not a member. */
#define NODE_GOSSIP_VOTER 1    /* Signs points, pushes what it applies. */
#define NODE_GOSSIP_OBSERVER 2 /* Fed by gossip. */

struct node_status {
    struct cons_status core;
    rfs_index_t applied;
    uint64_t entries_proposed; /* Proposals this node submitted. */
    uint64_t batches_written;  /* Synced log writes. */
    uint64_t batches_taken;    /* Queued batches a starting write took in
                                * (host_write_begin, docs/node.md). */
    unsigned peers_connected;
    /* Read barriers passed on the caller's thread from this node's lease
     * (leader or follower), without the loop. */
    uint64_t fast_barriers;
    struct cons_conf conf;     /* The configuration in force. */
    /* Leader only: each member's replicated index (conf order), else 0. */
    rfs_index_t match[CONS_MAX_SERVERS];
    bool removed;              /* This node was removed from the cluster. */
    bool lock_orders;          /* node_lock_orders() when published. */
    unsigned lock_level;       /* The members' lowest protocol level. */
    char last_error[192];      /* The last warning or error logged. */
    char listen[CONS_ADDR_MAX]; /* This node's peer address. */
    uint8_t sign_pk[CONS_KEY_BYTES]; /* This node's public signing key. */
    struct host_session session; /* This node's session. */
    unsigned live_sessions;     /* In the replicated state (node_status
                                 * counts them as it is called). */
    struct node_gossip gossip;
};

/* A consistent copy of the node's state (any thread). */
void node_status(struct node *n, struct node_status *st);

/*
 * A clean stop ends this node's session at once (any thread but the loop's,
 * before node_stop): proposes SESSION_END for it and waits until it is
 * applied here, or timeout_ms. 0, or the code it failed with (-ETIMEDOUT,
 * ...; the leader then ends it after its TTL); RFS_ENOLEADER at once when
 * no leader is known or none is reachable (nothing could commit). Nothing
 * to do without a session (session_ttl_ms 0): 0.
 */
int node_end_session(struct node *n, unsigned timeout_ms);

#endif /* RAFTFS_CONSENSUS_NODE_H */
