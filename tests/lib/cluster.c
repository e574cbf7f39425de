/* The hand-driven test cluster. See cluster.h. */
#include "cluster.h"

#include <stdlib.h>
#include <string.h>

#include "../../common/assert.h"
#include "../../common/heap.h"

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    RFS_ASSERT(p != NULL);
    return p;
}

static struct cl_msg *msg_copy(const struct cons_msg *m, bool wait)
{
    struct cl_msg *c = calloc(1, sizeof(*c));
    RFS_ASSERT(c != NULL);
    c->m = *m;
    c->wait_durable = wait;
    if (m->n_entries > 0) {
        struct cons_entry *e = xmalloc(m->n_entries * sizeof(*e));
        for (unsigned i = 0; i < m->n_entries; i++) {
            e[i] = m->entries[i];
            e[i].data.base = NULL;
            if (m->entries[i].data.len > 0) {
                e[i].data.base = xmalloc(m->entries[i].data.len);
                memcpy(e[i].data.base, m->entries[i].data.base,
                       m->entries[i].data.len);
            }
        }
        c->m.entries = e;
    }
    if (m->snap != NULL) {
        struct cons_snap_meta *s = xmalloc(sizeof(*s));
        *s = *m->snap;
        c->m.snap = s;
    }
    if (m->type == CONS_MSG_SNAPSHOT && m->data.len > 0) {
        /* The "image" is the letter 'S' repeated: the test host's fill. */
        c->m.data.base = xmalloc(m->data.len);
        memset(c->m.data.base, 'S', m->data.len);
    } else if (m->data.len > 0 && m->data.base != NULL) {
        c->m.data.base = xmalloc(m->data.len);
        memcpy(c->m.data.base, m->data.base, m->data.len);
    }
    return c;
}

static void msg_free(struct cl_msg *c)
{
    for (unsigned i = 0; i < c->m.n_entries; i++) {
        free(c->m.entries[i].data.base);
    }
    free(c->m.entries);
    free(c->m.snap);
    free(c->m.data.base);
    free(c);
}

static void write_free(struct cl_write *w);

static void wire(struct cl *c, struct cl_msg *m)
{
    c->sent[m->m.type]++;
    m->next = NULL;
    if (c->q_tail) {
        c->q_tail->next = m;
    } else {
        c->q = m;
    }
    c->q_tail = m;
}

static void node_start(struct cl *c, unsigned id)
{
    struct cl_node *x = &c->nodes[id];
    struct cons_options o = c->opts;
    o.id = id;
    o.seed = id * 7919;
    struct cons_load l;
    memset(&l, 0, sizeof(l));
    l.hs = x->hs;
    l.entries = x->log;
    l.n_entries = x->n_log;
    l.applied = 0;
    RFS_ASSERT(cons_node_new(&o, &l, &x->n) == 0);
    x->up = true;
    x->applied = 0;
}

void cl_init_opts(struct cl *c, unsigned voters, unsigned learners,
                  const struct cons_options *tmpl)
{
    memset(c, 0, sizeof(*c));
    c->n = voters + learners;
    RFS_ASSERT(c->n <= CL_MAX);
    c->opts = *tmpl;
    struct cons_conf conf;
    memset(&conf, 0, sizeof(conf));
    for (unsigned i = 1; i <= c->n; i++) {
        conf.servers[conf.n].id = i;
        conf.servers[conf.n].role = i <= voters ? CONS_VOTER : CONS_LEARNER;
        strcpy(conf.servers[conf.n].addr, "test");
        conf.n++;
    }
    struct cons_entry boot;
    RFS_ASSERT(cons_bootstrap_entry(&conf, &boot) == 0);
    for (unsigned i = 1; i <= c->n; i++) {
        struct cl_node *x = &c->nodes[i];
        x->log[0] = boot;
        x->log[0].data.base = xmalloc(boot.data.len);
        memcpy(x->log[0].data.base, boot.data.base, boot.data.len);
        x->n_log = 1;
        node_start(c, i);
    }
    rfs_free(boot.data.base);
}

void cl_init(struct cl *c, unsigned voters, unsigned learners)
{
    struct cons_options o;
    cons_options_default(&o, 1);
    cl_init_opts(c, voters, learners, &o);
}

void cl_close(struct cl *c)
{
    cl_drop_all(c);
    for (unsigned i = 1; i <= c->n; i++) {
        struct cl_node *x = &c->nodes[i];
        while (x->writes) {
            struct cl_write *w = x->writes;
            x->writes = w->next;
            write_free(w);
        }
        cons_node_free(x->n);
        for (unsigned k = 0; k < x->n_log; k++) {
            free(x->log[k].data.base);
        }
    }
}

