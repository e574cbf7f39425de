/*
 * A deterministic simulator for whole clusters of Raft cores.
 *
 * One process, virtual time in milliseconds, one seeded PRNG: every run is a
 * pure function of its options, so a failing seed replays exactly. Each
 * simulated node is a real struct cons_node inside the real host driver
 * (consensus/host.c, the ordering, request table, group commit, clock
 * catch-up and snapshot policy the node runtime runs); sim.c supplies only
 * its I/O, deterministically: disk writes that complete after a random
 * delay, frames, timers, the clock, and a state machine of registers with
 * the store's exactly-once sessions and its crash model (unsynced applies
 * lost on a crash).
 *
 * The network drops, delays (and so reorders) and duplicates messages, and
 * partitions links, symmetrically or in one direction. The nemesis crashes
 * nodes (losing every write not yet reported durable), pauses them (no tick,
 * no message, then resumed with stale beliefs), changes membership,
 * transfers leadership, jumps clocks, refuses or fails disk writes, wipes a
 * disk, and stages the election race (docs/testing.md) while clients
 * propose and read from any node.
 *
 * Invariants are checked after every event: at most one leader per term,
 * log matching, leader completeness, state machine safety (no two nodes apply
 * different entries at one index, no entry applied twice), committed entries
 * never lost or changed, and every ReadIndex answer at least the commit index
 * known cluster-wide when the read was asked. Clients also go through the
 * node runtime's own request tracking (consensus/requests.c): every request
 * completes exactly once, and a read barrier passes only once its node has
 * applied everything committed before it was asked. At the end the network heals
 * and the run must elect a leader that commits a new proposal on every voter,
 * and the clients' register reads and writes, with their call and return
 * times, must be linearizable (tests/chaos/checker.c).
 *
 * Caveats:
 * - Not thread-safe; one struct sim per thread.
 * - The disk and the state machine are in memory (sim.c), with RocksDB's
 *   crash model rather than RocksDB itself: thousands of seeds a minute.
 *   The store's own behaviour is pinned by its tests on real RocksDB.
 */
#ifndef RAFTFS_TESTS_LIB_SIM_H
#define RAFTFS_TESTS_LIB_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct sim_options {
    uint64_t seed;
    unsigned nodes;        /* Initial voters: 3, 5 or 7 (0: chosen by seed). */
    unsigned duration_ms;  /* Chaos phase length in virtual time. */
    unsigned heal_ms;      /* Budget for recovery after healing. */
    bool faults;           /* Nemesis on (partitions, crashes, pauses...). */
    bool membership;       /* Membership changes during the run. */
    bool transfers;        /* Leadership transfers during the run. */
    bool lease_reads;      /* Leader lease reads, clocks drifting ±5%. */
    bool wipes;            /* A node may come back with a wiped disk. */
    /* The other read checks off (ReadIndex and barrier indexes, stale
     * register reads, lease overlap): to measure which bugs the
     * linearizability check finds on its own. */
    bool lin_only;
    FILE *trace;           /* Event and core trace, or NULL. */
};

struct sim_result {
    uint64_t steps;      /* Events processed. */
    unsigned violations; /* Invariant violations found. */
    char first[512];     /* Description of the first violation. */
    uint64_t committed;  /* Highest index committed cluster-wide. */
    uint64_t proposals;  /* Proposals accepted by some node. */
    uint64_t reads;      /* ReadIndex answers checked. */
    uint64_t faults;     /* Nemesis actions taken. */
    uint64_t snapshots_sent; /* Snapshots installed on followers. */
    uint64_t elections;  /* Leaders elected. */
    uint64_t acked;      /* Requests completed as applied (requests.c). */
    uint64_t barriers;   /* Read barriers passed and checked. */
    uint64_t timeouts;   /* Requests that timed out. */
    uint64_t lease_runs; /* 1 if this run used lease reads. */
    uint64_t leased_reads; /* Reads a follower answered from its lease. */
    uint64_t wipes;      /* 1 if this run wiped a disk (--wipes). */
    /* Peers that accepted a wiped node's new folder (host_hello): each is
     * a peer it could catch up from, or vote with, under its old id. */
    uint64_t wiped_accepted;
    uint64_t lin_ops;    /* Register operations checked for linearizability. */
    uint64_t lin_explored;   /* The checker's search states. */
    uint64_t lin_unfinished; /* Keys whose search ran out of budget. */
    /* The election race (docs/testing.md): the step this run's race
     * reached (0: not staged; 1 to 6, 6 the pivot). */
    uint64_t race_step;
    /* Writes that took the queued batch in as they started
     * (host_write_begin, EV_WRITE_BEGIN). */
    uint64_t writes_merged;
};

void sim_options_default(struct sim_options *o, uint64_t seed);

/* Run one simulation; returns 0 when no invariant was violated. */
int sim_run(const struct sim_options *o, struct sim_result *r);

#endif /* RAFTFS_TESTS_LIB_SIM_H */
