/*
 * Unit tests of the host driver (consensus/host.c) with a hand-driven fake
 * I/O: a clock the test sets, writes that complete when the test says so,
 * messages that travel encoded (through the wire codec, as on TCP) when the
 * test delivers them. Three drivers make a cluster.
 *
 * The rules pinned here are the driver's own: the clock is caught up at
 * every entry point (RAFT-PITFALLS 8: a stalled leader must learn that its
 * lease ran out before anything else runs), nothing waits behind a write
 * that is not durable, and requests complete by identity.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../common/err.h"
#include "../../../common/heap.h"
#include "../../../consensus/host.h"
#include "../../../consensus/wire.h"

#define N 3
#define TICK_MS 10
#define ELECTION_TICKS 10

struct fmsg {
    struct fmsg *next;
    rfs_nodeid_t from, to;
    struct rfs_buf plain;
};

struct fnode {
    struct fix *f;
    rfs_nodeid_t id;
    struct host *h;
    const struct batch_writes *writing; /* In flight, not yet durable. */
    rfs_index_t applied;
    struct host_chunk *chunk;
    bool snapshotting;
    bool down; /* Paused: nothing delivered, no entry point called. */
    bool mute; /* Its messages are lost; it still receives (one way). */
    uint64_t boot; /* Its latest boot id (f_new_boot). */
    /* The sessions its fake state machine applied, by client. */
    struct { uint64_t boot; uint32_t ttl_ms; bool live; } sess[N + 1];
    unsigned ends_applied;
    unsigned refuse_applies; /* The next applies answer -ENOSPC. */
};

struct fix {
    uint64_t now_ns;
    struct fnode nodes[N + 1];
    struct fmsg *net;
    unsigned sent;
};

static uint64_t f_now(void *d)
{
    return ((struct fnode *)d)->f->now_ns;
}

static int64_t f_wall(void *d)
{
    return (int64_t)((struct fnode *)d)->f->now_ns;
}

static void f_write(void *d, const struct batch_writes *w)
{
    struct fnode *n = d;
    assert_null(n->writing); /* One write at a time. */
    n->writing = w;
}

static void f_send(void *d, rfs_nodeid_t to, struct rfs_buf plain)
{
    struct fnode *n = d;
    struct fmsg *m = calloc(1, sizeof(*m));
    m->from = n->id;
    m->to = to;
    m->plain = plain;
    struct fmsg **t = &n->f->net;
    while (*t) {
        t = &(*t)->next;
    }
    *t = m;
    n->f->sent++;
}

static void f_read_chunk(void *d, struct host_chunk *c)
{
    ((struct fnode *)d)->chunk = c;
}

static void f_snapshot(void *d)
{
    ((struct fnode *)d)->snapshotting = true;
}

static int f_snapshot_record(void *d, const struct cons_snap_meta *m,
                             rfs_index_t compact_to, rfs_index_t old)
{
    (void)d, (void)m, (void)compact_to, (void)old;
    return 0;
}

static int f_apply(void *d, const struct cons_entry *e, unsigned cnt,
                   struct store_result *res)
{
    struct fnode *n = d;
    if (n->refuse_applies > 0) {
        n->refuse_applies--;
        return -ENOSPC; /* Below the reserve: nothing written. */
    }
    for (unsigned i = 0; i < cnt; i++) {
        assert_int_equal(e[i].index, n->applied + 1);
        n->applied = e[i].index;
        res[i].err = 0;
        res[i].ino = e[i].index;
        /* Node sessions, as the store keeps them (for f_sessions). */
        struct store_cmd c;
        if (e[i].type != CONS_ENTRY_NORMAL ||
            store_cmd_decode(&e[i].data, &c) != 0) {
            continue;
        }
        if (c.op == STORE_OP_SESSION_OPEN && c.client <= N) {
            n->sess[c.client].boot = c.boot;
            n->sess[c.client].ttl_ms = (uint32_t)c.offset;
            n->sess[c.client].live = true;
        } else if (c.op == STORE_OP_SESSION_END) {
            if (c.ino <= N && n->sess[c.ino].live &&
                n->sess[c.ino].boot == c.offset) {
                n->sess[c.ino].live = false;
                n->ends_applied++;
            } else {
                res[i].err = ENOENT;
            }
        }
    }
    return 0;
}

static int f_sessions(void *d, store_session_cb cb, void *arg)
{
    struct fnode *n = d;
    for (unsigned i = 1; i <= N; i++) {
        if (n->sess[i].ttl_ms != 0 &&
            cb(arg, i, n->sess[i].boot, n->sess[i].ttl_ms,
               n->sess[i].live) != 0) {
            break;
        }
    }
    return 0;
}

static rfs_index_t f_applied(void *d)
{
    return ((struct fnode *)d)->applied;
}

static bool f_connected(void *d, rfs_nodeid_t id)
{
    (void)d, (void)id;
    return true;
}

static const char *f_errmsg(void *d)
{
    (void)d;
    return "fake disk";
}

static unsigned session_ttl_ms; /* For the node sessions tests. */
static uint64_t snap_entries;   /* 0: never (1,000,000). */
static bool gossip_on;          /* gossip_observers, behind_max 50. */

static int f_new_boot(void *d, uint64_t *boot)
{
    struct fnode *n = d;
    *boot = ++n->boot;
    return 0;
}

