/* What the session files share and nothing else sees (not installed): the session and manager
 * structs, the state table, the limits, and the functions one file offers the others.
 * session.c runs one device's state machine, session_transfer.c the offer and the transfer of
 * one image, session_upstream.c the check and the download for a session, sessions.c the
 * manager (slots, queue, lookups, the operator's entry points, the daemon module). */
#ifndef OTAGW_SESSION_INT_H
#define OTAGW_SESSION_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/util.h>

#include "clock.h"
#include "config.h"
#include "fleet.h"
#include "history.h"
#include "ident.h"
#include "log.h"
#include "msg.h"
#include "sender.h"
#include "session.h"
#include "store.h"

struct db;
struct download_waiter;
struct event;
struct upstream_check;

/* retry_after_s of the ERROR answers (docs/PROTOCOL.md, section 5.2). */
#define SESSION_RETRY_IDENTITY 3600u
#define SESSION_RETRY_VERSION  86400u
#define SESSION_RETRY_BUSY     60u /* a SOLICIT calls the device in earlier when its turn comes */
#define SESSION_RETRY_INTERNAL 60u
#define SESSION_RETRY_IMAGE    3600u
#define SESSION_RETRY_HELD     3600u /* aborted by the operator */
#define SESSION_RETRY_MIN      5u
#define SESSION_RETRY_MAX      86400u

/* clang-format off */
/* What the session is doing. Idle sessions may or may not have a device bound.
 *
 * state        event                         action                                   next
 * any          HELLO with a bad identity,    ERROR BAD_IDENTITY / UNSUPPORTED_VERSION /  same
 *              version 0, malformed message  BAD_MESSAGE; one rate-limited log line
 * any          HELLO (valid)                 bind (taking it over from another link),    CHECKING
 *                                            devices_upsert, settle a pending install,
 *                                            upstream_check; a transfer in progress
 *                                            ends as aborted and keeps its slot
 * CHECKING,    HELLO, same identity          nothing: not a new check                    same
 * DOWNLOADING
 * CHECKING     up to date / error            NO_UPDATE(recheck, reason) / ERROR(code)    IDLE
 * CHECKING     update                        delta and size checks, download_get()      DOWNLOADING
 *                                            (or straight on if the cache has it)
 * DOWNLOADING  done                          pin, verify once, open; with a slot OFFER   OFFERED
 *                                            without one ERROR BUSY and the queue        QUEUED
 * QUEUED       a slot is freed               reserve it for 15 s, SOLICIT                same
 * OFFERED      ACK                           sender_init at its offset, pump             SENDING
 * OFFERED      10 s                          drop (the device says HELLO again)          IDLE
 * SENDING      ACK, WRITABLE, timer          sender_ack (bad: ERROR BAD_OFFSET), pump    same
 * SENDING      every byte acknowledged                                                   VERIFYING
 * SENDING      8 timeouts                    ERROR ABORTED                               IDLE
 * VERIFYING    ACK (keepalive) / 10 s        restart the timer / drop                    same/IDLE
 * OFFERED..    RESULT OK, all sent           history verified, install pending, DONE     IDLE
 * OFFERED..    RESULT OK, not all sent       ERROR ABORTED: a lie                        IDLE
 * OFFERED..    RESULT failure or refusal     history failed, DONE                        IDLE
 * any          RESULT for another image      DONE (to an unbound link: SOLICIT)          same
 * IDLE         ACK                           SOLICIT, at most once a second              IDLE
 * any          link down                     history aborted "Disconnected at N %"       IDLE
 * any          operator Abort                ERROR ABORTED; held until reconnect or      IDLE
 *                                            CheckNow
 */
/* clang-format on */
enum session_state {
	SESSION_IDLE,
	SESSION_CHECKING,    /* waiting for the upstream check */
	SESSION_DOWNLOADING, /* waiting for the download manager */
	SESSION_QUEUED,      /* told BUSY, waiting for a transfer slot */
	SESSION_OFFERED,     /* OFFER sent, waiting for the first ACK (or a refusal) */
	SESSION_SENDING,     /* the sender runs */
	SESSION_VERIFYING,   /* everything acknowledged, waiting for RESULT */
};

enum session_slot {
	SESSION_SLOT_NONE,
	SESSION_SLOT_RESERVED, /* held for this device while it comes back (SOLICIT, restart) */
	SESSION_SLOT_ACTIVE,
};

struct session {
	TAILQ_ENTRY(session) entry;  /* m->all */
	TAILQ_ENTRY(session) qentry; /* m->queue while queued */
	struct sessions *m;
	struct transport *t;
	struct session_owner owner;
	char link[CONFIG_LINK_NAME_MAX + 1];
	char address[FLEET_ADDRESS_MAX + 1];
	bool solicit;
	enum session_state state;
	struct event *timer;
	struct event *kick; /* restarts the check from the loop (upstream swapped) */
	bool in_queue;
	enum session_slot slot;
	uint32_t reserve_until; /* SLOT_RESERVED while queued: when it lapses */

