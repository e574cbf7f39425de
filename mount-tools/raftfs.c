/*
 * raftfs: the command people run. A thin main() over the node and fs
 * libraries:
 *
 *   raftfs init DATADIR --id N --listen IP:PORT [--peers LIST | --join]
 *                       [--secret FILE]
 *   raftfs mount DATADIR MOUNTPOINT [-f] [-o OPTIONS]
 *
 * The data folder holds raftfs.conf (id, listen address, founding peers),
 * the cluster secret (mode 0600), the RocksDB database and snapshots.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/err.h"
#include "../consensus/config.h"
#include "../fs/fs.h"

#define CONF_NAME "raftfs.conf"
#define SECRET_BYTES 32

static const char usage[] =
    "usage:\n"
    "  raftfs init DATADIR --id N --listen IP:PORT [--peers LIST | --join]\n"
    "                      [--secret FILE]\n"
    "  raftfs mount DATADIR MOUNTPOINT [-f] [-o OPTION[,OPTION...]]\n"
    "  raftfs --help | --version\n"
    "\n"
    "init creates a node's data folder. With --peers (ID=IP:PORT,...; this\n"
    "node among them) the listed nodes found a cluster together; with\n"
    "neither --peers nor --join the node founds a one-node cluster; with\n"
    "--join it waits to be added by `raftfs members add` on the cluster.\n"
    "--secret copies the cluster's 32-byte secret file (every node of a\n"
    "cluster needs the same one); without it a new secret is made.\n"
    "\n"
    "mount starts the node and mounts its tree at MOUNTPOINT, then runs in\n"
    "the background (-f: in the foreground, logging to stderr; otherwise\n"
    "the log is DATADIR/raftfs.log). Unmounting (umount, fusermount3 -u),\n"
    "SIGTERM or SIGINT stop it cleanly.\n"
    "\n"
    "mount options:\n"
    "  reads=linearizable   every lookup, stat, open and listing first\n"
    "                       confirms with a quorum that it sees the latest\n"
    "                       committed state (default)\n"
    "  reads=local          serve reads from this node's copy, with kernel\n"
    "                       caching; may be stale by the replication lag\n"
    "  commit_timeout=S     a change or linearizable read that cannot\n"
    "                       complete in S seconds fails with ETIMEDOUT\n"
    "                       (default 30)\n"
    "  cache_timeout=S      reads=local: seconds the kernel may cache names\n"
    "                       and attributes (default 1; changes from other\n"
    "                       nodes also invalidate them as they apply)\n"
    "  allow_other          let users other than the mounter use the mount\n"
    "  log=LEVEL            error, warn, info (default) or debug\n"
    "  debug                also trace every FUSE request (implies -f)\n"
    "  rw, _netdev, defaults, auto, noauto, user, nouser, exec, noexec,\n"
    "  suid, nosuid, dev, nodev, atime, noatime, relatime: accepted for\n"
    "                       fstab and mount(8), no effect\n";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2),
                                                     noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("raftfs: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ------------------------------------------------------------------------ */
/* The data folder's configuration                                          */

struct conf {
    rfs_nodeid_t id;
    char listen[CONS_ADDR_MAX];
    char peers[4096]; /* Empty: joins an existing cluster. */
};

static void conf_path(const char *dir, char *buf, size_t len,
                      const char *name)
{
    if ((size_t)snprintf(buf, len, "%s/%s", dir, name) >= len) {
        die("path too long: %.100s/%s", dir, name);
    }
}

static void conf_load(const char *dir, struct conf *c)
{
    char path[PATH_MAX], err[RFS_ERRMSG_SZ];
    conf_path(dir, path, sizeof(path), CONF_NAME);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        die("%s: %s (is %s a raftfs data folder? create one with "
            "`raftfs init`)", path, strerror(errno), dir);
    }
    memset(c, 0, sizeof(*c));
    char line[8192];
    unsigned lineno = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        char *p = line + strspn(line, " \t");
        if (*p == '#' || *p == '\0') {
            continue;
        }
        char *eq = strchr(p, '=');
        if (eq == NULL) {
            die("%s:%u: expected KEY = VALUE", path, lineno);
        }
        char *end = eq;
        while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }
        *end = '\0';
        char *v = eq + 1 + strspn(eq + 1, " \t");
        if (strcmp(p, "id") == 0) {
            if (config_parse_id(v, &c->id, err) != 0) {
                die("%s:%u: %s", path, lineno, err);
            }
        } else if (strcmp(p, "listen") == 0) {
            if (config_parse_addr(v, err) != 0) {
                die("%s:%u: %s", path, lineno, err);
            }
            snprintf(c->listen, sizeof(c->listen), "%s", v);
        } else if (strcmp(p, "peers") == 0) {
            snprintf(c->peers, sizeof(c->peers), "%s", v);
        } else {
            die("%s:%u: unknown key '%s'", path, lineno, p);
        }
    }
    fclose(f);
    if (c->id == 0 || c->listen[0] == '\0') {
        die("%s: needs both 'id' and 'listen'", path);
    }
}

