/* download.c through the real loop, libcurl multi, the HTTPS stand-in and a real store:
 * single flight, resume with Range across cuts and restarts, a CDN ignoring Range, expired and
 * stale URLs, wrong size, wrong hash, wrong MD5, truncated bodies, slow drips, refused
 * certificates, cancellation. The store's integrity check runs after every test. */
#include "ck.h"
#include "db.h"
#include "download.h"
#include "http.h"
#include "log.h"
#include "mockmf.h"
#include "store.h"
#include "tdata.h"
#include "tdir.h"
#include "tloop.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/evp.h>

#define KEY  "0123456789abcdef0123456789abcdef"
#define SIZE 200000

static struct event_base *base;
static struct mockmf *mf;
static struct http *http;
static struct store *st;
static struct download_manager *dm;
static char *dir;
static uint8_t payload[SIZE];
static char sha[65];

enum refresh_mode {
	REFRESH_MINT,      /* answer with a freshly signed URL of the same payload */
	REFRESH_OTHER_SHA, /* Memfault now names another artifact */
	REFRESH_FAIL,      /* Memfault cannot be asked */
	REFRESH_NONE,      /* no refresh callback */
	REFRESH_HOLD,      /* take the request and never answer */
};

struct waiter {
	bool done;
	int err;
	char msg[DOWNLOAD_MESSAGE_MAX];
	enum refresh_mode mode;
	unsigned refreshes;
	struct download_waiter *w;
	size_t *count; /* incremented when done, for many waiters */
};

static void
on_done(struct download_waiter *w, int err, const char *message, void *userdata)
{
	struct waiter *s = userdata;

	ck_assert_ptr_eq(w, s->w);
	ck_assert(!s->done);
	s->done = true;
	s->err = err;
	snprintf(s->msg, sizeof(s->msg), "%s", message);
	if (s->count != NULL)
		(*s->count)++;
	download_waiter_cancel(w); /* a no-op here */
}

static void
on_refresh(struct download_waiter *w, void *userdata)
{
	struct waiter *s = userdata;
	char url[512];

	s->refreshes++;
	switch (s->mode) {
	case REFRESH_MINT:
		ck_assert_int_eq(mockmf_payload_url(mf, "fw.bin", url, sizeof(url)), 0);
		ck_assert_int_eq(download_waiter_set_url(w, sha, url, 0), 0);
		/* answered once: a second answer is stale */
		ck_assert_int_eq(download_waiter_set_url(w, sha, url, 0), -ESTALE);
		break;
	case REFRESH_OTHER_SHA:
		ck_assert_int_eq(mockmf_payload_url(mf, "fw.bin", url, sizeof(url)), 0);
		ck_assert_int_eq(
		    download_waiter_set_url(w,
			"ff00000000000000000000000000000000000000000000000000000000000000", url, 0),
		    0);
		break;
	case REFRESH_FAIL:
		ck_assert_int_eq(
		    download_waiter_url_failed(w, "Memfault is unavailable (HTTP 503)"), 0);
		break;
	case REFRESH_HOLD:
		break;
	case REFRESH_NONE:
		ck_abort_msg("no refresh expected");
	}
}

static void
fresh_url(char *url, size_t n)
{
	ck_assert_int_eq(mockmf_payload_url(mf, "fw.bin", url, n), 0);
}

static void
get_with(struct waiter *s, const char *sha256, uint64_t size, const char *md5, const char *url,
    int64_t fetched)
{
	struct download_request req = {
	    .sha256 = sha256,
	    .size = size,
	    .md5 = md5,
	    .url = url,
	    .url_fetched = fetched,
	    .artifact_id = 63,
	    .version = "1.2.0",
	    .serial = "D1",
	};
	struct download_callbacks cb = {
	    .done = on_done,
	    .refresh = s->mode == REFRESH_NONE ? NULL : on_refresh,
	    .userdata = s,
	};

	ck_assert_int_eq(download_get(dm, &req, &cb, &s->w), 0);
	ck_assert(!s->done);
}

