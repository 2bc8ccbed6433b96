/* The devices table: upsert on hello with validation, the per-device answer cache and when it
 * is dropped, listing, and the install state. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dbtest.h"
#include "devices.h"

static struct dbtest t;
static struct db *db;

static const char release[] = "{\"version\":\"1.1.0\",\"artifacts\":[{\"sha256\":\"ab\"}]}";

static void
setup(void)
{
	dbtest_init(&t);
	dbtest_open(&t, 0);
	db = store_db(t.s);
}

static void
teardown(void)
{
	dbtest_done(&t);
}

static struct devices_hello
hello(const char *serial, const char *version)
{
	struct devices_hello h = {
	    .serial = serial,
	    .hardware_version = "evt-2",
	    .software_type = "main-mcu",
	    .current_version = version,
	    .link = "uart:/dev/serial/by-id/usb-FTDI-if00",
	};

	return h;
}

START_TEST(upsert_and_get)
{
	struct devices_hello h = hello("A1B2-c3_d4", "1.0.0+build.7 (rc)");
	struct devices_entry d;

	ck_assert_int_eq(devices_upsert(db, &h), 0);
	ck_assert_int_eq(devices_get(db, "A1B2-c3_d4", &d), 0);
	ck_assert_str_eq(d.serial, "A1B2-c3_d4");
	ck_assert_str_eq(d.hardware_version, "evt-2");
	ck_assert_str_eq(d.software_type, "main-mcu");
	ck_assert_str_eq(d.current_version, "1.0.0+build.7 (rc)");
	ck_assert_str_eq(d.link, h.link);
	ck_assert_int_gt(d.first_seen, 0);
	ck_assert_int_ge(d.last_seen, d.first_seen);
	ck_assert_int_eq(d.last_check, 0);
	ck_assert_int_eq(d.last_result, DEVICES_RESULT_NONE);
	ck_assert_int_eq(d.install_state, DEVICES_INSTALL_NONE);

	/* A hello over another link updates the row in place. */
	h.link = "ble:C0:FF:EE:00:11:22";
	ck_assert_int_eq(devices_upsert(db, &h), 0);
	ck_assert_int_eq(devices_get(db, "A1B2-c3_d4", &d), 0);
	ck_assert_str_eq(d.link, "ble:C0:FF:EE:00:11:22");
	ck_assert_int_eq(devices_get(db, "nobody", &d), -ENOENT);
}
END_TEST

/* Table of hellos that must be refused, with the field the message must name. */
static const struct {
	const char *serial, *hw, *sw, *ver, *link, *field;
} bad_hellos[] = {
    {"has space", "evt", "main", "1", "uart:x", "serial"},
    {"", "evt", "main", "1", "uart:x", "serial"},
    {"x/../y", "evt", "main", "1", "uart:x", "serial"},
    {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "evt", "main", "1",
	"uart:x", "serial"}, /* 65 bytes */
    {"ok", "", "main", "1", "uart:x", "hardware_version"},
    {"ok", "evt\n", "main", "1", "uart:x", "hardware_version"},
    {"ok", "evt", "0123456789012345678901234567890123", "1", "uart:x", "software_type"},
    {"ok", "evt", "main", "v\x01", "uart:x", "current_version"},
    {"ok", "evt", "main", "1", "", "link"},
    {"ok", "evt", "main", "1", "uart:\xff", "link"},
};

START_TEST(upsert_refuses_bad_fields)
{
	struct devices_hello h = {
	    bad_hellos[_i].serial,
	    bad_hellos[_i].hw,
	    bad_hellos[_i].sw,
	    bad_hellos[_i].ver,
	    bad_hellos[_i].link,
	};
	struct devices_entry d;

	ck_assert_int_eq(devices_upsert(db, &h), -EINVAL);
	ck_assert_msg(
	    strstr(db_errmsg(db), bad_hellos[_i].field) != NULL, "message: %s", db_errmsg(db));
	ck_assert_int_ne(devices_get(db, "ok", &d), 0);
}
END_TEST

