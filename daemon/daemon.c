/* otagwd's lifecycle (see daemon.h): the module table, signal events, the transactional
 * reload, readiness and shutdown. New parts of the daemon plug in as a struct daemon_module in
 * daemon_modules[] below. */
#include "daemon.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cache.h"
#include "config.h"
#include "dbus.h"
#include "fleet.h"
#include "links.h"
#include "log.h"
#include "notify.h"
#include "session.h"
#include "store.h"

#define DAEMON_STATUS_MAX 256
/* STATUS= lines follow the fleet at most this often (systemd needs no more; a transfer
 * changes state hundreds of times a second). */
#define DAEMON_STATUS_EVERY_MS 1000

static void
daemon_apply_log_level(const struct daemon *d)
{
	/* -v wins over the file, so a debugging session survives a reload. */
	log_set_level(d->verbose ? LOG_LEVEL_DEBUG : d->cfg->general.log_level);
}

static int
daemon_log_start(struct daemon *d)
{
	daemon_apply_log_level(d);
	return 0;
}

static int
daemon_log_reload(struct daemon *d, const struct config *old)
{
	(void)old;
	daemon_apply_log_level(d);
	return 0;
}

/* The log level is a module like the others so it is applied first, before any other module
 * logs. */
static const struct daemon_module daemon_log_module = {
    .name = "log",
    .start = daemon_log_start,
    .reload = daemon_log_reload,
};

static void daemon_status_update(struct daemon *d);

static void
daemon_status_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	daemon_status_update(arg);
}

/* A device changed: the STATUS= line follows within DAEMON_STATUS_EVERY_MS. */
static void
daemon_status_changed(const struct fleet_device *dev, unsigned fields, void *arg)
{
	struct daemon *d = arg;
	struct timeval tv = {0, (suseconds_t)DAEMON_STATUS_EVERY_MS * 1000};

	(void)dev;
	(void)fields;
	if (d->ready && !evtimer_pending(d->status_timer, NULL))
		evtimer_add(d->status_timer, &tv);
}

static int
daemon_status_start(struct daemon *d)
{
	int r;

	d->status_timer = evtimer_new(d->base, daemon_status_timer_cb, d);
	if (d->status_timer == NULL)
		return log_err_errno(-ENOMEM, "Failed to set up the status line");
	r = fleet_subscribe(d->fleet, daemon_status_changed, d);
	if (r < 0)
		return log_err_errno(r, "Failed to set up the status line");
	d->status_sub = r;
	return 0;
}

static void
daemon_status_stop(struct daemon *d)
{
	if (d->fleet != NULL && d->status_sub > 0)
		fleet_unsubscribe(d->fleet, d->status_sub);
	d->status_sub = 0;
	if (d->status_timer != NULL)
		event_free(d->status_timer);
	d->status_timer = NULL;
}

/* The STATUS= line is a module of its own, last, so it sees every other module running. */
static const struct daemon_module daemon_status_module = {
    .name = "status",
    .start = daemon_status_start,
    .stop = daemon_status_stop,
};

/* In start order (each module uses those before it); stopped in reverse, so the links close
 * (and their sessions record their progress) while the store is still open. The D-Bus service
 * goes after the links. */
static const struct daemon_module *const daemon_modules[] = {
    &daemon_log_module,
    &cache_store_module,
    &cache_upstream_module,
    &sessions_module,
    &links_module,
    &dbus_module,
    &daemon_status_module,
};

#define DAEMON_N_MODULES (sizeof(daemon_modules) / sizeof(daemon_modules[0]))

