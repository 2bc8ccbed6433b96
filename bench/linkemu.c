/* otagw-linkemu: an emulated 8N1 serial line between two pty pairs, for benchmarks and
 * reliability tests. Each direction is a wire of its own: a byte occupies the line for exactly
 * 10/baud seconds (start bit, 8 data bits, stop bit), is released to the far end only once its
 * last bit has arrived (plus an optional latency), and may have data bits flipped at a given bit
 * error rate. Scripted drops hang both ends up and bring them back at the same paths, as a USB
 * unplug and replug would. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S  1000000000ull
#define NS_PER_MS 1000000ull
/* Bits on the wire per byte, 8N1. */
#define BITS_PER_BYTE 10u
/* Wake at least this often while bytes are on their way, and never more often: bytes are
 * released in ~1 ms batches of exactly the bytes whose time has come, like a USB-serial
 * adapter's 1 ms frames. */
#define TICK_NS   NS_PER_MS
#define MAX_DROPS 32
#define BAUD_MIN  50u
#define BAUD_MAX  20000000u

struct side {
	const char *link; /* the stable path given on the command line */
	char pts[64];     /* the slave it points to now */
	int master;
	int slave; /* held open so the master never reads EIO while no program has the slave */
};

struct dir {
	const char *name;
	struct side *in, *out;
	/* Bytes on their way: a ring of bytes and the time each is due at the far end. */
	uint8_t *buf;
	uint64_t *due;
	size_t cap, head, len;
	/* The line: busy since epoch with n bytes, the last of which ends at line_end. */
	uint64_t epoch, n, line_end;
	bool out_blocked; /* the far pty is full: wait for POLLOUT */
	uint64_t delivered, flipped;
	uint64_t rng;
	uint64_t skip; /* data bits to pass before the next flip */
};

struct config {
	uint32_t baud;
	uint64_t latency_ns;
	double ber;
	uint64_t seed;
	size_t fifo;
	uint64_t drop_at_byte[MAX_DROPS];
	unsigned int n_drop_at_byte;
	uint64_t drop_after_ms[MAX_DROPS];
	unsigned int n_drop_after_ms;
	uint64_t drop_for_ms;
};

static volatile sig_atomic_t stop_signal;

static void
on_signal(int sig)
{
	stop_signal = sig;
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "Usage: otagw-linkemu [OPTIONS] PATH_A PATH_B\n"
	    "\n"
	    "Emulates a serial line between two programs. Creates two pty pairs and symlinks\n"
	    "PATH_A and PATH_B to their slave ends; what one program writes on its path comes out\n"
	    "of the other's at exactly baud/10 bytes per second (8N1), independently in each\n"
	    "direction, paced per byte against the monotonic clock.\n"
	    "\n"
	    "Options:\n"
	    "  -b, --baud N            line rate in bit/s, %u..%u (default 115200)\n"
	    "  -l, --latency MS        one-way latency added to every byte, in ms (default 0;\n"
	    "                          USB-serial adapters add 1..16)\n"
	    "  -e, --ber P             bit error rate: each data bit is flipped with probability "
	    "P,\n"
	    "                          0..1 (default 0)\n"
	    "  -s, --seed N            seed of the bit error generator, for reproducible runs\n"
	    "                          (default 1)\n"
	    "  -f, --fifo N            transmit FIFO per direction in bytes: how far a writer can "
	    "get\n"
	    "                          ahead of the line beyond the pty's own buffer (default "
	    "4096)\n"
	    "      --drop-at-byte N    hang up both ends once N bytes have been delivered in "
	    "total\n"
	    "                          (both directions); may be given up to %d times\n"
	    "      --drop-after-ms T   hang up both ends T ms after start; up to %d times\n"
	    "      --drop-for MS       how long each hang-up lasts (default 1000)\n"
	    "  -h, --help              show this help\n"
	    "\n"
	    "A hang-up closes both pty pairs (the programs see EOF/EIO, as on a USB unplug) and\n"
	    "removes the symlinks; after --drop-for ms new pairs appear at the same paths. Bytes "
	    "on\n"
	    "the line at that moment are lost. A receiver that stops reading holds the sender "
	    "back\n"
	    "once its pty buffer is full, as RTS/CTS would.\n"
	    "\n"
	    "On SIGINT or SIGTERM the symlinks are removed and one summary line is printed on\n"
	    "stdout:\n"
	    "  linkemu: baud=B a2b=BYTES b2a=BYTES flipped=BITS a2b_flipped=BITS b2a_flipped=BITS\n"
	    "  drops=N elapsed=SECONDS\n"
	    "\n"
	    "Example, ZMODEM over an emulated 921600 baud line with 4 ms latency:\n"
	    "  otagw-linkemu -b 921600 -l 4 /tmp/gw.tty /tmp/dev.tty &\n"
	    "  sz -b file </tmp/gw.tty >/tmp/gw.tty & rz -b </tmp/dev.tty >/tmp/dev.tty\n",
	    BAUD_MIN, BAUD_MAX, MAX_DROPS, MAX_DROPS);
}

