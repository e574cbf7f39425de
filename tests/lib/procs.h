/*
 * Clusters of raftfs-testnode processes on 127.0.0.1, for integration tests
 * and benchmarks.
 *
 * Each cluster gets a temporary folder (a shared secret, one data folder and
 * one log per node) and its own ports; pc_destroy() kills every process it
 * started, by PID, and removes the folder. Nodes speak the line protocol of
 * tests/integration/testnode.c.
 *
 * Caveats: test-only. Failures in the harness itself call pc_fail(), which
 * runs pc_fail_hook (cmocka's fail, in tests) or aborts.
 */
#ifndef RAFTFS_TESTS_LIB_PROCS_H
#define RAFTFS_TESTS_LIB_PROCS_H

#include <stddef.h>
#include <sys/types.h>

#define MAXN 6

struct proc {
    pid_t pid;
    int in;
    int out;
    char buf[1 << 16];
    size_t len;
};

struct cluster {
    char dir[128];
    int n;
    int base;
    int base_lock; /* Holds base for this process (pc_reserve_ports). */
    struct proc p[MAXN + 1];
    char boot[512];
    const char *extra; /* Extra options for every node. */
    long next_id;
};

struct st {
    char role[16];
    unsigned long long term, leader, commit, applied, snap;
};

extern const char *pc_exe;            /* Path of raftfs-testnode. */
extern void (*pc_fail_hook)(void);

void pc_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
long pc_now_ms(void);
void pc_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reserve 127.0.0.1 ports base+1..base+9 for this process while the
 * returned fd (an exclusive lock on /tmp/raftfs-test-ports/BASE) stays
 * open; -1 if another process holds them. */
int pc_reserve_ports(int base);
void pc_init(struct cluster *c, int n, const char *extra);
void pc_destroy(struct cluster *c);
void pc_start(struct cluster *c, int i);
void pc_kill9(struct cluster *c, int i);
void pc_dump_logs(struct cluster *c);
/* Wait (up to timeout_ms) for a line of node p starting with prefix. */
int pc_expect(struct proc *p, const char *prefix, long timeout_ms, char *line,
              size_t cap);
void pc_say(struct proc *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int pc_status(struct cluster *c, int i, struct st *s);
/* The leader every live node agrees on, or 0 after timeout_ms. */
int pc_wait_leader(struct cluster *c, long timeout_ms);
/* put/get through node i: the operation's errno / 0 with the value. */
int pc_put(struct cluster *c, int i, const char *name, const char *val);
int pc_get(struct cluster *c, int i, const char *name, char *val, size_t cap);
void pc_check_get(struct cluster *c, int i, const char *name,
                  const char *want);

#endif /* RAFTFS_TESTS_LIB_PROCS_H */
