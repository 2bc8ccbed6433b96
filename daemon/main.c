/* otagwd: the command line. Parses the options, checks the configuration (--check-config),
 * or loads it and runs the daemon on one libevent loop until SIGTERM/SIGINT. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "config.h"
#include "daemon.h"
#include "log.h"

#define EXIT_USAGE  2
#define EXIT_CONFIG 78 /* sysexits.h EX_CONFIG, as systemd.exec(5) lists it */

static void
usage(FILE *f)
{
	fprintf(f,
	    "Usage: otagwd [-c PATH] [--check-config] [-v]... [--version] [--help]\n"
	    "\n"
	    "Updates MCUs attached by UART, TCP or BLE from Memfault.\n"
	    "\n"
	    "  -c, --config PATH   configuration file (default " CONFIG_DEFAULT_PATH ")\n"
	    "      --check-config  check the configuration, print \"configuration OK\" and exit\n"
	    "                      0, or print every error (file:line: message) and exit 1\n"
	    "  -v, --verbose       log debug messages, whatever log_level says\n"
	    "      --version       print the version and exit\n"
	    "  -h, --help          print this help and exit\n"
	    "\n"
	    "Signals: SIGHUP reloads the configuration (a file with errors is refused and the\n"
	    "running configuration kept), SIGTERM and SIGINT stop.\n");
}

static void
print_error(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "%s\n", msg);
}

static void
log_error(void *arg, const char *msg)
{
	(void)arg;
	log_err("%s", msg);
}

static int
run(const char *path, bool verbose)
{
	struct event_base *base = NULL;
	struct daemon *d = NULL;
	struct config *cfg = NULL;
	struct sigaction sa;
	int r, code = EXIT_FAILURE;

	log_open("otagwd", verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO, false);
	/* A peer closing a socket must give EPIPE to the writer, not kill the daemon. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	r = config_load(path, log_error, NULL, &cfg);
	if (r < 0) {
		log_err("Failed to load the configuration %s, exiting", path);
		/* EX_CONFIG: the unit's RestartPreventExitStatus= stops a restart loop that cannot
		 * succeed until someone edits the file. */
		return EXIT_CONFIG;
	}
	base = event_base_new();
	if (base == NULL) {
		log_err("Failed to create the event loop, exiting");
		goto out;
	}
	if (daemon_new(base, path, cfg, verbose, &d) < 0) {
		log_err("Out of memory, exiting");
		goto out;
	}
	cfg = NULL; /* the daemon owns it */
	if (daemon_start(d) < 0)
		goto out;
	if (event_base_dispatch(base) < 0) {
		log_err("The event loop failed, exiting");
		goto out;
	}
	code = daemon_exit_code(d);
	log_info("Stopped");
out:
	daemon_free(d);
	config_free(cfg);
	if (base != NULL)
		event_base_free(base);
	return code;
}

int
main(int argc, char **argv)
{
	enum { OPT_CHECK_CONFIG = 256, OPT_VERSION };
	static const struct option options[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
	    {"verbose", no_argument, NULL, 'v'},
	    {"version", no_argument, NULL, OPT_VERSION},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *path = CONFIG_DEFAULT_PATH;
	bool check = false, verbose = false;
	struct config *cfg = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "c:vh", options, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case OPT_CHECK_CONFIG:
			check = true;
			break;
		case 'v':
			/* Repeats are accepted; debug is the most there is. */
			verbose = true;
			break;
		case OPT_VERSION:
			printf("otagwd %s\n", OTAGW_VERSION);
			return EXIT_SUCCESS;
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		default:
			fprintf(stderr, "Try 'otagwd --help'.\n");
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "otagwd: unexpected argument '%s'\nTry 'otagwd --help'.\n",
		    argv[optind]);
		return EXIT_USAGE;
	}
	if (path[0] == '\0') {
		fprintf(stderr, "otagwd: -c needs a file name\n");
		return EXIT_USAGE;
	}

	if (check) {
		if (config_load(path, print_error, NULL, &cfg) < 0)
			return EXIT_FAILURE;
		config_free(cfg);
		printf("configuration OK\n");
		return EXIT_SUCCESS;
	}
	return run(path, verbose);
}
