/*
 * Unit tests of peer authentication and frame encryption: a handshake
 * between holders of the secret opens the channel; a stranger, a wrong
 * secret, the wrong node, or any altered, replayed or reordered frame is
 * refused.
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

#include "../../../common/err.h"
#include "../../../consensus/secure.h"
#include "../../../consensus/wire.h"

static uint8_t secret_a[SECURE_KEY_BYTES], secret_b[SECURE_KEY_BYTES];

static int group_setup(void **state)
{
    (void)state;
    if (secure_global_init() != 0) {
        return -1;
    }
    memset(secret_a, 0xa5, sizeof(secret_a));
    memset(secret_b, 0x5a, sizeof(secret_b));
    return 0;
}

/* Run the handshake between c and s; returns the first failure or 0. */
static int shake(struct secure *c, const uint8_t *cs, rfs_nodeid_t expect,
                 struct secure *s, const uint8_t *ss)
{
    struct secure_out co, so;
    secure_init(c, true, 1, expect, cs, &co);
    secure_init(s, false, 2, 0, ss, &so);
    assert_int_equal(so.type, 0);
    int rv = secure_handshake(s, co.type, co.body, co.len, &so);
    if (rv != 0) {
        return rv;
    }
    rv = secure_handshake(c, so.type, so.body, so.len, &co);
    if (rv != 0) {
        return rv;
    }
    rv = secure_handshake(s, co.type, co.body, co.len, &so);
    if (rv != 0) {
        return rv;
    }
    return secure_handshake(c, so.type, so.body, so.len, &co);
}

/* Two holders of the secret open a channel both ways. */
static void test_secure_handshake_and_frames(void **state)
{
    (void)state;
    struct secure c, s;
    assert_int_equal(shake(&c, secret_a, 2, &s, secret_a), 0);
    assert_int_equal(c.state, SECURE_OPEN);
    assert_int_equal(s.state, SECURE_OPEN);
    assert_int_equal(s.peer, 1);
    uint8_t sealed[64], plain[64];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(secure_seal(&c, "vote for me", 11, sealed), 0);
        assert_int_equal(secure_open(&s, sealed, 11 + SECURE_OVERHEAD, plain),
                         0);
        assert_memory_equal(plain, "vote for me", 11);
        assert_int_equal(secure_seal(&s, "granted", 7, sealed), 0);
        assert_int_equal(secure_open(&c, sealed, 7 + SECURE_OVERHEAD, plain),
                         0);
        assert_memory_equal(plain, "granted", 7);
    }
    secure_close(&c);
    secure_close(&s);
}

/* A node with another cluster's secret is found out by both sides. */
static void test_secure_wrong_secret_refused(void **state)
{
    (void)state;
    struct secure c, s;
    /* The client checks the server first... */
    assert_int_equal(shake(&c, secret_b, 2, &s, secret_a), RFS_EAUTH);
    assert_int_equal(c.state, SECURE_FAILED);
    assert_non_null(strstr(c.why, "cluster secret"));
    /* ...and a client that ignores that and sends a proof anyway fails on
     * the server's side. */
    struct secure_out co, so;
    secure_init(&c, true, 1, 2, secret_b, &co);
    secure_init(&s, false, 2, 0, secret_a, &so);
    assert_int_equal(secure_handshake(&s, co.type, co.body, co.len, &so), 0);
    uint8_t forged[SECURE_MAC_BYTES + 24];
    memset(forged, 7, sizeof(forged));
    assert_int_equal(secure_handshake(&s, WIRE_AUTH, forged, sizeof(forged),
                                      &so),
                     RFS_EAUTH);
    assert_non_null(strstr(s.why, "cluster secret"));
    assert_int_not_equal(s.state, SECURE_OPEN);
    uint8_t out[8];
    assert_int_equal(secure_seal(&s, "x", 1, out), RFS_EAUTH);
}

/* Reaching the wrong node (an address now used by another member) fails. */
static void test_secure_wrong_peer_refused(void **state)
{
    (void)state;
    struct secure c, s;
    assert_int_equal(shake(&c, secret_a, 3, &s, secret_a), RFS_EAUTH);
    assert_non_null(strstr(s.why, "wanted node 3"));
}

/* Altered, replayed and reordered frames are refused. */
static void test_secure_tamper_replay_reorder(void **state)
{
    (void)state;
    struct secure c, s;
    uint8_t a[64], b[64], plain[64];
    assert_int_equal(shake(&c, secret_a, 2, &s, secret_a), 0);
    assert_int_equal(secure_seal(&c, "append", 6, a), 0);
    a[3] ^= 1;
    assert_int_equal(secure_open(&s, a, 6 + SECURE_OVERHEAD, plain),
                     RFS_EAUTH);

    assert_int_equal(shake(&c, secret_a, 2, &s, secret_a), 0);
    assert_int_equal(secure_seal(&c, "append", 6, a), 0);
    assert_int_equal(secure_open(&s, a, 6 + SECURE_OVERHEAD, plain), 0);
    assert_int_equal(secure_open(&s, a, 6 + SECURE_OVERHEAD, plain),
                     RFS_EAUTH);

    assert_int_equal(shake(&c, secret_a, 2, &s, secret_a), 0);
    assert_int_equal(secure_seal(&c, "first", 5, a), 0);
    assert_int_equal(secure_seal(&c, "second", 6, b), 0);
    assert_int_equal(secure_open(&s, b, 6 + SECURE_OVERHEAD, plain),
                     RFS_EAUTH);
    assert_non_null(strstr(s.why, "reordered"));
}

/* Garbage during the handshake ends it. */
static void test_secure_garbage_handshake(void **state)
{
    (void)state;
    struct secure s;
    struct secure_out o;
    secure_init(&s, false, 2, 0, secret_a, &o);
    assert_int_equal(secure_handshake(&s, WIRE_RAFT, (const uint8_t *)"x", 1,
                                      &o),
                     RFS_EAUTH);
    secure_init(&s, false, 2, 0, secret_a, &o);
    assert_int_equal(secure_handshake(&s, WIRE_HELLO,
                                      (const uint8_t *)"GET / HTTP/1.1", 14,
                                      &o),
                     RFS_EAUTH);
    assert_int_equal(secure_handshake(&s, WIRE_HELLO, (const uint8_t *)"", 0,
                                      &o),
                     RFS_EAUTH);
}

/* Secret files: created 0600, refused when others can read them. */
static void test_secure_secret_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/raftfs-secret-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/secret", dir);
    assert_int_equal(secure_secret_create(path), 0);
    assert_int_equal(secure_secret_create(path), -EEXIST);
    uint8_t k[SECURE_KEY_BYTES];
    assert_int_equal(secure_secret_load(path, k), 0);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(secure_secret_load(path, k), -EACCES);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(secure_secret_load(path, k), -ENOENT);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secure_handshake_and_frames),
        cmocka_unit_test(test_secure_wrong_secret_refused),
        cmocka_unit_test(test_secure_wrong_peer_refused),
        cmocka_unit_test(test_secure_tamper_replay_reorder),
        cmocka_unit_test(test_secure_garbage_handshake),
        cmocka_unit_test(test_secure_secret_file),
    };
    return cmocka_run_group_tests_name("secure", tests, group_setup, NULL);
}
