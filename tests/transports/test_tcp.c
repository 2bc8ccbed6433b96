/* TCP and unix socket transports over loopback: listeners (IPv4, IPv6, dual-stack, unix with
 * stale-file handling and mode), the connection cap, round trips and every split, EOF, reset
 * and EPIPE, and connect-out with reconnect after the server restarts, by numeric address, by
 * a name from a hosts file, and by a name a local DNS server (started here) answers. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <event2/event.h>

#include "ck.h"
#include "harness.h"
#include "tcp.h"
#include "tnet.h"

#define WAIT_MS 10000

/* What a listener hands over. */
struct lrec {
	struct tcp_listener *l;
	struct transport *t[8];
	unsigned int n;
	int errs[8];
	unsigned int nerr;
	bool free_listener;
};

static struct rec *lrec_target;

/* Records the new connection and, as an owner must, sets its callback right away (to record
 * into lrec_target). */
static void
lrec_cb(struct tcp_listener *l, struct transport *t, int err, void *arg)
{
	struct lrec *r = arg;

	ck_assert_ptr_eq(l, r->l);
	if (t != NULL) {
		ck_assert_int_eq(err, 0);
		ck_assert_uint_lt(r->n, 8);
		r->t[r->n++] = t;
		if (lrec_target != NULL) {
			rec_clear(lrec_target);
			rec_init(lrec_target, t);
		}
	} else {
		ck_assert_int_lt(err, 0);
		ck_assert_uint_lt(r->nerr, 8);
		r->errs[r->nerr++] = err;
	}
	if (r->free_listener) {
		tcp_listener_free(l);
		r->l = NULL;
	}
}

struct lrec_wait {
	struct lrec *r;
	unsigned int n;
};

static bool
lrec_has(void *arg)
{
	struct lrec_wait *w = arg;

	return w->r->n >= w->n;
}

struct fixture {
	struct event_base *base;
	char *dir;
	char path[PATH_MAX + 32];
	struct lrec lr;
	struct rec rec;
	struct peer peer;
	int client;
};

static struct fixture fx;

static void
setup(void)
{
	memset(&fx, 0, sizeof(fx));
	fx.base = event_base_new();
	ck_assert_ptr_nonnull(fx.base);
	fx.dir = tdir_new("tcp");
	snprintf(fx.path, sizeof(fx.path), "%s/dev.sock", fx.dir);
	fx.client = -1;
	lrec_target = &fx.rec;
}

static void
teardown(void)
{
	unsigned int i;

	transport_free(fx.rec.t);
	rec_clear(&fx.rec);
	peer_clear(&fx.peer);
	for (i = 0; i < fx.lr.n; i++)
		if (fx.lr.t[i] != fx.rec.t && fx.lr.t[i] != NULL)
			transport_free(fx.lr.t[i]);
	tcp_listener_free(fx.lr.l);
	if (fx.client >= 0)
		close(fx.client);
	event_base_free(fx.base);
	tdir_rmrf(fx.dir);
	free(fx.dir);
}

static void
set_sun(struct sockaddr_un *sun, const char *path)
{
	ck_assert_uint_lt(strlen(path), sizeof(sun->sun_path));
	memcpy(sun->sun_path, path, strlen(path) + 1);
}

static void
set_nonblock(int fd)
{
	ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

/* A blocking connect (the kernel completes it from the backlog), then non-blocking. */
static int
client_inet(int family, const char *addr, uint16_t port)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		ck_assert_int_eq(inet_pton(AF_INET, addr, &s4->sin_addr), 1);
		len = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		ck_assert_int_eq(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
		len = sizeof(*s6);
	}
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&ss, len), 0);
	set_nonblock(fd);
	return fd;
}

static void
listen_on(enum transport_kind kind, const char *addr, const struct tcp_options *opt)
{
	ck_assert_int_eq(tcp_listener_new(fx.base, kind, addr, opt, lrec_cb, &fx.lr, &fx.lr.l), 0);
}

/* Waits for the next accepted connection and records its events in fx.rec. */
static struct transport *
accept_next(void)
{
	unsigned int n = fx.lr.n;
	struct lrec_wait w = {&fx.lr, n + 1};
	struct transport *t;

	ck_assert(tloop_until(fx.base, lrec_has, &w, WAIT_MS));
	ck_assert_uint_eq(fx.lr.n, n + 1);
	t = fx.lr.t[n];
	ck_assert_ptr_eq(fx.rec.t, t);
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_CONNECTED, 1, WAIT_MS));
	return t;
}

