/* See checker.h. */
#include "checker.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ev {
    bool call;
    size_t op;      /* Index into the key's ops. */
    uint64_t time;
    struct ev *prev, *next;
    struct ev *match; /* call <-> return */
};

/* Visited (linearized set, state) pairs: an open-addressing hash set that
 * owns copies of the bitsets. */
struct seen {
    size_t cap, n, words;
    uint64_t *bits;  /* cap * words */
    int64_t *state;
    uint64_t *hash;  /* 0 = empty slot */
};

static uint64_t mix(const uint64_t *b, size_t words, int64_t state)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)state;
    for (size_t i = 0; i < words; i++) {
        h = (h ^ b[i]) * 1099511628211ull;
        h ^= h >> 29;
    }
    return h | 1;
}

static void seen_init(struct seen *s, size_t words)
{
    s->cap = 1024;
    s->n = 0;
    s->words = words;
    s->bits = calloc(s->cap * words, sizeof(uint64_t));
    s->state = calloc(s->cap, sizeof(int64_t));
    s->hash = calloc(s->cap, sizeof(uint64_t));
}

static void seen_free(struct seen *s)
{
    free(s->bits);
    free(s->state);
    free(s->hash);
}

static bool seen_add(struct seen *s, const uint64_t *b, int64_t state);

static void seen_grow(struct seen *s)
{
    struct seen old = *s;
    s->cap *= 2;
    s->n = 0;
    s->bits = calloc(s->cap * s->words, sizeof(uint64_t));
    s->state = calloc(s->cap, sizeof(int64_t));
    s->hash = calloc(s->cap, sizeof(uint64_t));
    for (size_t i = 0; i < old.cap; i++) {
        if (old.hash[i] != 0) {
            seen_add(s, old.bits + i * s->words, old.state[i]);
        }
    }
    seen_free(&old);
}

/* True if newly added, false if it was there. */
static bool seen_add(struct seen *s, const uint64_t *b, int64_t state)
{
    if (2 * (s->n + 1) > s->cap) {
        seen_grow(s);
    }
    uint64_t h = mix(b, s->words, state);
    size_t i = h & (s->cap - 1);
    while (s->hash[i] != 0) {
        if (s->hash[i] == h && s->state[i] == state &&
            memcmp(s->bits + i * s->words, b, s->words * 8) == 0) {
            return false;
        }
        i = (i + 1) & (s->cap - 1);
    }
    s->hash[i] = h;
    s->state[i] = state;
    memcpy(s->bits + i * s->words, b, s->words * 8);
    s->n++;
    return true;
}

static int by_time(const void *a, const void *b)
{
    const struct ev *x = a, *y = b;
    if (x->time != y->time) {
        return x->time < y->time ? -1 : 1;
    }
    /* At equal times calls come first: the ops are then concurrent, the
     * weaker (never the wrongly stronger) assumption. */
    return (int)y->call - (int)x->call;
}

/* The register model: reads must return the current value. */
static bool step(int64_t state, const struct lin_op *op, int64_t *next)
{
    if (op->kind == LIN_WRITE) {
        *next = op->value;
        return true;
    }
    *next = state;
    return op->value == state;
}

/* 1: linearizable, 0: not, -1: budget (states explored for this key, 0
 * for none) spent before either was known. */
static int check_key(const struct lin_op *ops, size_t n, size_t *explored,
                     size_t budget)
{
    size_t start = *explored;
    struct ev *evs = calloc(2 * n, sizeof(*evs));
    for (size_t i = 0; i < n; i++) {
        evs[2 * i] = (struct ev){.call = true, .op = i, .time = ops[i].call};
        evs[2 * i + 1] = (struct ev){.call = false, .op = i,
                                     .time = ops[i].ret};
    }
    qsort(evs, 2 * n, sizeof(*evs), by_time);
    struct ev **call_of = calloc(n, sizeof(*call_of));
    struct ev **ret_of = calloc(n, sizeof(*ret_of));
    struct ev head = {0};
    struct ev *prev = &head;
    for (size_t i = 0; i < 2 * n; i++) {
        evs[i].prev = prev;
        prev->next = &evs[i];
        prev = &evs[i];
        (evs[i].call ? call_of : ret_of)[evs[i].op] = &evs[i];
    }
    for (size_t i = 0; i < n; i++) {
        call_of[i]->match = ret_of[i];
    }
    size_t words = (n + 63) / 64;
    uint64_t *lin = calloc(words ? words : 1, sizeof(uint64_t));
    struct seen seen;
    seen_init(&seen, words ? words : 1);
    struct frame {
        struct ev *call;
        int64_t state;
    } *stack = calloc(n + 1, sizeof(*stack));
    size_t depth = 0;
    int64_t state = LIN_ABSENT;
    struct ev *cur = head.next;
    int ok = 1;
    while (head.next != NULL) {
        if (cur == NULL) {
            break;
        }
        if (budget != 0 && *explored - start >= budget) {
            ok = -1;
            break;
        }
        (*explored)++;
        if (cur->call) {
            const struct lin_op *op = &ops[cur->op];
            int64_t next;
            lin[cur->op / 64] |= UINT64_C(1) << (cur->op % 64);
            if (step(state, op, &next) && seen_add(&seen, lin, next)) {
                stack[depth++] = (struct frame){cur, state};
                state = next;
                /* Lift the call and its return out of the list. */
                struct ev *r = cur->match;
                cur->prev->next = cur->next;
                if (cur->next) {
                    cur->next->prev = cur->prev;
                }
                r->prev->next = r->next;
                if (r->next) {
                    r->next->prev = r->prev;
                }
                cur = head.next;
            } else {
                lin[cur->op / 64] &= ~(UINT64_C(1) << (cur->op % 64));
                cur = cur->next;
            }
        } else {
            /* A return with its call not linearized: undo the last. */
            if (depth == 0) {
                ok = 0;
                break;
            }
            struct frame f = stack[--depth];
            state = f.state;
            struct ev *c = f.call, *r = c->match;
            lin[c->op / 64] &= ~(UINT64_C(1) << (c->op % 64));
            r->prev->next = r;
            if (r->next) {
                r->next->prev = r;
            }
            c->prev->next = c;
            if (c->next) {
                c->next->prev = c;
            }
            cur = c->next;
        }
    }
    free(stack);
    seen_free(&seen);
    free(lin);
    free(call_of);
    free(ret_of);
    free(evs);
    return ok;
}

