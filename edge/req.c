/* The request/response layer: routing a request to its handler, what a handler reads of the
 * request, and the response writer it answers through, all above the protocol's framing. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "shared/http_status.h"
#include "edge/compress.h"
#include "edge/req.h"

/* ---- the request ---- */

const char *edge_req_header(const edge_req *r, const char *name, size_t *len)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < r->header_count; i++) {
        const http_header *h = &r->headers[i];
        if (h->name.len == nlen && strncasecmp(r->head + h->name.off, name, nlen) == 0) {
            *len = h->value.len;
            return r->head + h->value.off;
        }
    }
    return NULL;
}

bool edge_req_method_is(const edge_req *r, const char *method)
{
    return http_span_eq(r->head, r->method, method);
}

const char *edge_req_info(const edge_req *r, int idx)
{
    const char *p = r->info.data;
    if (!p || r->info.len == 0)
        return "-";
    for (int i = 0; i < idx; i++) {
        p += strlen(p) + 1;
        if (p >= r->info.data + r->info.len)
            return "-";
    }
    return *p ? p : "-";
}

static void save_bytes(edge_req *r, const char *p, size_t n)
{
    buf_append(&r->info, p, n);
    buf_append(&r->info, "", 1);
}

static void save_header(edge_req *r, const char *name)
{
    size_t len = 0;
    const char *v = edge_req_header(r, name, &len);
    save_bytes(r, v ? v : "", len);
}

/* Kept past the head's lifetime for the access log: method, target, host, referer, agent. */
static void save_info(edge_req *r)
{
    buf_reset(&r->info);
    save_bytes(r, r->head + r->method.off, r->method.len);
    save_bytes(r, r->head + r->target.off, r->target.len);
    save_header(r, "Host");
    save_header(r, "Referer");
    save_header(r, "User-Agent");
}

static edge_site *pick_site(edge_req *r)
{
    edge_gen *g = r->gen;
    size_t len = 0;
    const char *host = edge_req_header(r, "Host", &len);
    edge_site *s = host ? edge_gen_find_site(g, host, len) : NULL;
    /* An unknown Host on TLS gets the site whose certificate the handshake chose. */
    for (size_t i = 0; !s && r->sni_ctx && i < g->site_count; i++)
        if (g->sites[i].ctx == r->sni_ctx)
            s = &g->sites[i];
    if (!s && g->site_count)
        s = &g->sites[0];
    return s;
}

void edge_req_dispatch(edge_req *r)
{
    r->status = 0;
    r->body_sent = 0;
    r->head_method = edge_req_method_is(r, "HEAD");
    save_info(r);
    r->site = pick_site(r);
    edge_client_resolve(r);
    edge_compress_request(r);
    /* A body nobody reads leaves the connection out of step: the protocol closes it after the
     * response (r->body_done stays false). */
    if (!r->tls && edge_redirect_handle(r))
        return;
    if (!r->site) {
        r->keep_alive = false;
        edge_resp_text(r, 404, "no such site\n");
    } else if (edge_limits_request(r) || edge_static_handle(r)) {
        return;
    } else if (r->site->upstream_count > 0) {
        edge_proxy_start(r);
    } else {
        edge_resp_text(r, 404, "not found\n");
    }
}

void edge_req_refuse(edge_req *r, int status, const char *reason)
{
    buf_reset(&r->info);
    r->keep_alive = false;
    r->head_method = false;
    r->zflags = 0;
    r->body_sent = 0;
    r->site = r->gen->site_count ? &r->gen->sites[0] : NULL;
    char body[128];
    snprintf(body, sizeof(body), "%s\n", reason);
    edge_resp_text(r, status, body);
}

static void drop_trailers(edge_req *r)
{
    buf_reset(&r->trailers);
    r->trailer_count = 0;
}

void edge_req_end(edge_req *r)
{
    edge_access_write(r);
    r->client = NULL;
    r->handler = NULL;
    r->site = NULL;
    r->status = 0;
    r->upstream = NULL;
    r->upstream_tries = 0;
    r->body_reading = r->body_wanted = r->wants_room = r->has_hsts = false;
    r->zflags = 0;
    edge_compress_drop(r);
    drop_trailers(r);
    buf_reset(&r->info);
}

void edge_req_closed(edge_req *r)
{
    const edge_handler *h = r->handler;
    r->handler = NULL;
    r->body_wanted = r->wants_room = false;
    edge_compress_drop(r);
    drop_trailers(r);
    if (h && h->closed)
        h->closed(r);
}

void edge_req_take(edge_req *r, const edge_handler *h)
{
    r->handler = h;
}

void edge_req_wake(edge_req *r)
{
    r->proto->wake(r);
}

void edge_req_body_start(edge_req *r)
{
    r->body_reading = true;
    r->proto->body_start(r);
}

edge_body_result edge_req_body_read(edge_req *r, const char **data, size_t *len)
{
    return r->proto->body_read(r, data, len);
}

/* ---- the response ---- */

void edge_resp_start(edge_req *r, int status)
{
    r->status = status;
    if (r->zflags)
        edge_compress_head_start(r);
    r->proto->head_start(r, status, NULL, 0, true);
}

void edge_resp_start_relayed(edge_req *r, int status, const char *reason, size_t reason_len)
{
    r->status = status;
    if (r->zflags)
        edge_compress_head_start(r);
    r->proto->head_start(r, status, reason, reason_len, false);
}

