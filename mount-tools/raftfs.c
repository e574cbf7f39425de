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
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../common/err.h"
#include "../common/log.h"
#include "../consensus/config.h"
#include "../consensus/secure.h"
#include "../consensus/snapfiles.h"
#include "../fs/fs.h"
#include "coord.h"

#define FUSE_THREADS_PER_CPU 8 /* Measured: docs/performance.md. */
#define CONF_NAME "raftfs.conf"
#define SECRET_BYTES 32

static const char usage[] =
    "usage:\n"
    "  raftfs init DATADIR --id N --listen IP:PORT\n"
    "                      [--peers LIST | --join | --observer]\n"
    "                      [--secret FILE] [--restore IMAGE]\n"
    "  raftfs mount DATADIR MOUNTPOINT [-f] [-o OPTION[,OPTION...]]\n"
    "  raftfs status [-d DATADIR] [--json]\n"
    "  raftfs members [-d DATADIR] list | add [--observer] ID IP:PORT |\n"
    "                 remove ID\n"
    "  raftfs leader [-d DATADIR] transfer [ID]\n"
    "  raftfs snapshot [-d DATADIR]\n"
    "  raftfs ephemeral DIR...\n"
    "  raftfs watch PATH [--since REV] [--holders]\n"
    "  raftfs put [--if-revision REV] FILE < CONTENT\n"
    "  raftfs --help | --version\n"
    "\n"
    "init creates a node's data folder. With --peers (ID=IP:PORT,...; this\n"
    "node among them) the listed nodes found a cluster together; with\n"
    "neither --peers nor --join the node founds a one-node cluster; with\n"
    "--join it waits to be added by `raftfs members add` on the cluster;\n"
    "with --observer (implies --join) it waits to be added by `raftfs\n"
    "members add --observer`.\n"
    "--secret copies the cluster's 32-byte secret file (every node of a\n"
    "cluster needs the same one); without it a new secret is made.\n"
    "--restore founds a one-node cluster holding the state of IMAGE, a\n"
    "snapshot image (DATADIR/snapshots/snap-N.img, made by\n"
    "`raftfs snapshot`); grow it with `raftfs members add`. init also\n"
    "makes the node's own signing key, DATADIR/signing.key (mode 0600,\n"
    "never copied): the configuration records its public half.\n"
    "\n"
    "mount starts the node and mounts its tree at MOUNTPOINT, then runs in\n"
    "the background (-f: in the foreground, logging to stderr; otherwise\n"
    "the log is DATADIR/raftfs.log). Unmounting (umount, fusermount3 -u),\n"
    "SIGTERM or SIGINT stop it cleanly.\n"
    "\n"
    "ephemeral marks each DIR (a directory in a raftfs mount) so that the\n"
    "files created directly in it are deleted on every node when their\n"
    "creator's node session ends (it died, was cut off past session_ttl,\n"
    "or unmounted): setfattr -n user.raftfs.ephemeral -v 1 DIR does the\n"
    "same.\n"
    "\n"
    "status, members, leader and snapshot talk to the running node of\n"
    "DATADIR (default $RAFTFS_DATA, else /var/lib/raftfs) over the Unix\n"
    "socket DATADIR/admin.sock (mode 0600); members and leader commands\n"
    "are carried out by the leader, whichever node they are run on.\n"
    "`members add` adds a learner, shows its progress while it catches up,\n"
    "and returns once the leader has promoted it to voter.\n"
    "`members add --observer` adds an observer: it gets every change and\n"
    "mounts like any node, but never votes, never counts toward a quorum\n"
    "and is never promoted; the command returns once it has caught up.\n"    "\n"
    "watch prints one line per change under PATH (a file, or a directory\n"
    "and everything below it) made on any node, in log order:\n"
    "REVISION OPERATION PATH-INSIDE-THE-MOUNT; with --since, every change\n"
    "after REV first. Lock grants and releases are lines too (lock,\n"
    "unlock); --holders appends a tab and the holder to those lines\n"
    "(docs/guide.md). put replaces FILE's content with its standard input\n"
    "in one change; with --if-revision, only if FILE's revision\n"
    "(user.raftfs.revision) is still REV (0: only if FILE does not exist).\n"
    "Both run on a path inside a mount, on any node. Exit statuses: 1\n"
    "error, 2 usage, 3 put's condition failed (nothing changed), 4 --since\n"
    "is older than the history kept, 5 --since is in the future, 6 not\n"
    "inside a raftfs mount (docs/guide.md, Coordination).\n"
    "\n"
    "mount options:\n"
    "  reads=linearizable   every lookup, stat, open and listing first\n"
    "                       confirms with a quorum that it sees the latest\n"
    "                       committed state (default)\n"
    "  reads=local          serve reads from this node's copy, with kernel\n"
    "                       caching; may be stale by the replication lag\n"
    "  lease=on|off         reads=linearizable: the leader, and followers\n"
    "                       holding a read lease, answer read barriers\n"
    "                       without a round to the leader or a quorum\n"
    "                       (default on; safe while clocks tick at rates\n"
    "                       within 10% of each other, see docs/core.md)\n"
    "  dircache=on|off      reads=linearizable with lease=on: the kernel\n"
    "                       may cache directories' names and attributes\n"
    "                       while this node's lease holds; every change\n"
    "                       drops them before any node acknowledges it\n"
    "                       (default on; see docs/fs.md)\n"
    "  gossip=on|off        observers are fed by gossip from voters and\n"
    "                       from each other, not by the leader (default\n"
    "                       off; every member of a cluster must use the\n"
    "                       same setting, see docs/fs.md)\n"
    "  commit_timeout=S     a change or linearizable read that cannot\n"
    "                       complete in S seconds fails with ETIMEDOUT\n"
    "                       (default 30); until a leader is known again,\n"
    "                       the next ones fail at once (changes with EROFS\n"
    "                       in reads=local)\n"
    "  session_ttl=S        this node's session (ephemeral files, locks)\n"
    "                       ends S seconds after the leader last heard\n"
    "                       from it; from 2 to 3600, default 10. A node\n"
    "                       cut off that long refuses changes (EROFS)\n"
    "                       until it has opened a new session\n"
    "  uring=on|off|auto    FUSE over io_uring: take the kernel's requests\n"
    "                       from per-CPU io_uring queues instead of reads\n"
    "                       of /dev/fuse where the kernel offers it (fuse\n"
    "                       module parameter enable_uring=Y), else fall\n"
    "                       back to /dev/fuse with one line in the log (a\n"
    "                       warning for on); default auto\n"
    "  threads=N            FUSE threads reading /dev/fuse (default: 8\n"
    "                       per CPU; io_uring uses one queue per CPU)\n"
    "  history=N            changes kept for raftfs watch --since: those\n"
    "                       of the last N log entries (default 100000)\n"
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

