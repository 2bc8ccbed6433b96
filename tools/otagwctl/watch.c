/* otagwctl watch (otagwctl(1)): follows downloads and transfers from otagwd's signals. It keeps
 * a copy of every object (GetManagedObjects, then PropertiesChanged, InterfacesAdded and
 * InterfacesRemoved applied to it) and shows it three ways: on a terminal, a block of progress
 * bars at the bottom redrawn in place at most 10 times a second, with lines that stay printed
 * above it; otherwise plain lines, one per event; with --json, one JSON line per signal. It
 * waits for otagwd when it is not running and for the bus when that goes away. sd-event runs
 * the bus, the signals (SIGINT, SIGTERM, SIGWINCH) and the redraw timer. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "ctl.h"

#define WATCH_REDRAW_US    (100 * 1000ULL) /* at most 10 redraws a second */
#define WATCH_RECONNECT_US (1000 * 1000ULL)
#define WATCH_LINE_MAX     1024
#define WATCH_BAR_MIN      10
#define WATCH_BAR_MAX      60
#define WATCH_TAIL_MAX     22

struct watch {
	struct client *c;
	sd_event *ev;
	bool tty, until_idle;
	int exit_code;

	/* what otagwd shows */
	bool running;      /* io.otagw has an owner */
	char owner[256];   /* its unique name */
	uint64_t snapshot; /* cookie of the GetManagedObjects reply: older signals are stale */
	json_t *mgr;       /* Manager1 properties */
	json_t *objects;   /* path -> {interface -> properties} */
	json_t *deciles;   /* path -> progress decile last printed (plain lines) */
	json_t *said;      /* path -> the outcome last printed above the block (terminal) */
	bool said_absent;  /* "not running" printed since it was last running */

	/* the terminal */
	unsigned cols;
	unsigned drawn; /* lines of the block on the screen */
	bool dirty;
	uint64_t drawn_at;
	sd_event_source *redraw, *reconnect;
};

/* Microseconds on clk: CLOCK_MONOTONIC for intervals, CLOCK_REALTIME for what is shown. */
static uint64_t
watch_clock_us(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static bool
watch_active_state(const char *s)
{
	return strcmp(s, "downloading") == 0 || strcmp(s, "queued") == 0 ||
	       strcmp(s, "transferring") == 0 || strcmp(s, "verifying") == 0;
}

static json_t *
watch_device(const struct watch *w, const char *path)
{
	return json_object_get(json_object_get(w->objects, path), CTL_IFACE_DEV);
}

static void
watch_columns(struct watch *w)
{
	struct winsize ws;
	const char *e;
	long v;

	w->cols = 80;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
		w->cols = ws.ws_col;
	} else if ((e = getenv("COLUMNS")) != NULL && (v = strtol(e, NULL, 10)) > 0 && v < 10000) {
		w->cols = (unsigned)v;
	}
}

/* --- the terminal block --- */

/* Puts out one line of the block, cut to the width so it never wraps. */
static void
watch_put_line(struct watch *w, const char *s)
{
	size_t max = w->cols > 1 ? w->cols - 1 : 1;

	printf("%.*s\n", (int)max, s);
	w->drawn++;
}

static void
watch_erase(struct watch *w)
{
	if (w->drawn > 0)
		printf("\033[%uA", w->drawn);
	printf("\r\033[J");
	w->drawn = 0;
}

static void
watch_summary(struct watch *w, char *buf, size_t len)
{
	const char *k;
	json_t *o, *d;
	unsigned downloading = 0;
	char cache[32];
	size_t n;

	if (!w->running) {
		snprintf(buf, len, "otagwd is not running; waiting for it");
		return;
	}
	json_object_foreach(w->objects, k, o)
	{
		d = json_object_get(o, CTL_IFACE_DEV);
		if (d != NULL && strcmp(fmt_str(d, "State"), "downloading") == 0)
			downloading++;
	}
	fmt_bytes(cache, sizeof(cache), fmt_u64(w->mgr, "CacheBytes"));
	n = (size_t)snprintf(buf, len, "otagwd %s: %llu connected, %llu transferring, ",
	    fmt_str(w->mgr, "State"), (unsigned long long)fmt_u64(w->mgr, "ConnectedDevices"),
	    (unsigned long long)fmt_u64(w->mgr, "ActiveTransfers"));
	if (n < len && downloading > 0)
		n += (size_t)snprintf(buf + n, len - n, "%u downloading, ", downloading);
	if (n < len)
		snprintf(buf + n, len - n, "%llu queued, cache %s",
		    (unsigned long long)fmt_u64(w->mgr, "QueuedTransfers"), cache);
}

