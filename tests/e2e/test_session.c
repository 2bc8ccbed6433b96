/* The session state machine in one process: real sessions on real unix-socket transports, a real
 * store, the upstream client and download manager against the in-process Memfault stand-in, and
 * on the other end devices built on proto/device's otadev (or a raw peer that speaks frames by
 * hand, for the malicious cases). Covers the whole update with the install confirmation, the
 * 204 path, bad identity and malformed messages, a resume after a cut link, the transfer slots
 * and their queue, a bad offset and a lying RESULT, an unavailable Memfault, the operator's
 * Abort and CheckNow, and one serial moving to another link. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "ck.h"
#include "db.h"
#include "devices.h"
#include "download.h"
#include "fleet.h"
#include "frame.h"
#include "hex.h"
#include "history.h"
#include "http.h"
#include "log.h"
#include "memfault.h"
#include "mockmf.h"
#include "msg.h"
#include "otadev.h"
#include "session.h"
#include "store.h"
#include "tclock.h"
#include "tcp.h"
#include "tdata.h"
#include "tdir.h"
#include "tfile.h"
#include "tloop.h"
#include "tnet.h"
#include "tpeer.h"
#include "transport.h"
#include "upstream.h"

#define KEY        "00112233445566778899aabbccddeeff"
#define IMAGE_SIZE (48 * 1024 + 123)
#define TIMEOUT_MS 60000u

static struct event_base *base;
static struct mockmf *mf;
static struct http *http;
static struct memfault *client;
static struct store *st;
static struct upstream *up;
static struct download_manager *dm;
static struct fleet *fleet;
static struct sessions *sm;
static struct tcp_listener *listener;
static char *dir, *sock_path;
static uint8_t image[IMAGE_SIZE];
static char image_sha[65];
static unsigned max_transfers = 8;

/* --- the loop --- */

/* Runs the loop until cond(arg) holds; fails the test (with the gateway's log) after
 * timeout_ms. */
static void
run_until(bool (*cond)(void *arg), void *arg, unsigned timeout_ms, const char *what)
{
	char *log;

	if (tloop_until(base, cond, arg, timeout_ms))
		return;
	fflush(stderr);
	log = tdir_join(dir, "log");
	tfile_dump("gateway log", log);
	free(log);
	ck_abort_msg("timed out waiting for %s", what);
}

static void
run_for(unsigned ms)
{
	tloop_for(base, ms);
}

static uint32_t
now_ms(void)
{
	return (uint32_t)tclock_ms();
}

static int
connect_unix(void)
{
	return tnet_connect_unix(sock_path, true);
}

/* --- a device on otadev --- */

struct tdev {
	char serial[32], hw[32], version[32], target[32];
	int fd;
	struct event *rd, *tm;
	otadev_t dev;
	otadev_config_t cfg;
	uint8_t rx[OTADEV_RX_CAP(1024)], tx[OTADEV_TX_CAP];
	uint8_t flash[128 * 1024];
	otadev_resume_t stored;
	bool have_stored;
	bool decline;
	unsigned offers, no_updates, errors, dones, results, progress;
	uint8_t last_error, done_status;
	uint32_t last_retry, last_recheck, offer_payload;
	char last_reason[80];
	uint32_t stored_offset; /* from the last PROGRESS event */
};

static void tdev_arm(struct tdev *d, uint32_t ms);

static int
tdev_tx(void *user, const uint8_t *bytes, size_t n)
{
	struct tdev *d = user;

	if (d->fd < 0)
		return -1;
	while (n > 0) {
		ssize_t w = write(d->fd, bytes, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1; /* lost, as on a line: the protocol retries */
		bytes += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
tdev_write(void *user, uint32_t off, const uint8_t *data, size_t n)
{
	struct tdev *d = user;

	if (off + n > sizeof(d->flash))
		return -1;
	memcpy(d->flash + off, data, n);
	return 0;
}

static int
tdev_read(void *user, uint32_t off, uint8_t *data, size_t n)
{
	struct tdev *d = user;

	if (off + n > sizeof(d->flash))
		return -1;
	memcpy(data, d->flash + off, n);
	return 0;
}

static int
tdev_save(void *user, const otadev_resume_t *r)
{
	struct tdev *d = user;

	d->stored = *r;
	d->have_stored = true;
	return 0;
}

static int
tdev_load(void *user, otadev_resume_t *r)
{
	struct tdev *d = user;

	if (!d->have_stored)
		return -1;
	*r = d->stored;
	return 0;
}

static int
tdev_event(void *user, const otadev_event_t *ev)
{
	struct tdev *d = user;

	switch (ev->type) {
	case OTADEV_EV_OFFER:
		d->offers++;
		d->offer_payload = ev->offer->max_payload;
		snprintf(d->target, sizeof(d->target), "%.*s", ev->offer->target_version.len,
		    ev->offer->target_version.s);
		return d->decline ? MSG_STATUS_DECLINED : 0;
	case OTADEV_EV_NO_UPDATE:
		d->no_updates++;
		d->last_recheck = ev->no_update->recheck_s;
		snprintf(d->last_reason, sizeof(d->last_reason), "%.*s", ev->no_update->reason.len,
		    ev->no_update->reason.s);
		break;
	case OTADEV_EV_ERROR:
		d->errors++;
		d->last_error = ev->error->code;
		d->last_retry = ev->error->retry_after_s;
		break;
	case OTADEV_EV_PROGRESS:
		d->progress++;
		d->stored_offset = ev->offset;
		break;
	case OTADEV_EV_RESULT:
		d->results++;
		break;
	case OTADEV_EV_DONE:
		d->dones++;
		d->done_status = ev->status;
		break;
	case OTADEV_EV_ABORTED:
		break;
	}
	return 0;
}

static void
tdev_poll(struct tdev *d)
{
	tdev_arm(d, otadev_poll(&d->dev, now_ms()));
}

static void
tdev_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	tdev_poll(arg);
}

static void
tdev_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tdev *d = arg;
	uint8_t buf[4096];
	ssize_t n;

	(void)what;
	n = read(fd, buf, sizeof(buf));
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		event_del(d->rd); /* the gateway hung up */
		return;
	}
	otadev_feed(&d->dev, buf, (size_t)n, now_ms());
	tdev_poll(d);
}

