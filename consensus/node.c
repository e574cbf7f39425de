/*
 * The node runtime: the host driver (host.c) on one libuv loop, with the
 * store, the snapshot files and the peers as its I/O.
 *
 * The ordering around the core (persist, send, apply, reply; group commit;
 * the clock; requests; the snapshot policy) is host.c's, the same code the
 * simulator runs. This file only does what host_io asks: synced batch
 * writes, snapshot images and chunk reads in libuv's threadpool (blocking
 * file I/O never runs on the loop thread), applies into the store on the
 * loop thread (unsynced and cheap), frames to peers, and the clock.
 *
 * Peers that fail the handshake, or send anything malformed, are dropped and
 * logged with their address.
 */
#include "node.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "../common/assert.h"
#include "../common/err.h"
#include "../common/heap.h"
#include "../common/endian.h"
#include "batch.h"
#include "host.h"
#include "config.h"
#include "node_i.h"
#include "gossip.h"
#include "requests.h"
#include "secure.h"
#include "snapfiles.h"
#include "spread.h"
#include "transport.h"
#include "status.h"
#include "wire.h"


/* An admin request forwarded to the leader, waiting for its answer. */
struct admin {
    struct admin *next;
    uint64_t id;
    uint64_t deadline;
    node_admin_cb cb;
    void *arg;
};

/* A submission from another thread, waiting in the inbox. */
struct sub {
    struct sub *next;
    bool read;
    bool leaderless_fails; /* Reads: NODE_READ_LEADERLESS_FAILS. */
    node_cb cb;
    void *arg;
    node_admin_cb admin_cb; /* An admin command: admin. */
    struct node_admin_cmd admin;
    struct store_cmd cmd; /* Strings point into the same allocation. */
};

/* A job in libuv's threadpool: a batch write, a snapshot, a chunk read. */
struct job {
    uv_work_t work;
    struct node *n;
    const struct batch_writes *w; /* Writes. */
    struct host_chunk *chunk;     /* Chunk reads. */
    rfs_index_t index;            /* Snapshots: the image's applied index. */
    uint64_t size;
    struct store_snap_sums sums;  /* Snapshots: for a statement (gimage). */
    int rv;
    char err[RFS_ERRMSG_SZ];
};

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */

void node__log(struct node *n, enum rfs_log_level lv, const char *fmt, ...)
{
    if (lv > rfs_log_threshold && lv > RFS_LOG_WARN) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (lv <= RFS_LOG_WARN) {
        /* For `raftfs status`: the last thing that went wrong. */
        pthread_mutex_lock(&n->lock);
        snprintf(n->status.last_error, sizeof(n->status.last_error),
                 "%.*s", (int)sizeof(n->status.last_error) - 1, line);
        pthread_mutex_unlock(&n->lock);
    }
    RFS_LOG(lv, "%s", line);
}

static void core_trace(void *data, rfs_nodeid_t id, const char *line)
{
    (void)id;
    node__log(data, RFS_LOG_DEBUG, "raft: %s", line);
}

