/*
 * Unit tests of the Raft core: one test per protocol rule, each built on the
 * hand-driven cluster of tests/lib/cluster.h. Where a rule comes from a bug
 * another implementation shipped, the test names the RAFT-PITFALLS entry.
 *
 * Run with an argument to run only the tests whose names match it (cmocka
 * filter syntax); the mutation suite uses that to show each pinned rule fails
 * against the core built with that rule broken.
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
#include "../../lib/cluster.h"

struct fixture {
    struct cl c;
};

static int setup3(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    cl_init(&f->c, 3, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    cl_close(&f->c);
    free(f);
    return 0;
}

/* Options for tests that want the bare protocol (no PreVote, no leases). */
static struct cons_options plain_opts(void)
{
    struct cons_options o;
    cons_options_default(&o, 1);
    o.pre_vote = false;
    o.check_quorum = false;
    return o;
}

static unsigned tick_until_role(struct cl *c, unsigned id, enum cons_role r)
{
    for (unsigned i = 0; i < 100; i++) {
        if (cl_status(c, id).role == r) {
            return i;
        }
        cl_tick(c, id, 1);
    }
    return 100;
}

/* Deliver messages one at a time until id leads (or the queue empties). */
static void deliver_until_leader(struct cl *c, unsigned id)
{
    while (cl_status(c, id).role != CONS_LEADER && cl_deliver_one(c)) {
    }
}

/* Tick every live node but `except` and deliver, until a leader other than
 * `except` emerges. */
