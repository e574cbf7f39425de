/*
 * raftfs-chaos: a cluster under faults, checked for linearizability.
 *
 *   raftfs-chaos RAFTFS NET_SH [--seed S] [--seconds T] [--nodes N]
 *
 * N nodes (default 5), each in its own network namespace with its own
 * mount (tests/chaos/net.sh builds and removes the network). One client
 * per node writes and reads register files through its mount; every
 * operation is recorded with its invocation and completion time and its
 * outcome (ok, failed, unknown). A nemesis, randomized from the seed,
 * partitions the network (majority/minority, isolated leader, one-way,
 * bridge),
 * kills nodes with SIGKILL and restarts them, pauses them with SIGSTOP
 * for longer than an election timeout, transfers leadership, and removes
 * a member and brings its host back wiped, under a new id (ids are never
 * reused: the core refuses a removed one). Then it
 * heals everything, every client reads every key, and the history is
 * checked: per-key linearizability (checker.h), which also finds lost
 * acknowledged writes; and every replica must reach the same state.
 * Beside them, one flock client per node takes an exclusive flock on one
 * shared file in a loop and reads its fencing token. At the end the
 * cluster's own record of the file's lock grants and releases (`raftfs
 * watch --holders`, read from one node) is replayed: never two holders;
 * every token a grant to its client's node; and holds may overlap only
 * where the record shows the earlier grant ended by its holder's session
 * end (check_flock).
 *
 * The last line is `chaos: seed=S ops=O faults=F anomalies=A
 * flock_holds=N flock_overlaps=K flock_excused=E`; on failure the offending key's history
 * and the replay command come before it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "../lib/mounts.h"
#include "../lib/procs.h"
#include "checker.h"

#define KEYS 5

static const char *net_sh;
static char tag[16];
static struct mcluster C;
static uint64_t seed = 1;
static int seconds = 40;
static uint64_t t0_ns;
/* --local: mounts with reads=local, checked for the weaker promise. */
static bool local_mode;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec - t0_ns;
}

/* Deterministic choices from the seed (the schedule, not the timing). */
static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void net(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void net(const char *fmt, ...)
{
    char args[256], cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "sh %s %s >/dev/null 2>&1", net_sh, args);
    if (system(cmd) != 0) {
        fprintf(stderr, "chaos: net.sh %s failed\n", args);
    }
}

static void enter_netns(struct mcluster *c, int i)
{
    (void)c;
    char path[128];
    snprintf(path, sizeof(path), "/run/netns/%s-%d", tag, i);
    int fd = open(path, O_RDONLY);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
        perror(path);
        _exit(126);
    }
    close(fd);
}

/* ---- Nodes, guarded against clients walking into a bare directory ---- */

static pthread_rwlock_t guard[MC_MAX + 1];
static atomic_bool up[MC_MAX + 1];
static atomic_bool stopped[MC_MAX + 1];

static void node_kill(int i)
{
    kill(C.pid[i], SIGKILL);
    /* In-flight operations fail now, as when the kernel sees a daemon
     * die; the kernel may not see it at once (a daemon thread can be stuck
     * on a lock a client's request holds: see the watchdog in
     * mount-tools/raftfs.c), and a client waiting forever would keep the
     * guard below from ever being taken. */
    mc_abort(&C, i);
    pthread_rwlock_wrlock(&guard[i]);
    mc_kill9(&C, i); /* ...then the dead mount is detached. */
    up[i] = false;
    pthread_rwlock_unlock(&guard[i]);
}

static void node_restart(int i)
{
    pthread_rwlock_wrlock(&guard[i]);
    mc_start(&C, i);
    up[i] = true;
    pthread_rwlock_unlock(&guard[i]);
}

/* The node id each slot (network namespace, data folder, mount) runs
 * under now. A removed member's host comes back wiped under a fresh id,
 * as docs/guide.md tells an operator to do. */
static int ids[MC_MAX + 1];
static int next_id;

static int slot_of(int id)
{
    for (int i = 1; i <= C.n; i++) {
        if (ids[i] == id) {
            return i;
        }
    }
    return 0;
}

/* The leader as node i's admin socket says (no FUSE involved). */
static int leader_of(int i)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "timeout 2 %s status -d %s --json 2>/dev/null | "
             "sed -n 's/.*\"leader\":\\([0-9]*\\).*/\\1/p'",
             mc_exe, C.data[i]);
    FILE *f = popen(cmd, "r");
    int l = 0;
    if (f != NULL) {
        if (fscanf(f, "%d", &l) != 1) {
            l = 0;
        }
        pclose(f);
    }
    return slot_of(l);
}

static int any_leader(void)
{
    for (int i = 1; i <= C.n; i++) {
        if (up[i] && !stopped[i]) {
            int l = leader_of(i);
            if (l > 0) {
                return l;
            }
        }
    }
    return 0;
}

/* ---- Clients ---------------------------------------------------------- */

struct history {
    pthread_mutex_t lock;
    struct lin_op *ops;
    size_t n, cap;
    size_t ok, failed, unknown;
};
static struct history H = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* A lock held for sure: from the return of its O_EXCL create to the call of
 * its unlink. Two of these must never overlap. */
struct hold {
    int client;
    uint64_t from, to;
};
static struct hold *holds;
static size_t n_holds, cap_holds, lock_tries;

/* --local: every read with the revision its node had, and the values of
 * writes that definitely failed (they must never be read). */
struct local_read {
    int client, key;
    int64_t value;
    uint64_t revision, call;
};
static struct local_read *lreads;
static size_t n_lreads, cap_lreads;
static int64_t *failed_writes;
static size_t n_failed_writes, cap_failed_writes;
static atomic_bool clients_stop;

/* Room for element n of a growing array of elements of size bytes. */
static void *room_for(void *p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) {
        return p;
    }
    *cap = *cap ? 2 * *cap : 256;
    p = realloc(p, *cap * size);
    if (p == NULL) {
        fprintf(stderr, "chaos: out of memory\n");
        abort();
    }
    return p;
}

static void record(const struct lin_op *op, int outcome)
{
    pthread_mutex_lock(&H.lock);
    if (outcome < 0) {
        H.failed++;
        if (op->kind == LIN_WRITE) {
            failed_writes = room_for(failed_writes, &cap_failed_writes,
                                     n_failed_writes, sizeof(int64_t));
            failed_writes[n_failed_writes++] = op->value;
        }
    } else {
        H.ops = room_for(H.ops, &H.cap, H.n, sizeof(*H.ops));
        H.ops[H.n++] = *op;
        if (outcome == 0) {
            H.ok++;
        } else {
            H.unknown++;
        }
    }
    pthread_mutex_unlock(&H.lock);
}

/* One write: open with O_TRUNC (nothing is sent yet: the truncate is
 * staged), write (one entry with the data), close. Returns 0 ok, -1 not
 * applied, 1 unknown. If the write failed, the truncate is still owed and
 * the close sends it: *emptied is 1 if the close then returned 0 (the file
 * is empty, as after open(O_TRUNC) on ext4), 2 if the close failed too (it
 * may be), else 0. */
static int do_write(const char *path, int64_t v, int *emptied)
{
    *emptied = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        return -1; /* Nothing was proposed. */
    }
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%" PRId64, v);
    ssize_t n = write(fd, buf, (size_t)len);
    int e = errno;
    int closed = close(fd);
    if (n == len) {
        return 0;
    }
    *emptied = closed == 0 ? 1 : 2;
    return e == EROFS ? -1 : 1; /* EROFS: refused before proposing. */
}

/* The revision (log index of the last change) this node has for fd's
 * file, or 0. */
static uint64_t revision_of(int fd)
{
    char rev[32];
    ssize_t n = fgetxattr(fd, "user.raftfs.revision", rev, sizeof(rev) - 1);
    if (n <= 0) {
        return 0;
    }
    rev[n] = '\0';
    return strtoull(rev, NULL, 10);
}

static __thread uint64_t last_revision;

