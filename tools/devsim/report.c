/* report: events and human output (see report.h). The live display redraws at most ten times a
 * second from the latest status of each device, so a fast transfer costs no terminal I/O per
 * frame; plain mode prints only state changes and every tenth of a transfer. */
#include "report.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "ident.h"

#define REPORT_REDRAW_MS 100
/* Above this many devices the live display is one summary line. */
#define REPORT_LIVE_LINES_MAX 20
#define REPORT_BAR_WIDTH      24

struct report_dev {
	char serial[IDENT_SERIAL_MAX + 1];
	char from[IDENT_VERSION_MAX + 1], to[IDENT_VERSION_MAX + 1];
	char state[32];
	uint32_t offset, size;
	/* for the rate: where and when the current transfer was first seen */
	uint32_t start_offset;
	double start_t;
	int decile; /* plain mode: the last tenth printed */
};

struct report {
	struct event_base *base;
	FILE *events;
	bool events_owned;
	FILE *out; /* human output */
	enum report_mode mode;
	struct timespec t0;
	struct report_dev *devs;
	unsigned int ndevs, cap;
	unsigned int drawn; /* live lines on screen below the cursor's line start */
	bool dirty;
	struct event *ev_redraw;
};

static double
report_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double
report_now(const struct report *r)
{
	return report_mono() - ((double)r->t0.tv_sec + (double)r->t0.tv_nsec / 1e9);
}

/* Moves the cursor to the first live line and clears from there down. */
static void
report_erase(struct report *r)
{
	if (r->drawn == 0)
		return;
	fprintf(r->out, "\r\033[%uA\033[J", r->drawn);
	fflush(r->out); /* before anything else reaches the terminal, stderr included */
	r->drawn = 0;
}

static void
report_bar(char *out, uint32_t offset, uint32_t size)
{
	unsigned int fill = size ? (unsigned int)((uint64_t)offset * REPORT_BAR_WIDTH / size) : 0;
	unsigned int i;

	out[0] = '[';
	for (i = 0; i < REPORT_BAR_WIDTH; i++)
		out[1 + i] = i < fill ? '#' : '-';
	out[1 + REPORT_BAR_WIDTH] = ']';
	out[2 + REPORT_BAR_WIDTH] = '\0';
}

static void
report_draw_dev(struct report *r, const struct report_dev *d)
{
	char bar[REPORT_BAR_WIDTH + 3];
	double dt = report_now(r) - d->start_t;

	if (d->size == 0) {
		fprintf(r->out, "%-12s %-10s %s\n", d->serial, d->from, d->state);
		return;
	}
	report_bar(bar, d->offset, d->size);
	fprintf(r->out, "%-12s %s -> %s %s %3u%% %6u/%u KiB %7.1f KiB/s %s\n", d->serial, d->from,
	    d->to, bar, (unsigned int)((uint64_t)d->offset * 100 / d->size), d->offset / 1024,
	    d->size / 1024, dt > 0.05 ? (double)(d->offset - d->start_offset) / 1024.0 / dt : 0.0,
	    d->state);
}

static void
report_draw(struct report *r)
{
	unsigned int i;

	report_erase(r);
	if (r->ndevs <= REPORT_LIVE_LINES_MAX) {
		for (i = 0; i < r->ndevs; i++)
			report_draw_dev(r, &r->devs[i]);
		r->drawn = r->ndevs;
	} else {
		unsigned int receiving = 0, done = 0;
		uint64_t bytes = 0;

		for (i = 0; i < r->ndevs; i++) {
			if (r->devs[i].size && r->devs[i].offset < r->devs[i].size)
				receiving++;
			if (strcmp(r->devs[i].state, "up to date") == 0)
				done++;
			bytes += r->devs[i].offset;
		}
		fprintf(r->out, "%u devices: %u receiving, %u up to date, %.1f MiB stored\n",
		    r->ndevs, receiving, done, (double)bytes / 1048576.0);
		r->drawn = 1;
	}
	fflush(r->out);
	r->dirty = false;
}

static void
report_redraw_cb(evutil_socket_t fd, short what, void *arg)
{
	struct report *r = arg;

	(void)fd;
	(void)what;
	if (r->dirty)
		report_draw(r);
}

int
report_new(struct event_base *base, const char *events_path, enum report_mode mode,
    struct report **out, char *err, size_t errlen)
{
	struct report *r = calloc(1, sizeof(*r));

