/* device: the otadev port of a simulated device (see device.h). It follows docs/porting.md the
 * way an MCU team would: a receive ring filled by the "UART interrupt" (the link callback), a
 * super-loop (device_run) that hands the ring to otadev_feed() and calls otadev_poll() when it
 * asks, and callbacks for flash, persistence and events. Time on the device is its own: a flash
 * erase or write moves the device's clock ahead of the wall clock, and until the wall clock
 * catches up the device runs nothing and its output waits. Two passive taps decode what crosses
 * the link (the device's own messages and the gateway's) for events and statistics; they never
 * influence the device. */
#include "device.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "flash.h"
#include "hex.h"
#include "msg.h"
#include "otadev.h"
#include "report.h"
#include "state.h"

/* Messages the device may hold back during one stall (a pause ACK, the ACK after the write, a
 * RESULT): far more than it ever produces while stalled. */
#define DEVICE_HOLD_MAX 64
/* Bytes handed to otadev_feed() at a time, as the porting guide's super-loop does. */
#define DEVICE_FEED_CHUNK 64
/* Receive ring overhead per DATA frame: COBS, CRC, delimiters (docs/porting.md). */
#define DEVICE_FRAME_SLACK 16

enum device_phase {
	DEVICE_PHASE_BOOT,
	DEVICE_PHASE_HELLO,
	DEVICE_PHASE_RECEIVING,
	DEVICE_PHASE_VERIFYING,
	DEVICE_PHASE_REPORTING, /* RESULT sent, waiting for DONE */
	DEVICE_PHASE_IDLE,      /* up to date, or waiting to retry after an ERROR */
	DEVICE_PHASE_FINISHED,  /* --once: done, nothing more */
};

struct device_hold {
	uint64_t at_us;
	uint32_t len;
};

struct device {
	struct event_base *base;
	struct device_options opt;
	struct report *rep;
	unsigned int rep_dev;
	device_finish_cb finish_cb;
	void *finish_arg;

	struct link *link;
	struct flash *flash;
	struct state_device st; /* what runs now */

	otadev_t dev;
	otadev_config_t cfg;
	uint8_t *rx_buf, *tx_buf;

	/* the receive ring: bytes (stream) or [u16 length][message] records (packet) */
	uint8_t *ring;
	size_t ring_cap, ring_head, ring_len;
	uint64_t overrun_bytes, overrun_pending;

	/* the device's clock runs ahead of the wall clock while flash is busy */
	uint64_t busy_until_us;
	/* output waiting for the stall that produced it to end */
	struct evbuffer *hold;
	struct device_hold holds[DEVICE_HOLD_MAX];
	unsigned int hold_head, hold_count;

	struct event *ev_timer;
	bool running, rerun; /* device_run() re-entry guard */
	bool install_pending, reboot_pending, rebooted_at_byte;

	enum device_phase phase;
	bool booted, finished, ok, installed;
	bool slot_ok; /* OpenSSL agreed with the device library's verification */
	char reason[256];
	char describe[320];

	/* what the gateway offered last, and what was accepted */
	char target[IDENT_VERSION_MAX + 1];
	uint8_t sha256[PROTO_SHA256_LEN];
	uint32_t size, stored;
	uint8_t last_status;

	/* the last OFFER seen on the line: the library refuses some (NO_SPACE, UNSUPPORTED)
	 * without asking the application, which then learns only the RESULT */
	char seen_target[IDENT_VERSION_MAX + 1];
	uint8_t seen_sha256[PROTO_SHA256_LEN];
	uint32_t seen_size;
	bool seen_asked; /* the application was asked about it (OTADEV_EV_OFFER) */

	/* taps */
	struct frame_decoder tap_rx, tap_tx;
	uint8_t tap_rx_buf[FRAME_MSG_MAX + FRAME_CRC_LEN];
	uint8_t tap_tx_buf[MSG_CONTROL_MAX + FRAME_CRC_LEN];

	/* timings (report clock, seconds; < 0: not yet) and counters */
	double t_hello, t_session, t_first_data, t_result;
	bool await_first_data, transfer_reported;
	uint64_t rx_bytes, data_frames, data_bytes, bad_frames;
	uint32_t rewinds, rewind_acks, pauses, hellos;
	int last_rewind_epoch;
};

static void device_run(struct device *d);

static uint64_t
device_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The device's clock: the wall clock, or later while flash is busy. */
static uint64_t
device_time_us(const struct device *d)
{
	uint64_t now = device_mono_us();

	return d->busy_until_us > now ? d->busy_until_us : now;
}

static uint32_t
device_ms(uint64_t us)
{
	return (uint32_t)(us / 1000u);
}

/* The report clock for a device time. */
static double
device_t(const struct device *d, uint64_t at_us)
{
	uint64_t now = device_mono_us();

	return report_now(d->rep) + (at_us > now ? (double)(at_us - now) / 1e6 : 0.0);
}

static const char *
device_status_name(uint8_t status)
{
	switch (status) {
	case MSG_STATUS_OK:
		return "ok";
	case MSG_STATUS_HASH_MISMATCH:
		return "hash-mismatch";
	case MSG_STATUS_FLASH_ERROR:
		return "flash-error";
	case MSG_STATUS_NO_SPACE:
		return "no-space";
	case MSG_STATUS_DECLINED:
		return "declined";
	case MSG_STATUS_ABORTED:
		return "aborted";
	case MSG_STATUS_UNSUPPORTED:
		return "unsupported";
	default:
		return "unknown";
	}
}

