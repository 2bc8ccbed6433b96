/* Who may do what, with the real clients run as an unprivileged user (nobody, through
 * tests/systemd/run-as.sh): on a bus configured like the system bus with the real
 * io.otagw.conf, nobody may read everything (busctl, otagwctl status, devices, show, history)
 * and is refused every call that changes something, by the bus policy, with otagwctl's
 * "access denied" and exit code 4; root may. On a bus that lets anyone send anything, otagwd
 * refuses by itself (defence in depth) unless the caller is in [dbus] control_group, which a
 * reload changes. A policy that does not let otagwd own the name leaves it serving devices
 * without D-Bus. Needs root; skipped otherwise. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ck.h"
#include "dbustest.h"

static void
expect_ctl(const struct dbt_bus *b, const char *user, int status, const char *text,
    const char *const *args)
{
	struct dbt_out o;

	dbt_ctl(&o, b, user, args);
	ck_assert_msg(o.status == status, "otagwctl %s as %s: exit %d, not %d: %s%s", args[0],
	    user != NULL ? user : "root", o.status, status, o.out, o.err);
	if (text != NULL)
		ck_assert_msg(strstr(o.out, text) != NULL || strstr(o.err, text) != NULL,
		    "otagwctl %s as %s: no '%s' in: %s%s", args[0], user != NULL ? user : "root",
		    text, o.out, o.err);
	dbt_out_free(&o);
}

static void
expect_busctl(const struct dbt_bus *b, const char *user, bool ok, const char *const *args)
{
	struct dbt_out o;

	dbt_busctl(&o, b, user, args);
	if (ok)
		ck_assert_msg(
		    o.status == 0, "busctl %s %s as %s failed: %s", args[0], args[4], user, o.err);
	else
		ck_assert_msg(o.status != 0 && strstr(o.err, "Access denied") != NULL,
		    "busctl %s %s as %s: exit %d: %s", args[0], args[4], user, o.status, o.err);
	dbt_out_free(&o);
}

START_TEST(test_system_policy)
{
	static const char links[] = WORLD_UNIX_LINK "[dbus]\nbus = system\n";
	const char *denied = "access denied: only root and members of group otagw may";
	struct world w;
	struct dbt_bus b;

	if (!dbt_root()) {
		fprintf(stderr, "SKIP: needs root (run-as.sh)\n");
		return;
	}
	world_init(&w, "dbus-policy", 16 * 1024 + 3);
	dbt_bus_start(&b, w.dir, true);
	world_serve(&w, NULL, "", links);
	ck_assert_uint_eq(tfile_count(w.gw_log, "Serving io.otagw on the system bus"), 1);
	world_device_once(&w, "dev", "GW-1", NULL);

	/* anyone may read */
	expect_busctl(&b, "nobody", true,
	    (const char *[]){"get-property", DBT_NAME, DBT_PATH, DBT_MGR, "State", NULL});
	expect_busctl(&b, "nobody", true,
	    (const char *[]){"call", DBT_NAME, DBT_PATH, "org.freedesktop.DBus.ObjectManager",
		"GetManagedObjects", NULL});
	expect_busctl(&b, "nobody", true,
	    (const char *[]){
		"call", DBT_NAME, DBT_PATH, DBT_MGR, "GetHistory", "su", "", "5", NULL});
	expect_ctl(
	    &b, "nobody", 0, "otagwd " OTAGW_VERSION ": running", (const char *[]){"status", NULL});
	expect_ctl(&b, "nobody", 0, "GW-1", (const char *[]){"devices", NULL});
	expect_ctl(&b, "nobody", 0, "\"Serial\":\"GW-1\"",
	    (const char *[]){"--json", "show", "GW-1", NULL});
	expect_ctl(&b, "nobody", 0, "installed", (const char *[]){"history", NULL});
	expect_ctl(&b, "nobody", 0, "Cache:", (const char *[]){"cache", NULL});

	/* nobody may change anything: the policy refuses before otagwd sees it */
	expect_busctl(&b, "nobody", false,
	    (const char *[]){"call", DBT_NAME, DBT_PATH, DBT_MGR, "CheckNow", "s", "GW-1", NULL});
	expect_busctl(&b, "nobody", false,
	    (const char *[]){"call", DBT_NAME, DBT_PATH, DBT_MGR, "PurgeCache", NULL});
	expect_busctl(&b, "nobody", false,
	    (const char *[]){"set-property", DBT_NAME, "/org/freedesktop/LogControl1",
		"org.freedesktop.LogControl1", "LogLevel", "s", "debug", NULL});
	expect_ctl(&b, "nobody", 4, denied, (const char *[]){"check", "GW-1", NULL});
	expect_ctl(&b, "nobody", 4, "may check devices", (const char *[]){"check", "--all", NULL});
	expect_ctl(&b, "nobody", 4, "may abort updates", (const char *[]){"abort", "GW-1", NULL});
	expect_ctl(
	    &b, "nobody", 4, "may purge the cache", (const char *[]){"cache", "purge", NULL});
	ck_assert_uint_eq(tfile_count(w.gw_log, "requested by uid 65534"), 0);

	/* root may */
	expect_ctl(&b, NULL, 0, "Freed 16.0 KiB", (const char *[]){"cache", "purge", NULL});
	expect_ctl(&b, NULL, 0, "Started 0 checks", (const char *[]){"check", "--all", NULL});
	world_gw_wait(&w, "PurgeCache requested by uid 0 (root): freed 16387 bytes in 1 payload");

	ck_assert_int_eq(world_gw_stop(&w), 0);
	world_free(&w);
	dbt_bus_free(&b);
}
END_TEST

