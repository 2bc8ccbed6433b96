/* http.c through the real loop and libcurl multi against the HTTPS stand-in: buffered and
 * streamed bodies, gzip, chunked, redirects, Range, cuts, slow drips, TLS refusals, caps,
 * cancellation, and the header parsers. */
#include "ck.h"
#include "http.h"
#include "mockmf.h"
#include "tdata.h"
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

#define KEY          "0123456789abcdef0123456789abcdef"
#define PAYLOAD_SIZE 100000

static struct event_base *base;
static struct mockmf *mf;
static struct http *http;
static uint8_t payload[PAYLOAD_SIZE];

/* What one request ended with. */
struct outcome {
	bool done;
	enum http_error error;
	long status;
	int cb_error;
	char *body;
	size_t body_len;
	uint64_t body_bytes;
	char *content_range;
	char *content_encoding;
	uint8_t *stream;
	size_t stream_len;
	int abort_after; /* on_body: return -ENOSPC once this many bytes arrived (0: never) */
	bool cancel_in_body;
	struct http_request *req;
	bool headers_called;
	long headers_status;
};

static void
outcome_clear(struct outcome *o)
{
	free(o->body);
	free(o->content_range);
	free(o->content_encoding);
	free(o->stream);
	memset(o, 0, sizeof(*o));
}

static int
on_headers(struct http_request *req, long status, void *userdata)
{
	struct outcome *o = userdata;

	(void)req;
	ck_assert(!o->headers_called);
	o->headers_called = true;
	o->headers_status = status;
	return 0;
}

static int
on_body(struct http_request *req, const void *data, size_t len, void *userdata)
{
	struct outcome *o = userdata;
	uint8_t *p = realloc(o->stream, o->stream_len + len);

	ck_assert_ptr_nonnull(p);
	memcpy(p + o->stream_len, data, len);
	o->stream = p;
	o->stream_len += len;
	if (o->cancel_in_body) {
		http_request_cancel(req);
		o->done = true; /* on_done must not come */
		return 0;
	}
	if (o->abort_after != 0 && o->stream_len >= (size_t)o->abort_after)
		return -ENOSPC;
	return 0;
}

static void
on_done(struct http_request *req, const struct http_result *res, void *userdata)
{
	struct outcome *o = userdata;
	const char *v;

	ck_assert(!o->done);
	ck_assert_ptr_nonnull(res->message);
	o->done = true;
	o->error = res->error;
	o->status = res->status;
	o->cb_error = res->cb_error;
	o->body_bytes = res->body_bytes;
	if (res->body != NULL) {
		o->body = malloc(res->body_len + 1);
		memcpy(o->body, res->body, res->body_len + 1);
		o->body_len = res->body_len;
	}
	if ((v = http_request_header(req, "content-range")) != NULL)
		o->content_range = strdup(v);
	if ((v = http_request_header(req, "Content-Encoding")) != NULL)
		o->content_encoding = strdup(v);
	/* cancelling a finished request is a no-op */
	http_request_cancel(req);
}

static char *
latest_url(void)
{
	char *url;

	ck_assert_int_ge(
	    asprintf(&url,
		"%s" MOCKMF_LATEST_PATH "?device_serial=D1&hardware_version=evt&software_type=app"
		"&current_version=1.0.0",
		mockmf_base_url(mf)),
	    0);
	return url;
}

static char *
cdn_url(struct mockmf *m)
{
	char *url;

	/* the URL handed out by the latest answer: sig=1 is the first one */
	ck_assert_int_ge(asprintf(&url, "%s/cdn/fw.bin?sig=1", mockmf_base_url(m)), 0);
	return url;
}

