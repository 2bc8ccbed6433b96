/* otagw-devsim: simulated MCUs for bringing up and testing an otagw gateway before the boards
 * exist. The command line: options into one device_options per simulated device, one libevent
 * loop for all of them, and the exit status for --once. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <event2/event.h>

#include "device.h"
#include "ident.h"
#include "msg.h"
#include "report.h"

#define EXIT_UPDATE_FAILED 1
#define EXIT_USAGE         2
#define DEVSIM_COUNT_MAX   1000
#define DEVSIM_BLE_PSM     129 /* the first dynamic LE PSM */
#define DEVSIM_BLE_NAME    29  /* what fits the advertising packet beside the service UUID */
#define DEVSIM_BLE_LINGER                                                   \
	100 /* --once: wait this many tenths of a second for the gateway to \
	     * let a BLE device go */

static void
usage(FILE *f)
{
	fprintf(f,
	    "Usage: otagw-devsim [OPTIONS] (--pty PATH | --tty PATH | --tcp HOST:PORT | --unix "
	    "PATH |\n"
	    "                              --ble ADAPTER)\n"
	    "\n"
	    "Simulates MCUs that update through an otagw gateway. Each runs the real device\n"
	    "library (proto/device, the code an MCU runs) with its flash in a file, its resume\n"
	    "state on disk, flash erase/write stalls like an MCU's, and a reboot into the new\n"
	    "image after an update.\n"
	    "\n"
	    "Link (exactly one):\n"
	    "  --pty PATH              create a pty pair and symlink its slave at PATH for the\n"
	    "                          gateway to open as a UART (with --count: PATH-001, ...)\n"
	    "  --tty PATH              open an existing tty in raw mode: a serial adapter wired\n"
	    "                          to the gateway, or one end of otagw-linkemu; reopened if "
	    "it\n"
	    "                          goes away\n"
	    "  --baud N                with --tty: set the line rate (any rate the adapter does)\n"
	    "  --tcp HOST:PORT         connect to the gateway's TCP listener ([v6addr]:port too)\n"
	    "  --unix PATH             connect to the gateway's unix-socket listener\n"
	    "                          (connections are retried with backoff, 0.1 s to 5 s)\n"
	    "  --ble ADAPTER           be a BLE peripheral on ADAPTER (e.g. hci1) through\n"
	    "                          bluetoothd: the otagw GATT service and an advertisement;\n"
	    "                          the gateway connects (max-payload follows the MTU)\n"
	    "  --l2cap [PSM]           with --ble: also accept an L2CAP CoC channel on PSM\n"
	    "                          (128..255, default %d) and publish it\n"
	    "  --ble-name NAME         with --ble: the advertised name (default: the serial,\n"
	    "                          cut to %d characters)\n"
	    "\n"
	    "Identity (what the gateway asks Memfault with):\n"
	    "  --serial S              device serial (default SIM-%%03d); with --count a pattern\n"
	    "                          with one %%d or %%0Nd, numbered from 1\n"
	    "  --hardware-version S    default devsim\n"
	    "  --software-type S       default main\n"
	    "  --current-version S     the factory version (default 1.0.0); once an update is\n"
	    "                          installed, the version in the state directory wins\n"
	    "\n"
	    "Capabilities (HELLO):\n"
	    "  --max-payload N         largest DATA payload accepted, 16..4096 (default 1024)\n"
	    "  --window N              DATA frames in flight, 1..255 (default 4)\n"
	    "  --max-stall-ms N        longest silence while busy (default: the erase and write\n"
	    "                          time one DATA frame can cost)\n"
	    "  --delta                 announce that delta images can be applied (the simulator\n"
	    "                          stores the bytes as they come)\n"
	    "\n"
	    "Flash and state:\n"
	    "  --state-dir DIR         where devices keep their state, one subdirectory per\n"
	    "                          serial: slot.bin, installed.bin, device.json, resume.json\n"
	    "                          (default ./devsim-state)\n"
	    "  --slot-size N           update slot size, with K or M for KiB/MiB (default 1M)\n"
	    "  --sector-size N         erase unit, a power of two (default 4K); 0: no erase\n"
	    "  --erase-ms N            time one sector erase takes (default 0)\n"
	    "  --write-us-per-kib N    time programming 1 KiB takes (default 0)\n"
	    "  --rx-ring N             receive ring bytes; what arrives while the device stalls\n"
	    "                          and does not fit is lost, as in a UART overrun (default:\n"
	    "                          window x (max-payload + 16))\n"
	    "\n"
	    "Behaviour:\n"
	    "  --once                  exit 0 once up to date (after an install, or from the\n"
	    "                          start), 1 when an update fails or the gateway refuses\n"
	    "                          (BUSY is waited out), with the reason\n"
	    "  --timeout S             give up after S seconds (exit 1, saying where it was)\n"
	    "  --check-interval S      check again this long after being up to date\n"
	    "                          (default 3600; 0: only when the gateway solicits)\n"
	    "  --decline               refuse every offer (RESULT DECLINED)\n"
	    "  --reboot-at-byte N      reboot once after N image bytes are stored: RAM state\n"
	    "                          is lost, the device resumes from its persisted state\n"
	    "  --count N               simulate N devices in this process (1..%d), each with\n"
	    "                          its own serial, state and link\n"
	    "\n"
	    "Output:\n"
	    "  --events FILE|-         machine-readable events as JSON lines (hello, offer,\n"
	    "                          progress, verify, result, done, reboot, up-to-date,\n"
	    "                          error, transfer timings, summary)\n"
	    "  --progress MODE         auto (default), bar, plain or none\n"
	    "  -q, --quiet             --progress none\n"
	    "  -h, --help              show this help\n"
	    "      --version           show the version\n"
	    "\n"
	    "Exit status: 0 success, 1 an update failed or --timeout passed, 2 bad arguments.\n"
	    "\n"
	    "Examples:\n"
	    "  otagw-devsim --pty /tmp/devsim.tty --once          # gateway: device = "
	    "/tmp/devsim.tty\n"
	    "  otagw-devsim --unix /run/otagw/sim.sock --count 20 --serial 'RACK1-%%02d'\n"
	    "  otagw-linkemu -b 921600 /tmp/gw.tty /tmp/dev.tty &\n"
	    "  otagw-devsim --tty /tmp/dev.tty --erase-ms 40 --sector-size 4K --once\n"
	    "  otagw-devsim --ble hci1 --l2cap --window 16 --once  # gateway: [ble] on hci0\n",
	    DEVSIM_BLE_PSM, DEVSIM_BLE_NAME, DEVSIM_COUNT_MAX);
}

