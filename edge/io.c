/* Nonblocking reads and writes on a client or upstream socket, with or without TLS, so the
 * connection code above never cares which one it talks to. */
#include <errno.h>
#include <unistd.h>

#include <openssl/err.h>

#include "edge/edge.h"

static ssize_t tls_result(edge_io *io, int ret, bool reading)
{
    int err = SSL_get_error(io->ssl, ret);
    switch (err) {
    case SSL_ERROR_WANT_READ:
        if (!reading)
            io->tls_want_read = true;
        return IO_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        if (reading)
            io->tls_want_write = true;
        return IO_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        /* Handshake failures and resets are the peer's business; keep the error queue clean so
         * the next connection's SSL_get_error is not confused by them. */
        ERR_clear_error();
        return IO_ERROR;
    }
}

ssize_t edge_io_read(edge_io *io, char *dst, size_t n)
{
    if (!io->ssl) {
        ssize_t r = read(io->fd, dst, n);
        if (r >= 0)
            return r;
        return (errno == EAGAIN || errno == EINTR) ? IO_AGAIN : IO_ERROR;
    }
    io->tls_want_write = false;
    int r = SSL_read(io->ssl, dst, n > INT32_MAX ? INT32_MAX : (int)n);
    if (r > 0)
        return r;
    return tls_result(io, r, true);
}

ssize_t edge_io_write(edge_io *io, const char *src, size_t n)
{
    if (!io->ssl) {
        ssize_t r = write(io->fd, src, n);
        if (r >= 0)
            return r;
        return (errno == EAGAIN || errno == EINTR) ? IO_AGAIN : IO_ERROR;
    }
    io->tls_want_read = false;
    int r = SSL_write(io->ssl, src, n > INT32_MAX ? INT32_MAX : (int)n);
    if (r > 0)
        return r;
    ssize_t res = tls_result(io, r, false);
    return res == 0 ? IO_ERROR : res;
}

int edge_io_flush(edge_io *io, buf *out)
{
    while (buf_used(out) > 0) {
        ssize_t r = edge_io_write(io, buf_head(out), buf_used(out));
        if (r == IO_AGAIN)
            return 0;
        if (r < 0)
            return -1;
        buf_consume(out, (size_t)r);
    }
    buf_reset(out);
    return 0;
}
