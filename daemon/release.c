/* Release JSON parsing with jansson (see release.h). Everything read from the body is bounded and
 * checked here, so the rest of the daemon handles only well-formed releases. */
#include "release.h"

#include "hex.h"
#include "ident.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#define RELEASE_FILE_SIZE_DEFAULT (256ull << 20)

static int release_err(char *err, size_t errlen, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
release_err(char *err, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return r;
}

/* Copies at most max bytes of a UTF-8 string, never splitting a character (jansson has already
 * checked it is valid UTF-8, and D-Bus will insist on that too). */
static char *
release_strndup_utf8(const char *s, size_t len, size_t max)
{
	char *p;

	if (len > max) {
		len = max;
		while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
			len--;
	}
	p = malloc(len + 1);
	if (p == NULL)
		return NULL;
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* Reads optional string field key of o into *out (NULL when absent or null). Returns 0,
 * -EINVAL if it is another type, -ENOMEM. NUL bytes inside the string are refused. */
static int
release_opt_string(
    json_t *o, const char *key, size_t max, char **out, char *err, size_t errlen, const char *what)
{
	json_t *v = json_object_get(o, key);
	size_t len;

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return release_err(err, errlen, -EINVAL, "%s\"%s\" is not a string", what, key);
	len = json_string_length(v);
	if (strlen(json_string_value(v)) != len)
		return release_err(err, errlen, -EINVAL, "%s\"%s\" contains a NUL byte", what, key);
	*out = release_strndup_utf8(json_string_value(v), len, max);
	return *out != NULL ? 0 : -ENOMEM;
}

static int
release_opt_bool(json_t *o, const char *key, bool *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);

	*out = false;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return release_err(err, errlen, -EINVAL, "\"%s\" is not a boolean", key);
	*out = json_is_true(v);
	return 0;
}

/* Checks a hex digest of exactly digits characters (either case) and writes it lower-case. */
static bool
release_hex_ok(const char *s, size_t digits, char *out)
{
	uint8_t bytes[32];

	if (digits > 2 * sizeof(bytes) || hex_decode(s, bytes, digits / 2) < 0)
		return false;
	hex_encode(bytes, digits / 2, out);
	return true;
}

static int
release_opt_hex(json_t *o, const char *key, size_t digits, char *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);

	out[0] = '\0';
	if (v == NULL || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0))
		return 0;
	if (!json_is_string(v) || !release_hex_ok(json_string_value(v), digits, out))
		return release_err(
		    err, errlen, -EINVAL, "artifact \"%s\" is not %zu hex digits", key, digits);
	return 0;
}

