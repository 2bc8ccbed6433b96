/* io.otagw.Manager1 on /io/otagw (docs/dbus-api.md, "Manager hierarchy"): the gateway's
 * counters as properties, and the methods: GetDevice and GetHistory for anyone, CheckNow,
 * CheckAll, Abort and PurgeCache for root, otagwd's own uid and [dbus] control_group. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "db.h"
#include "dbus_internal.h"
#include "fleet.h"
#include "history.h"
#include "session.h"
#include "store.h"

/* Cache properties are progress properties (coalesced); the others are signalled at once. */
static const char *const dbus_manager_progress[] = {
    "CacheBytes", "CacheEntries", "CacheHits", "CacheMisses"};

void
dbus_manager_values(struct dbus *b, struct dbus_manager_values *out)
{
	struct daemon *d = b->d;
	struct fleet_counts fc;
	struct sessions_stats ss;
	uint64_t bytes = 0, entries = 0;

	memset(out, 0, sizeof(*out));
	snprintf(out->state, sizeof(out->state), "%s", daemon_state_name(daemon_get_state(d)));
	if (d->fleet != NULL) {
		fleet_get_counts(d->fleet, &fc);
		out->devices = fc.devices;
		out->connected = fc.connected;
		out->active =
		    fc.in_state[FLEET_STATE_TRANSFERRING] + fc.in_state[FLEET_STATE_VERIFYING];
		out->queued = fc.in_state[FLEET_STATE_QUEUED];
	}
	out->max_transfers = d->cfg->general.max_transfers;
	out->cache_max = d->cfg->general.cache_max;
	if (d->store != NULL && store_usage(d->store, &bytes, &entries) == 0) {
		out->cache_bytes = bytes;
		out->cache_entries = entries > UINT32_MAX ? UINT32_MAX : (uint32_t)entries;
	}
	if (d->sessions != NULL) {
		sessions_get_stats(d->sessions, &ss);
		out->cache_hits = ss.cache_hits;
		out->cache_misses = ss.cache_misses;
	}
}

void
dbus_manager_changed(struct dbus *b, bool urgent)
{
	if (b == NULL || b->bus == NULL)
		return;
	if (urgent) {
		b->mgr_urgent = true;
		dbus_schedule(b, 0);
		return;
	}
	if (b->mgr_check)
		return; /* already scheduled */
	b->mgr_check = true;
	dbus_schedule(b, b->mgr_progress_ms + DBUS_PROGRESS_MS);
}

void
dbus_manager_flush(struct dbus *b, uint64_t now, uint64_t *next)
{
	const struct dbus_manager_values *o = &b->mgr_sent;
	struct dbus_manager_values v;
	const char *names[16];
	size_t n = 0, progress;
	int r;

	if (!b->mgr_urgent && !b->mgr_check)
		return;
	if (!b->mgr_urgent && now < b->mgr_progress_ms + DBUS_PROGRESS_MS) {
		if (b->mgr_progress_ms + DBUS_PROGRESS_MS < *next)
			*next = b->mgr_progress_ms + DBUS_PROGRESS_MS;
		return;
	}
	dbus_manager_values(b, &v);
	if (strcmp(v.state, o->state) != 0)
		names[n++] = "State";
	if (v.devices != o->devices)
		names[n++] = "DeviceCount";
	if (v.connected != o->connected)
		names[n++] = "ConnectedDevices";
	if (v.active != o->active)
		names[n++] = "ActiveTransfers";
	if (v.queued != o->queued)
		names[n++] = "QueuedTransfers";
	if (v.max_transfers != o->max_transfers)
		names[n++] = "MaxTransfers";
	if (v.cache_max != o->cache_max)
		names[n++] = "CacheMaxBytes";
	progress = n;
	if (v.cache_bytes != o->cache_bytes)
		names[n++] = dbus_manager_progress[0];
	if (v.cache_entries != o->cache_entries)
		names[n++] = dbus_manager_progress[1];
	if (v.cache_hits != o->cache_hits)
		names[n++] = dbus_manager_progress[2];
	if (v.cache_misses != o->cache_misses)
		names[n++] = dbus_manager_progress[3];
	names[n] = NULL;
	if (n > progress)
		b->mgr_progress_ms = now;
	b->mgr_sent = v;
	b->mgr_urgent = b->mgr_check = false;
	if (n == 0)
		return;
	r = sd_bus_emit_properties_changed_strv(b->bus, DBUS_PATH, DBUS_IFACE_MGR, (char **)names);
	if (r < 0)
		log_debug("Failed to signal the manager's properties: %s", strerror(-r));
}

/* --- properties --- */

