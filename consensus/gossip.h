/*
 * gossip: proving committed entries to observers that hear them from anyone.
 *
 * An observer (docs/design.md, "Observers fed by gossip") receives committed
 * entries from voters and from other observers, any of which may be wrong or
 * hostile. It applies an entry only once it can prove it committed, whoever
 * forwarded it. The proof has two parts:
 *
 * - The chain. Every node's store hashes the committed log as it applies
 *   it (store.h, "The chain": store_chain_next, store_chain). Committed
 *   logs agree (Log Matching), so every node computes the same chain(i),
 *   and one hash pins every entry up to i: a forged, dropped, reordered or
 *   uncommitted entry changes it.
 * - The commit point. A voter that has applied index i signs (i, term of
 *   entry i, chain(i)) with its Ed25519 key; the public keys of the voters
 *   are in the replicated configuration. A voter applies only committed
 *   entries, so its signature vouches that everything up to i committed.
 *
 * struct gossip_verifier is the observer's side: it holds entries ahead of
 * what it applied, takes commit points, and releases entries in log order
 * once the chain from its applied hash through them matches a commit point
 * signed by a voter it knows. Differing copies of one index, from
 * different senders, are all held (up to three, one per sender): the point
 * chooses, and the senders of the copies it proves wrong are named. A run
 * that no choice chains to names only a sender of a copy of every entry in
 * it (its own run is proven wrong); the other copies wait for the right
 * ones of the rest. Messages
 * (gossip_msg_encode/decode) carry entries and commit points between peers;
 * the decoder checks every length before touching a byte (fuzzed).
 *
 * What this module is not: it chooses no peers, keeps no timers and opens no
 * sockets; the node runtime does that around it.
 *
 * Caveats:
 * - Pure: no I/O, no clock; libsodium for hashing and signatures.
 * - Not thread-safe: one verifier per observer, used from one thread.
 * - The signer must be a voter of the observer's latest applied
 *   configuration (gossip_verifier_set_voters). A voter removed by an entry
 *   the observer has not applied yet is still believed until it applies
 *   that entry; docs/protocol.md states this in the threat model.
 */
#ifndef RAFTFS_CONSENSUS_GOSSIP_H
#define RAFTFS_CONSENSUS_GOSSIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/entry.h"
#include "../common/types.h"
#include "../store/store.h"

#define GOSSIP_HASH_BYTES STORE_CHAIN_BYTES
#define GOSSIP_PK_BYTES 32
#define GOSSIP_SK_BYTES 64
#define GOSSIP_SIG_BYTES 64
/* Entries a verifier holds beyond its applied index; further ones are
 * dropped unread (they come again, by push or by pull). */
#define GOSSIP_WINDOW 4096
/* Bytes of entry data a verifier holds (released or not). Past it, an
 * entry is held only in place of higher ones, which are dropped (they come
 * again): a peer that fills the window with large entries far ahead cannot
 * make an observer hold GOSSIP_WINDOW times the largest frame, and cannot
 * keep out the low entries the next release needs. The lowest missing
 * entry under a held commit point is always taken, so an entry larger
 * than the budget still passes, alone. */
#define GOSSIP_HELD_MAX_BYTES (64u << 20)
/* Commit points a verifier holds above its applied index, lowest first:
 * an observer far behind can then prove a run long before it catches up
 * with the newest point. */
#define GOSSIP_CERTS_MAX 64
/* Most entries one message carries. */
#define GOSSIP_MSG_ENTRIES_MAX 1024
/* Forwarders a refusal names. */
#define GOSSIP_CULPRITS_MAX 8

/* A node's signing key pair, drawn from libsodium's random source. */
void gossip_keypair(uint8_t pk[GOSSIP_PK_BYTES], uint8_t sk[GOSSIP_SK_BYTES]);

/* A voter's public key, as the configuration records it. */
struct gossip_key {
    rfs_nodeid_t id;
    uint8_t pk[GOSSIP_PK_BYTES];
};

/* A commit point: signer vouches that entries 1..index committed and that
 * chain(index) is hash. */
struct gossip_cert {
    rfs_index_t index;
    rfs_term_t term; /* Of entry index. */
    uint8_t hash[GOSSIP_HASH_BYTES];
    rfs_nodeid_t signer;
    uint8_t sig[GOSSIP_SIG_BYTES];
};

/* Fill c->sig with signer's secret key over (index, term, hash, signer). */
void gossip_cert_sign(struct gossip_cert *c, const uint8_t sk[GOSSIP_SK_BYTES]);
/* 0 if c->signer is one of keys[0..n) and the signature is its; else
 * RFS_EAUTH. */
int gossip_cert_verify(const struct gossip_cert *c,
                       const struct gossip_key *keys, unsigned n);

/* ---- The observer's verifier ---------------------------------------------- */

struct gossip_verifier;

/* Start after index applied, whose chain hash is hash (from the store, or a
 * snapshot's metadata). NULL on -ENOMEM. */
struct gossip_verifier *gossip_verifier_new(rfs_index_t applied,
                                            const uint8_t hash[GOSSIP_HASH_BYTES]);
void gossip_verifier_free(struct gossip_verifier *v);

