/* The latest-release query and the classification of Memfault's answers (see memfault.h and the
 * status-code notes in docs: 200 update, 204 no update + memfault-reason, 400/401/403/404 config,
 * 429/503/529 Retry-After, 502/504 and network errors backoff, 500 no retry). */
#include "memfault.h"

#include "http.h"
#include "ident.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#define MEMFAULT_BODY_MAX_DEFAULT   (1u << 20)
#define MEMFAULT_TIMEOUT_DEFAULT    60
#define MEMFAULT_RETRY_AFTER_MAX    (24u * 3600)
#define MEMFAULT_SERVER_MESSAGE_MAX 120

struct memfault {
	struct http *http;
	char *base_url;
	char *key_header; /* "Memfault-Project-Key: ..." */
	char *config_path;
	char *key_source;
	bool allow_http;
	size_t body_max;
	uint64_t max_file_size;
	unsigned timeout_s;
	uint32_t retry_after_max_s;
	LIST_HEAD(, memfault_query) queries;
};

struct memfault_query {
	LIST_ENTRY(memfault_query) entry;
	struct memfault *mf;
	struct http_request *req;
	memfault_done_fn cb;
	void *userdata;
	bool in_callback;
	char serial[IDENT_SERIAL_MAX + 1];
	char hardware_version[IDENT_HW_MAX + 1];
	char software_type[IDENT_SWTYPE_MAX + 1];
};

static void memfault_msg(struct memfault_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
memfault_msg(struct memfault_result *res, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->message, sizeof(res->message), fmt, ap);
	va_end(ap);
}

static void
memfault_error(struct memfault_result *res, enum memfault_error e)
{
	res->outcome = MEMFAULT_OUTCOME_ERROR;
	res->error = e;
}

/* Keeps only printable ASCII of untrusted text (header values, server messages) for logs. */
static void
memfault_sanitize(const char *in, size_t in_len, char *out, size_t outsz)
{
	size_t i, n = 0;

	for (i = 0; i < in_len && in[i] != '\0' && n + 1 < outsz; i++)
		out[n++] = (in[i] >= 0x20 && in[i] < 0x7f) ? in[i] : '?';
	if (outsz > 0)
		out[n] = '\0';
}

/* The message of Memfault's error body {"error": {"message": "..."}}, if there is one. */
static void
memfault_server_message(const char *body, size_t len, char *out, size_t outsz)
{
	json_t *root, *msg;

	out[0] = '\0';
	if (body == NULL || len == 0)
		return;
	root = json_loadb(body, len, 0, NULL);
	msg = json_object_get(json_object_get(root, "error"), "message");
	if (json_is_string(msg))
		memfault_sanitize(json_string_value(msg), json_string_length(msg), out, outsz);
	json_decref(root);
}

static int
memfault_classify_200(const struct memfault *mf, const char *hw, const char *swtype,
    const char *body, size_t len, struct memfault_result *res)
{
	struct release_limits lim = {mf->max_file_size, mf->allow_http};
	struct release *rel = NULL;
	char err[256];
	int r;

	r = release_parse(body, len, &lim, &rel, err, sizeof(err));
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		memfault_error(res, MEMFAULT_ERROR_RESPONSE);
		memfault_msg(res, "Memfault's release answer is unusable: %s", err);
		return 0;
	}
	r = release_pick(rel, hw, swtype, &res->artifact, err, sizeof(err));
	if (r < 0) {
		release_free(rel);
		memfault_error(res, MEMFAULT_ERROR_RESPONSE);
		memfault_msg(res, "Memfault's release answer is unusable: %s", err);
		return 0;
	}
	res->body = malloc(len + 1);
	if (res->body == NULL) {
		release_free(rel);
		res->artifact = NULL;
		return -ENOMEM;
	}
	memcpy(res->body, body, len);
	res->body[len] = '\0';
	res->body_len = len;
	res->release = rel;
	res->outcome = MEMFAULT_OUTCOME_UPDATE;
	memfault_msg(res, "Memfault offers %s (%s, %llu bytes%s)", rel->version,
	    res->artifact->filename != NULL ? res->artifact->filename : "artifact",
	    (unsigned long long)res->artifact->file_size, rel->is_delta ? ", delta" : "");
	return 0;
}

