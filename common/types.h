/*
 * Scalar types shared by every raftfs module.
 *
 * Terms, log indexes and node ids are 64-bit and never wrap in practice. Node
 * id 0 means "none" (no leader known, no vote cast) and is never assigned.
 */
#ifndef RAFTFS_COMMON_TYPES_H
#define RAFTFS_COMMON_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef uint64_t rfs_term_t;
typedef uint64_t rfs_index_t;
typedef uint64_t rfs_nodeid_t;

#define RFS_NODE_NONE ((rfs_nodeid_t)0)

/* A borrowed or owned byte range; which one is stated by each contract. */
struct rfs_buf {
    void *base;
    size_t len;
};

#endif /* RAFTFS_COMMON_TYPES_H */
