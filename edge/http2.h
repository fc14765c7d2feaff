/* HTTP/2 on a TLS connection whose ALPN chose h2 (RFC 9113, on nghttp2). http1.c accepts every
 * connection and hands the ones that negotiated h2 to http2.c, which keeps the edge_conn (its
 * socket, timer, place in the worker's list and slots) and runs an nghttp2 session on it. Each
 * stream is an edge_req dispatched through the request layer like an HTTP/1.1 request;
 * http2_stream.c is the edge_proto those requests answer through. */
#ifndef HEARTH_EDGE_HTTP2_H
#define HEARTH_EDGE_HTTP2_H

#include <nghttp2/nghttp2.h>

#include "edge/http1.h"

typedef struct h2_conn h2_conn;
typedef struct h2_stream h2_stream;

/* ---- for http1.c and the worker ---- */

/* The TLS handshake of c chose h2. */
bool edge_h2_negotiated(const edge_conn *c);
/* c speaks h2 from now on; the bytes already read (the preface) are in c->in. -1: no memory. */
int edge_h2_start(edge_conn *c);
/* Read, dispatch, answer and write what can move now (the connection's poll and timer). */
void edge_h2_run(edge_conn *c);
/* The connection closes: every stream's handler is told, the session goes. */
void edge_h2_free(edge_conn *c);
/* Stop and reload: GOAWAY; the streams already opened finish, then the connection closes. */
void edge_h2_shutdown(edge_conn *c);

/* ---- between http2.c and http2_stream.c ---- */

/* A stream's response bytes queued before it counts as full (edge_resp_writable false). */
#define H2_STREAM_HIGH (64 * 1024)
/* All streams' queued response bytes together before every stream counts as full. */
#define H2_CONN_HIGH (1024 * 1024)

struct h2_stream {
    edge_req req; /* req.conn points back here */
    h2_conn *h;
    int32_t id;
    h2_stream *next, *prev; /* the connection's streams */
    h2_stream *ready_next;  /* the connection's ready list */
    bool ready;             /* on it: the handler's proceed runs at the next chance */
    bool dispatched;        /* the request went to the layer */
    bool closed;            /* nghttp2 closed the stream; freed at the end of the run */
    /* the request head as it arrives */
    buf head; /* field bytes the spans below point into */
    http_header *fields;
    size_t field_count, field_cap;
    buf cookies; /* cookie fields joined with "; " (RFC 9113 8.2.3) */
    http_span method, path, authority;
    bool has_authority;
    size_t list_size; /* decoded size as SETTINGS_MAX_HEADER_LIST_SIZE counts it */
    int refuse;       /* a status the head earned (431), or 0 */
    int64_t content_length;
    /* the request body */
    buf body;               /* received, not yet read by the handler */
    size_t body_pending;    /* handed to the handler by the last read, consumed at the next */
    bool body_end;          /* END_STREAM came */
    uint64_t body_received; /* every DATA octet so far, against max_body_size */
    /* the response */
    buf nv; /* the head's names and values, until it is submitted */
    size_t nv_count;
    bool submitted; /* the head went to nghttp2 */
    bool has_data;  /* ... with a data provider */
    bool deferred;  /* the provider said NGHTTP2_ERR_DEFERRED */
    bool finished;  /* the handler finished the body */
    buf out;        /* body bytes written, not yet framed */
    int file_fd;    /* a file the body continues with, or -1 */
    off_t file_off;
    uint64_t file_left;
    uint64_t progress_ms; /* the last time the client took or sent bytes of this stream */
};

/* Closed client streams the edge remembers whether the client had ended (END_STREAM or
 * RST_STREAM) (nghttp2 would keep as many as max_concurrent_streams, 128 by default). */
#define H2_CLOSED_KEPT 128

struct h2_conn {
    edge_conn *c;
    nghttp2_session *session;
    h2_stream *streams;
    size_t stream_count;
    h2_stream *ready_first, *ready_last;
    size_t queued; /* response bytes in every stream's out */
    bool running;  /* inside edge_h2_run: a stream's news waits for the run's next round */
    bool kicked;   /* on the worker's list of connections to run soon */
    h2_conn *kick_next;
    bool shutting_down; /* the first GOAWAY went */
    bool goaway_final;  /* the last one went */
    uint64_t requests;
    uint64_t shutdown_ms;
    uint64_t last_io_ms; /* bytes last left or came */
    /* nghttp2's blocks of whole pages (its frame buffer, its table of streams), whose pages go
     * back to the kernel while the connection is idle (http2_mem.c) */
    struct {
        void *p;
        uint32_t size;
        bool scratch; /* the frame buffer: what it holds between frames does not matter */
    } pages[4];
    bool pages_released; /* and nothing ran since */
    bool release_due;    /* the timer's next expiry gives them back (http2.c) */
    /* for frames on closed streams (http2_closed.c): which of the last H2_CLOSED_KEPT client
     * streams below ended_top had the client end its side, and where the next frame header
     * starts in the bytes read */
    int32_t ended_top;
    uint64_t ended[H2_CLOSED_KEPT / 64];
    uint32_t frame_left;
    uint8_t header[9], header_have;
    /* token buckets (DoS): a request costs the edge, these frames cost it and give nothing */
    double cheap_tokens, reset_tokens;
    uint64_t bucket_ms;
};

/* The protocol of HTTP/2 requests (http2_stream.c). */
extern const edge_proto edge_h2_proto;

/* A stream is opened by the client's HEADERS (http2.c) and ends with nghttp2's close. */
h2_stream *h2_stream_new(h2_conn *h, int32_t id);
void h2_stream_free(h2_stream *s);
/* One request field (http2.c's header callback); a pseudo-header or a regular one. */
void h2_stream_field(h2_stream *s, const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen);
/* DATA for the stream: kept for the handler, or dropped when nobody reads it. */
void h2_stream_data(h2_stream *s, const uint8_t *data, size_t len);
/* The request head is complete: the layer gets the request. */
void h2_stream_dispatch(h2_stream *s);
/* Everything received for the stream that the handler no longer reads is given back to the
 * flow-control windows. */
void h2_stream_release_body(h2_stream *s);
/* nghttp2 asks for the DATA frames' contents. */
ssize_t h2_stream_read_body(nghttp2_session *session, int32_t id, uint8_t *dst, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *user);
int h2_stream_send_data(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *src, void *user);
/* Whether the stream's response waits on the client (bytes queued, or its body expected). */
bool h2_stream_waits_on_client(const h2_stream *s);

/* nghttp2's allocator for the connection's session (http2_mem.c). */
nghttp2_mem h2_mem(h2_conn *h);
/* The connection has nothing to send and no stream: its blocks' pages go back. */
void h2_mem_idle(h2_conn *h);

/* Stream id closed; the client had ended its side (http2_closed.c). */
void h2_closed_record(h2_conn *h, int32_t id, bool client_ended);
/* nghttp2_session_mem_recv, answering frames on the streams recorded as closed. */
ssize_t h2_closed_recv(h2_conn *h, const uint8_t *data, size_t len);

/* The stream has news for its handler (http2.c runs ready streams' proceed). */
void h2_ready(h2_stream *s);
/* Have the connection run soon (from outside a run: the next turn of the loop). */
void h2_kick(h2_conn *h);

#endif
