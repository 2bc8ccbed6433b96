/* The fleet: otagwd's in-memory registry of every device it knows, by serial. It is loaded from
 * the database at start, kept current by the sessions, and read by whatever shows the fleet (the
 * D-Bus service, the STATUS= line): identity, the link a device is on, what otagwd is doing for
 * it, progress and rate, the target version, the last outcome and when it was last seen. Readers
 * subscribe to changes and are told which fields changed. Nothing here talks to a device or to
 * the database after fleet_load(). */
#ifndef OTAGW_FLEET_H
#define OTAGW_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ident.h"

struct db;
struct fleet;

/* Bounds (bytes, without the NUL). */
#define FLEET_LINK_MAX    32  /* a [uart]/[tcp]/[unix] section name, or "ble" */
#define FLEET_ADDRESS_MAX 127 /* "/dev/ttyUSB0", "192.0.2.7:51234", "AA:BB:CC:DD:EE:FF" */
#define FLEET_REASON_MAX  256 /* one printable line (docs/dbus-api.md, "Types and units") */

/* What otagwd is doing for a device (docs/dbus-api.md, Device1.State). */
enum fleet_state {
	FLEET_STATE_IDLE,             /* nothing: not checked since it connected, or aborted */
	FLEET_STATE_CHECKING,         /* asking Memfault about it */
	FLEET_STATE_UP_TO_DATE,       /* Memfault's last answer: up to date */
	FLEET_STATE_DOWNLOADING,      /* fetching its payload into the cache */
	FLEET_STATE_QUEUED,           /* payload ready, waiting for a transfer slot */
	FLEET_STATE_TRANSFERRING,     /* sending the image */
	FLEET_STATE_VERIFYING,        /* all sent; the device checks the image */
	FLEET_STATE_AWAITING_INSTALL, /* the device verified the image; not yet seen running it */
	FLEET_STATE_INSTALLED,        /* it came back running the target version */
	FLEET_STATE_FAILED,           /* the last attempt failed for a reason that may pass */
	FLEET_STATE_ERROR,            /* cannot be updated until something changes */
};
#define FLEET_N_STATES (FLEET_STATE_ERROR + 1)

/* The outcome of the last check or update that ended (Device1.LastResult). */
enum fleet_result {
	FLEET_RESULT_NONE,
	FLEET_RESULT_UP_TO_DATE,
	FLEET_RESULT_TRANSFERRED,
	FLEET_RESULT_INSTALLED,
	FLEET_RESULT_FAILED,
	FLEET_RESULT_ABORTED,
	FLEET_RESULT_ERROR,
};

/* Bits telling subscribers what changed. */
enum fleet_field {
	FLEET_FIELD_ADDED = 1u << 0,     /* the device is new to the registry */
	FLEET_FIELD_IDENTITY = 1u << 1,  /* hardware_version, software_type, current_version */
	FLEET_FIELD_LINK = 1u << 2,      /* link, address */
	FLEET_FIELD_STATE = 1u << 3,     /* state */
	FLEET_FIELD_PROGRESS = 1u << 4,  /* bytes_done, bytes_total, rate */
	FLEET_FIELD_TARGET = 1u << 5,    /* target_version */
	FLEET_FIELD_RESULT = 1u << 6,    /* last_result, last_reason */
	FLEET_FIELD_SEEN = 1u << 7,      /* last_seen_us */
	FLEET_FIELD_CONNECTED = 1u << 8, /* connected */
};

/* One device as readers see it. Strings are NUL-terminated. */
struct fleet_device {
	char serial[IDENT_SERIAL_MAX + 1];
	char hardware_version[IDENT_HW_MAX + 1];
	char software_type[IDENT_SWTYPE_MAX + 1];
	char current_version[IDENT_VERSION_MAX + 1];
	char link[FLEET_LINK_MAX + 1];       /* link name, "" if never seen since the db knew it */
	char address[FLEET_ADDRESS_MAX + 1]; /* where on the link; "" if not seen since start */
	enum fleet_state state;
	uint64_t bytes_done, bytes_total; /* the current step, or the last failed one */
	double rate;                      /* bytes/s, smoothed over ~2 s; 0 unless moving bytes */
	char target_version[IDENT_VERSION_MAX + 1]; /* "" when none */
	enum fleet_result last_result;
	char last_reason[FLEET_REASON_MAX + 1];
	int64_t last_seen_us; /* wall clock, µs since the epoch; 0: never */
	bool connected;
};

