/* The Memfault stand-in (see mockmf.h): evhttp behind OpenSSL bufferevents, the latest-release
 * logic, a signed-URL CDN with Range support, canned responses and the request log. */
#include "mockmf.h"

#include "hex.h"
#include "mockmf_cert.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <zlib.h>

struct mockmf_payload {
	TAILQ_ENTRY(mockmf_payload) entry;
	char *name;
	unsigned char *data;
	size_t len;
	char sha256[65];
	char sha1[41];
	char md5[33];
};

struct mockmf_art {
	struct mockmf_payload *payload;
	char *hardware_version;
	char *type;
	char *sha256;
	uint64_t file_size;
	bool no_md5;
	int64_t id;
};

struct mockmf_rel {
	TAILQ_ENTRY(mockmf_rel) entry;
	char *hardware_version;
	char *software_type;
	char *version;
	char *display_name;
	char *notes;
	bool is_delta;
	char **devices; /* NULL-terminated, or NULL for everyone */
	struct mockmf_art *arts;
	size_t n_arts;
	int64_t id;
};

struct mockmf_canned {
	TAILQ_ENTRY(mockmf_canned) entry;
	char *path;
	struct mockmf_response r; /* strings owned */
	unsigned left;
};

/* A reply sent piecewise (chunked, dripped or cut), alive until finished or its connection
 * closes. */
struct mockmf_reply {
	TAILQ_ENTRY(mockmf_reply) entry;
	struct mockmf *m;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	struct evbuffer *rest;
	size_t piece; /* bytes per step */
	unsigned drip_ms;
	bool cut; /* stop after cut_left bytes and cut the connection */
	size_t cut_left;
	struct event *timer;
};

struct mockmf {
	struct event_base *base;
	struct evhttp *http;
	SSL_CTX *ssl;
	struct mockmf_pki pki;
	char dir[PATH_MAX];
	bool own_dir;
	char ca_file[PATH_MAX + 8];
	char base_url[64];
	uint16_t port;
	char *key;
	FILE *log;
	TAILQ_HEAD(, mockmf_payload) payloads;
	TAILQ_HEAD(, mockmf_rel) releases;
	TAILQ_HEAD(, mockmf_canned) canned;
	TAILQ_HEAD(, mockmf_reply) replies;
	struct mockmf_request *reqlog;
	size_t n_reqlog;
	size_t cap_reqlog;
	uint64_t sig_next;       /* signature of the next URL handed out */
	uint64_t sig_valid_from; /* signatures below this have expired */
	int64_t next_id;
};

static char *
mockmf_strdup0(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

static int
mockmf_digest(const char *alg, const void *data, size_t len, char *hex)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen;
	EVP_MD *type = EVP_MD_fetch(NULL, alg, NULL);
	int ok;

	if (type == NULL)
		return -EIO;
	ok = EVP_Digest(data, len, md, &mdlen, type, NULL);
	EVP_MD_free(type);
	if (ok != 1)
		return -EIO;
	hex_encode(md, mdlen, hex);
	return 0;
}

void
mockmf_http_date(time_t t, char *buf, size_t bufsz)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, bufsz, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* ---- request log ---- */

static void
mockmf_request_clear(struct mockmf_request *e)
{
	free(e->path);
	free(e->query);
	free(e->range);
	free(e->accept_encoding);
	free(e->accept);
	free(e->user_agent);
	free(e->device_serial);
	free(e->hardware_version);
	free(e->software_type);
	free(e->current_version);
	memset(e, 0, sizeof(*e));
}

size_t
mockmf_log_count(const struct mockmf *m)
{
	return m->n_reqlog;
}

const struct mockmf_request *
mockmf_log_get(const struct mockmf *m, size_t i)
{
	return i < m->n_reqlog ? &m->reqlog[i] : NULL;
}

size_t
mockmf_requests(const struct mockmf *m, const char *path)
{
	size_t i, n = 0;

	for (i = 0; i < m->n_reqlog; i++)
		if (m->reqlog[i].path != NULL && strcmp(m->reqlog[i].path, path) == 0)
			n++;
	return n;
}

void
mockmf_log_clear(struct mockmf *m)
{
	size_t i;

	for (i = 0; i < m->n_reqlog; i++)
		mockmf_request_clear(&m->reqlog[i]);
	m->n_reqlog = 0;
}

