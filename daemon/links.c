/* The links module (see links.h): one struct link per config section with the transport(s) and
 * the sessions on it, compared setting by setting on reload so an unchanged link is never
 * touched. */
#include "links.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/dns.h>
#include <event2/event.h>

#ifdef OTAGW_HAVE_BLE
#include "ble.h"
#include "busev.h"
#include "clock.h"
#endif
#include "daemon.h"
#include "frame.h"
#include "ident.h"
#include "log.h"
#include "session.h"
#include "tcp.h"
#include "transport.h"
#include "uart.h"

/* A link that failed to open after a reload is retried this often (doubling). */
#define LINKS_RETRY_MIN_S 1u
#define LINKS_RETRY_MAX_S 60u
#define LINKS_ADDR_MAX    (PATH_MAX + 16)

struct link;

/* An accepted connection and its session. */
struct link_conn {
	TAILQ_ENTRY(link_conn) entry;
	struct link *l;
	struct session *s;
};

struct link {
	TAILQ_ENTRY(link) entry;
	struct links *ls;
	char name[CONFIG_LINK_NAME_MAX + 1];
	enum config_link_kind kind;
	/* the settings it runs with */
	char *target; /* device path, host or socket path */
	uint16_t port;
	uint32_t baud;
	enum config_flow_control flow;
	bool listen;
	uint32_t max_frame;
	uint32_t max_connections;
	mode_t mode;
	char dial[LINKS_ADDR_MAX];    /* what the transport takes: "127.0.0.1:7000", a path */
	char address[LINKS_ADDR_MAX]; /* what D-Bus shows */

	struct tcp_listener *listener;
	struct session *session; /* uart and connect-out */
	TAILQ_HEAD(, link_conn) conns;
	unsigned connections;
	bool up;
	char last_error[LINKS_ADDR_MAX + 128];
	struct event *retry;
	unsigned backoff_s;
	bool seen; /* reload: still in the configuration */
};

/* Someone told about link changes (links_subscribe()). */
struct links_sub {
	LIST_ENTRY(links_sub) entry;
	int id;
	links_change_fn cb;
	void *arg;
};

struct links {
	struct event_base *base;
	struct sessions *m;
	struct evdns_base *dns;
	uint32_t session_memory;
	TAILQ_HEAD(, link) list;
	LIST_HEAD(, links_sub) subs;
	int next_sub;
	struct link_ble *ble; /* [ble], when enabled */
};

static int link_open(struct link *l);

static void
link_info_of(struct link *l, struct link_info *out)
{
	struct transport *t = l->session != NULL ? session_transport(l->session) : NULL;
	int err = 0;

	if (!l->up && t != NULL) {
		err = l->kind == CONFIG_LINK_UART ? uart_last_error(t) : tcp_last_error(t);
		if (err != 0)
			snprintf(l->last_error, sizeof(l->last_error), "%s: %s", l->target,
			    strerror(-err));
	}
	if (l->up)
		l->last_error[0] = '\0';
	*out = (struct link_info){
	    .name = l->name,
	    .kind = l->kind,
	    .kind_name = config_link_kind_name(l->kind),
	    .address = l->address,
	    .up = l->up,
	    .last_error = l->last_error,
	    .connections = l->connections,
	};
}

/* Tells every subscriber; one may unsubscribe itself from its callback. */
static void
links_tell(struct links *ls, const struct link_info *info, bool removed)
{
	struct links_sub *s, *next;

	for (s = LIST_FIRST(&ls->subs); s != NULL; s = next) {
		next = LIST_NEXT(s, entry);
		s->cb(info, removed, s->arg);
	}
}

static void
link_changed(struct link *l, bool removed)
{
	struct link_info info;

	link_info_of(l, &info);
	links_tell(l->ls, &info, removed);
}

/* --- sessions on the link --- */

static void
link_session_state(struct session *s, bool up, int err, void *arg)
{
	struct link *l = arg;

	(void)s;
	if (up == l->up)
		return;
	l->up = up;
	l->connections = up ? 1 : 0;
	if (up) {
		if (l->kind == CONFIG_LINK_UART)
			log_info("Link %s: %s open at %u baud%s", l->name, l->target, l->baud,
			    l->flow == CONFIG_FLOW_CONTROL_RTSCTS ? " with RTS/CTS" : "");
		else
			log_info("Link %s: connected to %s", l->name, l->dial);
	} else {
		snprintf(l->last_error, sizeof(l->last_error), "%s: %s", l->target,
		    err != 0 ? strerror(-err) : "closed by the peer");
		log_notice("Link %s: %s; %s", l->name, l->last_error,
		    l->kind == CONFIG_LINK_UART ? "reopening it when it is back" : "reconnecting");
	}
	link_changed(l, false);
}

static void
link_conn_closed(struct session *s, void *arg)
{
	struct link_conn *c = arg;
	struct link *l = c->l;

	TAILQ_REMOVE(&l->conns, c, entry);
	l->connections--;
	session_free(s, "disconnected");
	free(c);
	link_changed(l, false);
}

