/* Client connections in a worker. Requests on one connection are handled strictly in order;
 * answers to pipelined requests are gathered and written together, and reading stops while a
 * slow reader has too much unsent (back-pressure instead of unbounded buffering). */
#include "appserver/conn.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "appserver/accesslog.h"
#include "appserver/conn_impl.h"
#include "appserver/metrics.h"
#include "shared/log.h"

#define WRITE_HIGH (1u << 20)
#define LINGER_MS 1000
/* A module that streams bodies gets its handler called once this much has arrived (or the
 * whole body, if smaller): small uploads never hold a worker, big ones never fill memory. */
#define EARLY_DISPATCH_BYTES (64u * 1024)

typedef struct {
    uv_write_t req;
    conn *c;
    char data[];
} write_req;

static void process(conn *c);
static void flush(conn *c);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static void on_closed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    buf_free(&c->in);
    buf_free(&c->head);
    buf_free(&c->body);
    buf_free(&c->out);
    free(c);
}

static void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    worker_ctx *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->conn_count--;
    uv_close(&c->h.handle, on_closed);
    uv_close((uv_handle_t *)&c->timer, on_closed);
    if (w->stopping && w->conn_count == 0 && w->on_idle)
        w->on_idle();
}

static void on_linger_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    if (nread < 0)
        conn_close(s->data);
    /* anything else the client still sends after our last answer is dropped */
}

static void on_timeout(uv_timer_t *t);

static void arm_timer(conn *c, int64_t ms)
{
    uv_timer_start(&c->timer, on_timeout, (uint64_t)ms, 0);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn *c = req->data;
    if (status < 0 || c->eof) {
        conn_close(c);
        return;
    }
    arm_timer(c, LINGER_MS);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    conn *c = h->data;
    if (c->lingering) {
        static char sink[4096]; /* lingering data is discarded: one buffer does for all */
        *b = uv_buf_init(sink, sizeof sink);
        return;
    }
    if (buf_reserve(&c->in, READ_CHUNK) != 0) {
        *b = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
        return;
    }
    *b = uv_buf_init(buf_tail(&c->in), (unsigned)buf_room(&c->in));
}

/* Half-close and drain for a moment before closing, so a client still sending never gets a
 * reset that would destroy our last answer before it reads it. */
static void close_lingering(conn *c)
{
    if (c->lingering || c->closing)
        return;
    c->lingering = true;
    if (c->eof) {
        conn_close(c);
        return;
    }
    if (c->reading)
        uv_read_stop(&c->h.stream);
    c->reading = uv_read_start(&c->h.stream, alloc_cb, on_linger_read) == 0;
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, &c->h.stream, on_shutdown) != 0)
        conn_close(c);
}

static void maybe_close(conn *c)
{
    if (c->close_after && c->writes == 0 && buf_used(&c->out) == 0)
        close_lingering(c);
}

/* Body bytes of the one response appended to out since from: the access log counts those, as
 * nginx and the edge do, not the head. */
static size_t body_bytes_since(const buf *out, size_t from)
{
    const char *s = buf_head(out) + from;
    size_t n = buf_used(out) - from;
    const char *end = memmem(s, n, "\r\n\r\n", 4);
    return end ? n - (size_t)(end + 4 - s) : 0;
}

static void refuse(conn *c, int status, const char *why)
{
    log_info("refused a request from %s: %d %s", c->peer, status, why);
    size_t before = buf_used(&c->out);
    response_simple(&c->out, status, NULL, false, false);
    if (c->w->access_fd >= 0)
        access_log_refused(c->w->access_fd, c->peer, status, body_bytes_since(&c->out, before));
    c->close_after = true;
}

static void on_timeout(uv_timer_t *t)
{
    conn *c = t->data;
    if (c->lingering) {
        conn_close(c);
    } else if (c->in_body || buf_used(&c->in) > 0) {
        refuse(c, 408 /* Request Timeout */, "request not received in time");
        flush(c);
    } else if (c->writes == 0) {
        conn_close(c); /* idle keep-alive connection */
    } else {
        arm_timer(c, c->w->keepalive_ms);
    }
}

