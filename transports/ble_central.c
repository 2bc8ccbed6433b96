/* The BLE central (gateway side): follows bluetoothd's object tree over D-Bus, keeps one adapter
 * powered and discovering for the otagw service, connects to the devices it may serve (allow-list,
 * name prefix, a cap on simultaneous links), sets up a GATT (acquired fds) or L2CAP CoC link per
 * device and hands it out as a transport. State is recomputed in one place, ble_central_step(),
 * after every change (tmux style), so restarts of bluetoothd or the adapter only reset state. */
#include "ble.h"

#include <bluetooth/bluetooth.h>
#include <bluetooth/l2cap.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "ble_dbus.h"
#include "ble_link.h"
#include "frame.h"

#define BLUEZ        "org.bluez"
#define IFACE_ADAPT  "org.bluez.Adapter1"
#define IFACE_DEVICE "org.bluez.Device1"
#define IFACE_SVC    "org.bluez.GattService1"
#define IFACE_CHRC   "org.bluez.GattCharacteristic1"

enum {
	BLE_CENTRAL_MAX_DEVS = 256, /* device records kept; bounded against busy air */
	BLE_CENTRAL_TICK_MS = 1000, /* backoff and hold-off granularity */
	BLE_CENTRAL_BACKOFF_MIN_MS = 1000,
	BLE_CENTRAL_BACKOFF_MAX_MS = 30000,
	BLE_CENTRAL_CONNECT_TIMEOUT_US = 30 * 1000 * 1000,
	BLE_CENTRAL_CALL_TIMEOUT_US = 20 * 1000 * 1000,
	/* connected but services never resolved: bluetoothd waits 30 s for a lost ATT
	 * response; service discovery normally takes well under a second */
	BLE_CENTRAL_RESOLVE_TIMEOUT_MS = 15000,
	/* ServicesResolved can arrive before the InterfacesAdded of the services it announces
	 * (bluetoothd batches both per object): wait this long for ours before giving up. */
	BLE_CENTRAL_OBJECTS_WAIT_MS = 2000,
	BLE_CENTRAL_ADAPTER_RETRY_MS = 5000, /* after bluetoothd refused power or discovery */
	BLE_CENTRAL_HOLDOFF_S = 30,
	BLE_CENTRAL_FOREIGN_S = 600, /* a device that advertised our service but lacks it */
	BLE_CENTRAL_SCAN_INTERVAL_S = 10,
};

enum ble_dev_state {
	BLE_DEV_IDLE,
	BLE_DEV_CONNECTING,    /* Device1.Connect in flight */
	BLE_DEV_RESOLVING,     /* connected, waiting for ServicesResolved */
	BLE_DEV_SETUP,         /* reading the PSM, acquiring fds or opening the L2CAP channel */
	BLE_DEV_UP,            /* the link is up */
	BLE_DEV_DISCONNECTING, /* Device1.Disconnect in flight */
};

struct ble_central;

struct ble_dev {
	struct ble_dev *next;
	struct ble_central *c;
	char *path;
	char addr[18];
	char *name;
	bool addr_random;
	bool present;   /* the Device1 object exists */
	bool ours;      /* Device1.UUIDs hold the otagw service */
	bool foreign;   /* connected once and had no otagw service */
	bool connected; /* Device1.Connected */
	bool seen;      /* Device1.RSSI is valid: it advertised during the current discovery */
	bool resolved;  /* Device1.ServicesResolved */
	enum ble_dev_state state;
	uint64_t state_since_ms;
	uint64_t resolved_ms;  /* when ServicesResolved turned true */
	struct ble_link *link; /* handed to the owner; NULL before or after */
	unsigned int backoff_ms;
	uint64_t next_try_ms;
	uint64_t holdoff_until_ms;
	unsigned int holdoff_s; /* the owner's hold-off for its next release; 0 = the config's */
	sd_bus_slot *call;      /* the one call in flight for this device */
	int notify_fd;          /* GATT: acquired before the write fd */
	int l2cap_fd;           /* L2CAP: connecting */
	struct event *l2cap_ev;
	bool use_l2cap;
	uint16_t psm;
};

/* Our GATT objects under the adapter: the otagw service(s) and its characteristics. */
struct ble_obj {
	struct ble_obj *next;
	char *path;
	char *parent; /* service: its device; characteristic: its service */
	char uuid[40];
};

struct ble_central {
	struct event_base *base;
	struct busev *be;
	sd_bus *bus;
	char *adapter_path;
	char **allow;
	char *name_prefix;
	struct ble_central_config cfg;
	ble_central_cb cb;
	void *cb_arg;

	bool bluez_up, adapter_present, powered, discovering, disc_requested;
	uint64_t disc_since_ms;    /* when our discovery started (for scan_interval) */
	uint64_t adapter_retry_ms; /* no power/discovery call before this (after a refusal) */
	char adapter_error[128];
	char adapter_addr[18];
	sd_bus_slot *m_added, *m_removed, *m_props, *m_owner;
	sd_bus_slot *objs_call, *adapter_call;
	struct ble_dev *devs;
	unsigned int ndevs;
	struct ble_obj *objs;
	struct event *step_ev, *tick_ev;
	unsigned int restarts;
	/* what the owner was last told through cfg.changed */
	bool told, told_bluez, told_adapter, told_powered;
	unsigned int told_connected;
};

static void ble_central_schedule(struct ble_central *c);

static void __attribute__((format(printf, 2, 3)))
ble_central_debug(const struct ble_central *c, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	if (!c->cfg.debug)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	c->cfg.debug(line, c->cfg.debug_arg);
}
static void ble_dev_fail(struct ble_dev *d, int err);

static uint64_t
ble_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Objects under our adapter only: "/org/bluez/hci0/dev_..." and deeper. */
static bool
ble_central_under_adapter(const struct ble_central *c, const char *path)
{
	size_t n = strlen(c->adapter_path);

	return strncmp(path, c->adapter_path, n) == 0 && path[n] == '/';
}

/* Device and GATT objects. */

static struct ble_dev *
ble_dev_find(struct ble_central *c, const char *path)
{
	for (struct ble_dev *d = c->devs; d; d = d->next)
		if (strcmp(d->path, path) == 0)
			return d;
	return NULL;
}

static struct ble_dev *
ble_dev_get(struct ble_central *c, const char *path)
{
	struct ble_dev *d = ble_dev_find(c, path);

	if (d || c->ndevs >= BLE_CENTRAL_MAX_DEVS)
		return d;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->path = strdup(path);
	if (!d->path) {
		free(d);
		return NULL;
	}
	d->c = c;
	d->notify_fd = d->l2cap_fd = -1;
	d->next = c->devs;
	c->devs = d;
	c->ndevs++;
	return d;
}

static const char *const ble_dev_state_names[] = {
    [BLE_DEV_IDLE] = "idle",
    [BLE_DEV_CONNECTING] = "connecting",
    [BLE_DEV_RESOLVING] = "resolving",
    [BLE_DEV_SETUP] = "setup",
    [BLE_DEV_UP] = "up",
    [BLE_DEV_DISCONNECTING] = "disconnecting",
};

