/* link: one simulated device's connection to the gateway (see link.h). Every kind ends up as a
 * non-blocking fd with a read event and, while output is queued, a write event; what differs is
 * how the fd is made and whether it can be made again after it fails. */
#include "link.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "tty.h"
#ifdef OTAGW_HAVE_BLE
#include "blelink.h"
#endif

#define LINK_RETRY_MIN_MS 100
#define LINK_RETRY_MAX_MS 5000
/* Output the OS has not taken yet. A device sends little (ACKs, HELLO, RESULT); more than this
 * queued means nobody reads the other end, and a UART would lose the bytes on the wire. */
#define LINK_OUT_MAX ((size_t)64 * 1024)
/* Largest message on a packet link, with room to spare: a DATA message is at most 4101 bytes. */
#define LINK_PACKET_MAX 8192
/* Reads per readable event, so that one busy link cannot starve the other devices. */
#define LINK_READS_PER_EVENT 8

struct link {
	struct event_base *base;
	enum link_kind kind;
	char *path, *host, *port;
	uint32_t baud;
	link_cb cb;
	void *arg;
	bool packet, adopted, up, connecting;
	int fd;
	int pty_slave; /* PTY: held open so the master never sees EIO while the gateway is away */
	char pts[64];
	struct event *ev_read, *ev_write, *ev_retry;
	struct evbuffer *out; /* stream: bytes; packet: u16 length + message, per message */
	struct blelink *ble;  /* BLE: the peripheral, which does its own I/O */
	uint32_t backoff_ms;
	int last_err; /* the failure last reported, so a retry loop reports each cause once */
	unsigned int rnd;
	char name[320];
};

static void link_read_cb(evutil_socket_t fd, short what, void *arg);
static void link_write_cb(evutil_socket_t fd, short what, void *arg);

static void
link_emit(struct link *l, enum link_event ev, const uint8_t *data, size_t n, int err)
{
	l->cb(l, ev, data, n, err, l->arg);
}

/* Closes the fd and forgets queued output (it was meant for a peer that is gone). */
static void
link_close_fd(struct link *l)
{
	if (l->ev_read) {
		event_free(l->ev_read);
		l->ev_read = NULL;
	}
	if (l->ev_write) {
		event_free(l->ev_write);
		l->ev_write = NULL;
	}
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	l->up = l->connecting = false;
	evbuffer_drain(l->out, evbuffer_get_length(l->out));
}

/* Schedules the next attempt: the delay doubles from 100 ms to 5 s, and a random part of it
 * keeps many simulated devices that lost the gateway together from coming back together. */
static void
link_retry_later(struct link *l)
{
	uint32_t ms = l->backoff_ms / 2 + (uint32_t)rand_r(&l->rnd) % (l->backoff_ms / 2 + 1);
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};

	l->backoff_ms =
	    l->backoff_ms * 2 > LINK_RETRY_MAX_MS ? LINK_RETRY_MAX_MS : l->backoff_ms * 2;
	evtimer_add(l->ev_retry, &tv);
}

/* The link failed (err < 0) or the peer closed it (0). Reports the loss once, and the cause of
 * each failed attempt when it changes, then retries if this kind can. */
static void
link_fail(struct link *l, int err)
{
	bool was_up = l->up;

	link_close_fd(l);
	if (was_up || err != l->last_err)
		link_emit(l, LINK_EV_DOWN, NULL, 0, err);
	l->last_err = err;
	if (!l->adopted)
		link_retry_later(l);
}

static int
link_watch(struct link *l)
{
	l->ev_read = event_new(l->base, l->fd, EV_READ | EV_PERSIST, link_read_cb, l);
	l->ev_write = event_new(l->base, l->fd, EV_WRITE, link_write_cb, l);
	if (!l->ev_read || !l->ev_write)
		return -ENOMEM;
	return 0;
}

static void
link_went_up(struct link *l)
{
	l->up = true;
	l->connecting = false;
	l->backoff_ms = LINK_RETRY_MIN_MS;
	l->last_err = 0;
	event_add(l->ev_read, NULL);
	link_emit(l, LINK_EV_UP, NULL, 0, 0);
}

/* --- making the fd ------------------------------------------------------------------------ */

