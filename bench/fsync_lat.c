/*
 * fsync_lat DIR [N]: the disk's floor for a durable commit: median and p99
 * of write(100 B) + fdatasync on a file in DIR, as one RESULT line.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fsync_lat DIR [N]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    char path[4096];
    snprintf(path, sizeof(path), "%s/fsync_lat.tmp", argv[1]);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    double *lat = calloc((size_t)n, sizeof(*lat));
    char buf[100];
    memset(buf, 'x', sizeof(buf));
    struct timespec a, b, t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        clock_gettime(CLOCK_MONOTONIC, &a);
        if (pwrite(fd, buf, sizeof(buf), (off_t)i * 100) != 100 ||
            fdatasync(fd) != 0) {
            perror(path);
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        lat[i] = (double)(b.tv_sec - a.tv_sec) * 1e6 +
                 (double)(b.tv_nsec - a.tv_nsec) / 1e3;
    }
    double secs = (double)(b.tv_sec - t0.tv_sec) +
                  (double)(b.tv_nsec - t0.tv_nsec) / 1e9;
    close(fd);
    unlink(path);
    qsort(lat, (size_t)n, sizeof(*lat), cmp);
    printf("RESULT workload=fdatasync system=disk median_us=%.0f p99_us=%.0f "
           "ops_per_s=%.0f\n",
           lat[n / 2], lat[(size_t)n * 99 / 100], n / secs);
    return 0;
}
