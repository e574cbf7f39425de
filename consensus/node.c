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
#include "requests.h"
#include "secure.h"
#include "snapfiles.h"
#include "status.h"
#include "wire.h"

#define MAX_PEERS CONS_MAX_SERVERS
#define SEND_LIMIT (32u << 20) /* Bytes queued per connection. */

/* Test-only fault layer (RAFTFS_TEST_NET_FAULTS): an outgoing frame held
 * back for a random few milliseconds, so frames arrive late and out of
 * order, as netem would make them (which this kernel lacks). */
struct delayed {
    uv_timer_t timer;
    struct node *n;
    struct delayed *prev, *next;
    rfs_nodeid_t to;
    uint8_t type;
    struct rfs_buf plain;
};

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
    node_cb cb;
    void *arg;
    node_admin_cb admin_cb; /* An admin command (cmd.name holds it). */
    struct store_cmd cmd; /* Strings point into the same allocation. */
};

struct out_buf {
    struct out_buf *next;
    rfs_nodeid_t to;
    uint8_t type; /* WIRE_RAFT or WIRE_ADMIN. */
    struct rfs_buf plain; /* Encoded message, before sealing. */
};

/* A job in libuv's threadpool: a batch write, a snapshot, a chunk read. */
struct job {
    uv_work_t work;
    struct node *n;
    const struct batch_writes *w; /* Writes. */
    struct host_chunk *chunk;     /* Chunk reads. */
    rfs_index_t index;            /* Snapshots: the image's applied index. */
    uint64_t size;
    int rv;
    char err[RFS_ERRMSG_SZ];
};

struct conn {
    uv_tcp_t tcp;
    struct node *n;
    bool outgoing;
    rfs_nodeid_t peer_id; /* Outgoing: whom we called. */
    bool closing;
    bool open;
    struct secure sec;
    struct wire_reader rd;
    size_t queued; /* Bytes written but not yet completed. */
    char addr[64];
    uv_connect_t creq;
    struct conn *next; /* In n->conns. */
};

struct peer {
    rfs_nodeid_t id;
    char addr[CONS_ADDR_MAX];
    struct conn *out;
    uint64_t next_attempt;
    uint64_t backoff;
    struct out_buf *waiting; /* Until the connection opens. */
    bool contact; /* Not in our configuration: a node that called us while
                   * we join, known by the address it announced. */
    unsigned n_waiting;
};

struct node {
    struct node_options o;
    char dir[1024];
    uint8_t secret[SECURE_KEY_BYTES];
    struct store *store;
    struct host *host;
    struct snapfiles snaps;
    uint64_t boot;

    pthread_t thread;
    uv_loop_t loop;
    uv_timer_t tick;
    uv_async_t wake;
    uv_tcp_t listener;
    bool stopping;
    char disk_err[RFS_ERRMSG_SZ]; /* The last storage error. */

    pthread_mutex_t lock;   /* Protects inbox, stop_requested, status,
                             * fast. */
    /* What a reader on another thread needs to pass a barrier without the
     * loop: see node_read_barrier(). */
    struct {
        uint64_t lease_end_ns; /* CLOCK_BOOTTIME; 0: no lease. */
        rfs_index_t commit;    /* The leader's, published before any
                                * message or answer reveals it. */
        rfs_index_t applied;   /* In the store, readable now. */
    } fast;
    struct sub *inbox;
    bool stop_requested;
    struct node_status status;

    struct peer peers[MAX_PEERS];
    unsigned n_peers;
    struct conn *conns;
    unsigned conf_n; /* Size of the configuration the peers reflect. */
    rfs_index_t conf_index_seen;

    struct admin *admins;   /* Admin requests waiting for the leader. */
    unsigned fault_jitter_ms; /* Test fault layer: 0 = off. */
    uint64_t fault_rng;
    struct delayed *delayed;
    uint64_t admin_ids;
};

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */

