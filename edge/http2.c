/* HTTP/2 connections (RFC 9113) on nghttp2: the session's settings and limits, its callbacks,
 * the run that reads frames, lets the streams' handlers move and writes frames, the timers
 * (idle connection, streams stalled on the client, the second GOAWAY of a graceful stop) and the
 * protections nghttp2 1.52 lacks (frames that cost the edge work and give nothing; resets the
 * client makes the edge send, "MadeYouReset"). The streams themselves are http2_stream.c's. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "shared/log.h"
#include "edge/http2.h"

/* Frames are produced while fewer bytes than this wait for the socket. */
#define OUT_HIGH (64 * 1024)
/* Reads per run: one connection cannot keep the loop to itself. */
#define READS_PER_RUN 4
/* While streams are open the connection looks at their progress this often. */
#define TICK_MS 1000
/* A connection idle this long gives its session's pages back (http2_mem.c). Not at once: a
 * client sending one request after another would have them taken and faulted back in every
 * time (50 connections with one request each at a time: 37 us of the worker's CPU a request
 * with the pages given back at once, 25 us with this). */
#define PAGES_IDLE_MS 10
/* After the first GOAWAY of a graceful stop, how long the final one may wait for the PING's
 * answer (the client's round trip) before it goes anyway. */
#define SHUTDOWN_GRACE_MS 1000
/* Frames that make the edge work and carry no request (PING, SETTINGS, PRIORITY, empty DATA):
 * a client gets this many at once and this many more a second, then GOAWAY. */
#define CHEAP_BURST 1000.0
#define CHEAP_RATE 100.0
/* Streams the edge resets because the client broke a rule (MadeYouReset, CVE-2025-8671, which
 * nghttp2 1.52 does not count): the same kind of budget. */
#define RESET_BURST 200.0
#define RESET_RATE 33.0
/* The client's own RST_STREAMs (rapid reset, CVE-2023-44487): nghttp2 counts those. */
#define CLIENT_RESET_BURST 1000
#define CLIENT_RESET_RATE 33
/* CONTINUATION frames after one HEADERS (CVE-2024-28182). RFC 9113 sets no limit; nghttp2's 8
 * refuses a block a client splits finely, and 64 still ends a flood after 1 MiB at most. */
#define MAX_CONTINUATIONS 64

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;

/* ---- connections to run soon ---- */

static uv_timer_t kick_timer;
static bool kick_ready;
static h2_conn *kicked_first;

static void on_kick(uv_timer_t *t)
{
    (void)t;
    while (kicked_first) {
        h2_conn *h = kicked_first;
        kicked_first = h->kick_next;
        h->kicked = false;
        h->kick_next = NULL;
        edge_h2_run(h->c);
    }
}

void h2_kick(h2_conn *h)
{
    if (h->running || h->kicked)
        return;
    if (!kick_ready) {
        uv_timer_init(edge_w.loop, &kick_timer);
        kick_ready = true;
    }
    h->kicked = true;
    h->kick_next = kicked_first;
    kicked_first = h;
    uv_timer_start(&kick_timer, on_kick, 0, 0);
}

static void unkick(h2_conn *h)
{
    for (h2_conn **pp = &kicked_first; *pp; pp = &(*pp)->kick_next) {
        if (*pp == h) {
            *pp = h->kick_next;
            break;
        }
    }
    h->kicked = false;
}

void h2_ready(h2_stream *s)
{
    h2_conn *h = s->h;
    if (s->ready || s->closed)
        return;
    s->ready = true;
    s->ready_next = NULL;
    if (h->ready_last)
        h->ready_last->ready_next = s;
    else
        h->ready_first = s;
    h->ready_last = s;
    h2_kick(h);
}

/* ---- budgets ---- */

