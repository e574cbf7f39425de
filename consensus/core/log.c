/*
 * The in-memory Raft log.
 *
 * A growable array of entries starting right after the snapshot point. The
 * host keeps the durable copy; this copy lets the leader build AppendEntries
 * without reading the disk, and bounds memory by compaction: the host takes a
 * snapshot when the log grows past its threshold, and the prefix is dropped.
 */
#include <errno.h>
#include <string.h>

#include "../../common/assert.h"
#include "../../common/err.h"
#include "../../common/heap.h"
#include "core_i.h"

void cons__log_init(struct cons_log *l)
{
    memset(l, 0, sizeof(*l));
}

static void free_range(struct cons_log *l, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        rfs_free(l->e[i].data.base);
        l->e[i].data.base = NULL;
    }
}

void cons__log_close(struct cons_log *l)
{
    free_range(l, 0, l->n);
    rfs_free(l->e);
    memset(l, 0, sizeof(*l));
}

rfs_index_t cons__log_last_index(const struct cons_log *l)
{
    return l->base_index + l->n;
}

rfs_term_t cons__log_last_term(const struct cons_log *l)
{
    return l->n > 0 ? l->e[l->n - 1].term : l->base_term;
}

int cons__log_term(const struct cons_log *l, rfs_index_t index,
                   rfs_term_t *term)
{
    if (index == l->base_index) {
        *term = l->base_term;
        return 0;
    }
    if (index < l->base_index) {
        return RFS_ECOMPACTED;
    }
    if (index > cons__log_last_index(l)) {
        return RFS_EUNAVAIL;
    }
    *term = l->e[index - l->base_index - 1].term;
    return 0;
}

rfs_term_t cons__log_term_or0(const struct cons_log *l, rfs_index_t index)
{
    rfs_term_t t = 0;
    if (cons__log_term(l, index, &t) != 0) {
        return 0;
    }
    return t;
}

struct cons_entry *cons__log_get(const struct cons_log *l, rfs_index_t index)
{
    if (index <= l->base_index || index > cons__log_last_index(l)) {
        return NULL;
    }
    return &l->e[index - l->base_index - 1];
}

static int reserve(struct cons_log *l)
{
    if (l->n < l->cap) {
        return 0;
    }
    size_t cap = l->cap == 0 ? 64 : l->cap * 2;
    struct cons_entry *e = rfs_realloc(l->e, cap * sizeof(*e));
    if (e == NULL) {
        return -ENOMEM;
    }
    l->e = e;
    l->cap = cap;
    return 0;
}

int cons__log_append_owned(struct cons_log *l, struct cons_entry *e)
{
    RFS_ASSERT(e->index == cons__log_last_index(l) + 1);
    RFS_ASSERT(e->term >= cons__log_last_term(l));
    int rv = reserve(l);
    if (rv != 0) {
        return rv;
    }
    l->e[l->n++] = *e;
    return 0;
}

int cons__log_append(struct cons_log *l, const struct cons_entry *e)
{
    struct cons_entry copy = *e;
    copy.data.base = NULL;
    if (e->data.len > 0) {
        copy.data.base = rfs_memdup(e->data.base, e->data.len);
        if (copy.data.base == NULL) {
            return -ENOMEM;
        }
    }
    int rv = cons__log_append_owned(l, &copy);
    if (rv != 0) {
        rfs_free(copy.data.base);
    }
    return rv;
}

void cons__log_truncate(struct cons_log *l, rfs_index_t from)
{
    if (from > cons__log_last_index(l)) {
        return;
    }
    RFS_ASSERT(from > l->base_index);
    size_t keep = (size_t)(from - l->base_index - 1);
    free_range(l, keep, l->n);
    l->n = keep;
}

void cons__log_compact(struct cons_log *l, rfs_index_t upto)
{
    if (upto <= l->base_index) {
        return;
    }
    RFS_ASSERT(upto <= cons__log_last_index(l));
    /* The base keeps the term of the last dropped entry so that a probe at
     * exactly that index still matches without the snapshot. */
    rfs_term_t base_term = cons__log_get(l, upto)->term;
    size_t drop = (size_t)(upto - l->base_index);
    free_range(l, 0, drop);
    memmove(l->e, l->e + drop, (l->n - drop) * sizeof(*l->e));
    l->n -= drop;
    l->base_index = upto;
    l->base_term = base_term;
}

void cons__log_reset(struct cons_log *l, rfs_index_t base_index,
                     rfs_term_t base_term)
{
    free_range(l, 0, l->n);
    l->n = 0;
    l->base_index = base_index;
    l->base_term = base_term;
}
