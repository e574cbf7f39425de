/*
 * A hand-driven cluster of Raft cores for unit tests.
 *
 * Unlike the randomized simulator (sim.h), nothing here happens unless the
 * test says so: ticks, deliveries and disk completions are explicit, so each
 * test can build the exact situation a Raft rule is about (Figure 8, a vote
 * lost in a crash, a stale completion) and assert on what the core does.
 *
 * The network is a FIFO queue with per-link cuts. Disks are instant unless a
 * node's writes are held (cl_hold), in which case its writes and the
 * messages that wait for them stay queued until cl_release().
 *
 * Caveats: test-only; aborts on allocation failure.
 */
#ifndef RAFTFS_TESTS_LIB_CLUSTER_H
#define RAFTFS_TESTS_LIB_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include "../../consensus/core/core.h"

#define CL_MAX 9

struct cl_msg {
    struct cons_msg m;
    bool wait_durable;
    struct cl_msg *next;
};

/* One update's writes: applied to the node's disk image on release. */
struct cl_write {
    struct cons_persist_tag tag;
    bool has_hs;
    struct cons_hard_state hs;
    bool install; /* A snapshot was installed: the stored log is dropped. */
    struct cons_entry *ents;
    unsigned n_ents;
    struct cl_msg *held;
    struct cl_write *next;
};

struct cl_node {
    struct cons_node *n;
    bool up;
    bool hold;                 /* Keep writes pending until cl_release(). */
    struct cl_write *writes;   /* Pending writes, oldest first. */
    rfs_index_t applied;       /* Last index handed to apply. */
    unsigned n_applied;        /* Entries applied since start. */
    char last_applied[64];     /* Data of the last NORMAL entry applied. */
    uint64_t reads_ctx[64];    /* Read answers received, in order. */
    rfs_index_t reads_index[64];
    unsigned n_reads;
    uint64_t failed_ctx[64];
    unsigned n_failed;
    /* The leader the last update flagged as changed (role_changed): what a
     * host would re-send its proposals to. */
    rfs_nodeid_t told_leader;
    /* What this node persisted, for restart tests. */
    struct cons_hard_state hs;
    struct cons_entry log[512];
    unsigned n_log;
};

struct cl {
    unsigned n;                    /* Nodes 1..n. */
    struct cl_node nodes[CL_MAX + 1];
    struct cl_msg *q;              /* In flight, FIFO. */
    struct cl_msg *q_tail;
    bool cut[CL_MAX + 1][CL_MAX + 1];
    unsigned sent[CONS_MSG_TYPE_MAX]; /* Messages put on the wire by type. */
    struct cons_options opts;      /* Template; id set per node. */
};

/* A cluster of `voters` voters and `learners` learners (ids after the
 * voters), all bootstrapped with the same configuration. */
void cl_init(struct cl *c, unsigned voters, unsigned learners);
/* The same, with options changed by the test before nodes start. */
void cl_init_opts(struct cl *c, unsigned voters, unsigned learners,
                  const struct cons_options *tmpl);
void cl_close(struct cl *c);

/* Take and carry out every pending update of node id. */
void cl_process(struct cl *c, unsigned id);
/* Tick node id k times (processing after each). */
void cl_tick(struct cl *c, unsigned id, unsigned k);
/* Deliver queued messages until none is left (bounded). Returns the count. */
unsigned cl_deliver(struct cl *c);
/* Deliver only the first queued message (if any, respecting cuts). */
bool cl_deliver_one(struct cl *c);
/* Drop every queued message. */
void cl_drop_all(struct cl *c);
/* Make id campaign (ticking it to its election timeout) and settle. */
void cl_elect(struct cl *c, unsigned id);
/* The node that leads the highest term, or 0. */
unsigned cl_leader(struct cl *c);
/* Cut or heal both directions between a and b (0: all of a's links). */
void cl_cut(struct cl *c, unsigned a, unsigned b, bool cut);
/* Isolate node a entirely. */
void cl_isolate(struct cl *c, unsigned a, bool cut);
/* Propose a string at node id; returns the core's return code. */
int cl_propose(struct cl *c, unsigned id, const char *s);
/* Hold node id's writes (and the messages that wait for them). */
void cl_hold(struct cl *c, unsigned id, bool hold);
/* Complete node id's pending writes, releasing held messages. */
void cl_release(struct cl *c, unsigned id);
/* Crash node id: pending writes lost; restart from what it persisted. */
void cl_crash(struct cl *c, unsigned id);
void cl_restart(struct cl *c, unsigned id);
/* Complete only node id's oldest pending write. */
void cl_release_one(struct cl *c, unsigned id);
struct cons_status cl_status(struct cl *c, unsigned id);
/* The last queued message of a type from `from` to `to` (0: any), or NULL. */
const struct cons_msg *cl_find(struct cl *c, int type, unsigned from,
                               unsigned to);
/* Step a message straight into node `to` (bypassing the queue). */
void cl_step(struct cl *c, const struct cons_msg *m);
/* Count queued messages of a type (0: any) from `from` (0: any). */
unsigned cl_queued(struct cl *c, int type, unsigned from);

#endif /* RAFTFS_TESTS_LIB_CLUSTER_H */
