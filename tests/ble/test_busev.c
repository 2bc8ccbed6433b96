/* busev: sd-bus on libevent, against a private dbus-daemon the test starts. Method calls, async
 * calls in bulk (enough to need POLLOUT), call timeouts (the timer), signals, calls made from
 * outside a dispatch, and the bus dying are all driven by one event_base. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "busev.h"
#include "ck.h"
#include "testbus.h"

#define T_PATH  "/org/otagw/Test"
#define T_IFACE "org.otagw.Test1"
#define T_NAME  "org.otagw.Test"

enum { BULK_CALLS = 64, BULK_BYTES = 64 * 1024, HUGE_BYTES = 32 * 1024 * 1024 };

struct fixture {
	struct testbus tb;
	struct event_base *base;
	struct event *guard;
	sd_bus *srv_bus, *cli_bus;
	struct busev *srv, *cli;
	sd_bus_message *hung; /* a call the server never answers */
	int echoes, pings, sums, timeouts, lost, lost_err;
	int want_lost;
	bool free_in_lost;
};

static struct fixture fx;

static void
guard_fired(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	ck_abort_msg("the event loop did not finish in time");
}

/* Server side. */
static int
srv_echo(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	const char *s;
	int r;

	(void)userdata;
	(void)err;
	r = sd_bus_message_read(m, "s", &s);
	if (r < 0)
		return r;
	return sd_bus_reply_method_return(m, "s", s);
}

static int
srv_sum(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	const void *p;
	size_t n;
	uint32_t sum = 0;
	int r;

	(void)userdata;
	(void)err;
	r = sd_bus_message_read_array(m, 'y', &p, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		sum += ((const uint8_t *)p)[i];
	return sd_bus_reply_method_return(m, "u", sum);
}

static int
srv_hang(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	(void)userdata;
	(void)err;
	fx.hung = sd_bus_message_ref(m);
	return 1; /* handled, reply later (never) */
}

static const sd_bus_vtable srv_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("Echo", "s", "s", srv_echo, 0),
    SD_BUS_METHOD("Sum", "ay", "u", srv_sum, 0),
    SD_BUS_METHOD("Hang", "", "", srv_hang, 0),
    SD_BUS_SIGNAL("Ping", "s", 0),
    SD_BUS_VTABLE_END,
};

static void
fx_lost(struct busev *be, int err, void *arg)
{
	(void)arg;
	fx.lost++;
	fx.lost_err = err;
	ck_assert_int_lt(err, 0);
	if (fx.free_in_lost) {
		if (be == fx.srv)
			fx.srv = busev_free(be);
		else
			fx.cli = busev_free(be);
	}
	if (fx.lost == fx.want_lost)
		event_base_loopbreak(fx.base);
}

static void
setup(void)
{
	memset(&fx, 0, sizeof(fx));
	ck_assert_int_eq(testbus_start(&fx.tb), 0);
	fx.base = event_base_new();
	ck_assert_ptr_nonnull(fx.base);
	fx.guard = evtimer_new(fx.base, guard_fired, NULL);
	event_add(fx.guard, &(struct timeval){60, 0});

	ck_assert_int_eq(testbus_connect(&fx.tb, &fx.srv_bus), 0);
	ck_assert_int_eq(testbus_connect(&fx.tb, &fx.cli_bus), 0);
	ck_assert_int_ge(
	    sd_bus_add_object_vtable(fx.srv_bus, NULL, T_PATH, T_IFACE, srv_vtable, NULL), 0);
	ck_assert_int_ge(sd_bus_request_name_async(fx.srv_bus, NULL, T_NAME, 0, NULL, NULL), 0);
	ck_assert_int_eq(busev_new(fx.base, fx.srv_bus, fx_lost, NULL, &fx.srv), 0);
	ck_assert_int_eq(busev_new(fx.base, fx.cli_bus, fx_lost, NULL, &fx.cli), 0);
}

static void
teardown(void)
{
	sd_bus_message_unref(fx.hung);
	fx.srv = busev_free(fx.srv);
	fx.cli = busev_free(fx.cli);
	sd_bus_flush_close_unref(fx.srv_bus);
	sd_bus_flush_close_unref(fx.cli_bus);
	event_free(fx.guard);
	event_base_free(fx.base);
	testbus_kill(&fx.tb);
}

/* The name is owned asynchronously: call through the server's unique name instead, which is
 * known once its Hello is answered. Wait for that on the loop. */
static const char *
srv_unique(void)
{
	const char *u = NULL;

	while (sd_bus_get_unique_name(fx.srv_bus, &u) < 0)
		ck_assert_int_eq(event_base_loop(fx.base, EVLOOP_ONCE), 0);
	return u;
}

