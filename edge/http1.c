/* Client connections: read and parse request heads, route each request to redirect, static or
 * proxy, write responses, keep-alive and pipelining, and the header/idle/send timeouts. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "shared/http_status.h"
#include "shared/log.h"
#include "edge/edge.h"

static void on_handle_closed(uv_handle_t *h)
{
    edge_conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->info);
    buf_free(&c->proxy_resend);
    free(c->headers);
    free(c);
}

void edge_conn_close(edge_conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    edge_metrics_conn_closed(c);
    if (c->up)
        edge_proxy_abort(c);
    if (c->file_fd >= 0)
        close(c->file_fd);
    c->file_fd = -1;
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

void edge_conn_arm(edge_conn *c, int64_t ms)
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
    edge_conn_progress(c);
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

void edge_conn_accept(edge_worker *w, int fd, bool tls, const struct sockaddr *sa)
{
    edge_conn *c = calloc(1, sizeof(*c));
    if (!c || (tls && !w->gen->default_ctx)) {
        free(c);
        close(fd);
        return;
    }
    c->io.fd = fd;
    /* Responses leave in one or two writes and the next request waits on them: Nagle's delay
     * would only add latency (nginx's tcp_nodelay). */
    int one = 1;
    if (sa->sa_family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->file_fd = -1;
    c->tls = tls;
    if (tls) {
        c->io.ssl = SSL_new(w->gen->default_ctx);
        if (!c->io.ssl || SSL_set_fd(c->io.ssl, fd) != 1) {
            SSL_free(c->io.ssl);
            free(c);
            close(fd);
            return;
        }
        SSL_set_accept_state(c->io.ssl);
    }
    peer_string(sa, c->peer, sizeof(c->peer));
    c->gen = w->gen;
    edge_gen_ref(c->gen);
    buf_init(&c->in, w->cfg.edge.max_header_size + EDGE_READ_CHUNK);
    buf_init(&c->out, 0);
    buf_init(&c->info, 0);
    buf_init(&c->proxy_resend, 0);
    http_parser_init(&c->parser, HTTP_KIND_REQUEST, &w->limits, NULL, 0);
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
    c->keep_alive = true;
    edge_slots_wait(c, EDGE_WAIT_HEAD);
    edge_conn_arm(c, w->cfg.edge.header_timeout_ms);
    edge_conn_progress(c);
}

/* ---- responses ---- */

void edge_resp_start(edge_conn *c, int status, const char *reason)
{
    c->status = status;
    /* After a 400 the edge cannot trust where the next request starts (nginx closes too). */
    if (status == 400)
        c->keep_alive = false;
    buf_printf(&c->out, "HTTP/1.1 %d %s\r\nServer: hearth\r\nDate: %s\r\n", status,
               reason ? reason : http_status_reason(status), http_date_now());
    if (c->tls && c->site && c->site->hsts)
        buf_printf(&c->out, "Strict-Transport-Security: %s\r\n", c->site->hsts);
    if (!c->keep_alive)
        buf_append_str(&c->out, "Connection: close\r\n");
    else if (c->parser.version_minor == 0)
        buf_append_str(&c->out, "Connection: keep-alive\r\n");
}

void edge_resp_simple(edge_conn *c, int status, const char *reason, const char *extra_headers,
                      const char *body)
{
    size_t blen = body ? strlen(body) : 0;
    edge_resp_start(c, status, reason);
    buf_printf(&c->out, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n%s\r\n",
               blen, extra_headers ? extra_headers : "");
    if (body && !c->head_method) {
        buf_append(&c->out, body, blen);
        c->body_sent = blen;
    }
    c->state = CONN_SIMPLE;
}

const char *edge_conn_info(edge_conn *c, int idx)
{
    const char *p = c->info.data;
    if (!p || c->info.len == 0)
        return "-";
    for (int i = 0; i < idx; i++) {
        p += strlen(p) + 1;
        if (p >= c->info.data + c->info.len)
            return "-";
    }
    return *p ? p : "-";
}

/* ---- requests ---- */