/* One read: 0 with *v (LIN_ABSENT if no file), or -1 (no information). */
static int do_read(const char *path, int64_t *v)
{
    last_revision = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        if (errno == ENOENT) {
            if (getenv("RAFTFS_CHAOS_DEBUG")) {
                printf("debug: %s: ENOENT at t=%.3f\n", path, now_ns() / 1e9);
            }
            *v = LIN_ABSENT;
            return 0;
        }
        return -1;
    }
    char buf[32];
    /* --local: the revision first, so the content read is no older. */
    if (local_mode) {
        last_revision = revision_of(fd);
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0) {
        return -1;
    }
    buf[n] = '\0';
    if (n == 0 && getenv("RAFTFS_CHAOS_DEBUG")) {
        printf("debug: %s: 0 bytes at t=%.3f\n", path, now_ns() / 1e9);
    }
    *v = n == 0 ? LIN_ABSENT : strtoll(buf, NULL, 10);
    return 0;
}

/* The lock file: create it with O_EXCL (the cluster-wide lock of shell
 * scripts, `set -C`), hold it a moment, remove it. */
static bool owes_unlink[MC_MAX + 1]; /* A holder whose unlink failed. */

/* Appends to the shared file "log": each a token "C-N\n" of client C.
 * outcome: 0 acknowledged, 1 unknown, -1 refused. */
struct append {
    int client;
    int seq;
    int outcome;
    uint64_t call, ret; /* now_ns(): places a loss among nemesis events. */
};
static struct append *appends;
static size_t n_appends, cap_appends;

static void do_append(int i, int seq)
{
    char tok[32];
    int len = snprintf(tok, sizeof(tok), "%d-%d\n", i, seq);
    uint64_t call = now_ns();
    int fd = open(mc_path(&C, i, "log"), O_WRONLY | O_CREAT | O_APPEND,
                  0644);
    int outcome = -1; /* open proposes nothing */
    if (fd >= 0) {
        ssize_t n = write(fd, tok, (size_t)len);
        int e = errno;
        close(fd);
        outcome = n == len ? 0 : (e == EROFS ? -1 : 1);
    }
    pthread_mutex_lock(&H.lock);
    appends = room_for(appends, &cap_appends, n_appends, sizeof(*appends));
    appends[n_appends++] = (struct append){i, seq, outcome, call, now_ns()};
    pthread_mutex_unlock(&H.lock);
}

/* A register write by replacement: a temporary file renamed over it, as
 * scripts replace configuration. 0 ok, -1 not applied, 1 unknown. */
static int do_replace(int i, const char *path, int64_t v)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "tmp-%d", i);
    char tpath[512];
    snprintf(tpath, sizeof(tpath), "%s", mc_path(&C, i, tmp));
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%" PRId64, v);
    if (mc_write(tpath, buf, (size_t)len) != 0) {
        return -1; /* The register is untouched. */
    }
    if (rename(tpath, path) == 0) {
        return 0;
    }
    return errno == EROFS ? -1 : 1;
}

/* A register write from the shell, as `echo V > f` in a script. Its exit
 * status cannot tell refused from unknown: a failure counts as unknown,
 * and so does an empty file (the redirect's truncate, still owed when the
 * write failed, goes with the shell's close). */
static int do_shell_write(const char *path, int64_t v, int *emptied)
{
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "printf %%s %" PRId64 " > '%s' 2>/dev/null",
             v, path);
    int rv = system(cmd) == 0 ? 0 : 1;
    *emptied = rv == 0 ? 0 : 2;
    return rv;
}

static void do_lock(int i)
{
    const char *path = mc_path(&C, i, "lock");
    if (owes_unlink[i]) {
        /* Still ours (nobody else removes it): release it now. */
        if (unlink(path) == 0 || errno == ENOENT) {
            owes_unlink[i] = false;
        }
        return;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        return; /* EEXIST: someone holds it; other errors: unknown. */
    }
    uint64_t from = now_ns();
    close(fd);
    usleep(20000);
    uint64_t to = now_ns();
    if (unlink(path) != 0) {
        /* Held until now for sure anyway; release it when we can. */
        owes_unlink[i] = true;
    }
    pthread_mutex_lock(&H.lock);
    holds = room_for(holds, &cap_holds, n_holds, sizeof(*holds));
    holds[n_holds++] = (struct hold){i, from, to};
    pthread_mutex_unlock(&H.lock);
}

/* Percent of operations that append to the shared log (10; the
 * environment's RAFTFS_CHAOS_APPENDS raises it to stress that path). */
static unsigned append_pct = 10;

static void *client_main(void *arg)
{
    int i = (int)(intptr_t)arg;
    uint64_t r = seed * 7919 + (uint64_t)i;
    int64_t seq = 0;
    while (!clients_stop) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        int key = (int)(r % KEYS);
        bool wr = (r >> 8) % 2 == 0;
        pthread_rwlock_rdlock(&guard[i]);
        if (!up[i]) {
            pthread_rwlock_unlock(&guard[i]);
            usleep(50000);
            continue;
        }
        if ((r >> 20) % 100 < append_pct && !owes_unlink[i]) {
            do_append(i, (int)++seq);
            pthread_rwlock_unlock(&guard[i]);
            continue;
        }
        if ((r >> 16) % 8 == 0 || owes_unlink[i]) {
            __atomic_fetch_add(&lock_tries, 1, __ATOMIC_RELAXED);
            do_lock(i);
            pthread_rwlock_unlock(&guard[i]);
            continue;
        }
        char name[16];
        snprintf(name, sizeof(name), "r%d", key);
        const char *path = mc_path(&C, i, name);
        struct lin_op op = {.key = key, .client = i, .call = now_ns()};
        int outcome;
        int emptied = 0;
        if (wr) {
            op.kind = LIN_WRITE;
            op.value = (int64_t)i * 1000000 + ++seq;
            unsigned how = (unsigned)((r >> 24) % 10);
            outcome = how < 2   ? do_replace(i, path, op.value)
                      : how < 3 ? do_shell_write(path, op.value, &emptied)
                                : do_write(path, op.value, &emptied);
        } else {
            op.kind = LIN_READ;
            outcome = do_read(path, &op.value);
        }
        op.ret = outcome == 1 ? LIN_NEVER : now_ns();
        int incarnation = ids[i];
        pthread_rwlock_unlock(&guard[i]);
        if (!wr && outcome != 0) {
            outcome = -1; /* A failed read tells nothing. */
        }
        if (!wr && outcome == 0 && local_mode) {
            pthread_mutex_lock(&H.lock);
            lreads = room_for(lreads, &cap_lreads, n_lreads,
                              sizeof(*lreads));
            lreads[n_lreads++] = (struct local_read){
                incarnation, key, op.value, last_revision, op.call};
            pthread_mutex_unlock(&H.lock);
        }
        record(&op, outcome);
        if (emptied != 0) {
            /* The close after a failed write truncated the file (1), or
             * may have (2): a write of "no content" in the same span. */
            struct lin_op t = op;
            t.value = LIN_ABSENT;
            t.ret = emptied == 1 ? now_ns() : LIN_NEVER;
            record(&t, emptied == 1 ? 0 : 1);
        }
        usleep(5000 + (unsigned)(r % 20000));
    }
    return NULL;
}

/* ---- flock clients ----------------------------------------------------- */

/* One more client per node takes an exclusive flock on one shared file
 * ("flock") through its mount, reads its fencing token (the revision of
 * the grant), holds it a few ms and unlocks. A hold is recorded from the
 * return of the grant to the call of the unlock. Holds overlap only when
 * the earlier grant's holder lost its session meanwhile (docs/guide.md,
 * "Fencing"), as the cluster's record shows: then its token is the
 * smaller one. */
