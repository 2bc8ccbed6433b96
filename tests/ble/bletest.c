/* Bulk sender and receiver shared by the BLE VM test programs; see bletest.h. */
#include "bletest_impl.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double
bletest_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
bletest_send_u32s(struct transport *t, enum bletest_type type, uint32_t a, uint32_t b, int n)
{
	uint8_t m[9] = {(uint8_t)type};

	bletest_put32(m + 1, a);
	bletest_put32(m + 5, b);
	return transport_send(t, m, 1 + 4 * (size_t)n);
}

void
bletest_bulk_start(struct bletest_bulk *b, uint32_t total)
{
	memset(b, 0, sizeof(*b));
	b->total = total;
	b->sending = 1;
}

int
bletest_bulk_pump(struct transport *t, struct bletest_bulk *b)
{
	static uint8_t m[8192];
	size_t mtu = transport_mtu(t);

	while (b->sending && b->sent_bytes < b->total &&
	       b->sent_msgs - b->acked_msgs < 2 * BLETEST_WINDOW) {
		size_t len = b->total - b->sent_bytes;
		int r;

		if (len > mtu)
			len = mtu;
		if (len < 5)
			len = 5; /* the last message may carry a few bytes more than asked */
		m[0] = BLETEST_DATA;
		bletest_put32(m + 1, b->sent_msgs);
		for (size_t i = 5; i < len; i++)
			m[i] = bletest_byte(b->sent_msgs, i);
		r = transport_send(t, m, len);
		if (r == -EAGAIN)
			return 0; /* WRITABLE pumps again */
		if (r < 0)
			return r;
		b->sent_msgs++;
		b->sent_bytes += (uint32_t)len;
	}
	if (b->sending && b->sent_bytes >= b->total) {
		int r = bletest_send_u32s(t, BLETEST_END, b->sent_msgs, b->sent_bytes, 2);

		if (r == -EAGAIN)
			return 0;
		if (r < 0)
			return r;
		b->sending = 0;
	}
	return 0;
}

/* How often the receiver acknowledges: every BLETEST_WINDOW messages, or every n with
 * BLETEST_ACK_EVERY=n (the benchmark measures what acknowledging every message costs). */
static uint32_t
bletest_ack_every(void)
{
	static uint32_t every;

	if (!every) {
		const char *e = getenv("BLETEST_ACK_EVERY");
		unsigned long v = e ? strtoul(e, NULL, 10) : 0;

		every = v >= 1 && v <= BLETEST_WINDOW ? (uint32_t)v : BLETEST_WINDOW;
	}
	return every;
}

int
bletest_bulk_rx(struct transport *t, struct bletest_bulk *b, const uint8_t *msg, size_t len)
{
	bool bad = len < 5 || bletest_get32(msg + 1) != b->rx_msgs;

	for (size_t i = 5; i < len && !bad; i++)
		bad = msg[i] != bletest_byte(b->rx_msgs, i);
	if (bad && b->rx_bad++ == 0) {
		b->first_bad_seq = b->rx_msgs;
		b->first_bad_len = (uint32_t)len;
	}
	b->rx_msgs++;
	b->rx_bytes += (uint32_t)len;
	if (b->rx_msgs % bletest_ack_every() == 0)
		return bletest_send_u32s(t, BLETEST_ACK, b->rx_msgs, 0, 1);
	return 0;
}