static void
make_msg(uint8_t *m, size_t n, uint32_t seq)
{
	size_t i;

	for (i = 0; i < n; i++)
		m[i] = (uint8_t)(i * 13 + seq);
}

/* Messages both ways between fx.rec.t and the raw peer fx.peer. */
static void
exchange(unsigned int rounds)
{
	uint8_t m[700];
	struct peer_wait pw = {&fx.peer, 0};
	unsigned int base_in = rec_count(&fx.rec, TRANSPORT_EV_MESSAGE), i;

	for (i = 0; i < rounds; i++) {
		size_t n = 1 + (i * 97) % sizeof(m);

		make_msg(m, n, i);
		peer_send(&fx.peer, m, n);
		ck_assert(
		    wait_event(fx.base, &fx.rec, TRANSPORT_EV_MESSAGE, base_in + i + 1, WAIT_MS));
		if (base_in + i < REC_MAX_MSGS) {
			ck_assert_uint_eq(fx.rec.lens[base_in + i], n);
			ck_assert_mem_eq(fx.rec.msgs[base_in + i], m, n);
		}
		ck_assert_int_eq(transport_send(fx.rec.t, m, n), 0);
		pw.msgs = fx.peer.msgs + 1;
		ck_assert(tloop_until(fx.base, peer_has_msgs, &pw, WAIT_MS));
		if (pw.msgs <= REC_MAX_MSGS)
			ck_assert_mem_eq(fx.peer.kept[pw.msgs - 1], m, n);
	}
}

static uint16_t
local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Finds our end of the TCP connection whose peer is at peer_port (the fd is private to the
 * transport; the test looks at the process's fds). */
static int
fd_with_peer_port(uint16_t peer_port)
{
	int fd;

	for (fd = 3; fd < 1024; fd++) {
		struct sockaddr_in sin;
		socklen_t len = sizeof(sin);

		if (getpeername(fd, (struct sockaddr *)&sin, &len) == 0 &&
		    sin.sin_family == AF_INET && ntohs(sin.sin_port) == peer_port)
			return fd;
	}
	return -1;
}

static int
sockopt(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	ck_assert_int_eq(getsockopt(fd, level, name, &v, &len), 0);
	return v;
}

START_TEST(tcp_listener_round_trip)
{
	char name[64];
	struct transport *t;

	listen_on(TRANSPORT_KIND_TCP, "127.0.0.1:0", NULL);
	ck_assert_uint_gt(tcp_listener_port(fx.lr.l), 0);
	snprintf(name, sizeof(name), "tcp:127.0.0.1:%u", tcp_listener_port(fx.lr.l));
	ck_assert_str_eq(tcp_listener_name(fx.lr.l), name);
	fx.client = client_inet(AF_INET, "127.0.0.1", tcp_listener_port(fx.lr.l));
	peer_init(&fx.peer, fx.client);
	t = accept_next();
	snprintf(name, sizeof(name), "tcp:127.0.0.1:%u", local_port(fx.client));
	ck_assert_str_eq(transport_name(t), name);
	ck_assert_int_eq(transport_kind(t), TRANSPORT_KIND_TCP);
	ck_assert_uint_eq(tcp_listener_connections(fx.lr.l), 1);
	exchange(20);
	ck_assert_int_eq(fx.peer.first_byte, 0);
	/* Small messages go out at once, and a vanished peer is noticed idle or busy. */
	{
		int fd = fd_with_peer_port(local_port(fx.client));

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(sockopt(fd, IPPROTO_TCP, TCP_NODELAY), 1);
		ck_assert_int_eq(sockopt(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
		ck_assert_int_eq(sockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE), 30);
		ck_assert_int_eq(sockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 60000);
	}
	/* An orderly close by the peer: err 0, and the slot is free again. */
	close(fx.client);
	fx.client = -1;
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_DISCONNECTED, 1, WAIT_MS));
	ck_assert_int_eq(fx.rec.last_err, 0);
	ck_assert_uint_eq(tcp_listener_connections(fx.lr.l), 0);
	ck_assert_int_eq(transport_send(t, (const uint8_t *)"x", 1), -ENOTCONN);
	/* Accepted links never come back. */
	tloop_for(fx.base, 400);
	ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_CONNECTED), 1);
}
END_TEST

START_TEST(tcp_listener_any_and_ipv6)
{
	int fd6 = socket(AF_INET6, SOCK_STREAM, 0);
	struct transport *t;
	char name[64];

	listen_on(TRANSPORT_KIND_TCP, "*:0", NULL);
	fx.client = client_inet(AF_INET, "127.0.0.1", tcp_listener_port(fx.lr.l));
	peer_init(&fx.peer, fx.client);
	t = accept_next();
	/* A dual-stack listener's IPv4 peer is named in IPv4 form. */
	snprintf(name, sizeof(name), "tcp:127.0.0.1:%u", local_port(fx.client));
	ck_assert_str_eq(transport_name(t), name);
	exchange(3);
	if (fd6 < 0)
		return; /* no IPv6 in this sandbox */
	close(fd6);
	transport_free(t);
	fx.rec.t = NULL;
	fx.lr.t[0] = NULL;
	peer_clear(&fx.peer);
	close(fx.client);
	tcp_listener_free(fx.lr.l);
	memset(&fx.lr, 0, sizeof(fx.lr));
	if (tcp_listener_new(fx.base, TRANSPORT_KIND_TCP, "[::1]:0", NULL, lrec_cb, &fx.lr,
		&fx.lr.l) == -EADDRNOTAVAIL) {
		fx.client = -1;
		return; /* IPv6 without a loopback address */
	}
	ck_assert_ptr_nonnull(fx.lr.l);
	snprintf(name, sizeof(name), "tcp:[::1]:%u", tcp_listener_port(fx.lr.l));
	ck_assert_str_eq(tcp_listener_name(fx.lr.l), name);
	fx.client = client_inet(AF_INET6, "::1", tcp_listener_port(fx.lr.l));
	peer_init(&fx.peer, fx.client);
	t = accept_next();
	snprintf(name, sizeof(name), "tcp:[::1]:%u", local_port(fx.client));
	ck_assert_str_eq(transport_name(t), name);
	exchange(3);
}
END_TEST

struct bytes_wait {
	struct transport *t;
	uint64_t n;
};

static bool
bytes_in_reached(void *arg)
{
	struct bytes_wait *w = arg;
	struct transport_stats st;

	transport_get_stats(w->t, &st);
	return st.bytes_in >= w->n;
}

START_TEST(tcp_every_split)
{
	static uint8_t m[600], f[FRAME_ENCODED_MAX(600)];
	struct bytes_wait w = {0};
	size_t n, k;

	listen_on(TRANSPORT_KIND_TCP, "127.0.0.1:0", NULL);
	fx.client = client_inet(AF_INET, "127.0.0.1", tcp_listener_port(fx.lr.l));
	peer_init(&fx.peer, fx.client);
	w.t = accept_next();
	make_msg(m, sizeof(m), 5);
	n = frame_of(m, sizeof(m), f, sizeof(f));
	for (k = 1; k < n; k++) {
		peer_write(&fx.peer, f, k);
		w.n += k;
		ck_assert(tloop_until(fx.base, bytes_in_reached, &w, WAIT_MS));
		ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_MESSAGE), k - 1);
		peer_write(&fx.peer, f + k, n - k);
		w.n += n - k;
		ck_assert(
		    wait_event(fx.base, &fx.rec, TRANSPORT_EV_MESSAGE, (unsigned int)k, WAIT_MS));
	}
	ck_assert_uint_eq(rec_count(&fx.rec, TRANSPORT_EV_BAD_FRAME), 0);
	ck_assert_mem_eq(fx.rec.msgs[REC_MAX_MSGS - 1], m, sizeof(m));
}
END_TEST