static void
get(struct waiter *s)
{
	char url[512];

	fresh_url(url, sizeof(url));
	get_with(s, sha, SIZE, NULL, url, 0);
}

static void
expect_blob(void)
{
	uint8_t *buf = malloc(SIZE);
	uint64_t size = 0;
	ssize_t n;
	int fd;

	ck_assert_int_eq(store_blob_open(st, sha, &fd, &size), 0);
	ck_assert_uint_eq(size, SIZE);
	n = pread(fd, buf, SIZE, 0);
	ck_assert_int_eq(n, SIZE);
	ck_assert_mem_eq(buf, payload, SIZE);
	close(fd);
	free(buf);
}

static void
expect_gone(void)
{
	struct store_artifact a;

	ck_assert_int_eq(store_artifact_get(st, sha, &a), -ENOENT);
}

static uint64_t
partial_bytes(void)
{
	struct store_artifact a;

	ck_assert_int_eq(store_artifact_get(st, sha, &a), 0);
	ck_assert_int_eq(a.state, STORE_STATE_PARTIAL);
	return a.bytes_present;
}

static size_t
cdn_gets(void)
{
	return mockmf_requests(mf, "/cdn/fw.bin");
}

static const struct mockmf_request *
cdn_get(size_t nth)
{
	size_t i, k = 0;

	for (i = 0; i < mockmf_log_count(mf); i++) {
		const struct mockmf_request *e = mockmf_log_get(mf, i);

		if (strcmp(e->path, "/cdn/fw.bin") == 0 && k++ == nth)
			return e;
	}
	ck_abort_msg("no CDN request #%zu", nth);
	return NULL;
}

static void
open_store(void)
{
	struct store_config scfg = {0};
	char *dbp, *cache, err[STORE_ERRMSG_MAX];

	ck_assert_int_ge(asprintf(&dbp, "%s/otagw.db", dir), 0);
	ck_assert_int_ge(asprintf(&cache, "%s/cache", dir), 0);
	scfg.db_path = dbp;
	scfg.cache_dir = cache;
	ck_assert_msg(store_open(&scfg, &st, err, sizeof(err)) == 0, "%s", err);
	free(dbp);
	free(cache);
}

static void
open_manager(void)
{
	struct download_config cfg = {.retry = {.base_s = 1, .cap_s = 2}};

	ck_assert_int_eq(download_manager_new(base, http, st, &cfg, &dm), 0);
}

static void
start(enum mockmf_cert cert, const struct http_config *hcfg_in)
{
	struct mockmf_options opt = {.project_key = KEY, .cert = cert};
	struct http_config hcfg = {0};

	log_open("test", LOG_LEVEL_DEBUG, false);
	base = event_base_new();
	mf = mockmf_new(base, &opt);
	ck_assert_ptr_nonnull(mf);
	tdata_fill(payload, SIZE, 99);
	tdata_sha256(payload, SIZE, NULL, sha);
	ck_assert_int_eq(mockmf_add_payload(mf, "fw.bin", payload, SIZE), 0);
	if (hcfg_in != NULL)
		hcfg = *hcfg_in;
	hcfg.ca_file = mockmf_ca_file(mf);
	http = http_new(base, &hcfg);
	ck_assert_ptr_nonnull(http);
	dir = tdir_new("download");
	open_store();
	open_manager();
}

static void
setup(void)
{
	start(MOCKMF_CERT_GOOD, NULL);
}

static void
teardown(void)
{
	download_manager_free(dm);
	ck_assert_int_eq(db_integrity_check(store_db(st)), 0);
	store_free(st);
	http_free(http);
	mockmf_free(mf);
	event_base_free(base);
	tdir_rmrf(dir);
	free(dir);
	dm = NULL;
	st = NULL;
	http = NULL;
	mf = NULL;
	base = NULL;
	dir = NULL;
}

/* Leaves a partial of at least min bytes in the store: a slow transfer whose only waiter
 * leaves. */
