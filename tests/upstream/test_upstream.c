/* upstream.c, the per-device check, through the loop, libcurl, the stand-in and a real store:
 * the answer cache (no request within the lifetime, a new one after it or for a new identity),
 * backoff and Retry-After per device, project-wide gates for a rejected key and an unavailable
 * Memfault, shared requests for concurrent checks, cancellation, and a download whose expired
 * URL is refreshed through a fresh check. The key never reaches the log; the database passes
 * its integrity check after every test. */
#include "ck.h"
#include "db.h"
#include "devices.h"
#include "download.h"
#include "http.h"
#include "log.h"
#include "memfault.h"
#include "mockmf.h"
#include "store.h"
#include "tdata.h"
#include "tdir.h"
#include "tfile.h"
#include "tloop.h"
#include "upstream.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#define KEY "a1b2c3d4e5f60718293a4b5c6d7e8f90"

static struct event_base *base;
static struct mockmf *mf;
static struct http *http;
static struct memfault *client;
static struct store *st;
static struct upstream *up;
static char *dir;
static char sha[65];
static uint8_t payload[50000];

struct answer {
	bool done;
	struct upstream_answer a;
	size_t *count;
};

static void
on_answer(struct upstream_check *c, struct upstream_answer *a, void *userdata)
{
	struct answer *s = userdata;

	ck_assert(!s->done);
	s->done = true;
	s->a = *a;
	a->release = NULL; /* taken */
	if (s->count != NULL)
		(*s->count)++;
	upstream_check_cancel(c); /* a no-op here */
}

static void
answer_clear(struct answer *s)
{
	release_free(s->a.release);
	memset(s, 0, sizeof(*s));
}

static void
hello(const char *serial, const char *hw, const char *cur)
{
	struct devices_hello h = {serial, hw, "app", cur, "test:pty0"};

	ck_assert_int_eq(devices_upsert(store_db(st), &h), 0);
}

static void
check_as(const char *serial, const char *hw, const char *cur, unsigned flags, struct answer *s)
{
	struct memfault_identity id = {serial, hw, "app", cur};

	memset(s, 0, sizeof(*s));
	ck_assert_int_eq(upstream_check(up, &id, flags, on_answer, s, NULL), 0);
	ck_assert(!s->done); /* never synchronous, even from the cache */
	tloop_wait(base, tloop_flag, &s->done, 60000, "s->done");
}

static size_t
latest_requests(void)
{
	return mockmf_requests(mf, MOCKMF_LATEST_PATH);
}

static void
start(const struct upstream_config *ucfg)
{
	struct mockmf_options opt = {.project_key = KEY};
	struct memfault_config mcfg = {0};
	struct http_config hcfg = {0};
	struct store_config scfg = {0};
	char err[512], *logpath, *dbp, *cache;

	dir = tdir_new("upstream");
	logpath = tdir_join(dir, "log");
	tfile_capture_stderr(logpath);
	free(logpath);
	log_open("test", LOG_LEVEL_DEBUG, false);

	base = event_base_new();
	mf = mockmf_new(base, &opt);
	ck_assert_ptr_nonnull(mf);
	tdata_fill(payload, sizeof(payload), 5);
	tdata_sha256(payload, sizeof(payload), NULL, sha);
	ck_assert_int_eq(mockmf_add_payload(mf, "fw.bin", payload, sizeof(payload)), 0);
	ck_assert_int_eq(mockmf_add_release(mf, &(struct mockmf_release){.hardware_version = "evt",
						    .software_type = "app",
						    .version = "2.0.0",
						    .payload = "fw.bin"}),
	    0);
	hcfg.ca_file = mockmf_ca_file(mf);
	http = http_new(base, &hcfg);
	ck_assert_ptr_nonnull(http);
	mcfg.base_url = mockmf_base_url(mf);
	mcfg.project_key = KEY;
	ck_assert_int_eq(memfault_new(http, &mcfg, &client, err, sizeof(err)), 0);

	ck_assert_int_ge(asprintf(&dbp, "%s/otagw.db", dir), 0);
	ck_assert_int_ge(asprintf(&cache, "%s/cache", dir), 0);
	scfg.db_path = dbp;
	scfg.cache_dir = cache;
	ck_assert_msg(store_open(&scfg, &st, err, sizeof(err)) == 0, "%s", err);
	free(dbp);
	free(cache);
	ck_assert_int_eq(upstream_new(base, client, store_db(st), ucfg, &up), 0);
	hello("D1", "evt", "1.0.0");
	hello("D2", "evt", "1.0.0");
	hello("D3", "evt", "2.0.0");
}

