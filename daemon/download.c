/* The download manager (see download.h). One job per SHA-256 with any number of waiters. A job
 * walks: open the partial in the store, re-hash what is already there (in slices, so the loop
 * stays responsive), fetch the rest with Range, hash while writing, commit. Transient failures
 * resume after a delay; an expired URL asks a waiter for a fresh one; everything that ends a job
 * goes through its step event so nothing is freed inside a callback that still runs. */
#include "download.h"

#include "hex.h"
#include "http.h"
#include "ident.h"
#include "log.h"
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/evp.h>

#define DOWNLOAD_URL_VALIDITY   (6 * 3600 - 600)
#define DOWNLOAD_MAX_REFRESHES  3
#define DOWNLOAD_MAX_RETRIES    5
#define DOWNLOAD_MAX_RESTARTS   2
#define DOWNLOAD_HASH_SLICE     (1u << 20) /* bytes re-hashed per loop turn */
#define DOWNLOAD_READ_CHUNK     65536
#define DOWNLOAD_PROGRESS_EVERY (1u << 20) /* bytes between progress rows */

enum download_state {
	DOWNLOAD_STATE_BEGIN,     /* open the partial */
	DOWNLOAD_STATE_HASHING,   /* re-hashing the bytes already present */
	DOWNLOAD_STATE_WAIT,      /* a retry delay, then decide what next */
	DOWNLOAD_STATE_REFRESH,   /* waiting for a waiter to bring a fresh URL */
	DOWNLOAD_STATE_FETCHING,  /* an HTTP request runs */
	DOWNLOAD_STATE_FINISHING, /* tell the waiters and go away */
};

/* Why our own callbacks stopped a transfer. */
enum download_verdict {
	DOWNLOAD_VERDICT_NONE,
	DOWNLOAD_VERDICT_STATUS,   /* not a 200/206: look at the status */
	DOWNLOAD_VERDICT_RANGE,    /* a 206 for other bytes than asked */
	DOWNLOAD_VERDICT_TOO_MUCH, /* more bytes than the announced size */
	DOWNLOAD_VERDICT_WRITE,    /* writing the partial failed */
};

struct download_waiter {
	TAILQ_ENTRY(download_waiter) entry;
	struct download_job *job;
	struct download_callbacks cb;
	bool in_callback;
};

struct download_job {
	TAILQ_ENTRY(download_job) entry;
	struct download_manager *dm;
	TAILQ_HEAD(, download_waiter) waiters;
	enum download_state state;
	struct event *step;

	char sha256[STORE_SHA256_HEX + 1];
	char md5[STORE_MD5_HEX + 1];
	uint64_t size;
	char *url;
	int64_t url_fetched;
	int64_t artifact_id;
	char version[IDENT_VERSION_MAX + 1];
	bool is_delta;
	char serial[IDENT_SERIAL_MAX + 1];
	char label[IDENT_VERSION_MAX + 32]; /* "1.2.0 (sha256 0123456789ab)" for logs */

	int fd;          /* the partial file while open, else -1 */
	uint64_t offset; /* bytes written and hashed */
	uint64_t saved;  /* offset last recorded with store_partial_progress */
	EVP_MD_CTX *sha;
	EVP_MD_CTX *md5ctx;

	struct http_request *req;
	uint64_t offset_at_request; /* to tell progress from a failure without any */
	uint64_t hash_end;          /* bytes present at open, re-hashed before resuming */
	enum download_verdict verdict;
	int verdict_err;

	struct download_waiter *refresh_waiter;
	bool refresh_asked;
	unsigned refreshes;
	unsigned retries;
	unsigned restarts;

	uint64_t received; /* body bytes over all requests, for the rate */
	uint64_t rate_bytes;
	struct timespec rate_time;
	uint64_t rate_bps;

	int result;
	char message[DOWNLOAD_MESSAGE_MAX];
};

struct download_manager {
	struct event_base *base;
	struct http *http;
	struct store *store;
	struct download_config cfg;
	TAILQ_HEAD(, download_job) jobs;
};

static void download_next(struct download_job *job);

static int64_t
download_now(void)
{
	return (int64_t)time(NULL);
}

static void
download_schedule(struct download_job *job, enum download_state state, unsigned delay_s)
{
	struct timeval tv = {(time_t)delay_s, 0};

	job->state = state;
	evtimer_add(job->step, &tv);
}

