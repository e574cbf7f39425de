/*
 * The node runtime's images from peers (issue 16, part 2; docs/protocol.md,
 * "Observers: images from peers"): the I/O around consensus/gimage.h's
 * statement, codec and policies, on the node's loop thread.
 *
 * - Signing. When a voter records a snapshot it took (io_snapshot_record),
 *   it signs a statement for the image: index, term, chain(index) and the
 *   image's BLAKE2b-256, both computed by the thread that wrote the image
 *   (store_snapshot_write_sums), its size and the hash of the
 *   configuration at index. The statement is kept beside the image as
 *   snap-INDEX.stmt (snapfiles_stmt_put, on the threadpool) and goes with
 *   it (snapfiles_drop); a restart serves it again.
 * - Serving. ASK is answered with an OFFER through struct gimage_server;
 *   a GET it admits is read by snapfiles_read on the threadpool and
 *   answered with a CHUNK. Bounds are the server's: one read per peer,
 *   two in all.
 * - Fetching. An observer whose released index has not moved for
 *   FETCH_AFTER_MS while a signed point proves more (its gap is below what
 *   any peer answers) runs a struct gimage_fetch: ASK, take an offer, GET
 *   one chunk at a time, each written to fetching.img on the threadpool
 *   before the next GET goes out. The last chunk's hash is checked by the
 *   fetch; the image is then installed through the core
 *   (cons_node_install_image), whose empty last chunk makes the host
 *   install fetching.img by the leader's own path. Once the host recorded
 *   it, the statement is kept and served, and the gossip spread restarts
 *   at the image's index from the store's chain, which must equal the
 *   statement's.
 *
 * Failure modes: a forged offer or forged bytes is refused naming the
 * sender (a WARN line with its id), which the fetch bans, and the fetch
 * goes on with another peer; a write that fails aborts the transfer (it
 * starts again from offset 0); a GET unanswered for stall_ms drops that
 * peer's offer. If no peer can serve, nothing is lost: the leader's Raft
 * snapshot still comes, later (node.c's gossip_stall_heartbeats).
 *
 * A leader's snapshot may arrive during a fetch: it fills receiving.img,
 * the fetch fetching.img, so neither truncates or mixes the other's bytes
 * (snapfiles_receive_part), and whichever is installed first wins.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../common/heap.h"
#include "gimage.h"
#include "node_i.h"

/* An observer whose applied index stood still this long while a signed
 * point proved more starts fetching an image: two digest periods, in
 * which pulls of what it lacks went unanswered. */
#define FETCH_AFTER_MS 2000
/* Most bytes of a statement file: an OFFER with the largest
 * configuration. */
#define STMT_FILE_MAX (GIMAGE_CONF_MAX + 4096)

struct node_gimage {
    struct gimage_server *server;
    rfs_index_t serving;         /* The image served (0: none). */
    /* The last image this node took: its sums, until it is recorded. */
    rfs_index_t took;
    struct store_snap_sums sums;

    /* Fetching (observers). */
    struct gimage_fetch *fetch;
    rfs_index_t fetch_gap;
    bool writing;                /* A chunk is being written. */
    rfs_index_t last_applied;    /* The spread's, at the last tick. */
    uint64_t moved_ms;           /* When it last moved. */
    /* An image handed to the core, until the host recorded it. */
    bool installing;
    struct gimage_stmt inst;
    uint8_t *inst_conf;
    size_t inst_conf_len;
};

/* A job on the threadpool: a chunk read (serving), a chunk write
 * (fetching), a statement written. */
struct gjob {
    uv_work_t work;
    struct node *n;
    struct gimage_read r;        /* Reads. */
    uint64_t off;                /* Writes. */
    bool install;                /* The last chunk: install after. */
    rfs_index_t index;           /* Statements. */
    uint8_t *buf;
    size_t len;
    int rv;
    char err[RFS_ERRMSG_SZ];
};

static uint64_t now_ms(void)
{
    return node__boottime_ns() / 1000000u;
}

