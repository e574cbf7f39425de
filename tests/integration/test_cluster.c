/*
 * A real cluster: raftfs-testnode processes on 127.0.0.1, talking over
 * authenticated TCP, killed with SIGKILL for real.
 *
 * Each test gets its own folder and ports (tests/lib/procs.h); teardown kills
 * every process it started (by PID) and removes the folder. Node output is
 * kept in DIR/nodeN.log and printed when a test fails.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>

#include "../lib/procs.h"

/* ---- Tests ------------------------------------------------------------ */

/* Three nodes elect a leader; a write through any node is read on every
 * node, linearizably. */
static void test_cluster_elects_and_replicates(void **state)
{
    (void)state;
    struct cluster c;
    pc_init(&c, 3, NULL);
    int l = pc_wait_leader(&c, 5000);
    assert_int_not_equal(l, 0);
    for (int i = 1; i <= 3; i++) {
        char name[16], val[16];
        snprintf(name, sizeof(name), "k%d", i);
        snprintf(val, sizeof(val), "from-%d", i);
        assert_int_equal(pc_put(&c, i, name, val), 0);
        for (int j = 1; j <= 3; j++) {
            pc_check_get(&c, j, name, val);
        }
    }
    pc_destroy(&c);
}

/* The leader is killed with SIGKILL: a new one is elected, nothing
 * acknowledged is lost, and the old leader catches up when it returns. */
static void test_leader_kill9(void **state)
{
    (void)state;
    struct cluster c;
    pc_init(&c, 3, NULL);
    int l = pc_wait_leader(&c, 5000);
    assert_int_not_equal(l, 0);
    int other = l == 1 ? 2 : 1;
    char name[16], val[16];
    for (int k = 0; k < 20; k++) {
        snprintf(name, sizeof(name), "a%d", k);
        snprintf(val, sizeof(val), "v%d", k);
        assert_int_equal(pc_put(&c, k % 2 ? l : other, name, val), 0);
    }
    pc_kill9(&c, l);
    int l2 = pc_wait_leader(&c, 5000);
    assert_int_not_equal(l2, 0);
    assert_int_not_equal(l2, l);
    for (int k = 0; k < 20; k++) {
        snprintf(name, sizeof(name), "a%d", k);
        snprintf(val, sizeof(val), "v%d", k);
        pc_check_get(&c, other, name, val);
    }
    assert_int_equal(pc_put(&c, other, "after", "kill"), 0);
    pc_start(&c, l);
    char line[128];
    assert_int_equal(pc_expect(&c.p[l], "started", 5000, line, sizeof(line)), 0);
    pc_check_get(&c, l, "after", "kill");
    pc_check_get(&c, l, "a19", "v19");
    pc_destroy(&c);
}

/* A follower that was down catches up from the log; one that fell behind
 * the leader's snapshot catches up by snapshot. */
static void test_follower_catches_up_by_snapshot(void **state)
{
    (void)state;
    struct cluster c;
    pc_init(&c, 3, "--snapshot-entries 20");
    int l = pc_wait_leader(&c, 5000);
    assert_int_not_equal(l, 0);
    int f = l == 3 ? 2 : 3;
    pc_kill9(&c, f);
    char name[16], val[16];
    for (int k = 0; k < 120; k++) {
        snprintf(name, sizeof(name), "s%d", k);
        snprintf(val, sizeof(val), "x%d", k);
        assert_int_equal(pc_put(&c, l, name, val), 0);
    }
    struct st s;
    assert_int_equal(pc_status(&c, l, &s), 0);
    assert_true(s.snap > 0); /* The leader compacted its log. */
    pc_start(&c, f);
    char line[128];
    assert_int_equal(pc_expect(&c.p[f], "started", 5000, line, sizeof(line)), 0);
    pc_check_get(&c, f, "s119", "x119");
    pc_check_get(&c, f, "s0", "x0");
    assert_int_equal(pc_status(&c, f, &s), 0);
    assert_true(s.snap > 0); /* It got there by installing a snapshot. */
    pc_destroy(&c);
}

/* The snap-*.img files in node i's snapshots folder, as a space-separated
 * list of indexes in cap; returns how many. */
