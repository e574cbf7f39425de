/*
 * Cluster configurations: their encoding inside CONF log entries, and how
 * the node's configuration follows its log (membership changes, thesis
 * chapter 4).
 *
 * Encoding (little-endian): u8 version, u8 count, then per server: u64 id,
 * u8 role, u8 address length, address bytes. Version 2 then adds the
 * removed ids: u64 removed_upto, u8 count, and per removed server u64 id,
 * u64 index of the entry that removed it. A configuration without removed
 * ids is still written as version 1, so entries written before version 2
 * and configurations of clusters that never removed a server read (and
 * are read by older builds) as before. Version 3 adds each server's data
 * folder id (u64, 0: unknown) after its address, and always carries the
 * removed section; it is written only once some id is recorded, so a
 * configuration of version 1 or 2 (an older build's) reads with every id
 * unknown. Version 4 has version 3's layout and is the only one whose role
 * byte may be 3 (CONS_OBSERVER); it is written only while the configuration
 * holds an observer, so a cluster without observers writes what older
 * builds read, and an older build meeting an observer refuses the entry
 * rather than taking the observer for something else. Version 5 adds each
 * server's public signing key (32 bytes, all zero: unknown) after its data
 * folder id, may hold observers too, and is written only once some key is
 * recorded; older versions read with every key unknown. The decoder checks
 * every length and
 * value, since a CONF entry can come off a network or a damaged disk.
 *
 * Membership (the second half of this file): a configuration is in force
 * as soon as its entry is in the log, committed or not (thesis 4.1), so a
 * truncation can take it back (cons__conf_rollback), and a snapshot records
 * the one in force at its index (cons__conf_at). Changes go one server at
 * a time, and not before the leader committed an entry of its own term
 * (cons_node_change; the single-server change errata). Kept here rather
 * than in raft.c because it is the code that reads and writes
 * configurations; raft.c only calls it when the log moves.
 */
#include <errno.h>
#include <string.h>

#include "../../common/assert.h"
#include "../../common/err.h"
#include "../../common/heap.h"
#include "core_i.h"

#define CONF_VERSION 1
#define CONF_VERSION_REMOVED 2
#define CONF_VERSION_DATA_ID 3
#define CONF_VERSION_OBSERVER 4
#define CONF_VERSION_KEY 5

static bool key_set(const uint8_t key[CONS_KEY_BYTES])
{
    uint8_t any = 0;
    for (unsigned i = 0; i < CONS_KEY_BYTES; i++) {
        any |= key[i];
    }
    return any != 0;
}

const char *cons_server_role_name(uint8_t role)
{
    switch (role) {
    case CONS_VOTER:
        return "voter";
    case CONS_LEARNER:
        return "learner";
    case CONS_OBSERVER:
        return "observer";
    default:
        return "unknown";
    }
}

const struct cons_server *cons_conf_get(const struct cons_conf *c,
                                        rfs_nodeid_t id)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].id == id) {
            return &c->servers[i];
        }
    }
    return NULL;
}

unsigned cons_conf_voters(const struct cons_conf *c)
{
    unsigned v = 0;
    for (unsigned i = 0; i < c->n; i++) {
        v += c->servers[i].role == CONS_VOTER;
    }
    return v;
}

bool cons_conf_removed(const struct cons_conf *c, rfs_nodeid_t id,
                       rfs_index_t *index)
{
    *index = 0;
    if (cons_conf_get(c, id) != NULL) {
        return false;
    }
    for (unsigned i = 0; i < c->n_removed; i++) {
        if (c->removed[i].id == id) {
            *index = c->removed[i].index;
            return true;
        }
    }
    return id <= c->removed_upto;
}

void cons_conf_add_removed(struct cons_conf *c, rfs_nodeid_t id,
                           rfs_index_t index)
{
    if (c->n_removed == CONS_MAX_REMOVED) {
        if (c->removed[0].id > c->removed_upto) {
            c->removed_upto = c->removed[0].id;
        }
        memmove(&c->removed[0], &c->removed[1],
                (CONS_MAX_REMOVED - 1) * sizeof(c->removed[0]));
        c->n_removed--;
    }
    c->removed[c->n_removed].id = id;
    c->removed[c->n_removed].index = index;
    c->n_removed++;
}

static void put64(uint8_t **p, uint64_t v)
{
    for (int b = 0; b < 8; b++) {
        *(*p)++ = (uint8_t)(v >> (8 * b));
    }
}