static void start(struct fix *f, unsigned i, const struct cons_entry *boot)
{
    struct fnode *n = &f->nodes[i];
    n->f = f;
    n->id = i;
    struct host_options o = {
        .id = i,
        .boot = 1,
        .tick_ms = TICK_MS,
        .election_ticks = ELECTION_TICKS,
        .heartbeat_ticks = 2,
        .commit_timeout_ms = 5000,
        .ids_from = (uint64_t)i << 40,
        .lease_reads = true,
        .boot_hold = true,
        .snapshot_entries = snap_entries ? snap_entries : 1000000,
        .snapshot_bytes = 1ull << 40,
        .seed = i,
        .session_ttl_ms = session_ttl_ms,
        .gossip_observers = gossip_on,
        .gossip_behind_max = gossip_on ? 50 : 0,
    };
    n->boot = 1;
    struct host_io io = {
        .data = n,
        .now_ns = f_now,
        .wall_ns = f_wall,
        .write = f_write,
        .send = f_send,
        .read_chunk = f_read_chunk,
        .snapshot = f_snapshot,
        .snapshot_record = f_snapshot_record,
        .apply = f_apply,
        .applied = f_applied,
        .connected = f_connected,
        .errmsg = f_errmsg,
        .new_boot = f_new_boot,
        .sessions = f_sessions,
    };
    struct cons_load l = {.entries = boot, .n_entries = 1};
    assert_int_equal(host_new(&o, &io, &l, &n->h), 0);
}

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    f->now_ns = 1000000000ull;
    struct cons_conf conf = {.n = N};
    for (unsigned i = 0; i < N; i++) {
        conf.servers[i].id = i + 1;
        conf.servers[i].role = CONS_VOTER;
        snprintf(conf.servers[i].addr, CONS_ADDR_MAX, "fake:%u", i + 1);
    }
    struct cons_entry e;
    assert_int_equal(cons_bootstrap_entry(&conf, &e), 0);
    for (unsigned i = 1; i <= N; i++) {
        start(f, i, &e);
    }
    rfs_free(e.data.base);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    for (unsigned i = 1; i <= N; i++) {
        host_close(f->nodes[i].h, RFS_ESHUTDOWN);
        host_free(f->nodes[i].h);
    }
    while (f->net) {
        struct fmsg *m = f->net;
        f->net = m->next;
        rfs_free(m->plain.base);
        free(m);
    }
    free(f);
    return 0;
}

/* Complete every write in flight and deliver every message, until quiet.
 * Paused nodes neither write nor receive (their messages are dropped). */
static void settle(struct fix *f)
{
    for (unsigned round = 0; round < 1000; round++) {
        bool any = false;
        for (unsigned i = 1; i <= N; i++) {
            struct fnode *n = &f->nodes[i];
            if (n->writing != NULL && !n->down) {
                n->writing = NULL;
                host_write_done(n->h, 0, NULL);
                any = true;
            }
        }
        while (f->net) {
            struct fmsg *m = f->net;
            f->net = m->next;
            struct fnode *to = &f->nodes[m->to];
            if (!to->down && !f->nodes[m->from].down &&
                !f->nodes[m->from].mute) {
                struct cons_msg cm;
                assert_int_equal(wire_msg_decode(m->plain.base, m->plain.len,
                                                 &cm),
                                 0);
                host_recv(to->h, &cm);
                wire_msg_free(&cm);
            }
            rfs_free(m->plain.base);
            free(m);
            any = true;
        }
        if (!any) {
            return;
        }
    }
    fail_msg("the cluster never went quiet");
}

/* Advance the clock one tick at a time, ticking the running nodes. */
static void run_ms(struct fix *f, unsigned ms)
{
    for (unsigned t = 0; t < ms; t += TICK_MS) {
        f->now_ns += TICK_MS * 1000000ull;
        for (unsigned i = 1; i <= N; i++) {
            if (!f->nodes[i].down) {
                host_tick(f->nodes[i].h);
            }
        }
        settle(f);
    }
}

static unsigned leader_of(struct fix *f)
{
    for (unsigned i = 1; i <= N; i++) {
        struct cons_status st;
        cons_node_status(host_core(f->nodes[i].h), &st);
        if (st.role == CONS_LEADER && !f->nodes[i].down) {
            return i;
        }
    }
    return 0;
}

static unsigned elect(struct fix *f)
{
    for (unsigned ms = 0; ms < 5000; ms += TICK_MS) {
        run_ms(f, TICK_MS);
        unsigned l = leader_of(f);
        if (l != 0 && host_lease_end_ns(f->nodes[l].h) > f->now_ns) {
            return l;
        }
    }
    fail_msg("no leader with a lease in 5 s");
    return 0;
}

static void ignore(void *arg, int err, const void *res)
{
    (void)arg, (void)err, (void)res;
}

/* The entry points, each called once right after a long stall. */
enum entry { E_POKE, E_WRITE_DONE, E_RECV, E_SNAPSHOT, E_READ, E_SUBMIT };

