/* The link emulator (bench/linkemu.c, run as the real program): bytes cross intact both ways
 * at BER 0; at BER 1e-3 about the expected number of bits flip, exactly the ones it reports,
 * reproducibly for a seed; UART transports on both ends lose corrupted frames and keep the rest;
 * a scripted drop gives a UART transport DISCONNECTED then CONNECTED; bad command lines are
 * refused. Speed is measured in bench/, not asserted here. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "ck.h"
#include "harness.h"
#include "tdata.h"
#include "tproc.h"
#include "uart.h"

#define WAIT_MS 20000

struct emu {
	struct tproc p;
	char *a, *b;
};

struct summary {
	unsigned int baud;
	unsigned long a2b, b2a, flipped, a2b_flipped, b2a_flipped, drops;
};

static char *dir;

static void
setup(void)
{
	dir = tdir_new("linkemu");
}

static void
teardown(void)
{
	tdir_rmrf(dir);
	free(dir);
}

/* otagw-linkemu followed by args (NULL-terminated), into argv (24 entries). */
static void
emu_argv(const char *argv[24], const char *const *args, const char *a, const char *b)
{
	int i = 0;

	argv[i++] = tproc_prog("OTAGW_LINKEMU");
	while (*args != NULL && i < 21)
		argv[i++] = *args++;
	if (a != NULL) {
		argv[i++] = a;
		argv[i++] = b;
	}
	argv[i] = NULL;
}

/* Runs the emulator with args (NULL-terminated, without the program and the two paths). Returns
 * its exit status; its stdout is in out (if not NULL). */
static int
emu_run(const char *const *args, char *out, size_t n)
{
	const char *argv[24];
	struct tproc p;
	int status;

	emu_argv(argv, args, NULL, NULL);
	status = tproc_run(&p, (char *const *)argv, NULL, WAIT_MS);
	if (out != NULL)
		snprintf(out, n, "%s", p.out);
	tproc_free(&p);
	return status;
}

/* Starts the emulator between dir/a and dir/b with extra args and waits for both links. */
static void
emu_start(struct emu *e, const char *const *args)
{
	const char *argv[24];
	uint64_t deadline = tclock_ms() + WAIT_MS;
	struct stat st;

	e->a = tdir_join(dir, "a");
	e->b = tdir_join(dir, "b");
	emu_argv(argv, args, e->a, e->b);
	tproc_spawn(&e->p, (char *const *)argv, NULL);
	while (stat(e->a, &st) < 0 || stat(e->b, &st) < 0) {
		ck_assert_msg(tproc_running(&e->p), "the emulator exited: %s", e->p.err);
		ck_assert_msg(tclock_ms() < deadline, "the emulator never made its links");
		tclock_sleep_ms(10);
	}
}

/* Stops the emulator with SIGTERM and parses its summary line. */
static void
emu_stop(struct emu *e, struct summary *s)
{
	struct stat st;

	ck_assert_int_eq(tproc_stop(&e->p, SIGTERM, WAIT_MS), 0);
	ck_assert_msg(sscanf(e->p.out,
			  "linkemu: baud=%u a2b=%lu b2a=%lu flipped=%lu a2b_flipped=%lu "
			  "b2a_flipped=%lu drops=%lu elapsed=",
			  &s->baud, &s->a2b, &s->b2a, &s->flipped, &s->a2b_flipped, &s->b2a_flipped,
			  &s->drops) == 7,
	    "summary: %s", e->p.out);
	/* The links are gone with it. */
	ck_assert_int_eq(lstat(e->a, &st), -1);
	ck_assert_int_eq(lstat(e->b, &st), -1);
	tproc_free(&e->p);
	free(e->a);
	free(e->b);
}

static int
open_end(const char *path)
{
	int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	return fd;
}

/* Pushes a[0..n) in at fa and b[0..m) in at fb, collecting what comes out at the other end. */
static void
pump(int fa, int fb, const uint8_t *a, size_t n, const uint8_t *b, size_t m, uint8_t *at_b,
    uint8_t *at_a)
{
	size_t wa = 0, wb = 0, ra = 0, rb = 0;
	uint64_t deadline = tclock_ms() + WAIT_MS;
	ssize_t r;

	while (ra < m || rb < n) {
		if (wa < n && (r = write(fa, a + wa, n - wa)) > 0)
			wa += (size_t)r;
		if (wb < m && (r = write(fb, b + wb, m - wb)) > 0)
			wb += (size_t)r;
		if (rb < n && (r = read(fb, at_b + rb, n - rb)) > 0)
			rb += (size_t)r;
		if (ra < m && (r = read(fa, at_a + ra, m - ra)) > 0)
			ra += (size_t)r;
		ck_assert_msg(tclock_ms() < deadline,
		    "stuck: sent %zu/%zu and %zu/%zu, got %zu and %zu", wa, n, wb, m, rb, ra);
		tclock_sleep_ms(1);
	}
}

