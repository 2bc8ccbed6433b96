/* otagwd's D-Bus service (docs/dbus-api.md): io.otagw on the system or session bus, with the
 * Manager1 object, one Device1 object per device the fleet knows, one Link1 object per link,
 * the ObjectManager and LogControl1, all served from the one libevent loop through busev.
 * Properties follow the fleet, the links and the daemon's state with PropertiesChanged
 * signals, progress ones coalesced to at most 4 per second per object. When the bus cannot be
 * reached, or goes away, otagwd keeps serving devices and reconnects with a backoff,
 * registering its objects and the name again. */
#ifndef OTAGW_DBUS_H
#define OTAGW_DBUS_H

struct daemon_module;

/* The well-known name and the object paths (docs/dbus-api.md, "Object paths and escaping"). */
#define DBUS_NAME         "io.otagw"
#define DBUS_PATH         "/io/otagw"
#define DBUS_DEVICE_PATH  "/io/otagw/device"
#define DBUS_LINK_PATH    "/io/otagw/link"
#define DBUS_LOG_PATH     "/org/freedesktop/LogControl1"
#define DBUS_IFACE_MGR    "io.otagw.Manager1"
#define DBUS_IFACE_DEVICE "io.otagw.Device1"
#define DBUS_IFACE_LINK   "io.otagw.Link1"
#define DBUS_IFACE_LOG    "org.freedesktop.LogControl1"

/* The daemon module (daemon.c's table, after the links): connects to the bus [dbus] bus names
 * and holds READY=1 back until the name is acquired, or until connecting or acquiring it
 * failed (then it logs why, serves devices without D-Bus and retries). With bus = none it does
 * nothing. If the name is owned by another process at start-up, it logs who and stops the
 * daemon with status 1 (from the loop, after the start hook returned). */
extern const struct daemon_module dbus_module;

#endif
