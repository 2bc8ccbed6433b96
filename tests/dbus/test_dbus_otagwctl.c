/* otagwctl against the real otagwd on a private session bus: every command, plain and --json,
 * checked against what the devices are doing and against busctl's view of the same objects;
 * its exit codes and messages when otagwd is absent, the bus unreachable, the device unknown,
 * the command line wrong; check waiting for the outcome; abort of a running transfer; watch as
 * plain lines and JSON lines when stdout is not a terminal, --until-idle, waiting for otagwd,
 * and on a pseudo-terminal (the progress block redrawn in place; a sample is printed). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ck.h"
#include "dbustest.h"

/* In the match rule otagwctl watch adds last (on io.otagw's owner), before it reads the
 * objects; the bus may reorder the keys of a rule. */
#define WATCH_LAST_RULE "arg0='io.otagw'"

static const char links[] = WORLD_UNIX_LINK "[dbus]\nbus = session\n";

static void
start(struct world *w, struct dbt_bus *b, const char *tag, size_t size)
{
	world_init(w, tag, size);
	dbt_bus_start(b, w->dir, false);
	world_serve(w, NULL, "", links);
}

/* Starts a devsim on the link; args are added to --unix and --serial. */
static void
devsim(struct world *w, struct tproc *p, const char *serial, const char *const *extra)
{
	const char *args[16] = {"--unix", w->sock, "--serial", serial};
	size_t n = 4, i;

	for (i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	world_devsim(w, p, serial, args);
}

static void
ctl(struct dbt_out *o, const struct dbt_bus *b, int want, const char *const *args)
{
	dbt_ctl(o, b, NULL, args);
	ck_assert_msg(o->status == want, "otagwctl %s %s: exit %d, not %d\nstdout: %s\nstderr: %s",
	    args[0] != NULL ? args[0] : "", args[0] != NULL && args[1] != NULL ? args[1] : "",
	    o->status, want, o->out, o->err);
}

static void
has(const char *text, const char *needle)
{
	ck_assert_msg(strstr(text, needle) != NULL, "'%s' not in:\n%s", needle, text);
}

static bool
matches(const char *text, const char *re)
{
	regex_t r;
	bool m;

	ck_assert_int_eq(regcomp(&r, re, REG_EXTENDED | REG_NEWLINE | REG_NOSUB), 0);
	m = regexec(&r, text, 0, NULL, 0) == 0;
	regfree(&r);
	return m;
}

START_TEST(test_absent_and_usage)
{
	static const struct {
		const char *args[6];
		const char *err;
	} usage[] = {
	    {{"frobnicate"}, "unknown command 'frobnicate'"},
	    {{"show"}, "show takes one SERIAL"},
	    {{"show", "GW 1"}, "invalid serial 'GW 1': use 1 to 64 letters, digits, '-' or '_'"},
	    {{"abort", "a\tb"}, "invalid serial 'a\\x09b'"},
	    {{"history", "-n", "0"}, "invalid -n '0'"},
	    {{"history", "-n", "1001"}, "invalid -n '1001'"},
	    {{"history", "-n", "x"}, "invalid -n 'x'"},
	    {{"devices", "extra"}, "devices takes no arguments"},
	    {{"show", "--all", "GW-1"}, "--all goes with check only"},
	    {{"check"}, "check takes one SERIAL, or --all"},
	    {{"check", "--all", "GW-1"}, "check takes one SERIAL, or --all"},
	    {{"cache", "clear"}, "cache takes nothing or 'purge'"},
	    {{"--bogus"}, "unknown option '--bogus'"},
	    {{"status", "--until-idle"}, "--until-idle goes with watch only"},
	};
	struct world w;
	struct dbt_bus b;
	struct dbt_out o;
	struct tproc watch = {0};
	char *argv[] = {(char *)tproc_prog("OTAGWCTL"), "--user", "watch", NULL}, *log;
	char addr[600];
	size_t i, at = 0;

	world_init(&w, "ctl-absent", 4096);
	/* usage errors are found without asking anyone: no bus at all */
	snprintf(addr, sizeof(addr), "unix:path=%s/bus", w.dir);
	setenv("DBUS_SESSION_BUS_ADDRESS", addr, 1);
	for (i = 0; i < sizeof(usage) / sizeof(usage[0]); i++) {
		dbt_ctl(&o, &(struct dbt_bus){.system = false}, NULL, usage[i].args);
		ck_assert_msg(o.status == 2, "%s: exit %d: %s", usage[i].args[0], o.status, o.err);
		has(o.err, usage[i].err);
		has(o.err, "otagwctl: ");
		ck_assert_str_eq(o.out, "");
		dbt_out_free(&o);
	}
	dbt_ctl(&o, &(struct dbt_bus){0}, NULL, (const char *[]){"--help", NULL});
	ck_assert_int_eq(o.status, 0);
	has(o.out, "Usage: otagwctl");
	dbt_out_free(&o);
	dbt_ctl(&o, &(struct dbt_bus){0}, NULL, (const char *[]){"--version", NULL});
	ck_assert_str_eq(o.out, "otagwctl " OTAGW_VERSION "\n");
	dbt_out_free(&o);

	/* no bus: 3 */
	dbt_ctl(&o, &(struct dbt_bus){0}, NULL, (const char *[]){"status", NULL});
	ck_assert_int_eq(o.status, 3);
	has(o.err, "otagwctl: otagwd is not running (cannot reach the session bus: ");
	dbt_out_free(&o);

	/* a bus without otagwd: 3, and watch waits for it */
	dbt_bus_start(&b, w.dir, false);
	dbt_ctl(&o, &b, NULL, (const char *[]){"devices", NULL});
	ck_assert_int_eq(o.status, 3);
	has(o.err, "otagwctl: otagwd is not running (nothing owns io.otagw on the session bus)");
	dbt_out_free(&o);
	dbt_ctl(&o, &b, NULL, (const char *[]){"check", "GW-1", NULL});
	ck_assert_int_eq(o.status, 3);
	dbt_out_free(&o);
	log = tdir_join(w.dir, "watch.log");
	tproc_spawn_log(&watch, "watch", argv, log, NULL);
	ck_assert(
	    tproc_wait_out(&watch, "otagwd is not running; waiting for it", &at, E2E_TIMEOUT_MS));
	world_serve(&w, NULL, "", links);
	ck_assert_msg(tproc_wait_out(&watch, " otagwd running", &at, E2E_TIMEOUT_MS),
	    "watch did not see otagwd come");
	ck_assert_int_eq(tproc_stop(&watch, SIGINT, E2E_TIMEOUT_MS), 0);
	tproc_free(&watch);
	free(log);

	ck_assert_int_eq(world_gw_stop(&w), 0);
	world_free(&w);
	dbt_bus_free(&b);
}
END_TEST

/* Checks otagwctl's JSON object of a device against busctl's GetAll of its path. */
static void
same_as_busctl(struct dbt_bus *b, json_t *dev)
{
	const char *path = json_string_value(json_object_get(dev, "Path")), *k;
	struct dbt_out o;
	json_t *doc, *props, *v;

	ck_assert_ptr_nonnull(path);
	dbt_busctl(&o, b, NULL,
	    (const char *[]){"--json=short", "call", DBT_NAME, path,
		"org.freedesktop.DBus.Properties", "GetAll", "s", DBT_DEV, NULL});
	ck_assert_int_eq(o.status, 0);
	doc = dbt_json(o.out);
	props = json_array_get(json_object_get(doc, "data"), 0);
	ck_assert_uint_eq(json_object_size(props) + 1, json_object_size(dev)); /* + Path */
	json_object_foreach(props, k, v)
	{
		json_t *mine = json_object_get(dev, k), *theirs = json_object_get(v, "data");

		if (json_is_real(theirs) || json_is_real(mine))
			ck_assert_msg(
			    json_number_value(mine) == json_number_value(theirs), "%s", k);
		else
			ck_assert_msg(json_equal(mine, theirs), "%s differs", k);
	}
	json_decref(doc);
	dbt_out_free(&o);
}

START_TEST(test_commands)
{
	struct world w;
	struct dbt_bus b;
	struct dbt_out o;
	struct tproc a = {0}, c = {0}, slow = {0};
	json_t *j, *d;
	sd_bus *bus;
	size_t i;

	start(&w, &b, "ctl-commands", 300 * 1024 + 1);
	bus = dbt_connect(&b);
	devsim(&w, &a, "GW-0042", (const char *[]){"--once", NULL});
	world_devsim_exit(&w, &a, 0);
	tproc_free(&a);
	devsim(&w, &c, "GW-0043", NULL); /* stays connected */
	dbt_wait_str(&w, bus, "/io/otagw/device/GW_2d0043", DBT_DEV, "State", "installed");

	/* status */
	ctl(&o, &b, 0, (const char *[]){"status", NULL});
	has(o.out, "otagwd " OTAGW_VERSION ": running\n");
	has(o.out, "Devices:    2 known, ");
	has(o.out, "Transfers:  0 active, 0 queued (at most 8 at once)\n");
	has(o.out, "Cache:      300 KiB of 64.0 MiB in 1 payload; 1 hit, 1 miss\n");
	has(o.out, "Links:\n");
	ck_assert_msg(matches(o.out, "^  sim +unix +listen /.* +up +1 device$"), "%s", o.out);
	dbt_out_free(&o);
	ctl(&o, &b, 0, (const char *[]){"--json", "status", NULL});
	j = dbt_json(o.out);
	ck_assert_str_eq(json_string_value(json_object_get(j, "State")), "running");
	ck_assert_int_eq(json_integer_value(json_object_get(j, "DeviceCount")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "CacheBytes")), (json_int_t)w.size);
	ck_assert_str_eq(json_string_value(json_object_get(
			     json_array_get(json_object_get(j, "Links"), 0), "Name")),
	    "sim");
	ck_assert_uint_eq(strlen(o.out), strcspn(o.out, "\n") + 1); /* one line */
	json_decref(j);
	dbt_out_free(&o);

	/* devices */
	ctl(&o, &b, 0, (const char *[]){"devices", NULL});
	ck_assert_msg(matches(o.out, "^SERIAL +LINK +STATE +VERSION +TARGET +PROGRESS +LAST SEEN$"),
	    "%s", o.out);
	ck_assert_msg(matches(o.out, "^GW-0042 +sim +installed +2\\.0\\.0 +2\\.0\\.0 +[-0-9 %]+ "
				     "+[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}$"),
	    "%s", o.out);
	ck_assert_msg(
	    matches(o.out, "^GW-0043 +sim +installed +2\\.0\\.0 +2\\.0\\.0 +.* now$"), "%s", o.out);
	ck_assert_ptr_nonnull(strstr(o.out, "GW-0042"));
	ck_assert(strstr(o.out, "GW-0042") < strstr(o.out, "GW-0043"));
	dbt_out_free(&o);
	ctl(&o, &b, 0, (const char *[]){"devices", "--json", NULL});
	j = dbt_json(o.out);
	ck_assert_uint_eq(json_array_size(j), 2);
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_array_get(j, 0), "Serial")), "GW-0042");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 1), "Path")),
	    "/io/otagw/device/GW_2d0043");
	ck_assert(json_is_true(json_object_get(json_array_get(j, 1), "Connected")));
	json_array_foreach(j, i, d) same_as_busctl(&b, d);
	json_decref(j);
	dbt_out_free(&o);

	/* show */
	ctl(&o, &b, 0, (const char *[]){"show", "GW-0043", NULL});
	has(o.out, "GW-0043\n  Identity:    hardware devsim, software main, running 2.0.0\n");
	has(o.out, "  Link:        sim (");
	has(o.out, "), connected\n");
	has(o.out, "  State:       installed 2.0.0\n");
	has(o.out, "  Last seen:   now\n");
	dbt_out_free(&o);
	ctl(&o, &b, 0, (const char *[]){"--json", "show", "GW-0042", NULL});
	j = dbt_json(o.out);
	same_as_busctl(&b, j);
	json_decref(j);
	dbt_out_free(&o);
	ctl(&o, &b, 5, (const char *[]){"show", "GW-0099", NULL});
	ck_assert_str_eq(
	    o.err, "otagwctl: no device GW-0099 is known to otagwd (see otagwctl devices)\n");
	dbt_out_free(&o);

	/* check: waits for Memfault's answer */
	ctl(&o, &b, 0, (const char *[]){"check", "GW-0043", NULL});
	has(o.out, "GW-0043: up to date (Memfault: ");
	dbt_out_free(&o);
	ctl(&o, &b, 0, (const char *[]){"--json", "check", "GW-0043", NULL});
	j = dbt_json(o.out);
	ck_assert_str_eq(json_string_value(json_object_get(j, "State")), "up-to-date");
	json_decref(j);
	dbt_out_free(&o);
	ctl(&o, &b, 1, (const char *[]){"check", "GW-0042", NULL});
	has(o.err, "otagwctl: GW-0042 is not connected");
	dbt_out_free(&o);
	ctl(&o, &b, 5, (const char *[]){"check", "GW-0099", NULL});
	dbt_out_free(&o);
	ctl(&o, &b, 0, (const char *[]){"--json", "check", "--all", NULL});
	ck_assert_msg(matches(o.out, "^\\{\"Started\":[01]\\}$"), "%s", o.out);
	dbt_out_free(&o);

	/* abort a running transfer */
	devsim(&w, &slow, "GW-0044", (const char *[]){"--write-us-per-kib", "20000", NULL});
	dbt_wait_str(&w, bus, "/io/otagw/device/GW_2d0044", DBT_DEV, "State", "transferring");
	ctl(&o, &b, 0, (const char *[]){"abort", "GW-0044", NULL});
	ck_assert_str_eq(o.out, "GW-0044: aborted\n");
	dbt_out_free(&o);
	ctl(&o, &b, 1, (const char *[]){"abort", "GW-0044", NULL});
	has(o.err, "otagwctl: GW-0044 has nothing in progress to abort (idle)");
	dbt_out_free(&o);
	ctl(&o, &b, 0, (const char *[]){"--json", "show", "GW-0044", NULL});
	j = dbt_json(o.out);
	ck_assert_str_eq(json_string_value(json_object_get(j, "LastResult")), "aborted");
	ck_assert_str_eq(
	    json_string_value(json_object_get(j, "LastReason")), "Aborted by uid 0 (root)");
	json_decref(j);
	dbt_out_free(&o);
	tproc_stop(&slow, SIGTERM, E2E_TIMEOUT_MS);
	tproc_free(&slow);

	/* history */
	ctl(&o, &b, 0, (const char *[]){"history", NULL});
	ck_assert_msg(matches(o.out, "^STARTED +SERIAL +LINK +FROM +TO +RESULT +BYTES +DURATION "
				     "+REASON$"),
	    "%s", o.out);
	ck_assert_msg(
	    matches(o.out, "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2} +GW-0044 +sim "
			   "+1\\.0\\.0 +2\\.0\\.0 +aborted +.*Aborted by uid 0 \\(root\\)"),
	    "%s", o.out);
	ck_assert_msg(matches(o.out, " GW-0042 +sim +1\\.0\\.0 +2\\.0\\.0 +installed +300 KiB "
				     "+[0-9]:[0-9]{2}:[0-9]{2} "),
	    "%s", o.out);
	dbt_out_free(&o);
	ctl(&o, &b, 0, (const char *[]){"history", "GW-0042", "--json", "-n", "5", NULL});
	j = dbt_json(o.out);
	ck_assert_uint_eq(json_array_size(j), 1);
	d = json_array_get(j, 0);
	ck_assert_str_eq(json_string_value(json_object_get(d, "Result")), "installed");
	ck_assert_str_eq(json_string_value(json_object_get(d, "FromVersion")), "1.0.0");
	ck_assert_int_eq(json_integer_value(json_object_get(d, "Bytes")), (json_int_t)w.size);
	ck_assert_int_ge(json_integer_value(json_object_get(d, "Finished")),
	    json_integer_value(json_object_get(d, "Started")));
	ck_assert_uint_eq(json_object_size(d), 9);
	json_decref(j);
	dbt_out_free(&o);
	ctl(&o, &b, 0, (const char *[]){"--json", "history", "-n", "1", NULL});
	j = dbt_json(o.out);
	ck_assert_uint_eq(json_array_size(j), 1);
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_array_get(j, 0), "Serial")), "GW-0044");
	json_decref(j);
	dbt_out_free(&o);

	/* cache */
	ctl(&o, &b, 0, (const char *[]){"cache", NULL});
	has(o.out, "Cache: 300 KiB of 64.0 MiB in 1 payload; ");
	dbt_out_free(&o);
	ctl(&o, &b, 0, (const char *[]){"cache", "--json", NULL});
	j = dbt_json(o.out);
	ck_assert_uint_eq(json_object_size(j), 5);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "CacheMaxBytes")), 64 << 20);
	json_decref(j);
	dbt_out_free(&o);
	ctl(&o, &b, 0, (const char *[]){"--json", "cache", "purge", NULL});
	j = dbt_json(o.out);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "FreedBytes")), (json_int_t)w.size);
	json_decref(j);
	dbt_out_free(&o);
	ctl(&o, &b, 0, (const char *[]){"cache", "purge", NULL});
	ck_assert_str_eq(o.out, "Freed 0 B\n");
	dbt_out_free(&o);

	tproc_stop(&c, SIGTERM, E2E_TIMEOUT_MS);
	tproc_free(&c);
	sd_bus_flush_close_unref(bus);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	world_free(&w);
	dbt_bus_free(&b);
}
END_TEST