static unsigned settle_leader(struct cl *c, unsigned except)
{
    for (unsigned round = 0; round < 200; round++) {
        unsigned l = cl_leader(c);
        if (l != 0 && l != except) {
            return l;
        }
        for (unsigned i = 1; i <= c->n; i++) {
            if (i != except) {
                cl_tick(c, i, 1);
            }
        }
        cl_deliver(c);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Elections                                                                 */

/* A node that times out wins the election and commits a no-op of its term. */
static void test_election_elects_one_leader(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    assert_int_equal(cl_leader(c), 1);
    struct cons_status st = cl_status(c, 1);
    assert_int_equal(st.term, 2);
    for (unsigned i = 2; i <= 3; i++) {
        assert_int_equal(cl_status(c, i).role, CONS_FOLLOWER);
        assert_int_equal(cl_status(c, i).leader, 1);
        assert_int_equal(cl_status(c, i).commit, 2);
    }
}

/* A voter learns who won only from the winner's first message. That must
 * reach the host as a change (role_changed with the leader), or proposals
 * it held back while no leader was known wait a whole retry interval: a
 * 400 ms pause on every failover, measured in test_fuse before the fix. */
static void test_follower_reports_the_leader_it_learns(void **state)
{
    (void)state;
    struct cl cl;
    struct cl *c = &cl;
    /* Without PreVote and leases node 3 grants at once; with them it only
     * grants later, by the same path. */
    struct cons_options o = plain_opts();
    cl_init_opts(c, 3, 0, &o);
    cl_elect(c, 1);
    assert_int_equal(c->nodes[3].told_leader, 1);
    cl_crash(c, 1);
    /* Node 2 times out and wins; node 3 only votes, which tells it "a new
     * term, no leader yet". */
    tick_until_role(c, 2, CONS_CANDIDATE);
    deliver_until_leader(c, 2);
    assert_int_equal(cl_status(c, 2).role, CONS_LEADER);
    assert_int_equal(cl_status(c, 3).role, CONS_FOLLOWER);
    assert_int_equal(c->nodes[3].told_leader, RFS_NODE_NONE);
    cl_deliver(c); /* The winner's first append. */
    assert_int_equal(cl_status(c, 3).leader, 2);
    assert_int_equal(c->nodes[3].told_leader, 2);
    cl_close(c);
}

/* The new leader's first entry is an empty no-op of its own term
 * (RAFT-PITFALLS 2: without it, earlier entries and reads could stall). */
static void test_election_appends_noop(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    const struct cons_entry *e = cons_node_entry(c->nodes[1].n, 2);
    assert_non_null(e);
    assert_int_equal(e->type, CONS_ENTRY_NOOP);
    assert_int_equal(e->term, 2);
    assert_int_equal(e->data.len, 0);
}

/* A single-node cluster elects itself and commits on its own disk write. */
static void test_election_single_node(void **state)
{
    (void)state;
    struct cl c;
    cl_init(&c, 1, 0);
    tick_until_role(&c, 1, CONS_LEADER);
    assert_int_equal(cl_leader(&c), 1);
    assert_int_equal(cl_propose(&c, 1, "solo"), 0);
    assert_string_equal(c.nodes[1].last_applied, "solo");
    cl_close(&c);
}

/* PreVote: a node cut off from the cluster campaigns without raising its
 * term, so on return it does not depose the healthy leader (thesis 9.6). */
static void test_prevote_partitioned_node_does_not_disrupt(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    cl_isolate(c, 3, true);
    cl_tick(c, 3, 100);
    cl_deliver(c);
    assert_int_equal(cl_status(c, 3).term, 2);
    cl_isolate(c, 3, false);
    cl_tick(c, 3, 30);
    cl_tick(c, 1, 1);
    cl_deliver(c);
    assert_int_equal(cl_leader(c), 1);
    assert_int_equal(cl_status(c, 1).term, 2);
}

/* CheckQuorum: a leader that hears from no quorum for an election timeout
 * steps down, so a partitioned leader stops acting as one. */
static void test_check_quorum_leader_steps_down(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    cl_isolate(c, 1, true);
    for (unsigned i = 0; i < 3 * c->opts.election_ticks; i++) {
        cl_tick(c, 1, 1);
        cl_deliver(c);
    }
    assert_int_equal(cl_status(c, 1).role, CONS_FOLLOWER);
}

/* Leader stickiness: a follower that heard from its leader within the
 * election timeout ignores a vote request for a higher term. */
static void test_vote_ignored_within_leader_lease(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    struct cons_msg m = {.type = CONS_MSG_VOTE, .from = 3, .to = 2,
                         .term = 9, .prev_index = 100, .prev_term = 8};
    cl_step(c, &m);
    assert_int_equal(cl_status(c, 2).term, 2);
    assert_null(cl_find(c, CONS_MSG_VOTE_RESP, 2, 3));
}

/* A vote is not answered before it is durable; a crash before the write
 * loses the vote without having promised it (RAFT-PITFALLS 1). */
static void test_vote_sent_only_after_durable(void **state)
{
    (void)state;
    struct cl c;
    struct cons_options o = plain_opts();
    cl_init_opts(&c, 3, 0, &o);
    cl_hold(&c, 2, true);
    tick_until_role(&c, 1, CONS_CANDIDATE);
    assert_non_null(cl_find(&c, CONS_MSG_VOTE, 1, 2));
    cl_deliver_one(&c); /* The request to node 2. */
    assert_int_equal(cl_status(&c, 2).vote, 1);
    assert_null(cl_find(&c, CONS_MSG_VOTE_RESP, 2, 1));
    cl_crash(&c, 2);
    cl_restart(&c, 2);
    assert_int_equal(cl_status(&c, 2).vote, RFS_NODE_NONE);
    assert_int_equal(cl_status(&c, 2).term, 1);
    cl_close(&c);
}

/* The candidate's own vote requests leave only once its new term and
 * self-vote are durable (RAFT-PITFALLS 1, nebula#3415). */
static void test_campaign_waits_for_term_durable(void **state)
{
    (void)state;
    struct cl c;
    struct cons_options o = plain_opts();
    cl_init_opts(&c, 3, 0, &o);
    cl_hold(&c, 1, true);
    tick_until_role(&c, 1, CONS_CANDIDATE);
    assert_null(cl_find(&c, CONS_MSG_VOTE, 1, 0));
    cl_release(&c, 1);
    assert_non_null(cl_find(&c, CONS_MSG_VOTE, 1, 2));
    cl_close(&c);
}

/* A candidate counts each voter once, however often its answer arrives. */
static void test_duplicate_votes_count_once(void **state)
{
    (void)state;
    struct cl c;
    struct cons_options o = plain_opts();
    cl_init_opts(&c, 5, 0, &o);
    tick_until_role(&c, 1, CONS_CANDIDATE);
    rfs_term_t t = cl_status(&c, 1).term;
    struct cons_msg m = {.type = CONS_MSG_VOTE_RESP, .from = 2, .to = 1,
                         .term = t};
    cl_step(&c, &m);
    cl_step(&c, &m);
    cl_step(&c, &m);
    assert_int_equal(cl_status(&c, 1).role, CONS_CANDIDATE);
    m.from = 3;
    cl_step(&c, &m);
    assert_int_equal(cl_status(&c, 1).role, CONS_LEADER);
    cl_close(&c);
}

/* Election restriction: a voter refuses a candidate whose log is behind. */
static void test_vote_refused_to_stale_log(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    cl_propose(c, 1, "x");
    cl_deliver(c);
    cl_tick(c, 2, 3 * c->opts.election_ticks); /* Leave the lease. */
    cl_drop_all(c);
    struct cons_msg m = {.type = CONS_MSG_VOTE, .from = 3, .to = 2,
                         .term = 5, .prev_index = 2, .prev_term = 2};
    cl_step(c, &m);
    const struct cons_msg *r = cl_find(c, CONS_MSG_VOTE_RESP, 2, 3);
    assert_non_null(r);
    assert_true(r->reject);
}

/* A server with no configuration (joining, or back under its old id with a
 * wiped disk) grants no vote, pre-vote or real: it may have voted in this
 * term before it lost its disk, and the entries it acknowledged are gone. */
static void test_no_configuration_no_vote(void **state)
{
    (void)state;
    struct cons_options o;
    cons_options_default(&o, 3);
    struct cons_load l;
    memset(&l, 0, sizeof(l));
    struct cons_node *n;
    assert_int_equal(cons_node_new(&o, &l, &n), 0);
    for (int pre = 0; pre <= 1; pre++) {
        struct cons_msg m = {.type = pre ? CONS_MSG_PREVOTE : CONS_MSG_VOTE,
                             .from = 1, .to = 3, .term = 2, .prev_index = 1,
                             .prev_term = 1};
        cons_node_step(n, &m);
        struct cons_update u;
        cons_node_take_update(n, &u);
        bool answered = false;
        for (unsigned i = 0; i < u.n_msgs; i++) {
            const struct cons_msg *r = &u.msgs[i].msg;
            if (r->to == 1 && (r->type == CONS_MSG_VOTE_RESP ||
                               r->type == CONS_MSG_PREVOTE_RESP)) {
                answered = true;
                assert_true(r->reject);
            }
        }
        assert_true(answered);
        if (u.needs_persist) {
            cons_node_persisted(n, &u.tag);
        }
    }
    cons_node_free(n);
}

/* Non-voters never campaign (RAFT-PITFALLS 5, hashicorp/raft#483). */
static void test_learner_never_campaigns(void **state)
{
    (void)state;
    struct cl c;
    cl_init(&c, 3, 1);
    cl_tick(&c, 4, 200);
    assert_int_equal(cl_status(&c, 4).role, CONS_FOLLOWER);
    assert_int_equal(cl_status(&c, 4).term, 1);
    assert_int_equal(c.sent[CONS_MSG_PREVOTE] + c.sent[CONS_MSG_VOTE], 0);
    cl_close(&c);
}

/* ------------------------------------------------------------------------ */
/* Replication and commitment                                                */

/* Figure 8 (thesis 3.6.2): a leader never commits an entry of an earlier
 * term by counting replicas, since a node holding a later-term entry at that
 * index could still be elected and overwrite it (RAFT-PITFALLS 2). */
static void test_figure8_no_commit_of_old_term_by_count(void **state)
{
    (void)state;
    struct cl c;
    struct cons_options o = plain_opts();
    o.max_msg_bytes = 1; /* One entry per AppendEntries. */
    cl_init_opts(&c, 3, 0, &o);
    cl_elect(&c, 1);
    assert_int_equal(cl_status(&c, 1).commit, 2);
    /* Leader 1 (term 2) appends index 3 but cannot replicate it. */
    cl_isolate(&c, 1, true);
    assert_int_equal(cl_propose(&c, 1, "old"), 0);
    cl_drop_all(&c);
    /* Node 2 wins term 3 and appends its no-op at index 3, unreplicated. */
    tick_until_role(&c, 2, CONS_CANDIDATE);
    deliver_until_leader(&c, 2);
    assert_int_equal(cl_leader(&c), 2);
    cl_isolate(&c, 2, true);
    cl_drop_all(&c);
    /* Node 1 restarts, comes back and wins a later term with node 3's
     * vote (its log, ending in term 2 at index 3, beats node 3's). */
    cl_crash(&c, 1);
    cl_restart(&c, 1);
    cl_isolate(&c, 1, false);
    cl_cut(&c, 1, 2, true);
    cl_cut(&c, 3, 2, true);
    for (int i = 0; i < 100 && cl_status(&c, 1).role != CONS_LEADER; i++) {
        cl_tick(&c, 1, 1);
        deliver_until_leader(&c, 1);
    }
    assert_int_equal(cl_status(&c, 1).role, CONS_LEADER);
    assert_true(cl_status(&c, 1).term >= 4);
    /* It replicates "old" (term 2) to node 3 before its own no-op: a
     * majority holds index 3, yet index 3 must not commit until the no-op
     * of term 4 does. */
    bool seen_old_only = false;
    while (cl_deliver_one(&c)) {
        if (cl_status(&c, 3).last_index == 3) {
            seen_old_only = true;
            assert_true(cl_status(&c, 1).commit < 3);
        }
    }
    assert_true(seen_old_only);
    assert_int_equal(cl_status(&c, 1).commit, 4);
    cl_close(&c);
}

/* The leader replicates while its own write is in flight and commits on
 * the followers' acks, but applies only what its own disk holds (thesis
 * 10.2.1). */
static void test_leader_replicates_before_own_write(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    unsigned applied = c->nodes[1].n_applied;
    cl_hold(c, 1, true);
    assert_int_equal(cl_propose(c, 1, "fast"), 0);
    assert_non_null(cl_find(c, CONS_MSG_APPEND, 1, 2));
    cl_deliver(c);
    assert_int_equal(cl_status(c, 1).commit, 3);
    assert_int_equal(cl_status(c, 1).stable, 2);
    assert_int_equal(c->nodes[1].n_applied, applied);
    cl_hold(c, 1, false);
    cl_release(c, 1);
    cl_process(c, 1);
    assert_string_equal(c->nodes[1].last_applied, "fast");
}

/* A follower rejects an append whose previous entry it lacks, with a hint
 * that lets the leader skip the whole gap or conflicting term at once. */
static void test_append_reject_carries_hint(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    struct cons_entry e[3] = {
        {.term = 2, .index = 2, .type = CONS_ENTRY_NORMAL},
        {.term = 2, .index = 3, .type = CONS_ENTRY_NORMAL},
        {.term = 2, .index = 4, .type = CONS_ENTRY_NORMAL},
    };
    struct cons_msg m = {.type = CONS_MSG_APPEND, .from = 1, .to = 2,
                         .term = 2, .prev_index = 1, .prev_term = 1,
                         .entries = e, .n_entries = 3};
    cl_step(c, &m);
    assert_int_equal(cl_status(c, 2).last_index, 4);
    cl_drop_all(c);
    struct cons_msg p = {.type = CONS_MSG_APPEND, .from = 3, .to = 2,
                         .term = 3, .prev_index = 9, .prev_term = 3};
    cl_step(c, &p);
    const struct cons_msg *r = cl_find(c, CONS_MSG_APPEND_RESP, 2, 3);
    assert_non_null(r);
    assert_true(r->reject);
    assert_int_equal(r->index, 9);
    assert_int_equal(r->hint_index, 4);
    assert_int_equal(r->hint_term, 2);
}

/* Only a real conflict truncates; an old or duplicated append never
 * shortens the log (RAFT-PITFALLS 3, etcd maybeAppend). */
static void test_append_truncates_only_on_conflict(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    struct cons_entry e[3] = {
        {.term = 2, .index = 2, .type = CONS_ENTRY_NORMAL},
        {.term = 2, .index = 3, .type = CONS_ENTRY_NORMAL},
        {.term = 2, .index = 4, .type = CONS_ENTRY_NORMAL},
    };
    struct cons_msg m = {.type = CONS_MSG_APPEND, .from = 1, .to = 2,
                         .term = 2, .prev_index = 1, .prev_term = 1,
                         .entries = e, .n_entries = 3};
    cl_step(c, &m);
    m.n_entries = 1; /* A stale copy carrying only index 2. */
    cl_step(c, &m);
    assert_int_equal(cl_status(c, 2).last_index, 4);
    /* A new leader's entry at index 3 conflicts: 3 and 4 go. */
    struct cons_entry x = {.term = 3, .index = 3, .type = CONS_ENTRY_NORMAL};
    struct cons_msg n3 = {.type = CONS_MSG_APPEND, .from = 3, .to = 2,
                          .term = 3, .prev_index = 2, .prev_term = 2,
                          .entries = &x, .n_entries = 1};
    cl_step(c, &n3);
    assert_int_equal(cl_status(c, 2).last_index, 3);
    assert_int_equal(cl_status(c, 2).last_term, 3);
}

/* A follower commits no further than the last entry the message proved
 * matches the leader (RAFT-PITFALLS 3, atomix/copycat#265). */
static void test_append_commit_capped_by_proof(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    struct cons_entry e[3] = {
        {.term = 1, .index = 2, .type = CONS_ENTRY_NORMAL},
        {.term = 1, .index = 3, .type = CONS_ENTRY_NORMAL},
        {.term = 1, .index = 4, .type = CONS_ENTRY_NORMAL},
    };
    /* Node 2 holds 2..4 from an old leader of term 1. */
    struct cons_msg m = {.type = CONS_MSG_APPEND, .from = 1, .to = 2,
                         .term = 1, .prev_index = 1, .prev_term = 1,
                         .entries = e, .n_entries = 3};
    cl_step(c, &m);
    /* The term-2 leader proves only index 2 and says commit is 10. */
    struct cons_entry y = {.term = 2, .index = 2, .type = CONS_ENTRY_NORMAL};
    struct cons_msg p = {.type = CONS_MSG_APPEND, .from = 3, .to = 2,
                         .term = 2, .prev_index = 1, .prev_term = 1,
                         .entries = &y, .n_entries = 1, .commit = 10};
    cl_step(c, &p);
    assert_int_equal(cl_status(c, 2).commit, 2);
}

/* A lagging follower is found in one round trip thanks to the hint. */
static void test_lagging_follower_catches_up_fast(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    cl_isolate(c, 3, true);
    char buf[16];
    for (int i = 0; i < 40; i++) {
        snprintf(buf, sizeof(buf), "e%d", i);
        assert_int_equal(cl_propose(c, 1, buf), 0);
        cl_deliver(c);
    }
    cl_isolate(c, 3, false);
    unsigned before = c->sent[CONS_MSG_APPEND_RESP];
    for (unsigned i = 0; i < 6 && cl_status(c, 3).commit < 42; i++) {
        cl_tick(c, 1, 1);
        cl_deliver(c);
    }
    assert_int_equal(cl_status(c, 3).commit, 42);
    /* Reject, accept: a handful of answers, not one per missing entry. */
    assert_true(c->sent[CONS_MSG_APPEND_RESP] - before < 10);
}

/* Flow control: at most max_inflight appends in flight to a follower, and
 * no more than max_msg_bytes of payload in one (beyond the first entry). */
static void test_flow_control_bounds_inflight(void **state)
{
    (void)state;
    struct cl c;
    struct cons_options o;
    cons_options_default(&o, 1);
    o.max_inflight = 2;
    o.max_msg_bytes = 8;
    cl_init_opts(&c, 3, 0, &o);
    cl_elect(&c, 1);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(cl_propose(&c, 1, "payload!"), 0);
    }
    assert_int_equal(cl_queued(&c, CONS_MSG_APPEND, 1) / 2, 2);
    for (struct cl_msg *m = c.q; m; m = m->next) {
        if (m->m.type == CONS_MSG_APPEND) {
            assert_int_equal(m->m.n_entries, 1);
        }
    }
    cl_deliver(&c);
    for (int i = 0; i < 20 && cl_status(&c, 2).commit < 12; i++) {
        cl_tick(&c, 1, 1);
        cl_deliver(&c);
    }
    assert_int_equal(cl_status(&c, 2).commit, 12);
    cl_close(&c);
}

/* Proposals on a follower go to the leader it knows. */
static void test_propose_on_follower_is_forwarded(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    assert_int_equal(cl_propose(c, 2, "via-2"), 0);
    cl_deliver(c);
    assert_string_equal(c->nodes[1].last_applied, "via-2");
    assert_string_equal(c->nodes[2].last_applied, "via-2");
}

/* Without a known leader a proposal is refused at once, not queued. */
static void test_propose_without_leader_is_refused(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    assert_int_equal(cl_propose(c, 2, "nobody"), RFS_ENOLEADER);
}

/* With quorum lost, the leader's uncommitted log is bounded
 * (etcd MaxUncommittedEntriesSize). */
static void test_uncommitted_log_is_bounded(void **state)
{
    (void)state;
    struct cl c;
    struct cons_options o;
    cons_options_default(&o, 1);
    o.max_uncommitted = 100;
    cl_init_opts(&c, 3, 0, &o);
    cl_elect(&c, 1);
    cl_isolate(&c, 1, true);
    char big[51];
    memset(big, 'b', 50);
    big[50] = '\0';
    assert_int_equal(cl_propose(&c, 1, big), 0);
    assert_int_equal(cl_propose(&c, 1, big), 0);
    assert_int_equal(cl_propose(&c, 1, big), RFS_ETOOBIG);
    cl_close(&c);
}

/* ------------------------------------------------------------------------ */
/* Reads                                                                     */

/* ReadIndex waits for the leader's no-op to commit: before it, the leader's
 * commit index may lag what earlier leaders committed (RAFT-PITFALLS 2,
 * redisraft#22). */
static void test_read_index_waits_for_noop(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    tick_until_role(c, 1, CONS_PRECANDIDATE);
    deliver_until_leader(c, 1);
    assert_int_equal(cl_status(c, 1).commit, 0);
    assert_int_equal(cons_node_read_index(c->nodes[1].n, 77), 0);
    cl_process(c, 1);
    cl_deliver(c);
    assert_int_equal(c->nodes[1].n_reads, 1);
    assert_int_equal(c->nodes[1].reads_ctx[0], 77);
    assert_true(c->nodes[1].reads_index[0] >= 2);
}

/* Many reads share one heartbeat round. */
static void test_read_index_batches_reads(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    cl_drop_all(c);
    for (uint64_t i = 0; i < 10; i++) {
        assert_int_equal(cons_node_read_index(c->nodes[1].n, 100 + i), 0);
    }
    cl_process(c, 1);
    assert_int_equal(cl_queued(c, CONS_MSG_HEARTBEAT, 1), 2);
    cl_deliver(c);
    assert_int_equal(c->nodes[1].n_reads, 10);
    assert_int_equal(c->nodes[1].reads_index[9], cl_status(c, 1).commit);
}

/* A follower gets its read index from the leader. */
static void test_read_index_on_follower(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    assert_int_equal(cons_node_read_index(c->nodes[3].n, 5), 0);
    cl_process(c, 3);
    cl_deliver(c);
    assert_int_equal(c->nodes[3].n_reads, 1);
    assert_int_equal(c->nodes[3].reads_index[0], cl_status(c, 1).commit);
}

/* A deposed leader that does not know it yet cannot confirm a read: no
 * quorum answers its round, and the read fails when it steps down. */
static void test_read_index_on_stale_leader_fails(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    cl_isolate(c, 1, true);
    assert_true(settle_leader(c, 1) != 0);
    assert_int_equal(cl_status(c, 1).role, CONS_LEADER);
    assert_int_equal(cons_node_read_index(c->nodes[1].n, 9), 0);
    cl_process(c, 1);
    cl_deliver(c);
    assert_int_equal(c->nodes[1].n_reads, 0);
    cl_tick(c, 1, 3 * c->opts.election_ticks);
    assert_int_equal(c->nodes[1].n_reads, 0);
    assert_int_equal(c->nodes[1].n_failed, 1);
    assert_int_equal(c->nodes[1].failed_ctx[0], 9);
}

/* Lease reads: a 3-node cluster whose leader 1 holds a fresh lease. */
/* A leader with a lease; with follower leases, its followers also answered
 * two heartbeat rounds (the grant rides on the round after their answer). */
static void lease_cluster_with(struct cl *c, bool follower_leases)
{
    struct cons_options o;
    cons_options_default(&o, 1);
    o.lease_reads = true;
    o.follower_leases = follower_leases;
    cl_init_opts(c, 3, 0, &o);
    /* Past the boot hold (see test_lease_restarted_voter_holds_off), alone,
     * so that nobody wins an election meanwhile. */
    for (unsigned i = 2; i <= 3; i++) {
        cl_isolate(c, i, true);
        cl_tick(c, i, o.election_ticks);
        cl_isolate(c, i, false);
    }
    cl_drop_all(c);
    cl_elect(c, 1);
    assert_int_equal(cl_status(c, 1).role, CONS_LEADER);
    for (int round = 0; round < (follower_leases ? 2 : 1); round++) {
        cl_tick(c, 1, o.heartbeat_ticks); /* A round the followers answer. */
        cl_deliver(c);
    }
}

static void lease_cluster(struct cl *c)
{
    lease_cluster_with(c, false);
}

/* A leader with a lease answers a read at once: no heartbeat goes out. */
static void test_lease_read_needs_no_round(void **state)
{
    (void)state;
    struct cl c;
    lease_cluster(&c);
    unsigned before = c.sent[CONS_MSG_HEARTBEAT];
    assert_int_equal(cons_node_read_index(c.nodes[1].n, 41), 0);
    cl_process(&c, 1);
    assert_int_equal(c.nodes[1].n_reads, 1);
    assert_int_equal(c.nodes[1].reads_index[0], cl_status(&c, 1).commit);
    assert_int_equal(c.sent[CONS_MSG_HEARTBEAT], before);
    /* A follower's read costs one trip to the leader and back. */
    assert_int_equal(cons_node_read_index(c.nodes[3].n, 42), 0);
    cl_process(&c, 3);
    cl_deliver(&c);
    assert_int_equal(c.nodes[3].n_reads, 1);
    assert_int_equal(c.sent[CONS_MSG_HEARTBEAT], before);
    cl_close(&c);
}

/* A leader cut off from its followers loses the lease before any of them
 * may vote for someone else; past that point a read needs a round, which
 * no quorum answers. */
static void test_lease_expires_without_acks(void **state)
{
    (void)state;
    struct cl c;
    lease_cluster(&c);
    cl_isolate(&c, 1, true);
    /* Short of CheckQuorum's step-down, past the lease. */
    cl_tick(&c, 1, c.opts.election_ticks - 2);
    cl_drop_all(&c);
    assert_int_equal(cons_node_read_index(c.nodes[1].n, 7), 0);
    cl_process(&c, 1);
    cl_deliver(&c);
    assert_int_equal(c.nodes[1].n_reads, 0);
    cl_close(&c);
}

/* Node sessions: a follower's session base is the send tick of its latest
 * answer that the leader echoed back, with or without follower leases. It
 * moves while the leader hears the follower, and stays put when only the
 * leader's messages get through (an asymmetric partition): what the
 * follower receives proves nothing about what the leader heard. */
static void session_base_check(bool follower_leases)
{
    struct cl c;
    lease_cluster_with(&c, follower_leases);
    uint64_t base = 0, later = 0;
    for (int round = 0; round < 2; round++) {
        cl_tick(&c, 1, c.opts.heartbeat_ticks);
        cl_tick(&c, 2, c.opts.heartbeat_ticks);
        cl_deliver(&c);
    }
    assert_true(cons_node_session_base(c.nodes[2].n, &base));
    assert_true(base > 0);
    /* The leader's own base: its latest round a quorum acknowledged. */
    uint64_t lbase = 0;
    assert_true(cons_node_session_base(c.nodes[1].n, &lbase));
    /* Heard: the base follows the follower's clock. */
    cl_tick(&c, 1, c.opts.heartbeat_ticks);
    cl_tick(&c, 2, c.opts.heartbeat_ticks);
    cl_deliver(&c);
    cl_tick(&c, 1, c.opts.heartbeat_ticks);
    cl_tick(&c, 2, c.opts.heartbeat_ticks);
    cl_deliver(&c);
    assert_true(cons_node_session_base(c.nodes[2].n, &later));
    assert_true(later > base);
    /* 2 -> 1 cut, 1 -> 2 open: heartbeats (with stale echoes, if any)
     * still arrive, the base must not move. */
    c.cut[2][1] = true;
    for (int round = 0; round < 3; round++) {
        cl_tick(&c, 1, 1);
        cl_tick(&c, 2, 1);
        cl_deliver(&c);
    }
    assert_int_equal(cl_status(&c, 2).leader, 1); /* It still hears 1. */
    uint64_t cut_base = 0;
    assert_true(cons_node_session_base(c.nodes[2].n, &cut_base));
    uint64_t frozen = cut_base;
    for (int round = 0; round < 3; round++) {
        cl_tick(&c, 1, 1);
        cl_tick(&c, 2, 1);
        cl_deliver(&c);
    }
    assert_true(cons_node_session_base(c.nodes[2].n, &cut_base));
    assert_int_equal(cut_base, frozen);
    /* Healed: it moves again. */
    c.cut[2][1] = false;
    for (int round = 0; round < 2; round++) {
        cl_tick(&c, 1, c.opts.heartbeat_ticks);
        cl_tick(&c, 2, c.opts.heartbeat_ticks);
        cl_deliver(&c);
    }
    assert_true(cons_node_session_base(c.nodes[2].n, &cut_base));
    assert_true(cut_base > frozen);
    cl_close(&c);
}

static void test_session_base_is_echoed(void **state)
{
    (void)state;
    session_base_check(false);
    session_base_check(true);
}

/* Follower read leases (docs/core.md). */
static void flease_cluster(struct cl *c)
{
    lease_cluster_with(c, true);
}

/* A follower inside its read lease answers a read from its own log: no
 * READ_INDEX goes to the leader, and the index is its last one. */
static void test_follower_lease_reads_locally(void **state)
{
    (void)state;
    struct cl c;
    flease_cluster(&c);
    cl_drop_all(&c);
    assert_int_not_equal(cons_node_lease_end(c.nodes[2].n), 0);
    assert_int_equal(cons_node_read_index(c.nodes[2].n, 7), 0);
    cl_process(&c, 2);
    assert_int_equal(c.nodes[2].n_reads, 1);
    assert_int_equal(cl_queued(&c, CONS_MSG_READ_INDEX, 2), 0);
    assert_int_equal(cl_status(&c, 2).leased_reads, 1);
    assert_int_equal(cons_node_lease_index(c.nodes[2].n),
                     cl_status(&c, 2).last_index);
    cl_close(&c);
}

/* The promise: an entry that a lease holder has not acknowledged does not
 * commit, although a majority holds it, until the holder's lease has run
 * out; by then the holder no longer answers reads itself. */
static void test_follower_lease_holds_commit(void **state)
{
    (void)state;
    struct cl c;
    flease_cluster(&c);
    rfs_index_t before = cl_status(&c, 1).commit;
    cl_cut(&c, 1, 3, true);
    assert_int_equal(cl_propose(&c, 1, "x"), 0);
    cl_deliver(&c);
    assert_int_equal(cl_status(&c, 1).commit, before);
    unsigned waited = 0;
    while (cl_status(&c, 1).commit == before &&
           waited < 2 * c.opts.election_ticks) {
        cl_tick(&c, 1, 1);
        cl_tick(&c, 3, 1);
        cl_tick(&c, 2, 1);
        cl_deliver(&c);
        waited++;
        if (cl_status(&c, 1).commit == before) {
            /* Still promised: node 3 may still answer from its lease. */
            continue;
        }
        /* Committed without node 3: its lease has ended on its clock. */
        assert_int_equal(cons_node_lease_end(c.nodes[3].n), 0);
    }
    assert_true(cl_status(&c, 1).commit > before);
    assert_true(waited > 1);
    cl_drop_all(&c);
    assert_int_equal(cons_node_read_index(c.nodes[3].n, 9), 0);
    cl_process(&c, 3);
    assert_int_equal(c.nodes[3].n_reads, 0);
    assert_int_equal(cl_queued(&c, CONS_MSG_READ_INDEX, 3), 1);
    cl_close(&c);
}

/* A transfer lets its target's candidacy skip the followers' stickiness,
 * which bounds every lease the leader granted: TimeoutNow waits until no
 * promise runs, and no new one is made meanwhile. */
static void test_follower_lease_delays_transfer(void **state)
{
    (void)state;
    struct cl c;
    flease_cluster(&c);
    cl_drop_all(&c);
    assert_int_equal(cons_node_transfer(c.nodes[1].n, 2), 0);
    cl_process(&c, 1);
    cl_deliver(&c);
    assert_int_equal(c.sent[CONS_MSG_TIMEOUT_NOW], 0);
    unsigned ticks = 0;
    while (c.sent[CONS_MSG_TIMEOUT_NOW] == 0 &&
           ticks < c.opts.election_ticks) {
        cl_tick(&c, 1, 1);
        cl_deliver(&c);
        ticks++;
    }
    assert_int_equal(c.sent[CONS_MSG_TIMEOUT_NOW], 1);
    assert_true(ticks > 1);
    cl_close(&c);
}

/* A voter that restarts may have answered the leader's last round before
 * it went down: it ignores candidates for its first election timeout, as
 * it would have had it stayed up. */
static void test_lease_restarted_voter_holds_off(void **state)
{
    (void)state;
    struct cl c;
    lease_cluster(&c);
    cl_crash(&c, 2);
    cl_restart(&c, 2);
    rfs_term_t t = cl_status(&c, 2).term;
    struct cons_msg m = {.type = CONS_MSG_VOTE, .from = 3, .to = 2,
                         .term = t + 1, .prev_index = 100,
                         .prev_term = t};
    cl_step(&c, &m);
    assert_null(cl_find(&c, CONS_MSG_VOTE_RESP, 2, 3));
    assert_int_equal(cl_status(&c, 2).term, t);
    /* One election timeout later it votes again. */
    cl_isolate(&c, 2, true);
    cl_tick(&c, 2, c.opts.election_ticks);
    cl_isolate(&c, 2, false);
    cl_drop_all(&c);
    struct cons_status st = cl_status(&c, 2);
    m.term = st.term + 1;
    cl_step(&c, &m);
    assert_int_equal(cl_status(&c, 2).term, st.term + 1);
    cl_close(&c);
}

/* A voter that adopts a higher term from a message that is not a vote
 * request (here a heartbeat answer from a node that timed out alone) knows
 * no leader any more, but its promise to the old leader still holds: it
 * ignores candidates until an election timeout from the leader's last
 * message (RAFT-PITFALLS 8). */
static void test_lease_outlives_higher_term(void **state)
{
    (void)state;
    struct cl c;
    lease_cluster(&c);
    cl_tick(&c, 1, c.opts.heartbeat_ticks); /* 2 hears the leader. */
    cl_deliver(&c);
    cl_isolate(&c, 2, true);
    rfs_term_t t = cl_status(&c, 2).term;
    struct cons_msg h = {.type = CONS_MSG_HEARTBEAT_RESP, .from = 3, .to = 2,
                         .term = t + 1};
    cl_step(&c, &h);
    assert_int_equal(cl_status(&c, 2).term, t + 1);
    assert_int_equal(cl_status(&c, 2).leader, RFS_NODE_NONE);
    struct cons_msg m = {.type = CONS_MSG_VOTE, .from = 3, .to = 2,
                         .term = t + 2, .prev_index = 100, .prev_term = t};
    cl_step(&c, &m);
    assert_int_equal(cl_status(&c, 2).term, t + 1);
    assert_int_equal(cl_status(&c, 2).vote, RFS_NODE_NONE);
    /* An election timeout after the leader's last message it votes. */
    cl_tick(&c, 2, c.opts.election_ticks);
    cl_drop_all(&c);
    m.term = cl_status(&c, 2).term + 1;
    cl_step(&c, &m);
    assert_int_equal(cl_status(&c, 2).term, m.term);
    assert_int_equal(cl_status(&c, 2).vote, 3);
    cl_close(&c);
}

/* The same promise holds for a vote request of the term the voter just
 * took from an answer: it is not higher, yet the voter, with no vote and
 * no leader in that term, would grant it at once while the old leader's
 * lease runs (found by the simulator's election race work: with 7 voters,
 * or a peer that took the term without voting for itself, two leases
 * could overlap). Pre-votes alike; the candidate it already voted for is
 * answered as before. */
static void test_lease_outlives_same_term_vote(void **state)
{
    (void)state;
    struct cl c;
    lease_cluster(&c);
    cl_tick(&c, 1, c.opts.heartbeat_ticks); /* 2 hears the leader. */
    cl_deliver(&c);
    cl_isolate(&c, 2, true);
    rfs_term_t t = cl_status(&c, 2).term;
    struct cons_msg h = {.type = CONS_MSG_HEARTBEAT_RESP, .from = 3, .to = 2,
                         .term = t + 1};
    cl_step(&c, &h);
    assert_int_equal(cl_status(&c, 2).term, t + 1);
    assert_int_equal(cl_status(&c, 2).vote, RFS_NODE_NONE);
    struct cons_msg pv = {.type = CONS_MSG_PREVOTE, .from = 3, .to = 2,
                          .term = t + 1, .prev_index = 100, .prev_term = t};
    cl_step(&c, &pv);
    const struct cons_msg *r = cl_find(&c, CONS_MSG_PREVOTE_RESP, 2, 3);
    assert_non_null(r);
    assert_true(r->reject);
    cl_drop_all(&c);
    struct cons_msg m = {.type = CONS_MSG_VOTE, .from = 3, .to = 2,
                         .term = t + 1, .prev_index = 100, .prev_term = t};
    cl_step(&c, &m);
    assert_int_equal(cl_status(&c, 2).vote, RFS_NODE_NONE);
    /* An election timeout after the leader's last message it votes. */
    cl_tick(&c, 2, c.opts.election_ticks);
    cl_drop_all(&c);
    m.term = cl_status(&c, 2).term;
    cl_step(&c, &m);
    assert_int_equal(cl_status(&c, 2).vote, 3);
    cl_close(&c);
}

/* A leader that sent TIMEOUT_NOW gave its followers leave to ignore its
 * lease: from then on its reads take a round. */
static void test_lease_dropped_by_transfer(void **state)
{
    (void)state;
    struct cl c;
    lease_cluster(&c);
    cl_cut(&c, 1, 3, true);
    assert_int_equal(cons_node_transfer(c.nodes[1].n, 2), 0);
    cl_process(&c, 1);
    assert_non_null(cl_find(&c, CONS_MSG_TIMEOUT_NOW, 1, 2));
    cl_drop_all(&c);
    assert_int_equal(cons_node_read_index(c.nodes[1].n, 8), 0);
    cl_process(&c, 1);
    assert_int_equal(c.nodes[1].n_reads, 0);
    cl_close(&c);
}

/* Lease reads without CheckQuorum would rest on nothing: refused. */
static void test_lease_needs_check_quorum(void **state)
{
    (void)state;
    struct cons_options o;
    cons_options_default(&o, 1);
    o.lease_reads = true;
    o.check_quorum = false;
    struct cons_load l;
    memset(&l, 0, sizeof(l));
    struct cons_node *n = NULL;
    assert_int_equal(cons_node_new(&o, &l, &n), -EINVAL);
    assert_null(n);
}

/* ------------------------------------------------------------------------ */
/* Leadership transfer                                                       */

/* The leader hands over to a caught-up voter with TimeoutNow. */
static void test_transfer_hands_over(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    assert_int_equal(cons_node_transfer(c->nodes[1].n, 3), 0);
    cl_process(c, 1);
    cl_deliver(c);
    assert_int_equal(cl_leader(c), 3);
}

/* A lagging target is caught up first; proposals are refused meanwhile,
 * and the transfer is abandoned after an election timeout. */
static void test_transfer_catches_up_and_times_out(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    cl_isolate(c, 3, true);
    cl_propose(c, 1, "behind");
    cl_deliver(c);
    assert_int_equal(cons_node_transfer(c->nodes[1].n, 3), 0);
    assert_int_equal(cl_propose(c, 1, "during"), RFS_ETRANSFER);
    cl_tick(c, 1, c->opts.election_ticks + 1);
    cl_deliver(c);
    assert_int_equal(cl_status(c, 1).transferee, 0);
    assert_int_equal(cl_propose(c, 1, "after"), 0);
    cl_isolate(c, 3, false);
    assert_int_equal(cons_node_transfer(c->nodes[1].n, 3), 0);
    cl_process(c, 1);
    for (int i = 0; i < 10 && cl_leader(c) != 3; i++) {
        cl_tick(c, 1, 1);
        cl_deliver(c);
    }
    assert_int_equal(cl_leader(c), 3);
    assert_string_equal(c->nodes[3].last_applied, "after");
}

/* Learners are never picked for a transfer (RAFT-PITFALLS 5). */
static void test_transfer_refuses_learner(void **state)
{
    (void)state;
    struct cl c;
    cl_init(&c, 3, 1);
    cl_elect(&c, 1);
    assert_int_equal(cons_node_transfer(c.nodes[1].n, 4), RFS_EBADCONF);
    assert_int_equal(cons_node_transfer(c.nodes[1].n, 1), RFS_EBADCONF);
    cl_close(&c);
}

/* ------------------------------------------------------------------------ */
/* Membership                                                                */

/* No change before this leader commits an entry of its term, and only one
 * uncommitted change at a time (thesis errata; RAFT-PITFALLS 4). */
static void test_conf_change_one_at_a_time(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    tick_until_role(c, 1, CONS_PRECANDIDATE);
    deliver_until_leader(c, 1);
    cl_drop_all(c);
    assert_int_equal(cons_node_change(c->nodes[1].n, CONS_ADD_LEARNER, 4,
                                      "n4", NULL),
                     RFS_EBUSY);
    cl_tick(c, 1, 2);
    cl_deliver(c);
    assert_int_equal(cl_status(c, 1).commit, 2);
    cl_isolate(c, 1, true);
    assert_int_equal(cons_node_change(c->nodes[1].n, CONS_ADD_LEARNER, 4,
                                      "n4", NULL),
                     0);
    assert_int_equal(cons_node_change(c->nodes[1].n, CONS_ADD_LEARNER, 5,
                                      "n5", NULL),
                     RFS_EBUSY);
    cl_isolate(c, 1, false);
    cl_process(c, 1);
    cl_tick(c, 1, 2);
    cl_deliver(c);
    assert_int_equal(cons_node_change(c->nodes[1].n, CONS_ADD_LEARNER, 5,
                                      "n5", NULL),
                     0);
}

/* Bad changes are refused with a clear code. */
static void test_conf_change_validates(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    struct cons_node *n = c->nodes[1].n;
    assert_int_equal(cons_node_change(n, CONS_ADD_LEARNER, 2, "x", NULL),
                     RFS_EBADCONF);
    assert_int_equal(cons_node_change(n, CONS_ADD_LEARNER, 7, "", NULL),
                     RFS_EBADCONF);
    assert_int_equal(cons_node_change(n, CONS_PROMOTE, 9, NULL, NULL),
                     RFS_EBADCONF);
    assert_int_equal(cons_node_change(n, CONS_REMOVE, 9, NULL, NULL),
                     RFS_EBADCONF);
    assert_int_equal(cons_node_change(c->nodes[2].n, CONS_ADD_LEARNER, 7,
                                      "x", NULL),
                     RFS_ENOTLEADER);
}

/* A learner is added, catches up, and is promoted to voter. */
static void test_conf_add_learner_then_promote(void **state)
{
    (void)state;
    struct cl c;
    cl_init(&c, 3, 0);
    c.n = 4; /* Node 4 starts empty: it joins. */
    struct cons_options o = c.opts;
    o.id = 4;
    struct cons_load l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(cons_node_new(&o, &l, &c.nodes[4].n), 0);
    c.nodes[4].up = true;
    cl_elect(&c, 1);
    assert_int_equal(cons_node_change(c.nodes[1].n, CONS_ADD_LEARNER, 4,
                                      "n4", NULL),
                     0);
    cl_process(&c, 1);
    for (int i = 0; i < 10; i++) {
        cl_tick(&c, 1, 1);
        cl_deliver(&c);
    }
    assert_int_equal(cl_status(&c, 4).commit, cl_status(&c, 1).commit);
    assert_int_equal(cons_node_change(c.nodes[1].n, CONS_PROMOTE, 4, NULL,
                                      NULL),
                     0);
    cl_process(&c, 1);
    cl_deliver(&c);
    const struct cons_server *s = cons_conf_get(cons_node_conf(c.nodes[4].n), 4);
    assert_non_null(s);
    assert_int_equal(s->role, CONS_VOTER);
    cl_close(&c);
}

/* A leader that removes itself steps down once the change commits, and
 * never campaigns again (RAFT-PITFALLS 5, etcd-io/raft#77). */
static void test_conf_removed_leader_steps_down(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    assert_int_equal(cons_node_change(c->nodes[1].n, CONS_REMOVE, 1, NULL,
                                      NULL),
                     0);
    cl_process(c, 1);
    cl_deliver(c);
    cl_tick(c, 1, 1);
    cl_deliver(c);
    assert_int_equal(cl_status(c, 1).role, CONS_FOLLOWER);
    unsigned votes = c->sent[CONS_MSG_PREVOTE] + c->sent[CONS_MSG_VOTE];
    cl_tick(c, 1, 100);
    assert_int_equal(c->sent[CONS_MSG_PREVOTE] + c->sent[CONS_MSG_VOTE], votes);
    unsigned l = settle_leader(c, 1);
    assert_true(l == 2 || l == 3);
}

/* A follower whose uncommitted configuration entry is overwritten goes back
 * to the previous configuration (RAFT-PITFALLS 4, rule 3). */
static void test_conf_rolls_back_on_truncation(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    struct cons_conf conf = *cons_node_conf(c->nodes[2].n);
    conf.servers[conf.n].id = 4;
    conf.servers[conf.n].role = CONS_LEARNER;
    strcpy(conf.servers[conf.n].addr, "n4");
    conf.n++;
    struct cons_entry e = {.term = 2, .index = 2, .type = CONS_ENTRY_CONF};
    assert_int_equal(cons_conf_encode(&conf, &e.data), 0);
    struct cons_msg m = {.type = CONS_MSG_APPEND, .from = 1, .to = 2,
                         .term = 2, .prev_index = 1, .prev_term = 1,
                         .entries = &e, .n_entries = 1};
    cl_step(c, &m);
    rfs_free(e.data.base);
    assert_int_equal(cons_node_conf(c->nodes[2].n)->n, 4);
    struct cons_entry x = {.term = 3, .index = 2, .type = CONS_ENTRY_NORMAL};
    struct cons_msg p = {.type = CONS_MSG_APPEND, .from = 3, .to = 2,
                         .term = 3, .prev_index = 1, .prev_term = 1,
                         .entries = &x, .n_entries = 1};
    cl_step(c, &p);
    assert_int_equal(cons_node_conf(c->nodes[2].n)->n, 3);
    assert_int_equal(cl_status(c, 2).conf_index, 1);
}

/* Configurations survive encoding, and malformed ones are refused. */
static void test_conf_codec(void **state)
{
    (void)state;
    struct cons_conf a;
    memset(&a, 0, sizeof(a));
    a.n = 2;
    a.servers[0] = (struct cons_server){.id = 7, .role = CONS_VOTER};
    strcpy(a.servers[0].addr, "10.0.0.7:7000");
    a.servers[1] = (struct cons_server){.id = 9, .role = CONS_LEARNER};
    strcpy(a.servers[1].addr, "h9:1");
    struct rfs_buf b;
    assert_int_equal(cons_conf_encode(&a, &b), 0);
    struct cons_conf d;
    assert_int_equal(cons_conf_decode(&b, &d), 0);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.servers[1].id, 9);
    assert_string_equal(d.servers[0].addr, "10.0.0.7:7000");
    uint8_t *p = b.base;
    for (size_t cut = 0; cut < b.len; cut++) {
        struct rfs_buf t = {p, cut};
        assert_int_equal(cons_conf_decode(&t, &d), RFS_EMALFORMED);
    }
    p[2 + 8] = 3; /* Bad role. */
    assert_int_equal(cons_conf_decode(&b, &d), RFS_EMALFORMED);
    p[2 + 8] = CONS_VOTER;
    memcpy(p + 2 + 8 + 1 + 1 + 13, p + 2, 8); /* Duplicate id. */
    assert_int_equal(cons_conf_decode(&b, &d), RFS_EMALFORMED);
    rfs_free(b.base);
}

