/*
 * raftfs watch and raftfs put: coordination commands for scripts, run on
 * any path inside a mounted raftfs. They talk to the node through the
 * mount itself (extended attributes under user.raftfs., see fs/watch.c
 * and fs/ops_write.c's put_submit), so they need no data folder, no admin
 * socket and no privilege beyond the file's own permissions.
 *
 * Exit statuses (docs/guide.md, "Coordination"):
 *   0 done (put)            3 put: the condition failed, nothing changed
 *   1 any other error       4 watch: --since is older than the history
 *   2 usage (bad option,      kept ("compacted"): re-read everything
 *     not a number)         5 watch: --since is in the future
 *                           6 PATH is not inside a raftfs mount
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../common/endian.h"
#include "coord.h"

enum {
    EXIT_OTHER = 1,
    EXIT_USAGE = 2,
    EXIT_LOST = 3,
    EXIT_COMPACTED = 4,
    EXIT_FUTURE = 5,
    EXIT_NOT_RAFTFS = 6,
};

/* The kernel's largest extended attribute value (XATTR_SIZE_MAX). */
#define VALUE_MAX 65536
/* put's header before the name and content (see put_submit). */
#define PUT_HDR 16

static int fail(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("raftfs: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return status;
}

/* A revision: decimal digits only. */
static bool parse_rev(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9') {
        return false;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno != 0 || v == UINT64_MAX) {
        return false;
    }
    *out = v;
    return true;
}

/* 0 if path is inside a raftfs mount (it answers user.raftfs.revision,
 * which no other filesystem has), else an exit status after a message. */
static int check_raftfs(const char *path, const char *what)
{
    char v[32];
    if (getxattr(path, "user.raftfs.revision", v, sizeof(v)) >= 0) {
        return 0;
    }
    int e = errno;
    if (e == ENODATA || e == ENOTSUP) {
        return fail(EXIT_NOT_RAFTFS, "%s: %s is not inside a raftfs mount",
                    what, path);
    }
    return fail(EXIT_OTHER, "%s: %s: %s", what, path, strerror(e));
}

static void usage_watch(void)
{
    fputs("usage: raftfs watch PATH [--since REV] [--holders]\n", stderr);
}

int cmd_watch(int argc, char **argv)
{
    const char *path = NULL;
    uint64_t since = 0;
    bool has_since = false, holders = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--holders") == 0) {
            holders = true; /* Lock lines name their holder. */
        } else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) {
            if (!parse_rev(argv[++i], &since)) {
                return fail(EXIT_USAGE, "watch: --since %s: not a revision "
                            "(a number, as user.raftfs.revision shows)",
                            argv[i]);
            }
            has_since = true;
        } else if (path == NULL && argv[i][0] != '-') {
            path = argv[i];
        } else {
            usage_watch();
            return EXIT_USAGE;
        }
    }
    if (path == NULL) {
        usage_watch();
        return EXIT_USAGE;
    }
    int rv = check_raftfs(path, "watch");
    if (rv != 0) {
        return rv;
    }
    char *buf = malloc(VALUE_MAX);
    if (buf == NULL) {
        return fail(EXIT_OTHER, "watch: out of memory");
    }
    for (;;) {
        char name[64];
        const char *h = holders ? "holders." : "";
        if (has_since) {
            snprintf(name, sizeof(name), "user.raftfs.changes.%s%" PRIu64, h,
                     since);
        } else {
            snprintf(name, sizeof(name), "user.raftfs.changes.%snow", h);
        }
        /* Blocks in the node until a change under path is applied. */
        ssize_t n = getxattr(path, name, buf, VALUE_MAX);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int e = errno;
            free(buf);
            if (e == EOVERFLOW) {
                return fail(EXIT_COMPACTED, "watch: revision %" PRIu64
                            " is compacted: this node's history starts "
                            "later; read %s again and watch from its "
                            "revision", since, path);
            }
            if (e == EINVAL) {
                return fail(EXIT_FUTURE, "watch: --since %" PRIu64 " is in "
                            "the future: this node has not applied it",
                            since);
            }
            if (e == ENOENT || e == ESTALE) {
                return fail(EXIT_OTHER, "watch: %s no longer exists", path);
            }
            return fail(EXIT_OTHER, "watch: %s: %s", path, strerror(e));
        }
        char *nl = memchr(buf, '\n', (size_t)n);
        buf[nl != NULL ? nl - buf : 0] = '\0';
        if (nl == NULL || !parse_rev(buf, &since)) {
            free(buf);
            return fail(EXIT_OTHER, "watch: %s: a malformed answer", path);
        }
        has_since = true;
        size_t off = (size_t)(nl - buf) + 1;
        if (fwrite(buf + off, 1, (size_t)n - off, stdout) != (size_t)n - off ||
            fflush(stdout) != 0) {
            free(buf);
            return fail(EXIT_OTHER, "watch: writing: %s", strerror(errno));
        }
    }
}

