/* A raw device for tests: a unix-socket connection to a gateway on which the test writes the
 * stream framing and the messages by hand, for what no honest device sends (bad identities,
 * damaged frames, offsets past the image, lies about verification) and to see exactly what the
 * gateway answers. It remembers how many messages of each type came and the last of each. */
#ifndef OTAGW_TESTS_TPEER_H
#define OTAGW_TESTS_TPEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "msg.h"

struct tpeer {
	int fd;
	struct frame_decoder dec;
	uint8_t buf[FRAME_MSG_MAX + FRAME_CRC_LEN];
	unsigned counts[256]; /* messages received, per type */
	uint8_t *last[256];   /* the last message of each type (malloc'd), or NULL */
	size_t last_len[256];
	bool eof; /* the gateway closed the connection */
};

/* Connects to the gateway's unix socket at path (non-blocking from then on). Fails the test if
 * it cannot. */
void tpeer_open(struct tpeer *p, const char *path);

/* Closes the connection and frees what was kept. Accepts a zeroed p. */
void tpeer_close(struct tpeer *p);

/* Writes all of data as it is (no framing), waiting for room while the gateway reads. */
void tpeer_write(struct tpeer *p, const void *data, size_t len);

/* Sends msg as one frame, after a delimiter (as a device does when it starts talking). */
void tpeer_send(struct tpeer *p, const uint8_t *msg, size_t len);

/* A HELLO of protocol version 1 with a window of 2 and no resume point. */
void tpeer_hello(struct tpeer *p, const char *serial, const char *hw, const char *sw,
    const char *version, uint16_t max_payload);

/* An ACK of offset and limit (epoch 0, no flags). */
void tpeer_ack(struct tpeer *p, uint32_t offset, uint32_t limit);

/* Reads and decodes what has arrived, without waiting. */
void tpeer_poll(struct tpeer *p);

/* A condition for tloop_until() (a gateway in the test's own loop): polls, then true once
 * count messages of type have come. */
struct tpeer_wait {
	struct tpeer *p;
	uint8_t type;
	unsigned count;
};
bool tpeer_has(void *arg);

/* Waits (poll(2): a gateway in another process) until count messages of type have come;
 * false if the connection closes or timeout_ms passes first. */
bool tpeer_wait(struct tpeer *p, uint8_t type, unsigned count, unsigned timeout_ms);

/* Decodes the last message of type into m; fails the test if there is none or it does not
 * decode. */
void tpeer_last(const struct tpeer *p, uint8_t type, struct msg *m);

#endif
