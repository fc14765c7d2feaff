/* Unit tests of the strict HTTP/1.1 parser: every refusal with its error and status, valid
 * messages (pipelined too), each fed whole, split at every offset, byte by byte. */
#include "shared/http_parser.h"
#include "tests/unit/check.h"

#include <stdint.h>

#define MAX_MSGS 6
#define MAX_HDRS 16
#define MAX_BODY 1024

/* What a connection sees parsing a buffer of pipelined messages. */
typedef struct {
    http_parse_result head_res;
    http_parse_result body_res; /* AGAIN when the input ran out first */
    http_error error;
    http_parser p; /* the parser once the head is parsed */
    http_header headers[MAX_HDRS];
    size_t start, end; /* message offsets in the input; end is where the body stopped */
    char body[MAX_BODY];
    size_t body_len;
} msg_outcome;

typedef struct {
    int count;
    msg_outcome m[MAX_MSGS];
    const char *broken; /* first driver invariant that failed, NULL if none */
} outcome;

/* A body and its trailer section as a caller keeping trailers collects them. */
typedef struct {
    char body[256], trailer[256];
    size_t body_len, trailer_len, end;
} buf_pair;

typedef struct {
    http_kind kind;
    http_limits limits;
    bool response_to_head;
} setup;

static setup req_setup(void)
{
    setup s = {.kind = HTTP_KIND_REQUEST};
    http_limits_default(&s.limits);
    return s;
}

static setup resp_setup(void)
{
    setup s = req_setup();
    s.kind = HTTP_KIND_RESPONSE;
    return s;
}

typedef struct {
    const setup *su;
    const char *s;
    size_t n;
    outcome *out;
    http_parser p;
    http_header headers[MAX_HDRS];
    size_t base, bodypos;
    bool in_body, stopped;
} run_state;

static void start_message(run_state *r)
{
    http_parser_reset(&r->p);
    r->p.response_to_head = r->su->response_to_head;
    r->in_body = false;
}

/* Driver invariants are checked on every call but counted once per message (see
 * parse_everywhere), so the pass count says how many things were tested, not how many calls. */
#define ENSURE(r, cond)                                                                            \
    do {                                                                                           \
        if (!(cond) && !(r)->out->broken)                                                          \
            (r)->out->broken = #cond;                                                              \
    } while (0)

static msg_outcome *current(run_state *r)
{
    return &r->out->m[r->out->count - 1];
}

static void append_body(run_state *r, const char *data, size_t len, const char *in, size_t c)
{
    msg_outcome *m = current(r);
    ENSURE(r, data >= in && data + len <= in + c);
    if (m->body_len + len <= MAX_BODY) {
        memcpy(m->body + m->body_len, data, len);
        m->body_len += len;
    }
}

/* Drives the parser over the bytes available so far; false once nothing more can happen. */
static bool step_head(run_state *r, size_t avail)
{
    if (r->base == avail || r->out->count == MAX_MSGS)
        return false;
    if (r->out->count == 0 || current(r)->end != SIZE_MAX) {
        r->out->count++;
        memset(current(r), 0, sizeof(msg_outcome));
        current(r)->start = r->base;
        current(r)->end = SIZE_MAX;
    }
    msg_outcome *m = current(r);
    m->head_res = http_parse_head(&r->p, r->s + r->base, avail - r->base);
    m->error = r->p.error;
    if (m->head_res == HTTP_PARSE_AGAIN) {
        ENSURE(r, r->p.pos == avail - r->base); /* resumable: nothing left to rescan */
        return false;
    }
    m->p = r->p;
    memcpy(m->headers, r->headers, sizeof(m->headers));
    if (m->head_res == HTTP_PARSE_ERROR) {
        m->end = r->base;
        r->stopped = true;
        return false;
    }
    ENSURE(r, r->p.head_len <= avail - r->base);
    r->in_body = true;
    r->bodypos = r->base + r->p.head_len;
    return true;
}

static bool step_body(run_state *r, size_t avail)
{
    msg_outcome *m = current(r);
    size_t c;
    const char *data;
    size_t dl;
    const char *in = r->s + r->bodypos;
    m->body_res = http_parse_body(&r->p, in, avail - r->bodypos, &c, &data, &dl);
    ENSURE(r, c <= avail - r->bodypos);
    r->bodypos += c;
    m->error = r->p.error;
    if (m->body_res == HTTP_PARSE_DATA) {
        ENSURE(r, dl > 0 && c > 0);
        append_body(r, data, dl, in, c);
        return true;
    }
    if (m->body_res == HTTP_PARSE_AGAIN)
        return false;
    m->end = r->bodypos;
    if (m->body_res == HTTP_PARSE_ERROR) {
        r->stopped = true;
        return false;
    }
    r->base = r->bodypos;
    start_message(r);
    return true;
}

static void feed(run_state *r, size_t avail)
{
    for (;;) {
        if (r->stopped)
            return;
        bool more = r->in_body ? step_body(r, avail) : step_head(r, avail);
        if (!more)
            return;
    }
}

/* Feeds s[0, n): arrivals of `step` bytes, or (step == 0) two pieces split at `cut`. */
static void run(const setup *su, const char *s, size_t n, size_t step, size_t cut, outcome *out)
{
    run_state r = {.su = su, .s = s, .n = n, .out = out};
    memset(out, 0, sizeof(*out));
    http_parser_init(&r.p, su->kind, &su->limits, r.headers, MAX_HDRS);
    r.p.response_to_head = su->response_to_head;
    if (step == 0) {
        feed(&r, cut);
        feed(&r, n);
        return;
    }
    for (size_t avail = 0; avail < n;) {
        avail = avail + step < n ? avail + step : n;
        feed(&r, avail);
    }
}

static bool span_same(http_span a, http_span b)
{
    return a.off == b.off && a.len == b.len;
}

static bool head_same(const msg_outcome *a, const msg_outcome *b)
{
    const http_parser *p = &a->p, *q = &b->p;
    if (!span_same(p->method, q->method) || !span_same(p->target, q->target) ||
        !span_same(p->reason, q->reason))
        return false;
    if (p->version_minor != q->version_minor || p->status != q->status ||
        p->header_count != q->header_count || p->head_len != q->head_len ||
        p->body_kind != q->body_kind || p->content_length != q->content_length ||
        p->keep_alive != q->keep_alive || p->upgrade != q->upgrade ||
        p->expect_continue != q->expect_continue)
        return false;
    for (size_t i = 0; i < p->header_count && i < MAX_HDRS; i++)
        if (!span_same(a->headers[i].name, b->headers[i].name) ||
            !span_same(a->headers[i].value, b->headers[i].value))
            return false;
    return true;
}

static bool msg_same(const msg_outcome *a, const msg_outcome *b)
{
    if (a->head_res != b->head_res || a->error != b->error || a->start != b->start)
        return false;
    if (a->head_res != HTTP_PARSE_DONE)
        return true;
    return head_same(a, b) && a->body_res == b->body_res && a->end == b->end &&
           a->body_len == b->body_len && memcmp(a->body, b->body, a->body_len) == 0;
}

