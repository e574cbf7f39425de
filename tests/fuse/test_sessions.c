/*
 * Node sessions and ephemeral files on real processes and mounts
 * (session_ttl=2): a node killed with kill -9 loses its session by a log
 * entry, on every node at the same index, within the TTL and a margin, and
 * its ephemeral files go with it; a clean unmount ends the session at
 * once; a node paused past its TTL never changes anything under its old
 * session when it resumes.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "../lib/mounts.h"
#include "../lib/procs.h"

#define TTL_MS 2000
#define OPTS "session_ttl=2"

static void fail_hook(void)
{
    mc_cleanup_all();
    fail_msg("harness failure (see above)");
}

static int setup(void **state)
{
    struct mcluster *c = calloc(1, sizeof(*c));
    mc_init(c, 3, OPTS);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct mcluster *c = *state;
    mc_destroy(c);
    free(c);
    return 0;
}

/* Wait until every running node but `except` (a paused one: its mount
 * would not answer) counts `want` live sessions; false after timeout_ms. */
static bool wait_live_but(struct mcluster *c, int except, unsigned want,
                          long timeout_ms)
{
    long deadline = pc_now_ms() + timeout_ms;
    for (;;) {
        bool all = true;
        for (int i = 1; i <= c->n; i++) {
            if (c->pid[i] > 0 && i != except &&
                mc_status(c, i, "live_sessions") != want) {
                all = false;
            }
        }
        if (all) {
            return true;
        }
        if (pc_now_ms() >= deadline) {
            break;
        }
        usleep(20000);
    }
    for (int i = 1; i <= c->n; i++) {
        if (c->pid[i] > 0 && i != except) {
            printf("# node %d: %llu live sessions, want %u\n", i,
                   (unsigned long long)mc_status(c, i, "live_sessions"),
                   want);
        }
    }
    mc_dump_logs(c);
    return false;
}

static bool wait_live(struct mcluster *c, unsigned want, long timeout_ms)
{
    return wait_live_but(c, 0, want, timeout_ms);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The registry directory, marked ephemeral from node 1. */
static void make_registry(struct mcluster *c)
{
    const char *d = mc_path(c, 1, "services");
    assert_int_equal(mkdir(d, 0755), 0);
    assert_int_equal(setxattr(d, "user.raftfs.ephemeral", "1", 1, 0), 0);
    /* Only "1", only on directories. */
    assert_int_equal(setxattr(d, "user.raftfs.ephemeral", "2", 1, 0), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(mc_write(mc_path(c, 1, "plain"), "x", 1), 0);
    assert_int_equal(setxattr(mc_path(c, 1, "plain"), "user.raftfs.ephemeral",
                              "1", 1, 0), -1);
    assert_int_equal(errno, EPERM);
    /* The CLI sets the same mark, and refuses what is not a directory in
     * a raftfs mount. */
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "'%s' ephemeral '%s'", mc_exe,
             mc_path(c, 2, "services"));
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "'%s' ephemeral '%s' 2>/dev/null", mc_exe,
             c->dir);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "'%s' ephemeral '%s' 2>/dev/null", mc_exe,
             mc_path(c, 1, "plain"));
    assert_int_not_equal(system(cmd), 0);
}

static void register_on(struct mcluster *c, int i, const char *name)
{
    char rel[64];
    snprintf(rel, sizeof(rel), "services/%s", name);
    assert_int_equal(mc_write(mc_path(c, i, rel), "127.0.0.1:8080\n", 15), 0);
    for (int j = 1; j <= c->n; j++) {
        if (c->pid[j] > 0) {
            assert_true(exists(mc_path(c, j, rel)));
        }
    }
}

static uint64_t revision(struct mcluster *c, int i, const char *rel)
{
    char v[32];
    ssize_t n = getxattr(mc_path(c, i, rel), "user.raftfs.revision", v,
                         sizeof(v) - 1);
    assert_true(n > 0);
    v[n] = '\0';
    return strtoull(v, NULL, 10);
}

/* kill -9 of node 3: its session ends by one log entry (the registry
 * directory's revision, the entry that unlinked its file, is the same on
 * nodes 1 and 2), within TTL + margin; its ephemeral file is gone on both,
 * while node 1's stays. */
