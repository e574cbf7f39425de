/* The allocator hook: a pointer to a table, the C library by default. */
#include "heap.h"

#include <stdlib.h>
#include <string.h>

static void *libc_malloc(void *data, size_t size)
{
    (void)data;
    return malloc(size);
}

static void *libc_realloc(void *data, void *ptr, size_t size)
{
    (void)data;
    return realloc(ptr, size);
}

static void libc_free(void *data, void *ptr)
{
    (void)data;
    free(ptr);
}

static const struct rfs_heap libc_heap = {NULL, libc_malloc, libc_realloc,
                                          libc_free};
static const struct rfs_heap *heap = &libc_heap;

void *rfs_malloc(size_t size)
{
    return heap->malloc(heap->data, size);
}

void *rfs_calloc(size_t nmemb, size_t size)
{
    if (size != 0 && nmemb > (size_t)-1 / size) {
        return NULL;
    }
    void *p = heap->malloc(heap->data, nmemb * size);
    if (p != NULL) {
        memset(p, 0, nmemb * size);
    }
    return p;
}

void *rfs_realloc(void *ptr, size_t size)
{
    return heap->realloc(heap->data, ptr, size);
}

void rfs_free(void *ptr)
{
    if (ptr != NULL) {
        heap->free(heap->data, ptr);
    }
}

void *rfs_memdup(const void *src, size_t len)
{
    if (len == 0) {
        return NULL;
    }
    void *p = rfs_malloc(len);
    if (p != NULL) {
        memcpy(p, src, len);
    }
    return p;
}

void rfs_heap_set(const struct rfs_heap *h)
{
    heap = h != NULL ? h : &libc_heap;
}
