/* The D-Bus service's connection (see dbus.h): opening the bus, registering every object before
 * requesting the name, the backoff that reconnects after the bus went away, the one timer that
 * sends coalesced signals, the caller checks, and the text helpers the interfaces share. */
#include "dbus.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "busev.h"
#include "clock.h"
#include "daemon.h"
#include "dbus_internal.h"
#include "fleet.h"

/* Asking the bus for a caller's credentials gives up after this long, so a wedged bus cannot
 * hold the loop for sd-bus's default of 25 s. */
#define DBUS_CALL_TIMEOUT_US (5 * 1000000ULL)
/* Room for getpwuid_r() and getgrnam_r(). */
#define DBUS_PWBUF 4096
/* Groups looked at for a caller the bus reports no groups for. */
#define DBUS_MAX_GROUPS 256

static void dbus_connect(struct dbus *b);

static const char *
dbus_bus_text(const struct dbus *b)
{
	return b->kind == CONFIG_BUS_SYSTEM ? "system bus" : "session bus";
}

/* --- text --- */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. Follows what sd-bus accepts:
 * no overlong forms, surrogates, code points above U+10FFFF or non-characters. */
static size_t
dbus_utf8_len(const unsigned char *s, size_t n)
{
	uint32_t c;
	size_t len, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		c = s[0] & 0x1fu;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		c = s[0] & 0x0fu;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		c = s[0] & 0x07u;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3fu);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) || c > 0x10ffff ||
	    (c >= 0xd800 && c <= 0xdfff) || (c >= 0xfdd0 && c <= 0xfdef) || (c & 0xfffe) == 0xfffe)
		return 0;
	return len;
}

int
dbus_append_text(sd_bus_message *m, const char *s)
{
	const unsigned char *u = (const unsigned char *)(s != NULL ? s : "");
	size_t n = strlen((const char *)u), i = 0, len;
	char small[256], *t = n < sizeof(small) ? small : malloc(n + 1);
	int r;

	if (t == NULL)
		return -ENOMEM;
	while (i < n) {
		len = dbus_utf8_len(u + i, n - i);
		if (len == 1) {
			t[i] = u[i] < 0x20 || u[i] == 0x7f ? ' ' : (char)u[i];
			i++;
		} else if (len > 1) {
			memcpy(t + i, u + i, len);
			i += len;
		} else {
			t[i++] = '?';
		}
	}
	t[n] = '\0';
	r = sd_bus_message_append_basic(m, 's', t);
	if (t != small)
		free(t);
	return r;
}

void
dbus_quote(const char *s, char out[DBUS_QUOTE_LEN])
{
	size_t i, o = 0;

	for (i = 0; i < DBUS_QUOTE_MAX && s[i] != '\0'; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f)
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, DBUS_QUOTE_LEN - o, "\\x%02x", c);
	}
	if (s[i] != '\0') {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

int
dbus_invalid_serial(const char *serial, sd_bus_error *error)
{
	char q[DBUS_QUOTE_LEN];

	dbus_quote(serial, q);
	return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
	    "Invalid serial '%s': use 1 to %d letters, digits, '-' or '_'", q, IDENT_SERIAL_MAX);
}

/* --- who may change things --- */

/* Whether user (primary group gid) is a member of group per the user database. */
static bool
dbus_user_in_group(const char *user, gid_t primary, gid_t group)
{
	gid_t groups[DBUS_MAX_GROUPS];
	int n = DBUS_MAX_GROUPS, i;

	if (primary == group)
		return true;
	/* A user in more groups than we look at is judged on the first ones. */
	if (getgrouplist(user, primary, groups, &n) < 0)
		n = DBUS_MAX_GROUPS;
	for (i = 0; i < n; i++)
		if (groups[i] == group)
			return true;
	return false;
}

/* The caller's uid and groups as the bus reports them (GetConnectionCredentials: UnixUserID and
 * UnixGroupIDs, what dbus-daemon saw when the caller connected). Not sd_bus_query_sender_creds():
 * sd-bus 252 takes the groups from /proc/PID/status, which is racy and which the unit hides
 * (ProtectProc=invisible). *n_gids is -1 if the bus reports no groups. Blocks for one round
 * trip to the bus (at most DBUS_CALL_TIMEOUT_US). */
