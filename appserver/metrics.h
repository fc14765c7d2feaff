/* The appserver's metrics (docs/metrics.md): workers busy and idle, requests by status class,
 * workers killed for a timeout, worker restarts and reloads. Each call is a no-op unless the
 * supervisor set HEARTH_METRICS_DIR. */
#ifndef APPSERVER_METRICS_H
#define APPSERVER_METRICS_H

#include <stdbool.h>

/* In the master before the first fork; the workers inherit the mapping. */
void appserver_metrics_open(void);
/* A worker answered a request with status. */
void appserver_metrics_request(int status);
/* The master's view on each tick: workers serving a request, and workers waiting for one. */
void appserver_metrics_workers(int busy, int idle);
void appserver_metrics_timeout(void);
/* A worker exited on its own and is replaced: "crash", "timeout" or "max_requests". */
void appserver_metrics_restart(const char *reason);
void appserver_metrics_reload(bool ok);

#endif
