/* The peripheral half of the BLE VM test: runs ble_periph on one adapter (GATT and an L2CAP
 * listener), starts advertising once the central's adapter discovers (btvirt reports an
 * advertiser only when a scan starts), and answers bletest-central on whichever transport it
 * uses: echoes, bulk data both ways, and a request to drop the link, which it carries out by
 * disconnecting the central through bluetoothd. Runs until SIGTERM.
 * Usage: bletest-periph ADAPTER PSM NAME CENTRAL_ADAPTER CENTRAL_ADDRESS */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "ble.h"
#include "bletest_impl.h"

static struct {
	struct event_base *base;
	struct busev *be;
	sd_bus *bus;
	struct ble_periph *p;
	const char *adapter, *central_adapter, *central_addr;
	struct bletest_bulk bulk;
	bool advertising;
	int errors;
} st;

static void
drop_central(void)
{
	char path[96];
	int r;

	/* /org/bluez/hci1/dev_AA_BB_CC_DD_EE_FF */
	snprintf(path, sizeof(path), "/org/bluez/%s/dev_%s", st.adapter, st.central_addr);
	for (char *c = path + strlen(path) - strlen(st.central_addr); *c; c++)
		if (*c == ':')
			*c = '_';
	r = sd_bus_call_method_async(
	    st.bus, NULL, "org.bluez", path, "org.bluez.Device1", "Disconnect", NULL, NULL, "");
	printf("bletest-periph: dropping the central %s: %s\n", path, r < 0 ? strerror(-r) : "ok");
	busev_rearm(st.be);
}

static void
on_message(struct transport *t, const uint8_t *m, size_t len)
{
	static uint8_t echo[8192];
	int r = 0;

	switch (m[0]) {
	case BLETEST_ECHO:
		memcpy(echo, m, len);
		echo[0] = BLETEST_ECHOED;
		r = transport_send(t, echo, len);
		break;
	case BLETEST_DATA:
		r = bletest_bulk_rx(t, &st.bulk, m, len);
		break;
	case BLETEST_END: {
		uint8_t d[10] = {BLETEST_DONE};
		bool ok = len >= 9 && st.bulk.rx_bad == 0 &&
			  bletest_get32(m + 1) == st.bulk.rx_msgs &&
			  bletest_get32(m + 5) == st.bulk.rx_bytes;

		printf("bletest-periph: received %u bytes in %u messages (sent %u in %u), %s "
		       "(%u bad, first #%u, %u bytes)\n",
		    st.bulk.rx_bytes, st.bulk.rx_msgs, bletest_get32(m + 5), bletest_get32(m + 1),
		    ok ? "all correct" : "WRONG", st.bulk.rx_bad, st.bulk.first_bad_seq,
		    st.bulk.first_bad_len);
		bletest_put32(d + 1, st.bulk.rx_msgs);
		bletest_put32(d + 5, st.bulk.rx_bytes);
		d[9] = ok;
		memset(&st.bulk, 0, sizeof(st.bulk));
		r = transport_send(t, d, sizeof(d));
		break;
	}
	case BLETEST_PULL:
		if (len < 5)
			break;
		bletest_bulk_start(&st.bulk, bletest_get32(m + 1));
		r = bletest_bulk_pump(t, &st.bulk);
		break;
	case BLETEST_ACK:
		if (len < 5)
			break;
		st.bulk.acked_msgs = bletest_get32(m + 1);
		r = bletest_bulk_pump(t, &st.bulk);
		break;
	case BLETEST_DROP:
		drop_central();
		break;
	default:
		st.errors++;
		break;
	}
	if (r < 0) {
		fprintf(
		    stderr, "bletest-periph: send on %s: %s\n", transport_name(t), strerror(-r));
		st.errors++;
	}
}