/* Install a snapshot image as the whole state of a new one-node cluster:
 * the snapshot's configuration is this node alone. */
static void restore_image(const char *dir, const char *image, rfs_nodeid_t id,
                          const char *listen)
{
    char db[PATH_MAX], err[RFS_ERRMSG_SZ];
    conf_path(dir, db, sizeof(db), "db");
    uint64_t size;
    if (snapfiles_image_index(image, &size) == 0) {
        die("init: --restore %s: not a raftfs snapshot image", image);
    }
    struct snapfiles snaps;
    if (snapfiles_init(&snaps, dir, err) != 0) {
        die("init: %s", err);
    }
    struct store_options so;
    store_options_default(&so);
    struct store *s;
    if (store_open(db, &so, &s, err) != 0) {
        die("init: %s", err);
    }
    /* The image's state becomes the whole state of a new one-node cluster:
     * its configuration is this node alone. */
    struct cons_snap_meta meta;
    memset(&meta, 0, sizeof(meta));
    meta.term = 1;
    meta.conf.n = 1;
    meta.conf.servers[0].id = id;
    meta.conf.servers[0].role = CONS_VOTER;
    snprintf(meta.conf.servers[0].addr, CONS_ADDR_MAX, "%s", listen);
    int rv = snapfiles_restore(&snaps, s, image, &meta, err);
    struct cons_hard_state hs = {.term = 1, .vote = 0, .commit = meta.index};
    if (rv == 0) {
        rv = store_log_write(s, &hs, NULL, 0);
        if (rv != 0) {
            snprintf(err, sizeof(err), "%s", store_errmsg(s));
        }
    }
    if (rv != 0) {
        die("init: --restore %s", err);
    }
    store_close(s);
    printf("raftfs: restored the state at index %" PRIu64 " from %s\n",
           meta.index, image);
}

