/* The test gateway (see gwpeer.h): a poll() loop, the protocol's gateway state machine reduced
 * to one image, and the real sender deciding what DATA goes out when. */
#include "gwpeer.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define GWPEER_IDLE_DELIMITER_MS 100

uint32_t
gwpeer_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

static size_t
gwpeer_room(const struct gwpeer *g)
{
	return sizeof(g->out) - g->out_len;
}

/* Queues one message: a packet, or a frame behind a delimiter after idle. Returns false if
 * there is no room now (the caller tries again later). */
static bool
gwpeer_queue(struct gwpeer *g, const uint8_t *m, size_t n)
{
	uint32_t now = gwpeer_now_ms();
	size_t k;

	ck_assert_uint_gt(n, 0);
	if (g->o.packet) {
		if (gwpeer_room(g) < n + 2)
			return false;
		g->out[g->out_len++] = (uint8_t)n;
		g->out[g->out_len++] = (uint8_t)(n >> 8);
		memcpy(g->out + g->out_len, m, n);
		g->out_len += n;
		return true;
	}
	if (gwpeer_room(g) < FRAME_ENCODED_MAX(n) + 1)
		return false;
	if (!g->sent_any || now - g->last_tx_ms > GWPEER_IDLE_DELIMITER_MS)
		g->out[g->out_len++] = 0;
	k = frame_encode(m, n, g->out + g->out_len, gwpeer_room(g));
	ck_assert_uint_gt(k, 0);
	g->out_len += k;
	g->sent_any = true;
	g->last_tx_ms = now;
	return true;
}

static void
gwpeer_flush(struct gwpeer *g)
{
	while (g->out_len > 0) {
		ssize_t w;
		size_t n = g->out_len;

		if (g->o.packet) {
			n = (size_t)g->out[0] | (size_t)g->out[1] << 8;
			w = send(g->fd, g->out + 2, n, MSG_NOSIGNAL);
			if (w >= 0)
				w = (ssize_t)n + 2;
		} else {
			w = write(g->fd, g->out, n);
		}
		if (w <= 0)
			return; /* EAGAIN: later; errors show up as EOF on read */
		memmove(g->out, g->out + w, g->out_len - (size_t)w);
		g->out_len -= (size_t)w;
	}
}

static void
gwpeer_send_data(struct gwpeer *g, uint32_t offset, uint16_t len)
{
	uint8_t buf[MSG_DATA_MAX];

	msg_encode_data_header(offset, buf);
	memcpy(buf + MSG_DATA_HEADER, g->o.image + offset, len);
	ck_assert(gwpeer_queue(g, buf, MSG_DATA_HEADER + (size_t)len));
	g->data_frames++;
	g->data_bytes += len;
}

/* Sends what the sender allows, while there is room for a whole frame. */
static void
gwpeer_pump(struct gwpeer *g)
{
	while (g->state == GWPEER_SENDING) {
		struct sender_next nx;
		enum sender_action a = sender_poll(&g->snd, gwpeer_now_ms(), &nx);

		if (a == SENDER_COMPLETE)
			g->state = GWPEER_WAIT_RESULT;
		if (a != SENDER_SEND)
			break;
		if (gwpeer_room(g) < FRAME_ENCODED_MAX(MSG_DATA_MAX) + 1)
			break;
		ck_assert_uint_le(nx.offset + nx.len, g->o.size);
		gwpeer_send_data(g, nx.offset, nx.len);
		sender_sent(&g->snd, gwpeer_now_ms());
	}
}