static int
dbus_manager_get(sd_bus *bus, const char *path, const char *interface, const char *property,
    sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
	struct dbus *b = userdata;
	struct daemon *d = b->d;
	struct dbus_manager_values v;

	(void)bus;
	(void)path;
	(void)interface;
	(void)error;
	if (strcmp(property, "Version") == 0)
		return sd_bus_message_append(reply, "s", OTAGW_VERSION);
	if (strcmp(property, "State") == 0)
		return sd_bus_message_append(reply, "s", daemon_state_name(daemon_get_state(d)));
	dbus_manager_values(b, &v);
	if (strcmp(property, "DeviceCount") == 0)
		return sd_bus_message_append(reply, "u", v.devices);
	if (strcmp(property, "ConnectedDevices") == 0)
		return sd_bus_message_append(reply, "u", v.connected);
	if (strcmp(property, "ActiveTransfers") == 0)
		return sd_bus_message_append(reply, "u", v.active);
	if (strcmp(property, "QueuedTransfers") == 0)
		return sd_bus_message_append(reply, "u", v.queued);
	if (strcmp(property, "MaxTransfers") == 0)
		return sd_bus_message_append(reply, "u", v.max_transfers);
	if (strcmp(property, "CacheBytes") == 0)
		return sd_bus_message_append(reply, "t", v.cache_bytes);
	if (strcmp(property, "CacheMaxBytes") == 0)
		return sd_bus_message_append(reply, "t", v.cache_max);
	if (strcmp(property, "CacheEntries") == 0)
		return sd_bus_message_append(reply, "u", v.cache_entries);
	if (strcmp(property, "CacheHits") == 0)
		return sd_bus_message_append(reply, "t", v.cache_hits);
	if (strcmp(property, "CacheMisses") == 0)
		return sd_bus_message_append(reply, "t", v.cache_misses);
	return -ENOENT;
}

/* --- methods --- */

/* Reads a serial argument and checks it. Returns 0, or the InvalidArgs error. */
static int
dbus_manager_read_serial(sd_bus_message *m, const char **serial, bool empty_ok, sd_bus_error *error)
{
	int r = sd_bus_message_read(m, "s", serial);

	if (r < 0)
		return r;
	if (empty_ok && (*serial)[0] == '\0')
		return 0;
	if (!ident_serial_valid(*serial, strlen(*serial)))
		return dbus_invalid_serial(*serial, error);
	return 0;
}

/* The answer to a caller when the sessions refused with r. */
static int
dbus_manager_session_error(struct dbus *b, int r, const char *serial, sd_bus_error *error)
{
	const struct fleet_device *dev = fleet_get(b->d->fleet, serial);

	switch (r) {
	case -ENOENT:
		return sd_bus_error_setf(error, DBUS_ERROR_NO_SUCH_DEVICE,
		    "No device %s is known to this gateway", serial);
	case -ENOTCONN:
		return sd_bus_error_setf(error, DBUS_ERROR_NOT_CONNECTED,
		    "%s is not connected; it is checked when it connects", serial);
	case -EBUSY:
		return sd_bus_error_setf(error, DBUS_ERROR_IN_PROGRESS,
		    "%s is busy with an update (%s); abort it first", serial,
		    dev != NULL ? fleet_state_name(dev->state) : "busy");
	case -EALREADY:
		return sd_bus_error_setf(error, DBUS_ERROR_NOT_IN_PROGRESS,
		    "%s has nothing in progress to abort (%s)", serial,
		    dev != NULL ? fleet_state_name(dev->state) : "idle");
	case -EINVAL:
		return dbus_invalid_serial(serial, error);
	default:
		return sd_bus_error_setf(
		    error, DBUS_ERROR_FAILED, "%s: %s", serial, strerror(r < 0 ? -r : r));
	}
}

/* NotReady unless the daemon is running. */
static int
dbus_manager_check_running(struct dbus *b, sd_bus_error *error)
{
	enum daemon_state s = daemon_get_state(b->d);

	if (s == DAEMON_STATE_RUNNING)
		return 0;
	return sd_bus_error_setf(error, DBUS_ERROR_NOT_READY, "otagwd is %s; try again %s",
	    daemon_state_name(s),
	    s == DAEMON_STATE_STOPPING ? "once it runs again" : "in a moment");
}

static int
dbus_manager_get_device(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct dbus *b = userdata;
	const char *serial;
	char *path;
	int r;

	r = dbus_manager_read_serial(m, &serial, false, error);
	if (r < 0)
		return r;
	if (fleet_get(b->d->fleet, serial) == NULL)
		return dbus_manager_session_error(b, -ENOENT, serial, error);
	path = dbus_device_path(serial);
	if (path == NULL)
		return -ENOMEM;
	r = sd_bus_reply_method_return(m, "o", path);
	free(path);
	return r;
}