static void
ble_dev_set_state(struct ble_dev *d, enum ble_dev_state s)
{
	if (d->state != s)
		ble_central_debug(d->c, "%s: %s -> %s", d->path, ble_dev_state_names[d->state],
		    ble_dev_state_names[s]);
	d->state = s;
	d->state_since_ms = ble_now_ms();
}

/* Drops whatever a connection attempt holds: the call in flight and half-set-up fds. */
static void
ble_dev_cancel(struct ble_dev *d)
{
	d->call = sd_bus_slot_unref(d->call);
	if (d->notify_fd >= 0)
		close(d->notify_fd);
	d->notify_fd = -1;
	if (d->l2cap_ev)
		event_free(d->l2cap_ev);
	d->l2cap_ev = NULL;
	if (d->l2cap_fd >= 0)
		close(d->l2cap_fd);
	d->l2cap_fd = -1;
}

static void
ble_dev_destroy(struct ble_dev *d)
{
	ble_dev_cancel(d);
	if (d->link) {
		/* The owner keeps the transport; it just never comes back up. */
		ble_link_orphan(d->link);
		if (transport_connected(ble_link_transport(d->link)))
			(void)ble_link_down(d->link, -ESHUTDOWN);
	}
	free(d->name);
	free(d->path);
	free(d);
}

static void
ble_dev_remove(struct ble_central *c, struct ble_dev *d)
{
	for (struct ble_dev **pp = &c->devs; *pp; pp = &(*pp)->next) {
		if (*pp == d) {
			*pp = d->next;
			c->ndevs--;
			ble_dev_destroy(d);
			return;
		}
	}
}

static struct ble_obj *
ble_obj_find(struct ble_central *c, const char *path)
{
	for (struct ble_obj *o = c->objs; o; o = o->next)
		if (strcmp(o->path, path) == 0)
			return o;
	return NULL;
}

static void
ble_obj_remove(struct ble_central *c, const char *path)
{
	for (struct ble_obj **pp = &c->objs; *pp; pp = &(*pp)->next) {
		struct ble_obj *o = *pp;

		if (strcmp(o->path, path) == 0) {
			*pp = o->next;
			free(o->path);
			free(o->parent);
			free(o);
			return;
		}
	}
}

static void
ble_obj_clear(struct ble_central *c)
{
	while (c->objs)
		ble_obj_remove(c, c->objs->path);
}

/* The characteristic of our service on device d with the given UUID, or NULL. */
static const char *
ble_dev_chrc(struct ble_central *c, const struct ble_dev *d, const char *uuid)
{
	for (struct ble_obj *s = c->objs; s; s = s->next) {
		if (strcasecmp(s->uuid, BLE_SERVICE_UUID) != 0 || strcmp(s->parent, d->path) != 0)
			continue;
		for (struct ble_obj *ch = c->objs; ch; ch = ch->next)
			if (strcasecmp(ch->uuid, uuid) == 0 && strcmp(ch->parent, s->path) == 0)
				return ch->path;
	}
	return NULL;
}

/* The device a GATT object belongs to: its path is the object's path up to a '/'. */
static struct ble_dev *
ble_dev_of_object(struct ble_central *c, const char *path)
{
	for (struct ble_dev *d = c->devs; d; d = d->next) {
		size_t n = strlen(d->path);

		if (strncmp(path, d->path, n) == 0 && path[n] == '/')
			return d;
	}
	return NULL;
}

static bool
ble_dev_has_service(struct ble_central *c, const struct ble_dev *d)
{
	for (struct ble_obj *s = c->objs; s; s = s->next)
		if (strcasecmp(s->uuid, BLE_SERVICE_UUID) == 0 && strcmp(s->parent, d->path) == 0)
			return true;
	return false;
}

/* Parsing BlueZ objects and property changes. */

struct ble_parse {
	struct ble_central *c;
	const char *path;
	struct ble_dev *dev;
	struct ble_obj obj; /* a GATT object being read */
	bool is_svc, is_chrc;
	bool adapter_changed;
};

static int
ble_central_prop(const char *iface, const char *name, sd_bus_message *m, void *ctx)
{
	struct ble_parse *p = ctx;
	struct ble_central *c = p->c;
	const char *s;
	bool b;
	int r;

	if (strcmp(iface, IFACE_ADAPT) == 0 && strcmp(p->path, c->adapter_path) == 0) {
		p->adapter_changed = true;
		if (strcmp(name, "Powered") == 0) {
			r = ble_dbus_v_bool(m, &b);
			if (r >= 0)
				c->powered = b;
			return r < 0 ? r : 1;
		}
		if (strcmp(name, "Discovering") == 0) {
			r = ble_dbus_v_bool(m, &b);
			if (r >= 0)
				c->discovering = b;
			return r < 0 ? r : 1;
		}
		if (strcmp(name, "Address") == 0) {
			r = ble_dbus_v_str(m, &s);
			if (r >= 0)
				snprintf(c->adapter_addr, sizeof(c->adapter_addr), "%s", s);
			return r < 0 ? r : 1;
		}
		return 0;
	}
	if (strcmp(iface, IFACE_DEVICE) == 0 && p->dev) {
		struct ble_dev *d = p->dev;

		if (strcmp(name, "Address") == 0) {
			r = ble_dbus_v_str(m, &s);
			if (r >= 0)
				snprintf(d->addr, sizeof(d->addr), "%s", s);
		} else if (strcmp(name, "AddressType") == 0) {
			r = ble_dbus_v_str(m, &s);
			if (r >= 0)
				d->addr_random = strcmp(s, "random") == 0;
		} else if (strcmp(name, "Name") == 0) {
			r = ble_dbus_v_str(m, &s);
			if (r >= 0) {
				free(d->name);
				d->name = strndup(s, 248); /* the longest LE name */
			}
		} else if (strcmp(name, "UUIDs") == 0) {
			r = ble_dbus_v_strv_has(m, BLE_SERVICE_UUID, &b);
			if (r >= 0 && b)
				d->ours = true, d->foreign = false;
		} else if (strcmp(name, "RSSI") == 0) {
			r = sd_bus_message_skip(m, "v");
			if (r >= 0)
				d->seen = true;
		} else if (strcmp(name, "Connected") == 0) {
			r = ble_dbus_v_bool(m, &d->connected);
		} else if (strcmp(name, "ServicesResolved") == 0) {
			bool was = d->resolved;

			r = ble_dbus_v_bool(m, &d->resolved);
			if (r >= 0 && d->resolved && !was)
				d->resolved_ms = ble_now_ms();
			if (r >= 0 && d->resolved)
				d->connected =
				    true; /* resolved implies connected, see on_connect */
		} else {
			return 0;
		}
		return r < 0 ? r : 1;
	}
	if (p->is_svc || p->is_chrc) {
		if (strcmp(name, "UUID") == 0) {
			r = ble_dbus_v_str(m, &s);
			if (r >= 0)
				snprintf(p->obj.uuid, sizeof(p->obj.uuid), "%s", s);
			return r < 0 ? r : 1;
		}
		if ((p->is_svc && strcmp(name, "Device") == 0) ||
		    (p->is_chrc && strcmp(name, "Service") == 0)) {
			r = ble_dbus_v_str(m, &s);
			if (r >= 0) {
				free(p->obj.parent);
				p->obj.parent = strdup(s);
			}
			return r < 0 ? r : 1;
		}
	}
	return 0;
}

