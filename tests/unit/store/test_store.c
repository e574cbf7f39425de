/*
 * Unit tests of store/: the log, the filesystem state machine and its
 * errnos, exactly-once application, snapshots, corruption. Real RocksDB in a
 * temporary folder per test.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../common/err.h"
#include "../../../common/heap.h"
#include "../../../store/store_i.h"

struct fixture {
    char dir[256];
    struct store *s;
    rfs_index_t next; /* Next log index to apply. */
    uint64_t seq;
    uint64_t lk_ino; /* The file the lock tests lock. */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/raftfs-store-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        return -1;
    }
    strcat(f->dir, "/db");
    char err[RFS_ERRMSG_SZ];
    if (store_open(f->dir, NULL, &f->s, err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    f->next = 1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", (int)(strlen(f->dir) - 3),
             f->dir);
    if (system(cmd) != 0) {
        return -1;
    }
    free(f);
    return 0;
}

/* Apply one command as the next log entry; returns its result. */
static struct store_result apply(struct fixture *f, struct store_cmd *c)
{
    if (c->seq == 0) {
        c->client = 7;
        c->boot = 1;
        c->seq = ++f->seq;
    }
    if (c->time_ns == 0) {
        c->time_ns = 1000 * (int64_t)f->next;
    }
    struct rfs_buf b;
    assert_int_equal(store_cmd_encode(c, &b), 0);
    struct cons_entry e = {.term = 1, .index = f->next++,
                           .type = CONS_ENTRY_NORMAL, .data = b};
    struct store_result r;
    assert_int_equal(store_apply(f->s, &e, 1, &r), 0);
    rfs_free(b.base);
    return r;
}

static int op(struct fixture *f, uint8_t opc, uint64_t parent,
              const char *name, uint64_t *ino)
{
    struct store_cmd c = {.op = opc, .parent = parent, .name = name,
                          .name_len = (uint16_t)strlen(name), .mode = 0644,
                          .uid = 1000, .gid = 1000};
    if (opc == STORE_OP_SYMLINK) {
        c.data = "target";
        c.data_len = 6;
    }
    struct store_result r = apply(f, &c);
    if (ino != NULL) {
        *ino = r.ino;
    }
    return r.err;
}

static int mv(struct fixture *f, uint64_t p, const char *a, uint64_t np,
              const char *b, uint32_t flags)
{
    struct store_cmd c = {.op = STORE_OP_RENAME, .parent = p, .name = a,
                          .name_len = (uint16_t)strlen(a), .new_parent = np,
                          .new_name = b, .new_name_len = (uint16_t)strlen(b),
                          .flags = flags};
    return apply(f, &c).err;
}

static int wr(struct fixture *f, uint64_t ino, uint64_t off, const char *data,
              size_t len, uint32_t flags)
{
    struct store_cmd c = {.op = STORE_OP_WRITE, .ino = ino, .offset = off,
                          .data = data, .data_len = (uint32_t)len,
                          .flags = flags};
    return apply(f, &c).err;
}

static uint64_t lookup(struct fixture *f, uint64_t parent, const char *name)
{
    struct store_attr a;
    int rv = store_lookup(f->s, NULL, parent, name, strlen(name), &a);
    return rv == 0 ? a.ino : 0;
}

static size_t readf(struct fixture *f, uint64_t ino, uint64_t off, char *buf,
                    size_t len)
{
    size_t got;
    assert_int_equal(store_read(f->s, NULL, ino, off, len, buf, &got), 0);
    return got;
}

/* ---- Log -------------------------------------------------------------- */

/* Entries and hard state written together come back on load; a later write
 * replaces the suffix from its first index. */
static void test_log_write_load_truncate(void **state)
{
    struct fixture *f = *state;
    struct cons_entry e[5];
    char data[5][8];
    for (int i = 0; i < 5; i++) {
        snprintf(data[i], sizeof(data[i]), "e%d", i + 1);
        e[i] = (struct cons_entry){.term = 1, .index = (rfs_index_t)i + 1,
                                   .type = CONS_ENTRY_NORMAL,
                                   .data = {data[i], strlen(data[i])}};
    }
    struct cons_hard_state hs = {.term = 3, .vote = 2, .commit = 2};
    assert_int_equal(store_log_write(f->s, &hs, e, 5), 0);
    struct cons_entry x = {.term = 3, .index = 3, .type = CONS_ENTRY_NORMAL,
                           .data = {(void *)"new", 3}};
    assert_int_equal(store_log_write(f->s, NULL, &x, 1), 0);
    struct store_loaded l;
    assert_int_equal(store_load(f->s, &l), 0);
    assert_int_equal(l.hs.term, 3);
    assert_int_equal(l.hs.vote, 2);
    assert_int_equal(l.n_entries, 3);
    assert_int_equal(l.entries[2].term, 3);
    assert_memory_equal(l.entries[2].data.base, "new", 3);
    store_loaded_free(&l);
}

/* A record whose bytes changed is reported with its index, never used. */
static void test_log_corrupt_record_detected(void **state)
{
    struct fixture *f = *state;
    struct cons_entry e[3];
    for (int i = 0; i < 3; i++) {
        e[i] = (struct cons_entry){.term = 1, .index = (rfs_index_t)i + 1,
                                   .type = CONS_ENTRY_NORMAL,
                                   .data = {(void *)"abcdef", 6}};
    }
    assert_int_equal(store_log_write(f->s, NULL, e, 3), 0);
    /* Flip one bit of record 2's payload, behind the store's back. */
    uint8_t k[8];
    rfs_put_be64(k, 2);
    char *err = NULL;
    size_t len;
    char *v = rocksdb_get_cf(f->s->db, f->s->ro, f->s->cf[CF_LOG], (char *)k,
                             8, &len, &err);
    assert_null(err);
    v[len - 1] ^= 0x01;
    rocksdb_put_cf(f->s->db, f->s->wo_sync, f->s->cf[CF_LOG], (char *)k, 8, v,
                   len, &err);
    assert_null(err);
    rocksdb_free(v);
    struct store_loaded l;
    assert_int_equal(store_load(f->s, &l), RFS_ECORRUPT);
    assert_non_null(strstr(store_errmsg(f->s), "log record 2 "));
    struct cons_entry got;
    assert_int_equal(store_log_get(f->s, 2, &got), RFS_ECORRUPT);
    assert_int_equal(store_log_get(f->s, 3, &got), 0);
    rfs_free(got.data.base);
}

/* Bytes flipped in the database files themselves fail the open or the read
 * (RocksDB's own checksums, paranoid checks on). */
static void test_log_corrupt_file_detected(void **state)
{
    struct fixture *f = *state;
    struct cons_entry e = {.term = 1, .index = 1, .type = CONS_ENTRY_NORMAL,
                           .data = {(void *)"payload-payload-payload", 23}};
    assert_int_equal(store_log_write(f->s, NULL, &e, 1), 0);
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    char *err = NULL;
    rocksdb_flush_cf(f->s->db, fo, f->s->cf[CF_LOG], &err);
    assert_null(err);
    rocksdb_flushoptions_destroy(fo);
    store_close(f->s);
    f->s = NULL;
    /* Flip a byte in the middle of each table file. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "for t in '%s'/*.sst; do sz=$(stat -c %%s \"$t\"); "
             "printf '\\377\\377\\377\\377' | dd of=\"$t\" bs=1 seek=$((sz/3)) "
             "conv=notrunc status=none; done",
             f->dir);
    assert_int_equal(system(cmd), 0);
    char msg[RFS_ERRMSG_SZ];
    int rv = store_open(f->dir, NULL, &f->s, msg);
    if (rv == 0) {
        struct store_loaded l;
        rv = store_load(f->s, &l);
        if (rv == 0) {
            store_loaded_free(&l);
        }
    } else {
        f->s = NULL;
    }
    assert_int_equal(rv, RFS_ECORRUPT);
    if (f->s == NULL) {
        /* Reopen a fresh store so teardown has something to close. */
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(store_open(f->dir, NULL, &f->s, msg), 0);
    }
}

/* ---- State machine ---------------------------------------------------- */

/* create, write, read back; O_EXCL create answers EEXIST. */
static void test_create_write_read(void **state)
{
    struct fixture *f = *state;
    uint64_t ino;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "a", &ino), 0);
    assert_int_equal(ino, 2); /* Index of the creating entry, plus one. */
    assert_int_equal(wr(f, ino, 0, "hello", 5, 0), 0);
    char buf[16];
    assert_int_equal(readf(f, ino, 0, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "hello", 5);
    struct store_cmd c = {.op = STORE_OP_CREATE, .parent = STORE_ROOT_INO,
                          .name = "a", .name_len = 1, .flags = STORE_EXCL};
    assert_int_equal(apply(f, &c).err, EEXIST);
    struct store_attr a;
    assert_int_equal(store_getattr(f->s, NULL, ino, &a), 0);
    assert_int_equal(a.size, 5);
    assert_int_equal(a.uid, 1000);
    assert_int_equal(a.revision, 2);
}

/* `echo v > f` as one entry: create with truncate and data. */
static void test_create_fused_with_write(void **state)
{
    struct fixture *f = *state;
    struct store_cmd c = {.op = STORE_OP_CREATE, .parent = STORE_ROOT_INO,
                          .name = "cfg", .name_len = 3, .flags = STORE_TRUNC,
                          .data = "old contents\n", .data_len = 13};
    uint64_t ino = apply(f, &c).ino;
    struct store_cmd d = {.op = STORE_OP_CREATE, .parent = STORE_ROOT_INO,
                          .name = "cfg", .name_len = 3, .flags = STORE_TRUNC,
                          .data = "v\n", .data_len = 2};
    struct store_result r = apply(f, &d);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.ino, ino);
    char buf[32];
    assert_int_equal(readf(f, ino, 0, buf, sizeof(buf)), 2);
    assert_memory_equal(buf, "v\n", 2);
}

/* The filesystem names a staged file before its entry commits: the id it
 * proposes is used as is, on every node; a collision or an id outside the
 * proposer's range is refused deterministically. */
static void test_proposer_chosen_ino(void **state)
{
    struct fixture *f = *state;
    uint64_t id = STORE_INO_CHOSEN | 0x1234;
    struct store_cmd c = {.op = STORE_OP_CREATE, .parent = STORE_ROOT_INO,
                          .name = "x", .name_len = 1, .ino = id,
                          .data = "v\n", .data_len = 2};
    struct store_result r = apply(f, &c);
    assert_int_equal(r.err, 0);
    assert_true(r.ino == id);
    assert_true(lookup(f, STORE_ROOT_INO, "x") == id);
    struct store_cmd d = {.op = STORE_OP_MKDIR, .parent = STORE_ROOT_INO,
                          .name = "d", .name_len = 1, .ino = id};
    assert_int_equal(apply(f, &d).err, EAGAIN);
    assert_true(lookup(f, STORE_ROOT_INO, "d") == 0);
    d.seq = 0; /* A new request, not a retry of the last. */
    d.ino = 77; /* Not in the chosen range: could meet an index-derived id. */
    assert_int_equal(apply(f, &d).err, EINVAL);
    d.seq = 0;
    d.ino = id | (UINT64_C(1) << 63);
    assert_int_equal(apply(f, &d).err, EINVAL);
    d.seq = 0;
    d.ino = id + 1;
    r = apply(f, &d);
    assert_int_equal(r.err, 0);
    assert_true(r.ino == id + 1);
}

/* Writes cost O(bytes written): a write inside a large file touches one
 * chunk, sparse regions read as zeros, and truncation trims. */
static void test_write_chunks_holes_truncate(void **state)
{
    struct fixture *f = *state;
    uint64_t ino;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "big", &ino), 0);
    uint64_t far = 3 * STORE_CHUNK_SIZE + 10;
    assert_int_equal(wr(f, ino, far, "xyz", 3, 0), 0);
    char buf[8];
    assert_int_equal(readf(f, ino, far - 2, buf, 5), 5);
    assert_memory_equal(buf, "\0\0xyz", 5);
    assert_int_equal(readf(f, ino, 100, buf, 4), 4);
    assert_memory_equal(buf, "\0\0\0\0", 4);
    /* A write across a chunk boundary. */
    assert_int_equal(wr(f, ino, STORE_CHUNK_SIZE - 2, "ABCD", 4, 0), 0);
    assert_int_equal(readf(f, ino, STORE_CHUNK_SIZE - 2, buf, 4), 4);
    assert_memory_equal(buf, "ABCD", 4);
    /* Shrink into the middle of "ABCD", grow again: no stale bytes. */
    struct store_cmd t = {.op = STORE_OP_SETATTR, .ino = ino,
                          .valid = STORE_SET_SIZE,
                          .size = STORE_CHUNK_SIZE - 1};
    assert_int_equal(apply(f, &t).err, 0);
    t.size = STORE_CHUNK_SIZE + 2;
    t.seq = 0; /* A new request, not a retry of the last one. */
    assert_int_equal(apply(f, &t).err, 0);
    assert_int_equal(readf(f, ino, STORE_CHUNK_SIZE - 2, buf, 4), 4);
    assert_memory_equal(buf, "A\0\0\0", 4);
    /* Grown by truncate past what the last chunk holds: a read there,
     * inside that one chunk, finds zeros. (The shrink above dropped the
     * chunk of "xyz".) */
    assert_int_equal(wr(f, ino, far, "xyz", 3, 0), 0);
    t.size = far + 100;
    t.seq = 0;
    assert_int_equal(apply(f, &t).err, 0);
    memset(buf, 'q', sizeof(buf));
    assert_int_equal(readf(f, ino, far + 1, buf, 5), 5);
    assert_memory_equal(buf, "yz\0\0\0", 5);
    assert_int_equal(readf(f, ino, far + 20, buf, 5), 5);
    assert_memory_equal(buf, "\0\0\0\0\0", 5);
}

/* Chunks stored for ino, counted behind the store's back. */
static unsigned count_chunks(struct fixture *f, uint64_t ino)
{
    uint8_t k[8];
    rfs_put_be64(k, ino);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(
        f->s->db, f->s->ro, f->s->cf[CF_CHUNKS]);
    unsigned n = 0;
    for (rocksdb_iter_seek(it, (char *)k, 8); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen < 8 || memcmp(key, k, 8) != 0) {
            break;
        }
        n++;
    }
    rocksdb_iter_destroy(it);
    return n;
}

static int set_size(struct fixture *f, uint64_t ino, uint64_t size)
{
    struct store_cmd t = {.op = STORE_OP_SETATTR, .ino = ino,
                          .valid = STORE_SET_SIZE, .size = size};
    return apply(f, &t).err;
}

static struct store_attr attr_of(struct fixture *f, uint64_t ino)
{
    struct store_attr a;
    assert_int_equal(store_getattr(f->s, NULL, ino, &a), 0);
    return a;
}

/* Sparse files: the offset is bounded by the kernel's limit, not by the
 * bytes-stored cap; holes store nothing and read as zeros; `stored` counts
 * what the chunks hold through writes, overwrites and truncates; unlinking
 * a huge sparse file costs its chunks, not its size. */
static void test_sparse_file(void **state)
{
    struct fixture *f = *state;
    uint64_t ino;
    const uint64_t g4 = 4ull << 30;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "f", &ino), 0);
    assert_int_equal(wr(f, ino, g4, "x", 1, 0), 0);
    struct store_attr a = attr_of(f, ino);
    assert_int_equal(a.size, g4 + 1);
    assert_int_equal(a.stored, 1);
    assert_int_equal(count_chunks(f, ino), 1);
    char buf[8];
    memset(buf, 'q', sizeof(buf));
    assert_int_equal(readf(f, ino, 2ull << 30, buf, 8), 8);
    assert_memory_equal(buf, "\0\0\0\0\0\0\0\0", 8);
    assert_int_equal(readf(f, ino, g4 - 1, buf, 8), 2);
    assert_memory_equal(buf, "\0x", 2);
    /* Overwriting stored bytes does not count them twice. */
    assert_int_equal(wr(f, ino, 0, "hello", 5, 0), 0);
    assert_int_equal(wr(f, ino, 0, "HELLO", 5, 0), 0);
    assert_int_equal(attr_of(f, ino).stored, 6);
    /* Truncate up: a hole. */
    assert_int_equal(set_size(f, ino, 1ull << 50), 0);
    a = attr_of(f, ino);
    assert_int_equal(a.size, 1ull << 50);
    assert_int_equal(a.stored, 6);
    assert_int_equal(count_chunks(f, ino), 2);
    /* Truncate down: the far chunk goes, the first is cut to the end. */
    assert_int_equal(set_size(f, ino, 3), 0);
    a = attr_of(f, ino);
    assert_int_equal(a.size, 3);
    assert_int_equal(a.stored, 3);
    assert_int_equal(count_chunks(f, ino), 1);
    assert_int_equal(set_size(f, ino, 10), 0);
    memset(buf, 'q', sizeof(buf));
    assert_int_equal(readf(f, ino, 0, buf, 8), 8);
    assert_memory_equal(buf, "HEL\0\0\0\0\0", 8);
    /* The largest size the kernel allows, and not a byte more. */
    assert_int_equal(set_size(f, ino, STORE_MAX_FILE_SIZE), 0);
    assert_int_equal(wr(f, ino, STORE_MAX_FILE_SIZE - 1, "z", 1, 0), 0);
    assert_int_equal(wr(f, ino, STORE_MAX_FILE_SIZE, "z", 1, 0), EFBIG);
    assert_int_equal(set_size(f, ino, STORE_MAX_FILE_SIZE + 1), EFBIG);
    /* A chunk is stored from its start: the zeros before "z" count. */
    assert_int_equal(attr_of(f, ino).stored,
                     3 + (STORE_MAX_FILE_SIZE - 1) % STORE_CHUNK_SIZE + 1);
    assert_int_equal(op(f, STORE_OP_UNLINK, STORE_ROOT_INO, "f", NULL), 0);
    assert_int_equal(count_chunks(f, ino), 0);
}

/* Past the cap on bytes stored per file, writes answer EFBIG and change
 * nothing; overwrites and writes into space a truncate freed still work. */
static void test_efbig(void **state)
{
    struct fixture *f = *state;
    f->s->o.max_file_bytes = 2 * STORE_CHUNK_SIZE;
    uint64_t ino;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "f", &ino), 0);
    static char chunk[STORE_CHUNK_SIZE];
    memset(chunk, 'a', sizeof(chunk));
    assert_int_equal(wr(f, ino, 0, chunk, sizeof(chunk), 0), 0);
    assert_int_equal(wr(f, ino, 1ull << 40, chunk, sizeof(chunk), 0), 0);
    assert_int_equal(wr(f, ino, 1ull << 30, "x", 1, 0), EFBIG);
    struct store_attr a = attr_of(f, ino);
    assert_int_equal(a.size, (1ull << 40) + STORE_CHUNK_SIZE);
    assert_int_equal(a.stored, 2 * STORE_CHUNK_SIZE);
    assert_int_equal(count_chunks(f, ino), 2);
    assert_int_equal(wr(f, ino, 5, "bb", 2, 0), 0);
    assert_int_equal(set_size(f, ino, 100), 0);
    assert_int_equal(wr(f, ino, 1ull << 30, "x", 1, 0), 0);
    assert_int_equal(attr_of(f, ino).stored, 101);
}

/* The keep hook for the orphan test: keeps the one inode it names. */
static uint64_t keep_ino;
static bool keep_this(void *arg, uint64_t ino)
{
    (void)arg;
    return ino == keep_ino;
}

/* A file whose last name goes while the host holds it open (the hook says
 * so) lives on as this node's orphan: the replicated state drops it as
 * usual, the orphan keeps its attributes and data, takes local writes and
 * truncates, goes when dropped, and is gone after a reopen. Files the hook
 * does not name leave nothing behind. */