static void copy_secret(const char *from, const char *to)
{
    int in = open(from, O_RDONLY);
    if (in < 0) {
        die("secret %s: %s", from, strerror(errno));
    }
    unsigned char key[SECRET_BYTES + 1];
    ssize_t n = read(in, key, sizeof(key));
    close(in);
    if (n != SECRET_BYTES) {
        die("secret %s: must hold exactly %d bytes (it holds %s%zd)", from,
            SECRET_BYTES, n > SECRET_BYTES ? "more than " : "",
            n < 0 ? 0 : (n > SECRET_BYTES ? (ssize_t)SECRET_BYTES : n));
    }
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (out < 0 || write(out, key, SECRET_BYTES) != SECRET_BYTES ||
        fsync(out) != 0) {
        die("secret %s: %s", to, strerror(errno));
    }
    close(out);
}

static void make_secret(const char *to)
{
    unsigned char key[SECRET_BYTES];
    int in = open("/dev/urandom", O_RDONLY);
    if (in < 0 || read(in, key, sizeof(key)) != SECRET_BYTES) {
        die("/dev/urandom: %s", strerror(errno));
    }
    close(in);
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (out < 0 || write(out, key, SECRET_BYTES) != SECRET_BYTES ||
        fsync(out) != 0) {
        die("secret %s: %s", to, strerror(errno));
    }
    close(out);
}

static int cmd_init(int argc, char **argv)
{
    if (argc < 1 || argv[0][0] == '-') {
        die("init: missing DATADIR\n%s", usage);
    }
    const char *dir = argv[0];
    const char *id_s = NULL, *listen = NULL, *peers = NULL, *secret = NULL;
    bool join = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = strcmp(a, "--id") == 0       ? &id_s
                           : strcmp(a, "--listen") == 0 ? &listen
                           : strcmp(a, "--peers") == 0  ? &peers
                           : strcmp(a, "--secret") == 0 ? &secret
                                                        : NULL;
        if (dst != NULL) {
            if (i + 1 >= argc) {
                die("init: %s needs a value", a);
            }
            *dst = argv[++i];
        } else if (strcmp(a, "--join") == 0) {
            join = true;
        } else {
            die("init: unknown option '%s' (see raftfs --help)", a);
        }
    }
    char err[RFS_ERRMSG_SZ];
    rfs_nodeid_t id;
    if (id_s == NULL || listen == NULL) {
        die("init: --id and --listen are required");
    }
    if (config_parse_id(id_s, &id, err) != 0 ||
        config_parse_addr(listen, err) != 0) {
        die("init: %s", err);
    }
    if (join && peers != NULL) {
        die("init: --join and --peers exclude each other: --peers founds a "
            "new cluster, --join enters an existing one");
    }
    char self[CONS_ADDR_MAX + 24];
    snprintf(self, sizeof(self), "%" PRIu64 "=%s", id, listen);
    if (!join && peers == NULL) {
        peers = self;
    }
    if (peers != NULL) {
        struct cons_conf c;
        if (config_parse_peers(peers, &c, err) != 0) {
            die("init: --peers: %s", err);
        }
        bool found = false;
        for (unsigned i = 0; i < c.n; i++) {
            if (c.servers[i].id == id) {
                found = true;
                if (strcmp(c.servers[i].addr, listen) != 0) {
                    die("init: --peers gives node %" PRIu64
                        " the address %s, but --listen says %s",
                        id, c.servers[i].addr, listen);
                }
            }
        }
        if (!found) {
            die("init: --peers must include this node (%" PRIu64 "=%s)", id,
                listen);
        }
    }
    char path[PATH_MAX];
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        die("init: %s: %s", dir, strerror(errno));
    }
    conf_path(dir, path, sizeof(path), CONF_NAME);
    if (access(path, F_OK) == 0) {
        die("init: %s is already a raftfs data folder (%s exists); "
            "refusing to overwrite it", dir, path);
    }
    char spath[PATH_MAX];
    conf_path(dir, spath, sizeof(spath), "secret");
    if (access(spath, F_OK) == 0) {
        die("init: %s already holds a secret; refusing to overwrite it",
            dir);
    }
    if (secret != NULL) {
        copy_secret(secret, spath);
    } else {
        make_secret(spath);
    }
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        die("init: %s: %s", tmp, strerror(errno));
    }
    fprintf(f, "# raftfs node configuration, written by raftfs init\n");
    fprintf(f, "id = %" PRIu64 "\nlisten = %s\n", id, listen);
    if (peers != NULL) {
        fprintf(f, "# The founding members; later changes go through the "
                   "log (raftfs members).\npeers = %s\n", peers);
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0 ||
        rename(tmp, path) != 0) {
        die("init: %s: %s", path, strerror(errno));
    }
    printf("raftfs: initialised %s as node %" PRIu64 " (%s), %s\n", dir, id,
           listen,
           join ? "waiting to be added to a cluster"
                : (peers == self ? "founding a one-node cluster"
                                 : "founding a cluster with its peers"));
    if (secret == NULL) {
        printf("raftfs: cluster secret: %s (copy it to every other node's "
               "`raftfs init --secret`)\n", spath);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* mount                                                                     */

struct mount_opts {
    struct fs_options fs;
    unsigned commit_timeout_s;
    bool allow_other;
    bool debug;
    bool foreground;
    enum node_log_level log_level;
};

static bool parse_seconds(const char *v, double max, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || errno != 0 || !(d > 0) || d > max) {
        return false;
    }
    *out = d;
    return true;
}

