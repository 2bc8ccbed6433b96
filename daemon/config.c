/* Parses otagw.conf with inih into a fresh struct config (see config.h). inih splits
 * "key = value" lines; this file feeds it one line at a time through its own reader, which
 * counts lines (so every message has a file:line), bounds line length, strips indentation (so
 * an indented key is never taken as a continuation of the previous value) and parses section
 * headers itself (inih truncates long ones silently and cannot report empty sections). Keys are
 * table-driven; what involves more than one key is checked once the whole file is read. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ini.h>

#include "frame.h"

#define CONFIG_FILE_MAX        ((off_t)1 << 20) /* a config file is a few KiB: refuse absurd ones */
#define CONFIG_ERRORS_MAX      100              /* report this many, then count the rest */
#define CONFIG_KEY_FILE_MAX    512
#define CONFIG_KEYS_MAX        12  /* keys in the largest section */
#define CONFIG_NAME_PREFIX_MAX 248 /* the longest name a BLE device can have */

#define KIB    ((uint64_t)1024)
#define MIB    (KIB * 1024)
#define GIB    (MIB * 1024)
#define TIB    (GIB * 1024)
#define MINUTE ((uint64_t)60)
#define HOUR   (60u * MINUTE)
#define DAY    (24u * HOUR)

struct parse;

enum config_key_type {
	CONFIG_KEY_PATH,     /* absolute path, stored as char * */
	CONFIG_KEY_UINT,     /* decimal, stored in a uint16/32/64 field */
	CONFIG_KEY_DURATION, /* stored as seconds */
	CONFIG_KEY_SIZE,     /* stored as bytes */
	CONFIG_KEY_BOOL,
	CONFIG_KEY_ENUM, /* one of names[], stored as an int-sized enum */
	CONFIG_KEY_CUSTOM,
};

struct config_key {
	const char *name;
	enum config_key_type type;
	size_t offset; /* of the field in the section's target struct */
	size_t size;   /* of that field */
	uint64_t min, max;
	const char *const *names; /* CONFIG_KEY_ENUM: NULL-terminated, index = enum value */
	/* CONFIG_KEY_CUSTOM: parses value into the target; returns 0, or -1 after reporting. */
	int (*set)(struct parse *p, void *target, const char *value);
	bool repeat; /* may be given more than once (adds to a list) */
};

enum config_section_kind {
	CONFIG_SECTION_GENERAL,
	CONFIG_SECTION_MEMFAULT,
	CONFIG_SECTION_UART,
	CONFIG_SECTION_TCP,
	CONFIG_SECTION_UNIX,
	CONFIG_SECTION_BLE,
	CONFIG_SECTION_DBUS,
};

struct config_section_type {
	const char *name;
	enum config_section_kind kind;
	bool named; /* [kind "NAME"] */
	const struct config_key *keys;
	size_t n_keys;
};

/* One section header as it appeared in the file. */
struct config_section {
	const struct config_section_type *type;
	void *target; /* the struct its keys fill */
	unsigned line;
	unsigned key_line[CONFIG_KEYS_MAX]; /* where each key was set; 0: not set */
};

struct parse {
	const char *path;
	FILE *f;
	struct stat st;
	struct config *cfg;
	config_report_fn report;
	void *arg;
	unsigned lineno;
	bool expect_kv; /* the line handed to inih should have given a key = value */
	bool kv_seen;
	struct config_section *sec; /* NULL before the first header, or under a bad one */
	bool sec_bad;               /* keys under a bad header are not reported again */
	unsigned bad_headers;
	struct config_section sections[4 + CONFIG_LINKS_MAX]; /* 4 singletons */
	size_t n_sections;
	char *key_file; /* project_key_file */
	unsigned errors;
	int read_errno;
	bool oom;
};

static const char *const config_link_kind_names[] = {
    [CONFIG_LINK_UART] = "uart",
    [CONFIG_LINK_TCP] = "tcp",
    [CONFIG_LINK_UNIX] = "unix",
};

static void config_error(struct parse *p, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
config_error(struct parse *p, unsigned line, const char *fmt, ...)
{
	char text[768], msg[1024];
	va_list ap;

	if (++p->errors > CONFIG_ERRORS_MAX || p->report == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(msg, sizeof(msg), "%s:%u: %s", p->path, line, text);
	else
		snprintf(msg, sizeof(msg), "%s: %s", p->path, text);
	p->report(p->arg, msg);
}

static void
config_oom(struct parse *p)
{
	if (!p->oom)
		config_error(p, 0, "out of memory");
	p->oom = true;
}

/* strdup that records an allocation failure. */
static char *
config_strdup(struct parse *p, const char *s)
{
	char *c = strdup(s);

	if (c == NULL)
		config_oom(p);
	return c;
}

static void
config_replace(struct parse *p, char **field, const char *value)
{
	char *c = config_strdup(p, value);

	if (c == NULL)
		return;
	free(*field);
	*field = c;
}

/* "512M", "1G", "100": the shortest exact way to write a size. */
static void
config_format_size(uint64_t v, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	int i = -1;

	while (v != 0 && v % 1024 == 0 && i < 3) {
		v /= 1024;
		i++;
	}
	if (i < 0)
		snprintf(buf, len, "%llu", (unsigned long long)v);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)v, units[i]);
}

/* "30s", "5m", "6h", "30d". */
static void
config_format_duration(uint64_t v, char *buf, size_t len)
{
	if (v != 0 && v % DAY == 0)
		snprintf(buf, len, "%llud", (unsigned long long)(v / DAY));
	else if (v != 0 && v % HOUR == 0)
		snprintf(buf, len, "%lluh", (unsigned long long)(v / HOUR));
	else if (v != 0 && v % MINUTE == 0)
		snprintf(buf, len, "%llum", (unsigned long long)(v / MINUTE));
	else
		snprintf(buf, len, "%llus", (unsigned long long)v);
}

/* Parses digits, then an optional unit from units[] whose multipliers are mult[] (units "":
 * digits only). */
static int
config_parse_scaled(const char *s, const char *units, const uint64_t *mult, uint64_t *out)
{
	uint64_t v = 0, m = 1;
	const char *u;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	if (*s != '\0') {
		u = strchr(units, *s);
		if (u == NULL || s[1] != '\0')
			return -EINVAL;
		m = mult[u - units];
	}
	if (v > UINT64_MAX / m)
		return -ERANGE;
	*out = v * m;
	return 0;
}

int
config_parse_duration(const char *s, uint64_t *out)
{
	static const uint64_t mult[] = {1, MINUTE, HOUR, DAY};

	return config_parse_scaled(s, "smhd", mult, out);
}

int
config_parse_size(const char *s, uint64_t *out)
{
	static const uint64_t mult[] = {KIB, MIB, GIB, TIB, KIB, MIB, GIB, TIB};

	return config_parse_scaled(s, "KMGTkmgt", mult, out);
}

/* Decimal digits only (no sign, no spaces, no hex, no unit) within [min, max]. */
static int
config_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v;
	int r = config_parse_scaled(s, "", NULL, &v);

	if (r < 0)
		return r;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

