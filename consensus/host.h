/*
 * host: the one host driver of the Raft core, shared by the node runtime
 * (libuv, RocksDB, TCP) and the simulator (virtual time, a fake disk, an
 * in-memory network).
 *
 * Everything that orders work around the core lives here, so that the
 * simulator's seeds exercise the same code that runs in production:
 *
 *   0. Every entry point first catches the core's clock up with the I/O
 *      clock (host_io.now_ns): after a stall (SIGSTOP, a VM pause) the first
 *      thing to arrive may be a disk completion or a peer's message, and a
 *      leader must learn that its lease ran out before it answers anything
 *      (RAFT-PITFALLS 8).
 *   1. Persist: the hard state, snapshot chunks and entries of every update
 *      join the next write batch (group commit, batch.c); one batch is
 *      written at a time (host_io.write), and its completion is reported
 *      with host_write_done().
 *   2. Send: messages that need no durability are encoded and sent at once;
 *      the others ride on the batch holding the writes they depend on and
 *      leave when it is durable, so a leader replicates while its own write
 *      is in flight (thesis 10.2.1). Snapshot chunks are read through
 *      host_io.read_chunk, off the caller's thread, then sent.
 *   3. When a batch is durable: cons_node_persisted(tag), release its
 *      messages, start the next batch.
 *   4. Apply committed entries (host_io.apply, unsynced: the log is the
 *      durable record) and complete this node's requests by their
 *      (node, boot, seq) identity, never by log index (RAFT-PITFALLS 7).
 *   5. Complete read barriers whose index is applied.
 *   6. Snapshot policy: after enough entries or bytes, host_io.snapshot takes
 *      an image off the caller's thread; the log is compacted behind it.
 *
 * The driver reads no clock, opens no file or socket and starts no thread:
 * all of that goes through struct host_io. It is the node's loop-thread
 * state; the runtime's libuv code and the simulator are thin I/O around it.
 *
 * Caveats:
 * - One owner thread: every host_* call comes from it (but
 *   host_write_begin(), the writer's), and every callback (request
 *   completions, host_io calls, on_apply) runs on it.
 * - Request callbacks run exactly once: on completion, timeout, or
 *   host_close() (with the code given there).
 * - After a storage failure (a write or an apply that failed other than for
 *   lack of space) the driver does no more Raft work: host_failed() says so,
 *   every waiting request fails with -EIO, and so does every new one.
 */
#ifndef RAFTFS_CONSENSUS_HOST_H
#define RAFTFS_CONSENSUS_HOST_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/log.h"
#include "../common/types.h"
#include "../store/store.h"
#include "batch.h"
#include "core/core.h"
#include "requests.h"


/* A snapshot chunk to read for an outgoing SNAPSHOT message. */
struct host_chunk {
    rfs_index_t snap_index; /* The image: snap-<snap_index>.img. */
    uint64_t offset;
    size_t len;
    void *buf;              /* len bytes, owned by the driver. */
};

/*
 * The I/O a host driver needs. Synchronous calls return at once; the three
 * asynchronous ones (write, read_chunk, snapshot) report back through their
 * host_*_done() call, later, from the owner thread, exactly once each
 * (unless the driver is freed first).
 */
struct host_io {
    void *data;
    /* A monotonic clock (CLOCK_BOOTTIME in production: it keeps counting
     * while the machine is suspended, so a lease cannot outlive a
     * suspend). */
    uint64_t (*now_ns)(void *data);
    /* The wall clock, stamped into commands for mtime and ctime. */
    int64_t (*wall_ns)(void *data);
    /* Write w durably (synced), in order; at most one write is in flight.
     * Report with host_write_done(). w stays valid until then; a writer
     * that calls host_write_begin() first writes w as that leaves it. */
    void (*write)(void *data, const struct batch_writes *w);
    /* Send an encoded message (takes plain). Best effort: Raft retransmits. */
    void (*send)(void *data, rfs_nodeid_t to, struct rfs_buf plain);
    /* Fill c->buf from image c->snap_index; report with host_chunk_done(). */
    void (*read_chunk)(void *data, struct host_chunk *c);
    /* Take a consistent snapshot of the state machine into an image; report
     * with host_snapshot_done(). At most one in flight. */
    void (*snapshot)(void *data);
    /* Record a snapshot taken (its metadata), compact the stored log up to
     * compact_to (0: nothing), and drop the image of old_index (0: none),
     * now. 0 or a code. */
    int (*snapshot_record)(void *data, const struct cons_snap_meta *meta,
                           rfs_index_t compact_to, rfs_index_t old_index);
    /* Apply committed entries to the state machine (unsynced), with one
     * result per entry; 0, -ENOSPC or another code (the node stops). */
    int (*apply)(void *data, const struct cons_entry *e, unsigned n,
                 struct store_result *res);
    /* The state machine's applied index. */
    rfs_index_t (*applied)(void *data);
    /* Whether an authenticated connection to peer id is open (for the
     * log line that says why a request is stuck). */
    bool (*connected)(void *data, rfs_nodeid_t id);
    /* Text of the last storage error, for logs. */
    const char *(*errmsg)(void *data);
    /* The lease, commit or applied index may have moved (optional): called
     * after each update is taken, before its messages go out or its entries
     * are applied, so a reader on another thread never lags what a peer or
     * a caller could already know. */
    void (*publish)(void *data);
    /* After each host_* call has done its work (optional): the runtime
     * publishes its status and follows configuration changes here. */
    void (*idle)(void *data);
    /* One log line (optional). */
    void (*log)(void *data, enum rfs_log_level lv, const char *line);
    /* Every update as it is taken, before any of its work (optional; the
     * simulator's invariant checks read them). */
    void (*observe)(void *data, const struct cons_update *u);
    /* Trust on first use of peers' data folders (optional; see
     * host_hello): *pinned gets the id peer showed first, recorded durably
     * (synced) if this is the first. 0 or a code. */
    int (*pin)(void *data, rfs_nodeid_t peer, uint64_t data_id,
               uint64_t *pinned);
    /* Node sessions (optional; without it the node keeps the boot it
     * started with, and a session that ended stays ended): a new boot id
     * of this node, recorded durably (store_boot_next). 0 or a code. */
    int (*new_boot)(void *data, uint64_t *boot);
    /* Node sessions (optional; without it this node, as leader, ends no
     * session): walk the state machine's sessions (store_sessions). */
    int (*sessions)(void *data, store_session_cb cb, void *arg);
};