START_TEST(test_watch_plain)
{
	struct world w;
	struct dbt_bus b;
	struct tproc dev = {0}, plain = {0}, js = {0}, idle = {0};
	char *pargv[] = {(char *)tproc_prog("OTAGWCTL"), "--user", "watch", NULL};
	char *jargv[] = {(char *)tproc_prog("OTAGWCTL"), "--json", "watch", "--user", NULL};
	char *iargv[] = {(char *)tproc_prog("OTAGWCTL"), "watch", "--until-idle", "--user", NULL};
	char *plog, *jlog, *ilog, *text, *line, *save = NULL;
	size_t at = 0, n = 0;
	bool added = false, changed = false;
	sd_bus *bus;

	start(&w, &b, "ctl-watch", 200 * 1024 + 3);
	bus = dbt_connect(&b);
	plog = tdir_join(w.dir, "watch-plain.out");
	jlog = tdir_join(w.dir, "watch-json.out");
	ilog = tdir_join(w.dir, "watch-idle.out");
	tproc_spawn_log(&plain, "watch", pargv, plog, NULL);
	tproc_spawn_log(&js, "watch-json", jargv, jlog, NULL);
	/* nothing happens before both watch: each subscribes (its last rule follows otagwd's
	 * name), then reads the objects */
	ck_assert(dbt_wait_subscribed(bus, plain.pid, WATCH_LAST_RULE, E2E_TIMEOUT_MS));
	ck_assert(dbt_wait_subscribed(bus, js.pid, WATCH_LAST_RULE, E2E_TIMEOUT_MS));
	devsim(&w, &dev, "GW-0050", (const char *[]){"--once", "--write-us-per-kib", "8000", NULL});
	dbt_wait_str(&w, bus, "/io/otagw/device/GW_2d0050", DBT_DEV, "State", "transferring");
	tproc_spawn_log(&idle, "watch-idle", iargv, ilog, NULL);
	world_devsim_exit(&w, &dev, 0);
	/* --until-idle ends by itself once nothing is downloading, queued, transferring or
	 * verifying */
	ck_assert_int_eq(tproc_wait_exit(&idle, E2E_TIMEOUT_MS), 0);
	ck_assert(tproc_wait_out(&plain, "GW-0050 disconnected", &at, E2E_TIMEOUT_MS));
	ck_assert_int_eq(tproc_stop(&plain, SIGINT, E2E_TIMEOUT_MS), 0);
	ck_assert_int_eq(tproc_stop(&js, SIGTERM, E2E_TIMEOUT_MS), 0);

	text = tfile_read(plog, NULL);
	fprintf(stderr, "---- otagwctl watch, not a tty ----\n%s----\n", text);
	ck_assert_ptr_null(strchr(text, '\033'));
	ck_assert_msg(
	    matches(text, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{2}:"
			  "[0-9]{2} GW-0050 connected \\(new device on sim\\)$"),
	    "%s", text);
	ck_assert(matches(text, " GW-0050 transferring 1\\.0\\.0->2\\.0\\.0 0 %$"));
	ck_assert(matches(text, " GW-0050 transferring [1-9]0 %( [0-9.]+ [KM]?i?B/s)?$"));
	ck_assert(matches(text, " GW-0050 verifying$"));
	ck_assert(matches(text, " GW-0050 installed 2\\.0\\.0$"));
	ck_assert(matches(text, " GW-0050 disconnected$"));
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
		ck_assert_msg(matches(line, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}[+-][0-9:]{5} "),
		    "%s", line);
	free(text);

	text = tfile_read(jlog, NULL);
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		json_t *j = dbt_json(line);

		ck_assert_int_gt(json_integer_value(json_object_get(j, "Time")), 0);
		ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "Path")));
		if (json_object_get(j, "Added") != NULL &&
		    json_object_get(json_object_get(j, "Added"), DBT_DEV) != NULL)
			added = true;
		if (json_object_get(j, "Changed") != NULL &&
		    strcmp(json_string_value(json_object_get(j, "Path")),
			"/io/otagw/device/GW_2d0050") == 0) {
			ck_assert_str_eq(
			    json_string_value(json_object_get(j, "Serial")), "GW-0050");
			ck_assert_str_eq(
			    json_string_value(json_object_get(j, "Interface")), DBT_DEV);
			changed = true;
		}
		json_decref(j);
		n++;
	}
	ck_assert(added && changed);
	ck_assert_uint_gt(n, 5);
	free(text);

	tproc_free(&plain);
	tproc_free(&js);
	tproc_free(&idle);
	tproc_free(&dev);
	free(plog);
	free(jlog);
	free(ilog);
	sd_bus_flush_close_unref(bus);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	world_free(&w);
	dbt_bus_free(&b);
}
END_TEST