/* Appends an entry for req and returns its index (entries move when the log grows). */
static ssize_t
mockmf_log_add(struct mockmf *m, struct evhttp_request *req)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evkeyvalq params;
	struct mockmf_request *e;
	const char *q, *key;

	if (m->n_reqlog == m->cap_reqlog) {
		size_t cap = m->cap_reqlog != 0 ? 2 * m->cap_reqlog : 64;
		struct mockmf_request *p = realloc(m->reqlog, cap * sizeof(*p));

		if (p == NULL)
			return -1;
		m->reqlog = p;
		m->cap_reqlog = cap;
	}
	e = &m->reqlog[m->n_reqlog];
	memset(e, 0, sizeof(*e));
	e->path = strdup(evhttp_uri_get_path(uri) != NULL ? evhttp_uri_get_path(uri) : "/");
	q = evhttp_uri_get_query(uri);
	e->query = mockmf_strdup0(q);
	e->range = mockmf_strdup0(evhttp_find_header(in, "Range"));
	e->accept_encoding = mockmf_strdup0(evhttp_find_header(in, "Accept-Encoding"));
	e->accept = mockmf_strdup0(evhttp_find_header(in, "Accept"));
	e->user_agent = mockmf_strdup0(evhttp_find_header(in, "User-Agent"));
	key = evhttp_find_header(in, "Memfault-Project-Key");
	e->key_ok = key != NULL && m->key != NULL && strcmp(key, m->key) == 0;
	TAILQ_INIT(&params);
	if (q != NULL && evhttp_parse_query_str(q, &params) == 0) {
		e->device_serial = mockmf_strdup0(evhttp_find_header(&params, "device_serial"));
		e->hardware_version =
		    mockmf_strdup0(evhttp_find_header(&params, "hardware_version"));
		e->software_type = mockmf_strdup0(evhttp_find_header(&params, "software_type"));
		e->current_version = mockmf_strdup0(evhttp_find_header(&params, "current_version"));
	}
	evhttp_clear_headers(&params);
	return (ssize_t)m->n_reqlog++;
}

/* ---- sending ---- */

static void
mockmf_reply_free(struct mockmf_reply *r)
{
	TAILQ_REMOVE(&r->m->replies, r, entry);
	if (r->timer != NULL)
		event_free(r->timer);
	evbuffer_free(r->rest);
	free(r);
}

/* A connection went away: replies on it stop. A request detached from its dead connection is
 * ours to free (evhttp_send_reply_end does that); one still attached is freed by evhttp. */
static void
mockmf_conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct mockmf *m = arg;
	struct mockmf_reply *r, *next;

	for (r = TAILQ_FIRST(&m->replies); r != NULL; r = next) {
		next = TAILQ_NEXT(r, entry);
		if (r->evcon != evcon)
			continue;
		if (evhttp_request_get_connection(r->req) == NULL)
			evhttp_send_reply_end(r->req);
		mockmf_reply_free(r);
	}
}

static void
mockmf_reply_cut_cb(struct evhttp_connection *evcon, void *arg)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);

	(void)arg;
	/* The peer sees the bytes so far, then the end of the stream without a TLS close_notify;
	 * evhttp notices the EOF and drops the connection, which ends the reply. */
	shutdown(bufferevent_getfd(bev), SHUT_RDWR);
}

static void mockmf_reply_step(struct mockmf_reply *r);

static void
mockmf_reply_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	mockmf_reply_step(arg);
}

static void
mockmf_reply_step(struct mockmf_reply *r)
{
	for (;;) {
		size_t left = evbuffer_get_length(r->rest), n = left;
		struct evbuffer *piece;

		if (n > r->piece)
			n = r->piece;
		if (r->cut && n > r->cut_left)
			n = r->cut_left;
		piece = evbuffer_new();
		if (piece == NULL)
			return;
		evbuffer_remove_buffer(r->rest, piece, n);
		if (r->cut && n > 0 && r->cut_left == n) {
			r->cut_left = 0;
			evhttp_send_reply_chunk_with_cb(r->req, piece, mockmf_reply_cut_cb, r);
			evbuffer_free(piece);
			return; /* the connection's close ends the reply */
		}
		r->cut_left -= r->cut ? n : 0;
		evhttp_send_reply_chunk(r->req, piece);
		evbuffer_free(piece);
		if (left == n) {
			evhttp_send_reply_end(r->req);
			mockmf_reply_free(r);
			return;
		}
		if (r->drip_ms != 0) {
			struct timeval tv = {
			    r->drip_ms / 1000, (suseconds_t)(r->drip_ms % 1000) * 1000};

			evtimer_add(r->timer, &tv);
			return;
		}
	}
}

