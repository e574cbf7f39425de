/*
 * CRC32C (Castagnoli polynomial), hardware-accelerated where the CPU allows.
 *
 * Used for every checksum raftfs writes: log records, snapshot images, wire
 * frames. Thread-safe.
 */
#ifndef RAFTFS_COMMON_CRC32C_H
#define RAFTFS_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend crc (0 to start) with len bytes of data. */
uint32_t rfs_crc32c(uint32_t crc, const void *data, size_t len);

#endif /* RAFTFS_COMMON_CRC32C_H */
