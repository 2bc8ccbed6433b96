/* Stream framing: round trips at every COBS block boundary, split input, bounds on both sides,
 * detection of every single-bit flip, and resynchronisation after garbage. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ck.h"
#include "crc32c.h"
#include "frame.h"

#define BUF_CAP (FRAME_MSG_MAX + FRAME_CRC_LEN)
#define ENC_CAP FRAME_ENCODED_MAX(FRAME_MSG_MAX + 16)

static uint32_t rng_state;

static uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/* Fills a message: pattern 0 all zero, 1 all 0xff, 2 random without zeros, 3 random with zeros. */
static void
fill(uint8_t *m, size_t n, int pattern)
{
	size_t i;

	for (i = 0; i < n; i++) {
		switch (pattern) {
		case 0:
			m[i] = 0;
			break;
		case 1:
			m[i] = 0xff;
			break;
		case 2:
			m[i] = (uint8_t)(rng() % 255 + 1);
			break;
		default:
			m[i] = (uint8_t)(rng() % 8 == 0 ? 0 : rng());
			break;
		}
	}
}

/* An independent textbook COBS encoder (always ends an 0xff block with a new block) used to make
 * frames frame_encode() refuses to make, and to cross-check its output. */
static size_t
ref_frame(const uint8_t *m, size_t n, uint8_t *out)
{
	static uint8_t tmp[FRAME_MSG_MAX + 64];
	uint32_t crc = crc32c(0, m, n);
	size_t code_pos = 0, o = 1, i;
	uint8_t code = 1;

	memcpy(tmp, m, n);
	tmp[n] = (uint8_t)crc;
	tmp[n + 1] = (uint8_t)(crc >> 8);
	tmp[n + 2] = (uint8_t)(crc >> 16);
	tmp[n + 3] = (uint8_t)(crc >> 24);
	for (i = 0; i < n + 4; i++) {
		if (tmp[i] == 0) {
			out[code_pos] = code;
			code_pos = o++;
			code = 1;
			continue;
		}
		out[o++] = tmp[i];
		if (++code == 0xff) {
			out[code_pos] = code;
			code_pos = o++;
			code = 1;
		}
	}
	out[code_pos] = code;
	out[o++] = 0;
	return o;
}

struct sink {
	int msgs, errs;
	enum frame_result last_err;
	uint32_t last_err_bytes;
	uint8_t msg[16][BUF_CAP];
	size_t msg_len[16];
};

/* Feeds in[0..n) in chunks of at most chunk bytes and records everything that comes out. */
static void
feed_all(struct frame_decoder *d, const uint8_t *in, size_t n, size_t chunk, struct sink *s)
{
	while (n > 0) {
		size_t take = n < chunk ? n : chunk, used = 0;

		while (take > 0) {
			const uint8_t *m = NULL;
			size_t mlen = 0;
			enum frame_result r = frame_decoder_feed(d, in, take, &used, &m, &mlen);

			ck_assert_uint_le(used, take);
			if (r == FRAME_MSG) {
				ck_assert_ptr_nonnull(m);
				if (s->msgs < 16) {
					memcpy(s->msg[s->msgs], m, mlen);
					s->msg_len[s->msgs] = mlen;
				}
				s->msgs++;
			} else if (r != FRAME_NONE) {
				s->errs++;
				s->last_err = r;
				s->last_err_bytes = frame_decoder_error_bytes(d);
			} else {
				ck_assert_uint_eq(used, take);
			}
			in += used;
			n -= used;
			take -= used;
		}
	}
}

static const size_t round_trip_lens[] = {1, 2, 3, 249, 250, 251, 252, 253, 254, 255, 256, 257, 504,
    505, 506, 507, 508, 509, 1000, 1024 + 5, FRAME_MSG_MAX - 1, FRAME_MSG_MAX};

START_TEST(round_trip)
{
	static uint8_t m[FRAME_MSG_MAX], enc[ENC_CAP], ref[ENC_CAP], buf[BUF_CAP];
	size_t len = round_trip_lens[_i], n, refn, i;
	int pattern;

	rng_state = 0x12345678u + (uint32_t)_i;
	for (pattern = 0; pattern < 4; pattern++) {
		struct frame_decoder d;
		static struct sink s;

		fill(m, len, pattern);
		n = frame_encode(m, len, enc, sizeof(enc));
		ck_assert_uint_gt(n, len + FRAME_CRC_LEN);
		ck_assert_uint_le(n, FRAME_ENCODED_MAX(len));
		for (i = 0; i + 1 < n; i++)
			ck_assert_uint_ne(enc[i], 0);
		ck_assert_uint_eq(enc[n - 1], 0);
		/* The reference differs only where a frame ends with a full block. */
		refn = ref_frame(m, len, ref);
		ck_assert(refn == n || refn == n + 1);
		ck_assert_mem_eq(ref, enc, n - 1);

		/* Whole, byte by byte, and in odd chunks; and the reference encoding too. */
		memset(&s, 0, sizeof(s));
		frame_decoder_init(&d, buf, sizeof(buf));
		feed_all(&d, enc, n, n, &s);
		feed_all(&d, enc, n, 1, &s);
		feed_all(&d, enc, n, 7, &s);
		feed_all(&d, ref, refn, 3, &s);
		ck_assert_int_eq(s.errs, 0);
		ck_assert_int_eq(s.msgs, 4);
		for (i = 0; i < 4; i++) {
			ck_assert_uint_eq(s.msg_len[i], len);
			ck_assert_mem_eq(s.msg[i], m, len);
		}
	}
}
END_TEST