static void
config_store_uint(void *field, size_t size, uint64_t v)
{
	uint16_t v16 = (uint16_t)v;
	uint32_t v32 = (uint32_t)v;

	switch (size) {
	case sizeof(uint16_t):
		memcpy(field, &v16, size);
		break;
	case sizeof(uint32_t):
		memcpy(field, &v32, size);
		break;
	case sizeof(uint64_t):
		memcpy(field, &v, size);
		break;
	default:
		break;
	}
}

static int
config_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* "a, b or c" from a NULL-terminated list. */
static void
config_join(const char *const *names, char *buf, size_t len)
{
	size_t i, n = 0, used = 0;

	while (names[n] != NULL)
		n++;
	buf[0] = '\0';
	for (i = 0; i < n && used < len; i++) {
		const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
		int r = snprintf(buf + used, len - used, "%s%s", sep, names[i]);

		if (r < 0)
			break;
		used += (size_t)r;
	}
}

static bool
config_check_path(struct parse *p, const char *key, const char *value, size_t max)
{
	if (value[0] != '/') {
		config_error(p, p->lineno,
		    "%s = %s: not an absolute path; write the full path from /", key, value);
		return false;
	}
	if (strlen(value) > max) {
		config_error(p, p->lineno, "%s: path too long (at most %zu bytes)", key, max);
		return false;
	}
	return true;
}

/* Durations and sizes: a number with an optional unit, checked against the key's range. */
struct config_scaled_kind {
	const char *noun;
	const char *forms; /* how to write one, for errors */
	int (*parse)(const char *s, uint64_t *out);
	void (*format)(uint64_t v, char *buf, size_t len);
};

static const struct config_scaled_kind config_duration_kind = {"duration",
    "seconds or a number followed by s, m, h or d (e.g. 30s, 5m, 1h)", config_parse_duration,
    config_format_duration};
static const struct config_scaled_kind config_size_kind = {"size",
    "bytes or a number followed by K, M, G or T (e.g. 512K, 64M)", config_parse_size,
    config_format_size};

static void
config_set_scaled(struct parse *p, const struct config_key *k, void *field, const char *value,
    const struct config_scaled_kind *kind)
{
	char lo[32], hi[32];
	uint64_t v;
	int r;

	r = kind->parse(value, &v);
	if (r == 0 && v >= k->min && v <= k->max) {
		config_store_uint(field, k->size, v);
		return;
	}
	kind->format(k->min, lo, sizeof(lo));
	kind->format(k->max, hi, sizeof(hi));
	if (r == -EINVAL)
		config_error(p, p->lineno, "%s = %s: not a %s; use %s, from %s to %s", k->name,
		    value, kind->noun, kind->forms, lo, hi);
	else
		config_error(p, p->lineno, "%s = %s: out of range; use a %s from %s to %s", k->name,
		    value, kind->noun, lo, hi);
}

static void
config_set_typed(struct parse *p, const struct config_key *k, void *target, const char *value)
{
	void *field = (char *)target + k->offset;
	char names[128];
	uint64_t v;
	bool b;
	int r, i;

	switch (k->type) {
	case CONFIG_KEY_PATH:
		if (config_check_path(p, k->name, value, PATH_MAX - 1))
			config_replace(p, (char **)field, value);
		break;
	case CONFIG_KEY_UINT:
		r = config_parse_uint(value, k->min, k->max, &v);
		if (r == 0)
			config_store_uint(field, k->size, v);
		else
			config_error(p, p->lineno,
			    "%s = %s: %s; use a whole number from %llu to %llu", k->name, value,
			    r == -ERANGE ? "out of range" : "not a number",
			    (unsigned long long)k->min, (unsigned long long)k->max);
		break;
	case CONFIG_KEY_DURATION:
		config_set_scaled(p, k, field, value, &config_duration_kind);
		break;
	case CONFIG_KEY_SIZE:
		config_set_scaled(p, k, field, value, &config_size_kind);
		break;
	case CONFIG_KEY_BOOL:
		if (config_parse_bool(value, &b) == 0)
			memcpy(field, &b, sizeof(b));
		else
			config_error(
			    p, p->lineno, "%s = %s: not a boolean; use yes or no", k->name, value);
		break;
	case CONFIG_KEY_ENUM:
		for (i = 0; k->names[i] != NULL; i++) {
			if (strcmp(value, k->names[i]) == 0) {
				memcpy(field, &i, sizeof(i));
				return;
			}
		}
		config_join(k->names, names, sizeof(names));
		config_error(p, p->lineno, "%s = %s: unknown value; use %s", k->name, value, names);
		break;
	case CONFIG_KEY_CUSTOM:
		k->set(p, target, value);
		break;
	}
}

/* ---- custom keys ---- */

static int
config_set_log_level(struct parse *p, void *target, const char *value)
{
	struct config_general *g = target;

	if (log_level_parse(value, &g->log_level) == 0)
		return 0;
	config_error(p, p->lineno,
	    "log_level = %s: unknown level; use err, warn, notice, info or debug", value);
	return -1;
}

static bool
config_is_key(const char *s)
{
	size_t i;

	for (i = 0; i < CONFIG_PROJECT_KEY_LEN; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return s[i] == '\0';
}

static int
config_set_project_key(struct parse *p, void *target, const char *value)
{
	struct config_memfault *m = target;

	/* Never echo the value: it is, or is close to, a secret. */
	if (!config_is_key(value)) {
		config_error(p, p->lineno,
		    "project_key: not %d hexadecimal digits (the value is not shown)",
		    CONFIG_PROJECT_KEY_LEN);
		return -1;
	}
	memcpy(m->project_key, value, sizeof(m->project_key));
	config_replace(p, &m->project_key_source, p->path);
	return 0;
}

static int
config_set_project_key_file(struct parse *p, void *target, const char *value)
{
	(void)target;
	if (!config_check_path(p, "project_key_file", value, PATH_MAX - 1))
		return -1;
	config_replace(p, &p->key_file, value);
	return 0;
}

/* Parses an http(s) URL with libcurl's own parser, so what we accept is what it will fetch. */
static CURLU *
config_parse_url(struct parse *p, const char *key, const char *value, unsigned flags, bool echo)
{
	CURLU *u = curl_url();
	CURLUcode rc;

	if (u == NULL) {
		config_oom(p);
		return NULL;
	}
	rc = curl_url_set(u, CURLUPART_URL, value, flags);
	if (rc != CURLUE_OK) {
		if (echo)
			config_error(p, p->lineno, "%s = %s: not a valid URL (%s)", key, value,
			    curl_url_strerror(rc));
		else
			config_error(p, p->lineno,
			    "%s: not a valid URL (%s; the value is not shown)", key,
			    curl_url_strerror(rc));
		curl_url_cleanup(u);
		return NULL;
	}
	return u;
}

static bool
config_url_has(CURLU *u, CURLUPart part)
{
	char *s = NULL;
	bool has = curl_url_get(u, part, &s, 0) == CURLUE_OK && s != NULL && *s != '\0';

	curl_free(s);
	return has;
}

static int
config_set_base_url(struct parse *p, void *target, const char *value)
{
	struct config_memfault *m = target;
	char *scheme = NULL, *url = NULL;
	CURLU *u;
	size_t n;
	int r = -1;

	u = config_parse_url(p, "base_url", value, 0, true);
	if (u == NULL)
		return -1;
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0))
		config_error(p, p->lineno,
		    "base_url = %s: not an https URL; use e.g. https://device.memfault.com", value);
	else if (config_url_has(u, CURLUPART_USER) || config_url_has(u, CURLUPART_PASSWORD))
		config_error(p, p->lineno,
		    "base_url: must not carry a user name or password (Memfault takes the project "
		    "key in a header)");
	else if (config_url_has(u, CURLUPART_QUERY) || config_url_has(u, CURLUPART_FRAGMENT))
		config_error(p, p->lineno,
		    "base_url = %s: must not have a query or fragment; use e.g. "
		    "https://device.memfault.com",
		    value);
	else if (curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK)
		config_oom(p);
	else {
		/* API paths are appended as "/api/v0/...". */
		n = strlen(url);
		while (n > 0 && url[n - 1] == '/')
			url[--n] = '\0';
		config_replace(p, &m->base_url, url);
		r = 0;
	}
	curl_free(url);
	curl_free(scheme);
	curl_url_cleanup(u);
	return r;
}

