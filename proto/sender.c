/* Gateway sender: go-back-N over byte offsets with a delay-based window (TCP Vegas' idea: keep
 * about one frame queued beyond bandwidth x RTT) and a payload size chosen from the observed
 * error rate. Losses here are bit errors, not congestion, so a REWIND does not shrink the window;
 * what makes errors cheap is never having more in flight than the pipe needs. */
#include "sender.h"

#include <string.h>

/* The error-rate estimate: errors / (bits + prior). The prior (128 KiB of clean line) keeps one
 * early error from shrinking frames for long; halving both sums every 512 KiB forgets the past,
 * so the payload grows back when the line gets clean. */
#define SENDER_BER_PRIOR_BITS 1048576.0
#define SENDER_BER_DECAY_BITS 4194304.0
/* Re-tune the payload after every error and at least every this many frames. */
#define SENDER_TUNE_FRAMES 32
/* Switch payload only for a predicted gain above 1 %, so noise does not make it flap. */
#define SENDER_TUNE_GAIN 1.01

static const uint16_t sender_payloads[] = {
    64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096};

/* Wrap-safe "a is at or after b" for u32 millisecond clocks. */
static int
sender_after(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) >= 0;
}

uint32_t
sender_wire_bytes(enum sender_link link, uint32_t len)
{
	uint32_t n = MSG_DATA_HEADER + len;

	if (link == SENDER_LINK_PACKET)
		return n;
	n += FRAME_CRC_LEN;
	return n + (n + 253) / 254 + 1; /* a COBS code byte per 254 bytes, the delimiter */
}

static uint32_t sender_cwnd_min(const struct sender *s);

int
sender_init(struct sender *s, const struct sender_config *cfg, uint32_t now_ms)
{
	memset(s, 0, sizeof(*s));
	if (cfg->size == 0 || cfg->window == 0 || cfg->max_payload < PROTO_PAYLOAD_MIN ||
	    cfg->max_payload > PROTO_PAYLOAD_MAX ||
	    (cfg->link != SENDER_LINK_STREAM && cfg->link != SENDER_LINK_PACKET))
		return -1;
	s->size = cfg->size;
	s->max_payload = cfg->max_payload;
	s->min_payload =
	    cfg->max_payload < SENDER_PAYLOAD_FLOOR ? cfg->max_payload : SENDER_PAYLOAD_FLOOR;
	s->payload = cfg->max_payload;
	s->window = cfg->window;
	s->max_stall_ms = cfg->max_stall_ms;
	s->link = (uint8_t)cfg->link;
	s->max_timeouts = cfg->max_timeouts ? cfg->max_timeouts : SENDER_MAX_TIMEOUTS;
	s->rto_ms = SENDER_RTO_INITIAL_MS;
	s->cwnd = sender_cwnd_min(s);
	s->round_min_ms = UINT32_MAX;
	s->timer_ms = now_ms;
	return 0;
}

static struct sender_frame *
sender_frame_at(struct sender *s, uint16_t i)
{
	return &s->fl[(s->fl_head + i) % SENDER_WINDOW_MAX];
}

/* Drops the in-flight records: after a go-back their ACKs can no longer be told apart. */
static void
sender_forget_inflight(struct sender *s)
{
	s->fl_head = 0;
	s->fl_count = 0;
	s->round_end = s->next;
	s->round_min_ms = UINT32_MAX;
}

/* e^-x for x >= 0 without libm: (1 - x/1024)^1024, within 0.1 % where it matters (x < 1). */
static double
sender_exp_neg(double x)
{
	double y;
	int i;

	if (x >= 20.0)
		return 0.0;
	y = 1.0 - x / 1024.0;
	for (i = 0; i < 10; i++)
		y *= y;
	return y;
}

/* Expected goodput fraction of payload len with k frames in flight at bit error rate ber:
 * len/wire * (1 - p) / (1 + (k - 1) p), p the frame error probability (go-back-N). */
static double
sender_model(const struct sender *s, uint32_t len, double k, double ber)
{
	double wire = (double)sender_wire_bytes((enum sender_link)s->link, len);
	double p = 1.0 - sender_exp_neg(8.0 * wire * ber);

	return (double)len / wire * (1.0 - p) / (1.0 + (k - 1.0) * p);
}

