/*
 * secure: mutual authentication and encryption of a peer connection.
 *
 * Every node of a cluster holds the same 32-byte cluster secret (a key file
 * in its data folder). A connection starts with a challenge-response
 * handshake that proves to each side that the other holds the secret, without
 * sending it; then every frame is encrypted and authenticated, with keys of
 * that connection only. A process without the secret learns nothing and can
 * inject nothing: it cannot finish the handshake, so it can neither vote,
 * propose nor append.
 *
 * Handshake (C = connecting node, S = accepting node; nonces are 32 random
 * bytes per connection; MAC = BLAKE2b keyed with the secret):
 *
 *   C -> S  HELLO  C's id, the id it expects S to have, nonce_c
 *   S -> C  HELLO  S's id, nonce_s, MAC("S", ids, nonce_c, nonce_s)
 *   C -> S  AUTH   MAC("C", ids, nonce_c, nonce_s), C's stream header
 *   S -> C  AUTH   S's stream header
 *
 * The role label in each MAC stops a reflected proof; fresh nonces on both
 * sides stop a replayed handshake. Each direction then uses its own key,
 * derived from the secret and both nonces, with libsodium's
 * crypto_secretstream (XChaCha20-Poly1305): a frame that was altered,
 * dropped, replayed or reordered fails to open, and the connection is closed.
 *
 * Why libsodium: it is Debian's standard for exactly these primitives, with
 * misuse-resistant APIs (docs/design.md).
 *
 * Caveats:
 * - Pure: no I/O. The transport moves the bytes in wire frames of types
 *   WIRE_HELLO, WIRE_AUTH and WIRE_RAFT.
 * - One struct secure per connection; not thread-safe.
 */
#ifndef RAFTFS_CONSENSUS_SECURE_H
#define RAFTFS_CONSENSUS_SECURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/types.h"

#define SECURE_KEY_BYTES 32
#define SECURE_NONCE_BYTES 32
#define SECURE_MAC_BYTES 32
#define SECURE_OVERHEAD 17 /* Bytes added to each sealed frame. */
#define SECURE_MSG_MAX 128 /* Largest handshake message. */

enum secure_state {
    SECURE_START = 0,
    SECURE_WAIT_HELLO, /* Client: sent HELLO. Server: waiting for it. */
    SECURE_WAIT_AUTH,
    SECURE_OPEN,
    SECURE_FAILED,
};

struct secure {
    bool client;
    enum secure_state state;
    rfs_nodeid_t self;
    rfs_nodeid_t peer; /* Expected (client) or learned (server). */
    uint8_t secret[SECURE_KEY_BYTES];
    uint8_t nonce_self[SECURE_NONCE_BYTES];
    uint8_t nonce_peer[SECURE_NONCE_BYTES];
    uint8_t tx_state[64]; /* crypto_secretstream state, opaque here. */
    uint8_t rx_state[64];
    uint8_t tx_key[SECURE_KEY_BYTES];
    uint8_t rx_key[SECURE_KEY_BYTES];
    char why[96]; /* Why the handshake or a frame failed. */
};

/* A handshake message to send: wire frame type and body. */
struct secure_out {
    uint8_t type; /* WIRE_HELLO or WIRE_AUTH; 0: nothing to send. */
    uint8_t body[SECURE_MSG_MAX];
    uint32_t len;
};

/* Create the library state once per process. 0 or -EIO. */
int secure_global_init(void);

/* Read a cluster secret file (32 raw bytes, mode 0600 or stricter).
 * Returns 0, -errno, -EINVAL (wrong size), -EACCES (readable by others). */
int secure_secret_load(const char *path, uint8_t secret[SECURE_KEY_BYTES]);
/* Create a new random secret file with mode 0600 (fails if it exists). */
int secure_secret_create(const char *path);

/* A node's signing key lives in DATADIR/signing.key as a 32-byte Ed25519
 * seed, made and read as a secret file is (secure_secret_create and
 * secure_secret_load): its owner alone may read it. This derives the
 * public half, which the node sends in its hellos and the configuration
 * records (cons_server.key). */
#define SECURE_SIGN_FILE "signing.key"
#define SECURE_SIGN_PK_BYTES 32
void secure_sign_public(const uint8_t seed[SECURE_KEY_BYTES],
                        uint8_t pk[SECURE_SIGN_PK_BYTES]);

/* Start a connection. A client gets its HELLO in *out; a server waits.
 * peer: for a client, the id it expects to reach (0: any). */
void secure_init(struct secure *s, bool client, rfs_nodeid_t self,
                 rfs_nodeid_t peer, const uint8_t secret[SECURE_KEY_BYTES],
                 struct secure_out *out);

/*
 * Feed a received handshake frame. *out gets the reply, if any. Returns 0
 * (continue; s->state tells whether the channel is open) or RFS_EAUTH
 * (s->why says why: close the connection and log it with the address).
 */
int secure_handshake(struct secure *s, uint8_t type, const uint8_t *body,
                     size_t len, struct secure_out *out);

/* Encrypt len bytes of plain into out (len + SECURE_OVERHEAD bytes). */
int secure_seal(struct secure *s, const void *plain, size_t len, void *out);

/* Decrypt a sealed frame of len bytes into out (len - SECURE_OVERHEAD).
 * Returns 0 or RFS_EAUTH (tampered, replayed, reordered, wrong key). */
int secure_open(struct secure *s, const void *sealed, size_t len, void *out);

/* Wipe keys. */
void secure_close(struct secure *s);

#endif /* RAFTFS_CONSENSUS_SECURE_H */
