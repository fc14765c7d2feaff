/* Growable byte buffer with a hard cap; see buf.h. */
#include "shared/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void buf_free(buf *b)
{
    free(b->data);
    b->data = NULL;
    b->start = b->len = b->cap = 0;
}

void buf_compact(buf *b)
{
    if (b->start == 0)
        return;
    memmove(b->data, b->data + b->start, b->len - b->start);
    b->len -= b->start;
    b->start = 0;
}

int buf_reserve(buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return 0;
    if (b->start > 0) {
        buf_compact(b);
        if (b->cap - b->len >= n)
            return 0;
    }
    if (n > SIZE_MAX - b->len)
        return -1;
    size_t need = b->len + n;
    if (b->max && need > b->max)
        return -1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (b->max && cap > b->max)
        cap = b->max;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append(buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int buf_append_str(buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_vprintf(buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || buf_reserve(b, (size_t)n + 1) < 0)
        return -1;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void buf_consume(buf *b, size_t n)
{
    if (n >= b->len - b->start) {
        b->start = b->len = 0;
        return;
    }
    b->start += n;
}

void buf_reset(buf *b)
{
    b->start = b->len = 0;
}
