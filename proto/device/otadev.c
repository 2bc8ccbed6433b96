/* otadev: the device's state machine (docs/PROTOCOL.md, "Device state machine"). One deadline
 * serves every timer because only one is ever pending: the HELLO retry, the ACK silence timer,
 * the verify keepalive, the RESULT retry or the next scheduled check. Written for code size
 * (issue 2 allows 3 KiB of flash with framing and messages): the time of the current call is
 * kept in the context rather than passed down, every message goes out through otadev_send()
 * and every event through otadev_emit(). */
#include "otadev.h"

#include <string.h>

enum {
	OTADEV_IDLE,    /* waiting for otadev_check() or the scheduled check */
	OTADEV_HELLO,   /* HELLO sent, waiting for OFFER / NO_UPDATE / ERROR */
	OTADEV_RECV,    /* receiving DATA */
	OTADEV_VERIFY,  /* every byte stored: hashing the image read back from flash */
	OTADEV_RESULT,  /* RESULT sent, waiting for DONE */
	OTADEV_STOPPED, /* otadev_stop(): silent until otadev_check() */
};

/* Arms the one timer ms from now. */
static void
otadev_timer(otadev_t *dev, uint32_t ms)
{
	dev->deadline = dev->now + ms;
	dev->has_deadline = 1;
}

/* Arms the ACK silence timer, which is also the verify keepalive and the RESULT retry. */
static void
otadev_ack_timer(otadev_t *dev)
{
	otadev_timer(dev, dev->ack_ms);
}

/* Seconds from the gateway to ms, bounded so deadlines stay in the wrap-safe range. */
static uint32_t
otadev_secs(uint32_t s)
{
	return s > 2000000u ? 2000000000u : s * 1000u;
}

/* Tells the application; m, when set, is the message the event is about. */
static int
otadev_emit(otadev_t *dev, otadev_event_type_t type, uint8_t status, const struct msg *m)
{
	const otadev_config_t *cfg = dev->cfg;
	otadev_event_t ev;

	if (!cfg->event)
		return 0;
	ev.type = type;
	ev.status = status;
	ev.offset = dev->offset;
	ev.size = dev->size;
	ev.offer = m ? &m->u.offer : NULL;
	ev.no_update = m ? &m->u.no_update : NULL;
	ev.error = m ? &m->u.error : NULL;
	return cfg->event(cfg->user, &ev);
}

/* Senders behind dev->send. A failed send is a lost message, which the protocol's retries
 * recover. A stream frame goes out behind a delimiter that flushes line noise. */
static void
otadev_send_frame(const otadev_t *dev, const uint8_t *m, size_t n)
{
	const otadev_config_t *cfg = dev->cfg;

	cfg->tx_buf[0] = 0;
	n = frame_encode(m, n, cfg->tx_buf + 1, cfg->tx_cap - 1);
	if (n)
		(void)cfg->tx(cfg->user, cfg->tx_buf, n + 1);
}

static void
otadev_send_packet(const otadev_t *dev, const uint8_t *m, size_t n)
{
	(void)dev->cfg->tx_packet(dev->cfg->user, m, n);
}

/* Sends one encoded message; n == 0 (the encoder refused) sends nothing. */
static void
otadev_send(otadev_t *dev, const uint8_t *m, size_t n)
{
	if (n)
		dev->send(dev, m, n);
}

enum {
	OTADEV_ACK_PAUSE = 1, /* limit == offset: a flash erase follows */
	OTADEV_ACK_QUIET = 2, /* leave the ACK silence timer as it is */
};

/* Sends ACK(offset, limit) and (unless QUIET) arms the ACK silence timer. The limit granted is
 * window frames beyond what is stored, never past the image. */
static void
otadev_ack(otadev_t *dev, int how)
{
	int pause = how & OTADEV_ACK_PAUSE;
	uint32_t w = (uint32_t)dev->cfg->window * dev->payload;
	uint32_t room = dev->size - dev->offset;
	struct msg_ack a;
	uint8_t m[MSG_ACK_LEN];

	a.offset = dev->offset;
	a.limit = a.offset + (pause ? 0 : w < room ? w : room);
	a.epoch = dev->epoch;
	a.flags = dev->ack_flags;
	if (a.limit > dev->granted)
		dev->granted = a.limit;
	otadev_send(dev, m, msg_encode_ack(&a, m, sizeof(m)));
	if (!(how & OTADEV_ACK_QUIET))
		otadev_ack_timer(dev);
}