struct fhold {
    int client;            /* The slot whose mount it went through. */
    int node;              /* That slot's node id then (the record's). */
    uint64_t call;         /* flock() called. */
    uint64_t from, to;     /* Held for sure, as far as the caller knows. */
    uint64_t token;        /* user.raftfs.lock; 0: none could be read, */
    int token_errno;       /* for this reason. */
    bool unlock_refused;   /* LOCK_UN answered ENOLCK or EROFS. */
};
static struct fhold *fholds;
static size_t n_fholds, cap_fholds;
/* Attempts, and those that failed: timed out (EINTR), ENOLCK, other. */
static size_t flock_tries, flock_timeouts, flock_enolck, flock_other;
/* When each flock client's wait began (0: not waiting), for the waker. */
static _Atomic uint64_t flock_wait_since[MC_MAX + 1];
static pthread_t flock_threads[MC_MAX + 1];
/* RAFTFS_CHAOS_NO_FLOCK=1: the clients take no lock at all, to show the
 * check failing. */
static bool flock_skip;
/* One hold in this many lasts 3 s (RAFTFS_CHAOS_LONG_HOLDS sets it: a
 * smaller number makes overlaps, allowed ones, more likely). */
static uint64_t flock_long_every = 150;

#define FLOCK_WAIT_NS 2000000000u /* A wait longer than this is cut short. */

static void on_wake(int sig)
{
    (void)sig; /* Only to interrupt a blocked flock() with EINTR. */
}

/* A blocking flock() with a bounded wait: the interrupt makes the kernel
 * send FUSE_INTERRUPT, the node cancels the waiter (LOCK_CANCEL) and
 * answers EINTR, or 0 if the grant applied first (docs/fs.md, "Locks").
 * flock(2) has no timeout, and polling with LOCK_NB would put one log entry
 * per poll into the cluster. */
static atomic_bool waker_stop;

static void *flock_waker(void *arg)
{
    (void)arg;
    while (!waker_stop) {
        uint64_t now = now_ns();
        for (int i = 1; i <= C.n; i++) {
            uint64_t since = flock_wait_since[i];
            if (since != 0 && now - since > FLOCK_WAIT_NS) {
                pthread_kill(flock_threads[i], SIGUSR1);
            }
        }
        usleep(50000);
    }
    return NULL;
}

static uint64_t lock_token(int fd, int *err)
{
    char buf[32];
    *err = 0;
    for (int tries = 0; tries < 3; tries++) {
        ssize_t n = fgetxattr(fd, "user.raftfs.lock", buf, sizeof(buf) - 1);
        if (n > 0) {
            buf[n] = '\0';
            return strtoull(buf, NULL, 10);
        }
        *err = n < 0 ? errno : EINVAL;
        if (n < 0 && errno != EINTR) {
            break; /* ENODATA: this node holds none (its session ended). */
        }
    }
    return 0;
}

static void *flock_client_main(void *arg)
{
    int i = (int)(intptr_t)arg;
    uint64_t r = seed * 104729 + (uint64_t)i;
    while (!clients_stop) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        pthread_rwlock_rdlock(&guard[i]);
        int fd = up[i] ? open(mc_path(&C, i, "flock"), O_RDONLY) : -1;
        if (fd < 0) {
            pthread_rwlock_unlock(&guard[i]);
            usleep(50000);
            continue;
        }
        uint64_t call = now_ns();
        flock_wait_since[i] = call;
        int rc = flock_skip ? 0 : flock(fd, LOCK_EX);
        int e = errno;
        flock_wait_since[i] = 0;
        __atomic_fetch_add(&flock_tries, 1, __ATOMIC_RELAXED);
        if (rc != 0) {
            close(fd);
            pthread_rwlock_unlock(&guard[i]);
            size_t *c = e == EINTR    ? &flock_timeouts
                        : e == ENOLCK ? &flock_enolck
                                      : &flock_other;
            __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
            usleep(20000);
            continue;
        }
        struct fhold h = {.client = i, .node = ids[i], .call = call,
                          .from = now_ns()};
        h.token = lock_token(fd, &h.token_errno);
        /* Mostly a few ms; now and then past session_ttl, so that a
         * partition or pause can end the session of a holder that still
         * holds, and the cluster give the lock to another meanwhile. */
        bool long_hold = (r >> 24) % flock_long_every == 0;
        if (long_hold) {
            /* In steps: the run's end does not wait for it. */
            for (int k = 0; k < 30 && !clients_stop; k++) {
                usleep(100000);
            }
        } else {
            usleep(2000 + (unsigned)(r % 6000));
        }
        h.to = now_ns();
        if (!flock_skip && flock(fd, LOCK_UN) != 0) {
            h.unlock_refused = errno == ENOLCK || errno == EROFS;
        }
        close(fd);
        pthread_rwlock_unlock(&guard[i]);
        pthread_mutex_lock(&H.lock);
        fholds = room_for(fholds, &cap_fholds, n_fholds, sizeof(*fholds));
        fholds[n_fholds++] = h;
        pthread_mutex_unlock(&H.lock);
        usleep((unsigned)((r >> 16) % 10000));
    }
    return NULL;
}

/* ---- Nemesis ---------------------------------------------------------- */

static int faults;

/* When the nemesis disturbed each slot's node (paused, killed, cut off
 * from the leader or the majority, removed): only then may its session
 * end, and a flock hold through it overlap a later grant. Written by the
 * nemesis (the main thread) only, read after the clients stopped. */
struct disturbance {
    int slot;
    uint64_t from, to;
};
static struct disturbance *dists;
static size_t n_dists, cap_dists;
static bool hit[MC_MAX + 1]; /* Slots the current fault disturbs. */
/* After a fault heals, a SESSION_END proposed during it may still commit
 * and a node catch up on it: the disturbance lasts this much longer. */
#define DISTURB_SLACK_NS 1000000000u

