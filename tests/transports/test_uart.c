/* UART transport over pty pairs: the transport opens the slave (through a symlink, as with
 * /dev/serial/by-id/), the test plays the device on the master with hand-made frames. Covers
 * round trips, every split of the byte stream, garbage and corrupted and oversize frames,
 * back-pressure, exclusive open, unplug and replug, a device that appears late, termios2 rates,
 * and freeing the transport from inside each of its callbacks. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <asm/termbits.h>
#include <event2/event.h>

#include "ck.h"
#include "harness.h"
#include "uart.h"

#define WAIT_MS 10000

struct fixture {
	struct event_base *base;
	char *dir;
	char link[PATH_MAX + 16];
	char slave[64];
	int master;
	struct peer peer;
	struct rec rec;
};

static struct fixture fx;

/* A new pty pair behind fx.link; the test holds the master as fx.peer. */
static void
plug(void)
{
	fx.master = pty_open(fx.slave, sizeof(fx.slave));
	peer_init(&fx.peer, fx.master);
	symlink_replace(fx.slave, fx.link);
}

/* Closing the master hangs the slave up and removes its node, as a USB unplug does. */
static void
unplug(void)
{
	peer_clear(&fx.peer);
	close(fx.master);
	fx.master = -1;
}

static void
setup(void)
{
	memset(&fx, 0, sizeof(fx));
	fx.base = event_base_new();
	ck_assert_ptr_nonnull(fx.base);
	fx.dir = tdir_new("uart");
	snprintf(fx.link, sizeof(fx.link), "%s/ttyDEV", fx.dir);
	fx.master = -1;
}

static void
teardown(void)
{
	transport_free(fx.rec.t);
	rec_clear(&fx.rec);
	if (fx.master >= 0)
		unplug();
	event_base_free(fx.base);
	tdir_rmrf(fx.dir);
	free(fx.dir);
}

/* Plugs a device, opens the transport on it and waits for CONNECTED. */
static struct transport *
open_connected(const struct uart_options *opt)
{
	struct transport *t;
	char name[PATH_MAX + 32];

	plug();
	ck_assert_int_eq(uart_new(fx.base, fx.link, opt, &t), 0);
	rec_init(&fx.rec, t);
	snprintf(name, sizeof(name), "uart:%s", fx.link);
	ck_assert_str_eq(transport_name(t), name);
	ck_assert_int_eq(transport_kind(t), TRANSPORT_KIND_UART);
	ck_assert(transport_connected(t));
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_CONNECTED, 1, WAIT_MS));
	ck_assert_int_eq(uart_last_error(t), 0);
	return t;
}

static void
make_msg(uint8_t *m, size_t n, uint32_t seq)
{
	size_t i;

	for (i = 0; i < n; i++)
		m[i] = (uint8_t)(i * 7 + seq);
	if (n >= 4) {
		m[0] = (uint8_t)seq;
		m[1] = (uint8_t)(seq >> 8);
		m[2] = (uint8_t)(seq >> 16);
		m[3] = (uint8_t)(seq >> 24);
	}
}

static struct transport_stats
stats(void)
{
	struct transport_stats st;

	transport_get_stats(fx.rec.t, &st);
	return st;
}

struct bytes_wait {
	uint64_t n;
};

static bool
bytes_in_reached(void *arg)
{
	struct bytes_wait *w = arg;

	return stats().bytes_in >= w->n;
}