/* One progress line: "GW-0042 bench transferring [####....]  45 % 10.2 KiB/s 0:02:10". */
static void
watch_bar_line(struct watch *w, const json_t *d, int serial_w, int link_w, char *buf, size_t len)
{
	const char *state = fmt_str(d, "State");
	uint64_t done = fmt_u64(d, "BytesDone"), total = fmt_u64(d, "BytesTotal");
	double rate = fmt_real(d, "Rate");
	int pct = fmt_percent(d), bar, fill, i;
	char tail[80] = "", r[32], eta[32];
	size_t n, head;

	if (pct < 0)
		pct = 0;
	if (rate > 0.0 &&
	    (strcmp(state, "transferring") == 0 || strcmp(state, "downloading") == 0)) {
		fmt_bytes(r, sizeof(r), (uint64_t)rate);
		fmt_duration(
		    eta, sizeof(eta), done < total ? (uint64_t)((double)(total - done) / rate) : 0);
		snprintf(tail, sizeof(tail), " %s/s %s", r, eta);
	}
	n = (size_t)snprintf(buf, len, "%-*s %-*s %-12s ", serial_w, fmt_str(d, "Serial"), link_w,
	    fmt_str(d, "Link"), state);
	head = n;
	/* the bar takes what is left of the width after " [" "]" " 100 %" and room for the
	 * longest tail (" 1023.9 KiB/s 99:59:59"), so it keeps its size when the rate shows */
	bar = (int)w->cols - 1 - (int)head - 2 - 6 - WATCH_TAIL_MAX;
	if (bar > WATCH_BAR_MAX)
		bar = WATCH_BAR_MAX;
	if (bar >= WATCH_BAR_MIN && n + (size_t)bar + 3 < len) {
		fill = bar * pct / 100;
		buf[n++] = '[';
		for (i = 0; i < bar; i++)
			buf[n++] = i < fill ? '#' : '.';
		buf[n++] = ']';
		buf[n] = '\0';
	}
	if (n < len)
		snprintf(buf + n, len - n, " %3d %%%s", pct, tail);
}

static void
watch_draw(struct watch *w)
{
	char line[WATCH_LINE_MAX];
	const char *k;
	json_t *o, *d;
	int serial_w = 0, link_w = 0, l;

	watch_erase(w);
	watch_summary(w, line, sizeof(line));
	watch_put_line(w, line);
	json_object_foreach(w->objects, k, o)
	{
		d = json_object_get(o, CTL_IFACE_DEV);
		if (d == NULL || !watch_active_state(fmt_str(d, "State")))
			continue;
		if ((l = (int)strlen(fmt_str(d, "Serial"))) > serial_w)
			serial_w = l;
		if ((l = (int)strlen(fmt_str(d, "Link"))) > link_w)
			link_w = l;
	}
	/* objects is keyed by path, which sorts like the serials it encodes closely enough;
	 * sort by serial for a stable order anyway */
	{
		json_t *list = json_array();
		size_t i, j, n;

		json_object_foreach(w->objects, k, o)
		{
			d = json_object_get(o, CTL_IFACE_DEV);
			if (d != NULL && watch_active_state(fmt_str(d, "State")))
				json_array_append(list, d);
		}
		n = json_array_size(list);
		for (i = 1; i < n; i++) /* insertion sort: a handful of lines */
			for (j = i; j > 0 && strcmp(fmt_str(json_array_get(list, j - 1), "Serial"),
						 fmt_str(json_array_get(list, j), "Serial")) > 0;
			     j--) {
				json_t *a = json_incref(json_array_get(list, j - 1));

				json_array_set(list, j - 1, json_array_get(list, j));
				json_array_set_new(list, j, a);
			}
		json_array_foreach(list, i, d)
		{
			watch_bar_line(w, d, serial_w, link_w, line, sizeof(line));
			watch_put_line(w, line);
		}
		json_decref(list);
	}
	fflush(stdout);
	w->dirty = false;
	w->drawn_at = watch_clock_us(CLOCK_MONOTONIC);
}

