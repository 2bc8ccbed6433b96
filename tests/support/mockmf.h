/* A local HTTPS stand-in for Memfault's device API (GET /api/v0/releases/latest) and its CDN, on
 * libevent's evhttp with OpenSSL, for tests and the demo. It makes its own test CA and server
 * certificates at start, listens on 127.0.0.1 (ephemeral port by default), answers like Memfault
 * from the releases it is given, can be scripted per request with canned responses or modes
 * (errors, Retry-After, gzip, chunked, redirects, ignored Range, cut connections, slow drips),
 * and keeps a log of every request for tests to assert on. Runs on the caller's event_base. */
#ifndef OTAGW_MOCKMF_H
#define OTAGW_MOCKMF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

struct event_base;
struct mockmf;

#define MOCKMF_LATEST_PATH "/api/v0/releases/latest"
#define MOCKMF_CDN_PREFIX  "/cdn/"

/* Which server certificate the listener presents. Both are signed by the same test CA. */
enum mockmf_cert {
	MOCKMF_CERT_GOOD,       /* SAN IP:127.0.0.1, DNS:localhost */
	MOCKMF_CERT_WRONG_HOST, /* SAN DNS:wrong.invalid only: clients must refuse it */
};

struct mockmf_options {
	const char *dir;     /* where ca.pem is written; NULL: a fresh directory under $TMPDIR
			      * (or /tmp), removed by mockmf_free() */
	const char *address; /* NULL: 127.0.0.1 */
	uint16_t port;       /* 0: ephemeral */
	enum mockmf_cert cert;
	const char *project_key; /* required; requests without it get 403 */
	FILE *log;               /* if set, one line per request is written here */
};

/* Starts the server on base. Returns NULL on failure (bind, certificate generation, files); a
 * reason is written to stderr. */
struct mockmf *mockmf_new(struct event_base *base, const struct mockmf_options *opt);

/* Stops the server, closes every connection, removes the directory it created. Accepts NULL. */
void mockmf_free(struct mockmf *m);

uint16_t mockmf_port(const struct mockmf *m);
/* PEM file of the test CA, for the client's ca_file. */
const char *mockmf_ca_file(const struct mockmf *m);
/* "https://127.0.0.1:PORT": the base_url to configure. */
const char *mockmf_base_url(const struct mockmf *m);

/* Replaces the project key requests must carry (copied). Returns 0 or -ENOMEM. */
int mockmf_set_project_key(struct mockmf *m, const char *key);

/* Makes data (copied) downloadable at /cdn/<name> (signed URLs only, see mockmf_expire_urls()).
 * Returns 0, -EEXIST or -ENOMEM. */
int mockmf_add_payload(struct mockmf *m, const char *name, const void *data, size_t len);

/* One artifact of a release. Sizes and hashes are computed from the payload unless overridden
 * (to make the gateway see a wrong size or hash). */
struct mockmf_artifact {
	const char *payload;          /* a name given to mockmf_add_payload() */
	const char *hardware_version; /* NULL: the release's */
	const char *type;             /* NULL: "firmware" */
	const char *sha256;           /* lie about the SHA-256 (hex) */
	uint64_t file_size;           /* lie about the size (0: the payload's) */
	bool no_md5;                  /* leave md5 out (null) */
};

struct mockmf_release {
	const char *hardware_version;
	const char *software_type;
	const char *version;
	const char *display_name; /* NULL: "Release <version>" */
	const char *notes;        /* NULL: "" */
	bool is_delta;
	const char *const *devices; /* NULL-terminated serials that get it; NULL: every device */
	const char *payload;        /* shorthand for one firmware artifact (if n_artifacts == 0) */
	const struct mockmf_artifact *artifacts;
	size_t n_artifacts;
};

/* Adds a release; the latest endpoint answers with the last one added that matches the device's
 * hardware_version, software_type and serial. Returns 0, -ENOENT (unknown payload), -EINVAL. */
int mockmf_add_release(struct mockmf *m, const struct mockmf_release *r);

/* Modifiers of a response, canned or default. */
enum mockmf_flag {
	MOCKMF_GZIP = 1 << 0,         /* Content-Encoding: gzip (when the client accepts it) */
	MOCKMF_CHUNKED = 1 << 1,      /* Transfer-Encoding: chunked, no Content-Length */
	MOCKMF_IGNORE_RANGE = 1 << 2, /* answer 200 with the whole payload despite a Range */
};

/* A response for the next request(s) to one path. status 0 means "what the server would answer
 * anyway", with the modifiers applied; otherwise status, headers and body are sent as given. */
struct mockmf_response {
	int status;
	const char *headers;  /* extra header lines, "Name: value\n..." */
	const char *body;     /* NULL: empty */
	size_t body_len;      /* 0: strlen(body) */
	unsigned flags;       /* enum mockmf_flag */
	const char *redirect; /* answer 302 to this path on this server, keeping the query */
	size_t cut_after;     /* send only this many body bytes, then cut the connection */
	unsigned drip_ms;     /* send the body drip_bytes at a time every drip_ms */
	size_t drip_bytes;
	unsigned count; /* how many requests it answers: 0 means 1, UINT32_MAX forever */
};

/* Queues r (copied) for path (without query). Queued responses are used in order. */
int mockmf_push(struct mockmf *m, const char *path, const struct mockmf_response *r);
/* Drops what is queued for path (NULL: for every path). */
void mockmf_clear(struct mockmf *m, const char *path);

/* Writes a freshly signed CDN URL for payload name into buf, as the latest endpoint would hand
 * out. Returns 0, -ENOENT (unknown payload) or -ENAMETOOLONG. */
int mockmf_payload_url(struct mockmf *m, const char *name, char *buf, size_t bufsz);

/* Every CDN URL handed out so far answers 403 from now on, like a signed URL past its expiry;
 * later answers of the latest endpoint carry fresh URLs. */
void mockmf_expire_urls(struct mockmf *m);

/* What the server saw of one request. Strings are NULL when absent; params are decoded. */
struct mockmf_request {
	char *path;
	char *query;
	char *range;
	char *accept_encoding;
	char *accept;
	char *user_agent;
	bool key_ok; /* Memfault-Project-Key present and right */
	char *device_serial;
	char *hardware_version;
	char *software_type;
	char *current_version;
	int status;
};

size_t mockmf_log_count(const struct mockmf *m);
const struct mockmf_request *mockmf_log_get(const struct mockmf *m, size_t i);
/* Number of logged requests to path (without query). */
size_t mockmf_requests(const struct mockmf *m, const char *path);
void mockmf_log_clear(struct mockmf *m);

/* Formats t as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") into buf (>= 32 bytes). */
void mockmf_http_date(time_t t, char *buf, size_t bufsz);

/* Loads a scenario (JSON, see otagw-mockmf --help) into m: project key check aside, releases,
 * payload files (relative to the scenario's directory) and canned responses. Returns 0, or a
 * negative errno with a reason written to err. */
int mockmf_load_scenario(struct mockmf *m, const char *path, char *err, size_t errlen);

#endif
