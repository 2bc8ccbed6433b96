/* The download manager: fetches each payload once into the store, however many devices want it
 * (single flight, keyed by SHA-256), resumes partial files with Range, refreshes expired signed
 * URLs through the waiters, hashes while writing, and lets store_commit() make the blob servable
 * only when size, SHA-256 (and MD5 if given) match. Everything runs on the one event loop. */
#ifndef OTAGW_DOWNLOAD_H
#define OTAGW_DOWNLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backoff.h"

struct event_base;
struct http;
struct store;
struct download_manager;
struct download_waiter;

#define DOWNLOAD_MESSAGE_MAX 384

struct download_config {
	unsigned
	    url_validity_s; /* signed URLs older than this are refreshed first; 0: 6 h - 10 min */
	unsigned timeout_s; /* per HTTP request; 0: none (the low-speed limit still applies) */
	unsigned max_refreshes;      /* fresh URLs per download before giving up; 0: 3 */
	unsigned max_retries;        /* retries without progress after transient failures; 0: 5 */
	struct backoff_policy retry; /* delays between those retries; 0: 2 s doubling to 60 s */
};

/* What to fetch. Strings are copied. */
struct download_request {
	const char *sha256;  /* 64 hex digits: the key */
	uint64_t size;       /* exact payload size */
	const char *md5;     /* 32 hex digits, or NULL/"" */
	const char *url;     /* signed payload URL */
	int64_t url_fetched; /* wall-clock time the URL was obtained (0: now) */
	int64_t artifact_id;
	const char *version; /* release version, for the store and logs */
	bool is_delta;
	const char *serial; /* the device asking, for logs */
};

struct download_callbacks {
	/* The download ended: err 0 means the blob is committed and servable (store_blob_open);
	 * otherwise a negative errno and a message for logs/D-Bus. The waiter is freed after it
	 * returns. */
	void (*done)(struct download_waiter *w, int err, const char *message, void *userdata);
	/* The payload URL expired: re-query Memfault for the device and answer with
	 * download_waiter_set_url() or download_waiter_url_failed(), now or later. NULL if this
	 * waiter cannot do that (another waiter will be asked). */
	void (*refresh)(struct download_waiter *w, void *userdata);
	void *userdata;
};

/* Progress of one download, for D-Bus. */
struct download_progress {
	char sha256[65];
	char version[65];
	uint64_t bytes; /* present in the partial file */
	uint64_t size;
	uint64_t rate_bps; /* recent bytes per second, 0 when idle */
	unsigned waiters;
	unsigned refreshes;
	unsigned retries;
};

/* Creates a manager fetching through http into store. Returns 0, -EINVAL or -ENOMEM. */
int download_manager_new(struct event_base *base, struct http *http, struct store *store,
    const struct download_config *cfg, struct download_manager **out);

/* Stops every transfer (partial files are kept for a later resume) without calling back, and
 * frees the manager. Not from a callback. Accepts NULL. */
void download_manager_free(struct download_manager *dm);

/* Asks for an artifact. If it is already complete in the store, done runs soon with 0; if a
 * download of the same SHA-256 runs, the waiter joins it; else one starts. Callbacks always run
 * later from the loop, never from inside this call. Returns 0 (and *out, which may be NULL),
 * -EINVAL (bad request: sha256, size, URL or version) or -ENOMEM. */
int download_get(struct download_manager *dm, const struct download_request *req,
    const struct download_callbacks *cb, struct download_waiter **out);

/* Leaves a download: no more callbacks. When the last waiter leaves, the transfer stops and the
 * partial file is kept for a later resume. A no-op from the waiter's own done callback. Accepts
 * NULL. */
void download_waiter_cancel(struct download_waiter *w);

/* Answers a refresh request with the URL of a fresh latest answer. If that answer names another
 * artifact (sha256 differs), the download fails: the release changed under it. Returns 0,
 * -ESTALE (no refresh was asked of this waiter), -EINVAL (bad URL or sha256). */
int download_waiter_set_url(
    struct download_waiter *w, const char *sha256, const char *url, int64_t fetched);

/* Answers a refresh request with a failure (e.g. Memfault unreachable); the download fails
 * with message and keeps its partial file. Returns 0 or -ESTALE. */
int download_waiter_url_failed(struct download_waiter *w, const char *message);

/* Progress of the download of sha256. Returns 0, or -ENOENT if none runs. */
int download_get_progress(
    const struct download_manager *dm, const char *sha256, struct download_progress *out);

/* Calls cb for every running download; stops at and returns cb's first non-zero value. */
int download_foreach(const struct download_manager *dm,
    int (*cb)(const struct download_progress *p, void *arg), void *arg);

#endif
