/* Doubling delays with a cap and jitter, and the sliding crash window; see backoff.h. */
#include "shared/backoff.h"

#include <stdlib.h>
#include <string.h>

int64_t backoff_delay_ms(int64_t first_ms, int64_t max_ms, unsigned attempt)
{
    if (first_ms < 1)
        first_ms = 1;
    if (max_ms < first_ms)
        max_ms = first_ms;
    int64_t d = first_ms;
    /* stops at the cap, so d never exceeds 2 * max_ms and cannot overflow before it */
    for (unsigned i = 0; i < attempt && d < max_ms; i++)
        d = d > max_ms / 2 ? max_ms : d * 2;
    return d < max_ms ? d : max_ms;
}

int64_t backoff_jitter_ms(int64_t delay_ms, uint32_t rnd)
{
    int64_t half = delay_ms / 2;
    int64_t out = delay_ms - (half > 0 ? (int64_t)(rnd % (uint64_t)(half + 1)) : 0);
    return out < 1 ? 1 : out;
}

int crash_window_init(crash_window *w, size_t limit)
{
    /* room for limit + 1: the failure that makes one too many is counted too */
    uint64_t *times = calloc(limit + 1, sizeof(*times));
    if (times == NULL)
        return -1;
    free(w->times);
    *w = (crash_window){.times = times, .limit = limit};
    return 0;
}

void crash_window_free(crash_window *w)
{
    free(w->times);
    memset(w, 0, sizeof(*w));
}

/* Drop failures that have left the window, so only recent ones count. */
static void forget_old(crash_window *w, uint64_t now_ms, int64_t window_ms)
{
    size_t keep = 0;
    for (size_t i = 0; i < w->count; i++) {
        if (now_ms - w->times[i] < (uint64_t)window_ms)
            w->times[keep++] = w->times[i];
    }
    w->count = keep;
}

bool crash_window_add(crash_window *w, uint64_t now_ms, int64_t window_ms)
{
    forget_old(w, now_ms, window_ms);
    if (w->count > w->limit)
        return true; /* full already: still a loop, and no room to record this one */
    w->times[w->count++] = now_ms;
    return w->count > w->limit;
}