void edge_resp_header_n(edge_req *r, const char *name, size_t name_len, const char *value,
                        size_t value_len)
{
    if (name_len == 25 && strncasecmp(name, "strict-transport-security", 25) == 0)
        r->has_hsts = true;
    if (r->zflags && edge_compress_field(r, name, name_len, value, value_len))
        return;
    r->proto->head_field(r, name, name_len, value, value_len);
}

void edge_resp_header(edge_req *r, const char *name, const char *value)
{
    edge_resp_header_n(r, name, strlen(name), value, strlen(value));
}

void edge_resp_headerf(edge_req *r, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (r->zflags) {
        /* the filter sees every field of a head it may change */
        buf value;
        buf_init(&value, 0);
        buf_vprintf(&value, fmt, ap);
        edge_resp_header_n(r, name, strlen(name), buf_used(&value) ? buf_head(&value) : "",
                           buf_used(&value));
        buf_free(&value);
    } else {
        r->proto->head_fieldv(r, name, fmt, ap);
    }
    va_end(ap);
}

void edge_resp_head_done(edge_req *r, int64_t length)
{
    if (r->tls && r->site && r->site->hsts && !r->has_hsts)
        edge_resp_header(r, "Strict-Transport-Security", r->site->hsts);
    if (r->zflags)
        edge_compress_head_end(r, &length);
    r->proto->head_end(r, length);
}

void edge_resp_write(edge_req *r, const void *p, size_t n)
{
    if (r->head_method || n == 0)
        return;
    if (r->encoder) {
        edge_compress_write(r, p, n);
        return;
    }
    r->body_sent += n;
    r->proto->write(r, p, n);
}

int64_t edge_resp_send_file(edge_req *r, int fd, off_t off, uint64_t left)
{
    if (r->encoder)
        return edge_compress_send_file(r, fd, off, left);
    int64_t n = r->proto->send_file(r, fd, off, left);
    if (n > 0)
        r->body_sent += (uint64_t)n;
    return n;
}

int edge_resp_flush(edge_req *r)
{
    if (r->encoder && edge_compress_flush(r) < 0)
        return -1;
    return r->proto->flush(r);
}

size_t edge_resp_queued(edge_req *r)
{
    return r->proto->queued(r);
}

bool edge_resp_writable(edge_req *r)
{
    return r->proto->queued(r) < EDGE_HIGH_WATER;
}

/* What no trailer may carry (RFC 9110 6.5.1): what frames the message or is hop-by-hop, routes
 * it, authenticates, modifies the request, controls the response or describes the content, all
 * needed before the body. A recipient that merged one into the head would be misled. */
static bool forbidden_trailer(const char *name, size_t len)
{
    static const char names[] =
        "transfer-encoding, content-length, trailer, te, connection, keep-alive, "
        "proxy-connection, upgrade, host, authorization, proxy-authorization, www-authenticate, "
        "proxy-authenticate, cookie, set-cookie, expect, max-forwards, range, if-match, "
        "if-none-match, if-modified-since, if-unmodified-since, if-range, cache-control, pragma, "
        "age, date, expires, location, retry-after, vary, content-encoding, content-type, "
        "content-range, content-language, content-location, strict-transport-security, alt-svc";
    char token[32];
    if (len == 0 || name[0] == ':')
        return true;
    if (len >= sizeof(token))
        return false; /* longer than any of them */
    memcpy(token, name, len);
    token[len] = 0;
    return http_list_has_token(names, sizeof(names) - 1, token);
}

void edge_resp_trailer(edge_req *r, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
    if (forbidden_trailer(name, name_len) || r->head_method ||
        r->trailer_count >= (size_t)edge_w.cfg.edge.max_header_count)
        return;
    size_t n = name_len + value_len + 2;
    if (buf_used(&r->trailers) + n > edge_w.cfg.edge.max_header_size ||
        buf_reserve(&r->trailers, n) < 0)
        return;
    buf_append(&r->trailers, name, name_len);
    buf_append(&r->trailers, "", 1);
    buf_append(&r->trailers, value, value_len);
    buf_append(&r->trailers, "", 1);
    r->trailer_count++;
}

bool edge_resp_trailer_next(const edge_req *r, size_t *at, const char **name, size_t *name_len,
                            const char **value, size_t *value_len)
{
    if (*at >= buf_used(&r->trailers))
        return false;
    *name = buf_head(&r->trailers) + *at;
    *name_len = strlen(*name);
    *value = *name + *name_len + 1;
    *value_len = strlen(*value);
    *at += *name_len + *value_len + 2;
    return true;
}

void edge_resp_finish(edge_req *r)
{
    r->handler = NULL;
    r->body_wanted = r->wants_room = false;
    if (r->encoder && edge_compress_finish(r) < 0) {
        r->proto->abort(r); /* the compressed stream has no proper end */
        return;
    }
    r->proto->finish(r);
}

void edge_resp_abort(edge_req *r)
{
    edge_compress_drop(r);
    r->proto->abort(r);
}

void edge_resp_body(edge_req *r, const char *content_type, const char *body)
{
    size_t len = strlen(body);
    edge_resp_header(r, "Content-Type", content_type);
    edge_resp_head_done(r, (int64_t)len);
    edge_resp_write(r, body, len);
    edge_resp_finish(r);
}

void edge_resp_text(edge_req *r, int status, const char *body)
{
    edge_resp_start(r, status);
    edge_resp_body(r, "text/plain; charset=utf-8", body);
}