static int
config_set_proxy(struct parse *p, void *target, const char *value)
{
	static const char *const schemes[] = {
	    "http", "https", "socks4", "socks4a", "socks5", "socks5h", NULL};
	struct config_memfault *m = target;
	char *scheme = NULL, list[96];
	size_t i;
	CURLU *u;
	int r = -1;

	/* A proxy URL may carry a password: never echo it. */
	u = config_parse_url(p, "proxy", value, CURLU_NON_SUPPORT_SCHEME, false);
	if (u == NULL)
		return -1;
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK) {
		for (i = 0; schemes[i] != NULL; i++)
			if (strcmp(scheme, schemes[i]) == 0)
				r = 0;
	}
	if (r == 0) {
		config_replace(p, &m->proxy, value);
	} else {
		config_join(schemes, list, sizeof(list));
		config_error(p, p->lineno,
		    "proxy: unsupported scheme; use a URL starting with %s, e.g. "
		    "http://proxy.example:3128",
		    list);
	}
	curl_free(scheme);
	curl_url_cleanup(u);
	return r;
}

static int
config_set_ca_file(struct parse *p, void *target, const char *value)
{
	struct config_memfault *m = target;
	struct stat st;
	int fd;

	if (!config_check_path(p, "ca_file", value, PATH_MAX - 1))
		return -1;
	/* Checked now so a typo is found by --check-config, not at the first TLS handshake. */
	fd = open(value, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		config_error(p, p->lineno, "ca_file = %s: cannot open: %s", value, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		config_error(p, p->lineno,
		    "ca_file = %s: not a regular file; name a PEM file of CA certificates", value);
		close(fd);
		return -1;
	}
	close(fd);
	config_replace(p, &m->ca_file, value);
	return 0;
}

static bool
config_is_hostname(const char *h, size_t len)
{
	size_t label = 0, i;

	if (len == 0 || len > 253)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)h[i];

		if (c == '.') {
			if (label == 0 || h[i - 1] == '-')
				return false;
			label = 0;
		} else if (isalnum(c) || (c == '-' && label > 0)) {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return label > 0 && h[len - 1] != '-';
}

/* HOST:PORT, with IPv6 literals in brackets. Sets the tcp part of link. */
static int
config_set_hostport(struct parse *p, struct config_link *link, const char *key, const char *value)
{
	const char *host = value, *colon;
	struct in6_addr a6;
	struct in_addr a4;
	uint64_t port;
	size_t len;
	char buf[256];

	if (value[0] == '[') {
		colon = strchr(value, ']');
		if (colon == NULL || colon[1] != ':')
			goto bad;
		host = value + 1;
		len = (size_t)(colon - host);
		colon++;
	} else {
		colon = strrchr(value, ':');
		if (colon == NULL)
			goto bad;
		len = (size_t)(colon - value);
		if (memchr(value, ':', len) != NULL) {
			config_error(p, p->lineno,
			    "%s = %s: put an IPv6 address in brackets, e.g. [::1]:7000", key,
			    value);
			return -1;
		}
	}
	if (len == 0) {
		config_error(p, p->lineno,
		    "%s = %s: no host; use e.g. 127.0.0.1:7000, or 0.0.0.0:7000 or [::]:7000 for "
		    "every address",
		    key, value);
		return -1;
	}
	if (len >= sizeof(buf))
		goto bad;
	memcpy(buf, host, len);
	buf[len] = '\0';
	if (value[0] == '[') {
		if (inet_pton(AF_INET6, buf, &a6) != 1) {
			config_error(
			    p, p->lineno, "%s = %s: [%s] is not an IPv6 address", key, value, buf);
			return -1;
		}
	} else if (strspn(buf, "0123456789.") == len) {
		if (inet_pton(AF_INET, buf, &a4) != 1) {
			config_error(
			    p, p->lineno, "%s = %s: %s is not an IPv4 address", key, value, buf);
			return -1;
		}
	} else if (!config_is_hostname(buf, len)) {
		config_error(
		    p, p->lineno, "%s = %s: %s is not a host name or address", key, value, buf);
		return -1;
	}
	if (config_parse_uint(colon + 1, 1, 65535, &port) < 0) {
		config_error(
		    p, p->lineno, "%s = %s: the port must be a number from 1 to 65535", key, value);
		return -1;
	}
	config_replace(p, &link->tcp.host, buf);
	link->tcp.port = (uint16_t)port;
	link->tcp.listen = strcmp(key, "listen") == 0;
	return 0;
bad:
	config_error(p, p->lineno,
	    "%s = %s: not HOST:PORT; use e.g. 192.0.2.7:7000, [2001:db8::7]:7000 or "
	    "serial-server.local:7000",
	    key, value);
	return -1;
}

static int
config_set_tcp_listen(struct parse *p, void *target, const char *value)
{
	return config_set_hostport(p, target, "listen", value);
}

static int
config_set_tcp_connect(struct parse *p, void *target, const char *value)
{
	return config_set_hostport(p, target, "connect", value);
}

static int
config_set_unix_path(struct parse *p, struct config_link *link, const char *key, const char *value)
{
	struct sockaddr_un sun;

	if (!config_check_path(p, key, value, sizeof(sun.sun_path) - 1))
		return -1;
	config_replace(p, &link->unix_sock.path, value);
	link->unix_sock.listen = strcmp(key, "listen") == 0;
	return 0;
}

static int
config_set_unix_listen(struct parse *p, void *target, const char *value)
{
	return config_set_unix_path(p, target, "listen", value);
}

static int
config_set_unix_connect(struct parse *p, void *target, const char *value)
{
	return config_set_unix_path(p, target, "connect", value);
}

static int
config_set_mode(struct parse *p, void *target, const char *value)
{
	struct config_link *link = target;
	size_t n = strspn(value, "01234567");
	unsigned long m = n > 0 && n <= 4 && value[n] == '\0' ? strtoul(value, NULL, 8) : ~0UL;

	if (m > 0777) {
		config_error(p, p->lineno,
		    "mode = %s: use octal permissions from 0000 to 0777, e.g. 0660", value);
		return -1;
	}
	link->unix_sock.mode = (mode_t)m;
	return 0;
}

static int
config_set_adapter(struct parse *p, void *target, const char *value)
{
	struct config_ble *ble = target;
	size_t n = strlen(value);

	if (n < 4 || n > 8 || strncmp(value, "hci", 3) != 0 ||
	    strspn(value + 3, "0123456789") != n - 3) {
		config_error(p, p->lineno,
		    "adapter = %s: not a Bluetooth adapter name; use hci0, hci1, ... (see "
		    "bluetoothctl list)",
		    value);
		return -1;
	}
	memcpy(ble->adapter, value, n + 1);
	return 0;
}

static bool
config_parse_bdaddr(const char *s, size_t len, char *out)
{
	size_t i;

	if (len != CONFIG_ADDR_LEN)
		return false;
	for (i = 0; i < len; i++) {
		if (i % 3 == 2 ? s[i] != ':' : !isxdigit((unsigned char)s[i]))
			return false;
		out[i] = (char)toupper((unsigned char)s[i]);
	}
	out[len] = '\0';
	return true;
}

static int
config_set_allow(struct parse *p, void *target, const char *value)
{
	struct config_ble *ble = target;
	char addr[CONFIG_ADDR_LEN + 1];
	const char *s = value;
	size_t len, i;

	for (;;) {
		s += strspn(s, ", \t");
		if (*s == '\0')
			return 0;
		len = strcspn(s, ", \t");
		if (!config_parse_bdaddr(s, len, addr)) {
			config_error(p, p->lineno,
			    "allow: '%.*s' is not a Bluetooth address; use the form "
			    "AA:BB:CC:DD:EE:FF, separated by commas or spaces",
			    (int)(len > 40 ? 40 : len), s);
			return -1;
		}
		for (i = 0; i < ble->n_allow; i++)
			if (strcmp(ble->allow[i], addr) == 0)
				break;
		if (i == ble->n_allow) {
			if (ble->n_allow == CONFIG_BLE_ALLOW_MAX) {
				config_error(p, p->lineno, "allow: more than %d addresses",
				    CONFIG_BLE_ALLOW_MAX);
				return -1;
			}
			memcpy(ble->allow[ble->n_allow++], addr, sizeof(addr));
		}
		s += len;
	}
}

static int
config_set_name_prefix(struct parse *p, void *target, const char *value)
{
	struct config_ble *ble = target;

	if (strlen(value) > CONFIG_NAME_PREFIX_MAX) {
		config_error(p, p->lineno,
		    "name_prefix: longer than %d bytes, the longest name a Bluetooth device can "
		    "have",
		    CONFIG_NAME_PREFIX_MAX);
		return -1;
	}
	config_replace(p, &ble->name_prefix, value);
	return 0;
}

static int
config_set_psm(struct parse *p, void *target, const char *value)
{
	struct config_ble *ble = target;
	unsigned long v = 0;
	char *end = NULL;

	if (isdigit((unsigned char)value[0])) {
		errno = 0;
		v = strtoul(
		    value, &end, value[0] == '0' && (value[1] == 'x' || value[1] == 'X') ? 16 : 10);
	}
	if (end == NULL || *end != '\0' || errno != 0 || (v != 0 && (v < 0x80 || v > 0xff))) {
		config_error(p, p->lineno,
		    "l2cap_psm = %s: use 0 (read the PSM from the device) or a dynamic LE PSM from "
		    "128 to 255 (0x80 to 0xff)",
		    value);
		return -1;
	}
	ble->l2cap_psm = (uint16_t)v;
	return 0;
}

static int
config_set_group(struct parse *p, void *target, const char *value)
{
	struct config_dbus *dbus = target;
	size_t n = strlen(value);

	/* What useradd/systemd accept, kept portable: no leading digit or '-'. */
	if (n > 31 || (!isalpha((unsigned char)value[0]) && value[0] != '_') ||
	    strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
		n) {
		config_error(p, p->lineno,
		    "control_group = %s: not a group name; use up to 31 letters, digits, '_', '.' "
		    "or '-', starting with a letter",
		    value);
		return -1;
	}
	config_replace(p, &dbus->control_group, value);
	return 0;
}

/* ---- section and key tables ---- */

/* clang-format off */
#define FIELD(st, m)	.offset = offsetof(st, m), .size = sizeof(((st *)0)->m)
#define PATH(k, st, m)	{.name = (k), .type = CONFIG_KEY_PATH, FIELD(st, m)}
#define UINT(k, st, m, lo, hi) \
	{.name = (k), .type = CONFIG_KEY_UINT, FIELD(st, m), .min = (lo), .max = (hi)}
#define DURATION(k, st, m, lo, hi) \
	{.name = (k), .type = CONFIG_KEY_DURATION, FIELD(st, m), .min = (lo), .max = (hi)}
#define SIZE(k, st, m, lo, hi) \
	{.name = (k), .type = CONFIG_KEY_SIZE, FIELD(st, m), .min = (lo), .max = (hi)}
#define BOOL(k, st, m)	{.name = (k), .type = CONFIG_KEY_BOOL, FIELD(st, m)}
#define ENUM(k, st, m, n) {.name = (k), .type = CONFIG_KEY_ENUM, FIELD(st, m), .names = (n)}
#define CUSTOM(k, fn)	{.name = (k), .type = CONFIG_KEY_CUSTOM, .set = (fn)}
#define LIST(k, fn)	{.name = (k), .type = CONFIG_KEY_CUSTOM, .set = (fn), .repeat = true}
#define MAX_FRAME	UINT("max_frame", struct config_link, max_frame, 64, FRAME_MSG_MAX)
#define SECTION(n, k, named, keys) {(n), (k), (named), (keys), sizeof(keys) / sizeof((keys)[0])}
/* clang-format on */

static const char *const config_flow_names[] = {"none", "rtscts", NULL};
static const char *const config_ble_transport_names[] = {"auto", "gatt", "l2cap", NULL};
static const char *const config_bus_names[] = {"system", "session", "none", NULL};

static const struct config_key config_general_keys[] = {
    PATH("state_dir", struct config_general, state_dir),
    PATH("cache_dir", struct config_general, cache_dir),
    SIZE("cache_max", struct config_general, cache_max, MIB, 16 * TIB),
    UINT("max_transfers", struct config_general, max_transfers, 1, 1024),
    SIZE("session_memory", struct config_general, session_memory, 16 * KIB, 64 * MIB),
    CUSTOM("log_level", config_set_log_level),
};

static const struct config_key config_memfault_keys[] = {
    CUSTOM("project_key", config_set_project_key),
    CUSTOM("project_key_file", config_set_project_key_file),
    CUSTOM("base_url", config_set_base_url),
    BOOL("allow_insecure_http", struct config_memfault, allow_insecure_http),
    CUSTOM("ca_file", config_set_ca_file),
    CUSTOM("proxy", config_set_proxy),
    DURATION("request_timeout", struct config_memfault, request_timeout_s, 1, 10 * MINUTE),
    DURATION("answer_cache", struct config_memfault, answer_cache_s, 0, 30 * DAY),
    DURATION("url_validity", struct config_memfault, url_validity_s, MINUTE, 7 * DAY),
};

static const struct config_key config_uart_keys[] = {
    PATH("device", struct config_link, uart.device),
    UINT("baud", struct config_link, uart.baud, 50, 4000000),
    ENUM("flow_control", struct config_link, uart.flow_control, config_flow_names),
    MAX_FRAME,
};

static const struct config_key config_tcp_keys[] = {
    CUSTOM("listen", config_set_tcp_listen),
    CUSTOM("connect", config_set_tcp_connect),
    UINT("max_connections", struct config_link, tcp.max_connections, 1, 1024),
    MAX_FRAME,
};

static const struct config_key config_unix_keys[] = {
    CUSTOM("listen", config_set_unix_listen),
    CUSTOM("connect", config_set_unix_connect),
    CUSTOM("mode", config_set_mode),
    UINT("max_connections", struct config_link, unix_sock.max_connections, 1, 1024),
    MAX_FRAME,
};

static const struct config_key config_ble_keys[] = {
    BOOL("enabled", struct config_ble, enabled),
    CUSTOM("adapter", config_set_adapter),
    ENUM("transport", struct config_ble, transport, config_ble_transport_names),
    LIST("allow", config_set_allow),
    CUSTOM("name_prefix", config_set_name_prefix),
    UINT("max_connections", struct config_ble, max_connections, 1, 16),
    DURATION("scan_interval", struct config_ble, scan_interval_s, 1, HOUR),
    CUSTOM("l2cap_psm", config_set_psm),
};

static const struct config_key config_dbus_keys[] = {
    ENUM("bus", struct config_dbus, bus, config_bus_names),
    CUSTOM("control_group", config_set_group),
};

static const struct config_section_type config_sections[] = {
    SECTION("general", CONFIG_SECTION_GENERAL, false, config_general_keys),
    SECTION("memfault", CONFIG_SECTION_MEMFAULT, false, config_memfault_keys),
    SECTION("uart", CONFIG_SECTION_UART, true, config_uart_keys),
    SECTION("tcp", CONFIG_SECTION_TCP, true, config_tcp_keys),
    SECTION("unix", CONFIG_SECTION_UNIX, true, config_unix_keys),
    SECTION("ble", CONFIG_SECTION_BLE, false, config_ble_keys),
    SECTION("dbus", CONFIG_SECTION_DBUS, false, config_dbus_keys),
};

_Static_assert(sizeof(enum config_flow_control) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum config_ble_transport) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum config_bus) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(config_memfault_keys) / sizeof(config_memfault_keys[0]) <= CONFIG_KEYS_MAX,
    "raise CONFIG_KEYS_MAX");
