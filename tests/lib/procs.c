/*
 * Process clusters for tests and benchmarks. See procs.h.
 */
#include "procs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *pc_exe = "./raftfs-testnode";
static int port_base = 0;

void (*pc_fail_hook)(void);

void pc_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "procs: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (pc_fail_hook != NULL) {
        pc_fail_hook();
    }
    abort();
}

void (*pc_fail_hook)(void);


long pc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void pc_sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) {
        pc_fail("command failed: %s", cmd);
    }
}

void pc_start(struct cluster *c, int i)
{
    struct proc *p = &c->p[i];
    int in[2], out[2];
    if (pipe(in) != 0) pc_fail("pipe");
    if (pipe(out) != 0) pc_fail("pipe");
    char id[16], dir[200], listen[64], log[200];
    snprintf(id, sizeof(id), "%d", i);
    snprintf(dir, sizeof(dir), "%s/n%d", c->dir, i);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", c->base + i);
    snprintf(log, sizeof(log), "%s/node%d.log", c->dir, i);
    pid_t pid = fork();
    if (pid < 0) pc_fail("fork");
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
        char *argv[20] = {(char *)pc_exe, o_id, id, o_dir, dir, o_listen,
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
        execv(pc_exe, argv);
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
int pc_expect(struct proc *p, const char *prefix, long timeout_ms,
                  char *line, size_t cap)
{
    long end = pc_now_ms() + timeout_ms;
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
        long left = end - pc_now_ms();
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

void pc_say(struct proc *p, const char *fmt, ...)
{
    char b[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof(b), fmt, ap);
    va_end(ap);
    if (write(p->in, b, (size_t)n) != n) pc_fail("write to node");
}

void pc_kill9(struct cluster *c, int i)
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

void pc_dump_logs(struct cluster *c)
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

/*
 * Reserve ports base+1..base+9 for this process: an exclusive lock on a
 * file named after base, held until the cluster is destroyed (or the process ends, even
 * by a crash). A check that the ports are free is not enough: a test of
 * another run that stopped one of its nodes to restart it leaves that port
 * free for a moment, and the restart then meets our node there. The fd, or
 * -1 if another process holds base.
 */
int pc_reserve_ports(int base)
{
    mkdir("/tmp/raftfs-test-ports", 0777);
    char path[64];
    snprintf(path, sizeof(path), "/tmp/raftfs-test-ports/%d", base);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

void pc_init(struct cluster *c, int n, const char *extra)
{
    memset(c, 0, sizeof(*c));
    c->n = n;
    c->extra = extra;
    if (port_base == 0) {
        port_base = 17200 + (getpid() % 50) * 100;
    }
    c->base_lock = -1;
    for (int tries = 0; tries < 1000 && c->base_lock < 0; tries++) {
        c->base_lock = pc_reserve_ports(port_base);
        if (c->base_lock < 0) {
            port_base = port_base >= 60000 ? 20000 : port_base + 10;
        }
    }
    c->base = port_base;
    port_base += 10;
    snprintf(c->dir, sizeof(c->dir), "/tmp/raftfs-cluster-XXXXXX");
    if (mkdtemp(c->dir) == NULL) pc_fail("mkdtemp");
    pc_sh("head -c 32 /dev/urandom > %s/secret && chmod 600 %s/secret", c->dir,
       c->dir);
    size_t off = 0;
    for (int i = 1; i <= n; i++) {
        pc_sh("mkdir -p %s/n%d && cp -p %s/secret %s/n%d/secret", c->dir, i,
           c->dir, c->dir, i);
        off += (size_t)snprintf(c->boot + off, sizeof(c->boot) - off,
                                "%s%d=127.0.0.1:%d", i > 1 ? "," : "", i,
                                c->base + i);
    }
    for (int i = 1; i <= n; i++) {
        pc_start(c, i);
        char line[256];
        if (pc_expect(&c->p[i], "started", 5000, line, sizeof(line)) != 0) {
            pc_dump_logs(c);
            pc_fail("node %d did not start", i);
        }
    }
}

void pc_destroy(struct cluster *c)
{
    for (int i = 1; i <= MAXN; i++) {
        pc_kill9(c, i);
    }
    pc_sh("rm -rf %s", c->dir);
    if (c->base_lock > 0) {
        close(c->base_lock);
        c->base_lock = -1;
    }
}

int pc_status(struct cluster *c, int i, struct st *s)
{
    char line[512];
    pc_say(&c->p[i], "status\n");
    if (pc_expect(&c->p[i], "status", 3000, line, sizeof(line)) != 0) {
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
int pc_wait_leader(struct cluster *c, long timeout_ms)
{
    long end = pc_now_ms() + timeout_ms;
    while (pc_now_ms() < end) {
        int leader = 0, agree = 1;
        for (int i = 1; i <= c->n; i++) {
            struct st s;
            if (c->p[i].pid == 0 || pc_status(c, i, &s) != 0) {
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
int pc_put(struct cluster *c, int i, const char *name, const char *val)
{
    long id = ++c->next_id;
    char want[32], line[256];
    pc_say(&c->p[i], "put %ld %s %s\n", id, name, val);
    snprintf(want, sizeof(want), "done %ld ", id);
    if (pc_expect(&c->p[i], want, 6000, line, sizeof(line)) != 0) {
        return -9999;
    }
    return atoi(line + strlen(want));
}

int pc_get(struct cluster *c, int i, const char *name, char *val,
               size_t cap)
{
    long id = ++c->next_id;
    char want[32], line[4200];
    pc_say(&c->p[i], "get %ld %s\n", id, name);
    snprintf(want, sizeof(want), "val %ld ", id);
    if (pc_expect(&c->p[i], want, 6000, line, sizeof(line)) != 0) {
        return -9999;
    }
    snprintf(val, cap, "%s", line + strlen(want));
    return 0;
}

void pc_check_get(struct cluster *c, int i, const char *name,
                      const char *want)
{
    char v[4096];
    if (pc_get(c, i, name, v, sizeof(v)) != 0 || strcmp(v, want) != 0) {
        pc_dump_logs(c);
        pc_fail("node %d: %s = '%s', want '%s'", i, name, v, want);
    }
}

