/* The device/gateway simulation (see sim.h). The gateway peer here is a minimal session: it
 * answers HELLO with OFFER (or NO_UPDATE/ERROR), runs a sender on the device's ACKs, serves DATA
 * from the image in memory and answers RESULT with DONE. The simulated flash refuses nothing but
 * counts any byte programmed twice without an erase, which real NOR flash would corrupt. */
#include "sim.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SIM_IDLE_DELIMITER_US 100000.0 /* a sender flushes the line after 100 ms idle */

struct sim_ent {
	double at;
	uint8_t *pkt; /* packet links: a copy of the message */
	uint32_t len;
	uint8_t byte;
};

static struct sim_ent *
sim_ring(struct sim_bytes *q)
{
	return q->ring;
}

static size_t
sim_q_len(const struct sim_bytes *q)
{
	return q->tail - q->head;
}

static void
sim_q_push(struct sim_bytes *q, const struct sim_ent *e)
{
	if (q->tail - q->head == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 4096, i;
		struct sim_ent *n = malloc(ncap * sizeof(*n));

		ck_assert_ptr_nonnull(n);
		for (i = q->head; i < q->tail; i++)
			n[i - q->head] = sim_ring(q)[i % q->cap];
		free(q->ring);
		q->ring = n;
		q->tail -= q->head;
		q->head = 0;
		q->cap = ncap;
	}
	sim_ring(q)[q->tail++ % q->cap] = *e;
}

static struct sim_ent *
sim_q_at(struct sim_bytes *q, size_t i)
{
	return &sim_ring(q)[(q->head + i) % q->cap];
}

static void
sim_q_clear(struct sim_bytes *q)
{
	while (q->head < q->tail) {
		free(sim_q_at(q, 0)->pkt);
		q->head++;
	}
}

static uint32_t
sim_rand(struct sim *s)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 17;
	s->rng ^= s->rng << 5;
	return s->rng;
}

static double
sim_uniform(struct sim *s)
{
	return (sim_rand(s) + 1.0) / 4294967296.0;
}

/* Bits until the next bit error: exponential with mean 1/ber. */
static double
sim_error_gap(struct sim *s)
{
	return s->o.ber > 0 ? -log(sim_uniform(s)) / s->o.ber : 1e300;
}

static uint8_t
sim_noise(struct sim *s, struct sim_bytes *q, uint8_t b)
{
	while (q->bits_to_error < 8.0) {
		b ^= (uint8_t)(1u << (unsigned)q->bits_to_error);
		q->bits_to_error += sim_error_gap(s);
	}
	q->bits_to_error -= 8.0;
	return b;
}

static uint32_t
sim_now_ms(const struct sim *s)
{
	return (uint32_t)(s->t / 1000.0);
}

/* Puts bytes (stream) or one packet on a link at time t. */
static void
sim_transmit(struct sim *s, struct sim_bytes *q, const uint8_t *p, size_t n, double t)
{
	struct sim_ent e;
	double start = t > q->wire_free ? t : q->wire_free;
	size_t i;

	if (t < s->cut_until)
		return;
	memset(&e, 0, sizeof(e));
	if (s->o.packet) {
		double end = start + 1e6 * (double)n / s->o.packet_rate;

		q->wire_free = end;
		if (s->o.packet_loss > 0 && sim_uniform(s) < s->o.packet_loss)
			return;
		e.at = end + s->o.latency_ms * 1000.0;
		e.pkt = malloc(n);
		ck_assert_ptr_nonnull(e.pkt);
		memcpy(e.pkt, p, n);
		e.len = (uint32_t)n;
		sim_q_push(q, &e);
		return;
	}
	{
		double byte_us = 1e6 * 10.0 / s->o.baud;

		for (i = 0; i < n; i++) {
			e.at = start + (double)(i + 1) * byte_us + s->o.latency_ms * 1000.0;
			e.byte = sim_noise(s, q, p[i]);
			sim_q_push(q, &e);
		}
		q->wire_free = start + (double)n * byte_us;
	}
}