static void stall_then(struct fix *f, enum entry e)
{
    unsigned l = elect(f);
    struct fnode *n = &f->nodes[l];
    if (e == E_WRITE_DONE) {
        struct store_cmd c = {.op = STORE_OP_NOOP};
        assert_int_equal(host_submit(n->h, &c, ignore, NULL), 0);
        assert_non_null(n->writing);
    }
    if (e == E_SNAPSHOT) {
        host_snapshot_now(n->h);
        assert_true(n->snapshotting);
    }
    /* The leader's process stops for three election timeouts: no timer,
     * no message, nothing. The core still believes it holds its lease. */
    assert_int_not_equal(cons_node_lease_end(host_core(n->h)), 0);
    n->down = true;
    f->now_ns += 3ull * ELECTION_TICKS * TICK_MS * 1000000ull;
    n->down = false;
    switch (e) {
    case E_POKE:
        host_poke(n->h);
        break;
    case E_WRITE_DONE:
        n->writing = NULL;
        host_write_done(n->h, 0, NULL);
        break;
    case E_RECV: {
        /* A stale message from a follower: any frame will do. */
        struct cons_msg m = {.type = CONS_MSG_HEARTBEAT_RESP,
                             .from = l == 1 ? 2 : 1, .to = l, .term = 1};
        host_recv(n->h, &m);
        break;
    }
    case E_SNAPSHOT:
        n->snapshotting = false;
        host_snapshot_done(n->h, 0, n->applied, 100);
        break;
    case E_READ:
        assert_int_equal(host_read(n->h, false, ignore, NULL), 0);
        break;
    case E_SUBMIT: {
        struct store_cmd c = {.op = STORE_OP_NOOP};
        assert_int_equal(host_submit(n->h, &c, ignore, NULL), 0);
        break;
    }
    }
    /* Whatever came first, the core has been told the time: its own lease
     * check (the one its ReadIndex handling uses) says expired. */
    assert_int_equal(cons_node_lease_end(host_core(n->h)), 0);
    assert_int_equal(host_lease_end_ns(n->h), 0);
}

/* After a stall, a disk completion that arrives before the timer fires
 * catches up the clock first (the stale-read path of issue 12). */
static void test_host_write_done_catches_up_clock(void **state)
{
    stall_then(*state, E_WRITE_DONE);
}

/* Likewise a peer's message. */
static void test_host_recv_catches_up_clock(void **state)
{
    stall_then(*state, E_RECV);
}

/* Likewise a handshake or admin frame (the runtime pokes the driver). */
static void test_host_poke_catches_up_clock(void **state)
{
    stall_then(*state, E_POKE);
}

/* Likewise a snapshot that finished while the process was stopped. */
static void test_host_snapshot_done_catches_up_clock(void **state)
{
    stall_then(*state, E_SNAPSHOT);
}

/* Likewise a read or a proposal from a local caller. */
static void test_host_read_catches_up_clock(void **state)
{
    stall_then(*state, E_READ);
}

static void test_host_submit_catches_up_clock(void **state)
{
    stall_then(*state, E_SUBMIT);
}

/* A follower's vote or ack never leaves before the write it depends on is
 * durable; a leader's appends go out while its own write is in flight. */
static void test_host_holds_messages_until_durable(void **state)
{
    struct fix *f = *state;
    unsigned l = elect(f);
    unsigned fo = l == 1 ? 2 : 1;
    struct fnode *ln = &f->nodes[l];
    struct store_cmd c = {.op = STORE_OP_NOOP};
    assert_int_equal(host_submit(ln->h, &c, ignore, NULL), 0);
    /* The leader's write is in flight; its append is already out. */
    assert_non_null(ln->writing);
    bool append_out = false;
    for (struct fmsg *m = f->net; m; m = m->next) {
        append_out |= m->from == l && m->to == fo;
    }
    assert_true(append_out);
    /* Deliver to the follower without completing its write: no answer. */
    struct fmsg *keep = NULL;
    while (f->net) {
        struct fmsg *m = f->net;
        f->net = m->next;
        if (m->to == fo) {
            struct cons_msg cm;
            assert_int_equal(wire_msg_decode(m->plain.base, m->plain.len,
                                             &cm),
                             0);
            host_recv(f->nodes[fo].h, &cm);
            wire_msg_free(&cm);
            rfs_free(m->plain.base);
            free(m);
        } else {
            m->next = keep;
            keep = m;
        }
    }
    f->net = keep;
    assert_non_null(f->nodes[fo].writing);
    for (struct fmsg *m = f->net; m; m = m->next) {
        assert_false(m->from == fo && m->to == l);
    }
    /* Durable: the answer leaves. */
    f->nodes[fo].writing = NULL;
    host_write_done(f->nodes[fo].h, 0, NULL);
    bool answered = false;
    for (struct fmsg *m = f->net; m; m = m->next) {
        answered |= m->from == fo && m->to == l;
    }
    assert_true(answered);
}

/* Requests that arrive in one burst (host_hold .. host_release) go to
 * disk as one batch, and each follower gets them in one APPEND: the second
 * does not wait for the first's fsync, on the leader or on a follower. */
