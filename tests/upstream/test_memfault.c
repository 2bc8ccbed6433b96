/* memfault.c through the real loop, libcurl multi and the HTTPS stand-in: every answer class
 * (200 with one or several artifacts, 204 with each reason, 400/401/403/404, 429/503/529 with
 * Retry-After in both forms, 500/502/504, redirects, oversized or broken bodies, network and
 * TLS failures), percent-encoding of awkward identities, and that the project key never shows
 * up in the logs. */
#include "ck.h"
#include "http.h"
#include "log.h"
#include "memfault.h"
#include "mockmf.h"
#include "tdata.h"
#include "tdir.h"
#include "tfile.h"
#include "tloop.h"

#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#define KEY     "5ec7e75ec7e75ec7e75ec7e75ec7e7aa"
#define SHA_PAD "cc00000000000000000000000000000000000000000000000000000000000003"

static struct event_base *base;
static struct mockmf *mf;
static struct http *http;
static struct memfault *client;
static char *logdir;
static char sha_fw[65], sha_evt[65], sha_dvt[65];

struct captured {
	bool done;
	struct memfault_result res;
};

static void
on_result(struct memfault_query *q, struct memfault_result *res, void *userdata)
{
	struct captured *c = userdata;

	(void)q;
	ck_assert(!c->done);
	c->done = true;
	c->res = *res; /* take everything it owns */
	memset(res, 0, sizeof(*res));
	memfault_query_cancel(q); /* a no-op from inside the callback */
}

static void
add_payload(const char *name, uint32_t seed, size_t len, char *sha)
{
	uint8_t *buf = malloc(len);

	tdata_fill(buf, len, seed);
	ck_assert_int_eq(mockmf_add_payload(mf, name, buf, len), 0);
	if (sha != NULL)
		tdata_sha256(buf, len, NULL, sha);
	free(buf);
}

static void
start(enum mockmf_cert cert, const struct memfault_config *cfg_in, bool capture_log)
{
	struct mockmf_options opt = {.project_key = KEY, .cert = cert};
	static const char *const pilots[] = {"P1", NULL};
	struct mockmf_artifact two[] = {
	    {.payload = "fw-evt.bin", .hardware_version = "evt"},
	    {.payload = "fw-dvt.bin", .hardware_version = "dvt"},
	};
	struct memfault_config cfg = {0};
	struct http_config hcfg = {0};
	char err[256];

	if (capture_log) {
		char *path;

		logdir = tdir_new("mflog");
		path = tdir_join(logdir, "log");
		tfile_capture_stderr(path);
		free(path);
	}
	log_open("test", LOG_LEVEL_DEBUG, false);
	base = event_base_new();
	mf = mockmf_new(base, &opt);
	ck_assert_ptr_nonnull(mf);
	add_payload("fw.bin", 1, 5000, sha_fw);
	add_payload("fw-evt.bin", 2, 3000, sha_evt);
	add_payload("fw-dvt.bin", 3, 4000, sha_dvt);
	ck_assert_int_eq(mockmf_add_release(mf, &(struct mockmf_release){.hardware_version = "evt",
						    .software_type = "app",
						    .version = "1.1.0",
						    .notes = "Fixes the thing",
						    .is_delta = true,
						    .payload = "fw.bin"}),
	    0);
	ck_assert_int_eq(mockmf_add_release(mf, &(struct mockmf_release){.hardware_version = "dvt",
						    .software_type = "app",
						    .version = "1.1.0",
						    .artifacts = two,
						    .n_artifacts = 2}),
	    0);
	ck_assert_int_eq(
	    mockmf_add_release(mf, &(struct mockmf_release){.hardware_version = "evt+1/2:(a)[b] c",
				       .software_type = "app/main (x)",
				       .version = "3.0.0",
				       .payload = "fw.bin"}),
	    0);
	ck_assert_int_eq(
	    mockmf_add_release(mf, &(struct mockmf_release){.hardware_version = "pilot",
				       .software_type = "app",
				       .version = "9.0.0",
				       .devices = pilots,
				       .payload = "fw.bin"}),
	    0);
	hcfg.ca_file = mockmf_ca_file(mf);
	http = http_new(base, &hcfg);
	ck_assert_ptr_nonnull(http);
	if (cfg_in != NULL)
		cfg = *cfg_in;
	if (cfg.base_url == NULL)
		cfg.base_url = mockmf_base_url(mf);
	if (cfg.project_key == NULL)
		cfg.project_key = KEY;
	ck_assert_int_eq(memfault_new(http, &cfg, &client, err, sizeof(err)), 0);
}

