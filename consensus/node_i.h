/*
 * Private to the node runtime (node.c and node_gossip.c): the struct
 * behind struct node, and the helpers its files share. Not included from
 * anywhere else; node.h is the front door.
 *
 * Caveats:
 * - Everything here runs on the node's loop thread, except what
 *   struct node says is under its lock.
 */
#ifndef RAFTFS_CONSENSUS_NODE_I_H
#define RAFTFS_CONSENSUS_NODE_I_H

#include <pthread.h>
#include <stdint.h>
#include <uv.h>

#include "../common/err.h"
#include "gossip.h"
#include "host.h"
#include "node.h"
#include "secure.h"
#include "snapfiles.h"
#include "spread.h"
#include "transport.h"

struct admin;
struct node_gimage;
struct sub;

struct node {
    struct node_options o;
    char dir[1024];
    uint8_t secret[SECURE_KEY_BYTES];
    uint8_t sign_pk[SECURE_SIGN_PK_BYTES]; /* Of DATADIR/signing.key. */
    struct store *store;
    uint64_t data_id; /* This folder's (store_data_id). */
    struct host *host;
    struct snapfiles snaps;
    uint64_t boot; /* This process's first boot id: said in hellos. */
    /* The boot of the current session (a new one at each renewal after a
     * lapse): what node_identity answers, from any thread. */
    _Atomic uint64_t sess_boot;

    pthread_t thread;
    uv_loop_t loop;
    uv_timer_t tick;
    uv_async_t wake;
    struct transport *net;
    bool stopping;
    char disk_err[RFS_ERRMSG_SZ]; /* The last storage error. */

    pthread_mutex_t lock;   /* Protects inbox, stop_requested, status,
                             * fast. */
    /* What a reader on another thread needs to pass a barrier without the
     * loop: see node_read_barrier(). */
    struct {
        uint64_t lease_end_ns; /* CLOCK_BOOTTIME; 0: no lease. */
        /* What a leased read waits to be applied (cons_node_lease_index):
         * a leader's commit index, a follower's last log index, published
         * before any message or answer reveals it. */
        rfs_index_t need;
        rfs_index_t applied;   /* In the store, readable now. */
        rfs_index_t last;      /* The log's last index (node_cache_ttl_ns),
                                * published before on_log sees it. */
    } fast;
    struct sub *inbox;
    bool stop_requested;
    struct node_status status;

    /* Gossip (node_options.gossip; loop thread only): NULL unless this
     * node is a voter or an observer of its configuration. */
    struct spread *spread;
    bool spread_voter;
    rfs_index_t spread_conf;   /* Configuration index its peers reflect. */
    struct cons_entry *gossip_in; /* Decoding room for one message. */
    uint8_t sign_sk[GOSSIP_SK_BYTES]; /* From DATADIR/signing.key. */
    struct node_gossip gossip; /* Counters kept here (copied to status). */
    struct node_gimage *gimage; /* Images from peers (node_gimage.c);
                                 * NULL without gossip. */

    struct admin *admins;   /* Admin requests waiting for the leader. */
    struct admin *snap_waiters; /* `raftfs snapshot`s waiting for one. */
    uint64_t admin_ids;

    /* The feature level each peer's last hello said (loop thread only),
     * and the lowest that every other member of the configuration said,
     * capped at this build's (0 if this node is not a member):
     * node_lock_orders and node_lock_forget, any thread. */
    struct {
        rfs_nodeid_t id;
        uint32_t level;
    } levels[2 * CONS_MAX_SERVERS];
    unsigned n_levels;
    _Atomic unsigned lock_level;
};

/* node.c: a line to the log; a warning or worse is also kept for
 * `raftfs status` (its last_error). */
void node__log(struct node *n, enum rfs_log_level lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* node.c: CLOCK_BOOTTIME in ns (it goes on across a suspend). */
uint64_t node__boottime_ns(void);

/* node_gossip.c: observers fed by gossip (issue 16; see there). */
/* Entries e[0..cnt) were applied to the store: a voter spreads them. */
void node__gossip_applied(struct node *n, const struct cons_entry *e,
                          unsigned cnt);
/* Follow the configuration (this node's part, its peers, the voters'
 * keys); after every host call. */
void node__gossip_sync(struct node *n);
/* Send what the spread queued. */
void node__gossip_flush(struct node *n);
/* The loop's timer: overdue points, digests. */
void node__gossip_tick(struct node *n);
/* Drop the spread (stopping, or starting over). */
void node__gossip_stop(struct node *n);
/* The gossip part of `raftfs status`. */
void node__gossip_status(struct node *n, struct node_gossip *g);
/* transport's GOSSIP frame callback (transport.h). */
void node__net_gossip(void *data, rfs_nodeid_t from, const uint8_t *body,
                      size_t len);

/* node_gimage.c: images from peers (issue 16, part 2; see there). */
/* The answered heartbeats a leader waits, with gossip, before it sends a
 * stalled observer its own snapshot (cons_options.gossip_stall_heartbeats,
 * 100 by default, 4 s at 40 ms heartbeats): 6 s more, the time an
 * observer takes to see it is stalled (2 s) and fetch an image from a
 * peer, so the leader's snapshot stays the last resort. */
#define NODE_GIMAGE_STALL_HB 250
/* After the host is open: serve the statement kept beside the snapshot.
 * 0 or -ENOMEM. Nothing without gossip. */
int node__gimage_open(struct node *n);
/* After the loop ended. */
void node__gimage_close(struct node *n);
/* The image of index this node just took hashed to sums (from the
 * thread that wrote it). */
void node__gimage_sums(struct node *n, rfs_index_t index,
                       const struct store_snap_sums *sums);
/* The host records meta as this node's snapshot: a voter signs and
 * serves it; an image superseded is no longer served. */
void node__gimage_recorded(struct node *n, const struct cons_snap_meta *meta);
/* The loop's timer (from node__gossip_tick): an observer's fetch. */
void node__gimage_tick(struct node *n);
/* A GOSSIP frame whose first byte is a gimage kind (gimage_is_kind). */
void node__gimage_recv(struct node *n, rfs_nodeid_t from, const uint8_t *body,
                       size_t len);

#endif /* RAFTFS_CONSENSUS_NODE_I_H */