static bool
ble_uuid_interesting(const char *uuid)
{
	return strcasecmp(uuid, BLE_SERVICE_UUID) == 0 || strcasecmp(uuid, BLE_WRITE_UUID) == 0 ||
	       strcasecmp(uuid, BLE_NOTIFY_UUID) == 0 || strcasecmp(uuid, BLE_PSM_UUID) == 0;
}

/* Brackets each interface of a GATT object: says which kind ble_central_prop is reading, and
 * once a service or characteristic of ours has its UUID and parent, remembers it. */
static int
ble_central_gatt_iface(const char *iface, bool end, void *ctx)
{
	struct ble_parse *p = ctx;
	struct ble_central *c = p->c;

	if (!end) {
		p->is_svc = strcmp(iface, IFACE_SVC) == 0;
		p->is_chrc = strcmp(iface, IFACE_CHRC) == 0;
		return 0;
	}
	if ((p->is_svc || p->is_chrc) && p->obj.parent && ble_uuid_interesting(p->obj.uuid) &&
	    !ble_obj_find(c, p->path)) {
		struct ble_obj *o = calloc(1, sizeof(*o));

		if (o && (o->path = strdup(p->path))) {
			o->parent = p->obj.parent;
			p->obj.parent = NULL;
			memcpy(o->uuid, p->obj.uuid, sizeof(o->uuid));
			o->next = c->objs;
			c->objs = o;
		} else {
			free(o);
		}
	}
	free(p->obj.parent);
	p->obj.parent = NULL;
	return 0;
}

/* Reads one object's a{sa{sv}}: the adapter, a device, or a GATT service/characteristic. */
static int
ble_central_read_object(struct ble_central *c, const char *path, sd_bus_message *m)
{
	struct ble_parse p = {.c = c, .path = path};
	int r;

	if (strcmp(path, c->adapter_path) == 0) {
		r = ble_dbus_ifaces(m, NULL, ble_central_prop, &p);
		if (r >= 0)
			c->adapter_present = true;
		return r;
	}
	if (!ble_central_under_adapter(c, path))
		return sd_bus_message_skip(m, "a{sa{sv}}");
	/* One level below the adapter: a device; deeper: GATT objects. */
	if (!strchr(path + strlen(c->adapter_path) + 1, '/')) {
		p.dev = ble_dev_get(c, path);
		r = ble_dbus_ifaces(m, NULL, ble_central_prop, &p);
		if (r >= 0 && p.dev)
			p.dev->present = true;
		return r;
	}
	/* Which interface the object has decides how its properties are read; BlueZ puts one
	 * GATT interface on each object. */
	r = ble_dbus_ifaces(m, ble_central_gatt_iface, ble_central_prop, &p);
	free(p.obj.parent);
	return r;
}

/* Everything about one device goes down: the link is reported down and the device is retried
 * after its backoff. */
static void
ble_dev_down(struct ble_dev *d, int err)
{
	bool was_up = d->state == BLE_DEV_UP;

	ble_dev_cancel(d);
	ble_dev_set_state(d, BLE_DEV_IDLE);
	if (was_up && d->link)
		(void)ble_link_down(
		    d->link, err); /* may free the link: see ble_central_link_freed */
}

/* bluetoothd or the adapter went away: every device is down, all object knowledge is stale. */
static void
ble_central_reset(struct ble_central *c, bool adapter_only)
{
	c->adapter_call = sd_bus_slot_unref(c->adapter_call);
	c->adapter_present = c->powered = c->discovering = c->disc_requested = false;
	c->adapter_retry_ms = 0;
	c->adapter_error[0] = '\0';
	if (!adapter_only)
		c->objs_call = sd_bus_slot_unref(c->objs_call);
	for (struct ble_dev *d = c->devs; d; d = d->next) {
		d->present = d->connected = d->resolved = false;
		d->backoff_ms = 0;
		d->next_try_ms = 0;
		ble_dev_down(d, -ECONNRESET);
	}
	ble_obj_clear(c);
	c->restarts++;
}

static int
ble_central_on_objects(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_central *c = userdata;
	int r;

	(void)ret_error;
	c->objs_call = sd_bus_slot_unref(c->objs_call);
	if (sd_bus_message_is_method_error(m, NULL)) {
		/* No bluetoothd (yet): NameOwnerChanged will tell when it comes. */
		c->bluez_up = false;
		ble_central_schedule(c);
		return 0;
	}
	c->bluez_up = true;
	r = sd_bus_message_enter_container(m, 'a', "{oa{sa{sv}}}");
	while (r > 0 && (r = sd_bus_message_enter_container(m, 'e', "oa{sa{sv}}")) > 0) {
		const char *path;

		r = sd_bus_message_read(m, "o", &path);
		if (r >= 0)
			r = ble_central_read_object(c, path, m);
		if (r >= 0)
			r = sd_bus_message_exit_container(m);
	}
	/* What was read before a malformed entry is kept; signals bring the rest. */
	if (r < 0)
		ble_central_debug(
		    c, "GetManagedObjects reply: %s, ignoring the rest", strerror(-r));
	ble_central_schedule(c);
	return 0;
}

static void
ble_central_get_objects(struct ble_central *c)
{
	c->objs_call = sd_bus_slot_unref(c->objs_call);
	(void)sd_bus_call_method_async(c->bus, &c->objs_call, BLUEZ, "/",
	    "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", ble_central_on_objects, c,
	    "");
}

static int
ble_central_on_added(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_central *c = userdata;
	const char *path;

	(void)ret_error;
	if (sd_bus_message_read(m, "o", &path) < 0)
		return 0;
	(void)ble_central_read_object(c, path, m);
	ble_central_schedule(c);
	return 0;
}