static void
tdev_arm(struct tdev *d, uint32_t ms)
{
	struct timeval tv;

	if (ms == UINT32_MAX) {
		evtimer_del(d->tm);
		return;
	}
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(d->tm, &tv);
}

/* Connects the device's link (a new unix connection). */
static void
tdev_connect(struct tdev *d)
{
	d->fd = connect_unix();
	d->rd = event_new(base, d->fd, EV_READ | EV_PERSIST, tdev_read_cb, d);
	event_add(d->rd, NULL);
}

/* Cuts the link (the device keeps its state in RAM). */
static void
tdev_cut(struct tdev *d)
{
	event_free(d->rd);
	d->rd = NULL;
	close(d->fd);
	d->fd = -1;
}

/* (Re)boots the device running version: loads its resume state and says HELLO. */
static void
tdev_boot(struct tdev *d, const char *version)
{
	snprintf(d->version, sizeof(d->version), "%s", version);
	d->cfg = (otadev_config_t){
	    .serial = d->serial,
	    .hardware_version = d->hw,
	    .software_type = "app",
	    .current_version = d->version,
	    .max_payload = 1024,
	    .window = 4,
	    .max_stall_ms = 100,
	    .rx_buf = d->rx,
	    .rx_cap = sizeof(d->rx),
	    .tx_buf = d->tx,
	    .tx_cap = sizeof(d->tx),
	    .tx = tdev_tx,
	    .flash_write = tdev_write,
	    .flash_read = tdev_read,
	    .slot_size = sizeof(d->flash),
	    .persist_save = tdev_save,
	    .persist_load = tdev_load,
	    .event = tdev_event,
	    .user = d,
	    .persist_interval = 4096,
	};
	ck_assert_int_eq(otadev_init(&d->dev, &d->cfg), 0);
	if (d->tm == NULL)
		d->tm = evtimer_new(base, tdev_timer_cb, d);
	otadev_check(&d->dev, now_ms());
	tdev_poll(d);
}

static struct tdev *
tdev_new(const char *serial, const char *version)
{
	struct tdev *d = calloc(1, sizeof(*d));

	ck_assert_ptr_nonnull(d);
	snprintf(d->serial, sizeof(d->serial), "%s", serial);
	snprintf(d->hw, sizeof(d->hw), "evt");
	memset(d->flash, 0xff, sizeof(d->flash));
	tdev_connect(d);
	tdev_boot(d, version);
	return d;
}

static void
tdev_free(struct tdev *d)
{
	if (d == NULL)
		return;
	if (d->rd != NULL)
		event_free(d->rd);
	if (d->tm != NULL)
		event_free(d->tm);
	if (d->fd >= 0)
		close(d->fd);
	free(d);
}

static bool
tdev_done(void *arg)
{
	return ((struct tdev *)arg)->dones > 0;
}

static bool
tdev_no_update(void *arg)
{
	return ((struct tdev *)arg)->no_updates > 0;
}

static bool
tdev_error(void *arg)
{
	return ((struct tdev *)arg)->errors > 0;
}

static bool
tdev_flash_ok(const struct tdev *d)
{
	char sha[65];

	tdata_sha256(d->flash, IMAGE_SIZE, NULL, sha);
	return strcmp(sha, image_sha) == 0;
}

/* --- a raw peer (tpeer.h), for what no honest device sends --- */

