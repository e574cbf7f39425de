/* Group-commit merging of core updates. See batch.h. */
#include "batch.h"

#include <errno.h>
#include <string.h>

#include "../common/heap.h"

void batch_writes_init(struct batch_writes *w)
{
    memset(w, 0, sizeof(*w));
}

static void drop_entries_from(struct batch_writes *w, unsigned keep)
{
    for (unsigned k = keep; k < w->n_ents; k++) {
        rfs_free(w->ents[k].data.base);
    }
    w->n_ents = keep;
}

void batch_writes_close(struct batch_writes *w)
{
    drop_entries_from(w, 0);
    rfs_free(w->ents);
    for (unsigned i = 0; i < w->n_chunks; i++) {
        rfs_free(w->chunks[i].data.base);
    }
    rfs_free(w->chunks);
    memset(w, 0, sizeof(*w));
}

int batch_writes_add(struct batch_writes *w, const struct cons_update *u)
{
    if (u->hs_changed) {
        w->has_hs = true;
        w->hs = u->hs;
    }
    if (u->n_chunks > 0) {
        struct batch_chunk *c = rfs_realloc(
            w->chunks, (w->n_chunks + u->n_chunks) * sizeof(*c));
        if (c == NULL) {
            return -ENOMEM;
        }
        w->chunks = c;
        for (unsigned i = 0; i < u->n_chunks; i++) {
            struct batch_chunk *d = &w->chunks[w->n_chunks];
            d->meta = u->chunks[i].meta;
            d->offset = u->chunks[i].offset;
            d->last = u->chunks[i].last;
            d->fetched = u->chunks[i].fetched;
            d->data.len = u->chunks[i].data.len;
            d->data.base = NULL;
            if (d->data.len > 0) {
                d->data.base = rfs_memdup(u->chunks[i].data.base, d->data.len);
                if (d->data.base == NULL) {
                    return -ENOMEM;
                }
            }
            w->n_chunks++;
            if (d->last) {
                /* The install replaces the log: entries queued before it
                 * must not be written after it. */
                drop_entries_from(w, 0);
            }
        }
    }
    if (u->n_entries > 0) {
        unsigned keep = 0;
        while (keep < w->n_ents &&
               w->ents[keep].index < u->entries[0].index) {
            keep++;
        }
        drop_entries_from(w, keep);
        if (keep + u->n_entries > w->cap_ents) {
            unsigned cap = (keep + u->n_entries) * 2;
            struct cons_entry *e = rfs_realloc(w->ents, cap * sizeof(*e));
            if (e == NULL) {
                return -ENOMEM;
            }
            w->ents = e;
            w->cap_ents = cap;
        }
        for (unsigned i = 0; i < u->n_entries; i++) {
            struct cons_entry *e = &w->ents[w->n_ents];
            *e = u->entries[i];
            e->data.base = NULL;
            if (e->data.len > 0) {
                e->data.base = rfs_memdup(u->entries[i].data.base,
                                          e->data.len);
                if (e->data.base == NULL) {
                    return -ENOMEM;
                }
            }
            w->n_ents++;
        }
    }
    w->tag = u->tag;
    return 0;
}

int batch_writes_take(struct batch_writes *w, struct batch_writes *later)
{
    /* Every allocation first, so that a failure changes nothing. */
    if (later->n_chunks > 0) {
        struct batch_chunk *c = rfs_realloc(
            w->chunks, (w->n_chunks + later->n_chunks) * sizeof(*c));
        if (c == NULL) {
            return -ENOMEM;
        }
        w->chunks = c;
    }
    bool installs = false;
    for (unsigned i = 0; i < later->n_chunks; i++) {
        installs |= later->chunks[i].last;
    }
    /* The entries of w that stay: none after an install (later's own
     * entries already come after it), else those below later's first. */
    unsigned keep = w->n_ents;
    if (installs) {
        keep = 0;
    } else if (later->n_ents > 0) {
        keep = 0;
        while (keep < w->n_ents &&
               w->ents[keep].index < later->ents[0].index) {
            keep++;
        }
    }
    if (keep + later->n_ents > w->cap_ents) {
        unsigned cap = (keep + later->n_ents) * 2;
        struct cons_entry *e = rfs_realloc(w->ents, cap * sizeof(*e));
        if (e == NULL) {
            return -ENOMEM;
        }
        w->ents = e;
        w->cap_ents = cap;
    }
    if (later->has_hs) {
        w->has_hs = true;
        w->hs = later->hs;
    }
    if (later->n_chunks > 0) {
        memcpy(&w->chunks[w->n_chunks], later->chunks,
               later->n_chunks * sizeof(*later->chunks));
        w->n_chunks += later->n_chunks;
    }
    drop_entries_from(w, keep);
    if (later->n_ents > 0) {
        memcpy(&w->ents[w->n_ents], later->ents,
               later->n_ents * sizeof(*later->ents));
        w->n_ents += later->n_ents;
    }
    w->tag = later->tag;
    /* The data buffers now belong to w: free only later's arrays. */
    rfs_free(later->ents);
    rfs_free(later->chunks);
    memset(later, 0, sizeof(*later));
    return 0;
}