static void download_save_progress(struct download_job *job);
static void download_close_partial(struct download_job *job);
static void download_fail(struct download_job *job, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ends the job from its step event: the waiters hear err and message there. */
static void
download_fail(struct download_job *job, int err, const char *fmt, ...)
{
	va_list ap;

	if (job->state == DOWNLOAD_STATE_FINISHING)
		return;
	job->result = err;
	va_start(ap, fmt);
	vsnprintf(job->message, sizeof(job->message), fmt, ap);
	va_end(ap);
	if (job->req != NULL) {
		http_request_cancel(job->req);
		job->req = NULL;
	}
	/* release the partial now, so a new download of it can start before this one is gone */
	download_save_progress(job);
	download_close_partial(job);
	download_schedule(job, DOWNLOAD_STATE_FINISHING, 0);
}

static int
download_hash_reset(struct download_job *job)
{
	job->offset = 0;
	job->saved = 0;
	if (EVP_DigestInit_ex(job->sha, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestInit_ex(job->md5ctx, EVP_md5(), NULL) != 1)
		return -EIO;
	return 0;
}

/* Starts over from byte 0 (the server ignored Range, or the partial cannot be trusted). */
static int
download_restart(struct download_job *job)
{
	struct store *st = job->dm->store;
	int r;

	r = store_partial_restart(st, job->sha256);
	if (r < 0)
		return r;
	job->offset_at_request = 0; /* what arrives from now on is progress */
	return download_hash_reset(job);
}

static void
download_save_progress(struct download_job *job)
{
	if (job->fd >= 0 && job->saved != job->offset &&
	    store_partial_progress(job->dm->store, job->sha256, job->offset) == 0)
		job->saved = job->offset;
}

/* Releases the partial file and its pin, keeping it for a later resume. */
static void
download_close_partial(struct download_job *job)
{
	if (job->fd < 0)
		return;
	store_partial_close(job->dm->store, job->sha256, job->fd);
	job->fd = -1;
}

static void
download_job_free(struct download_job *job)
{
	if (job->req != NULL)
		http_request_cancel(job->req);
	download_close_partial(job);
	if (job->step != NULL)
		event_free(job->step);
	EVP_MD_CTX_free(job->sha);
	EVP_MD_CTX_free(job->md5ctx);
	free(job->url);
	free(job);
}

/* Tells every waiter how it ended; a done callback may start or cancel other downloads. */
static void
download_finish(struct download_job *job)
{
	struct download_manager *dm = job->dm;
	struct download_waiter *w;

	TAILQ_REMOVE(&dm->jobs, job, entry);
	if (job->result == 0)
		log_info("Download of %s: %s", job->label, job->message);
	else if (TAILQ_EMPTY(&job->waiters))
		log_debug("download of %s stopped: %s", job->label, job->message);
	else
		log_err("Download of %s failed: %s", job->label, job->message);
	while ((w = TAILQ_FIRST(&job->waiters)) != NULL) {
		TAILQ_REMOVE(&job->waiters, w, entry);
		w->job = NULL;
		w->in_callback = true;
		if (w->cb.done != NULL)
			w->cb.done(w, job->result, job->message, w->cb.userdata);
		free(w);
	}
	download_job_free(job);
}

/* Finishes a complete file: MD5 if Memfault gave one, then the store checks size and SHA-256
 * and makes it servable. */
static void
download_commit(struct download_job *job)
{
	struct store *st = job->dm->store;
	uint8_t digest[EVP_MAX_MD_SIZE], md5[EVP_MAX_MD_SIZE];
	char hex[2 * EVP_MAX_MD_SIZE + 1];
	unsigned int dlen = 0, mlen = 0;
	int r;

	download_save_progress(job);
	if (EVP_DigestFinal_ex(job->sha, digest, &dlen) != 1 ||
	    EVP_DigestFinal_ex(job->md5ctx, md5, &mlen) != 1 || dlen != STORE_SHA256_LEN) {
		download_fail(job, -EIO, "hashing failed");
		return;
	}
	if (job->md5[0] != '\0') {
		hex_encode(md5, mlen, hex);
		if (strcmp(hex, job->md5) != 0) {
			download_close_partial(job);
			store_discard(st, job->sha256);
			download_fail(job, -EBADMSG,
			    "the downloaded bytes have MD5 %s, not the %s Memfault announced; "
			    "deleted, never served",
			    hex, job->md5);
			return;
		}
	}
	r = store_commit(st, job->sha256, job->fd, digest);
	job->fd = -1; /* consumed in every case */
	if (r == -EBADMSG) {
		hex_encode(digest, dlen, hex);
		download_fail(job, r,
		    "the downloaded bytes hash to sha256 %.16s..., not the %.16s... Memfault "
		    "announced; deleted, never served",
		    hex, job->sha256);
		return;
	}
	if (r < 0) {
		download_fail(job, r, "%s", store_errmsg(st));
		return;
	}
	download_fail(job, 0, "%" PRIu64 " bytes, size and sha256%s verified", job->size,
	    job->md5[0] != '\0' ? " and md5" : "");
}

/* A transient failure: resume after a delay, unless it keeps failing without progress. */
static void
download_retry(struct download_job *job, const char *why)
{
	unsigned delay;

	download_save_progress(job);
	if (job->offset > job->offset_at_request)
		job->retries = 0;
	if (++job->retries > job->dm->cfg.max_retries) {
		download_fail(job, -EIO,
		    "%s; gave up after %u attempts at %" PRIu64 " of %" PRIu64 " bytes", why,
		    job->retries, job->offset, job->size);
		return;
	}
	delay = job->retries == 1 ? 0 : backoff_next(&job->dm->cfg.retry, job->retries - 2);
	log_warn("Download of %s interrupted at %" PRIu64 " of %" PRIu64 " bytes (%s); resuming in "
		 "%u s",
	    job->label, job->offset, job->size, why, delay);
	download_schedule(job, DOWNLOAD_STATE_WAIT, delay);
}

static struct download_waiter *
download_refresher(struct download_job *job)
{
	struct download_waiter *w;

	TAILQ_FOREACH(w, &job->waiters, entry)
	if (w->cb.refresh != NULL)
		return w;
	return NULL;
}

/* The URL expired: ask a waiter (from the step event, on a clean stack) for a fresh one. */
static void
download_refresh(struct download_job *job, const char *why)
{
	download_save_progress(job);
	if (job->refreshes >= job->dm->cfg.max_refreshes) {
		download_fail(
		    job, -EACCES, "%s, and %u fresh URLs did not help", why, job->refreshes);
		return;
	}
	if (download_refresher(job) == NULL) {
		download_fail(
		    job, -EACCES, "%s, and no waiting device can ask Memfault for a new one", why);
		return;
	}
	log_notice("The payload URL of %s is no longer valid (%s); asking Memfault for a fresh one",
	    job->label, why);
	job->refresh_waiter = NULL;
	job->refresh_asked = false;
	download_schedule(job, DOWNLOAD_STATE_REFRESH, 0);
}

static void
download_ask_refresh(struct download_job *job)
{
	struct download_waiter *w = download_refresher(job);

	if (w == NULL) {
		download_fail(job, -EACCES,
		    "the payload URL expired and no waiting device can ask Memfault for a new one");
		return;
	}
	job->refresh_waiter = w;
	job->refresh_asked = true;
	w->cb.refresh(w, w->cb.userdata);
}

/* Handles a complete response that is not 200/206. */
static void
download_status(struct download_job *job, struct http_request *req, long status)
{
	const char *cr = http_request_header(req, "Content-Range");
	char why[64];

	snprintf(why, sizeof(why), "the CDN answered HTTP %ld", status);
	if (status == 403 || status == 410) {
		download_refresh(job, why);
	} else if (status == 416) {
		/* "bytes *\/N": the object has N bytes, fewer than we hold or asked for */
		unsigned long long n = 0;
		char *end = NULL;

		if (cr != NULL && strncasecmp(cr, "bytes */", 8) == 0 && cr[8] >= '0' &&
		    cr[8] <= '9') {
			errno = 0;
			n = strtoull(cr + 8, &end, 10);
			if (errno != 0 || *end != '\0')
				n = job->size; /* unreadable: treat as no news about the size */
		} else {
			n = job->size;
		}
		if (n != job->size) {
			download_close_partial(job);
			store_discard(job->dm->store, job->sha256);
			download_fail(job, -EBADMSG,
			    "the CDN has %llu bytes of an artifact Memfault announced with %" PRIu64
			    "; deleted, never served",
			    n, job->size);
		} else if (++job->restarts <= DOWNLOAD_MAX_RESTARTS && download_restart(job) == 0) {
			download_schedule(job, DOWNLOAD_STATE_WAIT, 0);
		} else {
			download_fail(job, -EPROTO, "%s for bytes %" PRIu64 "- (Content-Range %s)",
			    why, job->offset, cr != NULL ? cr : "missing");
		}
	} else if (status == 408 || status == 429 || status >= 500) {
		download_retry(job, why);
	} else {
		download_fail(job, -EREMOTEIO, "%s", why);
	}
}

static int
download_on_headers(struct http_request *req, long status, void *userdata)
{
	struct download_job *job = userdata;
	uint64_t first, last, complete;
	int r;

	if (status == 206) {
		if (http_parse_content_range(
			http_request_header(req, "Content-Range"), &first, &last, &complete) < 0 ||
		    first != job->offset || complete != job->size || last >= job->size) {
			job->verdict = DOWNLOAD_VERDICT_RANGE;
			return -EPROTO;
		}
		return 0;
	}
	if (status == 200) {
		if (job->offset > 0) {
			log_notice(
			    "The CDN ignored Range for %s; starting over from byte 0", job->label);
			r = download_restart(job);
			if (r < 0) {
				job->verdict = DOWNLOAD_VERDICT_WRITE;
				job->verdict_err = r;
				return r;
			}
		}
		return 0;
	}
	/* an error page must never end up in the partial file */
	job->verdict = DOWNLOAD_VERDICT_STATUS;
	return -EREMOTEIO;
}

static void
download_rate(struct download_job *job)
{
	struct timespec now;
	int64_t ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (int64_t)(now.tv_sec - job->rate_time.tv_sec) * 1000 +
	     (now.tv_nsec - job->rate_time.tv_nsec) / 1000000;
	if (ms >= 1000) {
		job->rate_bps = (job->received - job->rate_bytes) * 1000 / (uint64_t)ms;
		job->rate_bytes = job->received;
		job->rate_time = now;
	}
}

static int
download_on_body(struct http_request *req, const void *data, size_t len, void *userdata)
{
	struct download_job *job = userdata;
	const uint8_t *p = data;
	size_t left = len;

	(void)req;
	if (len > job->size - job->offset) {
		job->verdict = DOWNLOAD_VERDICT_TOO_MUCH;
		return -EFBIG;
	}
	while (left > 0) {
		ssize_t w = pwrite(job->fd, p, left, (off_t)(job->offset + (len - left)));

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			job->verdict = DOWNLOAD_VERDICT_WRITE;
			job->verdict_err = w < 0 ? -errno : -EIO;
			return job->verdict_err;
		}
		p += w;
		left -= (size_t)w;
	}
	if (EVP_DigestUpdate(job->sha, data, len) != 1 ||
	    EVP_DigestUpdate(job->md5ctx, data, len) != 1) {
		job->verdict = DOWNLOAD_VERDICT_WRITE;
		job->verdict_err = -EIO;
		return -EIO;
	}
	job->offset += len;
	job->received += len;
	if (job->offset - job->saved >= DOWNLOAD_PROGRESS_EVERY)
		download_save_progress(job);
	download_rate(job);
	return 0;
}

/* More bytes than announced: whatever this is, it is not the artifact. */
static void
download_too_much(struct download_job *job)
{
	download_close_partial(job);
	store_discard(job->dm->store, job->sha256);
	download_fail(job, -EBADMSG,
	    "the CDN sent more than the %" PRIu64
	    " bytes Memfault announced; deleted, never served",
	    job->size);
}

static void
download_on_done(struct http_request *req, const struct http_result *res, void *userdata)
{
	struct download_job *job = userdata;
	enum download_verdict verdict = job->verdict;
	char why[DOWNLOAD_MESSAGE_MAX];

	job->req = NULL;
	job->verdict = DOWNLOAD_VERDICT_NONE;
	job->rate_bps = 0;
	switch (res->error) {
	case HTTP_ERROR_NONE:
		if (res->status != 200 && res->status != 206)
			download_status(job, req, res->status);
		else if (job->offset == job->size)
			download_commit(job);
		else
			download_retry(job, "the CDN ended the body early");
		return;
	case HTTP_ERROR_ABORTED:
		switch (verdict) {
		case DOWNLOAD_VERDICT_STATUS:
			download_status(job, req, res->status);
			return;
		case DOWNLOAD_VERDICT_RANGE:
			if (++job->restarts > DOWNLOAD_MAX_RESTARTS || download_restart(job) < 0) {
				download_fail(job, -EPROTO,
				    "the CDN keeps sending other bytes than asked (Content-Range "
				    "%s)",
				    http_request_header(req, "Content-Range") ?: "missing");
				return;
			}
			log_notice("The CDN sent other bytes than asked for %s; starting over",
			    job->label);
			download_schedule(job, DOWNLOAD_STATE_WAIT, 0);
			return;
		case DOWNLOAD_VERDICT_TOO_MUCH:
			download_too_much(job);
			return;
		case DOWNLOAD_VERDICT_WRITE:
			download_fail(job, job->verdict_err, "writing the partial file failed: %s",
			    strerror(-job->verdict_err));
			return;
		case DOWNLOAD_VERDICT_NONE:
			snprintf(why, sizeof(why), "%s", res->message);
			download_retry(job, why);
			return;
		}
		break;
	case HTTP_ERROR_TOO_LARGE:
		download_too_much(job);
		return;
	case HTTP_ERROR_TLS:
		download_fail(job, -EACCES, "TLS with the CDN failed: %s", res->message);
		return;
	case HTTP_ERROR_DNS:
	case HTTP_ERROR_CONNECT:
	case HTTP_ERROR_TIMEOUT:
	case HTTP_ERROR_CUT:
	case HTTP_ERROR_PROTOCOL:
	case HTTP_ERROR_INTERNAL:
		break;
	}
	snprintf(why, sizeof(why), "%s: %s", http_error_to_string(res->error), res->message);
	download_retry(job, why);
}

static void
download_request(struct download_job *job)
{
	struct http_request_spec spec = {
	    .url = job->url,
	    .range_start = job->offset,
	    .body_max = job->size,
	    .follow_redirects = true, /* no secrets in these requests: the URL is signed */
	    .timeout_s = job->dm->cfg.timeout_s,
	    .on_headers = download_on_headers,
	    .on_body = download_on_body,
	    .on_done = download_on_done,
	    .userdata = job,
	};
	char url[128];
	int r;

	job->verdict = DOWNLOAD_VERDICT_NONE;
	job->offset_at_request = job->offset;
	clock_gettime(CLOCK_MONOTONIC, &job->rate_time);
	job->rate_bytes = job->received;
	r = http_request_start(job->dm->http, &spec, &job->req);
	if (r < 0) {
		download_fail(job, r, "cannot request the payload URL: %s", strerror(-r));
		return;
	}
	http_url_for_log(job->url, url, sizeof(url));
	log_debug("download of %s: GET %s from byte %" PRIu64, job->label, url, job->offset);
	job->state = DOWNLOAD_STATE_FETCHING;
}

/* Decides the next move from the job's state of affairs. */
static void
download_next(struct download_job *job)
{
	int64_t age = download_now() - job->url_fetched;
	char why[96];

	if (job->offset == job->size) {
		download_commit(job);
		return;
	}
	if (age > (int64_t)job->dm->cfg.url_validity_s) {
		snprintf(why, sizeof(why), "it is %" PRId64 " s old", age);
		download_refresh(job, why);
		return;
	}
	download_request(job);
}

/* Re-hashes up to DOWNLOAD_HASH_SLICE bytes of the existing partial per loop turn. */
static void
download_hash_slice(struct download_job *job)
{
	static uint8_t buf[DOWNLOAD_READ_CHUNK];
	uint64_t end = job->hash_end, budget = DOWNLOAD_HASH_SLICE;

	while (job->offset < end && budget > 0) {
		size_t want =
		    (size_t)(end - job->offset < sizeof(buf) ? end - job->offset : sizeof(buf));
		ssize_t n = pread(job->fd, buf, want, (off_t)job->offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* unreadable or shorter than the store said: start over rather than guess
			 */
			log_warn("Cannot re-read the partial download of %s (%s), starting over",
			    job->label, n < 0 ? strerror(errno) : "short file");
			if (download_restart(job) < 0) {
				download_fail(job, -EIO, "the partial file is unusable");
				return;
			}
			download_next(job);
			return;
		}
		if (EVP_DigestUpdate(job->sha, buf, (size_t)n) != 1 ||
		    EVP_DigestUpdate(job->md5ctx, buf, (size_t)n) != 1) {
			download_fail(job, -EIO, "hashing failed");
			return;
		}
		job->offset += (uint64_t)n;
		budget -= (uint64_t)n < budget ? (uint64_t)n : budget;
	}
	if (job->offset < end) {
		download_schedule(job, DOWNLOAD_STATE_HASHING, 0);
		return;
	}
	job->saved = job->offset;
	download_next(job);
}

static void
download_begin(struct download_job *job)
{
	struct store *st = job->dm->store;
	struct store_partial_meta meta = {
	    .sha256 = job->sha256,
	    .artifact_id = job->artifact_id,
	    .version = job->version,
	    .is_delta = job->is_delta,
	    .size = job->size,
	    .md5 = job->md5[0] != '\0' ? job->md5 : NULL,
	    .url = job->url,
	    .url_fetched = job->url_fetched,
	};
	uint64_t present = 0;
	char url[128];
	int r;

	r = store_partial_open(st, &meta, &job->fd, &present);
	if (r == -EEXIST) {
		job->fd = -1;
		download_fail(job, 0, "already in the cache");
		return;
	}
	if (r < 0) {
		job->fd = -1;
		download_fail(job, r, "%s", store_errmsg(st));
		return;
	}
	if (download_hash_reset(job) < 0) {
		download_fail(job, -EIO, "hashing failed");
		return;
	}
	if (present > job->size) {
		log_warn("The partial download of %s is longer than the artifact, starting over",
		    job->label);
		if (download_restart(job) < 0) {
			download_fail(job, -EIO, "%s", store_errmsg(st));
			return;
		}
		present = 0;
	}
	http_url_for_log(job->url, url, sizeof(url));
	if (present > 0)
		log_info("Resuming the download of %s at %" PRIu64 " of %" PRIu64 " bytes from %s",
		    job->label, present, job->size, url);
	else
		log_info("Downloading %s, %" PRIu64 " bytes, from %s", job->label, job->size, url);
	job->hash_end = present;
	download_hash_slice(job);
}

static void
download_step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct download_job *job = arg;

	(void)fd;
	(void)what;
	switch (job->state) {
	case DOWNLOAD_STATE_BEGIN:
		download_begin(job);
		break;
	case DOWNLOAD_STATE_HASHING:
		download_hash_slice(job);
		break;
	case DOWNLOAD_STATE_WAIT:
		download_next(job);
		break;
	case DOWNLOAD_STATE_REFRESH:
		if (!job->refresh_asked)
			download_ask_refresh(job);
		break;
	case DOWNLOAD_STATE_FETCHING:
		break;
	case DOWNLOAD_STATE_FINISHING:
		download_finish(job);
		break;
	}
}

