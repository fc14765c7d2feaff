/* Listening sockets: bound here from "HOST:PORT" addresses, or inherited from the supervisor
 * or systemd through LISTEN_FDS (names "http"/"https" in LISTEN_FDNAMES), then accepted from. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/listen_addr.h"
#include "shared/log.h"
#include "shared/sdnotify.h"
#include "edge/edge.h"

#define LISTEN_BACKLOG 4096

/* Every listener, bound here or inherited, is non-blocking: one loop accepts in batches. */
static int add_listener(edge_worker *w, int fd, bool tls)
{
    edge_listener *l = realloc(w->listeners, (w->listener_count + 1) * sizeof(*l));
    if (!l)
        return -1;
    w->listeners = l;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    l[w->listener_count] = (edge_listener){.fd = fd, .tls = tls};
    w->listener_count++;
    return 0;
}

/* Every socket spec stands for (a name may stand for several). */
static int bind_spec(edge_worker *w, const char *spec, bool tls, char *err, size_t errlen)
{
    int fds[LISTEN_ADDR_MAX_SOCKETS];
    int n = listen_addr_bind_all(spec, LISTEN_BACKLOG, fds, err, errlen);
    for (int i = 0; i < n; i++) {
        if (add_listener(w, fds[i], tls) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return n < 0 ? -1 : 0;
}

static int local_port(int fd)
{
    listen_sockaddr sa = {.len = sizeof(sa.ss)};
    if (getsockname(fd, (struct sockaddr *)&sa.ss, &sa.len) < 0)
        return -1;
    return listen_sockaddr_port(&sa);
}

/* Without names, an inherited socket is HTTPS when its port is one of the configured HTTPS
 * ports, or 443. */
static bool port_is_https(const config_edge *e, int port)
{
    for (size_t i = 0; i < e->https.count; i++) {
        listen_addr a;
        if (listen_addr_parse(e->https.items[i], &a, NULL, 0) == 0 && a.port == port)
            return true;
    }
    return port == 443;
}

static int inherit(edge_worker *w, const sd_listen_fd *fds, int n, char *err, size_t errlen)
{
    for (int i = 0; i < n; i++) {
        bool tls = fds[i].name[0] ? strncmp(fds[i].name, "https", 5) == 0
                                  : port_is_https(&w->cfg.edge, local_port(fds[i].fd));
        if (add_listener(w, fds[i].fd, tls) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

int edge_listeners_open(edge_worker *w, char *err, size_t errlen)
{
    sd_listen_fd fds[SD_LISTEN_FDS_MAX];
    int n = sd_listen_fds_take(fds, SD_LISTEN_FDS_MAX, err, errlen);
    if (n != 0)
        return n < 0 ? -1 : inherit(w, fds, n, err, errlen);
    const strlist *lists[2] = {&w->cfg.edge.http, &w->cfg.edge.https};
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < lists[t]->count; i++)
            if (bind_spec(w, lists[t]->items[i], t == 1, err, errlen) < 0)
                return -1;
    if (w->listener_count == 0) {
        snprintf(err, errlen, "nothing to listen on: give --http and/or --https");
        return -1;
    }
    return 0;
}

static void on_accept(uv_poll_t *h, int status, int events)
{
    (void)events;
    edge_listener *l = h->data;
    if (status < 0)
        return;
    /* A bounded batch, so one busy listener cannot starve the connections already open. */
    for (int i = 0; i < 64; i++) {
        bool full = edge_w.conn_count >= edge_w.cfg.edge.max_connections;
        if (full && !edge_slots_can_shed()) {
            edge_slots_none_free();
            edge_listeners_pause(&edge_w, true);
            break;
        }
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_repeated(&l->accept_log, edge_now_ms(), HLOG_WARN, "accept: %s",
                             strerror(errno));
            break;
        }
        if (full)
            edge_slots_shed_one();
        edge_client_accept(&edge_w, fd, l->tls, (struct sockaddr *)&ss);
    }
    edge_slots_accepted();
}

void edge_listeners_start(edge_worker *w)
{
    for (size_t i = 0; i < w->listener_count; i++) {
        edge_listener *l = &w->listeners[i];
        if (uv_poll_init(w->loop, &l->poll, l->fd) < 0) {
            log_error("cannot watch listening socket %d", l->fd);
            exit(1);
        }
        l->poll.data = l;
        uv_poll_start(&l->poll, UV_READABLE, on_accept);
        l->active = true;
    }
}

/* At max_connections with every connection busy serving (none idle or waiting for a head to
 * shed, slots.c), the edge stops accepting; the kernel backlog holds the newcomers until a
 * connection finishes or starts waiting. */
void edge_listeners_pause(edge_worker *w, bool pause)
{
    if (w->draining)
        return;
    for (size_t i = 0; i < w->listener_count; i++) {
        edge_listener *l = &w->listeners[i];
        if (pause && l->active)
            uv_poll_stop(&l->poll);
        else if (!pause && !l->active)
            uv_poll_start(&l->poll, UV_READABLE, on_accept);
        l->active = !pause;
    }
}

void edge_listeners_close(edge_worker *w)
{
    for (size_t i = 0; i < w->listener_count; i++) {
        edge_listener *l = &w->listeners[i];
        uv_poll_stop(&l->poll);
        l->active = false;
        uv_close((uv_handle_t *)&l->poll, NULL);
        close(l->fd);
    }
}