START_TEST(round_trip)
{
	static const size_t sizes[] = {1, 5, 253, 254, 255, 1000, FRAME_MSG_MAX};
	static uint8_t m[FRAME_MSG_MAX];
	struct peer_wait pw = {&fx.peer, 0};
	struct transport *t = open_connected(NULL);
	size_t i;

	ck_assert_uint_eq(transport_mtu(t), FRAME_MSG_MAX);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		make_msg(m, sizes[i], (uint32_t)i);
		/* device -> gateway */
		peer_send(&fx.peer, m, sizes[i]);
		ck_assert(wait_event(
		    fx.base, &fx.rec, TRANSPORT_EV_MESSAGE, (unsigned int)i + 1, WAIT_MS));
		ck_assert_uint_eq(fx.rec.lens[i], sizes[i]);
		ck_assert_mem_eq(fx.rec.msgs[i], m, sizes[i]);
		/* gateway -> device */
		ck_assert_int_eq(transport_send(t, m, sizes[i]), 0);
		pw.msgs = (unsigned int)i + 1;
		ck_assert(tloop_until(fx.base, peer_has_msgs, &pw, WAIT_MS));
		ck_assert_uint_eq(fx.peer.kept_len[i], sizes[i]);
		ck_assert_mem_eq(fx.peer.kept[i], m, sizes[i]);
	}
	/* The first frame after connect starts with a 0x00 that flushes line noise. */
	ck_assert_int_eq(fx.peer.first_byte, 0);
	ck_assert_uint_eq(fx.peer.bad, 0);
	ck_assert_int_eq(transport_send(t, m, FRAME_MSG_MAX + 1), -EMSGSIZE);
	ck_assert_uint_eq(stats().msgs_in, 7);
	ck_assert_uint_eq(stats().msgs_out, 7);
	ck_assert_uint_eq(stats().bytes_out, fx.peer.bytes);
	ck_assert_uint_eq(transport_queued(t), 0);
}
END_TEST

/* A 300-byte message (two COBS blocks) arriving in two pieces, split at every byte, and then
 * one byte at a time. */
START_TEST(every_split)
{
	static uint8_t m[300], f[FRAME_ENCODED_MAX(300)];
	struct bytes_wait w = {0};
	size_t n, k, i;

	open_connected(NULL);
	make_msg(m, sizeof(m), 1);
	m[10] = 0;
	m[200] = 0;
	n = frame_of(m, sizeof(m), f, sizeof(f));
	for (k = 1; k < n; k++) {
		peer_write(&fx.peer, f, k);
		w.n += k;
		ck_assert(tloop_until(fx.base, bytes_in_reached, &w, WAIT_MS));
		ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_MESSAGE), k - 1);
		peer_write(&fx.peer, f + k, n - k);
		ck_assert(
		    wait_event(fx.base, &fx.rec, TRANSPORT_EV_MESSAGE, (unsigned int)k, WAIT_MS));
		w.n += n - k;
	}
	for (i = 0; i < n; i++) {
		peer_write(&fx.peer, f + i, 1);
		w.n++;
		ck_assert(tloop_until(fx.base, bytes_in_reached, &w, WAIT_MS));
	}
	ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_MESSAGE), n);
	for (i = 0; i < REC_MAX_MSGS && i < n; i++)
		ck_assert_mem_eq(fx.rec.msgs[i], m, sizeof(m));
	ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_BAD_FRAME), 0);
}
END_TEST

START_TEST(garbage_and_corruption)
{
	static const uint8_t noise[] = {0x13, 0x37, 0xff, 0x42, 0x00};
	static const uint8_t short_frame[] = {0x02, 0x11, 0x00};
	uint8_t m[64], f[FRAME_ENCODED_MAX(64)];
	size_t n;

	open_connected(NULL);
	make_msg(m, sizeof(m), 3);
	n = frame_of(m, sizeof(m), f, sizeof(f));

	/* Line noise, then a good frame. */
	peer_write(&fx.peer, noise, sizeof(noise));
	peer_send(&fx.peer, m, sizeof(m));
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_MESSAGE, 1, WAIT_MS));
	ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_BAD_FRAME), 1);
	ck_assert_uint_eq(fx.rec.last_bad_len, 4);

	/* A flipped bit (bad CRC), then a good frame. */
	f[5] ^= 0x10;
	peer_write(&fx.peer, f, n);
	f[5] ^= 0x10;
	peer_write(&fx.peer, f, n);
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_MESSAGE, 2, WAIT_MS));
	ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_BAD_FRAME), 2);
	ck_assert_uint_eq(fx.rec.last_bad_len, n - 1);

	/* A frame cut short by a 0x00 inside a COBS block, then a good one. */
	peer_write(&fx.peer, f, n / 2);
	peer_write(&fx.peer, "", 1);
	peer_write(&fx.peer, f, n);
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_MESSAGE, 3, WAIT_MS));
	ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_BAD_FRAME), 3);

	/* Too short to hold a CRC. */
	peer_write(&fx.peer, short_frame, sizeof(short_frame));
	peer_write(&fx.peer, f, n);
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_MESSAGE, 4, WAIT_MS));
	ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_BAD_FRAME), 4);
	ck_assert_uint_eq(stats().bad_frames, 4);
	ck_assert_mem_eq(fx.rec.msgs[3], m, sizeof(m));
}
END_TEST

