/* A route whose method is written in lower case: it could never match, so the module is
 * refused when it loads. */
#include <hearth/app.h>

static int never(hearth_req *req, hearth_res *res)
{
    (void)req;
    return hearth_res_puts(res, "unreachable\n");
}

HEARTH_APP("bad-method", NULL, NULL, {"get", "/never", never});
