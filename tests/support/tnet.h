/* Sockets for tests: a free loopback port to configure, and a connected unix-socket client. */
#ifndef OTAGW_TESTS_TNET_H
#define OTAGW_TESTS_TNET_H

#include <stdbool.h>
#include <stdint.h>

/* A TCP port on 127.0.0.1 that was free a moment ago (bound and released: good enough for a
 * test that configures a program with it). */
uint16_t tnet_free_port(void);

/* Connects a SOCK_STREAM unix socket to path (blocking: the kernel completes it from the
 * listener's backlog), then makes it non-blocking if asked. Fails the test if it cannot. */
int tnet_connect_unix(const char *path, bool nonblock);

#endif
