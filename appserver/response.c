/* hearth_res: the response half of the public SDK, and its serialisation. The server owns
 * framing (Content-Length, Connection), so a handler can never desynchronise a connection. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "appserver/exchange.h"
#include "shared/http_status.h"

#define RES_BODY_MAX (64u << 20) /* a handler building more than this has a bug */
#define DEFAULT_TYPE "text/plain; charset=utf-8"

void response_init(hearth_res *res)
{
    buf_init(&res->headers, 64 * 1024);
    buf_init(&res->body, RES_BODY_MAX);
    response_reset(res);
}

void response_reset(hearth_res *res)
{
    res->status = 200;
    res->started = res->chunked = res->no_body = res->until_close = false;
    res->aborted = res->send_failed = false;
    res->length = -1;
    res->sent = 0;
    res->reason[0] = '\0';
    buf_reset(&res->headers);
    buf_reset(&res->body);
    snprintf(res->content_type, sizeof res->content_type, "%s", DEFAULT_TYPE);
    res->failed = false;
    res->fail[0] = '\0';
}

void response_free(hearth_res *res)
{
    buf_free(&res->headers);
    buf_free(&res->body);
}

static bool status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

int response_head(hearth_res *res, buf *out, int64_t length)
{
    bool body = status_has_body(res->status);
    const char *reason = res->reason[0] ? res->reason : http_status_reason(res->status);
    int rc = buf_printf(out, "HTTP/1.1 %d %s\r\nServer: hearth\r\nDate: %s\r\n", res->status,
                        reason, http_date_now()) < 0;
    if (res->content_type[0] && body)
        rc |= buf_printf(out, "Content-Type: %s\r\n", res->content_type) < 0;
    rc |= buf_append(out, buf_head(&res->headers), buf_used(&res->headers)) < 0;
    res->chunked = res->until_close = false;
    if (body && length >= 0)
        rc |= buf_printf(out, "Content-Length: %lld\r\n", (long long)length) < 0;
    else if (body && !res->head_only && res->version_minor >= 1)
        res->chunked = true;
    else if (body && !res->head_only)
        res->until_close = true; /* HTTP/1.0 without a length: the body ends with the connection */
    if (res->chunked)
        rc |= buf_append_str(out, "Transfer-Encoding: chunked\r\n") < 0;
    if (res->until_close)
        res->keep_alive = false;
    if (!res->keep_alive)
        rc |= buf_append_str(out, "Connection: close\r\n") < 0;
    else if (res->version_minor == 0)
        rc |= buf_append_str(out, "Connection: keep-alive\r\n") < 0;
    rc |= buf_append_str(out, "\r\n") < 0;
    return rc ? -1 : 0;
}

int response_serialize(const hearth_res *res, buf *out, int version_minor, bool keep_alive,
                       bool head_only)
{
    hearth_res *r = (hearth_res *)res; /* head bookkeeping only; the caller sees no change */
    r->version_minor = version_minor;
    r->keep_alive = keep_alive;
    r->head_only = head_only;
    int rc = response_head(r, out, (int64_t)buf_used(&res->body));
    if (rc == 0 && !head_only && status_has_body(res->status))
        rc = buf_append(out, buf_head(&res->body), buf_used(&res->body)) < 0 ? -1 : 0;
    return rc;
}

int response_simple(buf *out, int status, const char *extra_header, bool keep_alive, bool head_only)
{
    const char *reason = http_status_reason(status);
    int rc =
        buf_printf(out,
                   "HTTP/1.1 %d %s\r\nServer: hearth\r\nDate: %s\r\n"
                   "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n%s%s\r\n",
                   status, reason, http_date_now(), strlen(reason) + 1,
                   extra_header ? extra_header : "", keep_alive ? "" : "Connection: close\r\n") < 0;
    if (!head_only)
        rc |= buf_printf(out, "%s\n", reason) < 0;
    return rc ? -1 : 0;
}

void hearth_res_status(hearth_res *res, int status)
{
    if (status >= 100 && status <= 999)
        res->status = status;
}

/* Field values may hold any visible byte, space and tab, never CR, LF or NUL. */
static bool valid_field(const char *name, const char *value)
{
    if (!*name)
        return false;
    for (const char *p = name; *p; p++)
        if (!http_is_tchar((unsigned char)*p))
            return false;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return false;
    return true;
}

