/* otagwctl's commands other than watch (otagwctl(1), COMMANDS): each reads what it needs from
 * otagwd, prints it for a person or as one line of JSON, and returns the exit code. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

/* check waits this long for the outcome. */
#define CMD_CHECK_TIMEOUT_US (90 * 1000000ULL)
/* Longest address status prints in its table. */
#define CMD_ADDRESS_MAX 40

static uint64_t
cmd_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const char *
cmd_plural(uint64_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

/* --- status --- */

int
cmd_status(struct client *c)
{
	struct fmt_table t = {.ncols = 5};
	json_t *mgr = NULL, *links = NULL, *l;
	char used[32], max[32], addr[CMD_ADDRESS_MAX + 1], extra[300];
	size_t i;
	int r;

	r = client_get_all(c, CTL_PATH, CTL_IFACE_MGR, NULL, &mgr);
	if (r == 0)
		r = client_objects(c, NULL, &links);
	if (r != 0)
		goto out;
	if (c->json) {
		json_object_set(mgr, "Links", links);
		r = fmt_print_json(mgr);
		goto out;
	}
	fmt_bytes(used, sizeof(used), fmt_u64(mgr, "CacheBytes"));
	fmt_bytes(max, sizeof(max), fmt_u64(mgr, "CacheMaxBytes"));
	printf("otagwd %s: %s\n", fmt_str(mgr, "Version"), fmt_str(mgr, "State"));
	printf("Devices:    %" PRIu64 " known, %" PRIu64 " connected\n",
	    fmt_u64(mgr, "DeviceCount"), fmt_u64(mgr, "ConnectedDevices"));
	printf("Transfers:  %" PRIu64 " active, %" PRIu64 " queued (at most %" PRIu64 " at once)\n",
	    fmt_u64(mgr, "ActiveTransfers"), fmt_u64(mgr, "QueuedTransfers"),
	    fmt_u64(mgr, "MaxTransfers"));
	printf("Cache:      %s of %s in %" PRIu64 " %s; %" PRIu64 " %s, %" PRIu64 " %s\n", used,
	    max, fmt_u64(mgr, "CacheEntries"),
	    cmd_plural(fmt_u64(mgr, "CacheEntries"), "payload", "payloads"),
	    fmt_u64(mgr, "CacheHits"), cmd_plural(fmt_u64(mgr, "CacheHits"), "hit", "hits"),
	    fmt_u64(mgr, "CacheMisses"), cmd_plural(fmt_u64(mgr, "CacheMisses"), "miss", "misses"));
	printf("Links:%s\n", json_array_size(links) == 0 ? " none" : "");
	json_array_foreach(links, i, l)
	{
		bool up = strcmp(fmt_str(l, "State"), "up") == 0;
		uint64_t n = fmt_u64(l, "Connections");
		const char *cells[5];

		fmt_cut(addr, sizeof(addr), fmt_str(l, "Address"), CMD_ADDRESS_MAX);
		if (up)
			snprintf(extra, sizeof(extra), "%" PRIu64 " %s", n,
			    cmd_plural(n, "device", "devices"));
		else
			snprintf(extra, sizeof(extra), "%s", fmt_str(l, "LastError"));
		cells[0] = fmt_str(l, "Name");
		cells[1] = fmt_str(l, "Kind");
		cells[2] = addr;
		cells[3] = fmt_str(l, "State");
		cells[4] = extra;
		fmt_table_add(&t, cells);
	}
	for (i = 0; i < t.n; i++) { /* indent the table under "Links:" */
		char *s = NULL;

		if (asprintf(&s, "  %s", t.rows[i][0]) > 0) {
			free(t.rows[i][0]);
			t.rows[i][0] = s;
		}
	}
	fmt_table_print(&t, stdout);
out:
	fmt_table_free(&t);
	json_decref(mgr);
	json_decref(links);
	return r;
}

/* --- devices --- */

/* "45 %" or "-". */
static void
cmd_progress(char *buf, size_t len, const json_t *dev)
{
	const char *state = fmt_str(dev, "State");
	int pct = fmt_percent(dev);

	if (pct < 0 || strcmp(state, "idle") == 0 || strcmp(state, "checking") == 0 ||
	    strcmp(state, "up-to-date") == 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%d %%", pct);
}

static void
cmd_last_seen(char *buf, size_t len, const json_t *dev)
{
	if (fmt_bool(dev, "Connected"))
		snprintf(buf, len, "now");
	else
		fmt_time_minutes(buf, len, fmt_u64(dev, "LastSeen"));
}

static const char *
cmd_dash(const char *s)
{
	return s[0] != '\0' ? s : "-";
}

int
cmd_devices(struct client *c)
{
	static const char *const header[] = {
	    "SERIAL", "LINK", "STATE", "VERSION", "TARGET", "PROGRESS", "LAST SEEN"};
	struct fmt_table t = {.ncols = 7};
	json_t *devs = NULL, *d;
	char pct[16], seen[32];
	size_t i;
	int r;

	r = client_objects(c, &devs, NULL);
	if (r != 0)
		return r;
	if (c->json) {
		r = fmt_print_json(devs);
		json_decref(devs);
		return r;
	}
	if (json_array_size(devs) == 0) {
		printf("No devices known yet.\n");
		json_decref(devs);
		return CTL_EXIT_OK;
	}
	fmt_table_add(&t, header);
	json_array_foreach(devs, i, d)
	{
		const char *cells[7];

		cmd_progress(pct, sizeof(pct), d);
		cmd_last_seen(seen, sizeof(seen), d);
		cells[0] = fmt_str(d, "Serial");
		cells[1] = cmd_dash(fmt_str(d, "Link"));
		cells[2] = fmt_str(d, "State");
		cells[3] = cmd_dash(fmt_str(d, "CurrentVersion"));
		cells[4] = cmd_dash(fmt_str(d, "TargetVersion"));
		cells[5] = pct;
		cells[6] = seen;
		fmt_table_add(&t, cells);
	}
	fmt_table_print(&t, stdout);
	fmt_table_free(&t);
	json_decref(devs);
	return CTL_EXIT_OK;
}

/* --- show --- */

/* The device's properties with "Path". */
static int
cmd_device(struct client *c, const char *serial, json_t **out)
{
	char *path = NULL;
	int r;

	r = client_device_path(c, serial, &path);
	if (r == 0)
		r = client_get_all(c, path, CTL_IFACE_DEV, serial, out);
	if (r == 0)
		json_object_set_new(*out, "Path", json_string(path));
	free(path);
	return r;
}

static void
cmd_show_text(const json_t *d)
{
	const char *state = fmt_str(d, "State"), *target = fmt_str(d, "TargetVersion");
	const char *result = fmt_str(d, "LastResult"), *reason = fmt_str(d, "LastReason");
	uint64_t done = fmt_u64(d, "BytesDone"), total = fmt_u64(d, "BytesTotal");
	double rate = fmt_real(d, "Rate");
	char a[32], b[32], r[32], eta[32], seen[32];

	printf("%s\n", fmt_str(d, "Serial"));
	printf("  Identity:    hardware %s, software %s, running %s\n",
	    fmt_str(d, "HardwareVersion"), fmt_str(d, "SoftwareType"),
	    fmt_str(d, "CurrentVersion"));
	printf("  Link:        %s", cmd_dash(fmt_str(d, "Link")));
	if (fmt_str(d, "Address")[0] != '\0')
		printf(" (%s)", fmt_str(d, "Address"));
	printf(", %s\n", fmt_bool(d, "Connected") ? "connected" : "not connected");
	printf("  State:       %s", state);
	if (strcmp(state, "installed") == 0 || strcmp(state, "awaiting-install") == 0)
		printf(" %s", target);
	else if (target[0] != '\0' && strcmp(target, fmt_str(d, "CurrentVersion")) != 0 &&
		 strcmp(state, "up-to-date") != 0 && strcmp(state, "idle") != 0 &&
		 strcmp(state, "checking") != 0)
		printf(" %s -> %s", fmt_str(d, "CurrentVersion"), target);
	printf("\n");
	if (total > 0) {
		fmt_bytes(a, sizeof(a), done);
		fmt_bytes(b, sizeof(b), total);
		printf("  Progress:    %d %% (%s of %s)", fmt_percent(d), a, b);
		if (rate > 0.0) {
			fmt_bytes(r, sizeof(r), (uint64_t)rate);
			fmt_duration(eta, sizeof(eta),
			    done < total ? (uint64_t)((double)(total - done) / rate) : 0);
			printf(", %s/s, %s left", r, eta);
		}
		printf("\n");
	}
	if (result[0] != '\0')
		printf("  Last result: %s%s%s\n", result, reason[0] != '\0' ? ": " : "", reason);
	cmd_last_seen(seen, sizeof(seen), d);
	printf("  Last seen:   %s\n", seen);
}

int
cmd_show(struct client *c, const char *serial)
{
	json_t *d = NULL;
	int r = cmd_device(c, serial, &d);

	if (r != 0)
		return r;
	if (c->json)
		r = fmt_print_json(d);
	else
		cmd_show_text(d);
	json_decref(d);
	return r;
}

/* --- check --- */

struct cmd_check {
	uint64_t after;   /* signals sent before CheckNow's reply (lower cookie) are old */
	bool answered;    /* CheckNow's reply arrived: after is set */
	char outcome[32]; /* the first State other than "checking" after the reply */
	bool gone;        /* otagwd left the bus */
};

static int
cmd_check_changed(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct cmd_check *k = userdata;
	const char *iface, *state;
	uint64_t cookie = 0;
	json_t *props;

	(void)error;
	if (!k->answered || k->outcome[0] != '\0')
		return 0;
	if (sd_bus_message_get_cookie(m, &cookie) < 0 || cookie < k->after)
		return 0;
	if (sd_bus_message_read(m, "s", &iface) < 0 || strcmp(iface, CTL_IFACE_DEV) != 0)
		return 0;
	props = json_object();
	if (props != NULL && client_read_props(m, props) == 0) {
		state = json_string_value(json_object_get(props, "State"));
		if (state != NULL && strcmp(state, "checking") != 0)
			snprintf(k->outcome, sizeof(k->outcome), "%s", state);
	}
	json_decref(props);
	return 0;
}

static int
cmd_check_owner(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct cmd_check *k = userdata;
	const char *name, *old, *new;

	(void)error;
	if (sd_bus_message_read(m, "sss", &name, &old, &new) >= 0 && strcmp(name, CTL_NAME) == 0 &&
	    new[0] == '\0')
		k->gone = true;
	return 0;
}

/* Prints the outcome of a check; returns the exit code. */
static int
cmd_check_report(struct client *c, const json_t *d)
{
	const char *serial = fmt_str(d, "Serial"), *state = fmt_str(d, "State");
	const char *reason = fmt_str(d, "LastReason");
	bool ok = strcmp(state, "up-to-date") == 0 || strcmp(state, "downloading") == 0 ||
		  strcmp(state, "queued") == 0 || strcmp(state, "transferring") == 0 ||
		  strcmp(state, "verifying") == 0 || strcmp(state, "awaiting-install") == 0 ||
		  strcmp(state, "installed") == 0;

	if (c->json) {
		fmt_print_json((json_t *)d);
	} else if (strcmp(state, "up-to-date") == 0) {
		printf("%s: up to date%s%s%s\n", serial, reason[0] ? " (" : "", reason,
		    reason[0] ? ")" : "");
	} else if (ok) {
		printf("%s: update to %s, %s\n", serial, fmt_str(d, "TargetVersion"), state);
	} else {
		printf("%s: %s%s%s\n", serial, state, reason[0] ? ": " : "", reason);
	}
	return ok ? CTL_EXIT_OK : CTL_EXIT_FAILURE;
}

int
cmd_check(struct client *c, const char *serial)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	sd_bus_slot *changed = NULL, *owner = NULL;
	struct cmd_check k = {0};
	uint64_t deadline, now;
	json_t *d = NULL;
	char *path = NULL;
	int r, ret;

	ret = client_device_path(c, serial, &path);
	if (ret != 0)
		return ret;
	/* Listen before asking, so no change can slip between the call and the match. */
	r = sd_bus_match_signal(c->bus, &changed, CTL_NAME, path, "org.freedesktop.DBus.Properties",
	    "PropertiesChanged", cmd_check_changed, &k);
	if (r >= 0)
		r = sd_bus_add_match(c->bus, &owner,
		    "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
		    "member='NameOwnerChanged',arg0='" CTL_NAME "'",
		    cmd_check_owner, &k);
	if (r < 0) {
		ret = client_error(c, r, NULL, serial);
		goto out;
	}
	r = sd_bus_call_method(
	    c->bus, CTL_NAME, CTL_PATH, CTL_IFACE_MGR, "CheckNow", &e, &reply, "s", serial);
	if (r < 0) {
		ret = client_error(c, r, &e, serial);
		goto out;
	}
	(void)sd_bus_message_get_cookie(reply, &k.after);
	k.answered = true;
	deadline = cmd_now_us() + CMD_CHECK_TIMEOUT_US;
	while (k.outcome[0] == '\0' && !k.gone && (now = cmd_now_us()) < deadline) {
		r = sd_bus_process(c->bus, NULL);
		if (r < 0) {
			ret = client_error(c, r, NULL, serial);
			goto out;
		}
		if (r == 0)
			sd_bus_wait(c->bus, deadline - now);
	}
	if (k.gone) {
		fprintf(
		    stderr, "otagwctl: otagwd is not running (it went away during the check)\n");
		ret = CTL_EXIT_NOT_RUNNING;
		goto out;
	}
	ret = client_get_all(c, path, CTL_IFACE_DEV, serial, &d);
	if (ret != 0)
		goto out;
	json_object_set_new(d, "Path", json_string(path));
	if (k.outcome[0] == '\0') {
		fprintf(stderr, "otagwctl: %s: no outcome after %llu seconds (State %s)\n", serial,
		    CMD_CHECK_TIMEOUT_US / 1000000ULL, fmt_str(d, "State"));
		ret = CTL_EXIT_FAILURE;
		goto out;
	}
	ret = cmd_check_report(c, d);
out:
	sd_bus_slot_unref(changed);
	sd_bus_slot_unref(owner);
	sd_bus_error_free(&e);
	sd_bus_message_unref(reply);
	json_decref(d);
	free(path);
	return ret;
}

int
cmd_check_all(struct client *c)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	uint32_t n = 0;
	json_t *j;
	int r, ret = CTL_EXIT_OK;

	r = sd_bus_call_method(
	    c->bus, CTL_NAME, CTL_PATH, CTL_IFACE_MGR, "CheckAll", &e, &reply, NULL);
	if (r >= 0)
		r = sd_bus_message_read(reply, "u", &n);
	if (r < 0) {
		ret = client_error(c, r, &e, NULL);
	} else if (c->json) {
		j = json_pack("{sI}", "Started", (json_int_t)n);
		ret = j != NULL ? fmt_print_json(j) : CTL_EXIT_FAILURE;
		json_decref(j);
	} else {
		printf("Started %" PRIu32 " %s\n", n, cmd_plural(n, "check", "checks"));
	}
	sd_bus_error_free(&e);
	sd_bus_message_unref(reply);
	return ret;
}

