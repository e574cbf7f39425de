/*
 * Tests of consensus/snapfiles.c on a real RocksDB store in a temporary
 * folder: an image taken on one node is received in chunks and installed
 * on another, and a batch retried after ENOSPC (which holds chunks of an
 * image already installed) does not rebuild a partial receiving.img.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "../../../common/heap.h"
#include "../../../consensus/snapfiles.h"

struct fix {
    char top[64];
    char a[128], b[128];
    struct store *sa, *sb;
    struct snapfiles fa, fb;
};

static struct store *open_store(const char *dir)
{
    char db[256], err[RFS_ERRMSG_SZ];
    snprintf(db, sizeof(db), "%s/db", dir);
    mkdir(dir, 0700);
    struct store_options so;
    store_options_default(&so);
    struct store *s;
    assert_int_equal(store_open(db, &so, &s, err), 0);
    return s;
}

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    snprintf(f->top, sizeof(f->top), "/tmp/raftfs-snapfiles-XXXXXX");
    assert_non_null(mkdtemp(f->top));
    snprintf(f->a, sizeof(f->a), "%s/a", f->top);
    snprintf(f->b, sizeof(f->b), "%s/b", f->top);
    f->sa = open_store(f->a);
    f->sb = open_store(f->b);
    char err[RFS_ERRMSG_SZ];
    assert_int_equal(snapfiles_init(&f->fa, f->a, err), 0);
    assert_int_equal(snapfiles_init(&f->fb, f->b, err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    store_close(f->sa);
    store_close(f->sb);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->top);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static bool exists(const char *dir, const char *name)
{
    char p[300];
    snprintf(p, sizeof(p), "%s/snapshots/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* Take an image on a, send it to b in three chunks; then the same batch's
 * last two chunks again, as a retry after ENOSPC would. */
static void test_snapfiles_receive_retry_is_idempotent(void **state)
{
    struct fix *f = *state;
    struct cons_entry e[3];
    for (unsigned i = 0; i < 3; i++) {
        e[i] = (struct cons_entry){.term = 1, .index = i + 1,
                                   .type = CONS_ENTRY_NOOP};
    }
    assert_int_equal(store_apply(f->sa, e, 3, NULL), 0);
    rfs_index_t idx;
    uint64_t size;
    char err[RFS_ERRMSG_SZ];
    assert_int_equal(snapfiles_take(&f->fa, f->sa, &idx, &size, NULL, err), 0);
    assert_int_equal(idx, 3);
    assert_true(exists(f->a, "snap-3.img"));
    assert_false(exists(f->a, "taking.img"));

    uint8_t *img = malloc(size);
    assert_int_equal(snapfiles_read(&f->fa, idx, 0, img, size), 0);
    struct cons_snap_meta meta = {.index = idx, .term = 1, .size = size};
    uint64_t third = size / 3;
    uint64_t cuts[4] = {0, third, 2 * third, size};
    for (int round = 0; round < 2; round++) {
        for (int k = round; k < 3; k++) {
            int rv = snapfiles_receive(&f->fb, f->sb, &meta, cuts[k],
                                       img + cuts[k], cuts[k + 1] - cuts[k],
                                       k == 2, false, err);
            assert_int_equal(rv, 0);
        }
        /* Installed, kept under its name, no leftover. */
        assert_int_equal(store_applied(f->sb), 3);
        assert_true(exists(f->b, "snap-3.img"));
        assert_false(exists(f->b, "receiving.img"));
    }
    free(img);
    /* An old image goes once a newer one is recorded. */
    snapfiles_drop(&f->fb, 3);
    assert_false(exists(f->b, "snap-3.img"));
}

static void touch(const char *dir, const char *name)
{
    char p[300];
    snprintf(p, sizeof(p), "%s/snapshots/%s", dir, name);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fclose(fp);
}

/* Installing an image deletes every other image (the node's previous one,
 * one installed earlier in a merged batch), but not a taking.img that a
 * snapshot may be writing; at start every file but the recorded image
 * goes. */
