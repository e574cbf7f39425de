/*
 * netfaults: the test-only decorator of the transport (transport.h), built
 * into the raftfs-netfaults binary and nowhere else.
 *
 * With RAFTFS_TEST_NET_FAULTS=MS:SEED in the environment, every outgoing
 * frame is held back 0..MS ms (drawn from SEED and the node id), so frames
 * arrive late and out of order, as netem would make them; this kernel has
 * no netem. The handshake's own frames and each connection's hello go
 * straight onto the socket and are never held. Unset or malformed: off.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "../../common/heap.h"
#include "transport.h"

struct held {
    uv_timer_t timer;
    struct faults *f;
    struct held *prev, *next;
    rfs_nodeid_t to;
    uint8_t type;
    struct rfs_buf plain;
};

struct faults {
    struct transport *t;
    uv_loop_t *loop;
    unsigned jitter_ms;
    uint64_t rng;
    struct held *held;
};

static void *nf_open(struct transport *t, uv_loop_t *loop, rfs_nodeid_t id,
                     char *what, size_t cap)
{
    const char *env = getenv("RAFTFS_TEST_NET_FAULTS");
    unsigned long long ms = 0, seed = 1;
    if (env == NULL || sscanf(env, "%llu:%llu", &ms, &seed) < 1 || ms == 0 ||
        ms > 1000) {
        return NULL;
    }
    struct faults *f = rfs_calloc(1, sizeof(*f));
    if (f == NULL) {
        return NULL;
    }
    f->t = t;
    f->loop = loop;
    f->jitter_ms = (unsigned)ms;
    f->rng = (seed ? seed : 1) * 2654435761u + id;
    snprintf(what, cap, "outgoing frames delayed 0..%llu ms "
                        "(RAFTFS_TEST_NET_FAULTS)", ms);
    return f;
}

static void unlink_held(struct faults *f, struct held *h)
{
    if (h->prev) {
        h->prev->next = h->next;
    } else {
        f->held = h->next;
    }
    if (h->next) {
        h->next->prev = h->prev;
    }
}

static void held_freed(uv_handle_t *h)
{
    rfs_free(h->data);
}

static void held_fire(uv_timer_t *timer)
{
    struct held *h = timer->data;
    unlink_held(h->f, h);
    transport_send_frame_now(h->f->t, h->to, h->type, h->plain);
    uv_close((uv_handle_t *)&h->timer, held_freed);
}

static bool nf_wrap(void *state, rfs_nodeid_t to, uint8_t type,
                    struct rfs_buf plain)
{
    struct faults *f = state;
    f->rng ^= f->rng << 13;
    f->rng ^= f->rng >> 7;
    f->rng ^= f->rng << 17;
    unsigned ms = (unsigned)(f->rng % (f->jitter_ms + 1));
    struct held *h = ms > 0 ? rfs_calloc(1, sizeof(*h)) : NULL;
    if (h == NULL) {
        return false; /* Sent now: no delay drawn, or no memory. */
    }
    h->f = f;
    h->to = to;
    h->type = type;
    h->plain = plain;
    uv_timer_init(f->loop, &h->timer);
    h->timer.data = h;
    h->next = f->held;
    if (f->held) {
        f->held->prev = h;
    }
    f->held = h;
    uv_timer_start(&h->timer, held_fire, ms, 0);
    return true;
}

static void nf_close(void *state)
{
    struct faults *f = state;
    while (f->held) {
        struct held *h = f->held;
        f->held = h->next;
        uv_timer_stop(&h->timer);
        rfs_free(h->plain.base);
        uv_close((uv_handle_t *)&h->timer, held_freed);
    }
    rfs_free(f);
}

static const struct transport_decorator netfaults = {
    .open = nf_open,
    .wrap = nf_wrap,
    .close = nf_close,
};

__attribute__((constructor)) static void netfaults_install(void)
{
    transport_test_decorator = &netfaults;
}
