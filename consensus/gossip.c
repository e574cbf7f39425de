/*
 * gossip: the chain, commit points, the observer's verifier and the message
 * codec (see gossip.h for the proof and its limits).
 */
#include "gossip.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "../common/endian.h"
#include "../common/err.h"
#include "../common/heap.h"

static const char cert_tag[] = "raftfs-commit-v1";

void gossip_keypair(uint8_t pk[GOSSIP_PK_BYTES], uint8_t sk[GOSSIP_SK_BYTES])
{
    crypto_sign_keypair(pk, sk);
}

/* The signed bytes: the tag keeps a commit-point signature from ever
 * standing for anything else the same key signs. */
#define CERT_MSG (sizeof(cert_tag) - 1 + 8 + 8 + GOSSIP_HASH_BYTES + 8)
static void cert_bytes(const struct gossip_cert *c, uint8_t m[CERT_MSG])
{
    size_t o = sizeof(cert_tag) - 1;
    memcpy(m, cert_tag, o);
    rfs_put_le64(m + o, c->index);
    rfs_put_le64(m + o + 8, c->term);
    memcpy(m + o + 16, c->hash, GOSSIP_HASH_BYTES);
    rfs_put_le64(m + o + 16 + GOSSIP_HASH_BYTES, c->signer);
}

void gossip_cert_sign(struct gossip_cert *c, const uint8_t sk[GOSSIP_SK_BYTES])
{
    uint8_t m[CERT_MSG];
    cert_bytes(c, m);
    crypto_sign_detached(c->sig, NULL, m, sizeof(m), sk);
}

int gossip_cert_verify(const struct gossip_cert *c,
                       const struct gossip_key *keys, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (keys[i].id != c->signer) {
            continue;
        }
        uint8_t m[CERT_MSG];
        cert_bytes(c, m);
        return crypto_sign_verify_detached(c->sig, m, sizeof(m),
                                           keys[i].pk) == 0
                   ? 0
                   : RFS_EAUTH;
    }
    return RFS_EAUTH;
}

/* ---- The verifier -------------------------------------------------------- */

/* One copy of an entry as some peers sent it. Copies of one index that
 * differ are all kept (up to SLOT_COPIES, one per sender): the first to
 * arrive may be a poisoner's, and only a commit point says which one
 * committed. */
#define SLOT_COPIES 3
#define COPY_SENDERS 4
struct copy {
    struct cons_entry e;
    rfs_nodeid_t from[COPY_SENDERS]; /* Who sent this copy (the first few). */
    unsigned nfrom;
};

struct slot {
    unsigned ncopies; /* 0: not held. Released: exactly one, copies[0]. */
    unsigned pick;    /* The copy tried, while searching for a chain. */
    struct copy copies[SLOT_COPIES];
};

struct gossip_verifier {
    rfs_index_t taken;   /* Last index the caller took. */
    rfs_index_t applied; /* Last index released; taken <= applied. */
    uint8_t hash[GOSSIP_HASH_BYTES]; /* chain(applied). */
    struct slot slots[GOSSIP_WINDOW]; /* Index i at i % GOSSIP_WINDOW, for
                                       * taken < i <= taken + WINDOW. */
    struct gossip_cert certs[GOSSIP_CERTS_MAX]; /* Above applied, ascending. */
    unsigned ncerts;
    struct gossip_cert last; /* Proved the last release. */
    bool have_last;
    struct gossip_key *keys;
    unsigned nkeys;
    size_t held_bytes; /* Data of every held copy (GOSSIP_HELD_MAX_BYTES). */
    /* The lowest point's run is wholly held but no choice of copies
     * chains to it: not checked again until a new copy arrives in it or a
     * lower point does, and the run is asked for again (gossip_verifier_gap). */
    bool stuck;
    rfs_index_t failed; /* The last point refused that way (said once). */
    /* chain(applied + k) along the copies tried, while searching. */
    uint8_t path[GOSSIP_WINDOW + 1][GOSSIP_HASH_BYTES];
};

