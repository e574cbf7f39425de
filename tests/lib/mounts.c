/*
 * Mounted clusters for tests. See mounts.h.
 */
#include "mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procs.h"

const char *mc_exe = "./raftfs";
void (*mc_pre_exec)(struct mcluster *c, int i);

/* Every cluster alive, for the exit and signal hook. */
static struct mcluster *live[64];

/* A daemon that died can leave its connection holding requests (seen
 * with a write-back in flight): abort it through fusectl, so nothing of
 * ours waits on it, then detach the mount. */
static void abort_conn(const char *mnt)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (f == NULL) {
        return;
    }
    char line[2048], want[300];
    snprintf(want, sizeof(want), " %s ", mnt);
    unsigned major, minor = 0;
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        found = strstr(line, want) != NULL && strstr(line, "fuse") &&
                sscanf(line, "%*u %*u %u:%u", &major, &minor) == 2;
    }
    fclose(f);
    if (!found) {
        return;
    }
    if (system("grep -q fusectl /proc/self/mounts || "
               "mount -t fusectl none /sys/fs/fuse/connections "
               "2>/dev/null") != 0) {
        /* Without fusectl, the lazy unmount below is all we can do. */
    }
    char path[128];
    snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%u/abort", minor);
    FILE *a = fopen(path, "w");
    if (a != NULL) {
        fputs("1", a);
        fclose(a);
    }
}

static void detach(const char *mnt)
{
    char cmd[512];
    abort_conn(mnt);
    snprintf(cmd, sizeof(cmd),
             "grep -q ' %s fuse' /proc/self/mounts && "
             "{ fusermount3 -u -z %s 2>/dev/null || umount -l %s; }; true",
             mnt, mnt, mnt);
    if (system(cmd) != 0) {
        /* Best effort; the next check reports a leftover. */
    }
}

static void cleanup_all(void)
{
    for (unsigned k = 0; k < sizeof(live) / sizeof(live[0]); k++) {
        struct mcluster *c = live[k];
        if (c == NULL) {
            continue;
        }
        for (int i = 1; i <= c->n; i++) {
            if (c->pid[i] > 0) {
                kill(c->pid[i], SIGKILL);
                waitpid(c->pid[i], NULL, 0);
                c->pid[i] = 0;
            }
            detach(c->mnt[i]);
        }
    }
}

static void on_signal(int sig)
{
    cleanup_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* A crash (a test bug, or a fault ASan traps) must not leave mounts behind
 * either: clean up, put back the handler that was there (ASan's, or the
 * default), and return, so the faulting instruction runs again and that
 * handler reports it with the real context. Inside a cmocka test, cmocka's
 * own handler takes these signals instead (it records a failure and goes
 * on), and the exit hook cleans up at the end. */
static struct sigaction before_fault[NSIG];

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    cleanup_all();
    sigaction(sig, &before_fault[sig], NULL);
    if (si->si_code <= 0) {
        raise(sig); /* Sent, not a fault: nothing would run again. */
    }
}

static void hook_once(void)
{
    static bool done;
    if (!done) {
        done = true;
        atexit(cleanup_all);
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        signal(SIGABRT, on_signal);
        static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
        for (unsigned k = 0; k < sizeof(faults) / sizeof(faults[0]); k++) {
            struct sigaction sa;
            memset(&sa, 0, sizeof(sa));
            sa.sa_sigaction = on_fault;
            sa.sa_flags = SA_SIGINFO | SA_NODEFER;
            sigemptyset(&sa.sa_mask);
            sigaction(faults[k], &sa, &before_fault[faults[k]]);
        }
    }
}

const char *mc_path(struct mcluster *c, int i, const char *rel)
{
    /* Per thread: clients on several threads build paths at once (a
     * shared rotation once made one thread unlink another's file). */
    static __thread char bufs[8][512];
    static __thread unsigned next;
    char *b = bufs[next++ % 8];
    snprintf(b, 512, "%s/%s", c->mnt[i], rel);
    return b;
}

int mc_write(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        return -errno;
    }
    ssize_t n = write(fd, data, len);
    int e = n < 0 ? errno : 0;
    if (close(fd) != 0 && e == 0) {
        e = errno;
    }
    if (e == 0 && (size_t)n != len) {
        e = EIO;
    }
    return -e;
}

ssize_t mc_read(const char *path, void *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return -errno;
    }
    size_t got = 0;
    while (got < cap) {
        ssize_t n = read(fd, (char *)buf + got, cap - got);
        if (n < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    return (ssize_t)got;
}

static bool mounted(const char *mnt)
{
    FILE *f = fopen("/proc/self/mounts", "r");
    if (f == NULL) {
        return false;
    }
    char line[1024], want[256];
    snprintf(want, sizeof(want), " %s fuse", mnt);
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        found = strstr(line, want) != NULL;
    }
    fclose(f);
    return found;
}

