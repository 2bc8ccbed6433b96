/* TCP and unix stream sockets: listeners that turn each accepted connection into a stream
 * transport, and connect-out transports that dial (resolving names with evdns, never blocking
 * the loop) and redial with backoff. */
#include "tcp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#define TCP_MAX_CONNECTIONS_DEFAULT 32u
#define TCP_UNIX_MODE_DEFAULT       0660u
#define TCP_BACKLOG                 64
/* Accepts per wakeup: enough to drain a burst, few enough to let other links run. */
#define TCP_ACCEPT_BURST      16
#define TCP_ACCEPT_PAUSE_S    1
#define TCP_CONNECT_TIMEOUT_S 10
#define TCP_BACKOFF_MIN_MS    250u
#define TCP_BACKOFF_MAX_MS    5000u
/* Keepalive finds a peer that vanished without a FIN (power cut, cable) in about a minute. */
#define TCP_KA_IDLE_S  30
#define TCP_KA_INTVL_S 10
#define TCP_KA_COUNT   3
/* Longest "HOST" or "PORT" part of an address. */
#define TCP_HOST_MAX 256
#define TCP_PORT_MAX 8
/* "[" IPv6 "]:" port */
#define TCP_ADDRSTR_MAX (INET6_ADDRSTRLEN + 8)

struct tcp_conn {
	struct stream s;
	/* Accepted connections: the listener while both live, and its list of them. */
	struct tcp_listener *listener;
	struct tcp_conn *prev, *next;
	bool counted; /* in listener->conns */
	/* Connect-out. */
	bool outgoing;
	char *host, *port;      /* TCP */
	struct sockaddr_un sun; /* unix */
	socklen_t sun_len;
	struct evdns_base *dns;
	struct evdns_getaddrinfo_request *req;
	struct evutil_addrinfo *ai;      /* the addresses of this round */
	struct evutil_addrinfo *ai_cur;  /* the next one to try */
	struct evutil_addrinfo *numeric; /* a numeric HOST, parsed once */
	int cfd;                         /* the socket connecting now */
	struct event *ev_connect;
	struct event *ev_retry;
	unsigned int backoff_ms;
	uint64_t up_since_ns;
	int last_error;
};

struct tcp_listener {
	struct event_base *base;
	enum transport_kind kind;
	int fd;
	struct event *ev_accept;
	struct event *ev_resume;
	struct stream_options stream;
	unsigned int max_connections;
	tcp_accept_cb cb;
	void *arg;
	char *name;
	uint16_t port;
	char *path; /* unix: the socket file, and its identity to remove only ours */
	dev_t dev;
	ino_t ino;
	unsigned int conns;
	unsigned long serial; /* names accepted unix connections */
	struct tcp_conn *list;
	unsigned int busy; /* callbacks running */
	bool dead;         /* freed from a callback */
};

static struct tcp_conn *
tcp_conn_of(struct transport *t)
{
	return transport_container_of(t, struct tcp_conn, s.t);
}

/* Splits "HOST:PORT" or "[HOST]:PORT" (HOST may be empty). Returns 0 or -EINVAL. */
static int
tcp_split(const char *addr, char host[TCP_HOST_MAX], char port[TCP_PORT_MAX])
{
	const char *colon, *h = addr;
	size_t hlen;

	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');

		if (end == NULL || end[1] != ':')
			return -EINVAL;
		h = addr + 1;
		hlen = (size_t)(end - h);
		colon = end + 1;
	} else {
		colon = strrchr(addr, ':');
		if (colon == NULL)
			return -EINVAL;
		hlen = (size_t)(colon - addr);
		/* A bare IPv6 address would split at its last colon: demand brackets. */
		if (memchr(addr, ':', hlen) != NULL)
			return -EINVAL;
	}
	if (hlen >= TCP_HOST_MAX || strlen(colon + 1) >= TCP_PORT_MAX)
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

/* Parses a decimal port in min..65535. Returns the port or -EINVAL. */
static int
tcp_parse_port(const char *s, int min)
{
	char *end;
	long v;

	if (s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > 65535)
		return -EINVAL;
	return (int)v;
}

/* "192.0.2.7:40112" or "[2001:db8::1]:40112"; an IPv4-mapped IPv6 address (a dual-stack
 * listener's IPv4 peer) prints as IPv4. */