/* Saves the resume state; the stored offset never exceeds the bytes in flash. */
static void
otadev_save(otadev_t *dev)
{
	const otadev_config_t *cfg = dev->cfg;
	otadev_resume_t st;

	if (!cfg->persist_save)
		return;
	memcpy(st.sha256, dev->sha256, sizeof(st.sha256));
	st.size = dev->size;
	st.offset = dev->offset;
	(void)cfg->persist_save(cfg->user, &st);
	dev->persisted = dev->offset;
}

/* Measures an identity string, stopping at 255 bytes (more fails the rules anyway). A loop, not
 * strlen: bounded, and a port need not link strlen for this alone. */
static void
otadev_str(struct msg_str *out, const char *s)
{
	uint8_t n = 0;

	while (s && n < 255 && s[n])
		n++;
	out->s = s;
	out->len = n;
}

/* Encodes this device's HELLO into m (MSG_HELLO_MAX bytes); 0 if the identity is invalid. */
static size_t
otadev_encode_hello(const otadev_t *dev, uint8_t *m)
{
	const otadev_config_t *cfg = dev->cfg;
	struct msg_hello h;

	h.proto_version = PROTO_VERSION;
	h.flags = dev->offset ? MSG_HELLO_F_RESUME : 0;
	h.caps = cfg->caps;
	h.max_payload = cfg->max_payload;
	h.window = cfg->window;
	h.max_stall_ms = cfg->max_stall_ms;
	h.resume_sha256 = dev->sha256;
	h.resume_offset = dev->offset;
	otadev_str(&h.serial, cfg->serial);
	otadev_str(&h.hardware_version, cfg->hardware_version);
	otadev_str(&h.software_type, cfg->software_type);
	otadev_str(&h.current_version, cfg->current_version);
	return msg_encode_hello(&h, m, MSG_HELLO_MAX);
}

/* Sends HELLO (unless send is 0) and waits for its retry: at least wait ms, and the backoff,
 * which doubles up to its cap. */
static void
otadev_hello(otadev_t *dev, int send, uint32_t wait)
{
	if (send) {
		uint8_t m[MSG_HELLO_MAX];

		otadev_send(dev, m, otadev_encode_hello(dev, m));
	}
	dev->state = OTADEV_HELLO;
	otadev_timer(dev, wait > dev->backoff ? wait : dev->backoff);
	dev->backoff *= 2;
	if (dev->backoff > OTADEV_HELLO_RETRY_MAX_MS)
		dev->backoff = OTADEV_HELLO_RETRY_MAX_MS;
}

/* Starts an exchange: HELLO now, then retries with backoff from its start value. */
static void
otadev_start(otadev_t *dev)
{
	dev->backoff = OTADEV_HELLO_RETRY_MS;
	otadev_hello(dev, 1, 0);
}

/* Goes idle until the next check, s seconds from now (0: when the application asks). */
static void
otadev_idle(otadev_t *dev, uint32_t s)
{
	dev->state = OTADEV_IDLE;
	dev->has_deadline = 0;
	if (s)
		otadev_timer(dev, otadev_secs(s));
}

static void
otadev_send_result(otadev_t *dev)
{
	struct msg_result r;
	uint8_t m[MSG_RESULT_FIXED + 1];

	r.status = dev->status;
	r.sha256 = dev->sha256;
	/* After a mismatch offset is back at 0, but the whole image did arrive. */
	r.bytes_received = dev->status == MSG_STATUS_HASH_MISMATCH ? dev->size : dev->offset;
	r.detail.len = 0;
	otadev_send(dev, m, msg_encode_result(&r, m, sizeof(m)));
	otadev_ack_timer(dev);
}

static void
otadev_result(otadev_t *dev, uint8_t status)
{
	dev->state = OTADEV_RESULT;
	dev->status = status;
	dev->retries = 0;
	(void)otadev_emit(dev, OTADEV_EV_RESULT, status, NULL);
	otadev_send_result(dev);
}

/* Stored bytes moved on (or a transfer starts, save): persists and reports them every
 * persist_every bytes and at the end, then grants the next window (or, with every byte stored,
 * starts the verify pass). */
static void
otadev_progress(otadev_t *dev, int save)
{
	if (save || dev->offset == dev->size ||
	    dev->offset - dev->persisted >= dev->persist_every) {
		otadev_save(dev);
		(void)otadev_emit(dev, OTADEV_EV_PROGRESS, 0, NULL);
	}
	dev->ack_flags = 0;
	dev->retries = 0;
	if (dev->offset == dev->size) {
		dev->state = OTADEV_VERIFY;
		dev->pos = 0;
		otadev_sha256_init(&dev->hash);
	}
	otadev_ack(dev, 0); /* at the end: limit == offset == size, the gateway stops */
}

