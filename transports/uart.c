/* UART links: open a tty exclusively in raw mode at any rate (termios2), and reopen it with
 * backoff after it disappears. The termios2 ioctls need the kernel's <asm/termbits.h>, which
 * cannot share a file with glibc's <termios.h>: this file uses the kernel's only. */
#include "uart.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <asm/termbits.h>
#include <event2/event.h>

#define UART_BAUD_DEFAULT 115200u
#define UART_BAUD_MIN     50u
#define UART_BAUD_MAX     4000000u
/* A UART link tolerates a few percent of rate mismatch; a driver that can only come closer
 * than this to the asked rate is refused rather than left to garble every byte. */
#define UART_BAUD_TOL_PERMILLE 30u
#define UART_BACKOFF_MIN_MS    250u
#define UART_BACKOFF_MAX_MS    5000u

struct uart {
	struct stream s;
	char *path;
	struct uart_options opt;
	struct event *ev_reopen;
	unsigned int backoff_ms; /* delay before the next reopen attempt */
	uint64_t up_since_ns;
	int last_error;
};

static struct uart *
uart_of(struct transport *t)
{
	return transport_container_of(t, struct uart, s.t);
}

/* The Bxxx code for a standard rate; BOTHER (rate in c_ospeed) for any other. Drivers older
 * than BOTHER support still understand the standard codes. */
static unsigned int
uart_baud_code(uint32_t baud)
{
	static const struct {
		uint32_t rate;
		unsigned int code;
	} rates[] = {
	    {50, B50},
	    {75, B75},
	    {110, B110},
	    {134, B134},
	    {150, B150},
	    {200, B200},
	    {300, B300},
	    {600, B600},
	    {1200, B1200},
	    {1800, B1800},
	    {2400, B2400},
	    {4800, B4800},
	    {9600, B9600},
	    {19200, B19200},
	    {38400, B38400},
	    {57600, B57600},
	    {115200, B115200},
	    {230400, B230400},
	    {460800, B460800},
	    {500000, B500000},
	    {576000, B576000},
	    {921600, B921600},
	    {1000000, B1000000},
	    {1152000, B1152000},
	    {1500000, B1500000},
	    {2000000, B2000000},
	    {2500000, B2500000},
	    {3000000, B3000000},
	    {3500000, B3500000},
	    {4000000, B4000000},
	};
	size_t i;

	for (i = 0; i < sizeof(rates) / sizeof(rates[0]); i++)
		if (rates[i].rate == baud)
			return rates[i].code;
	return BOTHER;
}

/* Raw 8N1 (what cfmakeraw() does), the rate, flow control, and read() returning as soon as one
 * byte is there (VMIN 1: with VMIN 0 a non-blocking read returns 0, which means hangup here). */
static int
uart_configure(int fd, const struct uart_options *opt)
{
	struct termios2 tio, got;
	uint32_t diff;

	if (ioctl(fd, TCGETS2, &tio) < 0)
		return -errno;
	tio.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL |
				   IXON | IXOFF | IXANY | INPCK | IUCLC | IMAXBEL);
	tio.c_oflag &= ~(tcflag_t)OPOST;
	tio.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL | ICANON | ISIG | IEXTEN);
	tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | CSTOPB | CRTSCTS | CBAUD | CIBAUD);
	tio.c_cflag |= CS8 | CREAD | CLOCAL | uart_baud_code(opt->baud);
	if (opt->rtscts)
		tio.c_cflag |= CRTSCTS;
	tio.c_ispeed = opt->baud;
	tio.c_ospeed = opt->baud;
	tio.c_cc[VMIN] = 1;
	tio.c_cc[VTIME] = 0;
	if (ioctl(fd, TCSETS2, &tio) < 0)
		return -errno;
	/* Drivers round to what their divisor can do and report the rate they set. */
	if (ioctl(fd, TCGETS2, &got) < 0)
		return -errno;
	diff = got.c_ospeed > opt->baud ? got.c_ospeed - opt->baud : opt->baud - got.c_ospeed;
	if ((uint64_t)diff * 1000 > (uint64_t)opt->baud * UART_BAUD_TOL_PERMILLE)
		return -EINVAL;
	return 0;
}