static void parse_mount_opts(char *list, struct mount_opts *m)
{
    static const char *const ignored[] = {
        "rw", "_netdev", "defaults", "auto", "noauto", "user", "nouser",
        "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime",
        "noatime", "relatime", "nofail", NULL};
    char *save = NULL;
    for (char *o = strtok_r(list, ",", &save); o;
         o = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(o, '=');
        const char *v = eq ? eq + 1 : NULL;
        if (eq) {
            *eq = '\0';
        }
        double d;
        bool ign = false;
        for (unsigned i = 0; ignored[i]; i++) {
            ign |= strcmp(o, ignored[i]) == 0;
        }
        if (ign) {
            continue;
        } else if (strcmp(o, "reads") == 0 && v &&
                   (strcmp(v, "linearizable") == 0 ||
                    strcmp(v, "local") == 0)) {
            m->fs.linearizable = strcmp(v, "linearizable") == 0;
        } else if (strcmp(o, "reads") == 0) {
            die("mount option reads=%s: expected reads=linearizable or "
                "reads=local", v ? v : "");
        } else if (strcmp(o, "commit_timeout") == 0) {
            if (!v || !parse_seconds(v, 86400, &d) || d < 1) {
                die("mount option commit_timeout=%s: expected whole seconds "
                    "from 1 to 86400", v ? v : "");
            }
            m->commit_timeout_s = (unsigned)d;
        } else if (strcmp(o, "cache_timeout") == 0) {
            if (!v || !parse_seconds(v, 3600, &d)) {
                die("mount option cache_timeout=%s: expected seconds, more "
                    "than 0 and at most 3600", v ? v : "");
            }
            m->fs.cache_timeout = d;
        } else if (strcmp(o, "allow_other") == 0 && !v) {
            m->allow_other = true;
        } else if (strcmp(o, "debug") == 0 && !v) {
            m->debug = true;
            m->foreground = true;
        } else if (strcmp(o, "log") == 0 && v) {
            static const char *const lv[] = {"error", "warn", "info",
                                             "debug", NULL};
            int k = -1;
            for (int i = 0; lv[i]; i++) {
                if (strcmp(v, lv[i]) == 0) {
                    k = i;
                }
            }
            if (k < 0) {
                die("mount option log=%s: expected error, warn, info or "
                    "debug", v);
            }
            m->log_level = (enum node_log_level)k;
        } else {
            die("unknown mount option '%s%s%s' (see raftfs --help)", o,
                v ? "=" : "", v ? v : "");
        }
    }
}

static rfs_nodeid_t log_node;

static void log_line(void *data, enum node_log_level level, const char *line)
{
    static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG",
                                        "TRACE"};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    /* The node's lines name the node and level already. */
    if (data == NULL) {
        fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ node %" PRIu64
                        " %s: %s\n",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, log_node,
                names[level], line);
    } else {
        fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s\n",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, line);
    }
}