static int cmd_init(int argc, char **argv)
{
    if (argc < 1 || argv[0][0] == '-') {
        die("init: missing DATADIR\n%s", usage);
    }
    const char *dir = argv[0];
    const char *id_s = NULL, *listen = NULL, *peers = NULL, *secret = NULL,
               *restore = NULL;
    bool join = false, observer = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = strcmp(a, "--id") == 0       ? &id_s
                           : strcmp(a, "--listen") == 0 ? &listen
                           : strcmp(a, "--peers") == 0  ? &peers
                           : strcmp(a, "--secret") == 0 ? &secret
                           : strcmp(a, "--restore") == 0 ? &restore
                                                        : NULL;
        if (dst != NULL) {
            if (i + 1 >= argc) {
                die("init: %s needs a value", a);
            }
            *dst = argv[++i];
        } else if (strcmp(a, "--join") == 0) {
            join = true;
        } else if (strcmp(a, "--observer") == 0) {
            observer = true;
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
    /* An observer is never a founding member: a founder votes, and a
     * cluster needs its voters before anyone can add an observer. */
    if (observer && (peers != NULL || restore != NULL)) {
        die("init: --observer joins an existing cluster as an observer: it "
            "excludes --peers and --restore (a founding member is a voter)");
    }
    join |= observer;
    if (join && peers != NULL) {
        die("init: --join and --peers exclude each other: --peers founds a "
            "new cluster, --join enters an existing one");
    }
    if (restore != NULL && (join || peers != NULL)) {
        die("init: --restore founds a one-node cluster: it excludes --join "
            "and --peers (add the other nodes afterwards)");
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
    char kpath[PATH_MAX];
    conf_path(dir, kpath, sizeof(kpath), SECURE_SIGN_FILE);
    if (access(kpath, F_OK) == 0) {
        die("init: %s already holds a signing key; refusing to overwrite it",
            dir);
    }
    if (secret != NULL) {
        copy_secret(secret, spath);
    } else {
        make_secret(spath);
    }
    /* This node's own signing key (mode 0600, never copied to another
     * node): the leader records its public half in the configuration,
     * where gossip's verifier looks voters' keys up. */
    uint8_t seed[SECURE_KEY_BYTES], pk[SECURE_SIGN_PK_BYTES];
    int krv = secure_global_init();
    if (krv == 0) {
        krv = secure_secret_create(kpath);
    }
    if (krv == 0) {
        krv = secure_secret_load(kpath, seed);
    }
    if (krv != 0) {
        die("init: signing key %s: %s", kpath, strerror(-krv));
    }
    secure_sign_public(seed, pk);
    memset(seed, 0, sizeof(seed));
    if (restore != NULL) {
        restore_image(dir, restore, id, listen);
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
           observer ? "waiting to be added to a cluster as an observer"
           : join   ? "waiting to be added to a cluster"
                    : (peers == self ? "founding a one-node cluster"
                                 : "founding a cluster with its peers"));
    if (secret == NULL) {
        printf("raftfs: cluster secret: %s (copy it to every other node's "
               "`raftfs init --secret`)\n", spath);
    }
    printf("raftfs: signing key: %s (this node's own), public key ", kpath);
    for (size_t i = 0; i < sizeof(pk); i++) {
        printf("%02x", pk[i]);
    }
    printf("\n");
    if (observer) {
        printf("raftfs: on the cluster, run: raftfs members add --observer %"
               PRIu64 " %s\n", id, listen);
    }
    return 0;
}


/* ------------------------------------------------------------------------ */
/* The admin socket: DATADIR/admin.sock, one command line per connection    */

struct admin_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int err;
    char text[8192];
};

static void admin_answered(void *arg, int err, const char *text)
{
    struct admin_wait *w = arg;
    pthread_mutex_lock(&w->lock);
    w->err = err;
    snprintf(w->text, sizeof(w->text), "%s", text);
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

struct admin_server {
    int fd;
    char path[PATH_MAX];
    struct node *node;
    pthread_t thread;
};

/*
 * An operator's line on the admin socket, as the raftfs command sends it:
 *   status | snapshot | members | add ID ADDR | observe ID ADDR |
 *   remove ID | transfer [ID]
 * 0 and *c, or -EINVAL with err saying what is wrong.
 */
static int admin_parse(const char *line, struct node_admin_cmd *c, char *err)
{
    char verb[16] = "", arg1[80] = "", arg2[CONS_ADDR_MAX + 8] = "";
    int k = sscanf(line, "%15s %79s %71s", verb, arg1, arg2);
    memset(c, 0, sizeof(*c));
    static const struct {
        const char *verb;
        enum node_admin_op op;
        int min, max; /* Words, the verb included. */
    } ops[] = {
        {"status", NODE_ADMIN_STATUS, 1, 1},
        {"snapshot", NODE_ADMIN_SNAPSHOT, 1, 1},
        {"members", NODE_ADMIN_MEMBERS, 1, 1},
        {"add", NODE_ADMIN_ADD, 3, 3},
        {"observe", NODE_ADMIN_ADD_OBSERVER, 3, 3},
        {"remove", NODE_ADMIN_REMOVE, 2, 2},
        {"transfer", NODE_ADMIN_TRANSFER, 1, 2},
    };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (strcmp(verb, ops[i].verb) != 0) {
            continue;
        }
        if (k < ops[i].min || k > ops[i].max) {
            break;
        }
        c->op = ops[i].op;
        bool any_id = c->op == NODE_ADMIN_TRANSFER && strcmp(arg1, "0") == 0;
        if (k >= 2 && !any_id && config_parse_id(arg1, &c->id, err) != 0) {
            return -EINVAL;
        }
        if (c->op == NODE_ADMIN_ADD || c->op == NODE_ADMIN_ADD_OBSERVER) {
            if (config_parse_addr(arg2, err) != 0) {
                return -EINVAL;
            }
            snprintf(c->addr, sizeof(c->addr), "%s", arg2);
        }
        return 0;
    }
    snprintf(err, RFS_ERRMSG_SZ, "unknown admin command '%.60s'", line);
    return -EINVAL;
}

static void admin_serve_one(struct admin_server *a, int c)
{
    struct timeval tv = {5, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char line[1024];
    size_t len = 0;
    while (len < sizeof(line) - 1) {
        ssize_t n = read(c, line + len, sizeof(line) - 1 - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        if (memchr(line, '\n', len) != NULL) {
            break;
        }
    }
    line[len] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    struct admin_wait w = {.done = false};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    struct node_admin_cmd cmd;
    char err[RFS_ERRMSG_SZ];
    if (admin_parse(line, &cmd, err) != 0) {
        admin_answered(&w, -EINVAL, err);
    } else if (node_admin(a->node, &cmd, admin_answered, &w) != 0) {
        admin_answered(&w, -ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&w.lock);
    while (!w.done) {
        pthread_cond_wait(&w.cond, &w.lock);
    }
    pthread_mutex_unlock(&w.lock);
    dprintf(c, "%s %d\n%s%s", w.err == 0 ? "OK" : "ERR", fs_errno(w.err),
            w.text, w.text[0] && w.text[strlen(w.text) - 1] != '\n' ? "\n"
                                                                    : "");
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
}

static void *admin_main(void *arg)
{
    struct admin_server *a = arg;
    for (;;) {
        int c = accept4(a->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            return NULL; /* Shut down. */
        }
        admin_serve_one(a, c);
        close(c);
    }
}

static int admin_open(struct admin_server *a, const char *dir,
                      struct node *node)
{
    a->node = node;
    conf_path(dir, a->path, sizeof(a->path), "admin.sock");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(a->path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "raftfs: %s: path too long for a Unix socket; admin "
                        "commands will not reach this node\n", a->path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, a->path);
    unlink(a->path); /* A stale one: the data folder lock says we own it. */
    a->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    mode_t old = umask(077); /* Born 0600: no window where others connect. */
    int rv = a->fd < 0 ? -1
                       : bind(a->fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    int e = 0;
    if (rv != 0 || chmod(a->path, 0600) != 0 || listen(a->fd, 16) != 0) {
        e = errno;
    } else {
        /* pthread_create returns its error; it does not set errno. */
        e = pthread_create(&a->thread, NULL, admin_main, a);
    }
    if (e != 0) {
        fprintf(stderr, "raftfs: admin socket %s: %s\n", a->path,
                strerror(e));
        if (a->fd >= 0) {
            close(a->fd);
        }
        a->fd = -1;
        return -e;
    }
    return 0;
}

static void admin_close(struct admin_server *a)
{
    if (a->fd < 0) {
        return;
    }
    shutdown(a->fd, SHUT_RDWR); /* Wakes accept(). */
    pthread_join(a->thread, NULL);
    close(a->fd);
    unlink(a->path);
}

/* ------------------------------------------------------------------------ */
/* Admin commands (clients of the socket)                                   */

static const char *data_dir_arg(int *argc, char ***argv)
{
    const char *dir = getenv("RAFTFS_DATA");
    for (int i = 0; i < *argc; i++) {
        if ((strcmp((*argv)[i], "-d") == 0 ||
             strcmp((*argv)[i], "--data") == 0) && i + 1 < *argc) {
            dir = (*argv)[i + 1];
            for (int k = i; k + 2 <= *argc; k++) {
                (*argv)[k] = (*argv)[k + 2];
            }
            *argc -= 2;
            break;
        }
    }
    return dir != NULL ? dir : "/var/lib/raftfs";
}

/* Send one command to the node of dir; returns its errno (0 = OK) and the
 * text in out. Exits with a clear message if the node is not running. */
static int admin_call(const char *dir, const char *line, char *out,
                      size_t cap)
{
    char path[PATH_MAX];
    conf_path(dir, path, sizeof(path), "admin.sock");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        die("%s: path too long for a Unix socket", path);
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        char conf[PATH_MAX];
        conf_path(dir, conf, sizeof(conf), CONF_NAME);
        if (access(conf, F_OK) != 0) {
            die("%s is not a raftfs data folder (no %s); use -d DATADIR",
                dir, CONF_NAME);
        }
        die("the node of %s is not running (%s: %s); start it with "
            "`raftfs mount %s MOUNTPOINT`", dir, path, strerror(errno), dir);
    }
    dprintf(fd, "%s\n", line);
    size_t len = 0;
    ssize_t n;
    while (len < cap - 1 && (n = read(fd, out + len, cap - 1 - len)) > 0) {
        len += (size_t)n;
    }
    close(fd);
    out[len] = '\0';
    int code = 0;
    char word[8] = "";
    if (sscanf(out, "%7s %d", word, &code) != 2) {
        die("the node of %s gave no answer to '%s'", dir, line);
    }
    char *nl = strchr(out, '\n');
    memmove(out, nl ? nl + 1 : out + len, strlen(nl ? nl + 1 : out + len) + 1);
    return strcmp(word, "OK") == 0 ? 0 : (code ? code : EIO);
}

/*
 * A membership change: the leader takes one at a time, and none before its
 * term's first commit (RFS_EBUSY, which the admin socket answers as
 * EAGAIN, as it answers every code: fs_errno). That passes within moments:
 * retry for up to 10 s, saying once why, rather than fail a script that
 * removes one node and adds another right after.
 */
static int admin_change(const char *dir, const char *line, char *out,
                        size_t cap)
{
    bool said = false;
    for (int tries = 0;; tries++) {
        int rv = admin_call(dir, line, out, cap);
        if (rv != EAGAIN || tries >= 100) {
            return rv;
        }
        if (!said) {
            fprintf(stderr, "raftfs: waiting: %.*s\n",
                    (int)strcspn(out, "\n"), out);
            said = true;
        }
        usleep(100000);
    }
}

/* A number or string field of the status JSON we print ourselves. */
static unsigned long long json_num(const char *j, const char *key)
{
    char want[64];
    snprintf(want, sizeof(want), "\"%s\":", key);
    const char *p = strstr(j, want);
    return p ? strtoull(p + strlen(want), NULL, 10) : 0;
}

static void json_str(const char *j, const char *key, char *out, size_t cap)
{
    char want[64];
    snprintf(want, sizeof(want), "\"%s\":\"", key);
    const char *p = strstr(j, want);
    size_t k = 0;
    if (p != NULL) {
        for (p += strlen(want); *p && *p != '"' && k + 1 < cap; p++) {
            if (*p == '\\' && p[1]) {
                p++;
            }
            out[k++] = *p;
        }
    }
    out[k] = '\0';
}

static int cmd_status(int argc, char **argv)
{
    const char *dir = data_dir_arg(&argc, &argv);
    bool json = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else {
            die("status: unknown argument '%s' (see raftfs --help)", argv[i]);
        }
    }
    char st[16384], members[16384];
    int rv = admin_call(dir, "status", st, sizeof(st));
    if (rv != 0) {
        die("status: %s", st);
    }
    if (json) {
        fputs(st, stdout);
        return 0;
    }
    char role[32], addr[80], err[200];
    json_str(st, "role", role, sizeof(role));
    json_str(st, "address", addr, sizeof(addr));
    json_str(st, "last_error", err, sizeof(err));
    printf("node %llu at %s: %s, term %llu%s\n", json_num(st, "id"), addr,
           role, json_num(st, "term"),
           strstr(st, "\"removed\":true") ? " (REMOVED from the cluster)" : "");
    unsigned long long leader = json_num(st, "leader");
    if (leader) {
        printf("leader: node %llu\n", leader);
    } else {
        printf("leader: none known\n");
    }
    printf("commit index %llu, applied index %llu, last index %llu, "
           "snapshot at %llu\n",
           json_num(st, "commit_index"), json_num(st, "applied_index"),
           json_num(st, "last_index"), json_num(st, "snapshot_index"));
    char sstate[32];
    const char *so = strstr(st, "\"session\":{");
    json_str(so ? so : st, "state", sstate, sizeof(sstate));
    if (so != NULL && strcmp(sstate, "off") != 0) {
        printf("session: boot %llu, TTL %.1f s, %s; live sessions in the "
               "cluster: %llu\n", json_num(so, "boot"),
               json_num(so, "ttl_ms") / 1000.0, sstate,
               json_num(st, "live_sessions"));
    }
    char key[80];
    json_str(st, "signing_key", key, sizeof(key));
    if (key[0] != '\0') {
        /* Recorded: this node's key appears in its own configuration's
         * record of itself (the members array, after its id). */
        char me[48];
        snprintf(me, sizeof(me), "{\"id\":%llu,", json_num(st, "id"));
        const char *arr = strstr(st, "\"members\":[");
        const char *m = arr != NULL ? strstr(arr, me) : NULL;
        char rec[80] = "";
        if (m != NULL) {
            const char *end = strchr(m, '}');
            json_str(m, "key", rec, sizeof(rec));
            if (end != NULL && strstr(m, "\"key\":") > end) {
                rec[0] = '\0';
            }
        }
        printf("signing key: %s (%s)\n", key,
               rec[0] == '\0'          ? "not recorded in the configuration yet"
               : strcmp(rec, key) == 0 ? "recorded in the configuration"
                                       : "the configuration records another "
                                         "one");
    } else {
        printf("signing key: none\n");
    }
    const char *g = strstr(st, "\"gossip\":{");
    if (g != NULL) {
        /* An observer's feed: what it holds, what a signed point proved
         * (the difference is its known lag), what it refused. */
        char grole[16], why[200];
        json_str(g, "role", grole, sizeof(grole));
        json_str(g, "last_refusal", why, sizeof(why));
        unsigned long long ap = json_num(g, "applied");
        unsigned long long head = json_num(g, "known_head");
        printf("gossip: %s, at index %llu, proven up to %llu (lag %llu), "
               "%llu entries taken, %llu refused%s%s; sent %llu messages "
               "(%llu bytes), %llu points signed; Raft bytes to observers "
               "%llu, Raft snapshot bytes sent %llu\n",
               grole, ap, head, head > ap ? head - ap : 0,
               json_num(g, "entries_taken"), json_num(g, "refusals"),
               why[0] ? ", last: " : "", why, json_num(g, "msgs_out"),
               json_num(g, "bytes_out"), json_num(g, "points_signed"),
               json_num(g, "raft_bytes_to_observers"),
               json_num(g, "raft_snap_bytes"));
        /* Images from peers (docs/protocol.md): what this node vouched
         * for, served, fetched and refused. */
        printf("images: %llu signed, %llu served (%llu bytes), %llu "
               "fetched (%llu bytes), %llu refused\n",
               json_num(g, "images_signed"), json_num(g, "images_served"),
               json_num(g, "image_bytes_served"),
               json_num(g, "images_fetched"),
               json_num(g, "image_bytes_fetched"),
               json_num(g, "image_refusals"));
    }
    printf("last error: %s\n", err[0] ? err : "none");
    if (admin_call(dir, "members", members, sizeof(members)) == 0) {
        printf("members (ID ADDRESS ROLE, replication as the leader sees "
               "it):\n");
        for (char *l = strtok(members, "\n"); l; l = strtok(NULL, "\n")) {
            printf("  %s\n", l);
        }
    } else {
        printf("members: %s (from this node's configuration:)\n",
               members[0] ? strtok(members, "\n") : "unknown");
        const char *p = strstr(st, "\"members\":[");
        while (p && (p = strstr(p + 1, "{\"id\":")) != NULL) {
            char a[80], r[16];
            json_str(p, "address", a, sizeof(a));
            json_str(p, "role", r, sizeof(r));
            printf("  %llu %s %s\n", json_num(p, "id"), a, r);
        }
    }
    return 0;
}

/* Follow a new observer until the leader replicates to it normally and it
 * is within 64 entries of the log's end (the bar promote_learners sets
 * for a learner): the operator's next step can count on it. */
static int follow_observer(const char *dir, rfs_nodeid_t id)
{
    char out[16384], last[256] = "", prefix[32];
    snprintf(prefix, sizeof(prefix), "%" PRIu64 " ", id);
    for (int tick = 0; tick < 30000; tick++) {
        if (admin_call(dir, "members", out, sizeof(out)) == 0) {
            for (char *m = strtok(out, "\n"); m; m = strtok(NULL, "\n")) {
                if (strncmp(m, prefix, strlen(prefix)) != 0) {
                    continue;
                }
                const char *lag = strstr(m, " lag=");
                if (strstr(m, " observer") != NULL && lag != NULL &&
                    strtoull(lag + 5, NULL, 10) <= 64 &&
                    strstr(m, " replicate") != NULL) {
                    printf("raftfs: node %" PRIu64 " caught up and is an "
                           "observer\n", id);
                    return 0;
                }
                if (strcmp(m, last) != 0) {
                    printf("raftfs: catching up: %s\n", m);
                    fflush(stdout);
                    snprintf(last, sizeof(last), "%s", m);
                }
            }
        }
        usleep(20000);
    }
    die("members add: observer %" PRIu64 " has not caught up after 10 "
        "minutes; see `raftfs status` and its log", id);
}

static int cmd_members(int argc, char **argv)
{
    const char *dir = data_dir_arg(&argc, &argv);
    char out[16384], line[256], err[RFS_ERRMSG_SZ];
    if (argc == 0 || (strcmp(argv[0], "list") == 0 && argc == 1)) {
        int rv = admin_call(dir, "members", out, sizeof(out));
        if (rv != 0) {
            die("members list: %s", out);
        }
        fputs(out, stdout);
        return 0;
    }
    if (strcmp(argv[0], "remove") == 0 && argc == 2) {
        rfs_nodeid_t id;
        if (config_parse_id(argv[1], &id, err) != 0) {
            die("members remove: %s", err);
        }
        snprintf(line, sizeof(line), "remove %" PRIu64, id);
        int rv = admin_change(dir, line, out, sizeof(out));
        if (rv != 0) {
            die("members remove %" PRIu64 ": %s", id, out);
        }
        printf("raftfs: %s", out);
        return 0;
    }
    if (strcmp(argv[0], "promote") == 0) {
        /* Said plainly, since a learner's promotion is automatic and an
         * operator may look for the step that turns an observer into a
         * voter: there is none, by design (docs/guide.md). */
        die("members: there is no promote command: a learner added by "
            "`members add` is promoted by the leader once caught up, and an "
            "observer is never promoted; to make an observer's host a "
            "voter, remove it and add it under a new id without --observer");
    }
    bool observer = false;
    if (strcmp(argv[0], "add") == 0) {
        for (int i = 1; i < argc; i++) {
            if (strcmp(argv[i], "--observer") == 0) {
                observer = true;
                memmove(&argv[i], &argv[i + 1],
                        (size_t)(argc - i - 1) * sizeof(argv[0]));
                argc--;
                break;
            }
        }
    }
    if (strcmp(argv[0], "add") != 0 || argc != 3) {
        die("members: expected list, add [--observer] ID IP:PORT or remove "
            "ID (see raftfs --help)");
    }
    rfs_nodeid_t id;
    if (config_parse_id(argv[1], &id, err) != 0 ||
        config_parse_addr(argv[2], err) != 0) {
        die("members add: %s", err);
    }
    snprintf(line, sizeof(line), "%s %" PRIu64 " %s",
             observer ? "observe" : "add", id, argv[2]);
    int rv = admin_change(dir, line, out, sizeof(out));
    if (rv != 0) {
        die("members add %" PRIu64 ": %s", id, out);
    }
    printf("raftfs: %s", out);
    if (observer) {
        return follow_observer(dir, id);
    }
    /* Follow the learner until the leader promotes it. */
    char want[64];
    snprintf(want, sizeof(want), "%" PRIu64 " %s voter", id, argv[2]);
    char last[256] = "";
    /* Every 20 ms: an admin call is cheap, and a fresh node is often a
     * voter within a few hundred milliseconds. */
    for (int tick = 0; tick < 30000; tick++) {
        if (admin_call(dir, "members", out, sizeof(out)) == 0) {
            char *l = strstr(out, want);
            if (l != NULL && (l == out || l[-1] == '\n')) {
                printf("raftfs: node %" PRIu64 " caught up and is a voter\n",
                       id);
                return 0;
            }
            char prefix[32];
            snprintf(prefix, sizeof(prefix), "%" PRIu64 " ", id);
            for (char *m = strtok(out, "\n"); m; m = strtok(NULL, "\n")) {
                if (strncmp(m, prefix, strlen(prefix)) == 0 &&
                    strcmp(m, last) != 0) {
                    printf("raftfs: catching up: %s\n", m);
                    fflush(stdout);
                    snprintf(last, sizeof(last), "%s", m);
                }
            }
        }
        usleep(20000);
    }
    die("members add: node %" PRIu64 " is still not a voter after 10 "
        "minutes; see `raftfs status` and its log", id);
}

static int cmd_leader(int argc, char **argv)
{
    const char *dir = data_dir_arg(&argc, &argv);
    if (argc < 1 || strcmp(argv[0], "transfer") != 0 || argc > 2) {
        die("leader: expected `leader transfer [ID]`");
    }
    char line[64], out[4096], err[RFS_ERRMSG_SZ];
    rfs_nodeid_t id = 0;
    if (argc == 2 && config_parse_id(argv[1], &id, err) != 0) {
        die("leader transfer: %s", err);
    }
    snprintf(line, sizeof(line), "transfer %" PRIu64, id);
    int rv = admin_call(dir, line, out, sizeof(out));
    if (rv != 0) {
        die("leader transfer: %s", out);
    }
    for (int i = 0; i < 100; i++) {
        char st[16384];
        if (admin_call(dir, "status", st, sizeof(st)) == 0) {
            unsigned long long l = json_num(st, "leader");
            if (l != 0 && (id == 0 || l == id) && strstr(out, "transfer") &&
                i > 0) {
                printf("raftfs: node %llu is the leader\n", l);
                return 0;
            }
        }
        usleep(100000);
    }
    die("leader transfer: no new leader within 10 s");
}

static int cmd_snapshot(int argc, char **argv)
{
    const char *dir = data_dir_arg(&argc, &argv);
    if (argc != 0) {
        die("snapshot: unexpected argument '%s'", argv[0]);
    }
    char out[4096];
    int rv = admin_call(dir, "snapshot", out, sizeof(out));
    if (rv != 0) {
        die("snapshot: %s", out);
    }
    printf("raftfs: %s", out);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* mount                                                                     */

struct mount_opts {
    struct fs_options fs;
    unsigned commit_timeout_s;
    unsigned session_ttl_ms;
    uint64_t history; /* history=N, 0: the store's default. */
    unsigned threads; /* threads=N, 0: sized to the CPUs (fuse_threads). */
    enum fs_uring_mode uring;
    bool lease;
    bool gossip;
    bool allow_other;
    bool debug;
    bool foreground;
    enum rfs_log_level log_level;
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
        } else if (strcmp(o, "lease") == 0 && v &&
                   (strcmp(v, "on") == 0 || strcmp(v, "off") == 0)) {
            m->lease = strcmp(v, "on") == 0;
        } else if (strcmp(o, "lease") == 0) {
            die("mount option lease=%s: expected lease=on or lease=off",
                v ? v : "");
        } else if (strcmp(o, "dircache") == 0 && v &&
                   (strcmp(v, "on") == 0 || strcmp(v, "off") == 0)) {
            m->fs.dircache = strcmp(v, "on") == 0;
        } else if (strcmp(o, "dircache") == 0) {
            die("mount option dircache=%s: expected dircache=on or "
                "dircache=off", v ? v : "");
        } else if (strcmp(o, "gossip") == 0 && v &&
                   (strcmp(v, "on") == 0 || strcmp(v, "off") == 0)) {
            m->gossip = strcmp(v, "on") == 0;
        } else if (strcmp(o, "gossip") == 0) {
            die("mount option gossip=%s: expected gossip=on or gossip=off",
                v ? v : "");
        } else if (strcmp(o, "uring") == 0 && v &&
                   (strcmp(v, "on") == 0 || strcmp(v, "off") == 0 ||
                    strcmp(v, "auto") == 0)) {
            m->uring = strcmp(v, "on") == 0     ? FS_URING_ON
                       : strcmp(v, "auto") == 0 ? FS_URING_AUTO
                                                : FS_URING_OFF;
        } else if (strcmp(o, "uring") == 0) {
            die("mount option uring=%s: expected uring=on, uring=off or "
                "uring=auto", v ? v : "");
        } else if (strcmp(o, "threads") == 0) {
            char *end;
            errno = 0;
            unsigned long t = v && *v >= '0' && *v <= '9'
                                  ? strtoul(v, &end, 10) : 0;
            if (t < 1 || t > 64 || errno != 0 || *end != '\0') {
                die("mount option threads=%s: expected a count of FUSE "
                    "threads from 1 to 64", v ? v : "");
            }
            m->threads = (unsigned)t;
        } else if (strcmp(o, "commit_timeout") == 0) {
            if (!v || !parse_seconds(v, 86400, &d) || d < 1) {
                die("mount option commit_timeout=%s: expected whole seconds "
                    "from 1 to 86400", v ? v : "");
            }
            m->commit_timeout_s = (unsigned)d;
        } else if (strcmp(o, "session_ttl") == 0) {
            /* At least 10 election timeouts (200 ms by default): the own
             * clock view's margin must cover a leader change (docs/node.md). */
            if (!v || !parse_seconds(v, 3600, &d) || d < 2) {
                die("mount option session_ttl=%s: expected seconds from 2 "
                    "to 3600", v ? v : "");
            }
            m->session_ttl_ms = (unsigned)(d * 1000);
        } else if (strcmp(o, "history") == 0) {
            char *end;
            errno = 0;
            unsigned long long h = v && *v >= '0' && *v <= '9'
                                       ? strtoull(v, &end, 10)
                                       : 0;
            if (h < 1 || h > 1000000000 || errno != 0 || *end != '\0') {
                die("mount option history=%s: expected a number of log "
                    "entries from 1 to 1000000000", v ? v : "");
            }
            m->history = h;
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
            m->log_level = (enum rfs_log_level)k;
        } else {
            die("unknown mount option '%s%s%s' (see raftfs --help)", o,
                v ? "=" : "", v ? v : "");
        }
    }
}

/* libfuse's own messages go to the same log as the node's. */
static void fuse_log_line(enum fuse_log_level level, const char *fmt,
                          va_list ap)
{
    enum rfs_log_level lv = level <= FUSE_LOG_ERR       ? RFS_LOG_ERROR
                            : level <= FUSE_LOG_WARNING ? RFS_LOG_WARN
                            : level <= FUSE_LOG_INFO    ? RFS_LOG_INFO
                                                        : RFS_LOG_DEBUG;
    if (lv > rfs_log_threshold) {
        return;
    }
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    rfs_log(lv, "fuse: %s", line);
}

/* The kernel's id of the (last) mount at path, and its device's minor
 * number, which for FUSE names the connection in /sys/fs/fuse/connections;
 * 0 and 0 if nothing is mounted there. */
struct mount_ids {
    uint64_t id;
    unsigned conn;
};

static struct mount_ids mount_ids(const char *path)
{
    struct mount_ids m = {0, 0};
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (f == NULL) {
        return m;
    }
    char line[8192];
    while (fgets(line, sizeof(line), f) != NULL) {
        char mnt[PATH_MAX];
        unsigned long long mid;
        unsigned maj, min;
        /* Field 5 is the mount point, with spaces escaped as \040. */
        if (sscanf(line, "%llu %*s %u:%u %*s %4095s", &mid, &maj, &min,
                   mnt) == 4 &&
            strcmp(mnt, path) == 0) {
            m.id = mid;
            m.conn = min;
        }
    }
    fclose(f);
    return m;
}

/*
 * The watchdog: a child that holds nothing but a pipe from the daemon.
 * When the daemon dies without saying goodbye (kill -9, the OOM killer, a
 * crash), it aborts the FUSE connection, so callers get ENOTCONN at once,
 * as with any dead FUSE daemon. Without it a killed daemon can fail to die
 * at all: in reads=local its invalidation thread may be waiting,
 * uninterruptibly, for a directory lock that a caller's request holds,
 * and that request waits for the dead daemon. The thread never ends, so
 * the process never finishes exiting and its descriptors (/dev/fuse, and
 * this pipe) stay open, and everything that touches the mount hangs
 * (found by the chaos test). So the watchdog learns of the death from the
 * parent-death signal, which the kernel sends when the thread that forked
 * it ends, stuck siblings or not; the pipe's end of file covers the rest.
 * Forked before any thread exists; the child calls only async-signal-safe
 * functions.
 */
static int watchdog_fd = -1;
static volatile sig_atomic_t watchdog_orphaned;

static void watchdog_on_parent_death(int sig)
{
    (void)sig;
    watchdog_orphaned = 1;
}

static void watchdog_abort(const unsigned char b[8])
{
    uint64_t conn = 0;
    for (int i = 7; i >= 0; i--) {
        conn = conn << 8 | b[i];
    }
    char digits[24];
    int k = 0;
    do {
        digits[k++] = (char)('0' + conn % 10);
        conn /= 10;
    } while (conn > 0 && k < 20);
    char path[80] = "/sys/fs/fuse/connections/";
    size_t len = strlen(path);
    while (k > 0) {
        path[len++] = digits[--k];
    }
    memcpy(path + len, "/abort", 7);
    int fd = open(path, O_WRONLY);
    if (fd >= 0) {
        if (write(fd, "1", 1) != 1) {
            /* Already gone. */
        }
        close(fd);
    }
}

static void watchdog_main(int rd, pid_t parent)
{
    prctl(PR_SET_NAME, "raftfs-watch", 0, 0, 0);
    for (int fd = 0; fd < 1024; fd++) {
        if (fd != rd) {
            close(fd); /* Above all the pid file's lock and the log. */
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = watchdog_on_parent_death; /* No SA_RESTART: wake read. */
    sigaction(SIGUSR1, &sa, NULL);
    prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0);
    if (getppid() != parent) {
        _exit(0); /* It died before we could watch: nothing was mounted. */
    }
    unsigned char b[8];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t n = read(rd, b + got, sizeof(b) - got);
        if (n == 0 || (n < 0 && (errno != EINTR || watchdog_orphaned))) {
            _exit(0); /* Gone before mounting: nothing to abort. */
        }
        got += n > 0 ? (size_t)n : 0;
    }
    char c;
    ssize_t n;
    do {
        n = read(rd, &c, 1);
    } while (n < 0 && errno == EINTR && !watchdog_orphaned);
    if (n < 0) {
        /* Orphaned: a clean exit would have said so first. */
        fcntl(rd, F_SETFL, O_NONBLOCK);
        n = read(rd, &c, 1);
    }
    if (n == 1) {
        _exit(0); /* A clean exit: the daemon unmounted. */
    }
    watchdog_abort(b);
    _exit(0);
}

static void watchdog_start(void)
{
    int p[2];
    if (pipe(p) != 0) {
        fprintf(stderr, "raftfs: no watchdog (pipe: %s)\n", strerror(errno));
        return;
    }
    pid_t self = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "raftfs: no watchdog (fork: %s)\n", strerror(errno));
        close(p[0]);
        close(p[1]);
        return;
    }
    if (pid == 0) {
        watchdog_main(p[0], self);
    }
    close(p[0]);
    watchdog_fd = p[1];
    fcntl(watchdog_fd, F_SETFD, FD_CLOEXEC);
}

