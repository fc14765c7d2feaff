/* certd's metrics (docs/metrics.md): each stored certificate's expiry, and the time and result
 * of the last renewal attempt for each, in shared/metrics' region (one process, one shard). A
 * restarted certd starts over: the expiries are back after its first pass, the attempts after
 * the next attempt. */
#include <time.h>

#include "certd/certd.h"
#include "shared/metrics.h"

static metrics_region *region;
static int not_after_family, attempt_family, success_family, renewals_family;

void certd_metrics_open(void)
{
    if (region != NULL || (region = metrics_create_env("certd", 1)) == NULL)
        return;
    not_after_family = metrics_family(
        region, "hearth_certd_certificate_not_after_timestamp_seconds", METRIC_GAUGE,
        "When the stored certificate expires (its notAfter), in Unix time.", "cert", NULL, 0, 1);
    attempt_family =
        metrics_family(region, "hearth_certd_last_renewal_attempt_timestamp_seconds", METRIC_GAUGE,
                       "When certd last tried to renew or issue the certificate, in Unix time.",
                       "cert", NULL, 0, 1);
    success_family = metrics_family(
        region, "hearth_certd_last_renewal_success", METRIC_GAUGE,
        "1 when the last renewal or issuance attempt succeeded, else 0.", "cert", NULL, 0, 1);
    renewals_family = metrics_family(region, "hearth_certd_renewals_total", METRIC_COUNTER,
                                     "Renewal and issuance attempts, by result: success, failure.",
                                     "cert,result", NULL, 0, 1);
}

/* Per certificate the series are made when first needed; past the file's bound, none are. */
static metric_ref cert_series(int family, const char *name)
{
    return metrics_series(region, family, (const char *[]){name});
}

void certd_metrics_attempt(const char *name, int rc)
{
    if (region == NULL || rc == EXIT_NOTHING)
        return;
    bool ok = rc == EXIT_OK;
    metrics_set(region, cert_series(attempt_family, name), (int64_t)time(NULL));
    metrics_set(region, cert_series(success_family, name), ok);
    metrics_add(
        region,
        metrics_series(region, renewals_family, (const char *[]){name, ok ? "success" : "failure"}),
        1);
}

void certd_metrics_certs(const certd_opts *o)
{
    char **names;
    size_t count;
    if (region == NULL || store_list(o->cert_dir, &names, &count) < 0)
        return;
    for (size_t i = 0; i < count; i++) {
        cert_info info;
        if (ops_cert_info(o, names[i], &info) < 0)
            continue;
        metrics_set(region, cert_series(not_after_family, names[i]), (int64_t)info.not_after);
        certinfo_free(&info);
    }
    store_free_list(names, count);
}
