/*
 * forger: a hostile observer, for tests only. Linked with testnode.c into
 * raftfs-testnode-forger (and nowhere else), it installs a transport
 * decorator (transport.h) that alters every gossip PUSH this node sends
 * that carries entries: one byte of the first entry's data is flipped
 * (or, for an entry without data, its type changed), and the message is
 * encoded again, so it arrives well formed and sealed by a node that holds
 * the cluster secret. Whatever it forwards is then forged, while the
 * commit point it forwards is a voter's true one: the receivers'
 * verifiers must refuse it and name this node (docs/protocol.md, the
 * threat model). Everything else passes untouched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/heap.h"
#include "../../consensus/gossip.h"
#include "../../consensus/transport.h"
#include "../../consensus/wire.h"

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

static bool fg_wrap(void *state, rfs_nodeid_t to, uint8_t type,
                    struct rfs_buf plain)
{
    if (type != WIRE_GOSSIP) {
        return false;
    }
    struct gossip_msg m;
    if (gossip_msg_decode(&plain, &m, room, GOSSIP_MSG_ENTRIES_MAX) != 0 ||
        m.kind != GOSSIP_PUSH || m.n_entries == 0) {
        return false;
    }
    /* The entries' data point into plain, which is ours now. */
    struct cons_entry *e = &room[0];
    if (e->data.len > 0) {
        ((uint8_t *)e->data.base)[0] ^= 0x01;
    } else {
        e->type = e->type == CONS_ENTRY_NOOP ? CONS_ENTRY_NORMAL
                                             : CONS_ENTRY_NOOP;
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
