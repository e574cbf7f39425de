/*
 * The Raft log's records: entries and the hard state.
 *
 * The core makes and reads them; the store keeps them on disk. They live
 * here, below both, so that store/ can hold the log without depending on
 * consensus/ (etcd keeps its raftpb below raft and its storage for the same
 * reason). They keep the cons_ names of the core, which gives them their
 * meaning (see consensus/core/core.h); every other consensus type, a
 * configuration included, stays in the core, and the store keeps a
 * configuration only as the bytes the core encoded.
 */
#ifndef RAFTFS_COMMON_ENTRY_H
#define RAFTFS_COMMON_ENTRY_H

#include <stdint.h>

#include "types.h"

enum cons_entry_type {
    CONS_ENTRY_NORMAL = 1, /* Opaque state machine command. */
    CONS_ENTRY_NOOP = 2,   /* Appended by each new leader; empty. */
    CONS_ENTRY_CONF = 3,   /* A whole new configuration, encoded. */
};

struct cons_entry {
    rfs_term_t term;
    rfs_index_t index;
    uint8_t type;        /* enum cons_entry_type */
    struct rfs_buf data; /* Owned by whoever holds the entry. */
};

/* The persistent state of Figure 2, plus the commit index (a hint). */
struct cons_hard_state {
    rfs_term_t term;
    rfs_nodeid_t vote;
    rfs_index_t commit;
};

#endif /* RAFTFS_COMMON_ENTRY_H */