static int
dbus_manager_check_now(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct dbus *b = userdata;
	const char *serial;
	char user[64];
	uid_t uid;
	int r;

	r = sd_bus_message_read(m, "s", &serial);
	if (r < 0)
		return r;
	if (serial[0] == '\0')
		return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
		    "Invalid serial '': name a device, or call CheckAll for every device");
	if (!ident_serial_valid(serial, strlen(serial)))
		return dbus_invalid_serial(serial, error);
	r = dbus_check_access(b, m, "call CheckNow", &uid, user, sizeof(user), error);
	if (r < 0)
		return r;
	r = dbus_manager_check_running(b, error);
	if (r < 0)
		return r;
	r = sessions_check_now(b->d->sessions, serial);
	if (r < 0) {
		r = dbus_manager_session_error(b, r, serial, error);
		dev_info(serial, "CheckNow requested by uid %u (%s), refused: %s", (unsigned)uid,
		    user, error->message);
		return r;
	}
	dev_info(serial, "CheckNow requested by uid %u (%s)", (unsigned)uid, user);
	return sd_bus_reply_method_return(m, NULL);
}

static int
dbus_manager_check_all(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct dbus *b = userdata;
	char user[64];
	unsigned n;
	uid_t uid;
	int r;

	r = dbus_check_access(b, m, "call CheckAll", &uid, user, sizeof(user), error);
	if (r < 0)
		return r;
	r = dbus_manager_check_running(b, error);
	if (r < 0)
		return r;
	n = sessions_check_all(b->d->sessions);
	log_info("CheckAll requested by uid %u (%s): %u check%s started", (unsigned)uid, user, n,
	    n == 1 ? "" : "s");
	return sd_bus_reply_method_return(m, "u", (uint32_t)n);
}

static int
dbus_manager_abort(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct dbus *b = userdata;
	const char *serial;
	char user[64], reason[128];
	uid_t uid;
	int r;

	r = dbus_manager_read_serial(m, &serial, false, error);
	if (r < 0)
		return r;
	r = dbus_check_access(b, m, "call Abort", &uid, user, sizeof(user), error);
	if (r < 0)
		return r;
	snprintf(reason, sizeof(reason), "Aborted by uid %u (%s)", (unsigned)uid, user);
	r = sessions_abort(b->d->sessions, serial, reason);
	if (r < 0) {
		r = dbus_manager_session_error(b, r, serial, error);
		dev_info(serial, "Abort requested by uid %u (%s), refused: %s", (unsigned)uid, user,
		    error->message);
		return r;
	}
	dev_info(serial, "Abort requested by uid %u (%s)", (unsigned)uid, user);
	return sd_bus_reply_method_return(m, NULL);
}

static int
dbus_manager_purge_cache(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct dbus *b = userdata;
	uint64_t bytes = 0, count = 0;
	char user[64];
	uid_t uid;
	int r;

	r = dbus_check_access(b, m, "call PurgeCache", &uid, user, sizeof(user), error);
	if (r < 0)
		return r;
	r = dbus_manager_check_running(b, error);
	if (r < 0)
		return r;
	r = store_purge(b->d->store, &bytes, &count);
	if (r < 0) {
		log_err("PurgeCache requested by uid %u (%s) failed: %s", (unsigned)uid, user,
		    store_errmsg(b->d->store));
		return sd_bus_error_setf(error, DBUS_ERROR_FAILED, "Purging the cache failed: %s",
		    store_errmsg(b->d->store));
	}
	log_info("PurgeCache requested by uid %u (%s): freed %" PRIu64 " bytes in %" PRIu64
		 " payload%s",
	    (unsigned)uid, user, bytes, count, count == 1 ? "" : "s");
	dbus_manager_changed(b, true);
	return sd_bus_reply_method_return(m, "t", bytes);
}

/* GetHistory's result names (docs/dbus-api.md). The history table does not tell a failure
 * that is retried from one that is not, so "error" never comes from it. */
static const char *
dbus_manager_result(enum history_result r)
{
	switch (r) {
	case HISTORY_RESULT_IN_PROGRESS:
		return "in-progress";
	case HISTORY_RESULT_VERIFIED:
		return "transferred";
	case HISTORY_RESULT_INSTALLED:
		return "installed";
	case HISTORY_RESULT_FAILED:
	case HISTORY_RESULT_INSTALL_FAILED:
		return "failed";
	case HISTORY_RESULT_ABORTED:
		return "aborted";
	}
	return "failed";
}

static uint64_t
dbus_manager_usec(int64_t s)
{
	return s > 0 ? (uint64_t)s * 1000000u : 0;
}

