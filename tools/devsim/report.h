/* What devsim tells people and programs: machine-readable events as JSON lines (--events), and
 * for people either a live status line per device (on a terminal) or plain lines (in logs).
 * Human output goes to stdout, or to stderr when the events take stdout. */
#ifndef OTAGW_DEVSIM_REPORT_H
#define OTAGW_DEVSIM_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;
struct report;

enum report_mode {
	REPORT_MODE_AUTO,  /* live lines on a terminal, plain lines otherwise */
	REPORT_MODE_LIVE,  /* live lines (a progress bar per device) */
	REPORT_MODE_PLAIN, /* one line per step, progress every 10 % */
	REPORT_MODE_QUIET, /* nothing but errors */
};

/* events_path: NULL for none, "-" for stdout, else a file (created or truncated). Returns 0, or
 * a negative errno with err saying what failed. */
int report_new(struct event_base *base, const char *events_path, enum report_mode mode,
    struct report **out, char *err, size_t errlen);

/* Seconds since report_new(), on the monotonic clock: the "t" of every event. */
double report_now(const struct report *r);

/* Writes one event line {"t":..., "serial":..., "event":..., fields...}. fields (a JSON object
 * or NULL) is consumed. Lines are flushed at once so a reader can follow them live. */
void report_event(struct report *r, const char *serial, const char *event, json_t *fields);

/* A line for people about one device ("SIM-001: offer 1.1.0, 262144 bytes"). */
void report_say(struct report *r, const char *serial, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An error for people, always on stderr (and above the live lines). */
void report_error(struct report *r, const char *serial, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Registers a device for the live display; returns its index for report_status(). */
unsigned int report_add_device(struct report *r, const char *serial);

/* Updates a device's status: the versions (to may be NULL), bytes stored of size (size 0: no
 * transfer), and a word for its state ("receiving", "verifying", "up to date"...). */
void report_status(struct report *r, unsigned int dev, const char *from, const char *to,
    uint32_t offset, uint32_t size, const char *state);

/* Draws the final state of the live lines and closes the events file. Accepts NULL. */
void report_free(struct report *r);

#endif
