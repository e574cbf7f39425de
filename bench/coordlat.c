/*
 * coordlat: the latency of the coordination primitives scripts use, for
 * bench/run, raftfs beside etcd (issue 14, item 7).
 *
 *   coordlat watch-fs DIR OPS NAME -- WATCH-COMMAND...
 *       Runs WATCH-COMMAND (e.g. `raftfs watch DIR` on another node's
 *       mount), then OPS times: writes DIR/wK (open, write, close) and waits
 *       until the watcher prints a line naming wK. Latency: from the write
 *       returning to that line arriving (0 if it came first), and also
 *       (NAME-start) from the write's start.
 *   coordlat watch-etcd HOST:PORT OPS NAME -- WATCH-COMMAND...
 *       The same with a put of key wK through etcd's JSON gateway on
 *       HOST:PORT (WATCH-COMMAND: `etcdctl watch --prefix w` on another
 *       member).
 *   coordlat lock-fs FILE OPS NAME
 *       OPS times flock(LOCK_EX) then flock(LOCK_UN) on FILE, uncontended:
 *       one acquire and release.
 *   coordlat lock-etcd HOST:PORT OPS NAME
 *       OPS times an acquire and release through etcd's lock service
 *       (v3lock, on the gateway: /v3/lock/lock with a lease granted once,
 *       then /v3/lock/unlock), as etcd's lock recipe does.
 *   coordlat lag-etcd HOST:PORT OPS NAME LEARNER-HOST:PORT
 *       OPS times a put of a 200-byte value through HOST:PORT (the
 *       leader), then serializable gets of that key on the learner until
 *       it has it: the learner's lag behind the leader's apply (the put
 *       returns once the leader applied it), for bench/run's J2. The polls
 *       cost the learner some CPU; the figure is an upper bound.
 *
 * Prints one line:
 *   RESULT workload=NAME system=raftfs|etcd median_us=M p99_us=P ops_per_s=T
 * The HTTP client here is minimal on purpose (one request per connection,
 * as curl in a script would): it speaks to a local etcd only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void die(const char *fmt, const char *a)
{
    fprintf(stderr, "coordlat: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n");
    exit(1);
}

/* ---- etcd's JSON gateway ---------------------------------------------------- */

static struct sockaddr_in etcd_addr;

static void b64(const char *in, char *out)
{
    static const char t[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(uint8_t)in[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)(uint8_t)in[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= (uint8_t)in[i + 2];
        }
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

static struct sockaddr_in learner_addr;

static void parse_addr(const char *s, struct sockaddr_in *a)
{
    char host[64];
    snprintf(host, sizeof(host), "%s", s);
    char *colon = strchr(host, ':');
    if (colon == NULL) {
        die("expected HOST:PORT, not %s", s);
    }
    *colon = '\0';
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
        die("expected a numeric IPv4 address, not %s", host);
    }
}

/* POST body to path on the member at to; the response body into resp.
 * Exits on failure. */
static void post_to(const struct sockaddr_in *to, const char *path,
                    const char *body, char *resp, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)to, sizeof(*to)) != 0) {
        die("connect to etcd: %s", strerror(errno));
    }
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "POST %s HTTP/1.1\r\nHost: etcd\r\nContent-Type: "
                     "application/json\r\nContent-Length: %zu\r\nConnection: "
                     "close\r\n\r\n%s",
                     path, strlen(body), body);
    if (write(fd, req, (size_t)n) != n) {
        die("write to etcd: %s", strerror(errno));
    }
    size_t got = 0;
    ssize_t r;
    while (got + 1 < cap && (r = read(fd, resp + got, cap - 1 - got)) > 0) {
        got += (size_t)r;
    }
    resp[got] = '\0';
    close(fd);
    if (strncmp(resp, "HTTP/1.1 200", 12) != 0) {
        die("etcd answered: %.200s", resp);
    }
}

static void post(const char *path, const char *body, char *resp, size_t cap)
{
    post_to(&etcd_addr, path, body, resp, cap);
}

/* One lag-etcd step: put key (a 200-byte value) on the leader, then poll
 * the learner until it serves it. The lag in us, from the put's return. */
