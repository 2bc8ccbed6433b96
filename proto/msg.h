/* otagw protocol messages (docs/PROTOCOL.md): the limits, one struct per message, a bounded
 * decoder and encoders into caller buffers. Every multi-byte field is little-endian; strings are
 * a u8 length and that many bytes (no NUL). Decoded strings and digests point into the input
 * buffer, so a decoded message lives exactly as long as the bytes it came from. Portable C99. */
#ifndef OTAGW_MSG_H
#define OTAGW_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "attr.h"
#include "frame.h"
#include "ident.h"

/* The protocol version this code speaks (HELLO and OFFER carry it). */
#define PROTO_VERSION 1

/* DATA payload bounds. A device advertises at least PROTO_PAYLOAD_MIN; no DATA ever carries more
 * than PROTO_PAYLOAD_MAX, whatever a device advertises. */
#define PROTO_PAYLOAD_MIN 16
#define PROTO_PAYLOAD_MAX 4096
#define PROTO_SHA256_LEN  32

/* Largest message a packet link must carry besides DATA: the largest HELLO must fit one BLE
 * ATT notification/write of ATT_MTU 247 - 3 = 244 bytes. */
#define PROTO_PACKET_MIN 244

/* Free-text string bounds (printable ASCII, may be empty). */
#define MSG_DETAIL_MAX     64 /* RESULT detail */
#define MSG_REASON_MAX     64 /* NO_UPDATE reason */
#define MSG_ERROR_TEXT_MAX 96 /* ERROR message */

/* Message sizes. Fixed parts include the type byte; "_MAX" adds the longest strings. */
#define MSG_HELLO_FIXED  10 /* type, version, flags, caps, max_payload, window, max_stall_ms */
#define MSG_HELLO_RESUME 36 /* sha256 + u32 resume_offset, when flags has RESUME */
#define MSG_HELLO_MAX                                                               \
	(MSG_HELLO_FIXED + MSG_HELLO_RESUME + 4 + IDENT_SERIAL_MAX + IDENT_HW_MAX + \
	    IDENT_SWTYPE_MAX + IDENT_VERSION_MAX)
#define MSG_ACK_LEN         11
#define MSG_RESULT_FIXED    38
#define MSG_RESULT_MAX      (MSG_RESULT_FIXED + 1 + MSG_DETAIL_MAX)
#define MSG_OFFER_FIXED     41
#define MSG_OFFER_MAX       (MSG_OFFER_FIXED + 1 + IDENT_VERSION_MAX)
#define MSG_NO_UPDATE_FIXED 5
#define MSG_NO_UPDATE_MAX   (MSG_NO_UPDATE_FIXED + 1 + MSG_REASON_MAX)
#define MSG_ERROR_FIXED     6
#define MSG_ERROR_MAX       (MSG_ERROR_FIXED + 1 + MSG_ERROR_TEXT_MAX)
#define MSG_DATA_HEADER     5 /* type + u32 offset */
#define MSG_DATA_MAX        (MSG_DATA_HEADER + PROTO_PAYLOAD_MAX)
#define MSG_DONE_LEN        (1 + PROTO_SHA256_LEN)
#define MSG_SOLICIT_LEN     1
/* The largest message either side sends other than DATA. */
#define MSG_CONTROL_MAX MSG_HELLO_MAX

PROTO_STATIC_ASSERT(MSG_HELLO_MAX <= PROTO_PACKET_MIN, hello_fits_one_ble_packet);
PROTO_STATIC_ASSERT(MSG_HELLO_MAX == 242, hello_max_is_242);
PROTO_STATIC_ASSERT(MSG_OFFER_MAX <= MSG_CONTROL_MAX && MSG_RESULT_MAX <= MSG_CONTROL_MAX &&
			MSG_ERROR_MAX <= MSG_CONTROL_MAX && MSG_NO_UPDATE_MAX <= MSG_CONTROL_MAX,
    hello_is_the_largest_control_message);
PROTO_STATIC_ASSERT(MSG_DATA_MAX == FRAME_MSG_MAX, frame_carries_the_largest_data);
PROTO_STATIC_ASSERT(PROTO_PAYLOAD_MAX <= 65535 && PROTO_PAYLOAD_MIN >= 1, payload_fits_u16);

/* Message types: device to gateway 0x01.., gateway to device 0x81... */
enum msg_type {
	MSG_HELLO = 0x01,
	MSG_ACK = 0x02,
	MSG_RESULT = 0x03,
	MSG_OFFER = 0x81,
	MSG_NO_UPDATE = 0x82,
	MSG_ERROR = 0x83,
	MSG_DATA = 0x84,
	MSG_DONE = 0x85,
	MSG_SOLICIT = 0x86,
};

