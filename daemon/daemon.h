/* The running otagwd: one libevent event_base, the configuration in force, the systemd
 * notifier, and the modules (store, upstream client, links and sessions, D-Bus service) that
 * are started in table order, told about a reload, and stopped in reverse order. Signals are
 * libevent signal events: SIGHUP reloads, SIGTERM and SIGINT stop; nothing runs in signal
 * context. */
#ifndef OTAGW_DAEMON_H
#define OTAGW_DAEMON_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct daemon;
struct download_manager;
struct event;
struct event_base;
struct fleet;
struct http;
struct links;
struct memfault;
struct notify;
struct sessions;
struct store;
struct upstream;

/* What the daemon as a whole is doing (D-Bus Manager1.State). */
enum daemon_state {
	DAEMON_STATE_STARTING,  /* modules starting; READY=1 not sent yet */
	DAEMON_STATE_RUNNING,   /* serving devices */
	DAEMON_STATE_RELOADING, /* applying a new configuration */
	DAEMON_STATE_STOPPING,  /* shutting down */
};

/* Called after the daemon's state changed (daemon_set_state_cb()). */
typedef void (*daemon_state_fn)(struct daemon *d, enum daemon_state state, void *arg);

/* A part of the daemon with a lifetime of its own, listed in daemon.c's module table in
 * dependency order (the store before the sessions that use it). Every hook may be NULL. */
struct daemon_module {
	const char *name;
	/* Once at start-up, with d->cfg set. Returns 0, or a negative errno after logging what
	 * failed and what to do; the daemon then stops the modules already started and exits
	 * with status 1. A module that becomes ready later (asynchronously) calls
	 * daemon_ready_hold() here and daemon_ready_release() when it is. */
	int (*start)(struct daemon *d);
	/* After a SIGHUP loaded a valid configuration and put it in d->cfg; old is the one it
	 * replaced (freed once every hook returned). Applies what changed (limits, links
	 * added or removed). A failure is logged by the module, which keeps serving with what
	 * it has; return it as a negative errno so the reload is reported as partial. */
	int (*reload)(struct daemon *d, const struct config *old);
	/* Once on shutdown (SIGTERM/SIGINT or daemon_stop()), in reverse table order, for
	 * modules whose start succeeded: persist state (e.g. every session's progress), close
	 * links. Runs inside the loop, which exits when every stop hook has returned. */
	void (*stop)(struct daemon *d);
};

struct daemon {
	struct event_base *base;
	struct config *cfg;      /* in force; replaced whole by a successful reload */
	const char *config_path; /* reloads read this path again */
	bool verbose;            /* -v: debug logging whatever log_level says */
	struct notify *notify;
	/* Modules keep their state here, in start order (each may use the ones before it). */
	struct store *store;                /* store module (cache.c) */
	struct http *http;                  /* upstream module (cache.c) */
	struct memfault *memfault;          /* upstream module */
	struct upstream *upstream;          /* upstream module */
	struct download_manager *downloads; /* upstream module */
	struct fleet *fleet;                /* sessions module (session.c) */
	struct sessions *sessions;          /* sessions module */
	struct links *links;                /* links module (links.c) */
	struct dbus *dbus;                  /* D-Bus module (dbus.c) */

	/* Private to daemon.c. */
	struct event *sig_hup, *sig_term, *sig_int;
	struct event *status_timer; /* coalesces STATUS= updates */
	int status_sub;             /* fleet subscription of the STATUS= line */
	char status_last[256];      /* the STATUS= line sent last */
	size_t n_started;           /* modules whose start hook returned 0 */
	unsigned ready_holds;
	bool ready;
	bool reloading;
	bool stopping;
	daemon_state_fn state_cb;
	void *state_arg;
	int exit_code;
};

/* Creates the daemon on base, taking ownership of cfg (loaded from config_path, which must
 * outlive d). Nothing starts yet. Returns 0 or -ENOMEM; on failure cfg stays the caller's. */
int daemon_new(struct event_base *base, const char *config_path, struct config *cfg, bool verbose,
    struct daemon **out);

/* Installs the signal events, starts every module in order, and sends READY=1 as soon as no
 * module holds readiness back. Returns 0, or the first module's error (the ones started are
 * stopped again; the caller then frees d and exits 1). */
int daemon_start(struct daemon *d);

/* Delays READY=1 until a matching daemon_ready_release(), for a module whose start finishes
 * asynchronously (e.g. acquiring a bus name). */
void daemon_ready_hold(struct daemon *d);
void daemon_ready_release(struct daemon *d);

/* Reloads the configuration from d->config_path (what SIGHUP does): parses a fresh config;
 * if it has errors, logs every one and keeps the running configuration; else swaps it in
 * and calls every module's reload hook. Settings that need a restart keep their running
 * value with a warning. Sends RELOADING=1 before and READY=1 after. Returns 0, -EINVAL
 * (config errors), or the first module's reload error. */
int daemon_reload(struct daemon *d);

/* Stops the modules in reverse order (sends STOPPING=1 first) and makes the event loop exit
 * with exit_code. Later calls do nothing. */
void daemon_stop(struct daemon *d, int exit_code);

/* The daemon's state now. */
enum daemon_state daemon_get_state(const struct daemon *d);

/* "starting", "running", "reloading", "stopping". */
const char *daemon_state_name(enum daemon_state state);

/* Sets the one callback told about state changes (NULL to remove): running once READY=1 is
 * sent, reloading and running again around a reload, stopping before the modules stop. */
void daemon_set_state_cb(struct daemon *d, daemon_state_fn cb, void *arg);

/* The status the process should exit with: 0 after a clean stop. */
int daemon_exit_code(const struct daemon *d);

/* Sets the STATUS= line `systemctl status` shows. */
void daemon_set_status(struct daemon *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Stops the modules if that has not happened yet and frees d and its configuration. Accepts
 * NULL. */
void daemon_free(struct daemon *d);

#endif
