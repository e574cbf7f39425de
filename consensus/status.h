/*
 * status: a node's status as text, for `raftfs status`, the mount's
 * /.raftfs/ files and the admin socket, so every view says the same thing.
 *
 * Each renderer writes at most cap bytes (always NUL-terminated when cap >
 * 0) and returns the length the full text needs, like snprintf.
 */
#ifndef RAFTFS_CONSENSUS_STATUS_H
#define RAFTFS_CONSENSUS_STATUS_H

#include <stddef.h>

#include "node.h"

/* One JSON object: id, role, term, leader, commit_index, applied_index,
 * last_index, snapshot_index, entries_proposed, batches_written,
 * batches_taken (queued batches a starting write took in),
 * peers_connected, address, signing_key (hex), removed, lock_orders (1:
 * flock requests carry their order, node_lock_orders), lock_level (the
 * members' lowest protocol level: 2 also forgets answered unlocks'
 * records, node_lock_forget), last_error,
 * session (state: "off",
 * "opening", "live", "may have ended" or "ended"; boot; ttl_ms),
 * live_sessions (in the replicated state), gossip (with gossip=on: role
 * "none", "voter" or "observer", applied, known_head, msgs_out, bytes_out,
 * entries_out, points_signed, pulls_answered, too_old, refusals,
 * entries_taken, answers_refused, answers_cut, raft_msgs_to_observers,
 * raft_bytes_to_observers, raft_snap_bytes (Raft snapshot bytes sent as
 * leader), images_signed, images_served, image_bytes_served,
 * images_fetched, image_bytes_fetched, image_refusals (images from peers),
 * last_refusal; see struct node_gossip), members (objects with id,
 * address, role, key (hex, once recorded), and on the leader match and
 * lag). */
size_t status_json(const struct node_status *st, char *buf, size_t cap);
/* "ID ADDRESS\n" of the leader this node knows, or "none\n". */
size_t status_leader(const struct node_status *st, char *buf, size_t cap);
/* One line per member: "ID ADDRESS voter|learner|observer[ leader][ self]\n",
 * observers after the voters and learners. */
size_t status_members(const struct node_status *st, char *buf, size_t cap);

#endif /* RAFTFS_CONSENSUS_STATUS_H */
