/* The world an end-to-end test runs in: a temporary directory, a release (a generated firmware
 * image), the Memfault stand-in program serving it, a generated otagw.conf and the real otagwd,
 * and device simulators, each with its output in a log file in the directory. Each wait has a
 * generous deadline; when one passes, the logs of every process are printed before the test
 * fails. However a test ends, its processes and its directory go with it (tproc.h, tdir.h). */
#ifndef OTAGW_TESTS_WORLD_H
#define OTAGW_TESTS_WORLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ck.h"
#include "tclock.h"
#include "tdata.h"
#include "tdir.h"
#include "tfile.h"
#include "tnet.h"
#include "tproc.h"

/* Generous deadlines: the box is a loaded 2-core machine, the sanitizer build is slow. */
#define E2E_TIMEOUT_MS 90000

#define WORLD_KEY     "0123456789abcdef0123456789abcdef"
#define WORLD_HW      "devsim" /* otagw-devsim's defaults */
#define WORLD_SWTYPE  "main"
#define WORLD_VERSION "2.0.0" /* the release; devices start on 1.0.0 */

/* The usual link: a unix socket in the world's directory (w->sock). */
#define WORLD_UNIX_LINK "[unix \"sim\"]\nlisten = @DIR@/sim.sock\n"

struct world {
	char *dir;
	char *sock; /* DIR/sim.sock, where WORLD_UNIX_LINK listens */
	char *fw;   /* the release's image */
	size_t size;
	char sha[65];
	struct tproc mock;
	char base_url[128];
	char ca_file[512];
	struct tproc gwd;
	char *conf;
	char *gw_log;
	size_t gw_at; /* how far world_gw_wait() has read the daemon's log */
	unsigned gw_runs;
};

/* A fresh world with a release of size bytes (not started). */
void world_init(struct world *w, const char *tag, size_t size);

/* Starts the stand-in serving the release to every devsim device; scenario (JSON text, may be
 * NULL) adds canned responses (its payload paths are relative to the world's directory, where
 * the image is "fw.bin"). */
void world_mock(struct world *w, const char *scenario);

/* Writes otagw.conf: [general] with general (extra lines, may be ""), [memfault] pointing at
 * the stand-in (or at base_url if not NULL), then links (sections, verbatim; "@DIR@" becomes
 * the world's directory). */
void world_config(struct world *w, const char *general, const char *links, const char *base_url);

/* world_mock(w, scenario), world_config(w, general, links, NULL) and world_gw_start(): the
 * world serving its release over links. */
void world_serve(struct world *w, const char *scenario, const char *general, const char *links);

/* Starts otagwd (-v) and waits for "ready". */
void world_gw_start(struct world *w);

/* Waits for needle in the daemon's log after what the last wait found. */
void world_gw_wait(struct world *w, const char *needle);

/* Stops otagwd with SIGTERM and returns its exit status. */
int world_gw_stop(struct world *w);

/* Starts otagw-devsim with its state in DIR/name, its events in DIR/name.events and its output
 * in DIR/name.log, plus args (NULL-terminated). */
void world_devsim(struct world *w, struct tproc *p, const char *name, const char *const *args);

/* Waits for a devsim to exit and fails the test (with the logs) unless it exits with want. */
void world_devsim_exit(struct world *w, struct tproc *p, int want);

/* Runs otagw-devsim name as device serial on the unix link (w->sock) with --once and extra
 * arguments (NULL-terminated, may be NULL) to its end; fails the test unless it exits 0. */
void world_device_once(
    struct world *w, const char *name, const char *serial, const char *const *extra);

/* True if device serial of devsim name has installed the release (its installed.bin is the
 * release, byte for byte). */
bool world_installed(struct world *w, const char *name, const char *serial);

/* Prints every log of the world on stderr and fails the test with msg. */
void world_fail(struct world *w, const char *msg) __attribute__((noreturn));

/* Stops everything and removes the directory. */
void world_free(struct world *w);

/* Reads the history of serial from the daemon's database (the daemon must be stopped):
 * results and bytes of up to max rows, newest first. Returns the number of rows. */
size_t world_history(struct world *w, const char *serial, int *results, uint64_t *bytes,
    char reasons[][256], size_t max);

#endif
