/* The BLE peripheral (device side, the simulator's link): exports the otagw GATT application,
 * an LE advertisement and a NoInputNoOutput agent to bluetoothd, optionally listens for L2CAP
 * CoC, and presents the connected central as two transports (GATT and L2CAP). GATT data flows
 * through the sockets bluetoothd acquires from us (AcquireWrite/AcquireNotify); D-Bus carries
 * only set-up. Registration is redone whenever bluetoothd (re)appears. */
#include "ble.h"

#include <bluetooth/bluetooth.h>
#include <bluetooth/l2cap.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "ble_dbus.h"
#include "ble_link.h"
#include "frame.h"

#define BLUEZ       "org.bluez"
#define IFACE_ADAPT "org.bluez.Adapter1"
#define IFACE_DEV   "org.bluez.Device1"

/* bluetoothd drops a GATT write it cannot hand to our socket at once: give its end of the
 * write socket a large send buffer (root may exceed wmem_max; others get the cap). */
enum { BLE_PERIPH_SOCKBUF = 1024 * 1024 };

struct ble_periph {
	struct event_base *base;
	struct busev *be;
	sd_bus *bus;
	char *adapter_path;
	char *name;
	char *app_path, *svc_path, *wr_path, *nt_path, *psm_path, *adv_path, *agent_path;
	uint16_t psm;
	bool want_adv, adv_registered, adv_busy;
	bool app_registered;
	char adapter_addr[18];
	char *central_path; /* the device that subscribed */

	struct ble_link *gatt, *l2cap;
	int listen_fd;
	struct event *listen_ev;

	sd_bus_slot *vt_app, *vt_svc, *vt_wr, *vt_nt, *vt_psm, *vt_adv, *vt_agent, *objmgr;
	sd_bus_slot *m_owner, *m_props, *m_removed;
	sd_bus_slot *setup_call, *adv_call;
	int step; /* enum ble_periph_step of the call in flight */
	bool setup_done;
	struct event *retry_ev;
};

/* The central went away (or bluetoothd did): both links are down until it comes back. */
static void
ble_periph_central_gone(struct ble_periph *p, int err)
{
	free(p->central_path);
	p->central_path = NULL;
	if (transport_connected(ble_link_transport(p->gatt)))
		(void)ble_link_down(p->gatt, err);
	else
		ble_link_close(p->gatt);
	if (p->l2cap) {
		if (transport_connected(ble_link_transport(p->l2cap)))
			(void)ble_link_down(p->l2cap, err);
		else
			ble_link_close(p->l2cap);
	}
}

/* GATT objects. */

static int
ble_periph_prop_uuid(sd_bus *bus, const char *path, const char *iface, const char *prop,
    sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct ble_periph *p = userdata;
	const char *uuid = BLE_SERVICE_UUID;

	(void)bus;
	(void)iface;
	(void)prop;
	(void)err;
	if (strcmp(path, p->wr_path) == 0)
		uuid = BLE_WRITE_UUID;
	else if (strcmp(path, p->nt_path) == 0)
		uuid = BLE_NOTIFY_UUID;
	else if (strcmp(path, p->psm_path) == 0)
		uuid = BLE_PSM_UUID;
	return sd_bus_message_append(reply, "s", uuid);
}

static int
ble_periph_prop_true(sd_bus *bus, const char *path, const char *iface, const char *prop,
    sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	(void)bus;
	(void)path;
	(void)iface;
	(void)prop;
	(void)userdata;
	(void)err;
	return sd_bus_message_append(reply, "b", 1);
}

static int
ble_periph_prop_service(sd_bus *bus, const char *path, const char *iface, const char *prop,
    sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct ble_periph *p = userdata;

	(void)bus;
	(void)path;
	(void)iface;
	(void)prop;
	(void)err;
	return sd_bus_message_append(reply, "o", p->svc_path);
}

static int
ble_periph_prop_flags(sd_bus *bus, const char *path, const char *iface, const char *prop,
    sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct ble_periph *p = userdata;
	const char *flag = "read";

	(void)bus;
	(void)iface;
	(void)prop;
	(void)err;
	if (strcmp(path, p->wr_path) == 0)
		flag = "write-without-response";
	else if (strcmp(path, p->nt_path) == 0)
		flag = "notify";
	return sd_bus_message_append(reply, "as", 1, flag);
}

