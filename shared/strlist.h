/* A list of owned strings: the config's lists (addresses, modules, aliases) and the flags that
 * add to them. One type and one set of helpers, so every list is grown and freed one way. */
#ifndef HEARTH_STRLIST_H
#define HEARTH_STRLIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char **items; /* each malloc'ed, owned by the list */
    size_t count;
} strlist;

/* Appends a copy of s. -1 when out of memory (the list is unchanged). */
int strlist_add(strlist *l, const char *s);
/* Appends copies of every item of src. -1 when out of memory (what was added stays). */
int strlist_copy(strlist *dst, const strlist *src);
/* Frees every item and the array; the list is then empty (clearing twice is harmless). */
void strlist_clear(strlist *l);
bool strlist_equal(const strlist *a, const strlist *b);

#endif
