/*
 * Peer authentication and frame encryption. See secure.h for the protocol.
 *
 * Every check that fails moves the connection to SECURE_FAILED for good and
 * records why; the transport closes the socket and logs the reason with the
 * peer's address. Secrets and keys are wiped with sodium_memzero on close.
 */
#include "secure.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/endian.h"
#include "../common/err.h"
#include "wire.h"

#define HEADER_BYTES crypto_secretstream_xchacha20poly1305_HEADERBYTES

_Static_assert(sizeof(crypto_secretstream_xchacha20poly1305_state) <= 64,
               "secretstream state does not fit struct secure");
_Static_assert(crypto_secretstream_xchacha20poly1305_ABYTES ==
                   SECURE_OVERHEAD,
               "SECURE_OVERHEAD is wrong");

#define C_HELLO_LEN (1 + 8 + 8 + SECURE_NONCE_BYTES)
#define S_HELLO_LEN (1 + 8 + SECURE_NONCE_BYTES + SECURE_MAC_BYTES)
#define C_AUTH_LEN (SECURE_MAC_BYTES + HEADER_BYTES)
#define S_AUTH_LEN (HEADER_BYTES)

static crypto_secretstream_xchacha20poly1305_state *tx(struct secure *s)
{
    return (crypto_secretstream_xchacha20poly1305_state *)(void *)s->tx_state;
}

static crypto_secretstream_xchacha20poly1305_state *rx(struct secure *s)
{
    return (crypto_secretstream_xchacha20poly1305_state *)(void *)s->rx_state;
}

int secure_global_init(void)
{
    return sodium_init() < 0 ? -EIO : 0;
}

static int fail(struct secure *s, const char *why)
{
    s->state = SECURE_FAILED;
    snprintf(s->why, sizeof(s->why), "%s", why);
    return RFS_EAUTH;
}

/* The nonces and ids of this connection, from the client's point of view. */
static void transcript(const struct secure *s, uint8_t *t)
{
    rfs_nodeid_t c = s->client ? s->self : s->peer;
    rfs_nodeid_t v = s->client ? s->peer : s->self;
    const uint8_t *nc = s->client ? s->nonce_self : s->nonce_peer;
    const uint8_t *ns = s->client ? s->nonce_peer : s->nonce_self;
    rfs_put_le64(t, c);
    rfs_put_le64(t + 8, v);
    memcpy(t + 16, nc, SECURE_NONCE_BYTES);
    memcpy(t + 16 + SECURE_NONCE_BYTES, ns, SECURE_NONCE_BYTES);
}

#define TRANSCRIPT_LEN (16 + 2 * SECURE_NONCE_BYTES)

/* MAC(label, transcript) keyed with the cluster secret. */
static void mac(const struct secure *s, char label, uint8_t *out)
{
    uint8_t t[1 + TRANSCRIPT_LEN];
    t[0] = (uint8_t)label;
    transcript(s, t + 1);
    crypto_generichash(out, SECURE_MAC_BYTES, t, sizeof(t), s->secret,
                       SECURE_KEY_BYTES);
}

/* Derive both directions' keys from the secret and the nonces. */
static void derive(struct secure *s)
{
    uint8_t t[2 + TRANSCRIPT_LEN];
    uint8_t cs[SECURE_KEY_BYTES], sc[SECURE_KEY_BYTES];
    t[0] = 'K';
    t[1] = 'c';
    transcript(s, t + 2);
    crypto_generichash(cs, sizeof(cs), t, sizeof(t), s->secret,
                       SECURE_KEY_BYTES);
    t[1] = 's';
    crypto_generichash(sc, sizeof(sc), t, sizeof(t), s->secret,
                       SECURE_KEY_BYTES);
    memcpy(s->tx_key, s->client ? cs : sc, SECURE_KEY_BYTES);
    memcpy(s->rx_key, s->client ? sc : cs, SECURE_KEY_BYTES);
    sodium_memzero(cs, sizeof(cs));
    sodium_memzero(sc, sizeof(sc));
}