/* Reads the "device" and "mtu" options bluetoothd passes to Acquire*. */
static int
ble_periph_acquire_opts(sd_bus_message *m, char **device, uint16_t *mtu)
{
	int r;

	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r < 0)
		return r;
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		const char *key, *s;

		r = sd_bus_message_read(m, "s", &key);
		if (r < 0)
			return r;
		if (strcmp(key, "mtu") == 0)
			r = ble_dbus_v_u16(m, mtu);
		else if (strcmp(key, "device") == 0 && (r = ble_dbus_v_str(m, &s)) >= 0) {
			free(*device);
			*device = strdup(s);
		} else
			r = sd_bus_message_skip(m, "v");
		if (r < 0)
			return r;
		r = sd_bus_message_exit_container(m);
		if (r < 0)
			return r;
	}
	return r < 0 ? r : sd_bus_message_exit_container(m);
}

/* AcquireWrite (the central writes: we read) and AcquireNotify (we notify: we write) both hand
 * bluetoothd one end of a seqpacket socketpair. */
static int
ble_periph_acquire(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct ble_periph *p = userdata;
	bool notify = strcmp(sd_bus_message_get_member(m), "AcquireNotify") == 0;
	char *device = NULL;
	uint16_t mtu = 23;
	int sv[2], r, buf = BLE_PERIPH_SOCKBUF;

	r = ble_periph_acquire_opts(m, &device, &mtu);
	if (r < 0) {
		free(device);
		return sd_bus_error_setf(
		    err, SD_BUS_ERROR_INVALID_ARGS, "bad options: %s", strerror(-r));
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
		free(device);
		return sd_bus_error_set_errno(err, errno);
	}
	/* bluetoothd's end sends what the central writes and gives up on EAGAIN. */
	if (!notify && setsockopt(sv[1], SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)) < 0)
		(void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	if (notify) {
		size_t max = mtu > 3 ? (size_t)mtu - 3 : 20;

		r = ble_link_set_fds(
		    p->gatt, -1, sv[0], max > BLE_GATT_MSG_MAX ? BLE_GATT_MSG_MAX : max);
	} else {
		r = ble_link_set_fds(p->gatt, sv[0], -1, 0);
	}
	if (r < 0) {
		close(sv[1]);
		free(device);
		return sd_bus_error_set_errno(err, -r);
	}
	r = sd_bus_reply_method_return(m, "hq", sv[1], mtu);
	close(sv[1]); /* the reply holds its own copy */
	if (device) {
		free(p->central_path);
		p->central_path = device;
	}
	/* Subscribed: the central can hear us now. */
	if (notify && !transport_connected(ble_link_transport(p->gatt)))
		(void)ble_link_up(p->gatt);
	return r;
}

static int
ble_periph_write_value(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	(void)userdata;
	/* Only acquired sockets carry data; a central that writes through the D-Bus path gets a
	 * clear refusal. */
	(void)m;
	return sd_bus_error_setf(err, "org.bluez.Error.NotSupported",
	    "otagw data goes through AcquireWrite; WriteValue is not supported");
}

static int
ble_periph_notify_unsupported(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	(void)m;
	(void)userdata;
	return sd_bus_error_setf(
	    err, "org.bluez.Error.NotSupported", "otagw notifications go through AcquireNotify");
}

static int
ble_periph_read_psm(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct ble_periph *p = userdata;
	uint8_t v[2] = {(uint8_t)(p->psm & 0xff), (uint8_t)(p->psm >> 8)};
	sd_bus_message *reply = NULL;
	int r;

	(void)err;
	r = sd_bus_message_new_method_return(m, &reply);
	if (r >= 0)
		r = sd_bus_message_append_array(reply, 'y', v, sizeof(v));
	if (r >= 0)
		r = sd_bus_send(NULL, reply, NULL);
	sd_bus_message_unref(reply);
	return r;
}

static const sd_bus_vtable ble_periph_svc_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("UUID", "s", ble_periph_prop_uuid, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Primary", "b", ble_periph_prop_true, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_VTABLE_END,
};

