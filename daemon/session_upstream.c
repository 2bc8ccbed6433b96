/* The upstream half of a session (see session_int.h): the Memfault check for its device, the
 * answer turned into NO_UPDATE, ERROR or a download, the wait for the download manager, and a
 * fresh signed URL when a download needs one. Sessions never share an answer (Memfault decides
 * per serial); the download of a payload is shared through the download manager. */
#include "session_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "devices.h"
#include "download.h"
#include "hex.h"
#include "memfault.h"
#include "release.h"
#include "upstream.h"

static void
session_upstream_on_refresh_answer(struct upstream_check *c, struct upstream_answer *a, void *arg)
{
	struct session *s = arg;
	struct download_waiter *w = s->waiter;

	(void)c;
	s->refresh = NULL;
	if (w == NULL)
		return;
	if (a->kind == UPSTREAM_UPDATE && a->artifact != NULL)
		download_waiter_set_url(w, a->artifact->sha256, a->artifact->url, a->time);
	else
		download_waiter_url_failed(w,
		    a->kind == UPSTREAM_ERROR ? a->message : "Memfault no longer offers an update");
}

/* The download manager needs a fresh signed URL: ask Memfault again for this device. */
static void
session_upstream_on_refresh(struct download_waiter *w, void *arg)
{
	struct session *s = arg;
	struct memfault_identity id = {
	    s->serial, s->hardware_version, s->software_type, s->current_version};

	if (s->refresh != NULL || s->m->up == NULL ||
	    upstream_check(s->m->up, &id, UPSTREAM_CHECK_FRESH, session_upstream_on_refresh_answer,
		s, &s->refresh) < 0) {
		if (s->refresh == NULL)
			download_waiter_url_failed(w, "cannot ask Memfault");
	}
}

static void
session_upstream_on_download(struct download_waiter *w, int err, const char *message, void *arg)
{
	struct session *s = arg;
	char reason[DOWNLOAD_MESSAGE_MAX + 64];
	bool permanent = err == -EFBIG;

	(void)w;
	s->waiter = NULL;
	upstream_check_cancel(s->refresh);
	s->refresh = NULL;
	if (err == 0) {
		session_transfer_ready(s);
		return;
	}
	snprintf(reason, sizeof(reason), "Download of %s failed: %s", s->target, message);
	session_fail(s, permanent ? MSG_ERROR_UNSUPPORTED_IMAGE : MSG_ERROR_UPSTREAM_UNAVAILABLE,
	    permanent ? SESSION_RETRY_IMAGE : SESSION_RETRY_INTERNAL,
	    permanent ? FLEET_STATE_ERROR : FLEET_STATE_FAILED, reason);
}

