/* The connection's state, shared by conn.c (the event-driven side) and conn_io.c (blocking
 * I/O while a streaming handler runs). Private to those two files. */
#ifndef APPSERVER_CONN_IMPL_H
#define APPSERVER_CONN_IMPL_H

#include "appserver/conn.h"

#define HDR_MAX 100
#define READ_CHUNK 16384

typedef struct conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    worker_ctx *w;
    struct conn *prev, *next;
    buf in;   /* received, not yet parsed */
    buf head; /* the current request's head, kept while its body arrives */
    buf body; /* the current request's decoded body */
    buf out;  /* answers not yet handed to the kernel */
    http_parser parser;
    http_header headers[HDR_MAX];
    bool in_body, closing, close_after, paused, reading, eof, lingering;
    bool body_done;   /* the current request's body has been read to its end */
    bool discarding;  /* reading the rest of a body its handler did not read, to drop it */
    bool wait_writes; /* a streaming handler may run only once earlier answers are out */
    int body_error;   /* status the body was refused with while a handler read it */
    int handles_open;
    size_t writes; /* uv_write requests in flight */
    uint64_t served;
    char peer[64];
    int local_port; /* 0 for a unix socket */
} conn;

/* Next piece of the body from c->in into c->body (dropped when discarding). 1: data or the
 * end (c->body_done), 0: c->in needs more, -1: refused (c->body_error says with what). */
int conn_parse_body_step(conn *c);
/* Reads of a body still partly on the socket (conn_io.c). */
extern const body_reader conn_streamed_reader;
int conn_read_rest_of_body(conn *c, const char **body, size_t *len);

#endif
