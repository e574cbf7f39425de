/*
 * wire: the bytes raftfs nodes exchange on the peer port.
 *
 * A connection carries frames. Each frame is a 16-byte header
 *
 *     magic "RFSW" | version u8 | type u8 | flags u16 (0) | length u32 |
 *     crc32c u32 (of the first 12 header bytes and the body)
 *
 * followed by `length` bytes of body (at most WIRE_MAX_BODY). All integers are
 * little-endian. The reader (struct wire_reader) takes bytes as they arrive
 * and hands out whole frames; anything malformed (wrong magic or version,
 * nonzero flags, oversized length, checksum mismatch) is an error after which
 * the connection must be closed: a peer speaking anything else is not a peer.
 * The reader never allocates more than one frame's declared length, and that
 * length is capped, so a stranger cannot make it allocate unbounded memory.
 *
 * Raft messages (struct cons_msg) are encoded in WIRE_RAFT frame bodies by
 * wire_msg_encode() and decoded by wire_msg_decode(), which checks every
 * count and length against the body before touching it.
 *
 * Caveats:
 * - Pure encoding: no I/O. Not thread-safe per reader; one reader per
 *   connection.
 */
#ifndef RAFTFS_CONSENSUS_WIRE_H
#define RAFTFS_CONSENSUS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/types.h"
#include "core/core.h"

#define WIRE_MAGIC 0x57534652u /* "RFSW" little-endian. */
#define WIRE_VERSION 1
#define WIRE_HDR 16
#define WIRE_MAX_BODY (8u << 20) /* Bigger than any message we send. */

enum wire_type {
    WIRE_HELLO = 1,  /* Handshake: identity and challenge. */
    WIRE_AUTH = 2,   /* Handshake: proof of the cluster secret. */
    WIRE_RAFT = 3,   /* One struct cons_msg. */
    WIRE_ADMIN = 4,  /* An admin request forwarded to the leader, or its
                      * answer (sealed like WIRE_RAFT; see node.c). */
    WIRE_GOSSIP = 5, /* One gossip_msg (consensus/gossip.h), sealed like
                      * WIRE_RAFT. Sent only by nodes mounted with
                      * gossip=on; a build that does not know the type
                      * drops the connection ("unexpected frame"). */
    WIRE_TYPE_MAX,
};

/* Frame a body: writes WIRE_HDR header bytes to hdr. */
void wire_frame_header(uint8_t type, const void *body, uint32_t len,
                       uint8_t hdr[WIRE_HDR]);

struct wire_frame {
    uint8_t type;
    const uint8_t *body; /* Valid until the next wire_reader call. */
    uint32_t len;
};

struct wire_reader {
    uint8_t *buf;
    size_t len;  /* Bytes held. */
    size_t cap;
    size_t skip; /* Bytes of the last frame handed out, dropped next call. */
    int err;     /* Sticky: once malformed, always malformed. */
    char errmsg[128];
};

void wire_reader_init(struct wire_reader *r);
void wire_reader_close(struct wire_reader *r);

/* Add received bytes. Returns 0, -ENOMEM, or the sticky error. */
int wire_reader_feed(struct wire_reader *r, const void *data, size_t len);

/*
 * Take the next complete frame. Returns 1 (frame set), 0 (need more bytes),
 * or RFS_EMALFORMED (r->errmsg says what was wrong; close the connection).
 */
int wire_reader_next(struct wire_reader *r, struct wire_frame *f);

/* Encode m into a buffer allocated with rfs_malloc (body only, no header).
 * 0, -ENOMEM, -EINVAL (message too large for one frame). */
int wire_msg_encode(const struct cons_msg *m, struct rfs_buf *out);

/*
 * Decode a WIRE_RAFT body into m. Entry data, snapshot chunk data point into
 * body; the entries array and snapshot meta are allocated: release with
 * wire_msg_free(). Returns 0, -ENOMEM, RFS_EMALFORMED.
 */
int wire_msg_decode(const uint8_t *body, size_t len, struct cons_msg *m);
void wire_msg_free(struct cons_msg *m);

#endif /* RAFTFS_CONSENSUS_WIRE_H */
