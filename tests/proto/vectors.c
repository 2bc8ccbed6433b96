/* The test vector table (see vectors.h). Digests are SHA-256("") so they are recognisable. */
#include "vectors.h"

#include <string.h>

#define STR(x)                              \
	{                                   \
		x, (uint8_t)(sizeof(x) - 1) \
	}
#define NOSTR           \
	{               \
		NULL, 0 \
	}

static const uint8_t sha_empty[PROTO_SHA256_LEN] = {0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
    0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
    0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};

static const uint8_t payload_small[] = {0x00, 0x01, 0x02, 0x00, 0xff, 0x7f};
static const uint8_t raw_one[] = {0x11};
static const uint8_t raw_zeros[] = {0x00, 0x00, 0x00, 0x00};
static uint8_t raw_254[254]; /* 0x01..0xfe: one full COBS block, set up by vector_encode */

#define SERIAL64 "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"
#define TEXT32   "hw revision C (2024) / panel v2 "
#define TEXT32B  "main-application-firmware-image "
#define TEXT64   "1.4.2+build.20240611.abcdef0123456789 (release candidate 3) [xy]"

const struct vector vectors[] = {
    {"hello", "HELLO, no partial image: 1 KiB payloads, window 4, stalls up to 200 ms",
	{.type = MSG_HELLO,
	    .u.hello = {1, 0, 0, 1024, 4, 200, NULL, 0, STR("dev-0001"), STR("evt-2"), STR("main"),
		STR("1.4.2")}},
	NULL, 0},
    {"hello-resume", "HELLO with RESUME: 65536 bytes of image SHA-256(\"\") stored; caps DELTA",
	{.type = MSG_HELLO,
	    .u.hello = {1, MSG_HELLO_F_RESUME, MSG_CAP_DELTA, 239, 8, 500, sha_empty, 65536,
		STR("dev-0001"), STR("evt-2"), STR("main"), STR("1.4.2")}},
	NULL, 0},
    {"hello-max", "the largest HELLO (242 bytes): RESUME and every string at its maximum",
	{.type = MSG_HELLO,
	    .u.hello = {1, MSG_HELLO_F_RESUME, 0, 4096, 255, 65535, sha_empty, 0xfffffffe,
		STR(SERIAL64), STR(TEXT32), STR(TEXT32B), STR(TEXT64)}},
	NULL, 0},
    {"ack", "ACK: everything below 4096 stored, send below 8192, epoch 3",
	{.type = MSG_ACK, .u.ack = {4096, 8192, 3, 0}}, NULL, 0},
    {"ack-rewind", "ACK with REWIND in epoch 4: resend from 4096",
	{.type = MSG_ACK, .u.ack = {4096, 8192, 4, MSG_ACK_F_REWIND}}, NULL, 0},
    {"ack-pause", "ACK pausing the gateway (limit == offset) during a flash erase",
	{.type = MSG_ACK, .u.ack = {8192, 8192, 4, 0}}, NULL, 0},
    {"result-ok", "RESULT OK for image SHA-256(\"\") of 123456 bytes",
	{.type = MSG_RESULT, .u.result = {MSG_STATUS_OK, sha_empty, 123456, NOSTR}}, NULL, 0},
    {"result-mismatch", "RESULT HASH_MISMATCH with a detail",
	{.type = MSG_RESULT,
	    .u.result = {MSG_STATUS_HASH_MISMATCH, sha_empty, 123456, STR("sha256 mismatch")}},
	NULL, 0},
    {"result-declined", "RESULT DECLINED, right after an OFFER",
	{.type = MSG_RESULT, .u.result = {MSG_STATUS_DECLINED, sha_empty, 0, NOSTR}}, NULL, 0},
    {"offer", "OFFER of version 1.5.0, 123456 bytes, 1 KiB payloads",
	{.type = MSG_OFFER, .u.offer = {1, 0, 123456, sha_empty, 1024, STR("1.5.0")}}, NULL, 0},
    {"offer-delta", "OFFER of a forced delta image",
	{.type = MSG_OFFER,
	    .u.offer = {1, MSG_OFFER_F_DELTA | MSG_OFFER_F_FORCED, 4000, sha_empty, 239,
		STR("1.5.0-delta")}},
	NULL, 0},
    {"no-update", "NO_UPDATE, Memfault said \"latest\", ask again in an hour",
	{.type = MSG_NO_UPDATE, .u.no_update = {3600, STR("latest")}}, NULL, 0},
    {"no-update-empty", "NO_UPDATE with no reason, the device's own schedule",
	{.type = MSG_NO_UPDATE, .u.no_update = {0, NOSTR}}, NULL, 0},
    {"error", "ERROR UPSTREAM_UNAVAILABLE, retry after 300 s",
	{.type = MSG_ERROR,
	    .u.error = {MSG_ERROR_UPSTREAM_UNAVAILABLE, 300, STR("upstream unreachable")}},
	NULL, 0},
    {"data", "DATA at offset 1024 with 6 payload bytes (zeros inside)",
	{.type = MSG_DATA, .u.data = {1024, payload_small, (uint16_t)sizeof(payload_small)}}, NULL,
	0},
    {"done", "DONE for image SHA-256(\"\")", {.type = MSG_DONE, .u.done = {sha_empty}}, NULL, 0},
    {"solicit", "SOLICIT", {.type = MSG_SOLICIT}, NULL, 0},
    {"frame-one", "framing only: the one byte 11", {.type = 0}, raw_one, sizeof(raw_one)},
    {"frame-zeros", "framing only: four zero bytes", {.type = 0}, raw_zeros, sizeof(raw_zeros)},
    {"frame-254", "framing only: bytes 01..fe, one full COBS block before the CRC", {.type = 0},
	raw_254, sizeof(raw_254)},
};

const size_t vectors_count = sizeof(vectors) / sizeof(vectors[0]);

size_t
vector_encode_msg(const struct msg *m, uint8_t *out, size_t cap)
{
	switch (m->type) {
	case MSG_HELLO:
		return msg_encode_hello(&m->u.hello, out, cap);
	case MSG_ACK:
		return msg_encode_ack(&m->u.ack, out, cap);
	case MSG_RESULT:
		return msg_encode_result(&m->u.result, out, cap);
	case MSG_OFFER:
		return msg_encode_offer(&m->u.offer, out, cap);
	case MSG_NO_UPDATE:
		return msg_encode_no_update(&m->u.no_update, out, cap);
	case MSG_ERROR:
		return msg_encode_error(&m->u.error, out, cap);
	case MSG_DATA:
		return msg_encode_data(&m->u.data, out, cap);
	case MSG_DONE:
		return msg_encode_done(&m->u.done, out, cap);
	case MSG_SOLICIT:
		return msg_encode_solicit(out, cap);
	default:
		return 0;
	}
}

size_t
vector_encode(const struct vector *v, uint8_t *out, size_t cap)
{
	size_t i;

	for (i = 0; i < sizeof(raw_254); i++)
		raw_254[i] = (uint8_t)(i + 1);
	if (v->raw) {
		if (v->raw_len > cap)
			return 0;
		memcpy(out, v->raw, v->raw_len);
		return v->raw_len;
	}
	return vector_encode_msg(&v->m, out, cap);
}
