/*
 * raftfs-testnode: one raftfs node driven over stdin/stdout, for integration
 * tests until the FUSE mount exists.
 *
 *   raftfs-testnode --id N --dir DIR --listen IP:PORT
 *                   [--bootstrap 1=IP:PORT,2=IP:PORT,...]
 *                   [--snapshot-entries K] [--timeout-ms T] [--tick-ms T]
 *                   [--gossip on] [--gossip-cache N] [--apply-times on]
 *
 * In --bootstrap, an id followed by "o" (4o=IP:PORT) founds an observer.
 * --gossip on: node_options.gossip; --gossip-cache N: its gossip_cache.
 * --apply-times on: print "a INDEX MS"
 * for every command applied here (MS: CLOCK_MONOTONIC milliseconds, the
 * same clock in every process), so a test can measure dissemination lag.
 *
 * Commands, one per line:      Answers (asynchronous, in any order):
 *   put ID NAME VALUE            done ID ERR INO     (ERR: the op's errno)
 *   get ID NAME                  val ID VALUE | val ID -ERRNO
 *   status                       status id=.. role=.. term=.. leader=..
 *                                       commit=.. applied=.. peers=..
 *                                       and, with --gossip on or off,
 *                                       a line gossip id=.. gapplied=..
 *                                       gtaken=.. gbytes=.. graft=..
 *                                       grefusals=.. gfromlog=..
 *                                       chain=HEX (graft counts with
 *                                       gossip off too)
 *   cut ID                       (none: frames to node ID, or to every
 *                                peer for 0, dropped from now on)
 *   heal                         (none: nothing dropped any more)
 * A failed submission answers "done ID -CODE" / "val ID -CODE". The
 * forger build (forger.c) answers cut and heal as unknown commands.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../common/err.h"
#include "../../common/heap.h"
#include "../../consensus/node.h"
#include "../../consensus/transport.h"

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static struct node *node;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    pthread_mutex_lock(&out_lock);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

struct op {
    long id;
    char name[256];
};

static void put_done(void *arg, int err, const struct store_result *r)
{
    struct op *o = arg;
    if (err != 0) {
        say("done %ld %d 0\n", o->id, err);
    } else {
        say("done %ld %d %llu\n", o->id, r->err, (unsigned long long)r->ino);
    }
    free(o);
}

static void get_done(void *arg, int err, const struct store_result *r)
{
    (void)r;
    struct op *o = arg;
    if (err != 0) {
        say("val %ld %d\n", o->id, err);
        free(o);
        return;
    }
    struct store *s = node_store(node);
    struct store_attr a;
    int rv = store_lookup(s, NULL, STORE_ROOT_INO, o->name, strlen(o->name),
                          &a);
    char buf[4096];
    size_t got = 0;
    if (rv == 0) {
        rv = store_read(s, NULL, a.ino, 0, sizeof(buf) - 1, buf, &got);
    }
    buf[got] = '\0';
    if (rv != 0) {
        say("val %ld %d\n", o->id, rv);
    } else {
        say("val %ld %s\n", o->id, buf);
    }
    free(o);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void apply_times(void *data, rfs_index_t index,
                        const struct store_cmd *c,
                        const struct store_result *r, bool own)
{
    (void)data;
    (void)r;
    (void)own;
    if (c != NULL) {
        say("a %llu %llu\n", (unsigned long long)index,
            (unsigned long long)mono_ms());
    }
}

/* `cut ID` (0: every peer) drops every frame this node sends to ID until
 * `heal`: with the same said to every other node about this one, a
 * partition that keeps the connections open, as a black-holing network
 * does. Set from the command thread, read on the loop thread. A test-only
 * transport decorator (transport.h); the forger build keeps its own. */
static _Atomic uint64_t cut_mask; /* Bit i: frames to node i dropped. */
static atomic_bool cut_all;

static void *cut_open(struct transport *t, uv_loop_t *loop, rfs_nodeid_t id,
                      char *what, size_t cap)
{
    (void)t;
    (void)loop;
    (void)id;
    snprintf(what, cap, "outgoing frames dropped while `cut` (tests)");
    return &cut_mask;
}

static bool cut_wrap(void *state, rfs_nodeid_t to, uint8_t type,
                     struct rfs_buf plain)
{
    (void)state;
    (void)type;
    bool drop = atomic_load(&cut_all) ||
                (to < 64 && ((atomic_load(&cut_mask) >> to) & 1));
    if (drop) {
        rfs_free(plain.base);
    }
    return drop;
}

static void cut_close(void *state)
{
    (void)state;
}

static const struct transport_decorator cutter = {
    .open = cut_open,
    .wrap = cut_wrap,
    .close = cut_close,
};

