/* libcurl multi on libevent (see http.h). One struct for the client (multi handle, timer), one per
 * transfer (easy handle, error buffer, response headers and body), one per socket curl watches.
 * curl tells us which sockets and what timeout to wait for; the loop tells curl what happened
 * (curl_multi_socket_action), and finished transfers are drained after every action. */
#include "http.h"

#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <curl/curl.h>
#include <event2/event.h>

/* Bounds on what we keep of a response's headers; the rest is ignored, never an error. */
#define HTTP_HEADERS_MAX      64
#define HTTP_HEADER_BYTES_MAX 16384
#define HTTP_URL_LOG_MAX      256
#define HTTP_BODY_INITIAL     4096

struct http_header {
	char *name;
	char *value;
};

enum http_req_state {
	HTTP_REQ_RUNNING,
	HTTP_REQ_CANCELLED, /* waiting for the reap event to take it out of the multi handle */
	HTTP_REQ_DONE,      /* on_done is running */
};

struct http_request {
	TAILQ_ENTRY(http_request) entry;
	struct http *http;
	CURL *easy;
	struct curl_slist *headers_out;
	enum http_req_state state;
	char errbuf[CURL_ERROR_SIZE];
	char msg[CURL_ERROR_SIZE + 64];
	char url_log[HTTP_URL_LOG_MAX];

	uint64_t body_max;
	http_headers_fn on_headers;
	http_body_fn on_body;
	http_done_fn on_done;
	void *userdata;

	long status;
	bool headers_called;
	struct http_header hdr[HTTP_HEADERS_MAX];
	size_t n_hdr;
	size_t hdr_bytes;
	char *body;
	size_t body_len;
	size_t body_cap;
	uint64_t body_bytes;
	enum http_error fail; /* set when one of our callbacks stopped the transfer */
	int cb_error;
};

struct http_sock {
	LIST_ENTRY(http_sock) entry;
	curl_socket_t fd;
	struct event *ev;
};

struct http {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	struct event *reap;
	TAILQ_HEAD(, http_request) requests;
	LIST_HEAD(, http_sock) socks;
	size_t pending;
	char *ca_file;
	char *proxy;
	bool allow_http;
	long connect_timeout_s;
	long low_speed_limit;
	long low_speed_time_s;
	long max_redirects;
};

static void http_check_info(struct http *http);

static void
http_headers_clear(struct http_request *req)
{
	size_t i;

	for (i = 0; i < req->n_hdr; i++)
		free(req->hdr[i].name);
	req->n_hdr = 0;
	req->hdr_bytes = 0;
}

static void
http_request_free(struct http_request *req)
{
	if (req == NULL)
		return;
	if (req->easy != NULL)
		curl_easy_cleanup(req->easy);
	curl_slist_free_all(req->headers_out);
	http_headers_clear(req);
	free(req->body);
	free(req);
}

/* Takes req out of the multi handle and the client's list, then frees it. */
static void
http_request_destroy(struct http_request *req)
{
	struct http *http = req->http;

	curl_multi_remove_handle(http->multi, req->easy);
	TAILQ_REMOVE(&http->requests, req, entry);
	http_request_free(req);
}

static void
http_fail(struct http_request *req, enum http_error e, int cb_error)
{
	if (req->fail == HTTP_ERROR_NONE) {
		req->fail = e;
		req->cb_error = cb_error;
	}
}

/* Keeps the headers of the last response only: a redirect or a 100 Continue starts over. */
static size_t
http_header_cb(char *data, size_t size, size_t nitems, void *userdata)
{
	struct http_request *req = userdata;
	size_t n = size * nitems, len = n, nlen;
	const char *colon, *v;
	char *copy;

	if (req->state != HTTP_REQ_RUNNING)
		return 0;
	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		http_headers_clear(req);
		return n;
	}
	while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n'))
		len--;
	colon = memchr(data, ':', len);
	if (colon == NULL || colon == data || data[0] == ' ' || data[0] == '\t')
		return n; /* blank line, obsolete folding or junk: nothing to keep */
	if (req->n_hdr >= HTTP_HEADERS_MAX || req->hdr_bytes + len > HTTP_HEADER_BYTES_MAX)
		return n;
	nlen = (size_t)(colon - data);
	v = colon + 1;
	while (v < data + len && (*v == ' ' || *v == '\t'))
		v++;
	while (len > 0 && (data[len - 1] == ' ' || data[len - 1] == '\t'))
		len--;
	copy = malloc(len + 2);
	if (copy == NULL)
		return n;
	memcpy(copy, data, nlen);
	copy[nlen] = '\0';
	memcpy(copy + nlen + 1, v, (size_t)(data + len - v));
	copy[nlen + 1 + (size_t)(data + len - v)] = '\0';
	req->hdr[req->n_hdr].name = copy;
	req->hdr[req->n_hdr].value = copy + nlen + 1;
	req->n_hdr++;
	req->hdr_bytes += len;
	return n;
}

