/* The hearth module ABI: what an application written in C includes to be served by the
 * appserver (the part WSGI plays for Python). Versioned; the contract is docs/module-abi.md. */
#ifndef HEARTH_APP_H
#define HEARTH_APP_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on every incompatible change to this header. A module built against another
 * version is refused at load time with a message that names both numbers. */
#define HEARTH_APP_ABI_VERSION 1
/* Bumped when this header grows compatibly (1.1: streaming, settings, module flags). A module
 * records both in its descriptor; one built for 1.0 loads and works unchanged. */
#define HEARTH_APP_ABI_MINOR 1
/* Marks a real descriptor, so a stray symbol of the same name is not mistaken for one. */
#define HEARTH_APP_MAGIC 0x48525448u /* "HRTH" */
/* The one symbol a module exports: a const hearth_module of this name (use HEARTH_MODULE). */
#define HEARTH_MODULE_SYMBOL "hearth_app_module"

#define HEARTH_EXPORT __attribute__((visibility("default")))

typedef struct hearth_req hearth_req; /* one request; valid during the handler call only */
typedef struct hearth_res hearth_res; /* the response being built for it */

/* A handler returns HEARTH_OK, or HEARTH_ERROR after hearth_res_fail(): the client then gets a
 * plain 500 and the detail goes to the error log, never to the client. */
#define HEARTH_OK 0
#define HEARTH_ERROR (-1)
typedef int (*hearth_handler)(hearth_req *req, hearth_res *res);

typedef struct {
    /* "GET", "POST", ... or "*" for any method. A GET route also answers HEAD. */
    const char *method;
    /* "/notes", "/notes/:id" (":name": one segment, named), or a last segment "*name" that
     * takes the rest of the path, maybe empty. Literal segments win over parameters, parameters
     * over a wildcard. */
    const char *pattern;
    hearth_handler handler;
} hearth_route;

typedef struct {
    uint32_t magic;       /* HEARTH_APP_MAGIC */
    uint32_t abi_version; /* HEARTH_APP_ABI_VERSION */
    const char *name;     /* for logs */
    const char *version;  /* free text for logs; may be NULL */
    /* Optional, run in each worker after fork, before it serves: open database connections
     * here. Return 0, or non-zero to refuse to start (log why with hearth_log first). *data is
     * what hearth_req_module_data() returns to this module's handlers. */
    int (*init)(void **data);
    /* Optional, run when the worker stops gracefully. */
    void (*fini)(void *data);
    const hearth_route *routes; /* array ended by an entry whose pattern is NULL */
    /* ---- since 1.1: present only when the descriptor says minor >= 1 ---- */
    unsigned flags; /* HEARTH_MODULE_* below */
} hearth_module;

/* The module's handlers stream request bodies with hearth_req_read(): they may be called once
 * the head and the first part of the body (up to 64 KiB) have arrived, instead of after the
 * whole body. hearth_req_body() still works for them: it reads the rest first. */
#define HEARTH_MODULE_STREAMS_BODY 0x1u

/* Declares the exported descriptor; HEARTH_MODULE_HEAD fills its two header fields:
 *   HEARTH_MODULE = {HEARTH_MODULE_HEAD, .name = "hello", .routes = routes};
 * abi_version carries the major version in its low 16 bits and the minor above them. */
#define HEARTH_MODULE HEARTH_EXPORT const hearth_module hearth_app_module
#define HEARTH_MODULE_HEAD                                                                         \
    .magic = HEARTH_APP_MAGIC,                                                                     \
    .abi_version = HEARTH_APP_ABI_VERSION | ((uint32_t)HEARTH_APP_ABI_MINOR << 16)

/* ---- Request. Strings are NUL-terminated, owned by the server, valid until the handler
 * returns. Lookups of names are exact except headers, which are case-insensitive. ---- */

