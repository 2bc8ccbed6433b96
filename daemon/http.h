/* Asynchronous HTTP(S) client for otagwd: libcurl's multi interface driven by the daemon's one
 * libevent loop through curl_multi_socket_action. The Memfault client and the download manager
 * build on it; nothing here blocks, and no request ever completes synchronously. */
#ifndef OTAGW_HTTP_H
#define OTAGW_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct event_base;
struct http;
struct http_request;

/* Settings shared by every request of one client. Strings are copied by http_new(). */
struct http_config {
	const char *ca_file; /* PEM bundle to trust instead of the system store; NULL: system */
	const char *proxy;   /* proxy URL; NULL: libcurl's environment (https_proxy, no_proxy) */
	bool allow_http;     /* permit plain http:// (tests, local mirrors); else https only */
	unsigned connect_timeout_s; /* TCP + TLS set-up; 0: 30 s */
	unsigned low_speed_limit;   /* bytes/s under which a transfer counts as stalled; 0: 512 */
	unsigned low_speed_time_s;  /* abort after being stalled this long; 0: 60 s */
	unsigned max_redirects;     /* for requests that follow redirects; 0: 5 */
};

/* How a request ended. HTTP_ERROR_NONE means a complete response arrived (any status); every
 * other value is a transport-level failure, with status set if a response had begun. */
enum http_error {
	HTTP_ERROR_NONE,
	HTTP_ERROR_DNS,       /* host (or proxy) name did not resolve */
	HTTP_ERROR_CONNECT,   /* TCP connection refused or unreachable */
	HTTP_ERROR_TLS,       /* handshake failed or certificate/host name not trusted */
	HTTP_ERROR_TIMEOUT,   /* connect, overall or low-speed timeout */
	HTTP_ERROR_CUT,       /* connection closed or reset before the response was complete */
	HTTP_ERROR_TOO_LARGE, /* the body exceeded the request's body_max */
	HTTP_ERROR_ABORTED,   /* an on_headers/on_body callback refused (see cb_error) */
	HTTP_ERROR_PROTOCOL,  /* malformed response, bad encoding, too many or refused redirects */
	HTTP_ERROR_INTERNAL,  /* out of memory or a libcurl failure */
};

/* What on_done receives. Pointers are valid only during the callback. */
struct http_result {
	enum http_error error;
	long status;         /* status of the final response; 0 if none arrived */
	int cb_error;        /* HTTP_ERROR_ABORTED: the negative errno the callback returned */
	const char *message; /* human-readable detail for logs (never a header value); never NULL */
	const char *body;    /* buffered requests: the body, NUL-terminated; else NULL */
	size_t body_len;
	uint64_t body_bytes; /* body bytes received of the final response (both modes) */
};

/* Called once, before the first body byte of the final response (not at all for an empty body).
 * Return 0 to go on or a negative errno to abort (HTTP_ERROR_ABORTED). */
typedef int (*http_headers_fn)(struct http_request *req, long status, void *userdata);
/* Streaming mode: called with each piece of the body. Return 0 or a negative errno to abort. */
typedef int (*http_body_fn)(struct http_request *req, const void *data, size_t len, void *userdata);
/* Called exactly once when the request ends, unless it was cancelled. The request is freed
 * right after it returns; header accessors work during the call. */
typedef void (*http_done_fn)(
    struct http_request *req, const struct http_result *res, void *userdata);

struct http_request_spec {
	const char *url;
	const char *const *headers; /* NULL-terminated "Name: value" lines (copied); may be NULL */
	uint64_t range_start;       /* > 0: send "Range: bytes=N-" */
	uint64_t body_max;          /* body bytes allowed (decoded); more is HTTP_ERROR_TOO_LARGE */
	bool accept_gzip;           /* offer and decode Content-Encoding: gzip (API calls) */
	bool follow_redirects;      /* follow up to max_redirects; never set with secret headers,
				     * libcurl re-sends custom headers to whatever host it is sent */
	unsigned timeout_s;         /* whole request; 0: none (the low-speed limit still applies) */
	http_headers_fn on_headers; /* optional */
	http_body_fn on_body;       /* NULL: buffer the body up to body_max for on_done */
	http_done_fn on_done;       /* required */
	void *userdata;
};

/* Creates a client on base. Returns NULL on failure (out of memory, libcurl init). */
struct http *http_new(struct event_base *base, const struct http_config *cfg);

/* Cancels every pending request without calling their callbacks and frees the client. Must not
 * be called from inside one of this client's callbacks. Accepts NULL. */
void http_free(struct http *http);

/* Starts a request; its callbacks run later from the loop, never from inside this call.
 * On success stores the handle in *out (may be NULL) and returns 0. Errors: -EINVAL (missing
 * url, on_done or body_max, or a scheme other than https, or http when allowed), -ENOMEM. */
int http_request_start(
    struct http *http, const struct http_request_spec *spec, struct http_request **out);

/* Cancels a pending request: its callbacks will not be called again and it is freed from the
 * loop shortly after. Safe from any callback, including the request's own; calling it on a
 * request whose on_done is running is a no-op. Accepts NULL. */
void http_request_cancel(struct http_request *req);

/* The value of response header name (case-insensitive) of the final response, or NULL. Valid in
 * on_headers, on_body and on_done; the string lives until the callback returns. */
const char *http_request_header(const struct http_request *req, const char *name);

/* The final response's status, 0 before one arrived. */
long http_request_status(const struct http_request *req);

/* Number of requests started and not yet finished or cancelled. */
size_t http_pending(const struct http *http);

/* Parses a Retry-After value, delta-seconds or an HTTP-date, into seconds from now (a date in
 * the past gives 0; results are clamped to max_s). Returns 0, or -EINVAL if v is neither. */
int http_parse_retry_after(const char *v, time_t now, uint32_t max_s, uint32_t *out);

/* Parses "bytes FIRST-LAST/COMPLETE" (COMPLETE may be "*", stored as UINT64_MAX). Returns 0, or
 * -EINVAL if malformed or LAST < FIRST. */
int http_parse_content_range(const char *v, uint64_t *first, uint64_t *last, uint64_t *complete);

/* Copies url into buf without its query and fragment (signed CDN URLs carry credentials there),
 * for logs. Always NUL-terminates; truncates to bufsz. */
void http_url_for_log(const char *url, char *buf, size_t bufsz);

const char *http_error_to_string(enum http_error e);

#endif