/* Ids are never reused (RAFT-PITFALLS 5): once node 3 is removed, adding
 * id 3 again is refused with its own code, on the leader that removed it and
 * on a later leader that learned the removal from the log; the removal is
 * remembered with the index of the entry that made it. */
static void test_conf_removed_id_never_added_again(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    rfs_index_t at = 0;
    assert_int_equal(cons_node_change(c->nodes[1].n, CONS_REMOVE, 3, NULL,
                                      &at),
                     0);
    cl_tick(c, 1, 2);
    cl_deliver(c);
    cl_tick(c, 1, 2);
    cl_deliver(c);
    assert_true(cl_status(c, 1).commit >= at);
    assert_int_equal(cons_node_change(c->nodes[1].n, CONS_ADD_LEARNER, 3,
                                      "n3", NULL),
                     RFS_EIDREMOVED);
    rfs_index_t when;
    assert_true(cons_conf_removed(cons_node_conf(c->nodes[1].n), 3, &when));
    assert_int_equal(when, at);
    assert_false(cons_conf_removed(cons_node_conf(c->nodes[1].n), 2, &when));
    /* Another id is fine. */
    assert_int_equal(cons_node_change(c->nodes[1].n, CONS_ADD_LEARNER, 4,
                                      "n4", NULL),
                     0);
    cl_tick(c, 1, 2);
    cl_deliver(c);
    /* Node 2, leading next, knows from the log. */
    assert_int_equal(cons_node_transfer(c->nodes[1].n, 2), 0);
    for (int i = 0; i < 20 && cl_leader(c) != 2; i++) {
        cl_tick(c, 1, 1);
        cl_deliver(c);
    }
    assert_int_equal(cl_leader(c), 2);
    cl_tick(c, 2, 2);
    cl_deliver(c);
    assert_int_equal(cons_node_change(c->nodes[2].n, CONS_ADD_LEARNER, 3,
                                      "n3", NULL),
                     RFS_EIDREMOVED);
}