static struct download_job *
download_find(const struct download_manager *dm, const char *sha256)
{
	struct download_job *job;

	/* a finishing job is history: a new request for its artifact starts a new one */
	TAILQ_FOREACH(job, &dm->jobs, entry)
	if (job->state != DOWNLOAD_STATE_FINISHING && strcmp(job->sha256, sha256) == 0)
		return job;
	return NULL;
}

/* An MD5 is optional; when given it must be 32 hex digits, kept lower-case. */
static bool
download_md5_ok(const char *md5, char *out)
{
	uint8_t bytes[STORE_MD5_HEX / 2];

	out[0] = '\0';
	if (md5 == NULL || md5[0] == '\0')
		return true;
	if (hex_decode(md5, bytes, sizeof(bytes)) < 0)
		return false;
	hex_encode(bytes, sizeof(bytes), out);
	return true;
}

static struct download_job *
download_job_new(struct download_manager *dm, const struct download_request *req,
    const char *sha256, const char *md5)
{
	struct download_job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return NULL;
	job->dm = dm;
	job->fd = -1;
	TAILQ_INIT(&job->waiters);
	snprintf(job->sha256, sizeof(job->sha256), "%s", sha256);
	snprintf(job->md5, sizeof(job->md5), "%s", md5);
	snprintf(job->version, sizeof(job->version), "%s", req->version);
	snprintf(job->serial, sizeof(job->serial), "%s", req->serial != NULL ? req->serial : "");
	snprintf(job->label, sizeof(job->label), "%s (sha256 %.12s)", job->version, job->sha256);
	job->size = req->size;
	job->artifact_id = req->artifact_id;
	job->is_delta = req->is_delta;
	job->url_fetched = req->url_fetched != 0 ? req->url_fetched : download_now();
	job->url = strdup(req->url);
	job->sha = EVP_MD_CTX_new();
	job->md5ctx = EVP_MD_CTX_new();
	job->step = evtimer_new(dm->base, download_step_cb, job);
	if (job->url == NULL || job->sha == NULL || job->md5ctx == NULL || job->step == NULL) {
		download_job_free(job);
		return NULL;
	}
	return job;
}