static bool outcome_same(const outcome *a, const outcome *b)
{
    if (a->count != b->count)
        return false;
    for (int i = 0; i < a->count; i++)
        if (!msg_same(&a->m[i], &b->m[i]))
            return false;
    return true;
}

/* Whole, then split at every offset, then in 1, 2, 3 and 7 byte arrivals: the same outcome
 * and no broken driver invariant. Counted as one check per message. */
static void parse_everywhere(const setup *su, const char *s, size_t n, outcome *whole, int line)
{
    static outcome other;
    static const size_t steps[] = {0, 1, 2, 3, 7};
    run(su, s, n, 0, n, whole);
    const char *broken = whole->broken;
    size_t bad_cut = SIZE_MAX, bad_step = SIZE_MAX;
    for (size_t cut = 0; cut <= n && bad_cut == SIZE_MAX; cut++) {
        run(su, s, n, 0, cut, &other);
        broken = broken ? broken : other.broken;
        if (!outcome_same(whole, &other))
            bad_cut = cut;
    }
    for (size_t i = 1; i < sizeof(steps) / sizeof(steps[0]) && bad_step == SIZE_MAX; i++) {
        run(su, s, n, steps[i], 0, &other);
        broken = broken ? broken : other.broken;
        if (!outcome_same(whole, &other))
            bad_step = steps[i];
    }
    CHECK_MSG(bad_cut == SIZE_MAX && bad_step == SIZE_MAX && !broken,
              "line %d: differs from whole when split at %lld / in %lld-byte steps (-1: no); "
              "broken invariant: %s",
              line, (long long)bad_cut, (long long)bad_step, broken ? broken : "none");
}

/* ---- refusals ---- */

static void refuse_with(const setup *su, const char *s, size_t n, http_error err, int status,
                        int line)
{
    static outcome o;
    parse_everywhere(su, s, n, &o, line);
    const msg_outcome *last = &o.m[o.count > 0 ? o.count - 1 : 0];
    CHECK_MSG(o.count > 0 && last->error == err, "line %d: error %d (%s), want %d (%s)", line,
              last->error, http_error_reason(last->error), err, http_error_reason(err));
    CHECK_MSG(http_error_status(err) == status, "line %d: status %d, want %d", line,
              http_error_status(err), status);
}

#define LIT(s) s, sizeof(s) - 1
#define REFUSE_REQ(s, err, status)                                                                 \
    do {                                                                                           \
        setup su_ = req_setup();                                                                   \
        refuse_with(&su_, LIT(s), err, status, __LINE__);                                          \
    } while (0)
#define REFUSE_RESP(s, err, status)                                                                \
    do {                                                                                           \
        setup su_ = resp_setup();                                                                  \
        refuse_with(&su_, LIT(s), err, status, __LINE__);                                          \
    } while (0)
#define REFUSE_LIM(lim, s, err, status)                                                            \
    do {                                                                                           \
        setup su_ = req_setup();                                                                   \
        su_.limits = (lim);                                                                        \
        refuse_with(&su_, LIT(s), err, status, __LINE__);                                          \
    } while (0)

#define CHUNKED_HEAD "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
#define H11 "\r\nHost: a\r\n"

static void test_framing_refusals(void)
{
    REFUSE_REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: "
               "chunked\r\n\r\nhello",
               HTTP_E_CL_AND_TE, 400);
    REFUSE_REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: "
               "5\r\n\r\n",
               HTTP_E_CL_AND_TE, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
               HTTP_E_DUP_CL, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
               HTTP_E_DUP_CL, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Content-Length: 5, 5\r\n\r\n", HTTP_E_DUP_CL, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Content-Length: 5,5\r\n\r\n", HTTP_E_DUP_CL, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Content-Length:\r\n\r\n", HTTP_E_BAD_CL, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Content-Length:   \r\n\r\n", HTTP_E_BAD_CL, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Content-Length: +5\r\n\r\n", HTTP_E_BAD_CL, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Content-Length: -5\r\n\r\n", HTTP_E_BAD_CL, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Content-Length: 5a\r\n\r\n", HTTP_E_BAD_CL, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Content-Length: 0x5\r\n\r\n", HTTP_E_BAD_CL, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Content-Length: 5 5\r\n\r\n", HTTP_E_BAD_CL, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Content-Length: 5.0\r\n\r\n", HTTP_E_BAD_CL, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Content-Length: 18446744073709551616\r\n\r\n", HTTP_E_BAD_CL,
               400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Content-Length: 99999999999999999999999\r\n\r\n",
               HTTP_E_BAD_CL, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Transfer-Encoding: gzip\r\n\r\n", HTTP_E_TE_NOT_CHUNKED, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Transfer-Encoding: chunked, gzip\r\n\r\n",
               HTTP_E_TE_NOT_CHUNKED, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Transfer-Encoding:\r\n\r\n", HTTP_E_TE_NOT_CHUNKED, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Transfer-Encoding: chunked;q=1\r\n\r\n",
               HTTP_E_TE_NOT_CHUNKED, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Transfer-Encoding: xchunked\r\n\r\n", HTTP_E_TE_NOT_CHUNKED,
               400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Transfer-Encoding: chunked, chunked\r\n\r\n",
               HTTP_E_TE_CHUNKED_TWICE, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11
               "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
               HTTP_E_TE_CHUNKED_TWICE, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n", HTTP_E_TE_UNKNOWN,
               501);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: "
               "chunked\r\n\r\n",
               HTTP_E_TE_UNKNOWN, 501);
    REFUSE_REQ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_E_TE_HTTP10, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Transfer-Encoding: ,chunked\r\n\r\n", HTTP_E_TE_EMPTY_ELEMENT,
               400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Transfer-Encoding: chunked,\r\n\r\n", HTTP_E_TE_EMPTY_ELEMENT,
               400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Transfer-Encoding: , chunked ,\r\n\r\n",
               HTTP_E_TE_EMPTY_ELEMENT, 400);
    REFUSE_REQ("POST / HTTP/1.1" H11 "Transfer-Encoding: gzip,,chunked\r\n\r\n",
               HTTP_E_TE_EMPTY_ELEMENT, 400);
    REFUSE_RESP("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_E_TE_HTTP10, 400);
    REFUSE_RESP("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", HTTP_E_DUP_CL,
                400);
}

