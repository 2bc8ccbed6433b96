/* libFuzzer target: the device library driven by an arbitrary script of received bytes (stream)
 * or packets, polls with time passing, checks and rewinds. It must never write outside the
 * offered image or the slot, never program flash twice between erases, never store a resume
 * state claiming more than flash holds, and never send a message the gateway would reject. */
#include <stdint.h>
#include <string.h>

#include "otadev.h"

#define SLOT   (256 * 1024)
#define SECTOR 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct env {
	otadev_t dev;
	otadev_config_t cfg;
	uint8_t rx[OTADEV_RX_CAP(1024)], tx[OTADEV_TX_CAP];
	uint8_t flash[SLOT], programmed[SLOT / 8];
	uint32_t written; /* highest byte written + 1 */
	otadev_resume_t stored;
	int have_stored;
	struct frame_decoder dec;
	uint8_t decbuf[MSG_CONTROL_MAX + FRAME_CRC_LEN];
};

static struct env E;

static void
check_sent(const uint8_t *m, size_t n)
{
	struct msg msg;

	if (msg_decode_to_gateway(m, n, &msg) != MSG_OK)
		__builtin_trap();
}

static int
e_tx(void *u, const uint8_t *b, size_t n)
{
	(void)u;
	while (n > 0) {
		const uint8_t *m;
		size_t used, mlen;

		if (frame_decoder_feed(&E.dec, b, n, &used, &m, &mlen) == FRAME_MSG)
			check_sent(m, mlen);
		b += used;
		n -= used;
	}
	return 0;
}

static int
e_tx_packet(void *u, const uint8_t *m, size_t n)
{
	(void)u;
	if (n > PROTO_PACKET_MIN)
		__builtin_trap();
	check_sent(m, n);
	return 0;
}

static int
e_erase(void *u, uint32_t off)
{
	(void)u;
	if (off % SECTOR || off >= SLOT)
		__builtin_trap();
	memset(E.flash + off, 0xff, SECTOR);
	memset(E.programmed + off / 8, 0, SECTOR / 8);
	return 0;
}

static int
e_write(void *u, uint32_t off, const uint8_t *d, size_t n)
{
	size_t i;

	(void)u;
	if (n == 0 || off + n > SLOT || off + n > E.dev.size)
		__builtin_trap();
	for (i = off; i < off + n; i++) {
		if (E.cfg.flash_erase && (E.programmed[i / 8] & (1u << (i % 8))))
			__builtin_trap(); /* programmed twice without an erase */
		E.programmed[i / 8] |= (uint8_t)(1u << (i % 8));
	}
	memcpy(E.flash + off, d, n);
	if (off + n > E.written)
		E.written = (uint32_t)(off + n);
	return 0;
}

static int
e_read(void *u, uint32_t off, uint8_t *d, size_t n)
{
	(void)u;
	if (off + n > SLOT)
		__builtin_trap();
	memcpy(d, E.flash + off, n);
	return 0;
}

static int
e_save(void *u, const otadev_resume_t *st)
{
	(void)u;
	if (st->offset > st->size || st->offset > E.written)
		__builtin_trap();
	E.stored = *st;
	E.have_stored = 1;
	return 0;
}

static int
e_load(void *u, otadev_resume_t *st)
{
	(void)u;
	if (!E.have_stored)
		return -1;
	*st = E.stored;
	return 0;
}

static int
e_event(void *u, const otadev_event_t *ev)
{
	(void)u;
	return ev->type == OTADEV_EV_OFFER && (ev->size & 1) && ev->size < 100 ? 4 : 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t now = 0;
	uint8_t mode;

	if (size < 1)
		return 0;
	mode = *data++;
	size--;
	memset(&E, 0, sizeof(E));
	memset(E.flash, 0xff, sizeof(E.flash));
	E.cfg.serial = "fuzz-1";
	E.cfg.hardware_version = "hw";
	E.cfg.software_type = "main";
	E.cfg.current_version = "1.0.0";
	E.cfg.max_payload = mode & 4 ? 239 : 1024;
	E.cfg.window = 4;
	E.cfg.max_stall_ms = 100;
	E.cfg.rx_buf = E.rx;
	E.cfg.rx_cap = sizeof(E.rx);
	E.cfg.tx_buf = E.tx;
	E.cfg.tx_cap = sizeof(E.tx);
	if (mode & 1)
		E.cfg.tx_packet = e_tx_packet;
	else
		E.cfg.tx = e_tx;
	if (mode & 2) {
		E.cfg.flash_erase = e_erase;
		E.cfg.sector_size = SECTOR;
	}
	E.cfg.flash_write = e_write;
	E.cfg.flash_read = e_read;
	E.cfg.slot_size = SLOT;
	E.cfg.persist_save = e_save;
	E.cfg.persist_load = e_load;
	E.cfg.event = e_event;
	E.cfg.persist_interval = 1000;
	E.cfg.verify_step = 4096;
	frame_decoder_init(&E.dec, E.decbuf, sizeof(E.decbuf));
	if (otadev_init(&E.dev, &E.cfg) != 0)
		__builtin_trap();
	otadev_check(&E.dev, now);
	/* Records: op, len, len bytes. */
	while (size >= 2) {
		uint8_t op = data[0];
		size_t n = data[1] < size - 2 ? data[1] : size - 2;
		const uint8_t *b = data + 2;

		switch (op % 5) {
		case 0:
			if (mode & 1)
				otadev_packet(&E.dev, b, n, now);
			else
				otadev_feed(&E.dev, b, n, now);
			break;
		case 1:
			now += n ? (uint32_t)b[0] * 50u : 1000u;
			/* fall through - time passes, then poll */
		case 2:
			(void)otadev_poll(&E.dev, now);
			break;
		case 3:
			otadev_check(&E.dev, now);
			break;
		default:
			(void)otadev_rewind(
			    &E.dev, n >= 2 ? (uint32_t)(b[0] | b[1] << 8) * 16u : 0, now);
			break;
		}
		data += 2 + n;
		size -= 2 + n;
	}
	/* Finish any verify pass. */
	while (otadev_poll(&E.dev, now) == 0)
		;
	/* A reboot from the stored state must be accepted. */
	if (otadev_init(&E.dev, &E.cfg) != 0)
		__builtin_trap();
	return 0;
}
