/*
 * Sessions at apply: exactly once, and the node sessions that fence a
 * node cut off from the cluster.
 *
 * Exactly once. A command carries (client, boot, seq, first_outstanding).
 * The session table keeps the result of each applied seq above
 * first_outstanding (everything below has been answered and is forgotten), so
 * a request retried after a leader change returns its first result instead
 * of applying twice. A new boot id for a client ends its previous boot's
 * session; a request from an older boot than the one recorded is refused
 * (ESTALE): its process is gone, and its session with it.
 *
 * Node sessions. A client's latest boot, its TTL and whether it is live;
 * once ended, its late changes fail (EROFS), and its ephemeral files and
 * locks go with it.
 */
#include <errno.h>
#include <string.h>

#include "../common/heap.h"
#include "store_i.h"

static void session_key(uint8_t *k, rfs_nodeid_t client, uint64_t boot,
                        uint64_t seq)
{
    k[0] = 'S';
    rfs_put_be64(k + 1, client);
    rfs_put_be64(k + 9, boot);
    rfs_put_be64(k + 17, seq);
}

/* Look the request up; writes nothing. */
int store__session_check(struct tx *t, const struct store_cmd *c,
                         struct store_result *r, enum session_state *st,
                         struct session_head *h)
{
    uint8_t bk[9];
    bk[0] = 'B';
    rfs_put_be64(bk + 1, c->client);
    char *v;
    size_t len;
    int rv = store__get(t->s, t->s->ro, CF_SESSIONS, bk, 9, &v, &len,
                 "reading a session");
    if (rv != 0) {
        return rv;
    }
    memset(h, 0, sizeof(*h));
    if (v != NULL && len == 16) {
        h->found = true;
        h->boot = rfs_get_le64((uint8_t *)v);
        h->purged = rfs_get_le64((uint8_t *)v + 8);
    }
    rocksdb_free(v);
    *st = SESSION_NEW;
    if (h->found && c->boot < h->boot) {
        *st = SESSION_STALE;
        return 0;
    }
    if (!h->found || c->boot > h->boot) {
        return 0;
    }
    if (c->seq < h->purged) {
        /* Answered and forgotten: the client moved past it, so this copy
         * is a stray duplicate that nobody waits for. Never apply twice. */
        *st = SESSION_STALE;
        return 0;
    }
    uint8_t k[25];
    session_key(k, c->client, c->boot, c->seq);
    rv = store__get(t->s, t->s->ro, CF_SESSIONS, k, 25, &v, &len,
             "reading a session");
    if (rv != 0) {
        return rv;
    }
    if (v != NULL) {
        if (len == 12) {
            r->err = (int)rfs_get_le32((uint8_t *)v);
            r->ino = rfs_get_le64((uint8_t *)v + 4);
        }
        r->duplicate = true;
        *st = SESSION_DUPLICATE;
        rocksdb_free(v);
    }
    return 0;
}

/* Point-delete the records of client/boot with seq in [from, to). */
static int session_forget(struct tx *t, rfs_nodeid_t client, uint64_t boot,
                          uint64_t from, uint64_t to)
{
    uint8_t a[25], z[25];
    session_key(a, client, boot, from);
    session_key(z, client, boot, to);
    struct store_iter i;
    store__iter_open(t->s, NULL, CF_SESSIONS, a, 25, z, 25, &i);
    for (; rocksdb_iter_valid(i.it); rocksdb_iter_next(i.it)) {
        size_t klen;
        const char *k = rocksdb_iter_key(i.it, &klen);
        if (klen != 25 || memcmp(k, z, 25) >= 0) {
            break;
        }
        rocksdb_writebatch_delete_cf(t->b, t->s->cf[CF_SESSIONS], k, klen);
    }
    return store__iter_close(t->s, &i, "forgetting answered requests");
}

static int session_end(struct tx *t, rfs_nodeid_t client, uint64_t boot);

/* Record the result of a new request, start the client's new boot if this is
 * one (ending the old boot's session), and forget answered requests. */
