/* release.c: parsing Memfault's release JSON (required, optional and unknown fields, bounds) and
 * choosing the artifact for a device; backoff.c: the retry delays. Table-driven, no loop. */
#include "backoff.h"
#include "ck.h"
#include "release.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHA_A "aa00000000000000000000000000000000000000000000000000000000000001"
#define SHA_B "bb00000000000000000000000000000000000000000000000000000000000002"
#define ART(hw, sha, extra)                                                            \
	"{\"id\":7,\"type\":\"firmware\",\"hardware_version\":\"" hw                   \
	"\",\"filename\":\"app.bin\","                                                 \
	"\"file_size\":42,\"md5\":\"43c8a2b0e5a7cd9fd0e4e2b1c5b0f0aa\",\"sha1\":null," \
	"\"sha256\":\"" sha "\",\"url\":\"https://cdn.example/app.bin?X-Sig=1\"" extra "}"
#define REL(arts) "{\"version\":\"1.2.0\",\"artifacts\":[" arts "]}"

static struct release *
parse_ok(const char *json)
{
	struct release *r = NULL;
	char err[256] = "";
	int rc = release_parse(json, strlen(json), NULL, &r, err, sizeof(err));

	ck_assert_msg(rc == 0, "parse failed (%d): %s", rc, err);
	return r;
}

static void
parse_fails(const char *json, int want, const char *needle)
{
	struct release *r = (struct release *)0x1;
	char err[256] = "";
	int rc = release_parse(json, strlen(json), NULL, &r, err, sizeof(err));

	ck_assert_int_eq(rc, want);
	ck_assert_ptr_eq(r, (struct release *)0x1); /* untouched */
	ck_assert_msg(strstr(err, needle) != NULL, "\"%s\" not in \"%s\"", needle, err);
}

START_TEST(test_full_release)
{
	const char *json =
	    "{\"id\":37,\"created_date\":\"2026-11-01T10:00:00.123456+00:00\",\"version\":\"1.0."
	    "0\","
	    "\"display_name\":\"Spring\",\"notes\":\"fixes\",\"revision\":\"\",\"min_version\":"
	    "\"\","
	    "\"must_pass_through\":false,\"is_delta\":true,\"is_forced\":null,"
	    "\"extra_info\":{\"b\":\"2\",\"a\":\"1\"},\"count_devices\":1,\"reason\":\"x\","
	    "\"future_field\":{\"nested\":[1,2,3]},"
	    "\"artifacts\":[{\"id\":63,\"created_date\":\"…\",\"type\":\"firmware\","
	    "\"hardware_version\":\"proto\",\"filename\":\"app.bin\",\"file_size\":42,"
	    "\"md5\":\"43C8A2B0E5A7CD9FD0E4E2B1C5B0F0AA\",\"sha1\":"
	    "\"0123456789abcdef0123456789abcdef01234567\",\"sha256\":\"" SHA_A "\","
	    "\"build_id\":\"\",\"extra_info\":null,\"url\":\"https://cdn.example/a?sig=1\"}]}";
	const struct release_artifact *a;
	struct release *r = parse_ok(json);

	ck_assert_str_eq(r->version, "1.0.0");
	ck_assert_str_eq(r->display_name, "Spring");
	ck_assert_str_eq(r->notes, "fixes");
	ck_assert(r->is_delta);
	ck_assert(!r->is_forced);
	ck_assert_str_eq(r->extra_info, "{\"a\":\"1\",\"b\":\"2\"}");
	ck_assert_uint_eq(r->n_artifacts, 1);
	ck_assert_int_eq(release_pick(r, "proto", "app", &a, NULL, 0), 0);
	ck_assert_int_eq(a->id, 63);
	ck_assert_str_eq(a->type, "firmware");
	ck_assert_str_eq(a->filename, "app.bin");
	ck_assert_uint_eq(a->file_size, 42);
	ck_assert_str_eq(a->md5, "43c8a2b0e5a7cd9fd0e4e2b1c5b0f0aa"); /* lower-cased */
	ck_assert_str_eq(a->sha1, "0123456789abcdef0123456789abcdef01234567");
	ck_assert_str_eq(a->sha256, SHA_A);
	ck_assert_str_eq(a->url, "https://cdn.example/a?sig=1");
	release_free(r);
}
END_TEST