static void disturbed_until_now(uint64_t from)
{
    for (int i = 1; i <= C.n; i++) {
        if (hit[i]) {
            dists = room_for(dists, &cap_dists, n_dists, sizeof(*dists));
            dists[n_dists++] = (struct disturbance){
                i, from, now_ns() + DISTURB_SLACK_NS};
            hit[i] = false;
        }
    }
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("nemesis: t=%.1fs ", (double)now_ns() / 1e9);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

static void cut_both(int a, int b)
{
    net("cut %s %d %d %d", tag, C.n, a, b);
    net("cut %s %d %d %d", tag, C.n, b, a);
}

/* Slot x's node was removed (or may have been): bring its host back as a
 * new member. Kill it, wipe its data folder, `raftfs init --join` under the
 * next id, have the leader add that id at the same address, mount again.
 * Its clients' local reads count as a new client's from here on (an empty
 * node catching up may serve older state than the removed one did). */
static void rejoin(int x, const char *why)
{
    int id = next_id++;
    say("%s: node %d's host comes back wiped as node %d (slot %d)", why,
        ids[x], id, x);
    node_kill(x);
    pc_sh("rm -rf %s", C.data[x]);
    pc_sh("%s init %s --id %d --listen 10.91.0.%d:7100 --join "
          "--secret %s/secret >/dev/null",
          mc_exe, C.data[x], id, x, C.dir);
    pthread_rwlock_wrlock(&guard[x]);
    ids[x] = id; /* Clients read it under the guard. */
    pthread_rwlock_unlock(&guard[x]);
    node_restart(x);
    for (int tries = 0; tries < 3; tries++) {
        int l = any_leader();
        char cmd[1024];
        snprintf(cmd, sizeof(cmd),
                 "timeout 20 %s members -d %s add %d 10.91.0.%d:7100 "
                 ">/dev/null 2>&1",
                 mc_exe, C.data[l ? l : 1], id, x);
        if (system(cmd) == 0) {
            return;
        }
        usleep(1000000);
    }
    say("add of node %d did not complete", id);
}

static void nemesis_once(void)
{
    int n = C.n;
    int kind = (int)(rnd() % 8);
    uint64_t f0 = now_ns();
    /* RAFTFS_CHAOS_KINDS=05 limits the nemesis to those faults (0
     * partition, 1 isolated leader, 2 one-way, 3 kill, 4 pause, 5
     * transfer, 6 remove and re-add, 7 bridge), to narrow down a
     * failure. */
    const char *only = getenv("RAFTFS_CHAOS_KINDS");
    while (only != NULL && *only && strchr(only, '0' + kind) == NULL) {
        kind = (int)(rnd() % 8);
    }
    faults++;
    switch (kind) {
    case 0: { /* Majority / minority. */
        int side[MC_MAX + 1], minority = (int)(rnd() % (unsigned)(n / 2)) + 1;
        char desc[64] = "";
        for (int i = 1; i <= n; i++) {
            side[i] = 0;
        }
        for (int k = 0; k < minority;) {
            int i = 1 + (int)(rnd() % (unsigned)n);
            if (!side[i]) {
                side[i] = 1;
                hit[i] = true;
                k++;
                snprintf(desc + strlen(desc), sizeof(desc) - strlen(desc),
                         " %d", i);
            }
        }
        say("partition: minority {%s } from the rest", desc);
        for (int a = 1; a <= n; a++) {
            for (int b = a + 1; b <= n; b++) {
                if (side[a] != side[b]) {
                    cut_both(a, b);
                }
            }
        }
        usleep(2500000);
        break;
    }
    case 1: { /* Isolated leader. */
        int l = any_leader();
        if (l == 0) {
            say("isolate leader: none known");
            break;
        }
        say("partition: leader %d isolated", l);
        hit[l] = true;
        for (int i = 1; i <= n; i++) {
            if (i != l) {
                cut_both(l, i);
            }
        }
        usleep(2500000);
        break;
    }
    case 2: { /* One-way: the leader hears nobody. */
        int l = any_leader();
        if (l == 0) {
            break;
        }
        say("partition: leader %d hears no one (one-way)", l);
        hit[l] = true;
        for (int i = 1; i <= n; i++) {
            if (i != l) {
                net("cut %s %d %d %d", tag, n, i, l);
            }
        }
        usleep(2500000);
        break;
    }
    case 3: { /* kill -9 and restart. */
        int i = 1 + (int)(rnd() % (unsigned)n);
        say("kill -9 node %d", i);
        hit[i] = true;
        node_kill(i);
        usleep(1000000 + (unsigned)(rnd() % 2000000));
        say("restart node %d", i);
        node_restart(i);
        break;
    }
    case 4: { /* Pause longer than an election timeout. */
        int i = 1 + (int)(rnd() % (unsigned)n);
        say("SIGSTOP node %d for 1.5 s", i);
        hit[i] = true;
        stopped[i] = true;
        kill(C.pid[i], SIGSTOP);
        usleep(1500000);
        kill(C.pid[i], SIGCONT);
        stopped[i] = false;
        break;
    }
    case 7: { /* Bridge: two halves that hear each other only through
               * one node. */
        int b = 1 + (int)(rnd() % (unsigned)n);
        int side[MC_MAX + 1];
        char d1[32] = "", d2[32] = "";
        for (int i = 1, k = 0; i <= n; i++) {
            if (i == b) {
                side[i] = -1;
                continue;
            }
            side[i] = k++ % 2;
            hit[i] = true;
            char *d = side[i] ? d2 : d1;
            snprintf(d + strlen(d), 32 - strlen(d), " %d", i);
        }
        say("bridge: {%s } and {%s } meet only through node %d", d1, d2, b);
        for (int a = 1; a <= n; a++) {
            for (int c = a + 1; c <= n; c++) {
                if (side[a] >= 0 && side[c] >= 0 && side[a] != side[c]) {
                    cut_both(a, c);
                }
            }
        }
        usleep(2500000);
        break;
    }
    case 6: { /* Membership: remove a member, its host rejoins wiped. */
        int l = any_leader();
        if (l == 0) {
            break;
        }
        int x = 1 + (int)(rnd() % (unsigned)n);
        if (x == l) {
            x = x % n + 1;
        }
        char cmd[1024];
        say("remove node %d from the cluster", ids[x]);
        hit[x] = true;
        snprintf(cmd, sizeof(cmd),
                 "timeout 10 %s members -d %s remove %d >/dev/null 2>&1",
                 mc_exe, C.data[l], ids[x]);
        if (system(cmd) != 0) {
            /* It may still commit: the final heal checks membership. */
            say("remove did not complete");
            break;
        }
        usleep(1500000);
        rejoin(x, "after removal");
        break;
    }
    default: { /* Leadership transfer. */
        int l = any_leader();
        if (l == 0) {
            break;
        }
        say("leader transfer away from %d", l);
        char cmd[512];
        snprintf(cmd, sizeof(cmd),
                 "timeout 5 %s leader -d %s transfer >/dev/null 2>&1",
                 mc_exe, C.data[l]);
        if (system(cmd) != 0) {
            say("leader transfer did not complete");
        }
        break;
    }
    }
    net("heal %s %d", tag, n);
    disturbed_until_now(f0);
    usleep(500000 + (unsigned)(rnd() % 1000000));
}

/* ---- The promise of reads=local ---------------------------------------- */

static int by_client_key_call(const void *a, const void *b)
{
    const struct local_read *x = a, *y = b;
    if (x->client != y->client) {
        return x->client - y->client;
    }
    if (x->key != y->key) {
        return x->key - y->key;
    }
    return x->call < y->call ? -1 : x->call > y->call;
}

/* Every value read was written by a write that did not definitely fail
 * (so it was committed at some point), and a node's reads of a key never
 * go back in time (the revisions it reports never decrease). */
static int check_local(void)
{
    int bad = 0;
    for (size_t r = 0; r < n_lreads; r++) {
        int64_t v = lreads[r].value;
        if (v == LIN_ABSENT) {
            continue;
        }
        bool written = false, failed = false;
        for (size_t k = 0; k < H.n && !written; k++) {
            written = H.ops[k].kind == LIN_WRITE && H.ops[k].value == v;
        }
        for (size_t k = 0; k < n_failed_writes && !failed; k++) {
            failed = failed_writes[k] == v;
        }
        if (!written || failed) {
            printf("chaos: ANOMALY: client %d read r%d = %" PRId64
                   ", which no write %s\n",
                   lreads[r].client, lreads[r].key, v,
                   failed ? "that failed may produce" : "produced");
            bad++;
        }
    }
    qsort(lreads, n_lreads, sizeof(*lreads), by_client_key_call);
    const struct local_read *last = NULL;
    for (size_t r = 0; r < n_lreads; r++) {
        const struct local_read *b = &lreads[r];
        if (last != NULL &&
            (last->client != b->client || last->key != b->key)) {
            last = NULL;
        }
        /* Revision 0: the xattr could not be read (the file was replaced
         * after the open, say): no information. */
        if (b->revision == 0) {
            continue;
        }
        if (last != NULL && b->revision < last->revision) {
            printf("chaos: ANOMALY: node %d went back in time on r%d: "
                   "revision %" PRIu64 " after %" PRIu64 "\n",
                   b->client, b->key, b->revision, last->revision);
            bad++;
        }
        last = b;
    }
    printf("chaos: reads=local: %zu reads, every value committed, never "
           "back in time: %s\n",
           n_lreads, bad ? "NO, see above" : "yes");
    return bad;
}

/* ---- The flock clients' holds ------------------------------------------ */

static bool disturbed(int slot, uint64_t from, uint64_t to)
{
    for (size_t d = 0; d < n_dists; d++) {
        if (dists[d].slot == slot && dists[d].from <= to &&
            from <= dists[d].to) {
            return true;
        }
    }
    return false;
}

/* ---- The cluster's record of the flock file's locks ------------------- */

/* One lock or unlock line of `raftfs watch --holders` on the flock file
 * (docs/guide.md): what the replicated state did, in log order. */
struct lockrec {
    uint64_t rev;     /* The entry that did it. */
    bool grant;       /* lock; else unlock */
    bool by_session;  /* unlock: its holder's session ended. */
    bool exclusive;
    bool flock;
    uint64_t node, boot, owner;
    uint64_t grant_rev; /* The holding's grant (= rev for a lock). */
};
static struct lockrec *recs;
/* The flock file's revision when made, and after the last write (0: not
 * read): the record is read between them. */
static uint64_t flock_born, flock_end;

/* By path, after the close: a create is staged until then, and has no
 * revision yet. */
static uint64_t file_revision(const char *path)
{
    char buf[32];
    ssize_t n = getxattr(path, "user.raftfs.revision", buf, sizeof(buf) - 1);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    return strtoull(buf, NULL, 10);
}
static size_t n_recs, cap_recs;
static int rec_node; /* The node the record was read from; 0: none. */

static bool field(const char *line, const char *key, uint64_t *v)
{
    const char *p = strstr(line, key);
    if (p == NULL) {
        return false;
    }
    *v = strtoull(p + strlen(key), NULL, 10);
    return true;
}

/* Parse the lines of one answer (after its header) into recs. */
static bool parse_records(char *text)
{
    for (char *line = strtok(text, "\n"); line != NULL;
         line = strtok(NULL, "\n")) {
        char op[16];
        uint64_t rev;
        if (sscanf(line, "%" SCNu64 " %15s", &rev, op) != 2) {
            return false;
        }
        bool lock = strcmp(op, "lock") == 0;
        if (!lock && strcmp(op, "unlock") != 0) {
            continue; /* The file's own writes. */
        }
        const char *tab = strchr(line, '\t');
        struct lockrec r = {.rev = rev, .grant = lock};
        if (tab == NULL || !field(tab, "node=", &r.node) ||
            !field(tab, "boot=", &r.boot) || !field(tab, "owner=", &r.owner) ||
            !field(tab, "grant=", &r.grant_rev)) {
            return false;
        }
        r.exclusive = strstr(tab, " type=write") != NULL;
        r.flock = strstr(tab, " kind=flock") != NULL;
        r.by_session = strstr(tab, " by=session") != NULL;
        recs = room_for(recs, &cap_recs, n_recs, sizeof(*recs));
        recs[n_recs++] = r;
    }
    return true;
}

/* Read the flock file's lock records, from since to until, from the
 * first node whose history holds them all (a node that installed a
 * snapshot, as a wiped one does, has history only after it). */
static void read_records(uint64_t since, uint64_t until)
{
    size_t cap = 65536;
    char *buf = malloc(cap + 1);
    for (int i = 1; i <= C.n && rec_node == 0; i++) {
        uint64_t at = since;
        bool ok = up[i];
        n_recs = 0;
        while (ok && at < until) {
            char name[64];
            snprintf(name, sizeof(name), "user.raftfs.changes.holders.%" PRIu64,
                     at);
            /* Never parks: the write at until is under the path. */
            ssize_t n = getxattr(mc_path(&C, i, "flock"), name, buf, cap);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                printf("chaos: flock record: node %d: %s\n", ids[i],
                       n < 0 ? strerror(errno) : "empty");
                ok = false;
                break;
            }
            buf[n] = '\0';
            char *nl = strchr(buf, '\n');
            ok = nl != NULL && sscanf(buf, "%" SCNu64, &at) == 1 &&
                 parse_records(nl + 1);
        }
        rec_node = ok ? ids[i] : 0;
    }
    free(buf);
}

