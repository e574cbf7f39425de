/*
 * Unit tests of the wire format: every message type survives a round trip,
 * frames come out whole however the bytes are split, and each kind of
 * malformed input is refused without reading out of bounds or allocating
 * what a stranger asks for.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../common/err.h"
#include "../../../common/heap.h"
#include "../../../consensus/wire.h"

static struct cons_snap_meta meta;

static struct cons_msg sample(uint8_t type, struct cons_entry *ents)
{
    struct cons_msg m = {.type = type, .from = 3, .to = 1, .term = 9,
                         .prev_index = 41, .prev_term = 8, .commit = 40,
                         .reject = true, .index = 77, .hint_index = 12,
                         .hint_term = 4, .round = 5, .ctx = 0xdeadbeefULL,
                         .transfer = true, .hops = 2, .offset = 4096,
                         .last = true, .lease_seq = 0xabcdef,
                         .lease_ticks = 200};
    ents[0] = (struct cons_entry){.term = 8, .index = 42,
                                  .type = CONS_ENTRY_NORMAL,
                                  .data = {(void *)"hello", 5}};
    ents[1] = (struct cons_entry){.term = 9, .index = 43,
                                  .type = CONS_ENTRY_NOOP};
    m.entries = ents;
    m.n_entries = 2;
    memset(&meta, 0, sizeof(meta));
    meta.index = 40;
    meta.term = 8;
    meta.size = 1234;
    meta.conf.n = 1;
    meta.conf.servers[0].id = 3;
    meta.conf.servers[0].role = CONS_VOTER;
    strcpy(meta.conf.servers[0].addr, "127.0.0.1:7003");
    m.snap = &meta;
    m.data.base = (void *)"chunk";
    m.data.len = 5;
    return m;
}

/* Every field of every message type comes back as it was sent. */
static void test_wire_roundtrip_all_types(void **state)
{
    (void)state;
    for (uint8_t t = 1; t < CONS_MSG_TYPE_MAX; t++) {
        struct cons_entry ents[2];
        struct cons_msg m = sample(t, ents);
        struct rfs_buf b;
        assert_int_equal(wire_msg_encode(&m, &b), 0);
        struct cons_msg d;
        assert_int_equal(wire_msg_decode(b.base, b.len, &d), 0);
        assert_int_equal(d.type, t);
        assert_int_equal(d.from, 3);
        assert_int_equal(d.term, 9);
        assert_int_equal(d.prev_index, 41);
        assert_int_equal(d.commit, 40);
        assert_true(d.reject && d.transfer && d.last);
        assert_int_equal(d.hint_term, 4);
        assert_int_equal(d.ctx, 0xdeadbeefULL);
        assert_int_equal(d.hops, 2);
        assert_int_equal(d.offset, 4096);
        assert_int_equal(d.lease_seq, 0xabcdef);
        assert_int_equal(d.lease_ticks, 200);
        assert_int_equal(d.n_entries, 2);
        assert_memory_equal(d.entries[0].data.base, "hello", 5);
        assert_int_equal(d.entries[1].type, CONS_ENTRY_NOOP);
        assert_non_null(d.snap);
        assert_int_equal(d.snap->size, 1234);
        assert_string_equal(d.snap->conf.servers[0].addr, "127.0.0.1:7003");
        assert_memory_equal(d.data.base, "chunk", 5);
        wire_msg_free(&d);
        rfs_free(b.base);
    }
}

/* A minimal message (no entries, no snapshot, no data) round-trips too. */
static void test_wire_minimal_message(void **state)
{
    (void)state;
    struct cons_msg m = {.type = CONS_MSG_HEARTBEAT, .from = 1, .to = 2,
                         .term = 3};
    struct rfs_buf b;
    assert_int_equal(wire_msg_encode(&m, &b), 0);
    struct cons_msg d;
    assert_int_equal(wire_msg_decode(b.base, b.len, &d), 0);
    assert_int_equal(d.n_entries, 0);
    assert_null(d.snap);
    assert_int_equal(d.data.len, 0);
    /* Every shorter prefix is refused. */
    for (size_t k = 0; k < b.len; k++) {
        assert_int_equal(wire_msg_decode(b.base, k, &d), RFS_EMALFORMED);
    }
    rfs_free(b.base);
}

