/* The BLE peripheral behind a simulated device's link (link.c's LINK_KIND_BLE): the otagw GATT
 * service, an advertisement and optionally an L2CAP CoC listener on one adapter, through
 * bluetoothd (transports/ble.h's ble_periph on its own system bus connection). Whichever link
 * the gateway opens (GATT, or L2CAP when it chose the channel) carries one protocol message per
 * packet; its MTU bounds the messages. */
#ifndef OTAGW_DEVSIM_BLELINK_H
#define OTAGW_DEVSIM_BLELINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "link.h"

struct event_base;
struct blelink;

/* What happens on the link: UP (mtu: the largest message, now known), PACKET (data, n),
 * DOWN (err). Never called from inside blelink_send() or blelink_disconnect(). */
typedef void (*blelink_cb)(
    enum link_event ev, const uint8_t *data, size_t n, int err, size_t mtu, void *arg);

/* Registers the peripheral on adapter ("hci1") as name (advertised; at most 29 bytes) with,
 * if psm is not 0, an L2CAP CoC listener on that PSM, and starts advertising. Registration
 * completes asynchronously (and is redone when bluetoothd restarts). Returns 0 and *out, or a
 * negative errno with err saying what failed (no system bus, a bad adapter name, the PSM
 * taken). */
int blelink_new(struct event_base *base, const char *adapter, const char *name, uint16_t psm,
    blelink_cb cb, void *arg, struct blelink **out, char *err, size_t errlen);

/* Sends one message on the link that is up. Returns 0, -ENOTCONN, -EMSGSIZE or -ENOBUFS (the
 * link's queue is full: the message is lost, as a radio's would be). */
int blelink_send(struct blelink *b, const uint8_t *data, size_t n);

/* True while the gateway is connected, which can outlast the link by seconds (see
 * ble_periph_connected()). */
bool blelink_connected(const struct blelink *b);

/* The largest message on the link that is up, 0 while down. */
size_t blelink_mtu(const struct blelink *b);

/* Drops the connection (a device rebooting): DOWN is reported now; the central may connect
 * again once the device advertises, which it goes on doing. */
void blelink_disconnect(struct blelink *b);

/* "ble hci1 (GATT)", "ble hci1 (L2CAP PSM 129)". */
const char *blelink_name(const struct blelink *b);

/* Unregisters and frees. Accepts NULL. */
void blelink_free(struct blelink *b);

#endif
