/* io.otagw.Device1 (docs/dbus-api.md, "Device hierarchy"): one object per device of the fleet,
 * served by a fallback vtable under /io/otagw/device that finds the device from the path, so
 * thousands of devices cost no registration each, and a new connection re-exports them all
 * at once. Changes reported by the fleet are queued per device and sent by the scheduler in
 * dbus.c: InterfacesAdded for a new device, at once for a state change, and progress at most
 * every DBUS_PROGRESS_MS, riding along with the next state change if there is one. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "busev.h"
#include "clock.h"
#include "daemon.h"
#include "dbus_internal.h"
#include "fleet.h"

#define DBUS_DEVICE_BUCKETS 1024u

/* Device1 properties that can change, as bits. */
enum dbus_device_prop {
	DBUS_DEVICE_P_HW = 1u << 0,
	DBUS_DEVICE_P_SWTYPE = 1u << 1,
	DBUS_DEVICE_P_CURRENT = 1u << 2,
	DBUS_DEVICE_P_TARGET = 1u << 3,
	DBUS_DEVICE_P_LINK = 1u << 4,
	DBUS_DEVICE_P_ADDRESS = 1u << 5,
	DBUS_DEVICE_P_STATE = 1u << 6,
	DBUS_DEVICE_P_DONE = 1u << 7,
	DBUS_DEVICE_P_TOTAL = 1u << 8,
	DBUS_DEVICE_P_RATE = 1u << 9,
	DBUS_DEVICE_P_RESULT = 1u << 10,
	DBUS_DEVICE_P_REASON = 1u << 11,
	DBUS_DEVICE_P_SEEN = 1u << 12,
	DBUS_DEVICE_P_CONNECTED = 1u << 13,
};
#define DBUS_DEVICE_P_PROGRESS \
	((unsigned)(DBUS_DEVICE_P_DONE | DBUS_DEVICE_P_TOTAL | DBUS_DEVICE_P_RATE))
#define DBUS_DEVICE_N_PROPS 14

/* In bit order. */
static const char *const dbus_device_names[DBUS_DEVICE_N_PROPS] = {"HardwareVersion",
    "SoftwareType", "CurrentVersion", "TargetVersion", "Link", "Address", "State", "BytesDone",
    "BytesTotal", "Rate", "LastResult", "LastReason", "LastSeen", "Connected"};

struct dbus_device {
	const struct fleet_device *dev; /* lives as long as the fleet */
	struct dbus_device *next;       /* hash chain */
	TAILQ_ENTRY(dbus_device) entry; /* in b->dev_queue while queued */
	unsigned dirty;                 /* enum dbus_device_prop bits to signal */
	bool queued;
	bool added;           /* InterfacesAdded to send (it carries every property) */
	uint64_t progress_ms; /* when progress was last signalled */
};

static unsigned
dbus_device_hash(const struct fleet_device *dev)
{
	return (unsigned)(((uintptr_t)dev >> 4) % DBUS_DEVICE_BUCKETS);
}

static struct dbus_device *
dbus_device_get(struct dbus *b, const struct fleet_device *dev)
{
	unsigned h = dbus_device_hash(dev);
	struct dbus_device *dd;

	for (dd = b->dev_buckets[h]; dd != NULL; dd = dd->next)
		if (dd->dev == dev)
			return dd;
	dd = calloc(1, sizeof(*dd));
	if (dd == NULL)
		return NULL;
	dd->dev = dev;
	dd->next = b->dev_buckets[h];
	b->dev_buckets[h] = dd;
	return dd;
}

char *
dbus_device_path(const char *serial)
{
	char *path = NULL;

	return sd_bus_path_encode(DBUS_DEVICE_PATH, serial, &path) < 0 ? NULL : path;
}

