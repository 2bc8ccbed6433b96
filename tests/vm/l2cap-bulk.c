/* A raw L2CAP LE credit-based (CoC) bulk transfer between two local adapters, to prove the VM's
 * Bluetooth link and to give the raw figure our transports are compared with. The receiver
 * acknowledges the last byte with one SDU before the sender closes, because closing a CoC socket
 * drops SDUs still waiting for credits.
 *
 * Usage: l2cap-bulk recv LOCAL_ADDR PSM BYTES
 *        l2cap-bulk send LOCAL_ADDR PEER_ADDR PSM BYTES SDU_SIZE
 * Prints one line "l2cap-bulk: <role> <bytes> bytes in <s> s: <kB/s> kB/s"; exit 0 on success.
 *
 *        l2cap-bulk hold-listen LOCAL_ADDR PSM
 *        l2cap-bulk hold LOCAL_ADDR PEER_ADDR PSM
 * open a channel and keep it (and so the LE connection) until killed, printing "held": the VM
 * tests use it to give a controller a connection of its own (see tests/ble/vm-ota.sh). */
#include <bluetooth/bluetooth.h>
#include <bluetooth/l2cap.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
	BULK_MAX_SDU = 65535,
	BULK_TIMEOUT_MS = 30000, /* no progress for this long fails the run */
	BULK_ACK = 0x06,
};

static double
bulk_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
bulk_fail(const char *what)
{
	fprintf(stderr, "l2cap-bulk: %s: %s\n", what, strerror(errno));
	return 1;
}

static int
bulk_parse_u(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v == 0 || v > max) {
		fprintf(stderr, "l2cap-bulk: '%s' is not a number in 1..%lu\n", s, max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/* An LE L2CAP seqpacket socket bound to the adapter with address local. */
static int
bulk_socket(const char *local, uint16_t psm)
{
	struct sockaddr_l2 a = {.l2_family = AF_BLUETOOTH, .l2_bdaddr_type = BDADDR_LE_PUBLIC};
	uint8_t mode = BT_MODE_LE_FLOWCTL;
	uint16_t mtu = BULK_MAX_SDU;
	int fd;

	fd = socket(AF_BLUETOOTH, SOCK_SEQPACKET, BTPROTO_L2CAP);
	if (fd < 0)
		return -1;
	if (str2ba(local, &a.l2_bdaddr) < 0) {
		errno = EINVAL;
		goto fail;
	}
	a.l2_psm = htobs(psm);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		goto fail;
	/* Kernels without enable_ecred refuse BT_MODE; LE seqpacket sockets are LE_FLOWCTL by
	 * default there. */
	if (setsockopt(fd, SOL_BLUETOOTH, BT_MODE, &mode, sizeof(mode)) < 0 && errno != ENOPROTOOPT)
		goto fail;
	if (setsockopt(fd, SOL_BLUETOOTH, BT_RCVMTU, &mtu, sizeof(mtu)) < 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

/* A CoC from local to peer's psm: the connected socket, or -1 (said on stderr). */
static int
bulk_connect(const char *local, const char *peer, uint16_t psm)
{
	struct sockaddr_l2 a = {.l2_family = AF_BLUETOOTH, .l2_bdaddr_type = BDADDR_LE_PUBLIC};
	int fd = bulk_socket(local, 0);

	if (fd < 0) {
		bulk_fail("socket");
		return -1;
	}
	if (str2ba(peer, &a.l2_bdaddr) < 0) {
		fprintf(stderr, "l2cap-bulk: bad address %s\n", peer);
		close(fd);
		return -1;
	}
	a.l2_psm = htobs(psm);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		bulk_fail("connect");
		close(fd);
		return -1;
	}
	return fd;
}

static int
bulk_wait(int fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events};
	int n = poll(&p, 1, BULK_TIMEOUT_MS);

	if (n == 0)
		errno = ETIMEDOUT;
	return n > 0 ? 0 : -1;
}

static int
bulk_recv(const char *local, uint16_t psm, unsigned long total)
{
	static uint8_t buf[BULK_MAX_SDU];
	unsigned long got = 0, sdus = 0;
	uint8_t ack = BULK_ACK;
	double t0 = 0;
	int lfd, fd;

	lfd = bulk_socket(local, psm);
	if (lfd < 0 || listen(lfd, 1) < 0)
		return bulk_fail("listen");
	printf("l2cap-bulk: listening on %s psm %u\n", local, psm);
	fflush(stdout);
	if (bulk_wait(lfd, POLLIN) < 0 || (fd = accept(lfd, NULL, NULL)) < 0)
		return bulk_fail("accept");
	close(lfd);
	while (got < total) {
		ssize_t n;

		if (bulk_wait(fd, POLLIN) < 0)
			return bulk_fail("wait for data");
		n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0) {
			fprintf(
			    stderr, "l2cap-bulk: link closed after %lu of %lu bytes\n", got, total);
			return 1;
		}
		if (sdus++ == 0)
			t0 = bulk_now();
		got += (unsigned long)n;
	}
	double dt = bulk_now() - t0;
	if (send(fd, &ack, 1, 0) != 1)
		return bulk_fail("send ack");
	printf("l2cap-bulk: recv %lu bytes in %lu SDUs in %.3f s: %.1f kB/s\n", got, sdus, dt,
	    (double)got / 1000.0 / (dt > 0 ? dt : 1e-9));
	/* Wait for the sender to close first, so the ack is not dropped with our socket. */
	(void)bulk_wait(fd, POLLIN);
	close(fd);
	return 0;
}

static int
bulk_send(const char *local, const char *peer, uint16_t psm, unsigned long total, unsigned long sdu)
{
	static uint8_t buf[BULK_MAX_SDU];
	uint16_t omtu = 0;
	socklen_t len = sizeof(omtu);
	unsigned long sent = 0;
	double t0;
	int fd;

	fd = bulk_connect(local, peer, psm);
	if (fd < 0)
		return 1;
	if (getsockopt(fd, SOL_BLUETOOTH, BT_SNDMTU, &omtu, &len) < 0)
		return bulk_fail("BT_SNDMTU");
	if (sdu > omtu)
		sdu = omtu;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)i;
	t0 = bulk_now();
	while (sent < total) {
		size_t n = total - sent < sdu ? total - sent : sdu;

		if (bulk_wait(fd, POLLOUT) < 0 || send(fd, buf, n, 0) != (ssize_t)n)
			return bulk_fail("send");
		sent += n;
	}
	uint8_t ack = 0;
	if (bulk_wait(fd, POLLIN) < 0 || recv(fd, &ack, 1, 0) != 1 || ack != BULK_ACK)
		return bulk_fail("wait for the receiver's ack");
	double dt = bulk_now() - t0;
	printf("l2cap-bulk: send %lu bytes (SDU %lu, peer MTU %u) in %.3f s: %.1f kB/s\n", sent,
	    sdu, omtu, dt, (double)sent / 1000.0 / dt);
	close(fd);
	return 0;
}

