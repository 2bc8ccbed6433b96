/* Device sessions (see session.h and docs/PROTOCOL.md, section 7.2). Each session is a small
 * state machine driven by its link's events, the upstream check, the download manager and one
 * timer; the manager holds the transfer slots and the queue of devices waiting for one. The
 * database is the record: devices_upsert() at every HELLO, the install state in the devices
 * table (the one source of truth for "did the device install what it verified"), and a history
 * row for every offer from OFFER to its end. */
#include "session.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "daemon.h"
#include "db.h"
#include "devices.h"
#include "download.h"
#include "fleet.h"
#include "frame.h"
#include "hex.h"
#include "history.h"
#include "ident.h"
#include "log.h"
#include "msg.h"
#include "sender.h"
#include "store.h"
#include "transport.h"
#include "upstream.h"

/* docs/PROTOCOL.md, section 8. */
#define SESSION_OFFER_TIMEOUT_MS  10000u /* OFFER without an answer */
#define SESSION_RESULT_TIMEOUT_MS 10000u /* VERIFYING without a message */
/* A queued device asked to say HELLO (SOLICIT) keeps its slot this long. */
#define SESSION_RESERVE_MS 15000u
/* While the link refuses more output and no WRITABLE came, poll the sender this often so its
 * retransmission timer still runs. */
#define SESSION_BLOCKED_POLL_MS 1000u
/* Download progress is copied to the fleet this often. */
#define SESSION_DOWNLOAD_POLL_MS 500u
/* SOLICIT for a stray ACK at most this often. */
#define SESSION_SOLICIT_EVERY_MS 1000u

/* retry_after_s of the ERROR answers (docs/PROTOCOL.md, section 5.2). */
#define SESSION_RETRY_IDENTITY 3600u
#define SESSION_RETRY_VERSION  86400u
#define SESSION_RETRY_BUSY     60u /* a SOLICIT calls the device in earlier when its turn comes */
#define SESSION_RETRY_INTERNAL 60u
#define SESSION_RETRY_IMAGE    3600u
#define SESSION_RETRY_HELD     3600u /* aborted by the operator */
#define SESSION_RETRY_MIN      5u
#define SESSION_RETRY_MAX      86400u

/* Complaints about one device's bad input: this many per window, then silence. */
#define SESSION_COMPLAIN_BURST     10u
#define SESSION_COMPLAIN_WINDOW_MS 60000u

/* clang-format off */
/* What the session is doing. Idle sessions may or may not have a device bound.
 *
 * state        event                         action                                   next
 * any          HELLO with a bad identity,    ERROR BAD_IDENTITY / UNSUPPORTED_VERSION /  same
 *              version 0, malformed message  BAD_MESSAGE; one rate-limited log line
 * any          HELLO (valid)                 bind (taking it over from another link),    CHECKING
 *                                            devices_upsert, settle a pending install,
 *                                            upstream_check; a transfer in progress
 *                                            ends as aborted and keeps its slot
 * CHECKING,    HELLO, same identity          nothing: not a new check                    same
 * DOWNLOADING
 * CHECKING     up to date / error            NO_UPDATE(recheck, reason) / ERROR(code)    IDLE
 * CHECKING     update                        delta and size checks, download_get()      DOWNLOADING
 *                                            (or straight on if the cache has it)
 * DOWNLOADING  done                          pin, verify once, open; with a slot OFFER   OFFERED
 *                                            without one ERROR BUSY and the queue        QUEUED
 * QUEUED       a slot is freed               reserve it for 15 s, SOLICIT                same
 * OFFERED      ACK                           sender_init at its offset, pump             SENDING
 * OFFERED      10 s                          drop (the device says HELLO again)          IDLE
 * SENDING      ACK, WRITABLE, timer          sender_ack (bad: ERROR BAD_OFFSET), pump    same
 * SENDING      every byte acknowledged                                                   VERIFYING
 * SENDING      8 timeouts                    ERROR ABORTED                               IDLE
 * VERIFYING    ACK (keepalive) / 10 s        restart the timer / drop                    same/IDLE
 * OFFERED..    RESULT OK, all sent           history verified, install pending, DONE     IDLE
 * OFFERED..    RESULT OK, not all sent       ERROR ABORTED: a lie                        IDLE
 * OFFERED..    RESULT failure or refusal     history failed, DONE                        IDLE
 * any          RESULT for another image      DONE (to an unbound link: SOLICIT)          same
 * IDLE         ACK                           SOLICIT, at most once a second              IDLE
 * any          link down                     history aborted "Disconnected at N %"       IDLE
 * any          operator Abort                ERROR ABORTED; held until reconnect or      IDLE
 *                                            CheckNow
 */
/* clang-format on */
enum session_state {
	SESSION_IDLE,
	SESSION_CHECKING,    /* waiting for the upstream check */
	SESSION_DOWNLOADING, /* waiting for the download manager */
	SESSION_QUEUED,      /* told BUSY, waiting for a transfer slot */
	SESSION_OFFERED,     /* OFFER sent, waiting for the first ACK (or a refusal) */
	SESSION_SENDING,     /* the sender runs */
	SESSION_VERIFYING,   /* everything acknowledged, waiting for RESULT */
};

enum session_slot {
	SESSION_SLOT_NONE,
	SESSION_SLOT_RESERVED, /* held for this device while it comes back (SOLICIT, restart) */
	SESSION_SLOT_ACTIVE,
};

struct session {
	TAILQ_ENTRY(session) entry;  /* m->all */
	TAILQ_ENTRY(session) qentry; /* m->queue while queued */
	struct sessions *m;
	struct transport *t;
	struct session_owner owner;
	char link[CONFIG_LINK_NAME_MAX + 1];
	char address[FLEET_ADDRESS_MAX + 1];
	bool solicit;
	enum session_state state;
	struct event *timer;
	struct event *kick; /* restarts the check from the loop (upstream swapped) */
	bool in_queue;
	enum session_slot slot;
	uint32_t reserve_until; /* SLOT_RESERVED while queued: when it lapses */

	/* the device, once bound */
	bool bound;
	struct fleet_device *dev;
	char serial[IDENT_SERIAL_MAX + 1];
	char hardware_version[IDENT_HW_MAX + 1];
	char software_type[IDENT_SWTYPE_MAX + 1];
	char current_version[IDENT_VERSION_MAX + 1];
	uint8_t proto_version;
	uint16_t caps, max_payload, max_stall_ms;
	uint8_t window;
	bool fresh; /* the next check bypasses the cached answer (operator's CheckNow) */
	bool held;  /* aborted by the operator: offer nothing until reconnect or CheckNow */
	bool just_installed; /* this HELLO confirmed an install: "installed" outlasts the check */
	uint64_t installed_size; /* its image's size, for the progress "installed" shows */

	/* upstream */
	struct upstream_check *check;
	struct upstream_check *refresh;
	struct download_waiter *waiter;

	/* the image being offered */
	char sha256[STORE_SHA256_HEX + 1];
	uint8_t sha[PROTO_SHA256_LEN];
	uint32_t size;
	char target[IDENT_VERSION_MAX + 1];
	uint8_t offer_flags;
	bool pinned;
	int fd;
	int64_t history_id; /* 0: none */
	uint16_t payload;   /* the OFFER's max_payload */
	uint8_t *buf;       /* one DATA message */
	struct sender snd;
	bool snd_live;
	bool blocked;        /* the link said -EAGAIN; WRITABLE follows */
	uint32_t sent_high;  /* end of the highest DATA sent (or the first ACK's offset) */
	uint32_t phase_ms;   /* when OFFERED / the last message while VERIFYING */
	uint64_t started_ms; /* monotonic, first ACK: for the rate in the log */
	uint32_t start_offset;
	char done_sha[STORE_SHA256_HEX + 1]; /* the last RESULT answered with DONE */

	uint32_t last_solicit_ms;
	bool solicited;
	/* complaints budget */
	uint32_t complain_since_ms;
	unsigned complaints;
	uint64_t bad_frames;
};

struct sessions {
	struct event_base *base;
	struct store *store;
	struct db *db;
	struct fleet *fleet;
	struct upstream *up;
	struct download_manager *dm;
	struct sessions_config cfg;
	TAILQ_HEAD(, session) all;
	TAILQ_HEAD(, session) queue;
	unsigned n_sessions, active, reserved, queued;
	uint64_t cache_hits, cache_misses, bad_messages;
	bool stopping;
};

static void session_pump(struct session *s);
static void session_start_check(struct session *s);
static void sessions_grant(struct sessions *m);

/* --- small helpers --- */

