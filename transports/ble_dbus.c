/* sd-bus helpers for BlueZ's property dictionaries; see ble_dbus.h. */
#include "ble_dbus.h"

#include <errno.h>
#include <strings.h>

/* Walks a dictionary with string keys at the current position: an array of entry ("{sv}"),
 * each holding inner ("sv"). fn gets each key with m at the value, which it must read or skip. */
static int
ble_dbus_dict(sd_bus_message *m, const char *entry, const char *inner,
    int (*fn)(const char *key, sd_bus_message *m, void *ctx), void *ctx)
{
	int r;

	r = sd_bus_message_enter_container(m, 'a', entry);
	if (r < 0)
		return r;
	while ((r = sd_bus_message_enter_container(m, 'e', inner)) > 0) {
		const char *key;

		r = sd_bus_message_read(m, "s", &key);
		if (r >= 0)
			r = fn(key, m, ctx);
		if (r >= 0)
			r = sd_bus_message_exit_container(m);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	return sd_bus_message_exit_container(m);
}

struct ble_dbus_walk {
	const char *iface;
	ble_dbus_iface_fn iface_fn;
	ble_dbus_prop_fn fn;
	void *ctx;
};

/* One a{sv} entry: the caller's fn reads the variant, or it is skipped. */
static int
ble_dbus_prop_entry(const char *name, sd_bus_message *m, void *ctx)
{
	struct ble_dbus_walk *w = ctx;
	int r = w->fn ? w->fn(w->iface, name, m, w->ctx) : 0;

	return r == 0 ? sd_bus_message_skip(m, "v") : r;
}

int
ble_dbus_props(sd_bus_message *m, const char *iface, ble_dbus_prop_fn fn, void *ctx)
{
	struct ble_dbus_walk w = {.iface = iface, .fn = fn, .ctx = ctx};

	return ble_dbus_dict(m, "{sv}", "sv", ble_dbus_prop_entry, &w);
}

/* One a{sa{sv}} entry: an interface and its properties, between the two iface_fn calls. */
static int
ble_dbus_iface_entry(const char *iface, sd_bus_message *m, void *ctx)
{
	struct ble_dbus_walk *w = ctx;
	int r = w->iface_fn ? w->iface_fn(iface, false, w->ctx) : 0;

	if (r >= 0)
		r = ble_dbus_props(m, iface, w->fn, w->ctx);
	if (r >= 0 && w->iface_fn)
		r = w->iface_fn(iface, true, w->ctx);
	return r;
}

int
ble_dbus_ifaces(sd_bus_message *m, ble_dbus_iface_fn iface_fn, ble_dbus_prop_fn fn, void *ctx)
{
	struct ble_dbus_walk w = {.iface_fn = iface_fn, .fn = fn, .ctx = ctx};

	return ble_dbus_dict(m, "{sa{sv}}", "sa{sv}", ble_dbus_iface_entry, &w);
}

static int
ble_dbus_v_basic(sd_bus_message *m, char type, void *out)
{
	char sig[2] = {type, 0};
	int r;

	r = sd_bus_message_enter_container(m, 'v', sig);
	if (r < 0)
		return r == -ENXIO ? -EINVAL : r;
	r = sd_bus_message_read_basic(m, type, out);
	if (r < 0)
		return r;
	return sd_bus_message_exit_container(m);
}

int
ble_dbus_v_bool(sd_bus_message *m, bool *out)
{
	int v = 0, r = ble_dbus_v_basic(m, 'b', &v);

	if (r >= 0)
		*out = v != 0;
	return r;
}

int
ble_dbus_v_str(sd_bus_message *m, const char **out)
{
	const char *contents = NULL;
	char type = 0;
	int r;

	r = sd_bus_message_peek_type(m, &type, &contents);
	if (r < 0)
		return r;
	if (type != 'v' || !contents || (contents[0] != 's' && contents[0] != 'o') || contents[1])
		return -EINVAL;
	return ble_dbus_v_basic(m, contents[0], out);
}

int
ble_dbus_v_u16(sd_bus_message *m, uint16_t *out)
{
	return ble_dbus_v_basic(m, 'q', out);
}

int
ble_dbus_v_strv_has(sd_bus_message *m, const char *want, bool *out)
{
	const char *s;
	bool has = false;
	int r;

	r = sd_bus_message_enter_container(m, 'v', "as");
	if (r < 0)
		return r == -ENXIO ? -EINVAL : r;
	r = sd_bus_message_enter_container(m, 'a', "s");
	if (r < 0)
		return r;
	while ((r = sd_bus_message_read_basic(m, 's', &s)) > 0)
		if (strcasecmp(s, want) == 0)
			has = true;
	if (r < 0)
		return r;
	r = sd_bus_message_exit_container(m);
	if (r >= 0)
		r = sd_bus_message_exit_container(m);
	if (r >= 0)
		*out = has;
	return r;
}

int
ble_dbus_reply_errno(sd_bus_message *m)
{
	int e = sd_bus_message_get_errno(m);

	return e > 0 ? -e : -EIO;
}
