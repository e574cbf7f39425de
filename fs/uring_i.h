/*
 * The kernel's FUSE-over-io_uring interface, for building against older
 * headers: Debian 12's <linux/fuse.h> is protocol 7.38 and has none of it.
 *
 * The definitions follow include/uapi/linux/fuse.h of protocol 7.42 (Linux
 * 6.14, where FUSE over io_uring first shipped); their layout is ABI and
 * has not changed since. Only what fs/uring.c uses is here. Never include
 * this header outside fs/.
 */
#ifndef RAFTFS_FS_URING_I_H
#define RAFTFS_FS_URING_I_H

#include <stdint.h>

/* INIT flags2 bit (flag 41 of the 64-bit flags): offered by the kernel
 * when enable_uring is Y, accepted by the daemon in its INIT reply. */
#define FS_FUSE_OVER_IO_URING (UINT64_C(1) << 41)

/* Sizes of the two fixed parts of an entry's header buffer. */
#define FS_FUSE_URING_IN_OUT_HEADER_SZ 128
#define FS_FUSE_URING_OP_IN_OUT_SZ 128

struct fs_fuse_uring_ent_in_out {
    uint64_t flags;
    uint64_t commit_id;   /* The request's unique, to commit it with. */
    uint32_t payload_sz;  /* Bytes used in the payload buffer. */
    uint32_t padding;
    uint64_t reserved;
};

/* iov[0] of a REGISTER: the kernel writes the request's fuse_in_header into
 * in_out and its first argument (the per-opcode struct) into op_in; the
 * daemon writes its fuse_out_header into in_out before committing. */
struct fs_fuse_uring_req_header {
    char in_out[FS_FUSE_URING_IN_OUT_HEADER_SZ];
    char op_in[FS_FUSE_URING_OP_IN_OUT_SZ];
    struct fs_fuse_uring_ent_in_out ring_ent_in_out;
};

/* sqe->cmd_op of an IORING_OP_URING_CMD on /dev/fuse. */
enum {
    FS_FUSE_IO_URING_CMD_REGISTER = 1,
    FS_FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2,
};

/* In the 80-byte command area of a 128-byte SQE. */
struct fs_fuse_uring_cmd_req {
    uint64_t flags;
    uint64_t commit_id;
    uint16_t qid;
    uint8_t padding[6];
};

#endif /* RAFTFS_FS_URING_I_H */
