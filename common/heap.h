/*
 * The raftfs allocator hook.
 *
 * Every allocation in raftfs goes through rfs_malloc/rfs_calloc/rfs_realloc/
 * rfs_free so that tests can swap the allocator: fail the Nth allocation to
 * drive error paths, or count bytes to find leaks. The default forwards to the
 * C library.
 *
 * Caveats:
 * - rfs_heap_set() is not thread-safe; call it before any thread starts.
 * - rfs_malloc(0) may return NULL without that being a failure.
 */
#ifndef RAFTFS_COMMON_HEAP_H
#define RAFTFS_COMMON_HEAP_H

#include <stddef.h>

struct rfs_heap {
    void *data; /* Passed back to every hook. */
    void *(*malloc)(void *data, size_t size);
    void *(*realloc)(void *data, void *ptr, size_t size);
    void (*free)(void *data, void *ptr);
};

void *rfs_malloc(size_t size);
void *rfs_calloc(size_t nmemb, size_t size);
void *rfs_realloc(void *ptr, size_t size);
void rfs_free(void *ptr);

/* Copy of len bytes of src, or NULL on allocation failure (or len == 0). */
void *rfs_memdup(const void *src, size_t len);

/* Install a heap (borrowed: must outlive its use); NULL restores the default. */
void rfs_heap_set(const struct rfs_heap *heap);

#endif /* RAFTFS_COMMON_HEAP_H */
