/* The otagw-mockmf program as end-to-end tests and the demo use it: a scenario file with
 * releases, payloads (a file and a generated one), device lists and a canned response; the
 * info file; the answers the Memfault client gets from it; --help; a clean exit on SIGTERM. */
#include "ck.h"
#include "http.h"
#include "memfault.h"
#include "tdata.h"
#include "tdir.h"
#include "tfile.h"
#include "tloop.h"
#include "tproc.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/evp.h>

#define KEY "feedfacefeedfacefeedfacefeedface"

#define WAIT_MS 60000

struct result {
	bool done;
	struct memfault_result res;
};

static void
on_result(struct memfault_query *q, struct memfault_result *res, void *userdata)
{
	struct result *r = userdata;

	(void)q;
	r->done = true;
	r->res = *res;
	memset(res, 0, sizeof(*res));
}

struct body {
	bool done;
	long status;
	EVP_MD_CTX *sha;
	size_t len;
};

static int
on_body(struct http_request *req, const void *data, size_t len, void *userdata)
{
	struct body *b = userdata;

	(void)req;
	b->len += len;
	return EVP_DigestUpdate(b->sha, data, len) == 1 ? 0 : -EIO;
}

static void
on_body_done(struct http_request *req, const struct http_result *res, void *userdata)
{
	struct body *b = userdata;

	(void)req;
	b->done = true;
	b->status = res->error == HTTP_ERROR_NONE ? res->status : -1;
}

static void
query(struct event_base *base, struct memfault *mf, const char *serial, const char *hw,
    const char *cur, struct result *r)
{
	struct memfault_identity id = {serial, hw, "app", cur};

	memset(r, 0, sizeof(*r));
	ck_assert_int_eq(memfault_latest(mf, &id, on_result, r, NULL), 0);
	tloop_wait(base, tloop_flag, &r->done, 60000, "r->done");
}

