/* The hello module: the smallest useful hearth application. Build it outside the tree with
 *   cc -shared -fPIC $(pkg-config --cflags hearth-app) hello.c -o hello.so */
#include <hearth/app.h>

static int index_page(hearth_req *req, hearth_res *res)
{
    (void)req;
    return hearth_res_puts(res, "Hello, world!\n");
}

/* GET /hello/:name -> a greeting with the decoded path parameter */
static int greet(hearth_req *req, hearth_res *res)
{
    return hearth_res_printf(res, "Hello, %s!\n", hearth_req_param(req, "name"));
}

/* POST /echo with a JSON body -> {"you_sent": BODY} */
static int echo_json(hearth_req *req, hearth_res *res)
{
    json_t *body = hearth_req_json(req);
    if (!body) {
        json_t *err = json_pack("{s:s}", "error", "the body must be JSON");
        int rc = hearth_res_json(res, 400, err);
        json_decref(err);
        return rc;
    }
    json_t *reply = json_pack("{s:O}", "you_sent", body);
    int rc = hearth_res_json(res, 200, reply);
    json_decref(reply);
    return rc;
}

static const hearth_route routes[] = {
    {"GET", "/", index_page},
    {"GET", "/hello/:name", greet},
    {"POST", "/echo", echo_json},
    {NULL, NULL, NULL},
};

HEARTH_MODULE = {
    HEARTH_MODULE_HEAD,
    .name = "hello",
    .version = "1.0",
    .routes = routes,
};
