/* Declarations shared by the edge's files: the per-process state, sites, client and upstream
 * connections. Private to edge/; nothing outside includes it. */
#ifndef HEARTH_EDGE_H
#define HEARTH_EDGE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "shared/buf.h"
#include "shared/config.h"
#include "shared/http_parser.h"
#include "shared/log.h"

#define EDGE_MAX_HEADERS 128
/* Bytes queued toward one peer before the edge stops reading from the other side. */
#define EDGE_HIGH_WATER (256 * 1024)
#define EDGE_READ_CHUNK (64 * 1024)
/* Plain-HTTP files up to this size are read and written with their head, not sendfile'd. */
#define EDGE_SMALL_FILE (16 * 1024)
/* at most this many file chunks (EDGE_READ_CHUNK, or 1 MiB by sendfile) per event-loop turn */
#define EDGE_STATIC_TURN_CHUNKS 16
/* On TERM, how long a connection accepted before it keeps waiting for its first request. */
#define EDGE_DRAIN_FIRST_REQUEST_MS 1000
/* A request (rewritten head and body) is kept up to this size, so it can go to another upstream
 * connection when the first one fails before answering. */
#define EDGE_RESEND_MAX (64 * 1024)

/* ---- sockets: plain or TLS, nonblocking, one uv_poll each (io.c) ---- */

enum { IO_AGAIN = -1, IO_ERROR = -2 };

typedef struct {
    int fd;
    SSL *ssl;            /* NULL on plain sockets */
    bool tls_want_write; /* the last SSL call needs the socket writable to go on */
    bool tls_want_read;  /* the last SSL_write needs the socket readable */
} edge_io;

ssize_t edge_io_read(edge_io *io, char *dst, size_t n);
ssize_t edge_io_write(edge_io *io, const char *src, size_t n);
/* Write what out holds; 0 when all is out or the socket is full, -1 when the peer is gone. */
int edge_io_flush(edge_io *io, buf *out);

/* ---- upstreams and sites (sites.c) ---- */

typedef struct edge_upconn edge_upconn;

typedef struct {
    char *spec; /* "unix:PATH" or "HOST:PORT", for logs */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t failed_until_ms; /* skipped until then after a failure */
    log_repeat fail_log;      /* a dead, hung or broken upstream fails every request: */
    log_repeat timeout_log;   /* each kind of failure is said once per interval */
    log_repeat broken_log;    /* answers cut short or malformed */
    edge_upconn *idle;        /* keep-alive pool, a singly linked list */
    int idle_count;
    int metrics; /* edge_metrics_upstream() */
} edge_upstream;

typedef struct {
    char *prefix;
    size_t prefix_len;
    int root_fd; /* O_PATH directory: every lookup is beneath it */
    char *cache_control;
} edge_static_root;

typedef struct {
    char *name;
    char **aliases;
    size_t alias_count;
    SSL_CTX *ctx; /* NULL without TLS */
    /* tls: acme or internal and certd has not written a certificate yet: plain HTTP answers
     * 503 (challenges aside) and handshakes for its names fail, until a reload finds one. */
    bool tls_pending;
    char *hsts; /* full header value or NULL */
    edge_static_root *statics;
    size_t static_count;
    edge_upstream *upstreams;
    size_t upstream_count;
    size_t rr_next;
    int metrics; /* edge_metrics_site() */
} edge_site;

/* One loaded configuration; SIGHUP builds a new one and swaps it in whole. Connections keep a
 * reference to the generation they started with, so a reload never pulls a root from under a
 * request in flight. */
typedef struct {
    int refs;
    edge_site *sites;
    size_t site_count;
    SSL_CTX *default_ctx; /* the first site's: the handshake starts there, SNI may switch */
    SSL_CTX *bare_ctx;    /* no certificate: the default while no site has one yet */
} edge_gen;

/* prev (the running generation, or NULL) lends a managed certificate that no longer loads. */
edge_gen *edge_gen_build(const hearth_config *cfg, const edge_gen *prev, char *err, size_t errlen);
void edge_gen_ref(edge_gen *g);
void edge_gen_unref(edge_gen *g);
edge_site *edge_gen_find_site(edge_gen *g, const char *host, size_t len);

/* ---- TLS (tls.c) ---- */

/* Context for one site from its cert/key pairs; NULL with a reason in err when any pair is
 * unreadable, mismatched, not yet valid or expired. */