static void
setup(void)
{
	struct upstream_config cfg = {.backoff = {.base_s = 600, .cap_s = 3600}};

	start(&cfg);
}

static void
teardown(void)
{
	char *path, *text;

	upstream_free(up);
	ck_assert_int_eq(db_integrity_check(store_db(st)), 0);
	store_free(st);
	memfault_free(client);
	http_free(http);
	mockmf_free(mf);
	event_base_free(base);
	fflush(stderr);
	ck_assert_int_ge(asprintf(&path, "%s/log", dir), 0);
	text = tfile_read(path, NULL);
	ck_assert_ptr_nonnull(text);
	ck_assert_ptr_null(strstr(text, KEY));
	if (getenv("OTAGW_TEST_LOG") != NULL) {
		/* keep what the operator would have seen, for a look after the run */
		FILE *f = fopen(getenv("OTAGW_TEST_LOG"), "a");

		if (f != NULL) {
			fputs(text, f);
			fclose(f);
		}
	}
	free(text);
	free(path);
	tdir_rmrf(dir);
	free(dir);
	up = NULL;
	st = NULL;
	client = NULL;
	http = NULL;
	mf = NULL;
	base = NULL;
	dir = NULL;
}

START_TEST(test_answer_cache)
{
	struct devices_entry e;
	struct answer s;

	check_as("D1", "evt", "1.0.0", 0, &s);
	ck_assert_int_eq(s.a.kind, UPSTREAM_UPDATE);
	ck_assert(!s.a.from_cache);
	ck_assert_str_eq(s.a.release->version, "2.0.0");
	ck_assert_str_eq(s.a.artifact->sha256, sha);
	ck_assert_uint_eq(latest_requests(), 1);
	answer_clear(&s);
	ck_assert_int_eq(devices_get(store_db(st), "D1", &e), 0);
	ck_assert_int_eq(e.last_result, DEVICES_RESULT_UPDATE);
	ck_assert_int_gt(e.answer_time, 0);

	/* within the lifetime: the same answer, no request */
	check_as("D1", "evt", "1.0.0", 0, &s);
	ck_assert_int_eq(s.a.kind, UPSTREAM_UPDATE);
	ck_assert(s.a.from_cache);
	ck_assert_str_eq(s.a.artifact->sha256, sha);
	ck_assert_uint_eq(latest_requests(), 1);
	answer_clear(&s);

	/* answers are per device: another device asks for itself */
	check_as("D2", "evt", "1.0.0", 0, &s);
	ck_assert(!s.a.from_cache);
	ck_assert_uint_eq(latest_requests(), 2);
	answer_clear(&s);

	/* no-update answers are cached too */
	check_as("D3", "evt", "2.0.0", 0, &s);
	ck_assert_int_eq(s.a.kind, UPSTREAM_NO_UPDATE);
	ck_assert_str_eq(s.a.reason, "latest");
	answer_clear(&s);
	check_as("D3", "evt", "2.0.0", 0, &s);
	ck_assert_int_eq(s.a.kind, UPSTREAM_NO_UPDATE);
	ck_assert(s.a.from_cache);
	ck_assert_str_eq(s.a.reason, "latest");
	ck_assert_uint_eq(latest_requests(), 3);
	answer_clear(&s);

	/* a fresh check skips the cache */
	check_as("D1", "evt", "1.0.0", UPSTREAM_CHECK_FRESH, &s);
	ck_assert(!s.a.from_cache);
	ck_assert_uint_eq(latest_requests(), 4);
	answer_clear(&s);

	/* the device came back with another version: the cached answer no longer applies */
	hello("D1", "evt", "1.5.0");
	check_as("D1", "evt", "1.5.0", 0, &s);
	ck_assert(!s.a.from_cache);
	ck_assert_uint_eq(latest_requests(), 5);
	ck_assert_str_eq(mockmf_log_get(mf, 4)->current_version, "1.5.0");
	answer_clear(&s);
}
END_TEST

