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
#include "shared/ipaddr.h"
#include "shared/log.h"

#define EDGE_MAX_HEADERS 128
/* Bytes queued toward one peer before the edge stops reading from the other side. */
#define EDGE_HIGH_WATER (256 * 1024)
#define EDGE_READ_CHUNK (64 * 1024)

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
typedef struct edge_probe edge_probe;
typedef struct edge_site edge_site;

typedef struct {
    char *spec; /* "unix:PATH" or "HOST:PORT", for logs */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    edge_site *site;
    /* Its health as this worker sees it (upstream.c): out of rotation while an active check
     * says so or a passive fail_timeout runs. */
    bool down;                /* the state last reported to the log and the metrics */
    int fails;                /* passive: failures since fail_window_ms */
    uint64_t fail_window_ms;  /* when the first of them came */
    uint64_t failed_until_ms; /* passive: out until then (0: not out) */
    bool check_down;          /* active: failed `fall` checks in a row, not yet passed `rise` */
    int check_passes;         /* active: in a row */
    int check_fails;
    uint64_t check_due_ms;  /* the next active check */
    edge_probe *probe;      /* the active check in flight (health.c) */
    int busy;               /* requests on it now, for least_conn */
    log_repeat fail_log;    /* a dead, hung or broken upstream fails every request: */
    log_repeat timeout_log; /* each kind of failure is said once per interval */
    log_repeat broken_log;  /* answers cut short or malformed */
    edge_upconn *idle;      /* keep-alive pool, a singly linked list */
    int idle_count;
    int metrics;       /* edge_metrics_upstream() */
    int state_metrics; /* edge_metrics_upstream_state_series() */
} edge_upstream;

typedef struct {
    char *prefix;
    size_t prefix_len;
    int root_fd; /* O_PATH directory: every lookup is beneath it */
    char *cache_control;
} edge_static_root;

/* A request rate per client under a URL prefix (ratelimit.c). */
typedef struct {
    char *prefix;
    size_t prefix_len;
    uint32_t rate;  /* milli-requests per second */
    uint32_t burst; /* requests */
    uint32_t id;    /* of the site and prefix: names its entries in the table across reloads */
} edge_limit;

struct edge_site {
    char *name;
    char **aliases;
    size_t alias_count;
    SSL_CTX *ctx; /* NULL without TLS */
    /* tls: acme or internal and certd has not written a certificate yet: plain HTTP answers
     * 503 (challenges aside) and handshakes for its names fail, until a reload finds one. */
    bool tls_pending;
    char *pending_link;       /* where certd will put it (CERT_DIR/NAME) */
    int64_t pending_tried_ms; /* the last look there */
    char *hsts;               /* full header value or NULL */
    edge_static_root *statics;
    size_t static_count;
    edge_upstream *upstreams;
    size_t upstream_count;
    size_t rr_next;
    config_balance balance;
    int max_fails;                  /* 0: failures never take an upstream out */
    int64_t fail_timeout_ms;        /* the passive window and how long an upstream is out */
    size_t max_tries;               /* upstreams one request may try */
    config_health_check check;      /* active checks, when check.enabled */
    log_repeat all_down_log;        /* every request says it while every upstream is down */
    config_compression compression; /* on-the-fly compression (compress.c) */
    edge_limit *limits;
    size_t limit_count;
    int metrics; /* edge_metrics_site() */
};

/* One loaded configuration; SIGHUP builds a new one and swaps it in whole. Connections keep a
 * reference to the generation they started with, so a reload never pulls a root from under a
 * request in flight. */
typedef struct {
    int refs;
    edge_site *sites;
    size_t site_count;
    SSL_CTX *default_ctx; /* the first site's: the handshake starts there, SNI may switch */
    SSL_CTX *bare_ctx;    /* no certificate: the default while no site has one yet */
    ip_cidr *trusted;     /* edge.trusted_proxies */
    size_t trusted_count;
} edge_gen;

/* prev (the running generation, or NULL) lends a managed certificate that no longer loads. */
edge_gen *edge_gen_build(const hearth_config *cfg, const edge_gen *prev, char *err, size_t errlen);
void edge_gen_ref(edge_gen *g);
void edge_gen_unref(edge_gen *g);
edge_site *edge_gen_find_site(edge_gen *g, const char *host, size_t len);
/* Whether the site still waits for certd's certificate; looks in the store first (sites.c). */
bool edge_site_tls_pending(edge_site *s);

/* ---- upstream choice and health (upstream.c, health.c) ---- */

/* The upstream for a request's next try: up, not yet tried by it (bit i of tried stands for
 * upstreams[i]), as the site's balance chooses; NULL when none is left. When every upstream is
 * down, that is logged (summarised). */
