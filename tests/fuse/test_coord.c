/*
 * Coordination commands on three real mounts of one cluster: raftfs watch
 * (every change made on nodes 1 and 2 seen on node 3, in log order, with
 * no gap and no repeat across a kill -9 and a restart with --since; the
 * documented exit statuses) and raftfs put (N conditional writers racing
 * on one revision from different nodes: exactly one wins).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../lib/mounts.h"
#include "../lib/procs.h"

static struct mcluster *cur; /* For the nodes' logs on a failure. */

static void fail_hook(void)
{
    mc_cleanup_all();
    fail_msg("harness failure (see above)");
}

static int setup(void **state)
{
    struct mcluster *c = calloc(1, sizeof(*c));
    mc_init(c, 3, NULL);
    *state = cur = c;
    return 0;
}

static int setup_short_history(void **state)
{
    struct mcluster *c = calloc(1, sizeof(*c));
    mc_init(c, 3, "history=20");
    *state = cur = c;
    return 0;
}

static int teardown(void **state)
{
    struct mcluster *c = *state;
    mc_destroy(c);
    free(c);
    return 0;
}

/* Run a shell command line; its exit status (or -1). */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static uint64_t rev_of(const char *path)
{
    char v[32];
    ssize_t n = getxattr(path, "user.raftfs.revision", v, sizeof(v) - 1);
    assert_true(n > 0);
    v[n] = '\0';
    return strtoull(v, NULL, 10);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* `raftfs watch PATH --since REV` in the background, output to out;
 * holders: with --holders. */
static pid_t watch_start_h(const char *path, uint64_t since, const char *out,
                           bool holders);

static pid_t watch_start(const char *path, uint64_t since, const char *out)
{
    return watch_start_h(path, since, out, false);
}

static pid_t watch_start_h(const char *path, uint64_t since, const char *out,
                           bool holders)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0) {
            _exit(126);
        }
        char rev[32];
        snprintf(rev, sizeof(rev), "%" PRIu64, since);
        execl(mc_exe, "raftfs", "watch", path, "--since", rev,
              holders ? "--holders" : (char *)NULL, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* The text of file path (up to cap - 1 bytes). */
static size_t slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(buf, 1, cap - 1, f) : 0;
    if (f != NULL) {
        fclose(f);
    }
    buf[n] = '\0';
    return n;
}

static int lines_in(const char *text)
{
    int n = 0;
    for (const char *p = text; *p; p++) {
        n += *p == '\n';
    }
    return n;
}

/* Wait (up to 10 s) until out holds n lines; its text in buf. */
static void wait_lines(const char *out, int n, char *buf, size_t cap)
{
    double end = now_s() + 10;
    while (slurp(out, buf, cap), lines_in(buf) < n && now_s() < end) {
        usleep(20000);
    }
    if (lines_in(buf) != n) {
        mc_dump_logs(cur);
        fail_msg("%s: expected %d lines, got:\n%s", out, n, buf);
    }
}

/* SIGKILL a watcher; it must be gone at once (its request interrupted). */
static void kill_watcher(pid_t pid)
{
    double t0 = now_s();
    kill(pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, WNOHANG) == 0 && now_s() < t0 + 3) {
        usleep(1000);
    }
    double took = now_s() - t0;
    if (took >= 3) {
        /* Stuck in the kernel on an unanswered request: the teardown's
         * abort of the connections frees it. */
        fail_msg("a killed watcher was still there after %.1f s", took);
    }
    printf("# a killed watcher was gone in %.3f s\n", took);
}

/* Drop revisions: "12 create /conf/a\n..." -> "create /conf/a\n...", and
 * check they grow strictly; the last one in *last. */
static void strip_revs(const char *text, char *out, size_t cap, uint64_t *last)
{
    uint64_t prev = 0;
    size_t at = 0;
    for (const char *p = text; *p;) {
        char *sp;
        uint64_t r = strtoull(p, &sp, 10);
        assert_true(*sp == ' ');
        assert_true(r > prev);
        prev = r;
        const char *nl = strchr(sp, '\n');
        assert_non_null(nl);
        at += (size_t)snprintf(out + at, cap - at, "%.*s\n",
                               (int)(nl - sp - 1), sp + 1);
        p = nl + 1;
    }
    out[at] = '\0';
    *last = prev;
}