START_TEST(test_answer_lifetime)
{
	struct upstream_config cfg = {.answer_lifetime_s = 1};
	struct answer s;

	teardown();
	start(&cfg);
	check_as("D1", "evt", "1.0.0", 0, &s);
	answer_clear(&s);
	tloop_for(base, 2100); /* past the one-second lifetime, whatever the clock's phase */
	check_as("D1", "evt", "1.0.0", 0, &s);
	ck_assert(!s.a.from_cache);
	ck_assert_uint_eq(latest_requests(), 2);
	answer_clear(&s);
}
END_TEST

START_TEST(test_transient_backoff)
{
	struct devices_entry e;
	struct answer s;

	ck_assert_int_eq(
	    mockmf_push(mf, MOCKMF_LATEST_PATH, &(struct mockmf_response){.status = 502}), 0);
	check_as("D1", "evt", "1.0.0", 0, &s);
	ck_assert_int_eq(s.a.kind, UPSTREAM_ERROR);
	ck_assert_int_eq(s.a.error, MEMFAULT_ERROR_TRANSIENT);
	ck_assert(!s.a.from_cache);
	/* the fresh failure already says how long the device should wait */
	ck_assert_uint_ge(s.a.retry_after_s, 290);
	ck_assert_uint_le(s.a.retry_after_s, 600);
	answer_clear(&s);
	ck_assert_int_eq(devices_get(store_db(st), "D1", &e), 0);
	ck_assert_int_eq(e.last_result, DEVICES_RESULT_ERROR);
	ck_assert_ptr_nonnull(strstr(e.last_reason, "HTTP 502"));

	/* in backoff: answered without a request, with the time to wait */
	check_as("D1", "evt", "1.0.0", UPSTREAM_CHECK_FRESH, &s);
	ck_assert_int_eq(s.a.kind, UPSTREAM_ERROR);
	ck_assert(s.a.from_cache);
	ck_assert_int_eq(s.a.error, MEMFAULT_ERROR_TRANSIENT);
	ck_assert_uint_ge(s.a.retry_after_s, 290); /* 600 s base, half of it jitter */
	ck_assert_uint_le(s.a.retry_after_s, 600);
	ck_assert_ptr_nonnull(strstr(s.a.message, "HTTP 502"));
	ck_assert_uint_eq(latest_requests(), 1);
	answer_clear(&s);

	/* other devices are not held back by D1's trouble */
	check_as("D2", "evt", "1.0.0", 0, &s);
	ck_assert_int_eq(s.a.kind, UPSTREAM_UPDATE);
	answer_clear(&s);
}
END_TEST

START_TEST(test_retry_after)
{
	struct answer s;
	char hdr[128], date[64];

	/* 429: this device's quota, in seconds */
	ck_assert_int_eq(
	    mockmf_push(mf, MOCKMF_LATEST_PATH,
		&(struct mockmf_response){.status = 429, .headers = "Retry-After: 120"}),
	    0);
	check_as("D1", "evt", "1.0.0", 0, &s);
	ck_assert_int_eq(s.a.error, MEMFAULT_ERROR_RATE_LIMITED);
	answer_clear(&s);
	check_as("D1", "evt", "1.0.0", 0, &s);
	ck_assert(s.a.from_cache);
	ck_assert_uint_le(s.a.retry_after_s, 120);
	ck_assert_uint_ge(s.a.retry_after_s, 60);
	answer_clear(&s);
	check_as("D2", "evt", "1.0.0", 0, &s);
	ck_assert_int_eq(s.a.kind, UPSTREAM_UPDATE);
	answer_clear(&s);

	/* 503 with a date: Memfault as a whole, every device waits */
	mockmf_http_date(time(NULL) + 300, date, sizeof(date));
	snprintf(hdr, sizeof(hdr), "Retry-After: %s", date);
	ck_assert_int_eq(mockmf_push(mf, MOCKMF_LATEST_PATH,
			     &(struct mockmf_response){.status = 503, .headers = hdr}),
	    0);
	check_as("D3", "evt", "2.0.0", 0, &s);
	ck_assert_int_eq(s.a.error, MEMFAULT_ERROR_RATE_LIMITED);
	answer_clear(&s);
	check_as("D2", "evt", "1.0.0", UPSTREAM_CHECK_FRESH, &s);
	ck_assert(s.a.from_cache);
	ck_assert_int_eq(s.a.kind, UPSTREAM_ERROR);
	ck_assert_uint_ge(s.a.retry_after_s, 200);
	ck_assert_uint_le(s.a.retry_after_s, 300);
	ck_assert_ptr_nonnull(strstr(s.a.message, "Memfault is unavailable (HTTP 503)"));
	answer_clear(&s);
	ck_assert_uint_eq(latest_requests(), 3);
}
END_TEST

