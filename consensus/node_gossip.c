/*
 * The node runtime's gossip (issue 16): observers fed by voters and by
 * each other through a struct spread (spread.h), on the node's loop
 * thread. Moved out of node.c as is; node_i.h is what the two share.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "../common/heap.h"
#include "gimage.h"
#include "node_i.h"

/* ------------------------------------------------------------------------ */
/* Gossip: observers fed by voters and by each other (issue 16)              */

/*
 * With node_options.gossip, the leader sends observers no entries
 * (cons_options.gossip_observers). Instead:
 *
 * - a voter feeds every entry it applies to its struct spread (spread.h),
 *   which signs a commit point with this node's key and pushes the new
 *   entries, with it, to a few observers;
 * - an observer hands every message it hears to its spread, whose
 *   verifier releases entries only once a voter's signed point proves
 *   them, in log order; released entries go into the Raft log as
 *   committed (cons_node_commit_proven), so they are persisted, applied
 *   and answered (a forwarded write, a read barrier waiting for its index)
 *   exactly as entries from a leader would be;
 * - both tick it from the loop's timer (a voter's overdue point, an
 *   observer's digest, which pulls what pushes lost).
 *
 * Whether this node is a voter, an observer or neither is read from the
 * configuration after every host call (gossip_sync), which also keeps the
 * spread's peers and voters' keys in step with it. The spread starts at the
 * store's applied index and chain hash, and starts again there after a
 * snapshot was installed (the store jumped) or after a failure inside it.
 */
static uint64_t gossip_now_ms(void)
{
    return node__boottime_ns() / 1000000u;
}

void node__gossip_stop(struct node *n)
{
    if (n->spread != NULL) {
        spread_free(n->spread);
        n->spread = NULL;
    }
}

/* A voter's spread also answers pulls from the entries it holds in memory
 * below its applied index: with no snapshot yet, the core's log holds the
 * whole history, and an observer that joins late pulls it from there. The
 * chain is recomputed from index 1 and must end on the store's value. */
static void gossip_prefill(struct node *n, const struct spread_options *so,
                           rfs_index_t applied,
                           const uint8_t hash[GOSSIP_HASH_BYTES])
{
    struct cons_node *core = host_core(n->host);
    if (applied == 0 || cons_node_entry(core, 1) == NULL) {
        return;
    }
    uint8_t zero[GOSSIP_HASH_BYTES] = {0};
    struct spread *s = spread_new(so, 0, zero);
    if (s == NULL) {
        return;
    }
    uint64_t now = gossip_now_ms();
    for (rfs_index_t i = 1; i <= applied; i++) {
        const struct cons_entry *e = cons_node_entry(core, i);
        if (e == NULL || spread_applied(s, e, 1, now) != 0) {
            spread_free(s);
            return;
        }
    }
    uint8_t got[GOSSIP_HASH_BYTES];
    spread_applied_index(s, got);
    if (memcmp(got, hash, GOSSIP_HASH_BYTES) != 0) {
        node__log(n, RFS_LOG_WARN, "gossip: the log's chain at %" PRIu64
                  " differs from the store's; serving pulls from %" PRIu64
                  " on only", applied, applied);
        spread_free(s);
        return;
    }
    /* Nothing queued while prefilling was sent: the first ticks push. */
    spread_outbox_clear(s);
    spread_free(n->spread);
    n->spread = s;
}

/* A voter's spread answers pulls below its cache from the Raft log: the
 * core keeps every entry since its last compaction. */
static const struct cons_entry *gossip_log_entry(void *arg,
                                                 rfs_index_t index)
{
    struct node *n = arg;
    return cons_node_entry(host_core(n->host), index);
}

/* (Re)start the spread as voter or observer at the store's applied index. */
static void gossip_start(struct node *n, bool voter)
{
    node__gossip_stop(n);
    rfs_index_t applied;
    uint8_t hash[GOSSIP_HASH_BYTES];
    int rv = store_chain(n->store, &applied, hash);
    if (rv != 0) {
        /* A state from before the chain: it cannot vouch, nor check. */
        node__log(n, RFS_LOG_WARN, "gossip: this node's state has no chain "
                  "hash (%s): it takes no part in gossip", rfs_strerror(rv));
        return;
    }
    struct spread_options so = {.self = n->o.id, .voter = voter,
                                .cache = n->o.gossip_cache};
    if (voter) {
        so.log_entry = gossip_log_entry;
        so.log_arg = n;
    }
    randombytes_buf(&so.seed, sizeof(so.seed));
    n->spread = spread_new(&so, applied, hash);
    if (n->spread == NULL) {
        node__log(n, RFS_LOG_ERROR, "gossip: out of memory starting it");
        return;
    }
    if (voter) {
        gossip_prefill(n, &so, applied, hash);
        spread_set_key(n->spread, n->sign_sk);
    }
    n->spread_voter = voter;
    n->spread_conf = 0; /* Peers and keys to set. */
    n->gossip.role = voter ? NODE_GOSSIP_VOTER : NODE_GOSSIP_OBSERVER;
    node__log(n, RFS_LOG_INFO, "gossip: started as %s at index %" PRIu64,
              voter ? "voter" : "observer", applied);
}