static struct cl_write *write_new(const struct cons_update *u)
{
    struct cl_write *w = calloc(1, sizeof(*w));
    RFS_ASSERT(w != NULL);
    w->tag = u->tag;
    w->has_hs = u->hs_changed;
    w->hs = u->hs;
    for (unsigned i = 0; i < u->n_chunks; i++) {
        w->install |= u->chunks[i].last;
    }
    if (u->n_entries > 0) {
        w->ents = xmalloc(u->n_entries * sizeof(*w->ents));
        for (unsigned i = 0; i < u->n_entries; i++) {
            w->ents[i] = u->entries[i];
            w->ents[i].data.base = NULL;
            if (u->entries[i].data.len) {
                w->ents[i].data.base = xmalloc(u->entries[i].data.len);
                memcpy(w->ents[i].data.base, u->entries[i].data.base,
                       u->entries[i].data.len);
            }
        }
        w->n_ents = u->n_entries;
    }
    return w;
}

static void write_free(struct cl_write *w)
{
    while (w->held) {
        struct cl_msg *m = w->held;
        w->held = m->next;
        msg_free(m);
    }
    for (unsigned i = 0; i < w->n_ents; i++) {
        free(w->ents[i].data.base);
    }
    free(w->ents);
    free(w);
}

/* Make a write durable: update the node's disk image. */
static void disk_apply(struct cl_node *x, struct cl_write *w)
{
    if (w->has_hs) {
        x->hs = w->hs;
    }
    if (w->install) {
        for (unsigned k = 0; k < x->n_log; k++) {
            free(x->log[k].data.base);
        }
        x->n_log = 0;
    }
    if (w->n_ents == 0) {
        return;
    }
    rfs_index_t first = w->ents[0].index;
    while (x->n_log > 0 && x->log[x->n_log - 1].index >= first) {
        free(x->log[--x->n_log].data.base);
    }
    for (unsigned i = 0; i < w->n_ents && x->n_log < 512; i++) {
        x->log[x->n_log++] = w->ents[i];
        w->ents[i].data.base = NULL; /* Moved. */
    }
}

void cl_process(struct cl *c, unsigned id)
{
    struct cl_node *x = &c->nodes[id];
    if (!x->up) {
        return;
    }
    while (cons_node_has_update(x->n)) {
        struct cons_update u;
        cons_node_take_update(x->n, &u);
        if (u.role_changed) {
            x->told_leader = u.leader;
        }
        if (u.needs_persist) {
            struct cl_write *w = write_new(&u);
            struct cl_write **p = &x->writes;
            while (*p) {
                p = &(*p)->next;
            }
            *p = w;
        }
        for (unsigned i = 0; i < u.n_msgs; i++) {
            struct cl_msg *m = msg_copy(&u.msgs[i].msg, u.msgs[i].wait_durable);
            if (u.msgs[i].wait_durable && x->writes != NULL) {
                struct cl_write *last = x->writes;
                while (last->next) {
                    last = last->next;
                }
                struct cl_msg **p = &last->held;
                while (*p) {
                    p = &(*p)->next;
                }
                *p = m;
            } else {
                wire(c, m);
            }
        }
        for (unsigned i = 0; i < u.n_committed; i++) {
            const struct cons_entry *e = &u.committed[i];
            x->applied = e->index;
            x->n_applied++;
            if (e->type == CONS_ENTRY_NORMAL) {
                size_t len = e->data.len < 63 ? e->data.len : 63;
                if (len > 0) {
                    memcpy(x->last_applied, e->data.base, len);
                }
                x->last_applied[len] = '\0';
            }
        }
        for (unsigned i = 0; i < u.n_reads && x->n_reads < 64; i++) {
            x->reads_ctx[x->n_reads] = u.reads[i].ctx;
            x->reads_index[x->n_reads] = u.reads[i].index;
            x->n_reads++;
        }
        for (unsigned i = 0; i < u.n_reads_failed && x->n_failed < 64; i++) {
            x->failed_ctx[x->n_failed++] = u.reads_failed[i];
        }
        if (!x->hold) {
            cl_release(c, id);
        }
    }
}

void cl_release_one(struct cl *c, unsigned id)
{
    struct cl_node *x = &c->nodes[id];
    struct cl_write *w = x->writes;
    if (w == NULL) {
        return;
    }
    x->writes = w->next;
    disk_apply(x, w);
    while (w->held) {
        struct cl_msg *m = w->held;
        w->held = m->next;
        wire(c, m);
    }
    cons_node_persisted(x->n, &w->tag);
    write_free(w);
}