static void
setup(void)
{
	start(MOCKMF_CERT_GOOD, NULL, false);
}

static void
teardown(void)
{
	memfault_free(client);
	http_free(http);
	mockmf_free(mf);
	event_base_free(base);
	tdir_rmrf(logdir);
	free(logdir);
	client = NULL;
	http = NULL;
	mf = NULL;
	base = NULL;
	logdir = NULL;
}

static void
query_as(const char *serial, const char *hw, const char *sw, const char *cur, struct captured *c)
{
	struct memfault_identity id = {serial, hw, sw, cur};

	memset(c, 0, sizeof(*c));
	ck_assert_int_eq(memfault_latest(client, &id, on_result, c, NULL), 0);
	ck_assert(!c->done);
	tloop_wait(base, tloop_flag, &c->done, 60000, "c->done");
}

static void
query(struct captured *c)
{
	query_as("D1", "evt", "app", "1.0.0", c);
}

static void
push(int status, const char *headers, const char *body)
{
	ck_assert_int_eq(
	    mockmf_push(mf, MOCKMF_LATEST_PATH,
		&(struct mockmf_response){.status = status, .headers = headers, .body = body}),
	    0);
}

static void
expect_error(struct captured *c, enum memfault_error e, long status, const char *needle)
{
	ck_assert_int_eq(c->res.outcome, MEMFAULT_OUTCOME_ERROR);
	ck_assert_msg(c->res.error == e, "error %s, want %s (%s)",
	    memfault_error_to_string(c->res.error), memfault_error_to_string(e), c->res.message);
	ck_assert_int_eq(c->res.http_status, status);
	ck_assert_ptr_null(c->res.release);
	ck_assert_msg(
	    strstr(c->res.message, needle) != NULL, "\"%s\" not in \"%s\"", needle, c->res.message);
	ck_assert_ptr_null(strstr(c->res.message, KEY));
	memfault_result_clear(&c->res);
}

START_TEST(test_update_one_artifact)
{
	struct captured c;
	const struct mockmf_request *e;

	query(&c);
	ck_assert_int_eq(c.res.outcome, MEMFAULT_OUTCOME_UPDATE);
	ck_assert_int_eq(c.res.http_status, 200);
	ck_assert_str_eq(c.res.release->version, "1.1.0");
	ck_assert_str_eq(c.res.release->notes, "Fixes the thing");
	ck_assert(c.res.release->is_delta);
	ck_assert_str_eq(c.res.artifact->sha256, sha_fw);
	ck_assert_uint_eq(c.res.artifact->file_size, 5000);
	ck_assert_ptr_nonnull(strstr(c.res.artifact->url, "/cdn/fw.bin?sig="));
	ck_assert_ptr_nonnull(c.res.body);
	ck_assert_str_eq(c.res.message, "Memfault offers 1.1.0 (fw.bin, 5000 bytes, delta)");
	e = mockmf_log_get(mf, 0);
	ck_assert(e->key_ok);
	ck_assert_str_eq(e->accept, "application/json");
	ck_assert_str_eq(e->device_serial, "D1");
	ck_assert_str_eq(e->current_version, "1.0.0");
	ck_assert_ptr_nonnull(strstr(e->user_agent, "otagw/"));

	/* the cached body means the same thing when read back */
	{
		struct memfault_result again;

		ck_assert_int_eq(memfault_result_from_body(
				     client, "evt", "app", c.res.body, c.res.body_len, &again),
		    0);
		ck_assert_int_eq(again.outcome, MEMFAULT_OUTCOME_UPDATE);
		ck_assert_str_eq(again.artifact->sha256, sha_fw);
		memfault_result_clear(&again);
		ck_assert_int_eq(memfault_result_from_body(
				     client, "zzz", "app", c.res.body, c.res.body_len, &again),
		    0);
		ck_assert_int_eq(again.outcome, MEMFAULT_OUTCOME_ERROR);
		ck_assert_int_eq(again.error, MEMFAULT_ERROR_RESPONSE);
		memfault_result_clear(&again);
	}
	memfault_result_clear(&c.res);
}
END_TEST

