/* One device's session (see session.h and docs/PROTOCOL.md, section 7.2): a small state
 * machine driven by its link's events, the upstream check, the download manager and one timer.
 * This file binds the device at HELLO, settles a pending install, answers what it sends, and
 * runs the timer and the session's life; session_transfer.c, session_upstream.c and sessions.c
 * do the rest (session_int.h). The database is the record: devices_upsert() at every HELLO, the
 * install state in the devices table (the one source of truth for "did the device install
 * what it verified"), and a history row for every offer from OFFER to its end. */
#include "session_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "db.h"
#include "devices.h"
#include "download.h"
#include "frame.h"
#include "transport.h"

/* docs/PROTOCOL.md, section 8. */
#define SESSION_OFFER_TIMEOUT_MS  10000u /* OFFER without an answer */
#define SESSION_RESULT_TIMEOUT_MS 10000u /* VERIFYING without a message */
/* Download progress is copied to the fleet this often. */
#define SESSION_DOWNLOAD_POLL_MS 500u

/* Complaints about one device's bad input: this many per window, then silence. */
#define SESSION_COMPLAIN_BURST     10u
#define SESSION_COMPLAIN_WINDOW_MS 60000u

/* --- small helpers --- */

/* Copies a protocol string into a NUL-terminated buffer. */
void
session_strcpy(char *dst, size_t n, const struct msg_str *src)
{
	size_t len = src->len < n - 1 ? src->len : n - 1;

	memcpy(dst, src->s, len);
	dst[len] = '\0';
}

/* Makes text fit a protocol string: printable ASCII, at most max bytes. */
struct msg_str
session_text(char *buf, size_t max, const char *text)
{
	size_t i;

	for (i = 0; i < max && text[i] != '\0'; i++)
		buf[i] = (text[i] >= 0x20 && text[i] <= 0x7e) ? text[i] : ' ';
	buf[i] = '\0';
	return (struct msg_str){buf, (uint8_t)i};
}

void
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
void
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
void
session_done(struct session *s, uint32_t come_back_s)
{
	if (s->owner.done != NULL)
		s->owner.done(s, come_back_s, s->owner.arg);
}

int
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

void
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

void
session_send_solicit(struct session *s)
{
	uint8_t out[MSG_SOLICIT_LEN];

	s->last_solicit_ms = session_now_ms();
	s->solicited = true;
	session_send(s, out, msg_encode_solicit(out, sizeof(out)));
}

/* --- the timer --- */

void
session_arm(struct session *s, uint32_t delay_ms)
{
	struct timeval tv = {
	    .tv_sec = (time_t)(delay_ms / 1000),
	    .tv_usec = (suseconds_t)(delay_ms % 1000) * 1000,
	};

	evtimer_add(s->timer, &tv);
}

/* Milliseconds from now until deadline (0 if it passed). */
uint32_t
session_until(uint32_t deadline, uint32_t now)
{
	int32_t d = (int32_t)(deadline - now);

	return d > 0 ? (uint32_t)d : 0;
}

/* Re-arms the timer for what the state waits for. The sender's wake time is armed by the
 * pump itself. */
void
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

/* --- where the update stands, and its end --- */

uint32_t
session_acked(const struct session *s)
{
	struct sender_stats st;

	if (!s->snd_live)
		return 0;
	sender_stats(&s->snd, &st);
	return st.acked;
}

bool
session_transferring(const struct session *s)
{
	return s->state == SESSION_OFFERED || s->state == SESSION_SENDING ||
	       s->state == SESSION_VERIFYING;
}

/* Ends the history row of the offer in progress. */
void
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
void
session_stop(struct session *s, enum history_result result, const char *reason, bool keep_slot)
{
	session_upstream_stop(s);
	if (session_transferring(s))
		session_history_end(s, result, session_acked(s), reason);
	session_transfer_release(s);
	if (keep_slot) {
		sessions_hold_slot(s->m, s);
	} else {
		sessions_dequeue(s->m, s);
		sessions_release_slot(s->m, s);
	}
	s->state = SESSION_IDLE;
	evtimer_del(s->timer);
}

/* The progress a reason quotes: "at 45 %". */
void
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
void
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
	session_upstream_check(s);
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
		session_transfer_on_ack(s, &mm.u.ack);
		break;
	case MSG_RESULT:
		session_transfer_on_result(s, &mm.u.result);
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
			session_transfer_pump(s);
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
			sessions_dequeue(m, s);
			sessions_enqueue(m, s);
			sessions_release_slot(m, s);
		}
		session_rearm(s);
		break;
	case SESSION_OFFERED:
		if (session_until(s->phase_ms + SESSION_OFFER_TIMEOUT_MS, now) == 0) {
			snprintf(reason, sizeof(reason), "No answer to the offer of %s in %u s",
			    s->target, SESSION_OFFER_TIMEOUT_MS / 1000);
			dev_warn(s->serial, "%s", reason);
			session_transfer_fail(s, 0, reason);
		} else {
			session_rearm(s);
		}
		break;
	case SESSION_SENDING:
		session_transfer_pump(s);
		break;
	case SESSION_VERIFYING:
		if (session_until(s->phase_ms + SESSION_RESULT_TIMEOUT_MS, now) == 0) {
			snprintf(reason, sizeof(reason), "No RESULT for %s within %u s", s->target,
			    SESSION_RESULT_TIMEOUT_MS / 1000);
			dev_warn(s->serial, "%s", reason);
			session_transfer_fail(s, 0, reason);
		} else {
			session_transfer_pump(s);
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
	s->kick = event_new(m->base, -1, 0, session_upstream_kick_cb, s);
	if (s->timer == NULL || s->kick == NULL) {
		if (s->timer != NULL)
			event_free(s->timer);
		if (s->kick != NULL)
			event_free(s->kick);
		free(s);
		return -ENOMEM;
	}
	sessions_attach(m, s);
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
	sessions_detach(m, s);
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

/* --- the operator --- */

int
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
session_abort(struct session *s, const char *reason)
{
	struct sessions *m = s->m;
	char where[32], why[FLEET_REASON_MAX + 1];

	if (s->state == SESSION_IDLE)
		return -EALREADY;
	if (reason == NULL || reason[0] == '\0')
		reason = "Aborted by the operator";
	session_where(s, where, sizeof(where));
	snprintf(why, sizeof(why), "%s%s", reason, where);
	dev_notice(s->serial, "%s", why);
	session_send_error(s, MSG_ERROR_ABORTED, SESSION_RETRY_HELD, reason);
	session_stop(s, HISTORY_RESULT_ABORTED, why, false);
	s->held = true;
	fleet_set_result(m->fleet, s->dev, FLEET_RESULT_ABORTED, "%s", reason);
	fleet_set_state(m->fleet, s->dev, FLEET_STATE_IDLE);
	return 0;
}
