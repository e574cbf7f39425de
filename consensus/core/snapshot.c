/*
 * Snapshots: taking one, and moving one from the leader to a follower in
 * chunks (thesis 5.1-5.4).
 *
 * The core never holds image bytes. The host writes an image and reports
 * it (cons_node_snapshot_taken), and the core compacts its log behind it,
 * keeping a few trailing entries so that a follower just behind still gets
 * APPENDs. A follower that needs compacted entries gets the image instead:
 * progress.c sends the chunks, a window at a time, with data.base NULL for
 * the host to fill; this file handles the follower's acks and rejects
 * (leader side) and the chunks arriving, handed to the host to store and,
 * on the last, to install (follower side). Images are a deterministic
 * function of the state at (index, term), so a transfer resumes where the
 * follower is, from any leader.
 *
 * Kept apart from raft.c because none of it decides elections or commits:
 * it is the catch-up path for a follower the log no longer reaches.
 */
#include <errno.h>
#include <string.h>

#include "../../common/err.h"
#include "../../common/heap.h"
#include "core_i.h"

void cons__leader_snapshot_resp(struct cons_node *n,
                                const struct cons_msg *m, struct progress *p)
{
    p->recent_active = true;
    if (p->state != CONS_PROGRESS_SNAPSHOT) {
        return;
    }
    if (m->last && !m->reject) {
        if (m->index > p->match) {
            p->match = m->index;
        }
        if (p->match < p->snap_index && p->match < n->log.base_index) {
            /* It finished an older image (a transfer we replaced), which
             * still leaves it short of our log: keep sending the current
             * one rather than starting over on every such reply. */
            return;
        }
        cons__trace(n, "%llu installed snapshot %llu",
                    (unsigned long long)p->id, (unsigned long long)m->index);
        cons__become_probe(p);
        cons__send_append(n, p, false);
        return;
    }
    if (m->index != p->snap_index) {
        return; /* About an image we no longer send. */
    }
    if (m->reject) {
        /* Go back to where the follower is, once: until the transfer
         * moves again or the next heartbeat, further rejects are the
         * window's other chunks (or older replies) answering the same
         * gap. Acting on each resends the window once per reply, and
         * each resent chunk draws another reply: with many chunks in
         * flight that fed on itself (the simulator's larger images found
         * it). A reject that was right after all (the follower restarted
         * and holds less) is acted on at the next heartbeat. */
        if (p->snap_rewound) {
            return;
        }
        p->snap_moved = true;
        p->snap_acked = m->offset;
        p->snap_sent = m->offset;
        p->snap_rewound = true;
    } else if (m->offset > p->snap_acked) {
        p->snap_moved = true;
        p->snap_acked = m->offset;
        p->snap_rewound = false;
    }
    cons__send_snapshot_chunks(n, p);
}

static void respond_snapshot(struct cons_node *n, const struct cons_msg *in,
                             uint64_t offset, bool reject, bool last,
                             rfs_index_t index)
{
    struct cons_msg *m = cons__send(n, CONS_MSG_SNAPSHOT_RESP, in->from);
    if (m != NULL) {
        m->offset = offset;
        m->reject = reject;
        m->last = last;
        m->index = index;
    }
}

/* See core_i.h. */
void cons__snapshot_install(struct cons_node *n,
                            const struct cons_snap_meta *meta)
{
    cons__trace(n, "install snapshot %llu (term %llu)",
                (unsigned long long)meta->index,
                (unsigned long long)meta->term);
    cons__log_reset(&n->log, meta->index, meta->term);
    n->snap = *meta;
    n->commit = meta->index;
    n->stable = meta->index;
    n->handed_out = meta->index;
    n->dirty_from = 0;
    n->recv_index = 0;
    cons__conf_set(n, &meta->conf, meta->index);
}

void cons__handle_snapshot(struct cons_node *n, const struct cons_msg *m)
{
    const struct cons_snap_meta *meta = m->snap;
    if (meta == NULL) {
        return;
    }
    if (meta->index <= n->commit ||
        term_at(n, meta->index) == meta->term) {
        /* We hold it already (committed, or the same entry by log
         * matching): fast-forward instead of installing. */
        cons__follower_commit_to(n, meta->index <= last_index(n) ? meta->index
                                                                  : n->commit);
        respond_snapshot(n, m, meta->size, false, true, meta->index);
        return;
    }
    /* Images are a deterministic function of the state at (index, term),
     * so a transfer of the same image resumes where we are, even from
     * another leader; only a different image starts over. A duplicated
     * first chunk therefore cannot reset a transfer in progress. */
    if (m->offset == 0 &&
        (n->recv_index != meta->index || n->recv_term != meta->term)) {
        n->recv_index = meta->index;
        n->recv_term = meta->term;
        n->recv_offset = 0;
    }
    if (n->recv_index != meta->index || n->recv_term != meta->term ||
        m->offset != n->recv_offset ||
        m->offset + m->data.len > meta->size) {
        bool same = n->recv_index == meta->index && n->recv_term == meta->term;
        respond_snapshot(n, m, same ? n->recv_offset : 0, true, false,
                         meta->index);
        return;
    }
    if (cons__grow((void **)&n->chunks, &n->chunks_cap, n->chunks_n + 1,
                   sizeof(*n->chunks)) != 0) {
        return;
    }
    struct cons_snap_chunk *c = &n->chunks[n->chunks_n];
    c->meta = *meta;
    c->offset = m->offset;
    c->last = m->last && m->offset + m->data.len == meta->size;
    c->fetched = false; /* A leader's chunk: its receiving file. */
    c->data.len = m->data.len;
    c->data.base = NULL;
    if (m->data.len > 0) {
        c->data.base = rfs_memdup(m->data.base, m->data.len);
        if (c->data.base == NULL) {
            return;
        }
    }
    n->chunks_n++;
    n->recv_offset += m->data.len;
    if (!c->last) {
        respond_snapshot(n, m, n->recv_offset, false, false, meta->index);
        return;
    }
    cons__snapshot_install(n, meta);
    respond_snapshot(n, m, n->recv_offset, false, true, meta->index);
}

int cons_node_snapshot_taken(struct cons_node *n, rfs_index_t index,
                             uint64_t size, rfs_index_t trailing,
                             struct cons_snap_meta *meta)
{
    if (size == 0) {
        return -EINVAL; /* An image always has at least a header. */
    }
    if (index > n->handed_out) {
        return RFS_EUNAVAIL;
    }
    if (index < n->snap.index || index < n->log.base_index) {
        return RFS_ECOMPACTED;
    }
    struct cons_snap_meta s;
    memset(&s, 0, sizeof(s));
    s.index = index;
    s.term = term_at(n, index);
    s.size = size;
    int rv = cons__conf_at(n, index, &s.conf);
    if (rv != 0) {
        return rv;
    }
    n->snap = s;
    rfs_index_t upto = index > trailing ? index - trailing : 0;
    if (upto > n->log.base_index) {
        cons__log_compact(&n->log, upto);
    }
    cons__trace(n, "snapshot at %llu, log from %llu", (unsigned long long)index,
                (unsigned long long)(n->log.base_index + 1));
    if (meta != NULL) {
        *meta = s;
    }
    return 0;
}

void cons_node_snapshot_failed(struct cons_node *n, rfs_nodeid_t to)
{
    struct progress *p = progress_get(n, to);
    if (n->role == CONS_LEADER && p != NULL &&
        p->state == CONS_PROGRESS_SNAPSHOT) {
        p->snap_acked = 0;
        p->snap_sent = 0;
        p->snap_rewound = false;
        p->snap_index = 0;
    }
}
