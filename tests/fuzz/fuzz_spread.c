/*
 * libFuzzer target for dissemination (consensus/spread.c): a run of gossip
 * messages from any peers, as an observer and a voter take them. The input
 * is records of (peer byte, length u16 LE, message bytes); each message
 * that decodes goes to both. Neither may crash, leak or grow without bound;
 * the observer may release nothing (no voter key signed anything here); the
 * voter, which applied a true log of 200 entries and kept the last 64, may
 * answer only with those entries, unchanged, at most pull_max at a time,
 * and with at most fanout + 2 messages per message received.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/heap.h"
#include "../../consensus/spread.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LOG_N 200
#define CACHE 64
#define PULL_MAX 16

static struct cons_entry log_[LOG_N + 1];
static char text[LOG_N + 1][24];

static void log_init(void)
{
    if (log_[1].index == 1) {
        return;
    }
    for (unsigned i = 1; i <= LOG_N; i++) {
        int n = snprintf(text[i], sizeof(text[i]), "put /k%u v%u", i, i);
        log_[i] = (struct cons_entry){.term = 1, .index = i,
                                      .type = CONS_ENTRY_NORMAL,
                                      .data = {text[i], (size_t)n}};
    }
}

/* Every message the voter sent answers from the true log. */
static void check_voter_out(struct spread *v)
{
    static struct cons_entry es[GOSSIP_MSG_ENTRIES_MAX];
    unsigned n;
    const struct spread_out *out = spread_outbox(v, &n);
    if (n > 3 + 2) {
        abort();
    }
    for (unsigned k = 0; k < n; k++) {
        struct gossip_msg m;
        if (gossip_msg_decode(&out[k].bytes, &m, es,
                              GOSSIP_MSG_ENTRIES_MAX) != 0) {
            abort(); /* It encoded it. */
        }
        if (m.n_entries > PULL_MAX) {
            abort();
        }
        for (unsigned i = 0; i < m.n_entries; i++) {
            const struct cons_entry *e = &m.entries[i];
            if (e->index <= LOG_N - CACHE || e->index > LOG_N ||
                e->data.len != log_[e->index].data.len ||
                memcmp(e->data.base, log_[e->index].data.base,
                       e->data.len) != 0) {
                abort();
            }
        }
    }
    spread_outbox_clear(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cons_entry es[GOSSIP_MSG_ENTRIES_MAX];
    log_init();
    uint8_t zero[GOSSIP_HASH_BYTES] = {0};
    struct spread_options oo = {.self = 50, .seed = 1, .pull_max = PULL_MAX};
    struct spread_options vo = {.self = 1, .voter = true, .seed = 2,
                                .cache = CACHE, .pull_max = PULL_MAX};
    struct spread *obs = spread_new(&oo, 0, zero);
    struct spread *vot = spread_new(&vo, 0, zero);
    if (obs == NULL || vot == NULL) {
        abort();
    }
    struct gossip_key k = {.id = 1};
    uint8_t sk[GOSSIP_SK_BYTES];
    memset(k.pk, 0x11, sizeof(k.pk));
    memset(sk, 0x22, sizeof(sk));
    spread_set_voters(obs, &k, 1);
    spread_set_key(vot, sk);
    rfs_nodeid_t peers[] = {2, 3, 50, 60};
    spread_set_peers(obs, peers, 4);
    spread_set_peers(vot, peers, 4);
    if (spread_applied(vot, &log_[1], LOG_N, 0) != 0) {
        abort();
    }
    spread_outbox_clear(vot);
    uint64_t now = 1;
    size_t at = 0;
    while (at + 3 <= size) {
        rfs_nodeid_t from = data[at] % 8 + 2;
        size_t len = (size_t)data[at + 1] | (size_t)data[at + 2] << 8;
        at += 3;
        if (len > size - at) {
            len = size - at;
        }
        struct rfs_buf in = {.base = (void *)(data + at), .len = len};
        at += len;
        struct gossip_msg m;
        if (gossip_msg_decode(&in, &m, es, GOSSIP_MSG_ENTRIES_MAX) != 0) {
            continue;
        }
        now += 7;
        spread_recv(obs, from, &m, now);
        spread_tick(obs, now);
        spread_recv(vot, from, &m, now);
        spread_tick(vot, now);
        check_voter_out(vot);
        unsigned n;
        spread_outbox(obs, &n);
        if (n > 3 + 2) {
            abort();
        }
        spread_outbox_clear(obs);
        struct cons_entry e;
        if (spread_take(obs, &e)) {
            abort(); /* Released without a valid signature. */
        }
    }
    spread_free(obs);
    spread_free(vot);
    return 0;
}
