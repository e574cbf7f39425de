/*
 * The filesystem command carried in NORMAL log entries.
 *
 * Fixed little-endian header, then the name, the new name and the data. The
 * decoder checks every length against the buffer: an entry is replicated
 * bytes, and a damaged or hostile one must apply as EINVAL everywhere rather
 * than read out of bounds anywhere.
 */
#include <errno.h>
#include <string.h>

#include "../common/err.h"
#include "../common/heap.h"
#include "store_i.h"

#define CMD_VERSION 1
#define CMD_HDR 126

int store_cmd_encode(const struct store_cmd *c, struct rfs_buf *out)
{
    if (c->op >= STORE_OP_MAX || c->name_len > STORE_NAME_MAX + 1 ||
        c->new_name_len > STORE_NAME_MAX + 1) {
        return -EINVAL;
    }
    size_t len = CMD_HDR + c->name_len + c->new_name_len + c->data_len;
    uint8_t *p = rfs_malloc(len);
    if (p == NULL) {
        return -ENOMEM;
    }
    uint8_t *q = p;
    *q++ = CMD_VERSION;
    *q++ = c->op;
    rfs_put_le64(q, c->client), q += 8;
    rfs_put_le64(q, c->boot), q += 8;
    rfs_put_le64(q, c->seq), q += 8;
    rfs_put_le64(q, c->first_outstanding), q += 8;
    rfs_put_le64(q, (uint64_t)c->time_ns), q += 8;
    rfs_put_le32(q, c->flags), q += 4;
    rfs_put_le32(q, c->valid), q += 4;
    rfs_put_le64(q, c->ino), q += 8;
    rfs_put_le64(q, c->parent), q += 8;
    rfs_put_le64(q, c->new_parent), q += 8;
    rfs_put_le32(q, c->mode), q += 4;
    rfs_put_le32(q, c->uid), q += 4;
    rfs_put_le32(q, c->gid), q += 4;
    rfs_put_le64(q, c->offset), q += 8;
    rfs_put_le64(q, c->size), q += 8;
    rfs_put_le64(q, (uint64_t)c->atime_ns), q += 8;
    rfs_put_le64(q, (uint64_t)c->mtime_ns), q += 8;
    *q++ = (uint8_t)c->name_len;
    *q++ = (uint8_t)(c->name_len >> 8);
    *q++ = (uint8_t)c->new_name_len;
    *q++ = (uint8_t)(c->new_name_len >> 8);
    rfs_put_le32(q, c->data_len), q += 4;
    if (c->name_len) {
        memcpy(q, c->name, c->name_len);
    }
    q += c->name_len;
    if (c->new_name_len) {
        memcpy(q, c->new_name, c->new_name_len);
    }
    q += c->new_name_len;
    if (c->data_len) {
        memcpy(q, c->data, c->data_len);
    }
    out->base = p;
    out->len = len;
    return 0;
}

int store_cmd_decode(const struct rfs_buf *in, struct store_cmd *c)
{
    const uint8_t *q = in->base;
    memset(c, 0, sizeof(*c));
    if (in->len < CMD_HDR || q[0] != CMD_VERSION || q[1] >= STORE_OP_MAX) {
        return RFS_EMALFORMED;
    }
    c->op = q[1];
    q += 2;
    c->client = rfs_get_le64(q), q += 8;
    c->boot = rfs_get_le64(q), q += 8;
    c->seq = rfs_get_le64(q), q += 8;
    c->first_outstanding = rfs_get_le64(q), q += 8;
    c->time_ns = (int64_t)rfs_get_le64(q), q += 8;
    c->flags = rfs_get_le32(q), q += 4;
    c->valid = rfs_get_le32(q), q += 4;
    c->ino = rfs_get_le64(q), q += 8;
    c->parent = rfs_get_le64(q), q += 8;
    c->new_parent = rfs_get_le64(q), q += 8;
    c->mode = rfs_get_le32(q), q += 4;
    c->uid = rfs_get_le32(q), q += 4;
    c->gid = rfs_get_le32(q), q += 4;
    c->offset = rfs_get_le64(q), q += 8;
    c->size = rfs_get_le64(q), q += 8;
    c->atime_ns = (int64_t)rfs_get_le64(q), q += 8;
    c->mtime_ns = (int64_t)rfs_get_le64(q), q += 8;
    c->name_len = (uint16_t)(q[0] | q[1] << 8);
    c->new_name_len = (uint16_t)(q[2] | q[3] << 8);
    q += 4;
    c->data_len = rfs_get_le32(q), q += 4;
    if ((uint64_t)CMD_HDR + c->name_len + c->new_name_len + c->data_len !=
        in->len) {
        return RFS_EMALFORMED;
    }
    c->name = (const char *)q;
    c->new_name = c->name + c->name_len;
    c->data = c->new_name + c->new_name_len;
    return 0;
}
