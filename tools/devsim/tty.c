/* tty: raw mode and the line rate through termios2, so that any rate a USB-serial adapter can
 * do (921600, 1000000, 3000000 and odd ones alike) is one code path. */
#include "tty.h"

#include <errno.h>
#include <sys/ioctl.h>

#include <asm/termbits.h>

/* How far the rate the driver reports may be from the one asked for: UARTs tolerate about 2 %
 * between the two ends, so a larger error would corrupt bytes. */
#define TTY_BAUD_TOL_PERMILLE 20

int
tty_raw(int fd, uint32_t baud)
{
	struct termios2 tio, got;
	uint32_t diff;

	if (ioctl(fd, TCGETS2, &tio) < 0)
		return -errno;
	tio.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL |
				   IXON | IXOFF | IXANY | INPCK);
	tio.c_oflag &= ~(tcflag_t)OPOST;
	tio.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL | ICANON | ISIG | IEXTEN);
	tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | CSTOPB | CRTSCTS);
	tio.c_cflag |= CS8 | CREAD | CLOCAL;
	if (baud != 0) {
		tio.c_cflag &= ~(tcflag_t)(CBAUD | CIBAUD);
		tio.c_cflag |= BOTHER;
		tio.c_ispeed = baud;
		tio.c_ospeed = baud;
	}
	tio.c_cc[VMIN] = 1;
	tio.c_cc[VTIME] = 0;
	if (ioctl(fd, TCSETS2, &tio) < 0)
		return -errno;
	if (baud == 0)
		return 0;
	if (ioctl(fd, TCGETS2, &got) < 0)
		return -errno;
	diff = got.c_ospeed > baud ? got.c_ospeed - baud : baud - got.c_ospeed;
	if ((uint64_t)diff * 1000 > (uint64_t)baud * TTY_BAUD_TOL_PERMILLE)
		return -EINVAL;
	return 0;
}