void secure_init(struct secure *s, bool client, rfs_nodeid_t self,
                 rfs_nodeid_t peer, const uint8_t secret[SECURE_KEY_BYTES],
                 struct secure_out *out)
{
    memset(s, 0, sizeof(*s));
    memset(out, 0, sizeof(*out));
    s->client = client;
    s->self = self;
    s->peer = peer;
    memcpy(s->secret, secret, SECURE_KEY_BYTES);
    randombytes_buf(s->nonce_self, SECURE_NONCE_BYTES);
    s->state = SECURE_WAIT_HELLO;
    if (client) {
        out->type = WIRE_HELLO;
        out->body[0] = 'C';
        rfs_put_le64(out->body + 1, self);
        rfs_put_le64(out->body + 9, peer);
        memcpy(out->body + 17, s->nonce_self, SECURE_NONCE_BYTES);
        out->len = C_HELLO_LEN;
    }
}

static int server_hello(struct secure *s, const uint8_t *b, size_t len,
                        struct secure_out *out)
{
    if (len != C_HELLO_LEN || b[0] != 'C') {
        return fail(s, "malformed hello");
    }
    rfs_nodeid_t expect = rfs_get_le64(b + 9);
    if (expect != 0 && expect != s->self) {
        char why[96];
        snprintf(why, sizeof(why), "peer wanted node %llu, this is node %llu",
                 (unsigned long long)expect, (unsigned long long)s->self);
        return fail(s, why);
    }
    s->peer = rfs_get_le64(b + 1);
    if (s->peer == RFS_NODE_NONE || s->peer == s->self) {
        return fail(s, "peer claims an invalid node id");
    }
    memcpy(s->nonce_peer, b + 17, SECURE_NONCE_BYTES);
    out->type = WIRE_HELLO;
    out->body[0] = 'S';
    rfs_put_le64(out->body + 1, s->self);
    memcpy(out->body + 9, s->nonce_self, SECURE_NONCE_BYTES);
    mac(s, 'S', out->body + 9 + SECURE_NONCE_BYTES);
    out->len = S_HELLO_LEN;
    s->state = SECURE_WAIT_AUTH;
    return 0;
}

static int client_hello(struct secure *s, const uint8_t *b, size_t len,
                        struct secure_out *out)
{
    if (len != S_HELLO_LEN || b[0] != 'S') {
        return fail(s, "malformed hello");
    }
    rfs_nodeid_t id = rfs_get_le64(b + 1);
    if (s->peer != 0 && id != s->peer) {
        char why[96];
        snprintf(why, sizeof(why), "expected node %llu, reached node %llu",
                 (unsigned long long)s->peer, (unsigned long long)id);
        return fail(s, why);
    }
    s->peer = id;
    memcpy(s->nonce_peer, b + 9, SECURE_NONCE_BYTES);
    uint8_t want[SECURE_MAC_BYTES];
    mac(s, 'S', want);
    if (crypto_verify_32(want, b + 9 + SECURE_NONCE_BYTES) != 0) {
        return fail(s, "peer does not hold the cluster secret");
    }
    derive(s);
    out->type = WIRE_AUTH;
    mac(s, 'C', out->body);
    crypto_secretstream_xchacha20poly1305_init_push(
        tx(s), out->body + SECURE_MAC_BYTES, s->tx_key);
    out->len = C_AUTH_LEN;
    s->state = SECURE_WAIT_AUTH;
    return 0;
}

