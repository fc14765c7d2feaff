/* nghttp2's memory for one connection's session. Every session keeps the buffer it writes
 * frames into (16 KiB and a frame header) for as long as it lives, idle or not: a third of an
 * idle h2 connection's cost. Blocks that large are given whole pages here, so that while the
 * connection has nothing to send the kernel can take them back (MADV_DONTNEED: the pages read
 * as zeros when next touched, and nghttp2 writes a whole frame there before it reads any). */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "edge/http2.h"

#define BIG_BLOCK 16384
#define PAGE 4096

static size_t pages(size_t size)
{
    return (size + PAGE - 1) / PAGE * PAGE;
}

static int slot_of(h2_conn *h, const void *p)
{
    for (int i = 0; p && i < (int)(sizeof(h->big) / sizeof(h->big[0])); i++)
        if (h->big[i].p == p)
            return i;
    return -1;
}

static void *big_alloc(h2_conn *h, size_t size)
{
    size_t whole = pages(size);
    void *p = aligned_alloc(PAGE, whole);
    int i = p ? slot_of(h, NULL) : -1;
    for (int k = 0; p && i < 0 && k < (int)(sizeof(h->big) / sizeof(h->big[0])); k++)
        if (!h->big[k].p)
            i = k;
    if (i >= 0)
        h->big[i].p = p, h->big[i].size = whole;
    return p; /* no free slot: a block like any other, never released */
}

static void mem_free(void *p, void *user)
{
    h2_conn *h = user;
    int i = slot_of(h, p);
    if (i >= 0)
        h->big[i].p = NULL;
    free(p);
}

static void *mem_malloc(size_t size, void *user)
{
    return size >= BIG_BLOCK ? big_alloc(user, size) : malloc(size);
}

static void *mem_calloc(size_t n, size_t size, void *user)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    if (n * size < BIG_BLOCK)
        return calloc(n, size);
    void *p = big_alloc(user, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

static void *mem_realloc(void *p, size_t size, void *user)
{
    h2_conn *h = user;
    if (size < BIG_BLOCK && slot_of(h, p) < 0)
        return realloc(p, size);
    void *q = size >= BIG_BLOCK ? big_alloc(h, size) : malloc(size);
    if (q && p) {
        size_t old = malloc_usable_size(p);
        memcpy(q, p, old < size ? old : size);
        mem_free(p, h);
    }
    return q;
}

nghttp2_mem h2_mem(h2_conn *h)
{
    return (nghttp2_mem){.mem_user_data = h,
                         .malloc = mem_malloc,
                         .free = mem_free,
                         .calloc = mem_calloc,
                         .realloc = mem_realloc};
}

void h2_mem_idle(h2_conn *h)
{
    if (h->big_released || nghttp2_session_want_write(h->session))
        return;
    for (size_t i = 0; i < sizeof(h->big) / sizeof(h->big[0]); i++)
        if (h->big[i].p)
            madvise(h->big[i].p, h->big[i].size, MADV_DONTNEED);
    h->big_released = true;
}
