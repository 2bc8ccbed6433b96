/* otagwctl: the command-line client of otagwd's D-Bus API. Parses the command line as
 * otagwctl(1) specifies it (options before or after the command, the last of --system and
 * --user counts, a malformed serial or N is a usage error found without asking otagwd) and runs
 * the command. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ident.h"

#define HISTORY_DEFAULT 20u

static void
usage(FILE *f)
{
	fprintf(f,
	    "Usage: otagwctl [--json] [--system | --user] [COMMAND [ARGUMENTS]]\n"
	    "\n"
	    "Asks otagwd, the gateway that updates MCUs from Memfault, what it is doing, and\n"
	    "tells it what to do (over D-Bus, the name io.otagw).\n"
	    "\n"
	    "Commands:\n"
	    "  status                  the gateway, its transfers, cache and links (default)\n"
	    "  devices                 every device otagwd knows\n"
	    "  show SERIAL             everything about one device\n"
	    "  check SERIAL            ask Memfault now and wait for the outcome\n"
	    "  check --all             start a check for every connected, idle device\n"
	    "  abort SERIAL            stop the device's check or update\n"
	    "  cache                   the payload cache\n"
	    "  cache purge             delete every cached payload not in use\n"
	    "  history [SERIAL] [-n N] the last N update attempts (default 20, at most 1000)\n"
	    "  watch [--until-idle]    follow downloads and transfers live\n"
	    "\n"
	    "Options:\n"
	    "  --json                  print JSON (watch: one document per line)\n"
	    "  --system                talk to otagwd on the system bus (default)\n"
	    "  --user                  talk to otagwd on the session bus\n"
	    "  -h, --help              show this help\n"
	    "      --version           show the version\n"
	    "\n"
	    "check, abort and cache purge need root or membership of [dbus] control_group.\n"
	    "Exit status: 0 ok, 1 failure, 2 usage, 3 otagwd not running, 4 access denied,\n"
	    "5 no such device. See otagwctl(1).\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "otagwctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'otagwctl --help'.\n");
	return CTL_EXIT_USAGE;
}

/* A serial argument, checked before anything is asked. */
static int
check_serial(const char *s)
{
	char q[300];
	size_t i, o = 0;

	if (ident_serial_valid(s, strlen(s)))
		return 0;
	for (i = 0; i < 64 && s[i] != '\0' && o + 5 < sizeof(q); i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch >= 0x20 && ch < 0x7f)
			q[o++] = (char)ch;
		else
			o += (size_t)snprintf(q + o, sizeof(q) - o, "\\x%02x", ch);
	}
	q[o] = '\0';
	fprintf(stderr,
	    "otagwctl: invalid serial '%s%s': use 1 to 64 letters, digits, '-' or '_'\n"
	    "Try 'otagwctl --help'.\n",
	    q, s[i] != '\0' ? "..." : "");
	return CTL_EXIT_USAGE;
}

