/* Messages: round trip of every message, every truncation rejected, trailing bytes ignored,
 * every bound enforced on both encode and decode with the right error, short output buffers
 * refused without a byte written past them, and random input never mis-decoded. */
#include <check.h>
#include <string.h>

#include "ck.h"
#include "msg.h"
#include "vectors.h"

#define BIG 8192

static uint8_t buf[BIG], buf2[BIG];

START_TEST(round_trip_every_vector)
{
	size_t i;

	for (i = 0; i < vectors_count; i++) {
		const struct vector *v = &vectors[i];
		struct msg m;
		size_t n, k;

		if (v->raw)
			continue;
		n = vector_encode(v, buf, sizeof(buf));
		ck_assert_msg(n > 0, "%s", v->name);
		ck_assert_int_eq(msg_decode(buf, n, &m), MSG_OK);
		ck_assert_uint_eq(m.type, v->m.type);
		k = vector_encode_msg(&m, buf2, sizeof(buf2));
		ck_assert_uint_eq(k, n);
		ck_assert_mem_eq(buf, buf2, n);
		/* The direction-specific decoders agree, and refuse the other direction. */
		if (v->m.type & 0x80) {
			ck_assert_int_eq(msg_decode_to_device(buf, n, &m), MSG_OK);
			ck_assert_int_eq(msg_decode_to_gateway(buf, n, &m), MSG_ERR_UNKNOWN_TYPE);
		} else {
			ck_assert_int_eq(msg_decode_to_gateway(buf, n, &m), MSG_OK);
			ck_assert_int_eq(msg_decode_to_device(buf, n, &m), MSG_ERR_UNKNOWN_TYPE);
		}
	}
}
END_TEST

START_TEST(decoded_fields)
{
	struct msg m;
	size_t i;

	for (i = 0; i < vectors_count; i++)
		if (strcmp(vectors[i].name, "hello-resume") == 0)
			break;
	ck_assert_uint_lt(i, vectors_count);
	ck_assert_int_eq(msg_decode(buf, vector_encode(&vectors[i], buf, sizeof(buf)), &m), MSG_OK);
	ck_assert_uint_eq(m.u.hello.flags, MSG_HELLO_F_RESUME);
	ck_assert_uint_eq(m.u.hello.caps, MSG_CAP_DELTA);
	ck_assert_uint_eq(m.u.hello.max_payload, 239);
	ck_assert_uint_eq(m.u.hello.window, 8);
	ck_assert_uint_eq(m.u.hello.max_stall_ms, 500);
	ck_assert_uint_eq(m.u.hello.resume_offset, 65536);
	ck_assert_uint_eq(m.u.hello.resume_sha256[0], 0xe3);
	ck_assert_uint_eq(m.u.hello.serial.len, 8);
	ck_assert_mem_eq(m.u.hello.serial.s, "dev-0001", 8);
	ck_assert_mem_eq(m.u.hello.current_version.s, "1.4.2", 5);
	/* Strings and digests point into the input. */
	ck_assert_ptr_eq(m.u.hello.resume_sha256, buf + 10);
}
END_TEST

/* Every strict prefix of a message is rejected, except that a DATA prefix past its header is a
 * shorter DATA. */
START_TEST(every_truncation_rejected)
{
	size_t i, cut;

	for (i = 0; i < vectors_count; i++) {
		const struct vector *v = &vectors[i];
		size_t n;

		if (v->raw)
			continue;
		n = vector_encode(v, buf, sizeof(buf));
		for (cut = 0; cut < n; cut++) {
			struct msg m;
			enum msg_err e = msg_decode(buf, cut, &m);

			if (v->m.type == MSG_DATA && cut > MSG_DATA_HEADER)
				ck_assert_int_eq(e, MSG_OK);
			else if (v->m.type == MSG_DATA && cut == MSG_DATA_HEADER)
				ck_assert_int_eq(e, MSG_ERR_PAYLOAD); /* no payload */
			else
				ck_assert_msg(e == (cut ? MSG_ERR_TRUNCATED : MSG_ERR_EMPTY),
				    "%s cut at %zu: %s", v->name, cut, msg_strerror(e));
		}
	}
}
END_TEST

/* Bytes after a known body are ignored (a newer peer appends fields). */
START_TEST(trailing_bytes_ignored)
{
	size_t i;

	for (i = 0; i < vectors_count; i++) {
		const struct vector *v = &vectors[i];
		struct msg m;
		size_t n;

		if (v->raw || v->m.type == MSG_DATA)
			continue;
		n = vector_encode(v, buf, sizeof(buf));
		memcpy(buf + n, "\x01\x02\x03\x04\x05", 5);
		ck_assert_int_eq(msg_decode(buf, n + 5, &m), MSG_OK);
		ck_assert_uint_eq(vector_encode_msg(&m, buf2, sizeof(buf2)), n);
		ck_assert_mem_eq(buf, buf2, n);
	}
}
END_TEST

/* An encoder never writes past cap and refuses every cap short of the message. */
START_TEST(short_output_refused)
{
	size_t i, cap;

	for (i = 0; i < vectors_count; i++) {
		const struct vector *v = &vectors[i];
		size_t n;

		if (v->raw)
			continue;
		n = vector_encode(v, buf, sizeof(buf));
		for (cap = 0; cap < n; cap++) {
			memset(buf2, 0xaa, n + 1);
			ck_assert_uint_eq(vector_encode_msg(&v->m, buf2, cap), 0);
			ck_assert_uint_eq(buf2[cap], 0xaa);
		}
		ck_assert_uint_eq(vector_encode_msg(&v->m, buf2, n), n);
	}
}
END_TEST

static struct msg_hello
good_hello(void)
{
	struct msg_hello h = {
	    1, 0, 0, 1024, 4, 200, NULL, 0, {"dev-1", 5}, {"hw", 2}, {"main", 4}, {"1.0.0", 5}};

	return h;
}

/* Encodes h without checks (the encoder refuses bad fields), to test the decoder. */
static size_t
raw_hello(const struct msg_hello *h, uint8_t *out)
{
	size_t n = 0;
	const struct msg_str *strs[4] = {
	    &h->serial, &h->hardware_version, &h->software_type, &h->current_version};
	int i;

	out[n++] = MSG_HELLO;
	out[n++] = h->proto_version;
	out[n++] = h->flags;
	out[n++] = (uint8_t)h->caps;
	out[n++] = (uint8_t)(h->caps >> 8);
	out[n++] = (uint8_t)h->max_payload;
	out[n++] = (uint8_t)(h->max_payload >> 8);
	out[n++] = h->window;
	out[n++] = (uint8_t)h->max_stall_ms;
	out[n++] = (uint8_t)(h->max_stall_ms >> 8);
	for (i = 0; i < 4; i++) {
		out[n++] = strs[i]->len;
		memcpy(out + n, strs[i]->s, strs[i]->len);
		n += strs[i]->len;
	}
	return n;
}

static void
expect_hello(const struct msg_hello *h, enum msg_err want)
{
	struct msg m;
	size_t n = raw_hello(h, buf);

	ck_assert_msg(msg_decode(buf, n, &m) == want, "want %s got %s", msg_strerror(want),
	    msg_strerror(msg_decode(buf, n, &m)));
	ck_assert_uint_eq(msg_encode_hello(h, buf2, sizeof(buf2)), want == MSG_OK ? n : 0);
}

START_TEST(hello_bounds)
{
	static const char long_text[] = "0123456789012345678901234567890123456789012345678901234567"
					"890123456789";
	struct msg_hello h;

	h = good_hello();
	expect_hello(&h, MSG_OK);
	h.proto_version = 0;
	expect_hello(&h, MSG_ERR_VERSION);
	h = good_hello();
	h.max_payload = PROTO_PAYLOAD_MIN - 1;
	expect_hello(&h, MSG_ERR_PAYLOAD);
	h.max_payload = 65535; /* more than PROTO_PAYLOAD_MAX is fine: the gateway caps it */
	expect_hello(&h, MSG_OK);
	h = good_hello();
	h.window = 0;
	expect_hello(&h, MSG_ERR_WINDOW);

	h = good_hello();
	h.serial.len = 0;
	expect_hello(&h, MSG_ERR_SERIAL);
	h.serial.s = "dev@1";
	h.serial.len = 5;
	expect_hello(&h, MSG_ERR_SERIAL);
	h.serial.s = long_text;
	h.serial.len = IDENT_SERIAL_MAX;
	expect_hello(&h, MSG_OK);
	h.serial.len = IDENT_SERIAL_MAX + 1;
	expect_hello(&h, MSG_ERR_SERIAL);

	h = good_hello();
	h.hardware_version.s = "a\tb";
	h.hardware_version.len = 3;
	expect_hello(&h, MSG_ERR_HARDWARE);
	h.hardware_version.s = long_text;
	h.hardware_version.len = IDENT_HW_MAX + 1;
	expect_hello(&h, MSG_ERR_HARDWARE);
	h = good_hello();
	h.software_type.len = 0;
	expect_hello(&h, MSG_ERR_SOFTWARE_TYPE);
	h.software_type.s = long_text;
	h.software_type.len = IDENT_SWTYPE_MAX + 1;
	expect_hello(&h, MSG_ERR_SOFTWARE_TYPE);
	h = good_hello();
	h.current_version.s = "1.0\x7f";
	h.current_version.len = 4;
	expect_hello(&h, MSG_ERR_SW_VERSION);
	h.current_version.s = long_text;
	h.current_version.len = IDENT_VERSION_MAX;
	expect_hello(&h, MSG_OK);
	h.current_version.len = IDENT_VERSION_MAX + 1;
	expect_hello(&h, MSG_ERR_SW_VERSION);

	/* RESUME needs its digest to encode. */
	h = good_hello();
	h.flags = MSG_HELLO_F_RESUME;
	ck_assert_uint_eq(msg_encode_hello(&h, buf, sizeof(buf)), 0);
}
END_TEST

START_TEST(other_bounds)
{
	static const uint8_t sha[32];
	static uint8_t payload[PROTO_PAYLOAD_MAX + 1];
	static char text[128];
	struct msg m;
	size_t n;

	memset(text, 'x', sizeof(text));
	/* ACK: limit below offset. */
	{
		struct msg_ack a = {100, 99, 0, 0};
		uint8_t raw[MSG_ACK_LEN] = {MSG_ACK, 100, 0, 0, 0, 99, 0, 0, 0, 0, 0};

		ck_assert_uint_eq(msg_encode_ack(&a, buf, sizeof(buf)), 0);
		ck_assert_int_eq(msg_decode(raw, sizeof(raw), &m), MSG_ERR_OFFSET);
	}
	/* DATA: empty, at the maximum, over it, and reaching past 4 GiB. */
	{
		struct msg_data d = {0, payload, 0};

		ck_assert_uint_eq(msg_encode_data(&d, buf, sizeof(buf)), 0);
		ck_assert_int_eq(
		    msg_decode((const uint8_t *)"\x84\0\0\0\0", 5, &m), MSG_ERR_PAYLOAD);
		d.len = PROTO_PAYLOAD_MAX;
		n = msg_encode_data(&d, buf, sizeof(buf));
		ck_assert_uint_eq(n, MSG_DATA_MAX);
		ck_assert_int_eq(msg_decode(buf, n, &m), MSG_OK);
		ck_assert_uint_eq(m.u.data.len, PROTO_PAYLOAD_MAX);
		ck_assert_int_eq(msg_decode(buf, n + 1, &m), MSG_ERR_PAYLOAD);
		d.len = PROTO_PAYLOAD_MAX + 1;
		ck_assert_uint_eq(msg_encode_data(&d, buf, sizeof(buf)), 0);
		d.len = 2;
		d.offset = UINT32_MAX - 2; /* the end, offset + len, must fit a u32 */
		ck_assert_uint_eq(msg_encode_data(&d, buf, sizeof(buf)), 7);
		d.offset = UINT32_MAX - 1;
		ck_assert_uint_eq(msg_encode_data(&d, buf, sizeof(buf)), 0);
		memcpy(buf, "\x84\xfe\xff\xff\xff\x01\x02", 7);
		ck_assert_int_eq(msg_decode(buf, 7, &m), MSG_ERR_OFFSET);
	}
	/* OFFER: size 0, payload bounds, version 0, empty or long target_version. */
	{
		struct msg_offer o = {1, 0, 0, sha, 1024, {"1.0", 3}};

		ck_assert_uint_eq(msg_encode_offer(&o, buf, sizeof(buf)), 0);
		o.size = 1;
		n = msg_encode_offer(&o, buf, sizeof(buf));
		ck_assert_uint_eq(n, MSG_OFFER_FIXED + 4);
		buf[3] = 0; /* size 0 */
		ck_assert_int_eq(msg_decode(buf, n, &m), MSG_ERR_SIZE);
		buf[3] = 1;
		buf[39] = 15;
		buf[40] = 0;
		ck_assert_int_eq(msg_decode(buf, n, &m), MSG_ERR_PAYLOAD);
		buf[39] = 0x01;
		buf[40] = 0x10; /* 4097 */
		ck_assert_int_eq(msg_decode(buf, n, &m), MSG_ERR_PAYLOAD);
		o.max_payload = PROTO_PAYLOAD_MAX;
		ck_assert_uint_gt(msg_encode_offer(&o, buf, sizeof(buf)), 0);
		o.max_payload = PROTO_PAYLOAD_MAX + 1;
		ck_assert_uint_eq(msg_encode_offer(&o, buf, sizeof(buf)), 0);
		o.max_payload = 1024;
		o.proto_version = 0;
		ck_assert_uint_eq(msg_encode_offer(&o, buf, sizeof(buf)), 0);
		o.proto_version = 1;
		o.target_version.len = 0;
		ck_assert_uint_eq(msg_encode_offer(&o, buf, sizeof(buf)), 0);
		o.target_version.s = text;
		o.target_version.len = IDENT_VERSION_MAX + 1;
		ck_assert_uint_eq(msg_encode_offer(&o, buf, sizeof(buf)), 0);
	}
	/* Free text: at its maximum, one over, and not printable. */
	{
		struct msg_result r = {0, sha, 0, {text, MSG_DETAIL_MAX}};
		struct msg_no_update nu = {0, {text, MSG_REASON_MAX}};
		struct msg_error e = {1, 0, {text, MSG_ERROR_TEXT_MAX}};

		ck_assert_uint_eq(msg_encode_result(&r, buf, sizeof(buf)), MSG_RESULT_MAX);
		ck_assert_uint_eq(msg_encode_no_update(&nu, buf, sizeof(buf)), MSG_NO_UPDATE_MAX);
		ck_assert_uint_eq(msg_encode_error(&e, buf, sizeof(buf)), MSG_ERROR_MAX);
		n = msg_encode_error(&e, buf, sizeof(buf));
		buf[6] = MSG_ERROR_TEXT_MAX + 1;
		memcpy(buf + n, "x", 1);
		ck_assert_int_eq(msg_decode(buf, n + 1, &m), MSG_ERR_TEXT);
		r.detail.len = MSG_DETAIL_MAX + 1;
		nu.reason.len = MSG_REASON_MAX + 1;
		e.message.len = MSG_ERROR_TEXT_MAX + 1;
		ck_assert_uint_eq(msg_encode_result(&r, buf, sizeof(buf)), 0);
		ck_assert_uint_eq(msg_encode_no_update(&nu, buf, sizeof(buf)), 0);
		ck_assert_uint_eq(msg_encode_error(&e, buf, sizeof(buf)), 0);
		r.detail.s = "bad\n";
		r.detail.len = 4;
		ck_assert_uint_eq(msg_encode_result(&r, buf, sizeof(buf)), 0);
		r.detail.s = "ok.";
		r.detail.len = 3;
		n = msg_encode_result(&r, buf, sizeof(buf));
		buf[n - 1] = 0x80;
		ck_assert_int_eq(msg_decode(buf, n, &m), MSG_ERR_TEXT);
	}
}
END_TEST

