/* A private dbus-daemon for tests: started by the test, on a unix socket in $TMPDIR, killed at
 * the end (and with the test process if it dies first). */
#ifndef OTAGW_TESTBUS_H
#define OTAGW_TESTBUS_H

#include <stdbool.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

struct testbus {
	pid_t pid;
	char address[512];
};

/* Starts `dbus-daemon --session` and reads its address. Returns 0 or a negative errno. */
int testbus_start(struct testbus *tb);

/* Kills the daemon (SIGKILL: the "bus died" case) and reaps it. Safe to call twice. */
void testbus_kill(struct testbus *tb);

/* A started client connection to the private bus (sd_bus_start() done; Hello in flight). */
int testbus_connect(const struct testbus *tb, sd_bus **out);

#endif