static double learner_lag(const char *key)
{
    char v[201], k[256], v64[512], body[1024], resp[8192];
    memset(v, 'v', 200);
    v[200] = '\0';
    b64(key, k);
    b64(v, v64);
    snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"%s\"}", k,
             v64);
    post("/v3/kv/put", body, resp, sizeof(resp));
    double b = now_us();
    snprintf(body, sizeof(body),
             "{\"key\":\"%s\",\"serializable\":true,\"count_only\":true}", k);
    for (;;) {
        post_to(&learner_addr, "/v3/kv/range", body, resp, sizeof(resp));
        if (strstr(resp, "\"count\":\"1\"") != NULL) {
            return now_us() - b;
        }
        if (now_us() - b > 10e6) {
            die("the learner did not have %s within 10 s", key);
        }
    }
}

static void etcd_put(const char *key)
{
    char k[256], v[256], body[1024], resp[8192];
    b64(key, k);
    b64("v", v);
    snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"%s\"}", k, v);
    post("/v3/kv/put", body, resp, sizeof(resp));
}

/* ---- The watcher ----------------------------------------------------------
 * A thread reads the watcher's lines and stamps each wK as it arrives: a
 * line may come before the write that caused it has returned (the watcher's
 * node applied first), which counts as 0 us. */

static pid_t watcher;
static int wfd;
static double *arrived; /* Per op: when its line came (0: not yet). */
static int nops;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void *reader(void *arg)
{
    (void)arg;
    static char buf[1 << 16];
    size_t len = 0;
    ssize_t r;
    while ((r = read(wfd, buf + len, sizeof(buf) - 1 - len)) > 0) {
        double t = now_us();
        len += (size_t)r;
        char *nl;
        while ((nl = memchr(buf, '\n', len)) != NULL) {
            *nl = '\0';
            const char *w = strstr(buf, "w");
            while (w != NULL) {
                char *end;
                long k = strtol(w + 1, &end, 10);
                if (end == w + 8 && k >= 0 && k < nops) {
                    pthread_mutex_lock(&mu);
                    if (arrived[k] == 0) {
                        arrived[k] = t;
                    }
                    pthread_cond_broadcast(&cv);
                    pthread_mutex_unlock(&mu);
                    break;
                }
                w = strstr(w + 1, "w");
            }
            size_t used = (size_t)(nl - buf) + 1;
            memmove(buf, nl + 1, len - used);
            len -= used;
        }
        if (len == sizeof(buf) - 1) {
            len = 0; /* A line longer than the buffer: not ours. */
        }
    }
    return NULL;
}