static int
dbus_caller(struct dbus *b, sd_bus_message *m, uid_t *uid, gid_t *gids, int *n_gids)
{
	sd_bus_error err = SD_BUS_ERROR_NULL;
	sd_bus_message *call = NULL, *reply = NULL;
	const char *sender = sd_bus_message_get_sender(m), *key;
	bool have_uid = false;
	uint32_t u;
	int r, n = -1;

	if (sender == NULL)
		return -ENODATA;
	r = sd_bus_message_new_method_call(b->bus, &call, "org.freedesktop.DBus",
	    "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetConnectionCredentials");
	if (r >= 0)
		r = sd_bus_message_append(call, "s", sender);
	if (r >= 0)
		r = sd_bus_call(b->bus, call, DBUS_CALL_TIMEOUT_US, &err, &reply);
	if (r >= 0)
		r = sd_bus_message_enter_container(reply, 'a', "{sv}");
	while (r >= 0) {
		r = sd_bus_message_enter_container(reply, 'e', "sv");
		if (r <= 0)
			break;
		r = sd_bus_message_read(reply, "s", &key);
		if (r >= 0 && strcmp(key, "UnixUserID") == 0) {
			r = sd_bus_message_read(reply, "v", "u", &u);
			*uid = (uid_t)u;
			have_uid = r >= 0;
		} else if (r >= 0 && strcmp(key, "UnixGroupIDs") == 0) {
			r = sd_bus_message_enter_container(reply, 'v', "au");
			if (r >= 0)
				r = sd_bus_message_enter_container(reply, 'a', "u");
			for (n = 0; r >= 0;) {
				r = sd_bus_message_read(reply, "u", &u);
				if (r <= 0)
					break;
				if (n < DBUS_MAX_GROUPS) /* judged on the first ones */
					gids[n++] = (gid_t)u;
			}
			if (r >= 0)
				r = sd_bus_message_exit_container(reply);
			if (r >= 0)
				r = sd_bus_message_exit_container(reply);
		} else if (r >= 0) {
			r = sd_bus_message_skip(reply, "v");
		}
		if (r >= 0)
			r = sd_bus_message_exit_container(reply);
	}
	if (r >= 0 && !have_uid)
		r = -ENODATA;
	if (r < 0 && sd_bus_error_is_set(&err))
		log_debug("GetConnectionCredentials(%s): %s", sender, err.message);
	sd_bus_error_free(&err);
	sd_bus_message_unref(call);
	sd_bus_message_unref(reply);
	*n_gids = n;
	return r < 0 ? r : 0;
}

int
dbus_check_access(struct dbus *b, sd_bus_message *m, const char *what, uid_t *uid_out, char *user,
    size_t user_len, sd_bus_error *error)
{
	const char *group = b->d->cfg->dbus.control_group;
	char buf[DBUS_PWBUF], gbuf[DBUS_PWBUF];
	gid_t gids[DBUS_MAX_GROUPS];
	struct passwd pw, *pwp = NULL;
	struct group gr, *grp = NULL;
	bool allowed = false;
	uid_t uid = 0;
	int r, n, i;

	r = dbus_caller(b, m, &uid, gids, &n);
	if (r < 0) {
		log_warn_errno(r, "Refused to %s for %s: cannot get the caller's credentials", what,
		    sd_bus_message_get_sender(m) != NULL ? sd_bus_message_get_sender(m) : "?");
		return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
		    "Cannot tell who is calling, so otagwd may not %s: %s", what, strerror(-r));
	}
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &pwp) != 0)
		pwp = NULL;
	snprintf(user, user_len, "%s", pwp != NULL ? pw.pw_name : "unknown user");
	*uid_out = uid;
	if (uid == 0 || uid == geteuid())
		allowed = true;
	else if (group != NULL && getgrnam_r(group, &gr, gbuf, sizeof(gbuf), &grp) == 0 &&
		 grp != NULL) {
		if (n >= 0) {
			for (i = 0; i < n && !allowed; i++)
				allowed = gids[i] == gr.gr_gid;
		} else if (pwp != NULL) {
			/* The bus does not report groups: ask the user database. */
			allowed = dbus_user_in_group(pw.pw_name, pw.pw_gid, gr.gr_gid);
		}
	}
	if (allowed)
		return 1;
	log_notice("Refused to %s for uid %u (%s): not root, uid %u or a member of group '%s'",
	    what, (unsigned)uid, user, (unsigned)geteuid(), group != NULL ? group : "");
	return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
	    "Only root and members of group '%s' may %s", group != NULL ? group : "", what);
}

