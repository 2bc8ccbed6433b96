/* The gateway-side transfer engine for one image to one device (docs/PROTOCOL.md, "Gateway
 * sender"). It owns no I/O and no clock: the caller feeds it the device's ACKs and the time, and
 * it answers what DATA to send next and when to wake it. It keeps in flight only what the link
 * needs (a delay-based window: bandwidth x RTT plus about one frame), goes back to the device's
 * offset on a REWIND or a retransmission timeout, and picks the DATA payload size that maximises
 * expected goodput for the bit error rate it observes. Portable C99, no malloc; times are u32
 * milliseconds from any monotonic clock and may wrap. */
#ifndef OTAGW_SENDER_H
#define OTAGW_SENDER_H

#include <stdint.h>

#include "attr.h"
#include "msg.h"

/* Defaults (docs/PROTOCOL.md, "Timeouts"). */
#define SENDER_RTO_INITIAL_MS 1000  /* before the first RTT sample */
#define SENDER_RTO_MIN_MS     100   /* only tail losses wait for it: gaps are reported at once */
#define SENDER_RTO_MAX_MS     30000 /* cap of the exponential backoff */
#define SENDER_MAX_TIMEOUTS   8     /* consecutive RTOs without progress before giving up */
#define SENDER_PAYLOAD_FLOOR  64    /* the smallest payload the adaptation chooses */
#define SENDER_WINDOW_MAX     255   /* a HELLO window is a u8 */

/* How DATA messages travel; it sets the per-frame overhead the payload choice weighs. */
enum sender_link {
	SENDER_LINK_STREAM, /* COBS + CRC-32C frames (UART, pty, TCP) */
	SENDER_LINK_PACKET, /* one message per packet (BLE) */
};

struct sender_config {
	uint32_t size;         /* image bytes, >= 1 */
	uint16_t max_payload;  /* the OFFER's max_payload: PROTO_PAYLOAD_MIN..PROTO_PAYLOAD_MAX */
	uint8_t window;        /* the HELLO's window, >= 1 */
	uint16_t max_stall_ms; /* the HELLO's max_stall_ms */
	enum sender_link link;
	uint8_t max_timeouts; /* 0: SENDER_MAX_TIMEOUTS */
};

/* What sender_poll() asks for. */
enum sender_action {
	SENDER_SEND,     /* send DATA(offset, len) now, then call sender_sent() */
	SENDER_WAIT,     /* nothing to send: wait for an ACK, or until wake_ms if has_wake */
	SENDER_COMPLETE, /* the device has every byte; wait for its RESULT */
	SENDER_FAILED,   /* too many timeouts without progress: the device is gone */
};

struct sender_next {
	uint32_t offset; /* SENDER_SEND: DATA offset */
	uint16_t len;    /* SENDER_SEND: DATA payload length */
	uint8_t has_wake;
	uint32_t wake_ms; /* SENDER_WAIT with has_wake: call sender_poll() again at this time */
};

/* What sender_ack() made of an ACK. */
enum sender_ack_result {
	SENDER_ACK_OK,    /* taken into account */
	SENDER_ACK_STALE, /* older than what the sender knows (or a repeated REWIND): ignored */
	SENDER_ACK_BAD,   /* offset beyond the image or beyond any byte sent: a protocol error.
			   * The session answers ERROR BAD_OFFSET and ends the transfer. */
};

struct sender_stats {
	uint32_t size, acked;  /* image size; bytes the device has confirmed */
	uint64_t bytes_sent;   /* DATA payload bytes handed to the link, resends included */
	uint64_t bytes_resent; /* of which bytes sent before */
	uint32_t frames_sent;
	uint32_t rewinds;  /* REWINDs acted on */
	uint32_t timeouts; /* retransmission timeouts */
	uint16_t payload;  /* DATA payload size in use */
	uint32_t cwnd;     /* payload bytes allowed in flight */
	uint32_t srtt_ms, rto_ms, min_rtt_ms;
	uint32_t ber_ppb; /* estimated bit error rate, parts per 10^9 */
};

/* One frame in flight, for RTT samples (never from a resent frame: Karn's rule). */
struct sender_frame {
	uint32_t end;
	uint32_t sent_ms;
	uint8_t resent;
};

/* Caller-owned state (about 3 KiB). Fields are private. */
struct sender {
	uint32_t size, acked, next, limit, high;
	uint16_t max_payload, min_payload, payload;
	uint16_t max_stall_ms;
	uint8_t window, max_timeouts, link;
	uint8_t started, have_epoch, epoch, failed;
	uint8_t timeouts, backoff;
	uint32_t timer_ms; /* when the retransmission timer (re)started */
	/* in-flight frames, oldest first, in a ring */
	struct sender_frame fl[SENDER_WINDOW_MAX];
	uint16_t fl_head, fl_count;
	/* the proposal sender_sent() commits */
	uint8_t prop_valid;
	uint32_t prop_offset;
	uint16_t prop_len;
	/* RTT (RFC 6298, ms) and the delay-based window */
	uint8_t have_rtt;
	uint32_t srtt_x8, rttvar_x4, rto_ms, base_rtt_ms, round_end, round_min_ms;
	uint32_t cwnd;
	/* error-rate estimate for the payload choice */
	double bits, errors;
	uint32_t frames_since_tune;
	struct sender_stats st;
};

/* Starts a transfer of cfg->size bytes. The first ACK (the device's request after the OFFER)
 * sets the starting offset. Returns 0, or -1 if cfg is out of bounds (s is then unusable). */
PROTO_MUST_CHECK int sender_init(
    struct sender *s, const struct sender_config *cfg, uint32_t now_ms);

/* Feeds one ACK from the device (any ACK: requests, progress, pauses, rewinds, keepalives). */
PROTO_MUST_CHECK enum sender_ack_result sender_ack(
    struct sender *s, const struct msg_ack *ack, uint32_t now_ms);

/* Says what to do now; handles an expired retransmission timer first. Call it after every ACK,
 * after every sender_sent(), and when a wake time passes. On SENDER_SEND the caller sends
 * DATA(next->offset, next->len) and calls sender_sent(); if it cannot send yet (the link is
 * congested) it simply polls again later. */
PROTO_MUST_CHECK enum sender_action sender_poll(
    struct sender *s, uint32_t now_ms, struct sender_next *next);

/* Records that the DATA proposed by the last sender_poll() went to the link at now_ms. */
void sender_sent(struct sender *s, uint32_t now_ms);

/* Copies the counters and current estimates into *st. */
void sender_stats(const struct sender *s, struct sender_stats *st);

/* Bytes a DATA message with a payload of len occupies on a link, worst case: for stream links
 * the COBS frame with its delimiter. */
uint32_t sender_wire_bytes(enum sender_link link, uint32_t len);

#endif
