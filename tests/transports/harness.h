/* Shared pieces of the transport tests: an event recorder to plug in as a transport's callback,
 * pty pairs, and a raw peer that speaks the framing by hand. The loop runner, clock and
 * temporary directories are tests/support's (tloop.h, tclock.h, tdir.h). */
#ifndef OTAGW_TEST_HARNESS_H
#define OTAGW_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "tclock.h"
#include "tdir.h"
#include "tloop.h"
#include "transport.h"

struct event_base;

#define REC_MAX_MSGS   64
#define REC_MAX_EVENTS 256

/* Records what a transport reports. Messages beyond REC_MAX_MSGS are counted, not kept. */
struct rec {
	struct transport *t;
	unsigned int n[TRANSPORT_EV_DISCONNECTED + 1]; /* per event */
	enum transport_event events[REC_MAX_EVENTS];
	unsigned int n_events;
	int last_err;
	size_t last_bad_len;
	uint8_t *msgs[REC_MAX_MSGS];
	size_t lens[REC_MAX_MSGS];
	/* Free the transport (and clear t) when this event arrives, if set. */
	bool free_on[TRANSPORT_EV_DISCONNECTED + 1];
	/* Messages must carry a little-endian u32 sequence number starting at 0. */
	bool check_seq;
	uint32_t next_seq;
	bool seq_error;
};

void rec_init(struct rec *r, struct transport *t);
void rec_cb(struct transport *t, enum transport_event ev, const uint8_t *msg, size_t len, int err,
    void *arg);
void rec_clear(struct rec *r);
unsigned int rec_count(const struct rec *r, enum transport_event ev);

/* Waits until r has seen at least n of ev. */
bool wait_event(struct event_base *base, struct rec *r, enum transport_event ev, unsigned int n,
    unsigned int timeout_ms);

/* Opens a pty master (non-blocking) and returns the slave's path in name. Returns the fd. */
int pty_open(char *name, size_t n);

/* A raw endpoint: writes bytes, reads and decodes frames. */
struct peer {
	int fd;
	struct frame_decoder dec;
	uint8_t buf[FRAME_MSG_MAX + FRAME_CRC_LEN];
	unsigned int msgs, bad;
	uint64_t bytes;
	int first_byte; /* -1 until one arrived */
	uint8_t *kept[REC_MAX_MSGS];
	size_t kept_len[REC_MAX_MSGS];
	bool check_seq;
	uint32_t next_seq;
	bool seq_error;
	bool eof;
};

void peer_init(struct peer *p, int fd);
void peer_clear(struct peer *p);
/* Reads what is there (non-blocking fd) and decodes it. */
void peer_poll(struct peer *p);
/* Writes all of buf (retrying on EAGAIN briefly). */
void peer_write(struct peer *p, const void *buf, size_t n);
/* Encodes msg as one frame into out; returns its length. */
size_t frame_of(const uint8_t *msg, size_t len, uint8_t *out, size_t cap);
/* Writes msg as one frame. */
void peer_send(struct peer *p, const uint8_t *msg, size_t len);

/* Condition helpers for tloop_until(). */
struct peer_wait {
	struct peer *p;
	unsigned int msgs;
};
bool peer_has_msgs(void *arg);

/* Points link at target, replacing link atomically. */
void symlink_replace(const char *target, const char *link);

#endif