/* Tell the watchdog which connection to abort should we die. */
static void watchdog_arm(unsigned conn)
{
    if (watchdog_fd < 0 || conn == 0) {
        return;
    }
    unsigned char b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)((uint64_t)conn >> (8 * i));
    }
    if (write(watchdog_fd, b, sizeof(b)) != (ssize_t)sizeof(b)) {
        fprintf(stderr, "raftfs: the watchdog is gone\n");
    }
}

/* A clean exit: unmounted, nothing for the watchdog to do. */
static void watchdog_disarm(void)
{
    if (watchdog_fd >= 0) {
        signal(SIGPIPE, SIG_IGN);
        if (write(watchdog_fd, "c", 1) != 1) {
            /* It is gone already; so is its job. */
        }
        close(watchdog_fd);
        watchdog_fd = -1;
    }
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

/* Whether descriptor fd is on a raftfs mount: its mount id (fdinfo)
 * is one /proc/self/mountinfo gives the type fuse.raftfs. Read from
 * /proc, never from the file: an fstatfs would ask that mount's daemon,
 * which may be hung. */
static bool fd_on_raftfs(int fd, const int *ids, size_t nids)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return false;
    }
    int mnt = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "mnt_id: %d", &mnt) == 1) {
            break;
        }
    }
    fclose(f);
    for (size_t i = 0; i < nids; i++) {
        if (ids[i] == mnt) {
            return true;
        }
    }
    return false;
}

