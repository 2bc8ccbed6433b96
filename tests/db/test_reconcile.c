/* Reconciliation on open: files and rows changed behind the store's back, and every state a
 * crash between two steps of a download or a commit can leave (built by hand, or by a child
 * process that _exit()s mid-way), must come back as a consistent store without losing a
 * verified blob. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
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

static void
setup(void)
{
	dbtest_init(&t);
}

static void
teardown(void)
{
	dbtest_done(&t);
}

/* Adds len bytes made from seed; hex receives the key. */
static void
add(unsigned seed, size_t len, char hex[STORE_SHA256_HEX + 1])
{
	dbtest_add_seed(t.s, seed, len, hex);
}

static int
get(const char *hex, struct store_artifact *a)
{
	return store_artifact_get(t.s, hex, a);
}

/* Runs fn in a child that dies with _exit() (no destructors, no store_free, no checkpoint),
 * the way a crash or a kill -9 leaves things. */
static void
in_child_then_die(void (*fn)(void))
{
	pid_t pid = fork();
	int status;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		fn();
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}

START_TEST(blob_file_deleted)
{
	char h[STORE_SHA256_HEX + 1], path[512];
	struct store_artifact a;

	dbtest_open(&t, 0);
	add(1, 100, h);
	t.s = store_free(t.s);
	dbtest_blob_path(&t, h, path, sizeof(path));
	ck_assert_int_eq(unlink(path), 0);
	dbtest_open(&t, 0);
	ck_assert_int_eq(get(h, &a), -ENOENT);
}
END_TEST

START_TEST(row_deleted)
{
	char h[STORE_SHA256_HEX + 1], k[STORE_SHA256_HEX + 1], path[512];
	struct store_artifact a;

	dbtest_open(&t, 0);
	add(2, 100, h);
	add(3, 100, k);
	t.s = store_free(t.s);
	dbtest_sql(t.db, "DELETE FROM artifacts WHERE sha256 IN (SELECT sha256 FROM artifacts "
			 "ORDER BY lru LIMIT 1)");
	dbtest_open(&t, 0);
	ck_assert_int_eq(get(h, &a), -ENOENT);
	dbtest_blob_path(&t, h, path, sizeof(path));
	ck_assert(!dbtest_exists(path));
	ck_assert_int_eq(get(k, &a), 0);
	dbtest_blob_path(&t, k, path, sizeof(path));
	ck_assert(dbtest_exists(path));
}
END_TEST

START_TEST(orphans_and_strangers_removed)
{
	char h[STORE_SHA256_HEX + 1], path[600], other[600];
	uint8_t junk[10] = {0};
	struct stat st;

	dbtest_open(&t, 0);
	add(4, 100, h);
	t.s = store_free(t.s);

	/* A blob and a partial named like artifacts the index does not know. */
	snprintf(path, sizeof(path), "%s/blobs/%064d", t.cache, 7);
	tfile_write(path, 0644, junk, sizeof(junk));
	snprintf(path, sizeof(path), "%s/partial/%064d.part", t.cache, 8);
	tfile_write(path, 0644, junk, sizeof(junk));
	/* Names that are no artifact at all: temp files, upper case, a symlink, an empty dir. */
	snprintf(path, sizeof(path), "%s/blobs/%s.tmp", t.cache, h);
	tfile_write(path, 0644, junk, sizeof(junk));
	snprintf(path, sizeof(path), "%s/partial/stray", t.cache);
	tfile_write(path, 0644, junk, sizeof(junk));
	snprintf(path, sizeof(path), "%s/blobs/%.63sA", t.cache, h);
	tfile_write(path, 0644, junk, sizeof(junk));
	snprintf(path, sizeof(path), "%s/blobs/link", t.cache);
	ck_assert_int_eq(symlink("/etc/passwd", path), 0);
	snprintf(path, sizeof(path), "%s/partial/emptydir", t.cache);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	/* Beside blobs/ and partial/, the cache directory is not the store's to clean. */
	snprintf(other, sizeof(other), "%s/README", t.cache);
	tfile_write(other, 0644, junk, sizeof(junk));

	dbtest_open(&t, 0);
	/* Only h's blob is left. */
	snprintf(path, sizeof(path), "%s/blobs", t.cache);
	ck_assert_int_eq(dbtest_dir_count(path), 1);
	snprintf(path, sizeof(path), "%s/partial", t.cache);
	ck_assert_int_eq(dbtest_dir_count(path), 0);
	dbtest_blob_path(&t, h, path, sizeof(path));
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert(dbtest_exists(other));
	ck_assert_int_eq(stat("/etc/passwd", &st), 0);
}
END_TEST