/* --- device callbacks --- */

static double
sim_dev_time(const struct sim *s)
{
	return s->t > s->dev_busy_until ? s->t : s->dev_busy_until;
}

static int
sim_dev_tx(void *user, const uint8_t *bytes, size_t n)
{
	struct sim *s = user;

	sim_transmit(s, &s->to_gw, bytes, n, sim_dev_time(s));
	return 0;
}

static int
sim_dev_tx_packet(void *user, const uint8_t *msg, size_t n)
{
	struct sim *s = user;

	ck_assert_uint_le(n, PROTO_PACKET_MIN);
	sim_transmit(s, &s->to_gw, msg, n, sim_dev_time(s));
	return 0;
}

static size_t
sim_slot(const struct sim *s)
{
	size_t sec = s->o.sector_size ? s->o.sector_size : 4096;

	return (s->o.size + sec - 1) / sec * sec;
}

static int
sim_dev_erase(void *user, uint32_t offset)
{
	struct sim *s = user;

	ck_assert_uint_eq(offset % s->o.sector_size, 0);
	ck_assert_uint_lt(offset, sim_slot(s));
	memset(s->flash + offset, 0xff, s->o.sector_size);
	memset(s->flash + sim_slot(s) + offset, 0, s->o.sector_size); /* programmed marks */
	s->erases++;
	s->dev_busy_until = sim_dev_time(s) + s->o.erase_ms * 1000.0;
	return 0;
}

static int
sim_dev_write(void *user, uint32_t offset, const uint8_t *data, size_t n)
{
	struct sim *s = user;
	uint8_t *prog = s->flash + sim_slot(s);
	size_t i;

	ck_assert_uint_le(offset + n, s->o.size);
	for (i = 0; i < n; i++) {
		if (s->o.sector_size && prog[offset + i])
			s->flash_double_program++;
		prog[offset + i] = 1;
	}
	memcpy(s->flash + offset, data, n);
	if (offset + n > s->dev_written)
		s->dev_written = (uint32_t)(offset + n);
	if (offset + n == s->o.size && s->t_complete == 0)
		s->t_complete = sim_dev_time(s);
	return 0;
}

static int
sim_dev_read(void *user, uint32_t offset, uint8_t *data, size_t n)
{
	struct sim *s = user;

	ck_assert_uint_le(offset + n, s->o.size);
	memcpy(data, s->flash + offset, n);
	return 0;
}

static int
sim_dev_save(void *user, const otadev_resume_t *st)
{
	struct sim *s = user;

	ck_assert_uint_le(st->offset, s->dev_written);
	s->stored = *st;
	s->have_stored = 1;
	return 0;
}

static int
sim_dev_load(void *user, otadev_resume_t *st)
{
	struct sim *s = user;

	if (!s->have_stored)
		return -1;
	*st = s->stored;
	return 0;
}

static int
sim_dev_event(void *user, const otadev_event_t *ev)
{
	struct sim *s = user;

	switch (ev->type) {
	case OTADEV_EV_OFFER:
		s->dev_offers++;
		ck_assert_uint_eq(ev->offer->size, s->o.size);
		return s->o.decline ? MSG_STATUS_DECLINED : 0;
	case OTADEV_EV_NO_UPDATE:
		s->dev_no_update++;
		break;
	case OTADEV_EV_ERROR:
		s->dev_errors++;
		break;
	case OTADEV_EV_PROGRESS:
		ck_assert_uint_le(ev->offset, ev->size);
		break;
	case OTADEV_EV_RESULT:
		s->dev_results++;
		s->dev_last_status = ev->status;
		break;
	case OTADEV_EV_DONE:
		s->dev_done++;
		break;
	case OTADEV_EV_ABORTED:
		s->dev_aborted++;
		break;
	}
	return 0;
}

/* --- gateway peer --- */