static void test_orphans(void **state)
{
    struct fixture *f = *state;
    uint64_t ino, other, repl;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "f", &ino), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "g", &other), 0);
    assert_int_equal(wr(f, ino, 0, "hello", 5, 0), 0);
    assert_int_equal(wr(f, ino, 1ull << 32, "far", 3, 0), 0);
    assert_int_equal(wr(f, other, 0, "other", 5, 0), 0);
    keep_ino = ino;
    store_set_keep(f->s, keep_this, NULL);
    /* Replaced by a rename, as `mv new f` does. */
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "new", &repl), 0);
    assert_int_equal(mv(f, STORE_ROOT_INO, "new", STORE_ROOT_INO, "f", 0), 0);
    assert_int_equal(op(f, STORE_OP_UNLINK, STORE_ROOT_INO, "g", NULL), 0);
    struct store_attr a;
    assert_int_equal(store_getattr(f->s, NULL, ino, &a), -ENOENT);
    assert_int_equal(count_chunks(f, ino), 0);
    assert_int_equal(count_chunks(f, other), 0);
    uint64_t n;
    assert_int_equal(store_orphan_count(f->s, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_orphan_getattr(f->s, other, &a), -ENOENT);
    assert_int_equal(store_orphan_getattr(f->s, ino, &a), 0);
    assert_int_equal(a.nlink, 0);
    assert_int_equal(a.size, (1ull << 32) + 3);
    assert_int_equal(a.stored, 8);
    char buf[16];
    size_t got;
    assert_int_equal(store_orphan_read(f->s, ino, 0, 16, buf, &got), 0);
    assert_int_equal(got, 16);
    assert_memory_equal(buf, "hello\0\0\0\0\0\0\0\0\0\0\0", 16);
    assert_int_equal(store_orphan_read(f->s, ino, 1ull << 32, 16, buf, &got),
                     0);
    assert_int_equal(got, 3);
    assert_memory_equal(buf, "far", 3);
    /* Written and truncated here only. */
    struct store_cmd c = {.op = STORE_OP_WRITE, .ino = ino, .offset = 5,
                          .data = " world", .data_len = 6};
    assert_int_equal(store_orphan_change(f->s, &c, 42, &a), 0);
    assert_int_equal(a.mtime_ns, 42);
    struct store_cmd t = {.op = STORE_OP_SETATTR, .ino = ino,
                          .valid = STORE_SET_SIZE, .size = 11};
    assert_int_equal(store_orphan_change(f->s, &t, 43, &a), 0);
    assert_int_equal(a.size, 11);
    assert_int_equal(a.stored, 11);
    assert_int_equal(store_orphan_read(f->s, ino, 0, 16, buf, &got), 0);
    assert_int_equal(got, 11);
    assert_memory_equal(buf, "hello world", 11);
    assert_int_equal(store_getattr(f->s, NULL, ino, &a), -ENOENT);
    /* The name now holds the new file, untouched. */
    assert_int_equal(lookup(f, STORE_ROOT_INO, "f"), repl);
    assert_int_equal(store_orphan_change(f->s, &(struct store_cmd){
                         .op = STORE_OP_WRITE, .ino = other, .data = "x",
                         .data_len = 1}, 44, NULL),
                     -ENOENT);
    /* No snapshot carries it: the image is the same once it is gone. */
    char img[700], img2[700], cmd[1500];
    snprintf(img, sizeof(img), "%s/../with.img", f->dir);
    snprintf(img2, sizeof(img2), "%s/../without.img", f->dir);
    rfs_index_t idx;
    uint64_t size;
    assert_int_equal(store_snapshot_write(f->s, img, &idx, &size), 0);
    /* Dropped at the last close. */
    assert_int_equal(store_orphan_drop(f->s, ino), 0);
    assert_int_equal(store_snapshot_write(f->s, img2, &idx, &size), 0);
    snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", img, img2);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(store_orphan_count(f->s, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_orphan_getattr(f->s, ino, &a), -ENOENT);
    /* Gone after a restart. */
    uint64_t again;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "h", &again), 0);
    assert_int_equal(wr(f, again, 0, "h", 1, 0), 0);
    keep_ino = again;
    assert_int_equal(op(f, STORE_OP_UNLINK, STORE_ROOT_INO, "h", NULL), 0);
    assert_int_equal(store_orphan_count(f->s, &n), 0);
    assert_int_equal(n, 1);
    store_close(f->s);
    char msg[RFS_ERRMSG_SZ];
    assert_int_equal(store_open(f->dir, NULL, &f->s, msg), 0);
    assert_int_equal(store_orphan_count(f->s, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_orphan_getattr(f->s, again, &a), -ENOENT);
}

/* Appends land at the end as of apply time, so two appenders never
 * overwrite each other even with stale offsets. */
static void test_append_at_apply_time(void **state)
{
    struct fixture *f = *state;
    uint64_t ino;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "log", &ino), 0);
    assert_int_equal(wr(f, ino, 0, "one\n", 4, STORE_APPEND), 0);
    assert_int_equal(wr(f, ino, 0, "two\n", 4, STORE_APPEND), 0);
    char buf[16];
    assert_int_equal(readf(f, ino, 0, buf, sizeof(buf)), 8);
    assert_memory_equal(buf, "one\ntwo\n", 8);
}

/* mkdir/rmdir/unlink and their errnos, as a local filesystem answers. */
static void test_dirs_and_errnos(void **state)
{
    struct fixture *f = *state;
    uint64_t d, x;
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0);
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", NULL), EEXIST);
    assert_int_equal(op(f, STORE_OP_CREATE, d, "x", &x), 0);
    assert_int_equal(op(f, STORE_OP_RMDIR, STORE_ROOT_INO, "d", NULL),
                     ENOTEMPTY);
    assert_int_equal(op(f, STORE_OP_UNLINK, STORE_ROOT_INO, "d", NULL),
                     EISDIR);
    assert_int_equal(op(f, STORE_OP_RMDIR, d, "x", NULL), ENOTDIR);
    assert_int_equal(op(f, STORE_OP_CREATE, x, "y", NULL), ENOTDIR);
    assert_int_equal(op(f, STORE_OP_UNLINK, d, "nope", NULL), ENOENT);
    assert_int_equal(op(f, STORE_OP_CREATE, 999, "y", NULL), ENOENT);
    char longname[300];
    memset(longname, 'n', 256);
    longname[256] = '\0';
    assert_int_equal(op(f, STORE_OP_CREATE, d, longname, NULL), ENAMETOOLONG);
    assert_int_equal(op(f, STORE_OP_CREATE, d, "a/b", NULL), EINVAL);
    assert_int_equal(op(f, STORE_OP_CREATE, d, "..", NULL), EINVAL);
    struct store_attr root;
    assert_int_equal(store_getattr(f->s, NULL, STORE_ROOT_INO, &root), 0);
    assert_int_equal(root.nlink, 3);
    assert_int_equal(op(f, STORE_OP_UNLINK, d, "x", NULL), 0);
    assert_int_equal(op(f, STORE_OP_RMDIR, STORE_ROOT_INO, "d", NULL), 0);
    assert_int_equal(store_getattr(f->s, NULL, STORE_ROOT_INO, &root), 0);
    assert_int_equal(root.nlink, 2);
    assert_int_equal(lookup(f, STORE_ROOT_INO, "d"), 0);
    /* A write to a file unlinked meanwhile answers ESTALE. */
    assert_int_equal(wr(f, x, 0, "late", 4, 0), ESTALE);
}

/* Symlinks keep their target; names in a directory list in order. */
static void test_symlink_and_readdir(void **state)
{
    struct fixture *f = *state;
    uint64_t l;
    assert_int_equal(op(f, STORE_OP_SYMLINK, STORE_ROOT_INO, "ln", &l), 0);
    char buf[16];
    size_t len;
    assert_int_equal(store_readlink(f->s, NULL, l, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(buf, "target", 6);
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "b", NULL), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "a", NULL), 0);
    /* chmod on a symlink keeps the target. */
    struct store_cmd c = {.op = STORE_OP_SETATTR, .ino = l,
                          .valid = STORE_SET_UID, .uid = 5};
    assert_int_equal(apply(f, &c).err, 0);
    assert_int_equal(store_readlink(f->s, NULL, l, buf, sizeof(buf), &len), 0);
    assert_memory_equal(buf, "target", 6);
}

struct names {
    char s[8][16];
    int n;
};

static int collect(void *arg, const char *name, size_t len, uint64_t ino,
                   uint8_t type)
{
    (void)ino;
    (void)type;
    struct names *n = arg;
    snprintf(n->s[n->n++], 16, "%.*s", (int)len, name);
    return n->n == 8;
}

static void test_readdir_order_and_resume(void **state)
{
    struct fixture *f = *state;
    const char *names[] = {"c", "a", "b", "ab"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, names[i], NULL),
                         0);
    }
    struct names n = {0};
    assert_int_equal(store_readdir(f->s, NULL, STORE_ROOT_INO, NULL, 0,
                                   collect, &n),
                     0);
    assert_int_equal(n.n, 4);
    assert_string_equal(n.s[0], "a");
    assert_string_equal(n.s[1], "ab");
    assert_string_equal(n.s[3], "c");
    struct names m = {0};
    assert_int_equal(store_readdir(f->s, NULL, STORE_ROOT_INO, "ab", 2,
                                   collect, &m),
                     0);
    assert_int_equal(m.n, 2);
    assert_string_equal(m.s[0], "b");
}

/* A damaged directory entry is refused by a listing as by a lookup
 * (RFS_ECORRUPT, naming the directory), never silently left out: ls
 * would otherwise show a directory without a name that lookup refuses. */
static void test_readdir_damaged_entry(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "a", NULL), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "b", NULL), 0);
    uint8_t k[9];
    rfs_put_be64(k, STORE_ROOT_INO);
    k[8] = 'a';
    char *err = NULL;
    rocksdb_put_cf(f->s->db, f->s->wo_sync, f->s->cf[CF_DENTRIES], (char *)k,
                   sizeof(k), "xyz", 3, &err);
    assert_null(err);
    struct store_attr a;
    assert_int_equal(store_lookup(f->s, NULL, STORE_ROOT_INO, "a", 1, &a),
                     RFS_ECORRUPT);
    struct names n = {0};
    assert_int_equal(store_readdir(f->s, NULL, STORE_ROOT_INO, NULL, 0,
                                   collect, &n),
                     RFS_ECORRUPT);
    assert_non_null(strstr(store_errmsg(f->s), "directory entry in 1 of"));
}

/* rename: replace, NOREPLACE, EXCHANGE, into own subtree, dir over file,
 * file over dir, onto a non-empty dir, same file. */
static void test_rename_corner_cases(void **state)
{
    struct fixture *f = *state;
    uint64_t a, b, d, e, sub;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "a", &a), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "b", &b), 0);
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0);
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "e", &e), 0);
    assert_int_equal(op(f, STORE_OP_MKDIR, d, "sub", &sub), 0);
    assert_int_equal(mv(f, STORE_ROOT_INO, "a", STORE_ROOT_INO, "b",
                        STORE_NOREPLACE),
                     EEXIST);
    assert_int_equal(mv(f, STORE_ROOT_INO, "a", STORE_ROOT_INO, "b",
                        STORE_EXCHANGE),
                     0);
    assert_int_equal(lookup(f, STORE_ROOT_INO, "a"), b);
    assert_int_equal(lookup(f, STORE_ROOT_INO, "b"), a);
    assert_int_equal(mv(f, STORE_ROOT_INO, "a", STORE_ROOT_INO, "b", 0), 0);
    assert_int_equal(lookup(f, STORE_ROOT_INO, "b"), b);
    assert_int_equal(lookup(f, STORE_ROOT_INO, "a"), 0);
    struct store_attr gone;
    assert_int_equal(store_getattr(f->s, NULL, a, &gone), -ENOENT);
    assert_int_equal(mv(f, STORE_ROOT_INO, "d", sub, "x", 0), EINVAL);
    assert_int_equal(mv(f, STORE_ROOT_INO, "d", d, "x", 0), EINVAL);
    assert_int_equal(mv(f, STORE_ROOT_INO, "d", STORE_ROOT_INO, "b", 0),
                     ENOTDIR);
    assert_int_equal(mv(f, STORE_ROOT_INO, "b", STORE_ROOT_INO, "d", 0),
                     EISDIR);
    assert_int_equal(mv(f, STORE_ROOT_INO, "e", STORE_ROOT_INO, "d", 0),
                     ENOTEMPTY);
    assert_int_equal(mv(f, STORE_ROOT_INO, "zz", STORE_ROOT_INO, "y", 0),
                     ENOENT);
    assert_int_equal(mv(f, STORE_ROOT_INO, "b", STORE_ROOT_INO, "y",
                        STORE_EXCHANGE),
                     ENOENT);
    assert_int_equal(mv(f, STORE_ROOT_INO, "b", STORE_ROOT_INO, "b", 0), 0);
    /* Empty dir e replaced by dir d: link counts follow. */
    assert_int_equal(mv(f, STORE_ROOT_INO, "d", STORE_ROOT_INO, "e", 0), 0);
    struct store_attr root;
    assert_int_equal(store_getattr(f->s, NULL, STORE_ROOT_INO, &root), 0);
    assert_int_equal(root.nlink, 3);
    assert_int_equal(lookup(f, STORE_ROOT_INO, "e"), d);
}

/* Renaming a directory with descendants is one small change: the subtree
 * follows, and inode numbers stay. */
static void test_rename_directory_with_descendants(void **state)
{
    struct fixture *f = *state;
    uint64_t top, mid, leaf, other;
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "top", &top), 0);
    assert_int_equal(op(f, STORE_OP_MKDIR, top, "mid", &mid), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, mid, "leaf", &leaf), 0);
    assert_int_equal(wr(f, leaf, 0, "deep", 4, 0), 0);
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "other", &other),
                     0);
    assert_int_equal(mv(f, STORE_ROOT_INO, "top", other, "moved", 0), 0);
    uint64_t m = lookup(f, other, "moved");
    assert_int_equal(m, top);
    assert_int_equal(lookup(f, lookup(f, m, "mid"), "leaf"), leaf);
    char buf[8];
    assert_int_equal(readf(f, leaf, 0, buf, 8), 4);
    struct store_attr a;
    assert_int_equal(store_getattr(f->s, NULL, top, &a), 0);
    assert_int_equal(a.parent, other);
    assert_int_equal(store_getattr(f->s, NULL, other, &a), 0);
    assert_int_equal(a.nlink, 3);
    /* And now "other" cannot move under "mid". */
    assert_int_equal(mv(f, STORE_ROOT_INO, "other", mid, "loop", 0), EINVAL);
}

/* chmod, chown, utimens. */
static void test_setattr(void **state)
{
    struct fixture *f = *state;
    uint64_t ino;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "f", &ino), 0);
    struct store_cmd c = {.op = STORE_OP_SETATTR, .ino = ino,
                          .valid = STORE_SET_MODE | STORE_SET_UID |
                                   STORE_SET_GID | STORE_SET_MTIME |
                                   STORE_SET_ATIME,
                          .mode = 0600, .uid = 1, .gid = 2,
                          .mtime_ns = 42, .atime_ns = 43};
    assert_int_equal(apply(f, &c).err, 0);
    struct store_attr a;
    assert_int_equal(store_getattr(f->s, NULL, ino, &a), 0);
    assert_int_equal(a.mode, 0600);
    assert_int_equal(a.uid, 1);
    assert_int_equal(a.gid, 2);
    assert_int_equal(a.mtime_ns, 42);
    assert_int_equal(a.atime_ns, 43);
    struct store_cmd g = {.op = STORE_OP_SETATTR, .ino = 9999,
                          .valid = STORE_SET_MODE};
    assert_int_equal(apply(f, &g).err, ESTALE);
}

/* ---- Exactly once, restart, views ------------------------------------- */

/* A retried request (same client, boot, seq) is not applied again; its
 * first result comes back. */
static void test_duplicate_request_applied_once(void **state)
{
    struct fixture *f = *state;
    uint64_t ino;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "f", &ino), 0);
    struct store_cmd c = {.op = STORE_OP_WRITE, .ino = ino, .data = "x",
                          .data_len = 1, .flags = STORE_APPEND,
                          .client = 9, .boot = 5, .seq = 1};
    struct store_result r1 = apply(f, &c);
    struct store_result r2 = apply(f, &c);
    assert_false(r1.duplicate);
    assert_true(r2.duplicate);
    assert_int_equal(r2.err, r1.err);
    struct store_attr a;
    assert_int_equal(store_getattr(f->s, NULL, ino, &a), 0);
    assert_int_equal(a.size, 1);
    /* A failed request is remembered as failed. */
    struct store_cmd e = {.op = STORE_OP_MKDIR, .parent = STORE_ROOT_INO,
                          .name = "f", .name_len = 1, .client = 9, .boot = 5,
                          .seq = 2};
    assert_int_equal(apply(f, &e).err, EEXIST);
    struct store_result r3 = apply(f, &e);
    assert_true(r3.duplicate);
    assert_int_equal(r3.err, EEXIST);
    /* Requests of an older boot of the client are refused. */
    struct store_cmd n = c;
    n.boot = 6;
    n.seq = 1;
    assert_false(apply(f, &n).duplicate);
    struct store_cmd old = c;
    old.seq = 3;
    assert_int_equal(apply(f, &old).err, ESTALE);
    assert_int_equal(store_getattr(f->s, NULL, ino, &a), 0);
    assert_int_equal(a.size, 2);
}

/* A request that says "nothing below me is outstanding" keeps its own
 * record: its retry returns the first result, not ESTALE. (The runtime once
 * sent first_outstanding = seq + 1 and made the state machine forget the
 * request it was applying.) */
static void test_duplicate_of_lowest_outstanding(void **state)
{
    struct fixture *f = *state;
    struct store_cmd c = {.op = STORE_OP_MKDIR, .parent = STORE_ROOT_INO,
                          .name = "d", .name_len = 1, .client = 4, .boot = 1,
                          .seq = 5, .first_outstanding = 5};
    struct store_result r1 = apply(f, &c);
    struct store_result r2 = apply(f, &c);
    assert_int_equal(r1.err, 0);
    assert_true(r2.duplicate);
    assert_int_equal(r2.err, 0);
    assert_int_equal(r2.ino, r1.ino);
    /* Once the client moves past it, a stray copy is refused, not applied. */
    struct store_cmd next = c;
    next.name = "e";
    next.seq = 6;
    next.first_outstanding = 6;
    assert_int_equal(apply(f, &next).err, 0);
    assert_int_equal(apply(f, &c).err, ESTALE);
}

/* Forgetting a client's answered requests does not walk the deleted
 * records of the clients sorted after it. A follower whose id sorts before
 * the leader's did: after 20,000 creates through the leader, each of its
 * own requests stepped over the leader's 20,000 forgotten records (an
 * iterator without an upper bound runs on to the next live key), and an
 * flock pair on it took 5 ms instead of 0.8. RocksDB's perf context counts
 * the deleted keys an iterator skipped, on this thread. */
static void test_forget_skips_no_later_tombstones(void **state)
{
    struct fixture *f = *state;
    char name[16];
    struct store_cmd c = {.op = STORE_OP_MKDIR, .parent = STORE_ROOT_INO,
                          .client = 9, .boot = 1};
    for (uint64_t i = 1; i <= 2000; i++) {
        c.name_len = (uint16_t)snprintf(name, sizeof(name), "l%llu",
                                        (unsigned long long)i);
        c.name = name;
        c.seq = i;
        c.first_outstanding = i;
        assert_int_equal(apply(f, &c).err, 0);
    }
    struct store_cmd d = {.op = STORE_OP_MKDIR, .parent = STORE_ROOT_INO,
                          .name = "a", .name_len = 1, .client = 4,
                          .boot = 1, .seq = 1, .first_outstanding = 1};
    assert_int_equal(apply(f, &d).err, 0);
    d.name = "b";
    d.seq = 2;
    d.first_outstanding = 2; /* Forgets seq 1: the last record of client 4. */
    rocksdb_set_perf_level(rocksdb_enable_count);
    rocksdb_perfcontext_t *pc = rocksdb_perfcontext_create();
    rocksdb_perfcontext_reset(pc);
    assert_int_equal(apply(f, &d).err, 0);
    uint64_t skipped =
        rocksdb_perfcontext_metric(pc, rocksdb_internal_delete_skipped_count);
    rocksdb_perfcontext_destroy(pc);
    rocksdb_set_perf_level(rocksdb_disable);
    assert_true(skipped < 100);
}

/* The applied index survives a restart, and re-applying the log from the
 * start skips what was applied. */
static void test_reapply_after_restart_is_idempotent(void **state)
{
    struct fixture *f = *state;
    uint64_t ino;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "f", &ino), 0);
    struct store_cmd c = {.op = STORE_OP_WRITE, .ino = ino, .data = "ab",
                          .data_len = 2, .flags = STORE_APPEND};
    struct rfs_buf b;
    c.client = 3;
    c.boot = 1;
    c.seq = 1;
    assert_int_equal(store_cmd_encode(&c, &b), 0);
    struct cons_entry e = {.term = 1, .index = f->next++,
                           .type = CONS_ENTRY_NORMAL, .data = b};
    assert_int_equal(store_apply(f->s, &e, 1, NULL), 0);
    store_close(f->s);
    char msg[RFS_ERRMSG_SZ];
    assert_int_equal(store_open(f->dir, NULL, &f->s, msg), 0);
    assert_int_equal(store_applied(f->s), 2);
    struct store_result r;
    assert_int_equal(store_apply(f->s, &e, 1, &r), 0);
    assert_true(r.duplicate);
    struct store_attr a;
    assert_int_equal(store_getattr(f->s, NULL, ino, &a), 0);
    assert_int_equal(a.size, 2);
    rfs_free(b.base);
}

/* Boot ids come from a synced counter: each call returns one more, across
 * reopening, whatever the clock says. */
static void test_boot_counter_grows_across_reopen(void **state)
{
    struct fixture *f = *state;
    uint64_t a, b, c;
    assert_int_equal(store_boot_next(f->s, 1000, &a), 0);
    assert_int_equal(a, 1001);
    assert_int_equal(store_boot_next(f->s, 5000, &b), 0);
    assert_int_equal(b, a + 1); /* The clock seeds the counter only once. */
    store_close(f->s);
    char msg[RFS_ERRMSG_SZ];
    assert_int_equal(store_open(f->dir, NULL, &f->s, msg), 0);
    assert_int_equal(store_boot_next(f->s, 10, &c), 0); /* Clock set back. */
    assert_int_equal(c, b + 1);
}

/* A folder of the old scheme, where boot ids were start times in
 * nanoseconds: this node's last run recorded boot T in the sessions; the
 * clock was then set back an hour. The old scheme's next boot id (the
 * clock) is refused with ESTALE; the counter starts above T and works. */
static void test_boot_counter_migrates_above_old_ids(void **state)
{
    struct fixture *f = *state;
    const uint64_t t = 1764300000ull * 1000000000ull;
    uint64_t ino;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "f", &ino), 0);
    struct store_cmd c = {.op = STORE_OP_WRITE, .ino = ino, .data = "x",
                          .data_len = 1, .flags = STORE_APPEND,
                          .client = 2, .boot = t, .seq = 1};
    assert_int_equal(apply(f, &c).err, 0);
    const uint64_t set_back = t - 3600ull * 1000000000ull;
    struct store_cmd old = c;
    old.boot = set_back; /* What the old scheme would use now. */
    assert_int_equal(apply(f, &old).err, ESTALE);
    uint64_t boot;
    assert_int_equal(store_boot_next(f->s, set_back, &boot), 0);
    assert_true(boot > t);
    struct store_cmd now = c;
    now.boot = boot;
    struct store_result r = apply(f, &now);
    assert_int_equal(r.err, 0);
    assert_false(r.duplicate);
    struct store_attr a;
    assert_int_equal(store_getattr(f->s, NULL, ino, &a), 0);
    assert_int_equal(a.size, 2);
}

