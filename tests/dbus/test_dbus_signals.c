/* otagwd's signals, counted by an sd-bus client in the test: a new device is announced with
 * InterfacesAdded before anything else about it; during a transfer PropertiesChanged carries
 * the progress a few times a second (far fewer signals than DATA frames, at most about 4 per
 * second), the state changes arrive with the final byte count, and once the device is gone
 * nothing more is sent (no periodic signals). A reload that adds or removes a link announces it
 * with InterfacesAdded/InterfacesRemoved, and the manager's State passes through "reloading";
 * LogLevel follows a reload. */
#include <check.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ck.h"
#include "dbustest.h"

#define MAX_SIGS 4096

struct sig {
	uint64_t at; /* monotonic ms when received */
	char path[160];
	char member[32];
	char iface[64];
	char state[32]; /* State, if it changed */
	bool progress;  /* carries BytesDone */
	uint64_t done, total;
	int connected;   /* Connected: -1 absent, else 0/1 */
	char names[256]; /* every property or interface named, space-separated */
};

static struct sig sigs[MAX_SIGS];
static size_t n_sigs;

static void
record_props(sd_bus_message *m, struct sig *s)
{
	const char *name, *contents;
	char type;

	if (sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
		return;
	while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
		if (sd_bus_message_read(m, "s", &name) < 0)
			return;
		snprintf(
		    s->names + strlen(s->names), sizeof(s->names) - strlen(s->names), "%s ", name);
		if (sd_bus_message_peek_type(m, &type, &contents) < 0)
			return;
		if (strcmp(name, "State") == 0 && strcmp(contents, "s") == 0) {
			const char *v;

			sd_bus_message_read(m, "v", "s", &v);
			snprintf(s->state, sizeof(s->state), "%s", v);
		} else if (strcmp(name, "BytesDone") == 0) {
			sd_bus_message_read(m, "v", "t", &s->done);
			s->progress = true;
		} else if (strcmp(name, "BytesTotal") == 0) {
			sd_bus_message_read(m, "v", "t", &s->total);
		} else if (strcmp(name, "Connected") == 0) {
			int b;

			sd_bus_message_read(m, "v", "b", &b);
			s->connected = b;
		} else {
			sd_bus_message_skip(m, "v");
		}
		sd_bus_message_exit_container(m);
	}
	sd_bus_message_exit_container(m);
}

static int
on_signal(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct sig *s;
	const char *p, *iface;

	(void)userdata;
	(void)error;
	if (n_sigs >= MAX_SIGS || !sd_bus_message_is_signal(m, NULL, NULL))
		return 0;
	s = &sigs[n_sigs++];
	memset(s, 0, sizeof(*s));
	s->connected = -1;
	s->at = tclock_ms();
	snprintf(s->path, sizeof(s->path), "%s", sd_bus_message_get_path(m));
	snprintf(s->member, sizeof(s->member), "%s", sd_bus_message_get_member(m));
	if (strcmp(s->member, "PropertiesChanged") == 0) {
		if (sd_bus_message_read(m, "s", &iface) >= 0)
			snprintf(s->iface, sizeof(s->iface), "%s", iface);
		record_props(m, s);
	} else if (strcmp(s->member, "InterfacesAdded") == 0 ||
		   strcmp(s->member, "InterfacesRemoved") == 0) {
		if (sd_bus_message_read(m, "o", &p) >= 0)
			snprintf(s->path, sizeof(s->path), "%s", p);
		if (strcmp(s->member, "InterfacesRemoved") == 0) {
			sd_bus_message_enter_container(m, 'a', "s");
			while (sd_bus_message_read(m, "s", &iface) > 0)
				snprintf(s->names + strlen(s->names),
				    sizeof(s->names) - strlen(s->names), "%s ", iface);
		} else {
			sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
			while (sd_bus_message_enter_container(m, 'e', "sa{sv}") > 0) {
				sd_bus_message_read(m, "s", &iface);
				snprintf(s->iface, sizeof(s->iface), "%s", iface);
				record_props(m, s);
				sd_bus_message_exit_container(m);
			}
		}
	}
	return 0;
}

/* Processes the bus for ms milliseconds. */
static void
pump(sd_bus *bus, unsigned ms)
{
	uint64_t end = tclock_ms() + ms, now;

	while ((now = tclock_ms()) < end) {
		int r = sd_bus_process(bus, NULL);

		ck_assert_int_ge(r, 0);
		if (r == 0)
			sd_bus_wait(bus, (end - now) * 1000);
	}
}