static uint64_t
session_mono_ms64(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The sender's clock: u32 milliseconds that may wrap. */
static uint32_t
session_now_ms(void)
{
	return (uint32_t)session_mono_ms64();
}

static unsigned
session_pct(uint64_t done, uint64_t total)
{
	return total == 0 ? 0 : (unsigned)(done * 100 / total);
}

/* Copies a protocol string into a NUL-terminated buffer. */
static void
session_strcpy(char *dst, size_t n, const struct msg_str *src)
{
	size_t len = src->len < n - 1 ? src->len : n - 1;

	memcpy(dst, src->s, len);
	dst[len] = '\0';
}

/* Makes text fit a protocol string: printable ASCII, at most max bytes. */
static struct msg_str
session_text(char *buf, size_t max, const char *text)
{
	size_t i;

	for (i = 0; i < max && text[i] != '\0'; i++)
		buf[i] = (text[i] >= 0x20 && text[i] <= 0x7e) ? text[i] : ' ';
	buf[i] = '\0';
	return (struct msg_str){buf, (uint8_t)i};
}

#define session_log(s, level, ...)                                        \
	do {                                                              \
		if ((s)->bound)                                           \
			log_printf((level), (s)->serial, 0, __VA_ARGS__); \
		else                                                      \
			session_log_link((s), (level), __VA_ARGS__);      \
	} while (0)

static void session_log_link(const struct session *s, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
session_log_link(const struct session *s, enum log_level level, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_printf(level, NULL, 0, "Link %s (%s): %s", s->link, transport_name(s->t), msg);
}

/* Logs bad input from the device at warn, at most SESSION_COMPLAIN_BURST lines a minute: a
 * device that sends garbage must not flood the journal. */
static void session_complain(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
session_complain(struct session *s, const char *fmt, ...)
{
	uint32_t now = session_now_ms();
	char msg[768];
	va_list ap;

	if (s->complaints == 0 || now - s->complain_since_ms >= SESSION_COMPLAIN_WINDOW_MS) {
		s->complain_since_ms = now;
		s->complaints = 0;
	}
	if (++s->complaints > SESSION_COMPLAIN_BURST + 1)
		return;
	if (s->complaints == SESSION_COMPLAIN_BURST + 1) {
		session_log(
		    s, LOG_LEVEL_WARN, "More bad input; not logging it for the next minute");
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	session_log(s, LOG_LEVEL_WARN, "%s", msg);
}

/* --- sending --- */

/* Tells the owner that the device was told to come back later (session_owner.done). */
static void
session_done(struct session *s, uint32_t come_back_s)
{
	if (s->owner.done != NULL)
		s->owner.done(s, come_back_s, s->owner.arg);
}

static int
session_send(struct session *s, const uint8_t *msg, size_t len)
{
	int r;

	if (len == 0)
		return -EINVAL; /* an encoder refused: cannot happen with checked fields */
	r = transport_send(s->t, msg, len);
	if (r < 0 && r != -ENOTCONN)
		session_log(
		    s, LOG_LEVEL_DEBUG, "sending a %zu-byte message failed: %s", len, strerror(-r));
	return r;
}

static void
session_send_error(struct session *s, enum msg_error_code code, uint32_t retry_s, const char *text)
{
	char buf[MSG_ERROR_TEXT_MAX + 1];
	uint8_t out[MSG_ERROR_MAX];
	struct msg_error e = {
	    .code = (uint8_t)code,
	    .retry_after_s = retry_s,
	    .message = session_text(buf, MSG_ERROR_TEXT_MAX, text),
	};

	session_send(s, out, msg_encode_error(&e, out, sizeof(out)));
	if (retry_s > 0 && code != MSG_ERROR_BUSY)
		session_done(s, retry_s);
}

static void
session_send_solicit(struct session *s)
{
	uint8_t out[MSG_SOLICIT_LEN];

	s->last_solicit_ms = session_now_ms();
	s->solicited = true;
	session_send(s, out, msg_encode_solicit(out, sizeof(out)));
}

static void
session_send_done(struct session *s, const uint8_t *sha)
{
	uint8_t out[MSG_DONE_LEN];
	struct msg_done d = {.sha256 = sha};

	session_send(s, out, msg_encode_done(&d, out, sizeof(out)));
}

/* --- the timer --- */

static void
session_arm(struct session *s, uint32_t delay_ms)
{
	struct timeval tv = {
	    .tv_sec = (time_t)(delay_ms / 1000),
	    .tv_usec = (suseconds_t)(delay_ms % 1000) * 1000,
	};

	evtimer_add(s->timer, &tv);
}

/* Milliseconds from now until deadline (0 if it passed). */
static uint32_t
session_until(uint32_t deadline, uint32_t now)
{
	int32_t d = (int32_t)(deadline - now);

	return d > 0 ? (uint32_t)d : 0;
}

/* Re-arms the timer for what the state waits for. The sender's wake time is armed by the
 * pump itself. */
static void
session_rearm(struct session *s)
{
	uint32_t now = session_now_ms();

	switch (s->state) {
	case SESSION_IDLE:
	case SESSION_CHECKING:
		evtimer_del(s->timer);
		break;
	case SESSION_DOWNLOADING:
		session_arm(s, SESSION_DOWNLOAD_POLL_MS);
		break;
	case SESSION_QUEUED:
		if (s->slot == SESSION_SLOT_RESERVED)
			session_arm(s, session_until(s->reserve_until, now));
		else
			evtimer_del(s->timer);
		break;
	case SESSION_OFFERED:
		session_arm(s, session_until(s->phase_ms + SESSION_OFFER_TIMEOUT_MS, now));
		break;
	case SESSION_SENDING:
		break;
	case SESSION_VERIFYING:
		session_arm(s, session_until(s->phase_ms + SESSION_RESULT_TIMEOUT_MS, now));
		break;
	}
}

/* --- slots and the queue --- */

static void
session_dequeue(struct session *s)
{
	struct sessions *m = s->m;

	if (!s->in_queue)
		return;
	TAILQ_REMOVE(&m->queue, s, qentry);
	s->in_queue = false;
	m->queued--;
}

static void
session_enqueue(struct session *s)
{
	struct sessions *m = s->m;

	if (s->in_queue)
		return;
	TAILQ_INSERT_TAIL(&m->queue, s, qentry);
	s->in_queue = true;
	m->queued++;
}

/* Gives up the slot (or reservation) and lets the next queued device in. */
static void
session_release_slot(struct session *s)
{
	struct sessions *m = s->m;

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

/* Takes a slot if the session holds a reservation or one is free. */
static bool
session_take_slot(struct session *s)
{
	struct sessions *m = s->m;

	if (s->slot == SESSION_SLOT_ACTIVE)
		return true;
	if (s->slot == SESSION_SLOT_RESERVED) {
		m->reserved--;
	} else if (m->active + m->reserved >= m->cfg.max_transfers) {
		return false;
	}
	s->slot = SESSION_SLOT_ACTIVE;
	m->active++;
	session_dequeue(s);
	return true;
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

/* --- the image --- */

/* Drops what serving the image holds: the blob's fd, the pin, the DATA buffer. */
static void
session_release_payload(struct session *s)
{
	struct sessions *m = s->m;
	int r;

	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
	if (s->pinned) {
		r = store_unpin(m->store, s->sha256);
		if (r < 0 && r != -ENOENT)
			session_log(s, LOG_LEVEL_DEBUG, "unpinning %.12s failed: %s, ignoring",
			    s->sha256, store_errmsg(m->store));
		s->pinned = false;
	}
	free(s->buf);
	s->buf = NULL;
	s->snd_live = false;
	s->blocked = false;
}

static uint32_t
session_acked(const struct session *s)
{
	struct sender_stats st;

	if (!s->snd_live)
		return 0;
	sender_stats(&s->snd, &st);
	return st.acked;
}

static bool
session_transferring(const struct session *s)
{
	return s->state == SESSION_OFFERED || s->state == SESSION_SENDING ||
	       s->state == SESSION_VERIFYING;
}

/* Ends the history row of the offer in progress. */
static void
session_history_end(
    struct session *s, enum history_result result, uint64_t bytes, const char *reason)
{
	struct db *db = s->m->db;

	if (s->history_id == 0)
		return;
	if (history_finish(db, s->history_id, result, bytes, reason) < 0)
		dev_warn(
		    s->serial, "Recording the transfer's end failed: %s, ignoring", db_errmsg(db));
	s->history_id = 0;
}

/* Stops whatever the session does for its device: the check, the download, the queue, the
 * transfer (recorded with result and reason). keep_slot turns an active slot into a
 * reservation (the device restarted and comes right back). The fleet is the caller's. */
static void
session_stop(struct session *s, enum history_result result, const char *reason, bool keep_slot)
{
	upstream_check_cancel(s->check);
	s->check = NULL;
	upstream_check_cancel(s->refresh);
	s->refresh = NULL;
	download_waiter_cancel(s->waiter);
	s->waiter = NULL;
	event_del(s->kick);
	if (session_transferring(s))
		session_history_end(s, result, session_acked(s), reason);
	session_release_payload(s);
	if (keep_slot && s->slot == SESSION_SLOT_ACTIVE) {
		s->slot = SESSION_SLOT_RESERVED;
		s->m->active--;
		s->m->reserved++;
		s->reserve_until = session_now_ms() + SESSION_RESERVE_MS;
	} else if (!keep_slot) {
		session_dequeue(s);
		session_release_slot(s);
	}
	s->state = SESSION_IDLE;
	evtimer_del(s->timer);
}

/* The progress a reason quotes: "at 45 %". */
static void
session_where(const struct session *s, char *buf, size_t n)
{
	if (session_transferring(s) && s->size > 0)
		snprintf(buf, n, " at %u %%", session_pct(session_acked(s), s->size));
	else
		buf[0] = '\0';
}

/* Unbinds the device: another link took it over (it stays connected there), or another
 * device spoke on this link (gone: disconnect it). */
static void
session_unbind(struct session *s, const char *why, bool gone)
{
	char where[32], reason[192];

	if (!s->bound)
		return;
	session_where(s, where, sizeof(where));
	snprintf(reason, sizeof(reason), "%s%s", why, where);
	if (s->state != SESSION_IDLE) {
		fleet_set_result(s->m->fleet, s->dev, FLEET_RESULT_ABORTED, "%s", reason);
		fleet_set_state(s->m->fleet, s->dev, FLEET_STATE_FAILED);
	}
	session_stop(s, HISTORY_RESULT_ABORTED, reason, false);
	if (gone)
		fleet_disconnect(s->m->fleet, s->dev);
	s->bound = false;
	s->dev = NULL;
	s->held = false;
	s->fresh = false;
	s->serial[0] = '\0';
}

/* A failure that ends the update now: the device gets ERROR (unless code is 0), the fleet
 * shows the state (failed or error) with reason, the history row ends as FAILED. */
static void
session_fail(struct session *s, enum msg_error_code code, uint32_t retry_s, enum fleet_state state,
    const char *reason)
{
	struct sessions *m = s->m;

	if (code != 0)
		session_send_error(s, code, retry_s, reason);
	fleet_set_result(m->fleet, s->dev,
	    state == FLEET_STATE_ERROR ? FLEET_RESULT_ERROR : FLEET_RESULT_FAILED, "%s", reason);
	session_stop(s, HISTORY_RESULT_FAILED, reason, false);
	fleet_set_state(m->fleet, s->dev, state);
}

/* --- the offer and the transfer --- */

/* The largest payload this session can afford (session.h). */
static uint16_t
session_payload_for(const struct session *s)
{
	uint32_t mem = s->m->cfg.session_memory, room, p = PROTO_PAYLOAD_MAX;
	size_t mtu = transport_mtu(s->t);

	if (s->max_payload < p)
		p = s->max_payload;
	if (mtu > MSG_DATA_HEADER && mtu - MSG_DATA_HEADER < p)
		p = (uint32_t)(mtu - MSG_DATA_HEADER);
	room = mem > sizeof(struct session) ? (uint32_t)(mem - sizeof(struct session)) / 4 : 0;
	room = room > MSG_DATA_HEADER ? room - MSG_DATA_HEADER : 0;
	if (room < p)
		p = room;
	if (p < PROTO_PAYLOAD_MIN)
		p = PROTO_PAYLOAD_MIN; /* config bounds keep this out of reach */
	return (uint16_t)p;
}

static void
session_offer(struct session *s)
{
	struct sessions *m = s->m;
	struct history_start hs = {
	    .serial = s->serial,
	    .from_version = s->current_version,
	    .to_version = s->target,
	    .sha256 = s->sha256,
	    .link = s->link,
	};
	uint8_t out[MSG_OFFER_MAX];
	struct msg_offer o;
	size_t len;

	s->payload = session_payload_for(s);
	s->buf = malloc(MSG_DATA_HEADER + (size_t)s->payload);
	if (s->buf == NULL) {
		session_fail(s, MSG_ERROR_INTERNAL, SESSION_RETRY_INTERNAL, FLEET_STATE_FAILED,
		    "Out of memory");
		return;
	}
	o.proto_version = s->proto_version < PROTO_VERSION ? s->proto_version : PROTO_VERSION;
	o.flags = s->offer_flags;
	o.size = s->size;
	o.sha256 = s->sha;
	o.max_payload = s->payload;
	o.target_version.s = s->target;
	o.target_version.len = (uint8_t)strlen(s->target);
	len = msg_encode_offer(&o, out, sizeof(out));
	if (history_begin(m->db, &hs, &s->history_id) < 0) {
		dev_warn(
		    s->serial, "Recording the transfer failed: %s, ignoring", db_errmsg(m->db));
		s->history_id = 0;
	}
	s->state = SESSION_OFFERED;
	s->phase_ms = session_now_ms();
	s->snd_live = false;
	dev_info(s->serial, "Offering %s (%" PRIu32 " bytes, sha256 %.12s, payload %u)", s->target,
	    s->size, s->sha256, s->payload);
	fleet_set_state(m->fleet, s->dev, FLEET_STATE_TRANSFERRING);
	fleet_set_progress(m->fleet, s->dev, 0, s->size);
	session_send(s, out, len);
	session_rearm(s);
}

/* The payload is servable: pin it, check it once per process, open it, then get a slot. */
static void
session_payload_ready(struct session *s)
{
	struct sessions *m = s->m;
	struct store_artifact a;
	uint64_t size = 0;
	char reason[256];
	int r;

	r = store_pin(m->store, s->sha256);
	if (r < 0) {
		snprintf(reason, sizeof(reason),
		    "The payload left the cache before it could be "
		    "served; asking again soon");
		dev_warn(s->serial, "%s (%s)", reason, store_errmsg(m->store));
		session_fail(
		    s, MSG_ERROR_INTERNAL, SESSION_RETRY_INTERNAL, FLEET_STATE_FAILED, reason);
		return;
	}
	s->pinned = true;
	r = store_artifact_get(m->store, s->sha256, &a);
	if (r == 0 && !a.verified) {
		r = store_blob_verify(m->store, s->sha256);
		if (r == -EBADMSG) {
			s->pinned = false; /* the store removed it, pin and all */
			log_err("The cached payload %s (sha256 %.12s) is corrupt: %s; removed, it "
				"will be downloaded again",
			    s->target, s->sha256, store_errmsg(m->store));
		}
	}
	if (r == 0)
		r = store_blob_open(m->store, s->sha256, &s->fd, &size);
	if (r == 0 && size != s->size) {
		close(s->fd);
		s->fd = -1;
		r = -EBADMSG;
	}
	if (r < 0) {
		snprintf(reason, sizeof(reason), "Cannot serve the cached payload: %s",
		    r == -EBADMSG ? "it was corrupt and is fetched again" : strerror(-r));
		dev_warn(s->serial, "%s", reason);
		session_fail(
		    s, MSG_ERROR_INTERNAL, SESSION_RETRY_INTERNAL, FLEET_STATE_FAILED, reason);
		return;
	}
	if (!session_take_slot(s)) {
		session_release_payload(s);
		s->state = SESSION_QUEUED;
		session_enqueue(s);
		dev_info(s->serial, "All %u transfer slots are in use; the device waits its turn",
		    m->cfg.max_transfers);
		session_send_error(s, MSG_ERROR_BUSY, SESSION_RETRY_BUSY,
		    "all transfer slots are in use; you will be called");
		fleet_set_state(m->fleet, s->dev, FLEET_STATE_QUEUED);
		fleet_set_progress(m->fleet, s->dev, 0, s->size);
		session_rearm(s);
		return;
	}
	session_offer(s);
}

static void
session_on_refresh_answer(struct upstream_check *c, struct upstream_answer *a, void *arg)
{
	struct session *s = arg;
	struct download_waiter *w = s->waiter;

	(void)c;
	s->refresh = NULL;
	if (w == NULL)
		return;
	if (a->kind == UPSTREAM_UPDATE && a->artifact != NULL)
		download_waiter_set_url(w, a->artifact->sha256, a->artifact->url, a->time);
	else
		download_waiter_url_failed(w,
		    a->kind == UPSTREAM_ERROR ? a->message : "Memfault no longer offers an update");
}

/* The download manager needs a fresh signed URL: ask Memfault again for this device. */
static void
session_on_refresh(struct download_waiter *w, void *arg)
{
	struct session *s = arg;
	struct memfault_identity id = {
	    s->serial, s->hardware_version, s->software_type, s->current_version};

	if (s->refresh != NULL || s->m->up == NULL ||
	    upstream_check(s->m->up, &id, UPSTREAM_CHECK_FRESH, session_on_refresh_answer, s,
		&s->refresh) < 0) {
		if (s->refresh == NULL)
			download_waiter_url_failed(w, "cannot ask Memfault");
	}
}

static void
session_on_download(struct download_waiter *w, int err, const char *message, void *arg)
{
	struct session *s = arg;
	char reason[DOWNLOAD_MESSAGE_MAX + 64];
	bool permanent = err == -EFBIG;

	(void)w;
	s->waiter = NULL;
	upstream_check_cancel(s->refresh);
	s->refresh = NULL;
	if (err == 0) {
		session_payload_ready(s);
		return;
	}
	snprintf(reason, sizeof(reason), "Download of %s failed: %s", s->target, message);
	session_fail(s, permanent ? MSG_ERROR_UNSUPPORTED_IMAGE : MSG_ERROR_UPSTREAM_UNAVAILABLE,
	    permanent ? SESSION_RETRY_IMAGE : SESSION_RETRY_INTERNAL,
	    permanent ? FLEET_STATE_ERROR : FLEET_STATE_FAILED, reason);
}

/* Memfault offers an update: check that this device can take it, then get the payload. */
static void
session_on_update(struct session *s, const struct upstream_answer *a)
{
	struct sessions *m = s->m;
	const struct release_artifact *art = a->artifact;
	const struct release *rel = a->release;
	struct download_request req;
	struct download_progress prog;
	struct download_callbacks cb = {
	    .done = session_on_download,
	    .refresh = session_on_refresh,
	    .userdata = s,
	};
	struct store_artifact sa;
	struct devices_entry row;
	char reason[256];
	int r;

	if (rel == NULL || art == NULL || rel->version == NULL || m->dm == NULL) {
		session_fail(s, MSG_ERROR_INTERNAL, SESSION_RETRY_INTERNAL, FLEET_STATE_FAILED,
		    "Memfault's answer lacks the artifact");
		return;
	}
	if (!ident_text_valid(rel->version, strlen(rel->version), IDENT_VERSION_MAX)) {
		snprintf(reason, sizeof(reason),
		    "The release's version is not 1..64 printable characters; it cannot be "
		    "offered");
		dev_err(s->serial, "%s", reason);
		session_fail(
		    s, MSG_ERROR_UNSUPPORTED_IMAGE, SESSION_RETRY_IMAGE, FLEET_STATE_ERROR, reason);
		return;
	}
	snprintf(s->target, sizeof(s->target), "%s", rel->version);
	fleet_set_target(m->fleet, s->dev, s->target);
	if (art->file_size == 0 || art->file_size > UINT32_MAX) {
		snprintf(reason, sizeof(reason),
		    "Release %s is %" PRIu64 " bytes; the protocol carries 1 byte to 4 GiB",
		    s->target, art->file_size);
		dev_err(s->serial, "%s", reason);
		session_fail(
		    s, MSG_ERROR_UNSUPPORTED_IMAGE, SESSION_RETRY_IMAGE, FLEET_STATE_ERROR, reason);
		return;
	}
	if (rel->is_delta && !(s->caps & MSG_CAP_DELTA)) {
		snprintf(reason, sizeof(reason),
		    "Release %s is a delta image and the device cannot apply deltas", s->target);
		dev_err(s->serial, "%s", reason);
		session_fail(
		    s, MSG_ERROR_UNSUPPORTED_IMAGE, SESSION_RETRY_IMAGE, FLEET_STATE_ERROR, reason);
		return;
	}
	if (store_sha256_norm(art->sha256, s->sha256) < 0 ||
	    hex_decode(s->sha256, s->sha, sizeof(s->sha)) < 0) {
		session_fail(s, MSG_ERROR_UNSUPPORTED_IMAGE, SESSION_RETRY_IMAGE, FLEET_STATE_ERROR,
		    "The artifact's sha256 is malformed");
		return;
	}
	/* A device that came back on its old version after verifying exactly this image would
	 * only fail the same way again: wait for CheckNow (which clears the mark). */
	if (devices_get(m->db, s->serial, &row) == 0 &&
	    row.install_state == DEVICES_INSTALL_FAILED &&
	    strcmp(row.install_sha256, s->sha256) == 0) {
		snprintf(reason, sizeof(reason),
		    "The device did not boot %s last time (it came back on %s); not offering it "
		    "again until CheckNow",
		    s->target, s->current_version);
		dev_warn(s->serial, "%s", reason);
		session_fail(
		    s, MSG_ERROR_UNSUPPORTED_IMAGE, SESSION_RETRY_IMAGE, FLEET_STATE_ERROR, reason);
		return;
	}
	s->size = (uint32_t)art->file_size;
	s->offer_flags = (uint8_t)((rel->is_delta ? MSG_OFFER_F_DELTA : 0) |
				   (rel->is_forced ? MSG_OFFER_F_FORCED : 0));

	if (store_artifact_get(m->store, s->sha256, &sa) == 0 && sa.state == STORE_STATE_COMPLETE) {
		m->cache_hits++;
		session_payload_ready(s);
		return;
	}
	if (download_get_progress(m->dm, s->sha256, &prog) == 0)
		m->cache_hits++;
	else
		m->cache_misses++;
	req = (struct download_request){
	    .sha256 = s->sha256,
	    .size = art->file_size,
	    .md5 = art->md5,
	    .url = art->url,
	    .url_fetched = a->time,
	    .artifact_id = art->id > 0 ? art->id : 0,
	    .version = s->target,
	    .is_delta = rel->is_delta,
	    .serial = s->serial,
	};
	r = download_get(m->dm, &req, &cb, &s->waiter);
	if (r < 0) {
		s->waiter = NULL;
		snprintf(reason, sizeof(reason), "Cannot download %s: %s", s->target,
		    r == -EINVAL ? "Memfault's artifact is malformed" : strerror(-r));
		dev_err(s->serial, "%s", reason);
		session_fail(
		    s, MSG_ERROR_UNSUPPORTED_IMAGE, SESSION_RETRY_IMAGE, FLEET_STATE_ERROR, reason);
		return;
	}
	s->state = SESSION_DOWNLOADING;
	fleet_set_state(m->fleet, s->dev, FLEET_STATE_DOWNLOADING);
	fleet_set_progress(m->fleet, s->dev, 0, art->file_size);
	session_rearm(s);
}

/* The ERROR code and fleet state for an upstream error class. */
static void
session_on_upstream_error(struct session *s, const struct upstream_answer *a)
{
	enum msg_error_code code = MSG_ERROR_UPSTREAM_UNAVAILABLE;
	enum fleet_state state = FLEET_STATE_FAILED;
	uint32_t retry = a->retry_after_s;

	switch (a->error) {
	case MEMFAULT_ERROR_CONFIG:
		code = MSG_ERROR_UPSTREAM_REJECTED;
		state = FLEET_STATE_ERROR;
		break;
	case MEMFAULT_ERROR_RESPONSE:
		code = MSG_ERROR_UNSUPPORTED_IMAGE;
		state = FLEET_STATE_ERROR;
		break;
	case MEMFAULT_ERROR_SERVER:
		state = FLEET_STATE_ERROR;
		break;
	case MEMFAULT_ERROR_RATE_LIMITED:
	case MEMFAULT_ERROR_TRANSIENT:
	case MEMFAULT_ERROR_TLS:
		break;
	case MEMFAULT_ERROR_INTERNAL:
	case MEMFAULT_ERROR_NONE:
		code = MSG_ERROR_INTERNAL;
		break;
	}
	if (retry < SESSION_RETRY_MIN)
		retry = code == MSG_ERROR_INTERNAL ? SESSION_RETRY_INTERNAL : SESSION_RETRY_MIN;
	if (retry > SESSION_RETRY_MAX)
		retry = SESSION_RETRY_MAX;
	/* upstream.c logged the failure with what to do about it */
	session_fail(s, code, retry, state, a->message[0] != '\0' ? a->message : "Memfault failed");
}

static void
session_on_check(struct upstream_check *c, struct upstream_answer *a, void *arg)
{
	struct session *s = arg;
	struct sessions *m = s->m;
	char buf[MSG_REASON_MAX + 1];
	uint8_t out[MSG_NO_UPDATE_MAX];
	struct msg_no_update nu;
	uint32_t recheck = 0;
	int64_t age;

	(void)c;
	s->check = NULL;
	switch (a->kind) {
	case UPSTREAM_UPDATE:
		session_on_update(s, a);
		return;
	case UPSTREAM_NO_UPDATE:
		/* Asking before the cached answer expires would get the same answer. */
		if (m->cfg.answer_cache_s > 0) {
			age = (int64_t)time(NULL) - a->time;
			recheck = m->cfg.answer_cache_s;
			if (a->from_cache && age > 0)
				recheck = age < (int64_t)recheck ? recheck - (uint32_t)age : 0;
			if (recheck < SESSION_RETRY_MIN)
				recheck = SESSION_RETRY_MIN;
		}
		nu.recheck_s = recheck;
		nu.reason = session_text(buf, MSG_REASON_MAX, a->reason);
		session_send(s, out, msg_encode_no_update(&nu, out, sizeof(out)));
		session_stop(s, HISTORY_RESULT_ABORTED, NULL, false);
		session_done(s, recheck);
		if (s->just_installed) {
			/* "installed" says more than "up to date" right after the install */
			fleet_set_progress(m->fleet, s->dev, s->installed_size, s->installed_size);
			fleet_set_state(m->fleet, s->dev, FLEET_STATE_INSTALLED);
			return;
		}
		fleet_set_target(m->fleet, s->dev, NULL);
		fleet_set_result(m->fleet, s->dev, FLEET_RESULT_UP_TO_DATE, "Memfault: %s",
		    a->reason[0] != '\0' ? a->reason : "no update for this device");
		fleet_set_state(m->fleet, s->dev, FLEET_STATE_UP_TO_DATE);
		return;
	case UPSTREAM_ERROR:
		session_on_upstream_error(s, a);
		return;
	}
}

static void
session_start_check(struct session *s)
{
	struct sessions *m = s->m;
	struct memfault_identity id = {
	    s->serial, s->hardware_version, s->software_type, s->current_version};
	int r;

	if (m->up == NULL) {
		session_fail(s, MSG_ERROR_UPSTREAM_UNAVAILABLE, SESSION_RETRY_INTERNAL,
		    FLEET_STATE_FAILED, "The Memfault client is not running");
		return;
	}
	r = upstream_check(
	    m->up, &id, s->fresh ? UPSTREAM_CHECK_FRESH : 0, session_on_check, s, &s->check);
	if (r < 0) {
		s->check = NULL;
		session_fail(s, MSG_ERROR_INTERNAL, SESSION_RETRY_INTERNAL, FLEET_STATE_FAILED,
		    "Cannot ask Memfault");
		return;
	}
	s->fresh = false;
	s->state = SESSION_CHECKING;
	fleet_set_state(m->fleet, s->dev, FLEET_STATE_CHECKING);
	fleet_set_progress(m->fleet, s->dev, 0, 0);
	session_rearm(s);
}

static void
session_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	if (s->bound && s->state == SESSION_CHECKING && s->check == NULL)
		session_start_check(s);
}

/* --- the transfer --- */

static void
session_transfer_failed(struct session *s, enum msg_error_code code, const char *reason)
{
	session_fail(s, code, 0, FLEET_STATE_FAILED, reason);
}

/* Drives the sender: sends what it proposes until the link or the sender says wait. */
static void
session_pump(struct session *s)
{
	struct sessions *m = s->m;
	struct sender_next nx;
	char reason[160];
	uint32_t now;
	ssize_t n;
	int r;

	if (!s->snd_live || (s->state != SESSION_SENDING && s->state != SESSION_VERIFYING))
		return;
	s->blocked = false;
	for (;;) {
		now = session_now_ms();
		switch (sender_poll(&s->snd, now, &nx)) {
		case SENDER_SEND:
			if (s->state == SESSION_VERIFYING) {
				/* a rewind after everything was acknowledged */
				s->state = SESSION_SENDING;
				fleet_set_state(m->fleet, s->dev, FLEET_STATE_TRANSFERRING);
			}
			n = pread(s->fd, s->buf + MSG_DATA_HEADER, nx.len, (off_t)nx.offset);
			if (n != (ssize_t)nx.len) {
				snprintf(reason, sizeof(reason),
				    "Reading the cached payload failed at offset %" PRIu32 ": %s",
				    nx.offset, n < 0 ? strerror(errno) : "file too short");
				dev_err(s->serial, "%s", reason);
				session_fail(s, MSG_ERROR_INTERNAL, SESSION_RETRY_INTERNAL,
				    FLEET_STATE_FAILED, reason);
				return;
			}
			msg_encode_data_header(nx.offset, s->buf);
			r = transport_send(s->t, s->buf, MSG_DATA_HEADER + (size_t)nx.len);
			if (r == -EAGAIN) {
				/* WRITABLE resumes; meanwhile keep the retransmission timer
				 * running */
				s->blocked = true;
				session_arm(s, SESSION_BLOCKED_POLL_MS);
				return;
			}
			if (r < 0)
				return; /* the link is down: DISCONNECTED follows */
			sender_sent(&s->snd, now);
			if (nx.offset + nx.len > s->sent_high)
				s->sent_high = nx.offset + nx.len;
			break;
		case SENDER_WAIT:
			if (nx.has_wake)
				session_arm(s, session_until(nx.wake_ms, now));
			else
				evtimer_del(s->timer);
			return;
		case SENDER_COMPLETE:
			if (s->state != SESSION_VERIFYING) {
				s->state = SESSION_VERIFYING;
				s->phase_ms = now;
				fleet_set_state(m->fleet, s->dev, FLEET_STATE_VERIFYING);
				fleet_set_progress(m->fleet, s->dev, s->size, s->size);
				dev_debug(s->serial, "every byte acknowledged; waiting for RESULT");
				session_rearm(s);
			}
			return;
		case SENDER_FAILED:
			snprintf(reason, sizeof(reason), "The device stopped answering at %u %%",
			    session_pct(session_acked(s), s->size));
			dev_warn(s->serial, "%s; abandoning the transfer", reason);
			session_transfer_failed(s, MSG_ERROR_ABORTED, reason);
			return;
		}
	}
}

static void
session_on_ack(struct session *s, const struct msg_ack *ack)
{
	struct sessions *m = s->m;
	struct sender_config cfg;
	uint32_t now = session_now_ms();
	char reason[160];
	bool first = false;

	switch (s->state) {
	case SESSION_IDLE:
		/* A device in a transfer the gateway forgot (e.g. after a restart). */
		if (now - s->last_solicit_ms >= SESSION_SOLICIT_EVERY_MS || !s->solicited) {
			session_log(s, LOG_LEVEL_DEBUG,
			    "ACK outside a transfer; asking the device to say HELLO");
			session_send_solicit(s);
		}
		return;
	case SESSION_CHECKING:
	case SESSION_DOWNLOADING:
	case SESSION_QUEUED:
		return; /* a late ACK of an exchange the HELLO ended */
	case SESSION_OFFERED:
		cfg = (struct sender_config){
		    .size = s->size,
		    .max_payload = s->payload,
		    .window = s->window,
		    .max_stall_ms = s->max_stall_ms,
		    .link = transport_kind(s->t) == TRANSPORT_KIND_BLE_GATT ||
				    transport_kind(s->t) == TRANSPORT_KIND_BLE_L2CAP
				? SENDER_LINK_PACKET
				: SENDER_LINK_STREAM,
		};
		if (sender_init(&s->snd, &cfg, now) < 0) {
			session_transfer_failed(s, MSG_ERROR_INTERNAL, "Cannot start the sender");
			return;
		}
		s->snd_live = true;
		s->state = SESSION_SENDING;
		s->started_ms = session_mono_ms64();
		first = true;
		break;
	case SESSION_SENDING:
	case SESSION_VERIFYING:
		break;
	}
	switch (sender_ack(&s->snd, ack, now)) {
	case SENDER_ACK_OK:
	case SENDER_ACK_STALE:
		break;
	case SENDER_ACK_BAD:
		if (ack->offset > s->size)
			snprintf(reason, sizeof(reason),
			    "The device asked for offset %" PRIu32 ", past the end of the %" PRIu32
			    "-byte image",
			    ack->offset, s->size);
		else
			snprintf(reason, sizeof(reason),
			    "The device acknowledged offset %" PRIu32 " of the %" PRIu32
			    "-byte image, of which only %" PRIu32 " bytes were sent",
			    ack->offset, s->size, s->sent_high);
		session_complain(s, "%s; answered ERROR BAD_OFFSET", reason);
		m->bad_messages++;
		session_transfer_failed(s, MSG_ERROR_BAD_OFFSET, reason);
		return;
	}
	if (first) {
		/* where the device's partial image ends */
		s->start_offset = ack->offset;
		s->sent_high = ack->offset;
	}
	if (first && ack->offset > 0)
		dev_info(s->serial, "Resuming %s at %" PRIu32 " of %" PRIu32 " bytes", s->target,
		    ack->offset, s->size);
	else if (first)
		dev_debug(s->serial, "transfer of %s starts", s->target);
	if (s->state == SESSION_VERIFYING)
		s->phase_ms = now; /* keepalive */
	fleet_set_progress(m->fleet, s->dev, session_acked(s), s->size);
	session_pump(s);
	if (s->state == SESSION_VERIFYING)
		session_rearm(s);
}

static const char *
session_status_name(uint8_t status)
{
	switch (status) {
	case MSG_STATUS_OK:
		return "OK";
	case MSG_STATUS_HASH_MISMATCH:
		return "HASH_MISMATCH";
	case MSG_STATUS_FLASH_ERROR:
		return "FLASH_ERROR";
	case MSG_STATUS_NO_SPACE:
		return "NO_SPACE";
	case MSG_STATUS_DECLINED:
		return "DECLINED";
	case MSG_STATUS_ABORTED:
		return "ABORTED";
	case MSG_STATUS_UNSUPPORTED:
		return "UNSUPPORTED";
	default:
		return "an unknown status";
	}
}

/* A RESULT for an image this session is not offering: DONE, so the device stops repeating it.
 * A verified image the cache knows (a transfer from before a restart, say) is recorded as
 * awaiting install, so its confirmation still works. */
static void
session_stray_result(struct session *s, const struct msg_result *r, const char *sha)
{
	struct sessions *m = s->m;
	struct store_artifact a;

	if (strcmp(sha, s->done_sha) == 0) {
		session_send_done(s, r->sha256); /* our DONE was lost */
		return;
	}
	if (s->bound && r->status == MSG_STATUS_OK && store_artifact_get(m->store, sha, &a) == 0 &&
	    strcmp(a.version, s->current_version) != 0 &&
	    devices_set_install(m->db, s->serial, DEVICES_INSTALL_PENDING, a.version, sha) == 0) {
		dev_notice(s->serial,
		    "RESULT OK for %s (sha256 %.12s) from a transfer this session did not run; "
		    "waiting for the device to run it",
		    a.version, sha);
		fleet_set_target(m->fleet, s->dev, a.version);
		fleet_set_result(m->fleet, s->dev, FLEET_RESULT_TRANSFERRED,
		    "Verified %s; waiting for the device to run it", a.version);
		if (s->state == SESSION_IDLE)
			fleet_set_state(m->fleet, s->dev, FLEET_STATE_AWAITING_INSTALL);
	} else {
		session_complain(s,
		    "RESULT %s for image sha256 %.12s, which was not offered here; answered DONE",
		    session_status_name(r->status), sha);
	}
	snprintf(s->done_sha, sizeof(s->done_sha), "%s", sha);
	session_send_done(s, r->sha256);
}

static void
session_on_result(struct session *s, const struct msg_result *r)
{
	struct sessions *m = s->m;
	char sha[STORE_SHA256_HEX + 1], detail[MSG_DETAIL_MAX + 1], reason[256];
	uint32_t acked = session_acked(s);
	uint64_t ms;

	hex_encode(r->sha256, PROTO_SHA256_LEN, sha);
	session_strcpy(detail, sizeof(detail), &r->detail);
	if (!s->bound) {
		/* A device still reporting to a gateway that restarted: find out who it is
		 * first, so its result is recorded (it says HELLO with the image it holds, is
		 * offered it again and reports again). */
		if (session_now_ms() - s->last_solicit_ms >= SESSION_SOLICIT_EVERY_MS ||
		    !s->solicited)
			session_send_solicit(s);
		return;
	}
	if (!session_transferring(s) || strcmp(sha, s->sha256) != 0) {
		session_stray_result(s, r, sha);
		return;
	}
	if (r->status == MSG_STATUS_OK) {
		/* Believe OK only for an image that was sent to the end and received whole. */
		if (r->bytes_received != s->size || s->sent_high != s->size) {
			snprintf(reason, sizeof(reason),
			    "The device reported the image verified after receiving %" PRIu32
			    " of %" PRIu32 " bytes (%" PRIu32 " sent)",
			    r->bytes_received, s->size, s->sent_high);
			session_complain(s, "%s; answered ERROR ABORTED", reason);
			m->bad_messages++;
			session_transfer_failed(s, MSG_ERROR_ABORTED, reason);
			return;
		}
		ms = session_mono_ms64() - s->started_ms;
		dev_notice(s->serial,
		    "Transferred and verified %s: %" PRIu32 " bytes (from offset %" PRIu32
		    ") in %" PRIu64 ".%03" PRIu64 " s; waiting for the device to run it",
		    s->target, s->size, s->start_offset, ms / 1000, ms % 1000);
		if (s->snd_live) {
			struct sender_stats st;

			sender_stats(&s->snd, &st);
			dev_info(s->serial,
			    "Sender: %" PRIu32 " frames, %" PRIu64 " bytes sent, %" PRIu64
			    " resent, %" PRIu32 " rewinds, %" PRIu32 " timeouts, payload %u",
			    st.frames_sent, st.bytes_sent, st.bytes_resent, st.rewinds, st.timeouts,
			    st.payload);
		}
		if (devices_set_install(
			m->db, s->serial, DEVICES_INSTALL_PENDING, s->target, s->sha256) < 0)
			dev_warn(s->serial, "Recording the pending install failed: %s, ignoring",
			    db_errmsg(m->db));
		snprintf(reason, sizeof(reason), "Verified by the device%s%s",
		    detail[0] != '\0' ? ": " : "", detail);
		session_history_end(s, HISTORY_RESULT_VERIFIED, s->size, reason);
		snprintf(s->done_sha, sizeof(s->done_sha), "%s", sha);
		session_send_done(s, r->sha256);
		fleet_set_result(m->fleet, s->dev, FLEET_RESULT_TRANSFERRED,
		    "Verified %s; waiting for the device to run it", s->target);
		fleet_set_progress(m->fleet, s->dev, s->size, s->size);
		session_stop(s, HISTORY_RESULT_VERIFIED, NULL, false);
		fleet_set_state(m->fleet, s->dev, FLEET_STATE_AWAITING_INSTALL);
		return;
	}
	/* A refusal right after the OFFER, or a failure after the transfer. */
	if (s->state == SESSION_OFFERED)
		snprintf(reason, sizeof(reason), "Device refused %s: %s%s%s", s->target,
		    session_status_name(r->status), detail[0] != '\0' ? ": " : "", detail);
	else
		snprintf(reason, sizeof(reason), "Device reported %s for %s at %u %%%s%s",
		    session_status_name(r->status), s->target, session_pct(acked, s->size),
		    detail[0] != '\0' ? ": " : "", detail);
	dev_warn(s->serial, "%s", reason);
	snprintf(s->done_sha, sizeof(s->done_sha), "%s", sha);
	session_send_done(s, r->sha256);
	fleet_set_result(m->fleet, s->dev,
	    r->status == MSG_STATUS_DECLINED || r->status == MSG_STATUS_NO_SPACE ||
		    r->status == MSG_STATUS_UNSUPPORTED
		? FLEET_RESULT_ERROR
		: FLEET_RESULT_FAILED,
	    "%s", reason);
	session_stop(s, HISTORY_RESULT_FAILED, reason, false);
	fleet_set_state(m->fleet, s->dev,
	    r->status == MSG_STATUS_DECLINED || r->status == MSG_STATUS_NO_SPACE ||
		    r->status == MSG_STATUS_UNSUPPORTED
		? FLEET_STATE_ERROR
		: FLEET_STATE_FAILED);
	session_done(s, 0);
}

/* --- HELLO --- */

/* Reads string number idx (0 serial .. 3 current_version) of a HELLO that failed to decode,
 * escaped for a log line; "" if it is not there. Only for messages: nothing trusts it. */
static void
session_hello_field(const uint8_t *msg, size_t len, int idx, char *out, size_t n)
{
	size_t off, l, i, o = 0;
	int k;

	out[0] = '\0';
	if (len < MSG_HELLO_FIXED)
		return;
	off = (msg[2] & MSG_HELLO_F_RESUME) ? MSG_HELLO_FIXED + MSG_HELLO_RESUME : MSG_HELLO_FIXED;
	for (k = 0; k <= idx; k++) {
		if (off >= len)
			return;
		l = msg[off++];
		if (k < idx) {
			off += l;
			continue;
		}
		for (i = 0; i < l && off + i < len && o + 5 < n && i < 64; i++) {
			uint8_t c = msg[off + i];

			if (c >= 0x20 && c <= 0x7e && c != '\'' && c != '\\')
				out[o++] = (char)c;
			else
				o += (size_t)snprintf(out + o, n - o, "\\x%02x", c);
		}
		out[o] = '\0';
	}
}

/* A HELLO that did not decode: BAD_IDENTITY for a bad identity string, UNSUPPORTED_VERSION
 * for version 0, BAD_MESSAGE for the rest. */
static void
session_bad_hello(struct session *s, const uint8_t *msg, size_t len, enum msg_err err)
{
	static const char *const names[] = {
	    "device_serial", "hardware_version", "software_type", "current_version"};
	char value[64 * 4 + 1];
	int idx = -1;

	s->m->bad_messages++;
	switch (err) {
	case MSG_ERR_SERIAL:
		idx = 0;
		break;
	case MSG_ERR_HARDWARE:
		idx = 1;
		break;
	case MSG_ERR_SOFTWARE_TYPE:
		idx = 2;
		break;
	case MSG_ERR_SW_VERSION:
		idx = 3;
		break;
	case MSG_ERR_VERSION:
		session_complain(s, "HELLO with protocol version 0; answered ERROR "
				    "UNSUPPORTED_VERSION");
		session_send_error(s, MSG_ERROR_UNSUPPORTED_VERSION, SESSION_RETRY_VERSION,
		    "protocol version 0 is not supported; this gateway speaks 1");
		return;
	default:
		session_complain(s, "Malformed HELLO (%zu bytes): %s; answered ERROR BAD_MESSAGE",
		    len, msg_strerror(err));
		session_send_error(s, MSG_ERROR_BAD_MESSAGE, 0, msg_strerror(err));
		return;
	}
	session_hello_field(msg, len, idx, value, sizeof(value));
	session_complain(s, "HELLO refused: %s '%s': %s; answered ERROR BAD_IDENTITY", names[idx],
	    value, msg_strerror(err));
	session_send_error(s, MSG_ERROR_BAD_IDENTITY, SESSION_RETRY_IDENTITY, msg_strerror(err));
}

static struct session *
sessions_find_bound(struct sessions *m, const char *serial)
{
	struct session *s;

	TAILQ_FOREACH(s, &m->all, entry)
	if (s->bound && strcmp(s->serial, serial) == 0)
		return s;
	return NULL;
}

/* The device says it runs current_version: settles an install that was pending. The devices
 * table is the one source of truth; the history row is annotated to match. */
static void
session_confirm_install(struct session *s)
{
	struct sessions *m = s->m;
	struct history_entry h = {0};
	struct devices_entry row;
	struct store_artifact art;
	char reason[192];
	bool ok;

	if (devices_get(m->db, s->serial, &row) < 0 || row.install_state != DEVICES_INSTALL_PENDING)
		return;
	ok = strcmp(row.install_version, s->current_version) == 0;
	if (ok)
		snprintf(reason, sizeof(reason), "Running %s", row.install_version);
	else
		snprintf(reason, sizeof(reason), "Came back running %s, not %s", s->current_version,
		    row.install_version);
	if (devices_set_install(m->db, s->serial,
		ok ? DEVICES_INSTALL_CONFIRMED : DEVICES_INSTALL_FAILED, NULL, NULL) < 0) {
		dev_warn(s->serial, "Recording the install failed: %s, ignoring", db_errmsg(m->db));
		return;
	}
	if (history_pending_install(m->db, s->serial, &h) == 0 &&
	    strcmp(h.sha256, row.install_sha256) == 0 &&
	    history_confirm(m->db, h.id, ok, ok ? NULL : reason) < 0)
		dev_warn(s->serial, "Recording the install in the history failed: %s, ignoring",
		    db_errmsg(m->db));
	fleet_set_target(m->fleet, s->dev, row.install_version);
	s->just_installed = ok;
	/* docs/dbus-api.md: an installed device shows size / size. The blob may have been evicted
	 * since; the history row still has what was sent. */
	if (store_artifact_get(m->store, row.install_sha256, &art) == 0)
		s->installed_size = art.size;
	else if (h.id > 0 && strcmp(h.sha256, row.install_sha256) == 0)
		s->installed_size = h.bytes;
	else
		s->installed_size = 0;
	if (ok) {
		dev_notice(s->serial, "Installed %s", row.install_version);
		fleet_set_result(m->fleet, s->dev, FLEET_RESULT_INSTALLED, "%s", reason);
		fleet_set_state(m->fleet, s->dev, FLEET_STATE_INSTALLED);
	} else {
		dev_warn(s->serial, "The install of %s failed: the device came back running %s",
		    row.install_version, s->current_version);
		fleet_set_result(m->fleet, s->dev, FLEET_RESULT_FAILED, "%s", reason);
		fleet_set_state(m->fleet, s->dev, FLEET_STATE_FAILED);
	}
}

static bool
session_same_identity(const struct session *s, const struct msg_hello *h)
{
	return h->serial.len == strlen(s->serial) &&
	       memcmp(h->serial.s, s->serial, h->serial.len) == 0 &&
	       h->hardware_version.len == strlen(s->hardware_version) &&
	       memcmp(h->hardware_version.s, s->hardware_version, h->hardware_version.len) == 0 &&
	       h->software_type.len == strlen(s->software_type) &&
	       memcmp(h->software_type.s, s->software_type, h->software_type.len) == 0 &&
	       h->current_version.len == strlen(s->current_version) &&
	       memcmp(h->current_version.s, s->current_version, h->current_version.len) == 0;
}

static void
session_on_hello(struct session *s, const struct msg_hello *h)
{
	struct sessions *m = s->m;
	struct devices_hello dh;
	struct fleet_hello fh;
	struct session *other;
	char serial[IDENT_SERIAL_MAX + 1], where[32], reason[192];
	bool same = s->bound && session_same_identity(s, h);
	int r;

	session_strcpy(serial, sizeof(serial), &h->serial);
	/* The device's limits may change from one HELLO to the next. */
	s->proto_version = h->proto_version;
	s->caps = h->caps;
	s->max_payload = h->max_payload;
	s->window = h->window;
	s->max_stall_ms = h->max_stall_ms;
	s->solicited = false;
	s->just_installed = false;

	if (same && (s->state == SESSION_CHECKING || s->state == SESSION_DOWNLOADING)) {
		/* its retry while we work on the answer: not a new check */
		fleet_touch(m->fleet, s->dev);
		return;
	}
	if (s->bound && strcmp(s->serial, serial) != 0)
		session_unbind(s, "Another device said HELLO on its link", true);
	other = sessions_find_bound(m, serial);
	if (other != NULL && other != s) {
		dev_notice(serial, "Now on link %s (%s); dropping its session on link %s", s->link,
		    transport_name(s->t), other->link);
		snprintf(reason, sizeof(reason), "Moved to link %s", s->link);
		session_unbind(other, reason, false);
	}
	if (s->bound && s->state != SESSION_IDLE) {
		/* The device restarted (or gave up): answer it afresh. A transfer ends here; the
		 * device resumes it by its RESUME fields, and keeps its slot. */
		bool was_transfer = session_transferring(s);

		session_where(s, where, sizeof(where));
		snprintf(reason, sizeof(reason), "Device restarted%s", where);
		if (was_transfer)
			dev_info(s->serial, "%s; answering its HELLO afresh", reason);
		session_stop(s, HISTORY_RESULT_ABORTED, reason, true);
	}
	if (!s->bound) {
		s->bound = true;
		snprintf(s->serial, sizeof(s->serial), "%s", serial);
	}
	session_strcpy(s->hardware_version, sizeof(s->hardware_version), &h->hardware_version);
	session_strcpy(s->software_type, sizeof(s->software_type), &h->software_type);
	session_strcpy(s->current_version, sizeof(s->current_version), &h->current_version);

	dh = (struct devices_hello){
	    s->serial, s->hardware_version, s->software_type, s->current_version, s->link};
	r = devices_upsert(m->db, &dh);
	if (r < 0) {
		dev_err(s->serial, "Recording the device failed: %s", db_errmsg(m->db));
		session_send_error(s, MSG_ERROR_INTERNAL,
		    r == -ENOSPC ? SESSION_RETRY_IMAGE : SESSION_RETRY_INTERNAL,
		    r == -ENOSPC ? "the gateway knows too many devices" : "gateway database error");
		session_stop(s, HISTORY_RESULT_ABORTED, NULL, false);
		return;
	}
	fh = (struct fleet_hello){s->serial, s->hardware_version, s->software_type,
	    s->current_version, s->link, s->address};
	s->dev = fleet_connect(m->fleet, &fh);
	dev_debug(s->serial, "HELLO on link %s: %s %s running %s, payload %u, window %u%s", s->link,
	    s->hardware_version, s->software_type, s->current_version, h->max_payload, h->window,
	    (h->flags & MSG_HELLO_F_RESUME) ? ", resuming" : "");
	session_confirm_install(s);
	if (s->held) {
		session_send_error(
		    s, MSG_ERROR_ABORTED, SESSION_RETRY_HELD, "updates held by the operator");
		session_stop(s, HISTORY_RESULT_ABORTED, NULL, false);
		return;
	}
	session_start_check(s);
}

/* --- link events --- */

static void
session_on_message(struct session *s, const uint8_t *msg, size_t len)
{
	struct sessions *m = s->m;
	enum msg_err err;
	struct msg mm;

	err = msg_decode_to_gateway(msg, len, &mm);
	if (err == MSG_ERR_UNKNOWN_TYPE) {
		session_log(s, LOG_LEVEL_DEBUG, "ignoring a message of unknown type 0x%02x",
		    len > 0 ? msg[0] : 0);
		return;
	}
	if (err != MSG_OK) {
		if (len > 0 && msg[0] == MSG_HELLO) {
			session_bad_hello(s, msg, len, err);
			return;
		}
		m->bad_messages++;
		session_complain(s,
		    "Malformed message of type 0x%02x (%zu bytes): %s; answered "
		    "ERROR BAD_MESSAGE",
		    len > 0 ? msg[0] : 0, len, msg_strerror(err));
		session_send_error(s, MSG_ERROR_BAD_MESSAGE, 0, msg_strerror(err));
		return;
	}
	if (s->bound)
		fleet_touch(m->fleet, s->dev);
	switch ((enum msg_type)mm.type) {
	case MSG_HELLO:
		session_on_hello(s, &mm.u.hello);
		break;
	case MSG_ACK:
		session_on_ack(s, &mm.u.ack);
		break;
	case MSG_RESULT:
		session_on_result(s, &mm.u.result);
		break;
	case MSG_OFFER:
	case MSG_NO_UPDATE:
	case MSG_ERROR:
	case MSG_DATA:
	case MSG_DONE:
	case MSG_SOLICIT:
		break; /* msg_decode_to_gateway() never returns these */
	}
}

static void
session_on_connected(struct session *s)
{
	session_log(s, LOG_LEVEL_DEBUG, "link up");
	if (s->owner.link_state != NULL)
		s->owner.link_state(s, true, 0, s->owner.arg);
	if (s->solicit)
		session_send_solicit(s);
}

/* The link went down: whatever was under way for the device ends, and the device is no longer
 * bound (it says HELLO again when it is back). */
static void
session_on_disconnected(struct session *s, int err)
{
	struct sessions *m = s->m;
	char where[32], reason[192];

	if (s->bound) {
		session_where(s, where, sizeof(where));
		snprintf(reason, sizeof(reason), "Disconnected%s", where);
		if (session_transferring(s))
			dev_notice(s->serial, "%s", reason);
		else
			dev_debug(s->serial, "disconnected");
		if (s->state != SESSION_IDLE) {
			fleet_set_result(m->fleet, s->dev, FLEET_RESULT_FAILED, "%s", reason);
			fleet_set_state(m->fleet, s->dev, FLEET_STATE_FAILED);
		}
		session_stop(s, HISTORY_RESULT_ABORTED, reason, false);
		fleet_disconnect(m->fleet, s->dev);
		s->bound = false;
		s->dev = NULL;
		s->serial[0] = '\0';
	} else {
		session_stop(s, HISTORY_RESULT_ABORTED, NULL, false);
	}
	/* an operator's Abort holds until the device reconnects */
	s->held = false;
	s->fresh = false;
	if (s->owner.link_state != NULL)
		s->owner.link_state(s, false, err, s->owner.arg);
	if (s->owner.closed != NULL)
		s->owner.closed(s, s->owner.arg); /* may free s: nothing after this */
}

static void
session_on_bad_frame(struct session *s, size_t len)
{
	size_t mtu = transport_mtu(s->t);

	s->bad_frames++;
	/* Line noise damages frames on a healthy link and the protocol recovers by itself; a
	 * frame larger than the link takes is the sender's fault. */
	if (mtu > 0 && len > FRAME_ENCODED_MAX(mtu))
		session_complain(s,
		    "Dropped a %zu-byte frame: the link takes messages of up to %zu "
		    "bytes (max_frame)",
		    len, mtu);
	else
		session_log(s, LOG_LEVEL_DEBUG, "dropped a damaged frame (%zu bytes)", len);
}

static void
session_transport_cb(struct transport *t, enum transport_event ev, const uint8_t *msg, size_t len,
    int err, void *arg)
{
	struct session *s = arg;

	(void)t;
	switch (ev) {
	case TRANSPORT_EV_CONNECTED:
		session_on_connected(s);
		break;
	case TRANSPORT_EV_MESSAGE:
		session_on_message(s, msg, len);
		break;
	case TRANSPORT_EV_BAD_FRAME:
		session_on_bad_frame(s, len);
		break;
	case TRANSPORT_EV_WRITABLE:
		if (s->blocked)
			session_pump(s);
		break;
	case TRANSPORT_EV_DISCONNECTED:
		session_on_disconnected(s, err);
		break;
	}
}

static void
session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct sessions *m = s->m;
	struct download_progress p;
	uint32_t now = session_now_ms();
	char reason[160];

	(void)fd;
	(void)what;
	switch (s->state) {
	case SESSION_IDLE:
	case SESSION_CHECKING:
		break;
	case SESSION_DOWNLOADING:
		if (download_get_progress(m->dm, s->sha256, &p) == 0)
			fleet_set_progress(m->fleet, s->dev, p.bytes, p.size);
		session_rearm(s);
		break;
	case SESSION_QUEUED:
		if (s->slot == SESSION_SLOT_RESERVED && session_until(s->reserve_until, now) == 0) {
			dev_info(s->serial, "No HELLO after the SOLICIT; the slot goes to the next "
					    "device");
			/* to the back of the queue, without the slot */
			session_dequeue(s);
			session_enqueue(s);
			session_release_slot(s);
		}
		session_rearm(s);
		break;
	case SESSION_OFFERED:
		if (session_until(s->phase_ms + SESSION_OFFER_TIMEOUT_MS, now) == 0) {
			snprintf(reason, sizeof(reason), "No answer to the offer of %s in %u s",
			    s->target, SESSION_OFFER_TIMEOUT_MS / 1000);
			dev_warn(s->serial, "%s", reason);
			session_transfer_failed(s, 0, reason);
		} else {
			session_rearm(s);
		}
		break;
	case SESSION_SENDING:
		session_pump(s);
		break;
	case SESSION_VERIFYING:
		if (session_until(s->phase_ms + SESSION_RESULT_TIMEOUT_MS, now) == 0) {
			snprintf(reason, sizeof(reason), "No RESULT for %s within %u s", s->target,
			    SESSION_RESULT_TIMEOUT_MS / 1000);
			dev_warn(s->serial, "%s", reason);
			session_transfer_failed(s, 0, reason);
		} else {
			session_pump(s);
			session_rearm(s);
		}
		break;
	}
}

/* --- life cycle --- */

int
session_new(struct sessions *m, struct transport *t, const struct session_link *link,
    const struct session_owner *owner, struct session **out)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return -ENOMEM;
	s->m = m;
	s->t = t;
	s->fd = -1;
	if (owner != NULL)
		s->owner = *owner;
	snprintf(s->link, sizeof(s->link), "%s", link->name);
	snprintf(s->address, sizeof(s->address), "%s", link->address != NULL ? link->address : "");
	s->solicit = link->solicit;
	s->timer = evtimer_new(m->base, session_timer_cb, s);
	s->kick = event_new(m->base, -1, 0, session_kick_cb, s);
	if (s->timer == NULL || s->kick == NULL) {
		if (s->timer != NULL)
			event_free(s->timer);
		if (s->kick != NULL)
			event_free(s->kick);
		free(s);
		return -ENOMEM;
	}
	TAILQ_INSERT_TAIL(&m->all, s, entry);
	m->n_sessions++;
	transport_set_callback(t, session_transport_cb, s, NULL);
	*out = s;
	return 0;
}

void
session_free(struct session *s, const char *reason)
{
	struct sessions *m;
	char where[32], why[192];

	if (s == NULL)
		return;
	m = s->m;
	if (reason == NULL)
		reason = "session ended";
	if (s->bound) {
		session_where(s, where, sizeof(where));
		snprintf(why, sizeof(why), "%s%s", reason, where);
		if (session_transferring(s))
			dev_notice(s->serial, "Transfer of %s interrupted: %s", s->target, why);
		if (s->state != SESSION_IDLE) {
			fleet_set_result(m->fleet, s->dev, FLEET_RESULT_ABORTED, "%s", why);
			fleet_set_state(m->fleet, s->dev, FLEET_STATE_FAILED);
		}
		session_stop(s, HISTORY_RESULT_ABORTED, why, false);
		fleet_disconnect(m->fleet, s->dev);
	} else {
		session_stop(s, HISTORY_RESULT_ABORTED, reason, false);
	}
	TAILQ_REMOVE(&m->all, s, entry);
	m->n_sessions--;
	event_free(s->timer);
	event_free(s->kick);
	transport_free(s->t);
	free(s);
}

bool
session_idle(const struct session *s)
{
	return s->state == SESSION_IDLE;
}

struct transport *
session_transport(const struct session *s)
{
	return s->t;
}

const char *
session_serial(const struct session *s)
{
	return s->bound ? s->serial : NULL;
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
	/* The owners free their sessions first; whatever is left goes now. */
	while ((s = TAILQ_FIRST(&m->all)) != NULL)
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
	{
		bool restart = s->check != NULL || s->waiter != NULL;

		upstream_check_cancel(s->check);
		s->check = NULL;
		upstream_check_cancel(s->refresh);
		s->refresh = NULL;
		download_waiter_cancel(s->waiter);
		s->waiter = NULL;
		if (restart && s->bound) {
			/* asked again on the new client from the loop; the cached answer and the
			 * partial download make that cheap */
			s->state = SESSION_CHECKING;
			evtimer_del(s->timer);
			event_active(s->kick, 0, 0);
		}
	}
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

static int
session_check_now(struct session *s)
{
	struct sessions *m = s->m;
	struct devices_entry row;

	switch (s->state) {
	case SESSION_CHECKING:
		return 0;
	case SESSION_DOWNLOADING:
	case SESSION_QUEUED:
	case SESSION_OFFERED:
	case SESSION_SENDING:
	case SESSION_VERIFYING:
		return -EBUSY;
	case SESSION_IDLE:
		break;
	}
	if (!transport_connected(s->t))
		return -ENOTCONN;
	if (devices_forget_answer(m->db, s->serial) < 0)
		dev_warn(s->serial, "Forgetting the cached answer failed: %s, ignoring",
		    db_errmsg(m->db));
	/* a failed install of some image no longer blocks offering it */
	if (devices_get(m->db, s->serial, &row) == 0 &&
	    row.install_state == DEVICES_INSTALL_FAILED &&
	    devices_set_install(m->db, s->serial, DEVICES_INSTALL_NONE, NULL, NULL) < 0)
		dev_warn(s->serial, "Clearing the failed install failed: %s, ignoring",
		    db_errmsg(m->db));
	s->held = false;
	s->fresh = true;
	session_send_solicit(s);
	return 0;
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
	char where[32], why[FLEET_REASON_MAX + 1];
	int r = sessions_lookup(m, serial, &s);

	if (r == -ENOTCONN)
		return -EALREADY; /* known, but nothing runs for it */
	if (r < 0)
		return r;
	if (s->state == SESSION_IDLE)
		return -EALREADY;
	if (reason == NULL || reason[0] == '\0')
		reason = "Aborted by the operator";
	session_where(s, where, sizeof(where));
	snprintf(why, sizeof(why), "%s%s", reason, where);
	dev_notice(serial, "%s", why);
	session_send_error(s, MSG_ERROR_ABORTED, SESSION_RETRY_HELD, reason);
	session_stop(s, HISTORY_RESULT_ABORTED, why, false);
	s->held = true;
	fleet_set_result(m->fleet, s->dev, FLEET_RESULT_ABORTED, "%s", reason);
	fleet_set_state(m->fleet, s->dev, FLEET_STATE_IDLE);
	return 0;
}

/* --- the daemon module: the fleet and the session manager --- */

static void
session_module_config(const struct config *cfg, struct sessions_config *out)
{
	*out = (struct sessions_config){
	    .max_transfers = cfg->general.max_transfers,
	    .session_memory = cfg->general.session_memory,
	    .answer_cache_s = cfg->memfault.answer_cache_s,
	};
}

static int
session_module_start(struct daemon *d)
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
	session_module_config(d->cfg, &sc);
	r = sessions_new(d->base, d->store, d->fleet, &sc, &d->sessions);
	if (r < 0)
		return log_err_errno(r, "Failed to set up the device sessions");
	sessions_set_upstream(d->sessions, d->upstream, d->downloads);
	fleet_get_counts(d->fleet, &counts);
	log_debug("%u device(s) known from the database", counts.devices);
	return 0;
}

static int
session_module_reload(struct daemon *d, const struct config *old)
{
	struct sessions_config sc;

	(void)old;
	session_module_config(d->cfg, &sc);
	sessions_set_config(d->sessions, &sc);
	return 0;
}

static void
session_module_stop(struct daemon *d)
{
	sessions_free(d->sessions);
	d->sessions = NULL;
	fleet_free(d->fleet);
	d->fleet = NULL;
}

const struct daemon_module session_module = {
    .name = "sessions",
    .start = session_module_start,
    .reload = session_module_reload,
    .stop = session_module_stop,
};