void cl_release(struct cl *c, unsigned id)
{
    while (c->nodes[id].writes != NULL) {
        cl_release_one(c, id);
    }
}

void cl_hold(struct cl *c, unsigned id, bool hold)
{
    c->nodes[id].hold = hold;
}

void cl_tick(struct cl *c, unsigned id, unsigned k)
{
    for (unsigned i = 0; i < k; i++) {
        if (c->nodes[id].up) {
            cons_node_tick(c->nodes[id].n);
            cl_process(c, id);
        }
    }
}

bool cl_deliver_one(struct cl *c)
{
    struct cl_msg *m = c->q;
    if (m == NULL) {
        return false;
    }
    c->q = m->next;
    if (c->q == NULL) {
        c->q_tail = NULL;
    }
    unsigned to = (unsigned)m->m.to, from = (unsigned)m->m.from;
    if (to >= 1 && to <= c->n && c->nodes[to].up && !c->cut[from][to]) {
        cons_node_step(c->nodes[to].n, &m->m);
        cl_process(c, to);
    }
    msg_free(m);
    return true;
}

unsigned cl_deliver(struct cl *c)
{
    unsigned k = 0;
    while (k < 100000 && cl_deliver_one(c)) {
        k++;
    }
    return k;
}

void cl_drop_all(struct cl *c)
{
    while (c->q) {
        struct cl_msg *m = c->q;
        c->q = m->next;
        msg_free(m);
    }
    c->q_tail = NULL;
}

void cl_elect(struct cl *c, unsigned id)
{
    for (unsigned i = 0; i < 3 * c->opts.election_ticks; i++) {
        struct cons_status st = cl_status(c, id);
        if (st.role != CONS_FOLLOWER) {
            break;
        }
        cl_tick(c, id, 1);
    }
    cl_deliver(c);
}

unsigned cl_leader(struct cl *c)
{
    unsigned best = 0;
    rfs_term_t t = 0;
    for (unsigned i = 1; i <= c->n; i++) {
        if (!c->nodes[i].up) {
            continue;
        }
        struct cons_status st = cl_status(c, i);
        if (st.role == CONS_LEADER && st.term >= t) {
            best = i;
            t = st.term;
        }
    }
    return best;
}

void cl_cut(struct cl *c, unsigned a, unsigned b, bool cut)
{
    c->cut[a][b] = c->cut[b][a] = cut;
}

void cl_isolate(struct cl *c, unsigned a, bool cut)
{
    for (unsigned i = 1; i <= CL_MAX; i++) {
        cl_cut(c, a, i, cut);
    }
}

int cl_propose(struct cl *c, unsigned id, const char *s)
{
    struct rfs_buf b = {(void *)s, strlen(s)};
    int rv = cons_node_propose(c->nodes[id].n, &b, NULL);
    cl_process(c, id);
    return rv;
}

void cl_crash(struct cl *c, unsigned id)
{
    struct cl_node *x = &c->nodes[id];
    /* Writes not yet released never reached the disk. */
    while (x->writes) {
        struct cl_write *w = x->writes;
        x->writes = w->next;
        write_free(w);
    }
    cons_node_free(x->n);
    x->n = NULL;
    x->up = false;
}

void cl_restart(struct cl *c, unsigned id)
{
    node_start(c, id);
}

struct cons_status cl_status(struct cl *c, unsigned id)
{
    struct cons_status st;
    cons_node_status(c->nodes[id].n, &st);
    return st;
}

unsigned cl_queued(struct cl *c, int type, unsigned from)
{
    unsigned k = 0;
    for (struct cl_msg *m = c->q; m; m = m->next) {
        if ((type == 0 || m->m.type == type) &&
            (from == 0 || m->m.from == from)) {
            k++;
        }
    }
    return k;
}

const struct cons_msg *cl_find(struct cl *c, int type, unsigned from,
                               unsigned to)
{
    const struct cons_msg *found = NULL;
    for (struct cl_msg *m = c->q; m; m = m->next) {
        if (m->m.type == type && (from == 0 || m->m.from == from) &&
            (to == 0 || m->m.to == to)) {
            found = &m->m;
        }
    }
    return found;
}

void cl_step(struct cl *c, const struct cons_msg *m)
{
    struct cl_node *x = &c->nodes[m->to];
    cons_node_step(x->n, m);
    cl_process(c, (unsigned)m->to);
}