static void test_chunk_refusals(void)
{
    REFUSE_REQ(CHUNKED_HEAD "0x5\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_SIZE, 400);
    REFUSE_REQ(CHUNKED_HEAD "+5\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_SIZE, 400);
    REFUSE_REQ(CHUNKED_HEAD "-5\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_SIZE, 400);
    REFUSE_REQ(CHUNKED_HEAD "_5\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_SIZE, 400);
    REFUSE_REQ(CHUNKED_HEAD "5_0\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_SIZE, 400);
    REFUSE_REQ(CHUNKED_HEAD " 5\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_SIZE, 400);
    REFUSE_REQ(CHUNKED_HEAD "5 \r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_SIZE, 400);
    REFUSE_REQ(CHUNKED_HEAD "5 ;a\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_SIZE, 400);
    REFUSE_REQ(CHUNKED_HEAD "\t5\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_SIZE, 400);
    REFUSE_REQ(CHUNKED_HEAD "\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_SIZE, 400);
    REFUSE_REQ(CHUNKED_HEAD ";a\r\n", HTTP_E_BAD_CHUNK_SIZE, 400);
    REFUSE_REQ(CHUNKED_HEAD "g\r\n", HTTP_E_BAD_CHUNK_SIZE, 400);
    REFUSE_REQ(CHUNKED_HEAD "00000000000000005\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_SIZE, 400);
    REFUSE_REQ(CHUNKED_HEAD "10000000000000000\r\n", HTTP_E_BAD_CHUNK_SIZE, 400);
    /* size lines and data not ended by CRLF */
    REFUSE_REQ(CHUNKED_HEAD "5\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_END, 400);
    REFUSE_REQ(CHUNKED_HEAD "5\rhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_END, 400);
    REFUSE_REQ(CHUNKED_HEAD "5;a=b\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_END, 400);
    REFUSE_REQ(CHUNKED_HEAD "5\r\nhello\n0\r\n\r\n", HTTP_E_BAD_CHUNK_END, 400);
    REFUSE_REQ(CHUNKED_HEAD "5\r\nhello\r0\r\n\r\n", HTTP_E_BAD_CHUNK_END, 400);
    REFUSE_REQ(CHUNKED_HEAD "5\r\nhelloXX0\r\n\r\n", HTTP_E_BAD_CHUNK_END, 400);
    REFUSE_REQ(CHUNKED_HEAD "5\r\nhello world\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_END, 400);
    REFUSE_REQ(CHUNKED_HEAD "0\n\r\n", HTTP_E_BAD_CHUNK_END, 400);
    /* extensions */
    REFUSE_REQ(CHUNKED_HEAD "5;\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_EXT, 400);
    REFUSE_REQ(CHUNKED_HEAD "5;a=\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_EXT, 400);
    REFUSE_REQ(CHUNKED_HEAD "5;a =b\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_EXT, 400);
    REFUSE_REQ(CHUNKED_HEAD "5;a=\"b\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_EXT, 400);
    REFUSE_REQ(CHUNKED_HEAD "5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_EXT, 400);
    REFUSE_REQ(CHUNKED_HEAD "5;a\x01\r\nhello\r\n0\r\n\r\n", HTTP_E_BAD_CHUNK_EXT, 400);
    /* trailers */
    REFUSE_REQ(CHUNKED_HEAD "0\r\nX: a\r\n b\r\n\r\n", HTTP_E_BAD_TRAILER, 400);
    REFUSE_REQ(CHUNKED_HEAD "0\r\n X: a\r\n\r\n", HTTP_E_BAD_TRAILER, 400);
    REFUSE_REQ(CHUNKED_HEAD "0\r\nX: a\n\r\n", HTTP_E_BAD_TRAILER, 400);
    REFUSE_REQ(CHUNKED_HEAD "0\r\nX a\r\n\r\n", HTTP_E_BAD_TRAILER, 400);
    REFUSE_REQ(CHUNKED_HEAD "0\r\nX : a\r\n\r\n", HTTP_E_BAD_TRAILER, 400);
    REFUSE_REQ(CHUNKED_HEAD "0\r\n: a\r\n\r\n", HTTP_E_BAD_TRAILER, 400);
    REFUSE_REQ(CHUNKED_HEAD "0\r\nX: a\x00\r\n\r\n", HTTP_E_BAD_TRAILER, 400);
    REFUSE_REQ(CHUNKED_HEAD "0\r\n\rX", HTTP_E_BAD_TRAILER, 400);
}

static void test_line_refusals(void)
{
    REFUSE_REQ("GET / HTTP/1.1\nHost: a\r\n\r\n", HTTP_E_BARE_LF, 400);
    REFUSE_REQ("GET / HTTP/1.1\r\nHost: a\n\r\n", HTTP_E_BARE_LF, 400);
    REFUSE_REQ("GET / HTTP/1.1\r\nHost: a\r\n\n", HTTP_E_BARE_LF, 400);
    REFUSE_REQ("\n", HTTP_E_BARE_LF, 400);
    REFUSE_REQ("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", HTTP_E_BARE_CR, 400);
    REFUSE_REQ("GET / HTTP/1.1\r\nHo\rst: a\r\n\r\n", HTTP_E_BARE_CR, 400);
    REFUSE_REQ("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_BARE_CR, 400);
    REFUSE_REQ("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", HTTP_E_BARE_CR, 400);
    REFUSE_REQ("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", HTTP_E_OBS_FOLD, 400);
    REFUSE_REQ("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", HTTP_E_OBS_FOLD, 400);
    REFUSE_REQ("GET / HTTP/1.1\r\n Host: a\r\n\r\n", HTTP_E_OBS_FOLD, 400);
    REFUSE_REQ("GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", HTTP_E_OBS_FOLD, 400);
    REFUSE_REQ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", HTTP_E_SPACE_BEFORE_COLON, 400);
    REFUSE_REQ("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", HTTP_E_SPACE_BEFORE_COLON, 400);
    REFUSE_REQ("GET / HTTP/1.1" H11 "Content-Length : 5\r\n\r\n", HTTP_E_SPACE_BEFORE_COLON, 400);
    REFUSE_REQ("GET / HTTP/1.1" H11 "X Y: 5\r\n\r\n", HTTP_E_BAD_HEADER_NAME, 400);
    REFUSE_REQ("GET / HTTP/1.1" H11 ": 5\r\n\r\n", HTTP_E_BAD_HEADER_NAME, 400);
    REFUSE_REQ("GET / HTTP/1.1" H11 "X(Y): 5\r\n\r\n", HTTP_E_BAD_HEADER_NAME, 400);
    REFUSE_REQ("GET / HTTP/1.1" H11 "X\x80: 5\r\n\r\n", HTTP_E_BAD_HEADER_NAME, 400);
    REFUSE_REQ("GET / HTTP/1.1" H11 "NoColon\r\n\r\n", HTTP_E_NO_COLON, 400);
    REFUSE_REQ("GET / HTTP/1.1" H11 "No Colon\r\n\r\n", HTTP_E_NO_COLON, 400);
    /* control bytes */
    REFUSE_REQ("GET / HTTP/1.1" H11 "X\0Y: 5\r\n\r\n", HTTP_E_CTL_CHAR, 400);
    REFUSE_REQ("GET / HTTP/1.1" H11 "X: a\0b\r\n\r\n", HTTP_E_CTL_CHAR, 400);
    REFUSE_REQ("GET / HTTP/1.1" H11 "X: a\x01\r\n\r\n", HTTP_E_CTL_CHAR, 400);
    REFUSE_REQ("GET / HTTP/1.1" H11 "X: a\x1f\r\n\r\n", HTTP_E_CTL_CHAR, 400);
    REFUSE_REQ("GET / HTTP/1.1" H11 "X: a\x7f\r\n\r\n", HTTP_E_CTL_CHAR, 400);
    REFUSE_REQ("GET / HTTP/1.1" H11 "X\x7f: a\r\n\r\n", HTTP_E_CTL_CHAR, 400);
    REFUSE_REQ("GET /\0 HTTP/1.1" H11 "\r\n", HTTP_E_CTL_CHAR, 400);
    REFUSE_REQ("G\0ET / HTTP/1.1" H11 "\r\n", HTTP_E_CTL_CHAR, 400);
    REFUSE_REQ("GET /a\x7f HTTP/1.1" H11 "\r\n", HTTP_E_CTL_CHAR, 400);
    REFUSE_REQ("GET / HTTP/1.1\x0b" H11 "\r\n", HTTP_E_CTL_CHAR, 400);
    REFUSE_RESP("HTTP/1.1 200 O\x01K\r\n\r\n", HTTP_E_CTL_CHAR, 400);
}

static void test_request_line_refusals(void)
{
    REFUSE_REQ("GET  / HTTP/1.1" H11 "\r\n", HTTP_E_BAD_REQUEST_LINE, 400);
    REFUSE_REQ("GET /  HTTP/1.1" H11 "\r\n", HTTP_E_BAD_REQUEST_LINE, 400);
    REFUSE_REQ("GET / HTTP/1.1 " H11 "\r\n", HTTP_E_BAD_REQUEST_LINE, 400);
    REFUSE_REQ(" GET / HTTP/1.1" H11 "\r\n", HTTP_E_BAD_REQUEST_LINE, 400);
    REFUSE_REQ("GET\t/ HTTP/1.1" H11 "\r\n", HTTP_E_BAD_REQUEST_LINE, 400);
    REFUSE_REQ("GET /\tHTTP/1.1" H11 "\r\n", HTTP_E_BAD_REQUEST_LINE, 400);
    REFUSE_REQ("GET /a b HTTP/1.1" H11 "\r\n", HTTP_E_BAD_REQUEST_LINE, 400);
    REFUSE_REQ("GET /" H11 "\r\n", HTTP_E_BAD_REQUEST_LINE, 400);
    REFUSE_REQ("GET / " H11 "\r\n", HTTP_E_BAD_REQUEST_LINE, 400);
    REFUSE_REQ("GET" H11 "\r\n", HTTP_E_BAD_REQUEST_LINE, 400);
    REFUSE_REQ("\nGET / HTTP/1.1" H11 "\r\n", HTTP_E_BARE_LF, 400);
    REFUSE_REQ("\r\n \r\nGET / HTTP/1.1" H11 "\r\n", HTTP_E_BAD_REQUEST_LINE, 400);
    REFUSE_REQ("GE(T / HTTP/1.1" H11 "\r\n", HTTP_E_BAD_METHOD, 400);
    REFUSE_REQ("GET@ / HTTP/1.1" H11 "\r\n", HTTP_E_BAD_METHOD, 400);
    REFUSE_REQ("\"GET\" / HTTP/1.1" H11 "\r\n", HTTP_E_BAD_METHOD, 400);
    REFUSE_REQ("G\xc3\x89T / HTTP/1.1" H11 "\r\n", HTTP_E_BAD_METHOD, 400);
    REFUSE_REQ("GET /caf\xc3\xa9 HTTP/1.1" H11 "\r\n", HTTP_E_BAD_TARGET, 400);
    REFUSE_REQ("GET /\xff HTTP/1.1" H11 "\r\n", HTTP_E_BAD_TARGET, 400);
    REFUSE_REQ("GET / HTTP/1.1\r\n\r\n", HTTP_E_NO_HOST, 400);
    REFUSE_REQ("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", HTTP_E_DUP_HOST, 400);
    REFUSE_REQ("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", HTTP_E_DUP_HOST, 400);
    REFUSE_REQ("GET / HTTP/2.0" H11 "\r\n", HTTP_E_VERSION_UNSUPPORTED, 505);
    REFUSE_REQ("GET / HTTP/0.9" H11 "\r\n", HTTP_E_VERSION_UNSUPPORTED, 505);
    REFUSE_REQ("GET / HTTP/1.2" H11 "\r\n", HTTP_E_VERSION_UNSUPPORTED, 505);
    REFUSE_REQ("GET / HTTP/1.10" H11 "\r\n", HTTP_E_BAD_VERSION, 400);
    REFUSE_REQ("GET / http/1.1" H11 "\r\n", HTTP_E_BAD_VERSION, 400);
    REFUSE_REQ("GET / HTTP/1" H11 "\r\n", HTTP_E_BAD_VERSION, 400);
    REFUSE_REQ("GET / HTTP/1.x" H11 "\r\n", HTTP_E_BAD_VERSION, 400);
    REFUSE_REQ("GET / HTTP/11" H11 "\r\n", HTTP_E_BAD_VERSION, 400);
    REFUSE_REQ("GET / FOO/1.1" H11 "\r\n", HTTP_E_BAD_VERSION, 400);
}

/* No line end yet: bytes that can never form a request line are refused as they arrive, so a
 * peer sending garbage does not hold its connection until the header timeout. The whole line,
 * when it comes, gets the same error: the first bad byte decides. */
static void test_request_line_refused_before_its_end(void)
{
    REFUSE_REQ("\x80", HTTP_E_BAD_METHOD, 400);
    REFUSE_REQ("{", HTTP_E_BAD_METHOD, 400);
    REFUSE_REQ("\x16\x03\x01\x02\x00", HTTP_E_CTL_CHAR, 400); /* TLS on the plain port */
    REFUSE_REQ(" ", HTTP_E_BAD_REQUEST_LINE, 400);
    REFUSE_REQ("GET(", HTTP_E_BAD_METHOD, 400);
    REFUSE_REQ("GET\t", HTTP_E_BAD_REQUEST_LINE, 400);
    REFUSE_REQ("GET  ", HTTP_E_BAD_REQUEST_LINE, 400);
    REFUSE_REQ("GET /\xc3", HTTP_E_BAD_TARGET, 400);
    REFUSE_REQ("GET /a\x01", HTTP_E_CTL_CHAR, 400);
    REFUSE_REQ("GET /a\rb", HTTP_E_BARE_CR, 400);
    REFUSE_REQ("GET / HTTP/1.1 ", HTTP_E_BAD_REQUEST_LINE, 400);
    REFUSE_REQ("GET / HTTP/1.11", HTTP_E_BAD_VERSION, 400);
    /* the first bad byte decides, not the one the whole-line check would have named */
    REFUSE_REQ("GE(T /\0 HTTP/1.1" H11 "\r\n", HTTP_E_BAD_METHOD, 400);
    REFUSE_REQ("G(\n", HTTP_E_BAD_METHOD, 400);
    REFUSE_REQ("\r\nGE(", HTTP_E_BAD_METHOD, 400); /* after a skipped empty line too */
    /* what may still become a request line waits for more */
    static const char *const pending[] = {
        "G",       "GET",         "GET ",           "GET /a",
        "GET /a ", "GET / HTTP/", "GET / HTTP/1.1", "GET / HTTP/1.1\r",
        "\r\n",    "\r\n\r",      "\r\nGET /",      "\r"};
    for (size_t i = 0; i < sizeof(pending) / sizeof(pending[0]); i++) {
        http_parser p;
        http_header h[4];
        http_parser_init(&p, HTTP_KIND_REQUEST, NULL, h, 4);
        CHECK_MSG(http_parse_head(&p, pending[i], strlen(pending[i])) == HTTP_PARSE_AGAIN,
                  "'%s' refused: %s", pending[i], http_error_reason(p.error));
    }
}

static void test_status_line_refusals(void)
{
    REFUSE_RESP("HTTP/1.1 20 OK\r\n\r\n", HTTP_E_BAD_STATUS_LINE, 400);
    REFUSE_RESP("HTTP/1.1 2000 OK\r\n\r\n", HTTP_E_BAD_STATUS_LINE, 400);
    REFUSE_RESP("HTTP/1.1 099 OK\r\n\r\n", HTTP_E_BAD_STATUS_LINE, 400);
    REFUSE_RESP("HTTP/1.1 600 OK\r\n\r\n", HTTP_E_BAD_STATUS_LINE, 400);
    REFUSE_RESP("HTTP/1.1 OK\r\n\r\n", HTTP_E_BAD_STATUS_LINE, 400);
    REFUSE_RESP("HTTP/1.1  200 OK\r\n\r\n", HTTP_E_BAD_STATUS_LINE, 400);
    REFUSE_RESP("HTTP/1.1\r\n\r\n", HTTP_E_BAD_STATUS_LINE, 400);
    REFUSE_RESP("\r\n", HTTP_E_BAD_STATUS_LINE, 400);
    REFUSE_RESP("HTTP/1.1 2x0 OK\r\n\r\n", HTTP_E_BAD_STATUS_LINE, 400);
    REFUSE_RESP("HTTP/1.1 200\tOK\r\n\r\n", HTTP_E_BAD_STATUS_LINE, 400);
    REFUSE_RESP("HTTP/2.0 200 OK\r\n\r\n", HTTP_E_VERSION_UNSUPPORTED, 505);
    REFUSE_RESP("HTTP/1.10 200 OK\r\n\r\n", HTTP_E_BAD_VERSION, 400);
    REFUSE_RESP("HTTP/1.1 200 OK\nX: a\r\n\r\n", HTTP_E_BARE_LF, 400);
    REFUSE_RESP("HTTP/1.1 200 OK\r\nX : a\r\n\r\n", HTTP_E_SPACE_BEFORE_COLON, 400);
}

static void test_limit_refusals(void)
{
    http_limits lim;
    http_limits_default(&lim);
    lim.max_request_line = 14; /* "GET / HTTP/1.1" exactly */
    setup su = req_setup();
    su.limits = lim;
    static outcome o;
    parse_everywhere(&su, LIT("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), &o, __LINE__);
    CHECK(o.count == 1 && o.m[0].head_res == HTTP_PARSE_DONE);
    REFUSE_LIM(lim, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_URI_TOO_LONG, 414);
    REFUSE_LIM(lim, "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaa", HTTP_E_URI_TOO_LONG, 414);
    REFUSE_LIM(lim, "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\0\r\n", HTTP_E_URI_TOO_LONG, 414);

    http_limits_default(&lim);
    lim.max_header_bytes = 27; /* the whole head below */
    su.limits = lim;
    parse_everywhere(&su, LIT("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), &o, __LINE__);
    CHECK(o.count == 1 && o.m[0].head_res == HTTP_PARSE_DONE);
    REFUSE_LIM(lim, "GET / HTTP/1.1\r\nHost: ab\r\n\r\n", HTTP_E_HEADERS_TOO_LARGE, 431);
    REFUSE_LIM(lim, "GET / HTTP/1.1\r\nHost: a\r\nX: yyyyyyyyyyyy", HTTP_E_HEADERS_TOO_LARGE, 431);

    http_limits_default(&lim);
    lim.max_header_count = 2;
    REFUSE_LIM(lim, "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", HTTP_E_TOO_MANY_HEADERS,
               431);
    REFUSE_LIM(lim, CHUNKED_HEAD "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", HTTP_E_TOO_MANY_HEADERS, 431);

    http_limits_default(&lim);
    lim.max_chunk_ext = 4;
    su.limits = lim;
    parse_everywhere(&su, LIT(CHUNKED_HEAD "1;a=b\r\nx\r\n0\r\n\r\n"), &o, __LINE__);
    CHECK(o.count == 1 && o.m[0].body_res == HTTP_PARSE_DONE);
    REFUSE_LIM(lim, CHUNKED_HEAD "1;a=bc\r\nx\r\n0\r\n\r\n", HTTP_E_CHUNK_EXT_TOO_LONG, 400);
    REFUSE_LIM(lim, CHUNKED_HEAD "1;a;b;c;d;e;f;g\r\n", HTTP_E_CHUNK_EXT_TOO_LONG, 400);

    http_limits_default(&lim);
    lim.max_body = 10;
    REFUSE_LIM(lim, "POST / HTTP/1.1" H11 "Content-Length: 11\r\n\r\n", HTTP_E_BODY_TOO_LARGE, 413);
    REFUSE_LIM(lim, CHUNKED_HEAD "6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n", HTTP_E_BODY_TOO_LARGE,
               413);
    REFUSE_LIM(lim, CHUNKED_HEAD "b\r\n", HTTP_E_BODY_TOO_LARGE, 413);
    REFUSE_LIM(lim, CHUNKED_HEAD "ffffffffffffffff\r\n", HTTP_E_BODY_TOO_LARGE, 413);
    su.limits = lim;
    parse_everywhere(&su, LIT(CHUNKED_HEAD "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"), &o, __LINE__);
    CHECK(o.count == 1 && o.m[0].body_res == HTTP_PARSE_DONE && o.m[0].body_len == 10);
    parse_everywhere(&su, LIT("POST / HTTP/1.1" H11 "Content-Length: 10\r\n\r\n0123456789"), &o,
                     __LINE__);
    CHECK(o.count == 1 && o.m[0].body_res == HTTP_PARSE_DONE && o.m[0].body_len == 10);
}

/* ---- valid messages ---- */

static const msg_outcome *accept_one(const setup *su, const char *s, size_t n, outcome *o, int line)
{
    parse_everywhere(su, s, n, o, line);
    CHECK_MSG(o->count == 1 && o->m[0].head_res == HTTP_PARSE_DONE, "line %d: error %s", line,
              http_error_reason(o->m[0].error));
    return &o->m[0];
}

static bool field_is(const msg_outcome *m, const char *buf, const char *name, const char *value)
{
    http_parser p = m->p;
    p.headers = (http_header *)m->headers;
    const http_header *h = http_find_header(&p, buf, name);
    return h && http_span_eq(buf, h->value, value);
}

static void test_simple_get(void)
{
    static const char msg[] = "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n"
                              "User-Agent:  curl/7.88 \t\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\r\n\r\n";
    setup su = req_setup();
    static outcome o;
    const msg_outcome *m = accept_one(&su, LIT(msg), &o, __LINE__);
    const http_parser *p = &m->p;
    CHECK(http_span_eq(msg, p->method, "GET"));
    CHECK(http_span_eq(msg, p->target, "/index.html?q=1"));
    CHECK(p->version_minor == 1);
    CHECK(p->header_count == 4);
    CHECK(p->head_len == sizeof(msg) - 1);
    CHECK(p->body_kind == HTTP_BODY_NONE);
    CHECK(p->keep_alive && !p->upgrade && !p->expect_continue);
    CHECK(field_is(m, msg, "host", "example.com"));
    CHECK(field_is(m, msg, "User-Agent", "curl/7.88"));
    CHECK(field_is(m, msg, "x-empty", ""));
    CHECK(field_is(m, msg, "X-Obs", "caf\xc3\xa9"));
    CHECK(m->body_res == HTTP_PARSE_DONE && m->body_len == 0 && m->end == p->head_len);
}

static void test_post_bodies(void)
{
    static const char cl[] = "POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 011\r\n\r\n"
                             "hello world";
    setup su = req_setup();
    static outcome o;
    const msg_outcome *m = accept_one(&su, LIT(cl), &o, __LINE__);
    CHECK(m->p.body_kind == HTTP_BODY_LENGTH && m->p.content_length == 11);
    CHECK(m->body_res == HTTP_PARSE_DONE && m->body_len == 11);
    CHECK(memcmp(m->body, "hello world", 11) == 0 && m->end == sizeof(cl) - 1);

    static const char ch[] = "POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
                             "5;name=val;flag;q=\"a\\\"b;c\"\r\nhello\r\n"
                             "6\r\n world\r\n"
                             "A\r\n, and more\r\n"
                             "0000000000000000;last\r\nX-Checksum: abc\r\nX-Other:\r\n\r\n";
    m = accept_one(&su, LIT(ch), &o, __LINE__);
    CHECK(m->p.body_kind == HTTP_BODY_CHUNKED);
    CHECK(m->body_res == HTTP_PARSE_DONE && m->body_len == 21);
    CHECK(memcmp(m->body, "hello world, and more", 21) == 0 && m->end == sizeof(ch) - 1);

    static const char zero[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    m = accept_one(&su, LIT(zero), &o, __LINE__);
    CHECK(m->p.body_kind == HTTP_BODY_LENGTH && m->body_res == HTTP_PARSE_DONE);

    static const char te_ows[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \t"
                                 "\r\n\r\n0\r\n\r\n";
    m = accept_one(&su, LIT(te_ows), &o, __LINE__);
    CHECK(m->p.body_kind == HTTP_BODY_CHUNKED && m->body_res == HTTP_PARSE_DONE);

    /* incomplete bodies wait for more */
    m = accept_one(&su, LIT("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc"), &o,
                   __LINE__);
    CHECK(m->body_res == HTTP_PARSE_AGAIN && m->body_len == 3);
    m = accept_one(&su, LIT(CHUNKED_HEAD "5\r\nhel"), &o, __LINE__);
    CHECK(m->body_res == HTTP_PARSE_AGAIN && m->body_len == 3);
}

/* A GET with this Host value, written into req; returns its length. */
static size_t with_host(char *req, size_t cap, const char *host)
{
    return (size_t)snprintf(req, cap, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host);
}

/* RFC 9110 7.2: Host = uri-host [":" port], on HTTP/1.0 as on 1.1. */
static void test_host_values(void)
{
    static const char *const bad[] = {"a b",
                                      "a/b",
                                      "a\\b",
                                      "a@b",
                                      "a:b",
                                      "a:80:80",
                                      "a:8o",
                                      "\"a\"",
                                      "a%zz",
                                      "a%4",
                                      "[::1",
                                      "[::1]x",
                                      "[::g]",
                                      "[]",
                                      "[v1]",
                                      "[v.a]",
                                      "[1.2.3.4]",
                                      "a?b",
                                      "a#b",
                                      "<a>",
                                      "a\xc3\xa9",
                                      ":80x",
                                      "[fe80::1%25eth0]"};
    static const char *const good[] = {"",
                                       "example.com",
                                       "Example.COM:8443",
                                       "127.0.0.1:80",
                                       "[::1]",
                                       "[::1]:8443",
                                       "[v1.a:b]",
                                       "a%20b",
                                       "a:",
                                       "[::ffff:1.2.3.4]",
                                       "xn--caf-dma.example",
                                       "a-b_c~d!$&'()*+,;=e"};
    char req[128];
    setup su = req_setup();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        refuse_with(&su, req, with_host(req, sizeof(req), bad[i]), HTTP_E_BAD_HOST, 400, __LINE__);
    REFUSE_REQ("GET / HTTP/1.0\r\nHost: a/b\r\n\r\n", HTTP_E_BAD_HOST, 400);
    static outcome o;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        accept_one(&su, req, with_host(req, sizeof(req), good[i]), &o, __LINE__);
}

/* RFC 9112 2.2: a server ignores empty lines before a request line. Spans still count from the
 * start of the buffer, so a caller finds method and target where they are. */
static void test_leading_empty_lines(void)
{
    setup su = req_setup();
    static outcome o;
    static const char one[] = "\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    const msg_outcome *m = accept_one(&su, LIT(one), &o, __LINE__);
    CHECK(http_span_eq(one, m->p.method, "GET") && http_span_eq(one, m->p.target, "/x"));
    CHECK(m->p.head_len == sizeof(one) - 1 && field_is(m, one, "Host", "a"));
    static const char two[] = "\r\n\r\nPOST /y HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
    m = accept_one(&su, LIT(two), &o, __LINE__);
    CHECK(http_span_eq(two, m->p.target, "/y") && m->body_len == 2);
    /* the CRLF some clients add after a POST body */
    static const char after_body[] = "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx\r\n"
                                     "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    parse_everywhere(&su, LIT(after_body), &o, __LINE__);
    CHECK(o.count == 2 && o.m[1].head_res == HTTP_PARSE_DONE);
    CHECK(http_span_eq(after_body + o.m[1].start, o.m[1].p.target, "/2"));
    /* the request line limit counts from the request line, not from the empty lines */
    http_limits lim;
    http_limits_default(&lim);
    lim.max_request_line = 14;
    su.limits = lim;
    accept_one(&su, LIT("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), &o, __LINE__);
    REFUSE_LIM(lim, "\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_E_URI_TOO_LONG, 414);
    /* a response has no such leniency */
    REFUSE_RESP("\r\nHTTP/1.1 200 OK\r\n\r\n", HTTP_E_BAD_STATUS_LINE, 400);
}

static void test_pipelined(void)
{
    static const char msg[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                              "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                              "POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "2\r\nde\r\n0\r\n\r\n"
                              "GET /4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                              "GET /5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    static const char *const targets[] = {"/1", "/2", "/3", "/4", "/5"};
    static const char *const bodies[] = {"", "abc", "de", "", ""};
    setup su = req_setup();
    static outcome o;
    parse_everywhere(&su, LIT(msg), &o, __LINE__);
    CHECK(o.count == 5);
    size_t at = 0;
    for (int i = 0; i < o.count && i < 5; i++) {
        const msg_outcome *m = &o.m[i];
        CHECK(m->head_res == HTTP_PARSE_DONE && m->body_res == HTTP_PARSE_DONE);
        CHECK(m->start == at);
        CHECK(http_span_eq(msg + m->start, m->p.target, targets[i]));
        CHECK(m->body_len == strlen(bodies[i]) && memcmp(m->body, bodies[i], m->body_len) == 0);
        CHECK(m->p.keep_alive == (i != 4));
        at = m->end;
    }
    CHECK(at == sizeof(msg) - 1);
}

static void test_connection_fields(void)
{
    setup su = req_setup();
    static outcome o;
    const msg_outcome *m;
    m = accept_one(&su, LIT("GET / HTTP/1.0\r\n\r\n"), &o, __LINE__);
    CHECK(m->p.version_minor == 0 && !m->p.keep_alive);
    m = accept_one(&su, LIT("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), &o, __LINE__);
    CHECK(m->p.keep_alive);
    m = accept_one(&su, LIT("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n"), &o,
                   __LINE__);
    CHECK(!m->p.keep_alive);
    m = accept_one(&su,
                   LIT("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: "
                       "websocket\r\n\r\n"),
                   &o, __LINE__);
    CHECK(m->p.upgrade && m->p.keep_alive);
    m = accept_one(&su, LIT("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"), &o,
                   __LINE__);
    CHECK(!m->p.upgrade);
    m = accept_one(&su, LIT("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n"), &o, __LINE__);
    CHECK(!m->p.upgrade);
    m = accept_one(&su,
                   LIT("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: "
                       "1\r\n\r\nx"),
                   &o, __LINE__);
    CHECK(m->p.expect_continue && m->body_len == 1);
    m = accept_one(&su, LIT("GET * HTTP/1.1\r\nHost: a\r\nExpect: other\r\n\r\n"), &o, __LINE__);
    CHECK(!m->p.expect_continue && http_span_eq("GET *", m->p.target, "*"));
    m = accept_one(&su, LIT("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"), &o, __LINE__);
    CHECK(!m->p.expect_continue);
}

static void test_responses(void)
{
    setup su = resp_setup();
    static outcome o;
    const msg_outcome *m;
    static const char cl[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    m = accept_one(&su, LIT(cl), &o, __LINE__);
    CHECK(m->p.status == 200 && http_span_eq(cl, m->p.reason, "OK"));
    CHECK(m->p.body_kind == HTTP_BODY_LENGTH && m->body_res == HTTP_PARSE_DONE);
    CHECK(m->body_len == 2 && m->p.keep_alive);

    m = accept_one(&su,
                   LIT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "2\r\nhi\r\n0\r\n\r\n"),
                   &o, __LINE__);
    CHECK(m->p.body_kind == HTTP_BODY_CHUNKED && m->body_res == HTTP_PARSE_DONE);
    CHECK(m->body_len == 2 && memcmp(m->body, "hi", 2) == 0);

    m = accept_one(&su, LIT("HTTP/1.1 200 OK\r\nServer: x\r\n\r\nall of this"), &o, __LINE__);
    CHECK(m->p.body_kind == HTTP_BODY_UNTIL_CLOSE && m->body_res == HTTP_PARSE_AGAIN);
    CHECK(m->body_len == 11 && !m->p.keep_alive);

    static const char *const none[] = {
        "HTTP/1.1 204 No Content\r\n\r\n", "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        m = accept_one(&su, none[i], strlen(none[i]), &o, __LINE__);
        CHECK(m->p.body_kind == HTTP_BODY_NONE && m->body_res == HTTP_PARSE_DONE);
    }
    CHECK(m->p.upgrade && m->p.status == 101);

    su.response_to_head = true;
    m = accept_one(&su, LIT("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"), &o, __LINE__);
    CHECK(m->p.body_kind == HTTP_BODY_NONE && m->body_res == HTTP_PARSE_DONE);
    su.response_to_head = false;

    static const char nosp[] = "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n";
    m = accept_one(&su, LIT(nosp), &o, __LINE__);
    CHECK(m->p.status == 200 && m->p.reason.len == 0);
    static const char empty[] = "HTTP/1.0 404 \r\nContent-Length: 0\r\n\r\n";
    m = accept_one(&su, LIT(empty), &o, __LINE__);
    CHECK(m->p.status == 404 && m->p.reason.len == 0 && !m->p.keep_alive);
    static const char tab[] = "HTTP/1.1 599 a\tb \xe9\r\nContent-Length: 0\r\n\r\n";
    m = accept_one(&su, LIT(tab), &o, __LINE__);
    CHECK(m->p.status == 599 && http_span_eq(tab, m->p.reason, "a\tb \xe9"));
    /* no Host needed in responses, and big bodies are the caller's business */
    su.limits.max_body = 1;
    m = accept_one(&su, LIT("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), &o, __LINE__);
    CHECK(m->body_len == 5);
}

/* ---- helpers ---- */

static void test_helpers(void)
{
    const char *buf = "Content-Type";
    http_span s = {0, 12};
    CHECK(http_span_eq(buf, s, "Content-Type"));
    CHECK(!http_span_eq(buf, s, "content-type"));
    CHECK(http_span_eq_ci(buf, s, "content-TYPE"));
    CHECK(!http_span_eq_ci(buf, s, "content-typ"));
    CHECK(!http_span_eq_ci(buf, s, "content-types"));
    CHECK(http_span_eq_ci(buf, (http_span){8, 4}, "TYPE"));
    CHECK(http_span_eq_ci(buf, (http_span){0, 0}, ""));

    CHECK(http_list_has_token(LIT("close"), "close"));
    CHECK(http_list_has_token(LIT(" Keep-Alive , CLOSE\t"), "close"));
    CHECK(http_list_has_token(LIT(",,close,"), "close"));
    CHECK(http_list_has_token(LIT("a,upgrade"), "Upgrade"));
    CHECK(!http_list_has_token(LIT("closed"), "close"));
    CHECK(!http_list_has_token(LIT("enclose, x"), "close"));
    CHECK(!http_list_has_token(LIT(""), "close"));
    CHECK(!http_list_has_token(LIT("clo se"), "close"));

    static const char msg[] = "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
    http_header h[4];
    http_parser p;
    http_parser_init(&p, HTTP_KIND_REQUEST, NULL, h, 4);
    CHECK(http_parse_head(&p, LIT(msg)) == HTTP_PARSE_DONE);
    const http_header *f = http_find_header(&p, msg, "x-A");
    CHECK(f && http_span_eq(msg, f->value, "1"));
    CHECK(http_find_header(&p, msg, "X-B") == NULL);
    CHECK(http_find_header(&p, msg, "X") == NULL);
    CHECK(http_parse_head(&p, LIT(msg)) == HTTP_PARSE_DONE); /* done stays done */

    CHECK(http_is_tchar('a') && http_is_tchar('~') && http_is_tchar('!'));
    CHECK(!http_is_tchar(':') && !http_is_tchar(' ') && !http_is_tchar(0) && !http_is_tchar(0x80) &&
          !http_is_tchar('"'));

    for (int e = 0; e < HTTP_E__COUNT; e++) {
        int st = http_error_status((http_error)e);
        CHECK(http_error_reason((http_error)e) != NULL);
        CHECK(e == HTTP_OK || st == 400 || st == 413 || st == 414 || st == 431 || st == 501 ||
              st == 505);
    }
    CHECK(http_error_reason(HTTP_E__COUNT) != NULL);

    http_limits lim;
    http_limits_default(&lim);
    CHECK(lim.max_request_line == 8192 && lim.max_header_count == 100);
    CHECK(lim.max_header_bytes == 16384 && lim.max_chunk_ext == 1024);
    CHECK(lim.max_body == 1024 * 1024);
}

/* The header array is smaller than max_header_count: the array decides. */
static void test_small_header_array(void)
{
    http_header h[1];
    http_parser p;
    http_parser_init(&p, HTTP_KIND_REQUEST, NULL, h, 1);
    CHECK(http_parse_head(&p, LIT("GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n")) ==
          HTTP_PARSE_ERROR);
    CHECK(p.error == HTTP_E_TOO_MANY_HEADERS);
    const char *d;
    size_t c, dl;
    CHECK(http_parse_body(&p, "x", 1, &c, &d, &dl) == HTTP_PARSE_ERROR && c == 0);
}

/* Feeds body (after a chunked head) in pieces of step bytes with keep_trailer on: the body bytes
 * and the trailer lines come out apart, and the end is where the message ends. */
static http_parse_result keep_trailers(const char *body, size_t len, size_t step, buf_pair *got,
                                       http_limits *lim)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    http_header h[4];
    http_parser p;
    http_parser_init(&p, HTTP_KIND_RESPONSE, NULL, h, 4);
    CHECK(http_parse_head(&p, LIT(head)) == HTTP_PARSE_DONE);
    if (lim)
        p.limits = *lim; /* for the trailer section only */
    p.keep_trailer = true;
    size_t at = 0, avail = 0;
    got->body_len = got->trailer_len = 0;
    for (;;) {
        avail = avail + step < len ? avail + step : len;
        size_t c, dl;
        const char *d;
        http_parse_result res = http_parse_body(&p, body + at, avail - at, &c, &d, &dl);
        at += c;
        if (res == HTTP_PARSE_DATA || res == HTTP_PARSE_TRAILER) {
            char *to = res == HTTP_PARSE_DATA ? got->body + got->body_len
                                              : got->trailer + got->trailer_len;
            size_t *n = res == HTTP_PARSE_DATA ? &got->body_len : &got->trailer_len;
            if (*n + dl <= sizeof(got->body))
                memcpy(to, d, dl);
            *n += dl;
            continue;
        }
        if (res == HTTP_PARSE_AGAIN && avail < len)
            continue;
        got->end = at;
        return res;
    }
}

static void test_kept_trailers(void)
{
    static const char body[] =
        "5\r\nhello\r\n0\r\nGrpc-Status: 0\r\nX-Sum:\t ab c \r\nE:\r\n\r\nNEXT";
    buf_pair got;
    for (size_t step = 1; step <= sizeof(body); step++) {
        CHECK(keep_trailers(LIT(body), step, &got, NULL) == HTTP_PARSE_DONE);
        CHECK(got.end == sizeof(body) - 1 - 4);
        CHECK(got.body_len == 5 && memcmp(got.body, "hello", 5) == 0);
        CHECK(got.trailer_len == 35 &&
              memcmp(got.trailer, "Grpc-Status: 0\r\nX-Sum:\t ab c \r\nE:\r\n", 35) == 0);
    }
    http_header f[4];
    CHECK(http_trailer_fields(got.trailer, got.trailer_len, f, 4) == 3);
    CHECK(http_span_eq(got.trailer, f[0].name, "Grpc-Status") &&
          http_span_eq(got.trailer, f[0].value, "0"));
    CHECK(http_span_eq(got.trailer, f[1].name, "X-Sum") &&
          http_span_eq(got.trailer, f[1].value, "ab c"));
    CHECK(http_span_eq(got.trailer, f[2].name, "E") && f[2].value.len == 0);
    CHECK(http_trailer_fields(got.trailer, got.trailer_len, f, 1) == 1);
    /* no trailer: nothing handed out */
    CHECK(keep_trailers(LIT("0\r\n\r\n"), 1, &got, NULL) == HTTP_PARSE_DONE && got.end == 5 &&
          got.trailer_len == 0);
    /* kept or not, the same checks and the head's limits */
    CHECK(keep_trailers(LIT("0\r\nX a\r\n\r\n"), 3, &got, NULL) == HTTP_PARSE_ERROR);
    http_limits lim;
    http_limits_default(&lim);
    lim.max_header_count = 2;
    CHECK(keep_trailers(LIT("0\r\nA: 1\r\nB: 2\r\n\r\n"), 4, &got, &lim) == HTTP_PARSE_DONE);
    CHECK(keep_trailers(LIT("0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), 4, &got, &lim) ==
          HTTP_PARSE_ERROR);
    lim.max_header_count = 100;
    lim.max_header_bytes = 12;
    CHECK(keep_trailers(LIT("0\r\nA: 1234567890\r\n\r\n"), 64, &got, &lim) == HTTP_PARSE_ERROR);
}

int main(void)
{
    test_framing_refusals();
    test_chunk_refusals();
    test_line_refusals();
    test_request_line_refusals();
    test_request_line_refused_before_its_end();
    test_host_values();
    test_status_line_refusals();
    test_limit_refusals();
    test_simple_get();
    test_post_bodies();
    test_leading_empty_lines();
    test_pipelined();
    test_connection_fields();
    test_responses();
    test_helpers();
    test_small_header_array();
    test_kept_trailers();
    return check_summary("http_parser");
}