static void
link_accept_cb(struct tcp_listener *listener, struct transport *t, int err, void *arg)
{
	struct link *l = arg;
	struct session_owner owner = {.closed = link_conn_closed};
	struct session_link sl = {.name = l->name, .solicit = false};
	const char *name, *colon;
	struct link_conn *c;

	(void)listener;
	if (t == NULL) {
		if (err == -EUSERS)
			log_warn("Link %s: refused a connection: %u devices are connected "
				 "(max_connections)",
			    l->name, l->max_connections);
		else
			log_warn_errno(
			    err, "Link %s: cannot accept connections for a second", l->name);
		return;
	}
	/* "tcp:192.0.2.7:51234" shows as "192.0.2.7:51234" */
	name = transport_name(t);
	colon = strchr(name, ':');
	sl.address = colon != NULL ? colon + 1 : name;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		transport_free(t);
		log_err("Link %s: out of memory, dropping a connection", l->name);
		return;
	}
	c->l = l;
	owner.arg = c;
	if (session_new(l->ls->m, t, &sl, &owner, &c->s) < 0) {
		transport_free(t);
		free(c);
		log_err("Link %s: out of memory, dropping a connection", l->name);
		return;
	}
	TAILQ_INSERT_TAIL(&l->conns, c, entry);
	l->connections++;
	log_debug("Link %s: connection from %s", l->name, sl.address);
	link_changed(l, false);
}

/* --- opening and closing --- */

static void
link_close(struct link *l, const char *reason)
{
	struct link_conn *c;

	if (l->retry != NULL)
		evtimer_del(l->retry);
	while ((c = TAILQ_FIRST(&l->conns)) != NULL) {
		TAILQ_REMOVE(&l->conns, c, entry);
		session_free(c->s, reason);
		free(c);
	}
	session_free(l->session, reason);
	l->session = NULL;
	tcp_listener_free(l->listener);
	l->listener = NULL;
	l->up = false;
	l->connections = 0;
}

static void
link_free(struct link *l, const char *reason)
{
	link_close(l, reason);
	if (l->retry != NULL)
		event_free(l->retry);
	free(l->target);
	free(l);
}

static void
link_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct link *l = arg;
	struct timeval tv;

	(void)fd;
	(void)what;
	if (link_open(l) == 0) {
		log_info("Link %s: opened at last", l->name);
		l->backoff_s = 0;
		link_changed(l, false);
		return;
	}
	l->backoff_s = l->backoff_s == 0 ? LINKS_RETRY_MIN_S : l->backoff_s * 2;
	if (l->backoff_s > LINKS_RETRY_MAX_S)
		l->backoff_s = LINKS_RETRY_MAX_S;
	tv = (struct timeval){.tv_sec = (time_t)l->backoff_s};
	evtimer_add(l->retry, &tv);
}

static void
link_stream_options(const struct link *l, struct stream_options *o)
{
	size_t frame = FRAME_ENCODED_MAX((size_t)l->max_frame);
	size_t budget = l->ls->session_memory / 4;

	memset(o, 0, sizeof(*o));
	o->max_msg = l->max_frame;
	/* The output queue is part of a session's memory (session.h): at most a quarter of
	 * session_memory, never below one page. */
	if (budget < 2 * frame)
		o->high_water = budget > 4096 ? budget : 4096;
}

/* Opens the link's transport or listener. Returns 0, or a negative errno with last_error
 * set. */
