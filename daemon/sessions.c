/* The session manager (see session.h): what sessions share. It keeps the list of sessions and
 * the transfer slots with the queue of devices waiting for one, finds the session of a serial,
 * takes the operator's CheckNow and Abort, swaps the upstream client on reload, adds up the
 * counters, and is the daemon module that runs the fleet and the sessions. */
#include "session_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "db.h"
#include "log.h"
#include "transport.h"

/* A queued device asked to say HELLO (SOLICIT) keeps its slot this long. */
#define SESSION_RESERVE_MS 15000u

/* --- the list, slots and the queue --- */

void
sessions_attach(struct sessions *m, struct session *s)
{
	TAILQ_INSERT_TAIL(&m->all, s, entry);
	m->n_sessions++;
}

void
sessions_detach(struct sessions *m, struct session *s)
{
	TAILQ_REMOVE(&m->all, s, entry);
	m->n_sessions--;
}

struct session *
sessions_find_bound(struct sessions *m, const char *serial)
{
	struct session *s;

	TAILQ_FOREACH(s, &m->all, entry)
	if (s->bound && strcmp(s->serial, serial) == 0)
		return s;
	return NULL;
}

void
sessions_dequeue(struct sessions *m, struct session *s)
{
	if (!s->in_queue)
		return;
	TAILQ_REMOVE(&m->queue, s, qentry);
	s->in_queue = false;
	m->queued--;
}

void
sessions_enqueue(struct sessions *m, struct session *s)
{
	if (s->in_queue)
		return;
	TAILQ_INSERT_TAIL(&m->queue, s, qentry);
	s->in_queue = true;
	m->queued++;
}

/* Hands free slots to queued devices, first come first served: each is held for the device
 * while it is asked (SOLICIT) to say HELLO again. */
static void
sessions_grant(struct sessions *m)
{
	struct session *s;

	if (m->stopping)
		return;
	TAILQ_FOREACH(s, &m->queue, qentry)
	{
		if (m->active + m->reserved >= m->cfg.max_transfers)
			break;
		if (s->slot != SESSION_SLOT_NONE || !transport_connected(s->t))
			continue;
		s->slot = SESSION_SLOT_RESERVED;
		m->reserved++;
		s->reserve_until = session_now_ms() + SESSION_RESERVE_MS;
		dev_info(s->serial, "A transfer slot is free; asking the device to say HELLO");
		session_send_solicit(s);
		session_rearm(s);
	}
}

void
sessions_release_slot(struct sessions *m, struct session *s)
{
	switch (s->slot) {
	case SESSION_SLOT_NONE:
		return;
	case SESSION_SLOT_RESERVED:
		m->reserved--;
		break;
	case SESSION_SLOT_ACTIVE:
		m->active--;
		break;
	}
	s->slot = SESSION_SLOT_NONE;
	sessions_grant(m);
}

bool
sessions_take_slot(struct sessions *m, struct session *s)
{
	if (s->slot == SESSION_SLOT_ACTIVE)
		return true;
	if (s->slot == SESSION_SLOT_RESERVED) {
		m->reserved--;
	} else if (m->active + m->reserved >= m->cfg.max_transfers) {
		return false;
	}
	s->slot = SESSION_SLOT_ACTIVE;
	m->active++;
	sessions_dequeue(m, s);
	return true;
}

void
sessions_hold_slot(struct sessions *m, struct session *s)
{
	if (s->slot != SESSION_SLOT_ACTIVE)
		return;
	s->slot = SESSION_SLOT_RESERVED;
	m->active--;
	m->reserved++;
	s->reserve_until = session_now_ms() + SESSION_RESERVE_MS;
}

/* --- the manager --- */

int
sessions_new(struct event_base *base, struct store *store, struct fleet *fleet,
    const struct sessions_config *cfg, struct sessions **out)
{
	struct sessions *m;

	if (base == NULL || store == NULL || fleet == NULL || cfg == NULL ||
	    cfg->max_transfers == 0)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -ENOMEM;
	m->base = base;
	m->store = store;
	m->db = store_db(store);
	m->fleet = fleet;
	m->cfg = *cfg;
	TAILQ_INIT(&m->all);
	TAILQ_INIT(&m->queue);
	*out = m;
	return 0;
}

void
sessions_stop(struct sessions *m)
{
	if (m != NULL)
		m->stopping = true;
}

void
sessions_free(struct sessions *m)
{
	struct session *s;

	if (m == NULL)
		return;
	/* The owners free their sessions first; whatever is left goes now. session_free()
	 * unlinks s (sessions_detach); clang-analyzer cannot follow TAILQ_REMOVE through
	 * tqe_prev, so it takes the next TAILQ_FIRST for the freed s. */
	while ((s = TAILQ_FIRST(&m->all)) != NULL)
		// NOLINTNEXTLINE(clang-analyzer-unix.Malloc): see above
		session_free(s, "otagwd stopped");
	free(m);
}