static const struct lockrec *grant_of(uint64_t node, uint64_t rev)
{
    for (size_t k = 0; k < n_recs; k++) {
        if (recs[k].grant && recs[k].rev == rev && recs[k].node == node) {
            return &recs[k];
        }
    }
    return NULL;
}

/* How the holding granted at grant_rev (to node) ended in the record, at
 * or before revision by: NULL if it had not ended. */
static const struct lockrec *end_of(uint64_t node, uint64_t grant_rev,
                                    uint64_t by)
{
    for (size_t k = 0; k < n_recs && recs[k].rev <= by; k++) {
        if (!recs[k].grant && recs[k].grant_rev == grant_rev &&
            recs[k].node == node) {
            return &recs[k];
        }
    }
    return NULL;
}

/* (a) Replay the record in log order: two exclusive flock holdings (or an
 * exclusive and a shared one) of different owners are never held at once
 * in the replicated state. Returns the anomalies. */
static int replay_records(void)
{
    struct lockrec held[64];
    size_t nh = 0;
    int bad = 0;
    for (size_t k = 0; k < n_recs; k++) {
        const struct lockrec *r = &recs[k];
        if (!r->flock) {
            continue;
        }
        size_t j = 0;
        while (j < nh && !(held[j].node == r->node &&
                           held[j].boot == r->boot &&
                           held[j].owner == r->owner)) {
            j++;
        }
        if (!r->grant) {
            if (j < nh) {
                held[j] = held[--nh];
            }
            continue;
        }
        for (size_t m = 0; m < nh; m++) {
            if (m != j && (r->exclusive || held[m].exclusive)) {
                if (bad++ < 5) {
                    printf("chaos: ANOMALY: the record grants node %" PRIu64
                           " the flock at revision %" PRIu64 " while node "
                           "%" PRIu64 " holds it (granted at %" PRIu64 ")\n",
                           r->node, r->rev, held[m].node, held[m].grant_rev);
                }
            }
        }
        if (j < nh) {
            held[j] = *r; /* An upgrade or downgrade. */
        } else if (nh < sizeof(held) / sizeof(*held)) {
            held[nh++] = *r;
        }
    }
    return bad;
}

/* (c) The record's excuse for a hold e that overlapped (or came before in
 * real time but after in token order) one granted at later_tok: its grant
 * ended by its holder's session end, no later than later_tok. A hold
 * without a token cannot be looked up by its grant: any session end of
 * its node that released a grant by then must do. */
static bool record_excuses(const struct fhold *e, uint64_t later_tok)
{
    uint64_t by = later_tok != 0 ? later_tok : UINT64_MAX;
    if (e->token != 0) {
        const struct lockrec *end = end_of((uint64_t)e->node, e->token, by);
        return end != NULL && end->by_session;
    }
    for (size_t k = 0; k < n_recs && recs[k].rev <= by; k++) {
        if (!recs[k].grant && recs[k].by_session &&
            recs[k].node == (uint64_t)e->node) {
            return true;
        }
    }
    return false;
}

/* The hold of two that the cluster granted first: the smaller token (none
 * read counts as the smallest). It is the one that may have lost its lock
 * to the other without knowing. */
static const struct fhold *earlier_grant(const struct fhold *a,
                                         const struct fhold *b)
{
    return a->token <= b->token ? a : b;
}

static bool lost_session(const struct fhold *h)
{
    return h->unlock_refused || disturbed(h->client, h->call, h->to);
}

static int by_from(const void *a, const void *b)
{
    const struct fhold *x = a, *y = b;
    return x->from < y->from ? -1 : x->from > y->from;
}