struct gossip_verifier *gossip_verifier_new(rfs_index_t applied,
                                            const uint8_t hash[GOSSIP_HASH_BYTES])
{
    struct gossip_verifier *v = rfs_calloc(1, sizeof(*v));
    if (v == NULL) {
        return NULL;
    }
    v->taken = v->applied = applied;
    memcpy(v->hash, hash, GOSSIP_HASH_BYTES);
    return v;
}

static struct slot *slot_of(struct gossip_verifier *v, rfs_index_t i)
{
    return &v->slots[i % GOSSIP_WINDOW];
}

static void copy_free(struct gossip_verifier *v, struct copy *c)
{
    v->held_bytes -= c->e.data.len;
    rfs_free(c->e.data.base);
    memset(c, 0, sizeof(*c));
}

static void slot_clear(struct gossip_verifier *v, struct slot *s)
{
    for (unsigned k = 0; k < s->ncopies; k++) {
        copy_free(v, &s->copies[k]);
    }
    memset(s, 0, sizeof(*s));
}

/* Drop copy k of s, keeping the others in arrival order. */
static void slot_drop_copy(struct gossip_verifier *v, struct slot *s,
                           unsigned k)
{
    copy_free(v, &s->copies[k]);
    memmove(&s->copies[k], &s->copies[k + 1],
            (s->ncopies - k - 1) * sizeof(s->copies[0]));
    s->ncopies--;
    memset(&s->copies[s->ncopies], 0, sizeof(s->copies[0]));
}

static bool copy_from(const struct copy *c, rfs_nodeid_t id)
{
    for (unsigned k = 0; k < c->nfrom; k++) {
        if (c->from[k] == id) {
            return true;
        }
    }
    return false;
}

static bool same_entry(const struct cons_entry *a, const struct cons_entry *b)
{
    return a->term == b->term && a->index == b->index &&
           a->type == b->type && a->data.len == b->data.len &&
           (a->data.len == 0 ||
            memcmp(a->data.base, b->data.base, a->data.len) == 0);
}

void gossip_verifier_free(struct gossip_verifier *v)
{
    if (v == NULL) {
        return;
    }
    for (unsigned i = 0; i < GOSSIP_WINDOW; i++) {
        slot_clear(v, &v->slots[i]);
    }
    rfs_free(v->keys);
    rfs_free(v);
}

int gossip_keys_replace(struct gossip_key **keys, unsigned *nkeys,
                        const struct gossip_key *from, unsigned n)
{
    struct gossip_key *k = NULL;
    if (n > 0) {
        k = rfs_malloc(n * sizeof(*k));
        if (k == NULL) {
            return -ENOMEM;
        }
        memcpy(k, from, n * sizeof(*k));
    }
    rfs_free(*keys);
    *keys = k;
    *nkeys = n;
    return 0;
}

int gossip_verifier_set_voters(struct gossip_verifier *v,
                               const struct gossip_key *keys, unsigned n)
{
    return gossip_keys_replace(&v->keys, &v->nkeys, keys, n);
}

static void name_culprit(struct gossip_verdict *out, rfs_nodeid_t id)
{
    for (unsigned i = 0; i < out->nculprits; i++) {
        if (out->culprits[i] == id) {
            return;
        }
    }
    if (out->nculprits < GOSSIP_CULPRITS_MAX) {
        out->culprits[out->nculprits++] = id;
    }
}

static void drop_cert(struct gossip_verifier *v, unsigned k)
{
    memmove(&v->certs[k], &v->certs[k + 1],
            (v->ncerts - k - 1) * sizeof(v->certs[0]));
    v->ncerts--;
}

/* The copy of s to try when preferring sender `prefer` (0: none): that
 * sender's copy if it sent one, else the copy most senders sent, the
 * first to arrive on a tie. */
static unsigned pick_copy(const struct slot *s, rfs_nodeid_t prefer)
{
    unsigned best = 0;
    for (unsigned k = 0; k < s->ncopies; k++) {
        if (prefer != 0 && copy_from(&s->copies[k], prefer)) {
            return k;
        }
        if (s->copies[k].nfrom > s->copies[best].nfrom) {
            best = k;
        }
    }
    return best;
}

/* Whether the run applied+1..c->index, through the copies preferring
 * sender `prefer`, chains to c; each slot's pick is left on the copy
 * tried and v->path[k] is the chain k entries after applied. */