static void
memfault_classify_transport(
    const struct memfault *mf, const struct http_result *hr, struct memfault_result *res)
{
	switch (hr->error) {
	case HTTP_ERROR_NONE:
		break;
	case HTTP_ERROR_DNS:
		memfault_error(res, MEMFAULT_ERROR_TRANSIENT);
		memfault_msg(res, "Cannot resolve the host of %s: %s", mf->base_url, hr->message);
		break;
	case HTTP_ERROR_CONNECT:
		memfault_error(res, MEMFAULT_ERROR_TRANSIENT);
		memfault_msg(res, "Cannot connect to %s: %s", mf->base_url, hr->message);
		break;
	case HTTP_ERROR_TIMEOUT:
		memfault_error(res, MEMFAULT_ERROR_TRANSIENT);
		memfault_msg(res, "Memfault did not answer in time: %s", hr->message);
		break;
	case HTTP_ERROR_CUT:
		memfault_error(res, MEMFAULT_ERROR_TRANSIENT);
		memfault_msg(res, "The connection to Memfault broke: %s", hr->message);
		break;
	case HTTP_ERROR_PROTOCOL:
		memfault_error(res, MEMFAULT_ERROR_TRANSIENT);
		memfault_msg(res, "Garbled answer from %s: %s", mf->base_url, hr->message);
		break;
	case HTTP_ERROR_TLS:
		memfault_error(res, MEMFAULT_ERROR_TLS);
		memfault_msg(res,
		    "TLS with %s failed (%s): check the system clock, and ca_file in %s if a proxy "
		    "or "
		    "private CA is in the way",
		    mf->base_url, hr->message, mf->config_path);
		break;
	case HTTP_ERROR_TOO_LARGE:
		memfault_error(res, MEMFAULT_ERROR_RESPONSE);
		memfault_msg(
		    res, "Memfault's answer is larger than %zu bytes; not used", mf->body_max);
		break;
	case HTTP_ERROR_ABORTED:
	case HTTP_ERROR_INTERNAL:
		memfault_error(res, MEMFAULT_ERROR_INTERNAL);
		memfault_msg(res, "Asking Memfault failed: %s", hr->message);
		break;
	}
}