/* What org.bluez.GattCharacteristic1 requires of every characteristic. */
/* clang-format off */
#define BLE_PERIPH_CHRC_PROPS \
	SD_BUS_PROPERTY("UUID", "s", ble_periph_prop_uuid, 0, SD_BUS_VTABLE_PROPERTY_CONST), \
	SD_BUS_PROPERTY("Service", "o", ble_periph_prop_service, 0, SD_BUS_VTABLE_PROPERTY_CONST), \
	SD_BUS_PROPERTY("Flags", "as", ble_periph_prop_flags, 0, SD_BUS_VTABLE_PROPERTY_CONST)
/* clang-format on */

static const sd_bus_vtable ble_periph_wr_vtable[] = {
    SD_BUS_VTABLE_START(0),
    BLE_PERIPH_CHRC_PROPS,
    /* Its presence tells bluetoothd we support AcquireWrite. */
    SD_BUS_PROPERTY("WriteAcquired", "b", ble_periph_prop_true, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_METHOD("AcquireWrite", "a{sv}", "hq", ble_periph_acquire, 0),
    SD_BUS_METHOD("WriteValue", "aya{sv}", "", ble_periph_write_value, 0),
    SD_BUS_VTABLE_END,
};

static const sd_bus_vtable ble_periph_nt_vtable[] = {
    SD_BUS_VTABLE_START(0),
    BLE_PERIPH_CHRC_PROPS,
    /* Its presence tells bluetoothd we support AcquireNotify. */
    SD_BUS_PROPERTY("NotifyAcquired", "b", ble_periph_prop_true, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_METHOD("AcquireNotify", "a{sv}", "hq", ble_periph_acquire, 0),
    SD_BUS_METHOD("StartNotify", "", "", ble_periph_notify_unsupported, 0),
    SD_BUS_METHOD("StopNotify", "", "", ble_periph_notify_unsupported, 0),
    SD_BUS_VTABLE_END,
};

static const sd_bus_vtable ble_periph_psm_vtable[] = {
    SD_BUS_VTABLE_START(0),
    BLE_PERIPH_CHRC_PROPS,
    SD_BUS_METHOD("ReadValue", "a{sv}", "ay", ble_periph_read_psm, 0),
    SD_BUS_VTABLE_END,
};

/* Advertisement. */

static int
ble_periph_adv_prop(sd_bus *bus, const char *path, const char *iface, const char *prop,
    sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct ble_periph *p = userdata;

	(void)bus;
	(void)path;
	(void)iface;
	(void)err;
	if (strcmp(prop, "Type") == 0)
		return sd_bus_message_append(reply, "s", "peripheral");
	if (strcmp(prop, "ServiceUUIDs") == 0)
		return sd_bus_message_append(reply, "as", 1, BLE_SERVICE_UUID);
	if (strcmp(prop, "LocalName") == 0)
		return sd_bus_message_append(reply, "s", p->name ? p->name : "");
	return -ENOENT;
}

static int
ble_periph_adv_release(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct ble_periph *p = userdata;

	(void)err;
	p->adv_registered = false;
	return sd_bus_reply_method_return(m, "");
}

static const sd_bus_vtable ble_periph_adv_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Type", "s", ble_periph_adv_prop, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("ServiceUUIDs", "as", ble_periph_adv_prop, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("LocalName", "s", ble_periph_adv_prop, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_METHOD("Release", "", "", ble_periph_adv_release, 0),
    SD_BUS_VTABLE_END,
};

/* Agent: NoInputNoOutput, so pairing is Just Works; accepts what bluetoothd asks. */

static int
ble_periph_agent_ok(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	(void)userdata;
	(void)err;
	return sd_bus_reply_method_return(m, "");
}

static int
ble_periph_agent_pin(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	(void)m;
	(void)userdata;
	return sd_bus_error_setf(err, "org.bluez.Error.Rejected", "no input on this device");
}

static const sd_bus_vtable ble_periph_agent_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("Release", "", "", ble_periph_agent_ok, 0),
    SD_BUS_METHOD("RequestPinCode", "o", "s", ble_periph_agent_pin, 0),
    SD_BUS_METHOD("DisplayPinCode", "os", "", ble_periph_agent_ok, 0),
    SD_BUS_METHOD("RequestPasskey", "o", "u", ble_periph_agent_pin, 0),
    SD_BUS_METHOD("DisplayPasskey", "ouq", "", ble_periph_agent_ok, 0),
    SD_BUS_METHOD("RequestConfirmation", "ou", "", ble_periph_agent_ok, 0),
    SD_BUS_METHOD("RequestAuthorization", "o", "", ble_periph_agent_ok, 0),
    SD_BUS_METHOD("AuthorizeService", "os", "", ble_periph_agent_ok, 0),
    SD_BUS_METHOD("Cancel", "", "", ble_periph_agent_ok, 0),
    SD_BUS_VTABLE_END,
};