static unsigned long
bit_diff(const uint8_t *x, const uint8_t *y, size_t n)
{
	unsigned long d = 0;
	size_t i;

	for (i = 0; i < n; i++)
		d += (unsigned long)__builtin_popcount((unsigned int)(x[i] ^ y[i]));
	return d;
}

START_TEST(intact_both_ways)
{
	static const char *const args[] = {"--baud", "1000000", NULL};
	static uint8_t a[60000], b[20000], at_a[20000], at_b[60000];
	struct summary s;
	struct emu e;
	int fa, fb;

	tdata_fill(a, sizeof(a), 1);
	tdata_fill(b, sizeof(b), 2);
	emu_start(&e, args);
	fa = open_end(e.a);
	fb = open_end(e.b);
	pump(fa, fb, a, sizeof(a), b, sizeof(b), at_b, at_a);
	ck_assert_mem_eq(at_b, a, sizeof(a));
	ck_assert_mem_eq(at_a, b, sizeof(b));
	close(fa);
	close(fb);
	emu_stop(&e, &s);
	ck_assert_uint_eq(s.baud, 1000000);
	ck_assert_uint_eq(s.a2b, sizeof(a));
	ck_assert_uint_eq(s.b2a, sizeof(b));
	ck_assert_uint_eq(s.flipped, 0);
	ck_assert_uint_eq(s.drops, 0);
}
END_TEST

/* 20000 bytes carry 160000 data bits: at 1e-3 about 160 flip (sd ~13). */
static unsigned long
flip_run(uint8_t *at_b, const char *seed)
{
	const char *const args[] = {"--baud", "2000000", "--ber", "1e-3", "--seed", seed, NULL};
	static uint8_t a[20000], none[1], at_a[1];
	struct summary s;
	struct emu e;
	int fa, fb;

	tdata_fill(a, sizeof(a), 3);
	emu_start(&e, args);
	fa = open_end(e.a);
	fb = open_end(e.b);
	pump(fa, fb, a, sizeof(a), none, 0, at_b, at_a);
	close(fa);
	close(fb);
	emu_stop(&e, &s);
	ck_assert_uint_eq(s.a2b, sizeof(a));
	ck_assert_uint_eq(s.b2a_flipped, 0);
	ck_assert_uint_eq(s.flipped, s.a2b_flipped);
	/* It flipped exactly what it says it flipped. */
	ck_assert_uint_eq(bit_diff(a, at_b, sizeof(a)), s.a2b_flipped);
	ck_assert_msg(
	    s.a2b_flipped >= 80 && s.a2b_flipped <= 260, "flipped %lu bits", s.a2b_flipped);
	return s.a2b_flipped;
}

START_TEST(bit_errors)
{
	static uint8_t run1[20000], run2[20000], run3[20000];

	flip_run(run1, "7");
	flip_run(run2, "7");
	ck_assert_mem_eq(run1, run2, sizeof(run1));
	flip_run(run3, "8");
	ck_assert(memcmp(run1, run3, sizeof(run1)) != 0);
}
END_TEST

/* The transport has received intact frames and frames with errors. */
static bool
good_and_bad_in(void *arg)
{
	struct transport_stats st;

	transport_get_stats(arg, &st);
	return st.msgs_in > 0 && st.bad_frames > 0;
}

/* A UART transport at each end, the line corrupting bits: frames with errors are dropped as
 * BAD_FRAME, the others arrive intact (the CRC sees to that), and the link goes on. */