/* Runs the loop until the peer got count messages of type; decodes the last one into m. */
static void
peer_wait(struct tpeer *p, uint8_t type, unsigned count, struct msg *m)
{
	struct tpeer_wait w = {p, type, count};

	run_until(tpeer_has, &w, TIMEOUT_MS, "a message to the raw peer");
	if (m != NULL)
		tpeer_last(p, type, m);
}

/* --- the gateway --- */

static void
conn_closed(struct session *s, void *arg)
{
	(void)arg;
	session_free(s, "disconnected");
}

static void
on_accept(struct tcp_listener *l, struct transport *t, int err, void *arg)
{
	struct session_owner owner = {.closed = conn_closed};
	struct session_link sl = {.name = "sim", .address = "test", .solicit = false};
	struct session *s;

	(void)l;
	(void)arg;
	ck_assert_int_eq(err, 0);
	ck_assert_int_eq(session_new(sm, t, &sl, &owner, &s), 0);
}

static void
gateway_start(const char *base_url)
{
	struct mockmf_options mo = {.project_key = KEY};
	struct http_config hc = {0};
	struct memfault_config mc = {0};
	struct store_config sc = {0};
	struct upstream_config uc = {.answer_lifetime_s = 3600};
	struct sessions_config ssc = {
	    .max_transfers = max_transfers, .session_memory = 65536, .answer_cache_s = 3600};
	char err[512], *dbp, *cache, *logp;

	dir = tdir_new("session");
	logp = tdir_join(dir, "log");
	tfile_capture_stderr(logp);
	free(logp);
	log_open("test", LOG_LEVEL_DEBUG, false);

	base = event_base_new();
	mf = mockmf_new(base, &mo);
	ck_assert_ptr_nonnull(mf);
	tdata_image(image, sizeof(image), 7);
	tdata_sha256(image, sizeof(image), NULL, image_sha);
	ck_assert_int_eq(mockmf_add_payload(mf, "fw.bin", image, sizeof(image)), 0);
	ck_assert_int_eq(mockmf_add_release(mf, &(struct mockmf_release){.hardware_version = "evt",
						    .software_type = "app",
						    .version = "2.0.0",
						    .payload = "fw.bin"}),
	    0);
	hc.ca_file = mockmf_ca_file(mf);
	http = http_new(base, &hc);
	ck_assert_ptr_nonnull(http);
	mc.base_url = base_url != NULL ? base_url : mockmf_base_url(mf);
	mc.project_key = KEY;
	mc.timeout_s = 10;
	ck_assert_int_eq(memfault_new(http, &mc, &client, err, sizeof(err)), 0);
	dbp = tdir_join(dir, "otagw.db");
	cache = tdir_join(dir, "cache");
	sc.db_path = dbp;
	sc.cache_dir = cache;
	sc.max_bytes = 16 << 20;
	ck_assert_msg(store_open(&sc, &st, err, sizeof(err)) == 0, "%s", err);
	free(dbp);
	free(cache);
	ck_assert_int_eq(upstream_new(base, client, store_db(st), &uc, &up), 0);
	ck_assert_int_eq(download_manager_new(base, http, st, NULL, &dm), 0);
	ck_assert_int_eq(fleet_new(&fleet), 0);
	ck_assert_int_eq(fleet_load(fleet, store_db(st)), 0);
	ck_assert_int_eq(sessions_new(base, st, fleet, &ssc, &sm), 0);
	sessions_set_upstream(sm, up, dm);
	sock_path = tdir_join(dir, "gw.sock");
	ck_assert_int_eq(tcp_listener_new(base, TRANSPORT_KIND_UNIX, sock_path, NULL, on_accept,
			     NULL, &listener),
	    0);
}

static void
setup(void)
{
	max_transfers = 8;
	gateway_start(NULL);
}

static void
teardown(void)
{
	tcp_listener_free(listener);
	sessions_free(sm);
	fleet_free(fleet);
	download_manager_free(dm);
	upstream_free(up);
	ck_assert_int_eq(db_integrity_check(store_db(st)), 0);
	store_free(st);
	memfault_free(client);
	http_free(http);
	mockmf_free(mf);
	event_base_free(base);
	fflush(stderr);
	{
		char *logp = tdir_join(dir, "log");

		ck_assert_uint_eq(tfile_count(logp, KEY), 0); /* never the key */
		if (getenv("OTAGW_TEST_LOG") != NULL) {
			/* what the operator would have seen, for a look after the run */
			char *text = tfile_read(logp, NULL);
			FILE *f = fopen(getenv("OTAGW_TEST_LOG"), "a");

			if (f != NULL && text != NULL)
				fputs(text, f);
			if (f != NULL)
				fclose(f);
			free(text);
		}
		free(logp);
	}
	tdir_rmrf(dir);
	free(dir);
	free(sock_path);
}

/* The newest history entries of serial. */
static size_t
history_of(const char *serial, struct history_entry **out)
{
	size_t n = 0;

	ck_assert_int_eq(history_list(store_db(st), serial, 10, out, &n), 0);
	return n;
}

