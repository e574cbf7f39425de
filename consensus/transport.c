/*
 * The peer transport: one authenticated, encrypted TCP connection out to
 * each member (reconnected with backoff from 50 ms to 2 s), used to send;
 * connections in are used to receive. See transport.h.
 *
 * Peers that fail the handshake, or send anything malformed, are dropped
 * and logged with their address. A message's sender must be the node the
 * handshake proved, and its recipient this node.
 */
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/endian.h"
#include "../common/err.h"
#include "../common/heap.h"
#include "config.h"
#include "secure.h"
#include "wire.h"

#define MAX_PEERS CONS_MAX_SERVERS
#define SEND_LIMIT (32u << 20) /* Bytes queued per connection. */
#define ADMIN_TEXT_MAX TRANSPORT_ADMIN_MAX

/* Set only in test binaries (transport.h). */
const struct transport_decorator *transport_test_decorator;

struct out_buf {
    struct out_buf *next;
    rfs_nodeid_t to;
    uint8_t type; /* WIRE_RAFT, WIRE_ADMIN or WIRE_GOSSIP. */
    struct rfs_buf plain; /* Encoded message, before sealing. */
};

struct conn {
    uv_tcp_t tcp;
    struct transport *t;
    bool outgoing;
    rfs_nodeid_t peer_id; /* Outgoing: whom we called. */
    bool closing;
    bool open;
    bool greeted; /* Incoming: the peer's hello passed host_hello. */
    struct secure sec;
    struct wire_reader rd;
    size_t queued; /* Bytes written but not yet completed. */
    char addr[64];
    uv_connect_t creq;
    struct conn *next; /* In t->conns. */
    /* Every read lands here: the reader copies what it keeps, so one
     * buffer per connection serves all its reads (libuv asks for one
     * before each read; a fresh 64 KiB each time cost an allocation and a
     * free per read on the hot path). */
    char rbuf[65536];
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
    /* Its last hello was refused (host_hello: a wiped folder): nothing is
     * sent to it until one is accepted, so it hears no leader from us. */
    bool refused;
    unsigned n_waiting;
    unsigned n_waiting_gossip; /* Of which GOSSIP frames. */
};

struct transport {
    uv_loop_t *loop;
    rfs_nodeid_t id;
    uint64_t data_id;
    uint32_t level; /* Said in hellos: TRANSPORT_LEVEL. */
    uint8_t sign_pk[SECURE_SIGN_PK_BYTES];
    char listen[CONS_ADDR_MAX];
    uint8_t secret[SECURE_KEY_BYTES];
    struct transport_cbs cb;
    uv_tcp_t listener;
    bool stopping;
    struct peer peers[MAX_PEERS];
    unsigned n_peers;
    struct conn *conns;
    unsigned conf_n; /* Size of the configuration the peers reflect. */
    rfs_index_t conf_index_seen;
    void *deco; /* The test decorator's state, or NULL. */
};

static void tlog(struct transport *t, enum rfs_log_level lv, const char *fmt,
                 ...) __attribute__((format(printf, 3, 4)));