edge_upstream *edge_upstream_pick(edge_site *s, uint64_t tried);
/* A nonblocking connect to u begun (or done); the socket, or -1 with errno. */
int edge_upstream_connect(const edge_upstream *u);
/* The proxy saw u fail (refused, reset, timed out): counted toward the site's max_fails. */
void edge_upstream_failed(edge_upstream *u, const char *why);
/* An active check's outcome (health.c). */
void edge_upstream_checked(edge_upstream *u, bool passed, const char *why);
/* This worker serves now from now on (old: the generation it replaces, or NULL): each
 * upstream's health carries over by site and address, old's checks stop, now's are scheduled. */
void edge_upstreams_serve(edge_gen *old, edge_gen *now);

/* Start an active check of u (its site's health_check); the outcome goes to
 * edge_upstream_checked, maybe at once. */
void edge_health_probe(edge_upstream *u);
/* Drop u's check in flight, if any, without an outcome. */
void edge_health_cancel(edge_upstream *u);

/* ---- TLS (tls.c) ---- */

/* Context for one site from its cert/key pairs; NULL with a reason in err when any pair is
 * unreadable, mismatched, not yet valid or expired. */
SSL_CTX *edge_tls_ctx_new(const config_site *site, char *err, size_t errlen);
/* A context with no certificate: handshakes on it fail with an alert, never hang. */
SSL_CTX *edge_tls_ctx_bare(void);
void edge_tls_set_gen(edge_gen *g);

/* ---- session-ticket keys (tickets.c) ---- */

/* Before the workers fork: this edge's own random secret and the table every process of it
 * shares. path: --ticket-keys (NULL: derived from the config at each load). -1 on failure. */
int edge_tickets_open(const char *path);
/* Reads the shared ticket-keys file cfg names (--ticket-keys, or STATE_DIR/cluster/
 * ticket-keys.json with a cluster configured) into the shared table: at the start, and at each
 * reload by the master or a lone worker, before the workers' prepare steps. A file that cannot
 * be used is one warning, and the table keeps what it had; no file: the edge's own secret. */
void edge_tickets_load(const hearth_config *cfg);
/* A worker copies the shared table (a reload's prepare step) and uses its copy from the commit
 * step on. */
void edge_tickets_prepare(void);
void edge_tickets_commit(void);
/* OpenSSL's ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb). */
int edge_tickets_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *ctx,
                    EVP_MAC_CTX *hctx, int enc);

/* ---- the process (main.c, worker.c, master.c) ---- */

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
    int64_t graceful_timeout_ms; /* TERM: how long open connections may take to finish */
    int acme_fd;                 /* O_PATH of WEBROOT/.well-known/acme-challenge or -1 */
    int access_fd;
    int https_port; /* for redirects: the port of the first HTTPS listener */
    bool access_json;
    http_limits limits;
    struct edge_conn *conns; /* every open client connection, for draining */
} edge_worker;

/* ---- a worker (worker.c) and the master of several (master.c) ---- */

extern edge_worker edge_w;

uint64_t edge_now_ms(void);
/* A draining worker whose last connection closed stops. */
void edge_maybe_exit(void);
/* The parser's limits from the edge settings. */
void edge_worker_set_limits(edge_worker *w);
/* Serve until stopped. alone: no master, the worker speaks sd_notify for itself; channel: the
 * socket a master asks for reloads on and hears the answers (or -1); reload_first: the sites
 * may have changed since the master loaded them. */
int edge_worker_run(bool alone, int channel, bool reload_first);
/* Fork n workers and keep them running until a stop signal; the exit code. */
int edge_master_run(int n);

/* ---- listeners (listener.c) ---- */

/* Listening sockets from LISTEN_FDS when set, else bound from cfg; -1 with err on failure. */
int edge_listeners_open(edge_worker *w, char *err, size_t errlen);
void edge_listeners_start(edge_worker *w);
void edge_listeners_pause(edge_worker *w, bool pause);
void edge_listeners_close(edge_worker *w);

/* ---- client connections (http1.c; the connection itself is private to it, http1.h) ---- */

void edge_conn_accept(edge_worker *w, int fd, bool tls, const struct sockaddr *sa);
/* TERM: close the connections waiting between requests (see http1.c); HTTP/2 ones say GOAWAY. */
void edge_conn_drain_idle(edge_worker *w);
/* After a reload: HTTP/2 connections say GOAWAY, so clients come back to the new sites. */
void edge_conn_reloaded(edge_worker *w);

/* ---- connection slots under pressure (slots.c), as the listener sees them ---- */