/* A node lives long: it must not keep a raftfs file it did not open. One
 * inherited from a script that holds it open (say `exec 3>lock; flock 3`
 * before `raftfs mount`) would stay open after the script closes it: the
 * kernel sends the RELEASE only at the last close, so the script's flock
 * would stay held for as long as this node runs. Only descriptors on
 * raftfs mounts are closed: others are the caller's business (a
 * `flock -n guard raftfs mount` keeps its guard), and closing a file of
 * some other, hung FUSE mount could block the start. */
static void close_inherited(void)
{
    int ids[256];
    size_t nids = 0;
    FILE *mi = fopen("/proc/self/mountinfo", "re");
    if (mi == NULL) {
        return; /* No /proc: nothing better to do; the node still runs. */
    }
    char line[4096];
    while (fgets(line, sizeof(line), mi) != NULL && nids < 256) {
        const char *sep = strstr(line, " - ");
        int id;
        if (sep != NULL && strncmp(sep + 3, "fuse.raftfs ", 12) == 0 &&
            sscanf(line, "%d", &id) == 1) {
            ids[nids++] = id;
        }
    }
    fclose(mi);
    if (nids == 0) {
        return;
    }
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        return;
    }
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (fd > 2 && fd != self && fd_on_raftfs(fd, ids, nids)) {
            close(fd);
        }
    }
    closedir(d);
}

