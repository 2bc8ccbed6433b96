/* Transfer history: one row per attempt to send an image to a device, from start to its end
 * (verified by the device, installed, failed, aborted), kept for D-Bus and for confirming an
 * install when the device comes back. The newest HISTORY_MAX rows are kept. Functions return
 * 0 or a negative errno with db_errmsg() set; output parameters are untouched on failure. */
#ifndef OTAGW_HISTORY_H
#define OTAGW_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices.h"
#include "ident.h"
#include "store.h"

struct db;

#define HISTORY_REASON_MAX 255
/* Rows kept; older ones are deleted as new transfers start. */
#define HISTORY_MAX 20000

enum history_result {
	HISTORY_RESULT_IN_PROGRESS,
	HISTORY_RESULT_VERIFIED,       /* the device received the whole image and checked it */
	HISTORY_RESULT_INSTALLED,      /* the device came back running to_version */
	HISTORY_RESULT_FAILED,         /* the transfer failed (reason says why) */
	HISTORY_RESULT_ABORTED,        /* cancelled, disconnected, or the gateway restarted */
	HISTORY_RESULT_INSTALL_FAILED, /* the device came back running something else */
};

/* A transfer that starts. Strings are validated and copied. */
struct history_start {
	const char *serial; /* a device known to devices_upsert() */
	const char *from_version;
	const char *to_version;
	const char *sha256;
	const char *link;
};

/* One row. Times are wall-clock Unix seconds; ended is 0 while in progress. */
struct history_entry {
	int64_t id;
	char serial[IDENT_SERIAL_MAX + 1];
	char from_version[IDENT_VERSION_MAX + 1];
	char to_version[IDENT_VERSION_MAX + 1];
	char sha256[STORE_SHA256_HEX + 1];
	char link[DEVICES_LINK_MAX + 1];
	int64_t started;
	int64_t ended;
	uint64_t bytes;
	enum history_result result;
	char reason[HISTORY_REASON_MAX + 1];
};

/* Records a transfer starting now (result in_progress); *id receives its id. -EINVAL names the
 * bad field, -ENOENT if the device is unknown. */
int history_begin(struct db *db, const struct history_start *h, int64_t *id);

/* Ends an in-progress transfer now with result (anything but IN_PROGRESS), the bytes sent and
 * an optional reason. -ENOENT if id is unknown, -EALREADY if it already ended, -EINVAL. */
int history_finish(
    struct db *db, int64_t id, enum history_result result, uint64_t bytes, const char *reason);

/* The device came back after a VERIFIED transfer: installed true sets INSTALLED, false
 * INSTALL_FAILED (reason optional). -ENOENT if id is unknown, -EALREADY if the entry is not
 * VERIFIED. */
int history_confirm(struct db *db, int64_t id, bool installed, const char *reason);

/* The install a device that says hello may just have done: serial's newest entry, if it is
 * VERIFIED (a later transfer, whatever its result, supersedes it). -ENOENT if there is none. */
int history_pending_install(struct db *db, const char *serial, struct history_entry *out);

/* Lists entries newest first: for one serial or all (serial NULL), at most limit of them
 * (0: HISTORY_MAX). *out is malloc'ed (free()), *n its length; an empty list gives *out NULL
 * and *n 0. */
int history_list(
    struct db *db, const char *serial, size_t limit, struct history_entry **out, size_t *n);

/* Marks every in-progress entry aborted with reason (the process that ran them is gone).
 * Called by store_open(). *count (may be NULL) receives how many. */
int history_abort_stale(struct db *db, const char *reason, uint64_t *count);

/* Name for logs and D-Bus: "in_progress", "verified", "installed", "failed", "aborted",
 * "install_failed". */
const char *history_result_name(enum history_result r);

#endif
