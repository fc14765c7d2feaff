/* A module from a future appserver: its descriptor claims ABI version 999. */
#include <hearth/app.h>

static int root(hearth_req *req, hearth_res *res)
{
    (void)req;
    return hearth_res_puts(res, "never served\n");
}

static const hearth_route routes[] = {
    {"GET", "/", root},
    {NULL, NULL, NULL},
};

HEARTH_MODULE = {
    .magic = HEARTH_APP_MAGIC,
    .abi_version = 999,
    .name = "from-the-future",
    .routes = routes,
};
