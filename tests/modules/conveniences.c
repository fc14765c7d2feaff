/* Test module for the ABI 1.1 conveniences: integer parameters, Flask's abort(), JSON that is
 * handed over, per-request memory, cookies, and HEARTH_APP. */
#include <stdio.h>
#include <string.h>

#include <hearth/app.h>

static int twice(hearth_req *req, hearth_res *res)
{
    int64_t n;
    if (hearth_req_param_int(req, "n", &n) != 0)
        return hearth_res_error(res, 400, "'%s' is not an integer", hearth_req_param(req, "n"));
    return hearth_res_json_new(res, 200, json_pack("{s:I}", "twice", (json_int_t)(2 * n)));
}

static int page(hearth_req *req, hearth_res *res)
{
    int64_t p = 1;
    if (hearth_req_query(req, "page") && hearth_req_query_int(req, "page", &p) != 0)
        return hearth_res_error(res, 400, "page must be an integer");
    return hearth_res_printf(res, "page %lld\n", (long long)p);
}

/* Joins the path parameter with itself through request memory. */
static int doubled(hearth_req *req, hearth_res *res)
{
    const char *w = hearth_req_param(req, "w");
    char *copy = hearth_req_strdup(req, w);
    char *both = hearth_req_alloc(req, 2 * strlen(w) + 1);
    if (!copy || !both)
        return hearth_res_fail(res, "out of memory");
    snprintf(both, 2 * strlen(w) + 1, "%s%s", copy, w);
    return hearth_res_printf(res, "%s\n", both);
}

static int cookies(hearth_req *req, hearth_res *res)
{
    (void)req;
    hearth_cookie session = {.path = "/", .secure = 1, .http_only = 1, .same_site = "Lax"};
    hearth_cookie remember = {.max_age = 3600, .domain = "example.org"};
    hearth_cookie gone = {.max_age = -1, .path = "/"};
    int ok = hearth_res_cookie(res, "session", "abc123", &session) == 0 &&
             hearth_res_cookie(res, "remember", "yes", &remember) == 0 &&
             hearth_res_cookie(res, "old", "", &gone) == 0;
    /* each of these must be refused */
    hearth_cookie bad_site = {.same_site = "Sometimes"};
    int refused = hearth_res_cookie(res, "a b", "x", NULL) != 0 &&
                  hearth_res_cookie(res, "v", "has space", NULL) != 0 &&
                  hearth_res_cookie(res, "v", "semi;colon", NULL) != 0 &&
                  hearth_res_cookie(res, "v", "x\r\nInjected: 1", NULL) != 0 &&
                  hearth_res_cookie(res, "v", "x", &bad_site) != 0;
    return hearth_res_printf(res, "set %d refused %d\n", ok, refused);
}

HEARTH_APP("conveniences", NULL, NULL, {"GET", "/twice/:n", twice}, {"GET", "/page", page},
           {"GET", "/doubled/:w", doubled}, {"GET", "/cookies", cookies});