/* A watcher on node 3 sees every change made on nodes 1 and 2 under its
 * directory, in log order; killed and restarted with --since LAST, it
 * misses nothing and repeats nothing. */
static void test_watch_across_nodes(void **state)
{
    struct mcluster *c = *state;
    char out1[300], out2[300], out3[300], out4[300];
    snprintf(out1, sizeof(out1), "%s/watch1.out", c->dir);
    snprintf(out2, sizeof(out2), "%s/watch2.out", c->dir);
    snprintf(out3, sizeof(out3), "%s/watch3.out", c->dir);
    snprintf(out4, sizeof(out4), "%s/watch4.out", c->dir);
    const char *n1 = c->mnt[1], *n2 = c->mnt[2];
    assert_int_equal(sh("mkdir '%s/conf'", n1), 0);
    uint64_t start = rev_of(mc_path(c, 3, "conf"));
    pid_t w = watch_start(mc_path(c, 3, "conf"), start, out1);
    assert_int_equal(sh("echo v1 > '%s/conf/a'", n1), 0);
    assert_int_equal(sh("echo v2 >> '%s/conf/a'", n2), 0);
    assert_int_equal(sh("echo elsewhere > '%s/outside'", n1), 0);
    assert_int_equal(sh("mv '%s/conf/a' '%s/conf/b'", n2, n2), 0);
    assert_int_equal(sh("mkdir '%s/conf/sub'", n1), 0);
    assert_int_equal(sh("echo c > '%s/conf/sub/c'", n2), 0);
    assert_int_equal(sh("chmod 600 '%s/conf/b'", n1), 0);
    assert_int_equal(sh("setfattr -n user.k -v 1 '%s/conf/b'", n2), 0);
    char text1[4096], text2[4096], text3[4096];
    wait_lines(out1, 7, text1, sizeof(text1));
    kill_watcher(w);
    char ops1[4096], ops2[4096], all[8192];
    uint64_t last, last2;
    strip_revs(text1, ops1, sizeof(ops1), &last);
    assert_string_equal(ops1, "create /conf/a\n"
                              "write /conf/a\n"
                              "rename /conf/a /conf/b\n"
                              "mkdir /conf/sub\n"
                              "create /conf/sub/c\n"
                              "setattr /conf/b\n"
                              "setxattr /conf/b\n");
    /* Changes while nobody watches. */
    assert_int_equal(sh("rm '%s/conf/b'", n1), 0);
    assert_int_equal(sh("truncate -s 0 '%s/conf/sub/c'", n2), 0);
    assert_int_equal(sh("rm '%s/conf/sub/c'", n1), 0);
    assert_int_equal(sh("rmdir '%s/conf/sub'", n2), 0);
    w = watch_start(mc_path(c, 3, "conf"), last, out2);
    wait_lines(out2, 4, text2, sizeof(text2));
    /* And one more, pushed while it waits. */
    assert_int_equal(sh("echo again > '%s/conf/d'", n1), 0);
    wait_lines(out2, 5, text2, sizeof(text2));
    kill_watcher(w);
    strip_revs(text2, ops2, sizeof(ops2), &last2);
    assert_true(strtoull(text2, NULL, 10) > last);
    assert_string_equal(ops2, "unlink /conf/b\n"
                              "truncate /conf/sub/c\n"
                              "unlink /conf/sub/c\n"
                              "rmdir /conf/sub\n"
                              "create /conf/d\n");
    /* The same lines, revisions included, from one reader on node 1. */
    w = watch_start(mc_path(c, 1, "conf"), start, out3);
    wait_lines(out3, 12, text3, sizeof(text3));
    kill_watcher(w);
    snprintf(all, sizeof(all), "%s%s", text1, text2);
    assert_string_equal(text3, all);
    /* A file: its own changes only. */
    w = watch_start(mc_path(c, 2, "outside"), start, out4);
    wait_lines(out4, 1, text3, sizeof(text3));
    kill_watcher(w);
    assert_non_null(strstr(text3, " create /outside\n"));
}