static void refill(h2_conn *h)
{
    uint64_t now = edge_now_ms();
    double secs = (double)(now - h->bucket_ms) / 1000.0;
    h->bucket_ms = now;
    h->cheap_tokens += secs * CHEAP_RATE;
    if (h->cheap_tokens > CHEAP_BURST)
        h->cheap_tokens = CHEAP_BURST;
    h->reset_tokens += secs * RESET_RATE;
    if (h->reset_tokens > RESET_BURST)
        h->reset_tokens = RESET_BURST;
}

/* Spend one token of *tokens; past the budget the connection ends with ENHANCE_YOUR_CALM. */
static void spend(h2_conn *h, double *tokens, const char *what)
{
    refill(h);
    if (*tokens >= 1.0) {
        *tokens -= 1.0;
        return;
    }
    if (!h->goaway_final)
        log_info("%s: too many %s, closing the HTTP/2 connection", h->c->peer, what);
    h->shutting_down = h->goaway_final = true;
    nghttp2_session_terminate_session(h->session, NGHTTP2_ENHANCE_YOUR_CALM);
}

/* ---- callbacks ---- */

static ssize_t on_send(nghttp2_session *session, const uint8_t *data, size_t length, int flags,
                       void *user)
{
    (void)session;
    (void)flags;
    h2_conn *h = user;
    buf *out = &h->c->out;
    if (buf_used(out) >= OUT_HIGH)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (buf_append(out, data, length) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)length;
}

static h2_stream *stream_of(nghttp2_session *session, int32_t id)
{
    return nghttp2_session_get_stream_user_data(session, id);
}

/* The final GOAWAY names the last stream the edge took: the client retries later ones. */
static void goaway_final(h2_conn *h)
{
    if (h->goaway_final)
        return;
    h->goaway_final = true;
    nghttp2_submit_goaway(h->session, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(h->session), NGHTTP2_NO_ERROR,
                          NULL, 0);
}

/* Two connection errors nghttp2 1.52 lets through: a CONTINUATION over SETTINGS_MAX_FRAME_SIZE
 * (it checks only the first frame of a field block), and a HEADERS on a lower stream than one
 * already opened that it no longer remembers (RFC 9113 5.1.1: PROTOCOL_ERROR). */
static int on_begin_frame(nghttp2_session *session, const nghttp2_frame_hd *hd, void *user)
{
    (void)user;
    if (hd->length > edge_w.cfg.edge.h2_max_frame_size)
        nghttp2_session_terminate_session(session, NGHTTP2_FRAME_SIZE_ERROR);
    else if (hd->type == NGHTTP2_HEADERS &&
             hd->stream_id <= nghttp2_session_get_last_proc_stream_id(session) &&
             !nghttp2_session_find_stream(session, hd->stream_id))
        nghttp2_session_terminate_session(session, NGHTTP2_PROTOCOL_ERROR);
    return 0;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    h2_conn *h = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    h2_stream *s = h2_stream_new(h, frame->hd.stream_id);
    if (!s)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
    /* nginx's keepalive_requests for HTTP/2: this stream is the last the connection takes. */
    if (++h->requests >= (uint64_t)edge_w.cfg.edge.h2_max_requests && !h->goaway_final) {
        h->shutting_down = h->goaway_final = true;
        nghttp2_submit_goaway(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR,
                              NULL, 0);
    }
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags;
    (void)user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers: nghttp2 checked them; nothing passes them on */
    h2_stream *s = stream_of(session, frame->hd.stream_id);
    if (s)
        h2_stream_field(s, name, namelen, value, valuelen);
    return 0;
}

