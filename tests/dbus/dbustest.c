/* The D-Bus tests' helpers (see dbustest.h). */
#include "dbustest.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool
dbt_root(void)
{
	return geteuid() == 0;
}

static void
dbt_bus_config(struct dbt_bus *b)
{
	char *conf = tdir_join(b->dir, "bus.conf"), *text = NULL;
	const char *policy = getenv("OTAGW_POLICY");

	if (b->system) {
		ck_assert_ptr_nonnull(policy);
		/* As /usr/share/dbus-1/system.conf: nothing but the bus itself unless a policy
		 * allows it; then io.otagw.conf as installed. The test runs otagwd as root, which
		 * the real policy does not let own the name (user otagw does), hence the one extra
		 * rule (unless root_may_own is false); who may send what is io.otagw.conf's
		 * alone. */
		ck_assert_int_gt(
		    asprintf(&text,
			"<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus "
			"Configuration 1.0//EN\"\n"
			" \"http://www.freedesktop.org/standards/dbus/1.0/"
			"busconfig.dtd\">\n"
			"<busconfig>\n"
			"  <type>system</type>\n"
			"  <listen>unix:path=%s/bus</listen>\n"
			"  <auth>EXTERNAL</auth>\n"
			"  <policy context=\"default\">\n"
			"    <allow user=\"*\"/>\n"
			"    <deny own=\"*\"/>\n"
			"    <deny send_type=\"method_call\"/>\n"
			"    <allow send_type=\"signal\"/>\n"
			"    <allow send_requested_reply=\"true\" "
			"send_type=\"method_return\"/>\n"
			"    <allow send_requested_reply=\"true\" send_type=\"error\"/>\n"
			"    <allow receive_type=\"method_call\"/>\n"
			"    <allow receive_type=\"method_return\"/>\n"
			"    <allow receive_type=\"error\"/>\n"
			"    <allow receive_type=\"signal\"/>\n"
			"    <allow send_destination=\"org.freedesktop.DBus\" "
			"send_interface=\"org.freedesktop.DBus\"/>\n"
			"    <allow send_destination=\"org.freedesktop.DBus\" "
			"send_interface=\"org.freedesktop.DBus.Introspectable\"/>\n"
			"  </policy>\n"
			"  <include>%s</include>\n"
			"%s"
			"</busconfig>\n",
			b->dir, policy,
			b->root_may_own
			    ? "  <policy user=\"root\"><allow own=\"io.otagw\"/></policy>\n"
			    : ""),
		    0);
	} else {
		ck_assert_int_gt(asprintf(&text,
				     "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus "
				     "Configuration 1.0//EN\"\n"
				     " \"http://www.freedesktop.org/standards/dbus/1.0/"
				     "busconfig.dtd\">\n"
				     "<busconfig>\n"
				     "  <type>session</type>\n"
				     "  <listen>unix:path=%s/bus</listen>\n"
				     "  <auth>EXTERNAL</auth>\n"
				     "  <policy context=\"default\">\n"
				     "    <allow user=\"*\"/>\n"
				     "    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n"
				     "    <allow eavesdrop=\"true\"/>\n"
				     "    <allow own=\"*\"/>\n"
				     "  </policy>\n"
				     "</busconfig>\n",
				     b->dir),
		    0);
	}
	tfile_write_str(conf, 0644, text);
	free(text);
	free(conf);
}

static void
dbt_bus_spawn(struct dbt_bus *b)
{
	char *conf = tdir_join(b->dir, "bus.conf"), *log = tdir_join(b->dir, "dbus-daemon.log");
	char *sock = tdir_join(b->dir, "bus"), arg[600], mark[64];
	char *argv[] = {
	    "dbus-daemon", arg, "--nofork", "--nopidfile", "--nosyslog", "--print-address", NULL};
	size_t at = 0;
	FILE *f;

	/* a socket left by a killed bus would make the new one fail to bind */
	unlink(sock);
	snprintf(arg, sizeof(arg), "--config-file=%s", conf);
	snprintf(mark, sizeof(mark), "==== dbus-daemon run %u ====\n", ++b->runs);
	f = fopen(log, "a");
	ck_assert_ptr_nonnull(f);
	fputs(mark, f);
	fclose(f);
	argv[0] = "/usr/bin/dbus-daemon";
	tproc_spawn_log(&b->proc, "dbus-daemon", argv, log, NULL);
	ck_assert_msg(tproc_wait_out(&b->proc, mark, &at, E2E_TIMEOUT_MS), "dbus-daemon: no log");
	ck_assert_msg(tproc_wait_out(&b->proc, "unix:path=", &at, E2E_TIMEOUT_MS),
	    "dbus-daemon did not start");
	free(conf);
	free(log);
	free(sock);
}