static void
otadev_offer(otadev_t *dev, const struct msg *m)
{
	const otadev_config_t *cfg = dev->cfg;
	const struct msg_offer *o = &m->u.offer;
	int status;

	if (dev->size != o->size || memcmp(dev->sha256, o->sha256, PROTO_SHA256_LEN) != 0) {
		/* A different image: the partial one is obsolete. Flash and the stored state
		 * change only once this one is accepted. */
		memcpy(dev->sha256, o->sha256, PROTO_SHA256_LEN);
		dev->size = o->size;
		dev->offset = 0;
		dev->erased = 0;
	} else if (dev->state == OTADEV_RECV || dev->state == OTADEV_VERIFY) {
		/* The gateway repeated its OFFER: our request was lost. */
		otadev_ack(dev, OTADEV_ACK_QUIET);
		return;
	}
	if (o->proto_version != PROTO_VERSION || o->max_payload > cfg->max_payload ||
	    ((o->flags & MSG_OFFER_F_DELTA) && !(cfg->caps & MSG_CAP_DELTA)))
		status = MSG_STATUS_UNSUPPORTED;
	else if (cfg->slot_size && o->size > cfg->slot_size)
		status = MSG_STATUS_NO_SPACE;
	else
		status = otadev_emit(dev, OTADEV_EV_OFFER, 0, m);
	if (status) {
		otadev_result(
		    dev, status < 0 || status > 255 ? MSG_STATUS_DECLINED : (uint8_t)status);
		return;
	}
	dev->payload = o->max_payload;
	dev->granted = dev->offset;
	dev->state = OTADEV_RECV;
	/* The save names the new image, or lowers a sector-rounded resume offset. */
	otadev_progress(dev, 1);
}

/* Erases what the write needs (pausing the gateway first) and writes; 0 or -1. */
static int
otadev_store(otadev_t *dev, const uint8_t *p, uint32_t n)
{
	const otadev_config_t *cfg = dev->cfg;
	uint32_t end = dev->offset + n;

	if (cfg->flash_erase && dev->erased < end) {
		otadev_ack(dev, OTADEV_ACK_PAUSE);
		do {
			if (cfg->flash_erase(cfg->user, dev->erased) != 0)
				return -1;
			dev->erased += cfg->sector_size;
		} while (dev->erased < end);
	}
	return cfg->flash_write(cfg->user, dev->offset, p, n) != 0 ? -1 : 0;
}

static void
otadev_data(otadev_t *dev, const struct msg_data *d)
{
	uint32_t end = d->offset + d->len, offset = dev->offset;

	if (dev->state != OTADEV_RECV) {
		if (dev->state == OTADEV_VERIFY)
			otadev_ack(dev, OTADEV_ACK_QUIET);
		return;
	}
	/* Every path below ends in an ACK or RESULT, which re-arms the silence timer. */
	if (d->len > dev->payload || end > dev->granted) {
		/* Outside what was granted: not written; the ACK below restates the window. */
	} else if (d->offset > offset) {
		/* A gap: a frame was lost. Ask for a resend from offset in a new epoch; frames
		 * still in flight from before repeat the same request, which the gateway acts on
		 * only once. A frame below the highest one seen since means the gateway already
		 * went back and the frame at offset was lost again: that is a new loss. */
		if (!(dev->ack_flags & MSG_ACK_F_REWIND) || d->offset < dev->seen) {
			dev->epoch++;
			dev->ack_flags = MSG_ACK_F_REWIND;
		}
		dev->seen = end;
	} else if (end > offset) {
		/* In order; a resend may overlap what is already stored. */
		if (otadev_store(dev, d->payload + (offset - d->offset), end - offset)) {
			otadev_result(dev, MSG_STATUS_FLASH_ERROR);
			return;
		}
		dev->offset = end;
		otadev_progress(dev, 0);
		return;
	}
	otadev_ack(dev, 0); /* a duplicate, a gap or out of window: say where we are */
}