_Static_assert(sizeof(config_ble_keys) / sizeof(config_ble_keys[0]) <= CONFIG_KEYS_MAX,
    "raise CONFIG_KEYS_MAX");

static const struct config_section_type *
config_section_type(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(config_sections) / sizeof(config_sections[0]); i++)
		if (strlen(config_sections[i].name) == len &&
		    strncmp(config_sections[i].name, name, len) == 0)
			return &config_sections[i];
	return NULL;
}

/* The section instance of a given kind (for singletons), or NULL if the file has none. */
static struct config_section *
config_find_section(struct parse *p, enum config_section_kind kind)
{
	size_t i;

	for (i = 0; i < p->n_sections; i++)
		if (p->sections[i].type->kind == kind)
			return &p->sections[i];
	return NULL;
}

/* Where key was set in section s, or 0 if it was not (or s is NULL). */
static unsigned
config_key_line(const struct config_section *s, const char *key)
{
	size_t i;

	if (s == NULL)
		return 0;
	for (i = 0; i < s->type->n_keys; i++)
		if (strcmp(s->type->keys[i].name, key) == 0)
			return s->key_line[i];
	return 0;
}

static const char *
config_link_label(const struct config_link *l, char *buf, size_t len)
{
	snprintf(buf, len, "[%s \"%s\"]", config_link_kind_names[l->kind], l->name);
	return buf;
}