/* Fills res from a complete response. Returns -ENOMEM only. */
static int
memfault_classify(const struct memfault_query *q, struct http_request *req,
    const struct http_result *hr, struct memfault_result *res)
{
	const struct memfault *mf = q->mf;
	const char *v;
	char smsg[MEMFAULT_SERVER_MESSAGE_MAX + 1], loc[160];
	long st = hr->status;

	res->http_status = st;
	if ((v = http_request_header(req, "memfault-reason")) != NULL)
		memfault_sanitize(v, strlen(v), res->reason, sizeof(res->reason));
	if (hr->error != HTTP_ERROR_NONE) {
		memfault_classify_transport(mf, hr, res);
		return 0;
	}
	memfault_server_message(hr->body, hr->body_len, smsg, sizeof(smsg));
	if (st == 200)
		return memfault_classify_200(
		    mf, q->hardware_version, q->software_type, hr->body, hr->body_len, res);
	if (st == 204) {
		res->outcome = MEMFAULT_OUTCOME_NO_UPDATE;
		memfault_msg(res, "No update from Memfault (memfault-reason: %s)",
		    res->reason[0] != '\0' ? res->reason : "none given");
		return 0;
	}
	if (st == 429 || st == 503 || st == 529) {
		memfault_error(res, MEMFAULT_ERROR_RATE_LIMITED);
		v = http_request_header(req, "Retry-After");
		res->has_retry_after =
		    v != NULL && http_parse_retry_after(v, time(NULL), mf->retry_after_max_s,
				     &res->retry_after_s) == 0;
		memfault_msg(res, "%s (HTTP %ld%s)",
		    st == 429 ? "Memfault rate-limits this device"
			      : (st == 503 ? "Memfault is unavailable" : "Memfault is overloaded"),
		    st, res->has_retry_after ? "" : ", no usable Retry-After");
		return 0;
	}
	if (st == 502 || st == 504) {
		memfault_error(res, MEMFAULT_ERROR_TRANSIENT);
		memfault_msg(res, "Memfault's gateway failed (HTTP %ld)", st);
		return 0;
	}
	if (st == 401 || st == 403) {
		memfault_error(res, MEMFAULT_ERROR_CONFIG);
		memfault_msg(res,
		    "Memfault rejected the project key (HTTP %ld): check project_key in %s", st,
		    mf->key_source);
		return 0;
	}
	if (st == 400) {
		memfault_error(res, MEMFAULT_ERROR_CONFIG);
		memfault_msg(res,
		    "Memfault rejected the device's identity (HTTP 400%s%s): check that "
		    "hardware_version \"%s\" and software_type \"%s\" exist in the Memfault "
		    "project",
		    smsg[0] != '\0' ? ": " : "", smsg, q->hardware_version, q->software_type);
		return 0;
	}
	if (st == 404) {
		memfault_error(res, MEMFAULT_ERROR_CONFIG);
		memfault_msg(res, "Memfault has no %s (HTTP 404): check base_url (%s) in %s",
		    MEMFAULT_LATEST_PATH, mf->base_url, mf->config_path);
		return 0;
	}
	if (st >= 300 && st < 400) {
		v = http_request_header(req, "Location");
		http_url_for_log(v != NULL ? v : "?", loc, sizeof(loc));
		memfault_sanitize(loc, strlen(loc), loc, sizeof(loc));
		memfault_error(res, MEMFAULT_ERROR_CONFIG);
		memfault_msg(res,
		    "Memfault redirected to %s (HTTP %ld), which is not followed so the project "
		    "key "
		    "goes nowhere else: check base_url (%s) in %s",
		    loc, st, mf->base_url, mf->config_path);
		return 0;
	}
	if (st >= 400 && st < 500) {
		memfault_error(res, MEMFAULT_ERROR_CONFIG);
		memfault_msg(res, "Memfault refused the request (HTTP %ld%s%s): check %s", st,
		    smsg[0] != '\0' ? ": " : "", smsg, mf->config_path);
		return 0;
	}
	if (st >= 500) {
		memfault_error(res, MEMFAULT_ERROR_SERVER);
		memfault_msg(
		    res, "Memfault failed (HTTP %ld%s%s)", st, smsg[0] != '\0' ? ": " : "", smsg);
		return 0;
	}
	memfault_error(res, MEMFAULT_ERROR_RESPONSE);
	memfault_msg(res, "Memfault answered HTTP %ld, which the gateway does not understand", st);
	return 0;
}

static void
memfault_query_free(struct memfault_query *q)
{
	LIST_REMOVE(q, entry);
	free(q);
}

static void
memfault_on_done(struct http_request *req, const struct http_result *hr, void *userdata)
{
	struct memfault_query *q = userdata;
	struct memfault_result res;

	memset(&res, 0, sizeof(res));
	q->req = NULL;
	if (memfault_classify(q, req, hr, &res) < 0) {
		memfault_result_clear(&res);
		memfault_error(&res, MEMFAULT_ERROR_INTERNAL);
		memfault_msg(&res, "Out of memory reading Memfault's answer");
	}
	log_debug("memfault: %s: %s: %s", q->serial, memfault_outcome_to_string(res.outcome),
	    res.message);
	q->in_callback = true;
	q->cb(q, &res, q->userdata);
	memfault_result_clear(&res);
	memfault_query_free(q);
}

/* Appends "name=<percent-encoded value>" to buf. */
static int
memfault_param(char *buf, size_t bufsz, size_t *n, const char *name, const char *value)
{
	char *esc = curl_easy_escape(NULL, value, (int)strlen(value));
	int w;

	if (esc == NULL)
		return -ENOMEM;
	w = snprintf(
	    buf + *n, bufsz - *n, "%s%s=%s", *n > 0 && buf[*n - 1] != '?' ? "&" : "", name, esc);
	curl_free(esc);
	if (w < 0 || (size_t)w >= bufsz - *n)
		return -ENAMETOOLONG;
	*n += (size_t)w;
	return 0;
}

static bool
memfault_identity_valid(const struct memfault_identity *id)
{
	return id != NULL && id->serial != NULL && id->hardware_version != NULL &&
	       id->software_type != NULL && id->current_version != NULL &&
	       ident_serial_valid(id->serial, strlen(id->serial)) &&
	       ident_text_valid(id->hardware_version, strlen(id->hardware_version), IDENT_HW_MAX) &&
	       ident_text_valid(id->software_type, strlen(id->software_type), IDENT_SWTYPE_MAX) &&
	       ident_text_valid(
		   id->current_version, strlen(id->current_version), IDENT_VERSION_MAX);
}

