/* The sqlite handle behind the store, devices and history: opening with the pragmas otagw
 * relies on (WAL, synchronous=FULL, foreign keys, busy timeout), schema migrations, a cache of
 * prepared statements, nested transactions, and sqlite result codes turned into negative errno
 * values with a message. The daemon gets a struct db from store_db() and passes it to
 * devices_*() and history_*(); the SQL itself stays inside db/. */
#ifndef OTAGW_DB_H
#define OTAGW_DB_H

#include <stddef.h>

struct db;

/* The schema version this code writes (PRAGMA user_version). */
#define DB_SCHEMA_VERSION 2

/* Opens (creating if missing) and migrates the database at path. The file's directory must
 * exist. On success *out owns the handle (db_free()). On failure err (if not NULL) receives a
 * message naming the file and what to do: -ENOENT/-EACCES/-EROFS (cannot open or write it),
 * -EBADMSG (corrupt, truncated, or not an otagw database), -ENOTSUP (written by a newer otagw;
 * the file is left untouched), -EIO, -ENOMEM. */
int db_open(const char *path, struct db **out, char *err, size_t errlen);

/* Closes the database. Accepts NULL. Returns NULL. */
struct db *db_free(struct db *db);

/* The message for the last failed call on db (valid until the next failing call). */
const char *db_errmsg(const struct db *db);

/* The path the database was opened with. */
const char *db_path(const struct db *db);

/* Runs PRAGMA integrity_check and PRAGMA foreign_key_check. 0 if both are clean, -EBADMSG
 * (with the first problem in db_errmsg()) otherwise. Reads the whole file: for tests and
 * diagnostics, not the event loop's hot path. */
int db_integrity_check(struct db *db);

#endif
