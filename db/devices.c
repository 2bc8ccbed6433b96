/* The devices table: identity from hellos, the last upstream check, the cached answer and the
 * install state (see devices.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"
#include "devices.h"

#define DEVICES_COLUMNS                                                                 \
	"serial, hardware_version, software_type, current_version, link, first_seen,"   \
	" last_seen, last_check, last_result, last_reason, answer_time, install_state," \
	" install_version, install_sha256, install_time"

static const char sql_get[] = "SELECT " DEVICES_COLUMNS " FROM devices WHERE serial = ?1";
static const char sql_next[] = "SELECT " DEVICES_COLUMNS " FROM devices WHERE serial > ?1"
			       " ORDER BY serial LIMIT 1";
static const char sql_count[] = "SELECT count(*) FROM devices";
static const char sql_upsert[] =
    "INSERT INTO devices (serial, hardware_version, software_type, current_version, link,"
    " first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"
    " ON CONFLICT (serial) DO UPDATE SET hardware_version = excluded.hardware_version,"
    " software_type = excluded.software_type, current_version = excluded.current_version,"
    " link = excluded.link, last_seen = excluded.last_seen";
static const char sql_check[] =
    "UPDATE devices SET last_check = ?2, last_result = ?3, last_reason = ?4 WHERE serial = ?1";
static const char sql_answer[] =
    "UPDATE devices SET answer_time = ?2, answer_result = ?3, answer_reason = ?4,"
    " answer_json = ?5 WHERE serial = ?1";
static const char sql_get_answer[] =
    "SELECT answer_time, answer_result, answer_reason, answer_json FROM devices"
    " WHERE serial = ?1";
static const char sql_forget[] =
    "UPDATE devices SET answer_time = 0, answer_result = NULL, answer_reason = NULL,"
    " answer_json = NULL WHERE serial = ?1";
static const char sql_install[] =
    "UPDATE devices SET install_state = ?2, install_version = ?3, install_sha256 = ?4,"
    " install_time = ?5 WHERE serial = ?1";

static const char *const devices_result_names[] = {
    [DEVICES_RESULT_NONE] = "none",
    [DEVICES_RESULT_UPDATE] = "update",
    [DEVICES_RESULT_NO_UPDATE] = "no_update",
    [DEVICES_RESULT_ERROR] = "error",
};

static const char *const devices_install_names[] = {
    [DEVICES_INSTALL_NONE] = "none",
    [DEVICES_INSTALL_PENDING] = "pending",
    [DEVICES_INSTALL_CONFIRMED] = "confirmed",
    [DEVICES_INSTALL_FAILED] = "failed",
};

const char *
devices_result_name(enum devices_result r)
{
	switch (r) {
	case DEVICES_RESULT_NONE:
	case DEVICES_RESULT_UPDATE:
	case DEVICES_RESULT_NO_UPDATE:
	case DEVICES_RESULT_ERROR:
		return devices_result_names[r];
	}
	return "?";
}

const char *
devices_install_name(enum devices_install s)
{
	switch (s) {
	case DEVICES_INSTALL_NONE:
	case DEVICES_INSTALL_PENDING:
	case DEVICES_INSTALL_CONFIRMED:
	case DEVICES_INSTALL_FAILED:
		return devices_install_names[s];
	}
	return "?";
}

/* Parses a stored name back; an unknown value (a hand-edited file) reads as the first. */
static unsigned
devices_parse(const unsigned char *t, const char *const *names, unsigned n)
{
	unsigned i;

	for (i = 0; t && i < n; i++)
		if (strcmp((const char *)t, names[i]) == 0)
			return i;
	return 0;
}

static int
devices_serial_check(struct db *db, const char *serial)
{
	if (!serial || !ident_serial_valid(serial, strnlen(serial, IDENT_SERIAL_MAX + 1)))
		return db_err(
		    db, -EINVAL, "device serial is not 1..%d of [-a-zA-Z0-9_]", IDENT_SERIAL_MAX);
	return 0;
}