static void save_span(edge_conn *c, const char *base, http_span s)
{
    buf_append(&c->info, base + s.off, s.len);
    buf_append(&c->info, "", 1);
}

static void save_header(edge_conn *c, const char *name)
{
    const http_header *h = http_find_header(&c->parser, buf_head(&c->in), name);
    if (h)
        save_span(c, buf_head(&c->in), h->value);
    else
        buf_append(&c->info, "", 1);
}

/* Kept past the head's lifetime for the access log: method, target, host, referer, agent. */
static void save_info(edge_conn *c)
{
    buf_reset(&c->info);
    save_span(c, buf_head(&c->in), c->parser.method);
    save_span(c, buf_head(&c->in), c->parser.target);
    save_header(c, "Host");
    save_header(c, "Referer");
    save_header(c, "User-Agent");
}

static edge_site *pick_site(edge_conn *c)
{
    edge_gen *g = c->gen;
    const http_header *h = http_find_header(&c->parser, buf_head(&c->in), "Host");
    edge_site *s = NULL;
    if (h)
        s = edge_gen_find_site(g, http_span_ptr(buf_head(&c->in), h->value), h->value.len);
    if (!s && c->io.ssl) {
        /* An unknown Host on TLS gets the site whose certificate the handshake chose. */
        SSL_CTX *ctx = SSL_get_SSL_CTX(c->io.ssl);
        for (size_t i = 0; i < g->site_count && !s; i++)
            if (g->sites[i].ctx == ctx)
                s = &g->sites[i];
    }
    if (!s && g->site_count)
        s = &g->sites[0];
    return s;
}

static void dispatch(edge_conn *c)
{
    edge_slots_busy(c);
    c->status = 0;
    c->body_sent = 0;
    c->head_method = http_span_eq(buf_head(&c->in), c->parser.method, "HEAD");
    save_info(c);
    c->keep_alive = c->parser.keep_alive && !edge_w.draining;
    c->site = pick_site(c);
    bool has_body = c->parser.body_kind != HTTP_BODY_NONE;
    edge_conn_arm(c, edge_w.cfg.edge.send_timeout_ms);
    if (!c->tls && edge_redirect_handle(c)) {
        /* Bodies sent to be redirected are never read: close after answering. */
        if (has_body)
            c->keep_alive = false;
    } else if (!c->site) {
        c->keep_alive = false;
        edge_resp_simple(c, 404, NULL, NULL, "no such site\n");
    } else if (edge_static_handle(c)) {
        if (has_body)
            c->keep_alive = false;
    } else if (c->site->upstream_count > 0) {
        edge_proxy_start(c);
    } else {
        if (has_body)
            c->keep_alive = false;
        edge_resp_simple(c, 404, NULL, NULL, "not found\n");
    }
    if (!c->closed)
        buf_consume(&c->in, c->parser.head_len);
}

static void parse_error(edge_conn *c)
{
    int status = http_error_status(c->parser.error);
    log_debug("%s: refused request: %s", c->peer, http_error_reason(c->parser.error));
    edge_slots_busy(c);
    buf_reset(&c->info);
    c->keep_alive = false;
    c->head_method = false;
    c->body_sent = 0;
    c->site = c->gen->site_count ? &c->gen->sites[0] : NULL;
    char body[128];
    snprintf(body, sizeof(body), "%s\n", http_error_reason(c->parser.error));
    edge_resp_simple(c, status, NULL, NULL, body);
    c->parser.method.len = 0;
}

/* A read that does not fit in what c->in already holds goes here first, and only the bytes
 * that came are copied: a connection that has sent a few bytes of a head then keeps a few
 * hundred bytes, not 16 KiB (3,000 slow clients held 48 MiB). Once c->in has grown, as it does
 * for a streamed body, reads go straight into it. */
static char read_scratch[16384];

/* Pull bytes into c->in; false when the socket has nothing more now (or is gone). */
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