static int
cli_echo_reply(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	const char *s;

	(void)err;
	ck_assert_msg(!sd_bus_message_is_method_error(m, NULL), "Echo failed: %s",
	    sd_bus_message_get_error(m)->message);
	ck_assert_int_ge(sd_bus_message_read(m, "s", &s), 0);
	ck_assert_str_eq(s, userdata);
	fx.echoes++;
	return 0;
}

static int
cli_ping(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	const char *s;

	(void)userdata;
	(void)err;
	ck_assert_int_ge(sd_bus_message_read(m, "s", &s), 0);
	ck_assert_str_eq(s, "hello");
	fx.pings++;
	event_base_loopbreak(fx.base);
	return 0;
}

/* Emits a signal from a timer, i.e. outside any busev dispatch: only busev_rearm() gets it out
 * if the direct write cannot complete, and it is what a daemon does from other callbacks. */
static void
emit_from_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	ck_assert_int_ge(sd_bus_emit_signal(fx.srv_bus, T_PATH, T_IFACE, "Ping", "s", "hello"), 0);
	busev_rearm(fx.srv);
}

static int
match_added(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	(void)m;
	(void)err;
	event_base_once(
	    fx.base, -1, EV_TIMEOUT, emit_from_timer, userdata, &(struct timeval){0, 1000});
	return 0;
}

START_TEST(test_call_and_signal)
{
	const char *dest = srv_unique();
	static char msg[] = "through the loop";

	ck_assert_int_ge(sd_bus_call_method_async(fx.cli_bus, NULL, dest, T_PATH, T_IFACE, "Echo",
			     cli_echo_reply, msg, "s", msg),
	    0);
	ck_assert_int_ge(sd_bus_match_signal_async(fx.cli_bus, NULL, NULL, T_PATH, T_IFACE, "Ping",
			     cli_ping, match_added, NULL),
	    0);
	busev_rearm(fx.cli);
	ck_assert_int_eq(event_base_dispatch(fx.base), 0);
	ck_assert_int_eq(fx.echoes, 1);
	ck_assert_int_eq(fx.pings, 1);
	ck_assert_int_eq(fx.lost, 0);
}
END_TEST

static int
cli_sum_reply(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	uint32_t sum = 0;

	(void)err;
	ck_assert_msg(!sd_bus_message_is_method_error(m, NULL), "Sum failed: %s",
	    sd_bus_message_get_error(m)->message);
	ck_assert_int_ge(sd_bus_message_read(m, "u", &sum), 0);
	ck_assert_uint_eq(sum, (uint32_t)(uintptr_t)userdata);
	if (++fx.sums == BULK_CALLS)
		event_base_loopbreak(fx.base);
	return 0;
}

START_TEST(test_bulk_async_calls)
{
	const char *dest = srv_unique();
	static uint8_t buf[BULK_BYTES];

	/* 4 MiB queued at once: more than the socket takes, so the rest waits for POLLOUT. */
	for (int i = 0; i < BULK_CALLS; i++) {
		sd_bus_message *m = NULL;
		uint32_t sum = 0;

		for (size_t j = 0; j < sizeof(buf); j++) {
			buf[j] = (uint8_t)(i + (int)j);
			sum += buf[j];
		}
		ck_assert_int_ge(
		    sd_bus_message_new_method_call(fx.cli_bus, &m, dest, T_PATH, T_IFACE, "Sum"),
		    0);
		ck_assert_int_ge(sd_bus_message_append_array(m, 'y', buf, sizeof(buf)), 0);
		ck_assert_int_ge(sd_bus_call_async(
				     fx.cli_bus, NULL, m, cli_sum_reply, (void *)(uintptr_t)sum, 0),
		    0);
		sd_bus_message_unref(m);
	}
	busev_rearm(fx.cli);
	ck_assert_int_eq(event_base_dispatch(fx.base), 0);
	ck_assert_int_eq(fx.sums, BULK_CALLS);
}
END_TEST