static void
daemon_log_config(const struct config *cfg)
{
	const struct config_link *l;

	log_debug("Configuration %s: state_dir %s, cache_dir %s, cache_max %llu bytes, "
		  "max_transfers %u, session_memory %u bytes, base_url %s, %zu link(s), BLE %s",
	    cfg->path, cfg->general.state_dir, cfg->general.cache_dir,
	    (unsigned long long)cfg->general.cache_max, cfg->general.max_transfers,
	    cfg->general.session_memory, cfg->memfault.base_url, cfg->n_links,
	    cfg->ble.enabled ? "enabled" : "disabled");
	TAILQ_FOREACH(l, &cfg->links, entry)
	{
		switch (l->kind) {
		case CONFIG_LINK_UART:
			log_debug(
			    "Link %s: uart %s at %u baud", l->name, l->uart.device, l->uart.baud);
			break;
		case CONFIG_LINK_TCP:
			log_debug("Link %s: tcp %s %s port %u", l->name,
			    l->tcp.listen ? "listen on" : "connect to", l->tcp.host, l->tcp.port);
			break;
		case CONFIG_LINK_UNIX:
			log_debug("Link %s: unix %s %s", l->name,
			    l->unix_sock.listen ? "listen on" : "connect to", l->unix_sock.path);
			break;
		}
	}
}

/* Appends a byte count a person reads: "512 KiB", "12 MiB", "3.4 GiB". */
static void
daemon_status_bytes(char *buf, size_t len, uint64_t n)
{
	if (n < (1u << 20))
		snprintf(buf, len, "%llu KiB", (unsigned long long)((n + 1023) >> 10));
	else if (n < (1ull << 30))
		snprintf(buf, len, "%llu MiB", (unsigned long long)((n + (1u << 19)) >> 20));
	else
		snprintf(buf, len, "%.1f GiB", (double)n / (double)(1ull << 30));
}

/* "3 devices (2 connected), 1 transfer at 45 %, 1 queued, 2 downloading, cache 12 MiB" */
static void
daemon_status_running(struct daemon *d, char *buf, size_t len)
{
	struct fleet_counts fc;
	struct sessions_stats ss;
	uint64_t bytes = 0;
	char cache[32];
	size_t n;
	unsigned i;

	if (d->fleet == NULL || d->sessions == NULL || d->store == NULL) {
		snprintf(buf, len, "Running, %zu link%s configured", d->cfg->n_links,
		    d->cfg->n_links == 1 ? "" : "s");
		return;
	}
	fleet_get_counts(d->fleet, &fc);
	sessions_get_stats(d->sessions, &ss);
	store_usage(d->store, &bytes, NULL);
	n = (size_t)snprintf(buf, len, "%u device%s (%u connected), ", fc.devices,
	    fc.devices == 1 ? "" : "s", fc.connected);
	if (n < len && ss.transfers == 0) {
		n += (size_t)snprintf(buf + n, len - n, "no transfers");
	} else if (n < len && ss.transfers > ss.n_pct) {
		n += (size_t)snprintf(buf + n, len - n, "%u transfers, %u %% done overall",
		    ss.transfers,
		    ss.bytes_total ? (unsigned)(ss.bytes_done * 100 / ss.bytes_total) : 0);
	} else if (n < len) {
		n += (size_t)snprintf(
		    buf + n, len - n, "%u transfer%s at ", ss.n_pct, ss.n_pct == 1 ? "" : "s");
		for (i = 0; i < ss.n_pct && n < len; i++)
			n +=
			    (size_t)snprintf(buf + n, len - n, "%s%u %%", i ? ", " : "", ss.pct[i]);
	}
	if (n < len && ss.queued > 0)
		n += (size_t)snprintf(buf + n, len - n, ", %u queued", ss.queued);
	if (n < len && fc.in_state[FLEET_STATE_DOWNLOADING] > 0)
		n += (size_t)snprintf(
		    buf + n, len - n, ", %u downloading", fc.in_state[FLEET_STATE_DOWNLOADING]);
	daemon_status_bytes(cache, sizeof(cache), bytes);
	if (n < len)
		snprintf(buf + n, len - n, ", cache %s", cache);
}

static void
daemon_status_update(struct daemon *d)
{
	char status[DAEMON_STATUS_MAX];

	if (!d->ready || d->stopping)
		return;
	daemon_status_running(d, status, sizeof(status));
	if (strcmp(status, d->status_last) == 0)
		return;
	snprintf(d->status_last, sizeof(d->status_last), "%s", status);
	notify_status(d->notify, "%s", status);
	log_debug("Status: %s", status);
}

enum daemon_state
daemon_get_state(const struct daemon *d)
{
	if (d->stopping)
		return DAEMON_STATE_STOPPING;
	if (d->reloading)
		return DAEMON_STATE_RELOADING;
	return d->ready ? DAEMON_STATE_RUNNING : DAEMON_STATE_STARTING;
}