void node_options_default(struct node_options *o)
{
    memset(o, 0, sizeof(*o));
    o->tick_ms = 20;
    o->election_ticks = 10;
    o->heartbeat_ticks = 2;
    o->commit_timeout_ms = 30000;
    o->lease_reads = true;
    o->snapshot_entries = 20000;
    o->snapshot_bytes = 64ull << 20;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */

/* The requests module's completion, handed on to the submitter's. */
static void sub_done(void *arg, int err, const void *result)
{
    struct sub *s = arg;
    if (s->admin_cb != NULL) {
        s->admin_cb(s->arg, err, rfs_strerror(err));
        rfs_free(s);
        return;
    }
    struct store_result none = {0};
    s->cb(s->arg, err, result != NULL ? result : &none);
    rfs_free(s);
}

static void admin_start(struct node *n, struct sub *s);

static void drain_inbox(struct node *n)
{
    pthread_mutex_lock(&n->lock);
    struct sub *in = n->inbox;
    n->inbox = NULL;
    pthread_mutex_unlock(&n->lock);
    /* The inbox is LIFO; reverse to keep submission order. The requests
     * drained together go to disk in one batch (host_hold). */
    struct sub *rev = NULL;
    while (in) {
        struct sub *next = in->next;
        in->next = rev;
        rev = in;
        in = next;
    }
    host_hold(n->host);
    while (rev) {
        struct sub *s = rev;
        rev = s->next;
        if (s->admin_cb != NULL) {
            admin_start(n, s);
            continue;
        }
        if (n->stopping) {
            sub_done(s, RFS_ESHUTDOWN, NULL);
            continue;
        }
        int rv = s->read ? host_read(n->host, s->leaderless_fails, sub_done,
                                     s)
                         : host_submit(n->host, &s->cmd, sub_done, s);
        if (rv != 0) {
            sub_done(s, rv, NULL);
        }
    }
    host_release(n->host);
}

/* ------------------------------------------------------------------------ */
/* The driver's I/O: disk jobs in the threadpool, apply, clock               */

uint64_t node__boottime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t io_now_ns(void *data)
{
    (void)data;
    return node__boottime_ns();
}

static int64_t io_wall_ns(void *data)
{
    (void)data;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct job *job_new(struct node *n)
{
    struct job *j = rfs_calloc(1, sizeof(*j));
    RFS_ASSERT(j != NULL); /* Out of memory with the core waiting: stop. */
    j->n = n;
    j->work.data = j;
    return j;
}

static void write_work(uv_work_t *w)
{
    struct job *j = w->data;
    struct node *n = j->n;
    j->rv = 0;
    /* Late binding: what the loop queued while this thread woke up (20 to
     * 80 us here) joins this write and its fsync (docs/node.md). */
    host_write_begin(n->host);
    for (unsigned i = 0; i < j->w->n_chunks && j->rv == 0; i++) {
        const struct batch_chunk *c = &j->w->chunks[i];
        j->rv = snapfiles_receive(&n->snaps, n->store, &c->meta, c->offset,
                                  c->data.base, c->data.len, c->last,
                                  c->fetched, j->err);
    }
    if (j->rv == 0 && (j->w->has_hs || j->w->n_ents > 0)) {
        j->rv = store_log_write(n->store, j->w->has_hs ? &j->w->hs : NULL,
                                j->w->ents, j->w->n_ents);
        if (j->rv != 0) {
            snprintf(j->err, sizeof(j->err), "%s", store_errmsg(n->store));
        }
    }
}

static void write_done(uv_work_t *w, int status)
{
    struct job *j = w->data;
    struct node *n = j->n;
    (void)status;
    if (j->rv != 0) {
        snprintf(n->disk_err, sizeof(n->disk_err), "%s", j->err);
    }
    int rv = j->rv == -ENOSPC && n->stopping ? -EIO : j->rv;
    char err[RFS_ERRMSG_SZ];
    snprintf(err, sizeof(err), "%s", j->err);
    rfs_free(j);
    host_write_done(n->host, rv, err);
}

static void io_write(void *data, const struct batch_writes *w)
{
    struct node *n = data;
    struct job *j = job_new(n);
    j->w = w;
    uv_queue_work(&n->loop, &j->work, write_work, write_done);
}

static void chunk_work(uv_work_t *w)
{
    struct job *j = w->data;
    j->rv = snapfiles_read(&j->n->snaps, j->chunk->snap_index,
                           j->chunk->offset, j->chunk->buf, j->chunk->len);
}

static void chunk_done(uv_work_t *w, int status)
{
    struct job *j = w->data;
    (void)status;
    struct node *n = j->n;
    struct host_chunk *c = j->chunk;
    int rv = j->rv;
    rfs_free(j);
    if (rv == 0) {
        n->gossip.raft_snap_bytes += c->len; /* Read to be sent. */
    }
    host_chunk_done(n->host, c, rv);
}

static void io_read_chunk(void *data, struct host_chunk *c)
{
    struct node *n = data;
    struct job *j = job_new(n);
    j->chunk = c;
    uv_queue_work(&n->loop, &j->work, chunk_work, chunk_done);
}

/* The image is written from a RocksDB snapshot of the state, so applies go
 * on meanwhile; its name is only known once the image says which applied
 * index it holds. */
static void snapshot_work(uv_work_t *w)
{
    struct job *j = w->data;
    j->rv = snapfiles_take(&j->n->snaps, j->n->store, &j->index, &j->size,
                           &j->sums, j->err);
}

static void snapshot_done(uv_work_t *w, int status)
{
    struct job *j = w->data;
    struct node *n = j->n;
    (void)status;
    if (j->rv != 0) {
        snprintf(n->disk_err, sizeof(n->disk_err), "%s", j->err);
    }
    int rv = j->rv;
    rfs_index_t idx = j->index;
    uint64_t size = j->size;
    if (rv == 0) {
        node__gimage_sums(n, idx, &j->sums);
    }
    rfs_free(j);
    if (rv == 0 && idx < host_snap_index(n->host)) {
        /* An install overtook it while it ran: the image is of an older
         * state than the node's snapshot, and nothing would delete it. */
        snapfiles_drop(&n->snaps, idx);
    }
    host_snapshot_done(n->host, rv, idx, size);
}

static void io_snapshot(void *data)
{
    struct node *n = data;
    struct job *j = job_new(n);
    uv_queue_work(&n->loop, &j->work, snapshot_work, snapshot_done);
}

static int io_snapshot_record(void *data, const struct cons_snap_meta *meta,
                              rfs_index_t compact_to, rfs_index_t old_index)
{
    struct node *n = data;
    struct store_snap_meta sm;
    int rv = snapfiles_meta_to_store(meta, &sm);
    if (rv != 0) {
        snprintf(n->disk_err, sizeof(n->disk_err),
                 "recording snapshot metadata: %s", rfs_strerror(rv));
    } else {
        rv = store_snapshot_meta_put(n->store, &sm);
        rfs_free(sm.conf.base);
        if (rv == 0 && compact_to > 0) {
            rv = store_log_compact(n->store, compact_to);
        }
        if (rv != 0) {
            snprintf(n->disk_err, sizeof(n->disk_err), "%s",
                     store_errmsg(n->store));
        }
    }
    if (old_index != 0) {
        snapfiles_drop(&n->snaps, old_index);
    }
    if (rv == 0) {
        node__gimage_recorded(n, meta);
    }
    return rv;
}

static int io_apply(void *data, const struct cons_entry *e, unsigned cnt,
                    struct store_result *res)
{
    struct node *n = data;
    int rv = store_apply(n->store, e, cnt, res);
    if (rv != 0) {
        snprintf(n->disk_err, sizeof(n->disk_err), "%s",
                 store_errmsg(n->store));
    } else {
        node__gossip_applied(n, e, cnt);
    }
    return rv;
}

static rfs_index_t io_applied(void *data)
{
    struct node *n = data;
    return store_applied(n->store);
}

static bool io_connected(void *data, rfs_nodeid_t id)
{
    struct node *n = data;
    return n->net != NULL && transport_connected(n->net, id);
}

static int io_pin(void *data, rfs_nodeid_t peer, uint64_t data_id,
                  uint64_t *pinned)
{
    struct node *n = data;
    return store_peer_pin(n->store, peer, data_id, pinned);
}

static int io_new_boot(void *data, uint64_t *boot)
{
    struct node *n = data;
    /* Synced on this (the loop) thread: a boot id is never handed out
     * twice, across restarts too. */
    int rv = store_boot_next(n->store, (uint64_t)io_wall_ns(n), boot);
    if (rv != 0) {
        node__log(n, RFS_LOG_ERROR, "cannot take a new boot id for a new "
                  "session: %s", store_errmsg(n->store));
    } else {
        /* The host's commands carry it from now on, so the lock table
         * keys this node's new locks on it: fs/locks.c must look them up
         * under it (a grant, the fencing token), not under the first. */
        atomic_store(&n->sess_boot, *boot);
    }
    return rv;
}

static int io_sessions(void *data, store_session_cb cb, void *arg)
{
    struct node *n = data;
    return store_sessions(n->store, cb, arg);
}

static const char *io_errmsg(void *data)
{
    struct node *n = data;
    return n->disk_err[0] != '\0' ? n->disk_err : store_errmsg(n->store);
}

static void io_send(void *data, rfs_nodeid_t to, struct rfs_buf plain)
{
    struct node *n = data;
    const struct cons_server *sv = cons_conf_get(cons_node_conf(host_core(
                                                     n->host)),
                                                 to);
    if (sv != NULL && sv->role == CONS_OBSERVER) {
        /* What gossip is meant to take off the leader: counted so that a
         * test (and an operator) can see it did. */
        n->gossip.raft_msgs_to_observers++;
        n->gossip.raft_bytes_to_observers += plain.len;
    }
    transport_send(n->net, to, plain);
}

static void io_log(void *data, enum rfs_log_level lv, const char *line)
{
    node__log(data, (enum rfs_log_level)lv, "%s", line);
}

/*
 * Publish the lease and the commit index for node_read_barrier()'s fast
 * path. The driver calls this after every update is taken and before its
 * messages go out or its entries are applied, so no follower and no local
 * caller can know of a commit that a reader on another thread does not see
 * here.
 */
static void io_publish(void *data)
{
    struct node *n = data;
    uint64_t end_ns = n->stopping ? 0 : host_lease_end_ns(n->host);
    pthread_mutex_lock(&n->lock);
    n->fast.lease_end_ns = end_ns;
    n->fast.need = cons_node_lease_index(host_core(n->host));
    n->fast.applied = store_applied(n->store);
    n->fast.last = cons_node_last_index(host_core(n->host));
    pthread_mutex_unlock(&n->lock);
}

/* Each update as the driver takes it: what enters the log is published
 * first (a cache filled from now on is not counted as covering it), then
 * the host drops what it cached that these entries may change, before the
 * batch holding them is written and any answer acknowledges them. */
static void io_observe(void *data, const struct cons_update *u)
{
    struct node *n = data;
    if (n->o.on_log == NULL) {
        return;
    }
    bool reset = false;
    for (unsigned i = 0; i < u->n_chunks; i++) {
        reset = reset || u->chunks[i].last;
    }
    /* The target of a transfer campaigns at once and may commit without
     * this node: what this node's host cached under its own lease must go
     * before the message leaves (the driver sends after observing). */
    for (unsigned i = 0; i < u->n_msgs; i++) {
        reset = reset || u->msgs[i].msg.type == CONS_MSG_TIMEOUT_NOW;
    }
    if (u->n_entries == 0 && !reset) {
        return;
    }
    io_publish(n);
    n->o.on_log(n->o.apply_data, u->entries, u->n_entries, reset);
}

static void publish_status(struct node *n)
{
    struct cons_node *core = host_core(n->host);
    struct node_status st;
    memset(&st, 0, sizeof(st));
    cons_node_status(core, &st.core);
    st.applied = store_applied(n->store);
    st.entries_proposed = host_proposed(n->host);
    st.batches_written = host_batches(n->host);
    st.batches_taken = host_batches_taken(n->host);
    st.conf = *cons_node_conf(core);
    st.removed = host_removed(n->host);
    st.lock_orders = atomic_load(&n->lock_level) >= TRANSPORT_LEVEL_LOCK_ORDER;
    st.lock_level = atomic_load(&n->lock_level);
    for (unsigned i = 0; i < st.conf.n && i < CONS_MAX_SERVERS; i++) {
        struct cons_progress p;
        st.match[i] = cons_node_progress(core, st.conf.servers[i].id, &p) == 0
                          ? p.match
                          : 0;
        if (st.conf.servers[i].id == n->o.id) {
            st.match[i] = st.core.last_index;
        }
    }
    snprintf(st.listen, sizeof(st.listen), "%s", n->o.listen);
    memcpy(st.sign_pk, n->sign_pk, sizeof(st.sign_pk));
    host_session(n->host, &st.session);
    node__gossip_status(n, &st.gossip);
    st.peers_connected = transport_connected_count(n->net);
    pthread_mutex_lock(&n->lock);
    memcpy(st.last_error, n->status.last_error, sizeof(st.last_error));
    st.fast_barriers = n->status.fast_barriers;
    n->status = st;
    pthread_mutex_unlock(&n->lock);
}

static void snapshot_waiters(struct node *n);

/* The level peer's last hello said; 0 if none came since this process
 * started (a build that says none, or one not heard yet). */
static uint32_t peer_level(const struct node *n, rfs_nodeid_t peer)
{
    for (unsigned i = 0; i < n->n_levels; i++) {
        if (n->levels[i].id == peer) {
            return n->levels[i].level;
        }
    }
    return 0;
}

/* Orders go out only once every other member (voters, learners and
 * observers alike: each applies the log) said it knows them: an older
 * build would apply an ordered entry otherwise, and read the longer lock
 * records as damaged (docs/protocol.md, "Upgrades: flock orders"). A
 * member not heard yet counts as older. */
static void lock_orders_sync(struct node *n, const struct cons_conf *c)
{
    unsigned level = cons_conf_get(c, n->o.id) != NULL ? TRANSPORT_LEVEL : 0;
    rfs_nodeid_t old = 0;
    for (unsigned i = 0; level > 0 && i < c->n; i++) {
        rfs_nodeid_t id = c->servers[i].id;
        if (id != n->o.id && peer_level(n, id) < level) {
            level = peer_level(n, id);
            old = id;
        }
    }
    unsigned was = atomic_exchange(&n->lock_level, level);
    if ((was >= TRANSPORT_LEVEL_LOCK_FORGET) !=
        (level >= TRANSPORT_LEVEL_LOCK_FORGET)) {
        node__log(n, RFS_LOG_INFO,
                  "flock unlock records %s (protocol level %u)",
                  level >= TRANSPORT_LEVEL_LOCK_FORGET
                      ? "forgotten once answered: every member knows it"
                      : "kept until the session ends: a member is below",
                  TRANSPORT_LEVEL_LOCK_FORGET);
    }
    bool on = level >= TRANSPORT_LEVEL_LOCK_ORDER;
    if ((was >= TRANSPORT_LEVEL_LOCK_ORDER) != on) {
        if (on) {
            node__log(n, RFS_LOG_INFO,
                      "flock orders on: every member knows them (protocol "
                      "level %u)",
                      TRANSPORT_LEVEL_LOCK_ORDER);
        } else if (old != 0) {
            node__log(n, RFS_LOG_INFO,
                      "flock orders off: node %" PRIu64 " has not said "
                      "protocol level %u (an older build, or not heard yet)",
                      old, TRANSPORT_LEVEL_LOCK_ORDER);
        }
    }
}

static void io_idle(void *data)
{
    struct node *n = data;
    if (n->net != NULL) {
        struct cons_status st;
        cons_node_status(host_core(n->host), &st);
        transport_sync(n->net, cons_node_conf(host_core(n->host)),
                       st.conf_index);
        lock_orders_sync(n, cons_node_conf(host_core(n->host)));
        node__gossip_sync(n);
        node__gossip_flush(n);
        publish_status(n);
    }
    snapshot_waiters(n);
}

/* ------------------------------------------------------------------------ */
/* Admin commands                                                            */

/*
 * An operator's commands (node_admin(), typed: the text an operator types
 * is parsed in mount-tools). Status and snapshot run here; the others run
 * on the leader: a follower forwards them in an ADMIN_REQUEST frame (the
 * command encoded by admin_encode) and relays the ADMIN_REPLY (a code and a
 * text).
 */
#define ADMIN_TIMEOUT_MS 10000
#define ADMIN_TEXT_MAX TRANSPORT_ADMIN_MAX

/* Request frame body: op (u8), id (u64), addr (the rest). */
static size_t admin_encode(const struct node_admin_cmd *c, uint8_t *b)
{
    size_t al = strnlen(c->addr, sizeof(c->addr) - 1);
    b[0] = (uint8_t)c->op;
    rfs_put_le64(b + 1, c->id);
    memcpy(b + 9, c->addr, al);
    return 9 + al;
}

static int admin_decode(const uint8_t *b, size_t len,
                        struct node_admin_cmd *c)
{
    memset(c, 0, sizeof(*c));
    if (len < 9 || len - 9 >= sizeof(c->addr) || b[0] < NODE_ADMIN_MEMBERS ||
        b[0] > NODE_ADMIN_ADD_OBSERVER) {
        return -EINVAL;
    }
    c->op = (enum node_admin_op)b[0];
    c->id = rfs_get_le64(b + 1);
    memcpy(c->addr, b + 9, len - 9);
    return 0;
}

static void admin_members(struct node *n, char *out, size_t cap)
{
    const struct cons_conf *c = cons_node_conf(host_core(n->host));
    struct cons_status st;
    cons_node_status(host_core(n->host), &st);
    size_t off = 0;
    /* Voters and learners first, then observers (status_members' order):
     * in a fleet, the few lines that make the quorum stay on top. */
    for (unsigned k = 0; k < 2 * c->n && off < cap; k++) {
        const struct cons_server *sv = &c->servers[k % c->n];
        if ((sv->role == CONS_OBSERVER) != (k >= c->n)) {
            continue;
        }
        struct cons_progress p;
        char prog[96] = "";
        if (sv->id == n->o.id) {
            snprintf(prog, sizeof(prog), " match=%" PRIu64 " lag=0 leader",
                     st.last_index);
        } else if (cons_node_progress(host_core(n->host), sv->id, &p) == 0) {
            static const char *const states[] = {"probe", "replicate",
                                                 "snapshot"};
            snprintf(prog, sizeof(prog),
                     " match=%" PRIu64 " lag=%" PRIu64 " %s%s", p.match,
                     st.last_index - p.match, states[p.state],
                     p.recent_active ? "" : " unreachable");
        }
        off += (size_t)snprintf(out + off, cap - off, "%" PRIu64 " %s %s%s\n",
                                sv->id, sv->addr,
                                cons_server_role_name(sv->role),
                                prog);
    }
}

/* Run a leader command here. Returns 0 or a code; out gets the text. */
static int admin_exec(struct node *n, const struct node_admin_cmd *c,
                      char *out, size_t cap)
{
    struct cons_node *core = host_core(n->host);
    char err[RFS_ERRMSG_SZ];
    rfs_index_t idx = 0;
    int rv;
    out[0] = '\0';
    switch (c->op) {
    case NODE_ADMIN_MEMBERS: {
        struct cons_status st;
        cons_node_status(core, &st);
        if (st.role != CONS_LEADER) {
            return RFS_ENOTLEADER;
        }
        admin_members(n, out, cap);
        return 0;
    }
    case NODE_ADMIN_ADD:
    case NODE_ADMIN_ADD_OBSERVER:
    case NODE_ADMIN_REMOVE: {
        bool obs = c->op == NODE_ADMIN_ADD_OBSERVER;
        bool add = c->op == NODE_ADMIN_ADD || obs;
        /* Checked again here: a forwarded frame is a peer's word. */
        if (c->id == RFS_NODE_NONE ||
            (add && config_parse_addr(c->addr, err) != 0)) {
            snprintf(out, cap, "%s", c->id == RFS_NODE_NONE
                                         ? "node id 0 is not valid"
                                         : err);
            return -EINVAL;
        }
        const struct cons_server *have = cons_conf_get(cons_node_conf(core),
                                                       c->id);
        if (add && have != NULL) {
            /* Roles move only from learner to voter: an observer carries
             * no vote a quorum could lose, and a voter turned observer
             * would shrink the quorum behind the operator's back. */
            snprintf(out, cap, "node %" PRIu64 " is already a member (%s %s)%s",
                     c->id, cons_server_role_name(have->role), have->addr,
                     obs != (have->role == CONS_OBSERVER)
                         ? "; a member's role does not change to or from "
                           "observer: remove it and add it under a new id"
                         : "");
            return -EEXIST;
        }
        if (!add && have == NULL) {
            snprintf(out, cap, "node %" PRIu64 " is not a member", c->id);
            return -ENOENT;
        }
        if (add && cons_conf_removed(cons_node_conf(core), c->id, &idx)) {
            char when[40] = "";
            if (idx != 0) {
                snprintf(when, sizeof(when), " at index %" PRIu64, idx);
            }
            snprintf(out, cap, "node %" PRIu64 " was removed%s; ids are "
                               "never reused: give the new node a new id "
                               "(raftfs init --id)", c->id, when);
            return RFS_EIDREMOVED;
        }
        rv = cons_node_change(core,
                              obs   ? CONS_ADD_OBSERVER
                              : add ? CONS_ADD_LEARNER
                                    : CONS_REMOVE,
                              c->id, add ? c->addr : NULL, &idx);
        if (rv == 0) {
            snprintf(out, cap, "%s node %" PRIu64 " at index %" PRIu64,
                     obs   ? "adding observer"
                     : add ? "adding learner"
                           : "removing",
                     c->id, idx);
            node__log(n, RFS_LOG_INFO, "%s", out);
        } else {
            snprintf(out, cap, "%s", rfs_strerror(rv));
        }
        return rv;
    }
    case NODE_ADMIN_TRANSFER:
        rv = cons_node_transfer(core, c->id);
        snprintf(out, cap, "%s", rv == 0 ? "transferring leadership"
                                         : rfs_strerror(rv));
        return rv;
    default:
        snprintf(out, cap, "not a leader command");
        return -EINVAL;
    }
}

/* An admin frame from a peer (transport.h): a request to run here, as
 * the leader, or the leader's reply to one of ours. */
static void net_admin(void *data, rfs_nodeid_t from,
                      enum transport_admin_kind kind, uint64_t id, int code,
                      const void *body, size_t len)
{
    struct node *n = data;
    const char *text = body;
    if (kind == ADMIN_REQUEST) {
        char out[ADMIN_TEXT_MAX];
        struct node_admin_cmd c;
        int rv = admin_decode(body, len, &c);
        if (rv == 0) {
            rv = admin_exec(n, &c, out, sizeof(out));
        } else {
            snprintf(out, sizeof(out), "malformed admin request");
        }
        node__log(n, RFS_LOG_INFO,
                  "admin command %d from node %" PRIu64 ": %s", (int)c.op,
                  from, rv == 0 ? "done" : out);
        transport_admin(n->net, from, ADMIN_REPLY, id, rv, out, strlen(out));
        return;
    }
    for (struct admin **a = &n->admins; *a; a = &(*a)->next) {
        if ((*a)->id == id) {
            struct admin *d = *a;
            *a = d->next;
            d->cb(d->arg, code, text);
            rfs_free(d);
            return;
        }
    }
}

static void net_raft(void *data, const struct cons_msg *m)
{
    struct node *n = data;
    host_recv(n->host, m);
}

static bool net_hello(void *data, rfs_nodeid_t from, uint64_t data_id,
                      const uint8_t *key)
{
    struct node *n = data;
    return host_hello_key(n->host, from, data_id, key);
}

static void net_level(void *data, rfs_nodeid_t from, uint32_t level)
{
    struct node *n = data;
    unsigned i = 0;
    while (i < n->n_levels && n->levels[i].id != from) {
        i++;
    }
    if (i == n->n_levels && i < sizeof(n->levels) / sizeof(n->levels[0])) {
        n->n_levels++;
    } else if (i == n->n_levels) {
        /* Full of peers past and present: forget the oldest. A member
         * forgotten counts as older until its next hello. */
        memmove(&n->levels[0], &n->levels[1],
                (n->n_levels - 1) * sizeof(n->levels[0]));
        i = n->n_levels - 1;
    }
    n->levels[i].id = from;
    n->levels[i].level = level;
}

/* The frames of one read are one burst: a follower's forwarded requests
 * (an unlock and the next lock) or a leader's appends that arrive together
 * go to disk in one batch, with one fsync, rather than the second waiting
 * for the first's (host_hold). */
static void net_read_begin(void *data)
{
    struct node *n = data;
    host_hold(n->host);
}

/* After every read (transport.h: each read_begin is followed by a poke). */
static void net_poke(void *data)
{
    struct node *n = data;
    host_release(n->host);
}

static void admin_expire(struct node *n)
{
    uint64_t now = uv_now(&n->loop);
    for (struct admin **a = &n->admins; *a;) {
        struct admin *d = *a;
        if (now < d->deadline && !n->stopping) {
            a = &d->next;
            continue;
        }
        *a = d->next;
        d->cb(d->arg, n->stopping ? RFS_ESHUTDOWN : -ETIMEDOUT,
              n->stopping ? "shutting down"
                          : "the leader did not answer within 10 s");
        rfs_free(d);
    }
}

/* Answer the operators waiting for a snapshot once none is pending. */
static void snapshot_waiters(struct node *n)
{
    if (n->snap_waiters == NULL ||
        (host_snapshot_pending(n->host) && !n->stopping)) {
        return;
    }
    char out[1400];
    int rv = n->stopping ? RFS_ESHUTDOWN : host_snapshot_error(n->host);
    if (rv == 0) {
        char path[1200];
        snapfiles_path(&n->snaps, host_snap_index(n->host), path,
                       sizeof(path));
        snprintf(out, sizeof(out), "snapshot at index %" PRIu64 ": %s",
                 host_snap_index(n->host), path);
    } else {
        snprintf(out, sizeof(out), "snapshot failed: %s", io_errmsg(n));
    }
    while (n->snap_waiters != NULL) {
        struct admin *a = n->snap_waiters;
        n->snap_waiters = a->next;
        a->cb(a->arg, rv, out);
        rfs_free(a);
    }
}

static void admin_start(struct node *n, struct sub *s)
{
    const struct node_admin_cmd *c = &s->admin;
    char out[ADMIN_TEXT_MAX];
    int rv = 0;
    if (c->op == NODE_ADMIN_STATUS) {
        struct node_status st;
        publish_status(n);
        node_status(n, &st);
        status_json(&st, out, sizeof(out));
    } else if (c->op == NODE_ADMIN_SNAPSHOT) {
        /* The image is written in the background; the answer waits for it
         * (snapshot_waiters), so a backup script can copy it at once. */
        struct admin *a = rfs_calloc(1, sizeof(*a));
        if (a == NULL) {
            rv = -ENOMEM;
            snprintf(out, sizeof(out), "out of memory");
        } else {
            a->cb = s->admin_cb;
            a->arg = s->arg;
            a->next = n->snap_waiters;
            n->snap_waiters = a;
            rfs_free(s);
            host_snapshot_now(n->host);
            snapshot_waiters(n);
            return;
        }
    } else {
        struct cons_status st;
        cons_node_status(host_core(n->host), &st);
        if (st.role == CONS_LEADER || n->stopping) {
            rv = n->stopping ? RFS_ESHUTDOWN
                             : admin_exec(n, c, out, sizeof(out));
        } else if (st.leader == RFS_NODE_NONE) {
            rv = RFS_ENOLEADER;
            snprintf(out, sizeof(out), "no leader is known; try again when "
                                       "the cluster has a quorum");
        } else {
            struct admin *a = rfs_calloc(1, sizeof(*a));
            if (a == NULL) {
                rv = -ENOMEM;
                snprintf(out, sizeof(out), "out of memory");
            } else {
                a->id = ++n->admin_ids;
                a->deadline = uv_now(&n->loop) + ADMIN_TIMEOUT_MS;
                a->cb = s->admin_cb;
                a->arg = s->arg;
                a->next = n->admins;
                n->admins = a;
                uint8_t body[9 + CONS_ADDR_MAX];
                transport_admin(n->net, st.leader, ADMIN_REQUEST, a->id, 0,
                                body, admin_encode(c, body));
                rfs_free(s);
                return;
            }
        }
    }
    s->admin_cb(s->arg, rv, out);
    rfs_free(s);
}

static void on_tick(uv_timer_t *t)
{
    struct node *n = t->data;
    admin_expire(n);
    node__gossip_tick(n);
    host_tick(n->host);
    if (n->o.on_tick != NULL) {
        n->o.on_tick(n->o.apply_data, (uint64_t)n->o.tick_ms * 1000000u);
    }
}

static void close_all(struct node *n)
{
    uv_timer_stop(&n->tick);
    uv_close((uv_handle_t *)&n->tick, NULL);
    uv_close((uv_handle_t *)&n->wake, NULL);
    node__gossip_stop(n);
    transport_close(n->net);
    host_close(n->host, RFS_ESHUTDOWN);
    io_publish(n); /* No lease for the fast path once stopping. */
    snapshot_waiters(n);
}

static void on_wake(uv_async_t *a)
{
    struct node *n = a->data;
    pthread_mutex_lock(&n->lock);
    bool stop = n->stop_requested;
    pthread_mutex_unlock(&n->lock);
    drain_inbox(n);
    if (stop && !n->stopping) {
        n->stopping = true;
        node__log(n, RFS_LOG_INFO, "stopping");
        close_all(n);
        return;
    }
    host_poke(n->host);
}

static void *loop_main(void *arg)
{
    struct node *n = arg;
    uv_run(&n->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int load_core(struct node *n, char *errmsg)
{
    struct store_loaded l;
    int rv = store_load(n->store, &l);
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "%s", store_errmsg(n->store));
        return rv;
    }
    if (l.hs.term == 0 && l.n_entries == 0 && l.snap.index == 0 &&
        n->o.bootstrap != NULL) {
        store_loaded_free(&l);
        struct cons_entry e;
        rv = cons_bootstrap_entry(n->o.bootstrap, &e);
        if (rv == 0) {
            rv = store_log_write(n->store, NULL, &e, 1);
            rfs_free(e.data.base);
        }
        if (rv != 0) {
            snprintf(errmsg, RFS_ERRMSG_SZ, "bootstrapping %.150s: %.60s", n->dir,
                     rfs_strerror(rv));
            return rv;
        }
        node__log(n, RFS_LOG_INFO, "founded a cluster of %u",
                  n->o.bootstrap->n);
        rv = store_load(n->store, &l);
        if (rv != 0) {
            snprintf(errmsg, RFS_ERRMSG_SZ, "%s", store_errmsg(n->store));
            return rv;
        }
    }
    struct host_options ho = {
        .id = n->o.id,
        .boot = n->boot,
        .data_id = n->data_id,
        .tick_ms = n->o.tick_ms,
        .election_ticks = n->o.election_ticks,
        .heartbeat_ticks = n->o.heartbeat_ticks,
        .commit_timeout_ms = n->o.commit_timeout_ms,
        .lease_reads = n->o.lease_reads,
        .boot_hold = true, /* Other members may use leases. */
        .follower_leases = n->o.lease_reads,
        .gossip_observers = n->o.gossip,
        .gossip_behind_max = n->o.gossip_cache,
        /* Peers serve images (node_gimage.c): the leader waits about one
         * fetch longer before it sends its own snapshot. */
        .gossip_stall_heartbeats = n->o.gossip ? NODE_GIMAGE_STALL_HB : 0,
        .gossip_images = n->o.gossip,
        .snapshot_entries = n->o.snapshot_entries,
        .snapshot_bytes = n->o.snapshot_bytes,
        .session_ttl_ms = n->o.session_ttl_ms,
        .snap_index = l.snap.index,
        .seed = n->boot ^ n->o.id,
        .trace = core_trace,
        .trace_data = n,
        .on_apply = n->o.on_apply,
        .apply_data = n->o.apply_data,
    };
    memcpy(ho.sign_pk, n->sign_pk, sizeof(ho.sign_pk));
    randombytes_buf(&ho.ids_from, sizeof(ho.ids_from));
    const struct host_io io = {
        .data = n,
        .now_ns = io_now_ns,
        .wall_ns = io_wall_ns,
        .write = io_write,
        .send = io_send,
        .read_chunk = io_read_chunk,
        .snapshot = io_snapshot,
        .snapshot_record = io_snapshot_record,
        .apply = io_apply,
        .applied = io_applied,
        .connected = io_connected,
        .errmsg = io_errmsg,
        .pin = io_pin,
        .new_boot = io_new_boot,
        .sessions = io_sessions,
        .publish = io_publish,
        .observe = io_observe,
        .idle = io_idle,
        .log = io_log,
    };
    struct cons_load cl = {.hs = l.hs, .entries = l.entries,
                           .n_entries = l.n_entries, .applied = l.applied};
    rv = snapfiles_meta_from_store(&l.snap, &cl.snap);
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ,
                 "snapshot metadata in %.150s is damaged (its configuration)",
                 n->dir);
        store_loaded_free(&l);
        return rv;
    }
    rv = host_new(&ho, &io, &cl, &n->host);
    rfs_term_t log_term = l.n_entries > 0 ? l.entries[l.n_entries - 1].term
                                          : l.snap.term;
    rfs_term_t hs_term = l.hs.term;
    store_loaded_free(&l);
    if (rv == RFS_ECORRUPT && hs_term < log_term) {
        snprintf(errmsg, RFS_ERRMSG_SZ,
                 "the Raft state in %.80s is unusable: term %llu is below "
                 "the last log term %llu (a lost vote write); wipe "
                 "it, re-add the node under a new id",
                 n->dir, (unsigned long long)hs_term,
                 (unsigned long long)log_term);
    } else if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "the Raft state in %.150s is unusable: %.60s",
                 n->dir, rfs_strerror(rv));
    }
    return rv;
}