/* Starts a download of len bytes of seed, writes the first n bytes, and closes it. */
static void
partial(unsigned seed, size_t len, size_t n, char hex[STORE_SHA256_HEX + 1])
{
	struct store_partial_meta m;
	uint8_t *buf = malloc(len);
	uint64_t got;
	int fd;

	ck_assert_ptr_nonnull(buf);
	tdata_fill(buf, len, seed);
	tdata_sha256(buf, len, NULL, hex);
	dbtest_meta(&m, hex, len);
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &got), 0);
	ck_assert_int_eq(pwrite(fd, buf, n, 0), (ssize_t)n);
	ck_assert_int_eq(store_partial_close(t.s, hex, fd), 0);
	free(buf);
}

/* Resumes hex (len bytes of seed) and finishes it; asserts the resume offset. */
static void
finish(unsigned seed, size_t len, const char *hex, uint64_t expect_present)
{
	struct store_partial_meta m;
	uint8_t *buf = malloc(len), digest[STORE_SHA256_LEN];
	uint64_t got;
	int fd;

	ck_assert_ptr_nonnull(buf);
	tdata_fill(buf, len, seed);
	tdata_sha256(buf, len, digest, NULL);
	dbtest_meta(&m, hex, len);
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &got), 0);
	ck_assert_uint_eq(got, expect_present);
	ck_assert_int_eq(pwrite(fd, buf + got, len - got, (off_t)got), (ssize_t)(len - got));
	ck_assert_int_eq(store_commit(t.s, hex, fd, digest), 0);
	ck_assert_int_eq(store_blob_verify(t.s, hex), 0);
	free(buf);
}

START_TEST(partial_length_from_file)
{
	char a_hex[STORE_SHA256_HEX + 1], b_hex[STORE_SHA256_HEX + 1], c_hex[STORE_SHA256_HEX + 1],
	    path[512];
	uint8_t buf[3000];
	struct store_artifact a;
	int fd;

	dbtest_open(&t, 0);
	partial(10, 3000, 1000, a_hex);
	partial(11, 3000, 2000, b_hex);
	partial(12, 3000, 500, c_hex);
	t.s = store_free(t.s);

	/* a: the file grew past its row (writes after the last progress record). */
	tdata_fill(buf, sizeof(buf), 10);
	dbtest_part_path(&t, a_hex, path, sizeof(path));
	fd = open(path, O_WRONLY);
	ck_assert_int_eq(pwrite(fd, buf + 1000, 1500, 1000), 1500);
	close(fd);
	/* b: the file is shorter than its row (written data lost in a power cut). */
	dbtest_part_path(&t, b_hex, path, sizeof(path));
	ck_assert_int_eq(truncate(path, 700), 0);
	/* c: longer than the artifact itself: garbage, start over. */
	dbtest_part_path(&t, c_hex, path, sizeof(path));
	tfile_write(path, 0644, buf, sizeof(buf));
	fd = open(path, O_WRONLY | O_APPEND);
	ck_assert_int_eq(write(fd, buf, 10), 10);
	close(fd);

	dbtest_open(&t, 0);
	ck_assert_int_eq(get(a_hex, &a), 0);
	ck_assert_int_eq(a.state, STORE_STATE_PARTIAL);
	ck_assert_uint_eq(a.bytes_present, 2500);
	ck_assert_int_eq(get(b_hex, &a), 0);
	ck_assert_uint_eq(a.bytes_present, 700);
	ck_assert_int_eq(get(c_hex, &a), 0);
	ck_assert_uint_eq(a.bytes_present, 0);
	ck_assert_int_eq(dbtest_file_len(path), 0);

	finish(10, 3000, a_hex, 2500);
	finish(11, 3000, b_hex, 700);
	finish(12, 3000, c_hex, 0);
}
END_TEST

START_TEST(complete_blob_wrong_length)
{
	char h[STORE_SHA256_HEX + 1], path[512];
	uint8_t extra = 0;
	struct store_artifact a;
	int fd;

	dbtest_open(&t, 0);
	add(20, 1000, h);
	t.s = store_free(t.s);
	dbtest_blob_path(&t, h, path, sizeof(path));
	chmod(path, 0644);
	fd = open(path, O_WRONLY | O_APPEND);
	ck_assert_int_eq(write(fd, &extra, 1), 1);
	close(fd);
	dbtest_open(&t, 0);
	ck_assert_int_eq(get(h, &a), -ENOENT);
	ck_assert(!dbtest_exists(path));
}
END_TEST