START_TEST(encode_bounds)
{
	static uint8_t m[FRAME_MSG_MAX + 1], enc[ENC_CAP];
	size_t need, cap;

	rng_state = 99;
	fill(m, sizeof(m), 2);
	ck_assert_uint_eq(frame_encode(m, 0, enc, sizeof(enc)), 0);
	ck_assert_uint_eq(frame_encode(m, FRAME_MSG_MAX + 1, enc, sizeof(enc)), 0);
	/* Every capacity short of the exact need is refused, without writing past it. */
	need = frame_encode(m, 300, enc, sizeof(enc));
	ck_assert_uint_eq(need, FRAME_ENCODED_MAX(300));
	for (cap = 0; cap < need; cap++) {
		memset(enc, 0xaa, sizeof(enc));
		ck_assert_uint_eq(frame_encode(m, 300, enc, cap), 0);
		ck_assert_uint_eq(enc[cap], 0xaa);
	}
	ck_assert_uint_eq(frame_encode(m, 300, enc, need), need);
	ck_assert_uint_eq(frame_encode(m, FRAME_MSG_MAX, enc, FRAME_ENCODED_MAX(FRAME_MSG_MAX)),
	    FRAME_ENCODED_MAX(FRAME_MSG_MAX));
}
END_TEST

START_TEST(decode_oversize)
{
	static uint8_t m[FRAME_MSG_MAX + 1], enc[ENC_CAP], buf[BUF_CAP];
	struct frame_decoder d;
	static struct sink s;
	size_t n;

	rng_state = 7;
	fill(m, sizeof(m), 3);
	frame_decoder_init(&d, buf, sizeof(buf));
	/* The largest message fits exactly; one byte more is dropped and the next frame is fine. */
	n = ref_frame(m, FRAME_MSG_MAX, enc);
	feed_all(&d, enc, n, 100, &s);
	ck_assert_int_eq(s.msgs, 1);
	n = ref_frame(m, FRAME_MSG_MAX + 1, enc);
	feed_all(&d, enc, n, 100, &s);
	ck_assert_int_eq(s.errs, 1);
	ck_assert_int_eq(s.last_err, FRAME_ERR_OVERSIZE);
	ck_assert_uint_eq(s.last_err_bytes, n - 1);
	n = ref_frame(m, 10, enc);
	feed_all(&d, enc, n, 100, &s);
	ck_assert_int_eq(s.msgs, 2);
	ck_assert_uint_eq(s.msg_len[1], 10);

	/* A tiny buffer, and a NULL one, drop everything cleanly. */
	frame_decoder_init(&d, buf, 4);
	feed_all(&d, enc, n, 100, &s);
	ck_assert_int_eq(s.last_err, FRAME_ERR_OVERSIZE);
	frame_decoder_init(&d, NULL, 100);
	feed_all(&d, enc, n, 100, &s);
	ck_assert_int_eq(s.last_err, FRAME_ERR_OVERSIZE);
	ck_assert_int_eq(s.msgs, 2);
}
END_TEST

START_TEST(decode_malformed)
{
	static const uint8_t empties[] = {0, 0, 0};
	static const uint8_t short1[] = {0x01, 0x00};
	static const uint8_t short4[] = {0x05, 1, 2, 3, 4, 0x00};
	static const uint8_t cobs[] = {0x05, 1, 2, 0x00};
	static const uint8_t badcrc[] = {0x06, 1, 2, 3, 4, 5, 0x00};
	uint8_t buf[64];
	struct frame_decoder d;
	static struct sink s;

	frame_decoder_init(&d, buf, sizeof(buf));
	feed_all(&d, empties, sizeof(empties), 1, &s);
	ck_assert_int_eq(s.errs + s.msgs, 0);
	feed_all(&d, short1, sizeof(short1), 2, &s);
	ck_assert_int_eq(s.last_err, FRAME_ERR_SHORT);
	ck_assert_uint_eq(s.last_err_bytes, 1);
	feed_all(&d, short4, sizeof(short4), 2, &s);
	ck_assert_int_eq(s.last_err, FRAME_ERR_SHORT);
	ck_assert_uint_eq(s.last_err_bytes, 5);
	feed_all(&d, cobs, sizeof(cobs), 2, &s);
	ck_assert_int_eq(s.last_err, FRAME_ERR_COBS);
	ck_assert_uint_eq(s.last_err_bytes, 3);
	feed_all(&d, badcrc, sizeof(badcrc), 2, &s);
	ck_assert_int_eq(s.last_err, FRAME_ERR_CRC);
	ck_assert_uint_eq(s.last_err_bytes, 6);
	ck_assert_int_eq(s.errs, 4);
	ck_assert_int_eq(s.msgs, 0);
}
END_TEST