int store__session_record(struct tx *t, const struct store_cmd *c,
                          const struct session_head *h,
                          const struct store_result *r)
{
    struct session_head nh = *h;
    int rv = 0;
    if (!h->found || c->boot > h->boot) {
        if (h->found) {
            rv = session_forget(t, c->client, h->boot, 0, UINT64_MAX);
            if (rv == 0) {
                rv = session_end(t, c->client, h->boot);
            }
        }
        nh.boot = c->boot;
        nh.purged = 0;
    }
    /* Everything below first_outstanding was answered: forget it, which
     * bounds the table by the client's requests in flight. Each record is
     * deleted once, when the low-water mark passes it. */
    if (rv == 0 && c->first_outstanding > nh.purged) {
        rv = session_forget(t, c->client, c->boot, nh.purged,
                            c->first_outstanding);
        if (rv == 0) {
            rv = locks_forget(t, c, r, nh.purged, c->first_outstanding);
        }
        nh.purged = c->first_outstanding;
    }
    if (rv != 0) {
        return rv;
    }
    uint8_t bk[9], bv[16];
    bk[0] = 'B';
    rfs_put_be64(bk + 1, c->client);
    rfs_put_le64(bv, nh.boot);
    rfs_put_le64(bv + 8, nh.purged);
    rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_SESSIONS], (char *)bk, 9,
                              (char *)bv, 16);
    if (c->seq >= nh.purged) {
        uint8_t k[25], v[12];
        session_key(k, c->client, c->boot, c->seq);
        rfs_put_le32(v, (uint32_t)r->err);
        rfs_put_le64(v + 4, r->ino);
        rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_SESSIONS], (char *)k, 25,
                                  (char *)v, 12);
    }
    return 0;
}

/* ---- Node sessions ---------------------------------------------------- */

/* A client's latest node session: 'L' client -> le64 boot, le32 ttl_ms,
 * u8 live. One record per client, kept once ended so that the ended boot
 * stays fenced (its late changes fail with EROFS). */
struct live_session {
    bool found;
    uint64_t boot;
    uint32_t ttl_ms;
    bool live;
};

#define LIVE_VALUE_SIZE 13

static void live_key(uint8_t *k, rfs_nodeid_t client)
{
    k[0] = 'L';
    rfs_put_be64(k + 1, client);
}

static int live_get(struct tx *t, rfs_nodeid_t client, struct live_session *l)
{
    uint8_t k[9];
    live_key(k, client);
    char *v;
    size_t len;
    int rv = store__get(t->s, t->s->ro, CF_SESSIONS, k, 9, &v, &len,
                 "reading a node session");
    if (rv != 0) {
        return rv;
    }
    memset(l, 0, sizeof(*l));
    if (v != NULL && len == LIVE_VALUE_SIZE) {
        const uint8_t *p = (const uint8_t *)v;
        l->found = true;
        l->boot = rfs_get_le64(p);
        l->ttl_ms = rfs_get_le32(p + 8);
        l->live = p[12] != 0;
    }
    rocksdb_free(v);
    return 0;
}

static void live_put(struct tx *t, rfs_nodeid_t client,
                     const struct live_session *l)
{
    uint8_t k[9], v[LIVE_VALUE_SIZE];
    live_key(k, client);
    rfs_put_le64(v, l->boot);
    rfs_put_le32(v + 8, l->ttl_ms);
    v[12] = l->live;
    rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_SESSIONS], (char *)k, 9,
                              (char *)v, LIVE_VALUE_SIZE);
}

/* 'E' client boot ino -> le64 parent + name. */
static void ephemeral_key(uint8_t *k, rfs_nodeid_t client, uint64_t boot,
                          uint64_t ino)
{
    k[0] = 'E';
    rfs_put_be64(k + 1, client);
    rfs_put_be64(k + 9, boot);
    rfs_put_be64(k + 17, ino);
}

/* CREATE made file ino: if its directory is marked ephemeral, tie the file
 * (by its name there) to the creator's session. */
int store__ephemeral_note(struct tx *t, const struct store_cmd *c,
                          uint64_t ino)
{
    if (c->client == 0) {
        return 0;
    }
    size_t nlen = sizeof(STORE_EPHEMERAL_XATTR) - 1;
    uint8_t xk[8 + sizeof(STORE_EPHEMERAL_XATTR)];
    rfs_put_be64(xk, c->parent);
    memcpy(xk + 8, STORE_EPHEMERAL_XATTR, nlen);
    char *v;
    size_t vlen;
    int rv = store__get(t->s, t->s->ro, CF_XATTRS, xk, 8 + nlen, &v, &vlen,
                 "reading an extended attribute");
    if (rv != 0) {
        return rv;
    }
    bool marked = v != NULL && vlen == 1 && v[0] == '1';
    rocksdb_free(v);
    if (!marked) {
        return 0;
    }
    uint8_t k[25];
    ephemeral_key(k, c->client, c->boot, ino);
    uint8_t *val = rfs_malloc(8 + c->name_len);
    if (val == NULL) {
        return -ENOMEM;
    }
    rfs_put_le64(val, c->parent);
    memcpy(val + 8, c->name, c->name_len);
    rocksdb_writebatch_put_cf(t->b, t->s->cf[CF_SESSIONS], (char *)k, 25,
                              (char *)val, 8 + c->name_len);
    rfs_free(val);
    return 0;
}

/* Unlink the session's ephemeral files that still bear the name they were
 * created under (one renamed away, or replaced by another file of that
 * name, is left alone), and forget their records. */
