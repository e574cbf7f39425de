/*
 * Clusters of real raftfs mounts on 127.0.0.1, for the filesystem's
 * integration tests and the benchmarks.
 *
 * mc_init() makes a temporary folder with one data folder (raftfs init) and
 * one mount point per node, starts `raftfs mount -f` for each as a child
 * process, and returns once every mount answers and a leader is known.
 * mc_destroy() unmounts every mount it made, kills every process it started
 * (by PID) and removes the folder; an atexit/signal hook does the same if
 * the test dies first, so no mount outlives its test.
 *
 * Caveats: test-only; harness failures call pc_fail() (tests/lib/procs.h).
 */
#ifndef RAFTFS_TESTS_LIB_MOUNTS_H
#define RAFTFS_TESTS_LIB_MOUNTS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define MC_MAX 7

struct mcluster {
    char dir[128];
    int n;
    int base;                   /* Node i listens on 127.0.0.1:base+i. */
    int base_lock;              /* Holds base for this process (mc_init). */
    pid_t pid[MC_MAX + 1];      /* 0 when not running. */
    char mnt[MC_MAX + 1][192];  /* DIR/nI */
    char data[MC_MAX + 1][192]; /* DIR/dI */
    char opts[MC_MAX + 1][256]; /* Mount options of each node. */
};

extern const char *mc_exe; /* Path of the raftfs binary. */
/* If set: runs in the child before it execs node i (e.g. to enter a
 * network namespace). */
extern void (*mc_pre_exec)(struct mcluster *c, int i);

/* Track a cluster built by hand (not by mc_init) for the exit hook. */
void mc_register(struct mcluster *c);

/* n nodes founding one cluster, each mounted with options opts (may be
 * NULL). */
void mc_init(struct mcluster *c, int n, const char *opts);
void mc_destroy(struct mcluster *c);
/* Kill and detach everything every cluster started (on harness failure). */
void mc_cleanup_all(void);
/* Prepare node i (> c->n so far) to join: raftfs init --join, with the
 * cluster's secret (or a fresh one if own_secret), mount options opts. */
void mc_prepare_join(struct mcluster *c, int i, const char *opts,
                     bool own_secret);
/* Run `raftfs ARGS` (a command line) for node i's data folder; returns
 * the exit status, output appended to DIR/admin.log. */
int mc_raftfs(struct mcluster *c, int i, const char *args);
/* Mount node i again (after mc_kill9/mc_stop), with its options. */
void mc_start(struct mcluster *c, int i);
/* SIGKILL node i, reap it and detach its dead mount. */
void mc_kill9(struct mcluster *c, int i);
/* Abort node i's FUSE connection (fusectl): what the kernel does when a
 * daemon dies, done now, so no caller waits on a daemon that is gone. */
void mc_abort(struct mcluster *c, int i);
/* SIGTERM node i and wait: a clean unmount. Returns its exit status. */
int mc_stop(struct mcluster *c, int i);
/* The leader every running node reports, or 0 after timeout_ms. */
int mc_wait_leader(struct mcluster *c, long timeout_ms);
/* A number from node i's /.raftfs/status (e.g. "entries_proposed"). */
uint64_t mc_status(struct mcluster *c, int i, const char *key);
/* path under node i's mount, in a rotating buffer of 8 per thread. */
const char *mc_path(struct mcluster *c, int i, const char *rel);
/* Whole-file helpers; mc_read returns bytes read or -errno. */
int mc_write(const char *path, const void *data, size_t len);
ssize_t mc_read(const char *path, void *buf, size_t cap);
/* Print every node's log to stderr (on failure). */
void mc_dump_logs(struct mcluster *c);

#endif /* RAFTFS_TESTS_LIB_MOUNTS_H */