int node__gimage_open(struct node *n)
{
    if (!n->o.gossip) {
        return 0;
    }
    n->gimage = rfs_calloc(1, sizeof(*n->gimage));
    if (n->gimage == NULL) {
        return -ENOMEM;
    }
    n->gimage->server = gimage_server_new();
    if (n->gimage->server == NULL) {
        rfs_free(n->gimage);
        n->gimage = NULL;
        return -ENOMEM;
    }
    /* The statement of the image this node holds, if it kept one: read
     * once at start, before the loop runs (a small file). */
    rfs_index_t at = host_snap_index(n->host);
    if (at == 0) {
        return 0;
    }
    uint8_t *buf = rfs_malloc(STMT_FILE_MAX);
    size_t len = 0;
    if (buf == NULL) {
        return 0;
    }
    struct gimage_msg m;
    if (snapfiles_stmt_get(&n->snaps, at, buf, STMT_FILE_MAX, &len) == 0 &&
        gimage_msg_decode(&(struct rfs_buf){buf, len}, &m) == 0 &&
        m.kind == GIMAGE_OFFER && m.stmt.index == at &&
        gimage_server_set(n->gimage->server, &m.stmt, &m.conf) == 0) {
        n->gimage->serving = at;
        node__log(n, RFS_LOG_INFO, "images: serving image %" PRIu64
                  " (signed by node %" PRIu64 ")", at, m.stmt.signer);
    }
    rfs_free(buf);
    return 0;
}

static void fetch_end(struct node_gimage *g)
{
    gimage_fetch_free(g->fetch);
    g->fetch = NULL;
}

void node__gimage_close(struct node *n)
{
    struct node_gimage *g = n->gimage;
    if (g == NULL) {
        return;
    }
    fetch_end(g);
    gimage_server_free(g->server);
    rfs_free(g->inst_conf);
    rfs_free(g);
    n->gimage = NULL;
}

/* ---- Signing --------------------------------------------------------------- */

static void stmt_work(uv_work_t *w)
{
    struct gjob *j = w->data;
    j->rv = snapfiles_stmt_put(&j->n->snaps, j->index, j->buf, j->len,
                               j->err);
}

static void stmt_done(uv_work_t *w, int status)
{
    struct gjob *j = w->data;
    (void)status;
    if (j->rv != 0) {
        /* Served from memory meanwhile; only a restart loses it. */
        node__log(j->n, RFS_LOG_WARN, "images: keeping the statement of "
                  "image %" PRIu64 ": %s", j->index, j->err);
    } else if (j->index != host_snap_index(j->n->host)) {
        /* The image was superseded (and deleted) while its statement was
         * written: the statement would be left alone. */
        snapfiles_drop(&j->n->snaps, j->index);
    }
    rfs_free(j->buf);
    rfs_free(j);
}

/* Serve st (with conf) and keep it beside its image. */
static void serve(struct node *n, const struct gimage_stmt *st,
                  const struct rfs_buf *conf)
{
    struct node_gimage *g = n->gimage;
    if (gimage_server_set(g->server, st, conf) != 0) {
        g->serving = 0;
        return;
    }
    g->serving = st->index;
    struct gimage_msg m = {.kind = GIMAGE_OFFER, .stmt = *st, .conf = *conf};
    struct rfs_buf out;
    if (gimage_msg_encode(&m, &out) != 0) {
        return;
    }
    struct gjob *j = rfs_calloc(1, sizeof(*j));
    if (j == NULL) {
        rfs_free(out.base);
        return;
    }
    j->n = n;
    j->work.data = j;
    j->index = st->index;
    j->buf = out.base;
    j->len = out.len;
    uv_queue_work(&n->loop, &j->work, stmt_work, stmt_done);
}

void node__gimage_sums(struct node *n, rfs_index_t index,
                       const struct store_snap_sums *sums)
{
    if (n->gimage != NULL) {
        n->gimage->took = index;
        n->gimage->sums = *sums;
    }
}

/* Whether this node is a voter whose key the configuration records: only
 * then can anybody check what it signs. */
static bool signing_voter(struct node *n)
{
    const struct cons_server *me =
        cons_conf_get(cons_node_conf(host_core(n->host)), n->o.id);
    return me != NULL && me->role == CONS_VOTER &&
           memcmp(me->key, n->sign_pk, CONS_KEY_BYTES) == 0;
}