int
memfault_latest(struct memfault *mf, const struct memfault_identity *id, memfault_done_fn cb,
    void *userdata, struct memfault_query **out)
{
	const char *headers[] = {mf->key_header, "Accept: application/json", NULL};
	struct http_request_spec spec = {
	    .headers = headers,
	    .body_max = mf->body_max,
	    .accept_gzip = true,
	    .follow_redirects = false, /* libcurl would send the key to the redirect's host */
	    .timeout_s = mf->timeout_s,
	    .on_done = memfault_on_done,
	};
	/* base + path + four params, each at most 3x its bound when encoded */
	char url[MEMFAULT_BASE_URL_MAX + 64 +
		 3 * (IDENT_SERIAL_MAX + IDENT_HW_MAX + IDENT_SWTYPE_MAX + IDENT_VERSION_MAX) + 80];
	struct memfault_query *q;
	size_t n;
	int r;

	if (cb == NULL || !memfault_identity_valid(id))
		return -EINVAL;
	n = (size_t)snprintf(url, sizeof(url), "%s%s?", mf->base_url, MEMFAULT_LATEST_PATH);
	if ((r = memfault_param(url, sizeof(url), &n, "device_serial", id->serial)) < 0 ||
	    (r = memfault_param(url, sizeof(url), &n, "hardware_version", id->hardware_version)) <
		0 ||
	    (r = memfault_param(url, sizeof(url), &n, "software_type", id->software_type)) < 0 ||
	    (r = memfault_param(url, sizeof(url), &n, "current_version", id->current_version)) < 0)
		return r;
	q = calloc(1, sizeof(*q));
	if (q == NULL)
		return -ENOMEM;
	q->mf = mf;
	q->cb = cb;
	q->userdata = userdata;
	snprintf(q->serial, sizeof(q->serial), "%s", id->serial);
	snprintf(q->hardware_version, sizeof(q->hardware_version), "%s", id->hardware_version);
	snprintf(q->software_type, sizeof(q->software_type), "%s", id->software_type);
	spec.url = url;
	spec.userdata = q;
	r = http_request_start(mf->http, &spec, &q->req);
	if (r < 0) {
		free(q);
		return r;
	}
	LIST_INSERT_HEAD(&mf->queries, q, entry);
	if (out != NULL)
		*out = q;
	return 0;
}

void
memfault_query_cancel(struct memfault_query *q)
{
	if (q == NULL || q->in_callback)
		return;
	http_request_cancel(q->req);
	memfault_query_free(q);
}

int
memfault_result_from_body(const struct memfault *mf, const char *hardware_version,
    const char *software_type, const char *body, size_t len, struct memfault_result *res)
{
	memset(res, 0, sizeof(*res));
	res->http_status = 200;
	return memfault_classify_200(mf, hardware_version, software_type, body, len, res);
}

void
memfault_result_clear(struct memfault_result *res)
{
	release_free(res->release);
	free(res->body);
	memset(res, 0, sizeof(*res));
}

