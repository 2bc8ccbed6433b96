/* The simulated device's side of its link to the gateway: a pty pair it creates, a tty it
 * opens, a TCP or unix-socket connection it makes, or a socket it is handed. Stream links pass
 * raw bytes (the device's own COBS/CRC framing runs above); packet links (a SOCK_SEQPACKET
 * socket, BLE later) pass one protocol message per packet. Links that can come back (a tty
 * that reappears, a connection refused or reset) retry with backoff. Everything runs on the
 * caller's libevent loop and never blocks. */
#ifndef OTAGW_DEVSIM_LINK_H
#define OTAGW_DEVSIM_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct link;

enum link_kind {
	LINK_KIND_PTY,  /* create a pty pair, symlink its slave at path for the gateway */
	LINK_KIND_TTY,  /* open an existing tty (a serial adapter, one end of otagw-linkemu) */
	LINK_KIND_TCP,  /* connect to host:port */
	LINK_KIND_UNIX, /* connect to a unix stream socket at path */
	LINK_KIND_BLE,  /* a BLE peripheral on adapter path (blelink.h): packets, MTU per link */
};

enum link_event {
	LINK_EV_UP,     /* the link is usable (again) */
	LINK_EV_BYTES,  /* stream links: bytes arrived (data, n) */
	LINK_EV_PACKET, /* packet links: one message arrived (data, n) */
	LINK_EV_DOWN,   /* the link went away (err: negative errno, 0 for an orderly close);
			 * links that can come back retry and report LINK_EV_UP again */
};

/* data/n only for BYTES and PACKET, valid during the callback; err only for DOWN. The callback
 * must not free the link. */
typedef void (*link_cb)(
    struct link *l, enum link_event ev, const uint8_t *data, size_t n, int err, void *arg);

struct link_options {
	enum link_kind kind;
	const char *path; /* PTY: where to put the symlink; TTY: the device; UNIX: the socket */
	const char *host; /* TCP */
	const char *port; /* TCP */
	uint32_t baud;    /* TTY: line rate to set (0: leave it as it is) */
	const char *name; /* BLE: the advertised name */
	uint16_t psm;     /* BLE: also listen for L2CAP CoC on this PSM (0: GATT only) */
};

/* Creates the link and starts bringing it up: a PTY is up at once; a TTY or socket is opened
 * now and, if it is not there yet (ENOENT, ECONNREFUSED...), retried with backoff. Returns 0
 * and *out, or a negative errno for what retrying cannot fix (no pty available, the path is
 * not a tty, the host name does not resolve, out of memory); errbuf then says what failed. */
int link_new(struct event_base *base, const struct link_options *opt, link_cb cb, void *arg,
    struct link **out, char *errbuf, size_t errlen);

/* Adopts a connected socket (SOCK_STREAM, or SOCK_SEQPACKET with packet set: one message per
 * packet, as on a BLE L2CAP channel). The link owns fd from now on and does not reconnect. */
int link_new_fd(
    struct event_base *base, int fd, bool packet, link_cb cb, void *arg, struct link **out);

/* Sends bytes (stream) or one message (packet). Never blocks: what the OS does not take now is
 * queued, up to a bound beyond which bytes are dropped, as a UART with nobody listening loses
 * them. Returns 0, -ENOTCONN while the link is down, -ENOBUFS when the queue is full. */
int link_send(struct link *l, const uint8_t *data, size_t n);

/* True for packet links (one message per LINK_EV_PACKET / link_send()). */
bool link_is_packet(const struct link *l);

/* True for links that are connections (TCP, unix, adopted sockets): the device greets the
 * gateway on every LINK_EV_UP, as it does when it boots. On a serial line a gateway that
 * (re)opens the port solicits instead, and so does a gateway that connects over BLE
 * (docs/PROTOCOL.md, SOLICIT). */
bool link_is_connection(const struct link *l);

/* True while up. */
bool link_is_up(const struct link *l);

/* True while the gateway is still connected: for BLE until bluetoothd reports the connection
 * gone (seconds after the link went down), for other links link_is_up(). */
bool link_peer_connected(const struct link *l);

/* Packet links: the largest message the link carries now (BLE: from the connection's MTU);
 * 0 when it is not known or does not apply (stream links). */
size_t link_mtu(const struct link *l);

/* The device reboots: links whose connection a reboot ends drop it (BLE: the central is
 * disconnected and LINK_EV_DOWN is reported now; the device advertises again). Other links
 * are left as they are. */
void link_reboot(struct link *l);

/* What the link is, for messages: "pty /tmp/dev (/dev/pts/7)", "tcp 127.0.0.1:7000". */
const char *link_name(const struct link *l);

/* Closes the link (a pty's symlink is removed). Accepts NULL. */
void link_free(struct link *l);

#endif