/* Counts and lengths that do not fit the body are refused, not trusted. */
static void test_wire_refuses_lying_lengths(void **state)
{
    (void)state;
    struct cons_entry ents[2];
    struct cons_msg m = sample(CONS_MSG_APPEND, ents);
    struct rfs_buf b;
    assert_int_equal(wire_msg_encode(&m, &b), 0);
    uint8_t *p = b.base;
    struct cons_msg d;
    /* Entry count claims four billion entries. */
    uint8_t save[4];
    memcpy(save, p + 103, 4);
    memset(p + 103, 0xff, 4);
    assert_int_equal(wire_msg_decode(p, b.len, &d), RFS_EMALFORMED);
    memcpy(p + 103, save, 4);
    /* First entry's data length runs past the end. */
    memset(p + 107 + 17, 0xff, 4);
    assert_int_equal(wire_msg_decode(p, b.len, &d), RFS_EMALFORMED);
    rfs_free(b.base);
    /* Bad type, bad flag bits. */
    struct cons_msg h = {.type = CONS_MSG_HEARTBEAT, .from = 1, .to = 2};
    assert_int_equal(wire_msg_encode(&h, &b), 0);
    p = b.base;
    p[0] = 0;
    assert_int_equal(wire_msg_decode(p, b.len, &d), RFS_EMALFORMED);
    p[0] = CONS_MSG_TYPE_MAX;
    assert_int_equal(wire_msg_decode(p, b.len, &d), RFS_EMALFORMED);
    p[0] = CONS_MSG_HEARTBEAT;
    p[49] = 0x80;
    assert_int_equal(wire_msg_decode(p, b.len, &d), RFS_EMALFORMED);
    rfs_free(b.base);
}

static size_t frame(uint8_t type, const char *body, uint8_t *out)
{
    size_t len = strlen(body);
    wire_frame_header(type, body, (uint32_t)len, out);
    memcpy(out + WIRE_HDR, body, len);
    return WIRE_HDR + len;
}

/* Frames come out whole whether bytes arrive one at a time or many frames
 * at once. */
static void test_wire_reader_reassembles(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t n = frame(WIRE_RAFT, "first", buf);
    n += frame(WIRE_HELLO, "second frame", buf + n);
    struct wire_reader r;
    wire_reader_init(&r);
    struct wire_frame f;
    int got = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(wire_reader_feed(&r, buf + i, 1), 0);
        int rv;
        while ((rv = wire_reader_next(&r, &f)) == 1) {
            got++;
            if (got == 1) {
                assert_int_equal(f.type, WIRE_RAFT);
                assert_memory_equal(f.body, "first", 5);
            } else {
                assert_int_equal(f.len, 12);
            }
        }
        assert_int_equal(rv, 0);
    }
    assert_int_equal(got, 2);
    assert_int_equal(wire_reader_feed(&r, buf, n), 0);
    assert_int_equal(wire_reader_next(&r, &f), 1);
    assert_int_equal(wire_reader_next(&r, &f), 1);
    assert_int_equal(wire_reader_next(&r, &f), 0);
    wire_reader_close(&r);
}

/* A stranger is refused at its first bytes; a flipped bit, a huge length,
 * an unknown version are refused, and the refusal sticks. */
static void test_wire_reader_refuses_garbage(void **state)
{
    (void)state;
    struct wire_reader r;
    struct wire_frame f;
    wire_reader_init(&r);
    assert_int_equal(wire_reader_feed(&r, "GET ", 4), 0);
    assert_int_equal(wire_reader_next(&r, &f), RFS_EMALFORMED);
    assert_non_null(strstr(r.errmsg, "magic"));
    assert_int_equal(wire_reader_feed(&r, "x", 1), RFS_EMALFORMED);
    wire_reader_close(&r);

    uint8_t buf[64];
    size_t n = frame(WIRE_RAFT, "payload", buf);
    buf[WIRE_HDR + 2] ^= 1;
    wire_reader_init(&r);
    wire_reader_feed(&r, buf, n);
    assert_int_equal(wire_reader_next(&r, &f), RFS_EMALFORMED);
    assert_non_null(strstr(r.errmsg, "checksum"));
    wire_reader_close(&r);

    n = frame(WIRE_RAFT, "payload", buf);
    buf[8] = 0xff;
    buf[9] = 0xff;
    buf[10] = 0xff;
    buf[11] = 0x7f; /* 2 GiB body: refused before any allocation. */
    wire_reader_init(&r);
    wire_reader_feed(&r, buf, WIRE_HDR);
    assert_int_equal(wire_reader_next(&r, &f), RFS_EMALFORMED);
    assert_true(r.cap < 64 * 1024);
    wire_reader_close(&r);

    n = frame(WIRE_RAFT, "payload", buf);
    buf[4] = 2;
    wire_reader_init(&r);
    wire_reader_feed(&r, buf, n);
    assert_int_equal(wire_reader_next(&r, &f), RFS_EMALFORMED);
    assert_non_null(strstr(r.errmsg, "version"));
    wire_reader_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_roundtrip_all_types),
        cmocka_unit_test(test_wire_minimal_message),
        cmocka_unit_test(test_wire_refuses_lying_lengths),
        cmocka_unit_test(test_wire_reader_reassembles),
        cmocka_unit_test(test_wire_reader_refuses_garbage),
    };
    return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