void node__gimage_recorded(struct node *n, const struct cons_snap_meta *meta)
{
    struct node_gimage *g = n->gimage;
    if (g == NULL) {
        return;
    }
    if (g->serving != 0 && g->serving != meta->index) {
        /* The image served is superseded (and deleted with its
         * statement): an observer's own image is not vouched for. */
        gimage_server_clear(g->server);
        g->serving = 0;
    }
    if (g->took != meta->index || !signing_voter(n) ||
        !g->sums.chain_known) {
        return;
    }
    struct gimage_stmt st = {.index = meta->index, .term = meta->term,
                             .size = meta->size, .signer = n->o.id};
    memcpy(st.chain, g->sums.chain, sizeof(st.chain));
    memcpy(st.image, g->sums.image, sizeof(st.image));
    struct rfs_buf conf;
    if (cons_conf_encode(&meta->conf, &conf) != 0) {
        return;
    }
    gimage_hash(conf.base, conf.len, st.conf);
    gimage_stmt_sign(&st, n->sign_sk);
    serve(n, &st, &conf);
    rfs_free(conf.base);
    n->gossip.images_signed++;
    g->took = 0;
}

/* ---- Serving --------------------------------------------------------------- */

static void send_msg(struct node *n, rfs_nodeid_t to,
                     const struct gimage_msg *m)
{
    struct rfs_buf out;
    if (gimage_msg_encode(m, &out) == 0) {
        transport_gossip(n->net, to, out); /* Takes out. */
    }
}

static void read_work(uv_work_t *w)
{
    struct gjob *j = w->data;
    j->rv = snapfiles_read(&j->n->snaps, j->r.index, j->r.off, j->buf,
                           j->r.len);
}

static void read_done(uv_work_t *w, int status)
{
    struct gjob *j = w->data;
    struct node *n = j->n;
    (void)status;
    struct node_gimage *g = n->gimage;
    if (g != NULL && gimage_server_done(g->server, &j->r) && j->rv == 0 &&
        !n->stopping) {
        struct gimage_msg c = {.kind = GIMAGE_CHUNK, .from = n->o.id,
                               .index = j->r.index, .off = j->r.off,
                               .last = j->r.last,
                               .data = {j->buf, j->r.len}};
        send_msg(n, j->r.to, &c);
        n->gossip.image_bytes_served += j->r.len;
        n->gossip.images_served += j->r.last;
    }
    rfs_free(j->buf);
    rfs_free(j);
}

static void on_get(struct node *n, rfs_nodeid_t from,
                   const struct gimage_msg *m)
{
    struct gimage_read r;
    if (gimage_server_get(n->gimage->server, from, m, &r) != 0) {
        return; /* Not this image, or over a bound: the fetcher asks on. */
    }
    struct gjob *j = rfs_calloc(1, sizeof(*j));
    uint8_t *buf = rfs_malloc(r.len > 0 ? r.len : 1);
    if (j == NULL || buf == NULL) {
        rfs_free(j);
        rfs_free(buf);
        gimage_server_done(n->gimage->server, &r);
        return;
    }
    j->n = n;
    j->work.data = j;
    j->r = r;
    j->buf = buf;
    uv_queue_work(&n->loop, &j->work, read_work, read_done);
}

/* ---- Fetching -------------------------------------------------------------- */

static void refused(struct node *n, const struct gossip_verdict *v)
{
    if (v->refused == 0) {
        return;
    }
    n->gossip.image_refusals++;
    node__log(n, RFS_LOG_WARN, "images: %s (%s)", v->why,
              rfs_strerror(v->refused));
    snprintf(n->gossip.last_refusal, sizeof(n->gossip.last_refusal), "%s",
             v->why);
}

/* The voters whose statements count: those of the configuration in force,
 * as the gossip verifier's (node_gossip.c, gossip_peers). */
static int set_voters(struct node *n)
{
    const struct cons_conf *c = cons_node_conf(host_core(n->host));
    struct gossip_key keys[CONS_MAX_SERVERS];
    unsigned k = 0;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].role == CONS_VOTER) {
            keys[k].id = c->servers[i].id;
            memcpy(keys[k].pk, c->servers[i].key, GOSSIP_PK_BYTES);
            k++;
        }
    }
    return gimage_fetch_set_voters(n->gimage->fetch, keys, k);
}

static void write_work(uv_work_t *w)
{
    struct gjob *j = w->data;
    j->rv = snapfiles_receive_part(&j->n->snaps, j->off, j->buf, j->len,
                                   j->err);
}

