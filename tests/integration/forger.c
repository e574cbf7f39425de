/*
 * forger: a hostile observer, for tests only. Linked with testnode.c into
 * raftfs-testnode-forger (and nowhere else), it installs a transport
 * decorator (transport.h) that alters every gossip PUSH this node sends
 * that carries entries: one byte of the first entry's data is flipped
 * (or, for an entry without data, its type changed), three entries are
 * invented after the last, and the message is encoded again, so it arrives well formed and sealed by a node that holds
 * the cluster secret. Whatever it forwards is then forged, while the
 * commit point it forwards is a voter's true one: the receivers'
 * verifiers must refuse it and name this node (docs/protocol.md, the
 * threat model).
 *
 * With every such push it also plants forged copies further ahead:
 * single-entry pushes, without a point, of made-up entries at PLANT_COUNT
 * indexes PLANT_STEP apart above the push's last one. A refusal bans this
 * node for 10 digest periods, so whatever it sends after an observer's
 * first refusal is not even read, and each observer refused it about once
 * a run; the copies planted before that stay held and are refused one by
 * one as the voters' points reach them, a dozen times a run. Everything
 * else passes untouched.
 *
 * With RAFTFS_FORGER_IMAGES=1 in its environment it forges images instead
 * (issue 16, part 2): every image CHUNK it serves has its first data byte
 * flipped, and its gossip passes untouched, so a test can tell an image
 * refusal from a gossip one. The statement it offers is the voter's true
 * one: the fetcher's hash check over the last chunk must refuse the bytes
 * and name this node.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/heap.h"
#include "../../consensus/gimage.h"
#include "../../consensus/gossip.h"
#include "../../consensus/transport.h"
#include "../../consensus/wire.h"

/* Far enough apart that a point (the voters sign at most every 20 ms, a
 * few per burst of the test's writes) covers one planted index at a time,
 * each a refusal of its own; about as far as the test's writes reach. */
#define PLANT_STEP 24
#define PLANT_COUNT 12

static struct cons_entry room[GOSSIP_MSG_ENTRIES_MAX];

static void *fg_open(struct transport *t, uv_loop_t *loop, rfs_nodeid_t id,
                     char *what, size_t cap)
{
    (void)loop;
    (void)id;
    snprintf(what, cap, "every gossip push this node sends is forged "
                        "(raftfs-testnode-forger)");
    return t;
}

/* Send `to` a made-up copy of entry `index`: the data of `model` (a true
 * entry) with its first byte flipped, in model's term, without a point. */
static void plant(struct transport *t, rfs_nodeid_t to, rfs_nodeid_t self,
                  const struct cons_entry *model, rfs_index_t index)
{
    uint8_t fill = 0x5a;
    struct cons_entry e = *model;
    e.index = index;
    e.type = CONS_ENTRY_NORMAL;
    if (e.data.len == 0) {
        e.data.base = &fill;
        e.data.len = 1;
    }
    struct gossip_msg m = {.kind = GOSSIP_PUSH, .from = self, .entries = &e,
                           .n_entries = 1};
    struct rfs_buf b;
    if (gossip_msg_encode(&m, &b) != 0) {
        return;
    }
    /* The data ends just before the point flag, the message's last byte:
     * flipped in the encoding, the model (in a frame still to be sent)
     * stays as it was. */
    ((uint8_t *)b.base)[b.len - 1 - e.data.len] ^= 0x01;
    transport_send_frame_now(t, to, WIRE_GOSSIP, b);
}

/* RAFTFS_FORGER_IMAGES=1: flip the first data byte of every image chunk,
 * in place (plain is ours: it is sent as it is after). */
static bool forge_chunk(struct rfs_buf plain)
{
    struct gimage_msg c;
    if (gimage_msg_decode(&plain, &c) == 0 && c.kind == GIMAGE_CHUNK &&
        c.data.len > 0) {
        ((uint8_t *)c.data.base)[0] ^= 0x01;
    }
    return false;
}

static bool fg_wrap(void *state, rfs_nodeid_t to, uint8_t type,
                    struct rfs_buf plain)
{
    if (type != WIRE_GOSSIP) {
        return false;
    }
    static int images = -1;
    if (images < 0) {
        const char *v = getenv("RAFTFS_FORGER_IMAGES");
        images = v != NULL && strcmp(v, "1") == 0;
    }
    if (images) {
        return forge_chunk(plain);
    }
    struct gossip_msg m;
    if (gossip_msg_decode(&plain, &m, room, GOSSIP_MSG_ENTRIES_MAX) != 0 ||
        m.kind != GOSSIP_PUSH || m.n_entries == 0) {
        return false;
    }
    /* The planted copies, modelled on the last entry before anything is
     * forged (it is the first one when there is only one). */
    const struct cons_entry model = room[m.n_entries - 1];
    for (unsigned k = 1; k <= PLANT_COUNT; k++) {
        plant(state, to, m.from, &model, model.index + k * PLANT_STEP);
    }
    /* The entries' data point into plain, which is ours now. */
    struct cons_entry *e = &room[0];
    if (e->data.len > 0) {
        ((uint8_t *)e->data.base)[0] ^= 0x01;
    } else {
        e->type = e->type == CONS_ENTRY_NOOP ? CONS_ENTRY_NORMAL
                                             : CONS_ENTRY_NOOP;
    }
    /* And entries invented past the last one, which nobody has yet: an
     * observer takes the first copy it is offered of an entry, and voters
     * push the true ones at once, so a forged copy of an existing entry
     * reaches an observer first only now and then (one clean-clone run
     * counted no refusal in 20 bursts). These always come first; the
     * voters' next commit point over them proves them forged. */
    static char junk[] = "forged by raftfs-testnode-forger";
    const struct cons_entry *last = &room[m.n_entries - 1];
    for (unsigned k = 1; k <= 3 && m.n_entries < GOSSIP_MSG_ENTRIES_MAX;
         k++) {
        struct cons_entry *x = &room[m.n_entries];
        memset(x, 0, sizeof(*x));
        x->index = last->index + k;
        x->term = last->term;
        x->type = CONS_ENTRY_NORMAL;
        x->data.base = junk;
        x->data.len = sizeof(junk) - 1;
        m.n_entries++;
    }
    m.entries = room;
    struct rfs_buf forged;
    if (gossip_msg_encode(&m, &forged) != 0) {
        return false;
    }
    rfs_free(plain.base);
    transport_send_frame_now(state, to, type, forged);
    return true;
}

static void fg_close(void *state)
{
    (void)state;
}

static const struct transport_decorator forger = {
    .open = fg_open,
    .wrap = fg_wrap,
    .close = fg_close,
};

__attribute__((constructor)) static void forger_install(void)
{
    transport_test_decorator = &forger;
}