static int
watch_redraw_cb(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct watch *w = userdata;

	(void)s;
	(void)usec;
	if (w->dirty)
		watch_draw(w);
	return 0;
}

/* The block changed: redraw now, or when 100 ms have passed since the last redraw. */
static void
watch_touch(struct watch *w)
{
	uint64_t now = watch_clock_us(CLOCK_MONOTONIC);

	if (!w->tty || w->c->json)
		return;
	w->dirty = true;
	if (now >= w->drawn_at + WATCH_REDRAW_US) {
		watch_draw(w);
		return;
	}
	sd_event_source_set_time(w->redraw, w->drawn_at + WATCH_REDRAW_US);
	sd_event_source_set_enabled(w->redraw, SD_EVENT_ONESHOT);
}

/* A line that stays: above the block on a terminal, else with the time in front. */
static void watch_say(struct watch *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
watch_say(struct watch *w, const char *fmt, ...)
{
	char msg[WATCH_LINE_MAX], when[64];
	va_list ap;

	if (w->c->json)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (w->tty) {
		fmt_time_clock(when, sizeof(when));
		watch_erase(w);
		printf("%s %s\n", when, msg);
		watch_draw(w);
	} else {
		fmt_time_iso(when, sizeof(when), 0);
		printf("%s %s\n", when, msg);
		fflush(stdout);
	}
}

/* --- the model --- */

static bool
watch_idle(const struct watch *w)
{
	const char *k;
	json_t *o, *d;

	json_object_foreach(w->objects, k, o)
	{
		d = json_object_get(o, CTL_IFACE_DEV);
		if (d != NULL && watch_active_state(fmt_str(d, "State")))
			return false;
	}
	return true;
}

static void
watch_check_idle(struct watch *w)
{
	if (w->until_idle && w->running && watch_idle(w))
		sd_event_exit(w->ev, CTL_EXIT_OK);
}

/* A device's state changed from old to the one in d. Plain lines tell every change; on a
 * terminal, where the block shows the transfer itself, a line stays for how it ended: waiting
 * for the install, installed, failed, error or aborted, once per outcome. */
static void
watch_device_state(struct watch *w, const char *path, const json_t *d, const char *old)
{
	const char *serial = fmt_str(d, "Serial"), *state = fmt_str(d, "State");
	const char *target = fmt_str(d, "TargetVersion"), *reason = fmt_str(d, "LastReason");
	bool aborted = strcmp(state, "idle") == 0 &&
		       strcmp(fmt_str(d, "LastResult"), "aborted") == 0 && watch_active_state(old);
	bool outcome = strcmp(state, "awaiting-install") == 0 || strcmp(state, "installed") == 0 ||
		       strcmp(state, "failed") == 0 || strcmp(state, "error") == 0 || aborted;
	const char *said = json_string_value(json_object_get(w->said, path));

	if (w->tty) {
		if (watch_active_state(state))
			json_object_del(w->said, path); /* a new attempt: its outcome is news */
		if (!outcome || (said != NULL && strcmp(said, state) == 0))
			return;
		json_object_set_new(w->said, path, json_string(state));
	}
	if (strcmp(state, "installed") == 0 || strcmp(state, "awaiting-install") == 0)
		watch_say(w, w->tty ? "%s: %s %s" : "%s %s %s", serial, state, target);
	else if (outcome)
		watch_say(w, w->tty ? "%s: %s: %s" : "%s %s: %s", serial,
		    aborted ? "aborted" : state, reason);
	else if (strcmp(state, "transferring") == 0 || strcmp(state, "downloading") == 0 ||
		 strcmp(state, "queued") == 0)
		watch_say(w, "%s %s %s->%s %d %%", serial, state, fmt_str(d, "CurrentVersion"),
		    target, fmt_percent(d) < 0 ? 0 : fmt_percent(d));
	else
		watch_say(w, "%s %s", serial, state);
}

/* Plain lines: progress passing a multiple of 10 %. */
static void
watch_device_progress(struct watch *w, const char *path, const json_t *d)
{
	const char *state = fmt_str(d, "State");
	int pct = fmt_percent(d), decile = pct < 0 ? 0 : pct / 10;
	char rate[32];

	if (w->tty || (strcmp(state, "transferring") != 0 && strcmp(state, "downloading") != 0))
		return;
	if (decile <= json_integer_value(json_object_get(w->deciles, path)))
		return;
	json_object_set_new(w->deciles, path, json_integer(decile));
	if (decile >= 10)
		return;                   /* 100 % shows as the next state */
	if (fmt_real(d, "Rate") <= 0.0) { /* not measured yet */
		watch_say(w, "%s %s %d %%", fmt_str(d, "Serial"), state, decile * 10);
		return;
	}
	fmt_bytes(rate, sizeof(rate), (uint64_t)fmt_real(d, "Rate"));
	watch_say(w, "%s %s %d %% %s/s", fmt_str(d, "Serial"), state, decile * 10, rate);
}

/* Applies changed properties of iface on path. */
static void
watch_apply(struct watch *w, const char *path, const char *iface, json_t *changed)
{
	json_t *obj, *props;
	char old_state[32];
	bool was_connected;
	const char *k;
	json_t *v;

	if (strcmp(path, CTL_PATH) == 0 && strcmp(iface, CTL_IFACE_MGR) == 0) {
		const char *was = fmt_str(w->mgr, "State");
		char prev[32];

		snprintf(prev, sizeof(prev), "%s", was);
		json_object_foreach(changed, k, v) json_object_set(w->mgr, k, v);
		if (strcmp(prev, fmt_str(w->mgr, "State")) != 0 && !w->tty)
			watch_say(w, "otagwd %s", fmt_str(w->mgr, "State"));
		watch_touch(w);
		return;
	}
	obj = json_object_get(w->objects, path);
	if (obj == NULL) {
		obj = json_object();
		json_object_set_new(w->objects, path, obj);
	}
	props = json_object_get(obj, iface);
	if (props == NULL) {
		props = json_object();
		json_object_set_new(obj, iface, props);
	}
	snprintf(old_state, sizeof(old_state), "%s", fmt_str(props, "State"));
	was_connected = fmt_bool(props, "Connected");
	json_object_foreach(changed, k, v) json_object_set(props, k, v);
	if (strcmp(iface, CTL_IFACE_DEV) == 0) {
		if (was_connected != fmt_bool(props, "Connected") && !w->tty)
			watch_say(w, "%s %s", fmt_str(props, "Serial"),
			    fmt_bool(props, "Connected") ? "connected" : "disconnected");
		if (strcmp(old_state, fmt_str(props, "State")) != 0) {
			json_object_set_new(
			    w->deciles, path, json_integer(fmt_percent(props) / 10));
			watch_device_state(w, path, props, old_state);
		} else {
			watch_device_progress(w, path, props);
		}
	}
	watch_touch(w);
}

/* --- signals from otagwd --- */

/* The time and path every JSON line starts with. */
static json_t *
watch_json_line(const char *path)
{
	return json_pack(
	    "{sIss}", "Time", (json_int_t)watch_clock_us(CLOCK_REALTIME), "Path", path);
}

static bool
watch_stale(struct watch *w, sd_bus_message *m)
{
	const char *sender = sd_bus_message_get_sender(m);
	uint64_t cookie = 0;

	if (!w->running || sender == NULL || strcmp(sender, w->owner) != 0)
		return true;
	return sd_bus_message_get_cookie(m, &cookie) >= 0 && cookie < w->snapshot;
}

static int
watch_properties_cb(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct watch *w = userdata;
	const char *path = sd_bus_message_get_path(m), *iface;
	json_t *changed = json_object(), *line;

	(void)error;
	if (watch_stale(w, m) || path == NULL || changed == NULL ||
	    sd_bus_message_read(m, "s", &iface) < 0 || client_read_props(m, changed) < 0)
		goto out;
	if (w->c->json) {
		line = watch_json_line(path);
		json_object_set_new(line, "Interface", json_string(iface));
		if (strcmp(iface, CTL_IFACE_DEV) == 0)
			json_object_set(
			    line, "Serial", json_object_get(watch_device(w, path), "Serial"));
		json_object_set(line, "Changed", changed);
		fmt_print_json(line);
		fflush(stdout);
		json_decref(line);
	}
	watch_apply(w, path, iface, changed);
	watch_check_idle(w);
out:
	json_decref(changed);
	return 0;
}

static int
watch_added_cb(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct watch *w = userdata;
	const char *path, *iface;
	json_t *ifaces = NULL, *props, *line;
	bool known;

	(void)error;
	if (watch_stale(w, m) || sd_bus_message_read(m, "o", &path) < 0 ||
	    client_read_value(m, &ifaces) < 0 || !json_is_object(ifaces))
		goto out;
	if (w->c->json) {
		line = watch_json_line(path);
		json_object_set(line, "Added", ifaces);
		fmt_print_json(line);
		fflush(stdout);
		json_decref(line);
	}
	known = watch_device(w, path) != NULL;
	json_object_foreach(ifaces, iface, props)
	{
		if (json_object_get(w->objects, path) == NULL)
			json_object_set_new(w->objects, path, json_object());
		json_object_set(json_object_get(w->objects, path), iface, props);
		if (strcmp(iface, CTL_IFACE_DEV) == 0 && !known && !w->tty)
			watch_say(w, "%s connected (new device on %s)", fmt_str(props, "Serial"),
			    fmt_str(props, "Link"));
	}
	watch_touch(w);
	watch_check_idle(w);
out:
	json_decref(ifaces);
	return 0;
}

static int
watch_removed_cb(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct watch *w = userdata;
	const char *path;
	json_t *ifaces = NULL, *line, *iface;
	size_t i;

	(void)error;
	if (watch_stale(w, m) || sd_bus_message_read(m, "o", &path) < 0 ||
	    client_read_value(m, &ifaces) < 0 || !json_is_array(ifaces))
		goto out;
	if (w->c->json) {
		line = watch_json_line(path);
		json_object_set(line, "Removed", ifaces);
		fmt_print_json(line);
		fflush(stdout);
		json_decref(line);
	}
	json_array_foreach(ifaces, i, iface)
	    json_object_del(json_object_get(w->objects, path), json_string_value(iface));
	if (json_object_size(json_object_get(w->objects, path)) == 0)
		json_object_del(w->objects, path);
	watch_touch(w);
out:
	json_decref(ifaces);
	return 0;
}

/* Reads everything afresh: the owner, the manager, every object. */
static void
watch_load(struct watch *w)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	json_t *objs = NULL, *mgr = NULL, *ifaces, *props;
	const char *owner, *path, *iface;
	uint64_t cookie = 0;
	int r;

	w->running = false;
	r = sd_bus_call_method(w->c->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
	    "org.freedesktop.DBus", "GetNameOwner", &e, &reply, "s", CTL_NAME);
	if (r < 0 || sd_bus_message_read(reply, "s", &owner) < 0)
		goto absent;
	snprintf(w->owner, sizeof(w->owner), "%s", owner);
	reply = sd_bus_message_unref(reply);
	r = sd_bus_call_method(w->c->bus, CTL_NAME, CTL_PATH, "org.freedesktop.DBus.ObjectManager",
	    "GetManagedObjects", &e, &reply, NULL);
	if (r < 0 || client_read_value(reply, &objs) < 0 || !json_is_object(objs))
		goto absent;
	(void)sd_bus_message_get_cookie(reply, &cookie);
	r = client_get_all(w->c, CTL_PATH, CTL_IFACE_MGR, NULL, &mgr);
	if (r != 0)
		goto absent;
	json_decref(w->mgr);
	w->mgr = mgr;
	json_object_clear(w->objects);
	json_object_clear(w->deciles);
	json_object_foreach(objs, path, ifaces)
	{
		json_object_set(w->objects, path, ifaces);
		json_object_foreach(ifaces, iface, props)
		{
			if (strcmp(iface, CTL_IFACE_DEV) == 0)
				json_object_set_new(
				    w->deciles, path, json_integer(fmt_percent(props) / 10));
		}
	}
	w->snapshot = cookie;
	w->running = true;
	if (w->said_absent && !w->c->json)
		watch_say(w, "otagwd %s", fmt_str(w->mgr, "State"));
	w->said_absent = false;
	goto out;
absent:
	if (!w->said_absent && !w->c->json) {
		if (w->tty)
			watch_touch(w);
		else
			watch_say(w, "otagwd is not running; waiting for it");
	}
	w->said_absent = true;
out:
	json_decref(objs);
	sd_bus_error_free(&e);
	sd_bus_message_unref(reply);
	watch_touch(w);
	watch_check_idle(w);
}

