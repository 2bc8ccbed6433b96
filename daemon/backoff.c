/* Exponential backoff with "equal jitter" (see backoff.h). */
#include "backoff.h"

#include <stdlib.h>

uint32_t
backoff_delay(const struct backoff_policy *p, unsigned attempt, uint32_t rnd)
{
	uint64_t base = p->base_s != 0 ? p->base_s : 8, cap = p->cap_s != 0 ? p->cap_s : 3600;
	uint64_t d = base, half;

	if (cap < base)
		cap = base;
	/* doubling stops at the cap, so the shift never overflows */
	while (attempt-- > 0 && d < cap)
		d *= 2;
	if (d > cap)
		d = cap;
	half = d / 2;
	return (uint32_t)(d - half + rnd % (half + 1));
}

uint32_t
backoff_next(const struct backoff_policy *p, unsigned attempt)
{
	return backoff_delay(p, attempt, arc4random());
}