/* The removed ids travel in the CONF entry (version 2); a configuration
 * that removed nobody keeps version 1, and a full list folds its oldest
 * record into removed_upto. */
static void test_conf_codec_removed(void **state)
{
    (void)state;
    struct cons_conf a;
    memset(&a, 0, sizeof(a));
    a.n = 1;
    a.servers[0] = (struct cons_server){.id = 7, .role = CONS_VOTER};
    strcpy(a.servers[0].addr, "h7:1");
    struct rfs_buf b;
    assert_int_equal(cons_conf_encode(&a, &b), 0);
    assert_int_equal(((uint8_t *)b.base)[0], 1);
    rfs_free(b.base);
    cons_conf_add_removed(&a, 3, 40);
    cons_conf_add_removed(&a, 5, 90);
    assert_int_equal(cons_conf_encode(&a, &b), 0);
    assert_int_equal(((uint8_t *)b.base)[0], 2);
    struct cons_conf d;
    assert_int_equal(cons_conf_decode(&b, &d), 0);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.n_removed, 2);
    rfs_index_t at;
    assert_true(cons_conf_removed(&d, 5, &at));
    assert_int_equal(at, 90);
    assert_false(cons_conf_removed(&d, 4, &at));
    assert_false(cons_conf_removed(&d, 7, &at));
    for (size_t cut = 0; cut < b.len; cut++) {
        struct rfs_buf t = {b.base, cut};
        assert_int_equal(cons_conf_decode(&t, &d), RFS_EMALFORMED);
    }
    rfs_free(b.base);
    /* A member listed as removed is malformed. */
    cons_conf_add_removed(&a, 7, 95);
    assert_int_equal(cons_conf_encode(&a, &b), 0);
    assert_int_equal(cons_conf_decode(&b, &d), RFS_EMALFORMED);
    rfs_free(b.base);
    /* Folding: ids 100.. removed in turn; the first falls into removed_upto
     * once the list is full. */
    memset(&a, 0, sizeof(a));
    for (unsigned i = 0; i <= CONS_MAX_REMOVED; i++) {
        cons_conf_add_removed(&a, 100 + i, 1000 + i);
    }
    assert_int_equal(a.n_removed, CONS_MAX_REMOVED);
    assert_int_equal(a.removed_upto, 100);
    assert_true(cons_conf_removed(&a, 100, &at));
    assert_int_equal(at, 0);
    assert_true(cons_conf_removed(&a, 101, &at));
    assert_int_equal(at, 1001);
}

/* Data folder ids (version 3): a configuration written by a build that
 * did not record them (versions 1 and 2, bytes as such a build writes
 * them) reads with every id unknown; one with ids round-trips them, with
 * the removed ids, and every truncation is malformed. */