static int snap_images(struct cluster *c, int i, unsigned long long *idx,
                       int cap)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/n%d/snapshots", c->dir, i);
    DIR *d = opendir(path);
    assert_non_null(d);
    int k = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long x;
        char tail[8];
        if (sscanf(e->d_name, "snap-%llu.%7s", &x, tail) == 2 &&
            strcmp(tail, "img") == 0 && k < cap) {
            idx[k++] = x;
        }
    }
    closedir(d);
    return k;
}

static bool file_has(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), fp) != NULL) {
        found = strstr(line, needle) != NULL;
    }
    fclose(fp);
    return found;
}

/* Write keys prefix0..prefix{n-1} through node l. */
static void put_many(struct cluster *c, int l, const char *prefix, int n)
{
    for (int k = 0; k < n; k++) {
        char name[16];
        snprintf(name, sizeof(name), "%s%d", prefix, k);
        assert_int_equal(pc_put(c, l, name, "v"), 0);
    }
}

/* A follower that installed a snapshot keeps the image under its final
 * name (renamed, folder synced) across an immediate SIGKILL. A running
 * node takes an installed image as its latest snapshot: the install
 * deletes the previous image, and its next local snapshot deletes the
 * installed one. Before, installed images were never deleted. */
static void test_installed_snapshot_kept_then_replaced(void **state)
{
    (void)state;
    struct cluster c;
    pc_init(&c, 3, "--snapshot-entries 20");
    int l = pc_wait_leader(&c, 5000);
    assert_int_not_equal(l, 0);
    int f = l == 3 ? 2 : 3;
    char line[128];
    struct st s;
    unsigned long long idx[8];
    /* Behind the leader's snapshot: it catches up by installing one. */
    pc_kill9(&c, f);
    put_many(&c, l, "a", 120);
    pc_start(&c, f);
    assert_int_equal(pc_expect(&c.p[f], "started", 5000, line, sizeof(line)), 0);
    pc_check_get(&c, f, "a119", "v");
    assert_int_equal(pc_status(&c, f, &s), 0);
    unsigned long long first = s.snap;
    assert_true(first > 0);
    /* Killed right after, it restarts with the image in place. */
    pc_kill9(&c, f);
    pc_start(&c, f);
    assert_int_equal(pc_expect(&c.p[f], "started", 5000, line, sizeof(line)), 0);
    assert_int_equal(snap_images(&c, f, idx, 8), 1);
    assert_int_equal(idx[0], first);
    /* Behind again, a second install while running; then its own
     * snapshot. One image is left: the latest. */
    pc_kill9(&c, f);
    put_many(&c, l, "b", 120);
    pc_start(&c, f);
    assert_int_equal(pc_expect(&c.p[f], "started", 5000, line, sizeof(line)), 0);
    pc_check_get(&c, f, "b119", "v");
    assert_int_equal(pc_status(&c, f, &s), 0);
    assert_true(s.snap > first);
    put_many(&c, l, "c", 50);
    pc_check_get(&c, f, "c49", "v");
    assert_int_equal(pc_status(&c, f, &s), 0);
    assert_true(s.snap > first);
    int k = snap_images(&c, f, idx, 8);
    if (k != 1) {
        pc_dump_logs(&c);
        for (int x = 0; x < k; x++) {
            fprintf(stderr, "image snap-%llu.img\n", idx[x]);
        }
    }
    assert_int_equal(k, 1);
    assert_int_equal(idx[0], s.snap);
    /* Nor did it take a snapshot of an image it had just installed (it
     * did when it thought its latest snapshot the one before: the local
     * one overwrote the installed image instead of leaking it). */
    char log[300];
    snprintf(log, sizeof(log), "%s/node%d.log", c.dir, f);
    FILE *fp = fopen(log, "r");
    assert_non_null(fp);
    char text[1024];
    int installs = 0;
    while (fgets(text, sizeof(text), fp) != NULL) {
        const char *p = strstr(text, "INFO: installed snapshot at ");
        if (p != NULL) {
            char want[64];
            snprintf(want, sizeof(want), "INFO: snapshot at %llu (",
                     strtoull(p + strlen("INFO: installed snapshot at "),
                              NULL, 10));
            assert_false(file_has(log, want));
            installs++;
        }
    }
    fclose(fp);
    assert_true(installs >= 2);
    pc_destroy(&c);
}