START_TEST(test_key_rejected_for_all)
{
	struct answer s;
	char *path, *text;

	ck_assert_int_eq(mockmf_set_project_key(mf, "ffffffffffffffffffffffffffffffff"), 0);
	check_as("D1", "evt", "1.0.0", 0, &s);
	ck_assert_int_eq(s.a.error, MEMFAULT_ERROR_CONFIG);
	ck_assert_int_eq(s.a.http_status, 403);
	answer_clear(&s);
	check_as("D2", "evt", "1.0.0", 0, &s);
	ck_assert(s.a.from_cache);
	ck_assert_int_eq(s.a.error, MEMFAULT_ERROR_CONFIG);
	ck_assert_uint_ge(s.a.retry_after_s, 3500);
	ck_assert_str_eq(s.a.message, "Memfault rejected the project key (HTTP 403): check "
				      "project_key in /etc/otagw/otagw.conf");
	answer_clear(&s);
	ck_assert_uint_eq(latest_requests(), 1);

	/* the operator sees one line saying what to fix, with the device, and not the key */
	fflush(stderr);
	ck_assert_int_ge(asprintf(&path, "%s/log", dir), 0);
	text = tfile_read(path, NULL);
	ck_assert_ptr_nonnull(strstr(text,
	    "test err: D1: Memfault rejected the project key (HTTP 403): check project_key in "
	    "/etc/otagw/otagw.conf; not asking again for 3600 s"));
	free(text);
	free(path);
}
END_TEST

START_TEST(test_identity_rejected_per_device)
{
	struct answer s;

	hello("D4", "nope", "1.0.0");
	check_as("D4", "nope", "1.0.0", 0, &s);
	ck_assert_int_eq(s.a.error, MEMFAULT_ERROR_CONFIG);
	ck_assert_int_eq(s.a.http_status, 400);
	answer_clear(&s);
	check_as("D4", "nope", "1.0.0", 0, &s);
	ck_assert(s.a.from_cache);
	answer_clear(&s);
	check_as("D1", "evt", "1.0.0", 0, &s);
	ck_assert_int_eq(s.a.kind, UPSTREAM_UPDATE);
	answer_clear(&s);
	ck_assert_uint_eq(latest_requests(), 2);
}
END_TEST

START_TEST(test_concurrent_checks_share)
{
	struct memfault_identity id = {"D1", "evt", "app", "1.0.0"};
	struct answer s[5];
	struct upstream_check *gone;
	size_t done = 0, i;

	memset(s, 0, sizeof(s));
	for (i = 0; i < 5; i++) {
		s[i].count = &done;
		ck_assert_int_eq(upstream_check(up, &id, UPSTREAM_CHECK_FRESH, on_answer, &s[i],
				     i == 4 ? &gone : NULL),
		    0);
	}
	upstream_check_cancel(gone);
	tloop_wait(base, tloop_count, &(struct tloop_count){&done, 4}, 60000, "4 done");
	tloop_for(base, 100);
	ck_assert(!s[4].done);
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(s[i].a.kind, UPSTREAM_UPDATE);
		ck_assert_str_eq(s[i].a.artifact->sha256, sha); /* each has its own release */
		answer_clear(&s[i]);
	}
	ck_assert_uint_eq(latest_requests(), 1);

	/* a check whose request is still out can be cancelled; nobody hears of it */
	ck_assert_int_eq(mockmf_push(mf, MOCKMF_LATEST_PATH,
			     &(struct mockmf_response){.drip_ms = 200, .drip_bytes = 10}),
	    0);
	memset(s, 0, sizeof(s));
	ck_assert_int_eq(upstream_check(up, &id, UPSTREAM_CHECK_FRESH, on_answer, &s[0], &gone), 0);
	tloop_for(base, 5);
	upstream_check_cancel(gone);
	tloop_for(base, 300);
	ck_assert(!s[0].done);
	ck_assert_uint_eq(http_pending(http), 0);

	/* invalid identities */
	id.serial = "bad serial";
	ck_assert_int_eq(upstream_check(up, &id, 0, on_answer, &s[0], NULL), -EINVAL);
}
END_TEST

