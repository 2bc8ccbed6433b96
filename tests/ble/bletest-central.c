/* The central half of the BLE VM test: runs ble_central on one adapter until the test peripheral
 * is handed out as a transport, then checks echoes of every size, a bulk transfer each way (and
 * prints its goodput), asks the peripheral to drop the link, waits for the manager to reconnect
 * the same transport, checks it again and lets the device go. Exit 0 only if all of it worked.
 * Usage: bletest-central ADAPTER gatt|l2cap BYTES
 * With BLETEST_BULK_ONLY set it stops after the central->peripheral transfer (bench/). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "ble.h"
#include "bletest_impl.h"

enum phase {
	PH_WAIT,
	PH_ECHO,
	PH_BULK_OUT,
	PH_BULK_IN,
	PH_DROP,
	PH_ECHO_AGAIN,
	PH_BULK_AGAIN,
	PH_FREED,
};

static struct {
	struct event_base *base;
	struct ble_central *c;
	struct transport *t;
	const char *kind;
	enum phase ph;
	uint32_t bytes;
	unsigned int echo_i;
	struct bletest_bulk bulk;
	double t0, t_drop;
	int disconnects, result;
	bool announced; /* the CONNECTED that follows the hand-out */
	char addr[18];
} st = {.result = 1};

static const size_t echo_sizes[] = {1, 2, 5, 20, 100, 0 /* mtu - 1 */, 0 /* mtu */};

static void
finish(int result)
{
	st.result = result;
	event_base_loopbreak(st.base);
}

static void
fail(const char *what, int err)
{
	fprintf(stderr, "bletest-central %s: FAIL: %s%s%s\n", st.kind, what, err ? ": " : "",
	    err ? strerror(-err) : "");
	finish(1);
}

static size_t
echo_size(unsigned int i)
{
	size_t mtu = transport_mtu(st.t);

	if (i == 5)
		return mtu - 1;
	if (i == 6)
		return mtu;
	return echo_sizes[i];
}

static void
send_echo(void)
{
	static uint8_t m[8192];
	size_t n = echo_size(st.echo_i);
	int r;

	m[0] = BLETEST_ECHO;
	for (size_t i = 1; i < n; i++)
		m[i] = (uint8_t)(i ^ st.echo_i);
	r = transport_send(st.t, m, n);
	if (r < 0)
		fail("send echo", r);
}

static void
start_bulk_out(uint32_t bytes)
{
	int r;

	bletest_bulk_start(&st.bulk, bytes);
	st.t0 = bletest_now();
	r = bletest_bulk_pump(st.t, &st.bulk);
	if (r < 0)
		fail("bulk send", r);
}

static void
report(const char *dir, uint32_t bytes, uint32_t msgs)
{
	double dt = bletest_now() - st.t0;

	printf("bletest-central %s: %s %u bytes in %u messages (MTU %zu) in %.3f s: %.1f kB/s\n",
	    st.kind, dir, bytes, msgs, transport_mtu(st.t), dt, (double)bytes / 1000.0 / dt);
	fflush(stdout);
}

static void
on_message(const uint8_t *m, size_t len)
{
	int r = 0;

	switch (m[0]) {
	case BLETEST_ECHOED:
		if ((st.ph != PH_ECHO && st.ph != PH_ECHO_AGAIN) || len != echo_size(st.echo_i)) {
			fail("unexpected echo", 0);
			return;
		}
		for (size_t i = 1; i < len; i++)
			if (m[i] != (uint8_t)(i ^ st.echo_i)) {
				fail("echo corrupted", 0);
				return;
			}
		if (++st.echo_i < sizeof(echo_sizes) / sizeof(echo_sizes[0])) {
			send_echo();
			return;
		}
		printf("bletest-central %s: echoes of 1..%zu bytes ok\n", st.kind,
		    transport_mtu(st.t));
		if (st.ph == PH_ECHO) {
			st.ph = PH_BULK_OUT;
			start_bulk_out(st.bytes);
		} else {
			st.ph = PH_BULK_AGAIN;
			start_bulk_out(64 * 1024);
		}
		return;
	case BLETEST_ACK:
		if (len < 5)
			break;
		st.bulk.acked_msgs = bletest_get32(m + 1);
		r = bletest_bulk_pump(st.t, &st.bulk);
		break;
	case BLETEST_DONE:
		if (len < 10 || !m[9] || bletest_get32(m + 5) != st.bulk.sent_bytes) {
			fail("the peripheral got the bulk data wrong", 0);
			return;
		}
		report("central->peripheral", st.bulk.sent_bytes, st.bulk.sent_msgs);
		if (st.ph == PH_BULK_OUT && getenv("BLETEST_BULK_ONLY")) {
			/* The benchmark's raw baseline needs only this figure. */
			st.ph = PH_FREED;
			transport_free(st.t);
			st.t = NULL;
			finish(0);
		} else if (st.ph == PH_BULK_OUT) {
			st.ph = PH_BULK_IN;
			memset(&st.bulk, 0, sizeof(st.bulk));
			st.t0 = bletest_now();
			r = bletest_send_u32s(st.t, BLETEST_PULL, st.bytes, 0, 1);
		} else {
			/* All done: let the device go, as the daemon does after an update. */
			st.ph = PH_FREED;
			transport_free(st.t);
			st.t = NULL;
			finish(0);
		}
		break;
	case BLETEST_DATA:
		r = bletest_bulk_rx(st.t, &st.bulk, m, len);
		break;
	case BLETEST_END: {
		bool ok = len >= 9 && st.bulk.rx_bad == 0 &&
			  bletest_get32(m + 1) == st.bulk.rx_msgs &&
			  bletest_get32(m + 5) == st.bulk.rx_bytes;

		if (!ok) {
			fprintf(stderr, "bad %u msgs %u/%u bytes %u/%u\n", st.bulk.rx_bad,
			    st.bulk.rx_msgs, bletest_get32(m + 1), st.bulk.rx_bytes,
			    bletest_get32(m + 5));
			fail("bulk data from the peripheral was wrong", 0);
			return;
		}
		report("peripheral->central", st.bulk.rx_bytes, st.bulk.rx_msgs);
		st.ph = PH_DROP;
		st.t_drop = bletest_now();
		{
			uint8_t d = BLETEST_DROP;
			r = transport_send(st.t, &d, 1);
		}
		break;
	}
	default:
		fail("unknown message", 0);
		return;
	}
	if (r < 0)
		fail("send", r);
}