int
download_get(struct download_manager *dm, const struct download_request *req,
    const struct download_callbacks *cb, struct download_waiter **out)
{
	char sha256[STORE_SHA256_HEX + 1], md5[STORE_MD5_HEX + 1];
	struct download_waiter *w;
	struct download_job *job;

	if (req == NULL || cb == NULL || req->sha256 == NULL || req->url == NULL ||
	    req->version == NULL || store_sha256_norm(req->sha256, sha256) < 0 || req->size == 0 ||
	    !download_md5_ok(req->md5, md5) || strlen(req->url) > STORE_URL_MAX ||
	    !ident_text_valid(req->version, strlen(req->version), IDENT_VERSION_MAX))
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -ENOMEM;
	w->cb = *cb;
	job = download_find(dm, sha256);
	if (job == NULL) {
		job = download_job_new(dm, req, sha256, md5);
		if (job == NULL) {
			free(w);
			return -ENOMEM;
		}
		TAILQ_INSERT_TAIL(&dm->jobs, job, entry);
		download_schedule(job, DOWNLOAD_STATE_BEGIN, 0);
	} else if (req->url_fetched > job->url_fetched) {
		/* a fresher URL: the next request uses it, and it answers a pending refresh */
		char *url = strdup(req->url);

		if (url != NULL) {
			free(job->url);
			job->url = url;
			job->url_fetched = req->url_fetched;
			if (job->state == DOWNLOAD_STATE_REFRESH) {
				job->refreshes++;
				job->refresh_waiter = NULL;
				download_schedule(job, DOWNLOAD_STATE_WAIT, 0);
			}
		}
	}
	w->job = job;
	TAILQ_INSERT_TAIL(&job->waiters, w, entry);
	if (out != NULL)
		*out = w;
	return 0;
}