static int
mockmf_gzip(const void *in, size_t len, struct evbuffer *out)
{
	z_stream zs;
	unsigned char *buf;
	uLong bound;
	int r = -EIO;

	memset(&zs, 0, sizeof(zs));
	if (len > UINT_MAX || deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
				  Z_DEFAULT_STRATEGY) != Z_OK)
		return -EIO;
	bound = deflateBound(&zs, (uLong)len) + 32;
	buf = malloc(bound);
	if (buf != NULL) {
		zs.next_in = (Bytef *)(uintptr_t)in;
		zs.avail_in = (uInt)len;
		zs.next_out = buf;
		zs.avail_out = (uInt)bound;
		if (deflate(&zs, Z_FINISH) == Z_STREAM_END &&
		    evbuffer_add(out, buf, zs.total_out) == 0)
			r = 0;
	}
	free(buf);
	deflateEnd(&zs);
	return r;
}

/* Adds "Name: value\n" lines to the response headers. */
static void
mockmf_add_header_lines(struct evkeyvalq *out, const char *lines)
{
	char *copy, *line, *save = NULL;

	if (lines == NULL || (copy = strdup(lines)) == NULL)
		return;
	for (line = strtok_r(copy, "\r\n", &save); line != NULL;
	     line = strtok_r(NULL, "\r\n", &save)) {
		char *colon = strchr(line, ':'), *v;

		if (colon == NULL)
			continue;
		*colon = '\0';
		for (v = colon + 1; *v == ' '; v++)
			;
		evhttp_remove_header(out, line);
		evhttp_add_header(out, line, v);
	}
	free(copy);
}

