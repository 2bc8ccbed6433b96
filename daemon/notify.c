/* sd_notify(3) wrapper and watchdog timer (see notify.h). */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "log.h"

/* A STATUS= line longer than this is cut; systemctl shows one line anyway. */
#define NOTIFY_STATUS_MAX 256

struct notify {
	struct event *watchdog;
	uint64_t watchdog_usec;
	bool warned; /* a failed send is logged once */
};

static void
notify_send(struct notify *n, const char *msg)
{
	int r;

	if (n == NULL)
		return;
	/* 0: $NOTIFY_SOCKET is unset, not run by systemd. Keep the variables set: the
	 * watchdog and later messages need them. */
	r = sd_notify(0, msg);
	if (r < 0 && !n->warned) {
		log_warn_errno(r, "Failed to notify systemd, ignoring");
		n->warned = true;
	}
}

/* Sends head followed by a STATUS= line. The status is cut to NOTIFY_STATUS_MAX and control
 * characters become spaces: a newline would start a field of its own. */
static void
notify_send_status(struct notify *n, const char *head, const char *status)
{
	char msg[NOTIFY_STATUS_MAX + 128];
	size_t i, len;

	len = (size_t)snprintf(msg, sizeof(msg), "%sSTATUS=", head);
	if (len >= sizeof(msg))
		return;
	for (i = 0; status != NULL && status[i] != '\0' && i < NOTIFY_STATUS_MAX; i++) {
		char c = status[i];

		if ((unsigned char)c < 0x20 || c == 0x7f)
			c = ' ';
		msg[len++] = c;
	}
	msg[len] = '\0';
	notify_send(n, msg);
}

static void
notify_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	notify_send(arg, "WATCHDOG=1");
}

int
notify_new(struct event_base *base, struct notify **out)
{
	struct notify *n;
	uint64_t usec = 0;
	struct timeval tv;
	int r;

	r = sd_watchdog_enabled(0, &usec);
	if (r < 0)
		return r;
	n = calloc(1, sizeof(*n));
	if (n == NULL)
		return -ENOMEM;
	if (r > 0 && usec > 0) {
		/* Half the interval, as sd_watchdog_enabled(3) recommends: a ping can be late
		 * by a whole busy loop iteration and still arrive in time. */
		tv.tv_sec = (time_t)(usec / 2 / 1000000);
		tv.tv_usec = (suseconds_t)(usec / 2 % 1000000);
		n->watchdog = event_new(base, -1, EV_PERSIST, notify_watchdog_cb, n);
		if (n->watchdog == NULL || event_add(n->watchdog, &tv) < 0) {
			notify_free(n);
			return -ENOMEM;
		}
		n->watchdog_usec = usec;
	}
	*out = n;
	return 0;
}

void
notify_free(struct notify *n)
{
	if (n == NULL)
		return;
	if (n->watchdog != NULL)
		event_free(n->watchdog);
	free(n);
}

void
notify_ready(struct notify *n, const char *status)
{
	notify_send_status(n, "READY=1\n", status);
}

void
notify_reloading(struct notify *n, const char *status)
{
	struct timespec ts;
	char head[64];

	/* systemd pairs RELOADING=1 with the monotonic time so it can tell this reload from an
	 * older one. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(head, sizeof(head), "RELOADING=1\nMONOTONIC_USEC=%llu\n",
	    (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL);
	notify_send_status(n, head, status);
}

void
notify_stopping(struct notify *n, const char *status)
{
	notify_send_status(n, "STOPPING=1\n", status);
}

void
notify_status(struct notify *n, const char *fmt, ...)
{
	char status[NOTIFY_STATUS_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(status, sizeof(status), fmt, ap);
	va_end(ap);
	notify_send_status(n, "", status);
}

uint64_t
notify_watchdog_usec(const struct notify *n)
{
	return n != NULL ? n->watchdog_usec : 0;
}