static int
devices_text_check(struct db *db, const char *serial, const char *what, const char *s, size_t max)
{
	if (!s || !ident_text_valid(s, strnlen(s, max + 1), max))
		return db_err(
		    db, -EINVAL, "device %s: %s is not 1..%zu printable bytes", serial, what, max);
	return 0;
}

/* An optional reason: NULL, or 0..DEVICES_REASON_MAX printable bytes. */
static int
devices_reason_check(struct db *db, const char *serial, const char *reason)
{
	if (reason && *reason)
		return devices_text_check(db, serial, "reason", reason, DEVICES_REASON_MAX);
	return 0;
}

static void
devices_row(sqlite3_stmt *st, struct devices_entry *d)
{
	memset(d, 0, sizeof(*d));
	db_column_copy(st, 0, d->serial, sizeof(d->serial));
	db_column_copy(st, 1, d->hardware_version, sizeof(d->hardware_version));
	db_column_copy(st, 2, d->software_type, sizeof(d->software_type));
	db_column_copy(st, 3, d->current_version, sizeof(d->current_version));
	db_column_copy(st, 4, d->link, sizeof(d->link));
	d->first_seen = sqlite3_column_int64(st, 5);
	d->last_seen = sqlite3_column_int64(st, 6);
	d->last_check = sqlite3_column_int64(st, 7);
	d->last_result =
	    (enum devices_result)devices_parse(sqlite3_column_text(st, 8), devices_result_names, 4);
	db_column_copy(st, 9, d->last_reason, sizeof(d->last_reason));
	d->answer_time = sqlite3_column_int64(st, 10);
	d->install_state = (enum devices_install)devices_parse(
	    sqlite3_column_text(st, 11), devices_install_names, 4);
	db_column_copy(st, 12, d->install_version, sizeof(d->install_version));
	db_column_copy(st, 13, d->install_sha256, sizeof(d->install_sha256));
	d->install_time = sqlite3_column_int64(st, 14);
}

/* Finishes a one-row UPDATE on serial: -ENOENT if no row matched. */
static int
devices_updated(struct db *db, const char *serial, int r)
{
	if (r == 0 && db_changes(db) == 0)
		r = db_err(db, -ENOENT, "device %s is unknown", serial);
	return r;
}

int
devices_upsert(struct db *db, const struct devices_hello *h)
{
	struct devices_entry old;
	bool changed = false;
	sqlite3_stmt *st;
	int64_t n;
	int r;

	r = devices_serial_check(db, h->serial);
	if (r == 0)
		r = devices_text_check(
		    db, h->serial, "hardware_version", h->hardware_version, IDENT_HW_MAX);
	if (r == 0)
		r = devices_text_check(
		    db, h->serial, "software_type", h->software_type, IDENT_SWTYPE_MAX);
	if (r == 0)
		r = devices_text_check(
		    db, h->serial, "current_version", h->current_version, IDENT_VERSION_MAX);
	if (r == 0)
		r = devices_text_check(db, h->serial, "link", h->link, DEVICES_LINK_MAX);
	if (r < 0)
		return r;

	r = db_begin(db);
	if (r < 0)
		return r;
	r = devices_get(db, h->serial, &old);
	if (r == 0) {
		/* The cached answer answered a different question. */
		changed = strcmp(old.hardware_version, h->hardware_version) != 0 ||
			  strcmp(old.software_type, h->software_type) != 0 ||
			  strcmp(old.current_version, h->current_version) != 0;
	} else if (r == -ENOENT) {
		/* A device flood (a misbehaving BLE neighbourhood) must not grow the file without
		 * bound. */
		r = db_query_int(db, sql_count, &n);
		if (r == 0 && n >= DEVICES_MAX)
			r = db_err(db, -ENOSPC, "device %s refused: %d devices are already known",
			    h->serial, DEVICES_MAX);
	}
	if (r == 0)
		r = db_prepare(db, sql_upsert, &st);
	if (r == 0) {
		db_bind_text(st, 1, h->serial);
		db_bind_text(st, 2, h->hardware_version);
		db_bind_text(st, 3, h->software_type);
		db_bind_text(st, 4, h->current_version);
		db_bind_text(st, 5, h->link);
		sqlite3_bind_int64(st, 6, db_now());
		r = db_step(db, st, "recording a device");
	}
	if (r == 0 && changed)
		r = devices_forget_answer(db, h->serial);
	if (r < 0) {
		db_rollback(db);
		return r;
	}
	return db_commit(db);
}

