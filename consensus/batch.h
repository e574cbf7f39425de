/*
 * batch: group commit, shared by every host of the Raft core.
 *
 * A host writes one batch at a time; every update taken while a batch is in
 * flight is merged into the next one. Merging follows the core's rules: the
 * latest hard state wins; entries replace any suffix from their first index;
 * a snapshot install drops every entry queued before it; the tag of the last
 * update covers them all (writes complete in order). The node runtime and
 * the simulator's host both use this code, so the simulator's seeds exercise
 * the runtime's batching.
 *
 * Caveats: pure (no I/O, no locking); one owner thread.
 */
#ifndef RAFTFS_CONSENSUS_BATCH_H
#define RAFTFS_CONSENSUS_BATCH_H

#include <stdbool.h>

#include "core/core.h"

struct batch_chunk {
    struct cons_snap_meta meta;
    uint64_t offset;
    struct rfs_buf data; /* Owned. */
    bool last;
    bool fetched; /* cons_snap_chunk.fetched */
};

struct batch_writes {
    bool has_hs;
    struct cons_hard_state hs;
    struct cons_entry *ents; /* Owned copies, contiguous indexes. */
    unsigned n_ents;
    unsigned cap_ents;
    struct batch_chunk *chunks;
    unsigned n_chunks;
    struct cons_persist_tag tag; /* Pass to cons_node_persisted(). */
};

void batch_writes_init(struct batch_writes *w);
/* Merge u's writes (u->needs_persist must be set). 0 or -ENOMEM, after
 * which w is unusable: the host must stop (it cannot write what it lost). */
int batch_writes_add(struct batch_writes *w, const struct cons_update *u);
void batch_writes_close(struct batch_writes *w);
/* Move every write of `later` (queued after w's) into w, as if its updates
 * had been added to w one by one; later is left empty. 0, or -ENOMEM with
 * both unchanged: the caller just writes w alone, later stays queued. */
int batch_writes_take(struct batch_writes *w, struct batch_writes *later);

#endif /* RAFTFS_CONSENSUS_BATCH_H */