static void test_conf_codec_data_id(void **state)
{
    (void)state;
    /* Version 1: node 7, voter, "h7:1". */
    uint8_t v1[] = {1, 1, 7, 0, 0, 0, 0, 0, 0, 0, CONS_VOTER, 4,
                    'h', '7', ':', '1'};
    struct rfs_buf b = {v1, sizeof(v1)};
    struct cons_conf d;
    assert_int_equal(cons_conf_decode(&b, &d), 0);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.servers[0].id, 7);
    assert_int_equal(d.servers[0].data_id, 0);
    /* Version 2: the same, and node 3 removed at index 40. */
    uint8_t v2[sizeof(v1) + 9 + 16] = {0};
    memcpy(v2, v1, sizeof(v1));
    v2[0] = 2;
    v2[sizeof(v1) + 8] = 1;
    v2[sizeof(v1) + 9] = 3;
    v2[sizeof(v1) + 17] = 40;
    b = (struct rfs_buf){v2, sizeof(v2)};
    assert_int_equal(cons_conf_decode(&b, &d), 0);
    assert_int_equal(d.servers[0].data_id, 0);
    rfs_index_t at;
    assert_true(cons_conf_removed(&d, 3, &at));
    assert_int_equal(at, 40);

    /* Version 3: one id recorded, one unknown, a removal kept. */
    struct cons_conf a;
    memset(&a, 0, sizeof(a));
    a.n = 2;
    a.servers[0] = (struct cons_server){.id = 7, .role = CONS_VOTER,
                                        .addr = "h7:1",
                                        .data_id = 0x8877665544332211ull};
    a.servers[1] = (struct cons_server){.id = 9, .role = CONS_LEARNER,
                                        .addr = "h9:1"};
    cons_conf_add_removed(&a, 3, 40);
    assert_int_equal(cons_conf_encode(&a, &b), 0);
    assert_int_equal(((uint8_t *)b.base)[0], 3);
    assert_int_equal(cons_conf_decode(&b, &d), 0);
    assert_int_equal(d.n, 2);
    assert_true(d.servers[0].data_id == 0x8877665544332211ull);
    assert_int_equal(d.servers[1].data_id, 0);
    assert_string_equal(d.servers[1].addr, "h9:1");
    assert_true(cons_conf_removed(&d, 3, &at));
    assert_int_equal(at, 40);
    for (size_t cut = 0; cut < b.len; cut++) {
        struct rfs_buf t = {b.base, cut};
        assert_int_equal(cons_conf_decode(&t, &d), RFS_EMALFORMED);
    }
    rfs_free(b.base);
    /* Without a removal the removed section is still there (empty). */
    memset(&a.removed, 0, sizeof(a.removed));
    a.n_removed = 0;
    assert_int_equal(cons_conf_encode(&a, &b), 0);
    assert_int_equal(cons_conf_decode(&b, &d), 0);
    assert_true(d.servers[0].data_id == 0x8877665544332211ull);
    assert_int_equal(d.n_removed, 0);
    rfs_free(b.base);
    /* An unknown later version is malformed, not misread. */
    v1[0] = 6;
    b = (struct rfs_buf){v1, sizeof(v1)};
    assert_int_equal(cons_conf_decode(&b, &d), RFS_EMALFORMED);
}

/* Record ids (one change for several): k ids from pairs id, data id. */
static int record(struct cons_node *n, rfs_index_t *at, unsigned k, ...)
{
    struct cons_data_id ids[8];
    va_list ap;
    va_start(ap, k);
    for (unsigned i = 0; i < k; i++) {
        ids[i].id = va_arg(ap, rfs_nodeid_t);
        ids[i].data_id = va_arg(ap, uint64_t);
    }
    va_end(ap);
    return cons_node_record_data_ids(n, ids, k, at);
}

/* The leader records members' data ids as a configuration change: one
 * change at a time, several ids in one, never over a recorded id, members
 * only; followers learn them from the log, and later changes keep them. */
static void test_conf_record_data_id(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    struct cons_node *l = c->nodes[1].n;
    rfs_index_t at = 0;
    assert_int_equal(record(c->nodes[2].n, &at, 1, (rfs_nodeid_t)3,
                            (uint64_t)0x33),
                     RFS_ENOTLEADER);
    assert_int_equal(record(l, &at, 2, (rfs_nodeid_t)3, (uint64_t)0x33,
                            (rfs_nodeid_t)1, (uint64_t)0x11),
                     0);
    assert_int_equal(record(l, NULL, 1, (rfs_nodeid_t)2, (uint64_t)0x22),
                     RFS_EBUSY);
    cl_tick(c, 1, 2);
    cl_deliver(c);
    cl_tick(c, 1, 2);
    cl_deliver(c);
    assert_true(cl_status(c, 1).commit >= at);
    const struct cons_conf *f = cons_node_conf(c->nodes[2].n);
    assert_true(cons_conf_get(f, 3)->data_id == 0x33);
    assert_true(cons_conf_get(f, 1)->data_id == 0x11);
    assert_int_equal(cons_conf_get(f, 2)->data_id, 0);
    assert_int_equal(record(l, NULL, 1, (rfs_nodeid_t)3, (uint64_t)0x34),
                     RFS_EBADCONF);
    assert_int_equal(record(l, NULL, 1, (rfs_nodeid_t)3, (uint64_t)0x33),
                     RFS_EBADCONF);
    assert_int_equal(record(l, NULL, 1, (rfs_nodeid_t)2, (uint64_t)0),
                     RFS_EBADCONF);
    assert_int_equal(record(l, NULL, 2, (rfs_nodeid_t)2, (uint64_t)0x22,
                            (rfs_nodeid_t)8, (uint64_t)0x88),
                     RFS_EBADCONF);
    assert_int_equal(record(l, NULL, 0), RFS_EBADCONF);
    /* Another change keeps the records. */
    assert_int_equal(cons_node_change(l, CONS_ADD_LEARNER, 4, "n4", &at), 0);
    cl_tick(c, 1, 2);
    cl_deliver(c);
    cl_tick(c, 1, 2);
    cl_deliver(c);
    f = cons_node_conf(c->nodes[3].n);
    assert_non_null(cons_conf_get(f, 4));
    assert_int_equal(cons_conf_get(f, 4)->data_id, 0);
    assert_true(cons_conf_get(f, 3)->data_id == 0x33);
}

/* ------------------------------------------------------------------------ */
/* Snapshots, durability, restart                                           */

/* A 3-node cluster led by node 1 with snapshot chunks of `chunk` bytes, and
 * `entries` entries committed while node 3 was cut off. */
static void lagging_follower(struct cl *c, size_t chunk, int entries,
                             const char *data)
{
    struct cons_options o;
    cons_options_default(&o, 1);
    o.snap_chunk_bytes = chunk;
    cl_init_opts(c, 3, 0, &o);
    cl_elect(c, 1);
    cl_isolate(c, 3, true);
    for (int i = 0; i < entries; i++) {
        cl_propose(c, 1, data);
        cl_deliver(c);
    }
}

/* A follower behind the compacted log gets the snapshot in chunks, installs
 * it, and continues from the log. The snapshot carries the configuration. */
static void test_snapshot_sent_to_lagging_follower(void **state)
{
    (void)state;
    struct cl c;
    lagging_follower(&c, 32, 20, "s");
    rfs_index_t applied = c.nodes[1].applied;
    struct cons_snap_meta meta;
    assert_int_equal(cons_node_snapshot_taken(c.nodes[1].n, applied, 100, 0,
                                              &meta),
                     0);
    assert_int_equal(meta.index, applied);
    assert_int_equal(meta.conf.n, 3);
    assert_int_equal(cl_status(&c, 1).first_index, applied + 1);
    cl_propose(&c, 1, "tail");
    cl_deliver(&c);
    cl_isolate(&c, 3, false);
    unsigned before = c.sent[CONS_MSG_SNAPSHOT];
    for (int i = 0; i < 20 && cl_status(&c, 3).commit < applied + 1; i++) {
        cl_tick(&c, 1, 1);
        cl_deliver(&c);
    }
    assert_true(c.sent[CONS_MSG_SNAPSHOT] - before >= 4); /* 100 / 32. */
    assert_int_equal(cl_status(&c, 3).snap_index, applied);
    assert_int_equal(cl_status(&c, 3).commit, applied + 1);
    assert_string_equal(c.nodes[3].last_applied, "tail");
    cl_close(&c);
}

/* A follower that crashes halfway through receiving a snapshot gets it
 * again from the start; the leader is never stuck in snapshot state
 * (RAFT-PITFALLS, dgraph#2707). */
static void test_snapshot_resumes_after_follower_crash(void **state)
{
    (void)state;
    struct cl c;
    lagging_follower(&c, 10, 5, "z");
    rfs_index_t applied = c.nodes[1].applied;
    assert_int_equal(cons_node_snapshot_taken(c.nodes[1].n, applied, 95, 0,
                                              NULL),
                     0);
    cl_isolate(&c, 3, false);
    cl_tick(&c, 1, 1);
    /* Let two chunks through, then crash the receiver. */
    for (int i = 0; i < 6 && cl_deliver_one(&c); i++) {
    }
    cl_crash(&c, 3);
    cl_drop_all(&c);
    cl_restart(&c, 3);
    for (int i = 0; i < 40 && cl_status(&c, 3).snap_index < applied; i++) {
        cl_tick(&c, 1, 1);
        cl_deliver(&c);
    }
    assert_int_equal(cl_status(&c, 3).snap_index, applied);
    struct cons_progress p;
    assert_int_equal(cons_node_progress(c.nodes[1].n, 3, &p), 0);
    assert_int_equal(p.match, applied);
    assert_int_not_equal(p.state, CONS_PROGRESS_SNAPSHOT);
    cl_close(&c);
}

/* A burst of rejects answering one gap (the window's chunks that overtook
 * each other, or old replies) makes the leader go back and resend the
 * window once, not once per reply: each resent chunk draws another reply,
 * and with many chunks in flight that fed on itself until the simulator's
 * larger images never finished. */
static void test_snapshot_rejects_resend_window_once(void **state)
{
    (void)state;
    struct cl c;
    lagging_follower(&c, 10, 5, "r");
    rfs_index_t applied = c.nodes[1].applied;
    assert_int_equal(cons_node_snapshot_taken(c.nodes[1].n, applied, 95, 0,
                                              NULL),
                     0);
    cl_isolate(&c, 3, false);
    struct cons_progress p;
    for (int i = 0; i < 10; i++) {
        cl_tick(&c, 1, 1);
        /* Until the leader starts the transfer; its chunks are lost. */
        while (cl_deliver_one(&c)) {
            assert_int_equal(cons_node_progress(c.nodes[1].n, 3, &p), 0);
            if (p.state == CONS_PROGRESS_SNAPSHOT) {
                break;
            }
        }
        if (p.state == CONS_PROGRESS_SNAPSHOT) {
            break;
        }
    }
    cl_drop_all(&c);
    assert_int_equal(p.state, CONS_PROGRESS_SNAPSHOT);
    unsigned before = c.sent[CONS_MSG_SNAPSHOT];
    struct cons_msg r = {.type = CONS_MSG_SNAPSHOT_RESP, .from = 3, .to = 1,
                         .term = cl_status(&c, 1).term, .reject = true,
                         .offset = 0, .index = applied};
    for (int i = 0; i < 20; i++) {
        cl_step(&c, &r);
    }
    unsigned resent = c.sent[CONS_MSG_SNAPSHOT] - before;
    assert_true(resent > 0);
    assert_true(resent <= 10); /* One window at most (95 / 10 chunks). */
    /* And the transfer still completes. */
    for (int i = 0; i < 40 && cl_status(&c, 3).snap_index < applied; i++) {
        cl_tick(&c, 1, 1);
        cl_deliver(&c);
    }
    assert_int_equal(cl_status(&c, 3).snap_index, applied);
    cl_close(&c);
}

/* A snapshot cannot be taken past what was handed out to apply. */
static void test_snapshot_only_of_applied_state(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    assert_int_equal(cons_node_snapshot_taken(c->nodes[1].n, 99, 10, 0, NULL),
                     RFS_EUNAVAIL);
    assert_int_equal(cons_node_snapshot_taken(c->nodes[1].n, 2, 0, 0, NULL),
                     -EINVAL);
}

/* A completion for writes of a log suffix that was since replaced marks
 * nothing durable (RAFT-PITFALLS 10, etcd's async-storage ABA case). */
static void test_stale_persist_completion_ignored(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_hold(c, 2, true);
    struct cons_entry e[2] = {
        {.term = 2, .index = 2, .type = CONS_ENTRY_NORMAL},
        {.term = 2, .index = 3, .type = CONS_ENTRY_NORMAL},
    };
    struct cons_msg m = {.type = CONS_MSG_APPEND, .from = 1, .to = 2,
                         .term = 2, .prev_index = 1, .prev_term = 1,
                         .entries = e, .n_entries = 2};
    cl_step(c, &m);
    struct cons_entry x = {.term = 3, .index = 2, .type = CONS_ENTRY_NORMAL};
    struct cons_msg p = {.type = CONS_MSG_APPEND, .from = 3, .to = 2,
                         .term = 3, .prev_index = 1, .prev_term = 1,
                         .entries = &x, .n_entries = 1};
    cl_step(c, &p);
    assert_int_equal(cl_status(c, 2).stable, 1);
    cl_release_one(c, 2); /* The first write: entries 2..3 of term 2. */
    assert_int_equal(cl_status(c, 2).stable, 1);
    cl_release_one(c, 2);
    assert_int_equal(cl_status(c, 2).stable, 2);
}

/* The ABA case the (term, index) tag alone misses: a write of (2,2),(2,3)
 * is in flight when a term-3 leader cuts index 3 for (3,3), and a term-4
 * leader, whose log holds (2,3), cuts that again and restores (2,3). The
 * first write's completion then names an entry the log holds, but the cut
 * queued after it may reach the disk before the restoring write: it proves
 * index 2 durable, not 3 (RAFT-PITFALLS 10). */