START_TEST(test_update_several_artifacts)
{
	struct captured c;

	query_as("D2", "dvt", "app", "1.0.0", &c);
	ck_assert_int_eq(c.res.outcome, MEMFAULT_OUTCOME_UPDATE);
	ck_assert_uint_eq(c.res.release->n_artifacts, 2);
	ck_assert_str_eq(c.res.artifact->sha256, sha_dvt);
	ck_assert_str_eq(c.res.artifact->hardware_version, "dvt");
	ck_assert_uint_eq(c.res.artifact->file_size, 4000);
	memfault_result_clear(&c.res);
}
END_TEST

START_TEST(test_no_update_reasons)
{
	struct captured c;

	query_as("D1", "evt", "app", "1.1.0", &c);
	ck_assert_int_eq(c.res.outcome, MEMFAULT_OUTCOME_NO_UPDATE);
	ck_assert_int_eq(c.res.http_status, 204);
	ck_assert_str_eq(c.res.reason, "latest");
	memfault_result_clear(&c.res);

	push(204, "memfault-reason: rate-limited", NULL);
	query(&c);
	ck_assert_int_eq(c.res.outcome, MEMFAULT_OUTCOME_NO_UPDATE);
	ck_assert_str_eq(c.res.reason, "rate-limited");
	memfault_result_clear(&c.res);

	push(204, "Memfault-Reason: cohort_settings\x01", NULL);
	query(&c);
	ck_assert_int_eq(c.res.outcome, MEMFAULT_OUTCOME_NO_UPDATE);
	ck_assert_str_eq(c.res.reason, "cohort_settings?"); /* sanitised */
	memfault_result_clear(&c.res);

	/* no release for this device's cohort: 204 without a reason */
	query_as("P2", "pilot", "app", "1.0.0", &c);
	ck_assert_int_eq(c.res.outcome, MEMFAULT_OUTCOME_NO_UPDATE);
	ck_assert_str_eq(c.res.reason, "");
	ck_assert_ptr_nonnull(strstr(c.res.message, "none given"));
	memfault_result_clear(&c.res);
	query_as("P1", "pilot", "app", "1.0.0", &c);
	ck_assert_int_eq(c.res.outcome, MEMFAULT_OUTCOME_UPDATE);
	ck_assert_str_eq(c.res.release->version, "9.0.0");
	memfault_result_clear(&c.res);
}
END_TEST

START_TEST(test_config_errors)
{
	struct captured c;

	/* unknown hardware version: the stand-in answers like Memfault */
	query_as("D1", "nope", "app", "1.0.0", &c);
	expect_error(&c, MEMFAULT_ERROR_CONFIG, 400,
	    "Memfault rejected the device's identity (HTTP 400: Hardware Version or Software Type "
	    "does not exist): check that hardware_version \"nope\" and software_type \"app\" exist "
	    "in the Memfault project");

	push(401, NULL, "{\"error\":{\"message\":\"Unauthorized\"}}");
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_CONFIG, 401,
	    "Memfault rejected the project key (HTTP 401): check project_key in "
	    "/etc/otagw/otagw.conf");

	push(404, NULL, "Not Found");
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_CONFIG, 404,
	    "Memfault has no /api/v0/releases/latest (HTTP 404): check base_url");

	push(418, NULL, NULL);
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_CONFIG, 418, "Memfault refused the request (HTTP 418)");

	/* a redirect is not followed: the key must not travel to another host */
	ck_assert_int_eq(mockmf_push(mf, MOCKMF_LATEST_PATH,
			     &(struct mockmf_response){.redirect = "/elsewhere"}),
	    0);
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_CONFIG, 302, "which is not followed");
	ck_assert_uint_eq(mockmf_requests(mf, "/elsewhere"), 0);
	ck_assert(!memfault_error_retryable(MEMFAULT_ERROR_CONFIG));
}
END_TEST

START_TEST(test_wrong_key)
{
	struct memfault_config cfg = {.project_key = "0000000000000000000000000000dead",
	    .key_source = "/etc/credstore/otagw.project_key"};
	struct captured c;

	teardown();
	start(MOCKMF_CERT_GOOD, &cfg, false);
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_CONFIG, 403,
	    "Memfault rejected the project key (HTTP 403): check project_key in "
	    "/etc/credstore/otagw.project_key");
	ck_assert(!mockmf_log_get(mf, 0)->key_ok);
}
END_TEST

