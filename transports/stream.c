/* Stream links: framing, deframing and the output queue over one non-blocking fd. Output goes
 * through the event loop only (send() queues, the EV_WRITE callback writes), so I/O errors are
 * found and reported from the loop, never from inside transport_send(). EV_WRITE is armed only
 * while output is queued. */
#include "stream.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

/* One read() per wakeup, so one busy link cannot starve the others on the loop. */
#define STREAM_READ_CHUNK 4096
/* After this long with nothing queued, the line counts as idle: the next frame starts with an
 * extra 0x00 so that noise the receiver collected meanwhile ends as a frame of its own. */
#define STREAM_IDLE_NS        (100ull * 1000 * 1000)
#define STREAM_HIGH_WATER_MIN 4096
/* Bounds the queue memory a configuration can ask for. */
#define STREAM_HIGH_WATER_MAX (16u * 1024 * 1024)

static struct stream *
stream_of(struct transport *t)
{
	return transport_container_of(t, struct stream, t);
}

static const struct stream *
stream_of_const(const struct transport *t)
{
	return transport_container_of(t, const struct stream, t);
}

uint64_t
stream_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int
stream_options_resolve(const struct stream_options *in, struct stream_options *out)
{
	struct stream_options o = {0};

	if (in != NULL)
		o = *in;
	if (o.max_msg == 0)
		o.max_msg = FRAME_MSG_MAX;
	if (o.max_msg > FRAME_MSG_MAX)
		return -EINVAL;
	if (o.high_water == 0) {
		o.high_water = 2 * FRAME_ENCODED_MAX(o.max_msg);
		if (o.high_water < STREAM_HIGH_WATER_MIN)
			o.high_water = STREAM_HIGH_WATER_MIN;
	}
	if (o.high_water > STREAM_HIGH_WATER_MAX)
		return -EINVAL;
	if (o.low_water == 0)
		o.low_water = o.high_water / 2;
	if (o.low_water > o.high_water)
		return -EINVAL;
	*out = o;
	return 0;
}

/* Arms EV_WRITE exactly while output is queued. Returns 0 or -ENOMEM. */
static int
stream_update(struct stream *s)
{
	bool want = s->fd >= 0 && s->out_len > 0;

	if (want == s->write_armed)
		return 0;
	if (want) {
		if (event_add(s->ev_write, NULL) < 0)
			return -ENOMEM;
	} else {
		event_del(s->ev_write);
	}
	s->write_armed = want;
	return 0;
}

static void
stream_announce(struct stream *s)
{
	if (!s->announce_pending)
		return;
	s->announce_pending = false;
	event_del(s->ev_announce);
	transport_report(&s->t, TRANSPORT_EV_CONNECTED, NULL, 0, 0);
}

static void
stream_announce_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	stream_announce(arg);
}

/* Reads once and hands every frame completed by those bytes to the owner. */
static void
stream_read(struct stream *s)
{
	uint8_t buf[STREAM_READ_CHUNK];
	size_t off = 0, used, mlen;
	const uint8_t *msg;
	ssize_t n;
	bool alive = true;

	/* Data can only follow CONNECTED. */
	if (s->announce_pending) {
		stream_announce(s);
		if (s->t.freed)
			return;
	}
	n = read(s->fd, buf, sizeof(buf));
	if (n == 0) {
		/* A socket's EOF is the peer closing; a tty's is a hangup (USB unplug, pty master
		 * gone), which is no orderly close. */
		stream_fail(s, s->is_socket ? 0 : -EIO);
		return;
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		stream_fail(s, -errno);
		return;
	}
	s->t.stats.bytes_in += (uint64_t)n;
	while (off < (size_t)n && alive && s->fd >= 0) {
		enum frame_result fr =
		    frame_decoder_feed(&s->dec, buf + off, (size_t)n - off, &used, &msg, &mlen);

		off += used;
		switch (fr) {
		case FRAME_NONE:
			break;
		case FRAME_MSG:
			alive = transport_report(&s->t, TRANSPORT_EV_MESSAGE, msg, mlen, 0);
			break;
		case FRAME_ERR_CRC:
		case FRAME_ERR_COBS:
		case FRAME_ERR_OVERSIZE:
		case FRAME_ERR_SHORT:
			alive = transport_report(&s->t, TRANSPORT_EV_BAD_FRAME, NULL,
			    frame_decoder_error_bytes(&s->dec), 0);
			break;
		}
	}
}

static void
stream_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *s = arg;

	(void)fd;
	(void)what;
	transport_ref(&s->t);
	stream_read(s);
	transport_unref(&s->t);
}

/* Hands as much queued output to the OS as it takes. */
static void
stream_write(struct stream *s)
{
	ssize_t n;

	if (s->out_len == 0) {
		stream_update(s);
		return;
	}
	if (s->is_socket)
		n = send(s->fd, s->out + s->out_off, s->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
	else
		n = write(s->fd, s->out + s->out_off, s->out_len);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		stream_fail(s, -errno);
		return;
	}
	s->t.stats.bytes_out += (uint64_t)n;
	s->out_off += (size_t)n;
	s->out_len -= (size_t)n;
	if (s->out_len == 0) {
		s->out_off = 0;
		s->idle_since_ns = stream_now_ns();
	}
	stream_update(s);
	if (s->want_writable && s->out_len < s->opt.low_water) {
		s->want_writable = false;
		transport_report(&s->t, TRANSPORT_EV_WRITABLE, NULL, 0, 0);
	}
}

static void
stream_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *s = arg;

	(void)fd;
	(void)what;
	transport_ref(&s->t);
	stream_write(s);
	transport_unref(&s->t);
}

