/* Transfer history (see history.h): one row per attempt, newest HISTORY_MAX kept. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"
#include "history.h"

#define HISTORY_COLUMNS                                                                      \
	"id, serial, from_version, to_version, sha256, link, started, ended, bytes, result," \
	" reason"

static const char sql_insert[] =
    "INSERT INTO history (serial, from_version, to_version, sha256, link, started, result)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'in_progress')";
/* ids only grow (AUTOINCREMENT), so the newest HISTORY_MAX rows are the highest ids. */
static const char sql_prune[] = "DELETE FROM history WHERE id <= ?1";
static const char sql_get[] = "SELECT " HISTORY_COLUMNS " FROM history WHERE id = ?1";
static const char sql_finish[] =
    "UPDATE history SET ended = ?2, result = ?3, bytes = ?4, reason = ?5"
    " WHERE id = ?1 AND result = 'in_progress'";
static const char sql_confirm[] = "UPDATE history SET result = ?2, reason = coalesce(?3, reason)"
				  " WHERE id = ?1 AND result = 'verified'";
static const char sql_newest[] = "SELECT " HISTORY_COLUMNS " FROM history WHERE serial = ?1"
				 " ORDER BY id DESC LIMIT 1";
static const char sql_list_all[] =
    "SELECT " HISTORY_COLUMNS " FROM history ORDER BY id DESC LIMIT ?1";
static const char sql_list_one[] = "SELECT " HISTORY_COLUMNS " FROM history WHERE serial = ?2"
				   " ORDER BY id DESC LIMIT ?1";
static const char sql_abort[] = "UPDATE history SET result = 'aborted', ended = ?1,"
				" reason = ?2 WHERE result = 'in_progress'";

static const char *const history_names[] = {
    [HISTORY_RESULT_IN_PROGRESS] = "in_progress",
    [HISTORY_RESULT_VERIFIED] = "verified",
    [HISTORY_RESULT_INSTALLED] = "installed",
    [HISTORY_RESULT_FAILED] = "failed",
    [HISTORY_RESULT_ABORTED] = "aborted",
    [HISTORY_RESULT_INSTALL_FAILED] = "install_failed",
};
#define HISTORY_NRESULTS (sizeof(history_names) / sizeof(history_names[0]))

const char *
history_result_name(enum history_result r)
{
	switch (r) {
	case HISTORY_RESULT_IN_PROGRESS:
	case HISTORY_RESULT_VERIFIED:
	case HISTORY_RESULT_INSTALLED:
	case HISTORY_RESULT_FAILED:
	case HISTORY_RESULT_ABORTED:
	case HISTORY_RESULT_INSTALL_FAILED:
		return history_names[r];
	}
	return "?";
}

static enum history_result
history_result_parse(const unsigned char *t)
{
	size_t i;

	for (i = 0; t && i < HISTORY_NRESULTS; i++)
		if (strcmp((const char *)t, history_names[i]) == 0)
			return (enum history_result)i;
	return HISTORY_RESULT_ABORTED;
}

static void
history_row(sqlite3_stmt *st, struct history_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->id = sqlite3_column_int64(st, 0);
	db_column_copy(st, 1, e->serial, sizeof(e->serial));
	db_column_copy(st, 2, e->from_version, sizeof(e->from_version));
	db_column_copy(st, 3, e->to_version, sizeof(e->to_version));
	db_column_copy(st, 4, e->sha256, sizeof(e->sha256));
	db_column_copy(st, 5, e->link, sizeof(e->link));
	e->started = sqlite3_column_int64(st, 6);
	e->ended = sqlite3_column_int64(st, 7);
	e->bytes = db_column_u64(st, 8);
	e->result = history_result_parse(sqlite3_column_text(st, 9));
	db_column_copy(st, 10, e->reason, sizeof(e->reason));
}

static int
history_text_check(struct db *db, const char *what, const char *s, size_t max)
{
	if (!s || !ident_text_valid(s, strnlen(s, max + 1), max))
		return db_err(db, -EINVAL, "transfer: %s is not 1..%zu printable bytes", what, max);
	return 0;
}

static int
history_reason_check(struct db *db, const char *reason)
{
	if (reason && *reason)
		return history_text_check(db, "reason", reason, HISTORY_REASON_MAX);
	return 0;
}

int
history_begin(struct db *db, const struct history_start *h, int64_t *id)
{
	char key[STORE_SHA256_HEX + 1];
	sqlite3_stmt *st;
	int64_t newid = 0;
	int r = 0;

	if (!h->serial || !ident_serial_valid(h->serial, strnlen(h->serial, IDENT_SERIAL_MAX + 1)))
		r = db_err(db, -EINVAL, "transfer: device serial is not 1..%d of [-a-zA-Z0-9_]",
		    IDENT_SERIAL_MAX);
	if (r == 0)
		r = history_text_check(db, "from_version", h->from_version, IDENT_VERSION_MAX);
	if (r == 0)
		r = history_text_check(db, "to_version", h->to_version, IDENT_VERSION_MAX);
	if (r == 0)
		r = history_text_check(db, "link", h->link, DEVICES_LINK_MAX);
	if (r == 0 && store_sha256_norm(h->sha256, key) < 0)
		r = db_err(db, -EINVAL, "transfer: sha256 is not 64 hex digits");
	if (r < 0)
		return r;

	r = db_begin(db);
	if (r < 0)
		return r;
	r = db_prepare(db, sql_insert, &st);
	if (r == 0) {
		db_bind_text(st, 1, h->serial);
		db_bind_text(st, 2, h->from_version);
		db_bind_text(st, 3, h->to_version);
		db_bind_text(st, 4, key);
		db_bind_text(st, 5, h->link);
		sqlite3_bind_int64(st, 6, db_now());
		r = db_step(db, st, "recording a transfer");
		if (r == -ENOENT)
			r = db_err(db, -ENOENT, "transfer: device %s is unknown", h->serial);
	}
	if (r == 0) {
		newid = db_last_insert_id(db);
		r = db_prepare(db, sql_prune, &st);
	}
	if (r == 0) {
		sqlite3_bind_int64(st, 1, newid - HISTORY_MAX);
		r = db_step(db, st, "pruning old transfers");
	}
	if (r == 0)
		r = db_commit(db);
	else
		db_rollback(db);
	if (r == 0)
		*id = newid;
	return r;
}