void edge_slots_init(edge_worker *w);
/* The worker is full and a newcomer waits: true when some connection can make room for it. */
bool edge_slots_can_shed(void);
void edge_slots_shed_one(void);
/* Called after accepting: starts the shorter header timeout while slots run low. */
void edge_slots_accepted(void);
/* Every slot is busy serving: the newcomers stay in the kernel's backlog for now. */
void edge_slots_none_free(void);

/* ---- who the client is (clientaddr.c, the PROXY header's parser in proxyproto.c) ---- */

/* Whether a's X-Forwarded-For and PROXY headers are believed (edge.trusted_proxies). */
bool edge_client_trusted(const edge_gen *g, const ip_addr *a);
/* The listener accepted fd: a trusted peer on an edge with proxy_protocol first sends a PROXY
 * header, read here before the connection starts with the address it names. */
void edge_client_accept(edge_worker *w, int fd, bool tls, const struct sockaddr *peer);

/* ---- rate and connection limits per client (ratelimit.c) ---- */

/* Before the workers fork: the table of clients all of them share (edge.client_table_size). */
int edge_limits_open(int workers, int table_size);
/* In a worker of a master: its slot (0..workers-1), whose connections it counts. */
void edge_limits_set_worker(int slot);
/* In the master: the worker of this slot died; the connections it counted are gone. */
void edge_limits_worker_gone(int slot);
int edge_limits_build_site(edge_site *s, const config_site *cs, char *err, size_t errlen);
void edge_limits_free_site(edge_site *s);
/* A connection from sa is opening: the entry it holds (release it on close), -1 when it is not
 * counted, EDGE_CONN_REFUSED past max_connections_per_client. */
#define EDGE_CONN_REFUSED (-2)
int32_t edge_limits_conn_open(const edge_gen *g, const struct sockaddr *sa);
void edge_limits_conn_closed(int32_t entry);

/* ---- memory given back after a spike (memory.c) ---- */

void edge_memory_init(edge_worker *w);
void edge_memory_opened(void);
void edge_memory_closed(void);

/* ---- handlers, each on the request layer (req.h) ---- */

typedef struct edge_req edge_req;

/* Plain HTTP: ACME challenge (any Host, r->site may be NULL), 503 while the site's certificate
 * is pending, or redirect (redirect.c); false when the site has no TLS and the request goes on
 * to static files or the proxy. */
bool edge_redirect_handle(edge_req *r);
/* Static files (static.c): true when a static prefix matched and a response was started. A
 * "/" prefix on a site with upstreams is nginx's `try_files $uri @app`: what is not a file there
 * (and every method but GET and HEAD) goes on to the proxy. */
bool edge_static_handle(edge_req *r);
/* Reverse proxy (proxy.c). */
void edge_proxy_start(edge_req *r);
void edge_proxy_close_pools(edge_gen *g);

/* ---- access log (accesslog.c) ---- */

int edge_access_open(edge_worker *w, const char *path, bool json);
int edge_access_reopen(edge_worker *w);
void edge_access_write(const edge_req *r);

/* ---- metrics (metrics.c), each a no-op unless the supervisor set HEARTH_METRICS_DIR ---- */

/* Before the workers fork: the edge's region, with a shard for each worker. */
void edge_metrics_open(int workers);
/* The index of a site's or an upstream's series (made on first sight), kept in its struct. */
int edge_metrics_site(const char *name);
int edge_metrics_upstream(const char *spec);
void edge_metrics_request(const edge_req *r); /* a response ended (the access log's point) */
void edge_metrics_conn_opened(void);
void edge_metrics_conn_closed(const SSL *ssl);                  /* ssl: NULL on plain HTTP */
void edge_metrics_tls_info(const SSL *ssl, int where, int ret); /* SSL_CTX_set_info_callback */
void edge_metrics_upstream_connected(const edge_upstream *u, uint64_t ms);
void edge_metrics_upstream_header(const edge_upstream *u, uint64_t ms);
void edge_metrics_upstream_failed(const edge_upstream *u);
/* The index of a site's upstream's state series (made on first sight). */
int edge_metrics_upstream_state_series(const char *site, const char *spec);
/* u->down as the gauge says it; changed: it just went that way (a transition). */
void edge_metrics_upstream_state(const edge_upstream *u, bool changed);
void edge_metrics_proxy_retry(const edge_req *r);             /* a request goes to another try */
void edge_metrics_proxy_error(const edge_req *r, int status); /* the proxy's own 502 or 504 */
void edge_metrics_limited_request(const edge_req *r);         /* a 429 of the site's limits */
void edge_metrics_limited_conn(void); /* closed at accept: max_connections_per_client */

#endif