const char *
daemon_state_name(enum daemon_state state)
{
	switch (state) {
	case DAEMON_STATE_STARTING:
		return "starting";
	case DAEMON_STATE_RUNNING:
		return "running";
	case DAEMON_STATE_RELOADING:
		return "reloading";
	case DAEMON_STATE_STOPPING:
		return "stopping";
	}
	return "unknown";
}

void
daemon_set_state_cb(struct daemon *d, daemon_state_fn cb, void *arg)
{
	d->state_cb = cb;
	d->state_arg = arg;
}

static void
daemon_state_changed(struct daemon *d)
{
	if (d->state_cb != NULL)
		d->state_cb(d, daemon_get_state(d), d->state_arg);
}

static void
daemon_maybe_ready(struct daemon *d)
{
	char status[DAEMON_STATUS_MAX];

	if (d->ready || d->stopping || d->ready_holds > 0 || d->n_started < DAEMON_N_MODULES)
		return;
	d->ready = true;
	daemon_status_running(d, status, sizeof(status));
	snprintf(d->status_last, sizeof(d->status_last), "%s", status);
	notify_ready(d->notify, status);
	log_info("otagwd %s ready (%s)", OTAGW_VERSION, d->cfg->path);
	daemon_state_changed(d);
}

void
daemon_ready_hold(struct daemon *d)
{
	d->ready_holds++;
}

void
daemon_ready_release(struct daemon *d)
{
	if (d->ready_holds > 0)
		d->ready_holds--;
	daemon_maybe_ready(d);
}

static void
daemon_report(void *arg, const char *msg)
{
	unsigned *errors = arg;

	(*errors)++;
	log_err("%s", msg);
}

/* Keeps the running value of a string setting only a restart can change. */
static void
daemon_keep_string(const char *key, char **next, char **cur)
{
	char *tmp;

	if (strcmp(*next, *cur) == 0)
		return;
	log_warn("%s changed to %s: restart otagwd to apply it; still using %s", key, *next, *cur);
	tmp = *next;
	*next = *cur;
	*cur = tmp; /* freed with the old configuration */
}

/* Settings that only a restart can change: the new configuration keeps the running value,
 * so d->cfg always describes what is in force. */
static void
daemon_keep_restart_only(struct config *next, struct config *cur)
{
	daemon_keep_string("state_dir", &next->general.state_dir, &cur->general.state_dir);
	daemon_keep_string("cache_dir", &next->general.cache_dir, &cur->general.cache_dir);
	if (next->dbus.bus != cur->dbus.bus) {
		log_warn("[dbus] bus changed: restart otagwd to apply it; keeping the current bus");
		next->dbus.bus = cur->dbus.bus;
	}
}

static int daemon_reload_config(struct daemon *d);

int
daemon_reload(struct daemon *d)
{
	int r;

	if (d->stopping)
		return -ESHUTDOWN;
	d->reloading = true;
	daemon_state_changed(d);
	r = daemon_reload_config(d);
	d->reloading = false;
	daemon_state_changed(d);
	return r;
}

/* daemon_reload() between the state changes. */
static int
daemon_reload_config(struct daemon *d)
{
	char status[DAEMON_STATUS_MAX];
	struct config *next = NULL, *old;
	unsigned errors = 0;
	size_t i;
	int r, ret = 0;

	notify_reloading(d->notify, "Reloading the configuration");
	log_debug("Reading configuration %s", d->config_path);
	r = config_load(d->config_path, daemon_report, &errors, &next);
	if (r < 0) {
		log_err("Failed to reload %s (%u error%s): keeping the running configuration",
		    d->config_path, errors, errors == 1 ? "" : "s");
		snprintf(status, sizeof(status),
		    "Running on the previous configuration: reloading %s failed with %u error%s "
		    "(see the journal)",
		    d->config_path, errors, errors == 1 ? "" : "s");
		if (d->ready)
			notify_ready(d->notify, status);
		return r;
	}
	daemon_keep_restart_only(next, d->cfg);
	old = d->cfg;
	d->cfg = next;
	for (i = 0; i < d->n_started; i++) {
		if (daemon_modules[i]->reload == NULL)
			continue;
		r = daemon_modules[i]->reload(d, old);
		if (r < 0 && ret == 0)
			ret = r;
	}
	config_free(old);
	log_info("Reloaded configuration from %s%s", d->config_path,
	    ret < 0 ? " (some changes could not be applied, see above)" : "");
	daemon_log_config(d->cfg);
	daemon_status_running(d, status, sizeof(status));
	if (d->ready)
		notify_ready(d->notify, status);
	return ret;
}

