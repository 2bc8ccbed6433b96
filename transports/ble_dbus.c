/* sd-bus helpers for BlueZ's property dictionaries; see ble_dbus.h. */
#include "ble_dbus.h"

#include <errno.h>
#include <strings.h>

int
ble_dbus_props(sd_bus_message *m, const char *iface, ble_dbus_prop_fn fn, void *ctx)
{
	int r;

	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r < 0)
		return r;
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		const char *name;

		r = sd_bus_message_read(m, "s", &name);
		if (r < 0)
			return r;
		r = fn ? fn(iface, name, m, ctx) : 0;
		if (r < 0)
			return r;
		if (r == 0) {
			r = sd_bus_message_skip(m, "v");
			if (r < 0)
				return r;
		}
		r = sd_bus_message_exit_container(m);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	return sd_bus_message_exit_container(m);
}

int
ble_dbus_ifaces(sd_bus_message *m, void (*iface_fn)(const char *iface, void *ctx),
    ble_dbus_prop_fn fn, void *ctx)
{
	int r;

	r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
	if (r < 0)
		return r;
	while ((r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
		const char *iface;

		r = sd_bus_message_read(m, "s", &iface);
		if (r < 0)
			return r;
		if (iface_fn)
			iface_fn(iface, ctx);
		r = ble_dbus_props(m, iface, fn, ctx);
		if (r < 0)
			return r;
		r = sd_bus_message_exit_container(m);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	return sd_bus_message_exit_container(m);
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
