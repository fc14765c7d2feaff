/* The appserver's metrics (metrics.h) in shared/metrics' region: one shared shard, since a
 * request here costs far more than an atomic add on a line another worker also writes, and the
 * gauges are written by the master alone, from the scoreboard. */
#include <stdbool.h>

#include "appserver/metrics.h"
#include "shared/metrics.h"

static metrics_region *region;
static metric_ref requests[5], busy_workers, idle_workers, timeouts, reloads_ok, reloads_failed;
static int restarts_family;

void appserver_metrics_open(void)
{
    region = metrics_create_env("appserver", 1);
    if (region == NULL)
        return;
    int req = metrics_family(region, "hearth_appserver_requests_total", METRIC_COUNTER,
                             "Requests the workers answered, by status class.", "code", NULL, 0, 1);
    static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int k = 0; k < 5; k++)
        requests[k] = metrics_series(region, req, (const char *[]){classes[k]});
    int workers = metrics_family(region, "hearth_appserver_workers", METRIC_GAUGE,
                                 "Workers serving a request (busy) or waiting for one (idle).",
                                 "state", NULL, 0, 1);
    busy_workers = metrics_series(region, workers, (const char *[]){"busy"});
    idle_workers = metrics_series(region, workers, (const char *[]){"idle"});
    int tmo = metrics_family(
        region, "hearth_appserver_worker_timeouts_total", METRIC_COUNTER,
        "Workers killed for a timeout (no heartbeat within appserver.timeout).", "", NULL, 0, 1);
    timeouts = metrics_series(region, tmo, (const char *[]){NULL});
    restarts_family = metrics_family(
        region, "hearth_appserver_worker_restarts_total", METRIC_COUNTER,
        "Workers that exited on their own and were replaced, by reason: crash, timeout, "
        "max_requests.",
        "reason", NULL, 0, 1);
    static const char *const reasons[] = {"crash", "timeout", "max_requests"};
    for (int k = 0; k < 3; k++)
        metrics_series(region, restarts_family, (const char *[]){reasons[k]});
    int rel = metrics_family(region, "hearth_appserver_reloads_total", METRIC_COUNTER,
                             "Reloads (SIGHUP), by result: ok, or failed and the old workers "
                             "kept serving.",
                             "result", NULL, 0, 1);
    reloads_ok = metrics_series(region, rel, (const char *[]){"ok"});
    reloads_failed = metrics_series(region, rel, (const char *[]){"failed"});
}

void appserver_metrics_request(int status)
{
    if (region != NULL && status >= 100 && status <= 599)
        metrics_add(region, requests[status / 100 - 1], 1);
}

void appserver_metrics_workers(int busy, int idle)
{
    metrics_set(region, busy_workers, busy);
    metrics_set(region, idle_workers, idle);
}

void appserver_metrics_timeout(void)
{
    metrics_add(region, timeouts, 1);
}

void appserver_metrics_restart(const char *reason)
{
    /* made at open, so this finds it: no new series from a worker exit */
    metrics_add(region, metrics_series(region, restarts_family, (const char *[]){reason}), 1);
}

void appserver_metrics_reload(bool ok)
{
    metrics_add(region, ok ? reloads_ok : reloads_failed, 1);
}