START_TEST(unknown_and_empty)
{
	static const uint8_t types[] = {0x00, 0x04, 0x7f, 0x80, 0x87, 0xff};
	struct msg m;
	size_t i;

	ck_assert_int_eq(msg_decode(buf, 0, &m), MSG_ERR_EMPTY);
	ck_assert_int_eq(msg_decode_to_device(buf, 0, &m), MSG_ERR_EMPTY);
	ck_assert_int_eq(msg_decode_to_gateway(buf, 0, &m), MSG_ERR_EMPTY);
	for (i = 0; i < sizeof(types); i++) {
		memset(buf, 0, 64);
		buf[0] = types[i];
		ck_assert_int_eq(msg_decode(buf, 64, &m), MSG_ERR_UNKNOWN_TYPE);
	}
	for (i = MSG_OK; i <= MSG_ERR_TEXT; i++)
		ck_assert_uint_gt(strlen(msg_strerror((enum msg_err)i)), 5);
}
END_TEST

static uint32_t rng_state = 12345;

static uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/* Random bytes behind every known type byte: anything that decodes re-encodes to exactly the
 * bytes it came from (a prefix of them, trailing bytes being ignored). */
START_TEST(random_input)
{
	static const uint8_t types[] = {MSG_HELLO, MSG_ACK, MSG_RESULT, MSG_OFFER, MSG_NO_UPDATE,
	    MSG_ERROR, MSG_DATA, MSG_DONE, MSG_SOLICIT};
	int round, ok = 0;

	for (round = 0; round < 200000; round++) {
		size_t n = 1 + rng() % 300, i, k;
		struct msg m;

		for (i = 0; i < n; i++)
			buf[i] = (uint8_t)(rng() % 4 ? 0x20 + rng() % 0x5f : rng());
		buf[0] = types[rng() % sizeof(types)];
		if (buf[0] == MSG_HELLO && n > 2)
			buf[2] &= 1;
		if (msg_decode(buf, n, &m) != MSG_OK)
			continue;
		ok++;
		k = vector_encode_msg(&m, buf2, sizeof(buf2));
		ck_assert_uint_gt(k, 0);
		ck_assert_uint_le(k, n);
		ck_assert_mem_eq(buf, buf2, k);
	}
	ck_assert_int_gt(ok, 1000);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("msg");
	TCase *tc = tcase_create("msg");

	tcase_add_test(tc, round_trip_every_vector);
	tcase_add_test(tc, decoded_fields);
	tcase_add_test(tc, every_truncation_rejected);
	tcase_add_test(tc, trailing_bytes_ignored);
	tcase_add_test(tc, short_output_refused);
	tcase_add_test(tc, hello_bounds);
	tcase_add_test(tc, other_bounds);
	tcase_add_test(tc, unknown_and_empty);
	tcase_add_test(tc, random_input);
	suite_add_tcase(s, tc);
	return ck_main(s);
}
