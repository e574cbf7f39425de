/*
 * gimage: snapshot images that observers fetch from any peer, vouched for
 * by a voter's signature (docs/protocol.md, "Observers: images from
 * peers").
 *
 * An observer whose gap lies below every peer's compacted log cannot be fed
 * entries; it needs an image. Images are a deterministic function of the
 * state at (index, term) (snapfiles.h), so the same bytes can come from any
 * node that holds them, as long as something proves they are the committed
 * state. That proof is an image statement: a voter holding snap-I.img signs
 * (I, term of I, chain(I), the image's size, BLAKE2b-256 of its bytes,
 * BLAKE2b-256 of the configuration in force at I, its id) with its Ed25519
 * node key under the tag "raftfs-image-v1", which no other statement the
 * key signs begins with. An observer that installed a vouched image keeps
 * the statement and serves the same bytes with it; an image it took
 * itself, unvouched, it does not offer.
 *
 * This module holds the statement (sign, verify), the streaming image hash,
 * and the codec of the four messages of a fetch, which travel in GOSSIP
 * frames beside gossip.h's (their kinds never collide):
 *   ASK    "who holds an image at or above index `at`?"
 *   OFFER  a statement and the configuration bytes it covers;
 *   GET    "send me len bytes at off of image index";
 *   CHUNK  bytes at off of image index (last: the final ones).
 * The decoder checks every length before touching a byte (fuzzed with the
 * gossip messages). Like gossip.c, it opens no file and keeps no timer.
 *
 * Caveats:
 * - Pure: no I/O, no clock; libsodium for hashing and signatures.
 * - Who may sign is the caller's key set (gimage_stmt_verify): pass the
 *   voters of the observer's latest applied configuration, the set the
 *   gossip verifier uses for commit points (gossip_verifier_set_voters).
 */
#ifndef RAFTFS_CONSENSUS_GIMAGE_H
#define RAFTFS_CONSENSUS_GIMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/types.h"
#include "gossip.h"

/* Message kinds, in the same first byte as enum gossip_kind. */
enum gimage_kind {
    GIMAGE_ASK = 16,
    GIMAGE_OFFER = 17,
    GIMAGE_GET = 18,
    GIMAGE_CHUNK = 19,
};

/* Most bytes one CHUNK carries (or one GET asks for): well under a frame's
 * body (WIRE_MAX_BODY), and small enough that one transfer never holds a
 * peer's connection for long. */
#define GIMAGE_CHUNK_MAX (1u << 20)
/* Most configuration bytes an OFFER carries: a configuration of thousands
 * of members encodes in far less. */
#define GIMAGE_CONF_MAX (1u << 20)

/* A voter's word that image `index` is the committed state there. */
struct gimage_stmt {
    rfs_index_t index;
    rfs_term_t term;                   /* Of entry index. */
    uint8_t chain[GOSSIP_HASH_BYTES];  /* chain(index): the verifier's base. */
    uint64_t size;                     /* Bytes of the image. */
    uint8_t image[GOSSIP_HASH_BYTES];  /* BLAKE2b-256 of those bytes. */
    uint8_t conf[GOSSIP_HASH_BYTES];   /* BLAKE2b-256 of the configuration
                                        * bytes (a CONF entry's payload). */
    rfs_nodeid_t signer;
    uint8_t sig[GOSSIP_SIG_BYTES];
};

/* Streaming BLAKE2b-256 of an image or configuration (libsodium's state,
 * kept opaque in size only so callers can hold it by value). */
struct gimage_hash {
    _Alignas(64) uint8_t state[384];
};
void gimage_hash_init(struct gimage_hash *h);
void gimage_hash_update(struct gimage_hash *h, const void *data, size_t len);
void gimage_hash_final(struct gimage_hash *h, uint8_t out[GOSSIP_HASH_BYTES]);
/* One-shot form of the three above. */
void gimage_hash(const void *data, size_t len, uint8_t out[GOSSIP_HASH_BYTES]);

/* Fill s->sig with signer's secret key over every other field. */
void gimage_stmt_sign(struct gimage_stmt *s, const uint8_t sk[GOSSIP_SK_BYTES]);
/* Check s against keys[0..n) (the voters the caller knows) and, when conf
 * is not NULL, the configuration bytes it came with. 0 if the signer is
 * one of them, its signature is good and conf hashes to s->conf.
 * -ENOKEY if the signer is not among keys: it may be a voter of a
 * configuration the caller has not applied (a far-behind observer's is
 * old), so this names no culprit; the caller asks another peer.
 * RFS_EAUTH if a known voter's signature is bad: whoever sent it forged it.
 * RFS_EFORGED if the signature is good but conf does not match: whoever
 * sent the bytes altered them. */
int gimage_stmt_verify(const struct gimage_stmt *s, const struct rfs_buf *conf,
                       const struct gossip_key *keys, unsigned n);