static void
tcp_format_addr(const struct sockaddr *sa, char *buf, size_t n)
{
	char a[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], a, sizeof(a));
			snprintf(buf, n, "%s:%u", a, ntohs(s6->sin6_port));
		} else {
			inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
			snprintf(buf, n, "[%s]:%u", a, ntohs(s6->sin6_port));
		}
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(buf, n, "%s:%u", a, ntohs(s4->sin_port));
	} else {
		snprintf(buf, n, "?");
	}
}

/* Fills a unix socket address. Returns 0, -EINVAL or -ENAMETOOLONG. */
static int
tcp_unix_addr(const char *path, struct sockaddr_un *sun, socklen_t *len)
{
	size_t n = strlen(path);

	if (n == 0)
		return -EINVAL;
	if (n >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, n + 1);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	return 0;
}

/* Low latency for small protocol messages, and keepalive to notice a peer that vanished. Best
 * effort: a link works without them. */
static void
tcp_tune(int fd)
{
	int on = 1, idle = TCP_KA_IDLE_S, intvl = TCP_KA_INTVL_S, cnt = TCP_KA_COUNT;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* --- connections ------------------------------------------------------------------------- */

static void tcp_conn_start(struct tcp_conn *c);

/* Takes an accepted connection out of its listener's count (once). */
static void
tcp_conn_uncount(struct tcp_conn *c)
{
	if (c->listener != NULL && c->counted) {
		c->listener->conns--;
		c->counted = false;
	}
}

static void
tcp_conn_schedule_retry(struct tcp_conn *c)
{
	struct timeval tv = {
	    .tv_sec = c->backoff_ms / 1000,
	    .tv_usec = (suseconds_t)(c->backoff_ms % 1000) * 1000,
	};

	evtimer_add(c->ev_retry, &tv);
	c->backoff_ms *= 2;
	if (c->backoff_ms > TCP_BACKOFF_MAX_MS)
		c->backoff_ms = TCP_BACKOFF_MAX_MS;
}

static void
tcp_conn_stop_connecting(struct tcp_conn *c)
{
	if (c->ev_connect != NULL) {
		event_free(c->ev_connect);
		c->ev_connect = NULL;
	}
	if (c->cfd >= 0) {
		close(c->cfd);
		c->cfd = -1;
	}
}

/* A connect-out socket is connected: the link is up. */
static void
tcp_conn_established(struct tcp_conn *c, int fd)
{
	int r;

	if (c->s.t.kind == TRANSPORT_KIND_TCP)
		tcp_tune(fd);
	r = stream_attach(&c->s, fd, true);
	c->last_error = r;
	if (r < 0) {
		tcp_conn_schedule_retry(c);
		return;
	}
	c->up_since_ns = stream_now_ns();
}

static void tcp_conn_connect_cb(evutil_socket_t fd, short what, void *arg);

/* Starts connecting to one address. Returns 0 when connected or under way, else -errno. */
static int
tcp_conn_try(struct tcp_conn *c, const struct sockaddr *sa, socklen_t len)
{
	struct timeval tv = {.tv_sec = TCP_CONNECT_TIMEOUT_S};
	int fd, r;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, sa, len) == 0) {
		tcp_conn_established(c, fd);
		return 0;
	}
	r = -errno;
	if (r != -EINPROGRESS) {
		/* A unix socket whose backlog is full says EAGAIN: try again later. */
		close(fd);
		return r;
	}
	c->ev_connect = event_new(c->s.base, fd, EV_WRITE, tcp_conn_connect_cb, c);
	if (c->ev_connect == NULL || event_add(c->ev_connect, &tv) < 0) {
		if (c->ev_connect != NULL)
			event_free(c->ev_connect);
		c->ev_connect = NULL;
		close(fd);
		return -ENOMEM;
	}
	c->cfd = fd;
	return 0;
}

/* Tries the remaining addresses of this round in turn; after the last, waits and starts over. */
static void
tcp_conn_next(struct tcp_conn *c)
{
	while (c->ai_cur != NULL) {
		struct evutil_addrinfo *ai = c->ai_cur;
		int r;

		c->ai_cur = ai->ai_next;
		r = tcp_conn_try(c, ai->ai_addr, (socklen_t)ai->ai_addrlen);
		if (r == 0)
			return;
		c->last_error = r;
	}
	tcp_conn_schedule_retry(c);
}

