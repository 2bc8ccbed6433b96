/* Per-device checks (see upstream.h). State kept in memory per device: when it may ask again
 * (monotonic), how many transient failures in a row, the last error, and the request in flight
 * that concurrent checks of the device join. One more entry, "the project", holds gates that
 * apply to every device: a rejected project key and Memfault-wide unavailability (503/529). */
#include "upstream.h"

#include "clock.h"
#include "db.h"
#include "devices.h"
#include "ident.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>

#define UPSTREAM_LIFETIME_DEFAULT 3600
#define UPSTREAM_BUCKETS          256

struct upstream_device {
	LIST_ENTRY(upstream_device) entry;
	char serial[IDENT_SERIAL_MAX + 1]; /* "" for the project-wide gate */
	int64_t not_before;                /* monotonic seconds; 0: no restriction */
	unsigned attempts;                 /* transient failures in a row */
	enum memfault_error error;
	long http_status;
	char message[MEMFAULT_MESSAGE_MAX];
	struct memfault_query *q;
	TAILQ_HEAD(, upstream_check) joined; /* checks waiting for q */
};

struct upstream_check {
	TAILQ_ENTRY(upstream_check) entry;
	struct upstream *up;
	struct upstream_device *dev; /* set while joined to a request */
	struct event *ev;
	upstream_done_fn cb;
	void *userdata;
	unsigned flags;
	bool in_callback;
	char serial[IDENT_SERIAL_MAX + 1];
	char hardware_version[IDENT_HW_MAX + 1];
	char software_type[IDENT_SWTYPE_MAX + 1];
	char current_version[IDENT_VERSION_MAX + 1];
};

struct upstream {
	struct event_base *base;
	struct memfault *mf;
	struct db *db;
	struct upstream_config cfg;
	struct upstream_device project;
	LIST_HEAD(, upstream_device) buckets[UPSTREAM_BUCKETS];
	TAILQ_HEAD(, upstream_check) checks; /* scheduled, not yet joined */
};

/* Copies src into dst[n], cutting it short if needed (reasons and messages are bounded). */
static void
upstream_copy(char *dst, size_t n, const char *src)
{
	size_t len = strnlen(src, n - 1);

	memcpy(dst, src, len);
	dst[len] = '\0';
}

static unsigned
upstream_hash(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s != '\0')
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h % UPSTREAM_BUCKETS;
}