void mc_start(struct mcluster *c, int i)
{
    char log[256];
    snprintf(log, sizeof(log), "%s/node%d.log", c->dir, i);
    pid_t pid = fork();
    if (pid < 0) {
        pc_fail("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        int fd = open(log, O_CREAT | O_WRONLY | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        char *argv[8];
        int k = 0;
        argv[k++] = (char *)mc_exe;
        argv[k++] = (char *)"mount";
        argv[k++] = c->data[i];
        argv[k++] = c->mnt[i];
        argv[k++] = (char *)"-f";
        if (c->opts[i][0]) {
            argv[k++] = (char *)"-o";
            argv[k++] = c->opts[i];
        }
        argv[k] = NULL;
        if (mc_pre_exec != NULL) {
            mc_pre_exec(c, i);
        }
        execv(mc_exe, argv);
        _exit(127);
    }
    c->pid[i] = pid;
    long deadline = pc_now_ms() + 10000;
    while (pc_now_ms() < deadline) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            c->pid[i] = 0;
            mc_dump_logs(c);
            pc_fail("node %d exited during start-up (status %d)", i, status);
        }
        /* Only the mount table: any access through the mount may wait
         * for a quorum that the other nodes, not yet started, cannot
         * give. */
        if (mounted(c->mnt[i])) {
            return;
        }
        usleep(20000);
    }
    mc_dump_logs(c);
    pc_fail("node %d: mount %s did not answer in 10 s", i, c->mnt[i]);
}

void mc_register(struct mcluster *c)
{
    hook_once();
    for (unsigned k = 0; k < sizeof(live) / sizeof(live[0]); k++) {
        if (live[k] == NULL) {
            live[k] = c;
            return;
        }
    }
}

/* Whether 127.0.0.1:base+1 .. base+9 can be listened on now. Test runs
 * side by side (a developer's while CI runs, or several worktrees) would
 * otherwise meet on the same ports and fail at start-up ("address already
 * in use"); a port taken between this check and the node's bind is still
 * possible, but no longer likely. */
static bool ports_free(int base)
{
    for (int i = 1; i <= 9; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            return false;
        }
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)(base + i)),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (!ok) {
            return false;
        }
    }
    return true;
}

void mc_init(struct mcluster *c, int n, const char *opts)
{
    static int port_base;
    hook_once();
    memset(c, 0, sizeof(*c));
    c->n = n;
    if (port_base == 0) {
        port_base = 27200 + (getpid() % 50) * 100;
    }
    c->base_lock = -1;
    for (int tries = 0; tries < 1000; tries++) {
        c->base_lock = pc_reserve_ports(port_base);
        if (c->base_lock >= 0 && ports_free(port_base)) {
            break;
        }
        if (c->base_lock >= 0) {
            close(c->base_lock);
            c->base_lock = -1;
        }
        port_base = port_base >= 60000 ? 20000 : port_base + 10;
    }
    c->base = port_base;
    port_base += 10;
    snprintf(c->dir, sizeof(c->dir), "/tmp/raftfs-mounts-XXXXXX");
    if (mkdtemp(c->dir) == NULL) {
        pc_fail("mkdtemp: %s", strerror(errno));
    }
    for (unsigned k = 0; k < sizeof(live) / sizeof(live[0]); k++) {
        if (live[k] == NULL) {
            live[k] = c;
            break;
        }
    }
    char peers[512];
    size_t off = 0;
    for (int i = 1; i <= n; i++) {
        off += (size_t)snprintf(peers + off, sizeof(peers) - off,
                                "%s%d=127.0.0.1:%d", i > 1 ? "," : "", i,
                                c->base + i);
    }
    for (int i = 1; i <= n; i++) {
        char dir[sizeof(c->dir)];
        memcpy(dir, c->dir, sizeof(dir)); /* Not an overlapping source. */
        snprintf(c->mnt[i], sizeof(c->mnt[i]), "%s/n%d", dir, i);
        snprintf(c->data[i], sizeof(c->data[i]), "%s/d%d", dir, i);
        snprintf(c->opts[i], sizeof(c->opts[i]), "%s", opts ? opts : "");
        if (mkdir(c->mnt[i], 0755) != 0) {
            pc_fail("mkdir %s: %s", c->mnt[i], strerror(errno));
        }
        char secret[256] = "";
        if (i > 1) {
            snprintf(secret, sizeof(secret), "--secret %s/secret",
                     c->data[1]);
        }
        pc_sh("%s init %s --id %d --listen 127.0.0.1:%d --peers %s %s "
              ">/dev/null",
              mc_exe, c->data[i], i, c->base + i, peers, secret);
    }
    for (int i = 1; i <= n; i++) {
        mc_start(c, i);
    }
    if (mc_wait_leader(c, 10000) == 0) {
        mc_dump_logs(c);
        pc_fail("no leader in 10 s");
    }
}

