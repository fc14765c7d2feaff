/* A growable byte buffer with a hard cap, so input from outside can never grow it without
 * bound. Bytes live in data[start, len); consumed bytes are dropped from the front lazily. */
#ifndef HEARTH_BUF_H
#define HEARTH_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
    char *data;
    size_t start; /* first unconsumed byte */
    size_t len;   /* end of valid bytes */
    size_t cap;   /* allocated */
    size_t max;   /* never grow past this; 0 = no cap */
} buf;

void buf_init(buf *b, size_t max);
void buf_free(buf *b);
static inline char *buf_head(const buf *b)
{
    return b->data + b->start;
}
static inline size_t buf_used(const buf *b)
{
    return b->len - b->start;
}
/* Make room for at least n more bytes at the end; -1 if that would pass max or malloc fails. */
int buf_reserve(buf *b, size_t n);
/* Space at the end after buf_reserve(); commit what was written with buf_commit(). */
static inline char *buf_tail(const buf *b)
{
    return b->data + b->len;
}
static inline size_t buf_room(const buf *b)
{
    return b->cap - b->len;
}
static inline void buf_commit(buf *b, size_t n)
{
    b->len += n;
}
int buf_append(buf *b, const void *p, size_t n);
int buf_append_str(buf *b, const char *s);
int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf *b, const char *fmt, va_list ap);
/* Drop n bytes from the front. */
void buf_consume(buf *b, size_t n);
/* Move the unconsumed bytes to the front of the allocation. */
void buf_compact(buf *b);
void buf_reset(buf *b);

#endif
