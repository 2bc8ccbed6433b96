/* BLE links behind transport.h, through BlueZ: the central side (the gateway: a manager that
 * discovers, connects and hands out one transport per device) and the peripheral side (what a
 * device or the simulator runs: the otagw GATT service, an advertisement, an optional L2CAP
 * listener). Both talk to bluetoothd over D-Bus with sd-bus on the caller's busev; data never goes
 * through D-Bus: GATT data flows through AcquireWrite/AcquireNotify file descriptors, L2CAP data
 * through LE credit-based (CoC) sockets. One protocol message per packet. The GATT service is
 * defined in docs/PROTOCOL.md, section 12. */
#ifndef OTAGW_BLE_H
#define OTAGW_BLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "busev.h"
#include "transport.h"

/* The otagw GATT service and its characteristics (128-bit, lower case as BlueZ reports them). */
#define BLE_SERVICE_UUID "0856f480-8b80-4b72-9031-8f88d9a86c3e"
/* gateway -> device: write-without-response, one message per write. */
#define BLE_WRITE_UUID "0856f481-8b80-4b72-9031-8f88d9a86c3e"
/* device -> gateway: notify, one message per notification. */
#define BLE_NOTIFY_UUID "0856f482-8b80-4b72-9031-8f88d9a86c3e"
/* read: the L2CAP LE CoC PSM the device listens on, u16 little-endian, 0 = none. */
#define BLE_PSM_UUID "0856f483-8b80-4b72-9031-8f88d9a86c3e"

/* Largest GATT message whatever the ATT MTU: bluetoothd 5.66 as a GATT server silently drops
 * 511- and 512-byte writes (fixed in 5.69), and its fd readers take at most 512 bytes. */
#define BLE_GATT_MSG_MAX 510

enum ble_prefer {
	BLE_PREFER_GATT,  /* always GATT */
	BLE_PREFER_L2CAP, /* L2CAP CoC when the device offers a PSM (or one is configured) */
	/* L2CAP CoC only: a device that offers no PSM (and none is configured) is not served; it
	 * is let go and held off like a device that is done */
	BLE_PREFER_L2CAP_ONLY,
};

struct ble_central;

/* Central configuration. Strings are copied by ble_central_new(). */
struct ble_central_config {
	const char *adapter;      /* "hci0"; NULL = hci0 */
	const char *const *allow; /* NULL-terminated addresses "AA:BB:..."; NULL = any */
	const char *name_prefix;  /* only devices whose Name starts so; NULL = any */
	/* Simultaneous links (0 = 1). A device whose transport the owner still holds keeps its
	 * slot while it is reconnected (a reboot into a new image, a drop mid-transfer). */
	unsigned int max_connections;
	enum ble_prefer prefer;
	uint16_t psm;           /* L2CAP PSM; 0 = read the PSM characteristic */
	unsigned int holdoff_s; /* after the owner frees a device's transport, leave it
				 * alone this long (others get a turn); 0 = 30 s */
	/* While a connection slot is free (or a device it holds is awaited back) the central
	 * discovers, and restarts discovery this often so that devices that came back are
	 * reported again (controllers filter duplicate advertisements within one scan); 0 = 10 s.
	 * With every slot taken, or while a connect is in flight, it does not discover: scanning
	 * takes radio time from the links, and the kernel connects faster through its own
	 * passive scan. Only devices seen advertising in the current discovery are connected:
	 * bluetoothd remembers devices long gone, and a connect to one blocks for its timeout. */
	unsigned int scan_interval_s;
	/* Called (with ble_central_new()'s arg) when what ble_central_get_stats() reports about
	 * bluetoothd and the adapter changes, or a link comes up or goes down; NULL = not told. */
	void (*changed)(struct ble_central *c, void *arg);
	/* Debug trace of the central's decisions (state changes, failures), for the daemon's
	 * debug log; NULL = silent. line has no newline and is valid during the call only. */
	void (*debug)(const char *line, void *arg);
	void *debug_arg;
};

/* A device was connected for the first time since its transport was handed out: t is new,
 * already up, and owned by the callee, who sets its callback; TRANSPORT_EV_CONNECTED follows
 * from the loop, as on the other transports. Later disconnects and reconnects of the same device
 * are reported on t (DISCONNECTED, then CONNECTED again) while the manager reconnects with backoff.
 * transport_free(t) disconnects the device and holds it off for holdoff_s, so others get a
 * turn; after that it may be handed out again as a new transport. address is "AA:BB:CC:DD:EE:FF";
 * name may be NULL; both are valid during the call only. */
typedef void (*ble_central_cb)(
    struct ble_central *c, struct transport *t, const char *address, const char *name, void *arg);

