/* The sqlite handle: open with otagw's pragmas, migrate, cache prepared statements, nest
 * transactions, and turn sqlite result codes into negative errno values with a message. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db_internal.h"
#include "migrate.h"

/* How long a statement waits for a lock held by another connection (an operator's sqlite3
 * shell) before failing with -EBUSY. The daemon is the only writer, so this is rare; it is
 * short because it blocks the event loop while it waits. */
#define DB_BUSY_TIMEOUT_MS 1000

struct db_stmt {
	const char *sql;
	sqlite3_stmt *stmt;
};

struct db {
	sqlite3 *sql;
	char *path;
	struct db_stmt *stmts;
	size_t nstmts, capstmts;
	unsigned depth; /* transaction nesting */
	char errmsg[DB_ERRMSG_MAX];
};

void
db_seterr(struct db *db, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(db->errmsg, sizeof(db->errmsg), fmt, ap);
	va_end(ap);
}

/* The errno an I/O-level sqlite failure stands for: the system errno when sqlite kept one. */
static int
db_errno(sqlite3 *sql, int fallback)
{
	int e = sql ? sqlite3_system_errno(sql) : 0;

	return e > 0 ? -e : fallback;
}

static int
db_rc_errno(sqlite3 *sql, int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EBADMSG;
	case SQLITE_TOOBIG:
		return -E2BIG;
	case SQLITE_CONSTRAINT:
		return (rc == SQLITE_CONSTRAINT_FOREIGNKEY) ? -ENOENT : -EINVAL;
	case SQLITE_MISMATCH:
	case SQLITE_RANGE:
		return -EINVAL;
	case SQLITE_CANTOPEN:
		return db_errno(sql, -ENOENT);
	case SQLITE_IOERR:
		return db_errno(sql, -EIO);
	default:
		return -EIO;
	}
}

int
db_sqlerr(struct db *db, int rc, const char *what)
{
	int err = db_rc_errno(db->sql, rc);

	if (err == -EBADMSG)
		return db_err(db, err,
		    "%s: database %s is corrupt (%s): stop otagwd and move the file away; a "
		    "new one is created on start",
		    what, db->path, sqlite3_errmsg(db->sql));
	if (err == -EBUSY)
		return db_err(db, err, "%s: database %s is locked by another process (%s)", what,
		    db->path, sqlite3_errmsg(db->sql));
	return db_err(db, err, "%s: %s (database %s)", what, sqlite3_errmsg(db->sql), db->path);
}

int
db_prepare(struct db *db, const char *sql, sqlite3_stmt **out)
{
	struct db_stmt *n;
	sqlite3_stmt *st;
	size_t i;
	int rc;

	for (i = 0; i < db->nstmts; i++) {
		if (db->stmts[i].sql == sql) {
			sqlite3_reset(db->stmts[i].stmt);
			sqlite3_clear_bindings(db->stmts[i].stmt);
			*out = db->stmts[i].stmt;
			return 0;
		}
	}
	if (db->nstmts == db->capstmts) {
		size_t cap = db->capstmts ? 2 * db->capstmts : 32;

		n = reallocarray(db->stmts, cap, sizeof(*n));
		if (!n)
			return db_err(db, -ENOMEM, "out of memory");
		db->stmts = n;
		db->capstmts = cap;
	}
	rc = sqlite3_prepare_v3(db->sql, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
	if (rc != SQLITE_OK)
		return db_sqlerr(db, rc, "preparing a statement");
	db->stmts[db->nstmts].sql = sql;
	db->stmts[db->nstmts].stmt = st;
	db->nstmts++;
	*out = st;
	return 0;
}

int
db_step(struct db *db, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return 0;
	}
	/* The message belongs to this failure: read it before reset can replace it. */
	rc = db_sqlerr(db, rc, what);
	sqlite3_reset(st);
	return rc;
}

void
db_reset(sqlite3_stmt *st)
{
	if (st)
		sqlite3_reset(st);
}

