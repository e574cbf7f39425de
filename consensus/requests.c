/* Tracking of proposals and read barriers. See requests.h. */
#include "requests.h"

#include <errno.h>
#include <string.h>

#include "../common/err.h"
#include "../common/heap.h"

struct request {
    struct request *next;
    bool read;
    uint64_t seq;           /* Proposals. */
    struct rfs_buf enc;     /* Proposals: the command, resent as is. */
    uint64_t ctx;           /* Reads: the current attempt's id. */
    rfs_index_t read_index; /* Reads: the answer (0: not yet). */
    bool leaderless_fails;  /* Reads: see requests_read(). */
    bool leaderless;        /* Its last attempt found no leader to ask. */
    uint64_t deadline;
    uint64_t last_try;
    request_cb cb;
    void *arg;
};

void requests_init(struct requests *rq, uint64_t timeout_ms,
                   uint64_t retry_ms, uint64_t ids_from)
{
    memset(rq, 0, sizeof(*rq));
    rq->timeout_ms = timeout_ms;
    rq->retry_ms = retry_ms;
    rq->ctx = ids_from;
}

static void finish(struct requests *rq, struct request *r, int err,
                   const void *result)
{
    for (struct request **p = &rq->head; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    r->cb(r->arg, err, result);
    rfs_free(r->enc.base);
    rfs_free(r);
}

void requests_close(struct requests *rq, int err)
{
    while (rq->head != NULL) {
        finish(rq, rq->head, err, NULL);
    }
}

uint64_t requests_next_seq(struct requests *rq)
{
    return ++rq->seq;
}

uint64_t requests_first_outstanding(const struct requests *rq)
{
    /* At most the last number handed out: the request being encoded right
     * now must not tell the state machine to forget itself. */
    uint64_t lo = rq->seq;
    for (const struct request *r = rq->head; r; r = r->next) {
        if (!r->read && r->seq < lo) {
            lo = r->seq;
        }
    }
    return lo;
}

static void send(struct requests *rq, struct cons_node *core,
                 struct request *r, uint64_t now)
{
    r->last_try = now;
    if (!r->read) {
        /* A refusal (no leader, transfer, full log) is retried later. */
        (void)cons_node_propose(core, &r->enc, NULL);
        return;
    }
    r->ctx = ++rq->ctx;
    r->read_index = 0;
    /* Other refusals (no memory for the message) are retried later. */
    r->leaderless = cons_node_read_index(core, r->ctx) == RFS_ENOLEADER;
}

/* Finish the reads that asked to fail rather than wait for a leader, once
 * an attempt found none. Separate from the loops that send, which must not
 * free what they walk. */
static void finish_leaderless(struct requests *rq)
{
    struct request *r = rq->head;
    while (r != NULL) {
        struct request *next = r->next;
        if (r->read && r->leaderless_fails && r->leaderless) {
            finish(rq, r, RFS_ENOLEADER, NULL);
        }
        r = next;
    }
}

static struct request *track(struct requests *rq, bool read, uint64_t now,
                             request_cb cb, void *arg)
{
    struct request *r = rfs_calloc(1, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    r->read = read;
    r->cb = cb;
    r->arg = arg;
    r->deadline = now + rq->timeout_ms;
    r->next = rq->head;
    rq->head = r;
    return r;
}

int requests_propose(struct requests *rq, struct cons_node *core,
                     uint64_t seq, struct rfs_buf enc, uint64_t now,
                     request_cb cb, void *arg)
{
    struct request *r = track(rq, false, now, cb, arg);
    if (r == NULL) {
        rfs_free(enc.base);
        return -ENOMEM;
    }
    r->seq = seq;
    r->enc = enc;
    send(rq, core, r, now);
    return 0;
}

int requests_read(struct requests *rq, struct cons_node *core, uint64_t now,
                  bool leaderless_fails, request_cb cb, void *arg)
{
    struct request *r = track(rq, true, now, cb, arg);
    if (r == NULL) {
        return -ENOMEM;
    }
    r->leaderless_fails = leaderless_fails;
    send(rq, core, r, now);
    if (r->leaderless_fails && r->leaderless) {
        finish(rq, r, RFS_ENOLEADER, NULL);
    }
    return 0;
}

void requests_applied(struct requests *rq, uint64_t seq, const void *result)
{
    for (struct request *r = rq->head; r; r = r->next) {
        if (!r->read && r->seq == seq) {
            finish(rq, r, 0, result);
            return;
        }
    }
}

void requests_update(struct requests *rq, struct cons_node *core,
                     const struct cons_update *u, uint64_t now)
{
    for (unsigned i = 0; i < u->n_reads; i++) {
        for (struct request *r = rq->head; r; r = r->next) {
            if (r->read && r->ctx == u->reads[i].ctx) {
                r->read_index = u->reads[i].index;
            }
        }
    }
    for (unsigned i = 0; i < u->n_reads_failed; i++) {
        for (struct request *r = rq->head; r; r = r->next) {
            if (r->read && r->ctx == u->reads_failed[i]) {
                send(rq, core, r, now);
            }
        }
    }
    if (u->role_changed) {
        /* A new leader may never have seen what the old one dropped. */
        for (struct request *r = rq->head; r; r = r->next) {
            if (!r->read || r->read_index == 0) {
                send(rq, core, r, now);
            }
        }
    }
    finish_leaderless(rq);
}

void requests_check(struct requests *rq, struct cons_node *core,
                    rfs_index_t applied, uint64_t now)
{
    struct request *r = rq->head;
    while (r != NULL) {
        struct request *next = r->next;
        if (r->read && r->read_index != 0 && r->read_index <= applied) {
            rfs_index_t index = r->read_index;
            finish(rq, r, 0, &index);
        } else if (now >= r->deadline) {
            if (rq->expired != NULL) {
                rq->expired(rq->expired_data, r->read,
                            r->read ? r->ctx : r->seq);
            }
            finish(rq, r, -ETIMEDOUT, NULL);
        } else if (now - r->last_try >= rq->retry_ms &&
                   (!r->read || r->read_index == 0)) {
            send(rq, core, r, now);
        }
        r = next;
    }
    finish_leaderless(rq);
}

unsigned requests_pending(const struct requests *rq)
{
    unsigned n = 0;
    for (const struct request *r = rq->head; r; r = r->next) {
        n++;
    }
    return n;
}