/* --- the signal scheduler --- */

void
dbus_schedule(struct dbus *b, uint64_t at_ms)
{
	uint64_t now = clock_mono_ms(), delay;
	struct timeval tv;

	if (b->bus == NULL || b->stopped || b->flush == NULL)
		return;
	if (at_ms < now)
		at_ms = now;
	if (b->flush_at != 0 && b->flush_at <= at_ms)
		return;
	delay = at_ms - now;
	tv = (struct timeval){
	    .tv_sec = (time_t)(delay / 1000u), .tv_usec = (suseconds_t)(delay % 1000u) * 1000};
	b->flush_at = at_ms > 0 ? at_ms : 1;
	evtimer_add(b->flush, &tv);
}

static void
dbus_flush_now(struct dbus *b)
{
	uint64_t now = clock_mono_ms(), next = UINT64_MAX;

	if (b->bus == NULL)
		return;
	dbus_manager_flush(b, now, &next);
	dbus_device_flush(b, now, &next);
	if (next != UINT64_MAX)
		dbus_schedule(b, next);
	busev_rearm(b->be);
}

static void
dbus_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dbus *b = arg;

	(void)fd;
	(void)what;
	b->flush_at = 0;
	dbus_flush_now(b);
}

/* --- the connection --- */

static void
dbus_fatal_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dbus *b = arg;

	(void)fd;
	(void)what;
	daemon_stop(b->d, EXIT_FAILURE);
}

/* Stops the daemon from the loop: this may run inside a bus callback, and stopping frees
 * the bus. */
static void
dbus_fatal(struct dbus *b)
{
	event_active(b->fatal, EV_TIMEOUT, 0);
}

static void
dbus_release_hold(struct dbus *b)
{
	if (!b->holding)
		return;
	b->holding = false;
	daemon_ready_release(b->d);
}

/* Drops the connection (gone, or of no use) and tries again after the backoff. */
static void
dbus_drop(struct dbus *b)
{
	struct timeval tv;

	b->be = busev_free(b->be); /* deferred if inside one of its dispatches */
	sd_bus_unref(b->bus);      /* busev's own reference goes with it */
	b->bus = NULL;
	b->named = false;
	if (b->flush != NULL)
		evtimer_del(b->flush);
	b->flush_at = 0;
	dbus_device_reset(b);
	dbus_release_hold(b);
	if (b->stopped)
		return;
	b->backoff_s = b->backoff_s == 0 ? DBUS_RETRY_MIN_S : b->backoff_s * 2;
	if (b->backoff_s > DBUS_RETRY_MAX_S)
		b->backoff_s = DBUS_RETRY_MAX_S;
	tv = (struct timeval){.tv_sec = (time_t)b->backoff_s};
	evtimer_add(b->retry, &tv);
}

static void
dbus_lost(struct busev *be, int err, void *arg)
{
	struct dbus *b = arg;

	(void)be;
	log_warn("Lost the connection to the %s (%s); serving devices without D-Bus and "
		 "reconnecting",
	    dbus_bus_text(b), strerror(err < 0 ? -err : err));
	dbus_drop(b);
}

static int
dbus_owner_cb(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct dbus *b = userdata;
	uint32_t pid = 0;

	(void)ret_error;
	if (sd_bus_message_is_method_error(m, NULL) || sd_bus_message_read(m, "u", &pid) < 0)
		pid = 0;
	if (pid != 0)
		log_err(DBUS_NAME " is already owned by another process (pid %u); is another "
				  "otagwd running?",
		    pid);
	else
		log_err(DBUS_NAME " is already owned by another process; is another otagwd "
				  "running?");
	if (b->holding) {
		dbus_fatal(b);
		return 0;
	}
	/* Later (the bus came back and someone was quicker): keep serving devices and try
	 * again. */
	dbus_drop(b);
	return 0;
}