/* Sends a complete response, applying the modifiers of mod (may be NULL). */
static void
mockmf_send(struct mockmf *m, struct evhttp_request *req, ssize_t logi, int status,
    const char *headers, const void *body, size_t len, const struct mockmf_response *mod)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *ae = evhttp_find_header(in, "Accept-Encoding");
	struct evbuffer *buf = evbuffer_new();
	struct mockmf_reply *r;
	char num[32];
	size_t total;

	if (logi >= 0)
		m->reqlog[logi].status = status;
	if (m->log != NULL && logi >= 0) {
		const struct mockmf_request *e = &m->reqlog[logi];

		fprintf(m->log, "mockmf: GET %s%s%s%s%s -> %d\n", e->path, e->query ? "?" : "",
		    e->query ? e->query : "", e->range ? " Range: " : "", e->range ? e->range : "",
		    status);
		fflush(m->log);
	}
	if (buf == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	mockmf_add_header_lines(out, headers);
	if (mod != NULL && (mod->flags & MOCKMF_GZIP) && ae != NULL && strstr(ae, "gzip") != NULL &&
	    mockmf_gzip(body, len, buf) == 0) {
		evhttp_add_header(out, "Content-Encoding", "gzip");
	} else {
		evbuffer_drain(buf, evbuffer_get_length(buf));
		evbuffer_add(buf, body, len);
	}
	if (mod == NULL ||
	    (!(mod->flags & MOCKMF_CHUNKED) && mod->cut_after == 0 && mod->drip_ms == 0)) {
		evhttp_send_reply(req, status, NULL, buf);
		evbuffer_free(buf);
		return;
	}
	total = evbuffer_get_length(buf);
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		evbuffer_free(buf);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	r->m = m;
	r->req = req;
	r->evcon = evhttp_request_get_connection(req);
	r->rest = buf;
	r->cut = mod->cut_after != 0;
	r->cut_left = mod->cut_after;
	r->drip_ms = mod->drip_ms;
	r->piece = total;
	if (mod->drip_ms != 0)
		r->piece = mod->drip_bytes != 0 ? mod->drip_bytes : 1;
	else if (mod->flags & MOCKMF_CHUNKED)
		r->piece = total / 3 + 1;
	r->timer = evtimer_new(m->base, mockmf_reply_timer_cb, r);
	if (r->timer == NULL) {
		evbuffer_free(buf);
		free(r);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	TAILQ_INSERT_TAIL(&m->replies, r, entry);
	if (!(mod->flags & MOCKMF_CHUNKED)) {
		snprintf(num, sizeof(num), "%zu", total);
		evhttp_add_header(out, "Content-Length", num);
	}
	evhttp_send_reply_start(req, status, NULL);
	mockmf_reply_step(r);
}

static void
mockmf_send_json(struct mockmf *m, struct evhttp_request *req, ssize_t logi, int status, json_t *j,
    const struct mockmf_response *mod)
{
	char *text = json_dumps(j, JSON_COMPACT);

	evhttp_add_header(
	    evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	mockmf_send(m, req, logi, status, NULL, text, text != NULL ? strlen(text) : 0, mod);
	free(text);
	json_decref(j);
}

static void
mockmf_send_error(struct mockmf *m, struct evhttp_request *req, ssize_t logi, int status,
    const char *message, const struct mockmf_response *mod)
{
	mockmf_send_json(m, req, logi, status,
	    json_pack("{s:{s:i,s:s}}", "error", "http_code", status, "message", message), mod);
}

/* ---- the latest-release endpoint ---- */

static bool
mockmf_rel_for_device(const struct mockmf_rel *rel, const char *serial)
{
	char **d;

	if (rel->devices == NULL)
		return true;
	for (d = rel->devices; *d != NULL; d++)
		if (strcmp(*d, serial) == 0)
			return true;
	return false;
}

static int
mockmf_sign(
    const struct mockmf *m, const struct mockmf_payload *p, uint64_t sig, char *buf, size_t bufsz)
{
	int n = snprintf(buf, bufsz, "%s%s%s?sig=%" PRIu64 "&Expires=%lld", m->base_url,
	    MOCKMF_CDN_PREFIX, p->name, sig, (long long)time(NULL) + 6 * 3600);

	return n < 0 || (size_t)n >= bufsz ? -ENAMETOOLONG : 0;
}

int
mockmf_payload_url(struct mockmf *m, const char *name, char *buf, size_t bufsz)
{
	const struct mockmf_payload *p;

	TAILQ_FOREACH(p, &m->payloads, entry)
	if (strcmp(p->name, name) == 0)
		return mockmf_sign(m, p, m->sig_next++, buf, bufsz);
	return -ENOENT;
}

static json_t *
mockmf_rel_json(struct mockmf *m, const struct mockmf_rel *rel)
{
	json_t *arts = json_array(), *j;
	uint64_t sig = m->sig_next++;
	size_t i;

	for (i = 0; i < rel->n_arts; i++) {
		const struct mockmf_art *a = &rel->arts[i];
		const struct mockmf_payload *p = a->payload;
		char url[512];

		mockmf_sign(m, p, sig, url, sizeof(url));
		json_array_append_new(
		    arts, json_pack("{s:I,s:s,s:s,s:s,s:s,s:I,s:o,s:s,s:s,s:s,s:n,s:s}", "id",
			      (json_int_t)a->id, "created_date", "2026-11-01T10:00:00.123456+00:00",
			      "type", a->type, "hardware_version", a->hardware_version, "filename",
			      p->name, "file_size",
			      (json_int_t)(a->file_size != 0 ? a->file_size : (uint64_t)p->len),
			      "md5", a->no_md5 ? json_null() : json_string(p->md5), "sha1", p->sha1,
			      "sha256", a->sha256 != NULL ? a->sha256 : p->sha256, "build_id", "",
			      "extra_info", "url", url));
	}
	j = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:b,s:n,s:{s:s},s:i,s:o}", "id",
	    (json_int_t)rel->id, "created_date", "2026-11-01T10:00:00.123456+00:00", "version",
	    rel->version, "display_name", rel->display_name, "notes", rel->notes, "revision",
	    "0123abcd", "min_version", "", "must_pass_through", 0, "is_delta", rel->is_delta,
	    "is_forced", "extra_info", "channel", "test", "count_devices", 1, "artifacts", arts);
	return j;
}

static void
mockmf_latest(
    struct mockmf *m, struct evhttp_request *req, ssize_t logi, const struct mockmf_response *mod)
{
	const struct mockmf_request *e = &m->reqlog[logi];
	const struct mockmf_rel *rel, *match = NULL;
	bool known = false;