START_TEST(unix_listener)
{
	struct tcp_options opt = {.mode = 0600};
	char name[PATH_MAX + 64];
	struct transport *t;
	struct stat st;

	listen_on(TRANSPORT_KIND_UNIX, fx.path, &opt);
	snprintf(name, sizeof(name), "unix:%s", fx.path);
	ck_assert_str_eq(tcp_listener_name(fx.lr.l), name);
	ck_assert_uint_eq(tcp_listener_port(fx.lr.l), 0);
	ck_assert_int_eq(lstat(fx.path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	fx.client = tnet_connect_unix(fx.path, true);
	peer_init(&fx.peer, fx.client);
	t = accept_next();
	snprintf(name, sizeof(name), "unix:%s#1", fx.path);
	ck_assert_str_eq(transport_name(t), name);
	ck_assert_int_eq(transport_kind(t), TRANSPORT_KIND_UNIX);
	exchange(10);
	/* A second listener on a live socket is refused, and leaves the file alone. */
	{
		struct tcp_listener *l2 = NULL;

		ck_assert_int_eq(tcp_listener_new(fx.base, TRANSPORT_KIND_UNIX, fx.path, NULL,
				     lrec_cb, &fx.lr, &l2),
		    -EADDRINUSE);
		ck_assert_ptr_null(l2);
		ck_assert_int_eq(lstat(fx.path, &st), 0);
	}
	/* The file goes with the listener; the accepted link stays. */
	tcp_listener_free(fx.lr.l);
	fx.lr.l = NULL;
	ck_assert_int_eq(lstat(fx.path, &st), -1);
	exchange(2);
}
END_TEST

START_TEST(unix_stale_and_obstacles)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct tcp_listener *l2 = NULL;
	char longpath[200];
	struct stat st;
	int fd;

	/* A socket file left by a dead process is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	set_sun(&sun, fx.path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ck_assert_int_eq(listen(fd, 1), 0);
	close(fd);
	listen_on(TRANSPORT_KIND_UNIX, fx.path, NULL);
	ck_assert_int_eq(lstat(fx.path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0660);
	/* A successor's file is not removed by the predecessor. */
	ck_assert_int_eq(unlink(fx.path), 0);
	ck_assert_int_eq(
	    tcp_listener_new(fx.base, TRANSPORT_KIND_UNIX, fx.path, NULL, lrec_cb, &fx.lr, &l2), 0);
	tcp_listener_free(fx.lr.l);
	fx.lr.l = NULL;
	ck_assert_int_eq(lstat(fx.path, &st), 0);
	tcp_listener_free(l2);
	ck_assert_int_eq(lstat(fx.path, &st), -1);
	/* A file that is no socket stays, and is reported. */
	fd = open(fx.path, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(
	    tcp_listener_new(fx.base, TRANSPORT_KIND_UNIX, fx.path, NULL, lrec_cb, &fx.lr, &l2),
	    -EEXIST);
	ck_assert_int_eq(lstat(fx.path, &st), 0);
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	ck_assert_int_eq(
	    tcp_listener_new(fx.base, TRANSPORT_KIND_UNIX, longpath, NULL, lrec_cb, &fx.lr, &l2),
	    -ENAMETOOLONG);
}
END_TEST

START_TEST(listener_bad_arguments)
{
	static const char *const bad[] = {"example.com:80", "127.0.0.1", "127.0.0.1:65536",
	    "127.0.0.1:-1", "127.0.0.1:http", "::1:80", "[::1]80", "[::1:80", ""};
	struct tcp_options opt = {.mode = 010000};
	struct tcp_listener *l = NULL;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(tcp_listener_new(fx.base, TRANSPORT_KIND_TCP, bad[i], NULL, lrec_cb,
				  NULL, &l) == -EINVAL,
		    "%s", bad[i]);
	ck_assert_int_eq(tcp_listener_new(fx.base, TRANSPORT_KIND_BLE_GATT, "127.0.0.1:0", NULL,
			     lrec_cb, NULL, &l),
	    -EINVAL);
	ck_assert_int_eq(
	    tcp_listener_new(fx.base, TRANSPORT_KIND_UNIX, fx.path, &opt, lrec_cb, NULL, &l),
	    -EINVAL);
	ck_assert_ptr_null(l);
	/* A port already taken. */
	listen_on(TRANSPORT_KIND_TCP, "127.0.0.1:0", NULL);
	{
		char addr[32];

		snprintf(addr, sizeof(addr), "127.0.0.1:%u", tcp_listener_port(fx.lr.l));
		ck_assert_int_eq(
		    tcp_listener_new(fx.base, TRANSPORT_KIND_TCP, addr, NULL, lrec_cb, NULL, &l),
		    -EADDRINUSE);
	}
	/* "localhost" binds loopback. */
	ck_assert_int_eq(
	    tcp_listener_new(fx.base, TRANSPORT_KIND_TCP, "localhost:0", NULL, lrec_cb, NULL, &l),
	    0);
	ck_assert(strncmp(tcp_listener_name(l), "tcp:127.0.0.1:", 14) == 0);
	tcp_listener_free(l);
}
END_TEST

static bool
peer_eof(void *arg)
{
	struct peer *p = arg;

	peer_poll(p);
	return p->eof;
}

START_TEST(connection_cap)
{
	struct tcp_options opt = {.max_connections = 1};
	struct peer second;
	int c2, c3;

	listen_on(TRANSPORT_KIND_TCP, "127.0.0.1:0", &opt);
	fx.client = client_inet(AF_INET, "127.0.0.1", tcp_listener_port(fx.lr.l));
	peer_init(&fx.peer, fx.client);
	accept_next();
	/* One too many: closed at once, and the owner told. */
	c2 = client_inet(AF_INET, "127.0.0.1", tcp_listener_port(fx.lr.l));
	peer_init(&second, c2);
	ck_assert(tloop_until(fx.base, peer_eof, &second, WAIT_MS));
	ck_assert_uint_eq(fx.lr.nerr, 1);
	ck_assert_int_eq(fx.lr.errs[0], -EUSERS);
	ck_assert_uint_eq(fx.lr.n, 1);
	close(c2);
	/* When the first goes down its slot is free, even before its owner frees it. */
	close(fx.client);
	fx.client = -1;
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_DISCONNECTED, 1, WAIT_MS));
	ck_assert_uint_eq(tcp_listener_connections(fx.lr.l), 0);
	c3 = client_inet(AF_INET, "127.0.0.1", tcp_listener_port(fx.lr.l));
	fx.client = c3;
	peer_clear(&fx.peer);
	peer_init(&fx.peer, c3);
	accept_next();
	exchange(2);
}
END_TEST

