/* Reverse proxy to the upstreams: round-robin with failed ones skipped for a while, a keep-alive
 * pool, request and response bodies streamed both ways with backpressure, forwarded headers,
 * hop-by-hop removal, 502/504, and WebSocket upgrades as a byte tunnel. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shared/log.h"
#include "edge/edge.h"

#define POOL_MAX_IDLE 64
#define POOL_IDLE_MS 60000

struct edge_upconn {
    int fd;
    uv_poll_t poll;
    uv_timer_t timer;
    int handles_open;
    int poll_events;
    bool closed;
    bool connecting;
    bool reused;
    bool wrote; /* some byte of the request left */
    bool heard; /* some byte of the response came */
    bool eof;
    bool head_done;
    bool tunnel;
    uint64_t attached_ms; /* the request was given to this connection (for the metrics) */
    edge_upstream *u;
    edge_upconn *next_idle;
    edge_conn *c; /* NULL while pooled */
    buf in;
    buf out;
    http_parser p;
    http_header hdrs[EDGE_MAX_HEADERS];
};

/* Per request, kept in the client connection's proxy fields. */
static void pump(edge_conn *c);
static void up_close(edge_upconn *up);
static void on_up_poll(uv_poll_t *h, int status, int events);

/* ---- upstream connections ---- */

static void up_handle_closed(uv_handle_t *h)
{
    edge_upconn *up = h->data;
    if (--up->handles_open > 0)
        return;
    buf_free(&up->in);
    buf_free(&up->out);
    free(up);
}

static void pool_remove(edge_upconn *up)
{
    edge_upconn **pp = &up->u->idle;
    while (*pp && *pp != up)
        pp = &(*pp)->next_idle;
    if (*pp) {
        *pp = up->next_idle;
        up->u->idle_count--;
    }
    up->next_idle = NULL;
}

static void up_close(edge_upconn *up)
{
    if (up->closed)
        return;
    up->closed = true;
    if (!up->c)
        pool_remove(up);
    uv_poll_stop(&up->poll);
    uv_timer_stop(&up->timer);
    uv_close((uv_handle_t *)&up->poll, up_handle_closed);
    uv_close((uv_handle_t *)&up->timer, up_handle_closed);
    close(up->fd);
}

static void up_set_events(edge_upconn *up, int ev)
{
    if (up->closed || ev == up->poll_events)
        return;
    up->poll_events = ev;
    if (ev)
        uv_poll_start(&up->poll, ev, on_up_poll);
    else
        uv_poll_stop(&up->poll);
}

static edge_upconn *up_new(edge_upstream *u, int fd)
{
    edge_upconn *up = calloc(1, sizeof(*up));
    if (!up)
        return NULL;
    up->fd = fd;
    up->u = u;
    buf_init(&up->in, edge_w.cfg.edge.max_header_size + EDGE_READ_CHUNK);
    buf_init(&up->out, 0);
    uv_poll_init(edge_w.loop, &up->poll, fd);
    uv_timer_init(edge_w.loop, &up->timer);
    up->poll.data = up->timer.data = up;
    up->handles_open = 2;
    return up;
}

/* An idle pooled connection that becomes readable was closed (or spoke out of turn). */
static void on_idle_event(edge_upconn *up)
{
    up_close(up);
}

static void on_idle_timeout(uv_timer_t *t)
{
    up_close(t->data);
}

static void pool_put(edge_upconn *up)
{
    edge_upstream *u = up->u;
    if (u->idle_count >= POOL_MAX_IDLE || up->eof || buf_used(&up->in) > 0) {
        up_close(up);
        return;
    }
    up->c = NULL;
    up->head_done = up->tunnel = up->wrote = up->heard = false;
    buf_free(&up->in);
    buf_free(&up->out);
    up->next_idle = u->idle;
    u->idle = up;
    u->idle_count++;
    up_set_events(up, UV_READABLE);
    uv_timer_start(&up->timer, on_idle_timeout, POOL_IDLE_MS, 0);
}

