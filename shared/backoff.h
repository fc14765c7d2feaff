/* Backoff after failures, written once for every program: the delay before the next try
 * (doubling from a first step up to a cap, with optional jitter) and crash-loop counting (more
 * than N failures within a sliding window). Used by the supervisor's restarts, the appserver's
 * worker forks, certd's ACME and renewal retries and the edge master's worker deaths, each
 * with its own numbers. Pure: the caller passes the time and the randomness in. */
#ifndef HEARTH_BACKOFF_H
#define HEARTH_BACKOFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The delay before try number `attempt` (0 for the first failure): first_ms doubled once per
 * attempt, at most max_ms. first_ms is taken as at least 1 ms and max_ms as at least first_ms,
 * so a loop of failures always slows down; a caller whose cap should win over its first step
 * passes the smaller of the two as first_ms. */
int64_t backoff_delay_ms(int64_t first_ms, int64_t max_ms, unsigned attempt);

/* delay_ms less up to half of itself, chosen by rnd (uniform), and at least 1 ms: clients that
 * failed together do not all come back at the same moment, and none retries in a tight loop. */
int64_t backoff_jitter_ms(int64_t delay_ms, uint32_t rnd);

/* The times of the recent failures, to tell a crash loop from an occasional crash. */
typedef struct {
    uint64_t *times; /* ms, inside the window, oldest first */
    size_t count;
    size_t limit; /* failures allowed within the window; one more is a loop */
} crash_window;

/* (Re)starts an empty window; w is zeroed or was initialised before. -1 when out of memory (w
 * is left unchanged, so a reset that fails keeps the old one). */
int crash_window_init(crash_window *w, size_t limit);
void crash_window_free(crash_window *w);
/* Counts a failure at now_ms (a monotonic clock); true when it makes more than limit failures
 * within the last window_ms. */
bool crash_window_add(crash_window *w, uint64_t now_ms, int64_t window_ms);

#endif
