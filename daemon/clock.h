/* The daemon's clocks, in one place: the monotonic clock for every interval and timeout, the
 * wall clock only for what is stored or shown (docs/HACKING.md). */
#ifndef OTAGW_CLOCK_H
#define OTAGW_CLOCK_H

#include <stdint.h>

/* Milliseconds of CLOCK_MONOTONIC: for intervals, rates and deadlines. Never goes back. */
uint64_t clock_mono_ms(void);

/* Microseconds since the epoch (CLOCK_REALTIME): for timestamps stored or shown to people,
 * never for intervals (the wall clock may jump). */
int64_t clock_wall_us(void);

#endif
