/* An HTTP/1.1 client connection, private to http1.c and the slot keeping (slots.c) that sheds
 * connections under pressure. Handlers never see it: they work on its edge_req. */
#ifndef HEARTH_EDGE_HTTP1_H
#define HEARTH_EDGE_HTTP1_H

#include "edge/edge.h"
#include "edge/req.h"

typedef enum {
    CONN_HEAD,    /* waiting for (more of) a request head */
    CONN_REQ,     /* a handler answers: a file, an upstream, a tunnel */
    CONN_SIMPLE,  /* the response is complete in out: flush it, then the next request */
    CONN_CLOSING, /* flushing the last bytes, then close */
} edge_conn_state;

/* What a connection between requests waits for: slots.c keeps one queue of each, oldest
 * first, to pick what to shed when the worker is full. */
typedef enum {
    EDGE_WAIT_NONE, /* a request is being served */
    EDGE_WAIT_IDLE, /* keep-alive, no byte of the next request yet */
    EDGE_WAIT_HEAD, /* a request head (or the TLS handshake before the first) */
    EDGE_WAIT__COUNT,
} edge_wait;

/* What only an HTTP/1.1 connection needs, in an allocation of its own: a connection whose ALPN
 * chose h2 gives it back before http2.c takes it, and costs that much less while idle. */
typedef struct edge_h1 {
    http_parser parser;
    edge_req req; /* the one request in progress */
} edge_h1;

typedef struct edge_conn {
    edge_io io;
    uv_poll_t poll;
    uv_timer_t timer;
    int handles_open;
    int poll_events;
    edge_conn_state state;
    edge_gen *gen;
    struct edge_conn *next, *prev;
    edge_wait wait;
    struct edge_conn *wait_next, *wait_prev;
    uint64_t wait_since_ms;
    buf in;
    buf out;
    edge_h1 *h1;          /* NULL once the connection speaks h2 */
    http_header *headers; /* EDGE_MAX_HEADERS of them while a request is read; NULL when idle */
    bool head_started;    /* some byte of the current request arrived */
    bool read_eof;
    bool just_finished; /* a response just ended and no socket event came since */
    bool closed;
    bool chunked;        /* the response body goes out in chunks */
    bool tunnel;         /* after a 101: bytes pass both ways unframed */
    size_t body_pending; /* request body bytes the last read handed out, dropped at the next */
    uint64_t requests;
    int32_t limit_entry; /* its client's in the limits' table, or -1 (ratelimit.c) */
    char peer[64];
    struct h2_conn *h2; /* ALPN chose h2: http2.c runs the connection */
} edge_conn;

void edge_conn_close(edge_conn *c);
/* Pull bytes into c->in; false when the socket has nothing more now (or is gone: read_eof). */
bool edge_conn_read(edge_conn *c);
/* Watch the socket for these uv_poll events (0: none). */
void edge_conn_poll(edge_conn *c, int events);
/* The last bytes are queued: flush them, half-close, and close once the client has. */
void edge_conn_linger(edge_conn *c);

/* ---- connection slots under pressure (slots.c) ---- */

/* The connection starts waiting (for its next request, or for the rest of a head). */
void edge_slots_wait(edge_conn *c, edge_wait what);
/* The connection serves a request, or is closing: nothing to shed. */
void edge_slots_busy(edge_conn *c);

#endif
