/* Device sessions: one protocol state machine per link (a UART, an accepted TCP/unix connection,
 * a connect-out), bound to a device once its HELLO is valid, that takes the device through its
 * whole update (docs/PROTOCOL.md, section 7.2): identity, install confirmation, the upstream
 * check, the download into the cache, a transfer slot, OFFER, the transfer driven by
 * proto/sender.h with pread() from the cached blob, RESULT and DONE, with the history recorded
 * all the way. The manager (struct sessions) holds what sessions share: the store, the upstream
 * client and download manager, the fleet registry, the transfer slots and their queue.
 *
 * Memory per session is bounded: its state (with the sender, about 3.5 KiB), one DATA message
 * of the negotiated payload, and what its link queues (links.c sizes the link's output queue to
 * a quarter of session_memory). The payload offered is at most a quarter of what session_memory
 * leaves after the state. */
#ifndef OTAGW_SESSION_H
#define OTAGW_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct daemon_module;
struct download_manager;
struct event_base;
struct fleet;
struct session;
struct sessions;
struct store;
struct transport;
struct upstream;

struct sessions_config {
	uint32_t max_transfers;  /* transfers at once, >= 1; more devices get ERROR BUSY */
	uint32_t session_memory; /* bytes one session may hold (see above) */
	uint32_t answer_cache_s; /* how long an upstream answer is reused: the NO_UPDATE recheck */
};

/* Creates the manager. store and fleet must outlive it. Returns 0, -EINVAL or -ENOMEM. */
int sessions_new(struct event_base *base, struct store *store, struct fleet *fleet,
    const struct sessions_config *cfg, struct sessions **out);

/* The daemon is stopping: slots freed from now on are not handed to queued devices (they
 * are about to be disconnected too). */
void sessions_stop(struct sessions *m);

/* Frees the manager; every session must be freed first. Accepts NULL. */
void sessions_free(struct sessions *m);

/* Applies new limits (reload). A higher max_transfers lets queued devices in at once. */
void sessions_set_config(struct sessions *m, const struct sessions_config *cfg);

/* Sets the upstream checker and download manager sessions use (both or neither). When they
 * replace others (a reload changed [memfault]), every check and download a session waits for
 * is cancelled on the old ones, which the caller frees afterwards, and started again on the
 * new ones from the loop. Transfers in progress are not disturbed. */
void sessions_set_upstream(struct sessions *m, struct upstream *up, struct download_manager *dm);

/* What the owner of a session (links.c) hears about its link. */
struct session_owner {
	/* The link came up (up true) or went down (err: 0 orderly, else a negative errno). */
	void (*link_state)(struct session *s, bool up, int err, void *arg);
	/* An accepted connection ended: free the session now (session_free() from here is fine;
	 * the session does nothing after this returns). NULL for links that come back. */
	void (*closed)(struct session *s, void *arg);
	/* The device was told to come back later: NO_UPDATE (come_back_s is its recheck time), an
	 * ERROR with a retry time (but BUSY: the device waits in the queue), or DONE after a failed
	 * or refused update (come_back_s 0: not said). Links whose devices take turns (BLE) let
	 * the device go once the session is idle. Must not free s. NULL: not told. */
	void (*done)(struct session *s, uint32_t come_back_s, void *arg);
	void *arg;
};

/* Where a session's link comes from. Strings are copied. */
struct session_link {
	const char *name;    /* the link's config section name, for the database and D-Bus */
	const char *address; /* where on the link, for D-Bus: "/dev/ttyUSB0", "127.0.0.1:40112" */
	bool solicit; /* the gateway opened the link (UART, connect-out): SOLICIT on connect */
};

/* Creates a session on t, which it takes over (its callback, and freeing it). The owner's
 * callbacks run from the session's transport events. Returns 0, or -ENOMEM (t is then still
 * the caller's). */
int session_new(struct sessions *m, struct transport *t, const struct session_link *link,
    const struct session_owner *owner, struct session **out);

/* Ends the session: an update in progress is recorded as aborted with reason (e.g. "otagwd
 * stopped", "link removed"), its cache pin released, its check and download left (a download
 * other devices wait for goes on; one nobody waits for stops and keeps its partial file for a
 * resume), and the transport freed. Accepts NULL. */
void session_free(struct session *s, const char *reason);

/* True while the session does nothing for its device: no check, download, queue place or
 * transfer under way. */
bool session_idle(const struct session *s);

/* The session's transport and whether a device is bound to it (and its serial, or NULL). */
struct transport *session_transport(const struct session *s);
const char *session_serial(const struct session *s);

/* Counters for STATUS= and D-Bus. */
struct sessions_stats {
	unsigned sessions;
	unsigned active;   /* transfer slots in use */
	unsigned reserved; /* slots held for a queued device that was asked to say HELLO */
	unsigned queued;   /* devices waiting for a slot */
	uint64_t cache_hits, cache_misses;
	uint64_t bad_messages; /* malformed messages answered with ERROR */
	/* Transfers under way (offered, sending, verifying); the progress of the first
	 * SESSIONS_STATS_PCT of them in percent, and the byte sums over all. */
	unsigned transfers;
	unsigned n_pct;
	unsigned pct[3];
	uint64_t bytes_done, bytes_total;
};
#define SESSIONS_STATS_PCT 3

void sessions_get_stats(const struct sessions *m, struct sessions_stats *out);

/* Operator hooks (the D-Bus service). Each returns 0 or a negative errno that says why not:
 * -ENOENT the fleet does not know serial; -ENOTCONN it is not connected; -EBUSY (check_now) it
 * is busy with an update (queued, downloading, transferring, verifying); -EALREADY (abort)
 * there is nothing to abort. */

/* Forgets the device's cached answer and asks it to say HELLO (SOLICIT), so Memfault is asked
 * afresh. A device already being checked is left alone (0). */
int sessions_check_now(struct sessions *m, const char *serial);

/* sessions_check_now() for every connected device that is not busy; returns how many. */
unsigned sessions_check_all(struct sessions *m);

/* Stops what the device is doing (check, queue, download, transfer): ERROR ABORTED to the
 * device, history aborted with reason (e.g. "Aborted by uid 0 (root)"). otagwd offers it
 * nothing again until it reconnects or sessions_check_now(). */
int sessions_abort(struct sessions *m, const char *serial, const char *reason);

/* The daemon module that runs the fleet and the session manager (daemon.c's table). */
extern const struct daemon_module sessions_module;

#endif