static bool key_recorded(const struct cons_server *sv)
{
    uint8_t any = 0;
    for (unsigned b = 0; b < CONS_KEY_BYTES; b++) {
        any |= sv->key[b];
    }
    return any != 0;
}

/* Peers and voters' keys from the configuration in force. */
static void gossip_peers(struct node *n, const struct cons_conf *c)
{
    rfs_nodeid_t ids[CONS_MAX_SERVERS];
    struct gossip_key keys[CONS_MAX_SERVERS];
    unsigned ni = 0, nk = 0;
    for (unsigned i = 0; i < c->n; i++) {
        const struct cons_server *sv = &c->servers[i];
        if (sv->role == CONS_VOTER && key_recorded(sv)) {
            keys[nk].id = sv->id;
            memcpy(keys[nk].pk, sv->key, GOSSIP_PK_BYTES);
            nk++;
        }
        /* A voter pushes to observers; an observer talks to both. */
        if (sv->id != n->o.id &&
            (sv->role == CONS_OBSERVER ||
             (sv->role == CONS_VOTER && !n->spread_voter))) {
            ids[ni++] = sv->id;
        }
    }
    if (spread_set_peers(n->spread, ids, ni) != 0 ||
        spread_set_voters(n->spread, keys, nk) != 0) {
        node__gossip_stop(n); /* Out of memory: started again next time. */
    }
}

/* Which peers the transport is connected to now: the spread pushes and
 * sends digests only to those (issue 16: an observer needs a way to some
 * peers, not a firewall hole towards every one). Cheap (a few tens of
 * servers), so it runs after every host call and at every tick rather
 * than on the transport's connection events. */
static void gossip_reach(struct node *n, const struct cons_conf *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        rfs_nodeid_t id = c->servers[i].id;
        if (id != n->o.id) {
            spread_set_reachable(n->spread, id,
                                 transport_connected(n->net, id));
        }
    }
}

/*
 * Whether to start gossiping. A voter waits until the configuration
 * records its own key: a point nobody can check is refused, and a refusal
 * makes the observer stop listening to the sender for a while. An observer
 * waits until it holds every voter's key: before that it could only refuse
 * points from the voters it does not know yet, and the leader feeds it the
 * configuration entries that record them (cons_options.gossip_observers).
 */
static bool gossip_ready(struct node *n, const struct cons_conf *c, bool voter)
{
    for (unsigned i = 0; i < c->n; i++) {
        const struct cons_server *sv = &c->servers[i];
        if (voter && sv->id == n->o.id) {
            return key_recorded(sv) &&
                   memcmp(sv->key, n->sign_pk, CONS_KEY_BYTES) == 0;
        }
        if (!voter && sv->role == CONS_VOTER && !key_recorded(sv)) {
            return false;
        }
    }
    return !voter;
}

/* Follow the configuration: this node's part, its peers, the voters' keys;
 * and start again after the store moved past the spread (a snapshot). */
void node__gossip_sync(struct node *n)
{
    if (!n->o.gossip || n->stopping) {
        return;
    }
    struct cons_node *core = host_core(n->host);
    const struct cons_conf *c = cons_node_conf(core);
    const struct cons_server *me = cons_conf_get(c, n->o.id);
    bool voter = me != NULL && me->role == CONS_VOTER;
    bool observer = me != NULL && me->role == CONS_OBSERVER;
    if (!voter && !observer) {
        node__gossip_stop(n);
        n->gossip.role = NODE_GOSSIP_NONE;
        return;
    }
    if (n->spread == NULL && !gossip_ready(n, c, voter)) {
        return;
    }
    if (n->spread == NULL || n->spread_voter != voter ||
        (observer &&
         store_applied(n->store) > spread_applied_index(n->spread, NULL))) {
        gossip_start(n, voter);
        if (n->spread == NULL) {
            return;
        }
    }
    struct cons_status st;
    cons_node_status(core, &st);
    if (n->spread_conf != st.conf_index) {
        n->spread_conf = st.conf_index;
        gossip_peers(n, c);
    }
    if (n->spread != NULL) {
        gossip_reach(n, c);
    }
}

/* Send what the spread queued. */
void node__gossip_flush(struct node *n)
{
    if (n->spread == NULL) {
        return;
    }
    unsigned k;
    const struct spread_out *out = spread_outbox(n->spread, &k);
    for (unsigned i = 0; i < k; i++) {
        /* The outbox keeps its buffers; the transport takes a copy. */
        void *copy = rfs_malloc(out[i].bytes.len);
        if (copy == NULL) {
            break; /* Lost like a dropped frame: pulls repair it. */
        }
        memcpy(copy, out[i].bytes.base, out[i].bytes.len);
        transport_gossip(n->net, out[i].to,
                         (struct rfs_buf){copy, out[i].bytes.len});
    }
    spread_outbox_clear(n->spread);
}

