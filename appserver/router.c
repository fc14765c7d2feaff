/* Route compilation and matching. Patterns are split once at load; a request is matched
 * against every route and the most specific match wins, so declaration order only breaks
 * ties between equally specific patterns. */
#include "appserver/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include "shared/http_parser.h"

void router_init(router *r)
{
    r->routes = NULL;
    r->count = 0;
}

void router_free(router *r)
{
    free(r->routes);
    router_init(r);
}

static int compile_pattern(compiled_route *cr, const char *pattern, char *err, size_t errlen)
{
    if (pattern[0] != '/') {
        snprintf(err, errlen, "route pattern '%s' does not start with '/'", pattern);
        return -1;
    }
    const char *p = pattern + 1;
    cr->seg_count = 0;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (cr->seg_count == ROUTER_MAX_SEGMENTS) {
            snprintf(err, errlen, "route pattern '%s' has too many segments", pattern);
            return -1;
        }
        route_seg *s = &cr->segs[cr->seg_count++];
        s->kind = SEG_LITERAL;
        s->text = p;
        s->len = len;
        if (len > 0 && (p[0] == ':' || p[0] == '*')) {
            s->kind = p[0] == ':' ? SEG_PARAM : SEG_WILDCARD;
            s->text = p + 1;
            s->len = len - 1;
            if (s->kind == SEG_PARAM && s->len == 0) {
                snprintf(err, errlen, "route pattern '%s': parameter without a name", pattern);
                return -1;
            }
            if (s->kind == SEG_WILDCARD && end) {
                snprintf(err, errlen, "route pattern '%s': '*' only as the last segment", pattern);
                return -1;
            }
        }
        if (!end)
            return 0;
        p = end + 1;
    }
}

/* "*", or a method as requests spell it: an upper-case token. "get" would never match. */
static bool valid_method(const char *method)
{
    if (strcmp(method, "*") == 0)
        return true;
    for (const char *p = method; *p; p++)
        if (!http_is_tchar((unsigned char)*p) || (*p >= 'a' && *p <= 'z'))
            return false;
    return *method != '\0';
}

int router_add_module(router *r, app_module *m, char *err, size_t errlen)
{
    size_t n = 0;
    while (m->desc->routes[n].pattern)
        n++;
    compiled_route *grown = realloc(r->routes, (r->count + n) * sizeof *grown);
    if (!grown && r->count + n > 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->routes = grown;
    for (size_t i = 0; i < n; i++) {
        const hearth_route *hr = &m->desc->routes[i];
        compiled_route *cr = &r->routes[r->count];
        cr->route = hr;
        cr->module = m;
        char why[200];
        if (!hr->method || !hr->handler || compile_pattern(cr, hr->pattern, why, sizeof why)) {
            snprintf(err, errlen, "%s: route %zu: %s", m->path, i,
                     (!hr->method || !hr->handler) ? "no method or handler" : why);
            return -1;
        }
        if (!valid_method(hr->method)) {
            snprintf(err, errlen,
                     "%s: route %zu (%s %s): method '%s' is not \"*\" or an upper-case token "
                     "like \"GET\"; it would never match",
                     m->path, i, hr->method, hr->pattern, hr->method);
            return -1;
        }
        r->count++;
    }
    return 0;
}

/* Matches path against cr; fills params and a specificity score (higher = more specific).
 * Literal segments count most, then parameters; a wildcard adds nothing. */
static int match_path(const compiled_route *cr, const route_path *path, route_match *out,
                      long *score)
{
    size_t np = 0;
    long sc = 0;
    for (size_t i = 0; i < cr->seg_count; i++) {
        const route_seg *s = &cr->segs[i];
        if (s->kind == SEG_WILDCARD) {
            if (np < ROUTER_MAX_PARAMS && s->len > 0)
                out->params[np++] = (route_param){s->text, s->len, path->rest[i]};
            out->param_count = np;
            *score = sc;
            return 1;
        }
        if (i >= path->seg_count)
            return 0;
        const char *seg = path->segs[i];
        if (s->kind == SEG_LITERAL) {
            if (strlen(seg) != s->len || memcmp(seg, s->text, s->len) != 0)
                return 0;
            sc = sc * 3 + 2;
        } else {
            if (seg[0] == '\0')
                return 0;
            if (np < ROUTER_MAX_PARAMS)
                out->params[np++] = (route_param){s->text, s->len, seg};
            sc = sc * 3 + 1;
        }
    }
    if (cr->seg_count != path->seg_count)
        return 0;
    out->param_count = np;
    *score = sc + 1; /* a full match beats a wildcard with the same prefix */
    return 1;
}

static int method_matches(const char *want, const char *method)
{
    return strcmp(want, "*") == 0 || strcmp(want, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(want, "GET") == 0);
}

static void allow_add(char *allow, size_t cap, const char *method)
{
    size_t mlen = strlen(method);
    /* skip duplicates: the list is short, a substring scan is enough */
    for (const char *p = allow; (p = strstr(p, method)); p += mlen)
        if ((p == allow || p[-1] == ' ') && (p[mlen] == ',' || p[mlen] == '\0'))
            return;
    size_t used = strlen(allow);
    snprintf(allow + used, cap - used, "%s%s", used ? ", " : "", method);
}

route_result router_match(const router *r, const char *method, const route_path *path,
                          route_match *out)
{
    long best = -1;
    int path_seen = 0;
    route_match cand;
    out->allow[0] = '\0';
    out->match = NULL;
    for (size_t i = 0; i < r->count; i++) {
        long score;
        if (!match_path(&r->routes[i], path, &cand, &score))
            continue;
        path_seen = 1;
        const char *want = r->routes[i].route->method;
        if (!method_matches(want, method)) {
            allow_add(out->allow, sizeof out->allow, want);
            if (strcmp(want, "GET") == 0)
                allow_add(out->allow, sizeof out->allow, "HEAD");
            continue;
        }
        if (score > best) {
            best = score;
            *out = (route_match){.match = &r->routes[i], .param_count = cand.param_count};
            memcpy(out->params, cand.params, cand.param_count * sizeof cand.params[0]);
        }
    }
    if (out->match)
        return ROUTE_FOUND;
    return path_seen ? ROUTE_BAD_METHOD : ROUTE_NOT_FOUND;
}