static void
on_transport(struct transport *t, enum transport_event ev, const uint8_t *msg, size_t len, int err,
    void *arg)
{
	(void)arg;
	switch (ev) {
	case TRANSPORT_EV_CONNECTED:
		printf(
		    "bletest-periph: %s connected, MTU %zu\n", transport_name(t), transport_mtu(t));
		memset(&st.bulk, 0, sizeof(st.bulk));
		break;
	case TRANSPORT_EV_MESSAGE:
		if (len > 0)
			on_message(t, msg, len);
		break;
	case TRANSPORT_EV_BAD_FRAME:
		st.errors++;
		break;
	case TRANSPORT_EV_WRITABLE:
		(void)bletest_bulk_pump(t, &st.bulk);
		break;
	case TRANSPORT_EV_DISCONNECTED:
		printf("bletest-periph: %s disconnected (%s)\n", transport_name(t),
		    err ? strerror(-err) : "orderly");
		st.bulk.sending = 0;
		break;
	}
	fflush(stdout);
}

/* Advertise once the central discovers: btvirt reports an advertiser only as a scan starts. */
static int
on_central_props(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	const char *iface;
	int r;

	(void)userdata;
	(void)ret_error;
	if (st.advertising || sd_bus_message_read(m, "s", &iface) < 0)
		return 0;
	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	while (r > 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		const char *name;
		int on = 0;

		if (sd_bus_message_read(m, "s", &name) < 0)
			return 0;
		if (strcmp(name, "Discovering") == 0 &&
		    sd_bus_message_read(m, "v", "b", &on) >= 0) {
			if (on) {
				printf("bletest-periph: %s discovers, advertising\n",
				    st.central_adapter);
				st.advertising = true;
				ble_periph_advertise(st.p, true);
			}
		} else if (sd_bus_message_skip(m, "v") < 0) {
			return 0;
		}
		r = sd_bus_message_exit_container(m);
	}
	return 0;
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	event_base_loopbreak(st.base);
}

static void
on_bus_lost(struct busev *be, int err, void *arg)
{
	(void)be;
	(void)arg;
	fprintf(stderr, "bletest-periph: lost the system bus: %s\n", strerror(-err));
	st.errors++;
	event_base_loopbreak(st.base);
}

int
main(int argc, char **argv)
{
	struct ble_periph_config cfg = {0};
	struct event *sigterm, *sigint;
	char match[256];
	int r;

	if (argc != 6) {
		fprintf(stderr, "usage: bletest-periph ADAPTER PSM NAME CENTRAL_ADAPTER "
				"CENTRAL_ADDRESS\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	st.adapter = cfg.adapter = argv[1];
	cfg.psm = (uint16_t)strtoul(argv[2], NULL, 0);
	cfg.name = argv[3];
	st.central_adapter = argv[4];
	st.central_addr = argv[5];
	st.base = event_base_new();
	r = sd_bus_open_system(&st.bus);
	if (r < 0 || !st.base) {
		fprintf(stderr, "bletest-periph: no system bus: %s\n", strerror(-r));
		return 1;
	}
	r = busev_new(st.base, st.bus, on_bus_lost, NULL, &st.be);
	if (r >= 0)
		r = ble_periph_new(st.base, st.be, &cfg, &st.p);
	if (r < 0) {
		fprintf(stderr, "bletest-periph: cannot start: %s\n", strerror(-r));
		return 1;
	}
	transport_set_callback(ble_periph_gatt(st.p), on_transport, NULL, NULL);
	if (ble_periph_l2cap(st.p))
		transport_set_callback(ble_periph_l2cap(st.p), on_transport, NULL, NULL);
	snprintf(match, sizeof(match),
	    "type='signal',sender='org.bluez',path='/org/bluez/%s',"
	    "interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'",
	    st.central_adapter);
	r = sd_bus_add_match_async(st.bus, NULL, match, on_central_props, NULL, NULL);
	if (r < 0) {
		fprintf(stderr, "bletest-periph: match: %s\n", strerror(-r));
		return 1;
	}
	busev_rearm(st.be);
	sigterm = evsignal_new(st.base, SIGTERM, on_signal, NULL);
	sigint = evsignal_new(st.base, SIGINT, on_signal, NULL);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	printf("bletest-periph: serving on %s (PSM %u)\n", st.adapter, cfg.psm);
	event_base_dispatch(st.base);

	printf("bletest-periph: exiting, %d errors\n", st.errors);
	st.p = ble_periph_free(st.p);
	sd_bus_flush(st.bus);
	busev_free(st.be);
	sd_bus_flush_close_unref(st.bus);
	event_free(sigterm);
	event_free(sigint);
	event_base_free(st.base);
	return st.errors ? 1 : 0;
}
