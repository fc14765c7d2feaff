/* One HTTP/2 stream as an edge_req: the request head gathered from the decoded fields (pseudo-
 * headers become the method, target and Host; cookies are joined), the request body kept until
 * the handler reads it and only then given back to the flow-control windows, and the response
 * (edge_h2_proto): a head submitted to nghttp2, a body framed as the windows open by a data
 * provider that takes the bytes the handler wrote, then those of a file, straight into the
 * connection's output. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "shared/http_status.h"
#include "shared/log.h"
#include "edge/http2.h"

/* Files up to this size are read into the stream's queue when the handler hands them over;
 * larger ones are read frame by frame as the windows open, from a descriptor of their own. */
#define SMALL_FILE (16 * 1024)

/* ---- the stream ---- */

h2_stream *h2_stream_new(h2_conn *h, int32_t id)
{
    h2_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->h = h;
    s->id = id;
    s->file_fd = -1;
    s->content_length = EDGE_LEN_UNKNOWN;
    s->progress_ms = edge_now_ms();
    buf_init(&s->head, 0);
    buf_init(&s->cookies, 0);
    buf_init(&s->body, 0);
    buf_init(&s->nv, 0);
    buf_init(&s->out, 0);
    edge_req *r = &s->req;
    edge_conn *c = h->c;
    r->proto = &edge_h2_proto;
    r->conn = s;
    r->gen = c->gen;
    r->tls = true;
    r->peer = c->peer;
    r->protocol = "HTTP/2.0";
    r->started_ms = edge_now_ms();
    r->sni_ctx = SSL_get_SSL_CTX(c->io.ssl);
    buf_init(&r->info, 0);
    buf_init(&r->trailers, 0);
    s->next = h->streams;
    if (h->streams)
        h->streams->prev = s;
    h->streams = s;
    h->stream_count++;
    return s;
}

static void drop_head(h2_stream *s)
{
    buf_free(&s->head);
    buf_free(&s->cookies);
    free(s->fields);
    s->fields = NULL;
    s->field_count = s->field_cap = 0;
}

void h2_stream_free(h2_stream *s)
{
    h2_conn *h = s->h;
    if (s->prev)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    h->stream_count--;
    h->queued -= buf_used(&s->out);
    if (s->file_fd >= 0)
        close(s->file_fd);
    drop_head(s);
    buf_free(&s->body);
    buf_free(&s->nv);
    buf_free(&s->out);
    buf_free(&s->req.info);
    buf_free(&s->req.trailers);
    free(s);
}

/* ---- the request head ---- */

static bool too_large(uint64_t n)
{
    return edge_w.cfg.edge.max_body_size && n > edge_w.cfg.edge.max_body_size;
}

static bool name_is(const uint8_t *name, size_t len, const char *what)
{
    return len == strlen(what) && memcmp(name, what, len) == 0;
}

static http_span keep(h2_stream *s, const uint8_t *p, size_t n)
{
    http_span span = {.off = buf_used(&s->head), .len = n};
    if (buf_append(&s->head, p, n) < 0)
        s->refuse = 500;
    return span;
}

static void add_span(h2_stream *s, http_span name, http_span value)
{
    if (s->field_count >= (size_t)edge_w.cfg.edge.max_header_count) {
        s->refuse = 431;
        return;
    }
    if (s->field_count == s->field_cap) {
        size_t cap = s->field_cap ? s->field_cap * 2 : 16;
        http_header *f = realloc(s->fields, cap * sizeof(*f));
        if (!f) {
            s->refuse = 500;
            return;
        }
        s->fields = f;
        s->field_cap = cap;
    }
    s->fields[s->field_count++] = (http_header){.name = name, .value = value};
}

static void add_field(h2_stream *s, const uint8_t *name, size_t nlen, const uint8_t *value,
                      size_t vlen)
{
    http_span n = keep(s, name, nlen);
    add_span(s, n, keep(s, value, vlen));
}