static void test_kill9_ends_session(void **state)
{
    struct mcluster *c = *state;
    assert_true(wait_live(c, 3, 10000));
    make_registry(c);
    register_on(c, 1, "web-1");
    register_on(c, 3, "web-3");
    uint64_t before = revision(c, 1, "services");
    long t0 = pc_now_ms();
    mc_kill9(c, 3);
    long gone = -1;
    while (pc_now_ms() - t0 < 20000) {
        if (!exists(mc_path(c, 1, "services/web-3")) &&
            !exists(mc_path(c, 2, "services/web-3"))) {
            gone = pc_now_ms() - t0;
            break;
        }
        usleep(20000);
    }
    printf("# kill -9: node 3's ephemeral file gone on nodes 1 and 2 after "
           "%ld ms (session_ttl %d ms)\n", gone, TTL_MS);
    if (gone < 0) {
        mc_dump_logs(c);
    }
    assert_true(gone >= 0);
    /* TTL, plus detection (a tick), an election if 3 led, one commit, and
     * a loaded machine's slack. */
    assert_true(gone < TTL_MS + 3000);
    /* Not before the TTL either: nothing ends a session early. */
    assert_true(gone >= TTL_MS * 9 / 10);
    assert_true(wait_live(c, 2, 2000));
    assert_true(exists(mc_path(c, 1, "services/web-1")));
    assert_true(exists(mc_path(c, 2, "services/web-1")));
    uint64_t r1 = revision(c, 1, "services"), r2 = revision(c, 2, "services");
    assert_true(r1 > before);
    assert_int_equal(r1, r2);
}

/* A clean unmount ends the session at once: the file is gone on the
 * others as soon as the unmount returns. */
static void test_clean_unmount_ends_session(void **state)
{
    struct mcluster *c = *state;
    assert_true(wait_live(c, 3, 10000));
    make_registry(c);
    register_on(c, 2, "db-2");
    long t0 = pc_now_ms();
    assert_int_equal(mc_stop(c, 2), 0);
    long stopped = pc_now_ms() - t0;
    bool gone1 = !exists(mc_path(c, 1, "services/db-2"));
    bool gone3 = !exists(mc_path(c, 3, "services/db-2"));
    printf("# clean unmount took %ld ms; file gone at once: %d %d\n",
           stopped, gone1, gone3);
    assert_true(gone1);
    assert_true(gone3);
    assert_true(wait_live(c, 2, 1000));
}

/* The last node of a cluster being stopped cannot commit its session's
 * end: its unmount says so and does not wait for it (it used to wait 3 s
 * for an entry that could not commit). */
static void test_lone_node_unmounts_without_waiting(void **state)
{
    struct mcluster *c = *state;
    assert_true(wait_live(c, 3, 10000));
    mc_kill9(c, 1);
    mc_kill9(c, 2);
    long d = pc_now_ms() + 10000;
    while (mc_status(c, 3, "peers_connected") != 0 && pc_now_ms() < d) {
        usleep(20000);
    }
    long t0 = pc_now_ms();
    assert_int_equal(mc_stop(c, 3), 0);
    printf("# the lone node's unmount took %ld ms\n", pc_now_ms() - t0);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "grep -q \"could not end this node's session (no leader is "
             "known)\" %s/node3.log",
             c->dir);
    assert_int_equal(system(cmd), 0);
}

/* SIGSTOP past the TTL: the cluster ends the session; on SIGCONT the
 * node's next change fails with EROFS or succeeds only under a new
 * session (a new boot), and the node opens one by itself. */