static const struct fleet_device *
fleet_dev(const char *serial)
{
	const struct fleet_device *d = fleet_get(fleet, serial);

	ck_assert_ptr_nonnull(d);
	return d;
}

/* --- the tests --- */

START_TEST(test_update_and_install)
{
	struct tdev *d = tdev_new("DEV-1", "1.0.0");
	struct history_entry *h;
	struct devices_entry row;
	struct sessions_stats ss;

	run_until(tdev_done, d, TIMEOUT_MS, "DONE");
	ck_assert_uint_eq(d->done_status, MSG_STATUS_OK);
	ck_assert_uint_eq(d->offers, 1);
	ck_assert_str_eq(d->target, "2.0.0");
	ck_assert_uint_eq(d->offer_payload, 1024);
	ck_assert(tdev_flash_ok(d));
	ck_assert_int_eq(devices_get(store_db(st), "DEV-1", &row), 0);
	ck_assert_int_eq(row.install_state, DEVICES_INSTALL_PENDING);
	ck_assert_str_eq(row.install_version, "2.0.0");
	ck_assert_str_eq(row.install_sha256, image_sha);
	ck_assert_uint_eq(history_of("DEV-1", &h), 1);
	ck_assert_int_eq(h[0].result, HISTORY_RESULT_VERIFIED);
	ck_assert_uint_eq(h[0].bytes, IMAGE_SIZE);
	ck_assert_str_eq(h[0].link, "sim");
	free(h);
	ck_assert_int_eq(fleet_dev("DEV-1")->state, FLEET_STATE_AWAITING_INSTALL);
	ck_assert_int_eq(fleet_dev("DEV-1")->last_result, FLEET_RESULT_TRANSFERRED);
	sessions_get_stats(sm, &ss);
	ck_assert_uint_eq(ss.active, 0);
	ck_assert_uint_eq(ss.cache_misses, 1);
	ck_assert_uint_eq(mockmf_requests(mf, "/cdn/fw.bin"), 1);

	/* It reboots into the new image: the install is confirmed, Memfault says latest. */
	tdev_boot(d, "2.0.0");
	run_until(tdev_no_update, d, TIMEOUT_MS, "NO_UPDATE");
	ck_assert_str_eq(d->last_reason, "latest");
	ck_assert_uint_eq(d->last_recheck, 3600);
	ck_assert_int_eq(devices_get(store_db(st), "DEV-1", &row), 0);
	ck_assert_int_eq(row.install_state, DEVICES_INSTALL_CONFIRMED);
	ck_assert_uint_eq(history_of("DEV-1", &h), 1);
	ck_assert_int_eq(h[0].result, HISTORY_RESULT_INSTALLED);
	free(h);
	ck_assert_int_eq(fleet_dev("DEV-1")->state, FLEET_STATE_INSTALLED);
	ck_assert_int_eq(fleet_dev("DEV-1")->last_result, FLEET_RESULT_INSTALLED);
	ck_assert_str_eq(fleet_dev("DEV-1")->target_version, "2.0.0");
	tdev_free(d);
}
END_TEST

START_TEST(test_install_failed)
{
	struct tdev *d = tdev_new("DEV-2", "1.0.0");
	struct history_entry *h;
	struct devices_entry row;

	run_until(tdev_done, d, TIMEOUT_MS, "DONE");
	/* The bootloader refused the image: back on the old version. The same image is not
	 * offered again until CheckNow. */
	d->errors = 0;
	tdev_boot(d, "1.0.0");
	run_until(tdev_error, d, TIMEOUT_MS, "ERROR");
	ck_assert_uint_eq(d->last_error, MSG_ERROR_UNSUPPORTED_IMAGE);
	ck_assert_uint_eq(d->offers, 1);
	ck_assert_int_eq(devices_get(store_db(st), "DEV-2", &row), 0);
	ck_assert_int_eq(row.install_state, DEVICES_INSTALL_FAILED);
	ck_assert_uint_eq(history_of("DEV-2", &h), 1);
	ck_assert_int_eq(h[0].result, HISTORY_RESULT_INSTALL_FAILED);
	free(h);
	ck_assert_int_eq(fleet_dev("DEV-2")->state, FLEET_STATE_ERROR);

	/* CheckNow clears it: the device is called in and offered the image again. */
	ck_assert_int_eq(sessions_check_now(sm, "DEV-2"), 0);
	d->dones = 0;
	run_until(tdev_done, d, TIMEOUT_MS, "the second DONE");
	ck_assert_uint_eq(d->offers, 2);
	ck_assert(tdev_flash_ok(d));
	tdev_free(d);
}
END_TEST