/* The id of the (last) mount at path in the kernel's list, or 0. */
static uint64_t mount_id(const char *path)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (f == NULL) {
        return 0;
    }
    char line[8192];
    uint64_t id = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        char mnt[PATH_MAX];
        unsigned long long mid;
        /* Field 5 is the mount point, with spaces escaped as \040. */
        if (sscanf(line, "%llu %*s %*s %*s %4095s", &mid, mnt) == 2 &&
            strcmp(mnt, path) == 0) {
            id = mid;
        }
    }
    fclose(f);
    return id;
}

/* The daemon reports its start-up outcome to the waiting parent here. */
static int ready_fd = -1;

static void report(const char *msg)
{
    if (ready_fd >= 0) {
        size_t len = strlen(msg);
        if (write(ready_fd, msg, len) != (ssize_t)len) {
            /* The parent is gone; nobody to tell. */
        }
        close(ready_fd);
        ready_fd = -1;
    }
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2),
                                                      noreturn));
static void fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "raftfs: %s\n", msg);
    report(msg);
    exit(1);
}

/* Fork; the parent waits for the child's start-up verdict and exits with
 * it, so `raftfs mount` (and mount(8)) fails visibly when the node cannot
 * start, as other FUSE filesystems do. Threads start only in the child. */
static void daemonize(const char *logpath)
{
    int p[2];
    if (pipe(p) != 0) {
        die("pipe: %s", strerror(errno));
    }
    pid_t pid = fork();
    if (pid < 0) {
        die("fork: %s", strerror(errno));
    }
    if (pid > 0) {
        close(p[1]);
        char msg[1024];
        ssize_t n = read(p[0], msg, sizeof(msg) - 1);
        msg[n > 0 ? n : 0] = '\0';
        if (n > 0 && strcmp(msg, "ok") == 0) {
            exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
        if (n <= 0) {
            fprintf(stderr, "raftfs: the node exited during start-up; see "
                            "%s\n", logpath);
        }
        exit(1); /* The child printed its error. */
    }
    close(p[0]);
    ready_fd = p[1];
    setsid();
}

static int cmd_mount(int argc, char **argv)
{
    struct mount_opts m;
    memset(&m, 0, sizeof(m));
    fs_options_default(&m.fs);
    m.commit_timeout_s = 30;
    m.log_level = NODE_LOG_INFO;
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-f") == 0) {
            m.foreground = true;
        } else if (strcmp(argv[i], "-o") == 0) {
            if (i + 1 >= argc) {
                die("mount: -o needs options");
            }
            parse_mount_opts(argv[++i], &m);
        } else if (strncmp(argv[i], "-o", 2) == 0) {
            parse_mount_opts(argv[i] + 2, &m);
        } else if (argv[i][0] == '-') {
            die("mount: unknown option '%s' (see raftfs --help)", argv[i]);
        } else if (npos < 2) {
            pos[npos++] = argv[i];
        } else {
            die("mount: unexpected argument '%s'", argv[i]);
        }
    }
    if (npos != 2) {
        die("mount: needs DATADIR and MOUNTPOINT\n%s", usage);
    }
    char dir[PATH_MAX], mnt[PATH_MAX];
    if (realpath(pos[0], dir) == NULL) {
        die("data folder %s: %s", pos[0], strerror(errno));
    }
    struct conf conf;
    conf_load(dir, &conf);
    if (realpath(pos[1], mnt) == NULL) {
        die("mount point %s: %s", pos[1], strerror(errno));
    }
    struct stat st;
    if (stat(mnt, &st) != 0 || !S_ISDIR(st.st_mode)) {
        die("mount point %s is not a directory", mnt);
    }
    if (mount_id(mnt) != 0) {
        die("mount point %s is busy: something is mounted there already",
            mnt);
    }
    if (access("/dev/fuse", R_OK | W_OK) != 0) {
        die("FUSE is not available: /dev/fuse: %s (load the fuse module, "
            "or in a container pass the device through)", strerror(errno));
    }
    struct cons_conf peers;
    char err[RFS_ERRMSG_SZ];
    if (conf.peers[0] != '\0' &&
        config_parse_peers(conf.peers, &peers, err) != 0) {
        die("%s/%s: peers: %s", dir, CONF_NAME, err);
    }

    /* One process per data folder; RocksDB would refuse a second too, but
     * less clearly. The lock dies with the process. */
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/raftfs.pid", dir);
    int pidfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (pidfd < 0) {
        die("%s: %s", path, strerror(errno));
    }
    char logpath[PATH_MAX + 16];
    snprintf(logpath, sizeof(logpath), "%s/raftfs.log", dir);
    if (!m.foreground) {
        daemonize(logpath);
    }
    if (flock(pidfd, LOCK_EX | LOCK_NB) != 0) {
        char other[32] = "";
        ssize_t n = pread(pidfd, other, sizeof(other) - 1, 0);
        other[n > 0 ? n : 0] = '\0';
        other[strcspn(other, "\n")] = '\0';
        fail("data folder %s is in use by another raftfs process (pid %s)",
             dir, other[0] ? other : "?");
    }
    if (ftruncate(pidfd, 0) == 0) {
        dprintf(pidfd, "%d\n", (int)getpid());
    }
    if (!m.foreground) {
        int lf = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int nul = open("/dev/null", O_RDWR);
        if (lf < 0 || nul < 0) {
            fail("%s: %s", logpath, strerror(errno));
        }
        dup2(nul, STDIN_FILENO);
        dup2(lf, STDOUT_FILENO);
        dup2(lf, STDERR_FILENO);
        close(lf);
        close(nul);
    }
    setvbuf(stderr, NULL, _IOLBF, 0);

    struct store_options so;
    store_options_default(&so);
    m.fs.data_dir = dir;
    m.fs.min_free_bytes = so.min_free_bytes;
    m.fs.max_file_size = so.max_file_size;
    struct fs *fs;
    if (fs_new(&m.fs, &fs) != 0) {
        fail("out of memory");
    }
    log_node = conf.id;
    struct node_options no;
    node_options_default(&no);
    no.id = conf.id;
    no.dir = dir;
    no.listen = conf.listen;
    no.bootstrap = conf.peers[0] ? &peers : NULL;
    no.commit_timeout_ms = m.commit_timeout_s * 1000;
    no.log_level = m.log_level;
    no.log = log_line;
    no.log_data = &log_node;
    no.on_apply = fs_on_apply;
    no.apply_data = fs;

    char opts[512];
    snprintf(opts, sizeof(opts),
             "default_permissions,fsname=raftfs:%.200s,subtype=raftfs%s", dir,
             m.allow_other ? ",allow_other" : "");
    char arg0[] = "raftfs", arg_o[] = "-o", arg_d[] = "-d";
    char *fargv[] = {arg0, arg_o, opts, m.debug ? arg_d : NULL, NULL};
    struct fuse_args args = FUSE_ARGS_INIT(m.debug ? 4 : 3, fargv);
    struct fuse_session *se =
        fuse_session_new(&args, &fs_ops, sizeof(fs_ops), fs);
    if (se == NULL) {
        fail("cannot create the FUSE session (see the messages above)");
    }
    struct node *node;
    int rv = node_start(&no, &node, err);
    if (rv != 0) {
        fail("node %" PRIu64 ": %s", conf.id, err);
    }
    fs_attach(fs, node, se);
    if (fuse_set_signal_handlers(se) != 0) {
        node_stop(node);
        fail("cannot install signal handlers");
    }
    if (fuse_session_mount(se, mnt) != 0) {
        node_stop(node);
        fail("cannot mount at %s (see the messages above)", mnt);
    }
    fs_set_mount_id(fs, mount_id(mnt));
    log_line(NULL, NODE_LOG_INFO, "mounted");
    fprintf(stderr, "raftfs: node %" PRIu64 " mounted at %s (reads=%s)\n",
            conf.id, mnt, m.fs.linearizable ? "linearizable" : "local");
    report("ok");

    struct fuse_loop_config *lc = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(lc, 16);
    rv = fuse_session_loop_mt(se, lc);
    fuse_loop_cfg_destroy(lc);
    log_line(NULL, NODE_LOG_INFO, "unmounting");
    /* The node first: its last callbacks still answer the kernel through
     * the session, which must outlive them. */
    node_stop(node);
    fs_free(fs);
    fuse_remove_signal_handlers(se);
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    fuse_opt_free_args(&args);
    log_line(NULL, NODE_LOG_INFO, "stopped");
    return rv < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("raftfs %s\n", RAFTFS_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "init") == 0) {
        return cmd_init(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "mount") == 0) {
        return cmd_mount(argc - 2, argv + 2);
    }
    die("unknown command '%s' (see raftfs --help)", argv[1]);
}