/* Parses an unsigned integer in [min, max] or exits with a message naming the option. */
static uint64_t
parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (s[0] == '\0' || s[0] == '-' || *end != '\0' || errno != 0 || v < min || v > max) {
		fprintf(stderr,
		    "otagw-linkemu: %s: expected an integer %" PRIu64 "..%" PRIu64 ", got '%s'\n",
		    opt, min, max, s);
		exit(2);
	}
	return v;
}

static double
parse_ber(const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (s[0] == '\0' || *end != '\0' || errno != 0 || !(v >= 0.0 && v <= 1.0)) {
		fprintf(stderr, "otagw-linkemu: --ber: expected a probability 0..1, got '%s'\n", s);
		exit(2);
	}
	return v;
}

/* --- bit errors ---------------------------------------------------------------------------- */

/* splitmix64: a well-mixed stream from any seed. */
static uint64_t
rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Data bits until the next flip: geometric with parameter ber, drawn in one step so a low
 * error rate costs nothing per byte. */
static uint64_t
ber_gap(struct dir *d, double ber)
{
	double u, g;

	if (ber <= 0.0)
		return UINT64_MAX;
	if (ber >= 1.0)
		return 0;
	u = ((double)(rng_next(&d->rng) >> 11) + 1.0) * 0x1.0p-53; /* (0, 1] */
	g = floor(log(u) / log1p(-ber));
	return g >= 1e18 ? (uint64_t)1e18 : (uint64_t)g;
}

static void
ber_apply(struct dir *d, double ber, uint8_t *p, size_t n)
{
	size_t i;

	if (ber <= 0.0)
		return;
	for (i = 0; i < n; i++) {
		while (d->skip < 8) {
			p[i] ^= (uint8_t)(1u << d->skip);
			d->flipped++;
			d->skip += 1 + ber_gap(d, ber);
		}
		d->skip -= 8;
	}
}

/* --- ptys ---------------------------------------------------------------------------------- */

/* Makes a pty pair in raw mode (no echo, no line editing even before a program sets its own
 * mode) and points side->link at its slave. Returns 0 or -errno. */