START_TEST(oversize_dropped)
{
	struct uart_options opt = {.stream = {.max_msg = 100}};
	static uint8_t m[200], f[FRAME_ENCODED_MAX(200)];
	struct transport *t = open_connected(&opt);

	ck_assert_uint_eq(transport_mtu(t), 100);
	make_msg(m, 101, 1);
	peer_write(&fx.peer, f, frame_of(m, 101, f, sizeof(f)));
	make_msg(m, 200, 2);
	peer_write(&fx.peer, f, frame_of(m, 200, f, sizeof(f)));
	make_msg(m, 100, 3);
	peer_send(&fx.peer, m, 100);
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_MESSAGE, 1, WAIT_MS));
	ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_BAD_FRAME), 2);
	ck_assert_uint_eq(fx.rec.lens[0], 100);
	ck_assert_mem_eq(fx.rec.msgs[0], m, 100);
	ck_assert_int_eq(transport_send(t, m, 101), -EMSGSIZE);
}
END_TEST

struct writable_wait {
	struct rec *r;
	struct peer *p;
};

static bool
drained_and_writable(void *arg)
{
	struct writable_wait *w = arg;

	peer_poll(w->p);
	return rec_count(w->r, TRANSPORT_EV_WRITABLE) >= 1;
}

/* The device does not read: the kernel's buffer fills, then ours, and send says -EAGAIN; once
 * the device reads again WRITABLE comes and everything arrives in order. */
START_TEST(back_pressure)
{
	struct uart_options opt = {.stream = {.max_msg = 512, .high_water = 4096}};
	struct writable_wait ww = {&fx.rec, &fx.peer};
	struct peer_wait pw = {&fx.peer, 0};
	uint8_t m[512];
	uint32_t seq = 0;
	uint64_t deadline;
	struct transport *t = open_connected(&opt);
	int r;

	fx.peer.check_seq = true;
	deadline = tclock_ms() + WAIT_MS;
	for (;;) {
		make_msg(m, sizeof(m), seq);
		r = transport_send(t, m, sizeof(m));
		if (r == -EAGAIN)
			break;
		ck_assert_int_eq(r, 0);
		seq++;
		if (seq % 4 == 0)
			event_base_loop(fx.base, EVLOOP_NONBLOCK);
		ck_assert_msg(tclock_ms() < deadline, "the queue never filled");
	}
	ck_assert_uint_ge(transport_queued(t), 4096);
	ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_WRITABLE), 0);
	/* Nothing was queued by the refused send. */
	ck_assert_uint_eq(stats().msgs_out, seq);
	ck_assert(tloop_until(fx.base, drained_and_writable, &ww, WAIT_MS));
	ck_assert_uint_lt(transport_queued(t), 2048);
	pw.msgs = seq;
	ck_assert(tloop_until(fx.base, peer_has_msgs, &pw, WAIT_MS));
	ck_assert(!fx.peer.seq_error);
	ck_assert_uint_eq(fx.peer.msgs, seq);
	ck_assert_uint_eq(fx.peer.bad, 0);
}
END_TEST

START_TEST(exclusive)
{
	struct transport *t2 = NULL;
	int fd, excl = -1;

	open_connected(NULL);
	ck_assert_int_eq(uart_new(fx.base, fx.link, NULL, &t2), -EBUSY);
	ck_assert_ptr_null(t2);
	/* TIOCEXCL is set while open (root passes it, so look rather than open), and given back
	 * on close; the lock goes with the fd. */
	fd = open(fx.slave, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ioctl(fd, TIOCGEXCL, &excl), 0);
	ck_assert_int_eq(excl, 1);
	transport_free(fx.rec.t);
	fx.rec.t = NULL;
	ck_assert_int_eq(ioctl(fd, TIOCGEXCL, &excl), 0);
	ck_assert_int_eq(excl, 0);
	close(fd);
	ck_assert_int_eq(uart_new(fx.base, fx.link, NULL, &t2), 0);
	transport_free(t2);
}
END_TEST

