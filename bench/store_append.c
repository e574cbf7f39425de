/*
 * bench/store_append: synced log appends per second for batch sizes 1, 8 and
 * 64 (100-byte entries, one synced RocksDB WriteBatch per batch), beside the
 * raw fdatasync rate of the same disk, in the same folder.
 *
 *   build/bench/store_append [DIR] [SECONDS_PER_CASE]
 *
 * Prints the machine, then one line per case. Not a test: figures depend on
 * the disk; what matters is the ratio to the raw fdatasync rate.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "../common/err.h"
#include "../common/heap.h"
#include "../store/store.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void machine(const char *dir)
{
    struct utsname u;
    uname(&u);
    char model[600] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        char line[512];
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *p = strchr(line, ':');
                snprintf(model, sizeof(model), "%s", p ? p + 2 : line);
                model[strcspn(model, "\n")] = '\0';
                break;
            }
        }
        fclose(f);
    }
    printf("machine: %s %s, %ld cpus, %s; folder %s\n", u.sysname, u.release,
           sysconf(_SC_NPROCESSORS_ONLN), model, dir);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/var/tmp";
    double secs = argc > 2 ? atof(argv[2]) : 3.0;
    machine(dir);

    /* The floor: fdatasync of a 100-byte append. */
    char path[4096];
    snprintf(path, sizeof(path), "%s/raftfs-bench-sync-%d", dir, getpid());
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    char rec[100];
    memset(rec, 'r', sizeof(rec));
    unsigned long n = 0;
    double t0 = now();
    while (now() - t0 < secs) {
        if (write(fd, rec, sizeof(rec)) != (ssize_t)sizeof(rec) ||
            fdatasync(fd) != 0) {
            perror("fdatasync");
            return 1;
        }
        n++;
    }
    double raw = (double)n / (now() - t0);
    close(fd);
    unlink(path);
    printf("raw fdatasync:             %9.0f syncs/s  (%6.1f us each)\n", raw,
           1e6 / raw);

    snprintf(path, sizeof(path), "%s/raftfs-bench-store-%d", dir, getpid());
    char msg[RFS_ERRMSG_SZ];
    struct store *s;
    if (store_open(path, NULL, &s, msg) != 0) {
        fprintf(stderr, "%s\n", msg);
        return 1;
    }
    rfs_index_t next = 1;
    const unsigned sizes[] = {1, 8, 64};
    struct cons_entry e[64];
    for (unsigned i = 0; i < 64; i++) {
        e[i] = (struct cons_entry){.term = 1, .type = CONS_ENTRY_NORMAL,
                                   .data = {rec, sizeof(rec)}};
    }
    for (unsigned k = 0; k < 3; k++) {
        unsigned b = sizes[k];
        unsigned long batches = 0;
        t0 = now();
        while (now() - t0 < secs) {
            for (unsigned i = 0; i < b; i++) {
                e[i].index = next++;
            }
            struct cons_hard_state hs = {.term = 1};
            if (store_log_write(s, &hs, e, b) != 0) {
                fprintf(stderr, "%s\n", store_errmsg(s));
                return 1;
            }
            batches++;
        }
        double dt = now() - t0;
        double eps = (double)(batches * b) / dt;
        printf("store append, batch %2u:   %9.0f entries/s (%9.0f syncs/s, "
               "%.2f x raw sync rate; %.1f x raw in entries)\n",
               b, eps, (double)batches / dt, (double)batches / dt / raw,
               eps / raw);
    }
    store_close(s);
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    return system(cmd) == 0 ? 0 : 1;
}