/* A view keeps reading the state as of its creation. */
static void test_view_is_point_in_time(void **state)
{
    struct fixture *f = *state;
    uint64_t ino;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "f", &ino), 0);
    assert_int_equal(wr(f, ino, 0, "before", 6, 0), 0);
    struct store_view *v = store_view_new(f->s);
    assert_int_equal(wr(f, ino, 0, "AFTER!", 6, 0), 0);
    assert_int_equal(op(f, STORE_OP_UNLINK, STORE_ROOT_INO, "f", NULL), 0);
    char buf[8];
    size_t got;
    assert_int_equal(store_read(f->s, v, ino, 0, 6, buf, &got), 0);
    assert_memory_equal(buf, "before", 6);
    assert_int_equal(store_read(f->s, NULL, ino, 0, 6, buf, &got), -ENOENT);
    store_view_free(f->s, v);
}

/* A malformed command applies as EINVAL, identically everywhere, and the
 * applied index still moves. */
static void test_malformed_command(void **state)
{
    struct fixture *f = *state;
    struct cons_entry e = {.term = 1, .index = 1, .type = CONS_ENTRY_NORMAL,
                           .data = {(void *)"garbage", 7}};
    struct store_result r;
    assert_int_equal(store_apply(f->s, &e, 1, &r), 0);
    assert_int_equal(r.err, EINVAL);
    assert_int_equal(store_applied(f->s), 1);
}

/* ---- Special files and hard links ------------------------------------- */

static int mknod_at(struct fixture *f, uint64_t parent, const char *name,
                    uint32_t mode, uint64_t rdev, uint64_t *ino)
{
    struct store_cmd c = {.op = STORE_OP_MKNOD, .parent = parent,
                          .name = name, .name_len = (uint16_t)strlen(name),
                          .mode = mode, .offset = rdev, .uid = 1000,
                          .gid = 1000};
    struct store_result r = apply(f, &c);
    if (ino != NULL) {
        *ino = r.ino;
    }
    return r.err;
}

static int link_at(struct fixture *f, uint64_t ino, uint64_t parent,
                   const char *name)
{
    struct store_cmd c = {.op = STORE_OP_LINK, .ino = ino, .parent = parent,
                          .name = name, .name_len = (uint16_t)strlen(name)};
    return apply(f, &c).err;
}

static uint32_t nlink_of(struct fixture *f, uint64_t ino)
{
    struct store_attr a;
    assert_int_equal(store_getattr(f->s, NULL, ino, &a), 0);
    return a.nlink;
}

/* How many chunk keys the store holds for ino (a file's data). */
static unsigned chunk_keys(struct fixture *f, uint64_t ino)
{
    uint8_t k[8];
    rfs_put_be64(k, ino);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(f->s->db, f->s->ro, f->s->cf[CF_CHUNKS]);
    unsigned n = 0;
    for (rocksdb_iter_seek(it, (char *)k, 8); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen < 8 || memcmp(key, k, 8) != 0) {
            break;
        }
        n++;
    }
    rocksdb_iter_destroy(it);
    return n;
}

static int collect_type(void *arg, const char *name, size_t len,
                        uint64_t ino, uint8_t type)
{
    (void)name, (void)len, (void)ino;
    uint8_t *types = arg;
    size_t i = 0;
    while (types[i] != 0) {
        i++;
    }
    types[i] = type;
    return i == 6;
}

/* Fifos, sockets and devices keep their type, permissions and device
 * number (through a reopen: the record is on disk); a taken name is
 * EEXIST, and MKNOD of a regular file or directory is EINVAL. */
static void test_mknod_types_and_rdev(void **state)
{
    struct fixture *f = *state;
    uint64_t fifo, sock, chr, blk;
    assert_int_equal(mknod_at(f, STORE_ROOT_INO, "p", S_IFIFO | 0640, 0,
                              &fifo), 0);
    assert_int_equal(mknod_at(f, STORE_ROOT_INO, "s", S_IFSOCK | 0755, 0,
                              &sock), 0);
    assert_int_equal(mknod_at(f, STORE_ROOT_INO, "c", S_IFCHR | 0600,
                              makedev(1, 3), &chr), 0);
    assert_int_equal(mknod_at(f, STORE_ROOT_INO, "b", S_IFBLK | 0660,
                              makedev(259, 70000), &blk), 0);
    assert_int_equal(mknod_at(f, STORE_ROOT_INO, "p", S_IFIFO | 0640, 0,
                              NULL), EEXIST);
    assert_int_equal(mknod_at(f, STORE_ROOT_INO, "r", S_IFREG | 0640, 0,
                              NULL), EINVAL);
    assert_int_equal(mknod_at(f, STORE_ROOT_INO, "r", S_IFDIR | 0640, 0,
                              NULL), EINVAL);
    assert_int_equal(mknod_at(f, 999, "r", S_IFIFO | 0640, 0, NULL), ENOENT);
    /* chmod keeps a device's number. */
    struct store_cmd m = {.op = STORE_OP_SETATTR, .ino = chr,
                          .valid = STORE_SET_MODE, .mode = 0620};
    assert_int_equal(apply(f, &m).err, 0);

    store_close(f->s);
    char err[RFS_ERRMSG_SZ];
    assert_int_equal(store_open(f->dir, NULL, &f->s, err), 0);
    struct store_attr a;
    assert_int_equal(store_lookup(f->s, NULL, STORE_ROOT_INO, "p", 1, &a), 0);
    assert_int_equal(a.ino, fifo);
    assert_int_equal(a.type, STORE_FIFO);
    assert_int_equal(a.mode, 0640);
    assert_int_equal(a.nlink, 1);
    assert_int_equal(a.rdev, 0);
    assert_int_equal(a.uid, 1000);
    assert_int_equal(store_getattr(f->s, NULL, sock, &a), 0);
    assert_int_equal(a.type, STORE_SOCK);
    assert_int_equal(store_getattr(f->s, NULL, chr, &a), 0);
    assert_int_equal(a.type, STORE_CHR);
    assert_int_equal(a.mode, 0620);
    assert_int_equal(a.rdev, makedev(1, 3));
    assert_int_equal(store_getattr(f->s, NULL, blk, &a), 0);
    assert_int_equal(a.type, STORE_BLK);
    assert_int_equal(a.rdev, makedev(259, 70000));
    /* Listing order b, c, p, s; each entry carries its type. */
    uint8_t types[8] = {0};
    assert_int_equal(store_readdir(f->s, NULL, STORE_ROOT_INO, NULL, 0,
                                   collect_type, types), 0);
    assert_int_equal(types[0], STORE_BLK);
    assert_int_equal(types[1], STORE_CHR);
    assert_int_equal(types[2], STORE_FIFO);
    assert_int_equal(types[3], STORE_SOCK);
    assert_int_equal(op(f, STORE_OP_UNLINK, STORE_ROOT_INO, "c", NULL), 0);
    assert_int_equal(store_getattr(f->s, NULL, chr, &a), -ENOENT);
}

/* nlink counts names: every name reads the same file; removing one name
 * keeps the inode and its data, the last name takes both. The inode's
 * ctime and revision move with each link and unlink, and so do the
 * directory's mtime and ctime. */
static void test_link_counts_names(void **state)
{
    struct fixture *f = *state;
    uint64_t d, x;
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "x", &x), 0);
    static char big[3 * STORE_CHUNK_SIZE];
    memset(big, 'z', sizeof(big));
    assert_int_equal(wr(f, x, 0, big, sizeof(big), 0), 0);
    assert_int_equal(chunk_keys(f, x), 3);
    struct store_attr before, dir_before;
    assert_int_equal(store_getattr(f->s, NULL, x, &before), 0);
    assert_int_equal(store_getattr(f->s, NULL, d, &dir_before), 0);

    assert_int_equal(link_at(f, x, d, "y"), 0);
    rfs_index_t linked = f->next - 1;
    assert_int_equal(lookup(f, d, "y"), x);
    assert_int_equal(nlink_of(f, x), 2);
    struct store_attr a, dir;
    assert_int_equal(store_lookup(f->s, NULL, d, "y", 1, &a), 0);
    assert_int_equal(a.nlink, 2);
    assert_true(a.ctime_ns > before.ctime_ns);
    assert_int_equal(a.mtime_ns, before.mtime_ns);
    assert_int_equal(a.revision, linked);
    assert_int_equal(a.size, sizeof(big));
    assert_int_equal(store_getattr(f->s, NULL, d, &dir), 0);
    assert_true(dir.mtime_ns > dir_before.mtime_ns);
    assert_true(dir.ctime_ns > dir_before.ctime_ns);
    assert_int_equal(dir.nlink, 2); /* Files do not count in a dir's nlink. */
    struct names n = {0};
    assert_int_equal(store_readdir(f->s, NULL, d, NULL, 0, collect, &n), 0);
    assert_int_equal(n.n, 1);
    assert_string_equal(n.s[0], "y");

    assert_int_equal(link_at(f, x, STORE_ROOT_INO, "z"), 0);
    assert_int_equal(nlink_of(f, x), 3);

    /* Unlink one name: the others still read the content. */
    assert_int_equal(op(f, STORE_OP_UNLINK, STORE_ROOT_INO, "x", NULL), 0);
    assert_int_equal(lookup(f, STORE_ROOT_INO, "x"), 0);
    assert_int_equal(store_getattr(f->s, NULL, x, &a), 0);
    assert_int_equal(a.nlink, 2);
    assert_int_equal(a.ctime_ns, 1000 * (int64_t)(f->next - 1));
    char buf[16];
    assert_int_equal(readf(f, lookup(f, d, "y"), 0, buf, 4), 4);
    assert_memory_equal(buf, "zzzz", 4);
    assert_int_equal(chunk_keys(f, x), 3);
    /* A write through a handle still reaches it: it was not unlinked. */
    assert_int_equal(wr(f, x, 0, "abcd", 4, 0), 0);
    assert_int_equal(readf(f, lookup(f, STORE_ROOT_INO, "z"), 0, buf, 4), 4);
    assert_memory_equal(buf, "abcd", 4);

    assert_int_equal(op(f, STORE_OP_UNLINK, d, "y", NULL), 0);
    assert_int_equal(nlink_of(f, x), 1);
    assert_int_equal(chunk_keys(f, x), 3);
    /* The last name takes the inode and every chunk. */
    assert_int_equal(op(f, STORE_OP_UNLINK, STORE_ROOT_INO, "z", NULL), 0);
    assert_int_equal(store_getattr(f->s, NULL, x, &a), -ENOENT);
    assert_int_equal(chunk_keys(f, x), 0);
    assert_int_equal(wr(f, x, 0, "late", 4, 0), ESTALE);
}

/* The errors link(2) gives: a directory EPERM, a taken name EEXIST (even
 * for a directory), a missing or non-directory parent ENOENT/ENOTDIR, a
 * vanished inode ENOENT, too many names EMLINK. Special files and
 * symlinks link like files, keeping their target or device number. */
static void test_link_errors(void **state)
{
    struct fixture *f = *state;
    uint64_t d, x, l, c;
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "x", &x), 0);
    assert_int_equal(link_at(f, d, STORE_ROOT_INO, "d2"), EPERM);
    assert_int_equal(link_at(f, d, STORE_ROOT_INO, "x"), EEXIST);
    assert_int_equal(link_at(f, x, STORE_ROOT_INO, "d"), EEXIST);
    assert_int_equal(link_at(f, x, STORE_ROOT_INO, "x"), EEXIST);
    assert_int_equal(link_at(f, x, 999, "y"), ENOENT);
    assert_int_equal(link_at(f, x, x, "y"), ENOTDIR);
    assert_int_equal(link_at(f, 999, STORE_ROOT_INO, "y"), ENOENT);
    assert_int_equal(link_at(f, x, STORE_ROOT_INO, ".."), EINVAL);
    assert_int_equal(nlink_of(f, x), 1);
    assert_int_equal(nlink_of(f, d), 2);

    assert_int_equal(op(f, STORE_OP_SYMLINK, STORE_ROOT_INO, "l", &l), 0);
    assert_int_equal(link_at(f, l, d, "l2"), 0);
    char buf[16];
    size_t len;
    assert_int_equal(store_readlink(f->s, NULL, l, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(buf, "target", 6);
    assert_int_equal(mknod_at(f, STORE_ROOT_INO, "c", S_IFCHR | 0600,
                              makedev(4, 5), &c), 0);
    assert_int_equal(link_at(f, c, d, "c2"), 0);
    struct store_attr a;
    assert_int_equal(store_lookup(f->s, NULL, d, "c2", 2, &a), 0);
    assert_int_equal(a.type, STORE_CHR);
    assert_int_equal(a.rdev, makedev(4, 5));
    assert_int_equal(a.nlink, 2);

    /* EMLINK: put the count at the limit directly (65000 applies would
     * only slow the test down). */
    assert_int_equal(store_getattr(f->s, NULL, x, &a), 0);
    a.nlink = STORE_LINK_MAX;
    uint8_t k[8], v[INODE_VALUE_SIZE];
    rfs_put_be64(k, x);
    store__attr_encode(&a, v);
    char *err = NULL;
    rocksdb_put_cf(f->s->db, f->s->wo_sync, f->s->cf[CF_INODES], (char *)k, 8,
                   (char *)v, sizeof(v), &err);
    assert_null(err);
    assert_int_equal(link_at(f, x, d, "many"), EMLINK);
    a.nlink = STORE_LINK_MAX - 1;
    store__attr_encode(&a, v);
    rocksdb_put_cf(f->s->db, f->s->wo_sync, f->s->cf[CF_INODES], (char *)k, 8,
                   (char *)v, sizeof(v), &err);
    assert_null(err);
    assert_int_equal(link_at(f, x, d, "many"), 0);
    assert_int_equal(nlink_of(f, x), STORE_LINK_MAX);
}

/* rename onto another name of the same inode does nothing and succeeds
 * (POSIX); rename over one name of a linked file leaves its other names
 * and data alone. */
static void test_rename_and_links(void **state)
{
    struct fixture *f = *state;
    uint64_t x, y;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "x", &x), 0);
    assert_int_equal(wr(f, x, 0, "keep", 4, 0), 0);
    assert_int_equal(link_at(f, x, STORE_ROOT_INO, "x2"), 0);
    struct store_attr before, after;
    assert_int_equal(store_getattr(f->s, NULL, x, &before), 0);
    assert_int_equal(mv(f, STORE_ROOT_INO, "x", STORE_ROOT_INO, "x2", 0), 0);
    assert_int_equal(lookup(f, STORE_ROOT_INO, "x"), x);
    assert_int_equal(lookup(f, STORE_ROOT_INO, "x2"), x);
    assert_int_equal(store_getattr(f->s, NULL, x, &after), 0);
    assert_int_equal(after.nlink, 2);
    assert_int_equal(after.revision, before.revision);

    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "y", &y), 0);
    assert_int_equal(mv(f, STORE_ROOT_INO, "y", STORE_ROOT_INO, "x2", 0), 0);
    assert_int_equal(lookup(f, STORE_ROOT_INO, "x2"), y);
    assert_int_equal(nlink_of(f, x), 1);
    char buf[8];
    assert_int_equal(readf(f, x, 0, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "keep", 4);
    assert_int_equal(chunk_keys(f, x), 1);
    /* And the last name replaced takes the data. */
    assert_int_equal(mv(f, STORE_ROOT_INO, "x2", STORE_ROOT_INO, "x", 0), 0);
    struct store_attr a;
    assert_int_equal(store_getattr(f->s, NULL, x, &a), -ENOENT);
    assert_int_equal(chunk_keys(f, x), 0);
}

/* Two stores applying the same entries (links, unlinks, special files)
 * reach the same state: their snapshot images are the same bytes, and an
 * image installed elsewhere keeps nlink and device numbers. */
static void test_links_and_nodes_apply_deterministically(void **state)
{
    struct fixture *f = *state;
    struct fixture g = {0};
    snprintf(g.dir, sizeof(g.dir), "%.200s2", f->dir);
    char msg[RFS_ERRMSG_SZ];
    assert_int_equal(store_open(g.dir, NULL, &g.s, msg), 0);
    g.next = 1;
    struct fixture *both[2] = {f, &g};
    uint64_t x = 0, c = 0;
    for (int i = 0; i < 2; i++) {
        struct fixture *h = both[i];
        assert_int_equal(op(h, STORE_OP_CREATE, STORE_ROOT_INO, "x", &x), 0);
        assert_int_equal(wr(h, x, 0, "data", 4, 0), 0);
        assert_int_equal(link_at(h, x, STORE_ROOT_INO, "y"), 0);
        assert_int_equal(link_at(h, x, STORE_ROOT_INO, "z"), 0);
        assert_int_equal(op(h, STORE_OP_UNLINK, STORE_ROOT_INO, "x", NULL), 0);
        assert_int_equal(mknod_at(h, STORE_ROOT_INO, "c", S_IFCHR | 0600,
                                  makedev(1, 5), &c), 0);
        assert_int_equal(mknod_at(h, STORE_ROOT_INO, "p", S_IFIFO | 0600, 0,
                                  NULL), 0);
        assert_int_equal(link_at(h, c, STORE_ROOT_INO, "c2"), 0);
    }
    char img[700], img2[700], cmd[1500];
    snprintf(img, sizeof(img), "%s/../a.img", f->dir);
    snprintf(img2, sizeof(img2), "%s/../b.img", f->dir);
    rfs_index_t idx, idx2;
    uint64_t size, size2;
    assert_int_equal(store_snapshot_write(f->s, img, &idx, &size), 0);
    assert_int_equal(store_snapshot_write(g.s, img2, &idx2, &size2), 0);
    assert_int_equal(idx, idx2);
    snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", img, img2);
    assert_int_equal(system(cmd), 0);

    /* Installed over a store that had something else. */
    assert_int_equal(op(&g, STORE_OP_UNLINK, STORE_ROOT_INO, "y", NULL), 0);
    /* The configuration is opaque to the store: any bytes do. */
    struct store_snap_meta meta = {.index = idx, .term = 2, .size = size,
                                   .conf = {(void *)"conf", 4}};
    assert_int_equal(store_snapshot_install(g.s, img, &meta), 0);
    struct store_attr a;
    assert_int_equal(store_lookup(g.s, NULL, STORE_ROOT_INO, "y", 1, &a), 0);
    assert_int_equal(a.ino, x);
    assert_int_equal(a.nlink, 2);
    assert_int_equal(store_lookup(g.s, NULL, STORE_ROOT_INO, "c2", 2, &a), 0);
    assert_int_equal(a.type, STORE_CHR);
    assert_int_equal(a.rdev, makedev(1, 5));
    assert_int_equal(a.nlink, 2);
    store_close(g.s);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g.dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- The chain ------------------------------------------------------------ */

/* chain(applied) follows every applied entry (NOOP and CONF included), is
 * the same as hashing the entries by hand, survives a reopen, is not
 * moved by a replayed entry, and travels with a snapshot image; a state
 * from before the chain says it does not know it, and keeps saying so. */
static void test_chain_follows_apply(void **state)
{
    struct fixture *f = *state;
    uint8_t want[STORE_CHAIN_BYTES] = {0}, got[STORE_CHAIN_BYTES];
    rfs_index_t at = 99;
    assert_int_equal(store_chain(f->s, &at, got), 0);
    assert_int_equal(at, 0);
    assert_memory_equal(got, want, sizeof(got));
    struct cons_entry es[4];
    struct rfs_buf b;
    struct store_cmd c = {.op = STORE_OP_MKDIR, .parent = STORE_ROOT_INO,
                          .name = "d", .name_len = 1, .mode = 0755,
                          .client = 7, .boot = 1, .seq = 1};
    assert_int_equal(store_cmd_encode(&c, &b), 0);
    es[0] = (struct cons_entry){.term = 1, .index = 1,
                                .type = CONS_ENTRY_NOOP};
    es[1] = (struct cons_entry){.term = 1, .index = 2,
                                .type = CONS_ENTRY_NORMAL, .data = b};
    es[2] = (struct cons_entry){.term = 2, .index = 3, .type = CONS_ENTRY_CONF,
                                .data = {(void *)"conf", 4}};
    es[3] = (struct cons_entry){.term = 2, .index = 4,
                                .type = CONS_ENTRY_NORMAL,
                                .data = {(void *)"junk", 4}};
    for (unsigned i = 0; i < 4; i++) {
        store_chain_next(want, &es[i], want);
    }
    assert_int_equal(store_apply(f->s, es, 4, NULL), 0);
    f->next = 5;
    assert_int_equal(store_chain(f->s, &at, got), 0);
    assert_int_equal(at, 4);
    assert_memory_equal(got, want, sizeof(got));
    /* Replayed after a reopen: skipped, the chain stays. */
    store_close(f->s);
    char msg[RFS_ERRMSG_SZ];
    assert_int_equal(store_open(f->dir, NULL, &f->s, msg), 0);
    assert_int_equal(store_apply(f->s, es, 4, NULL), 0);
    assert_int_equal(store_chain(f->s, &at, got), 0);
    assert_int_equal(at, 4);
    assert_memory_equal(got, want, sizeof(got));
    /* A different history gives a different chain. */
    uint8_t other[STORE_CHAIN_BYTES] = {0};
    es[3].term = 3;
    for (unsigned i = 0; i < 4; i++) {
        store_chain_next(other, &es[i], other);
    }
    assert_memory_not_equal(other, want, sizeof(other));

    /* Into another store by snapshot. */
    struct fixture g = {0};
    snprintf(g.dir, sizeof(g.dir), "%.200s2", f->dir);
    assert_int_equal(store_open(g.dir, NULL, &g.s, msg), 0);
    char img[700], cmd[1500];
    snprintf(img, sizeof(img), "%s/../chain.img", f->dir);
    uint64_t size;
    assert_int_equal(store_snapshot_write(f->s, img, &at, &size), 0);
    struct store_snap_meta meta = {.index = at, .term = 2, .size = size,
                                   .conf = {(void *)"conf", 4}};
    assert_int_equal(store_snapshot_install(g.s, img, &meta), 0);
    assert_int_equal(store_chain(g.s, &at, got), 0);
    assert_int_equal(at, 4);
    assert_memory_equal(got, want, sizeof(got));

    /* A state from before the chain: the key gone, as in an older folder. */
    char *err = NULL;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_delete_cf(g.s->db, wo, g.s->cf[CF_SESSIONS], STORE__CHAIN_KEY,
                      sizeof(STORE__CHAIN_KEY) - 1, &err);
    rocksdb_writeoptions_destroy(wo);
    assert_null(err);
    store_close(g.s);
    assert_int_equal(store_open(g.dir, NULL, &g.s, msg), 0);
    assert_int_equal(store_chain(g.s, &at, got), -ENOENT);
    struct cons_entry e5 = {.term = 2, .index = 5, .type = CONS_ENTRY_NOOP};
    assert_int_equal(store_apply(g.s, &e5, 1, NULL), 0);
    assert_int_equal(store_chain(g.s, &at, got), -ENOENT);
    store_close(g.s);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g.dir);
    assert_int_equal(system(cmd), 0);
    rfs_free(b.base);
}