static void test_snapfiles_install_and_start_sweep(void **state)
{
    struct fix *f = *state;
    struct cons_entry e[2];
    for (unsigned i = 0; i < 2; i++) {
        e[i] = (struct cons_entry){.term = 1, .index = i + 1,
                                   .type = CONS_ENTRY_NOOP};
    }
    assert_int_equal(store_apply(f->sa, e, 2, NULL), 0);
    rfs_index_t idx;
    uint64_t size;
    char err[RFS_ERRMSG_SZ];
    assert_int_equal(snapfiles_take(&f->fa, f->sa, &idx, &size, NULL, err), 0);
    uint8_t *img = malloc(size);
    assert_int_equal(snapfiles_read(&f->fa, idx, 0, img, size), 0);
    touch(f->b, "snap-1.img"); /* b's previous snapshot. */
    touch(f->b, "taking.img");
    struct cons_snap_meta meta = {.index = idx, .term = 1, .size = size};
    assert_int_equal(snapfiles_receive(&f->fb, f->sb, &meta, 0, img, size,
                                       true, false, err),
                     0);
    free(img);
    assert_true(exists(f->b, "snap-2.img"));
    assert_false(exists(f->b, "snap-1.img"));
    assert_true(exists(f->b, "taking.img"));
    touch(f->b, "snap-7.img"); /* Newer, unrecorded: a crash's leftover. */
    touch(f->b, "receiving.img");
    assert_int_equal(snapfiles_sweep(&f->fb, 2, true), 3);
    assert_true(exists(f->b, "snap-2.img"));
    assert_false(exists(f->b, "taking.img"));
    assert_false(exists(f->b, "receiving.img"));
    assert_false(exists(f->b, "snap-7.img"));
}

/* Not an image: refused with the file named. */
static void test_snapfiles_restore_refuses_other_files(void **state)
{
    struct fix *f = *state;
    char junk[200], err[RFS_ERRMSG_SZ];
    snprintf(junk, sizeof(junk), "%s/junk", f->top);
    FILE *fp = fopen(junk, "w");
    fputs("hello", fp);
    fclose(fp);
    struct cons_snap_meta meta = {0};
    assert_int_equal(snapfiles_restore(&f->fb, f->sb, junk, &meta, err),
                     -EINVAL);
    assert_non_null(strstr(err, "junk"));
}

/* The store keeps the configuration as the core's encoding: it comes back
 * as it went in through the store, and bytes that are not a configuration
 * are reported as damage (a node refuses to start on them). */
static void test_snapfiles_meta_through_store(void **state)
{
    struct fix *f = *state;
    struct cons_snap_meta m = {.index = 1, .term = 4, .size = 10};
    m.conf.n = 2;
    m.conf.servers[0] = (struct cons_server){
        .id = 7, .role = CONS_VOTER, .addr = "h:7"};
    m.conf.servers[1] = (struct cons_server){
        .id = 9, .role = CONS_LEARNER, .addr = "h:9"};
    struct store_snap_meta sm;
    assert_int_equal(snapfiles_meta_to_store(&m, &sm), 0);
    assert_int_equal(store_snapshot_meta_put(f->sa, &sm), 0);
    rfs_free(sm.conf.base);
    struct store_loaded l;
    assert_int_equal(store_load(f->sa, &l), 0);
    struct cons_snap_meta got;
    assert_int_equal(snapfiles_meta_from_store(&l.snap, &got), 0);
    assert_int_equal(got.index, 1);
    assert_int_equal(got.term, 4);
    assert_int_equal(got.size, 10);
    assert_int_equal(got.conf.n, 2);
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(got.conf.servers[i].id, m.conf.servers[i].id);
        assert_int_equal(got.conf.servers[i].role, m.conf.servers[i].role);
        assert_string_equal(got.conf.servers[i].addr, m.conf.servers[i].addr);
    }
    store_loaded_free(&l);

    /* No snapshot recorded: an empty configuration, not damage. */
    struct store_snap_meta none = {0};
    assert_int_equal(snapfiles_meta_from_store(&none, &got), 0);
    assert_int_equal(got.conf.n, 0);
    /* A record whose configuration does not decode, empty ones included. */
    struct store_snap_meta bad = {.index = 1, .conf = {(void *)"\2\0", 2}};
    assert_int_equal(snapfiles_meta_from_store(&bad, &got), RFS_ECORRUPT);
    bad.conf.len = 0;
    assert_int_equal(snapfiles_meta_from_store(&bad, &got), RFS_ECORRUPT);
}

/* What a voter's statement needs of an image it took: its BLAKE2b-256
 * (hashed as it was written) equals the hash of the file, and its chain is
 * the store's at the image's index. The statement is kept beside the image
 * (snap-I.stmt, read back whole), survives a sweep that keeps its image,
 * and goes with the image (snapfiles_drop, or a sweep keeping another). */