static unsigned
dbus_device_props_of(unsigned fields)
{
	unsigned p = 0;

	if (fields & FLEET_FIELD_IDENTITY)
		p |= DBUS_DEVICE_P_HW | DBUS_DEVICE_P_SWTYPE | DBUS_DEVICE_P_CURRENT;
	if (fields & FLEET_FIELD_LINK)
		p |= DBUS_DEVICE_P_LINK | DBUS_DEVICE_P_ADDRESS;
	if (fields & FLEET_FIELD_STATE)
		p |= DBUS_DEVICE_P_STATE;
	if (fields & FLEET_FIELD_PROGRESS)
		p |= DBUS_DEVICE_P_PROGRESS;
	if (fields & FLEET_FIELD_TARGET)
		p |= DBUS_DEVICE_P_TARGET;
	if (fields & FLEET_FIELD_RESULT)
		p |= DBUS_DEVICE_P_RESULT | DBUS_DEVICE_P_REASON;
	if (fields & FLEET_FIELD_SEEN)
		p |= DBUS_DEVICE_P_SEEN;
	if (fields & FLEET_FIELD_CONNECTED)
		p |= DBUS_DEVICE_P_CONNECTED;
	return p;
}

static void
dbus_device_unqueue(struct dbus *b, struct dbus_device *dd)
{
	if (dd->queued)
		TAILQ_REMOVE(&b->dev_queue, dd, entry);
	dd->queued = false;
	dd->added = false;
	dd->dirty = 0;
}

/* Sends what dd has to say now: InterfacesAdded for a new device (it carries every property),
 * else PropertiesChanged with every property that changed. */
static void
dbus_device_emit(struct dbus *b, struct dbus_device *dd, uint64_t now)
{
	const char *names[DBUS_DEVICE_N_PROPS + 1];
	char *path = dbus_device_path(dd->dev->serial);
	size_t n, i;
	int r;

	if (path == NULL) {
		dbus_device_unqueue(b, dd);
		return;
	}
	if (dd->added) {
		r = sd_bus_emit_interfaces_added(b->bus, path, DBUS_IFACE_DEVICE, NULL);
		dd->progress_ms = now;
	} else {
		for (i = 0, n = 0; i < DBUS_DEVICE_N_PROPS; i++)
			if (dd->dirty & (1u << i))
				names[n++] = dbus_device_names[i];
		names[n] = NULL;
		if (dd->dirty & DBUS_DEVICE_P_PROGRESS)
			dd->progress_ms = now;
		r = sd_bus_emit_properties_changed_strv(
		    b->bus, path, DBUS_IFACE_DEVICE, (char **)names);
	}
	if (r < 0)
		dev_debug(dd->dev->serial, "Failed to signal its properties: %s", strerror(-r));
	free(path);
	dbus_device_unqueue(b, dd);
}

void
dbus_device_flush(struct dbus *b, uint64_t now, uint64_t *next)
{
	struct dbus_device *dd, *tmp;

	for (dd = TAILQ_FIRST(&b->dev_queue); dd != NULL; dd = tmp) {
		tmp = TAILQ_NEXT(dd, entry);
		if (!dd->added && !(dd->dirty & ~DBUS_DEVICE_P_PROGRESS) &&
		    now < dd->progress_ms + DBUS_PROGRESS_MS) {
			if (dd->progress_ms + DBUS_PROGRESS_MS < *next)
				*next = dd->progress_ms + DBUS_PROGRESS_MS;
			continue;
		}
		dbus_device_emit(b, dd, now);
	}
}

/* A device changed: signal it now (new device, new state) or queue it (progress, the rest). */
static void
dbus_device_changed(const struct fleet_device *dev, unsigned fields, void *arg)
{
	struct dbus *b = arg;
	struct dbus_device *dd;
	unsigned props = dbus_device_props_of(fields);
	bool urgent = (fields & FLEET_FIELD_ADDED) || (props & ~DBUS_DEVICE_P_PROGRESS);

	/* The manager counts devices per state and connection; its cache figures move with
	 * downloads and transfers. */
	dbus_manager_changed(
	    b, (fields & (FLEET_FIELD_ADDED | FLEET_FIELD_STATE | FLEET_FIELD_CONNECTED)) != 0);
	if (b->bus == NULL)
		return; /* a new connection starts afresh */
	dd = dbus_device_get(b, dev);
	if (dd == NULL) {
		dev_warn(dev->serial, "Out of memory: its D-Bus signals are lost, ignoring");
		return;
	}
	if (fields & FLEET_FIELD_ADDED)
		dd->added = true;
	dd->dirty |= props;
	if (!dd->queued) {
		TAILQ_INSERT_TAIL(&b->dev_queue, dd, entry);
		dd->queued = true;
	}
	if (fields & (FLEET_FIELD_ADDED | FLEET_FIELD_STATE)) {
		/* Every state is signalled, even one that lasts less than a loop iteration
		 * (verifying, when the device's RESULT arrives with the last ACK): clients such as
		 * otagwctl watch follow the transitions. */
		dbus_device_emit(b, dd, clock_mono_ms());
		busev_rearm(b->be);
		return;
	}
	dbus_schedule(b, urgent ? 0 : dd->progress_ms + DBUS_PROGRESS_MS);
}

