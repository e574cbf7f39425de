/*
 * A real cluster: raftfs-testnode processes on 127.0.0.1, talking over
 * authenticated TCP, killed with SIGKILL for real.
 *
 * Each test gets its own folder and ports; teardown kills every process it
 * started (by PID) and removes the folder. Node output is kept in
 * DIR/nodeN.log and printed when a test fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define MAXN 6

static const char *exe;
static int port_base = 17200;

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
    struct proc p[MAXN + 1];
    char boot[512];
    const char *extra; /* Extra options for every node. */
    long next_id;
};

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) {
        fail_msg("command failed: %s", cmd);
    }
}

static void start(struct cluster *c, int i)
{
    struct proc *p = &c->p[i];
    int in[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    char id[16], dir[200], listen[64], log[200];
    snprintf(id, sizeof(id), "%d", i);
    snprintf(dir, sizeof(dir), "%s/n%d", c->dir, i);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", c->base + i);
    snprintf(log, sizeof(log), "%s/node%d.log", c->dir, i);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        int fd = open(log, O_CREAT | O_WRONLY | O_APPEND, 0644);
        dup2(fd, 2);
        close(in[1]);
        close(out[0]);
        static char o_id[] = "--id", o_dir[] = "--dir", o_listen[] = "--listen",
                    o_boot[] = "--bootstrap", o_to[] = "--timeout-ms",
                    v_to[] = "3000";
        char *argv[20] = {(char *)exe, o_id, id, o_dir, dir, o_listen,
                          listen, o_boot, c->boot, o_to, v_to};
        int k = 11;
        char extra[256];
        if (c->extra != NULL) {
            snprintf(extra, sizeof(extra), "%s", c->extra);
            for (char *t = strtok(extra, " "); t && k < 18; t = strtok(NULL, " ")) {
                argv[k++] = t;
            }
        }
        argv[k] = NULL;
        execv(exe, argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    p->pid = pid;
    p->in = in[1];
    p->out = out[0];
    p->len = 0;
}

/* Wait for a line starting with prefix; copy it to line. */
static int expect(struct proc *p, const char *prefix, long timeout_ms,
                  char *line, size_t cap)
{
    long end = now_ms() + timeout_ms;
    for (;;) {
        char *nl;
        char *s = p->buf;
        while ((nl = memchr(s, '\n', p->len - (size_t)(s - p->buf)))) {
            *nl = '\0';
            if (strncmp(s, prefix, strlen(prefix)) == 0) {
                snprintf(line, cap, "%.*s", (int)(cap - 1), s);
                size_t used = (size_t)(nl + 1 - p->buf);
                memmove(p->buf, nl + 1, p->len - used);
                p->len -= used;
                return 0;
            }
            s = nl + 1;
        }
        long left = end - now_ms();
        if (left <= 0) {
            return -ETIMEDOUT;
        }
        struct pollfd pfd = {.fd = p->out, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0) {
            continue;
        }
        ssize_t r = read(p->out, p->buf + p->len, sizeof(p->buf) - p->len - 1);
        if (r <= 0) {
            return -EPIPE;
        }
        p->len += (size_t)r;
    }
}

static void say(struct proc *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(struct proc *p, const char *fmt, ...)
{
    char b[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof(b), fmt, ap);
    va_end(ap);
    assert_int_equal(write(p->in, b, (size_t)n), n);
}

static void kill9(struct cluster *c, int i)
{
    struct proc *p = &c->p[i];
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        close(p->in);
        close(p->out);
        p->pid = 0;
    }
}

static void dump_logs(struct cluster *c)
{
    for (int i = 1; i <= c->n; i++) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "echo '--- node %d'; tail -n 15 %s/node%d.log",
                 i, c->dir, i);
        if (system(cmd) != 0) {
            break;
        }
    }
}

static void init(struct cluster *c, int n, const char *extra)
{
    memset(c, 0, sizeof(*c));
    c->n = n;
    c->extra = extra;
    c->base = port_base;
    port_base += 10;
    snprintf(c->dir, sizeof(c->dir), "/tmp/raftfs-cluster-XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    sh("head -c 32 /dev/urandom > %s/secret && chmod 600 %s/secret", c->dir,
       c->dir);
    size_t off = 0;
    for (int i = 1; i <= n; i++) {
        sh("mkdir -p %s/n%d && cp -p %s/secret %s/n%d/secret", c->dir, i,
           c->dir, c->dir, i);
        off += (size_t)snprintf(c->boot + off, sizeof(c->boot) - off,
                                "%s%d=127.0.0.1:%d", i > 1 ? "," : "", i,
                                c->base + i);
    }
    for (int i = 1; i <= n; i++) {
        start(c, i);
        char line[256];
        if (expect(&c->p[i], "started", 5000, line, sizeof(line)) != 0) {
            dump_logs(c);
            fail_msg("node %d did not start", i);
        }
    }
}

