/* The gateway sender on its own: configuration bounds, the start offset, limits and windows,
 * ACK validation, REWIND once per epoch, explicit rewinds, timeouts with backoff and giving up,
 * pauses, completion, a clock that wraps, and the payload size following the error rate. */
#include <check.h>
#include <string.h>

#include "ck.h"
#include "sender.h"

static struct sender s;

static struct sender_config
config(uint32_t size)
{
	struct sender_config c;

	memset(&c, 0, sizeof(c));
	c.size = size;
	c.max_payload = 1024;
	c.window = 4;
	c.max_stall_ms = 400;
	c.link = SENDER_LINK_STREAM;
	return c;
}

static struct msg_ack
ack(uint32_t offset, uint32_t limit, uint8_t epoch, uint8_t flags)
{
	struct msg_ack a = {offset, limit, epoch, flags};

	return a;
}

/* Polls and, while it says SEND, "sends" (checking each DATA is within bounds). Returns the
 * number of frames sent; *first is the first offset. */
static int
send_all(uint32_t now, uint32_t *first)
{
	struct sender_next nx;
	int n = 0;

	while (sender_poll(&s, now, &nx) == SENDER_SEND) {
		if (n == 0 && first)
			*first = nx.offset;
		ck_assert_uint_ge(nx.len, 1);
		ck_assert_uint_le(nx.offset + nx.len, s.size);
		sender_sent(&s, now);
		n++;
	}
	return n;
}

START_TEST(config_bounds)
{
	struct sender_config c = config(100);

	ck_assert_int_eq(sender_init(&s, &c, 0), 0);
	c.size = 0;
	ck_assert_int_eq(sender_init(&s, &c, 0), -1);
	c = config(100);
	c.window = 0;
	ck_assert_int_eq(sender_init(&s, &c, 0), -1);
	c = config(100);
	c.max_payload = PROTO_PAYLOAD_MIN - 1;
	ck_assert_int_eq(sender_init(&s, &c, 0), -1);
	c.max_payload = PROTO_PAYLOAD_MAX + 1;
	ck_assert_int_eq(sender_init(&s, &c, 0), -1);
	c = config(100);
	c.link = (enum sender_link)7;
	ck_assert_int_eq(sender_init(&s, &c, 0), -1);
	ck_assert_uint_eq(sender_wire_bytes(SENDER_LINK_STREAM, 1024), 1039);
	ck_assert_uint_eq(sender_wire_bytes(SENDER_LINK_PACKET, 1024), 1029);
}
END_TEST

START_TEST(starts_at_the_request)
{
	struct sender_config c = config(100000);
	struct sender_next nx;
	struct msg_ack a = ack(8192, 8192 + 4096, 0, 0);
	uint32_t first = 0;

	ck_assert_int_eq(sender_init(&s, &c, 0), 0);
	ck_assert_int_eq(sender_poll(&s, 0, &nx), SENDER_WAIT);
	ck_assert_int_eq(nx.has_wake, 0);
	ck_assert_int_eq(sender_ack(&s, &a, 0), SENDER_ACK_OK);
	ck_assert_int_eq(send_all(0, &first), 2); /* the initial window: two frames */
	ck_assert_uint_eq(first, 8192);
	/* Waiting for ACKs, with a retransmission deadline. */
	ck_assert_int_eq(sender_poll(&s, 0, &nx), SENDER_WAIT);
	ck_assert_int_eq(nx.has_wake, 1);
	ck_assert_uint_eq(nx.wake_ms, SENDER_RTO_INITIAL_MS);
}
END_TEST