/* L2CAP listener. */

/* Remembers the central behind an accepted channel, so its disconnect is seen (as for GATT,
 * where bluetoothd names the device in Acquire*'s options). */
static void
ble_periph_set_central(struct ble_periph *p, const bdaddr_t *ba)
{
	char addr[18], *path;

	ba2str(ba, addr);
	for (char *c = addr; *c; c++)
		if (*c == ':')
			*c = '_';
	if (asprintf(&path, "%s/dev_%s", p->adapter_path, addr) < 0)
		return;
	free(p->central_path);
	p->central_path = path;
}

static void
ble_periph_on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct ble_periph *p = arg;
	struct sockaddr_l2 peer;
	socklen_t plen = sizeof(peer);
	uint16_t mtu = 0;
	socklen_t len = sizeof(mtu);
	int cfd;

	(void)what;
	cfd = accept4(fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd < 0)
		return;
	/* One central at a time; a second channel is refused by closing it. */
	if (transport_connected(ble_link_transport(p->l2cap)) ||
	    getsockopt(cfd, SOL_BLUETOOTH, BT_SNDMTU, &mtu, &len) < 0 || mtu == 0) {
		close(cfd);
		return;
	}
	if (ble_link_set_fds(p->l2cap, cfd, cfd, mtu < FRAME_MSG_MAX ? mtu : FRAME_MSG_MAX) < 0)
		return;
	if (plen >= sizeof(peer))
		ble_periph_set_central(p, &peer.l2_bdaddr);
	(void)ble_link_up(p->l2cap);
}

static int
ble_periph_listen(struct ble_periph *p)
{
	struct sockaddr_l2 a = {.l2_family = AF_BLUETOOTH, .l2_bdaddr_type = BDADDR_LE_PUBLIC};
	uint8_t mode = BT_MODE_LE_FLOWCTL;
	uint16_t rmtu = FRAME_MSG_MAX;
	int fd, r = 0;

	if (p->listen_fd >= 0 || !p->psm || !p->adapter_addr[0])
		return 0;
	if (str2ba(p->adapter_addr, &a.l2_bdaddr) < 0)
		return -EINVAL;
	a.l2_psm = htobs(p->psm);
	fd = socket(AF_BLUETOOTH, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, BTPROTO_L2CAP);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    (setsockopt(fd, SOL_BLUETOOTH, BT_MODE, &mode, sizeof(mode)) < 0 &&
		errno != ENOPROTOOPT) ||
	    setsockopt(fd, SOL_BLUETOOTH, BT_RCVMTU, &rmtu, sizeof(rmtu)) < 0 || listen(fd, 1) < 0)
		r = -errno;
	if (!r) {
		p->listen_ev =
		    event_new(p->base, fd, EV_READ | EV_PERSIST, ble_periph_on_accept, p);
		if (!p->listen_ev || event_add(p->listen_ev, NULL) < 0)
			r = -ENOMEM;
	}
	if (r) {
		close(fd);
		return r;
	}
	p->listen_fd = fd;
	return 0;
}

/* Registration with bluetoothd, one call after the other. */

/* Registration with bluetoothd, one call after the other; any failure starts over later. */

enum ble_periph_step {
	BLE_PERIPH_STEP_ADDRESS,
	BLE_PERIPH_STEP_POWER,
	BLE_PERIPH_STEP_DISC_TIMEOUT,
	BLE_PERIPH_STEP_DISCOVERABLE,
	BLE_PERIPH_STEP_APP,
	BLE_PERIPH_STEP_AGENT,
	BLE_PERIPH_STEP_DEFAULT_AGENT,
	BLE_PERIPH_STEP_DONE,
};