/* One message of a fetch. */
struct gimage_msg {
    uint8_t kind;
    rfs_nodeid_t from;
    /* ASK: the lowest index that would help the asker (its gap). */
    rfs_index_t at;
    /* OFFER: the statement and its configuration bytes (borrowed from the
     * decoded buffer). */
    struct gimage_stmt stmt;
    struct rfs_buf conf;
    /* GET and CHUNK: which image and where. GET: len bytes wanted. CHUNK:
     * data (borrowed from the decoded buffer), last if it ends the image. */
    rfs_index_t index;
    uint64_t off;
    uint32_t len;
    struct rfs_buf data;
    bool last;
};

/* Encode into a buffer from rfs_malloc. 0; -EINVAL (unknown kind, a GET or
 * CHUNK over GIMAGE_CHUNK_MAX, a configuration over GIMAGE_CONF_MAX);
 * -ENOMEM. */
int gimage_msg_encode(const struct gimage_msg *m, struct rfs_buf *out);
/* Decode in into *m (conf and data point into in). 0 or RFS_EMALFORMED
 * (truncated, trailing bytes, an unknown kind, a length over its bound,
 * a flag other than 0 or 1, off + length wrapping around). */
int gimage_msg_decode(const struct rfs_buf *in, struct gimage_msg *m);
/* Whether a frame's first byte is one of this module's kinds (the node
 * runtime sends the rest to gossip_msg_decode). */
bool gimage_is_kind(uint8_t first);

/* ---- The serving side --------------------------------------------------- */

/*
 * struct gimage_server decides what a node holding a vouched image answers:
 * an OFFER to an ASK it can help, and which GETs to read now. Reading is
 * the caller's (snapfiles_read on the threadpool, never the loop); this
 * only bounds it: at most GIMAGE_SERVE_PER_PEER reads in flight per peer
 * (a fetcher keeps one chunk in flight, so one transfer per peer) and
 * GIMAGE_SERVE_MAX in all, so serving holds at most GIMAGE_SERVE_MAX
 * chunks of memory however many observers ask at once. A GET over a bound
 * is dropped unanswered (RFS_EBUSY): the fetcher asks again or asks
 * another peer. Loop thread only; no I/O.
 */
#define GIMAGE_SERVE_PER_PEER 1
/* Two of libuv's four threadpool threads at most: the log's writes and
 * fsyncs run on the same pool, and a voter (the leader, too) must not
 * queue them behind cold 1 MiB reads for observers. */
#define GIMAGE_SERVE_MAX 2

struct gimage_server;

/* One read the caller performs: len bytes at off of image index, for
 * peer `to`. */
struct gimage_read {
    rfs_nodeid_t to;
    rfs_index_t index;
    uint64_t off;
    uint32_t len;
    bool last; /* off + len is the image's end. */
};

/* NULL on -ENOMEM. */
struct gimage_server *gimage_server_new(void);
void gimage_server_free(struct gimage_server *s);
/* Serve the image st vouches for, with its configuration bytes (copied),
 * instead of any earlier one; reads of the earlier one still in flight
 * finish (gimage_server_done) but answer nothing. The caller checked st
 * (its own signature, or gimage_stmt_verify when it fetched the image). 0
 * or -ENOMEM (then nothing is served). */
int gimage_server_set(struct gimage_server *s, const struct gimage_stmt *st,
                      const struct rfs_buf *conf);
/* Serve nothing (the image was deleted, or this node's key is gone). */
void gimage_server_clear(struct gimage_server *s);

/* An ASK from a peer whose gap is `at`: true with *offer filled (its conf
 * borrowed from s, valid until the next set or clear) if the image held
 * reaches it (index >= at); false if there is none or it is too old to
 * help. */
bool gimage_server_ask(const struct gimage_server *s, rfs_nodeid_t self,
                       rfs_index_t at, struct gimage_msg *offer);
/* A GET from peer `from`: 0 with *r filled (len cut at the image's end) to
 * be read now; RFS_ENOSNAP if it names another image than the one held
 * or an offset past its end; RFS_EBUSY if `from` or everyone is at its
 * bound (see above). */
int gimage_server_get(struct gimage_server *s, rfs_nodeid_t from,
                      const struct gimage_msg *get, struct gimage_read *r);
/* Read r finished (or failed): its slot is free again. true if its bytes
 * are still worth sending (the image served is still r->index). */
bool gimage_server_done(struct gimage_server *s, const struct gimage_read *r);
/* Reads in flight now for peer (0: in all; tests, status). */
unsigned gimage_server_reading(const struct gimage_server *s,
                               rfs_nodeid_t peer);

/* ---- The fetching side -------------------------------------------------- */