static void pseudo_field(h2_stream *s, const uint8_t *name, size_t nlen, const uint8_t *value,
                         size_t vlen)
{
    /* nghttp2 has checked that each is known, single and well formed (RFC 9113 8.3.1); :scheme
     * is https on this connection whatever it says. */
    if (name_is(name, nlen, ":method")) {
        s->method = keep(s, value, vlen);
    } else if (name_is(name, nlen, ":path")) {
        s->path = keep(s, value, vlen);
    } else if (name_is(name, nlen, ":authority")) {
        s->authority = keep(s, value, vlen);
        s->has_authority = true;
    }
}

void h2_stream_field(h2_stream *s, const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen)
{
    /* RFC 9113 6.5.2 counts 32 octets per field beside its name and value. An HPACK bomb (a
     * few octets naming a large table entry over and over) stops being kept here. */
    s->list_size += nlen + vlen + 32;
    if (s->list_size > edge_w.cfg.edge.h2_max_header_list_size)
        s->refuse = 431;
    if (s->refuse)
        return;
    if (nlen > 0 && name[0] == ':') {
        pseudo_field(s, name, nlen, value, vlen);
    } else if (name_is(name, nlen, "cookie")) {
        /* RFC 9113 8.2.3: several cookie fields are one, joined for HTTP/1.1's single line */
        if (buf_used(&s->cookies) > 0)
            buf_append(&s->cookies, "; ", 2);
        buf_append(&s->cookies, value, vlen);
    } else if (name_is(name, nlen, "host") && s->has_authority) {
        return; /* :authority names the host (8.3.1); Host goes upstream from it */
    } else {
        if (name_is(name, nlen, "content-length")) {
            s->content_length = 0; /* nghttp2 took it for a single valid number */
            for (size_t i = 0; i < vlen; i++)
                s->content_length = s->content_length * 10 + (value[i] - '0');
        }
        add_field(s, name, nlen, value, vlen);
    }
}

/* :authority becomes Host, as HTTP/1.1 and the handlers know it, and the cookies one field. */
static void finish_head(h2_stream *s)
{
    if (s->has_authority)
        add_span(s, keep(s, (const uint8_t *)"host", 4), s->authority);
    if (buf_used(&s->cookies) > 0) {
        http_span n = keep(s, (const uint8_t *)"cookie", 6);
        add_span(s, n, keep(s, (const uint8_t *)buf_head(&s->cookies), buf_used(&s->cookies)));
    }
}

void h2_stream_dispatch(h2_stream *s)
{
    edge_req *r = &s->req;
    s->dispatched = true;
    if (!s->refuse)
        finish_head(s);
    r->head = s->head.data;
    r->method = s->method;
    r->target = s->path;
    r->headers = s->fields;
    r->header_count = s->field_count;
    r->upgrade = false; /* no Upgrade on h2 (8.2.2): WebSocket stays on HTTP/1.1 */
    r->has_body = !(s->body_end && buf_used(&s->body) == 0) || s->content_length > 0;
    /* A body that came whole with its head goes upstream with its length, not in chunks. */
    if (r->has_body && s->content_length < 0 && s->body_end)
        s->content_length = (int64_t)buf_used(&s->body);
    r->content_length = r->has_body ? s->content_length : 0;
    r->body_done = !r->has_body;
    r->keep_alive = true;
    if (!s->refuse && r->has_body &&
        too_large((uint64_t)(s->content_length > 0 ? s->content_length : 0)))
        s->refuse = 413; /* as HTTP/1.1 answers a Content-Length over max_body_size */
    if (s->refuse) {
        r->has_body = false;
        r->body_done = true;
        edge_req_refuse(r, s->refuse, http_status_reason(s->refuse));
    } else if (http_span_eq(r->head, r->method, "CONNECT")) {
        /* RFC 9113 8.5: CONNECT makes a tunnel, which the edge does not offer. */
        edge_req_refuse(r, 405, "CONNECT is not supported");
    } else {
        edge_req_dispatch(r);
    }
    r->head = NULL;
    r->headers = NULL;
    r->header_count = 0;
    drop_head(s);
    if (!r->body_reading)
        h2_stream_release_body(s);
    if (r->handler)
        h2_ready(s);
}