static int
dbus_manager_get_history(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct dbus *b = userdata;
	struct db *db = store_db(b->d->store);
	struct history_entry *h = NULL;
	sd_bus_message *reply = NULL;
	const char *serial;
	uint32_t limit;
	size_t n = 0, i;
	int r;

	r = sd_bus_message_read(m, "su", &serial, &limit);
	if (r < 0)
		return r;
	if (serial[0] != '\0' && !ident_serial_valid(serial, strlen(serial)))
		return dbus_invalid_serial(serial, error);
	if (limit > DBUS_HISTORY_MAX)
		return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
		    "Invalid limit %" PRIu32 ": use 1 to %u entries, or 0 for %u", limit,
		    DBUS_HISTORY_MAX, DBUS_HISTORY_DEFAULT);
	if (limit == 0)
		limit = DBUS_HISTORY_DEFAULT;
	if (serial[0] != '\0' && fleet_get(b->d->fleet, serial) == NULL)
		return dbus_manager_session_error(b, -ENOENT, serial, error);
	r = history_list(db, serial[0] != '\0' ? serial : NULL, limit, &h, &n);
	if (r < 0) {
		log_err("Failed to read the update history: %s", db_errmsg(db));
		return sd_bus_error_setf(error, DBUS_ERROR_FAILED,
		    "Reading the update history failed: %s", db_errmsg(db));
	}
	r = sd_bus_message_new_method_return(m, &reply);
	if (r >= 0)
		r = sd_bus_message_open_container(reply, 'a', "(ttsssssst)");
	for (i = 0; i < n && r >= 0; i++) {
		r = sd_bus_message_open_container(reply, 'r', "ttsssssst");
		if (r >= 0)
			r = sd_bus_message_append(reply, "tt", dbus_manager_usec(h[i].started),
			    dbus_manager_usec(h[i].ended));
		if (r >= 0)
			r = dbus_append_text(reply, h[i].serial);
		if (r >= 0)
			r = dbus_append_text(reply, h[i].link);
		if (r >= 0)
			r = dbus_append_text(reply, h[i].from_version);
		if (r >= 0)
			r = dbus_append_text(reply, h[i].to_version);
		if (r >= 0)
			r = sd_bus_message_append(reply, "s", dbus_manager_result(h[i].result));
		if (r >= 0)
			r = dbus_append_text(reply, h[i].reason);
		if (r >= 0)
			r = sd_bus_message_append(reply, "t", h[i].bytes);
		if (r >= 0)
			r = sd_bus_message_close_container(reply);
	}
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	if (r >= 0)
		r = sd_bus_send(NULL, reply, NULL);
	sd_bus_message_unref(reply);
	free(h);
	return r;
}

/* Every method is UNPRIVILEGED: otherwise sd-bus itself would demand CAP_SYS_ADMIN of callers
 * on the system bus (read from /proc). otagwd checks callers itself, and the bus policy
 * before it. (sd-bus refuses the flag on read-only properties.) */
#define DBUS_MGR_PROP(name, sig, flags) SD_BUS_PROPERTY(name, sig, dbus_manager_get, 0, flags)
#define DBUS_EMITS                      SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE

const sd_bus_vtable dbus_manager_vtable[] = {
    SD_BUS_VTABLE_START(SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("GetDevice", "s", SD_BUS_PARAM(serial), "o", SD_BUS_PARAM(device),
	dbus_manager_get_device, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("CheckNow", "s", SD_BUS_PARAM(serial), "", , dbus_manager_check_now,
	SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("CheckAll", "", , "u", SD_BUS_PARAM(started), dbus_manager_check_all,
	SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES(
	"Abort", "s", SD_BUS_PARAM(serial), "", , dbus_manager_abort, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("PurgeCache", "", , "t", SD_BUS_PARAM(freed), dbus_manager_purge_cache,
	SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("GetHistory", "su", SD_BUS_PARAM(serial) SD_BUS_PARAM(limit),
	"a(ttsssssst)", SD_BUS_PARAM(entries), dbus_manager_get_history,
	SD_BUS_VTABLE_UNPRIVILEGED),
    DBUS_MGR_PROP("Version", "s", SD_BUS_VTABLE_PROPERTY_CONST),
    DBUS_MGR_PROP("State", "s", DBUS_EMITS),
    DBUS_MGR_PROP("DeviceCount", "u", DBUS_EMITS),
    DBUS_MGR_PROP("ConnectedDevices", "u", DBUS_EMITS),
    DBUS_MGR_PROP("ActiveTransfers", "u", DBUS_EMITS),
    DBUS_MGR_PROP("QueuedTransfers", "u", DBUS_EMITS),
    DBUS_MGR_PROP("MaxTransfers", "u", DBUS_EMITS),
    DBUS_MGR_PROP("CacheBytes", "t", DBUS_EMITS),
    DBUS_MGR_PROP("CacheMaxBytes", "t", DBUS_EMITS),
    DBUS_MGR_PROP("CacheEntries", "u", DBUS_EMITS),
    DBUS_MGR_PROP("CacheHits", "t", DBUS_EMITS),
    DBUS_MGR_PROP("CacheMisses", "t", DBUS_EMITS),
    SD_BUS_VTABLE_END,
};
