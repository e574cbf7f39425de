/*
 * checker: linearizability of a recorded history of register operations,
 * one register per key (files written whole and read whole), with the
 * Wing-Gong search as Lowe refined it (linearize the earliest pending call
 * that the model accepts, backtrack at a return that nothing linearized,
 * and remember (linearized set, state) pairs already explored). Keys are
 * checked independently (P-compositionality, as Knossos and Porcupine do).
 *
 * An operation whose outcome is unknown (a timeout) may take effect at any
 * time after its call, or never: it is given a return at infinity. A failed
 * operation (a definite error) is left out by the caller.
 *
 * Caveats: test code; exponential in the worst case, so histories are kept
 * to a few hundred operations per key.
 */
#ifndef RAFTFS_TESTS_CHAOS_CHECKER_H
#define RAFTFS_TESTS_CHAOS_CHECKER_H

#include <stddef.h>
#include <stdint.h>

#define LIN_ABSENT (-1) /* The value of a key never written (no file). */
#define LIN_NEVER UINT64_MAX /* Return time of an operation of unknown outcome. */

enum lin_kind {
    LIN_READ = 1,  /* value: what the read returned. */
    LIN_WRITE = 2, /* value: what was written. */
};

struct lin_op {
    int key;
    enum lin_kind kind;
    int64_t value;
    uint64_t call; /* Invocation time (any monotonic unit). */
    uint64_t ret;  /* Completion time, or LIN_NEVER. */
    int client;    /* For reports only. */
};

struct lin_report {
    size_t keys;          /* Keys checked. */
    size_t bad_keys;      /* Keys with no linearization. */
    int first_bad_key;    /* -1 if none. */
    size_t explored;      /* Search states explored, in total. */
    size_t unfinished_keys; /* lin_check_budget: keys whose search ran out
                             * of budget (neither verdict). */
};

/* Check ops (any order). Returns the number of keys that have no
 * linearization (0: linearizable), and fills rep. */
size_t lin_check(const struct lin_op *ops, size_t n, struct lin_report *rep);

/* The same, giving up on a key after `budget` search states (0: never),
 * for a caller that checks many histories and must bound its time: such
 * keys count in rep->unfinished_keys, not as bad. */
size_t lin_check_budget(const struct lin_op *ops, size_t n, size_t budget,
                        struct lin_report *rep);

/* For a key with no linearization: the shortest prefix of its operations
 * (in call order) that already has none. Returns its length. */
size_t lin_minimal_prefix(const struct lin_op *ops, size_t n, int key);

/* Print the operations of key, in call order, to stdout (for failures):
 * all of them (limit 0) or the last `limit` of the first `upto`. */
void lin_print_key_range(const struct lin_op *ops, size_t n, int key,
                         size_t upto, size_t limit);

/* Print the operations of key, in call order, to stdout (for failures). */
void lin_print_key(const struct lin_op *ops, size_t n, int key);

#endif /* RAFTFS_TESTS_CHAOS_CHECKER_H */