START_TEST(reset_by_peer)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	listen_on(TRANSPORT_KIND_TCP, "127.0.0.1:0", NULL);
	fx.client = client_inet(AF_INET, "127.0.0.1", tcp_listener_port(fx.lr.l));
	peer_init(&fx.peer, fx.client);
	accept_next();
	exchange(1);
	ck_assert_int_eq(setsockopt(fx.client, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(fx.client);
	fx.client = -1;
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_DISCONNECTED, 1, WAIT_MS));
	ck_assert_int_eq(fx.rec.last_err, -ECONNRESET);
}
END_TEST

/* Writing to a peer that no longer reads: EPIPE is reported, and no SIGPIPE (left at its
 * default, which would kill this test) is raised. */
START_TEST(broken_pipe)
{
	uint8_t m[100] = {1};

	listen_on(TRANSPORT_KIND_UNIX, fx.path, NULL);
	fx.client = tnet_connect_unix(fx.path, true);
	peer_init(&fx.peer, fx.client);
	accept_next();
	ck_assert_int_eq(shutdown(fx.client, SHUT_RD), 0);
	ck_assert_int_eq(transport_send(fx.rec.t, m, sizeof(m)), 0);
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_DISCONNECTED, 1, WAIT_MS));
	ck_assert_int_eq(fx.rec.last_err, -EPIPE);
}
END_TEST

START_TEST(free_listener_in_callback)
{
	fx.lr.free_listener = true;
	listen_on(TRANSPORT_KIND_TCP, "127.0.0.1:0", NULL);
	fx.client = client_inet(AF_INET, "127.0.0.1", tcp_listener_port(fx.lr.l));
	peer_init(&fx.peer, fx.client);
	accept_next();
	ck_assert_ptr_null(fx.lr.l);
	/* The accepted link outlives its listener. */
	exchange(3);
	close(fx.client);
	fx.client = -1;
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_DISCONNECTED, 1, WAIT_MS));
}
END_TEST

START_TEST(free_accepted_in_disconnected)
{
	listen_on(TRANSPORT_KIND_TCP, "127.0.0.1:0", NULL);
	fx.client = client_inet(AF_INET, "127.0.0.1", tcp_listener_port(fx.lr.l));
	peer_init(&fx.peer, fx.client);
	accept_next();
	fx.lr.t[0] = NULL;
	fx.rec.free_on[TRANSPORT_EV_DISCONNECTED] = true;
	close(fx.client);
	fx.client = -1;
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_DISCONNECTED, 1, WAIT_MS));
	ck_assert_ptr_null(fx.rec.t);
	ck_assert_uint_eq(tcp_listener_connections(fx.lr.l), 0);
	tloop_for(fx.base, 50);
}
END_TEST

/* --- connect-out ------------------------------------------------------------------------- */

/* A plain server socket, so connect-out is tested against something that is not our code. */
struct server {
	int lfd;
	int cfd;
	struct peer peer;
};

static void
server_listen_inet(struct server *s, uint16_t port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
	int on = 1;

	s->cfd = -1;
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(s->lfd, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)), 0);
	ck_assert_int_eq(bind(s->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(s->lfd, 4), 0);
}