int
main(int argc, char **argv)
{
	enum { OPT_JSON = 0x100, OPT_SYSTEM, OPT_USER, OPT_VERSION, OPT_ALL, OPT_UNTIL_IDLE };
	static const struct option options[] = {
	    {"json", no_argument, NULL, OPT_JSON},
	    {"system", no_argument, NULL, OPT_SYSTEM},
	    {"user", no_argument, NULL, OPT_USER},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, OPT_VERSION},
	    {"all", no_argument, NULL, OPT_ALL},
	    {"until-idle", no_argument, NULL, OPT_UNTIL_IDLE},
	    {NULL, 0, NULL, 0},
	};
	struct client c = {0};
	const char *cmd, *arg = NULL, *n_arg = NULL;
	bool all = false, until_idle = false;
	unsigned long n = HISTORY_DEFAULT;
	int opt, nargs, r;
	char *end;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "hn:", options, NULL)) != -1) {
		switch (opt) {
		case OPT_JSON:
			c.json = true;
			break;
		case OPT_SYSTEM:
			c.user = false;
			break;
		case OPT_USER:
			c.user = true;
			break;
		case 'h':
			usage(stdout);
			return CTL_EXIT_OK;
		case OPT_VERSION:
			printf("otagwctl %s\n", OTAGW_VERSION);
			return CTL_EXIT_OK;
		case OPT_ALL:
			all = true;
			break;
		case OPT_UNTIL_IDLE:
			until_idle = true;
			break;
		case 'n':
			n_arg = optarg;
			break;
		case '?':
		default:
			if (optopt == 'n')
				return usage_error("-n needs a number of entries (1 to 1000)");
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	cmd = optind < argc ? argv[optind++] : "status";
	nargs = argc - optind;
	if (nargs > 0)
		arg = argv[optind];
	if (all && strcmp(cmd, "check") != 0)
		return usage_error("--all goes with check only");
	if (n_arg != NULL && strcmp(cmd, "history") != 0)
		return usage_error("-n goes with history only");
	if (until_idle && strcmp(cmd, "watch") != 0)
		return usage_error("--until-idle goes with watch only");

	if (strcmp(cmd, "status") == 0 || strcmp(cmd, "devices") == 0 ||
	    strcmp(cmd, "watch") == 0) {
		if (nargs > 0)
			return usage_error("%s takes no arguments", cmd);
	} else if (strcmp(cmd, "show") == 0 || strcmp(cmd, "abort") == 0) {
		if (nargs != 1)
			return usage_error("%s takes one SERIAL", cmd);
		if ((r = check_serial(arg)) != 0)
			return r;
	} else if (strcmp(cmd, "check") == 0) {
		if (all ? nargs != 0 : nargs != 1)
			return usage_error("check takes one SERIAL, or --all");
		if (!all && (r = check_serial(arg)) != 0)
			return r;
	} else if (strcmp(cmd, "cache") == 0) {
		if (nargs > 1 || (nargs == 1 && strcmp(arg, "purge") != 0))
			return usage_error("cache takes nothing or 'purge'");
	} else if (strcmp(cmd, "history") == 0) {
		if (nargs > 1)
			return usage_error("history takes at most one SERIAL");
		if (arg != NULL && (r = check_serial(arg)) != 0)
			return r;
		if (n_arg != NULL) {
			n = strtoul(n_arg, &end, 10);
			if (n_arg[0] < '0' || n_arg[0] > '9' || *end != '\0' || n < 1 ||
			    n > CTL_HISTORY_MAX)
				return usage_error(
				    "invalid -n '%s': use a number of entries from 1 to 1000",
				    n_arg);
		}
	} else {
		return usage_error("unknown command '%s'", cmd);
	}

	if (strcmp(cmd, "watch") == 0)
		return watch_run(&c, until_idle);
	r = client_connect(&c);
	if (r != 0)
		return r;
	if (strcmp(cmd, "status") == 0) {
		r = cmd_status(&c);
	} else if (strcmp(cmd, "devices") == 0) {
		r = cmd_devices(&c);
	} else if (strcmp(cmd, "show") == 0) {
		r = cmd_show(&c, arg);
	} else if (strcmp(cmd, "check") == 0) {
		c.action = "check devices";
		r = all ? cmd_check_all(&c) : cmd_check(&c, arg);
	} else if (strcmp(cmd, "abort") == 0) {
		c.action = "abort updates";
		r = cmd_abort(&c, arg);
	} else if (strcmp(cmd, "cache") == 0) {
		c.action = "purge the cache";
		r = cmd_cache(&c, arg != NULL);
	} else {
		r = cmd_history(&c, arg, (unsigned)n);
	}
	client_close(&c);
	if (fflush(stdout) != 0 && r == 0) {
		perror("otagwctl: writing the output");
		r = CTL_EXIT_FAILURE;
	}
	return r;
}