static const char *
device_error_name(uint8_t code)
{
	switch (code) {
	case MSG_ERROR_BAD_MESSAGE:
		return "bad-message";
	case MSG_ERROR_BAD_IDENTITY:
		return "bad-identity";
	case MSG_ERROR_UNSUPPORTED_VERSION:
		return "unsupported-version";
	case MSG_ERROR_UPSTREAM_UNAVAILABLE:
		return "upstream-unavailable";
	case MSG_ERROR_UPSTREAM_REJECTED:
		return "upstream-rejected";
	case MSG_ERROR_BUSY:
		return "busy";
	case MSG_ERROR_BAD_OFFSET:
		return "bad-offset";
	case MSG_ERROR_ABORTED:
		return "aborted";
	case MSG_ERROR_INTERNAL:
		return "internal";
	case MSG_ERROR_UNSUPPORTED_IMAGE:
		return "unsupported-image";
	default:
		return "unknown";
	}
}

static void
device_copy_str(char *out, size_t cap, const struct msg_str *s)
{
	size_t n = s->len < cap - 1 ? s->len : cap - 1;

	memcpy(out, s->s, n);
	out[n] = '\0';
}

static json_t *
device_sha_json(const uint8_t sha[PROTO_SHA256_LEN])
{
	char hex[2 * PROTO_SHA256_LEN + 1];

	hex_encode(sha, PROTO_SHA256_LEN, hex);
	return json_string(hex);
}

static void
device_show(struct device *d, const char *state)
{
	bool transfer = d->phase == DEVICE_PHASE_RECEIVING || d->phase == DEVICE_PHASE_VERIFYING ||
			d->phase == DEVICE_PHASE_REPORTING;

	report_status(d->rep, d->rep_dev, d->st.current_version, transfer ? d->target : NULL,
	    transfer ? d->stored : 0, transfer ? d->size : 0, state);
}

/* --once: the device is done; it stops and tells main. */
static void device_finish(struct device *d, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
device_finish(struct device *d, bool ok, const char *fmt, ...)
{
	va_list ap;

	if (d->finished)
		return;
	d->finished = true;
	d->ok = ok;
	va_start(ap, fmt);
	vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
	va_end(ap);
	d->phase = DEVICE_PHASE_FINISHED;
	otadev_stop(&d->dev);
	if (!ok)
		report_error(d->rep, d->opt.serial, "%s", d->reason);
	device_show(d, ok ? "up to date" : "failed");
	if (d->finish_cb)
		d->finish_cb(d, ok, d->reason, d->finish_arg);
}

/* --- taps ---------------------------------------------------------------------------------- */

static void
device_tap_rx_msg(struct device *d, const uint8_t *m, size_t n)
{
	struct msg msg;

	if (msg_decode_to_device(m, n, &msg) != MSG_OK)
		return;
	if (msg.type == MSG_DATA) {
		d->data_frames++;
		d->data_bytes += msg.u.data.len;
	} else if (msg.type == MSG_OFFER) {
		device_copy_str(
		    d->seen_target, sizeof(d->seen_target), &msg.u.offer.target_version);
		memcpy(d->seen_sha256, msg.u.offer.sha256, PROTO_SHA256_LEN);
		d->seen_size = msg.u.offer.size;
		d->seen_asked = false;
	}
}

/* What arrives on the line, before the receive ring: statistics only. */
static void
device_tap_rx(struct device *d, const uint8_t *p, size_t n)
{
	d->rx_bytes += n;
	if (d->await_first_data) {
		/* The first byte after the device asked for data starts the first DATA frame. */
		d->await_first_data = false;
		d->t_first_data = report_now(d->rep);
	}
	if (link_is_packet(d->link)) {
		device_tap_rx_msg(d, p, n);
		return;
	}
	while (n > 0) {
		const uint8_t *m;
		size_t used = 0, mlen;
		enum frame_result fr = frame_decoder_feed(&d->tap_rx, p, n, &used, &m, &mlen);

		if (fr == FRAME_MSG)
			device_tap_rx_msg(d, m, mlen);
		else if (fr != FRAME_NONE)
			d->bad_frames++;
		p += used;
		n -= used;
	}
}

static void
device_transfer_event(struct device *d)
{
	double dt = d->t_result - d->t_first_data;

	if (d->transfer_reported || d->t_first_data < 0)
		return;
	d->transfer_reported = true;
	report_event(d->rep, d->opt.serial, "transfer",
	    json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:i, s:i, s:i, s:I}",
		"size", (json_int_t)d->size, "t_hello", d->t_session, "t_first_data",
		d->t_first_data, "t_result", d->t_result, "transfer_s", dt, "session_s",
		d->t_result - d->t_session, "rx_bytes", (json_int_t)d->rx_bytes, "data_frames",
		(json_int_t)d->data_frames, "data_bytes", (json_int_t)d->data_bytes, "bad_frames",
		(json_int_t)d->bad_frames, "rewinds", (int)d->rewinds, "rewind_acks",
		(int)d->rewind_acks, "pauses", (int)d->pauses, "overrun_bytes",
		(json_int_t)d->overrun_bytes));
}