const char *hearth_req_method(const hearth_req *req);
const char *hearth_req_path(const hearth_req *req);         /* percent-decoded, no query */
const char *hearth_req_target(const hearth_req *req);       /* as sent: path and query */
const char *hearth_req_query_string(const hearth_req *req); /* "" when none */
/* The route's :name or *name part, percent-decoded; NULL when the route has none. */
const char *hearth_req_param(const hearth_req *req, const char *name);
/* First query argument with this name, decoded ('+' is a space); NULL when absent. */
const char *hearth_req_query(const hearth_req *req, const char *name);
/* First header field with this name; NULL when absent. */
const char *hearth_req_header(const hearth_req *req, const char *name);
size_t hearth_req_header_count(const hearth_req *req);
/* The i-th header field; 0, or -1 past the end. */
int hearth_req_header_at(const hearth_req *req, size_t i, const char **name, const char **value);
const char *hearth_req_cookie(const hearth_req *req, const char *name);
/* The body (decoded from chunked if need be), bounded by the server's max body size. Never
 * NULL; *len may be 0. A NUL follows the last byte, so text bodies can be used as strings. */
const char *hearth_req_body(const hearth_req *req, size_t *len);
/* A field of an application/x-www-form-urlencoded body, decoded; NULL when absent. */
const char *hearth_req_form(const hearth_req *req, const char *name);
/* The body parsed as JSON, or NULL when it is not JSON. Borrowed: freed after the handler. */
json_t *hearth_req_json(const hearth_req *req);
/* The client's address: the edge's X-Real-IP (or the last X-Forwarded-For hop), else the
 * peer address of a TCP connection, else "unix". */
const char *hearth_req_client_addr(const hearth_req *req);
/* What this module's init() stored. */
void *hearth_req_module_data(const hearth_req *req);

/* ---- Response. Defaults: 200, Content-Type text/plain; charset=utf-8, empty body.
 * Functions returning int give 0, or -1 when refused (bad header bytes, out of memory). ---- */

void hearth_res_status(hearth_res *res, int status);
/* Adds a header field (sets it when it is Content-Type). Framing fields (Content-Length,
 * Transfer-Encoding, Connection) belong to the server and are refused. */