	if (!e->key_ok) {
		mockmf_send_error(m, req, logi, 403, "Project Key is missing or invalid", mod);
		return;
	}
	if (e->device_serial == NULL || e->hardware_version == NULL || e->software_type == NULL) {
		mockmf_send_error(m, req, logi, 400,
		    "device_serial, hardware_version and software_type are required", mod);
		return;
	}
	TAILQ_FOREACH(rel, &m->releases, entry)
	{
		if (strcmp(rel->hardware_version, e->hardware_version) != 0 ||
		    strcmp(rel->software_type, e->software_type) != 0)
			continue;
		known = true;
		if (mockmf_rel_for_device(rel, e->device_serial))
			match = rel;
	}
	if (!known) {
		mockmf_send_error(
		    m, req, logi, 400, "Hardware Version or Software Type does not exist", mod);
		return;
	}
	if (match == NULL) {
		mockmf_send(m, req, logi, 204, NULL, NULL, 0, mod);
		return;
	}
	if (e->current_version != NULL && strcmp(e->current_version, match->version) == 0) {
		mockmf_send(m, req, logi, 204, "memfault-reason: latest", NULL, 0, mod);
		return;
	}
	mockmf_send_json(m, req, logi, 200, mockmf_rel_json(m, match), mod);
}

/* ---- the CDN ---- */

static void
mockmf_cdn(
    struct mockmf *m, struct evhttp_request *req, ssize_t logi, const struct mockmf_response *mod)
{
	const struct mockmf_request *e = &m->reqlog[logi];
	const char *name = e->path + strlen(MOCKMF_CDN_PREFIX);
	struct evkeyvalq params;
	const struct mockmf_payload *p;
	const char *sigs, *range;
	unsigned long long first = 0, last = 0;
	uint64_t sig = UINT64_MAX;
	char hdr[160];
	int used = 0;

	TAILQ_FOREACH(p, &m->payloads, entry)
	if (strcmp(p->name, name) == 0)
		break;
	if (p == NULL) {
		mockmf_send(m, req, logi, 404, NULL, "no such object\n", 15, mod);
		return;
	}
	TAILQ_INIT(&params);
	if (e->query != NULL && evhttp_parse_query_str(e->query, &params) == 0 &&
	    (sigs = evhttp_find_header(&params, "sig")) != NULL)
		sig = strtoull(sigs, NULL, 10);
	evhttp_clear_headers(&params);
	if (sig >= m->sig_next) {
		mockmf_send(m, req, logi, 403, "Content-Type: application/xml",
		    "<Error><Code>AccessDenied</Code><Message>Invalid signature</Message></Error>",
		    76, mod);
		return;
	}
	if (sig < m->sig_valid_from) {
		mockmf_send(m, req, logi, 403, "Content-Type: application/xml",
		    "<Error><Code>AccessDenied</Code><Message>Request has "
		    "expired</Message></Error>",
		    78, mod);
		return;
	}
	range = e->range;
	if (range != NULL && !(mod != NULL && (mod->flags & MOCKMF_IGNORE_RANGE)) &&
	    sscanf(range, "bytes=%llu-%n", &first, &used) == 1 && used > 0) {
		if (range[used] == '\0')
			last = ULLONG_MAX;
		else if (sscanf(range + used, "%llu", &last) != 1)
			goto full;
		if (first >= p->len || last < first) {
			snprintf(hdr, sizeof(hdr), "Content-Range: bytes */%zu", p->len);
			mockmf_send(m, req, logi, 416, hdr, NULL, 0, mod);
			return;
		}
		if (last >= p->len)
			last = p->len - 1;
		snprintf(hdr, sizeof(hdr),
		    "Content-Type: application/octet-stream\nContent-Range: bytes %llu-%llu/%zu",
		    first, last, p->len);
		mockmf_send(
		    m, req, logi, 206, hdr, p->data + first, (size_t)(last - first + 1), mod);
		return;
	}
full:
	mockmf_send(m, req, logi, 200,
	    "Content-Type: application/octet-stream\nAccept-Ranges: bytes", p->data, p->len, mod);
}

/* ---- dispatch ---- */

static void
mockmf_canned_free(struct mockmf_canned *c)
{
	free(c->path);
	free((char *)c->r.headers);
	free((char *)c->r.body);
	free((char *)c->r.redirect);
	free(c);
}