static void install(struct node *n)
{
    struct node_gimage *g = n->gimage;
    struct rfs_buf conf;
    const struct gimage_stmt *st = gimage_fetch_result(g->fetch, &conf);
    struct cons_snap_meta meta = {.index = st->index, .term = st->term,
                                  .size = st->size};
    /* The node may have become a voter while the last chunk was written:
     * the core refuses it then too (-EINVAL). */
    int rv = n->spread_voter ? -EINVAL : cons_conf_decode(&conf, &meta.conf);
    uint8_t *keep = conf.len > 0 ? rfs_malloc(conf.len) : NULL;
    if (rv == 0 && conf.len > 0 && keep == NULL) {
        rv = -ENOMEM;
    }
    if (rv == 0) {
        rv = cons_node_install_image(host_core(n->host), &meta);
    }
    if (rv != 0) {
        /* -EALREADY: gossip brought this node past it meanwhile. */
        node__log(n, rv == -EALREADY ? RFS_LOG_INFO : RFS_LOG_WARN,
                  "images: image %" PRIu64 " not installed: %s", st->index,
                  rfs_strerror(rv));
        rfs_free(keep);
        fetch_end(g);
        return;
    }
    node__log(n, RFS_LOG_INFO, "images: installing image %" PRIu64
              " (%" PRIu64 " bytes) vouched for by node %" PRIu64,
              st->index, st->size, st->signer);
    if (conf.len > 0) {
        memcpy(keep, conf.base, conf.len);
    }
    rfs_free(g->inst_conf);
    g->inst_conf = keep;
    g->inst_conf_len = conf.len;
    g->inst = *st;
    g->installing = true;
    fetch_end(g);
    host_poke(n->host);
}

static void write_done(uv_work_t *w, int status)
{
    struct gjob *j = w->data;
    struct node *n = j->n;
    (void)status;
    struct node_gimage *g = n->gimage;
    if (g != NULL && g->fetch != NULL && !n->stopping) {
        g->writing = false;
        if (j->rv != 0) {
            node__log(n, RFS_LOG_WARN, "images: %s: the transfer starts "
                      "again", j->err);
            gimage_fetch_abort(g->fetch);
        } else if (j->install) {
            install(n);
        }
        node__gimage_tick(n);
    } else if (g != NULL) {
        g->writing = false;
    }
    rfs_free(j->buf);
    rfs_free(j);
}

static void on_chunk(struct node *n, rfs_nodeid_t from,
                     const struct gimage_msg *m)
{
    struct node_gimage *g = n->gimage;
    if (g->fetch == NULL || g->writing) {
        return;
    }
    struct gossip_verdict v;
    enum gimage_chunk_fate f = gimage_fetch_chunk(g->fetch, from, m, &v);
    if (f == GIMAGE_CHUNK_REFUSED) {
        refused(n, &v);
        return;
    }
    if (f == GIMAGE_CHUNK_IGNORE) {
        return;
    }
    struct gjob *j = rfs_calloc(1, sizeof(*j));
    uint8_t *buf = rfs_malloc(m->data.len > 0 ? m->data.len : 1);
    if (j == NULL || buf == NULL) {
        rfs_free(j);
        rfs_free(buf);
        gimage_fetch_abort(g->fetch);
        return;
    }
    if (m->data.len > 0) {
        memcpy(buf, m->data.base, m->data.len);
    }
    j->n = n;
    j->work.data = j;
    j->off = m->off;
    j->buf = buf;
    j->len = m->data.len;
    j->install = f == GIMAGE_CHUNK_INSTALL;
    g->writing = true;
    uv_queue_work(&n->loop, &j->work, write_work, write_done);
}

/* The host recorded the image handed to the core: keep and serve its
 * statement; the spread restarts from the store (node__gossip_sync). */
static void installed(struct node *n)
{
    struct node_gimage *g = n->gimage;
    if (!g->installing || host_snap_index(n->host) < g->inst.index) {
        return;
    }
    g->installing = false;
    if (host_snap_index(n->host) != g->inst.index) {
        return; /* A newer image (the leader's) overtook it. */
    }
    n->gossip.images_fetched++;
    n->gossip.image_bytes_fetched += g->inst.size;
    /* The chain as the install left it (snapfiles_receive reads it before
     * anything applies past the image: by now gossip may have). */
    if (n->snaps.installed != g->inst.index || !n->snaps.installed_chain_ok) {
        node__log(n, RFS_LOG_WARN, "images: installed image %" PRIu64
                  " from a peer; not served on: its chain hash could not "
                  "be read after the install", g->inst.index);
        return;
    }
    if (memcmp(n->snaps.installed_chain, g->inst.chain,
               sizeof(g->inst.chain)) != 0) {
        /* The image hashed to a voter's statement yet holds another
         * chain: that voter signed a bad image. Not served on. */
        node__log(n, RFS_LOG_ERROR, "images: image %" PRIu64 " holds "
                  "another chain hash than node %" PRIu64 "'s statement "
                  "says", g->inst.index, g->inst.signer);
        return;
    }
    struct rfs_buf conf = {g->inst_conf, g->inst_conf_len};
    serve(n, &g->inst, &conf);
    node__log(n, RFS_LOG_INFO, "images: installed image %" PRIu64
              " from a peer", g->inst.index);
}

