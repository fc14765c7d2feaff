/* Blocking I/O on a connection while a streaming handler runs: reading the rest of a request
 * body, writing an answer as it is produced, sendfile. The event loop is not running
 * meanwhile (the handler runs inside one of its callbacks), so the socket is used directly;
 * every wait is bounded by the request timeout, and progress counts as the worker's heartbeat:
 * a worker busy sending a large answer to a slow client is not taken for a stuck one. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "appserver/conn_impl.h"
#include "shared/log.h"

static int conn_fd(const conn *c)
{
    uv_os_fd_t fd = -1;
    return uv_fileno(&c->h.handle, &fd) == 0 ? fd : -1;
}

static void beat(conn *c)
{
    atomic_store(&c->w->slot->beat_ms, scoreboard_now_ms());
}

/* 0 when fd is ready for events, -1 on timeout or error. */
static int wait_ready(conn *c, int fd, short events)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int rc;
    do
        rc = poll(&pfd, 1, (int)c->w->request_timeout_ms);
    while (rc < 0 && errno == EINTR);
    if (rc == 0)
        log_info("connection from %s: no progress for %lld ms while streaming; giving up", c->peer,
                 (long long)c->w->request_timeout_ms);
    return rc > 0 ? 0 : -1;
}

/* Everything queued in c->out first (an earlier answer, a 100 Continue), then iov. */
int conn_write_now(conn *c, const struct iovec *iov, int count)
{
    int fd = conn_fd(c);
    struct iovec v[8];
    int n = 0;
    if (fd < 0 || c->closing || count > 7)
        return -1;
    if (buf_used(&c->out) > 0)
        v[n++] = (struct iovec){buf_head(&c->out), buf_used(&c->out)};
    for (int i = 0; i < count; i++)
        v[n++] = iov[i];
    int first = 0;
    while (first < n) {
        ssize_t w = writev(fd, v + first, n - first);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno != EAGAIN || wait_ready(c, fd, POLLOUT) != 0))
            return -1;
        if (w <= 0)
            continue;
        beat(c);
        while (first < n && (size_t)w >= v[first].iov_len)
            w -= (ssize_t)v[first++].iov_len;
        if (first < n) {
            v[first].iov_base = (char *)v[first].iov_base + w;
            v[first].iov_len -= (size_t)w;
        }
    }
    buf_reset(&c->out);
    return 0;
}

int conn_sendfile_now(conn *c, int fd, int64_t offset, size_t len)
{
    int out = conn_fd(c);
    if (out < 0 || c->closing || (buf_used(&c->out) > 0 && conn_write_now(c, NULL, 0) != 0))
        return -1;
    off_t off = (off_t)offset;
    while (len > 0) {
        ssize_t n = sendfile(out, fd, &off, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno != EAGAIN || wait_ready(c, out, POLLOUT) != 0))
            return -1;
        if (n == 0)
            return -1; /* the file is shorter than promised */
        if (n > 0) {
            len -= (size_t)n;
            beat(c);
        }
    }
    return 0;
}

/* Read more of the request into c->in. -1: closed, failed or too slow. */
static int fill_now(conn *c)
{
    int fd = conn_fd(c);
    if (fd < 0 || c->eof || buf_reserve(&c->in, READ_CHUNK) != 0)
        return -1;
    if (buf_used(&c->out) > 0 && conn_write_now(c, NULL, 0) != 0)
        return -1; /* a 100 Continue the client waits for before it sends the body */
    for (;;) {
        ssize_t n = read(fd, buf_tail(&c->in), buf_room(&c->in));
        if (n > 0) {
            buf_commit(&c->in, (size_t)n);
            beat(c);
            return 0;
        }
        if (n == 0) {
            c->eof = true;
            return -1;
        }
        if (errno != EAGAIN && errno != EINTR)
            return -1;
        if (errno == EAGAIN && wait_ready(c, fd, POLLIN) != 0)
            return -1;
    }
}

/* Decode more of the body into c->body; -1 when it cannot (c->body_error says why). */
static int pull_body(conn *c)
{
    if (c->body_error)
        return -1;
    for (;;) {
        int r = conn_parse_body_step(c);
        if (r != 0)
            return r > 0 ? 0 : -1;
        if (fill_now(c) != 0) {
            c->body_error = c->eof ? 400 : 408;
            return -1;
        }
    }
}

static long read_body_part(conn *c, void *dst, size_t n)
{
    while (buf_used(&c->body) == 0 && !c->body_done)
        if (pull_body(c) != 0)
            return -1;
    size_t k = buf_used(&c->body) < n ? buf_used(&c->body) : n;
    memcpy(dst, buf_head(&c->body), k);
    buf_consume(&c->body, k);
    return (long)k;
}

int conn_read_rest_of_body(conn *c, const char **body, size_t *len)
{
    while (!c->body_done)
        if (pull_body(c) != 0)
            return -1;
    if (buf_reserve(&c->body, 1) == 0)
        *buf_tail(&c->body) = '\0'; /* handlers may treat a text body as a string */
    *body = buf_head(&c->body);
    *len = buf_used(&c->body);
    return 0;
}

const body_reader conn_streamed_reader = {read_body_part, conn_read_rest_of_body};

buf *conn_output(conn *c)
{
    return &c->out;
}
