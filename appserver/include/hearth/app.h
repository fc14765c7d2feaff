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
} hearth_module;

/* Declares the exported descriptor; HEARTH_MODULE_HEAD fills its two header fields:
 *   HEARTH_MODULE = {HEARTH_MODULE_HEAD, .name = "hello", .routes = routes}; */
#define HEARTH_MODULE HEARTH_EXPORT const hearth_module hearth_app_module
#define HEARTH_MODULE_HEAD .magic = HEARTH_APP_MAGIC, .abi_version = HEARTH_APP_ABI_VERSION

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

/* ---- Logging into the appserver's error log. ---- */
enum { HEARTH_LOG_DEBUG, HEARTH_LOG_INFO, HEARTH_LOG_WARN, HEARTH_LOG_ERROR };
void hearth_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif
