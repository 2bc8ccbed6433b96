/* The device library against a scripted gateway: configuration and identity errors, HELLO
 * backoff, NO_UPDATE and ERROR schedules, every refusal, gaps and epochs, duplicates and
 * out-of-window DATA, the pause before an erase, flash failures, resume rounding, the verify
 * pass, stop/SOLICIT, ACK and RESULT retries, packet links (otadev_init and otadev_init_packet)
 * and line noise. */
#include <check.h>
#include <string.h>

#include "ck.h"
#include "otadev.h"

#define IMG_MAX 20000

struct peer {
	otadev_t dev;
	otadev_config_t cfg;
	uint8_t rx[OTADEV_RX_CAP(1024)], tx[OTADEV_TX_CAP];
	struct frame_decoder dec;
	uint8_t decbuf[MSG_CONTROL_MAX + FRAME_CRC_LEN];
	uint8_t out[128][MSG_CONTROL_MAX]; /* messages the device sent */
	size_t out_len[128];
	int nout;
	int bad_tx; /* stream bytes that did not start with a delimiter */
	uint8_t flash[IMG_MAX + 8192];
	int fail_write, fail_erase, fail_read, erases, writes;
	otadev_resume_t stored;
	int have_stored, saves;
	int events[64], nev, ev_status[64];
	int offer_reply;
	uint8_t image[IMG_MAX], sha[32];
};

static struct peer p;

static int
cb_tx(void *u, const uint8_t *b, size_t n)
{
	struct peer *q = u;

	if (n == 0 || b[0] != 0)
		q->bad_tx++;
	while (n > 0) {
		const uint8_t *m;
		size_t used, mlen;

		if (frame_decoder_feed(&q->dec, b, n, &used, &m, &mlen) == FRAME_MSG &&
		    q->nout < 128) {
			memcpy(q->out[q->nout], m, mlen);
			q->out_len[q->nout++] = mlen;
		}
		b += used;
		n -= used;
	}
	return 0;
}

static int
cb_tx_packet(void *u, const uint8_t *m, size_t n)
{
	struct peer *q = u;

	ck_assert_uint_le(n, PROTO_PACKET_MIN);
	memcpy(q->out[q->nout], m, n);
	q->out_len[q->nout++] = n;
	return 0;
}

static int
cb_erase(void *u, uint32_t off)
{
	struct peer *q = u;

	ck_assert_uint_eq(off % q->cfg.sector_size, 0);
	if (q->fail_erase)
		return -5;
	memset(q->flash + off, 0xff, q->cfg.sector_size);
	q->erases++;
	return 0;
}

static int
cb_write(void *u, uint32_t off, const uint8_t *d, size_t n)
{
	struct peer *q = u;

	ck_assert_uint_le(off + n, IMG_MAX);
	if (q->fail_write)
		return -5;
	memcpy(q->flash + off, d, n);
	q->writes++;
	return 0;
}

static int
cb_read(void *u, uint32_t off, uint8_t *d, size_t n)
{
	struct peer *q = u;

	if (q->fail_read)
		return -5;
	memcpy(d, q->flash + off, n);
	return 0;
}

static int
cb_save(void *u, const otadev_resume_t *st)
{
	struct peer *q = u;

	q->stored = *st;
	q->have_stored = 1;
	q->saves++;
	return 0;
}

static int
cb_load(void *u, otadev_resume_t *st)
{
	struct peer *q = u;

	if (!q->have_stored)
		return -1;
	*st = q->stored;
	return 0;
}

static int
cb_event(void *u, const otadev_event_t *ev)
{
	struct peer *q = u;

	if (q->nev < 64) {
		q->ev_status[q->nev] = ev->status;
		q->events[q->nev++] = (int)ev->type;
	}
	if (ev->type == OTADEV_EV_OFFER) {
		ck_assert_ptr_nonnull(ev->offer);
		return q->offer_reply;
	}
	if (ev->type == OTADEV_EV_NO_UPDATE)
		ck_assert_ptr_nonnull(ev->no_update);
	if (ev->type == OTADEV_EV_ERROR)
		ck_assert_ptr_nonnull(ev->error);
	return 0;
}

