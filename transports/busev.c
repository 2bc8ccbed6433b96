/* sd-bus on the one libevent loop: an fd watch armed from sd_bus_get_events(), a timer from the
 * absolute sd_bus_get_timeout(), sd_bus_process() drained on each wakeup, and a lost connection
 * reported once. See busev.h for why callers re-arm. */
#include "busev.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>

#include <event2/event.h>

/* Messages handled per wakeup before going back to the loop, so a flood on the bus cannot
 * starve other fds. Anything left is still queued: sd_bus_get_timeout() then says "now". */
enum { BUSEV_DISPATCH_BUDGET = 64 };

struct busev {
	struct event_base *base;
	sd_bus *bus;
	sd_bus_slot *filter;
	struct event *rd, *wr, *timer;
	busev_lost_cb lost_cb;
	void *arg;
	bool rd_on, wr_on;
	bool is_lost;
	bool dispatching;  /* inside busev_dispatch(): frees are deferred */
	bool free_pending; /* busev_free() was called during a dispatch */
};

static void
busev_destroy(struct busev *be)
{
	event_free(be->rd);
	event_free(be->wr);
	event_free(be->timer);
	sd_bus_slot_unref(be->filter);
	sd_bus_unref(be->bus);
	free(be);
}

static void
busev_stop(struct busev *be)
{
	event_del(be->rd);
	event_del(be->wr);
	event_del(be->timer);
	be->rd_on = be->wr_on = false;
}

static void
busev_report_lost(struct busev *be, int err)
{
	if (be->is_lost)
		return;
	be->is_lost = true;
	busev_stop(be);
	if (be->lost_cb && !be->free_pending)
		be->lost_cb(be, err, be->arg);
}

/* The bus synthesizes org.freedesktop.DBus.Local.Disconnected when the socket closes; seeing it
 * in a filter costs no AddMatch round trip to the bus daemon. */
static int
busev_filter(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct busev *be = userdata;

	(void)ret_error;
	if (sd_bus_message_is_signal(m, "org.freedesktop.DBus.Local", "Disconnected"))
		busev_report_lost(be, -ECONNRESET);
	return 0;
}

static void
busev_dispatch(struct busev *be)
{
	be->dispatching = true;
	for (int i = 0; i < BUSEV_DISPATCH_BUDGET && !be->is_lost && !be->free_pending; i++) {
		int r = sd_bus_process(be->bus, NULL);

		if (r < 0)
			busev_report_lost(be, r);
		if (r <= 0)
			break;
	}
	be->dispatching = false;
	if (be->free_pending) {
		busev_destroy(be);
		return;
	}
	busev_rearm(be);
}

static void
busev_on_event(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	busev_dispatch(arg);
}

static uint64_t
busev_now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
busev_set(struct event *ev, bool *on, bool want)
{
	if (want && !*on)
		event_add(ev, NULL);
	else if (!want && *on)
		event_del(ev);
	*on = want;
}

void
busev_rearm(struct busev *be)
{
	uint64_t until = UINT64_MAX;
	int events;

	if (!be || be->is_lost || be->dispatching)
		return; /* a dispatch re-arms when it ends */
	events = sd_bus_get_events(be->bus);
	if (events < 0) {
		/* Closed under us: let the next dispatch learn why from sd_bus_process(). */
		busev_stop(be);
		event_add(be->timer, &(struct timeval){0, 0});
		return;
	}
	busev_set(be->rd, &be->rd_on, events & POLLIN);
	busev_set(be->wr, &be->wr_on, events & POLLOUT);

	if (sd_bus_get_timeout(be->bus, &until) < 0 || until == UINT64_MAX) {
		event_del(be->timer);
		return;
	}
	uint64_t now = busev_now_usec(), delta = 0;
	if (until > now) /* rounded up to whole ms: waking early only costs a useless process */
		delta = (until - now + 999u) / 1000u * 1000u;
	struct timeval tv = {
	    .tv_sec = (time_t)(delta / 1000000u), .tv_usec = (suseconds_t)(delta % 1000000u)};
	event_add(be->timer, &tv);
}

int
busev_new(struct event_base *base, sd_bus *bus, busev_lost_cb lost, void *arg, struct busev **out)
{
	struct busev *be;
	int fd, r;

	fd = sd_bus_get_fd(bus);
	if (fd < 0)
		return fd;
	be = calloc(1, sizeof(*be));
	if (!be)
		return -ENOMEM;
	be->base = base;
	be->bus = sd_bus_ref(bus);
	be->lost_cb = lost;
	be->arg = arg;
	be->rd = event_new(base, fd, EV_READ | EV_PERSIST, busev_on_event, be);
	be->wr = event_new(base, fd, EV_WRITE | EV_PERSIST, busev_on_event, be);
	be->timer = evtimer_new(base, busev_on_event, be);
	if (!be->rd || !be->wr || !be->timer) {
		busev_destroy(be);
		return -ENOMEM;
	}
	r = sd_bus_add_filter(bus, &be->filter, busev_filter, be);
	if (r < 0) {
		busev_destroy(be);
		return r;
	}
	/* Process whatever is already queued (Hello, early calls) on the next iteration. */
	event_add(be->timer, &(struct timeval){0, 0});
	*out = be;
	return 0;
}

sd_bus *
busev_bus(const struct busev *be)
{
	return be->bus;
}

bool
busev_lost(const struct busev *be)
{
	return be->is_lost;
}

struct busev *
busev_free(struct busev *be)
{
	if (!be)
		return NULL;
	if (be->dispatching) {
		be->free_pending = true;
		busev_stop(be);
		return NULL;
	}
	busev_destroy(be);
	return NULL;
}