enum { BLE_PERIPH_RETRY_S = 2 };

static int ble_periph_on_setup(sd_bus_message *m, void *userdata, sd_bus_error *ret_error);
static int ble_periph_adv_apply(struct ble_periph *p);

static int
ble_periph_new_call(struct ble_periph *p, sd_bus_message **m, const char *path, const char *iface,
    const char *member)
{
	return sd_bus_message_new_method_call(p->bus, m, BLUEZ, path, iface, member);
}

static int
ble_periph_call(struct ble_periph *p, enum ble_periph_step step)
{
	const char *props = "org.freedesktop.DBus.Properties";
	sd_bus_message *m = NULL;
	int r = 0;

	p->setup_call = sd_bus_slot_unref(p->setup_call);
	p->step = step;
	switch (step) {
	case BLE_PERIPH_STEP_ADDRESS:
		r = ble_periph_new_call(p, &m, p->adapter_path, props, "Get");
		if (r >= 0)
			r = sd_bus_message_append(m, "ss", IFACE_ADAPT, "Address");
		break;
	case BLE_PERIPH_STEP_POWER:
		r = ble_periph_new_call(p, &m, p->adapter_path, props, "Set");
		if (r >= 0)
			r = sd_bus_message_append(m, "ssv", IFACE_ADAPT, "Powered", "b", 1);
		break;
	case BLE_PERIPH_STEP_DISC_TIMEOUT:
		r = ble_periph_new_call(p, &m, p->adapter_path, props, "Set");
		if (r >= 0)
			r = sd_bus_message_append(
			    m, "ssv", IFACE_ADAPT, "DiscoverableTimeout", "u", 0);
		break;
	case BLE_PERIPH_STEP_DISCOVERABLE:
		/* bluetoothd lists only discoverable advertisers in a central's discovery. */
		r = ble_periph_new_call(p, &m, p->adapter_path, props, "Set");
		if (r >= 0)
			r = sd_bus_message_append(m, "ssv", IFACE_ADAPT, "Discoverable", "b", 1);
		break;
	case BLE_PERIPH_STEP_APP:
		r = ble_periph_new_call(
		    p, &m, p->adapter_path, "org.bluez.GattManager1", "RegisterApplication");
		if (r >= 0)
			r = sd_bus_message_append(m, "oa{sv}", p->app_path, 0);
		break;
	case BLE_PERIPH_STEP_AGENT:
		r = ble_periph_new_call(
		    p, &m, "/org/bluez", "org.bluez.AgentManager1", "RegisterAgent");
		if (r >= 0)
			r = sd_bus_message_append(m, "os", p->agent_path, "NoInputNoOutput");
		break;
	case BLE_PERIPH_STEP_DEFAULT_AGENT:
		r = ble_periph_new_call(
		    p, &m, "/org/bluez", "org.bluez.AgentManager1", "RequestDefaultAgent");
		if (r >= 0)
			r = sd_bus_message_append(m, "o", p->agent_path);
		break;
	case BLE_PERIPH_STEP_DONE:
		p->setup_done = true;
		r = ble_periph_listen(p);
		if (r >= 0)
			r = ble_periph_adv_apply(p);
		return r;
	}
	if (r >= 0)
		r = sd_bus_call_async(p->bus, &p->setup_call, m, ble_periph_on_setup, p, 0);
	sd_bus_message_unref(m);
	return r;
}

static void
ble_periph_retry_later(struct ble_periph *p)
{
	event_add(p->retry_ev, &(struct timeval){BLE_PERIPH_RETRY_S, 0});
}