static int
http_body_append(struct http_request *req, const char *data, size_t n)
{
	size_t want = req->body_len + n + 1;

	if (want > req->body_cap) {
		size_t cap = req->body_cap != 0 ? req->body_cap : HTTP_BODY_INITIAL;
		char *p;

		while (cap < want && cap <= SIZE_MAX / 2)
			cap *= 2;
		if (cap > req->body_max + 1)
			cap = (size_t)req->body_max + 1;
		p = realloc(req->body, cap);
		if (p == NULL)
			return -ENOMEM;
		req->body = p;
		req->body_cap = cap;
	}
	memcpy(req->body + req->body_len, data, n);
	req->body_len += n;
	req->body[req->body_len] = '\0';
	return 0;
}

/* Returning anything but n makes libcurl stop the transfer with CURLE_WRITE_ERROR; req->fail says
 * why. */
static size_t
http_write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct http_request *req = userdata;
	size_t n = size * nmemb;
	int r;

	if (req->state != HTTP_REQ_RUNNING)
		return 0;
	if (!req->headers_called) {
		req->headers_called = true;
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->status);
		if (req->on_headers != NULL) {
			r = req->on_headers(req, req->status, req->userdata);
			if (r < 0) {
				http_fail(req, HTTP_ERROR_ABORTED, r);
				return 0;
			}
			if (req->state != HTTP_REQ_RUNNING)
				return 0;
		}
	}
	if (n > req->body_max - req->body_bytes) {
		http_fail(req, HTTP_ERROR_TOO_LARGE, 0);
		return 0;
	}
	req->body_bytes += n;
	if (req->on_body != NULL) {
		r = req->on_body(req, data, n, req->userdata);
		if (r < 0) {
			http_fail(req, HTTP_ERROR_ABORTED, r);
			return 0;
		}
		if (req->state != HTTP_REQ_RUNNING)
			return 0;
	} else if (http_body_append(req, data, n) < 0) {
		http_fail(req, HTTP_ERROR_INTERNAL, -ENOMEM);
		return 0;
	}
	return n;
}

static enum http_error
http_classify(CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return HTTP_ERROR_NONE;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return HTTP_ERROR_DNS;
	case CURLE_COULDNT_CONNECT:
		return HTTP_ERROR_CONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		return HTTP_ERROR_TIMEOUT;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_USE_SSL_FAILED:
		return HTTP_ERROR_TLS;
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return HTTP_ERROR_CUT;
	case CURLE_FILESIZE_EXCEEDED:
		return HTTP_ERROR_TOO_LARGE;
	case CURLE_TOO_MANY_REDIRECTS:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_RANGE_ERROR:
	case CURLE_URL_MALFORMAT:
		return HTTP_ERROR_PROTOCOL;
	default:
		return HTTP_ERROR_INTERNAL;
	}
}

