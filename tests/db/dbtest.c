/* Shared fixtures for the db/ tests (see dbtest.h). */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "dbtest.h"
#include "tdir.h"

void
dbtest_init(struct dbtest *t)
{
	char *dir = tdir_new("db");

	memset(t, 0, sizeof(*t));
	ck_assert_uint_lt(strlen(dir), sizeof(t->dir));
	memcpy(t->dir, dir, strlen(dir) + 1);
	free(dir);
	snprintf(t->db, sizeof(t->db), "%s/state/otagw.db", t->dir);
	snprintf(t->cache, sizeof(t->cache), "%s/cache", t->dir);
}

int
dbtest_try_open(struct dbtest *t, uint64_t max_bytes, struct store **out, char *err, size_t errlen)
{
	struct store_config cfg = {
	    .db_path = t->db,
	    .cache_dir = t->cache,
	    .max_bytes = max_bytes,
	};

	return store_open(&cfg, out, err, errlen);
}

void
dbtest_open(struct dbtest *t, uint64_t max_bytes)
{
	char err[STORE_ERRMSG_MAX] = "";
	int r = dbtest_try_open(t, max_bytes, &t->s, err, sizeof(err));

	ck_assert_msg(r == 0, "store_open: %d %s", r, err);
}

static void
dbtest_check(struct dbtest *t)
{
	int r;

	if (!t->s)
		return;
	r = db_integrity_check(store_db(t->s));
	ck_assert_msg(r == 0, "integrity: %s", db_errmsg(store_db(t->s)));
}

void
dbtest_reopen(struct dbtest *t, uint64_t max_bytes)
{
	dbtest_check(t);
	t->s = store_free(t->s);
	dbtest_open(t, max_bytes);
}

void
dbtest_done(struct dbtest *t)
{
	dbtest_check(t);
	t->s = store_free(t->s);
	tdir_rmrf(t->dir);
}

void
dbtest_meta(struct store_partial_meta *m, const char *hex, size_t len)
{
	static char url[STORE_SHA256_HEX + 64];

	snprintf(url, sizeof(url), "https://cdn.example/%s", hex);
	memset(m, 0, sizeof(*m));
	m->sha256 = hex;
	m->artifact_id = 63;
	m->version = "1.0.0";
	m->size = len;
	m->url = url;
	m->url_fetched = 1700000000;
}

void
dbtest_add(struct store *s, const uint8_t *buf, size_t len, char hex[STORE_SHA256_HEX + 1])
{
	struct store_partial_meta m;
	uint8_t digest[STORE_SHA256_LEN];
	uint64_t present = 99;
	int fd = -1, r;

	tdata_sha256(buf, len, digest, hex);
	dbtest_meta(&m, hex, len);
	r = store_partial_open(s, &m, &fd, &present);
	ck_assert_msg(r == 0, "partial_open: %d %s", r, store_errmsg(s));
	ck_assert_uint_eq(present, 0);
	ck_assert_int_eq(pwrite(fd, buf, len, 0), (ssize_t)len);
	r = store_commit(s, hex, fd, digest);
	ck_assert_msg(r == 0, "commit: %d %s", r, store_errmsg(s));
}

void
dbtest_add_seed(struct store *s, unsigned seed, size_t len, char hex[STORE_SHA256_HEX + 1])
{
	uint8_t *buf = malloc(len);

	ck_assert_ptr_nonnull(buf);
	tdata_fill(buf, len, seed);
	dbtest_add(s, buf, len, hex);
	free(buf);
}

void
dbtest_blob_path(const struct dbtest *t, const char *hex, char *out, size_t size)
{
	snprintf(out, size, "%s/blobs/%s", t->cache, hex);
}

void
dbtest_part_path(const struct dbtest *t, const char *hex, char *out, size_t size)
{
	snprintf(out, size, "%s/partial/%s.part", t->cache, hex);
}

int
dbtest_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

long long
dbtest_file_len(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int
dbtest_dir_count(const char *path)
{
	struct dirent *de;
	DIR *d = opendir(path);
	int n = 0;

	ck_assert_msg(d != NULL, "opendir %s: %s", path, strerror(errno));
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static sqlite3 *
dbtest_conn(const char *db_path)
{
	sqlite3 *db = NULL;

	ck_assert_int_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 10000);
	return db;
}

void
dbtest_sql(const char *db_path, const char *sql)
{
	sqlite3 *db = dbtest_conn(db_path);
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
	sqlite3_close(db);
}

long long
dbtest_sql_int(const char *db_path, const char *sql)
{
	sqlite3 *db = dbtest_conn(db_path);
	sqlite3_stmt *st = NULL;
	long long v;

	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}