int
db_exec(struct db *db, const char *sql, const char *what)
{
	int rc = sqlite3_exec(db->sql, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : db_sqlerr(db, rc, what);
}

int
db_query_text(
    struct db *db, const char *sql, const char *text, const char *what, sqlite3_stmt **out)
{
	sqlite3_stmt *st = NULL; /* clang-analyzer cannot tell db_sqlerr() is negative */
	int r;

	r = db_prepare(db, sql, &st);
	if (r < 0)
		return r;
	db_bind_text(st, 1, text);
	r = db_step(db, st, what);
	if (r > 0)
		*out = st;
	return r;
}

int
db_query_int(struct db *db, const char *sql, int64_t *out)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_sqlerr(db, rc, sql);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = db_err(db, -EBADMSG, "%s returned no row (database %s)", sql, db->path);
	} else {
		rc = db_sqlerr(db, rc, sql);
	}
	sqlite3_finalize(st);
	return rc;
}

int
db_begin(struct db *db)
{
	int r;

	r = db_exec(
	    db, db->depth == 0 ? "BEGIN IMMEDIATE" : "SAVEPOINT nested", "starting a transaction");
	if (r < 0)
		return r;
	db->depth++;
	return 0;
}

int
db_commit(struct db *db)
{
	int r;

	if (db->depth == 0)
		return db_err(db, -EINVAL, "commit without a transaction");
	if (db->depth > 1) {
		r = db_exec(db, "RELEASE nested", "releasing a savepoint");
		if (r < 0)
			return r;
		db->depth--;
		return 0;
	}
	r = db_exec(db, "COMMIT", "committing a transaction");
	if (r < 0) {
		/* Some errors (a full disk) leave the transaction open: end it, so the next
		 * db_begin() starts clean and nothing half-done is committed later. */
		if (!sqlite3_get_autocommit(db->sql))
			sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
		db->depth = 0;
		return r;
	}
	db->depth = 0;
	return 0;
}

void
db_rollback(struct db *db)
{
	if (db->depth == 0)
		return;
	if (db->depth > 1) {
		sqlite3_exec(db->sql, "ROLLBACK TO nested; RELEASE nested", NULL, NULL, NULL);
		db->depth--;
		return;
	}
	/* sqlite may have rolled back already (an I/O error); only end what is still open. */
	if (!sqlite3_get_autocommit(db->sql))
		sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
	db->depth = 0;
}

int64_t
db_changes(struct db *db)
{
	return sqlite3_changes64(db->sql);
}

int64_t
db_last_insert_id(struct db *db)
{
	return sqlite3_last_insert_rowid(db->sql);
}

int64_t
db_now(void)
{
	return (int64_t)time(NULL);
}

int
db_bind_text(sqlite3_stmt *st, int idx, const char *s)
{
	if (!s)
		return sqlite3_bind_null(st, idx) == SQLITE_OK ? 0 : -EINVAL;
	return sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC) == SQLITE_OK ? 0 : -EINVAL;
}

void
db_column_copy(sqlite3_stmt *st, int col, char *buf, size_t size)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	size_t n;

	if (size == 0)
		return;
	if (!t) {
		buf[0] = '\0';
		return;
	}
	n = (size_t)sqlite3_column_bytes(st, col);
	if (n >= size)
		n = size - 1;
	memcpy(buf, t, n);
	buf[n] = '\0';
}

uint64_t
db_column_u64(sqlite3_stmt *st, int col)
{
	int64_t v = sqlite3_column_int64(st, col);

	return v < 0 ? 0 : (uint64_t)v;
}

/* Applies the settings every connection needs. WAL lets readers (an operator's sqlite3 shell)
 * run beside the daemon, and a commit appends to the log instead of rewriting pages.
 * synchronous=FULL fsyncs the log at every commit: a gateway loses power without warning, and
 * losing a committed row (a blob marked complete, a confirmed install) costs more than the
 * fsync, which the store's rare, small transactions can afford. journal_size_limit keeps the
 * log from staying at its high-water mark on a small SD card. */