static void
on_transport(struct transport *t, enum transport_event ev, const uint8_t *msg, size_t len, int err,
    void *arg)
{
	(void)t;
	(void)arg;
	switch (ev) {
	case TRANSPORT_EV_CONNECTED:
		if (!st.announced) {
			st.announced = true; /* the hand-out's own, from the loop */
			break;
		}
		printf("bletest-central %s: reconnected after %.1f s (kind %s, MTU %zu)\n", st.kind,
		    bletest_now() - st.t_drop,
		    transport_kind(st.t) == TRANSPORT_KIND_BLE_L2CAP ? "l2cap" : "gatt",
		    transport_mtu(st.t));
		if (st.ph != PH_DROP) {
			fail("connected again without a drop", 0);
			return;
		}
		st.ph = PH_ECHO_AGAIN;
		st.echo_i = 0;
		send_echo();
		break;
	case TRANSPORT_EV_MESSAGE:
		if (len > 0)
			on_message(msg, len);
		break;
	case TRANSPORT_EV_BAD_FRAME:
		fail("bad frame", 0);
		break;
	case TRANSPORT_EV_WRITABLE:
		if (bletest_bulk_pump(st.t, &st.bulk) < 0)
			fail("bulk send", 0);
		break;
	case TRANSPORT_EV_DISCONNECTED:
		st.disconnects++;
		printf("bletest-central %s: disconnected (%s)\n", st.kind,
		    err ? strerror(-err) : "orderly");
		if (st.ph != PH_DROP)
			fail("disconnected unexpectedly", err);
		break;
	}
}

static void
on_device(
    struct ble_central *c, struct transport *t, const char *address, const char *name, void *arg)
{
	(void)c;
	(void)arg;
	printf("bletest-central %s: %s (%s) handed out as %s, kind %s, MTU %zu\n", st.kind, address,
	    name ? name : "?", transport_name(t),
	    transport_kind(t) == TRANSPORT_KIND_BLE_L2CAP ? "l2cap" : "gatt", transport_mtu(t));
	fflush(stdout);
	if (st.t) {
		transport_free(t); /* only one device in this test */
		return;
	}
	snprintf(st.addr, sizeof(st.addr), "%s", address);
	st.t = t;
	transport_set_callback(t, on_transport, NULL, NULL);
	st.ph = PH_ECHO;
	st.echo_i = 0;
	send_echo();
}

static void
on_debug(const char *line, void *arg)
{
	(void)arg;
	printf("bletest-central %s: [%.3f] %s\n", st.kind, bletest_now(), line);
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	fail("timed out", 0);
}

static void
on_bus_lost(struct busev *be, int err, void *arg)
{
	(void)be;
	(void)arg;
	fail("lost the system bus", err);
}

int
main(int argc, char **argv)
{
	struct ble_central_config cfg = {.max_connections = 1, .scan_interval_s = 3};
	struct busev *be = NULL;
	struct event *timer;
	sd_bus *bus = NULL;
	int r;

	if (argc != 4 || (strcmp(argv[2], "gatt") && strcmp(argv[2], "l2cap"))) {
		fprintf(stderr, "usage: bletest-central ADAPTER gatt|l2cap BYTES\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	cfg.adapter = argv[1];
	if (getenv("BLETEST_DEBUG"))
		cfg.debug = on_debug;
	st.kind = argv[2];
	cfg.prefer = strcmp(argv[2], "l2cap") == 0 ? BLE_PREFER_L2CAP : BLE_PREFER_GATT;
	st.bytes = (uint32_t)strtoul(argv[3], NULL, 0);
	st.base = event_base_new();
	r = sd_bus_open_system(&bus);
	if (r < 0 || !st.base) {
		fprintf(stderr, "bletest-central: cannot connect to the system bus: %s\n",
		    strerror(-r));
		return 1;
	}
	r = busev_new(st.base, bus, on_bus_lost, NULL, &be);
	if (r >= 0)
		r = ble_central_new(st.base, be, &cfg, on_device, NULL, &st.c);
	if (r < 0) {
		fprintf(stderr, "bletest-central: cannot start: %s\n", strerror(-r));
		return 1;
	}
	timer = evtimer_new(st.base, on_timeout, NULL);
	event_add(timer, &(struct timeval){60, 0});
	event_base_dispatch(st.base);

	if (st.result == 0) {
		struct ble_central_stats s;

		ble_central_get_stats(st.c, &s);
		printf("bletest-central %s: PASS (disconnects seen %d, restarts %u)\n", st.kind,
		    st.disconnects, s.restarts);
	}
	transport_free(st.t);
	st.c = ble_central_free(st.c);
	/* Let the Disconnect/StopDiscovery calls leave before the bus goes. */
	sd_bus_flush(bus);
	busev_free(be);
	sd_bus_flush_close_unref(bus);
	event_free(timer);
	event_base_free(st.base);
	return st.result;
}