START_TEST(answer_cache)
{
	struct devices_hello h = hello("dev-1", "1.0.0");
	struct devices_check up = {1700000000, DEVICES_RESULT_UPDATE, NULL, release};
	struct devices_check err = {
	    1700000500, DEVICES_RESULT_ERROR, "HTTP 503, retry in 60 s", NULL};
	struct devices_answer a = {0};
	struct devices_entry d;

	ck_assert_int_eq(devices_upsert(db, &h), 0);
	ck_assert_int_eq(devices_get_answer(db, "dev-1", &a), -ENOENT);
	ck_assert_int_eq(devices_record_check(db, "dev-1", &up), 0);
	ck_assert_int_eq(devices_get_answer(db, "dev-1", &a), 0);
	ck_assert_int_eq(a.time, 1700000000);
	ck_assert_int_eq(a.result, DEVICES_RESULT_UPDATE);
	ck_assert_str_eq(a.release_json, release);
	devices_answer_clear(&a);
	ck_assert_ptr_null(a.release_json);

	/* A failed check is recorded, but the good answer stays cached. */
	ck_assert_int_eq(devices_record_check(db, "dev-1", &err), 0);
	ck_assert_int_eq(devices_get(db, "dev-1", &d), 0);
	ck_assert_int_eq(d.last_check, 1700000500);
	ck_assert_int_eq(d.last_result, DEVICES_RESULT_ERROR);
	ck_assert_str_eq(d.last_reason, "HTTP 503, retry in 60 s");
	ck_assert_int_eq(d.answer_time, 1700000000);
	ck_assert_int_eq(devices_get_answer(db, "dev-1", &a), 0);
	ck_assert_int_eq(a.result, DEVICES_RESULT_UPDATE);
	devices_answer_clear(&a);

	/* The same identity again keeps the answer; a new current_version drops it. */
	ck_assert_int_eq(devices_upsert(db, &h), 0);
	ck_assert_int_eq(devices_get_answer(db, "dev-1", &a), 0);
	devices_answer_clear(&a);
	h.current_version = "1.1.0";
	ck_assert_int_eq(devices_upsert(db, &h), 0);
	ck_assert_int_eq(devices_get_answer(db, "dev-1", &a), -ENOENT);
	ck_assert_int_eq(devices_get(db, "dev-1", &d), 0);
	ck_assert_int_eq(d.answer_time, 0);
	ck_assert_int_eq(d.last_result, DEVICES_RESULT_ERROR); /* history of checks stays */
}
END_TEST

START_TEST(no_update_answers)
{
	struct devices_hello h = hello("dev-2", "2.0.0");
	struct devices_check c = {1700000000, DEVICES_RESULT_NO_UPDATE, "rate-limited", NULL};
	struct devices_answer a = {0};

	ck_assert_int_eq(devices_upsert(db, &h), 0);
	ck_assert_int_eq(devices_record_check(db, "dev-2", &c), 0);
	ck_assert_int_eq(devices_get_answer(db, "dev-2", &a), 0);
	ck_assert_int_eq(a.result, DEVICES_RESULT_NO_UPDATE);
	ck_assert_str_eq(a.reason, "rate-limited");
	ck_assert_ptr_null(a.release_json);
	ck_assert_int_eq(devices_forget_answer(db, "dev-2"), 0);
	ck_assert_int_eq(devices_get_answer(db, "dev-2", &a), -ENOENT);
	ck_assert_int_eq(devices_forget_answer(db, "dev-x"), -ENOENT);
}
END_TEST

START_TEST(record_check_refusals)
{
	struct devices_hello h = hello("dev-3", "1.0.0");
	struct devices_check c = {1, DEVICES_RESULT_UPDATE, NULL, release};
	struct devices_answer a = {0};
	char *big;

	/* Unknown device. */
	ck_assert_int_eq(devices_record_check(db, "dev-3", &c), -ENOENT);
	ck_assert_int_eq(devices_upsert(db, &h), 0);
	/* An update needs its release; only an update carries one. */
	c.release_json = NULL;
	ck_assert_int_eq(devices_record_check(db, "dev-3", &c), -EINVAL);
	c.result = DEVICES_RESULT_NO_UPDATE;
	c.release_json = release;
	ck_assert_int_eq(devices_record_check(db, "dev-3", &c), -EINVAL);
	c.result = DEVICES_RESULT_NONE;
	c.release_json = NULL;
	ck_assert_int_eq(devices_record_check(db, "dev-3", &c), -EINVAL);
	/* A reason with a control character. */
	c.result = DEVICES_RESULT_NO_UPDATE;
	c.reason = "latest\r\n";
	ck_assert_int_eq(devices_record_check(db, "dev-3", &c), -EINVAL);
	/* A release larger than the bound is not cached. */
	big = malloc(DEVICES_ANSWER_MAX + 2);
	ck_assert_ptr_nonnull(big);
	memset(big, ' ', DEVICES_ANSWER_MAX + 1);
	big[DEVICES_ANSWER_MAX + 1] = '\0';
	c.result = DEVICES_RESULT_UPDATE;
	c.reason = NULL;
	c.release_json = big;
	ck_assert_int_eq(devices_record_check(db, "dev-3", &c), -E2BIG);
	big[DEVICES_ANSWER_MAX] = '\0'; /* exactly the bound: fine */
	ck_assert_int_eq(devices_record_check(db, "dev-3", &c), 0);
	ck_assert_int_eq(devices_get_answer(db, "dev-3", &a), 0);
	ck_assert_uint_eq(strlen(a.release_json), DEVICES_ANSWER_MAX);
	devices_answer_clear(&a);
	free(big);
}
END_TEST

struct walk {
	int n;
	char serials[4][IDENT_SERIAL_MAX + 1];
};