static int by_token(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* 1. Tokens: unique, each a revision the cluster reached, and each a
 *    grant to the hold's node in the cluster's record (b).
 * 2. The record, replayed, never has two holders at once (a).
 * 3. Two holds overlap in real time, or are out of token order (a hold
 *    that ended before another began has the larger token), only if the
 *    record shows that the one granted first (the smaller token) ended by
 *    its holder's session end, not by an unlock (c). Whether the nemesis
 *    disturbed that node is told beside, as information.
 * 4. A grant after which the node gives no token (it holds no lock on the
 *    file) is allowed only where the record shows a session end of that
 *    node dropping a lock of it (it cannot be looked up by its grant).
 * Returns the anomalies; *overlaps: the overlaps found; *excused: those
 * excused by the record. */
static int check_flock(uint64_t applied, size_t *overlaps, size_t *excused)
{
    int bad = 0, shown = 0;
    size_t no_token = 0, dup = 0, beyond = 0, inversions = 0;
    size_t not_granted = 0, nemesis_also = 0;
    int replay_bad = 0;
    if (rec_node == 0) {
        printf("chaos: ANOMALY: no node could give the flock file's lock "
               "record\n");
        bad++;
    } else {
        replay_bad = replay_records();
    }
    qsort(fholds, n_fholds, sizeof(*fholds), by_from);
    uint64_t *toks = calloc(n_fholds + 1, sizeof(*toks));
    size_t nt = 0;
    size_t no_token_bad = 0;
    for (size_t a = 0; a < n_fholds; a++) {
        const struct fhold *h = &fholds[a];
        if (h->token == 0) {
            /* flock() said granted, but this node holds no lock on the
             * file: only right if its session ended after the grant. */
            no_token++;
            if (rec_node == 0 || !record_excuses(h, 0)) {
                if (no_token_bad++ < 5) {
                    printf("chaos: ANOMALY: client %d's flock returned at "
                           "%.3f s (called at %.3f s) but its node gave no "
                           "token (%s), and the record shows no session "
                           "end of node %d dropping a lock (the nemesis %s "
                           "it)\n",
                           h->client, h->from / 1e9, h->call / 1e9,
                           strerror(h->token_errno), h->node,
                           lost_session(h) ? "did disturb" : "did not disturb");
                }
            } else if (getenv("RAFTFS_CHAOS_DEBUG")) {
                printf("debug: client %d: hold without a token at %.3f s "
                       "(called at %.3f s), excused by the record\n",
                       h->client, h->from / 1e9, h->call / 1e9);
            }
        } else {
            toks[nt++] = fholds[a].token;
            beyond += fholds[a].token > applied;
            if (rec_node != 0 && grant_of((uint64_t)h->node, h->token) == NULL) {
                if (not_granted++ < 5) {
                    printf("chaos: ANOMALY: client %d's token %" PRIu64
                           " is no grant to node %d in the record\n",
                           h->client, h->token, h->node);
                }
            }
        }
    }
    qsort(toks, nt, sizeof(*toks), by_token);
    for (size_t k = 1; k < nt; k++) {
        if (toks[k] == toks[k - 1]) {
            printf("chaos: ANOMALY: flock token %" PRIu64 " given twice\n",
                   toks[k]);
            dup++;
        }
    }
    free(toks);
    if (beyond > 0) {
        printf("chaos: ANOMALY: %zu flock tokens beyond the last applied "
               "revision %" PRIu64 "\n",
               beyond, applied);
    }
    for (size_t a = 0; a < n_fholds; a++) {
        const struct fhold *x = &fholds[a];
        for (size_t b = a + 1; b < n_fholds; b++) {
            const struct fhold *y = &fholds[b]; /* y->from >= x->from */
            bool overlap = y->from < x->to;
            bool inverted = !overlap && x->token != 0 && y->token != 0 &&
                            x->token > y->token;
            if (!overlap && !inverted) {
                continue;
            }
            const struct fhold *e = earlier_grant(x, y);
            const struct fhold *later = e == x ? y : x;
            *overlaps += overlap;
            inversions += inverted;
            if (rec_node != 0 && record_excuses(e, later->token)) {
                *excused += overlap;
                nemesis_also += overlap && lost_session(e);
                continue;
            }
            bad++;
            if (shown++ < 5) {
                printf("chaos: ANOMALY: flock holds %s: client %d token "
                       "%" PRIu64 " [%.3f, %.3f] s and client %d token "
                       "%" PRIu64 " [%.3f, %.3f] s; the record does not "
                       "show client %d's grant ended by its session (the "
                       "nemesis %s its node)\n",
                       overlap ? "overlap" : "out of token order", x->client,
                       x->token, x->from / 1e9, x->to / 1e9, y->client,
                       y->token, y->from / 1e9, y->to / 1e9, e->client,
                       lost_session(e) ? "did disturb" : "did not disturb");
            }
        }
    }
    printf("chaos: flock: %zu tries, %zu holds (%zu without a token), "
           "%zu waits cut at 2 s, %zu ENOLCK, %zu other errors; record of "
           "node %d: %zu lock records, never two holders: %s; %zu "
           "overlaps (%zu excused by the record: the earlier grant ended "
           "by its session; %zu of them also on a node the nemesis "
           "disturbed) and %zu out of token order; tokens unique and "
           "granted in the record, holds agree with it: %s\n",
           flock_tries, n_fholds, no_token, flock_timeouts, flock_enolck,
           flock_other, rec_node, n_recs, replay_bad ? "NO" : "yes",
           *overlaps, *excused, nemesis_also, inversions,
           bad || dup || beyond || no_token_bad || not_granted || replay_bad
               ? "NO, see above"
               : "yes");
    return bad + (int)dup + (beyond > 0) + (int)no_token_bad +
           (int)not_granted + replay_bad;
}

/* ---- Main ------------------------------------------------------------- */

static void teardown(void)
{
    if (C.n > 0) {
        for (int i = 1; i <= C.n; i++) {
            if (C.pid[i] > 0) {
                kill(C.pid[i], SIGCONT);
            }
        }
        mc_destroy(&C);
        net("down %s %d", tag, C.n);
        C.n = 0;
    }
}

/* A sanitizer report in a node's log is a defect even when every check
 * passed: count it. After an anomaly, show each node's last errors too: CI
 * keeps only this output, and the folder with the logs goes at teardown. */
static int scan_node_logs(bool show_errors)
{
    int reports = 0;
    for (int i = 1; i <= C.n; i++) {
        char path[300];
        snprintf(path, sizeof(path), "%s/node%d.log", C.dir, i);
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }
        char line[512], last[3][512];
        int errors = 0, here = 0;
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strstr(line, "Sanitizer") != NULL ||
                strstr(line, "runtime error:") != NULL) {
                if (here++ < 3) {
                    printf("chaos: ANOMALY: node %d: %s", i, line);
                }
            }
            if (strstr(line, " ERROR: ") != NULL ||
                strstr(line, " WARN: ") != NULL) {
                snprintf(last[errors++ % 3], sizeof(last[0]), "%s", line);
            }
        }
        fclose(f);
        reports += here;
        if (show_errors) {
            int from = errors > 3 ? errors - 3 : 0;
            printf("chaos: node %d logged %d warnings and errors%s\n", i,
                   errors, errors ? ", the last:" : "");
            for (int k = from; k < errors; k++) {
                printf("chaos:   %s", last[k % 3]);
            }
        }
    }
    if (reports > 0) {
        printf("chaos: %d sanitizer report(s) in the nodes' logs\n", reports);
    }
    return reports;
}

static void on_fail(void)
{
    teardown();
    exit(2);
}