static void
mockmf_handle(struct evhttp_request *req, void *arg)
{
	struct mockmf *m = arg;
	struct mockmf_canned *c;
	struct mockmf_response mod;
	const char *path;
	ssize_t logi;

	logi = mockmf_log_add(m, req);
	if (logi < 0) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), mockmf_conn_closed, m);
	path = m->reqlog[logi].path;
	TAILQ_FOREACH(c, &m->canned, entry)
	if (strcmp(c->path, path) == 0)
		break;
	memset(&mod, 0, sizeof(mod));
	if (c != NULL) {
		mod = c->r;
		/* keep the strings alive for this request; the entry is freed at the end */
		TAILQ_REMOVE(&m->canned, c, entry);
	}
	if (mod.redirect != NULL) {
		char loc[1024];
		const char *q = m->reqlog[logi].query;

		snprintf(loc, sizeof(loc), "%s%s%s%s", m->base_url, mod.redirect, q ? "?" : "",
		    q ? q : "");
		evhttp_add_header(evhttp_request_get_output_headers(req), "Location", loc);
		mockmf_send(
		    m, req, logi, mod.status != 0 ? mod.status : 302, mod.headers, NULL, 0, NULL);
	} else if (mod.status != 0) {
		mockmf_send(m, req, logi, mod.status, mod.headers, mod.body, mod.body_len, &mod);
	} else {
		struct evkeyvalq *out = evhttp_request_get_output_headers(req);

		mockmf_add_header_lines(out, mod.headers);
		if (strcmp(path, MOCKMF_LATEST_PATH) == 0)
			mockmf_latest(m, req, logi, &mod);
		else if (strncmp(path, MOCKMF_CDN_PREFIX, strlen(MOCKMF_CDN_PREFIX)) == 0)
			mockmf_cdn(m, req, logi, &mod);
		else
			mockmf_send(m, req, logi, 404, NULL, "not found\n", 10, &mod);
	}
	if (c != NULL) {
		if (c->left == UINT32_MAX || --c->left > 0)
			TAILQ_INSERT_HEAD(&m->canned, c, entry);
		else
			mockmf_canned_free(c);
	}
}

int
mockmf_push(struct mockmf *m, const char *path, const struct mockmf_response *r)
{
	struct mockmf_canned *c = calloc(1, sizeof(*c));
	size_t len;

	if (c == NULL)
		return -ENOMEM;
	c->r = *r;
	len = r->body != NULL ? (r->body_len != 0 ? r->body_len : strlen(r->body)) : 0;
	c->path = strdup(path);
	c->r.headers = mockmf_strdup0(r->headers);
	c->r.redirect = mockmf_strdup0(r->redirect);
	c->r.body = NULL;
	c->r.body_len = len;
	if (len > 0) {
		char *b = malloc(len);

		if (b != NULL)
			memcpy(b, r->body, len);
		c->r.body = b;
	}
	c->left = r->count != 0 ? r->count : 1;
	if (c->path == NULL || (r->headers != NULL && c->r.headers == NULL) ||
	    (r->redirect != NULL && c->r.redirect == NULL) || (len > 0 && c->r.body == NULL)) {
		mockmf_canned_free(c);
		return -ENOMEM;
	}
	TAILQ_INSERT_TAIL(&m->canned, c, entry);
	return 0;
}

void
mockmf_clear(struct mockmf *m, const char *path)
{
	struct mockmf_canned *c, *next;

	for (c = TAILQ_FIRST(&m->canned); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		if (path == NULL || strcmp(c->path, path) == 0) {
			TAILQ_REMOVE(&m->canned, c, entry);
			mockmf_canned_free(c);
		}
	}
}

void
mockmf_expire_urls(struct mockmf *m)
{
	m->sig_valid_from = m->sig_next;
}

int
mockmf_set_project_key(struct mockmf *m, const char *key)
{
	char *k = strdup(key);

	if (k == NULL)
		return -ENOMEM;
	free(m->key);
	m->key = k;
	return 0;
}

/* ---- payloads and releases ---- */

int
mockmf_add_payload(struct mockmf *m, const char *name, const void *data, size_t len)
{
	struct mockmf_payload *p;

	if (name == NULL || *name == '\0' ||
	    strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			 "0123456789._-") != strlen(name))
		return -EINVAL;
	TAILQ_FOREACH(p, &m->payloads, entry)
	if (strcmp(p->name, name) == 0)
		return -EEXIST;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->name = strdup(name);
	p->data = malloc(len != 0 ? len : 1);
	if (p->name == NULL || p->data == NULL) {
		free(p->name);
		free(p->data);
		free(p);
		return -ENOMEM;
	}
	memcpy(p->data, data, len);
	p->len = len;
	if (mockmf_digest("SHA256", data, len, p->sha256) < 0 ||
	    mockmf_digest("SHA1", data, len, p->sha1) < 0 ||
	    mockmf_digest("MD5", data, len, p->md5) < 0) {
		free(p->name);
		free(p->data);
		free(p);
		return -EIO;
	}
	TAILQ_INSERT_TAIL(&m->payloads, p, entry);
	return 0;
}

