/* The request/response layer between the protocols and the handlers. A protocol (http1.c, an
 * HTTP/2 one later) turns bytes into an edge_req and hands it to edge_req_dispatch; the handlers
 * (redirect.c, static.c, proxy.c) answer through the edge_resp_* writer and read the body with
 * edge_req_body_read, and never see framing, sockets or the connection. The shape is that of
 * h2o's h2o_req_t and nginx's ngx_http_request_t: a request is what both an HTTP/1.1
 * connection (one at a time) and an HTTP/2 stream (many at once) carry. */
#ifndef HEARTH_EDGE_REQ_H
#define HEARTH_EDGE_REQ_H

#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>

#include "edge/edge.h"

typedef struct edge_req edge_req;

/* The response body's length, given when its head is complete. */
#define EDGE_LEN_UNKNOWN (-1) /* streamed: chunked on HTTP/1.1, else ended by the close */
/* No body follows (304, a HEAD's answer, 101): framing fields the handler set stay as given. */
#define EDGE_LEN_NONE (-2)

typedef enum {
    EDGE_BODY_DATA,  /* *data, *len hold request body bytes, valid until the next read */
    EDGE_BODY_AGAIN, /* nothing more now: the handler's proceed runs when more arrives */
    EDGE_BODY_END,   /* the body is complete */
    EDGE_BODY_ERROR, /* the body broke its framing: r->body_error_status is the answer */
    EDGE_BODY_GONE,  /* the client left before the end */
} edge_body_result;

/* What a protocol provides. Only req.c calls these; each wrapper below says what they do. */
typedef struct {
    void (*head_start)(edge_req *r, int status, const char *reason, size_t reason_len, bool own);
    void (*head_field)(edge_req *r, const char *name, size_t name_len, const char *value,
                       size_t value_len);
    void (*head_fieldv)(edge_req *r, const char *name, const char *fmt, va_list ap);
    void (*head_end)(edge_req *r, int64_t length);
    void (*write)(edge_req *r, const char *p, size_t n);
    int64_t (*send_file)(edge_req *r, int fd, off_t off, uint64_t left);
    int (*flush)(edge_req *r);
    size_t (*queued)(edge_req *r);
    void (*finish)(edge_req *r);
    void (*abort)(edge_req *r);
    void (*body_start)(edge_req *r);
    edge_body_result (*body_read)(edge_req *r, const char **data, size_t *len);
    void (*wake)(edge_req *r);
} edge_proto;

/* What a handler provides when its response outlives edge_req_dispatch (a file, an upstream). */
typedef struct {
    /* Move what can move now: the client took bytes or sent body bytes, or the handler woke the
     * request (edge_req_wake) because its own source has news. */
    void (*proceed)(edge_req *r);
    /* The request ends before the handler finished it (the client left, a timeout, or the
     * handler's own edge_resp_abort): let go of what it holds. Never after edge_resp_finish. */
    void (*closed)(edge_req *r);
} edge_handler;

/* Room for a handler's per-request state inside the request, so no request allocates it. */
#define EDGE_REQ_CTX_SIZE 128

struct edge_req {
    /* Set by the protocol before edge_req_dispatch. */
    const edge_proto *proto;
    void *conn; /* the protocol's own: its connection (or stream) */
    edge_gen *gen;
    SSL_CTX *sni_ctx; /* the context the TLS handshake chose; NULL on plain HTTP */
    bool tls;
    const char *peer;
    const char *protocol; /* "HTTP/1.1", for the access log */
    uint64_t started_ms;
    /* The request head: method, target and fields are spans into head, valid only until
     * edge_req_dispatch returns (handlers keep what they need). */
    const char *head;
    http_span method, target;
    const http_header *headers;
    size_t header_count;
    bool upgrade;           /* Connection: upgrade with an Upgrade field */
    bool has_body;          /* a body follows the head (possibly empty) */
    int64_t content_length; /* of that body, or EDGE_LEN_UNKNOWN (chunked) */
    bool body_done;         /* no body, or all of it has been read */
    /* The connection may carry another request after this one; handlers only ever clear it. */
    bool keep_alive;

    /* Set by edge_req_dispatch (clientaddr.c): who the client is, for the access log, the
     * upstream's X-Forwarded-For and X-Real-IP, and the limits. The peer, unless the peer is a
     * trusted proxy whose X-Forwarded-For names another. */
    const char *client; /* NULL before: edge_req_client() then gives the peer */
    bool client_known;  /* client_addr holds it (a unix peer has no IP address) */
    ip_addr client_addr;
    char client_text[48];
    const char *xff; /* the trusted X-Forwarded-For line (while dispatching), or NULL */
    size_t xff_kept; /* its bytes up to and including the client */

    /* Set by the layer and the handlers. */
    edge_site *site;
    bool head_method;  /* HEAD: the response carries no body */
    bool body_reading; /* a handler reads the body (edge_req_body_start) */
    bool body_wanted;  /* ... and has room for more of it now */
    bool wants_room;   /* the handler has more response to send as soon as there is room */
    bool has_hsts;     /* the response already carries Strict-Transport-Security */
    int body_error_status;
    const edge_handler *handler; /* NULL once the response is complete */
    /* On-the-fly compression (compress.c): what the response head allows (zflags) and the
     * coding the client prefers, both set while dispatching; the encoder exists only while a
     * body is being compressed. */
    uint8_t zflags;
    uint8_t coding;
    struct edge_encoder *encoder;
    /* Response trailer fields (edge_resp_trailer), name \0 value \0 each, for the protocol's
     * finish to send after the body where its framing carries them. */
    buf trailers;
    size_t trailer_count;
    /* access log fields */
    int status;
    uint64_t body_sent;
    const char *upstream; /* the proxy's last upstream (its spec), or NULL */
    unsigned upstream_tries;
    buf info; /* method \0 target \0 host \0 referer \0 user-agent \0 */
    alignas(max_align_t) unsigned char ctx[EDGE_REQ_CTX_SIZE];
};

