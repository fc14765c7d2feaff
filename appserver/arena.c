/* Bump allocation in blocks of 8 KiB (bigger requests get a block of their own). */
#include "appserver/arena.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK 8192

struct arena_block {
    arena_block *next;
    size_t used, cap;
    _Alignas(16) char data[];
};

void arena_init(arena *a)
{
    a->head = NULL;
}

static arena_block *block_new(size_t cap)
{
    arena_block *b = malloc(sizeof *b + cap);
    if (b) {
        b->next = NULL;
        b->used = 0;
        b->cap = cap;
    }
    return b;
}

void *arena_alloc(arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->cap - a->head->used < n) {
        arena_block *b = block_new(n > ARENA_BLOCK ? n : ARENA_BLOCK);
        if (!b)
            return NULL;
        b->next = a->head;
        a->head = b;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    return p;
}

char *arena_strndup(arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

void arena_reset(arena *a)
{
    while (a->head && a->head->next) {
        arena_block *b = a->head;
        a->head = b->next;
        free(b);
    }
    if (a->head)
        a->head->used = 0;
}

void arena_free(arena *a)
{
    arena_reset(a);
    free(a->head);
    a->head = NULL;
}