START_TEST(test_no_update)
{
	struct tdev *d = tdev_new("DEV-3", "2.0.0");

	run_until(tdev_no_update, d, TIMEOUT_MS, "NO_UPDATE");
	ck_assert_str_eq(d->last_reason, "latest");
	ck_assert_uint_eq(d->offers, 0);
	ck_assert_int_eq(fleet_dev("DEV-3")->state, FLEET_STATE_UP_TO_DATE);
	ck_assert_str_eq(fleet_dev("DEV-3")->last_reason, "Memfault: latest");
	ck_assert_uint_eq(mockmf_requests(mf, "/cdn/fw.bin"), 0);
	/* a second HELLO is answered from the cached answer */
	d->no_updates = 0;
	otadev_check(&d->dev, now_ms());
	tdev_poll(d);
	run_until(tdev_no_update, d, TIMEOUT_MS, "the second NO_UPDATE");
	ck_assert_uint_eq(mockmf_requests(mf, MOCKMF_LATEST_PATH), 1);
	tdev_free(d);
}
END_TEST

START_TEST(test_bad_input)
{
	struct sessions_stats ss;
	struct tpeer p;
	struct msg m;
	uint8_t hello[64] = {MSG_HELLO, 1, 0, 0, 0, 0, 1, 4, 100, 0};
	size_t n = MSG_HELLO_FIXED;
	const char *serial = "GW 1";
	uint8_t bad_ack[5] = {MSG_ACK, 0, 0, 0, 0};
	uint8_t unknown[3] = {0x42, 1, 2};

	tpeer_open(&p, sock_path);
	/* a serial with a space: BAD_IDENTITY, retry in an hour */
	hello[n++] = (uint8_t)strlen(serial);
	memcpy(hello + n, serial, strlen(serial));
	n += strlen(serial);
	hello[n++] = 3;
	memcpy(hello + n, "evt", 3);
	n += 3;
	hello[n++] = 3;
	memcpy(hello + n, "app", 3);
	n += 3;
	hello[n++] = 1;
	hello[n++] = '1';
	tpeer_send(&p, hello, n);
	peer_wait(&p, MSG_ERROR, 1, &m);
	ck_assert_uint_eq(m.u.error.code, MSG_ERROR_BAD_IDENTITY);
	ck_assert_uint_eq(m.u.error.retry_after_s, 3600);

	/* protocol version 0 */
	hello[1] = 0;
	tpeer_send(&p, hello, n);
	peer_wait(&p, MSG_ERROR, 2, &m);
	ck_assert_uint_eq(m.u.error.code, MSG_ERROR_UNSUPPORTED_VERSION);

	/* a truncated ACK: BAD_MESSAGE; an unknown type: ignored */
	tpeer_send(&p, unknown, sizeof(unknown));
	tpeer_send(&p, bad_ack, sizeof(bad_ack));
	peer_wait(&p, MSG_ERROR, 3, &m);
	ck_assert_uint_eq(m.u.error.code, MSG_ERROR_BAD_MESSAGE);
	/* garbage that is no frame at all */
	ck_assert_int_eq(write(p.fd, "\x01\x02\x03\x00", 4), 4);
	run_for(100);
	tpeer_poll(&p);
	ck_assert_uint_eq(p.counts[MSG_ERROR], 3);
	sessions_get_stats(sm, &ss);
	ck_assert_uint_eq(ss.bad_messages, 3);

	/* an ACK outside any transfer: the gateway asks for a HELLO */
	tpeer_ack(&p, 0, 1024);
	peer_wait(&p, MSG_SOLICIT, 1, NULL);
	tpeer_close(&p);

	/* a RESULT from a device the gateway does not know yet (it restarted while the device
	 * was verifying): asked who it is, not answered DONE, so the result gets recorded */
	tpeer_open(&p, sock_path);
	{
		uint8_t out[MSG_RESULT_MAX], sha[32] = {1};
		struct msg_result r = {.status = MSG_STATUS_OK, .sha256 = sha, .bytes_received = 9};

		tpeer_send(&p, out, msg_encode_result(&r, out, sizeof(out)));
	}
	peer_wait(&p, MSG_SOLICIT, 1, NULL);
	ck_assert_uint_eq(p.counts[MSG_DONE], 0);
	tpeer_close(&p);

	/* the log names the link and what was wrong */
	fflush(stderr);
	{
		char *logp = tdir_join(dir, "log");

		ck_assert_uint_eq(tfile_count(logp, "device_serial 'GW 1'"), 1);
		ck_assert_uint_eq(tfile_count(logp, "; answered ERROR "), 3);
		free(logp);
	}
}
END_TEST

static bool
tdev_past(void *arg)
{
	struct tdev *d = arg;

	return d->stored_offset >= 16384;
}

/* The gateway has seen the device (serial arg) go and failed its transfer. */
static bool
dev_cut_off(void *arg)
{
	const struct fleet_device *d = fleet_dev(arg);

	return !d->connected && d->state == FLEET_STATE_FAILED;
}