int hearth_res_header(hearth_res *res, const char *name, const char *value);
int hearth_res_write(hearth_res *res, const void *data, size_t len);
int hearth_res_puts(hearth_res *res, const char *text);
int hearth_res_printf(hearth_res *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Replaces the body with json (compact) and sets Content-Type: application/json. */
int hearth_res_json(hearth_res *res, int status, const json_t *json);
/* status 301, 302, 303, 307 or 308 with a Location field and a short body. */
int hearth_res_redirect(hearth_res *res, int status, const char *location);
/* Records why the handler failed and returns HEARTH_ERROR: return hearth_res_fail(...); */
int hearth_res_fail(hearth_res *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- Streaming (since 1.1). A handler may send its answer while it produces it instead of
 * building it in memory: hearth_res_start() fixes the status line and the fields set so far
 * (they leave with the first body bytes, in one write), then each hearth_res_send() goes to
 * the client at once, waiting while the client reads
 * slowly (a stall longer than the server's timeout fails the call). The server owns framing:
 * with a declared length exactly that many bytes are sent (more is dropped; fewer aborts the
 * connection when the handler returns), otherwise the body is chunked (HTTP/1.1) or ends with
 * the connection (HTTP/1.0). Nothing is sent for HEAD, 1xx, 204 and 304. A call that returns
 * -1 means the client is gone or too slow: stop producing and return. ---- */

/* Reads up to n bytes of the request body: the count, 0 at its end, -1 when it cannot be read
 * (client gone or too slow, body over the limit, malformed chunk): the server then answers
 * 413/400/408 itself if nothing was sent yet, or closes the connection. Never reads past the
 * body. Works for every module; without HEARTH_MODULE_STREAMS_BODY it reads from memory. */
long hearth_req_read(hearth_req *req, void *dst, size_t n);
/* content_length: the body's length, or -1 when unknown. 0, or -1 when the client is gone or
 * the fields are refused. Only once per response. */
int hearth_res_start(hearth_res *res, int64_t content_length);
int hearth_res_send(hearth_res *res, const void *data, size_t len);
/* len bytes of the open file fd from offset, with sendfile(2). */
int hearth_res_sendfile(hearth_res *res, int fd, int64_t offset, size_t len);
/* After hearth_res_start(): the response cannot be completed. The connection is closed
 * without ending the body, so the client sees it truncated; why goes to the error log. */
void hearth_res_abort(hearth_res *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whether hearth_res_start() was called for this response. */
int hearth_res_started(const hearth_res *res);
/* Drops the fields (Content-Type included: none is sent unless set again) and the body set
 * so far, not the status; 0, or -1 once started. */
int hearth_res_clear(hearth_res *res);
/* The reason phrase of the status line, instead of the standard one (visible bytes and
 * spaces, at most 63). 0, or -1 when refused. */
int hearth_res_reason(hearth_res *res, const char *reason);

/* The request's transport facts a gateway needs (since 1.1). */
int hearth_req_http_minor(const hearth_req *req);   /* 0 or 1: HTTP/1.<minor> */
int hearth_req_body_chunked(const hearth_req *req); /* 1 when the body came chunked */
/* The port of this server the request came in on; 0 on a unix socket. */
int hearth_req_local_port(const hearth_req *req);
/* The scheme the client used, as the edge reports it ("https" or "http"); the peer address and
 * this are believed from the edge only (a unix socket peer or loopback). */
const char *hearth_req_scheme(const hearth_req *req);

/* ---- Conveniences (since 1.1) ---- */

/* hearth_res_json() that takes ownership of json (jansson's "_new" convention), so a handler
 * can end with  return hearth_res_json_new(res, 200, json_pack(...));  NULL json: -1. */
int hearth_res_json_new(hearth_res *res, int status, json_t *json);
/* Flask's abort(): status and the JSON body {"error": message}. Returns HEARTH_OK:
 *   return hearth_res_error(res, 404, "no note %lld", (long long)id); */
int hearth_res_error(hearth_res *res, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A route parameter or query argument that must be a decimal integer (an optional '-', then
 * digits, in range): 0, or -1 when it is absent or anything else ("12abc", "", "1e3"). */
int hearth_req_param_int(const hearth_req *req, const char *name, int64_t *out);
int hearth_req_query_int(const hearth_req *req, const char *name, int64_t *out);
/* Memory that lives until the request ends, freed with it: no free() needed. NULL when out of
 * memory. */
void *hearth_req_alloc(hearth_req *req, size_t size);
char *hearth_req_strdup(hearth_req *req, const char *s);

/* Set-Cookie attributes, as Flask's set_cookie takes them; zero means "not set". */
typedef struct {
    int64_t max_age;       /* seconds; 0: a session cookie; negative: delete it (Max-Age=0) */
    const char *path;      /* NULL: no Path (the browser uses the request's directory) */
    const char *domain;    /* NULL: this host only */
    int secure;            /* only over HTTPS */
    int http_only;         /* hidden from scripts */
    const char *same_site; /* "Strict", "Lax", "None" or NULL */
} hearth_cookie;
/* Adds a Set-Cookie field. 0, or -1 when the name is not a token or the value or an attribute
 * holds a byte a cookie cannot carry (space, quote, comma, semicolon, backslash, controls). */
int hearth_res_cookie(hearth_res *res, const char *name, const char *value,
                      const hearth_cookie *attrs);

/* The module and its routes in one declaration (init and fini may be NULL):
 *   HEARTH_APP("hello", NULL, NULL,
 *              {"GET", "/", index_page},
 *              {"POST", "/echo", echo_json});
 * For a version string or flags, write the descriptor out with HEARTH_MODULE. */
#define HEARTH_APP(app_name, init_fn, fini_fn, ...)                                                \
    static const hearth_route hearth_app_routes_[] = {__VA_ARGS__, {NULL, NULL, NULL}};            \
    HEARTH_MODULE = {HEARTH_MODULE_HEAD, .name = (app_name), .init = (init_fn), .fini = (fini_fn), \
                     .routes = hearth_app_routes_}

/* ---- Settings (since 1.1): the i-th value of a named setting the appserver was given for
 * its modules, NULL past the last. Named settings: "wsgi.app" (module:callable), "chdir",
 * "pythonpath" (repeatable), "virtualenv", "mount". ---- */
const char *hearth_setting(const char *name, size_t i);

/* ---- Logging into the appserver's error log. ---- */
enum { HEARTH_LOG_DEBUG, HEARTH_LOG_INFO, HEARTH_LOG_WARN, HEARTH_LOG_ERROR };
void hearth_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The error log's file descriptor, for what must write there without us (a crash handler
 * such as Python's faulthandler). Since 1.1. */
int hearth_log_fd(void);

#ifdef __cplusplus
}
#endif

#endif
