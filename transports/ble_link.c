/* The packet link under the BLE transports: whole messages in and out over non-blocking packet
 * fds (GATT acquired sockets or an L2CAP CoC socket), with a user-space queue and back-pressure.
 * See ble_link.h. */
#include "ble_link.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "frame.h"

enum {
	BLE_LINK_HIGH_WATER = 64 * 1024,   /* queued bytes above which send returns -EAGAIN */
	BLE_LINK_LOW_WATER = 16 * 1024,    /* WRITABLE once the queue drains below this */
	BLE_LINK_READ_BUDGET = 64,         /* packets read per wakeup, for fairness */
	BLE_LINK_RBUF = FRAME_MSG_MAX + 1, /* one more than the largest message: oversize shows */
};

struct ble_pkt {
	struct ble_pkt *next;
	size_t len;
	uint8_t data[];
};

struct ble_link {
	struct transport t;
	struct event_base *base;
	struct ble_link_owner owner;
	bool has_owner;
	int rfd, wfd;
	struct event *rev, *wev;
	struct event *hev; /* a separate write fd's hang-up (GATT: bluetoothd released it) */
	struct event *ev_announce; /* ble_link_up_later(): CONNECTED from the loop */
	size_t mtu;
	struct ble_pkt *head, **tail;
	size_t queued;
	bool want_writable; /* send returned -EAGAIN: report WRITABLE at low water */
	int pending_err;    /* a send failed: reported from the write callback */
	uint8_t rbuf[BLE_LINK_RBUF];
};

static void
ble_link_drop_queue(struct ble_link *l)
{
	while (l->head) {
		struct ble_pkt *p = l->head;

		l->head = p->next;
		free(p);
	}
	l->tail = &l->head;
	l->queued = 0;
}

static void
ble_link_close_fds(struct ble_link *l)
{
	if (l->rev) {
		event_free(l->rev);
		l->rev = NULL;
	}
	if (l->wev) {
		event_free(l->wev);
		l->wev = NULL;
	}
	if (l->hev) {
		event_free(l->hev);
		l->hev = NULL;
	}
	if (l->rfd >= 0)
		close(l->rfd);
	if (l->wfd >= 0 && l->wfd != l->rfd)
		close(l->wfd);
	l->rfd = l->wfd = -1;
	l->pending_err = 0;
}

void
ble_link_close(struct ble_link *l)
{
	ble_link_close_fds(l);
	ble_link_drop_queue(l);
	l->want_writable = false;
	l->t.up = false;
}

/* An fd failed: close both (a half link is no link) and let the owner decide. */
static void
ble_link_fd_lost(struct ble_link *l, int err)
{
	ble_link_close(l);
	if (l->has_owner && l->owner.fd_lost)
		l->owner.fd_lost(l, err, l->owner.arg);
	else
		(void)ble_link_down(l, err);
}

/* Sends what the queue holds until the socket pushes back. Returns 0, or a negative errno for a
 * failed socket (the caller reports it). */
static int
ble_link_flush(struct ble_link *l)
{
	while (l->head) {
		struct ble_pkt *p = l->head;
		ssize_t n = send(l->wfd, p->data, p->len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
				event_add(l->wev, NULL);
				return 0;
			}
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* Packet sockets send a packet whole or not at all. */
		l->t.stats.bytes_out += p->len;
		l->queued -= p->len;
		l->head = p->next;
		if (!l->head)
			l->tail = &l->head;
		free(p);
	}
	event_del(l->wev);
	return 0;
}

static void
ble_link_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct ble_link *l = arg;
	int r;

	(void)fd;
	(void)what;
	r = l->pending_err ? l->pending_err : ble_link_flush(l);
	if (r < 0) {
		transport_ref(&l->t);
		ble_link_fd_lost(l, r);
		transport_unref(&l->t);
		return;
	}
	if (l->want_writable && l->queued < BLE_LINK_LOW_WATER) {
		l->want_writable = false;
		(void)transport_report(&l->t, TRANSPORT_EV_WRITABLE, NULL, 0, 0);
	}
}