static void
get(const char *url, struct outcome *o, bool stream, uint64_t range, bool gzip, bool follow)
{
	static const char *const headers[] = {
	    "Memfault-Project-Key: " KEY, "Accept: application/json", NULL};
	struct http_request_spec spec = {
	    .url = url,
	    .headers = headers,
	    .range_start = range,
	    .body_max = 1 << 20,
	    .accept_gzip = gzip,
	    .follow_redirects = follow,
	    .timeout_s = 60,
	    .on_headers = on_headers,
	    .on_body = stream ? on_body : NULL,
	    .on_done = on_done,
	    .userdata = o,
	};

	ck_assert_int_eq(http_request_start(http, &spec, &o->req), 0);
	ck_assert(!o->done); /* never synchronous */
	tloop_wait(base, tloop_flag, &o->done, 60000, "o->done");
}

/* Asks for the latest release once so the CDN URL with sig=1 is valid. */
static void
issue_url(void)
{
	struct outcome o = {0};
	char *url = latest_url();

	get(url, &o, false, 0, false, false);
	ck_assert_int_eq(o.status, 200);
	outcome_clear(&o);
	free(url);
}

static void
setup_with(enum mockmf_cert cert, const struct http_config *cfg_in)
{
	struct mockmf_options opt = {.project_key = KEY, .cert = cert};
	struct http_config cfg = {0};

	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	mf = mockmf_new(base, &opt);
	ck_assert_ptr_nonnull(mf);
	tdata_fill(payload, sizeof(payload), 7);
	ck_assert_int_eq(mockmf_add_payload(mf, "fw.bin", payload, sizeof(payload)), 0);
	ck_assert_int_eq(mockmf_add_release(mf, &(struct mockmf_release){.hardware_version = "evt",
						    .software_type = "app",
						    .version = "1.1.0",
						    .payload = "fw.bin"}),
	    0);
	if (cfg_in != NULL)
		cfg = *cfg_in;
	if (cfg.ca_file == NULL)
		cfg.ca_file = mockmf_ca_file(mf);
	else if (strcmp(cfg.ca_file, "system") == 0)
		cfg.ca_file = NULL;
	http = http_new(base, &cfg);
	ck_assert_ptr_nonnull(http);
}

static void
setup(void)
{
	setup_with(MOCKMF_CERT_GOOD, NULL);
}

static void
teardown(void)
{
	http_free(http);
	mockmf_free(mf);
	event_base_free(base);
	http = NULL;
	mf = NULL;
	base = NULL;
}

START_TEST(test_buffered_json)
{
	struct outcome o = {0};
	char *url = latest_url();
	const struct mockmf_request *e;

	get(url, &o, false, 0, true, false);
	ck_assert_int_eq(o.error, HTTP_ERROR_NONE);
	ck_assert_int_eq(o.status, 200);
	ck_assert_ptr_nonnull(o.body);
	ck_assert_uint_eq(strlen(o.body), o.body_len);
	ck_assert_ptr_nonnull(strstr(o.body, "\"version\":\"1.1.0\""));
	ck_assert(o.headers_called);
	ck_assert_int_eq(o.headers_status, 200);
	ck_assert_uint_eq(mockmf_log_count(mf), 1);
	e = mockmf_log_get(mf, 0);
	ck_assert(e->key_ok);
	ck_assert_str_eq(e->user_agent, "otagw/" OTAGW_VERSION);
	ck_assert_str_eq(e->accept, "application/json");
	ck_assert_ptr_nonnull(e->accept_encoding);
	ck_assert_ptr_nonnull(strstr(e->accept_encoding, "gzip"));
	ck_assert_uint_eq(http_pending(http), 0);
	outcome_clear(&o);
	free(url);
}
END_TEST

