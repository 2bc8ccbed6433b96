/* Helpers of the D-Bus tests: a private dbus-daemon started by the test at a fixed socket in the
 * test's directory (session-style with everything allowed, or configured like the system bus
 * with the real io.otagw.conf), which can be killed and started again at the same address;
 * running the real clients (busctl, otagwctl) with their output captured, optionally as another
 * user through tests/systemd/run-as.sh; and an sd-bus connection of the test's own for precise
 * calls and for counting signals. */
#ifndef OTAGW_TESTS_DBUSTEST_H
#define OTAGW_TESTS_DBUSTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <systemd/sd-bus.h>

#include "world.h"

#define DBT_NAME "io.otagw"
#define DBT_PATH "/io/otagw"
#define DBT_MGR  "io.otagw.Manager1"
#define DBT_DEV  "io.otagw.Device1"
#define DBT_LINK "io.otagw.Link1"

struct dbt_bus {
	struct tproc proc;
	char *dir;         /* where its socket and configuration live */
	char address[600]; /* unix:path=DIR/bus */
	bool system;       /* configured like the system bus, with the real policy */
	bool root_may_own; /* system: plus a rule that lets root own io.otagw */
	unsigned runs;
};

/* Writes the configuration and starts the bus in dir. system: deny by default and include
 * systemd/io.otagw.conf ($OTAGW_POLICY) plus a rule that lets root own io.otagw (otagwd runs as
 * root in the tests); else a session bus on which anyone may connect and do anything. Sets
 * DBUS_SESSION_BUS_ADDRESS or DBUS_SYSTEM_BUS_ADDRESS for the test and its children. */
void dbt_bus_start(struct dbt_bus *b, const char *dir, bool system);

/* dbt_bus_start() of a system-style bus, without the rule that lets root own io.otagw when
 * root_may_own is false (io.otagw.conf alone: only user otagw may). */
void dbt_bus_start_system(struct dbt_bus *b, const char *dir, bool root_may_own);

/* Kills the bus (SIGKILL: it "goes away") and reaps it. */
void dbt_bus_kill(struct dbt_bus *b);

/* Starts it again at the same address. */
void dbt_bus_restart(struct dbt_bus *b);

void dbt_bus_free(struct dbt_bus *b);

/* The output of a command run by dbt_run(). */
struct dbt_out {
	int status; /* exit status, or -1 if killed by a signal or the timeout */
	char *out;  /* stdout, NUL-terminated */
	char *err;  /* stderr */
};

/* Runs argv (argv[0] found in PATH or a path) to completion (at most E2E_TIMEOUT_MS), as user
 * (NULL: as the test) through run-as.sh. */
void dbt_run(struct dbt_out *o, const char *user, const char *const *argv);
void dbt_out_free(struct dbt_out *o);

/* Runs otagwctl with args (NULL-terminated) and --user or --system as the bus is. */
void dbt_ctl(struct dbt_out *o, const struct dbt_bus *b, const char *user, const char *const *args);

/* Runs busctl --address=... with args. */
void dbt_busctl(
    struct dbt_out *o, const struct dbt_bus *b, const char *user, const char *const *args);

/* Parses text as JSON and fails the test if it is not. */
json_t *dbt_json(const char *text);

/* A connection of the test's own to the bus. */
sd_bus *dbt_connect(const struct dbt_bus *b);

/* Calls a Manager1 method; returns the reply (unref it) or NULL with *err set (free it). */
sd_bus_message *dbt_call(sd_bus *bus, sd_bus_error *err, const char *member, const char *sig, ...);

/* Reads a string / uint64 property, failing the test if it cannot. */
char *dbt_get_str(sd_bus *bus, const char *path, const char *iface, const char *prop);
uint64_t dbt_get_u64(sd_bus *bus, const char *path, const char *iface, const char *prop);

/* Waits until the bus connection of process pid has a match rule containing rule (from the
 * bus's Debug.Stats interface): a client that subscribes and then reads the objects, as
 * otagwctl watch does, is ready for signals once its last rule is in place. False on
 * timeout. */
bool dbt_wait_subscribed(sd_bus *bus, pid_t pid, const char *rule, unsigned timeout_ms);

/* Waits until io.otagw has an owner (true) or none (false); false on timeout. */
bool dbt_wait_name(sd_bus *bus, bool owned, unsigned timeout_ms);

/* Waits until a string property has value want (polling; fails the test with the world's logs
 * on timeout). */
void dbt_wait_str(struct world *w, sd_bus *bus, const char *path, const char *iface,
    const char *prop, const char *want);

/* The object path of a device serial, as otagwd makes it (sd_bus_path_encode). */
char *dbt_device_path(const char *serial);

/* Whether the test runs as root (run-as.sh and the system-bus tests need it). */
bool dbt_root(void);

#endif