static const struct {
	const char *json;
	int err;
	const char *needle;
} bad_releases[] = {
    {"", -EBADMSG, "not JSON"}, {"[1,2]", -EBADMSG, "not a JSON object"},
    {"{\"version\":\"1.0\",\"artifacts\":[", -EBADMSG, "not JSON"},
    {"{\"artifacts\":[" ART("a", SHA_A, "") "]}", -EINVAL, "no \"version\""},
    {"{\"version\":null,\"artifacts\":[" ART("a", SHA_A, "") "]}", -EINVAL, "no \"version\""},
    {"{\"version\":12,\"artifacts\":[" ART("a", SHA_A, "") "]}", -EINVAL, "\"version\""},
    {"{\"version\":\"1\\n2\",\"artifacts\":[" ART("a", SHA_A, "") "]}", -EINVAL, "\"version\""},
    {"{\"version\":\"1.0\"}", -EINVAL, "no \"artifacts\""},
    {"{\"version\":\"1.0\",\"artifacts\":[]}", -EINVAL, "\"artifacts\""},
    {"{\"version\":\"1.0\",\"artifacts\":{}}", -EINVAL, "\"artifacts\""},
    {"{\"version\":\"1.0\",\"is_delta\":\"yes\",\"artifacts\":[" ART("a", SHA_A, "") "]}", -EINVAL,
	"\"is_delta\""},
    {"{\"version\":\"1.0\",\"notes\":5,\"artifacts\":[" ART("a", SHA_A, "") "]}", -EINVAL,
	"\"notes\""},
    {"{\"version\":\"1.0\",\"extra_info\":[1],\"artifacts\":[" ART("a", SHA_A, "") "]}", -EINVAL,
	"\"extra_info\""},
    {"{\"version\":\"1.0\",\"display_name\":\"a\\u0000b\",\"artifacts\":[" ART("a", SHA_A, "") "]}",
	-EBADMSG, "not JSON"}, /* jansson refuses \u0000 */
};

START_TEST(test_bad_release)
{
	parse_fails(bad_releases[_i].json, bad_releases[_i].err, bad_releases[_i].needle);
}
END_TEST

/* Artifacts with one thing wrong: the release parses, picking the artifact says what. */
static const struct {
	const char *artifact;
	const char *needle;
} bad_artifacts[] = {
    {"{\"hardware_version\":\"evt\",\"file_size\":1,\"url\":\"https://x/y\"}", "no \"sha256\""},
    {"{\"hardware_version\":\"evt\",\"sha256\":\"abc\",\"file_size\":1,\"url\":\"https://x/y\"}",
	"\"sha256\" is not 64 hex"},
    {"{\"hardware_version\":\"evt\",\"sha256\":\"" SHA_A "z\",\"file_size\":1,"
     "\"url\":\"https://x/y\"}",
	"\"sha256\" is not 64 hex"},
    {"{\"hardware_version\":\"evt\",\"sha256\":\"" SHA_A "\",\"url\":\"https://x/y\"}",
	"no \"file_size\""},
    {"{\"hardware_version\":\"evt\",\"sha256\":\"" SHA_A "\",\"file_size\":0,"
     "\"url\":\"https://x/y\"}",
	"\"file_size\""},
    {"{\"hardware_version\":\"evt\",\"sha256\":\"" SHA_A "\",\"file_size\":-5,"
     "\"url\":\"https://x/y\"}",
	"\"file_size\""},
    {"{\"hardware_version\":\"evt\",\"sha256\":\"" SHA_A "\",\"file_size\":1.5,"
     "\"url\":\"https://x/y\"}",
	"\"file_size\""},
    {"{\"hardware_version\":\"evt\",\"sha256\":\"" SHA_A "\",\"file_size\":999999999999,"
     "\"url\":\"https://x/y\"}",
	"\"file_size\""},
    {"{\"hardware_version\":\"evt\",\"sha256\":\"" SHA_A "\",\"file_size\":1}", "no \"url\""},
    {"{\"hardware_version\":\"evt\",\"sha256\":\"" SHA_A "\",\"file_size\":1,"
     "\"url\":\"http://x/y\"}",
	"\"url\""},
    {"{\"hardware_version\":\"evt\",\"sha256\":\"" SHA_A "\",\"file_size\":1,"
     "\"url\":\"ftp://x/y\"}",
	"\"url\""},
    {"{\"hardware_version\":\"evt\",\"sha256\":\"" SHA_A "\",\"file_size\":1,"
     "\"url\":\"https://x/a b\"}",
	"\"url\""},
    {"{\"hardware_version\":\"evt\",\"sha256\":\"" SHA_A "\",\"file_size\":1,"
     "\"url\":\"https:///path\"}",
	"\"url\""},
    {"{\"hardware_version\":\"evt\",\"sha256\":\"" SHA_A "\",\"file_size\":1,"
     "\"md5\":\"xyz\",\"url\":\"https://x/y\"}",
	"\"md5\""},
    {"{\"hardware_version\":\"evt\",\"sha256\":\"" SHA_A "\",\"file_size\":1,"
     "\"sha1\":12,\"url\":\"https://x/y\"}",
	"\"sha1\""},
    {"{\"hardware_version\":7,\"sha256\":\"" SHA_A "\",\"file_size\":1,\"url\":\"https://x/y\"}",
	"\"hardware_version\""},
    {"\"not an object\"", "not an object"},
};

