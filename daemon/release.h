/* The release Memfault's latest endpoint describes (its 200 JSON body), parsed and validated, and
 * the choice of the artifact meant for one device. There is no public schema: unknown fields are
 * ignored, known ones are type-checked, and an artifact is checked only when it is chosen, so a
 * malformed artifact of another component does not block this device's update. */
#ifndef OTAGW_RELEASE_H
#define OTAGW_RELEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RELEASE_ARTIFACTS_MAX 64
#define RELEASE_URL_MAX       4096
#define RELEASE_NAME_MAX      256   /* display_name, filename, type (longer ones are cut) */
#define RELEASE_NOTES_MAX     16384 /* notes (longer ones are cut, at a UTF-8 boundary) */
#define RELEASE_EXTRA_MAX     4096  /* extra_info, as compact JSON */

struct release_artifact {
	int64_t id;             /* -1 when absent */
	char *type;             /* e.g. "firmware"; NULL when absent */
	char *hardware_version; /* NULL when absent (then it matches any device) */
	char *component;        /* "software_type" or "component" of multi-component releases */
	char *filename;         /* NULL when absent */
	uint64_t file_size;
	char md5[33];    /* lower-case hex, "" when absent */
	char sha1[41];   /* lower-case hex, "" when absent */
	char sha256[65]; /* lower-case hex */
	char *url;
	char *error; /* why this artifact is unusable (names the field), NULL when valid */
};

struct release {
	char *version;
	char *display_name; /* NULL when absent */
	char *notes;        /* NULL when absent */
	bool is_delta;
	bool is_forced;
	char *extra_info; /* compact JSON object, NULL when absent or null */
	struct release_artifact *artifacts;
	size_t n_artifacts;
};

struct release_limits {
	uint64_t max_file_size; /* artifacts larger than this are refused; 0: 256 MiB */
	bool allow_http;        /* accept http:// artifact URLs (only with an http base URL) */
};

/* Parses a release from body[0..len). On success stores a new release in *out and returns 0.
 * Errors: -EBADMSG (not JSON or not an object), -EINVAL (a release field is missing or wrong:
 * err names it), -ENOMEM. err (may be NULL) receives a one-line reason. */
int release_parse(const char *body, size_t len, const struct release_limits *lim,
    struct release **out, char *err, size_t errlen);

/* Chooses the artifact for a device: same hardware_version (or none given), not naming another
 * component, preferring one naming software_type, then type firmware/component, then the first.
 * Returns 0 and *out, -ENOENT if no artifact is meant for the device, or -EINVAL if the chosen
 * one is malformed; err (may be NULL) says which hardware versions were offered or which field
 * is wrong. */
int release_pick(const struct release *r, const char *hardware_version, const char *software_type,
    const struct release_artifact **out, char *err, size_t errlen);

/* Frees r. Accepts NULL. */
void release_free(struct release *r);

#endif
