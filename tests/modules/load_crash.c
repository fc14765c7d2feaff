/* A module whose init() crashes: the worker loading it dies, the master must not. */
#include <signal.h>

#include <hearth/app.h>

static int init(void **data)
{
    (void)data;
    raise(SIGSEGV);
    return 0;
}

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
    HEARTH_MODULE_HEAD,
    .name = "load-crash",
    .init = init,
    .routes = routes,
};
