/*
 * libFuzzer target for the wire format (consensus/wire.c).
 *
 * The first input byte picks the path: even, the bytes are a stream fed to a
 * wire_reader in pieces whose sizes come from the input, and every frame
 * that passes is decoded; odd, the rest is decoded directly as a message
 * body (the checksum would otherwise keep the fuzzer out of the decoder).
 * Whatever decodes must encode and decode again to the same fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/heap.h"
#include "../../consensus/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_roundtrip(const struct cons_msg *m)
{
    struct rfs_buf b;
    if (wire_msg_encode(m, &b) != 0) {
        return;
    }
    struct cons_msg d;
    if (wire_msg_decode(b.base, b.len, &d) != 0 || d.type != m->type ||
        d.term != m->term || d.n_entries != m->n_entries ||
        d.data.len != m->data.len || (d.snap == NULL) != (m->snap == NULL)) {
        abort();
    }
    for (unsigned i = 0; i < d.n_entries; i++) {
        if (d.entries[i].data.len != m->entries[i].data.len ||
            (d.entries[i].data.len > 0 &&
             memcmp(d.entries[i].data.base, m->entries[i].data.base,
                    d.entries[i].data.len) != 0)) {
            abort();
        }
    }
    wire_msg_free(&d);
    rfs_free(b.base);
}

static void decode(const uint8_t *body, size_t len)
{
    struct cons_msg m;
    if (wire_msg_decode(body, len, &m) == 0) {
        check_roundtrip(&m);
        wire_msg_free(&m);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    if (data[0] & 1) {
        decode(data + 1, size - 1);
        return 0;
    }
    struct wire_reader r;
    wire_reader_init(&r);
    size_t off = 1;
    size_t piece = 1 + (data[0] >> 1);
    while (off < size) {
        size_t n = size - off < piece ? size - off : piece;
        if (wire_reader_feed(&r, data + off, n) != 0) {
            break;
        }
        off += n;
        struct wire_frame f;
        int rv;
        while ((rv = wire_reader_next(&r, &f)) == 1) {
            if (f.type == WIRE_RAFT) {
                decode(f.body, f.len);
            }
        }
        if (rv < 0) {
            break;
        }
    }
    wire_reader_close(&r);
    return 0;
}