static void
daemon_stop_modules(struct daemon *d)
{
	while (d->n_started > 0) {
		const struct daemon_module *m = daemon_modules[--d->n_started];

		if (m->stop != NULL)
			m->stop(d);
	}
}

void
daemon_stop(struct daemon *d, int exit_code)
{
	if (d->stopping)
		return;
	d->stopping = true;
	d->exit_code = exit_code;
	notify_stopping(d->notify, "Stopping");
	daemon_state_changed(d);
	daemon_stop_modules(d);
	event_base_loopexit(d->base, NULL);
}

int
daemon_exit_code(const struct daemon *d)
{
	return d->exit_code;
}

void
daemon_set_status(struct daemon *d, const char *fmt, ...)
{
	char status[DAEMON_STATUS_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(status, sizeof(status), fmt, ap);
	va_end(ap);
	notify_status(d->notify, "%s", status);
}

static void
daemon_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	(void)what;
	switch (sig) {
	case SIGHUP:
		log_info("Received SIGHUP, reloading %s", d->config_path);
		daemon_reload(d);
		break;
	case SIGTERM:
	case SIGINT:
		if (!d->stopping)
			log_info("Received %s, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		daemon_stop(d, EXIT_SUCCESS);
		break;
	default:
		break;
	}
}

static int
daemon_add_signal(struct daemon *d, int sig, struct event **ev)
{
	*ev = evsignal_new(d->base, sig, daemon_signal_cb, d);
	if (*ev == NULL || evsignal_add(*ev, NULL) < 0) {
		log_err("Failed to install the %s handler", strsignal(sig));
		return -ENOMEM;
	}
	return 0;
}

int
daemon_new(struct event_base *base, const char *config_path, struct config *cfg, bool verbose,
    struct daemon **out)
{
	struct daemon *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return -ENOMEM;
	d->base = base;
	d->config_path = config_path;
	d->cfg = cfg;
	d->verbose = verbose;
	*out = d;
	return 0;
}

int
daemon_start(struct daemon *d)
{
	int r;

	r = notify_new(d->base, &d->notify);
	if (r < 0)
		return log_err_errno(r, "Failed to set up systemd notification (check "
					"$WATCHDOG_USEC)");
	if (notify_watchdog_usec(d->notify) > 0)
		log_debug("Watchdog enabled: %llu ms",
		    (unsigned long long)(notify_watchdog_usec(d->notify) / 1000));
	if ((r = daemon_add_signal(d, SIGHUP, &d->sig_hup)) < 0 ||
	    (r = daemon_add_signal(d, SIGTERM, &d->sig_term)) < 0 ||
	    (r = daemon_add_signal(d, SIGINT, &d->sig_int)) < 0)
		return r;

	notify_status(d->notify, "Starting");
	for (d->n_started = 0; d->n_started < DAEMON_N_MODULES; d->n_started++) {
		const struct daemon_module *m = daemon_modules[d->n_started];

		if (m->start == NULL)
			continue;
		r = m->start(d);
		if (r < 0) {
			log_err("Failed to start %s, exiting", m->name);
			daemon_stop_modules(d);
			return r;
		}
	}
	daemon_log_config(d->cfg);
	daemon_maybe_ready(d);
	return 0;
}

void
daemon_free(struct daemon *d)
{
	if (d == NULL)
		return;
	daemon_stop_modules(d);
	if (d->sig_hup != NULL)
		event_free(d->sig_hup);
	if (d->sig_term != NULL)
		event_free(d->sig_term);
	if (d->sig_int != NULL)
		event_free(d->sig_int);
	notify_free(d->notify);
	config_free(d->cfg);
	free(d);
}