static void frame_end_stream(h2_stream *s)
{
    s->body_end = true;
    h2_ready(s);
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    h2_conn *h = user;
    h2_stream *s = frame->hd.stream_id ? stream_of(session, frame->hd.stream_id) : NULL;
    bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (s && end)
            s->body_end = true;
        if (s && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
            h2_ready(s); /* dispatched in the run, outside nghttp2's callbacks */
        else if (s && end)
            frame_end_stream(s);
        break;
    case NGHTTP2_DATA:
        if (s && end)
            frame_end_stream(s);
        else if (!end && frame->hd.length == 0)
            spend(h, &h->cheap_tokens, "empty DATA frames");
        break;
    case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
            if (h->shutting_down)
                goaway_final(h); /* the client has seen the first GOAWAY */
        } else {
            spend(h, &h->cheap_tokens, "PING frames");
        }
        break;
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
            spend(h, &h->cheap_tokens, "SETTINGS frames");
        break;
    case NGHTTP2_PRIORITY:
        spend(h, &h->cheap_tokens, "PRIORITY frames");
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags;
    (void)user;
    h2_stream *s = stream_of(session, id);
    if (s)
        h2_stream_data(s, data, len);
    else
        nghttp2_session_consume(session, id, len);
    return 0;
}

/* Whether the client ended its side of stream id (nghttp2's view: its CLOSED flag is not set
 * yet while the close callback runs, so "closed" here means both sides shut). */
static bool client_ended(nghttp2_session *session, int32_t id)
{
    nghttp2_stream *ns = nghttp2_session_find_stream(session, id);
    nghttp2_stream_proto_state st = ns ? nghttp2_stream_get_state(ns) : NGHTTP2_STREAM_STATE_IDLE;
    return st == NGHTTP2_STREAM_STATE_HALF_CLOSED_REMOTE || st == NGHTTP2_STREAM_STATE_CLOSED;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t error_code, void *user)
{
    (void)error_code;
    h2_closed_record(user, id, client_ended(session, id));
    h2_stream *s = stream_of(session, id);
    if (!s)
        return 0;
    nghttp2_session_set_stream_user_data(session, id, NULL);
    s->closed = true;
    h2_stream_release_body(s);
    edge_req_closed(&s->req);
    if (s->dispatched)
        edge_req_end(&s->req);
    return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    (void)session;
    h2_conn *h = user;
    if (frame->hd.type != NGHTTP2_RST_STREAM)
        return 0;
    /* Resets of the edge's own making (a failed upstream, a stalled stream) are not the
     * client's; the rest answer something the client sent. */
    uint32_t code = frame->rst_stream.error_code;
    if (code != NGHTTP2_INTERNAL_ERROR && code != NGHTTP2_CANCEL && code != NGHTTP2_NO_ERROR)
        spend(h, &h->reset_tokens, "streams reset for breaking the protocol");
    return 0;
}

static int on_invalid_frame(nghttp2_session *session, const nghttp2_frame *frame, int error,
                            void *user)
{
    (void)session;
    (void)frame;
    h2_conn *h = user;
    log_debug("%s: invalid HTTP/2 frame: %s", h->c->peer, nghttp2_strerror(error));
    return 0;
}

static int send_data_cb(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *src, void *user)
{
    h2_conn *h = user;
    if (buf_used(&h->c->out) >= OUT_HIGH)
        return NGHTTP2_ERR_WOULDBLOCK;
    return h2_stream_send_data(session, frame, framehd, length, src, user);
}

static void setup_library(void)
{
    if (callbacks)
        return;
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_send_callback(callbacks, on_send);
    nghttp2_session_callbacks_set_send_data_callback(callbacks, send_data_cb);
    nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(callbacks, on_invalid_frame);
    nghttp2_option_new(&options);
    /* Request body bytes are given back to the windows only once the handler has read them,
     * so a slow upstream slows the client and nothing piles up in the edge. */
    nghttp2_option_set_no_auto_window_update(options, 1);
    nghttp2_option_set_stream_reset_rate_limit(options, CLIENT_RESET_BURST, CLIENT_RESET_RATE);
    nghttp2_option_set_max_continuations(options, MAX_CONTINUATIONS);
    /* A closed stream is forgotten at once: nghttp2 would keep up to max_concurrent_streams of
     * them per connection (for RFC 7540's priority tree, which RFC 9113 deprecates, and for
     * frames that come after the close, which http2_closed.c answers instead). */
    nghttp2_option_set_no_closed_streams(options, 1);
    /* Response fields go without HPACK's dynamic table, as nginx's do: the table would keep up
     * to 4 KB per connection for as long as the connection stays open. */
    nghttp2_option_set_max_deflate_dynamic_table_size(options, 0);
}