static int
link_open(struct link *l)
{
	struct links *ls = l->ls;
	struct session_owner owner = {.link_state = link_session_state, .arg = l};
	struct session_link sl = {.name = l->name, .address = l->target, .solicit = true};
	struct transport *t = NULL;
	struct uart_options uo;
	struct tcp_options to;
	enum transport_kind kind =
	    l->kind == CONFIG_LINK_TCP ? TRANSPORT_KIND_TCP : TRANSPORT_KIND_UNIX;
	int r;

	if (l->kind == CONFIG_LINK_UART) {
		memset(&uo, 0, sizeof(uo));
		uo.baud = l->baud;
		uo.rtscts = l->flow == CONFIG_FLOW_CONTROL_RTSCTS;
		link_stream_options(l, &uo.stream);
		r = uart_new(ls->base, l->target, &uo, &t);
	} else {
		memset(&to, 0, sizeof(to));
		link_stream_options(l, &to.stream);
		to.max_connections = l->max_connections;
		to.mode = l->mode;
		if (l->listen) {
			r = tcp_listener_new(
			    ls->base, kind, l->dial, &to, link_accept_cb, l, &l->listener);
			if (r == 0) {
				l->up = true;
				log_info("Link %s: listening on %s", l->name,
				    tcp_listener_name(l->listener));
				return 0;
			}
		} else {
			if (l->kind == CONFIG_LINK_TCP && ls->dns == NULL) {
				ls->dns =
				    evdns_base_new(ls->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
				if (ls->dns == NULL)
					log_warn("Link %s: cannot read the resolver configuration; "
						 "only numeric addresses will work",
					    l->name);
			}
			to.dns = ls->dns;
			r = tcp_connect_new(ls->base, kind, l->dial, &to, &t);
		}
	}
	if (r < 0) {
		const char *hint = "";

		switch (r) {
		case -EBUSY:
			hint = " (another program holds it)";
			break;
		case -EACCES:
			hint = " (add otagwd's user to the device's group, or fix the permissions)";
			break;
		case -EADDRINUSE:
			hint = " (another process listens there)";
			break;
		case -EINVAL:
			hint = l->listen ? " (listen takes a numeric address)" : "";
			break;
		case -ENOTTY:
			hint = " (not a serial device)";
			break;
		default:
			break;
		}
		snprintf(
		    l->last_error, sizeof(l->last_error), "%s: %s%s", l->dial, strerror(-r), hint);
		return r;
	}
	if (session_new(ls->m, t, &sl, &owner, &l->session) < 0) {
		transport_free(t);
		snprintf(l->last_error, sizeof(l->last_error), "%s: out of memory", l->dial);
		return -ENOMEM;
	}
	snprintf(l->last_error, sizeof(l->last_error), "%s: not connected yet", l->target);
	return 0;
}

/* --- the [ble] link: a BLE central on a system bus connection of its own --- */

#ifdef OTAGW_HAVE_BLE
/* A device whose session is done is let go this long after its last message, so the message
 * leaves before the link does (an L2CAP channel drops SDUs still queued when it closes). */
#define LINKS_BLE_GRACE_MS 1000u
/* A connected device whose session stays idle this long (it never said HELLO, or did not
 * reboot after an install) is let go, so it does not hold a connection slot forever. */
#define LINKS_BLE_IDLE_MS 60000u
/* A device whose link dropped and does not come back within this is given up (the central
 * holds it off; it is served again when it is seen later). */
#define LINKS_BLE_LINGER_MS 120000u
/* How long a device that was told to come back later is left alone, at most. */
#define LINKS_BLE_HOLDOFF_MAX_S 86400u

struct link_ble;

/* A device the central handed out, and its session. */
struct link_ble_dev {
	TAILQ_ENTRY(link_ble_dev) entry;
	struct link_ble *b;
	struct session *s;
	char address[18];
	char serial[IDENT_SERIAL_MAX + 1]; /* the device's, once it said HELLO (for logs) */
	bool up;
	uint64_t down_since_ms;
	uint64_t idle_since_ms; /* 0: busy, or not looked at yet */
	uint64_t done_at_ms;    /* 0: not done */
	uint32_t come_back_s;
};

struct link_ble {
	struct links *ls;
	struct config_ble cfg; /* name_prefix owned */
	sd_bus *bus;
	struct busev *be;
	struct ble_central *c;
	struct event *retry, *tick;
	unsigned backoff_s;
	TAILQ_HEAD(, link_ble_dev) devs;
	unsigned connections;
	char address[24];
	char last_error[256];
	/* the adapter state last logged */
	bool logged, was_bluez, was_adapter, was_powered;
};

static void
link_ble_info(struct link_ble *b, struct link_info *out)
{
	struct ble_central_stats st = {0};
	bool up = false;

	if (b->c != NULL) {
		ble_central_get_stats(b->c, &st);
		up = st.powered;
		if (!st.bluez)
			snprintf(b->last_error, sizeof(b->last_error),
			    "bluetoothd is not running (org.bluez is not on the system bus)");
		else if (!st.adapter)
			snprintf(b->last_error, sizeof(b->last_error),
			    "No adapter %s in bluetoothd", b->cfg.adapter);
		else if (!st.powered)
			snprintf(b->last_error, sizeof(b->last_error),
			    "Adapter %s is powered off%s%s", b->cfg.adapter,
			    st.adapter_error[0] != '\0' ? ": " : "", st.adapter_error);
		else
			b->last_error[0] = '\0';
	}
	*out = (struct link_info){
	    .name = "ble",
	    .kind = CONFIG_LINK_UART, /* not a config link: kind_name says what it is */
	    .kind_name = "ble",
	    .address = b->address,
	    .up = up,
	    .last_error = b->last_error,
	    .connections = b->connections,
	};
}

static void
link_ble_changed(struct link_ble *b, bool removed)
{
	struct link_info info;

	link_ble_info(b, &info);
	links_tell(b->ls, &info, removed);
}

/* Frees the device's session, which frees its transport: the central disconnects the device
 * and leaves it alone for holdoff_s (0: the central's default), so others get a turn. */
static void
link_ble_release(struct link_ble_dev *bd, unsigned holdoff_s, const char *why)
{
	struct link_ble *b = bd->b;
	struct transport *t = session_transport(bd->s);
	const char *serial = bd->serial[0] != '\0' ? bd->serial : NULL;

	if (serial != NULL)
		dev_debug(serial, "Link ble: letting %s go (%s), leaving it alone for %u s",
		    bd->address, why, holdoff_s);
	else
		log_debug("Link ble: letting %s go (%s)", bd->address, why);
	if (holdoff_s != 0 && t != NULL)
		(void)ble_central_set_holdoff(b->c, t, holdoff_s);
	TAILQ_REMOVE(&b->devs, bd, entry);
	if (bd->up)
		b->connections--;
	session_free(bd->s, why);
	free(bd);
	link_ble_changed(b, false);
}

/* Once a second: lets go of devices that are done, idle too long, or gone too long. */
static void
link_ble_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct link_ble *b = arg;
	struct link_ble_dev *bd, *next;
	uint64_t now = clock_mono_ms();
	unsigned holdoff;

	(void)fd;
	(void)what;
	for (bd = TAILQ_FIRST(&b->devs); bd != NULL; bd = next) {
		next = TAILQ_NEXT(bd, entry);
		holdoff = bd->come_back_s < LINKS_BLE_HOLDOFF_MAX_S ? bd->come_back_s
								    : LINKS_BLE_HOLDOFF_MAX_S;
		if (!bd->up) {
			/* A device that was done and went away (it does not wait for us to
			 * disconnect it) is let go at once. */
			if (bd->done_at_ms != 0 && session_idle(bd->s))
				link_ble_release(bd, holdoff, "done, disconnected");
			else if (now - bd->down_since_ms >= LINKS_BLE_LINGER_MS)
				link_ble_release(bd, 0, "did not come back");
			continue;
		}
		if (!session_idle(bd->s)) {
			bd->idle_since_ms = 0;
			continue;
		}
		if (bd->idle_since_ms == 0)
			bd->idle_since_ms = now;
		if (bd->done_at_ms != 0 && now - bd->done_at_ms >= LINKS_BLE_GRACE_MS) {
			link_ble_release(bd, holdoff, "done");
		} else if (now - bd->idle_since_ms >= LINKS_BLE_IDLE_MS) {
			link_ble_release(bd, 0, "idle");
		}
	}
}

