/* The access log, one line per request in nginx's "combined" format, so existing log tools
 * read it unchanged. */
#ifndef APPSERVER_ACCESSLOG_H
#define APPSERVER_ACCESSLOG_H

#include <stddef.h>

#include "hearth/app.h"

/* Open path for appending ("-" is stdout); -1 with errno on failure. */
int access_log_open(const char *path);
void access_log_write(int fd, const hearth_req *req, int version_minor, int status, size_t bytes);

#endif
