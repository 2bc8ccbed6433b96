/* Stream-link framing: COBS (Cheshire and Baker, 1999) around msg || CRC-32C, ended by 0x00.
 * COBS costs one byte per 254 and makes 0x00 a reliable frame boundary, so a receiver that joins
 * mid-stream or hits line noise loses at most the frame in progress. */
#include "frame.h"

#include "crc32c.h"

/* A COBS block holds at most 254 data bytes; code 0xFF marks a full block with no implied zero. */
#define FRAME_COBS_FULL 0xff

/* CRC-32C over a message followed by its own CRC (little-endian) always gives this residue, so
 * the decoder checks a frame in one pass without reassembling the stored CRC. */
#define FRAME_CRC_RESIDUE 0x48674bc7u

size_t
frame_encode(const uint8_t *msg, size_t len, uint8_t *out, size_t cap)
{
	uint8_t crc_le[FRAME_CRC_LEN];
	uint32_t crc;
	size_t total = len + FRAME_CRC_LEN;
	size_t code_pos = 0, o = 1, i;

	if (len == 0 || len > FRAME_MSG_MAX || cap < 2)
		return 0;
	crc = crc32c(0, msg, len);
	crc_le[0] = (uint8_t)crc;
	crc_le[1] = (uint8_t)(crc >> 8);
	crc_le[2] = (uint8_t)(crc >> 16);
	crc_le[3] = (uint8_t)(crc >> 24);

	/* out[code_pos] is reserved for the code byte of the block being filled; the code is the
	 * block's length including that byte, o - code_pos. */
	for (i = 0; i < total; i++) {
		uint8_t b = i < len ? msg[i] : crc_le[i - len];

		if (o - code_pos == FRAME_COBS_FULL) {
			/* Start the next block only when data follows: the minimal encoding. */
			out[code_pos] = FRAME_COBS_FULL;
			if (o >= cap)
				return 0;
			code_pos = o++;
		}
		if (b == 0) {
			out[code_pos] = (uint8_t)(o - code_pos);
			if (o >= cap)
				return 0;
			code_pos = o++;
		} else {
			if (o >= cap)
				return 0;
			out[o++] = b;
		}
	}
	out[code_pos] = (uint8_t)(o - code_pos);
	if (o >= cap)
		return 0;
	out[o++] = 0;
	return o;
}

void
frame_decoder_init(struct frame_decoder *d, uint8_t *buf, size_t cap)
{
	d->buf = buf;
	d->cap = buf ? cap : 0;
	d->len = 0;
	d->code = 0;
	d->left = 0;
	d->skipping = 0;
	d->bytes = 0;
}

/* Judges the frame that a delimiter just ended and returns the decoder to "between frames". */
static enum frame_result
frame_end(struct frame_decoder *d, const uint8_t **msg, size_t *msg_len)
{
	enum frame_result res = FRAME_ERR_OVERSIZE;

	if (d->skipping) {
		/* res is set */
	} else if (d->left != 0) {
		res = FRAME_ERR_COBS; /* the delimiter came inside a block */
	} else if (d->len < 1 + FRAME_CRC_LEN) {
		res = FRAME_ERR_SHORT;
	} else if (crc32c(0, d->buf, d->len) != FRAME_CRC_RESIDUE) {
		res = FRAME_ERR_CRC;
	} else {
		*msg = d->buf;
		*msg_len = d->len - FRAME_CRC_LEN;
		res = FRAME_MSG;
	}
	d->code = 0;
	d->left = 0;
	d->skipping = 0;
	return res;
}

enum frame_result
frame_decoder_feed(struct frame_decoder *d, const uint8_t *in, size_t n, size_t *consumed,
    const uint8_t **msg, size_t *msg_len)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint8_t b = in[i];

		/* Between frames (an oversize frame being skipped still has its code): a 0x00
		 * here is an empty frame, a sender's flush. */
		if (d->code == 0) {
			if (b == 0)
				continue;
			d->len = 0;
			d->bytes = 0;
		}
		if (b == 0) {
			*consumed = i + 1;
			return frame_end(d, msg, msg_len);
		}
		if (d->bytes != UINT32_MAX)
			d->bytes++;
		if (d->left == 0) {
			/* A code byte. The previous block, unless full, ended with an implied zero,
			 * which is real only now that another block follows. */
			int zero = d->code != 0 && d->code != FRAME_COBS_FULL;

			d->code = b;
			d->left = (uint8_t)(b - 1);
			if (!zero)
				continue;
			b = 0;
		} else {
			d->left--;
		}
		/* Stores one decoded byte; on overflow, discards up to the next delimiter. */
		if (d->skipping)
			continue;
		if (d->len >= d->cap)
			d->skipping = 1;
		else
			d->buf[d->len++] = b;
	}
	*consumed = n;
	return FRAME_NONE;
}

uint32_t
frame_decoder_error_bytes(const struct frame_decoder *d)
{
	return d->bytes;
}
