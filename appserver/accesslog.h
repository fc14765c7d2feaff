/* The access log, one line per request in nginx's "combined" format, so existing log tools
 * read it unchanged. */
#ifndef APPSERVER_ACCESSLOG_H
#define APPSERVER_ACCESSLOG_H

#include <stddef.h>

#include "hearth/app.h"

/* Open path for appending ("-" is stdout); -1 with errno on failure. */
int access_log_open(const char *path);
void access_log_write(int fd, const hearth_req *req, int version_minor, int status, size_t bytes);

/* A request refused before it could be parsed: no method or target to show ("-"), as nginx
 * logs a 400, so tools such as fail2ban see hostile clients too. */
void access_log_refused(int fd, const char *client, int status, size_t bytes);

#endif