static void
setup(void)
{
	otadev_sha256_t h;
	size_t i;

	memset(&p, 0, sizeof(p));
	p.cfg.serial = "dev-0001";
	p.cfg.hardware_version = "evt-2";
	p.cfg.software_type = "main";
	p.cfg.current_version = "1.0.0";
	p.cfg.max_payload = 1024;
	p.cfg.window = 4;
	p.cfg.max_stall_ms = 300;
	p.cfg.rx_buf = p.rx;
	p.cfg.rx_cap = sizeof(p.rx);
	p.cfg.tx_buf = p.tx;
	p.cfg.tx_cap = sizeof(p.tx);
	p.cfg.tx = cb_tx;
	p.cfg.flash_write = cb_write;
	p.cfg.flash_read = cb_read;
	p.cfg.slot_size = IMG_MAX;
	p.cfg.persist_save = cb_save;
	p.cfg.persist_load = cb_load;
	p.cfg.event = cb_event;
	p.cfg.user = &p;
	frame_decoder_init(&p.dec, p.decbuf, sizeof(p.decbuf));
	for (i = 0; i < IMG_MAX; i++)
		p.image[i] = (uint8_t)(i * 7 + (i >> 8));
	memset(p.flash, 0xff, sizeof(p.flash));
	otadev_sha256_init(&h);
	otadev_sha256_update(&h, p.image, 10000);
	otadev_sha256_final(&h, p.sha);
}

/* The gateway sends one message (framed, or as a packet). */
static void
gw(const uint8_t *m, size_t n, uint32_t now)
{
	uint8_t f[1 + FRAME_ENCODED_MAX(MSG_DATA_MAX)];
	size_t k, i;

	ck_assert_uint_gt(n, 0);
	if (p.cfg.tx_packet) {
		otadev_packet(&p.dev, m, n, now);
		return;
	}
	f[0] = 0;
	k = frame_encode(m, n, f + 1, sizeof(f) - 1) + 1;
	for (i = 0; i < k; i += 7) /* in pieces, as a UART delivers */
		otadev_feed(&p.dev, f + i, k - i < 7 ? k - i : 7, now);
}

static void
gw_offer(uint32_t size, uint16_t max_payload, uint8_t version, uint8_t flags, uint32_t now)
{
	struct msg_offer o = {version, flags, size, p.sha, max_payload, {"2.0.0", 5}};
	uint8_t m[MSG_OFFER_MAX];

	gw(m, msg_encode_offer(&o, m, sizeof(m)), now);
}

static void
gw_data(uint32_t off, uint16_t len, uint32_t now)
{
	uint8_t m[MSG_DATA_MAX];

	msg_encode_data_header(off, m);
	memcpy(m + MSG_DATA_HEADER, p.image + off, len);
	gw(m, MSG_DATA_HEADER + len, now);
}

static void
gw_simple(uint8_t type, uint32_t now)
{
	uint8_t m[MSG_DONE_LEN];

	m[0] = type;
	memcpy(m + 1, p.sha, 32);
	gw(m, type == MSG_DONE ? MSG_DONE_LEN : 1, now);
}

/* The device's k-th message from the end (0: the last), decoded. */
static struct msg
sent(int k)
{
	struct msg m;

	ck_assert_int_gt(p.nout, k);
	ck_assert_int_eq(
	    msg_decode_to_gateway(p.out[p.nout - 1 - k], p.out_len[p.nout - 1 - k], &m), MSG_OK);
	return m;
}

static void
expect_ack(int k, uint32_t off, uint32_t limit, uint8_t flags)
{
	struct msg m = sent(k);

	ck_assert_uint_eq(m.type, MSG_ACK);
	ck_assert_uint_eq(m.u.ack.offset, off);
	ck_assert_uint_eq(m.u.ack.limit, limit);
	ck_assert_uint_eq(m.u.ack.flags, flags);
}

