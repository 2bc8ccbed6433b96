/* A private dbus-daemon for tests; see testbus.h. */
#include "testbus.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int
testbus_start(struct testbus *tb)
{
	int p[2];
	size_t len = 0;

	memset(tb, 0, sizeof(*tb));
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	tb->pid = fork();
	if (tb->pid < 0)
		return -errno;
	if (tb->pid == 0) {
		char fdarg[32];

		int null = open("/dev/null", O_WRONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (null >= 0)
			dup2(null, 2); /* it complains about fd limits it may not raise */
		dup2(p[1], 3);         /* dup2 clears O_CLOEXEC on the copy */
		snprintf(fdarg, sizeof(fdarg), "--print-address=3");
		execlp("dbus-daemon", "dbus-daemon", "--session", "--nofork", "--nopidfile",
		    "--nosyslog", fdarg, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	/* The address arrives as one line once the daemon listens. */
	while (len < sizeof(tb->address) - 1) {
		struct pollfd pfd = {.fd = p[0], .events = POLLIN};
		ssize_t n;

		if (poll(&pfd, 1, 20000) <= 0)
			break;
		n = read(p[0], tb->address + len, sizeof(tb->address) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(tb->address, '\n', len))
			break;
	}
	close(p[0]);
	char *nl = memchr(tb->address, '\n', len);
	if (!nl) {
		testbus_kill(tb);
		return -EIO;
	}
	*nl = '\0';
	return 0;
}

void
testbus_kill(struct testbus *tb)
{
	if (tb->pid <= 0)
		return;
	kill(tb->pid, SIGKILL);
	waitpid(tb->pid, NULL, 0);
	tb->pid = 0;
}

int
testbus_connect(const struct testbus *tb, sd_bus **out)
{
	sd_bus *bus = NULL;
	int r;

	r = sd_bus_new(&bus);
	if (r < 0)
		return r;
	r = sd_bus_set_address(bus, tb->address);
	if (r >= 0)
		r = sd_bus_set_bus_client(bus, 1);
	if (r >= 0)
		r = sd_bus_start(bus);
	if (r < 0) {
		sd_bus_unref(bus);
		return r;
	}
	*out = bus;
	return 0;
}