static void
otadev_handle(otadev_t *dev, const uint8_t *buf, size_t n, uint32_t now)
{
	struct msg m;

	dev->now = now;
	if (dev->state == OTADEV_STOPPED || msg_decode_to_device(buf, n, &m) != MSG_OK)
		return; /* malformed or unknown messages are dropped; timers recover */
	switch (m.type) {
	case MSG_SOLICIT:
		otadev_start(dev);
		break;
	case MSG_OFFER:
		if (dev->state != OTADEV_IDLE)
			otadev_offer(dev, &m);
		break;
	case MSG_NO_UPDATE:
		if (dev->state == OTADEV_HELLO || dev->state == OTADEV_RECV) {
			(void)otadev_emit(dev, OTADEV_EV_NO_UPDATE, 0, &m);
			otadev_idle(dev,
			    m.u.no_update.recheck_s ? m.u.no_update.recheck_s : dev->cfg->check_s);
		}
		break;
	case MSG_ERROR:
		if (dev->state != OTADEV_IDLE) {
			/* Say HELLO again no sooner than asked, backing off meanwhile. */
			(void)otadev_emit(dev, OTADEV_EV_ERROR, 0, &m);
			otadev_hello(dev, 0, otadev_secs(m.u.error.retry_after_s));
		}
		break;
	case MSG_DATA:
		otadev_data(dev, &m.u.data);
		break;
	case MSG_DONE:
		if (dev->state == OTADEV_RESULT &&
		    memcmp(m.u.done.sha256, dev->sha256, PROTO_SHA256_LEN) == 0) {
			(void)otadev_emit(dev, OTADEV_EV_DONE, dev->status, NULL);
			otadev_idle(dev, dev->cfg->check_s);
		}
		break;
	default:
		break;
	}
}

/* What otadev_init() and otadev_init_packet() share; bad is the caller's verdict on its link's
 * fields. */
static int
otadev_setup(otadev_t *dev, const otadev_config_t *cfg, int bad,
    void (*send)(const otadev_t *, const uint8_t *, size_t))
{
	uint8_t m[MSG_HELLO_MAX];
	otadev_resume_t st;
	uint32_t sector = cfg->flash_erase ? cfg->sector_size : 1;

	memset(dev, 0, sizeof(*dev));
	dev->cfg = cfg;
	dev->send = send;
	if (bad || !cfg->flash_write || !cfg->flash_read || cfg->max_payload < PROTO_PAYLOAD_MIN ||
	    cfg->max_payload > PROTO_PAYLOAD_MAX || cfg->window == 0 || sector == 0 ||
	    (sector & (sector - 1)) || !cfg->persist_save != !cfg->persist_load)
		return OTADEV_ERR_CONFIG;
	if (otadev_encode_hello(dev, m) == 0)
		return OTADEV_ERR_IDENTITY;
	dev->backoff = OTADEV_HELLO_RETRY_MS;
	dev->ack_ms = cfg->ack_timeout_ms ? cfg->ack_timeout_ms : OTADEV_ACK_TIMEOUT_MS;
	dev->retry_max = cfg->retries ? cfg->retries : OTADEV_RETRIES;
	dev->verify_step = cfg->verify_step ? cfg->verify_step : OTADEV_VERIFY_STEP;
	dev->persist_every =
	    cfg->persist_interval ? cfg->persist_interval : OTADEV_PERSIST_INTERVAL;
	if (cfg->persist_load && cfg->persist_load(cfg->user, &st) == 0 && st.offset <= st.size) {
		memcpy(dev->sha256, st.sha256, PROTO_SHA256_LEN);
		dev->size = st.size;
		dev->persisted = st.offset;
		/* The sector holding the resume offset may be partly written: it is erased and
		 * fetched again rather than programmed twice. */
		dev->offset = dev->erased = st.offset & ~(sector - 1);
	}
	return 0;
}

int
otadev_init_packet(otadev_t *dev, const otadev_config_t *cfg)
{
	return otadev_setup(dev, cfg, !cfg->tx_packet || cfg->tx, otadev_send_packet);
}

int
otadev_init(otadev_t *dev, const otadev_config_t *cfg)
{
	int err;

	if (!cfg->tx)
		return otadev_init_packet(dev, cfg);
	err = otadev_setup(dev, cfg,
	    cfg->tx_packet || !cfg->rx_buf || !cfg->tx_buf ||
		cfg->rx_cap < (size_t)OTADEV_RX_CAP(cfg->max_payload) ||
		cfg->tx_cap < OTADEV_TX_CAP,
	    otadev_send_frame);
	if (err == 0)
		frame_decoder_init(&dev->dec, cfg->rx_buf, cfg->rx_cap);
	return err;
}

void
otadev_check(otadev_t *dev, uint32_t now_ms)
{
	dev->now = now_ms;
	otadev_start(dev);
}