/* FUSE worker threads over /dev/fuse when threads= is not given. A request
 * that waits (a commit, a barrier off the lease) holds no thread: its
 * answer comes from the node's loop. So threads only need to cover the
 * CPUs, and each one more is one more sleeper the kernel may wake (a VM
 * exit each here) instead of one already running: measured in
 * docs/performance.md, "FUSE threads". */
static unsigned fuse_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return FUSE_THREADS_PER_CPU * (unsigned)(cpus > 0 ? cpus : 1);
}

static int cmd_mount(int argc, char **argv)
{
    close_inherited();
    struct mount_opts m;
    memset(&m, 0, sizeof(m));
    fs_options_default(&m.fs);
    m.commit_timeout_s = 30;
    m.session_ttl_ms = 10000;
    m.uring = FS_URING_AUTO;
    m.lease = true;
    m.log_level = RFS_LOG_INFO;
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
    if (mount_ids(mnt).id != 0) {
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
    watchdog_start();

    struct store_options so;
    store_options_default(&so);
    m.fs.data_dir = dir;
    m.fs.min_free_bytes = so.min_free_bytes;
    m.fs.max_file_bytes = so.max_file_bytes;
    struct fs *fs;
    if (fs_new(&m.fs, &fs) != 0) {
        fail("out of memory");
    }
    char who[32];
    snprintf(who, sizeof(who), "node %" PRIu64, conf.id);
    rfs_log_set_who(who);
    rfs_log_set_level(m.log_level);
    fuse_set_log_func(fuse_log_line);
    struct node_options no;
    node_options_default(&no);
    no.id = conf.id;
    no.dir = dir;
    no.listen = conf.listen;
    no.bootstrap = conf.peers[0] ? &peers : NULL;
    no.commit_timeout_ms = m.commit_timeout_s * 1000;
    no.history_entries = m.history;
    no.lease_reads = m.lease;
    no.gossip = m.gossip;
    no.session_ttl_ms = m.session_ttl_ms;
    no.on_apply = fs_on_apply;
    no.on_log = fs_on_log;
    no.on_tick = fs_on_tick;
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
    rv = fs_uring_attach(se, m.uring);
    if (rv != 0) {
        fuse_session_unmount(se);
        node_stop(node);
        fail("uring=: cannot hook the FUSE session's I/O: %s",
             strerror(-rv));
    }
    struct mount_ids ids = mount_ids(mnt);
    fs_set_mount_id(fs, ids.id);
    watchdog_arm(ids.conn);
    struct admin_server admin = {.fd = -1};
    admin_open(&admin, dir, node);
    RFS_LOG(RFS_LOG_INFO, "mounted");
    fprintf(stderr, "raftfs: node %" PRIu64 " mounted at %s (reads=%s)\n",
            conf.id, mnt, m.fs.linearizable ? "linearizable" : "local");
    report("ok");

    struct fuse_loop_config *lc = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(lc, m.threads ? m.threads : fuse_threads());
    rv = fuse_session_loop_mt(se, lc);
    fuse_loop_cfg_destroy(lc);
    fs_uring_stop();
    RFS_LOG(RFS_LOG_INFO, "unmounting");
    admin_close(&admin);
    fs_drop_views(fs);
    /* A clean unmount ends this node's session now, not a TTL later: its
     * ephemeral files and locks go at once on every node. */
    int ended = node_end_session(node, 3000);
    if (ended != 0) {
        RFS_LOG(RFS_LOG_WARN, "could not end this node's session (%s): the "
                "leader ends it after its TTL", rfs_strerror(ended));
    }
    /* The node first: its last callbacks still answer the kernel through
     * the session, which must outlive them. */
    node_stop(node);
    fs_free(fs);
    fs_uring_close();
    fuse_remove_signal_handlers(se);
    fuse_session_unmount(se);
    watchdog_disarm();
    fuse_session_destroy(se);
    fuse_opt_free_args(&args);
    RFS_LOG(RFS_LOG_INFO, "stopped");
    return rv < 0 ? 1 : 0;
}

/* mount(8) runs `mount.raftfs SPEC DIR [-sfnv] [-N NS] [-o OPTS]` for
 * `mount -t raftfs` and fstab lines: the same as `raftfs mount`, minus the
 * flags that concern mount(8) itself. */
static int mount_helper(int argc, char **argv)
{
    char *args[64];
    int n = 0;
    for (int i = 1; i < argc && n < 60; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-o") == 0 && i + 1 < argc) {
            args[n++] = argv[i];
            args[n++] = argv[++i];
        } else if (strcmp(a, "-N") == 0 && i + 1 < argc) {
            i++; /* A namespace: we mount in our own. */
        } else if (a[0] == '-' && strspn(a + 1, "sfnv") == strlen(a + 1)) {
            continue; /* sloppy, fake, no-mtab, verbose: mount(8)'s. */
        } else {
            args[n++] = argv[i];
        }
    }
    args[n] = NULL;
    return cmd_mount(n, args);
}