int node_start(const struct node_options *o, struct node **out, char *errmsg)
{
    if (o->id == RFS_NODE_NONE || o->dir == NULL || o->listen == NULL) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "node id, data folder and listen "
                                        "address are required");
        return -EINVAL;
    }
    if (secure_global_init() != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "libsodium failed to initialize");
        return -EIO;
    }
    struct node *n = rfs_calloc(1, sizeof(*n));
    if (n == NULL) {
        return -ENOMEM;
    }
    n->o = *o;
    struct node_options def;
    node_options_default(&def);
    if (n->o.tick_ms == 0) {
        n->o.tick_ms = def.tick_ms;
    }
    if (n->o.election_ticks == 0) {
        n->o.election_ticks = def.election_ticks;
    }
    if (n->o.heartbeat_ticks == 0) {
        n->o.heartbeat_ticks = def.heartbeat_ticks;
    }
    if (n->o.commit_timeout_ms == 0) {
        n->o.commit_timeout_ms = def.commit_timeout_ms;
    }
    if (n->o.snapshot_entries == 0) {
        n->o.snapshot_entries = def.snapshot_entries;
    }
    if (n->o.snapshot_bytes == 0) {
        n->o.snapshot_bytes = def.snapshot_bytes;
    }
    snprintf(n->dir, sizeof(n->dir), "%s", o->dir);
    n->o.dir = n->dir;
    pthread_mutex_init(&n->lock, NULL);

    char path[1200];
    snprintf(path, sizeof(path), "%s/secret", n->dir);
    int rv = secure_secret_load(path, n->secret);
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "cluster secret %.150s: %.60s", path,
                 rv == -EACCES ? "readable by others (chmod 600)"
                 : rv == -EINVAL ? "not a 32-byte key"
                                 : strerror(-rv));
        goto err_free;
    }
    /* The signing key: made by raftfs init; a folder made by an older
     * build gets one at its first mount here, so every member has one to
     * record (docs/protocol.md). */
    uint8_t seed[SECURE_KEY_BYTES];
    snprintf(path, sizeof(path), "%s/" SECURE_SIGN_FILE, n->dir);
    rv = secure_secret_load(path, seed);
    if (rv == -ENOENT) {
        rv = secure_secret_create(path);
        if (rv == 0) {
            rv = secure_secret_load(path, seed);
        }
    }
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "signing key %.150s: %.60s", path,
                 rv == -EACCES ? "readable by others (chmod 600)"
                 : rv == -EINVAL ? "not a 32-byte key"
                                 : strerror(-rv));
        goto err_free;
    }
    secure_sign_public(seed, n->sign_pk);
    if (o->gossip) {
        /* The secret half, to sign commit points as a voter. */
        uint8_t pk[GOSSIP_PK_BYTES];
        crypto_sign_seed_keypair(pk, n->sign_sk, seed);
        n->gossip_in = rfs_calloc(GOSSIP_MSG_ENTRIES_MAX,
                                  sizeof(*n->gossip_in));
        if (n->gossip_in == NULL) {
            sodium_memzero(seed, sizeof(seed));
            rv = -ENOMEM;
            snprintf(errmsg, RFS_ERRMSG_SZ, "out of memory");
            goto err_free;
        }
    }
    sodium_memzero(seed, sizeof(seed));
    rv = snapfiles_init(&n->snaps, n->dir, errmsg);
    if (rv != 0) {
        goto err_free;
    }
    snprintf(path, sizeof(path), "%s/db", n->dir);
    struct store_options so;
    store_options_default(&so);
    if (o->history_entries > 0) {
        so.history_entries = o->history_entries;
    }
    rv = store_open(path, &so, &n->store, errmsg);
    if (rv != 0) {
        goto err_free;
    }
    /* Boot ids come from a counter in the store, so a restart always starts
     * a newer session than any request of the previous process still in
     * flight, even after the clock was set back. The clock only seeds the
     * counter once, for folders of the old scheme (see store_boot_next). */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rv = store_boot_next(n->store,
                         (uint64_t)ts.tv_sec * 1000000000ull +
                             (uint64_t)ts.tv_nsec,
                         &n->boot);
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "%s", store_errmsg(n->store));
        goto err_after_store;
    }
    atomic_store(&n->sess_boot, n->boot);
    /* Said in every hello: peers refuse this node if the folder they knew
     * it by is gone (host_hello). */
    uint64_t data_id;
    rv = store_data_id(n->store, &data_id);
    n->data_id = data_id;
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "%s", store_errmsg(n->store));
        goto err_after_store;
    }
    rv = load_core(n, errmsg);
    if (rv != 0) {
        goto err_after_store;
    }
    /* Only the image of the recorded snapshot is worth keeping: a crash
     * can leave an older one, a newer unrecorded one or a partial
     * receiving.img or fetching.img, which nothing would delete later. */
    int swept = snapfiles_sweep(&n->snaps, host_snap_index(n->host), true);
    if (swept > 0) {
        node__log(n, RFS_LOG_INFO, "deleted %d stale file(s) in %s", swept,
                  n->snaps.dir);
    }
    rv = node__gimage_open(n);
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "out of memory");
        goto err_after_core;
    }
    uv_loop_init(&n->loop);
    const struct transport_cbs cbs = {
        .data = n,
        .raft = net_raft,
        .hello = net_hello,
        .level = net_level,
        .admin = net_admin,
        .gossip = node__net_gossip,
        .read_begin = net_read_begin,
        .poke = net_poke,
        .log = io_log,
    };
    rv = transport_open(&n->loop, n->o.id, data_id, n->sign_pk, o->listen,
                        n->secret, &cbs, &n->net, errmsg);
    if (rv != 0) {
        uv_loop_close(&n->loop);
        goto err_after_core;
    }
    uv_timer_init(&n->loop, &n->tick);
    n->tick.data = n;
    uv_async_init(&n->loop, &n->wake, on_wake);
    n->wake.data = n;
    uv_timer_start(&n->tick, on_tick, n->o.tick_ms, n->o.tick_ms);
    host_poke(n->host);
    if (pthread_create(&n->thread, NULL, loop_main, n) != 0) {
        rv = -EAGAIN;
        snprintf(errmsg, RFS_ERRMSG_SZ, "cannot start the loop thread");
        goto err_after_core; /* Handles leak here; the process exits. */
    }
    node__log(n, RFS_LOG_INFO, "listening on %s, data in %s", o->listen,
              n->dir);
    *out = n;
    return 0;