static int
watch_owner_cb(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct watch *w = userdata;
	const char *name, *old, *new;

	(void)error;
	if (sd_bus_message_read(m, "sss", &name, &old, &new) < 0 || strcmp(name, CTL_NAME) != 0)
		return 0;
	if (new[0] != '\0') {
		watch_load(w);
		return 0;
	}
	w->running = false;
	if (!w->said_absent && !w->c->json && !w->tty)
		watch_say(w, "otagwd is not running; waiting for it");
	w->said_absent = true;
	watch_touch(w);
	return 0;
}

static int watch_connect(struct watch *w);

static int
watch_reconnect_cb(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct watch *w = userdata;

	(void)s;
	(void)usec;
	if (w->c->bus != NULL && !sd_bus_is_open(w->c->bus)) {
		sd_bus_detach_event(w->c->bus);
		w->c->bus = sd_bus_close_unref(w->c->bus);
	}
	if (watch_connect(w) < 0) {
		sd_event_source_set_time(
		    w->reconnect, watch_clock_us(CLOCK_MONOTONIC) + WATCH_RECONNECT_US);
		sd_event_source_set_enabled(w->reconnect, SD_EVENT_ONESHOT);
	}
	return 0;
}

static int
watch_disconnected_cb(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct watch *w = userdata;

	(void)m;
	(void)error;
	w->running = false;
	if (!w->said_absent && !w->c->json && !w->tty)
		watch_say(w, "otagwd is not running (the bus went away); waiting for it");
	w->said_absent = true;
	watch_touch(w);
	/* The bus is freed from the timer, outside its own dispatch. */
	sd_event_source_set_time(
	    w->reconnect, watch_clock_us(CLOCK_MONOTONIC) + WATCH_RECONNECT_US);
	sd_event_source_set_enabled(w->reconnect, SD_EVENT_ONESHOT);
	return 0;
}

