/* Opening the store on every kind of disk: a new or empty file, a version 1 database, one
 * from a newer otagw, someone else's sqlite file, garbage, a truncated file, a migration that
 * fails, missing and read-only directories. Plus the nesting of transactions. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db_internal.h"
#include "dbtest.h"
#include "devices.h"
#include "history.h"

static struct dbtest t;
static char err[STORE_ERRMSG_MAX];

static void
setup(void)
{
	dbtest_init(&t);
	err[0] = '\0';
}

static void
teardown(void)
{
	dbtest_done(&t);
}

static void
mkstate(void)
{
	char dir[400];

	snprintf(dir, sizeof(dir), "%s/state", t.dir);
	mkdir(dir, 0750);
}

/* The schema as version 1 shipped it: a frozen fixture, never to follow later changes. */
static const char v1_schema[] =
    "CREATE TABLE artifacts (sha256 TEXT PRIMARY KEY NOT NULL CHECK (length(sha256) = 64 AND "
    "sha256 NOT GLOB '*[^0-9a-f]*'), artifact_id INTEGER NOT NULL DEFAULT 0, version TEXT NOT "
    "NULL, is_delta INTEGER NOT NULL DEFAULT 0 CHECK (is_delta IN (0, 1)), size INTEGER NOT "
    "NULL CHECK (size > 0), md5 TEXT CHECK (md5 IS NULL OR length(md5) = 32), state TEXT NOT "
    "NULL CHECK (state IN ('partial', 'complete')), bytes_present INTEGER NOT NULL DEFAULT 0 "
    "CHECK (bytes_present >= 0 AND bytes_present <= size), url TEXT, url_fetched INTEGER NOT "
    "NULL DEFAULT 0, created INTEGER NOT NULL, last_used INTEGER NOT NULL, lru INTEGER NOT "
    "NULL, pins INTEGER NOT NULL DEFAULT 0 CHECK (pins >= 0)) WITHOUT ROWID;"
    "CREATE INDEX artifacts_lru ON artifacts (lru);"
    "CREATE TABLE devices (serial TEXT PRIMARY KEY NOT NULL, hardware_version TEXT NOT NULL, "
    "software_type TEXT NOT NULL, current_version TEXT NOT NULL, link TEXT NOT NULL, "
    "first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, last_check INTEGER NOT NULL "
    "DEFAULT 0, last_result TEXT NOT NULL DEFAULT 'none' CHECK (last_result IN ('none', "
    "'update', 'no_update', 'error')), last_reason TEXT) WITHOUT ROWID;"
    "CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT, serial TEXT NOT NULL "
    "REFERENCES devices (serial) ON DELETE CASCADE, from_version TEXT NOT NULL, to_version "
    "TEXT NOT NULL, sha256 TEXT NOT NULL, link TEXT NOT NULL, started INTEGER NOT NULL, ended "
    "INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0 CHECK (bytes >= 0), result "
    "TEXT NOT NULL CHECK (result IN ('in_progress', 'verified', 'installed', 'failed', "
    "'aborted', 'install_failed')), reason TEXT);"
    "CREATE INDEX history_serial ON history (serial, id);"
    "CREATE INDEX history_in_progress ON history (result) WHERE result = 'in_progress';"
    "PRAGMA application_id = 1330923351;"
    "PRAGMA user_version = 1;";

/* Creates a version 1 database holding a complete artifact (and its blob), a device that
 * was checked, and a finished transfer. Returns the artifact's key in hex. */
