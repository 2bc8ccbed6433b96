/* Small sd-bus helpers shared by the BLE central and peripheral (internal to transports/):
 * walking BlueZ's a{sa{sv}} / a{sv} property dictionaries without knowing every property, and
 * reading the few variant types BlueZ uses. All return negative errno on malformed messages. */
#ifndef OTAGW_BLE_DBUS_H
#define OTAGW_BLE_DBUS_H

#include <stdbool.h>
#include <systemd/sd-bus.h>

/* Called for each property with m positioned at its variant. Returns 1 if it read the
 * variant, 0 to have it skipped, negative errno to stop. */
typedef int (*ble_dbus_prop_fn)(const char *iface, const char *name, sd_bus_message *m, void *ctx);

/* Walks an a{sv} at the current position (properties of iface). */
int ble_dbus_props(sd_bus_message *m, const char *iface, ble_dbus_prop_fn fn, void *ctx);

/* Called for each interface of an a{sa{sv}}, before its properties (end false) and after them
 * (end true). Returns 0, or negative errno to stop. */
typedef int (*ble_dbus_iface_fn)(const char *iface, bool end, void *ctx);

/* Walks an a{sa{sv}} at the current position (interfaces and their properties); iface_fn, if
 * not NULL, brackets each interface's properties. */
int ble_dbus_ifaces(sd_bus_message *m, ble_dbus_iface_fn iface_fn, ble_dbus_prop_fn fn, void *ctx);

/* Read a variant of the named type; -EINVAL if it has another type. */
int ble_dbus_v_bool(sd_bus_message *m, bool *out);
int ble_dbus_v_str(sd_bus_message *m, const char **out); /* 's' or 'o' */
int ble_dbus_v_u16(sd_bus_message *m, uint16_t *out);
/* Reads a variant "as" and tells whether it holds want (case-insensitive). */
int ble_dbus_v_strv_has(sd_bus_message *m, const char *want, bool *out);

/* Errno for a method error reply (sd_bus_message_get_errno), -EIO when unknown. */
int ble_dbus_reply_errno(sd_bus_message *m);

#endif