START_TEST(test_gzip_and_chunked)
{
	static const struct {
		unsigned flags;
	} cases[] = {{MOCKMF_GZIP}, {MOCKMF_CHUNKED}, {MOCKMF_GZIP | MOCKMF_CHUNKED}};
	char *url = latest_url();
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct outcome o = {0};

		ck_assert_int_eq(mockmf_push(mf, MOCKMF_LATEST_PATH,
				     &(struct mockmf_response){.flags = cases[i].flags}),
		    0);
		get(url, &o, false, 0, true, false);
		ck_assert_int_eq(o.error, HTTP_ERROR_NONE);
		ck_assert_int_eq(o.status, 200);
		ck_assert_ptr_nonnull(strstr(o.body, "\"version\":\"1.1.0\""));
		ck_assert_ptr_nonnull(strstr(o.body, "\"artifacts\":[{"));
		if (cases[i].flags & MOCKMF_GZIP)
			ck_assert_str_eq(o.content_encoding, "gzip");
		outcome_clear(&o);
	}
	free(url);
}
END_TEST

START_TEST(test_stream_range)
{
	struct outcome o = {0};
	char *url;

	issue_url();
	url = cdn_url(mf);
	get(url, &o, true, 5000, false, true);
	ck_assert_int_eq(o.error, HTTP_ERROR_NONE);
	ck_assert_int_eq(o.status, 206);
	ck_assert_str_eq(o.content_range, "bytes 5000-99999/100000");
	ck_assert_ptr_null(o.body);
	ck_assert_uint_eq(o.stream_len, PAYLOAD_SIZE - 5000);
	ck_assert_uint_eq(o.body_bytes, PAYLOAD_SIZE - 5000);
	ck_assert_mem_eq(o.stream, payload + 5000, PAYLOAD_SIZE - 5000);
	ck_assert_str_eq(mockmf_log_get(mf, 1)->range, "bytes=5000-");
	outcome_clear(&o);
	free(url);
}
END_TEST

START_TEST(test_redirect)
{
	struct outcome o = {0};
	char *url;

	issue_url();
	url = cdn_url(mf);
	/* followed: the redirect target gets the same signed query */
	ck_assert_int_eq(
	    mockmf_push(mf, "/cdn/fw.bin", &(struct mockmf_response){.redirect = "/cdn/fw.bin"}),
	    0);
	get(url, &o, true, 0, false, true);
	ck_assert_int_eq(o.error, HTTP_ERROR_NONE);
	ck_assert_int_eq(o.status, 200);
	ck_assert_uint_eq(o.stream_len, PAYLOAD_SIZE);
	ck_assert_mem_eq(o.stream, payload, PAYLOAD_SIZE);
	ck_assert_uint_eq(mockmf_requests(mf, "/cdn/fw.bin"), 2);
	outcome_clear(&o);

	/* not followed (requests that carry the project key) */
	ck_assert_int_eq(
	    mockmf_push(mf, "/cdn/fw.bin", &(struct mockmf_response){.redirect = "/cdn/fw.bin"}),
	    0);
	get(url, &o, false, 0, false, false);
	ck_assert_int_eq(o.error, HTTP_ERROR_NONE);
	ck_assert_int_eq(o.status, 302);
	ck_assert_uint_eq(mockmf_requests(mf, "/cdn/fw.bin"), 3);
	outcome_clear(&o);

	/* a redirect loop ends at the limit */
	ck_assert_int_eq(mockmf_push(mf, "/cdn/fw.bin",
			     &(struct mockmf_response){.redirect = "/cdn/fw.bin", .count = 50}),
	    0);
	get(url, &o, true, 0, false, true);
	ck_assert_int_eq(o.error, HTTP_ERROR_PROTOCOL);
	outcome_clear(&o);
	free(url);
}
END_TEST

START_TEST(test_cut)
{
	struct outcome o = {0};
	char *url;

	issue_url();
	url = cdn_url(mf);
	ck_assert_int_eq(
	    mockmf_push(mf, "/cdn/fw.bin", &(struct mockmf_response){.cut_after = 30000}), 0);
	get(url, &o, true, 0, false, true);
	ck_assert_int_eq(o.error, HTTP_ERROR_CUT);
	ck_assert_int_eq(o.status, 200);
	ck_assert_uint_eq(o.stream_len, 30000);
	ck_assert_mem_eq(o.stream, payload, 30000);
	outcome_clear(&o);

	/* the connection is gone but the client recovers on the next request */
	get(url, &o, true, 0, false, true);
	ck_assert_int_eq(o.error, HTTP_ERROR_NONE);
	ck_assert_uint_eq(o.stream_len, PAYLOAD_SIZE);
	outcome_clear(&o);
	free(url);
}
END_TEST