static uint64_t get64(const uint8_t **p)
{
    uint64_t v = 0;
    for (int b = 0; b < 8; b++) {
        v |= (uint64_t)(*p)[b] << (8 * b);
    }
    *p += 8;
    return v;
}

int cons_conf_encode(const struct cons_conf *c, struct rfs_buf *out)
{
    bool v5 = false, v4 = false, v3 = false;
    for (unsigned i = 0; i < c->n; i++) {
        v5 |= key_set(c->servers[i].key);
        v4 |= c->servers[i].role == CONS_OBSERVER;
        v3 |= c->servers[i].data_id != 0;
    }
    v3 |= v4 || v5;
    bool v2 = v3 || c->n_removed > 0 || c->removed_upto != 0;
    size_t len = 2;
    for (unsigned i = 0; i < c->n; i++) {
        len += 8 + 1 + 1 + strnlen(c->servers[i].addr, CONS_ADDR_MAX - 1) +
               (v3 ? 8 : 0) + (v5 ? CONS_KEY_BYTES : 0);
    }
    if (v2) {
        len += 8 + 1 + 16 * (size_t)c->n_removed;
    }
    uint8_t *p = rfs_malloc(len);
    if (p == NULL) {
        return -ENOMEM;
    }
    out->base = p;
    out->len = len;
    *p++ = v5   ? CONF_VERSION_KEY
           : v4 ? CONF_VERSION_OBSERVER
           : v3 ? CONF_VERSION_DATA_ID
           : v2 ? CONF_VERSION_REMOVED
                : CONF_VERSION;
    *p++ = (uint8_t)c->n;
    for (unsigned i = 0; i < c->n; i++) {
        const struct cons_server *s = &c->servers[i];
        for (int b = 0; b < 8; b++) {
            *p++ = (uint8_t)(s->id >> (8 * b));
        }
        *p++ = s->role;
        size_t alen = strnlen(s->addr, CONS_ADDR_MAX - 1);
        *p++ = (uint8_t)alen;
        memcpy(p, s->addr, alen);
        p += alen;
        if (v3) {
            put64(&p, s->data_id);
        }
        if (v5) {
            memcpy(p, s->key, CONS_KEY_BYTES);
            p += CONS_KEY_BYTES;
        }
    }
    if (v2) {
        put64(&p, c->removed_upto);
        *p++ = (uint8_t)c->n_removed;
        for (unsigned i = 0; i < c->n_removed; i++) {
            put64(&p, c->removed[i].id);
            put64(&p, c->removed[i].index);
        }
    }
    return 0;
}