	/* the device, once bound */
	bool bound;
	struct fleet_device *dev;
	char serial[IDENT_SERIAL_MAX + 1];
	char hardware_version[IDENT_HW_MAX + 1];
	char software_type[IDENT_SWTYPE_MAX + 1];
	char current_version[IDENT_VERSION_MAX + 1];
	uint8_t proto_version;
	uint16_t caps, max_payload, max_stall_ms;
	uint8_t window;
	bool fresh; /* the next check bypasses the cached answer (operator's CheckNow) */
	bool held;  /* aborted by the operator: offer nothing until reconnect or CheckNow */
	bool just_installed; /* this HELLO confirmed an install: "installed" outlasts the check */
	uint64_t installed_size; /* its image's size, for the progress "installed" shows */

	/* upstream */
	struct upstream_check *check;
	struct upstream_check *refresh;
	struct download_waiter *waiter;

	/* the image being offered */
	char sha256[STORE_SHA256_HEX + 1];
	uint8_t sha[PROTO_SHA256_LEN];
	uint32_t size;
	char target[IDENT_VERSION_MAX + 1];
	uint8_t offer_flags;
	bool pinned;
	int fd;
	int64_t history_id; /* 0: none */
	uint16_t payload;   /* the OFFER's max_payload */
	uint8_t *buf;       /* one DATA message */
	struct sender snd;
	bool snd_live;
	bool blocked;        /* the link said -EAGAIN; WRITABLE follows */
	uint32_t sent_high;  /* end of the highest DATA sent (or the first ACK's offset) */
	uint32_t phase_ms;   /* when OFFERED / the last message while VERIFYING */
	uint64_t started_ms; /* monotonic, first ACK: for the rate in the log */
	uint32_t start_offset;
	char done_sha[STORE_SHA256_HEX + 1]; /* the last RESULT answered with DONE */

	uint32_t last_solicit_ms;
	bool solicited;
	/* complaints budget */
	uint32_t complain_since_ms;
	unsigned complaints;
	uint64_t bad_frames;
};

struct sessions {
	struct event_base *base;
	struct store *store;
	struct db *db;
	struct fleet *fleet;
	struct upstream *up;
	struct download_manager *dm;
	struct sessions_config cfg;
	TAILQ_HEAD(, session) all;
	TAILQ_HEAD(, session) queue;
	unsigned n_sessions, active, reserved, queued;
	uint64_t cache_hits, cache_misses, bad_messages;
	bool stopping;
};

/* The sender's clock: u32 milliseconds that may wrap. */
static inline uint32_t
session_now_ms(void)
{
	return (uint32_t)clock_mono_ms();
}

/* done as a percentage of total (0 for an empty total). */
static inline unsigned
session_pct(uint64_t done, uint64_t total)
{
	return total == 0 ? 0 : (unsigned)(done * 100 / total);
}

/* --- session.c: one device's state machine --- */

/* Logs for the session: under the device's serial once bound, else naming the link. */
#define session_log(s, level, ...)                                        \
	do {                                                              \
		if ((s)->bound)                                           \
			log_printf((level), (s)->serial, 0, __VA_ARGS__); \
		else                                                      \
			session_log_link((s), (level), __VA_ARGS__);      \
	} while (0)