static void
dbt_bus_start_full(struct dbt_bus *b, const char *dir, bool system, bool root_may_own)
{
	memset(b, 0, sizeof(*b));
	b->dir = strdup(dir);
	ck_assert_ptr_nonnull(b->dir);
	b->system = system;
	b->root_may_own = root_may_own;
	/* others (run-as.sh nobody) must reach the socket */
	ck_assert_int_eq(chmod(dir, 0755), 0);
	snprintf(b->address, sizeof(b->address), "unix:path=%s/bus", dir);
	dbt_bus_config(b);
	dbt_bus_spawn(b);
	setenv(system ? "DBUS_SYSTEM_BUS_ADDRESS" : "DBUS_SESSION_BUS_ADDRESS", b->address, 1);
}

void
dbt_bus_start(struct dbt_bus *b, const char *dir, bool system)
{
	dbt_bus_start_full(b, dir, system, true);
}

void
dbt_bus_start_system(struct dbt_bus *b, const char *dir, bool root_may_own)
{
	dbt_bus_start_full(b, dir, true, root_may_own);
}

void
dbt_bus_kill(struct dbt_bus *b)
{
	tproc_stop(&b->proc, SIGKILL, E2E_TIMEOUT_MS);
	tproc_free(&b->proc);
}

void
dbt_bus_restart(struct dbt_bus *b)
{
	dbt_bus_spawn(b);
}

void
dbt_bus_free(struct dbt_bus *b)
{
	if (b->proc.pid > 0)
		tproc_stop(&b->proc, SIGTERM, E2E_TIMEOUT_MS);
	tproc_free(&b->proc);
	free(b->dir);
	memset(b, 0, sizeof(*b));
}

/* --- commands --- */

void
dbt_run(struct dbt_out *o, const char *user, const char *const *argv)
{
	const char *run_as = getenv("OTAGW_RUN_AS");
	const char *full[64];
	struct tproc p;
	size_t n = 0, i;

	memset(o, 0, sizeof(*o));
	if (user != NULL) {
		ck_assert_ptr_nonnull(run_as);
		full[n++] = "/bin/bash";
		full[n++] = run_as;
		full[n++] = user;
		full[n++] = "--";
	}
	for (i = 0; argv[i] != NULL && n < 63; i++)
		full[n++] = argv[i];
	full[n] = NULL;
	o->status = tproc_run(&p, (char *const *)full, NULL, E2E_TIMEOUT_MS);
	/* the output is the caller's now */
	o->out = p.out;
	o->err = p.err;
	p.out = p.err = NULL;
	tproc_free(&p);
}

void
dbt_out_free(struct dbt_out *o)
{
	free(o->out);
	free(o->err);
	memset(o, 0, sizeof(*o));
}

void
dbt_ctl(struct dbt_out *o, const struct dbt_bus *b, const char *user, const char *const *args)
{
	const char *argv[32];
	size_t n = 0, i;

	argv[n++] = tproc_prog("OTAGWCTL");
	argv[n++] = b->system ? "--system" : "--user";
	for (i = 0; args[i] != NULL && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	dbt_run(o, user, argv);
}

void
dbt_busctl(struct dbt_out *o, const struct dbt_bus *b, const char *user, const char *const *args)
{
	char addr[700];
	const char *argv[32];
	size_t n = 0, i;

	snprintf(addr, sizeof(addr), "--address=%s", b->address);
	argv[n++] = "busctl";
	argv[n++] = addr;
	argv[n++] = "--timeout=30";
	for (i = 0; args[i] != NULL && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	dbt_run(o, user, argv);
}

json_t *
dbt_json(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &e);

	ck_assert_msg(j != NULL, "not JSON (%s at %d): %s", e.text, e.position, text);
	return j;
}

/* --- the test's own connection --- */

sd_bus *
dbt_connect(const struct dbt_bus *b)
{
	sd_bus *bus = NULL;

	ck_assert_int_ge(sd_bus_new(&bus), 0);
	ck_assert_int_ge(sd_bus_set_address(bus, b->address), 0);
	ck_assert_int_ge(sd_bus_set_bus_client(bus, 1), 0);
	ck_assert_int_ge(sd_bus_start(bus), 0);
	return bus;
}

sd_bus_message *
dbt_call(sd_bus *bus, sd_bus_error *err, const char *member, const char *sig, ...)
{
	sd_bus_message *m = NULL, *reply = NULL;
	va_list ap;
	int r;

	ck_assert_int_ge(
	    sd_bus_message_new_method_call(bus, &m, DBT_NAME, DBT_PATH, DBT_MGR, member), 0);
	if (sig != NULL) {
		va_start(ap, sig);
		r = sd_bus_message_appendv(m, sig, ap);
		va_end(ap);
		ck_assert_int_ge(r, 0);
	}
	r = sd_bus_call(bus, m, 30 * 1000000ULL, err, &reply);
	sd_bus_message_unref(m);
	return r < 0 ? NULL : reply;
}

char *
dbt_get_str(sd_bus *bus, const char *path, const char *iface, const char *prop)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	char *s = NULL;
	int r = sd_bus_get_property_string(bus, DBT_NAME, path, iface, prop, &e, &s);

	ck_assert_msg(r >= 0, "Get %s.%s on %s: %s", iface, prop, path, e.message);
	return s;
}

