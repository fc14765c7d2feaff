/* One client connection inside a worker: reading, parsing (keep-alive, pipelining, chunked
 * bodies), dispatching each request to its handler, and writing the answers in order. */
#ifndef APPSERVER_CONN_H
#define APPSERVER_CONN_H

#include <stdbool.h>
#include <uv.h>

#include "appserver/arena.h"
#include "appserver/exchange.h"
#include "appserver/router.h"
#include "appserver/scoreboard.h"

/* What connections share inside one worker process. */
typedef struct {
    uv_loop_t *loop;
    router routes;
    http_limits limits;
    int64_t keepalive_ms;
    int64_t request_timeout_ms; /* a started request must arrive within this */
    worker_slot *slot;
    int access_fd;  /* -1: no access log */
    bool stopping;  /* finish what is in flight, take nothing new */
    bool streaming; /* a loaded module streams bodies: dispatch before the whole body is in */
    uint64_t requests;
    uint64_t max_requests;
    size_t conn_count;
    struct conn *conns;    /* doubly linked */
    void (*on_idle)(void); /* called when stopping and the last connection closed */
    void (*on_max_requests)(void);
    /* reused for every request: no allocation per request once warm */
    arena arena;
    hearth_res res;
} worker_ctx;

/* Accept one pending connection from server. */
void conn_accept(worker_ctx *w, uv_stream_t *server);
/* Serve a connection accepted by hand (fd), when draining the backlog at stop. */
void conn_adopt(worker_ctx *w, int fd, bool tcp);
/* On graceful stop: close idle connections now; busy ones close after their response. */
void conn_stop_all(worker_ctx *w);

#endif