/* Feeding stops right after each frame so the caller can act on it before the next. */
START_TEST(one_frame_per_call)
{
	uint8_t a[] = {1, 2, 3}, b[] = {0, 0, 9}, in[64], buf[64];
	struct frame_decoder d;
	const uint8_t *m;
	size_t na, nb, used, mlen;

	na = frame_encode(a, sizeof(a), in, sizeof(in));
	nb = frame_encode(b, sizeof(b), in + na, sizeof(in) - na);
	frame_decoder_init(&d, buf, sizeof(buf));
	ck_assert_int_eq(frame_decoder_feed(&d, in, na + nb, &used, &m, &mlen), FRAME_MSG);
	ck_assert_uint_eq(used, na);
	ck_assert_uint_eq(mlen, 3);
	ck_assert_mem_eq(m, a, 3);
	ck_assert_int_eq(frame_decoder_feed(&d, in + na, nb, &used, &m, &mlen), FRAME_MSG);
	ck_assert_uint_eq(used, nb);
	ck_assert_mem_eq(m, b, 3);
	ck_assert_int_eq(frame_decoder_feed(&d, in, 0, &used, &m, &mlen), FRAME_NONE);
	ck_assert_uint_eq(used, 0);
}
END_TEST

static const size_t flip_lens[] = {1, 11, 40, 300};

/* Every single-bit error anywhere in a frame, delimiter included, is reported as an error and
 * never delivered as a message; the following frame still decodes. */
START_TEST(every_bit_flip_detected)
{
	static uint8_t m[400], enc[ENC_CAP], in[2 * ENC_CAP], buf[BUF_CAP];
	size_t len = flip_lens[_i], n, good_n, bit;
	uint8_t good[16] = "next frame ok";

	rng_state = 0xabcdef + (uint32_t)_i;
	fill(m, len, 3);
	n = frame_encode(m, len, enc, sizeof(enc));
	good_n = frame_encode(good, sizeof(good), in, sizeof(in));
	for (bit = 0; bit < 8 * n; bit++) {
		struct frame_decoder d;
		static struct sink s;
		size_t k = 0;

		memset(&s, 0, sizeof(s));
		in[k++] = 0; /* the sender's leading delimiter */
		memcpy(in + k, enc, n);
		in[k + bit / 8] ^= (uint8_t)(1u << (bit % 8));
		k += n;
		in[k++] = 0; /* the next sender's leading delimiter */
		k += frame_encode(good, sizeof(good), in + k, sizeof(in) - k);
		frame_decoder_init(&d, buf, sizeof(buf));
		feed_all(&d, in, k, 64, &s);
		ck_assert_msg(s.errs >= 1, "bit %zu of %zu: no error reported", bit, 8 * n);
		ck_assert_msg(s.msgs == 1, "bit %zu: %d messages", bit, s.msgs);
		ck_assert_mem_eq(s.msg[0], good, sizeof(good));
	}
	(void)good_n;
}
END_TEST

/* Random line noise, then a delimiter, then frames: every frame after the noise comes out. */
START_TEST(resync_after_garbage)
{
	static uint8_t in[8192], msgs[10][64], buf[BUF_CAP];
	size_t round;

	rng_state = 4242;
	for (round = 0; round < 200; round++) {
		struct frame_decoder d;
		static struct sink s;
		size_t k = 0, glen = rng() % 600, i;
		int zeros = (int)(round % 2);

		memset(&s, 0, sizeof(s));
		frame_decoder_init(&d, buf, round % 3 ? sizeof(buf) : 100);
		for (i = 0; i < glen; i++)
			in[k++] = zeros ? (uint8_t)rng() : (uint8_t)(rng() % 255 + 1);
		in[k++] = 0;
		for (i = 0; i < 10; i++) {
			size_t ml = 1 + rng() % 60;

			fill(msgs[i], ml, 3);
			msgs[i][0] = (uint8_t)i; /* distinct even when all else is zero */
			k += frame_encode(msgs[i], ml, in + k, sizeof(in) - k);
		}
		feed_all(&d, in, k, 1 + rng() % 97, &s);
		ck_assert_int_eq(s.msgs, 10);
		for (i = 0; i < 10; i++)
			ck_assert_uint_eq(s.msg[i][0], i);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("frame");
	TCase *tc = tcase_create("frame");

	tcase_add_loop_test(
	    tc, round_trip, 0, (int)(sizeof(round_trip_lens) / sizeof(round_trip_lens[0])));
	tcase_add_test(tc, encode_bounds);
	tcase_add_test(tc, decode_oversize);
	tcase_add_test(tc, decode_malformed);
	tcase_add_test(tc, one_frame_per_call);
	tcase_add_loop_test(
	    tc, every_bit_flip_detected, 0, (int)(sizeof(flip_lens) / sizeof(flip_lens[0])));
	tcase_add_test(tc, resync_after_garbage);
	suite_add_tcase(s, tc);
	return ck_main(s);
}
