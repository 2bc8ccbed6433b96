/* libFuzzer target: the message decoder fed arbitrary bytes. A message that decodes must
 * re-encode to exactly the bytes it came from (those of its known body), and the direction
 * decoders must agree with the general one. */
#include <stdint.h>
#include <string.h>

#include "msg.h"
#include "vectors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[MSG_DATA_MAX + 64];
	struct msg m, m2;
	enum msg_err e = msg_decode(data, size, &m);
	size_t k;

	if (size > 0) {
		enum msg_err e2 = (data[0] & 0x80) ? msg_decode_to_device(data, size, &m2)
						   : msg_decode_to_gateway(data, size, &m2);

		if (e != e2)
			__builtin_trap();
	}
	if (e != MSG_OK)
		return 0;
	k = vector_encode_msg(&m, out, sizeof(out));
	if (k == 0 || k > size || memcmp(out, data, k) != 0)
		__builtin_trap();
	if (m.type == MSG_DATA && k != size)
		__builtin_trap();
	return 0;
}
