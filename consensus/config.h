/*
 * config: the text forms of a node's configuration that people type: peer
 * addresses ("IPv4:port") and peer lists ("1=10.0.0.1:7100,2=..."). Every
 * parser names what it rejects in errmsg (RFS_ERRMSG_SZ bytes).
 *
 * Caveats:
 * - Addresses are numeric IPv4 with a port: a node must not depend on a
 *   resolver to reach its peers, and the address is also its identity in
 *   the cluster configuration.
 */
#ifndef RAFTFS_CONSENSUS_CONFIG_H
#define RAFTFS_CONSENSUS_CONFIG_H

#include "core/core.h"

/* 0 or -EINVAL. */
int config_parse_addr(const char *s, char *errmsg);
/* A node id: a decimal number from 1 to 2^63-1. 0 or -EINVAL. */
int config_parse_id(const char *s, rfs_nodeid_t *id, char *errmsg);
/* A peer list into c, every server a voter: ids unique, addresses valid
 * and unique. 0 or -EINVAL. */
int config_parse_peers(const char *s, struct cons_conf *c, char *errmsg);

#endif /* RAFTFS_CONSENSUS_CONFIG_H */