START_TEST(test_otagwd_checks)
{
	char links[128];
	struct world w;
	struct dbt_bus b;

	if (!dbt_root()) {
		fprintf(stderr, "SKIP: needs root (run-as.sh)\n");
		return;
	}
	/* nobody is not in group daemon */
	snprintf(links, sizeof(links),
	    WORLD_UNIX_LINK "[dbus]\nbus = session\ncontrol_group = %s\n", "daemon");
	world_init(&w, "dbus-checks", 8 * 1024);
	dbt_bus_start(&b, w.dir, false); /* anyone may send anything */
	world_serve(&w, NULL, "", links);
	world_device_once(&w, "dev", "GW-2", NULL);

	expect_ctl(&b, "nobody", 4,
	    "access denied: only root and members of group daemon may abort",
	    (const char *[]){"abort", "GW-2", NULL});
	expect_ctl(
	    &b, "nobody", 4, "group daemon may purge", (const char *[]){"cache", "purge", NULL});
	expect_busctl(&b, "nobody", false,
	    (const char *[]){"set-property", DBT_NAME, "/org/freedesktop/LogControl1",
		"org.freedesktop.LogControl1", "LogLevel", "s", "debug", NULL});
	world_gw_wait(&w, "Refused to call PurgeCache for uid 65534 (nobody): not root, uid 0 or a "
			  "member of group 'daemon'");
	ck_assert_uint_eq(tfile_count(w.gw_log, "PurgeCache requested"), 0);
	expect_ctl(&b, "nobody", 0, "GW-2", (const char *[]){"devices", NULL});

	/* nobody's own group (nogroup, from the bus's UnixGroupIDs) admits it after a reload */
	snprintf(links, sizeof(links),
	    WORLD_UNIX_LINK "[dbus]\nbus = session\ncontrol_group = %s\n", "nogroup");
	world_config(&w, "", links, NULL);
	ck_assert_int_eq(kill(w.gwd.pid, SIGHUP), 0);
	world_gw_wait(&w, "Reloaded configuration from");
	expect_ctl(&b, "nobody", 0, "Freed 8.0 KiB", (const char *[]){"cache", "purge", NULL});
	world_gw_wait(&w, "PurgeCache requested by uid 65534 (nobody): freed 8192 bytes");
	expect_ctl(&b, "nobody", 1, "GW-2 has nothing in progress to abort",
	    (const char *[]){"abort", "GW-2", NULL});

	ck_assert_int_eq(world_gw_stop(&w), 0);
	world_free(&w);
	dbt_bus_free(&b);
}
END_TEST

START_TEST(test_policy_refuses_owner)
{
	static const char links[] = WORLD_UNIX_LINK "[dbus]\nbus = system\n";
	struct world w;
	struct dbt_bus b;
	sd_bus *bus;

	if (!dbt_root()) {
		fprintf(stderr, "SKIP: needs root\n");
		return;
	}
	/* io.otagw.conf alone: root may not own the name; otagwd says so, and serves devices */
	world_init(&w, "dbus-owner", 4096);
	dbt_bus_start_system(&b, w.dir, false);
	world_serve(&w, NULL, "", links);
	ck_assert_uint_eq(
	    tfile_count(w.gw_log, "The D-Bus policy does not let uid 0 own io.otagw on "
				  "the system bus"),
	    1);
	world_device_once(&w, "dev", "GW-3", NULL);
	ck_assert(world_installed(&w, "dev", "GW-3"));
	bus = dbt_connect(&b);
	ck_assert(dbt_wait_name(bus, false, 1000));
	sd_bus_flush_close_unref(bus);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	world_free(&w);
	dbt_bus_free(&b);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("dbus_access");
	TCase *tc = tcase_create("access");

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_system_policy);
	tcase_add_test(tc, test_otagwd_checks);
	tcase_add_test(tc, test_policy_refuses_owner);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(suite());
}