static void test_host_hold_makes_one_batch(void **state)
{
    struct fix *f = *state;
    unsigned l = elect(f);
    struct fnode *ln = &f->nodes[l];
    settle(f);
    assert_null(ln->writing);
    unsigned sent = f->sent;
    struct store_cmd c = {.op = STORE_OP_NOOP};
    host_hold(ln->h);
    assert_int_equal(host_submit(ln->h, &c, ignore, NULL), 0);
    assert_int_equal(host_submit(ln->h, &c, ignore, NULL), 0);
    /* Nothing leaves and nothing is written during the burst. */
    assert_null(ln->writing);
    assert_int_equal(f->sent, sent);
    host_release(ln->h);
    assert_non_null(ln->writing);
    assert_int_equal(ln->writing->n_ents, 2);
    for (unsigned fo = 1; fo <= N; fo++) {
        if (fo == l) {
            continue;
        }
        unsigned appends = 0;
        for (struct fmsg *m = f->net; m; m = m->next) {
            struct cons_msg cm;
            if (m->from != l || m->to != fo) {
                continue;
            }
            assert_int_equal(wire_msg_decode(m->plain.base, m->plain.len,
                                             &cm),
                             0);
            if (cm.type == CONS_MSG_APPEND) {
                appends++;
                assert_int_equal(cm.n_entries, 2);
            }
            wire_msg_free(&cm);
        }
        assert_int_equal(appends, 1);
    }
    /* Nested holds: only the last release runs the loop. */
    host_hold(ln->h);
    host_hold(ln->h);
    settle(f);
    assert_int_equal(host_submit(ln->h, &c, ignore, NULL), 0);
    host_release(ln->h);
    assert_null(ln->writing);
    host_release(ln->h);
    assert_non_null(ln->writing);
    settle(f);
}

struct done {
    unsigned calls;
    int err;
    rfs_index_t ino;
};

static void on_done(void *arg, int err, const void *res)
{
    struct done *d = arg;
    d->calls++;
    d->err = err;
    if (err == 0 && res != NULL) {
        d->ino = ((const struct store_result *)res)->ino;
    }
}

/* A proposal made on a follower is forwarded, and its callback runs once,
 * on that follower, when the entry is applied there. */
static void test_host_follower_proposal_completes_once(void **state)
{
    struct fix *f = *state;
    unsigned l = elect(f);
    unsigned fo = l == 1 ? 2 : 1;
    struct done d = {0};
    struct store_cmd c = {.op = STORE_OP_NOOP};
    assert_int_equal(host_submit(f->nodes[fo].h, &c, on_done, &d), 0);
    run_ms(f, 100);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.err, 0);
    assert_true(d.ino > 0);
    assert_true(f->nodes[fo].applied >= d.ino);
}

/* A storage failure stops the driver: what waits fails with EIO at once
 * (not after commit_timeout), and so does what comes after. */
static void test_host_write_failure_stops(void **state)
{
    struct fix *f = *state;
    unsigned l = elect(f);
    struct fnode *n = &f->nodes[l];
    struct done d = {0};
    struct store_cmd c = {.op = STORE_OP_NOOP};
    assert_int_equal(host_submit(n->h, &c, on_done, &d), 0);
    n->writing = NULL;
    host_write_done(n->h, -EIO, "test: the disk said EIO");
    assert_true(host_failed(n->h));
    assert_null(n->writing);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.err, -EIO);
    assert_int_equal(host_submit(n->h, &c, on_done, &d), -EIO);
    assert_int_equal(host_read(n->h, false, on_done, &d), -EIO);
    assert_int_equal(d.calls, 1);
}

/* A leader whose followers are gone: between the end of its lease and its
 * step-down (CheckQuorum, up to two election timeouts), a read barrier
 * waits for a heartbeat round that cannot succeed. At the step-down, a
 * barrier that asked to fail when no leader is left (the root's getattr,
 * which falls back to the local copy) fails with RFS_ENOLEADER then, not
 * at commit_timeout; one that did not ask keeps waiting for a leader. */
static void test_host_read_fails_when_leader_steps_down(void **state)
{
    struct fix *f = *state;
    unsigned l = elect(f);
    struct fnode *n = &f->nodes[l];
    for (unsigned i = 1; i <= N; i++) {
        f->nodes[i].down = i != l;
    }
    for (unsigned ms = 0; cons_node_lease_end(host_core(n->h)) != 0; ms++) {
        assert_true(ms < 1000);
        run_ms(f, TICK_MS);
    }
    assert_int_equal(leader_of(f), l);
    struct done quick = {0}, patient = {0};
    assert_int_equal(host_read(n->h, true, on_done, &quick), 0);
    assert_int_equal(host_read(n->h, false, on_done, &patient), 0);
    run_ms(f, 3 * ELECTION_TICKS * TICK_MS);
    assert_int_equal(leader_of(f), 0);
    assert_int_equal(quick.calls, 1);
    assert_int_equal(quick.err, RFS_ENOLEADER);
    assert_int_equal(patient.calls, 0);
    /* With no leader known, such a barrier fails at once. */
    struct done now = {0};
    assert_int_equal(host_read(n->h, true, on_done, &now), 0);
    assert_int_equal(now.calls, 1);
    assert_int_equal(now.err, RFS_ENOLEADER);
    /* The patient one times out as before (commit_timeout, 5 s here). */
    run_ms(f, 5000);
    assert_int_equal(patient.calls, 1);
    assert_int_equal(patient.err, -ETIMEDOUT);
}