err_after_core:
    node__gimage_close(n);
    host_free(n->host);
err_after_store:
    store_close(n->store);
err_free:
    pthread_mutex_destroy(&n->lock);
    sodium_memzero(n->sign_sk, sizeof(n->sign_sk));
    rfs_free(n->gossip_in);
    rfs_free(n);
    return rv;
}

void node_stop(struct node *n)
{
    pthread_mutex_lock(&n->lock);
    n->stop_requested = true;
    pthread_mutex_unlock(&n->lock);
    uv_async_send(&n->wake);
    pthread_join(n->thread, NULL);
    uv_loop_close(&n->loop);
    transport_free(n->net);
    node__gimage_close(n);
    host_free(n->host);
    store_close(n->store);
    pthread_mutex_destroy(&n->lock);
    sodium_memzero(n->sign_sk, sizeof(n->sign_sk));
    rfs_free(n->gossip_in);
    rfs_free(n);
}

/* ------------------------------------------------------------------------ */
/* Submission (any thread)                                                   */

static int enqueue(struct node *n, struct sub *s)
{
    pthread_mutex_lock(&n->lock);
    bool stopped = n->stop_requested;
    if (!stopped) {
        s->next = n->inbox;
        n->inbox = s;
    }
    pthread_mutex_unlock(&n->lock);
    if (stopped) {
        sub_done(s, RFS_ESHUTDOWN, NULL);
        return 0;
    }
    uv_async_send(&n->wake);
    return 0;
}