static void
link_ble_session_state(struct session *s, bool up, int err, void *arg)
{
	struct link_ble_dev *bd = arg;
	struct link_ble *b = bd->b;
	const char *serial = session_serial(s); /* NULL once down: the session unbinds first */

	if (serial != NULL)
		snprintf(bd->serial, sizeof(bd->serial), "%s", serial);
	serial = bd->serial[0] != '\0' ? bd->serial : NULL;
	if (up == bd->up)
		return;
	bd->up = up;
	bd->idle_since_ms = 0;
	if (up) {
		b->connections++;
		log_debug("Link ble: %s connected again", bd->address);
	} else {
		b->connections--;
		bd->down_since_ms = clock_mono_ms();
		if (serial != NULL)
			dev_info(serial, "Link ble: %s disconnected (%s); reconnecting",
			    bd->address, err != 0 ? strerror(-err) : "by the device");
		else
			log_debug("Link ble: %s disconnected (%s); reconnecting", bd->address,
			    err != 0 ? strerror(-err) : "by the device");
	}
	link_ble_changed(b, false);
}

static void
link_ble_session_done(struct session *s, uint32_t come_back_s, void *arg)
{
	struct link_ble_dev *bd = arg;
	const char *serial = session_serial(s);

	if (serial != NULL)
		snprintf(bd->serial, sizeof(bd->serial), "%s", serial);
	bd->done_at_ms = clock_mono_ms();
	bd->come_back_s = come_back_s;
}

/* The central connected a device: it becomes a session like any other link's. */
static void
link_ble_device_cb(
    struct ble_central *c, struct transport *t, const char *address, const char *name, void *arg)
{
	struct link_ble *b = arg;
	struct session_owner owner = {
	    .link_state = link_ble_session_state, .done = link_ble_session_done};
	struct session_link sl = {.name = "ble", .address = address, .solicit = true};
	struct link_ble_dev *bd = calloc(1, sizeof(*bd));

	(void)c;
	if (bd == NULL) {
		transport_free(t);
		log_err("Link ble: out of memory, dropping %s", address);
		return;
	}
	bd->b = b;
	snprintf(bd->address, sizeof(bd->address), "%s", address);
	owner.arg = bd;
	if (session_new(b->ls->m, t, &sl, &owner, &bd->s) < 0) {
		transport_free(t);
		free(bd);
		log_err("Link ble: out of memory, dropping %s", address);
		return;
	}
	/* Up already; the session hears CONNECTED from the loop and solicits a HELLO. */
	bd->up = true;
	TAILQ_INSERT_TAIL(&b->devs, bd, entry);
	b->connections++;
	log_debug("Link ble: connected to %s%s%s%s over %s, messages up to %zu bytes", address,
	    name != NULL ? " (" : "", name != NULL ? name : "", name != NULL ? ")" : "",
	    transport_kind(t) == TRANSPORT_KIND_BLE_L2CAP ? "L2CAP" : "GATT", transport_mtu(t));
	link_ble_changed(b, false);
}

