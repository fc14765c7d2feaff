/* A "v2" that cannot load: it calls a function nobody defines, so dlopen(RTLD_NOW) fails
 * with "undefined symbol", the way a deploy built against the wrong library does. */
#include <hearth/app.h>

int hearth_this_symbol_does_not_exist(void);

static int root(hearth_req *req, hearth_res *res)
{
    (void)req;
    return hearth_res_printf(res, "broken v2 %d\n", hearth_this_symbol_does_not_exist());
}

static const hearth_route routes[] = {
    {"GET", "/", root},
    {NULL, NULL, NULL},
};

HEARTH_MODULE = {
    HEARTH_MODULE_HEAD,
    .name = "broken",
    .routes = routes,
};
