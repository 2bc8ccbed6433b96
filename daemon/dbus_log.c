/* org.freedesktop.LogControl1 on /org/freedesktop/LogControl1 (docs/dbus-api.md, "Log
 * control"): systemd's interface for `systemctl service-log-level otagwd debug`. Writes are
 * checked like the methods that change something; a level set here lasts until the next
 * reload applies otagw.conf's log_level again. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "busev.h"
#include "daemon.h"
#include "dbus_internal.h"

/* LogControl1 speaks syslog's names. */
static const char *
dbus_log_level_name(enum log_level l)
{
	switch (l) {
	case LOG_LEVEL_ERR:
		return "err";
	case LOG_LEVEL_WARN:
		return "warning";
	case LOG_LEVEL_NOTICE:
		return "notice";
	case LOG_LEVEL_INFO:
		return "info";
	case LOG_LEVEL_DEBUG:
		return "debug";
	}
	return "info";
}

static int
dbus_log_level_parse(const char *s, enum log_level *out)
{
	static const struct {
		const char *name;
		enum log_level level;
	} names[] = {
	    {"emerg", LOG_LEVEL_ERR},
	    {"alert", LOG_LEVEL_ERR},
	    {"crit", LOG_LEVEL_ERR},
	    {"err", LOG_LEVEL_ERR},
	    {"warning", LOG_LEVEL_WARN},
	    {"notice", LOG_LEVEL_NOTICE},
	    {"info", LOG_LEVEL_INFO},
	    {"debug", LOG_LEVEL_DEBUG},
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i].name) == 0) {
			*out = names[i].level;
			return 0;
		}
	}
	return -EINVAL;
}

static void
dbus_log_signal(struct dbus *b, const char *property)
{
	int r;

	if (b->bus == NULL)
		return;
	r = sd_bus_emit_properties_changed(b->bus, DBUS_LOG_PATH, DBUS_IFACE_LOG, property, NULL);
	if (r < 0)
		log_debug("Failed to signal %s: %s", property, strerror(-r));
	busev_rearm(b->be);
}

void
dbus_log_changed(struct dbus *b)
{
	if (log_get_level() == b->log_sent)
		return;
	b->log_sent = log_get_level();
	dbus_log_signal(b, "LogLevel");
}

static int
dbus_log_get(sd_bus *bus, const char *path, const char *interface, const char *property,
    sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
	(void)bus;
	(void)path;
	(void)interface;
	(void)userdata;
	(void)error;
	if (strcmp(property, "LogLevel") == 0)
		return sd_bus_message_append(reply, "s", dbus_log_level_name(log_get_level()));
	if (strcmp(property, "LogTarget") == 0)
		return sd_bus_message_append(reply, "s", log_get_journal() ? "journal" : "console");
	if (strcmp(property, "SyslogIdentifier") == 0)
		return sd_bus_message_append(reply, "s", "otagwd");
	return -ENOENT;
}

static int
dbus_log_set(sd_bus *bus, const char *path, const char *interface, const char *property,
    sd_bus_message *value, void *userdata, sd_bus_error *error)
{
	struct dbus *b = userdata;
	char what[32], user[64], q[DBUS_QUOTE_LEN];
	enum log_level level = LOG_LEVEL_INFO;
	const char *s;
	uid_t uid;
	int r;

	(void)path;
	(void)interface;
	r = sd_bus_message_read(value, "s", &s);
	if (r < 0)
		return r;
	if (strcmp(property, "LogLevel") == 0 && dbus_log_level_parse(s, &level) < 0) {
		dbus_quote(s, q);
		return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
		    "Invalid LogLevel '%s': use err, warning, notice, info or debug", q);
	}
	if (strcmp(property, "LogTarget") == 0 && strcmp(s, "journal") != 0 &&
	    strcmp(s, "console") != 0) {
		dbus_quote(s, q);
		return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
		    "Invalid LogTarget '%s': use journal or console", q);
	}
	snprintf(what, sizeof(what), "set %s", property);
	r = dbus_check_access(
	    b, sd_bus_get_current_message(bus), what, &uid, user, sizeof(user), error);
	if (r < 0)
		return r;
	if (strcmp(property, "LogLevel") == 0) {
		log_set_level(level);
		log_info("Log level set to %s by uid %u (%s)", dbus_log_level_name(level),
		    (unsigned)uid, user);
		if (level != b->log_sent) {
			b->log_sent = level;
			dbus_log_signal(b, "LogLevel");
		}
		return 1;
	}
	if (log_get_journal() != (strcmp(s, "journal") == 0)) {
		log_set_journal(strcmp(s, "journal") == 0);
		dbus_log_signal(b, "LogTarget");
	}
	log_info("Log target set to %s by uid %u (%s)", s, (unsigned)uid, user);
	return 1;
}

static const sd_bus_vtable dbus_log_vtable[] = {
    SD_BUS_VTABLE_START(SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_WRITABLE_PROPERTY("LogLevel", "s", dbus_log_get, dbus_log_set, 0,
	SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_WRITABLE_PROPERTY("LogTarget", "s", dbus_log_get, dbus_log_set, 0,
	SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("SyslogIdentifier", "s", dbus_log_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_VTABLE_END,
};

int
dbus_log_register(struct dbus *b)
{
	return sd_bus_add_object_vtable(
	    b->bus, NULL, DBUS_LOG_PATH, DBUS_IFACE_LOG, dbus_log_vtable, b);
}

void
dbus_log_start(struct dbus *b)
{
	b->log_sent = log_get_level();
}