/* ---- for protocols ---- */

/* Route a parsed request to redirect/challenge, static files or the proxy. */
void edge_req_dispatch(edge_req *r);
/* Answer a request the protocol refused (a malformed head) with status and the reason. */
void edge_req_refuse(edge_req *r, int status, const char *reason);
/* The response is out: log it and forget the request. */
void edge_req_end(edge_req *r);
/* The connection (or stream) closes under the request: a handler still at work is told. */
void edge_req_closed(edge_req *r);
/* The response's trailer fields one by one: *at starts at 0; false after the last. */
bool edge_resp_trailer_next(const edge_req *r, size_t *at, const char **name, size_t *name_len,
                            const char **value, size_t *value_len);
/* Access log field idx of the current request (method, target, host, referer, agent). */
const char *edge_req_info(const edge_req *r, int idx);
static inline const char *edge_req_client(const edge_req *r)
{
    return r->client ? r->client : r->peer;
}
/* Who the client is (clientaddr.c): sets r->client and the fields after it. */
void edge_client_resolve(edge_req *r);
/* X-Forwarded-For and X-Real-IP for the upstream, as header lines into out (clientaddr.c). */
void edge_client_forward_headers(const edge_req *r, buf *out);
/* The site's rate limit for this client and path: true when it answered 429 (ratelimit.c). */
bool edge_limits_request(edge_req *r);

/* ---- for handlers: the request ---- */

/* Value of a request header field, or NULL (only while dispatching). */
const char *edge_req_header(const edge_req *r, const char *name, size_t *len);
bool edge_req_method_is(const edge_req *r, const char *method);
/* The handler's state inside the request (EDGE_REQ_CTX_SIZE bytes). */
static inline void *edge_req_ctx(edge_req *r)
{
    return r->ctx;
}
/* The handler answers later: its proceed and closed run until the response is finished. */
void edge_req_take(edge_req *r, const edge_handler *h);
/* The handler's own source (an upstream) has news: let the protocol run, it calls proceed. */
void edge_req_wake(edge_req *r);
/* The handler will read the body (HTTP/1.1 sends 100 Continue if the client waits for it). */
void edge_req_body_start(edge_req *r);
edge_body_result edge_req_body_read(edge_req *r, const char **data, size_t *len);

/* ---- for handlers: the response ---- */

/* Status line of the edge's own response (with Server and Date). */
void edge_resp_start(edge_req *r, int status);
/* Status line relayed from an upstream: its reason, no fields of the edge's own. */
void edge_resp_start_relayed(edge_req *r, int status, const char *reason, size_t reason_len);
void edge_resp_header(edge_req *r, const char *name, const char *value);
void edge_resp_header_n(edge_req *r, const char *name, size_t name_len, const char *value,
                        size_t value_len);
void edge_resp_headerf(edge_req *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The head is complete; length is the body's, EDGE_LEN_UNKNOWN or EDGE_LEN_NONE. */
void edge_resp_head_done(edge_req *r, int64_t length);
/* Body bytes, copied (a HEAD's are dropped). The writer always takes them: the handler keeps
 * the queue short by writing only while edge_resp_writable. */
void edge_resp_write(edge_req *r, const void *p, size_t n);
/* Up to left bytes of fd from off: returns how many were taken (0: none fit now), -1 when the
 * client is gone. The protocol chooses sendfile, kernel TLS or a buffered copy. */
int64_t edge_resp_send_file(edge_req *r, int fd, off_t off, uint64_t left);
/* Push queued bytes toward the client now; -1 when the client is gone. */
int edge_resp_flush(edge_req *r);
/* Response bytes taken but not yet out on the network. */
size_t edge_resp_queued(edge_req *r);
/* Below the high-water mark: more may be written. */
bool edge_resp_writable(edge_req *r);
/* A trailer field, sent after the body by edge_resp_finish where the framing carries one (a
 * chunked HTTP/1.1 body, HTTP/2), lost where it does not (HTTP/1.0, a known length, HEAD), as
 * RFC 9110 6.5 allows. Fields no trailer may carry (6.5.1: framing, routing, authentication,
 * request modifiers, response controls, content format) and hop-by-hop ones are dropped, and
 * so is what passes the head's limits (max_header_count fields, max_header_size bytes). */
void edge_resp_trailer(edge_req *r, const char *name, size_t name_len, const char *value,
                       size_t value_len);
/* The body is complete. */
void edge_resp_finish(edge_req *r);
/* The response cannot be completed: the client must not take it for whole (the connection or
 * stream is dropped). */
void edge_resp_abort(edge_req *r);
/* A complete response with a small body of type content_type, after edge_resp_start and any
 * fields of the handler's own. */
void edge_resp_body(edge_req *r, const char *content_type, const char *body);
/* A complete text/plain response. */
void edge_resp_text(edge_req *r, int status, const char *body);

#endif