static int
db_configure(struct db *db)
{
	sqlite3_stmt *st;
	const unsigned char *mode;
	int rc, on = 1, off = 0;

	/* Refuse writes that corrupt the file on purpose (writable_schema and the like), and do
	 * not run functions named in a schema someone else may have edited. */
	sqlite3_db_config(db->sql, SQLITE_DBCONFIG_DEFENSIVE, on, NULL);
	sqlite3_db_config(db->sql, SQLITE_DBCONFIG_TRUSTED_SCHEMA, off, NULL);
	sqlite3_extended_result_codes(db->sql, 1);
	rc = sqlite3_busy_timeout(db->sql, DB_BUSY_TIMEOUT_MS);
	if (rc != SQLITE_OK)
		return db_sqlerr(db, rc, "setting the busy timeout");

	rc = sqlite3_prepare_v2(db->sql, "PRAGMA journal_mode = WAL", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_sqlerr(db, rc, "reading the database");
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = db_sqlerr(db, rc, "switching the database to WAL mode");
		sqlite3_finalize(st);
		return rc;
	}
	mode = sqlite3_column_text(st, 0);
	if (!mode || strcmp((const char *)mode, "wal") != 0) {
		rc = db_err(db, -EIO,
		    "database %s cannot use WAL mode (journal mode stays \"%s\"): put the state "
		    "directory on a local file system",
		    db->path, mode ? (const char *)mode : "?");
		sqlite3_finalize(st);
		return rc;
	}
	sqlite3_finalize(st);

	return db_exec(db,
	    "PRAGMA synchronous = FULL;"
	    "PRAGMA journal_size_limit = 4194304;"
	    "PRAGMA foreign_keys = ON;"
	    "PRAGMA cell_size_check = ON;",
	    "configuring the database");
}

/* Runs a check pragma and reports its first complaint. ok_when_empty: foreign_key_check
 * returns no rows when clean, integrity_check returns "ok". */
static int
db_check_pragma(struct db *db, const char *sql, bool ok_when_empty)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_sqlerr(db, rc, sql);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE && ok_when_empty) {
		rc = 0;
	} else if (rc == SQLITE_ROW && !ok_when_empty) {
		const unsigned char *msg = sqlite3_column_text(st, 0);

		if (msg && strcmp((const char *)msg, "ok") == 0)
			rc = 0;
		else
			rc = db_err(db, -EBADMSG,
			    "database %s is corrupt (%s: %s): stop otagwd and move the file "
			    "away; a new one is created on start",
			    db->path, sql, msg ? (const char *)msg : "?");
	} else if (rc == SQLITE_ROW) {
		rc = db_err(db, -EBADMSG, "%s on %s: table %s row %lld violates a foreign key", sql,
		    db->path, (const char *)sqlite3_column_text(st, 0),
		    (long long)sqlite3_column_int64(st, 1));
	} else {
		rc = db_sqlerr(db, rc, sql);
	}
	sqlite3_finalize(st);
	return rc;
}

int
db_open(const char *path, struct db **out, char *err, size_t errlen)
{
	struct db *db;
	int rc, r;

	if (!path || !*path) {
		if (err && errlen)
			snprintf(err, errlen, "no database path given");
		return -EINVAL;
	}
	db = calloc(1, sizeof(*db));
	if (!db || !(db->path = strdup(path))) {
		free(db);
		if (err && errlen)
			snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = sqlite3_open_v2(
	    path, &db->sql, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		/* sqlite says "unable to open database file"; the errno says why. */
		r = db_rc_errno(db->sql, rc);
		db_seterr(db, "cannot open database %s: %s", path,
		    (rc & 0xff) == SQLITE_CANTOPEN ? strerror(-r) : sqlite3_errstr(rc));
		goto fail;
	}
	r = db_configure(db);
	if (r < 0)
		goto fail;
	/* A damaged file is refused now, with a clear message, rather than failing some later
	 * operation. The file holds rows, no payloads: this takes milliseconds. */
	r = db_check_pragma(db, "PRAGMA quick_check(1)", false);
	if (r < 0)
		goto fail;
	r = migrate_run(db);
	if (r < 0)
		goto fail;
	*out = db;
	return 0;
fail:
	if (err && errlen)
		snprintf(err, errlen, "%s", db->errmsg);
	db_free(db);
	return r;
}

struct db *
db_free(struct db *db)
{
	size_t i;

	if (!db)
		return NULL;
	for (i = 0; i < db->nstmts; i++)
		sqlite3_finalize(db->stmts[i].stmt);
	free(db->stmts);
	/* Every statement is finalized above, so close cannot be left pending. */
	sqlite3_close(db->sql);
	free(db->path);
	free(db);
	return NULL;
}

const char *
db_errmsg(const struct db *db)
{
	return db->errmsg;
}

const char *
db_path(const struct db *db)
{
	return db->path;
}

int
db_integrity_check(struct db *db)
{
	int r = db_check_pragma(db, "PRAGMA integrity_check", false);

	if (r < 0)
		return r;
	return db_check_pragma(db, "PRAGMA foreign_key_check", true);
}