/* Called after a device changed; fields is a mask of enum fleet_field. The device stays valid
 * as long as the fleet (devices are never removed while otagwd runs). Must not change the
 * fleet from inside the callback. */
typedef void (*fleet_change_fn)(const struct fleet_device *dev, unsigned fields, void *arg);

/* Counters kept as devices change, for STATUS= and D-Bus. */
struct fleet_counts {
	unsigned devices;
	unsigned connected;
	unsigned in_state[FLEET_N_STATES];
};

/* Creates an empty registry. Returns 0 or -ENOMEM. */
int fleet_new(struct fleet **out);

/* Frees f and every device. Accepts NULL. */
void fleet_free(struct fleet *f);

/* Adds every device of the database (devices table) that the fleet does not know yet, with its
 * last known identity and link, not connected. Its state and last outcome are derived from
 * what is stored: a pending install is awaiting-install, a confirmed one installed, a failed
 * one failed; else the newest history entry or, if newer, the last upstream check. Returns 0,
 * or a negative errno with db_errmsg() set (devices loaded so far stay). No callbacks run. */
int fleet_load(struct fleet *f, struct db *db);

/* The device with this serial, or NULL. */
const struct fleet_device *fleet_get(const struct fleet *f, const char *serial);

/* Calls cb for every device in serial order; stops at and returns cb's first non-zero value. */
int fleet_foreach(
    const struct fleet *f, int (*cb)(const struct fleet_device *dev, void *arg), void *arg);

/* The counters. */
void fleet_get_counts(const struct fleet *f, struct fleet_counts *out);

/* Registers cb for every change. Returns an id > 0 for fleet_unsubscribe(), or -ENOMEM. */
int fleet_subscribe(struct fleet *f, fleet_change_fn cb, void *arg);
void fleet_unsubscribe(struct fleet *f, int id);

/* --- Updates, for the sessions. Each tells the subscribers once, with what changed. --- */

/* What a device said in its hello, and where it said it. Strings are validated by the caller
 * (proto/ident.h rules) and copied, cut to the bounds above. */
struct fleet_hello {
	const char *serial;
	const char *hardware_version;
	const char *software_type;
	const char *current_version;
	const char *link;    /* link name */
	const char *address; /* where on the link */
};

/* A device connected and identified itself: adds it or updates its identity and link, marks it
 * connected and seen now. Returns the device, or NULL (out of memory). */
struct fleet_device *fleet_connect(struct fleet *f, const struct fleet_hello *hello);

/* The device's link went away (or another link took it over). */
void fleet_disconnect(struct fleet *f, struct fleet_device *dev);

/* Marks the device seen now; the stored time moves at most once a minute while it is
 * connected, so this may be called for every message. */
void fleet_touch(struct fleet *f, struct fleet_device *dev);

/* Sets what otagwd is doing. Entering a state that moves no bytes zeroes the rate. */
void fleet_set_state(struct fleet *f, struct fleet_device *dev, enum fleet_state state);

/* Sets the progress of the current step; the rate follows the bytes over time. */
void fleet_set_progress(struct fleet *f, struct fleet_device *dev, uint64_t done, uint64_t total);

/* Sets the target version ("" or NULL: none). */
void fleet_set_target(struct fleet *f, struct fleet_device *dev, const char *version);

/* Sets the last outcome and its reason (printf; control characters become spaces and the
 * text is cut to FLEET_REASON_MAX). */
void fleet_set_result(struct fleet *f, struct fleet_device *dev, enum fleet_result result,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Names for logs and D-Bus: "idle", "checking", "up-to-date", "downloading", "queued",
 * "transferring", "verifying", "awaiting-install", "installed", "failed", "error"; and "",
 * "up-to-date", "transferred", "installed", "failed", "aborted", "error". */
const char *fleet_state_name(enum fleet_state s);
const char *fleet_result_name(enum fleet_result r);

#endif