START_TEST(test_bad_artifact)
{
	const struct release_artifact *a = (void *)0x1;
	struct release *r;
	char json[1024], err[256] = "";

	snprintf(json, sizeof(json), "{\"version\":\"1.0\",\"artifacts\":[%s]}",
	    bad_artifacts[_i].artifact);
	r = parse_ok(json);
	ck_assert_int_eq(release_pick(r, "evt", "app", &a, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_eq(a, (void *)0x1);
	ck_assert_msg(strstr(err, bad_artifacts[_i].needle) != NULL, "\"%s\" not in \"%s\"",
	    bad_artifacts[_i].needle, err);
	ck_assert_ptr_nonnull(strstr(err, "release 1.0"));
	release_free(r);
}
END_TEST

START_TEST(test_pick)
{
	const struct release_artifact *a;
	struct release *r;
	char err[256];

	/* several hardware versions: each device gets its own */
	r = parse_ok(REL(ART("evt", SHA_A, "") "," ART("dvt", SHA_B, "")));
	ck_assert_int_eq(release_pick(r, "dvt", "app", &a, NULL, 0), 0);
	ck_assert_str_eq(a->sha256, SHA_B);
	ck_assert_int_eq(release_pick(r, "evt", "app", &a, NULL, 0), 0);
	ck_assert_str_eq(a->sha256, SHA_A);
	ck_assert_int_eq(release_pick(r, "pvt", "app", &a, err, sizeof(err)), -ENOENT);
	ck_assert_str_eq(err, "release 1.2.0 has no artifact for hardware_version \"pvt\" (it has "
			      "\"evt\", \"dvt\")");
	release_free(r);

	/* a broken artifact for another board does not block this one */
	r = parse_ok(REL("{\"hardware_version\":\"evt\"}," ART("dvt", SHA_B, "")));
	ck_assert_int_eq(release_pick(r, "dvt", "app", &a, NULL, 0), 0);
	ck_assert_str_eq(a->sha256, SHA_B);
	ck_assert_int_eq(release_pick(r, "evt", "app", &a, err, sizeof(err)), -EINVAL);
	release_free(r);

	/* multi-component: the artifact naming the device's software type wins; one naming
	 * another component is never chosen */
	r = parse_ok(REL(ART("evt", SHA_A, ",\"software_type\":\"bootloader\"") "," ART(
	    "evt", SHA_B, ",\"component\":\"app\"")));
	ck_assert_int_eq(release_pick(r, "evt", "app", &a, NULL, 0), 0);
	ck_assert_str_eq(a->sha256, SHA_B);
	ck_assert_int_eq(release_pick(r, "evt", "bootloader", &a, NULL, 0), 0);
	ck_assert_str_eq(a->sha256, SHA_A);
	ck_assert_int_eq(release_pick(r, "evt", "sensor", &a, NULL, 0), -ENOENT);
	release_free(r);

	/* type firmware preferred over an unknown type; no hardware_version matches anyone */
	r = parse_ok(REL("{\"type\":\"symbols\",\"hardware_version\":\"evt\",\"sha256\":\"" SHA_A
			 "\",\"file_size\":9,\"url\":\"https://x/s\"},"
			 "{\"type\":\"firmware\",\"sha256\":\"" SHA_B
			 "\",\"file_size\":9,\"url\":\"https://x/f\"}"));
	ck_assert_int_eq(release_pick(r, "evt", "app", &a, NULL, 0), 0);
	ck_assert_str_eq(a->sha256, SHA_B);
	ck_assert_str_eq(a->md5, "");
	ck_assert_int_eq(a->id, -1);
	release_free(r);
}
END_TEST

START_TEST(test_limits)
{
	struct release_limits lim = {.max_file_size = 41, .allow_http = true};
	const struct release_artifact *a;
	struct release *r = NULL;
	char json[40000], err[256];
	const char *http_art = "{\"version\":\"1\",\"artifacts\":[{\"sha256\":\"" SHA_A
			       "\",\"file_size\":40,\"url\":\"http://127.0.0.1:1/x\"}]}";
	size_t i, n;

	/* http URLs only when allowed; size bound from the limits */
	ck_assert_int_eq(release_parse(http_art, strlen(http_art), &lim, &r, err, sizeof(err)), 0);
	ck_assert_int_eq(release_pick(r, "evt", "app", &a, NULL, 0), 0);
	release_free(r);
	ck_assert_int_eq(release_parse(REL(ART("evt", SHA_A, "")),
			     strlen(REL(ART("evt", SHA_A, ""))), &lim, &r, err, sizeof(err)),
	    0);
	ck_assert_int_eq(release_pick(r, "evt", "app", &a, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "between 1 and 41 bytes"));
	release_free(r);

	/* long notes are cut at a character boundary (2-byte UTF-8 characters) */
	n = (size_t)snprintf(json, sizeof(json), "{\"version\":\"1\",\"notes\":\"x");
	for (i = 0; i < 10000; i++)
		n += (size_t)snprintf(json + n, sizeof(json) - n, "\xc3\xa9");
	snprintf(json + n, sizeof(json) - n,
	    "\",\"artifacts\":[{\"sha256\":\"" SHA_A
	    "\",\"file_size\":1,\"url\":\"https://x/y\"}]}");
	r = parse_ok(json);
	ck_assert_uint_le(strlen(r->notes), RELEASE_NOTES_MAX);
	ck_assert_uint_ge(strlen(r->notes), RELEASE_NOTES_MAX - 1);
	ck_assert_uint_eq(strlen(r->notes) % 2, 1); /* "x" + whole characters */
	release_free(r);

	/* too many artifacts */
	n = (size_t)snprintf(json, sizeof(json), "{\"version\":\"1\",\"artifacts\":[");
	for (i = 0; i <= RELEASE_ARTIFACTS_MAX; i++)
		n += (size_t)snprintf(json + n, sizeof(json) - n, "%s{}", i ? "," : "");
	snprintf(json + n, sizeof(json) - n, "]}");
	parse_fails(json, -EINVAL, "\"artifacts\"");
}
END_TEST

START_TEST(test_backoff)
{
	struct backoff_policy p = {.base_s = 8, .cap_s = 600};
	struct backoff_policy d = {0};
	unsigned i;

	/* d/2 .. d, doubling, capped */
	ck_assert_uint_eq(backoff_delay(&p, 0, 0), 4);
	ck_assert_uint_eq(backoff_delay(&p, 0, 4), 8);
	ck_assert_uint_eq(backoff_delay(&p, 1, 0), 8);
	ck_assert_uint_eq(backoff_delay(&p, 1, 8), 16);
	ck_assert_uint_eq(backoff_delay(&p, 3, 0), 32);
	ck_assert_uint_eq(backoff_delay(&p, 10, 0), 300);
	ck_assert_uint_eq(backoff_delay(&p, 10, 300), 600);
	ck_assert_uint_eq(backoff_delay(&p, 4000000000u, 0xffffffffu), 300 + 0xffffffffu % 301);
	/* defaults: 8 s up to an hour */
	ck_assert_uint_eq(backoff_delay(&d, 0, 0), 4);
	ck_assert_uint_eq(backoff_delay(&d, 100, 1800), 3600);
	for (i = 0; i < 1000; i++) {
		uint32_t v = backoff_next(&p, i % 12);

		ck_assert_uint_ge(v, 4);
		ck_assert_uint_le(v, 600);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("release");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, test_full_release);
	tcase_add_loop_test(
	    tc, test_bad_release, 0, sizeof(bad_releases) / sizeof(bad_releases[0]));
	tcase_add_loop_test(
	    tc, test_bad_artifact, 0, sizeof(bad_artifacts) / sizeof(bad_artifacts[0]));
	tcase_add_test(tc, test_pick);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_backoff);
	suite_add_tcase(s, tc);
	return ck_main(s);
}