SSL_CTX *edge_tls_ctx_new(const config_site *site, char *err, size_t errlen);
/* A context with no certificate: handshakes on it fail with an alert, never hang. */
SSL_CTX *edge_tls_ctx_bare(void);
/* Ticket keys derive from this secret, made once before the workers fork, so every worker
 * decrypts every other worker's tickets. */
void edge_tls_init_ticket_secret(void);
void edge_tls_set_gen(edge_gen *g);

/* ---- the process (main.c) ---- */

typedef struct {
    int fd;
    bool tls;
    uv_poll_t poll;
    bool active;
    log_repeat accept_log; /* out of fds, accept fails on every turn of the loop */
} edge_listener;

typedef struct {
    uv_loop_t *loop;
    hearth_config cfg; /* edge settings and sites */
    char *config_path; /* --config, NULL for flags */
    edge_gen *gen;
    edge_listener *listeners;
    size_t listener_count;
    int conn_count;
    bool draining;
    char *acme_webroot;
    int acme_fd; /* O_PATH of WEBROOT/.well-known/acme-challenge or -1 */
    int access_fd;
    int https_port; /* for redirects: the port of the first HTTPS listener */
    bool access_json;
    http_limits limits;
    struct edge_conn *conns; /* every open client connection, for draining */
} edge_worker;

extern edge_worker edge_w;

uint64_t edge_now_ms(void);
void edge_maybe_exit(void);

/* ---- listeners (listener.c) ---- */

/* Listening sockets from LISTEN_FDS when set, else bound from cfg; -1 with err on failure. */
int edge_listeners_open(edge_worker *w, char *err, size_t errlen);
void edge_listeners_start(edge_worker *w);
void edge_listeners_pause(edge_worker *w, bool pause);
void edge_listeners_close(edge_worker *w);

/* ---- client connections (http1.c) ---- */

