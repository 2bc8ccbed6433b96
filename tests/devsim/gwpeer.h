/* A minimal gateway for the devsim tests, built on proto/msg.h and proto/sender.h: it answers
 * HELLO with an OFFER of an image held in memory (or NO_UPDATE once the device reports the
 * target version: the install confirmation), runs the real sender on the device's ACKs, and
 * answers RESULT with DONE. One peer serves one device over one non-blocking fd (a pty slave or
 * a socket; stream framing, or one message per packet); gwpeer_run() drives several at once. No
 * daemon is involved, so a failure points at devsim or the device library. */
#ifndef OTAGW_TESTS_DEVSIM_GWPEER_H
#define OTAGW_TESTS_DEVSIM_GWPEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "msg.h"
#include "sender.h"

#define GWPEER_OUT_MAX (64 * 1024)

struct gwpeer_opts {
	const uint8_t *image;
	uint32_t size;
	const char *target_version;
	bool packet;        /* one message per packet (SOCK_SEQPACKET) instead of frames */
	unsigned int burst; /* on the first pause ACK, send this many duplicate DATA frames of
			     * burst_len bytes at once, more than the device's ring holds */
	uint16_t burst_len;
};

struct gwpeer {
	struct gwpeer_opts o;
	int fd;
	uint8_t sha[32];
	struct frame_decoder dec;
	uint8_t dec_buf[MSG_CONTROL_MAX + FRAME_CRC_LEN + 16];
	uint8_t out[GWPEER_OUT_MAX];
	size_t out_len;
	uint32_t last_tx_ms;
	bool sent_any;
	enum { GWPEER_IDLE, GWPEER_OFFERED, GWPEER_SENDING, GWPEER_WAIT_RESULT } state;
	struct sender snd;
	uint16_t payload;
	uint8_t window;
	uint16_t stall;
	/* what was seen */
	unsigned int hellos, hellos_resume, acks, pause_acks, rewind_acks, results, dones, bad_msgs,
	    no_updates;
	uint32_t last_resume_offset, first_request_offset;
	uint32_t first_pause_ms, result_ms;
	int result_status;
	uint64_t data_frames, data_bytes;
	bool confirmed; /* a HELLO reported target_version after DONE OK */
	bool burst_done;
	char serial[IDENT_SERIAL_MAX + 1];
	char last_version[IDENT_VERSION_MAX + 1];
	bool eof;
};

/* Starts serving on fd (taken over: made non-blocking, closed by gwpeer_close()). Sends a
 * SOLICIT, as a gateway does when it opens a link to a running device. */
void gwpeer_init(struct gwpeer *g, int fd, const struct gwpeer_opts *o);

/* Drives peers until done(arg) is true or timeout_ms passes. Returns done(arg). */
bool gwpeer_run(
    struct gwpeer **peers, size_t n, bool (*done)(void *arg), void *arg, int timeout_ms);

/* One non-blocking pass over a peer: reads, handles, sends. */
void gwpeer_step(struct gwpeer *g);

void gwpeer_close(struct gwpeer *g);

uint32_t gwpeer_now_ms(void);

#endif
