/* Message encoding and decoding. Decoders check every length against what is left before they
 * read it, so no input can make them read outside buf; encoders check against cap before they
 * write. Both apply the same field rules, so what one side encodes the other accepts. */
#include "msg.h"

#include <string.h>

/* A little-endian unsigned field of n (1, 2 or 4) bytes at p; the caller checked the length. */
static uint32_t
msg_le(const uint8_t *p, size_t n)
{
	uint32_t v = 0;

	while (n--)
		v = v << 8 | p[n];
	return v;
}

/* Decodes the string whose length byte is buf[at] (at < len) into *s; MSG_ERR_TRUNCATED if it
 * runs past len. */
static enum msg_err
msg_str_at(const uint8_t *buf, size_t len, size_t at, struct msg_str *s)
{
	s->len = buf[at];
	s->s = (const char *)buf + at + 1;
	return len - at - 1 < s->len ? MSG_ERR_TRUNCATED : MSG_OK;
}

/* Free text may be empty; otherwise it follows the identity text rule. */
static int
msg_text_ok(const struct msg_str *s, size_t max)
{
	return s->len == 0 || ident_text_valid(s->s, s->len, max);
}

static enum msg_err
msg_check_text(const struct msg_str *s, size_t max)
{
	return msg_text_ok(s, max) ? MSG_OK : MSG_ERR_TEXT;
}

static enum msg_err
msg_check_hello(const struct msg_hello *h)
{
	if (h->proto_version == 0)
		return MSG_ERR_VERSION;
	if (h->max_payload < PROTO_PAYLOAD_MIN)
		return MSG_ERR_PAYLOAD;
	if (h->window == 0)
		return MSG_ERR_WINDOW;
	if (!ident_serial_valid(h->serial.s, h->serial.len))
		return MSG_ERR_SERIAL;
	if (!ident_text_valid(h->hardware_version.s, h->hardware_version.len, IDENT_HW_MAX))
		return MSG_ERR_HARDWARE;
	if (!ident_text_valid(h->software_type.s, h->software_type.len, IDENT_SWTYPE_MAX))
		return MSG_ERR_SOFTWARE_TYPE;
	if (!ident_text_valid(h->current_version.s, h->current_version.len, IDENT_VERSION_MAX))
		return MSG_ERR_SW_VERSION;
	return MSG_OK;
}

static enum msg_err
msg_check_offer(const struct msg_offer *o)
{
	if (o->proto_version == 0)
		return MSG_ERR_VERSION;
	if (o->size == 0)
		return MSG_ERR_SIZE;
	if (o->max_payload < PROTO_PAYLOAD_MIN || o->max_payload > PROTO_PAYLOAD_MAX)
		return MSG_ERR_PAYLOAD;
	if (!ident_text_valid(o->target_version.s, o->target_version.len, IDENT_VERSION_MAX))
		return MSG_ERR_SW_VERSION;
	return MSG_OK;
}

static enum msg_err
msg_check_data(const struct msg_data *d)
{
	if (d->len == 0 || d->len > PROTO_PAYLOAD_MAX)
		return MSG_ERR_PAYLOAD;
	if (d->offset > UINT32_MAX - d->len)
		return MSG_ERR_OFFSET;
	return MSG_OK;
}

/* Decoders read fixed fields at their offsets once the fixed part is known to be there, then
 * the variable strings, each checked against what is left. */

enum msg_err
msg_decode_to_gateway(const uint8_t *buf, size_t len, struct msg *m)
{
	/* Fixed part of each message (type byte included), by type - MSG_HELLO. */
	static const uint8_t fixed[] = {MSG_HELLO_FIXED, MSG_ACK_LEN, MSG_RESULT_FIXED + 1};
	struct msg_hello *h = &m->u.hello;
	struct msg_str *strs[4];
	size_t at, i;
	enum msg_err e = MSG_OK;
	unsigned t;

	if (len == 0)
		return MSG_ERR_EMPTY;
	t = (uint8_t)(buf[0] - MSG_HELLO);
	if (t >= sizeof(fixed))
		return MSG_ERR_UNKNOWN_TYPE;
	if (len < fixed[t])
		return MSG_ERR_TRUNCATED;
	m->type = buf[0];
	switch (buf[0]) {
	case MSG_HELLO:
		h->proto_version = buf[1];
		h->flags = buf[2];
		h->caps = (uint16_t)msg_le(buf + 3, 2);
		h->max_payload = (uint16_t)msg_le(buf + 5, 2);
		h->window = buf[7];
		h->max_stall_ms = (uint16_t)msg_le(buf + 8, 2);
		h->resume_sha256 = NULL;
		h->resume_offset = 0;
		at = MSG_HELLO_FIXED;
		if (h->flags & MSG_HELLO_F_RESUME) {
			if (len < MSG_HELLO_FIXED + MSG_HELLO_RESUME)
				return MSG_ERR_TRUNCATED;
			h->resume_sha256 = buf + at;
			h->resume_offset = msg_le(buf + at + PROTO_SHA256_LEN, 4);
			at += MSG_HELLO_RESUME;
		}
		/* The four identity strings follow one another. */
		strs[0] = &h->serial;
		strs[1] = &h->hardware_version;
		strs[2] = &h->software_type;
		strs[3] = &h->current_version;
		for (i = 0; i < 4 && e == MSG_OK; i++) {
			if (at >= len)
				return MSG_ERR_TRUNCATED;
			e = msg_str_at(buf, len, at, strs[i]);
			at += 1u + strs[i]->len;
		}
		return e ? e : msg_check_hello(h);
	case MSG_ACK:
		m->u.ack.offset = msg_le(buf + 1, 4);
		m->u.ack.limit = msg_le(buf + 5, 4);
		m->u.ack.epoch = buf[9];
		m->u.ack.flags = buf[10];
		return m->u.ack.limit < m->u.ack.offset ? MSG_ERR_OFFSET : MSG_OK;
	default: /* MSG_RESULT */
		m->u.result.status = buf[1];
		m->u.result.sha256 = buf + 2;
		m->u.result.bytes_received = msg_le(buf + 2 + PROTO_SHA256_LEN, 4);
		e = msg_str_at(buf, len, MSG_RESULT_FIXED, &m->u.result.detail);
		return e ? e : msg_check_text(&m->u.result.detail, MSG_DETAIL_MAX);
	}
}

enum msg_err
msg_decode_to_device(const uint8_t *buf, size_t len, struct msg *m)
{
	/* Fixed part of each message (type byte included), by type - MSG_OFFER. */
	static const uint8_t fixed[] = {MSG_OFFER_FIXED + 1, MSG_NO_UPDATE_FIXED + 1,
	    MSG_ERROR_FIXED + 1, MSG_DATA_HEADER, MSG_DONE_LEN, MSG_SOLICIT_LEN};
	enum msg_err e;
	unsigned t;

	if (len == 0)
		return MSG_ERR_EMPTY;
	t = (uint8_t)(buf[0] - MSG_OFFER);
	if (t >= sizeof(fixed))
		return MSG_ERR_UNKNOWN_TYPE;
	if (len < fixed[t])
		return MSG_ERR_TRUNCATED;
	m->type = buf[0];
	switch (buf[0]) {
	case MSG_OFFER:
		m->u.offer.proto_version = buf[1];
		m->u.offer.flags = buf[2];
		m->u.offer.size = msg_le(buf + 3, 4);
		m->u.offer.sha256 = buf + 7;
		m->u.offer.max_payload = (uint16_t)msg_le(buf + 7 + PROTO_SHA256_LEN, 2);
		e = msg_str_at(buf, len, MSG_OFFER_FIXED, &m->u.offer.target_version);
		return e ? e : msg_check_offer(&m->u.offer);
	case MSG_NO_UPDATE:
		m->u.no_update.recheck_s = msg_le(buf + 1, 4);
		e = msg_str_at(buf, len, MSG_NO_UPDATE_FIXED, &m->u.no_update.reason);
		return e ? e : msg_check_text(&m->u.no_update.reason, MSG_REASON_MAX);
	case MSG_ERROR:
		m->u.error.code = buf[1];
		m->u.error.retry_after_s = msg_le(buf + 2, 4);
		e = msg_str_at(buf, len, MSG_ERROR_FIXED, &m->u.error.message);
		return e ? e : msg_check_text(&m->u.error.message, MSG_ERROR_TEXT_MAX);
	case MSG_DATA:
		/* The payload runs to the end of the message; bound it before narrowing. */
		m->u.data.offset = msg_le(buf + 1, 4);
		if (len == MSG_DATA_HEADER || len > MSG_DATA_MAX)
			return MSG_ERR_PAYLOAD;
		m->u.data.payload = buf + MSG_DATA_HEADER;
		m->u.data.len = (uint16_t)(len - MSG_DATA_HEADER);
		return msg_check_data(&m->u.data);
	case MSG_DONE:
		m->u.done.sha256 = buf + 1;
		return MSG_OK;
	default: /* MSG_SOLICIT */
		return MSG_OK;
	}
}