int
devices_get(struct db *db, const char *serial, struct devices_entry *out)
{
	sqlite3_stmt *st;
	int r;

	r = devices_serial_check(db, serial);
	if (r == 0)
		r = db_query_text(db, sql_get, serial, "reading a device", &st);
	if (r > 0) {
		devices_row(st, out);
		db_reset(st);
		return 0;
	}
	return r == 0 ? db_err(db, -ENOENT, "device %s is unknown", serial) : r;
}

int
devices_foreach(struct db *db, int (*cb)(const struct devices_entry *d, void *arg), void *arg)
{
	struct devices_entry d;
	char after[IDENT_SERIAL_MAX + 1] = "";
	sqlite3_stmt *st;
	int r;

	/* One row per query, keyed on the serial, so cb may change the table. */
	for (;;) {
		r = db_prepare(db, sql_next, &st);
		if (r < 0)
			return r;
		db_bind_text(st, 1, after);
		r = db_step(db, st, "listing devices");
		if (r <= 0)
			return r;
		devices_row(st, &d);
		db_reset(st);
		memcpy(after, d.serial, sizeof(after));
		r = cb(&d, arg);
		if (r != 0)
			return r;
	}
}

int
devices_record_check(struct db *db, const char *serial, const struct devices_check *c)
{
	sqlite3_stmt *st;
	size_t len;
	int r;

	r = devices_serial_check(db, serial);
	if (r == 0)
		r = devices_reason_check(db, serial, c->reason);
	if (r < 0)
		return r;
	if (c->result != DEVICES_RESULT_UPDATE && c->result != DEVICES_RESULT_NO_UPDATE &&
	    c->result != DEVICES_RESULT_ERROR)
		return db_err(db, -EINVAL,
		    "device %s: a check result must be update, no_update "
		    "or error",
		    serial);
	if (c->result == DEVICES_RESULT_UPDATE && !c->release_json)
		return db_err(
		    db, -EINVAL, "device %s: an update answer needs its release JSON", serial);
	if (c->release_json) {
		if (c->result != DEVICES_RESULT_UPDATE)
			return db_err(db, -EINVAL,
			    "device %s: only an update answer carries a release", serial);
		len = strnlen(c->release_json, DEVICES_ANSWER_MAX + 1);
		if (len > DEVICES_ANSWER_MAX)
			return db_err(db, -E2BIG,
			    "device %s: release JSON is longer than %d bytes; not cached", serial,
			    DEVICES_ANSWER_MAX);
	}

	r = db_begin(db);
	if (r < 0)
		return r;
	r = db_prepare(db, sql_check, &st);
	if (r == 0) {
		db_bind_text(st, 1, serial);
		sqlite3_bind_int64(st, 2, c->time);
		db_bind_text(st, 3, devices_result_names[c->result]);
		db_bind_text(st, 4, c->reason);
		r = devices_updated(db, serial, db_step(db, st, "recording a check"));
	}
	if (r == 0 && c->result != DEVICES_RESULT_ERROR) {
		r = db_prepare(db, sql_answer, &st);
		if (r == 0) {
			db_bind_text(st, 1, serial);
			sqlite3_bind_int64(st, 2, c->time);
			db_bind_text(st, 3, devices_result_names[c->result]);
			db_bind_text(st, 4, c->reason);
			db_bind_text(st, 5, c->release_json);
			r = db_step(db, st, "caching an answer");
		}
	}
	if (r < 0) {
		db_rollback(db);
		return r;
	}
	return db_commit(db);
}