static int
side_open(struct side *s)
{
	struct termios tio;
	char tmp[PATH_MAX];
	int r;

	s->master = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (s->master < 0)
		return -errno;
	if (grantpt(s->master) < 0 || unlockpt(s->master) < 0 ||
	    ptsname_r(s->master, s->pts, sizeof(s->pts)) != 0)
		goto fail;
	s->slave = open(s->pts, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (s->slave < 0)
		goto fail;
	if (tcgetattr(s->slave, &tio) < 0)
		goto fail;
	cfmakeraw(&tio);
	if (tcsetattr(s->slave, TCSANOW, &tio) < 0)
		goto fail;
	if (snprintf(tmp, sizeof(tmp), "%s.linkemu-tmp", s->link) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	unlink(tmp);
	if (symlink(s->pts, tmp) < 0)
		goto fail;
	if (rename(tmp, s->link) < 0) {
		unlink(tmp);
		goto fail;
	}
	return 0;
fail:
	r = -errno;
	if (s->slave >= 0)
		close(s->slave);
	close(s->master);
	s->master = s->slave = -1;
	return r;
}

/* Removes side->link if it still points at our slave. */
static void
side_unlink(struct side *s)
{
	char target[sizeof(s->pts)];
	ssize_t n = readlink(s->link, target, sizeof(target) - 1);

	if (n < 0)
		return;
	target[n] = '\0';
	if (strcmp(target, s->pts) == 0)
		unlink(s->link);
}

static void
side_close(struct side *s)
{
	side_unlink(s);
	if (s->master >= 0)
		close(s->master);
	if (s->slave >= 0)
		close(s->slave);
	s->master = s->slave = -1;
}

/* Refuses to replace anything at path but a symlink (ours from an earlier run, say). */
static void
check_link_path(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0 && !S_ISLNK(st.st_mode)) {
		fprintf(stderr,
		    "otagw-linkemu: %s exists and is not a symlink; remove it or choose another "
		    "path\n",
		    path);
		exit(2);
	}
}

/* --- the line ------------------------------------------------------------------------------ */

/* The moment the k-th byte (from 0) of a busy stretch that began at epoch has fully arrived:
 * computed from the stretch's start each time, so no rounding error accumulates. */
static uint64_t
line_end_of(const struct config *c, uint64_t epoch, uint64_t k)
{
	unsigned __int128 bits = (unsigned __int128)(k + 1) * BITS_PER_BYTE * NS_PER_S;

	return epoch + (uint64_t)((bits + c->baud - 1) / c->baud);
}

/* Bytes accepted but not yet fully on the line at now: what fills the transmit FIFO. */
static size_t
dir_unsent(const struct config *c, const struct dir *d, uint64_t now)
{
	const unsigned __int128 byte_ns_x_baud = (unsigned __int128)BITS_PER_BYTE * NS_PER_S;
	unsigned __int128 b;

	if (d->line_end <= now)
		return 0;
	b = (unsigned __int128)(d->line_end - now) * c->baud;
	return (size_t)((b + byte_ns_x_baud - 1) / byte_ns_x_baud);
}

/* How many bytes the direction may take from its writer now. */
static size_t
dir_room(const struct config *c, const struct dir *d, uint64_t now)
{
	size_t unsent = dir_unsent(c, d, now);
	size_t fifo_room = unsent >= c->fifo ? 0 : c->fifo - unsent;
	size_t ring_room = d->cap - d->len;

	return fifo_room < ring_room ? fifo_room : ring_room;
}

/* Takes what the writer has written (up to the room there is) and puts it on the line. */
static void
dir_take(const struct config *c, struct dir *d, uint64_t now)
{
	size_t room = dir_room(c, d, now);

	while (room > 0) {
		size_t tail = (d->head + d->len) % d->cap;
		size_t chunk = d->cap - tail < room ? d->cap - tail : room;
		ssize_t n = read(d->in->master, d->buf + tail, chunk);
		size_t i;

		if (n <= 0)
			return; /* EAGAIN: nothing more now */
		ber_apply(d, c->ber, d->buf + tail, (size_t)n);
		for (i = 0; i < (size_t)n; i++) {
			/* An idle line starts a new busy stretch at the byte's arrival. */
			if (d->line_end <= now) {
				d->epoch = now;
				d->n = 0;
			}
			d->line_end = line_end_of(c, d->epoch, d->n++);
			d->due[tail + i] = d->line_end + c->latency_ns;
		}
		d->len += (size_t)n;
		room -= (size_t)n;
	}
}

/* Hands the far end every byte whose time has come, and no other. */
static void
dir_release(struct dir *d, uint64_t now)
{
	d->out_blocked = false;
	while (d->len > 0 && d->due[d->head] <= now) {
		size_t run = 0, max = d->cap - d->head < d->len ? d->cap - d->head : d->len;
		ssize_t n;

		while (run < max && d->due[d->head + run] <= now)
			run++;
		n = write(d->out->master, d->buf + d->head, run);
		if (n <= 0) {
			d->out_blocked = true;
			return;
		}
		d->head = (d->head + (size_t)n) % d->cap;
		d->len -= (size_t)n;
		d->delivered += (uint64_t)n;
		if ((size_t)n < run) {
			d->out_blocked = true;
			return;
		}
	}
}

/* Forgets everything on the line (a hang-up). */
static void
dir_reset(struct dir *d)
{
	d->head = d->len = 0;
	d->line_end = 0;
	d->out_blocked = false;
}

/* Frees what dir_init allocated; a zeroed or freed dir is fine. */
static void
dir_free(struct dir *d)
{
	free(d->buf);
	free(d->due);
	d->buf = NULL;
	d->due = NULL;
}

static int
dir_init(struct dir *d, const char *name, struct side *in, struct side *out, const struct config *c,
    unsigned int index)
{
	/* The FIFO, plus the bytes in flight during the latency, plus slack for a far end that
	 * reads slowly. */
	uint64_t in_flight =
	    (uint64_t)c->baud / BITS_PER_BYTE * (c->latency_ns / NS_PER_MS + 2) / 1000;

	*d = (struct dir){.name = name, .in = in, .out = out};
	d->cap = c->fifo + (size_t)in_flight + 4096;
	d->buf = malloc(d->cap);
	d->due = malloc(d->cap * sizeof(*d->due));
	if (d->buf == NULL || d->due == NULL) {
		dir_free(d);
		return -ENOMEM;
	}
	d->rng = c->seed ^ (0x5851f42d4c957f2dull * (index + 1));
	d->skip = ber_gap(d, c->ber);
	return 0;
}

/* --- main loop ----------------------------------------------------------------------------- */

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void
parse_args(int argc, char **argv, struct config *c, const char **path_a, const char **path_b)
{
	enum { OPT_DROP_AT_BYTE = 256, OPT_DROP_AFTER_MS, OPT_DROP_FOR };
	static const struct option longopts[] = {
	    {"baud", required_argument, NULL, 'b'},
	    {"latency", required_argument, NULL, 'l'},
	    {"ber", required_argument, NULL, 'e'},
	    {"seed", required_argument, NULL, 's'},
	    {"fifo", required_argument, NULL, 'f'},
	    {"drop-at-byte", required_argument, NULL, OPT_DROP_AT_BYTE},
	    {"drop-after-ms", required_argument, NULL, OPT_DROP_AFTER_MS},
	    {"drop-for", required_argument, NULL, OPT_DROP_FOR},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int o;

	*c = (struct config){.baud = 115200, .seed = 1, .fifo = 4096, .drop_for_ms = 1000};
	while ((o = getopt_long(argc, argv, "b:l:e:s:f:h", longopts, NULL)) != -1) {
		switch (o) {
		case 'b':
			c->baud = (uint32_t)parse_u64("--baud", optarg, BAUD_MIN, BAUD_MAX);
			break;
		case 'l':
			c->latency_ns = parse_u64("--latency", optarg, 0, 10000) * NS_PER_MS;
			break;
		case 'e':
			c->ber = parse_ber(optarg);
			break;
		case 's':
			c->seed = parse_u64("--seed", optarg, 0, UINT64_MAX);
			break;
		case 'f':
			c->fifo = (size_t)parse_u64("--fifo", optarg, 1, 1u << 20);
			break;
		case OPT_DROP_AT_BYTE:
			if (c->n_drop_at_byte == MAX_DROPS) {
				fprintf(stderr, "otagw-linkemu: at most %d --drop-at-byte\n",
				    MAX_DROPS);
				exit(2);
			}
			c->drop_at_byte[c->n_drop_at_byte++] =
			    parse_u64("--drop-at-byte", optarg, 1, UINT64_MAX);
			break;
		case OPT_DROP_AFTER_MS:
			if (c->n_drop_after_ms == MAX_DROPS) {
				fprintf(stderr, "otagw-linkemu: at most %d --drop-after-ms\n",
				    MAX_DROPS);
				exit(2);
			}
			c->drop_after_ms[c->n_drop_after_ms++] =
			    parse_u64("--drop-after-ms", optarg, 0, 1000000000ull);
			break;
		case OPT_DROP_FOR:
			c->drop_for_ms = parse_u64("--drop-for", optarg, 0, 3600000);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "otagw-linkemu: expected two paths (PATH_A PATH_B); see --help\n");
		exit(2);
	}
	*path_a = argv[optind];
	*path_b = argv[optind + 1];
	if (strcmp(*path_a, *path_b) == 0) {
		fprintf(stderr, "otagw-linkemu: PATH_A and PATH_B must differ\n");
		exit(2);
	}
	qsort(c->drop_at_byte, c->n_drop_at_byte, sizeof(uint64_t), cmp_u64);
	qsort(c->drop_after_ms, c->n_drop_after_ms, sizeof(uint64_t), cmp_u64);
}

/* The whole emulator: the two ends, the two directions, and the drop script's progress. */
struct emu {
	struct config c;
	struct side a, b;
	struct dir dirs[2];
	uint64_t start, down_until, drops;
	unsigned int next_byte_drop, next_ms_drop;
	bool down;
};

static void
emu_open_sides(struct emu *e)
{
	struct side *failed = &e->a;
	int r = side_open(&e->a);

	if (r == 0) {
		failed = &e->b;
		r = side_open(&e->b);
		if (r < 0)
			side_close(&e->a);
	}
	if (r < 0) {
		fprintf(stderr, "otagw-linkemu: cannot create a pty pair for %s: %s\n",
		    failed->link, strerror(-r));
		exit(1);
	}
}

/* Advances the drop script to now; true if a hang-up is due. */
static bool
emu_drop_due(struct emu *e, uint64_t now)
{
	uint64_t delivered = e->dirs[0].delivered + e->dirs[1].delivered;
	bool due = false;

	while (e->next_byte_drop < e->c.n_drop_at_byte &&
	       delivered >= e->c.drop_at_byte[e->next_byte_drop]) {
		e->next_byte_drop++;
		due = true;
	}
	while (e->next_ms_drop < e->c.n_drop_after_ms &&
	       now - e->start >= e->c.drop_after_ms[e->next_ms_drop] * NS_PER_MS) {
		e->next_ms_drop++;
		due = true;
	}
	return due;
}

static void
emu_hang_up(struct emu *e, uint64_t now)
{
	side_close(&e->a);
	side_close(&e->b);
	dir_reset(&e->dirs[0]);
	dir_reset(&e->dirs[1]);
	e->drops++;
	e->down = true;
	e->down_until = now + e->c.drop_for_ms * NS_PER_MS;
}

/* Decides what to wait for: input where the FIFO has a good part free, output where the far
 * pty was full, and a timeout for the next byte due (at most one tick early) or the next
 * scripted drop. Returns the time to wake up at, UINT64_MAX for none. */
static uint64_t
emu_plan(const struct emu *e, uint64_t now, struct pollfd pfd[2])
{
	uint64_t wake = UINT64_MAX;
	size_t low = (e->c.fifo + 3) / 4;
	unsigned int i;

	for (i = 0; i < 2; i++)
		pfd[i] = (struct pollfd){.fd = e->dirs[i].in->master};
	for (i = 0; i < 2; i++) {
		const struct dir *d = &e->dirs[i];
		bool refill = dir_room(&e->c, d, now) >= low;

		/* Waking for input only once a quarter of the FIFO is free (the tick takes the
		 * rest) keeps a busy line at ~1000 wakeups/s, not one per byte. */
		if (refill)
			pfd[i].events |= POLLIN;
		/* The far end's master is the other entry. */
		if (d->out_blocked)
			pfd[1 - i].events |= POLLOUT;
		if (d->len > 0) {
			uint64_t t = UINT64_MAX;

			if (!refill)
				t = now + TICK_NS; /* refill the FIFO as the line drains it */
			else if (!d->out_blocked)
				t = d->due[d->head] > now + TICK_NS ? d->due[d->head]
								    : now + TICK_NS;
			if (t < wake)
				wake = t;
		}
	}
	if (e->next_ms_drop < e->c.n_drop_after_ms) {
		uint64_t t = e->start + e->c.drop_after_ms[e->next_ms_drop] * NS_PER_MS;

		if (t < wake)
			wake = t;
	}
	return wake;
}

int
main(int argc, char **argv)
{
	struct emu e = {
	    .a = {.master = -1, .slave = -1},
	    .b = {.master = -1, .slave = -1},
	};
	struct sigaction sa = {.sa_handler = on_signal};
	sigset_t block, waitmask;
	unsigned int i;

	parse_args(argc, argv, &e.c, &e.a.link, &e.b.link);
	check_link_path(e.a.link);
	check_link_path(e.b.link);
	if (dir_init(&e.dirs[0], "a2b", &e.a, &e.b, &e.c, 0) < 0 ||
	    dir_init(&e.dirs[1], "b2a", &e.b, &e.a, &e.c, 1) < 0) {
		fprintf(stderr, "otagw-linkemu: out of memory\n");
		dir_free(&e.dirs[0]);
		return 1;
	}
	/* Signals are blocked except inside ppoll(), so a stop is never missed between the check
	 * and the wait. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGTERM);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* The summary must not kill us if whoever reads stdout has gone. */
	signal(SIGPIPE, SIG_IGN);

	emu_open_sides(&e);
	fprintf(stderr, "otagw-linkemu: %s <-> %s at %u baud (%s <-> %s)\n", e.a.link, e.b.link,
	    e.c.baud, e.a.pts, e.b.pts);
	e.start = now_ns();
	while (!stop_signal) {
		struct pollfd pfd[2];
		uint64_t now = now_ns(), wake;
		struct timespec ts;
		nfds_t nfds = 0;

		if (e.down && now >= e.down_until) {
			emu_open_sides(&e);
			e.down = false;
		}
		if (e.down) {
			wake = e.down_until;
		} else {
			for (i = 0; i < 2; i++) {
				dir_take(&e.c, &e.dirs[i], now);
				dir_release(&e.dirs[i], now);
			}
			if (emu_drop_due(&e, now)) {
				emu_hang_up(&e, now);
				continue;
			}
			wake = emu_plan(&e, now, pfd);
			nfds = 2;
		}
		if (wake != UINT64_MAX) {
			uint64_t d = wake > now ? wake - now : 0;

			ts.tv_sec = (time_t)(d / NS_PER_S);
			ts.tv_nsec = (long)(d % NS_PER_S);
		}
		if (ppoll(pfd, nfds, wake == UINT64_MAX ? NULL : &ts, &waitmask) < 0 &&
		    errno != EINTR) {
			fprintf(stderr, "otagw-linkemu: poll: %s\n", strerror(errno));
			break;
		}
	}
	side_close(&e.a);
	side_close(&e.b);
	printf("linkemu: baud=%u a2b=%" PRIu64 " b2a=%" PRIu64 " flipped=%" PRIu64
	       " a2b_flipped=%" PRIu64 " b2a_flipped=%" PRIu64 " drops=%" PRIu64 " elapsed=%.3fs\n",
	    e.c.baud, e.dirs[0].delivered, e.dirs[1].delivered,
	    e.dirs[0].flipped + e.dirs[1].flipped, e.dirs[0].flipped, e.dirs[1].flipped, e.drops,
	    (double)(now_ns() - e.start) / 1e9);
	fflush(stdout);
	for (i = 0; i < 2; i++)
		dir_free(&e.dirs[i]);
	return 0;
}