static void
tcp_conn_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tcp_conn *c = arg;
	int err = 0;
	socklen_t len = sizeof(err);

	event_free(c->ev_connect);
	c->ev_connect = NULL;
	c->cfd = -1;
	if (what & EV_TIMEOUT)
		err = ETIMEDOUT;
	else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		close(fd);
		c->last_error = -err;
		tcp_conn_next(c);
		return;
	}
	tcp_conn_established(c, fd);
}

static void
tcp_conn_resolved_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct tcp_conn *c = arg;

	/* A cancel comes from tcp_conn_free(): c is gone by now. */
	if (result == EVUTIL_EAI_CANCEL)
		return;
	c->req = NULL;
	if (c->ai != NULL)
		evutil_freeaddrinfo(c->ai);
	c->ai = NULL;
	c->ai_cur = NULL;
	if (result != 0 || res == NULL) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		c->last_error = -EHOSTUNREACH;
		tcp_conn_schedule_retry(c);
		return;
	}
	c->ai = res;
	c->ai_cur = res;
	tcp_conn_next(c);
}

/* One round of connecting: resolve (names only), then try each address. */
static void
tcp_conn_start(struct tcp_conn *c)
{
	struct evutil_addrinfo hints = {
	    .ai_family = AF_UNSPEC,
	    .ai_socktype = SOCK_STREAM,
	    .ai_protocol = IPPROTO_TCP,
	};
	struct evdns_getaddrinfo_request *req;
	int r;

	if (c->s.t.kind == TRANSPORT_KIND_UNIX) {
		r = tcp_conn_try(c, (const struct sockaddr *)&c->sun, c->sun_len);
		if (r < 0) {
			c->last_error = r;
			tcp_conn_schedule_retry(c);
		}
		return;
	}
	if (c->numeric != NULL) {
		c->ai_cur = c->numeric;
		tcp_conn_next(c);
		return;
	}
	/* The callback may run before this returns (a name from /etc/hosts). */
	req = evdns_getaddrinfo(c->dns, c->host, c->port, &hints, tcp_conn_resolved_cb, c);
	if (req != NULL)
		c->req = req;
}

static void
tcp_conn_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	tcp_conn_start(arg);
}

static void
tcp_conn_lost(struct stream *s, int err)
{
	struct tcp_conn *c = tcp_conn_of(&s->t);

	(void)err;
	if (!c->outgoing) {
		tcp_conn_uncount(c);
		return;
	}
	if (stream_now_ns() - c->up_since_ns >= (uint64_t)TCP_BACKOFF_MAX_MS * 1000000u)
		c->backoff_ms = TCP_BACKOFF_MIN_MS;
	tcp_conn_schedule_retry(c);
}

static void
tcp_conn_free(struct transport *t)
{
	struct tcp_conn *c = tcp_conn_of(t);

	tcp_conn_uncount(c);
	if (c->listener != NULL) {
		if (c->prev != NULL)
			c->prev->next = c->next;
		else
			c->listener->list = c->next;
		if (c->next != NULL)
			c->next->prev = c->prev;
	}
	stream_cleanup(&c->s);
	tcp_conn_stop_connecting(c);
	if (c->req != NULL)
		evdns_getaddrinfo_cancel(c->req);
	if (c->ai != NULL)
		evutil_freeaddrinfo(c->ai);
	if (c->numeric != NULL)
		evutil_freeaddrinfo(c->numeric);
	if (c->ev_retry != NULL)
		event_free(c->ev_retry);
	free(c->host);
	free(c->port);
	free(c);
}

static const struct transport_ops tcp_conn_ops = {
    .send = stream_send,
    .mtu = stream_mtu,
    .queued = stream_queued,
    .free = tcp_conn_free,
};

static const struct stream_hooks tcp_conn_hooks = {
    .closing = NULL,
    .lost = tcp_conn_lost,
};