int
devices_get_answer(struct db *db, const char *serial, struct devices_answer *out)
{
	const unsigned char *json;
	struct devices_answer a;
	sqlite3_stmt *st;
	int r;

	r = devices_serial_check(db, serial);
	if (r < 0)
		return r;
	r = db_query_text(db, sql_get_answer, serial, "reading a cached answer", &st);
	if (r == 0)
		return db_err(db, -ENOENT, "device %s is unknown", serial);
	if (r < 0)
		return r;
	memset(&a, 0, sizeof(a));
	a.time = sqlite3_column_int64(st, 0);
	a.result =
	    (enum devices_result)devices_parse(sqlite3_column_text(st, 1), devices_result_names, 4);
	db_column_copy(st, 2, a.reason, sizeof(a.reason));
	json = sqlite3_column_text(st, 3);
	if (a.result != DEVICES_RESULT_UPDATE && a.result != DEVICES_RESULT_NO_UPDATE) {
		db_reset(st);
		return db_err(db, -ENOENT, "device %s has no cached answer", serial);
	}
	if (json) {
		size_t len = (size_t)sqlite3_column_bytes(st, 3);

		if (len > DEVICES_ANSWER_MAX ||
		    !(a.release_json = strndup((const char *)json, len))) {
			db_reset(st);
			return db_err(db, len > DEVICES_ANSWER_MAX ? -EBADMSG : -ENOMEM,
			    "device %s: cannot read the cached answer", serial);
		}
	}
	db_reset(st);
	*out = a;
	return 0;
}

void
devices_answer_clear(struct devices_answer *a)
{
	if (!a)
		return;
	free(a->release_json);
	a->release_json = NULL;
}

int
devices_forget_answer(struct db *db, const char *serial)
{
	sqlite3_stmt *st;
	int r;

	r = devices_serial_check(db, serial);
	if (r == 0)
		r = db_prepare(db, sql_forget, &st);
	if (r < 0)
		return r;
	db_bind_text(st, 1, serial);
	return devices_updated(db, serial, db_step(db, st, "forgetting an answer"));
}

int
devices_set_install(struct db *db, const char *serial, enum devices_install state,
    const char *version, const char *sha256)
{
	char key[STORE_SHA256_HEX + 1] = "";
	struct devices_entry d;
	sqlite3_stmt *st;
	int r;

	r = devices_serial_check(db, serial);
	if (r < 0)
		return r;
	if (version)
		r = devices_text_check(db, serial, "install version", version, IDENT_VERSION_MAX);
	if (r == 0 && sha256 && store_sha256_norm(sha256, key) < 0)
		r = db_err(db, -EINVAL, "device %s: install sha256 is not 64 hex digits", serial);
	if (r == 0 && (unsigned)state > DEVICES_INSTALL_FAILED)
		r = db_err(db, -EINVAL, "device %s: unknown install state %d", serial, (int)state);
	if (r < 0)
		return r;

	r = db_begin(db);
	if (r < 0)
		return r;
	r = devices_get(db, serial, &d);
	if (r < 0) {
		db_rollback(db);
		return r;
	}
	switch (state) {
	case DEVICES_INSTALL_NONE:
		version = NULL;
		break;
	case DEVICES_INSTALL_PENDING:
		if (!version || !sha256)
			r = db_err(db, -EINVAL,
			    "device %s: a pending install needs a version and a sha256", serial);
		break;
	case DEVICES_INSTALL_CONFIRMED:
	case DEVICES_INSTALL_FAILED:
		/* Confirming keeps what was pending; naming something else is a caller bug. */
		if (d.install_state != DEVICES_INSTALL_PENDING ||
		    (version && strcmp(version, d.install_version) != 0) ||
		    (sha256 && strcmp(key, d.install_sha256) != 0))
			r = db_err(db, -EINVAL,
			    "device %s: no pending install of that image to confirm", serial);
		version = d.install_version;
		snprintf(key, sizeof(key), "%s", d.install_sha256);
		break;
	}
	if (r == 0)
		r = db_prepare(db, sql_install, &st);
	if (r == 0) {
		db_bind_text(st, 1, serial);
		db_bind_text(st, 2, devices_install_names[state]);
		db_bind_text(st, 3, version);
		db_bind_text(st, 4, version ? key : NULL);
		sqlite3_bind_int64(st, 5, db_now());
		r = db_step(db, st, "recording the install state");
	}
	if (r < 0) {
		db_rollback(db);
		return r;
	}
	return db_commit(db);
}
