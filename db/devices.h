/* The devices table: every device that said hello, with its identity, its link, when it was
 * seen, the outcome of the last upstream check, the cached upstream answer (so a reconnecting
 * device does not burn Memfault's per-device quota), and the persistent part of the install
 * state machine. Functions return 0 or a negative errno with db_errmsg() set; output
 * parameters are untouched on failure. */
#ifndef OTAGW_DEVICES_H
#define OTAGW_DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ident.h"
#include "store.h"

struct db;

/* Bounds (bytes, without the NUL). */
#define DEVICES_LINK_MAX   255   /* "uart:/dev/serial/by-id/...", "ble:AA:BB:..." */
#define DEVICES_REASON_MAX 255   /* memfault-reason value or an error text */
#define DEVICES_ANSWER_MAX 65536 /* raw release JSON kept per device */
/* Most devices remembered; a new serial beyond it is refused with -ENOSPC. */
#define DEVICES_MAX 65536

enum devices_result {
	DEVICES_RESULT_NONE,      /* never checked */
	DEVICES_RESULT_UPDATE,    /* 200: a release is available */
	DEVICES_RESULT_NO_UPDATE, /* 204: up to date, rate-limited or another reason */
	DEVICES_RESULT_ERROR,     /* the check failed; reason says why */
};

enum devices_install {
	DEVICES_INSTALL_NONE,    /* nothing pending */
	DEVICES_INSTALL_PENDING, /* image sent and verified by the device; install not confirmed */
	DEVICES_INSTALL_CONFIRMED, /* the device came back running install_version */
	DEVICES_INSTALL_FAILED,    /* the device came back running something else */
};

/* What a device says in its hello. All strings are validated (proto/ident.h rules). */
struct devices_hello {
	const char *serial;
	const char *hardware_version;
	const char *software_type;
	const char *current_version;
	const char *link; /* printable ASCII, 1..DEVICES_LINK_MAX */
};

/* One row. Times are wall-clock Unix seconds; 0 means never. */
struct devices_entry {
	char serial[IDENT_SERIAL_MAX + 1];
	char hardware_version[IDENT_HW_MAX + 1];
	char software_type[IDENT_SWTYPE_MAX + 1];
	char current_version[IDENT_VERSION_MAX + 1];
	char link[DEVICES_LINK_MAX + 1];
	int64_t first_seen;
	int64_t last_seen;
	/* the last upstream check, successful or not */
	int64_t last_check;
	enum devices_result last_result;
	char last_reason[DEVICES_REASON_MAX + 1];
	/* the cached answer: when it was obtained (0: none). Its body: devices_get_answer(). */
	int64_t answer_time;
	/* install state machine */
	enum devices_install install_state;
	char install_version[IDENT_VERSION_MAX + 1];
	char install_sha256[STORE_SHA256_HEX + 1];
	int64_t install_time; /* when install_state last changed */
};

/* One upstream check outcome. */
struct devices_check {
	int64_t time;               /* wall clock when the answer arrived */
	enum devices_result result; /* UPDATE, NO_UPDATE or ERROR */
	const char *reason; /* memfault-reason or error text, or NULL; <= DEVICES_REASON_MAX */
	const char *release_json; /* UPDATE: the release JSON (<= DEVICES_ANSWER_MAX); else NULL */
};

/* A cached answer as read back. release_json is malloc'ed (or NULL): devices_answer_clear(). */
struct devices_answer {
	int64_t time;
	enum devices_result result; /* UPDATE or NO_UPDATE */
	char reason[DEVICES_REASON_MAX + 1];
	char *release_json;
};

/* Records a hello: inserts the device or updates its identity, link and last_seen. If the
 * hardware version, software type or current version changed, the cached answer is dropped
 * (it answered a different question). -EINVAL names the bad field; -ENOSPC if DEVICES_MAX
 * devices are already known. */
int devices_upsert(struct db *db, const struct devices_hello *hello);

/* Reads one device. -EINVAL (bad serial), -ENOENT (unknown). */
int devices_get(struct db *db, const char *serial, struct devices_entry *out);

/* Calls cb for every device, by serial. Rows are read one at a time, so cb may call db
 * functions (a device added during the walk is visited if its serial sorts later). A non-zero
 * return from cb stops the walk and is returned. */
int devices_foreach(struct db *db, int (*cb)(const struct devices_entry *d, void *arg), void *arg);

/* Records an upstream check: last_check/last_result/last_reason always; an UPDATE or NO_UPDATE
 * outcome also replaces the cached answer, an ERROR leaves the previous answer in place. An
 * UPDATE must carry its release JSON, the others none. -ENOENT (unknown device: upsert first),
 * -EINVAL (bad result, reason or JSON), -E2BIG (JSON longer than DEVICES_ANSWER_MAX: nothing
 * is recorded). */
int devices_record_check(struct db *db, const char *serial, const struct devices_check *check);

/* Reads the cached answer; the caller decides whether it is still fresh from out->time.
 * -ENOENT if the device is unknown or has no cached answer. */
int devices_get_answer(struct db *db, const char *serial, struct devices_answer *out);

/* Frees what devices_get_answer() allocated. Accepts NULL. */
void devices_answer_clear(struct devices_answer *a);

/* Drops the cached answer (e.g. the answer's URL was refused and a fresh one is needed). */
int devices_forget_answer(struct db *db, const char *serial);

/* Sets the install state. PENDING needs version and sha256 (the image the device verified);
 * CONFIRMED and FAILED need a PENDING install and keep its version and sha256 (version and
 * sha256 must be NULL or equal to them); NONE clears them. -ENOENT, -EINVAL. */
int devices_set_install(struct db *db, const char *serial, enum devices_install state,
    const char *version, const char *sha256);

/* Names for logs and D-Bus: "none", "update", "no_update", "error"; "none", "pending",
 * "confirmed", "failed". */
const char *devices_result_name(enum devices_result r);
const char *devices_install_name(enum devices_install s);

#endif