static int
ble_periph_on_setup(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_periph *p = userdata;
	enum ble_periph_step step = (enum ble_periph_step)p->step;
	const char *addr;
	int r;

	(void)ret_error;
	p->setup_call = sd_bus_slot_unref(p->setup_call);
	if (sd_bus_message_is_method_error(m, NULL) &&
	    !sd_bus_message_is_method_error(m, "org.bluez.Error.AlreadyExists") &&
	    step != BLE_PERIPH_STEP_DEFAULT_AGENT) {
		ble_periph_retry_later(p);
		return 0;
	}
	if (step == BLE_PERIPH_STEP_ADDRESS) {
		if (sd_bus_message_enter_container(m, 'v', "s") < 0 ||
		    sd_bus_message_read(m, "s", &addr) < 0) {
			ble_periph_retry_later(p);
			return 0;
		}
		snprintf(p->adapter_addr, sizeof(p->adapter_addr), "%s", addr);
	}
	if (step == BLE_PERIPH_STEP_APP)
		p->app_registered = true;
	r = ble_periph_call(p, (enum ble_periph_step)(step + 1));
	if (r < 0)
		ble_periph_retry_later(p);
	return 0;
}

static void
ble_periph_setup(struct ble_periph *p)
{
	p->setup_done = false;
	if (ble_periph_call(p, BLE_PERIPH_STEP_ADDRESS) < 0)
		ble_periph_retry_later(p);
	busev_rearm(p->be);
}

static void
ble_periph_on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	ble_periph_setup(arg);
}

static int
ble_periph_on_adv_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_periph *p = userdata;
	bool registering = !p->adv_registered;

	(void)ret_error;
	p->adv_call = sd_bus_slot_unref(p->adv_call);
	if (!sd_bus_message_is_method_error(m, NULL) ||
	    sd_bus_message_is_method_error(m, "org.bluez.Error.AlreadyExists"))
		p->adv_registered = registering;
	else if (registering)
		ble_periph_retry_later(p);
	(void)ble_periph_adv_apply(p);
	return 0;
}

/* Brings the advertisement's registration in line with want_adv. */
static int
ble_periph_adv_apply(struct ble_periph *p)
{
	int r = 0;

	if (!p->setup_done || p->adv_call || p->want_adv == p->adv_registered)
		return 0;
	if (p->want_adv)
		r = sd_bus_call_method_async(p->bus, &p->adv_call, BLUEZ, p->adapter_path,
		    "org.bluez.LEAdvertisingManager1", "RegisterAdvertisement",
		    ble_periph_on_adv_reply, p, "oa{sv}", p->adv_path, 0);
	else
		r = sd_bus_call_method_async(p->bus, &p->adv_call, BLUEZ, p->adapter_path,
		    "org.bluez.LEAdvertisingManager1", "UnregisterAdvertisement",
		    ble_periph_on_adv_reply, p, "o", p->adv_path);
	busev_rearm(p->be);
	return r;
}

int
ble_periph_advertise(struct ble_periph *p, bool on)
{
	p->want_adv = on;
	return ble_periph_adv_apply(p);
}

/* bluetoothd and the central. */

static int
ble_periph_on_owner(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_periph *p = userdata;
	const char *name, *old_owner, *new_owner;

	(void)ret_error;
	if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 ||
	    strcmp(name, BLUEZ) != 0)
		return 0;
	if (*old_owner) {
		/* Everything registered died with it. */
		p->setup_call = sd_bus_slot_unref(p->setup_call);
		p->adv_call = sd_bus_slot_unref(p->adv_call);
		p->app_registered = p->adv_registered = p->setup_done = false;
		ble_periph_central_gone(p, -ECONNRESET);
	}
	if (*new_owner)
		ble_periph_setup(p);
	return 0;
}

static int
ble_periph_dev_prop(const char *iface, const char *name, sd_bus_message *m, void *ctx)
{
	bool *connected = ctx;

	(void)iface;
	if (strcmp(name, "Connected") != 0)
		return 0;
	return ble_dbus_v_bool(m, connected) < 0 ? -EINVAL : 1;
}

static int
ble_periph_on_props(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_periph *p = userdata;
	const char *path = sd_bus_message_get_path(m), *iface;
	bool connected = true;

	(void)ret_error;
	if (!path || !p->central_path || strcmp(path, p->central_path) != 0 ||
	    sd_bus_message_read(m, "s", &iface) < 0 || strcmp(iface, IFACE_DEV) != 0)
		return 0;
	if (ble_dbus_props(m, iface, ble_periph_dev_prop, &connected) >= 0 && !connected)
		ble_periph_central_gone(p, 0);
	return 0;
}