static void usage_put(void)
{
    fputs("usage: raftfs put [--if-revision REV] FILE < CONTENT\n", stderr);
}

int cmd_put(int argc, char **argv)
{
    const char *file = NULL;
    uint64_t rev = 0;
    bool cond = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--if-revision") == 0 && i + 1 < argc) {
            if (!parse_rev(argv[++i], &rev)) {
                return fail(EXIT_USAGE, "put: --if-revision %s: not a "
                            "revision (a number; 0: only if FILE does not "
                            "exist)", argv[i]);
            }
            cond = true;
        } else if (file == NULL && argv[i][0] != '-') {
            file = argv[i];
        } else {
            usage_put();
            return EXIT_USAGE;
        }
    }
    if (file == NULL) {
        usage_put();
        return EXIT_USAGE;
    }
    struct stat st;
    if (stat(file, &st) == 0 && S_ISDIR(st.st_mode)) {
        return fail(EXIT_OTHER, "put: %s is a directory", file);
    }
    /* The directory and the name: the node resolves the name at apply. */
    size_t fl = strlen(file);
    while (fl > 1 && file[fl - 1] == '/') {
        fl--;
    }
    const char *slash = memrchr(file, '/', fl);
    const char *base = slash != NULL ? slash + 1 : file;
    size_t nl = fl - (size_t)(base - file);
    char dir[PATH_MAX];
    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else if (slash == file) {
        snprintf(dir, sizeof(dir), "/");
    } else if ((size_t)(slash - file) < sizeof(dir)) {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - file), file);
    } else {
        return fail(EXIT_OTHER, "put: %s: %s", file, strerror(ENAMETOOLONG));
    }
    if (nl == 0 || nl > 255 || (nl == 1 && base[0] == '.') ||
        (nl == 2 && base[0] == '.' && base[1] == '.')) {
        return fail(EXIT_OTHER, "put: %s: not a file name", file);
    }
    int rv = check_raftfs(dir, "put");
    if (rv != 0) {
        return rv;
    }
    size_t max = VALUE_MAX - PUT_HDR - nl;
    uint8_t *v = malloc(VALUE_MAX + 1);
    if (v == NULL) {
        return fail(EXIT_OTHER, "put: out of memory");
    }
    v[0] = 1;
    v[1] = cond ? 1 : 0;
    v[2] = (uint8_t)nl;
    v[3] = (uint8_t)(nl >> 8);
    mode_t mask = umask(0);
    umask(mask);
    rfs_put_le32(v + 4, 0666 & ~(uint32_t)mask);
    rfs_put_le64(v + 8, rev);
    memcpy(v + PUT_HDR, base, nl);
    size_t len = 0;
    uint8_t *data = v + PUT_HDR + nl;
    for (;;) {
        /* One byte past the limit tells "too large" from "just fits". */
        ssize_t n = read(0, data + len, max + 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            free(v);
            return fail(EXIT_OTHER, "put: reading standard input: %s",
                        strerror(errno));
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
        if (len > max) {
            free(v);
            return fail(EXIT_OTHER, "put: the content is over %zu bytes, "
                        "the most one put carries with this name (write a "
                        "temporary file and rename it instead)", max);
        }
    }
    int r = setxattr(dir, "user.raftfs.put", v, PUT_HDR + nl + len, 0);
    int e = errno;
    free(v);
    if (r == 0) {
        return 0;
    }
    if (e == ECANCELED) {
        if (rev == 0) {
            return fail(EXIT_LOST, "put: %s exists (--if-revision 0); not "
                        "replaced", file);
        }
        return fail(EXIT_LOST, "put: %s is no longer at revision %" PRIu64
                    " (changed or removed); not replaced", file, rev);
    }
    if (e == EISDIR) {
        return fail(EXIT_OTHER, "put: %s is a directory", file);
    }
    if (e == EINVAL) {
        return fail(EXIT_OTHER, "put: %s is not a regular file", file);
    }
    return fail(EXIT_OTHER, "put: %s: %s", file, strerror(e));
}
