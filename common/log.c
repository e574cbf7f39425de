/* The logger. See log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum rfs_log_level rfs_log_threshold = RFS_LOG_INFO;

static char who[64];
static void (*sink)(void *data, enum rfs_log_level level, const char *line);
static void *sink_data;

void rfs_log_set_level(enum rfs_log_level level)
{
    rfs_log_threshold = level;
}

void rfs_log_set_who(const char *w)
{
    snprintf(who, sizeof(who), "%s", w != NULL ? w : "");
}

void rfs_log_set_sink(void (*s)(void *, enum rfs_log_level, const char *),
                      void *data)
{
    sink = s;
    sink_data = data;
}

const char *rfs_log_level_name(enum rfs_log_level level)
{
    static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG",
                                        "TRACE"};
    return level <= RFS_LOG_TRACE ? names[level] : "?";
}

void rfs_log(enum rfs_log_level level, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (sink != NULL) {
        sink(sink_data, level, text);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[1200];
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s%s%s: %s\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, who,
                     who[0] != '\0' ? " " : "", rfs_log_level_name(level),
                     text);
    if (n > (int)sizeof(line) - 1) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    /* One write per line, so lines of several threads never interleave. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