static void
server_listen_unix(struct server *s, const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	s->cfd = -1;
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(s->lfd, 0);
	set_sun(&sun, path);
	unlink(path);
	ck_assert_int_eq(bind(s->lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ck_assert_int_eq(listen(s->lfd, 4), 0);
}

static bool
server_accepted(void *arg)
{
	struct server *s = arg;

	if (s->cfd < 0) {
		s->cfd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (s->cfd >= 0)
			peer_init(&s->peer, s->cfd);
	}
	return s->cfd >= 0;
}

static void
server_stop(struct server *s)
{
	peer_clear(&s->peer);
	if (s->cfd >= 0)
		close(s->cfd);
	close(s->lfd);
	s->cfd = s->lfd = -1;
}

/* Connects out, talks, loses the server, fails while it is away, then gets it back. */
/* An attempt to connect t was refused. */
static bool
refused(void *arg)
{
	return tcp_last_error(arg) == -ECONNREFUSED;
}

static void
reconnect_scenario(enum transport_kind kind, const char *addr, struct server *srv,
    const struct tcp_options *opt, void (*restart)(struct server *))
{
	struct peer_wait pw = {&srv->peer, 1};
	struct transport_stats st;
	struct transport *t;
	uint8_t m[40];

	ck_assert_int_eq(tcp_connect_new(fx.base, kind, addr, opt, &t), 0);
	rec_init(&fx.rec, t);
	ck_assert_int_eq(transport_kind(t), kind);
	ck_assert(tloop_until(fx.base, server_accepted, srv, WAIT_MS));
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_CONNECTED, 1, WAIT_MS));
	ck_assert_int_eq(tcp_last_error(t), 0);
	if (kind == TRANSPORT_KIND_TCP) {
		int fd = fd_with_peer_port(local_port(srv->lfd));

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(sockopt(fd, IPPROTO_TCP, TCP_NODELAY), 1);
		ck_assert_int_eq(sockopt(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
	}
	make_msg(m, sizeof(m), 1);
	ck_assert_int_eq(transport_send(t, m, sizeof(m)), 0);
	ck_assert(tloop_until(fx.base, peer_has_msgs, &pw, WAIT_MS));
	ck_assert_mem_eq(srv->peer.kept[0], m, sizeof(m));
	peer_send(&srv->peer, m, sizeof(m));
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_MESSAGE, 1, WAIT_MS));

	server_stop(srv);
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_DISCONNECTED, 1, WAIT_MS));
	ck_assert_int_eq(fx.rec.last_err, 0);
	/* the first attempt to reconnect fails */
	ck_assert(tloop_until(fx.base, refused, t, WAIT_MS));
	ck_assert_int_eq(tcp_last_error(t), -ECONNREFUSED);
	ck_assert(!transport_connected(t));

	restart(srv);
	ck_assert(tloop_until(fx.base, server_accepted, srv, WAIT_MS));
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_CONNECTED, 2, WAIT_MS));
	pw.msgs = 1;
	ck_assert_int_eq(transport_send(t, m, sizeof(m)), 0);
	ck_assert(tloop_until(fx.base, peer_has_msgs, &pw, WAIT_MS));
	transport_get_stats(t, &st);
	ck_assert_uint_eq(st.reconnects, 1);
	server_stop(srv);
}

static uint16_t srv_port;
static char srv_path[PATH_MAX + 32];

static void
restart_inet(struct server *s)
{
	server_listen_inet(s, srv_port);
}

static void
restart_unix(struct server *s)
{
	server_listen_unix(s, srv_path);
}

START_TEST(connect_out_tcp)
{
	struct server srv;
	char addr[64];

	server_listen_inet(&srv, 0);
	srv_port = local_port(srv.lfd);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", srv_port);
	reconnect_scenario(TRANSPORT_KIND_TCP, addr, &srv, NULL, restart_inet);
	{
		char name[80];

		snprintf(name, sizeof(name), "tcp:%s", addr);
		ck_assert_str_eq(transport_name(fx.rec.t), name);
	}
}
END_TEST

START_TEST(connect_out_unix)
{
	struct server srv;
	struct tcp_options opt = {0};

	snprintf(srv_path, sizeof(srv_path), "%s", fx.path);
	server_listen_unix(&srv, srv_path);
	reconnect_scenario(TRANSPORT_KIND_UNIX, srv_path, &srv, &opt, restart_unix);
}
END_TEST

/* A name from a hosts file: evdns answers it without any network. */
START_TEST(connect_out_hosts_name)
{
	struct evdns_base *dns = evdns_base_new(fx.base, 0);
	char hosts[PATH_MAX + 32], addr[64];
	struct tcp_options opt = {.dns = dns};
	struct server srv;
	FILE *f;

	ck_assert_ptr_nonnull(dns);
	snprintf(hosts, sizeof(hosts), "%s/hosts", fx.dir);
	f = fopen(hosts, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "127.0.0.1 devsim.otagw.test\n");
	fclose(f);
	ck_assert_int_eq(evdns_base_load_hosts(dns, hosts), 0);
	server_listen_inet(&srv, 0);
	srv_port = local_port(srv.lfd);
	snprintf(addr, sizeof(addr), "devsim.otagw.test:%u", srv_port);
	reconnect_scenario(TRANSPORT_KIND_TCP, addr, &srv, &opt, restart_inet);
	transport_free(fx.rec.t);
	fx.rec.t = NULL;
	evdns_base_free(dns, 0);
}
END_TEST

