/* Stream-link framing (UART, pty, TCP): a frame is COBS(msg || CRC-32C(msg), little-endian)
 * followed by one 0x00 delimiter. The decoder takes bytes as they come, in any split, and
 * resynchronises at the next 0x00 after garbage or a bad frame. Packet links (BLE) do not use
 * this: they carry one message per packet. Portable C99, no malloc, no OS calls. */
#ifndef OTAGW_FRAME_H
#define OTAGW_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_CRC_LEN 4
/* Largest message a frame may carry: a DATA message (5-byte header) with the largest payload
 * the protocol allows (PROTO_PAYLOAD_MAX = 4096, see msg.h). */
#define FRAME_MSG_MAX (5 + 4096)
/* Bytes frame_encode() needs for a message of n bytes, worst case: one COBS code byte per 254
 * bytes plus one, the CRC, and the delimiter. */
#define FRAME_ENCODED_MAX(n) ((n) + FRAME_CRC_LEN + ((n) + FRAME_CRC_LEN) / 254 + 2)

/* Encodes msg[0..len) as one frame into out (cap bytes). Returns the frame length, or 0 if
 * len is 0 or above FRAME_MSG_MAX, or cap is too small. */
size_t frame_encode(const uint8_t *msg, size_t len, uint8_t *out, size_t cap);

enum frame_result {
	FRAME_NONE,         /* input used up, no frame completed yet */
	FRAME_MSG,          /* a valid message: *msg and *msg_len set */
	FRAME_ERR_CRC,      /* a frame ended but its CRC did not match: dropped */
	FRAME_ERR_COBS,     /* a frame ended but was not valid COBS: dropped */
	FRAME_ERR_OVERSIZE, /* a frame outgrew the buffer: dropped up to the next 0x00 */
	FRAME_ERR_SHORT,    /* a frame ended shorter than 1 byte + CRC: dropped */
};

/* Caller-owned decoder state. buf (cap bytes) holds one decoded frame; size it for the largest
 * message expected plus FRAME_CRC_LEN. Fields are private. */
struct frame_decoder {
	uint8_t *buf;
	size_t cap;
	size_t len;
	uint8_t code;     /* current COBS code byte, 0 at the start of a frame */
	uint8_t left;     /* data bytes left in the current COBS block */
	uint8_t skipping; /* discarding an oversize frame up to the next delimiter */
	uint32_t bytes;   /* raw bytes of the frame in progress (error reports) */
};

/* Prepares d to decode into buf[0..cap). */
void frame_decoder_init(struct frame_decoder *d, uint8_t *buf, size_t cap);

/* Consumes in[0..n) up to and including the end of the next frame. Sets *consumed to the bytes
 * used; call again with the rest. On FRAME_MSG, *msg and *msg_len (CRC removed) point into the
 * decoder's buffer and stay valid until the next call. Empty frames (0x00 0x00) are skipped
 * silently: senders may emit a leading delimiter to flush line noise. */
enum frame_result frame_decoder_feed(struct frame_decoder *d, const uint8_t *in, size_t n,
    size_t *consumed, const uint8_t **msg, size_t *msg_len);

/* Raw byte count of the frame that frame_decoder_feed() just reported as an error. */
uint32_t frame_decoder_error_bytes(const struct frame_decoder *d);

#endif
