/* Test module whose handlers misbehave: one segfaults, one aborts, one hangs past any
 * timeout. The appserver must lose only the worker, and say which route did it. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <hearth/app.h>

static int crash(hearth_req *req, hearth_res *res)
{
    (void)req;
    (void)res;
    /* raise() rather than a NULL write: the same SIGSEGV with or without a sanitizer */
    raise(SIGSEGV);
    return HEARTH_OK;
}

static int do_abort(hearth_req *req, hearth_res *res)
{
    (void)req;
    (void)res;
    abort();
}

static int hang(hearth_req *req, hearth_res *res)
{
    (void)req;
    for (int i = 0; i < 600; i++)
        sleep(1); /* well past any timeout the tests use */
    return hearth_res_puts(res, "woke up\n");
}

static int ok(hearth_req *req, hearth_res *res)
{
    (void)req;
    return hearth_res_printf(res, "ok %d\n", (int)getpid());
}

static const hearth_route routes[] = {
    {"GET", "/crash", crash}, {"GET", "/abort", do_abort}, {"GET", "/hang", hang},
    {"GET", "/ok", ok},       {NULL, NULL, NULL},
};

HEARTH_MODULE = {
    HEARTH_MODULE_HEAD,
    .name = "faulty",
    .routes = routes,
};
