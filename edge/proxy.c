/* Reverse proxy to the upstreams (chosen by upstream.c): a request that failed before any answer
 * tried again on another, a keep-alive pool, request and response bodies streamed both ways with
 * backpressure, forwarded headers, hop-by-hop removal, 502/504, and WebSocket upgrades as a byte
 * tunnel. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shared/log.h"
#include "edge/req.h"

#define POOL_MAX_IDLE 64
#define POOL_IDLE_MS 60000
/* A request (rewritten head and body) is kept up to this size, so it can go to another upstream
 * connection when the first one fails before answering. */
#define RESEND_MAX (64 * 1024)

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
    edge_req *r; /* NULL while pooled */
    buf in;
    buf out;
    buf trailer; /* the response's trailer lines so far (the parser bounds them) */
    http_parser p;
    http_header hdrs[EDGE_MAX_HEADERS];
};

/* One proxied request: the handler's state inside the edge_req. */
typedef struct {
    edge_upconn *up;  /* NULL once the exchange with the upstream is over */
    uint64_t tried;   /* bit i: the site's upstreams[i] had this request and failed it */
    buf resend;       /* the rewritten head and the body bytes sent so far, for a retry */
    bool resend_lost; /* body bytes went upstream that resend no longer holds */
    bool idempotent;  /* GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110 9.2.2) */
    bool retried;     /* the one retry after a reused connection closed is spent */
    bool upgrade;     /* the client asked for an Upgrade */
    bool chunk_body;  /* the request body's length is unknown: it goes upstream in chunks */
    bool body_error;  /* the request body broke its framing */
    bool client_gone; /* the client left before its body (or its end of a tunnel) ended */
} proxy_req;

_Static_assert(sizeof(proxy_req) <= EDGE_REQ_CTX_SIZE, "proxy_req fits in the request");

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
    buf_free(&up->trailer);
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
    if (!up->r)
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
    buf_init(&up->trailer, 0);
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
    up->r = NULL;
    up->head_done = up->tunnel = up->wrote = up->heard = false;
    buf_free(&up->in);
    buf_free(&up->out);
    buf_free(&up->trailer);
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

static bool is_framing(const char *name, size_t len)
{
    return (len == 14 && strncasecmp(name, "content-length", 14) == 0) ||
           (len == 17 && strncasecmp(name, "transfer-encoding", 17) == 0);
}

/* TE is hop-by-hop, but "trailers" in it is the client's promise to keep trailer fields
 * (RFC 9110 6.5.1, 10.1.4), made for every hop: the upstream hears it only when the client
 * made it, so a gRPC-style server that refuses requests without it does so as it would
 * unproxied. */
static bool client_takes_trailers(const edge_req *r)
{
    size_t len = 0;
    const char *te = edge_req_header(r, "TE", &len);
    return te && !r->upgrade && http_list_has_token(te, len, "trailers");
}

/* The request as the upstream gets it. Its body is framed anew (the client's framing fields
 * stay behind): the same length, or chunks when the length is unknown. */
static void build_request_head(const edge_req *r, buf *out)
{
    const char *b = r->head;
    size_t conn_len = 0, host_len = 0, up_len = 0;
    const char *conn_val = edge_req_header(r, "Connection", &conn_len);
    const char *host = edge_req_header(r, "Host", &host_len);
    const char *upg = edge_req_header(r, "Upgrade", &up_len);
    buf_printf(out, "%.*s %.*s HTTP/1.1\r\n", (int)r->method.len, b + r->method.off,
               (int)r->target.len, b + r->target.off);
    /* HTTP/1.1 requires a Host: a client that sent none (HTTP/1.0) or an empty one is served
     * by the site the edge chose for it, so that is the name the application hears. */
    if (host && host_len)
        buf_printf(out, "Host: %.*s\r\n", (int)host_len, host);
    else
        buf_printf(out, "Host: %s\r\n", r->site->name);
    for (size_t i = 0; i < r->header_count; i++) {
        const http_header *h = &r->headers[i];
        const char *name = b + h->name.off;
        if (is_hop_by_hop(name, h->name.len, conn_val, conn_len) || is_framing(name, h->name.len) ||
            (h->name.len == 15 && strncasecmp(name, "x-forwarded-for", 15) == 0) ||
            (h->name.len == 9 && strncasecmp(name, "x-real-ip", 9) == 0) ||
            (h->name.len == 4 && strncasecmp(name, "host", 4) == 0))
            continue;
        buf_printf(out, "%.*s: %.*s\r\n", (int)h->name.len, name, (int)h->value.len,
                   b + h->value.off);
    }
    edge_client_forward_headers(r, out);
    buf_printf(out, "X-Forwarded-Proto: %s\r\n", r->tls ? "https" : "http");
    if (host && host_len)
        buf_printf(out, "X-Forwarded-Host: %.*s\r\n", (int)host_len, host);
    if (r->has_body && r->content_length >= 0)
        buf_printf(out, "Content-Length: %lld\r\n", (long long)r->content_length);
    else if (r->has_body)
        buf_append_str(out, "Transfer-Encoding: chunked\r\n");
    if (r->upgrade && upg)
        buf_printf(out, "Connection: upgrade\r\nUpgrade: %.*s\r\n\r\n", (int)up_len, upg);
    else if (client_takes_trailers(r))
        buf_append_str(out, "TE: trailers\r\nConnection: keep-alive, te\r\n\r\n");
    else
        buf_append_str(out, "Connection: keep-alive\r\n\r\n");
}