static struct upstream_device *
upstream_device(struct upstream *up, const char *serial, bool create)
{
	struct upstream_device *d;
	unsigned b = upstream_hash(serial);

	LIST_FOREACH(d, &up->buckets[b], entry)
	if (strcmp(d->serial, serial) == 0)
		return d;
	if (!create || (d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	snprintf(d->serial, sizeof(d->serial), "%s", serial);
	TAILQ_INIT(&d->joined);
	LIST_INSERT_HEAD(&up->buckets[b], d, entry);
	return d;
}

/* Drops a device's state once nothing restricts or waits on it: memory stays bounded by the
 * devices that are failing or being checked right now. */
static void
upstream_device_prune(struct upstream_device *d, int64_t now)
{
	if (d->serial[0] == '\0' || d->q != NULL || !TAILQ_EMPTY(&d->joined) ||
	    (d->not_before > now || d->attempts > 0))
		return;
	LIST_REMOVE(d, entry);
	free(d);
}

static void
upstream_check_free(struct upstream_check *c)
{
	if (c->ev != NULL)
		event_free(c->ev);
	free(c);
}

static void
upstream_deliver(struct upstream_check *c, struct upstream_answer *a)
{
	c->in_callback = true;
	c->cb(c, a, c->userdata);
	release_free(a->release);
	a->release = NULL;
	upstream_check_free(c);
}

/* Answers a check with the error that keeps a device (or the project) from asking now. */
static void
upstream_answer_gate(struct upstream_check *c, const struct upstream_device *gate, int64_t now)
{
	struct upstream_answer a;

	memset(&a, 0, sizeof(a));
	a.kind = UPSTREAM_ERROR;
	a.from_cache = true;
	a.error = gate->error;
	a.http_status = gate->http_status;
	a.retry_after_s = (uint32_t)(gate->not_before - now);
	snprintf(a.message, sizeof(a.message), "%s", gate->message);
	dev_debug(
	    c->serial, "Not asking Memfault for another %u s: %s", a.retry_after_s, gate->message);
	upstream_deliver(c, &a);
}

/* Builds an answer from a result (the first joined check gets the parsed release, the others a
 * fresh parse of the same body). Returns -ENOMEM only. */
static int
upstream_answer_from(const struct upstream *up, const struct upstream_check *c,
    struct memfault_result *res, bool take, struct upstream_answer *a)
{
	memset(a, 0, sizeof(*a));
	a->time = (int64_t)time(NULL);
	a->http_status = res->http_status;
	snprintf(a->reason, sizeof(a->reason), "%s", res->reason);
	snprintf(a->message, sizeof(a->message), "%s", res->message);
	switch (res->outcome) {
	case MEMFAULT_OUTCOME_UPDATE:
		a->kind = UPSTREAM_UPDATE;
		if (take) {
			a->release = res->release;
			a->artifact = res->artifact;
			res->release = NULL;
		} else {
			struct memfault_result again;
			int r = memfault_result_from_body(up->mf, c->hardware_version,
			    c->software_type, res->body, res->body_len, &again);

			if (r < 0)
				return r;
			a->release = again.release;
			a->artifact = again.artifact;
			again.release = NULL;
			memfault_result_clear(&again);
		}
		break;
	case MEMFAULT_OUTCOME_NO_UPDATE:
		a->kind = UPSTREAM_NO_UPDATE;
		break;
	case MEMFAULT_OUTCOME_ERROR:
		a->kind = UPSTREAM_ERROR;
		a->error = res->error;
		break;
	}
	return 0;
}

static void
upstream_record(struct upstream *up, const char *serial, const struct memfault_result *res)
{
	struct devices_check chk = {.time = (int64_t)time(NULL)};
	char reason[DEVICES_REASON_MAX + 1];
	int r;

	switch (res->outcome) {
	case MEMFAULT_OUTCOME_UPDATE:
		chk.result = DEVICES_RESULT_UPDATE;
		chk.release_json = res->body;
		chk.reason = res->reason[0] != '\0' ? res->reason : NULL;
		break;
	case MEMFAULT_OUTCOME_NO_UPDATE:
		chk.result = DEVICES_RESULT_NO_UPDATE;
		chk.reason = res->reason;
		break;
	case MEMFAULT_OUTCOME_ERROR:
		chk.result = DEVICES_RESULT_ERROR;
		upstream_copy(reason, sizeof(reason), res->message);
		chk.reason = reason;
		break;
	}
	r = devices_record_check(up->db, serial, &chk);
	if (r == -ENOENT)
		dev_debug(serial, "not recording the check: the device has no row yet");
	else if (r < 0)
		dev_warn(serial, "Recording the Memfault answer failed: %s, ignoring",
		    db_errmsg(up->db));
}

/* Decides when the device (or every device) may ask again after res, and logs the outcome. */
static void
upstream_judge(
    struct upstream *up, struct upstream_device *d, const struct memfault_result *res, int64_t now)
{
	struct upstream_device *gate = d;
	uint32_t delay = 0;

	if (res->outcome != MEMFAULT_OUTCOME_ERROR) {
		d->attempts = 0;
		d->not_before = 0;
		up->project.attempts = 0;
		if (res->outcome == MEMFAULT_OUTCOME_UPDATE)
			dev_info(d->serial, "%s", res->message);
		else if (strcmp(res->reason, "rate-limited") == 0)
			dev_warn(d->serial,
			    "Memfault's per-device quota is used up (204, memfault-reason: "
			    "rate-limited); asking again in %u s",
			    up->cfg.answer_lifetime_s);
		else
			dev_info(d->serial, "Up to date with Memfault (memfault-reason: %s)",
			    res->reason[0] != '\0' ? res->reason : "none given");
		return;
	}
	switch (res->error) {
	case MEMFAULT_ERROR_RATE_LIMITED:
		if (res->http_status != 429)
			gate = &up->project; /* Memfault as a whole, not this device */
		delay = res->has_retry_after ? res->retry_after_s
					     : backoff_next(&up->cfg.backoff, gate->attempts);
		gate->attempts++;
		dev_warn(d->serial, "%s; asking again in %u s", res->message, delay);
		break;
	case MEMFAULT_ERROR_TRANSIENT:
	case MEMFAULT_ERROR_TLS:
	case MEMFAULT_ERROR_INTERNAL:
		delay = backoff_next(&up->cfg.backoff, d->attempts++);
		if (res->error == MEMFAULT_ERROR_TLS)
			dev_err(d->serial, "%s; asking again in %u s", res->message, delay);
		else
			dev_warn(d->serial, "%s; asking again in %u s", res->message, delay);
		break;
	case MEMFAULT_ERROR_CONFIG:
		if (res->http_status == 401 || res->http_status == 403)
			gate = &up->project; /* the key is wrong for every device */
		delay = up->cfg.error_hold_s;
		dev_err(d->serial, "%s; not asking again for %u s", res->message, delay);
		break;
	case MEMFAULT_ERROR_SERVER:
	case MEMFAULT_ERROR_RESPONSE:
	case MEMFAULT_ERROR_NONE:
		delay = up->cfg.error_hold_s;
		dev_err(d->serial, "%s; not asking again for %u s", res->message, delay);
		break;
	}
	gate->not_before = now + delay;
	gate->error = res->error;
	gate->http_status = res->http_status;
	snprintf(gate->message, sizeof(gate->message), "%s", res->message);
}

static void
upstream_on_result(struct memfault_query *q, struct memfault_result *res, void *userdata)
{
	struct upstream_device *d = userdata;
	struct upstream_check *c;
	struct upstream *up;
	int64_t now = (int64_t)(clock_mono_ms() / 1000u);
	bool first = true;

	(void)q;
	d->q = NULL;
	c = TAILQ_FIRST(&d->joined);
	if (c == NULL)
		return; /* cannot happen: the request is cancelled with its last check */
	up = c->up;
	upstream_judge(up, d, res, now);
	upstream_record(up, d->serial, res);
	while ((c = TAILQ_FIRST(&d->joined)) != NULL) {
		struct upstream_answer a;

		TAILQ_REMOVE(&d->joined, c, entry);
		c->dev = NULL;
		if (upstream_answer_from(up, c, res, first, &a) < 0) {
			memset(&a, 0, sizeof(a));
			a.kind = UPSTREAM_ERROR;
			a.error = MEMFAULT_ERROR_INTERNAL;
			snprintf(a.message, sizeof(a.message), "out of memory");
		}
		first = false;
		if (a.kind == UPSTREAM_ERROR) {
			/* the hold upstream_judge() just set, on the device or the project */
			int64_t until = d->not_before > up->project.not_before
					    ? d->not_before
					    : up->project.not_before;

			a.retry_after_s = until > now ? (uint32_t)(until - now) : 0;
		}
		upstream_deliver(c, &a);
	}
	upstream_device_prune(d, now);
}

/* Tries the cached answer. Returns true if it answered c. */
static bool
upstream_from_cache(struct upstream *up, struct upstream_check *c)
{
	struct devices_answer ans;
	struct devices_entry e;
	struct upstream_answer a;
	struct memfault_result res;
	int64_t age;

	if (devices_get(up->db, c->serial, &e) < 0 ||
	    strcmp(e.hardware_version, c->hardware_version) != 0 ||
	    strcmp(e.software_type, c->software_type) != 0 ||
	    strcmp(e.current_version, c->current_version) != 0)
		return false; /* the cache answered another question */
	if (devices_get_answer(up->db, c->serial, &ans) < 0)
		return false;
	age = (int64_t)time(NULL) - ans.time;
	if (age < 0 || age >= (int64_t)up->cfg.answer_lifetime_s)
		goto out;
	memset(&a, 0, sizeof(a));
	a.from_cache = true;
	a.time = ans.time;
	upstream_copy(a.reason, sizeof(a.reason), ans.reason);
	if (ans.result == DEVICES_RESULT_UPDATE && ans.release_json != NULL) {
		if (memfault_result_from_body(up->mf, c->hardware_version, c->software_type,
			ans.release_json, strlen(ans.release_json), &res) < 0 ||
		    res.outcome != MEMFAULT_OUTCOME_UPDATE) {
			memfault_result_clear(&res);
			goto out;
		}
		a.kind = UPSTREAM_UPDATE;
		a.http_status = 200;
		a.release = res.release;
		a.artifact = res.artifact;
		snprintf(a.message, sizeof(a.message), "%s", res.message);
		res.release = NULL;
		memfault_result_clear(&res);
	} else if (ans.result == DEVICES_RESULT_NO_UPDATE) {
		a.kind = UPSTREAM_NO_UPDATE;
		a.http_status = 204;
		snprintf(a.message, sizeof(a.message),
		    "No update from Memfault (memfault-reason: %s)",
		    ans.reason[0] != '\0' ? ans.reason : "none given");
	} else {
		goto out;
	}
	dev_debug(c->serial, "Using Memfault's answer from %" PRId64 " s ago: %s", age, a.message);
	devices_answer_clear(&ans);
	upstream_deliver(c, &a);
	return true;
out:
	devices_answer_clear(&ans);
	return false;
}

static void
upstream_run(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_check *c = arg;
	struct upstream *up = c->up;
	struct memfault_identity id = {
	    c->serial, c->hardware_version, c->software_type, c->current_version};
	struct upstream_device *d;
	struct upstream_answer a;
	int64_t now = (int64_t)(clock_mono_ms() / 1000u);
	int r;

	(void)fd;
	(void)what;
	TAILQ_REMOVE(&up->checks, c, entry);
	d = upstream_device(up, c->serial, true);
	if (d == NULL)
		goto nomem;
	if (d->q != NULL) {
		/* the device is being checked right now: share that answer */
		TAILQ_INSERT_TAIL(&d->joined, c, entry);
		c->dev = d;
		return;
	}
	if (!(c->flags & UPSTREAM_CHECK_FRESH) && upstream_from_cache(up, c)) {
		upstream_device_prune(d, now);
		return;
	}
	if (up->project.not_before > now) {
		upstream_answer_gate(c, &up->project, now);
		upstream_device_prune(d, now);
		return;
	}
	if (d->not_before > now) {
		upstream_answer_gate(c, d, now);
		return;
	}
	r = memfault_latest(up->mf, &id, upstream_on_result, d, &d->q);
	if (r < 0) {
		d->q = NULL;
		memset(&a, 0, sizeof(a));
		a.kind = UPSTREAM_ERROR;
		a.error = MEMFAULT_ERROR_INTERNAL;
		snprintf(a.message, sizeof(a.message), "Cannot ask Memfault: %s", strerror(-r));
		upstream_deliver(c, &a);
		upstream_device_prune(d, now);
		return;
	}
	TAILQ_INSERT_TAIL(&d->joined, c, entry);
	c->dev = d;
	return;
nomem:
	memset(&a, 0, sizeof(a));
	a.kind = UPSTREAM_ERROR;
	a.error = MEMFAULT_ERROR_INTERNAL;
	snprintf(a.message, sizeof(a.message), "out of memory");
	upstream_deliver(c, &a);
}

int
upstream_check(struct upstream *up, const struct memfault_identity *id, unsigned flags,
    upstream_done_fn cb, void *userdata, struct upstream_check **out)
{
	struct upstream_check *c;

	if (cb == NULL || id == NULL || id->serial == NULL || id->hardware_version == NULL ||
	    id->software_type == NULL || id->current_version == NULL ||
	    !ident_serial_valid(id->serial, strlen(id->serial)) ||
	    !ident_text_valid(id->hardware_version, strlen(id->hardware_version), IDENT_HW_MAX) ||
	    !ident_text_valid(id->software_type, strlen(id->software_type), IDENT_SWTYPE_MAX) ||
	    !ident_text_valid(id->current_version, strlen(id->current_version), IDENT_VERSION_MAX))
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->up = up;
	c->cb = cb;
	c->userdata = userdata;
	c->flags = flags;
	snprintf(c->serial, sizeof(c->serial), "%s", id->serial);
	snprintf(c->hardware_version, sizeof(c->hardware_version), "%s", id->hardware_version);
	snprintf(c->software_type, sizeof(c->software_type), "%s", id->software_type);
	snprintf(c->current_version, sizeof(c->current_version), "%s", id->current_version);
	c->ev = event_new(up->base, -1, 0, upstream_run, c);
	if (c->ev == NULL) {
		free(c);
		return -ENOMEM;
	}
	TAILQ_INSERT_TAIL(&up->checks, c, entry);
	event_active(c->ev, 0, 0);
	if (out != NULL)
		*out = c;
	return 0;
}

void
upstream_check_cancel(struct upstream_check *c)
{
	struct upstream_device *d;

	if (c == NULL || c->in_callback)
		return;
	d = c->dev;
	if (d == NULL) {
		TAILQ_REMOVE(&c->up->checks, c, entry);
	} else {
		TAILQ_REMOVE(&d->joined, c, entry);
		if (TAILQ_EMPTY(&d->joined) && d->q != NULL) {
			/* nobody wants the answer any more */
			memfault_query_cancel(d->q);
			d->q = NULL;
			upstream_device_prune(d, (int64_t)(clock_mono_ms() / 1000u));
		}
	}
	upstream_check_free(c);
}

int
upstream_new(struct event_base *base, struct memfault *mf, struct db *db,
    const struct upstream_config *cfg, struct upstream **out)
{
	struct upstream *up;
	size_t i;

	if (base == NULL || mf == NULL || db == NULL || out == NULL)
		return -EINVAL;
	up = calloc(1, sizeof(*up));
	if (up == NULL)
		return -ENOMEM;
	up->base = base;
	up->mf = mf;
	up->db = db;
	if (cfg != NULL)
		up->cfg = *cfg;
	if (up->cfg.answer_lifetime_s == 0)
		up->cfg.answer_lifetime_s = UPSTREAM_LIFETIME_DEFAULT;
	if (up->cfg.error_hold_s == 0)
		up->cfg.error_hold_s = up->cfg.answer_lifetime_s;
	TAILQ_INIT(&up->project.joined);
	for (i = 0; i < UPSTREAM_BUCKETS; i++)
		LIST_INIT(&up->buckets[i]);
	TAILQ_INIT(&up->checks);
	*out = up;
	return 0;
}

void
upstream_free(struct upstream *up)
{
	struct upstream_device *d;
	struct upstream_check *c;
	size_t i;

	if (up == NULL)
		return;
	while ((c = TAILQ_FIRST(&up->checks)) != NULL) {
		TAILQ_REMOVE(&up->checks, c, entry);
		upstream_check_free(c);
	}
	for (i = 0; i < UPSTREAM_BUCKETS; i++) {
		while ((d = LIST_FIRST(&up->buckets[i])) != NULL) {
			LIST_REMOVE(d, entry);
			memfault_query_cancel(d->q);
			while ((c = TAILQ_FIRST(&d->joined)) != NULL) {
				TAILQ_REMOVE(&d->joined, c, entry);
				upstream_check_free(c);
			}
			free(d);
		}
	}
	free(up);
}

const char *
upstream_kind_to_string(enum upstream_kind k)
{
	switch (k) {
	case UPSTREAM_UPDATE:
		return "update";
	case UPSTREAM_NO_UPDATE:
		return "no-update";
	case UPSTREAM_ERROR:
		return "error";
	}
	return "unknown";
}