/* ---- Extended attributes ---------------------------------------------- */

static int xset(struct fixture *f, uint64_t ino, const char *name,
                const void *val, size_t len, uint32_t flags)
{
    struct store_cmd c = {.op = STORE_OP_SETXATTR, .ino = ino, .name = name,
                          .name_len = (uint16_t)strlen(name), .data = val,
                          .data_len = (uint32_t)len, .flags = flags};
    return apply(f, &c).err;
}

static int xrm(struct fixture *f, uint64_t ino, const char *name)
{
    struct store_cmd c = {.op = STORE_OP_REMOVEXATTR, .ino = ino,
                          .name = name, .name_len = (uint16_t)strlen(name)};
    return apply(f, &c).err;
}

/* The value of ino's attribute name as a string ("" if empty), or NULL
 * with *err set. */
static const char *xget(struct fixture *f, uint64_t ino, const char *name,
                        int *err)
{
    static char buf[256];
    size_t len = 0;
    *err = store_getxattr(f->s, NULL, ino, name, strlen(name), buf,
                          sizeof(buf) - 1, &len);
    if (*err != 0) {
        return NULL;
    }
    buf[len < sizeof(buf) - 1 ? len : sizeof(buf) - 1] = '\0';
    return buf;
}

static unsigned count_xattrs(struct fixture *f, uint64_t ino)
{
    uint8_t k[8];
    rfs_put_be64(k, ino);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(
        f->s->db, f->s->ro, f->s->cf[CF_XATTRS]);
    unsigned n = 0;
    for (rocksdb_iter_seek(it, (char *)k, 8); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen < 8 || memcmp(key, k, 8) != 0) {
            break;
        }
        n++;
    }
    rocksdb_iter_destroy(it);
    return n;
}

/* Set, replace, list and remove, with the errnos of man 2 setxattr, all
 * decided at apply; the inode's ctime and revision move, its mtime not. */
static void test_xattrs(void **state)
{
    struct fixture *f = *state;
    uint64_t x, d, l, p;
    int err;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "x", &x), 0);
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0);
    assert_int_equal(op(f, STORE_OP_SYMLINK, STORE_ROOT_INO, "l", &l), 0);
    assert_int_equal(mknod_at(f, STORE_ROOT_INO, "p", S_IFIFO | 0644, 0, &p),
                     0);
    struct store_attr before = attr_of(f, x);
    assert_int_equal(xset(f, x, "user.a", "one", 3, 0), 0);
    struct store_attr after = attr_of(f, x);
    assert_true(after.ctime_ns > before.ctime_ns);
    assert_true(after.revision > before.revision);
    assert_int_equal(after.mtime_ns, before.mtime_ns);
    assert_string_equal(xget(f, x, "user.a", &err), "one");
    /* XATTR_CREATE of a set name, XATTR_REPLACE of a missing one. */
    assert_int_equal(xset(f, x, "user.a", "two", 3, STORE_XATTR_CREATE),
                     EEXIST);
    assert_int_equal(xset(f, x, "user.b", "two", 3, STORE_XATTR_REPLACE),
                     ENODATA);
    assert_null(xget(f, x, "user.b", &err));
    assert_int_equal(err, -ENODATA);
    assert_int_equal(xset(f, x, "user.a", "three", 5, STORE_XATTR_REPLACE),
                     0);
    assert_string_equal(xget(f, x, "user.a", &err), "three");
    assert_int_equal(xset(f, x, "user.empty", "", 0, STORE_XATTR_CREATE), 0);
    assert_string_equal(xget(f, x, "user.empty", &err), "");
    assert_int_equal(xset(f, x, "trusted.t", "t", 1, 0), 0);
    /* The list, and a probe of its size with no buffer. */
    char list[64];
    size_t len;
    assert_int_equal(store_listxattr(f->s, NULL, x, list, sizeof(list), &len),
                     0);
    assert_int_equal(len, sizeof("trusted.t\0user.a\0user.empty"));
    assert_memory_equal(list, "trusted.t\0user.a\0user.empty", len);
    assert_int_equal(store_listxattr(f->s, NULL, x, NULL, 0, &len), 0);
    assert_int_equal(len, sizeof("trusted.t\0user.a\0user.empty"));
    size_t vlen;
    assert_int_equal(store_getxattr(f->s, NULL, x, "user.a", 6, NULL, 0,
                                    &vlen), 0);
    assert_int_equal(vlen, 5);
    /* Limits: name 1..255 bytes (ERANGE), value up to 64 KiB (E2BIG). */
    char name[300];
    memset(name, 'n', sizeof(name));
    memcpy(name, "user.", 5);
    name[256] = '\0';
    assert_int_equal(xset(f, x, name, "v", 1, 0), ERANGE);
    name[255] = '\0';
    assert_int_equal(xset(f, x, name, "v", 1, 0), 0);
    assert_int_equal(xrm(f, x, name), 0);
    assert_int_equal(xset(f, x, "", "v", 1, 0), ERANGE);
    static char big[STORE_XATTR_SIZE_MAX + 1];
    assert_int_equal(xset(f, x, "user.big", big, sizeof(big), 0), E2BIG);
    assert_int_equal(xset(f, x, "user.big", big, sizeof(big) - 1, 0), 0);
    assert_int_equal(store_getxattr(f->s, NULL, x, "user.big", 8, NULL, 0,
                                    &vlen), 0);
    assert_int_equal(vlen, STORE_XATTR_SIZE_MAX);
    /* Past the per-inode total: ENOSPC, as a full ext4 inode. */
    char nm[32];
    int i, rv = 0;
    for (i = 0; i < 40 && rv == 0; i++) {
        snprintf(nm, sizeof(nm), "user.fill%02d", i);
        rv = xset(f, d, nm, big, STORE_XATTR_SIZE_MAX, 0);
    }
    assert_int_equal(rv, ENOSPC);
    assert_int_equal(i, STORE_XATTR_TOTAL_MAX / STORE_XATTR_SIZE_MAX);
    /* Namespaces: user.* on files and directories only; user.raftfs.*
     * reserved; nothing but user.* and trusted.* stored. */
    assert_int_equal(xset(f, d, "user.dir", "d", 1, 0), 0);
    assert_int_equal(xset(f, l, "user.a", "a", 1, 0), EPERM);
    assert_int_equal(xset(f, p, "user.a", "a", 1, 0), EPERM);
    assert_int_equal(xset(f, l, "trusted.a", "a", 1, 0), 0);
    assert_int_equal(xset(f, x, "user.raftfs.revision", "1", 1, 0), EPERM);
    assert_int_equal(xset(f, x, "security.selinux", "s", 1, 0), EOPNOTSUPP);
    assert_int_equal(xset(f, x, "system.posix_acl_access", "s", 1, 0),
                     EINVAL);
    assert_int_equal(xset(f, x, "system.other", "s", 1, 0), EOPNOTSUPP);
    /* Removal. */
    before = attr_of(f, x);
    assert_int_equal(xrm(f, x, "user.a"), 0);
    assert_true(attr_of(f, x).ctime_ns > before.ctime_ns);
    assert_null(xget(f, x, "user.a", &err));
    assert_int_equal(err, -ENODATA);
    assert_int_equal(xrm(f, x, "user.a"), ENODATA);
    assert_int_equal(xrm(f, x, "user.raftfs.revision"), EPERM);
    /* A missing inode: ESTALE for changes (named by id, like a handle),
     * ENOENT for reads. */
    assert_int_equal(xset(f, 999999, "user.a", "a", 1, 0), ESTALE);
    assert_int_equal(xrm(f, 999999, "user.a"), ESTALE);
    assert_int_equal(store_listxattr(f->s, NULL, 999999, NULL, 0, &len),
                     -ENOENT);
    assert_int_equal(store_getxattr(f->s, NULL, 999999, "user.a", 6, NULL, 0,
                                    &vlen), -ENOENT);
}

/* Attributes go with the inode's last name (unlink, rmdir, rename over),
 * and with a file kept as this node's orphan: not with one name of
 * several. */
static void test_xattrs_go_with_last_name(void **state)
{
    struct fixture *f = *state;
    uint64_t x, d, y, z, o;
    int err;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "x", &x), 0);
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "y", &y), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "z", &z), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "o", &o), 0);
    uint64_t all[] = {x, d, y, z, o};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(xset(f, all[i], "user.a", "a", 1, 0), 0);
        assert_int_equal(xset(f, all[i], "trusted.b", "b", 1, 0), 0);
        assert_int_equal(count_xattrs(f, all[i]), 2);
    }
    assert_int_equal(link_at(f, x, STORE_ROOT_INO, "x2"), 0);
    assert_int_equal(op(f, STORE_OP_UNLINK, STORE_ROOT_INO, "x", NULL), 0);
    assert_string_equal(xget(f, x, "user.a", &err), "a");
    assert_int_equal(op(f, STORE_OP_UNLINK, STORE_ROOT_INO, "x2", NULL), 0);
    assert_int_equal(count_xattrs(f, x), 0);
    assert_int_equal(op(f, STORE_OP_RMDIR, STORE_ROOT_INO, "d", NULL), 0);
    assert_int_equal(count_xattrs(f, d), 0);
    assert_int_equal(mv(f, STORE_ROOT_INO, "y", STORE_ROOT_INO, "z", 0), 0);
    assert_int_equal(count_xattrs(f, z), 0);
    assert_int_equal(count_xattrs(f, y), 2);
    keep_ino = o;
    store_set_keep(f->s, keep_this, NULL);
    assert_int_equal(op(f, STORE_OP_UNLINK, STORE_ROOT_INO, "o", NULL), 0);
    uint64_t n;
    assert_int_equal(store_orphan_count(f->s, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(count_xattrs(f, o), 0);
}

/* security.capability: only Linux's formats are stored (EINVAL), and any
 * write with data, truncate or chown of a file takes it away at apply,
 * whoever the caller (no STORE_KILL_PRIV needed); a chmod, a write of
 * nothing or a directory's chown keep it. */
static void test_caps_go_with_writes(void **state)
{
    struct fixture *f = *state;
    static const uint8_t v2[20] = {0x01, 0x00, 0x00, 0x02, 0x00, 0x04};
    static const uint8_t v3[24] = {0x01, 0x00, 0x00, 0x03, 0x00, 0x04};
    static const uint8_t v2_long[24] = {0x01, 0x00, 0x00, 0x02, 0x00, 0x04};
    const char *n = "security.capability";
    uint64_t x, d;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "x", &x), 0);
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0);
    assert_int_equal(xset(f, x, n, v2, 12, 0), EINVAL);  /* revision 1 size */
    assert_int_equal(xset(f, x, n, v3, 20, 0), EINVAL);  /* v3 header, v2 size */
    assert_int_equal(xset(f, x, n, v2_long, 24, 0), EINVAL); /* v2, v3 size */
    assert_int_equal(xset(f, x, "security.selinux", "l", 1, 0), EOPNOTSUPP);
    assert_int_equal(count_xattrs(f, x), 0);
    assert_int_equal(xset(f, x, n, v3, sizeof(v3), 0), 0);
    assert_int_equal(xset(f, x, n, v2, sizeof(v2), 0), 0);
    struct store_cmd chmod = {.op = STORE_OP_SETATTR, .ino = x,
                              .valid = STORE_SET_MODE, .mode = 0755};
    assert_int_equal(apply(f, &chmod).err, 0);
    assert_int_equal(wr(f, x, 0, "", 0, 0), 0);
    assert_int_equal(count_xattrs(f, x), 1);
    assert_int_equal(wr(f, x, 0, "a", 1, 0), 0);
    assert_int_equal(count_xattrs(f, x), 0);
    assert_int_equal(xset(f, x, n, v2, sizeof(v2), 0), 0);
    assert_int_equal(wr(f, x, 0, "", 0, STORE_TRUNC), 0);
    assert_int_equal(count_xattrs(f, x), 0);
    assert_int_equal(xset(f, x, n, v2, sizeof(v2), 0), 0);
    struct store_cmd sz = {.op = STORE_OP_SETATTR, .ino = x,
                           .valid = STORE_SET_SIZE, .size = 0};
    assert_int_equal(apply(f, &sz).err, 0);
    assert_int_equal(count_xattrs(f, x), 0);
    struct store_cmd own = {.op = STORE_OP_SETATTR, .ino = x,
                            .valid = STORE_SET_GID, .gid = 0};
    assert_int_equal(xset(f, x, n, v2, sizeof(v2), 0), 0);
    assert_int_equal(apply(f, &own).err, 0);
    assert_int_equal(count_xattrs(f, x), 0);
    own.ino = d;
    assert_int_equal(xset(f, d, n, v2, sizeof(v2), 0), 0);
    assert_int_equal(apply(f, &own).err, 0);
    assert_int_equal(count_xattrs(f, d), 1);
}

/* ---- POSIX ACLs ------------------------------------------------------- */

/* An ACL in Linux's xattr format from (tag, perm, id) triples; its size
 * in *len. Ids of the singular tags are what the kernel writes (-1). */
static const uint8_t *acl_of(size_t *len, size_t n, const uint32_t (*e)[3])
{
    static uint8_t buf[4 + 8 * 16];
    rfs_put_le32(buf, 2);
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = buf + 4 + 8 * i;
        p[0] = (uint8_t)e[i][0];
        p[1] = (uint8_t)(e[i][0] >> 8);
        p[2] = (uint8_t)e[i][1];
        p[3] = (uint8_t)(e[i][1] >> 8);
        rfs_put_le32(p + 4, e[i][2]);
    }
    *len = 4 + 8 * n;
    return buf;
}

#define ACL(...)                                                             \
    (const uint32_t[][3])                                                    \
    {                                                                        \
        __VA_ARGS__                                                          \
    }
#define NACL(...) (sizeof(ACL(__VA_ARGS__)) / sizeof(uint32_t[3]))
#define UO(p) {0x01, p, 0xffffffffu}
#define U(id, p) {0x02, p, id}
#define GO(p) {0x04, p, 0xffffffffu}
#define G(id, p) {0x08, p, id}
#define M(p) {0x10, p, 0xffffffffu}
#define O(p) {0x20, p, 0xffffffffu}
#define ACL_SET(f, ino, ...)                                                 \
    acl_set(f, ino, NACL(__VA_ARGS__), ACL(__VA_ARGS__))

static int acl_set(struct fixture *f, uint64_t ino, size_t n,
                   const uint32_t (*e)[3])
{
    size_t len;
    const uint8_t *v = acl_of(&len, n, e);
    return xset(f, ino, STORE_ACL_ACCESS, v, len, 0);
}

/* The perm of the first entry with this tag in ino's stored access ACL,
 * or -1 if there is no ACL or no such entry. */
static int acl_perm(struct fixture *f, uint64_t ino, uint16_t tag)
{
    uint8_t v[4 + 8 * 16];
    size_t len;
    if (store_getxattr(f->s, NULL, ino, STORE_ACL_ACCESS,
                       strlen(STORE_ACL_ACCESS), v, sizeof(v), &len) != 0) {
        return -1;
    }
    for (size_t i = 4; i + 8 <= len; i += 8) {
        if ((v[i] | v[i + 1] << 8) == tag) {
            return v[i + 2] | v[i + 3] << 8;
        }
    }
    return -1;
}

/* Only what Linux's posix_acl_valid accepts is stored: anything else is
 * EINVAL at apply, identically everywhere, and leaves mode and ACL as
 * they were. */
static void test_acl_format_is_checked(void **state)
{
    struct fixture *f = *state;
    uint64_t x;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "x", &x), 0);
    size_t len;
    const uint8_t *v;
    /* Accepted: the smallest ACL that is not the mode. */
    assert_int_equal(ACL_SET(f, x, UO(6), U(65534, 4), GO(4), M(4), O(0)), 0);
    assert_int_equal(count_xattrs(f, x), 1);
    /* No MASK with a named user. */
    assert_int_equal(ACL_SET(f, x, UO(6), U(7, 4), GO(4), O(0)), EINVAL);
    /* No GROUP_OBJ; no OTHER; no USER_OBJ. */
    assert_int_equal(ACL_SET(f, x, UO(6), O(0)), EINVAL);
    assert_int_equal(ACL_SET(f, x, UO(6), GO(4)), EINVAL);
    assert_int_equal(ACL_SET(f, x, GO(4), O(0)), EINVAL);
    /* Out of order; a tag twice; named ids unsorted or repeated. */
    assert_int_equal(ACL_SET(f, x, GO(4), UO(6), O(0)), EINVAL);
    assert_int_equal(ACL_SET(f, x, UO(6), UO(6), GO(4), O(0)), EINVAL);
    assert_int_equal(
        ACL_SET(f, x, UO(6), U(9, 4), U(8, 4), GO(4), M(4), O(0)), EINVAL);
    assert_int_equal(
        ACL_SET(f, x, UO(6), GO(4), G(8, 4), G(8, 4), M(4), O(0)), EINVAL);
    /* A perm past rwx; an unknown tag. */
    assert_int_equal(ACL_SET(f, x, UO(8), GO(4), O(0)), EINVAL);
    assert_int_equal(ACL_SET(f, x, UO(6), GO(4), {0x40, 0, 0}, O(0)),
                     EINVAL);
    /* The header: another version, a partial entry, no entries. */
    v = acl_of(&len, 3, ACL(UO(6), GO(4), O(0)));
    uint8_t bad[64];
    memcpy(bad, v, len);
    bad[0] = 1;
    assert_int_equal(xset(f, x, STORE_ACL_ACCESS, bad, len, 0), EINVAL);
    bad[0] = 2;
    assert_int_equal(xset(f, x, STORE_ACL_ACCESS, bad, len - 1, 0), EINVAL);
    assert_int_equal(xset(f, x, STORE_ACL_ACCESS, bad, 4, 0), EINVAL);
    assert_int_equal(xset(f, x, STORE_ACL_ACCESS, bad, 3, 0), EINVAL);
    /* None of the refusals changed the mode or the stored ACL. */
    assert_int_equal(attr_of(f, x).mode & 0777, 0640);
    assert_int_equal(acl_perm(f, x, 0x02), 4);
    /* Not on a symlink; a default ACL only on a directory. */
    uint64_t l;
    assert_int_equal(op(f, STORE_OP_SYMLINK, STORE_ROOT_INO, "l", &l), 0);
    assert_int_equal(ACL_SET(f, l, UO(6), GO(4), O(0)), EOPNOTSUPP);
    v = acl_of(&len, 3, ACL(UO(7), GO(5), O(5)));
    assert_int_equal(xset(f, x, STORE_ACL_DEFAULT, v, len, 0), EACCES);
    assert_int_equal(xrm(f, x, STORE_ACL_DEFAULT), 0);
}

/* Setting an access ACL sets the mode's permission bits from it (group:
 * the MASK), an ACL equal to a mode is not kept, and a chmod rewrites
 * USER_OBJ, MASK and OTHER of a kept ACL; removal keeps the mode. */