/* Creates the central on be's bus (a system bus connection where bluetoothd runs) and starts:
 * waits for bluetoothd and the adapter, powers it, sets the discovery filter (LE, the otagw
 * service), discovers and connects. Survives adapter power loss and bluetoothd restarts by
 * starting over. Returns 0 and *out, -EINVAL for a bad config (adapter name, allow-list address),
 * -ENOMEM, or a negative errno from sd-bus. If the bus itself is lost (busev's lost callback),
 * free the central and make a new one on the new bus. */
int ble_central_new(struct event_base *base, struct busev *be, const struct ble_central_config *cfg,
    ble_central_cb cb, void *arg, struct ble_central **out);

/* State and counters for status and tests. */
struct ble_central_stats {
	bool bluez;               /* org.bluez is on the bus */
	bool adapter;             /* bluetoothd has the adapter */
	bool powered;             /* ... and it is powered */
	unsigned int connected;   /* links up now */
	unsigned int connecting;  /* connects in flight */
	unsigned int discovering; /* 1 while the adapter discovers for us */
	unsigned int restarts;    /* adapter/bluetoothd restarts handled */
	/* bluetoothd's last refusal to power the adapter or to discover ("Blocked through
	 * rfkill"), "" once it worked; valid until the next call into c. */
	const char *adapter_error;
};
void ble_central_get_stats(const struct ble_central *c, struct ble_central_stats *out);

/* Sets how long the device behind t (a transport this central handed out) is left alone once
 * its owner frees t, instead of the configured holdoff_s: e.g. until the device's next check
 * is due. 0 restores holdoff_s. Returns 0, or -EINVAL if t is not one of this central's
 * transports. */
int ble_central_set_holdoff(struct ble_central *c, struct transport *t, unsigned int holdoff_s);

/* Disconnects every device, stops discovery and frees c. Transports already handed out stay
 * valid until their owner frees them: a link that was up reports DISCONNECTED (-ESHUTDOWN)
 * once, then nothing more. Accepts NULL; returns NULL. */
struct ble_central *ble_central_free(struct ble_central *c);

/* Peripheral configuration. Strings are copied. */
struct ble_periph_config {
	const char *adapter;  /* "hci1"; NULL = hci0 */
	const char *name;     /* advertised local name; NULL = none */
	uint16_t psm;         /* listen for L2CAP CoC on this PSM and publish it; 0 = GATT only */
	bool advertise;       /* start advertising at once (else call ble_periph_advertise()) */
	const char *app_path; /* D-Bus object path prefix; NULL = /org/otagw/periph */
};

struct ble_periph;

/* Registers the otagw GATT application, a NoInputNoOutput agent and (if advertise) an LE
 * advertisement with bluetoothd, on be's bus; powers the adapter; listens on psm if non-zero.
 * Registration completes asynchronously; failures are reported as DISCONNECTED with the error on
 * the GATT transport and retried when bluetoothd returns. Returns 0 and *out, -EINVAL, -ENOMEM,
 * or a negative errno (e.g. from the L2CAP listen socket). */
int ble_periph_new(struct event_base *base, struct busev *be, const struct ble_periph_config *cfg,
    struct ble_periph **out);

/* The peripheral's links to whichever central connects, as transports owned by the peripheral
 * (do not free them; set their callbacks). They report CONNECTED when the central has subscribed
 * (GATT) or opened the channel (L2CAP) and DISCONNECTED when it goes. ble_periph_l2cap() is NULL
 * without a PSM. */
struct transport *ble_periph_gatt(struct ble_periph *p);
struct transport *ble_periph_l2cap(struct ble_periph *p);

/* Starts or stops advertising. Returns 0 (the registration completes asynchronously). In the
 * btvirt emulator an advertisement is seen only by a scan that starts after it (real advertisers
 * repeat): tests start advertising once the central's adapter reports Discovering. */
int ble_periph_advertise(struct ble_periph *p, bool on);

/* True while a central is connected to p: from its GATT subscription or L2CAP channel until
 * bluetoothd reports the connection gone, which can be seconds after the links went down
 * (bluetoothd drops an idle LE connection about 2 s after its last user). A device that means
 * to disappear (a simulator exiting) waits for this to turn false, or the central sees the
 * GATT service vanish from under a live connection. */
bool ble_periph_connected(const struct ble_periph *p);

/* Disconnects the central that is connected (a device that reboots or is done drops its
 * link); the links report DISCONNECTED when bluetoothd confirms. Advertising resumes by itself
 * if it is on. Returns 0 (also when no central is connected) or a negative errno from sd-bus. */
int ble_periph_disconnect(struct ble_periph *p);

/* Unregisters everything, closes the links and frees p. Accepts NULL; returns NULL. */
struct ble_periph *ble_periph_free(struct ble_periph *p);

#endif
