/* One simulated device: the real MCU library (proto/device, otadev) ported to a process. Its
 * flash is a file with NOR semantics, its resume state and running version are files, and its
 * timing is an MCU's: while it "erases" or "writes" it runs no code, received bytes wait in a
 * receive ring the size of its window (what does not fit is lost, as in a UART overrun) and
 * what it sends goes out when the stall ends. Stalls never block the process, so many devices
 * share one event loop. After an update it "reboots" into the new image and greets the gateway
 * with the new version. */
#ifndef OTAGW_DEVSIM_DEVICE_H
#define OTAGW_DEVSIM_DEVICE_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "ident.h"
#include "link.h"

struct event_base;
struct report;
struct device;

struct device_options {
	char serial[IDENT_SERIAL_MAX + 1];
	const char *hardware_version, *software_type;
	const char *factory_version; /* the version it runs until it installs one */
	/* HELLO capabilities */
	uint16_t max_payload;
	uint8_t window;
	uint16_t max_stall_ms;
	uint16_t caps;
	/* flash */
	uint32_t slot_size;
	uint32_t sector_size; /* 0: a medium without erase */
	uint32_t erase_ms;    /* per sector */
	uint32_t write_us_per_kib;
	uint32_t rx_ring; /* receive ring bytes; 0: window * (max_payload + 16) */
	/* behaviour */
	uint32_t check_s;        /* re-check after NO_UPDATE or an install; 0: never */
	uint64_t reboot_at_byte; /* reboot once when this many image bytes are stored; 0: never */
	bool decline;            /* the application refuses every offer */
	bool once;               /* finish once up to date, or when an update fails */
	char dir[PATH_MAX];      /* the device's own state directory (created if needed) */
	struct link_options link;
};

/* Called once when a device with opt.once finishes: ok when it is up to date (after an install
 * or from the start), else reason says why the update failed. */
typedef void (*device_finish_cb)(struct device *d, bool ok, const char *reason, void *arg);

/* Creates the device, opens its flash and state, brings its link up and boots it (it says HELLO
 * when the link allows). Returns 0 and *out, or a negative errno with err saying what failed. */
int device_new(struct event_base *base, const struct device_options *opt, struct report *rep,
    device_finish_cb cb, void *arg, struct device **out, char *err, size_t errlen);

/* Adopts a connected socket as the device's link instead of opt->link (see link_new_fd()). */
int device_new_fd(struct event_base *base, const struct device_options *opt, int fd, bool packet,
    struct report *rep, device_finish_cb cb, void *arg, struct device **out, char *err,
    size_t errlen);

/* Emits the "summary" event: outcome, version, timings and counters. */
void device_summary(struct device *d);

/* A short description of where the device is ("receiving 52 %, 136/262 KiB"), for a timeout
 * message. */
const char *device_describe(struct device *d);

const char *device_serial(const struct device *d);

/* True while the device is connected to a gateway over BLE. A BLE device that is done waits
 * for the gateway to let it go, as a real one would, rather than vanishing from under a
 * connection (the gateway's bluetoothd would see its GATT service removed). */
bool device_ble_connected(const struct device *d);

/* Stops the device and closes its link and files. Accepts NULL. */
void device_free(struct device *d);

#endif