static void tlog(struct transport *t, enum rfs_log_level lv, const char *fmt,
                 ...)
{
    char line[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    t->cb.log(t->cb.data, lv, line);
}

static void send_frame(struct transport *n, rfs_nodeid_t to, uint8_t type,
                       struct rfs_buf plain);

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
    struct transport *n = c->t;
    c->closing = true;
    if (why != NULL) {
        tlog(n, RFS_LOG_WARN, "dropping %s connection %s (%s %" PRIu64
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
                p->next_attempt = uv_now(n->loop) + p->backoff;
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

/* Frame and write a body; RAFT, ADMIN and GOSSIP bodies are sealed first. */
static void conn_send(struct conn *c, uint8_t type, const void *body,
                      size_t len)
{
    if (c->closing) {
        return;
    }
    bool sealed = type == WIRE_RAFT || type == WIRE_ADMIN ||
                  type == WIRE_GOSSIP;
    size_t blen = sealed ? len + SECURE_OVERHEAD : len;
    if (c->queued + blen > SEND_LIMIT) {
        tlog(c->t, RFS_LOG_DEBUG, "send queue to %s full: message dropped",
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

static struct peer *peer_get(struct transport *n, rfs_nodeid_t id)
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
    p->n_waiting_gossip = 0;
}

static void admin_frame(struct transport *n, rfs_nodeid_t from,
                        const uint8_t *b, size_t len);

/* Where we listen (a node that is joining knows no one, and answers its
 * leader there), our data folder's id, our feature level in the code field
 * (which older builds send as 0 and do not read), and after the address a
 * NUL and our public signing key: an older build reads the address as a
 * string and stops at the NUL. Straight onto the connection, past the test fault
 * layer: it must be the first frame the peer reads. */
static void send_hello(struct transport *n, struct conn *c)
{
    size_t tl = strlen(n->listen);
    uint8_t b[13 + CONS_ADDR_MAX + 1 + SECURE_SIGN_PK_BYTES];
    b[0] = ADMIN_HELLO;
    rfs_put_le64(b + 1, n->data_id);
    rfs_put_le32(b + 9, n->level);
    memcpy(b + 13, n->listen, tl);
    b[13 + tl] = '\0';
    memcpy(b + 14 + tl, n->sign_pk, SECURE_SIGN_PK_BYTES);
    conn_send(c, WIRE_ADMIN, b, 14 + tl + SECURE_SIGN_PK_BYTES);
}

static void on_frame(struct conn *c, const struct wire_frame *f)
{
    struct transport *n = c->t;
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
            tlog(n, RFS_LOG_INFO, "%s connection %s with node %" PRIu64
                                   " authenticated",
                 c->outgoing ? "outgoing" : "incoming", c->addr, c->sec.peer);
            if (c->outgoing) {
                send_hello(n, c);
                struct peer *p = peer_get(n, c->peer_id);
                if (p != NULL && p->out == c) {
                    p->backoff = 0;
                    flush_waiting(p);
                }
            }
        }
        return;
    }
    if ((f->type != WIRE_RAFT && f->type != WIRE_ADMIN &&
         f->type != WIRE_GOSSIP) ||
        c->outgoing) {
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
    size_t plen = f->len - SECURE_OVERHEAD;
    if (f->type == WIRE_ADMIN && plen >= 13 && plain[0] == ADMIN_HELLO) {
        /* The first frame on every connection: a peer whose data folder
         * changed (wiped, replaced) is refused before anything it says is
         * heard. */
        uint64_t data_id = rfs_get_le64(plain + 1);
        size_t tl = strnlen((const char *)plain + 13, plen - 13);
        const uint8_t *key = plen == 14 + tl + SECURE_SIGN_PK_BYTES
                                 ? plain + 14 + tl
                                 : NULL;
        struct peer *p = peer_get(n, c->sec.peer);
        if (!n->cb.hello(n->cb.data, c->sec.peer, data_id, key)) {
            rfs_free(plain);
            conn_close(c, "refused: its data folder is not the one it had");
            /* Our own connection to it stops too: a wiped node that kept
             * hearing our heartbeats would take us for its leader, and
             * wait for it, while its answers are refused here. */
            if (p != NULL) {
                p->refused = true;
                if (p->out != NULL) {
                    conn_close(p->out, NULL);
                }
                while (p->waiting != NULL) {
                    struct out_buf *o = p->waiting;
                    p->waiting = o->next;
                    rfs_free(o->plain.base);
                    rfs_free(o);
                }
                p->n_waiting = p->n_waiting_gossip = 0;
            }
            return;
        }
        if (p != NULL) {
            p->refused = false;
        }
        c->greeted = true;
        if (n->cb.level != NULL) {
            n->cb.level(n->cb.data, c->sec.peer, rfs_get_le32(plain + 9));
        }
    } else if (!c->greeted) {
        rfs_free(plain);
        conn_close(c, "a frame before the peer's hello");
        return;
    }
    if (f->type == WIRE_ADMIN) {
        admin_frame(n, c->sec.peer, plain, plen);
        rfs_free(plain);
        return;
    }
    if (f->type == WIRE_GOSSIP) {
        /* Heard only after the hello, like Raft messages: the sender is
         * the peer the handshake proved. What it says is not trusted here:
         * the observer's verifier proves every entry (gossip.h). A node
         * not running gossip ignores the frame rather than dropping a
         * connection that also carries its Raft traffic. */
        if (n->cb.gossip != NULL) {
            n->cb.gossip(n->cb.data, c->sec.peer, plain, plen);
        }
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
    if (m.from != c->sec.peer || m.to != n->id) {
        wire_msg_free(&m);
        rfs_free(plain);
        conn_close(c, "message claims another sender or recipient");
        return;
    }
    n->cb.raft(n->cb.data, &m);
    wire_msg_free(&m);
    rfs_free(plain);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct conn *c = h->data;
    buf->base = c->rbuf;
    buf->len = sizeof(c->rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    struct transport *n = c->t;
    (void)buf; /* c->rbuf. */
    if (nread < 0) {
        const char *why = nread == UV_EOF ? NULL : uv_strerror((int)nread);
        if (why == NULL && !c->open && !c->outgoing) {
            /* Hung up mid-handshake: typically a process that found out
             * we hold a secret it does not. Say so, with its address. */
            why = "closed before authenticating (wrong cluster secret?)";
        }
        conn_close(c, why);
        return;
    }
    if (n->cb.read_begin != NULL) {
        n->cb.read_begin(n->cb.data);
    }
    if (nread > 0 && !c->closing) {
        if (wire_reader_feed(&c->rd, c->rbuf, (size_t)nread) != 0) {
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
    /* A handshake or admin frame may have changed what the node can do (a
     * peer opened, a command ran). */
    n->cb.poke(n->cb.data);
}

static struct conn *conn_new(struct transport *n, bool outgoing)
{
    struct conn *c = rfs_calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->t = n;
    c->outgoing = outgoing;
    wire_reader_init(&c->rd);
    uv_tcp_init(n->loop, &c->tcp);
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
        tlog(c->t, RFS_LOG_DEBUG, "cannot reach node %" PRIu64 " at %s: %s",
             c->peer_id, c->addr, uv_strerror(status));
        conn_close(c, NULL);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct secure_out out;
    secure_init(&c->sec, true, c->t->id, c->peer_id, c->t->secret, &out);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    conn_send(c, out.type, out.body, out.len);
}

static void peer_connect(struct transport *n, struct peer *p)
{
    struct sockaddr_in sa;
    if (parse_addr(p->addr, &sa) != 0) {
        tlog(n, RFS_LOG_ERROR, "node %" PRIu64 " has a bad address '%s'",
             p->id, p->addr);
        p->next_attempt = uv_now(n->loop) + 10000;
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
void transport_sync(struct transport *n, const struct cons_conf *c,
                    rfs_index_t conf_index)
{
    if (conf_index != n->conf_index_seen || c->n != n->conf_n) {
        n->conf_index_seen = conf_index;
        n->conf_n = c->n;
        /* Drop peers that left. */
        unsigned k = 0;
        for (unsigned i = 0; i < n->n_peers; i++) {
            struct peer *p = &n->peers[i];
            if (cons_conf_get(c, p->id) != NULL ||
                (p->contact && cons_conf_get(c, n->id) == NULL)) {
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
            if (s->id == n->id || peer_get(n, s->id) != NULL ||
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
    uint64_t now = uv_now(n->loop);
    for (unsigned i = 0; i < n->n_peers; i++) {
        struct peer *p = &n->peers[i];
        if (p->out == NULL && now >= p->next_attempt && !n->stopping &&
            !p->refused) {
            peer_connect(n, p);
        }
    }
}

static void send_frame_now(struct transport *n, rfs_nodeid_t to, uint8_t type,
                           struct rfs_buf plain);

static void send_frame(struct transport *n, rfs_nodeid_t to, uint8_t type,
                       struct rfs_buf plain)
{
    if (n->deco != NULL && !n->stopping &&
        transport_test_decorator->wrap(n->deco, to, type, plain)) {
        return;
    }
    send_frame_now(n, to, type, plain);
}

void transport_send_frame_now(struct transport *t, rfs_nodeid_t to,
                              uint8_t type, struct rfs_buf plain)
{
    send_frame_now(t, to, type, plain);
}

static void send_frame_now(struct transport *n, rfs_nodeid_t to, uint8_t type,
                           struct rfs_buf plain)
{
    struct peer *p = peer_get(n, to);
    if (p == NULL || p->refused) {
        rfs_free(plain.base);
        return;
    }
    if (p->out != NULL && p->out->open) {
        conn_send(p->out, type, plain.base, plain.len);
        rfs_free(plain.base);
        return;
    }
    if (p->n_waiting >= 256 ||
        (type == WIRE_GOSSIP && p->n_waiting_gossip >= 16)) {
        /* Bounded: the oldest state is stale anyway. Gossip more tightly:
         * a push can carry hundreds of entries, an observer that a
         * firewall keeps out never connects, and its peers' digests and
         * pulls bring it what was lost. */
        rfs_free(plain.base);
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
    p->n_waiting_gossip += type == WIRE_GOSSIP;
}

void transport_send(struct transport *n, rfs_nodeid_t to, struct rfs_buf plain)
{
    if (n->stopping) {
        rfs_free(plain.base); /* The connections are closing. */
        return;
    }
    send_frame(n, to, WIRE_RAFT, plain);
}

void transport_gossip(struct transport *n, rfs_nodeid_t to,
                      struct rfs_buf plain)
{
    if (n->stopping) {
        rfs_free(plain.base);
        return;
    }
    send_frame(n, to, WIRE_GOSSIP, plain);
}

static void on_accept(uv_stream_t *server, int status)
{
    struct transport *n = server->data;
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
    secure_init(&c->sec, false, n->id, 0, n->secret, &out);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}


/* ------------------------------------------------------------------------ */
/* Admin frames                                                              */

/* Layout: kind (u8), id (u64), code (i32), text. */
void transport_admin(struct transport *n, rfs_nodeid_t to,
                     enum transport_admin_kind kind, uint64_t id, int code,
                     const void *text, size_t len)
{
    size_t tl = len < ADMIN_TEXT_MAX ? len : ADMIN_TEXT_MAX;
    struct rfs_buf b = {rfs_malloc(13 + tl), 13 + tl};
    if (b.base == NULL) {
        return;
    }
    uint8_t *p = b.base;
    p[0] = (uint8_t)kind;
    rfs_put_le64(p + 1, id);
    rfs_put_le32(p + 9, (uint32_t)code);
    memcpy(p + 13, text, tl);
    send_frame(n, to, WIRE_ADMIN, b);
}

static void admin_frame(struct transport *n, rfs_nodeid_t from,
                        const uint8_t *b, size_t len)
{
    if (len < 13 || len > 13 + ADMIN_TEXT_MAX ||
        (b[0] != ADMIN_REQUEST && b[0] != ADMIN_REPLY && b[0] != ADMIN_HELLO)) {
        tlog(n, RFS_LOG_WARN, "malformed admin frame from node %" PRIu64,
             from);
        return;
    }
    char text[ADMIN_TEXT_MAX + 1];
    memcpy(text, b + 13, len - 13);
    text[len - 13] = '\0';
    if (b[0] == ADMIN_HELLO) {
        char err[RFS_ERRMSG_SZ];
        if (peer_get(n, from) != NULL || n->n_peers >= MAX_PEERS ||
            from == n->id || config_parse_addr(text, err) != 0) {
            return;
        }
        struct peer *p = &n->peers[n->n_peers++];
        memset(p, 0, sizeof(*p));
        p->id = from;
        p->contact = true;
        snprintf(p->addr, sizeof(p->addr), "%.63s", text);
        tlog(n, RFS_LOG_INFO, "node %" PRIu64 " at %s called: answering it "
                               "there", from, p->addr);
        return;
    }
    n->cb.admin(n->cb.data, from, (enum transport_admin_kind)b[0],
                rfs_get_le64(b + 1), (int32_t)rfs_get_le32(b + 9), text,
                len - 13);
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */

bool transport_connected(const struct transport *n, rfs_nodeid_t id)
{
    for (unsigned i = 0; i < n->n_peers; i++) {
        if (n->peers[i].id == id) {
            return n->peers[i].out != NULL && n->peers[i].out->open;
        }
    }
    return false;
}

unsigned transport_connected_count(const struct transport *n)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n->n_peers; i++) {
        k += n->peers[i].out && n->peers[i].out->open;
    }
    return k;
}

int transport_open(uv_loop_t *loop, rfs_nodeid_t id, uint64_t data_id,
                   const uint8_t *sign_pk, const char *listen,
                   const uint8_t *secret, const struct transport_cbs *cb,
                   struct transport **out, char *errmsg)
{
    struct sockaddr_in sa;
    if (parse_addr(listen, &sa) != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "bad listen address '%s' (want "
                                        "IPv4:port)",
                 listen);
        return -EINVAL;
    }
    struct transport *n = rfs_calloc(1, sizeof(*n));
    if (n == NULL) {
        return -ENOMEM;
    }
    n->loop = loop;
    n->id = id;
    n->data_id = data_id;
    n->level = TRANSPORT_LEVEL;
    /* Tests play a build from before the levels (tests/fuse). */
    const char *lv = getenv("RAFTFS_TEST_PROTO_LEVEL");
    if (lv != NULL) {
        n->level = (uint32_t)strtoul(lv, NULL, 10);
    }
    memcpy(n->sign_pk, sign_pk, SECURE_SIGN_PK_BYTES);
    snprintf(n->listen, sizeof(n->listen), "%s", listen);
    memcpy(n->secret, secret, SECURE_KEY_BYTES);
    n->cb = *cb;
    uv_tcp_init(loop, &n->listener);
    n->listener.data = n;
    int rv = uv_tcp_bind(&n->listener, (struct sockaddr *)&sa, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&n->listener, 64, on_accept);
    }
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "cannot listen on %s: %s", listen,
                 uv_strerror(rv));
        uv_close((uv_handle_t *)&n->listener, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        rfs_free(n);
        return -EADDRINUSE;
    }
    if (transport_test_decorator != NULL) {
        char what[128] = "";
        n->deco = transport_test_decorator->open(n, loop, id, what,
                                                 sizeof(what));
        if (n->deco != NULL) {
            tlog(n, RFS_LOG_WARN, "test decorator on: %s", what);
        }
    }
    *out = n;
    return 0;
}

void transport_close(struct transport *n)
{
    n->stopping = true;
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
    if (n->deco != NULL) {
        transport_test_decorator->close(n->deco);
        n->deco = NULL;
    }
}

void transport_free(struct transport *n)
{
    rfs_free(n);
}
