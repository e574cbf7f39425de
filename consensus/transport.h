/*
 * transport: a node's peers over TCP, on its libuv loop.
 *
 * One outgoing connection per member of the configuration (reconnected
 * with backoff from 50 ms to 2 s) carries what this node sends; incoming
 * connections carry what it receives. Every connection is authenticated
 * and encrypted with the cluster secret (secure.h, docs/protocol.md); a
 * message's sender must be the node the handshake proved, and its
 * recipient this node, or the connection is dropped and logged with the
 * peer's address. Send queues are bounded (32 MiB per connection, 256
 * messages waiting for a connection); beyond that messages are dropped and
 * Raft retransmits.
 *
 * Besides Raft messages, connections carry admin frames of three named
 * kinds: a request for the leader, its reply, and the hello with which a
 * node says where it listens (a node that is joining knows no one, and its
 * leader answers it through that address).
 *
 * Caveats:
 * - Loop thread only; every callback runs on the loop thread.
 * - Test fault layer: RAFTFS_TEST_NET_FAULTS=MS:SEED (read once at open,
 *   logged as a warning) holds every outgoing frame back 0..MS ms.
 */
#ifndef RAFTFS_CONSENSUS_TRANSPORT_H
#define RAFTFS_CONSENSUS_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../common/types.h"
#include "core/core.h"
#include "host.h"

/* The protocol feature level this build says in its hellos (the code
 * field of ADMIN_HELLO; older builds send 0 and never read it). 1: it
 * knows flock orders and the lock records they write; 2: it also forgets
 * an unlock's record once the unlock was answered, when the unlock says
 * so (STORE_LK_FORGET) (docs/protocol.md, "Upgrades: flock orders"). */
#define TRANSPORT_LEVEL 2
#define TRANSPORT_LEVEL_LOCK_ORDER 1
#define TRANSPORT_LEVEL_LOCK_FORGET 2

enum transport_admin_kind {
    ADMIN_REQUEST = 1, /* An operator's command for the leader. */
    ADMIN_REPLY = 2,   /* The leader's answer: code and text. */
    ADMIN_HELLO = 3,   /* "I listen at ADDR" (handled here). */
};

struct transport_cbs {
    void *data;
    /* A Raft message from the peer the handshake proved (borrowed). */
    void (*raft)(void *data, const struct cons_msg *m);
    /* An admin request or reply: body (borrowed) is len bytes, and a NUL
     * follows them, so a reply's text can be used as a string. */
    void (*admin)(void *data, rfs_nodeid_t from,
                  enum transport_admin_kind kind, uint64_t id, int code,
                  const void *body, size_t len);
    /* A peer's hello on its connection: the id of the data folder it runs
     * on (0 from a build too old to say), and its public signing key
     * (SECURE_SIGN_PK_BYTES, borrowed; NULL from a build too old to send
     * one). false: drop the connection and everything on it
     * (host_hello). */
    bool (*hello)(void *data, rfs_nodeid_t from, uint64_t data_id,
                  const uint8_t *key);
    /* The feature level a peer's accepted hello said (0 from a build that
     * says none; optional: NULL ignores it). */
    void (*level)(void *data, rfs_nodeid_t from, uint32_t level);
    /* A GOSSIP frame's body (borrowed, len bytes) from the peer the
     * handshake proved, after its hello (optional: NULL ignores them). */
    void (*gossip)(void *data, rfs_nodeid_t from, const uint8_t *body,
                   size_t len);
    /* Before the frames of one read from a connection (optional): what
     * they bring may be handled as one burst until the poke below, which
     * follows every read_begin. */
    void (*read_begin)(void *data);
    /* After each read from a connection: the node may have work. */
    void (*poke)(void *data);
    void (*log)(void *data, enum rfs_log_level lv, const char *line);
};

struct transport;

/* Listen on listen ("IPv4:port"). 0, -EINVAL or -EADDRINUSE with errmsg
 * naming the address. secret: SECURE_KEY_BYTES, copied. data_id: this
 * node's data folder id (store_data_id), and sign_pk its public signing
 * key (SECURE_SIGN_PK_BYTES, copied), said in every hello. */
int transport_open(uv_loop_t *loop, rfs_nodeid_t id, uint64_t data_id,
                   const uint8_t *sign_pk, const char *listen,
                   const uint8_t *secret, const struct transport_cbs *cb,
                   struct transport **out, char *errmsg);
/* Close every handle; free with transport_free() once the loop has run
 * their close callbacks. Sends after this are dropped. */
void transport_close(struct transport *t);
void transport_free(struct transport *t);

/* Keep one outgoing connection per member of c (at conf_index), and try
 * again those that are down and due. Call after every change. */
void transport_sync(struct transport *t, const struct cons_conf *c,
                    rfs_index_t conf_index);
/* Send an encoded Raft message (takes plain). */
void transport_send(struct transport *t, rfs_nodeid_t to,
                    struct rfs_buf plain);
/* Send an encoded gossip message (gossip_msg_encode; takes plain). Best
 * effort, like Raft messages: an observer's digests and pulls repair what
 * is lost. */
void transport_gossip(struct transport *t, rfs_nodeid_t to,
                      struct rfs_buf plain);
/* Send an admin frame (body copied; at most TRANSPORT_ADMIN_MAX bytes). */
#define TRANSPORT_ADMIN_MAX 8192
void transport_admin(struct transport *t, rfs_nodeid_t to,
                     enum transport_admin_kind kind, uint64_t id, int code,
                     const void *body, size_t len);
/*
 * A decorator on outgoing frames, for tests only: production binaries have
 * none (transport_test_decorator stays NULL); tests/chaos/netfaults.c sets
 * one in the raftfs-netfaults binary. open() returns its state for this
 * transport, or NULL to stay off (what: a line for the log). wrap() either
 * takes a frame (true: it owns plain, and sends it later with
 * transport_send_frame_now() from the loop thread) or lets it pass.
 * close() drops whatever it holds, at transport_close().
 */
struct transport_decorator {
    void *(*open)(struct transport *t, uv_loop_t *loop, rfs_nodeid_t id,
                  char *what, size_t cap);
    bool (*wrap)(void *state, rfs_nodeid_t to, uint8_t type,
                 struct rfs_buf plain);
    void (*close)(void *state);
};
extern const struct transport_decorator *transport_test_decorator;
void transport_send_frame_now(struct transport *t, rfs_nodeid_t to,
                              uint8_t type, struct rfs_buf plain);

/* Whether the connection to peer id is open (authenticated). */
bool transport_connected(const struct transport *t, rfs_nodeid_t id);
unsigned transport_connected_count(const struct transport *t);

#endif /* RAFTFS_CONSENSUS_TRANSPORT_H */
