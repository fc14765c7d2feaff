/* The server's side of hearth_req and hearth_res: how a parsed HTTP request becomes what a
 * handler sees, and how what it built becomes bytes on the wire. */
#ifndef APPSERVER_EXCHANGE_H
#define APPSERVER_EXCHANGE_H

#include <stdbool.h>
#include <sys/uio.h>

#include "appserver/arena.h"
#include "hearth/app.h"
#include "appserver/router.h"
#include "shared/buf.h"
#include "shared/http_parser.h"

/* The connection a request came on (conn.c): what streaming handlers read from and write to
 * while they run. */
typedef struct conn conn;

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
    size_t body_read; /* hearth_req_read() position in an in-memory body */
    json_t *json;
    bool json_parsed;
    kv_list args, form, cookies;
    const char *client_addr;
    const char *scheme; /* "http" or "https", as the edge reports it */
    void *module_data;
    /* the rest of a streamed body: conn.c's reader (NULL when the body is all in memory) */
    const struct body_reader *reader;
    conn *conn;
    int local_port;
    int version_minor;
    bool chunked;
    bool body_complete; /* false while part of the body is still on the socket */
};

struct hearth_res {
    int status;
    buf headers; /* "Name: value\r\n" lines, framing fields excluded */
    char content_type[128];
    char reason[64]; /* "" : the standard phrase */
    buf body;
    bool failed;
    char fail[256];
    /* set by the server before the handler runs, for hearth_res_start() */
    conn *conn;
    int version_minor;
    bool keep_alive, head_only;
    /* streaming state */
    bool started, chunked, no_body, until_close, aborted, send_failed;
    int64_t length; /* declared Content-Length, -1: none */
    uint64_t sent;  /* body bytes handed to the client */
};

/* Reads the part of a body still on the socket; conn.c provides it, so that request.c stays
 * free of sockets (and testable alone). */
typedef struct body_reader {
    long (*read)(conn *c, void *dst, size_t n);
    int (*read_all)(conn *c, const char **body, size_t *len);
} body_reader;

/* Blocking I/O on the connection while a handler runs (conn.c). Each waits at most the request
 * timeout for progress and counts progress as the worker's heartbeat. -1: failed (client gone,
 * too slow, or the body is refused: conn_body_error() then says with what status). */
int conn_write_now(conn *c, const struct iovec *iov, int count);
/* What waits to be written before anything else on the connection. */
buf *conn_output(conn *c);
int conn_sendfile_now(conn *c, int fd, int64_t offset, size_t len);

/* Build req from a parsed head (head = the message's bytes) and its body. path receives the
 * decoded segments for the router. Returns 0, or the status to refuse with (400). */
int request_build(hearth_req *req, arena *a, const http_parser *p, const char *head,
                  const char *body, size_t body_len, const char *peer, route_path *path);
void request_done(hearth_req *req);

void response_init(hearth_res *res);
void response_reset(hearth_res *res);
void response_free(hearth_res *res);
/* Status line, the fields and the framing fields for a body of length (-1: unknown, then
 * chunked or close-delimited as res says), without the blank line's end. */
int response_head(hearth_res *res, buf *out, int64_t length);
/* After a streaming handler returned: end the body (last chunk), or report that it must be
 * aborted (declared length not reached). 0: complete, -1: abort the connection. */
int response_stream_end(hearth_res *res);
/* Status line, fields, Content-Length and the body (unless head_only) appended to out. */
int response_serialize(const hearth_res *res, buf *out, int version_minor, bool keep_alive,
                       bool head_only);
/* A short plain-text reply from the server itself (404, 405, 413, 500, ...). extra_header is a
 * whole "Name: value\r\n" line or NULL. */
int response_simple(buf *out, int status, const char *extra_header, bool keep_alive,
                    bool head_only);

#endif