/* Predicted goodput of payload len when the bytes in flight beyond one frame stay at extra. */
static double
sender_predict(const struct sender *s, uint32_t len, double extra, double ber)
{
	double k = 1.0 + extra / len;

	return sender_model(s, len, k < s->window ? k : s->window, ber);
}

/* Picks the payload size with the best predicted goodput, keeping the bytes in flight beyond
 * one frame (the bandwidth x delay part of the window) fixed across sizes. */
static void
sender_tune(struct sender *s)
{
	double ber, extra, cur, best_eff;
	uint32_t best = s->max_payload;
	size_t i;

	s->frames_since_tune = 0;
	/* Packet links (BLE) deliver a packet whole or not at all (the link layer has its own
	 * CRC and retransmission): a gap there is a reordering (EATT) or a dropped link, not a
	 * bit error, and a smaller payload only makes more packets to reorder or lose. */
	if (s->link == SENDER_LINK_PACKET)
		return;
	ber = s->errors / (s->bits + SENDER_BER_PRIOR_BITS);
	extra = s->cwnd > s->payload ? (double)(s->cwnd - s->payload) : 0.0;
	cur = sender_predict(s, s->payload, extra, ber);
	best_eff = sender_predict(s, s->max_payload, extra, ber);
	for (i = 0; i < sizeof(sender_payloads) / sizeof(sender_payloads[0]); i++) {
		uint32_t len = sender_payloads[i];
		double eff;

		if (len < s->min_payload || len >= s->max_payload)
			continue;
		eff = sender_predict(s, len, extra, ber);
		if (eff > best_eff) {
			best_eff = eff;
			best = len;
		}
	}
	if (best != s->payload && best_eff > cur * SENDER_TUNE_GAIN) {
		s->payload = (uint16_t)best;
		s->cwnd = (uint32_t)extra + best;
		/* The base RTT includes one frame's serialisation: measure it afresh. */
		s->base_rtt_ms = 0;
	}
}

static void
sender_count_error(struct sender *s)
{
	s->errors += 1.0;
	sender_tune(s);
}

static uint32_t
sender_cwnd_max(const struct sender *s)
{
	return (uint32_t)s->window * s->payload;
}

/* Two frames; on packet links the device's whole window. A BLE link retransmits at the link
 * layer, so the go-back Vegas guards against (every byte in flight resent after an error) happens
 * only when the link drops, and then the device resumes from what it stored; and its round trip
 * grows with the load on everything between the two ends (bluetoothd and the kernel on both
 * sides, the device's stack), which Vegas reads as queueing. Measured in the BLE VM, Vegas held
 * GATT at two 505-byte frames (48 % of a raw bulk transfer) and L2CAP CoC at its 8 KiB floor
 * (38 %); the window the device offered is what it can hold, and the link paces the rest
 * (L2CAP credits, the device's ACKs over GATT). */
static uint32_t
sender_cwnd_min(const struct sender *s)
{
	if (s->link == SENDER_LINK_PACKET)
		return sender_cwnd_max(s);
	return 2u * s->payload;
}

/* One RTT sample (ms) from a frame sent once: RFC 6298 smoothing and the Vegas base RTT. */
static void
sender_rtt_sample(struct sender *s, uint32_t rtt)
{
	uint32_t rto;

	if (!s->have_rtt) {
		s->srtt_x8 = rtt << 3;
		s->rttvar_x4 = rtt << 1;
		s->have_rtt = 1;
	} else {
		uint32_t srtt = s->srtt_x8 >> 3;
		uint32_t dev = srtt > rtt ? srtt - rtt : rtt - srtt;

		s->rttvar_x4 = s->rttvar_x4 - (s->rttvar_x4 >> 2) + dev;
		s->srtt_x8 = s->srtt_x8 - (s->srtt_x8 >> 3) + rtt;
	}
	rto = (s->srtt_x8 >> 3) + (s->rttvar_x4 > 4 ? s->rttvar_x4 : 4);
	if (rto < SENDER_RTO_MIN_MS)
		rto = SENDER_RTO_MIN_MS;
	if (rto > SENDER_RTO_MAX_MS)
		rto = SENDER_RTO_MAX_MS;
	s->rto_ms = rto;
	if (s->base_rtt_ms == 0 || rtt < s->base_rtt_ms)
		s->base_rtt_ms = rtt ? rtt : 1;
	if (rtt < s->round_min_ms)
		s->round_min_ms = rtt;
}

