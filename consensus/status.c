#include "status.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

/* Appends to a bounded buffer and counts what did not fit. */
struct out {
    char *buf;
    size_t cap;
    size_t len;
};

static void put(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) {
        o->len += (size_t)n;
    }
}

static const char *addr_of(const struct node_status *st, rfs_nodeid_t id)
{
    for (unsigned i = 0; i < st->conf.n; i++) {
        if (st->conf.servers[i].id == id) {
            return st->conf.servers[i].addr;
        }
    }
    return "";
}

/* Addresses are host:port strings we parsed ourselves, but a JSON writer
 * must not trust that. */
/* A signing key in hex, or nothing if it is all zero (unknown). */
static void put_key(struct out *o, const char *name,
                    const uint8_t key[CONS_KEY_BYTES])
{
    uint8_t any = 0;
    for (unsigned i = 0; i < CONS_KEY_BYTES; i++) {
        any |= key[i];
    }
    if (any == 0) {
        return;
    }
    put(o, ",\"%s\":\"", name);
    for (unsigned i = 0; i < CONS_KEY_BYTES; i++) {
        put(o, "%02x", key[i]);
    }
    put(o, "\"");
}

static void put_json_string(struct out *o, const char *s)
{
    put(o, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            put(o, "\\%c", ch);
        } else if (ch < 0x20) {
            put(o, "\\u%04x", ch);
        } else {
            put(o, "%c", ch);
        }
    }
    put(o, "\"");
}

size_t status_json(const struct node_status *st, char *buf, size_t cap)
{
    struct out o = {buf, cap, 0};
    if (cap > 0) {
        buf[0] = '\0';
    }
    put(&o,
        "{\"id\":%" PRIu64 ",\"role\":\"%s\",\"term\":%" PRIu64
        ",\"leader\":%" PRIu64 ",\"commit_index\":%" PRIu64
        ",\"applied_index\":%" PRIu64 ",\"last_index\":%" PRIu64
        ",\"snapshot_index\":%" PRIu64 ",\"entries_proposed\":%" PRIu64
        ",\"batches_written\":%" PRIu64 ",\"batches_taken\":%" PRIu64
        ",\"peers_connected\":%u"
        ",\"leased_reads\":%" PRIu64 ",\"fast_barriers\":%" PRIu64
        ",\"address\":",
        st->core.id, cons_role_name(st->core.role), st->core.term,
        st->core.leader, st->core.commit, st->applied, st->core.last_index,
        st->core.snap_index, st->entries_proposed, st->batches_written,
        st->batches_taken, st->peers_connected, st->core.leased_reads,
        st->fast_barriers);
    put_json_string(&o, st->listen);
    put_key(&o, "signing_key", st->sign_pk);
    put(&o, ",\"removed\":%s,\"lock_orders\":%d,\"lock_level\":%u,"
        "\"last_error\":",
        st->removed ? "true" : "false", st->lock_orders ? 1 : 0,
        st->lock_level);
    put_json_string(&o, st->last_error);
    static const char *const state[] = {"off", "opening", "live",
                                        "may have ended", "ended"};
    unsigned k = (unsigned)st->session.state;
    put(&o, ",\"session\":{\"state\":\"%s\",\"boot\":%" PRIu64
        ",\"ttl_ms\":%u},\"live_sessions\":%u",
        k < sizeof(state) / sizeof(state[0]) ? state[k] : "?",
        st->session.boot, st->session.ttl_ms, st->live_sessions);
    if (st->gossip.on) {
        static const char *const groles[] = {"none", "voter", "observer"};
        const struct node_gossip *g = &st->gossip;
        put(&o, ",\"gossip\":{\"role\":\"%s\",\"applied\":%" PRIu64
            ",\"known_head\":%" PRIu64 ",\"msgs_out\":%" PRIu64
            ",\"bytes_out\":%" PRIu64 ",\"entries_out\":%" PRIu64
            ",\"points_signed\":%" PRIu64 ",\"pulls_answered\":%" PRIu64
            ",\"too_old\":%" PRIu64 ",\"refusals\":%" PRIu64
            ",\"entries_taken\":%" PRIu64
            ",\"answers_refused\":%" PRIu64 ",\"answers_cut\":%" PRIu64
            ",\"raft_msgs_to_observers\":%" PRIu64
            ",\"raft_bytes_to_observers\":%" PRIu64
            ",\"raft_snap_bytes\":%" PRIu64 ",\"images_signed\":%" PRIu64
            ",\"images_served\":%" PRIu64
            ",\"image_bytes_served\":%" PRIu64
            ",\"images_fetched\":%" PRIu64
            ",\"image_bytes_fetched\":%" PRIu64
            ",\"image_refusals\":%" PRIu64 ",\"last_refusal\":",
            g->role < 3 ? groles[g->role] : "?", g->applied, g->known_head,
            g->msgs_out, g->bytes_out, g->entries_out, g->points_signed,
            g->pulls_answered, g->too_old, g->refusals, g->entries_taken,
            g->answers_refused, g->answers_cut, g->raft_msgs_to_observers,
            g->raft_bytes_to_observers, g->raft_snap_bytes, g->images_signed,
            g->images_served, g->image_bytes_served, g->images_fetched,
            g->image_bytes_fetched, g->image_refusals);
        put_json_string(&o, g->last_refusal);
        put(&o, "}");
    }
    put(&o, ",\"members\":[");
    bool leader = st->core.role == CONS_LEADER;
    for (unsigned i = 0; i < st->conf.n; i++) {
        const struct cons_server *s = &st->conf.servers[i];
        put(&o, "%s{\"id\":%" PRIu64 ",\"address\":", i ? "," : "", s->id);
        put_json_string(&o, s->addr);
        put(&o, ",\"role\":\"%s\"", cons_server_role_name(s->role));
        put_key(&o, "key", s->key);
        if (leader) {
            /* Only the leader knows how far each member has replicated. */
            put(&o, ",\"match\":%" PRIu64 ",\"lag\":%" PRIu64, st->match[i],
                st->core.last_index - st->match[i]);
        }
        put(&o, "}");
    }
    put(&o, "]}\n");
    return o.len;
}

size_t status_leader(const struct node_status *st, char *buf, size_t cap)
{
    struct out o = {buf, cap, 0};
    if (cap > 0) {
        buf[0] = '\0';
    }
    if (st->core.leader == RFS_NODE_NONE) {
        put(&o, "none\n");
    } else {
        put(&o, "%" PRIu64 " %s\n", st->core.leader,
            addr_of(st, st->core.leader));
    }
    return o.len;
}

size_t status_members(const struct node_status *st, char *buf, size_t cap)
{
    struct out o = {buf, cap, 0};
    if (cap > 0) {
        buf[0] = '\0';
    }
    /* Observers after the others: in a fleet they are the many lines, and
     * the few that make the quorum should not drown among them. */
    for (int observers = 0; observers <= 1; observers++) {
        for (unsigned i = 0; i < st->conf.n; i++) {
            const struct cons_server *s = &st->conf.servers[i];
            if ((s->role == CONS_OBSERVER) != (observers == 1)) {
                continue;
            }
            put(&o, "%" PRIu64 " %s %s%s%s\n", s->id, s->addr,
                cons_server_role_name(s->role),
                s->id == st->core.leader ? " leader" : "",
                s->id == st->core.id ? " self" : "");
        }
    }
    return o.len;
}