static void destroy(struct cluster *c)
{
    for (int i = 1; i <= MAXN; i++) {
        kill9(c, i);
    }
    sh("rm -rf %s", c->dir);
}

struct st {
    char role[16];
    unsigned long long term, leader, commit, applied, snap;
};

static int status(struct cluster *c, int i, struct st *s)
{
    char line[512];
    say(&c->p[i], "status\n");
    if (expect(&c->p[i], "status", 3000, line, sizeof(line)) != 0) {
        return -1;
    }
    unsigned long long first;
    unsigned peers;
    if (sscanf(line,
               "status id=%*u role=%15s term=%llu leader=%llu commit=%llu "
               "applied=%llu peers=%u snap=%llu first=%llu",
               s->role, &s->term, &s->leader, &s->commit, &s->applied, &peers,
               &s->snap, &first) != 8) {
        return -1;
    }
    return 0;
}

/* The leader all live nodes agree on, within timeout. */
static int wait_leader(struct cluster *c, long timeout_ms)
{
    long end = now_ms() + timeout_ms;
    while (now_ms() < end) {
        int leader = 0, agree = 1;
        for (int i = 1; i <= c->n; i++) {
            struct st s;
            if (c->p[i].pid == 0 || status(c, i, &s) != 0) {
                continue;
            }
            if (s.leader == 0) {
                agree = 0;
            } else if (leader == 0) {
                leader = (int)s.leader;
            } else if ((int)s.leader != leader) {
                agree = 0;
            }
        }
        if (agree && leader != 0 && c->p[leader].pid != 0) {
            return leader;
        }
        usleep(50 * 1000);
    }
    return 0;
}

/* put NAME VALUE at node i; returns the operation's result (0 = ok). */
static int put(struct cluster *c, int i, const char *name, const char *val)
{
    long id = ++c->next_id;
    char want[32], line[256];
    say(&c->p[i], "put %ld %s %s\n", id, name, val);
    snprintf(want, sizeof(want), "done %ld ", id);
    if (expect(&c->p[i], want, 6000, line, sizeof(line)) != 0) {
        return -9999;
    }
    return atoi(line + strlen(want));
}

static int get(struct cluster *c, int i, const char *name, char *val,
               size_t cap)
{
    long id = ++c->next_id;
    char want[32], line[4200];
    say(&c->p[i], "get %ld %s\n", id, name);
    snprintf(want, sizeof(want), "val %ld ", id);
    if (expect(&c->p[i], want, 6000, line, sizeof(line)) != 0) {
        return -9999;
    }
    snprintf(val, cap, "%s", line + strlen(want));
    return 0;
}

static void check_get(struct cluster *c, int i, const char *name,
                      const char *want)
{
    char v[4096];
    if (get(c, i, name, v, sizeof(v)) != 0 || strcmp(v, want) != 0) {
        dump_logs(c);
        fail_msg("node %d: %s = '%s', want '%s'", i, name, v, want);
    }
}

/* ---- Tests ------------------------------------------------------------ */

/* Three nodes elect a leader; a write through any node is read on every
 * node, linearizably. */
static void test_cluster_elects_and_replicates(void **state)
{
    (void)state;
    struct cluster c;
    init(&c, 3, NULL);
    int l = wait_leader(&c, 5000);
    assert_int_not_equal(l, 0);
    for (int i = 1; i <= 3; i++) {
        char name[16], val[16];
        snprintf(name, sizeof(name), "k%d", i);
        snprintf(val, sizeof(val), "from-%d", i);
        assert_int_equal(put(&c, i, name, val), 0);
        for (int j = 1; j <= 3; j++) {
            check_get(&c, j, name, val);
        }
    }
    destroy(&c);
}

/* The leader is killed with SIGKILL: a new one is elected, nothing
 * acknowledged is lost, and the old leader catches up when it returns. */
static void test_leader_kill9(void **state)
{
    (void)state;
    struct cluster c;
    init(&c, 3, NULL);
    int l = wait_leader(&c, 5000);
    assert_int_not_equal(l, 0);
    int other = l == 1 ? 2 : 1;
    char name[16], val[16];
    for (int k = 0; k < 20; k++) {
        snprintf(name, sizeof(name), "a%d", k);
        snprintf(val, sizeof(val), "v%d", k);
        assert_int_equal(put(&c, k % 2 ? l : other, name, val), 0);
    }
    kill9(&c, l);
    int l2 = wait_leader(&c, 5000);
    assert_int_not_equal(l2, 0);
    assert_int_not_equal(l2, l);
    for (int k = 0; k < 20; k++) {
        snprintf(name, sizeof(name), "a%d", k);
        snprintf(val, sizeof(val), "v%d", k);
        check_get(&c, other, name, val);
    }
    assert_int_equal(put(&c, other, "after", "kill"), 0);
    start(&c, l);
    char line[128];
    assert_int_equal(expect(&c.p[l], "started", 5000, line, sizeof(line)), 0);
    check_get(&c, l, "after", "kill");
    check_get(&c, l, "a19", "v19");
    destroy(&c);
}

