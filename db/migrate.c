/* The schema, as a list of forward-only steps. Each step runs in its own transaction together
 * with the PRAGMA user_version that records it, so a crash or a full disk mid-step leaves the
 * previous version intact. Never edit a step once released: add a new one.
 *
 * Version 1 is the table set issue 3 describes (artifacts, devices, history); version 2 adds
 * the per-device answer cache, the install state machine and the per-process verified flag. */
#include <errno.h>
#include <stdio.h>

#include "db_internal.h"
#include "migrate.h"

struct migrate_step {
	int version;
	const char *sql;
};

static const char migrate_v1[] =
    /* One row per payload, keyed by its SHA-256. lru orders eviction: a counter bumped on
     * every use, because the wall clock of a gateway without an RTC can jump. */
    "CREATE TABLE artifacts ("
    " sha256 TEXT PRIMARY KEY NOT NULL"
    "  CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),"
    " artifact_id INTEGER NOT NULL DEFAULT 0,"
    " version TEXT NOT NULL,"
    " is_delta INTEGER NOT NULL DEFAULT 0 CHECK (is_delta IN (0, 1)),"
    " size INTEGER NOT NULL CHECK (size > 0),"
    " md5 TEXT CHECK (md5 IS NULL OR length(md5) = 32),"
    " state TEXT NOT NULL CHECK (state IN ('partial', 'complete')),"
    " bytes_present INTEGER NOT NULL DEFAULT 0"
    "  CHECK (bytes_present >= 0 AND bytes_present <= size),"
    " url TEXT,"
    " url_fetched INTEGER NOT NULL DEFAULT 0,"
    " created INTEGER NOT NULL,"
    " last_used INTEGER NOT NULL,"
    " lru INTEGER NOT NULL,"
    " pins INTEGER NOT NULL DEFAULT 0 CHECK (pins >= 0)"
    ") WITHOUT ROWID;"
    "CREATE INDEX artifacts_lru ON artifacts (lru);"
    "CREATE TABLE devices ("
    " serial TEXT PRIMARY KEY NOT NULL,"
    " hardware_version TEXT NOT NULL,"
    " software_type TEXT NOT NULL,"
    " current_version TEXT NOT NULL,"
    " link TEXT NOT NULL,"
    " first_seen INTEGER NOT NULL,"
    " last_seen INTEGER NOT NULL,"
    " last_check INTEGER NOT NULL DEFAULT 0,"
    " last_result TEXT NOT NULL DEFAULT 'none'"
    "  CHECK (last_result IN ('none', 'update', 'no_update', 'error')),"
    " last_reason TEXT"
    ") WITHOUT ROWID;"
    "CREATE TABLE history ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " serial TEXT NOT NULL REFERENCES devices (serial) ON DELETE CASCADE,"
    " from_version TEXT NOT NULL,"
    " to_version TEXT NOT NULL,"
    " sha256 TEXT NOT NULL,"
    " link TEXT NOT NULL,"
    " started INTEGER NOT NULL,"
    " ended INTEGER NOT NULL DEFAULT 0,"
    " bytes INTEGER NOT NULL DEFAULT 0 CHECK (bytes >= 0),"
    " result TEXT NOT NULL CHECK (result IN ('in_progress', 'verified', 'installed',"
    "  'failed', 'aborted', 'install_failed')),"
    " reason TEXT"
    ");"
    "CREATE INDEX history_serial ON history (serial, id);"
    "CREATE INDEX history_in_progress ON history (result) WHERE result = 'in_progress';";