START_TEST(limit_and_window_respected)
{
	struct sender_config c = config(100000);
	struct sender_next nx;
	struct msg_ack a = ack(0, 100, 0, 0);

	ck_assert_int_eq(sender_init(&s, &c, 0), 0);
	ck_assert_int_eq(sender_ack(&s, &a, 0), SENDER_ACK_OK);
	/* Only 100 bytes granted: one short frame, then wait. */
	ck_assert_int_eq(sender_poll(&s, 0, &nx), SENDER_SEND);
	ck_assert_uint_eq(nx.len, 100);
	sender_sent(&s, 0);
	ck_assert_int_eq(sender_poll(&s, 0, &nx), SENDER_WAIT);

	/* Window 1: one frame in flight, whatever the limit. */
	c.window = 1;
	ck_assert_int_eq(sender_init(&s, &c, 0), 0);
	a = ack(0, 100000, 0, 0);
	ck_assert_int_eq(sender_ack(&s, &a, 0), SENDER_ACK_OK);
	ck_assert_int_eq(send_all(0, NULL), 1);
	a = ack(1024, 100000, 0, 0);
	ck_assert_int_eq(sender_ack(&s, &a, 10), SENDER_ACK_OK);
	ck_assert_int_eq(send_all(10, NULL), 1);

	/* A frame that would cross the limit waits while others are in flight. */
	c.window = 4;
	ck_assert_int_eq(sender_init(&s, &c, 0), 0);
	a = ack(0, 1500, 0, 0);
	ck_assert_int_eq(sender_ack(&s, &a, 0), SENDER_ACK_OK);
	ck_assert_int_eq(send_all(0, NULL), 1); /* 1024; the 476 left wait for the next ACK */
	a = ack(1024, 1500, 0, 0);
	ck_assert_int_eq(sender_ack(&s, &a, 5), SENDER_ACK_OK);
	ck_assert_int_eq(sender_poll(&s, 5, &nx), SENDER_SEND);
	ck_assert_uint_eq(nx.offset, 1024);
	ck_assert_uint_eq(nx.len, 476);
}
END_TEST

START_TEST(ack_validation)
{
	struct sender_config c = config(10000);
	struct msg_ack a = ack(0, 10000, 0, 0);

	ck_assert_int_eq(sender_init(&s, &c, 0), 0);
	a.offset = 10001;
	a.limit = 10001;
	ck_assert_int_eq(sender_ack(&s, &a, 0), SENDER_ACK_BAD); /* past the image */
	a = ack(0, 10000, 0, 0);
	ck_assert_int_eq(sender_ack(&s, &a, 0), SENDER_ACK_OK);
	send_all(0, NULL); /* 0..2048 */
	a = ack(4096, 10000, 0, 0);
	ck_assert_int_eq(sender_ack(&s, &a, 1), SENDER_ACK_BAD); /* never sent */
	a = ack(1024, 10000, 0, 0);
	ck_assert_int_eq(sender_ack(&s, &a, 1), SENDER_ACK_OK);
	a = ack(0, 10000, 0, 0);
	ck_assert_int_eq(sender_ack(&s, &a, 2), SENDER_ACK_STALE);
	a = ack(1024, 1000, 0, 0);
	ck_assert_int_eq(sender_ack(&s, &a, 2), SENDER_ACK_BAD); /* limit below offset */
}
END_TEST

START_TEST(rewind_once_per_epoch)
{
	struct sender_config c = config(100000);
	struct sender_stats st;
	struct msg_ack a = ack(0, 100000, 0, 0);
	uint32_t first;
	int i;

	c.window = 8;
	ck_assert_int_eq(sender_init(&s, &c, 0), 0);
	ck_assert_int_eq(sender_ack(&s, &a, 0), SENDER_ACK_OK);
	send_all(0, NULL);
	for (i = 1; i <= 3; i++) {
		a = ack((uint32_t)i * 1024, 100000, 0, 0);
		ck_assert_int_eq(sender_ack(&s, &a, (uint32_t)i), SENDER_ACK_OK);
		send_all((uint32_t)i, NULL);
	}
	/* A lost frame at 3072: go back there, once for epoch 5. */
	a = ack(3072, 100000, 5, MSG_ACK_F_REWIND);
	ck_assert_int_eq(sender_ack(&s, &a, 10), SENDER_ACK_OK);
	ck_assert_int_gt(send_all(10, &first), 0);
	ck_assert_uint_eq(first, 3072);
	ck_assert_int_eq(sender_ack(&s, &a, 11), SENDER_ACK_OK); /* the same epoch again */
	ck_assert_int_eq(send_all(11, NULL), 0);                 /* no second go-back */
	a.epoch = 6;
	ck_assert_int_eq(sender_ack(&s, &a, 12), SENDER_ACK_OK);
	ck_assert_int_gt(send_all(12, &first), 0);
	ck_assert_uint_eq(first, 3072);
	sender_stats(&s, &st);
	ck_assert_uint_eq(st.rewinds, 2);
	ck_assert_uint_gt(st.bytes_resent, 0);
	ck_assert_uint_gt(st.ber_ppb, 0);

	/* An explicit rewind below what was acknowledged: the device re-fetches; not a line
	 * error. */
	a = ack(1024, 100000, 7, MSG_ACK_F_REWIND);
	ck_assert_int_eq(sender_ack(&s, &a, 13), SENDER_ACK_OK);
	ck_assert_int_gt(send_all(13, &first), 0);
	ck_assert_uint_eq(first, 1024);
	sender_stats(&s, &st);
	ck_assert_uint_eq(st.acked, 1024);
	ck_assert_uint_eq(st.rewinds, 3);
}
END_TEST