static int
ble_central_on_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_central *c = userdata;
	const char *path, *iface;
	struct ble_dev *d;

	(void)ret_error;
	if (sd_bus_message_read(m, "o", &path) < 0 ||
	    sd_bus_message_enter_container(m, 'a', "s") < 0)
		return 0;
	while (sd_bus_message_read(m, "s", &iface) > 0) {
		if (strcmp(iface, IFACE_ADAPT) == 0 && strcmp(path, c->adapter_path) == 0) {
			ble_central_reset(c, true);
		} else if (strcmp(iface, IFACE_DEVICE) == 0 && (d = ble_dev_find(c, path))) {
			d->present = d->connected = d->resolved = false;
			ble_dev_down(d, -ENODEV);
			/* Keep a record only for a device whose transport the owner holds. */
			if (!d->link && d->state == BLE_DEV_IDLE && !d->holdoff_until_ms)
				ble_dev_remove(c, d);
		} else if (strcmp(iface, IFACE_SVC) == 0 || strcmp(iface, IFACE_CHRC) == 0) {
			/* Our service going away under a link (the device's GATT application
			 * died, or it changed its database) ends the link: the acquired fds
			 * lead nowhere now. The device is reconnected after its backoff. */
			if (ble_obj_find(c, path) && (d = ble_dev_of_object(c, path)) &&
			    (d->state == BLE_DEV_SETUP || d->state == BLE_DEV_UP))
				ble_dev_fail(d, -ENODEV);
			ble_obj_remove(c, path);
		}
	}
	ble_central_schedule(c);
	return 0;
}

static int
ble_central_on_props(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_central *c = userdata;
	const char *path = sd_bus_message_get_path(m), *iface;
	struct ble_parse p = {.c = c, .path = path};

	(void)ret_error;
	if (!path || sd_bus_message_read(m, "s", &iface) < 0)
		return 0;
	if (strcmp(iface, IFACE_DEVICE) == 0) {
		p.dev = ble_dev_find(c, path);
		if (!p.dev)
			p.dev = ble_dev_get(c, path);
		if (!p.dev)
			return 0;
	} else if (strcmp(iface, IFACE_ADAPT) != 0) {
		return 0;
	}
	if (ble_dbus_props(m, iface, ble_central_prop, &p) >= 0 && p.dev &&
	    sd_bus_message_enter_container(m, 'a', "s") > 0) {
		const char *gone;

		/* bluetoothd invalidates RSSI when discovery stops: not seen any more. */
		while (sd_bus_message_read(m, "s", &gone) > 0)
			if (strcmp(gone, "RSSI") == 0)
				p.dev->seen = false;
	}
	if (p.dev)
		ble_central_debug(c, "%s: connected %d resolved %d ours %d seen %d", path,
		    p.dev->connected, p.dev->resolved, p.dev->ours, p.dev->seen);
	if (p.adapter_changed)
		ble_central_debug(
		    c, "%s: powered %d discovering %d", path, c->powered, c->discovering);
	if (p.dev) {
		struct ble_dev *d = p.dev;

		if (!d->connected && d->state != BLE_DEV_IDLE && d->state != BLE_DEV_CONNECTING) {
			/* A disconnect ends an attempt or a link; come back after the backoff. */
			if (d->state == BLE_DEV_DISCONNECTING) {
				d->call = sd_bus_slot_unref(d->call);
				ble_dev_set_state(d, BLE_DEV_IDLE);
			} else {
				ble_dev_fail(d, -ENOTCONN);
			}
		}
	}
	if (p.adapter_changed && !c->discovering) {
		for (struct ble_dev *d = c->devs; d; d = d->next)
			d->seen = false;
		if (!c->adapter_call)
			c->disc_requested = false; /* stopped under us: ask again */
	}
	if (p.adapter_changed && !c->powered) {
		/* Power loss: discovery and every connection are gone. */
		c->disc_requested = false;
		for (struct ble_dev *d = c->devs; d; d = d->next)
			if (d->state != BLE_DEV_IDLE)
				ble_dev_fail(d, -ENETDOWN);
	}
	ble_central_schedule(c);
	return 0;
}

static int
ble_central_on_owner(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_central *c = userdata;
	const char *name, *old_owner, *new_owner;

	(void)ret_error;
	if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 ||
	    strcmp(name, BLUEZ) != 0)
		return 0;
	if (*old_owner && c->bluez_up) {
		c->bluez_up = false;
		ble_central_reset(c, false);
	}
	if (*new_owner)
		ble_central_get_objects(c);
	ble_central_schedule(c);
	return 0;
}

/* Connection set-up, one step per reply. */

static int
ble_dev_on_disconnect(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_dev *d = userdata;

	(void)m;
	(void)ret_error;
	d->call = sd_bus_slot_unref(d->call);
	if (d->state == BLE_DEV_DISCONNECTING)
		ble_dev_set_state(d, BLE_DEV_IDLE);
	ble_central_schedule(d->c);
	return 0;
}

/* Asks bluetoothd to drop the ACL, so the controller's slot is free for others. */
static void
ble_dev_disconnect(struct ble_dev *d)
{
	struct ble_central *c = d->c;

	ble_dev_cancel(d);
	ble_dev_set_state(d, BLE_DEV_IDLE);
	if (!d->connected || !c->bluez_up)
		return;
	ble_dev_set_state(d, BLE_DEV_DISCONNECTING);
	if (sd_bus_call_method_async(c->bus, &d->call, BLUEZ, d->path, IFACE_DEVICE, "Disconnect",
		ble_dev_on_disconnect, d, "") < 0)
		ble_dev_set_state(d, BLE_DEV_IDLE);
}

/* An attempt or a link failed: back off exponentially before the next try. */
static void
ble_dev_fail(struct ble_dev *d, int err)
{
	struct ble_central *c = d->c;
	bool was_connected = d->state >= BLE_DEV_RESOLVING;

	ble_central_debug(c, "%s: failed in state %s: %s", d->path, ble_dev_state_names[d->state],
	    strerror(-err));
	ble_dev_down(d, err);
	d->backoff_ms = d->backoff_ms ? d->backoff_ms * 2 : BLE_CENTRAL_BACKOFF_MIN_MS;
	if (d->backoff_ms > BLE_CENTRAL_BACKOFF_MAX_MS)
		d->backoff_ms = BLE_CENTRAL_BACKOFF_MAX_MS;
	d->next_try_ms = ble_now_ms() + d->backoff_ms;
	if (was_connected)
		ble_dev_disconnect(d);
	ble_central_schedule(c);
}

/* The device cannot be served as configured (transport = l2cap, and it offers no PSM): let it
 * go and leave it alone for the hold-off, as if it were done. */
static void
ble_dev_reject(struct ble_dev *d, int err)
{
	struct ble_central *c = d->c;

	ble_central_debug(c, "%s: not served: %s", d->path, strerror(-err));
	ble_dev_cancel(d);
	d->holdoff_until_ms =
	    ble_now_ms() +
	    (uint64_t)(c->cfg.holdoff_s ? c->cfg.holdoff_s : BLE_CENTRAL_HOLDOFF_S) * 1000;
	ble_dev_disconnect(d);
	ble_central_schedule(c);
}

static void ble_central_link_fd_lost(struct ble_link *l, int err, void *arg);
static void ble_central_link_freed(struct ble_link *l, void *arg);