void
download_waiter_cancel(struct download_waiter *w)
{
	struct download_job *job;

	if (w == NULL || w->in_callback)
		return;
	job = w->job;
	TAILQ_REMOVE(&job->waiters, w, entry);
	if (job->refresh_waiter == w) {
		/* it will not answer: ask someone else */
		job->refresh_waiter = NULL;
		job->refresh_asked = false;
		if (job->state == DOWNLOAD_STATE_REFRESH)
			download_schedule(job, DOWNLOAD_STATE_REFRESH, 0);
	}
	free(w);
	if (TAILQ_EMPTY(&job->waiters))
		download_fail(job, -ECANCELED, "no device waits for it any more");
}

int
download_waiter_set_url(
    struct download_waiter *w, const char *sha256, const char *url, int64_t fetched)
{
	struct download_job *job = w != NULL ? w->job : NULL;
	char norm[STORE_SHA256_HEX + 1];
	int r;

	if (job == NULL || job->state != DOWNLOAD_STATE_REFRESH || job->refresh_waiter != w)
		return -ESTALE;
	if (url == NULL || store_sha256_norm(sha256, norm) < 0 || strlen(url) > STORE_URL_MAX)
		return -EINVAL;
	if (strcmp(norm, job->sha256) != 0) {
		download_fail(job, -ESTALE,
		    "Memfault now offers another artifact (sha256 %.12s) for this device; the "
		    "partial download is kept",
		    norm);
		return 0;
	}
	url = strdup(url);
	if (url == NULL)
		return -ENOMEM;
	free(job->url);
	job->url = (char *)url;
	job->url_fetched = fetched != 0 ? fetched : download_now();
	job->refreshes++;
	job->refresh_waiter = NULL;
	r = store_partial_set_url(job->dm->store, job->sha256, job->url, job->url_fetched);
	if (r < 0)
		log_debug("download of %s: recording the new URL failed: %s, ignoring", job->label,
		    store_errmsg(job->dm->store));
	download_schedule(job, DOWNLOAD_STATE_WAIT, 0);
	return 0;
}