static uint64_t
make_partial(uint64_t min)
{
	struct download_progress p;
	struct waiter s = {.mode = REFRESH_MINT};
	unsigned waited = 0;

	ck_assert_int_eq(mockmf_push(mf, "/cdn/fw.bin",
			     &(struct mockmf_response){.drip_ms = 20, .drip_bytes = 8192}),
	    0);
	get(&s);
	for (;;) {
		tloop_for(base, 50);
		ck_assert_int_eq(download_get_progress(dm, sha, &p), 0);
		if (p.bytes >= min)
			break;
		ck_assert_uint_lt(waited++, 1200);
	}
	ck_assert_uint_eq(p.waiters, 1);
	ck_assert_uint_eq(p.size, SIZE);
	download_waiter_cancel(s.w);
	tloop_for(base, 100);
	ck_assert(!s.done);
	ck_assert_int_eq(download_get_progress(dm, sha, &p), -ENOENT);
	return partial_bytes();
}

START_TEST(test_fresh_download)
{
	struct waiter s = {.mode = REFRESH_NONE}, again = {.mode = REFRESH_NONE};
	struct store_artifact a;

	get(&s);
	tloop_wait(base, tloop_flag, &s.done, 60000, "s.done");
	ck_assert_msg(s.err == 0, "%s", s.msg);
	ck_assert_ptr_nonnull(strstr(s.msg, "200000 bytes, size and sha256 verified"));
	expect_blob();
	ck_assert_int_eq(store_artifact_get(st, sha, &a), 0);
	ck_assert_int_eq(a.state, STORE_STATE_COMPLETE);
	ck_assert(a.verified);
	ck_assert_str_eq(a.version, "1.2.0");
	ck_assert_uint_eq(cdn_gets(), 1);
	ck_assert_ptr_null(cdn_get(0)->range);

	/* asking again: already there, no request, still asynchronous */
	get(&again);
	tloop_wait(base, tloop_flag, &again.done, 60000, "again.done");
	ck_assert_int_eq(again.err, 0);
	ck_assert_str_eq(again.msg, "already in the cache");
	ck_assert_uint_eq(cdn_gets(), 1);
}
END_TEST

START_TEST(test_redirect_to_cdn)
{
	struct waiter s = {.mode = REFRESH_NONE};

	/* the payload URL answers with a redirect (to the CDN path, the signed query kept) */
	ck_assert_int_eq(
	    mockmf_push(mf, "/cdn/fw.bin", &(struct mockmf_response){.redirect = "/cdn/fw.bin"}),
	    0);
	get(&s);
	tloop_wait(base, tloop_flag, &s.done, 60000, "s.done");
	ck_assert_msg(s.err == 0, "%s", s.msg);
	ck_assert_uint_eq(cdn_gets(), 2);
	ck_assert_int_eq(cdn_get(0)->status, 302);
	ck_assert_int_eq(cdn_get(1)->status, 200);
	expect_blob();
}
END_TEST

START_TEST(test_single_flight)
{
	struct waiter s[50];
	size_t done = 0, i;
	char url[512];

	memset(s, 0, sizeof(s));
	for (i = 0; i < 50; i++) {
		s[i].mode = REFRESH_MINT;
		s[i].count = &done;
		fresh_url(url, sizeof(url)); /* every device has its own signed URL */
		get_with(&s[i], sha, SIZE, NULL, url, 0);
	}
	tloop_wait(base, tloop_count, &(struct tloop_count){&done, 50}, 120000, "50 done");
	for (i = 0; i < 50; i++)
		ck_assert_msg(s[i].err == 0, "%zu: %s", i, s[i].msg);
	ck_assert_uint_eq(cdn_gets(), 1);
	expect_blob();
}
END_TEST