/* A URL we are willing to hand to libcurl: the right scheme, a host, no spaces or controls. */
static bool
release_url_ok(const char *url, bool allow_http)
{
	const char *p, *host;

	if (strncasecmp(url, "https://", 8) == 0)
		host = url + 8;
	else if (allow_http && strncasecmp(url, "http://", 7) == 0)
		host = url + 7;
	else
		return false;
	if (*host == '\0' || *host == '/' || *host == '?' || *host == '#')
		return false;
	for (p = url; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return false;
	return true;
}

static void
release_artifact_clear(struct release_artifact *a)
{
	free(a->type);
	free(a->hardware_version);
	free(a->component);
	free(a->filename);
	free(a->url);
	free(a->error);
}

/* Reads one artifact. Returns -ENOMEM only; anything wrong with it goes into a->error. */
static int
release_artifact_parse(json_t *o, const struct release_limits *lim, struct release_artifact *a)
{
	char err[160] = "";
	json_t *v;
	int r;

	a->id = -1;
	if (!json_is_object(o)) {
		a->error = strdup("artifact is not an object");
		return a->error != NULL ? 0 : -ENOMEM;
	}
	v = json_object_get(o, "id");
	if (json_is_integer(v))
		a->id = json_integer_value(v);
	if ((r = release_opt_string(
		 o, "type", RELEASE_NAME_MAX, &a->type, err, sizeof(err), "artifact ")) < 0 ||
	    (r = release_opt_string(o, "hardware_version", RELEASE_NAME_MAX, &a->hardware_version,
		 err, sizeof(err), "artifact ")) < 0 ||
	    (r = release_opt_string(
		 o, "filename", RELEASE_NAME_MAX, &a->filename, err, sizeof(err), "artifact ")) < 0)
		goto bad;
	if ((r = release_opt_string(o, "software_type", RELEASE_NAME_MAX, &a->component, err,
		 sizeof(err), "artifact ")) < 0)
		goto bad;
	if (a->component == NULL && (r = release_opt_string(o, "component", RELEASE_NAME_MAX,
					 &a->component, err, sizeof(err), "artifact ")) < 0)
		goto bad;

	v = json_object_get(o, "sha256");
	if (v == NULL || json_is_null(v)) {
		r = release_err(err, sizeof(err), -EINVAL, "artifact has no \"sha256\"");
		goto bad;
	}
	if (!json_is_string(v) || !release_hex_ok(json_string_value(v), 64, a->sha256)) {
		r = release_err(
		    err, sizeof(err), -EINVAL, "artifact \"sha256\" is not 64 hex digits");
		goto bad;
	}
	if ((r = release_opt_hex(o, "md5", 32, a->md5, err, sizeof(err))) < 0 ||
	    (r = release_opt_hex(o, "sha1", 40, a->sha1, err, sizeof(err))) < 0)
		goto bad;

	v = json_object_get(o, "file_size");
	if (v == NULL || json_is_null(v)) {
		r = release_err(err, sizeof(err), -EINVAL, "artifact has no \"file_size\"");
		goto bad;
	}
	if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
	    (uint64_t)json_integer_value(v) > lim->max_file_size) {
		r = release_err(err, sizeof(err), -EINVAL,
		    "artifact \"file_size\" is not a size between 1 and %llu bytes",
		    (unsigned long long)lim->max_file_size);
		goto bad;
	}
	a->file_size = (uint64_t)json_integer_value(v);

	v = json_object_get(o, "url");
	if (v == NULL || json_is_null(v)) {
		r = release_err(err, sizeof(err), -EINVAL, "artifact has no \"url\"");
		goto bad;
	}
	if (!json_is_string(v) || json_string_length(v) > RELEASE_URL_MAX ||
	    !release_url_ok(json_string_value(v), lim->allow_http)) {
		r = release_err(err, sizeof(err), -EINVAL,
		    "artifact \"url\" is not an %s URL of at most %d bytes",
		    lim->allow_http ? "http(s)" : "https", RELEASE_URL_MAX);
		goto bad;
	}
	a->url = strdup(json_string_value(v));
	return a->url != NULL ? 0 : -ENOMEM;
bad:
	if (r == -ENOMEM)
		return r;
	a->error = strdup(err);
	return a->error != NULL ? 0 : -ENOMEM;
}

int
release_parse(const char *body, size_t len, const struct release_limits *lim_in,
    struct release **out, char *err, size_t errlen)
{
	struct release_limits lim = {RELEASE_FILE_SIZE_DEFAULT, false};
	struct release *rel;
	json_error_t jerr;
	json_t *root, *v, *arts;
	size_t i;
	int r;

	if (lim_in != NULL) {
		lim = *lim_in;
		if (lim.max_file_size == 0)
			lim.max_file_size = RELEASE_FILE_SIZE_DEFAULT;
	}
	root = json_loadb(body, len, 0, &jerr);
	if (root == NULL)
		return release_err(
		    err, errlen, -EBADMSG, "not JSON (line %d: %s)", jerr.line, jerr.text);
	if (!json_is_object(root)) {
		json_decref(root);
		return release_err(err, errlen, -EBADMSG, "not a JSON object");
	}
	rel = calloc(1, sizeof(*rel));
	if (rel == NULL) {
		json_decref(root);
		return -ENOMEM;
	}