/* A follower that was down catches up from the log; one that fell behind
 * the leader's snapshot catches up by snapshot. */
static void test_follower_catches_up_by_snapshot(void **state)
{
    (void)state;
    struct cluster c;
    init(&c, 3, "--snapshot-entries 20");
    int l = wait_leader(&c, 5000);
    assert_int_not_equal(l, 0);
    int f = l == 3 ? 2 : 3;
    kill9(&c, f);
    char name[16], val[16];
    for (int k = 0; k < 120; k++) {
        snprintf(name, sizeof(name), "s%d", k);
        snprintf(val, sizeof(val), "x%d", k);
        assert_int_equal(put(&c, l, name, val), 0);
    }
    struct st s;
    assert_int_equal(status(&c, l, &s), 0);
    assert_true(s.snap > 0); /* The leader compacted its log. */
    start(&c, f);
    char line[128];
    assert_int_equal(expect(&c.p[f], "started", 5000, line, sizeof(line)), 0);
    check_get(&c, f, "s119", "x119");
    check_get(&c, f, "s0", "x0");
    assert_int_equal(status(&c, f, &s), 0);
    assert_true(s.snap > 0); /* It got there by installing a snapshot. */
    destroy(&c);
}

/* A process with another cluster's secret, and raw garbage on the peer
 * port, are refused and logged; the cluster goes on undisturbed. */
static void test_wrong_secret_and_garbage_refused(void **state)
{
    (void)state;
    struct cluster c;
    init(&c, 3, NULL);
    int l = wait_leader(&c, 5000);
    assert_int_not_equal(l, 0);
    struct st before;
    assert_int_equal(status(&c, l, &before), 0);
    /* Node 4: same addresses, its own secret, claiming to be a member. */
    c.n = 4;
    sh("mkdir -p %s/n4 && head -c 32 /dev/urandom > %s/n4/secret && "
       "chmod 600 %s/n4/secret",
       c.dir, c.dir, c.dir);
    size_t bl = strlen(c.boot);
    snprintf(c.boot + bl, sizeof(c.boot) - bl, ",4=127.0.0.1:%d", c.base + 4);
    start(&c, 4);
    char line[128];
    assert_int_equal(expect(&c.p[4], "started", 5000, line, sizeof(line)), 0);
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
    assert_int_equal(status(&c, l, &after), 0);
    assert_string_equal(after.role, "leader");
    assert_int_equal(after.term, before.term);
    assert_int_equal(put(&c, l, "still", "fine"), 0);
    char cmd[1000];
    snprintf(cmd, sizeof(cmd),
             "grep -q 'claims node 4.*before authenticating' %s/node%d.log && "
             "grep -q 'does not hold the cluster secret' %s/node4.log && "
             "grep -q 'bad magic' %s/node%d.log",
             c.dir, l, c.dir, c.dir, l);
    if (system(cmd) != 0) {
        dump_logs(&c);
        fail_msg("the refusals were not logged");
    }
    c.n = 4;
    destroy(&c);
}

/* Five nodes survive two losses; with three down, a write fails with
 * ETIMEDOUT and the log says why. */
static void test_five_nodes_quorum(void **state)
{
    (void)state;
    struct cluster c;
    init(&c, 5, NULL);
    int l = wait_leader(&c, 5000);
    assert_int_not_equal(l, 0);
    int down = 0, alive = 0;
    for (int i = 1; i <= 5 && down < 2; i++) {
        if (i != l) {
            kill9(&c, i);
            down++;
        }
    }
    assert_int_equal(put(&c, l, "two-down", "ok"), 0);
    for (int i = 1; i <= 5; i++) {
        if (c.p[i].pid != 0 && i != l) {
            alive = i;
        }
    }
    kill9(&c, l);
    assert_int_equal(put(&c, alive, "no-quorum", "x"), -ETIMEDOUT);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "grep -q 'no quorum: 2 of 5 voters' %s/node%d.log",
             c.dir, alive);
    if (system(cmd) != 0) {
        dump_logs(&c);
        fail_msg("the timeout's reason was not logged");
    }
    destroy(&c);
}

int main(int argc, char **argv)
{
    exe = argc > 1 ? argv[1] : "./raftfs-testnode";
    signal(SIGPIPE, SIG_IGN);
    port_base = 17200 + (getpid() % 50) * 100;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_elects_and_replicates),
        cmocka_unit_test(test_leader_kill9),
        cmocka_unit_test(test_follower_catches_up_by_snapshot),
        cmocka_unit_test(test_wrong_secret_and_garbage_refused),
        cmocka_unit_test(test_five_nodes_quorum),
    };
    return cmocka_run_group_tests_name("cluster", tests, NULL, NULL);
}