int cons_conf_decode(const struct rfs_buf *in, struct cons_conf *c)
{
    const uint8_t *p = in->base;
    const uint8_t *end = p + in->len;
    memset(c, 0, sizeof(*c));
    if (in->len < 2 ||
        p[0] < CONF_VERSION || p[0] > CONF_VERSION_KEY ||
        p[1] > CONS_MAX_SERVERS) {
        return RFS_EMALFORMED;
    }
    bool v5 = p[0] == CONF_VERSION_KEY;
    bool v4 = v5 || p[0] == CONF_VERSION_OBSERVER;
    bool v3 = v4 || p[0] == CONF_VERSION_DATA_ID;
    bool v2 = v3 || p[0] == CONF_VERSION_REMOVED;
    unsigned n = p[1];
    p += 2;
    for (unsigned i = 0; i < n; i++) {
        struct cons_server *s = &c->servers[i];
        if (end - p < 10) {
            return RFS_EMALFORMED;
        }
        s->id = 0;
        for (int b = 0; b < 8; b++) {
            s->id |= (uint64_t)p[b] << (8 * b);
        }
        p += 8;
        s->role = *p++;
        size_t alen = *p++;
        if (s->id == RFS_NODE_NONE ||
            (s->role != CONS_VOTER && s->role != CONS_LEARNER &&
             (s->role != CONS_OBSERVER || !v4)) ||
            alen >= CONS_ADDR_MAX || (size_t)(end - p) < alen) {
            return RFS_EMALFORMED;
        }
        memcpy(s->addr, p, alen);
        s->addr[alen] = '\0';
        p += alen;
        if (v3) {
            if (end - p < 8) {
                return RFS_EMALFORMED;
            }
            s->data_id = get64(&p);
        }
        if (v5) {
            if (end - p < CONS_KEY_BYTES) {
                return RFS_EMALFORMED;
            }
            memcpy(s->key, p, CONS_KEY_BYTES);
            p += CONS_KEY_BYTES;
        }
        for (unsigned j = 0; j < i; j++) {
            if (c->servers[j].id == s->id) {
                return RFS_EMALFORMED;
            }
        }
    }
    c->n = n;
    if (v2) {
        if (end - p < 9) {
            return RFS_EMALFORMED;
        }
        c->removed_upto = get64(&p);
        unsigned nr = *p++;
        if (nr > CONS_MAX_REMOVED || (size_t)(end - p) < 16 * (size_t)nr) {
            return RFS_EMALFORMED;
        }
        for (unsigned i = 0; i < nr; i++) {
            c->removed[i].id = get64(&p);
            c->removed[i].index = get64(&p);
            if (c->removed[i].id == RFS_NODE_NONE ||
                cons_conf_get(c, c->removed[i].id) != NULL) {
                return RFS_EMALFORMED;
            }
        }
        c->n_removed = nr;
    }
    if (p != end) {
        return RFS_EMALFORMED;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Membership                                                                */

void cons__conf_set(struct cons_node *n, const struct cons_conf *c,
                    rfs_index_t index)
{
    n->conf = *c;
    n->conf_index = index;
    cons__trace(n, "configuration at %llu: %u servers, %u voters",
                (unsigned long long)index, c->n, cons_conf_voters(c));
    if (n->role == CONS_LEADER) {
        cons__progress_sync(n);
        if (n->transferee != 0 && !is_voter(n, n->transferee)) {
            n->transferee = 0;
        }
    }
}

/* A CONF entry entered the log: it is in force from now on (thesis 4.1). */
void cons__conf_from_entry(struct cons_node *n, const struct cons_entry *e)
{
    struct cons_conf c;
    if (cons_conf_decode(&e->data, &c) != 0) {
        /* Every CONF entry was validated by the leader that made it. */
        RFS_ASSERT(!"undecodable configuration entry");
    }
    cons__conf_set(n, &c, e->index);
}

/* After truncating the log, fall back to the latest configuration that is
 * still in it, or the snapshot's (RAFT-PITFALLS 4, rule 3). */
void cons__conf_rollback(struct cons_node *n)
{
    for (rfs_index_t i = last_index(n); i > n->log.base_index; i--) {
        const struct cons_entry *e = cons__log_get(&n->log, i);
        if (e->type == CONS_ENTRY_CONF) {
            cons__conf_from_entry(n, e);
            return;
        }
    }
    cons__conf_set(n, &n->snap.conf, n->snap.index);
}

/* The configuration in force at index (<= last index, >= snapshot). */
int cons__conf_at(const struct cons_node *n, rfs_index_t index,
                  struct cons_conf *out)
{
    for (rfs_index_t i = index; i > n->log.base_index; i--) {
        const struct cons_entry *e = cons__log_get(&n->log, i);
        if (e->type == CONS_ENTRY_CONF) {
            return cons_conf_decode(&e->data, out);
        }
    }
    *out = n->snap.conf;
    return 0;
}

/* Whether this node may propose a configuration change now: 0 or the
 * code cons_node_change returns. */
static int change_allowed(const struct cons_node *n)
{
    if (n->role != CONS_LEADER) {
        return RFS_ENOTLEADER;
    }
    /* One change at a time, and none until this leader committed an entry
     * of its own term: the fix to the single-server change bug (thesis
     * errata; RAFT-PITFALLS 4). */
    if ((n->commit < n->term_start || n->conf_index > n->commit) &&
        !MUTANT(6)) {
        return RFS_EBUSY;
    }
    return 0;
}

/* Append configuration c as a CONF entry (in force from now on). */
static int propose_conf(struct cons_node *n, const struct cons_conf *c,
                        rfs_index_t *index)
{
    struct rfs_buf buf;
    int rv = cons_conf_encode(c, &buf);
    if (rv != 0) {
        return rv;
    }
    rv = cons__append_local(n, CONS_ENTRY_CONF, buf.base, buf.len, index);
    if (rv != 0) {
        rfs_free(buf.base);
    }
    return rv;
}

/* id's record in c, or NULL: what the record_* changes fill in. */
static struct cons_server *member_of(struct cons_conf *c, rfs_nodeid_t id)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].id == id) {
            return &c->servers[i];
        }
    }
    return NULL;
}