/* ---- the request body ---- */

static void give_back(h2_stream *s, size_t n)
{
    if (n == 0)
        return;
    if (s->closed)
        nghttp2_session_consume_connection(s->h->session, n);
    else
        nghttp2_session_consume(s->h->session, s->id, n);
    h2_kick(s->h);
}

void h2_stream_release_body(h2_stream *s)
{
    size_t n = buf_used(&s->body);
    buf_free(&s->body);
    s->body_pending = 0;
    give_back(s, n);
}

/* Nobody reads it: the handler never asked, or the response is complete already. */
static bool body_unread(const h2_stream *s)
{
    return s->dispatched && (!s->req.body_reading || (s->submitted && s->finished));
}

void h2_stream_data(h2_stream *s, const uint8_t *data, size_t len)
{
    s->progress_ms = edge_now_ms();
    s->body_received += len;
    if (too_large(s->body_received) && !body_unread(s))
        h2_ready(s); /* the handler hears 413 at its next read */
    if (body_unread(s) || s->closed || too_large(s->body_received)) {
        give_back(s, len);
        return;
    }
    /* The stream's window bounds what can be here. */
    if (buf_append(&s->body, data, len) < 0) {
        give_back(s, len);
        nghttp2_submit_rst_stream(s->h->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    if (s->req.body_wanted)
        h2_ready(s);
}

static void h2_body_start(edge_req *r)
{
    (void)r; /* no 100 Continue: the client's window says how much it may send */
}

static edge_body_result h2_body_read(edge_req *r, const char **data, size_t *len)
{
    h2_stream *s = r->conn;
    if (s->body_pending) {
        buf_consume(&s->body, s->body_pending);
        give_back(s, s->body_pending);
        s->body_pending = 0;
    }
    if (too_large(s->body_received)) {
        r->body_error_status = 413;
        return EDGE_BODY_ERROR;
    }
    if (buf_used(&s->body) > 0) {
        *data = buf_head(&s->body);
        *len = s->body_pending = buf_used(&s->body);
        return EDGE_BODY_DATA;
    }
    buf_reset(&s->body);
    if (s->body_end) {
        r->body_done = true;
        return EDGE_BODY_END;
    }
    return s->closed ? EDGE_BODY_GONE : EDGE_BODY_AGAIN;
}

/* ---- the response head ---- */

/* Fields that mean something only to one HTTP/1.1 connection (RFC 9113 8.2.2). */
static bool connection_specific(const char *name, size_t len)
{
    static const char *const names[] = {"connection", "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (len == strlen(names[i]) && strncasecmp(name, names[i], len) == 0)
            return true;
    return false;
}

/* Each field is stored as name \0 value \0, the name lowercased (8.2.1). */
static void nv_add(h2_stream *s, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (connection_specific(name, nlen))
        return;
    size_t at = buf_used(&s->nv);
    if (buf_append(&s->nv, name, nlen) < 0 || buf_append(&s->nv, "", 1) < 0 ||
        buf_append(&s->nv, value, vlen) < 0 || buf_append(&s->nv, "", 1) < 0)
        return;
    char *n = buf_head(&s->nv) + at;
    for (size_t i = 0; i < nlen; i++)
        if (n[i] >= 'A' && n[i] <= 'Z')
            n[i] = (char)(n[i] - 'A' + 'a');
    s->nv_count++;
}

static void nv_addf(h2_stream *s, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void nv_addf(h2_stream *s, const char *name, const char *fmt, ...)
{
    char value[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(value))
        nv_add(s, name, strlen(name), value, (size_t)n);
}

static void h2_head_start(edge_req *r, int status, const char *reason, size_t reason_len, bool own)
{
    (void)reason; /* HTTP/2 has no reason phrase */
    (void)reason_len;
    h2_stream *s = r->conn;
    buf_reset(&s->nv);
    s->nv_count = 0;
    nv_addf(s, ":status", "%03d", status);
    if (own) {
        nv_add(s, "server", 6, "hearth", 6);
        const char *date = http_date_now();
        nv_add(s, "date", 4, date, strlen(date));
    }
}

static void h2_head_field(edge_req *r, const char *name, size_t name_len, const char *value,
                          size_t value_len)
{
    nv_add(r->conn, name, name_len, value, value_len);
}

static void h2_head_fieldv(edge_req *r, const char *name, const char *fmt, va_list ap)
{
    char value[4096];
    int n = vsnprintf(value, sizeof(value), fmt, ap);
    if (n >= 0 && (size_t)n < sizeof(value))
        nv_add(r->conn, name, strlen(name), value, (size_t)n);
}

static void h2_head_end(edge_req *r, int64_t length)
{
    h2_stream *s = r->conn;
    if (length >= 0)
        nv_addf(s, "content-length", "%lld", (long long)length);
    nghttp2_nv *nva = calloc(s->nv_count ? s->nv_count : 1, sizeof(*nva));
    if (!nva) {
        nghttp2_submit_rst_stream(s->h->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    char *p = buf_head(&s->nv);
    for (size_t i = 0; i < s->nv_count; i++) {
        size_t nl = strlen(p), vl = strlen(p + nl + 1);
        nva[i] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)p + nl + 1, nl, vl, NGHTTP2_NV_FLAG_NONE};
        p += nl + vl + 2;
    }
    s->has_data = !r->head_method && length != EDGE_LEN_NONE && length != 0;
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = h2_stream_read_body};
    int rv =
        nghttp2_submit_response(s->h->session, s->id, nva, s->nv_count, s->has_data ? &prd : NULL);
    free(nva);
    buf_free(&s->nv);
    s->submitted = true;
    if (rv != 0)
        log_debug("%s: HTTP/2 stream %d: %s", s->h->c->peer, s->id, nghttp2_strerror(rv));
    h2_kick(s->h);
}

/* ---- the response body ---- */

static void resume(h2_stream *s)
{
    if (s->deferred && !s->closed) {
        s->deferred = false;
        nghttp2_session_resume_data(s->h->session, s->id);
    }
    h2_kick(s->h);
}

static void h2_write(edge_req *r, const char *p, size_t n)
{
    h2_stream *s = r->conn;
    if (!s->has_data || s->closed)
        return;
    if (buf_append(&s->out, p, n) == 0)
        s->h->queued += n;
    resume(s);
}

static int64_t h2_send_file(edge_req *r, int fd, off_t off, uint64_t left)
{
    h2_stream *s = r->conn;
    if (s->closed)
        return -1;
    if (s->file_fd >= 0 || !s->has_data)
        return 0;
    if (left <= SMALL_FILE) {
        if (buf_reserve(&s->out, left) < 0)
            return -1;
        ssize_t n = pread(fd, buf_tail(&s->out), left, off);
        if (n <= 0)
            return -1;
        buf_commit(&s->out, (size_t)n);
        s->h->queued += (size_t)n;
        resume(s);
        return n;
    }
    /* The stream reads the file itself as the windows allow; the handler's descriptor is
     * closed when it finishes, so the stream keeps one of its own. */
    s->file_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (s->file_fd < 0)
        return -1;
    s->file_off = off;
    s->file_left = left;
    resume(s);
    return (int64_t)left;
}

static int h2_flush(edge_req *r)
{
    h2_stream *s = r->conn;
    if (s->closed)
        return -1;
    h2_kick(s->h);
    return 0;
}

/* The stream counts as full at its own high-water mark, or when the whole connection is. */
static size_t h2_queued(edge_req *r)
{
    h2_stream *s = r->conn;
    size_t n = buf_used(&s->out);
    if (n >= H2_STREAM_HIGH || s->h->queued >= H2_CONN_HIGH)
        return EDGE_HIGH_WATER;
    return n;
}

static void h2_finish(edge_req *r)
{
    h2_stream *s = r->conn;
    s->finished = true;
    if (!r->body_done && !s->closed)
        h2_stream_release_body(s); /* the answer came first: the rest is not wanted */
    resume(s);
}

static void h2_abort(edge_req *r)
{
    h2_stream *s = r->conn;
    if (!s->closed)
        nghttp2_submit_rst_stream(s->h->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    edge_req_closed(r); /* the handler lets go now, as when an HTTP/1.1 connection closes */
    h2_kick(s->h);
}

static void h2_wake(edge_req *r)
{
    h2_stream *s = r->conn;
    h2_ready(s);
    if (!s->h->running)
        edge_h2_run(s->h->c);
}

/* The body's last DATA frame goes without END_STREAM when trailer fields follow: a HEADERS
 * frame carries them and ends the stream (RFC 9113 8.1). nghttp2 copies and lowercases them. */
static void body_end(h2_stream *s, uint32_t *flags)
{
    edge_req *r = &s->req;
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (r->trailer_count == 0)
        return;
    nghttp2_nv *nva = calloc(r->trailer_count, sizeof(*nva));
    if (!nva)
        return; /* the body still ends, without its trailers */
    const char *name, *value;
    size_t at = 0, n = 0, nlen, vlen;
    while (n < r->trailer_count && edge_resp_trailer_next(r, &at, &name, &nlen, &value, &vlen))
        nva[n++] =
            (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nlen, vlen, NGHTTP2_NV_FLAG_NONE};
    int rv = nghttp2_submit_trailer(s->h->session, s->id, nva, n);
    free(nva);
    if (rv == 0)
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    else
        log_debug("%s: HTTP/2 stream %d: trailers: %s", s->h->c->peer, s->id, nghttp2_strerror(rv));
}

ssize_t h2_stream_read_body(nghttp2_session *session, int32_t id, uint8_t *dst, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)session;
    (void)id;
    (void)dst;
    (void)user;
    h2_stream *s = src->ptr;
    uint64_t avail = buf_used(&s->out) + s->file_left;
    if (avail == 0) {
        if (s->finished) {
            body_end(s, flags);
            return 0;
        }
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < length ? (size_t)avail : length;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (s->finished && n == avail)
        body_end(s, flags);
    return (ssize_t)n;
}

/* The frame header, then the queued bytes and the file's, written into the connection's
 * output in one go. */
int h2_stream_send_data(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *src, void *user)
{
    (void)session;
    h2_conn *h = user;
    h2_stream *s = src->ptr;
    buf *out = &h->c->out;
    (void)frame; /* no padding: no select_padding_callback */
    if (buf_reserve(out, 9 + length) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    char *dst = buf_tail(out);
    size_t from_out = buf_used(&s->out) < length ? buf_used(&s->out) : length;
    size_t from_file = length - from_out;
    if (from_file > 0) {
        ssize_t n = pread(s->file_fd, dst + 9 + from_out, from_file, s->file_off);
        if (n < 0 || (size_t)n != from_file)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the file shrank: reset */
        s->file_off += (off_t)from_file;
        s->file_left -= from_file;
        if (s->file_left == 0) {
            close(s->file_fd);
            s->file_fd = -1;
        }
    }
    memcpy(dst, framehd, 9);
    if (from_out > 0)
        memcpy(dst + 9, buf_head(&s->out), from_out);
    buf_commit(out, 9 + length);
    buf_consume(&s->out, from_out);
    if (buf_used(&s->out) == 0)
        buf_reset(&s->out);
    h->queued -= from_out;
    s->progress_ms = edge_now_ms();
    if (s->req.handler)
        h2_ready(s); /* room again: the handler may have more */
    return 0;
}

bool h2_stream_waits_on_client(const h2_stream *s)
{
    return buf_used(&s->out) > 0 || s->file_left > 0 ||
           (s->req.body_reading && !s->body_end && s->req.handler);
}

const edge_proto edge_h2_proto = {
    .head_start = h2_head_start,
    .head_field = h2_head_field,
    .head_fieldv = h2_head_fieldv,
    .head_end = h2_head_end,
    .write = h2_write,
    .send_file = h2_send_file,
    .flush = h2_flush,
    .queued = h2_queued,
    .finish = h2_finish,
    .abort = h2_abort,
    .body_start = h2_body_start,
    .body_read = h2_body_read,
    .wake = h2_wake,
};