static bool chain_with(struct gossip_verifier *v, const struct gossip_cert *c,
                       rfs_nodeid_t prefer)
{
    size_t n = (size_t)(c->index - v->applied);
    memcpy(v->path[0], v->hash, GOSSIP_HASH_BYTES);
    for (size_t d = 0; d < n; d++) {
        struct slot *s = slot_of(v, v->applied + 1 + d);
        s->pick = pick_copy(s, prefer);
        store_chain_next(v->path[d], &s->copies[s->pick].e, v->path[d + 1]);
    }
    return sodium_memcmp(v->path[n], c->hash, GOSSIP_HASH_BYTES) == 0;
}

/* Look for one copy per index of the run applied+1..c->index whose chain
 * from the applied hash is c->hash; on success each slot's pick is the
 * copy chosen. A point pins only the end of the run, so trying every
 * combination would cost a pass per combination: instead a few passes,
 * each a plausible history: the copies most senders agree on, then, for
 * each sender of a copy where copies differ, that sender's copies (an
 * honest sender's copies all chain; the rest of its run taken from the
 * copies most agree on). */
static bool find_chain(struct gossip_verifier *v, const struct gossip_cert *c)
{
    if (chain_with(v, c, 0)) {
        return true;
    }
    rfs_nodeid_t tried[GOSSIP_CULPRITS_MAX];
    unsigned ntried = 0;
    for (rfs_index_t i = v->applied + 1; i <= c->index; i++) {
        const struct slot *s = slot_of(v, i);
        if (s->ncopies < 2) {
            continue;
        }
        for (unsigned k = 0; k < s->ncopies; k++) {
            for (unsigned f = 0; f < s->copies[k].nfrom; f++) {
                rfs_nodeid_t x = s->copies[k].from[f];
                bool seen = false;
                for (unsigned t = 0; t < ntried; t++) {
                    seen |= tried[t] == x;
                }
                if (seen) {
                    continue;
                }
                if (ntried == GOSSIP_CULPRITS_MAX) {
                    return false; /* Enough hashing for one offer. */
                }
                tried[ntried++] = x;
                if (chain_with(v, c, x)) {
                    return true;
                }
            }
        }
    }
    return false;
}

/* The run applied+1..c->index chains to c through the picked copies: every
 * other copy in it is proven not committed (one entry committed at each
 * index), and whoever sent one is named. */
static void release_run(struct gossip_verifier *v, const struct gossip_cert *c,
                        struct gossip_verdict *out)
{
    rfs_index_t first_bad = 0;
    for (rfs_index_t i = v->applied + 1; i <= c->index; i++) {
        struct slot *s = slot_of(v, i);
        for (unsigned k = s->ncopies; k-- > 0;) {
            if (k == s->pick) {
                continue;
            }
            for (unsigned f = 0; f < s->copies[k].nfrom; f++) {
                name_culprit(out, s->copies[k].from[f]);
            }
            if (first_bad == 0) {
                first_bad = i;
            }
            if (k < s->pick) {
                s->pick--;
            }
            slot_drop_copy(v, s, k);
        }
    }
    if (first_bad != 0) {
        out->refused = RFS_EFORGED;
        snprintf(out->why, sizeof(out->why),
                 "a copy of entry %llu does not chain to the commit point "
                 "at %llu signed by node %llu: refused, released another",
                 (unsigned long long)first_bad, (unsigned long long)c->index,
                 (unsigned long long)c->signer);
    }
    out->ready += (unsigned)(c->index - v->applied);
    memcpy(v->hash, v->path[c->index - v->applied], GOSSIP_HASH_BYTES);
    v->applied = c->index;
    v->last = *c;
    v->have_last = true;
}

/* No choice of the copies held chains to c. A peer that sent a copy of
 * every entry of the run is proven wrong (its own run does not chain), so
 * it is named and its copies dropped; any other sender may be honest (its
 * part may be right and another's wrong), so it is not named, and its
 * copies stay to be chosen once the right copies of the rest come. */
