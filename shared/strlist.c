/* The owned string list (strlist.h). */
#include "shared/strlist.h"

#include <stdlib.h>
#include <string.h>

int strlist_add(strlist *l, const char *s)
{
    char *copy = strdup(s);
    char **items = copy ? realloc(l->items, (l->count + 1) * sizeof(*items)) : NULL;
    if (!items) {
        free(copy);
        return -1;
    }
    l->items = items;
    l->items[l->count++] = copy;
    return 0;
}

int strlist_copy(strlist *dst, const strlist *src)
{
    for (size_t i = 0; i < src->count; i++)
        if (strlist_add(dst, src->items[i]) < 0)
            return -1;
    return 0;
}

void strlist_clear(strlist *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

bool strlist_equal(const strlist *a, const strlist *b)
{
    if (a->count != b->count)
        return false;
    for (size_t i = 0; i < a->count; i++)
        if (strcmp(a->items[i], b->items[i]) != 0)
            return false;
    return true;
}