struct host_options {
    rfs_nodeid_t id;
    uint64_t boot;              /* This process's boot id (store_boot_*). */
    uint64_t data_id;           /* This data folder's (store_data_id); 0:
                                 * none, never recorded. */
    /* This node's public signing key (DATADIR/signing.key); all zero:
     * none, never recorded. */
    uint8_t sign_pk[CONS_KEY_BYTES];
    unsigned tick_ms;
    unsigned election_ticks;
    unsigned heartbeat_ticks;
    unsigned commit_timeout_ms; /* Requests fail with -ETIMEDOUT after. */
    uint64_t ids_from;          /* Where ReadIndex ids start (random). */
    bool lease_reads;
    bool boot_hold;
    bool follower_leases;       /* See cons_options.follower_leases. */
    bool gossip_observers;      /* See cons_options.gossip_observers. */
    uint64_t gossip_behind_max; /* Its namesake there (0: its default). */
    unsigned gossip_stall_heartbeats; /* Likewise. */
    bool gossip_images;         /* Likewise. */
    uint64_t snapshot_entries;  /* Snapshot after this many applied... */
    uint64_t snapshot_bytes;    /* ...or this many bytes of entries. */
    rfs_index_t snap_index;     /* The image already on disk (0: none). */
    uint64_t seed;              /* The core's election PRNG. */
    /* Node sessions (docs/node.md): this node opens one with this TTL
     * (0: none, and its changes are never fenced by its own clock). */
    unsigned session_ttl_ms;
    /* Core tunables the simulator shrinks (0: the core's default). */
    unsigned max_inflight;
    size_t max_msg_bytes;
    size_t max_uncommitted;
    size_t snap_chunk_bytes;
    /* Core trace lines (optional). */
    void (*trace)(void *data, rfs_nodeid_t id, const char *line);
    void *trace_data;
    /* Called after every applied command (c, r), and once with NULL, NULL
     * after a snapshot replaced the whole state. own: this process proposed
     * it. Optional; must not block. */
    void (*on_apply)(void *data, rfs_index_t index, const struct store_cmd *c,
                     const struct store_result *r, bool own);
    void *apply_data;
};

struct host;

/*
 * Make a driver around a new core loaded from l (copied). io is copied and
 * must stay usable until host_free(). 0, -ENOMEM or the core's code
 * (RFS_ECORRUPT: the loaded state is inconsistent).
 */
int host_new(const struct host_options *o, const struct host_io *io,
             const struct cons_load *l, struct host **out);
/* Free, without calling back: call host_close() first. */
void host_free(struct host *h);
/* Stop: every pending request completes with err; later submissions too. */
void host_close(struct host *h, int err);

/* ---- Entry points: each catches up the clock, then runs the loop. ---- */

/* The periodic timer (every tick_ms, roughly: the clock decides). */
void host_tick(struct host *h);
/* A message from the peer m->from, as authenticated by the transport. */
void host_recv(struct host *h, const struct cons_msg *m);
/* Something outside the core changed (a peer connected, an admin frame
 * arrived): run the loop. */
void host_poke(struct host *h);
/*
 * Group commit across a burst of input. Until the matching host_release(),
 * entry points step the core but the loop does not run: the core's update
 * is taken once, after the whole burst (the frames of one socket read, the
 * requests of one inbox drain). Its entries and hard state go to disk in
 * one batch, with one fsync, and a leader sends each follower one APPEND
 * for all of them, instead of the first starting alone and the rest
 * waiting for its fsync (on this node and on every follower). Nothing is
 * sent, applied or answered before the release, so a hold must cover only
 * input that is already here, never a wait. Holds nest; the last release
 * runs the loop. Owner thread only.
 */
