/* UART links: a serial device (USB-serial adapter, on-board UART, pty) as a transport. The
 * device is opened exclusively, in raw 8N1 mode at any rate the driver takes; when it goes away
 * (USB unplug) the transport reports DISCONNECTED and keeps reopening the same path with backoff
 * until it is back, then reports CONNECTED again on the same object. */
#ifndef OTAGW_UART_H
#define OTAGW_UART_H

#include <stdbool.h>
#include <stdint.h>

#include "stream.h"

struct event_base;
struct transport;

struct uart_options {
	/* Line rate in bit/s: the standard rates and any other the driver accepts (termios2
	 * BOTHER), 50..4000000; 0 = 115200. */
	uint32_t baud;
	/* RTS/CTS hardware flow control. */
	bool rtscts;
	/* Frame and queue limits (stream.h). */
	struct stream_options stream;
};

/* Creates a UART transport on the tty at path, which is resolved again at every open, so a
 * /dev/serial/by-id/ symlink follows the device to whatever ttyUSBn it gets after a replug.
 * Returns 0 and *out (the caller owns it: transport_free()) when the device opened, or when it
 * does not exist yet (ENOENT, ENODEV, ENXIO, EIO): then the transport keeps trying with backoff
 * (250 ms doubling to 5 s) and reports CONNECTED once it opens. CONNECTED comes from the loop
 * in both cases, so set the callback right after this returns. Errors (nothing created):
 * -EINVAL bad options or a rate outside 50..4000000, or one the driver would not set within 3 %;
 * -EBUSY another process (or transport) holds the device; -ENOTTY path is no tty; -EACCES and
 * other open(2) errors as they come; -ENOMEM. After an unplug, every open error is retried (a
 * replugged node can briefly have the wrong permissions). */
int uart_new(struct event_base *base, const char *path, const struct uart_options *opt,
    struct transport **out);

/* The error of the latest failed open attempt (negative errno), or 0 if the latest attempt
 * succeeded: for the owner's log while the device stays away. t must be a UART transport. */
int uart_last_error(const struct transport *t);

#endif