static void
device_tap_tx_msg(struct device *d, const uint8_t *m, size_t n, uint64_t at_us)
{
	struct msg msg;

	if (msg_decode_to_gateway(m, n, &msg) != MSG_OK)
		return;
	switch (msg.type) {
	case MSG_HELLO: {
		json_t *o = json_pack(
		    "{s:s, s:i}", "version", d->st.current_version, "count", (int)++d->hellos);

		d->t_hello = device_t(d, at_us);
		if (msg.u.hello.flags & MSG_HELLO_F_RESUME) {
			json_object_set_new(
			    o, "resume_offset", json_integer(msg.u.hello.resume_offset));
			json_object_set_new(
			    o, "resume_sha256", device_sha_json(msg.u.hello.resume_sha256));
		}
		report_event(d->rep, d->opt.serial, "hello", o);
		if (d->phase == DEVICE_PHASE_BOOT || d->phase == DEVICE_PHASE_IDLE) {
			d->phase = DEVICE_PHASE_HELLO;
			device_show(d, "hello");
		}
		break;
	}
	case MSG_ACK:
		if (msg.u.ack.flags & MSG_ACK_F_REWIND) {
			d->rewind_acks++;
			if (msg.u.ack.epoch != d->last_rewind_epoch)
				d->rewinds++;
			d->last_rewind_epoch = msg.u.ack.epoch;
		} else if (msg.u.ack.limit == msg.u.ack.offset && msg.u.ack.offset < d->size) {
			d->pauses++;
		}
		break;
	case MSG_RESULT:
		d->t_result = device_t(d, at_us);
		device_transfer_event(d);
		break;
	default:
		break;
	}
}

/* What the device sends, as it leaves the device: events and counters. */
static void
device_tap_tx(struct device *d, const uint8_t *p, size_t n, uint64_t at_us)
{
	if (link_is_packet(d->link)) {
		device_tap_tx_msg(d, p, n, at_us);
		return;
	}
	while (n > 0) {
		const uint8_t *m;
		size_t used = 0, mlen;

		if (frame_decoder_feed(&d->tap_tx, p, n, &used, &m, &mlen) == FRAME_MSG)
			device_tap_tx_msg(d, m, mlen, at_us);
		p += used;
		n -= used;
	}
}

/* --- output -------------------------------------------------------------------------------- */

static void
device_send_now(struct device *d, const uint8_t *p, size_t n)
{
	/* A link that is down loses the message, as a UART with no one listening would; the
	 * protocol's timers recover. */
	(void)link_send(d->link, p, n);
}

/* Sends what the device produced, at the device's time: now, or when the stall ends. */
static int
device_output(struct device *d, const uint8_t *p, size_t n)
{
	uint64_t now = device_mono_us(), at = device_time_us(d);
	struct device_hold *h;

	device_tap_tx(d, p, n, at);
	if (at <= now && d->hold_count == 0) {
		device_send_now(d, p, n);
		return 0;
	}
	if (d->hold_count == DEVICE_HOLD_MAX || evbuffer_add(d->hold, p, n) < 0)
		return -1; /* lost; the protocol recovers */
	h = &d->holds[(d->hold_head + d->hold_count++) % DEVICE_HOLD_MAX];
	h->at_us = at;
	h->len = (uint32_t)n;
	return 0;
}

static void
device_release(struct device *d, uint64_t now)
{
	while (d->hold_count > 0 && d->holds[d->hold_head].at_us <= now) {
		struct device_hold *h = &d->holds[d->hold_head];
		uint8_t *p = evbuffer_pullup(d->hold, h->len);

		if (p)
			device_send_now(d, p, h->len);
		evbuffer_drain(d->hold, h->len);
		d->hold_head = (d->hold_head + 1) % DEVICE_HOLD_MAX;
		d->hold_count--;
	}
}

/* --- otadev callbacks ---------------------------------------------------------------------- */

static int
device_tx(void *user, const uint8_t *bytes, size_t n)
{
	return device_output(user, bytes, n);
}

static int
device_tx_packet(void *user, const uint8_t *msg, size_t n)
{
	return device_output(user, msg, n);
}

/* A stall of us microseconds starts now (or when the current one ends). */
static void
device_stall(struct device *d, uint64_t us)
{
	d->busy_until_us = device_time_us(d) + us;
}

static int
device_flash_erase(void *user, uint32_t offset)
{
	struct device *d = user;
	int r = flash_erase(d->flash, offset);

	if (r < 0) {
		report_error(
		    d->rep, d->opt.serial, "flash erase at %u failed: %s", offset, strerror(-r));
		return r;
	}
	device_stall(d, (uint64_t)d->opt.erase_ms * 1000u);
	return 0;
}

static int
device_flash_write(void *user, uint32_t offset, const uint8_t *data, size_t n)
{
	struct device *d = user;
	int r = flash_program(d->flash, offset, data, n);

	if (r < 0) {
		report_error(
		    d->rep, d->opt.serial, "flash write at %u failed: %s", offset, strerror(-r));
		return r;
	}
	device_stall(d, (uint64_t)n * d->opt.write_us_per_kib / 1024u);
	d->stored = (uint32_t)(offset + n);
	if (d->opt.reboot_at_byte && !d->rebooted_at_byte && d->stored >= d->opt.reboot_at_byte)
		d->reboot_pending = true; /* after otadev_feed() returns: not from a callback */
	device_show(d, "receiving");
	return 0;
}

static int
device_flash_read(void *user, uint32_t offset, uint8_t *data, size_t n)
{
	struct device *d = user;

	return flash_read(d->flash, offset, data, n);
}

/* The bytes must be durable before the state that claims them: sync the slot first. */
static int
device_persist_save(void *user, const otadev_resume_t *st)
{
	struct device *d = user;
	int r = flash_sync(d->flash);

	if (r == 0)
		r = state_save_resume(d->opt.dir, st);
	if (r < 0)
		report_error(d->rep, d->opt.serial, "cannot save the resume state in %s: %s",
		    d->opt.dir, strerror(-r));
	return r;
}