/* The link is set up: hand a new transport out, or report the old one up again. */
static void
ble_dev_link_ready(struct ble_dev *d, int rfd, int wfd, size_t mtu)
{
	struct ble_central *c = d->c;
	enum transport_kind kind =
	    d->use_l2cap ? TRANSPORT_KIND_BLE_L2CAP : TRANSPORT_KIND_BLE_GATT;
	bool fresh = false;
	int r;

	if (!d->link) {
		struct ble_link_owner owner = {
		    .fd_lost = ble_central_link_fd_lost, .freed = ble_central_link_freed, .arg = d};
		char name[32];

		snprintf(name, sizeof(name), "ble:%s", d->addr);
		r = ble_link_new(c->base, kind, name, &owner, &d->link);
		if (r < 0) {
			close(rfd);
			if (wfd != rfd)
				close(wfd);
			ble_dev_fail(d, r);
			return;
		}
		fresh = true;
	}
	ble_link_transport(d->link)->kind = kind;
	r = ble_link_set_fds(d->link, rfd, wfd, mtu);
	if (r < 0) {
		if (fresh) { /* never handed out: nobody else knows it */
			ble_link_orphan(d->link);
			transport_free(ble_link_transport(d->link));
			d->link = NULL;
		}
		ble_dev_fail(d, r);
		return;
	}
	ble_dev_set_state(d, BLE_DEV_UP);
	d->backoff_ms = 0;
	/* A new transport is handed out up; its CONNECTED follows from the loop, once the owner
	 * has set its callback. A known one reports CONNECTED again now. */
	if (fresh && ble_link_up_later(d->link))
		c->cb(c, ble_link_transport(d->link), d->addr, d->name, c->cb_arg);
	else if (!fresh)
		(void)ble_link_up(d->link);
	ble_central_schedule(c);
}

static size_t
ble_gatt_msg_max(uint16_t att_mtu)
{
	size_t n = att_mtu > 3 ? (size_t)att_mtu - 3 : 0;

	if (n < 20)
		n = 20; /* the LE minimum ATT MTU is 23 */
	return n > BLE_GATT_MSG_MAX ? BLE_GATT_MSG_MAX : n;
}

/* Takes the fd and MTU out of an Acquire* reply; the fd is duplicated (the message owns its
 * copy). Returns the fd or a negative errno. */
static int
ble_acquired_fd(sd_bus_message *m, uint16_t *mtu)
{
	int fd, r;

	if (sd_bus_message_is_method_error(m, NULL))
		return ble_dbus_reply_errno(m);
	r = sd_bus_message_read(m, "hq", &fd, mtu);
	if (r < 0)
		return r;
	fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	return fd < 0 ? -errno : fd;
}

static int
ble_dev_on_acquire_write(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_dev *d = userdata;
	uint16_t mtu = 0;
	int fd, nfd;

	(void)ret_error;
	d->call = sd_bus_slot_unref(d->call);
	fd = ble_acquired_fd(m, &mtu);
	if (fd < 0) {
		ble_dev_fail(d, fd);
		return 0;
	}
	nfd = d->notify_fd;
	d->notify_fd = -1;
	ble_dev_link_ready(d, nfd, fd, ble_gatt_msg_max(mtu));
	return 0;
}

static int
ble_dev_on_acquire_notify(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_dev *d = userdata;
	struct ble_central *c = d->c;
	const char *wr = ble_dev_chrc(c, d, BLE_WRITE_UUID);
	uint16_t mtu = 0;
	int fd, r;

	(void)ret_error;
	d->call = sd_bus_slot_unref(d->call);
	fd = ble_acquired_fd(m, &mtu);
	if (fd < 0 || !wr) {
		if (fd >= 0)
			close(fd);
		ble_dev_fail(d, fd < 0 ? fd : -ENOENT);
		return 0;
	}
	d->notify_fd = fd;
	r = sd_bus_call_method_async(c->bus, &d->call, BLUEZ, wr, IFACE_CHRC, "AcquireWrite",
	    ble_dev_on_acquire_write, d, "a{sv}", 0);
	if (r < 0)
		ble_dev_fail(d, r);
	return 0;
}

static void
ble_dev_start_gatt(struct ble_dev *d)
{
	struct ble_central *c = d->c;
	const char *nt = ble_dev_chrc(c, d, BLE_NOTIFY_UUID);
	int r;

	d->use_l2cap = false;
	if (!nt || !ble_dev_chrc(c, d, BLE_WRITE_UUID)) {
		ble_dev_fail(d, -ENOENT); /* not (fully) an otagw device */
		return;
	}
	r = sd_bus_call_method_async(c->bus, &d->call, BLUEZ, nt, IFACE_CHRC, "AcquireNotify",
	    ble_dev_on_acquire_notify, d, "a{sv}", 0);
	if (r < 0)
		ble_dev_fail(d, r);
}

static void
ble_dev_on_l2cap(evutil_socket_t fd, short what, void *arg)
{
	struct ble_dev *d = arg;
	socklen_t len = sizeof(int);
	uint16_t mtu = 0;
	int err = 0;

	(void)what;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		ble_dev_fail(d, -err);
		return;
	}
	len = sizeof(mtu);
	if (getsockopt(fd, SOL_BLUETOOTH, BT_SNDMTU, &mtu, &len) < 0 || mtu == 0) {
		ble_dev_fail(d, -EPROTO);
		return;
	}
	event_free(d->l2cap_ev);
	d->l2cap_ev = NULL;
	d->l2cap_fd = -1;
	ble_dev_link_ready(d, fd, fd, mtu < FRAME_MSG_MAX ? mtu : FRAME_MSG_MAX);
}

/* Opens the CoC channel over the ACL bluetoothd already made. */
static void
ble_dev_start_l2cap(struct ble_dev *d)
{
	struct ble_central *c = d->c;
	struct sockaddr_l2 local = {.l2_family = AF_BLUETOOTH, .l2_bdaddr_type = BDADDR_LE_PUBLIC};
	struct sockaddr_l2 peer = {.l2_family = AF_BLUETOOTH};
	uint8_t mode = BT_MODE_LE_FLOWCTL;
	uint16_t rmtu = FRAME_MSG_MAX;
	int fd, r = 0;

	d->use_l2cap = true;
	if (str2ba(c->adapter_addr, &local.l2_bdaddr) < 0 || str2ba(d->addr, &peer.l2_bdaddr) < 0) {
		ble_dev_fail(d, -EINVAL);
		return;
	}
	peer.l2_bdaddr_type = d->addr_random ? BDADDR_LE_RANDOM : BDADDR_LE_PUBLIC;
	peer.l2_psm = htobs(d->psm);
	fd = socket(AF_BLUETOOTH, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, BTPROTO_L2CAP);
	if (fd < 0) {
		ble_dev_fail(d, -errno);
		return;
	}
	d->l2cap_fd = fd;
	/* Kernels without enable_ecred refuse BT_MODE; an LE seqpacket socket is LE_FLOWCTL
	 * there anyway. */
	if (bind(fd, (struct sockaddr *)&local, sizeof(local)) < 0 ||
	    (setsockopt(fd, SOL_BLUETOOTH, BT_MODE, &mode, sizeof(mode)) < 0 &&
		errno != ENOPROTOOPT) ||
	    setsockopt(fd, SOL_BLUETOOTH, BT_RCVMTU, &rmtu, sizeof(rmtu)) < 0)
		r = -errno;
	if (!r && connect(fd, (struct sockaddr *)&peer, sizeof(peer)) < 0 && errno != EINPROGRESS)
		r = -errno;
	if (!r) {
		d->l2cap_ev = event_new(c->base, fd, EV_WRITE, ble_dev_on_l2cap, d);
		if (!d->l2cap_ev || event_add(d->l2cap_ev, NULL) < 0)
			r = -ENOMEM;
	}
	if (r)
		ble_dev_fail(d, r);
}