typedef enum {
    CONN_HEAD,    /* waiting for (more of) a request head */
    CONN_STATIC,  /* sending a file */
    CONN_SIMPLE,  /* sending a response that is all in out */
    CONN_PROXY,   /* request handed to an upstream */
    CONN_TUNNEL,  /* upgraded: bytes copied both ways */
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

typedef struct edge_conn {
    edge_io io;
    uv_poll_t poll;
    uv_timer_t timer;
    int handles_open;
    int poll_events;
    bool tls;
    edge_conn_state state;
    edge_gen *gen;
    edge_site *site;
    struct edge_conn *next, *prev;
    edge_wait wait;
    struct edge_conn *wait_next, *wait_prev;
    uint64_t wait_since_ms;
    buf in;
    buf out;
    http_parser parser;
    http_header *headers; /* EDGE_MAX_HEADERS of them while a request is read; NULL when idle */
    bool keep_alive;
    bool head_started; /* some byte of the current request arrived */
    bool read_eof;
    bool just_finished; /* a response just ended and no socket event came since */
    bool closed;
    uint64_t request_started_ms;
    char peer[64];
    /* file being sent */
    int file_fd;
    off_t file_off;
    uint64_t file_left;
    /* proxying */
    edge_upconn *up;
    bool req_body_done;
    bool proxy_upgrade;     /* the client asked for an Upgrade */
    bool proxy_body_error;  /* the request body broke its framing */
    bool proxy_dechunk;     /* HTTP/1.0 client, chunked upstream body: send it decoded */
    size_t proxy_tries;     /* upstreams tried for this request */
    buf proxy_resend;       /* the rewritten head and the body bytes sent so far, for a retry */
    bool proxy_resend_lost; /* body bytes went upstream that proxy_resend no longer holds */
    bool proxy_idempotent;  /* GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110 9.2.2) */
    bool proxy_retried;     /* the one retry after a reused connection closed is spent */
    bool head_method;       /* the request is HEAD: responses carry no body */
    /* access log fields */
    buf info; /* method \0 target \0 host \0 referer \0 user-agent \0 */
    int status;
    uint64_t body_sent;
    uint64_t out_mark; /* out bytes written so far that belong to headers, for body_sent */
    uint64_t requests;
} edge_conn;

void edge_conn_accept(edge_worker *w, int fd, bool tls, const struct sockaddr *sa);
void edge_conn_close(edge_conn *c);
/* (Re)start the connection's timer; 0 stops it. Expiry closes the connection. */
void edge_conn_arm(edge_conn *c, int64_t ms);
/* Pull bytes from the client into c->in; false when nothing more can be read now. */
bool edge_conn_read(edge_conn *c);
/* Recompute which socket events the connection waits for and try to make progress. */
void edge_conn_progress(edge_conn *c);
void edge_conn_update_poll(edge_conn *c);
/* The current response is complete: log it, then read the next request or close. */
void edge_conn_finish(edge_conn *c);
/* Start a response in c->out: status line, Date, Server, Connection. */
void edge_resp_start(edge_conn *c, int status, const char *reason);
/* A small complete response with a text body. */
void edge_resp_simple(edge_conn *c, int status, const char *reason, const char *extra_headers,
                      const char *body);
/* Value of a request header of the current head, or NULL. */
const char *edge_req_header(edge_conn *c, const char *name, size_t *len);
/* Access log fields of the current request. */
const char *edge_conn_info(edge_conn *c, int idx);
void edge_conn_drain_idle(edge_worker *w);

/* ---- connection slots under pressure (slots.c) ---- */

void edge_slots_init(edge_worker *w);
/* The connection starts waiting (for its next request, or for the rest of a head). */
void edge_slots_wait(edge_conn *c, edge_wait what);
/* The connection serves a request, or is closing: nothing to shed. */
void edge_slots_busy(edge_conn *c);
/* The worker is full and a newcomer waits: true when some connection can make room for it. */
bool edge_slots_can_shed(void);
void edge_slots_shed_one(void);
/* Called after accepting: starts the shorter header timeout while slots run low. */
void edge_slots_accepted(void);
/* Every slot is busy serving: the newcomers stay in the kernel's backlog for now. */
void edge_slots_none_free(void);

/* ---- memory given back after a spike (memory.c) ---- */

void edge_memory_init(edge_worker *w);
void edge_memory_opened(void);
void edge_memory_closed(void);

/* ---- handlers ---- */

/* Plain HTTP: ACME challenge (any Host, c->site may be NULL), 503 while the site's certificate
 * is pending, or redirect (redirect.c); false when the site has no TLS and the request goes on
 * to static files or the proxy. */
bool edge_redirect_handle(edge_conn *c);
/* Static files (static.c): true when a static prefix matched and a response was started. A
 * "/" prefix on a site with upstreams is nginx's `try_files $uri @app`: what is not a file there
 * (and every method but GET and HEAD) goes on to the proxy. */
bool edge_static_handle(edge_conn *c);
/* Continue sending the file; -1 when the peer is gone. */
int edge_static_send(edge_conn *c);

/* Reverse proxy (proxy.c). */
void edge_proxy_start(edge_conn *c);
/* Called by http1.c when the client socket has news (body bytes, room, close). */
void edge_proxy_client_event(edge_conn *c);
/* Socket events the client connection needs on behalf of the proxy (reading body bytes). */
int edge_proxy_client_events(edge_conn *c);
void edge_proxy_abort(edge_conn *c);
void edge_proxy_close_pools(edge_gen *g);

/* ---- access log (accesslog.c) ---- */

int edge_access_open(edge_worker *w, const char *path, bool json);
int edge_access_reopen(edge_worker *w);
void edge_access_write(edge_conn *c);

/* ---- metrics (metrics.c), each a no-op unless the supervisor set HEARTH_METRICS_DIR ---- */

/* Before the workers fork: the edge's region, with a shard for each worker. */
void edge_metrics_open(int workers);
/* The index of a site's or an upstream's series (made on first sight), kept in its struct. */
int edge_metrics_site(const char *name);
int edge_metrics_upstream(const char *spec);
void edge_metrics_request(const edge_conn *c); /* a response ended (the access log's point) */
void edge_metrics_conn_opened(void);
void edge_metrics_conn_closed(const edge_conn *c);
void edge_metrics_tls_info(const SSL *ssl, int where, int ret); /* SSL_CTX_set_info_callback */
void edge_metrics_upstream_connected(const edge_upstream *u, uint64_t ms);
void edge_metrics_upstream_header(const edge_upstream *u, uint64_t ms);
void edge_metrics_upstream_failed(const edge_upstream *u);
void edge_metrics_proxy_error(const edge_conn *c, int status); /* the proxy's own 502 or 504 */

#endif