static int
device_persist_load(void *user, otadev_resume_t *st)
{
	struct device *d = user;
	char err[512];
	int r = state_load_resume(d->opt.dir, st, err, sizeof(err));

	if (r < 0 && r != -ENOENT)
		report_error(d->rep, d->opt.serial, "%s; starting without a partial image", err);
	if (r == 0 && st->size > d->opt.slot_size)
		r = -EINVAL; /* from a bigger slot: the offer will be refused anyway */
	return r < 0 ? -1 : 0;
}

/* Checks the slot against the offered digest with OpenSSL, independently of the device
 * library's own SHA-256, and reports it. Returns true on a match. */
static bool
device_check_slot(struct device *d)
{
	uint8_t sha[PROTO_SHA256_LEN];
	int r = flash_sha256(d->flash, d->size, sha);
	bool match = r == 0 && memcmp(sha, d->sha256, sizeof(sha)) == 0;
	char hex[2 * PROTO_SHA256_LEN + 1];

	if (r < 0) {
		report_error(d->rep, d->opt.serial, "cannot read the slot back: %s", strerror(-r));
		return false;
	}
	hex_encode(sha, sizeof(sha), hex);
	report_event(d->rep, d->opt.serial, "verify",
	    json_pack("{s:s, s:o, s:b, s:I}", "sha256", hex, "expected", device_sha_json(d->sha256),
		"match", match, "double_programs", (json_int_t)flash_double_programs(d->flash)));
	if (match)
		report_say(
		    d->rep, d->opt.serial, "SHA-256 %.16s... verified (OpenSSL agrees)", hex);
	else
		report_error(d->rep, d->opt.serial,
		    "OpenSSL computes SHA-256 %s for the slot, not the offered digest", hex);
	return match;
}

static int
device_on_offer(struct device *d, const struct msg_offer *o)
{
	char hex[2 * PROTO_SHA256_LEN + 1];

	d->seen_asked = true;
	device_copy_str(d->target, sizeof(d->target), &o->target_version);
	memcpy(d->sha256, o->sha256, PROTO_SHA256_LEN);
	d->size = o->size;
	d->stored = 0;
	hex_encode(o->sha256, PROTO_SHA256_LEN, hex);
	report_event(d->rep, d->opt.serial, "offer",
	    json_pack("{s:s, s:I, s:s, s:i, s:b, s:b, s:b}", "version", d->target, "size",
		(json_int_t)o->size, "sha256", hex, "max_payload", (int)o->max_payload, "delta",
		(o->flags & MSG_OFFER_F_DELTA) != 0, "forced", (o->flags & MSG_OFFER_F_FORCED) != 0,
		"accepted", !d->opt.decline));
	if (d->opt.decline) {
		report_say(
		    d->rep, d->opt.serial, "declining the offer of %s (--decline)", d->target);
		return MSG_STATUS_DECLINED;
	}
	report_say(d->rep, d->opt.serial, "offer: %s, %u bytes, SHA-256 %.16s..., payload %u",
	    d->target, o->size, hex, o->max_payload);
	d->phase = DEVICE_PHASE_RECEIVING;
	d->t_session = d->t_hello;
	d->t_first_data = d->t_result = -1;
	d->await_first_data = true;
	d->transfer_reported = false;
	d->rx_bytes = d->data_frames = d->data_bytes = d->bad_frames = 0;
	d->rewinds = d->rewind_acks = d->pauses = 0;
	device_show(d, "receiving");
	return 0;
}

static void
device_on_result(struct device *d, uint8_t status)
{
	if (!d->seen_asked) {
		/* The library refused the OFFER itself: name the image the line carried. */
		memcpy(d->target, d->seen_target, sizeof(d->target));
		memcpy(d->sha256, d->seen_sha256, sizeof(d->sha256));
		d->size = d->seen_size;
		d->stored = 0;
	}
	d->last_status = status;
	d->phase = DEVICE_PHASE_REPORTING;
	report_event(d->rep, d->opt.serial, "result",
	    json_pack("{s:s, s:i, s:s, s:I, s:I}", "status", device_status_name(status), "code",
		(int)status, "version", d->target, "size", (json_int_t)d->size, "stored",
		(json_int_t)d->stored));
	if (status == MSG_STATUS_OK) {
		d->stored = d->size;
		device_show(d, "verified");
		d->slot_ok = device_check_slot(d);
		if (!d->slot_ok)
			report_error(d->rep, d->opt.serial,
			    "the device library accepted an image OpenSSL rejects");
		return;
	}
	if (status == MSG_STATUS_NO_SPACE)
		report_say(d->rep, d->opt.serial,
		    "refusing %s: %u bytes do not fit the %u-byte slot (--slot-size)", d->target,
		    d->size, d->opt.slot_size);
	else
		report_say(d->rep, d->opt.serial, "result: %s", device_status_name(status));
	device_show(d, device_status_name(status));
}

static void
device_on_done(struct device *d, uint8_t status)
{
	report_event(d->rep, d->opt.serial, "done",
	    json_pack("{s:s, s:s}", "status", device_status_name(status), "version", d->target));
	if (status == MSG_STATUS_OK) {
		d->install_pending = true; /* after otadev_feed() returns */
		return;
	}
	d->phase = DEVICE_PHASE_IDLE;
	if (d->opt.once) {
		if (status == MSG_STATUS_NO_SPACE)
			device_finish(d, false,
			    "update to %s refused: the image (%u bytes) is larger than the slot "
			    "(%u bytes; see --slot-size)",
			    d->target, d->size, d->opt.slot_size);
		else
			device_finish(d, false, "update to %s failed: %s (%u of %u bytes stored)",
			    d->target, device_status_name(status), d->stored, d->size);
	}
}