static int parse_conf(const char *s, struct cons_conf *c)
{
    memset(c, 0, sizeof(*c));
    char copy[2048];
    snprintf(copy, sizeof(copy), "%s", s);
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (eq == NULL || c->n >= CONS_MAX_SERVERS) {
            return -1;
        }
        *eq = '\0';
        char *end;
        c->servers[c->n].id = strtoull(tok, &end, 10);
        c->servers[c->n].role = *end == 'o' ? CONS_OBSERVER : CONS_VOTER;
        snprintf(c->servers[c->n].addr, CONS_ADDR_MAX, "%s", eq + 1);
        c->n++;
    }
    return c->n > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    bool gossip_status = false;
    struct node_options o;
    node_options_default(&o);
    struct cons_conf conf;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--id") == 0) {
            o.id = strtoull(v, NULL, 10);
        } else if (strcmp(k, "--dir") == 0) {
            o.dir = v;
        } else if (strcmp(k, "--listen") == 0) {
            o.listen = v;
        } else if (strcmp(k, "--bootstrap") == 0) {
            if (parse_conf(v, &conf) != 0) {
                fprintf(stderr, "bad --bootstrap '%s'\n", v);
                return 2;
            }
            o.bootstrap = &conf;
        } else if (strcmp(k, "--snapshot-entries") == 0) {
            o.snapshot_entries = strtoull(v, NULL, 10);
        } else if (strcmp(k, "--timeout-ms") == 0) {
            o.commit_timeout_ms = (unsigned)atoi(v);
        } else if (strcmp(k, "--tick-ms") == 0) {
            o.tick_ms = (unsigned)atoi(v);
        } else if (strcmp(k, "--gossip") == 0) {
            o.gossip = strcmp(v, "on") == 0;
            gossip_status = true;
        } else if (strcmp(k, "--gossip-cache") == 0) {
            o.gossip_cache = (unsigned)atoi(v);
        } else if (strcmp(k, "--apply-times") == 0) {
            if (strcmp(v, "on") == 0) {
                o.on_apply = apply_times;
            }
        } else {
            fprintf(stderr, "unknown option %s\n", k);
            return 2;
        }
    }
    if (getenv("RAFTFS_DEBUG") != NULL) {
        rfs_log_set_level(RFS_LOG_DEBUG);
    }
    bool can_cut = transport_test_decorator == NULL;
    if (can_cut) {
        transport_test_decorator = &cutter;
    }
    char err[RFS_ERRMSG_SZ];
    int rv = node_start(&o, &node, err);
    if (rv != 0) {
        fprintf(stderr, "raftfs-testnode: %s\n", err);
        say("error %s\n", err);
        return 1;
    }
    say("started %llu\n", (unsigned long long)o.id);
    char line[8192];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char cmd[16], name[256];
        long id;
        int off = 0;
        if (sscanf(line, "%15s", cmd) != 1) {
            continue;
        }
        if (strcmp(cmd, "put") == 0 &&
            sscanf(line, "put %ld %255s %n", &id, name, &off) == 2) {
            struct op *op = calloc(1, sizeof(*op));
            op->id = id;
            const char *value = line + off;
            struct store_cmd c = {.op = STORE_OP_CREATE,
                                  .parent = STORE_ROOT_INO, .name = name,
                                  .name_len = (uint16_t)strlen(name),
                                  .mode = 0644, .flags = STORE_TRUNC,
                                  .data = value,
                                  .data_len = (uint32_t)strlen(value)};
            if (node_submit(node, &c, put_done, op) != 0) {
                say("done %ld %d 0\n", id, -ENOMEM);
                free(op);
            }
        } else if (strcmp(cmd, "get") == 0 &&
                   sscanf(line, "get %ld %255s", &id, name) == 2) {
            struct op *op = calloc(1, sizeof(*op));
            op->id = id;
            snprintf(op->name, sizeof(op->name), "%s", name);
            if (node_read_barrier(node, 0, get_done, op) != 0) {
                say("val %ld %d\n", id, -ENOMEM);
                free(op);
            }
        } else if (strcmp(cmd, "status") == 0) {
            struct node_status st;
            node_status(node, &st);
            say("status id=%llu role=%s term=%llu leader=%llu commit=%llu "
                "applied=%llu peers=%u snap=%llu first=%llu\n",
                (unsigned long long)o.id, cons_role_name(st.core.role),
                (unsigned long long)st.core.term,
                (unsigned long long)st.core.leader,
                (unsigned long long)st.core.commit,
                (unsigned long long)st.applied, st.peers_connected,
                (unsigned long long)st.core.snap_index,
                (unsigned long long)st.core.first_index);
            /* With --gossip off too: the Raft bytes the leader sends
             * observers are what bench/run's J2 compares gossip with.
             * Without --gossip, none (tests/lib/procs.c's readers keep
             * lines they do not expect). */
            if (gossip_status) {
                char hex[2 * STORE_CHAIN_BYTES + 1];
                for (unsigned b = 0; b < STORE_CHAIN_BYTES; b++) {
                    snprintf(hex + 2 * b, 3, "%02x", st.gossip.chain[b]);
                }
                say("gossip id=%llu grole=%u gapplied=%llu gtaken=%llu "
                    "gbytes=%llu graft=%llu grefusals=%llu gfromlog=%llu "
                    "gsnapbytes=%llu isigned=%llu iserved=%llu "
                    "ifetched=%llu ibytes=%llu irefused=%llu "
                    "chain=%s\n",
                    (unsigned long long)o.id, st.gossip.role,
                    (unsigned long long)st.gossip.applied,
                    (unsigned long long)st.gossip.entries_taken,
                    (unsigned long long)st.gossip.bytes_out,
                    (unsigned long long)st.gossip.raft_bytes_to_observers,
                    (unsigned long long)st.gossip.refusals,
                    (unsigned long long)st.gossip.from_log,
                    (unsigned long long)st.gossip.raft_snap_bytes,
                    (unsigned long long)st.gossip.images_signed,
                    (unsigned long long)st.gossip.images_served,
                    (unsigned long long)st.gossip.images_fetched,
                    (unsigned long long)st.gossip.image_bytes_fetched,
                    (unsigned long long)st.gossip.image_refusals, hex);
            }
        } else if (strcmp(cmd, "cut") == 0 && can_cut &&
                   sscanf(line, "cut %ld", &id) == 1 && id >= 0 && id < 64) {
            if (id == 0) {
                atomic_store(&cut_all, true);
            } else {
                atomic_fetch_or(&cut_mask, UINT64_C(1) << id);
            }
        } else if (strcmp(cmd, "heal") == 0 && can_cut) {
            atomic_store(&cut_all, false);
            atomic_store(&cut_mask, 0);
        } else {
            say("error unknown command\n");
        }
    }
    node_stop(node);
    return 0;
}