void node__gimage_tick(struct node *n)
{
    struct node_gimage *g = n->gimage;
    if (g == NULL || n->stopping) {
        return;
    }
    installed(n);
    if (g->serving != 0 && g->serving != host_snap_index(n->host) &&
        !g->installing) {
        /* Another image replaced it (a leader's snapshot installed here
         * sweeps the old one and its statement): nothing left to serve. */
        gimage_server_clear(g->server);
        g->serving = 0;
    }
    if (n->spread == NULL || n->spread_voter || g->installing) {
        if (g->fetch != NULL && !g->writing) {
            fetch_end(g);
        }
        return;
    }
    uint64_t now = now_ms();
    rfs_index_t applied = spread_applied_index(n->spread, NULL);
    if (applied != g->last_applied || g->moved_ms == 0) {
        g->last_applied = applied;
        g->moved_ms = now;
    }
    if (g->fetch != NULL && applied >= g->fetch_gap && !g->writing) {
        fetch_end(g); /* Entries came after all. */
    }
    if (g->fetch == NULL) {
        if (spread_known_head(n->spread) <= applied ||
            now - g->moved_ms < FETCH_AFTER_MS) {
            return;
        }
        struct gimage_fetch_options fo = {.chunk = GIMAGE_CHUNK_MAX,
                                          .ask_ms = 1000,
                                          .stall_ms = 3000};
        struct cons_status cs;
        cons_node_status(host_core(n->host), &cs);
        g->fetch = gimage_fetch_new(&fo, applied + 1, cs.leader);
        if (g->fetch == NULL || set_voters(n) != 0) {
            fetch_end(g);
            return;
        }
        g->fetch_gap = applied + 1;
        node__log(n, RFS_LOG_INFO, "images: gossip brings nothing past %"
                  PRIu64 " (proven up to %" PRIu64 "): asking peers for an "
                  "image", applied, spread_known_head(n->spread));
    }
    if (g->writing) {
        return; /* One chunk at a time: the next GET after the write. */
    }
    struct gimage_step step;
    gimage_fetch_next(g->fetch, now, &step);
    step.msg.from = n->o.id;
    if (step.kind == GIMAGE_GET) {
        send_msg(n, step.to, &step.msg);
    } else if (step.kind == GIMAGE_ASK) {
        const struct cons_conf *c = cons_node_conf(host_core(n->host));
        for (unsigned i = 0; i < c->n; i++) {
            rfs_nodeid_t id = c->servers[i].id;
            if (id != n->o.id && transport_connected(n->net, id)) {
                send_msg(n, id, &step.msg);
            }
        }
    }
}

/* ---- Messages -------------------------------------------------------------- */

void node__gimage_recv(struct node *n, rfs_nodeid_t from, const uint8_t *body,
                       size_t len)
{
    struct node_gimage *g = n->gimage;
    if (g == NULL || n->stopping) {
        return;
    }
    struct gimage_msg m;
    if (gimage_msg_decode(&(struct rfs_buf){(void *)body, len}, &m) != 0) {
        node__log(n, RFS_LOG_WARN, "images: a malformed message from node %"
                  PRIu64 " (%zu bytes): dropped", from, len);
        return;
    }
    switch (m.kind) {
    case GIMAGE_ASK: {
        struct gimage_msg offer;
        if (gimage_server_ask(g->server, n->o.id, m.at, &offer)) {
            send_msg(n, from, &offer);
        }
        break;
    }
    case GIMAGE_GET:
        on_get(n, from, &m);
        break;
    case GIMAGE_OFFER:
        if (g->fetch != NULL) {
            struct gossip_verdict v;
            if (gimage_fetch_offer(g->fetch, from, &m, &v) == 0) {
                refused(n, &v);
            }
            node__gimage_tick(n);
        }
        break;
    default: /* GIMAGE_CHUNK */
        on_chunk(n, from, &m);
        break;
    }
}