/* ENOSPC: nothing acknowledged, the same batch retried a second later. */
static void test_host_enospc_retries_same_batch(void **state)
{
    struct fix *f = *state;
    unsigned l = elect(f);
    struct fnode *n = &f->nodes[l];
    struct done d = {0};
    struct store_cmd c = {.op = STORE_OP_NOOP};
    assert_int_equal(host_submit(n->h, &c, on_done, &d), 0);
    const struct batch_writes *w = n->writing;
    n->writing = NULL;
    host_write_done(n->h, -ENOSPC, "test: no space");
    assert_false(host_failed(n->h));
    run_ms(f, 500);
    assert_null(n->writing);
    f->now_ns += 600000000ull;
    host_tick(n->h);
    assert_ptr_equal(n->writing, w);
    settle(f);
    run_ms(f, 50);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.err, 0);
}

/* A store below its reserve refuses an apply before writing anything: the
 * node keeps the committed entries, in order, applies the next ones after
 * them, and tries again a second later, instead of stopping. */
static void test_host_apply_enospc_keeps_entries(void **state)
{
    struct fix *f = *state;
    unsigned l = elect(f);
    struct fnode *n = &f->nodes[l];
    rfs_index_t before = n->applied;
    n->refuse_applies = 1;
    struct done d1 = {0}, d2 = {0};
    struct store_cmd c = {.op = STORE_OP_NOOP};
    assert_int_equal(host_submit(n->h, &c, on_done, &d1), 0);
    run_ms(f, 100);
    assert_false(host_failed(n->h));
    assert_int_equal(n->applied, before);
    assert_int_equal(d1.calls, 0);
    /* A later entry waits behind the kept one: applies stay in order. */
    assert_int_equal(host_submit(n->h, &c, on_done, &d2), 0);
    run_ms(f, 100);
    assert_int_equal(n->applied, before);
    assert_int_equal(d2.calls, 0);
    f->now_ns += 1000000000ull;
    host_tick(n->h);
    run_ms(f, 50);
    assert_false(host_failed(n->h));
    assert_true(n->applied >= before + 2);
    assert_int_equal(d1.calls, 1);
    assert_int_equal(d1.err, 0);
    assert_int_equal(d2.calls, 1);
    assert_int_equal(d2.err, 0);
}

/* With gossip observers, a snapshot keeps at least gossip_behind_max
 * entries behind it (50 here), not only a quarter of the interval (10 of
 * 40): an observer that close to the commit index never gets the
 * leader's snapshot and counts on its peers for those entries, and the
 * oldest of them are only in voters' logs. */
static int setup_gossip_snaps(void **state)
{
    gossip_on = true;
    snap_entries = 40;
    int rv = setup(state);
    gossip_on = false;
    snap_entries = 0;
    return rv;
}

static void test_host_snapshot_keeps_what_observers_need(void **state)
{
    struct fix *f = *state;
    unsigned l = elect(f);
    struct fnode *n = &f->nodes[l];
    for (int i = 0; i < 70; i++) {
        struct store_cmd c = {.op = STORE_OP_NOOP};
        assert_int_equal(host_submit(n->h, &c, ignore, NULL), 0);
    }
    run_ms(f, 200);
    if (!n->snapshotting) {
        host_snapshot_now(n->h);
    }
    assert_true(n->snapshotting);
    n->snapshotting = false;
    host_snapshot_done(n->h, 0, n->applied, 100);
    struct cons_status st;
    cons_node_status(host_core(n->h), &st);
    assert_int_equal(st.snap_index, n->applied);
    assert_true(st.snap_index >= 70);
    assert_true(st.first_index + 50 <= st.snap_index + 1);
}

/* ---- Node sessions ---------------------------------------------------- */

static int setup_sessions(void **state)
{
    session_ttl_ms = 1000; /* 100 ticks; the own view: 88 ticks. */
    int rv = setup(state);
    session_ttl_ms = 0;
    return rv;
}

static enum host_session_state sess_state(struct fix *f, unsigned i)
{
    struct host_session s;
    host_session(f->nodes[i].h, &s);
    return s.state;
}

/* A follower whose session is live. */
static unsigned live_follower(struct fix *f)
{
    unsigned l = elect(f);
    unsigned fo = l == 1 ? 2 : 1;
    run_ms(f, 200);
    assert_int_equal(sess_state(f, fo), HOST_SESSION_LIVE);
    assert_int_equal(sess_state(f, l), HOST_SESSION_LIVE);
    return fo;
}

/* Live while heard; after a stall longer than the TTL (the process was
 * paused: the core is then given only two election timeouts of ticks), the
 * first entry point refuses a change with -EROFS, a new boot's session
 * opens by itself, and changes work again under it. */
static void test_host_session_lapses_after_stall(void **state)
{
    struct fix *f = *state;
    unsigned fo = live_follower(f);
    run_ms(f, 3000);
    assert_int_equal(sess_state(f, fo), HOST_SESSION_LIVE);
    f->nodes[fo].down = true;
    run_ms(f, 2000);
    f->nodes[fo].down = false;
    struct done d = {0};
    struct store_cmd c = {.op = STORE_OP_NOOP};
    assert_int_equal(host_submit(f->nodes[fo].h, &c, on_done, &d), -EROFS);
    assert_true(host_session_fenced(f->nodes[fo].h));
    struct host_session s;
    host_session(f->nodes[fo].h, &s);
    assert_int_equal(s.boot, 2); /* Taken at once, for the next session. */
    run_ms(f, 200);
    assert_int_equal(sess_state(f, fo), HOST_SESSION_LIVE);
    assert_int_equal(host_submit(f->nodes[fo].h, &c, on_done, &d), 0);
    run_ms(f, 100);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.err, 0);
}

