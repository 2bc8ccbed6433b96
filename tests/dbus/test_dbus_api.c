/* The D-Bus API against the real otagwd on a private session-style bus, with busctl and an
 * sd-bus connection of the test's own: objects and properties match the fleet and the links
 * (device objects appear as devices say HELLO, with the documented path escaping), the history
 * matches the database, devices recorded in it are there after a restart; every method checks
 * its arguments and answers with the documented errors; CheckNow and Abort act on a device in
 * the middle of a transfer; PurgeCache frees the cache; LogControl1 reads and writes. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ck.h"
#include "dbustest.h"
#include "history.h"

static char links[512];

/* A world with a unix link "sim", a TCP link "lab-1.a" (a name that needs escaping) and the
 * service on the session bus. */
static void
start(struct world *w, struct dbt_bus *b, const char *tag, size_t size, uint16_t *port)
{
	*port = tnet_free_port();
	snprintf(links, sizeof(links),
	    WORLD_UNIX_LINK "[tcp \"lab-1.a\"]\nlisten = 127.0.0.1:%u\n"
			    "[dbus]\nbus = session\n",
	    *port);
	world_init(w, tag, size);
	dbt_bus_start(b, w->dir, false);
	world_serve(w, NULL, "", links);
}

/* busctl's JSON for a call: {"type": ..., "data": [...]}; returns data[0]. */
static json_t *
busctl_json(struct dbt_bus *b, json_t **doc, const char *const *args)
{
	struct dbt_out o;

	dbt_busctl(&o, b, NULL, args);
	ck_assert_msg(o.status == 0, "busctl failed: %s", o.err);
	*doc = dbt_json(o.out);
	dbt_out_free(&o);
	return json_array_get(json_object_get(*doc, "data"), 0);
}

/* The "data" of a property in busctl's JSON of an a{sv}. */
static json_t *
prop(json_t *props, const char *name)
{
	json_t *v = json_object_get(json_object_get(props, name), "data");

	ck_assert_msg(v != NULL, "no property %s", name);
	return v;
}

static void
wait_disconnected(struct world *w, sd_bus *bus, const char *path)
{
	uint64_t end = tclock_ms() + E2E_TIMEOUT_MS;
	int connected = 1;

	while (sd_bus_get_property_trivial(
		   bus, DBT_NAME, path, DBT_DEV, "Connected", NULL, 'b', &connected) >= 0 &&
	       connected) {
		if (tclock_ms() > end)
			world_fail(w, "the device stayed connected");
		tclock_sleep_ms(20);
	}
}