/* raftfs ephemeral DIR...: set the mark (see fs/ and docs/guide.md). */
static int cmd_ephemeral(int argc, char **argv)
{
    if (argc < 1) {
        die("ephemeral: expected one or more directories in a raftfs mount "
            "(see raftfs --help)");
    }
    int status = 0;
    for (int i = 0; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "raftfs: ephemeral: %s: %s\n", argv[i],
                    strerror(errno));
            status = 1;
        } else if (!S_ISDIR(st.st_mode)) {
            fprintf(stderr, "raftfs: ephemeral: %s: not a directory\n",
                    argv[i]);
            status = 1;
        } else if (getxattr(argv[i], "user.raftfs.revision", NULL, 0) < 0) {
            /* Every inode of a raftfs mount has this virtual name; any
             * other filesystem would store the mark and ignore it. */
            fprintf(stderr, "raftfs: ephemeral: %s: not in a raftfs mount\n",
                    argv[i]);
            status = 1;
        } else if (setxattr(argv[i], STORE_EPHEMERAL_XATTR, "1", 1, 0) != 0) {
            int e = errno;
            fprintf(stderr, "raftfs: ephemeral: %s: %s\n", argv[i],
                    e == EOPNOTSUPP || e == EPERM
                        ? "not a directory in a raftfs mount"
                        : strerror(e));
            status = 1;
        }
    }
    return status;
}

int main(int argc, char **argv)
{
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    if (strcmp(base, "mount.raftfs") == 0 ||
        strcmp(base, "mount.fuse.raftfs") == 0) {
        return mount_helper(argc, argv);
    }
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
    if (strcmp(argv[1], "status") == 0) {
        return cmd_status(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "members") == 0) {
        return cmd_members(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "leader") == 0) {
        return cmd_leader(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "ephemeral") == 0) {
        return cmd_ephemeral(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "snapshot") == 0) {
        return cmd_snapshot(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "watch") == 0) {
        return cmd_watch(argc - 2, argv + 2);
    }
    if (strcmp(argv[1], "put") == 0) {
        return cmd_put(argc - 2, argv + 2);
    }
    die("unknown command '%s' (see raftfs --help)", argv[1]);
}