/* The adapter's state changed: log what the operator should know, once per change. */
static void
link_ble_central_changed(struct ble_central *c, void *arg)
{
	struct link_ble *b = arg;
	struct ble_central_stats st;

	ble_central_get_stats(c, &st);
	if (!b->logged || st.bluez != b->was_bluez || st.adapter != b->was_adapter ||
	    st.powered != b->was_powered) {
		if (!st.bluez)
			log_warn("Link ble: bluetoothd is not running; waiting for it (systemctl "
				 "start bluetooth)");
		else if (!st.adapter)
			log_warn("Link ble: bluetoothd has no adapter %s; waiting for it (see "
				 "bluetoothctl list)",
			    b->cfg.adapter);
		else if (!st.powered)
			log_notice(
			    "Link ble: adapter %s is powered off; powering it on", b->cfg.adapter);
		else
			log_info("Link ble: adapter %s is up; looking for devices", b->cfg.adapter);
		b->logged = true;
		b->was_bluez = st.bluez;
		b->was_adapter = st.adapter;
		b->was_powered = st.powered;
	}
	link_ble_changed(b, false);
}

static void
link_ble_debug(const char *line, void *arg)
{
	(void)arg;
	log_debug("Link ble: %s", line);
}

/* Ends every device's session, the central and the bus connection. */
static void
link_ble_close(struct link_ble *b, const char *reason)
{
	struct link_ble_dev *bd;

	while ((bd = TAILQ_FIRST(&b->devs)) != NULL) {
		TAILQ_REMOVE(&b->devs, bd, entry);
		session_free(bd->s, reason);
		free(bd);
	}
	b->connections = 0;
	b->c = ble_central_free(b->c);
	if (b->bus != NULL)
		sd_bus_flush(b->bus); /* let the Disconnect and StopDiscovery calls out */
	b->be = busev_free(b->be);
	b->bus = sd_bus_flush_close_unref(b->bus);
	b->logged = false;
}

static int link_ble_open(struct link_ble *b);

static void
link_ble_retry_later(struct link_ble *b)
{
	b->backoff_s = b->backoff_s == 0 ? LINKS_RETRY_MIN_S : b->backoff_s * 2;
	if (b->backoff_s > LINKS_RETRY_MAX_S)
		b->backoff_s = LINKS_RETRY_MAX_S;
	evtimer_add(b->retry, &(struct timeval){.tv_sec = (time_t)b->backoff_s});
}

static void
link_ble_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct link_ble *b = arg;

	(void)fd;
	(void)what;
	if (link_ble_open(b) == 0) {
		log_info("Link ble: connected to the system bus again");
		b->backoff_s = 0;
	} else {
		link_ble_retry_later(b);
	}
	link_ble_changed(b, false);
}

/* The system bus went away (dbus-daemon restarted): every device is gone with bluetoothd's
 * view of it; start over on a new connection after a backoff. */
static void
link_ble_bus_lost(struct busev *be, int err, void *arg)
{
	struct link_ble *b = arg;

	(void)be;
	log_warn_errno(err, "Link ble: lost the system bus; reconnecting");
	link_ble_close(b, "lost the system bus");
	snprintf(b->last_error, sizeof(b->last_error), "Lost the system bus: %s", strerror(-err));
	link_ble_retry_later(b);
	link_ble_changed(b, false);
}

static enum ble_prefer
link_ble_prefer(enum config_ble_transport t)
{
	switch (t) {
	case CONFIG_BLE_TRANSPORT_AUTO:
		return BLE_PREFER_L2CAP;
	case CONFIG_BLE_TRANSPORT_GATT:
		return BLE_PREFER_GATT;
	case CONFIG_BLE_TRANSPORT_L2CAP:
		return BLE_PREFER_L2CAP_ONLY;
	}
	return BLE_PREFER_GATT;
}

/* Connects to the system bus and starts the central. Returns 0, or a negative errno with
 * last_error set (nothing stays open). */
