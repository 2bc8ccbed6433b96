/* The per-device upstream check a session runs when a device says hello: answer from the
 * device's cached answer in the database while it is younger than the configured lifetime (so
 * reconnecting devices do not burn Memfault's per-device quota), otherwise ask Memfault,
 * honouring Retry-After and backoff per device (and for the whole project when the key is
 * rejected or Memfault is unavailable), record the answer, and log the outcome once. */
#ifndef OTAGW_UPSTREAM_H
#define OTAGW_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "backoff.h"
#include "memfault.h"

struct db;
struct event_base;
struct upstream;
struct upstream_check;

struct upstream_config {
	unsigned answer_lifetime_s;    /* reuse a device's answer this long; 0: 3600 */
	unsigned error_hold_s;         /* no new request after a non-retryable error; 0: lifetime */
	struct backoff_policy backoff; /* transient failures; 0: 8 s doubling to 1 h */
};

enum upstream_kind {
	UPSTREAM_UPDATE,    /* release + artifact for the device */
	UPSTREAM_NO_UPDATE, /* reason holds memfault-reason */
	UPSTREAM_ERROR,     /* error, retry_after_s, message */
};

/* What a check ends with. Valid during the callback; take release by setting it to NULL. */
struct upstream_answer {
	enum upstream_kind kind;
	bool from_cache;  /* answered without asking Memfault (cached answer or backoff) */
	int64_t time;     /* wall-clock time of Memfault's answer (the URL's age) */
	long http_status; /* 0 when none */
	struct release *release;
	const struct release_artifact *artifact;
	char reason[MEMFAULT_REASON_MAX];
	enum memfault_error error;
	uint32_t retry_after_s; /* ERROR: seconds before a new check will ask Memfault */
	char message[MEMFAULT_MESSAGE_MAX];
};

/* Called once per check unless cancelled; the check is freed after it returns. */
typedef void (*upstream_done_fn)(
    struct upstream_check *c, struct upstream_answer *a, void *userdata);

/* Flags of upstream_check(). */
#define UPSTREAM_CHECK_FRESH 1u /* ignore the cached answer (e.g. to refresh a payload URL) */

/* Creates the checker on base, asking through mf and caching in db (store_db()). Returns 0,
 * -EINVAL or -ENOMEM. */
int upstream_new(struct event_base *base, struct memfault *mf, struct db *db,
    const struct upstream_config *cfg, struct upstream **out);

/* Cancels every check without calling back and frees the checker. Not from a callback. Accepts
 * NULL. */
void upstream_free(struct upstream *up);

/* Checks a device (id copied; the device row must exist: devices_upsert() at hello). Concurrent
 * checks of one device share one request. The callback always runs later from the loop.
 * Returns 0 (and *out, may be NULL), -EINVAL (invalid identity) or -ENOMEM. */
int upstream_check(struct upstream *up, const struct memfault_identity *id, unsigned flags,
    upstream_done_fn cb, void *userdata, struct upstream_check **out);

/* Cancels a check; its callback will not run. A no-op from its own callback. Accepts NULL. */
void upstream_check_cancel(struct upstream_check *c);

const char *upstream_kind_to_string(enum upstream_kind k);

#endif