static sd_bus *
listen_bus(struct dbt_bus *b)
{
	sd_bus *bus = dbt_connect(b);

	ck_assert_int_ge(
	    sd_bus_add_match(bus, NULL, "type='signal',sender='io.otagw'", on_signal, NULL), 0);
	ck_assert(dbt_wait_name(bus, true, E2E_TIMEOUT_MS));
	n_sigs = 0;
	return bus;
}

/* The index of the first signal at or after from matching, or n_sigs. */
static size_t
find(size_t from, const char *path, const char *member, const char *state)
{
	size_t i;

	for (i = from; i < n_sigs; i++)
		if ((path == NULL || strcmp(sigs[i].path, path) == 0) &&
		    strcmp(sigs[i].member, member) == 0 &&
		    (state == NULL || strcmp(sigs[i].state, state) == 0))
			return i;
	return n_sigs;
}

START_TEST(test_progress)
{
	const char *args[] = {"--unix", NULL, "--once", "--write-us-per-kib", "12000", NULL};
	const char *dev = "/io/otagw/device/SIM_2d001";
	struct world w;
	struct dbt_bus b;
	struct tproc p = {0};
	size_t added, t0, t1, i, n_progress = 0, gone, quiet;
	uint64_t last_done = 0, last_total = 0, frames;
	bool active_seen = false, active_back = false;
	sd_bus *bus;

	world_init(&w, "dbus-progress", 200 * 1024 + 9);
	dbt_bus_start(&b, w.dir, false);
	world_serve(&w, NULL, "", WORLD_UNIX_LINK "[dbus]\nbus = session\n");
	bus = listen_bus(&b);
	args[1] = w.sock;
	world_devsim(&w, &p, "dev", args);
	while (tproc_running(&p))
		pump(bus, 50);
	world_devsim_exit(&w, &p, 0);
	/* until the gateway has seen it go, then a little for the last coalesced signals */
	for (i = 0; i < 1000; i++) {
		size_t k;

		for (k = 0; k < n_sigs; k++)
			if (strcmp(sigs[k].path, dev) == 0 && sigs[k].connected == 0)
				break;
		if (k < n_sigs)
			break;
		pump(bus, 50);
	}
	pump(bus, 500);
	gone = n_sigs;

	/* announced first */
	added = find(0, dev, "InterfacesAdded", NULL);
	ck_assert_uint_lt(added, n_sigs);
	ck_assert_str_eq(sigs[added].iface, DBT_DEV);
	ck_assert_uint_eq(find(0, dev, "PropertiesChanged", NULL) > added, 1);

	/* the transfer */
	t0 = find(added, dev, "PropertiesChanged", "transferring");
	t1 = find(t0, dev, "PropertiesChanged", "verifying");
	if (t0 >= n_sigs || t1 >= n_sigs) {
		for (i = 0; i < n_sigs; i++)
			fprintf(stderr, "%llu %s %s %s state=%s %s\n",
			    (unsigned long long)sigs[i].at, sigs[i].path, sigs[i].member,
			    sigs[i].iface, sigs[i].state, sigs[i].names);
		world_fail(&w, "no transferring/verifying signal");
	}
	for (i = t0; i <= t1; i++) {
		if (strcmp(sigs[i].path, dev) != 0 || !sigs[i].progress)
			continue;
		n_progress++;
		last_done = sigs[i].done;
		last_total = sigs[i].total;
	}
	for (i = t0 + 1; i < t1; i++)
		ck_assert_msg(strcmp(sigs[i].path, dev) != 0 || sigs[i].state[0] == '\0',
		    "state %s between transferring and verifying", sigs[i].state);
	frames = w.size / 1024;
	fprintf(stderr,
	    "progress: %zu signals with BytesDone over %llu ms of transfer (%llu DATA frames)\n",
	    n_progress, (unsigned long long)(sigs[t1].at - sigs[t0].at),
	    (unsigned long long)frames);
	ck_assert_uint_ge(n_progress, 2);
	/* at most 4 a second (plus the edges), and far fewer than the frames */
	ck_assert_uint_le(n_progress, 4 * (sigs[t1].at - sigs[t0].at) / 1000 + 3);
	ck_assert_uint_lt(n_progress, frames / 4);
	/* the final count is seen together with (or before) the state that ends the transfer */
	ck_assert_uint_eq(last_done, w.size);
	ck_assert_uint_eq(last_total, w.size);

	/* the manager counted it */
	for (i = 0; i < n_sigs; i++) {
		if (strcmp(sigs[i].path, DBT_PATH) != 0 ||
		    strstr(sigs[i].names, "ActiveTransfers") == NULL)
			continue;
		if (!active_seen)
			active_seen = true;
		else
			active_back = true;
	}
	ck_assert(active_seen && active_back);
	ck_assert_uint_eq(dbt_get_u64(bus, DBT_PATH, DBT_MGR, "ActiveTransfers"), 0);
	ck_assert_uint_eq(dbt_get_u64(bus, DBT_PATH, DBT_MGR, "DeviceCount"), 1);

	/* and then silence: nothing changes, nothing is sent */
	pump(bus, 2000);
	quiet = n_sigs - gone;
	for (i = gone; i < n_sigs; i++)
		fprintf(stderr, "unexpected: %s %s %s%s\n", sigs[i].path, sigs[i].member,
		    sigs[i].iface, sigs[i].names);
	ck_assert_uint_eq(quiet, 0);

	tproc_free(&p);
	sd_bus_flush_close_unref(bus);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	world_free(&w);
	dbt_bus_free(&b);
}
END_TEST