static int
ble_periph_on_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct ble_periph *p = userdata;
	const char *path;

	(void)ret_error;
	if (sd_bus_message_read(m, "o", &path) >= 0 && p->central_path &&
	    strcmp(path, p->central_path) == 0)
		ble_periph_central_gone(p, 0);
	return 0;
}

static void
ble_periph_link_fd_lost(struct ble_link *l, int err, void *arg)
{
	(void)arg;
	(void)ble_link_down(l, err);
}

static int
ble_periph_export(struct ble_periph *p)
{
	int r;

	r = sd_bus_add_object_manager(p->bus, &p->objmgr, p->app_path);
	if (r >= 0)
		r = sd_bus_add_object_vtable(p->bus, &p->vt_svc, p->svc_path,
		    "org.bluez.GattService1", ble_periph_svc_vtable, p);
	if (r >= 0)
		r = sd_bus_add_object_vtable(p->bus, &p->vt_wr, p->wr_path,
		    "org.bluez.GattCharacteristic1", ble_periph_wr_vtable, p);
	if (r >= 0)
		r = sd_bus_add_object_vtable(p->bus, &p->vt_nt, p->nt_path,
		    "org.bluez.GattCharacteristic1", ble_periph_nt_vtable, p);
	if (r >= 0 && p->psm)
		r = sd_bus_add_object_vtable(p->bus, &p->vt_psm, p->psm_path,
		    "org.bluez.GattCharacteristic1", ble_periph_psm_vtable, p);
	if (r >= 0)
		r = sd_bus_add_object_vtable(p->bus, &p->vt_adv, p->adv_path,
		    "org.bluez.LEAdvertisement1", ble_periph_adv_vtable, p);
	if (r >= 0)
		r = sd_bus_add_object_vtable(p->bus, &p->vt_agent, p->agent_path,
		    "org.bluez.Agent1", ble_periph_agent_vtable, p);
	return r;
}

static bool
ble_periph_path_ok(const char *s)
{
	if (s[0] != '/' || !s[1] || strlen(s) > 128 || s[strlen(s) - 1] == '/')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '/')
			return false;
	return true;
}

int
ble_periph_new(struct event_base *base, struct busev *be, const struct ble_periph_config *cfg,
    struct ble_periph **out)
{
	const char *adapter = cfg->adapter ? cfg->adapter : "hci0";
	const char *app = cfg->app_path ? cfg->app_path : "/org/otagw/periph";
	struct ble_link_owner owner = {.fd_lost = ble_periph_link_fd_lost};
	struct ble_periph *p;
	char match[256];
	int r = -ENOMEM;

	if (strncmp(adapter, "hci", 3) != 0 || strlen(adapter) > 8 || !ble_periph_path_ok(app) ||
	    (cfg->name && strlen(cfg->name) > 29)) /* what fits one advertising packet */
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->base = base;
	p->be = be;
	p->bus = busev_bus(be);
	p->psm = cfg->psm;
	p->want_adv = cfg->advertise;
	p->listen_fd = -1;
	if (asprintf(&p->adapter_path, "/org/bluez/%s", adapter) < 0 ||
	    asprintf(&p->app_path, "%s", app) < 0 ||
	    asprintf(&p->svc_path, "%s/service0", app) < 0 ||
	    asprintf(&p->wr_path, "%s/service0/char0", app) < 0 ||
	    asprintf(&p->nt_path, "%s/service0/char1", app) < 0 ||
	    asprintf(&p->psm_path, "%s/service0/char2", app) < 0 ||
	    asprintf(&p->adv_path, "%s/adv0", app) < 0 ||
	    asprintf(&p->agent_path, "%s/agent", app) < 0)
		goto fail;
	if (cfg->name && !(p->name = strdup(cfg->name)))
		goto fail;
	p->retry_ev = evtimer_new(base, ble_periph_on_retry, p);
	if (!p->retry_ev)
		goto fail;
	if (ble_link_new(base, TRANSPORT_KIND_BLE_GATT, "ble-periph:gatt", &owner, &p->gatt) < 0)
		goto fail;
	if (p->psm &&
	    ble_link_new(base, TRANSPORT_KIND_BLE_L2CAP, "ble-periph:l2cap", &owner, &p->l2cap) < 0)
		goto fail;
	r = ble_periph_export(p);
	if (r < 0)
		goto fail;
	r = sd_bus_add_match_async(p->bus, &p->m_owner,
	    "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
	    "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='" BLUEZ "'",
	    ble_periph_on_owner, NULL, p);
	snprintf(match, sizeof(match),
	    "type='signal',sender='" BLUEZ "',interface='org.freedesktop.DBus.Properties',"
	    "member='PropertiesChanged',path_namespace='%s'",
	    p->adapter_path);
	if (r >= 0)
		r = sd_bus_add_match_async(
		    p->bus, &p->m_props, match, ble_periph_on_props, NULL, p);
	if (r >= 0)
		r = sd_bus_match_signal_async(p->bus, &p->m_removed, BLUEZ, "/",
		    "org.freedesktop.DBus.ObjectManager", "InterfacesRemoved",
		    ble_periph_on_removed, NULL, p);
	if (r < 0)
		goto fail;
	ble_periph_setup(p);
	*out = p;
	return 0;
fail:
	ble_periph_free(p);
	return r;
}

