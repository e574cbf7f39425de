/*
 * The linearizability checker must flag known-bad histories (a stale read,
 * a lost write, a duplicated apply, a value that un-happens) and accept
 * valid ones, including large concurrent ones and writes of unknown
 * outcome.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "checker.h"

#define W(k, v, a, b) {k, LIN_WRITE, v, a, b, 0}
#define R(k, v, a, b) {k, LIN_READ, v, a, b, 1}

static size_t bad(const struct lin_op *ops, size_t n)
{
    struct lin_report rep;
    return lin_check(ops, n, &rep);
}

static void test_concurrent_ok(void **state)
{
    (void)state;
    /* A read overlapping a write may see either value. */
    struct lin_op h[] = {W(1, 1, 0, 100), R(1, LIN_ABSENT, 10, 20),
                         R(1, 1, 30, 40), R(1, 1, 150, 160)};
    assert_int_equal(bad(h, 4), 0);
}

static void test_stale_read(void **state)
{
    (void)state;
    struct lin_op h[] = {W(1, 1, 0, 10), R(1, LIN_ABSENT, 20, 30)};
    assert_int_equal(bad(h, 2), 1);
}

static void test_lost_write(void **state)
{
    (void)state;
    struct lin_op h[] = {W(1, 1, 0, 10), W(1, 2, 20, 30), R(1, 1, 40, 50)};
    assert_int_equal(bad(h, 3), 1);
}

static void test_duplicate_apply(void **state)
{
    (void)state;
    /* Write 1 took effect again after write 2. */
    struct lin_op h[] = {W(1, 1, 0, 10), W(1, 2, 20, 30), R(1, 2, 35, 40),
                         R(1, 1, 45, 50)};
    assert_int_equal(bad(h, 4), 1);
}

static void test_value_cannot_unhappen(void **state)
{
    (void)state;
    /* Concurrent with a write, one read saw it: a later one must too. */
    struct lin_op h[] = {W(1, 1, 0, 100), R(1, 1, 10, 20),
                         R(1, LIN_ABSENT, 30, 40)};
    assert_int_equal(bad(h, 3), 1);
}

static void test_unknown_outcome(void **state)
{
    (void)state;
    /* A timed-out write may happen late, or never... */
    struct lin_op ok[] = {W(1, 1, 0, LIN_NEVER), R(1, LIN_ABSENT, 10, 20),
                          R(1, 1, 30, 40)};
    assert_int_equal(bad(ok, 3), 0);
    struct lin_op never[] = {W(1, 1, 0, LIN_NEVER), R(1, LIN_ABSENT, 10, 20),
                             R(1, LIN_ABSENT, 30, 40)};
    assert_int_equal(bad(never, 3), 0);
    /* ...but not un-happen once seen. */
    struct lin_op gone[] = {W(1, 1, 0, LIN_NEVER), R(1, 1, 10, 20),
                            R(1, LIN_ABSENT, 30, 40)};
    assert_int_equal(bad(gone, 3), 1);
}

static void test_keys_independent(void **state)
{
    (void)state;
    struct lin_op h[] = {W(1, 1, 0, 10), W(2, 5, 0, 10), R(2, 5, 20, 30),
                         R(1, LIN_ABSENT, 20, 30)};
    struct lin_report rep;
    assert_int_equal(lin_check(h, 4, &rep), 1);
    assert_int_equal(rep.keys, 2);
    assert_int_equal(rep.first_bad_key, 1);
}

/* A large history from a real linear order with overlapping windows must
 * pass, in reasonable time; corrupting one read must fail it. */
static void test_large_random(void **state)
{
    (void)state;
    enum { N = 3000, KEYS = 10 };
    struct lin_op *h = calloc(N, sizeof(*h));
    int64_t reg[KEYS];
    for (int k = 0; k < KEYS; k++) {
        reg[k] = LIN_ABSENT;
    }
    srand(42);
    for (int i = 0; i < N; i++) {
        /* Linearization point at 10*i; the window around it is random. */
        int k = rand() % KEYS;
        uint64_t at = 10 * (uint64_t)i + 1000;
        h[i].key = k;
        h[i].client = i % 5;
        h[i].call = at - (uint64_t)(rand() % 30);
        h[i].ret = at + (uint64_t)(rand() % 30);
        if (rand() % 2) {
            h[i].kind = LIN_WRITE;
            h[i].value = i;
            reg[k] = i;
        } else {
            h[i].kind = LIN_READ;
            h[i].value = reg[k];
        }
    }
    struct lin_report rep;
    assert_int_equal(lin_check(h, N, &rep), 0);
    for (int i = N - 1; i >= 0; i--) {
        if (h[i].kind == LIN_READ && h[i].value != LIN_ABSENT) {
            h[i].value = 999999; /* Never written. */
            break;
        }
    }
    assert_int_equal(lin_check(h, N, &rep), 1);
    free(h);
}

static void test_budget_gives_up_without_verdict(void **state)
{
    (void)state;
    /* Twelve overlapping writes, then a stale read: the search must try
     * many orders of the writes before it knows. With a tiny budget it
     * stops and says so, counting the key neither good nor bad; with none
     * it finds the stale read. */
    struct lin_op h[14];
    for (int i = 0; i < 12; i++) {
        h[i] = (struct lin_op)W(1, i + 1, (uint64_t)i, 100);
    }
    h[12] = (struct lin_op)R(1, 12, 110, 120);
    h[13] = (struct lin_op)R(1, 3, 130, 140);
    struct lin_report rep;
    assert_int_equal(lin_check_budget(h, 14, 5, &rep), 0);
    assert_int_equal(rep.unfinished_keys, 1);
    assert_int_equal(lin_check_budget(h, 14, 0, &rep), 1);
    assert_int_equal(rep.unfinished_keys, 0);
    assert_int_equal(rep.first_bad_key, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_ok),
        cmocka_unit_test(test_stale_read),
        cmocka_unit_test(test_lost_write),
        cmocka_unit_test(test_duplicate_apply),
        cmocka_unit_test(test_value_cannot_unhappen),
        cmocka_unit_test(test_unknown_outcome),
        cmocka_unit_test(test_keys_independent),
        cmocka_unit_test(test_large_random),
        cmocka_unit_test(test_budget_gives_up_without_verdict),
    };
    return cmocka_run_group_tests_name("checker", tests, NULL, NULL);
}