static int
device_event(void *user, const otadev_event_t *ev)
{
	struct device *d = user;
	char text[MSG_ERROR_TEXT_MAX + 1];

	switch (ev->type) {
	case OTADEV_EV_OFFER:
		return device_on_offer(d, ev->offer);
	case OTADEV_EV_NO_UPDATE:
		device_copy_str(text, sizeof(text), &ev->no_update->reason);
		report_event(d->rep, d->opt.serial, "up-to-date",
		    json_pack("{s:s, s:s, s:I, s:b}", "version", d->st.current_version, "reason",
			text, "recheck_s", (json_int_t)ev->no_update->recheck_s, "installed",
			d->installed));
		report_say(d->rep, d->opt.serial, "up to date at %s%s%s%s", d->st.current_version,
		    text[0] ? " (" : "", text, text[0] ? ")" : "");
		d->phase = DEVICE_PHASE_IDLE;
		device_show(d, "up to date");
		if (d->opt.once)
			device_finish(d, true, "up to date at %s", d->st.current_version);
		break;
	case OTADEV_EV_ERROR:
		device_copy_str(text, sizeof(text), &ev->error->message);
		report_event(d->rep, d->opt.serial, "error",
		    json_pack("{s:s, s:i, s:I, s:s}", "error", device_error_name(ev->error->code),
			"code", (int)ev->error->code, "retry_after_s",
			(json_int_t)ev->error->retry_after_s, "message", text));
		report_say(d->rep, d->opt.serial, "gateway error %s: %s (retry after %u s)",
		    device_error_name(ev->error->code), text, ev->error->retry_after_s);
		d->phase = DEVICE_PHASE_IDLE;
		device_show(d, device_error_name(ev->error->code));
		/* BUSY asks the device to wait its turn, which is what --once waits for too. */
		if (d->opt.once && ev->error->code != MSG_ERROR_BUSY)
			device_finish(d, false, "the gateway answered %s: %s (retry after %u s)",
			    device_error_name(ev->error->code), text, ev->error->retry_after_s);
		break;
	case OTADEV_EV_PROGRESS:
		d->stored = ev->offset;
		report_event(d->rep, d->opt.serial, "progress",
		    json_pack("{s:I, s:I}", "offset", (json_int_t)ev->offset, "size",
			(json_int_t)ev->size));
		if (ev->offset == ev->size)
			d->phase = DEVICE_PHASE_VERIFYING; /* reading the image back from flash */
		device_show(d, ev->offset == ev->size ? "verifying" : "receiving");
		break;
	case OTADEV_EV_RESULT:
		device_on_result(d, ev->status);
		break;
	case OTADEV_EV_DONE:
		device_on_done(d, ev->status);
		break;
	case OTADEV_EV_ABORTED:
		report_event(d->rep, d->opt.serial, "aborted",
		    json_pack("{s:s, s:I, s:I}", "while",
			d->phase == DEVICE_PHASE_REPORTING ? "reporting" : "receiving", "stored",
			(json_int_t)ev->offset, "size", (json_int_t)ev->size));
		if (d->phase == DEVICE_PHASE_REPORTING) {
			d->phase = DEVICE_PHASE_IDLE;
			if (d->opt.once)
				device_finish(d, false,
				    "the gateway never acknowledged the result (%s) for %s",
				    device_status_name(d->last_status), d->target);
		} else {
			report_say(d->rep, d->opt.serial,
			    "the gateway went silent at %u of %u bytes; saying HELLO again",
			    ev->offset, ev->size);
			d->phase = DEVICE_PHASE_HELLO;
		}
		break;
	}
	return 0;
}

/* --- boot, reboot, install ----------------------------------------------------------------- */

static void
device_drop_ram(struct device *d)
{
	d->ring_head = d->ring_len = 0;
	d->busy_until_us = 0;
	evbuffer_drain(d->hold, evbuffer_get_length(d->hold));
	d->hold_head = d->hold_count = 0;
	frame_decoder_init(&d->tap_rx, d->tap_rx_buf, sizeof(d->tap_rx_buf));
	frame_decoder_init(&d->tap_tx, d->tap_tx_buf, sizeof(d->tap_tx_buf));
	d->await_first_data = false;
}

/* Starts the firmware: reads what runs from "flash" (device.json), initialises otadev from the
 * persisted resume state and, when the link is there, says HELLO. */
static int
device_boot(struct device *d, char *err, size_t errlen)
{
	char why[512];
	int r;

	device_drop_ram(d);
	r = state_load_device(d->opt.dir, &d->st, why, sizeof(why));
	if (r == -ENOENT) {
		memset(&d->st, 0, sizeof(d->st));
		snprintf(d->st.current_version, sizeof(d->st.current_version), "%s",
		    d->opt.factory_version);
	} else if (r < 0) {
		snprintf(err, errlen, "%s", why);
		return r;
	}
	d->cfg.current_version = d->st.current_version;
	r = otadev_init(&d->dev, &d->cfg);
	if (r == OTADEV_ERR_IDENTITY) {
		snprintf(err, errlen,
		    "the identity is not valid for the protocol (serial "
		    "[-a-zA-Z0-9_]{1,64}, other strings printable, 1..32 or 64)");
		return -EINVAL;
	}
	if (r != 0) {
		snprintf(err, errlen, "the device library refused the configuration (%d)", r);
		return -EINVAL;
	}
	d->phase = DEVICE_PHASE_BOOT;
	d->booted = true;
	d->slot_ok = false;
	device_show(d, "booting");
	if (link_is_up(d->link) || !link_is_connection(d->link))
		otadev_check(&d->dev, device_ms(device_time_us(d)));
	return 0;
}