/* A flock taken and dropped on node 1 is a lock and an unlock line on
 * every node; --holders names the holder (node, kind, type, range, the
 * grant's revision) and why it ended. */
static void test_watch_locks(void **state)
{
    struct mcluster *c = *state;
    char out1[300], out2[300];
    snprintf(out1, sizeof(out1), "%s/lk1.out", c->dir);
    snprintf(out2, sizeof(out2), "%s/lk2.out", c->dir);
    assert_int_equal(sh("touch '%s/lk'", c->mnt[1]), 0);
    uint64_t start = rev_of(mc_path(c, 2, "lk"));
    assert_int_equal(sh("flock '%s/lk' true", c->mnt[1]), 0);
    pid_t w = watch_start(mc_path(c, 2, "lk"), start, out1);
    pid_t wh = watch_start_h(mc_path(c, 3, "lk"), start, out2, true);
    char text1[4096], text2[4096], ops[4096];
    wait_lines(out1, 2, text1, sizeof(text1));
    wait_lines(out2, 2, text2, sizeof(text2));
    kill_watcher(w);
    kill_watcher(wh);
    uint64_t last;
    strip_revs(text1, ops, sizeof(ops), &last);
    assert_string_equal(ops, "lock /lk\nunlock /lk\n");
    uint64_t grant = strtoull(text1, NULL, 10);
    char want[1024];
    /* The lock owner is the node's, not known here: checked apart. */
    char *own1 = strstr(text2, " owner="), *own2 = NULL;
    assert_non_null(own1);
    own2 = strstr(own1 + 1, " owner=");
    assert_non_null(own2);
    uint64_t owner = strtoull(own1 + 7, NULL, 10);
    assert_int_equal(strtoull(own2 + 7, NULL, 10), owner);
    const char *b = strstr(text2, " boot=");
    assert_non_null(b);
    uint64_t boot = strtoull(b + 6, NULL, 10);
    snprintf(want, sizeof(want),
             "%" PRIu64 " lock /lk\tnode=1 boot=%" PRIu64 " owner=%" PRIu64
             " kind=flock type=write range=0-eof grant=%" PRIu64 "\n"
             "%" PRIu64 " unlock /lk\tnode=1 boot=%" PRIu64 " owner=%" PRIu64
             " kind=flock type=write range=0-eof grant=%" PRIu64
             " by=unlock\n",
             grant, boot, owner, grant, last, boot, owner, grant);
    assert_string_equal(text2, want);
}

/* One entry can make several history records: an unlock that grants a
 * waiter records both at one revision. An answer that has no room for all
 * of a revision's records stops before it: the next call starts after the
 * revision its header names, and would skip the rest. Paths of about
 * 1,500 bytes make three lines overflow the smallest buffer (4 KiB) in the
 * middle of the unlock's revision. */
static void test_watch_answer_keeps_revisions_whole(void **state)
{
    struct mcluster *c = *state;
    char dir[2048] = "", seg[251];
    memset(seg, 'd', 250);
    seg[250] = '\0';
    for (int k = 0; k < 6; k++) {
        strcat(dir, "/");
        strcat(dir, seg);
    }
    assert_int_equal(sh("mkdir -p '%s%s' && touch '%s%s/pg'", c->mnt[1], dir,
                        c->mnt[1], dir),
                     0);
    char path[2600];
    snprintf(path, sizeof(path), "%s%s/pg", c->mnt[1], dir);
    uint64_t start = rev_of(path);
    assert_int_equal(sh("flock '%s' sleep 1 &", path), 0);
    usleep(300000);
    snprintf(path, sizeof(path), "%s%s/pg", c->mnt[2], dir);
    assert_int_equal(sh("flock '%s' true", path), 0);
    snprintf(path, sizeof(path), "%s%s/pg", c->mnt[3], dir);
    char name[64], buf[4096 + 1];
    snprintf(name, sizeof(name), "user.raftfs.changes.holders.%" PRIu64,
             start);
    ssize_t n = getxattr(path, name, buf, 4096);
    assert_true(n > 0);
    buf[n] = '\0';
    uint64_t upto = strtoull(buf, NULL, 10);
    int lines = 0, of_upto = 0;
    for (char *l = strchr(buf, '\n') + 1; *l != '\0';
         l = strchr(l, '\n') + 1) {
        lines++;
        of_upto += strtoull(l, NULL, 10) == upto;
    }
    fprintf(stderr, "# 4 KiB answer: up to %" PRIu64 ", %d lines, %d of "
            "that revision\n", upto, lines, of_upto);
    /* The lock (one record), then the unlock's revision (two): only the
     * lock's line fits whole. */
    assert_int_equal(lines, 1);
    assert_int_equal(of_upto, 1);
}

