/* libFuzzer target for the HTTP parser: parses the input as requests and as responses, whole,
 * split at an offset taken from the data and byte by byte, and checks all runs agree. */
#include "shared/http_parser.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HDRS 24
#define MAX_MSGS 8

/* Invariants are checked with abort() so libFuzzer reports them like crashes. */
#define ENSURE(cond)                                                                               \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

typedef struct {
    http_parse_result head, body;
    http_error error;
    http_parser p;
    http_header h[MAX_HDRS];
    size_t start, end;         /* end: where the body stopped, SIZE_MAX while the head is pending */
    size_t body_off, body_len; /* decoded bytes of this message in the run's body buffer */
    size_t trailer_len;        /* trailer section bytes handed out (responses keep theirs) */
} msg;

typedef struct {
    const uint8_t *in;
    size_t n;
    http_kind kind;
    const http_limits *limits;
    bool to_head;
    http_parser p;
    http_header h[MAX_HDRS];
    msg m[MAX_MSGS];
    int count;
    size_t base, bodypos;
    bool in_body, stopped;
    uint8_t *body; /* decoded bytes of all messages; never more than the input */
    size_t body_len;
} run;

static bool in_head(http_span s, size_t head_len)
{
    return s.off <= head_len && s.len <= head_len - s.off;
}

static void check_field(const char *buf, const http_header *h, size_t head_len)
{
    ENSURE(in_head(h->name, head_len) && in_head(h->value, head_len));
    ENSURE(h->name.len > 0);
    for (size_t i = 0; i < h->name.len; i++)
        ENSURE(http_is_tchar((unsigned char)buf[h->name.off + i]));
    for (size_t i = 0; i < h->value.len; i++) {
        unsigned char c = (unsigned char)buf[h->value.off + i];
        ENSURE(c == '\t' || (c >= 0x20 && c != 0x7f));
        if (i == 0 || i == h->value.len - 1)
            ENSURE(c != ' ' && c != '\t');
    }
}

static void check_head(const http_parser *p, const char *buf, size_t avail)
{
    ENSURE(p->error == HTTP_OK && p->head_len <= avail && p->head_len >= 4);
    ENSURE(p->head_len <= p->limits.max_header_bytes);
    ENSURE(buf[p->head_len - 1] == '\n' && buf[p->head_len - 2] == '\r');
    ENSURE(p->version_minor == 0 || p->version_minor == 1);
    ENSURE(p->header_count <= MAX_HDRS && p->header_count <= p->limits.max_header_count);
    if (p->kind == HTTP_KIND_REQUEST) {
        ENSURE(in_head(p->method, p->head_len) && in_head(p->target, p->head_len));
        ENSURE(p->method.len > 0 && p->target.len > 0);
        ENSURE(p->body_kind == HTTP_BODY_NONE || p->body_kind == HTTP_BODY_LENGTH ||
               p->body_kind == HTTP_BODY_CHUNKED);
    } else {
        ENSURE(in_head(p->reason, p->head_len));
        ENSURE(p->status >= 100 && p->status <= 599);
    }
    for (size_t i = 0; i < p->header_count; i++)
        check_field(buf, &p->headers[i], p->head_len);
}

static void check_error(http_error e)
{
    ENSURE(e > HTTP_OK && e < HTTP_E__COUNT);
    int st = http_error_status(e);
    ENSURE(st == 400 || st == 413 || st == 414 || st == 431 || st == 501 || st == 505);
    ENSURE(http_error_reason(e) != NULL);
}

static void next_message(run *r)
{
    http_parser_reset(&r->p);
    r->p.response_to_head = r->to_head;
    r->p.keep_trailer = r->kind == HTTP_KIND_RESPONSE;
    r->in_body = false;
}

static bool head_step(run *r, size_t avail)
{
    if (r->base == avail || (r->count == MAX_MSGS && r->m[r->count - 1].end != SIZE_MAX))
        return false;
    if (r->count == 0 || r->m[r->count - 1].end != SIZE_MAX) {
        msg *m = &r->m[r->count++];
        memset(m, 0, sizeof(*m));
        m->start = r->base;
        m->end = SIZE_MAX;
        m->body_off = r->body_len;
    }
    msg *m = &r->m[r->count - 1];
    const char *buf = (const char *)r->in + r->base;
    m->head = http_parse_head(&r->p, buf, avail - r->base);
    m->error = r->p.error;
    if (m->head == HTTP_PARSE_AGAIN) {
        ENSURE(r->p.pos == avail - r->base && r->p.error == HTTP_OK);
        return false;
    }
    m->p = r->p;
    memcpy(m->h, r->h, sizeof(m->h));
    if (m->head == HTTP_PARSE_ERROR) {
        check_error(m->error);
        r->stopped = true;
        return false;
    }
    ENSURE(m->head == HTTP_PARSE_DONE);
    check_head(&r->p, buf, avail - r->base);
    r->in_body = true;
    r->bodypos = r->base + r->p.head_len;
    return true;
}