static void start_watcher(char **argv)
{
    int p[2];
    if (pipe(p) != 0) {
        die("pipe: %s", strerror(errno));
    }
    watcher = fork();
    if (watcher == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    wfd = p[0];
    pthread_t t;
    pthread_create(&t, NULL, reader, NULL);
    pthread_detach(t);
}

/* When op k's line came; -1 if not within 10 s. */
static double wait_line(int k)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&mu);
    while (arrived[k] == 0) {
        if (pthread_cond_timedwait(&cv, &mu, &until) != 0) {
            break;
        }
    }
    double t = arrived[k] != 0 ? arrived[k] : -1;
    pthread_mutex_unlock(&mu);
    return t;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: coordlat watch-fs DIR OPS NAME -- CMD... | "
                        "watch-etcd HOST:PORT OPS NAME -- CMD... | lock-fs "
                        "FILE OPS NAME | lock-etcd HOST:PORT OPS NAME | "
                        "lag-etcd HOST:PORT OPS NAME LEARNER\n");
        return 2;
    }
    const char *mode = argv[1], *target = argv[2], *name = argv[4];
    int ops = atoi(argv[3]);
    bool etcd = strstr(mode, "etcd") != NULL;
    bool watch = strncmp(mode, "watch", 5) == 0;
    if (ops <= 0) {
        die("OPS must be a positive number, not %s", argv[3]);
    }
    if (etcd) {
        parse_addr(target, &etcd_addr);
    }
    bool lag = strcmp(mode, "lag-etcd") == 0;
    if (lag) {
        if (argc < 6) {
            die("%s needs the learner's HOST:PORT", mode);
        }
        parse_addr(argv[5], &learner_addr);
    }
    if (watch) {
        if (argc < 7 || strcmp(argv[5], "--") != 0) {
            die("%s needs -- WATCH-COMMAND", mode);
        }
        nops = ops;
        arrived = calloc((size_t)ops, sizeof(*arrived));
        start_watcher(argv + 6);
        usleep(500000); /* Let the watcher start before the first change. */
    }
    double *lat = calloc((size_t)ops, sizeof(*lat));
    double *from_start = calloc((size_t)ops, sizeof(*from_start));
    int early = 0;
    char lease[64] = "";
    int lockfd = -1;
    if (strcmp(mode, "lock-fs") == 0) {
        lockfd = open(target, O_RDWR | O_CREAT, 0644);
        if (lockfd < 0) {
            die("open: %s", strerror(errno));
        }
    } else if (strcmp(mode, "lock-etcd") == 0) {
        char resp[8192];
        post("/v3/lease/grant", "{\"TTL\":60}", resp, sizeof(resp));
        char *id = strstr(resp, "\"ID\":\"");
        if (id == NULL) {
            die("no lease id in: %.200s", resp);
        }
        snprintf(lease, sizeof(lease), "%.*s", (int)strcspn(id + 6, "\""),
                 id + 6);
    }
    double t0 = now_us();
    for (int k = 0; k < ops; k++) {
        char key[64];
        snprintf(key, sizeof(key), "w%07d", k);
        double a = now_us(), b = a;
        if (watch && !etcd) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", target, key);
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0 || write(fd, "v\n", 2) != 2 || close(fd) != 0) {
                die("write: %s", strerror(errno));
            }
            b = now_us();
        } else if (watch) {
            etcd_put(key);
            b = now_us();
        }
        if (watch) {
            /* etcdctl prints the key as it is; raftfs the path. */
            double t = wait_line(k);
            if (t < 0) {
                die("the watcher printed no line for %s within 10 s", key);
            }
            early += t < b;
            lat[k] = t < b ? 0 : t - b;
            from_start[k] = t - a;
        } else if (lag) {
            /* Keys of their own per run (the warm-up's and every bench/run
             * pass use the same etcd): a key the learner already holds
             * would be found at once and count a lag of 0. */
            char lkey[128];
            snprintf(lkey, sizeof(lkey), "%s-%d-%s", name, (int)getpid(),
                     key);
            lat[k] = learner_lag(lkey);
        } else if (lockfd >= 0) {
            if (flock(lockfd, LOCK_EX) != 0 || flock(lockfd, LOCK_UN) != 0) {
                die("flock: %s", strerror(errno));
            }
            lat[k] = now_us() - a;
        } else {
            char body[512], resp[8192], n64[128];
            b64("bench-lock", n64);
            snprintf(body, sizeof(body), "{\"name\":\"%s\",\"lease\":\"%s\"}",
                     n64, lease);
            post("/v3/lock/lock", body, resp, sizeof(resp));
            char *kp = strstr(resp, "\"key\":\"");
            if (kp == NULL) {
                die("no lock key in: %.200s", resp);
            }
            snprintf(body, sizeof(body), "{\"key\":\"%.*s\"}",
                     (int)strcspn(kp + 7, "\""), kp + 7);
            post("/v3/lock/unlock", body, resp, sizeof(resp));
            lat[k] = now_us() - a;
        }
    }
    double secs = (now_us() - t0) / 1e6;
    if (watch) {
        kill(watcher, SIGTERM);
        waitpid(watcher, NULL, 0);
    }
    if (watch) {
        fprintf(stderr, "coordlat: %s: %d of %d changes reached the watcher "
                        "before the write returned\n", name, early, ops);
    }
    qsort(lat, (size_t)ops, sizeof(*lat), cmp);
    if (watch) {
        /* The whole way, from the write's start: what a script that writes
         * and then waits for others to see it would measure. */
        qsort(from_start, (size_t)ops, sizeof(*from_start), cmp);
        printf("RESULT workload=%s-start system=%s median_us=%.0f "
               "p99_us=%.0f ops_per_s=%.0f\n",
               name, etcd ? "etcd" : "raftfs", from_start[ops / 2],
               from_start[(size_t)ops * 99 / 100], ops / secs);
    }
    printf("RESULT workload=%s system=%s median_us=%.0f p99_us=%.0f "
           "ops_per_s=%.0f\n",
           name, etcd ? "etcd" : "raftfs", lat[ops / 2],
           lat[(size_t)ops * 99 / 100], ops / secs);
    return 0;
}