int
tcp_connect_new(struct event_base *base, enum transport_kind kind, const char *address,
    const struct tcp_options *opt, struct transport **out)
{
	struct tcp_options o = {0};
	char host[TCP_HOST_MAX], port[TCP_PORT_MAX];
	struct tcp_conn *c;
	int r;

	if (address == NULL || (kind != TRANSPORT_KIND_TCP && kind != TRANSPORT_KIND_UNIX))
		return -EINVAL;
	if (opt != NULL)
		o = *opt;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->outgoing = true;
	c->cfd = -1;
	c->backoff_ms = TCP_BACKOFF_MIN_MS;
	if (kind == TRANSPORT_KIND_UNIX) {
		r = tcp_unix_addr(address, &c->sun, &c->sun_len);
		if (r < 0)
			goto fail_early;
	} else {
		struct evutil_addrinfo hints = {
		    .ai_family = AF_UNSPEC,
		    .ai_socktype = SOCK_STREAM,
		    .ai_protocol = IPPROTO_TCP,
		    .ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV,
		};

		r = tcp_split(address, host, port);
		if (r == 0 && (host[0] == '\0' || tcp_parse_port(port, 1) < 0))
			r = -EINVAL;
		if (r < 0)
			goto fail_early;
		/* Numeric addresses need no resolver: parse them once, now. */
		if (evutil_getaddrinfo(host, port, &hints, &c->numeric) != 0) {
			c->numeric = NULL;
			if (o.dns == NULL) {
				r = -EINVAL;
				goto fail_early;
			}
		}
		c->dns = o.dns;
		c->host = strdup(host);
		c->port = strdup(port);
		if (c->host == NULL || c->port == NULL) {
			r = -ENOMEM;
			goto fail_early;
		}
	}
	r = stream_init(&c->s, base, &tcp_conn_ops, kind, &tcp_conn_hooks, &o.stream, "%s:%s",
	    kind == TRANSPORT_KIND_TCP ? "tcp" : "unix", address);
	if (r < 0)
		goto fail_early;
	/* From here on, tcp_conn_free() undoes everything. */
	c->ev_retry = evtimer_new(base, tcp_conn_retry_cb, c);
	if (c->ev_retry == NULL) {
		transport_free(&c->s.t);
		return -ENOMEM;
	}
	tcp_conn_start(c);
	*out = &c->s.t;
	return 0;
fail_early:
	if (c->numeric != NULL)
		evutil_freeaddrinfo(c->numeric);
	free(c->host);
	free(c->port);
	free(c);
	return r;
}

int
tcp_last_error(const struct transport *t)
{
	return transport_container_of(t, const struct tcp_conn, s.t)->last_error;
}

/* --- listeners --------------------------------------------------------------------------- */

static void tcp_listener_destroy(struct tcp_listener *l);

/* Wraps one accepted socket in a transport. Returns it, or NULL (fd closed). */
static struct tcp_conn *
tcp_listener_wrap(struct tcp_listener *l, int fd, const struct sockaddr *peer)
{
	struct tcp_conn *c = calloc(1, sizeof(*c));
	char addr[TCP_ADDRSTR_MAX];
	int r;

	if (c == NULL) {
		close(fd);
		return NULL;
	}
	c->cfd = -1;
	if (l->kind == TRANSPORT_KIND_TCP) {
		tcp_format_addr(peer, addr, sizeof(addr));
		r = stream_init(&c->s, l->base, &tcp_conn_ops, l->kind, &tcp_conn_hooks, &l->stream,
		    "tcp:%s", addr);
	} else {
		/* A unix peer has no address; number the connections of this socket. */
		r = stream_init(&c->s, l->base, &tcp_conn_ops, l->kind, &tcp_conn_hooks, &l->stream,
		    "unix:%s#%lu", l->path, ++l->serial);
	}
	if (r < 0) {
		free(c);
		close(fd);
		return NULL;
	}
	if (l->kind == TRANSPORT_KIND_TCP)
		tcp_tune(fd);
	if (stream_attach(&c->s, fd, true) < 0) {
		transport_free(&c->s.t);
		return NULL;
	}
	c->listener = l;
	c->next = l->list;
	if (l->list != NULL)
		l->list->prev = c;
	l->list = c;
	c->counted = true;
	l->conns++;
	return c;
}

