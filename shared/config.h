/* The stack's one YAML config file, loaded into typed structs. Every key has a default
 * (docs/config.md); unknown keys, wrong types and out-of-range values are errors naming
 * file:line:column and the key. */
#ifndef HEARTH_CONFIG_H
#define HEARTH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/strlist.h"

#define CONFIG_DEFAULT_PATH "/etc/hearth/hearth.yaml"
/* Room for any message the loader writes, the list of the keys a map knows included. */
#define CONFIG_ERR_MAX 1024

/* Durations are milliseconds; in YAML they are written "500ms", "10s", "5m", "12h", "90d" or a
 * bare integer of seconds. Sizes are bytes; in YAML "512", "64k", "1m", "2g" (powers of 1024). */

typedef enum { LOG_FORMAT_TEXT, LOG_FORMAT_JSON } config_log_format;
typedef enum { ACCESS_LOG_COMBINED, ACCESS_LOG_JSON } config_access_format;
typedef enum { SITE_TLS_ACME, SITE_TLS_FILES, SITE_TLS_INTERNAL, SITE_TLS_OFF } config_tls_mode;
typedef enum { KEY_EC256, KEY_EC384, KEY_RSA2048, KEY_RSA3072, KEY_RSA4096 } config_key_type;
typedef enum { BALANCE_ROUND_ROBIN, BALANCE_LEAST_CONN } config_balance;

/* A site has at most this many upstreams (a request's tries are a bit set). */
#define CONFIG_UPSTREAMS_MAX 64

typedef struct {
    char *cert; /* PEM chain */
    char *key;  /* PEM private key */
} config_cert_pair;

typedef struct {
    char *prefix; /* URL prefix, starts and ends with '/' (the loader appends a missing one) */
    char *root;   /* directory */
    char *cache_control; /* NULL: no Cache-Control header */
} config_static;

/* A request rate per client address under a URL prefix (nginx's limit_req with nodelay). */
typedef struct {
    char *prefix; /* as a static prefix: starts and ends with '/' */
    char *rate;   /* "10r/s" or "600r/m": config_parse_rate() */
    int burst;    /* requests past the rate answered at once before 429 */
} config_limit;

/* On-the-fly compression of responses (edge/compress.c), for the edge and per site. */
typedef struct {
    bool enabled;
    /* media types: "application/json", "+json" (any type with that suffix), "text/" and a
     * star (any subtype) */
    strlist types;
    uint64_t min_length; /* bodies known to be shorter go out as they are */
    int gzip_level;
    int br_level;
    int zstd_level;
} config_compression;

/* Active checks of a site's upstreams: a GET of path every interval, expecting 2xx or 3xx. */
typedef struct {
    bool enabled; /* the site has a health_check map */
    char *path;   /* starts with '/' */
    int64_t interval_ms;
    int64_t timeout_ms;
    int rise; /* passes in a row that bring a down upstream back */
    int fall; /* failures in a row that take an upstream out */
} config_health_check;

typedef struct {
    char *name;              /* the site's canonical host name, lowercase (the redirect target) */
    strlist aliases;         /* further names served by this site */
    config_tls_mode tls;     /* default: ACME for a public name, INTERNAL for localhost & co */
    config_cert_pair *certs; /* tls: files, one or two pairs (e.g. ECDSA and RSA) */
    size_t cert_count;
    int64_t hsts_ms; /* 0: no Strict-Transport-Security */
    config_static *statics;
    size_t static_count;
    strlist upstreams; /* "unix:PATH" or "HOST:PORT"; default: the appserver bind */
    config_balance balance;
    int max_fails; /* failures within fail_timeout that take an upstream out; 0: never */
    /* Unless set, edge.upstream_fail_timeout is the site's: its users are the ones to read it
     * (a flag may change it after the file is loaded). */
    bool fail_timeout_set;
    int64_t fail_timeout_ms;
    int next_upstream_tries; /* upstreams one request may try; 0: all of them */
    config_health_check health_check;
    config_limit *limits;
    size_t limit_count;
    config_compression compression; /* keys the site does not set are the edge's */
    /* line of the site entry in config->path, for messages about it */
    int line;
} config_site;

