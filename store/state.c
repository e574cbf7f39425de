/*
 * The filesystem state machine: apply.
 *
 * Each committed entry becomes one RocksDB WriteBatch holding the change,
 * the new applied index and the client's session record, written
 * unsynced: the log entry is already durable, and a batch lost in a crash is
 * simply applied again from the log, because the applied index moves with the
 * change (RAFT-PITFALLS 6). Entries apply one batch at a time so that each
 * reads the state its predecessors left; every condition is checked here,
 * never at proposal time, so every node reaches the same result.
 *
 * This file runs an entry through its session (sessions.c), its operation
 * (ops.c, xattr.c, locks.c) and its history (history.c), then writes the
 * chain and the applied index with it. The records it all reads and writes
 * are records.c's; reads are reads.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store_i.h"

static int apply_cmd(struct tx *t, const struct store_cmd *c,
                     struct store_result *r)
{
    uint64_t ino = 0;
    int rv;
    switch (c->op) {
    case STORE_OP_NOOP:
        rv = 0;
        break;
    case STORE_OP_CREATE:
        rv = store__op_create(t, c, &ino);
        break;
    case STORE_OP_MKDIR:
        rv = store__op_mknode(t, c, STORE_DIR, &ino);
        break;
    case STORE_OP_SYMLINK:
        rv = store__op_mknode(t, c, STORE_SYMLINK, &ino);
        break;
    case STORE_OP_UNLINK:
        rv = store__op_remove(t, c, false, &ino);
        break;
    case STORE_OP_RMDIR:
        rv = store__op_remove(t, c, true, &ino);
        break;
    case STORE_OP_RENAME:
        rv = store__op_rename(t, c, &ino);
        break;
    case STORE_OP_WRITE:
        rv = store__op_write(t, c, &ino);
        break;
    case STORE_OP_SETATTR:
        rv = store__op_setattr(t, c, &ino);
        break;
    case STORE_OP_MKNOD:
        rv = store__op_mknod(t, c, &ino);
        break;
    case STORE_OP_LINK:
        rv = store__op_link(t, c, &ino);
        break;
    case STORE_OP_SETXATTR:
        rv = store__op_setxattr(t, c, &ino);
        break;
    case STORE_OP_REMOVEXATTR:
        rv = store__op_removexattr(t, c, &ino);
        break;
    case STORE_OP_SESSION_OPEN:
        rv = store__op_session_open(t, c);
        break;
    case STORE_OP_SESSION_END:
        rv = store__op_session_end(t, c);
        break;
    case STORE_OP_PUT:
        rv = store__op_put(t, c, &ino);
        break;
    case STORE_OP_LOCK:
    case STORE_OP_LOCK_CANCEL:
        rv = locks_apply(t, c);
        ino = c->ino;
        break;
    default:
        rv = EINVAL;
        break;
    }
    if (rv < 0) {
        return rv; /* The store failed: nothing of this entry applies. */
    }
    r->err = rv;
    r->ino = rv == 0 ? ino : 0;
    return 0;
}

static int apply_one(struct store *s, const struct cons_entry *e,
                     struct store_result *r)
{
    memset(r, 0, sizeof(*r));
    struct tx t = {.s = s, .index = e->index};
    t.b = rocksdb_writebatch_create();
    int rv = 0;
    struct store_cmd c;
    if (e->type != CONS_ENTRY_NORMAL) {
        /* CONF and NOOP entries only move the applied index. */
    } else if (store_cmd_decode(&e->data, &c) != 0) {
        r->err = EINVAL; /* The same bytes fail the same way everywhere. */
    } else {
        t.now = c.time_ns;
        enum session_state st = SESSION_NEW;
        struct session_head h = {0};
        if (c.client != 0) {
            rv = store__session_check(&t, &c, r, &st, &h);
        }
        bool fenced = false;
        if (rv == 0 && st == SESSION_NEW && c.client != 0) {
            rv = store__session_fenced(&t, &c, &fenced);
        }
        if (rv == 0 && st == SESSION_STALE) {
            r->err = ESTALE;
        } else if (rv == 0 && st == SESSION_NEW) {
            if (fenced) {
                /* Its node session ended before this applied: a node cut
                 * off past its TTL changes nothing any more, and holds no
                 * lock (the contract's ENOLCK for a lock request). */
                r->err = c.op == STORE_OP_LOCK || c.op == STORE_OP_LOCK_CANCEL
                             ? ENOLCK
                             : EROFS;
            } else {
                rv = apply_cmd(&t, &c, r);
                if (rv == 0) {
                    rv = t.err;
                }
            }
            if (rv == 0 && r->err == EINPROGRESS) {
                /* A queued lock waiter: a replicated outcome that does
                 * change the state (the queue). */
            } else if (rv == 0 && r->err != 0) {
                /* A refused operation changes nothing but its session. */
                rocksdb_writebatch_clear(t.b);
            } else if (rv == 0) {
                rv = store__history_add(s, t.b, e->index, &c);
            }
            if (rv == 0 && c.client != 0) {
                rv = store__session_record(&t, &c, &h, r);
            }
        }
    }
    uint8_t chain[STORE_CHAIN_BYTES];
    if (rv == 0 && s->chain_known) {
        /* In the replicated state, beside what it hashes: every node at
         * this index holds the same value, and a snapshot carries it. */
        store_chain_next(s->chain, e, chain);
        rocksdb_writebatch_put_cf(t.b, s->cf[CF_SESSIONS], STORE__CHAIN_KEY,
                                  sizeof(STORE__CHAIN_KEY) - 1,
                                  (char *)chain, sizeof(chain));
    }
    if (rv == 0) {
        store__history_prune(s, t.b, e->index);
        uint8_t v[8];
        rfs_put_le64(v, e->index);
        rocksdb_writebatch_put_cf(t.b, s->cf[CF_META], "applied", 7,
                                  (char *)v, 8);
        char what[64];
        snprintf(what, sizeof(what), "applying entry %llu",
                 (unsigned long long)e->index);
        rv = store__write(s, t.b, false, what);
    }
    rocksdb_writebatch_destroy(t.b);
    r->granted = t.granted;
    if (rv == 0) {
        s->applied = e->index;
        if (s->chain_known) {
            memcpy(s->chain, chain, sizeof(chain));
        }
    }
    return rv;
}

int store_apply(struct store *s, const struct cons_entry *entries, unsigned n,
                struct store_result *results)
{
    for (unsigned i = 0; i < n; i++) {
        struct store_result r;
        if (entries[i].index <= s->applied) {
            if (results != NULL) {
                memset(&results[i], 0, sizeof(results[i]));
                results[i].duplicate = true;
            }
            continue;
        }
        if (entries[i].index != s->applied + 1) {
            return store__set_err(s, -EINVAL,
                                  "apply %llu after %llu in %s: a gap",
                                  (unsigned long long)entries[i].index,
                                  (unsigned long long)s->applied, s->dir);
        }
        int rv = apply_one(s, &entries[i], &r);
        if (rv != 0) {
            return rv;
        }
        if (results != NULL) {
            results[i] = r;
        }
    }
    return 0;
}

rfs_index_t store_applied(struct store *s)
{
    return s->applied;
}