	v = json_object_get(root, "version");
	if (v == NULL || json_is_null(v)) {
		r = release_err(err, errlen, -EINVAL, "no \"version\"");
		goto fail;
	}
	if (!json_is_string(v) ||
	    !ident_text_valid(json_string_value(v), json_string_length(v), IDENT_VERSION_MAX)) {
		r = release_err(err, errlen, -EINVAL,
		    "\"version\" is not 1 to %d printable ASCII characters", IDENT_VERSION_MAX);
		goto fail;
	}
	rel->version = strdup(json_string_value(v));
	if (rel->version == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	if ((r = release_opt_string(root, "display_name", RELEASE_NAME_MAX, &rel->display_name, err,
		 errlen, "")) < 0 ||
	    (r = release_opt_string(
		 root, "notes", RELEASE_NOTES_MAX, &rel->notes, err, errlen, "")) < 0 ||
	    (r = release_opt_bool(root, "is_delta", &rel->is_delta, err, errlen)) < 0 ||
	    (r = release_opt_bool(root, "is_forced", &rel->is_forced, err, errlen)) < 0)
		goto fail;

	v = json_object_get(root, "extra_info");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_object(v)) {
			r = release_err(err, errlen, -EINVAL, "\"extra_info\" is not an object");
			goto fail;
		}
		rel->extra_info = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
		if (rel->extra_info == NULL) {
			r = -ENOMEM;
			goto fail;
		}
		if (strlen(rel->extra_info) > RELEASE_EXTRA_MAX) {
			r = release_err(err, errlen, -EINVAL,
			    "\"extra_info\" is larger than %d bytes", RELEASE_EXTRA_MAX);
			goto fail;
		}
	}

	arts = json_object_get(root, "artifacts");
	if (arts == NULL || json_is_null(arts)) {
		r = release_err(err, errlen, -EINVAL, "no \"artifacts\"");
		goto fail;
	}
	if (!json_is_array(arts) || json_array_size(arts) == 0 ||
	    json_array_size(arts) > RELEASE_ARTIFACTS_MAX) {
		r = release_err(err, errlen, -EINVAL, "\"artifacts\" is not an array of 1 to %d",
		    RELEASE_ARTIFACTS_MAX);
		goto fail;
	}
	rel->artifacts = calloc(json_array_size(arts), sizeof(*rel->artifacts));
	if (rel->artifacts == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < json_array_size(arts); i++) {
		rel->n_artifacts = i + 1;
		r = release_artifact_parse(json_array_get(arts, i), &lim, &rel->artifacts[i]);
		if (r < 0)
			goto fail;
	}
	json_decref(root);
	*out = rel;
	return 0;
fail:
	json_decref(root);
	release_free(rel);
	return r;
}

static bool
release_str_eq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

int
release_pick(const struct release *r, const char *hardware_version, const char *software_type,
    const struct release_artifact **out, char *err, size_t errlen)
{
	const struct release_artifact *best = NULL;
	char offered[256] = "";
	size_t i, n = 0;
	int best_score = -1;

	for (i = 0; i < r->n_artifacts; i++) {
		const struct release_artifact *a = &r->artifacts[i];
		int score = 0;

		if (a->hardware_version != NULL && n < sizeof(offered)) {
			char quoted[RELEASE_NAME_MAX + 3];

			snprintf(quoted, sizeof(quoted), "\"%s\"", a->hardware_version);
			if (strstr(offered, quoted) == NULL) {
				int w = snprintf(offered + n, sizeof(offered) - n, "%s%s",
				    n > 0 ? ", " : "", quoted);

				n += w > 0 ? (size_t)w : 0;
			}
		}
		if (a->hardware_version != NULL &&
		    !release_str_eq(a->hardware_version, hardware_version))
			continue;
		if (a->component != NULL && !release_str_eq(a->component, software_type))
			continue;
		if (a->component != NULL)
			score += 4;
		if (a->type == NULL || strcmp(a->type, "firmware") == 0 ||
		    strcmp(a->type, "component") == 0)
			score += 2;
		if (score > best_score) {
			best = a;
			best_score = score;
		}
	}
	if (best == NULL)
		return release_err(err, errlen, -ENOENT,
		    "release %s has no artifact for hardware_version \"%s\" (it has %s)",
		    r->version, hardware_version, n > 0 ? offered : "none with a hardware_version");
	if (best->error != NULL)
		return release_err(err, errlen, -EINVAL, "release %s: %s", r->version, best->error);
	*out = best;
	return 0;
}

void
release_free(struct release *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->n_artifacts; i++)
		release_artifact_clear(&r->artifacts[i]);
	free(r->artifacts);
	free(r->version);
	free(r->display_name);
	free(r->notes);
	free(r->extra_info);
	free(r);
}