/* A process with another cluster's secret, and raw garbage on the peer
 * port, are refused and logged; the cluster goes on undisturbed. */
static void test_wrong_secret_and_garbage_refused(void **state)
{
    (void)state;
    struct cluster c;
    pc_init(&c, 3, NULL);
    int l = pc_wait_leader(&c, 5000);
    assert_int_not_equal(l, 0);
    struct st before;
    assert_int_equal(pc_status(&c, l, &before), 0);
    /* Node 4: same addresses, its own secret, claiming to be a member. */
    c.n = 4;
    pc_sh("mkdir -p %s/n4 && head -c 32 /dev/urandom > %s/n4/secret && "
       "chmod 600 %s/n4/secret",
       c.dir, c.dir, c.dir);
    size_t bl = strlen(c.boot);
    snprintf(c.boot + bl, sizeof(c.boot) - bl, ",4=127.0.0.1:%d", c.base + 4);
    pc_start(&c, 4);
    char line[128];
    assert_int_equal(pc_expect(&c.p[4], "started", 5000, line, sizeof(line)), 0);
    /* Garbage straight at the leader's port. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)(c.base + l))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(write(fd, "GET / HTTP/1.1\r\n\r\n", 18), 18);
    close(fd);
    sleep(2);
    c.n = 3;
    struct st after;
    assert_int_equal(pc_status(&c, l, &after), 0);
    assert_string_equal(after.role, "leader");
    assert_int_equal(after.term, before.term);
    assert_int_equal(pc_put(&c, l, "still", "fine"), 0);
    char cmd[1000];
    snprintf(cmd, sizeof(cmd),
             "grep -q 'claims node 4.*before authenticating' %s/node%d.log && "
             "grep -q 'does not hold the cluster secret' %s/node4.log && "
             "grep -q 'bad magic' %s/node%d.log",
             c.dir, l, c.dir, c.dir, l);
    if (system(cmd) != 0) {
        pc_dump_logs(&c);
        fail_msg("the refusals were not logged");
    }
    c.n = 4;
    pc_destroy(&c);
}

/* Five nodes survive two losses; with three down, a write fails with
 * ETIMEDOUT and the log says why. */
static void test_five_nodes_quorum(void **state)
{
    (void)state;
    struct cluster c;
    pc_init(&c, 5, NULL);
    int l = pc_wait_leader(&c, 5000);
    assert_int_not_equal(l, 0);
    int down = 0, alive = 0;
    for (int i = 1; i <= 5 && down < 2; i++) {
        if (i != l) {
            pc_kill9(&c, i);
            down++;
        }
    }
    assert_int_equal(pc_put(&c, l, "two-down", "ok"), 0);
    for (int i = 1; i <= 5; i++) {
        if (c.p[i].pid != 0 && i != l) {
            alive = i;
        }
    }
    pc_kill9(&c, l);
    assert_int_equal(pc_put(&c, alive, "no-quorum", "x"), -ETIMEDOUT);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "grep -q 'no quorum: 2 of 5 voters' %s/node%d.log",
             c.dir, alive);
    if (system(cmd) != 0) {
        pc_dump_logs(&c);
        fail_msg("the timeout's reason was not logged");
    }
    pc_destroy(&c);
}

static void harness_failed(void)
{
    fail();
}

int main(int argc, char **argv)
{
    /* Line by line: a crash must not eat the tail of what we printed. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    pc_fail_hook = harness_failed;
    pc_exe = argc > 1 ? argv[1] : "./raftfs-testnode";
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_elects_and_replicates),
        cmocka_unit_test(test_leader_kill9),
        cmocka_unit_test(test_follower_catches_up_by_snapshot),
        cmocka_unit_test(test_installed_snapshot_kept_then_replaced),
        cmocka_unit_test(test_wrong_secret_and_garbage_refused),
        cmocka_unit_test(test_five_nodes_quorum),
    };
    return cmocka_run_group_tests_name("cluster", tests, NULL, NULL);
}