/* ---- starting ---- */

/* The request leaves its upstream connection (which is closed or pooled by the caller). */
static void detach(proxy_req *p)
{
    if (p->up)
        p->up->u->busy--;
    p->up = NULL;
}

/* The exchange with the upstream is over: what the request held goes. */
static void release(proxy_req *p)
{
    detach(p);
    buf_free(&p->resend);
}

static void fail_request(edge_req *r, int status)
{
    proxy_req *p = edge_req_ctx(r);
    edge_upconn *up = p->up;
    edge_metrics_proxy_error(r, status);
    release(p);
    if (up)
        up_close(up);
    edge_resp_start(r, status);
    edge_resp_body(r, "text/plain", status == 504 ? "upstream timed out\n" : "bad gateway\n");
}

static void on_up_timeout(uv_timer_t *t);

static uint64_t bit_of(const edge_upstream *u)
{
    return UINT64_C(1) << (u - u->site->upstreams);
}

/* The request goes to u: the access log names the last one, and every try after the first is
 * a retry. */
static void count_try(edge_req *r, const edge_upstream *u)
{
    if (r->upstream_tries++ > 0)
        edge_metrics_proxy_retry(r);
    r->upstream = u->spec;
}

/* Attach an upstream connection (a pooled one unless fresh) with the request as sent so far
 * queued: the head, and on a retry the body bytes kept; false when no upstream is left (every
 * one down, tried, or refusing). */