static int
link_ble_open(struct link_ble *b)
{
	const char *allow[CONFIG_BLE_ALLOW_MAX + 1];
	struct ble_central_config cc = {
	    .adapter = b->cfg.adapter,
	    .allow = b->cfg.n_allow > 0 ? allow : NULL,
	    .name_prefix = b->cfg.name_prefix,
	    .max_connections = b->cfg.max_connections,
	    .prefer = link_ble_prefer(b->cfg.transport),
	    .psm = b->cfg.l2cap_psm,
	    .scan_interval_s = b->cfg.scan_interval_s,
	    .changed = link_ble_central_changed,
	    .debug = link_ble_debug,
	};
	const char *what = "cannot connect to the system bus";
	size_t i;
	int r;

	for (i = 0; i < b->cfg.n_allow; i++)
		allow[i] = b->cfg.allow[i];
	allow[i] = NULL;
	r = sd_bus_open_system(&b->bus);
	if (r >= 0) {
		what = "cannot watch the system bus";
		r = busev_new(b->ls->base, b->bus, link_ble_bus_lost, b, &b->be);
	}
	if (r >= 0) {
		what = "cannot start the BLE central";
		r = ble_central_new(b->ls->base, b->be, &cc, link_ble_device_cb, b, &b->c);
	}
	if (r < 0) {
		snprintf(b->last_error, sizeof(b->last_error), "%s: %s", what, strerror(-r));
		link_ble_close(b, NULL);
		return r;
	}
	snprintf(b->last_error, sizeof(b->last_error), "starting");
	return 0;
}

static void
link_ble_free(struct link_ble *b, const char *reason)
{
	if (b == NULL)
		return;
	link_ble_close(b, reason);
	if (b->retry != NULL)
		event_free(b->retry);
	if (b->tick != NULL)
		event_free(b->tick);
	free(b->cfg.name_prefix);
	free(b);
}

/* Creates and opens the [ble] link. At start a failure is returned; after a reload (retry
 * true) the link stays, down, and is retried. */
static int
link_ble_new(struct links *ls, const struct config_ble *cfg, bool retry, struct link_ble **out)
{
	struct link_ble *b = calloc(1, sizeof(*b));
	int r;

	if (b == NULL)
		return log_err_errno(-ENOMEM, "Link ble");
	b->ls = ls;
	TAILQ_INIT(&b->devs);
	b->cfg = *cfg;
	b->cfg.name_prefix = NULL;
	snprintf(b->address, sizeof(b->address), "%s", cfg->adapter);
	b->retry = evtimer_new(ls->base, link_ble_retry_cb, b);
	b->tick = event_new(ls->base, -1, EV_PERSIST, link_ble_tick_cb, b);
	if (b->retry == NULL || b->tick == NULL ||
	    (cfg->name_prefix != NULL && (b->cfg.name_prefix = strdup(cfg->name_prefix)) == NULL)) {
		link_ble_free(b, NULL);
		return log_err_errno(-ENOMEM, "Link ble");
	}
	evtimer_add(b->tick, &(struct timeval){.tv_sec = 1});
	r = link_ble_open(b);
	if (r < 0 && !retry) {
		log_err("Failed to open link ble: %s", b->last_error);
		link_ble_free(b, NULL);
		return r;
	}
	if (r < 0) {
		log_err("Failed to open link ble: %s; retrying", b->last_error);
		link_ble_retry_later(b);
	}
	*out = b;
	link_ble_changed(b, false);
	return r;
}

/* True if the running [ble] link has exactly cfg's settings. */
static bool
link_ble_same(const struct link_ble *b, const struct config_ble *cfg)
{
	const char *p1 = b->cfg.name_prefix != NULL ? b->cfg.name_prefix : "";
	const char *p2 = cfg->name_prefix != NULL ? cfg->name_prefix : "";
	size_t i;

	if (strcmp(b->cfg.adapter, cfg->adapter) != 0 || b->cfg.transport != cfg->transport ||
	    b->cfg.n_allow != cfg->n_allow || strcmp(p1, p2) != 0 ||
	    (b->cfg.name_prefix == NULL) != (cfg->name_prefix == NULL) ||
	    b->cfg.max_connections != cfg->max_connections ||
	    b->cfg.scan_interval_s != cfg->scan_interval_s || b->cfg.l2cap_psm != cfg->l2cap_psm)
		return false;
	for (i = 0; i < cfg->n_allow; i++)
		if (strcmp(b->cfg.allow[i], cfg->allow[i]) != 0)
			return false;
	return true;
}

/* Applies [ble] from a reload: started, stopped, or re-opened when a setting changed. */
static int
links_ble_reload(struct links *ls, const struct config_ble *cfg)
{
	if (ls->ble != NULL && cfg->enabled && link_ble_same(ls->ble, cfg))
		return 0;
	if (ls->ble != NULL) {
		log_info(cfg->enabled ? "Link ble changed; re-opening it" : "Link ble removed");
		link_ble_changed(ls->ble, true);
		link_ble_free(ls->ble, cfg->enabled ? "link re-opened with new settings"
						    : "link removed from the configuration");
		ls->ble = NULL;
	} else if (cfg->enabled) {
		log_info("Link ble added");
	}
	if (!cfg->enabled)
		return 0;
	return link_ble_new(ls, cfg, true, &ls->ble);
}

#else /* !OTAGW_HAVE_BLE */

struct link_ble;