static void
make_v1(char hex[STORE_SHA256_HEX + 1], const char *extra_sql)
{
	char sql[2048], path[512], dir[400];
	uint8_t buf[2000];

	mkstate();
	tfile_write(t.db, 0644, NULL, 0);
	dbtest_sql(t.db, v1_schema);
	tdata_fill(buf, sizeof(buf), 7);
	tdata_sha256(buf, sizeof(buf), NULL, hex);
	snprintf(sql, sizeof(sql),
	    "INSERT INTO artifacts (sha256, artifact_id, version, is_delta, size, md5, state,"
	    " bytes_present, url, url_fetched, created, last_used, lru, pins) VALUES ('%s', 63,"
	    " '2.0.0', 0, 2000, NULL, 'complete', 2000, 'https://cdn/x', 1700000000, 1700000000,"
	    " 1700000100, 1, 3);"
	    "INSERT INTO devices VALUES ('dev-v1', 'evt', 'main', '1.0.0', 'uart:/dev/ttyS0',"
	    " 1600000000, 1700000000, 1700000000, 'no_update', 'latest');"
	    "INSERT INTO history (serial, from_version, to_version, sha256, link, started, ended,"
	    " bytes, result, reason) VALUES ('dev-v1', '0.9.0', '1.0.0', '%s',"
	    " 'uart:/dev/ttyS0', 1650000000, 1650000100, 2000, 'installed', NULL);%s",
	    hex, hex, extra_sql);
	dbtest_sql(t.db, sql);
	snprintf(dir, sizeof(dir), "%s", t.cache);
	mkdir(dir, 0750);
	snprintf(dir, sizeof(dir), "%s/blobs", t.cache);
	mkdir(dir, 0750);
	dbtest_blob_path(&t, hex, path, sizeof(path));
	tfile_write(path, 0644, buf, sizeof(buf));
}

START_TEST(fresh_database)
{
	dbtest_open(&t, 0);
	ck_assert_int_eq(dbtest_sql_int(t.db, "PRAGMA user_version"), DB_SCHEMA_VERSION);
	ck_assert_int_eq(dbtest_sql_int(t.db, "PRAGMA application_id"), DB_APPLICATION_ID);
	{
		char wal[400];

		/* WAL mode: the log file exists while the store is open. */
		snprintf(wal, sizeof(wal), "%s-wal", t.db);
		ck_assert(dbtest_exists(wal));
	}
	dbtest_reopen(&t, 0); /* a second open migrates nothing and keeps everything */
	ck_assert_int_eq(dbtest_sql_int(t.db, "PRAGMA user_version"), DB_SCHEMA_VERSION);
}
END_TEST

START_TEST(empty_file_is_a_new_database)
{
	mkstate();
	tfile_write(t.db, 0644, NULL, 0);
	dbtest_open(&t, 0);
	ck_assert_int_eq(dbtest_sql_int(t.db, "PRAGMA user_version"), DB_SCHEMA_VERSION);
}
END_TEST

START_TEST(migrate_from_v1)
{
	char hex[STORE_SHA256_HEX + 1];
	struct devices_answer ans = {0};
	struct history_entry *list = NULL;
	struct store_artifact a;
	struct devices_entry d;
	size_t n;

	make_v1(hex, "");
	dbtest_open(&t, 0);
	ck_assert_int_eq(dbtest_sql_int(t.db, "PRAGMA user_version"), 2);

	ck_assert_int_eq(store_artifact_get(t.s, hex, &a), 0);
	ck_assert_int_eq(a.state, STORE_STATE_COMPLETE);
	ck_assert_str_eq(a.version, "2.0.0");
	ck_assert_int_eq(a.last_used, 1700000100);
	ck_assert_uint_eq(a.pins, 0);
	ck_assert(!a.verified);
	ck_assert_int_eq(store_blob_verify(t.s, hex), 0);

	ck_assert_int_eq(devices_get(store_db(t.s), "dev-v1", &d), 0);
	ck_assert_int_eq(d.first_seen, 1600000000);
	ck_assert_int_eq(d.last_result, DEVICES_RESULT_NO_UPDATE);
	ck_assert_str_eq(d.last_reason, "latest");
	ck_assert_int_eq(d.answer_time, 0);
	ck_assert_int_eq(d.install_state, DEVICES_INSTALL_NONE);
	ck_assert_int_eq(devices_get_answer(store_db(t.s), "dev-v1", &ans), -ENOENT);

	ck_assert_int_eq(history_list(store_db(t.s), NULL, 10, &list, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(list[0].result, HISTORY_RESULT_INSTALLED);
	ck_assert_str_eq(list[0].sha256, hex);
	free(list);
}
END_TEST

START_TEST(failed_migration_rolls_back)
{
	char hex[STORE_SHA256_HEX + 1];
	struct store *s = NULL;
	int r;

	/* A column version 2 adds already exists: the step fails half-way. */
	make_v1(hex, "ALTER TABLE devices ADD COLUMN install_time INTEGER;");
	r = dbtest_try_open(&t, 0, &s, err, sizeof(err));
	ck_assert_int_lt(r, 0);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(err, "schema version 2"));
	ck_assert_ptr_nonnull(strstr(err, t.db));
	/* Nothing of the step stayed: still version 1, no version 2 column. */
	ck_assert_int_eq(dbtest_sql_int(t.db, "PRAGMA user_version"), 1);
	ck_assert_int_eq(dbtest_sql_int(t.db, "SELECT count(*) FROM pragma_table_info('artifacts')"
					      " WHERE name = 'verified'"),
	    0);
	ck_assert_int_eq(dbtest_sql_int(t.db, "SELECT count(*) FROM devices"), 1);
}
END_TEST

START_TEST(newer_database_refused)
{
	struct store *s = NULL;

	dbtest_open(&t, 0);
	t.s = store_free(t.s);
	dbtest_sql(t.db, "PRAGMA user_version = 99");
	ck_assert_int_eq(dbtest_try_open(&t, 0, &s, err, sizeof(err)), -ENOTSUP);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(err, "99"));
	ck_assert_ptr_nonnull(strstr(err, t.db));
	ck_assert_int_eq(dbtest_sql_int(t.db, "PRAGMA user_version"), 99);
}
END_TEST

