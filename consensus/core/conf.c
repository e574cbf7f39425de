/*
 * Cluster configurations and their encoding inside CONF log entries.
 *
 * Encoding (little-endian): u8 version (1), u8 count, then per server: u64 id,
 * u8 role, u8 address length, address bytes. The decoder checks every length
 * and value, since a CONF entry can come off a network or a damaged disk.
 */
#include <errno.h>
#include <string.h>

#include "../../common/err.h"
#include "../../common/heap.h"
#include "core.h"

#define CONF_VERSION 1

const struct cons_server *cons_conf_get(const struct cons_conf *c,
                                        rfs_nodeid_t id)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].id == id) {
            return &c->servers[i];
        }
    }
    return NULL;
}

unsigned cons_conf_voters(const struct cons_conf *c)
{
    unsigned v = 0;
    for (unsigned i = 0; i < c->n; i++) {
        v += c->servers[i].role == CONS_VOTER;
    }
    return v;
}

int cons_conf_encode(const struct cons_conf *c, struct rfs_buf *out)
{
    size_t len = 2;
    for (unsigned i = 0; i < c->n; i++) {
        len += 8 + 1 + 1 + strnlen(c->servers[i].addr, CONS_ADDR_MAX - 1);
    }
    uint8_t *p = rfs_malloc(len);
    if (p == NULL) {
        return -ENOMEM;
    }
    out->base = p;
    out->len = len;
    *p++ = CONF_VERSION;
    *p++ = (uint8_t)c->n;
    for (unsigned i = 0; i < c->n; i++) {
        const struct cons_server *s = &c->servers[i];
        for (int b = 0; b < 8; b++) {
            *p++ = (uint8_t)(s->id >> (8 * b));
        }
        *p++ = s->role;
        size_t alen = strnlen(s->addr, CONS_ADDR_MAX - 1);
        *p++ = (uint8_t)alen;
        memcpy(p, s->addr, alen);
        p += alen;
    }
    return 0;
}

int cons_conf_decode(const struct rfs_buf *in, struct cons_conf *c)
{
    const uint8_t *p = in->base;
    const uint8_t *end = p + in->len;
    memset(c, 0, sizeof(*c));
    if (in->len < 2 || p[0] != CONF_VERSION || p[1] > CONS_MAX_SERVERS) {
        return RFS_EMALFORMED;
    }
    unsigned n = p[1];
    p += 2;
    for (unsigned i = 0; i < n; i++) {
        struct cons_server *s = &c->servers[i];
        if (end - p < 10) {
            return RFS_EMALFORMED;
        }
        s->id = 0;
        for (int b = 0; b < 8; b++) {
            s->id |= (uint64_t)p[b] << (8 * b);
        }
        p += 8;
        s->role = *p++;
        size_t alen = *p++;
        if (s->id == RFS_NODE_NONE ||
            (s->role != CONS_VOTER && s->role != CONS_LEARNER) ||
            alen >= CONS_ADDR_MAX || (size_t)(end - p) < alen) {
            return RFS_EMALFORMED;
        }
        memcpy(s->addr, p, alen);
        s->addr[alen] = '\0';
        p += alen;
        for (unsigned j = 0; j < i; j++) {
            if (c->servers[j].id == s->id) {
                return RFS_EMALFORMED;
            }
        }
    }
    if (p != end) {
        return RFS_EMALFORMED;
    }
    c->n = n;
    return 0;
}