START_TEST(test_objects)
{
	struct world w;
	struct dbt_bus b;
	struct dbt_out o;
	json_t *doc, *objs, *l, *d, *h;
	sd_bus *bus;
	uint16_t port;
	char addr[300];
	int results[4];
	uint64_t bytes[4];

	start(&w, &b, "dbus-objects", 96 * 1024 + 5, &port);
	bus = dbt_connect(&b);
	ck_assert(dbt_wait_name(bus, true, E2E_TIMEOUT_MS));

	/* the links, escaped ("-" is _2d, "." is _2e); the manager itself is not listed */
	objs = busctl_json(&b, &doc,
	    (const char *[]){"--json=short", "call", DBT_NAME, DBT_PATH,
		"org.freedesktop.DBus.ObjectManager", "GetManagedObjects", NULL});
	ck_assert_uint_eq(json_object_size(objs), 2);
	ck_assert_ptr_null(json_object_get(objs, DBT_PATH));
	l = json_object_get(json_object_get(objs, "/io/otagw/link/lab_2d1_2ea"), DBT_LINK);
	ck_assert_ptr_nonnull(l);
	ck_assert_str_eq(json_string_value(prop(l, "Name")), "lab-1.a");
	ck_assert_str_eq(json_string_value(prop(l, "Kind")), "tcp");
	snprintf(addr, sizeof(addr), "listen 127.0.0.1:%u", port);
	ck_assert_str_eq(json_string_value(prop(l, "Address")), addr);
	ck_assert_str_eq(json_string_value(prop(l, "State")), "up");
	ck_assert_str_eq(json_string_value(prop(l, "LastError")), "");
	ck_assert_int_eq(json_integer_value(prop(l, "Connections")), 0);
	l = json_object_get(json_object_get(objs, "/io/otagw/link/sim"), DBT_LINK);
	ck_assert_ptr_nonnull(l);
	ck_assert_str_eq(json_string_value(prop(l, "Kind")), "unix");
	snprintf(addr, sizeof(addr), "listen %s/sim.sock", w.dir);
	ck_assert_str_eq(json_string_value(prop(l, "Address")), addr);
	json_decref(doc);

	/* the manager */
	dbt_busctl(&o, &b, NULL,
	    (const char *[]){"get-property", DBT_NAME, DBT_PATH, DBT_MGR, "Version", "State",
		"DeviceCount", "MaxTransfers", "CacheMaxBytes", "QueuedTransfers", NULL});
	ck_assert_int_eq(o.status, 0);
	ck_assert_str_eq(
	    o.out, "s \"" OTAGW_VERSION "\"\ns \"running\"\nu 0\nu 8\nt 67108864\nu 0\n");
	dbt_out_free(&o);

	/* two devices update; their objects appear, at the documented paths */
	world_device_once(&w, "a", "GW-0042_a", NULL);
	world_device_once(&w, "b", "8423", NULL);
	dbt_busctl(&o, &b, NULL,
	    (const char *[]){
		"call", DBT_NAME, DBT_PATH, DBT_MGR, "GetDevice", "s", "GW-0042_a", NULL});
	ck_assert_str_eq(o.out, "o \"/io/otagw/device/GW_2d0042_5fa\"\n");
	dbt_out_free(&o);
	dbt_busctl(&o, &b, NULL,
	    (const char *[]){"call", DBT_NAME, DBT_PATH, DBT_MGR, "GetDevice", "s", "8423", NULL});
	ck_assert_str_eq(o.out, "o \"/io/otagw/device/_38423\"\n");
	dbt_out_free(&o);
	wait_disconnected(&w, bus, "/io/otagw/device/GW_2d0042_5fa");
	wait_disconnected(&w, bus, "/io/otagw/device/_38423");

	d = busctl_json(&b, &doc,
	    (const char *[]){"--json=short", "call", DBT_NAME, "/io/otagw/device/GW_2d0042_5fa",
		"org.freedesktop.DBus.Properties", "GetAll", "s", DBT_DEV, NULL});
	ck_assert_str_eq(json_string_value(prop(d, "Serial")), "GW-0042_a");
	ck_assert_str_eq(json_string_value(prop(d, "HardwareVersion")), WORLD_HW);
	ck_assert_str_eq(json_string_value(prop(d, "SoftwareType")), WORLD_SWTYPE);
	ck_assert_str_eq(json_string_value(prop(d, "CurrentVersion")), WORLD_VERSION);
	ck_assert_str_eq(json_string_value(prop(d, "TargetVersion")), WORLD_VERSION);
	ck_assert_str_eq(json_string_value(prop(d, "Link")), "sim");
	ck_assert_str_eq(json_string_value(prop(d, "State")), "installed");
	ck_assert_str_eq(json_string_value(prop(d, "LastResult")), "installed");
	/* docs/dbus-api.md: an installed device shows size / size */
	ck_assert_int_eq(json_integer_value(prop(d, "BytesDone")), (json_int_t)w.size);
	ck_assert_int_eq(json_integer_value(prop(d, "BytesTotal")), (json_int_t)w.size);
	ck_assert(json_is_false(prop(d, "Connected")));
	ck_assert_int_gt(json_integer_value(prop(d, "LastSeen")), 0);
	json_decref(doc);
	ck_assert_uint_eq(dbt_get_u64(bus, DBT_PATH, DBT_MGR, "DeviceCount"), 2);
	ck_assert_uint_eq(dbt_get_u64(bus, DBT_PATH, DBT_MGR, "CacheMisses"), 1);
	ck_assert_uint_eq(dbt_get_u64(bus, DBT_PATH, DBT_MGR, "CacheHits"), 1);
	ck_assert_uint_eq(dbt_get_u64(bus, DBT_PATH, DBT_MGR, "CacheBytes"), w.size);
	ck_assert_uint_eq(dbt_get_u64(bus, DBT_PATH, DBT_MGR, "CacheEntries"), 1);

	/* a path that decodes to a device but is not its path is no object */
	dbt_busctl(&o, &b, NULL,
	    (const char *[]){"get-property", DBT_NAME, "/io/otagw/device/_38_34_32_33", DBT_DEV,
		"Serial", NULL});
	ck_assert_int_ne(o.status, 0);
	dbt_out_free(&o);

	/* the history, newest first, as the database has it */
	h = busctl_json(&b, &doc,
	    (const char *[]){"--json=short", "call", DBT_NAME, DBT_PATH, DBT_MGR, "GetHistory",
		"su", "", "10", NULL});
	ck_assert_uint_eq(json_array_size(h), 2);
	ck_assert_str_eq(json_string_value(json_array_get(json_array_get(h, 0), 2)), "8423");
	ck_assert_str_eq(json_string_value(json_array_get(json_array_get(h, 1), 2)), "GW-0042_a");
	for (size_t i = 0; i < 2; i++) {
		json_t *e = json_array_get(h, i);

		ck_assert_int_gt(json_integer_value(json_array_get(e, 0)), 0);
		ck_assert_int_ge(json_integer_value(json_array_get(e, 1)),
		    json_integer_value(json_array_get(e, 0)));
		ck_assert_str_eq(json_string_value(json_array_get(e, 3)), "sim");
		ck_assert_str_eq(json_string_value(json_array_get(e, 4)), "1.0.0");
		ck_assert_str_eq(json_string_value(json_array_get(e, 5)), WORLD_VERSION);
		ck_assert_str_eq(json_string_value(json_array_get(e, 6)), "installed");
		ck_assert_int_eq(json_integer_value(json_array_get(e, 8)), (json_int_t)w.size);
	}
	json_decref(doc);
	h = busctl_json(&b, &doc,
	    (const char *[]){"--json=short", "call", DBT_NAME, DBT_PATH, DBT_MGR, "GetHistory",
		"su", "GW-0042_a", "0", NULL});
	ck_assert_uint_eq(json_array_size(h), 1);
	json_decref(doc);

	/* the database agrees */
	sd_bus_flush_close_unref(bus);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	ck_assert_uint_eq(world_history(&w, "8423", results, bytes, NULL, 4), 1);
	ck_assert_int_eq(results[0], HISTORY_RESULT_INSTALLED);
	ck_assert_uint_eq(bytes[0], w.size);

	/* after a restart, the devices of the database are there from the start */
	world_gw_start(&w);
	bus = dbt_connect(&b);
	ck_assert(dbt_wait_name(bus, true, E2E_TIMEOUT_MS));
	objs = busctl_json(&b, &doc,
	    (const char *[]){"--json=short", "call", DBT_NAME, DBT_PATH,
		"org.freedesktop.DBus.ObjectManager", "GetManagedObjects", NULL});
	ck_assert_uint_eq(json_object_size(objs), 4);
	d = json_object_get(json_object_get(objs, "/io/otagw/device/_38423"), DBT_DEV);
	ck_assert_str_eq(json_string_value(prop(d, "Serial")), "8423");
	ck_assert_str_eq(json_string_value(prop(d, "State")), "installed");
	ck_assert(json_is_false(prop(d, "Connected")));
	json_decref(doc);
	sd_bus_flush_close_unref(bus);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	world_free(&w);
	dbt_bus_free(&b);
}
END_TEST