START_TEST(test_resume_after_cut)
{
	struct tdev *d = tdev_new("DEV-4", "1.0.0");
	struct history_entry *h;
	uint32_t acked;
	size_t n;

	run_until(tdev_past, d, TIMEOUT_MS, "16 KiB stored");
	tdev_cut(d);
	run_until(dev_cut_off, "DEV-4", TIMEOUT_MS, "the gateway to notice the cut");
	ck_assert_uint_eq(history_of("DEV-4", &h), 1);
	ck_assert_int_eq(h[0].result, HISTORY_RESULT_ABORTED);
	ck_assert_msg(strncmp(h[0].reason, "Disconnected at ", 16) == 0, "%s", h[0].reason);
	acked = (uint32_t)h[0].bytes;
	ck_assert_uint_ge(acked, 16384);
	free(h);
	ck_assert_int_eq(fleet_dev("DEV-4")->state, FLEET_STATE_FAILED);
	ck_assert(!fleet_dev("DEV-4")->connected);

	/* back on a new connection: the device resumes where it was, nothing acked is resent */
	tdev_connect(d);
	otadev_check(&d->dev, now_ms());
	tdev_poll(d);
	run_until(tdev_done, d, TIMEOUT_MS, "DONE");
	ck_assert(tdev_flash_ok(d));
	n = history_of("DEV-4", &h);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(h[0].result, HISTORY_RESULT_VERIFIED);
	free(h);
	fflush(stderr);
	{
		char *logp = tdir_join(dir, "log"), *text = tfile_read(logp, NULL), *at;
		unsigned long from;

		at = strstr(text, "Resuming 2.0.0 at ");
		ck_assert_ptr_nonnull(at);
		from = strtoul(at + strlen("Resuming 2.0.0 at "), NULL, 10);
		ck_assert_uint_ge(from, acked);
		free(text);
		free(logp);
	}
	tdev_free(d);
}
END_TEST

static bool
both_done(void *arg)
{
	struct tdev **d = arg;

	return d[0]->dones > 0 && d[1]->dones > 0;
}

START_TEST(test_slots_queue)
{
	struct tdev *d[2];
	struct sessions_stats ss;

	teardown();
	max_transfers = 1;
	gateway_start(NULL);
	d[0] = tdev_new("DEV-5", "1.0.0");
	d[1] = tdev_new("DEV-6", "1.0.0");
	run_until(both_done, d, TIMEOUT_MS, "two DONEs");
	/* one of them waited: BUSY, then it was called in */
	ck_assert_uint_eq(d[0]->errors + d[1]->errors, 1);
	ck_assert_uint_eq(d[0]->errors ? d[0]->last_error : d[1]->last_error, MSG_ERROR_BUSY);
	ck_assert(tdev_flash_ok(d[0]));
	ck_assert(tdev_flash_ok(d[1]));
	ck_assert_uint_eq(mockmf_requests(mf, "/cdn/fw.bin"), 1);
	sessions_get_stats(sm, &ss);
	ck_assert_uint_eq(ss.active + ss.reserved + ss.queued, 0);
	ck_assert_uint_eq(ss.cache_hits + ss.cache_misses, 3);
	tdev_free(d[0]);
	tdev_free(d[1]);
}
END_TEST

START_TEST(test_bad_offset)
{
	struct history_entry *h;
	struct tpeer p;
	struct msg m;
	uint32_t size;

	tpeer_open(&p, sock_path);
	tpeer_hello(&p, "EVIL-1", "evt", "app", "1.0.0", 256);
	peer_wait(&p, MSG_OFFER, 1, &m);
	size = m.u.offer.size;
	ck_assert_uint_eq(size, IMAGE_SIZE);
	ck_assert_uint_eq(m.u.offer.max_payload, 256);
	/* an offset past the end of the image */
	tpeer_ack(&p, size + 4096, size + 8192);
	peer_wait(&p, MSG_ERROR, 1, &m);
	ck_assert_uint_eq(m.u.error.code, MSG_ERROR_BAD_OFFSET);
	ck_assert_uint_eq(history_of("EVIL-1", &h), 1);
	ck_assert_int_eq(h[0].result, HISTORY_RESULT_FAILED);
	free(h);

	/* again, within the image but beyond anything sent */
	tpeer_hello(&p, "EVIL-1", "evt", "app", "1.0.0", 256);
	peer_wait(&p, MSG_OFFER, 2, NULL);
	tpeer_ack(&p, 0, 512);
	peer_wait(&p, MSG_DATA, 2, NULL);
	tpeer_ack(&p, 20000, 30000);
	peer_wait(&p, MSG_ERROR, 2, &m);
	ck_assert_uint_eq(m.u.error.code, MSG_ERROR_BAD_OFFSET);
	tpeer_close(&p);
}
END_TEST

