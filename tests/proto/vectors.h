/* The protocol's test vectors: one table that docs/PROTOCOL.md's "Test vectors" section is
 * generated from (test_vectors --print), that test_vectors checks the spec against, and that
 * seeds the fuzzers' corpora. */
#ifndef OTAGW_TEST_VECTORS_H
#define OTAGW_TEST_VECTORS_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

struct vector {
	const char *name;
	const char *what; /* one line for the spec */
	/* Either a message (encoded with the msg_encode_* matching m.type) ... */
	struct msg m;
	/* ... or raw bytes to frame (framing vectors; m.type is 0). */
	const uint8_t *raw;
	size_t raw_len;
};

extern const struct vector vectors[];
extern const size_t vectors_count;

/* Encodes v's message (or copies its raw bytes) into out; returns the length or 0. */
size_t vector_encode(const struct vector *v, uint8_t *out, size_t cap);

/* Encodes any decoded message with the encoder for its type; 0 if the type has none. */
size_t vector_encode_msg(const struct msg *m, uint8_t *out, size_t cap);

#endif