static void test_persist_completion_before_cut_and_restore(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_hold(c, 2, true);
    struct cons_entry e[2] = {
        {.term = 2, .index = 2, .type = CONS_ENTRY_NORMAL},
        {.term = 2, .index = 3, .type = CONS_ENTRY_NORMAL},
    };
    struct cons_msg m = {.type = CONS_MSG_APPEND, .from = 1, .to = 2,
                         .term = 2, .prev_index = 1, .prev_term = 1,
                         .entries = e, .n_entries = 2};
    cl_step(c, &m);
    cl_process(c, 2);
    struct cons_entry x = {.term = 3, .index = 3, .type = CONS_ENTRY_NORMAL};
    struct cons_msg p = {.type = CONS_MSG_APPEND, .from = 3, .to = 2,
                         .term = 3, .prev_index = 2, .prev_term = 2,
                         .entries = &x, .n_entries = 1};
    cl_step(c, &p);
    cl_process(c, 2);
    struct cons_entry y[2] = {
        {.term = 2, .index = 3, .type = CONS_ENTRY_NORMAL},
        {.term = 4, .index = 4, .type = CONS_ENTRY_NORMAL},
    };
    struct cons_msg q = {.type = CONS_MSG_APPEND, .from = 1, .to = 2,
                         .term = 4, .prev_index = 2, .prev_term = 2,
                         .entries = y, .n_entries = 2};
    cl_step(c, &q);
    cl_process(c, 2);
    assert_int_equal(cl_status(c, 2).last_index, 4);
    assert_int_equal(cl_status(c, 2).stable, 1);
    cl_release_one(c, 2); /* (2,2),(2,3): the cut at 3 is still queued. */
    assert_int_equal(cl_status(c, 2).stable, 2);
    cl_release_one(c, 2); /* (3,3): gone from the log, proves nothing. */
    assert_int_equal(cl_status(c, 2).stable, 2);
    cl_release_one(c, 2); /* (2,3),(4,4). */
    assert_int_equal(cl_status(c, 2).stable, 4);
}

/* Acks leave only after the entries they acknowledge are durable
 * (RAFT-PITFALLS 1). */
static void test_append_ack_after_durable(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_hold(c, 2, true);
    struct cons_entry e = {.term = 2, .index = 2, .type = CONS_ENTRY_NORMAL};
    struct cons_msg m = {.type = CONS_MSG_APPEND, .from = 1, .to = 2,
                         .term = 2, .prev_index = 1, .prev_term = 1,
                         .entries = &e, .n_entries = 1};
    cl_step(c, &m);
    assert_null(cl_find(c, CONS_MSG_APPEND_RESP, 2, 1));
    cl_release(c, 2);
    assert_non_null(cl_find(c, CONS_MSG_APPEND_RESP, 2, 1));
}

/* A restarted node resumes from its disk: term, vote and log, with commit
 * never below what was applied (RAFT-PITFALLS 6). */
static void test_restart_resumes_from_disk(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    cl_propose(c, 1, "kept");
    cl_deliver(c);
    struct cons_status before = cl_status(c, 2);
    cl_crash(c, 2);
    cl_restart(c, 2);
    struct cons_status after = cl_status(c, 2);
    assert_int_equal(after.term, before.term);
    assert_int_equal(after.last_index, before.last_index);
    assert_int_equal(after.last_term, before.last_term);
    cl_tick(c, 1, 2);
    cl_deliver(c);
    assert_string_equal(c->nodes[2].last_applied, "kept");
}

/* Inconsistent loaded state is refused, not guessed at. */
static void test_restart_refuses_corrupt_state(void **state)
{
    (void)state;
    struct cons_options o;
    cons_options_default(&o, 1);
    struct cons_entry e[2] = {
        {.term = 1, .index = 1, .type = CONS_ENTRY_NOOP},
        {.term = 1, .index = 3, .type = CONS_ENTRY_NOOP},
    };
    struct cons_load l;
    memset(&l, 0, sizeof(l));
    l.entries = e;
    l.n_entries = 2;
    struct cons_node *n = NULL;
    assert_int_equal(cons_node_new(&o, &l, &n), RFS_ECORRUPT);
    e[1].index = 2;
    e[1].term = 0; /* Terms going down. */
    assert_int_equal(cons_node_new(&o, &l, &n), RFS_ECORRUPT);
    e[1].term = 1;
    l.applied = 5; /* Applied past the log. */
    assert_int_equal(cons_node_new(&o, &l, &n), RFS_ECORRUPT);
    l.applied = 2;
    l.hs.commit = 1;
    assert_int_equal(cons_node_new(&o, &l, &n), 0);
    struct cons_status st;
    cons_node_status(n, &st);
    assert_int_equal(st.commit, 2);
    cons_node_free(n);
    o.election_ticks = 1;
    assert_int_equal(cons_node_new(&o, &l, &n), -EINVAL);
}

/* A hard state whose term is behind the last log entry's lost a term/vote
 * write: its vote in that term is forgotten, and starting would let it vote
 * twice. Refused, except for a founder holding only the bootstrap entry. */
static void test_restart_refuses_term_behind_log(void **state)
{
    (void)state;
    struct cons_options o;
    cons_options_default(&o, 1);
    struct cons_entry e[2] = {
        {.term = 1, .index = 1, .type = CONS_ENTRY_NOOP},
        {.term = 4, .index = 2, .type = CONS_ENTRY_NOOP},
    };
    struct cons_load l;
    memset(&l, 0, sizeof(l));
    l.entries = e;
    l.n_entries = 2;
    l.hs.term = 3;
    l.hs.vote = 2;
    struct cons_node *n = NULL;
    assert_int_equal(cons_node_new(&o, &l, &n), RFS_ECORRUPT);
    assert_null(n);
    l.hs.term = 0; /* No hard state at all is no better. */
    assert_int_equal(cons_node_new(&o, &l, &n), RFS_ECORRUPT);
    /* The same behind a snapshot of term 4. */
    l.n_entries = 0;
    l.snap.index = 2;
    l.snap.term = 4;
    l.applied = 2;
    l.hs.term = 3;
    assert_int_equal(cons_node_new(&o, &l, &n), RFS_ECORRUPT);
    l.hs.term = 4;
    assert_int_equal(cons_node_new(&o, &l, &n), 0);
    cons_node_free(n);
    n = NULL;
    /* A founder: the bootstrap entry, no hard state written yet. */
    memset(&l, 0, sizeof(l));
    l.entries = e;
    l.n_entries = 1;
    assert_int_equal(cons_node_new(&o, &l, &n), 0);
    cons_node_free(n);
}

/* ------------------------------------------------------------------------ */
/* Observers                                                                 */

/* Node 4 joins the three voters of c as an observer, through leader 1's
 * change (the path `raftfs members add --observer` takes), and catches up. */
static void add_observer4(struct cl *c)
{
    c->n = 4; /* Node 4 starts empty: it joins. */
    struct cons_options o = c->opts;
    o.id = 4;
    struct cons_load l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(cons_node_new(&o, &l, &c->nodes[4].n), 0);
    c->nodes[4].up = true;
    assert_int_equal(cons_node_change(c->nodes[1].n, CONS_ADD_OBSERVER, 4,
                                      "n4", NULL),
                     0);
    cl_process(c, 1);
    for (int i = 0; i < 10; i++) {
        cl_tick(c, 1, 1);
        cl_deliver(c);
    }
    assert_int_equal(cl_status(c, 4).commit, cl_status(c, 1).commit);
    const struct cons_server *s =
        cons_conf_get(cons_node_conf(c->nodes[4].n), 4);
    assert_non_null(s);
    assert_int_equal(s->role, CONS_OBSERVER);
}

/* An observer cut off from its leader never campaigns, at any term. */
static void test_observer_never_campaigns(void **state)
{
    (void)state;
    struct cl c;
    cl_init(&c, 3, 0);
    cl_elect(&c, 1);
    add_observer4(&c);
    unsigned sent = c.sent[CONS_MSG_PREVOTE] + c.sent[CONS_MSG_VOTE];
    rfs_term_t term = cl_status(&c, 4).term;
    cl_isolate(&c, 4, true);
    cl_tick(&c, 4, 200);
    assert_int_equal(cl_status(&c, 4).role, CONS_FOLLOWER);
    assert_int_equal(cl_status(&c, 4).term, term);
    assert_int_equal(c.sent[CONS_MSG_PREVOTE] + c.sent[CONS_MSG_VOTE], sent);
    cl_close(&c);
}

/* With both other voters cut off, the leader and the observer hold a new
 * entry (two of four members), yet it never commits, no read index is
 * confirmed, and the leader's lease runs out: the observer's acks count
 * for nothing. */
static void test_observer_never_counts_toward_quorum(void **state)
{
    (void)state;
    struct cl c;
    lease_cluster(&c);
    add_observer4(&c);
    rfs_index_t before = cl_status(&c, 1).commit;
    cl_cut(&c, 1, 2, true);
    cl_cut(&c, 1, 3, true);
    assert_int_equal(cl_propose(&c, 1, "x"), 0);
    cl_process(&c, 1);
    cl_deliver(&c);
    assert_int_equal(cl_status(&c, 4).last_index, cl_status(&c, 1).last_index);
    for (unsigned t = 0; t < 2 * c.opts.election_ticks; t++) {
        cl_tick(&c, 1, 1);
        cl_tick(&c, 4, 1);
        cl_deliver(&c);
        assert_int_equal(cl_status(&c, 1).commit, before);
    }
    /* Past the lease: a read needs a round only the observer answers. */
    cons_node_read_index(c.nodes[1].n, 5);
    for (unsigned t = 0; t < 2 * c.opts.election_ticks; t++) {
        cl_tick(&c, 1, 1);
        cl_tick(&c, 4, 1);
        cl_deliver(&c);
    }
    assert_int_equal(c.nodes[1].n_reads, 0);
    assert_int_equal(cl_status(&c, 1).commit, before);
    cl_close(&c);
}

/* Follower leases are never granted to an observer: its promise would hold
 * every commit until it acked, so an observer cut off (or killed) would
 * stall writes for a lease's length. Cut off, it costs nothing: the next
 * entry commits at once on the voters' acks. */
static void test_observer_never_holds_follower_lease(void **state)
{
    (void)state;
    struct cl c;
    flease_cluster(&c);
    add_observer4(&c);
    for (int round = 0; round < 2; round++) {
        cl_tick(&c, 1, c.opts.heartbeat_ticks);
        cl_deliver(&c);
    }
    assert_int_not_equal(cons_node_lease_end(c.nodes[2].n), 0);
    assert_int_equal(cons_node_lease_end(c.nodes[4].n), 0);
    rfs_index_t before = cl_status(&c, 1).commit;
    cl_cut(&c, 1, 4, true);
    assert_int_equal(cl_propose(&c, 1, "x"), 0);
    cl_process(&c, 1);
    cl_deliver(&c);
    assert_true(cl_status(&c, 1).commit > before);
    cl_close(&c);
}

/* An observer is one for good: neither promoted nor demoted (the host's
 * promote_learners relies on the first), and once removed its id never
 * comes back, as an observer or as a learner (RAFT-PITFALLS 5). */
static void test_observer_never_promoted_nor_readded(void **state)
{
    (void)state;
    struct cl c;
    cl_init(&c, 3, 0);
    cl_elect(&c, 1);
    add_observer4(&c);
    struct cons_node *l = c.nodes[1].n;
    assert_int_equal(cons_node_change(l, CONS_PROMOTE, 4, NULL, NULL),
                     RFS_EBADCONF);
    assert_int_equal(cons_node_change(l, CONS_DEMOTE, 4, NULL, NULL),
                     RFS_EBADCONF);
    assert_int_equal(cons_node_transfer(l, 4), RFS_EBADCONF);
    assert_int_equal(cons_node_change(l, CONS_ADD_OBSERVER, 4, "n4", NULL),
                     RFS_EBADCONF);
    assert_int_equal(cons_node_change(l, CONS_REMOVE, 4, NULL, NULL), 0);
    cl_process(&c, 1);
    cl_deliver(&c);
    cl_tick(&c, 1, 1);
    cl_deliver(&c);
    assert_int_equal(cons_node_change(l, CONS_ADD_OBSERVER, 4, "n4", NULL),
                     RFS_EIDREMOVED);
    assert_int_equal(cons_node_change(l, CONS_ADD_LEARNER, 4, "n4", NULL),
                     RFS_EIDREMOVED);
    cl_close(&c);
}

/* The observer role is carried as version 4, the only version whose role
 * byte may be 3: the same bytes labelled version 3 are refused, so a
 * configuration of an older build never reads as holding an observer. */
static void test_conf_codec_observer(void **state)
{
    (void)state;
    struct cons_conf a;
    memset(&a, 0, sizeof(a));
    a.n = 2;
    a.servers[0] = (struct cons_server){.id = 7, .role = CONS_VOTER};
    strcpy(a.servers[0].addr, "h7:1");
    a.servers[1] = (struct cons_server){.id = 9, .role = CONS_OBSERVER};
    strcpy(a.servers[1].addr, "h9:1");
    struct rfs_buf b;
    assert_int_equal(cons_conf_encode(&a, &b), 0);
    uint8_t *p = b.base;
    assert_int_equal(p[0], 4);
    struct cons_conf d;
    assert_int_equal(cons_conf_decode(&b, &d), 0);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.servers[0].role, CONS_VOTER);
    assert_int_equal(d.servers[1].role, CONS_OBSERVER);
    assert_string_equal(d.servers[1].addr, "h9:1");
    assert_int_equal(cons_conf_voters(&d), 1);
    for (size_t cut = 0; cut < b.len; cut++) {
        struct rfs_buf t = {p, cut};
        assert_int_equal(cons_conf_decode(&t, &d), RFS_EMALFORMED);
    }
    p[0] = 3;
    assert_int_equal(cons_conf_decode(&b, &d), RFS_EMALFORMED);
    p[0] = 5;
    assert_int_equal(cons_conf_decode(&b, &d), RFS_EMALFORMED);
    rfs_free(b.base);
    /* Without an observer, nothing changes on the wire. */
    a.servers[1].role = CONS_LEARNER;
    assert_int_equal(cons_conf_encode(&a, &b), 0);
    assert_int_equal(((uint8_t *)b.base)[0], 1);
    rfs_free(b.base);
}

/* Version 5 carries each member's signing key after its data folder id;
 * a configuration without keys still writes version 3 or 4, and those
 * read with every key unknown. */
