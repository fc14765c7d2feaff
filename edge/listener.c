/* Listening sockets: bound here from "HOST:PORT" addresses, or inherited from the supervisor
 * or systemd through LISTEN_FDS (names "http"/"https" in LISTEN_FDNAMES), then accepted from. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/log.h"
#include "edge/edge.h"

#define SD_LISTEN_FDS_START 3

static int add_listener(edge_worker *w, int fd, bool tls)
{
    edge_listener *l = realloc(w->listeners, (w->listener_count + 1) * sizeof(*l));
    if (!l)
        return -1;
    w->listeners = l;
    l[w->listener_count] = (edge_listener){.fd = fd, .tls = tls};
    w->listener_count++;
    return 0;
}

/* ":443", "0.0.0.0:443", "[::]:443", "443" */
static int split_addr(const char *addr, char *host, size_t hostlen, const char **port)
{
    const char *colon = strrchr(addr, ':');
    if (!colon) {
        snprintf(host, hostlen, "0.0.0.0");
        *port = addr;
        return 0;
    }
    size_t hl = (size_t)(colon - addr);
    if (hl >= hostlen)
        return -1;
    memcpy(host, addr, hl);
    host[hl] = 0;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    if (!host[0])
        snprintf(host, hostlen, "0.0.0.0");
    *port = colon + 1;
    return 0;
}

static int bind_one(const char *addr, char *err, size_t errlen)
{
    char host[128];
    const char *port;
    if (split_addr(addr, host, sizeof(host), &port) < 0) {
        snprintf(err, errlen, "listen address '%s' is malformed", addr);
        return -1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "listen address '%s': %s", addr, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (res->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
        snprintf(err, errlen, "listen on '%s': %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

/* Without names, an inherited socket is HTTPS when its port is one of the configured HTTPS
 * ports, or 443. */
static bool port_is_https(const config_edge *e, int port)
{
    for (size_t i = 0; i < e->https.count; i++) {
        char host[128];
        const char *p;
        if (split_addr(e->https.items[i], host, sizeof(host), &p) == 0 && atoi(p) == port)
            return true;
    }
    return port == 443;
}

static int inherit(edge_worker *w, int n, char *err, size_t errlen)
{
    const char *names = getenv("LISTEN_FDNAMES");
    char *copy = names ? strdup(names) : NULL;
    char *save = NULL;
    char *name = copy ? strtok_r(copy, ":", &save) : NULL;
    for (int i = 0; i < n; i++) {
        int fd = SD_LISTEN_FDS_START + i;
        int listening = 0;
        socklen_t len = sizeof(listening);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening) {
            snprintf(err, errlen, "LISTEN_FDS: fd %d is not a listening socket", fd);
            free(copy);
            return -1;
        }
        bool tls =
            name ? strncmp(name, "https", 5) == 0 : port_is_https(&w->cfg.edge, local_port(fd));
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        if (add_listener(w, fd, tls) < 0) {
            snprintf(err, errlen, "out of memory");
            free(copy);
            return -1;
        }
        name = name ? strtok_r(NULL, ":", &save) : NULL;
    }
    free(copy);
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
    return 0;
}

static int inherited_count(void)
{
    const char *fds = getenv("LISTEN_FDS");
    const char *pid = getenv("LISTEN_PID");
    if (!fds)
        return 0;
    if (pid && atol(pid) != (long)getpid())
        return 0;
    int n = atoi(fds);
    return n > 0 && n < 64 ? n : 0;
}

int edge_listeners_open(edge_worker *w, char *err, size_t errlen)
{
    int n = inherited_count();
    if (n > 0)
        return inherit(w, n, err, errlen);
    const config_strings *lists[2] = {&w->cfg.edge.http, &w->cfg.edge.https};
    for (int t = 0; t < 2; t++) {
        for (size_t i = 0; i < lists[t]->count; i++) {
            int fd = bind_one(lists[t]->items[i], err, errlen);
            if (fd < 0 || add_listener(w, fd, t == 1) < 0)
                return -1;
        }
    }
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
                log_repeated(&l->accept_log, edge_now_ms(), LOG_WARN, "accept: %s",
                             strerror(errno));
            break;
        }
        if (full)
            edge_slots_shed_one();
        edge_conn_accept(&edge_w, fd, l->tls, (struct sockaddr *)&ss);
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