START_TEST(test_rate_limits)
{
	struct captured c;
	char hdr[128], date[64];

	push(429, "Retry-After: 30", NULL);
	query(&c);
	ck_assert_int_eq(c.res.error, MEMFAULT_ERROR_RATE_LIMITED);
	ck_assert(c.res.has_retry_after);
	ck_assert_uint_eq(c.res.retry_after_s, 30);
	expect_error(&c, MEMFAULT_ERROR_RATE_LIMITED, 429, "Memfault rate-limits this device");

	mockmf_http_date(time(NULL) + 120, date, sizeof(date));
	snprintf(hdr, sizeof(hdr), "Retry-After: %s", date);
	push(503, hdr, NULL);
	query(&c);
	ck_assert(c.res.has_retry_after);
	/* allow for the clock ticking during the request, never for speed */
	ck_assert_uint_le(c.res.retry_after_s, 120);
	ck_assert_uint_ge(c.res.retry_after_s, 60);
	expect_error(&c, MEMFAULT_ERROR_RATE_LIMITED, 503, "Memfault is unavailable");

	push(529, NULL, NULL);
	query(&c);
	ck_assert(!c.res.has_retry_after);
	expect_error(&c, MEMFAULT_ERROR_RATE_LIMITED, 529, "no usable Retry-After");

	push(503, "Retry-After: whenever", NULL);
	query(&c);
	ck_assert(!c.res.has_retry_after);
	expect_error(&c, MEMFAULT_ERROR_RATE_LIMITED, 503, "Memfault is unavailable");

	push(429, "Retry-After: 999999999", NULL);
	query(&c);
	ck_assert_uint_eq(c.res.retry_after_s, 24 * 3600); /* clamped */
	expect_error(&c, MEMFAULT_ERROR_RATE_LIMITED, 429, "rate-limits");
	ck_assert(memfault_error_retryable(MEMFAULT_ERROR_RATE_LIMITED));
}
END_TEST

START_TEST(test_server_errors)
{
	struct captured c;

	push(502, NULL, "<html>bad gateway</html>");
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_TRANSIENT, 502, "Memfault's gateway failed (HTTP 502)");
	push(504, NULL, NULL);
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_TRANSIENT, 504, "HTTP 504");
	push(500, NULL, "{\"error\":{\"message\":\"Internal \\n error\"}}");
	query(&c);
	expect_error(
	    &c, MEMFAULT_ERROR_SERVER, 500, "Memfault failed (HTTP 500: Internal ? error)");
	ck_assert(!memfault_error_retryable(MEMFAULT_ERROR_SERVER));
	ck_assert(memfault_error_retryable(MEMFAULT_ERROR_TRANSIENT));
	push(202, NULL, NULL);
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_RESPONSE, 202, "does not understand");
}
END_TEST

START_TEST(test_encodings)
{
	struct captured c;

	ck_assert_int_eq(
	    mockmf_push(mf, MOCKMF_LATEST_PATH, &(struct mockmf_response){.flags = MOCKMF_GZIP}),
	    0);
	query(&c);
	ck_assert_int_eq(c.res.outcome, MEMFAULT_OUTCOME_UPDATE);
	memfault_result_clear(&c.res);
	ck_assert_int_eq(
	    mockmf_push(mf, MOCKMF_LATEST_PATH, &(struct mockmf_response){.flags = MOCKMF_CHUNKED}),
	    0);
	query(&c);
	ck_assert_int_eq(c.res.outcome, MEMFAULT_OUTCOME_UPDATE);
	memfault_result_clear(&c.res);
}
END_TEST