/* Flag and capability bits. Senders set undefined bits to 0; receivers ignore them. */
#define MSG_HELLO_F_RESUME 0x01   /* HELLO carries resume_sha256 and resume_offset */
#define MSG_CAP_DELTA      0x0001 /* HELLO caps: the device can apply delta images */
#define MSG_ACK_F_REWIND   0x01   /* ACK: restart sending at offset (once per epoch) */
#define MSG_OFFER_F_DELTA  0x01   /* OFFER: the image is a delta against current_version */
#define MSG_OFFER_F_FORCED 0x02   /* OFFER: the operator forced this version */

/* RESULT status. Receivers treat unknown values as a failure. */
enum msg_status {
	MSG_STATUS_OK = 0,            /* verified against the SHA-256, will install */
	MSG_STATUS_HASH_MISMATCH = 1, /* all bytes arrived but the SHA-256 read back differs */
	MSG_STATUS_FLASH_ERROR = 2,   /* erase, write or read-back failed */
	MSG_STATUS_NO_SPACE = 3,      /* the image does not fit the device's slot */
	MSG_STATUS_DECLINED = 4,      /* the application declined the offer */
	MSG_STATUS_ABORTED = 5,       /* the device gave up (e.g. its application cancelled) */
	MSG_STATUS_UNSUPPORTED = 6,   /* the offer asks for something the device cannot do */
};

/* ERROR codes. Receivers treat unknown values like INTERNAL and honour retry_after_s. */
enum msg_error_code {
	MSG_ERROR_BAD_MESSAGE = 1,          /* the gateway could not parse the device's message */
	MSG_ERROR_BAD_IDENTITY = 2,         /* serial, hardware, software type or version invalid */
	MSG_ERROR_UNSUPPORTED_VERSION = 3,  /* the gateway cannot speak the device's version */
	MSG_ERROR_UPSTREAM_UNAVAILABLE = 4, /* Memfault or the download could not be reached */
	MSG_ERROR_UPSTREAM_REJECTED = 5,  /* Memfault refused the request (key, project, device) */
	MSG_ERROR_BUSY = 6,               /* the gateway is at capacity; retry later */
	MSG_ERROR_BAD_OFFSET = 7,         /* an ACK named an offset the gateway never sent */
	MSG_ERROR_ABORTED = 8,            /* the gateway abandoned the transfer */
	MSG_ERROR_INTERNAL = 9,           /* a gateway fault (disk, memory) */
	MSG_ERROR_UNSUPPORTED_IMAGE = 10, /* the release cannot be sent to this device */
};

/* A string inside a message: len bytes at s, no NUL terminator. */
struct msg_str {
	const char *s;
	uint8_t len;
};

struct msg_hello {
	uint8_t proto_version;        /* highest version the device speaks, >= 1 */
	uint8_t flags;                /* MSG_HELLO_F_* */
	uint16_t caps;                /* MSG_CAP_* */
	uint16_t max_payload;         /* largest DATA payload accepted, >= PROTO_PAYLOAD_MIN */
	uint8_t window;               /* DATA frames it can take in flight, >= 1 */
	uint16_t max_stall_ms;        /* longest it may go silent while busy (flash erase) */
	const uint8_t *resume_sha256; /* with MSG_HELLO_F_RESUME: the partial image's digest */
	uint32_t resume_offset;       /* with MSG_HELLO_F_RESUME: bytes of it already stored */
	struct msg_str serial, hardware_version, software_type, current_version;
};

struct msg_ack {
	uint32_t offset; /* every byte below is stored: the next byte the device needs */
	uint32_t limit;  /* the gateway may send bytes below this; == offset means pause */
	uint8_t epoch;
	uint8_t flags; /* MSG_ACK_F_* */
};

struct msg_result {
	uint8_t status;        /* enum msg_status */
	const uint8_t *sha256; /* the offered image this result is about */
	uint32_t bytes_received;
	struct msg_str detail; /* 0..MSG_DETAIL_MAX printable bytes */
};

struct msg_offer {
	uint8_t proto_version; /* the version both now speak: <= the device's */
	uint8_t flags;         /* MSG_OFFER_F_* */
	uint32_t size;         /* image bytes, >= 1 */
	const uint8_t *sha256;
	uint16_t max_payload; /* PROTO_PAYLOAD_MIN..min(device's, PROTO_PAYLOAD_MAX) */
	struct msg_str target_version;
};

struct msg_no_update {
	uint32_t recheck_s;    /* ask again no sooner; 0 = the device's own schedule */
	struct msg_str reason; /* 0..MSG_REASON_MAX, Memfault's memfault-reason */
};

struct msg_error {
	uint8_t code; /* enum msg_error_code */
	uint32_t retry_after_s;
	struct msg_str message; /* 0..MSG_ERROR_TEXT_MAX */
};

