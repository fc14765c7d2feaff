/* libFuzzer target for the appserver's request side: whatever the HTTP parser accepts goes
 * through request_build, every lazy decoder (query, form, cookies, JSON) and the router. */
#include <string.h>

#include "appserver/exchange.h"

static int h(hearth_req *req, hearth_res *res)
{
    (void)req;
    (void)res;
    return 0;
}

static const hearth_route routes[] = {
    {"GET", "/", h},          {"GET", "/a/:x", h},     {"POST", "/a/:x/b", h},
    {"*", "/files/*path", h}, {"DELETE", "/a/lit", h}, {NULL, NULL, NULL},
};
static const hearth_module desc = {HEARTH_MODULE_HEAD, .name = "fuzz", .routes = routes};

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static router r;
    static app_module m = {.path = "fuzz.so", .desc = &desc};
    static int ready;
    if (!ready) {
        char err[128];
        router_init(&r);
        router_add_module(&r, &m, err, sizeof err);
        ready = 1;
    }
    http_limits lim;
    http_header headers[64];
    http_parser p;
    http_limits_default(&lim);
    http_parser_init(&p, HTTP_KIND_REQUEST, &lim, headers, 64);
    const char *buf = (const char *)data;
    if (http_parse_head(&p, buf, size) != HTTP_PARSE_DONE)
        return 0;
    arena a;
    arena_init(&a);
    hearth_req req = {0};
    route_path path;
    const char *body = buf + p.head_len;
    char *copy = arena_strndup(&a, body, size - p.head_len); /* bodies are NUL-terminated */
    if (copy && request_build(&req, &a, &p, buf, copy, size - p.head_len, "unix", &path) == 0) {
        hearth_req_query(&req, "a");
        hearth_req_form(&req, "a");
        hearth_req_cookie(&req, "a");
        hearth_req_json(&req);
        route_match match;
        router_match(&r, req.method, &path, &match);
    }
    request_done(&req);
    arena_free(&a);
    return 0;
}