void
otadev_feed(otadev_t *dev, const uint8_t *bytes, size_t n, uint32_t now_ms)
{
	const uint8_t *m;
	size_t used, mlen;

	if (!dev->cfg->tx)
		return; /* a packet link */
	for (; n > 0; bytes += used, n -= used)
		if (frame_decoder_feed(&dev->dec, bytes, n, &used, &m, &mlen) == FRAME_MSG)
			otadev_handle(dev, m, mlen, now_ms);
}

void
otadev_packet(otadev_t *dev, const uint8_t *msg, size_t n, uint32_t now_ms)
{
	otadev_handle(dev, msg, n, now_ms);
}

/* Hashes up to verify_step bytes of the image read back from flash; sends RESULT at the end. */
static void
otadev_verify(otadev_t *dev)
{
	uint32_t budget = dev->verify_step;
	uint8_t buf[64];

	while (budget > 0 && dev->pos < dev->size) {
		uint32_t n = dev->size - dev->pos;

		if (n > sizeof(buf))
			n = sizeof(buf);
		if (dev->cfg->flash_read(dev->cfg->user, dev->pos, buf, n) != 0) {
			otadev_result(dev, MSG_STATUS_FLASH_ERROR);
			return;
		}
		otadev_sha256_update(&dev->hash, buf, n);
		dev->pos += n;
		budget = budget > n ? budget - n : 0;
	}
	if (dev->pos < dev->size)
		return;
	otadev_sha256_final(&dev->hash, buf);
	if (memcmp(buf, dev->sha256, PROTO_SHA256_LEN) == 0) {
		otadev_result(dev, MSG_STATUS_OK);
		return;
	}
	/* Nothing stored can be trusted: the next attempt starts from 0. */
	otadev_result(dev, MSG_STATUS_HASH_MISMATCH);
	dev->offset = dev->erased = 0;
	otadev_save(dev);
}

/* The timer expired: what it was for depends on the state. */
static void
otadev_expired(otadev_t *dev)
{
	switch (dev->state) {
	case OTADEV_IDLE:
		otadev_start(dev);
		break;
	case OTADEV_HELLO:
		otadev_hello(dev, 1, 0);
		break;
	case OTADEV_RECV:
	case OTADEV_RESULT:
		if (++dev->retries > dev->retry_max) {
			/* The gateway went silent. Receiving: start again from HELLO, keeping
			 * what is stored. Reporting: give up until the next check. */
			(void)otadev_emit(dev, OTADEV_EV_ABORTED,
			    dev->state == OTADEV_RECV ? MSG_STATUS_ABORTED : dev->status, NULL);
			if (dev->state == OTADEV_RECV)
				otadev_start(dev);
			else
				otadev_idle(dev, dev->cfg->check_s);
			break;
		}
		/* fall through - the same ACK or RESULT again */
	case OTADEV_VERIFY:
		if (dev->state == OTADEV_RESULT) {
			otadev_send_result(dev);
			break;
		}
		otadev_ack(dev, 0); /* VERIFY: a keepalive */
		break;
	default:
		break;
	}
}

uint32_t
otadev_poll(otadev_t *dev, uint32_t now_ms)
{
	dev->now = now_ms;
	if (dev->state == OTADEV_VERIFY)
		otadev_verify(dev);
	if (dev->has_deadline && (int32_t)(now_ms - dev->deadline) >= 0) {
		dev->has_deadline = 0;
		otadev_expired(dev);
	}
	/* Verifying: call again soon, whatever the timer says. */
	return dev->state == OTADEV_VERIFY ? 0
	       : dev->has_deadline         ? dev->deadline - now_ms
					   : UINT32_MAX;
}

int
otadev_rewind(otadev_t *dev, uint32_t offset, uint32_t now_ms)
{
	const otadev_config_t *cfg = dev->cfg;

	if ((dev->state != OTADEV_RECV && dev->state != OTADEV_VERIFY) || offset > dev->offset)
		return OTADEV_ERR_STATE;
	if (cfg->flash_erase)
		offset &= ~(cfg->sector_size - 1);
	if (offset == dev->offset)
		return OTADEV_ERR_STATE; /* nothing to fetch again */
	if (cfg->flash_erase)
		dev->erased = offset;
	dev->now = now_ms;
	dev->offset = offset;
	dev->state = OTADEV_RECV;
	dev->retries = 0;
	dev->epoch++;
	dev->ack_flags = MSG_ACK_F_REWIND;
	otadev_save(dev); /* the stored state must not claim the bytes about to be rewritten */
	otadev_ack(dev, 0);
	return 0;
}

void
otadev_stop(otadev_t *dev)
{
	dev->state = OTADEV_STOPPED;
	dev->has_deadline = 0;
}
