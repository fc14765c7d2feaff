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
    if (!body)
        return hearth_res_error(res, 400, "the body must be JSON");
    return hearth_res_json_new(res, 200, json_pack("{s:O}", "you_sent", body));
}

HEARTH_APP("hello", NULL, NULL, {"GET", "/", index_page}, {"GET", "/hello/:name", greet},
           {"POST", "/echo", echo_json});
