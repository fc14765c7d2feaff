/* Active health checks: an HTTP/1.1 GET of the site's health_check path on a connection of its
 * own, passed by a 2xx or 3xx response head within the timeout. Every worker checks for itself
 * (upstream.c says why); the answer is read with the shared parser, as the proxy reads one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "edge/edge.h"

struct edge_probe {
    int fd;
    uv_poll_t poll;
    uv_timer_t timer;
    int handles_open;
    bool connecting;
    edge_upstream *u; /* NULL once it has ended */
    buf out;
    buf in;
    http_parser p;
    http_header hdrs[EDGE_MAX_HEADERS];
};

static void probe_freed(uv_handle_t *h)
{
    edge_probe *pr = h->data;
    if (--pr->handles_open > 0)
        return;
    buf_free(&pr->in);
    buf_free(&pr->out);
    free(pr);
}

static void probe_close(edge_probe *pr)
{
    pr->u->probe = NULL;
    pr->u = NULL;
    uv_close((uv_handle_t *)&pr->poll, probe_freed);
    uv_close((uv_handle_t *)&pr->timer, probe_freed);
    close(pr->fd);
}

static void probe_end(edge_probe *pr, bool passed, const char *why)
{
    edge_upstream *u = pr->u;
    probe_close(pr);
    edge_upstream_checked(u, passed, why);
}

void edge_health_cancel(edge_upstream *u)
{
    if (u->probe)
        probe_close(u->probe);
}

static void on_probe_timeout(uv_timer_t *t)
{
    edge_probe *pr = t->data;
    probe_end(pr, false, pr->connecting ? "connect timed out" : "no answer in time");
}

/* The answer so far; true when the probe ended. */
static bool probe_read(edge_probe *pr)
{
    for (;;) {
        if (buf_reserve(&pr->in, 4096) < 0) {
            probe_end(pr, false, "answer head too large");
            return true;
        }
        ssize_t n = read(pr->fd, buf_tail(&pr->in), buf_room(&pr->in));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return false;
        if (n <= 0) {
            probe_end(pr, false, n == 0 ? "closed before answering" : strerror(errno));
            return true;
        }
        buf_commit(&pr->in, (size_t)n);
        http_parse_result res = http_parse_head(&pr->p, buf_head(&pr->in), buf_used(&pr->in));
        if (res == HTTP_PARSE_AGAIN)
            continue;
        if (res == HTTP_PARSE_ERROR) {
            probe_end(pr, false, http_error_reason(pr->p.error));
            return true;
        }
        char why[32];
        snprintf(why, sizeof(why), "status %d", pr->p.status);
        probe_end(pr, pr->p.status >= 200 && pr->p.status < 400, why);
        return true;
    }
}

static void on_probe_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    edge_probe *pr = h->data;
    if (!pr->u)
        return;
    if (pr->connecting) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(pr->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            probe_end(pr, false, strerror(err));
            return;
        }
        pr->connecting = false;
    }
    while (buf_used(&pr->out) > 0) {
        ssize_t n = send(pr->fd, buf_head(&pr->out), buf_used(&pr->out), MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n < 0) {
            probe_end(pr, false, strerror(errno));
            return;
        }
        buf_consume(&pr->out, (size_t)n);
        if (buf_used(&pr->out) == 0)
            uv_poll_start(&pr->poll, UV_READABLE, on_probe_poll);
    }
    probe_read(pr);
}

void edge_health_probe(edge_upstream *u)
{
    const edge_site *s = u->site;
    int fd = edge_upstream_connect(u);
    edge_probe *pr = fd < 0 ? NULL : calloc(1, sizeof(*pr));
    if (!pr) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        edge_upstream_checked(u, false, strerror(e));
        return;
    }
    pr->fd = fd;
    pr->u = u;
    pr->connecting = true;
    u->probe = pr;
    buf_init(&pr->in, edge_w.cfg.edge.max_header_size + 4096);
    buf_init(&pr->out, 0);
    buf_printf(&pr->out,
               "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hearth-edge health check\r\n"
               "Connection: close\r\n\r\n",
               s->check.path, s->name);
    http_parser_init(&pr->p, HTTP_KIND_RESPONSE, &edge_w.limits, pr->hdrs, EDGE_MAX_HEADERS);
    uv_poll_init(edge_w.loop, &pr->poll, fd);
    uv_timer_init(edge_w.loop, &pr->timer);
    pr->poll.data = pr->timer.data = pr;
    pr->handles_open = 2;
    uv_unref((uv_handle_t *)&pr->poll); /* a draining worker stops all the same */
    uv_unref((uv_handle_t *)&pr->timer);
    uv_poll_start(&pr->poll, UV_WRITABLE, on_probe_poll);
    uv_timer_start(&pr->timer, on_probe_timeout, (uint64_t)s->check.timeout_ms, 0);
}