START_TEST(timeouts_back_off_and_give_up)
{
	struct sender_config c = config(100000);
	struct sender_next nx;
	struct sender_stats st;
	struct msg_ack a = ack(0, 100000, 0, 0);
	uint32_t now = 0, prev_gap = 0, first;
	int i;

	c.max_timeouts = 3;
	ck_assert_int_eq(sender_init(&s, &c, now), 0);
	ck_assert_int_eq(sender_ack(&s, &a, now), SENDER_ACK_OK);
	send_all(now, NULL);
	for (i = 0; i < 3; i++) {
		uint32_t wake;

		ck_assert_int_eq(sender_poll(&s, now, &nx), SENDER_WAIT);
		ck_assert_int_eq(nx.has_wake, 1);
		wake = nx.wake_ms;
		ck_assert_uint_gt(wake - now, prev_gap); /* the timeout doubles */
		prev_gap = wake - now;
		ck_assert_int_eq(sender_poll(&s, wake - 1, &nx), SENDER_WAIT);
		now = wake;
		ck_assert_int_eq(send_all(now, &first), 1); /* one frame after a timeout */
		ck_assert_uint_eq(first, 0);
	}
	ck_assert_int_eq(sender_poll(&s, now, &nx), SENDER_WAIT);
	ck_assert_int_eq(sender_poll(&s, nx.wake_ms, &nx), SENDER_FAILED);
	sender_stats(&s, &st);
	ck_assert_uint_eq(st.timeouts, 4);
}
END_TEST

/* A pause (limit == offset) adds the device's stall allowance to the timeout. */
START_TEST(pause_extends_timeout)
{
	struct sender_config c = config(100000);
	struct sender_next nx;
	struct msg_ack a = ack(0, 100000, 0, 0);

	ck_assert_int_eq(sender_init(&s, &c, 0), 0);
	ck_assert_int_eq(sender_ack(&s, &a, 0), SENDER_ACK_OK);
	send_all(0, NULL);
	a = ack(1024, 1024, 0, 0);
	ck_assert_int_eq(sender_ack(&s, &a, 20), SENDER_ACK_OK);
	ck_assert_int_eq(sender_poll(&s, 20, &nx), SENDER_WAIT);
	ck_assert_int_eq(nx.has_wake, 1);
	ck_assert_uint_ge(nx.wake_ms, 20 + SENDER_RTO_MIN_MS + c.max_stall_ms);
	/* The device resumes: sending continues, nothing was resent. */
	a = ack(2048, 8192, 0, 0);
	ck_assert_int_eq(sender_ack(&s, &a, 300), SENDER_ACK_OK);
	ck_assert_int_gt(send_all(300, NULL), 0);
	ck_assert_uint_eq(s.st.bytes_resent, 0);
}
END_TEST

START_TEST(completes)
{
	struct sender_config c = config(3000);
	struct sender_next nx;
	struct msg_ack a = ack(0, 3000, 0, 0);
	uint32_t now = 0;

	ck_assert_int_eq(sender_init(&s, &c, now), 0);
	ck_assert_int_eq(sender_ack(&s, &a, now), SENDER_ACK_OK);
	while (sender_poll(&s, now, &nx) != SENDER_COMPLETE) {
		send_all(now, NULL);
		now += 5;
		a = ack(s.next, 3000, 0, 0);
		ck_assert_int_eq(sender_ack(&s, &a, now), SENDER_ACK_OK);
		ck_assert_uint_lt(now, 1000);
	}
	ck_assert_uint_eq(s.st.bytes_sent, 3000);
	/* Keepalive ACKs during the device's verify pass change nothing. */
	a = ack(3000, 3000, 0, 0);
	ck_assert_int_eq(sender_ack(&s, &a, now), SENDER_ACK_OK);
	ck_assert_int_eq(sender_poll(&s, now + 100000, &nx), SENDER_COMPLETE);
}
END_TEST