void
dbus_device_reset(struct dbus *b)
{
	struct dbus_device *dd;

	while ((dd = TAILQ_FIRST(&b->dev_queue)) != NULL)
		dbus_device_unqueue(b, dd);
}

/* --- the objects --- */

/* The device at path, if path is its canonical object path (sd_bus_path_decode() would also
 * take "_61bc" for "abc"; one device has one path). */
static const struct fleet_device *
dbus_device_at(struct dbus *b, const char *path)
{
	const struct fleet_device *dev = NULL;
	char *serial = NULL, *canon;

	if (sd_bus_path_decode(path, DBUS_DEVICE_PATH, &serial) <= 0 || serial == NULL)
		return NULL;
	if (ident_serial_valid(serial, strlen(serial))) {
		canon = dbus_device_path(serial);
		if (canon != NULL && strcmp(canon, path) == 0)
			dev = fleet_get(b->d->fleet, serial);
		free(canon);
	}
	free(serial);
	return dev;
}

static int
dbus_device_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
    sd_bus_error *error)
{
	const struct fleet_device *dev = dbus_device_at(userdata, path);

	(void)bus;
	(void)interface;
	(void)error;
	if (dev == NULL)
		return 0;
	*found = (void *)(uintptr_t)dev; /* the getters only read it */
	return 1;
}

struct dbus_device_list {
	char **paths;
	size_t n, max;
};

static int
dbus_device_list_one(const struct fleet_device *dev, void *arg)
{
	struct dbus_device_list *l = arg;

	if (l->n >= l->max)
		return 0; /* added since it was counted: the next listing has it */
	l->paths[l->n] = dbus_device_path(dev->serial);
	if (l->paths[l->n] == NULL)
		return -ENOMEM;
	l->n++;
	return 0;
}

static int
dbus_device_enumerate(
    sd_bus *bus, const char *prefix, void *userdata, char ***nodes, sd_bus_error *error)
{
	struct dbus *b = userdata;
	struct dbus_device_list l = {0};
	struct fleet_counts fc;
	size_t i;
	int r;

	(void)bus;
	(void)prefix;
	(void)error;
	fleet_get_counts(b->d->fleet, &fc);
	l.max = fc.devices;
	l.paths = calloc(l.max + 1, sizeof(char *));
	if (l.paths == NULL)
		return -ENOMEM;
	r = fleet_foreach(b->d->fleet, dbus_device_list_one, &l);
	if (r < 0) {
		for (i = 0; i < l.n; i++)
			free(l.paths[i]);
		free(l.paths);
		return r;
	}
	*nodes = l.paths; /* sd-bus frees it */
	return 0;
}

static int
dbus_device_get_prop(sd_bus *bus, const char *path, const char *interface, const char *property,
    sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
	const struct fleet_device *dev = userdata;

	(void)bus;
	(void)path;
	(void)interface;
	(void)error;
	if (strcmp(property, "Serial") == 0)
		return dbus_append_text(reply, dev->serial);
	if (strcmp(property, "HardwareVersion") == 0)
		return dbus_append_text(reply, dev->hardware_version);
	if (strcmp(property, "SoftwareType") == 0)
		return dbus_append_text(reply, dev->software_type);
	if (strcmp(property, "CurrentVersion") == 0)
		return dbus_append_text(reply, dev->current_version);
	if (strcmp(property, "TargetVersion") == 0)
		return dbus_append_text(reply, dev->target_version);
	if (strcmp(property, "Link") == 0)
		return dbus_append_text(reply, dev->link);
	if (strcmp(property, "Address") == 0)
		return dbus_append_text(reply, dev->address);
	if (strcmp(property, "State") == 0)
		return sd_bus_message_append(reply, "s", fleet_state_name(dev->state));
	if (strcmp(property, "BytesDone") == 0)
		return sd_bus_message_append(reply, "t", dev->bytes_done);
	if (strcmp(property, "BytesTotal") == 0)
		return sd_bus_message_append(reply, "t", dev->bytes_total);
	if (strcmp(property, "Rate") == 0)
		return sd_bus_message_append(reply, "d", dev->rate);
	if (strcmp(property, "LastResult") == 0)
		return sd_bus_message_append(reply, "s", fleet_result_name(dev->last_result));
	if (strcmp(property, "LastReason") == 0)
		return dbus_append_text(reply, dev->last_reason);
	if (strcmp(property, "LastSeen") == 0)
		return sd_bus_message_append(
		    reply, "t", dev->last_seen_us > 0 ? (uint64_t)dev->last_seen_us : 0);
	if (strcmp(property, "Connected") == 0)
		return sd_bus_message_append(reply, "b", (int)dev->connected);
	return -ENOENT;
}

