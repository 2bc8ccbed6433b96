/* sd-bus on the one libevent loop: watches an sd_bus connection's fd and timeout from an
 * event_base (following sd_bus_get_fd(3)), drains sd_bus_process() on wakeups and reports a lost
 * connection once, so its owner can reconnect. Used by the BLE transports and the daemon's
 * D-Bus service.
 *
 * libevent 2.1 has no "before poll" hook, so what to wait for cannot be recomputed right before
 * the loop sleeps. busev recomputes it after each of its own dispatches; code that talks to the
 * bus outside a busev dispatch (a method call, a reply sent later, a signal emitted from a timer
 * or another fd's callback) must call busev_rearm() afterwards, or queued output and new call
 * timeouts may wait until the next unrelated wakeup. */
#ifndef OTAGW_BUSEV_H
#define OTAGW_BUSEV_H

#include <stdbool.h>
#include <systemd/sd-bus.h>

struct event_base;
struct busev;

/* Called once when the connection is gone: err is the negative errno sd_bus_process() returned,
 * or -ECONNRESET when the bus's Disconnected signal arrived first. The busev no longer watches
 * the bus; the owner may call busev_free() from inside the callback and reconnect (with a new
 * sd_bus) after a backoff. */
typedef void (*busev_lost_cb)(struct busev *be, int err, void *arg);

/* Attaches bus (already started: sd_bus_start() or sd_bus_open_*()) to base and processes
 * anything already queued on the next loop iteration. Takes a reference on bus. lost may be
 * NULL. Returns 0 and *out, or -ENOMEM, or the negative errno of sd_bus_get_fd() (e.g. -ENOTCONN
 * for a bus that is not started, -EPERM for a bus with separate input and output fds). */
int busev_new(
    struct event_base *base, sd_bus *bus, busev_lost_cb lost, void *arg, struct busev **out);

/* Recomputes what to wait for (readable/writable from sd_bus_get_events(), the timer from the
 * absolute sd_bus_get_timeout()). Call after every bus interaction made outside a dispatch of
 * this busev. Cheap; a no-op once the connection is lost. */
void busev_rearm(struct busev *be);

/* The bus this busev watches (no new reference). */
sd_bus *busev_bus(const struct busev *be);

/* True once the loss was reported. */
bool busev_lost(const struct busev *be);

/* Detaches from the loop, flushes and drops the reference on the bus. Safe inside the lost
 * callback and inside any sd-bus callback dispatched by this busev (the free is then deferred
 * until the dispatch returns). Accepts NULL; returns NULL. */
struct busev *busev_free(struct busev *be);

#endif
