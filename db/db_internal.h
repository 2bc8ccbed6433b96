/* What the files of db/ share about the sqlite handle: prepared statements, stepping,
 * transactions and error reporting. Not for use outside db/: the rest of otagw sees
 * operations (store.h, devices.h, history.h), never SQL. */
#ifndef OTAGW_DB_INTERNAL_H
#define OTAGW_DB_INTERNAL_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "db.h"

/* Written to PRAGMA application_id so a foreign sqlite file is recognised: "OTGW". */
#define DB_APPLICATION_ID 0x4f544757
#define DB_ERRMSG_MAX     512

/* Sets db's error message (printf-style). */
void db_seterr(struct db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sets db's error message and evaluates to err, so callers can write
 * `return db_err(db, -EINVAL, "...")` (a macro, so analysers see the value returned). err is
 * evaluated first: `db_err(db, -errno, ...)` must not see an errno that formatting changed. */
#define db_err(db, err, ...)                  \
	({                                    \
		int db_err_ret_ = (err);      \
		db_seterr((db), __VA_ARGS__); \
		db_err_ret_;                  \
	})

/* -errno after a failed system call. errno is positive then, but analysers cannot know it and
 * would take a failure for a success. */
static inline int
db_neg_errno(void)
{
	int e = errno;

	return e > 0 ? -e : -EIO;
}

/* Turns a failed sqlite result code into a negative errno, and sets the message to
 * "<what>: <sqlite's message>" plus a hint when the file is corrupt. */
int db_sqlerr(struct db *db, int rc, const char *what);

/* Returns in *out the cached prepared statement for sql (a string literal: the cache is keyed
 * by its address), reset and with its bindings cleared. */
int db_prepare(struct db *db, const char *sql, sqlite3_stmt **out);

/* Steps st. Returns 1 for a row, 0 when done (st is then reset), or a negative errno (st is
 * reset, the message names what). Callers that stop reading before 0 call db_reset(). */
int db_step(struct db *db, sqlite3_stmt *st, const char *what);

/* The one-parameter lookup: db_prepare(sql), binds text to ?1 and steps once. Returns
 * db_step()'s result; on 1, *out is on the row (read it, then db_reset()). */
int db_query_text(
    struct db *db, const char *sql, const char *text, const char *what, sqlite3_stmt **out);

/* Resets a statement so it holds no read snapshot. Accepts NULL. */
void db_reset(sqlite3_stmt *st);

/* Runs one or more SQL statements without results (pragmas, migrations). */
int db_exec(struct db *db, const char *sql, const char *what);

/* Runs a query that yields one integer (e.g. PRAGMA user_version) into *out. */
int db_query_int(struct db *db, const char *sql, int64_t *out);

/* Transactions nest: the outermost db_begin() is BEGIN IMMEDIATE (the write lock is taken up
 * front, so a commit never fails on lock upgrade), inner ones are savepoints. Every
 * successful db_begin() is matched by db_commit() or db_rollback(). */
int db_begin(struct db *db);
int db_commit(struct db *db);
void db_rollback(struct db *db);

/* Rows changed by the last INSERT/UPDATE/DELETE. */
int64_t db_changes(struct db *db);

/* The rowid of the last INSERT. */
int64_t db_last_insert_id(struct db *db);

/* Wall-clock Unix seconds for what is stored and shown. */
int64_t db_now(void);

/* Binds s (NULL binds SQL NULL) as static text: s must outlive the step. */
int db_bind_text(sqlite3_stmt *st, int idx, const char *s);

/* Copies text column col into buf (size bytes, always NUL-terminated, truncated if the file
 * holds something longer than we ever write). NULL reads as "". */
void db_column_copy(sqlite3_stmt *st, int col, char *buf, size_t size);

/* Integer column col, with negative values (a hand-edited file) read as 0. */
uint64_t db_column_u64(sqlite3_stmt *st, int col);

#endif