START_TEST(test_bad_bodies)
{
	size_t big = (1u << 20) + 4096, i;
	char *body = malloc(big + 1);
	struct captured c;

	/* oversized JSON, sent with and without a Content-Length, and gzipped */
	memcpy(body, "{\"version\":\"1\",\"notes\":\"", 24);
	for (i = 24; i < big - 2; i++)
		body[i] = 'x';
	memcpy(body + big - 2, "\"}", 3);
	ck_assert_int_eq(mockmf_push(mf, MOCKMF_LATEST_PATH,
			     &(struct mockmf_response){.status = 200, .body = body}),
	    0);
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_RESPONSE, 200, "larger than 1048576 bytes");
	ck_assert_int_eq(
	    mockmf_push(mf, MOCKMF_LATEST_PATH,
		&(struct mockmf_response){
		    .status = 200, .body = body, .flags = MOCKMF_GZIP | MOCKMF_CHUNKED}),
	    0);
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_RESPONSE, 200, "larger than");
	free(body);

	push(200, NULL, "{\"version\": \"1.0\", \"artifacts\": [");
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_RESPONSE, 200, "unusable: not JSON");
	push(200, NULL, "{\"version\": \"1.0\"}");
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_RESPONSE, 200, "no \"artifacts\"");
	push(200, NULL,
	    "{\"version\":\"1.0\",\"artifacts\":[{\"hardware_version\":\"evt\",\"file_size\":1,"
	    "\"url\":\"https://x/y\"}]}");
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_RESPONSE, 200, "no \"sha256\"");
	push(200, NULL,
	    "{\"version\":\"1.0\",\"artifacts\":[{\"hardware_version\":\"dvt\",\"sha256\":"
	    "\"" SHA_PAD "\",\"file_size\":1,\"url\":\"https://x/y\"}]}");
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_RESPONSE, 200,
	    "release 1.0 has no artifact for hardware_version \"evt\" (it has \"dvt\")");
}
END_TEST

START_TEST(test_awkward_identity)
{
	const char *hw = "evt+1/2:(a)[b] c", *sw = "app/main (x)",
		   *cur = "1.0.0+build:5 [rc] (a/b)";
	const struct mockmf_request *e;
	struct captured c;

	query_as("Dev_01-x", hw, sw, cur, &c);
	ck_assert_int_eq(c.res.outcome, MEMFAULT_OUTCOME_UPDATE);
	ck_assert_str_eq(c.res.release->version, "3.0.0");
	memfault_result_clear(&c.res);
	e = mockmf_log_get(mf, 0);
	ck_assert_str_eq(e->device_serial, "Dev_01-x");
	ck_assert_str_eq(e->hardware_version, hw);
	ck_assert_str_eq(e->software_type, sw);
	ck_assert_str_eq(e->current_version, cur);
	/* nothing reserved went out raw */
	ck_assert_ptr_null(strpbrk(e->query, " +()[]:/"));
}
END_TEST

START_TEST(test_invalid_input)
{
	struct memfault_identity bad[] = {
	    {"D 1", "evt", "app", "1"},
	    {"D1", "", "app", "1"},
	    {"D1", "evt", "a\nb", "1"},
	    {"D1", "evt", "app", NULL},
	    {"D1", "0123456789012345678901234567890123", "app", "1"},
	};
	struct memfault_config cfg = {.base_url = "https://x", .project_key = KEY};
	struct memfault *m = NULL;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_int_eq(memfault_latest(client, &bad[i], on_result, NULL, NULL), -EINVAL);
	cfg.project_key = "with space";
	ck_assert_int_eq(memfault_new(http, &cfg, &m, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "project_key"));
	ck_assert_ptr_null(strstr(err, "with space"));
	cfg.project_key = "";
	ck_assert_int_eq(memfault_new(http, &cfg, &m, err, sizeof(err)), -EINVAL);
	cfg.project_key = KEY;
	cfg.base_url = "ftp://x";
	ck_assert_int_eq(memfault_new(http, &cfg, &m, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "base_url"));
	cfg.base_url = "https://x/?a=b";
	ck_assert_int_eq(memfault_new(http, &cfg, &m, err, sizeof(err)), -EINVAL);
	cfg.base_url = "https://device.memfault.com///";
	ck_assert_int_eq(memfault_new(http, &cfg, &m, err, sizeof(err)), 0);
	ck_assert_str_eq(memfault_base_url(m), "https://device.memfault.com");
	memfault_free(m);
	cfg.base_url = NULL;
	ck_assert_int_eq(memfault_new(http, &cfg, &m, err, sizeof(err)), 0);
	ck_assert_str_eq(memfault_base_url(m), MEMFAULT_DEFAULT_BASE_URL);
	memfault_free(m);
}
END_TEST