/* The documented exit statuses: 4 compacted, 5 in the future, 2 not a
 * number, 6 outside a raftfs mount, 1 a path that does not exist. */
static void test_watch_errors(void **state)
{
    struct mcluster *c = *state;
    for (int i = 0; i < 25; i++) {
        assert_int_equal(sh("echo %d > '%s/f%d'", i, c->mnt[1 + i % 2], i),
                         0);
    }
    const char *r = mc_exe, *n3 = c->mnt[3];
    char out[300];
    snprintf(out, sizeof(out), "%s/err.out", c->dir);
    assert_int_equal(sh("%s watch '%s' --since 1 2>'%s'", r, n3, out), 4);
    char text[1024];
    slurp(out, text, sizeof(text));
    assert_non_null(strstr(text, "compacted"));
    assert_int_equal(sh("%s watch '%s' --since 99999999 2>'%s'", r, n3, out),
                     5);
    slurp(out, text, sizeof(text));
    assert_non_null(strstr(text, "future"));
    assert_int_equal(sh("%s watch '%s' --since 12x 2>/dev/null", r, n3), 2);
    assert_int_equal(sh("%s watch '%s' --since -3 2>/dev/null", r, n3), 2);
    assert_int_equal(sh("%s watch '%s' 2>'%s'", r, c->dir, out), 6);
    slurp(out, text, sizeof(text));
    assert_non_null(strstr(text, "not inside a raftfs mount"));
    assert_int_equal(sh("%s watch '%s/none' 2>/dev/null", r, n3), 1);
    /* Recent enough: answered, in order, from the kept history. */
    uint64_t rev = rev_of(mc_path(c, 1, "f24"));
    assert_int_equal(sh("timeout -s INT 1 %s watch '%s' --since %" PRIu64
                        " > '%s'", r, n3, rev - 3, out), 124);
    slurp(out, text, sizeof(text));
    assert_int_equal(lines_in(text), 3);
    assert_non_null(strstr(text, " create /f24\n"));
}

/* n writers started at once, writer k on node 1 + k % 3, each running
 * `raftfs put [ARGS] FILE` with "writer k" as its input; their exit
 * statuses in st. */
static void race_puts(struct mcluster *c, int n, const char *args,
                      const char *file, int *st)
{
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pids[16];
    for (int k = 0; k < n; k++) {
        pids[k] = fork();
        assert_true(pids[k] >= 0);
        if (pids[k] == 0) {
            close(go[1]);
            char b;
            if (read(go[0], &b, 1) != 0) {
                _exit(126);
            }
            char cmd[1024];
            snprintf(cmd, sizeof(cmd),
                     "printf 'writer %d' | %s put %s '%s/%s' 2>/dev/null", k,
                     mc_exe, args, c->mnt[1 + k % 3], file);
            int s = system(cmd);
            _exit(WIFEXITED(s) ? WEXITSTATUS(s) : 125);
        }
    }
    close(go[0]);
    close(go[1]); /* Every writer goes now. */
    for (int k = 0; k < n; k++) {
        int s;
        assert_int_equal(waitpid(pids[k], &s, 0), pids[k]);
        st[k] = WIFEXITED(s) ? WEXITSTATUS(s) : -1;
    }
}

static int the_winner(const int *st, int n)
{
    int winner = -1;
    for (int k = 0; k < n; k++) {
        if (st[k] == 0) {
            assert_int_equal(winner, -1); /* Only one. */
            winner = k;
        } else {
            assert_int_equal(st[k], 3);
        }
    }
    assert_true(winner >= 0);
    return winner;
}