/* Connects to the bus (if needed), subscribes to what otagwd sends, then reads it all. */
static int
watch_connect(struct watch *w)
{
	static const char rules[][200] = {
	    "type='signal',sender='" CTL_NAME "',interface='org.freedesktop.DBus.Properties',"
	    "member='PropertiesChanged',path_namespace='" CTL_PATH "'",
	    "type='signal',sender='" CTL_NAME "',interface='org.freedesktop.DBus.ObjectManager',"
	    "member='InterfacesAdded',path='" CTL_PATH "'",
	    "type='signal',sender='" CTL_NAME "',interface='org.freedesktop.DBus.ObjectManager',"
	    "member='InterfacesRemoved',path='" CTL_PATH "'",
	    "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
	    "member='NameOwnerChanged',arg0='" CTL_NAME "'",
	};
	static const sd_bus_message_handler_t handlers[] = {
	    watch_properties_cb, watch_added_cb, watch_removed_cb, watch_owner_cb};
	size_t i;
	int r;

	if (w->c->bus == NULL) {
		r = w->c->user ? sd_bus_open_user(&w->c->bus) : sd_bus_open_system(&w->c->bus);
		if (r < 0) {
			w->c->bus = NULL;
			return r;
		}
	}
	r = sd_bus_attach_event(w->c->bus, w->ev, SD_EVENT_PRIORITY_NORMAL);
	if (r >= 0)
		r = sd_bus_match_signal(w->c->bus, NULL, "org.freedesktop.DBus.Local", NULL,
		    "org.freedesktop.DBus.Local", "Disconnected", watch_disconnected_cb, w);
	for (i = 0; r >= 0 && i < sizeof(handlers) / sizeof(handlers[0]); i++)
		r = sd_bus_add_match(w->c->bus, NULL, rules[i], handlers[i], w);
	if (r < 0) {
		sd_bus_detach_event(w->c->bus);
		w->c->bus = sd_bus_close_unref(w->c->bus);
		return r;
	}
	watch_load(w);
	return 0;
}