START_TEST(test_lying_result)
{
	uint8_t out[MSG_RESULT_MAX], sha[32], other[32];
	struct history_entry *h;
	struct msg_result r;
	struct tpeer p;
	struct msg m;
	size_t n;

	tpeer_open(&p, sock_path);
	tpeer_hello(&p, "EVIL-2", "evt", "app", "1.0.0", 256);
	peer_wait(&p, MSG_OFFER, 1, &m);
	memcpy(sha, m.u.offer.sha256, 32);
	tpeer_ack(&p, 0, 256);
	peer_wait(&p, MSG_DATA, 1, NULL);
	/* "verified" after one frame */
	r = (struct msg_result){
	    .status = MSG_STATUS_OK, .sha256 = sha, .bytes_received = IMAGE_SIZE};
	n = msg_encode_result(&r, out, sizeof(out));
	tpeer_send(&p, out, n);
	peer_wait(&p, MSG_ERROR, 1, &m);
	ck_assert_uint_eq(m.u.error.code, MSG_ERROR_ABORTED);
	ck_assert_uint_eq(history_of("EVIL-2", &h), 1);
	ck_assert_int_eq(h[0].result, HISTORY_RESULT_FAILED);
	free(h);
	ck_assert_int_ne(fleet_dev("EVIL-2")->state, FLEET_STATE_AWAITING_INSTALL);

	/* a RESULT for an image never offered: DONE (so it stops), nothing recorded */
	memset(other, 0x5a, sizeof(other));
	r.sha256 = other;
	n = msg_encode_result(&r, out, sizeof(out));
	tpeer_send(&p, out, n);
	peer_wait(&p, MSG_DONE, 1, &m);
	ck_assert_int_eq(memcmp(m.u.done.sha256, other, 32), 0);
	ck_assert_uint_eq(history_of("EVIL-2", &h), 1);
	free(h);
	tpeer_close(&p);
}
END_TEST

START_TEST(test_upstream_unavailable)
{
	/* a bad gateway in front of Memfault: this device backs off, the others go on */
	struct mockmf_response r = {.status = 502, .body = "down", .count = 1};
	struct tdev *d;

	ck_assert_int_eq(mockmf_push(mf, MOCKMF_LATEST_PATH, &r), 0);
	d = tdev_new("DEV-7", "1.0.0");
	run_until(tdev_error, d, TIMEOUT_MS, "ERROR");
	ck_assert_uint_eq(d->last_error, MSG_ERROR_UPSTREAM_UNAVAILABLE);
	ck_assert_uint_ge(d->last_retry, 5);
	ck_assert_uint_le(d->last_retry, 3600);
	ck_assert_int_eq(fleet_dev("DEV-7")->state, FLEET_STATE_FAILED);
	/* another device is served meanwhile (Memfault answers it) */
	{
		struct tdev *e = tdev_new("DEV-8", "1.0.0");

		run_until(tdev_done, e, TIMEOUT_MS, "DONE of the other device");
		ck_assert(tdev_flash_ok(e));
		tdev_free(e);
	}
	tdev_free(d);
}
END_TEST

START_TEST(test_unreachable)
{
	struct tdev *d;
	char url[64];

	teardown();
	snprintf(url, sizeof(url), "https://127.0.0.1:%u", tnet_free_port());
	gateway_start(url);
	d = tdev_new("DEV-9", "1.0.0");
	run_until(tdev_error, d, TIMEOUT_MS, "ERROR");
	ck_assert_uint_eq(d->last_error, MSG_ERROR_UPSTREAM_UNAVAILABLE);
	ck_assert_uint_ge(d->last_retry, 5);
	tdev_free(d);
}
END_TEST

static bool
tdev_moving(void *arg)
{
	return ((struct tdev *)arg)->stored_offset >= 8192;
}

START_TEST(test_abort_and_check_now)
{
	struct tdev *d = tdev_new("DEV-10", "1.0.0");
	struct history_entry *h;

	ck_assert_int_eq(sessions_abort(sm, "NOPE", "x"), -ENOENT);
	run_until(tdev_moving, d, TIMEOUT_MS, "progress");
	ck_assert_int_eq(sessions_check_now(sm, "DEV-10"), -EBUSY);
	ck_assert_int_eq(sessions_abort(sm, "DEV-10", "Aborted by uid 0 (root)"), 0);
	run_until(tdev_error, d, TIMEOUT_MS, "ERROR ABORTED");
	ck_assert_uint_eq(d->last_error, MSG_ERROR_ABORTED);
	ck_assert_int_eq(sessions_abort(sm, "DEV-10", "again"), -EALREADY);
	ck_assert_uint_eq(history_of("DEV-10", &h), 1);
	ck_assert_int_eq(h[0].result, HISTORY_RESULT_ABORTED);
	ck_assert_msg(
	    strncmp(h[0].reason, "Aborted by uid 0 (root) at ", 27) == 0, "%s", h[0].reason);
	free(h);
	ck_assert_int_eq(fleet_dev("DEV-10")->state, FLEET_STATE_IDLE);
	ck_assert_int_eq(fleet_dev("DEV-10")->last_result, FLEET_RESULT_ABORTED);

	/* held: a new HELLO gets ERROR ABORTED again, nothing is offered */
	d->errors = 0;
	otadev_check(&d->dev, now_ms());
	tdev_poll(d);
	run_until(tdev_error, d, TIMEOUT_MS, "the second ERROR");
	ck_assert_uint_eq(d->last_error, MSG_ERROR_ABORTED);
	ck_assert_uint_eq(d->offers, 1);

	/* CheckNow lifts the hold; the device resumes its image */
	ck_assert_int_eq(sessions_check_now(sm, "DEV-10"), 0);
	run_until(tdev_done, d, TIMEOUT_MS, "DONE");
	ck_assert(tdev_flash_ok(d));
	ck_assert_uint_eq(d->offers, 2);
	tdev_free(d);
}
END_TEST