START_TEST(test_md5)
{
	struct waiter s = {.mode = REFRESH_NONE}, bad = {.mode = REFRESH_NONE};
	char url[512], md5[33];
	unsigned char md[16];
	unsigned int n, i;

	ck_assert_int_eq(EVP_Digest(payload, SIZE, md, &n, EVP_md5(), NULL), 1);
	for (i = 0; i < 16; i++)
		snprintf(md5 + 2 * i, 3, "%02X", md[i]); /* upper case is accepted */
	fresh_url(url, sizeof(url));
	get_with(&bad, sha, SIZE, "00000000000000000000000000000000", url, 0);
	tloop_wait(base, tloop_flag, &bad.done, 60000, "bad.done");
	ck_assert_int_eq(bad.err, -EBADMSG);
	ck_assert_ptr_nonnull(strstr(bad.msg, "MD5"));
	ck_assert_ptr_nonnull(strstr(bad.msg, "deleted, never served"));
	expect_gone();

	fresh_url(url, sizeof(url));
	get_with(&s, sha, SIZE, md5, url, 0);
	tloop_wait(base, tloop_flag, &s.done, 60000, "s.done");
	ck_assert_msg(s.err == 0, "%s", s.msg);
	ck_assert_ptr_nonnull(strstr(s.msg, "and md5 verified"));
	expect_blob();
}
END_TEST

START_TEST(test_resume_across_cuts)
{
	struct waiter s = {.mode = REFRESH_NONE};
	size_t i, n;

	/* every answer is cut after 30000 bytes: the download resumes until it is complete */
	ck_assert_int_eq(mockmf_push(mf, "/cdn/fw.bin",
			     &(struct mockmf_response){.cut_after = 30000, .count = UINT32_MAX}),
	    0);
	get(&s);
	tloop_wait(base, tloop_flag, &s.done, 120000, "s.done");
	ck_assert_msg(s.err == 0, "%s", s.msg);
	expect_blob();
	n = cdn_gets();
	ck_assert_uint_eq(n, (SIZE + 29999) / 30000);
	ck_assert_ptr_null(cdn_get(0)->range);
	for (i = 1; i < n; i++) {
		char want[32];

		snprintf(want, sizeof(want), "bytes=%zu-", i * 30000);
		ck_assert_str_eq(cdn_get(i)->range, want);
		ck_assert_int_eq(cdn_get(i)->status, 206);
	}
}
END_TEST

START_TEST(test_resume_after_restart)
{
	struct waiter s = {.mode = REFRESH_NONE};
	uint64_t present;
	char want[32];

	ck_assert_uint_ge(make_partial(40000), 40000);

	/* a new process: the store reconciles, the manager resumes from the file */
	download_manager_free(dm);
	store_free(st);
	open_store();
	open_manager();
	present = partial_bytes();
	ck_assert_uint_ge(present, 40000);
	get(&s);
	tloop_wait(base, tloop_flag, &s.done, 60000, "s.done");
	ck_assert_msg(s.err == 0, "%s", s.msg);
	expect_blob();
	snprintf(want, sizeof(want), "bytes=%llu-", (unsigned long long)present);
	ck_assert_str_eq(cdn_get(cdn_gets() - 1)->range, want);
}
END_TEST

START_TEST(test_ignored_range)
{
	struct waiter s = {.mode = REFRESH_NONE};
	uint64_t present = make_partial(20000);
	const struct mockmf_request *e;

	ck_assert_uint_gt(present, 0);
	ck_assert_int_eq(
	    mockmf_push(mf, "/cdn/fw.bin", &(struct mockmf_response){.flags = MOCKMF_IGNORE_RANGE}),
	    0);
	get(&s);
	tloop_wait(base, tloop_flag, &s.done, 60000, "s.done");
	ck_assert_msg(s.err == 0, "%s", s.msg);
	expect_blob();
	e = cdn_get(cdn_gets() - 1);
	ck_assert_ptr_nonnull(e->range);
	ck_assert_int_eq(e->status, 200);
}
END_TEST