enum msg_err
msg_decode(const uint8_t *buf, size_t len, struct msg *m)
{
	if (len > 0 && (buf[0] & 0x80))
		return msg_decode_to_device(buf, len, m);
	return msg_decode_to_gateway(buf, len, m);
}

const char *
msg_strerror(enum msg_err e)
{
	switch (e) {
	case MSG_OK:
		return "no error";
	case MSG_ERR_EMPTY:
		return "empty message";
	case MSG_ERR_UNKNOWN_TYPE:
		return "unknown message type";
	case MSG_ERR_TRUNCATED:
		return "message truncated (a field or string runs past its end)";
	case MSG_ERR_VERSION:
		return "proto_version is 0";
	case MSG_ERR_PAYLOAD:
		return "max_payload or DATA payload length out of bounds (16..4096)";
	case MSG_ERR_WINDOW:
		return "window is 0";
	case MSG_ERR_OFFSET:
		return "offset out of range (ACK limit below offset, or DATA ending past 2^32 - 1)";
	case MSG_ERR_SIZE:
		return "image size is 0";
	case MSG_ERR_SERIAL:
		return "device_serial is empty, longer than 64 or not [-a-zA-Z0-9_]";
	case MSG_ERR_HARDWARE:
		return "hardware_version is empty, longer than 32 or not printable ASCII";
	case MSG_ERR_SOFTWARE_TYPE:
		return "software_type is empty, longer than 32 or not printable ASCII";
	case MSG_ERR_SW_VERSION:
		return "version is empty, longer than 64 or not printable ASCII";
	case MSG_ERR_TEXT:
		return "text field too long or not printable ASCII";
	}
	return "unknown error";
}

/* Encoders compute the exact length first and refuse a short buffer before writing anything;
 * then every store is in bounds by construction. */

/* Stores v as n (1, 2 or 4) little-endian bytes at p; returns the next position. */
static uint8_t *
msg_put(uint8_t *p, uint32_t v, size_t n)
{
	for (; n > 0; n--, v >>= 8)
		*p++ = (uint8_t)v;
	return p;
}

static uint8_t *
msg_put_bytes(uint8_t *p, const void *src, size_t n)
{
	if (n > 0)
		memcpy(p, src, n);
	return p + n;
}

static uint8_t *
msg_put_str(uint8_t *p, const struct msg_str *s)
{
	*p++ = s->len;
	return msg_put_bytes(p, s->s, s->len);
}

/* The length of a message of fixed bytes (type byte included) that ends in the free text t
 * (at most max characters), or 0 if it does not fit cap or t breaks the text rule. */
static size_t
msg_text_len(size_t fixed, const struct msg_str *t, size_t max, size_t cap)
{
	size_t n = fixed + 1 + (size_t)t->len;

	return n <= cap && msg_text_ok(t, max) ? n : 0;
}

size_t
msg_encode_hello(const struct msg_hello *m, uint8_t *out, size_t cap)
{
	int resume = (m->flags & MSG_HELLO_F_RESUME) != 0;
	size_t n = (size_t)MSG_HELLO_FIXED + (resume ? MSG_HELLO_RESUME : 0u) + 4u + m->serial.len +
		   m->hardware_version.len + m->software_type.len + m->current_version.len;
	uint8_t *p = out;

	if (n > cap || msg_check_hello(m) != MSG_OK || (resume && !m->resume_sha256))
		return 0;
	*p++ = MSG_HELLO;
	*p++ = m->proto_version;
	*p++ = m->flags;
	p = msg_put(p, m->caps, 2);
	p = msg_put(p, m->max_payload, 2);
	*p++ = m->window;
	p = msg_put(p, m->max_stall_ms, 2);
	if (resume) {
		p = msg_put_bytes(p, m->resume_sha256, PROTO_SHA256_LEN);
		p = msg_put(p, m->resume_offset, 4);
	}
	p = msg_put_str(p, &m->serial);
	p = msg_put_str(p, &m->hardware_version);
	p = msg_put_str(p, &m->software_type);
	msg_put_str(p, &m->current_version);
	return n;
}