static int
ble_dev_on_psm(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_dev *d = userdata;
	const void *v;
	size_t n = 0;

	(void)ret_error;
	d->call = sd_bus_slot_unref(d->call);
	d->psm = 0;
	if (!sd_bus_message_is_method_error(m, NULL) &&
	    sd_bus_message_read_array(m, 'y', &v, &n) >= 0 && n == 2)
		d->psm = (uint16_t)(((const uint8_t *)v)[0] | ((const uint8_t *)v)[1] << 8);
	/* No PSM (0, unreadable, malformed): GATT still works, unless L2CAP is required. */
	if (d->psm)
		ble_dev_start_l2cap(d);
	else if (d->c->cfg.prefer == BLE_PREFER_L2CAP_ONLY)
		ble_dev_reject(d, -EPROTONOSUPPORT);
	else
		ble_dev_start_gatt(d);
	return 0;
}

/* Our service and the characteristics every otagw device has are known. */
static bool
ble_dev_objects_ready(struct ble_central *c, const struct ble_dev *d)
{
	return ble_dev_has_service(c, d) && ble_dev_chrc(c, d, BLE_WRITE_UUID) &&
	       ble_dev_chrc(c, d, BLE_NOTIFY_UUID);
}

/* Services are resolved: pick the path (L2CAP if preferred and offered) and set it up. */
static void
ble_dev_setup(struct ble_dev *d)
{
	struct ble_central *c = d->c;
	const char *psm_chrc;
	int r;

	ble_dev_set_state(d, BLE_DEV_SETUP);
	if (!ble_dev_has_service(c, d)) {
		/* It advertised our service (it was seen in our filtered discovery) but does
		 * not have it: leave it alone for a while rather than probe it again and again. */
		d->foreign = true;
		ble_dev_cancel(d);
		ble_central_debug(c, "%s: no otagw service; leaving it alone for %u s", d->path,
		    (unsigned)BLE_CENTRAL_FOREIGN_S);
		d->holdoff_until_ms = ble_now_ms() + (uint64_t)BLE_CENTRAL_FOREIGN_S * 1000;
		ble_dev_disconnect(d);
		return;
	}
	if (c->cfg.prefer != BLE_PREFER_GATT && c->cfg.psm) {
		d->psm = c->cfg.psm;
		ble_dev_start_l2cap(d);
		return;
	}
	psm_chrc = ble_dev_chrc(c, d, BLE_PSM_UUID);
	if (c->cfg.prefer == BLE_PREFER_L2CAP_ONLY && !psm_chrc) {
		ble_dev_reject(d, -EPROTONOSUPPORT);
		return;
	}
	if (c->cfg.prefer == BLE_PREFER_GATT || !psm_chrc) {
		ble_dev_start_gatt(d);
		return;
	}
	r = sd_bus_call_method_async(c->bus, &d->call, BLUEZ, psm_chrc, IFACE_CHRC, "ReadValue",
	    ble_dev_on_psm, d, "a{sv}", 0);
	if (r < 0)
		ble_dev_fail(d, r);
}

static int
ble_dev_on_connect(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_dev *d = userdata;

	(void)ret_error;
	d->call = sd_bus_slot_unref(d->call);
	if (sd_bus_message_is_method_error(m, NULL)) {
		ble_dev_fail(d, ble_dbus_reply_errno(m));
		return 0;
	}
	/* bluetoothd 5.66 sometimes never signals Connected = true (when its ATT channel is up
	 * before the kernel's connection event); a successful Connect says it all the same. */
	d->connected = true;
	ble_dev_set_state(d, BLE_DEV_RESOLVING);
	ble_central_schedule(d->c);
	return 0;
}

static void
ble_dev_connect(struct ble_dev *d)
{
	struct ble_central *c = d->c;
	sd_bus_message *m = NULL;
	int r;

	ble_dev_set_state(d, BLE_DEV_CONNECTING);
	r = sd_bus_message_new_method_call(c->bus, &m, BLUEZ, d->path, IFACE_DEVICE, "Connect");
	if (r >= 0)
		r = sd_bus_call_async(
		    c->bus, &d->call, m, ble_dev_on_connect, d, BLE_CENTRAL_CONNECT_TIMEOUT_US);
	sd_bus_message_unref(m);
	if (r < 0)
		ble_dev_fail(d, r);
}

/* The owner's side of the link. */

static void
ble_central_link_fd_lost(struct ble_link *l, int err, void *arg)
{
	struct ble_dev *d = arg;

	(void)l;
	if (d->state == BLE_DEV_UP)
		ble_dev_fail(d, err ? err : -ECONNRESET);
}

static void
ble_central_link_freed(struct ble_link *l, void *arg)
{
	struct ble_dev *d = arg;
	struct ble_central *c = d->c;

	(void)l;
	/* The owner is done with this device: let it go and give others a turn. */
	d->link = NULL;
	d->holdoff_until_ms =
	    ble_now_ms() + (uint64_t)(d->holdoff_s       ? d->holdoff_s
				      : c->cfg.holdoff_s ? c->cfg.holdoff_s
							 : BLE_CENTRAL_HOLDOFF_S) *
			       1000u;
	d->holdoff_s = 0;
	if (d->state != BLE_DEV_IDLE && d->state != BLE_DEV_DISCONNECTING)
		ble_dev_disconnect(d);
	ble_central_schedule(c);
}

/* Adapter set-up. */

/* Remembers why bluetoothd refused (rfkill, adapter busy...) for the owner's status, and waits
 * a little before asking again; a success clears it. */
static void
ble_central_adapter_result(struct ble_central *c, sd_bus_message *m, const char *what)
{
	const sd_bus_error *e;

	if (!sd_bus_message_is_method_error(m, NULL)) {
		c->adapter_error[0] = '\0';
		return;
	}
	e = sd_bus_message_get_error(m);
	snprintf(c->adapter_error, sizeof(c->adapter_error), "%s: %s", what,
	    e && e->message ? e->message
	    : e && e->name  ? e->name
			    : "failed");
	ble_central_debug(c, "%s: %s", c->adapter_path, c->adapter_error);
	c->adapter_retry_ms = ble_now_ms() + BLE_CENTRAL_ADAPTER_RETRY_MS;
}

static int
ble_central_on_power(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_central *c = userdata;

	(void)ret_error;
	c->adapter_call = sd_bus_slot_unref(c->adapter_call);
	ble_central_adapter_result(c, m, "Cannot power the adapter");
	ble_central_schedule(c);
	return 0;
}