/* --- abort --- */

int
cmd_abort(struct client *c, const char *serial)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	json_t *d = NULL;
	int r, ret;

	r = sd_bus_call_method(
	    c->bus, CTL_NAME, CTL_PATH, CTL_IFACE_MGR, "Abort", &e, NULL, "s", serial);
	if (r < 0) {
		ret = client_error(c, r, &e, serial);
		sd_bus_error_free(&e);
		return ret;
	}
	if (!c->json) {
		printf("%s: aborted\n", serial);
		return CTL_EXIT_OK;
	}
	ret = cmd_device(c, serial, &d);
	if (ret == 0)
		ret = fmt_print_json(d);
	json_decref(d);
	return ret;
}

/* --- cache --- */

int
cmd_cache(struct client *c, bool purge)
{
	static const char *const keys[] = {
	    "CacheBytes", "CacheMaxBytes", "CacheEntries", "CacheHits", "CacheMisses"};
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	json_t *mgr = NULL, *j = NULL;
	char a[32], b[32];
	uint64_t freed = 0;
	size_t i;
	int r, ret = CTL_EXIT_OK;

	if (purge) {
		r = sd_bus_call_method(
		    c->bus, CTL_NAME, CTL_PATH, CTL_IFACE_MGR, "PurgeCache", &e, &reply, NULL);
		if (r >= 0)
			r = sd_bus_message_read(reply, "t", &freed);
		if (r < 0) {
			ret = client_error(c, r, &e, NULL);
		} else if (c->json) {
			j = json_pack("{sI}", "FreedBytes",
			    (json_int_t)(freed > INT64_MAX ? INT64_MAX : freed));
			ret = j != NULL ? fmt_print_json(j) : CTL_EXIT_FAILURE;
		} else {
			fmt_bytes(a, sizeof(a), freed);
			printf("Freed %s\n", a);
		}
		goto out;
	}
	ret = client_get_all(c, CTL_PATH, CTL_IFACE_MGR, NULL, &mgr);
	if (ret != 0)
		goto out;
	if (c->json) {
		j = json_object();
		for (i = 0; j != NULL && i < sizeof(keys) / sizeof(keys[0]); i++)
			json_object_set(j, keys[i], json_object_get(mgr, keys[i]));
		ret = j != NULL ? fmt_print_json(j) : CTL_EXIT_FAILURE;
		goto out;
	}
	fmt_bytes(a, sizeof(a), fmt_u64(mgr, "CacheBytes"));
	fmt_bytes(b, sizeof(b), fmt_u64(mgr, "CacheMaxBytes"));
	printf("Cache: %s of %s in %" PRIu64 " %s; %" PRIu64 " %s, %" PRIu64
	       " %s since otagwd started\n",
	    a, b, fmt_u64(mgr, "CacheEntries"),
	    cmd_plural(fmt_u64(mgr, "CacheEntries"), "payload", "payloads"),
	    fmt_u64(mgr, "CacheHits"), cmd_plural(fmt_u64(mgr, "CacheHits"), "hit", "hits"),
	    fmt_u64(mgr, "CacheMisses"), cmd_plural(fmt_u64(mgr, "CacheMisses"), "miss", "misses"));
out:
	sd_bus_error_free(&e);
	sd_bus_message_unref(reply);
	json_decref(mgr);
	json_decref(j);
	return ret;
}