static int ephemeral_drop(struct tx *t, rfs_nodeid_t client, uint64_t boot)
{
    uint8_t a[25], z[25];
    ephemeral_key(a, client, boot, 0);
    ephemeral_key(z, client, boot + 1, 0);
    struct store_iter i;
    store__iter_open(t->s, NULL, CF_SESSIONS, a, 25, z, 25, &i);
    rocksdb_iterator_t *it = i.it;
    int rv = 0;
    for (; rv == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen != 25 || memcmp(k, z, 25) >= 0 || k[0] != 'E') {
            break;
        }
        const char *v = rocksdb_iter_value(it, &vlen);
        rocksdb_writebatch_delete_cf(t->b, t->s->cf[CF_SESSIONS], k, klen);
        if (vlen < 9 || vlen > 8 + STORE_NAME_MAX) {
            continue; /* A damaged record: forget it, unlink nothing. */
        }
        uint64_t ino = rfs_get_be64((const uint8_t *)k + 17);
        struct store_cmd u = {.op = STORE_OP_UNLINK};
        u.parent = rfs_get_le64((const uint8_t *)v);
        u.name = v + 8;
        u.name_len = (uint16_t)(vlen - 8);
        uint64_t have;
        uint8_t type;
        rv = store__dentry_get(t->s, t->s->ro, u.parent, u.name, u.name_len,
                               &have, &type);
        if (rv == -ENOENT || (rv == 0 && (have != ino || type != STORE_FILE))) {
            rv = 0;
            continue;
        }
        if (rv == 0 && !t->orphan) {
            /* Watchers see it go, as any unlink (raftfs watch). */
            rv = store__history_add_more(t->s, t->b, t->index, ++t->history_sub,
                                         STORE_CH_UNLINK, u.parent, u.name,
                                         u.name_len);
        }
        if (rv == 0) {
            uint64_t gone;
            rv = store__op_remove(t, &u, false, &gone);
            rv = rv > 0 ? 0 : rv; /* Gone meanwhile: nothing to do. */
        }
    }
    int crv = store__iter_close(t->s, &i, "reading ephemeral files");
    return rv != 0 ? rv : crv;
}

/*
 * The session (client, boot) ends: mark it ended (fencing its late
 * changes) and drop everything tied to it. Called when a SESSION_END entry
 * applies and when a newer boot of the client first applies a command. The
 * one place where what belongs to a session is released.
 */
static int session_end(struct tx *t, rfs_nodeid_t client, uint64_t boot)
{
    struct live_session l;
    int rv = live_get(t, client, &l);
    if (rv != 0) {
        return rv;
    }
    /* An entry that opened the client's new session has written its record
     * already (same batch): the old one is replaced, not marked. */
    if (l.found && l.boot == boot && l.live && !t->session_opened) {
        l.live = false;
        live_put(t, client, &l);
    }
    t->locks_by_session = true; /* The history says why they ended. */
    rv = locks_drop_session(t, client, boot);
    t->locks_by_session = false;
    if (rv != 0) {
        return rv;
    }
    return ephemeral_drop(t, client, boot);
}

int store__op_session_open(struct tx *t, const struct store_cmd *c)
{
    if (c->offset == 0 || c->offset > UINT32_MAX || c->client == 0) {
        return EINVAL;
    }
    struct live_session l = {.found = true, .boot = c->boot,
                             .ttl_ms = (uint32_t)c->offset, .live = true};
    live_put(t, c->client, &l);
    t->session_opened = true;
    return 0;
}

int store__op_session_end(struct tx *t, const struct store_cmd *c)
{
    struct live_session l;
    int rv = live_get(t, c->ino, &l);
    if (rv != 0) {
        return rv;
    }
    if (!l.found || !l.live || l.boot != c->offset) {
        return ENOENT; /* Ended already, or a newer boot replaced it. */
    }
    return session_end(t, c->ino, c->offset);
}

/* Whether c's (client, boot) session has ended: its changes are refused. */
int store__session_fenced(struct tx *t, const struct store_cmd *c,
                          bool *fenced)
{
    struct live_session l;
    int rv = live_get(t, c->client, &l);
    *fenced = rv == 0 && l.found && !l.live && l.boot == c->boot;
    return rv;
}

int store_sessions(struct store *s, store_session_cb cb, void *arg)
{
    struct store_iter i;
    store__iter_open(s, NULL, CF_SESSIONS, "L", 1, "M", 1, &i);
    rocksdb_iterator_t *it = i.it;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen == 0 || k[0] != 'L') {
            break;
        }
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        if (klen != 9 || vlen != LIVE_VALUE_SIZE) {
            continue;
        }
        if (cb(arg, rfs_get_be64((const uint8_t *)k + 1), rfs_get_le64(v),
               rfs_get_le32(v + 8), v[12] != 0) != 0) {
            break;
        }
    }
    return store__iter_close(s, &i, "reading node sessions");
}