START_TEST(test_reload)
{
	static const char sim[] = WORLD_UNIX_LINK "[dbus]\nbus = session\n";
	char with_lab[256];
	struct world w;
	struct dbt_bus b;
	sd_bus_error e = SD_BUS_ERROR_NULL;
	size_t i, at;
	sd_bus *bus;

	snprintf(with_lab, sizeof(with_lab), "%s[tcp \"lab\"]\nlisten = 127.0.0.1:%u\n", sim,
	    tnet_free_port());
	world_init(&w, "dbus-reload", 1024);
	dbt_bus_start(&b, w.dir, false);
	world_serve(&w, NULL, "", sim);
	bus = listen_bus(&b);

	/* a link added by a reload */
	world_config(&w, "", with_lab, NULL);
	ck_assert_int_eq(kill(w.gwd.pid, SIGHUP), 0);
	world_gw_wait(&w, "Reloaded configuration from");
	pump(bus, 500);
	at = find(0, "/io/otagw/link/lab", "InterfacesAdded", NULL);
	ck_assert_uint_lt(at, n_sigs);
	ck_assert_str_eq(sigs[at].iface, DBT_LINK);
	ck_assert_ptr_nonnull(strstr(sigs[at].names, "Name Kind Address State LastError"));
	at = find(0, DBT_PATH, "PropertiesChanged", "reloading");
	ck_assert_uint_lt(at, n_sigs);
	ck_assert_uint_lt(find(at, DBT_PATH, "PropertiesChanged", "running"), n_sigs);
	ck_assert_uint_eq(find(0, "/io/otagw/link/sim", "InterfacesAdded", NULL), n_sigs);

	/* ... and removed by the next; the manager signals max_transfers */
	n_sigs = 0;
	world_config(&w, "max_transfers = 3", sim, NULL);
	ck_assert_int_eq(kill(w.gwd.pid, SIGHUP), 0);
	world_gw_wait(&w, "Reloaded configuration from");
	pump(bus, 500);
	at = find(0, "/io/otagw/link/lab", "InterfacesRemoved", NULL);
	ck_assert_uint_lt(at, n_sigs);
	ck_assert_str_eq(sigs[at].names, DBT_LINK " ");
	for (i = 0; i < n_sigs; i++)
		if (strcmp(sigs[i].path, DBT_PATH) == 0 && strstr(sigs[i].names, "MaxTransfers"))
			break;
	ck_assert_uint_lt(i, n_sigs);
	ck_assert_uint_eq(dbt_get_u64(bus, DBT_PATH, DBT_MGR, "MaxTransfers"), 3);

	/* LogLevel set over D-Bus, then a reload brings back -v's debug */
	ck_assert_int_ge(sd_bus_set_property(bus, DBT_NAME, "/org/freedesktop/LogControl1",
			     "org.freedesktop.LogControl1", "LogLevel", &e, "s", "warning"),
	    0);
	n_sigs = 0;
	ck_assert_int_eq(kill(w.gwd.pid, SIGHUP), 0);
	pump(bus, 1000);
	for (i = 0; i < n_sigs; i++)
		if (strcmp(sigs[i].path, "/org/freedesktop/LogControl1") == 0 &&
		    strstr(sigs[i].names, "LogLevel"))
			break;
	ck_assert_uint_lt(i, n_sigs);

	sd_bus_flush_close_unref(bus);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	world_free(&w);
	dbt_bus_free(&b);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("dbus_signals");
	TCase *tc = tcase_create("signals");

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_progress);
	tcase_add_test(tc, test_reload);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(suite());
}
