/* The offer and the transfer of one image (see session_int.h): the cached payload pinned,
 * verified once and opened, a transfer slot or the queue, OFFER, the sender driven with pread()
 * from the blob, ACK/REWIND, RESULT and DONE, with the history row kept all the way. */
#include "session_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "db.h"
#include "devices.h"
#include "hex.h"
#include "transport.h"

/* While the link refuses more output and no WRITABLE came, poll the sender this often so its
 * retransmission timer still runs. */
#define SESSION_BLOCKED_POLL_MS 1000u
/* SOLICIT for a stray ACK at most this often. */
#define SESSION_SOLICIT_EVERY_MS 1000u

/* Sends DONE for the image sha: the device may forget that transfer. */
static void
session_transfer_send_done(struct session *s, const uint8_t *sha)
{
	uint8_t out[MSG_DONE_LEN];
	struct msg_done d = {.sha256 = sha};

	session_send(s, out, msg_encode_done(&d, out, sizeof(out)));
}

/* --- the payload --- */

/* Drops what serving the image holds: the blob's fd, the pin, the DATA buffer. */
void
session_transfer_release(struct session *s)
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

/* --- the offer --- */

/* The largest payload this session can afford (session.h). */
static uint16_t
session_transfer_payload_for(const struct session *s)
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
session_transfer_offer(struct session *s)
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

	s->payload = session_transfer_payload_for(s);
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
void
session_transfer_ready(struct session *s)
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
	if (!sessions_take_slot(m, s)) {
		session_transfer_release(s);
		s->state = SESSION_QUEUED;
		sessions_enqueue(m, s);
		dev_info(s->serial, "All %u transfer slots are in use; the device waits its turn",
		    m->cfg.max_transfers);
		session_send_error(s, MSG_ERROR_BUSY, SESSION_RETRY_BUSY,
		    "all transfer slots are in use; you will be called");
		fleet_set_state(m->fleet, s->dev, FLEET_STATE_QUEUED);
		fleet_set_progress(m->fleet, s->dev, 0, s->size);
		session_rearm(s);
		return;
	}
	session_transfer_offer(s);
}

/* --- the transfer --- */

void
session_transfer_fail(struct session *s, enum msg_error_code code, const char *reason)
{
	session_fail(s, code, 0, FLEET_STATE_FAILED, reason);
}

/* Drives the sender: sends what it proposes until the link or the sender says wait. */
void
session_transfer_pump(struct session *s)
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
			session_transfer_fail(s, MSG_ERROR_ABORTED, reason);
			return;
		}
	}
}

void
session_transfer_on_ack(struct session *s, const struct msg_ack *ack)
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
			session_transfer_fail(s, MSG_ERROR_INTERNAL, "Cannot start the sender");
			return;
		}
		s->snd_live = true;
		s->state = SESSION_SENDING;
		s->started_ms = clock_mono_ms();
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
		session_transfer_fail(s, MSG_ERROR_BAD_OFFSET, reason);
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
	session_transfer_pump(s);
	if (s->state == SESSION_VERIFYING)
		session_rearm(s);
}

static const char *
session_transfer_status_name(uint8_t status)
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
session_transfer_stray_result(struct session *s, const struct msg_result *r, const char *sha)
{
	struct sessions *m = s->m;
	struct store_artifact a;

	if (strcmp(sha, s->done_sha) == 0) {
		session_transfer_send_done(s, r->sha256); /* our DONE was lost */
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
		    session_transfer_status_name(r->status), sha);
	}
	snprintf(s->done_sha, sizeof(s->done_sha), "%s", sha);
	session_transfer_send_done(s, r->sha256);
}

void
session_transfer_on_result(struct session *s, const struct msg_result *r)
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
		session_transfer_stray_result(s, r, sha);
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
			session_transfer_fail(s, MSG_ERROR_ABORTED, reason);
			return;
		}
		ms = clock_mono_ms() - s->started_ms;
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
		session_transfer_send_done(s, r->sha256);
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
		    session_transfer_status_name(r->status), detail[0] != '\0' ? ": " : "", detail);
	else
		snprintf(reason, sizeof(reason), "Device reported %s for %s at %u %%%s%s",
		    session_transfer_status_name(r->status), s->target, session_pct(acked, s->size),
		    detail[0] != '\0' ? ": " : "", detail);
	dev_warn(s->serial, "%s", reason);
	snprintf(s->done_sha, sizeof(s->done_sha), "%s", sha);
	session_transfer_send_done(s, r->sha256);
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