START_TEST(test_scenario)
{
	char *dir = tdir_new("mockmfprog"), *scenario, *info, *fw, *files;
	char *argv[8], err[256], hex[65];
	struct event_base *base = event_base_new();
	struct http_config hcfg = {0};
	struct memfault_config mcfg = {.project_key = KEY};
	struct http *http;
	struct memfault *mf;
	struct result r;
	json_t *j;
	uint8_t data[3000], md[32];
	unsigned int mdlen, i;
	unsigned waited = 0;
	struct tproc p;

	ck_assert_int_ge(asprintf(&scenario, "%s/scenario.json", dir), 0);
	ck_assert_int_ge(asprintf(&info, "%s/info.json", dir), 0);
	ck_assert_int_ge(asprintf(&files, "%s/files", dir), 0);
	ck_assert_int_ge(asprintf(&fw, "%s/files/dvt-1.0.bin", dir), 0);
	ck_assert_int_eq(mkdir(files, 0700), 0);
	tdata_fill(data, sizeof(data), 11);
	tfile_write(fw, 0600, data, sizeof(data));
	tfile_write_str(scenario, 0600,
	    "{\"project_key\": \"" KEY "\",\n"
	    " \"releases\": [\n"
	    "  {\"hardware_version\": \"evt\", \"software_type\": \"app\", \"version\": "
	    "\"1.2.0\",\n"
	    "   \"payload\": {\"name\": \"gen.bin\", \"size\": 70000, \"seed\": 3},\n"
	    "   \"devices\": [\"A1\"]},\n"
	    "  {\"hardware_version\": \"dvt\", \"software_type\": \"app\", \"version\": \"1.0\",\n"
	    "   \"payload\": \"files/dvt-1.0.bin\", \"is_delta\": true}],\n"
	    " \"responses\": [{\"path\": \"/api/v0/releases/latest\", \"status\": 503,\n"
	    "   \"headers\": {\"Retry-After\": \"7\"}}]}\n");

	argv[0] = (char *)tproc_prog("OTAGW_MOCKMF");
	argv[1] = "-q";
	argv[2] = "-s";
	argv[3] = scenario;
	argv[4] = "-i";
	argv[5] = info;
	argv[6] = NULL;
	tproc_spawn(&p, argv, NULL);
	while ((j = json_load_file(info, 0, NULL)) == NULL) {
		tloop_for(base, 50);
		ck_assert_uint_lt(waited++, 600);
	}
	hcfg.ca_file = json_string_value(json_object_get(j, "ca_file"));
	mcfg.base_url = json_string_value(json_object_get(j, "base_url"));
	ck_assert_int_gt(json_integer_value(json_object_get(j, "port")), 0);
	http = http_new(base, &hcfg);
	ck_assert_ptr_nonnull(http);
	ck_assert_int_eq(memfault_new(http, &mcfg, &mf, err, sizeof(err)), 0);

	/* the canned response first */
	query(base, mf, "A1", "evt", "1.0.0", &r);
	ck_assert_int_eq(r.res.error, MEMFAULT_ERROR_RATE_LIMITED);
	ck_assert_uint_eq(r.res.retry_after_s, 7);
	memfault_result_clear(&r.res);

	/* a generated payload for the listed device, whose bytes match its announced hash */
	query(base, mf, "A1", "evt", "1.0.0", &r);
	ck_assert_int_eq(r.res.outcome, MEMFAULT_OUTCOME_UPDATE);
	ck_assert_uint_eq(r.res.artifact->file_size, 70000);
	{
		struct body b = {.sha = EVP_MD_CTX_new()};
		struct http_request_spec spec = {.url = r.res.artifact->url,
		    .body_max = 1 << 20,
		    .on_body = on_body,
		    .on_done = on_body_done,
		    .userdata = &b};

		ck_assert_int_eq(EVP_DigestInit_ex(b.sha, EVP_sha256(), NULL), 1);
		ck_assert_int_eq(http_request_start(http, &spec, NULL), 0);
		tloop_wait(base, tloop_flag, &b.done, 60000, "b.done");
		ck_assert_int_eq(b.status, 200);
		ck_assert_uint_eq(b.len, 70000);
		ck_assert_int_eq(EVP_DigestFinal_ex(b.sha, md, &mdlen), 1);
		EVP_MD_CTX_free(b.sha);
		for (i = 0; i < mdlen; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		ck_assert_str_eq(hex, r.res.artifact->sha256);
	}
	memfault_result_clear(&r.res);

	/* not a listed device: no release for it */
	query(base, mf, "A2", "evt", "1.0.0", &r);
	ck_assert_int_eq(r.res.outcome, MEMFAULT_OUTCOME_NO_UPDATE);
	ck_assert_str_eq(r.res.reason, "");
	memfault_result_clear(&r.res);

	/* a payload file, for everyone */
	query(base, mf, "B7", "dvt", "0.9", &r);
	ck_assert_int_eq(r.res.outcome, MEMFAULT_OUTCOME_UPDATE);
	ck_assert(r.res.release->is_delta);
	tdata_sha256(data, sizeof(data), NULL, hex);
	ck_assert_str_eq(r.res.artifact->sha256, hex);
	ck_assert_str_eq(r.res.artifact->filename, "dvt-1.0.bin");
	memfault_result_clear(&r.res);
	query(base, mf, "B7", "dvt", "1.0", &r);
	ck_assert_int_eq(r.res.outcome, MEMFAULT_OUTCOME_NO_UPDATE);
	ck_assert_str_eq(r.res.reason, "latest");
	memfault_result_clear(&r.res);

	memfault_free(mf);
	http_free(http);
	json_decref(j);
	ck_assert_int_eq(tproc_stop(&p, SIGTERM, WAIT_MS), 0);
	tproc_free(&p);
	ck_assert_int_eq(access(info, F_OK), -1); /* removed at exit */
	event_base_free(base);
	tdir_rmrf(dir);
	free(scenario);
	free(info);
	free(files);
	free(fw);
	free(dir);
}
END_TEST

START_TEST(test_help_and_errors)
{
	char *dir = tdir_new("mockmfprog"), *bad;
	char *argv[4];
	struct tproc p;

	bad = tdir_join(dir, "bad.json");
	argv[0] = (char *)tproc_prog("OTAGW_MOCKMF");
	argv[1] = "--help";
	argv[2] = NULL;
	ck_assert_int_eq(tproc_run(&p, argv, NULL, WAIT_MS), 0);
	ck_assert_ptr_nonnull(strstr(p.out, "Scenario format"));
	ck_assert_ptr_nonnull(strstr(p.out, "--info-file"));
	tproc_free(&p);

	tfile_write_str(bad, 0600, "{\"releases\": [{\"version\": \"1\"}]}");
	argv[1] = "-s";
	argv[2] = bad;
	argv[3] = NULL;
	ck_assert_int_ne(tproc_run(&p, argv, NULL, WAIT_MS), 0);
	tproc_free(&p);
	argv[1] = "--port";
	argv[2] = "70000";
	ck_assert_int_eq(tproc_run(&p, argv, NULL, WAIT_MS), 2);
	tproc_free(&p);
	tdir_rmrf(dir);
	free(bad);
	free(dir);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("mockmf_program");
	TCase *tc = tcase_create("program");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_scenario);
	tcase_add_test(tc, test_help_and_errors);
	suite_add_tcase(s, tc);
	return ck_main(s);
}