static bool attach(edge_req *r, bool fresh)
{
    proxy_req *p = edge_req_ctx(r);
    edge_upstream *u;
    while ((u = edge_upstream_pick(r->site, p->tried)) != NULL) {
        edge_upconn *up = fresh ? NULL : pool_get(u);
        count_try(r, u);
        if (!up) {
            int fd = edge_upstream_connect(u);
            if (fd < 0) {
                p->tried |= bit_of(u);
                edge_upstream_failed(u, strerror(errno));
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
        up->r = r;
        u->busy++;
        up->attached_ms = edge_now_ms();
        http_parser_init(&up->p, HTTP_KIND_RESPONSE, &edge_w.limits, up->hdrs, EDGE_MAX_HEADERS);
        up->p.limits.max_body = 0;
        up->p.response_to_head = r->head_method;
        up->p.keep_trailer = true;
        buf_append(&up->out, buf_head(&p->resend), buf_used(&p->resend));
        p->up = up;
        up_set_events(up, UV_WRITABLE);
        return true;
    }
    return false;
}

static bool is_idempotent(const edge_req *r)
{
    static const char *const methods[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (edge_req_method_is(r, methods[i]))
            return true;
    return false;
}

static void pump(edge_req *r);
static void proxy_closed(edge_req *r);
static const edge_handler proxy_handler = {.proceed = pump, .closed = proxy_closed};

void edge_proxy_start(edge_req *r)
{
    proxy_req *p = edge_req_ctx(r);
    *p = (proxy_req){.upgrade = r->upgrade,
                     .idempotent = is_idempotent(r),
                     .chunk_body = r->has_body && r->content_length < 0};
    buf_init(&p->resend, 0);
    r->upstream = NULL;
    r->upstream_tries = 0;
    build_request_head(r, &p->resend);
    edge_req_take(r, &proxy_handler);
    edge_req_body_start(r);
    if (!attach(r, false))
        fail_request(r, 502);
}

/* The request may go to another connection when all of it is still here and the upstream
 * cannot have acted on it: nothing left, or sending it twice is harmless. */
static bool resendable(const proxy_req *p, const edge_upconn *up)
{
    return !p->resend_lost && (!up->wrote || p->idempotent);
}

/* A connection failed before the upstream said anything. A fresh one (or one that timed out)
 * counts against its upstream and the request goes to the next, as with nginx's
 * proxy_next_upstream error timeout. A reused one was most likely closed as idle by the
 * upstream just as the request left (HTTP/1.1 cannot prevent that race, and an appserver reload
 * does it to every idle connection of its old workers): the request gets one more try, on a
 * fresh connection, and its upstream is not blamed. */
static void retry_or_fail(edge_req *r, int status, const char *why)
{
    proxy_req *p = edge_req_ctx(r);
    edge_upconn *up = p->up;
    bool reused = up->reused && status != 504, again = resendable(p, up);
    detach(p);
    if (!reused) {
        p->tried |= bit_of(up->u);
        edge_upstream_failed(up->u, why);
        up_close(up);
        if (again && attach(r, false))
            return;
    } else {
        if (again && !p->retried)
            log_debug("upstream %s: reused connection %s before answering; retrying on a new one",
                      up->u->spec, why);
        else
            log_warn("upstream %s: reused connection %s before answering; not retried (%s)",
                     up->u->spec, why, p->retried ? "retried once already" : "not resendable");
        up_close(up);
        if (again && !p->retried) {
            p->retried = true;
            p->tried &= ~bit_of(up->u); /* not its fault */
            if (attach(r, true))
                return;
        }
    }
    fail_request(r, status);
}

static void on_up_timeout(uv_timer_t *t)
{
    edge_upconn *up = t->data;
    edge_req *r = up->r;
    if (!r) {
        up_close(up);
        return;
    }
    if (up->connecting) {
        retry_or_fail(r, 504, "connect timed out");
    } else if (!up->heard) {
        retry_or_fail(r, 504, "no answer in time");
    } else if (!up->head_done) {
        log_repeated(&up->u->timeout_log, edge_now_ms(), HLOG_WARN,
                     "upstream %s: no response in time", up->u->spec);
        fail_request(r, 504);
    } else {
        edge_resp_abort(r); /* mid-body: nothing sensible can be said to the client any more */
        return;
    }
    edge_req_wake(r);
}

/* ---- moving bytes ---- */

/* Body bytes sent upstream are kept after the head while the whole request stays small, so a
 * retry can send them again; past that, the request can only go to the connection it is on. */
static void keep_for_resend(proxy_req *p, const char *b, size_t n)
{
    if (p->resend_lost)
        return;
    if (buf_used(&p->resend) + n <= RESEND_MAX && buf_append(&p->resend, b, n) == 0)
        return;
    p->resend_lost = true;
    buf_free(&p->resend);
}

static void send_up(proxy_req *p, edge_upconn *up, const char *b, size_t n)
{
    if (!up->tunnel)
        keep_for_resend(p, b, n);
    buf_append(&up->out, b, n);
}

/* Request body bytes as the upstream reads them: chunked when their length is unknown. */
static void body_up(proxy_req *p, edge_upconn *up, const char *data, size_t n)
{
    if (!p->chunk_body || up->tunnel) {
        send_up(p, up, data, n);
        return;
    }
    char size[24];
    int len = snprintf(size, sizeof(size), "%zx\r\n", n);
    send_up(p, up, size, (size_t)len);
    send_up(p, up, data, n);
    send_up(p, up, "\r\n", 2);
}

static bool client_to_upstream(edge_req *r, proxy_req *p, edge_upconn *up)
{
    bool moved = false;
    while (buf_used(&up->out) < EDGE_HIGH_WATER) {
        const char *data;
        size_t n;
        edge_body_result res = edge_req_body_read(r, &data, &n);
        if (res == EDGE_BODY_DATA) {
            body_up(p, up, data, n);
            moved = true;
            continue;
        }
        if (res == EDGE_BODY_END && p->chunk_body) {
            send_up(p, up, "0\r\n\r\n", 5);
            moved = true;
        }
        p->body_error = res == EDGE_BODY_ERROR;
        p->client_gone = res == EDGE_BODY_GONE;
        break;
    }
    return moved;
}

/* The upstream's head, relayed: its own framing fields stay behind when a body follows, for the
 * protocol frames the body itself. */
static void relay_head(edge_req *r, edge_upconn *up)
{
    const char *b = buf_head(&up->in);
    http_parser *hp = &up->p;
    const http_header *ch = http_find_header(hp, b, "Connection");
    const char *conn_val = ch ? b + ch->value.off : NULL;
    size_t conn_len = ch ? ch->value.len : 0;
    bool switching = hp->status == 101, framed = hp->body_kind != HTTP_BODY_NONE;
    if (hp->body_kind == HTTP_BODY_UNTIL_CLOSE)
        r->keep_alive = false; /* the upstream's close ends the body; so does the client's */
    edge_resp_start_relayed(r, hp->status, b + hp->reason.off, hp->reason.len);
    for (size_t i = 0; i < hp->header_count; i++) {
        const http_header *h = &hp->headers[i];
        const char *name = b + h->name.off;
        bool upgrade = h->name.len == 7 && strncasecmp(name, "upgrade", 7) == 0 && switching;
        if (!upgrade && (is_hop_by_hop(name, h->name.len, conn_val, conn_len) ||
                         (framed && is_framing(name, h->name.len))))
            continue;
        edge_resp_header_n(r, name, h->name.len, b + h->value.off, h->value.len);
    }
    int64_t length = EDGE_LEN_NONE;
    if (hp->body_kind == HTTP_BODY_LENGTH)
        length = (int64_t)hp->content_length;
    else if (framed)
        length = EDGE_LEN_UNKNOWN;
    edge_resp_head_done(r, length);
}

/* The upstream's trailer fields follow the body to the client, where its protocol carries them;
 * the layer drops those no trailer may carry (hop-by-hop ones included). */
static void relay_trailers(edge_req *r, edge_upconn *up)
{
    const char *b = buf_head(&up->trailer);
    size_t n = http_trailer_fields(b, buf_used(&up->trailer), up->hdrs, EDGE_MAX_HEADERS);
    for (size_t i = 0; i < n; i++) {
        const http_header *h = &up->hdrs[i];
        if (!is_hop_by_hop(b + h->name.off, h->name.len, NULL, 0))
            edge_resp_trailer(r, b + h->name.off, h->name.len, b + h->value.off, h->value.len);
    }
    buf_free(&up->trailer);
}

/* The response is complete: the upstream connection goes back to the pool when both messages
 * ended cleanly, and the client's side finishes like any other response. */
static void response_done(edge_req *r, edge_upconn *up)
{
    proxy_req *p = edge_req_ctx(r);
    relay_trailers(r, up);
    if (r->body_done && up->p.keep_alive && !up->eof && buf_used(&up->out) == 0)
        pool_put(up);
    else
        up_close(up);
    release(p);
    edge_resp_finish(r);
}

/* Parse what came from the upstream; false when the exchange ended (p->up is gone). */
static bool upstream_head(edge_req *r, edge_upconn *up)
{
    proxy_req *p = edge_req_ctx(r);
    http_parse_result res = http_parse_head(&up->p, buf_head(&up->in), buf_used(&up->in));
    if (res == HTTP_PARSE_AGAIN) {
        if (up->eof && !up->heard) {
            retry_or_fail(r, 502, up->reused ? "closed" : "closed before answering");
            return false;
        }
        if (up->eof || buf_used(&up->in) >= up->in.max) {
            log_repeated(&up->u->broken_log, edge_now_ms(), HLOG_WARN,
                         "upstream %s: %s before a complete response head", up->u->spec,
                         up->eof ? "closed" : "too many bytes");
            fail_request(r, 502);
            return false;
        }
        return true;
    }
    if (res == HTTP_PARSE_ERROR) {
        log_repeated(&up->u->broken_log, edge_now_ms(), HLOG_WARN, "upstream %s: bad response: %s",
                     up->u->spec, http_error_reason(up->p.error));
        fail_request(r, 502);
        return false;
    }
    if (up->p.status >= 100 && up->p.status < 200 && up->p.status != 101) {
        buf_consume(&up->in, up->p.head_len); /* interim responses: the edge sent its own 100 */
        bool to_head = up->p.response_to_head;
        http_parser_reset(&up->p);
        up->p.response_to_head = to_head;
        up->p.keep_trailer = true;
        return true;
    }
    if (up->p.status == 101 && !p->upgrade) {
        fail_request(r, 502);
        return false;
    }
    relay_head(r, up);
    buf_consume(&up->in, up->p.head_len);
    up->head_done = true;
    edge_metrics_upstream_header(up->u, edge_now_ms() - up->attached_ms);
    /* Upgraded: bytes copied both ways, living as long as they flow (the read timeout bounds
     * the silence). */
    up->tunnel = up->p.status == 101;
    return true;
}

static bool body_to_client(edge_req *r, edge_upconn *up)
{
    while (buf_used(&up->in) > 0 || up->p.body_kind == HTTP_BODY_NONE ||
           (up->p.body_kind == HTTP_BODY_LENGTH && up->p.remaining == 0)) {
        if (up->tunnel) {
            edge_resp_write(r, buf_head(&up->in), buf_used(&up->in));
            buf_reset(&up->in);
            return true;
        }
        size_t consumed = 0, dl = 0;
        const char *data;
        http_parse_result res =
            http_parse_body(&up->p, buf_head(&up->in), buf_used(&up->in), &consumed, &data, &dl);
        if (res == HTTP_PARSE_TRAILER)
            buf_append(&up->trailer, data, dl);
        else
            edge_resp_write(r, data, dl);
        buf_consume(&up->in, consumed);
        if (res == HTTP_PARSE_DONE) {
            response_done(r, up);
            return false;
        }
        if (res == HTTP_PARSE_ERROR) {
            log_repeated(&up->u->broken_log, edge_now_ms(), HLOG_WARN,
                         "upstream %s: bad response body: %s", up->u->spec,
                         http_error_reason(up->p.error));
            edge_resp_abort(r);
            return false;
        }
        if (res == HTTP_PARSE_AGAIN)
            break;
    }
    if (up->eof) {
        if (up->p.body_kind == HTTP_BODY_UNTIL_CLOSE || up->tunnel) {
            response_done(r, up);
            return false;
        }
        log_repeated(&up->u->broken_log, edge_now_ms(), HLOG_WARN,
                     "upstream %s: closed in the middle of a response body", up->u->spec);
        edge_resp_abort(r); /* truncated: the client must not take it for complete */
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

/* The request body (or the tunnel's client side) toward the upstream; false when the exchange
 * ended. */
static bool request_side(edge_req *r, proxy_req *p, edge_upconn *up, bool *moved)
{
    if ((!r->body_done || up->tunnel) && !p->body_error)
        *moved |= client_to_upstream(r, p, up);
    if (p->body_error && !up->head_done) {
        int status = r->body_error_status;
        up_close(up);
        release(p);
        r->keep_alive = false;
        edge_resp_text(r, status, "bad request body\n");
        return false;
    }
    if (p->client_gone) {
        edge_resp_abort(r); /* the client left mid-request (or closed its tunnel end) */
        return false;
    }
    return true;
}

/* Both directions, until neither can move. */
static bool pump_once(edge_req *r, proxy_req *p)
{
    edge_upconn *up = p->up;
    bool moved = false;
    if (!request_side(r, p, up, &moved))
        return false;
    if (up->connecting)
        return moved;
    size_t before = buf_used(&up->out);
    if (flush_upstream(up) < 0) {
        if (!up->head_done)
            retry_or_fail(r, 502, strerror(errno));
        else
            edge_resp_abort(r);
        return false;
    }
    moved |= buf_used(&up->out) != before;
    while (edge_resp_writable(r) && read_upstream(up)) {
        moved = true;
        uv_timer_start(&up->timer, on_up_timeout, (uint64_t)edge_w.cfg.edge.proxy_read_timeout_ms,
                       0);
    }
    if (!up->head_done && (buf_used(&up->in) > 0 || up->eof) && !upstream_head(r, up))
        return false;
    if (up->head_done && !body_to_client(r, up))
        return false;
    before = edge_resp_queued(r);
    if (edge_resp_flush(r) < 0) {
        edge_resp_abort(r);
        return false;
    }
    return moved || edge_resp_queued(r) != before;
}

static int upstream_events(edge_req *r, edge_upconn *up)
{
    if (up->connecting)
        return UV_WRITABLE;
    int ev = 0;
    if (buf_used(&up->out) > 0)
        ev |= UV_WRITABLE;
    if (!up->eof && (!up->head_done || edge_resp_writable(r)))
        ev |= UV_READABLE;
    return ev;
}

static void pump(edge_req *r)
{
    proxy_req *p = edge_req_ctx(r);
    bool moved = false;
    for (int i = 0; i < 32 && p->up; i++) {
        if (!pump_once(r, p))
            break;
        moved = true;
    }
    edge_upconn *up = p->up;
    if (!up)
        return;
    up_set_events(up, upstream_events(r, up));
    if (up->tunnel && moved)
        uv_timer_start(&up->timer, on_up_timeout, (uint64_t)edge_w.cfg.edge.proxy_read_timeout_ms,
                       0);
    r->body_wanted =
        !p->body_error && (!r->body_done || up->tunnel) && buf_used(&up->out) < EDGE_HIGH_WATER;
}

static void proxy_closed(edge_req *r)
{
    proxy_req *p = edge_req_ctx(r);
    if (p->up)
        up_close(p->up);
    release(p);
}

static void connect_done(edge_upconn *up)
{
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(up->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        retry_or_fail(up->r, 502, strerror(err));
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
    edge_req *r = up->r;
    if (!r) {
        on_idle_event(up);
        return;
    }
    if (up->connecting)
        connect_done(up);
    edge_req_wake(r);
}
