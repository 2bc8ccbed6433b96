/* What the parts of the D-Bus service (dbus.c: the connection, the name, the signal scheduler
 * and the helpers; dbus_manager.c, dbus_device.c, dbus_link.c, dbus_log.c: one interface
 * each) share. Private to daemon/dbus*.c. */
#ifndef OTAGW_DBUS_INTERNAL_H
#define OTAGW_DBUS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

#include "config.h"
#include "dbus.h"
#include "log.h"

struct busev;
struct daemon;
struct event;
struct fleet_device;

/* A progress property is signalled at most this often per object (docs/dbus-api.md). */
#define DBUS_PROGRESS_MS 250u
/* Reconnecting to a bus that went away: 1 s, doubling up to 30 s. */
#define DBUS_RETRY_MIN_S 1u
#define DBUS_RETRY_MAX_S 30u
/* How much of an argument an error message shows. */
#define DBUS_QUOTE_MAX 64
/* Room for a quoted argument: every byte may become \xNN, plus "..." and the NUL. */
#define DBUS_QUOTE_LEN (DBUS_QUOTE_MAX * 4 + 4)
/* GetHistory: a limit of 0 means this many; more than the maximum is refused. */
#define DBUS_HISTORY_DEFAULT 100u
#define DBUS_HISTORY_MAX     1000u

/* Error names of our own (docs/dbus-api.md, "Arguments and errors"). */
#define DBUS_ERROR_NO_SUCH_DEVICE  "io.otagw.Error.NoSuchDevice"
#define DBUS_ERROR_NOT_CONNECTED   "io.otagw.Error.NotConnected"
#define DBUS_ERROR_IN_PROGRESS     "io.otagw.Error.InProgress"
#define DBUS_ERROR_NOT_IN_PROGRESS "io.otagw.Error.NotInProgress"
#define DBUS_ERROR_NOT_READY       "io.otagw.Error.NotReady"
#define DBUS_ERROR_FAILED          "io.otagw.Error.Failed"

/* Manager1 properties as last signalled. */
struct dbus_manager_values {
	char state[16];
	uint32_t devices, connected, active, queued, max_transfers;
	uint64_t cache_bytes, cache_max;
	uint32_t cache_entries;
	uint64_t cache_hits, cache_misses;
};

/* A device with signals to send (dbus_device.c). */
struct dbus_device;

/* A link exported on the bus, with what was last signalled (dbus_link.c). */
struct dbus_link;

struct dbus {
	struct daemon *d;
	enum config_bus kind; /* system or session */
	sd_bus *bus;          /* NULL while disconnected */
	struct busev *be;
	bool named;   /* io.otagw is ours on this connection */
	bool holding; /* holds READY=1 back until the name is ours */
	bool stopped; /* the module's stop hook ran */
	struct event *retry;
	unsigned backoff_s;
	struct event *flush; /* sends the signals that are due */
	uint64_t flush_at;   /* monotonic ms it is armed for; 0: not armed */
	struct event *fatal; /* stops the daemon from the loop, outside any bus dispatch */
	int fleet_sub, links_sub;

	/* Manager1 */
	struct dbus_manager_values mgr_sent;
	bool mgr_urgent;          /* a non-progress property may have changed */
	bool mgr_check;           /* a progress property may have changed */
	uint64_t mgr_progress_ms; /* when progress was last signalled */

	/* Device1 */
	struct dbus_device **dev_buckets; /* hash of struct dbus_device by fleet pointer */
	TAILQ_HEAD(dbus_device_queue, dbus_device) dev_queue;

	/* Link1 */
	LIST_HEAD(, dbus_link) links;

	/* LogControl1 */
	enum log_level log_sent;
};

/* --- dbus.c: helpers for the interfaces --- */

/* Arranges a flush at monotonic time at_ms (0: as soon as the loop gets to it). */
void dbus_schedule(struct dbus *b, uint64_t at_ms);

/* Appends s as a D-Bus string, made valid: bytes that are not UTF-8 become '?' and control
 * characters spaces (paths and text from elsewhere need not be either). */
int dbus_append_text(sd_bus_message *m, const char *s);

/* Quotes an argument for an error message: at most DBUS_QUOTE_MAX bytes, bytes outside
 * printable ASCII as \xNN, "..." when cut. */
void dbus_quote(const char *s, char out[DBUS_QUOTE_LEN]);

/* Checks the caller of m may change something (root, otagwd's uid, a member of [dbus]
 * control_group). Returns 1 and the caller's uid and user name (for logs), or sets
 * AccessDenied (naming what) on error and returns a negative errno. */
int dbus_check_access(struct dbus *b, sd_bus_message *m, const char *what, uid_t *uid, char *user,
    size_t user_len, sd_bus_error *error);

/* Sets InvalidArgs for a malformed serial. Returns -EINVAL. */
int dbus_invalid_serial(const char *serial, sd_bus_error *error);

/* --- dbus_manager.c --- */

extern const sd_bus_vtable dbus_manager_vtable[];

/* Reads the Manager1 values now. */
void dbus_manager_values(struct dbus *b, struct dbus_manager_values *out);

/* Something the manager shows may have changed; urgent for non-progress properties. */
void dbus_manager_changed(struct dbus *b, bool urgent);

/* Sends what changed if it is due; lowers *next to when the next one is. */
void dbus_manager_flush(struct dbus *b, uint64_t now, uint64_t *next);

/* --- dbus_device.c --- */

int dbus_device_register(struct dbus *b);

/* Starts following the fleet (once, at start). Returns 0 or -ENOMEM. */
int dbus_device_start(struct dbus *b);
void dbus_device_stop(struct dbus *b);

/* Forgets every pending signal (a new connection starts from GetManagedObjects). */
void dbus_device_reset(struct dbus *b);

void dbus_device_flush(struct dbus *b, uint64_t now, uint64_t *next);

/* The object path of a serial (malloc'd) or NULL. */
char *dbus_device_path(const char *serial);

/* --- dbus_link.c --- */

int dbus_link_register(struct dbus *b);
int dbus_link_start(struct dbus *b);
void dbus_link_stop(struct dbus *b);

/* Takes what every link shows now as signalled (a new connection, or the start). */
void dbus_link_reset(struct dbus *b);

/* --- dbus_log.c --- */

int dbus_log_register(struct dbus *b);
void dbus_log_start(struct dbus *b);

/* A reload may have changed the log level: signals it. */
void dbus_log_changed(struct dbus *b);

#endif
