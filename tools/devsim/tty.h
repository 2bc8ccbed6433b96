/* Raw 8N1 mode and any line rate for a tty, through the kernel's termios2 (a file of its own
 * because <asm/termbits.h> cannot share a translation unit with <termios.h>). */
#ifndef OTAGW_DEVSIM_TTY_H
#define OTAGW_DEVSIM_TTY_H

#include <stdint.h>

/* Puts the tty on fd in raw mode: 8N1, no echo, no line editing, no flow control, no CR/LF
 * translation, reads return what is there. baud 0 keeps the current rate; otherwise the rate is
 * set (standard or not) and read back. Returns 0, -EINVAL if the driver set a rate more than 2 %
 * away from baud, or another negative errno from the ioctls. */
int tty_raw(int fd, uint32_t baud);

#endif
