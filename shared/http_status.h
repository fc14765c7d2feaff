/* What both HTTP servers (edge, appserver) write into every response head: the reason phrase
 * for a status code and the Date field. */
#ifndef HEARTH_HTTP_STATUS_H
#define HEARTH_HTTP_STATUS_H

/* RFC 9110's reason phrase for status, or "Unknown". */
const char *http_status_reason(int status);

/* The current time as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), formatted at most once
 * a second; the pointer stays valid until the next call (one event loop per process). */
const char *http_date_now(void);

#endif
