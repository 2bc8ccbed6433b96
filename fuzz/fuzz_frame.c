/* libFuzzer target: the stream deframer fed arbitrary bytes in arbitrary splits. Every message it
 * delivers must fit its buffer and survive frame_encode() and a second decode unchanged. */
#include <stdint.h>
#include <string.h>

#include "frame.h"

#define CAP (FRAME_MSG_MAX + FRAME_CRC_LEN)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_round_trip(const uint8_t *m, size_t n)
{
	static uint8_t enc[FRAME_ENCODED_MAX(FRAME_MSG_MAX)], buf[CAP];
	struct frame_decoder d;
	const uint8_t *m2;
	size_t k, used, n2;

	if (n > FRAME_MSG_MAX)
		__builtin_trap();
	k = frame_encode(m, n, enc, sizeof(enc));
	if (k == 0 || k > FRAME_ENCODED_MAX(n) || memchr(enc, 0, k - 1))
		__builtin_trap();
	frame_decoder_init(&d, buf, sizeof(buf));
	if (frame_decoder_feed(&d, enc, k, &used, &m2, &n2) != FRAME_MSG || used != k || n2 != n ||
	    memcmp(m, m2, n) != 0)
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[CAP];
	struct frame_decoder d;
	/* The first byte picks the split size and a small or a full buffer. */
	size_t chunk = size ? (size_t)(data[0] & 0x3f) + 1 : 1;
	size_t cap = size && (data[0] & 0x40) ? 64 : sizeof(buf);

	frame_decoder_init(&d, buf, cap);
	while (size > 0) {
		size_t take = size < chunk ? size : chunk;

		while (take > 0) {
			const uint8_t *m;
			size_t used, n;
			enum frame_result r = frame_decoder_feed(&d, data, take, &used, &m, &n);

			if (used > take || (r == FRAME_NONE && used != take))
				__builtin_trap();
			if (r == FRAME_MSG) {
				if (m != buf || n + FRAME_CRC_LEN > cap || n == 0)
					__builtin_trap();
				check_round_trip(m, n);
			}
			data += used;
			size -= used;
			take -= used;
		}
	}
	return 0;
}