START_TEST(bad_arguments)
{
	struct uart_options opt = {0};
	struct transport *t = NULL;
	char file[PATH_MAX + 16];
	int fd;

	opt.baud = 49;
	ck_assert_int_eq(uart_new(fx.base, "/dev/null", &opt, &t), -EINVAL);
	opt.baud = 4000001;
	ck_assert_int_eq(uart_new(fx.base, "/dev/null", &opt, &t), -EINVAL);
	opt.baud = 0;
	opt.stream.max_msg = FRAME_MSG_MAX + 1;
	ck_assert_int_eq(uart_new(fx.base, fx.link, &opt, &t), -EINVAL);
	ck_assert_int_eq(uart_new(fx.base, "", NULL, &t), -EINVAL);
	/* Not a tty. */
	ck_assert_int_eq(uart_new(fx.base, "/dev/null", NULL, &t), -ENOTTY);
	snprintf(file, sizeof(file), "%s/plain", fx.dir);
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(uart_new(fx.base, file, NULL, &t), -ENOTTY);
	ck_assert_ptr_null(t);
}
END_TEST

/* termios2 takes any rate; a pty ignores it but must accept and report it. */
START_TEST(baud_rates)
{
	static const uint32_t rates[] = {9600, 115200, 250000, 921600, 1234567, 3000000, 4000000};
	size_t i;

	plug();
	for (i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		struct uart_options opt = {.baud = rates[i], .rtscts = i % 2 == 1};
		struct transport *t;
		struct termios2 tio;
		int fd;

		ck_assert_int_eq(uart_new(fx.base, fx.link, &opt, &t), 0);
		ck_assert(transport_connected(t));
		fd = open(fx.slave, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(ioctl(fd, TCGETS2, &tio), 0);
		ck_assert_uint_eq(tio.c_ospeed, rates[i]);
		ck_assert_uint_eq(tio.c_ispeed, rates[i]);
		ck_assert_uint_eq(tio.c_cflag & CSIZE, CS8);
		ck_assert_uint_eq(!!(tio.c_cflag & CRTSCTS), opt.rtscts);
		ck_assert_uint_eq(tio.c_lflag & (ICANON | ECHO | ISIG), 0);
		ck_assert_uint_eq(tio.c_cc[VMIN], 1);
		close(fd);
		transport_free(t);
	}
}
END_TEST

static bool
reopen_failed(void *arg)
{
	return uart_last_error(arg) < 0;
}

START_TEST(unplug_replug)
{
	uint8_t m[32];
	struct peer_wait pw = {&fx.peer, 1};
	struct transport *t = open_connected(NULL);
	struct transport_stats st;

	unplug();
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_DISCONNECTED, 1, WAIT_MS));
	ck_assert_int_eq(fx.rec.last_err, -EIO);
	ck_assert(!transport_connected(t));
	ck_assert_uint_eq(transport_mtu(t), 0);
	ck_assert_int_eq(transport_send(t, m, sizeof(m)), -ENOTCONN);
	/* Let a reopen fail on the dangling link first (the first retry is due after 250 ms; a
	 * loaded machine may take longer to get there, so wait for it rather than a fixed time). */
	ck_assert(tloop_until(fx.base, reopen_failed, t, WAIT_MS));
	plug();
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_CONNECTED, 2, WAIT_MS));
	ck_assert_int_eq(uart_last_error(t), 0);
	/* Same object, working again, both ways. */
	make_msg(m, sizeof(m), 9);
	ck_assert_int_eq(transport_send(t, m, sizeof(m)), 0);
	ck_assert(tloop_until(fx.base, peer_has_msgs, &pw, WAIT_MS));
	ck_assert_mem_eq(fx.peer.kept[0], m, sizeof(m));
	peer_send(&fx.peer, m, sizeof(m));
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_MESSAGE, 1, WAIT_MS));
	transport_get_stats(t, &st);
	ck_assert_uint_eq(st.reconnects, 1);
	ck_assert_int_eq(fx.rec.events[0], TRANSPORT_EV_CONNECTED);
	ck_assert_int_eq(fx.rec.events[1], TRANSPORT_EV_DISCONNECTED);
	ck_assert_int_eq(fx.rec.events[2], TRANSPORT_EV_CONNECTED);
}
END_TEST

