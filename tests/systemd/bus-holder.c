/* bus-holder: a test helper that connects to the bus at ADDRESS, owns NAME, prints "ready" and
 * answers every method call sent to it with an empty reply until the bus goes away or it gets
 * SIGTERM. The D-Bus policy tests use it to see which calls a policy lets through to the name
 * (delivered: an empty reply; refused by dbus-daemon: AccessDenied) without running otagwd. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-bus.h>

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* Replies to every method call; leaves everything else (NameAcquired...) to sd-bus. */
static int
bus_holder_filter(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	int r;

	(void)userdata;
	(void)error;
	if (!sd_bus_message_is_method_call(m, NULL, NULL))
		return 0;
	r = sd_bus_reply_method_return(m, NULL);
	if (r < 0) {
		const char *iface = sd_bus_message_get_interface(m);
		const char *member = sd_bus_message_get_member(m);

		fprintf(stderr, "bus-holder: failed to reply to %s.%s: %s\n",
		    iface != NULL ? iface : "(no interface)", member != NULL ? member : "?",
		    strerror(-r));
	}
	return 1;
}

int
main(int argc, char **argv)
{
	struct sigaction sa;
	sd_bus *bus = NULL;
	int r, code = EXIT_FAILURE;

	if (argc != 3) {
		fprintf(stderr, "Usage: bus-holder ADDRESS NAME\n");
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: sd_bus_wait() returns -EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	if ((r = sd_bus_new(&bus)) < 0 || (r = sd_bus_set_address(bus, argv[1])) < 0 ||
	    (r = sd_bus_set_bus_client(bus, 1)) < 0 || (r = sd_bus_start(bus)) < 0) {
		fprintf(stderr, "bus-holder: cannot connect to %s: %s\n", argv[1], strerror(-r));
		goto out;
	}
	r = sd_bus_add_filter(bus, NULL, bus_holder_filter, NULL);
	if (r < 0) {
		fprintf(stderr, "bus-holder: cannot add a filter: %s\n", strerror(-r));
		goto out;
	}
	/* Without SD_BUS_NAME_QUEUE: fails with -EEXIST if someone else owns it, -EACCES if the
	 * policy forbids it. */
	r = sd_bus_request_name(bus, argv[2], 0);
	if (r < 0) {
		fprintf(stderr, "bus-holder: cannot own %s: %s\n", argv[2], strerror(-r));
		goto out;
	}
	printf("ready\n");
	fflush(stdout);

	while (!stop) {
		r = sd_bus_process(bus, NULL);
		if (r < 0) {
			if (r == -ECONNRESET || r == -ENOTCONN)
				break; /* the bus went away: the test is over */
			fprintf(stderr, "bus-holder: %s\n", strerror(-r));
			goto out;
		}
		if (r > 0)
			continue;
		r = sd_bus_wait(bus, UINT64_MAX);
		if (r < 0 && r != -EINTR) {
			fprintf(stderr, "bus-holder: %s\n", strerror(-r));
			goto out;
		}
	}
	code = EXIT_SUCCESS;
out:
	sd_bus_flush_close_unref(bus);
	return code;
}
