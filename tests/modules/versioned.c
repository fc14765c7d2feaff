/* Test module built twice (APP_VERSION=1 and 2): every SDK call the end-to-end tests check,
 * and a body that says which version answered, for the reload tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hearth/app.h>

#ifndef APP_VERSION
#define APP_VERSION 1
#endif

static int root(hearth_req *req, hearth_res *res)
{
    (void)req;
    return hearth_res_printf(res, "v%d\n", APP_VERSION);
}

static int hello(hearth_req *req, hearth_res *res)
{
    return hearth_res_printf(res, "hello, %s (v%d)\n", hearth_req_param(req, "name"), APP_VERSION);
}

static int item_get(hearth_req *req, hearth_res *res)
{
    return hearth_res_printf(res, "item %s\n", hearth_req_param(req, "id"));
}

static int item_delete(hearth_req *req, hearth_res *res)
{
    hearth_res_status(res, 204);
    (void)req;
    return HEARTH_OK;
}

static int item_literal(hearth_req *req, hearth_res *res)
{
    (void)req;
    return hearth_res_puts(res, "the new item form\n");
}

static int echo(hearth_req *req, hearth_res *res)
{
    size_t len;
    const char *body = hearth_req_body(req, &len);
    char n[32];
    snprintf(n, sizeof n, "%zu", len);
    hearth_res_header(res, "X-Body-Length", n);
    const char *ct = hearth_req_header(req, "content-type");
    if (ct)
        hearth_res_header(res, "Content-Type", ct);
    return hearth_res_write(res, body, len);
}

static int files(hearth_req *req, hearth_res *res)
{
    return hearth_res_printf(res, "path=%s\n", hearth_req_param(req, "path"));
}

static int query(hearth_req *req, hearth_res *res)
{
    const char *a = hearth_req_query(req, "a"), *b = hearth_req_query(req, "b");
    return hearth_res_printf(res, "a=%s b=%s\n", a ? a : "(none)", b ? b : "(none)");
}

static int json_in(hearth_req *req, hearth_res *res)
{
    json_t *in = hearth_req_json(req);
    if (!in || !json_is_object(in)) {
        hearth_res_status(res, 400);
        return hearth_res_puts(res, "want a JSON object\n");
    }
    json_t *out = json_pack("{s:i, s:O}", "keys", (int)json_object_size(in), "echo", in);
    int rc = hearth_res_json(res, 200, out);
    json_decref(out);
    return rc;
}

static int form(hearth_req *req, hearth_res *res)
{
    const char *name = hearth_req_form(req, "name");
    return hearth_res_printf(res, "name=%s\n", name ? name : "(none)");
}

static int cookie(hearth_req *req, hearth_res *res)
{
    const char *s = hearth_req_cookie(req, "session");
    hearth_res_header(res, "Set-Cookie", "seen=1; HttpOnly");
    return hearth_res_printf(res, "session=%s\n", s ? s : "(none)");
}

static int client(hearth_req *req, hearth_res *res)
{
    return hearth_res_printf(res, "%s\n", hearth_req_client_addr(req));
}

static int sleep_ms(hearth_req *req, hearth_res *res)
{
    const char *ms = hearth_req_query(req, "ms");
    usleep((useconds_t)(ms ? atoi(ms) : 100) * 1000);
    return hearth_res_printf(res, "slept v%d\n", APP_VERSION);
}

static int fail(hearth_req *req, hearth_res *res)
{
    (void)req;
    return hearth_res_fail(res, "database is on fire (secret detail)");
}

static int pid(hearth_req *req, hearth_res *res)
{
    (void)req;
    return hearth_res_printf(res, "%d\n", (int)getpid());
}

static int redirect(hearth_req *req, hearth_res *res)
{
    (void)req;
    return hearth_res_redirect(res, 303, "/");
}

static int bad_header(hearth_req *req, hearth_res *res)
{
    (void)req;
    int refused = hearth_res_header(res, "X-Evil", "a\r\nSet-Cookie: x=1") != 0 &&
                  hearth_res_header(res, "Content-Length", "5") != 0;
    return hearth_res_printf(res, "refused=%d\n", refused);
}

/* Same name as a function inside the appserver: it must stay this module's own. */
int buf_init(void);
int buf_init(void)
{
    return 42;
}

static int own_symbol(hearth_req *req, hearth_res *res)
{
    (void)req;
    return hearth_res_printf(res, "%d\n", buf_init());
}

static const hearth_route routes[] = {
    {"GET", "/own-symbol", own_symbol},
    {"GET", "/", root},
    {"GET", "/hello/:name", hello},
    {"GET", "/items/new", item_literal},
    {"GET", "/items/:id", item_get},
    {"DELETE", "/items/:id", item_delete},
    {"POST", "/echo", echo},
    {"PUT", "/echo", echo},
    {"GET", "/files/*path", files},
    {"GET", "/query", query},
    {"POST", "/json", json_in},
    {"POST", "/form", form},
    {"GET", "/cookie", cookie},
    {"GET", "/client", client},
    {"GET", "/sleep", sleep_ms},
    {"GET", "/fail", fail},
    {"GET", "/pid", pid},
    {"GET", "/redirect", redirect},
    {"GET", "/bad-header", bad_header},
    {NULL, NULL, NULL},
};

HEARTH_MODULE = {
    HEARTH_MODULE_HEAD,
    .name = "versioned",
    .version = APP_VERSION == 1 ? "1" : "2",
    .routes = routes,
};