uint64_t
dbt_get_u64(sd_bus *bus, const char *path, const char *iface, const char *prop)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	uint64_t v = 0;
	uint32_t u = 0;
	char type = 't';
	int r;

	/* the counters are u, the sizes t */
	if (strstr(prop, "Count") != NULL || strcmp(prop, "ConnectedDevices") == 0 ||
	    strcmp(prop, "ActiveTransfers") == 0 || strcmp(prop, "QueuedTransfers") == 0 ||
	    strcmp(prop, "MaxTransfers") == 0 || strcmp(prop, "CacheEntries") == 0 ||
	    strcmp(prop, "Connections") == 0)
		type = 'u';
	r = sd_bus_get_property_trivial(
	    bus, DBT_NAME, path, iface, prop, &e, type, type == 'u' ? (void *)&u : (void *)&v);
	ck_assert_msg(r >= 0, "Get %s.%s on %s: %s", iface, prop, path, e.message);
	return type == 'u' ? u : v;
}

/* Whether the connection of pid has a match rule containing needle. */
static bool
dbt_has_rule(sd_bus *bus, pid_t pid, const char *needle)
{
	sd_bus_message *reply = NULL, *r2 = NULL;
	const char *name, *rule;
	bool found = false;
	uint32_t who;

	if (sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
		"org.freedesktop.DBus.Debug.Stats", "GetAllMatchRules", NULL, &reply, NULL) < 0)
		return false;
	if (sd_bus_message_enter_container(reply, 'a', "{sas}") <= 0)
		goto out;
	while (!found && sd_bus_message_enter_container(reply, 'e', "sas") > 0) {
		if (sd_bus_message_read(reply, "s", &name) < 0)
			break;
		who = 0;
		if (sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
			"org.freedesktop.DBus", "GetConnectionUnixProcessID", NULL, &r2, "s",
			name) >= 0)
			(void)sd_bus_message_read(r2, "u", &who);
		r2 = sd_bus_message_unref(r2);
		if (who == (uint32_t)pid) {
			if (sd_bus_message_enter_container(reply, 'a', "s") <= 0)
				break;
			while (sd_bus_message_read(reply, "s", &rule) > 0)
				if (strstr(rule, needle) != NULL)
					found = true;
			sd_bus_message_exit_container(reply);
		} else if (sd_bus_message_skip(reply, "as") < 0) {
			break;
		}
		sd_bus_message_exit_container(reply);
	}
out:
	sd_bus_message_unref(reply);
	return found;
}

bool
dbt_wait_subscribed(sd_bus *bus, pid_t pid, const char *rule, unsigned timeout_ms)
{
	uint64_t end = tclock_ms() + timeout_ms;

	while (!dbt_has_rule(bus, pid, rule)) {
		if (tclock_ms() > end)
			return false;
		tclock_sleep_ms(20);
	}
	return true;
}

bool
dbt_wait_name(sd_bus *bus, bool owned, unsigned timeout_ms)
{
	uint64_t end = tclock_ms() + timeout_ms;
	sd_bus_message *reply = NULL;
	int has = 0, r;

	for (;;) {
		r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
		    "org.freedesktop.DBus", "NameHasOwner", NULL, &reply, "s", DBT_NAME);
		if (r >= 0 && sd_bus_message_read(reply, "b", &has) >= 0 && (has != 0) == owned) {
			sd_bus_message_unref(reply);
			return true;
		}
		reply = sd_bus_message_unref(reply);
		if (tclock_ms() > end)
			return false;
		tclock_sleep_ms(50);
	}
}

void
dbt_wait_str(struct world *w, sd_bus *bus, const char *path, const char *iface, const char *prop,
    const char *want)
{
	uint64_t end = tclock_ms() + E2E_TIMEOUT_MS;
	char msg[512], *s = NULL;

	for (;;) {
		if (sd_bus_get_property_string(bus, DBT_NAME, path, iface, prop, NULL, &s) >= 0 &&
		    strcmp(s, want) == 0) {
			free(s);
			return;
		}
		if (tclock_ms() > end) {
			snprintf(msg, sizeof(msg), "%s %s is '%s', not '%s'", path, prop,
			    s != NULL ? s : "(unreadable)", want);
			free(s);
			world_fail(w, msg);
		}
		free(s);
		s = NULL;
		tclock_sleep_ms(20);
	}
}

char *
dbt_device_path(const char *serial)
{
	char *p = NULL;

	ck_assert_int_ge(sd_bus_path_encode(DBT_PATH "/device", serial, &p), 0);
	return p;
}