static int server_auth(struct secure *s, const uint8_t *b, size_t len,
                       struct secure_out *out)
{
    if (len != C_AUTH_LEN) {
        return fail(s, "malformed auth");
    }
    uint8_t want[SECURE_MAC_BYTES];
    mac(s, 'C', want);
    if (crypto_verify_32(want, b) != 0) {
        return fail(s, "peer does not hold the cluster secret");
    }
    derive(s);
    if (crypto_secretstream_xchacha20poly1305_init_pull(
            rx(s), b + SECURE_MAC_BYTES, s->rx_key) != 0) {
        return fail(s, "bad stream header");
    }
    out->type = WIRE_AUTH;
    crypto_secretstream_xchacha20poly1305_init_push(tx(s), out->body,
                                                    s->tx_key);
    out->len = S_AUTH_LEN;
    s->state = SECURE_OPEN;
    return 0;
}

static int client_auth(struct secure *s, const uint8_t *b, size_t len)
{
    if (len != S_AUTH_LEN) {
        return fail(s, "malformed auth");
    }
    if (crypto_secretstream_xchacha20poly1305_init_pull(rx(s), b,
                                                        s->rx_key) != 0) {
        return fail(s, "bad stream header");
    }
    s->state = SECURE_OPEN;
    return 0;
}

int secure_handshake(struct secure *s, uint8_t type, const uint8_t *body,
                     size_t len, struct secure_out *out)
{
    memset(out, 0, sizeof(*out));
    if (s->state == SECURE_FAILED) {
        return RFS_EAUTH;
    }
    if (s->state == SECURE_WAIT_HELLO && type == WIRE_HELLO) {
        return s->client ? client_hello(s, body, len, out)
                         : server_hello(s, body, len, out);
    }
    if (s->state == SECURE_WAIT_AUTH && type == WIRE_AUTH) {
        return s->client ? client_auth(s, body, len)
                         : server_auth(s, body, len, out);
    }
    return fail(s, "unexpected frame during the handshake");
}

int secure_seal(struct secure *s, const void *plain, size_t len, void *out)
{
    if (s->state != SECURE_OPEN) {
        return RFS_EAUTH;
    }
    crypto_secretstream_xchacha20poly1305_push(tx(s), out, NULL, plain, len,
                                               NULL, 0, 0);
    return 0;
}

int secure_open(struct secure *s, const void *sealed, size_t len, void *out)
{
    if (s->state != SECURE_OPEN) {
        return RFS_EAUTH;
    }
    unsigned char tag;
    if (len < SECURE_OVERHEAD ||
        crypto_secretstream_xchacha20poly1305_pull(rx(s), out, NULL, &tag,
                                                   sealed, len, NULL,
                                                   0) != 0) {
        return fail(s, "frame failed authentication (altered, replayed or "
                       "reordered)");
    }
    return 0;
}

void secure_close(struct secure *s)
{
    sodium_memzero(s, sizeof(*s));
}

int secure_secret_create(const char *path)
{
    uint8_t k[SECURE_KEY_BYTES];
    randombytes_buf(k, sizeof(k));
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd < 0) {
        return -errno;
    }
    int rv = 0;
    if (write(fd, k, sizeof(k)) != (ssize_t)sizeof(k) || fsync(fd) != 0) {
        rv = -EIO;
    }
    close(fd);
    sodium_memzero(k, sizeof(k));
    return rv;
}

void secure_sign_public(const uint8_t seed[SECURE_KEY_BYTES],
                        uint8_t pk[SECURE_SIGN_PK_BYTES])
{
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_seed_keypair(pk, sk, seed);
    sodium_memzero(sk, sizeof(sk));
}

int secure_secret_load(const char *path, uint8_t secret[SECURE_KEY_BYTES])
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return -errno;
    }
    struct stat st;
    int rv = 0;
    if (fstat(fd, &st) != 0) {
        rv = -errno;
    } else if (st.st_mode & 077) {
        rv = -EACCES; /* A secret others can read is no secret. */
    } else if (st.st_size != SECURE_KEY_BYTES ||
               read(fd, secret, SECURE_KEY_BYTES) != SECURE_KEY_BYTES) {
        rv = -EINVAL;
    }
    close(fd);
    return rv;
}