static void
expect_result(uint8_t status)
{
	struct msg m = sent(0);

	ck_assert_uint_eq(m.type, MSG_RESULT);
	ck_assert_uint_eq(m.u.result.status, status);
	ck_assert_mem_eq(m.u.result.sha256, p.sha, 32);
}

static int
last_event(void)
{
	ck_assert_int_gt(p.nev, 0);
	return p.events[p.nev - 1];
}

START_TEST(config_and_identity_errors)
{
	otadev_config_t c;

	setup();
	ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
	ck_assert_int_eq(p.nout, 0); /* init sends nothing */
#define EXPECT(field, value, err) \
	c = p.cfg;                \
	c.field = value;          \
	ck_assert_int_eq(otadev_init(&p.dev, &c), err)
	EXPECT(tx, NULL, OTADEV_ERR_CONFIG);
	EXPECT(tx_packet, cb_tx_packet, OTADEV_ERR_CONFIG); /* both */
	EXPECT(flash_write, NULL, OTADEV_ERR_CONFIG);
	EXPECT(flash_read, NULL, OTADEV_ERR_CONFIG);
	EXPECT(max_payload, 15, OTADEV_ERR_CONFIG);
	EXPECT(max_payload, 4097, OTADEV_ERR_CONFIG);
	EXPECT(window, 0, OTADEV_ERR_CONFIG);
	EXPECT(persist_load, NULL, OTADEV_ERR_CONFIG);
	EXPECT(rx_cap, OTADEV_RX_CAP(1024) - 1, OTADEV_ERR_CONFIG);
	EXPECT(rx_buf, NULL, OTADEV_ERR_CONFIG);
	EXPECT(tx_cap, OTADEV_TX_CAP - 1, OTADEV_ERR_CONFIG);
	EXPECT(serial, "dev 1", OTADEV_ERR_IDENTITY);
	EXPECT(serial, NULL, OTADEV_ERR_IDENTITY);
	EXPECT(hardware_version, "", OTADEV_ERR_IDENTITY);
	EXPECT(software_type, "a\nb", OTADEV_ERR_IDENTITY);
	EXPECT(current_version, "01234567890123456789012345678901234567890123456789012345678901234",
	    OTADEV_ERR_IDENTITY);
	c = p.cfg;
	c.flash_erase = cb_erase;
	c.sector_size = 3000;
	ck_assert_int_eq(otadev_init(&p.dev, &c), OTADEV_ERR_CONFIG);
	c.sector_size = 0;
	ck_assert_int_eq(otadev_init(&p.dev, &c), OTADEV_ERR_CONFIG);
	c.sector_size = 4096;
	ck_assert_int_eq(otadev_init(&p.dev, &c), 0);
	/* Packet links need no buffers. */
	c = p.cfg;
	c.tx = NULL;
	c.tx_packet = cb_tx_packet;
	c.rx_buf = c.tx_buf = NULL;
	c.rx_cap = c.tx_cap = 0;
	ck_assert_int_eq(otadev_init(&p.dev, &c), 0);
	/* otadev_init_packet() takes exactly that, and refuses a stream configuration. */
	ck_assert_int_eq(otadev_init_packet(&p.dev, &c), 0);
	c.serial = "dev 1";
	ck_assert_int_eq(otadev_init_packet(&p.dev, &c), OTADEV_ERR_IDENTITY);
	c.serial = p.cfg.serial;
	c.window = 0;
	ck_assert_int_eq(otadev_init_packet(&p.dev, &c), OTADEV_ERR_CONFIG);
	c.window = p.cfg.window;
	c.tx = cb_tx; /* both */
	ck_assert_int_eq(otadev_init_packet(&p.dev, &c), OTADEV_ERR_CONFIG);
	ck_assert_int_eq(otadev_init_packet(&p.dev, &p.cfg), OTADEV_ERR_CONFIG);
	ck_assert_int_eq(p.nout, 0);
#undef EXPECT
}
END_TEST