int node_submit(struct node *n, const struct store_cmd *cmd, node_cb cb,
                void *arg)
{
    size_t extra = (size_t)cmd->name_len + cmd->new_name_len + cmd->data_len;
    struct sub *s = rfs_calloc(1, sizeof(*s) + extra);
    if (s == NULL) {
        return -ENOMEM;
    }
    s->cb = cb;
    s->arg = arg;
    s->cmd = *cmd;
    char *p = (char *)(s + 1);
    if (cmd->name_len) {
        memcpy(p, cmd->name, cmd->name_len);
    }
    s->cmd.name = p;
    p += cmd->name_len;
    if (cmd->new_name_len) {
        memcpy(p, cmd->new_name, cmd->new_name_len);
    }
    s->cmd.new_name = p;
    p += cmd->new_name_len;
    if (cmd->data_len) {
        memcpy(p, cmd->data, cmd->data_len);
    }
    s->cmd.data = p;
    return enqueue(n, s);
}

int node_read_barrier(struct node *n, unsigned flags, node_cb cb, void *arg)
{
    /* A leader inside its lease that has applied its whole commit index,
     * or a follower inside its read lease that has applied its whole log,
     * answers here, on the caller's thread: the loop would only confirm
     * the same thing one thread hop later. */
    pthread_mutex_lock(&n->lock);
    bool now = n->fast.lease_end_ns != 0 &&
               n->fast.applied >= n->fast.need &&
               node__boottime_ns() < n->fast.lease_end_ns;
    if (now) {
        n->status.fast_barriers++;
    }
    pthread_mutex_unlock(&n->lock);
    if (now) {
        cb(arg, 0, NULL);
        return 0;
    }
    struct sub *s = rfs_calloc(1, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->read = true;
    s->leaderless_fails = (flags & NODE_READ_LEADERLESS_FAILS) != 0;
    s->cb = cb;
    s->arg = arg;
    return enqueue(n, s);
}

rfs_index_t node_read_floor(struct node *n)
{
    pthread_mutex_lock(&n->lock);
    rfs_index_t applied = n->fast.applied;
    pthread_mutex_unlock(&n->lock);
    return applied;
}

uint64_t node_cache_ttl_ns(struct node *n, rfs_index_t seen)
{
    pthread_mutex_lock(&n->lock);
    uint64_t end = n->fast.lease_end_ns;
    bool covered = end != 0 && seen >= n->fast.last &&
                   seen >= n->fast.need;
    pthread_mutex_unlock(&n->lock);
    uint64_t now = node__boottime_ns();
    return covered && now < end ? end - now : 0;
}

int node_admin(struct node *n, const struct node_admin_cmd *c,
               node_admin_cb cb, void *arg)
{
    if (c->op < NODE_ADMIN_STATUS || c->op > NODE_ADMIN_ADD_OBSERVER) {
        return -EINVAL;
    }
    struct sub *s = rfs_calloc(1, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->admin_cb = cb;
    s->arg = arg;
    s->admin = *c;
    s->admin.addr[sizeof(s->admin.addr) - 1] = '\0';
    return enqueue(n, s);
}

struct store *node_store(struct node *n)
{
    return n->store;
}

static int count_live(void *arg, rfs_nodeid_t client, uint64_t boot,
                      uint32_t ttl_ms, bool live)
{
    (void)client;
    (void)boot;
    (void)ttl_ms;
    *(unsigned *)arg += live;
    return 0;
}

bool node_lock_orders(struct node *n)
{
    return atomic_load(&n->lock_level) >= TRANSPORT_LEVEL_LOCK_ORDER;
}

bool node_lock_forget(struct node *n)
{
    return atomic_load(&n->lock_level) >= TRANSPORT_LEVEL_LOCK_FORGET;
}

void node_identity(struct node *n, rfs_nodeid_t *id, uint64_t *boot)
{
    *id = n->o.id;
    *boot = atomic_load(&n->sess_boot);
}

void node_status(struct node *n, struct node_status *st)
{
    pthread_mutex_lock(&n->lock);
    *st = n->status;
    pthread_mutex_unlock(&n->lock);
    /* Store reads are thread-safe; counted here, not at every publish. */
    st->live_sessions = 0;
    store_sessions(n->store, count_live, &st->live_sessions);
}

struct end_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int err;
};

static void end_done(void *arg, int err, const struct store_result *r)
{
    struct end_wait *w = arg;
    pthread_mutex_lock(&w->lock);
    w->done = true;
    w->err = err != 0 ? err : (r->err == ENOENT ? 0 : -r->err);
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int node_end_session(struct node *n, unsigned timeout_ms)
{
    if (n->o.session_ttl_ms == 0) {
        return 0;
    }
    /* Cut off (no leader known, none reachable, or a leader that reaches
     * no majority: the last node of a cluster being stopped), the entry
     * cannot commit: do not make the unmount wait for it. */
    struct node_status st;
    node_status(n, &st);
    unsigned voters = 0;
    for (unsigned i = 0; i < st.conf.n; i++) {
        voters += st.conf.servers[i].role == CONS_VOTER;
    }
    if (st.core.leader == RFS_NODE_NONE ||
        (st.core.leader != st.core.id && st.peers_connected == 0) ||
        (voters > 1 && st.peers_connected + 1 < voters / 2 + 1)) {
        return RFS_ENOLEADER;
    }
    /* Heap-allocated: a callback that comes after the wait gave up must
     * still find it (it is then never freed: one small leak per stop that
     * timed out, which ends the process anyway). */
    struct end_wait *w = rfs_calloc(1, sizeof(*w));
    if (w == NULL) {
        return -ENOMEM;
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    struct store_cmd c = {.op = STORE_OP_SESSION_END}; /* ino 0: our own. */
    int rv = node_submit(n, &c, end_done, w);
    if (rv != 0) {
        rfs_free(w);
        return rv;
    }
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->lock);
    while (!w->done) {
        if (pthread_cond_timedwait(&w->cond, &w->lock, &until) != 0) {
            break;
        }
    }
    bool done = w->done;
    rv = done ? w->err : -ETIMEDOUT;
    pthread_mutex_unlock(&w->lock);
    if (done) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        rfs_free(w);
    }
    return rv;
}
