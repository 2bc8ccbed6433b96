/* A raw device speaking the protocol by hand (see tpeer.h). */
#include "tpeer.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tclock.h"
#include "tnet.h"

/* How long a write may wait for the gateway to read. */
#define TPEER_WRITE_MS 60000

void
tpeer_open(struct tpeer *p, const char *path)
{
	memset(p, 0, sizeof(*p));
	p->fd = tnet_connect_unix(path, true);
	frame_decoder_init(&p->dec, p->buf, sizeof(p->buf));
}

void
tpeer_close(struct tpeer *p)
{
	size_t i;

	if (p->fd > 0)
		close(p->fd);
	for (i = 0; i < 256; i++)
		free(p->last[i]);
	memset(p, 0, sizeof(*p));
}

void
tpeer_write(struct tpeer *p, const void *data, size_t len)
{
	const uint8_t *b = data;
	uint64_t end = tclock_ms() + TPEER_WRITE_MS;
	struct pollfd pfd = {.fd = p->fd, .events = POLLOUT};

	while (len > 0) {
		ssize_t n = write(p->fd, b, len);

		if (n > 0) {
			b += n;
			len -= (size_t)n;
			continue;
		}
		ck_assert_msg(n < 0 && (errno == EAGAIN || errno == EINTR), "write: %s",
		    n == 0 ? "nothing written" : strerror(errno));
		ck_assert_msg(tclock_ms() < end, "the gateway stopped reading");
		poll(&pfd, 1, 100);
	}
}

void
tpeer_send(struct tpeer *p, const uint8_t *msg, size_t len)
{
	uint8_t out[FRAME_ENCODED_MAX(FRAME_MSG_MAX) + 1];
	size_t n = frame_encode(msg, len, out + 1, sizeof(out) - 1);

	ck_assert_uint_gt(n, 0);
	out[0] = 0;
	tpeer_write(p, out, n + 1);
}

void
tpeer_hello(struct tpeer *p, const char *serial, const char *hw, const char *sw,
    const char *version, uint16_t max_payload)
{
	uint8_t out[MSG_HELLO_MAX];
	struct msg_hello h = {
	    .proto_version = 1,
	    .max_payload = max_payload,
	    .window = 2,
	    .serial = {serial, (uint8_t)strlen(serial)},
	    .hardware_version = {hw, (uint8_t)strlen(hw)},
	    .software_type = {sw, (uint8_t)strlen(sw)},
	    .current_version = {version, (uint8_t)strlen(version)},
	};
	size_t n = msg_encode_hello(&h, out, sizeof(out));

	ck_assert_uint_gt(n, 0);
	tpeer_send(p, out, n);
}

void
tpeer_ack(struct tpeer *p, uint32_t offset, uint32_t limit)
{
	uint8_t out[MSG_ACK_LEN];
	struct msg_ack a = {offset, limit, 0, 0};

	ck_assert_uint_eq(msg_encode_ack(&a, out, sizeof(out)), MSG_ACK_LEN);
	tpeer_send(p, out, MSG_ACK_LEN);
}

/* Counts one decoded message and keeps it as the last of its type. */
static void
tpeer_keep(struct tpeer *p, const uint8_t *msg, size_t len)
{
	uint8_t type = msg[0];

	if (p->last_len[type] < len || p->last[type] == NULL) {
		free(p->last[type]);
		p->last[type] = malloc(len);
		ck_assert_ptr_nonnull(p->last[type]);
	}
	memcpy(p->last[type], msg, len);
	p->last_len[type] = len;
	p->counts[type]++;
}

void
tpeer_poll(struct tpeer *p)
{
	uint8_t in[8192];
	const uint8_t *msg;
	size_t off, used, mlen;
	ssize_t n;

	while ((n = read(p->fd, in, sizeof(in))) > 0) {
		for (off = 0; off < (size_t)n; off += used) {
			if (frame_decoder_feed(&p->dec, in + off, (size_t)n - off, &used, &msg,
				&mlen) == FRAME_MSG &&
			    mlen > 0)
				tpeer_keep(p, msg, mlen);
		}
	}
	if (n == 0)
		p->eof = true;
}

bool
tpeer_has(void *arg)
{
	struct tpeer_wait *w = arg;

	tpeer_poll(w->p);
	return w->p->counts[w->type] >= w->count;
}

bool
tpeer_wait(struct tpeer *p, uint8_t type, unsigned count, unsigned timeout_ms)
{
	struct tpeer_wait w = {p, type, count};
	struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
	uint64_t end = tclock_ms() + timeout_ms;

	while (!tpeer_has(&w)) {
		if (p->eof || tclock_ms() > end)
			return false;
		poll(&pfd, 1, 100);
	}
	return true;
}

void
tpeer_last(const struct tpeer *p, uint8_t type, struct msg *m)
{
	ck_assert_msg(p->last[type] != NULL, "no message of type %u came", type);
	ck_assert_int_eq(msg_decode_to_device(p->last[type], p->last_len[type], m), MSG_OK);
}