/* The millisecond clock wraps mid-transfer: timeouts still fire after the RTO, not before. */
START_TEST(clock_wraps)
{
	struct sender_config c = config(100000);
	struct sender_next nx;
	uint32_t now = UINT32_MAX - 100;
	struct msg_ack a = ack(0, 100000, 0, 0);

	ck_assert_int_eq(sender_init(&s, &c, now), 0);
	ck_assert_int_eq(sender_ack(&s, &a, now), SENDER_ACK_OK);
	send_all(now, NULL);
	ck_assert_int_eq(sender_poll(&s, now + 500, &nx), SENDER_WAIT); /* wrapped, not due */
	ck_assert_uint_eq(nx.wake_ms, now + SENDER_RTO_INITIAL_MS);
	ck_assert_int_eq(sender_poll(&s, now + SENDER_RTO_INITIAL_MS, &nx), SENDER_SEND);
	ck_assert_uint_eq(nx.offset, 0);
}
END_TEST

/* Drives a transfer where every `every`-th frame is lost (reported by a REWIND), and returns the
 * payload size the sender settles on. */
static uint16_t
run_with_losses(int every, int frames)
{
	struct sender_stats st;
	uint32_t now = 0;
	uint8_t epoch = 0;
	int sent = 0;

	while (sent < frames) {
		struct sender_next nx;
		struct msg_ack a;

		ck_assert_int_eq(sender_poll(&s, now, &nx), SENDER_SEND);
		sender_sent(&s, now);
		now += 2;
		if (every && ++sent % every == 0)
			a = ack(nx.offset, nx.offset + 4 * s.payload, ++epoch, MSG_ACK_F_REWIND);
		else {
			a = ack(nx.offset + nx.len, nx.offset + nx.len + 4 * s.payload, epoch, 0);
			sent += every ? 0 : 1;
		}
		ck_assert_int_eq(sender_ack(&s, &a, now), SENDER_ACK_OK);
	}
	sender_stats(&s, &st);
	return st.payload;
}

START_TEST(payload_follows_error_rate)
{
	struct sender_config c = config(UINT32_MAX - 1);
	struct msg_ack a = ack(0, 4096, 0, 0);
	uint16_t noisy, clean;

	ck_assert_int_eq(sender_init(&s, &c, 0), 0);
	ck_assert_int_eq(sender_ack(&s, &a, 0), SENDER_ACK_OK);
	ck_assert_uint_eq(s.payload, 1024);
	/* One frame in 20 lost: frames of about 10^4 bits at a BER near 5e-6: shrink. */
	noisy = run_with_losses(20, 3000);
	ck_assert_uint_lt(noisy, 1024);
	ck_assert_uint_ge(noisy, SENDER_PAYLOAD_FLOOR);
	/* A clean line for a while: back to the maximum. */
	clean = run_with_losses(0, 20000);
	ck_assert_uint_eq(clean, 1024);
}
END_TEST

int
main(void)
{
	Suite *su = suite_create("sender");
	TCase *tc = tcase_create("sender");

	tcase_add_test(tc, config_bounds);
	tcase_add_test(tc, starts_at_the_request);
	tcase_add_test(tc, limit_and_window_respected);
	tcase_add_test(tc, ack_validation);
	tcase_add_test(tc, rewind_once_per_epoch);
	tcase_add_test(tc, timeouts_back_off_and_give_up);
	tcase_add_test(tc, pause_extends_timeout);
	tcase_add_test(tc, completes);
	tcase_add_test(tc, clock_wraps);
	tcase_add_test(tc, payload_follows_error_rate);
	suite_add_tcase(su, tc);
	return ck_main(su);
}