/* Once per round trip: the bytes queued beyond the pipe are cwnd * (rtt - base) / rtt. Keep them
 * between half a frame and one and a half: enough that the link never idles, no more, because
 * every byte in flight is resent after an error. */
static void
sender_round(struct sender *s)
{
	uint32_t rtt = s->round_min_ms, base = s->base_rtt_ms, lo, hi;

	s->round_end = s->next;
	s->round_min_ms = UINT32_MAX;
	if (rtt == UINT32_MAX || base == 0)
		return;
	{
		uint64_t queued =
		    (uint64_t)s->cwnd * (rtt > base ? rtt - base : 0) / (rtt ? rtt : 1);

		if (queued < s->payload / 2u)
			s->cwnd += s->payload;
		else if (queued > s->payload * 3u / 2u)
			s->cwnd -= s->payload;
	}
	lo = sender_cwnd_min(s);
	hi = sender_cwnd_max(s);
	if (s->cwnd < lo)
		s->cwnd = lo;
	if (s->cwnd > hi)
		s->cwnd = hi > lo ? hi : lo;
}

/* Goes back to the device's offset: everything after it is resent. */
static void
sender_go_back(struct sender *s, uint32_t offset, uint32_t now_ms)
{
	s->next = offset;
	s->prop_valid = 0;
	sender_forget_inflight(s);
	s->timer_ms = now_ms;
}

enum sender_ack_result
sender_ack(struct sender *s, const struct msg_ack *ack, uint32_t now_ms)
{
	uint32_t top = s->high > s->acked ? s->high : s->acked;

	if (ack->limit < ack->offset || ack->offset > s->size || (s->started && ack->offset > top))
		return SENDER_ACK_BAD;
	if (!s->started) {
		/* The request after the OFFER: where the device's partial image ends. */
		s->started = 1;
		s->acked = s->next = s->high = ack->offset;
		s->round_end = ack->offset;
		s->timer_ms = now_ms;
	}
	if ((ack->flags & MSG_ACK_F_REWIND) && (!s->have_epoch || ack->epoch != s->epoch)) {
		s->have_epoch = 1;
		s->epoch = ack->epoch;
		s->st.rewinds++;
		/* A rewind at or past what was acked reports a lost frame; one below it is the
		 * device's own choice (a re-fetch) and says nothing about the line. */
		if (ack->offset >= s->acked && ack->offset < s->next)
			sender_count_error(s);
		s->acked = ack->offset;
		s->limit = ack->limit;
		s->timeouts = 0;
		sender_go_back(s, ack->offset, now_ms);
		return SENDER_ACK_OK;
	}
	if (ack->offset < s->acked)
		return SENDER_ACK_STALE;
	if (ack->offset > s->acked) {
		struct sender_frame *f = NULL;

		while (s->fl_count > 0 && sender_frame_at(s, 0)->end <= ack->offset) {
			f = sender_frame_at(s, 0);
			s->fl_head = (uint16_t)((s->fl_head + 1) % SENDER_WINDOW_MAX);
			s->fl_count--;
		}
		/* Karn's rule: only a frame sent once gives an RTT sample, and only a sample
		 * undoes the timer backoff; bytes queued ahead of resent frames would otherwise
		 * make each early timeout cause the next. */
		if (f && !f->resent && f->end == ack->offset) {
			sender_rtt_sample(s, now_ms - f->sent_ms);
			s->backoff = 0;
		}
		s->acked = ack->offset;
		if (s->next < s->acked) {
			/* The device had more than the sender knew (its ACKs were lost). */
			s->next = s->acked;
			s->prop_valid = 0;
		}
		s->timeouts = 0;
		s->timer_ms = now_ms;
		if (s->acked >= s->round_end)
			sender_round(s);
	}
	s->limit = ack->limit;
	return SENDER_ACK_OK;
}

/* The retransmission timeout in force: RTO with backoff, plus the device's stall allowance
 * while it has paused us (a flash erase must not look like a loss). */
