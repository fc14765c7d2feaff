/* Restart backoff and crash-loop detection; see policy.h. */
#include "supervisor/policy.h"

#include <string.h>

int policy_init(restart_policy *p, const config_supervisor *cfg, bool persistent)
{
    memset(p, 0, sizeof(*p));
    p->persistent = persistent;
    return policy_reset(p, cfg);
}

void policy_free(restart_policy *p)
{
    crash_window_free(&p->crashes);
    memset(p, 0, sizeof(*p));
}

int policy_reset(restart_policy *p, const config_supervisor *cfg)
{
    size_t limit = cfg->max_restarts > 0 ? (size_t)cfg->max_restarts : 0;
    if (crash_window_init(&p->crashes, limit) < 0)
        return -1;
    p->attempt = 0;
    return 0;
}

int64_t policy_on_crash(restart_policy *p, const config_supervisor *cfg, uint64_t now_ms,
                        uint64_t uptime_ms)
{
    if (!p->persistent && crash_window_add(&p->crashes, now_ms, cfg->restart_window_ms))
        return POLICY_FATAL;
    int64_t max = cfg->restart_delay_max_ms;
    if (p->persistent && max > POLICY_PERSISTENT_DELAY_MAX_MS)
        max = POLICY_PERSISTENT_DELAY_MAX_MS;
    /* A child that stayed up long enough was healthy: its next crash starts a new backoff. */
    if (uptime_ms >= (uint64_t)cfg->restart_reset_ms)
        p->attempt = 0;
    /* the cap wins over a longer first step (a persistent child's cap is below the setting) */
    int64_t first = cfg->restart_delay_ms < max ? cfg->restart_delay_ms : max;
    return backoff_delay_ms(first, max, p->attempt++);
}