/* Builds the result of a finished transfer and hands it to on_done, then frees the request. */
static void
http_request_finish(struct http_request *req, CURLcode rc)
{
	struct http *http = req->http;
	struct http_result res = {0};

	curl_multi_remove_handle(http->multi, req->easy);
	if (req->state == HTTP_REQ_CANCELLED) {
		TAILQ_REMOVE(&http->requests, req, entry);
		http_request_free(req);
		return;
	}
	http->pending--;
	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->status);
	res.status = req->status;
	res.body_bytes = req->body_bytes;
	if (rc == CURLE_OK) {
		res.error = HTTP_ERROR_NONE;
		snprintf(req->msg, sizeof(req->msg), "HTTP %ld", req->status);
	} else if (req->fail != HTTP_ERROR_NONE) {
		res.error = req->fail;
		res.cb_error = req->cb_error;
		switch (req->fail) {
		case HTTP_ERROR_TOO_LARGE:
			snprintf(req->msg, sizeof(req->msg),
			    "response body larger than the %" PRIu64 " bytes allowed",
			    req->body_max);
			break;
		case HTTP_ERROR_ABORTED:
			snprintf(req->msg, sizeof(req->msg), "transfer stopped: %s",
			    strerror(-req->cb_error));
			break;
		case HTTP_ERROR_NONE:
		case HTTP_ERROR_DNS:
		case HTTP_ERROR_CONNECT:
		case HTTP_ERROR_TLS:
		case HTTP_ERROR_TIMEOUT:
		case HTTP_ERROR_CUT:
		case HTTP_ERROR_PROTOCOL:
		case HTTP_ERROR_INTERNAL:
			snprintf(req->msg, sizeof(req->msg), "%s", http_error_to_string(req->fail));
			break;
		}
	} else {
		res.error = http_classify(rc);
		if (res.error == HTTP_ERROR_TOO_LARGE)
			snprintf(req->msg, sizeof(req->msg),
			    "response body larger than the %" PRIu64 " bytes allowed",
			    req->body_max);
		else
			snprintf(req->msg, sizeof(req->msg), "%s",
			    req->errbuf[0] != '\0' ? req->errbuf : curl_easy_strerror(rc));
	}
	res.message = req->msg;
	if (req->on_body == NULL) {
		res.body = req->body != NULL ? req->body : "";
		res.body_len = req->body_len;
	}
	log_debug("http: GET %s: %s (%s, %" PRIu64 " body bytes)", req->url_log,
	    http_error_to_string(res.error), req->msg, req->body_bytes);
	req->state = HTTP_REQ_DONE;
	req->on_done(req, &res, req->userdata);
	TAILQ_REMOVE(&http->requests, req, entry);
	http_request_free(req);
}

/* Drains finished transfers; runs after every curl_multi_socket_action. */
static void
http_check_info(struct http *http)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(http->multi, &left)) != NULL) {
		struct http_request *req = NULL;
		CURL *easy = msg->easy_handle;
		CURLcode rc = msg->data.result;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&req);
		if (req != NULL)
			http_request_finish(req, rc);
	}
}

static void
http_socket_action(struct http *http, curl_socket_t fd, int action)
{
	int running = 0;
	CURLMcode mc;

	mc = curl_multi_socket_action(http->multi, fd, action, &running);
	if (mc != CURLM_OK)
		log_warn("http: curl_multi_socket_action: %s, ignoring", curl_multi_strerror(mc));
	http_check_info(http);
	if (running <= 0)
		evtimer_del(http->timer);
}

static void
http_event_cb(evutil_socket_t fd, short kind, void *arg)
{
	int action =
	    ((kind & EV_READ) ? CURL_CSELECT_IN : 0) | ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0);

	http_socket_action(arg, fd, action);
}