static void nlog(struct node *n, enum node_log_level lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void nlog(struct node *n, enum node_log_level lv, const char *fmt, ...)
{
    if (lv > n->o.log_level) {
        return;
    }
    char line[512];
    static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
    int off = snprintf(line, sizeof(line), "node %" PRIu64 " %s: ", n->o.id,
                       names[lv]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + off, sizeof(line) - (size_t)off, fmt, ap);
    va_end(ap);
    if (lv <= NODE_LOG_WARN) {
        /* For `raftfs status`: the last thing that went wrong. */
        pthread_mutex_lock(&n->lock);
        snprintf(n->status.last_error, sizeof(n->status.last_error), "%s",
                 line + off);
        pthread_mutex_unlock(&n->lock);
    }
    if (n->o.log != NULL) {
        n->o.log(n->o.log_data, lv, line);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        fprintf(stderr, "%ld.%03ld %s\n", (long)ts.tv_sec,
                ts.tv_nsec / 1000000, line);
    }
}

static void core_trace(void *data, rfs_nodeid_t id, const char *line)
{
    (void)id;
    nlog(data, NODE_LOG_DEBUG, "raft: %s", line);
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
    o->log_level = NODE_LOG_INFO;
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
    /* The inbox is LIFO; reverse to keep submission order. */
    struct sub *rev = NULL;
    while (in) {
        struct sub *next = in->next;
        in->next = rev;
        rev = in;
        in = next;
    }
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
        int rv = s->read ? host_read(n->host, sub_done, s)
                         : host_submit(n->host, &s->cmd, sub_done, s);
        if (rv != 0) {
            sub_done(s, rv, NULL);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Peers and connections                                                     */

static int parse_addr(const char *s, struct sockaddr_in *sa)
{
    char host[CONS_ADDR_MAX];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof(host)) {
        return -EINVAL;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port <= 0 || port > 65535) {
        return -EINVAL;
    }
    return uv_ip4_addr(host, (int)port, sa) == 0 ? 0 : -EINVAL;
}

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    wire_reader_close(&c->rd);
    secure_close(&c->sec);
    rfs_free(c);
}

static void conn_close(struct conn *c, const char *why)
{
    if (c->closing) {
        return;
    }
    struct node *n = c->n;
    c->closing = true;
    if (why != NULL) {
        nlog(n, NODE_LOG_WARN, "dropping %s connection %s (%s %" PRIu64
                               "): %s",
             c->outgoing ? "outgoing" : "incoming", c->addr,
             c->outgoing || c->open ? "node" : "claims node",
             c->outgoing ? c->peer_id : c->sec.peer, why);
    }
    for (struct conn **p = &n->conns; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    if (c->outgoing) {
        for (unsigned i = 0; i < n->n_peers; i++) {
            struct peer *p = &n->peers[i];
            if (p->out == c) {
                p->out = NULL;
                p->backoff = p->backoff ? p->backoff * 2 : 50;
                if (p->backoff > 2000) {
                    p->backoff = 2000;
                }
                p->next_attempt = uv_now(&n->loop) + p->backoff;
            }
        }
    }
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

struct write_req {
    uv_write_t req;
    struct conn *c;
    size_t len;
    uint8_t buf[];
};

static void written(uv_write_t *w, int status)
{
    struct write_req *wr = (struct write_req *)w;
    if (!wr->c->closing) {
        wr->c->queued -= wr->len;
        if (status < 0) {
            conn_close(wr->c, uv_strerror(status));
        }
    }
    rfs_free(wr);
}

/* Frame and write a body; RAFT bodies are sealed first. */
static void conn_send(struct conn *c, uint8_t type, const void *body,
                      size_t len)
{
    if (c->closing) {
        return;
    }
    bool sealed = type == WIRE_RAFT || type == WIRE_ADMIN;
    size_t blen = sealed ? len + SECURE_OVERHEAD : len;
    if (c->queued + blen > SEND_LIMIT) {
        nlog(c->n, NODE_LOG_DEBUG, "send queue to %s full: message dropped",
             c->addr);
        return; /* Raft retransmits what matters. */
    }
    struct write_req *wr = rfs_malloc(sizeof(*wr) + WIRE_HDR + blen);
    if (wr == NULL) {
        return;
    }
    wr->c = c;
    wr->len = blen;
    uint8_t *b = wr->buf + WIRE_HDR;
    if (sealed) {
        if (secure_seal(&c->sec, body, len, b) != 0) {
            rfs_free(wr);
            return;
        }
    } else {
        memcpy(b, body, len);
    }
    wire_frame_header(type, b, (uint32_t)blen, wr->buf);
    uv_buf_t ub = uv_buf_init((char *)wr->buf, (unsigned)(WIRE_HDR + blen));
    c->queued += blen;
    int rv = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &ub, 1, written);
    if (rv != 0) {
        c->queued -= blen;
        rfs_free(wr);
        conn_close(c, uv_strerror(rv));
    }
}

static struct peer *peer_get(struct node *n, rfs_nodeid_t id)
{
    for (unsigned i = 0; i < n->n_peers; i++) {
        if (n->peers[i].id == id) {
            return &n->peers[i];
        }
    }
    return NULL;
}

static void flush_waiting(struct peer *p)
{
    while (p->waiting) {
        struct out_buf *o = p->waiting;
        p->waiting = o->next;
        conn_send(p->out, o->type, o->plain.base, o->plain.len);
        rfs_free(o->plain.base);
        rfs_free(o);
    }
    p->n_waiting = 0;
}

static void admin_frame(struct node *n, rfs_nodeid_t from, const uint8_t *b,
                        size_t len);
static void admin_send(struct node *n, rfs_nodeid_t to, uint8_t kind,
                       uint64_t id, int code, const char *text);

static void on_frame(struct conn *c, const struct wire_frame *f)
{
    struct node *n = c->n;
    if (!c->open) {
        struct secure_out out;
        if (secure_handshake(&c->sec, f->type, f->body, f->len, &out) != 0) {
            conn_close(c, c->sec.why);
            return;
        }
        if (out.type != 0) {
            conn_send(c, out.type, out.body, out.len);
        }
        if (c->sec.state == SECURE_OPEN) {
            c->open = true;
            nlog(n, NODE_LOG_INFO, "%s connection %s with node %" PRIu64
                                   " authenticated",
                 c->outgoing ? "outgoing" : "incoming", c->addr, c->sec.peer);
            if (c->outgoing) {
                /* Say where we listen: a node that is joining knows no
                 * one, and answers its leader through this address. */
                admin_send(n, c->peer_id, 3, 0, 0, n->o.listen);
                struct peer *p = peer_get(n, c->peer_id);
                if (p != NULL && p->out == c) {
                    p->backoff = 0;
                    flush_waiting(p);
                }
            }
        }
        return;
    }
    if ((f->type != WIRE_RAFT && f->type != WIRE_ADMIN) || c->outgoing) {
        conn_close(c, "unexpected frame");
        return;
    }
    if (f->len < SECURE_OVERHEAD) {
        conn_close(c, "short frame");
        return;
    }
    uint8_t *plain = rfs_malloc(f->len);
    if (plain == NULL) {
        return;
    }
    if (secure_open(&c->sec, f->body, f->len, plain) != 0) {
        rfs_free(plain);
        conn_close(c, c->sec.why);
        return;
    }
    if (f->type == WIRE_ADMIN) {
        admin_frame(n, c->sec.peer, plain, f->len - SECURE_OVERHEAD);
        rfs_free(plain);
        return;
    }
    struct cons_msg m;
    int rv = wire_msg_decode(plain, f->len - SECURE_OVERHEAD, &m);
    if (rv != 0) {
        rfs_free(plain);
        conn_close(c, "malformed Raft message");
        return;
    }
    /* The sender is who the handshake proved, whatever the message says. */
    if (m.from != c->sec.peer || m.to != n->o.id) {
        wire_msg_free(&m);
        rfs_free(plain);
        conn_close(c, "message claims another sender or recipient");
        return;
    }
    host_recv(n->host, &m);
    wire_msg_free(&m);
    rfs_free(plain);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    size_t len = hint < 65536 ? 65536 : hint;
    buf->base = rfs_malloc(len);
    buf->len = buf->base ? len : 0;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    struct node *n = c->n;
    if (nread < 0) {
        rfs_free(buf->base);
        const char *why = nread == UV_EOF ? NULL : uv_strerror((int)nread);
        if (why == NULL && !c->open && !c->outgoing) {
            /* Hung up mid-handshake: typically a process that found out
             * we hold a secret it does not. Say so, with its address. */
            why = "closed before authenticating (wrong cluster secret?)";
        }
        conn_close(c, why);
        return;
    }
    if (nread > 0 && !c->closing) {
        if (wire_reader_feed(&c->rd, buf->base, (size_t)nread) != 0) {
            conn_close(c, c->rd.errmsg[0] ? c->rd.errmsg : "out of memory");
        } else {
            struct wire_frame f;
            int rv;
            while (!c->closing && (rv = wire_reader_next(&c->rd, &f)) == 1) {
                on_frame(c, &f);
            }
            if (!c->closing && rv < 0) {
                conn_close(c, c->rd.errmsg);
            }
        }
    }
    rfs_free(buf->base);
    /* A handshake or admin frame may have changed what the driver can do
     * (a peer opened, a command ran); it catches up the clock first. */
    host_poke(n->host);
}

static struct conn *conn_new(struct node *n, bool outgoing)
{
    struct conn *c = rfs_calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->n = n;
    c->outgoing = outgoing;
    wire_reader_init(&c->rd);
    uv_tcp_init(&n->loop, &c->tcp);
    c->tcp.data = c;
    c->next = n->conns;
    n->conns = c;
    return c;
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->closing) {
        return;
    }
    if (status < 0) {
        nlog(c->n, NODE_LOG_DEBUG, "cannot reach node %" PRIu64 " at %s: %s",
             c->peer_id, c->addr, uv_strerror(status));
        conn_close(c, NULL);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct secure_out out;
    secure_init(&c->sec, true, c->n->o.id, c->peer_id, c->n->secret, &out);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    conn_send(c, out.type, out.body, out.len);
}

static void peer_connect(struct node *n, struct peer *p)
{
    struct sockaddr_in sa;
    if (parse_addr(p->addr, &sa) != 0) {
        nlog(n, NODE_LOG_ERROR, "node %" PRIu64 " has a bad address '%s'",
             p->id, p->addr);
        p->next_attempt = uv_now(&n->loop) + 10000;
        return;
    }
    struct conn *c = conn_new(n, true);
    if (c == NULL) {
        return;
    }
    c->peer_id = p->id;
    snprintf(c->addr, sizeof(c->addr), "%s", p->addr);
    c->creq.data = c;
    p->out = c;
    int rv = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&sa,
                            on_connect);
    if (rv != 0) {
        conn_close(c, uv_strerror(rv));
    }
}

/* Keep one outgoing connection per member of the configuration. */
static void sync_peers(struct node *n)
{
    const struct cons_conf *c = cons_node_conf(host_core(n->host));
    struct cons_status st;
    cons_node_status(host_core(n->host), &st);
    if (st.conf_index != n->conf_index_seen || c->n != n->conf_n) {
        n->conf_index_seen = st.conf_index;
        n->conf_n = c->n;
        /* Drop peers that left. */
        unsigned k = 0;
        for (unsigned i = 0; i < n->n_peers; i++) {
            struct peer *p = &n->peers[i];
            if (cons_conf_get(c, p->id) != NULL ||
                (p->contact && cons_conf_get(c, n->o.id) == NULL)) {
                n->peers[k++] = *p;
                continue;
            }
            if (p->out) {
                conn_close(p->out, NULL);
            }
            while (p->waiting) {
                struct out_buf *o = p->waiting;
                p->waiting = o->next;
                rfs_free(o->plain.base);
                rfs_free(o);
            }
        }
        n->n_peers = k;
        for (unsigned i = 0; i < c->n; i++) {
            const struct cons_server *s = &c->servers[i];
            if (s->id == n->o.id || peer_get(n, s->id) != NULL ||
                n->n_peers >= MAX_PEERS) {
                continue;
            }
            struct peer *p = &n->peers[n->n_peers++];
            memset(p, 0, sizeof(*p));
            p->id = s->id;
            snprintf(p->addr, sizeof(p->addr), "%s", s->addr);
        }
        /* An outgoing conn's peer pointer may have moved: rebind. */
        for (struct conn *cn = n->conns; cn; cn = cn->next) {
            if (cn->outgoing && !cn->closing) {
                struct peer *p = peer_get(n, cn->peer_id);
                if (p != NULL) {
                    p->out = cn;
                }
            }
        }
    }
    uint64_t now = uv_now(&n->loop);
    for (unsigned i = 0; i < n->n_peers; i++) {
        struct peer *p = &n->peers[i];
        if (p->out == NULL && now >= p->next_attempt && !n->stopping) {
            peer_connect(n, p);
        }
    }
}

static void send_frame_now(struct node *n, rfs_nodeid_t to, uint8_t type,
                           struct rfs_buf plain);

static void delayed_freed(uv_handle_t *h)
{
    rfs_free(h->data);
}

static void delayed_fire(uv_timer_t *t)
{
    struct delayed *d = t->data;
    struct node *n = d->n;
    if (d->prev) {
        d->prev->next = d->next;
    } else {
        n->delayed = d->next;
    }
    if (d->next) {
        d->next->prev = d->prev;
    }
    send_frame_now(n, d->to, d->type, d->plain);
    uv_close((uv_handle_t *)&d->timer, delayed_freed);
}

static void send_frame(struct node *n, rfs_nodeid_t to, uint8_t type,
                       struct rfs_buf plain)
{
    if (n->fault_jitter_ms > 0 && !n->stopping) {
        n->fault_rng ^= n->fault_rng << 13;
        n->fault_rng ^= n->fault_rng >> 7;
        n->fault_rng ^= n->fault_rng << 17;
        unsigned ms = (unsigned)(n->fault_rng % (n->fault_jitter_ms + 1));
        struct delayed *d = ms > 0 ? rfs_calloc(1, sizeof(*d)) : NULL;
        if (d != NULL) {
            d->n = n;
            d->to = to;
            d->type = type;
            d->plain = plain;
            uv_timer_init(&n->loop, &d->timer);
            d->timer.data = d;
            d->next = n->delayed;
            if (n->delayed) {
                n->delayed->prev = d;
            }
            n->delayed = d;
            uv_timer_start(&d->timer, delayed_fire, ms, 0);
            return;
        }
    }
    send_frame_now(n, to, type, plain);
}

static void send_frame_now(struct node *n, rfs_nodeid_t to, uint8_t type,
                           struct rfs_buf plain)
{
    struct peer *p = peer_get(n, to);
    if (p == NULL) {
        rfs_free(plain.base);
        return;
    }
    if (p->out != NULL && p->out->open) {
        conn_send(p->out, type, plain.base, plain.len);
        rfs_free(plain.base);
        return;
    }
    if (p->n_waiting >= 256) {
        rfs_free(plain.base); /* Bounded: the oldest state is stale anyway. */
        return;
    }
    struct out_buf *o = rfs_malloc(sizeof(*o));
    if (o == NULL) {
        rfs_free(plain.base);
        return;
    }
    o->plain = plain;
    o->type = type;
    o->next = NULL;
    struct out_buf **t = &p->waiting;
    while (*t) {
        t = &(*t)->next;
    }
    *t = o;
    p->n_waiting++;
}

static void send_plain(struct node *n, rfs_nodeid_t to, struct rfs_buf plain)
{
    send_frame(n, to, WIRE_RAFT, plain);
}

static void on_accept(uv_stream_t *server, int status)
{
    struct node *n = server->data;
    if (status < 0 || n->stopping) {
        return;
    }
    struct conn *c = conn_new(n, false);
    if (c == NULL) {
        return;
    }
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c, NULL);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    snprintf(c->addr, sizeof(c->addr), "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0 &&
        ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        char ip[32];
        uv_ip4_name(sin, ip, sizeof(ip));
        snprintf(c->addr, sizeof(c->addr), "%s:%u", ip, ntohs(sin->sin_port));
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct secure_out out;
    secure_init(&c->sec, false, n->o.id, 0, n->secret, &out);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

/* ------------------------------------------------------------------------ */
/* The driver's I/O: disk jobs in the threadpool, apply, clock               */

static uint64_t boottime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t io_now_ns(void *data)
{
    (void)data;
    return boottime_ns();
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
    for (unsigned i = 0; i < j->w->n_chunks && j->rv == 0; i++) {
        const struct batch_chunk *c = &j->w->chunks[i];
        j->rv = snapfiles_receive(&n->snaps, n->store, &c->meta, c->offset,
                                  c->data.base, c->data.len, c->last, j->err);
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
                           j->err);
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
    rfs_free(j);
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
    int rv = store_snapshot_meta_put(n->store, meta);
    if (rv == 0 && compact_to > 0) {
        rv = store_log_compact(n->store, compact_to);
    }
    if (rv != 0) {
        snprintf(n->disk_err, sizeof(n->disk_err), "%s",
                 store_errmsg(n->store));
    }
    if (old_index != 0) {
        snapfiles_drop(&n->snaps, old_index);
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
    struct peer *p = peer_get(n, id);
    return p != NULL && p->out != NULL && p->out->open;
}

static const char *io_errmsg(void *data)
{
    struct node *n = data;
    return n->disk_err[0] != '\0' ? n->disk_err : store_errmsg(n->store);
}

static void io_send(void *data, rfs_nodeid_t to, struct rfs_buf plain)
{
    struct node *n = data;
    if (n->stopping) {
        rfs_free(plain.base); /* The connections are closing. */
        return;
    }
    send_plain(n, to, plain);
}

static void io_log(void *data, enum host_log_level lv, const char *line)
{
    nlog(data, (enum node_log_level)lv, "%s", line);
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
    struct cons_status st;
    cons_node_status(host_core(n->host), &st);
    pthread_mutex_lock(&n->lock);
    n->fast.lease_end_ns = end_ns;
    n->fast.commit = st.commit;
    n->fast.applied = store_applied(n->store);
    pthread_mutex_unlock(&n->lock);
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
    st.conf = *cons_node_conf(core);
    st.removed = host_removed(n->host);
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
    for (unsigned i = 0; i < n->n_peers; i++) {
        st.peers_connected += n->peers[i].out && n->peers[i].out->open;
    }
    pthread_mutex_lock(&n->lock);
    memcpy(st.last_error, n->status.last_error, sizeof(st.last_error));
    n->status = st;
    pthread_mutex_unlock(&n->lock);
}

static void io_idle(void *data)
{
    struct node *n = data;
    sync_peers(n);
    publish_status(n);
}

/* ------------------------------------------------------------------------ */
/* Admin commands                                                            */

/*
 * Commands an operator sends through node_admin() (the admin socket):
 *   status                  this node's status, one JSON object
 *   snapshot                take a snapshot here now
 *   members                 the leader's view: one line per member with
 *                           its replication progress
 *   add ID ADDR             add a learner (promoted once caught up)
 *   remove ID               remove a member
 *   transfer [ID]           hand leadership to ID (0/none: the best voter)
 * The last four run on the leader: a follower forwards them in a WIRE_ADMIN
 * frame (kind 1: u64 id, text) and relays the answer (kind 2: u64 id, i32
 * code, text).
 */
#define ADMIN_TIMEOUT_MS 10000
#define ADMIN_TEXT_MAX 8192

static void admin_members(struct node *n, char *out, size_t cap)
{
    const struct cons_conf *c = cons_node_conf(host_core(n->host));
    struct cons_status st;
    cons_node_status(host_core(n->host), &st);
    size_t off = 0;
    for (unsigned i = 0; i < c->n && off < cap; i++) {
        const struct cons_server *sv = &c->servers[i];
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
                                sv->role == CONS_VOTER ? "voter" : "learner",
                                prog);
    }
}

/* Run a leader command here. Returns 0 or a code; out gets the text. */
static int admin_exec(struct node *n, const char *line, char *out, size_t cap)
{
    char verb[16] = "", arg1[80] = "", arg2[CONS_ADDR_MAX + 8] = "";
    int k = sscanf(line, "%15s %79s %71s", verb, arg1, arg2);
    char err[RFS_ERRMSG_SZ];
    rfs_nodeid_t id = 0;
    rfs_index_t idx = 0;
    int rv;
    out[0] = '\0';
    if (strcmp(verb, "members") == 0 && k == 1) {
        struct cons_status st;
        cons_node_status(host_core(n->host), &st);
        if (st.role != CONS_LEADER) {
            return RFS_ENOTLEADER;
        }
        admin_members(n, out, cap);
        return 0;
    }
    if ((strcmp(verb, "add") == 0 && k == 3) ||
        (strcmp(verb, "remove") == 0 && k == 2)) {
        if (config_parse_id(arg1, &id, err) != 0 ||
            (k == 3 && config_parse_addr(arg2, err) != 0)) {
            snprintf(out, cap, "%s", err);
            return -EINVAL;
        }
        const struct cons_server *have =
            cons_conf_get(cons_node_conf(host_core(n->host)), id);
        if (k == 3 && have != NULL) {
            snprintf(out, cap, "node %" PRIu64 " is already a member (%s)",
                     id, have->addr);
            return -EEXIST;
        }
        if (k == 2 && have == NULL) {
            snprintf(out, cap, "node %" PRIu64 " is not a member", id);
            return -ENOENT;
        }
        rv = cons_node_change(host_core(n->host), k == 3 ? CONS_ADD_LEARNER : CONS_REMOVE,
                              id, k == 3 ? arg2 : NULL, &idx);
        if (rv == 0) {
            snprintf(out, cap, "%s node %" PRIu64 " at index %" PRIu64,
                     k == 3 ? "adding learner" : "removing", id, idx);
            nlog(n, NODE_LOG_INFO, "%s", out);
        } else {
            snprintf(out, cap, "%s", rfs_strerror(rv));
        }
        return rv;
    }
    if (strcmp(verb, "transfer") == 0 && k <= 2) {
        if (k == 2 && strcmp(arg1, "0") != 0 &&
            config_parse_id(arg1, &id, err) != 0) {
            snprintf(out, cap, "%s", err);
            return -EINVAL;
        }
        rv = cons_node_transfer(host_core(n->host), id);
        snprintf(out, cap, "%s", rv == 0 ? "transferring leadership"
                                         : rfs_strerror(rv));
        return rv;
    }
    snprintf(out, cap, "unknown admin command '%.60s'", line);
    return -EINVAL;
}

static void admin_send(struct node *n, rfs_nodeid_t to, uint8_t kind,
                       uint64_t id, int code, const char *text)
{
    size_t tl = strnlen(text, ADMIN_TEXT_MAX);
    struct rfs_buf b = {rfs_malloc(13 + tl), 13 + tl};
    if (b.base == NULL) {
        return;
    }
    uint8_t *p = b.base;
    p[0] = kind;
    rfs_put_le64(p + 1, id);
    rfs_put_le32(p + 9, (uint32_t)code);
    memcpy(p + 13, text, tl);
    send_frame(n, to, WIRE_ADMIN, b);
}

static void admin_frame(struct node *n, rfs_nodeid_t from, const uint8_t *b,
                        size_t len)
{
    if (len < 13 || len > 13 + ADMIN_TEXT_MAX) {
        nlog(n, NODE_LOG_WARN, "malformed admin frame from node %" PRIu64,
             from);
        return;
    }
    uint64_t id = rfs_get_le64(b + 1);
    char text[ADMIN_TEXT_MAX + 1];
    memcpy(text, b + 13, len - 13);
    text[len - 13] = '\0';
    if (b[0] == 3) {
        char err[RFS_ERRMSG_SZ];
        if (peer_get(n, from) != NULL || n->n_peers >= MAX_PEERS ||
            from == n->o.id || config_parse_addr(text, err) != 0) {
            return;
        }
        struct peer *p = &n->peers[n->n_peers++];
        memset(p, 0, sizeof(*p));
        p->id = from;
        p->contact = true;
        snprintf(p->addr, sizeof(p->addr), "%.63s", text);
        nlog(n, NODE_LOG_INFO, "node %" PRIu64 " at %s called: answering it "
                               "there", from, p->addr);
        return;
    }
    if (b[0] == 1) {
        char out[ADMIN_TEXT_MAX];
        int rv = admin_exec(n, text, out, sizeof(out));
        nlog(n, NODE_LOG_INFO, "admin '%.80s' from node %" PRIu64 ": %s",
             text, from, rv == 0 ? "done" : out);
        admin_send(n, from, 2, id, rv, out);
        return;
    }
    int code = (int32_t)rfs_get_le32(b + 9);
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

static void admin_start(struct node *n, struct sub *s)
{
    const char *line = s->cmd.name;
    char out[ADMIN_TEXT_MAX];
    int rv = 0;
    if (strcmp(line, "status") == 0) {
        struct node_status st;
        publish_status(n);
        node_status(n, &st);
        status_json(&st, out, sizeof(out));
    } else if (strcmp(line, "snapshot") == 0) {
        /* The image is written in the background: say which one this
         * node holds now; `raftfs status` shows the new one once taken. */
        host_snapshot_now(n->host);
        snprintf(out, sizeof(out), "snapshot requested (the last one is at "
                 "index %" PRIu64 ")", host_snap_index(n->host));
    } else {
        struct cons_status st;
        cons_node_status(host_core(n->host), &st);
        if (st.role == CONS_LEADER || n->stopping) {
            rv = n->stopping ? RFS_ESHUTDOWN
                             : admin_exec(n, line, out, sizeof(out));
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
                admin_send(n, st.leader, 1, a->id, 0, line);
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
    host_tick(n->host);
}

static void close_all(struct node *n)
{
    uv_timer_stop(&n->tick);
    uv_close((uv_handle_t *)&n->tick, NULL);
    uv_close((uv_handle_t *)&n->wake, NULL);
    uv_close((uv_handle_t *)&n->listener, NULL);
    while (n->conns) {
        conn_close(n->conns, NULL);
    }
    for (unsigned i = 0; i < n->n_peers; i++) {
        while (n->peers[i].waiting) {
            struct out_buf *o = n->peers[i].waiting;
            n->peers[i].waiting = o->next;
            rfs_free(o->plain.base);
            rfs_free(o);
        }
    }
    while (n->delayed) {
        struct delayed *d = n->delayed;
        n->delayed = d->next;
        uv_timer_stop(&d->timer);
        rfs_free(d->plain.base);
        uv_close((uv_handle_t *)&d->timer, delayed_freed);
    }
    host_close(n->host, RFS_ESHUTDOWN);
    io_publish(n); /* No lease for the fast path once stopping. */
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
        nlog(n, NODE_LOG_INFO, "stopping");
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
        nlog(n, NODE_LOG_INFO, "founded a cluster of %u", n->o.bootstrap->n);
        rv = store_load(n->store, &l);
        if (rv != 0) {
            snprintf(errmsg, RFS_ERRMSG_SZ, "%s", store_errmsg(n->store));
            return rv;
        }
    }
    struct host_options ho = {
        .id = n->o.id,
        .boot = n->boot,
        .tick_ms = n->o.tick_ms,
        .election_ticks = n->o.election_ticks,
        .heartbeat_ticks = n->o.heartbeat_ticks,
        .commit_timeout_ms = n->o.commit_timeout_ms,
        .lease_reads = n->o.lease_reads,
        .boot_hold = true, /* Other members may use leases. */
        .snapshot_entries = n->o.snapshot_entries,
        .snapshot_bytes = n->o.snapshot_bytes,
        .snap_index = l.snap.index,
        .seed = n->boot ^ n->o.id,
        .trace = core_trace,
        .trace_data = n,
        .on_apply = n->o.on_apply,
        .apply_data = n->o.apply_data,
    };
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
        .publish = io_publish,
        .idle = io_idle,
        .log = io_log,
    };
    struct cons_load cl = {.hs = l.hs, .snap = l.snap, .entries = l.entries,
                           .n_entries = l.n_entries, .applied = l.applied};
    rv = host_new(&ho, &io, &cl, &n->host);
    store_loaded_free(&l);
    if (rv != 0) {
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
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* Boot ids grow with time, so a restart always starts a newer session
     * than any request of the previous process still in flight. */
    n->boot = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;

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
    rv = snapfiles_init(&n->snaps, n->dir, errmsg);
    if (rv != 0) {
        goto err_free;
    }
    snprintf(path, sizeof(path), "%s/db", n->dir);
    rv = store_open(path, NULL, &n->store, errmsg);
    if (rv != 0) {
        goto err_free;
    }
    rv = load_core(n, errmsg);
    if (rv != 0) {
        goto err_after_store;
    }
    struct sockaddr_in sa;
    if (parse_addr(o->listen, &sa) != 0) {
        rv = -EINVAL;
        snprintf(errmsg, RFS_ERRMSG_SZ, "bad listen address '%s' (want "
                                        "IPv4:port)",
                 o->listen);
        goto err_after_core;
    }
    uv_loop_init(&n->loop);
    uv_tcp_init(&n->loop, &n->listener);
    n->listener.data = n;
    rv = uv_tcp_bind(&n->listener, (struct sockaddr *)&sa, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&n->listener, 64, on_accept);
    }
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "cannot listen on %s: %s", o->listen,
                 uv_strerror(rv));
        uv_close((uv_handle_t *)&n->listener, NULL);
        uv_run(&n->loop, UV_RUN_DEFAULT);
        uv_loop_close(&n->loop);
        goto err_after_core;
    }
    uv_timer_init(&n->loop, &n->tick);
    n->tick.data = n;
    uv_async_init(&n->loop, &n->wake, on_wake);
    /* RAFTFS_TEST_NET_FAULTS=MS:SEED (tests only): hold each outgoing frame
     * back 0..MS ms, drawn from SEED, so frames arrive late and reordered. */
    const char *faults = getenv("RAFTFS_TEST_NET_FAULTS");
    if (faults != NULL) {
        unsigned long long ms = 0, seed = 1;
        if (sscanf(faults, "%llu:%llu", &ms, &seed) >= 1 && ms > 0 &&
            ms <= 1000) {
            n->fault_jitter_ms = (unsigned)ms;
            n->fault_rng = (seed ? seed : 1) * 2654435761u + n->o.id;
            nlog(n, NODE_LOG_WARN, "test fault layer on: outgoing frames "
                 "delayed 0..%llu ms (RAFTFS_TEST_NET_FAULTS)", ms);
        }
    }
    n->wake.data = n;
    uv_timer_start(&n->tick, on_tick, n->o.tick_ms, n->o.tick_ms);
    host_poke(n->host);
    if (pthread_create(&n->thread, NULL, loop_main, n) != 0) {
        rv = -EAGAIN;
        snprintf(errmsg, RFS_ERRMSG_SZ, "cannot start the loop thread");
        goto err_after_core; /* Handles leak here; the process exits. */
    }
    nlog(n, NODE_LOG_INFO, "listening on %s, data in %s", o->listen, n->dir);
    *out = n;
    return 0;

err_after_core:
    host_free(n->host);
err_after_store:
    store_close(n->store);
err_free:
    pthread_mutex_destroy(&n->lock);
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
    host_free(n->host);
    store_close(n->store);
    pthread_mutex_destroy(&n->lock);
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

int node_read_barrier(struct node *n, node_cb cb, void *arg)
{
    /* A leader inside its lease that has applied its whole commit index
     * answers here, on the caller's thread: the loop would only confirm
     * the same thing one thread hop later. */
    pthread_mutex_lock(&n->lock);
    bool now = n->fast.lease_end_ns != 0 &&
               n->fast.applied >= n->fast.commit &&
               boottime_ns() < n->fast.lease_end_ns;
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
    s->cb = cb;
    s->arg = arg;
    return enqueue(n, s);
}

int node_admin(struct node *n, const char *line, node_admin_cb cb, void *arg)
{
    size_t len = strnlen(line, ADMIN_TEXT_MAX);
    struct sub *s = rfs_calloc(1, sizeof(*s) + len + 1);
    if (s == NULL) {
        return -ENOMEM;
    }
    s->admin_cb = cb;
    s->arg = arg;
    char *p = (char *)(s + 1);
    memcpy(p, line, len);
    p[len] = '\0';
    s->cmd.name = p;
    return enqueue(n, s);
}

struct store *node_store(struct node *n)
{
    return n->store;
}

void node_status(struct node *n, struct node_status *st)
{
    pthread_mutex_lock(&n->lock);
    *st = n->status;
    pthread_mutex_unlock(&n->lock);
}