static void test_snapfiles_statement_beside_image(void **state)
{
    struct fix *f = *state;
    struct cons_entry e[4];
    for (unsigned i = 0; i < 4; i++) {
        e[i] = (struct cons_entry){.term = 2, .index = i + 1,
                                   .type = CONS_ENTRY_NOOP};
    }
    assert_int_equal(store_apply(f->sa, e, 4, NULL), 0);
    rfs_index_t idx;
    uint64_t size;
    char err[RFS_ERRMSG_SZ];
    struct store_snap_sums sums;
    memset(&sums, 0xaa, sizeof(sums));
    assert_int_equal(snapfiles_take(&f->fa, f->sa, &idx, &size, &sums, err),
                     0);
    assert_int_equal(idx, 4);
    uint8_t *img = malloc(size);
    assert_int_equal(snapfiles_read(&f->fa, idx, 0, img, size), 0);
    uint8_t h[32];
    crypto_generichash(h, sizeof(h), img, size, NULL, 0);
    free(img);
    assert_memory_equal(h, sums.image, sizeof(h));
    rfs_index_t at;
    uint8_t chain[STORE_CHAIN_BYTES];
    assert_int_equal(store_chain(f->sa, &at, chain), 0);
    assert_int_equal(at, 4);
    assert_true(sums.chain_known);
    assert_memory_equal(chain, sums.chain, sizeof(chain));

    const char stmt[] = "a statement, opaque here";
    assert_int_equal(snapfiles_stmt_put(&f->fa, idx, stmt, sizeof(stmt),
                                        err),
                     0);
    assert_true(exists(f->a, "snap-4.stmt"));
    assert_false(exists(f->a, "stmt.tmp"));
    char back[64];
    size_t len = 0;
    assert_int_equal(snapfiles_stmt_get(&f->fa, idx, back, sizeof(back),
                                        &len),
                     0);
    assert_int_equal(len, sizeof(stmt));
    assert_memory_equal(back, stmt, sizeof(stmt));
    assert_int_equal(snapfiles_stmt_get(&f->fa, idx, back, 4, &len), -EFBIG);
    assert_int_equal(snapfiles_stmt_get(&f->fa, 9, back, sizeof(back), &len),
                     -ENOENT);
    assert_int_equal(snapfiles_sweep(&f->fa, idx, true), 0);
    assert_true(exists(f->a, "snap-4.stmt"));
    snapfiles_drop(&f->fa, idx);
    assert_false(exists(f->a, "snap-4.img"));
    assert_false(exists(f->a, "snap-4.stmt"));
    touch(f->a, "snap-4.img");
    touch(f->a, "snap-4.stmt");
    assert_int_equal(snapfiles_sweep(&f->fa, 5, false), 2);
    assert_false(exists(f->a, "snap-4.stmt"));
}

/* A peer's image (fetched chunk by chunk) and a leader's snapshot arriving
 * at the same time each fill their own file: the leader's first chunk
 * does not truncate the half-fetched image, and the fetched image then
 * installs. When both wrote receiving.img, the install found a mixed file
 * (a damaged checksum), and a failed install stops the node. */
static void test_snapfiles_fetch_and_leader_apart(void **state)
{
    struct fix *f = *state;
    struct cons_entry e[6];
    for (unsigned i = 0; i < 6; i++) {
        e[i] = (struct cons_entry){.term = 1, .index = i + 1,
                                   .type = CONS_ENTRY_NOOP};
    }
    char err[RFS_ERRMSG_SZ];
    rfs_index_t i3, i6;
    uint64_t s3, s6;
    assert_int_equal(store_apply(f->sa, e, 3, NULL), 0);
    assert_int_equal(snapfiles_take(&f->fa, f->sa, &i3, &s3, NULL, err), 0);
    assert_int_equal(store_apply(f->sa, e + 3, 3, NULL), 0);
    assert_int_equal(snapfiles_take(&f->fa, f->sa, &i6, &s6, NULL, err), 0);
    uint8_t *img3 = malloc(s3), *img6 = malloc(s6);
    assert_int_equal(snapfiles_read(&f->fa, 3, 0, img3, s3), 0);
    assert_int_equal(snapfiles_read(&f->fa, 6, 0, img6, s6), 0);
    uint64_t half = s3 / 2;
    assert_int_equal(snapfiles_receive_part(&f->fb, 0, img3, half, err), 0);
    struct cons_snap_meta m6 = {.index = 6, .term = 1, .size = s6};
    assert_int_equal(snapfiles_receive(&f->fb, f->sb, &m6, 0, img6, 16,
                                       false, false, err),
                     0);
    assert_int_equal(snapfiles_receive_part(&f->fb, half, img3 + half,
                                            s3 - half, err),
                     0);
    struct cons_snap_meta m3 = {.index = 3, .term = 1, .size = s3};
    int rv = snapfiles_receive(&f->fb, f->sb, &m3, s3, NULL, 0, true, true,
                               err);
    if (rv != 0) {
        fprintf(stderr, "install refused: %s\n", err);
    }
    assert_int_equal(rv, 0);
    assert_int_equal(store_applied(f->sb), 3);
    free(img3);
    free(img6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_snapfiles_receive_retry_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapfiles_fetch_and_leader_apart,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_snapfiles_restore_refuses_other_files, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_snapfiles_install_and_start_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_snapfiles_meta_through_store, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_snapfiles_statement_beside_image, setup, teardown),
    };
    return cmocka_run_group_tests_name("snapfiles", tests, NULL, NULL);
}