static void test_acl_and_mode_agree(void **state)
{
    struct fixture *f = *state;
    uint64_t x, d;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "x", &x), 0);
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0);
    struct store_cmd suid = {.op = STORE_OP_SETATTR, .ino = x,
                             .valid = STORE_SET_MODE, .mode = 04644};
    assert_int_equal(apply(f, &suid).err, 0);
    struct store_attr before = attr_of(f, x);
    assert_int_equal(
        ACL_SET(f, x, UO(7), U(65534, 2), GO(4), M(6), O(1)), 0);
    struct store_attr a = attr_of(f, x);
    assert_int_equal(a.mode, 04761); /* Group bits: the MASK's. */
    assert_true(a.ctime_ns > before.ctime_ns);
    assert_int_equal(acl_perm(f, x, 0x04), 4); /* GROUP_OBJ kept apart. */
    /* chmod: USER_OBJ, MASK and OTHER follow, GROUP_OBJ and the named
     * user do not. */
    struct store_cmd chmod = {.op = STORE_OP_SETATTR, .ino = x,
                              .valid = STORE_SET_MODE, .mode = 0540};
    assert_int_equal(apply(f, &chmod).err, 0);
    assert_int_equal(attr_of(f, x).mode, 0540);
    assert_int_equal(acl_perm(f, x, 0x01), 5);
    assert_int_equal(acl_perm(f, x, 0x10), 4);
    assert_int_equal(acl_perm(f, x, 0x20), 0);
    assert_int_equal(acl_perm(f, x, 0x04), 4);
    assert_int_equal(acl_perm(f, x, 0x02), 2);
    /* Without a MASK (a directory's minimal ACL plus nothing): GROUP_OBJ
     * follows the chmod. Such an ACL is the mode itself: not kept, the
     * stored one goes, and the mode takes its bits. */
    assert_int_equal(ACL_SET(f, x, UO(6), GO(2), O(4)), 0);
    assert_int_equal(attr_of(f, x).mode, 0624);
    assert_int_equal(count_xattrs(f, x), 0);
    /* With a MASK and no named entry it is kept (Linux counts a MASK as
     * more than the mode), and a chmod moves the MASK only. */
    assert_int_equal(ACL_SET(f, d, UO(7), GO(5), M(7), O(5)), 0);
    assert_int_equal(attr_of(f, d).mode & 0777, 0775);
    assert_int_equal(count_xattrs(f, d), 1);
    chmod.ino = d;
    chmod.mode = 0700;
    chmod.seq = chmod.time_ns = 0; /* A new request, not a retry. */
    assert_int_equal(apply(f, &chmod).err, 0);
    assert_int_equal(acl_perm(f, d, 0x10), 0);
    assert_int_equal(acl_perm(f, d, 0x04), 5);
    /* Removal leaves the mode as it is; removing it again succeeds. */
    assert_int_equal(xrm(f, d, STORE_ACL_ACCESS), 0);
    assert_int_equal(count_xattrs(f, d), 0);
    assert_int_equal(attr_of(f, d).mode & 0777, 0700);
    assert_int_equal(xrm(f, d, STORE_ACL_ACCESS), 0);
    /* A chmod with no ACL stores none. */
    chmod.seq = chmod.time_ns = 0;
    assert_int_equal(apply(f, &chmod).err, 0);
    assert_int_equal(count_xattrs(f, d), 0);
}

/* Create ino named name in parent as op with mode and umask (STORE_UMASK). */
static int create_um(struct fixture *f, uint8_t opc, uint64_t parent,
                     const char *name, uint32_t mode, uint32_t umask,
                     uint64_t *ino)
{
    struct store_cmd c = {.op = opc, .parent = parent, .name = name,
                          .name_len = (uint16_t)strlen(name), .mode = mode,
                          .uid = 1000, .gid = 1000, .flags = STORE_UMASK,
                          .size = umask};
    if (opc == STORE_OP_SYMLINK) {
        c.data = "target";
        c.data_len = 6;
    }
    struct store_result r = apply(f, &c);
    *ino = r.ino;
    return r.err;
}

/* Default ACLs: directories only (EACCES), checked, kept as given; a new
 * file, directory or fifo inherits it as its access ACL masked by the
 * create mode, and the umask does not count; a new directory inherits it
 * as its default too; a symlink inherits nothing. Without a default ACL
 * the umask the entry carries is applied. */
static void test_acl_default_inherited(void **state)
{
    struct fixture *f = *state;
    uint64_t d, x, sub, fifo, l, plain, y;
    size_t len;
    const uint8_t *v;
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "x", &x), 0);
    /* No default ACL: the umask applies. */
    assert_int_equal(create_um(f, STORE_OP_CREATE, d, "plain", 0666, 027,
                               &plain),
                     0);
    assert_int_equal(attr_of(f, plain).mode, 0640);
    assert_int_equal(count_xattrs(f, plain), 0);
    v = acl_of(&len, 5, ACL(UO(7), U(65534, 5), GO(5), M(5), O(5)));
    assert_int_equal(xset(f, x, STORE_ACL_DEFAULT, v, len, 0), EACCES);
    v = acl_of(&len, 3, ACL(UO(7), U(65534, 5), O(5)));
    assert_int_equal(xset(f, d, STORE_ACL_DEFAULT, v, len, 0), EINVAL);
    v = acl_of(&len, 5, ACL(UO(7), U(65534, 5), GO(5), M(5), O(5)));
    uint32_t dmode = attr_of(f, d).mode;
    assert_int_equal(xset(f, d, STORE_ACL_DEFAULT, v, len, 0), 0);
    assert_int_equal(attr_of(f, d).mode, dmode); /* The mode stays. */
    /* A file asked 0666 with umask 077: the umask is ignored, the ACL
     * limited by 0666. */
    assert_int_equal(create_um(f, STORE_OP_CREATE, d, "x", 0666, 077, &y),
                     0);
    assert_int_equal(attr_of(f, y).mode, 0644);
    assert_int_equal(acl_perm(f, y, 0x01), 6);
    assert_int_equal(acl_perm(f, y, 0x02), 5); /* Named: as given. */
    assert_int_equal(acl_perm(f, y, 0x10), 4);
    assert_int_equal(acl_perm(f, y, 0x20), 4);
    assert_int_equal(count_xattrs(f, y), 1); /* No default on a file. */
    /* A directory: access ACL and default ACL. */
    assert_int_equal(
        create_um(f, STORE_OP_MKDIR, d, "sub", 0750, 077, &sub), 0);
    assert_int_equal(attr_of(f, sub).mode & 0777, 0750);
    assert_int_equal(acl_perm(f, sub, 0x20), 0);
    assert_int_equal(count_xattrs(f, sub), 2);
    uint8_t got[64];
    size_t glen;
    assert_int_equal(store_getxattr(f->s, NULL, sub, STORE_ACL_DEFAULT,
                                    strlen(STORE_ACL_DEFAULT), got,
                                    sizeof(got), &glen),
                     0);
    assert_int_equal(glen, len);
    assert_memory_equal(got, v, len);
    /* Its own children inherit in turn. */
    assert_int_equal(create_um(f, STORE_OP_MKNOD, sub, "fifo",
                               S_IFIFO | 0600, 0, &fifo),
                     0);
    assert_int_equal(attr_of(f, fifo).mode & 0777, 0600);
    assert_int_equal(acl_perm(f, fifo, 0x10), 0);
    assert_int_equal(acl_perm(f, fifo, 0x02), 5);
    /* A symlink: nothing. */
    assert_int_equal(create_um(f, STORE_OP_SYMLINK, d, "l", 0, 077, &l), 0);
    assert_int_equal(count_xattrs(f, l), 0);
    assert_int_equal(attr_of(f, l).mode & 0777, 0777);
    /* A default ACL with no named entry: equal to the mode it gives, so
     * the new file keeps no access ACL, only the mode. */
    v = acl_of(&len, 3, ACL(UO(6), GO(0), O(0)));
    assert_int_equal(xset(f, d, STORE_ACL_DEFAULT, v, len, 0), 0);
    assert_int_equal(
        create_um(f, STORE_OP_CREATE, d, "y", 0666, 0, &y), 0);
    assert_int_equal(attr_of(f, y).mode, 0600);
    assert_int_equal(count_xattrs(f, y), 0);
    /* Removed: the umask is back. */
    assert_int_equal(xrm(f, d, STORE_ACL_DEFAULT), 0);
    assert_int_equal(xrm(f, d, STORE_ACL_DEFAULT), 0);
    assert_int_equal(
        create_um(f, STORE_OP_CREATE, d, "z", 0666, 022, &y), 0);
    assert_int_equal(attr_of(f, y).mode, 0644);
    assert_int_equal(count_xattrs(f, y), 0);
    assert_int_equal(store_acl_create_mode(v, len, 04775), 04600);
}

/* What an ACL grants whom (fs/ asks it again before a user.* change):
 * the owner its entry unmasked, a named user its entry masked, a group
 * member the union of its groups' entries masked, the rest OTHER. */
static void test_acl_perm_grants(void **state)
{
    (void)state;
    size_t len;
    const uint8_t *v = acl_of(
        &len, 7,
        ACL(UO(4), U(10, 7), U(11, 1), GO(2), G(20, 1), M(6), O(1)));
    const uint32_t g0[] = {0}, g5[] = {5}, g20[] = {0, 20},
                   g520[] = {5, 20};
    assert_int_equal(store_acl_check(v, len), 0);
    /* owner 1, group 5 */
    assert_int_equal(store_acl_perm(v, len, 1, 5, 1, g0, 1), 4);
    assert_int_equal(store_acl_perm(v, len, 1, 5, 10, g520, 2), 6);
    assert_int_equal(store_acl_perm(v, len, 1, 5, 11, g0, 1), 0);
    assert_int_equal(store_acl_perm(v, len, 1, 5, 12, g5, 1), 2);
    assert_int_equal(store_acl_perm(v, len, 1, 5, 12, g20, 2), 0);
    assert_int_equal(store_acl_perm(v, len, 1, 5, 12, g520, 2), 2);
    assert_int_equal(store_acl_perm(v, len, 1, 5, 12, g0, 1), 1);
}

/* Attributes travel in snapshots and come back from them, byte for byte;
 * an install drops the attributes the target had. */
static void test_xattrs_in_snapshot(void **state)
{
    struct fixture *f = *state;
    uint64_t x, d;
    int err;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "x", &x), 0);
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0);
    assert_int_equal(xset(f, x, "user.k", "value", 5, 0), 0);
    assert_int_equal(xset(f, d, "trusted.t", "\0bin\xff", 5, 0), 0);
    char img[700], img2[700], cmd[1500];
    snprintf(img, sizeof(img), "%s/../a.img", f->dir);
    snprintf(img2, sizeof(img2), "%s/../b.img", f->dir);
    rfs_index_t idx;
    uint64_t size;
    assert_int_equal(store_snapshot_write(f->s, img, &idx, &size), 0);

    struct fixture g = {0};
    snprintf(g.dir, sizeof(g.dir), "%.200s2", f->dir);
    char msg[RFS_ERRMSG_SZ];
    assert_int_equal(store_open(g.dir, NULL, &g.s, msg), 0);
    g.next = 1;
    /* Ids come from indexes: junk's must be one the image does not use. */
    uint64_t junk;
    assert_int_equal(op(&g, STORE_OP_CREATE, STORE_ROOT_INO, "a", NULL), 0);
    assert_int_equal(op(&g, STORE_OP_CREATE, STORE_ROOT_INO, "b", NULL), 0);
    assert_int_equal(op(&g, STORE_OP_CREATE, STORE_ROOT_INO, "junk", &junk),
                     0);
    assert_true(junk != x && junk != d);
    assert_int_equal(xset(&g, junk, "user.junk", "j", 1, 0), 0);
    struct store_snap_meta meta = {.index = idx, .term = 2, .size = size,
                                   .conf = {(void *)"conf", 4}};
    assert_int_equal(store_snapshot_install(g.s, img, &meta), 0);
    assert_string_equal(xget(&g, x, "user.k", &err), "value");
    char v[8];
    size_t len;
    assert_int_equal(store_getxattr(g.s, NULL, d, "trusted.t", 9, v,
                                    sizeof(v), &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(v, "\0bin\xff", 5);
    assert_int_equal(count_xattrs(&g, junk), 0);
    assert_int_equal(store_snapshot_write(g.s, img2, &idx, &size), 0);
    snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", img, img2);
    assert_int_equal(system(cmd), 0);
    store_close(g.s);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g.dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- Node sessions ---------------------------------------------------- */

/* A command from client/boot with its own seq counter. */
static struct store_result as(struct fixture *f, struct store_cmd *c,
                              rfs_nodeid_t client, uint64_t boot)
{
    c->client = client;
    c->boot = boot;
    c->seq = ++f->seq;
    return apply(f, c);
}

static int sess_open(struct fixture *f, rfs_nodeid_t client, uint64_t boot,
                     uint64_t ttl_ms)
{
    struct store_cmd c = {.op = STORE_OP_SESSION_OPEN, .offset = ttl_ms};
    return as(f, &c, client, boot).err;
}

/* The leader (client 1, boot 1) ends client/boot's session. */
static int sess_end(struct fixture *f, rfs_nodeid_t client, uint64_t boot)
{
    struct store_cmd c = {.op = STORE_OP_SESSION_END, .ino = client,
                          .offset = boot};
    return as(f, &c, 1, 1).err;
}

static int create_as(struct fixture *f, uint64_t parent, const char *name,
                     rfs_nodeid_t client, uint64_t boot)
{
    struct store_cmd c = {.op = STORE_OP_CREATE, .parent = parent,
                          .name = name, .name_len = (uint16_t)strlen(name),
                          .mode = 0644};
    return as(f, &c, client, boot).err;
}

struct sess_seen {
    unsigned n, live;
    uint64_t boot[4];
    uint32_t ttl[4];
    bool is_live[4];
};

static int sess_collect(void *arg, rfs_nodeid_t client, uint64_t boot,
                        uint32_t ttl_ms, bool live)
{
    struct sess_seen *s = arg;
    if (s->n < 4) {
        s->boot[s->n] = boot;
        s->ttl[s->n] = ttl_ms;
        s->is_live[s->n] = live;
        (void)client;
    }
    s->n++;
    s->live += live;
    return 0;
}

/* OPEN records a live session; END ends it; every later change of that
 * (client, boot) is refused with EROFS at apply and changes nothing (the
 * fence); a new boot opens a new session and writes again. A stale END
 * (already ended, or an older boot) is ENOENT and ends nothing. */
static void test_session_open_end_fence(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(sess_open(f, 3, 10, 2500), 0);
    assert_int_equal(sess_open(f, 4, 20, 0), EINVAL);
    struct sess_seen s = {0};
    assert_int_equal(store_sessions(f->s, sess_collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.boot[0], 10);
    assert_int_equal(s.ttl[0], 2500);
    assert_true(s.is_live[0]);
    assert_int_equal(create_as(f, STORE_ROOT_INO, "a", 3, 10), 0);

    assert_int_equal(sess_end(f, 3, 9), ENOENT);
    assert_int_equal(sess_end(f, 3, 10), 0);
    assert_int_equal(sess_end(f, 3, 10), ENOENT);
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_sessions(f->s, sess_collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.live, 0);

    /* In flight from the ended boot: refused, nothing changes. */
    assert_int_equal(create_as(f, STORE_ROOT_INO, "b", 3, 10), EROFS);
    assert_int_equal(lookup(f, STORE_ROOT_INO, "b"), 0);
    uint64_t a = lookup(f, STORE_ROOT_INO, "a");
    assert_true(a != 0);
    struct store_cmd w = {.op = STORE_OP_WRITE, .ino = a, .data = "x",
                          .data_len = 1};
    assert_int_equal(as(f, &w, 3, 10).err, EROFS);
    assert_int_equal(attr_of(f, a).size, 0);
    /* Reopening the ended boot is refused too: a new boot is needed. */
    assert_int_equal(sess_open(f, 3, 10, 2500), EROFS);
    assert_int_equal(sess_open(f, 3, 11, 2500), 0);
    assert_int_equal(create_as(f, STORE_ROOT_INO, "b", 3, 11), 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_sessions(f->s, sess_collect, &s), 0);
    assert_int_equal(s.live, 1);
    assert_int_equal(s.boot[0], 11);
    /* The old boot is still refused (ESTALE: an older boot). */
    assert_int_equal(create_as(f, STORE_ROOT_INO, "c", 3, 10), ESTALE);
    /* A client that never opened a session is not fenced. */
    assert_int_equal(create_as(f, STORE_ROOT_INO, "c", 5, 1), 0);
}

/* Files created directly in a directory marked user.raftfs.ephemeral are
 * unlinked when their creator's session ends: by a SESSION_END entry, and
 * by a newer boot of the creator. Other sessions' files, files outside the
 * directory, and a name taken over by another file stay. The mark is only
 * "1", only on a directory; other user.raftfs. names stay refused. */
static void test_ephemeral_files_go_with_session(void **state)
{
    struct fixture *f = *state;
    uint64_t d, plain, file;
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "reg", &d), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "plain", &plain),
                     0);
    assert_int_equal(xset(f, plain, STORE_EPHEMERAL_XATTR, "1", 1, 0), EPERM);
    assert_int_equal(xset(f, d, STORE_EPHEMERAL_XATTR, "yes", 3, 0), EINVAL);
    assert_int_equal(xset(f, d, "user.raftfs.other", "1", 1, 0), EPERM);
    assert_int_equal(xset(f, d, STORE_EPHEMERAL_XATTR, "1", 1, 0), 0);
    int err;
    assert_string_equal(xget(f, d, STORE_EPHEMERAL_XATTR, &err), "1");

    assert_int_equal(sess_open(f, 3, 10, 2000), 0);
    assert_int_equal(sess_open(f, 4, 20, 2000), 0);
    assert_int_equal(create_as(f, d, "web-3", 3, 10), 0);
    assert_int_equal(create_as(f, d, "db-3", 3, 10), 0);
    assert_int_equal(create_as(f, d, "web-4", 4, 20), 0);
    assert_int_equal(create_as(f, STORE_ROOT_INO, "out-3", 3, 10), 0);
    /* db-3 is replaced by another node's file of that name. */
    struct store_cmd u = {.op = STORE_OP_UNLINK, .parent = d, .name = "db-3",
                          .name_len = 4};
    assert_int_equal(as(f, &u, 4, 20).err, 0);
    assert_int_equal(create_as(f, d, "db-3", 4, 20), 0);
    file = lookup(f, d, "db-3");

    assert_int_equal(sess_end(f, 3, 10), 0);
    assert_int_equal(lookup(f, d, "web-3"), 0);
    assert_int_equal(lookup(f, d, "db-3"), file);
    assert_true(lookup(f, d, "web-4") != 0);
    assert_true(lookup(f, STORE_ROOT_INO, "out-3") != 0);

    /* A newer boot of client 4 (a restart) ends boot 20's session. */
    assert_int_equal(create_as(f, STORE_ROOT_INO, "x", 4, 21), 0);
    assert_int_equal(lookup(f, d, "web-4"), 0);
    assert_int_equal(lookup(f, d, "db-3"), 0);
    struct sess_seen s = {0};
    assert_int_equal(store_sessions(f->s, sess_collect, &s), 0);
    assert_int_equal(s.live, 0);
    /* Unmarked, the directory makes plain files again. */
    assert_int_equal(xrm(f, d, STORE_EPHEMERAL_XATTR), 0);
    assert_int_equal(sess_open(f, 4, 22, 2000), 0);
    assert_int_equal(create_as(f, d, "keep", 4, 22), 0);
    assert_int_equal(sess_end(f, 4, 22), 0);
    assert_true(lookup(f, d, "keep") != 0);
}

/* The session table and the ephemeral records travel in snapshots: an
 * installed image keeps the fence and still drops the files at the end. */
static void test_sessions_in_snapshot(void **state)
{
    struct fixture *f = *state;
    uint64_t d;
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "reg", &d), 0);
    assert_int_equal(xset(f, d, STORE_EPHEMERAL_XATTR, "1", 1, 0), 0);
    assert_int_equal(sess_open(f, 3, 10, 2000), 0);
    assert_int_equal(sess_open(f, 4, 20, 2000), 0);
    assert_int_equal(create_as(f, d, "e", 3, 10), 0);
    assert_int_equal(sess_end(f, 4, 20), 0);
    char img[700], cmd[1500];
    snprintf(img, sizeof(img), "%s/../s.img", f->dir);
    rfs_index_t idx;
    uint64_t size;
    assert_int_equal(store_snapshot_write(f->s, img, &idx, &size), 0);
    struct fixture g = {0};
    snprintf(g.dir, sizeof(g.dir), "%.200s2", f->dir);
    char msg[RFS_ERRMSG_SZ];
    assert_int_equal(store_open(g.dir, NULL, &g.s, msg), 0);
    struct store_snap_meta meta = {.index = idx, .term = 2, .size = size,
                                   .conf = {(void *)"conf", 4}};
    assert_int_equal(store_snapshot_install(g.s, img, &meta), 0);
    g.next = idx + 1;
    g.seq = f->seq;
    struct sess_seen s = {0};
    assert_int_equal(store_sessions(g.s, sess_collect, &s), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.live, 1);
    assert_int_equal(create_as(&g, STORE_ROOT_INO, "late", 4, 20), EROFS);
    assert_true(lookup(&g, d, "e") != 0);
    assert_int_equal(sess_end(&g, 3, 10), 0);
    assert_int_equal(lookup(&g, d, "e"), 0);
    store_close(g.s);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g.dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- Snapshots -------------------------------------------------------- */

/* The "snap" record keeps its layout: CRC32C, index, term, size, then the
 * caller's configuration bytes verbatim (here those cons_conf_encode makes
 * for server 5, a voter at "h:1"), so data folders written before the store
 * stopped encoding configurations itself still load. */
static void test_snapshot_meta_bytes(void **state)
{
    struct fixture *f = *state;
    struct store_loaded l;
    assert_int_equal(store_load(f->s, &l), 0);
    assert_null(l.snap.conf.base); /* No snapshot recorded yet. */
    store_loaded_free(&l);

    static const uint8_t conf[] = {1, 1, 5, 0, 0, 0, 0, 0, 0, 0, 1, 3,
                                   'h', ':', '1'};
    struct store_snap_meta m = {.index = 7, .term = 3, .size = 99,
                                .conf = {(void *)conf, sizeof(conf)}};
    assert_int_equal(store_snapshot_meta_put(f->s, &m), 0);
    uint8_t want[28 + sizeof(conf)];
    rfs_put_le64(want + 4, 7);
    rfs_put_le64(want + 12, 3);
    rfs_put_le64(want + 20, 99);
    memcpy(want + 28, conf, sizeof(conf));
    rfs_put_le32(want, rfs_crc32c(0, want + 4, sizeof(want) - 4));
    char *err = NULL;
    size_t len;
    char *v = rocksdb_get_cf(f->s->db, f->s->ro, f->s->cf[CF_META], "snap", 4,
                             &len, &err);
    assert_null(err);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(v, want, sizeof(want));
    rocksdb_free(v);

    assert_int_equal(store_load(f->s, &l), 0);
    assert_int_equal(l.snap.index, 7);
    assert_int_equal(l.snap.term, 3);
    assert_int_equal(l.snap.size, 99);
    assert_int_equal(l.snap.conf.len, sizeof(conf));
    assert_memory_equal(l.snap.conf.base, conf, sizeof(conf));
    store_loaded_free(&l);
}

