/* A module whose per-worker init() refuses to start (say, the database is unreachable). */
#include <hearth/app.h>

static int init(void **data)
{
    (void)data;
    hearth_log(HEARTH_LOG_ERROR, "init_fails: cannot reach the database");
    return 7;
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
    .name = "init-fails",
    .init = init,
    .routes = routes,
};