static int
dbus_name_cb(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct dbus *b = userdata;
	const sd_bus_error *e;
	uint32_t ret = 0;
	int r;

	(void)ret_error;
	if (sd_bus_message_is_method_error(m, NULL)) {
		e = sd_bus_message_get_error(m);
		/* Refused by the policy (or anything else): devices are served all the same, and
		 * the policy may be installed later (dbus-daemon reloads it), so keep trying. */
		if (b->backoff_s > 0)
			log_debug("Still cannot own " DBUS_NAME ": %s",
			    e->message != NULL ? e->message : e->name);
		else if (sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED))
			log_err("The D-Bus policy does not let uid %u own " DBUS_NAME
				" on the %s (%s); install io.otagw.conf in "
				"/usr/share/dbus-1/system.d and run otagwd as user otagw; serving "
				"devices without D-Bus and retrying",
			    (unsigned)geteuid(), dbus_bus_text(b),
			    e->message != NULL ? e->message : e->name);
		else
			log_warn("Failed to request " DBUS_NAME " on the %s: %s; serving devices "
				 "without D-Bus and retrying",
			    dbus_bus_text(b), e->message != NULL ? e->message : e->name);
		dbus_drop(b);
		return 0;
	}
	r = sd_bus_message_read(m, "u", &ret);
	if (r < 0) {
		log_warn_errno(
		    r, "Failed to request " DBUS_NAME " on the %s; retrying", dbus_bus_text(b));
		dbus_drop(b);
		return 0;
	}
	switch (ret) {
	case 1: /* DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER */
	case 4: /* DBUS_REQUEST_NAME_REPLY_ALREADY_OWNER */
		b->named = true;
		b->backoff_s = 0;
		log_info("Serving " DBUS_NAME " on the %s", dbus_bus_text(b));
		dbus_release_hold(b);
		return 0;
	default: /* 3: DBUS_REQUEST_NAME_REPLY_EXISTS (2, IN_QUEUE, cannot be: no queueing) */
		r = sd_bus_call_method_async(b->bus, NULL, "org.freedesktop.DBus",
		    "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetConnectionUnixProcessID",
		    dbus_owner_cb, b, "s", DBUS_NAME);
		if (r < 0)
			dbus_owner_cb(m, b, NULL);
		return 0;
	}
}

static int
dbus_open(struct dbus *b, sd_bus **out)
{
	return b->kind == CONFIG_BUS_SYSTEM ? sd_bus_open_system_with_description(out, "otagwd")
					    : sd_bus_open_user_with_description(out, "otagwd");
}

/* Registers every object on bus: the name is requested only afterwards, so a client that sees
 * the name finds them all. */
static int
dbus_register(struct dbus *b, sd_bus *bus)
{
	int r;

	r = sd_bus_add_object_manager(bus, NULL, DBUS_PATH);
	if (r >= 0)
		r = sd_bus_add_object_vtable(
		    bus, NULL, DBUS_PATH, DBUS_IFACE_MGR, dbus_manager_vtable, b);
	if (r >= 0)
		r = dbus_device_register(b);
	if (r >= 0)
		r = dbus_link_register(b);
	if (r >= 0)
		r = dbus_log_register(b);
	return r;
}

static void
dbus_connect(struct dbus *b)
{
	sd_bus *bus = NULL;
	bool first = b->holding;
	int r;

	r = dbus_open(b, &bus);
	if (r < 0)
		goto fail;
	b->bus = bus;
	r = dbus_register(b, bus);
	if (r < 0)
		goto fail;
	r = busev_new(b->d->base, bus, dbus_lost, b, &b->be);
	if (r < 0)
		goto fail;
	r = sd_bus_request_name_async(bus, NULL, DBUS_NAME, 0, dbus_name_cb, b);
	if (r < 0)
		goto fail;
	/* What clients of this connection see first is GetManagedObjects or GetAll: from here
	 * on, signals carry changes against those values. */
	dbus_manager_values(b, &b->mgr_sent);
	b->mgr_urgent = b->mgr_check = false;
	dbus_device_reset(b);
	busev_rearm(b->be);
	log_debug("Connected to the %s, requesting " DBUS_NAME, dbus_bus_text(b));
	return;
fail:
	if (first || b->backoff_s == 0)
		log_warn_errno(r,
		    "Cannot connect to the %s; serving devices without D-Bus and "
		    "retrying",
		    dbus_bus_text(b));
	else
		log_debug("Still cannot connect to the %s: %s", dbus_bus_text(b), strerror(-r));
	if (b->bus == NULL)
		sd_bus_unref(bus);
	dbus_drop(b);
}