static void refuse_run(struct gossip_verifier *v, const struct gossip_cert *c,
                       struct gossip_verdict *out)
{
    rfs_index_t lo = v->applied + 1;
    size_t n = (size_t)(c->index - v->applied);
    struct slot *s0 = slot_of(v, lo);
    rfs_nodeid_t cand[SLOT_COPIES * COPY_SENDERS];
    unsigned ncand = 0;
    for (unsigned k = 0; k < s0->ncopies; k++) {
        for (unsigned f = 0; f < s0->copies[k].nfrom; f++) {
            cand[ncand++] = s0->copies[k].from[f];
        }
    }
    unsigned named = 0;
    for (unsigned x = 0; x < ncand; x++) {
        uint8_t h[GOSSIP_HASH_BYTES];
        memcpy(h, v->hash, sizeof(h));
        bool whole = true;
        for (size_t d = 0; whole && d < n; d++) {
            struct slot *s = slot_of(v, lo + d);
            whole = false;
            for (unsigned k = 0; k < s->ncopies; k++) {
                if (copy_from(&s->copies[k], cand[x])) {
                    store_chain_next(h, &s->copies[k].e, h);
                    whole = true;
                    break;
                }
            }
        }
        if (!whole || sodium_memcmp(h, c->hash, sizeof(h)) == 0) {
            continue;
        }
        name_culprit(out, cand[x]);
        named++;
        for (size_t d = 0; d < n; d++) {
            struct slot *s = slot_of(v, lo + d);
            for (unsigned k = s->ncopies; k-- > 0;) {
                struct copy *cp = &s->copies[k];
                for (unsigned f = 0; f < cp->nfrom; f++) {
                    if (cp->from[f] == cand[x]) {
                        cp->from[f] = cp->from[--cp->nfrom];
                        break;
                    }
                }
                if (cp->nfrom == 0) {
                    slot_drop_copy(v, s, k);
                }
            }
        }
    }
    v->stuck = true;
    if (named == 0 && v->failed == c->index) {
        return; /* Said already: the copy that came chose nothing. */
    }
    v->failed = c->index;
    out->refused = RFS_EFORGED;
    snprintf(out->why, sizeof(out->why),
             "entries %llu..%llu do not chain to the commit point signed by "
             "node %llu: %s",
             (unsigned long long)lo, (unsigned long long)c->index,
             (unsigned long long)c->signer,
             named > 0 ? "dropped the copies of who sent them all"
                       : "no copy proven wrong yet, asking again");
}

/* Release runs while the lowest commit point above applied is wholly held
 * and some choice of the copies held chains to it. */
static void advance(struct gossip_verifier *v, struct gossip_verdict *out)
{
    while (v->ncerts > 0) {
        struct gossip_cert *c = &v->certs[0];
        if (c->index <= v->applied) {
            drop_cert(v, 0);
            v->stuck = false;
            continue;
        }
        if (c->index > v->taken + GOSSIP_WINDOW) {
            return; /* Cannot hold its run yet: the caller must take. */
        }
        if (v->stuck) {
            return; /* Nothing new to choose from since it failed. */
        }
        for (rfs_index_t i = v->applied + 1; i <= c->index; i++) {
            if (slot_of(v, i)->ncopies == 0) {
                return; /* A gap: wait for it (push or pull). */
            }
        }
        if (!find_chain(v, c)) {
            refuse_run(v, c, out);
            return;
        }
        release_run(v, c, out);
        drop_cert(v, 0);
    }
}

/* Whether e may be held within GOSSIP_HELD_MAX_BYTES, dropping held
 * entries above it, highest first, to make room: releases go upwards from
 * the applied index, so the low entries are the ones worth keeping (and
 * the ones a peer stuffing the window far ahead would otherwise keep out).
 * Released entries not yet taken are never dropped. Past the budget with
 * nothing above it to drop, e is still held if it is the lowest missing
 * entry under a held commit point: the next release needs it, and without
 * this an entry larger than the budget could never pass. */
static bool make_room(struct gossip_verifier *v, const struct cons_entry *e)
{
    size_t len = e->data.len;
    for (rfs_index_t i = v->taken + GOSSIP_WINDOW;
         v->held_bytes + len > GOSSIP_HELD_MAX_BYTES && i > e->index; i--) {
        slot_clear(v, slot_of(v, i));
    }
    if (v->held_bytes + len <= GOSSIP_HELD_MAX_BYTES) {
        return true;
    }
    return v->ncerts > 0 && e->index <= v->certs[v->ncerts - 1].index &&
           e->index == gossip_verifier_gap(v);
}