/* Hand released entries to the Raft log as committed, in batches. */
static void gossip_commit(struct node *n, struct cons_entry *e, unsigned k)
{
    int rv = cons_node_commit_proven(host_core(n->host), e, k);
    for (unsigned i = 0; i < k; i++) {
        rfs_free(e[i].data.base);
    }
    if (rv != 0) {
        node__log(n, RFS_LOG_ERROR, "gossip: entries %" PRIu64 "..%" PRIu64
                  " were proven committed but the log refused them: %s; "
                  "starting over from the store", e[0].index, e[k - 1].index,
                  rfs_strerror(rv));
        node__gossip_stop(n);
        return;
    }
    n->gossip.entries_taken += k;
}

/* After the spread did something: a failure starts it again, released
 * entries go to the log, a new refusal is logged, the outbox is sent. */
static void gossip_after(struct node *n, int rv)
{
    if (rv != 0) {
        node__log(n, RFS_LOG_ERROR, "gossip: %s; starting over from the store",
                  rfs_strerror(rv));
        node__gossip_stop(n);
        return;
    }
    if (!n->spread_voter) {
        struct cons_entry batch[64];
        unsigned k = 0;
        struct cons_entry e;
        while (n->spread != NULL && spread_take(n->spread, &e)) {
            batch[k++] = e;
            if (k == sizeof(batch) / sizeof(batch[0])) {
                gossip_commit(n, batch, k);
                k = 0;
            }
        }
        if (k > 0 && n->spread != NULL) {
            gossip_commit(n, batch, k);
        } else {
            for (unsigned i = 0; i < k; i++) {
                rfs_free(batch[i].data.base);
            }
        }
        if (n->spread == NULL) {
            return;
        }
        const char *why = spread_refusal(n->spread);
        if (why[0] != '\0' && strcmp(why, n->gossip.last_refusal) != 0) {
            /* Named once per distinct refusal: a hostile peer repeating
             * itself does not flood the log. */
            node__log(n, RFS_LOG_WARN, "gossip: refused: %s", why);
            snprintf(n->gossip.last_refusal, sizeof(n->gossip.last_refusal),
                     "%s", why);
        }
    }
    node__gossip_flush(n);
}

void node__gossip_applied(struct node *n, const struct cons_entry *e,
                          unsigned cnt)
{
    if (n->spread == NULL || !n->spread_voter || cnt == 0) {
        return;
    }
    if (e[0].index != spread_applied_index(n->spread, NULL) + 1) {
        /* The store jumped (a snapshot was installed): start over from
         * it, now that it holds these entries too. */
        gossip_start(n, true);
        n->spread_conf = 0;
        node__gossip_sync(n);
        return;
    }
    gossip_after(n, spread_applied(n->spread, e, cnt, gossip_now_ms()));
}

/* A GOSSIP frame from an authenticated peer (transport.h). */
void node__net_gossip(void *data, rfs_nodeid_t from, const uint8_t *body,
                      size_t len)
{
    struct node *n = data;
    if (len > 0 && gimage_is_kind(body[0])) {
        node__gimage_recv(n, from, body, len);
        host_poke(n->host);
        return;
    }
    if (n->spread == NULL || n->stopping) {
        return; /* Not part of it (yet): the sender's pulls retry. */
    }
    struct gossip_msg m;
    struct rfs_buf in = {(void *)body, len};
    int rv = gossip_msg_decode(&in, &m, n->gossip_in, GOSSIP_MSG_ENTRIES_MAX);
    if (rv != 0) {
        node__log(n, RFS_LOG_WARN,
                  "gossip: a malformed message from node %" PRIu64
                  " (%zu bytes): dropped", from, len);
        return;
    }
    gossip_after(n, spread_recv(n->spread, from, &m, gossip_now_ms()));
    host_poke(n->host);
}

void node__gossip_tick(struct node *n)
{
    if (n->spread != NULL) {
        gossip_reach(n, cons_node_conf(host_core(n->host)));
        gossip_after(n, spread_tick(n->spread, gossip_now_ms()));
    }
    node__gimage_tick(n);
}

void node__gossip_status(struct node *n, struct node_gossip *g)
{
    *g = n->gossip;
    g->on = n->o.gossip;
    if (n->spread == NULL) {
        return;
    }
    struct spread_stats ss;
    spread_get_stats(n->spread, &ss);
    g->applied = spread_applied_index(n->spread, g->chain);
    g->known_head = spread_known_head(n->spread);
    g->msgs_out = ss.msgs_out;
    g->bytes_out = ss.bytes_out;
    g->entries_out = ss.entries_out;
    g->points_signed = ss.points_signed;
    g->pulls_answered = ss.pulls_answered;
    g->too_old = ss.too_old;
    g->from_log = ss.from_log;
    g->refusals = ss.refusals;
    g->answers_refused = ss.answers_refused;
    g->answers_cut = ss.answers_cut;
}