/* Memfault offers an update: check that this device can take it, then get the payload. */
static void
session_upstream_on_update(struct session *s, const struct upstream_answer *a)
{
	struct sessions *m = s->m;
	const struct release_artifact *art = a->artifact;
	const struct release *rel = a->release;
	struct download_request req;
	struct download_progress prog;
	struct download_callbacks cb = {
	    .done = session_upstream_on_download,
	    .refresh = session_upstream_on_refresh,
	    .userdata = s,
	};
	struct store_artifact sa;
	struct devices_entry row;
	char reason[256];
	int r;

	if (rel == NULL || art == NULL || rel->version == NULL || m->dm == NULL) {
		session_fail(s, MSG_ERROR_INTERNAL, SESSION_RETRY_INTERNAL, FLEET_STATE_FAILED,
		    "Memfault's answer lacks the artifact");
		return;
	}
	if (!ident_text_valid(rel->version, strlen(rel->version), IDENT_VERSION_MAX)) {
		snprintf(reason, sizeof(reason),
		    "The release's version is not 1..64 printable characters; it cannot be "
		    "offered");
		dev_err(s->serial, "%s", reason);
		session_fail(
		    s, MSG_ERROR_UNSUPPORTED_IMAGE, SESSION_RETRY_IMAGE, FLEET_STATE_ERROR, reason);
		return;
	}
	snprintf(s->target, sizeof(s->target), "%s", rel->version);
	fleet_set_target(m->fleet, s->dev, s->target);
	if (art->file_size == 0 || art->file_size > UINT32_MAX) {
		snprintf(reason, sizeof(reason),
		    "Release %s is %" PRIu64 " bytes; the protocol carries 1 byte to 4 GiB",
		    s->target, art->file_size);
		dev_err(s->serial, "%s", reason);
		session_fail(
		    s, MSG_ERROR_UNSUPPORTED_IMAGE, SESSION_RETRY_IMAGE, FLEET_STATE_ERROR, reason);
		return;
	}
	if (rel->is_delta && !(s->caps & MSG_CAP_DELTA)) {
		snprintf(reason, sizeof(reason),
		    "Release %s is a delta image and the device cannot apply deltas", s->target);
		dev_err(s->serial, "%s", reason);
		session_fail(
		    s, MSG_ERROR_UNSUPPORTED_IMAGE, SESSION_RETRY_IMAGE, FLEET_STATE_ERROR, reason);
		return;
	}
	if (store_sha256_norm(art->sha256, s->sha256) < 0 ||
	    hex_decode(s->sha256, s->sha, sizeof(s->sha)) < 0) {
		session_fail(s, MSG_ERROR_UNSUPPORTED_IMAGE, SESSION_RETRY_IMAGE, FLEET_STATE_ERROR,
		    "The artifact's sha256 is malformed");
		return;
	}
	/* A device that came back on its old version after verifying exactly this image would
	 * only fail the same way again: wait for CheckNow (which clears the mark). */
	if (devices_get(m->db, s->serial, &row) == 0 &&
	    row.install_state == DEVICES_INSTALL_FAILED &&
	    strcmp(row.install_sha256, s->sha256) == 0) {
		snprintf(reason, sizeof(reason),
		    "The device did not boot %s last time (it came back on %s); not offering it "
		    "again until CheckNow",
		    s->target, s->current_version);
		dev_warn(s->serial, "%s", reason);
		session_fail(
		    s, MSG_ERROR_UNSUPPORTED_IMAGE, SESSION_RETRY_IMAGE, FLEET_STATE_ERROR, reason);
		return;
	}
	s->size = (uint32_t)art->file_size;
	s->offer_flags = (uint8_t)((rel->is_delta ? MSG_OFFER_F_DELTA : 0) |
				   (rel->is_forced ? MSG_OFFER_F_FORCED : 0));

	if (store_artifact_get(m->store, s->sha256, &sa) == 0 && sa.state == STORE_STATE_COMPLETE) {
		m->cache_hits++;
		session_transfer_ready(s);
		return;
	}
	if (download_get_progress(m->dm, s->sha256, &prog) == 0)
		m->cache_hits++;
	else
		m->cache_misses++;
	req = (struct download_request){
	    .sha256 = s->sha256,
	    .size = art->file_size,
	    .md5 = art->md5,
	    .url = art->url,
	    .url_fetched = a->time,
	    .artifact_id = art->id > 0 ? art->id : 0,
	    .version = s->target,
	    .is_delta = rel->is_delta,
	    .serial = s->serial,
	};
	r = download_get(m->dm, &req, &cb, &s->waiter);
	if (r < 0) {
		s->waiter = NULL;
		snprintf(reason, sizeof(reason), "Cannot download %s: %s", s->target,
		    r == -EINVAL ? "Memfault's artifact is malformed" : strerror(-r));
		dev_err(s->serial, "%s", reason);
		session_fail(
		    s, MSG_ERROR_UNSUPPORTED_IMAGE, SESSION_RETRY_IMAGE, FLEET_STATE_ERROR, reason);
		return;
	}
	s->state = SESSION_DOWNLOADING;
	fleet_set_state(m->fleet, s->dev, FLEET_STATE_DOWNLOADING);
	fleet_set_progress(m->fleet, s->dev, 0, art->file_size);
	session_rearm(s);
}

/* The ERROR code and fleet state for an upstream error class. */
static void
session_upstream_on_error(struct session *s, const struct upstream_answer *a)
{
	enum msg_error_code code = MSG_ERROR_UPSTREAM_UNAVAILABLE;
	enum fleet_state state = FLEET_STATE_FAILED;
	uint32_t retry = a->retry_after_s;

	switch (a->error) {
	case MEMFAULT_ERROR_CONFIG:
		code = MSG_ERROR_UPSTREAM_REJECTED;
		state = FLEET_STATE_ERROR;
		break;
	case MEMFAULT_ERROR_RESPONSE:
		code = MSG_ERROR_UNSUPPORTED_IMAGE;
		state = FLEET_STATE_ERROR;
		break;
	case MEMFAULT_ERROR_SERVER:
		state = FLEET_STATE_ERROR;
		break;
	case MEMFAULT_ERROR_RATE_LIMITED:
	case MEMFAULT_ERROR_TRANSIENT:
	case MEMFAULT_ERROR_TLS:
		break;
	case MEMFAULT_ERROR_INTERNAL:
	case MEMFAULT_ERROR_NONE:
		code = MSG_ERROR_INTERNAL;
		break;
	}
	if (retry < SESSION_RETRY_MIN)
		retry = code == MSG_ERROR_INTERNAL ? SESSION_RETRY_INTERNAL : SESSION_RETRY_MIN;
	if (retry > SESSION_RETRY_MAX)
		retry = SESSION_RETRY_MAX;
	/* upstream.c logged the failure with what to do about it */
	session_fail(s, code, retry, state, a->message[0] != '\0' ? a->message : "Memfault failed");
}

