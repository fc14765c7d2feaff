/* HTTP/1.1 client connections: read and parse request heads into edge_reqs, frame their
 * responses (Content-Length, chunked, close-delimited, tunnels), keep-alive and pipelining, and
 * the header/idle/send timeouts. The request layer (req.c) calls back through h1_proto. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <time.h>
#include <unistd.h>

#include "shared/http_status.h"
#include "shared/log.h"
#include "edge/http2.h"

/* Plain-HTTP files up to this size are read and written with their head, not sendfile'd. */
#define SMALL_FILE (16 * 1024)
/* Most bytes one sendfile call is asked for. */
#define SENDFILE_CHUNK (1u << 20)
/* On TERM, how long a connection accepted before it keeps waiting for its first request. */
#define DRAIN_FIRST_REQUEST_MS 1000

static const edge_proto h1_proto;
static void conn_run(edge_conn *c);

/* Steps one conn_run takes before it lets the other connections have the worker. */
#define CONN_RUN_ROUNDS 64

/* The HTTP/1.1 state goes, at the close or when ALPN chose h2 (an idle h2 connection costs
 * that much less). */
static void h1_free(edge_conn *c)
{
    if (!c->h1)
        return;
    buf_free(&c->h1->req.info);
    buf_free(&c->h1->req.trailers);
    free(c->h1);
    c->h1 = NULL;
}

static void on_handle_closed(uv_handle_t *h)
{
    edge_conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    buf_free(&c->in);
    buf_free(&c->out);
    h1_free(c);
    free(c->headers);
    free(c);
}

void edge_conn_close(edge_conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    edge_limits_conn_closed(c->limit_entry);
    edge_metrics_conn_closed(c->io.ssl);
    edge_h2_free(c);
    if (c->h1)
        edge_req_closed(&c->h1->req);
    if (c->io.ssl) {
        SSL_free(c->io.ssl);
        c->io.ssl = NULL;
    }
    edge_slots_busy(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        edge_w.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_poll_stop(&c->poll);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->poll, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    close(c->io.fd);
    edge_gen_unref(c->gen);
    edge_w.conn_count--;
    if (edge_w.conn_count < edge_w.cfg.edge.max_connections)
        edge_listeners_pause(&edge_w, false);
    edge_memory_closed();
    edge_maybe_exit();
}

static void on_timeout(uv_timer_t *t)
{
    edge_conn *c = t->data;
    if (c->state == CONN_HEAD && c->head_started)
        log_debug("%s: request head not complete in time, closing", c->peer);
    edge_conn_close(c);
}

/* (Re)start the connection's timer; 0 stops it. Expiry closes the connection. */
static void conn_arm(edge_conn *c, int64_t ms)
{
    if (ms > 0)
        uv_timer_start(&c->timer, on_timeout, (uint64_t)ms, 0);
    else
        uv_timer_stop(&c->timer);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)events;
    edge_conn *c = h->data;
    c->just_finished = false;
    if (status < 0 && status != UV_EBADF) {
        edge_conn_close(c);
        return;
    }
    conn_run(c);
}

static void peer_string(const struct sockaddr *sa, char *out, size_t len)
{
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, len);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, len);
    else
        snprintf(out, len, "unix");
}

static void req_init(edge_conn *c, bool tls)
{
    edge_req *r = &c->h1->req;
    r->proto = &h1_proto;
    r->conn = c;
    r->gen = c->gen;
    r->tls = tls;
    r->peer = c->peer;
    r->keep_alive = true;
    buf_init(&r->info, 0);
    buf_init(&r->trailers, 0);
}