/* How long a stopping worker keeps an idle keep-alive connection open. A client (wrk, a
 * proxy's pool) may be sending its next request at the instant we would close; closing then
 * resets a request it already sent. Within this grace that request is answered, with
 * Connection: close, and the client reconnects to a worker that is not stopping. */
#define STOP_IDLE_GRACE_MS 1000

static int64_t idle_timeout_ms(const worker_ctx *w)
{
    if (w->stopping && w->keepalive_ms > STOP_IDLE_GRACE_MS)
        return STOP_IDLE_GRACE_MS;
    return w->keepalive_ms;
}

static void rearm_read_timer(conn *c)
{
    bool partial = c->in_body || buf_used(&c->in) > 0 || c->served == 0;
    arm_timer(c, partial ? c->w->request_timeout_ms : idle_timeout_ms(c->w));
}

static void on_write(uv_write_t *req, int status)
{
    write_req *wr = (write_req *)req;
    conn *c = wr->c;
    free(wr);
    c->writes--;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->paused && uv_stream_get_write_queue_size(&c->h.stream) < WRITE_HIGH / 2) {
        c->paused = false;
        process(c);
        return;
    }
    if (c->wait_writes && c->writes == 0) {
        c->wait_writes = false;
        process(c);
        return;
    }
    maybe_close(c);
}

