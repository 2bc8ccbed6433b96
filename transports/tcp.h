/* Socket links: TCP and unix stream sockets as transports, both ways. A listener hands every
 * accepted connection to a callback as one device transport; a connect-out transport dials a
 * serial server (ser2net) or an MCU emulator (Renode, QEMU) exposing a UART as a socket, and
 * redials with backoff whenever the connection drops. */
#ifndef OTAGW_TCP_H
#define OTAGW_TCP_H

#include <stdint.h>

#include "stream.h"

struct event_base;
struct evdns_base;
struct transport;
struct tcp_listener;

struct tcp_options {
	/* Frame and queue limits of each link (stream.h). */
	struct stream_options stream;
	/* Listeners: connections up at once; one more is accepted and closed at once (the peer
	 * sees EOF), so a device retries rather than hangs in the backlog. 0 = 32. */
	unsigned int max_connections;
	/* Unix listeners: permission bits of the socket file (connecting needs write
	 * permission). 0 = 0660. */
	unsigned int mode;
	/* Connect-out to a host name (not a numeric address): the resolver, caller-owned, created
	 * e.g. with evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS) so /etc/hosts and
	 * resolv.conf apply; it must outlive the transport. NULL is fine for numeric addresses. */
	struct evdns_base *dns;
};

/* A new connection, or a failure to take one. t != NULL: a connection was accepted; the
 * callback owns t (set its callback now: CONNECTED follows from the loop; free it after its
 * DISCONNECTED, it never comes back). t == NULL: err says what went wrong: -EUSERS a connection
 * came while max_connections were up and was closed; -EMFILE, -ENFILE, -ENOBUFS, -ENOMEM the
 * process or system ran out, and accepting pauses for a second. Freeing l from here is fine. */
typedef void (*tcp_accept_cb)(struct tcp_listener *l, struct transport *t, int err, void *arg);

/* Listens on address, for kind TRANSPORT_KIND_TCP "HOST:PORT" (HOST a numeric IPv4 address,
 * a numeric IPv6 address in brackets, "localhost" for 127.0.0.1, or "*" or nothing for every
 * address, IPv6 and IPv4; PORT 0..65535, 0 picks a free port), for TRANSPORT_KIND_UNIX the path
 * of a socket file. A unix socket file left behind by a process that died is replaced; one that
 * still answers is not. The file gets opt->mode and is removed by tcp_listener_free(). Returns
 * 0 and *out, or -EINVAL (bad address or options), -ENAMETOOLONG (unix path too long),
 * -EADDRINUSE (a live listener holds it), -EEXIST (a file that is no socket is in the way),
 * -EACCES and other socket(2)/bind(2) errors, -ENOMEM. */
int tcp_listener_new(struct event_base *base, enum transport_kind kind, const char *address,
    const struct tcp_options *opt, tcp_accept_cb cb, void *arg, struct tcp_listener **out);

/* Stops listening and frees l (deferred when called from its own callback); a unix socket file
 * is removed if it is still the one l made. Accepted transports stay with their owners.
 * Accepts NULL. */
void tcp_listener_free(struct tcp_listener *l);

/* "tcp:127.0.0.1:7000", "tcp:[::]:7000" (the bound port, also when asked for port 0) or
 * "unix:/run/otagw/dev.sock". Lives as long as l. */
const char *tcp_listener_name(const struct tcp_listener *l);

/* The bound TCP port; 0 for unix listeners. */
uint16_t tcp_listener_port(const struct tcp_listener *l);

/* Accepted connections currently up. */
unsigned int tcp_listener_connections(const struct tcp_listener *l);

/* Creates a transport that connects to address (TRANSPORT_KIND_TCP "HOST:PORT" with HOST a
 * numeric address, [IPv6] or a name resolved through opt->dns without blocking, PORT 1..65535;
 * TRANSPORT_KIND_UNIX a socket path), and reconnects with backoff (250 ms doubling to 5 s)
 * after every failed attempt or dropped connection, resolving the name again each time. TCP
 * links get TCP_NODELAY and keepalive. Reports CONNECTED each time a connection is made. Returns
 * 0 and *out (the caller owns it), or -EINVAL (bad address or options, or a host name without
 * opt->dns), -ENAMETOOLONG, -ENOMEM. Connection failures are not errors here: they are retried
 * (see tcp_last_error()). */
int tcp_connect_new(struct event_base *base, enum transport_kind kind, const char *address,
    const struct tcp_options *opt, struct transport **out);

/* For a connect-out transport: the error of the latest failed attempt (-ECONNREFUSED,
 * -ETIMEDOUT, -EHOSTUNREACH when the name did not resolve, ...), or 0 if the latest attempt
 * connected. For the owner's log while the peer stays away. */
int tcp_last_error(const struct transport *t);

#endif