/* A pty pair in raw mode, its slave symlinked at path (atomically, replacing an old symlink). */
static int
link_open_pty(struct link *l)
{
	char tmp[4200];
	int r;

	if (l->pty_slave >= 0) /* a new pair replaces one that failed */
		close(l->pty_slave);
	l->pty_slave = -1;
	l->fd = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (l->fd < 0)
		return -errno;
	if (grantpt(l->fd) < 0 || unlockpt(l->fd) < 0 || ptsname_r(l->fd, l->pts, sizeof(l->pts)))
		return -errno;
	l->pty_slave = open(l->pts, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (l->pty_slave < 0)
		return -errno;
	r = tty_raw(l->pty_slave, 0);
	if (r < 0)
		return r;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.devsim-tmp", l->path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	unlink(tmp);
	if (symlink(l->pts, tmp) < 0)
		return -errno;
	if (rename(tmp, l->path) < 0) {
		r = -errno;
		unlink(tmp);
		return r;
	}
	return 0;
}

static int
link_open_tty(struct link *l)
{
	int r;

	l->fd = open(l->path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (l->fd < 0)
		return -errno;
	if (!isatty(l->fd))
		return -ENOTTY;
	/* Two simulated devices on one line would garble each other's frames. */
	if (flock(l->fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? -EBUSY : -errno;
	r = tty_raw(l->fd, l->baud);
	if (r < 0)
		return r;
	/* Bytes from before we were listening belong to nobody. */
	tcflush(l->fd, TCIFLUSH);
	return 0;
}

/* Starts a non-blocking connect. Returns 0 when connected, 1 while in progress, or -errno. */
static int
link_connect(struct link *l)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
	struct addrinfo *ai = NULL;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const struct sockaddr *sa;
	socklen_t salen;
	int r, one = 1;

	if (l->kind == LINK_KIND_UNIX) {
		if (strlen(l->path) >= sizeof(sun.sun_path))
			return -ENAMETOOLONG;
		memcpy(sun.sun_path, l->path, strlen(l->path) + 1);
		sa = (const struct sockaddr *)&sun;
		salen = (socklen_t)sizeof(sun);
		l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	} else {
		/* Resolved on every attempt: a gateway's name may move. Numeric addresses (the
		 * usual case on a bench) cost nothing. */
		r = getaddrinfo(l->host, l->port, &hints, &ai);
		if (r != 0)
			return r == EAI_SYSTEM ? -errno : -ENXIO; /* "No such device or address" */
		sa = ai->ai_addr;
		salen = ai->ai_addrlen;
		l->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (l->fd >= 0)
			setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (l->fd < 0) {
		r = -errno;
	} else if (connect(l->fd, sa, salen) == 0) {
		r = 0;
	} else if (errno == EINPROGRESS) {
		r = 1;
	} else {
		r = errno == EAGAIN ? -ECONNREFUSED : -errno; /* unix: the backlog is full */
	}
	if (ai)
		freeaddrinfo(ai);
	return r;
}

/* One attempt to bring the link up. Returns 0 (up or connecting) or -errno (fd closed). */
static int
link_attempt(struct link *l)
{
	int r;

	switch (l->kind) {
	case LINK_KIND_PTY:
		r = link_open_pty(l);
		break;
	case LINK_KIND_TTY:
		r = link_open_tty(l);
		break;
	case LINK_KIND_TCP:
	case LINK_KIND_UNIX:
		r = link_connect(l);
		break;
	default:
		r = -EINVAL;
		break;
	}
	if (r >= 0 && link_watch(l) < 0)
		r = -ENOMEM;
	if (r < 0) {
		link_close_fd(l);
		return r;
	}
	if (r == 1) {
		l->connecting = true;
		event_add(l->ev_write, NULL);
		return 0;
	}
	link_went_up(l);
	return 0;
}

static void
link_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct link *l = arg;
	int r;

	(void)fd;
	(void)what;
	r = link_attempt(l);
	if (r < 0)
		link_fail(l, r);
}

/* --- I/O ----------------------------------------------------------------------------------- */

/* Hands queued output to the OS; arms the write event while some is left. */
static void
link_flush(struct link *l)
{
	while (evbuffer_get_length(l->out) > 0) {
		ssize_t n;

		if (l->packet) {
			uint8_t hdr[2], *msg;
			size_t len;

			evbuffer_copyout(l->out, hdr, 2);
			len = (size_t)hdr[0] | (size_t)hdr[1] << 8;
			msg = evbuffer_pullup(l->out, (ev_ssize_t)(2 + len));
			n = send(l->fd, msg + 2, len, MSG_NOSIGNAL);
			if (n >= 0) {
				evbuffer_drain(l->out, 2 + len);
				continue;
			}
		} else {
			n = evbuffer_write(l->out, l->fd);
			if (n > 0)
				continue;
			if (n == 0)
				errno = EAGAIN;
		}
		if (errno == EAGAIN || errno == EINTR)
			break;
		link_fail(l, -errno);
		return;
	}
	if (evbuffer_get_length(l->out) > 0)
		event_add(l->ev_write, NULL);
}

static void
link_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct link *l = arg;
	socklen_t len = sizeof(int);
	int err = 0;

	(void)what;
	if (l->connecting) {
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err != 0) {
			link_fail(l, -err);
			return;
		}
		link_went_up(l);
		if (!l->up)
			return;
	}
	link_flush(l);
}

static void
link_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct link *l = arg;
	uint8_t buf[LINK_PACKET_MAX];
	int i;

	(void)what;
	for (i = 0; i < LINK_READS_PER_EVENT && l->up; i++) {
		ssize_t n = l->packet ? recv(fd, buf, sizeof(buf), 0) : read(fd, buf, sizeof(buf));

		if (n > 0) {
			link_emit(l, l->packet ? LINK_EV_PACKET : LINK_EV_BYTES, buf, (size_t)n, 0);
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		/* EOF, a hang-up (EIO on a tty whose device went away) or a reset. */
		link_fail(l, n == 0 ? 0 : -errno);
		return;
	}
}

/* --- API ----------------------------------------------------------------------------------- */

static struct link *
link_alloc(struct event_base *base, link_cb cb, void *arg)
{
	struct link *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->base = base;
	l->cb = cb;
	l->arg = arg;
	l->fd = l->pty_slave = -1;
	l->backoff_ms = LINK_RETRY_MIN_MS;
	l->rnd = (unsigned int)time(NULL) ^ (unsigned int)(uintptr_t)l;
	l->out = evbuffer_new();
	l->ev_retry = evtimer_new(base, link_retry_cb, l);
	if (!l->out || !l->ev_retry) {
		link_free(l);
		return NULL;
	}
	return l;
}

/* Failures worth retrying: the other end is not there yet, or is busy. A host name that does
 * not resolve at start is a typo more often than an outage. */
static bool
link_transient(enum link_kind kind, int err)
{
	if (kind == LINK_KIND_TCP && err == -ENXIO)
		return false;
	switch (-err) {
	case ENOENT:
	case ENXIO:
	case ENODEV:
	case EIO:
	case EBUSY:
	case ECONNREFUSED:
	case ECONNRESET:
	case ETIMEDOUT:
	case EHOSTUNREACH:
	case ENETUNREACH:
		return true;
	default:
		return false;
	}
}

#ifdef OTAGW_HAVE_BLE
static void
link_ble_cb(enum link_event ev, const uint8_t *data, size_t n, int err, size_t mtu, void *arg)
{
	struct link *l = arg;

	(void)mtu;
	if (ev == LINK_EV_UP)
		l->up = true;
	else if (ev == LINK_EV_DOWN)
		l->up = false;
	link_emit(l, ev, data, n, err);
}
#endif

/* BLE: the peripheral does the I/O; the link only passes events through. */
static int
link_new_ble(struct link *l, const struct link_options *opt, char *errbuf, size_t errlen)
{
#ifdef OTAGW_HAVE_BLE
	l->packet = true;
	return blelink_new(l->base, opt->path, opt->name ? opt->name : "otagw-devsim", opt->psm,
	    link_ble_cb, l, &l->ble, errbuf, errlen);
#else
	(void)l;
	(void)opt;
	snprintf(errbuf, errlen, "this otagw-devsim was built without Bluetooth support");
	return -EOPNOTSUPP;
#endif
}

int
link_new(struct event_base *base, const struct link_options *opt, link_cb cb, void *arg,
    struct link **out, char *errbuf, size_t errlen)
{
	struct link *l = link_alloc(base, cb, arg);
	int r;

	if (!l) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	l->kind = opt->kind;
	l->baud = opt->baud;
	l->path = opt->path ? strdup(opt->path) : NULL;
	l->host = opt->host ? strdup(opt->host) : NULL;
	l->port = opt->port ? strdup(opt->port) : NULL;
	if ((opt->path && !l->path) || (opt->host && !l->host) || (opt->port && !l->port)) {
		link_free(l);
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	switch (l->kind) {
	case LINK_KIND_PTY:
		snprintf(l->name, sizeof(l->name), "pty %s", l->path);
		break;
	case LINK_KIND_TTY:
		snprintf(l->name, sizeof(l->name), "tty %s", l->path);
		break;
	case LINK_KIND_TCP:
		snprintf(l->name, sizeof(l->name), "tcp %s:%s", l->host, l->port);
		break;
	case LINK_KIND_UNIX:
		snprintf(l->name, sizeof(l->name), "unix %s", l->path);
		break;
	case LINK_KIND_BLE:
		r = link_new_ble(l, opt, errbuf, errlen);
		if (r < 0) {
			link_free(l);
			return r;
		}
		*out = l;
		return 0;
	}
	if (l->kind == LINK_KIND_PTY) {
		struct stat st;

		/* Never replace a file or a device someone else put there. */
		if (lstat(l->path, &st) == 0 && !S_ISLNK(st.st_mode)) {
			snprintf(errbuf, errlen,
			    "%s exists and is not a symlink; remove it or choose another path",
			    l->path);
			link_free(l);
			return -EEXIST;
		}
	}
	r = link_attempt(l);
	if (r < 0 && (l->kind == LINK_KIND_PTY || !link_transient(l->kind, r))) {
		snprintf(errbuf, errlen, "%s: %s", l->name,
		    r == -ENXIO && l->kind == LINK_KIND_TCP ? "cannot resolve the host name"
							    : strerror(-r));
		link_free(l);
		return r;
	}
	if (l->kind == LINK_KIND_PTY)
		snprintf(l->name, sizeof(l->name), "pty %s -> %s", l->path, l->pts);
	if (r < 0)
		link_fail(l, r); /* reports the cause once, then retries */
	*out = l;
	return 0;
}

int
link_new_fd(struct event_base *base, int fd, bool packet, link_cb cb, void *arg, struct link **out)
{
	struct link *l = link_alloc(base, cb, arg);
	int flags = fcntl(fd, F_GETFL);

	if (!l || flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		int r = l ? -errno : -ENOMEM;

		link_free(l);
		return r;
	}
	l->adopted = true;
	l->packet = packet;
	l->fd = fd;
	snprintf(l->name, sizeof(l->name), "%s socket %d", packet ? "packet" : "stream", fd);
	if (link_watch(l) < 0) {
		l->fd = -1; /* the caller keeps fd on failure */
		link_free(l);
		return -ENOMEM;
	}
	link_went_up(l);
	*out = l;
	return 0;
}

int
link_send(struct link *l, const uint8_t *data, size_t n)
{
	size_t queued;

	if (!l->up)
		return -ENOTCONN;
	if (n == 0)
		return 0;
#ifdef OTAGW_HAVE_BLE
	if (l->ble)
		return blelink_send(l->ble, data, n);
#endif
	queued = evbuffer_get_length(l->out);
	if (queued + n + 2 > LINK_OUT_MAX)
		return -ENOBUFS;
	if (l->packet) {
		uint8_t hdr[2] = {(uint8_t)n, (uint8_t)(n >> 8)};

		if (n > LINK_PACKET_MAX)
			return -EMSGSIZE;
		if (queued == 0 && send(l->fd, data, n, MSG_NOSIGNAL) >= 0)
			return 0;
		if (queued == 0 && errno != EAGAIN && errno != EINTR) {
			link_fail(l, -errno);
			return -ENOTCONN;
		}
		evbuffer_add(l->out, hdr, 2);
	} else if (queued == 0) {
		ssize_t w = write(l->fd, data, n);

		if (w < 0 && errno != EAGAIN && errno != EINTR) {
			link_fail(l, -errno);
			return -ENOTCONN;
		}
		if (w > 0) {
			data += w;
			n -= (size_t)w;
		}
		if (n == 0)
			return 0;
	}
	evbuffer_add(l->out, data, n);
	event_add(l->ev_write, NULL);
	return 0;
}

bool
link_is_packet(const struct link *l)
{
	return l->packet;
}

bool
link_is_connection(const struct link *l)
{
	return l->adopted || l->kind == LINK_KIND_TCP || l->kind == LINK_KIND_UNIX;
}

bool
link_is_up(const struct link *l)
{
	return l->up;
}

bool
link_peer_connected(const struct link *l)
{
#ifdef OTAGW_HAVE_BLE
	if (l->ble)
		return blelink_connected(l->ble);
#endif
	return l->up;
}

size_t
link_mtu(const struct link *l)
{
#ifdef OTAGW_HAVE_BLE
	if (l->ble)
		return blelink_mtu(l->ble);
#endif
	(void)l;
	return 0;
}

void
link_reboot(struct link *l)
{
#ifdef OTAGW_HAVE_BLE
	if (l->ble && l->up) {
		blelink_disconnect(l->ble);
		l->up = false;
		link_emit(l, LINK_EV_DOWN, NULL, 0, 0);
	}
#else
	(void)l;
#endif
}

const char *
link_name(const struct link *l)
{
#ifdef OTAGW_HAVE_BLE
	if (l->ble)
		return blelink_name(l->ble);
#endif
	return l->name;
}

void
link_free(struct link *l)
{
	if (!l)
		return;
#ifdef OTAGW_HAVE_BLE
	blelink_free(l->ble);
#endif
	if (l->kind == LINK_KIND_PTY && l->path && l->pts[0]) {
		/* Remove the symlink only if it is still ours. */
		char target[sizeof(l->pts)];
		ssize_t n = readlink(l->path, target, sizeof(target) - 1);

		if (n > 0) {
			target[n] = '\0';
			if (strcmp(target, l->pts) == 0)
				unlink(l->path);
		}
	}
	if (l->out)
		link_close_fd(l);
	if (l->pty_slave >= 0)
		close(l->pty_slave);
	if (l->ev_retry)
		event_free(l->ev_retry);
	if (l->out)
		evbuffer_free(l->out);
	free(l->path);
	free(l->host);
	free(l->port);
	free(l);
}