void mc_prepare_join(struct mcluster *c, int i, const char *opts,
                     bool own_secret)
{
    char dir[sizeof(c->dir)];
    memcpy(dir, c->dir, sizeof(dir));
    snprintf(c->mnt[i], sizeof(c->mnt[i]), "%s/n%d", dir, i);
    snprintf(c->data[i], sizeof(c->data[i]), "%s/d%d", dir, i);
    snprintf(c->opts[i], sizeof(c->opts[i]), "%s", opts ? opts : "");
    if (mkdir(c->mnt[i], 0755) != 0) {
        pc_fail("mkdir %s: %s", c->mnt[i], strerror(errno));
    }
    char secret[256] = "";
    if (!own_secret) {
        snprintf(secret, sizeof(secret), "--secret %s/secret", c->data[1]);
    }
    pc_sh("%s init %s --id %d --listen 127.0.0.1:%d --join %s >/dev/null",
          mc_exe, c->data[i], i, c->base + i, secret);
    if (i > c->n) {
        c->n = i;
    }
}

int mc_raftfs(struct mcluster *c, int i, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s %s >> %s/admin.log 2>&1", mc_exe, args,
             c->dir);
    char *d = strstr(cmd, "DATA");
    if (d != NULL) {
        /* "DATA" in args stands for node i's data folder. */
        char rest[1024];
        snprintf(rest, sizeof(rest), "%s", d + 4);
        snprintf(d, sizeof(cmd) - (size_t)(d - cmd), "%s%s", c->data[i],
                 rest);
    }
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void mc_kill9(struct mcluster *c, int i)
{
    if (c->pid[i] > 0) {
        kill(c->pid[i], SIGKILL);
        /* Abort before waiting: a daemon thread stuck in the kernel on a
         * lock that a caller's request holds keeps the killed process
         * from ever being reaped, until that request ends. The node's
         * watchdog does the same; a test should not depend on it. */
        abort_conn(c->mnt[i]);
        waitpid(c->pid[i], NULL, 0);
        c->pid[i] = 0;
    }
    detach(c->mnt[i]);
}

void mc_abort(struct mcluster *c, int i)
{
    abort_conn(c->mnt[i]);
}

int mc_stop(struct mcluster *c, int i)
{
    int status = -1;
    if (c->pid[i] > 0) {
        kill(c->pid[i], SIGTERM);
        waitpid(c->pid[i], &status, 0);
        c->pid[i] = 0;
    }
    if (mounted(c->mnt[i])) {
        fprintf(stderr, "node %d exited (status %d) but left %s mounted\n",
                i, status, c->mnt[i]);
        mc_dump_logs(c);
        detach(c->mnt[i]);
        return -2; /* A failure. */
    }
    return status;
}

void mc_cleanup_all(void)
{
    cleanup_all();
}

void mc_destroy(struct mcluster *c)
{
    for (int i = 1; i <= c->n; i++) {
        mc_kill9(c, i);
    }
    for (unsigned k = 0; k < sizeof(live) / sizeof(live[0]); k++) {
        if (live[k] == c) {
            live[k] = NULL;
        }
    }
    pc_sh("rm -rf %s", c->dir);
    if (c->base_lock > 0) { /* 0: a cluster built by hand (none held). */
        close(c->base_lock);
        c->base_lock = -1;
    }
}

uint64_t mc_status(struct mcluster *c, int i, const char *key)
{
    char buf[8192], want[64];
    ssize_t n = mc_read(mc_path(c, i, ".raftfs/status"), buf, sizeof(buf) - 1);
    if (n < 0) {
        pc_fail("node %d status: %s", i, strerror((int)-n));
    }
    buf[n] = '\0';
    snprintf(want, sizeof(want), "\"%s\":", key);
    const char *p = strstr(buf, want);
    if (p == NULL) {
        pc_fail("node %d status has no %s: %s", i, key, buf);
    }
    return strtoull(p + strlen(want), NULL, 10);
}

int mc_wait_leader(struct mcluster *c, long timeout_ms)
{
    long deadline = pc_now_ms() + timeout_ms;
    while (pc_now_ms() < deadline) {
        int agreed = -1;
        for (int i = 1; i <= c->n && agreed != 0; i++) {
            if (c->pid[i] <= 0) {
                continue;
            }
            int l = (int)mc_status(c, i, "leader");
            agreed = l == 0 || (agreed > 0 && agreed != l) ? 0 : l;
        }
        if (agreed > 0 && c->pid[agreed] > 0) {
            return agreed;
        }
        usleep(50000);
    }
    return 0;
}

void mc_dump_logs(struct mcluster *c)
{
    for (int i = 1; i <= c->n; i++) {
        fprintf(stderr, "---- node %d log ----\n", i);
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "tail -n 40 %s/node%d.log >&2", c->dir, i);
        if (system(cmd) != 0) {
            /* No log yet. */
        }
    }
}
