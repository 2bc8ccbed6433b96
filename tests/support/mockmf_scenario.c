/* Scenario files for the Memfault stand-in: a JSON description of the project key, releases,
 * payloads and canned responses, so the otagw-mockmf program and end-to-end tests can set a
 * server up without C. The format is documented in otagw-mockmf --help. */
#include "mockmf.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#define SCENARIO_FILE_MAX (256u << 20)
#define SCENARIO_NAME_MAX 128

static int scenario_fail(char *err, size_t errlen, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
scenario_fail(char *err, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return r;
}

static int
scenario_read_file(const char *path, unsigned char **data, size_t *len)
{
	struct stat st;
	unsigned char *buf;
	FILE *f = fopen(path, "rb");
	int r = 0;

	if (f == NULL)
		return -errno;
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > SCENARIO_FILE_MAX) {
		fclose(f);
		return -EFBIG;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		fclose(f);
		return -ENOMEM;
	}
	if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
		r = -EIO;
	fclose(f);
	if (r < 0) {
		free(buf);
		return r;
	}
	*data = buf;
	*len = (size_t)st.st_size;
	return 0;
}

/* Deterministic filler so generated payloads are reproducible: xorshift64 from seed. */
static void
scenario_fill(unsigned char *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed != 0 ? seed : 0x9e3779b97f4a7c15ULL;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (unsigned char)x;
	}
}

/* A payload is a file path (relative to the scenario) or {"name", "size", "seed"}. Registers it
 * on the CDN once and returns its name in name (SCENARIO_NAME_MAX bytes). */
static int
scenario_payload(struct mockmf *m, const char *dir, json_t *j, char *name, char *err, size_t errlen)
{
	unsigned char *data = NULL;
	size_t len = 0;
	int r;

	if (json_is_string(j)) {
		const char *file = json_string_value(j);
		char path[PATH_MAX], base[PATH_MAX];

		if (file[0] == '/')
			snprintf(path, sizeof(path), "%s", file);
		else
			snprintf(path, sizeof(path), "%s/%s", dir, file);
		snprintf(base, sizeof(base), "%s", file);
		snprintf(name, SCENARIO_NAME_MAX, "%s", basename(base));
		r = scenario_read_file(path, &data, &len);
		if (r < 0) {
			snprintf(err, errlen, "payload %s: %s", path, strerror(-r));
			return r;
		}
	} else if (json_is_object(j)) {
		json_t *n = json_object_get(j, "name"), *s = json_object_get(j, "size");
		json_int_t size = json_integer_value(s);

		if (!json_is_string(n) || !json_is_integer(s) || size < 0 ||
		    (uint64_t)size > SCENARIO_FILE_MAX)
			return scenario_fail(err, errlen, -EINVAL,
			    "payload objects need \"name\" and a \"size\" up to 256 MiB");
		snprintf(name, SCENARIO_NAME_MAX, "%s", json_string_value(n));
		len = (size_t)size;
		data = malloc(len + 1);
		if (data == NULL)
			return -ENOMEM;
		scenario_fill(data, len, (uint64_t)json_integer_value(json_object_get(j, "seed")));
	} else {
		return scenario_fail(
		    err, errlen, -EINVAL, "\"payload\" must be a file name or an object");
	}
	r = mockmf_add_payload(m, name, data, len);
	free(data);
	if (r == -EEXIST)
		r = 0; /* the same payload in several releases */
	if (r < 0)
		return scenario_fail(err, errlen, r, "payload %s: bad name or out of memory", name);
	return 0;
}