/* ---- the connection ---- */

bool edge_h2_negotiated(const edge_conn *c)
{
    const unsigned char *proto = NULL;
    unsigned int len = 0;
    if (!c->io.ssl)
        return false; /* no h2c: plain HTTP stays HTTP/1.1 */
    SSL_get0_alpn_selected(c->io.ssl, &proto, &len);
    return len == 2 && memcmp(proto, "h2", 2) == 0;
}

static int send_settings(h2_conn *h)
{
    const config_edge *e = &edge_w.cfg.edge;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)e->h2_max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)e->h2_stream_window},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, (uint32_t)e->h2_max_frame_size},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)e->h2_max_header_list_size},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])))
        return -1;
    return nghttp2_session_set_local_window_size(h->session, NGHTTP2_FLAG_NONE, 0,
                                                 (int32_t)e->h2_connection_window);
}

int edge_h2_start(edge_conn *c)
{
    setup_library();
    h2_conn *h = calloc(1, sizeof(*h));
    if (!h)
        return -1;
    h->c = c;
    nghttp2_mem mem = h2_mem(h);
    if (nghttp2_session_server_new3(&h->session, callbacks, h, options, &mem) != 0) {
        free(h);
        return -1;
    }
    h->cheap_tokens = CHEAP_BURST;
    h->reset_tokens = RESET_BURST;
    h->bucket_ms = h->last_io_ms = edge_now_ms();
    h->frame_left = NGHTTP2_CLIENT_MAGIC_LEN; /* the preface comes before the first frame */
    if (send_settings(h) < 0) {
        nghttp2_session_del(h->session);
        free(h);
        return -1;
    }
    c->h2 = h;
    c->state = CONN_REQ;
    c->in.max = 0; /* nghttp2 takes every byte read: c->in holds one read at most */
    edge_slots_busy(c);
    edge_h2_run(c);
    return 0;
}

void edge_h2_free(edge_conn *c)
{
    h2_conn *h = c->h2;
    if (!h)
        return;
    c->h2 = NULL;
    if (h->kicked)
        unkick(h);
    /* Handlers let go of what they hold (upstream connections, files). */
    for (h2_stream *s = h->streams; s; s = s->next) {
        if (!s->closed) {
            s->closed = true;
            edge_req_closed(&s->req);
            if (s->dispatched)
                edge_req_end(&s->req);
        }
    }
    while (h->streams)
        h2_stream_free(h->streams);
    nghttp2_session_del(h->session);
    free(h);
}

void edge_h2_shutdown(edge_conn *c)
{
    h2_conn *h = c->h2;
    if (!h || h->shutting_down)
        return;
    h->shutting_down = true;
    h->shutdown_ms = edge_now_ms();
    /* RFC 9113 6.8: a first GOAWAY that refuses nothing, then, once a PING has been answered
     * (the client has seen it and opens no more streams here), the one naming the last stream
     * taken. Streams in flight finish either way. */
    nghttp2_submit_shutdown_notice(h->session);
    nghttp2_submit_ping(h->session, NGHTTP2_FLAG_NONE, NULL);
    h2_kick(h);
}

/* Write what is queued; -1 when the client is gone. */
static int flush(edge_conn *c, bool *moved)
{
    size_t before = buf_used(&c->out);
    if (edge_io_flush(&c->io, &c->out) < 0)
        return -1;
    if (buf_used(&c->out) < before) {
        *moved = true;
        c->h2->last_io_ms = edge_now_ms();
    }
    return 0;
}