/* Calls member and checks it fails with error name and a message containing text. */
static void
expect_error(sd_bus *bus, const char *name, const char *text, const char *member, const char *sig,
    const char *arg, uint32_t u)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply;

	if (sig == NULL)
		reply = dbt_call(bus, &e, member, NULL);
	else if (strcmp(sig, "su") == 0)
		reply = dbt_call(bus, &e, member, sig, arg, u);
	else
		reply = dbt_call(bus, &e, member, sig, arg);
	ck_assert_msg(reply == NULL, "%s succeeded", member);
	ck_assert_msg(
	    sd_bus_error_has_name(&e, name), "%s: %s: %s, not %s", member, e.name, e.message, name);
	ck_assert_msg(
	    strstr(e.message, text) != NULL, "%s: '%s' lacks '%s'", member, e.message, text);
	sd_bus_error_free(&e);
}

static void
expect_ok(sd_bus *bus, const char *member, const char *sig, const char *arg)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply =
	    sig != NULL ? dbt_call(bus, &e, member, sig, arg) : dbt_call(bus, &e, member, NULL);

	ck_assert_msg(reply != NULL, "%s(%s): %s", member, arg != NULL ? arg : "", e.message);
	sd_bus_message_unref(reply);
}

START_TEST(test_methods)
{
	static const char args_fmt[] = "--unix";
	struct world w;
	struct dbt_bus b;
	struct tproc dev = {0};
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply;
	char long_serial[101], *path, *s;
	const char *args[] = {
	    args_fmt, NULL, "--serial", "GW-7", "--write-us-per-kib", "20000", NULL};
	uint64_t freed = 0;
	uint32_t started = 9;
	uint16_t port;
	sd_bus *bus;

	start(&w, &b, "dbus-methods", 256 * 1024 + 7, &port);
	bus = dbt_connect(&b);
	ck_assert(dbt_wait_name(bus, true, E2E_TIMEOUT_MS));

	/* arguments are checked first, with the value shown and what is expected */
	expect_error(bus, SD_BUS_ERROR_INVALID_ARGS,
	    "Invalid serial 'GW 1': use 1 to 64 letters, digits, '-' or '_'", "CheckNow", "s",
	    "GW 1", 0);
	expect_error(
	    bus, SD_BUS_ERROR_INVALID_ARGS, "Invalid serial 'a\\x09b'", "Abort", "s", "a\tb", 0);
	expect_error(bus, SD_BUS_ERROR_INVALID_ARGS, "Invalid serial 'caf\\xc3\\xa9'", "GetDevice",
	    "s", "caf\xc3\xa9", 0);
	memset(long_serial, 'x', 100);
	long_serial[100] = '\0';
	expect_error(bus, SD_BUS_ERROR_INVALID_ARGS,
	    "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'", "CheckNow",
	    "s", long_serial, 0);
	expect_error(bus, SD_BUS_ERROR_INVALID_ARGS, "CheckAll", "CheckNow", "s", "", 0);
	expect_error(
	    bus, SD_BUS_ERROR_INVALID_ARGS, "Invalid limit 1001", "GetHistory", "su", "", 1001);
	expect_error(
	    bus, SD_BUS_ERROR_INVALID_ARGS, "Invalid serial 'a/b'", "GetHistory", "su", "a/b", 10);
	expect_error(bus, "io.otagw.Error.NoSuchDevice", "GW-404", "GetDevice", "s", "GW-404", 0);
	expect_error(bus, "io.otagw.Error.NoSuchDevice", "GW-404", "CheckNow", "s", "GW-404", 0);
	expect_error(bus, "io.otagw.Error.NoSuchDevice", "GW-404", "Abort", "s", "GW-404", 0);
	expect_error(bus, "io.otagw.Error.NoSuchDevice", "GW-404", "GetHistory", "su", "GW-404", 0);
	reply = dbt_call(bus, &e, "CheckAll", NULL);
	ck_assert_ptr_nonnull(reply);
	ck_assert_int_ge(sd_bus_message_read(reply, "u", &started), 0);
	ck_assert_uint_eq(started, 0);
	reply = sd_bus_message_unref(reply);

	/* a device in the middle of its transfer */
	args[1] = w.sock;
	world_devsim(&w, &dev, "dev", args);
	path = dbt_device_path("GW-7");
	dbt_wait_str(&w, bus, path, DBT_DEV, "State", "transferring");
	expect_error(bus, "io.otagw.Error.InProgress", "GW-7 is busy with an update (transferring)",
	    "CheckNow", "s", "GW-7", 0);
	expect_ok(bus, "Abort", "s", "GW-7");
	s = dbt_get_str(bus, path, DBT_DEV, "State");
	ck_assert_str_eq(s, "idle");
	free(s);
	s = dbt_get_str(bus, path, DBT_DEV, "LastResult");
	ck_assert_str_eq(s, "aborted");
	free(s);
	s = dbt_get_str(bus, path, DBT_DEV, "LastReason");
	ck_assert_str_eq(s, "Aborted by uid 0 (root)");
	free(s);
	world_gw_wait(&w, "GW-7: Abort requested by uid 0 (root)");
	expect_error(bus, "io.otagw.Error.NotInProgress", "GW-7 has nothing in progress", "Abort",
	    "s", "GW-7", 0);
	/* it stays connected and idle until asked again; then it resumes and installs */
	expect_ok(bus, "CheckNow", "s", "GW-7");
	world_gw_wait(&w, "GW-7: CheckNow requested by uid 0 (root)");
	dbt_wait_str(&w, bus, path, DBT_DEV, "State", "installed");
	ck_assert(tproc_running(&dev));
	tproc_stop(&dev, SIGTERM, E2E_TIMEOUT_MS);
	tproc_free(&dev);
	wait_disconnected(&w, bus, path);
	expect_error(bus, "io.otagw.Error.NotConnected", "GW-7 is not connected", "CheckNow", "s",
	    "GW-7", 0);
	expect_error(bus, "io.otagw.Error.NotInProgress", "GW-7", "Abort", "s", "GW-7", 0);

	/* PurgeCache frees what nothing uses */
	reply = dbt_call(bus, &e, "PurgeCache", NULL);
	ck_assert_msg(reply != NULL, "PurgeCache: %s", e.message);
	ck_assert_int_ge(sd_bus_message_read(reply, "t", &freed), 0);
	ck_assert_uint_eq(freed, w.size);
	reply = sd_bus_message_unref(reply);
	ck_assert_uint_eq(dbt_get_u64(bus, DBT_PATH, DBT_MGR, "CacheBytes"), 0);
	ck_assert_uint_eq(dbt_get_u64(bus, DBT_PATH, DBT_MGR, "CacheEntries"), 0);
	reply = dbt_call(bus, &e, "PurgeCache", NULL);
	ck_assert_int_ge(sd_bus_message_read(reply, "t", &freed), 0);
	ck_assert_uint_eq(freed, 0);
	reply = sd_bus_message_unref(reply);

	/* LogControl1 */
	s = NULL;
	ck_assert_int_ge(sd_bus_get_property_string(bus, DBT_NAME, "/org/freedesktop/LogControl1",
			     "org.freedesktop.LogControl1", "SyslogIdentifier", NULL, &s),
	    0);
	ck_assert_str_eq(s, "otagwd");
	free(s);
	ck_assert_int_ge(sd_bus_set_property(bus, DBT_NAME, "/org/freedesktop/LogControl1",
			     "org.freedesktop.LogControl1", "LogLevel", &e, "s", "crit"),
	    0);
	s = NULL;
	ck_assert_int_ge(sd_bus_get_property_string(bus, DBT_NAME, "/org/freedesktop/LogControl1",
			     "org.freedesktop.LogControl1", "LogLevel", NULL, &s),
	    0);
	ck_assert_str_eq(s, "err");
	free(s);
	ck_assert_int_lt(sd_bus_set_property(bus, DBT_NAME, "/org/freedesktop/LogControl1",
			     "org.freedesktop.LogControl1", "LogLevel", &e, "s", "loud"),
	    0);
	ck_assert(sd_bus_error_has_name(&e, SD_BUS_ERROR_INVALID_ARGS));
	ck_assert_ptr_nonnull(strstr(e.message, "Invalid LogLevel 'loud'"));
	sd_bus_error_free(&e);
	ck_assert_int_lt(sd_bus_set_property(bus, DBT_NAME, "/org/freedesktop/LogControl1",
			     "org.freedesktop.LogControl1", "LogTarget", &e, "s", "syslog"),
	    0);
	ck_assert(sd_bus_error_has_name(&e, SD_BUS_ERROR_INVALID_ARGS));
	sd_bus_error_free(&e);
	ck_assert_int_ge(sd_bus_set_property(bus, DBT_NAME, "/org/freedesktop/LogControl1",
			     "org.freedesktop.LogControl1", "LogLevel", &e, "s", "debug"),
	    0);
	/* a reload applies the file's (or -v's) level again */
	ck_assert_int_eq(kill(w.gwd.pid, SIGHUP), 0);
	world_gw_wait(&w, "Reloaded configuration from");

	ck_assert(tproc_running(&w.gwd));
	free(path);
	sd_bus_flush_close_unref(bus);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	world_free(&w);
	dbt_bus_free(&b);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("dbus_api");
	TCase *tc = tcase_create("api");

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_objects);
	tcase_add_test(tc, test_methods);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(suite());
}
