/* The server's side of hearth_req and hearth_res: how a parsed HTTP request becomes what a
 * handler sees, and how what it built becomes bytes on the wire. */
#ifndef APPSERVER_EXCHANGE_H
#define APPSERVER_EXCHANGE_H

#include <stdbool.h>

#include "arena.h"
#include "hearth/app.h"
#include "router.h"
#include "shared/buf.h"
#include "shared/http_parser.h"

typedef struct {
    const char *name;
    const char *value;
} kv_pair;

typedef struct {
    kv_pair *items;
    size_t count;
    bool parsed;
} kv_list;

struct hearth_req {
    arena *arena;
    const char *method, *target, *path, *query;
    kv_pair *headers;
    size_t header_count;
    const route_param *params;
    size_t param_count;
    const char *body;
    size_t body_len;
    json_t *json;
    bool json_parsed;
    kv_list args, form, cookies;
    const char *client_addr;
    void *module_data;
};

struct hearth_res {
    int status;
    buf headers; /* "Name: value\r\n" lines, framing fields excluded */
    char content_type[128];
    buf body;
    bool failed;
    char fail[256];
};

/* Build req from a parsed head (head = the message's bytes) and its body. path receives the
 * decoded segments for the router. Returns 0, or the status to refuse with (400). */
int request_build(hearth_req *req, arena *a, const http_parser *p, const char *head,
                  const char *body, size_t body_len, const char *peer, route_path *path);
void request_done(hearth_req *req);

void response_init(hearth_res *res);
void response_reset(hearth_res *res);
void response_free(hearth_res *res);
/* Status line, fields, Content-Length and the body (unless head_only) appended to out. */
int response_serialize(const hearth_res *res, buf *out, int version_minor, bool keep_alive,
                       bool head_only);
/* A short plain-text reply from the server itself (404, 405, 413, 500, ...). extra_header is a
 * whole "Name: value\r\n" line or NULL. */
int response_simple(buf *out, int status, const char *extra_header, bool keep_alive,
                    bool head_only);

#endif