/* *keys becomes a copy of keys[0..n) (NULL when n is 0), *nkeys n; the
 * old copy is freed. 0, or -ENOMEM leaving both as they were. */
int gossip_keys_replace(struct gossip_key **keys, unsigned *nkeys,
                        const struct gossip_key *from, unsigned n);
/* The voters whose signatures count (copied). 0 or -ENOMEM. */
int gossip_verifier_set_voters(struct gossip_verifier *v,
                               const struct gossip_key *keys, unsigned n);

/* What one offer did. */
struct gossip_verdict {
    unsigned ready;   /* Entries released by this call (gossip_verifier_take). */
    int refused;      /* 0, or RFS_EAUTH (a commit point with a bad signature
                       * or an unknown signer), or RFS_EFORGED (copies held
                       * that do not chain to a valid commit point: with
                       * ready > 0, other copies of those entries did and
                       * were released). */
    rfs_nodeid_t culprits[GOSSIP_CULPRITS_MAX]; /* Who is proven to have sent
                                                 * what was refused (maybe
                                                 * none yet). */
    unsigned nculprits;
    char why[160];    /* For the log: what was refused, from whom. */
};

/* Hold entry e (copied), received from `from`. An entry at or below the
 * applied index, a copy already held (its sender is noted), a second copy
 * of an index from one sender, a fourth copy, or one beyond the window, is
 * ignored. If
 * a held commit point now covers a whole run, entries are released. 0 or
 * -ENOMEM; *out says what happened. */
int gossip_verifier_offer(struct gossip_verifier *v, rfs_nodeid_t from,
                          const struct cons_entry *e,
                          struct gossip_verdict *out);

/* Take commit point c, received from `from`: checked, kept (with up to
 * GOSSIP_CERTS_MAX others above the applied index), and entries released
 * up to the lowest point whose run is wholly held. 0 or
 * -ENOMEM; *out says what happened (a refused point changes nothing). */
int gossip_verifier_certify(struct gossip_verifier *v, rfs_nodeid_t from,
                            const struct gossip_cert *c,
                            struct gossip_verdict *out);

/* Pop the next released entry, in log order, into *e (its data now the
 * caller's, rfs_free). false when none is ready. */
bool gossip_verifier_take(struct gossip_verifier *v, struct cons_entry *e);

/* The last index released (or the start), its chain hash, and the highest
 * valid commit point held (0: none). */
rfs_index_t gossip_verifier_applied(const struct gossip_verifier *v,
                                    uint8_t hash[GOSSIP_HASH_BYTES]);
rfs_index_t gossip_verifier_proven(const struct gossip_verifier *v);
/* Bytes of entry data held now (see GOSSIP_HELD_MAX_BYTES). */
size_t gossip_verifier_held_bytes(const struct gossip_verifier *v);
/* The commit point that proved the last release, to forward with those
 * entries; false if nothing was released yet. */
bool gossip_verifier_last_cert(const struct gossip_verifier *v,
                               struct gossip_cert *c);
/* The first index after the applied one that is not held: where a pull
 * starts. After a run failed with no copy proven wrong, the index after
 * the applied one: the run is asked for again, from other peers. */
rfs_index_t gossip_verifier_gap(const struct gossip_verifier *v);

/* ---- Messages ---------------------------------------------------------- */

enum gossip_kind {
    GOSSIP_PUSH = 1,   /* Entries (maybe none) and maybe a commit point. */
    GOSSIP_DIGEST = 2, /* What the sender holds: applied and proven. */
    GOSSIP_PULL = 3,   /* Send me up to max entries after index `after`. */
};

struct gossip_msg {
    uint8_t kind;
    rfs_nodeid_t from;
    /* PUSH. Entries' data borrowed from the decoded buffer. */
    const struct cons_entry *entries;
    unsigned n_entries;
    bool has_cert;
    struct gossip_cert cert;
    /* DIGEST: applied, proven. PULL: after, max. */
    rfs_index_t applied, proven;
    rfs_index_t after;
    uint32_t max;
};

/* Every message in a GOSSIP frame (these and gimage.h's) starts with its
 * kind and its sender: GOSSIP_MSG_HEAD bytes. gossip_msg_start allocates
 * len bytes (the head included) into *out, writes the head, and returns
 * where the body goes; NULL if out of memory. */
#define GOSSIP_MSG_HEAD (1 + 8)
uint8_t *gossip_msg_start(struct rfs_buf *out, size_t len, uint8_t kind,
                          uint64_t from);

/* Encode into a buffer from rfs_malloc. 0; -EINVAL (unknown kind, too many
 * entries); -ENOMEM. */
int gossip_msg_encode(const struct gossip_msg *m, struct rfs_buf *out);
/* Decode in into *m. PUSH entries go into `entries` (capacity cap); their
 * data point into in. 0 or RFS_EMALFORMED (truncated, trailing bytes, an
 * unknown kind or entry type, more entries than cap, entries out of order). */
int gossip_msg_decode(const struct rfs_buf *in, struct gossip_msg *m,
                      struct cons_entry *entries, unsigned cap);

#endif /* RAFTFS_CONSENSUS_GOSSIP_H */