struct devsim {
	struct event_base *base;
	struct report *rep;
	struct device **devs;
	unsigned int count, finished, failed;
	bool timed_out, interrupted;
	struct event *linger;
	unsigned int linger_ticks;
};

static void __attribute__((format(printf, 1, 2), noreturn)) usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("otagw-devsim: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'otagw-devsim --help'.\n", stderr);
	exit(EXIT_USAGE);
}

/* An unsigned integer in [min, max], with K or M (powers of 1024) when sizes is set. */
static uint64_t
parse_num(const char *opt, const char *s, uint64_t min, uint64_t max, bool sizes)
{
	unsigned long long v;
	uint64_t mul = 1;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (sizes && (*end == 'K' || *end == 'k'))
		mul = 1024, end++;
	else if (sizes && (*end == 'M' || *end == 'm'))
		mul = (uint64_t)1024 * 1024, end++;
	if (s[0] == '\0' || s[0] == '-' || *end != '\0' || errno != 0 || v > max / mul ||
	    v * mul < min || v * mul > max)
		usage_error("%s: expected %s %" PRIu64 "..%" PRIu64 ", got '%s'", opt,
		    sizes ? "a size (K, M allowed)" : "an integer", min, max, s);
	return v * mul;
}

static const char *
parse_text(const char *opt, const char *s, size_t max)
{
	if (!ident_text_valid(s, strlen(s), max))
		usage_error(
		    "%s: expected 1..%zu printable ASCII characters, got '%s'", opt, max, s);
	return s;
}