static void
ble_link_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct ble_link *l = arg;

	(void)what;
	transport_ref(&l->t);
	for (int i = 0; i < BLE_LINK_READ_BUDGET && l->rfd == fd && !l->t.freed; i++) {
		struct iovec iov = {.iov_base = l->rbuf, .iov_len = sizeof(l->rbuf)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				ble_link_fd_lost(l, -errno);
			break;
		}
		if (n == 0) { /* orderly close; packet links never carry empty messages */
			ble_link_fd_lost(l, 0);
			break;
		}
		l->t.stats.bytes_in += (uint64_t)n;
		if ((mh.msg_flags & MSG_TRUNC) || (size_t)n > FRAME_MSG_MAX) {
			(void)transport_report(&l->t, TRANSPORT_EV_BAD_FRAME, NULL, (size_t)n, 0);
			continue;
		}
		if (!l->t.up)
			continue; /* data before the owner declared the link up: not ours to deliver
				   */
		(void)transport_report(&l->t, TRANSPORT_EV_MESSAGE, l->rbuf, (size_t)n, 0);
	}
	transport_unref(&l->t);
}

/* Nobody writes to a GATT write socket from the other end: readable means closed (or junk,
 * which is dropped). Without this watch a release by bluetoothd would go unnoticed until the
 * next send. */
static void
ble_link_on_hup(evutil_socket_t fd, short what, void *arg)
{
	struct ble_link *l = arg;
	uint8_t junk[64];
	ssize_t n;

	(void)what;
	n = recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
	if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)))
		return;
	transport_ref(&l->t);
	ble_link_fd_lost(l, n == 0 ? 0 : -errno);
	transport_unref(&l->t);
}

static int
ble_link_send(struct transport *t, const uint8_t *msg, size_t len)
{
	struct ble_link *l = transport_container_of(t, struct ble_link, t);
	struct ble_pkt *p;
	int r;

	if (l->wfd < 0)
		return -ENOTCONN;
	if (l->queued + len > BLE_LINK_HIGH_WATER) {
		l->want_writable = true;
		return -EAGAIN;
	}
	p = malloc(sizeof(*p) + len);
	if (!p)
		return -ENOMEM;
	p->next = NULL;
	p->len = len;
	memcpy(p->data, msg, len);
	*l->tail = p;
	l->tail = &p->next;
	l->queued += len;
	if (event_pending(l->wev, EV_WRITE, NULL) || l->pending_err)
		return 0;
	r = ble_link_flush(l);
	if (r < 0) {
		/* Never report from inside the owner's send: the write callback does it. */
		l->pending_err = r;
		event_active(l->wev, EV_WRITE, 1);
	}
	return 0;
}

static size_t
ble_link_mtu(const struct transport *t)
{
	const struct ble_link *l = transport_container_of(t, const struct ble_link, t);

	return l->mtu;
}

static size_t
ble_link_queued(const struct transport *t)
{
	const struct ble_link *l = transport_container_of(t, const struct ble_link, t);

	return l->queued;
}

static void
ble_link_free(struct transport *t)
{
	struct ble_link *l = transport_container_of(t, struct ble_link, t);

	ble_link_close(l);
	if (l->ev_announce)
		event_free(l->ev_announce);
	if (l->has_owner && l->owner.freed)
		l->owner.freed(l, l->owner.arg);
	free(l);
}

static const struct transport_ops ble_link_ops = {
    .send = ble_link_send,
    .mtu = ble_link_mtu,
    .queued = ble_link_queued,
    .free = ble_link_free,
};

static void
ble_link_on_announce(evutil_socket_t fd, short what, void *arg)
{
	struct ble_link *l = arg;

	(void)fd;
	(void)what;
	if (l->t.up)
		(void)transport_report(&l->t, TRANSPORT_EV_CONNECTED, NULL, 0, 0);
}

