/* hearth_req: built from the parser's spans, decoded lazily where it costs (query, form,
 * cookies, JSON), and the request half of the public SDK. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "appserver/exchange.h"
#include "shared/percent.h"

/* Percent-decode s[0,n) into the arena. NULL on a bad escape or a decoded NUL, which no
 * handler should ever have to think about. */
static char *decode(arena *a, const char *s, size_t n, bool plus_is_space)
{
    char *out = arena_alloc(a, n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int v = percent_escape(s + i, n - i);
            if (v < 0)
                return NULL;
            c = (char)v;
            if (c == '\0')
                return NULL;
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
}

static bool is_dot_segment(const char *seg)
{
    return strcmp(seg, ".") == 0 || strcmp(seg, "..") == 0;
}

/* Split the raw path into decoded segments for the router; refuse dot segments so that no
 * handler serving files can be walked out of its directory. */
static int split_path(arena *a, const char *raw, size_t n, route_path *rp)
{
    size_t i = 1; /* raw[0] == '/' */
    rp->seg_count = 0;
    for (;;) {
        size_t start = i;
        while (i < n && raw[i] != '/')
            i++;
        if (rp->seg_count == ROUTER_MAX_SEGMENTS)
            return -1;
        const char *seg = decode(a, raw + start, i - start, false);
        const char *rest = decode(a, raw + start, n - start, false);
        if (!seg || !rest || is_dot_segment(seg))
            return -1;
        rp->segs[rp->seg_count] = seg;
        rp->rest[rp->seg_count] = rest;
        rp->seg_count++;
        if (i >= n)
            break;
        i++;
    }
    rp->rest[rp->seg_count] = "";
    return 0;
}

/* origin-form "/p?q", or absolute-form "http://host/p?q" (a proxy may send it). */
static int split_target(hearth_req *req, const char *t, size_t n, route_path *rp)
{
    const char *p = t;
    if (n > 0 && t[0] != '/') {
        const char *scheme = memmem(t, n, "://", 3);
        if (!scheme)
            return -1;
        p = memchr(scheme + 3, '/', n - (size_t)(scheme + 3 - t));
        if (!p)
            return -1;
    }
    size_t plen = n - (size_t)(p - t);
    const char *q = memchr(p, '?', plen);
    size_t path_len = q ? (size_t)(q - p) : plen;
    req->query = q ? arena_strndup(req->arena, q + 1, plen - path_len - 1) : "";
    req->path = decode(req->arena, p, path_len, false);
    if (!req->query || !req->path)
        return -1;
    return split_path(req->arena, p, path_len, rp);
}

static int copy_headers(hearth_req *req, const http_parser *p, const char *head)
{
    req->header_count = p->header_count;
    req->headers = arena_alloc(req->arena, (p->header_count + 1) * sizeof *req->headers);
    if (!req->headers)
        return -1;
    for (size_t i = 0; i < p->header_count; i++) {
        const http_header *h = &p->headers[i];
        req->headers[i].name = arena_strndup(req->arena, head + h->name.off, h->name.len);
        req->headers[i].value = arena_strndup(req->arena, head + h->value.off, h->value.len);
        if (!req->headers[i].name || !req->headers[i].value)
            return -1;
    }
    return 0;
}

/* What the edge forwards is believed only from where an edge connects from: the unix socket,
 * or 127.0.0.1 / ::1 (not the rest of 127/8, which other local services may bind to). Anyone
 * else could name any address or claim https. */
static bool trusted_peer(const char *peer)
{
    return strcmp(peer, "unix") == 0 || strcmp(peer, "127.0.0.1") == 0 ||
           strcmp(peer, "::1") == 0 || strcmp(peer, "::ffff:127.0.0.1") == 0;
}

static const char *forwarded_scheme(const hearth_req *req, const char *peer)
{
    const char *proto = hearth_req_header(req, "X-Forwarded-Proto");
    if (proto && trusted_peer(peer) && strcasecmp(proto, "https") == 0)
        return "https";
    return "http";
}

static const char *client_addr(const hearth_req *req, const char *peer)
{
    if (!trusted_peer(peer))
        return peer;
    const char *real = hearth_req_header(req, "X-Real-IP");
    if (real && *real)
        return real;
    const char *fwd = hearth_req_header(req, "X-Forwarded-For");
    if (fwd && *fwd) {
        const char *last = strrchr(fwd, ',');
        last = last ? last + 1 : fwd;
        while (*last == ' ')
            last++;
        return last;
    }
    return peer;
}

int request_build(hearth_req *req, arena *a, const http_parser *p, const char *head,
                  const char *body, size_t body_len, const char *peer, route_path *path)
{
    memset(req, 0, sizeof *req);
    req->arena = a;
    req->method = arena_strndup(a, head + p->method.off, p->method.len);
    req->target = arena_strndup(a, head + p->target.off, p->target.len);
    if (!req->method || !req->target || copy_headers(req, p, head) != 0)
        return 500;
    req->body = body ? body : "";
    req->body_len = body_len;
    req->body_complete = true;
    req->version_minor = p->version_minor;
    req->chunked = p->body_kind == HTTP_BODY_CHUNKED;
    req->client_addr = client_addr(req, peer);
    req->scheme = forwarded_scheme(req, peer);
    if (split_target(req, head + p->target.off, p->target.len, path) != 0)
        return 400;
    return 0;
}

void request_done(hearth_req *req)
{
    if (req->json)
        json_decref(req->json);
    req->json = NULL;
}

/* "k=v&k2=v2" (sep '&') or "k=v; k2=v2" (sep ';', cookies) into pairs. Pairs that do not
 * decode are skipped: one bad argument should not hide the others. */
static void parse_pairs(arena *a, const char *s, size_t n, char sep, bool plus, kv_list *out)
{
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += s[i] == sep;
    out->items = arena_alloc(a, cap * sizeof *out->items);
    out->count = 0;
    out->parsed = true;
    if (!out->items)
        return;
    size_t i = 0;
    while (i < n) {
        while (i < n && s[i] == ' ')
            i++;
        size_t start = i;
        while (i < n && s[i] != sep)
            i++;
        const char *eq = memchr(s + start, '=', i - start);
        size_t klen = eq ? (size_t)(eq - (s + start)) : i - start;
        const char *v = eq ? eq + 1 : s + i;
        char *key = decode(a, s + start, klen, plus);
        char *val = decode(a, v, (size_t)(s + i - v), plus);
        if (key && val && klen > 0 && out->count < cap)
            out->items[out->count++] = (kv_pair){key, val};
        i++;
    }
}

static const char *pairs_find(const kv_list *l, const char *name)
{
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->items[i].name, name) == 0)
            return l->items[i].value;
    return NULL;
}