/* Drops everything in RAM and boots again from what is on "flash", where version now runs. */
static void
device_reboot(struct device *d, const char *why, const char *version)
{
	char err[512];

	report_event(d->rep, d->opt.serial, "reboot",
	    json_pack("{s:s, s:s, s:s, s:I}", "reason", why, "previous", d->st.current_version,
		"version", version, "stored", (json_int_t)d->stored));
	/* A BLE device's connection ends with the reboot; it advertises again after it. */
	link_reboot(d->link);
	if (device_boot(d, err, sizeof(err)) < 0) {
		device_finish(d, false, "cannot boot after the %s reboot: %s", why, err);
		return;
	}
	report_say(
	    d->rep, d->opt.serial, "rebooted; running %s, saying HELLO", d->st.current_version);
}

/* DONE with OK: mark the image for installation and reboot into it, as a bootloader would
 * (MCUboot's boot_set_pending() and a reset). */
static void
device_install(struct device *d)
{
	struct state_device st = d->st;
	int r;

	if (!d->slot_ok) {
		device_finish(
		    d, false, "not installing %s: the slot does not hold the image", d->target);
		return;
	}
	r = state_install(d->opt.dir, d->flash, d->size);
	if (r == 0) {
		snprintf(st.current_version, sizeof(st.current_version), "%s", d->target);
		st.has_image = true;
		memcpy(st.sha256, d->sha256, sizeof(st.sha256));
		st.size = d->size;
		r = state_save_device(d->opt.dir, &st);
	}
	if (r == 0)
		r = state_clear_resume(d->opt.dir);
	if (r < 0) {
		report_error(
		    d->rep, d->opt.serial, "cannot install into %s: %s", d->opt.dir, strerror(-r));
		device_finish(d, false, "installing %s failed: %s", d->target, strerror(-r));
		return;
	}
	d->installed = true;
	report_say(d->rep, d->opt.serial, "installed %s into %s/installed.bin; rebooting",
	    d->target, d->opt.dir);
	device_reboot(d, "install", d->target);
}

/* Work that must not happen inside an otadev callback. True if the device rebooted. */
static bool
device_deferred(struct device *d)
{
	if (d->install_pending) {
		d->install_pending = false;
		device_install(d);
		return true;
	}
	if (d->reboot_pending) {
		d->reboot_pending = false;
		d->rebooted_at_byte = true;
		report_say(d->rep, d->opt.serial, "simulated reboot at %u bytes (--reboot-at-byte)",
		    d->stored);
		device_reboot(d, "reboot-at-byte", d->st.current_version);
		return true;
	}
	return false;
}

/* --- the super-loop ------------------------------------------------------------------------ */

static void
device_ring_push(struct device *d, const uint8_t *p, size_t n)
{
	while (n > 0) {
		size_t tail = (d->ring_head + d->ring_len) % d->ring_cap;
		size_t k = d->ring_cap - tail;

		if (k > n)
			k = n;
		memcpy(d->ring + tail, p, k);
		d->ring_len += k;
		p += k;
		n -= k;
	}
}

static void
device_ring_pop(struct device *d, uint8_t *out, size_t n)
{
	while (n > 0) {
		size_t k = d->ring_cap - d->ring_head;

		if (k > n)
			k = n;
		memcpy(out, d->ring + d->ring_head, k);
		d->ring_head = (d->ring_head + k) % d->ring_cap;
		d->ring_len -= k;
		out += k;
		n -= k;
	}
}

/* Hands the ring to otadev while the device is not stalled. */
static void
device_drain(struct device *d)
{
	while (d->ring_len > 0 && d->busy_until_us <= device_mono_us() && !d->finished) {
		uint8_t buf[FRAME_MSG_MAX];
		uint32_t now = device_ms(device_time_us(d));

		if (link_is_packet(d->link)) {
			uint8_t hdr[2];
			size_t len;

			device_ring_pop(d, hdr, 2);
			len = (size_t)hdr[0] | (size_t)hdr[1] << 8;
			device_ring_pop(d, buf, len);
			otadev_packet(&d->dev, buf, len, now);
		} else {
			size_t n =
			    d->ring_len < DEVICE_FEED_CHUNK ? d->ring_len : DEVICE_FEED_CHUNK;

			device_ring_pop(d, buf, n);
			otadev_feed(&d->dev, buf, n, now);
		}
		if (device_deferred(d))
			return;
	}
}

static void
device_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	device_run(arg);
}

/* One pass of the super-loop: release output whose time has come, feed the ring, run otadev's
 * timers, and arm the one timer for whichever comes first next. */
