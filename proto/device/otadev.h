/* otadev: the MCU side of the otagw update protocol (docs/PROTOCOL.md). It announces the device,
 * receives an offered image into flash through the port's callbacks, resumes after a dropped link
 * or a reboot, verifies the SHA-256 read back from flash, and reports the result. Portable C99:
 * no malloc, no OS calls, no stdio, no globals; every context is caller-owned.
 *
 * Porting (docs/porting.md has a complete UART super-loop example):
 *  1. Fill an otadev_config_t (it may live in flash as const): identity strings, rx/tx buffers,
 *     link limits, and callbacks. Every callback gets cfg->user as its first argument.
 *  2. otadev_init() once (or otadev_init_packet() on a packet link, which links no framing),
 *     then otadev_check() whenever the application wants to look for an update (at boot, on a
 *     button, on a schedule; it re-checks by itself when cfg->check_s > 0).
 *  3. Feed received bytes with otadev_feed() (stream links: UART, TCP) or each received packet
 *     with otadev_packet() (BLE), and call otadev_poll() at least every otadev_poll()'s return
 *     value in ms. All calls for one context come from one thread (or one super-loop).
 *  4. Act on events: accept or refuse an OFFER; on DONE with status OK, mark the image for
 *     installation and reboot. After the reboot the next HELLO reports the new version; that is
 *     how the gateway learns the install succeeded.
 * Callbacks run inside otadev_feed()/otadev_packet()/otadev_poll()/otadev_check(); they must not
 * call back into the same context. flash_erase and flash_write may block (that is what
 * max_stall_ms announces); tx should queue and return quickly. */
#ifndef OTAGW_OTADEV_H
#define OTAGW_OTADEV_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "msg.h"
#include "otadev_sha256.h"

/* Defaults applied when a config field is 0 (docs/PROTOCOL.md, "Timeouts"). */
#define OTADEV_HELLO_RETRY_MS     1000u  /* first HELLO retry; doubles */
#define OTADEV_HELLO_RETRY_MAX_MS 60000u /* backoff cap */
#define OTADEV_ACK_TIMEOUT_MS     1000u  /* no DATA for this long: re-send the last ACK */
#define OTADEV_RETRIES            10u    /* re-sends before giving up (ACK, RESULT) */
#define OTADEV_VERIFY_STEP        4096u  /* bytes hashed per otadev_poll() */
#define OTADEV_PERSIST_INTERVAL   16384u /* bytes between resume-state saves */

/* Buffer sizes for stream links (packet links need neither): rx_cap holds one decoded frame (the
 * largest DATA or OFFER plus the CRC), tx_cap a leading delimiter and the largest frame the
 * device sends. */
#define OTADEV_RX_CAP(max_payload)                                                          \
	((MSG_DATA_HEADER + (max_payload) > MSG_OFFER_MAX ? MSG_DATA_HEADER + (max_payload) \
							  : MSG_OFFER_MAX) +                \
	    FRAME_CRC_LEN)
#define OTADEV_TX_CAP (1 + FRAME_ENCODED_MAX(MSG_CONTROL_MAX))

/* Return codes: 0 or one of these (negative). */
enum {
	OTADEV_ERR_CONFIG = -1,   /* a required callback or buffer is missing or too small */
	OTADEV_ERR_IDENTITY = -2, /* an identity string is empty, too long or has bad characters */
	OTADEV_ERR_STATE = -3,    /* not allowed now (e.g. otadev_rewind() while not receiving) */
};

/* The resume state the port persists (otadev_config_t.persist_save/load). */
typedef struct otadev_resume {
	uint8_t sha256[PROTO_SHA256_LEN]; /* the image being received */
	uint32_t size;                    /* its size */
	uint32_t offset;                  /* bytes durably written, from 0 */
} otadev_resume_t;

typedef enum otadev_event_type {
	OTADEV_EV_OFFER,     /* an image is offered: return 0 to accept or a refusal status */
	OTADEV_EV_NO_UPDATE, /* up to date: no_update is set */
	OTADEV_EV_ERROR,     /* the gateway refused: error is set (retry_after_s honoured) */
	OTADEV_EV_PROGRESS,  /* offset/size: bytes stored so far (at start and every persist) */
	OTADEV_EV_RESULT,    /* the image was verified (status OK) or failed: status set */
	OTADEV_EV_DONE,      /* the gateway recorded the RESULT: on OK, install and reboot now */
	OTADEV_EV_ABORTED,   /* the gateway went silent: ABORTED while receiving (HELLO follows),
			      * else the status of the RESULT that never got its DONE */
} otadev_event_type_t;

/* An event for the application. The message pointers point into the receive buffer and are
 * valid only during the callback. */
typedef struct otadev_event {
	otadev_event_type_t type;
	uint8_t status;                        /* RESULT, DONE, ABORTED: enum msg_status */
	uint32_t offset, size;                 /* bytes stored, image size */
	const struct msg_offer *offer;         /* OFFER */
	const struct msg_no_update *no_update; /* NO_UPDATE */
	const struct msg_error *error;         /* ERROR */
} otadev_event_t;

