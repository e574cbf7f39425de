/*
 * log: the one logger of raftfs (node, transport, host driver, tools, and
 * libfuse's own messages, which the mount routes here).
 *
 * A line is "TIME WHO LEVEL: text", on standard error by default: TIME is
 * UTC to the millisecond, WHO names the process's part ("node 3"). The
 * level test happens in the macro, before any argument is evaluated, so a
 * TRACE line costs one comparison when TRACE is off.
 *
 * Caveats:
 * - Thread-safe: each line is one write(2); set the level, the sink and
 *   WHO before starting threads.
 */
#ifndef RAFTFS_COMMON_LOG_H
#define RAFTFS_COMMON_LOG_H

enum rfs_log_level {
    RFS_LOG_ERROR = 0,
    RFS_LOG_WARN,
    RFS_LOG_INFO,
    RFS_LOG_DEBUG,
    RFS_LOG_TRACE,
};

/* The level at or below which lines are written (default INFO). */
extern enum rfs_log_level rfs_log_threshold;

#define RFS_LOG(level, ...)                                                 \
    do {                                                                    \
        if ((level) <= rfs_log_threshold) {                                 \
            rfs_log((level), __VA_ARGS__);                                  \
        }                                                                   \
    } while (0)

/* Write one line at level (no level test: use RFS_LOG). */
void rfs_log(enum rfs_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rfs_log_set_level(enum rfs_log_level level);
/* WHO in every line ("node 3"); copied. NULL or "": none. */
void rfs_log_set_who(const char *who);
/* Send lines elsewhere (tests); NULL: back to standard error. The sink
 * gets the level and the text without time or WHO. */
void rfs_log_set_sink(void (*sink)(void *data, enum rfs_log_level level,
                                   const char *line),
                      void *data);
/* "ERROR", "WARN", ... */
const char *rfs_log_level_name(enum rfs_log_level level);

#endif /* RAFTFS_COMMON_LOG_H */
