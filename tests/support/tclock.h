/* Time for tests: monotonic milliseconds for deadlines, and a sleep that survives signals. Tests
 * never assert on either; they bound how long a wait may take before it fails. */
#ifndef OTAGW_TESTS_TCLOCK_H
#define OTAGW_TESTS_TCLOCK_H

#include <stdint.h>

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t tclock_ms(void);

/* Sleeps ms milliseconds (resuming after signals). For polling a condition, never for waiting
 * on one blindly. */
void tclock_sleep_ms(unsigned ms);

#endif