/* Keeps fd open until the peer closes it or a signal ends the process. */
static int
bulk_hold_fd(int fd)
{
	uint8_t b;

	printf("l2cap-bulk: held\n");
	fflush(stdout);
	while (recv(fd, &b, 1, 0) > 0 || errno == EINTR)
		;
	close(fd);
	return 0;
}

static int
bulk_hold_listen(const char *local, uint16_t psm)
{
	int lfd = bulk_socket(local, psm), fd;

	if (lfd < 0 || listen(lfd, 1) < 0)
		return bulk_fail("listen");
	printf("l2cap-bulk: listening on %s psm %u\n", local, psm);
	fflush(stdout);
	fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return bulk_fail("accept");
	close(lfd);
	return bulk_hold_fd(fd);
}

static int
bulk_hold(const char *local, const char *peer, uint16_t psm)
{
	int fd = bulk_connect(local, peer, psm);

	return fd < 0 ? 1 : bulk_hold_fd(fd);
}

int
main(int argc, char **argv)
{
	unsigned long psm, total, sdu;

	if (argc == 4 && strcmp(argv[1], "hold-listen") == 0) {
		if (bulk_parse_u(argv[3], 0xffff, &psm))
			return 2;
		return bulk_hold_listen(argv[2], (uint16_t)psm);
	}
	if (argc == 5 && strcmp(argv[1], "hold") == 0) {
		if (bulk_parse_u(argv[4], 0xffff, &psm))
			return 2;
		return bulk_hold(argv[2], argv[3], (uint16_t)psm);
	}

	if (argc == 5 && strcmp(argv[1], "recv") == 0) {
		if (bulk_parse_u(argv[3], 0xffff, &psm) || bulk_parse_u(argv[4], 1UL << 30, &total))
			return 2;
		return bulk_recv(argv[2], (uint16_t)psm, total);
	}
	if (argc == 7 && strcmp(argv[1], "send") == 0) {
		if (bulk_parse_u(argv[4], 0xffff, &psm) ||
		    bulk_parse_u(argv[5], 1UL << 30, &total) ||
		    bulk_parse_u(argv[6], BULK_MAX_SDU, &sdu))
			return 2;
		return bulk_send(argv[2], argv[3], (uint16_t)psm, total, sdu);
	}
	fprintf(stderr, "usage: l2cap-bulk recv LOCAL_ADDR PSM BYTES\n"
			"       l2cap-bulk send LOCAL_ADDR PEER_ADDR PSM BYTES SDU_SIZE\n"
			"       l2cap-bulk hold-listen LOCAL_ADDR PSM\n"
			"       l2cap-bulk hold LOCAL_ADDR PEER_ADDR PSM\n");
	return 2;
}