START_TEST(hello_backoff)
{
	static const uint32_t at[] = {0, 1000, 3000, 7000, 15000, 31000, 63000, 123000, 183000};
	uint32_t now = 0;
	size_t i;

	setup();
	ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
	ck_assert_uint_eq(otadev_poll(&p.dev, 0), UINT32_MAX); /* nothing until asked */
	otadev_check(&p.dev, 0);
	for (i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		uint32_t wait;

		ck_assert_int_eq(p.nout, (int)i + 1);
		ck_assert_uint_eq(sent(0).type, MSG_HELLO);
		ck_assert_uint_eq(sent(0).u.hello.flags, 0);
		ck_assert_uint_eq(now, at[i]);
		wait = otadev_poll(&p.dev, now);
		ck_assert_uint_gt(wait, 0);
		ck_assert_int_eq(p.nout, (int)i + 1);
		now += wait;
		otadev_poll(&p.dev, now);
	}
	ck_assert_int_eq(p.bad_tx, 0);
}
END_TEST

START_TEST(no_update_and_error_schedules)
{
	uint8_t m[MSG_ERROR_MAX];
	struct msg_no_update nu = {5, {"latest", 6}};
	struct msg_error er = {MSG_ERROR_UPSTREAM_UNAVAILABLE, 30, {"later", 5}};

	setup();
	ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
	otadev_check(&p.dev, 0);
	gw(m, msg_encode_no_update(&nu, m, sizeof(m)), 10);
	ck_assert_int_eq(last_event(), OTADEV_EV_NO_UPDATE);
	ck_assert_uint_eq(otadev_poll(&p.dev, 10), 5000);
	otadev_poll(&p.dev, 5010);
	ck_assert_int_eq(p.nout, 2);
	ck_assert_uint_eq(sent(0).type, MSG_HELLO);
	/* A second answer to an old HELLO while idle is ignored. */
	nu.recheck_s = 0;
	gw(m, msg_encode_no_update(&nu, m, sizeof(m)), 5020);
	ck_assert_uint_eq(otadev_poll(&p.dev, 5020), UINT32_MAX); /* check_s 0: when asked */
	gw(m, msg_encode_no_update(&nu, m, sizeof(m)), 5030);
	ck_assert_int_eq(p.nev, 2);

	otadev_check(&p.dev, 6000);
	gw(m, msg_encode_error(&er, m, sizeof(m)), 6010);
	ck_assert_int_eq(last_event(), OTADEV_EV_ERROR);
	ck_assert_uint_eq(otadev_poll(&p.dev, 6010), 30000);
	otadev_poll(&p.dev, 36009);
	ck_assert_int_eq(p.nout, 3);
	otadev_poll(&p.dev, 36010);
	ck_assert_int_eq(p.nout, 4);
}
END_TEST