/* A pooled connection the upstream closed meanwhile would fail the request: peek first. */
static edge_upconn *pool_get(edge_upstream *u)
{
    while (u->idle) {
        edge_upconn *up = u->idle;
        pool_remove(up);
        char b;
        ssize_t r = recv(up->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            uv_timer_stop(&up->timer);
            up->reused = true;
            return up;
        }
        up_close(up);
    }
    return NULL;
}

void edge_proxy_close_pools(edge_gen *g)
{
    for (size_t i = 0; i < g->site_count; i++)
        for (size_t j = 0; j < g->sites[i].upstream_count; j++)
            while (g->sites[i].upstreams[j].idle)
                up_close(g->sites[i].upstreams[j].idle);
}

static int connect_to(edge_upstream *u)
{
    int fd = socket(u->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&u->addr, u->addrlen) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void mark_failed(edge_upstream *u, const char *why)
{
    edge_metrics_upstream_failed(u);
    log_repeated(&u->fail_log, edge_now_ms(), LOG_WARN,
                 "upstream %s failed: %s; skipping it for %lld ms", u->spec, why,
                 (long long)edge_w.cfg.edge.upstream_fail_timeout_ms);
    u->failed_until_ms = edge_now_ms() + (uint64_t)edge_w.cfg.edge.upstream_fail_timeout_ms;
}

/* ---- request head ---- */

static bool is_hop_by_hop(const char *name, size_t len, const char *conn_val, size_t conn_len)
{
    static const char *const drop[] = {
        "connection",         "keep-alive",        "proxy-connection", "te", "upgrade", "expect",
        "proxy-authenticate", "x-forwarded-proto", "x-forwarded-host"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (strlen(drop[i]) == len && strncasecmp(drop[i], name, len) == 0)
            return true;
    if (conn_val && len < 64) {
        char tmp[64];
        memcpy(tmp, name, len);
        tmp[len] = 0;
        /* Transfer-Encoding and Content-Length frame the bytes we forward: never dropped. */
        if (strcasecmp(tmp, "transfer-encoding") != 0 && strcasecmp(tmp, "content-length") != 0 &&
            http_list_has_token(conn_val, conn_len, tmp))
            return true;
    }
    return false;
}

static void build_request_head(edge_conn *c, buf *out)
{
    const char *b = buf_head(&c->in);
    http_parser *p = &c->parser;
    size_t conn_len = 0, xff_len = 0, host_len = 0, up_len = 0;
    const char *conn_val = edge_req_header(c, "Connection", &conn_len);
    const char *xff = edge_req_header(c, "X-Forwarded-For", &xff_len);
    const char *host = edge_req_header(c, "Host", &host_len);
    const char *upg = edge_req_header(c, "Upgrade", &up_len);
    buf_printf(out, "%.*s %.*s HTTP/1.1\r\n", (int)p->method.len, b + p->method.off,
               (int)p->target.len, b + p->target.off);
    /* HTTP/1.1 requires a Host: a client that sent none (HTTP/1.0) or an empty one is served
     * by the site the edge chose for it, so that is the name the application hears. */
    if (host && host_len)
        buf_printf(out, "Host: %.*s\r\n", (int)host_len, host);
    else
        buf_printf(out, "Host: %s\r\n", c->site->name);
    for (size_t i = 0; i < p->header_count; i++) {
        http_header *h = &p->headers[i];
        const char *name = b + h->name.off;
        if (is_hop_by_hop(name, h->name.len, conn_val, conn_len) ||
            (h->name.len == 15 && strncasecmp(name, "x-forwarded-for", 15) == 0) ||
            (h->name.len == 4 && strncasecmp(name, "host", 4) == 0))
            continue;
        buf_printf(out, "%.*s: %.*s\r\n", (int)h->name.len, name, (int)h->value.len,
                   b + h->value.off);
    }
    if (xff)
        buf_printf(out, "X-Forwarded-For: %.*s, %s\r\n", (int)xff_len, xff, c->peer);
    else
        buf_printf(out, "X-Forwarded-For: %s\r\n", c->peer);
    buf_printf(out, "X-Forwarded-Proto: %s\r\n", c->tls ? "https" : "http");
    if (host && host_len)
        buf_printf(out, "X-Forwarded-Host: %.*s\r\n", (int)host_len, host);
    if (p->upgrade && upg)
        buf_printf(out, "Connection: upgrade\r\nUpgrade: %.*s\r\n\r\n", (int)up_len, upg);
    else
        buf_append_str(out, "Connection: keep-alive\r\n\r\n");
}

/* ---- starting ---- */

static void fail_request(edge_conn *c, int status)
{
    edge_upconn *up = c->up;
    c->up = NULL;
    edge_metrics_proxy_error(c, status);
    if (up)
        up_close(up);
    if (!c->req_body_done)
        c->keep_alive = false;
    /* c->in no longer holds the head; the method only matters for HEAD's empty body. */
    edge_resp_start(c, status, NULL);
    const char *body = status == 504 ? "upstream timed out\n" : "bad gateway\n";
    buf_printf(&c->out, "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s", strlen(body),
               body);
    c->body_sent = strlen(body);
    c->state = CONN_SIMPLE;
}

static void on_up_timeout(uv_timer_t *t);

/* Next upstream in round-robin order, skipping recently failed ones unless all are. */
static edge_upstream *pick(edge_site *s, size_t *tries)
{
    uint64_t now = edge_now_ms();
    for (size_t pass = 0; pass < 2; pass++) {
        for (size_t k = 0; k < s->upstream_count && *tries < s->upstream_count; k++) {
            edge_upstream *u = &s->upstreams[s->rr_next++ % s->upstream_count];
            if (pass == 0 && u->failed_until_ms > now)
                continue;
            (*tries)++;
            return u;
        }
    }
    return NULL;
}

/* Attach an upstream connection (a pooled one unless fresh) with the request as sent so far
 * queued: the head, and on a retry the body bytes kept; false when every upstream refused. */
static bool attach(edge_conn *c, bool fresh)
{
    edge_upstream *u;
    while ((u = pick(c->site, &c->proxy_tries)) != NULL) {
        edge_upconn *up = fresh ? NULL : pool_get(u);
        if (!up) {
            int fd = connect_to(u);
            if (fd < 0) {
                mark_failed(u, strerror(errno));
                continue;
            }
            up = up_new(u, fd);
            if (!up) {
                close(fd);
                return false;
            }
            up->connecting = true;
            uv_timer_start(&up->timer, on_up_timeout,
                           (uint64_t)edge_w.cfg.edge.proxy_connect_timeout_ms, 0);
        } else {
            uv_timer_start(&up->timer, on_up_timeout,
                           (uint64_t)edge_w.cfg.edge.proxy_read_timeout_ms, 0);
        }
        up->c = c;
        up->attached_ms = edge_now_ms();
        http_parser_init(&up->p, HTTP_KIND_RESPONSE, &edge_w.limits, up->hdrs, EDGE_MAX_HEADERS);
        up->p.limits.max_body = 0;
        up->p.response_to_head = c->head_method;
        buf_append(&up->out, buf_head(&c->proxy_resend), buf_used(&c->proxy_resend));
        c->up = up;
        up_set_events(up, UV_WRITABLE);
        return true;
    }
    return false;
}

static bool is_idempotent(edge_conn *c)
{
    static const char *const methods[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (http_span_eq(buf_head(&c->in), c->parser.method, methods[i]))
            return true;
    return false;
}

void edge_proxy_start(edge_conn *c)
{
    buf_reset(&c->proxy_resend);
    build_request_head(c, &c->proxy_resend);
    c->proxy_tries = 0;
    c->proxy_upgrade = c->parser.upgrade;
    c->proxy_resend_lost = false;
    c->proxy_retried = false;
    c->proxy_idempotent = is_idempotent(c);
    c->req_body_done = c->parser.body_kind == HTTP_BODY_NONE;
    c->state = CONN_PROXY;
    if (c->parser.expect_continue && !c->req_body_done)
        buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
    if (!attach(c, false))
        fail_request(c, 502);
}

/* The request may go to another connection when all of it is still here and the upstream
 * cannot have acted on it: nothing left, or sending it twice is harmless. */
static bool resendable(const edge_conn *c, const edge_upconn *up)
{
    return !c->proxy_resend_lost && (!up->wrote || c->proxy_idempotent);
}

/* A connection failed before the upstream said anything. A fresh one marks its upstream failed
 * and the request goes to the next. A reused one was most likely closed as idle by the upstream
 * just as the request left (HTTP/1.1 cannot prevent that race, and an appserver reload does it
 * to every idle connection of its old workers): the request gets one more try, on a fresh
 * connection, as nginx's proxy_next_upstream does. */
static void retry_or_fail(edge_conn *c, int status, const char *why)
{
    edge_upconn *up = c->up;
    bool reused = up->reused, again = resendable(c, up);
    c->up = NULL;
    if (!reused) {
        mark_failed(up->u, why);
        up_close(up);
        if (again && attach(c, false))
            return;
    } else {
        if (again && !c->proxy_retried)
            log_debug("upstream %s: reused connection %s before answering; retrying on a new one",
                      up->u->spec, why);
        else
            log_warn("upstream %s: reused connection %s before answering; not retried (%s)",
                     up->u->spec, why,
                     c->proxy_retried ? "retried once already" : "not resendable");
        up_close(up);
        if (again && !c->proxy_retried) {
            c->proxy_retried = true;
            c->proxy_tries = c->proxy_tries > 0 ? c->proxy_tries - 1 : 0; /* not its fault */
            if (attach(c, true))
                return;
        }
    }
    fail_request(c, status);
}

static void on_up_timeout(uv_timer_t *t)
{
    edge_upconn *up = t->data;
    edge_conn *c = up->c;
    if (!c) {
        up_close(up);
        return;
    }
    if (up->connecting) {
        retry_or_fail(c, 504, "connect timed out");
    } else if (!up->head_done) {
        log_repeated(&up->u->timeout_log, edge_now_ms(), LOG_WARN,
                     "upstream %s: no response in time", up->u->spec);
        c->up = NULL;
        up_close(up);
        fail_request(c, 504);
    } else {
        edge_conn_close(c); /* mid-body: nothing sensible can be said to the client any more */
        return;
    }
    edge_conn_progress(c);
}

/* ---- moving bytes ---- */

/* Body bytes sent upstream are kept after the head while the whole request stays small, so a
 * retry can send them again; past that, the request can only go to the connection it is on. */
static void keep_for_resend(edge_conn *c, const char *p, size_t n)
{
    if (c->proxy_resend_lost)
        return;
    if (buf_used(&c->proxy_resend) + n <= EDGE_RESEND_MAX &&
        buf_append(&c->proxy_resend, p, n) == 0)
        return;
    c->proxy_resend_lost = true;
    buf_free(&c->proxy_resend);
}

static bool client_to_upstream(edge_conn *c, edge_upconn *up)
{
    bool moved = false;
    while (buf_used(&up->out) < EDGE_HIGH_WATER && !c->closed) {
        if (buf_used(&c->in) == 0) {
            /* The parser says DONE only when asked again: a Content-Length body whose last
             * byte went is complete without waiting for more input that may never come. */
            if (!up->tunnel && c->parser.body_kind == HTTP_BODY_LENGTH &&
                c->parser.remaining == 0) {
                c->req_body_done = true;
                break;
            }
            if (!edge_conn_read(c))
                break;
            moved = true;
            continue;
        }
        if (up->tunnel) {
            buf_append(&up->out, buf_head(&c->in), buf_used(&c->in));
            buf_reset(&c->in);
            moved = true;
            continue;
        }
        size_t consumed = 0, dl = 0;
        const char *data;
        http_parse_result r =
            http_parse_body(&c->parser, buf_head(&c->in), buf_used(&c->in), &consumed, &data, &dl);
        if (consumed) {
            keep_for_resend(c, buf_head(&c->in), consumed);
            buf_append(&up->out, buf_head(&c->in), consumed);
            buf_consume(&c->in, consumed);
            moved = true;
        }
        if (r == HTTP_PARSE_DONE) {
            c->req_body_done = true;
            break;
        }
        if (r == HTTP_PARSE_ERROR) {
            c->proxy_body_error = true;
            break;
        }
    }
    return moved;
}

static void build_response_head(edge_conn *c, edge_upconn *up)
{
    const char *b = buf_head(&up->in);
    http_parser *p = &up->p;
    size_t conn_len = 0;
    const http_header *ch = http_find_header(p, b, "Connection");
    const char *conn_val = ch ? b + ch->value.off : NULL;
    conn_len = ch ? ch->value.len : 0;
    bool switching = p->status == 101;
    /* An HTTP/1.0 client cannot read chunked framing: it gets the decoded bytes, delimited by
     * the connection's close. */
    c->proxy_dechunk = c->parser.version_minor == 0 && p->body_kind == HTTP_BODY_CHUNKED;
    /* An answer before the request body's end leaves the rest of it unread: the connection
     * closes after the response, and the client must hear it in advance. */
    if (p->body_kind == HTTP_BODY_UNTIL_CLOSE || c->proxy_dechunk || !c->req_body_done)
        c->keep_alive = false;
    c->status = p->status;
    buf_printf(&c->out, "HTTP/1.1 %d %.*s\r\n", p->status, (int)p->reason.len, b + p->reason.off);
    bool has_hsts = false;
    for (size_t i = 0; i < p->header_count; i++) {
        http_header *h = &p->headers[i];
        const char *name = b + h->name.off;
        if (h->name.len == 7 && strncasecmp(name, "upgrade", 7) == 0 && switching) {
            buf_printf(&c->out, "Upgrade: %.*s\r\n", (int)h->value.len, b + h->value.off);
            continue;
        }
        if (is_hop_by_hop(name, h->name.len, conn_val, conn_len))
            continue;
        if (c->proxy_dechunk && h->name.len == 17 &&
            strncasecmp(name, "transfer-encoding", 17) == 0)
            continue;
        if (h->name.len == 25 && strncasecmp(name, "strict-transport-security", 25) == 0)
            has_hsts = true;
        buf_printf(&c->out, "%.*s: %.*s\r\n", (int)h->name.len, name, (int)h->value.len,
                   b + h->value.off);
    }
    if (c->tls && c->site->hsts && !has_hsts)
        buf_printf(&c->out, "Strict-Transport-Security: %s\r\n", c->site->hsts);
    if (switching)
        buf_append_str(&c->out, "Connection: upgrade\r\n");
    else if (!c->keep_alive)
        buf_append_str(&c->out, "Connection: close\r\n");
    buf_append_str(&c->out, "\r\n");
}

/* The response is complete: the upstream connection goes back to the pool when both messages
 * ended cleanly, and the client connection finishes like any other response. */
static void response_done(edge_conn *c, edge_upconn *up)
{
    c->up = NULL;
    if (c->req_body_done && up->p.keep_alive && !up->eof && buf_used(&up->out) == 0)
        pool_put(up);
    else
        up_close(up);
    if (!c->req_body_done)
        c->keep_alive = false;
    c->state = CONN_SIMPLE;
}

static void start_tunnel(edge_conn *c, edge_upconn *up)
{
    up->tunnel = true;
    c->state = CONN_TUNNEL;
    c->keep_alive = false;
    /* A tunnel lives as long as it carries traffic; the read timeout bounds its silence. */
    uv_timer_stop(&c->timer);
}

/* Parse what came from the upstream; false when the exchange ended (c->up is gone). */
static bool handle_head(edge_conn *c, edge_upconn *up)
{
    http_parse_result r = http_parse_head(&up->p, buf_head(&up->in), buf_used(&up->in));
    if (r == HTTP_PARSE_AGAIN) {
        if (up->eof && !up->heard && up->reused) {
            retry_or_fail(c, 502, "closed");
            return false;
        }
        if (up->eof || buf_used(&up->in) >= up->in.max) {
            log_repeated(&up->u->broken_log, edge_now_ms(), LOG_WARN,
                         "upstream %s: %s before a complete response head", up->u->spec,
                         up->eof ? "closed" : "too many bytes");
            c->up = NULL;
            up_close(up);
            fail_request(c, 502);
            return false;
        }
        return true;
    }
    if (r == HTTP_PARSE_ERROR) {
        log_repeated(&up->u->broken_log, edge_now_ms(), LOG_WARN, "upstream %s: bad response: %s",
                     up->u->spec, http_error_reason(up->p.error));
        c->up = NULL;
        up_close(up);
        fail_request(c, 502);
        return false;
    }
    if (up->p.status >= 100 && up->p.status < 200 && up->p.status != 101) {
        buf_consume(&up->in, up->p.head_len); /* interim responses: the edge sent its own 100 */
        bool to_head = up->p.response_to_head;
        http_parser_reset(&up->p);
        up->p.response_to_head = to_head;
        return true;
    }
    if (up->p.status == 101 && !c->proxy_upgrade) {
        c->up = NULL;
        up_close(up);
        fail_request(c, 502);
        return false;
    }
    build_response_head(c, up);
    buf_consume(&up->in, up->p.head_len);
    up->head_done = true;
    edge_metrics_upstream_header(up->u, edge_now_ms() - up->attached_ms);
    if (up->p.status == 101)
        start_tunnel(c, up);
    return true;
}

static bool body_to_client(edge_conn *c, edge_upconn *up)
{
    while (buf_used(&up->in) > 0 || up->p.body_kind == HTTP_BODY_NONE ||
           (up->p.body_kind == HTTP_BODY_LENGTH && up->p.remaining == 0)) {
        if (up->tunnel) {
            buf_append(&c->out, buf_head(&up->in), buf_used(&up->in));
            c->body_sent += buf_used(&up->in);
            buf_reset(&up->in);
            return true;
        }
        size_t consumed = 0, dl = 0;
        const char *data;
        http_parse_result r =
            http_parse_body(&up->p, buf_head(&up->in), buf_used(&up->in), &consumed, &data, &dl);
        if (consumed) {
            if (c->proxy_dechunk)
                buf_append(&c->out, data, dl);
            else
                buf_append(&c->out, buf_head(&up->in), consumed);
            buf_consume(&up->in, consumed);
            c->body_sent += dl;
        }
        if (r == HTTP_PARSE_DONE) {
            response_done(c, up);
            return false;
        }
        if (r == HTTP_PARSE_ERROR) {
            log_repeated(&up->u->broken_log, edge_now_ms(), LOG_WARN,
                         "upstream %s: bad response body: %s", up->u->spec,
                         http_error_reason(up->p.error));
            edge_conn_close(c);
            return false;
        }
        if (r == HTTP_PARSE_AGAIN)
            break;
    }
    if (up->eof) {
        if (up->p.body_kind == HTTP_BODY_UNTIL_CLOSE || up->tunnel) {
            response_done(c, up);
            return false;
        }
        log_repeated(&up->u->broken_log, edge_now_ms(), LOG_WARN,
                     "upstream %s: closed in the middle of a response body", up->u->spec);
        edge_conn_close(c); /* truncated: the client must not take it for complete */
        return false;
    }
    return true;
}

static bool read_upstream(edge_upconn *up)
{
    if (up->eof || buf_reserve(&up->in, 16384) < 0)
        return false;
    size_t room = buf_room(&up->in);
    ssize_t r = read(up->fd, buf_tail(&up->in), room);
    if (r > 0) {
        buf_commit(&up->in, (size_t)r);
        up->heard = true;
        return true;
    }
    if (r == 0 || (errno != EAGAIN && errno != EINTR))
        up->eof = true;
    return r == 0 || (errno != EAGAIN && errno != EINTR);
}

static int flush_upstream(edge_upconn *up)
{
    while (buf_used(&up->out) > 0) {
        ssize_t r = write(up->fd, buf_head(&up->out), buf_used(&up->out));
        if (r < 0)
            return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        up->wrote = true;
        buf_consume(&up->out, (size_t)r);
    }
    return 0;
}

/* Both directions, until neither can move. */
static bool pump_once(edge_conn *c)
{
    edge_upconn *up = c->up;
    bool moved = false;
    if (!up)
        return false;
    if ((!c->req_body_done || up->tunnel) && !c->proxy_body_error)
        moved |= client_to_upstream(c, up);
    if (c->closed || c->up != up)
        return false;
    if (c->proxy_body_error && !up->head_done) {
        int st = http_error_status(c->parser.error);
        c->up = NULL;
        up_close(up);
        c->keep_alive = false;
        edge_resp_simple(c, st, NULL, NULL, "bad request body\n");
        return false;
    }
    if (c->read_eof && (!c->req_body_done || up->tunnel)) {
        edge_conn_close(c); /* the client left mid-request (or closed its tunnel end) */
        return false;
    }
    if (up->connecting)
        return moved;
    size_t before = buf_used(&up->out);
    if (flush_upstream(up) < 0) {
        if (!up->head_done) {
            retry_or_fail(c, 502, strerror(errno));
            return false;
        }
        edge_conn_close(c);
        return false;
    }
    moved |= buf_used(&up->out) != before;
    while (buf_used(&c->out) < EDGE_HIGH_WATER && read_upstream(up)) {
        moved = true;
        uv_timer_start(&up->timer, on_up_timeout, (uint64_t)edge_w.cfg.edge.proxy_read_timeout_ms,
                       0);
    }
    if (!up->head_done && buf_used(&up->in) > 0 && !handle_head(c, up))
        return false;
    if (!up->head_done && up->eof && !handle_head(c, up))
        return false;
    if (up->head_done && !body_to_client(c, up))
        return false;
    before = buf_used(&c->out);
    if (edge_io_flush(&c->io, &c->out) < 0) {
        edge_conn_close(c);
        return false;
    }
    return moved || buf_used(&c->out) != before;
}

static int upstream_events(edge_conn *c, edge_upconn *up)
{
    if (up->connecting)
        return UV_WRITABLE;
    int ev = 0;
    if (buf_used(&up->out) > 0)
        ev |= UV_WRITABLE;
    if (!up->eof && (!up->head_done || buf_used(&c->out) < EDGE_HIGH_WATER))
        ev |= UV_READABLE;
    return ev;
}

static void pump(edge_conn *c)
{
    bool moved = false;
    for (int i = 0; i < 32; i++) {
        if (c->closed || !c->up || !pump_once(c))
            break;
        moved = true;
    }
    edge_upconn *up = c->up;
    if (c->closed || !up)
        return;
    up_set_events(up, upstream_events(c, up));
    /* Whose silence counts: in a tunnel either side's, bounded by the read timeout; otherwise
     * the client's only while the edge waits on it (reading its body, or it reading ours). */
    if (up->tunnel) {
        if (moved)
            uv_timer_start(&up->timer, on_up_timeout,
                           (uint64_t)edge_w.cfg.edge.proxy_read_timeout_ms, 0);
        edge_conn_arm(c, 0);
    } else if (buf_used(&c->out) > 0 || !c->req_body_done) {
        edge_conn_arm(c, edge_w.cfg.edge.send_timeout_ms);
    } else {
        edge_conn_arm(c, 0);
    }
}

int edge_proxy_client_events(edge_conn *c)
{
    edge_upconn *up = c->up;
    if (!up || c->proxy_body_error)
        return 0;
    if ((!c->req_body_done || up->tunnel) && buf_used(&up->out) < EDGE_HIGH_WATER)
        return UV_READABLE;
    return 0;
}

void edge_proxy_client_event(edge_conn *c)
{
    pump(c);
}

static void connect_done(edge_upconn *up)
{
    edge_conn *c = up->c;
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(up->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        retry_or_fail(c, 502, strerror(err));
        return;
    }
    up->connecting = false;
    edge_metrics_upstream_connected(up->u, edge_now_ms() - up->attached_ms);
    uv_timer_start(&up->timer, on_up_timeout, (uint64_t)edge_w.cfg.edge.proxy_read_timeout_ms, 0);
}

static void on_up_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    edge_upconn *up = h->data;
    if (up->closed)
        return;
    edge_conn *c = up->c;
    if (!c) {
        on_idle_event(up);
        return;
    }
    if (up->connecting)
        connect_done(up);
    edge_conn_progress(c);
}

void edge_proxy_abort(edge_conn *c)
{
    edge_upconn *up = c->up;
    c->up = NULL;
    if (up)
        up_close(up);
}
