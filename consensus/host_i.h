/*
 * Private to the host driver (host.c and host_sessions.c): the struct
 * behind struct host, and the helpers its files share. Not included from
 * anywhere else; host.h is the front door.
 *
 * Caveats:
 * - As host.h: one owner thread, and every function here runs on it.
 */
#ifndef RAFTFS_CONSENSUS_HOST_I_H
#define RAFTFS_CONSENSUS_HOST_I_H

#include <pthread.h>

#include "host.h"

/* Senders a leader remembers hearing from, for node sessions. */
#define HOST_HEARD (2 * CONS_MAX_SERVERS)
/* Clock stalls remembered for the session view (see host_sessions.c,
 * offset_at). */
#define HOST_STALLS 8

struct host_stall {
    uint64_t core_tick;
    uint64_t offset;
};

struct host {
    struct host_options o;
    /* Entries kept behind each snapshot taken: a quarter of the interval,
     * and with gossip observers at least the core's gossip_behind_max. */
    rfs_index_t trailing;
    struct host_io io;
    struct cons_node *core;
    struct requests rq;

    uint64_t clock_origin_ns; /* The I/O clock at start. */
    uint64_t ticks_given;     /* Ticks real time says are due. */
    uint64_t core_ticks;      /* Ticks handed to the core (fewer after a
                               * stall: see catch_up). */

    /* The batch being written and the one being filled. batch_mu guards
     * both pointers, next_batch's contents and the held lists of both:
     * host_write_begin(), on the writer's thread, moves next_batch into
     * the one in flight. Everything else about the host is loop-only. */
    pthread_mutex_t batch_mu;
    struct hbatch *inflight;
    struct hbatch *next_batch;
    unsigned holds;           /* host_hold() not yet released. */
    uint64_t disk_retry_at;   /* ns; 0: no write waits for space. */
    /* Committed entries the store refused for space, kept in order, and
     * when to try them again (0: none kept). */
    struct cons_entry *backlog;
    unsigned n_backlog, cap_backlog;
    uint64_t apply_retry_at;
    bool disk_full;
    bool failed;              /* Storage failed: no more Raft activity. */
    bool closed;
    int close_err;
    bool removed;             /* Our configuration no longer holds us. */

    /* Chunk reads in flight, in the order the core sent them: reads may
     * finish out of order (several pool threads), but the chunks leave in
     * order, or the follower would reject each one that overtook another
     * and the transfer would thrash. */
    struct pending_chunk *chunks;
    struct pending_chunk **chunks_tail;
    bool snapshot_running;
    bool snapshot_now;
    int snapshot_err;            /* The last attempt's outcome. */
    rfs_index_t snap_index;      /* Last local snapshot. */
    uint64_t bytes_since_snap;   /* Entry bytes applied since it. */

    uint64_t proposed;
    uint64_t batches;
    uint64_t batches_taken; /* Queued batches host_write_begin() took. */
    unsigned depth; /* Nested entry points (a callback calling in). */

    /* The last peer refused for a changed data folder, and the id it
     * showed: said once, not at every reconnection attempt. */
    rfs_nodeid_t refused_peer;
    uint64_t refused_data;
    uint64_t refusals;

    /* Node sessions (host_sessions.c). */
    struct host_session sess;
    uint64_t first_boot;     /* This process's boots: first_boot..o.boot. */
    bool sess_open_pending;  /* A SESSION_OPEN of o.boot is in flight. */
    bool sess_renewing;      /* A new boot was taken for the next session. */
    bool sess_closing;       /* This node ends its own session (a clean
                              * stop): no new one after it. */
    struct host_stall stalls[HOST_STALLS];
    unsigned n_stalls;
    bool leading;
    uint64_t lead_tick;      /* Core tick this node became leader. */
    struct { rfs_nodeid_t id; uint64_t tick; } heard[HOST_HEARD];
    unsigned n_heard;
    struct { rfs_nodeid_t client; uint64_t boot; } ending[HOST_HEARD];
    unsigned n_ending;
    /* The data folder ids host_hello accepted, one per peer (the last
     * CONS_MAX_SERVERS peers), and the signing keys those hellos carried:
     * what a leader records in the configuration for members recorded
     * without them (record_data_ids, record_keys). */
    struct {
        rfs_nodeid_t peer;
        uint64_t data_id;
        bool has_key;
        uint8_t key[CONS_KEY_BYTES];
    } folders[CONS_MAX_SERVERS];
    unsigned folders_next; /* The slot a new peer takes (oldest first). */
};

/* host.c: a line to host_io.log, if the host has one. */
void host__log(struct host *h, enum rfs_log_level lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* host_sessions.c: node sessions (see there). */
/* catch_up handed the core ticks first_tick.. out at once after a stall:
 * remember how far behind real time they are. */
void host__stall_note(struct host *h, uint64_t first_tick);
/* This node's own session may have lapsed on its clock: mark it. */
void host__session_view(struct host *h);
/* After every entry point's work: take a new boot for a lapsed session
 * and (re)propose its SESSION_OPEN. */
void host__session_work(struct host *h);
/* An applied command c (result r) at index: this node's own session
 * opened or ended. */
void host__session_applied(struct host *h, rfs_index_t index,
                           const struct store_cmd *c,
                           const struct store_result *r);
/* Leader: a message from id shows that node alive now. */
void host__heard_from(struct host *h, rfs_nodeid_t id);
/* Leader, at each tick: propose SESSION_END for the sessions not heard
 * within their TTL. */
void host__session_expire(struct host *h);

#endif /* RAFTFS_CONSENSUS_HOST_I_H */