static void
http_timer_cb(evutil_socket_t fd, short kind, void *arg)
{
	(void)fd;
	(void)kind;
	http_socket_action(arg, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_TIMERFUNCTION: one timer for the whole client. A zero timeout is scheduled through the
 * loop rather than acted on here, since curl must not be re-entered from its own callback. */
static int
http_timer_update(CURLM *multi, long timeout_ms, void *userdata)
{
	struct http *http = userdata;
	struct timeval tv;

	(void)multi;
	if (timeout_ms < 0) {
		evtimer_del(http->timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	return evtimer_add(http->timer, &tv) == 0 ? 0 : -1;
}

/* CURLMOPT_SOCKETFUNCTION: keeps one persistent event per socket, matching what curl waits for. */
static int
http_socket_update(CURL *easy, curl_socket_t fd, int what, void *userdata, void *socketp)
{
	struct http *http = userdata;
	struct http_sock *hs = socketp;
	short kind;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (hs != NULL) {
			LIST_REMOVE(hs, entry);
			event_free(hs->ev);
			free(hs);
			curl_multi_assign(http->multi, fd, NULL);
		}
		return 0;
	}
	kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
		       ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
	if (hs == NULL) {
		hs = calloc(1, sizeof(*hs));
		if (hs == NULL)
			return -1;
		hs->fd = fd;
		hs->ev = event_new(http->base, fd, kind, http_event_cb, http);
		if (hs->ev == NULL) {
			free(hs);
			return -1;
		}
		LIST_INSERT_HEAD(&http->socks, hs, entry);
		curl_multi_assign(http->multi, fd, hs);
	} else {
		event_del(hs->ev);
		event_assign(hs->ev, http->base, fd, kind, http_event_cb, http);
	}
	return event_add(hs->ev, NULL) == 0 ? 0 : -1;
}

/* Cancelled requests leave the multi handle here, outside any libcurl callback. */
static void
http_reap_cb(evutil_socket_t fd, short kind, void *arg)
{
	struct http *http = arg;
	struct http_request *req, *next;

	(void)fd;
	(void)kind;
	for (req = TAILQ_FIRST(&http->requests); req != NULL; req = next) {
		next = TAILQ_NEXT(req, entry);
		if (req->state == HTTP_REQ_CANCELLED)
			http_request_destroy(req);
	}
}

struct http *
http_new(struct event_base *base, const struct http_config *cfg)
{
	struct http *http;

	if (base == NULL || cfg == NULL)
		return NULL;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return NULL;
	http = calloc(1, sizeof(*http));
	if (http == NULL)
		goto fail_global;
	http->base = base;
	TAILQ_INIT(&http->requests);
	LIST_INIT(&http->socks);
	http->allow_http = cfg->allow_http;
	http->connect_timeout_s = cfg->connect_timeout_s != 0 ? (long)cfg->connect_timeout_s : 30;
	http->low_speed_limit = cfg->low_speed_limit != 0 ? (long)cfg->low_speed_limit : 512;
	http->low_speed_time_s = cfg->low_speed_time_s != 0 ? (long)cfg->low_speed_time_s : 60;
	http->max_redirects = cfg->max_redirects != 0 ? (long)cfg->max_redirects : 5;
	if ((cfg->ca_file != NULL && (http->ca_file = strdup(cfg->ca_file)) == NULL) ||
	    (cfg->proxy != NULL && (http->proxy = strdup(cfg->proxy)) == NULL))
		goto fail;
	http->timer = evtimer_new(base, http_timer_cb, http);
	http->reap = event_new(base, -1, 0, http_reap_cb, http);
	http->multi = curl_multi_init();
	if (http->timer == NULL || http->reap == NULL || http->multi == NULL)
		goto fail;
	curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION, http_socket_update);
	curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, http);
	curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION, http_timer_update);
	curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, http);
	return http;
fail:
	if (http->multi != NULL)
		curl_multi_cleanup(http->multi);
	if (http->timer != NULL)
		event_free(http->timer);
	if (http->reap != NULL)
		event_free(http->reap);
	free(http->ca_file);
	free(http->proxy);
	free(http);
fail_global:
	curl_global_cleanup();
	return NULL;
}

void
http_free(struct http *http)
{
	struct http_request *req;
	struct http_sock *hs;

	if (http == NULL)
		return;
	/* clang-analyzer cannot follow TAILQ_REMOVE unlinking req through tqe_prev, so it takes
	 * the next TAILQ_FIRST for the freed req. */
	while ((req = TAILQ_FIRST(&http->requests)) != NULL)
		http_request_destroy(req); /* NOLINT(clang-analyzer-unix.Malloc): see above */
	/* Closing cached connections may still call the socket and timer callbacks. */
	curl_multi_cleanup(http->multi);
	while ((hs = LIST_FIRST(&http->socks)) != NULL) {
		LIST_REMOVE(hs, entry);
		event_free(hs->ev);
		free(hs);
	}
	event_free(http->timer);
	event_free(http->reap);
	free(http->ca_file);
	free(http->proxy);
	free(http);
	curl_global_cleanup();
}

static bool
http_scheme_ok(const struct http *http, const char *url)
{
	if (strncasecmp(url, "https://", 8) == 0)
		return true;
	return http->allow_http && strncasecmp(url, "http://", 7) == 0;
}

#define HTTP_SETOPT(req, opt, val)                                           \
	do {                                                                 \
		if (curl_easy_setopt((req)->easy, (opt), (val)) != CURLE_OK) \
			goto fail;                                           \
	} while (0)

int
http_request_start(
    struct http *http, const struct http_request_spec *spec, struct http_request **out)
{
	const char *protocols;
	struct http_request *req;
	char range[32];
	size_t i;

