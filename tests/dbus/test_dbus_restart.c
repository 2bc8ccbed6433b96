/* otagwd and the bus coming and going: the private dbus-daemon is killed and started again at
 * the same address (otagwd keeps serving devices meanwhile, then reconnects, takes the name
 * again and shows every object, including devices seen while the bus was away); a bus that is
 * not there at start-up (otagwd is ready without it and connects when it appears); a name
 * owned by someone else at start-up (otagwd says who and exits 1). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ck.h"
#include "dbustest.h"

static const char links[] = WORLD_UNIX_LINK "[dbus]\nbus = session\n";

/* The device and link paths GetManagedObjects lists, via busctl. */
static json_t *
objects(struct dbt_bus *b)
{
	struct dbt_out o;
	json_t *doc, *objs;

	dbt_busctl(&o, b, NULL,
	    (const char *[]){"--json=short", "call", DBT_NAME, DBT_PATH,
		"org.freedesktop.DBus.ObjectManager", "GetManagedObjects", NULL});
	ck_assert_msg(o.status == 0, "busctl: %s", o.err);
	doc = dbt_json(o.out);
	objs = json_incref(json_array_get(json_object_get(doc, "data"), 0));
	json_decref(doc);
	dbt_out_free(&o);
	return objs;
}

START_TEST(test_bus_restart)
{
	struct world w;
	struct dbt_bus b;
	json_t *objs;
	sd_bus *bus;
	char *state;

	world_init(&w, "dbus-restart", 32 * 1024 + 1);
	dbt_bus_start(&b, w.dir, false);
	world_serve(&w, NULL, "", links);
	world_device_once(&w, "a", "A-1", NULL);

	/* the bus dies; devices are served all the same */
	dbt_bus_kill(&b);
	world_gw_wait(&w, "Lost the connection to the session bus");
	world_device_once(&w, "b", "B-1", NULL);
	ck_assert(world_installed(&w, "b", "B-1"));

	/* it comes back at the same address: the name and every object return */
	dbt_bus_restart(&b);
	bus = dbt_connect(&b);
	ck_assert_msg(dbt_wait_name(bus, true, E2E_TIMEOUT_MS), "io.otagw did not come back");
	world_gw_wait(&w, "Serving io.otagw on the session bus");
	objs = objects(&b);
	ck_assert_ptr_nonnull(json_object_get(objs, "/io/otagw/device/A_2d1"));
	ck_assert_ptr_nonnull(json_object_get(objs, "/io/otagw/device/B_2d1"));
	ck_assert_ptr_nonnull(json_object_get(objs, "/io/otagw/link/sim"));
	json_decref(objs);
	state = dbt_get_str(bus, "/io/otagw/device/B_2d1", DBT_DEV, "State");
	ck_assert_str_eq(state, "installed");
	free(state);
	sd_bus_flush_close_unref(bus);

	/* and again, at once */
	dbt_bus_kill(&b);
	dbt_bus_restart(&b);
	bus = dbt_connect(&b);
	ck_assert_msg(dbt_wait_name(bus, true, E2E_TIMEOUT_MS), "io.otagw did not come back");
	ck_assert_uint_eq(dbt_get_u64(bus, DBT_PATH, DBT_MGR, "DeviceCount"), 2);
	sd_bus_flush_close_unref(bus);

	ck_assert(tproc_running(&w.gwd));
	ck_assert_int_eq(world_gw_stop(&w), 0);
	world_free(&w);
	dbt_bus_free(&b);
}
END_TEST

START_TEST(test_bus_late)
{
	struct world w;
	struct dbt_bus b;
	char addr[600];
	sd_bus *bus;

	world_init(&w, "dbus-late", 1024);
	snprintf(addr, sizeof(addr), "unix:path=%s/bus", w.dir);
	setenv("DBUS_SESSION_BUS_ADDRESS", addr, 1);
	world_serve(&w, NULL, "", links); /* ready without the bus */
	ck_assert_uint_eq(
	    tfile_count(w.gw_log, "Cannot connect to the session bus; serving devices "
				  "without D-Bus and retrying"),
	    1);
	dbt_bus_start(&b, w.dir, false);
	bus = dbt_connect(&b);
	ck_assert_msg(dbt_wait_name(bus, true, E2E_TIMEOUT_MS), "io.otagw never appeared");
	ck_assert_uint_eq(dbt_get_u64(bus, DBT_PATH, DBT_MGR, "DeviceCount"), 0);
	sd_bus_flush_close_unref(bus);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	world_free(&w);
	dbt_bus_free(&b);
}
END_TEST

START_TEST(test_name_taken)
{
	struct world w;
	struct dbt_bus b;
	struct tproc gw = {0};
	char *argv[] = {(char *)tproc_prog("OTAGWD"), "-c", NULL, "-v", NULL}, *log, want[160];
	sd_bus *bus;

	world_init(&w, "dbus-taken", 1024);
	dbt_bus_start(&b, w.dir, false);
	world_mock(&w, NULL);
	world_config(&w, "", links, NULL);
	bus = dbt_connect(&b);
	ck_assert_int_ge(sd_bus_request_name(bus, DBT_NAME, 0), 0);
	argv[2] = w.conf;
	log = tdir_join(w.dir, "taken.log");
	tproc_spawn_log(&gw, "otagwd", argv, log, NULL);
	/* otagwd may answer anything with the bus while it waits; the test answers nothing */
	ck_assert_int_eq(tproc_wait_exit(&gw, E2E_TIMEOUT_MS), 1);
	snprintf(want, sizeof(want),
	    "io.otagw is already owned by another process (pid %d); is another otagwd running?",
	    (int)getpid());
	if (tfile_count(log, want) != 1) {
		tfile_dump("otagwd", log);
		ck_abort_msg("otagwd did not say: %s", want);
	}
	ck_assert_uint_eq(tfile_count(log, " ready ("), 0);
	tproc_free(&gw);
	free(log);
	sd_bus_flush_close_unref(bus);
	world_free(&w);
	dbt_bus_free(&b);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("dbus_restart");
	TCase *tc = tcase_create("restart");

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_bus_restart);
	tcase_add_test(tc, test_bus_late);
	tcase_add_test(tc, test_name_taken);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(suite());
}