START_TEST(test_cancel)
{
	struct memfault_identity id = {"D1", "evt", "app", "1.0.0"};
	struct memfault_query *q;
	struct captured c = {0};

	ck_assert_int_eq(memfault_latest(client, &id, on_result, &c, &q), 0);
	memfault_query_cancel(q);
	tloop_for(base, 300);
	ck_assert(!c.done);
	/* pending queries die with the client, silently */
	ck_assert_int_eq(memfault_latest(client, &id, on_result, &c, NULL), 0);
	memfault_free(client);
	client = NULL;
	tloop_for(base, 300);
	ck_assert(!c.done);
	ck_assert_uint_eq(http_pending(http), 0);
}
END_TEST

START_TEST(test_network_failures)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	struct memfault_config cfg = {.timeout_s = 1};
	struct memfault *m;
	struct captured c;
	char url[64], err[128];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	/* a slow drip hits the request timeout */
	teardown();
	start(MOCKMF_CERT_GOOD, &cfg, false);
	ck_assert_int_eq(mockmf_push(mf, MOCKMF_LATEST_PATH,
			     &(struct mockmf_response){.drip_ms = 300, .drip_bytes = 5}),
	    0);
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_TRANSIENT, 200, "Memfault did not answer in time");

	/* a cut answer */
	ck_assert_int_eq(
	    mockmf_push(mf, MOCKMF_LATEST_PATH, &(struct mockmf_response){.cut_after = 40}), 0);
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_TRANSIENT, 200, "The connection to Memfault broke");

	/* nobody listening */
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	snprintf(url, sizeof(url), "https://127.0.0.1:%u", ntohs(sin.sin_port));
	cfg.base_url = url;
	cfg.project_key = KEY;
	ck_assert_int_eq(memfault_new(http, &cfg, &m, err, sizeof(err)), 0);
	memfault_free(client);
	client = m;
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_TRANSIENT, 0, "Cannot connect to https://127.0.0.1:");
}
END_TEST

START_TEST(test_wrong_host_certificate)
{
	struct captured c;

	teardown();
	start(MOCKMF_CERT_WRONG_HOST, NULL, false);
	query(&c);
	expect_error(&c, MEMFAULT_ERROR_TLS, 0, "check the system clock, and ca_file in");
	ck_assert_uint_eq(mockmf_log_count(mf), 0);
	ck_assert(memfault_error_retryable(MEMFAULT_ERROR_TLS));
}
END_TEST

START_TEST(test_key_never_logged)
{
	struct captured c;
	char *path, *text;

	teardown();
	start(MOCKMF_CERT_GOOD, NULL, true);
	query(&c);
	memfault_result_clear(&c.res);
	push(403, NULL, "{\"error\":{\"message\":\"Project Key is missing or invalid\"}}");
	query(&c);
	memfault_result_clear(&c.res);
	push(400, NULL, "{\"error\":{\"message\":\"bad\"}}");
	query(&c);
	memfault_result_clear(&c.res);
	ck_assert_int_eq(
	    mockmf_push(mf, MOCKMF_LATEST_PATH, &(struct mockmf_response){.redirect = "/x"}), 0);
	query(&c);
	memfault_result_clear(&c.res);
	fflush(stderr);
	ck_assert_int_ge(asprintf(&path, "%s/log", logdir), 0);
	text = tfile_read(path, NULL);
	ck_assert_ptr_nonnull(text);
	ck_assert_ptr_nonnull(strstr(text, "memfault: D1: update")); /* debug logging was on */
	ck_assert_ptr_nonnull(strstr(text, "rejected the project key"));
	ck_assert_ptr_null(strstr(text, KEY));
	ck_assert_ptr_null(strstr(text, "5ec7e75ec7e7"));
	free(text);
	free(path);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("memfault");
	TCase *tc = tcase_create("latest");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_update_one_artifact);
	tcase_add_test(tc, test_update_several_artifacts);
	tcase_add_test(tc, test_no_update_reasons);
	tcase_add_test(tc, test_config_errors);
	tcase_add_test(tc, test_wrong_key);
	tcase_add_test(tc, test_rate_limits);
	tcase_add_test(tc, test_server_errors);
	tcase_add_test(tc, test_encodings);
	tcase_add_test(tc, test_bad_bodies);
	tcase_add_test(tc, test_awkward_identity);
	tcase_add_test(tc, test_invalid_input);
	tcase_add_test(tc, test_cancel);
	tcase_add_test(tc, test_network_failures);
	tcase_add_test(tc, test_wrong_host_certificate);
	tcase_add_test(tc, test_key_never_logged);
	suite_add_tcase(s, tc);
	return ck_main(s);
}
