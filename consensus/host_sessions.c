/*
 * Node sessions in the host driver (docs/node.md): this node's own
 * session, kept alive by its ordinary traffic and renewed under a new
 * boot when it lapses, and, on the leader, the end of the sessions of
 * nodes not heard within their TTL. Apart from host.c because it is a
 * policy of its own on top of the loop: the loop calls in at a few points
 * (each tick, each message, each applied entry, after each entry point),
 * and nothing here takes part in the ordering host.h numbers.
 */
#include <inttypes.h>

#include "../common/err.h"
#include "../common/heap.h"
#include "host_i.h"

struct host_ending_req {
    struct host *h;
    rfs_nodeid_t client;
    uint64_t boot;
};

/*
 * This node's own session: it opens one (SESSION_OPEN under its boot) at
 * start, and keeps it alive by its ordinary traffic: no extra round. On
 * its own clock it knows when the session may have ended: TTL * 9/10 minus
 * quantization after the send tick of the last message a leader is known
 * to have received (cons_node_session_base). From then on, and when its
 * SESSION_END applies, changes fail with -EROFS until it has opened a new
 * session under a new boot, which it does by itself at once.
 *
 * As leader it ends the sessions of the nodes it has not heard from for
 * their TTL (any message counts; a new leader counts every session as
 * heard at its election), by proposing SESSION_END, once per session
 * while the proposal is pending.
 */

static uint64_t ttl_ticks_of(const struct host *h, uint64_t ttl_ms)
{
    return (ttl_ms + h->o.tick_ms - 1) / h->o.tick_ms;
}

/* A stall cut short in catch_up: the core ticks from core_tick on were
 * handed out at once, offset ticks behind real time. */
void host__stall_note(struct host *h, uint64_t first_tick)
{
    struct host_stall *s = &h->stalls[h->n_stalls % HOST_STALLS];
    s->core_tick = first_tick;
    s->offset = h->ticks_given - h->core_ticks;
    h->n_stalls++;
}

/* Real ticks minus core ticks when the core counted tick t: a lower bound
 * (an older stall forgotten counts as none), so a base converted with it
 * is never later than it really was. */
static uint64_t offset_at(const struct host *h, uint64_t t)
{
    unsigned kept = h->n_stalls < HOST_STALLS ? h->n_stalls : HOST_STALLS;
    for (unsigned i = 0; i < kept; i++) {
        const struct host_stall *s =
            &h->stalls[(h->n_stalls - 1 - i) % HOST_STALLS];
        if (t >= s->core_tick) {
            return s->offset;
        }
    }
    return 0;
}

/* Own clock: past TTL * 9/10 - 2 ticks since a leader last heard us (the
 * clock-rate and quantization margins of the follower leases). */
void host__session_view(struct host *h)
{
    if (h->sess.state != HOST_SESSION_LIVE) {
        return;
    }
    uint64_t base;
    cons_node_session_base(h->core, &base);
    uint64_t ttl = ttl_ticks_of(h, h->sess.ttl_ms) * 9 / 10;
    ttl = ttl > 2 ? ttl - 2 : 0;
    uint64_t real_base = base + offset_at(h, base);
    if (h->ticks_given < real_base + ttl) {
        return;
    }
    h->sess.state = HOST_SESSION_MAY_HAVE_ENDED;
    host__log(h, RFS_LOG_WARN,
              "session (boot %" PRIu64 ") may have ended: no leader is known "
              "to have heard this node for %" PRIu64 " ms of its %u ms TTL; "
              "changes fail with EROFS until a new session opens",
              h->sess.boot, (h->ticks_given - real_base) * h->o.tick_ms,
              h->sess.ttl_ms);
}

static void open_done(void *arg, int err, const void *result)
{
    struct host *h = arg;
    (void)result;
    h->sess_open_pending = false;
    if (err != 0 && err != RFS_ESHUTDOWN) {
        host__log(h, RFS_LOG_WARN, "opening the node session failed (%s): "
                  "trying again", rfs_strerror(err));
    }
}

/* After every entry point's work: notice a lapsed session, take a new boot
 * for the next one, and (re)propose its SESSION_OPEN. */
void host__session_work(struct host *h)
{
    if (h->sess.state == HOST_SESSION_OFF || h->failed || h->closed ||
        h->removed || h->sess_closing) {
        return;
    }
    host__session_view(h);
    if (host_session_fenced(h) && !h->sess_renewing) {
        uint64_t boot;
        if (h->io.new_boot == NULL || h->io.new_boot(h->io.data, &boot) != 0) {
            return; /* Stays fenced: changes keep failing with EROFS. */
        }
        host__log(h, RFS_LOG_INFO, "opening a new session under boot %" PRIu64
                  " (was %" PRIu64 ")", boot, h->o.boot);
        h->o.boot = boot;
        h->sess.boot = boot;
        h->sess_renewing = true;
        h->sess_open_pending = false;
    }
    if (h->sess.state != HOST_SESSION_LIVE && !h->sess_open_pending) {
        struct store_cmd c = {.op = STORE_OP_SESSION_OPEN,
                              .offset = h->sess.ttl_ms};
        h->sess_open_pending = true;
        if (host_submit(h, &c, open_done, h) != 0) {
            h->sess_open_pending = false;
        }
    }
}