/* Reads what the pty has for up to ms milliseconds, appending to *buf. */
static void
pty_read(int fd, char **buf, size_t *len, size_t *max, unsigned ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	uint64_t end = tclock_ms() + ms;
	ssize_t n;

	while (tclock_ms() < end && poll(&p, 1, 20) >= 0) {
		if (!(p.revents & (POLLIN | POLLHUP)))
			continue;
		if (*max - *len < 4096) {
			*max = *max * 2 + 8192;
			*buf = realloc(*buf, *max);
			ck_assert_ptr_nonnull(*buf);
		}
		n = read(fd, *buf + *len, *max - *len - 1);
		if (n <= 0)
			break;
		*len += (size_t)n;
		(*buf)[*len] = '\0';
	}
}

/* The screen lines of a transcript, escape sequences dropped: what each redraw printed. */
static void
pty_print(const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\033') {
			s++;
			if (*s == '[')
				while (s[1] != '\0' && !((s[1] >= 'A' && s[1] <= 'Z') ||
							   (s[1] >= 'a' && s[1] <= 'z')))
					s++;
			if (s[1] != '\0')
				s++;
			continue;
		}
		if (*s != '\r')
			fputc(*s, stderr);
	}
}

START_TEST(test_watch_tty)
{
	struct winsize ws = {.ws_row = 24, .ws_col = 100};
	struct world w;
	struct dbt_bus b;
	struct tproc dev = {0};
	char *buf = NULL, *p, *last;
	size_t len = 0, max = 0;
	int master = -1, st = 0;
	sd_bus *bus;
	pid_t pid;

	start(&w, &b, "ctl-tty", 300 * 1024 + 3);
	pid = forkpty(&master, NULL, NULL, &ws);
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		setenv("TERM", "xterm", 1);
		execl(tproc_prog("OTAGWCTL"), "otagwctl", "--user", "watch", (char *)NULL);
		_exit(127);
	}
	bus = dbt_connect(&b);
	ck_assert(dbt_wait_subscribed(bus, pid, WATCH_LAST_RULE, E2E_TIMEOUT_MS));
	pty_read(master, &buf, &len, &max, 500);
	devsim(&w, &dev, "GW-0052", (const char *[]){"--once", "--write-us-per-kib", "8000", NULL});
	while (tproc_running(&dev))
		pty_read(master, &buf, &len, &max, 100);
	world_devsim_exit(&w, &dev, 0);
	for (int i = 0; i < 100 && (buf == NULL || strstr(buf, "GW-0052: installed 2.0.0") == NULL);
	     i++)
		pty_read(master, &buf, &len, &max, 100);
	kill(pid, SIGINT);
	pty_read(master, &buf, &len, &max, 500);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	close(master);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "watch ended with %d", st);
	ck_assert_ptr_nonnull(buf);

	/* the cursor hidden, then shown again; the block redrawn in place */
	ck_assert(strncmp(buf, "\033[?25l", 6) == 0);
	ck_assert_ptr_nonnull(strstr(buf, "\033[?25h"));
	ck_assert_ptr_nonnull(strstr(buf, "\033[2A\r\033[J"));
	ck_assert_ptr_nonnull(strstr(buf, "GW-0052 sim transferring ["));
	ck_assert_ptr_nonnull(strstr(buf, "#"));
	ck_assert_ptr_nonnull(strstr(buf, "GW-0052: installed 2.0.0"));
	/* no line reaches the last column: lines never wrap */
	for (p = buf; (last = strstr(p, "\r\n")) != NULL; p = last + 2) {
		const char *s = p, *e = last;
		size_t visible = 0;

		while (s < e) {
			if (*s == '\033') {
				while (s < e && !((*s >= 'A' && *s <= 'Z' && *s != '[') ||
						    (*s >= 'a' && *s <= 'z')))
					s++;
				s++;
				continue;
			}
			if (*s != '\r')
				visible++;
			s++;
		}
		ck_assert_uint_lt(visible, ws.ws_col);
	}
	/* a sample for people: the frames around the middle of the transfer, and the end */
	p = strstr(buf, "  50 %");
	if (p == NULL)
		p = strstr(buf, "transferring [");
	fprintf(stderr, "---- otagwctl watch on a %ux%u pseudo-terminal (escapes dropped) ----\n",
	    ws.ws_col, ws.ws_row);
	last = strstr(p, "GW-0052: awaiting-install");
	if (last == NULL)
		last = buf + len;
	while (p > buf && p[-1] != '\n')
		p--;
	{
		char *cut = strndup(p, (size_t)(last - p) > 900 ? 900 : (size_t)(last - p));

		if (strrchr(cut, '\n') != NULL) /* whole lines only */
			strrchr(cut, '\n')[1] = '\0';
		pty_print(cut);
		free(cut);
	}
	fprintf(stderr, "\n...\n");
	pty_print(last);
	fprintf(stderr, "----\n");
	free(buf);
	tproc_free(&dev);
	sd_bus_flush_close_unref(bus);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	world_free(&w);
	dbt_bus_free(&b);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("dbus_otagwctl");
	TCase *tc = tcase_create("otagwctl");

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_absent_and_usage);
	tcase_add_test(tc, test_commands);
	tcase_add_test(tc, test_watch_plain);
	tcase_add_test(tc, test_watch_tty);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(suite());
}
