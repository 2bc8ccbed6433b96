/* Exponential backoff with jitter for retrying Memfault after transient failures (502/504,
 * timeouts, network errors): the delay doubles from base up to cap, and half of it is random
 * so that many devices that failed together do not retry together. */
#ifndef OTAGW_BACKOFF_H
#define OTAGW_BACKOFF_H

#include <stdint.h>

struct backoff_policy {
	uint32_t base_s; /* delay before the first retry; 0: 8 s (Memfault's 2^(3n) starts at 8) */
	uint32_t cap_s;  /* longest delay; 0: 1 h */
};

/* The delay in seconds before retry number attempt (0 for the first): with
 * d = min(cap, base * 2^attempt), a value between d/2 and d chosen by rnd, a uniformly random
 * 32-bit value. */
uint32_t backoff_delay(const struct backoff_policy *p, unsigned attempt, uint32_t rnd);

/* backoff_delay() with a random value from arc4random(). */
uint32_t backoff_next(const struct backoff_policy *p, unsigned attempt);

#endif