	if (http == NULL || spec == NULL || spec->url == NULL || spec->on_done == NULL ||
	    spec->body_max == 0 || spec->body_max > SIZE_MAX - 1 ||
	    !http_scheme_ok(http, spec->url))
		return -EINVAL;
	req = calloc(1, sizeof(*req));
	if (req == NULL)
		return -ENOMEM;
	req->http = http;
	req->body_max = spec->body_max;
	req->on_headers = spec->on_headers;
	req->on_body = spec->on_body;
	req->on_done = spec->on_done;
	req->userdata = spec->userdata;
	http_url_for_log(spec->url, req->url_log, sizeof(req->url_log));
	req->easy = curl_easy_init();
	if (req->easy == NULL)
		goto fail;
	for (i = 0; spec->headers != NULL && spec->headers[i] != NULL; i++) {
		struct curl_slist *l = curl_slist_append(req->headers_out, spec->headers[i]);

		if (l == NULL)
			goto fail;
		req->headers_out = l;
	}
	protocols = http->allow_http ? "http,https" : "https";
	HTTP_SETOPT(req, CURLOPT_URL, spec->url);
	HTTP_SETOPT(req, CURLOPT_PRIVATE, req);
	HTTP_SETOPT(req, CURLOPT_ERRORBUFFER, req->errbuf);
	HTTP_SETOPT(req, CURLOPT_NOSIGNAL, 1L);
	HTTP_SETOPT(req, CURLOPT_WRITEFUNCTION, http_write_cb);
	HTTP_SETOPT(req, CURLOPT_WRITEDATA, req);
	HTTP_SETOPT(req, CURLOPT_HEADERFUNCTION, http_header_cb);
	HTTP_SETOPT(req, CURLOPT_HEADERDATA, req);
	HTTP_SETOPT(req, CURLOPT_USERAGENT, "otagw/" OTAGW_VERSION);
	HTTP_SETOPT(req, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
#if LIBCURL_VERSION_NUM >= 0x075500
	HTTP_SETOPT(req, CURLOPT_PROTOCOLS_STR, protocols);
	HTTP_SETOPT(req, CURLOPT_REDIR_PROTOCOLS_STR, protocols);
#else
	HTTP_SETOPT(req, CURLOPT_PROTOCOLS,
	    http->allow_http ? (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS) : (long)CURLPROTO_HTTPS);
	HTTP_SETOPT(req, CURLOPT_REDIR_PROTOCOLS,
	    http->allow_http ? (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS) : (long)CURLPROTO_HTTPS);
	(void)protocols;
#endif
	HTTP_SETOPT(req, CURLOPT_FOLLOWLOCATION, spec->follow_redirects ? 1L : 0L);
	HTTP_SETOPT(req, CURLOPT_MAXREDIRS, http->max_redirects);
	HTTP_SETOPT(req, CURLOPT_SSL_VERIFYPEER, 1L);
	HTTP_SETOPT(req, CURLOPT_SSL_VERIFYHOST, 2L);
	if (http->ca_file != NULL)
		HTTP_SETOPT(req, CURLOPT_CAINFO, http->ca_file);
	if (http->proxy != NULL)
		HTTP_SETOPT(req, CURLOPT_PROXY, http->proxy);
	HTTP_SETOPT(req, CURLOPT_CONNECTTIMEOUT, http->connect_timeout_s);
	HTTP_SETOPT(req, CURLOPT_LOW_SPEED_LIMIT, http->low_speed_limit);
	HTTP_SETOPT(req, CURLOPT_LOW_SPEED_TIME, http->low_speed_time_s);
	HTTP_SETOPT(req, CURLOPT_TIMEOUT, (long)spec->timeout_s);
	HTTP_SETOPT(req, CURLOPT_TCP_KEEPALIVE, 1L);
	if (spec->accept_gzip) {
		HTTP_SETOPT(req, CURLOPT_ACCEPT_ENCODING, "gzip");
	} else {
		/* Only meaningful without encoding: Content-Length then counts body bytes. */
		HTTP_SETOPT(req, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)spec->body_max);
	}
	if (spec->range_start > 0) {
		snprintf(range, sizeof(range), "%" PRIu64 "-", spec->range_start);
		HTTP_SETOPT(req, CURLOPT_RANGE, range);
	}
	if (req->headers_out != NULL)
		HTTP_SETOPT(req, CURLOPT_HTTPHEADER, req->headers_out);
	if (curl_multi_add_handle(http->multi, req->easy) != CURLM_OK)
		goto fail;
	TAILQ_INSERT_TAIL(&http->requests, req, entry);
	http->pending++;
	log_debug("http: GET %s%s", req->url_log, spec->range_start > 0 ? " (range)" : "");
	if (out != NULL)
		*out = req;
	return 0;
fail:
	http_request_free(req);
	return -ENOMEM;
}