/* One-way cut: the follower still hears the leader (it stays a follower,
 * applies, knows the leader) but the leader hears nothing from it. Its
 * view must lapse within the TTL's 9/10, never later: the leader ends the
 * session at the TTL. Healed, it opens a new session. */
static void test_host_session_lapses_one_way(void **state)
{
    struct fix *f = *state;
    unsigned fo = live_follower(f);
    f->nodes[fo].mute = true;
    unsigned waited = 0;
    while (sess_state(f, fo) == HOST_SESSION_LIVE && waited < 3000) {
        run_ms(f, TICK_MS);
        waited += TICK_MS;
    }
    printf("# one-way cut: may have ended after %u ms (TTL 1000 ms)\n",
           waited);
    assert_int_equal(sess_state(f, fo), HOST_SESSION_MAY_HAVE_ENDED);
    assert_true(waited <= 900);
    assert_true(waited >= 800);
    struct cons_status st;
    cons_node_status(host_core(f->nodes[fo].h), &st);
    assert_true(st.leader != RFS_NODE_NONE); /* It did hear the leader. */
    struct store_cmd c = {.op = STORE_OP_NOOP};
    assert_int_equal(host_submit(f->nodes[fo].h, &c, ignore, NULL), -EROFS);
    f->nodes[fo].mute = false;
    run_ms(f, 300);
    assert_int_equal(sess_state(f, fo), HOST_SESSION_LIVE);
}

/* The leader ends a session not heard within its TTL, once, and never one
 * that is heard; a new leader counts every session as heard at its
 * election (it does not end at once what the old leader last heard long
 * ago). */
static void test_host_leader_ends_unheard_session(void **state)
{
    struct fix *f = *state;
    unsigned l = live_follower(f);
    l = leader_of(f);
    unsigned a = l == 1 ? 2 : 1, b = 6 - l - a;
    run_ms(f, 3000); /* Heard: nothing ends. */
    assert_int_equal(f->nodes[l].ends_applied, 0);
    f->nodes[b].down = true;
    /* Around the expiry, the leader cannot commit for a few ticks (a's
     * answers are lost): its SESSION_END stays pending, proposed once. */
    run_ms(f, 980);
    assert_true(f->nodes[l].sess[b].live);
    f->nodes[a].mute = true;
    run_ms(f, 60);
    struct host_session s;
    host_session(f->nodes[l].h, &s);
    assert_int_equal(s.ends_proposed, 1);
    assert_true(f->nodes[l].sess[b].live);
    f->nodes[a].mute = false;
    unsigned waited = 1040;
    while (f->nodes[l].sess[b].live && waited < 5000) {
        run_ms(f, TICK_MS);
        waited += TICK_MS;
    }
    printf("# node %u's session ended after %u ms unheard (TTL 1000 ms)\n",
           b, waited);
    assert_false(f->nodes[l].sess[b].live);
    assert_true(waited >= 1000 && waited <= 1200);
    assert_false(f->nodes[a].sess[b].live); /* The same entry there. */
    run_ms(f, 1000);
    assert_int_equal(f->nodes[l].ends_applied, 1); /* Once. */
    host_session(f->nodes[l].h, &s);
    assert_int_equal(s.ends_proposed, 1);
    assert_int_equal(sess_state(f, l), HOST_SESSION_LIVE);
    assert_int_equal(sess_state(f, a), HOST_SESSION_LIVE);

    /* b comes back and opens a new session; then the leader goes. */
    f->nodes[b].down = false;
    run_ms(f, 500);
    assert_true(f->nodes[a].sess[b].live);
    f->nodes[l].down = true;
    uint64_t gone_ns = f->now_ns;
    unsigned nl = 0;
    while ((nl = leader_of(f)) == 0 || nl == l) {
        run_ms(f, TICK_MS);
        assert_true(f->now_ns - gone_ns < 5000000000ull);
    }
    uint64_t elected_ns = f->now_ns;
    assert_true(f->nodes[nl].sess[l].live); /* Not ended at the election. */
    while (f->nodes[nl].sess[l].live) {
        run_ms(f, TICK_MS);
        assert_true(f->now_ns - elected_ns < 5000000000ull);
    }
    uint64_t after_ms = (f->now_ns - elected_ns) / 1000000u;
    printf("# the old leader's session ended %llu ms after the new leader's "
           "election\n", (unsigned long long)after_ms);
    assert_true(after_ms >= 1000);
    assert_true(f->nodes[nl].sess[b == nl ? a : b].live);
}


/* Deliver the frames queued for node `to` (in order), keep the others. */
static void deliver_to(struct fix *f, unsigned to)
{
    struct fmsg *keep = NULL, **kt = &keep;
    while (f->net) {
        struct fmsg *m = f->net;
        f->net = m->next;
        if (m->to != to) {
            m->next = NULL;
            *kt = m;
            kt = &m->next;
            continue;
        }
        struct cons_msg cm;
        assert_int_equal(wire_msg_decode(m->plain.base, m->plain.len, &cm),
                         0);
        host_recv(f->nodes[to].h, &cm);
        wire_msg_free(&cm);
        rfs_free(m->plain.base);
        free(m);
    }
    /* What the deliveries sent went to f->net meanwhile: after the kept. */
    *kt = f->net;
    f->net = keep;
}

