/* Transfer history: begin/finish/confirm, listing newest first with a serial and a limit, the
 * query a session uses to confirm an install, aborting stale transfers, and pruning. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dbtest.h"
#include "devices.h"
#include "history.h"

static struct dbtest t;
static struct db *db;

static const char sha_a[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char sha_b[] = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

static void
device(const char *serial)
{
	struct devices_hello h = {serial, "evt", "main", "1.0.0", "uart:/dev/ttyUSB0"};

	ck_assert_int_eq(devices_upsert(db, &h), 0);
}

static void
setup(void)
{
	dbtest_init(&t);
	dbtest_open(&t, 0);
	db = store_db(t.s);
	device("dev-1");
	device("dev-2");
}

static void
teardown(void)
{
	dbtest_done(&t);
}

static int64_t
begin(const char *serial, const char *to, const char *sha)
{
	struct history_start s = {serial, "1.0.0", to, sha, "uart:/dev/ttyUSB0"};
	int64_t id = -1;
	int r = history_begin(db, &s, &id);

	ck_assert_msg(r == 0, "history_begin: %d %s", r, db_errmsg(db));
	return id;
}

START_TEST(begin_and_finish)
{
	struct history_start bad = {"dev-9", "1.0.0", "1.1.0", sha_a, "uart:x"};
	struct history_entry *list = NULL;
	int64_t id, other;
	size_t n;

	id = begin("dev-1", "1.1.0", sha_b);
	ck_assert_int_gt(id, 0);
	ck_assert_int_eq(history_list(db, "dev-1", 0, &list, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(list[0].id, id);
	ck_assert_int_eq(list[0].result, HISTORY_RESULT_IN_PROGRESS);
	ck_assert_int_eq(list[0].ended, 0);
	ck_assert_str_eq(
	    list[0].sha256, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
	ck_assert_str_eq(list[0].from_version, "1.0.0");
	ck_assert_str_eq(list[0].to_version, "1.1.0");
	free(list);

	ck_assert_int_eq(
	    history_finish(db, id, HISTORY_RESULT_FAILED, 4096, "CRC error at 4096"), 0);
	ck_assert_int_eq(history_finish(db, id, HISTORY_RESULT_ABORTED, 0, NULL), -EALREADY);
	ck_assert_int_eq(history_finish(db, id + 100, HISTORY_RESULT_ABORTED, 0, NULL), -ENOENT);
	other = begin("dev-1", "1.1.0", sha_b);
	ck_assert_int_eq(history_finish(db, other, HISTORY_RESULT_IN_PROGRESS, 0, NULL), -EINVAL);
	ck_assert_int_eq(history_finish(db, other, HISTORY_RESULT_ABORTED, 0, "bad\x7f"), -EINVAL);

	ck_assert_int_eq(history_list(db, "dev-1", 0, &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(list[1].result, HISTORY_RESULT_FAILED);
	ck_assert_uint_eq(list[1].bytes, 4096);
	ck_assert_int_gt(list[1].ended, 0);
	ck_assert_str_eq(list[1].reason, "CRC error at 4096");
	free(list);

	/* Unknown device, bad fields. */
	ck_assert_int_eq(history_begin(db, &bad, &id), -ENOENT);
	bad.serial = "dev-1";
	bad.sha256 = "12";
	ck_assert_int_eq(history_begin(db, &bad, &id), -EINVAL);
	bad.sha256 = sha_a;
	bad.to_version = "";
	ck_assert_int_eq(history_begin(db, &bad, &id), -EINVAL);
	bad.to_version = "1.1";
	bad.serial = "dev 1";
	ck_assert_int_eq(history_begin(db, &bad, &id), -EINVAL);
}
END_TEST