START_TEST(test_expired_url)
{
	struct waiter s = {.mode = REFRESH_MINT};
	uint64_t present = make_partial(20000);
	size_t before;
	char url[512], want[32];

	fresh_url(url, sizeof(url));
	mockmf_expire_urls(mf);
	before = cdn_gets();
	get_with(&s, sha, SIZE, NULL, url, 0);
	tloop_wait(base, tloop_flag, &s.done, 60000, "s.done");
	ck_assert_msg(s.err == 0, "%s", s.msg);
	ck_assert_uint_eq(s.refreshes, 1);
	expect_blob();
	/* refused with 403, then resumed with the fresh URL where it stood */
	ck_assert_uint_eq(cdn_gets(), before + 2);
	ck_assert_int_eq(cdn_get(before)->status, 403);
	snprintf(want, sizeof(want), "bytes=%llu-", (unsigned long long)present);
	ck_assert_str_eq(cdn_get(before + 1)->range, want);
	ck_assert_int_eq(cdn_get(before + 1)->status, 206);
}
END_TEST

START_TEST(test_refresher_leaves)
{
	struct waiter a = {.mode = REFRESH_HOLD}, b = {.mode = REFRESH_MINT};
	unsigned waited = 0;
	char url[512];

	/* the first waiter asked for a fresh URL goes away: the next one is asked */
	fresh_url(url, sizeof(url));
	mockmf_expire_urls(mf);
	get_with(&a, sha, SIZE, NULL, url, 0);
	get_with(&b, sha, SIZE, NULL, url, 0);
	while (a.refreshes == 0) {
		tloop_for(base, 20);
		ck_assert_uint_lt(waited++, 3000);
	}
	ck_assert_uint_eq(b.refreshes, 0);
	download_waiter_cancel(a.w);
	tloop_wait(base, tloop_flag, &b.done, 60000, "b.done");
	ck_assert_msg(b.err == 0, "%s", b.msg);
	ck_assert_uint_eq(b.refreshes, 1);
	ck_assert(!a.done);
	expect_blob();
}
END_TEST

START_TEST(test_stale_url_refreshed_first)
{
	struct waiter s = {.mode = REFRESH_MINT};
	char url[512];

	/* obtained seven hours ago: past its validity, so no request goes out with it */
	fresh_url(url, sizeof(url));
	get_with(&s, sha, SIZE, NULL, url, (int64_t)time(NULL) - 7 * 3600);
	tloop_wait(base, tloop_flag, &s.done, 60000, "s.done");
	ck_assert_msg(s.err == 0, "%s", s.msg);
	ck_assert_uint_eq(s.refreshes, 1);
	ck_assert_uint_eq(cdn_gets(), 1);
	ck_assert_ptr_null(strstr(url, cdn_get(0)->query));
	expect_blob();
}
END_TEST

START_TEST(test_refresh_failures)
{
	static const struct {
		enum refresh_mode mode;
		int err;
		const char *needle;
	} cases[] = {
	    {REFRESH_OTHER_SHA, -ESTALE,
		"Memfault now offers another artifact (sha256 ff0000000000)"},
	    {REFRESH_FAIL, -EACCES, "no fresh one came: Memfault is unavailable (HTTP 503)"},
	    {REFRESH_NONE, -EACCES, "no waiting device can ask Memfault for a new one"},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct waiter s = {.mode = cases[i].mode};
		char url[512];

		fresh_url(url, sizeof(url));
		mockmf_expire_urls(mf);
		get_with(&s, sha, SIZE, NULL, url, 0);
		tloop_wait(base, tloop_flag, &s.done, 60000, "s.done");
		ck_assert_int_eq(s.err, cases[i].err);
		ck_assert_msg(strstr(s.msg, cases[i].needle) != NULL, "%s", s.msg);
	}
	ck_assert_int_eq(download_get_progress(dm, sha, &(struct download_progress){0}), -ENOENT);
}
END_TEST