typedef struct {
    int workers;  /* 0 = auto (one per core) */
    strlist http; /* listen addresses, e.g. ":80", "[::]:80", "127.0.0.1:8080" */
    strlist https;
    char *access_log; /* path; NULL = off; "-" = stdout */
    config_access_format access_log_format;
    int64_t header_timeout_ms;    /* whole head must arrive within this */
    int64_t keepalive_timeout_ms; /* idle keep-alive connections closed after this */
    int64_t send_timeout_ms;      /* a client that reads nothing for this long is closed */
    uint64_t max_body_size;       /* 413 past it; 0 = unlimited */
    uint64_t max_header_size;     /* 431 past it */
    int max_header_count;
    int max_connections; /* per worker process */
    /* Past this fraction of max_connections, request heads get pressure_header_timeout. */
    double pressure_threshold;
    int64_t pressure_header_timeout_ms;
    int64_t pressure_log_interval_ms; /* shedding is summarised in the log this often */
    int64_t proxy_connect_timeout_ms;
    int64_t proxy_read_timeout_ms;
    int64_t upstream_fail_timeout_ms; /* every site's fail_timeout unless it sets its own */
    config_compression compression;
    /* HTTP/2 (edge/http2.c), nginx's defaults where it has one */
    int h2_max_concurrent_streams;    /* SETTINGS_MAX_CONCURRENT_STREAMS */
    uint64_t h2_max_header_list_size; /* decoded request fields, RFC 9113's count; 431 past it */
    uint64_t h2_max_frame_size;       /* SETTINGS_MAX_FRAME_SIZE the edge takes */
    uint64_t h2_stream_window;        /* request body bytes a stream may send ahead */
    uint64_t h2_connection_window;    /* ... all streams of a connection together */
    int h2_max_requests;              /* streams per connection, then GOAWAY */
    int64_t h2_idle_timeout_ms;       /* a connection with no stream open is closed after this */
    /* Addresses whose X-Forwarded-For and PROXY protocol header are believed (ip_cidr_parse). */
    strlist trusted_proxies;
    bool proxy_protocol;            /* trusted peers start each connection with a PROXY header */
    int max_connections_per_client; /* 0: no cap */
    int client_table_size;          /* entries of the limits' table of client addresses */
} config_edge;

typedef struct {
    strlist modules;             /* shared objects to load, or one WSGI "pkg.mod:app" */
    strlist bind;                /* "unix:PATH" or "HOST:PORT"; default unix:RUN_DIR/app.sock */
    int workers;                 /* 0 = auto (2 x cores + 1, Gunicorn's advice) */
    int64_t timeout_ms;          /* a silent worker is killed after this */
    int64_t graceful_timeout_ms; /* how long workers get to finish on stop/reload */
    int64_t keepalive_timeout_ms;
    int max_requests; /* 0 = never recycle */
    int max_requests_jitter;
    uint64_t max_body_size; /* default: edge.max_body_size */
    char *access_log;       /* NULL = off */
    /* for a WSGI application (Gunicorn's and uWSGI's settings of the same names) */
    char *chdir; /* NULL: the config file's directory */
    strlist pythonpath;
    char *virtualenv;
    strlist env; /* "NAME=VALUE", set in the workers */
    char *mount; /* SCRIPT_NAME prefix, NULL: none */
} config_appserver;

/* Whether a module entry names a Python WSGI application ("pkg.mod:app", "pkg:factory()")
 * rather than a shared object. */
bool config_is_wsgi_app(const char *module);
/* NAME=VALUE with NAME a shell variable name (appserver.env, --env). */
bool config_is_env_assignment(const char *s);
/* A URL path prefix for a mounted application: "/app" (appserver.mount, --mount). */
bool config_is_mount_prefix(const char *s);

typedef struct {
    char *server; /* ACME directory URL */
    char *email;  /* NULL = none */
    bool agree_tos;
    char *ca_bundle; /* NULL = system trust store */
    char *eab_kid;
    char *eab_hmac_key;
    config_key_type key_type;
    char *cert_dir; /* default STATE_DIR/certs */
    char *webroot;  /* default STATE_DIR/acme: files go to WEBROOT/.well-known/acme-challenge */
    int64_t check_interval_ms;
    double renew_remaining_fraction; /* renew once less than this fraction of life is left */
} config_certd;

typedef struct {
    int64_t stop_timeout_ms;  /* per component, then SIGKILL */
    int64_t restart_delay_ms; /* first restart delay */
    int64_t restart_delay_max_ms;
    int64_t restart_reset_ms; /* up this long: the delay starts over */
    int max_restarts;         /* crashes within restart_window before FATAL */
    int64_t restart_window_ms;
} config_supervisor;

/* Several hosts sharing certificates, challenges and ticket keys through etcd
 * (docs/cluster.md). Absent (etcd empty): each host works from its local files. */