START_TEST(uart_to_uart_with_errors)
{
	static const char *const args[] = {"--baud", "2000000", "--ber", "2e-4", NULL};
	struct event_base *base = event_base_new();
	struct transport *gw, *dev;
	struct rec rgw, rdev;
	struct transport_stats st;
	uint8_t m[100];
	unsigned int i, sent = 0;
	struct emu e;
	struct summary s;

	emu_start(&e, args);
	ck_assert_int_eq(uart_new(base, e.a, NULL, &gw), 0);
	ck_assert_int_eq(uart_new(base, e.b, NULL, &dev), 0);
	rec_init(&rgw, gw);
	rec_init(&rdev, dev);
	ck_assert(wait_event(base, &rgw, TRANSPORT_EV_CONNECTED, 1, WAIT_MS));
	ck_assert(wait_event(base, &rdev, TRANSPORT_EV_CONNECTED, 1, WAIT_MS));
	for (i = 0; i < 300; i++) {
		memset(m, (int)i, sizeof(m));
		m[0] = (uint8_t)i;
		if (transport_send(gw, m, sizeof(m)) == 0)
			sent++;
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	/* no deadline on the line: wait until both kinds of frame have arrived */
	ck_assert(tloop_until(base, good_and_bad_in, dev, WAIT_MS));
	transport_get_stats(dev, &st);
	ck_assert_uint_gt(st.msgs_in, 0);
	ck_assert_uint_gt(st.bad_frames, 0);
	ck_assert_uint_le(st.msgs_in, sent);
	for (i = 0; i < REC_MAX_MSGS && i < st.msgs_in; i++) {
		uint8_t want[100];

		ck_assert_uint_eq(rdev.lens[i], sizeof(want));
		memset(want, rdev.msgs[i][1], sizeof(want));
		want[0] = rdev.msgs[i][1];
		ck_assert_mem_eq(rdev.msgs[i], want, sizeof(want));
	}
	transport_free(gw);
	transport_free(dev);
	rec_clear(&rgw);
	rec_clear(&rdev);
	event_base_free(base);
	emu_stop(&e, &s);
	ck_assert_uint_gt(s.a2b_flipped, 0);
}
END_TEST

START_TEST(drop_gives_unplug_and_replug)
{
	static const char *const args[] = {
	    "--baud", "115200", "--drop-after-ms", "500", "--drop-for", "700", NULL};
	struct event_base *base = event_base_new();
	struct transport *t;
	struct rec r;
	struct peer p;
	uint8_t m[20] = "after the replug";
	struct summary s;
	struct emu e;

	emu_start(&e, args);
	ck_assert_int_eq(uart_new(base, e.b, NULL, &t), 0);
	rec_init(&r, t);
	ck_assert(wait_event(base, &r, TRANSPORT_EV_CONNECTED, 1, WAIT_MS));
	ck_assert(wait_event(base, &r, TRANSPORT_EV_DISCONNECTED, 1, WAIT_MS));
	ck_assert_int_eq(r.last_err, -EIO);
	ck_assert(wait_event(base, &r, TRANSPORT_EV_CONNECTED, 2, WAIT_MS));
	/* The far end is new too: a message crosses the new line. */
	peer_init(&p, open_end(e.a));
	peer_send(&p, m, sizeof(m));
	ck_assert(wait_event(base, &r, TRANSPORT_EV_MESSAGE, 1, WAIT_MS));
	ck_assert_mem_eq(r.msgs[0], m, sizeof(m));
	close(p.fd);
	transport_free(t);
	rec_clear(&r);
	event_base_free(base);
	emu_stop(&e, &s);
	ck_assert_uint_eq(s.drops, 1);
}
END_TEST

START_TEST(command_line)
{
	static const char *const help[] = {"--help", NULL};
	static const char *const bad_baud[] = {"--baud", "10", "x", "y", NULL};
	static const char *const bad_ber[] = {"--ber", "2", "x", "y", NULL};
	static const char *const one_path[] = {"x", NULL};
	char out[4096], file[PATH_MAX + 16];
	const char *not_a_link[4];
	struct stat st;
	int fd;

	ck_assert_int_eq(emu_run(help, out, sizeof(out)), 0);
	ck_assert_ptr_nonnull(strstr(out, "Usage: otagw-linkemu"));
	ck_assert_int_eq(emu_run(bad_baud, NULL, 0), 2);
	ck_assert_int_eq(emu_run(bad_ber, NULL, 0), 2);
	ck_assert_int_eq(emu_run(one_path, NULL, 0), 2);
	/* A file in the way is left alone. */
	snprintf(file, sizeof(file), "%s/file", dir);
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	not_a_link[0] = file;
	not_a_link[1] = "/nonexistent-dir/b";
	not_a_link[2] = NULL;
	ck_assert_int_eq(emu_run(not_a_link, NULL, 0), 2);
	ck_assert_int_eq(lstat(file, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
}
END_TEST

static Suite *
linkemu_suite(void)
{
	Suite *s = suite_create("linkemu");
	TCase *tc = tcase_create("emu");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, intact_both_ways);
	tcase_add_test(tc, bit_errors);
	tcase_add_test(tc, uart_to_uart_with_errors);
	tcase_add_test(tc, drop_gives_unplug_and_replug);
	tcase_add_test(tc, command_line);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(linkemu_suite());
}
