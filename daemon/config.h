/* otagwd's configuration: the INI file (/etc/otagw/otagw.conf) parsed with inih into a fresh
 * struct config, every value validated with a "file:line: message" error. A config is never
 * modified after config_load() returns it; a reload loads a new one and swaps it in whole. */
#ifndef OTAGW_CONFIG_H
#define OTAGW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "log.h"

#define CONFIG_DEFAULT_PATH    "/etc/otagw/otagw.conf"
#define CONFIG_PROJECT_KEY_LEN 32  /* hex digits */
#define CONFIG_LINK_NAME_MAX   32  /* [uart "NAME"]: letters, digits, '-', '_', '.' */
#define CONFIG_LINKS_MAX       128 /* uart + tcp + unix sections */
#define CONFIG_BLE_ALLOW_MAX   64  /* addresses in [ble] allow */
#define CONFIG_ADDR_LEN        17  /* "AA:BB:CC:DD:EE:FF" */

enum config_link_kind {
	CONFIG_LINK_UART,
	CONFIG_LINK_TCP,
	CONFIG_LINK_UNIX,
};

enum config_flow_control {
	CONFIG_FLOW_CONTROL_NONE,
	CONFIG_FLOW_CONTROL_RTSCTS,
};

enum config_ble_transport {
	CONFIG_BLE_TRANSPORT_AUTO, /* L2CAP when the device offers a PSM, else GATT */
	CONFIG_BLE_TRANSPORT_GATT,
	CONFIG_BLE_TRANSPORT_L2CAP,
};

enum config_bus {
	CONFIG_BUS_SYSTEM,
	CONFIG_BUS_SESSION,
	CONFIG_BUS_NONE,
};

/* [general] */
struct config_general {
	char *state_dir;         /* absolute; the database otagw.db lives here */
	char *cache_dir;         /* absolute; downloaded payloads */
	uint64_t cache_max;      /* bytes */
	uint32_t max_transfers;  /* concurrent transfers to devices */
	uint32_t session_memory; /* bytes one device session may hold */
	enum log_level log_level;
};

/* [memfault] */
struct config_memfault {
	/* 32 hex digits, NUL-terminated. Secret: never log it, never put it in an error. */
	char project_key[CONFIG_PROJECT_KEY_LEN + 1];
	/* Where the key came from, for messages: the config file, the key file, or the
	 * credential's path. */
	char *project_key_source;
	char *base_url;           /* normalised by libcurl, no trailing '/' */
	bool allow_insecure_http; /* base_url may be http:// (tests only) */
	char *ca_file;            /* NULL: the system CA store */
	char *proxy;              /* NULL: libcurl's usual environment variables */
	uint32_t request_timeout_s;
	uint32_t answer_cache_s; /* how long a device's upstream answer is reused */
	uint32_t url_validity_s; /* how long a signed download URL is trusted */
};

/* One [uart "NAME"], [tcp "NAME"] or [unix "NAME"] section. */
struct config_link {
	enum config_link_kind kind;
	char name[CONFIG_LINK_NAME_MAX + 1];
	uint32_t max_frame; /* largest message accepted on the link, 64..FRAME_MSG_MAX */
	union {
		struct {
			char *device; /* absolute path, e.g. /dev/serial/by-id/... */
			uint32_t baud;
			enum config_flow_control flow_control;
		} uart;
		struct {
			bool listen; /* else connect out */
			char *host;  /* IPv4/IPv6 literal (no brackets) or host name */
			uint16_t port;
			uint32_t max_connections; /* listen only */
		} tcp;
		struct {
			bool listen;              /* else connect out */
			char *path;               /* absolute, fits sockaddr_un */
			mode_t mode;              /* of the listening socket */
			uint32_t max_connections; /* listen only */
		} unix_sock; /* not "unix": gnu11 predefines that name as a macro */
	};
	TAILQ_ENTRY(config_link) entry;
};

TAILQ_HEAD(config_links, config_link);

/* [ble] (parsed and validated; the BLE link comes later) */
struct config_ble {
	bool enabled;
	char adapter[16]; /* "hci0" */
	enum config_ble_transport transport;
	/* Upper-case BD addresses; n_allow == 0: any device. If both allow and name_prefix are
	 * set, a device must match both. */
	char allow[CONFIG_BLE_ALLOW_MAX][CONFIG_ADDR_LEN + 1];
	size_t n_allow;
	char *name_prefix; /* NULL: any name */
	uint32_t max_connections;
	uint32_t scan_interval_s;
	uint16_t l2cap_psm; /* 0: read it from the device's PSM characteristic */
};

/* [dbus] */
struct config_dbus {
	enum config_bus bus;
	char *control_group; /* members may call the methods that change anything */
};

struct config {
	char *path; /* the file this was loaded from */
	struct config_general general;
	struct config_memfault memfault;
	struct config_links links; /* in file order */
	size_t n_links;
	struct config_ble ble;
	struct config_dbus dbus;
};

/* Receives one error message ("file:line: text" or "file: text", no newline). */
typedef void (*config_report_fn)(void *arg, const char *msg);

/* Parses and validates the file at path into a new config (*out, owned by the caller, free
 * with config_free()). Every problem found is passed to report (may be NULL), so the operator
 * sees them all at once; the key is never part of a message. Reads the project key from the
 * file, project_key_file, or $CREDENTIALS_DIRECTORY/project-key. Returns 0; -EINVAL if the
 * file has errors; -ENOMEM; or the negative errno of opening the file (also reported). *out is
 * untouched on failure. */
int config_load(const char *path, config_report_fn report, void *arg, struct config **out);

/* Frees cfg and wipes the project key from memory. Accepts NULL. */
void config_free(struct config *cfg);

/* The link named name, or NULL. */
const struct config_link *config_find_link(const struct config *cfg, const char *name);

/* "uart", "tcp" or "unix". */
const char *config_link_kind_name(enum config_link_kind kind);

/* Parses a duration: a whole number of seconds, or a number followed by s, m, h or d ("30s",
 * "5m", "1h", "1d"). Returns 0 and sets *out (seconds), -EINVAL if s is not a duration, or
 * -ERANGE if it does not fit in 64 bits. */
int config_parse_duration(const char *s, uint64_t *out);

/* Parses a size: a whole number of bytes, or a number followed by K, M, G or T (powers of
 * 1024, either case: "512K", "64M", "1G"). Returns 0 and sets *out (bytes), -EINVAL if s is
 * not a size, or -ERANGE if it does not fit in 64 bits. */
int config_parse_size(const char *s, uint64_t *out);

#endif