int
ble_link_new(struct event_base *base, enum transport_kind kind, const char *name,
    const struct ble_link_owner *owner, struct ble_link **out)
{
	struct ble_link *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->ev_announce = event_new(base, -1, 0, ble_link_on_announce, l);
	if (!l->ev_announce || transport_init(&l->t, &ble_link_ops, kind, "%s", name) < 0) {
		if (l->ev_announce)
			event_free(l->ev_announce);
		free(l);
		return -ENOMEM;
	}
	l->base = base;
	l->rfd = l->wfd = -1;
	l->tail = &l->head;
	if (owner) {
		l->owner = *owner;
		l->has_owner = true;
	}
	*out = l;
	return 0;
}

struct transport *
ble_link_transport(struct ble_link *l)
{
	return &l->t;
}

struct ble_link *
ble_link_from_transport(struct transport *t)
{
	return transport_container_of(t, struct ble_link, t);
}

static int
ble_link_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	return 0;
}

int
ble_link_set_fds(struct ble_link *l, int rfd, int wfd, size_t mtu)
{
	int r = 0;

	/* A fresh fd replaces a stale one (bluetoothd acquired again after a reconnect we did not
	 * see end): the old socket is dead to the peer, and keeping it would leak the new one. */
	if (rfd >= 0 && l->rfd >= 0 && rfd != l->rfd && l->rfd != l->wfd) {
		event_free(l->rev);
		l->rev = NULL;
		close(l->rfd);
		l->rfd = -1;
	}
	if (wfd >= 0 && l->wfd >= 0 && wfd != l->wfd && l->wfd != l->rfd) {
		if (l->hev)
			event_free(l->hev);
		event_free(l->wev);
		l->hev = l->wev = NULL;
		close(l->wfd);
		l->wfd = -1;
		ble_link_drop_queue(l);
		l->pending_err = 0;
	}
	if (rfd >= 0 && l->rfd < 0) {
		r = ble_link_nonblock(rfd);
		l->rev =
		    r ? NULL : event_new(l->base, rfd, EV_READ | EV_PERSIST, ble_link_on_read, l);
		if (!l->rev || event_add(l->rev, NULL) < 0) {
			close(rfd);
			if (wfd >= 0 && wfd != rfd)
				close(wfd);
			return r ? r : -ENOMEM;
		}
		l->rfd = rfd;
	}
	if (wfd >= 0 && l->wfd < 0) {
		r = wfd == rfd ? 0 : ble_link_nonblock(wfd);
		l->wev = r ? NULL : event_new(l->base, wfd, EV_WRITE, ble_link_on_write, l);
		if (!r && wfd != rfd) {
			l->hev = event_new(l->base, wfd, EV_READ | EV_PERSIST, ble_link_on_hup, l);
			if (l->hev)
				event_add(l->hev, NULL);
		}
		if (!l->wev || (wfd != rfd && !l->hev)) {
			if (wfd != rfd)
				close(wfd);
			if (l->hev)
				event_free(l->hev);
			if (l->wev)
				event_free(l->wev);
			l->hev = l->wev = NULL;
			return r ? r : -ENOMEM;
		}
		l->wfd = wfd;
		l->mtu = mtu;
	}
	return 0;
}

bool
ble_link_has_wfd(const struct ble_link *l)
{
	return l->wfd >= 0;
}

bool
ble_link_up(struct ble_link *l)
{
	if (l->t.freed)
		return false;
	l->t.up = true;
	return transport_report(&l->t, TRANSPORT_EV_CONNECTED, NULL, 0, 0);
}

bool
ble_link_up_later(struct ble_link *l)
{
	if (l->t.freed)
		return false;
	l->t.up = true;
	event_active(l->ev_announce, EV_TIMEOUT, 1);
	return true;
}

bool
ble_link_down(struct ble_link *l, int err)
{
	ble_link_close(l);
	return transport_report(&l->t, TRANSPORT_EV_DISCONNECTED, NULL, 0, err);
}

void
ble_link_orphan(struct ble_link *l)
{
	l->has_owner = false;
}
