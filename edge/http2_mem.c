/* nghttp2's memory for one connection's session. Two of its blocks stay for the session's whole
 * life, idle or not, and are most of what an idle h2 connection costs: the buffer it writes
 * frames into (16 KiB and a frame header) and the table of its streams (4 KiB, all zeros while
 * no stream is open). Blocks like these are given whole pages here, so that while the
 * connection is idle the kernel can take them back (MADV_DONTNEED: the pages read as zeros when
 * next touched): the frame buffer always, since nghttp2 writes a whole frame there before it
 * reads any; any other block only when it reads as zeros already, which it then still does. */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "edge/http2.h"

/* A block grown by realloc to this size is the frame buffer (nghttp2 grows no other block that
 * far; its other big blocks, a long field's value say, are malloc's and short-lived). */
#define FRAME_BUFFER 16384
#define PAGE 4096
#define SLOTS (sizeof(((h2_conn *)0)->pages) / sizeof(((h2_conn *)0)->pages[0]))

static bool paged(size_t size)
{
    return size >= FRAME_BUFFER || (size > 0 && size % PAGE == 0);
}

static size_t whole_pages(size_t size)
{
    return (size + PAGE - 1) / PAGE * PAGE;
}

/* The slot holding block p, or with p NULL a free slot; -1 if none. */
static int slot_of(h2_conn *h, const void *p)
{
    for (int i = 0; i < (int)SLOTS; i++)
        if (h->pages[i].p == p)
            return i;
    return -1;
}

static void *page_alloc(h2_conn *h, size_t size, bool scratch)
{
    size_t whole = whole_pages(size);
    void *p = whole <= UINT32_MAX ? aligned_alloc(PAGE, whole) : NULL;
    int i = p ? slot_of(h, NULL) : -1;
    if (i >= 0) {
        h->pages[i].p = p;
        h->pages[i].size = (uint32_t)whole;
        h->pages[i].scratch = scratch;
    }
    return p; /* no free slot: a block like any other, never released */
}

static void mem_free(void *p, void *user)
{
    h2_conn *h = user;
    int i = p ? slot_of(h, p) : -1;
    if (i >= 0)
        h->pages[i].p = NULL;
    free(p);
}

static void *mem_malloc(size_t size, void *user)
{
    return paged(size) ? page_alloc(user, size, false) : malloc(size);
}

static void *mem_calloc(size_t n, size_t size, void *user)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    if (!paged(n * size))
        return calloc(n, size);
    void *p = page_alloc(user, n * size, false);
    if (p)
        memset(p, 0, n * size);
    return p;
}

static void *mem_realloc(void *p, size_t size, void *user)
{
    h2_conn *h = user;
    if (!paged(size) && (!p || slot_of(h, p) < 0))
        return realloc(p, size);
    void *q = paged(size) ? page_alloc(h, size, size >= FRAME_BUFFER) : malloc(size);
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

/* Whether a block reads as zeros. (Not asked of the kernel with mincore: a page swapped out
 * is not resident either.) */
static bool all_zero(const unsigned char *p, size_t size)
{
    return p[0] == 0 && memcmp(p, p + 1, size - 1) == 0;
}

void h2_mem_idle(h2_conn *h)
{
    if (h->pages_released || nghttp2_session_want_write(h->session))
        return;
    for (size_t i = 0; i < SLOTS; i++)
        if (h->pages[i].p && (h->pages[i].scratch || all_zero(h->pages[i].p, h->pages[i].size)))
            madvise(h->pages[i].p, h->pages[i].size, MADV_DONTNEED);
    h->pages_released = true;
}