static int by_key_then_call(const void *a, const void *b)
{
    const struct lin_op *x = a, *y = b;
    if (x->key != y->key) {
        return x->key < y->key ? -1 : 1;
    }
    return x->call < y->call ? -1 : x->call > y->call;
}

size_t lin_check(const struct lin_op *ops, size_t n, struct lin_report *rep)
{
    return lin_check_budget(ops, n, 0, rep);
}

size_t lin_check_budget(const struct lin_op *ops, size_t n, size_t budget,
                        struct lin_report *rep)
{
    struct lin_op *s = malloc((n ? n : 1) * sizeof(*s));
    memcpy(s, ops, n * sizeof(*s));
    qsort(s, n, sizeof(*s), by_key_then_call);
    memset(rep, 0, sizeof(*rep));
    rep->first_bad_key = -1;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && s[j].key == s[i].key) {
            j++;
        }
        rep->keys++;
        int ok = check_key(s + i, j - i, &rep->explored, budget);
        if (ok < 0) {
            rep->unfinished_keys++;
        } else if (ok == 0) {
            if (rep->bad_keys++ == 0) {
                rep->first_bad_key = s[i].key;
            }
        }
        i = j;
    }
    free(s);
    return rep->bad_keys;
}

void lin_print_key(const struct lin_op *ops, size_t n, int key)
{
    fflush(stdout);
    struct lin_op *s = malloc((n ? n : 1) * sizeof(*s));
    memcpy(s, ops, n * sizeof(*s));
    qsort(s, n, sizeof(*s), by_key_then_call);
    for (size_t i = 0; i < n; i++) {
        if (s[i].key != key) {
            continue;
        }
        char ret[32];
        if (s[i].ret == LIN_NEVER) {
            snprintf(ret, sizeof(ret), "unknown");
        } else {
            snprintf(ret, sizeof(ret), "%llu", (unsigned long long)s[i].ret);
        }
        fprintf(stdout, "  client %d %s %lld  [%llu, %s]\n", s[i].client,
                s[i].kind == LIN_WRITE ? "write" : "read ",
                (long long)s[i].value, (unsigned long long)s[i].call, ret);
    }
    free(s);
}

/* The ops of key, in call order, copied into a new array. */
static struct lin_op *key_ops(const struct lin_op *ops, size_t n, int key,
                              size_t *m)
{
    struct lin_op *s = malloc((n ? n : 1) * sizeof(*s));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].key == key) {
            s[k++] = ops[i];
        }
    }
    qsort(s, k, sizeof(*s), by_key_then_call);
    *m = k;
    return s;
}

size_t lin_minimal_prefix(const struct lin_op *ops, size_t n, int key)
{
    size_t m;
    struct lin_op *s = key_ops(ops, n, key, &m);
    /* Non-linearizability is monotonic in the prefix: bisect. */
    size_t lo = 1, hi = m;
    struct lin_report rep;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (lin_check(s, mid, &rep) > 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    free(s);
    return lo;
}

void lin_print_key_range(const struct lin_op *ops, size_t n, int key,
                         size_t upto, size_t limit)
{
    size_t m;
    struct lin_op *s = key_ops(ops, n, key, &m);
    if (upto == 0 || upto > m) {
        upto = m;
    }
    size_t from = limit && upto > limit ? upto - limit : 0;
    lin_print_key(s + from, upto - from, key);
    free(s);
}
