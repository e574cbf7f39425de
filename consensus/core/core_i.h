/*
 * Private to consensus/core: the node's fields and the in-memory log.
 *
 * Never included from outside this folder.
 */
#ifndef RAFTFS_CONSENSUS_CORE_CORE_I_H
#define RAFTFS_CONSENSUS_CORE_CORE_I_H

#include "core.h"

#define CONS_MAX_INFLIGHT 256

/*
 * The log held in memory: the entries after base_index, where base_index is
 * the snapshot point or, when trailing entries are kept after a snapshot,
 * a little before it. e[0] has index base_index + 1 and base_term is the term
 * of the entry at base_index. Each entry owns its data buffer.
 */
struct cons_log {
    struct cons_entry *e;
    size_t n;
    size_t cap;
    rfs_index_t base_index; /* Index just before e[0]. */
    rfs_term_t base_term;
};

void cons__log_init(struct cons_log *l);
void cons__log_close(struct cons_log *l);
rfs_index_t cons__log_last_index(const struct cons_log *l);
rfs_term_t cons__log_last_term(const struct cons_log *l);
/* Term of index: 0 on success; RFS_ECOMPACTED or RFS_EUNAVAIL otherwise. */
int cons__log_term(const struct cons_log *l, rfs_index_t index,
                   rfs_term_t *term);
/* Term of index or 0 when unknown (compacted or past the end). */
rfs_term_t cons__log_term_or0(const struct cons_log *l, rfs_index_t index);
/* The entry at index, or NULL if not held. */
struct cons_entry *cons__log_get(const struct cons_log *l, rfs_index_t index);
/* Append a copy of e (its index must be last + 1). 0 or -ENOMEM. */
int cons__log_append(struct cons_log *l, const struct cons_entry *e);
/* Append an entry taking ownership of its data. 0 or -ENOMEM. */
int cons__log_append_owned(struct cons_log *l, struct cons_entry *e);
/* Drop entries with index >= from. */
void cons__log_truncate(struct cons_log *l, rfs_index_t from);
/* Drop entries with index <= upto (which must be held or be the base). */
void cons__log_compact(struct cons_log *l, rfs_index_t upto);
/* Replace the whole log by an empty one based at a snapshot point. */
void cons__log_reset(struct cons_log *l, rfs_index_t base_index,
                     rfs_term_t base_term);

#endif /* RAFTFS_CONSENSUS_CORE_CORE_I_H */