static unsigned count_from(struct fix *f, unsigned from, unsigned to)
{
    unsigned k = 0;
    for (struct fmsg *m = f->net; m; m = m->next) {
        k += m->from == from && m->to == to;
    }
    return k;
}

/* Late binding (issue 14): an unlock and the next lock proposed one after
 * the other, the second while the first's write has not started yet. When
 * the writer starts (host_write_begin) it takes the second in: one write,
 * one fsync, on the leader and on a follower, whose acks for both APPENDs
 * wait for that write and leave when it is durable. */
static void test_host_write_begin_takes_queued_batch(void **state)
{
    struct fix *f = *state;
    unsigned l = elect(f);
    unsigned fo = l == 1 ? 2 : 1;
    struct fnode *ln = &f->nodes[l], *fn = &f->nodes[fo];
    settle(f);
    uint64_t lb = host_batches(ln->h), fb = host_batches(fn->h);
    struct done d1 = {0}, d2 = {0};
    struct store_cmd c = {.op = STORE_OP_NOOP};
    assert_int_equal(host_submit(ln->h, &c, on_done, &d1), 0);
    const struct batch_writes *w = ln->writing;
    assert_non_null(w);
    assert_int_equal(w->n_ents, 1);
    assert_int_equal(host_submit(ln->h, &c, on_done, &d2), 0);
    /* The writer wakes: the second entry joins the first's write. */
    host_write_begin(ln->h);
    assert_ptr_equal(ln->writing, w);
    assert_int_equal(w->n_ents, 2);
    assert_int_equal(w->ents[1].index, w->ents[0].index + 1);
    assert_int_equal(host_batches_taken(ln->h), 1);
    ln->writing = NULL;
    host_write_done(ln->h, 0, NULL);
    assert_null(ln->writing); /* Nothing left for a second write. */
    assert_int_equal(host_batches(ln->h), lb + 1);

    /* The follower gets the entries (one APPEND or two); its first write
     * starts; the rest waits for it, then is taken in. */
    assert_null(fn->writing);
    deliver_to(f, fo);
    assert_non_null(fn->writing);
    host_write_begin(fn->h);
    assert_int_equal(count_from(f, fo, l), 0); /* Acks wait for the disk. */
    assert_int_equal(fn->writing->n_ents, 2);
    fn->writing = NULL;
    host_write_done(fn->h, 0, NULL);
    assert_null(fn->writing);
    assert_int_equal(host_batches(fn->h), fb + 1);
    assert_true(count_from(f, fo, l) > 0); /* Released with the write. */
    settle(f);
    run_ms(f, 50);
    assert_int_equal(d1.calls, 1);
    assert_int_equal(d1.err, 0);
    assert_int_equal(d2.calls, 1);
    assert_int_equal(d2.err, 0);
}

/* A follower's APPENDs, one per entry: the second arrives while the
 * first's write has not started; the merged write releases both acks. */
static void test_host_write_begin_moves_held_acks(void **state)
{
    struct fix *f = *state;
    unsigned l = elect(f);
    unsigned fo = l == 1 ? 2 : 1;
    struct fnode *ln = &f->nodes[l], *fn = &f->nodes[fo];
    settle(f);
    uint64_t fb = host_batches(fn->h);
    struct store_cmd c = {.op = STORE_OP_NOOP};
    assert_int_equal(host_submit(ln->h, &c, ignore, NULL), 0);
    deliver_to(f, fo); /* The first APPEND: its write is handed over. */
    const struct batch_writes *w = fn->writing;
    assert_non_null(w);
    assert_int_equal(w->n_ents, 1);
    assert_int_equal(host_submit(ln->h, &c, ignore, NULL), 0);
    deliver_to(f, fo); /* The second: queued behind it, its ack held. */
    assert_int_equal(count_from(f, fo, l), 0);
    host_write_begin(fn->h);
    assert_ptr_equal(fn->writing, w);
    assert_int_equal(w->n_ents, 2);
    rfs_index_t last = w->ents[1].index; /* w is freed at completion. */
    fn->writing = NULL;
    host_write_done(fn->h, 0, NULL);
    assert_null(fn->writing);
    assert_int_equal(host_batches(fn->h), fb + 1);
    /* Both acks left, and the second names the second entry. */
    rfs_index_t acked = 0;
    for (struct fmsg *m = f->net; m; m = m->next) {
        struct cons_msg cm;
        if (m->from != fo || m->to != l) {
            continue;
        }
        assert_int_equal(wire_msg_decode(m->plain.base, m->plain.len, &cm),
                         0);
        if (cm.type == CONS_MSG_APPEND_RESP && cm.index > acked) {
            acked = cm.index;
        }
        wire_msg_free(&cm);
    }
    assert_int_equal(acked, last);
    settle(f);
}


/* One update for the batch tests: entries first..first+n-1 of term t,
 * optionally after a snapshot chunk (last: an install). */