static bool body_step(run *r, size_t avail)
{
    msg *m = &r->m[r->count - 1];
    const char *in = (const char *)r->in + r->bodypos;
    size_t len = avail - r->bodypos, c = SIZE_MAX, dl = SIZE_MAX;
    const char *d = in;
    m->body = http_parse_body(&r->p, in, len, &c, &d, &dl);
    ENSURE(c <= len);
    r->bodypos += c;
    m->error = r->p.error;
    switch (m->body) {
    case HTTP_PARSE_DATA:
        ENSURE(dl > 0 && c > 0 && d >= in && d + dl <= in + c);
        ENSURE(r->body_len + dl <= r->n);
        memcpy(r->body + r->body_len, d, dl);
        r->body_len += dl;
        m->body_len += dl;
        return true;
    case HTTP_PARSE_TRAILER: /* checked field lines, within the head's limit */
        ENSURE(dl > 0 && d >= in && d + dl == in + c && r->p.body_kind == HTTP_BODY_CHUNKED);
        m->trailer_len += dl;
        ENSURE(m->trailer_len <= r->p.limits.max_header_bytes);
        for (size_t i = 0; i < dl; i++)
            ENSURE(d[i] != 0 && (d[i] != '\n' || i == 0 || d[i - 1] == '\r'));
        return true;
    case HTTP_PARSE_AGAIN:
        ENSURE(c == len && dl == 0);
        return false;
    case HTTP_PARSE_ERROR:
        check_error(m->error);
        ENSURE(r->p.body_kind == HTTP_BODY_CHUNKED);
        m->end = r->bodypos;
        r->stopped = true;
        return false;
    default:
        ENSURE(m->body == HTTP_PARSE_DONE && dl == 0);
        ENSURE(r->p.body_kind != HTTP_BODY_UNTIL_CLOSE);
        m->end = r->bodypos;
        r->base = r->bodypos;
        next_message(r);
        return true;
    }
}

static void feed(run *r, size_t avail)
{
    while (!r->stopped && (r->in_body ? body_step(r, avail) : head_step(r, avail)))
        ;
}

static void run_init(run *r, const uint8_t *in, size_t n, http_kind kind, const http_limits *lim,
                     bool to_head)
{
    memset(r, 0, sizeof(*r));
    r->in = in;
    r->n = n;
    r->kind = kind;
    r->limits = lim;
    r->to_head = to_head;
    r->body = malloc(n + 1);
    ENSURE(r->body != NULL);
    http_parser_init(&r->p, kind, lim, r->h, MAX_HDRS);
    r->p.response_to_head = to_head;
    r->p.keep_trailer = kind == HTTP_KIND_RESPONSE;
}

static bool span_eq(http_span a, http_span b)
{
    return a.off == b.off && a.len == b.len;
}

static void same_head(const msg *a, const msg *b)
{
    const http_parser *p = &a->p, *q = &b->p;
    ENSURE(span_eq(p->method, q->method) && span_eq(p->target, q->target));
    ENSURE(span_eq(p->reason, q->reason) && p->status == q->status);
    ENSURE(p->version_minor == q->version_minor && p->head_len == q->head_len);
    ENSURE(p->header_count == q->header_count && p->body_kind == q->body_kind);
    ENSURE(p->content_length == q->content_length && p->keep_alive == q->keep_alive);
    ENSURE(p->upgrade == q->upgrade && p->expect_continue == q->expect_continue);
    for (size_t i = 0; i < p->header_count; i++)
        ENSURE(span_eq(a->h[i].name, b->h[i].name) && span_eq(a->h[i].value, b->h[i].value));
}

static void same_outcome(const run *a, const run *b)
{
    ENSURE(a->count == b->count && a->body_len == b->body_len);
    ENSURE(memcmp(a->body, b->body, a->body_len) == 0);
    for (int i = 0; i < a->count; i++) {
        const msg *x = &a->m[i], *y = &b->m[i];
        ENSURE(x->head == y->head && x->error == y->error && x->start == y->start);
        if (x->head != HTTP_PARSE_DONE)
            continue;
        same_head(x, y);
        ENSURE(x->body == y->body && x->end == y->end && x->body_len == y->body_len);
        /* a refused section may have been handed out in part, more of it the smaller the steps */
        ENSURE(x->body != HTTP_PARSE_DONE || x->trailer_len == y->trailer_len);
    }
}

static void parse_three_ways(const uint8_t *in, size_t n, size_t cut, http_kind kind,
                             const http_limits *lim, bool to_head)
{
    static run whole, split, bytes;
    run_init(&whole, in, n, kind, lim, to_head);
    feed(&whole, n);
    run_init(&split, in, n, kind, lim, to_head);
    feed(&split, cut);
    feed(&split, n);
    run_init(&bytes, in, n, kind, lim, to_head);
    for (size_t i = 1; i <= n; i++)
        feed(&bytes, i);
    same_outcome(&whole, &split);
    same_outcome(&whole, &bytes);
    free(whole.body);
    free(split.body);
    free(bytes.body);
}

/* Small limits let short inputs reach every limit check. */
static void choose_limits(uint8_t flags, http_limits *lim)
{
    http_limits_default(lim);
    if (flags & 2) {
        lim->max_request_line = 24;
        lim->max_header_count = 4;
        lim->max_header_bytes = 96;
        lim->max_chunk_ext = 6;
        lim->max_body = 32;
    }
    if (flags & 4)
        lim->max_body = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t flags = data[0];
    size_t n = size - 3;
    size_t cut = ((size_t)data[1] | (size_t)data[2] << 8) % (n + 1);
    http_limits lim;
    choose_limits(flags, &lim);
    parse_three_ways(data + 3, n, cut, HTTP_KIND_REQUEST, &lim, false);
    parse_three_ways(data + 3, n, cut, HTTP_KIND_RESPONSE, &lim, flags & 1);
    return 0;
}