static void
session_upstream_on_answer(struct upstream_check *c, struct upstream_answer *a, void *arg)
{
	struct session *s = arg;
	struct sessions *m = s->m;
	char buf[MSG_REASON_MAX + 1];
	uint8_t out[MSG_NO_UPDATE_MAX];
	struct msg_no_update nu;
	uint32_t recheck = 0;
	int64_t age;

	(void)c;
	s->check = NULL;
	switch (a->kind) {
	case UPSTREAM_UPDATE:
		session_upstream_on_update(s, a);
		return;
	case UPSTREAM_NO_UPDATE:
		/* Asking before the cached answer expires would get the same answer. */
		if (m->cfg.answer_cache_s > 0) {
			age = (int64_t)time(NULL) - a->time;
			recheck = m->cfg.answer_cache_s;
			if (a->from_cache && age > 0)
				recheck = age < (int64_t)recheck ? recheck - (uint32_t)age : 0;
			if (recheck < SESSION_RETRY_MIN)
				recheck = SESSION_RETRY_MIN;
		}
		nu.recheck_s = recheck;
		nu.reason = session_text(buf, MSG_REASON_MAX, a->reason);
		session_send(s, out, msg_encode_no_update(&nu, out, sizeof(out)));
		session_stop(s, HISTORY_RESULT_ABORTED, NULL, false);
		session_done(s, recheck);
		if (s->just_installed) {
			/* "installed" says more than "up to date" right after the install */
			fleet_set_progress(m->fleet, s->dev, s->installed_size, s->installed_size);
			fleet_set_state(m->fleet, s->dev, FLEET_STATE_INSTALLED);
			return;
		}
		fleet_set_target(m->fleet, s->dev, NULL);
		fleet_set_result(m->fleet, s->dev, FLEET_RESULT_UP_TO_DATE, "Memfault: %s",
		    a->reason[0] != '\0' ? a->reason : "no update for this device");
		fleet_set_state(m->fleet, s->dev, FLEET_STATE_UP_TO_DATE);
		return;
	case UPSTREAM_ERROR:
		session_upstream_on_error(s, a);
		return;
	}
}

void
session_upstream_check(struct session *s)
{
	struct sessions *m = s->m;
	struct memfault_identity id = {
	    s->serial, s->hardware_version, s->software_type, s->current_version};
	int r;

	if (m->up == NULL) {
		session_fail(s, MSG_ERROR_UPSTREAM_UNAVAILABLE, SESSION_RETRY_INTERNAL,
		    FLEET_STATE_FAILED, "The Memfault client is not running");
		return;
	}
	r = upstream_check(m->up, &id, s->fresh ? UPSTREAM_CHECK_FRESH : 0,
	    session_upstream_on_answer, s, &s->check);
	if (r < 0) {
		s->check = NULL;
		session_fail(s, MSG_ERROR_INTERNAL, SESSION_RETRY_INTERNAL, FLEET_STATE_FAILED,
		    "Cannot ask Memfault");
		return;
	}
	s->fresh = false;
	s->state = SESSION_CHECKING;
	fleet_set_state(m->fleet, s->dev, FLEET_STATE_CHECKING);
	fleet_set_progress(m->fleet, s->dev, 0, 0);
	session_rearm(s);
}

void
session_upstream_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	if (s->bound && s->state == SESSION_CHECKING && s->check == NULL)
		session_upstream_check(s);
}

/* Leaves the check, the URL refresh and the download the session waits for. */
static void
session_upstream_cancel(struct session *s)
{
	upstream_check_cancel(s->check);
	s->check = NULL;
	upstream_check_cancel(s->refresh);
	s->refresh = NULL;
	download_waiter_cancel(s->waiter);
	s->waiter = NULL;
}

void
session_upstream_stop(struct session *s)
{
	session_upstream_cancel(s);
	event_del(s->kick);
}

void
session_upstream_switch(struct session *s)
{
	bool restart = s->check != NULL || s->waiter != NULL;

	/* Unlike session_upstream_stop(), a kick already pending stays: it asks the newest client
	 * when it runs. */
	session_upstream_cancel(s);
	if (restart && s->bound) {
		/* asked again on the new client from the loop; the cached answer and the partial
		 * download make that cheap */
		s->state = SESSION_CHECKING;
		evtimer_del(s->timer);
		event_active(s->kick, 0, 0);
	}
}