START_TEST(test_slow_drip)
{
	struct http_config cfg = {.low_speed_limit = 10000, .low_speed_time_s = 1};
	struct outcome o = {0};
	char *url;

	teardown();
	setup_with(MOCKMF_CERT_GOOD, &cfg);
	issue_url();
	url = cdn_url(mf);
	ck_assert_int_eq(mockmf_push(mf, "/cdn/fw.bin",
			     &(struct mockmf_response){.drip_ms = 200, .drip_bytes = 100}),
	    0);
	get(url, &o, true, 0, false, true);
	ck_assert_int_eq(o.error, HTTP_ERROR_TIMEOUT);
	ck_assert_uint_lt(o.stream_len, PAYLOAD_SIZE);
	outcome_clear(&o);
	free(url);
}
END_TEST

START_TEST(test_wrong_host_refused)
{
	struct outcome o = {0};
	char *url;

	teardown();
	setup_with(MOCKMF_CERT_WRONG_HOST, NULL);
	url = latest_url();
	get(url, &o, false, 0, false, false);
	ck_assert_int_eq(o.error, HTTP_ERROR_TLS);
	ck_assert_int_eq(o.status, 0);
	ck_assert_uint_eq(mockmf_log_count(mf), 0);
	outcome_clear(&o);
	free(url);
}
END_TEST

START_TEST(test_untrusted_ca_refused)
{
	struct http_config cfg = {.ca_file = "system"};
	struct outcome o = {0};
	char *url;

	teardown();
	setup_with(MOCKMF_CERT_GOOD, &cfg);
	url = latest_url();
	get(url, &o, false, 0, false, false);
	ck_assert_int_eq(o.error, HTTP_ERROR_TLS);
	ck_assert_uint_eq(mockmf_log_count(mf), 0);
	outcome_clear(&o);
	free(url);
}
END_TEST

START_TEST(test_body_cap)
{
	struct outcome o = {0};
	struct http_request_spec spec = {
	    .body_max = 1000, .follow_redirects = true, .on_done = on_done, .userdata = &o};
	char *url;

	issue_url();
	url = cdn_url(mf);
	spec.url = url;
	/* with a Content-Length */
	ck_assert_int_eq(http_request_start(http, &spec, NULL), 0);
	tloop_wait(base, tloop_flag, &o.done, 60000, "o.done");
	ck_assert_int_eq(o.error, HTTP_ERROR_TOO_LARGE);
	outcome_clear(&o);
	/* without one: counted as it arrives */
	ck_assert_int_eq(
	    mockmf_push(mf, "/cdn/fw.bin", &(struct mockmf_response){.flags = MOCKMF_CHUNKED}), 0);
	spec.userdata = &o;
	ck_assert_int_eq(http_request_start(http, &spec, NULL), 0);
	tloop_wait(base, tloop_flag, &o.done, 60000, "o.done");
	ck_assert_int_eq(o.error, HTTP_ERROR_TOO_LARGE);
	ck_assert_uint_le(o.body_bytes, 1000);
	outcome_clear(&o);
	/* gzip: the cap applies to the decoded body */
	ck_assert_int_eq(mockmf_push(mf, "/cdn/fw.bin",
			     &(struct mockmf_response){.flags = MOCKMF_GZIP | MOCKMF_CHUNKED}),
	    0);
	spec.accept_gzip = true;
	spec.userdata = &o;
	ck_assert_int_eq(http_request_start(http, &spec, NULL), 0);
	tloop_wait(base, tloop_flag, &o.done, 60000, "o.done");
	ck_assert_int_eq(o.error, HTTP_ERROR_TOO_LARGE);
	outcome_clear(&o);
	free(url);
}
END_TEST