static int
watch_signal_cb(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	struct watch *w = userdata;

	(void)s;
	if (si->ssi_signo == SIGWINCH) {
		watch_columns(w);
		if (w->tty && !w->c->json)
			watch_draw(w);
		return 0;
	}
	sd_event_exit(w->ev, CTL_EXIT_OK);
	return 0;
}

int
watch_run(struct client *c, bool until_idle)
{
	struct watch w = {.c = c, .until_idle = until_idle};
	sigset_t mask;
	int r, code = CTL_EXIT_FAILURE;

	w.tty = isatty(STDOUT_FILENO) == 1;
	watch_columns(&w);
	w.mgr = json_object();
	w.objects = json_object();
	w.deciles = json_object();
	w.said = json_object();
	if (!w.tty)
		setvbuf(stdout, NULL, _IOLBF, 0);
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGWINCH);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	r = sd_event_new(&w.ev);
	if (r >= 0)
		r = sd_event_add_signal(w.ev, NULL, SIGINT, watch_signal_cb, &w);
	if (r >= 0)
		r = sd_event_add_signal(w.ev, NULL, SIGTERM, watch_signal_cb, &w);
	if (r >= 0)
		r = sd_event_add_signal(w.ev, NULL, SIGWINCH, watch_signal_cb, &w);
	if (r >= 0)
		r = sd_event_add_time(
		    w.ev, &w.redraw, CLOCK_MONOTONIC, UINT64_MAX, 0, watch_redraw_cb, &w);
	if (r >= 0)
		r = sd_event_add_time(
		    w.ev, &w.reconnect, CLOCK_MONOTONIC, UINT64_MAX, 0, watch_reconnect_cb, &w);
	if (r < 0 || w.mgr == NULL || w.objects == NULL || w.deciles == NULL || w.said == NULL) {
		fprintf(
		    stderr, "otagwctl: cannot set up watch: %s\n", strerror(r < 0 ? -r : ENOMEM));
		goto out;
	}
	sd_event_source_set_enabled(w.redraw, SD_EVENT_OFF);
	sd_event_source_set_enabled(w.reconnect, SD_EVENT_OFF);
	if (w.tty && !c->json) {
		printf("\033[?25l"); /* no cursor blinking in the bars */
		watch_draw(&w);
	}
	if (watch_connect(&w) < 0) {
		if (!c->json && !w.tty)
			watch_say(&w, "otagwd is not running (cannot reach the %s); waiting for it",
			    client_bus_text(c));
		w.said_absent = true;
		sd_event_source_set_time(
		    w.reconnect, watch_clock_us(CLOCK_MONOTONIC) + WATCH_RECONNECT_US);
		sd_event_source_set_enabled(w.reconnect, SD_EVENT_ONESHOT);
	}
	r = sd_event_loop(w.ev);
	code = r < 0 ? CTL_EXIT_FAILURE : r;
	if (w.tty && !c->json) {
		if (w.dirty)
			watch_draw(&w);
		printf("\033[?25h");
		fflush(stdout);
	}
out:
	if (c->bus != NULL)
		sd_bus_detach_event(c->bus);
	sd_event_source_unref(w.redraw);
	sd_event_source_unref(w.reconnect);
	sd_event_unref(w.ev);
	json_decref(w.mgr);
	json_decref(w.objects);
	json_decref(w.deciles);
	json_decref(w.said);
	return code;
}