typedef struct {
    strlist etcd; /* endpoints, "https://10.0.0.1:2379"; empty: no cluster */
    char *prefix; /* every key hearth writes starts with it; starts and ends with '/' */
    char *ca;     /* etcd's TLS: CA bundle, client certificate and key (NULL: none) */
    char *cert;
    char *key;
    char *username; /* etcd auth (NULL: off); the password from password_file */
    char *password_file;
    char *host;                /* this host's name among the hosts; default: gethostname() */
    char *secret_key_file;     /* 32+ bytes that encrypt private keys stored in etcd */
    bool plaintext_secrets;    /* true: private keys go to etcd unencrypted (the user said so) */
    int64_t lock_ttl_ms;       /* a dead host's certificate lock is free after this */
    int64_t challenge_wait_ms; /* how long an order waits for every host to have its token */
    int64_t timeout_ms;        /* each call to etcd */
} config_cluster;

typedef struct {
    char *path; /* the file loaded */
    char *user; /* unprivileged user for the children; NULL: stay as is */
    char *group;
    char *run_dir;   /* sockets, pidfiles */
    char *state_dir; /* certificates, ACME account, challenge files */
    char *log_level; /* debug, info, warn or error (the loader allows nothing else) */
    config_log_format log_format;
    char *metrics; /* the metrics endpoint's address, "127.0.0.1:9145"; NULL: off */
    config_edge edge;
    config_appserver appserver;
    config_certd certd;
    config_supervisor supervisor;
    config_cluster cluster;
    config_site *sites;
    size_t site_count;
} hearth_config;

/* Fill every field with its default (no sites), the derived ones included. */
void config_defaults(hearth_config *cfg);

/* Set by the supervisor for its components: the file they are given is its copy of the last
 * validated configuration (in run_dir), and this absolute path is the file it was copied from.
 * config_load() then takes relative paths relative to the origin's directory and names the
 * origin in messages, so the copy means exactly what the file meant when it was validated. */
#define CONFIG_ORIGIN_ENV "HEARTH_CONFIG_ORIGIN"

/* Load path (NULL: CONFIG_DEFAULT_PATH) over the defaults (as $HEARTH_CONFIG_ORIGIN when set). cfg
 * need not be initialised: it is overwritten (a config it held is not freed), so there is no need
 * to call config_defaults first. Relative paths in the file are made relative to the file's
 * directory. On error returns -1 and writes one message, "FILE:LINE:COL: key 'a.b': what is wrong",
 * into err (errlen bytes, may be 0); cfg is then freed and zeroed. A file that cannot be read gives
 * "FILE: strerror". */
int config_load(hearth_config *cfg, const char *path, char *err, size_t errlen);

/* The whole file in a malloc'ed buffer, *len bytes; NULL with errno set. */
char *config_read_file(const char *path, size_t *len);

/* Load yaml (len bytes) read from the file origin: messages name origin and relative paths are
 * relative to its directory. The supervisor validates the bytes it will then copy this way. */
int config_load_text(hearth_config *cfg, const char *yaml, size_t len, const char *origin,
                     char *err, size_t errlen);

/* The same from a string in memory (name stands for the file in messages; NULL: "config").
 * Relative paths are kept as written. */
int config_load_string(hearth_config *cfg, const char *yaml, size_t len, const char *name,
                       char *err, size_t errlen);

/* Frees everything cfg holds and zeroes it, so freeing twice is harmless. */
void config_free(hearth_config *cfg);

/* Command-line flags over a loaded config (shared/cli.c). key is a dotted path,
 * "edge.max_header_size"; a list of maps on the way stands for its last element ("sites.hsts":
 * the last site's). The value is parsed, bounded and stored as the file's would be (relative
 * paths kept as written), and a list of strings gets it appended. On error -1 and one message
 * "WHO: what is wrong" in err, cfg unchanged. */
int config_set(hearth_config *cfg, const char *key, const char *text, const char *who, char *err,
               size_t errlen);
/* Empties the list (of strings or of maps) at key: a flag's first use replaces the file's list. */
int config_clear(hearth_config *cfg, const char *key);
/* Appends an element holding its defaults to the list of maps at key ("sites", "sites.static"). */
int config_add(hearth_config *cfg, const char *key, const char *who, char *err, size_t errlen);
/* Runs the checks the file's entries get on the last element of the list of maps at key (a
 * static prefix is cleaned, a duplicate refused). Not for "sites": their checks need the file. */
int config_check_last(hearth_config *cfg, const char *key, const char *who, char *err,
                      size_t errlen);

/* "30s" -> 30000 and friends; used by the CLI flags too. -1 on error. */
int config_parse_duration(const char *text, int64_t *ms);
int config_parse_size(const char *text, uint64_t *bytes);
/* "10r/s" -> 10000, "30r/m" -> 500: milli-requests per second (at least 1). -1 on error. */
int config_parse_rate(const char *text, uint32_t *milli_per_s);

#endif