void host_hold(struct host *h);
void host_release(struct host *h);
/*
 * A peer opened a connection and says which data folder it runs on
 * (data_id, random per folder; 0 from a peer too old to say). Returns
 * false if the peer must be refused (drop the connection and what comes
 * on it): the configuration records another id for it, or it showed
 * another id here before (the pin, trust on first use), so its disk was
 * wiped or replaced and it forgot how it voted and what it acknowledged;
 * letting it take part under the same id could elect two leaders or lose
 * a committed entry (RAFT-PITFALLS 5). Logged once per peer and id. A
 * leader records each member's accepted id in the configuration (on its
 * tick), so that peers that never heard the member check it too.
 * host_hello_key's key: the peer's public signing key (CONS_KEY_BYTES),
 * NULL from an older build (host_hello passes NULL); an accepted peer's key is what the leader records for it in the
 * configuration, once (a recorded key is never replaced).
 */
bool host_hello(struct host *h, rfs_nodeid_t peer, uint64_t data_id);
bool host_hello_key(struct host *h, rfs_nodeid_t peer, uint64_t data_id,
                    const uint8_t *key);
/* Connections refused by host_hello so far. */
uint64_t host_refusals(const struct host *h);
/* The write handed to host_io.write finished: 0, -ENOSPC (nothing was
 * written; it is retried every second, nothing acknowledged meanwhile), or
 * another code (the node stops; errmsg says why). */
void host_write_done(struct host *h, int rv, const char *errmsg);
/* The one call allowed from another thread: the writer calls it just
 * before it writes the batch handed to host_io.write (or retries it). That
 * batch then takes in every update queued since (and the messages held
 * behind them), so they share its fsync; w is the same pointer, grown.
 * Optional: a host_io that never calls it writes batches as handed over.
 * Not to be called after host_write_done() for that write. */
void host_write_begin(struct host *h);
/* A chunk read finished (0 or a code: the transfer restarts). */
void host_chunk_done(struct host *h, struct host_chunk *c, int rv);
/* A snapshot finished: image of applied index `index`, `size` bytes. */
void host_snapshot_done(struct host *h, int rv, rfs_index_t index,
                        uint64_t size);

/* Propose cmd (copied; the driver fills client, boot, seq,
 * first_outstanding and time_ns; a SESSION_END with ino 0 ends this node's
 * own session). cb gets the apply result. 0 or a code (cb never runs
 * then): -ENOMEM, RFS_ESHUTDOWN, RFS_EREMOVED, -EIO (storage failed),
 * -EROFS (host_session_fenced). */
int host_submit(struct host *h, const struct store_cmd *cmd, request_cb cb,
                void *arg);
/* A read barrier: cb runs once this node applied everything committed
 * before the call (result: the read index). Same codes. leaderless_fails:
 * see requests_read() (cb then gets RFS_ENOLEADER). */
int host_read(struct host *h, bool leaderless_fails, request_cb cb,
              void *arg);
/* Ask for a snapshot now (an operator's command). It is taken unless the
 * last one holds everything applied already. */
void host_snapshot_now(struct host *h);
/* Whether a snapshot is being taken or waits to start; and the last
 * attempt's outcome (0 or a code). */
bool host_snapshot_pending(const struct host *h);
int host_snapshot_error(const struct host *h);

/* ---- Node sessions ---------------------------------------------------- */

enum host_session_state {
    HOST_SESSION_OFF = 0,   /* session_ttl_ms is 0. */
    HOST_SESSION_OPENING,   /* Its SESSION_OPEN is not applied yet. */
    HOST_SESSION_LIVE,
    HOST_SESSION_MAY_HAVE_ENDED, /* Own clock: no leader is known to have
                                  * heard this node within 9/10 of the TTL;
                                  * a new boot's session is being opened. */
    HOST_SESSION_ENDED,     /* Its SESSION_END applied; a new one is being
                             * opened. */
};

struct host_session {
    enum host_session_state state;
    uint64_t boot;        /* The session's boot (this node's current one). */
    unsigned ttl_ms;
    uint64_t opened;      /* Sessions this process opened. */
    uint64_t ends_proposed; /* SESSION_ENDs this node proposed as leader. */
};
void host_session(const struct host *h, struct host_session *out);
/* Whether changes are refused now (-EROFS): this node's session ended or
 * may have, and the next one is not open yet. */
bool host_session_fenced(const struct host *h);

/* ---- State, for the runtime ------------------------------------------ */

/* The core (for status, configuration changes and transfers: the caller
 * runs host_poke() afterwards so the change's update is processed). */
struct cons_node *host_core(struct host *h);
/* When this leader's lease ends, on the I/O clock (ns); 0: none. */
uint64_t host_lease_end_ns(const struct host *h);
bool host_failed(const struct host *h);
bool host_removed(const struct host *h);
rfs_index_t host_snap_index(const struct host *h);
uint64_t host_proposed(const struct host *h);
uint64_t host_batches(const struct host *h);
/* Queued batches host_write_begin() took into the write in flight. */
uint64_t host_batches_taken(const struct host *h);

#endif /* RAFTFS_CONSENSUS_HOST_H */