static int
ble_central_on_discovery(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_central *c = userdata;

	(void)ret_error;
	c->adapter_call = sd_bus_slot_unref(c->adapter_call);
	/* InProgress: we are a discovery client already. */
	if (!sd_bus_message_is_method_error(m, NULL) ||
	    sd_bus_message_is_method_error(m, "org.bluez.Error.InProgress")) {
		c->disc_requested = true;
		c->disc_since_ms = ble_now_ms();
		c->adapter_error[0] = '\0';
	} else {
		ble_central_adapter_result(c, m, "Cannot discover devices");
	}
	ble_central_schedule(c);
	return 0;
}

static int
ble_central_on_filter(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_central *c = userdata;

	(void)ret_error;
	c->adapter_call = sd_bus_slot_unref(c->adapter_call);
	if (sd_bus_message_is_method_error(m, NULL)) {
		ble_central_adapter_result(c, m, "Cannot set the discovery filter");
		ble_central_schedule(c);
		return 0;
	}
	if (sd_bus_call_method_async(c->bus, &c->adapter_call, BLUEZ, c->adapter_path, IFACE_ADAPT,
		"StartDiscovery", ble_central_on_discovery, c, "") < 0)
		ble_central_schedule(c);
	return 0;
}

static int
ble_central_on_stop_discovery(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_central *c = userdata;

	(void)m;
	(void)ret_error;
	/* An error (not discovering any more, e.g. after a power cycle) means stopped all the
	 * same. */
	c->adapter_call = sd_bus_slot_unref(c->adapter_call);
	c->disc_requested = false;
	ble_central_schedule(c);
	return 0;
}

/* Powers the adapter and keeps our discovery as wanted: on while a slot is free and no connect
 * is in flight, restarted every scan_interval. One call at a time. */
static void
ble_central_adapter_step(struct ble_central *c, bool want_discovery, uint64_t now)
{
	uint64_t interval_ms = (uint64_t)(c->cfg.scan_interval_s ? c->cfg.scan_interval_s
								 : BLE_CENTRAL_SCAN_INTERVAL_S) *
			       1000u;

	if (c->adapter_call || now < c->adapter_retry_ms)
		return;
	if (!c->powered) {
		(void)sd_bus_call_method_async(c->bus, &c->adapter_call, BLUEZ, c->adapter_path,
		    "org.freedesktop.DBus.Properties", "Set", ble_central_on_power, c, "ssv",
		    IFACE_ADAPT, "Powered", "b", 1);
		return;
	}
	if (c->disc_requested && (!want_discovery || now - c->disc_since_ms >= interval_ms)) {
		(void)sd_bus_call_method_async(c->bus, &c->adapter_call, BLUEZ, c->adapter_path,
		    IFACE_ADAPT, "StopDiscovery", ble_central_on_stop_discovery, c, "");
		return;
	}
	if (want_discovery && !c->disc_requested) {
		/* The filter is per client and bluetoothd forgets it with the client's discovery:
		 * set it before every start. */
		(void)sd_bus_call_method_async(c->bus, &c->adapter_call, BLUEZ, c->adapter_path,
		    IFACE_ADAPT, "SetDiscoveryFilter", ble_central_on_filter, c, "a{sv}", 3,
		    "UUIDs", "as", 1, BLE_SERVICE_UUID, "Transport", "s", "le", "DuplicateData",
		    "b", 0);
	}
}

static bool
ble_central_allowed(const struct ble_central *c, const struct ble_dev *d)
{
	if (!d->addr[0])
		return false;
	if (c->allow) {
		bool found = false;

		for (char **a = c->allow; *a && !found; a++)
			found = strcasecmp(*a, d->addr) == 0;
		if (!found)
			return false;
	}
	if (c->name_prefix &&
	    (!d->name || strncmp(d->name, c->name_prefix, strlen(c->name_prefix)) != 0))
		return false;
	return true;
}

/* Tells the owner when the adapter's state or the number of links changed. */
static void
ble_central_tell(struct ble_central *c)
{
	struct ble_central_stats st;

	if (!c->cfg.changed)
		return;
	ble_central_get_stats(c, &st);
	if (c->told && st.bluez == c->told_bluez && st.adapter == c->told_adapter &&
	    st.powered == c->told_powered && st.connected == c->told_connected)
		return;
	c->told = true;
	c->told_bluez = st.bluez;
	c->told_adapter = st.adapter;
	c->told_powered = st.powered;
	c->told_connected = st.connected;
	c->cfg.changed(c, c->cb_arg);
}

/* Recomputes what to do from the state: connections first, then adapter power and discovery
 * (which depends on how many connections are under way). */
static void
ble_central_step(struct ble_central *c)
{
	uint64_t now = ble_now_ms();
	unsigned int busy = 0, connecting = 0, setting_up = 0, awaited = 0;
	unsigned int max = c->cfg.max_connections ? c->cfg.max_connections : 1;

	if (!c->bluez_up || !c->adapter_present) {
		ble_central_tell(c);
		busev_rearm(c->be);
		return;
	}
	for (struct ble_dev *d = c->devs; d; d = d->next) {
		if (d->holdoff_until_ms && now >= d->holdoff_until_ms && d->state == BLE_DEV_IDLE)
			d->holdoff_until_ms = 0;
		if (d->state == BLE_DEV_RESOLVING && d->resolved && d->connected &&
		    (ble_dev_objects_ready(c, d) ||
			now - d->resolved_ms >= BLE_CENTRAL_OBJECTS_WAIT_MS))
			ble_dev_setup(d);
		else if (d->state == BLE_DEV_RESOLVING &&
			 now - d->state_since_ms > BLE_CENTRAL_RESOLVE_TIMEOUT_MS)
			ble_dev_fail(d, -ETIMEDOUT);
		/* A device whose transport the owner holds keeps its slot while it reconnects
		 * (it rebooted into a new image, or dropped out mid-transfer): its update is
		 * not finished. The owner lets go of it if it does not come back. */
		if (d->state != BLE_DEV_IDLE || d->link)
			busy++;
		if (d->state == BLE_DEV_IDLE && d->link)
			awaited++;
		if (d->state == BLE_DEV_CONNECTING)
			connecting++;
		if (d->state >= BLE_DEV_CONNECTING && d->state <= BLE_DEV_SETUP)
			setting_up++;
	}
	/* One connection set-up at a time (a controller creates one LE connection at a time
	 * anyway), devices the owner holds first, then others while slots are free. */
	for (int held = 1; held >= 0; held--) {
		for (struct ble_dev *d = c->devs; d && !setting_up && c->powered; d = d->next) {
			if (!d->link != !held || (!held && busy >= max))
				continue;
			/* Only devices that advertise now (seen in our discovery, which
			 * bluetoothd filters on the otagw service): it remembers devices long
			 * gone, and a connect to one blocks set-ups for its whole timeout.
			 * Seen is enough even when UUIDs lack the service: bluetoothd keeps
			 * the services of a device's last connection and ignores what it
			 * advertises after, so a device whose service was missing once would
			 * otherwise never be tried again. */
			if (d->state != BLE_DEV_IDLE || !d->present || !d->seen ||
			    (!d->ours && d->foreign) || d->holdoff_until_ms ||
			    now < d->next_try_ms || !ble_central_allowed(c, d))
				continue;
			ble_dev_connect(d);
			if (!held)
				busy++;
			connecting++;
			setting_up++;
		}
	}
	/* Discover while a slot is free or a held device is awaited back. */
	ble_central_adapter_step(c, (busy < max || awaited) && connecting == 0, now);
	ble_central_tell(c);
	busev_rearm(c->be);
}

