/* The common transport object (transport.c) through a minimal kind: argument checks of
 * transport_send(), the CONNECTED/DISCONNECTED alternation, stats, callback registration, and
 * the deferred free when the owner frees a transport from inside its own callback. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "ck.h"
#include "transport_impl.h"

struct fake {
	struct transport t;
	size_t queued;
	int send_ret;
	bool *freed;
};

static struct fake *
fake_of(const struct transport *t)
{
	return transport_container_of(t, struct fake, t);
}

static int
fake_send(struct transport *t, const uint8_t *msg, size_t len)
{
	struct fake *f = fake_of(t);

	(void)msg;
	if (f->send_ret == 0)
		f->queued += len;
	return f->send_ret;
}

static size_t
fake_mtu(const struct transport *t)
{
	(void)t;
	return 100;
}

static size_t
fake_queued(const struct transport *t)
{
	return fake_of(t)->queued;
}

static void
fake_free(struct transport *t)
{
	struct fake *f = fake_of(t);

	*f->freed = true;
	free(f);
}

static const struct transport_ops fake_ops = {
    .send = fake_send,
    .mtu = fake_mtu,
    .queued = fake_queued,
    .free = fake_free,
};

static struct transport *
fake_new(bool *freed)
{
	struct fake *f = calloc(1, sizeof(*f));

	ck_assert_ptr_nonnull(f);
	*freed = false;
	f->freed = freed;
	ck_assert_int_eq(transport_init(&f->t, &fake_ops, TRANSPORT_KIND_TCP, "fake:%d", 7), 0);
	return &f->t;
}

START_TEST(send_checks)
{
	static const uint8_t msg[101];
	struct transport_stats st;
	bool freed;
	struct transport *t = fake_new(&freed);

	ck_assert_str_eq(transport_name(t), "fake:7");
	ck_assert_int_eq(transport_kind(t), TRANSPORT_KIND_TCP);
	ck_assert(!transport_connected(t));
	ck_assert_uint_eq(transport_mtu(t), 0);
	ck_assert_int_eq(transport_send(t, msg, 10), -ENOTCONN);
	t->up = true;
	ck_assert(transport_connected(t));
	ck_assert_uint_eq(transport_mtu(t), 100);
	ck_assert_int_eq(transport_send(t, msg, 0), -EINVAL);
	ck_assert_int_eq(transport_send(t, NULL, 5), -EINVAL);
	ck_assert_int_eq(transport_send(t, msg, 101), -EMSGSIZE);
	ck_assert_int_eq(transport_send(t, msg, 100), 0);
	ck_assert_uint_eq(transport_queued(t), 100);
	fake_of(t)->send_ret = -EAGAIN;
	ck_assert_int_eq(transport_send(t, msg, 1), -EAGAIN);
	transport_get_stats(t, &st);
	ck_assert_uint_eq(st.msgs_out, 1);
	transport_free(t);
	ck_assert(freed);
	transport_free(NULL);
}
END_TEST

struct log {
	enum transport_event ev[16];
	int err[16];
	unsigned int n;
	bool free_in_cb;
	bool freed_seen_in_cb;
	bool *freed;
};

static void
log_cb(struct transport *t, enum transport_event ev, const uint8_t *msg, size_t len, int err,
    void *arg)
{
	struct log *l = arg;

	(void)msg;
	(void)len;
	ck_assert_uint_lt(l->n, 16);
	l->ev[l->n] = ev;
	l->err[l->n++] = err;
	if (l->free_in_cb) {
		transport_free(t);
		/* Still whole: the free waits for the dispatch to end. */
		l->freed_seen_in_cb = *l->freed;
		ck_assert_str_eq(transport_name(t), "fake:7");
	}
}