START_TEST(test_takeover)
{
	struct sessions_stats ss;
	struct tpeer a, b;
	struct msg m;

	tpeer_open(&a, sock_path);
	tpeer_hello(&a, "TWIN", "evt", "app", "1.0.0", 256);
	peer_wait(&a, MSG_OFFER, 1, &m);
	tpeer_ack(&a, 0, 256);
	peer_wait(&a, MSG_DATA, 1, NULL);
	/* the same serial on another link takes over */
	tpeer_open(&b, sock_path);
	tpeer_hello(&b, "TWIN", "evt", "app", "1.0.0", 256);
	peer_wait(&b, MSG_OFFER, 1, &m);
	sessions_get_stats(sm, &ss);
	ck_assert_uint_eq(ss.active, 1);
	ck_assert_uint_eq(ss.transfers, 1);
	ck_assert(fleet_dev("TWIN")->connected);
	/* the old link's ACKs now only get a SOLICIT */
	tpeer_ack(&a, 256, 512);
	peer_wait(&a, MSG_SOLICIT, 1, NULL);
	tpeer_close(&a);
	run_for(100);
	ck_assert(fleet_dev("TWIN")->connected);
	tpeer_close(&b);
}
END_TEST

static bool
dev_downloading(void *arg)
{
	const struct fleet_device *d = fleet_get(fleet, arg);

	return d != NULL && d->state == FLEET_STATE_DOWNLOADING && d->bytes_done > 0;
}

/* A reload that changes [memfault] replaces the upstream client and the download manager under
 * the sessions: a download in progress moves over (resumed by the new manager) and the device
 * is served all the same. */
START_TEST(test_upstream_swap)
{
	struct mockmf_response drip = {.drip_ms = 30, .drip_bytes = 2048};
	struct memfault_config mc = {.project_key = KEY, .timeout_s = 10};
	struct http_config hc = {0};
	struct upstream_config uc = {.answer_lifetime_s = 3600};
	struct http *http2;
	struct memfault *client2;
	struct upstream *up2;
	struct download_manager *dm2;
	struct tdev *d;
	char err[256];

	ck_assert_int_eq(mockmf_push(mf, "/cdn/fw.bin", &drip), 0);
	d = tdev_new("DEV-11", "1.0.0");
	run_until(dev_downloading, "DEV-11", TIMEOUT_MS, "the download");
	hc.ca_file = mockmf_ca_file(mf);
	http2 = http_new(base, &hc);
	ck_assert_ptr_nonnull(http2);
	mc.base_url = mockmf_base_url(mf);
	ck_assert_int_eq(memfault_new(http2, &mc, &client2, err, sizeof(err)), 0);
	ck_assert_int_eq(upstream_new(base, client2, store_db(st), &uc, &up2), 0);
	ck_assert_int_eq(download_manager_new(base, http2, st, NULL, &dm2), 0);
	sessions_set_upstream(sm, up2, dm2);
	download_manager_free(dm);
	upstream_free(up);
	memfault_free(client);
	http_free(http);
	http = http2;
	client = client2;
	up = up2;
	dm = dm2;
	run_until(tdev_done, d, TIMEOUT_MS, "DONE");
	ck_assert(tdev_flash_ok(d));
	ck_assert_uint_eq(d->offers, 1);
	ck_assert_uint_eq(mockmf_requests(mf, "/cdn/fw.bin"), 2); /* cut, then resumed */
	tdev_free(d);
}
END_TEST

static Suite *
session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc = tcase_create("session");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_update_and_install);
	tcase_add_test(tc, test_install_failed);
	tcase_add_test(tc, test_no_update);
	tcase_add_test(tc, test_bad_input);
	tcase_add_test(tc, test_resume_after_cut);
	tcase_add_test(tc, test_slots_queue);
	tcase_add_test(tc, test_bad_offset);
	tcase_add_test(tc, test_lying_result);
	tcase_add_test(tc, test_upstream_unavailable);
	tcase_add_test(tc, test_unreachable);
	tcase_add_test(tc, test_abort_and_check_now);
	tcase_add_test(tc, test_takeover);
	tcase_add_test(tc, test_upstream_swap);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(session_suite());
}