START_TEST(test_wrong_size)
{
	struct waiter more = {.mode = REFRESH_NONE}, less = {.mode = REFRESH_NONE};
	char url[512];

	/* Memfault announces more bytes than the CDN has */
	fresh_url(url, sizeof(url));
	get_with(&more, sha, SIZE + 100, NULL, url, 0);
	tloop_wait(base, tloop_flag, &more.done, 60000, "more.done");
	ck_assert_int_eq(more.err, -EBADMSG);
	ck_assert_msg(strstr(more.msg, "the CDN has 200000 bytes of an artifact Memfault announced "
				       "with 200100") != NULL,
	    "%s", more.msg);
	expect_gone();

	/* ... or fewer */
	fresh_url(url, sizeof(url));
	get_with(&less, sha, SIZE - 100, NULL, url, 0);
	tloop_wait(base, tloop_flag, &less.done, 60000, "less.done");
	ck_assert_int_eq(less.err, -EBADMSG);
	ck_assert_msg(strstr(less.msg, "more than the 199900 bytes") != NULL, "%s", less.msg);
	expect_gone();

	/* ... or the CDN sends more than it says, without a Content-Length */
	ck_assert_int_eq(
	    mockmf_push(mf, "/cdn/fw.bin", &(struct mockmf_response){.flags = MOCKMF_CHUNKED}), 0);
	memset(&less, 0, sizeof(less));
	less.mode = REFRESH_NONE;
	fresh_url(url, sizeof(url));
	get_with(&less, sha, SIZE - 100, NULL, url, 0);
	tloop_wait(base, tloop_flag, &less.done, 60000, "less.done");
	ck_assert_int_eq(less.err, -EBADMSG);
	expect_gone();
}
END_TEST

START_TEST(test_wrong_hash)
{
	struct waiter s = {.mode = REFRESH_NONE};
	uint8_t *other = malloc(SIZE);
	char url[512];

	/* the CDN serves other bytes of the right length */
	memcpy(other, payload, SIZE);
	other[SIZE / 2] ^= 0x5a;
	ck_assert_int_eq(mockmf_push(mf, "/cdn/fw.bin",
			     &(struct mockmf_response){
				 .status = 200, .body = (const char *)other, .body_len = SIZE}),
	    0);
	free(other);
	fresh_url(url, sizeof(url));
	get_with(&s, sha, SIZE, NULL, url, 0);
	tloop_wait(base, tloop_flag, &s.done, 60000, "s.done");
	ck_assert_int_eq(s.err, -EBADMSG);
	ck_assert_msg(strstr(s.msg, "not the") != NULL && strstr(s.msg, "deleted, never served"),
	    "%s", s.msg);
	expect_gone();
}
END_TEST

START_TEST(test_truncated_body)
{
	struct waiter s = {.mode = REFRESH_NONE};

	/* a complete-looking answer with only part of the body: the rest is fetched by Range */
	ck_assert_int_eq(mockmf_push(mf, "/cdn/fw.bin",
			     &(struct mockmf_response){
				 .status = 200, .body = (const char *)payload, .body_len = 1000}),
	    0);
	get(&s);
	tloop_wait(base, tloop_flag, &s.done, 60000, "s.done");
	ck_assert_msg(s.err == 0, "%s", s.msg);
	ck_assert_str_eq(cdn_get(1)->range, "bytes=1000-");
	expect_blob();
}
END_TEST

START_TEST(test_slow_drip)
{
	struct http_config hcfg = {.low_speed_limit = 100000, .low_speed_time_s = 1};
	struct waiter s = {.mode = REFRESH_NONE};

	teardown();
	start(MOCKMF_CERT_GOOD, &hcfg);
	/* the first answer drips far below the limit and is dropped; the resume is fast */
	ck_assert_int_eq(mockmf_push(mf, "/cdn/fw.bin",
			     &(struct mockmf_response){.drip_ms = 100, .drip_bytes = 1000}),
	    0);
	get(&s);
	tloop_wait(base, tloop_flag, &s.done, 60000, "s.done");
	ck_assert_msg(s.err == 0, "%s", s.msg);
	ck_assert_uint_eq(cdn_gets(), 2);
	ck_assert_ptr_nonnull(cdn_get(1)->range);
	expect_blob();
}
END_TEST