int gossip_verifier_offer(struct gossip_verifier *v, rfs_nodeid_t from,
                          const struct cons_entry *e,
                          struct gossip_verdict *out)
{
    memset(out, 0, sizeof(*out));
    if (e->index <= v->applied || e->index > v->taken + GOSSIP_WINDOW) {
        return 0;
    }
    struct slot *s = slot_of(v, e->index);
    for (unsigned k = 0; k < s->ncopies; k++) {
        struct copy *cp = &s->copies[k];
        if (same_entry(&cp->e, e)) {
            /* Another sender of a copy held: remembered, so that if this
             * copy proves wrong each of its senders is named. */
            if (!copy_from(cp, from) && cp->nfrom < COPY_SENDERS) {
                cp->from[cp->nfrom++] = from;
            }
            return 0;
        }
    }
    for (unsigned k = 0; k < s->ncopies; k++) {
        if (copy_from(&s->copies[k], from)) {
            return 0; /* One copy of an index per sender. */
        }
    }
    if (s->ncopies == SLOT_COPIES) {
        return 0; /* Dropped unread: the chain decides among those held. */
    }
    if (!make_room(v, e)) {
        return 0; /* Dropped unread: it comes again. */
    }
    void *data = NULL;
    if (e->data.len > 0) {
        data = rfs_malloc(e->data.len);
        if (data == NULL) {
            return -ENOMEM;
        }
        memcpy(data, e->data.base, e->data.len);
    }
    struct copy *cp = &s->copies[s->ncopies++];
    cp->e = *e;
    cp->e.data.base = data;
    cp->from[0] = from;
    cp->nfrom = 1;
    v->held_bytes += e->data.len;
    if (v->ncerts == 0 || e->index <= v->certs[0].index) {
        v->stuck = false; /* A new choice for the run that failed. */
    }
    advance(v, out);
    return 0;
}

int gossip_verifier_certify(struct gossip_verifier *v, rfs_nodeid_t from,
                            const struct gossip_cert *c,
                            struct gossip_verdict *out)
{
    memset(out, 0, sizeof(*out));
    if (gossip_cert_verify(c, v->keys, v->nkeys) != 0) {
        out->refused = RFS_EAUTH;
        /* Only a bad signature of a voter known here is the forwarder's
         * doing. A signer this node does not know may be a voter of a
         * configuration it has not applied yet, or one it has applied the
         * removal of while the signer had not: honest forwarders of its
         * points must not be banned for that (the point is dropped). */
        bool known = false;
        for (unsigned k = 0; k < v->nkeys; k++) {
            known |= v->keys[k].id == c->signer;
        }
        if (known) {
            name_culprit(out, from);
        }
        snprintf(out->why, sizeof(out->why),
                 "commit point at %llu from node %llu claims signer %llu, "
                 "not a voter's valid signature: refused",
                 (unsigned long long)c->index, (unsigned long long)from,
                 (unsigned long long)c->signer);
        return 0;
    }
    if (c->index == v->applied &&
        sodium_memcmp(c->hash, v->hash, sizeof(v->hash)) != 0) {
        /* A voter's signature over another history than the one applied
         * here: nothing to drop, but say it loudly. */
        out->refused = RFS_EFORGED;
        name_culprit(out, from);
        snprintf(out->why, sizeof(out->why),
                 "commit point at %llu signed by node %llu disagrees with "
                 "the entries applied here",
                 (unsigned long long)c->index,
                 (unsigned long long)c->signer);
        return 0;
    }
    if (c->index <= v->applied) {
        return 0;
    }
    unsigned k = 0;
    while (k < v->ncerts && v->certs[k].index < c->index) {
        k++;
    }
    if (k < v->ncerts && v->certs[k].index == c->index) {
        return 0; /* One valid point per index is enough. */
    }
    if (k == GOSSIP_CERTS_MAX) {
        return 0; /* Higher than every one kept: the lower ones go first. */
    }
    if (v->ncerts == GOSSIP_CERTS_MAX) {
        v->ncerts--; /* Forget the highest. */
    }
    memmove(&v->certs[k + 1], &v->certs[k],
            (v->ncerts - k) * sizeof(v->certs[0]));
    v->certs[k] = *c;
    v->ncerts++;
    if (k == 0) {
        v->stuck = false; /* A shorter run to check. */
    }
    advance(v, out);
    return 0;
}