static int
link_ble_new(struct links *ls, const struct config_ble *cfg, bool retry, struct link_ble **out)
{
	(void)ls;
	(void)cfg;
	(void)retry;
	(void)out;
	log_err("Failed to open link ble: this otagwd was built without Bluetooth support "
		"(OTAGW_BLE=OFF); set enabled = no in [ble]");
	return -EOPNOTSUPP;
}

static int
links_ble_reload(struct links *ls, const struct config_ble *cfg)
{
	struct link_ble *b = NULL;

	return cfg->enabled ? link_ble_new(ls, cfg, true, &b) : 0;
}

static void
link_ble_free(struct link_ble *b, const char *reason)
{
	(void)b;
	(void)reason;
}

static void
link_ble_info(struct link_ble *b, struct link_info *out)
{
	(void)b;
	(void)out;
}

#endif /* OTAGW_HAVE_BLE */

/* A new link object for cfg (not opened). */
static struct link *
link_new(struct links *ls, const struct config_link *cfg)
{
	struct link *l = calloc(1, sizeof(*l));
	const char *target = NULL;

	if (l == NULL)
		return NULL;
	l->ls = ls;
	TAILQ_INIT(&l->conns);
	snprintf(l->name, sizeof(l->name), "%s", cfg->name);
	l->kind = cfg->kind;
	l->max_frame = cfg->max_frame;
	switch (cfg->kind) {
	case CONFIG_LINK_UART:
		target = cfg->uart.device;
		l->baud = cfg->uart.baud;
		l->flow = cfg->uart.flow_control;
		snprintf(l->dial, sizeof(l->dial), "%s", target);
		snprintf(l->address, sizeof(l->address), "%s", target);
		break;
	case CONFIG_LINK_TCP:
		target = cfg->tcp.host;
		l->port = cfg->tcp.port;
		l->listen = cfg->tcp.listen;
		l->max_connections = cfg->tcp.max_connections;
		snprintf(l->dial, sizeof(l->dial),
		    strchr(target, ':') != NULL ? "[%s]:%u" : "%s:%u", target, l->port);
		snprintf(l->address, sizeof(l->address), "%s %.4000s",
		    l->listen ? "listen" : "connect", l->dial);
		break;
	case CONFIG_LINK_UNIX:
		target = cfg->unix_sock.path;
		l->listen = cfg->unix_sock.listen;
		l->mode = cfg->unix_sock.mode;
		l->max_connections = cfg->unix_sock.max_connections;
		snprintf(l->dial, sizeof(l->dial), "%s", target);
		snprintf(l->address, sizeof(l->address), "%s %s", l->listen ? "listen" : "connect",
		    target);
		break;
	}
	l->target = strdup(target != NULL ? target : "");
	l->retry = evtimer_new(ls->base, link_retry_cb, l);
	if (l->target == NULL || l->retry == NULL) {
		free(l->target);
		if (l->retry != NULL)
			event_free(l->retry);
		free(l);
		return NULL;
	}
	return l;
}

/* True if the running link l has exactly cfg's settings. */
static bool
link_same(const struct link *l, const struct config_link *cfg)
{
	if (l->kind != cfg->kind || l->max_frame != cfg->max_frame)
		return false;
	switch (cfg->kind) {
	case CONFIG_LINK_UART:
		return strcmp(l->target, cfg->uart.device) == 0 && l->baud == cfg->uart.baud &&
		       l->flow == cfg->uart.flow_control;
	case CONFIG_LINK_TCP:
		return strcmp(l->target, cfg->tcp.host) == 0 && l->port == cfg->tcp.port &&
		       l->listen == cfg->tcp.listen &&
		       (!l->listen || l->max_connections == cfg->tcp.max_connections);
	case CONFIG_LINK_UNIX:
		return strcmp(l->target, cfg->unix_sock.path) == 0 &&
		       l->listen == cfg->unix_sock.listen &&
		       (!l->listen || (l->max_connections == cfg->unix_sock.max_connections &&
					  l->mode == cfg->unix_sock.mode));
	}
	return false;
}

static struct link *
links_find(struct links *ls, const char *name)
{
	struct link *l;

	TAILQ_FOREACH(l, &ls->list, entry)
	if (strcmp(l->name, name) == 0)
		return l;
	return NULL;
}

/* Creates and opens a link from cfg, appended to the list. At start a failure is returned;
 * after a reload (retry true) the link stays, down, and is retried. */
static int
links_add(struct links *ls, const struct config_link *cfg, bool retry)
{
	struct link *l = link_new(ls, cfg);
	int r;

	if (l == NULL)
		return log_err_errno(-ENOMEM, "Link %s", cfg->name);
	r = link_open(l);
	if (r < 0 && !retry) {
		log_err("Failed to open link %s: %s", l->name, l->last_error);
		link_free(l, NULL);
		return r;
	}
	TAILQ_INSERT_TAIL(&ls->list, l, entry);
	if (r < 0) {
		log_err("Failed to open link %s: %s; retrying", l->name, l->last_error);
		l->backoff_s = LINKS_RETRY_MIN_S;
		evtimer_add(l->retry, &(struct timeval){.tv_sec = LINKS_RETRY_MIN_S});
	}
	link_changed(l, false);
	return r;
}