static bool
config_link_name_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > CONFIG_LINK_NAME_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

static struct config_link *
config_new_link(struct parse *p, const struct config_section_type *t, const char *name, size_t len)
{
	struct config_link *l = calloc(1, sizeof(*l));

	if (l == NULL) {
		config_oom(p);
		return NULL;
	}
	memcpy(l->name, name, len);
	l->max_frame = FRAME_MSG_MAX;
	switch (t->kind) {
	case CONFIG_SECTION_UART:
		l->kind = CONFIG_LINK_UART;
		l->uart.baud = 115200;
		l->uart.flow_control = CONFIG_FLOW_CONTROL_NONE;
		break;
	case CONFIG_SECTION_TCP:
		l->kind = CONFIG_LINK_TCP;
		l->tcp.max_connections = 16;
		break;
	case CONFIG_SECTION_UNIX:
		l->kind = CONFIG_LINK_UNIX;
		l->unix_sock.mode = 0660;
		l->unix_sock.max_connections = 16;
		break;
	case CONFIG_SECTION_GENERAL:
	case CONFIG_SECTION_MEMFAULT:
	case CONFIG_SECTION_BLE:
	case CONFIG_SECTION_DBUS:
		break;
	}
	TAILQ_INSERT_TAIL(&p->cfg->links, l, entry);
	p->cfg->n_links++;
	return l;
}

static void *
config_section_target(struct config *cfg, enum config_section_kind kind)
{
	switch (kind) {
	case CONFIG_SECTION_GENERAL:
		return &cfg->general;
	case CONFIG_SECTION_MEMFAULT:
		return &cfg->memfault;
	case CONFIG_SECTION_BLE:
		return &cfg->ble;
	case CONFIG_SECTION_DBUS:
		return &cfg->dbus;
	case CONFIG_SECTION_UART:
	case CONFIG_SECTION_TCP:
	case CONFIG_SECTION_UNIX:
		break;
	}
	return NULL;
}

/* Opens a section for [kind] or [kind "name"] after checking it may appear here. */
static void
config_open_section(
    struct parse *p, const char *kind, size_t kind_len, const char *name, size_t name_len)
{
	const struct config_section_type *t = config_section_type(kind, kind_len);
	struct config_section *s;
	struct config_link *l;
	char label[64];
	size_t i;