/* A tiny DNS server on loopback: A records for *.otagw.test names starting with "sim", no
 * answer at all for names starting with "mute", NXDOMAIN for the rest. */
static struct evdns_server_request *muted[16];
static unsigned int n_muted;

static void
dns_server_cb(struct evdns_server_request *req, void *arg)
{
	int i, answered = 0;

	(void)arg;
	for (i = 0; i < req->nquestions; i++) {
		const struct evdns_server_question *q = req->questions[i];
		uint32_t a = htonl(INADDR_LOOPBACK);

		if (strncasecmp(q->name, "mute", 4) == 0) {
			/* Never answered: the lookup stays pending until dropped at the end. */
			ck_assert_uint_lt(n_muted, 16);
			muted[n_muted++] = req;
			return;
		}
		if (q->type == EVDNS_TYPE_A && strncasecmp(q->name, "sim", 3) == 0) {
			evdns_server_request_add_a_reply(req, q->name, 1, &a, 60);
			answered++;
		}
	}
	evdns_server_request_respond(req, answered || req->nquestions == 0 ? 0 : DNS_ERR_NOTEXIST);
}

static struct evdns_server_port *
dns_server_start(struct evdns_base *dns, int *fd)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct evdns_server_port *port;
	char ns[32];

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	*fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(*fd, 0);
	ck_assert_int_eq(bind(*fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	port = evdns_add_server_port_with_base(fx.base, *fd, 0, dns_server_cb, NULL);
	ck_assert_ptr_nonnull(port);
	snprintf(ns, sizeof(ns), "127.0.0.1:%u", local_port(*fd));
	ck_assert_int_eq(evdns_base_nameserver_ip_add(dns, ns), 0);
	return port;
}

struct error_wait {
	struct transport *t;
};

/* The DNS server has held back a query. */
static bool
some_muted(void *arg)
{
	(void)arg;
	return n_muted > 0;
}

static bool
has_error(void *arg)
{
	struct error_wait *w = arg;

	return tcp_last_error(w->t) != 0;
}

/* Names resolved asynchronously by a DNS server: a known name connects, an unknown one keeps
 * failing with -EHOSTUNREACH, and freeing while a lookup is pending is clean. */
START_TEST(connect_out_dns)
{
	struct evdns_base *dns = evdns_base_new(fx.base, 0);
	struct tcp_options opt = {.dns = dns};
	struct evdns_server_port *port;
	struct transport *bad, *mute;
	struct error_wait ew;
	struct server srv;
	char addr[64];
	int ufd;

	ck_assert_ptr_nonnull(dns);
	port = dns_server_start(dns, &ufd);
	server_listen_inet(&srv, 0);
	srv_port = local_port(srv.lfd);
	snprintf(addr, sizeof(addr), "sim1.otagw.test:%u", srv_port);
	reconnect_scenario(TRANSPORT_KIND_TCP, addr, &srv, &opt, restart_inet);
	transport_free(fx.rec.t);
	fx.rec.t = NULL;

	snprintf(addr, sizeof(addr), "nothere.otagw.test:%u", srv_port);
	ck_assert_int_eq(tcp_connect_new(fx.base, TRANSPORT_KIND_TCP, addr, &opt, &bad), 0);
	ew.t = bad;
	ck_assert(tloop_until(fx.base, has_error, &ew, WAIT_MS));
	ck_assert_int_eq(tcp_last_error(bad), -EHOSTUNREACH);
	ck_assert(!transport_connected(bad));
	transport_free(bad);

	snprintf(addr, sizeof(addr), "mute.otagw.test:%u", srv_port);
	ck_assert_int_eq(tcp_connect_new(fx.base, TRANSPORT_KIND_TCP, addr, &opt, &mute), 0);
	ck_assert(tloop_until(fx.base, some_muted, NULL, WAIT_MS));
	ck_assert_uint_gt(n_muted, 0);
	transport_free(mute);
	/* Let libevent deliver the cancellation. */
	tloop_for(fx.base, 100);
	while (n_muted > 0)
		evdns_server_request_drop(muted[--n_muted]);
	evdns_close_server_port(port);
	close(ufd);
	evdns_base_free(dns, 1);
	tloop_for(fx.base, 50);
}
END_TEST

START_TEST(connect_out_bad_arguments)
{
	static const char *const bad[] = {"127.0.0.1", "127.0.0.1:0", ":80",
	    "[::1]:", "127.0.0.1:65536", "devsim.otagw.test:80", "[::1:80"};
	struct transport *t = NULL;
	char longpath[200];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(
		    tcp_connect_new(fx.base, TRANSPORT_KIND_TCP, bad[i], NULL, &t) == -EINVAL, "%s",
		    bad[i]);
	ck_assert_int_eq(tcp_connect_new(fx.base, TRANSPORT_KIND_UART, "x", NULL, &t), -EINVAL);
	ck_assert_int_eq(tcp_connect_new(fx.base, TRANSPORT_KIND_UNIX, "", NULL, &t), -EINVAL);
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	ck_assert_int_eq(
	    tcp_connect_new(fx.base, TRANSPORT_KIND_UNIX, longpath, NULL, &t), -ENAMETOOLONG);
	ck_assert_ptr_null(t);
}
END_TEST

START_TEST(connect_out_free_in_callbacks)
{
	struct server srv;
	struct transport *t;
	char addr[64];

	server_listen_inet(&srv, 0);
	srv_port = local_port(srv.lfd);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", srv_port);

	/* In CONNECTED. */
	ck_assert_int_eq(tcp_connect_new(fx.base, TRANSPORT_KIND_TCP, addr, NULL, &t), 0);
	rec_init(&fx.rec, t);
	fx.rec.free_on[TRANSPORT_EV_CONNECTED] = true;
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_CONNECTED, 1, WAIT_MS));
	ck_assert_ptr_null(fx.rec.t);
	ck_assert(tloop_until(fx.base, server_accepted, &srv, WAIT_MS));
	close(srv.cfd);
	srv.cfd = -1;

	/* In DISCONNECTED: no redial may fire on freed memory afterwards. */
	ck_assert_int_eq(tcp_connect_new(fx.base, TRANSPORT_KIND_TCP, addr, NULL, &t), 0);
	rec_init(&fx.rec, t);
	fx.rec.free_on[TRANSPORT_EV_DISCONNECTED] = true;
	ck_assert(tloop_until(fx.base, server_accepted, &srv, WAIT_MS));
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_CONNECTED, 1, WAIT_MS));
	close(srv.cfd);
	srv.cfd = -1;
	ck_assert(wait_event(fx.base, &fx.rec, TRANSPORT_EV_DISCONNECTED, 1, WAIT_MS));
	ck_assert_ptr_null(fx.rec.t);
	tloop_for(fx.base, 600);

	/* While the connect is still in progress or being retried. */
	ck_assert_int_eq(tcp_connect_new(fx.base, TRANSPORT_KIND_TCP, addr, NULL, &t), 0);
	transport_free(t);
	server_stop(&srv);
	ck_assert_int_eq(tcp_connect_new(fx.base, TRANSPORT_KIND_TCP, addr, NULL, &t), 0);
	tloop_for(fx.base, 300);
	transport_free(t);
	tloop_for(fx.base, 50);
}
END_TEST

static Suite *
tcp_suite(void)
{
	Suite *s = suite_create("tcp");
	TCase *tl = tcase_create("listen");
	TCase *tc = tcase_create("connect");

	tcase_add_checked_fixture(tl, setup, teardown);
	tcase_add_test(tl, tcp_listener_round_trip);
	tcase_add_test(tl, tcp_listener_any_and_ipv6);
	tcase_add_test(tl, tcp_every_split);
	tcase_add_test(tl, unix_listener);
	tcase_add_test(tl, unix_stale_and_obstacles);
	tcase_add_test(tl, listener_bad_arguments);
	tcase_add_test(tl, connection_cap);
	tcase_add_test(tl, reset_by_peer);
	tcase_add_test(tl, broken_pipe);
	tcase_add_test(tl, free_listener_in_callback);
	tcase_add_test(tl, free_accepted_in_disconnected);
	suite_add_tcase(s, tl);

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, connect_out_tcp);
	tcase_add_test(tc, connect_out_unix);
	tcase_add_test(tc, connect_out_hosts_name);
	tcase_add_test(tc, connect_out_dns);
	tcase_add_test(tc, connect_out_bad_arguments);
	tcase_add_test(tc, connect_out_free_in_callbacks);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(tcp_suite());
}