int hearth_res_header(hearth_res *res, const char *name, const char *value)
{
    if (!name || !value || !valid_field(name, value))
        return -1;
    if (strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0 ||
        strcasecmp(name, "Connection") == 0)
        return -1;
    if (strcasecmp(name, "Content-Type") == 0) {
        if (strlen(value) >= sizeof res->content_type)
            return -1;
        snprintf(res->content_type, sizeof res->content_type, "%s", value);
        return 0;
    }
    return buf_printf(&res->headers, "%s: %s\r\n", name, value) < 0 ? -1 : 0;
}

int hearth_res_write(hearth_res *res, const void *data, size_t len)
{
    return buf_append(&res->body, data, len) < 0 ? -1 : 0;
}

int hearth_res_puts(hearth_res *res, const char *text)
{
    return hearth_res_write(res, text, strlen(text));
}

int hearth_res_printf(hearth_res *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(&res->body, fmt, ap);
    va_end(ap);
    return rc < 0 ? -1 : 0;
}

static int dump_cb(const char *data, size_t size, void *arg)
{
    return hearth_res_write(arg, data, size);
}

int hearth_res_json(hearth_res *res, int status, const json_t *json)
{
    buf_reset(&res->body);
    hearth_res_status(res, status);
    hearth_res_header(res, "Content-Type", "application/json");
    if (json_dump_callback(json, dump_cb, res, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
        return -1;
    return hearth_res_write(res, "\n", 1);
}

int hearth_res_redirect(hearth_res *res, int status, const char *location)
{
    if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308)
        return -1;
    if (hearth_res_header(res, "Location", location) != 0)
        return -1;
    hearth_res_status(res, status);
    buf_reset(&res->body);
    return hearth_res_printf(res, "Redirecting to %s\n", location);
}

/* Why the response failed, for the error log (never the client). */
static void record_why(hearth_res *res, const char *fmt, va_list ap)
{
    vsnprintf(res->fail, sizeof res->fail, fmt, ap);
}

int hearth_res_fail(hearth_res *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record_why(res, fmt, ap);
    va_end(ap);
    res->failed = true;
    return HEARTH_ERROR;
}

/* ---- Streaming (ABI 1.1) ---- */

int hearth_res_started(const hearth_res *res)
{
    return res->started;
}

int hearth_res_clear(hearth_res *res)
{
    if (res->started)
        return -1;
    buf_reset(&res->headers);
    buf_reset(&res->body);
    res->content_type[0] = '\0';
    return 0;
}

int hearth_res_reason(hearth_res *res, const char *reason)
{
    size_t n = strlen(reason);
    if (n >= sizeof res->reason)
        return -1;
    for (const unsigned char *p = (const unsigned char *)reason; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return -1;
    memcpy(res->reason, reason, n + 1);
    return 0;
}

int hearth_res_start(hearth_res *res, int64_t content_length)
{
    if (res->started || !res->conn)
        return -1;
    res->no_body = res->head_only || !status_has_body(res->status);
    /* HEAD keeps the length the application declared, as a GET would have had. The head waits
     * in the connection's output for the first body bytes: one write for both. */
    int rc = response_head(res, conn_output(res->conn), content_length);
    res->started = true;
    res->length = res->no_body ? 0 : content_length;
    if (rc != 0)
        res->send_failed = true;
    return rc;
}

int hearth_res_send(hearth_res *res, const void *data, size_t len)
{
    if (!res->started || res->aborted || res->send_failed)
        return -1;
    if (res->no_body || len == 0)
        return 0;
    if (res->length >= 0) {
        uint64_t room = (uint64_t)res->length - res->sent;
        len = len > room ? (size_t)room : len; /* never past the declared length */
        if (len == 0)
            return 0;
    }
    char size_line[32];
    struct iovec iov[3];
    int n = 0;
    if (res->chunked) {
        iov[n++] = (struct iovec){size_line,
                                  (size_t)snprintf(size_line, sizeof size_line, "%zx\r\n", len)};
    }
    iov[n++] = (struct iovec){(void *)data, len};
    if (res->chunked)
        iov[n++] = (struct iovec){"\r\n", 2};
    if (conn_write_now(res->conn, iov, n) != 0) {
        res->send_failed = true;
        return -1;
    }
    res->sent += len;
    return 0;
}

int hearth_res_sendfile(hearth_res *res, int fd, int64_t offset, size_t len)
{
    if (!res->started || res->aborted || res->send_failed || offset < 0)
        return -1;
    if (res->no_body || len == 0)
        return 0;
    if (res->length >= 0 && len > (uint64_t)res->length - res->sent)
        len = (size_t)((uint64_t)res->length - res->sent);
    char size_line[32];
    if (res->chunked) {
        struct iovec iov = {size_line,
                            (size_t)snprintf(size_line, sizeof size_line, "%zx\r\n", len)};
        if (conn_write_now(res->conn, &iov, 1) != 0)
            goto failed;
    }
    if (conn_sendfile_now(res->conn, fd, offset, len) != 0)
        goto failed;
    if (res->chunked) {
        struct iovec iov = {"\r\n", 2};
        if (conn_write_now(res->conn, &iov, 1) != 0)
            goto failed;
    }
    res->sent += len;
    return 0;
failed:
    res->send_failed = true;
    return -1;
}

void hearth_res_abort(hearth_res *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record_why(res, fmt, ap);
    va_end(ap);
    res->aborted = true;
}

int response_stream_end(hearth_res *res)
{
    if (res->aborted || res->send_failed)
        return -1;
    if (res->length >= 0 && res->sent < (uint64_t)res->length) {
        snprintf(res->fail, sizeof res->fail,
                 "the body ended after %" PRIu64 " of the %lld bytes its Content-Length declared",
                 res->sent, (long long)res->length);
        return -1;
    }
    /* whatever is still in the connection's output (the head of an empty body, the last
     * chunk) goes out with the event loop's ordinary writes */
    if (res->chunked && buf_append_str(conn_output(res->conn), "0\r\n\r\n") != 0)
        return -1;
    return 0;
}

/* ---- Conveniences (ABI 1.1) ---- */

int hearth_res_json_new(hearth_res *res, int status, json_t *json)
{
    if (!json)
        return -1;
    int rc = hearth_res_json(res, status, json);
    json_decref(json);
    return rc;
}

int hearth_res_error(hearth_res *res, int status, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (hearth_res_json_new(res, status, json_pack("{s:s}", "error", message)) != 0)
        return hearth_res_fail(res, "cannot build the error answer for %d %s", status, message);
    return HEARTH_OK;
}

/* RFC 6265 cookie-octet: visible ASCII but for DQUOTE, comma, semicolon and backslash. */
static bool cookie_text(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == ',' || *p == ';' || *p == '\\')
            return false;
    return true;
}

static bool cookie_attrs_ok(const hearth_cookie *a)
{
    if ((a->path && !cookie_text(a->path)) || (a->domain && !cookie_text(a->domain)))
        return false;
    return !a->same_site || strcmp(a->same_site, "Strict") == 0 ||
           strcmp(a->same_site, "Lax") == 0 || strcmp(a->same_site, "None") == 0;
}

int hearth_res_cookie(hearth_res *res, const char *name, const char *value,
                      const hearth_cookie *attrs)
{
    static const hearth_cookie none = {0};
    const hearth_cookie *a = attrs ? attrs : &none;
    if (!name || !*name || !value || !cookie_text(value) || !cookie_attrs_ok(a))
        return -1;
    for (const char *p = name; *p; p++)
        if (!http_is_tchar((unsigned char)*p))
            return -1;
    buf line;
    buf_init(&line, 8192);
    int rc = buf_printf(&line, "%s=%s", name, value) < 0;
    if (a->max_age > 0)
        rc |= buf_printf(&line, "; Max-Age=%lld", (long long)a->max_age) < 0;
    else if (a->max_age < 0) /* deleting: Expires too, for clients that predate Max-Age */
        rc |= buf_append_str(&line, "; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0") < 0;
    if (a->domain)
        rc |= buf_printf(&line, "; Domain=%s", a->domain) < 0;
    if (a->path)
        rc |= buf_printf(&line, "; Path=%s", a->path) < 0;
    if (a->secure)
        rc |= buf_append_str(&line, "; Secure") < 0;
    if (a->http_only)
        rc |= buf_append_str(&line, "; HttpOnly") < 0;
    if (a->same_site)
        rc |= buf_printf(&line, "; SameSite=%s", a->same_site) < 0;
    rc |= buf_append(&line, "", 1) < 0;
    if (!rc)
        rc = hearth_res_header(res, "Set-Cookie", buf_head(&line));
    buf_free(&line);
    return rc ? -1 : 0;
}
