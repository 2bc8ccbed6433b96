/* Loop-until helpers for tests (see tloop.h). */
#include "tloop.h"

#include <check.h>
#include <stdint.h>

#include <event2/event.h>

#include "tclock.h"

/* How often the loop wakes up with nothing to do, to check the condition again. */
#define TLOOP_TICK_US 2000

static void
tloop_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

bool
tloop_until(struct event_base *base, bool (*cond)(void *arg), void *arg, unsigned timeout_ms)
{
	uint64_t end = tclock_ms() + timeout_ms;
	struct timeval tv = {0, TLOOP_TICK_US};
	struct event *tick = event_new(base, -1, EV_PERSIST, tloop_tick_cb, NULL);
	bool ok;

	ck_assert_ptr_nonnull(tick);
	ck_assert_int_eq(event_add(tick, &tv), 0);
	while (!(ok = cond(arg)) && tclock_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(tick);
	return ok;
}

void
tloop_wait(struct event_base *base, bool (*cond)(void *arg), void *arg, unsigned timeout_ms,
    const char *what)
{
	ck_assert_msg(tloop_until(base, cond, arg, timeout_ms),
	    "timed out after %u ms waiting for %s", timeout_ms, what);
}

static bool
tloop_never(void *arg)
{
	(void)arg;
	return false;
}

void
tloop_for(struct event_base *base, unsigned ms)
{
	tloop_until(base, tloop_never, NULL, ms);
}

bool
tloop_flag(void *arg)
{
	return *(const bool *)arg;
}

bool
tloop_count(void *arg)
{
	const struct tloop_count *c = arg;

	return *c->n >= c->want;
}