/* --- history --- */

int
cmd_history(struct client *c, const char *serial, unsigned n)
{
	static const char *const header[] = {
	    "STARTED", "SERIAL", "LINK", "FROM", "TO", "RESULT", "BYTES", "DURATION", "REASON"};
	struct fmt_table t = {.ncols = 9};
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	json_t *arr = json_array(), *o;
	uint64_t started, finished, bytes;
	const char *s, *link, *from, *to, *result, *reason;
	char when[32], size[32], took[32];
	int r, ret = CTL_EXIT_OK;

	r = sd_bus_call_method(c->bus, CTL_NAME, CTL_PATH, CTL_IFACE_MGR, "GetHistory", &e, &reply,
	    "su", serial != NULL ? serial : "", (uint32_t)n);
	if (r < 0) {
		ret = client_error(c, r, &e, serial);
		goto out;
	}
	r = sd_bus_message_enter_container(reply, 'a', "(ttsssssst)");
	while (r >= 0 && arr != NULL) {
		r = sd_bus_message_read(reply, "(ttsssssst)", &started, &finished, &s, &link, &from,
		    &to, &result, &reason, &bytes);
		if (r <= 0)
			break;
		o = json_pack("{sIsIsssssssssssssI}", "Started", (json_int_t)started, "Finished",
		    (json_int_t)finished, "Serial", s, "Link", link, "FromVersion", from,
		    "ToVersion", to, "Result", result, "Reason", reason, "Bytes",
		    (json_int_t)(bytes > INT64_MAX ? INT64_MAX : bytes));
		if (o == NULL) {
			r = -ENOMEM;
			break;
		}
		json_array_append_new(arr, o);
	}
	if (r < 0 || arr == NULL) {
		fprintf(stderr, "otagwctl: otagwd sent a history that cannot be read\n");
		ret = CTL_EXIT_FAILURE;
		goto out;
	}
	if (c->json) {
		ret = fmt_print_json(arr);
		goto out;
	}
	if (json_array_size(arr) == 0) {
		printf("No update attempts recorded%s%s.\n", serial != NULL ? " for " : "",
		    serial != NULL ? serial : "");
		goto out;
	}
	fmt_table_add(&t, header);
	for (size_t i = 0; i < json_array_size(arr); i++) {
		const char *cells[9];

		o = json_array_get(arr, i);
		started = fmt_u64(o, "Started");
		finished = fmt_u64(o, "Finished");
		fmt_time_minutes(when, sizeof(when), started);
		fmt_bytes(size, sizeof(size), fmt_u64(o, "Bytes"));
		if (finished >= started && finished > 0)
			fmt_duration(took, sizeof(took), (finished - started) / 1000000u);
		else
			snprintf(took, sizeof(took), "-");
		cells[0] = when;
		cells[1] = fmt_str(o, "Serial");
		cells[2] = cmd_dash(fmt_str(o, "Link"));
		cells[3] = cmd_dash(fmt_str(o, "FromVersion"));
		cells[4] = cmd_dash(fmt_str(o, "ToVersion"));
		cells[5] = fmt_str(o, "Result");
		cells[6] = size;
		cells[7] = took;
		cells[8] = fmt_str(o, "Reason");
		fmt_table_add(&t, cells);
	}
	fmt_table_print(&t, stdout);
out:
	fmt_table_free(&t);
	sd_bus_error_free(&e);
	sd_bus_message_unref(reply);
	json_decref(arr);
	return ret;
}