void
sessions_set_config(struct sessions *m, const struct sessions_config *cfg)
{
	if (cfg->max_transfers == 0)
		return;
	m->cfg = *cfg;
	sessions_grant(m);
}

void
sessions_set_upstream(struct sessions *m, struct upstream *up, struct download_manager *dm)
{
	struct session *s;

	if (m->up == up && m->dm == dm)
		return;
	TAILQ_FOREACH(s, &m->all, entry)
	session_upstream_switch(s);
	m->up = up;
	m->dm = dm;
}

void
sessions_get_stats(const struct sessions *m, struct sessions_stats *out)
{
	const struct session *s;

	memset(out, 0, sizeof(*out));
	out->sessions = m->n_sessions;
	out->active = m->active;
	out->reserved = m->reserved;
	out->queued = m->queued;
	out->cache_hits = m->cache_hits;
	out->cache_misses = m->cache_misses;
	out->bad_messages = m->bad_messages;
	TAILQ_FOREACH(s, &m->all, entry)
	{
		uint32_t acked;

		if (!session_transferring(s))
			continue;
		acked = session_acked(s);
		out->transfers++;
		out->bytes_done += acked;
		out->bytes_total += s->size;
		if (out->n_pct < SESSIONS_STATS_PCT)
			out->pct[out->n_pct++] = session_pct(acked, s->size);
	}
}

/* The session serving serial, or why there is none. */
static int
sessions_lookup(struct sessions *m, const char *serial, struct session **out)
{
	const struct fleet_device *d;

	if (serial == NULL || !ident_serial_valid(serial, strlen(serial)))
		return -EINVAL;
	d = fleet_get(m->fleet, serial);
	if (d == NULL)
		return -ENOENT;
	*out = sessions_find_bound(m, serial);
	return *out != NULL ? 0 : -ENOTCONN;
}

int
sessions_check_now(struct sessions *m, const char *serial)
{
	struct session *s;
	int r = sessions_lookup(m, serial, &s);

	if (r < 0)
		return r;
	r = session_check_now(s);
	if (r == 0)
		dev_info(serial, "Check requested: asking the device to say HELLO");
	return r;
}

unsigned
sessions_check_all(struct sessions *m)
{
	struct session *s;
	unsigned n = 0;

	TAILQ_FOREACH(s, &m->all, entry)
	{
		if (s->bound && s->state == SESSION_IDLE && session_check_now(s) == 0)
			n++;
	}
	return n;
}

int
sessions_abort(struct sessions *m, const char *serial, const char *reason)
{
	struct session *s;
	int r = sessions_lookup(m, serial, &s);

	if (r == -ENOTCONN)
		return -EALREADY; /* known, but nothing runs for it */
	if (r < 0)
		return r;
	return session_abort(s, reason);
}

/* --- the daemon module: the fleet and the session manager --- */

static void
sessions_module_config(const struct config *cfg, struct sessions_config *out)
{
	*out = (struct sessions_config){
	    .max_transfers = cfg->general.max_transfers,
	    .session_memory = cfg->general.session_memory,
	    .answer_cache_s = cfg->memfault.answer_cache_s,
	};
}

static int
sessions_module_start(struct daemon *d)
{
	struct sessions_config sc;
	struct fleet_counts counts;
	int r;

	r = fleet_new(&d->fleet);
	if (r < 0)
		return log_err_errno(r, "Failed to create the device registry");
	r = fleet_load(d->fleet, store_db(d->store));
	if (r < 0) {
		log_err("Failed to load the devices from %s: %s", db_path(store_db(d->store)),
		    db_errmsg(store_db(d->store)));
		return r;
	}
	sessions_module_config(d->cfg, &sc);
	r = sessions_new(d->base, d->store, d->fleet, &sc, &d->sessions);
	if (r < 0)
		return log_err_errno(r, "Failed to set up the device sessions");
	sessions_set_upstream(d->sessions, d->upstream, d->downloads);
	fleet_get_counts(d->fleet, &counts);
	log_debug("%u device(s) known from the database", counts.devices);
	return 0;
}

static int
sessions_module_reload(struct daemon *d, const struct config *old)
{
	struct sessions_config sc;

	(void)old;
	sessions_module_config(d->cfg, &sc);
	sessions_set_config(d->sessions, &sc);
	return 0;
}

static void
sessions_module_stop(struct daemon *d)
{
	sessions_free(d->sessions);
	d->sessions = NULL;
	fleet_free(d->fleet);
	d->fleet = NULL;
}

const struct daemon_module sessions_module = {
    .name = "sessions",
    .start = sessions_module_start,
    .reload = sessions_module_reload,
    .stop = sessions_module_stop,
};
