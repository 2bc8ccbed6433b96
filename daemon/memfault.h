/* Memfault device API client: asks GET {base_url}/api/v0/releases/latest on behalf of one
 * device and classifies the answer (update, no update, or an error class that says whether and
 * when a retry makes sense, with an operator-facing message). It logs nothing above debug: the
 * per-device check (upstream.c) decides about retries and logs once. */
#ifndef OTAGW_MEMFAULT_H
#define OTAGW_MEMFAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "release.h"

struct http;
struct memfault;
struct memfault_query;

#define MEMFAULT_DEFAULT_BASE_URL "https://device.memfault.com"
#define MEMFAULT_DEFAULT_CONFIG   "/etc/otagw/otagw.conf"
#define MEMFAULT_LATEST_PATH      "/api/v0/releases/latest"
#define MEMFAULT_KEY_MAX          128
#define MEMFAULT_BASE_URL_MAX     512
#define MEMFAULT_REASON_MAX       64
#define MEMFAULT_MESSAGE_MAX      384

/* Strings are copied by memfault_new(). */
struct memfault_config {
	const char *base_url;       /* NULL: MEMFAULT_DEFAULT_BASE_URL; http:// only for tests */
	const char *project_key;    /* required; sent as Memfault-Project-Key, never logged */
	const char *config_path;    /* named in messages; NULL: MEMFAULT_DEFAULT_CONFIG */
	const char *key_source;     /* where the key came from, for messages; NULL: config_path */
	size_t body_max;            /* largest answer accepted; 0: 1 MiB */
	uint64_t max_file_size;     /* largest artifact accepted; 0: 256 MiB */
	unsigned timeout_s;         /* per request; 0: 60 s */
	uint32_t retry_after_max_s; /* Retry-After values are clamped to this; 0: 24 h */
};

/* The four values Memfault's latest endpoint takes, as the device reported them. */
struct memfault_identity {
	const char *serial;
	const char *hardware_version;
	const char *software_type;
	const char *current_version;
};

enum memfault_outcome {
	MEMFAULT_OUTCOME_UPDATE,    /* a release with an artifact for the device */
	MEMFAULT_OUTCOME_NO_UPDATE, /* 204; reason holds memfault-reason */
	MEMFAULT_OUTCOME_ERROR,
};

/* Error classes; memfault_error_retryable() says which ones a later retry can fix. */
enum memfault_error {
	MEMFAULT_ERROR_NONE,
	MEMFAULT_ERROR_CONFIG,       /* 400/401/403/404, other 4xx, redirects: fix the config */
	MEMFAULT_ERROR_RATE_LIMITED, /* 429/503/529: honour Retry-After, else back off */
	MEMFAULT_ERROR_TRANSIENT,    /* 502/504, DNS, connect, timeout, cut, garbled HTTP */
	MEMFAULT_ERROR_TLS,          /* certificate or handshake refused */
	MEMFAULT_ERROR_SERVER,       /* 500 and other server failures: no retry */
	MEMFAULT_ERROR_RESPONSE,     /* oversized or unusable answer, no artifact for the device */
	MEMFAULT_ERROR_INTERNAL,     /* out of memory and the like */
};

struct memfault_result {
	enum memfault_outcome outcome;
	enum memfault_error error;        /* MEMFAULT_OUTCOME_ERROR only */
	long http_status;                 /* 0 when no response arrived */
	char reason[MEMFAULT_REASON_MAX]; /* memfault-reason header, sanitised; "" when absent */
	struct release *release;          /* UPDATE: owned; take it by setting this to NULL */
	const struct release_artifact *artifact; /* UPDATE: the device's artifact in release */
	char *body;                              /* UPDATE: the raw JSON (for the answer cache) */
	size_t body_len;
	bool has_retry_after; /* RATE_LIMITED: a valid Retry-After came with it */
	uint32_t retry_after_s;
	char message[MEMFAULT_MESSAGE_MAX]; /* what happened and what to fix; never the key */
};

/* Called once per query unless cancelled. res is freed after the callback returns (take
 * res->release or res->body by setting them to NULL). Cancelling q here is a no-op. */
typedef void (*memfault_done_fn)(
    struct memfault_query *q, struct memfault_result *res, void *userdata);

/* Creates a client that sends its requests through http. Returns 0, -EINVAL with a reason in
 * err (bad base_url or project_key), or -ENOMEM. */
int memfault_new(struct http *http, const struct memfault_config *cfg, struct memfault **out,
    char *err, size_t errlen);

/* Cancels pending queries without calling back and frees the client. Not from a callback.
 * Accepts NULL. */
void memfault_free(struct memfault *mf);

/* Asks for the latest release for id (values copied). Returns 0 (cb runs later, from the
 * loop), -EINVAL if id is not a valid identity (ident.h rules), or -ENOMEM. */
int memfault_latest(struct memfault *mf, const struct memfault_identity *id, memfault_done_fn cb,
    void *userdata, struct memfault_query **out);

/* Cancels a query; its callback will not run. Accepts NULL. */
void memfault_query_cancel(struct memfault_query *q);

/* Interprets a 200 body again for a device, as a fresh answer would be (for answers cached in
 * the database). Fills res (clear it with memfault_result_clear()); returns 0 or -ENOMEM. */
int memfault_result_from_body(const struct memfault *mf, const char *hardware_version,
    const char *software_type, const char *body, size_t len, struct memfault_result *res);

/* Frees what res owns and zeroes it. */
void memfault_result_clear(struct memfault_result *res);

/* True for the classes where asking again later can succeed (rate limits, transient and TLS
 * failures, internal errors). */
bool memfault_error_retryable(enum memfault_error e);

const char *memfault_error_to_string(enum memfault_error e);
const char *memfault_outcome_to_string(enum memfault_outcome o);

/* The base URL requests go to (without a trailing slash). */
const char *memfault_base_url(const struct memfault *mf);

#endif