/*
 * struct gimage_fetch is a far-behind observer's fetch of one image: it
 * decides whom to ASK and when, which OFFER to take, which GET to send, and
 * what each CHUNK is worth; the caller sends, writes fetching.img
 * (snapfiles_receive) and installs. Offers are checked on arrival
 * (gimage_stmt_verify against the voters set here, which the caller keeps
 * equal to the gossip verifier's). Among those that check, the highest
 * index wins, then a peer that is not the leader (the point is to spare
 * it), then the lowest id.
 *
 * One chunk is in flight at a time, from one peer, in order, hashed as it
 * comes. A GET unanswered for stall_ms / 4 is sent again to the same
 * peer. A peer that leaves a GET unanswered for stall_ms loses its offer
 * and the transfer restarts from the best other one, from offset 0: a
 * transfer resumed with another peer's bytes could not say, on a hash
 * mismatch, which of them lied, and a refusal must name the sender. A
 * chunk of the wrong length or flag, or a last chunk whose image does not
 * hash to the statement's, is refused (RFS_EMALFORMED, RFS_EFORGED),
 * names the peer, bans it for the rest of this fetch (its offers are
 * ignored), and the transfer restarts with another.
 *
 * Caveats: loop thread only; no I/O, no clock (now_ms is the caller's).
 */
#define GIMAGE_FETCH_CANDS 16  /* Offers kept (one per peer). */
#define GIMAGE_FETCH_BANNED 32 /* Peers refused, remembered per fetch. */

struct gimage_fetch_options {
    uint32_t chunk;    /* Bytes a GET asks for (<= GIMAGE_CHUNK_MAX). */
    uint64_t ask_ms;   /* Between ASKs while no offer is usable. */
    uint64_t stall_ms; /* A GET unanswered this long drops its peer. */
};

struct gimage_fetch;

/* A fetch for an observer whose gap (first index it lacks) is gap: an
 * image below it would take it nowhere. leader: the leader as this node
 * knows it (0: none). NULL on -ENOMEM or bad options (chunk 0 or over
 * GIMAGE_CHUNK_MAX). */
struct gimage_fetch *gimage_fetch_new(const struct gimage_fetch_options *o,
                                      rfs_index_t gap, rfs_nodeid_t leader);
void gimage_fetch_free(struct gimage_fetch *f);
/* Whose statements count (copied): 0 or -ENOMEM. */
int gimage_fetch_set_voters(struct gimage_fetch *f,
                            const struct gossip_key *keys, unsigned n);
void gimage_fetch_set_leader(struct gimage_fetch *f, rfs_nodeid_t leader);

/* Take an OFFER from `from`. 0 or -ENOMEM; *out says what happened:
 * refused RFS_EAUTH or RFS_EFORGED (see gimage_stmt_verify) with `from`
 * named and banned, or 0 (kept, or ignored: a banned sender, an image
 * below the gap, a signer not known here, no room for a lower image). */
int gimage_fetch_offer(struct gimage_fetch *f, rfs_nodeid_t from,
                       const struct gimage_msg *offer,
                       struct gossip_verdict *out);

/* What the caller does next. */
struct gimage_step {
    uint8_t kind;       /* 0: nothing; GIMAGE_ASK: msg to every peer;
                         * GIMAGE_GET: msg to `to`. */
    rfs_nodeid_t to;
    bool fresh;         /* The GET starts a transfer: drop any partial
                         * fetching.img first. */
    struct gimage_msg msg;
};
/* The next message to send at now_ms (call after each event and on the
 * caller's tick); msg.from is left 0 for the caller to fill. */
void gimage_fetch_next(struct gimage_fetch *f, uint64_t now_ms,
                       struct gimage_step *step);

enum gimage_chunk_fate {
    GIMAGE_CHUNK_IGNORE = 0, /* Not the chunk awaited (late, another peer). */
    GIMAGE_CHUNK_WRITE,      /* Write it at its offset; more to come. */
    GIMAGE_CHUNK_INSTALL,    /* The last one, and the image hashes to the
                              * statement: write it and install
                              * (gimage_fetch_result). */
    GIMAGE_CHUNK_REFUSED,    /* *out names the peer; drop fetching.img,
                              * write nothing. */
};
/* Take a CHUNK from `from`. */
enum gimage_chunk_fate gimage_fetch_chunk(struct gimage_fetch *f,
                                          rfs_nodeid_t from,
                                          const struct gimage_msg *chunk,
                                          struct gossip_verdict *out);
/* Writing a chunk failed (ENOSPC, EIO): the transfer starts again at the
 * next step, from the best offer. */
void gimage_fetch_abort(struct gimage_fetch *f);
/* After GIMAGE_CHUNK_INSTALL: the statement and the configuration bytes
 * (borrowed from f) to install with, and to keep for serving. NULL
 * before. */
const struct gimage_stmt *gimage_fetch_result(const struct gimage_fetch *f,
                                              struct rfs_buf *conf);

struct gimage_fetch_stats {
    uint64_t asks, offers, unknown, refused, restarts, bytes;
    uint64_t repeats; /* Offers a peer had made already: not verified again. */
};
void gimage_fetch_get_stats(const struct gimage_fetch *f,
                            struct gimage_fetch_stats *st);

#endif /* RAFTFS_CONSENSUS_GIMAGE_H */