static void flush(conn *c)
{
    size_t used = buf_used(&c->out);
    if (used > 0 && !c->closing) {
        uv_buf_t b = uv_buf_init(buf_head(&c->out), (unsigned)used);
        int n = c->writes == 0 ? uv_try_write(&c->h.stream, &b, 1) : 0;
        if (n < 0 && n != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        size_t done = n > 0 ? (size_t)n : 0;
        if (done < used) {
            write_req *wr = malloc(sizeof *wr + used - done);
            if (!wr) {
                conn_close(c);
                return;
            }
            wr->c = c;
            memcpy(wr->data, b.base + done, used - done);
            uv_buf_t rest = uv_buf_init(wr->data, (unsigned)(used - done));
            if (uv_write(&wr->req, &c->h.stream, &rest, 1, on_write) != 0) {
                free(wr);
                conn_close(c);
                return;
            }
            c->writes++;
        }
        buf_reset(&c->out);
    }
    maybe_close(c);
}

/* 1: head complete; 0: need more; -1: refused. */
static int read_head(conn *c)
{
    http_parser *p = &c->parser;
    http_parse_result r = http_parse_head(p, buf_head(&c->in), buf_used(&c->in));
    if (r == HTTP_PARSE_AGAIN)
        return 0;
    if (r == HTTP_PARSE_ERROR) {
        refuse(c, http_error_status(p->error), http_error_reason(p->error));
        return -1;
    }
    buf_reset(&c->head);
    if (buf_append(&c->head, buf_head(&c->in), p->head_len) != 0) {
        refuse(c, 500, "out of memory");
        return -1;
    }
    buf_consume(&c->in, p->head_len);
    buf_reset(&c->body);
    c->in_body = true;
    if (p->expect_continue && p->body_kind != HTTP_BODY_NONE && buf_used(&c->in) == 0)
        buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
    return 1;
}

int conn_parse_body_step(conn *c)
{
    size_t consumed = 0, len = 0;
    const char *data = NULL;
    http_parse_result r =
        http_parse_body(&c->parser, buf_head(&c->in), buf_used(&c->in), &consumed, &data, &len);
    if (r == HTTP_PARSE_ERROR) {
        c->body_error = http_error_status(c->parser.error);
        return -1;
    }
    if (r == HTTP_PARSE_DATA && !c->discarding && buf_append(&c->body, data, len) != 0) {
        c->body_error = 413;
        return -1;
    }
    buf_consume(&c->in, consumed);
    if (r == HTTP_PARSE_DONE)
        c->body_done = true;
    return r == HTTP_PARSE_AGAIN ? 0 : 1;
}

/* 1: enough of the body to dispatch (all of it, or the first part for a worker whose modules
 * stream bodies; when discarding, all of it); 0: need more; -1: refused. */
static int read_body(conn *c)
{
    if (c->parser.body_kind == HTTP_BODY_NONE)
        c->body_done = true;
    while (!c->body_done) {
        if (c->w->streaming && !c->discarding && buf_used(&c->body) >= EARLY_DISPATCH_BYTES)
            return 1;
        int r = conn_parse_body_step(c);
        if (r < 0) {
            refuse(c, c->body_error,
                   c->body_error == 413 ? "body too large" : http_error_reason(c->parser.error));
            return -1;
        }
        if (r == 0)
            return 0;
    }
    return 1;
}

static void end_exchange(conn *c)
{
    http_parser_reset(&c->parser);
    c->in_body = c->body_done = c->discarding = false;
    c->body_error = 0;
    buf_reset(&c->body);
}

static void slot_enter(worker_ctx *w, const hearth_route *route, const hearth_req *req)
{
    snprintf(w->slot->route, sizeof w->slot->route, "%s %s", route->method, route->pattern);
    snprintf(w->slot->request, sizeof w->slot->request, "%s %s", req->method, req->target);
    atomic_store(&w->slot->beat_ms, scoreboard_now_ms());
    atomic_store(&w->slot->busy, 1);
}

static void slot_leave(worker_ctx *w)
{
    atomic_store(&w->slot->busy, 0);
    atomic_store(&w->slot->beat_ms, scoreboard_now_ms());
}

/* After a handler that streamed: end the body, or close so the client sees it incomplete. */
static void finish_stream(conn *c, const hearth_route *route, hearth_res *res)
{
    if (response_stream_end(res) != 0) {
        if (!res->send_failed)
            log_error("route %s %s: response aborted: %s", route->method, route->pattern,
                      res->fail[0] ? res->fail : "by the handler");
        conn_close(c);
        return;
    }
    if (res->until_close || !res->keep_alive)
        c->close_after = true;
}

static bool streams_body(const app_module *m)
{
    return m->desc->abi_version >> 16 >= 1 && (m->desc->flags & HEARTH_MODULE_STREAMS_BODY);
}

/* A handler that does not stream bodies sees the whole body, as in ABI 1.0. */
static int complete_body(conn *c, hearth_req *req, const app_module *m)
{
    if (req->body_complete || streams_body(m))
        return 0;
    if (conn_read_rest_of_body(c, &req->body, &req->body_len) != 0)
        return -1;
    req->body_complete = true;
    req->reader = NULL;
    return 0;
}

static void prepare_response(conn *c, hearth_res *res, bool keep, bool head_only)
{
    response_reset(res);
    res->conn = c;
    res->version_minor = c->parser.version_minor;
    res->keep_alive = keep;
    res->head_only = head_only;
}

static int run_handler(conn *c, hearth_req *req, const route_match *m, bool keep, bool head_only)
{
    worker_ctx *w = c->w;
    const hearth_route *route = m->match->route;
    req->params = m->params;
    req->param_count = m->param_count;
    req->module_data = m->match->module->data;
    prepare_response(c, &w->res, keep, head_only);
    slot_enter(w, route, req);
    int rc =
        complete_body(c, req, m->match->module) == 0 ? route->handler(req, &w->res) : HEARTH_ERROR;
    slot_leave(w);
    if (c->body_error && !w->res.started) {
        log_info("refused a request body from %s: %d", c->peer, c->body_error);
        response_simple(&c->out, c->body_error, NULL, false, head_only);
        c->close_after = true;
        return c->body_error;
    }
    if (w->res.started) {
        if (rc != HEARTH_OK || w->res.failed)
            log_error("route %s %s (%s %s): handler failed after its response started: %s",
                      route->method, route->pattern, req->method, req->target,
                      w->res.failed ? w->res.fail : "returned an error");
        finish_stream(c, route, &w->res);
        return w->res.status;
    }
    if (rc != HEARTH_OK || w->res.failed) {
        log_error("route %s %s (%s %s): handler failed: %s", route->method, route->pattern,
                  req->method, req->target, w->res.failed ? w->res.fail : "returned an error");
        response_simple(&c->out, 500, NULL, keep, head_only);
        return 500;
    }
    if (response_serialize(&w->res, &c->out, c->parser.version_minor, keep, head_only) != 0) {
        log_error("route %s %s: response too large", route->method, route->pattern);
        response_simple(&c->out, 500, NULL, keep, head_only);
        return 500;
    }
    return w->res.status;
}

static int route_and_run(conn *c, hearth_req *req, route_path *path, bool keep, bool head_only)
{
    route_match m;
    switch (router_match(&c->w->routes, req->method, path, &m)) {
    case ROUTE_FOUND:
        return run_handler(c, req, &m, keep, head_only);
    case ROUTE_BAD_METHOD: {
        char allow[160];
        snprintf(allow, sizeof allow, "Allow: %s\r\n", m.allow);
        response_simple(&c->out, 405, allow, keep, head_only);
        return 405;
    }
    default:
        response_simple(&c->out, 404, NULL, keep, head_only);
        return 404;
    }
}

static void dispatch(conn *c)
{
    worker_ctx *w = c->w;
    http_parser *p = &c->parser;
    const char *head = buf_head(&c->head);
    bool head_only = http_span_eq(head, p->method, "HEAD");
    bool last = w->max_requests && w->requests + 1 >= w->max_requests;
    bool keep = p->keep_alive && !w->stopping && !last && !c->eof;
    /* handlers may treat a text body as a string */
    if (c->body_done && buf_reserve(&c->body, 1) == 0)
        *buf_tail(&c->body) = '\0';
    size_t out_before = buf_used(&c->out);
    hearth_req req;
    route_path path;
    int status = request_build(&req, &w->arena, p, head, buf_head(&c->body), buf_used(&c->body),
                               c->peer, &path);
    req.conn = c;
    req.local_port = c->local_port;
    if (!c->body_done) {
        req.body_complete = false;
        req.reader = &conn_streamed_reader;
    }
    w->res.started = false;
    if (status) {
        keep = false;
        response_simple(&c->out, status, NULL, keep, head_only);
    } else
        status = route_and_run(c, &req, &path, keep, head_only);
    size_t bytes = w->res.started ? (size_t)w->res.sent : body_bytes_since(&c->out, out_before);
    if (w->access_fd >= 0 && req.method)
        access_log_write(w->access_fd, &req, p->version_minor, status, bytes);
    appserver_metrics_request(status);
    w->res.conn = NULL;
    request_done(&req);
    arena_reset(&w->arena);
    if (!keep)
        c->close_after = true;
}

static void finish_request(conn *c)
{
    worker_ctx *w = c->w;
    w->requests++;
    atomic_fetch_add(&w->slot->requests, 1);
    c->served++;
    if (!c->body_done && !c->closing && !c->close_after) {
        c->discarding = true; /* its handler left part of the body unread: drop it */
        buf_reset(&c->body);
    } else {
        end_exchange(c);
    }
    if (w->max_requests && w->requests >= w->max_requests && !w->stopping && w->on_max_requests)
        w->on_max_requests();
}

static void set_reading(conn *c, bool on)
{
    if (on && !c->reading && !c->eof && !c->closing)
        c->reading = uv_read_start(&c->h.stream, alloc_cb, on_read) == 0;
    else if (!on && c->reading) {
        uv_read_stop(&c->h.stream);
        c->reading = false;
    }
}

/* Flush, then stop taking requests while the client has too much unread: it is asking faster
 * than it reads. on_write resumes once the queue has drained. */
static bool should_pause(conn *c)
{
    flush(c);
    if (c->closing || uv_stream_get_write_queue_size(&c->h.stream) <= WRITE_HIGH)
        return false;
    c->paused = true;
    log_debug("connection from %s paused: the client reads slower than it asks", c->peer);
    return true;
}

static void process(conn *c)
{
    while (!c->closing && !c->close_after) {
        if (!c->in_body && read_head(c) <= 0)
            break;
        if (read_body(c) <= 0)
            break;
        if (c->discarding) {
            end_exchange(c);
            continue;
        }
        if (c->w->streaming && c->writes > 0) {
            c->wait_writes = true; /* its handler writes to the socket itself: after these */
            break;
        }
        dispatch(c);
        finish_request(c);
        if (buf_used(&c->out) > WRITE_HIGH && should_pause(c))
            break;
    }
    if (!c->paused)
        should_pause(c);
    if (c->closing || c->lingering)
        return;
    set_reading(c, !c->paused && !c->close_after && !c->wait_writes);
    if (c->eof && !c->close_after) {
        c->close_after = true; /* the client is done sending: answer what we have, then close */
        maybe_close(c);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    conn *c = s->data;
    if (nread > 0) {
        buf_commit(&c->in, (size_t)nread);
        rearm_read_timer(c);
        process(c);
    } else if (nread == UV_EOF) {
        c->eof = true;
        set_reading(c, false);
        process(c);
    } else if (nread == UV_ENOBUFS) {
        refuse(c, 431, "request too large");
        set_reading(c, false);
        flush(c);
    } else if (nread < 0) {
        conn_close(c);
    }
}

static void peer_name(conn *c)
{
    snprintf(c->peer, sizeof c->peer, "unix");
    if (c->h.handle.type != UV_TCP)
        return;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
    else if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
    len = sizeof ss;
    if (uv_tcp_getsockname(&c->h.tcp, (struct sockaddr *)&ss, &len) == 0)
        c->local_port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                      : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

static conn *conn_new(worker_ctx *w, bool tcp)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    int rc = tcp ? uv_tcp_init(w->loop, &c->h.tcp) : uv_pipe_init(w->loop, &c->h.pipe, 0);
    if (rc != 0) {
        free(c);
        return NULL;
    }
    c->w = w;
    c->h.handle.data = c;
    c->handles_open = 1;
    return c;
}

/* The stream is connected: set up the rest and start reading. */
static void conn_start(worker_ctx *w, conn *c)
{
    uv_timer_init(w->loop, &c->timer);
    c->timer.data = c;
    c->handles_open = 2;
    buf_init(&c->in, w->limits.max_header_bytes + 2 * READ_CHUNK);
    buf_init(&c->head, 0);
    buf_init(&c->body, 0); /* the parser enforces the body limit */
    buf_init(&c->out, 0);
    /* answers are written whole (or, streamed, piece by piece as produced): Nagle's delay
     * would hold back the piece after each un-acknowledged one (nginx's tcp_nodelay) */
    if (c->h.handle.type == UV_TCP)
        uv_tcp_nodelay(&c->h.tcp, 1);
    http_parser_init(&c->parser, HTTP_KIND_REQUEST, &w->limits, c->headers, HDR_MAX);
    peer_name(c);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->conn_count++;
    set_reading(c, true);
    rearm_read_timer(c);
}

void conn_accept(worker_ctx *w, uv_stream_t *server)
{
    conn *c = conn_new(w, server->type == UV_TCP);
    if (!c)
        return;
    if (uv_accept(server, &c->h.stream) != 0) {
        uv_close(&c->h.handle, on_closed);
        return;
    }
    conn_start(w, c);
}

void conn_adopt(worker_ctx *w, int fd, bool tcp)
{
    conn *c = conn_new(w, tcp);
    int rc = !c ? -1 : tcp ? uv_tcp_open(&c->h.tcp, fd) : uv_pipe_open(&c->h.pipe, fd);
    if (rc != 0) {
        close(fd);
        if (c)
            uv_close(&c->h.handle, on_closed);
        return;
    }
    conn_start(w, c);
}

/* No connection is closed at once: one with a request under way gets its answer with
 * Connection: close; an idle keep-alive one (or one whose last answer is still going out,
 * promising keep-alive) stays open for STOP_IDLE_GRACE_MS, so a request the client sends
 * meanwhile is answered, not reset. */
void conn_stop_all(worker_ctx *w)
{
    for (conn *c = w->conns; c; c = c->next) {
        bool between_requests = !c->in_body && buf_used(&c->in) == 0 && c->served > 0 &&
                                !c->lingering && !c->close_after;
        if (between_requests)
            arm_timer(c, idle_timeout_ms(w)); /* on_timeout waits for an answer still going out */
    }
}