struct msg_data {
	uint32_t offset;
	const uint8_t *payload;
	uint16_t len; /* 1..PROTO_PAYLOAD_MAX; offset + len <= 2^32 */
};

struct msg_done {
	const uint8_t *sha256;
};

/* A decoded message. SOLICIT has no body. */
struct msg {
	uint8_t type; /* enum msg_type */
	union {
		struct msg_hello hello;
		struct msg_ack ack;
		struct msg_result result;
		struct msg_offer offer;
		struct msg_no_update no_update;
		struct msg_error error;
		struct msg_data data;
		struct msg_done done;
	} u;
};

/* Why a message was rejected. Only MSG_ERR_UNKNOWN_TYPE is expected in normal operation (a newer
 * peer): receivers count and ignore it. Every other error is a malformed message. */
enum msg_err {
	MSG_OK = 0,
	MSG_ERR_EMPTY,         /* zero bytes */
	MSG_ERR_UNKNOWN_TYPE,  /* a type this version does not know, or not for this side */
	MSG_ERR_TRUNCATED,     /* shorter than its fixed fields, or a string runs past the end */
	MSG_ERR_VERSION,       /* proto_version 0 */
	MSG_ERR_PAYLOAD,       /* max_payload or DATA length out of bounds */
	MSG_ERR_WINDOW,        /* HELLO window 0 */
	MSG_ERR_OFFSET,        /* ACK limit below offset, or a DATA end (offset + len) past u32 */
	MSG_ERR_SIZE,          /* OFFER size 0 */
	MSG_ERR_SERIAL,        /* device_serial empty, too long or not [-a-zA-Z0-9_] */
	MSG_ERR_HARDWARE,      /* hardware_version empty, too long or not printable ASCII */
	MSG_ERR_SOFTWARE_TYPE, /* software_type empty, too long or not printable ASCII */
	MSG_ERR_SW_VERSION,    /* current_version or target_version bad likewise */
	MSG_ERR_TEXT,          /* a free-text string too long or not printable ASCII */
};

/* Decodes buf[0..len) into *m. Returns MSG_OK or why the message is invalid (*m is then
 * unspecified). Pointers in *m point into buf. Trailing bytes after a known body are ignored
 * (forward compatibility), except for DATA, whose payload runs to the end. */
PROTO_MUST_CHECK enum msg_err msg_decode(const uint8_t *buf, size_t len, struct msg *m);

/* Like msg_decode() but only for messages a device receives (types 0x81..) or only for those a
 * gateway receives (0x01..); other types give MSG_ERR_UNKNOWN_TYPE. With --gc-sections a device
 * links only the decoders it needs. */
PROTO_MUST_CHECK enum msg_err msg_decode_to_device(const uint8_t *buf, size_t len, struct msg *m);
PROTO_MUST_CHECK enum msg_err msg_decode_to_gateway(const uint8_t *buf, size_t len, struct msg *m);

/* A short English description of e, for logs ("device_serial is empty, too long or ..."). */
const char *msg_strerror(enum msg_err e);

/* Encoders: write one message into out (cap bytes) and return its length, or 0 if it does not fit
 * or a field is invalid (the same rules the decoder applies), so a peer never receives what it
 * must reject. Digests are PROTO_SHA256_LEN bytes. */
PROTO_MUST_CHECK size_t msg_encode_hello(const struct msg_hello *m, uint8_t *out, size_t cap);
PROTO_MUST_CHECK size_t msg_encode_ack(const struct msg_ack *m, uint8_t *out, size_t cap);
PROTO_MUST_CHECK size_t msg_encode_result(const struct msg_result *m, uint8_t *out, size_t cap);
PROTO_MUST_CHECK size_t msg_encode_offer(const struct msg_offer *m, uint8_t *out, size_t cap);
PROTO_MUST_CHECK size_t msg_encode_no_update(
    const struct msg_no_update *m, uint8_t *out, size_t cap);
PROTO_MUST_CHECK size_t msg_encode_error(const struct msg_error *m, uint8_t *out, size_t cap);
PROTO_MUST_CHECK size_t msg_encode_data(const struct msg_data *m, uint8_t *out, size_t cap);
PROTO_MUST_CHECK size_t msg_encode_done(const struct msg_done *m, uint8_t *out, size_t cap);
PROTO_MUST_CHECK size_t msg_encode_solicit(uint8_t *out, size_t cap);

/* Writes the 5-byte DATA header for offset into out, so a sender can read the payload straight
 * into out + MSG_DATA_HEADER (no copy). The caller then sends MSG_DATA_HEADER + len bytes, with
 * 1 <= len <= PROTO_PAYLOAD_MAX. */
void msg_encode_data_header(uint32_t offset, uint8_t out[MSG_DATA_HEADER]);

#endif