START_TEST(refusals)
{
	uint32_t now = 0;

	setup();
	p.cfg.max_payload = 512;
	ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
	otadev_check(&p.dev, now);
	gw_offer(10000, 512, 2, 0, now); /* a version above the device's */
	expect_result(MSG_STATUS_UNSUPPORTED);
	otadev_check(&p.dev, now);
	gw_offer(10000, 1024, 1, 0, now); /* more than the device's max_payload */
	expect_result(MSG_STATUS_UNSUPPORTED);
	otadev_check(&p.dev, now);
	gw_offer(10000, 512, 1, MSG_OFFER_F_DELTA, now); /* delta without caps DELTA */
	expect_result(MSG_STATUS_UNSUPPORTED);
	otadev_check(&p.dev, now);
	gw_offer(IMG_MAX + 1, 512, 1, 0, now); /* larger than the slot */
	expect_result(MSG_STATUS_NO_SPACE);
	ck_assert_int_eq(p.nev, 4); /* the application was not asked */
	otadev_check(&p.dev, now);
	p.offer_reply = -7; /* nonsense from the application means no */
	gw_offer(10000, 512, 1, 0, now);
	expect_result(MSG_STATUS_DECLINED);
	ck_assert_uint_eq(sent(0).u.result.bytes_received, 0);
	ck_assert_int_eq(p.writes + p.saves, 0);
	/* RESULT repeats until DONE; DONE ends it. */
	now = otadev_poll(&p.dev, now);
	otadev_poll(&p.dev, now);
	expect_result(MSG_STATUS_DECLINED);
	gw_simple(MSG_DONE, now);
	ck_assert_int_eq(last_event(), OTADEV_EV_DONE);
	ck_assert_uint_eq(otadev_poll(&p.dev, now), UINT32_MAX);
	/* Without DONE, it gives up after the retries. */
	otadev_check(&p.dev, now);
	p.offer_reply = MSG_STATUS_NO_SPACE;
	gw_offer(10000, 512, 1, 0, now);
	expect_result(MSG_STATUS_NO_SPACE);
	for (;;) {
		uint32_t w = otadev_poll(&p.dev, now);

		if (last_event() == OTADEV_EV_ABORTED)
			break;
		ck_assert_uint_ne(w, UINT32_MAX);
		now += w;
		ck_assert_uint_lt(now, 60000);
	}
	ck_assert_int_eq(p.ev_status[p.nev - 1], MSG_STATUS_NO_SPACE);
	ck_assert_uint_eq(otadev_poll(&p.dev, now), UINT32_MAX);
}
END_TEST

/* Gaps, epochs, duplicates and out-of-window DATA. */
START_TEST(gaps_and_epochs)
{
	uint8_t e0, e1;
	int writes;

	setup();
	ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
	otadev_check(&p.dev, 0);
	gw_offer(10000, 1024, 1, 0, 0);
	expect_ack(0, 0, 4096, 0);
	gw_data(0, 1024, 1);
	expect_ack(0, 1024, 5120, 0);
	gw_data(2048, 1024, 2); /* 1024 was lost */
	expect_ack(0, 1024, 5120, MSG_ACK_F_REWIND);
	e0 = sent(0).u.ack.epoch;
	gw_data(3072, 1024, 3); /* in flight from before: the same request */
	expect_ack(0, 1024, 5120, MSG_ACK_F_REWIND);
	ck_assert_uint_eq(sent(0).u.ack.epoch, e0);
	gw_data(1024, 1024, 4); /* the resend */
	expect_ack(0, 2048, 6144, 0);
	gw_data(3072, 1024, 5); /* the resend of 2048 was lost: a frame below the highest seen */
	expect_ack(0, 2048, 6144, MSG_ACK_F_REWIND);
	e1 = sent(0).u.ack.epoch;
	ck_assert_uint_ne(e1, e0);
	gw_data(4096, 1024, 6); /* still the same gap, same epoch */
	ck_assert_uint_eq(sent(0).u.ack.epoch, e1);
	writes = p.writes;
	gw_data(0, 1024, 7); /* a duplicate: not written, the current ACK */
	expect_ack(0, 2048, 6144, MSG_ACK_F_REWIND);
	gw_data(2048, 1024, 8);
	expect_ack(0, 3072, 7168, 0);
	ck_assert_int_eq(p.writes, writes + 1);
	gw_data(8192, 1024, 9); /* beyond the limit granted: not written */
	expect_ack(0, 3072, 7168, 0);
	gw_data(2560, 1024, 10); /* overlapping what is stored: only the new part is written */
	expect_ack(0, 3584, 7680, 0);
	ck_assert_mem_eq(p.flash, p.image, 3584);
	ck_assert_int_eq(p.flash[3584], 0xff);
	ck_assert_int_eq(p.bad_tx, 0);
}
END_TEST