static void
sim_gw_send(struct sim *s, const uint8_t *m, size_t n)
{
	static uint8_t buf[1 + FRAME_ENCODED_MAX(MSG_DATA_MAX)];
	size_t k = 0;

	ck_assert_uint_gt(n, 0);
	if (s->o.packet) {
		sim_transmit(s, &s->to_dev, m, n, s->t);
		return;
	}
	if (s->to_dev.wire_free + SIM_IDLE_DELIMITER_US < s->t || s->gw_last_tx == 0)
		buf[k++] = 0;
	n = frame_encode(m, n, buf + k, sizeof(buf) - k);
	ck_assert_uint_gt(n, 0);
	sim_transmit(s, &s->to_dev, buf, k + n, s->t);
	s->gw_last_tx = s->t;
}

static void
sim_gw_snapshot(struct sim *s)
{
	if (s->snd_live) {
		s->snd_live = 0;
		sender_stats(&s->snd, &s->last_stats);
		s->total_resent += s->last_stats.bytes_resent;
		s->total_rewinds += s->last_stats.rewinds;
		s->total_timeouts += s->last_stats.timeouts;
	}
}

static void
sim_gw_handle(struct sim *s, const uint8_t *buf, size_t n)
{
	struct msg m;
	uint8_t out[MSG_CONTROL_MAX];
	enum msg_err e = msg_decode_to_gateway(buf, n, &m);

	if (e != MSG_OK) {
		struct msg_error err = {MSG_ERROR_BAD_MESSAGE, 0, {"bad message", 11}};

		s->gw_bad_msgs++;
		sim_gw_send(s, out, msg_encode_error(&err, out, sizeof(out)));
		return;
	}
	switch (m.type) {
	case MSG_HELLO: {
		struct msg_hello *h = &m.u.hello;

		s->hellos++;
		if (h->flags & MSG_HELLO_F_RESUME) {
			s->hellos_resume++;
			s->last_hello_resume_offset = h->resume_offset;
		}
		sim_gw_snapshot(s);
		if (s->o.no_update) {
			struct msg_no_update nu = {0, {"latest", 6}};

			sim_gw_send(s, out, msg_encode_no_update(&nu, out, sizeof(out)));
			s->gw = SIM_GW_DONE;
		} else if (s->o.gateway_error) {
			struct msg_error err = {
			    MSG_ERROR_UPSTREAM_UNAVAILABLE, 30, {"upstream unreachable", 20}};

			sim_gw_send(s, out, msg_encode_error(&err, out, sizeof(out)));
			s->gw = SIM_GW_WAIT_HELLO;
		} else {
			struct msg_offer o;
			uint8_t sha[32];

			memcpy(sha, s->sha, 32);
			if (s->o.wrong_sha)
				sha[0] ^= 1;
			o.proto_version = PROTO_VERSION;
			o.flags = 0;
			o.size = s->o.size;
			o.sha256 = sha;
			o.max_payload =
			    h->max_payload < PROTO_PAYLOAD_MAX ? h->max_payload : PROTO_PAYLOAD_MAX;
			o.target_version.s = "2.0.0";
			o.target_version.len = 5;
			s->gw_payload = o.max_payload;
			s->gw_window = h->window;
			s->gw_stall = h->max_stall_ms;
			sim_gw_send(s, out, msg_encode_offer(&o, out, sizeof(out)));
			s->gw = SIM_GW_OFFERED;
		}
		break;
	}
	case MSG_ACK:
		s->acks++;
		if (s->gw == SIM_GW_OFFERED) {
			struct sender_config c;

			memset(&c, 0, sizeof(c));
			c.size = s->o.size;
			c.max_payload = s->gw_payload;
			c.window = s->gw_window;
			c.max_stall_ms = s->gw_stall;
			c.link = s->o.packet ? SENDER_LINK_PACKET : SENDER_LINK_STREAM;
			ck_assert_int_eq(sender_init(&s->snd, &c, sim_now_ms(s)), 0);
			s->first_ack_offset = m.u.ack.offset;
			s->gw = SIM_GW_SENDING;
			s->snd_live = 1;
		}
		if (s->gw == SIM_GW_SENDING &&
		    sender_ack(&s->snd, &m.u.ack, sim_now_ms(s)) == SENDER_ACK_BAD) {
			struct msg_error err = {MSG_ERROR_BAD_OFFSET, 0, {"bad offset", 10}};

			sim_gw_send(s, out, msg_encode_error(&err, out, sizeof(out)));
			s->gw = SIM_GW_FAILED;
		}
		break;
	case MSG_RESULT: {
		struct msg_done d;

		s->gw_results++;
		s->gw_result_status = m.u.result.status;
		s->gw_result_bytes = m.u.result.bytes_received;
		sim_gw_snapshot(s);
		d.sha256 = m.u.result.sha256;
		sim_gw_send(s, out, msg_encode_done(&d, out, sizeof(out)));
		s->gw_dones++;
		s->gw = SIM_GW_DONE;
		break;
	}
	default:
		break;
	}
}

