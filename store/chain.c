/*
 * The chain over the committed log (store.h, "The chain"): one BLAKE2b
 * hash that pins every entry up to an index, computed here because the
 * store applies every committed entry, once, in order, and keeps the hash
 * in the same write as the applied index. Apart from the rest of the store
 * (no RocksDB here), so that the gossip fuzzer links it alone; keeping the
 * value is store.c's.
 */
#include <sodium.h>

#include "../common/endian.h"
#include "store.h"

static const char chain_tag[] = "raftfs-chain-v1";

void store_chain_next(const uint8_t prev[STORE_CHAIN_BYTES],
                      const struct cons_entry *e,
                      uint8_t out[STORE_CHAIN_BYTES])
{
    /* Fixed-width fields before the data, so no two entries hash the same
     * bytes (the length keeps data from sliding into the next field). */
    uint8_t head[8 + 8 + 1 + 8];
    rfs_put_le64(head, e->index);
    rfs_put_le64(head + 8, e->term);
    head[16] = e->type;
    rfs_put_le64(head + 17, (uint64_t)e->data.len);
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, STORE_CHAIN_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)chain_tag,
                              sizeof(chain_tag) - 1);
    crypto_generichash_update(&st, prev, STORE_CHAIN_BYTES);
    crypto_generichash_update(&st, head, sizeof(head));
    if (e->data.len > 0) {
        crypto_generichash_update(&st, e->data.base, e->data.len);
    }
    crypto_generichash_final(&st, out, STORE_CHAIN_BYTES);
}
