/* hearth_log(): modules write into the appserver's own error log. */
#include "hearth/app.h"
#include "shared/log.h"

void hearth_log(int level, const char *fmt, ...)
{
    static const log_level levels[] = {HLOG_DEBUG, HLOG_INFO, HLOG_WARN, HLOG_ERROR};
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(levels[level < 0 ? 0 : level > 3 ? 3 : level], fmt, ap);
    va_end(ap);
}

int hearth_log_fd(void)
{
    return log_fd_get();
}
