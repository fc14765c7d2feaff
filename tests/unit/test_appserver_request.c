/* Unit tests for the appserver's request side: target splitting and percent-decoding, refusal
 * of dot segments and bad escapes, query/form/cookie lookups, client address. */
#include <string.h>

#include "appserver/exchange.h"
#include "tests/unit/check.h"

typedef struct {
    http_parser p;
    http_header headers[32];
    hearth_req req;
    route_path path;
    arena a;
} parsed;

/* 0 on success, else the status request_build refused with (-1: the head did not parse). */
static int build(parsed *x, const char *head, const char *body)
{
    http_limits lim;
    http_limits_default(&lim);
    http_parser_init(&x->p, HTTP_KIND_REQUEST, &lim, x->headers, 32);
    if (http_parse_head(&x->p, head, strlen(head)) != HTTP_PARSE_DONE)
        return -1;
    arena_init(&x->a);
    return request_build(&x->req, &x->a, &x->p, head, body, body ? strlen(body) : 0, "unix",
                         &x->path);
}

static void done(parsed *x)
{
    request_done(&x->req);
    arena_free(&x->a);
}

static void test_target(void)
{
    parsed x;
    CHECK(build(&x, "GET /a%20b/c%2Fd?x=1&y=%41+B HTTP/1.1\r\nHost: h\r\n\r\n", NULL) == 0);
    CHECK_STR(hearth_req_path(&x.req), "/a b/c/d");
    CHECK_STR(hearth_req_query_string(&x.req), "x=1&y=%41+B");
    CHECK(x.path.seg_count == 2);
    CHECK_STR(x.path.segs[1], "c/d"); /* %2F stays inside its segment */
    CHECK_STR(x.path.rest[0], "a b/c/d");
    CHECK_STR(hearth_req_query(&x.req, "y"), "A B");
    CHECK(hearth_req_query(&x.req, "z") == NULL);
    done(&x);
    CHECK(build(&x, "GET http://h/abs?q HTTP/1.1\r\nHost: h\r\n\r\n", NULL) == 0);
    CHECK_STR(hearth_req_path(&x.req), "/abs");
    done(&x);
}

static void test_refused(void)
{
    static const char *bad[] = {"/a/../b", "/a/./b", "/%2e%2E/x", "/a%zz", "/a%0", "/a%00b", "*"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char head[128];
        snprintf(head, sizeof head, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", bad[i]);
        parsed x;
        CHECK_MSG(build(&x, head, NULL) == 400, "%s not refused", bad[i]);
        done(&x);
    }
}

static void test_headers_form_cookies(void)
{
    parsed x;
    const char *head = "POST /f HTTP/1.1\r\nHost: h\r\nCookie: a=1; sid=xyz\r\n"
                       "Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n"
                       "X-Forwarded-For: 10.0.0.1, 192.0.2.5\r\nContent-Length: 20\r\n\r\n";
    CHECK(build(&x, head, "name=J%C3%B6+D&empty=") == 0);
    CHECK_STR(hearth_req_header(&x.req, "cookie"), "a=1; sid=xyz");
    CHECK_STR(hearth_req_cookie(&x.req, "sid"), "xyz");
    CHECK(hearth_req_cookie(&x.req, "nope") == NULL);
    CHECK_STR(hearth_req_form(&x.req, "name"), "J\xc3\xb6 D");
    CHECK_STR(hearth_req_form(&x.req, "empty"), "");
    CHECK_STR(hearth_req_client_addr(&x.req), "192.0.2.5");
    CHECK(hearth_req_json(&x.req) == NULL);
    done(&x);
    CHECK(build(&x, "POST /j HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n\r\n", "{\"a\":1}") == 0);
    CHECK(json_integer_value(json_object_get(hearth_req_json(&x.req), "a")) == 1);
    CHECK(hearth_req_form(&x.req, "a") == NULL); /* not a form */
    CHECK_STR(hearth_req_client_addr(&x.req), "unix");
    done(&x);
}

int main(void)
{
    test_target();
    test_refused();
    test_headers_form_cookies();
    return check_summary("appserver_request");
}