/* With erasable flash, the device pauses the gateway before each erase. */
START_TEST(pause_before_erase)
{
	setup();
	p.cfg.flash_erase = cb_erase;
	p.cfg.sector_size = 4096;
	ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
	otadev_check(&p.dev, 0);
	gw_offer(10000, 1024, 1, 0, 0);
	gw_data(0, 1024, 1);
	expect_ack(1, 0, 0, 0); /* pause */
	expect_ack(0, 1024, 5120, 0);
	ck_assert_int_eq(p.erases, 1);
	gw_data(1024, 1024, 2);
	expect_ack(0, 2048, 6144, 0);
	ck_assert_int_eq(p.erases, 1);
	gw_data(2048, 1024, 3);
	gw_data(3072, 1024, 4);
	gw_data(4096, 1024, 5); /* the next sector */
	expect_ack(1, 4096, 4096, 0);
	expect_ack(0, 5120, 9216, 0);
	ck_assert_int_eq(p.erases, 2);
}
END_TEST

START_TEST(flash_failures)
{
	int which;

	for (which = 0; which < 3; which++) {
		setup();
		p.cfg.flash_erase = cb_erase;
		p.cfg.sector_size = 4096;
		ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
		otadev_check(&p.dev, 0);
		gw_offer(1000, 1024, 1, 0, 0);
		p.fail_erase = which == 0;
		p.fail_write = which == 1;
		p.fail_read = which == 2;
		gw_data(0, 1000, 1);
		while (otadev_poll(&p.dev, 2) == 0)
			;
		expect_result(MSG_STATUS_FLASH_ERROR);
		ck_assert_int_eq(p.ev_status[p.nev - 1], MSG_STATUS_FLASH_ERROR);
	}
}
END_TEST

/* The verify pass runs in steps from poll, then RESULT; a mismatch resets the stored offset. */
START_TEST(verify_pass)
{
	uint32_t off;
	int polls = 0;

	setup();
	p.cfg.verify_step = 512;
	ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
	otadev_check(&p.dev, 0);
	gw_offer(10000, 1024, 1, 0, 0);
	for (off = 0; off < 10000; off += 1024)
		gw_data(off, (uint16_t)(10000 - off < 1024 ? 10000 - off : 1024), 1);
	expect_ack(0, 10000, 10000, 0);
	ck_assert_uint_eq(p.stored.offset, 10000);
	while (otadev_poll(&p.dev, 2) == 0)
		polls++;
	ck_assert_int_ge(polls, 19); /* 10000 / 512 steps */
	expect_result(MSG_STATUS_OK);
	ck_assert_uint_eq(sent(0).u.result.bytes_received, 10000);
	gw_simple(MSG_DONE, 3);
	ck_assert_int_eq(last_event(), OTADEV_EV_DONE);
	ck_assert_int_eq(p.ev_status[p.nev - 1], MSG_STATUS_OK);

	/* Same again with a corrupted byte in flash after writing. */
	setup();
	ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
	otadev_check(&p.dev, 0);
	gw_offer(10000, 1024, 1, 0, 0);
	for (off = 0; off < 10000; off += 1024)
		gw_data(off, (uint16_t)(10000 - off < 1024 ? 10000 - off : 1024), 1);
	p.flash[5000] ^= 1;
	while (otadev_poll(&p.dev, 2) == 0)
		;
	expect_result(MSG_STATUS_HASH_MISMATCH);
	ck_assert_uint_eq(sent(0).u.result.bytes_received, 10000);
	ck_assert_uint_eq(p.stored.offset, 0);
	/* The next HELLO does not claim a partial image. */
	otadev_check(&p.dev, 5);
	ck_assert_uint_eq(sent(0).u.hello.flags, 0);
}
END_TEST

