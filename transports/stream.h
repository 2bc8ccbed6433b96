/* What the byte-stream links (UART, TCP, unix sockets) share: a non-blocking fd on the caller's
 * event_base, the proto/ framer and deframer (COBS + CRC-32C, frame.h), and a bounded user-space
 * output queue with high and low water marks. uart.c and tcp.c embed a struct stream, find and
 * open the fd, and decide what happens after the link goes down. */
#ifndef OTAGW_STREAM_H
#define OTAGW_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "transport_impl.h"

struct event;
struct event_base;
struct stream;

/* Limits of one stream link. Zero fields take the defaults. */
struct stream_options {
	/* Largest message accepted either way (the transport's MTU), 1..FRAME_MSG_MAX; default
	 * FRAME_MSG_MAX. A received frame that decodes to more is dropped as BAD_FRAME. */
	size_t max_msg;
	/* transport_send() returns -EAGAIN while at least this many bytes are queued in user space;
	 * default two whole frames of max_msg, at least 4096. */
	size_t high_water;
	/* TRANSPORT_EV_WRITABLE fires when the queue falls below this after an -EAGAIN; default
	 * high_water / 2. Must be at most high_water. */
	size_t low_water;
};

/* Checks options and fills in the defaults. Returns 0 or -EINVAL. */
int stream_options_resolve(const struct stream_options *in, struct stream_options *out);

/* What the embedding kind does at the edges of a link's life. */
struct stream_hooks {
	/* Just before the fd is closed (any reason): undo what opening took (e.g. TIOCNXCL). May be
	 * NULL. */
	void (*closing)(struct stream *s, int fd);
	/* The link went down by itself (EOF, I/O error) and DISCONNECTED was reported; the owner
	 * did not free the transport. Decide what next (reopen later, or stay down). May be NULL.
	 */
	void (*lost)(struct stream *s, int err);
};

struct stream {
	struct transport t;
	struct event_base *base;
	const struct stream_hooks *hooks;
	int fd;
	bool is_socket; /* send(MSG_NOSIGNAL) instead of write(), and EOF is an orderly close */
	struct event *ev_read;
	struct event *ev_write;
	struct event *ev_announce; /* reports CONNECTED from the loop, after the owner set up */
	bool write_armed;
	bool announce_pending;
	struct stream_options opt;
	struct frame_decoder dec;
	uint8_t *dec_buf; /* max_msg + FRAME_CRC_LEN */
	uint8_t *out;     /* the queue: out[out_off .. out_off + out_len) */
	size_t out_cap, out_off, out_len;
	bool want_writable;     /* send() said -EAGAIN: report WRITABLE below low water */
	bool lead;              /* start the next frame with a 0x00 (after connect or idle) */
	uint64_t idle_since_ns; /* CLOCK_MONOTONIC when the queue last ran empty */
};

/* Prepares s (embedded in the kind's struct) with the link down: allocates the decoder and
 * output buffers for the options. name is printf-formatted. Returns 0, -EINVAL (options) or
 * -ENOMEM; on failure nothing is left to clean up. */
int stream_init(struct stream *s, struct event_base *base, const struct transport_ops *ops,
    enum transport_kind kind, const struct stream_hooks *hooks, const struct stream_options *opt,
    const char *fmt, ...) __attribute__((format(printf, 7, 8)));

/* Brings the link up on fd (non-blocking, close-on-exec), which s now owns whatever the result:
 * starts reading, starts the next frame with a 0x00, and reports CONNECTED from the loop (so the
 * owner who sets its callback right after creating the transport gets it). Returns 0 or
 * -ENOMEM (fd closed, link still down). */
int stream_attach(struct stream *s, int fd, bool is_socket);

/* Takes the link down without reporting: calls hooks->closing, closes the fd, discards queued
 * output and any partial input frame. No-op while down. */
void stream_close(struct stream *s);

/* Takes the link down after an error (0 = orderly EOF) and tells the owner: DISCONNECTED, then
 * hooks->lost if the owner kept the transport. Returns false if the owner freed it. */
bool stream_fail(struct stream *s, int err);

/* stream_close() and frees what stream_init() allocated. For the kind's ops->free. */
void stream_cleanup(struct stream *s);

/* The transport_ops members every stream kind uses as they are. */
int stream_send(struct transport *t, const uint8_t *msg, size_t len);
size_t stream_mtu(const struct transport *t);
size_t stream_queued(const struct transport *t);

/* CLOCK_MONOTONIC in nanoseconds (backoffs and idle detection of the stream kinds). */
uint64_t stream_now_ns(void);

#endif