static const char *
scenario_str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static int
scenario_release(struct mockmf *m, const char *dir, json_t *jr, char *err, size_t errlen)
{
	struct mockmf_artifact arts[16];
	char names[16][SCENARIO_NAME_MAX], payload[SCENARIO_NAME_MAX];
	const char *devices[257];
	struct mockmf_release rel;
	json_t *ja = json_object_get(jr, "artifacts"), *jd = json_object_get(jr, "devices");
	size_t i;
	int r;

	memset(&rel, 0, sizeof(rel));
	memset(arts, 0, sizeof(arts));
	rel.hardware_version = scenario_str(jr, "hardware_version");
	rel.software_type = scenario_str(jr, "software_type");
	rel.version = scenario_str(jr, "version");
	rel.display_name = scenario_str(jr, "display_name");
	rel.notes = scenario_str(jr, "notes");
	rel.is_delta = json_is_true(json_object_get(jr, "is_delta"));
	if (rel.hardware_version == NULL || rel.software_type == NULL || rel.version == NULL)
		return scenario_fail(err, errlen, -EINVAL,
		    "a release needs hardware_version, software_type and version");
	if (jd != NULL) {
		if (!json_is_array(jd) || json_array_size(jd) > 256)
			return scenario_fail(err, errlen, -EINVAL,
			    "\"devices\" must be an array of up to 256 serials");
		for (i = 0; i < json_array_size(jd); i++)
			if ((devices[i] = json_string_value(json_array_get(jd, i))) == NULL)
				return scenario_fail(
				    err, errlen, -EINVAL, "\"devices\" must hold strings");
		devices[i] = NULL;
		rel.devices = devices;
	}
	if (ja != NULL) {
		if (!json_is_array(ja) || json_array_size(ja) == 0 || json_array_size(ja) > 16)
			return scenario_fail(err, errlen, -EINVAL,
			    "\"artifacts\" must be an array of 1 to 16 objects");
		for (i = 0; i < json_array_size(ja); i++) {
			json_t *a = json_array_get(ja, i);

			r = scenario_payload(
			    m, dir, json_object_get(a, "payload"), names[i], err, errlen);
			if (r < 0)
				return r;
			arts[i].payload = names[i];
			arts[i].hardware_version = scenario_str(a, "hardware_version");
			arts[i].type = scenario_str(a, "type");
			arts[i].sha256 = scenario_str(a, "sha256");
			arts[i].file_size =
			    (uint64_t)json_integer_value(json_object_get(a, "file_size"));
		}
		rel.artifacts = arts;
		rel.n_artifacts = json_array_size(ja);
	} else {
		r = scenario_payload(m, dir, json_object_get(jr, "payload"), payload, err, errlen);
		if (r < 0)
			return r;
		rel.payload = payload;
	}
	r = mockmf_add_release(m, &rel);
	if (r < 0)
		return scenario_fail(err, errlen, r, "release %s: invalid", rel.version);
	return 0;
}

static int
scenario_response(struct mockmf *m, json_t *jr, char *err, size_t errlen)
{
	struct mockmf_response resp;
	const char *path = scenario_str(jr, "path");
	json_t *jh = json_object_get(jr, "headers"), *v;
	char headers[2048] = "";
	const char *k;
	size_t n = 0;

	if (path == NULL)
		return scenario_fail(err, errlen, -EINVAL, "a response needs a \"path\"");
	memset(&resp, 0, sizeof(resp));
	resp.status = (int)json_integer_value(json_object_get(jr, "status"));
	resp.body = scenario_str(jr, "body");
	resp.redirect = scenario_str(jr, "redirect");
	resp.cut_after = (size_t)json_integer_value(json_object_get(jr, "cut_after"));
	resp.drip_ms = (unsigned)json_integer_value(json_object_get(jr, "drip_ms"));
	resp.drip_bytes = (size_t)json_integer_value(json_object_get(jr, "drip_bytes"));
	resp.count = (unsigned)json_integer_value(json_object_get(jr, "count"));
	if (json_is_true(json_object_get(jr, "forever")))
		resp.count = UINT32_MAX;
	if (json_is_true(json_object_get(jr, "gzip")))
		resp.flags |= MOCKMF_GZIP;
	if (json_is_true(json_object_get(jr, "chunked")))
		resp.flags |= MOCKMF_CHUNKED;
	if (json_is_true(json_object_get(jr, "ignore_range")))
		resp.flags |= MOCKMF_IGNORE_RANGE;
	json_object_foreach(jh, k, v)
	{
		int w;

		if (!json_is_string(v))
			return scenario_fail(
			    err, errlen, -EINVAL, "header %s: value must be a string", k);
		w = snprintf(headers + n, sizeof(headers) - n, "%s: %s\n", k, json_string_value(v));
		if (w < 0 || (size_t)w >= sizeof(headers) - n)
			return scenario_fail(err, errlen, -E2BIG, "headers of %s too long", path);
		n += (size_t)w;
	}
	if (n > 0)
		resp.headers = headers;
	return mockmf_push(m, path, &resp);
}

int
mockmf_load_scenario(struct mockmf *m, const char *path, char *err, size_t errlen)
{
	char dirbuf[PATH_MAX], *dir;
	json_error_t jerr;
	json_t *root, *arr, *v;
	const char *key;
	size_t i;
	int r = 0;

	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		snprintf(err, errlen, "%s:%d: %s", path, jerr.line, jerr.text);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		return scenario_fail(err, errlen, -EINVAL, "%s: not a JSON object", path);
	}
	snprintf(dirbuf, sizeof(dirbuf), "%s", path);
	dir = dirname(dirbuf);
	key = scenario_str(root, "project_key");
	if (key != NULL && (r = mockmf_set_project_key(m, key)) < 0)
		goto out;
	arr = json_object_get(root, "releases");
	json_array_foreach(arr, i, v)
	{
		if ((r = scenario_release(m, dir, v, err, errlen)) < 0)
			goto out;
	}
	arr = json_object_get(root, "responses");
	json_array_foreach(arr, i, v)
	{
		if ((r = scenario_response(m, v, err, errlen)) < 0)
			goto out;
	}
out:
	json_decref(root);
	return r;
}