/* Read and hand the bytes to nghttp2; -1 when the connection must close. */
static int read_frames(edge_conn *c, bool *moved)
{
    h2_conn *h = c->h2;
    for (int i = 0; i < READS_PER_RUN; i++) {
        if (!nghttp2_session_want_read(h->session) || buf_used(&c->out) >= OUT_HIGH)
            return 0;
        /* Bytes read before http2.c took the connection (the preface) go first. */
        if (buf_used(&c->in) == 0 && !edge_conn_read(c))
            return c->read_eof ? -1 : 0;
        *moved = true;
        h->last_io_ms = edge_now_ms();
        ssize_t n = h2_closed_recv(h, (const uint8_t *)buf_head(&c->in), buf_used(&c->in));
        if (n < 0) {
            log_debug("%s: HTTP/2: %s", c->peer, nghttp2_strerror((int)n));
            return -1;
        }
        buf_consume(&c->in, (size_t)n);
    }
    return 0;
}

static void run_ready(h2_conn *h, bool *moved)
{
    /* Only the streams ready when the pass starts: one that gets ready again waits a round. */
    h2_stream *s = h->ready_first;
    h->ready_first = h->ready_last = NULL;
    while (s) {
        h2_stream *next = s->ready_next;
        s->ready = false;
        s->ready_next = NULL;
        *moved = true;
        if (!s->closed && !s->dispatched)
            h2_stream_dispatch(s);
        else if (!s->closed && s->req.handler && s->req.handler->proceed)
            s->req.handler->proceed(&s->req);
        s = next;
    }
}

static int produce(h2_conn *h, bool *moved)
{
    size_t before = buf_used(&h->c->out);
    int rv = nghttp2_session_send(h->session);
    if (rv < 0) {
        log_debug("%s: HTTP/2: %s", h->c->peer, nghttp2_strerror(rv));
        return -1;
    }
    if (buf_used(&h->c->out) != before)
        *moved = true;
    return 0;
}

static void free_closed(h2_conn *h)
{
    h2_stream *s = h->streams;
    while (s) {
        h2_stream *next = s->next;
        if (s->closed && !s->ready)
            h2_stream_free(s);
        s = next;
    }
}

static void on_timer(uv_timer_t *t);

/* Idle: one timeout, after a first short one that gives the pages back. Streams open (or a
 * stop under way): a tick that looks at them. */
static void arm(edge_conn *c)
{
    h2_conn *h = c->h2;
    bool ticking = h->stream_count > 0 || (h->shutting_down && !h->goaway_final);
    h->release_due = !ticking && !h->pages_released;
    if (ticking) {
        if (uv_timer_get_repeat(&c->timer) != TICK_MS || !uv_is_active((uv_handle_t *)&c->timer))
            uv_timer_start(&c->timer, on_timer, TICK_MS, TICK_MS);
    } else if (h->release_due) {
        uv_timer_start(&c->timer, on_timer, PAGES_IDLE_MS, 0);
    } else {
        uv_timer_start(&c->timer, on_timer, (uint64_t)edge_w.cfg.edge.h2_idle_timeout_ms, 0);
    }
}

/* PAGES_IDLE_MS of the idle timeout have passed: the pages go, the rest of it starts. */
static void release_pages(edge_conn *c)
{
    h2_conn *h = c->h2;
    h->release_due = false;
    if (buf_used(&c->in) == 0 && buf_used(&c->out) == 0)
        h2_mem_idle(h);
    uv_timer_start(&c->timer, on_timer,
                   (uint64_t)edge_w.cfg.edge.h2_idle_timeout_ms - PAGES_IDLE_MS, 0);
}