static void
mockmf_rel_free(struct mockmf_rel *rel)
{
	size_t i;
	char **d;

	if (rel == NULL)
		return;
	for (i = 0; i < rel->n_arts; i++) {
		free(rel->arts[i].hardware_version);
		free(rel->arts[i].type);
		free(rel->arts[i].sha256);
	}
	free(rel->arts);
	for (d = rel->devices; d != NULL && *d != NULL; d++)
		free(*d);
	free(rel->devices);
	free(rel->hardware_version);
	free(rel->software_type);
	free(rel->version);
	free(rel->display_name);
	free(rel->notes);
	free(rel);
}

int
mockmf_add_release(struct mockmf *m, const struct mockmf_release *r)
{
	struct mockmf_artifact one = {.payload = r->payload};
	const struct mockmf_artifact *arts = r->artifacts;
	size_t n = r->n_artifacts, i;
	struct mockmf_rel *rel;
	char dn[128];

	if (r->hardware_version == NULL || r->software_type == NULL || r->version == NULL)
		return -EINVAL;
	if (n == 0) {
		if (r->payload == NULL)
			return -EINVAL;
		arts = &one;
		n = 1;
	}
	rel = calloc(1, sizeof(*rel));
	if (rel == NULL)
		return -ENOMEM;
	snprintf(dn, sizeof(dn), "Release %s", r->version);
	rel->hardware_version = strdup(r->hardware_version);
	rel->software_type = strdup(r->software_type);
	rel->version = strdup(r->version);
	rel->display_name = strdup(r->display_name != NULL ? r->display_name : dn);
	rel->notes = strdup(r->notes != NULL ? r->notes : "");
	rel->is_delta = r->is_delta;
	rel->id = ++m->next_id;
	rel->arts = calloc(n, sizeof(*rel->arts));
	if (rel->hardware_version == NULL || rel->software_type == NULL || rel->version == NULL ||
	    rel->display_name == NULL || rel->notes == NULL || rel->arts == NULL)
		goto nomem;
	rel->n_arts = n;
	for (i = 0; i < n; i++) {
		struct mockmf_art *a = &rel->arts[i];
		struct mockmf_payload *p;

		TAILQ_FOREACH(p, &m->payloads, entry)
		if (arts[i].payload != NULL && strcmp(p->name, arts[i].payload) == 0)
			break;
		if (p == NULL) {
			mockmf_rel_free(rel);
			return -ENOENT;
		}
		a->payload = p;
		a->hardware_version =
		    strdup(arts[i].hardware_version != NULL ? arts[i].hardware_version
							    : r->hardware_version);
		a->type = strdup(arts[i].type != NULL ? arts[i].type : "firmware");
		a->sha256 = mockmf_strdup0(arts[i].sha256);
		a->file_size = arts[i].file_size;
		a->no_md5 = arts[i].no_md5;
		a->id = ++m->next_id;
		if (a->hardware_version == NULL || a->type == NULL ||
		    (arts[i].sha256 != NULL && a->sha256 == NULL))
			goto nomem;
	}
	if (r->devices != NULL) {
		size_t nd = 0;

		while (r->devices[nd] != NULL)
			nd++;
		rel->devices = calloc(nd + 1, sizeof(char *));
		if (rel->devices == NULL)
			goto nomem;
		for (i = 0; i < nd; i++)
			if ((rel->devices[i] = strdup(r->devices[i])) == NULL)
				goto nomem;
	}
	TAILQ_INSERT_TAIL(&m->releases, rel, entry);
	return 0;
nomem:
	mockmf_rel_free(rel);
	return -ENOMEM;
}

/* ---- life cycle ---- */

static struct bufferevent *
mockmf_bevcb(struct event_base *base, void *arg)
{
	struct mockmf *m = arg;
	SSL *ssl = SSL_new(m->ssl);

	if (ssl == NULL)
		return NULL;
	return bufferevent_openssl_socket_new(
	    base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
}

static SSL_CTX *
mockmf_ssl_ctx(const struct mockmf_pki *pki, enum mockmf_cert which)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL)
		return NULL;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_use_certificate(ctx, which == MOCKMF_CERT_GOOD ? pki->good : pki->wrong) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, pki->server_key) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