/* An image installed elsewhere reproduces the state, byte for byte, and
 * replaces what the target had. A damaged image changes nothing. */
static void test_snapshot_roundtrip(void **state)
{
    struct fixture *f = *state;
    uint64_t d, x;
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, d, "x", &x), 0);
    assert_int_equal(wr(f, x, 0, "snapshot me", 11, 0), 0);
    char img[700], img2[700];
    snprintf(img, sizeof(img), "%s/../a.img", f->dir);
    snprintf(img2, sizeof(img2), "%s/../b.img", f->dir);
    rfs_index_t idx;
    uint64_t size;
    assert_int_equal(store_snapshot_write(f->s, img, &idx, &size), 0);
    assert_int_equal(idx, 3);

    struct fixture g = {0};
    snprintf(g.dir, sizeof(g.dir), "%.200s2", f->dir);
    char msg[RFS_ERRMSG_SZ];
    assert_int_equal(store_open(g.dir, NULL, &g.s, msg), 0);
    g.next = 1;
    assert_int_equal(op(&g, STORE_OP_CREATE, STORE_ROOT_INO, "junk", NULL), 0);
    struct cons_entry le = {.term = 1, .index = 1, .type = CONS_ENTRY_NOOP};
    assert_int_equal(store_log_write(g.s, NULL, &le, 1), 0);
    /* The configuration is opaque to the store: any bytes do. */
    struct store_snap_meta meta = {.index = idx, .term = 2, .size = size,
                                   .conf = {(void *)"\001\000opaque", 8}};

    /* Damage a copy: refused, nothing changed. */
    char cmd[2400];
    snprintf(cmd, sizeof(cmd),
             "cp '%s' '%s.bad' && printf X | dd of='%s.bad' bs=1 seek=40 "
             "conv=notrunc status=none",
             img, img, img);
    assert_int_equal(system(cmd), 0);
    char bad[720];
    snprintf(bad, sizeof(bad), "%s.bad", img);
    assert_int_equal(store_snapshot_install(g.s, bad, &meta), RFS_ECORRUPT);
    assert_int_not_equal(lookup(&g, STORE_ROOT_INO, "junk"), 0);

    assert_int_equal(store_snapshot_install(g.s, img, &meta), 0);
    assert_int_equal(lookup(&g, STORE_ROOT_INO, "junk"), 0);
    assert_int_equal(lookup(&g, d, "x"), x);
    assert_int_equal(store_applied(g.s), idx);
    struct store_loaded l;
    assert_int_equal(store_load(g.s, &l), 0);
    assert_int_equal(l.snap.index, idx);
    assert_int_equal(l.snap.term, 2);
    assert_int_equal(l.snap.size, size);
    assert_int_equal(l.snap.conf.len, 8);
    assert_memory_equal(l.snap.conf.base, "\001\000opaque", 8);
    assert_int_equal(l.n_entries, 0);
    assert_int_equal(l.applied, idx);
    store_loaded_free(&l);
    /* Same state, same bytes. */
    rfs_index_t idx2;
    uint64_t size2;
    assert_int_equal(store_snapshot_write(g.s, img2, &idx2, &size2), 0);
    snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", img, img2);
    assert_int_equal(system(cmd), 0);
    store_close(g.s);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g.dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- Ownership and mode rules (decided at apply) ---------------------- */

static int setattr_mode(struct fixture *f, uint64_t ino, uint32_t mode)
{
    struct store_cmd c = {.op = STORE_OP_SETATTR, .ino = ino,
                          .valid = STORE_SET_MODE, .mode = mode};
    return apply(f, &c).err;
}

/* A setgid directory gives its group to every new entry (file, directory,
 * symlink, fifo, device), and its setgid bit to new subdirectories only;
 * a hard link keeps the file's group. Outside such a directory, the
 * creator's group. */
static void test_setgid_directory_hands_down_its_group(void **state)
{
    struct fixture *f = *state;
    uint64_t d, x;
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "g", &d), 0);
    struct store_cmd c = {.op = STORE_OP_SETATTR, .ino = d,
                          .valid = STORE_SET_MODE | STORE_SET_GID,
                          .mode = 02775, .gid = 4242};
    assert_int_equal(apply(f, &c).err, 0);
    assert_int_equal(op(f, STORE_OP_CREATE, d, "f", &x), 0);
    assert_int_equal(attr_of(f, x).gid, 4242);
    assert_int_equal(attr_of(f, x).mode, 0644);
    assert_int_equal(op(f, STORE_OP_SYMLINK, d, "l", &x), 0);
    assert_int_equal(attr_of(f, x).gid, 4242);
    assert_int_equal(mknod_at(f, d, "p", S_IFIFO | 0640, 0, &x), 0);
    assert_int_equal(attr_of(f, x).gid, 4242);
    assert_int_equal(mknod_at(f, d, "c", S_IFCHR | 0600, makedev(1, 3), &x),
                     0);
    assert_int_equal(attr_of(f, x).gid, 4242);
    assert_int_equal(op(f, STORE_OP_MKDIR, d, "sub", &x), 0);
    assert_int_equal(attr_of(f, x).gid, 4242);
    assert_int_equal(attr_of(f, x).mode, 02644);
    /* ... and the subdirectory hands it on in turn. */
    uint64_t y;
    assert_int_equal(op(f, STORE_OP_CREATE, x, "deep", &y), 0);
    assert_int_equal(attr_of(f, y).gid, 4242);
    /* A link into it keeps the file's own group. */
    uint64_t outside;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "o", &outside),
                     0);
    struct store_cmd l = {.op = STORE_OP_LINK, .ino = outside, .parent = d,
                          .name = "hl", .name_len = 2};
    assert_int_equal(apply(f, &l).err, 0);
    assert_int_equal(attr_of(f, outside).gid, 1000);
    /* Without the bit: the creator's group. */
    assert_int_equal(setattr_mode(f, d, 0775), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, d, "plain", &x), 0);
    assert_int_equal(attr_of(f, x).gid, 1000);
    assert_int_equal(op(f, STORE_OP_MKDIR, d, "plaindir", &x), 0);
    assert_int_equal(attr_of(f, x).mode, 0644);
}

/* A write or truncate flagged STORE_KILL_PRIV (the caller lacks
 * CAP_FSETID) clears setuid, and setgid only with group-exec; without
 * the flag the bits stay. A chown of a non-directory clears them
 * whoever asks, even to the same owner; of a directory, never. */
static void test_kill_priv_on_write_truncate_chown(void **state)
{
    struct fixture *f = *state;
    uint64_t ino, d;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "s", &ino), 0);
    assert_int_equal(setattr_mode(f, ino, 06755), 0);
    assert_int_equal(wr(f, ino, 0, "a", 1, 0), 0);
    assert_int_equal(attr_of(f, ino).mode, 06755);
    assert_int_equal(wr(f, ino, 0, "a", 1, STORE_KILL_PRIV), 0);
    assert_int_equal(attr_of(f, ino).mode, 0755);
    /* setgid without group-exec stays (it marks locking, no privilege). */
    assert_int_equal(setattr_mode(f, ino, 06745), 0);
    assert_int_equal(wr(f, ino, 0, "", 0, STORE_APPEND | STORE_KILL_PRIV),
                     0);
    assert_int_equal(attr_of(f, ino).mode, 06745); /* Nothing written. */
    assert_int_equal(wr(f, ino, 0, "b", 1, STORE_APPEND | STORE_KILL_PRIV),
                     0);
    assert_int_equal(attr_of(f, ino).mode, 02745);
    /* A truncating write (O_TRUNC open) with nothing in it. */
    assert_int_equal(setattr_mode(f, ino, 06755), 0);
    assert_int_equal(wr(f, ino, 0, "", 0, STORE_TRUNC | STORE_KILL_PRIV), 0);
    assert_int_equal(attr_of(f, ino).mode, 0755);
    /* truncate(2). */
    assert_int_equal(setattr_mode(f, ino, 06755), 0);
    struct store_cmd t = {.op = STORE_OP_SETATTR, .ino = ino,
                          .valid = STORE_SET_SIZE, .size = 0};
    assert_int_equal(apply(f, &t).err, 0);
    assert_int_equal(attr_of(f, ino).mode, 06755);
    t.seq = 0;
    t.flags = STORE_KILL_PRIV;
    assert_int_equal(apply(f, &t).err, 0);
    assert_int_equal(attr_of(f, ino).mode, 0755);
    /* chown, to the same owner, without the flag. */
    assert_int_equal(setattr_mode(f, ino, 06755), 0);
    struct store_cmd o = {.op = STORE_OP_SETATTR, .ino = ino,
                          .valid = STORE_SET_UID, .uid = 1000};
    assert_int_equal(apply(f, &o).err, 0);
    assert_int_equal(attr_of(f, ino).mode, 0755);
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0);
    assert_int_equal(setattr_mode(f, d, 02755), 0);
    o.seq = 0;
    o.ino = d;
    o.valid = STORE_SET_GID;
    o.gid = 7;
    assert_int_equal(apply(f, &o).err, 0);
    assert_int_equal(attr_of(f, d).mode, 02755);
    /* A new file's own O_TRUNC does not clear what its creator chose;
     * data written into it does. */
    struct store_cmd c = {.op = STORE_OP_CREATE, .parent = STORE_ROOT_INO,
                          .name = "n", .name_len = 1, .mode = 04755,
                          .flags = STORE_TRUNC | STORE_KILL_PRIV};
    struct store_result r = apply(f, &c);
    assert_int_equal(r.err, 0);
    assert_int_equal(attr_of(f, r.ino).mode, 04755);
    struct store_cmd c2 = c;
    c2.seq = 0;
    c2.name = "m";
    c2.data = "x";
    c2.data_len = 1;
    r = apply(f, &c2);
    assert_int_equal(r.err, 0);
    assert_int_equal(attr_of(f, r.ino).mode, 0755);
}

/* UTIME_NOW (STORE_SET_*_NOW) takes the entry's own time, ignoring the
 * value carried along, so atime, mtime and ctime agree; explicit times
 * are applied as given; each alone leaves the other. */
static void test_utime_now_is_the_entry_time(void **state)
{
    struct fixture *f = *state;
    uint64_t ino;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "t", &ino), 0);
    struct store_cmd c = {.op = STORE_OP_SETATTR, .ino = ino,
                          .valid = STORE_SET_ATIME | STORE_SET_MTIME |
                                   STORE_SET_ATIME_NOW | STORE_SET_MTIME_NOW,
                          .atime_ns = 5, .mtime_ns = 6,
                          .time_ns = 777000};
    assert_int_equal(apply(f, &c).err, 0);
    struct store_attr a = attr_of(f, ino);
    assert_int_equal(a.atime_ns, 777000);
    assert_int_equal(a.mtime_ns, 777000);
    assert_int_equal(a.ctime_ns, 777000);
    struct store_cmd m = {.op = STORE_OP_SETATTR, .ino = ino,
                          .valid = STORE_SET_MTIME, .mtime_ns = 42,
                          .time_ns = 888000};
    assert_int_equal(apply(f, &m).err, 0);
    a = attr_of(f, ino);
    assert_int_equal(a.atime_ns, 777000);
    assert_int_equal(a.mtime_ns, 42);
    assert_int_equal(a.ctime_ns, 888000);
    struct store_cmd n = {.op = STORE_OP_SETATTR, .ino = ino,
                          .valid = STORE_SET_ATIME | STORE_SET_ATIME_NOW,
                          .time_ns = 999000};
    assert_int_equal(apply(f, &n).err, 0);
    a = attr_of(f, ino);
    assert_int_equal(a.atime_ns, 999000);
    assert_int_equal(a.mtime_ns, 42);
}

/* rename(RENAME_EXCHANGE) moves the ctime of both inodes (files in one
 * directory, and a file against a directory across directories). */
static void test_exchange_moves_both_ctimes(void **state)
{
    struct fixture *f = *state;
    uint64_t a, b, d, sub;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "a", &a), 0);
    assert_int_equal(op(f, STORE_OP_SYMLINK, STORE_ROOT_INO, "b", &b), 0);
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0);
    assert_int_equal(op(f, STORE_OP_MKDIR, d, "sub", &sub), 0);
    int64_t before = attr_of(f, a).ctime_ns;
    assert_int_equal(mv(f, STORE_ROOT_INO, "a", STORE_ROOT_INO, "b",
                        STORE_EXCHANGE), 0);
    int64_t now = attr_of(f, a).ctime_ns;
    assert_true(now > before);
    assert_int_equal(attr_of(f, b).ctime_ns, now);
    char buf[16];
    size_t len;
    assert_int_equal(store_readlink(f->s, NULL, b, buf, sizeof(buf), &len),
                     0);
    assert_int_equal(len, 6); /* The symlink's target survived. */
    assert_int_equal(mv(f, STORE_ROOT_INO, "b", d, "sub", STORE_EXCHANGE),
                     0);
    now = attr_of(f, a).ctime_ns;
    assert_int_equal(attr_of(f, sub).ctime_ns, now);
    assert_int_equal(attr_of(f, sub).parent, STORE_ROOT_INO);
}


/* ---- Conditional put and the change history --------------------------- */

static int put(struct fixture *f, uint64_t parent, const char *name,
               const char *data, bool cond, uint64_t rev, uint64_t *ino)
{
    struct store_cmd c = {.op = STORE_OP_PUT, .parent = parent, .name = name,
                          .name_len = (uint16_t)strlen(name), .mode = 0644,
                          .data = data, .data_len = (uint32_t)strlen(data),
                          .flags = cond ? STORE_IF_REVISION : 0,
                          .offset = rev};
    struct store_result r = apply(f, &c);
    if (ino != NULL) {
        *ino = r.ino;
    }
    return r.err;
}

static uint64_t revision_of(struct fixture *f, uint64_t ino)
{
    struct store_attr a;
    assert_int_equal(store_getattr(f->s, NULL, ino, &a), 0);
    return a.revision;
}

/* put replaces the whole content in one entry, only while the revision is
 * the one asked for (0: only a new name); a loser changes nothing. */
static void test_put_if_revision(void **state)
{
    struct fixture *f = *state;
    uint64_t x;
    assert_int_equal(put(f, STORE_ROOT_INO, "cfg", "first, long", true, 0,
                         &x), 0);
    uint64_t r1 = revision_of(f, x);
    assert_int_equal(put(f, STORE_ROOT_INO, "cfg", "again", true, 0, NULL),
                     ECANCELED);
    assert_int_equal(put(f, STORE_ROOT_INO, "cfg", "stale", true, r1 + 7,
                         NULL), ECANCELED);
    char buf[32];
    assert_int_equal(readf(f, x, 0, buf, sizeof(buf)), 11);
    assert_memory_equal(buf, "first, long", 11);
    assert_int_equal(revision_of(f, x), r1);
    /* The winner: shorter content, so the old tail must go. */
    assert_int_equal(put(f, STORE_ROOT_INO, "cfg", "two", true, r1, NULL), 0);
    assert_int_equal(readf(f, x, 0, buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "two", 3);
    assert_int_equal(revision_of(f, x), f->next - 1);
    /* The same revision again loses: it moved. */
    assert_int_equal(put(f, STORE_ROOT_INO, "cfg", "three", true, r1, NULL),
                     ECANCELED);
    assert_int_equal(put(f, STORE_ROOT_INO, "cfg", "free", false, 0, NULL), 0);
    assert_int_equal(readf(f, x, 0, buf, sizeof(buf)), 4);
    /* A missing name with a non-zero revision loses. */
    assert_int_equal(put(f, STORE_ROOT_INO, "none", "x", true, r1, NULL),
                     ECANCELED);
    assert_int_equal(lookup(f, STORE_ROOT_INO, "none"), 0);
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", NULL), 0);
    assert_int_equal(put(f, STORE_ROOT_INO, "d", "x", false, 0, NULL), EISDIR);
    assert_int_equal(op(f, STORE_OP_SYMLINK, STORE_ROOT_INO, "l", NULL), 0);
    assert_int_equal(put(f, STORE_ROOT_INO, "l", "x", false, 0, NULL), EINVAL);
}

struct seen {
    char text[2048];
    size_t len;
};

static int seen_one(void *arg, const struct store_change *ch)
{
    struct seen *w = arg;
    int n = snprintf(w->text + w->len, sizeof(w->text) - w->len,
                     "%llu %s %.*s", (unsigned long long)ch->revision,
                     store_change_name(ch->op), (int)ch->path_len, ch->path);
    w->len += (size_t)n;
    if (ch->path2 != NULL) {
        w->len += (size_t)snprintf(w->text + w->len,
                                   sizeof(w->text) - w->len, " %.*s",
                                   (int)ch->path2_len, ch->path2);
    }
    w->len += (size_t)snprintf(w->text + w->len, sizeof(w->text) - w->len,
                               "\n");
    return 0;
}

/* A session's end removes its ephemeral files in one entry: each removal is
 * in the history, at that entry's revision, so `raftfs watch` on a service
 * registry sees an entry go when its node dies. */
static void test_history_sees_ephemeral_removals(void **state)
{
    struct fixture *f = *state;
    uint64_t d;
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "reg", &d), 0);
    assert_int_equal(xset(f, d, STORE_EPHEMERAL_XATTR, "1", 1, 0), 0);
    assert_int_equal(sess_open(f, 3, 10, 2000), 0);
    assert_int_equal(create_as(f, d, "web-3", 3, 10), 0);
    assert_int_equal(create_as(f, d, "db-3", 3, 10), 0);
    rfs_index_t before = f->next - 1;
    assert_int_equal(sess_end(f, 3, 10), 0);
    rfs_index_t end = f->next - 1;
    struct seen w = {0};
    uint64_t upto = 0;
    assert_int_equal(store_history(f->s, before, seen_one, &w, &upto, NULL),
                     0);
    char want[200];
    /* In the order the session made them. */
    snprintf(want, sizeof(want),
             "%llu unlink /reg/web-3\n%llu unlink /reg/db-3\n",
             (unsigned long long)end, (unsigned long long)end);
    assert_string_equal(w.text, want);
    assert_int_equal(upto, end);
}

/* Each change is recorded with its revision and full path as the tree
 * stood before it, including by-inode changes and renamed ancestors. */
static void test_history_paths(void **state)
{
    struct fixture *f = *state;
    uint64_t d, x;
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0); /*1*/
    assert_int_equal(op(f, STORE_OP_MKDIR, d, "e", NULL), 0);            /*2*/
    uint64_t e = lookup(f, d, "e");
    assert_int_equal(op(f, STORE_OP_CREATE, e, "f", &x), 0);             /*3*/
    assert_int_equal(wr(f, x, 0, "abc", 3, 0), 0);                       /*4*/
    assert_int_equal(mv(f, d, "e", STORE_ROOT_INO, "g", 0), 0);          /*5*/
    assert_int_equal(wr(f, x, 0, "", 0, STORE_TRUNC), 0);                /*6*/
    assert_int_equal(link_at(f, x, STORE_ROOT_INO, "a"), 0);             /*7*/
    assert_int_equal(wr(f, x, 0, "z", 1, 0), 0); /* 8: first link, "a" */
    assert_int_equal(xset(f, x, "user.k", "v", 1, 0), 0);               /*9*/
    assert_int_equal(op(f, STORE_OP_UNLINK, STORE_ROOT_INO, "a", NULL),
                     0);                                                 /*10*/
    assert_int_equal(put(f, STORE_ROOT_INO, "p", "1", false, 0, NULL), 0);
    assert_int_equal(put(f, STORE_ROOT_INO, "p", "2", false, 0, NULL), 0);
    assert_int_equal(op(f, STORE_OP_UNLINK, STORE_ROOT_INO, "nope", NULL),
                     ENOENT); /* 13: refused, not recorded */
    assert_int_equal(op(f, STORE_OP_RMDIR, STORE_ROOT_INO, "d", NULL), 0);
    struct seen w = {0};
    uint64_t upto, first;
    assert_int_equal(store_history(f->s, 0, seen_one, &w, &upto, &first), 0);
    assert_int_equal(upto, 14);
    assert_int_equal(first, 0);
    assert_string_equal(w.text,
                        "1 mkdir /d\n"
                        "2 mkdir /d/e\n"
                        "3 create /d/e/f\n"
                        "4 write /d/e/f\n"
                        "5 rename /d/e /g\n"
                        "6 truncate /g/f\n"
                        "7 link /a\n"
                        "8 write /a\n"
                        "9 setxattr /a\n"
                        "10 unlink /a\n"
                        "11 create /p\n"
                        "12 write /p\n"
                        "14 rmdir /d\n");
    /* From a revision on; the future is refused. */
    memset(&w, 0, sizeof(w));
    assert_int_equal(store_history(f->s, 11, seen_one, &w, &upto, NULL), 0);
    assert_string_equal(w.text, "12 write /p\n14 rmdir /d\n");
    assert_int_equal(store_history(f->s, 15, seen_one, &w, &upto, NULL),
                     -EINVAL);
    char path[64];
    size_t len;
    assert_int_equal(store_path(f->s, NULL, x, path, sizeof(path), &len), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(path, "/g/f", 4);
    assert_int_equal(store_path(f->s, NULL, STORE_ROOT_INO, path, 1, &len), 0);
    assert_int_equal(store_path(f->s, NULL, x, path, 3, &len), -ENAMETOOLONG);
    /* A name replaced by a rename no longer names its old file, which
     * keeps its other name. */
    uint64_t y, z;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "y", &y), 0);
    assert_int_equal(link_at(f, y, STORE_ROOT_INO, "b"), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "z", &z), 0);
    assert_int_equal(mv(f, STORE_ROOT_INO, "z", STORE_ROOT_INO, "b", 0), 0);
    assert_int_equal(store_path(f->s, NULL, y, path, sizeof(path), &len), 0);
    assert_int_equal(len, 2);
    assert_memory_equal(path, "/y", 2);
    assert_int_equal(store_path(f->s, NULL, z, path, sizeof(path), &len), 0);
    assert_int_equal(len, 2);
    assert_memory_equal(path, "/b", 2);
}