/* A stored resume state is rounded down to its sector, and lowered in storage on accept. */
START_TEST(resume_rounding)
{
	setup();
	p.cfg.flash_erase = cb_erase;
	p.cfg.sector_size = 4096;
	memcpy(p.stored.sha256, p.sha, 32);
	p.stored.size = 10000;
	p.stored.offset = 5000;
	p.have_stored = 1;
	memcpy(p.flash, p.image, 5000);
	ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
	otadev_check(&p.dev, 0);
	ck_assert_uint_eq(sent(0).u.hello.flags, MSG_HELLO_F_RESUME);
	ck_assert_uint_eq(sent(0).u.hello.resume_offset, 4096);
	ck_assert_mem_eq(sent(0).u.hello.resume_sha256, p.sha, 32);
	gw_offer(10000, 1024, 1, 0, 1);
	ck_assert_uint_eq(p.stored.offset, 4096);
	expect_ack(0, 4096, 8192, 0);
	gw_data(4096, 1024, 2);
	ck_assert_int_eq(p.erases, 1); /* the sector holding the old offset, erased again */
	expect_ack(0, 5120, 9216, 0);

	/* A different image: the stored state names it before any flash changes. */
	setup();
	memcpy(p.stored.sha256, p.sha, 32);
	p.stored.sha256[0] ^= 1;
	p.stored.size = 10000;
	p.stored.offset = 5000;
	p.have_stored = 1;
	ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
	otadev_check(&p.dev, 0);
	gw_offer(10000, 1024, 1, 0, 1);
	ck_assert_uint_eq(p.stored.offset, 0);
	ck_assert_mem_eq(p.stored.sha256, p.sha, 32);
	expect_ack(0, 0, 4096, 0);
}
END_TEST

START_TEST(silence_and_retries)
{
	uint32_t now = 0;
	int acks = 0;

	setup();
	ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
	otadev_check(&p.dev, now);
	gw_offer(10000, 1024, 1, 0, now);
	gw_data(0, 1024, now);
	/* No more DATA: the same ACK every second, then HELLO with RESUME. */
	while (sent(0).type == MSG_ACK) {
		uint32_t w = otadev_poll(&p.dev, now);

		ck_assert_uint_eq(w, OTADEV_ACK_TIMEOUT_MS);
		now += w;
		otadev_poll(&p.dev, now);
		if (sent(0).type == MSG_ACK) {
			expect_ack(0, 1024, 5120, 0);
			acks++;
		}
	}
	ck_assert_int_eq(acks, OTADEV_RETRIES);
	ck_assert_int_eq(last_event(), OTADEV_EV_ABORTED);
	ck_assert_uint_eq(sent(0).type, MSG_HELLO);
	ck_assert_uint_eq(sent(0).u.hello.flags, MSG_HELLO_F_RESUME);
	ck_assert_uint_eq(sent(0).u.hello.resume_offset, 1024);
}
END_TEST

START_TEST(stop_and_solicit)
{
	setup();
	ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
	otadev_check(&p.dev, 0);
	otadev_stop(&p.dev);
	ck_assert_uint_eq(otadev_poll(&p.dev, 100000), UINT32_MAX);
	gw_simple(MSG_SOLICIT, 1);
	ck_assert_int_eq(p.nout, 1);
	otadev_check(&p.dev, 2);
	ck_assert_int_eq(p.nout, 2);
	gw_offer(10000, 1024, 1, 0, 3);
	gw_data(0, 1024, 4);
	/* A gateway that forgot the session solicits: HELLO with what is stored. */
	gw_simple(MSG_SOLICIT, 5);
	ck_assert_uint_eq(sent(0).type, MSG_HELLO);
	ck_assert_uint_eq(sent(0).u.hello.flags, MSG_HELLO_F_RESUME);
	ck_assert_uint_eq(sent(0).u.hello.resume_offset, 1024);
	/* The exchange restarted, so the application is asked again; the transfer continues
	 * where it was. */
	gw_offer(10000, 1024, 1, 0, 6);
	ck_assert_int_eq(last_event(), OTADEV_EV_PROGRESS);
	ck_assert_int_eq(p.events[p.nev - 2], OTADEV_EV_OFFER);
	expect_ack(0, 1024, 5120, 0);
}
END_TEST