/* An applied command: this node's own session opened or ended. */
void host__session_applied(struct host *h, rfs_index_t index,
                            const struct store_cmd *c,
                            const struct store_result *r)
{
    if (h->sess.state == HOST_SESSION_OFF || r->err != 0) {
        return;
    }
    if (c->op == STORE_OP_SESSION_OPEN && c->client == h->o.id &&
        c->boot == h->o.boot && h->sess.state != HOST_SESSION_LIVE) {
        h->sess.state = HOST_SESSION_LIVE;
        h->sess.opened++;
        h->sess_renewing = false;
        host__log(h, RFS_LOG_INFO, "session open (boot %" PRIu64 ", TTL %u ms) "
                  "at index %" PRIu64, c->boot, h->sess.ttl_ms, index);
    } else if (c->op == STORE_OP_SESSION_END && c->ino == h->o.id &&
               c->offset == h->o.boot && h->sess.state != HOST_SESSION_ENDED) {
        h->sess.state = HOST_SESSION_ENDED;
        h->sess_renewing = false;
        host__log(h, RFS_LOG_WARN,
                  "session (boot %" PRIu64 ") ended at index %" PRIu64 "%s",
                  c->offset, index,
                  c->client == h->o.id ? ""
                                       : " by the leader: not heard within "
                                         "its TTL");
    }
}

/* Leader: any message from id shows that node alive now. */
void host__heard_from(struct host *h, rfs_nodeid_t id)
{
    unsigned oldest = 0;
    for (unsigned i = 0; i < h->n_heard; i++) {
        if (h->heard[i].id == id) {
            h->heard[i].tick = h->core_ticks;
            return;
        }
        if (h->heard[i].tick < h->heard[oldest].tick) {
            oldest = i;
        }
    }
    /* Full (more senders than a configuration holds): forget the one
     * heard least recently; forgetting only ends a session sooner. */
    unsigned k = h->n_heard < HOST_HEARD ? h->n_heard++ : oldest;
    h->heard[k].id = id;
    h->heard[k].tick = h->core_ticks;
}

struct expiring {
    struct host *h;
    unsigned n;
    struct { rfs_nodeid_t client; uint64_t boot; uint32_t ttl_ms; }
        s[HOST_HEARD];
};

static int expire_one(void *arg, rfs_nodeid_t client, uint64_t boot,
                      uint32_t ttl_ms, bool live)
{
    struct expiring *x = arg;
    struct host *h = x->h;
    if (!live || client == h->o.id) {
        return 0; /* The leader's own session lives while it leads. */
    }
    uint64_t last = h->lead_tick;
    for (unsigned i = 0; i < h->n_heard; i++) {
        if (h->heard[i].id == client && h->heard[i].tick > last) {
            last = h->heard[i].tick;
        }
    }
    /* One tick more for the quantization of this node's counter. */
    if (h->core_ticks - last <= ttl_ticks_of(h, ttl_ms)) {
        return 0;
    }
    for (unsigned i = 0; i < h->n_ending; i++) {
        if (h->ending[i].client == client && h->ending[i].boot == boot) {
            return 0; /* Proposed already, not applied yet. */
        }
    }
    if (x->n < HOST_HEARD) {
        x->s[x->n].client = client;
        x->s[x->n].boot = boot;
        x->s[x->n].ttl_ms = ttl_ms;
        x->n++;
    }
    return 0;
}

static void end_done(void *arg, int err, const void *result)
{
    struct host_ending_req *e = arg;
    struct host *h = e->h;
    (void)err;
    (void)result;
    for (unsigned i = 0; i < h->n_ending; i++) {
        if (h->ending[i].client == e->client && h->ending[i].boot == e->boot) {
            h->ending[i] = h->ending[--h->n_ending];
            break;
        }
    }
    rfs_free(e);
}

/* host_tick, on the leader: end the sessions not heard within their TTL. */
void host__session_expire(struct host *h)
{
    if (!h->leading || h->io.sessions == NULL || h->failed || h->closed) {
        return;
    }
    struct expiring x = {.h = h};
    if (h->io.sessions(h->io.data, expire_one, &x) != 0) {
        return; /* A read failed: try at the next tick. */
    }
    for (unsigned i = 0; i < x.n && h->n_ending < HOST_HEARD; i++) {
        struct host_ending_req *e = rfs_malloc(sizeof(*e));
        if (e == NULL) {
            return;
        }
        e->h = h;
        e->client = x.s[i].client;
        e->boot = x.s[i].boot;
        struct store_cmd c = {.op = STORE_OP_SESSION_END, .ino = e->client,
                              .offset = e->boot};
        h->ending[h->n_ending].client = e->client;
        h->ending[h->n_ending].boot = e->boot;
        h->n_ending++;
        host__log(h, RFS_LOG_INFO,
                  "ending node %" PRIu64 "'s session (boot %" PRIu64
                  "): not heard for its TTL of %u ms",
                  e->client, e->boot, x.s[i].ttl_ms);
        if (host_submit(h, &c, end_done, e) != 0) {
            end_done(e, 0, NULL);
        } else {
            h->sess.ends_proposed++;
        }
    }
}

void host_session(const struct host *h, struct host_session *out)
{
    *out = h->sess;
}

bool host_session_fenced(const struct host *h)
{
    return h->sess.state == HOST_SESSION_MAY_HAVE_ENDED ||
           h->sess.state == HOST_SESSION_ENDED;
}