static void test_conf_codec_keys(void **state)
{
    (void)state;
    struct cons_conf a;
    memset(&a, 0, sizeof(a));
    a.n = 2;
    a.servers[0] = (struct cons_server){.id = 7, .role = CONS_VOTER,
                                        .addr = "h7:1", .data_id = 0x77};
    a.servers[1] = (struct cons_server){.id = 9, .role = CONS_OBSERVER,
                                        .addr = "h9:1"};
    struct rfs_buf b;
    struct cons_conf d;
    assert_int_equal(cons_conf_encode(&a, &b), 0);
    assert_int_equal(((uint8_t *)b.base)[0], 4);
    assert_int_equal(cons_conf_decode(&b, &d), 0);
    assert_int_equal(d.servers[0].key[0], 0);
    rfs_free(b.base);
    for (unsigned i = 0; i < CONS_KEY_BYTES; i++) {
        a.servers[0].key[i] = (uint8_t)(0xa0 + i);
    }
    assert_int_equal(cons_conf_encode(&a, &b), 0);
    uint8_t *p = b.base;
    assert_int_equal(p[0], 5);
    assert_int_equal(cons_conf_decode(&b, &d), 0);
    assert_memory_equal(d.servers[0].key, a.servers[0].key, CONS_KEY_BYTES);
    uint8_t zero[CONS_KEY_BYTES] = {0};
    assert_memory_equal(d.servers[1].key, zero, CONS_KEY_BYTES);
    assert_int_equal(d.servers[1].role, CONS_OBSERVER);
    assert_true(d.servers[0].data_id == 0x77);
    for (size_t cut = 0; cut < b.len; cut++) {
        struct rfs_buf t = {p, cut};
        assert_int_equal(cons_conf_decode(&t, &d), RFS_EMALFORMED);
    }
    p[0] = 6; /* Unknown later version: malformed, not misread. */
    assert_int_equal(cons_conf_decode(&b, &d), RFS_EMALFORMED);
    rfs_free(b.base);
}

/* Keys are recorded like data folder ids: by the leader, in one change,
 * once; never replaced, never all zero, members only. */
static void test_conf_record_keys(void **state)
{
    struct cl *c = &((struct fixture *)*state)->c;
    cl_elect(c, 1);
    struct cons_node *l = c->nodes[1].n;
    struct cons_key k[2];
    memset(k, 0, sizeof(k));
    k[0].id = 3;
    k[0].key[0] = 0x33;
    k[1].id = 1;
    k[1].key[31] = 0x11;
    rfs_index_t at = 0;
    assert_int_equal(cons_node_record_keys(c->nodes[2].n, k, 1, &at),
                     RFS_ENOTLEADER);
    assert_int_equal(cons_node_record_keys(l, k, 2, &at), 0);
    assert_int_equal(cons_node_record_keys(l, k, 1, NULL), RFS_EBUSY);
    cl_tick(c, 1, 2);
    cl_deliver(c);
    cl_tick(c, 1, 2);
    cl_deliver(c);
    assert_true(cl_status(c, 1).commit >= at);
    const struct cons_conf *f = cons_node_conf(c->nodes[2].n);
    assert_int_equal(cons_conf_get(f, 3)->key[0], 0x33);
    assert_int_equal(cons_conf_get(f, 1)->key[31], 0x11);
    assert_int_equal(cons_conf_get(f, 2)->key[0], 0);
    /* Recorded: neither replaced nor recorded again. */
    k[0].key[0] = 0x34;
    assert_int_equal(cons_node_record_keys(l, k, 1, NULL), RFS_EBADCONF);
    k[0].key[0] = 0x33;
    assert_int_equal(cons_node_record_keys(l, k, 1, NULL), RFS_EBADCONF);
    struct cons_key z = {.id = 2};
    assert_int_equal(cons_node_record_keys(l, &z, 1, NULL), RFS_EBADCONF);
    z.key[5] = 1;
    z.id = 8;
    assert_int_equal(cons_node_record_keys(l, &z, 1, NULL), RFS_EBADCONF);
    assert_int_equal(cons_node_record_keys(l, k, 0, NULL), RFS_EBADCONF);
    z.id = 2;
    assert_int_equal(cons_node_record_keys(l, &z, 1, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Observers fed by gossip (gossip_observers)                                */

/* Entries in queued APPENDs to node `to`, then delivered. */
static unsigned deliver_counting(struct cl *c, unsigned to)
{
    unsigned entries = 0;
    for (int round = 0; round < 50 && c->q != NULL; round++) {
        for (const struct cl_msg *m = c->q; m != NULL; m = m->next) {
            if (m->m.type == CONS_MSG_APPEND && m->m.to == to) {
                entries += m->m.n_entries;
            }
        }
        if (!cl_deliver_one(c)) {
            break;
        }
    }
    return entries;
}

/* A cluster of three voters, all with gossip_observers, led by node 1,
 * joined by observer 4. */
static void gossip_cluster(struct cl *c)
{
    struct cons_options o;
    cons_options_default(&o, 1);
    o.gossip_observers = true;
    cl_init_opts(c, 3, 0, &o);
    cl_elect(c, 1);
    add_observer4(c);
}

/* With gossip_observers, the leader sends an observer that holds the
 * configuration no entry, however many commit (only one APPEND without
 * entries per heartbeat interval, no commit-only APPEND per commit); that
 * APPEND's answer tells the leader how far gossip (here the test, through
 * cons_node_commit_proven) brought it. */
static void test_gossip_leader_feeds_observers_nothing(void **state)
{
    (void)state;
    struct cl c;
    gossip_cluster(&c);
    rfs_index_t conf = cl_status(&c, 4).last_index;
    unsigned to4 = 0;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(cl_propose(&c, 1, "x"), 0);
        cl_process(&c, 1);
        to4 += deliver_counting(&c, 4);
    }
    for (unsigned t = 0; t < 4 * c.opts.heartbeat_ticks; t++) {
        cl_tick(&c, 1, 1);
        cl_tick(&c, 4, 1);
        to4 += deliver_counting(&c, 4);
    }
    rfs_index_t last = cl_status(&c, 1).last_index;
    assert_int_equal(cl_status(&c, 1).commit, last);
    assert_int_equal(cl_status(&c, 2).commit, last);
    assert_int_equal(to4, 0);
    assert_int_equal(cl_status(&c, 4).last_index, conf);

    /* Gossip brings them: the leader learns it on its next heartbeat. */
    struct cons_entry e[32];
    unsigned k = 0;
    for (rfs_index_t i = conf + 1; i <= last; i++) {
        e[k++] = *cons_node_entry(c.nodes[1].n, i);
    }
    assert_int_equal(cons_node_commit_proven(c.nodes[4].n, e, k), 0);
    cl_process(&c, 4);
    assert_int_equal(cl_status(&c, 4).commit, last);
    assert_int_equal(c.nodes[4].applied, last);
    for (unsigned t = 0; t < 2 * c.opts.heartbeat_ticks; t++) {
        cl_tick(&c, 1, 1);
        deliver_counting(&c, 4);
    }
    struct cons_progress p;
    assert_int_equal(cons_node_progress(c.nodes[1].n, 4, &p), 0);
    assert_int_equal(p.match, last);
    cl_close(&c);
}

/* An observer that learns a newer term from a proven entry (the new
 * leader's first one, brought by gossip before that leader's first
 * heartbeat reached it) knows no leader until that heartbeat: a proposal
 * then is refused (RFS_ENOLEADER) and the update says the role changed,
 * and the node's requests (consensus/requests.c) are sent again at each
 * role change and every retry period until commit_timeout, so a write
 * waits rather than fails. Within one heartbeat interval of the new
 * leader the observer knows it, says so, and a proposal forwarded then
 * commits. */
static void test_gossip_observer_learns_new_leader(void **state)
{
    (void)state;
    struct cl c;
    gossip_cluster(&c);
    for (unsigned t = 0; t < 2 * c.opts.heartbeat_ticks; t++) {
        cl_tick(&c, 1, 1);
        cl_deliver(&c);
    }
    assert_int_equal(cl_status(&c, 4).leader, 1);
    cl_isolate(&c, 1, true);
    cl_isolate(&c, 4, true);
    unsigned l = 0;
    for (unsigned t = 0; t < 10 * c.opts.election_ticks &&
                         (l = cl_leader(&c)) == 1; t++) {
        cl_tick(&c, 2, 1);
        cl_tick(&c, 3, 1);
        cl_deliver(&c);
    }
    assert_true(l == 2 || l == 3);
    for (unsigned t = 0; t < 2 * c.opts.heartbeat_ticks; t++) {
        cl_tick(&c, l, 1);
        cl_deliver(&c);
    }
    struct cons_status st2 = cl_status(&c, l);
    assert_int_equal(st2.role, CONS_LEADER);
    assert_int_equal(st2.commit, st2.last_index);
    assert_true(st2.term > cl_status(&c, 4).term);

    struct cons_entry e[8];
    unsigned k = 0;
    for (rfs_index_t i = cl_status(&c, 4).last_index + 1; i <= st2.commit;
         i++) {
        e[k++] = *cons_node_entry(c.nodes[l].n, i);
    }
    assert_true(k > 0);
    assert_int_equal(cons_node_commit_proven(c.nodes[4].n, e, k), 0);
    c.nodes[4].told_leader = 99;
    cl_process(&c, 4);
    assert_int_equal(cl_status(&c, 4).term, st2.term);
    assert_int_equal(cl_status(&c, 4).leader, RFS_NODE_NONE);
    assert_int_equal(c.nodes[4].told_leader, RFS_NODE_NONE);
    assert_int_equal(cl_propose(&c, 4, "during the gap"), RFS_ENOLEADER);

    cl_isolate(&c, 4, false);
    for (unsigned t = 0; t < c.opts.heartbeat_ticks; t++) {
        cl_tick(&c, l, 1);
        cl_tick(&c, 4, 1);
        cl_deliver(&c);
    }
    assert_int_equal(cl_status(&c, 4).leader, l);
    assert_int_equal(c.nodes[4].told_leader, l);
    assert_int_equal(cl_propose(&c, 4, "after the gap"), 0);
    for (unsigned t = 0; t < 4; t++) {
        cl_deliver(&c);
        cl_process(&c, l);
    }
    assert_int_equal(cl_status(&c, l).last_index, st2.last_index + 1);
    cl_close(&c);
}

/* An observer behind the latest configuration entry is fed by the leader
 * up to that entry only (it holds the voters' keys its verifier needs), not
 * the entries after it. */
static void test_gossip_observer_fed_up_to_configuration(void **state)
{
    (void)state;
    struct cl c;
    gossip_cluster(&c);
    cl_isolate(&c, 4, true);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(cl_propose(&c, 1, "x"), 0);
        cl_process(&c, 1);
        cl_deliver(&c);
    }
    /* A configuration change (a learner), then more entries. */
    assert_int_equal(cons_node_change(c.nodes[1].n, CONS_ADD_LEARNER, 5,
                                      "n5", NULL),
                     0);
    cl_process(&c, 1);
    cl_deliver(&c);
    rfs_index_t conf = cl_status(&c, 1).last_index;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(cl_propose(&c, 1, "y"), 0);
        cl_process(&c, 1);
        cl_deliver(&c);
    }
    cl_isolate(&c, 4, false);
    for (unsigned t = 0; t < 6 * c.opts.heartbeat_ticks; t++) {
        cl_tick(&c, 1, 1);
        cl_tick(&c, 4, 1);
        deliver_counting(&c, 4);
    }
    assert_int_equal(cl_status(&c, 4).last_index, conf);
    assert_int_equal(cl_status(&c, 4).commit, conf);
    assert_true(cl_status(&c, 1).commit > conf);
    cl_close(&c);
}

/* An observer further behind than gossip_behind_max that gossip does not
 * move (its answers show the same match for gossip_stall_heartbeats
 * heartbeats) is fed by the leader until it is within, and no further:
 * then gossip takes over again. */
/* Three voters led by node 1 and observer 4 (gossip_behind_max 4, a stall
 * of 5 heartbeats), cut off while 12 entries commit: far behind. */
static void far_behind_observer(struct cl *c, bool images)
{
    struct cons_options o;
    cons_options_default(&o, 1);
    o.gossip_observers = true;
    o.gossip_behind_max = 4;
    o.gossip_stall_heartbeats = 5;
    o.gossip_images = images;
    cl_init_opts(c, 3, 0, &o);
    cl_elect(c, 1);
    add_observer4(c);
    cl_isolate(c, 4, true);
    for (int i = 0; i < 12; i++) {
        assert_int_equal(cl_propose(c, 1, "x"), 0);
        cl_process(c, 1);
        cl_deliver(c);
    }
}

static void test_gossip_far_behind_observer_fed(void **state)
{
    (void)state;
    struct cl c;
    far_behind_observer(&c, false);
    rfs_index_t commit = cl_status(&c, 1).commit;
    rfs_index_t before = cl_status(&c, 4).last_index;
    assert_true(before + 4 < commit);
    cl_isolate(&c, 4, false);
    unsigned to4 = 0;
    /* Its peers get the first heartbeats (none feeds it here). */
    for (unsigned t = 0; t < 3 * c.opts.heartbeat_ticks; t++) {
        cl_tick(&c, 1, 1);
        cl_tick(&c, 4, 1);
        to4 += deliver_counting(&c, 4);
    }
    assert_int_equal(to4, 0);
    for (unsigned t = 0; t < 15 * c.opts.heartbeat_ticks; t++) {
        cl_tick(&c, 1, 1);
        cl_tick(&c, 4, 1);
        to4 += deliver_counting(&c, 4);
    }
    assert_true(to4 > 0);
    assert_true(cl_status(&c, 4).commit + 4 >= commit);
    /* Within reach again: new entries are left to gossip. */
    rfs_index_t caught = cl_status(&c, 4).last_index;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cl_propose(&c, 1, "y"), 0);
        cl_process(&c, 1);
        to4 = deliver_counting(&c, 4);
        assert_int_equal(to4, 0);
    }
    assert_int_equal(cl_status(&c, 4).last_index, caught);
    cl_close(&c);
}