START_TEST(appears_later)
{
	struct transport *t;

	ck_assert_int_eq(uart_new(fx.base, fx.link, NULL, &t), 0);
	rec_init(&fx.rec, t);
	ck_assert(!transport_connected(t));
	ck_assert_int_eq(uart_last_error(t), -ENOENT);
	tloop_for(fx.base, 400);
	ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_CONNECTED), 0);
	ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_DISCONNECTED), 0);
	plug();
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_CONNECTED, 1, WAIT_MS));
	ck_assert(transport_connected(t));
}
END_TEST

/* Freeing from inside each kind of callback: nothing more is reported and ASan sees no use
 * after free. */
START_TEST(free_in_message)
{
	uint8_t m[16], f[2 * FRAME_ENCODED_MAX(16)];
	size_t n;

	open_connected(NULL);
	fx.rec.free_on[TRANSPORT_EV_MESSAGE] = true;
	make_msg(m, sizeof(m), 1);
	/* Two frames in one read: the second must not be delivered. */
	n = frame_of(m, sizeof(m), f, sizeof(f));
	n += frame_of(m, sizeof(m), f + n, sizeof(f) - n);
	peer_write(&fx.peer, f, n);
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_MESSAGE, 1, WAIT_MS));
	ck_assert_ptr_null(fx.rec.t);
	tloop_for(fx.base, 50);
	ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_MESSAGE), 1);
}
END_TEST

START_TEST(free_in_bad_frame)
{
	static const uint8_t junk[] = {0x05, 0x01, 0x00, 0x05, 0x01, 0x00};

	open_connected(NULL);
	fx.rec.free_on[TRANSPORT_EV_BAD_FRAME] = true;
	peer_write(&fx.peer, junk, sizeof(junk));
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_BAD_FRAME, 1, WAIT_MS));
	tloop_for(fx.base, 50);
	ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_BAD_FRAME), 1);
}
END_TEST

START_TEST(free_in_connected)
{
	struct transport *t;

	plug();
	ck_assert_int_eq(uart_new(fx.base, fx.link, NULL, &t), 0);
	rec_init(&fx.rec, t);
	fx.rec.free_on[TRANSPORT_EV_CONNECTED] = true;
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_CONNECTED, 1, WAIT_MS));
	ck_assert_ptr_null(fx.rec.t);
	tloop_for(fx.base, 50);
}
END_TEST

START_TEST(free_in_disconnected)
{
	open_connected(NULL);
	fx.rec.free_on[TRANSPORT_EV_DISCONNECTED] = true;
	unplug();
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_DISCONNECTED, 1, WAIT_MS));
	ck_assert_ptr_null(fx.rec.t);
	/* No reopen timer is left behind to fire on freed memory. */
	plug();
	tloop_for(fx.base, 600);
	ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_CONNECTED), 1);
}
END_TEST

START_TEST(free_in_writable)
{
	struct uart_options opt = {.stream = {.max_msg = 512, .high_water = 4096}};
	struct writable_wait ww = {&fx.rec, &fx.peer};
	uint8_t m[512] = {1};
	uint64_t deadline = tclock_ms() + WAIT_MS;
	struct transport *t = open_connected(&opt);

	fx.rec.free_on[TRANSPORT_EV_WRITABLE] = true;
	while (transport_send(t, m, sizeof(m)) == 0) {
		event_base_loop(fx.base, EVLOOP_NONBLOCK);
		ck_assert(tclock_ms() < deadline);
	}
	ck_assert(tloop_until(fx.base, drained_and_writable, &ww, WAIT_MS));
	ck_assert_ptr_null(fx.rec.t);
	tloop_for(fx.base, 50);
}
END_TEST

static Suite *
uart_suite(void)
{
	Suite *s = suite_create("uart");
	TCase *tc = tcase_create("pty");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, every_split);
	tcase_add_test(tc, garbage_and_corruption);
	tcase_add_test(tc, oversize_dropped);
	tcase_add_test(tc, back_pressure);
	tcase_add_test(tc, exclusive);
	tcase_add_test(tc, bad_arguments);
	tcase_add_test(tc, baud_rates);
	tcase_add_test(tc, unplug_replug);
	tcase_add_test(tc, appears_later);
	tcase_add_test(tc, free_in_message);
	tcase_add_test(tc, free_in_bad_frame);
	tcase_add_test(tc, free_in_connected);
	tcase_add_test(tc, free_in_disconnected);
	tcase_add_test(tc, free_in_writable);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(uart_suite());
}