static void
gwpeer_handle(struct gwpeer *g, const uint8_t *buf, size_t n)
{
	uint8_t out[MSG_CONTROL_MAX];
	struct msg m;

	if (msg_decode_to_gateway(buf, n, &m) != MSG_OK) {
		g->bad_msgs++;
		return;
	}
	switch (m.type) {
	case MSG_HELLO: {
		const struct msg_hello *h = &m.u.hello;

		g->hellos++;
		memcpy(g->serial, h->serial.s, h->serial.len);
		g->serial[h->serial.len] = '\0';
		memcpy(g->last_version, h->current_version.s, h->current_version.len);
		g->last_version[h->current_version.len] = '\0';
		if (h->flags & MSG_HELLO_F_RESUME) {
			g->hellos_resume++;
			g->last_resume_offset = h->resume_offset;
		}
		g->state = GWPEER_IDLE;
		if (strcmp(g->last_version, g->o.target_version) == 0) {
			struct msg_no_update nu = {0, {"latest", 6}};

			g->confirmed = g->dones > 0 && g->result_status == MSG_STATUS_OK;
			g->no_updates++;
			ck_assert(
			    gwpeer_queue(g, out, msg_encode_no_update(&nu, out, sizeof(out))));
		} else {
			struct msg_offer o = {
			    .proto_version = PROTO_VERSION,
			    .size = g->o.size,
			    .sha256 = g->sha,
			    .max_payload = h->max_payload,
			    .target_version = {g->o.target_version,
				(uint8_t)strlen(g->o.target_version)},
			};

			g->payload = h->max_payload;
			g->window = h->window;
			g->stall = h->max_stall_ms;
			g->state = GWPEER_OFFERED;
			ck_assert(gwpeer_queue(g, out, msg_encode_offer(&o, out, sizeof(out))));
		}
		break;
	}
	case MSG_ACK:
		g->acks++;
		if (m.u.ack.flags & MSG_ACK_F_REWIND)
			g->rewind_acks++;
		else if (m.u.ack.limit == m.u.ack.offset && m.u.ack.offset < g->o.size) {
			g->pause_acks++;
			if (!g->first_pause_ms)
				g->first_pause_ms = gwpeer_now_ms();
			if (g->o.burst && !g->burst_done &&
			    m.u.ack.offset + g->o.burst_len <= g->o.size) {
				unsigned int i;

				/* Bytes the device already has (it is pausing to write them):
				 * harmless duplicates, but more than its ring holds while it is
				 * stalled. */
				g->burst_done = true;
				for (i = 0; i < g->o.burst; i++)
					gwpeer_send_data(g, m.u.ack.offset, g->o.burst_len);
			}
		}
		if (g->state == GWPEER_OFFERED) {
			struct sender_config c = {
			    .size = g->o.size,
			    .max_payload = g->payload,
			    .window = g->window,
			    .max_stall_ms = g->stall,
			    .link = g->o.packet ? SENDER_LINK_PACKET : SENDER_LINK_STREAM,
			};

			ck_assert_int_eq(sender_init(&g->snd, &c, gwpeer_now_ms()), 0);
			g->first_request_offset = m.u.ack.offset;
			g->state = GWPEER_SENDING;
		}
		if (g->state == GWPEER_SENDING || g->state == GWPEER_WAIT_RESULT)
			ck_assert_int_ne(
			    sender_ack(&g->snd, &m.u.ack, gwpeer_now_ms()), SENDER_ACK_BAD);
		break;
	case MSG_RESULT: {
		struct msg_done d = {m.u.result.sha256};

		g->results++;
		g->result_status = m.u.result.status;
		g->result_ms = gwpeer_now_ms();
		g->dones++;
		g->state = GWPEER_IDLE;
		ck_assert(gwpeer_queue(g, out, msg_encode_done(&d, out, sizeof(out))));
		break;
	}
	default:
		break;
	}
}

void
gwpeer_init(struct gwpeer *g, int fd, const struct gwpeer_opts *o)
{
	uint8_t solicit[MSG_SOLICIT_LEN];
	unsigned int len = 0;

	memset(g, 0, sizeof(*g));
	g->o = *o;
	g->fd = fd;
	g->result_status = -1;
	ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
	ck_assert_int_eq(EVP_Digest(o->image, o->size, g->sha, &len, EVP_sha256(), NULL), 1);
	frame_decoder_init(&g->dec, g->dec_buf, sizeof(g->dec_buf));
	ck_assert(gwpeer_queue(g, solicit, msg_encode_solicit(solicit, sizeof(solicit))));
	gwpeer_flush(g);
}

void
gwpeer_step(struct gwpeer *g)
{
	uint8_t buf[8192];
	int i;

	for (i = 0; i < 16 && !g->eof; i++) {
		ssize_t n =
		    g->o.packet ? recv(g->fd, buf, sizeof(buf), 0) : read(g->fd, buf, sizeof(buf));
		size_t off = 0;

		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			g->eof = true; /* the device went away (EIO on a pty whose master closed) */
			break;
		}
		if (g->o.packet) {
			gwpeer_handle(g, buf, (size_t)n);
			continue;
		}
		while (off < (size_t)n) {
			const uint8_t *m;
			size_t used, mlen;

			if (frame_decoder_feed(
				&g->dec, buf + off, (size_t)n - off, &used, &m, &mlen) == FRAME_MSG)
				gwpeer_handle(g, m, mlen);
			off += used;
		}
	}
	gwpeer_pump(g);
	gwpeer_flush(g);
}

bool
gwpeer_run(struct gwpeer **peers, size_t n, bool (*done)(void *arg), void *arg, int timeout_ms)
{
	uint32_t start = gwpeer_now_ms();
	struct pollfd pfd[64];
	size_t i;

	ck_assert_uint_le(n, 64);
	while (!done(arg)) {
		int wait = 50;

		if ((int)(gwpeer_now_ms() - start) > timeout_ms)
			return false;
		for (i = 0; i < n; i++) {
			struct sender_next nx;

			pfd[i].fd = peers[i]->eof ? -1 : peers[i]->fd;
			pfd[i].events = POLLIN | (peers[i]->out_len ? POLLOUT : 0);
			pfd[i].revents = 0;
			if (peers[i]->state == GWPEER_SENDING &&
			    sender_poll(&peers[i]->snd, gwpeer_now_ms(), &nx) == SENDER_WAIT &&
			    nx.has_wake) {
				int w = (int)(nx.wake_ms - gwpeer_now_ms());

				if (w < wait)
					wait = w < 0 ? 0 : w;
			}
		}
		poll(pfd, n, wait);
		for (i = 0; i < n; i++)
			gwpeer_step(peers[i]);
	}
	return true;
}

void
gwpeer_close(struct gwpeer *g)
{
	if (g->fd >= 0)
		close(g->fd);
	g->fd = -1;
}