START_TEST(test_callback_abort_and_cancel)
{
	struct outcome o = {0}, c = {0};
	char *url;

	issue_url();
	url = cdn_url(mf);
	o.abort_after = 20000;
	get(url, &o, true, 0, false, true);
	ck_assert_int_eq(o.error, HTTP_ERROR_ABORTED);
	ck_assert_int_eq(o.cb_error, -ENOSPC);
	outcome_clear(&o);

	/* cancelled from its own body callback: on_done never runs */
	c.cancel_in_body = true;
	ck_assert_int_eq(mockmf_push(mf, "/cdn/fw.bin",
			     &(struct mockmf_response){.drip_ms = 20, .drip_bytes = 1000}),
	    0);
	get(url, &c, true, 0, false, true);
	tloop_for(base, 300);
	ck_assert_uint_eq(http_pending(http), 0);
	outcome_clear(&c);

	/* cancelled from outside before anything happened */
	{
		struct http_request_spec spec = {
		    .url = url, .body_max = 1 << 20, .on_done = on_done, .userdata = &c};
		struct http_request *req;

		ck_assert_int_eq(http_request_start(http, &spec, &req), 0);
		ck_assert_uint_eq(http_pending(http), 1);
		http_request_cancel(req);
		ck_assert_uint_eq(http_pending(http), 0);
		tloop_for(base, 300);
		ck_assert(!c.done);
	}
	/* and the client still works */
	get(url, &o, true, 0, false, true);
	ck_assert_int_eq(o.error, HTTP_ERROR_NONE);
	ck_assert_uint_eq(o.stream_len, PAYLOAD_SIZE);
	outcome_clear(&o);
	free(url);
}
END_TEST

START_TEST(test_connect_refused_and_bad_scheme)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	struct outcome o = {0};
	struct http_request_spec spec = {.body_max = 100, .on_done = on_done, .userdata = &o};
	char url[128];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	/* a port that was free a moment ago and has no listener */
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	snprintf(url, sizeof(url), "https://127.0.0.1:%u/x", ntohs(sin.sin_port));
	spec.url = url;
	ck_assert_int_eq(http_request_start(http, &spec, NULL), 0);
	tloop_wait(base, tloop_flag, &o.done, 60000, "o.done");
	ck_assert_int_eq(o.error, HTTP_ERROR_CONNECT);
	outcome_clear(&o);

	spec.url = "http://127.0.0.1:1/x";
	ck_assert_int_eq(http_request_start(http, &spec, NULL), -EINVAL);
	spec.url = "file:///etc/passwd";
	ck_assert_int_eq(http_request_start(http, &spec, NULL), -EINVAL);
	spec.url = url;
	spec.body_max = 0;
	ck_assert_int_eq(http_request_start(http, &spec, NULL), -EINVAL);
	spec.body_max = 1;
	spec.on_done = NULL;
	ck_assert_int_eq(http_request_start(http, &spec, NULL), -EINVAL);
}
END_TEST

START_TEST(test_many_at_once)
{
	struct outcome o[40];
	size_t i, done = 0;
	char *url;

	issue_url();
	url = cdn_url(mf);
	memset(o, 0, sizeof(o));
	for (i = 0; i < 40; i++) {
		struct http_request_spec spec = {.url = url,
		    .body_max = 1 << 20,
		    .range_start = i * 100,
		    .on_body = on_body,
		    .on_done = on_done,
		    .userdata = &o[i]};

		ck_assert_int_eq(http_request_start(http, &spec, NULL), 0);
	}
	for (i = 0; i < 40; i++) {
		tloop_wait(base, tloop_flag, &o[i].done, 60000, "o[i].done");
		done++;
		ck_assert_int_eq(o[i].error, HTTP_ERROR_NONE);
		ck_assert_uint_eq(o[i].stream_len, PAYLOAD_SIZE - i * 100);
		ck_assert_mem_eq(o[i].stream, payload + i * 100, o[i].stream_len);
		outcome_clear(&o[i]);
	}
	ck_assert_uint_eq(done, 40);
	free(url);
}
END_TEST

