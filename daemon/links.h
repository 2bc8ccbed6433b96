/* The links of otagw.conf as running transports: one UART transport per [uart] section, a
 * listener (each accepted connection one device) or a connect-out per [tcp] and [unix] section,
 * and with [ble] enabled a BLE central (each connected device one session, let go when it is
 * done so others get their turn), each with its device session(s). A reload adds new links, removes
 * dropped ones and re-opens those whose settings changed, leaving the others (and their transfers)
 * alone. A link that cannot be opened at start stops otagwd; after a reload it is retried with a
 * backoff. */
#ifndef OTAGW_LINKS_H
#define OTAGW_LINKS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct daemon_module;
struct event_base;
struct links;
struct sessions;

/* One link as D-Bus Link1 shows it. Strings live until the next change of the link. */
struct link_info {
	const char *name;           /* the section name; "ble" for [ble] */
	enum config_link_kind kind; /* [uart], [tcp], [unix]; not meaningful for "ble" */
	const char *kind_name;      /* "uart", "tcp", "unix" or "ble" (D-Bus Link1.Kind) */
	const char *address;        /* "/dev/ttyUSB0", "listen 0.0.0.0:7000", "connect /run/x.sock",
				     * "hci0" */
	bool up;                    /* open / listening / connected / adapter powered */
	const char *last_error;     /* why it is down, "" when up */
	unsigned connections;       /* devices connected over it now */
};

/* Called after a link changed (added, removed with removed true, up/down, connections). */
typedef void (*links_change_fn)(const struct link_info *info, bool removed, void *arg);

/* Opens every link of cfg, with sessions from m. Returns 0 and *out, or the first link's
 * negative errno after logging which link failed and why (nothing stays open then). */
int links_new(
    struct event_base *base, struct sessions *m, const struct config *cfg, struct links **out);

/* Applies cfg's links (see above). Returns 0, or the first error of a link that could not be
 * opened (it stays configured, down, and is retried). */
int links_reload(struct links *ls, const struct config *cfg);

/* Closes every link; their sessions record an update in progress as interrupted by reason.
 * Accepts NULL. */
void links_free(struct links *ls, const char *reason);

/* Calls cb for every link in configuration order, then "ble"; stops at and returns its first
 * non-zero value. */
int links_foreach(struct links *ls, int (*cb)(const struct link_info *info, void *arg), void *arg);

/* Registers cb for every change of every link. Returns an id > 0 for links_unsubscribe(), or
 * -ENOMEM. */
int links_subscribe(struct links *ls, links_change_fn cb, void *arg);
void links_unsubscribe(struct links *ls, int id);

/* The daemon module that runs the links (daemon.c's table). */
extern const struct daemon_module links_module;

#endif