size_t
msg_encode_ack(const struct msg_ack *m, uint8_t *out, size_t cap)
{
	uint8_t *p = out;

	if (cap < MSG_ACK_LEN || m->limit < m->offset)
		return 0;
	*p++ = MSG_ACK;
	p = msg_put(p, m->offset, 4);
	p = msg_put(p, m->limit, 4);
	*p++ = m->epoch;
	*p = m->flags;
	return MSG_ACK_LEN;
}

size_t
msg_encode_result(const struct msg_result *m, uint8_t *out, size_t cap)
{
	/* Not msg_text_len(): RESULT is the device's, and sharing it costs MCU flash. */
	size_t n = MSG_RESULT_FIXED + 1 + (size_t)m->detail.len;
	uint8_t *p = out;

	if (n > cap || !msg_text_ok(&m->detail, MSG_DETAIL_MAX))
		return 0;
	*p++ = MSG_RESULT;
	*p++ = m->status;
	p = msg_put_bytes(p, m->sha256, PROTO_SHA256_LEN);
	p = msg_put(p, m->bytes_received, 4);
	msg_put_str(p, &m->detail);
	return n;
}

size_t
msg_encode_offer(const struct msg_offer *m, uint8_t *out, size_t cap)
{
	size_t n = MSG_OFFER_FIXED + 1 + (size_t)m->target_version.len;
	uint8_t *p = out;

	if (n > cap || msg_check_offer(m) != MSG_OK)
		return 0;
	*p++ = MSG_OFFER;
	*p++ = m->proto_version;
	*p++ = m->flags;
	p = msg_put(p, m->size, 4);
	p = msg_put_bytes(p, m->sha256, PROTO_SHA256_LEN);
	p = msg_put(p, m->max_payload, 2);
	msg_put_str(p, &m->target_version);
	return n;
}

size_t
msg_encode_no_update(const struct msg_no_update *m, uint8_t *out, size_t cap)
{
	size_t n = msg_text_len(MSG_NO_UPDATE_FIXED, &m->reason, MSG_REASON_MAX, cap);
	uint8_t *p = out;

	if (n == 0)
		return 0;
	*p++ = MSG_NO_UPDATE;
	p = msg_put(p, m->recheck_s, 4);
	msg_put_str(p, &m->reason);
	return n;
}

size_t
msg_encode_error(const struct msg_error *m, uint8_t *out, size_t cap)
{
	size_t n = msg_text_len(MSG_ERROR_FIXED, &m->message, MSG_ERROR_TEXT_MAX, cap);
	uint8_t *p = out;

	if (n == 0)
		return 0;
	*p++ = MSG_ERROR;
	*p++ = m->code;
	p = msg_put(p, m->retry_after_s, 4);
	msg_put_str(p, &m->message);
	return n;
}

void
msg_encode_data_header(uint32_t offset, uint8_t out[MSG_DATA_HEADER])
{
	out[0] = MSG_DATA;
	msg_put(out + 1, offset, 4);
}

size_t
msg_encode_data(const struct msg_data *m, uint8_t *out, size_t cap)
{
	size_t n = MSG_DATA_HEADER + (size_t)m->len;

	if (n > cap || msg_check_data(m) != MSG_OK)
		return 0;
	msg_encode_data_header(m->offset, out);
	msg_put_bytes(out + MSG_DATA_HEADER, m->payload, m->len);
	return n;
}

size_t
msg_encode_done(const struct msg_done *m, uint8_t *out, size_t cap)
{
	if (cap < MSG_DONE_LEN)
		return 0;
	out[0] = MSG_DONE;
	msg_put_bytes(out + 1, m->sha256, PROTO_SHA256_LEN);
	return MSG_DONE_LEN;
}

size_t
msg_encode_solicit(uint8_t *out, size_t cap)
{
	if (cap < MSG_SOLICIT_LEN)
		return 0;
	out[0] = MSG_SOLICIT;
	return MSG_SOLICIT_LEN;
}