/* What the connection waits for, for the poll and the slots. */
static void settle(edge_conn *c)
{
    h2_conn *h = c->h2;
    int ev = 0;
    if ((nghttp2_session_want_read(h->session) && buf_used(&c->out) < OUT_HIGH) ||
        c->io.tls_want_read)
        ev |= UV_READABLE;
    if (buf_used(&c->out) > 0 || c->io.tls_want_write)
        ev |= UV_WRITABLE;
    edge_conn_poll(c, ev);
    if (h->stream_count == 0 && c->wait != EDGE_WAIT_IDLE) {
        edge_slots_wait(c, EDGE_WAIT_IDLE);
    } else if (h->stream_count > 0 && c->wait != EDGE_WAIT_NONE) {
        edge_slots_busy(c);
    }
    /* An idle connection keeps no buffers (as HTTP/1.1's does between requests). */
    if (h->stream_count == 0 && buf_used(&c->in) == 0 && buf_used(&c->out) == 0) {
        buf_free(&c->in);
        buf_free(&c->out);
        SSL_free_buffers(c->io.ssl);
    }
    arm(c);
}

void edge_h2_run(edge_conn *c)
{
    h2_conn *h = c->h2;
    if (h->running)
        return;
    h->running = true;
    h->pages_released = false;
    bool fatal = false;
    for (int round = 0; round < 16 && !fatal; round++) {
        bool moved = false;
        fatal = flush(c, &moved) < 0 || read_frames(c, &moved) < 0;
        if (fatal)
            break;
        run_ready(h, &moved);
        fatal = produce(h, &moved) < 0;
        if (!moved)
            break;
    }
    if (!fatal)
        fatal = flush(c, &(bool){false}) < 0;
    h->running = false;
    free_closed(h);
    if (fatal) {
        edge_conn_close(c);
        return;
    }
    if (!nghttp2_session_want_read(h->session) && !nghttp2_session_want_write(h->session) &&
        buf_used(&c->out) == 0) {
        edge_h2_free(c);
        edge_conn_linger(c); /* the GOAWAY reaches the client before the close */
        return;
    }
    /* Streams that got ready again in the last round, or frames nghttp2 still has while the
     * socket took everything (the rounds ran out, not the work): the next turn of the loop. */
    if (h->ready_first || (nghttp2_session_want_write(h->session) && buf_used(&c->out) < OUT_HIGH))
        h2_kick(h);
    settle(c);
}

/* Streams whose client takes nothing (a zero window) or sends nothing (a body that stopped)
 * for send_timeout are reset: what they hold goes. */
static void check_stalls(h2_conn *h, uint64_t now)
{
    uint64_t limit = (uint64_t)edge_w.cfg.edge.send_timeout_ms;
    for (h2_stream *s = h->streams; s; s = s->next) {
        if (s->closed || !h2_stream_waits_on_client(s) || now - s->progress_ms < limit)
            continue;
        log_debug("%s: HTTP/2 stream %d stalled for %llu ms, reset", h->c->peer, s->id,
                  (unsigned long long)(now - s->progress_ms));
        s->progress_ms = now; /* one reset */
        nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    }
}

static void on_timer(uv_timer_t *t)
{
    edge_conn *c = t->data;
    h2_conn *h = c->h2;
    uint64_t now = edge_now_ms();
    if (h->release_due) {
        release_pages(c);
        return;
    }
    if (h->stream_count == 0 && !(h->shutting_down && !h->goaway_final)) {
        log_debug("%s: HTTP/2 connection idle, closing", c->peer);
        h->shutting_down = h->goaway_final = true;
        nghttp2_session_terminate_session(h->session, NGHTTP2_NO_ERROR);
    }
    if (buf_used(&c->out) > 0 && now - h->last_io_ms >= (uint64_t)edge_w.cfg.edge.send_timeout_ms) {
        edge_conn_close(c); /* the client reads nothing at all */
        return;
    }
    check_stalls(h, now);
    if (h->shutting_down && !h->goaway_final && now - h->shutdown_ms >= SHUTDOWN_GRACE_MS)
        goaway_final(h);
    edge_h2_run(c);
}
