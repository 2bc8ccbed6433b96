/* The limits of a byte-stream link (UART, TCP, unix socket), which its owner configures through
 * uart.h and tcp.h. The link itself is in stream_impl.h. */
#ifndef OTAGW_STREAM_H
#define OTAGW_STREAM_H

#include <stddef.h>

/* Limits of one stream link. Zero fields take the defaults. */
struct stream_options {
	/* Largest message accepted either way (the transport's MTU), 1..FRAME_MSG_MAX (frame.h);
	 * default FRAME_MSG_MAX. A received frame that decodes to more is dropped as BAD_FRAME. */
	size_t max_msg;
	/* transport_send() returns -EAGAIN while at least this many bytes are queued in user space;
	 * default two whole frames of max_msg, at least 4096; at most 16 MiB. */
	size_t high_water;
	/* TRANSPORT_EV_WRITABLE fires when the queue falls below this after an -EAGAIN; default
	 * high_water / 2. Must be at most high_water. */
	size_t low_water;
};

/* Checks options and fills in the defaults. Returns 0 or -EINVAL. */
int stream_options_resolve(const struct stream_options *in, struct stream_options *out);

#endif