/* session_log() for a session with no device bound: "Link NAME (transport): message". */
void session_log_link(const struct session *s, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies a protocol string into dst[n], NUL-terminated, cut to fit. */
void session_strcpy(char *dst, size_t n, const struct msg_str *src);

/* Makes text fit a protocol string: printable ASCII, at most max bytes, in buf[max + 1]. */
struct msg_str session_text(char *buf, size_t max, const char *text);

/* Logs bad input from the device at warn, rate-limited (session.c says how). */
void session_complain(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Tells the owner that the device was told to come back in come_back_s (session_owner.done). */
void session_done(struct session *s, uint32_t come_back_s);

/* Sends one encoded message (len 0: an encoder refused, -EINVAL). Returns transport_send()'s
 * result; -ENOTCONN means DISCONNECTED follows. */
int session_send(struct session *s, const uint8_t *msg, size_t len);

/* Sends ERROR; a retry time (but for BUSY) also tells the owner (session_done()). */
void session_send_error(
    struct session *s, enum msg_error_code code, uint32_t retry_s, const char *text);

/* Sends SOLICIT and notes when. */
void session_send_solicit(struct session *s);

/* Arms the session's timer delay_ms from now. */
void session_arm(struct session *s, uint32_t delay_ms);

/* Milliseconds from now until deadline, both on session_now_ms() (0 if it passed). */
uint32_t session_until(uint32_t deadline, uint32_t now);

/* Re-arms the timer for what the state waits for (the pump arms the sender's wake time). */
void session_rearm(struct session *s);

/* Bytes of the image the device acknowledged (0 before the sender runs). */
uint32_t session_acked(const struct session *s);

/* True from OFFER to the end of the transfer (OFFERED, SENDING, VERIFYING). */
bool session_transferring(const struct session *s);

/* Ends the history row of the offer in progress, if there is one. */
void session_history_end(
    struct session *s, enum history_result result, uint64_t bytes, const char *reason);

/* Stops whatever the session does for its device: the check, the download, the queue, the
 * transfer (recorded with result and reason). keep_slot turns an active slot into a
 * reservation (the device restarted and comes right back). The fleet is the caller's. */
void session_stop(
    struct session *s, enum history_result result, const char *reason, bool keep_slot);

/* The progress a reason quotes, " at 45 %", or "" outside a transfer. */
void session_where(const struct session *s, char *buf, size_t n);

/* Ends the update now: ERROR code to the device (none if code is 0), the fleet shows state
 * with reason, the history row ends as FAILED. */
void session_fail(struct session *s, enum msg_error_code code, uint32_t retry_s,
    enum fleet_state state, const char *reason);

/* The operator's CheckNow for a bound session: 0, or -EBUSY / -ENOTCONN (session.h). */
int session_check_now(struct session *s);

/* The operator's Abort for a bound session: 0, or -EALREADY if it is idle (session.h). */
int session_abort(struct session *s, const char *reason);

/* --- session_transfer.c: the offer and the transfer of one image --- */

/* Ends the transfer: ERROR code to the device (none if 0), history and fleet FAILED. */
void session_transfer_fail(struct session *s, enum msg_error_code code, const char *reason);

/* The payload s->sha256 is in the cache: pin, verify once, open it, then OFFER with a slot, or
 * ERROR BUSY and the queue without one. Failures end the update (session_fail()). */
void session_transfer_ready(struct session *s);

/* Drops what serving the image holds: the blob's fd, the pin, the DATA buffer, the sender. */
void session_transfer_release(struct session *s);

/* Drives the sender while SENDING or VERIFYING: sends what it proposes until the link or the
 * sender says wait, and arms the timer for its wake time. */
void session_transfer_pump(struct session *s);

/* An ACK from the device: starts the sender on the first one after OFFER, feeds the rest to
 * it (a bad offset ends the transfer with ERROR BAD_OFFSET), or SOLICITs outside a transfer. */
void session_transfer_on_ack(struct session *s, const struct msg_ack *ack);

/* A RESULT from the device: records the image verified (then DONE) or the failure, or answers
 * a RESULT for another image (session_transfer.c says how). */
void session_transfer_on_result(struct session *s, const struct msg_result *r);

/* --- session_upstream.c: the check and the download for a session --- */

/* Asks Memfault for the bound device (bypassing the cached answer after CheckNow) and goes to
 * CHECKING; the answer leads to NO_UPDATE, ERROR or the download. Failures end the update. */
void session_upstream_check(struct session *s);

/* Leaves the check, the URL refresh and the download the session waits for, and a pending
 * restart of the check. */
void session_upstream_stop(struct session *s);

/* The upstream client is being replaced: leaves the check and download on the old one and, if
 * the session waited for either, asks again on the new one from the loop. */
void session_upstream_switch(struct session *s);

/* The event behind s->kick: runs session_upstream_check() from the loop after a switch. */
void session_upstream_kick_cb(evutil_socket_t fd, short what, void *arg);

/* --- sessions.c: the manager --- */

/* Adds a new session to the manager's list / takes it off (session_new(), session_free()). */
void sessions_attach(struct sessions *m, struct session *s);
void sessions_detach(struct sessions *m, struct session *s);

/* The session bound to serial, or NULL. */
struct session *sessions_find_bound(struct sessions *m, const char *serial);

/* Puts s at the back of the queue for a slot / takes it out (no-ops if already so). */
void sessions_enqueue(struct sessions *m, struct session *s);
void sessions_dequeue(struct sessions *m, struct session *s);

/* Gives s an active slot if it holds a reservation or one is free (and takes it out of the
 * queue). False: all slots are in use. */
bool sessions_take_slot(struct sessions *m, struct session *s);

/* Turns s's active slot into a reservation, held as one granted to a queued device (the
 * device restarted and comes right back). Does nothing if s holds no active slot. */
void sessions_hold_slot(struct sessions *m, struct session *s);

/* Gives up s's slot or reservation and hands free slots to queued devices. */
void sessions_release_slot(struct sessions *m, struct session *s);

#endif