	if (t == NULL) {
		config_error(p, p->lineno,
		    "unknown section [%.*s]; known sections are [general], [memfault], [uart "
		    "\"NAME\"], [tcp \"NAME\"], [unix \"NAME\"], [ble] and [dbus]",
		    (int)(kind_len > 40 ? 40 : kind_len), kind);
		return;
	}
	if (t->named && name == NULL) {
		config_error(
		    p, p->lineno, "section [%s] needs a name, e.g. [%s \"gw1\"]", t->name, t->name);
		return;
	}
	if (!t->named && name != NULL) {
		config_error(
		    p, p->lineno, "section [%s] takes no name; write [%s]", t->name, t->name);
		return;
	}
	if (name != NULL && !config_link_name_valid(name, name_len)) {
		config_error(p, p->lineno,
		    "link name \"%.*s\" is invalid; use 1 to %d letters, digits, '-', '_' or '.'",
		    (int)(name_len > 40 ? 40 : name_len), name, CONFIG_LINK_NAME_MAX);
		return;
	}
	if (name != NULL && name_len == 3 && memcmp(name, "ble", 3) == 0) {
		/* The D-Bus API names the Bluetooth link "ble" (/io/otagw/link/ble). */
		config_error(p, p->lineno,
		    "link name \"ble\" is reserved for the [ble] section; choose another name");
		return;
	}
	for (i = 0; i < p->n_sections; i++) {
		s = &p->sections[i];
		if (!t->named && s->type == t) {
			config_error(p, p->lineno,
			    "duplicate section [%s] (first on line %u); merge them", t->name,
			    s->line);
			return;
		}
		if (name != NULL && s->type->named) {
			l = s->target;
			if (strlen(l->name) == name_len && memcmp(l->name, name, name_len) == 0) {
				config_error(p, p->lineno,
				    "link name \"%s\" is already used by %s on line %u; every link "
				    "needs its own name",
				    l->name, config_link_label(l, label, sizeof(label)), s->line);
				return;
			}
		}
	}
	if (t->named && p->cfg->n_links == CONFIG_LINKS_MAX) {
		config_error(p, p->lineno, "too many links (at most %d)", CONFIG_LINKS_MAX);
		return;
	}
	s = &p->sections[p->n_sections];
	memset(s, 0, sizeof(*s));
	s->type = t;
	s->line = p->lineno;
	s->target = t->named ? (void *)config_new_link(p, t, name, name_len)
			     : config_section_target(p->cfg, t->kind);
	if (s->target == NULL)
		return;
	p->n_sections++;
	p->sec = s;
	p->sec_bad = false;
	p->bad_headers--;
}

/* Parses a "[kind]" or "[kind "name"]" line (leading blanks already gone). */
static void
config_header(struct parse *p, const char *line)
{
	const char *s = line + 1, *kind, *name = NULL;
	size_t kind_len, name_len = 0;

	p->sec = NULL;
	p->sec_bad = true;
	p->bad_headers++;
	s += strspn(s, " \t");
	kind = s;
	while (isalnum((unsigned char)*s) || *s == '_')
		s++;
	kind_len = (size_t)(s - kind);
	s += strspn(s, " \t");
	if (*s == '"') {
		name = s + 1;
		s = strchr(name, '"');
		if (s == NULL) {
			config_error(p, p->lineno, "section name has no closing '\"'");
			return;
		}
		name_len = (size_t)(s - name);
		s++;
		s += strspn(s, " \t");
	}
	if (*s != ']') {
		config_error(p, p->lineno,
		    "malformed section header; write [section] or [section \"NAME\"]");
		return;
	}
	s++;
	s += strspn(s, " \t\r");
	if (*s != '\0' && *s != ';' && *s != '#') {
		config_error(p, p->lineno, "unexpected text after ']'");
		return;
	}
	if (kind_len == 0) {
		config_error(p, p->lineno, "section header without a section name");
		return;
	}
	config_open_section(p, kind, kind_len, name, name_len);
}

/* Called before each line is read and once at the end: a line that looked like "key = value"
 * but produced no inih callback had no '=' (or only a comment). */
static void
config_line_done(struct parse *p)
{
	if (p->expect_kv && !p->kv_seen)
		config_error(
		    p, p->lineno, "expected 'key = value', a [section] header or a comment");
	p->expect_kv = false;
	p->kv_seen = false;
}

/* inih's reader: hands it one line at a time (see the file comment). */
static char *
config_read_line(char *str, int num, void *stream)
{
	struct parse *p = stream;
	size_t cap = num > 2 ? (size_t)num - 2 : 0, n = 0, skip = 0, i;
	bool too_long = false;
	int c = 0;

	config_line_done(p);
	while ((c = getc(p->f)) != EOF && c != '\n') {
		if (n < cap)
			str[n++] = (char)c;
		else
			too_long = true;
	}
	if (c == EOF && n == 0 && !too_long) {
		if (ferror(p->f))
			p->read_errno = errno != 0 ? errno : EIO;
		return NULL;
	}
	p->lineno++;
	if (n > 0 && str[n - 1] == '\r') /* CRLF files */
		n--;
	str[n] = '\0';
	if (too_long) {
		config_error(p, p->lineno, "line longer than %zu characters", cap);
		goto handled;
	}
	for (i = 0; i < n; i++) {
		unsigned char b = (unsigned char)str[i];

		if ((b < 0x20 && b != '\t') || b == 0x7f) {
			config_error(p, p->lineno,
			    "control character 0x%02x; the file must be plain text", b);
			goto handled;
		}
	}
	if (p->lineno == 1 && n >= 3 && memcmp(str, "\xef\xbb\xbf", 3) == 0)
		skip = 3; /* UTF-8 byte order mark */
	skip += strspn(str + skip, " \t");
	memmove(str, str + skip, n - skip + 1);
	n -= skip;
	if (str[0] == '[') {
		config_header(p, str);
		goto handled;
	}
	p->expect_kv = str[0] != '\0' && str[0] != ';' && str[0] != '#';
	str[n] = '\n';
	str[n + 1] = '\0';
	return str;
handled:
	/* inih sees an empty line for whatever this reader dealt with itself. */
	str[0] = '\n';
	str[1] = '\0';
	return str;
}

static int
config_ini_handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	const struct config_section_type *t;
	char list[256];
	size_t i, used = 0;

	(void)section; /* the reader tracks sections itself */
	p->kv_seen = true;
	if (p->sec == NULL) {
		if (!p->sec_bad)
			config_error(p, p->lineno,
			    "'%s' is outside any section; put it under the [section] it belongs to",
			    name);
		return 1;
	}
	if (name[0] == '\0') {
		config_error(p, p->lineno, "missing key name before '='");
		return 1;
	}
	t = p->sec->type;
	for (i = 0; i < t->n_keys; i++)
		if (strcmp(t->keys[i].name, name) == 0)
			break;
	if (i == t->n_keys) {
		list[0] = '\0';
		for (i = 0; i < t->n_keys && used < sizeof(list); i++) {
			int r = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "",
			    t->keys[i].name);

			if (r > 0)
				used += (size_t)r;
		}
		config_error(
		    p, p->lineno, "unknown key '%s' in [%s]; known keys: %s", name, t->name, list);
		return 1;
	}
	if (p->sec->key_line[i] != 0 && !t->keys[i].repeat) {
		config_error(
		    p, p->lineno, "%s is already set on line %u", name, p->sec->key_line[i]);
		return 1;
	}
	p->sec->key_line[i] = p->lineno;
	if (value[0] == '\0') {
		config_error(
		    p, p->lineno, "%s has no value; remove the line to use the default", name);
		return 1;
	}
	config_set_typed(p, &t->keys[i], p->sec->target, value);
	return 1;
}

