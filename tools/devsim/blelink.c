/* blelink: a simulated device's BLE peripheral (see blelink.h). The peripheral offers two
 * transports, GATT and (with a PSM) L2CAP; the gateway picks one per connection, and the
 * device answers on the one it last heard from. */
#include "blelink.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "ble.h"

/* After losing the system bus, try again this often. */
#define BLELINK_RETRY_S 2
/* A disconnect we asked for that bluetoothd never carries out stops being waited for. */
#define BLELINK_DROP_MS 5000

struct blelink {
	struct event_base *base;
	char *adapter, *name;
	uint16_t psm;
	blelink_cb cb;
	void *arg;

	sd_bus *bus;
	struct busev *be;
	struct ble_periph *p;
	struct transport *active; /* the link the device talks on; NULL while down */
	bool dropping;            /* blelink_disconnect(): ignore the old connection */
	struct event *retry, *drop_timer;
	char label[64];
};

static void blelink_transport_cb(struct transport *t, enum transport_event ev, const uint8_t *msg,
    size_t len, int err, void *arg);

static struct transport *
blelink_other(struct blelink *b, struct transport *t)
{
	struct transport *g = ble_periph_gatt(b->p), *l = ble_periph_l2cap(b->p);

	return t == g ? l : g;
}

static void
blelink_set_label(struct blelink *b)
{
	if (b->active && transport_kind(b->active) == TRANSPORT_KIND_BLE_L2CAP)
		snprintf(b->label, sizeof(b->label), "ble %s (L2CAP PSM %u)", b->adapter, b->psm);
	else if (b->active)
		snprintf(b->label, sizeof(b->label), "ble %s (GATT)", b->adapter);
	else
		snprintf(b->label, sizeof(b->label), "ble %s", b->adapter);
}

static void
blelink_up(struct blelink *b, struct transport *t)
{
	b->active = t;
	blelink_set_label(b);
	b->cb(LINK_EV_UP, NULL, 0, 0, transport_mtu(t), b->arg);
}

static void
blelink_down(struct blelink *b, int err)
{
	b->active = NULL;
	blelink_set_label(b);
	b->cb(LINK_EV_DOWN, NULL, 0, err, 0, b->arg);
}

static void
blelink_transport_cb(struct transport *t, enum transport_event ev, const uint8_t *msg, size_t len,
    int err, void *arg)
{
	struct blelink *b = arg;
	struct transport *o = blelink_other(b, t);

	switch (ev) {
	case TRANSPORT_EV_CONNECTED:
		if (!b->dropping && !b->active)
			blelink_up(b, t);
		break;
	case TRANSPORT_EV_MESSAGE:
		if (b->dropping)
			break;
		if (!b->active)
			blelink_up(b, t);
		b->active = t; /* answer where the gateway speaks */
		blelink_set_label(b);
		b->cb(LINK_EV_PACKET, msg, len, 0, 0, b->arg);
		break;
	case TRANSPORT_EV_BAD_FRAME:
	case TRANSPORT_EV_WRITABLE:
		break;
	case TRANSPORT_EV_DISCONNECTED:
		if (b->dropping) {
			if (!o || !transport_connected(o)) {
				b->dropping = false; /* the old connection is gone */
				evtimer_del(b->drop_timer);
			}
			break;
		}
		if (t != b->active)
			break;
		if (o && transport_connected(o)) {
			b->active = o;
			blelink_set_label(b);
		} else {
			blelink_down(b, err);
		}
		break;
	}
}

/* The disconnect we asked for did not happen: talk on whatever is still connected. */
static void
blelink_drop_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct blelink *b = arg;
	struct transport *g = ble_periph_gatt(b->p), *l = ble_periph_l2cap(b->p);

	(void)fd;
	(void)what;
	b->dropping = false;
	if (l && transport_connected(l))
		blelink_up(b, l);
	else if (transport_connected(g))
		blelink_up(b, g);
}

static void blelink_bus_lost(struct busev *be, int err, void *arg);

static void
blelink_close(struct blelink *b)
{
	b->p = ble_periph_free(b->p);
	if (b->bus)
		sd_bus_flush(b->bus); /* the unregistrations */
	b->be = busev_free(b->be);
	b->bus = sd_bus_flush_close_unref(b->bus);
}