/* After an UPDATE by id matched nothing: -ENOENT if id does not exist, else -EALREADY. */
static int
history_missing(struct db *db, int64_t id, const char *why)
{
	sqlite3_stmt *st;
	int r;

	r = db_prepare(db, sql_get, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, id);
	r = db_step(db, st, "reading a transfer");
	db_reset(st);
	if (r < 0)
		return r;
	if (r == 0)
		return db_err(db, -ENOENT, "transfer %lld is unknown", (long long)id);
	return db_err(db, -EALREADY, "transfer %lld %s", (long long)id, why);
}

int
history_finish(
    struct db *db, int64_t id, enum history_result result, uint64_t bytes, const char *reason)
{
	sqlite3_stmt *st;
	int r;

	if ((unsigned)result >= HISTORY_NRESULTS || result == HISTORY_RESULT_IN_PROGRESS)
		return db_err(db, -EINVAL, "transfer %lld: cannot finish with result %d",
		    (long long)id, (int)result);
	if (bytes > INT64_MAX)
		return db_err(db, -EINVAL, "transfer %lld: byte count out of range", (long long)id);
	r = history_reason_check(db, reason);
	if (r == 0)
		r = db_prepare(db, sql_finish, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, db_now());
	db_bind_text(st, 3, history_names[result]);
	sqlite3_bind_int64(st, 4, (int64_t)bytes);
	db_bind_text(st, 5, reason);
	r = db_step(db, st, "finishing a transfer");
	if (r < 0 || db_changes(db) > 0)
		return r;
	return history_missing(db, id, "has already ended");
}

int
history_confirm(struct db *db, int64_t id, bool installed, const char *reason)
{
	sqlite3_stmt *st;
	int r;

	r = history_reason_check(db, reason);
	if (r == 0)
		r = db_prepare(db, sql_confirm, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, id);
	db_bind_text(st, 2,
	    history_names[installed ? HISTORY_RESULT_INSTALLED : HISTORY_RESULT_INSTALL_FAILED]);
	db_bind_text(st, 3, reason && *reason ? reason : NULL);
	r = db_step(db, st, "confirming an install");
	if (r < 0 || db_changes(db) > 0)
		return r;
	return history_missing(db, id, "is not a verified transfer");
}

int
history_pending_install(struct db *db, const char *serial, struct history_entry *out)
{
	struct history_entry e;
	sqlite3_stmt *st;
	int r;

	if (!serial || !ident_serial_valid(serial, strnlen(serial, IDENT_SERIAL_MAX + 1)))
		return db_err(
		    db, -EINVAL, "device serial is not 1..%d of [-a-zA-Z0-9_]", IDENT_SERIAL_MAX);
	r = db_query_text(db, sql_newest, serial, "reading transfers", &st);
	if (r < 0)
		return r;
	if (r > 0) {
		history_row(st, &e);
		db_reset(st);
		if (e.result == HISTORY_RESULT_VERIFIED) {
			*out = e;
			return 0;
		}
	}
	return db_err(db, -ENOENT, "device %s has no install to confirm", serial);
}

int
history_list(struct db *db, const char *serial, size_t limit, struct history_entry **out, size_t *n)
{
	struct history_entry *list = NULL, *grown;
	size_t len = 0, cap = 0;
	sqlite3_stmt *st;
	int r;

	if (serial && !ident_serial_valid(serial, strnlen(serial, IDENT_SERIAL_MAX + 1)))
		return db_err(
		    db, -EINVAL, "device serial is not 1..%d of [-a-zA-Z0-9_]", IDENT_SERIAL_MAX);
	if (limit == 0 || limit > HISTORY_MAX)
		limit = HISTORY_MAX;
	r = db_prepare(db, serial ? sql_list_one : sql_list_all, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, (int64_t)limit);
	if (serial)
		db_bind_text(st, 2, serial);
	while ((r = db_step(db, st, "listing transfers")) == 1) {
		if (len == cap) {
			cap = cap ? 2 * cap : 16;
			grown = reallocarray(list, cap, sizeof(*list));
			if (!grown) {
				db_reset(st);
				r = db_err(db, -ENOMEM, "out of memory");
				break;
			}
			list = grown;
		}
		history_row(st, &list[len++]);
	}
	if (r < 0) {
		free(list);
		return r;
	}
	*out = list;
	*n = len;
	return 0;
}

int
history_abort_stale(struct db *db, const char *reason, uint64_t *count)
{
	sqlite3_stmt *st;
	int r;

	r = history_reason_check(db, reason);
	if (r == 0)
		r = db_prepare(db, sql_abort, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, db_now());
	db_bind_text(st, 2, reason);
	r = db_step(db, st, "aborting stale transfers");
	if (r == 0 && count)
		*count = (uint64_t)db_changes(db);
	return r;
}
