/* The packet link under every BLE transport (internal to transports/): one protocol message per
 * packet over a pair of non-blocking fds: GATT's acquired write and notify sockets, or one L2CAP
 * CoC socket for both directions. It queues output with a high-water mark, reads whole packets,
 * and tells its owner (the central or peripheral) when the fds fail, so the owner decides
 * whether the link is down. */
#ifndef OTAGW_BLE_LINK_H
#define OTAGW_BLE_LINK_H

#include <stdbool.h>
#include <stddef.h>

#include "transport_impl.h"

struct event_base;
struct ble_link;

struct ble_link_owner {
	/* An fd failed or hung up (err: negative errno, 0 for an orderly close). The link has
	 * closed its fds; the owner reports it down or reacquires. */
	void (*fd_lost)(struct ble_link *l, int err, void *arg);
	/* transport_free() was called on the link: the owner forgets it (and, for example,
	 * disconnects the device). Called once, before the memory goes. */
	void (*freed)(struct ble_link *l, void *arg);
	void *arg;
};

/* Creates a link that is down, named like "ble:AA:BB:CC:DD:EE:FF". Returns 0 or -ENOMEM. */
int ble_link_new(struct event_base *base, enum transport_kind kind, const char *name,
    const struct ble_link_owner *owner, struct ble_link **out);

/* The transport the link implements. */
struct transport *ble_link_transport(struct ble_link *l);
struct ble_link *ble_link_from_transport(struct transport *t);

/* Takes ownership of rfd (packets in) and wfd (packets out; may equal rfd, e.g. L2CAP), either
 * may be -1 (not acquired yet; a later call sets the missing one). A new separate fd replaces
 * the one held (closed, queued output dropped). Makes them non-blocking.
 * mtu is the largest message sent on wfd. Returns 0 or -ENOMEM (the fds are closed then). */
int ble_link_set_fds(struct ble_link *l, int rfd, int wfd, size_t mtu);

/* True while the link holds a write fd. */
bool ble_link_has_wfd(const struct ble_link *l);

/* Marks the link up (reports CONNECTED) or down (closes the fds, drops queued output, reports
 * DISCONNECTED with err). Returns false if the owner freed the transport inside the callback. */
bool ble_link_up(struct ble_link *l);
/* Marks the link up now and reports CONNECTED from the loop (unless it went down before), as
 * the other transports announce a new link: for a transport about to be handed out, whose
 * owner sets its callback first. Returns false if the transport was freed. */
bool ble_link_up_later(struct ble_link *l);
bool ble_link_down(struct ble_link *l, int err);

/* Closes the fds without reporting anything (the owner is tearing down). */
void ble_link_close(struct ble_link *l);

/* Forgets the owner: after this, transport_free() of the link only frees it. */
void ble_link_orphan(struct ble_link *l);

#endif