START_TEST(test_cdn_errors)
{
	struct waiter s = {.mode = REFRESH_NONE}, t = {.mode = REFRESH_NONE};

	/* transient statuses are retried, the error page never lands in the file */
	ck_assert_int_eq(mockmf_push(mf, "/cdn/fw.bin",
			     &(struct mockmf_response){.status = 503, .body = "<html>busy</html>"}),
	    0);
	get(&s);
	tloop_wait(base, tloop_flag, &s.done, 60000, "s.done");
	ck_assert_msg(s.err == 0, "%s", s.msg);
	expect_blob();
	ck_assert_int_eq(store_discard(st, sha), 0);

	/* a 404 is final; the partial stays for later */
	ck_assert_int_eq(mockmf_push(mf, "/cdn/fw.bin",
			     &(struct mockmf_response){.status = 404, .body = "gone"}),
	    0);
	get(&t);
	tloop_wait(base, tloop_flag, &t.done, 60000, "t.done");
	ck_assert_int_eq(t.err, -EREMOTEIO);
	ck_assert_str_eq(t.msg, "the CDN answered HTTP 404");
	ck_assert_uint_eq(partial_bytes(), 0);
}
END_TEST

START_TEST(test_wrong_host_refused)
{
	struct waiter s = {.mode = REFRESH_NONE};

	teardown();
	start(MOCKMF_CERT_WRONG_HOST, NULL);
	get(&s);
	tloop_wait(base, tloop_flag, &s.done, 60000, "s.done");
	ck_assert_int_eq(s.err, -EACCES);
	ck_assert_ptr_nonnull(strstr(s.msg, "TLS with the CDN failed"));
	ck_assert_uint_eq(mockmf_log_count(mf), 0);
}
END_TEST

START_TEST(test_waiters_leave)
{
	struct waiter a = {.mode = REFRESH_NONE}, b = {.mode = REFRESH_NONE},
		      c = {.mode = REFRESH_NONE};
	struct download_progress p;

	ck_assert_int_eq(mockmf_push(mf, "/cdn/fw.bin",
			     &(struct mockmf_response){.drip_ms = 20, .drip_bytes = 20000}),
	    0);
	get(&a);
	get(&b);
	get(&c);
	ck_assert_int_eq(download_get_progress(dm, sha, &p), 0);
	ck_assert_uint_eq(p.waiters, 3);
	download_waiter_cancel(a.w);
	download_waiter_cancel(b.w);
	tloop_wait(base, tloop_flag, &c.done, 60000, "c.done");
	ck_assert_int_eq(c.err, 0);
	ck_assert(!a.done && !b.done);
	expect_blob();

	/* invalid requests */
	{
		struct download_request req = {
		    .sha256 = "xyz", .size = 1, .url = "https://x/y", .version = "1"};
		struct download_callbacks cb = {.done = on_done};

		ck_assert_int_eq(download_get(dm, &req, &cb, NULL), -EINVAL);
		req.sha256 = sha;
		req.size = 0;
		ck_assert_int_eq(download_get(dm, &req, &cb, NULL), -EINVAL);
		req.size = 1;
		req.md5 = "123";
		ck_assert_int_eq(download_get(dm, &req, &cb, NULL), -EINVAL);
		req.md5 = NULL;
		req.version = "bad\nversion";
		ck_assert_int_eq(download_get(dm, &req, &cb, NULL), -EINVAL);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("download");
	TCase *tc = tcase_create("download");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, test_fresh_download);
	tcase_add_test(tc, test_redirect_to_cdn);
	tcase_add_test(tc, test_single_flight);
	tcase_add_test(tc, test_md5);
	tcase_add_test(tc, test_resume_across_cuts);
	tcase_add_test(tc, test_resume_after_restart);
	tcase_add_test(tc, test_ignored_range);
	tcase_add_test(tc, test_expired_url);
	tcase_add_test(tc, test_refresher_leaves);
	tcase_add_test(tc, test_stale_url_refreshed_first);
	tcase_add_test(tc, test_refresh_failures);
	tcase_add_test(tc, test_wrong_size);
	tcase_add_test(tc, test_wrong_hash);
	tcase_add_test(tc, test_truncated_body);
	tcase_add_test(tc, test_slow_drip);
	tcase_add_test(tc, test_cdn_errors);
	tcase_add_test(tc, test_wrong_host_refused);
	tcase_add_test(tc, test_waiters_leave);
	suite_add_tcase(s, tc);
	return ck_main(s);
}