START_TEST(test_huge_message)
{
	const char *dest = srv_unique();
	sd_bus_message *m = NULL;
	uint8_t *buf = malloc(HUGE_BYTES);
	uint32_t sum = 0;

	/* One message far larger than the socket buffer (sd-bus raises it to 8 MiB), and nothing
	 * comes back until it is all written: only the EV_WRITE watch armed from
	 * sd_bus_get_events() moves it. */
	ck_assert_ptr_nonnull(buf);
	for (size_t j = 0; j < HUGE_BYTES; j++) {
		buf[j] = (uint8_t)(j * 7);
		sum += buf[j];
	}
	ck_assert_int_ge(
	    sd_bus_message_new_method_call(fx.cli_bus, &m, dest, T_PATH, T_IFACE, "Sum"), 0);
	ck_assert_int_ge(sd_bus_message_append_array(m, 'y', buf, HUGE_BYTES), 0);
	free(buf);
	fx.sums = BULK_CALLS - 1; /* the reply callback stops the loop at BULK_CALLS */
	ck_assert_int_ge(
	    sd_bus_call_async(fx.cli_bus, NULL, m, cli_sum_reply, (void *)(uintptr_t)sum, 0), 0);
	sd_bus_message_unref(m);
	busev_rearm(fx.cli);
	ck_assert_int_eq(event_base_dispatch(fx.base), 0);
	ck_assert_int_eq(fx.sums, BULK_CALLS);
}
END_TEST

static int
cli_hang_reply(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	(void)userdata;
	(void)err;
	ck_assert(sd_bus_message_is_method_error(m, SD_BUS_ERROR_NO_REPLY));
	fx.timeouts++;
	event_base_loopbreak(fx.base);
	return 0;
}

START_TEST(test_call_timeout)
{
	const char *dest = srv_unique();
	sd_bus_message *m = NULL;

	/* Nothing else happens on the bus: only the timer armed from sd_bus_get_timeout() can
	 * complete this call. */
	ck_assert_int_ge(
	    sd_bus_message_new_method_call(fx.cli_bus, &m, dest, T_PATH, T_IFACE, "Hang"), 0);
	ck_assert_int_ge(
	    sd_bus_call_async(fx.cli_bus, NULL, m, cli_hang_reply, NULL, 200 * 1000), 0);
	sd_bus_message_unref(m);
	busev_rearm(fx.cli);
	ck_assert_int_eq(event_base_dispatch(fx.base), 0);
	ck_assert_int_eq(fx.timeouts, 1);
	ck_assert_ptr_nonnull(fx.hung);
}
END_TEST

static void
kill_daemon(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	testbus_kill(&fx.tb);
}

START_TEST(test_bus_dies)
{
	(void)srv_unique();
	fx.want_lost = 2;
	fx.free_in_lost = _i == 1;
	event_base_once(fx.base, -1, EV_TIMEOUT, kill_daemon, NULL, &(struct timeval){0, 1000});
	ck_assert_int_eq(event_base_dispatch(fx.base), 0);
	ck_assert_int_eq(fx.lost, 2);
	ck_assert_int_lt(fx.lost_err, 0);
	if (fx.free_in_lost) {
		ck_assert_ptr_null(fx.srv);
		ck_assert_ptr_null(fx.cli);
	} else {
		ck_assert(busev_lost(fx.srv));
		ck_assert(busev_lost(fx.cli));
		busev_rearm(fx.cli); /* a no-op once lost */
	}
}
END_TEST

static int
cli_reply_then_free(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	(void)m;
	(void)userdata;
	(void)err;
	fx.cli = busev_free(fx.cli); /* deferred until the dispatch returns */
	fx.echoes++;
	event_base_loopbreak(fx.base);
	return 0;
}

START_TEST(test_free_inside_callback)
{
	const char *dest = srv_unique();

	ck_assert_int_ge(sd_bus_call_method_async(fx.cli_bus, NULL, dest, T_PATH, T_IFACE, "Echo",
			     cli_reply_then_free, NULL, "s", "x"),
	    0);
	busev_rearm(fx.cli);
	ck_assert_int_eq(event_base_dispatch(fx.base), 0);
	ck_assert_int_eq(fx.echoes, 1);
	ck_assert_ptr_null(fx.cli);
	/* The loop still runs without the freed watcher. */
	ck_assert_int_eq(event_base_loop(fx.base, EVLOOP_NONBLOCK), 0);
}
END_TEST

START_TEST(test_not_started)
{
	sd_bus *bus = NULL;
	struct busev *be = NULL;

	ck_assert_int_ge(sd_bus_new(&bus), 0);
	ck_assert_int_lt(busev_new(fx.base, bus, NULL, NULL, &be), 0);
	ck_assert_ptr_null(be);
	sd_bus_unref(bus);
	ck_assert_ptr_null(busev_free(NULL));
}
END_TEST

static Suite *
busev_suite(void)
{
	Suite *s = suite_create("busev");
	TCase *tc = tcase_create("private bus");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_call_and_signal);
	tcase_add_test(tc, test_bulk_async_calls);
	tcase_add_test(tc, test_huge_message);
	tcase_add_test(tc, test_call_timeout);
	tcase_add_loop_test(tc, test_bus_dies, 0, 2);
	tcase_add_test(tc, test_free_inside_callback);
	tcase_add_test(tc, test_not_started);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(busev_suite());
}
