/* The device registry (see fleet.h): a hash table by serial for lookups and a list in serial
 * order for listings, per-state counters kept as devices change, and the subscribers told
 * about every change. */
#include "fleet.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "clock.h"
#include "db.h"
#include "devices.h"
#include "history.h"

#define FLEET_BUCKETS 4096
/* LastSeen moves at most this often while a device stays connected (docs/dbus-api.md). */
#define FLEET_SEEN_EVERY_US (60 * 1000000LL)
/* The rate is an exponential average with this time constant, sampled at most this often. */
#define FLEET_RATE_TAU_MS    2000.0
#define FLEET_RATE_SAMPLE_MS 250

struct fleet_entry {
	struct fleet_device d; /* first: readers get a pointer to it */
	LIST_ENTRY(fleet_entry) hash;
	TAILQ_ENTRY(fleet_entry) order;
	uint64_t rate_ms;    /* monotonic ms of the last rate sample, 0: none */
	uint64_t rate_bytes; /* bytes_done at that sample */
};

struct fleet_sub {
	LIST_ENTRY(fleet_sub) entry;
	int id;
	fleet_change_fn cb;
	void *arg;
};

struct fleet {
	LIST_HEAD(, fleet_entry) buckets[FLEET_BUCKETS];
	TAILQ_HEAD(fleet_order_head, fleet_entry) order;
	LIST_HEAD(, fleet_sub) subs;
	int next_id;
	struct fleet_counts counts;
};

static struct fleet_entry *
fleet_entry_of(struct fleet_device *dev)
{
	return (struct fleet_entry *)(void *)dev;
}

static unsigned
fleet_hash(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s != '\0')
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h % FLEET_BUCKETS;
}