START_TEST(list_newest_first)
{
	struct history_entry *list = NULL;
	int64_t ids[5];
	size_t n;
	int i;

	for (i = 0; i < 5; i++)
		ids[i] = begin(i % 2 ? "dev-2" : "dev-1", "2.0.0", sha_a);
	ck_assert_int_eq(history_list(db, NULL, 0, &list, &n), 0);
	ck_assert_uint_eq(n, 5);
	for (i = 0; i < 5; i++)
		ck_assert_int_eq(list[i].id, ids[4 - i]);
	free(list);

	ck_assert_int_eq(history_list(db, "dev-1", 2, &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(list[0].id, ids[4]);
	ck_assert_int_eq(list[1].id, ids[2]);
	free(list);

	list = (struct history_entry *)&n; /* must be overwritten */
	ck_assert_int_eq(history_list(db, "dev-none", 0, &list, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(list);
	ck_assert_int_eq(history_list(db, "bad serial", 0, &list, &n), -EINVAL);
}
END_TEST

START_TEST(pending_install)
{
	struct history_entry e;
	int64_t id, id2;

	ck_assert_int_eq(history_pending_install(db, "dev-1", &e), -ENOENT);
	id = begin("dev-1", "1.1.0", sha_a);
	/* Still in progress: nothing to confirm yet. */
	ck_assert_int_eq(history_pending_install(db, "dev-1", &e), -ENOENT);
	ck_assert_int_eq(history_confirm(db, id, true, NULL), -EALREADY);
	ck_assert_int_eq(history_finish(db, id, HISTORY_RESULT_VERIFIED, 1000, NULL), 0);
	ck_assert_int_eq(history_pending_install(db, "dev-1", &e), 0);
	ck_assert_int_eq(e.id, id);
	ck_assert_str_eq(e.to_version, "1.1.0");
	ck_assert_int_eq(history_pending_install(db, "dev-2", &e), -ENOENT);

	/* The device came back running 1.1.0. */
	ck_assert_int_eq(history_confirm(db, id, true, NULL), 0);
	ck_assert_int_eq(history_pending_install(db, "dev-1", &e), -ENOENT);
	ck_assert_int_eq(history_confirm(db, id, false, NULL), -EALREADY);
	ck_assert_int_eq(history_confirm(db, 9999, false, NULL), -ENOENT);

	/* Verified, then came back on the old version. */
	id = begin("dev-1", "1.2.0", sha_b);
	ck_assert_int_eq(history_finish(db, id, HISTORY_RESULT_VERIFIED, 1000, NULL), 0);
	ck_assert_int_eq(history_confirm(db, id, false, "still running 1.1.0"), 0);
	ck_assert_int_eq(history_pending_install(db, "dev-1", &e), -ENOENT);

	/* Verified, then a newer transfer started: the old one is superseded. */
	id = begin("dev-2", "1.2.0", sha_b);
	ck_assert_int_eq(history_finish(db, id, HISTORY_RESULT_VERIFIED, 1000, NULL), 0);
	id2 = begin("dev-2", "1.3.0", sha_a);
	ck_assert_int_eq(history_pending_install(db, "dev-2", &e), -ENOENT);
	ck_assert_int_eq(history_finish(db, id2, HISTORY_RESULT_VERIFIED, 1000, NULL), 0);
	ck_assert_int_eq(history_pending_install(db, "dev-2", &e), 0);
	ck_assert_int_eq(e.id, id2);
}
END_TEST

START_TEST(abort_stale)
{
	struct history_entry *list = NULL;
	uint64_t count = 0;
	int64_t a, b;
	size_t n;

	a = begin("dev-1", "1.1.0", sha_a);
	b = begin("dev-2", "1.1.0", sha_a);
	ck_assert_int_eq(history_finish(db, b, HISTORY_RESULT_VERIFIED, 10, NULL), 0);
	ck_assert_int_eq(history_abort_stale(db, "gateway restarted", &count), 0);
	ck_assert_uint_eq(count, 1);
	ck_assert_int_eq(history_list(db, NULL, 0, &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(list[1].id, a);
	ck_assert_int_eq(list[1].result, HISTORY_RESULT_ABORTED);
	ck_assert_str_eq(list[1].reason, "gateway restarted");
	ck_assert_int_eq(list[0].result, HISTORY_RESULT_VERIFIED);
	free(list);
}
END_TEST

START_TEST(prune_keeps_newest)
{
	struct history_entry *list = NULL;
	char sql[256];
	int64_t id;
	size_t n;

	/* An old row, then ids jump as if HISTORY_MAX transfers had happened since. */
	id = begin("dev-1", "1.1.0", sha_a);
	snprintf(sql, sizeof(sql), "UPDATE sqlite_sequence SET seq = %lld WHERE name = 'history'",
	    (long long)(id + HISTORY_MAX - 1));
	dbtest_sql(t.db, sql);
	begin("dev-1", "1.2.0", sha_a); /* id + HISTORY_MAX: the old row is exactly too old */
	ck_assert_int_eq(history_list(db, NULL, 0, &list, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(list[0].to_version, "1.2.0");
	free(list);
}
END_TEST

START_TEST(names)
{
	ck_assert_str_eq(history_result_name(HISTORY_RESULT_INSTALL_FAILED), "install_failed");
	ck_assert_str_eq(history_result_name(HISTORY_RESULT_IN_PROGRESS), "in_progress");
	ck_assert_str_eq(history_result_name((enum history_result)17), "?");
}
END_TEST

static Suite *
history_suite(void)
{
	Suite *s = suite_create("history");
	TCase *tc = tcase_create("history");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, begin_and_finish);
	tcase_add_test(tc, list_newest_first);
	tcase_add_test(tc, pending_install);
	tcase_add_test(tc, abort_stale);
	tcase_add_test(tc, prune_keeps_newest);
	tcase_add_test(tc, names);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(history_suite());
}
