/* The one interface every device link implements (UART, TCP/unix, BLE GATT, BLE L2CAP): open a
 * link, get whole protocol messages in, send whole messages out with back-pressure, learn the
 * MTU, close. Stream links (UART, pty, TCP) run the proto/ framer and deframer (COBS + CRC-32C);
 * packet links (BLE) carry one message per packet. Transports never interpret messages.
 *
 * Everything runs on the caller's libevent event_base; no call blocks. A transport reports to
 * one callback with an event enum. It never frees itself inside that callback: the owner calls
 * transport_free() (from the callback too: the free is deferred until dispatch returns). */
#ifndef OTAGW_TRANSPORT_H
#define OTAGW_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct transport;

enum transport_kind {
	TRANSPORT_KIND_UART,
	TRANSPORT_KIND_TCP,
	TRANSPORT_KIND_UNIX,
	TRANSPORT_KIND_BLE_GATT,
	TRANSPORT_KIND_BLE_L2CAP,
};

enum transport_event {
	/* The link is up (again): a UART reopened after an unplug, a TCP connect-out succeeded, a
	 * BLE device connected and its characteristics/channel were acquired. */
	TRANSPORT_EV_CONNECTED,
	/* One whole message arrived (stream links: CRC verified); msg/len valid only during the
	 * callback. */
	TRANSPORT_EV_MESSAGE,
	/* A frame was dropped (bad CRC, COBS error, oversize); len is its raw size. Informational:
	 * the protocol recovers by itself. */
	TRANSPORT_EV_BAD_FRAME,
	/* The send queue fell below the low-water mark after transport_send() returned -EAGAIN. */
	TRANSPORT_EV_WRITABLE,
	/* The link went down. err is 0 for an orderly close by the peer, else a negative errno.
	 * Reconnecting transports (UART, TCP connect-out, BLE) keep the object and later report
	 * TRANSPORT_EV_CONNECTED again; accepted TCP/unix connections never come back, and their
	 * owner should free them. */
	TRANSPORT_EV_DISCONNECTED,
};

/* The callback for every event. msg/len are set only for TRANSPORT_EV_MESSAGE and BAD_FRAME;
 * err only for DISCONNECTED. */
typedef void (*transport_cb)(struct transport *t, enum transport_event ev, const uint8_t *msg,
    size_t len, int err, void *arg);

/* Byte and frame counters, for D-Bus status and benchmarks. */
struct transport_stats {
	uint64_t bytes_in, bytes_out; /* on the wire, framing included */
	uint64_t msgs_in, msgs_out;
	uint64_t bad_frames; /* CRC/COBS/oversize drops */
	uint64_t reconnects;
};

/* Sets the callback (and its argument) that receives every event. The owner sets it once, right
 * after creating or accepting the transport. destroy, if not NULL, is called with arg when the
 * transport is freed, or when a later call replaces the callback (the old arg's destroy runs then,
 * as in BlueZ's io helpers). */
void transport_set_callback(
    struct transport *t, transport_cb cb, void *arg, void (*destroy)(void *arg));

/* Queues one message for sending. Stream links frame it; packet links send it as one packet.
 * Returns 0 when queued; -EINVAL for an empty message; -EMSGSIZE if len exceeds transport_mtu();
 * -ENOTCONN if the link is down; -EAGAIN if the queue is above its high-water mark (nothing queued:
 * retry after TRANSPORT_EV_WRITABLE). The message is copied; the caller keeps ownership of msg. */
int transport_send(struct transport *t, const uint8_t *msg, size_t len);

/* Largest message transport_send() accepts right now (packet links: the negotiated MTU; stream
 * links: the configured maximum frame payload). 0 while disconnected. */
size_t transport_mtu(const struct transport *t);

/* Bytes queued in user space and not yet handed to the OS. */
size_t transport_queued(const struct transport *t);

/* True while the link is up. */
bool transport_connected(const struct transport *t);

/* Kind and a human-readable name for logs, e.g. "uart:/dev/ttyUSB0", "tcp:192.0.2.7:40112",
 * "unix:/run/otagw/sim.sock", "ble:AA:BB:CC:DD:EE:FF". The string lives as long as t. */
enum transport_kind transport_kind(const struct transport *t);
const char *transport_name(const struct transport *t);

/* Counters since the transport was created. */
void transport_get_stats(const struct transport *t, struct transport_stats *out);

/* Drops the link and frees t (deferred when called from inside t's own callback). Queued output
 * is discarded. Accepts NULL. */
void transport_free(struct transport *t);

#endif