static void
device_run(struct device *d)
{
	uint64_t now, wake = UINT64_MAX;
	struct timeval tv;

	if (d->running) {
		d->rerun = true;
		return;
	}
	d->running = true;
	do {
		d->rerun = false;
		device_release(d, device_mono_us());
		if (d->finished)
			break;
		device_drain(d);
		if (d->overrun_pending && d->busy_until_us <= device_mono_us()) {
			report_event(d->rep, d->opt.serial, "overrun",
			    json_pack("{s:I, s:I}", "bytes", (json_int_t)d->overrun_pending, "ring",
				(json_int_t)d->ring_cap));
			d->overrun_pending = 0;
		}
		now = device_mono_us();
		if (d->busy_until_us > now) {
			wake = d->busy_until_us;
		} else {
			uint32_t next = otadev_poll(&d->dev, device_ms(now));

			if (device_deferred(d)) {
				d->rerun = true;
				continue;
			}
			now = device_mono_us();
			if (d->busy_until_us > now)
				wake = d->busy_until_us;
			else
				wake =
				    next == UINT32_MAX ? UINT64_MAX : now + (uint64_t)next * 1000u;
		}
	} while (d->rerun);
	d->running = false;
	if (d->hold_count > 0 && d->holds[d->hold_head].at_us < wake)
		wake = d->holds[d->hold_head].at_us;
	evtimer_del(d->ev_timer);
	if (d->finished || wake == UINT64_MAX)
		return;
	now = device_mono_us();
	wake = wake > now ? wake - now : 0;
	tv.tv_sec = (time_t)(wake / 1000000u);
	tv.tv_usec = (suseconds_t)(wake % 1000000u);
	evtimer_add(d->ev_timer, &tv);
}

/* The "UART interrupt": everything that arrives goes into the ring, or is lost if it is full. */
static void
device_receive(struct device *d, const uint8_t *p, size_t n, bool packet)
{
	device_tap_rx(d, p, n);
	if (d->finished)
		return;
	if (packet) {
		uint8_t hdr[2] = {(uint8_t)n, (uint8_t)(n >> 8)};

		if (n > FRAME_MSG_MAX || d->ring_cap - d->ring_len < n + 2) {
			d->overrun_bytes += n;
			d->overrun_pending += n;
			return;
		}
		device_ring_push(d, hdr, 2);
		device_ring_push(d, p, n);
		device_run(d);
		return;
	}
	while (n > 0) {
		size_t k = d->ring_cap - d->ring_len;

		if (k == 0) {
			d->overrun_bytes += n;
			d->overrun_pending += n;
			break;
		}
		if (k > n)
			k = n;
		device_ring_push(d, p, k);
		p += k;
		n -= k;
		device_run(d); /* drains unless the device is stalled */
	}
}

static void
device_link_cb(
    struct link *l, enum link_event ev, const uint8_t *data, size_t n, int err, void *arg)
{
	struct device *d = arg;

	switch (ev) {
	case LINK_EV_UP:
		report_event(d->rep, d->opt.serial, "link",
		    json_pack("{s:s, s:s}", "state", "up", "link", link_name(l)));
		/* A packet link's MTU bounds a DATA message: offer no more than fits. */
		if (link_mtu(l) > MSG_DATA_HEADER) {
			size_t fit = link_mtu(l) - MSG_DATA_HEADER;

			d->cfg.max_payload =
			    (uint16_t)(fit < d->opt.max_payload ? fit : d->opt.max_payload);
		}
		/* A connection is a new conversation: greet the gateway, keeping what is stored
		 * (a serial line has no such moment; a gateway that reopens it solicits). */
		if (link_is_connection(l) && d->booted && !d->finished) {
			otadev_check(&d->dev, device_ms(device_time_us(d)));
			device_run(d);
		}
		break;
	case LINK_EV_BYTES:
	case LINK_EV_PACKET:
		device_receive(d, data, n, ev == LINK_EV_PACKET);
		break;
	case LINK_EV_DOWN: {
		/* EOF on a tty is a hang-up (its far end went away); on a socket, a close. */
		const char *why = err                     ? strerror(-err)
				  : link_is_connection(l) ? "closed by the gateway"
							  : "hung up";

		report_event(d->rep, d->opt.serial, "link",
		    json_pack(
			"{s:s, s:s, s:s}", "state", "down", "link", link_name(l), "error", why));
		report_say(d->rep, d->opt.serial, "%s: %s", link_name(l), why);
		break;
	}
	}
}

/* --- API ----------------------------------------------------------------------------------- */

static int
device_mkdirs(const char *dir)
{
	char tmp[PATH_MAX];
	size_t i, n = strlen(dir);

	if (n == 0 || n >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, dir, n + 1);
	for (i = 1; i <= n; i++) {
		if (tmp[i] != '/' && tmp[i] != '\0')
			continue;
		tmp[i] = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		tmp[i] = dir[i];
	}
	return 0;
}

static int
device_setup(struct event_base *base, const struct device_options *opt, struct report *rep,
    device_finish_cb cb, void *arg, struct device **out, char *err, size_t errlen)
{
	struct device *d = calloc(1, sizeof(*d));
	char path[PATH_MAX + 16];
	size_t rx_cap = OTADEV_RX_CAP(opt->max_payload);
	int r;

	if (!d) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	d->base = base;
	d->opt = *opt;
	d->rep = rep;
	d->finish_cb = cb;
	d->finish_arg = arg;
	d->last_rewind_epoch = -1;
	d->t_hello = d->t_session = d->t_first_data = d->t_result = -1;
	d->rep_dev = report_add_device(rep, opt->serial);
	d->ring_cap = opt->rx_ring ? opt->rx_ring
				   : (size_t)opt->window * (opt->max_payload + DEVICE_FRAME_SLACK);
	d->ring = malloc(d->ring_cap);
	d->rx_buf = malloc(rx_cap);
	d->tx_buf = malloc(OTADEV_TX_CAP);
	d->hold = evbuffer_new();
	d->ev_timer = evtimer_new(base, device_timer_cb, d);
	if (!d->ring || !d->rx_buf || !d->tx_buf || !d->hold || !d->ev_timer) {
		snprintf(err, errlen, "out of memory");
		device_free(d);
		return -ENOMEM;
	}
	r = device_mkdirs(opt->dir);
	if (r < 0) {
		snprintf(err, errlen, "cannot create the state directory %s: %s", opt->dir,
		    strerror(-r));
		device_free(d);
		return r;
	}
	snprintf(path, sizeof(path), "%s/slot.bin", opt->dir);
	r = flash_open(path, opt->slot_size, opt->sector_size, &d->flash);
	if (r < 0) {
		snprintf(err, errlen, "cannot open the flash file %s: %s", path, strerror(-r));
		device_free(d);
		return r;
	}
	d->cfg = (otadev_config_t){
	    .serial = d->opt.serial,
	    .hardware_version = opt->hardware_version,
	    .software_type = opt->software_type,
	    .max_payload = opt->max_payload,
	    .window = opt->window,
	    .max_stall_ms = opt->max_stall_ms,
	    .caps = opt->caps,
	    .rx_buf = d->rx_buf,
	    .rx_cap = rx_cap,
	    .tx_buf = d->tx_buf,
	    .tx_cap = OTADEV_TX_CAP,
	    .flash_erase = opt->sector_size ? device_flash_erase : NULL,
	    .sector_size = opt->sector_size,
	    .flash_write = device_flash_write,
	    .flash_read = device_flash_read,
	    .slot_size = opt->slot_size,
	    .persist_save = device_persist_save,
	    .persist_load = device_persist_load,
	    .event = device_event,
	    .user = d,
	    .check_s = opt->check_s,
	};
	*out = d;
	return 0;
}