START_TEST(foreign_database_refused)
{
	struct store *s = NULL;

	mkstate();
	tfile_write(t.db, 0644, NULL, 0);
	dbtest_sql(t.db, "CREATE TABLE photos (id INTEGER PRIMARY KEY); INSERT INTO photos "
			 "VALUES (1)");
	ck_assert_int_eq(dbtest_try_open(&t, 0, &s, err, sizeof(err)), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(err, "not an otagw database"));
	ck_assert_int_eq(dbtest_sql_int(t.db, "SELECT count(*) FROM photos"), 1);

	dbtest_sql(t.db, "DROP TABLE photos; PRAGMA application_id = 42");
	ck_assert_int_eq(dbtest_try_open(&t, 0, &s, err, sizeof(err)), -EBADMSG);
}
END_TEST

START_TEST(garbage_file_refused)
{
	uint8_t junk[8192];
	struct store *s = NULL;

	mkstate();
	tdata_fill(junk, sizeof(junk), 99);
	tfile_write(t.db, 0644, junk, sizeof(junk));
	ck_assert_int_eq(dbtest_try_open(&t, 0, &s, err, sizeof(err)), -EBADMSG);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(err, t.db));
	ck_assert_ptr_nonnull(strstr(err, "move the file away"));
}
END_TEST

START_TEST(truncated_file_refused)
{
	struct devices_hello h = {NULL, "evt", "main", "1.0.0", "uart:/dev/ttyUSB0"};
	char serial[32];
	struct store *s = NULL;
	long long len;
	int i, r;

	dbtest_open(&t, 0);
	ck_assert_int_eq(db_begin(store_db(t.s)), 0);
	for (i = 0; i < 2000; i++) {
		snprintf(serial, sizeof(serial), "device-%05d", i);
		h.serial = serial;
		ck_assert_int_eq(devices_upsert(store_db(t.s), &h), 0);
	}
	ck_assert_int_eq(db_commit(store_db(t.s)), 0);
	t.s = store_free(t.s); /* checkpoints the WAL into the file */
	len = dbtest_file_len(t.db);
	ck_assert_int_gt(len, 32768);
	ck_assert_int_eq(truncate(t.db, (off_t)(len / 2)), 0);
	r = dbtest_try_open(&t, 0, &s, err, sizeof(err));
	ck_assert_int_eq(r, -EBADMSG);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(err, t.db));
}
END_TEST

START_TEST(missing_parent_directory)
{
	struct store *s = NULL;

	snprintf(t.cache, sizeof(t.cache), "%s/no/such/cache", t.dir);
	ck_assert_int_eq(dbtest_try_open(&t, 0, &s, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, t.cache));

	snprintf(t.cache, sizeof(t.cache), "%s/cache", t.dir);
	snprintf(t.db, sizeof(t.db), "%s/no/state/otagw.db", t.dir);
	ck_assert_int_eq(dbtest_try_open(&t, 0, &s, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "/no/state"));
	ck_assert_ptr_null(s);
}
END_TEST