static void
ble_central_on_step(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	ble_central_step(arg);
}

/* Coalesces every change into one step on the next loop iteration. */
static void
ble_central_schedule(struct ble_central *c)
{
	if (!event_pending(c->step_ev, EV_TIMEOUT, NULL))
		event_active(c->step_ev, EV_TIMEOUT, 1);
}

void
ble_central_get_stats(const struct ble_central *c, struct ble_central_stats *out)
{
	*out = (struct ble_central_stats){
	    .bluez = c->bluez_up,
	    .adapter = c->bluez_up && c->adapter_present,
	    .powered = c->bluez_up && c->adapter_present && c->powered,
	    .discovering = c->discovering && c->disc_requested,
	    .restarts = c->restarts,
	    .adapter_error = c->adapter_error,
	};
	for (const struct ble_dev *d = c->devs; d; d = d->next) {
		if (d->state == BLE_DEV_UP)
			out->connected++;
		else if (d->state != BLE_DEV_IDLE && d->state != BLE_DEV_DISCONNECTING)
			out->connecting++;
	}
}

int
ble_central_set_holdoff(struct ble_central *c, struct transport *t, unsigned int holdoff_s)
{
	for (struct ble_dev *d = c->devs; d; d = d->next) {
		if (d->link && ble_link_transport(d->link) == t) {
			d->holdoff_s = holdoff_s;
			return 0;
		}
	}
	return -EINVAL;
}

static bool
ble_adapter_name_ok(const char *s)
{
	if (strncmp(s, "hci", 3) != 0 || !s[3] || strlen(s) > 8)
		return false;
	for (s += 3; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

int
ble_central_new(struct event_base *base, struct busev *be, const struct ble_central_config *cfg,
    ble_central_cb cb, void *arg, struct ble_central **out)
{
	const char *adapter = cfg->adapter ? cfg->adapter : "hci0";
	struct ble_central *c;
	char match[256];
	size_t nallow = 0;
	int r;

	if (!cb || !ble_adapter_name_ok(adapter) || cfg->prefer > BLE_PREFER_L2CAP_ONLY)
		return -EINVAL;
	for (const char *const *a = cfg->allow; a && *a; a++, nallow++) {
		bdaddr_t ba;

		if (strlen(*a) != 17 || str2ba(*a, &ba) < 0)
			return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->base = base;
	c->be = be;
	c->bus = busev_bus(be);
	c->cfg = *cfg;
	c->cb = cb;
	c->cb_arg = arg;
	r = -ENOMEM;
	if (asprintf(&c->adapter_path, "/org/bluez/%s", adapter) < 0) {
		c->adapter_path = NULL;
		goto fail;
	}
	if (cfg->name_prefix && !(c->name_prefix = strdup(cfg->name_prefix)))
		goto fail;
	if (cfg->allow) {
		c->allow = calloc(nallow + 1, sizeof(*c->allow));
		if (!c->allow)
			goto fail;
		for (size_t i = 0; i < nallow; i++)
			if (!(c->allow[i] = strdup(cfg->allow[i])))
				goto fail;
	}
	c->cfg.adapter = NULL;
	c->cfg.allow = NULL;
	c->cfg.name_prefix = NULL;
	c->step_ev = event_new(base, -1, 0, ble_central_on_step, c);
	c->tick_ev = event_new(base, -1, EV_PERSIST, ble_central_on_step, c);
	if (!c->step_ev || !c->tick_ev)
		goto fail;
	event_add(c->tick_ev, &(struct timeval){0, (suseconds_t)BLE_CENTRAL_TICK_MS * 1000});

	/* Signals first, then the snapshot: whatever changes in between arrives as a signal. */
	r = sd_bus_match_signal_async(c->bus, &c->m_added, BLUEZ, "/",
	    "org.freedesktop.DBus.ObjectManager", "InterfacesAdded", ble_central_on_added, NULL, c);
	if (r >= 0)
		r = sd_bus_match_signal_async(c->bus, &c->m_removed, BLUEZ, "/",
		    "org.freedesktop.DBus.ObjectManager", "InterfacesRemoved",
		    ble_central_on_removed, NULL, c);
	snprintf(match, sizeof(match),
	    "type='signal',sender='" BLUEZ "',interface='org.freedesktop.DBus.Properties',"
	    "member='PropertiesChanged',path_namespace='%s'",
	    c->adapter_path);
	if (r >= 0)
		r = sd_bus_add_match_async(
		    c->bus, &c->m_props, match, ble_central_on_props, NULL, c);
	if (r >= 0)
		r = sd_bus_add_match_async(c->bus, &c->m_owner,
		    "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
		    "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='" BLUEZ "'",
		    ble_central_on_owner, NULL, c);
	if (r < 0)
		goto fail;
	ble_central_get_objects(c);
	busev_rearm(be);
	*out = c;
	return 0;
fail:
	ble_central_free(c);
	return r;
}

struct ble_central *
ble_central_free(struct ble_central *c)
{
	if (!c)
		return NULL;
	while (c->devs) {
		struct ble_dev *d = c->devs;

		c->devs = d->next;
		if (d->connected && c->bluez_up && d->state != BLE_DEV_IDLE)
			(void)sd_bus_call_method_async(c->bus, NULL, BLUEZ, d->path, IFACE_DEVICE,
			    "Disconnect", NULL, NULL, "");
		ble_dev_destroy(d);
	}
	if (c->disc_requested && c->bluez_up)
		(void)sd_bus_call_method_async(c->bus, NULL, BLUEZ, c->adapter_path, IFACE_ADAPT,
		    "StopDiscovery", NULL, NULL, "");
	ble_obj_clear(c);
	sd_bus_slot_unref(c->m_added);
	sd_bus_slot_unref(c->m_removed);
	sd_bus_slot_unref(c->m_props);
	sd_bus_slot_unref(c->m_owner);
	sd_bus_slot_unref(c->objs_call);
	sd_bus_slot_unref(c->adapter_call);
	if (c->step_ev)
		event_free(c->step_ev);
	if (c->tick_ev)
		event_free(c->tick_ev);
	if (c->be)
		busev_rearm(c->be);
	for (char **a = c->allow; a && *a; a++)
		free(*a);
	free(c->allow);
	free(c->name_prefix);
	free(c->adapter_path);
	free(c);
	return NULL;
}