/* Formats a serial pattern for device number n: "%d", "%Nd" or "%0Nd" once, "%%" for '%'.
 * Returns the number of conversions, or -1 for anything else (and on overflow). */
static int
pattern_format(const char *pat, unsigned int n, char *out, size_t cap)
{
	size_t o = 0;
	int convs = 0;

	for (; *pat; pat++) {
		char tmp[32];
		const char *p = pat + 1;
		bool zero = false;
		unsigned int width = 0;
		int k;

		if (*pat != '%') {
			if (o + 1 >= cap)
				return -1;
			out[o++] = *pat;
			continue;
		}
		if (*p == '%') {
			if (o + 1 >= cap)
				return -1;
			out[o++] = '%';
			pat = p;
			continue;
		}
		if (*p == '0')
			zero = true, p++;
		while (*p >= '0' && *p <= '9' && width < 100)
			width = width * 10 + (unsigned int)(*p++ - '0');
		if (*p != 'd' || convs > 0 || width > 20)
			return -1;
		k = snprintf(tmp, sizeof(tmp), zero ? "%0*u" : "%*u", (int)width, n);
		if (k < 0 || o + (size_t)k >= cap)
			return -1;
		memcpy(out + o, tmp, (size_t)k);
		o += (size_t)k;
		convs++;
		pat = p;
	}
	out[o] = '\0';
	return convs;
}

/* --once, every device finished: exit once no BLE device is connected any more (or after a
 * while: a gateway that does not let go is not waited for). */
static void
on_linger(evutil_socket_t fd, short what, void *arg)
{
	struct devsim *s = arg;
	unsigned int i;

	(void)fd;
	(void)what;
	for (i = 0; i < s->count && s->linger_ticks < DEVSIM_BLE_LINGER; i++) {
		if (device_ble_connected(s->devs[i])) {
			s->linger_ticks++;
			event_add(s->linger, &(struct timeval){0, 100000});
			return;
		}
	}
	event_base_loopexit(s->base, NULL);
}

static void
on_finish(struct device *d, bool ok, const char *reason, void *arg)
{
	struct devsim *s = arg;

	(void)d;
	(void)reason;
	s->finished++;
	if (!ok)
		s->failed++;
	if (s->finished < s->count)
		return;
	if (!s->linger)
		s->linger = evtimer_new(s->base, on_linger, s);
	if (s->linger)
		event_active(s->linger, EV_TIMEOUT, 1);
	else
		event_base_loopexit(s->base, NULL);
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct devsim *s = arg;
	unsigned int i;

	(void)fd;
	(void)what;
	s->timed_out = true;
	for (i = 0; i < s->count; i++)
		report_error(s->rep, device_serial(s->devs[i]), "timed out: %s",
		    device_describe(s->devs[i]));
	event_base_loopexit(s->base, NULL);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct devsim *s = arg;

	(void)sig;
	(void)what;
	s->interrupted = true;
	event_base_loopexit(s->base, NULL);
}

/* Lets --count devices have their fds (a pty pair, a flash file each). */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Splits HOST:PORT ([v6]:PORT for IPv6) into host and port, in place. */
static void
split_host_port(char *arg, const char **host, const char **port)
{
	char *colon = strrchr(arg, ':');

	if (!colon || colon == arg || colon[1] == '\0')
		usage_error("--tcp: expected HOST:PORT, got '%s'", arg);
	*colon = '\0';
	*port = colon + 1;
	*host = arg;
	if (arg[0] == '[' && colon[-1] == ']') {
		colon[-1] = '\0';
		*host = arg + 1;
	}
	parse_num("--tcp port", *port, 1, 65535, false);
}