bool gossip_verifier_take(struct gossip_verifier *v, struct cons_entry *e)
{
    if (v->taken >= v->applied) {
        return false;
    }
    v->taken++;
    struct slot *s = slot_of(v, v->taken);
    *e = s->copies[0].e;
    v->held_bytes -= e->data.len;
    memset(s, 0, sizeof(*s));
    return true;
}

rfs_index_t gossip_verifier_applied(const struct gossip_verifier *v,
                                    uint8_t hash[GOSSIP_HASH_BYTES])
{
    if (hash != NULL) {
        memcpy(hash, v->hash, GOSSIP_HASH_BYTES);
    }
    return v->applied;
}

rfs_index_t gossip_verifier_proven(const struct gossip_verifier *v)
{
    return v->ncerts > 0 ? v->certs[v->ncerts - 1].index : v->applied;
}

bool gossip_verifier_last_cert(const struct gossip_verifier *v,
                               struct gossip_cert *c)
{
    if (!v->have_last) {
        return false;
    }
    *c = v->last;
    return true;
}

size_t gossip_verifier_held_bytes(const struct gossip_verifier *v)
{
    return v->held_bytes;
}

rfs_index_t gossip_verifier_gap(const struct gossip_verifier *v)
{
    rfs_index_t i = v->applied + 1;
    if (v->stuck) {
        /* Held, but no choice chains: other peers' copies are needed. */
        return i;
    }
    while (i <= v->taken + GOSSIP_WINDOW &&
           v->slots[i % GOSSIP_WINDOW].ncopies > 0) {
        i++;
    }
    return i;
}

/* ---- Messages --------------------------------------------------------------- */

#define ENTRY_HEAD (8 + 8 + 1 + 4)
#define CERT_WIRE (8 + 8 + GOSSIP_HASH_BYTES + 8 + GOSSIP_SIG_BYTES)

static void cert_put(uint8_t *p, const struct gossip_cert *c)
{
    rfs_put_le64(p, c->index);
    rfs_put_le64(p + 8, c->term);
    memcpy(p + 16, c->hash, GOSSIP_HASH_BYTES);
    rfs_put_le64(p + 16 + GOSSIP_HASH_BYTES, c->signer);
    memcpy(p + 24 + GOSSIP_HASH_BYTES, c->sig, GOSSIP_SIG_BYTES);
}

static void cert_get(const uint8_t *p, struct gossip_cert *c)
{
    c->index = rfs_get_le64(p);
    c->term = rfs_get_le64(p + 8);
    memcpy(c->hash, p + 16, GOSSIP_HASH_BYTES);
    c->signer = rfs_get_le64(p + 16 + GOSSIP_HASH_BYTES);
    memcpy(c->sig, p + 24 + GOSSIP_HASH_BYTES, GOSSIP_SIG_BYTES);
}

uint8_t *gossip_msg_start(struct rfs_buf *out, size_t len, uint8_t kind,
                          uint64_t from)
{
    uint8_t *p = rfs_malloc(len);
    if (p == NULL) {
        return NULL;
    }
    out->base = p;
    out->len = len;
    p[0] = kind;
    rfs_put_le64(p + 1, from);
    return p + GOSSIP_MSG_HEAD;
}

