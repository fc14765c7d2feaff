/* Unit tests for the appserver's router: pattern compilation, specificity, parameters,
 * wildcards, and 404 versus 405 with the Allow list. */
#include <string.h>

#include "appserver/router.h"
#include "tests/unit/check.h"

static int h_any(hearth_req *req, hearth_res *res)
{
    (void)req;
    (void)res;
    return 0;
}

static const hearth_route routes[] = {
    {"GET", "/", h_any},
    {"GET", "/notes", h_any},
    {"POST", "/notes", h_any},
    {"GET", "/notes/:id", h_any},
    {"GET", "/notes/new", h_any},
    {"DELETE", "/notes/:id", h_any},
    {"GET", "/files/*path", h_any},
    {"GET", "/files/special", h_any},
    {"*", "/any", h_any},
    {NULL, NULL, NULL},
};

static const hearth_module desc = {HEARTH_MODULE_HEAD, .name = "t", .routes = routes};

/* "/a/b" -> segments "a", "b" with their rests, as request.c builds them */
static void split(route_path *p, char *store, const char *path)
{
    strcpy(store, path + 1);
    p->seg_count = 0;
    char *s = store;
    const char *rest = path + 1;
    for (;;) {
        p->segs[p->seg_count] = s;
        p->rest[p->seg_count] = rest;
        p->seg_count++;
        char *slash = strchr(s, '/');
        if (!slash)
            break;
        *slash = '\0';
        rest += slash - s + 1;
        s = slash + 1;
    }
    p->rest[p->seg_count] = "";
}

static route_result match(router *r, const char *method, const char *path, route_match *m)
{
    static char store[256];
    route_path p;
    split(&p, store, path);
    return router_match(r, method, &p, m);
}

static const char *param(const route_match *m, const char *name)
{
    for (size_t i = 0; i < m->param_count; i++)
        if (m->params[i].name_len == strlen(name) &&
            memcmp(m->params[i].name, name, m->params[i].name_len) == 0)
            return m->params[i].value;
    return NULL;
}

static void test_matching(router *r)
{
    route_match m;
    CHECK(match(r, "GET", "/", &m) == ROUTE_FOUND && m.match->route == &routes[0]);
    CHECK(match(r, "POST", "/notes", &m) == ROUTE_FOUND && m.match->route == &routes[2]);
    CHECK(match(r, "GET", "/notes/42", &m) == ROUTE_FOUND && m.match->route == &routes[3]);
    CHECK_STR(param(&m, "id"), "42");
    /* the literal wins though declared after the parameter */
    CHECK(match(r, "GET", "/notes/new", &m) == ROUTE_FOUND && m.match->route == &routes[4]);
    CHECK(match(r, "HEAD", "/notes/7", &m) == ROUTE_FOUND && m.match->route == &routes[3]);
    CHECK(match(r, "GET", "/files/a/b/c", &m) == ROUTE_FOUND && m.match->route == &routes[6]);
    CHECK_STR(param(&m, "path"), "a/b/c");
    CHECK(match(r, "GET", "/files/special", &m) == ROUTE_FOUND && m.match->route == &routes[7]);
    CHECK(match(r, "GET", "/files", &m) == ROUTE_FOUND && m.match->route == &routes[6]);
    CHECK_STR(param(&m, "path"), "");
    CHECK(match(r, "PATCH", "/any", &m) == ROUTE_FOUND);
}

static void test_not_found_and_allow(router *r)
{
    route_match m;
    CHECK(match(r, "GET", "/nope", &m) == ROUTE_NOT_FOUND);
    CHECK(match(r, "GET", "/notes/", &m) == ROUTE_NOT_FOUND); /* :id needs a non-empty segment */
    CHECK(match(r, "GET", "/notes/1/x", &m) == ROUTE_NOT_FOUND);
    CHECK(match(r, "PUT", "/notes/1", &m) == ROUTE_BAD_METHOD);
    CHECK_STR(m.allow, "GET, HEAD, DELETE");
    CHECK(match(r, "DELETE", "/notes", &m) == ROUTE_BAD_METHOD);
    CHECK_STR(m.allow, "GET, HEAD, POST");
}

static void test_bad_patterns(void)
{
    static const char *bad[] = {"notes", "/a/:", "/a/*rest/b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hearth_route rs[] = {{"GET", bad[i], h_any}, {NULL, NULL, NULL}};
        hearth_module d = {HEARTH_MODULE_HEAD, .name = "bad", .routes = rs};
        app_module m = {.path = "bad.so", .desc = &d};
        router r;
        char err[256] = "";
        router_init(&r);
        CHECK_MSG(router_add_module(&r, &m, err, sizeof err) != 0, "%s accepted", bad[i]);
        CHECK(strstr(err, "bad.so") != NULL);
        router_free(&r);
    }
}

int main(void)
{
    app_module m = {.path = "t.so", .desc = &desc};
    router r;
    char err[256];
    router_init(&r);
    CHECK(router_add_module(&r, &m, err, sizeof err) == 0);
    test_matching(&r);
    test_not_found_and_allow(&r);
    test_bad_patterns();
    router_free(&r);
    return check_summary("appserver_router");
}
