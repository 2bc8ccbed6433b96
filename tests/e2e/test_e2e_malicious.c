/* End to end: a malicious peer on the same daemon as an honest device. The peer sends a bad
 * serial, an oversize frame, a frame with a broken CRC, a truncated message, an offset past the
 * end of the image and a RESULT that lies about a verification it cannot have done; it gets the
 * protocol's answer to each (or, for damaged frames, silence) while the honest device, updating
 * at the same time, completes with a verified image, and the daemon keeps running. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ck.h"
#include "frame.h"
#include "msg.h"
#include "tpeer.h"
#include "world.h"

/* Waits until the peer got count messages of type (failing the world after the deadline) and
 * decodes the last one into m. */
static void
peer_wait(struct world *w, struct tpeer *p, uint8_t type, unsigned count, struct msg *m)
{
	if (!tpeer_wait(p, type, count, E2E_TIMEOUT_MS))
		world_fail(w, p->eof ? "the daemon hung up on the malicious peer"
				     : "the malicious peer got no answer");
	if (m != NULL)
		tpeer_last(p, type, m);
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
	struct tpeer p;
	struct world w;
	struct msg m;
	uint32_t size;

	world_init(&w, "e2e-evil", 192 * 1024 + 1);
	args[1] = w.sock;
	world_serve(&w, NULL, "", WORLD_UNIX_LINK);
	/* the honest device, slowed by its flash so the two overlap */
	world_devsim(&w, &dev, "dev", args);
	tpeer_open(&p, w.sock);

	/* a serial with a '/' */
	tpeer_send(&p, bad_serial_hello, sizeof(bad_serial_hello));
	peer_wait(&w, &p, MSG_ERROR, 1, &m);
	ck_assert_uint_eq(m.u.error.code, MSG_ERROR_BAD_IDENTITY);
	world_gw_wait(&w, "HELLO refused: device_serial 'GW/1'");

	/* an oversize frame and one with a broken CRC: dropped, no answer; then a truncated
	 * message: ERROR BAD_MESSAGE, so the link resynchronised after the junk */
	memset(junk, 0x41, sizeof(junk));
	junk[sizeof(junk) - 1] = 0;
	tpeer_write(&p, junk, sizeof(junk));
	{
		uint8_t f[64];
		size_t n = frame_encode(truncated_ack, sizeof(truncated_ack), f, sizeof(f));

		f[1] ^= 0x20; /* the CRC no longer matches */
		tpeer_write(&p, f, n);
	}
	tpeer_send(&p, truncated_ack, sizeof(truncated_ack));
	peer_wait(&w, &p, MSG_ERROR, 2, &m);
	ck_assert_uint_eq(m.u.error.code, MSG_ERROR_BAD_MESSAGE);

	/* a valid HELLO, then an offset past the end of the offered image */
	tpeer_hello(&p, "EVIL-1", WORLD_HW, WORLD_SWTYPE, "1.0.0", 512);
	peer_wait(&w, &p, MSG_OFFER, 1, &m);
	size = m.u.offer.size;
	ck_assert_uint_eq(size, w.size);
	memcpy(sha, m.u.offer.sha256, sizeof(sha));
	tpeer_ack(&p, size + 1000, size + 2000);
	peer_wait(&w, &p, MSG_ERROR, 3, &m);
	ck_assert_uint_eq(m.u.error.code, MSG_ERROR_BAD_OFFSET);

	/* again, and claim the image verified after one frame */
	tpeer_hello(&p, "EVIL-1", WORLD_HW, WORLD_SWTYPE, "1.0.0", 512);
	peer_wait(&w, &p, MSG_OFFER, 2, NULL);
	tpeer_ack(&p, 0, 512);
	peer_wait(&w, &p, MSG_DATA, 1, NULL);
	res = (struct msg_result){.status = MSG_STATUS_OK, .sha256 = sha, .bytes_received = size};
	tpeer_send(&p, out, msg_encode_result(&res, out, sizeof(out)));
	peer_wait(&w, &p, MSG_ERROR, 4, &m);
	ck_assert_uint_eq(m.u.error.code, MSG_ERROR_ABORTED);
	tpeer_close(&p);

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
