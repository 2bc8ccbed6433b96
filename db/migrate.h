/* Forward-only schema migrations, one transaction per step, tracked in PRAGMA user_version. */
#ifndef OTAGW_MIGRATE_H
#define OTAGW_MIGRATE_H

struct db;

/* Brings the database to DB_SCHEMA_VERSION. Refuses (-EBADMSG) a file that is not an otagw
 * database and (-ENOTSUP) one written by a newer otagw, leaving both untouched. A failed step
 * is rolled back whole. */
int migrate_run(struct db *db);

#endif
