/* otagwctl's shared pieces: the exit codes of otagwctl(1), the connection to otagwd's D-Bus API
 * (client.c), text formatting (fmt.c), the commands (cmd.c) and watch (watch.c). Properties
 * travel as jansson objects keyed by their D-Bus names, the form --json prints. */
#ifndef OTAGWCTL_CTL_H
#define OTAGWCTL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <systemd/sd-bus.h>

/* Exit codes (otagwctl(1), EXIT STATUS). */
enum ctl_exit {
	CTL_EXIT_OK = 0,
	CTL_EXIT_FAILURE = 1,
	CTL_EXIT_USAGE = 2,
	CTL_EXIT_NOT_RUNNING = 3,
	CTL_EXIT_DENIED = 4,
	CTL_EXIT_NO_DEVICE = 5,
};

#define CTL_NAME        "io.otagw"
#define CTL_PATH        "/io/otagw"
#define CTL_IFACE_MGR   "io.otagw.Manager1"
#define CTL_IFACE_DEV   "io.otagw.Device1"
#define CTL_IFACE_LINK  "io.otagw.Link1"
#define CTL_HISTORY_MAX 1000u

struct client {
	sd_bus *bus;
	bool user;          /* the session bus, else the system bus */
	bool json;          /* --json */
	const char *action; /* what the command does, for "access denied" ("abort updates") */
};

/* --- client.c --- */

/* Connects to the bus. Returns CTL_EXIT_OK, or prints why not and returns
 * CTL_EXIT_NOT_RUNNING. */
int client_connect(struct client *c);

/* Disconnects. */
void client_close(struct client *c);

/* "system bus" or "session bus". */
const char *client_bus_text(const struct client *c);

/* Prints what a failed call means and returns its exit code: the daemon absent (3), access
 * denied (4), no such device (5, naming serial), anything else (1). */
int client_error(const struct client *c, int r, const sd_bus_error *e, const char *serial);

/* Properties.GetAll of iface on path: *out is a new object. Returns 0 or an exit code (the
 * error printed). */
int client_get_all(
    struct client *c, const char *path, const char *iface, const char *serial, json_t **out);

/* GetManagedObjects: *devices (sorted by Serial) and *links (sorted by Name), each an array
 * of property objects with "Path" added. Either may be NULL. Returns 0 or an exit code. */
int client_objects(struct client *c, json_t **devices, json_t **links);

/* Manager1.GetDevice(serial): the device's path (malloc'd) or an exit code. */
int client_device_path(struct client *c, const char *serial, char **path);

/* Reads the a{sv} at m's position into obj (keys replaced). */
int client_read_props(sd_bus_message *m, json_t *obj);

/* Reads one value of any type at m's position as JSON (integers, reals, strings, booleans,
 * arrays, objects for dictionaries with string keys). */
int client_read_value(sd_bus_message *m, json_t **out);

/* --- fmt.c --- */

/* "512 B", "10.2 KiB", "12.0 MiB", "512 MiB". */
void fmt_bytes(char *buf, size_t len, uint64_t n);

/* "0:02:10" */
void fmt_duration(char *buf, size_t len, uint64_t seconds);

/* Local time of a µs-since-epoch value: "2026-11-25 02:03" (minutes), or "never" for 0. */
void fmt_time_minutes(char *buf, size_t len, uint64_t usec);

/* Local time now or of usec (0: now) in ISO 8601 with the offset: "2026-11-25T02:03:04+01:00". */
void fmt_time_iso(char *buf, size_t len, uint64_t usec);

/* Local time now: "02:05:11". */
void fmt_time_clock(char *buf, size_t len);

/* Property accessors that accept a missing key ("" / 0 / false). */
const char *fmt_str(const json_t *obj, const char *key);
uint64_t fmt_u64(const json_t *obj, const char *key);
double fmt_real(const json_t *obj, const char *key);
bool fmt_bool(const json_t *obj, const char *key);

/* The percentage of BytesDone of BytesTotal (0..100), or -1 if BytesTotal is 0. */
int fmt_percent(const json_t *dev);

/* Prints j as one line of JSON on stdout. Returns 0 or CTL_EXIT_FAILURE. */
int fmt_print_json(json_t *j);

/* s cut to max bytes, ending in "..." when cut. */
void fmt_cut(char *buf, size_t len, const char *s, size_t max);

/* A table of text: columns padded to their widest cell, two spaces apart; the last column is
 * not padded. */
#define FMT_TABLE_MAX_COLS 12
struct fmt_table {
	size_t ncols;
	char ***rows;
	size_t n, max;
};

/* Adds a row of ncols cells (copied). Returns 0 or -1 (out of memory). */
int fmt_table_add(struct fmt_table *t, const char *const *cells);
void fmt_table_print(struct fmt_table *t, FILE *f);
void fmt_table_free(struct fmt_table *t);

/* --- cmd.c --- */

int cmd_status(struct client *c);
int cmd_devices(struct client *c);
int cmd_show(struct client *c, const char *serial);
int cmd_check(struct client *c, const char *serial);
int cmd_check_all(struct client *c);
int cmd_abort(struct client *c, const char *serial);
int cmd_cache(struct client *c, bool purge);
int cmd_history(struct client *c, const char *serial, unsigned n);

/* --- watch.c --- */

/* Follows transfers until SIGINT/SIGTERM, or (until_idle) until no device is downloading,
 * queued, transferring or verifying. */
int watch_run(struct client *c, bool until_idle);

#endif