#define DBUS_DEVICE_PROP(name, sig, flags) \
	SD_BUS_PROPERTY(name, sig, dbus_device_get_prop, 0, flags)
#define DBUS_EMITS SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE

static const sd_bus_vtable dbus_device_vtable[] = {
    SD_BUS_VTABLE_START(SD_BUS_VTABLE_UNPRIVILEGED),
    DBUS_DEVICE_PROP("Serial", "s", SD_BUS_VTABLE_PROPERTY_CONST),
    DBUS_DEVICE_PROP("HardwareVersion", "s", DBUS_EMITS),
    DBUS_DEVICE_PROP("SoftwareType", "s", DBUS_EMITS),
    DBUS_DEVICE_PROP("CurrentVersion", "s", DBUS_EMITS),
    DBUS_DEVICE_PROP("TargetVersion", "s", DBUS_EMITS),
    DBUS_DEVICE_PROP("Link", "s", DBUS_EMITS),
    DBUS_DEVICE_PROP("Address", "s", DBUS_EMITS),
    DBUS_DEVICE_PROP("State", "s", DBUS_EMITS),
    DBUS_DEVICE_PROP("BytesDone", "t", DBUS_EMITS),
    DBUS_DEVICE_PROP("BytesTotal", "t", DBUS_EMITS),
    DBUS_DEVICE_PROP("Rate", "d", DBUS_EMITS),
    DBUS_DEVICE_PROP("LastResult", "s", DBUS_EMITS),
    DBUS_DEVICE_PROP("LastReason", "s", DBUS_EMITS),
    DBUS_DEVICE_PROP("LastSeen", "t", DBUS_EMITS),
    DBUS_DEVICE_PROP("Connected", "b", DBUS_EMITS),
    SD_BUS_VTABLE_END,
};

int
dbus_device_register(struct dbus *b)
{
	int r;

	r = sd_bus_add_fallback_vtable(b->bus, NULL, DBUS_DEVICE_PATH, DBUS_IFACE_DEVICE,
	    dbus_device_vtable, dbus_device_find, b);
	if (r >= 0)
		r = sd_bus_add_node_enumerator(
		    b->bus, NULL, DBUS_DEVICE_PATH, dbus_device_enumerate, b);
	return r;
}

int
dbus_device_start(struct dbus *b)
{
	int r;

	TAILQ_INIT(&b->dev_queue);
	b->dev_buckets = calloc(DBUS_DEVICE_BUCKETS,
	    sizeof(*b->dev_buckets)); /* NOLINT(bugprone-sizeof-expression): array of pointers */
	if (b->dev_buckets == NULL)
		return -ENOMEM;
	r = fleet_subscribe(b->d->fleet, dbus_device_changed, b);
	if (r < 0)
		return r;
	b->fleet_sub = r;
	return 0;
}

void
dbus_device_stop(struct dbus *b)
{
	struct dbus_device *dd, *next;
	unsigned i;

	if (b->fleet_sub > 0)
		fleet_unsubscribe(b->d->fleet, b->fleet_sub);
	b->fleet_sub = 0;
	if (b->dev_buckets == NULL)
		return;
	for (i = 0; i < DBUS_DEVICE_BUCKETS; i++) {
		for (dd = b->dev_buckets[i]; dd != NULL; dd = next) {
			next = dd->next;
			free(dd);
		}
	}
	free(b->dev_buckets);
	b->dev_buckets = NULL;
	TAILQ_INIT(&b->dev_queue);
}