START_TEST(alternation_and_stats)
{
	struct transport_stats st;
	struct log l = {0};
	bool freed;
	struct transport *t = fake_new(&freed);

	l.freed = &freed;
	transport_set_callback(t, log_cb, &l, NULL);
	/* DISCONNECTED before any CONNECTED, and CONNECTED twice, are swallowed. */
	ck_assert(transport_report(t, TRANSPORT_EV_DISCONNECTED, NULL, 0, -EIO));
	ck_assert(transport_report(t, TRANSPORT_EV_CONNECTED, NULL, 0, 0));
	ck_assert(transport_report(t, TRANSPORT_EV_CONNECTED, NULL, 0, 0));
	ck_assert(transport_report(t, TRANSPORT_EV_MESSAGE, (const uint8_t *)"x", 1, 0));
	ck_assert(transport_report(t, TRANSPORT_EV_BAD_FRAME, NULL, 9, 0));
	ck_assert(transport_report(t, TRANSPORT_EV_DISCONNECTED, NULL, 0, -EIO));
	ck_assert(transport_report(t, TRANSPORT_EV_DISCONNECTED, NULL, 0, -EIO));
	ck_assert(transport_report(t, TRANSPORT_EV_CONNECTED, NULL, 0, 0));
	ck_assert_uint_eq(l.n, 5);
	ck_assert_int_eq(l.ev[0], TRANSPORT_EV_CONNECTED);
	ck_assert_int_eq(l.ev[1], TRANSPORT_EV_MESSAGE);
	ck_assert_int_eq(l.ev[2], TRANSPORT_EV_BAD_FRAME);
	ck_assert_int_eq(l.ev[3], TRANSPORT_EV_DISCONNECTED);
	ck_assert_int_eq(l.err[3], -EIO);
	ck_assert_int_eq(l.ev[4], TRANSPORT_EV_CONNECTED);
	transport_get_stats(t, &st);
	ck_assert_uint_eq(st.msgs_in, 1);
	ck_assert_uint_eq(st.bad_frames, 1);
	ck_assert_uint_eq(st.reconnects, 1);
	transport_free(t);
	ck_assert(freed);
}
END_TEST

/* The owner frees from the callback while the kind holds no reference of its own: the report
 * keeps t alive through the callback and frees it on the way out. */
START_TEST(free_in_callback_report_holds)
{
	struct log l = {.free_in_cb = true};
	bool freed;
	struct transport *t = fake_new(&freed);

	l.freed = &freed;
	transport_set_callback(t, log_cb, &l, NULL);
	ck_assert(!transport_report(t, TRANSPORT_EV_CONNECTED, NULL, 0, 0));
	ck_assert(!l.freed_seen_in_cb);
	ck_assert(freed);
}
END_TEST

/* The kind holds a reference across its dispatch: the free happens at its unref, and later
 * reports in the same dispatch reach nobody. */
START_TEST(free_in_callback_kind_holds)
{
	struct log l = {.free_in_cb = true};
	bool freed;
	struct transport *t = fake_new(&freed);

	l.freed = &freed;
	transport_set_callback(t, log_cb, &l, NULL);
	transport_ref(t);
	ck_assert(!transport_report(t, TRANSPORT_EV_CONNECTED, NULL, 0, 0));
	ck_assert(!freed);
	ck_assert(!transport_report(t, TRANSPORT_EV_MESSAGE, (const uint8_t *)"x", 1, 0));
	ck_assert_uint_eq(l.n, 1);
	ck_assert(!transport_connected(t));
	ck_assert_int_eq(transport_send(t, (const uint8_t *)"x", 1), -ENOTCONN);
	transport_unref(t);
	ck_assert(freed);
}
END_TEST

static unsigned int destroyed[2];

static void
destroy_cb(void *arg)
{
	destroyed[*(int *)arg]++;
}

START_TEST(callback_destroy)
{
	static int a0 = 0, a1 = 1;
	bool freed;
	struct transport *t = fake_new(&freed);

	transport_set_callback(t, log_cb, &a0, destroy_cb);
	/* The same registration again keeps its data. */
	transport_set_callback(t, log_cb, &a0, destroy_cb);
	ck_assert_uint_eq(destroyed[0], 0);
	/* A new one releases the old data. */
	transport_set_callback(t, log_cb, &a1, destroy_cb);
	ck_assert_uint_eq(destroyed[0], 1);
	transport_free(t);
	ck_assert_uint_eq(destroyed[1], 1);
	ck_assert(freed);
}
END_TEST

static Suite *
transport_suite(void)
{
	Suite *s = suite_create("transport");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, send_checks);
	tcase_add_test(tc, alternation_and_stats);
	tcase_add_test(tc, free_in_callback_report_holds);
	tcase_add_test(tc, free_in_callback_kind_holds);
	tcase_add_test(tc, callback_destroy);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(transport_suite());
}