START_TEST(test_parsers)
{
	uint64_t f, l, c;
	uint32_t s;
	char date[64];
	time_t now = 1790000000;
	char url[64];

	ck_assert_int_eq(http_parse_retry_after("120", now, 3600, &s), 0);
	ck_assert_uint_eq(s, 120);
	ck_assert_int_eq(http_parse_retry_after(" 7 ", now, 3600, &s), 0);
	ck_assert_uint_eq(s, 7);
	ck_assert_int_eq(http_parse_retry_after("99999999999999999999999", now, 3600, &s), 0);
	ck_assert_uint_eq(s, 3600);
	mockmf_http_date(now + 90, date, sizeof(date));
	ck_assert_int_eq(http_parse_retry_after(date, now, 3600, &s), 0);
	ck_assert_uint_eq(s, 90);
	mockmf_http_date(now - 90, date, sizeof(date));
	ck_assert_int_eq(http_parse_retry_after(date, now, 3600, &s), 0);
	ck_assert_uint_eq(s, 0);
	ck_assert_int_eq(http_parse_retry_after("-5", now, 3600, &s), -EINVAL);
	ck_assert_int_eq(http_parse_retry_after("12abc", now, 3600, &s), -EINVAL);
	ck_assert_int_eq(http_parse_retry_after("soon", now, 3600, &s), -EINVAL);
	ck_assert_int_eq(http_parse_retry_after("", now, 3600, &s), -EINVAL);

	ck_assert_int_eq(http_parse_content_range("bytes 100-199/1000", &f, &l, &c), 0);
	ck_assert(f == 100 && l == 199 && c == 1000);
	ck_assert_int_eq(http_parse_content_range("bytes 0-0/*", &f, &l, &c), 0);
	ck_assert(c == UINT64_MAX);
	ck_assert_int_eq(http_parse_content_range("bytes 5-4/10", &f, &l, &c), -EINVAL);
	ck_assert_int_eq(http_parse_content_range("bytes 0-10/10", &f, &l, &c), -EINVAL);
	ck_assert_int_eq(http_parse_content_range("bytes */10", &f, &l, &c), -EINVAL);
	ck_assert_int_eq(http_parse_content_range("items 0-1/2", &f, &l, &c), -EINVAL);
	ck_assert_int_eq(http_parse_content_range("bytes 0-1/2x", &f, &l, &c), -EINVAL);
	ck_assert_int_eq(
	    http_parse_content_range("bytes 0-99999999999999999999999/1", &f, &l, &c), -EINVAL);

	http_url_for_log("https://cdn.example/a/b.bin?X-Sig=secret#frag", url, sizeof(url));
	ck_assert_str_eq(url, "https://cdn.example/a/b.bin");
	http_url_for_log("https://cdn.example/abcdefghijklmnop", url, 12);
	ck_assert_str_eq(url, "https://cdn");
}
END_TEST

static Suite *
http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("loop");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_buffered_json);
	tcase_add_test(tc, test_gzip_and_chunked);
	tcase_add_test(tc, test_stream_range);
	tcase_add_test(tc, test_redirect);
	tcase_add_test(tc, test_cut);
	tcase_add_test(tc, test_slow_drip);
	tcase_add_test(tc, test_wrong_host_refused);
	tcase_add_test(tc, test_untrusted_ca_refused);
	tcase_add_test(tc, test_body_cap);
	tcase_add_test(tc, test_callback_abort_and_cancel);
	tcase_add_test(tc, test_connect_refused_and_bad_scheme);
	tcase_add_test(tc, test_many_at_once);
	tcase_add_test(tc, test_parsers);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(http_suite());
}