static int
device_start(struct device *d, char *err, size_t errlen)
{
	int r;

	if (link_is_packet(d->link)) {
		d->cfg.tx_packet = device_tx_packet;
		d->cfg.rx_buf = d->cfg.tx_buf = NULL;
		d->cfg.rx_cap = d->cfg.tx_cap = 0;
	} else {
		d->cfg.tx = device_tx;
	}
	r = device_boot(d, err, errlen);
	if (r == 0)
		device_run(d);
	return r;
}

int
device_new(struct event_base *base, const struct device_options *opt, struct report *rep,
    device_finish_cb cb, void *arg, struct device **out, char *err, size_t errlen)
{
	struct device *d;
	int r = device_setup(base, opt, rep, cb, arg, &d, err, errlen);

	if (r < 0)
		return r;
	r = link_new(base, &opt->link, device_link_cb, d, &d->link, err, errlen);
	if (r == 0)
		r = device_start(d, err, errlen);
	if (r < 0) {
		device_free(d);
		return r;
	}
	*out = d;
	return 0;
}

int
device_new_fd(struct event_base *base, const struct device_options *opt, int fd, bool packet,
    struct report *rep, device_finish_cb cb, void *arg, struct device **out, char *err,
    size_t errlen)
{
	struct device *d;
	int r = device_setup(base, opt, rep, cb, arg, &d, err, errlen);

	if (r < 0)
		return r;
	r = link_new_fd(base, fd, packet, device_link_cb, d, &d->link);
	if (r < 0)
		snprintf(err, errlen, "cannot use socket %d: %s", fd, strerror(-r));
	else
		r = device_start(d, err, errlen);
	if (r < 0) {
		device_free(d);
		return r;
	}
	*out = d;
	return 0;
}

const char *
device_describe(struct device *d)
{
	switch (d->phase) {
	case DEVICE_PHASE_RECEIVING:
		snprintf(d->describe, sizeof(d->describe), "receiving %s: %u of %u bytes",
		    d->target, d->stored, d->size);
		break;
	case DEVICE_PHASE_VERIFYING:
		snprintf(d->describe, sizeof(d->describe), "verifying %s", d->target);
		break;
	case DEVICE_PHASE_REPORTING:
		snprintf(d->describe, sizeof(d->describe), "waiting for DONE after RESULT %s",
		    device_status_name(d->last_status));
		break;
	case DEVICE_PHASE_BOOT:
	case DEVICE_PHASE_HELLO:
		snprintf(d->describe, sizeof(d->describe),
		    "no answer from the gateway to %u HELLO(s); the link (%s) is %s", d->hellos,
		    link_name(d->link), link_is_up(d->link) ? "up" : "down");
		break;
	case DEVICE_PHASE_IDLE:
	case DEVICE_PHASE_FINISHED:
		snprintf(d->describe, sizeof(d->describe), "%s", d->reason[0] ? d->reason : "idle");
		break;
	}
	return d->describe;
}

void
device_summary(struct device *d)
{
	const char *outcome = !d->finished ? "running" : d->ok ? "up-to-date" : "failed";

	report_event(d->rep, d->opt.serial, "summary",
	    json_pack("{s:s, s:s, s:s, s:b, s:I, s:I, s:i, s:I}", "outcome", outcome, "reason",
		d->reason, "version", d->st.current_version, "installed", d->installed,
		"overrun_bytes", (json_int_t)d->overrun_bytes, "double_programs",
		(json_int_t)flash_double_programs(d->flash), "hellos", (int)d->hellos, "rx_bytes",
		(json_int_t)d->rx_bytes));
}

const char *
device_serial(const struct device *d)
{
	return d->opt.serial;
}

bool
device_ble_connected(const struct device *d)
{
	return d->opt.link.kind == LINK_KIND_BLE && link_peer_connected(d->link);
}

void
device_free(struct device *d)
{
	if (!d)
		return;
	link_free(d->link);
	flash_close(d->flash);
	if (d->ev_timer)
		event_free(d->ev_timer);
	if (d->hold)
		evbuffer_free(d->hold);
	free(d->ring);
	free(d->rx_buf);
	free(d->tx_buf);
	free(d);
}