/* The history keeps the last history_entries entries: older revisions
 * are reported compacted, the kept ones listed. A store that installed a
 * snapshot starts its history there, and its paths still resolve. */
static void test_history_bounds_and_snapshot(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    struct store_options o;
    store_options_default(&o);
    o.history_entries = 5;
    char msg[RFS_ERRMSG_SZ];
    assert_int_equal(store_open(f->dir, &o, &f->s, msg), 0);
    uint64_t d;
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0);
    for (int i = 0; i < 9; i++) {
        char name[8];
        snprintf(name, sizeof(name), "f%d", i);
        assert_int_equal(op(f, STORE_OP_CREATE, d, name, NULL), 0);
    }
    struct seen w = {0};
    uint64_t upto, first;
    assert_int_equal(store_history(f->s, 4, seen_one, &w, &upto, &first),
                     RFS_ECOMPACTED);
    assert_int_equal(first, 5);
    assert_int_equal(store_history(f->s, 5, seen_one, &w, &upto, &first), 0);
    assert_string_equal(w.text, "6 create /d/f4\n7 create /d/f5\n"
                                "8 create /d/f6\n9 create /d/f7\n"
                                "10 create /d/f8\n");
    /* Only the kept records are stored. */
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(
        f->s->db, f->s->ro, f->s->cf[CF_HISTORY]);
    int n = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        n++;
    }
    rocksdb_iter_destroy(it);
    assert_int_equal(n, 5);

    char img[700];
    snprintf(img, sizeof(img), "%s/../h.img", f->dir);
    rfs_index_t idx;
    uint64_t size;
    assert_int_equal(store_snapshot_write(f->s, img, &idx, &size), 0);
    struct fixture g = {0};
    snprintf(g.dir, sizeof(g.dir), "%.200s2", f->dir);
    assert_int_equal(store_open(g.dir, NULL, &g.s, msg), 0);
    struct store_snap_meta meta = {.index = idx, .term = 1, .size = size,
                                   .conf = {(void *)"c", 1}};
    assert_int_equal(store_snapshot_install(g.s, img, &meta), 0);
    g.next = idx + 1;
    g.seq = f->seq; /* The same client: its session came with the image. */
    assert_int_equal(store_history(g.s, idx - 1, seen_one, &w, &upto, &first),
                     RFS_ECOMPACTED);
    assert_int_equal(first, idx);
    uint64_t x = lookup(&g, d, "f3");
    assert_int_equal(wr(&g, x, 0, "q", 1, 0), 0);
    memset(&w, 0, sizeof(w));
    assert_int_equal(store_history(g.s, idx, seen_one, &w, &upto, NULL), 0);
    assert_string_equal(w.text, "11 write /d/f3\n");
    store_close(g.s);
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g.dir);
    assert_int_equal(system(cmd), 0);
}

/* A store made before the links existed gets them at open, and its
 * history starts at its applied index. */
static void test_links_built_at_open(void **state)
{
    struct fixture *f = *state;
    uint64_t d, x;
    assert_int_equal(op(f, STORE_OP_MKDIR, STORE_ROOT_INO, "d", &d), 0);
    assert_int_equal(op(f, STORE_OP_CREATE, d, "x", &x), 0);
    /* Forget them, as an older build never wrote them. */
    char *err = NULL;
    uint8_t lo[1] = {0}, hi[300];
    memset(hi, 0xff, sizeof(hi));
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    rocksdb_writebatch_delete_range_cf(b, f->s->cf[CF_LINKS], (char *)lo, 0,
                                       (char *)hi, sizeof(hi));
    rocksdb_writebatch_delete_cf(b, f->s->cf[CF_META], "links", 5);
    rocksdb_writebatch_delete_cf(b, f->s->cf[CF_META], "hist_from", 9);
    rocksdb_write(f->s->db, f->s->wo_sync, b, &err);
    rocksdb_writebatch_destroy(b);
    assert_null(err);
    char path[64];
    size_t len;
    assert_int_equal(store_path(f->s, NULL, x, path, sizeof(path), &len),
                     -ENOENT);
    store_close(f->s);
    char msg[RFS_ERRMSG_SZ];
    assert_int_equal(store_open(f->dir, NULL, &f->s, msg), 0);
    assert_int_equal(store_path(f->s, NULL, x, path, sizeof(path), &len), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(path, "/d/x", 4);
    struct seen w = {0};
    uint64_t upto, first;
    assert_int_equal(store_history(f->s, 1, seen_one, &w, &upto, &first),
                     RFS_ECOMPACTED);
    assert_int_equal(first, 2);
}

/* ---- Locks ---- */

/* A lock request from (client, boot), owner, as the next entry. */
static struct store_result lk(struct fixture *f, rfs_nodeid_t client,
                              uint64_t boot, uint64_t owner, uint8_t kind,
                              uint8_t type, uint64_t start, uint64_t end,
                              bool wait)
{
    struct store_cmd c = {.op = STORE_OP_LOCK, .client = client,
                          .boot = boot, .seq = ++f->seq, .ino = 0,
                          .parent = owner, .valid = kind, .mode = type,
                          .offset = start, .size = end, .uid = 42,
                          .flags = wait ? STORE_LK_WAIT : 0};
    c.ino = f->lk_ino;
    return apply(f, &c);
}

/* The table of the fixture's file, as "H/W owner type start-end" words. */
static void lk_dump(struct fixture *f, char *out, size_t cap)
{
    struct store_lock *v;
    size_t n;
    assert_int_equal(store_lock_list(f->s, f->lk_ino, &v, &n), 0);
    out[0] = '\0';
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(out + len, cap - len, "%s%c%llu%c%llu-%lld",
                                i ? " " : "", v[i].waiting ? 'W' : 'H',
                                (unsigned long long)v[i].owner,
                                v[i].type == STORE_LK_WR ? 'w' : 'r',
                                (unsigned long long)v[i].start,
                                v[i].end == STORE_LK_EOF
                                    ? -1LL
                                    : (long long)v[i].end);
    }
    rfs_free(v);
}

static void lk_file(struct fixture *f)
{
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, "lk", &f->lk_ino),
                     0);
}

/* A flock request numbered `order` by its node (see "Order" in store.h). */
static struct store_result lko(struct fixture *f, rfs_nodeid_t client,
                               uint64_t owner, uint8_t type, uint64_t order,
                               bool wait)
{
    struct store_cmd c = {.op = STORE_OP_LOCK, .client = client, .boot = 1,
                          .seq = ++f->seq, .ino = f->lk_ino, .parent = owner,
                          .valid = STORE_LK_FLOCK, .mode = type,
                          .size = STORE_LK_EOF, .uid = 42,
                          .new_parent = order,
                          .flags = wait ? STORE_LK_WAIT : 0};
    return apply(f, &c);
}

/* An unlock that reaches the log after its owner's next lock (the node
 * sent both without waiting) leaves that lock, and a waiter it queued,
 * alone; an unlock without an order ends everything, as before. */
static void test_lock_unlock_keeps_later_lock(void **state)
{
    struct fixture *f = *state;
    lk_file(f);
    char t[512];
    assert_int_equal(lko(f, 1, 10, STORE_LK_WR, 1, false).err, 0);
    /* Owner 10: unlock (order 2) and relock (3), the relock first. */
    assert_int_equal(lko(f, 1, 10, STORE_LK_WR, 3, false).err, 0);
    assert_int_equal(lko(f, 1, 10, STORE_LK_UN, 2, false).err, 0);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H10w0--1");
    assert_int_equal(lko(f, 2, 20, STORE_LK_WR, 1, false).err, EAGAIN);
    /* Its own later unlock does end it. */
    assert_int_equal(lko(f, 1, 10, STORE_LK_UN, 4, false).err, 0);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "");
    /* Shared with owner 20; owner 10 unlocks (6) and asks for exclusive
     * (7), which queues behind 20 and lands first: the late unlock ends
     * the shared hold and keeps the waiter, which 20's unlock grants. */
    assert_int_equal(lko(f, 1, 10, STORE_LK_RD, 5, false).err, 0);
    assert_int_equal(lko(f, 2, 20, STORE_LK_RD, 2, false).err, 0);
    assert_int_equal(lko(f, 1, 10, STORE_LK_WR, 7, true).err, EINPROGRESS);
    assert_int_equal(lko(f, 1, 10, STORE_LK_UN, 6, false).err, 0);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H20r0--1 W10w0--1");
    struct store_result r = lko(f, 2, 20, STORE_LK_UN, 3, false);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.granted, 1);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H10w0--1");
    /* No order (an older build's entry): the unlock ends it all. */
    assert_int_equal(lko(f, 1, 10, STORE_LK_UN, 0, false).err, 0);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "");
}

/* How many records of the lock table start with letter c. */
static int lk_keys(struct fixture *f, char c)
{
    int n = 0;
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(f->s->db, f->s->ro, f->s->cf[CF_LOCKS]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen;
        const char *k = rocksdb_iter_key(it, &klen);
        n += klen > 0 && k[0] == c;
    }
    rocksdb_iter_destroy(it);
    return n;
}

/* A cancel of the owner's request N (Ctrl-C) that applies after the
 * owner's request N+1 queued drops N's waiter only, not N+1's. */
static void test_lock_cancel_keeps_later_waiter(void **state)
{
    struct fixture *f = *state;
    lk_file(f);
    char t[512];
    assert_int_equal(lko(f, 2, 20, STORE_LK_WR, 1, false).err, 0);
    assert_int_equal(lko(f, 1, 10, STORE_LK_WR, 1, true).err, EINPROGRESS);
    assert_int_equal(lko(f, 1, 10, STORE_LK_RD, 2, true).err, EINPROGRESS);
    struct store_cmd c = {.op = STORE_OP_LOCK_CANCEL, .client = 1, .boot = 1,
                          .seq = ++f->seq, .ino = f->lk_ino, .parent = 10,
                          .valid = STORE_LK_FLOCK, .new_parent = 1};
    assert_int_equal(apply(f, &c).err, 0);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H20w0--1 W10r0--1");
    /* Again: request 1 waits no more, and 2 is not its to drop. */
    c.seq = ++f->seq;
    assert_int_equal(apply(f, &c).err, ENOENT);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H20w0--1 W10r0--1");
    /* The cancel of request 2 does drop it. */
    c.seq = ++f->seq;
    c.new_parent = 2;
    assert_int_equal(apply(f, &c).err, 0);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H20w0--1");
}

/* A lock request that applies after a later unlock or cancel of its owner
 * (its caller timed out or was interrupted, then released) is refused
 * with EINTR: it neither holds nor waits, so nothing is left held that
 * nobody will release. Other owners, and later requests, are not
 * touched; the session's end removes what the store kept for it. */
static void test_lock_late_after_unlock_refused(void **state)
{
    struct fixture *f = *state;
    lk_file(f);
    char t[512];
    /* Request 1 timed out at its caller, which unlocked (2). */
    assert_int_equal(lko(f, 1, 10, STORE_LK_UN, 2, false).err, 0);
    assert_int_equal(lko(f, 1, 10, STORE_LK_WR, 1, false).err, EINTR);
    assert_int_equal(lko(f, 1, 10, STORE_LK_WR, 2, true).err, EINTR);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "");
    /* Another owner, even of the same node, with an older order. */
    assert_int_equal(lko(f, 1, 11, STORE_LK_RD, 1, false).err, 0);
    /* The owner's later request. */
    assert_int_equal(lko(f, 1, 10, STORE_LK_RD, 3, false).err, 0);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H10r0--1 H11r0--1");
    /* A cancel counts too: request 5 waits, is cancelled, and an older
     * request (4) that applies after the cancel does not queue. */
    assert_int_equal(lko(f, 2, 20, STORE_LK_WR, 5, true).err, EINPROGRESS);
    struct store_cmd c = {.op = STORE_OP_LOCK_CANCEL, .client = 2, .boot = 1,
                          .seq = ++f->seq, .ino = f->lk_ino, .parent = 20,
                          .valid = STORE_LK_FLOCK, .new_parent = 5};
    assert_int_equal(apply(f, &c).err, 0);
    assert_int_equal(lko(f, 2, 20, STORE_LK_WR, 4, true).err, EINTR);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H10r0--1 H11r0--1");
    /* Without an order (an older build's entry) nothing is refused. */
    assert_int_equal(lko(f, 1, 10, STORE_LK_RD, 0, false).err, 0);
    /* Node 1's new boot ends its session: its 'U' records go with it,
     * so the next boot's request 1 (orders start again) is granted. */
    assert_int_equal(lk_keys(f, 'U'), 2);
    struct store_cmd nb = {.op = STORE_OP_NOOP, .client = 1, .boot = 2,
                           .seq = 1};
    assert_int_equal(apply(f, &nb).err, 0);
    assert_int_equal(lk_keys(f, 'U'), 1); /* Node 2's stays. */
    nb.client = 2;
    assert_int_equal(apply(f, &nb).err, 0);
    assert_int_equal(lk_keys(f, 'U'), 0);
}

/* A flock request of client 1's owner, with its own seq and the lowest
 * seq its node still had outstanding; its unlocks ask for their record to
 * be forgotten (as every member at protocol level 2 sends them) unless
 * lkx_keep is set (an unlock sent while a member is older). */
static bool lkx_keep;
static int lkx(struct fixture *f, uint64_t owner, uint8_t type,
               uint64_t order, uint64_t seq, uint64_t fo)
{
    struct store_cmd c = {.op = STORE_OP_LOCK, .client = 1, .boot = 1,
                          .seq = seq, .first_outstanding = fo,
                          .ino = f->lk_ino, .parent = owner,
                          .valid = STORE_LK_FLOCK, .mode = type,
                          .size = STORE_LK_EOF, .uid = 42,
                          .new_parent = order};
    if (type == STORE_LK_UN && !lkx_keep) {
        c.flags = STORE_LK_FORGET;
    }
    return apply(f, &c).err;
}

/* An unlock's 'U' record goes once its node answered the unlock (its
 * first outstanding seq moved past it): a request its caller gave up on
 * was sent before the unlock, so by then it applied or never will. Each
 * open file ever flocked and closed left one until its node's session
 * ended. */
static void test_lock_unlock_record_forgotten(void **state)
{
    struct fixture *f = *state;
    lk_file(f);
    /* Lock 1 timed out at its caller, which unlocked (2). */
    assert_int_equal(lkx(f, 10, STORE_LK_UN, 2, 2, 1), 0);
    assert_int_equal(lk_keys(f, 'U'), 1);
    assert_int_equal(lkx(f, 10, STORE_LK_WR, 1, 1, 1), EINTR);
    assert_int_equal(lk_keys(f, 'U'), 1); /* 2 is still outstanding. */
    assert_int_equal(lkx(f, 11, STORE_LK_RD, 3, 3, 3), 0);
    assert_int_equal(lk_keys(f, 'U'), 0);
    assert_int_equal(lk_keys(f, 'V'), 0);
    /* A later unlock of the owner raises the record: forgetting the
     * first leaves it, forgetting the second removes it. */
    assert_int_equal(lkx(f, 10, STORE_LK_UN, 4, 4, 4), 0);
    assert_int_equal(lkx(f, 10, STORE_LK_UN, 5, 5, 4), 0);
    assert_int_equal(lkx(f, 11, STORE_LK_UN, 6, 6, 5), 0);
    assert_int_equal(lk_keys(f, 'U'), 2); /* Owners 10 and 11. */
    assert_int_equal(lkx(f, 12, STORE_LK_RD, 7, 7, 7), 0);
    assert_int_equal(lk_keys(f, 'U'), 0);
    /* An unlock that forgets the owner's previous one in its own entry
     * keeps the record it raises. */
    assert_int_equal(lkx(f, 10, STORE_LK_UN, 8, 8, 8), 0);
    assert_int_equal(lkx(f, 10, STORE_LK_UN, 9, 9, 9), 0);
    assert_int_equal(lk_keys(f, 'U'), 1);
    assert_int_equal(lkx(f, 10, STORE_LK_WR, 8, 10, 9), EINTR);
    assert_int_equal(lk_keys(f, 'V'), 1);
    assert_int_equal(lkx(f, 13, STORE_LK_RD, 11, 11, 11), 0);
    assert_int_equal(lk_keys(f, 'U'), 0);
    assert_int_equal(lk_keys(f, 'V'), 0);
    /* An unlock that does not ask (a member of an older build would keep
     * its record: every node must) keeps it until the session ends. */
    lkx_keep = true;
    assert_int_equal(lkx(f, 10, STORE_LK_UN, 12, 12, 12), 0);
    assert_int_equal(lkx(f, 13, STORE_LK_RD, 13, 13, 13), 0);
    assert_int_equal(lk_keys(f, 'U'), 1);
    assert_int_equal(lkx(f, 10, STORE_LK_WR, 12, 14, 14), EINTR);
    lkx_keep = false;
}

/* POSIX ranges of one owner split, merge, upgrade and downgrade; other
 * owners conflict only where they overlap and one side is exclusive. */
static void test_lock_ranges(void **state)
{
    struct fixture *f = *state;
    lk_file(f);
    char t[512];
    assert_int_equal(lk(f, 1, 1, 10, STORE_LK_POSIX, STORE_LK_WR, 0, 99,
                        false).err, 0);
    /* Unlock the middle: two pieces. */
    assert_int_equal(lk(f, 1, 1, 10, STORE_LK_POSIX, STORE_LK_UN, 40, 59,
                        false).err, 0);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H10w0-39 H10w60-99");
    /* Another owner (another node) fits in the hole, not beside it. */
    assert_int_equal(lk(f, 2, 1, 10, STORE_LK_POSIX, STORE_LK_WR, 40, 59,
                        false).err, 0);
    assert_int_equal(lk(f, 2, 1, 11, STORE_LK_POSIX, STORE_LK_RD, 39, 39,
                        false).err, EAGAIN);
    /* Downgrade part of owner 10's range to shared: a reader may share
     * it; a writer may not. */
    assert_int_equal(lk(f, 1, 1, 10, STORE_LK_POSIX, STORE_LK_RD, 0, 19,
                        false).err, 0);
    assert_int_equal(lk(f, 3, 1, 5, STORE_LK_POSIX, STORE_LK_RD, 10, 15,
                        false).err, 0);
    assert_int_equal(lk(f, 3, 1, 6, STORE_LK_POSIX, STORE_LK_WR, 10, 10,
                        false).err, EAGAIN);
    /* Touching ranges of one type merge; flock is a separate space. */
    assert_int_equal(lk(f, 2, 1, 10, STORE_LK_POSIX, STORE_LK_WR, 100, 200,
                        false).err, 0);
    assert_int_equal(lk(f, 3, 1, 7, STORE_LK_FLOCK, STORE_LK_WR, 0, 0,
                        false).err, 0);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H10r0-19 H10w20-39 H10w60-99 H10w40-59 "
                           "H10w100-200 H5r10-15 H7w0--1");
    /* EOF-open range, and a bad one. */
    assert_int_equal(lk(f, 4, 1, 1, STORE_LK_POSIX, STORE_LK_RD, 300,
                        STORE_LK_EOF, false).err, 0);
    assert_int_equal(lk(f, 4, 1, 1, STORE_LK_POSIX, STORE_LK_RD, 9, 3,
                        false).err, EINVAL);
    assert_int_equal(lk(f, 4, 1, 1, 9, STORE_LK_RD, 0, 3, false).err, EINVAL);
    f->lk_ino = 999999;
    assert_int_equal(lk(f, 4, 1, 1, STORE_LK_FLOCK, STORE_LK_RD, 0, 0,
                        false).err, ESTALE);
}

/* Waiters are granted in arrival order by the entry that frees them, with
 * that entry's index as the token; a cancel removes only a waiter. */
