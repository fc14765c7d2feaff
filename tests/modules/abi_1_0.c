/* A descriptor as a module built against ABI 1.0 has it: version 1 with no minor, and no
 * fields past routes. It must keep loading and working. */
#include <hearth/app.h>

static int old(hearth_req *req, hearth_res *res)
{
    size_t len;
    hearth_req_body(req, &len);
    return hearth_res_printf(res, "abi 1.0 module, body %zu\n", len);
}

static const hearth_route routes[] = {
    {"*", "/old", old},
    {NULL, NULL, NULL},
};

HEARTH_MODULE = {
    .magic = HEARTH_APP_MAGIC,
    .abi_version = 1,
    .name = "abi-1.0",
    .routes = routes,
};