int
stream_init(struct stream *s, struct event_base *base, const struct transport_ops *ops,
    enum transport_kind kind, const struct stream_hooks *hooks, const struct stream_options *opt,
    const char *fmt, ...)
{
	struct stream_options o;
	va_list ap;
	int r;

	r = stream_options_resolve(opt, &o);
	if (r < 0)
		return r;
	va_start(ap, fmt);
	r = transport_initv(&s->t, ops, kind, fmt, ap);
	va_end(ap);
	if (r < 0)
		return r;
	s->base = base;
	s->hooks = hooks;
	s->fd = -1;
	s->is_socket = false;
	s->ev_read = NULL;
	s->ev_write = NULL;
	s->write_armed = false;
	s->announce_pending = false;
	s->opt = o;
	s->out_cap = o.high_water + FRAME_ENCODED_MAX(o.max_msg) + 1;
	s->out_off = 0;
	s->out_len = 0;
	s->want_writable = false;
	s->lead = true;
	s->idle_since_ns = 0;
	s->dec_buf = malloc(o.max_msg + FRAME_CRC_LEN);
	s->out = malloc(s->out_cap);
	s->ev_announce = event_new(base, -1, 0, stream_announce_cb, s);
	if (s->dec_buf == NULL || s->out == NULL || s->ev_announce == NULL) {
		free(s->dec_buf);
		free(s->out);
		if (s->ev_announce != NULL)
			event_free(s->ev_announce);
		transport_init_undo(&s->t);
		return -ENOMEM;
	}
	frame_decoder_init(&s->dec, s->dec_buf, o.max_msg + FRAME_CRC_LEN);
	return 0;
}

static void
stream_release_fd(struct stream *s, int fd)
{
	if (s->hooks != NULL && s->hooks->closing != NULL)
		s->hooks->closing(s, fd);
	close(fd);
}

int
stream_attach(struct stream *s, int fd, bool is_socket)
{
	stream_close(s);
	s->ev_read = event_new(s->base, fd, EV_READ | EV_PERSIST, stream_read_cb, s);
	s->ev_write = event_new(s->base, fd, EV_WRITE | EV_PERSIST, stream_write_cb, s);
	if (s->ev_read == NULL || s->ev_write == NULL || event_add(s->ev_read, NULL) < 0) {
		if (s->ev_read != NULL)
			event_free(s->ev_read);
		if (s->ev_write != NULL)
			event_free(s->ev_write);
		s->ev_read = s->ev_write = NULL;
		stream_release_fd(s, fd);
		return -ENOMEM;
	}
	s->fd = fd;
	s->is_socket = is_socket;
	s->t.up = true;
	s->lead = true;
	s->announce_pending = true;
	event_active(s->ev_announce, EV_TIMEOUT, 1);
	return 0;
}

void
stream_close(struct stream *s)
{
	if (s->fd < 0)
		return;
	event_free(s->ev_read);
	event_free(s->ev_write);
	s->ev_read = s->ev_write = NULL;
	s->write_armed = false;
	if (s->announce_pending) {
		event_del(s->ev_announce);
		s->announce_pending = false;
	}
	stream_release_fd(s, s->fd);
	s->fd = -1;
	s->t.up = false;
	/* Half-sent frames mean nothing to the next link; the protocol resends what matters. */
	s->out_off = 0;
	s->out_len = 0;
	s->want_writable = false;
	frame_decoder_init(&s->dec, s->dec_buf, s->opt.max_msg + FRAME_CRC_LEN);
}

bool
stream_fail(struct stream *s, int err)
{
	stream_close(s);
	if (!transport_report(&s->t, TRANSPORT_EV_DISCONNECTED, NULL, 0, err))
		return false;
	if (s->hooks != NULL && s->hooks->lost != NULL)
		s->hooks->lost(s, err);
	return true;
}

void
stream_cleanup(struct stream *s)
{
	stream_close(s);
	event_free(s->ev_announce);
	s->ev_announce = NULL;
	free(s->dec_buf);
	free(s->out);
	s->dec_buf = s->out = NULL;
}

int
stream_send(struct transport *t, const uint8_t *msg, size_t len)
{
	struct stream *s = stream_of(t);
	size_t lead, room, n;
	uint8_t *p;

	if (s->out_len >= s->opt.high_water) {
		s->want_writable = true;
		return -EAGAIN;
	}
	if (s->out_len == 0 && stream_now_ns() - s->idle_since_ns >= STREAM_IDLE_NS)
		s->lead = true;
	lead = s->lead ? 1 : 0;
	/* Below high water, a frame always fits once the pending bytes move to the front. */
	if (s->out_cap - s->out_off - s->out_len < FRAME_ENCODED_MAX(len) + lead) {
		memmove(s->out, s->out + s->out_off, s->out_len);
		s->out_off = 0;
	}
	p = s->out + s->out_off + s->out_len;
	room = s->out_cap - s->out_off - s->out_len;
	n = frame_encode(msg, len, p + lead, room - lead);
	if (n == 0)
		return -EMSGSIZE;
	if (!s->write_armed) {
		if (event_add(s->ev_write, NULL) < 0)
			return -ENOMEM;
		s->write_armed = true;
	}
	if (lead)
		p[0] = 0;
	s->out_len += lead + n;
	s->lead = false;
	return 0;
}

size_t
stream_mtu(const struct transport *t)
{
	return stream_of_const(t)->opt.max_msg;
}

size_t
stream_queued(const struct transport *t)
{
	return stream_of_const(t)->out_len;
}
