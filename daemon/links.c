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

#include <event2/dns.h>
#include <event2/event.h>

#include "daemon.h"
#include "frame.h"
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

struct links {
	struct event_base *base;
	struct sessions *m;
	struct evdns_base *dns;
	uint32_t session_memory;
	TAILQ_HEAD(, link) list;
	links_change_fn cb;
	void *cb_arg;
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
	    .address = l->address,
	    .up = l->up,
	    .last_error = l->last_error,
	    .connections = l->connections,
	};
}

static void
link_changed(struct link *l, bool removed)
{
	struct link_info info;

	if (l->ls->cb == NULL)
		return;
	link_info_of(l, &info);
	l->ls->cb(&info, removed, l->ls->cb_arg);
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
	TAILQ_FOREACH(c, &cfg->links, entry)
	{
		r = links_add(ls, c, false);
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
	return ret;
}

void
links_free(struct links *ls, const char *reason)
{
	struct link *l;

	if (ls == NULL)
		return;
	while ((l = TAILQ_FIRST(&ls->list)) != NULL) {
		TAILQ_REMOVE(&ls->list, l, entry);
		link_free(l, reason);
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
	return 0;
}

void
links_set_change_cb(struct links *ls, links_change_fn cb, void *arg)
{
	ls->cb = cb;
	ls->cb_arg = arg;
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