START_TEST(pins_and_transfers_reset)
{
	char h[STORE_SHA256_HEX + 1];
	struct devices_hello hello = {"dev-1", "evt", "main", "1.0.0", "uart:/dev/ttyUSB0"};
	struct history_start hs = {"dev-1", "1.0.0", "1.1.0", NULL, "uart:/dev/ttyUSB0"};
	struct history_entry *list = NULL;
	struct store_artifact a;
	int64_t id;
	size_t n;

	dbtest_open(&t, 0);
	add(30, 100, h);
	ck_assert_int_eq(store_pin(t.s, h), 0);
	ck_assert_int_eq(store_blob_verify(t.s, h), 0);
	ck_assert_int_eq(devices_upsert(store_db(t.s), &hello), 0);
	hs.sha256 = h;
	ck_assert_int_eq(history_begin(store_db(t.s), &hs, &id), 0);
	dbtest_reopen(&t, 0);

	ck_assert_int_eq(get(h, &a), 0);
	ck_assert_uint_eq(a.pins, 0);
	ck_assert(!a.verified); /* hashed by the previous process, not this one */
	ck_assert_int_eq(history_list(store_db(t.s), "dev-1", 0, &list, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(list[0].result, HISTORY_RESULT_ABORTED);
	ck_assert_int_gt(list[0].ended, 0);
	ck_assert_ptr_nonnull(strstr(list[0].reason, "stopped"));
	free(list);
}
END_TEST

/* --- crash states built by hand: one test per gap between two steps -------------------- */

/* store_partial_open: the file exists, its row was never written. */
START_TEST(crash_partial_file_without_row)
{
	char path[512], hex[STORE_SHA256_HEX + 1];
	uint8_t buf[100];

	dbtest_open(&t, 0);
	t.s = store_free(t.s);
	tdata_fill(buf, sizeof(buf), 40);
	tdata_sha256(buf, sizeof(buf), NULL, hex);
	dbtest_part_path(&t, hex, path, sizeof(path));
	tfile_write(path, 0644, buf, 50);
	dbtest_open(&t, 0);
	ck_assert(!dbtest_exists(path));
}
END_TEST

/* A partial row whose file was never created (or was lost). */
START_TEST(crash_partial_row_without_file)
{
	char h[STORE_SHA256_HEX + 1], path[512];
	struct store_artifact a;

	dbtest_open(&t, 0);
	partial(41, 1000, 10, h);
	t.s = store_free(t.s);
	dbtest_part_path(&t, h, path, sizeof(path));
	ck_assert_int_eq(unlink(path), 0);
	dbtest_open(&t, 0);
	ck_assert_int_eq(get(h, &a), -ENOENT);
}
END_TEST

/* store_commit: chmod 0444 done, rename not. The bytes are all there but unverified: the
 * row stays partial (writable again) and the next download finishes it with a hash. */
START_TEST(crash_between_chmod_and_rename)
{
	char h[STORE_SHA256_HEX + 1], path[512];
	struct store_artifact a;
	struct stat st;

	dbtest_open(&t, 0);
	partial(42, 2000, 2000, h);
	t.s = store_free(t.s);
	dbtest_part_path(&t, h, path, sizeof(path));
	ck_assert_int_eq(chmod(path, 0444), 0);
	dbtest_open(&t, 0);
	ck_assert_int_eq(get(h, &a), 0);
	ck_assert_int_eq(a.state, STORE_STATE_PARTIAL);
	ck_assert_uint_eq(a.bytes_present, 2000);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0600, 0600);
	finish(42, 2000, h, 2000);
}
END_TEST

/* store_commit: renamed into blobs/ (after the digest matched), row not yet complete. The
 * verified blob must survive and become servable. */
START_TEST(crash_between_rename_and_row)
{
	char h[STORE_SHA256_HEX + 1], path[512];
	struct store_artifact a;
	uint64_t size;
	int fd;

	dbtest_open(&t, 0);
	add(43, 5000, h);
	t.s = store_free(t.s);
	dbtest_sql(t.db, "UPDATE artifacts SET state = 'partial', bytes_present = 1234");
	dbtest_open(&t, 0);
	ck_assert_int_eq(get(h, &a), 0);
	ck_assert_int_eq(a.state, STORE_STATE_COMPLETE);
	ck_assert_uint_eq(a.bytes_present, 5000);
	ck_assert(!a.verified);
	ck_assert_int_eq(store_blob_verify(t.s, h), 0);
	ck_assert_int_eq(store_blob_open(t.s, h, &fd, &size), 0);
	ck_assert_uint_eq(size, 5000);
	close(fd);
	dbtest_part_path(&t, h, path, sizeof(path));
	ck_assert(!dbtest_exists(path));
}
END_TEST

/* Both a partial and a blob of the same key (a re-download raced a promotion): the blob
 * wins, the partial goes. */
START_TEST(crash_blob_and_partial_both)
{
	char h[STORE_SHA256_HEX + 1], path[512];
	uint8_t buf[10] = {1};
	struct store_artifact a;

	dbtest_open(&t, 0);
	add(44, 300, h);
	t.s = store_free(t.s);
	dbtest_part_path(&t, h, path, sizeof(path));
	tfile_write(path, 0644, buf, sizeof(buf));
	dbtest_open(&t, 0);
	ck_assert_int_eq(get(h, &a), 0);
	ck_assert_int_eq(a.state, STORE_STATE_COMPLETE);
	ck_assert(!dbtest_exists(path));
	ck_assert_int_eq(store_blob_verify(t.s, h), 0);
}
END_TEST

/* --- crashes of a real process ----------------------------------------------------------- */

static char crash_hex[STORE_SHA256_HEX + 1];

static void
child_download_half(void)
{
	struct store_partial_meta m;
	uint8_t buf[8000];
	uint64_t got;
	int fd;

	tdata_fill(buf, sizeof(buf), 50);
	tdata_sha256(buf, sizeof(buf), NULL, crash_hex);
	dbtest_meta(&m, crash_hex, sizeof(buf));
	dbtest_open(&t, 0);
	if (store_partial_open(t.s, &m, &fd, &got) < 0)
		_exit(1);
	if (pwrite(fd, buf, 5000, 0) != 5000)
		_exit(2);
	if (store_partial_progress(t.s, crash_hex, 3000) < 0)
		_exit(3);
	/* Dies holding the fd, the pin and the cache lock. */
}

/* The key of len bytes of seed, known to parent and child alike. */
static void
crash_key(unsigned seed, size_t len)
{
	uint8_t *buf = malloc(len);

	ck_assert_ptr_nonnull(buf);
	tdata_fill(buf, len, seed);
	tdata_sha256(buf, len, NULL, crash_hex);
	free(buf);
}

START_TEST(crash_mid_download)
{
	struct store_artifact a;

	crash_key(50, 8000);
	in_child_then_die(child_download_half);
	dbtest_open(&t, 0);
	ck_assert_int_eq(get(crash_hex, &a), 0);
	ck_assert_int_eq(a.state, STORE_STATE_PARTIAL);
	ck_assert_uint_eq(a.bytes_present, 5000);
	ck_assert_uint_eq(a.pins, 0);
	finish(50, 8000, crash_hex, 5000);
}
END_TEST

static void
child_commit(void)
{
	uint8_t buf[4000];

	dbtest_open(&t, 0);
	tdata_fill(buf, sizeof(buf), 51);
	dbtest_add(t.s, buf, sizeof(buf), crash_hex);
	/* Dies before closing: the WAL is not checkpointed. */
}

START_TEST(crash_right_after_commit)
{
	struct store_artifact a;

	crash_key(51, 4000);
	in_child_then_die(child_commit);
	dbtest_open(&t, 0);
	ck_assert_int_eq(get(crash_hex, &a), 0);
	ck_assert_int_eq(a.state, STORE_STATE_COMPLETE);
	ck_assert_int_eq(store_blob_verify(t.s, crash_hex), 0);
}
END_TEST

static void
child_half_transaction(void)
{
	struct db *db;

	dbtest_open(&t, 0);
	db = store_db(t.s);
	if (db_begin(db) < 0 || db_exec(db, "DELETE FROM artifacts", "test") < 0 ||
	    db_exec(db, "DELETE FROM devices", "test") < 0)
		_exit(1);
	/* Dies with the transaction open. */
}

START_TEST(crash_inside_transaction)
{
	struct devices_hello hello = {"dev-2", "evt", "main", "1.0.0", "uart:/dev/ttyUSB1"};
	struct devices_entry d;
	struct store_artifact a;

	dbtest_open(&t, 0);
	add(52, 100, crash_hex);
	ck_assert_int_eq(devices_upsert(store_db(t.s), &hello), 0);
	t.s = store_free(t.s);
	in_child_then_die(child_half_transaction);
	dbtest_open(&t, 0);
	ck_assert_int_eq(get(crash_hex, &a), 0);
	ck_assert_int_eq(devices_get(store_db(t.s), "dev-2", &d), 0);
}
END_TEST

static Suite *
reconcile_suite(void)
{
	Suite *s = suite_create("reconcile");
	TCase *tc = tcase_create("reconcile");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, blob_file_deleted);
	tcase_add_test(tc, row_deleted);
	tcase_add_test(tc, orphans_and_strangers_removed);
	tcase_add_test(tc, partial_length_from_file);
	tcase_add_test(tc, complete_blob_wrong_length);
	tcase_add_test(tc, pins_and_transfers_reset);
	tcase_add_test(tc, crash_partial_file_without_row);
	tcase_add_test(tc, crash_partial_row_without_file);
	tcase_add_test(tc, crash_between_chmod_and_rename);
	tcase_add_test(tc, crash_between_rename_and_row);
	tcase_add_test(tc, crash_blob_and_partial_both);
	tcase_add_test(tc, crash_mid_download);
	tcase_add_test(tc, crash_right_after_commit);
	tcase_add_test(tc, crash_inside_transaction);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(reconcile_suite());
}