int main(int argc, char **argv)
{
    /* Line by line: a crash must not eat the tail of what we printed. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 3) {
        fprintf(stderr, "usage: raftfs-chaos RAFTFS NET_SH [--seed S] "
                        "[--seconds T] [--nodes N]\n");
        return 2;
    }
    static char exe[4096];
    if (realpath(argv[1], exe) == NULL) {
        perror(argv[1]);
        return 2;
    }
    mc_exe = exe;
    net_sh = argv[2];
    int n = 5;
    seed = (uint64_t)time(NULL);
    if (getenv("RAFTFS_CHAOS_APPENDS")) {
        append_pct = (unsigned)strtoul(getenv("RAFTFS_CHAOS_APPENDS"), NULL,
                                       10);
    }
    if (getenv("RAFTFS_CHAOS_SEED")) {
        seed = strtoull(getenv("RAFTFS_CHAOS_SEED"), NULL, 10);
    }
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--local") == 0) {
            local_mode = true;
        } else if (v != NULL && strcmp(a, "--seed") == 0) {
            seed = strtoull(v, NULL, 10), i++;
        } else if (v != NULL && strcmp(a, "--seconds") == 0) {
            seconds = atoi(v), i++;
        } else if (v != NULL && strcmp(a, "--nodes") == 0) {
            n = atoi(v), i++;
        } else {
            fprintf(stderr, "raftfs-chaos: unknown argument '%s'\n", a);
            return 2;
        }
    }
    if (n < 3 || n > MC_MAX) {
        fprintf(stderr, "raftfs-chaos: --nodes must be 3 to %d\n", MC_MAX);
        return 2;
    }
    if (access("/dev/fuse", R_OK | W_OK) != 0 || geteuid() != 0) {
        fprintf(stderr, "raftfs-chaos: needs root and /dev/fuse: skipping\n");
        return 77;
    }
    rng_state = seed * 2654435761u + 1;
    printf("chaos: seed %" PRIu64 ", %d nodes, %d s of faults, reads=%s\n",
           seed, n, seconds, local_mode ? "local" : "linearizable");
    fflush(stdout);
    snprintf(tag, sizeof(tag), "rc%d", (int)(getpid() % 100000));
    pc_fail_hook = on_fail;
    mc_pre_exec = enter_netns;
    signal(SIGPIPE, SIG_IGN); /* A closed output must not skip clean-up. */
    /* Delays and reordering come from the nodes' test fault layer (this
     * kernel has no netem): every frame is held back 0..3 ms. */
    char netfaults[64];
    snprintf(netfaults, sizeof(netfaults), "3:%" PRIu64, seed);
    setenv("RAFTFS_TEST_NET_FAULTS", netfaults, 0);

    memset(&C, 0, sizeof(C));
    C.n = n;
    snprintf(C.dir, sizeof(C.dir), "/tmp/raftfs-chaos-XXXXXX");
    if (mkdtemp(C.dir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    mc_register(&C);
    atexit(teardown);
    net("down %s %d", tag, n); /* Leftovers of an earlier run, if any. */
    net("up %s %d", tag, n);
    char peers[512] = "";
    for (int i = 1; i <= n; i++) {
        snprintf(peers + strlen(peers), sizeof(peers) - strlen(peers),
                 "%s%d=10.91.0.%d:7100", i > 1 ? "," : "", i, i);
    }
    char dir[sizeof(C.dir)];
    memcpy(dir, C.dir, sizeof(dir));
    for (int i = 1; i <= n; i++) {
        snprintf(C.mnt[i], sizeof(C.mnt[i]), "%s/n%d", dir, i);
        snprintf(C.data[i], sizeof(C.data[i]), "%s/d%d", dir, i);
        /* RAFTFS_CHAOS_OPTS=reads=local shows the harness catching the
         * stale reads that mode allows. */
        const char *o = getenv("RAFTFS_CHAOS_OPTS");
        /* session_ttl=2 (the least): a partition (2.5 s) outlasts it, so
         * sessions end under the flock clients. */
        /* history=2000000: the flock check reads the whole run's lock
         * record from one node at the end, and the register clients
         * alone can make more entries than the default 100,000 keeps. */
        snprintf(C.opts[i], sizeof(C.opts[i]),
                 "commit_timeout=4,session_ttl=2,history=2000000%s%s%s",
                 local_mode ? ",reads=local" : "", o ? "," : "",
                 o ? o : "");
        mkdir(C.mnt[i], 0755);
        char secret[256] = "";
        if (i > 1) {
            snprintf(secret, sizeof(secret), "--secret %s/secret", C.data[1]);
        }
        pc_sh("%s init %s --id %d --listen 10.91.0.%d:7100 --peers %s %s "
              ">/dev/null",
              mc_exe, C.data[i], i, i, peers, secret);
        if (i == 1) { /* For hosts that rejoin after node 1 was wiped. */
            pc_sh("cp -p %s/secret %s/secret", C.data[1], dir);
        }
        ids[i] = i;
        pthread_rwlock_init(&guard[i], NULL);
    }
    next_id = n + 1;
    t0_ns = 0;
    t0_ns = now_ns();
    for (int i = 1; i <= n; i++) {
        mc_start(&C, i);
        up[i] = true;
    }
    long deadline = pc_now_ms() + 15000;
    while (any_leader() == 0 && pc_now_ms() < deadline) {
        usleep(100000);
    }
    printf("chaos: cluster up, leader %d\n", any_leader());

    pthread_t clients[MC_MAX + 1];
    for (int i = 1; i <= n; i++) {
        pthread_create(&clients[i], NULL, client_main, (void *)(intptr_t)i);
    }
    /* The flock clients' shared file, made once (they only open it). */
    for (int tries = 0; tries < 20; tries++) {
        int fd = open(mc_path(&C, 1, "flock"), O_WRONLY | O_CREAT, 0644);
        if (fd >= 0) {
            close(fd);
            flock_born = file_revision(mc_path(&C, 1, "flock"));
            break;
        }
        usleep(250000);
    }
    flock_skip = getenv("RAFTFS_CHAOS_NO_FLOCK") != NULL;
    if (getenv("RAFTFS_CHAOS_LONG_HOLDS") != NULL) {
        flock_long_every = strtoull(getenv("RAFTFS_CHAOS_LONG_HOLDS"), NULL,
                                    10);
        flock_long_every += flock_long_every == 0;
    }
    struct sigaction wake = {.sa_handler = on_wake}; /* No SA_RESTART. */
    sigaction(SIGUSR1, &wake, NULL);
    for (int i = 1; i <= n; i++) {
        pthread_create(&flock_threads[i], NULL, flock_client_main,
                       (void *)(intptr_t)i);
    }
    pthread_t waker;
    pthread_create(&waker, NULL, flock_waker, NULL);
    long end = pc_now_ms() + (long)seconds * 1000;
    while (pc_now_ms() < end) {
        nemesis_once();
    }
    say("healing everything");
    net("heal %s %d", tag, n);
    for (int i = 1; i <= n; i++) {
        if (C.pid[i] > 0) {
            kill(C.pid[i], SIGCONT);
        }
        stopped[i] = false;
        if (!up[i]) {
            node_restart(i);
        }
    }
    /* A slot whose node is not a member (a removal that completed late, an
     * add that did not): its host rejoins wiped under a new id. */
    long until = pc_now_ms() + 15000;
    while (any_leader() == 0 && pc_now_ms() < until) {
        usleep(100000);
    }
    for (int i = 1; i <= n; i++) {
        char cmd[1024];
        int l = any_leader();
        snprintf(cmd, sizeof(cmd),
                 "%s members -d %s list 2>/dev/null | grep -q '^%d '",
                 mc_exe, C.data[l ? l : 1], ids[i]);
        if (l != 0 && system(cmd) != 0) {
            uint64_t f = now_ns();
            hit[i] = true;
            rejoin(i, "not a member at the end");
            disturbed_until_now(f);
        }
    }
    usleep(3000000); /* Clients go on in the healed cluster. */
    clients_stop = true;
    for (int i = 1; i <= n; i++) {
        pthread_join(clients[i], NULL);
    }
    for (int i = 1; i <= n; i++) {
        pthread_join(flock_threads[i], NULL); /* The waker bounds a wait. */
    }
    waker_stop = true;
    pthread_join(waker, NULL);
    /* The cluster's record of the flock file's locks, up to a write after
     * every hold ended: that write's record ends the reading. */
    for (int i = 1; i <= n && flock_end == 0; i++) {
        int fd = open(mc_path(&C, i, "flock"), O_WRONLY | O_APPEND);
        bool wrote = fd >= 0 && write(fd, "x", 1) == 1;
        if (fd >= 0 && close(fd) == 0 && wrote) {
            flock_end = file_revision(mc_path(&C, i, "flock"));
        }
    }
    if (flock_born != 0 && flock_end != 0) {
        read_records(flock_born, flock_end);
    } else {
        printf("chaos: flock record: the flock file's revisions: made at "
               "%" PRIu64 ", written at the end at %" PRIu64 "\n",
               flock_born, flock_end);
    }
    /* Everyone reads every key: lost writes show up as anomalies. */
    for (int i = 1; i <= n; i++) {
        for (int k = 0; k < KEYS; k++) {
            char name[16];
            snprintf(name, sizeof(name), "r%d", k);
            struct lin_op op = {.key = k, .client = i, .kind = LIN_READ,
                                .call = now_ns()};
            int rv = -1;
            for (int tries = 0; rv != 0 && tries < 20; tries++) {
                rv = do_read(mc_path(&C, i, name), &op.value);
                if (rv != 0) {
                    usleep(500000);
                }
            }
            op.ret = now_ns();
            if (rv != 0) {
                printf("chaos: node %d cannot read %s after healing\n", i,
                       name);
            }
            record(&op, rv == 0 ? 0 : -1);
        }
    }
    /* Replicas converge: same applied index, same values. */
    int anomalies = 0;
    deadline = pc_now_ms() + 15000;
    bool same = false;
    while (!same && pc_now_ms() < deadline) {
        uint64_t a1 = mc_status(&C, 1, "applied_index");
        same = true;
        for (int i = 2; i <= n; i++) {
            same &= mc_status(&C, i, "applied_index") == a1;
        }
        if (!same) {
            usleep(200000);
        }
    }
    if (!same) {
        printf("chaos: ANOMALY replicas did not converge to one applied "
               "index\n");
        anomalies++;
    }
    if (local_mode) {
        /* reads=local lets the kernel keep names, attributes and pages
         * for cache_timeout (1 s); the node invalidates them from another
         * thread as it applies, a moment later. The final comparison is
         * of replicas, not of caches: let every cache run out first. */
        usleep(2500000);
    }
    /* Same state everywhere: a hash of every file's name and contents, as
     * each node's mount shows it. */
    uint64_t h1 = 0;
    for (int i = 1; i <= n; i++) {
        uint64_t h = 1469598103934665603ull;
        const char *names[KEYS + 2] = {"r0", "r1", "r2", "r3", "r4", "lock",
                                       "log"};
        for (int k = 0; k <= KEYS + 1; k++) {
            static char buf[1 << 20];
            buf[0] = '\0';
            ssize_t got = mc_read(mc_path(&C, i, names[k]), buf,
                                  sizeof(buf) - 1);
            if (got >= 0) {
                buf[got] = '\0';
            }
            const char *parts[3] = {names[k], "=", got >= 0 ? buf : "(none)"};
            for (int q = 0; q < 3; q++) {
                for (const char *p = parts[q]; *p; p++) {
                    h = (h ^ (uint8_t)*p) * 1099511628211ull;
                }
            }
        }
        printf("chaos: node %d state hash %016" PRIx64 "\n", i, h);
        if (i == 1) {
            h1 = h;
        } else if (h != h1) {
            printf("chaos: ANOMALY: node %d's state differs from node 1's\n",
                   i);
            anomalies++;
        }
    }
    /* Appends: every acknowledged token exactly once, an unknown one at
     * most once, a refused one never, as node 1 reads the log. */
    {
        static char logbuf[1 << 20];
        ssize_t got = mc_read(mc_path(&C, 1, "log"), logbuf,
                              sizeof(logbuf) - 1);
        logbuf[got > 0 ? got : 0] = '\0';
        int lost = 0, dup = 0, ghost = 0;
        for (size_t a = 0; a < n_appends; a++) {
            char tok[40];
            snprintf(tok, sizeof(tok), "%s%d-%d\n", "\n", appends[a].client,
                     appends[a].seq);
            /* Count occurrences at line starts. */
            int count = 0;
            size_t tl = strlen(tok + 1);
            for (char *p = logbuf; (p = strstr(p, tok + 1)) != NULL; p++) {
                if (p == logbuf || p[-1] == '\n') {
                    count++;
                }
            }
            (void)tl;
            if (appends[a].outcome == 0 && count == 0) {
                printf("chaos: append %d-%d (client %d) was acknowledged "
                       "but is not in the log (write() from t=%.3fs to "
                       "t=%.3fs)\n",
                       appends[a].client, appends[a].seq, appends[a].client,
                       (double)appends[a].call / 1e9,
                       (double)appends[a].ret / 1e9);
                lost++;
            }
            if (count > 1) {
                dup++;
            }
            if (appends[a].outcome < 0 && count > 0) {
                ghost++;
            }
        }
        /* A torn or overwritten token leaves a line that is no token: that
         * tells those apart from an append that never applied. */
        int lines = 0, malformed = 0;
        for (char *p = logbuf; *p != '\0';) {
            char *nl = strchr(p, '\n');
            size_t len = nl ? (size_t)(nl - p) : strlen(p);
            int c, q, used = 0;
            lines++;
            if (sscanf(p, "%d-%d%n", &c, &q, &used) != 2 ||
                (size_t)used != len || nl == NULL) {
                if (++malformed <= 3) {
                    printf("chaos: log line %d is no token: \"%.*s\"\n",
                           lines, (int)(len < 40 ? len : 40), p);
                }
            }
            p = nl ? nl + 1 : p + len;
        }
        printf("chaos: appends: %zu, lost %d, duplicated %d, refused but "
               "present %d; the log: %zd bytes, %d lines, %d no token\n",
               n_appends, lost, dup, ghost, got, lines, malformed);
        if (lost || dup || ghost || malformed) {
            printf("chaos: ANOMALY: appends lost, duplicated, from nowhere "
                   "or torn\n");
            anomalies += lost + dup + ghost + malformed;
        }
    }
    struct lin_report rep;
    memset(&rep, 0, sizeof(rep));
    size_t bad = 0;
    if (local_mode) {
        anomalies += check_local();
    } else {
        bad = lin_check(H.ops, H.n, &rep);
    }
    printf("chaos: %zu operations recorded (%zu ok, %zu unknown outcome, "
           "%zu failed and left out), %zu keys checked, %zu search states, "
           "%d faults injected\n",
           H.ok + H.unknown + H.failed, H.ok, H.unknown, H.failed, rep.keys,
           rep.explored, faults);
    if (bad > 0) {
        size_t pre = lin_minimal_prefix(H.ops, H.n, rep.first_bad_key);
        printf("chaos: ANOMALY: key r%d has no linearization; the first %zu "
               "of its operations already have none; their last 16 (client, "
               "op, value, [invoked, completed] ns):\n",
               rep.first_bad_key, pre);
        fflush(stdout);
        lin_print_key_range(H.ops, H.n, rep.first_bad_key, pre, 16);
        anomalies += (int)bad;
    }
    int lock_bad = 0;
    for (size_t a = 0; a < n_holds; a++) {
        for (size_t b = a + 1; b < n_holds; b++) {
            if (holds[a].from < holds[b].to && holds[b].from < holds[a].to) {
                printf("chaos: ANOMALY: clients %d and %d held the lock "
                       "together ([%" PRIu64 ", %" PRIu64 "] and [%" PRIu64
                       ", %" PRIu64 "] ns)\n",
                       holds[a].client, holds[b].client, holds[a].from,
                       holds[a].to, holds[b].from, holds[b].to);
                lock_bad++;
            }
        }
    }
    printf("chaos: lock: %zu attempts, %zu times held, never by two at "
           "once: %s\n",
           lock_tries, n_holds, lock_bad ? "NO, see above" : "yes");
    anomalies += lock_bad;
    size_t flock_overlaps = 0, flock_excused = 0;
    anomalies += check_flock(mc_status(&C, 1, "applied_index"),
                             &flock_overlaps, &flock_excused);
    if (H.ok == 0) {
        printf("chaos: ANOMALY: no operation succeeded\n");
        anomalies++;
    }
    anomalies += scan_node_logs(anomalies > 0);
    if (anomalies > 0) {
        printf("chaos: replay: %s %s %s --seed %" PRIu64 " --seconds %d "
               "--nodes %d%s\n",
               argv[0], argv[1], argv[2], seed, seconds, n,
               local_mode ? " --local" : "");
    }
    teardown();
    printf("chaos: seed=%" PRIu64 " ops=%zu faults=%d anomalies=%d "
           "flock_holds=%zu flock_overlaps=%zu flock_excused=%zu\n",
           seed, H.ok + H.unknown + H.failed, faults, anomalies, n_fholds,
           flock_overlaps, flock_excused);
    return anomalies ? 1 : 0;
}
