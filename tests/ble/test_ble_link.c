/* otagwd's [ble] link against what surrounds it, without a radio: the real otagwd on a private
 * dbus-daemon standing in for the system bus, first with no bluetoothd, then with a minimal
 * org.bluez (an ObjectManager and one Adapter1, run by this test in a thread) to watch the
 * central power the adapter and start a filtered LE discovery, then with bluetoothd gone
 * again; and reloads that add, change and remove [ble]. The BLE transfers themselves are
 * proven on a real BlueZ stack by the VM tests (tests/ble/vm-ota.sh). */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>

#include "ble.h"
#include "ck.h"
#include "tclock.h"
#include "testbus.h"
#include "world.h"

/* The org.bluez stand-in: one adapter, hci0. */
struct fakebluez {
	struct testbus *tb;
	pthread_t thread;
	atomic_bool stop, own, owned;
	atomic_int power_sets, filters, starts, stops;
	atomic_bool filter_ok; /* the last filter asked for the otagw service over LE */
	atomic_bool failed;    /* the stand-in could not do what it was told (see fb_run) */
	bool powered, discovering;
	sd_bus *bus;
};

static struct fakebluez fb;

static int
fb_get_bool(sd_bus *bus, const char *path, const char *iface, const char *prop,
    sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	bool *v = strcmp(prop, "Powered") == 0 ? &fb.powered : &fb.discovering;

	(void)bus;
	(void)path;
	(void)iface;
	(void)userdata;
	(void)err;
	return sd_bus_message_append(reply, "b", *v);
}

static int
fb_get_address(sd_bus *bus, const char *path, const char *iface, const char *prop,
    sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	(void)bus;
	(void)path;
	(void)iface;
	(void)prop;
	(void)userdata;
	(void)err;
	return sd_bus_message_append(reply, "s", "00:11:22:33:44:55");
}

static int
fb_set_powered(sd_bus *bus, const char *path, const char *iface, const char *prop,
    sd_bus_message *value, void *userdata, sd_bus_error *err)
{
	int b = 0, r = sd_bus_message_read(value, "b", &b);

	(void)iface;
	(void)prop;
	(void)userdata;
	(void)err;
	if (r < 0)
		return r;
	fb.power_sets++;
	fb.powered = b;
	return sd_bus_emit_properties_changed(bus, path, "org.bluez.Adapter1", "Powered", NULL);
}

static int
fb_filter(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	bool uuid = false, le = false;
	int r;

	(void)userdata;
	(void)err;
	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	while (r > 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		const char *key, *s;

		if (sd_bus_message_read(m, "s", &key) < 0)
			break;
		if (strcmp(key, "UUIDs") == 0) {
			sd_bus_message_enter_container(m, 'v', "as");
			sd_bus_message_enter_container(m, 'a', "s");
			while (sd_bus_message_read(m, "s", &s) > 0)
				uuid = uuid || strcmp(s, BLE_SERVICE_UUID) == 0;
			sd_bus_message_exit_container(m);
			sd_bus_message_exit_container(m);
		} else if (strcmp(key, "Transport") == 0) {
			sd_bus_message_enter_container(m, 'v', "s");
			le = sd_bus_message_read(m, "s", &s) > 0 && strcmp(s, "le") == 0;
			sd_bus_message_exit_container(m);
		} else {
			sd_bus_message_skip(m, "v");
		}
		sd_bus_message_exit_container(m);
	}
	fb.filter_ok = uuid && le;
	fb.filters++;
	return sd_bus_reply_method_return(m, "");
}

static int
fb_discovery(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	bool start = strcmp(sd_bus_message_get_member(m), "StartDiscovery") == 0;

	(void)userdata;
	if (!fb.powered)
		return sd_bus_error_set(err, "org.bluez.Error.NotReady", "Resource Not Ready");
	if (start)
		fb.starts++;
	else
		fb.stops++;
	fb.discovering = start;
	sd_bus_emit_properties_changed(sd_bus_message_get_bus(m), "/org/bluez/hci0",
	    "org.bluez.Adapter1", "Discovering", NULL);
	return sd_bus_reply_method_return(m, "");
}

static const sd_bus_vtable fb_adapter_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Address", "s", fb_get_address, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_WRITABLE_PROPERTY(
	"Powered", "b", fb_get_bool, fb_set_powered, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Discovering", "b", fb_get_bool, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_METHOD("SetDiscoveryFilter", "a{sv}", "", fb_filter, 0),
    SD_BUS_METHOD("StartDiscovery", "", "", fb_discovery, 0),
    SD_BUS_METHOD("StopDiscovery", "", "", fb_discovery, 0),
    SD_BUS_VTABLE_END,
};