struct mockmf *
mockmf_new(struct event_base *base, const struct mockmf_options *opt)
{
	struct evhttp_bound_socket *bound;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	const char *addr = opt->address != NULL ? opt->address : "127.0.0.1";
	struct mockmf *m;
	int r;

	/* A peer may vanish mid-reply (that is what several tests do); writes must fail with
	 * EPIPE rather than kill the process. */
	signal(SIGPIPE, SIG_IGN);
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	m->base = base;
	m->log = opt->log;
	TAILQ_INIT(&m->payloads);
	TAILQ_INIT(&m->releases);
	TAILQ_INIT(&m->canned);
	TAILQ_INIT(&m->replies);
	m->sig_next = 1;
	if (opt->project_key != NULL && mockmf_set_project_key(m, opt->project_key) < 0)
		goto fail;
	if (opt->dir != NULL) {
		snprintf(m->dir, sizeof(m->dir), "%s", opt->dir);
	} else {
		const char *tmp = getenv("TMPDIR");

		snprintf(m->dir, sizeof(m->dir), "%s/otagw-mockmf-XXXXXX",
		    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
		if (mkdtemp(m->dir) == NULL) {
			fprintf(stderr, "mockmf: mkdtemp %s: %s\n", m->dir, strerror(errno));
			goto fail;
		}
		m->own_dir = true;
	}
	snprintf(m->ca_file, sizeof(m->ca_file), "%s/ca.pem", m->dir);
	if (mockmf_pki_make(&m->pki) < 0) {
		fprintf(stderr, "mockmf: cannot generate the test certificates\n");
		goto fail;
	}
	if ((r = mockmf_pki_write_ca(&m->pki, m->ca_file)) < 0) {
		fprintf(stderr, "mockmf: write %s: %s\n", m->ca_file, strerror(-r));
		goto fail;
	}
	m->ssl = mockmf_ssl_ctx(&m->pki, opt->cert);
	m->http = evhttp_new(base);
	if (m->ssl == NULL || m->http == NULL)
		goto fail;
	evhttp_set_bevcb(m->http, mockmf_bevcb, m);
	evhttp_set_gencb(m->http, mockmf_handle, m);
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET);
	bound = evhttp_bind_socket_with_handle(m->http, addr, opt->port);
	if (bound == NULL) {
		fprintf(stderr, "mockmf: cannot listen on %s:%u\n", addr, opt->port);
		goto fail;
	}
	if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sslen) < 0)
		goto fail;
	m->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);
	snprintf(m->base_url, sizeof(m->base_url), "https://%s:%u", addr, m->port);
	return m;
fail:
	mockmf_free(m);
	return NULL;
}

void
mockmf_free(struct mockmf *m)
{
	struct mockmf_payload *p;
	struct mockmf_rel *rel;
	struct mockmf_reply *r;

	if (m == NULL)
		return;
	/* Closing the connections runs mockmf_conn_closed for replies still in flight. */
	if (m->http != NULL)
		evhttp_free(m->http);
	while ((r = TAILQ_FIRST(&m->replies)) != NULL)
		mockmf_reply_free(r);
	mockmf_clear(m, NULL);
	while ((p = TAILQ_FIRST(&m->payloads)) != NULL) {
		TAILQ_REMOVE(&m->payloads, p, entry);
		free(p->name);
		free(p->data);
		free(p);
	}
	while ((rel = TAILQ_FIRST(&m->releases)) != NULL) {
		TAILQ_REMOVE(&m->releases, rel, entry);
		mockmf_rel_free(rel);
	}
	mockmf_log_clear(m);
	free(m->reqlog);
	SSL_CTX_free(m->ssl);
	mockmf_pki_clear(&m->pki);
	if (m->ca_file[0] != '\0')
		unlink(m->ca_file);
	if (m->own_dir)
		rmdir(m->dir);
	free(m->key);
	free(m);
}

uint16_t
mockmf_port(const struct mockmf *m)
{
	return m->port;
}

const char *
mockmf_ca_file(const struct mockmf *m)
{
	return m->ca_file;
}

const char *
mockmf_base_url(const struct mockmf *m)
{
	return m->base_url;
}