static uint32_t
sender_rto(const struct sender *s)
{
	uint32_t rto = s->rto_ms << s->backoff;

	if (rto > SENDER_RTO_MAX_MS)
		rto = SENDER_RTO_MAX_MS;
	if (s->limit <= s->acked)
		rto += s->max_stall_ms;
	return rto;
}

enum sender_action
sender_poll(struct sender *s, uint32_t now_ms, struct sender_next *next)
{
	uint32_t want, room, len, inflight;
	int timer_armed, cut;

	next->has_wake = 0;
	s->prop_valid = 0;
	if (s->failed)
		return SENDER_FAILED;
	if (!s->started)
		return SENDER_WAIT;
	if (s->acked >= s->size)
		return SENDER_COMPLETE;

	inflight = s->next - s->acked;
	timer_armed = inflight > 0 || s->limit <= s->acked;
	if (timer_armed && sender_after(now_ms, s->timer_ms + sender_rto(s))) {
		s->st.timeouts++;
		if (++s->timeouts > s->max_timeouts) {
			s->failed = 1;
			return SENDER_FAILED;
		}
		if (s->backoff < 8)
			s->backoff++;
		if (inflight > 0) {
			/* Nothing came back for the frames in flight: send them again from the
			 * last byte the device confirmed, one frame at a time until ACKs flow. */
			sender_go_back(s, s->acked, now_ms);
			s->cwnd = s->payload;
			sender_count_error(s);
			inflight = 0;
		} else {
			/* Paused: the device re-sends its ACK when it is done; keep waiting. */
			s->timer_ms = now_ms;
		}
	}

	/* The next frame: a full payload (or the image's tail) within the device's limit, the
	 * window and cwnd; one cut short by the limit only when nothing else is in flight. */
	want = s->size - s->next < s->payload ? s->size - s->next : s->payload;
	room = s->limit > s->next ? s->limit - s->next : 0;
	cut = room < want;
	len = cut ? room : want;
	if (len > 0 && s->fl_count < s->window &&
	    (inflight == 0 || (!cut && inflight + len <= s->cwnd))) {
		next->offset = s->next;
		next->len = (uint16_t)len;
		s->prop_offset = s->next;
		s->prop_len = (uint16_t)len;
		s->prop_valid = 1;
		return SENDER_SEND;
	}
	if (inflight > 0 || s->limit <= s->acked) {
		next->has_wake = 1;
		next->wake_ms = s->timer_ms + sender_rto(s);
	}
	return SENDER_WAIT;
}

void
sender_sent(struct sender *s, uint32_t now_ms)
{
	struct sender_frame *f;
	uint32_t end;

	if (!s->prop_valid || s->prop_offset != s->next || s->fl_count >= SENDER_WINDOW_MAX)
		return;
	s->prop_valid = 0;
	end = s->next + s->prop_len;
	if (s->next == s->acked)
		s->timer_ms = now_ms; /* the first byte in flight starts the timer */
	f = sender_frame_at(s, s->fl_count);
	f->end = end;
	f->sent_ms = now_ms;
	f->resent = s->next < s->high;
	s->fl_count++;
	s->st.frames_sent++;
	s->st.bytes_sent += s->prop_len;
	if (s->next < s->high)
		s->st.bytes_resent += (end < s->high ? end : s->high) - s->next;
	s->next = end;
	if (end > s->high)
		s->high = end;
	s->bits += 8.0 * sender_wire_bytes((enum sender_link)s->link, s->prop_len);
	if (s->bits > SENDER_BER_DECAY_BITS) {
		s->bits /= 2.0;
		s->errors /= 2.0;
	}
	if (++s->frames_since_tune >= SENDER_TUNE_FRAMES)
		sender_tune(s);
}

void
sender_stats(const struct sender *s, struct sender_stats *st)
{
	*st = s->st;
	st->size = s->size;
	st->acked = s->acked;
	st->payload = s->payload;
	st->cwnd = s->cwnd;
	st->srtt_ms = s->srtt_x8 >> 3;
	st->rto_ms = s->rto_ms;
	st->min_rtt_ms = s->base_rtt_ms;
	st->ber_ppb = (uint32_t)(s->errors / (s->bits + SENDER_BER_PRIOR_BITS) * 1e9);
}
