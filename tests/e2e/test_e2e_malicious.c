/* End to end: a malicious peer on the same daemon as an honest device. The peer sends a bad
 * serial, an oversize frame, a frame with a broken CRC, a truncated message, an offset past the
 * end of the image and a RESULT that lies about a verification it cannot have done; it gets the
 * protocol's answer to each (or, for damaged frames, silence) while the honest device, updating
 * at the same time, completes with a verified image, and the daemon keeps running. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ck.h"
#include "frame.h"
#include "msg.h"
#include "world.h"

struct peer {
	int fd;
	struct frame_decoder dec;
	uint8_t buf[FRAME_MSG_MAX + FRAME_CRC_LEN];
	uint8_t last[256][FRAME_MSG_MAX]; /* the last message of each type */
	size_t last_len[256];
	unsigned counts[256];
};

static void
peer_open(struct peer *p, const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	memset(p, 0, sizeof(*p));
	p->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(p->fd, 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	ck_assert_int_eq(connect(p->fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	frame_decoder_init(&p->dec, p->buf, sizeof(p->buf));
}

static void
peer_raw(struct peer *p, const void *data, size_t len)
{
	const uint8_t *b = data;

	while (len > 0) {
		ssize_t n = write(p->fd, b, len);

		ck_assert_msg(n > 0 || errno == EINTR, "write: %s", strerror(errno));
		if (n > 0) {
			b += n;
			len -= (size_t)n;
		}
	}
}

static void
peer_send(struct peer *p, const uint8_t *msg, size_t len)
{
	uint8_t out[FRAME_ENCODED_MAX(FRAME_MSG_MAX) + 1];
	size_t n = frame_encode(msg, len, out + 1, sizeof(out) - 1);

	ck_assert_uint_gt(n, 0);
	out[0] = 0;
	peer_raw(p, out, n + 1);
}

/* Reads until count messages of type arrived (fails the world after the deadline) and decodes
 * the last one into m. */
static void
peer_wait(struct world *w, struct peer *p, uint8_t type, unsigned count, struct msg *m)
{
	uint64_t end = tclock_ms() + E2E_TIMEOUT_MS;
	struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
	uint8_t in[8192];
	const uint8_t *msg;
	size_t off, used, mlen;
	ssize_t n;

	while (p->counts[type] < count) {
		if (tclock_ms() > end)
			world_fail(w, "the malicious peer got no answer");
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		n = read(p->fd, in, sizeof(in));
		if (n == 0)
			world_fail(w, "the daemon hung up on the malicious peer");
		for (off = 0; n > 0 && off < (size_t)n; off += used) {
			if (frame_decoder_feed(&p->dec, in + off, (size_t)n - off, &used, &msg,
				&mlen) == FRAME_MSG) {
				p->counts[msg[0]]++;
				memcpy(p->last[msg[0]], msg, mlen);
				p->last_len[msg[0]] = mlen;
			}
		}
	}
	if (m != NULL)
		ck_assert_int_eq(msg_decode_to_device(p->last[type], p->last_len[type], m), MSG_OK);
}

static void
peer_hello(struct peer *p, const char *serial)
{
	uint8_t out[MSG_HELLO_MAX];
	struct msg_hello h = {
	    .proto_version = 1,
	    .max_payload = 512,
	    .window = 2,
	    .serial = {serial, (uint8_t)strlen(serial)},
	    .hardware_version = {WORLD_HW, sizeof(WORLD_HW) - 1},
	    .software_type = {WORLD_SWTYPE, sizeof(WORLD_SWTYPE) - 1},
	    .current_version = {"1.0.0", 5},
	};

	peer_send(p, out, msg_encode_hello(&h, out, sizeof(out)));
}

static void
peer_ack(struct peer *p, uint32_t offset, uint32_t limit)
{
	uint8_t out[MSG_ACK_LEN];
	struct msg_ack a = {offset, limit, 0, 0};

	peer_send(p, out, msg_encode_ack(&a, out, sizeof(out)));
}

START_TEST(test_malicious_peer)
{
	const char *args[] = {"--unix", NULL, "--once", "--write-us-per-kib", "2000", NULL};
	static const uint8_t bad_serial_hello[] = {MSG_HELLO, 1, 0, 0, 0, 0, 2, 2, 100, 0, 4, 'G',
	    'W', '/', '1', 3, 'h', 'w', '1', 4, 'm', 'a', 'i', 'n', 5, '1', '.', '0', '.', '0'};
	static const uint8_t truncated_ack[] = {MSG_ACK, 1, 2};
	uint8_t junk[6000], out[MSG_RESULT_MAX], sha[PROTO_SHA256_LEN];
	struct tproc dev = {0};
	struct msg_result res;
	static struct peer p; /* a message of each type: too big for the stack */
	struct world w;
	struct msg m;
	uint32_t size;

	world_init(&w, "e2e-evil", 192 * 1024 + 1);
	args[1] = w.sock;
	world_serve(&w, NULL, "", WORLD_UNIX_LINK);
	/* the honest device, slowed by its flash so the two overlap */
	world_devsim(&w, &dev, "dev", args);
	peer_open(&p, w.sock);

	/* a serial with a '/' */
	peer_send(&p, bad_serial_hello, sizeof(bad_serial_hello));
	peer_wait(&w, &p, MSG_ERROR, 1, &m);
	ck_assert_uint_eq(m.u.error.code, MSG_ERROR_BAD_IDENTITY);
	world_gw_wait(&w, "HELLO refused: device_serial 'GW/1'");

	/* an oversize frame and one with a broken CRC: dropped, no answer; then a truncated
	 * message: ERROR BAD_MESSAGE, so the link resynchronised after the junk */
	memset(junk, 0x41, sizeof(junk));
	junk[sizeof(junk) - 1] = 0;
	peer_raw(&p, junk, sizeof(junk));
	{
		uint8_t f[64];
		size_t n = frame_encode(truncated_ack, sizeof(truncated_ack), f, sizeof(f));

		f[1] ^= 0x20; /* the CRC no longer matches */
		peer_raw(&p, f, n);
	}
	peer_send(&p, truncated_ack, sizeof(truncated_ack));
	peer_wait(&w, &p, MSG_ERROR, 2, &m);
	ck_assert_uint_eq(m.u.error.code, MSG_ERROR_BAD_MESSAGE);

	/* a valid HELLO, then an offset past the end of the offered image */
	peer_hello(&p, "EVIL-1");
	peer_wait(&w, &p, MSG_OFFER, 1, &m);
	size = m.u.offer.size;
	ck_assert_uint_eq(size, w.size);
	memcpy(sha, m.u.offer.sha256, sizeof(sha));
	peer_ack(&p, size + 1000, size + 2000);
	peer_wait(&w, &p, MSG_ERROR, 3, &m);
	ck_assert_uint_eq(m.u.error.code, MSG_ERROR_BAD_OFFSET);

	/* again, and claim the image verified after one frame */
	peer_hello(&p, "EVIL-1");
	peer_wait(&w, &p, MSG_OFFER, 2, NULL);
	peer_ack(&p, 0, 512);
	peer_wait(&w, &p, MSG_DATA, 1, NULL);
	res = (struct msg_result){.status = MSG_STATUS_OK, .sha256 = sha, .bytes_received = size};
	peer_send(&p, out, msg_encode_result(&res, out, sizeof(out)));
	peer_wait(&w, &p, MSG_ERROR, 4, &m);
	ck_assert_uint_eq(m.u.error.code, MSG_ERROR_ABORTED);
	close(p.fd);

	/* the honest device completed all the same */
	world_devsim_exit(&w, &dev, 0);
	ck_assert(world_installed(&w, "dev", "SIM-001"));
	world_gw_wait(&w, "SIM-001: Installed 2.0.0");
	ck_assert(tproc_running(&w.gwd));
	ck_assert_uint_eq(tfile_count(w.gw_log, "EVIL-1: Transferred and verified"), 0);
	ck_assert_uint_eq(tfile_count(w.gw_log, "answered ERROR BAD_OFFSET"), 1);
	ck_assert_uint_eq(tfile_count(w.gw_log, "answered ERROR ABORTED"), 1);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	tproc_free(&dev);
	world_free(&w);
}
END_TEST

static Suite *
malicious_suite(void)
{
	Suite *s = suite_create("e2e-malicious");
	TCase *tc = tcase_create("malicious");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_malicious_peer);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(malicious_suite());
}
