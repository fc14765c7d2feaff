/* Milliseconds on the monotonic clock, for intervals and deadlines: wall-clock time jumps when
 * it is set, and an interval measured across a jump is wrong. */
#ifndef HEARTH_CLOCK_H
#define HEARTH_CLOCK_H

#include <stdint.h>

int64_t clock_now_ms(void);

#endif