const char *hearth_req_method(const hearth_req *req)
{
    return req->method;
}

const char *hearth_req_path(const hearth_req *req)
{
    return req->path;
}

const char *hearth_req_target(const hearth_req *req)
{
    return req->target;
}

const char *hearth_req_query_string(const hearth_req *req)
{
    return req->query;
}

const char *hearth_req_param(const hearth_req *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->param_count; i++)
        if (req->params[i].name_len == n && memcmp(req->params[i].name, name, n) == 0)
            return req->params[i].value;
    return NULL;
}

const char *hearth_req_query(const hearth_req *req, const char *name)
{
    hearth_req *r = (hearth_req *)req; /* lazily parsed cache; the caller sees no change */
    if (!r->args.parsed)
        parse_pairs(r->arena, r->query, strlen(r->query), '&', true, &r->args);
    return pairs_find(&r->args, name);
}

const char *hearth_req_header(const hearth_req *req, const char *name)
{
    for (size_t i = 0; i < req->header_count; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

size_t hearth_req_header_count(const hearth_req *req)
{
    return req->header_count;
}

int hearth_req_header_at(const hearth_req *req, size_t i, const char **name, const char **value)
{
    if (i >= req->header_count)
        return -1;
    *name = req->headers[i].name;
    *value = req->headers[i].value;
    return 0;
}

const char *hearth_req_cookie(const hearth_req *req, const char *name)
{
    hearth_req *r = (hearth_req *)req;
    if (!r->cookies.parsed) {
        const char *c = hearth_req_header(req, "Cookie");
        c = c ? c : "";
        parse_pairs(r->arena, c, strlen(c), ';', false, &r->cookies);
    }
    return pairs_find(&r->cookies, name);
}

/* A streaming request whose body is still partly on the socket reads the rest first. */
static void complete_body(const hearth_req *req)
{
    hearth_req *r = (hearth_req *)req;
    if (r->body_complete || !r->reader)
        return;
    r->body_complete = true;
    if (r->reader->read_all(r->conn, &r->body, &r->body_len) != 0) {
        r->body = "";
        r->body_len = 0;
    }
}

long hearth_req_read(hearth_req *req, void *dst, size_t n)
{
    if (req->reader)
        return req->reader->read(req->conn, dst, n);
    /* the whole body is in memory: hand it out from where the last read stopped */
    size_t left = req->body_len - req->body_read;
    n = n < left ? n : left;
    memcpy(dst, req->body + req->body_read, n);
    req->body_read += n;
    return (long)n;
}

int hearth_req_local_port(const hearth_req *req)
{
    return req->local_port;
}

int hearth_req_http_minor(const hearth_req *req)
{
    return req->version_minor;
}

int hearth_req_body_chunked(const hearth_req *req)
{
    return req->chunked;
}

const char *hearth_req_scheme(const hearth_req *req)
{
    return req->scheme;
}

const char *hearth_req_body(const hearth_req *req, size_t *len)
{
    complete_body(req);
    if (len)
        *len = req->body_len;
    return req->body;
}

static bool content_type_is(const hearth_req *req, const char *type)
{
    const char *ct = hearth_req_header(req, "Content-Type");
    size_t n = strlen(type);
    return ct && strncasecmp(ct, type, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

const char *hearth_req_form(const hearth_req *req, const char *name)
{
    hearth_req *r = (hearth_req *)req;
    if (!r->form.parsed) {
        complete_body(req);
        if (content_type_is(req, "application/x-www-form-urlencoded"))
            parse_pairs(r->arena, r->body, r->body_len, '&', true, &r->form);
        r->form.parsed = true;
    }
    return pairs_find(&r->form, name);
}

json_t *hearth_req_json(const hearth_req *req)
{
    hearth_req *r = (hearth_req *)req;
    if (!r->json_parsed) {
        r->json_parsed = true;
        complete_body(req);
        if (r->body_len > 0)
            r->json = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, NULL);
    }
    return r->json;
}

const char *hearth_req_client_addr(const hearth_req *req)
{
    return req->client_addr;
}

void *hearth_req_module_data(const hearth_req *req)
{
    return req->module_data;
}

/* ---- Conveniences (ABI 1.1) ---- */

static int parse_int64(const char *s, int64_t *out)
{
    if (!s)
        return -1;
    const char *digits = *s == '-' ? s + 1 : s;
    if (*digits < '0' || *digits > '9')
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

int hearth_req_param_int(const hearth_req *req, const char *name, int64_t *out)
{
    return parse_int64(hearth_req_param(req, name), out);
}

int hearth_req_query_int(const hearth_req *req, const char *name, int64_t *out)
{
    return parse_int64(hearth_req_query(req, name), out);
}

void *hearth_req_alloc(hearth_req *req, size_t size)
{
    if (size > ((size_t)1 << 40))
        return NULL; /* no request needs that; rounding it up could wrap */
    return arena_alloc(req->arena, size);
}

char *hearth_req_strdup(hearth_req *req, const char *s)
{
    return s ? arena_strndup(req->arena, s, strlen(s)) : NULL;
}