static int
walk_cb(const struct devices_entry *d, void *arg)
{
	struct walk *w = arg;
	struct devices_hello h = hello("zz-added-during-walk", "1");

	memcpy(w->serials[w->n++], d->serial, sizeof(w->serials[0]));
	/* Changing the table from the callback is allowed. */
	if (w->n == 1)
		ck_assert_int_eq(devices_upsert(db, &h), 0);
	return w->n == 4 ? 7 : 0;
}

START_TEST(foreach_by_serial)
{
	struct devices_hello h;
	struct walk w = {0};

	h = hello("c", "1");
	ck_assert_int_eq(devices_upsert(db, &h), 0);
	h = hello("a", "1");
	ck_assert_int_eq(devices_upsert(db, &h), 0);
	h = hello("b", "1");
	ck_assert_int_eq(devices_upsert(db, &h), 0);
	ck_assert_int_eq(devices_foreach(db, walk_cb, &w), 7);
	ck_assert_int_eq(w.n, 4);
	ck_assert_str_eq(w.serials[0], "a");
	ck_assert_str_eq(w.serials[1], "b");
	ck_assert_str_eq(w.serials[2], "c");
	ck_assert_str_eq(w.serials[3], "zz-added-during-walk");
}
END_TEST

START_TEST(install_state)
{
	struct devices_hello h = hello("dev-4", "1.0.0");
	const char *sha = "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff";
	struct devices_entry d;

	ck_assert_int_eq(
	    devices_set_install(db, "dev-4", DEVICES_INSTALL_PENDING, "1.1", sha), -ENOENT);
	ck_assert_int_eq(devices_upsert(db, &h), 0);
	/* Nothing pending: nothing to confirm. */
	ck_assert_int_eq(
	    devices_set_install(db, "dev-4", DEVICES_INSTALL_CONFIRMED, NULL, NULL), -EINVAL);
	ck_assert_int_eq(
	    devices_set_install(db, "dev-4", DEVICES_INSTALL_PENDING, "1.1", NULL), -EINVAL);
	ck_assert_int_eq(
	    devices_set_install(db, "dev-4", DEVICES_INSTALL_PENDING, "1.1", "xyz"), -EINVAL);
	ck_assert_int_eq(devices_set_install(db, "dev-4", DEVICES_INSTALL_PENDING, "1.1", sha), 0);
	ck_assert_int_eq(devices_get(db, "dev-4", &d), 0);
	ck_assert_int_eq(d.install_state, DEVICES_INSTALL_PENDING);
	ck_assert_str_eq(d.install_version, "1.1");
	ck_assert_str_eq(
	    d.install_sha256, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
	ck_assert_int_gt(d.install_time, 0);

	/* Confirming another version than the pending one is refused. */
	ck_assert_int_eq(
	    devices_set_install(db, "dev-4", DEVICES_INSTALL_CONFIRMED, "1.2", NULL), -EINVAL);
	ck_assert_int_eq(
	    devices_set_install(db, "dev-4", DEVICES_INSTALL_CONFIRMED, "1.1", NULL), 0);
	ck_assert_int_eq(devices_get(db, "dev-4", &d), 0);
	ck_assert_int_eq(d.install_state, DEVICES_INSTALL_CONFIRMED);
	ck_assert_str_eq(d.install_version, "1.1");
	ck_assert_str_eq(devices_install_name(d.install_state), "confirmed");

	ck_assert_int_eq(devices_set_install(db, "dev-4", DEVICES_INSTALL_NONE, NULL, NULL), 0);
	ck_assert_int_eq(devices_get(db, "dev-4", &d), 0);
	ck_assert_int_eq(d.install_state, DEVICES_INSTALL_NONE);
	ck_assert_str_eq(d.install_version, "");
	ck_assert_str_eq(d.install_sha256, "");
	ck_assert_int_eq(
	    devices_set_install(db, "dev-4", (enum devices_install)9, NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(names)
{
	ck_assert_str_eq(devices_result_name(DEVICES_RESULT_NO_UPDATE), "no_update");
	ck_assert_str_eq(devices_result_name((enum devices_result)42), "?");
	ck_assert_str_eq(devices_install_name(DEVICES_INSTALL_FAILED), "failed");
}
END_TEST

static Suite *
devices_suite(void)
{
	Suite *s = suite_create("devices");
	TCase *tc = tcase_create("devices");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, upsert_and_get);
	tcase_add_loop_test(
	    tc, upsert_refuses_bad_fields, 0, (int)(sizeof(bad_hellos) / sizeof(bad_hellos[0])));
	tcase_add_test(tc, answer_cache);
	tcase_add_test(tc, no_update_answers);
	tcase_add_test(tc, record_check_refusals);
	tcase_add_test(tc, foreach_by_serial);
	tcase_add_test(tc, install_state);
	tcase_add_test(tc, names);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(devices_suite());
}