/* Accepts one connection. Returns false when there is nothing more to accept now. */
static bool
tcp_listener_accept_one(struct tcp_listener *l)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct tcp_conn *c;
	int fd;

	fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		int err = -errno;
		struct timeval tv = {.tv_sec = TCP_ACCEPT_PAUSE_S};

		switch (err) {
		case -EAGAIN:
			return false;
		case -EMFILE:
		case -ENFILE:
		case -ENOBUFS:
		case -ENOMEM:
			/* The pending connection stays readable; without a pause the loop would
			 * spin on it. */
			event_del(l->ev_accept);
			evtimer_add(l->ev_resume, &tv);
			l->cb(l, NULL, err, l->arg);
			return false;
		default:
			/* ECONNABORTED and the network errors accept(2) passes on: the peer's
			 * problem, not the listener's. */
			return true;
		}
	}
	if (l->conns >= l->max_connections) {
		close(fd);
		l->cb(l, NULL, -EUSERS, l->arg);
		return true;
	}
	c = tcp_listener_wrap(l, fd, (const struct sockaddr *)&ss);
	if (c == NULL) {
		l->cb(l, NULL, -ENOMEM, l->arg);
		return true;
	}
	l->cb(l, &c->s.t, 0, l->arg);
	return true;
}

static void
tcp_listener_accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tcp_listener *l = arg;
	int i;

	(void)fd;
	(void)what;
	l->busy++;
	for (i = 0; i < TCP_ACCEPT_BURST && !l->dead; i++)
		if (!tcp_listener_accept_one(l))
			break;
	if (--l->busy == 0 && l->dead)
		tcp_listener_destroy(l);
}

static void
tcp_listener_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tcp_listener *l = arg;

	(void)fd;
	(void)what;
	event_add(l->ev_accept, NULL);
}

/* Binds a unix socket at l->path, replacing a dead socket file. Returns 0 or -errno. */
static int
tcp_listener_bind_unix(struct tcp_listener *l, int fd, const struct sockaddr_un *sun, socklen_t len)
{
	struct stat st;
	int probe, r;

	if (bind(fd, (const struct sockaddr *)sun, len) == 0)
		return 0;
	if (errno != EADDRINUSE)
		return -errno;
	if (lstat(l->path, &st) < 0)
		return -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	/* Only a socket nobody answers on is stale: a live daemon's stays. */
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (probe < 0)
		return -errno;
	r = connect(probe, (const struct sockaddr *)sun, len) == 0 ? 0 : -errno;
	close(probe);
	if (r != -ECONNREFUSED)
		return -EADDRINUSE;
	if (unlink(l->path) < 0 && errno != ENOENT)
		return -errno;
	if (bind(fd, (const struct sockaddr *)sun, len) < 0)
		return -errno;
	return 0;
}