static int
sim_hook(const uint32_t *list, uint32_t frame)
{
	int i;

	for (i = 0; i < SIM_HOOKS; i++)
		if (list[i] == frame)
			return 1;
	return 0;
}

/* Sends DATA outside the device's window: past the image end and far beyond the limit. */
static void
sim_gw_inject(struct sim *s)
{
	static uint8_t junk[MSG_DATA_HEADER + 64];

	memset(junk, 0xa5, sizeof(junk));
	msg_encode_data_header(s->o.size - 8, junk);
	sim_gw_send(s, junk, sizeof(junk));
	msg_encode_data_header(s->o.size - 64, junk);
	sim_gw_send(s, junk, sizeof(junk));
	s->out_of_window = 2;
}

static void
sim_gw_pump(struct sim *s)
{
	static uint8_t buf[MSG_DATA_MAX];

	s->gw_has_wake = 0;
	while (s->gw == SIM_GW_SENDING) {
		struct sender_next nx;
		enum sender_action a = sender_poll(&s->snd, sim_now_ms(s), &nx);

		if (a == SENDER_COMPLETE) {
			s->gw = SIM_GW_WAIT_RESULT;
			break;
		}
		if (a == SENDER_FAILED) {
			sim_gw_snapshot(s);
			s->gw = SIM_GW_FAILED;
			break;
		}
		if (a == SENDER_WAIT) {
			s->gw_has_wake = nx.has_wake;
			s->gw_wake_ms = nx.wake_ms;
			break;
		}
		ck_assert_uint_ge(nx.len, 1);
		ck_assert_uint_le(nx.len, s->gw_payload);
		ck_assert_uint_le(nx.offset + nx.len, s->o.size);
		msg_encode_data_header(nx.offset, buf);
		memcpy(buf + MSG_DATA_HEADER, s->image + nx.offset, nx.len);
		s->data_frames++;
		if (s->t_first_data == 0)
			s->t_first_data = s->t;
		/* Packet links lose frames, never deliver corrupted ones (the link layer checks).
		 */
		if (!sim_hook(s->drop, s->data_frames) &&
		    !(s->o.packet && sim_hook(s->corrupt, s->data_frames))) {
			size_t before = sim_q_len(&s->to_dev), added;

			sim_gw_send(s, buf, MSG_DATA_HEADER + nx.len);
			added = sim_q_len(&s->to_dev) - before;
			if (sim_hook(s->corrupt, s->data_frames) && added > 2)
				sim_q_at(&s->to_dev, before + added / 2)->byte ^= 0x10;
			if (sim_hook(s->dup, s->data_frames))
				sim_gw_send(s, buf, MSG_DATA_HEADER + nx.len);
		}
		sender_sent(&s->snd, sim_now_ms(s));
		if (s->out_of_window == 1 && s->data_frames >= 3)
			sim_gw_inject(s);
	}
}

/* --- the event loop --- */

/* Index just past the next frame end (0x00) in q that has arrived by t, or 0 if none. */
static size_t
sim_next_frame(struct sim_bytes *q, double t, double *at)
{
	size_t i, n = sim_q_len(q);

	for (i = 0; i < n; i++) {
		struct sim_ent *e = sim_q_at(q, i);

		if (e->byte == 0) {
			*at = e->at;
			return e->at <= t ? i + 1 : 0;
		}
	}
	*at = -1;
	return 0;
}

