/* Restart backoff and crash-loop detection; see policy.h. */
#include "supervisor/policy.h"

#include <stdlib.h>
#include <string.h>

int policy_init(restart_policy *p, const config_supervisor *cfg, bool persistent)
{
    memset(p, 0, sizeof(*p));
    p->persistent = persistent;
    return policy_reset(p, cfg);
}

void policy_free(restart_policy *p)
{
    free(p->crashes);
    memset(p, 0, sizeof(*p));
}

int policy_reset(restart_policy *p, const config_supervisor *cfg)
{
    size_t cap = cfg->max_restarts > 0 ? (size_t)cfg->max_restarts + 1 : 1;
    uint64_t *crashes = calloc(cap, sizeof(*crashes));
    if (crashes == NULL)
        return -1;
    free(p->crashes);
    p->crashes = crashes;
    p->crash_cap = cap;
    p->crash_count = 0;
    p->next_delay_ms = cfg->restart_delay_ms;
    return 0;
}

/* Drop crashes that have left the window, so only recent ones count toward FATAL. */
static void forget_old_crashes(restart_policy *p, int64_t window_ms, uint64_t now_ms)
{
    size_t keep = 0;
    for (size_t i = 0; i < p->crash_count; i++) {
        if (now_ms - p->crashes[i] < (uint64_t)window_ms)
            p->crashes[keep++] = p->crashes[i];
    }
    p->crash_count = keep;
}

/* Counts the crash; true when it makes one too many inside the window. */
static bool too_many_crashes(restart_policy *p, const config_supervisor *cfg, uint64_t now_ms)
{
    forget_old_crashes(p, cfg->restart_window_ms, now_ms);
    if (p->crash_count == p->crash_cap) {
        /* The cap follows max_restarts, so being full already means FATAL; stay safe anyway. */
        return true;
    }
    p->crashes[p->crash_count++] = now_ms;
    return p->crash_count > (size_t)(cfg->max_restarts > 0 ? cfg->max_restarts : 0);
}

int64_t policy_on_crash(restart_policy *p, const config_supervisor *cfg, uint64_t now_ms,
                        uint64_t uptime_ms)
{
    if (!p->persistent && too_many_crashes(p, cfg, now_ms))
        return POLICY_FATAL;
    int64_t max = cfg->restart_delay_max_ms;
    if (p->persistent && max > POLICY_PERSISTENT_DELAY_MAX_MS)
        max = POLICY_PERSISTENT_DELAY_MAX_MS;
    /* A child that stayed up long enough was healthy: its next crash starts a new backoff. */
    if (uptime_ms >= (uint64_t)cfg->restart_reset_ms)
        p->next_delay_ms = cfg->restart_delay_ms;
    int64_t delay = p->next_delay_ms;
    int64_t doubled = delay > 0 ? delay * 2 : 1;
    p->next_delay_ms = doubled < max ? doubled : max;
    return delay < max ? delay : max;
}
