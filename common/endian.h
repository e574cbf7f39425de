/*
 * Fixed-width integer encodings for everything raftfs writes to disk or the
 * wire. Keys that must sort are big-endian; everything else little-endian.
 */
#ifndef RAFTFS_COMMON_ENDIAN_H
#define RAFTFS_COMMON_ENDIAN_H

#include <stdint.h>

static inline void rfs_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint64_t rfs_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static inline void rfs_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static inline uint32_t rfs_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline void rfs_put_le64(uint8_t *p, uint64_t v)
{
    rfs_put_le32(p, (uint32_t)v);
    rfs_put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t rfs_get_le64(const uint8_t *p)
{
    return (uint64_t)rfs_get_le32(p) | (uint64_t)rfs_get_le32(p + 4) << 32;
}

#endif /* RAFTFS_COMMON_ENDIAN_H */