static const char migrate_v2[] =
    /* verified: hashed by the running process; reset on every start like pins. */
    "ALTER TABLE artifacts ADD COLUMN verified INTEGER NOT NULL DEFAULT 0"
    " CHECK (verified IN (0, 1));"
    /* The last successful upstream answer, kept apart from last_* (which errors overwrite) so
     * a failed check does not throw away a good answer. */
    "ALTER TABLE devices ADD COLUMN answer_time INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE devices ADD COLUMN answer_result TEXT"
    " CHECK (answer_result IS NULL OR answer_result IN ('update', 'no_update'));"
    "ALTER TABLE devices ADD COLUMN answer_reason TEXT;"
    "ALTER TABLE devices ADD COLUMN answer_json TEXT"
    " CHECK (answer_json IS NULL OR length(answer_json) <= 65536);"
    "ALTER TABLE devices ADD COLUMN install_state TEXT NOT NULL DEFAULT 'none'"
    " CHECK (install_state IN ('none', 'pending', 'confirmed', 'failed'));"
    "ALTER TABLE devices ADD COLUMN install_version TEXT;"
    "ALTER TABLE devices ADD COLUMN install_sha256 TEXT;"
    "ALTER TABLE devices ADD COLUMN install_time INTEGER NOT NULL DEFAULT 0;";

static const struct migrate_step migrate_steps[] = {
    {1, migrate_v1},
    {2, migrate_v2},
};

_Static_assert(sizeof(migrate_steps) / sizeof(migrate_steps[0]) == DB_SCHEMA_VERSION,
    "every schema version needs exactly one migration step");

/* True if the file holds no schema at all (new, or zero-length). */
static int
migrate_is_empty(struct db *db, bool *empty)
{
	int64_t n;
	int r = db_query_int(db, "SELECT count(*) FROM sqlite_schema", &n);

	if (r == 0)
		*empty = (n == 0);
	return r;
}

static int
migrate_step_run(struct db *db, const struct migrate_step *step)
{
	char sql[128];
	int r;

	r = db_begin(db);
	if (r < 0)
		return r;
	r = db_exec(db, step->sql, "migrating the schema");
	if (r == 0 && step->version == 1) {
		snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", DB_APPLICATION_ID);
		r = db_exec(db, sql, "marking the database as otagw's");
	}
	if (r == 0) {
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", step->version);
		r = db_exec(db, sql, "recording the schema version");
	}
	if (r == 0)
		r = db_commit(db);
	else
		db_rollback(db);
	if (r < 0) {
		char why[DB_ERRMSG_MAX];

		snprintf(why, sizeof(why), "%s", db_errmsg(db));
		return db_err(db, r, "migrating database %s to schema version %d failed: %s",
		    db_path(db), step->version, why);
	}
	return 0;
}

int
migrate_run(struct db *db)
{
	int64_t version = 0, app_id = 0;
	bool empty = false;
	size_t i;
	int r;

	r = db_query_int(db, "PRAGMA user_version", &version);
	if (r == 0)
		r = db_query_int(db, "PRAGMA application_id", &app_id);
	if (r == 0)
		r = migrate_is_empty(db, &empty);
	if (r < 0)
		return r;

	if (app_id != DB_APPLICATION_ID && !(app_id == 0 && version == 0 && empty))
		return db_err(db, -EBADMSG,
		    "%s is not an otagw database (application_id %#llx, %s): point state_dir "
		    "elsewhere or move the file away",
		    db_path(db), (unsigned long long)app_id,
		    empty ? "no tables" : "it holds someone else's tables");
	if (version > DB_SCHEMA_VERSION)
		return db_err(db, -ENOTSUP,
		    "database %s has schema version %lld, but this otagwd knows versions up to "
		    "%d: run a newer otagwd, or move the file away to start afresh",
		    db_path(db), (long long)version, DB_SCHEMA_VERSION);
	if (version < 0)
		return db_err(db, -EBADMSG, "database %s has a negative schema version %lld",
		    db_path(db), (long long)version);

	for (i = 0; i < sizeof(migrate_steps) / sizeof(migrate_steps[0]); i++) {
		if (migrate_steps[i].version <= version)
			continue;
		r = migrate_step_run(db, &migrate_steps[i]);
		if (r < 0)
			return r;
	}
	return 0;
}