int gossip_msg_encode(const struct gossip_msg *m, struct rfs_buf *out)
{
    size_t len = GOSSIP_MSG_HEAD;
    switch (m->kind) {
    case GOSSIP_PUSH:
        if (m->n_entries > GOSSIP_MSG_ENTRIES_MAX) {
            return -EINVAL;
        }
        len += 4 + 1 + (m->has_cert ? CERT_WIRE : 0);
        for (unsigned i = 0; i < m->n_entries; i++) {
            if (m->entries[i].data.len > UINT32_MAX) {
                return -EINVAL;
            }
            len += ENTRY_HEAD + m->entries[i].data.len;
        }
        break;
    case GOSSIP_DIGEST:
    case GOSSIP_PULL:
        len += 8 + 8;
        break;
    default:
        return -EINVAL;
    }
    uint8_t *p = gossip_msg_start(out, len, m->kind, m->from);
    if (p == NULL) {
        return -ENOMEM;
    }
    if (m->kind == GOSSIP_DIGEST) {
        rfs_put_le64(p, m->applied);
        rfs_put_le64(p + 8, m->proven);
        return 0;
    }
    if (m->kind == GOSSIP_PULL) {
        rfs_put_le64(p, m->after);
        rfs_put_le64(p + 8, m->max);
        return 0;
    }
    rfs_put_le32(p, m->n_entries);
    p += 4;
    for (unsigned i = 0; i < m->n_entries; i++) {
        const struct cons_entry *e = &m->entries[i];
        rfs_put_le64(p, e->term);
        rfs_put_le64(p + 8, e->index);
        p[16] = e->type;
        rfs_put_le32(p + 17, (uint32_t)e->data.len);
        p += ENTRY_HEAD;
        if (e->data.len > 0) {
            memcpy(p, e->data.base, e->data.len);
            p += e->data.len;
        }
    }
    *p++ = m->has_cert ? 1 : 0;
    if (m->has_cert) {
        cert_put(p, &m->cert);
    }
    return 0;
}

int gossip_msg_decode(const struct rfs_buf *in, struct gossip_msg *m,
                      struct cons_entry *entries, unsigned cap)
{
    const uint8_t *p = in->base;
    size_t left = in->len;
    memset(m, 0, sizeof(*m));
    if (left < 1 + 8) {
        return RFS_EMALFORMED;
    }
    m->kind = p[0];
    m->from = rfs_get_le64(p + 1);
    p += 9;
    left -= 9;
    if (m->kind == GOSSIP_DIGEST || m->kind == GOSSIP_PULL) {
        if (left != 16) {
            return RFS_EMALFORMED;
        }
        uint64_t a = rfs_get_le64(p), b = rfs_get_le64(p + 8);
        if (m->kind == GOSSIP_DIGEST) {
            m->applied = a;
            m->proven = b;
        } else if (b > UINT32_MAX) {
            return RFS_EMALFORMED;
        } else {
            m->after = a;
            m->max = (uint32_t)b;
        }
        return 0;
    }
    if (m->kind != GOSSIP_PUSH || left < 4) {
        return RFS_EMALFORMED;
    }
    uint32_t n = rfs_get_le32(p);
    p += 4;
    left -= 4;
    if (n > cap || n > GOSSIP_MSG_ENTRIES_MAX) {
        return RFS_EMALFORMED;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (left < ENTRY_HEAD) {
            return RFS_EMALFORMED;
        }
        struct cons_entry *e = &entries[i];
        e->term = rfs_get_le64(p);
        e->index = rfs_get_le64(p + 8);
        e->type = p[16];
        uint32_t dl = rfs_get_le32(p + 17);
        p += ENTRY_HEAD;
        left -= ENTRY_HEAD;
        if (dl > left || e->index == 0 ||
            (e->type != CONS_ENTRY_NORMAL && e->type != CONS_ENTRY_NOOP &&
             e->type != CONS_ENTRY_CONF) ||
            (i > 0 && e->index != entries[i - 1].index + 1)) {
            return RFS_EMALFORMED;
        }
        e->data.base = dl > 0 ? (void *)p : NULL;
        e->data.len = dl;
        p += dl;
        left -= dl;
    }
    m->entries = entries;
    m->n_entries = n;
    if (left < 1 || p[0] > 1) {
        return RFS_EMALFORMED;
    }
    m->has_cert = p[0] == 1;
    p++;
    left--;
    if (left != (m->has_cert ? CERT_WIRE : 0)) {
        return RFS_EMALFORMED;
    }
    if (m->has_cert) {
        cert_get(p, &m->cert);
    }
    return 0;
}