static void content_everywhere(struct mcluster *c, const char *file,
                               const char *want)
{
    for (int i = 1; i <= 3; i++) {
        char buf[64];
        ssize_t n = mc_read(mc_path(c, i, file), buf, sizeof(buf) - 1);
        assert_true(n >= 0);
        buf[n] = '\0';
        assert_string_equal(buf, want);
    }
}

/* Eight conditional writers on one revision, from three nodes: exactly
 * one wins, the others exit 3, and the file holds the winner's content;
 * --if-revision 0 races the same way on a name that does not exist. */
static void test_put_races(void **state)
{
    struct mcluster *c = *state;
    enum { N = 8 };
    int st[N];
    char want[32];
    race_puts(c, N, "--if-revision 0", "lock", st);
    snprintf(want, sizeof(want), "writer %d", the_winner(st, N));
    content_everywhere(c, "lock", want);
    uint64_t rev = rev_of(mc_path(c, 2, "lock"));
    char args[64];
    snprintf(args, sizeof(args), "--if-revision %" PRIu64, rev);
    race_puts(c, N, args, "lock", st);
    snprintf(want, sizeof(want), "writer %d", the_winner(st, N));
    content_everywhere(c, "lock", want);
    uint64_t rev2 = rev_of(mc_path(c, 3, "lock"));
    assert_true(rev2 > rev);
    /* The old revision now loses, and changes nothing. */
    const char *r = mc_exe;
    assert_int_equal(sh("echo late | %s put --if-revision %" PRIu64
                        " '%s/lock' 2>/dev/null", r, rev, c->mnt[1]), 3);
    content_everywhere(c, "lock", want);
    assert_int_equal(rev_of(mc_path(c, 1, "lock")), rev2);
    /* Unconditional: replaces, whatever the revision. */
    assert_int_equal(sh("printf new | %s put '%s/lock'", r, c->mnt[2]), 0);
    content_everywhere(c, "lock", "new");
    /* Bad input. */
    char out[300], text[1024];
    snprintf(out, sizeof(out), "%s/put.err", c->dir);
    assert_int_equal(sh("mkdir '%s/dir'", c->mnt[1]), 0);
    assert_int_equal(sh("echo x | %s put '%s/dir' 2>'%s'", r, c->mnt[3], out),
                     1);
    slurp(out, text, sizeof(text));
    assert_non_null(strstr(text, "is a directory"));
    assert_int_equal(sh("echo x | %s put --if-revision x '%s/lock' "
                        "2>/dev/null", r, c->mnt[3]), 2);
    assert_int_equal(sh("echo x | %s put '%s/x' 2>/dev/null", r, c->dir), 6);
    /* The largest content: 64 KiB less the 16-byte header and the name. */
    assert_int_equal(sh("head -c %d /dev/zero | %s put '%s/big'",
                        65536 - 16 - 3, r, c->mnt[1]), 0);
    struct stat sb;
    assert_int_equal(stat(mc_path(c, 2, "big"), &sb), 0);
    assert_int_equal(sb.st_size, 65536 - 16 - 3);
    assert_int_equal(sh("head -c %d /dev/zero | %s put '%s/big' 2>/dev/null",
                        65536 - 16 - 3 + 1, r, c->mnt[1]), 1);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: test_coord RAFTFS\n");
        return 2;
    }
    mc_exe = argv[1];
    pc_fail_hook = fail_hook;
    if (access("/dev/fuse", R_OK | W_OK) != 0) {
        fprintf(stderr, "/dev/fuse is not available: skipping\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_watch_across_nodes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_watch_errors,
                                        setup_short_history, teardown),
        cmocka_unit_test_setup_teardown(test_put_races, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_locks, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_watch_answer_keeps_revisions_whole, setup, teardown),
    };
    if (getenv("RAFTFS_TEST_FILTER") != NULL) {
        cmocka_set_test_filter(getenv("RAFTFS_TEST_FILTER"));
    }
    return cmocka_run_group_tests_name("coord", tests, NULL, NULL);
}
