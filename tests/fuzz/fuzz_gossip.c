/*
 * libFuzzer target for gossip messages (consensus/gossip.c), the bytes an
 * observer takes from any peer. Whatever decodes must encode to exactly the
 * input (the encoding is canonical: the decoder accepts nothing else), and
 * its entries and commit point then go through a verifier, which must
 * neither crash nor release anything: no key signed them. Image-fetch
 * messages (consensus/gimage.c, kinds 16 to 19) travel in the same frames:
 * they too must encode back to the input, and an offer's statement must
 * never verify, as no key signed it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/heap.h"
#include "../../consensus/gimage.h"
#include "../../consensus/gossip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An image-fetch message: canonical, and an offer proves nothing. */
static int fuzz_gimage(const uint8_t *data, size_t size)
{
    struct rfs_buf in = {.base = (void *)data, .len = size};
    struct gimage_msg m;
    if (gimage_msg_decode(&in, &m) != 0) {
        return 0;
    }
    struct rfs_buf out;
    if (gimage_msg_encode(&m, &out) != 0) {
        abort();
    }
    if (out.len != size || memcmp(out.base, data, size) != 0) {
        abort();
    }
    rfs_free(out.base);
    if (m.kind == GIMAGE_OFFER) {
        struct gossip_key k = {.id = m.stmt.signer};
        memset(k.pk, 0x11, sizeof(k.pk));
        if (gimage_stmt_verify(&m.stmt, &m.conf, &k, 1) == 0) {
            abort(); /* Vouched for without a valid signature. */
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && gimage_is_kind(data[0])) {
        return fuzz_gimage(data, size);
    }
    static struct cons_entry es[GOSSIP_MSG_ENTRIES_MAX];
    struct rfs_buf in = {.base = (void *)data, .len = size};
    struct gossip_msg m;
    if (gossip_msg_decode(&in, &m, es, GOSSIP_MSG_ENTRIES_MAX) != 0) {
        return 0;
    }
    struct rfs_buf out;
    if (gossip_msg_encode(&m, &out) != 0) {
        abort();
    }
    if (out.len != size || memcmp(out.base, data, size) != 0) {
        abort();
    }
    rfs_free(out.base);
    uint8_t zero[GOSSIP_HASH_BYTES] = {0};
    struct gossip_verifier *v = gossip_verifier_new(0, zero);
    if (v == NULL) {
        return 0;
    }
    struct gossip_key k = {.id = 1};
    memset(k.pk, 0x11, sizeof(k.pk));
    gossip_verifier_set_voters(v, &k, 1);
    struct gossip_verdict d;
    for (unsigned i = 0; i < m.n_entries; i++) {
        gossip_verifier_offer(v, m.from, &m.entries[i], &d);
    }
    if (m.has_cert) {
        gossip_verifier_certify(v, m.from, &m.cert, &d);
    }
    struct cons_entry e;
    if (gossip_verifier_take(v, &e)) {
        abort(); /* Released without a valid signature. */
    }
    gossip_verifier_free(v);
    return 0;
}
