/* state: the device's small files (see state.h). Readers treat the files as untrusted input:
 * bounded size, every field checked, a clear message naming the file and the field. */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "flash.h"
#include "hex.h"

#define STATE_FILE_MAX 4096

/* Writes what fill() produces into dir/name through a temp file, then renames it into place and
 * syncs the directory so the rename itself is durable. */
static int
state_replace(
    const char *dir, const char *name, int (*fill)(int fd, const void *ctx), const void *ctx)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	int fd, dfd, r = 0;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path) ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name) >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	r = fill(fd, ctx);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if (fsync(dfd) < 0)
		r = -errno;
	close(dfd);
	return r;
}

static int
state_fill_json(int fd, const void *ctx)
{
	return json_dumpfd(ctx, fd, JSON_SORT_KEYS) == 0 && write(fd, "\n", 1) == 1 ? 0 : -EIO;
}

/* Reads dir/name as a JSON object of at most STATE_FILE_MAX bytes. */
static int
state_read_json(const char *dir, const char *name, json_t **out, char *err, size_t errlen)
{
	char path[PATH_MAX], buf[STATE_FILE_MAX + 1];
	json_error_t jerr;
	ssize_t n;
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno; /* snprintf may change errno */

		if (e != ENOENT)
			snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -EIO;
	}
	if (n > STATE_FILE_MAX) {
		snprintf(err, errlen, "%s: larger than %d bytes", path, STATE_FILE_MAX);
		return -EINVAL;
	}
	*out = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
	if (!*out || !json_is_object(*out)) {
		snprintf(err, errlen, "%s: %s", path, *out ? "not a JSON object" : jerr.text);
		json_decref(*out);
		return -EINVAL;
	}
	return 0;
}

/* An integer field in [0, max]. */
static int
state_get_u32(json_t *o, const char *key, uint32_t max, uint32_t *out)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
		return -1;
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

static int
state_get_sha(json_t *o, const char *key, uint8_t out[PROTO_SHA256_LEN])
{
	const char *s = json_string_value(json_object_get(o, key));

	return s && hex_decode(s, out, PROTO_SHA256_LEN) == 0 ? 0 : -1;
}

int
state_load_device(const char *dir, struct state_device *st, char *err, size_t errlen)
{
	struct state_device d;
	const char *v;
	json_t *o = NULL;
	int r = state_read_json(dir, "device.json", &o, err, errlen);

	if (r < 0)
		return r;
	v = json_string_value(json_object_get(o, "current_version"));
	if (!v || !ident_text_valid(v, strlen(v), IDENT_VERSION_MAX)) {
		snprintf(err, errlen,
		    "%s/device.json: current_version is missing or not 1..%d printable characters",
		    dir, IDENT_VERSION_MAX);
		json_decref(o);
		return -EINVAL;
	}
	memset(&d, 0, sizeof(d));
	memcpy(d.current_version, v, strlen(v) + 1);
	if (json_object_get(o, "installed_sha256")) {
		if (state_get_sha(o, "installed_sha256", d.sha256) < 0 ||
		    state_get_u32(o, "installed_size", UINT32_MAX, &d.size) < 0 || d.size == 0) {
			snprintf(err, errlen,
			    "%s/device.json: installed_sha256 must be 64 hex digits and "
			    "installed_size 1..%u",
			    dir, UINT32_MAX);
			json_decref(o);
			return -EINVAL;
		}
		d.has_image = true;
	}
	json_decref(o);
	*st = d;
	return 0;
}

int
state_save_device(const char *dir, const struct state_device *st)
{
	char hex[2 * PROTO_SHA256_LEN + 1];
	json_t *o = json_pack("{s:s}", "current_version", st->current_version);
	int r;

	if (!o)
		return -ENOMEM;
	if (st->has_image) {
		hex_encode(st->sha256, sizeof(st->sha256), hex);
		json_object_set_new(o, "installed_sha256", json_string(hex));
		json_object_set_new(o, "installed_size", json_integer(st->size));
	}
	r = state_replace(dir, "device.json", state_fill_json, o);
	json_decref(o);
	return r;
}

int
state_load_resume(const char *dir, otadev_resume_t *st, char *err, size_t errlen)
{
	otadev_resume_t s;
	json_t *o = NULL;
	int r = state_read_json(dir, "resume.json", &o, err, errlen);

	if (r < 0)
		return r;
	if (state_get_sha(o, "sha256", s.sha256) < 0 ||
	    state_get_u32(o, "size", UINT32_MAX, &s.size) < 0 || s.size == 0 ||
	    state_get_u32(o, "offset", s.size, &s.offset) < 0) {
		snprintf(err, errlen,
		    "%s/resume.json: needs sha256 (64 hex digits), size (>= 1) and offset "
		    "(0..size)",
		    dir);
		json_decref(o);
		return -EINVAL;
	}
	json_decref(o);
	*st = s;
	return 0;
}

int
state_save_resume(const char *dir, const otadev_resume_t *st)
{
	char hex[2 * PROTO_SHA256_LEN + 1];
	json_t *o;
	int r;

	hex_encode(st->sha256, sizeof(st->sha256), hex);
	o = json_pack("{s:s, s:I, s:I}", "sha256", hex, "size", (json_int_t)st->size, "offset",
	    (json_int_t)st->offset);
	if (!o)
		return -ENOMEM;
	r = state_replace(dir, "resume.json", state_fill_json, o);
	json_decref(o);
	return r;
}

int
state_clear_resume(const char *dir)
{
	char path[PATH_MAX];

	if ((size_t)snprintf(path, sizeof(path), "%s/resume.json", dir) >= sizeof(path))
		return -ENAMETOOLONG;
	return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

struct state_copy {
	struct flash *f;
	uint32_t size;
};

static int
state_fill_image(int fd, const void *ctx)
{
	const struct state_copy *c = ctx;

	return flash_copy(c->f, c->size, fd);
}

int
state_install(const char *dir, struct flash *f, uint32_t size)
{
	struct state_copy c = {f, size};

	return state_replace(dir, "installed.bin", state_fill_image, &c);
}