static void test_lock_queue_and_cancel(void **state)
{
    struct fixture *f = *state;
    lk_file(f);
    char t[512];
    assert_int_equal(lk(f, 1, 1, 1, STORE_LK_FLOCK, STORE_LK_WR, 0, 0,
                        false).err, 0);
    assert_int_equal(lk(f, 2, 1, 2, STORE_LK_FLOCK, STORE_LK_WR, 0, 0,
                        false).err, EAGAIN);
    assert_int_equal(lk(f, 2, 1, 2, STORE_LK_FLOCK, STORE_LK_WR, 0, 0,
                        true).err, EINPROGRESS);
    assert_int_equal(lk(f, 3, 1, 3, STORE_LK_FLOCK, STORE_LK_RD, 0, 0,
                        true).err, EINPROGRESS);
    assert_int_equal(lk(f, 3, 1, 4, STORE_LK_FLOCK, STORE_LK_RD, 0, 0,
                        true).err, EINPROGRESS);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H1w0--1 W2w0--1 W3r0--1 W4r0--1");
    /* The holder unlocks: the first waiter (exclusive) gets it, the
     * readers behind it stay queued. */
    rfs_index_t at = f->next;
    struct store_result r = lk(f, 1, 1, 1, STORE_LK_FLOCK, STORE_LK_UN, 0,
                               0, false);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.granted, 1);
    struct store_lock *v;
    size_t n;
    assert_int_equal(store_lock_list(f->s, f->lk_ino, &v, &n), 0);
    assert_int_equal(v[0].owner, 2);
    assert_false(v[0].waiting);
    assert_int_equal(v[0].revision, at); /* The fencing token. */
    rfs_free(v);
    /* Owner 3 gives up (Ctrl-C): a cancel; a second finds nothing. */
    struct store_cmd c = {.op = STORE_OP_LOCK_CANCEL, .client = 3, .boot = 1,
                          .seq = ++f->seq, .ino = f->lk_ino, .parent = 3,
                          .valid = STORE_LK_FLOCK};
    assert_int_equal(apply(f, &c).err, 0);
    c.seq = ++f->seq;
    assert_int_equal(apply(f, &c).err, ENOENT);
    /* Owner 2 unlocks: only owner 4's reader is left to grant. */
    r = lk(f, 2, 1, 2, STORE_LK_FLOCK, STORE_LK_UN, 0, 0, false);
    assert_int_equal(r.granted, 1);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H4r0--1");
    /* Survives a snapshot round trip (the table is replicated state). */
    char img[700];
    snprintf(img, sizeof(img), "%s/../locks.img", f->dir);
    rfs_index_t idx;
    uint64_t size;
    assert_int_equal(store_snapshot_write(f->s, img, &idx, &size), 0);
    assert_int_equal(lk(f, 4, 1, 4, STORE_LK_FLOCK, STORE_LK_UN, 0, 0,
                        false).err, 0);
    struct store_snap_meta meta = {.index = idx, .term = 1, .size = size};
    assert_int_equal(store_snapshot_install(f->s, img, &meta), 0);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H4r0--1");
}

/* A client's new boot ends its old boot's session: its locks go, its
 * waiters too, and the next waiter of another client is granted. */
static void test_lock_drop_session(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(sess_open(f, 6, 1, 5000), 0);
    lk_file(f);
    char t[512];
    assert_int_equal(lk(f, 5, 1, 1, STORE_LK_POSIX, STORE_LK_WR, 0, 9,
                        false).err, 0);
    assert_int_equal(lk(f, 6, 1, 1, STORE_LK_POSIX, STORE_LK_WR, 0, 9,
                        true).err, EINPROGRESS);
    assert_int_equal(lk(f, 5, 1, 2, STORE_LK_POSIX, STORE_LK_WR, 5, 5,
                        true).err, EINPROGRESS);
    /* Client 5 restarts: any command of its new boot ends boot 1. */
    struct store_cmd c = {.op = STORE_OP_NOOP, .client = 5, .boot = 2,
                          .seq = 1};
    struct store_result r = apply(f, &c);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.granted, 1);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H1w0-9");
    struct store_lock *v;
    size_t n;
    assert_int_equal(store_lock_list(f->s, f->lk_ino, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].client, 6);
    rfs_free(v);
    /* A SESSION_END entry (the TTL ran out) drops client 6's lock too,
     * and a late request of that session gets ENOLCK. */
    assert_int_equal(sess_end(f, 6, 1), 0);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "");
    assert_int_equal(lk(f, 6, 1, 1, STORE_LK_POSIX, STORE_LK_WR, 0, 9,
                        false).err, ENOLCK);
}

/* A POSIX write lock of bytes start..end of file ino, from owner on node
 * client (boot 1), blocking (F_SETLKW) unless flags say otherwise. */
static int lkp(struct fixture *f, uint64_t ino, rfs_nodeid_t client,
               uint64_t owner, uint8_t type, uint64_t start, uint64_t end,
               uint32_t flags)
{
    struct store_cmd c = {.op = STORE_OP_LOCK, .client = client, .boot = 1,
                          .seq = ++f->seq, .ino = ino, .parent = owner,
                          .valid = STORE_LK_POSIX, .mode = type,
                          .offset = start, .size = end, .uid = 42,
                          .flags = flags};
    return apply(f, &c).err;
}

static uint64_t lk_new_file(struct fixture *f, const char *name)
{
    uint64_t ino;
    assert_int_equal(op(f, STORE_OP_CREATE, STORE_ROOT_INO, name, &ino), 0);
    return ino;
}

#define W STORE_LK_WAIT

/* Two processes on two nodes (the same owner id on each: owners are
 * node, boot and owner) each hold a range and ask for the other's: the
 * second request closes the cycle and fails with EDEADLK, leaving the
 * table as it was; the first still waits and gets the range when the
 * second unlocks. */
static void test_lock_deadlock_two_nodes(void **state)
{
    struct fixture *f = *state;
    lk_file(f);
    uint64_t x = f->lk_ino;
    char t[512];
    assert_int_equal(lkp(f, x, 1, 7, STORE_LK_WR, 0, 9, W), 0);
    assert_int_equal(lkp(f, x, 2, 7, STORE_LK_WR, 10, 19, W), 0);
    assert_int_equal(lkp(f, x, 1, 7, STORE_LK_WR, 10, 19, W), EINPROGRESS);
    assert_int_equal(lkp(f, x, 2, 7, STORE_LK_WR, 0, 9, W), EDEADLK);
    assert_int_equal(lkp(f, x, 2, 7, STORE_LK_RD, 5, 5, W), EDEADLK);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H7w0-9 H7w10-19 W7w10-19");
    /* Without F_SETLKW it is the usual EAGAIN. */
    assert_int_equal(lkp(f, x, 2, 7, STORE_LK_WR, 0, 9, 0), EAGAIN);
    /* Another process of node 2, holding nothing, just waits. */
    assert_int_equal(lkp(f, x, 2, 8, STORE_LK_WR, 0, 9, W), EINPROGRESS);
    /* Node 2's owner 7 unlocks: node 1's owner 7 gets 10..19. */
    struct store_cmd c = {.op = STORE_OP_LOCK, .client = 2, .boot = 1,
                          .seq = ++f->seq, .ino = x, .parent = 7,
                          .valid = STORE_LK_POSIX, .mode = STORE_LK_UN,
                          .offset = 10, .size = 19};
    struct store_result r = apply(f, &c);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.granted, 1);
    lk_dump(f, t, sizeof(t));
    assert_string_equal(t, "H7w0-19 W8w0-9");
}

/* Three owners on three nodes and three files: A holds a, B b, C c. A
 * waits for b; C asks for a and waits too (C -> A -> B: no cycle); B
 * asks for c: B -> C -> A -> B, EDEADLK. A cycle through a waiter that
 * was cancelled (Ctrl-C) is gone with it. */
static void test_lock_deadlock_three_nodes(void **state)
{
    struct fixture *f = *state;
    uint64_t a = lk_new_file(f, "a"), b = lk_new_file(f, "b"),
             c = lk_new_file(f, "c");
    assert_int_equal(lkp(f, a, 1, 1, STORE_LK_WR, 0, 0, W), 0);
    assert_int_equal(lkp(f, b, 2, 1, STORE_LK_RD, 0, 0, W), 0);
    assert_int_equal(lkp(f, c, 3, 1, STORE_LK_WR, 0, STORE_LK_EOF, W), 0);
    assert_int_equal(lkp(f, b, 1, 1, STORE_LK_WR, 0, 0, W), EINPROGRESS);
    assert_int_equal(lkp(f, a, 3, 1, STORE_LK_RD, 0, 0, W), EINPROGRESS);
    assert_int_equal(lkp(f, c, 2, 1, STORE_LK_WR, 50, 60, W), EDEADLK);
    /* C gives up its wait on a: no cycle left, B waits. */
    struct store_cmd k = {.op = STORE_OP_LOCK_CANCEL, .client = 3, .boot = 1,
                          .seq = ++f->seq, .ino = a, .parent = 1,
                          .valid = STORE_LK_POSIX};
    assert_int_equal(apply(f, &k).err, 0);
    assert_int_equal(lkp(f, c, 2, 1, STORE_LK_WR, 50, 60, W), EINPROGRESS);
    /* D, another process on C's node, waits on a too: D -> A -> B -> C,
     * and C waits for nothing. (D's waiter also puts a waiter on the
     * requested file in the next walk, which reads that file's waiters
     * from memory and the others' from the table.) */
    assert_int_equal(lkp(f, a, 3, 2, STORE_LK_RD, 0, 0, W), EINPROGRESS);
    /* C asks for a again: a is A's, who waits on b, B's, who waits on c,
     * C's: now C's request closes the cycle. */
    assert_int_equal(lkp(f, a, 3, 1, STORE_LK_RD, 0, 0, W), EDEADLK);
    /* The verdict is read from the replicated table: a snapshot round
     * trip gives the same. */
    char img[700];
    snprintf(img, sizeof(img), "%s/../dl.img", f->dir);
    rfs_index_t idx;
    uint64_t size;
    assert_int_equal(store_snapshot_write(f->s, img, &idx, &size), 0);
    assert_int_equal(lkp(f, b, 1, 1, STORE_LK_UN, 0, 0, 0), 0);
    struct store_snap_meta meta = {.index = idx, .term = 1, .size = size};
    assert_int_equal(store_snapshot_install(f->s, img, &meta), 0);
    f->next = idx + 1; /* The log goes on from the image. */
    assert_int_equal(lkp(f, a, 3, 1, STORE_LK_RD, 0, 0, W), EDEADLK);
    /* Node 1 restarts: its session's holds and waits go, and with them
     * the cycle; C's request waits no more: a is free. */
    struct store_cmd n = {.op = STORE_OP_NOOP, .client = 1, .boot = 2,
                          .seq = 1};
    assert_int_equal(apply(f, &n).err, 0);
    assert_int_equal(lkp(f, a, 3, 1, STORE_LK_RD, 0, 0, W), 0);
}

/* As Linux: flock(2) and OFD locks are not checked, and an OFD waiter
 * does not carry the walk (it is no process's wait). */
static void test_lock_deadlock_not_flock_ofd(void **state)
{
    struct fixture *f = *state;
    uint64_t a = lk_new_file(f, "a"), b = lk_new_file(f, "b");
    /* flock: two owners on two nodes deadlock, both queued. */
    struct store_cmd c = {.op = STORE_OP_LOCK, .client = 1, .boot = 1,
                          .ino = a, .parent = 1, .valid = STORE_LK_FLOCK,
                          .mode = STORE_LK_WR, .size = STORE_LK_EOF,
                          .flags = W};
    c.seq = ++f->seq;
    assert_int_equal(apply(f, &c).err, 0);
    c = (struct store_cmd){.op = STORE_OP_LOCK, .client = 2, .boot = 1,
                           .ino = b, .parent = 1, .valid = STORE_LK_FLOCK,
                           .mode = STORE_LK_WR, .size = STORE_LK_EOF,
                           .flags = W, .seq = ++f->seq};
    assert_int_equal(apply(f, &c).err, 0);
    c.ino = a;
    c.seq = ++f->seq;
    assert_int_equal(apply(f, &c).err, EINPROGRESS);
    c.client = 1;
    c.ino = b;
    c.seq = ++f->seq;
    assert_int_equal(apply(f, &c).err, EINPROGRESS);
    /* OFD: the same cycle of POSIX ranges, asked as OFD locks. */
    const uint32_t O = STORE_LK_OFD;
    assert_int_equal(lkp(f, a, 1, 5, STORE_LK_WR, 0, 9, W | O), 0);
    assert_int_equal(lkp(f, a, 2, 5, STORE_LK_WR, 10, 19, W | O), 0);
    assert_int_equal(lkp(f, a, 1, 5, STORE_LK_WR, 10, 19, W | O),
                     EINPROGRESS);
    assert_int_equal(lkp(f, a, 2, 5, STORE_LK_WR, 0, 9, W | O), EINPROGRESS);
    /* A process lock whose cycle runs through an OFD waiter: B (a
     * process) holds 100, the OFD owner 6 holds 200 and waits for 100;
     * B asks for 200: not found, as on Linux. */
    assert_int_equal(lkp(f, a, 2, 9, STORE_LK_WR, 100, 100, W), 0);
    assert_int_equal(lkp(f, a, 1, 6, STORE_LK_WR, 200, 200, W | O), 0);
    assert_int_equal(lkp(f, a, 1, 6, STORE_LK_WR, 100, 100, W | O),
                     EINPROGRESS);
    assert_int_equal(lkp(f, a, 2, 9, STORE_LK_WR, 200, 200, W), EINPROGRESS);
    /* The same as process locks is found. */
    assert_int_equal(lkp(f, a, 2, 10, STORE_LK_WR, 300, 300, W), 0);
    assert_int_equal(lkp(f, a, 1, 11, STORE_LK_WR, 400, 400, W), 0);
    assert_int_equal(lkp(f, a, 1, 11, STORE_LK_WR, 300, 300, W),
                     EINPROGRESS);
    assert_int_equal(lkp(f, a, 2, 10, STORE_LK_WR, 400, 400, W), EDEADLK);
}

/* The walk is bounded (STORE_LK_DL_DEPTH owners deep): a cycle of that
 * many waiting owners besides the requester is found, one more is not
 * (the request waits, as Linux's after its 10 steps). */
static void test_lock_deadlock_bound(void **state)
{
    struct fixture *f = *state;
    lk_file(f);
    uint64_t x = f->lk_ino;
    /* Owner i holds byte i, then waits for byte i + 1 (owner i + 1's). */
    const int n = STORE_LK_DL_DEPTH + 2;
    for (int i = 0; i < n; i++) {
        assert_int_equal(lkp(f, x, (rfs_nodeid_t)(1 + i % 3),
                             (uint64_t)(100 + i), STORE_LK_WR, (uint64_t)i,
                             (uint64_t)i, W), 0);
    }
    for (int i = 1; i < n - 1; i++) {
        assert_int_equal(lkp(f, x, (rfs_nodeid_t)(1 + i % 3),
                             (uint64_t)(100 + i), STORE_LK_WR,
                             (uint64_t)i + 1, (uint64_t)i + 1, W),
                         EINPROGRESS);
    }
    /* Owner 0 asks for byte 1: 1 waits on 2 ... n-2 waits on n-1, who
     * waits for nothing: no cycle. */
    assert_int_equal(lkp(f, x, 1, 100, STORE_LK_WR, 1, 1, W), EINPROGRESS);
    /* n-2 asks for byte 0: 0 -> 1 -> ... -> n-3 -> n-2, a cycle through
     * n - 2 = STORE_LK_DL_DEPTH waiting owners: found. */
    assert_int_equal(lkp(f, x, (rfs_nodeid_t)(1 + (n - 2) % 3),
                         (uint64_t)(100 + n - 2), STORE_LK_WR, 0, 0, W),
                     EDEADLK);
    /* n-1 asks for byte 0: a cycle through n - 1 waiting owners: past the
     * bound, the request waits. */
    assert_int_equal(lkp(f, x, (rfs_nodeid_t)(1 + (n - 1) % 3),
                         (uint64_t)(100 + n - 1), STORE_LK_WR, 0, 0, W),
                     EINPROGRESS);
}

#undef W

/* Lock records with their holder: "REV op node/boot/owner kind type
 * grant cause" per line, other changes as seen_one. */
static int seen_lock(void *arg, const struct store_change *ch)
{
    struct seen *w = arg;
    if (ch->op != STORE_CH_LOCK && ch->op != STORE_CH_UNLOCK) {
        return seen_one(arg, ch);
    }
    const struct store_lock *h = &ch->holder;
    w->len += (size_t)snprintf(
        w->text + w->len, sizeof(w->text) - w->len,
        "%llu %s %.*s %llu/%llu/%llu %c%c %llu %d\n",
        (unsigned long long)ch->revision, store_change_name(ch->op),
        (int)ch->path_len, ch->path, (unsigned long long)h->client,
        (unsigned long long)h->boot, (unsigned long long)h->owner,
        h->kind == STORE_LK_FLOCK ? 'f' : 'p',
        h->type == STORE_LK_WR ? 'w' : 'r', (unsigned long long)h->revision,
        ch->lock_cause);
    return 0;
}

/* The history records each grant (at the entry that asked, or at the one
 * that freed a queued waiter, after the release that made room) and each
 * whole release with its cause, so that a checker (the chaos run) can
 * replay who held a lock when; waits, cancels, refusals and partial
 * unlocks record nothing. */
static void test_history_records_locks(void **state)
{
    struct fixture *f = *state;
    lk_file(f);
    rfs_index_t before = f->next - 1;
    rfs_index_t r1 = f->next;
    assert_int_equal(lk(f, 1, 1, 11, STORE_LK_FLOCK, STORE_LK_WR, 0, 0,
                        false).err, 0);
    assert_int_equal(lk(f, 2, 1, 22, STORE_LK_FLOCK, STORE_LK_WR, 0, 0,
                        false).err, EAGAIN);
    assert_int_equal(lk(f, 2, 1, 22, STORE_LK_FLOCK, STORE_LK_WR, 0, 0,
                        true).err, EINPROGRESS);
    assert_int_equal(lk(f, 3, 1, 33, STORE_LK_FLOCK, STORE_LK_RD, 0, 0,
                        true).err, EINPROGRESS);
    struct store_cmd c = {.op = STORE_OP_LOCK_CANCEL, .client = 3, .boot = 1,
                          .seq = ++f->seq, .ino = f->lk_ino, .parent = 33,
                          .valid = STORE_LK_FLOCK};
    assert_int_equal(apply(f, &c).err, 0);
    rfs_index_t r5 = f->next;
    assert_int_equal(lk(f, 1, 1, 11, STORE_LK_FLOCK, STORE_LK_UN, 0, 0,
                        false).err, 0);
    /* Client 2 restarts: its new boot's first entry ends boot 1. */
    rfs_index_t r6 = f->next;
    struct store_cmd nb = {.op = STORE_OP_NOOP, .client = 2, .boot = 2,
                           .seq = 1};
    assert_int_equal(apply(f, &nb).err, 0);
    rfs_index_t r7 = f->next;
    assert_int_equal(lk(f, 4, 1, 44, STORE_LK_POSIX, STORE_LK_WR, 0, 99,
                        false).err, 0);
    assert_int_equal(lk(f, 4, 1, 44, STORE_LK_POSIX, STORE_LK_UN, 40, 59,
                        false).err, 0);
    struct seen w = {0};
    uint64_t upto = 0;
    assert_int_equal(store_history(f->s, before, seen_lock, &w, &upto, NULL),
                     0);
    char want[600];
    snprintf(want, sizeof(want),
             "%llu lock /lk 1/1/11 fw %llu 0\n"
             "%llu unlock /lk 1/1/11 fw %llu 1\n"
             "%llu lock /lk 2/1/22 fw %llu 0\n"
             "%llu unlock /lk 2/1/22 fw %llu 2\n"
             "%llu lock /lk 4/1/44 pw %llu 0\n",
             (unsigned long long)r1, (unsigned long long)r1,
             (unsigned long long)r5, (unsigned long long)r1,
             (unsigned long long)r5, (unsigned long long)r5,
             (unsigned long long)r6, (unsigned long long)r5,
             (unsigned long long)r7, (unsigned long long)r7);
    assert_string_equal(w.text, want);
}

int main(int argc, char **argv)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_log_write_load_truncate),
        T(test_session_open_end_fence),
        T(test_ephemeral_files_go_with_session),
        T(test_sessions_in_snapshot),
        T(test_lock_unlock_keeps_later_lock),
        T(test_lock_cancel_keeps_later_waiter),
        T(test_lock_late_after_unlock_refused),
        T(test_lock_unlock_record_forgotten),
        T(test_lock_ranges),
        T(test_lock_queue_and_cancel),
        T(test_lock_drop_session),
        T(test_lock_deadlock_two_nodes),
        T(test_lock_deadlock_three_nodes),
        T(test_lock_deadlock_not_flock_ofd),
        T(test_lock_deadlock_bound),
        T(test_history_records_locks),
        T(test_log_corrupt_record_detected),
        T(test_log_corrupt_file_detected),
        T(test_create_write_read),
        T(test_create_fused_with_write),
        T(test_proposer_chosen_ino),
        T(test_write_chunks_holes_truncate),
        T(test_sparse_file),
        T(test_efbig),
        T(test_orphans),
        T(test_append_at_apply_time),
        T(test_dirs_and_errnos),
        T(test_symlink_and_readdir),
        T(test_readdir_order_and_resume),
        T(test_readdir_damaged_entry),
        T(test_rename_corner_cases),
        T(test_rename_directory_with_descendants),
        T(test_setattr),
        T(test_duplicate_request_applied_once),
        T(test_duplicate_of_lowest_outstanding),
        T(test_forget_skips_no_later_tombstones),
        T(test_reapply_after_restart_is_idempotent),
        T(test_boot_counter_grows_across_reopen),
        T(test_boot_counter_migrates_above_old_ids),
        T(test_view_is_point_in_time),
        T(test_malformed_command),
        T(test_snapshot_meta_bytes),
        T(test_snapshot_roundtrip),
        T(test_mknod_types_and_rdev),
        T(test_link_counts_names),
        T(test_link_errors),
        T(test_rename_and_links),
        T(test_links_and_nodes_apply_deterministically),
        T(test_chain_follows_apply),
        T(test_xattrs),
        T(test_xattrs_go_with_last_name),
        T(test_caps_go_with_writes),
        T(test_acl_format_is_checked),
        T(test_acl_and_mode_agree),
        T(test_acl_perm_grants),
        T(test_acl_default_inherited),
        T(test_xattrs_in_snapshot),
        T(test_setgid_directory_hands_down_its_group),
        T(test_kill_priv_on_write_truncate_chown),
        T(test_utime_now_is_the_entry_time),
        T(test_exchange_moves_both_ctimes),
        T(test_put_if_revision),
        T(test_history_paths),
        T(test_history_sees_ephemeral_removals),
        T(test_history_bounds_and_snapshot),
        T(test_links_built_at_open),
    };
#undef T
    if (argc > 1) {
        cmocka_set_test_filter(argv[1]);
    }
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