START_TEST(not_a_directory)
{
	struct store *s = NULL;

	tfile_write(t.cache, 0644, NULL, 0);
	ck_assert_int_eq(dbtest_try_open(&t, 0, &s, err, sizeof(err)), -ENOTDIR);
	ck_assert_ptr_nonnull(strstr(err, t.cache));
	unlink(t.cache);

	/* The database path names a directory. */
	mkstate();
	ck_assert_int_eq(mkdir(t.db, 0750), 0);
	ck_assert_int_lt(dbtest_try_open(&t, 0, &s, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, t.db));
	ck_assert_ptr_null(s);
}
END_TEST

/* Opens the store as an unprivileged user (root ignores permission bits) and reports the
 * result through the exit status. */
static int
open_as_nobody(void)
{
	struct passwd *pw = getpwnam("nobody");
	pid_t pid;
	int status;

	if (geteuid() == 0 && !pw)
		return 0; /* cannot drop privileges here: nothing to test */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct store *s = NULL;
		int r;

		if (geteuid() == 0 && (setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0))
			_exit(100);
		r = dbtest_try_open(&t, 0, &s, err, sizeof(err));
		if (r == -EACCES && strstr(err, t.dir))
			_exit(0);
		fprintf(stderr, "open as nobody: %d %s\n", r, err);
		_exit(1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
}

START_TEST(read_only_directories)
{
	char path[400];

	/* The test directory itself must be reachable for the unprivileged user. */
	ck_assert_int_eq(chmod(t.dir, 0755), 0);
	ck_assert_int_eq(mkdir(t.cache, 0555), 0);
	ck_assert_int_eq(open_as_nobody(), 0);

	/* Cache fine, state directory read-only. */
	ck_assert_int_eq(chmod(t.cache, 0777), 0);
	snprintf(path, sizeof(path), "%s/state", t.dir);
	ck_assert_int_eq(mkdir(path, 0555), 0);
	ck_assert_int_eq(open_as_nobody(), 0);
}
END_TEST

START_TEST(nested_transactions)
{
	struct devices_hello h = {"dev-n", "evt", "main", "1.0.0", "tcp:127.0.0.1:9"};
	struct devices_entry d;
	struct db *db;

	dbtest_open(&t, 0);
	db = store_db(t.s);
	/* An operation's own transaction nests inside the caller's: rolled back together. */
	ck_assert_int_eq(db_begin(db), 0);
	ck_assert_int_eq(devices_upsert(db, &h), 0);
	db_rollback(db);
	ck_assert_int_eq(devices_get(db, "dev-n", &d), -ENOENT);

	/* An inner rollback undoes only the inner part. */
	ck_assert_int_eq(db_begin(db), 0);
	ck_assert_int_eq(devices_upsert(db, &h), 0);
	ck_assert_int_eq(db_begin(db), 0);
	ck_assert_int_eq(db_exec(db, "DELETE FROM devices", "test"), 0);
	db_rollback(db);
	ck_assert_int_eq(db_commit(db), 0);
	ck_assert_int_eq(devices_get(db, "dev-n", &d), 0);
	ck_assert_int_eq(db_commit(db), -EINVAL);
}
END_TEST

static Suite *
open_suite(void)
{
	Suite *s = suite_create("open");
	TCase *tc = tcase_create("open");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, fresh_database);
	tcase_add_test(tc, empty_file_is_a_new_database);
	tcase_add_test(tc, migrate_from_v1);
	tcase_add_test(tc, failed_migration_rolls_back);
	tcase_add_test(tc, newer_database_refused);
	tcase_add_test(tc, foreign_database_refused);
	tcase_add_test(tc, garbage_file_refused);
	tcase_add_test(tc, truncated_file_refused);
	tcase_add_test(tc, missing_parent_directory);
	tcase_add_test(tc, not_a_directory);
	tcase_add_test(tc, read_only_directories);
	tcase_add_test(tc, nested_transactions);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(open_suite());
}