void
http_request_cancel(struct http_request *req)
{
	if (req == NULL || req->state != HTTP_REQ_RUNNING)
		return;
	req->state = HTTP_REQ_CANCELLED;
	req->http->pending--;
	event_active(req->http->reap, 0, 0);
}

const char *
http_request_header(const struct http_request *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->n_hdr; i++)
		if (strcasecmp(req->hdr[i].name, name) == 0)
			return req->hdr[i].value;
	return NULL;
}

long
http_request_status(const struct http_request *req)
{
	return req->status;
}

size_t
http_pending(const struct http *http)
{
	return http->pending;
}

/* Parses 1..20 decimal digits at *p without overflow, advancing *p. */
static int
http_parse_u64(const char **p, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*p = s;
	*out = v;
	return 0;
}

int
http_parse_retry_after(const char *v, time_t now, uint32_t max_s, uint32_t *out)
{
	const char *p;
	uint64_t secs;
	time_t t;

	if (v == NULL)
		return -EINVAL;
	while (*v == ' ' || *v == '\t')
		v++;
	p = v;
	if (isdigit((unsigned char)*p)) {
		if (http_parse_u64(&p, &secs) < 0) {
			/* more digits than fit: certainly beyond any sane bound */
			while (isdigit((unsigned char)*p))
				p++;
			secs = UINT64_MAX;
		}
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != '\0')
			return -EINVAL;
		*out = secs > max_s ? max_s : (uint32_t)secs;
		return 0;
	}
	t = curl_getdate(v, NULL);
	if (t == (time_t)-1)
		return -EINVAL;
	if (t <= now)
		secs = 0;
	else
		secs = (uint64_t)(t - now);
	*out = secs > max_s ? max_s : (uint32_t)secs;
	return 0;
}

int
http_parse_content_range(const char *v, uint64_t *first, uint64_t *last, uint64_t *complete)
{
	uint64_t f, l, c;

	if (v == NULL || strncasecmp(v, "bytes", 5) != 0)
		return -EINVAL;
	v += 5;
	if (*v != ' ' && *v != '\t')
		return -EINVAL;
	while (*v == ' ' || *v == '\t')
		v++;
	if (http_parse_u64(&v, &f) < 0 || *v++ != '-' || http_parse_u64(&v, &l) < 0 || *v++ != '/')
		return -EINVAL;
	if (*v == '*') {
		c = UINT64_MAX;
		v++;
	} else if (http_parse_u64(&v, &c) < 0 || l >= c) {
		return -EINVAL;
	}
	while (*v == ' ' || *v == '\t')
		v++;
	if (*v != '\0' || l < f)
		return -EINVAL;
	*first = f;
	*last = l;
	*complete = c;
	return 0;
}

void
http_url_for_log(const char *url, char *buf, size_t bufsz)
{
	size_t n;

	if (bufsz == 0)
		return;
	n = strcspn(url, "?#");
	if (n >= bufsz)
		n = bufsz - 1;
	memcpy(buf, url, n);
	buf[n] = '\0';
}

const char *
http_error_to_string(enum http_error e)
{
	switch (e) {
	case HTTP_ERROR_NONE:
		return "ok";
	case HTTP_ERROR_DNS:
		return "name resolution failed";
	case HTTP_ERROR_CONNECT:
		return "connection failed";
	case HTTP_ERROR_TLS:
		return "TLS failed";
	case HTTP_ERROR_TIMEOUT:
		return "timed out";
	case HTTP_ERROR_CUT:
		return "connection cut";
	case HTTP_ERROR_TOO_LARGE:
		return "response too large";
	case HTTP_ERROR_ABORTED:
		return "aborted";
	case HTTP_ERROR_PROTOCOL:
		return "protocol error";
	case HTTP_ERROR_INTERNAL:
		return "internal error";
	}
	return "unknown error";
}