/* Creates, binds and names the listening socket. Returns the fd or -errno. */
static int
tcp_listener_socket(struct tcp_listener *l, const char *address, unsigned int mode)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, on = 1, off = 0, r;

	if (l->kind == TRANSPORT_KIND_UNIX) {
		struct sockaddr_un sun;
		struct stat st;

		r = tcp_unix_addr(address, &sun, &len);
		if (r < 0)
			return r;
		l->path = strdup(address);
		if (l->path == NULL)
			return -ENOMEM;
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		r = tcp_listener_bind_unix(l, fd, &sun, len);
		if (r < 0) {
			close(fd);
			return r;
		}
		/* The mode is set before listen(): until then connecting is refused, so nobody
		 * gets in under the umask's mode. */
		if (chmod(l->path, mode) < 0 || lstat(l->path, &st) < 0) {
			r = -errno;
			close(fd);
			unlink(l->path);
			return r;
		}
		l->dev = st.st_dev;
		l->ino = st.st_ino;
		if (asprintf(&l->name, "unix:%s", address) < 0) {
			l->name = NULL;
			close(fd);
			return -ENOMEM;
		}
	} else {
		char host[TCP_HOST_MAX], port[TCP_PORT_MAX], addr[TCP_ADDRSTR_MAX];
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		int p;

		r = tcp_split(address, host, port);
		if (r < 0)
			return r;
		p = tcp_parse_port(port, 0);
		if (p < 0)
			return p;
		memset(&ss, 0, sizeof(ss));
		if (strcmp(host, "localhost") == 0)
			strcpy(host, "127.0.0.1");
		if (host[0] == '\0' || strcmp(host, "*") == 0) {
			/* Every address: one dual-stack IPv6 socket, or IPv4 where IPv6 is off. */
			s6->sin6_family = AF_INET6;
			s6->sin6_addr = in6addr_any;
			s6->sin6_port = htons((uint16_t)p);
			len = sizeof(*s6);
			fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (fd < 0 && errno == EAFNOSUPPORT) {
				memset(&ss, 0, sizeof(ss));
				s4->sin_family = AF_INET;
				s4->sin_addr.s_addr = htonl(INADDR_ANY);
				s4->sin_port = htons((uint16_t)p);
				len = sizeof(*s4);
				fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			} else if (fd >= 0) {
				setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
			}
		} else if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
			s4->sin_family = AF_INET;
			s4->sin_port = htons((uint16_t)p);
			len = sizeof(*s4);
			fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons((uint16_t)p);
			len = sizeof(*s6);
			fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (fd >= 0)
				setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
		} else {
			/* Listening is set up before the loop runs; names would need a blocking
			 * lookup there. An interface address is what one binds to anyway. */
			return -EINVAL;
		}
		if (fd < 0)
			return -errno;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
		if (bind(fd, (struct sockaddr *)&ss, len) < 0 ||
		    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
			r = -errno;
			close(fd);
			return r;
		}
		tcp_format_addr((struct sockaddr *)&ss, addr, sizeof(addr));
		l->port = ss.ss_family == AF_INET6 ? ntohs(s6->sin6_port) : ntohs(s4->sin_port);
		if (asprintf(&l->name, "tcp:%s", addr) < 0) {
			l->name = NULL;
			close(fd);
			return -ENOMEM;
		}
	}
	if (listen(fd, TCP_BACKLOG) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static void
tcp_listener_destroy(struct tcp_listener *l)
{
	struct tcp_conn *c;
	struct stat st;

	for (c = l->list; c != NULL; c = c->next) {
		c->counted = false;
		c->listener = NULL;
	}
	if (l->ev_accept != NULL)
		event_free(l->ev_accept);
	if (l->ev_resume != NULL)
		event_free(l->ev_resume);
	if (l->fd >= 0) {
		close(l->fd);
		/* Remove the socket file only if it is still ours, not a successor's. */
		if (l->path != NULL && lstat(l->path, &st) == 0 && st.st_dev == l->dev &&
		    st.st_ino == l->ino)
			unlink(l->path);
	}
	free(l->path);
	free(l->name);
	free(l);
}

int
tcp_listener_new(struct event_base *base, enum transport_kind kind, const char *address,
    const struct tcp_options *opt, tcp_accept_cb cb, void *arg, struct tcp_listener **out)
{
	struct tcp_options o = {0};
	struct tcp_listener *l;
	int r;

	if (address == NULL || cb == NULL ||
	    (kind != TRANSPORT_KIND_TCP && kind != TRANSPORT_KIND_UNIX))
		return -EINVAL;
	if (opt != NULL)
		o = *opt;
	if (o.mode & ~07777u)
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	l->base = base;
	l->kind = kind;
	l->fd = -1;
	l->cb = cb;
	l->arg = arg;
	l->max_connections = o.max_connections ? o.max_connections : TCP_MAX_CONNECTIONS_DEFAULT;
	r = stream_options_resolve(&o.stream, &l->stream);
	if (r < 0)
		goto fail;
	r = tcp_listener_socket(l, address, o.mode ? o.mode : TCP_UNIX_MODE_DEFAULT);
	if (r < 0)
		goto fail;
	l->fd = r;
	l->ev_accept = event_new(base, l->fd, EV_READ | EV_PERSIST, tcp_listener_accept_cb, l);
	l->ev_resume = evtimer_new(base, tcp_listener_resume_cb, l);
	if (l->ev_accept == NULL || l->ev_resume == NULL || event_add(l->ev_accept, NULL) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	*out = l;
	return 0;
fail:
	tcp_listener_destroy(l);
	return r;
}

void
tcp_listener_free(struct tcp_listener *l)
{
	if (l == NULL || l->dead)
		return;
	if (l->busy > 0) {
		l->dead = true;
		event_del(l->ev_accept);
		return;
	}
	tcp_listener_destroy(l);
}

const char *
tcp_listener_name(const struct tcp_listener *l)
{
	return l->name;
}

uint16_t
tcp_listener_port(const struct tcp_listener *l)
{
	return l->port;
}

unsigned int
tcp_listener_connections(const struct tcp_listener *l)
{
	return l->conns;
}