/* Opens and sets up the device. Returns the fd or a negative errno. */
static int
uart_open_fd(const struct uart *u)
{
	int fd, r;

	fd = open(u->path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (!isatty(fd)) {
		r = -ENOTTY;
		goto fail;
	}
	/* flock() keeps out cooperating programs (and root, whom TIOCEXCL lets through);
	 * TIOCEXCL keeps out everyone else who opens the node. */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto fail;
	}
	if (ioctl(fd, TIOCEXCL) < 0) {
		r = -errno;
		goto fail;
	}
	r = uart_configure(fd, &u->opt);
	if (r < 0) {
		ioctl(fd, TIOCNXCL);
		goto fail;
	}
	/* Whatever the device sent before we were listening has no reader. */
	ioctl(fd, TCFLSH, TCIFLUSH);
	return fd;
fail:
	close(fd);
	return r;
}

static void
uart_schedule_reopen(struct uart *u)
{
	struct timeval tv = {
	    .tv_sec = u->backoff_ms / 1000,
	    .tv_usec = (suseconds_t)(u->backoff_ms % 1000) * 1000,
	};

	evtimer_add(u->ev_reopen, &tv);
	u->backoff_ms *= 2;
	if (u->backoff_ms > UART_BACKOFF_MAX_MS)
		u->backoff_ms = UART_BACKOFF_MAX_MS;
}

/* Brings the link up on what uart_open_fd() returned, or schedules the next attempt. */
static void
uart_up(struct uart *u, int fd)
{
	if (fd >= 0)
		fd = stream_attach(&u->s, fd, false);
	u->last_error = fd < 0 ? fd : 0;
	if (fd < 0) {
		uart_schedule_reopen(u);
		return;
	}
	u->up_since_ns = stream_now_ns();
}

static void
uart_reopen_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	uart_up(arg, uart_open_fd(arg));
}

static void
uart_closing(struct stream *s, int fd)
{
	(void)s;
	/* Exclusive mode outlives the fd on a tty that stays (a pty, a UART whose port is held
	 * open elsewhere); it is the one setting we took and give back. */
	ioctl(fd, TIOCNXCL);
}

static void
uart_lost(struct stream *s, int err)
{
	struct uart *u = uart_of(&s->t);

	(void)err;
	/* A link that stayed up a while starts the backoff over; one that flaps keeps backing
	 * off. */
	if (stream_now_ns() - u->up_since_ns >= (uint64_t)UART_BACKOFF_MAX_MS * 1000000u)
		u->backoff_ms = UART_BACKOFF_MIN_MS;
	uart_schedule_reopen(u);
}

static void
uart_free(struct transport *t)
{
	struct uart *u = uart_of(t);

	stream_cleanup(&u->s);
	if (u->ev_reopen != NULL)
		event_free(u->ev_reopen);
	free(u->path);
	free(u);
}

static const struct transport_ops uart_ops = {
    .send = stream_send,
    .mtu = stream_mtu,
    .queued = stream_queued,
    .free = uart_free,
};

static const struct stream_hooks uart_hooks = {
    .closing = uart_closing,
    .lost = uart_lost,
};

/* Errors that mean "not plugged in (yet)": keep trying. */
static bool
uart_absent(int err)
{
	return err == -ENOENT || err == -ENODEV || err == -ENXIO || err == -EIO;
}

int
uart_new(struct event_base *base, const char *path, const struct uart_options *opt,
    struct transport **out)
{
	struct uart *u;
	int fd, r;

	if (path == NULL || path[0] == '\0')
		return -EINVAL;
	if (strlen(path) >= PATH_MAX)
		return -ENAMETOOLONG;
	u = calloc(1, sizeof(*u));
	if (u == NULL)
		return -ENOMEM;
	if (opt != NULL)
		u->opt = *opt;
	if (u->opt.baud == 0)
		u->opt.baud = UART_BAUD_DEFAULT;
	if (u->opt.baud < UART_BAUD_MIN || u->opt.baud > UART_BAUD_MAX) {
		free(u);
		return -EINVAL;
	}
	u->backoff_ms = UART_BACKOFF_MIN_MS;
	u->path = strdup(path);
	if (u->path == NULL) {
		free(u);
		return -ENOMEM;
	}
	r = stream_init(&u->s, base, &uart_ops, TRANSPORT_KIND_UART, &uart_hooks, &u->opt.stream,
	    "uart:%s", path);
	if (r < 0) {
		free(u->path);
		free(u);
		return r;
	}
	/* From here on, uart_free() undoes everything. */
	u->ev_reopen = evtimer_new(base, uart_reopen_cb, u);
	if (u->ev_reopen == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	fd = uart_open_fd(u);
	if (fd < 0 && !uart_absent(fd)) {
		r = fd;
		goto fail;
	}
	uart_up(u, fd);
	*out = &u->s.t;
	return 0;
fail:
	transport_free(&u->s.t);
	return r;
}

int
uart_last_error(const struct transport *t)
{
	return transport_container_of(t, const struct uart, s.t)->last_error;
}