void edge_conn_accept(edge_worker *w, int fd, bool tls, const struct sockaddr *sa)
{
    int32_t limit_entry = edge_limits_conn_open(w->gen, sa);
    edge_conn *c = limit_entry == EDGE_CONN_REFUSED ? NULL : calloc(1, sizeof(*c));
    edge_h1 *h1 = c ? calloc(1, sizeof(*h1)) : NULL;
    if (!h1 || (tls && !w->gen->default_ctx)) {
        edge_limits_conn_closed(limit_entry);
        free(h1);
        free(c);
        close(fd);
        return;
    }
    c->h1 = h1;
    c->io.fd = fd;
    c->limit_entry = limit_entry;
    /* Responses leave in one or two writes and the next request waits on them: Nagle's delay
     * would only add latency (nginx's tcp_nodelay). */
    int one = 1;
    if (sa->sa_family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (tls) {
        c->io.ssl = SSL_new(w->gen->default_ctx);
        if (!c->io.ssl || SSL_set_fd(c->io.ssl, fd) != 1) {
            edge_limits_conn_closed(limit_entry);
            SSL_free(c->io.ssl);
            free(h1);
            free(c);
            close(fd);
            return;
        }
        SSL_set_accept_state(c->io.ssl);
    }
    peer_string(sa, c->peer, sizeof(c->peer));
    c->gen = w->gen;
    edge_gen_ref(c->gen);
    req_init(c, tls);
    buf_init(&c->in, w->cfg.edge.max_header_size + EDGE_READ_CHUNK);
    buf_init(&c->out, 0);
    http_parser_init(&c->h1->parser, HTTP_KIND_REQUEST, &w->limits, NULL, 0);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->conn_count++;
    edge_metrics_conn_opened();
    edge_memory_opened();
    uv_poll_init(w->loop, &c->poll, fd);
    uv_timer_init(w->loop, &c->timer);
    c->poll.data = c->timer.data = c;
    c->handles_open = 2;
    edge_slots_wait(c, EDGE_WAIT_HEAD);
    conn_arm(c, w->cfg.edge.header_timeout_ms);
    conn_run(c);
}

/* ---- reading ---- */

/* A read that does not fit in what c->in already holds goes here first, and only the bytes
 * that came are copied: a connection that has sent a few bytes of a head then keeps a few
 * hundred bytes, not 16 KiB (3,000 slow clients held 48 MiB). Once c->in has grown, as it does
 * for a streamed body, reads go straight into it. */
static char read_scratch[16384];

bool edge_conn_read(edge_conn *c)
{
    size_t want = sizeof(read_scratch);
    if (c->in.max) {
        size_t used = buf_used(&c->in);
        if (used >= c->in.max)
            return false;
        if (c->in.max - used < want)
            want = c->in.max - used;
    }
    bool direct = buf_room(&c->in) >= want;
    ssize_t r = edge_io_read(&c->io, direct ? buf_tail(&c->in) : read_scratch, want);
    if (r > 0) {
        if (direct)
            buf_commit(&c->in, (size_t)r);
        else if (buf_append(&c->in, read_scratch, (size_t)r) < 0) {
            /* only malloc can fail within c->in.max: the bytes are lost, so is the stream */
            c->read_eof = true;
            return false;
        }
        return true;
    }
    if (r == 0 || r == IO_ERROR)
        c->read_eof = true;
    return false;
}

/* The parsed head becomes the connection's request, valid while the handlers look at it. */
static void fill_request(edge_conn *c)
{
    edge_req *r = &c->h1->req;
    http_parser *p = &c->h1->parser;
    r->head = buf_head(&c->in);
    r->method = p->method;
    r->target = p->target;
    r->headers = p->headers;
    r->header_count = p->header_count;
    r->upgrade = p->upgrade;
    r->has_body = p->body_kind != HTTP_BODY_NONE;
    r->content_length =
        p->body_kind == HTTP_BODY_LENGTH ? (int64_t)p->content_length : EDGE_LEN_UNKNOWN;
    r->body_done = !r->has_body;
    r->keep_alive = p->keep_alive && !edge_w.draining;
    r->protocol = p->version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
    r->sni_ctx = c->io.ssl ? SSL_get_SSL_CTX(c->io.ssl) : NULL;
    c->body_pending = 0;
    c->chunked = c->tunnel = false;
}

static void dispatch(edge_conn *c)
{
    edge_slots_busy(c);
    fill_request(c);
    conn_arm(c, edge_w.cfg.edge.send_timeout_ms);
    c->state = CONN_REQ;
    edge_req_dispatch(&c->h1->req);
    /* Every handler answers at once or takes the request to answer later. */
    assert(c->closed || c->state != CONN_REQ || c->h1->req.handler);
    c->h1->req.head = NULL;
    c->h1->req.headers = NULL;
    c->h1->req.header_count = 0;
    if (!c->closed)
        buf_consume(&c->in, c->h1->parser.head_len);
}

static void parse_error(edge_conn *c)
{
    edge_req *r = &c->h1->req;
    log_debug("%s: refused request: %s", c->peer, http_error_reason(c->h1->parser.error));
    edge_slots_busy(c);
    r->protocol = c->h1->parser.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
    r->has_body = false;
    r->body_done = true;
    c->chunked = c->tunnel = false;
    c->state = CONN_REQ;
    edge_req_refuse(r, http_error_status(c->h1->parser.error),
                    http_error_reason(c->h1->parser.error));
    c->h1->parser.method.len = 0;
}

/* The parser's field array, taken when the first byte of a head is there: an idle keep-alive
 * connection holds none, nor does one that turns out to speak h2. */
static bool parse_headers_alloc(edge_conn *c)
{
    c->headers = malloc(EDGE_MAX_HEADERS * sizeof(http_header));
    if (!c->headers)
        return false;
    http_parser_init(&c->h1->parser, HTTP_KIND_REQUEST, &edge_w.limits, c->headers,
                     EDGE_MAX_HEADERS);
    return true;
}

static void handle_head(edge_conn *c)
{
    /* Right after a response the socket is most likely empty: wait for the poll to say
     * otherwise instead of spending a read(2) to hear EAGAIN. */
    if (c->just_finished && buf_used(&c->in) == 0 && !(c->io.ssl && SSL_has_pending(c->io.ssl))) {
        c->just_finished = false;
        return;
    }
    c->just_finished = false;
    for (;;) {
        if (buf_used(&c->in) > 0) {
            if (!c->head_started && c->requests == 0 && edge_h2_negotiated(c)) {
                h1_free(c);
                if (edge_h2_start(c) < 0)
                    edge_conn_close(c);
                return;
            }
            if (!c->head_started) {
                c->head_started = true;
                if (c->wait == EDGE_WAIT_IDLE)
                    edge_slots_wait(c, EDGE_WAIT_HEAD);
                c->h1->req.started_ms = edge_now_ms();
                conn_arm(c, edge_w.cfg.edge.header_timeout_ms);
            }
            if (!c->headers && !parse_headers_alloc(c)) {
                edge_conn_close(c);
                return;
            }
            http_parse_result r =
                http_parse_head(&c->h1->parser, buf_head(&c->in), buf_used(&c->in));
            if (r == HTTP_PARSE_DONE) {
                dispatch(c);
                return;
            }
            if (r == HTTP_PARSE_ERROR) {
                parse_error(c);
                return;
            }
        }
        if (!edge_conn_read(c))
            break;
    }
    if (c->read_eof)
        edge_conn_close(c);
}

/* ---- the request body, for the layer ---- */

static void h1_body_start(edge_req *r)
{
    edge_conn *c = r->conn;
    if (c->h1->parser.expect_continue && !r->body_done)
        buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
}

/* After a 101 the client's bytes are the tunnel's, unparsed. */
static edge_body_result tunnel_read(edge_conn *c, const char **data, size_t *len)
{
    if (buf_used(&c->in) == 0 && !edge_conn_read(c))
        return c->read_eof ? EDGE_BODY_GONE : EDGE_BODY_AGAIN;
    *data = buf_head(&c->in);
    *len = c->body_pending = buf_used(&c->in);
    return EDGE_BODY_DATA;
}

static edge_body_result h1_body_read(edge_req *r, const char **data, size_t *len)
{
    edge_conn *c = r->conn;
    buf_consume(&c->in, c->body_pending);
    c->body_pending = 0;
    if (c->tunnel)
        return tunnel_read(c, data, len);
    while (!r->body_done) {
        if (buf_used(&c->in) == 0) {
            /* The parser says DONE only when asked again: a Content-Length body whose last
             * byte came is complete without waiting for more input that may never come. */
            if (c->h1->parser.body_kind == HTTP_BODY_LENGTH && c->h1->parser.remaining == 0)
                break;
            if (!edge_conn_read(c))
                return c->read_eof ? EDGE_BODY_GONE : EDGE_BODY_AGAIN;
            continue;
        }
        size_t consumed = 0;
        http_parse_result res = http_parse_body(&c->h1->parser, buf_head(&c->in), buf_used(&c->in),
                                                &consumed, data, len);
        if (res == HTTP_PARSE_DATA) {
            c->body_pending = consumed; /* *data points into these bytes */
            return EDGE_BODY_DATA;
        }
        buf_consume(&c->in, consumed);
        if (res == HTTP_PARSE_DONE)
            break;
        if (res == HTTP_PARSE_ERROR) {
            r->body_error_status = http_error_status(c->h1->parser.error);
            return EDGE_BODY_ERROR;
        }
    }
    r->body_done = true;
    return EDGE_BODY_END;
}

/* ---- the response, for the layer ---- */

static void h1_head_start(edge_req *r, int status, const char *reason, size_t reason_len, bool own)
{
    edge_conn *c = r->conn;
    /* After a 400 the edge cannot trust where the next request starts (nginx closes too). */
    if (status == 400)
        r->keep_alive = false;
    if (own)
        buf_printf(&c->out, "HTTP/1.1 %d %s\r\nServer: hearth\r\nDate: %s\r\n", status,
                   http_status_reason(status), http_date_now());
    else
        buf_printf(&c->out, "HTTP/1.1 %d %.*s\r\n", status, (int)reason_len, reason);
}

static void field_line(buf *out, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
    buf_append(out, name, name_len);
    buf_append(out, ": ", 2);
    buf_append(out, value, value_len);
    buf_append(out, "\r\n", 2);
}

static void h1_head_field(edge_req *r, const char *name, size_t name_len, const char *value,
                          size_t value_len)
{
    field_line(&((edge_conn *)r->conn)->out, name, name_len, value, value_len);
}

static void h1_head_fieldv(edge_req *r, const char *name, const char *fmt, va_list ap)
{
    buf *out = &((edge_conn *)r->conn)->out;
    buf_append_str(out, name);
    buf_append(out, ": ", 2);
    buf_vprintf(out, fmt, ap);
    buf_append(out, "\r\n", 2);
}

/* Connection and framing fields end the head. A body of unknown length is chunked for an
 * HTTP/1.1 client, as nginx does, also when the connection closes after it: the last chunk
 * tells a complete body from a cut one and carries the trailer fields. HTTP/1.0's ends with the
 * close. */
static void h1_head_end(edge_req *r, int64_t length)
{
    edge_conn *c = r->conn;
    bool http10 = c->h1->parser.version_minor == 0;
    /* An answer before the request body's end leaves the rest of it unread: the connection
     * closes after the response, and the client must hear it in advance. */
    if (r->body_reading && !r->body_done)
        r->keep_alive = false;
    if (length == EDGE_LEN_UNKNOWN && http10)
        r->keep_alive = false;
    c->tunnel = r->status == 101;
    if (c->tunnel)
        r->keep_alive = false;
    c->chunked = length == EDGE_LEN_UNKNOWN && !http10 && !c->tunnel;
    if (c->tunnel)
        buf_append_str(&c->out, "Connection: upgrade\r\n");
    else if (!r->keep_alive)
        buf_append_str(&c->out, "Connection: close\r\n");
    else if (http10)
        buf_append_str(&c->out, "Connection: keep-alive\r\n");
    if (length >= 0)
        buf_printf(&c->out, "Content-Length: %lld\r\n\r\n", (long long)length);
    else if (c->chunked)
        buf_append_str(&c->out, "Transfer-Encoding: chunked\r\n\r\n");
    else
        buf_append_str(&c->out, "\r\n");
    if (r->head_method)
        c->chunked = false; /* no body, so no last chunk either */
}

static void h1_write(edge_req *r, const char *p, size_t n)
{
    edge_conn *c = r->conn;
    if (c->chunked)
        buf_printf(&c->out, "%zx\r\n", n);
    buf_append(&c->out, p, n);
    if (c->chunked)
        buf_append(&c->out, "\r\n", 2);
}

static int64_t send_plain(edge_conn *c, int fd, off_t off, uint64_t left)
{
    size_t n = left > SENDFILE_CHUNK ? SENDFILE_CHUNK : (size_t)left;
    ssize_t r = sendfile(c->io.fd, fd, &off, n);
    if (r < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    if (r == 0)
        return -1; /* the file shrank under us: the promised length cannot be kept */
    return r;
}

/* Without kernel TLS the bytes must pass through user space anyway: read a chunk for the flush
 * to SSL_write; the next is read only once little is left (bounded memory). */
static int64_t send_buffered(edge_conn *c, int fd, off_t off, uint64_t left)
{
    size_t n = left > EDGE_READ_CHUNK ? EDGE_READ_CHUNK : (size_t)left;
#ifdef BIO_get_ktls_send
    if (c->io.ssl && BIO_get_ktls_send(SSL_get_wbio(c->io.ssl))) {
        if (edge_io_flush(&c->io, &c->out) < 0)
            return -1;
        if (buf_used(&c->out) > 0)
            return 0; /* the head goes first */
        ossl_ssize_t r = SSL_sendfile(c->io.ssl, fd, off, n, 0);
        if (r > 0)
            return r;
        return SSL_get_error(c->io.ssl, (int)r) == SSL_ERROR_WANT_WRITE ? 0 : -1;
    }
#endif
    if (buf_reserve(&c->out, n) < 0)
        return -1;
    ssize_t r = pread(fd, buf_tail(&c->out), n, off);
    if (r <= 0)
        return -1;
    buf_commit(&c->out, (size_t)r);
    return r;
}

/* Small files (and every file on TLS) go through c->out, so the head and the first bytes leave
 * in one write (one record, one segment); large plain files go by sendfile once the head is
 * out. Files are sent only for responses of a known length: there are no chunks to frame. */
static int64_t h1_send_file(edge_req *r, int fd, off_t off, uint64_t left)
{
    edge_conn *c = r->conn;
    if (c->io.ssl || left + buf_used(&c->out) <= SMALL_FILE) {
        int64_t took = 0;
        if (buf_used(&c->out) < EDGE_READ_CHUNK)
            took = send_buffered(c, fd, off, left);
        if (took < 0 || edge_io_flush(&c->io, &c->out) < 0)
            return -1;
        return took;
    }
    if (edge_io_flush(&c->io, &c->out) < 0)
        return -1;
    if (buf_used(&c->out) > 0)
        return 0;
    return send_plain(c, fd, off, left);
}

static int h1_flush(edge_req *r)
{
    edge_conn *c = r->conn;
    return edge_io_flush(&c->io, &c->out);
}

static size_t h1_queued(edge_req *r)
{
    return buf_used(&((edge_conn *)r->conn)->out);
}

/* The last chunk, the trailer section (RFC 9112 7.1.2) and the empty line that ends both. */
static void last_chunk(edge_req *r, buf *out)
{
    const char *name, *value;
    size_t at = 0, nlen, vlen;
    buf_append_str(out, "0\r\n");
    while (edge_resp_trailer_next(r, &at, &name, &nlen, &value, &vlen))
        field_line(out, name, nlen, value, vlen);
    buf_append_str(out, "\r\n");
}

static void h1_finish(edge_req *r)
{
    edge_conn *c = r->conn;
    if (c->chunked)
        last_chunk(r, &c->out);
    c->chunked = false;
    c->state = CONN_SIMPLE;
}

static void h1_abort(edge_req *r)
{
    edge_conn_close(r->conn);
}

static void h1_wake(edge_req *r)
{
    conn_run(r->conn);
}

static const edge_proto h1_proto = {
    .head_start = h1_head_start,
    .head_field = h1_head_field,
    .head_fieldv = h1_head_fieldv,
    .head_end = h1_head_end,
    .write = h1_write,
    .send_file = h1_send_file,
    .flush = h1_flush,
    .queued = h1_queued,
    .finish = h1_finish,
    .abort = h1_abort,
    .body_start = h1_body_start,
    .body_read = h1_body_read,
    .wake = h1_wake,
};

/* ---- between requests ---- */

/* The response is out: log it, then read the next request or close. */
static void conn_finish(edge_conn *c)
{
    edge_req *r = &c->h1->req;
    if (c->requests == 0 && c->io.ssl)
        log_debug("%s: TLS session %s", c->peer, SSL_session_reused(c->io.ssl) ? "resumed" : "new");
    /* A body nobody read leaves the start of the next request unknown. */
    if (!r->body_done)
        r->keep_alive = false;
    bool keep = r->keep_alive && !edge_w.draining;
    edge_req_end(r);
    c->requests++;
    buf_consume(&c->in, c->body_pending);
    c->body_pending = 0;
    c->tunnel = false;
    if (!keep) {
        edge_conn_linger(c);
        return;
    }
    http_parser_reset(&c->h1->parser);
    c->state = CONN_HEAD;
    c->just_finished = true;
    c->head_started = false;
    /* Idle connections keep no buffers: 10,000 of them should cost little. */
    if (buf_used(&c->in) == 0) {
        buf_free(&c->in);
        buf_free(&c->out);
        buf_free(&r->info);
        buf_free(&r->trailers);
        free(c->headers);
        c->headers = NULL;
        /* OpenSSL's own record buffers too (nginx does the same); it keeps any that hold data */
        if (c->io.ssl)
            SSL_free_buffers(c->io.ssl);
    }
    edge_slots_wait(c, EDGE_WAIT_IDLE);
    conn_arm(c, edge_w.cfg.edge.keepalive_timeout_ms);
}

void edge_conn_linger(edge_conn *c)
{
    c->state = CONN_CLOSING;
    if (c->io.ssl)
        SSL_shutdown(c->io.ssl);
    shutdown(c->io.fd, SHUT_WR);
    conn_arm(c, 1000);
    if (c->h2 == NULL && buf_used(&c->out) == 0)
        edge_conn_poll(c, UV_READABLE);
}

void edge_conn_poll(edge_conn *c, int ev)
{
    if (ev == c->poll_events)
        return;
    c->poll_events = ev;
    if (ev)
        uv_poll_start(&c->poll, ev, on_poll);
    else
        uv_poll_stop(&c->poll);
}

/* yielded: conn_run stopped at its round limit with work left (pipelined requests already in
 * c->in, which no new byte from the client would announce): a writable socket, ready at once,
 * brings it back on the next loop turn, after the other connections had theirs. */
static void update_poll(edge_conn *c, bool yielded)
{
    /* (a connection whose h2 session ended lingers here, CLOSING, without an HTTP/1.1 state) */
    const edge_req *r = c->state == CONN_REQ ? &c->h1->req : NULL;
    int ev = yielded ? UV_WRITABLE : 0;
    if (c->state == CONN_HEAD || c->state == CONN_CLOSING || c->io.tls_want_read ||
        (r && r->body_wanted))
        ev |= UV_READABLE; /* CLOSING: to see the peer's FIN */
    if (buf_used(&c->out) > 0 || c->io.tls_want_write || (r && r->wants_room))
        ev |= UV_WRITABLE;
    edge_conn_poll(c, ev);
}

/* After our last byte, wait for the client's FIN (discarding what it still sends) so a
 * close never turns into a reset that destroys the response in flight. */
static void drain_closing(edge_conn *c)
{
    char scratch[4096];
    for (;;) {
        ssize_t r = read(c->io.fd, scratch, sizeof(scratch));
        if (r > 0)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        edge_conn_close(c);
        return;
    }
}

/* The handler moves what it can, and what it queued goes out. */
static void run_handler(edge_conn *c)
{
    edge_req *r = &c->h1->req;
    if (r->handler && r->handler->proceed)
        r->handler->proceed(r);
    if (!c->closed && c->state == CONN_REQ && edge_io_flush(&c->io, &c->out) < 0)
        edge_conn_close(c);
}

/* Whose silence counts while a handler answers: the client's while the edge waits on it
 * (reading its body, or it reading ours); a tunnel's and an upstream's are bounded by the
 * upstream's read timeout instead. */
static void arm_for_handler(edge_conn *c)
{
    const edge_req *r = &c->h1->req;
    if (!c->tunnel &&
        (buf_used(&c->out) > 0 || r->wants_room || (r->body_reading && !r->body_done)))
        conn_arm(c, edge_w.cfg.edge.send_timeout_ms);
    else
        conn_arm(c, 0);
}

/* One pass over the state machine; loops while a state change makes more progress possible
 * (a finished response followed by a pipelined request). */
static void conn_run(edge_conn *c)
{
    if (c->h2) {
        edge_h2_run(c);
        return;
    }
    int round = 0;
    for (; round < CONN_RUN_ROUNDS && !c->closed; round++) {
        edge_conn_state before = c->state;
        size_t out_before = buf_used(&c->out);
        /* A handler flushes after it has queued: the head and the first body bytes of a
         * response then leave together. */
        if (c->state != CONN_REQ && edge_io_flush(&c->io, &c->out) < 0) {
            edge_conn_close(c);
            return;
        }
        if (buf_used(&c->out) < out_before && c->state != CONN_HEAD && c->state != CONN_REQ)
            conn_arm(c, edge_w.cfg.edge.send_timeout_ms);
        switch (c->state) {
        case CONN_HEAD:
            handle_head(c);
            break;
        case CONN_SIMPLE:
            if (buf_used(&c->out) == 0)
                conn_finish(c);
            break;
        case CONN_REQ:
            run_handler(c);
            break;
        case CONN_CLOSING:
            if (buf_used(&c->out) == 0)
                drain_closing(c);
            break;
        }
        if (c->closed || c->h2 || (c->state == before && buf_used(&c->out) == out_before))
            break;
    }
    if (c->closed || c->h2)
        return; /* an h2 connection's poll and timer are http2.c's from its start */
    if (c->state == CONN_REQ)
        arm_for_handler(c);
    update_poll(c, round == CONN_RUN_ROUNDS);
}

/* Bytes of a next request that the kernel (or OpenSSL) holds and the edge has not read yet. */
static bool bytes_waiting(edge_conn *c)
{
    int n = 0;
    if (c->io.ssl && SSL_has_pending(c->io.ssl))
        return true;
    return ioctl(c->io.fd, FIONREAD, &n) == 0 && n > 0;
}

/* TERM: busy connections close after their response (conn_finish checks draining). One
 * waiting between requests is closed now unless its next request is already here. A fresh one
 * has served nothing yet: its client connected to send a request that may still be on its
 * way, and closing would lose it, so it gets a moment to arrive. */
void edge_conn_drain_idle(edge_worker *w)
{
    edge_conn *c = w->conns;
    while (c) {
        edge_conn *next = c->next;
        if (c->h2)
            edge_h2_shutdown(c);
        else if (c->state == CONN_HEAD && !c->head_started) {
            if (c->requests == 0)
                conn_arm(c, DRAIN_FIRST_REQUEST_MS);
            else if (!bytes_waiting(c))
                edge_conn_close(c);
        }
        c = next;
    }
}

/* A reload: HTTP/2 connections, which could otherwise serve the old sites for as long as the
 * client keeps them, say GOAWAY; the client's next connection gets the new ones. An HTTP/1.1
 * connection keeps its generation until it closes, as before. */
void edge_conn_reloaded(edge_worker *w)
{
    for (edge_conn *c = w->conns; c; c = c->next)
        if (c->h2)
            edge_h2_shutdown(c);
}
