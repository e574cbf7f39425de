/*
 * bench/node_commit: commit latency and throughput of a 3-node raftfs
 * cluster on loopback (real processes, synced disk writes, encrypted TCP),
 * for 1, 16 and 64 concurrent proposers, sending to the leader and to a
 * follower. Each proposal is a 100-byte file write, answered once applied on
 * the node that took it.
 *
 *   build/bench/node_commit [path/to/raftfs-testnode] [ops per case]
 *
 * Prints the machine, then one line per case with median and p99 latency.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "../tests/lib/procs.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void run(struct cluster *c, int node, const char *target, int conc,
                int total)
{
    double *lat = calloc((size_t)total, sizeof(double));
    double *sent = calloc((size_t)total + 1, sizeof(double));
    char value[101];
    memset(value, 'v', 100);
    value[100] = '\0';
    long base = c->next_id;
    int next = 0, done = 0;
    double t0 = now_us();
    while (done < total) {
        while (next < total && next - done < conc) {
            sent[next] = now_us();
            pc_say(&c->p[node], "put %ld b%d-%d %s\n", base + next + 1, conc,
                   next, value);
            next++;
        }
        char line[256];
        if (pc_expect(&c->p[node], "done ", 10000, line, sizeof(line)) != 0) {
            fprintf(stderr, "no answer: stopping\n");
            exit(1);
        }
        long id;
        int err;
        if (sscanf(line, "done %ld %d", &id, &err) != 2 || err != 0) {
            fprintf(stderr, "write failed: %s\n", line);
            exit(1);
        }
        int k = (int)(id - base - 1);
        lat[done++] = now_us() - sent[k];
    }
    double secs = (now_us() - t0) / 1e6;
    c->next_id = base + total;
    qsort(lat, (size_t)total, sizeof(double), cmp);
    printf("RESULT workload=commit target=%-8s proposers=%2d ops=%d "
           "median_us=%.0f p99_us=%.0f ops_per_s=%.0f\n",
           target, conc, total, lat[total / 2], lat[total * 99 / 100],
           total / secs);
    fflush(stdout);
    free(lat);
    free(sent);
}

int main(int argc, char **argv)
{
    pc_exe = argc > 1 ? argv[1] : "build/tests/integration/raftfs-testnode";
    int total = argc > 2 ? atoi(argv[2]) : 2000;
    signal(SIGPIPE, SIG_IGN);
    struct utsname u;
    uname(&u);
    printf("machine: %s %s, %ld cpus; 3 nodes on 127.0.0.1, synced writes\n",
           u.sysname, u.release, sysconf(_SC_NPROCESSORS_ONLN));
    struct cluster c;
    pc_init(&c, 3, "--snapshot-entries 100000");
    int l = pc_wait_leader(&c, 5000);
    if (l == 0) {
        fprintf(stderr, "no leader\n");
        pc_destroy(&c);
        return 1;
    }
    int f = l == 1 ? 2 : 1;
    const int concs[] = {1, 16, 64};
    for (int t = 0; t < 2; t++) {
        for (int k = 0; k < 3; k++) {
            run(&c, t == 0 ? l : f, t == 0 ? "leader" : "follower", concs[k],
                total);
        }
    }
    pc_destroy(&c);
    return 0;
}