/* Connects to the system bus and registers the peripheral. */
static int
blelink_open(struct blelink *b, char *err, size_t errlen)
{
	struct ble_periph_config pc = {
	    .adapter = b->adapter,
	    .name = b->name,
	    .psm = b->psm,
	    .advertise = true,
	    .app_path = "/org/otagw/devsim",
	};
	const char *what = "cannot connect to the system bus";
	int r;

	r = sd_bus_open_system(&b->bus);
	if (r >= 0) {
		what = "cannot watch the system bus";
		r = busev_new(b->base, b->bus, blelink_bus_lost, b, &b->be);
	}
	if (r >= 0) {
		what = "cannot set up the BLE peripheral";
		r = ble_periph_new(b->base, b->be, &pc, &b->p);
	}
	if (r < 0) {
		snprintf(err, errlen, "%s: %s%s", what, strerror(-r),
		    r == -EADDRINUSE ? " (another program listens on that PSM)" : "");
		blelink_close(b);
		return r;
	}
	transport_set_callback(ble_periph_gatt(b->p), blelink_transport_cb, b, NULL);
	if (ble_periph_l2cap(b->p))
		transport_set_callback(ble_periph_l2cap(b->p), blelink_transport_cb, b, NULL);
	return 0;
}

static void
blelink_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct blelink *b = arg;
	char err[256];

	(void)fd;
	(void)what;
	if (blelink_open(b, err, sizeof(err)) < 0)
		event_add(b->retry, &(struct timeval){BLELINK_RETRY_S, 0});
}

/* dbus-daemon went away: everything registered with bluetoothd is gone with it. */
static void
blelink_bus_lost(struct busev *be, int err, void *arg)
{
	struct blelink *b = arg;

	(void)be;
	b->dropping = false;
	evtimer_del(b->drop_timer);
	blelink_close(b);
	if (b->active)
		blelink_down(b, err);
	event_add(b->retry, &(struct timeval){BLELINK_RETRY_S, 0});
}

int
blelink_new(struct event_base *base, const char *adapter, const char *name, uint16_t psm,
    blelink_cb cb, void *arg, struct blelink **out, char *err, size_t errlen)
{
	struct blelink *b = calloc(1, sizeof(*b));
	int r;

	if (!b) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	b->base = base;
	b->psm = psm;
	b->cb = cb;
	b->arg = arg;
	b->adapter = strdup(adapter);
	b->name = strdup(name);
	b->retry = evtimer_new(base, blelink_retry_cb, b);
	b->drop_timer = evtimer_new(base, blelink_drop_timeout, b);
	if (!b->adapter || !b->name || !b->retry || !b->drop_timer) {
		snprintf(err, errlen, "out of memory");
		blelink_free(b);
		return -ENOMEM;
	}
	blelink_set_label(b);
	r = blelink_open(b, err, errlen);
	if (r < 0) {
		blelink_free(b);
		return r;
	}
	*out = b;
	return 0;
}

int
blelink_send(struct blelink *b, const uint8_t *data, size_t n)
{
	int r;

	if (!b->active)
		return -ENOTCONN;
	r = transport_send(b->active, data, n);
	return r == -EAGAIN ? -ENOBUFS : r;
}

bool
blelink_connected(const struct blelink *b)
{
	return b->p && (b->active || ble_periph_connected(b->p));
}

size_t
blelink_mtu(const struct blelink *b)
{
	return b->active ? transport_mtu(b->active) : 0;
}

void
blelink_disconnect(struct blelink *b)
{
	struct transport *g, *l;

	if (!b->p)
		return;
	g = ble_periph_gatt(b->p);
	l = ble_periph_l2cap(b->p);
	b->active = NULL;
	blelink_set_label(b);
	if (transport_connected(g) || (l && transport_connected(l))) {
		b->dropping = true;
		event_add(b->drop_timer, &(struct timeval){BLELINK_DROP_MS / 1000,
					     (suseconds_t)(BLELINK_DROP_MS % 1000) * 1000});
	}
	(void)ble_periph_disconnect(b->p);
}

const char *
blelink_name(const struct blelink *b)
{
	return b->label;
}

void
blelink_free(struct blelink *b)
{
	if (!b)
		return;
	blelink_close(b);
	if (b->retry)
		event_free(b->retry);
	if (b->drop_timer)
		event_free(b->drop_timer);
	free(b->adapter);
	free(b->name);
	free(b);
}
