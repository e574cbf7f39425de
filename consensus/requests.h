/*
 * requests: what a node asked of the cluster, tracked until it is answered.
 *
 * A proposal is identified by a sequence number that the host embeds in the
 * command (with its node and boot ids); it is re-proposed after every leader
 * change and every retry interval until this node applies it, and completed
 * by that identity, never by log index (RAFT-PITFALLS 7): the state machine
 * applies each identity once, so the retries are safe. A read barrier asks
 * for a ReadIndex under a fresh id per attempt (RAFT-PITFALLS 8) and
 * completes once this node's applied index reaches the answer. Either fails
 * with -ETIMEDOUT after the timeout.
 *
 * Pure: no clock (the host passes `now` in ms), no I/O. The node runtime and
 * the simulator's host both use it, so the simulator checks its behaviour
 * under every fault it injects.
 *
 * Caveats: one owner thread (the one that owns the core). Every request's
 * callback runs exactly once: on completion, timeout or requests_close().
 */
#ifndef RAFTFS_CONSENSUS_REQUESTS_H
#define RAFTFS_CONSENSUS_REQUESTS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

/* err: 0, -ETIMEDOUT, or the code given to requests_close(). On success,
 * result is the host's apply result (proposals) or a pointer to the read
 * index the barrier waited for (reads); otherwise NULL. */
typedef void (*request_cb)(void *arg, int err, const void *result);

struct request;

struct requests {
    struct request *head;
    uint64_t timeout_ms;
    uint64_t retry_ms;
    uint64_t seq;  /* Last sequence number handed out. */
    uint64_t ctx;  /* Last ReadIndex id. */
    /* Called before a request fails with -ETIMEDOUT, for the host's log. */
    void (*expired)(void *data, bool read, uint64_t id);
    void *expired_data;
};

/* ids_from: where ReadIndex ids start. Pick it at random per process: a
 * late answer addressed to a previous incarnation of this node must never
 * match a new request (RAFT-PITFALLS 8; the simulator found this). */
void requests_init(struct requests *rq, uint64_t timeout_ms,
                   uint64_t retry_ms, uint64_t ids_from);
/* Fail every pending request with err (e.g. RFS_ESHUTDOWN). */
void requests_close(struct requests *rq, int err);

/* Reserve the next sequence number; then the lowest one still unanswered,
 * counting the one just reserved (every number below it can be forgotten by
 * the state machine). */
uint64_t requests_next_seq(struct requests *rq);
uint64_t requests_first_outstanding(const struct requests *rq);

/* Track and propose a command already encoded with sequence seq (enc is
 * taken). 0 or -ENOMEM (enc freed, cb never runs). */
int requests_propose(struct requests *rq, struct cons_node *core,
                     uint64_t seq, struct rfs_buf enc, uint64_t now,
                     request_cb cb, void *arg);
/* Track and start a read barrier. 0 or -ENOMEM. With leaderless_fails,
 * it fails with RFS_ENOLEADER as soon as an attempt finds no leader to ask
 * (at once, or after a leader it waited on stepped down), instead of
 * retrying until the timeout: for a caller that has a local answer to fall
 * back on. */
int requests_read(struct requests *rq, struct cons_node *core, uint64_t now,
                  bool leaderless_fails, request_cb cb, void *arg);

/* This node applied its proposal seq, with result. */
void requests_applied(struct requests *rq, uint64_t seq, const void *result);
/* Take in an update's read answers and failures; after a leader change
 * (u->role_changed), re-send everything unanswered. */
void requests_update(struct requests *rq, struct cons_node *core,
                     const struct cons_update *u, uint64_t now);
/* Complete reads whose index is applied, retry the slow, fail the expired. */
void requests_check(struct requests *rq, struct cons_node *core,
                    rfs_index_t applied, uint64_t now);

unsigned requests_pending(const struct requests *rq);

#endif /* RAFTFS_CONSENSUS_REQUESTS_H */