/* Reads a project key from path. check_mode: refuse a file others can read. */
static void
config_read_key(struct parse *p, const char *path, unsigned line, const char *what, bool check_mode)
{
	char buf[CONFIG_KEY_FILE_MAX + 1], *s;
	struct stat st;
	size_t n = 0, len;
	ssize_t r;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		config_error(p, line, "%s%s: cannot open: %s", what, path, strerror(errno));
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		config_error(p, line, "%s%s: not a regular file", what, path);
		goto out;
	}
	if (check_mode && (st.st_mode & (S_IRGRP | S_IROTH)) != 0) {
		config_error(p, line,
		    "%s%s: mode %04o lets other users read the Memfault project key; run chmod 600 "
		    "%s",
		    what, path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	while (n < sizeof(buf) && (r = read(fd, buf + n, sizeof(buf) - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			config_error(p, line, "%s%s: cannot read: %s", what, path, strerror(errno));
			goto out;
		}
		n += (size_t)r;
	}
	if (n > CONFIG_KEY_FILE_MAX) {
		config_error(p, line,
		    "%s%s: too large to hold a project key; it should hold only the %d hexadecimal "
		    "digits",
		    what, path, CONFIG_PROJECT_KEY_LEN);
		goto out;
	}
	buf[n] = '\0';
	s = buf + strspn(buf, " \t\r\n");
	len = strlen(s);
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		s[--len] = '\0';
	if (len == 0 && !check_mode) {
		/* The unit's SetCredential= fallback: the operator has not installed a key. */
		config_error(p, line,
		    "no Memfault project key: the systemd credential 'project-key' is empty; put "
		    "the key in /etc/otagw/project-key (chmod 600) and restart otagwd");
		goto out;
	}
	if (!config_is_key(s)) {
		config_error(p, line,
		    "%s%s: does not hold a project key (%d hexadecimal digits and nothing else)",
		    what, path, CONFIG_PROJECT_KEY_LEN);
		goto out;
	}
	memcpy(p->cfg->memfault.project_key, s, CONFIG_PROJECT_KEY_LEN + 1);
	config_replace(p, &p->cfg->memfault.project_key_source, path);
out:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
}

static void
config_check_key(struct parse *p)
{
	struct config_section *s = config_find_section(p, CONFIG_SECTION_MEMFAULT);
	unsigned key_line = config_key_line(s, "project_key");
	unsigned file_line = config_key_line(s, "project_key_file");
	const char *creds;
	char path[PATH_MAX];

	if (key_line != 0 && file_line != 0) {
		config_error(p, file_line, "set either project_key or project_key_file, not both");
	} else if (key_line != 0) {
		if ((p->st.st_mode & (S_IRGRP | S_IROTH)) != 0)
			config_error(p, key_line,
			    "project_key: %s has mode %04o, so other users can read the Memfault "
			    "project key; run chmod 600 %s, or move the key to a file named by "
			    "project_key_file",
			    p->path, (unsigned)(p->st.st_mode & 07777), p->path);
	} else if (file_line != 0) {
		if (p->key_file != NULL)
			config_read_key(p, p->key_file, file_line, "project_key_file = ", true);
	} else if ((creds = getenv("CREDENTIALS_DIRECTORY")) != NULL && creds[0] == '/') {
		/* systemd makes the credentials directory readable by this service alone, and
		 * picks the file's mode itself: no mode check. */
		if ((size_t)snprintf(path, sizeof(path), "%s/project-key", creds) >= sizeof(path))
			config_error(p, 0, "$CREDENTIALS_DIRECTORY is too long");
		else
			config_read_key(p, path, 0, "credential ", false);
	} else {
		config_error(p, 0,
		    "no Memfault project key: set project_key_file = PATH in [memfault], or pass "
		    "the key as the systemd credential 'project-key' "
		    "(LoadCredential=project-key:/etc/otagw/project-key)");
	}
}

/* The key that names what a link uses: its device, or its address. */
static const char *
config_link_addr_key(const struct config_link *l)
{
	switch (l->kind) {
	case CONFIG_LINK_UART:
		return "device";
	case CONFIG_LINK_TCP:
		return l->tcp.listen ? "listen" : "connect";
	case CONFIG_LINK_UNIX:
		return l->unix_sock.listen ? "listen" : "connect";
	}
	return "";
}

/* What a link uses, as written: a device path, HOST:PORT or a socket path. */
static const char *
config_link_addr(const struct config_link *l, char *buf, size_t len)
{
	switch (l->kind) {
	case CONFIG_LINK_UART:
		return l->uart.device;
	case CONFIG_LINK_TCP:
		snprintf(buf, len, strchr(l->tcp.host, ':') ? "[%s]:%u" : "%s:%u", l->tcp.host,
		    l->tcp.port);
		return buf;
	case CONFIG_LINK_UNIX:
		return l->unix_sock.path;
	}
	return "";
}

static void
config_check_links(struct parse *p)
{
	char label[64], other[64], addr[PATH_MAX + 16];
	size_t i, j;

	for (i = 0; i < p->n_sections; i++) {
		const struct config_section *s = &p->sections[i];
		const struct config_link *l = s->target;
		unsigned listen, connect;

		if (!s->type->named)
			continue;
		config_link_label(l, label, sizeof(label));
		listen = config_key_line(s, "listen");
		connect = config_key_line(s, "connect");
		switch (l->kind) {
		case CONFIG_LINK_UART:
			if (config_key_line(s, "device") == 0)
				config_error(p, s->line,
				    "%s: device is required, e.g. device = "
				    "/dev/serial/by-id/usb-FTDI_...-if00-port0",
				    label);
			break;
		case CONFIG_LINK_TCP:
		case CONFIG_LINK_UNIX:
			if (listen == 0 && connect == 0)
				config_error(p, s->line, "%s: set listen = %s or connect = %s",
				    label, l->kind == CONFIG_LINK_TCP ? "HOST:PORT" : "PATH",
				    l->kind == CONFIG_LINK_TCP ? "HOST:PORT" : "PATH");
			else if (listen != 0 && connect != 0)
				config_error(p, listen > connect ? listen : connect,
				    "%s: set either listen or connect, not both (a link listens "
				    "for devices or connects to one)",
				    label);
			else if (connect != 0 && config_key_line(s, "max_connections") != 0)
				config_error(p, config_key_line(s, "max_connections"),
				    "%s: max_connections applies only to a link that listens",
				    label);
			else if (connect != 0 && config_key_line(s, "mode") != 0)
				config_error(p, config_key_line(s, "mode"),
				    "%s: mode applies only to a link that listens", label);
			break;
		}
		/* Two links on one device, address or socket would fight over it. */
		for (j = 0; j < i; j++) {
			const struct config_section *t = &p->sections[j];
			const struct config_link *m = t->target;
			bool same = false;

			if (!t->type->named || m->kind != l->kind)
				continue;
			switch (l->kind) {
			case CONFIG_LINK_UART:
				same = l->uart.device != NULL && m->uart.device != NULL &&
				       strcmp(l->uart.device, m->uart.device) == 0;
				break;
			case CONFIG_LINK_TCP:
				same = l->tcp.host != NULL && m->tcp.host != NULL &&
				       l->tcp.listen == m->tcp.listen &&
				       l->tcp.port == m->tcp.port &&
				       strcmp(l->tcp.host, m->tcp.host) == 0;
				break;
			case CONFIG_LINK_UNIX:
				same = l->unix_sock.path != NULL && m->unix_sock.path != NULL &&
				       strcmp(l->unix_sock.path, m->unix_sock.path) == 0;
				break;
			}
			if (same) {
				config_error(p, config_key_line(s, config_link_addr_key(l)),
				    "%s: %s is already used by %s on line %u", label,
				    config_link_addr(l, addr, sizeof(addr)),
				    config_link_label(m, other, sizeof(other)),
				    config_key_line(t, config_link_addr_key(m)));
				break;
			}
		}
	}
	/* After a bad header the links may be there, just unreadable. */
	if (p->cfg->n_links == 0 && !p->cfg->ble.enabled && p->bad_headers == 0)
		config_error(p, 0,
		    "no links: add a [uart \"NAME\"], [tcp \"NAME\"] or [unix \"NAME\"] section, "
		    "or set enabled = yes in [ble]");
}

/* What involves more than one key, or files the keys name. */
static void
config_check(struct parse *p)
{
	struct config_section *mf = config_find_section(p, CONFIG_SECTION_MEMFAULT);
	const struct config_memfault *m = &p->cfg->memfault;

	config_check_key(p);
	if (strncmp(m->base_url, "http://", 7) == 0 && !m->allow_insecure_http)
		config_error(p, config_key_line(mf, "base_url"),
		    "base_url = %s: plain http would send the project key unencrypted; use https "
		    "(allow_insecure_http = yes is for tests only)",
		    m->base_url);
	config_check_links(p);
}

static void
config_defaults(struct parse *p, struct config *cfg)
{
	TAILQ_INIT(&cfg->links);
	cfg->path = config_strdup(p, p->path);
	cfg->general.state_dir = config_strdup(p, "/var/lib/otagw");
	cfg->general.cache_dir = config_strdup(p, "/var/cache/otagw");
	cfg->general.cache_max = 512 * MIB;
	cfg->general.max_transfers = 8;
	cfg->general.session_memory = 64 * KIB;
	cfg->general.log_level = LOG_LEVEL_INFO;
	cfg->memfault.base_url = config_strdup(p, "https://device.memfault.com");
	cfg->memfault.request_timeout_s = 30;
	cfg->memfault.answer_cache_s = HOUR;
	cfg->memfault.url_validity_s = 6 * HOUR;
	memcpy(cfg->ble.adapter, "hci0", 5);
	cfg->ble.transport = CONFIG_BLE_TRANSPORT_AUTO;
	cfg->ble.max_connections = 2;
	cfg->ble.scan_interval_s = 10;
	cfg->dbus.bus = CONFIG_BUS_SYSTEM;
	cfg->dbus.control_group = config_strdup(p, "otagw");
}

static int
config_open(struct parse *p)
{
	int fd, err;

	fd = open(p->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		err = errno;
		config_error(p, 0, "cannot open: %s", strerror(err));
		return -err;
	}
	if (fstat(fd, &p->st) < 0 || !S_ISREG(p->st.st_mode)) {
		config_error(p, 0, "not a regular file");
		close(fd);
		return -EINVAL;
	}
	if (p->st.st_size > CONFIG_FILE_MAX) {
		config_error(p, 0, "larger than %lld bytes; is this the configuration file?",
		    (long long)CONFIG_FILE_MAX);
		close(fd);
		return -EFBIG;
	}
	p->f = fdopen(fd, "r");
	if (p->f == NULL) {
		err = errno;
		close(fd);
		config_oom(p);
		return -err;
	}
	return 0;
}

int
config_load(const char *path, config_report_fn report, void *arg, struct config **out)
{
	struct parse *p;
	struct config *cfg;
	int r;

	p = calloc(1, sizeof(*p));
	cfg = calloc(1, sizeof(*cfg));
	if (p == NULL || cfg == NULL) {
		if (report != NULL)
			report(arg, "out of memory");
		free(p);
		free(cfg);
		return -ENOMEM;
	}
	p->path = path;
	p->report = report;
	p->arg = arg;
	p->cfg = cfg;
	config_defaults(p, cfg);

	r = config_open(p);
	if (r == 0) {
		r = ini_parse_stream(config_read_line, p, config_ini_handler, p);
		config_line_done(p);
		if (r == -2)
			config_oom(p);
		else if (r > 0 && p->errors == 0) /* the reader should have caught it */
			config_error(p, (unsigned)r, "syntax error");
		if (p->read_errno != 0)
			config_error(p, 0, "read error: %s", strerror(p->read_errno));
		config_check(p);
		(void)fclose(p->f); /* read only: a close error loses nothing */
		if (p->errors > CONFIG_ERRORS_MAX) {
			char msg[64];

			snprintf(msg, sizeof(msg), "%u more errors not shown",
			    p->errors - CONFIG_ERRORS_MAX);
			p->errors = 0; /* let this one through */
			config_error(p, 0, "%s", msg);
			p->errors = CONFIG_ERRORS_MAX + 1;
		}
		r = p->oom ? -ENOMEM : p->errors > 0 ? -EINVAL : 0;
	}
	free(p->key_file);
	free(p);
	if (r < 0) {
		config_free(cfg);
		return r;
	}
	*out = cfg;
	return 0;
}

void
config_free(struct config *cfg)
{
	struct config_link *l;

	if (cfg == NULL)
		return;
	while ((l = TAILQ_FIRST(&cfg->links)) != NULL) {
		TAILQ_REMOVE(&cfg->links, l, entry);
		switch (l->kind) {
		case CONFIG_LINK_UART:
			free(l->uart.device);
			break;
		case CONFIG_LINK_TCP:
			free(l->tcp.host);
			break;
		case CONFIG_LINK_UNIX:
			free(l->unix_sock.path);
			break;
		}
		free(l);
	}
	explicit_bzero(cfg->memfault.project_key, sizeof(cfg->memfault.project_key));
	free(cfg->memfault.project_key_source);
	free(cfg->memfault.base_url);
	free(cfg->memfault.ca_file);
	free(cfg->memfault.proxy);
	free(cfg->general.state_dir);
	free(cfg->general.cache_dir);
	free(cfg->ble.name_prefix);
	free(cfg->dbus.control_group);
	free(cfg->path);
	free(cfg);
}

const struct config_link *
config_find_link(const struct config *cfg, const char *name)
{
	const struct config_link *l;

	TAILQ_FOREACH(l, &cfg->links, entry)
	if (strcmp(l->name, name) == 0)
		return l;
	return NULL;
}

const char *
config_link_kind_name(enum config_link_kind kind)
{
	return config_link_kind_names[kind];
}