static void test_paused_node_is_fenced(void **state)
{
    struct mcluster *c = *state;
    assert_true(wait_live(c, 3, 10000));
    make_registry(c);
    register_on(c, 3, "paused-3");
    uint64_t boot = mc_status(c, 3, "boot");
    assert_int_equal(kill(c->pid[3], SIGSTOP), 0);
    /* Ended by the cluster. */
    assert_true(wait_live_but(c, 3, 2, TTL_MS + 5000));
    assert_false(exists(mc_path(c, 1, "services/paused-3")));
    assert_int_equal(kill(c->pid[3], SIGCONT), 0);
    int rv = mc_write(mc_path(c, 3, "after-pause"), "x", 1);
    uint64_t boot_after = mc_status(c, 3, "boot");
    printf("# after SIGCONT: first write %s; boot %llu -> %llu\n",
           rv == 0 ? "succeeded" : strerror(-rv), (unsigned long long)boot,
           (unsigned long long)boot_after);
    if (rv == 0) {
        assert_true(boot_after > boot); /* Under a new session only. */
    } else {
        assert_int_equal(rv, -EROFS);
    }
    /* It opens a new session by itself, and writes again. */
    assert_true(wait_live(c, 3, 10000));
    long deadline = pc_now_ms() + 10000;
    while ((rv = mc_write(mc_path(c, 3, "after-pause"), "y", 1)) != 0 &&
           pc_now_ms() < deadline) {
        assert_int_equal(rv, -EROFS);
        usleep(50000);
    }
    assert_int_equal(rv, 0);
    assert_true(mc_status(c, 3, "boot") > boot);
    char buf[4];
    assert_int_equal(mc_read(mc_path(c, 1, "after-pause"), buf, sizeof(buf)),
                     1);
    /* The old session's file did not come back. */
    assert_false(exists(mc_path(c, 3, "services/paused-3")));
    /* Locks under the new session: a waiter on node 3 is granted when node
     * 1 lets go, and node 3 knows it holds the lock (its token). Both
     * looked for the lock under the first boot once, so the grant answered
     * ENOLCK and the token ENODATA. */
    assert_int_equal(mc_write(mc_path(c, 1, "plock"), "", 0), 0);
    int fd1 = open(mc_path(c, 1, "plock"), O_RDONLY);
    assert_true(fd1 >= 0);
    assert_int_equal(flock(fd1, LOCK_EX), 0);
    pid_t child = fork();
    if (child == 0) {
        int fd3 = open(mc_path(c, 3, "plock"), O_RDONLY);
        if (fd3 < 0 || flock(fd3, LOCK_EX) != 0) {
            printf("# node 3's flock after the pause: %s\n", strerror(errno));
            _exit(2);
        }
        char tok[32];
        ssize_t n = fgetxattr(fd3, "user.raftfs.lock", tok, sizeof(tok) - 1);
        if (n <= 0) {
            printf("# node 3's token after the pause: %s\n", strerror(errno));
            _exit(3);
        }
        _exit(0);
    }
    assert_true(child > 0);
    usleep(500000); /* Node 3's request waits in the table. */
    assert_int_equal(flock(fd1, LOCK_UN), 0);
    close(fd1);
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* kill -9 of the node whose process holds an flock: the lock is free on
 * the others once the node's session ends (its TTL), not before. */
static void test_kill9_frees_locks(void **state)
{
    struct mcluster *c = *state;
    assert_true(wait_live(c, 3, 10000));
    assert_int_equal(mc_write(mc_path(c, 1, "lock"), "", 0), 0);
    char cmd[1200];
    snprintf(cmd, sizeof(cmd),
             "flock -w 10 '%s' sleep 30 >/dev/null 2>&1 & echo $!",
             mc_path(c, 3, "lock"));
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int holder = 0;
    assert_int_equal(fscanf(p, "%d", &holder), 1);
    pclose(p);
    snprintf(cmd, sizeof(cmd), "flock -n '%s' true", mc_path(c, 1, "lock"));
    long t0 = pc_now_ms();
    bool held = false;
    while (pc_now_ms() - t0 < 5000 && !held) {
        /* Until node 3's flock has it (it waits: this probe is a
         * contender too). */
        held = system(cmd) != 0;
        usleep(20000);
    }
    assert_true(held);
    t0 = pc_now_ms();
    mc_kill9(c, 3);
    long freed = -1;
    while (pc_now_ms() - t0 < 20000) {
        if (system(cmd) == 0) {
            freed = pc_now_ms() - t0;
            break;
        }
        usleep(50000);
    }
    printf("# kill -9: node 3's flock free on node 1 after %ld ms "
           "(session_ttl %d ms)\n", freed, TTL_MS);
    kill(holder, SIGKILL);
    if (freed < 0) {
        mc_dump_logs(c);
    }
    assert_true(freed >= 0);
    assert_true(freed < TTL_MS + 3000);
    assert_true(freed >= TTL_MS * 9 / 10);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: test_sessions RAFTFS\n");
        return 2;
    }
    static char exe[4096];
    if (realpath(argv[1], exe) == NULL) {
        perror(argv[1]);
        return 2;
    }
    mc_exe = exe;
    pc_fail_hook = fail_hook;
    if (access("/dev/fuse", R_OK | W_OK) != 0) {
        fprintf(stderr, "/dev/fuse is not available: skipping\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill9_frees_locks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kill9_ends_session, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_clean_unmount_ends_session,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_lone_node_unmounts_without_waiting, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_paused_node_is_fenced, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