/* A project key goes into a header line: printable, no spaces, bounded. */
static bool
memfault_key_valid(const char *key)
{
	size_t i, n;

	if (key == NULL || (n = strlen(key)) == 0 || n > MEMFAULT_KEY_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (!isgraph((unsigned char)key[i]))
			return false;
	return true;
}

int
memfault_new(struct http *http, const struct memfault_config *cfg, struct memfault **out, char *err,
    size_t errlen)
{
	const char *base = cfg->base_url != NULL ? cfg->base_url : MEMFAULT_DEFAULT_BASE_URL;
	const char *path = cfg->config_path != NULL ? cfg->config_path : MEMFAULT_DEFAULT_CONFIG;
	struct release_limits probe;
	struct memfault *mf;
	size_t n = strlen(base);

	while (n > 0 && base[n - 1] == '/')
		n--;
	probe.allow_http = strncasecmp(base, "http://", 7) == 0;
	if (n == 0 || n > MEMFAULT_BASE_URL_MAX || strpbrk(base, "?# \t\r\n") != NULL ||
	    (!probe.allow_http && strncasecmp(base, "https://", 8) != 0)) {
		snprintf(err, errlen, "base_url must be an https:// URL without query (%.*s) in %s",
		    64, base, path);
		return -EINVAL;
	}
	if (!memfault_key_valid(cfg->project_key)) {
		snprintf(err, errlen,
		    "project_key must be 1 to %d printable characters without spaces in %s",
		    MEMFAULT_KEY_MAX, path);
		return -EINVAL;
	}
	mf = calloc(1, sizeof(*mf));
	if (mf == NULL)
		return -ENOMEM;
	mf->http = http;
	mf->allow_http = probe.allow_http;
	mf->base_url = strndup(base, n);
	mf->config_path = strdup(path);
	mf->key_source = strdup(cfg->key_source != NULL ? cfg->key_source : path);
	if (asprintf(&mf->key_header, "Memfault-Project-Key: %s", cfg->project_key) < 0)
		mf->key_header = NULL;
	if (mf->base_url == NULL || mf->config_path == NULL || mf->key_source == NULL ||
	    mf->key_header == NULL) {
		memfault_free(mf);
		return -ENOMEM;
	}
	mf->body_max = cfg->body_max != 0 ? cfg->body_max : MEMFAULT_BODY_MAX_DEFAULT;
	mf->max_file_size = cfg->max_file_size;
	mf->timeout_s = cfg->timeout_s != 0 ? cfg->timeout_s : MEMFAULT_TIMEOUT_DEFAULT;
	mf->retry_after_max_s =
	    cfg->retry_after_max_s != 0 ? cfg->retry_after_max_s : MEMFAULT_RETRY_AFTER_MAX;
	LIST_INIT(&mf->queries);
	*out = mf;
	return 0;
}

void
memfault_free(struct memfault *mf)
{
	struct memfault_query *q;

	if (mf == NULL)
		return;
	/* clang-analyzer cannot follow LIST_REMOVE (in memfault_query_free) unlinking q through
	 * le_prev, so it takes the next LIST_FIRST for the freed q. */
	while ((q = LIST_FIRST(&mf->queries)) != NULL) {
		http_request_cancel(q->req); /* NOLINT(clang-analyzer-unix.Malloc): see above */
		memfault_query_free(q);
	}
	free(mf->base_url);
	free(mf->config_path);
	free(mf->key_source);
	if (mf->key_header != NULL)
		explicit_bzero(mf->key_header, strlen(mf->key_header));
	free(mf->key_header);
	free(mf);
}

const char *
memfault_base_url(const struct memfault *mf)
{
	return mf->base_url;
}

bool
memfault_error_retryable(enum memfault_error e)
{
	switch (e) {
	case MEMFAULT_ERROR_RATE_LIMITED:
	case MEMFAULT_ERROR_TRANSIENT:
	case MEMFAULT_ERROR_TLS:
	case MEMFAULT_ERROR_INTERNAL:
		return true;
	case MEMFAULT_ERROR_NONE:
	case MEMFAULT_ERROR_CONFIG:
	case MEMFAULT_ERROR_SERVER:
	case MEMFAULT_ERROR_RESPONSE:
		return false;
	}
	return false;
}

const char *
memfault_error_to_string(enum memfault_error e)
{
	switch (e) {
	case MEMFAULT_ERROR_NONE:
		return "none";
	case MEMFAULT_ERROR_CONFIG:
		return "config";
	case MEMFAULT_ERROR_RATE_LIMITED:
		return "rate-limited";
	case MEMFAULT_ERROR_TRANSIENT:
		return "transient";
	case MEMFAULT_ERROR_TLS:
		return "tls";
	case MEMFAULT_ERROR_SERVER:
		return "server";
	case MEMFAULT_ERROR_RESPONSE:
		return "response";
	case MEMFAULT_ERROR_INTERNAL:
		return "internal";
	}
	return "unknown";
}

const char *
memfault_outcome_to_string(enum memfault_outcome o)
{
	switch (o) {
	case MEMFAULT_OUTCOME_UPDATE:
		return "update";
	case MEMFAULT_OUTCOME_NO_UPDATE:
		return "no-update";
	case MEMFAULT_OUTCOME_ERROR:
		return "error";
	}
	return "unknown";
}