static void handle_head(edge_conn *c)
{
    /* Right after a response the socket is most likely empty: wait for the poll to say
     * otherwise instead of spending a read(2) to hear EAGAIN. */
    if (c->just_finished && buf_used(&c->in) == 0 && !(c->io.ssl && SSL_has_pending(c->io.ssl))) {
        c->just_finished = false;
        return;
    }
    c->just_finished = false;
    if (!c->headers) {
        c->headers = malloc(EDGE_MAX_HEADERS * sizeof(http_header));
        if (!c->headers) {
            edge_conn_close(c);
            return;
        }
        http_parser_init(&c->parser, HTTP_KIND_REQUEST, &edge_w.limits, c->headers,
                         EDGE_MAX_HEADERS);
    }
    for (;;) {
        if (buf_used(&c->in) > 0) {
            if (!c->head_started) {
                c->head_started = true;
                if (c->wait == EDGE_WAIT_IDLE)
                    edge_slots_wait(c, EDGE_WAIT_HEAD);
                c->request_started_ms = edge_now_ms();
                edge_conn_arm(c, edge_w.cfg.edge.header_timeout_ms);
            }
            http_parse_result r = http_parse_head(&c->parser, buf_head(&c->in), buf_used(&c->in));
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

void edge_conn_finish(edge_conn *c)
{
    if (c->requests == 0 && c->io.ssl)
        log_debug("%s: TLS session %s", c->peer, SSL_session_reused(c->io.ssl) ? "resumed" : "new");
    edge_access_write(c);
    c->requests++;
    if (c->file_fd >= 0)
        close(c->file_fd);
    c->file_fd = -1;
    c->file_left = 0;
    if (!c->keep_alive || edge_w.draining) {
        c->state = CONN_CLOSING;
        if (c->io.ssl)
            SSL_shutdown(c->io.ssl);
        shutdown(c->io.fd, SHUT_WR);
        edge_conn_arm(c, 1000);
        return;
    }
    http_parser_reset(&c->parser);
    c->state = CONN_HEAD;
    c->just_finished = true;
    c->head_started = false;
    c->site = NULL;
    buf_reset(&c->info);
    /* Idle connections keep no buffers: 10,000 of them should cost little. */
    if (buf_used(&c->in) == 0) {
        buf_free(&c->in);
        buf_free(&c->out);
        buf_free(&c->info);
        buf_free(&c->proxy_resend);
        free(c->headers);
        c->headers = NULL;
        /* OpenSSL's own record buffers too (nginx does the same); it keeps any that hold data */
        if (c->io.ssl)
            SSL_free_buffers(c->io.ssl);
    }
    edge_slots_wait(c, EDGE_WAIT_IDLE);
    edge_conn_arm(c, edge_w.cfg.edge.keepalive_timeout_ms);
}

static bool want_read(edge_conn *c)
{
    switch (c->state) {
    case CONN_HEAD:
        return true;
    case CONN_PROXY:
    case CONN_TUNNEL:
        return false; /* proxy.c asks through io flags; see update_poll */
    default:
        return false;
    }
}

void edge_conn_update_poll(edge_conn *c)
{
    if (c->closed)
        return;
    int ev = 0;
    if (want_read(c) || c->io.tls_want_read)
        ev |= UV_READABLE;
    if (buf_used(&c->out) > 0 || c->io.tls_want_write ||
        (c->state == CONN_STATIC && c->file_left > 0))
        ev |= UV_WRITABLE;
    if (c->state == CONN_PROXY || c->state == CONN_TUNNEL)
        ev |= edge_proxy_client_events(c);
    if (c->state == CONN_CLOSING)
        ev |= UV_READABLE; /* to see the peer's FIN */
    if (ev == c->poll_events)
        return;
    c->poll_events = ev;
    if (ev)
        uv_poll_start(&c->poll, ev, on_poll);
    else
        uv_poll_stop(&c->poll);
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

/* On TLS the first body bytes join the head in c->out, so a small file leaves as one record in
 * one segment; the next chunk is read once the previous one is nearly out. */
static int static_chunk(edge_conn *c)
{
    /* Small files (and every file on TLS) go through c->out, so head and body leave in one
     * write; large plain files go by sendfile once the head is out. */
    bool buffered = c->io.ssl || c->file_left + buf_used(&c->out) <= EDGE_SMALL_FILE;
    if (buffered) {
        if (c->file_left > 0 && buf_used(&c->out) < EDGE_READ_CHUNK && edge_static_send(c) < 0)
            return -1;
        return edge_io_flush(&c->io, &c->out);
    }
    if (edge_io_flush(&c->io, &c->out) < 0)
        return -1;
    if (buf_used(&c->out) == 0 && c->file_left > 0 && edge_static_send(c) < 0)
        return -1;
    return 0;
}

/* Chunks go out one after another until the socket is full or EDGE_STATIC_TURN_CHUNKS have
 * gone: one trip through the event loop per chunk cost more than the copying (a 1 MiB file on
 * TLS took 16 turns), and the bound keeps one fast reader from starving the others. */
static int static_step(edge_conn *c)
{
    for (int i = 0; i < EDGE_STATIC_TURN_CHUNKS; i++) {
        uint64_t left_before = c->file_left;
        if (static_chunk(c) < 0)
            return -1;
        bool blocked = buf_used(&c->out) > 0 || c->file_left == left_before;
        if (c->file_left == 0 || blocked)
            break;
    }
    if (c->file_left == 0 && buf_used(&c->out) == 0)
        edge_conn_finish(c);
    return 0;
}

/* One pass over the state machine; loops while a state change makes more progress possible
 * (a finished response followed by a pipelined request). */
static void conn_run(edge_conn *c)
{
    for (int round = 0; round < 64 && !c->closed; round++) {
        edge_conn_state before = c->state;
        size_t out_before = buf_used(&c->out);
        bool in_static = c->state == CONN_STATIC; /* static_step flushes itself */
        if (!in_static && edge_io_flush(&c->io, &c->out) < 0) {
            edge_conn_close(c);
            return;
        }
        if (buf_used(&c->out) < out_before && c->state != CONN_HEAD && c->state != CONN_PROXY &&
            c->state != CONN_TUNNEL)
            edge_conn_arm(c, edge_w.cfg.edge.send_timeout_ms);
        switch (c->state) {
        case CONN_HEAD:
            handle_head(c);
            break;
        case CONN_SIMPLE:
            if (buf_used(&c->out) == 0)
                edge_conn_finish(c);
            break;
        case CONN_STATIC:
            if (static_step(c) < 0) {
                edge_conn_close(c);
                return;
            }
            break;
        case CONN_PROXY:
        case CONN_TUNNEL:
            edge_proxy_client_event(c);
            break;
        case CONN_CLOSING:
            if (buf_used(&c->out) == 0)
                drain_closing(c);
            break;
        }
        if (c->closed || (c->state == before && buf_used(&c->out) == out_before))
            break;
    }
    if (!c->closed)
        edge_conn_update_poll(c);
}

void edge_conn_progress(edge_conn *c)
{
    conn_run(c);
}

/* Bytes of a next request that the kernel (or OpenSSL) holds and the edge has not read yet. */
static bool bytes_waiting(edge_conn *c)
{
    int n = 0;
    if (c->io.ssl && SSL_has_pending(c->io.ssl))
        return true;
    return ioctl(c->io.fd, FIONREAD, &n) == 0 && n > 0;
}

/* TERM: busy connections close after their response (edge_conn_finish checks draining). One
 * waiting between requests is closed now unless its next request is already here. A fresh one
 * has served nothing yet: its client connected to send a request that may still be on its
 * way, and closing would lose it, so it gets a moment to arrive. */
void edge_conn_drain_idle(edge_worker *w)
{
    edge_conn *c = w->conns;
    while (c) {
        edge_conn *next = c->next;
        if (c->state == CONN_HEAD && !c->head_started) {
            if (c->requests == 0)
                edge_conn_arm(c, EDGE_DRAIN_FIRST_REQUEST_MS);
            else if (!bytes_waiting(c))
                edge_conn_close(c);
        }
        c = next;
    }
}

const char *edge_req_header(edge_conn *c, const char *name, size_t *len)
{
    const http_header *h = http_find_header(&c->parser, buf_head(&c->in), name);
    if (!h)
        return NULL;
    *len = h->value.len;
    return http_span_ptr(buf_head(&c->in), h->value);
}