/* Delivers what has arrived at one side: one frame or packet at a time, so the device stops
 * taking input while a flash erase keeps it busy. Returns 1 if it delivered something. */
static int
sim_deliver(struct sim *s, int to_dev)
{
	struct sim_bytes *q = to_dev ? &s->to_dev : &s->to_gw;
	static uint8_t buf[4096];
	double at;
	size_t n, i;

	if (sim_q_len(q) == 0 || (to_dev && s->t < s->dev_busy_until))
		return 0;
	if (s->o.packet) {
		struct sim_ent *e = sim_q_at(q, 0);

		if (e->at > s->t)
			return 0;
		memcpy(buf, e->pkt, e->len);
		n = e->len;
		free(e->pkt);
		q->head++;
		if (to_dev)
			otadev_packet(&s->dev, buf, n, sim_now_ms(s));
		else
			sim_gw_handle(s, buf, n);
		return 1;
	}
	n = sim_next_frame(q, s->t, &at);
	if (n == 0)
		return 0;
	/* Frames merged by a lost delimiter can be long: hand them over in pieces. */
	while (n > 0) {
		size_t k = n < sizeof(buf) ? n : sizeof(buf), off = 0;

		for (i = 0; i < k; i++)
			buf[i] = sim_q_at(q, i)->byte;
		q->head += k;
		n -= k;
		if (to_dev) {
			otadev_feed(&s->dev, buf, k, sim_now_ms(s));
			continue;
		}
		while (off < k) {
			const uint8_t *m;
			size_t used, mlen;

			if (frame_decoder_feed(&s->gw_dec, buf + off, k - off, &used, &m, &mlen) ==
			    FRAME_MSG)
				sim_gw_handle(s, m, mlen);
			off += used;
		}
	}
	return 1;
}

static double
sim_q_next(struct sim *s, struct sim_bytes *q)
{
	double at;

	if (sim_q_len(q) == 0)
		return -1;
	if (s->o.packet)
		return sim_q_at(q, 0)->at;
	sim_next_frame(q, 0, &at);
	return at;
}

static void
sim_consider(double *best, double t)
{
	if (t >= 0 && (*best < 0 || t < *best))
		*best = t;
}

int
sim_run(struct sim *s, uint32_t stop_written, double until_s)
{
	double until = until_s * 1e6;

	for (;;) {
		double next = -1, t;
		uint32_t wait;

		while (sim_deliver(s, 1) || sim_deliver(s, 0))
			sim_gw_pump(s);
		sim_gw_pump(s);
		wait = UINT32_MAX;
		if (s->t >= s->dev_busy_until)
			wait = otadev_poll(&s->dev, sim_now_ms(s));
		sim_gw_pump(s);
		if (stop_written && s->dev_written >= stop_written)
			return 1;
		if (s->gw == SIM_GW_FAILED ||
		    (s->gw == SIM_GW_DONE && s->dev_done + s->dev_no_update > 0))
			break;
		t = sim_q_next(s, &s->to_dev);
		if (t >= 0 && t < s->dev_busy_until)
			t = s->dev_busy_until;
		sim_consider(&next, t);
		sim_consider(&next, sim_q_next(s, &s->to_gw));
		if (s->t < s->dev_busy_until)
			sim_consider(&next, s->dev_busy_until);
		else if (wait != UINT32_MAX)
			sim_consider(&next, (sim_now_ms(s) + (double)wait) * 1000.0);
		if (s->gw_has_wake)
			sim_consider(&next, s->gw_wake_ms * 1000.0);
		if (next < 0)
			break;
		s->t = next > s->t ? next : s->t + 1.0;
		if (s->t > until)
			break;
	}
	sim_gw_snapshot(s);
	return 0;
}