START_TEST(explicit_rewind)
{
	uint32_t off;

	setup();
	p.cfg.flash_erase = cb_erase;
	p.cfg.sector_size = 4096;
	ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
	ck_assert_int_eq(otadev_rewind(&p.dev, 0, 0), OTADEV_ERR_STATE);
	otadev_check(&p.dev, 0);
	ck_assert_int_eq(otadev_rewind(&p.dev, 0, 0), OTADEV_ERR_STATE);
	gw_offer(10000, 1024, 1, 0, 0);
	for (off = 0; off < 6144; off += 1024)
		gw_data(off, 1024, 1);
	ck_assert_int_eq(otadev_rewind(&p.dev, 7000, 2), OTADEV_ERR_STATE);
	ck_assert_int_eq(otadev_rewind(&p.dev, 5000, 2), 0);
	expect_ack(0, 4096, 8192, MSG_ACK_F_REWIND);
	ck_assert_uint_eq(p.stored.offset, 4096);
	gw_data(4096, 1024, 3);
	ck_assert_int_eq(p.erases, 3); /* sector 4096 erased again before the rewrite */
	expect_ack(0, 5120, 9216, 0);
}
END_TEST

/* A whole transfer on a packet link, set up by either init function. */
START_TEST(packet_link)
{
	uint32_t off;

	setup();
	p.cfg.tx = NULL;
	p.cfg.tx_packet = cb_tx_packet;
	p.cfg.max_payload = 239;
	if (_i == 0)
		ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
	else
		ck_assert_int_eq(otadev_init_packet(&p.dev, &p.cfg), 0);
	otadev_check(&p.dev, 0);
	ck_assert_uint_eq(sent(0).type, MSG_HELLO);
	gw_offer(10000, 239, 1, 0, 0);
	expect_ack(0, 0, 956, 0);
	for (off = 0; off < 10000; off += 239)
		gw_data(off, (uint16_t)(10000 - off < 239 ? 10000 - off : 239), 1);
	while (otadev_poll(&p.dev, 2) == 0)
		;
	expect_result(MSG_STATUS_OK);
	gw_simple(MSG_DONE, 3);
	ck_assert_int_eq(last_event(), OTADEV_EV_DONE);
	ck_assert_int_eq(p.ev_status[p.nev - 1], MSG_STATUS_OK);
	/* Feeding stream bytes to a packet-link context does nothing. */
	otadev_feed(&p.dev, (const uint8_t *)"\x00\x01\x00", 3, 3);
	ck_assert_uint_eq(sent(0).type, MSG_RESULT);
}
END_TEST

/* Line noise: random bytes (delimiters included) never make the device send or crash, and a
 * valid message after them still works. */
START_TEST(line_noise)
{
	uint32_t x = 99;
	uint8_t junk[4096];
	size_t i;

	setup();
	ck_assert_int_eq(otadev_init(&p.dev, &p.cfg), 0);
	otadev_check(&p.dev, 0);
	for (i = 0; i < sizeof(junk); i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		junk[i] = (uint8_t)(x % 16 == 0 ? 0 : x >> 8);
	}
	otadev_feed(&p.dev, junk, sizeof(junk), 1);
	ck_assert_int_eq(p.nout, 1);
	gw_offer(10000, 1024, 1, 0, 2);
	expect_ack(0, 0, 4096, 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("otadev");
	TCase *tc = tcase_create("otadev");

	tcase_add_test(tc, config_and_identity_errors);
	tcase_add_test(tc, hello_backoff);
	tcase_add_test(tc, no_update_and_error_schedules);
	tcase_add_test(tc, refusals);
	tcase_add_test(tc, gaps_and_epochs);
	tcase_add_test(tc, pause_before_erase);
	tcase_add_test(tc, flash_failures);
	tcase_add_test(tc, verify_pass);
	tcase_add_test(tc, resume_rounding);
	tcase_add_test(tc, silence_and_retries);
	tcase_add_test(tc, stop_and_solicit);
	tcase_add_test(tc, explicit_rewind);
	tcase_add_loop_test(tc, packet_link, 0, 2);
	tcase_add_test(tc, line_noise);
	suite_add_tcase(s, tc);
	return ck_main(s);
}