static void
dbus_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	dbus_connect(arg);
}

/* --- the daemon module --- */

/* The daemon's state is signalled right away, not from the loop: a reload runs start to end
 * in one callback, and "reloading" would otherwise never be seen. */
static void
dbus_state_changed(struct daemon *d, enum daemon_state state, void *arg)
{
	struct dbus *b = arg;
	uint64_t next = UINT64_MAX;

	(void)d;
	(void)state;
	if (b->bus == NULL)
		return;
	b->mgr_urgent = true;
	dbus_manager_flush(b, clock_mono_ms(), &next);
	if (next != UINT64_MAX)
		dbus_schedule(b, next);
	busev_rearm(b->be);
}

static void
dbus_check_group(const struct daemon *d)
{
	const char *group = d->cfg->dbus.control_group;
	char buf[DBUS_PWBUF];
	struct group gr, *grp = NULL;

	if (group != NULL && (getgrnam_r(group, &gr, buf, sizeof(buf), &grp) != 0 || grp == NULL))
		log_warn("[dbus] control_group %s: no such group; only root and uid %u may "
			 "call what changes something",
		    group, (unsigned)geteuid());
}

static void
dbus_free(struct dbus *b)
{
	if (b == NULL)
		return;
	if (b->retry != NULL)
		event_free(b->retry);
	if (b->flush != NULL)
		event_free(b->flush);
	if (b->fatal != NULL)
		event_free(b->fatal);
	free(b);
}

static int
dbus_start(struct daemon *d)
{
	struct dbus *b;
	int r;

	if (d->cfg->dbus.bus == CONFIG_BUS_NONE) {
		log_info("D-Bus is off ([dbus] bus = none)");
		return 0;
	}
	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return log_err_errno(-ENOMEM, "Failed to set up D-Bus");
	b->d = d;
	b->kind = d->cfg->dbus.bus;
	b->retry = evtimer_new(d->base, dbus_retry_cb, b);
	b->flush = evtimer_new(d->base, dbus_flush_cb, b);
	b->fatal = evtimer_new(d->base, dbus_fatal_cb, b);
	LIST_INIT(&b->links);
	if (b->retry == NULL || b->flush == NULL || b->fatal == NULL) {
		dbus_free(b);
		return log_err_errno(-ENOMEM, "Failed to set up D-Bus");
	}
	r = dbus_device_start(b);
	if (r >= 0)
		r = dbus_link_start(b);
	if (r < 0) {
		dbus_device_stop(b);
		dbus_link_stop(b);
		dbus_free(b);
		return log_err_errno(r, "Failed to set up D-Bus");
	}
	dbus_log_start(b);
	dbus_check_group(d);
	d->dbus = b;
	daemon_set_state_cb(d, dbus_state_changed, b);
	/* READY=1 waits for the name, or for the first failure to reach the bus. */
	b->holding = true;
	daemon_ready_hold(d);
	dbus_connect(b);
	return 0;
}

static int
dbus_reload(struct daemon *d, const struct config *old)
{
	struct dbus *b = d->dbus;

	(void)old;
	if (b == NULL)
		return 0;
	dbus_check_group(d);
	dbus_manager_changed(b, true); /* max_transfers, cache_max */
	dbus_log_changed(b);           /* log_level applies again */
	return 0;
}

static void
dbus_stop(struct daemon *d)
{
	struct dbus *b = d->dbus;
	uint64_t next = UINT64_MAX;

	if (b == NULL)
		return;
	daemon_set_state_cb(d, NULL, NULL);
	if (b->bus != NULL) {
		/* State "stopping" goes out before the name goes away. */
		b->mgr_urgent = true;
		dbus_manager_flush(b, clock_mono_ms(), &next);
		(void)sd_bus_flush(b->bus);
	}
	b->stopped = true;
	b->be = busev_free(b->be);
	b->bus = sd_bus_close_unref(b->bus);
	dbus_device_stop(b);
	dbus_link_stop(b);
	d->dbus = NULL;
	dbus_free(b);
}

const struct daemon_module dbus_module = {
    .name = "dbus",
    .start = dbus_start,
    .reload = dbus_reload,
    .stop = dbus_stop,
};