	if (!r) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	r->base = base;
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	if (events_path && strcmp(events_path, "-") == 0) {
		r->events = stdout;
	} else if (events_path) {
		r->events = fopen(events_path, "we");
		if (!r->events) {
			int e = errno;

			snprintf(err, errlen, "cannot write the events to %s: %s", events_path,
			    strerror(e));
			free(r);
			return -e;
		}
		r->events_owned = true;
	}
	r->out = r->events == stdout ? stderr : stdout;
	if (mode == REPORT_MODE_AUTO)
		mode = isatty(fileno(r->out)) ? REPORT_MODE_LIVE : REPORT_MODE_PLAIN;
	r->mode = mode;
	if (mode == REPORT_MODE_LIVE) {
		struct timeval tv = {0, (suseconds_t)REPORT_REDRAW_MS * 1000};

		r->ev_redraw = event_new(base, -1, EV_PERSIST, report_redraw_cb, r);
		if (!r->ev_redraw || event_add(r->ev_redraw, &tv) < 0) {
			snprintf(err, errlen, "out of memory");
			report_free(r);
			return -ENOMEM;
		}
	}
	*out = r;
	return 0;
}

void
report_event(struct report *r, const char *serial, const char *event, json_t *fields)
{
	json_t *o =
	    json_pack("{s:f, s:s, s:s}", "t", report_now(r), "serial", serial, "event", event);
	char *line;

	if (o && fields)
		json_object_update(o, fields);
	json_decref(fields);
	if (!o || !r->events) {
		json_decref(o);
		return;
	}
	/* One compact line per event, keys in a stable order (t, serial, event first). */
	line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
	if (line) {
		fprintf(r->events, "%s\n", line);
		fflush(r->events);
		free(line);
	}
	json_decref(o);
}

static void
report_vprint(
    struct report *r, FILE *f, const char *prefix, const char *serial, const char *fmt, va_list ap)
{
	/* Messages scroll above the live lines, which the next redraw puts back. */
	if (r->mode == REPORT_MODE_LIVE)
		report_erase(r);
	fputs(prefix, f);
	if (serial)
		fprintf(f, "%s: ", serial);
	vfprintf(f, fmt, ap);
	fputc('\n', f);
	fflush(f);
	if (r->mode == REPORT_MODE_LIVE)
		r->dirty = true;
}

void
report_say(struct report *r, const char *serial, const char *fmt, ...)
{
	va_list ap;

	if (r->mode == REPORT_MODE_QUIET)
		return;
	va_start(ap, fmt);
	report_vprint(r, r->out, "", serial, fmt, ap);
	va_end(ap);
}

void
report_error(struct report *r, const char *serial, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report_vprint(r, stderr, "otagw-devsim: ", serial, fmt, ap);
	va_end(ap);
}

unsigned int
report_add_device(struct report *r, const char *serial)
{
	struct report_dev *d;

	if (r->ndevs == r->cap) {
		unsigned int cap = r->cap ? r->cap * 2 : 8;
		struct report_dev *n = realloc(r->devs, cap * sizeof(*n));

		if (!n)
			return UINT32_MAX; /* report_status() ignores it */
		r->devs = n;
		r->cap = cap;
	}
	d = &r->devs[r->ndevs];
	memset(d, 0, sizeof(*d));
	snprintf(d->serial, sizeof(d->serial), "%s", serial);
	snprintf(d->state, sizeof(d->state), "starting");
	d->decile = -1;
	r->dirty = true;
	return r->ndevs++;
}

void
report_status(struct report *r, unsigned int dev, const char *from, const char *to, uint32_t offset,
    uint32_t size, const char *state)
{
	struct report_dev *d;
	bool new_transfer;

	if (dev >= r->ndevs)
		return;
	d = &r->devs[dev];
	new_transfer = size != d->size || strcmp(to ? to : "", d->to) != 0 || offset < d->offset;
	snprintf(d->from, sizeof(d->from), "%s", from ? from : "");
	snprintf(d->to, sizeof(d->to), "%s", to ? to : "");
	snprintf(d->state, sizeof(d->state), "%s", state);
	if (new_transfer) {
		d->start_offset = offset;
		d->start_t = report_now(r);
		d->decile = -1;
	}
	d->offset = offset;
	d->size = size;
	r->dirty = true;
	if (r->mode == REPORT_MODE_PLAIN && size) {
		int decile = (int)((uint64_t)offset * 10 / size);

		if (decile != d->decile) {
			double dt = report_now(r) - d->start_t;
			char bar[REPORT_BAR_WIDTH + 3];

			d->decile = decile;
			report_bar(bar, offset, size);
			fprintf(r->out, "%s: %s %3d%% %u/%u bytes, %.1f KiB/s\n", d->serial, bar,
			    (int)((uint64_t)offset * 100 / size), offset, size,
			    dt > 0.05 ? (double)(offset - d->start_offset) / 1024.0 / dt : 0.0);
			fflush(r->out);
		}
	}
}

void
report_free(struct report *r)
{
	if (!r)
		return;
	if (r->mode == REPORT_MODE_LIVE && r->ndevs)
		report_draw(r);
	if (r->ev_redraw)
		event_free(r->ev_redraw);
	/* Each event was flushed as written; a close error still means the file may be short. */
	if (r->events_owned && fclose(r->events) != 0)
		fprintf(stderr, "otagw-devsim: the events file may be incomplete: %s\n",
		    strerror(errno));
	free(r->devs);
	free(r);
}
