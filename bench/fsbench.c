/*
 * fsbench: file workloads through any mounted directory, as the shell and
 * scripts use it, for bench/run (raftfs, and libfuse's passthrough_ll as
 * the FUSE ceiling).
 *
 *   fsbench write DIR OPS CLIENTS NAME SYSTEM   open, write 100 B, close of
 *                                               new files (`echo v > f`)
 *   fsbench read DIR OPS NAME SYSTEM            open, read, close of the
 *                                               files `write` left
 *
 * FSBENCH_DIRS=N (write only) spreads the clients over N folders DIR/d0 ..
 * DIR/d(N-1), made first, client c writing into d(c mod N): a create holds
 * its parent folder's lock in the kernel, so this measures the filesystem
 * rather than one folder's lock.
 *
 * Prints one line:
 *   RESULT workload=NAME system=SYSTEM median_us=M p99_us=P ops_per_s=T
 * and writes every latency (us, one per line) to NAME-SYSTEM.lat in the
 * current folder, for the plot.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static int ops, clients;
static double *lat;
static int reading;
static int ndirs; /* 0: every file in DIR itself. */

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void *worker(void *arg)
{
    int c = (int)(intptr_t)arg;
    char path[4096], buf[128];
    memset(buf, 'v', 99);
    buf[99] = '\n';
    for (int k = c; k < ops; k += clients) {
        if (ndirs > 0) {
            snprintf(path, sizeof(path), "%s/d%d/k%07d", dir, c % ndirs, k);
        } else {
            snprintf(path, sizeof(path), "%s/k%07d", dir, k);
        }
        double t = now_us();
        if (reading) {
            int fd = open(path, O_RDONLY);
            if (fd < 0 || read(fd, buf, sizeof(buf)) != 100) {
                fprintf(stderr, "fsbench: read %s: %s\n", path,
                        strerror(errno));
                exit(1);
            }
            close(fd);
        } else {
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0 || write(fd, buf, 100) != 100 || close(fd) != 0) {
                fprintf(stderr, "fsbench: write %s: %s\n", path,
                        strerror(errno));
                exit(1);
            }
        }
        lat[k] = now_us() - t;
    }
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 6 || (strcmp(argv[1], "write") == 0 && argc < 7)) {
        fprintf(stderr, "usage: fsbench write DIR OPS CLIENTS NAME SYSTEM | "
                        "read DIR OPS NAME SYSTEM\n");
        return 2;
    }
    reading = strcmp(argv[1], "read") == 0;
    dir = argv[2];
    ops = atoi(argv[3]);
    clients = reading ? 1 : atoi(argv[4]);
    const char *name = argv[reading ? 4 : 5], *sys = argv[reading ? 5 : 6];
    const char *nd = getenv("FSBENCH_DIRS");
    ndirs = nd && !reading ? atoi(nd) : 0;
    if (ndirs > 0 && mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "fsbench: mkdir %s: %s\n", dir, strerror(errno));
        return 1;
    }
    for (int d = 0; d < ndirs; d++) {
        char sub[4096];
        snprintf(sub, sizeof(sub), "%s/d%d", dir, d);
        if (mkdir(sub, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "fsbench: mkdir %s: %s\n", sub, strerror(errno));
            return 1;
        }
    }
    lat = calloc((size_t)ops, sizeof(*lat));
    pthread_t *t = calloc((size_t)clients, sizeof(*t));
    double t0 = now_us();
    for (int c = 0; c < clients; c++) {
        pthread_create(&t[c], NULL, worker, (void *)(intptr_t)c);
    }
    for (int c = 0; c < clients; c++) {
        pthread_join(t[c], NULL);
    }
    double secs = (now_us() - t0) / 1e6;
    char file[256];
    snprintf(file, sizeof(file), "%s-%s.lat", name, sys);
    FILE *f = fopen(file, "w");
    for (int k = 0; f && k < ops; k++) {
        fprintf(f, "%.1f\n", lat[k]);
    }
    if (f) {
        fclose(f);
    }
    qsort(lat, (size_t)ops, sizeof(*lat), cmp);
    printf("RESULT workload=%s system=%s median_us=%.0f p99_us=%.0f "
           "ops_per_s=%.0f\n",
           name, sys, lat[ops / 2], lat[(size_t)ops * 99 / 100],
           ops / secs);
    return 0;
}
