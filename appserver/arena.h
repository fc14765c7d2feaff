/* A per-request bump allocator: everything a request needs (decoded strings, parsed query,
 * form and cookie pairs) is freed at once when the response has been built. */
#ifndef APPSERVER_ARENA_H
#define APPSERVER_ARENA_H

#include <stddef.h>

typedef struct arena_block arena_block;

typedef struct {
    arena_block *head;
} arena;

void arena_init(arena *a);
void *arena_alloc(arena *a, size_t n); /* NULL when out of memory */
char *arena_strndup(arena *a, const char *s, size_t n);
/* Free all but the first block, so the next request reuses it. */
void arena_reset(arena *a);
void arena_free(arena *a);

#endif