int
download_waiter_url_failed(struct download_waiter *w, const char *message)
{
	struct download_job *job = w != NULL ? w->job : NULL;

	if (job == NULL || job->state != DOWNLOAD_STATE_REFRESH || job->refresh_waiter != w)
		return -ESTALE;
	download_fail(job, -EACCES, "the payload URL expired and no fresh one came: %s",
	    message != NULL ? message : "unknown error");
	return 0;
}

static void
download_fill_progress(const struct download_job *job, struct download_progress *p)
{
	const struct download_waiter *w;

	memset(p, 0, sizeof(*p));
	snprintf(p->sha256, sizeof(p->sha256), "%s", job->sha256);
	snprintf(p->version, sizeof(p->version), "%s", job->version);
	p->bytes = job->offset;
	p->size = job->size;
	p->rate_bps = job->state == DOWNLOAD_STATE_FETCHING ? job->rate_bps : 0;
	TAILQ_FOREACH(w, &job->waiters, entry)
	p->waiters++;
	p->refreshes = job->refreshes;
	p->retries = job->retries;
}

int
download_get_progress(
    const struct download_manager *dm, const char *sha256, struct download_progress *out)
{
	char norm[STORE_SHA256_HEX + 1];
	const struct download_job *job;

	if (store_sha256_norm(sha256, norm) < 0 || (job = download_find(dm, norm)) == NULL)
		return -ENOENT;
	download_fill_progress(job, out);
	return 0;
}