void
sim_init(struct sim *s, const struct sim_opts *o)
{
	otadev_sha256_t h;
	size_t i;

	memset(s, 0, sizeof(*s));
	s->o = *o;
	s->rng = o->seed ? o->seed : 1;
	s->image = malloc(o->size);
	s->flash = malloc(2 * sim_slot(s));
	ck_assert_ptr_nonnull(s->image);
	ck_assert_ptr_nonnull(s->flash);
	/* Firmware-like content: runs of zeros among random bytes. */
	for (i = 0; i < o->size; i++)
		s->image[i] = (uint8_t)(i % 97 < 20 ? 0 : sim_rand(s));
	memset(s->flash, 0xff, sim_slot(s));
	memset(s->flash + sim_slot(s), 0, sim_slot(s));
	otadev_sha256_init(&h);
	otadev_sha256_update(&h, s->image, o->size);
	otadev_sha256_final(&h, s->sha);
	s->to_dev.bits_to_error = sim_error_gap(s);
	s->to_gw.bits_to_error = sim_error_gap(s);

	s->cfg.serial = "sim-device_01";
	s->cfg.hardware_version = "evt-2";
	s->cfg.software_type = "main";
	s->cfg.current_version = "1.0.0";
	s->cfg.max_payload = o->max_payload;
	s->cfg.window = o->window;
	s->cfg.max_stall_ms = o->max_stall_ms;
	s->cfg.rx_buf = s->rx_buf;
	s->cfg.rx_cap = sizeof(s->rx_buf);
	s->cfg.tx_buf = s->tx_buf;
	s->cfg.tx_cap = sizeof(s->tx_buf);
	if (o->packet)
		s->cfg.tx_packet = sim_dev_tx_packet;
	else
		s->cfg.tx = sim_dev_tx;
	if (o->sector_size) {
		s->cfg.flash_erase = sim_dev_erase;
		s->cfg.sector_size = o->sector_size;
	}
	s->cfg.flash_write = sim_dev_write;
	s->cfg.flash_read = sim_dev_read;
	s->cfg.slot_size = (uint32_t)sim_slot(s);
	s->cfg.persist_save = sim_dev_save;
	s->cfg.persist_load = sim_dev_load;
	s->cfg.event = sim_dev_event;
	s->cfg.user = s;
	s->cfg.persist_interval = o->persist_interval;
	frame_decoder_init(&s->gw_dec, s->gw_rx, sizeof(s->gw_rx));
	ck_assert_int_eq(otadev_init(&s->dev, &s->cfg), 0);
	otadev_check(&s->dev, 0);
}

void
sim_free(struct sim *s)
{
	sim_q_clear(&s->to_dev);
	sim_q_clear(&s->to_gw);
	free(s->to_dev.ring);
	free(s->to_gw.ring);
	free(s->image);
	free(s->flash);
}

void
sim_cut(struct sim *s, double ms)
{
	sim_q_clear(&s->to_dev);
	sim_q_clear(&s->to_gw);
	s->cut_until = s->t + ms * 1000.0;
	s->to_dev.wire_free = s->to_gw.wire_free = s->t;
}

void
sim_gateway_restart(struct sim *s, int solicit)
{
	sim_gw_snapshot(s);
	s->gw = SIM_GW_WAIT_HELLO;
	s->gw_has_wake = 0;
	frame_decoder_init(&s->gw_dec, s->gw_rx, sizeof(s->gw_rx));
	if (solicit) {
		uint8_t m[MSG_SOLICIT_LEN];

		sim_gw_send(s, m, msg_encode_solicit(m, sizeof(m)));
	}
}

void
sim_reboot(struct sim *s)
{
	sim_q_clear(&s->to_dev);
	s->dev_busy_until = s->t;
	ck_assert_int_eq(otadev_init(&s->dev, &s->cfg), 0);
	otadev_check(&s->dev, sim_now_ms(s));
}

double
sim_efficiency(const struct sim *s)
{
	double secs = (s->t_complete - s->t_first_data) / 1e6;
	double rate = s->o.packet ? s->o.packet_rate : s->o.baud / 10.0;

	return secs > 0 ? s->o.size / secs / rate : 0;
}