int
links_new(struct event_base *base, struct sessions *m, const struct config *cfg, struct links **out)
{
	const struct config_link *c;
	struct links *ls = calloc(1, sizeof(*ls));
	int r;

	if (ls == NULL)
		return -ENOMEM;
	ls->base = base;
	ls->m = m;
	ls->session_memory = cfg->general.session_memory;
	TAILQ_INIT(&ls->list);
	LIST_INIT(&ls->subs);
	ls->next_sub = 1;
	TAILQ_FOREACH(c, &cfg->links, entry)
	{
		r = links_add(ls, c, false);
		if (r < 0) {
			links_free(ls, "otagwd could not start");
			return r;
		}
	}
	if (cfg->ble.enabled) {
		r = link_ble_new(ls, &cfg->ble, false, &ls->ble);
		if (r < 0) {
			links_free(ls, "otagwd could not start");
			return r;
		}
	}
	*out = ls;
	return 0;
}

int
links_reload(struct links *ls, const struct config *cfg)
{
	const struct config_link *c;
	struct link *l, *next;
	int r, ret = 0;

	ls->session_memory = cfg->general.session_memory;
	TAILQ_FOREACH(l, &ls->list, entry)
	l->seen = false;
	TAILQ_FOREACH(c, &cfg->links, entry)
	{
		l = links_find(ls, c->name);
		if (l != NULL && link_same(l, c)) {
			l->seen = true;
			continue;
		}
		if (l != NULL) {
			log_info("Link %s changed; re-opening it", l->name);
			TAILQ_REMOVE(&ls->list, l, entry);
			link_changed(l, true);
			link_free(l, "link re-opened with new settings");
		} else {
			log_info("Link %s added", c->name);
		}
		r = links_add(ls, c, true);
		if (r < 0 && ret == 0)
			ret = r;
		l = links_find(ls, c->name);
		if (l != NULL)
			l->seen = true;
	}
	for (l = TAILQ_FIRST(&ls->list); l != NULL; l = next) {
		next = TAILQ_NEXT(l, entry);
		if (l->seen)
			continue;
		log_info("Link %s removed", l->name);
		TAILQ_REMOVE(&ls->list, l, entry);
		link_changed(l, true);
		link_free(l, "link removed from the configuration");
	}
	r = links_ble_reload(ls, &cfg->ble);
	if (r < 0 && ret == 0)
		ret = r;
	return ret;
}

void
links_free(struct links *ls, const char *reason)
{
	struct links_sub *s;
	struct link *l;

	if (ls == NULL)
		return;
	link_ble_free(ls->ble, reason);
	ls->ble = NULL;
	while ((l = TAILQ_FIRST(&ls->list)) != NULL) {
		TAILQ_REMOVE(&ls->list, l, entry);
		link_free(l, reason);
	}
	while ((s = LIST_FIRST(&ls->subs)) != NULL) {
		LIST_REMOVE(s, entry);
		free(s);
	}
	if (ls->dns != NULL)
		evdns_base_free(ls->dns, 1);
	free(ls);
}

int
links_foreach(struct links *ls, int (*cb)(const struct link_info *info, void *arg), void *arg)
{
	struct link_info info;
	struct link *l;
	int r;

	TAILQ_FOREACH(l, &ls->list, entry)
	{
		link_info_of(l, &info);
		if ((r = cb(&info, arg)) != 0)
			return r;
	}
	if (ls->ble != NULL) {
		link_ble_info(ls->ble, &info);
		return cb(&info, arg);
	}
	return 0;
}

int
links_subscribe(struct links *ls, links_change_fn cb, void *arg)
{
	struct links_sub *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return -ENOMEM;
	s->id = ls->next_sub++;
	s->cb = cb;
	s->arg = arg;
	LIST_INSERT_HEAD(&ls->subs, s, entry);
	return s->id;
}

void
links_unsubscribe(struct links *ls, int id)
{
	struct links_sub *s;

	LIST_FOREACH(s, &ls->subs, entry)
	{
		if (s->id == id) {
			LIST_REMOVE(s, entry);
			free(s);
			return;
		}
	}
}

/* --- the daemon module --- */

static int
links_module_start(struct daemon *d)
{
	return links_new(d->base, d->sessions, d->cfg, &d->links);
}

static int
links_module_reload(struct daemon *d, const struct config *old)
{
	(void)old;
	return links_reload(d->links, d->cfg);
}

static void
links_module_stop(struct daemon *d)
{
	sessions_stop(d->sessions);
	links_free(d->links, "otagwd stopped");
	d->links = NULL;
}

const struct daemon_module links_module = {
    .name = "links",
    .start = links_module_start,
    .reload = links_module_reload,
    .stop = links_module_stop,
};