/* The stand-in's loop: owns org.bluez while fb.own is set. All bus work happens here. */
static void *
fb_run(void *arg)
{
	(void)arg;
	/* No check assertions in this thread: failures are flagged for the test's thread. */
	if (testbus_connect(fb.tb, &fb.bus) < 0 ||
	    sd_bus_add_object_manager(fb.bus, NULL, "/") < 0 ||
	    sd_bus_add_object_vtable(fb.bus, NULL, "/org/bluez/hci0", "org.bluez.Adapter1",
		fb_adapter_vtable, NULL) < 0) {
		fb.failed = true;
		return NULL;
	}
	while (!fb.stop) {
		if (fb.own && !fb.owned) {
			if (sd_bus_request_name(fb.bus, "org.bluez", 0) < 0)
				fb.failed = true;
			fb.owned = true;
		} else if (!fb.own && fb.owned) {
			if (sd_bus_release_name(fb.bus, "org.bluez") < 0)
				fb.failed = true;
			fb.owned = false;
			fb.powered = fb.discovering =
			    false; /* as a restarted bluetoothd finds it */
		}
		while (sd_bus_process(fb.bus, NULL) > 0)
			;
		sd_bus_wait(fb.bus, 50000);
	}
	sd_bus_flush_close_unref(fb.bus);
	return NULL;
}

/* Waits up to 30 s for *counter to reach want. */
static void
wait_count(struct world *w, atomic_int *counter, int want, const char *what)
{
	uint64_t end = tclock_ms() + 30000;

	while (*counter < want) {
		if (fb.failed)
			world_fail(w, "the org.bluez stand-in failed");
		if (tclock_ms() > end) {
			char msg[128];

			snprintf(msg, sizeof(msg), "%s did not happen", what);
			world_fail(w, msg);
		}
		tclock_sleep_ms(20);
	}
}

static const char ble_conf[] = "[ble]\nenabled = yes\nadapter = hci0\nscan_interval = 2s\n\n"
			       "[dbus]\nbus = none\n";

START_TEST(ble_link)
{
	struct testbus tb;
	struct world w;

	ck_assert_int_eq(testbus_start(&tb), 0);
	/* otagwd's "system bus" is the private one. */
	ck_assert_int_eq(setenv("DBUS_SYSTEM_BUS_ADDRESS", tb.address, 1), 0);
	memset(&fb, 0, sizeof(fb));
	fb.tb = &tb;
	ck_assert_int_eq(pthread_create(&fb.thread, NULL, fb_run, NULL), 0);

	world_init(&w, "ble-link", 4096);
	world_mock(&w, NULL);
	world_config(&w, "", ble_conf, NULL);
	world_gw_start(&w);
	world_gw_wait(&w, "Link ble: bluetoothd is not running; waiting for it");

	/* bluetoothd appears with a powered-off adapter: otagwd powers it and discovers LE
	 * devices that advertise the otagw service. */
	fb.own = true;
	world_gw_wait(&w, "Link ble: adapter hci0 is powered off; powering it on");
	wait_count(&w, &fb.power_sets, 1, "Powered = true");
	world_gw_wait(&w, "Link ble: adapter hci0 is up; looking for devices");
	wait_count(&w, &fb.starts, 1, "StartDiscovery");
	ck_assert(fb.filter_ok);
	/* scan_interval: discovery is started again. */
	wait_count(&w, &fb.starts, 2, "a second StartDiscovery");
	ck_assert_int_ge(fb.stops, 1);

	/* bluetoothd goes away and comes back: the central starts over. */
	fb.own = false;
	world_gw_wait(&w, "Link ble: bluetoothd is not running; waiting for it");
	fb.own = true;
	world_gw_wait(&w, "Link ble: adapter hci0 is powered off; powering it on");
	world_gw_wait(&w, "Link ble: adapter hci0 is up; looking for devices");

	/* Reloads: a changed [ble] re-opens the link; enabled = no removes it. */
	world_config(&w, "",
	    "[ble]\nenabled = yes\nadapter = hci0\nmax_connections = 1\n\n"
	    "[dbus]\nbus = none\n",
	    NULL);
	ck_assert_int_eq(kill(w.gwd.pid, SIGHUP), 0);
	world_gw_wait(&w, "Link ble changed; re-opening it");
	world_gw_wait(&w, "Link ble: adapter hci0 is up; looking for devices");
	world_config(&w, "",
	    "[unix \"u\"]\nlisten = @DIR@/u.sock\n\n[ble]\nenabled = no\n\n"
	    "[dbus]\nbus = none\n",
	    NULL);
	ck_assert_int_eq(kill(w.gwd.pid, SIGHUP), 0);
	world_gw_wait(&w, "Link ble removed");

	ck_assert_int_eq(world_gw_stop(&w), 0);
	world_free(&w);
	fb.stop = true;
	pthread_join(fb.thread, NULL);
	ck_assert(!fb.failed);
	testbus_kill(&tb);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("ble_link");
	TCase *tc = tcase_create("daemon");

	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, ble_link);
	suite_add_tcase(s, tc);
	return ck_main(s);
}
