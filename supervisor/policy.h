/* Restart policy: how long to wait before restarting a component that exited, and when a
 * crash loop has gone on long enough to give up (FATAL). Pure logic, no clocks of its own. A
 * persistent component (the edge: it is the site) is never given up on for crashing, and never
 * waits long: giving up would take the whole site down, and a long wait is an outage too. */
#ifndef HEARTH_SUPERVISOR_POLICY_H
#define HEARTH_SUPERVISOR_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/backoff.h"
#include "shared/config.h"

typedef struct {
    unsigned attempt;     /* crashes since the backoff last started over */
    crash_window crashes; /* max_restarts of them allowed within restart_window */
    bool persistent;      /* never FATAL; delay at most POLICY_PERSISTENT_DELAY_MAX_MS */
} restart_policy;

#define POLICY_FATAL (-1)
/* A persistent component's longest wait: connections queue on its sockets meanwhile, and a
 * client gives up after a few seconds. */
#define POLICY_PERSISTENT_DELAY_MAX_MS 1000

int policy_init(restart_policy *p, const config_supervisor *cfg, bool persistent);
void policy_free(restart_policy *p);
/* Forget the crash history (after an explicit restart, or when the settings change). */
int policy_reset(restart_policy *p, const config_supervisor *cfg);
/* A child exited unexpectedly at now_ms after uptime_ms: the delay before restarting it, or
 * POLICY_FATAL when more than max_restarts crashes fell inside restart_window (never for a
 * persistent one). */
int64_t policy_on_crash(restart_policy *p, const config_supervisor *cfg, uint64_t now_ms,
                        uint64_t uptime_ms);

#endif