/* An observer further behind than gossip_behind_max that gossip moves
 * (here the test, through cons_node_commit_proven, a few entries per
 * heartbeat, as a voter's log answers its pulls) gets no entries from the
 * leader: only its probes. */
static void test_gossip_far_behind_observer_left_to_gossip(void **state)
{
    (void)state;
    struct cl c;
    struct cons_options o;
    cons_options_default(&o, 1);
    o.gossip_observers = true;
    o.gossip_behind_max = 4;
    o.gossip_stall_heartbeats = 3;
    cl_init_opts(&c, 3, 0, &o);
    cl_elect(&c, 1);
    add_observer4(&c);
    cl_isolate(&c, 4, true);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(cl_propose(&c, 1, "x"), 0);
        cl_process(&c, 1);
        cl_deliver(&c);
    }
    rfs_index_t commit = cl_status(&c, 1).commit;
    assert_true(cl_status(&c, 4).last_index + 4 < commit);
    cl_isolate(&c, 4, false);
    unsigned to4 = 0;
    for (unsigned t = 0; t < 40 * c.opts.heartbeat_ticks; t++) {
        rfs_index_t at = cl_status(&c, 4).last_index;
        if (t % c.opts.heartbeat_ticks == 0 && at < commit) {
            struct cons_entry e = *cons_node_entry(c.nodes[1].n, at + 1);
            assert_int_equal(cons_node_commit_proven(c.nodes[4].n, &e, 1),
                             0);
            cl_process(&c, 4);
        }
        cl_tick(&c, 1, 1);
        cl_tick(&c, 4, 1);
        to4 += deliver_counting(&c, 4);
    }
    assert_int_equal(to4, 0);
    assert_int_equal(cl_status(&c, 4).last_index, commit);
    cl_close(&c);
}

/* cons_node_commit_proven's rules: entries it already holds are skipped,
 * a gap or a leader is refused with -EINVAL, a proven entry that
 * contradicts a committed one is RFS_ECORRUPT, and an entry of a newer
 * term raises the node's term, persisted with it (a restart loads it). */
static void test_gossip_commit_proven_rules(void **state)
{
    (void)state;
    struct cl c;
    gossip_cluster(&c);
    struct cons_node *o = c.nodes[4].n;
    rfs_index_t last = cl_status(&c, 4).last_index;
    rfs_term_t term = cl_status(&c, 4).term;
    struct cons_entry held = *cons_node_entry(o, last);
    assert_int_equal(cons_node_commit_proven(o, &held, 1), 0);
    assert_int_equal(cl_status(&c, 4).last_index, last);
    struct cons_entry gap = {.term = term, .index = last + 2,
                             .type = CONS_ENTRY_NOOP};
    assert_int_equal(cons_node_commit_proven(o, &gap, 1), -EINVAL);
    struct cons_entry liar = held;
    liar.term = term + 1;
    assert_int_equal(cons_node_commit_proven(o, &liar, 1), RFS_ECORRUPT);
    assert_int_equal(cons_node_commit_proven(c.nodes[1].n, &held, 1),
                     -EINVAL);
    struct cons_entry next = {.term = term + 2, .index = last + 1,
                              .type = CONS_ENTRY_NOOP};
    assert_int_equal(cons_node_commit_proven(o, &next, 1), 0);
    cl_process(&c, 4);
    assert_int_equal(cl_status(&c, 4).term, term + 2);
    assert_int_equal(cl_status(&c, 4).commit, last + 1);
    cl_crash(&c, 4);
    cl_restart(&c, 4);
    assert_int_equal(cl_status(&c, 4).term, term + 2);
    assert_int_equal(cl_status(&c, 4).last_index, last + 1);
    cl_close(&c);
}

/* cons_node_install_image (an image fetched from a peer, issue 16): the
 * update holds one empty last chunk at the image's end, the log and commit
 * restart at its index,
 * and proven entries after it are taken; an image at or below the commit
 * index changes nothing (-EALREADY), a voter (leader or follower: the
 * reset would drop entries its acknowledgements counted toward a commit)
 * or an empty image is refused (-EINVAL). */
static void test_gossip_install_image(void **state)
{
    (void)state;
    struct cl c;
    gossip_cluster(&c);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(cl_propose(&c, 1, "x"), 0);
        cl_process(&c, 1);
        cl_deliver(&c);
    }
    for (unsigned t = 0; t < 2 * c.opts.heartbeat_ticks; t++) {
        cl_tick(&c, 1, 1);
        cl_deliver(&c);
    }
    struct cons_status st1 = cl_status(&c, 1);
    assert_int_equal(st1.commit, st1.last_index);
    struct cons_node *o = c.nodes[4].n;
    rfs_index_t at = st1.commit - 1;
    struct cons_snap_meta meta = {
        .index = at, .term = cons_node_entry(c.nodes[1].n, at)->term,
        .size = 1234};
    meta.conf = *cons_node_conf(c.nodes[1].n);

    struct cons_snap_meta zero = meta;
    zero.size = 0;
    assert_int_equal(cons_node_install_image(o, &zero), -EINVAL);
    assert_int_equal(cons_node_install_image(c.nodes[1].n, &meta), -EINVAL);
    struct cons_snap_meta ahead = meta;
    ahead.index = st1.commit + 1;
    assert_int_equal(cons_node_install_image(c.nodes[2].n, &ahead), -EINVAL);
    struct cons_snap_meta old = meta;
    old.index = cl_status(&c, 4).commit;
    assert_int_equal(cons_node_install_image(o, &old), -EALREADY);

    cl_process(&c, 4);
    assert_false(cons_node_has_update(o));
    assert_int_equal(cons_node_install_image(o, &meta), 0);
    assert_true(cons_node_has_update(o));
    struct cons_update u;
    cons_node_take_update(o, &u);
    assert_int_equal(u.n_chunks, 1);
    assert_true(u.chunks[0].last);
    assert_true(u.chunks[0].fetched);
    assert_int_equal(u.chunks[0].offset, 1234);
    assert_int_equal(u.chunks[0].data.len, 0);
    assert_int_equal(u.chunks[0].meta.index, at);
    assert_int_equal(u.chunks[0].meta.conf.n, meta.conf.n);
    assert_true(u.needs_persist);
    cons_node_persisted(o, &u.tag);
    struct cons_status st4 = cl_status(&c, 4);
    assert_int_equal(st4.commit, at);
    assert_int_equal(st4.last_index, at);
    assert_int_equal(st4.last_term, meta.term);
    assert_int_equal(st4.snap_index, at);

    /* The log goes on from the image. */
    struct cons_entry next = *cons_node_entry(c.nodes[1].n, at + 1);
    assert_int_equal(cons_node_commit_proven(o, &next, 1), 0);
    assert_int_equal(cl_status(&c, 4).commit, at + 1);
    cl_close(&c);
}

/* An observer whose match the leader compacted away, far behind: how many
 * SNAPSHOT messages the leader sends in the first `beats` heartbeat
 * intervals after it comes back, with gossip_images or without. */
static unsigned compacted_observer_snapshots(bool images, unsigned beats,
                                             bool install)
{
    struct cl c;
    far_behind_observer(&c, images);
    rfs_index_t applied = c.nodes[1].applied;
    struct cons_snap_meta meta;
    assert_int_equal(cons_node_snapshot_taken(c.nodes[1].n, applied, 100, 0,
                                              &meta),
                     0);
    assert_true(cl_status(&c, 4).last_index + 4 < applied);
    if (install) {
        /* An image from a peer: the probe at the leader's base finds it
         * there, and nothing more is needed from the leader. */
        assert_int_equal(cons_node_install_image(c.nodes[4].n, &meta), 0);
        cl_process(&c, 4);
    }
    cl_isolate(&c, 4, false);
    unsigned before = c.sent[CONS_MSG_SNAPSHOT];
    for (unsigned t = 0; t < beats * c.opts.heartbeat_ticks; t++) {
        cl_tick(&c, 1, 1);
        cl_tick(&c, 4, 1);
        cl_deliver(&c);
    }
    unsigned sent = c.sent[CONS_MSG_SNAPSHOT] - before;
    if (install) {
        assert_int_equal(cl_status(&c, 4).commit, applied);
        struct cons_progress p;
        assert_int_equal(cons_node_progress(c.nodes[1].n, 4, &p), 0);
        assert_int_equal(p.match, applied);
    }
    cl_close(&c);
    return sent;
}

/* With gossip_images (peers serve images, issue 16), an observer whose
 * match was compacted away on the leader is not sent the leader's
 * snapshot at once: it gets gossip_stall_heartbeats answered heartbeats to
 * fetch an image from a peer, and the leader's snapshot only after them,
 * as the last resort; one that installed an image meanwhile gets none.
 * Without gossip_images the snapshot goes at once. */
static void test_gossip_images_leader_snapshot_waits(void **state)
{
    (void)state;
    assert_true(compacted_observer_snapshots(false, 3, false) > 0);
    assert_int_equal(compacted_observer_snapshots(true, 3, false), 0);
    assert_true(compacted_observer_snapshots(true, 20, false) > 0);
    assert_int_equal(compacted_observer_snapshots(true, 20, true), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup3, teardown)
        T(test_election_elects_one_leader),
        T(test_follower_reports_the_leader_it_learns),
        T(test_election_appends_noop),
        cmocka_unit_test(test_election_single_node),
        T(test_prevote_partitioned_node_does_not_disrupt),
        T(test_check_quorum_leader_steps_down),
        T(test_vote_ignored_within_leader_lease),
        cmocka_unit_test(test_vote_sent_only_after_durable),
        cmocka_unit_test(test_campaign_waits_for_term_durable),
        cmocka_unit_test(test_duplicate_votes_count_once),
        T(test_vote_refused_to_stale_log),
        cmocka_unit_test(test_no_configuration_no_vote),
        cmocka_unit_test(test_learner_never_campaigns),
        cmocka_unit_test(test_figure8_no_commit_of_old_term_by_count),
        T(test_leader_replicates_before_own_write),
        T(test_append_reject_carries_hint),
        T(test_append_truncates_only_on_conflict),
        T(test_append_commit_capped_by_proof),
        T(test_lagging_follower_catches_up_fast),
        cmocka_unit_test(test_flow_control_bounds_inflight),
        T(test_propose_on_follower_is_forwarded),
        T(test_propose_without_leader_is_refused),
        cmocka_unit_test(test_uncommitted_log_is_bounded),
        T(test_read_index_waits_for_noop),
        T(test_read_index_batches_reads),
        T(test_read_index_on_follower),
        T(test_read_index_on_stale_leader_fails),
        T(test_lease_read_needs_no_round),
        T(test_lease_expires_without_acks),
        T(test_session_base_is_echoed),
        cmocka_unit_test(test_follower_lease_reads_locally),
        cmocka_unit_test(test_follower_lease_holds_commit),
        cmocka_unit_test(test_follower_lease_delays_transfer),
        T(test_lease_restarted_voter_holds_off),
        T(test_lease_outlives_higher_term),
        T(test_lease_outlives_same_term_vote),
        T(test_lease_dropped_by_transfer),
        T(test_lease_needs_check_quorum),
        T(test_transfer_hands_over),
        T(test_transfer_catches_up_and_times_out),
        cmocka_unit_test(test_transfer_refuses_learner),
        T(test_conf_change_one_at_a_time),
        T(test_conf_change_validates),
        cmocka_unit_test(test_conf_add_learner_then_promote),
        T(test_conf_removed_leader_steps_down),
        T(test_conf_rolls_back_on_truncation),
        cmocka_unit_test(test_conf_codec),
        T(test_conf_removed_id_never_added_again),
        cmocka_unit_test(test_conf_codec_removed),
        cmocka_unit_test(test_conf_codec_data_id),
        cmocka_unit_test(test_observer_never_campaigns),
        cmocka_unit_test(test_observer_never_counts_toward_quorum),
        cmocka_unit_test(test_observer_never_holds_follower_lease),
        cmocka_unit_test(test_observer_never_promoted_nor_readded),
        cmocka_unit_test(test_gossip_leader_feeds_observers_nothing),
        cmocka_unit_test(test_gossip_observer_learns_new_leader),
        cmocka_unit_test(test_gossip_observer_fed_up_to_configuration),
        cmocka_unit_test(test_gossip_commit_proven_rules),
        cmocka_unit_test(test_gossip_install_image),
        cmocka_unit_test(test_gossip_images_leader_snapshot_waits),
        cmocka_unit_test(test_gossip_far_behind_observer_fed),
        cmocka_unit_test(test_gossip_far_behind_observer_left_to_gossip),
        cmocka_unit_test(test_conf_codec_observer),
        cmocka_unit_test(test_conf_codec_keys),
        T(test_conf_record_keys),
        T(test_conf_record_data_id),
        cmocka_unit_test(test_snapshot_sent_to_lagging_follower),
        cmocka_unit_test(test_snapshot_resumes_after_follower_crash),
        cmocka_unit_test(test_snapshot_rejects_resend_window_once),
        T(test_snapshot_only_of_applied_state),
        T(test_stale_persist_completion_ignored),
        T(test_persist_completion_before_cut_and_restore),
        T(test_append_ack_after_durable),
        T(test_restart_resumes_from_disk),
        cmocka_unit_test(test_restart_refuses_corrupt_state),
        cmocka_unit_test(test_restart_refuses_term_behind_log),
#undef T
    };
    if (argc > 1) {
        cmocka_set_test_filter(argv[1]);
    }
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
