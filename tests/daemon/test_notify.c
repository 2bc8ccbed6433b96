/* sd_notify: a unix datagram socket of the test's own stands in for systemd's NOTIFY_SOCKET.
 * In-process: notify.c's messages, status sanitising, the watchdog timer and its pid check.
 * Through the real otagwd: STATUS= then READY=1, WATCHDOG=1 with WATCHDOG_USEC set,
 * RELOADING=1 (with MONOTONIC_USEC) then READY=1 on SIGHUP, and STOPPING=1 on SIGTERM. */
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ck.h"
#include "notify.h"
#include "tdir.h"
#include "tfile.h"
#include "tproc.h"

#define KEY     "0123456789abcdef0123456789abcdef"
#define TIMEOUT 60000 /* ms */

struct sock {
	char *dir, *path;
	int fd;
};

static void
sock_open(struct sock *s)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	s->dir = tdir_new("notify");
	s->path = tdir_join(s->dir, "notify");
	ck_assert_uint_lt(strlen(s->path), sizeof(sun.sun_path));
	strcpy(sun.sun_path, s->path);
	s->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(s->fd, 0);
	ck_assert_int_eq(bind(s->fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
}

static void
sock_close(struct sock *s)
{
	close(s->fd);
	tdir_rmrf(s->dir);
	free(s->path);
	free(s->dir);
}

/* The next datagram, NUL-terminated, or NULL after timeout_ms. */
static char *
sock_recv(struct sock *s, int timeout_ms)
{
	struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
	char buf[4096];
	ssize_t n;

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return NULL;
	n = recv(s->fd, buf, sizeof(buf) - 1, 0);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	return strdup(buf);
}

/* The next datagram that is not a watchdog ping. */
static char *
sock_recv_event(struct sock *s)
{
	char *m;

	while ((m = sock_recv(s, TIMEOUT)) != NULL && strcmp(m, "WATCHDOG=1") == 0)
		free(m);
	ck_assert_msg(m != NULL, "no notification within %d ms", TIMEOUT);
	return m;
}

static uint64_t
now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* RELOADING=1 carries MONOTONIC_USEC= of our CLOCK_MONOTONIC, taken before we looked. */
static void
check_reloading(const char *m, uint64_t before)
{
	const char *t = strstr(m, "MONOTONIC_USEC=");
	uint64_t usec;

	ck_assert_msg(strncmp(m, "RELOADING=1\n", 12) == 0, "got '%s'", m);
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(sscanf(t, "MONOTONIC_USEC=%" SCNu64, &usec), 1);
	ck_assert_uint_ge(usec, before);
	ck_assert_uint_le(usec, now_usec());
}

START_TEST(test_notify_messages)
{
	struct event_base *base = event_base_new();
	struct notify *n = NULL;
	struct sock s;
	uint64_t before;
	char *m;

	sock_open(&s);
	setenv("NOTIFY_SOCKET", s.path, 1);
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	ck_assert_int_eq(notify_new(base, &n), 0);
	ck_assert_uint_eq(notify_watchdog_usec(n), 0);

	notify_status(n, "%d devices, 1 transfer at %d %%", 3, 45);
	m = sock_recv(&s, TIMEOUT);
	ck_assert_str_eq(m, "STATUS=3 devices, 1 transfer at 45 %");
	free(m);

	/* A newline in a status (say, from a file name) cannot forge a field of its own. */
	notify_status(n, "bad\nREADY=1");
	m = sock_recv(&s, TIMEOUT);
	ck_assert_str_eq(m, "STATUS=bad READY=1");
	free(m);

	notify_ready(n, "Running");
	m = sock_recv(&s, TIMEOUT);
	ck_assert_str_eq(m, "READY=1\nSTATUS=Running");
	free(m);

	before = now_usec();
	notify_reloading(n, "Reloading");
	m = sock_recv(&s, TIMEOUT);
	check_reloading(m, before);
	ck_assert_ptr_nonnull(strstr(m, "\nSTATUS=Reloading"));
	free(m);

	notify_stopping(n, NULL);
	m = sock_recv(&s, TIMEOUT);
	ck_assert_str_eq(m, "STOPPING=1\nSTATUS=");
	free(m);

	/* A long status is cut, not sent oversized. */
	{
		char big[1000];

		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		notify_status(n, "%s", big);
		m = sock_recv(&s, TIMEOUT);
		ck_assert_uint_eq(strlen(m), strlen("STATUS=") + 256);
		free(m);
	}
	notify_free(n);
	notify_free(NULL);
	event_base_free(base);
	sock_close(&s);
}
END_TEST

START_TEST(test_notify_watchdog)
{
	struct event_base *base = event_base_new();
	struct notify *n = NULL;
	struct sock s;
	char pid[32];
	char *m;

	sock_open(&s);
	setenv("NOTIFY_SOCKET", s.path, 1);

	/* Meant for another process: no watchdog. */
	setenv("WATCHDOG_USEC", "1000000", 1);
	setenv("WATCHDOG_PID", "1", 1);
	ck_assert_int_eq(notify_new(base, &n), 0);
	ck_assert_uint_eq(notify_watchdog_usec(n), 0);
	notify_free(n);

	setenv("WATCHDOG_USEC", "soon", 1);
	unsetenv("WATCHDOG_PID");
	ck_assert_int_eq(notify_new(base, &n), -EINVAL);

	/* Ours: pings from the loop's timer. */
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	setenv("WATCHDOG_USEC", "200000", 1);
	ck_assert_int_eq(notify_new(base, &n), 0);
	ck_assert_uint_eq(notify_watchdog_usec(n), 200000);
	ck_assert_int_eq(event_base_loop(base, EVLOOP_ONCE), 0);
	m = sock_recv(&s, TIMEOUT);
	ck_assert_str_eq(m, "WATCHDOG=1");
	free(m);
	ck_assert_int_eq(event_base_loop(base, EVLOOP_ONCE), 0);
	m = sock_recv(&s, TIMEOUT);
	ck_assert_str_eq(m, "WATCHDOG=1");
	free(m);
	notify_free(n);
	event_base_free(base);
	sock_close(&s);
}
END_TEST

/* Without $NOTIFY_SOCKET every call does nothing. */
START_TEST(test_notify_not_systemd)
{
	struct event_base *base = event_base_new();
	struct notify *n = NULL;

	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	ck_assert_int_eq(notify_new(base, &n), 0);
	notify_ready(n, "x");
	notify_reloading(n, "x");
	notify_status(n, "x");
	notify_stopping(n, "x");
	notify_free(n);
	event_base_free(base);
}
END_TEST

static void
write_conf(const char *dir, const char *conf, const char *extra)
{
	tfile_template(conf, 0600, dir,
	    "[general]\nstate_dir = @DIR@\ncache_dir = @DIR@\n%s\n"
	    "[memfault]\nproject_key_file = @DIR@/key\n"
	    "[unix \"sim\"]\nlisten = @DIR@/sim.sock\n"
	    "[dbus]\nbus = none\n" /* never the machine's own bus */,
	    extra);
}

START_TEST(test_notify_otagwd)
{
	struct tproc p;
	struct sock s;
	char *conf, *key, *m, *env[4];
	uint64_t before;
	bool starting = false;

	sock_open(&s);
	conf = tdir_join(s.dir, "otagw.conf");
	key = tdir_join(s.dir, "key");
	tfile_write_str(key, 0600, KEY);
	write_conf(s.dir, conf, "");
	ck_assert_int_gt(asprintf(&env[0], "NOTIFY_SOCKET=%s", s.path), 0);
	env[1] = "WATCHDOG_USEC=100000";
	env[2] = "WATCHDOG_PID=self";
	env[3] = NULL;
	{
		char *argv[] = {(char *)tproc_prog("OTAGWD"), "-c", conf, NULL};

		tproc_spawn(&p, argv, env);
	}

	/* STATUS= lines, then READY=1 with the running status. */
	while ((m = sock_recv_event(&s)) != NULL && strstr(m, "READY=1") == NULL) {
		if (strcmp(m, "STATUS=Starting") == 0)
			starting = true;
		free(m);
	}
	ck_assert(starting);
	/* The status a person reads in `systemctl status`: devices, transfers, cache. */
	ck_assert_str_eq(m, "READY=1\nSTATUS=0 devices (0 connected), no transfers, cache 0 KiB");
	free(m);

	/* The watchdog pings from the main loop. */
	for (;;) {
		m = sock_recv(&s, TIMEOUT);
		ck_assert_msg(m != NULL, "no WATCHDOG=1 within %d ms", TIMEOUT);
		if (strcmp(m, "WATCHDOG=1") == 0)
			break;
		free(m);
	}
	free(m);

	/* SIGHUP: RELOADING=1, then READY=1 once the new configuration is in force. */
	write_conf(s.dir, conf, "max_transfers = 2\n[unix \"two\"]\nlisten = /run/two.sock");
	before = now_usec();
	ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
	m = sock_recv_event(&s);
	check_reloading(m, before);
	free(m);
	m = sock_recv_event(&s);
	ck_assert_str_eq(m, "READY=1\nSTATUS=0 devices (0 connected), no transfers, cache 0 KiB");
	free(m);

	/* A broken file: still READY=1 (the reload is over), on the previous configuration. */
	write_conf(s.dir, conf, "max_transfers = -2");
	ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
	m = sock_recv_event(&s);
	check_reloading(m, 0);
	free(m);
	m = sock_recv_event(&s);
	ck_assert_msg(
	    strncmp(m, "READY=1\nSTATUS=Running on the previous configuration: reloading ", 64) ==
		    0 &&
		strstr(m, "failed with 1 error (see the journal)") != NULL,
	    "got '%s'", m);
	free(m);

	ck_assert_int_eq(kill(p.pid, SIGTERM), 0);
	m = sock_recv_event(&s);
	ck_assert_str_eq(m, "STOPPING=1\nSTATUS=Stopping");
	free(m);
	ck_assert_int_eq(tproc_wait_exit(&p, TIMEOUT), 0);
	tproc_free(&p);
	free(env[0]);
	free(key);
	free(conf);
	sock_close(&s);
}
END_TEST

static Suite *
notify_suite(void)
{
	Suite *s = suite_create("notify");
	TCase *tc = tcase_create("notify");

	tcase_add_test(tc, test_notify_messages);
	tcase_add_test(tc, test_notify_watchdog);
	tcase_add_test(tc, test_notify_not_systemd);
	tcase_add_test(tc, test_notify_otagwd);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(notify_suite());
}