/* The device's refresh: a fresh check through upstream, its artifact's URL to the download. */
struct refresher {
	struct download_waiter *w;
	bool done;
	int err;
	unsigned refreshes;
	char msg[DOWNLOAD_MESSAGE_MAX];
};

static void
on_fresh_answer(struct upstream_check *c, struct upstream_answer *a, void *userdata)
{
	struct refresher *r = userdata;

	(void)c;
	if (a->kind == UPSTREAM_UPDATE)
		ck_assert_int_eq(
		    download_waiter_set_url(r->w, a->artifact->sha256, a->artifact->url, a->time),
		    0);
	else
		ck_assert_int_eq(download_waiter_url_failed(r->w, a->message), 0);
}

static void
on_refresh(struct download_waiter *w, void *userdata)
{
	struct memfault_identity id = {"D1", "evt", "app", "1.0.0"};
	struct refresher *r = userdata;

	(void)w;
	r->refreshes++;
	ck_assert_int_eq(
	    upstream_check(up, &id, UPSTREAM_CHECK_FRESH, on_fresh_answer, r, NULL), 0);
}

static void
on_downloaded(struct download_waiter *w, int err, const char *message, void *userdata)
{
	struct refresher *r = userdata;

	(void)w;
	r->done = true;
	r->err = err;
	snprintf(r->msg, sizeof(r->msg), "%s", message);
}

START_TEST(test_download_refresh_through_check)
{
	struct download_manager *dm;
	struct refresher r = {0};
	struct download_callbacks cb = {on_downloaded, on_refresh, &r};
	struct download_request req = {.version = "2.0.0", .serial = "D1"};
	struct answer s;

	ck_assert_int_eq(download_manager_new(base, http, st, NULL, &dm), 0);
	check_as("D1", "evt", "1.0.0", 0, &s);
	ck_assert_int_eq(s.a.kind, UPSTREAM_UPDATE);
	/* the signed URL expires before the download starts */
	mockmf_expire_urls(mf);
	req.sha256 = s.a.artifact->sha256;
	req.size = s.a.artifact->file_size;
	req.md5 = s.a.artifact->md5;
	req.url = s.a.artifact->url;
	req.url_fetched = s.a.time;
	req.artifact_id = s.a.artifact->id;
	ck_assert_int_eq(download_get(dm, &req, &cb, &r.w), 0);
	answer_clear(&s);
	tloop_wait(base, tloop_flag, &r.done, 60000, "r.done");
	ck_assert_msg(r.err == 0, "%s", r.msg);
	ck_assert_uint_eq(r.refreshes, 1);
	ck_assert_uint_eq(latest_requests(), 2);
	ck_assert_uint_eq(mockmf_requests(mf, "/cdn/fw.bin"), 2);
	download_manager_free(dm);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("upstream");
	TCase *tc = tcase_create("check");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_answer_cache);
	tcase_add_test(tc, test_answer_lifetime);
	tcase_add_test(tc, test_transient_backoff);
	tcase_add_test(tc, test_retry_after);
	tcase_add_test(tc, test_key_rejected_for_all);
	tcase_add_test(tc, test_identity_rejected_per_device);
	tcase_add_test(tc, test_concurrent_checks_share);
	tcase_add_test(tc, test_download_refresh_through_check);
	suite_add_tcase(s, tc);
	return ck_main(s);
}