/* Copies src into dst[n] as one printable line, cut to fit. Returns true if dst changed. */
static bool
fleet_copy(char *dst, size_t n, const char *src)
{
	char tmp[FLEET_REASON_MAX + 1];
	size_t i;

	if (src == NULL)
		src = "";
	if (n > sizeof(tmp))
		n = sizeof(tmp);
	for (i = 0; i + 1 < n && src[i] != '\0'; i++)
		tmp[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? ' ' : src[i];
	tmp[i] = '\0';
	if (strcmp(dst, tmp) == 0)
		return false;
	memcpy(dst, tmp, i + 1);
	return true;
}

static void
fleet_notify(struct fleet *f, const struct fleet_device *dev, unsigned fields)
{
	struct fleet_sub *s, *next;

	if (fields == 0)
		return;
	for (s = LIST_FIRST(&f->subs); s != NULL; s = next) {
		next = LIST_NEXT(s, entry);
		s->cb(dev, fields, s->arg);
	}
}

int
fleet_new(struct fleet **out)
{
	struct fleet *f = calloc(1, sizeof(*f));
	size_t i;

	if (f == NULL)
		return -ENOMEM;
	for (i = 0; i < FLEET_BUCKETS; i++)
		LIST_INIT(&f->buckets[i]);
	TAILQ_INIT(&f->order);
	LIST_INIT(&f->subs);
	f->next_id = 1;
	*out = f;
	return 0;
}

void
fleet_free(struct fleet *f)
{
	struct fleet_entry *e;
	struct fleet_sub *s;

	if (f == NULL)
		return;
	while ((e = TAILQ_FIRST(&f->order)) != NULL) {
		TAILQ_REMOVE(&f->order, e, order);
		free(e);
	}
	while ((s = LIST_FIRST(&f->subs)) != NULL) {
		LIST_REMOVE(s, entry);
		free(s);
	}
	free(f);
}

static struct fleet_entry *
fleet_find(const struct fleet *f, const char *serial)
{
	struct fleet_entry *e;

	LIST_FOREACH(e, &f->buckets[fleet_hash(serial)], hash)
	if (strcmp(e->d.serial, serial) == 0)
		return e;
	return NULL;
}

const struct fleet_device *
fleet_get(const struct fleet *f, const char *serial)
{
	struct fleet_entry *e = serial != NULL ? fleet_find(f, serial) : NULL;

	return e != NULL ? &e->d : NULL;
}

/* Adds a device in serial order. The database hands them over sorted, so the walk from the tail
 * is one step at load; a device new at run time may walk further, once. */
static struct fleet_entry *
fleet_add(struct fleet *f, const char *serial)
{
	struct fleet_entry *e = calloc(1, sizeof(*e)), *at;

	if (e == NULL)
		return NULL;
	fleet_copy(e->d.serial, sizeof(e->d.serial), serial);
	e->d.state = FLEET_STATE_IDLE;
	LIST_INSERT_HEAD(&f->buckets[fleet_hash(serial)], e, hash);
	at = TAILQ_LAST(&f->order, fleet_order_head);
	while (at != NULL && strcmp(at->d.serial, e->d.serial) > 0)
		at = TAILQ_PREV(at, fleet_order_head, order);
	if (at == NULL)
		TAILQ_INSERT_HEAD(&f->order, e, order);
	else
		TAILQ_INSERT_AFTER(&f->order, at, e, order);
	f->counts.devices++;
	f->counts.in_state[FLEET_STATE_IDLE]++;
	return e;
}

int
fleet_foreach(
    const struct fleet *f, int (*cb)(const struct fleet_device *dev, void *arg), void *arg)
{
	const struct fleet_entry *e;
	int r;

	TAILQ_FOREACH(e, &f->order, order)
	{
		if ((r = cb(&e->d, arg)) != 0)
			return r;
	}
	return 0;
}

void
fleet_get_counts(const struct fleet *f, struct fleet_counts *out)
{
	*out = f->counts;
}

int
fleet_subscribe(struct fleet *f, fleet_change_fn cb, void *arg)
{
	struct fleet_sub *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return -ENOMEM;
	s->id = f->next_id++;
	s->cb = cb;
	s->arg = arg;
	LIST_INSERT_HEAD(&f->subs, s, entry);
	return s->id;
}

void
fleet_unsubscribe(struct fleet *f, int id)
{
	struct fleet_sub *s;

	LIST_FOREACH(s, &f->subs, entry)
	{
		if (s->id == id) {
			LIST_REMOVE(s, entry);
			free(s);
			return;
		}
	}
}

/* Sets the state without telling anyone; returns the changed fields. */
static unsigned
fleet_state_quiet(struct fleet *f, struct fleet_entry *e, enum fleet_state state)
{
	unsigned fields = 0;

	if (e->d.state == state)
		return 0;
	f->counts.in_state[e->d.state]--;
	f->counts.in_state[state]++;
	e->d.state = state;
	fields |= FLEET_FIELD_STATE;
	if (state != FLEET_STATE_DOWNLOADING && state != FLEET_STATE_TRANSFERRING) {
		if (e->d.rate != 0.0)
			fields |= FLEET_FIELD_PROGRESS;
		e->d.rate = 0.0;
		e->rate_ms = 0;
	}
	return fields;
}

/* --- Loading from the database --- */

struct fleet_load_ctx {
	struct fleet *f;
	struct db *db;
};

static enum fleet_result
fleet_result_of_history(enum history_result r)
{
	switch (r) {
	case HISTORY_RESULT_IN_PROGRESS:
	case HISTORY_RESULT_ABORTED:
		return FLEET_RESULT_ABORTED;
	case HISTORY_RESULT_VERIFIED:
		return FLEET_RESULT_TRANSFERRED;
	case HISTORY_RESULT_INSTALLED:
		return FLEET_RESULT_INSTALLED;
	case HISTORY_RESULT_FAILED:
	case HISTORY_RESULT_INSTALL_FAILED:
		return FLEET_RESULT_FAILED;
	}
	return FLEET_RESULT_FAILED;
}

/* Derives what a device was last doing from its row and its newest history entry. */
static void
fleet_derive(struct fleet_entry *e, const struct devices_entry *row, const struct history_entry *h,
    struct fleet *f)
{
	enum fleet_state state = FLEET_STATE_IDLE;
	int64_t h_time = h != NULL ? (h->ended != 0 ? h->ended : h->started) : 0;

	switch (row->install_state) {
	case DEVICES_INSTALL_PENDING:
		state = FLEET_STATE_AWAITING_INSTALL;
		e->d.last_result = FLEET_RESULT_TRANSFERRED;
		fleet_copy(e->d.target_version, sizeof(e->d.target_version), row->install_version);
		snprintf(e->d.last_reason, sizeof(e->d.last_reason),
		    "Verified %s; waiting for the device to run it", row->install_version);
		break;
	case DEVICES_INSTALL_CONFIRMED:
	case DEVICES_INSTALL_FAILED:
	case DEVICES_INSTALL_NONE:
		if (h != NULL && h_time >= row->last_check) {
			e->d.last_result = fleet_result_of_history(h->result);
			fleet_copy(e->d.target_version, sizeof(e->d.target_version), h->to_version);
			fleet_copy(e->d.last_reason, sizeof(e->d.last_reason), h->reason);
			if (h->result == HISTORY_RESULT_INSTALLED)
				state = FLEET_STATE_INSTALLED;
			else if (h->result == HISTORY_RESULT_FAILED ||
				 h->result == HISTORY_RESULT_INSTALL_FAILED)
				state = FLEET_STATE_FAILED;
		} else if (row->last_result == DEVICES_RESULT_NO_UPDATE) {
			state = FLEET_STATE_UP_TO_DATE;
			e->d.last_result = FLEET_RESULT_UP_TO_DATE;
			snprintf(e->d.last_reason, sizeof(e->d.last_reason), "Memfault: %.240s",
			    row->last_reason[0] != '\0' ? row->last_reason : "up to date");
		} else if (row->last_result == DEVICES_RESULT_ERROR) {
			state = FLEET_STATE_FAILED;
			e->d.last_result = FLEET_RESULT_FAILED;
			fleet_copy(e->d.last_reason, sizeof(e->d.last_reason), row->last_reason);
		}
		break;
	}
	fleet_state_quiet(f, e, state);
}

static int
fleet_load_one(const struct devices_entry *row, void *arg)
{
	struct fleet_load_ctx *ctx = arg;
	struct history_entry *h = NULL;
	struct fleet_entry *e;
	size_t n = 0;

	if (fleet_find(ctx->f, row->serial) != NULL)
		return 0;
	e = fleet_add(ctx->f, row->serial);
	if (e == NULL)
		return -ENOMEM;
	fleet_copy(e->d.hardware_version, sizeof(e->d.hardware_version), row->hardware_version);
	fleet_copy(e->d.software_type, sizeof(e->d.software_type), row->software_type);
	fleet_copy(e->d.current_version, sizeof(e->d.current_version), row->current_version);
	fleet_copy(e->d.link, sizeof(e->d.link), row->link);
	e->d.last_seen_us = row->last_seen * 1000000;
	/* The newest entry only; a failure to read it just leaves less to show. */
	if (history_list(ctx->db, row->serial, 1, &h, &n) < 0)
		n = 0;
	fleet_derive(e, row, n > 0 ? h : NULL, ctx->f);
	free(h);
	return 0;
}

int
fleet_load(struct fleet *f, struct db *db)
{
	struct fleet_load_ctx ctx = {f, db};

	return devices_foreach(db, fleet_load_one, &ctx);
}

/* --- Updates --- */

struct fleet_device *
fleet_connect(struct fleet *f, const struct fleet_hello *hello)
{
	struct fleet_entry *e = fleet_find(f, hello->serial);
	unsigned fields = 0;

	if (e == NULL) {
		e = fleet_add(f, hello->serial);
		if (e == NULL)
			return NULL;
		fields |= FLEET_FIELD_ADDED;
	}
	if (fleet_copy(
		e->d.hardware_version, sizeof(e->d.hardware_version), hello->hardware_version) |
	    fleet_copy(e->d.software_type, sizeof(e->d.software_type), hello->software_type) |
	    fleet_copy(e->d.current_version, sizeof(e->d.current_version), hello->current_version))
		fields |= FLEET_FIELD_IDENTITY;
	if (fleet_copy(e->d.link, sizeof(e->d.link), hello->link) |
	    fleet_copy(e->d.address, sizeof(e->d.address), hello->address))
		fields |= FLEET_FIELD_LINK;
	if (!e->d.connected) {
		e->d.connected = true;
		f->counts.connected++;
		fields |= FLEET_FIELD_CONNECTED;
	}
	e->d.last_seen_us = clock_wall_us();
	fields |= FLEET_FIELD_SEEN;
	fleet_notify(f, &e->d, fields);
	return &e->d;
}

void
fleet_disconnect(struct fleet *f, struct fleet_device *dev)
{
	if (dev == NULL || !dev->connected)
		return;
	dev->connected = false;
	f->counts.connected--;
	dev->last_seen_us = clock_wall_us();
	fleet_notify(f, dev, FLEET_FIELD_CONNECTED | FLEET_FIELD_SEEN);
}

void
fleet_touch(struct fleet *f, struct fleet_device *dev)
{
	int64_t now = clock_wall_us();

	if (dev == NULL || now - dev->last_seen_us < FLEET_SEEN_EVERY_US)
		return;
	dev->last_seen_us = now;
	fleet_notify(f, dev, FLEET_FIELD_SEEN);
}

void
fleet_set_state(struct fleet *f, struct fleet_device *dev, enum fleet_state state)
{
	if (dev == NULL)
		return;
	fleet_notify(f, dev, fleet_state_quiet(f, fleet_entry_of(dev), state));
}

void
fleet_set_progress(struct fleet *f, struct fleet_device *dev, uint64_t done, uint64_t total)
{
	struct fleet_entry *e;
	uint64_t now;

	if (dev == NULL)
		return;
	e = fleet_entry_of(dev);
	if (dev->bytes_done == done && dev->bytes_total == total)
		return;
	if (dev->state == FLEET_STATE_DOWNLOADING || dev->state == FLEET_STATE_TRANSFERRING) {
		now = clock_mono_ms();
		if (e->rate_ms == 0 || done < e->rate_bytes) {
			e->rate_ms = now;
			e->rate_bytes = done;
		} else if (now - e->rate_ms >= FLEET_RATE_SAMPLE_MS) {
			double dt = (double)(now - e->rate_ms);
			double inst = (double)(done - e->rate_bytes) * 1000.0 / dt;
			/* 1 - e^(-dt/tau), to first order: no libm for one average */
			double a = dt / (FLEET_RATE_TAU_MS + dt);

			dev->rate = dev->rate == 0.0 ? inst : dev->rate + a * (inst - dev->rate);
			e->rate_ms = now;
			e->rate_bytes = done;
		}
	}
	dev->bytes_done = done;
	dev->bytes_total = total;
	fleet_notify(f, dev, FLEET_FIELD_PROGRESS);
}

void
fleet_set_target(struct fleet *f, struct fleet_device *dev, const char *version)
{
	if (dev != NULL && fleet_copy(dev->target_version, sizeof(dev->target_version), version))
		fleet_notify(f, dev, FLEET_FIELD_TARGET);
}

void
fleet_set_result(
    struct fleet *f, struct fleet_device *dev, enum fleet_result result, const char *fmt, ...)
{
	char reason[FLEET_REASON_MAX + 1];
	unsigned fields = 0;
	va_list ap;

	if (dev == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (fleet_copy(dev->last_reason, sizeof(dev->last_reason), reason))
		fields |= FLEET_FIELD_RESULT;
	if (dev->last_result != result) {
		dev->last_result = result;
		fields |= FLEET_FIELD_RESULT;
	}
	fleet_notify(f, dev, fields);
}

const char *
fleet_state_name(enum fleet_state s)
{
	switch (s) {
	case FLEET_STATE_IDLE:
		return "idle";
	case FLEET_STATE_CHECKING:
		return "checking";
	case FLEET_STATE_UP_TO_DATE:
		return "up-to-date";
	case FLEET_STATE_DOWNLOADING:
		return "downloading";
	case FLEET_STATE_QUEUED:
		return "queued";
	case FLEET_STATE_TRANSFERRING:
		return "transferring";
	case FLEET_STATE_VERIFYING:
		return "verifying";
	case FLEET_STATE_AWAITING_INSTALL:
		return "awaiting-install";
	case FLEET_STATE_INSTALLED:
		return "installed";
	case FLEET_STATE_FAILED:
		return "failed";
	case FLEET_STATE_ERROR:
		return "error";
	}
	return "unknown";
}

const char *
fleet_result_name(enum fleet_result r)
{
	switch (r) {
	case FLEET_RESULT_NONE:
		return "";
	case FLEET_RESULT_UP_TO_DATE:
		return "up-to-date";
	case FLEET_RESULT_TRANSFERRED:
		return "transferred";
	case FLEET_RESULT_INSTALLED:
		return "installed";
	case FLEET_RESULT_FAILED:
		return "failed";
	case FLEET_RESULT_ABORTED:
		return "aborted";
	case FLEET_RESULT_ERROR:
		return "error";
	}
	return "unknown";
}