typedef struct otadev_config {
	/* Identity (NUL-terminated; see proto/ident.h for the rules). Build the config at run time
	 * to use a serial read from OTP or a version from the image header. */
	const char *serial, *hardware_version, *software_type, *current_version;

	/* What the device accepts (HELLO fields). max_payload must fit rx_cap (stream) or the
	 * link MTU minus MSG_DATA_HEADER (packet). window: DATA frames the receive path can buffer
	 * while flash_write/flash_erase block. max_stall_ms: the longest flash_erase. */
	uint16_t max_payload;
	uint8_t window;
	uint16_t max_stall_ms;
	uint16_t caps; /* MSG_CAP_*; leave 0 unless the port applies delta images */

	/* Buffers owned by the caller for the context's life. rx: stream links only. */
	uint8_t *rx_buf;
	size_t rx_cap; /* >= OTADEV_RX_CAP(max_payload) */
	uint8_t *tx_buf;
	size_t tx_cap; /* >= OTADEV_TX_CAP */

	/* Exactly one of tx (stream: raw bytes to send) and tx_packet (packet: one message). Return
	 * 0 when queued; a failure is treated as a lost message (the protocol retries). */
	int (*tx)(void *user, const uint8_t *bytes, size_t n);
	int (*tx_packet)(void *user, const uint8_t *msg, size_t n);

	/* Flash, addressed from 0 = the first byte of the image slot. flash_erase (optional: NULL
	 * when the medium needs none) erases the sector of sector_size bytes that starts at
	 * offset. flash_write returns 0 once the bytes are durably stored. flash_read reads back
	 * for verification. Each returns 0 or a negative value on failure. */
	int (*flash_erase)(void *user, uint32_t offset);
	uint32_t sector_size;
	int (*flash_write)(void *user, uint32_t offset, const uint8_t *data, size_t n);
	int (*flash_read)(void *user, uint32_t offset, uint8_t *data, size_t n);
	uint32_t slot_size; /* image slot bytes: larger offers are refused with NO_SPACE */

	/* Resume state (optional, both or neither). load returns 0 and fills *st if a state is
	 * stored. save must be atomic (a reboot mid-save keeps the old or the new state). */
	int (*persist_save)(void *user, const otadev_resume_t *st);
	int (*persist_load)(void *user, otadev_resume_t *st);

	/* Events. For OTADEV_EV_OFFER the return value decides: 0 accepts, an enum msg_status
	 * (MSG_STATUS_DECLINED, NO_SPACE, UNSUPPORTED...) refuses. Ignored for other events. */
	int (*event)(void *user, const otadev_event_t *ev);

	void *user;

	/* Tuning; 0 selects the OTADEV_* default. check_s 0: check only when asked. */
	uint32_t persist_interval;
	uint16_t ack_timeout_ms;
	uint8_t retries;
	uint16_t verify_step;
	uint32_t check_s;
} otadev_config_t;

/* The context. Private: use the functions. Small fields come first: Thumb loads reach only
 * 31 bytes (u8) or 62 bytes (u16) into a struct, so this order keeps the code small. */
typedef struct otadev {
	const otadev_config_t *cfg;
	uint8_t state, epoch, ack_flags, retries, retry_max, has_deadline, status;
	uint16_t payload; /* negotiated max_payload */
	uint16_t ack_ms, verify_step;
	uint32_t now;       /* now_ms of the call being served */
	uint32_t granted;   /* the highest limit advertised in this transfer */
	uint32_t seen;      /* end of the latest out-of-order DATA since the last REWIND */
	uint32_t erased;    /* a sector boundary: writing at or past it needs an erase first */
	uint32_t persisted; /* the offset last saved */
	uint32_t persist_every;
	uint32_t deadline; /* when poll has work (timers) */
	uint32_t backoff;  /* current HELLO retry interval */
	uint32_t pos;      /* verify pass: bytes hashed */
	uint32_t size;     /* the image (0: none) */
	uint32_t offset;   /* bytes of it stored */
	uint8_t sha256[PROTO_SHA256_LEN];
	/* Frames (stream) or hands over (packet) one message: set by the init function, so a
	 * port that calls otadev_init_packet() links no framing code. */
	void (*send)(const struct otadev *dev, const uint8_t *msg, size_t n);
	struct frame_decoder dec;
	otadev_sha256_t hash;
} otadev_t;

/* Checks cfg and prepares dev (cfg must outlive dev). Loads the resume state, if any. Returns 0,
 * OTADEV_ERR_CONFIG or OTADEV_ERR_IDENTITY. Sends nothing. */
PROTO_MUST_CHECK int otadev_init(otadev_t *dev, const otadev_config_t *cfg);

/* otadev_init() for packet links only: the same, but a cfg with tx set (or tx_packet NULL) gives
 * OTADEV_ERR_CONFIG. It does not reference the stream framing, so a BLE port that calls it instead
 * of otadev_init() links no COBS or CRC-32C code (with --gc-sections, about 280 bytes less). */
PROTO_MUST_CHECK int otadev_init_packet(otadev_t *dev, const otadev_config_t *cfg);

/* Starts a check now: sends HELLO (with the resume state) and retries with backoff until the
 * gateway answers. Abandons an exchange in progress (the stored bytes are kept). */
void otadev_check(otadev_t *dev, uint32_t now_ms);

/* Stream links: processes received bytes (any split). */
void otadev_feed(otadev_t *dev, const uint8_t *bytes, size_t n, uint32_t now_ms);

/* Packet links: processes one received message. */
void otadev_packet(otadev_t *dev, const uint8_t *msg, size_t n, uint32_t now_ms);

/* Runs timers and the incremental verify pass. Returns the ms until it next needs a call
 * (0: call again soon, it is verifying; UINT32_MAX: nothing pending). */
uint32_t otadev_poll(otadev_t *dev, uint32_t now_ms);

/* Asks the gateway to resend from offset (rounded down to a flash sector, which is erased again),
 * e.g. after the port found bad flash. Returns 0, or OTADEV_ERR_STATE when no transfer is in
 * progress, offset is beyond the bytes stored, or (rounded) it equals them. */
PROTO_MUST_CHECK int otadev_rewind(otadev_t *dev, uint32_t offset, uint32_t now_ms);

/* Stops everything (no more messages) until the next otadev_check(); the stored bytes and the
 * resume state stay. */
void otadev_stop(otadev_t *dev);

#endif