struct transport *
ble_periph_gatt(struct ble_periph *p)
{
	return ble_link_transport(p->gatt);
}

struct transport *
ble_periph_l2cap(struct ble_periph *p)
{
	return p->l2cap ? ble_link_transport(p->l2cap) : NULL;
}

bool
ble_periph_connected(const struct ble_periph *p)
{
	return p->central_path != NULL;
}

int
ble_periph_disconnect(struct ble_periph *p)
{
	int r;

	if (!p->central_path)
		return 0;
	/* bluetoothd answers when the link is gone; PropertiesChanged(Connected) reports it. */
	r = sd_bus_call_method_async(
	    p->bus, NULL, BLUEZ, p->central_path, IFACE_DEV, "Disconnect", NULL, NULL, "");
	busev_rearm(p->be);
	return r < 0 ? r : 0;
}

struct ble_periph *
ble_periph_free(struct ble_periph *p)
{
	if (!p)
		return NULL;
	if (p->app_registered)
		(void)sd_bus_call_method_async(p->bus, NULL, BLUEZ, p->adapter_path,
		    "org.bluez.GattManager1", "UnregisterApplication", NULL, NULL, "o",
		    p->app_path);
	if (p->adv_registered)
		(void)sd_bus_call_method_async(p->bus, NULL, BLUEZ, p->adapter_path,
		    "org.bluez.LEAdvertisingManager1", "UnregisterAdvertisement", NULL, NULL, "o",
		    p->adv_path);
	sd_bus_slot_unref(p->setup_call);
	sd_bus_slot_unref(p->adv_call);
	sd_bus_slot_unref(p->m_owner);
	sd_bus_slot_unref(p->m_props);
	sd_bus_slot_unref(p->m_removed);
	sd_bus_slot_unref(p->vt_svc);
	sd_bus_slot_unref(p->vt_wr);
	sd_bus_slot_unref(p->vt_nt);
	sd_bus_slot_unref(p->vt_psm);
	sd_bus_slot_unref(p->vt_adv);
	sd_bus_slot_unref(p->vt_agent);
	sd_bus_slot_unref(p->objmgr);
	if (p->be)
		busev_rearm(p->be);
	if (p->listen_ev)
		event_free(p->listen_ev);
	if (p->listen_fd >= 0)
		close(p->listen_fd);
	if (p->retry_ev)
		event_free(p->retry_ev);
	if (p->gatt) {
		ble_link_orphan(p->gatt);
		transport_free(ble_link_transport(p->gatt));
	}
	if (p->l2cap) {
		ble_link_orphan(p->l2cap);
		transport_free(ble_link_transport(p->l2cap));
	}
	free(p->central_path);
	free(p->adapter_path);
	free(p->name);
	free(p->app_path);
	free(p->svc_path);
	free(p->wr_path);
	free(p->nt_path);
	free(p->psm_path);
	free(p->adv_path);
	free(p->agent_path);
	free(p);
	return NULL;
}
