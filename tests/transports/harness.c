/* Shared pieces of the transport tests (see harness.h). */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

static uint32_t
get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void
rec_init(struct rec *r, struct transport *t)
{
	memset(r, 0, sizeof(*r));
	r->t = t;
	if (t != NULL)
		transport_set_callback(t, rec_cb, r, NULL);
}

void
rec_cb(struct transport *t, enum transport_event ev, const uint8_t *msg, size_t len, int err,
    void *arg)
{
	struct rec *r = arg;

	ck_assert_ptr_eq(t, r->t);
	r->n[ev]++;
	if (r->n_events < REC_MAX_EVENTS)
		r->events[r->n_events++] = ev;
	switch (ev) {
	case TRANSPORT_EV_MESSAGE:
		ck_assert_ptr_nonnull(msg);
		if (r->n[ev] <= REC_MAX_MSGS) {
			r->msgs[r->n[ev] - 1] = malloc(len);
			ck_assert_ptr_nonnull(r->msgs[r->n[ev] - 1]);
			memcpy(r->msgs[r->n[ev] - 1], msg, len);
			r->lens[r->n[ev] - 1] = len;
		}
		if (r->check_seq) {
			if (len < 4 || get_le32(msg) != r->next_seq)
				r->seq_error = true;
			r->next_seq++;
		}
		break;
	case TRANSPORT_EV_BAD_FRAME:
		r->last_bad_len = len;
		break;
	case TRANSPORT_EV_DISCONNECTED:
		r->last_err = err;
		ck_assert(!transport_connected(t));
		break;
	case TRANSPORT_EV_CONNECTED:
		ck_assert(transport_connected(t));
		break;
	case TRANSPORT_EV_WRITABLE:
		break;
	}
	if (r->free_on[ev]) {
		transport_free(t);
		r->t = NULL;
	}
}

void
rec_clear(struct rec *r)
{
	unsigned int i;

	for (i = 0; i < REC_MAX_MSGS; i++) {
		free(r->msgs[i]);
		r->msgs[i] = NULL;
	}
}

unsigned int
rec_count(const struct rec *r, enum transport_event ev)
{
	return r->n[ev];
}

struct event_wait {
	struct rec *r;
	enum transport_event ev;
	unsigned int n;
};

static bool
event_seen(void *arg)
{
	struct event_wait *w = arg;

	return w->r->n[w->ev] >= w->n;
}

bool
wait_event(struct event_base *base, struct rec *r, enum transport_event ev, unsigned int n,
    unsigned int timeout_ms)
{
	struct event_wait w = {r, ev, n};

	return tloop_until(base, event_seen, &w, timeout_ms);
}

int
pty_open(char *name, size_t n)
{
	int fd = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(grantpt(fd), 0);
	ck_assert_int_eq(unlockpt(fd), 0);
	ck_assert_int_eq(ptsname_r(fd, name, n), 0);
	return fd;
}

void
peer_init(struct peer *p, int fd)
{
	memset(p, 0, sizeof(*p));
	p->fd = fd;
	p->first_byte = -1;
	frame_decoder_init(&p->dec, p->buf, sizeof(p->buf));
}

void
peer_clear(struct peer *p)
{
	unsigned int i;

	for (i = 0; i < REC_MAX_MSGS; i++) {
		free(p->kept[i]);
		p->kept[i] = NULL;
	}
}

void
peer_poll(struct peer *p)
{
	uint8_t in[8192];
	ssize_t n;

	while ((n = read(p->fd, in, sizeof(in))) > 0) {
		size_t off = 0, used, len;
		const uint8_t *msg;

		if (p->first_byte < 0)
			p->first_byte = in[0];
		p->bytes += (uint64_t)n;
		while (off < (size_t)n) {
			enum frame_result fr = frame_decoder_feed(
			    &p->dec, in + off, (size_t)n - off, &used, &msg, &len);

			off += used;
			if (fr == FRAME_NONE)
				continue;
			if (fr != FRAME_MSG) {
				p->bad++;
				continue;
			}
			if (p->msgs < REC_MAX_MSGS) {
				p->kept[p->msgs] = malloc(len);
				ck_assert_ptr_nonnull(p->kept[p->msgs]);
				memcpy(p->kept[p->msgs], msg, len);
				p->kept_len[p->msgs] = len;
			}
			if (p->check_seq) {
				if (len < 4 || get_le32(msg) != p->next_seq)
					p->seq_error = true;
				p->next_seq++;
			}
			p->msgs++;
		}
	}
	/* A pty master reads EIO once the slave side is gone; a socket reads 0. */
	if (n == 0 || errno == EIO)
		p->eof = true;
}

void
peer_write(struct peer *p, const void *buf, size_t n)
{
	const uint8_t *b = buf;
	uint64_t deadline = tclock_ms() + 10000;

	while (n > 0) {
		ssize_t w = write(p->fd, b, n);

		if (w < 0) {
			ck_assert_msg(
			    errno == EAGAIN || errno == EINTR, "peer write: %s", strerror(errno));
			ck_assert_msg(tclock_ms() < deadline, "peer write stuck");
			usleep(1000);
			continue;
		}
		b += w;
		n -= (size_t)w;
	}
}

size_t
frame_of(const uint8_t *msg, size_t len, uint8_t *out, size_t cap)
{
	size_t n = frame_encode(msg, len, out, cap);

	ck_assert_uint_gt(n, 0);
	return n;
}

void
peer_send(struct peer *p, const uint8_t *msg, size_t len)
{
	static uint8_t out[FRAME_ENCODED_MAX(FRAME_MSG_MAX)];

	peer_write(p, out, frame_of(msg, len, out, sizeof(out)));
}

bool
peer_has_msgs(void *arg)
{
	struct peer_wait *w = arg;

	peer_poll(w->p);
	return w->p->msgs >= w->msgs;
}

void
symlink_replace(const char *target, const char *link)
{
	char tmp[4096];

	ck_assert_int_lt(snprintf(tmp, sizeof(tmp), "%s.tmp", link), (int)sizeof(tmp));
	unlink(tmp);
	ck_assert_int_eq(symlink(target, tmp), 0);
	ck_assert_int_eq(rename(tmp, link), 0);
}