int
download_foreach(const struct download_manager *dm,
    int (*cb)(const struct download_progress *p, void *arg), void *arg)
{
	const struct download_job *job;
	struct download_progress p;
	int r;

	TAILQ_FOREACH(job, &dm->jobs, entry)
	{
		if (job->state == DOWNLOAD_STATE_FINISHING)
			continue;
		download_fill_progress(job, &p);
		if ((r = cb(&p, arg)) != 0)
			return r;
	}
	return 0;
}

int
download_manager_new(struct event_base *base, struct http *http, struct store *store,
    const struct download_config *cfg, struct download_manager **out)
{
	struct download_manager *dm;

	if (base == NULL || http == NULL || store == NULL || out == NULL)
		return -EINVAL;
	dm = calloc(1, sizeof(*dm));
	if (dm == NULL)
		return -ENOMEM;
	dm->base = base;
	dm->http = http;
	dm->store = store;
	if (cfg != NULL)
		dm->cfg = *cfg;
	if (dm->cfg.url_validity_s == 0)
		dm->cfg.url_validity_s = DOWNLOAD_URL_VALIDITY;
	if (dm->cfg.max_refreshes == 0)
		dm->cfg.max_refreshes = DOWNLOAD_MAX_REFRESHES;
	if (dm->cfg.max_retries == 0)
		dm->cfg.max_retries = DOWNLOAD_MAX_RETRIES;
	if (dm->cfg.retry.base_s == 0)
		dm->cfg.retry.base_s = 2;
	if (dm->cfg.retry.cap_s == 0)
		dm->cfg.retry.cap_s = 60;
	TAILQ_INIT(&dm->jobs);
	*out = dm;
	return 0;
}

void
download_manager_free(struct download_manager *dm)
{
	struct download_job *job;
	struct download_waiter *w;

	if (dm == NULL)
		return;
	while ((job = TAILQ_FIRST(&dm->jobs)) != NULL) {
		TAILQ_REMOVE(&dm->jobs, job, entry);
		download_save_progress(job);
		while ((w = TAILQ_FIRST(&job->waiters)) != NULL) {
			TAILQ_REMOVE(&job->waiters, w, entry);
			free(w);
		}
		download_job_free(job);
	}
	free(dm);
}
