/* Tells systemd what otagwd is doing (sd_notify(3)): READY=1 once it serves, STATUS= lines for
 * `systemctl status`, RELOADING=1/READY=1 around a reload, STOPPING=1, and WATCHDOG=1 pings
 * from a main-loop timer so a wedged loop gets the service restarted. Every call is a no-op
 * when $NOTIFY_SOCKET is not set (not run by systemd). */
#ifndef OTAGW_NOTIFY_H
#define OTAGW_NOTIFY_H

#include <stdint.h>

struct event_base;
struct notify;

/* Creates the notifier. If systemd enabled the watchdog for this process ($WATCHDOG_USEC, and
 * $WATCHDOG_PID if set is ours), arms a persistent timer on base at half the interval that
 * sends WATCHDOG=1. Returns 0, -ENOMEM, or -EINVAL if $WATCHDOG_USEC is malformed. */
int notify_new(struct event_base *base, struct notify **out);

/* Stops the watchdog timer and frees n. Accepts NULL. */
void notify_free(struct notify *n);

/* READY=1 with a STATUS= line (status may be NULL). Call once everything that serves
 * devices is up, and again at the end of every reload. */
void notify_ready(struct notify *n, const char *status);

/* RELOADING=1 with MONOTONIC_USEC= (what Type=notify-reload expects), and a STATUS= line. */
void notify_reloading(struct notify *n, const char *status);

/* STOPPING=1 with a STATUS= line. */
void notify_stopping(struct notify *n, const char *status);

/* A STATUS= line a person reads in `systemctl status`, e.g. "3 devices, 1 transfer at 45 %". */
void notify_status(struct notify *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The watchdog interval systemd asked for in microseconds, 0 if it is off. */
uint64_t notify_watchdog_usec(const struct notify *n);

#endif
