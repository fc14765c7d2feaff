/* hearth_res: the response half of the public SDK, and its serialisation. The server owns
 * framing (Content-Length, Connection), so a handler can never desynchronise a connection. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "exchange.h"
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

int response_serialize(const hearth_res *res, buf *out, int version_minor, bool keep_alive,
                       bool head_only)
{
    int rc = buf_printf(out, "HTTP/1.1 %d %s\r\nServer: hearth\r\nDate: %s\r\n", res->status,
                        http_status_reason(res->status), http_date_now()) < 0;
    if (res->content_type[0] && status_has_body(res->status))
        rc |= buf_printf(out, "Content-Type: %s\r\n", res->content_type) < 0;
    rc |= buf_append(out, buf_head(&res->headers), buf_used(&res->headers)) < 0;
    if (status_has_body(res->status))
        rc |= buf_printf(out, "Content-Length: %zu\r\n", buf_used(&res->body)) < 0;
    if (!keep_alive)
        rc |= buf_append_str(out, "Connection: close\r\n") < 0;
    else if (version_minor == 0)
        rc |= buf_append_str(out, "Connection: keep-alive\r\n") < 0;
    rc |= buf_append_str(out, "\r\n") < 0;
    if (!head_only && status_has_body(res->status))
        rc |= buf_append(out, buf_head(&res->body), buf_used(&res->body)) < 0;
    return rc ? -1 : 0;
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

int hearth_res_fail(hearth_res *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->fail, sizeof res->fail, fmt, ap);
    va_end(ap);
    res->failed = true;
    return HEARTH_ERROR;
}