static void mk_update(struct cons_update *u, struct cons_entry *e,
                      struct cons_snap_chunk *c, rfs_index_t first,
                      unsigned n, rfs_term_t t, bool install, uint64_t seq)
{
    memset(u, 0, sizeof(*u));
    for (unsigned i = 0; i < n; i++) {
        memset(&e[i], 0, sizeof(e[i]));
        e[i].index = first + i;
        e[i].term = t;
        e[i].type = CONS_ENTRY_NORMAL;
        e[i].data.base = &e[i].term; /* Any bytes: copied by the batch. */
        e[i].data.len = sizeof(e[i].term);
    }
    if (install) {
        memset(c, 0, sizeof(*c));
        c->meta.index = first - 1;
        c->meta.term = t;
        c->last = true;
        u->chunks = c;
        u->n_chunks = 1;
    }
    u->hs_changed = true;
    u->hs.term = t;
    u->hs.commit = first;
    u->entries = e;
    u->n_entries = n;
    u->needs_persist = true;
    u->tag.seq = seq;
    u->tag.term = t;
    u->tag.index = first + n - 1;
}

static void assert_same_writes(const struct batch_writes *a,
                               const struct batch_writes *b)
{
    assert_int_equal(a->has_hs, b->has_hs);
    assert_int_equal(a->hs.term, b->hs.term);
    assert_int_equal(a->hs.commit, b->hs.commit);
    assert_int_equal(a->n_chunks, b->n_chunks);
    for (unsigned i = 0; i < a->n_chunks; i++) {
        assert_int_equal(a->chunks[i].meta.index, b->chunks[i].meta.index);
        assert_int_equal(a->chunks[i].last, b->chunks[i].last);
    }
    assert_int_equal(a->n_ents, b->n_ents);
    for (unsigned i = 0; i < a->n_ents; i++) {
        assert_int_equal(a->ents[i].index, b->ents[i].index);
        assert_int_equal(a->ents[i].term, b->ents[i].term);
        assert_int_equal(a->ents[i].data.len, b->ents[i].data.len);
        assert_memory_equal(a->ents[i].data.base, b->ents[i].data.base,
                            a->ents[i].data.len);
    }
    assert_int_equal(a->tag.seq, b->tag.seq);
    assert_int_equal(a->tag.index, b->tag.index);
}

/* A write that takes the queued batch in (batch_writes_take) holds what
 * adding the same updates to it one by one would have: a later entry
 * replaces the suffix from its index, an install drops the entries before
 * it, the later hard state and tag win. Split after each update in turn. */
static void test_batch_take_equals_adding(void **state)
{
    (void)state;
    struct cons_update u[4];
    struct cons_entry e[4][3];
    struct cons_snap_chunk c[4];
    mk_update(&u[0], e[0], NULL, 1, 3, 1, false, 1);  /* 1..3 of term 1 */
    mk_update(&u[1], e[1], NULL, 3, 2, 2, false, 2);  /* 3..4 of term 2 */
    mk_update(&u[2], e[2], &c[2], 11, 1, 3, true, 3); /* install 10, 11 */
    mk_update(&u[3], e[3], NULL, 12, 2, 3, false, 4); /* 12..13 */
    for (unsigned split = 1; split < 4; split++) {
        struct batch_writes one, first, later;
        batch_writes_init(&one);
        batch_writes_init(&first);
        batch_writes_init(&later);
        for (unsigned i = 0; i < 4; i++) {
            assert_int_equal(batch_writes_add(&one, &u[i]), 0);
            assert_int_equal(batch_writes_add(i < split ? &first : &later,
                                              &u[i]),
                             0);
        }
        assert_int_equal(batch_writes_take(&first, &later), 0);
        assert_same_writes(&first, &one);
        assert_int_equal(later.n_ents, 0);
        assert_int_equal(later.n_chunks, 0);
        batch_writes_close(&one);
        batch_writes_close(&first);
        batch_writes_close(&later);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_host_write_done_catches_up_clock),
        T(test_host_recv_catches_up_clock),
        T(test_host_poke_catches_up_clock),
        T(test_host_snapshot_done_catches_up_clock),
        T(test_host_read_catches_up_clock),
        T(test_host_submit_catches_up_clock),
        T(test_host_holds_messages_until_durable),
        T(test_host_hold_makes_one_batch),
        T(test_host_follower_proposal_completes_once),
        T(test_host_write_failure_stops),
        T(test_host_read_fails_when_leader_steps_down),
        T(test_host_enospc_retries_same_batch),
        T(test_host_apply_enospc_keeps_entries),
        T(test_host_write_begin_takes_queued_batch),
        T(test_host_write_begin_moves_held_acks),
#undef T
        cmocka_unit_test_setup_teardown(
            test_host_snapshot_keeps_what_observers_need, setup_gossip_snaps,
            teardown),
        cmocka_unit_test(test_batch_take_equals_adding),
        cmocka_unit_test_setup_teardown(test_host_session_lapses_after_stall,
                                        setup_sessions, teardown),
        cmocka_unit_test_setup_teardown(test_host_session_lapses_one_way,
                                        setup_sessions, teardown),
        cmocka_unit_test_setup_teardown(test_host_leader_ends_unheard_session,
                                        setup_sessions, teardown),
    };
    if (argc > 1) {
        cmocka_set_test_filter(argv[1]);
    }
    return cmocka_run_group_tests_name("host", tests, NULL, NULL);
}