int
main(int argc, char **argv)
{
	enum {
		OPT_PTY = 256,
		OPT_TTY,
		OPT_BAUD,
		OPT_TCP,
		OPT_UNIX,
		OPT_BLE,
		OPT_L2CAP,
		OPT_BLE_NAME,
		OPT_SERIAL,
		OPT_HW,
		OPT_SWTYPE,
		OPT_VERSION_CUR,
		OPT_MAX_PAYLOAD,
		OPT_WINDOW,
		OPT_MAX_STALL,
		OPT_DELTA,
		OPT_STATE_DIR,
		OPT_SLOT_SIZE,
		OPT_SECTOR_SIZE,
		OPT_ERASE_MS,
		OPT_WRITE_US,
		OPT_RX_RING,
		OPT_ONCE,
		OPT_TIMEOUT,
		OPT_CHECK,
		OPT_DECLINE,
		OPT_REBOOT_AT,
		OPT_COUNT,
		OPT_EVENTS,
		OPT_PROGRESS,
		OPT_VERSION,
	};
	static const struct option longopts[] = {
	    {"pty", required_argument, NULL, OPT_PTY},
	    {"tty", required_argument, NULL, OPT_TTY},
	    {"baud", required_argument, NULL, OPT_BAUD},
	    {"tcp", required_argument, NULL, OPT_TCP},
	    {"unix", required_argument, NULL, OPT_UNIX},
	    {"ble", required_argument, NULL, OPT_BLE},
	    {"l2cap", optional_argument, NULL, OPT_L2CAP},
	    {"ble-name", required_argument, NULL, OPT_BLE_NAME},
	    {"serial", required_argument, NULL, OPT_SERIAL},
	    {"hardware-version", required_argument, NULL, OPT_HW},
	    {"software-type", required_argument, NULL, OPT_SWTYPE},
	    {"current-version", required_argument, NULL, OPT_VERSION_CUR},
	    {"max-payload", required_argument, NULL, OPT_MAX_PAYLOAD},
	    {"window", required_argument, NULL, OPT_WINDOW},
	    {"max-stall-ms", required_argument, NULL, OPT_MAX_STALL},
	    {"delta", no_argument, NULL, OPT_DELTA},
	    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
	    {"slot-size", required_argument, NULL, OPT_SLOT_SIZE},
	    {"sector-size", required_argument, NULL, OPT_SECTOR_SIZE},
	    {"erase-ms", required_argument, NULL, OPT_ERASE_MS},
	    {"write-us-per-kib", required_argument, NULL, OPT_WRITE_US},
	    {"rx-ring", required_argument, NULL, OPT_RX_RING},
	    {"once", no_argument, NULL, OPT_ONCE},
	    {"timeout", required_argument, NULL, OPT_TIMEOUT},
	    {"check-interval", required_argument, NULL, OPT_CHECK},
	    {"decline", no_argument, NULL, OPT_DECLINE},
	    {"reboot-at-byte", required_argument, NULL, OPT_REBOOT_AT},
	    {"count", required_argument, NULL, OPT_COUNT},
	    {"events", required_argument, NULL, OPT_EVENTS},
	    {"progress", required_argument, NULL, OPT_PROGRESS},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, OPT_VERSION},
	    {NULL, 0, NULL, 0},
	};
	struct device_options base_opt = {
	    .hardware_version = "devsim",
	    .software_type = "main",
	    .factory_version = "1.0.0",
	    .max_payload = 1024,
	    .window = 4,
	    .slot_size = 1024 * 1024,
	    .sector_size = 4096,
	    .check_s = 3600,
	};
	const char *serial_pat = "SIM-%03d", *state_dir = "devsim-state", *events = NULL;
	const char *link_arg = NULL;
	enum report_mode mode = REPORT_MODE_AUTO;
	bool have_stall = false, have_baud = false, have_l2cap = false;
	const char *ble_name = NULL;
	uint32_t timeout_s = 0;
	unsigned int count = 1, links = 0, i;
	struct devsim s = {0};
	struct event *ev_int = NULL, *ev_term = NULL, *ev_timeout = NULL;
	char err[1024], empty[] = "";
	int o, code;

	while ((o = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		/* getopt_long sets optarg for every required_argument option; the fallback only
		 * lets the static analysers see that arg is never NULL. */
		char *arg = optarg != NULL ? optarg : empty;

		switch (o) {
		case OPT_PTY:
		case OPT_TTY:
		case OPT_UNIX:
		case OPT_TCP:
			links++;
			link_arg = arg;
			base_opt.link.kind = o == OPT_PTY   ? LINK_KIND_PTY
					     : o == OPT_TTY ? LINK_KIND_TTY
					     : o == OPT_TCP ? LINK_KIND_TCP
							    : LINK_KIND_UNIX;
			if (o == OPT_TCP)
				split_host_port(arg, &base_opt.link.host, &base_opt.link.port);
			else if (arg[0] == '\0')
				usage_error("the link path is empty");
			break;
		case OPT_BLE:
			links++;
			link_arg = arg;
			base_opt.link.kind = LINK_KIND_BLE;
			if (strncmp(arg, "hci", 3) != 0 || strlen(arg) > 8 ||
			    strspn(arg + 3, "0123456789") != strlen(arg + 3) || !arg[3])
				usage_error(
				    "--ble: expected an adapter such as hci1, got '%s'", arg);
			break;
		case OPT_L2CAP:
			/* "--l2cap 131" as well as "--l2cap=131" */
			if (!optarg && optind < argc && argv[optind][0] >= '0' &&
			    argv[optind][0] <= '9')
				optarg = argv[optind++];
			base_opt.link.psm =
			    optarg ? (uint16_t)parse_num("--l2cap", optarg, 128, 255, false)
				   : DEVSIM_BLE_PSM;
			have_l2cap = true;
			break;
		case OPT_BLE_NAME:
			ble_name = parse_text("--ble-name", arg, DEVSIM_BLE_NAME);
			break;
		case OPT_BAUD:
			base_opt.link.baud =
			    (uint32_t)parse_num("--baud", arg, 50, 20000000, false);
			have_baud = true;
			break;
		case OPT_SERIAL:
			serial_pat = arg;
			break;
		case OPT_HW:
			base_opt.hardware_version =
			    parse_text("--hardware-version", arg, IDENT_HW_MAX);
			break;
		case OPT_SWTYPE:
			base_opt.software_type =
			    parse_text("--software-type", arg, IDENT_SWTYPE_MAX);
			break;
		case OPT_VERSION_CUR:
			base_opt.factory_version =
			    parse_text("--current-version", arg, IDENT_VERSION_MAX);
			break;
		case OPT_MAX_PAYLOAD:
			base_opt.max_payload = (uint16_t)parse_num(
			    "--max-payload", arg, PROTO_PAYLOAD_MIN, PROTO_PAYLOAD_MAX, false);
			break;
		case OPT_WINDOW:
			base_opt.window = (uint8_t)parse_num("--window", arg, 1, 255, false);
			break;
		case OPT_MAX_STALL:
			base_opt.max_stall_ms =
			    (uint16_t)parse_num("--max-stall-ms", arg, 0, 65535, false);
			have_stall = true;
			break;
		case OPT_DELTA:
			base_opt.caps |= MSG_CAP_DELTA;
			break;
		case OPT_STATE_DIR:
			state_dir = arg;
			break;
		case OPT_SLOT_SIZE:
			base_opt.slot_size =
			    (uint32_t)parse_num("--slot-size", arg, 1, UINT32_MAX, true);
			break;
		case OPT_SECTOR_SIZE:
			base_opt.sector_size =
			    (uint32_t)parse_num("--sector-size", arg, 0, 1u << 24, true);
			break;
		case OPT_ERASE_MS:
			base_opt.erase_ms = (uint32_t)parse_num("--erase-ms", arg, 0, 60000, false);
			break;
		case OPT_WRITE_US:
			base_opt.write_us_per_kib =
			    (uint32_t)parse_num("--write-us-per-kib", arg, 0, 1000000, false);
			break;
		case OPT_RX_RING:
			base_opt.rx_ring =
			    (uint32_t)parse_num("--rx-ring", arg, 64, 16u << 20, true);
			break;
		case OPT_ONCE:
			base_opt.once = true;
			break;
		case OPT_TIMEOUT:
			timeout_s =
			    (uint32_t)parse_num("--timeout", arg, 1, (uint64_t)86400 * 7, false);
			break;
		case OPT_CHECK:
			base_opt.check_s = (uint32_t)parse_num(
			    "--check-interval", arg, 0, (uint64_t)86400 * 30, false);
			break;
		case OPT_DECLINE:
			base_opt.decline = true;
			break;
		case OPT_REBOOT_AT:
			base_opt.reboot_at_byte =
			    parse_num("--reboot-at-byte", arg, 1, UINT32_MAX, true);
			break;
		case OPT_COUNT:
			count = (unsigned int)parse_num("--count", arg, 1, DEVSIM_COUNT_MAX, false);
			break;
		case OPT_EVENTS:
			events = arg;
			break;
		case OPT_PROGRESS:
			if (strcmp(arg, "auto") == 0)
				mode = REPORT_MODE_AUTO;
			else if (strcmp(arg, "bar") == 0)
				mode = REPORT_MODE_LIVE;
			else if (strcmp(arg, "plain") == 0)
				mode = REPORT_MODE_PLAIN;
			else if (strcmp(arg, "none") == 0)
				mode = REPORT_MODE_QUIET;
			else
				usage_error(
				    "--progress: expected auto, bar, plain or none, got '%s'", arg);
			break;
		case 'q':
			mode = REPORT_MODE_QUIET;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case OPT_VERSION:
			printf("otagw-devsim %s (protocol version %d)\n", OTAGW_VERSION,
			    PROTO_VERSION);
			return 0;
		default:
			fputs("Try 'otagw-devsim --help'.\n", stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (links != 1)
		usage_error("give exactly one link: --pty, --tty, --tcp, --unix or --ble");
	if ((have_l2cap || ble_name) && base_opt.link.kind != LINK_KIND_BLE)
		usage_error("--l2cap and --ble-name apply to --ble only");
	if (count > 1 && base_opt.link.kind == LINK_KIND_BLE)
		usage_error("--count does not go with --ble: an adapter is one peripheral (run "
			    "one otagw-devsim per adapter)");
	if (have_baud && base_opt.link.kind != LINK_KIND_TTY)
		usage_error("--baud applies to --tty only (a pty has no line rate: put "
			    "otagw-linkemu between gateway and device to get one)");
	if (count > 1 && base_opt.link.kind == LINK_KIND_TTY)
		usage_error("--count needs --pty, --tcp or --unix: a tty carries one device");
	{
		uint32_t sec = base_opt.sector_size;

		if (sec && ((sec & (sec - 1)) || base_opt.slot_size % sec))
			usage_error("--sector-size must be 0 or a power of two that divides "
				    "--slot-size (%u)",
			    base_opt.slot_size);
		if (base_opt.rx_ring && base_opt.rx_ring < (uint32_t)base_opt.max_payload + 16)
			usage_error("--rx-ring must hold at least one frame: %u bytes for "
				    "--max-payload %u",
			    base_opt.max_payload + 16, base_opt.max_payload);
		if (base_opt.reboot_at_byte > base_opt.slot_size)
			usage_error(
			    "--reboot-at-byte is beyond the slot (%u bytes)", base_opt.slot_size);
		if (!have_stall) {
			/* The sectors one DATA frame can start, and its programming time. */
			uint64_t sectors = !sec ? 0
					   : sec >= base_opt.max_payload
					       ? 1
					       : base_opt.max_payload / sec + 1;
			uint64_t ms =
			    sectors * base_opt.erase_ms +
			    ((uint64_t)base_opt.max_payload * base_opt.write_us_per_kib / 1024 +
				999) /
				1000;

			base_opt.max_stall_ms = (uint16_t)(ms > 65535 ? 65535 : ms);
		}
	}
	{
		char probe[IDENT_SERIAL_MAX + 1];
		int convs = pattern_format(serial_pat, 1, probe, sizeof(probe));

		if (convs < 0)
			usage_error("--serial: '%s' is not a serial or a pattern with one %%d or "
				    "%%0Nd",
			    serial_pat);
		if (count > 1 && convs == 0)
			usage_error(
			    "--serial: with --count the serial needs a %%d (e.g. SIM-%%03d) "
			    "to tell the devices apart");
	}
	if (base_opt.link.kind == LINK_KIND_PTY && count > 1 && strlen(link_arg) > PATH_MAX - 16)
		usage_error("--pty: path too long");

	raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	s.base = event_base_new();
	s.devs = calloc(
	    count, sizeof(*s.devs)); /* NOLINT(bugprone-sizeof-expression): array of pointers */
	if (!s.base || !s.devs) {
		fprintf(stderr, "otagw-devsim: out of memory\n");
		code = EXIT_UPDATE_FAILED;
		goto out;
	}
	if (report_new(s.base, events, mode, &s.rep, err, sizeof(err)) < 0) {
		fprintf(stderr, "otagw-devsim: %s\n", err);
		code = EXIT_USAGE;
		goto out;
	}
	code = 0;
	for (i = 0; i < count; i++) {
		struct device_options dopt = base_opt;
		char pty_path[PATH_MAX], adv_name[DEVSIM_BLE_NAME + 1];

		if (pattern_format(serial_pat, i + 1, dopt.serial, sizeof(dopt.serial)) < 0 ||
		    !ident_serial_valid(dopt.serial, strlen(dopt.serial))) {
			fprintf(stderr,
			    "otagw-devsim: --serial: '%s' is not a valid serial (1..%d of "
			    "[-a-zA-Z0-9_])\n",
			    dopt.serial, IDENT_SERIAL_MAX);
			code = EXIT_USAGE;
			break;
		}
		if ((size_t)snprintf(dopt.dir, sizeof(dopt.dir), "%s/%s", state_dir, dopt.serial) >=
		    sizeof(dopt.dir)) {
			fprintf(stderr, "otagw-devsim: --state-dir: path too long\n");
			code = EXIT_USAGE;
			break;
		}
		if (dopt.link.kind == LINK_KIND_PTY && count > 1) {
			snprintf(pty_path, sizeof(pty_path), "%s-%03u", link_arg, i + 1);
			dopt.link.path = pty_path;
		} else if (dopt.link.kind != LINK_KIND_TCP) {
			dopt.link.path = link_arg;
		}
		if (dopt.link.kind == LINK_KIND_BLE) {
			snprintf(adv_name, sizeof(adv_name), "%.*s", DEVSIM_BLE_NAME,
			    ble_name ? ble_name : dopt.serial);
			dopt.link.name = adv_name;
		}
		s.count = i + 1;
		if (device_new(s.base, &dopt, s.rep, base_opt.once ? on_finish : NULL, &s,
			&s.devs[i], err, sizeof(err)) < 0) {
			s.count = i;
			fprintf(stderr, "otagw-devsim: %s: %s\n", dopt.serial, err);
			code = EXIT_UPDATE_FAILED;
			break;
		}
	}
	if (code == 0) {
		struct timeval tv = {.tv_sec = timeout_s};

		ev_int = evsignal_new(s.base, SIGINT, on_signal, &s);
		ev_term = evsignal_new(s.base, SIGTERM, on_signal, &s);
		if (ev_int)
			evsignal_add(ev_int, NULL);
		if (ev_term)
			evsignal_add(ev_term, NULL);
		if (timeout_s) {
			ev_timeout = evtimer_new(s.base, on_timeout, &s);
			if (ev_timeout)
				evtimer_add(ev_timeout, &tv);
		}
		/* Devices that finished while starting (a refusal on the first HELLO is not
		 * possible before the loop runs, but stay safe). */
		if (!base_opt.once || s.finished < s.count)
			event_base_dispatch(s.base);
		if (base_opt.once)
			code = s.failed || s.timed_out || s.interrupted || s.finished < s.count
				   ? EXIT_UPDATE_FAILED
				   : 0;
		else
			code = s.timed_out ? EXIT_UPDATE_FAILED : 0;
	}
	for (i = 0; i < s.count; i++)
		device_summary(s.devs[i]);
	for (i = 0; i < s.count; i++)
		device_free(s.devs[i]);
	report_free(s.rep);
	if (ev_int)
		event_free(ev_int);
	if (ev_term)
		event_free(ev_term);
	if (ev_timeout)
		event_free(ev_timeout);
	if (s.linger)
		event_free(s.linger);
out:
	free(s.devs);
	if (s.base)
		event_base_free(s.base);
	libevent_global_shutdown();
	return code;
}