int cons_node_record_data_ids(struct cons_node *n,
                              const struct cons_data_id *ids, unsigned k,
                              rfs_index_t *index)
{
    int rv = change_allowed(n);
    if (rv != 0) {
        return rv;
    }
    if (k == 0) {
        return RFS_EBADCONF;
    }
    struct cons_conf c = n->conf;
    for (unsigned j = 0; j < k; j++) {
        struct cons_server *s = member_of(&c, ids[j].id);
        /* A recorded id is never replaced: another folder under the same
         * node id is a wiped disk, which must leave and join under a new
         * id. */
        if (s == NULL || ids[j].data_id == 0 || s->data_id != 0) {
            return RFS_EBADCONF;
        }
        s->data_id = ids[j].data_id;
        cons__trace(n, "propose recording node %llu's data id %016llx",
                    (unsigned long long)ids[j].id,
                    (unsigned long long)ids[j].data_id);
    }
    return propose_conf(n, &c, index);
}

int cons_node_record_keys(struct cons_node *n, const struct cons_key *keys,
                          unsigned k, rfs_index_t *index)
{
    int rv = change_allowed(n);
    if (rv != 0) {
        return rv;
    }
    if (k == 0) {
        return RFS_EBADCONF;
    }
    struct cons_conf c = n->conf;
    for (unsigned j = 0; j < k; j++) {
        struct cons_server *s = member_of(&c, keys[j].id);
        /* Never replaced: a signature is worth only as much as the
         * certainty of whose key checks it; a member with a new key
         * leaves and joins under a new id, as a wiped one does. */
        if (s == NULL || !key_set(keys[j].key) || key_set(s->key)) {
            return RFS_EBADCONF;
        }
        memcpy(s->key, keys[j].key, CONS_KEY_BYTES);
        cons__trace(n, "propose recording node %llu's signing key",
                    (unsigned long long)keys[j].id);
    }
    return propose_conf(n, &c, index);
}

int cons_node_change(struct cons_node *n, enum cons_change_type type,
                     rfs_nodeid_t id, const char *addr, rfs_index_t *index)
{
    int rv = change_allowed(n);
    if (rv != 0) {
        return rv;
    }
    if (id == RFS_NODE_NONE) {
        return RFS_EBADCONF;
    }
    struct cons_conf c = n->conf;
    struct cons_server *s = NULL;
    for (unsigned i = 0; i < c.n; i++) {
        if (c.servers[i].id == id) {
            s = &c.servers[i];
        }
    }
    switch (type) {
    case CONS_ADD_LEARNER:
    case CONS_ADD_OBSERVER: {
        /* Ids are never reused (RAFT-PITFALLS 5): the server behind a
         * removed id may come back with a wiped disk, its vote forgotten. */
        rfs_index_t at;
        if (cons_conf_removed(&c, id, &at)) {
            return RFS_EIDREMOVED;
        }
        if (s != NULL || c.n >= CONS_MAX_SERVERS || addr == NULL ||
            addr[0] == '\0' || strlen(addr) >= CONS_ADDR_MAX) {
            return RFS_EBADCONF;
        }
        s = &c.servers[c.n++];
        memset(s, 0, sizeof(*s));
        s->id = id;
        s->role = type == CONS_ADD_OBSERVER ? CONS_OBSERVER : CONS_LEARNER;
        strcpy(s->addr, addr);
        break;
    }
    case CONS_PROMOTE:
        /* Only a learner: an observer is one for good (a fleet host the
         * operator never meant to weigh on commits). */
        if (s == NULL || s->role != CONS_LEARNER) {
            return RFS_EBADCONF;
        }
        s->role = CONS_VOTER;
        break;
    case CONS_DEMOTE:
        if (s == NULL || s->role != CONS_VOTER || cons_conf_voters(&c) < 2) {
            return RFS_EBADCONF;
        }
        s->role = CONS_LEARNER;
        break;
    case CONS_REMOVE:
        if (s == NULL ||
            (s->role == CONS_VOTER && cons_conf_voters(&c) < 2)) {
            return RFS_EBADCONF;
        }
        *s = c.servers[--c.n];
        /* The entry about to be appended is the one that removes it. */
        cons_conf_add_removed(&c, id, last_index(n) + 1);
        break;
    default:
        return RFS_EBADCONF;
    }
    cons__trace(n, "propose configuration change %d for %llu", (int)type,
                (unsigned long long)id);
    return propose_conf(n, &c, index);
}
