/* End to end through the real binaries, one device at a time over each kind of link: a pty pair
 * (the daemon opens it as a UART and SOLICITs), a TCP connection and a unix socket. Each device
 * starts on 1.0.0, is offered 2.0.0 by the Memfault stand-in, receives and verifies it, reboots
 * into it and says HELLO again: the install is confirmed (history "installed") and Memfault
 * says it is on the latest (the 204 path). A device already on the release gets NO_UPDATE
 * without a payload being fetched. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ck.h"
#include "history.h"
#include "world.h"

/* Runs one device over one link, start to install. */
static void
one_device(const char *tag, const char *links, const char *const *devsim_args)
{
	struct tproc dev = {0};
	struct world w;
	uint64_t bytes[4];
	int results[4];
	char reasons[4][256];

	world_init(&w, tag, 96 * 1024 + 17);
	world_serve(&w, NULL, "", links);
	world_devsim(&w, &dev, "dev", devsim_args);
	world_devsim_exit(&w, &dev, 0);
	ck_assert(world_installed(&w, "dev", "SIM-001"));
	world_gw_wait(&w, "SIM-001: Offering 2.0.0");
	world_gw_wait(&w, "SIM-001: Transferred and verified 2.0.0");
	world_gw_wait(&w, "SIM-001: Installed 2.0.0");
	world_gw_wait(&w, "SIM-001: Up to date with Memfault (memfault-reason: latest)");
	ck_assert_uint_eq(tfile_count(w.mock.log, "GET /cdn/fw.bin?"), 1);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	ck_assert_uint_eq(world_history(&w, "SIM-001", results, bytes, reasons, 4), 1);
	ck_assert_int_eq(results[0], HISTORY_RESULT_INSTALLED);
	ck_assert_uint_eq(bytes[0], w.size);
	tproc_free(&dev);
	world_free(&w);
}

START_TEST(test_pty)
{
	/* the devsim makes the pty; the daemon opens its slave as a [uart] and SOLICITs */
	const char *args[] = {"--pty", NULL, "--once", "--check-interval", "0", NULL};

	{
		struct tproc dev = {0};
		struct world w;
		char *tty;

		world_init(&w, "e2e-pty", 96 * 1024 + 17);
		tty = tdir_join(w.dir, "dev.tty");
		args[1] = tty;
		world_mock(&w, NULL);
		world_config(
		    &w, "", "[uart \"pty\"]\ndevice = @DIR@/dev.tty\nbaud = 921600\n", NULL);
		world_devsim(&w, &dev, "dev", args);
		world_gw_start(&w);
		world_gw_wait(&w, "Link pty: ");
		world_devsim_exit(&w, &dev, 0);
		ck_assert(world_installed(&w, "dev", "SIM-001"));
		world_gw_wait(&w, "SIM-001: Transferred and verified 2.0.0");
		world_gw_wait(&w, "SIM-001: Installed 2.0.0");
		ck_assert_int_eq(world_gw_stop(&w), 0);
		{
			uint64_t bytes[4];
			int results[4];

			ck_assert_uint_eq(world_history(&w, "SIM-001", results, bytes, NULL, 4), 1);
			ck_assert_int_eq(results[0], HISTORY_RESULT_INSTALLED);
		}
		tproc_free(&dev);
		free(tty);
		world_free(&w);
	}
}
END_TEST

START_TEST(test_tcp)
{
	char links[128], addr[32];
	const char *args[] = {"--tcp", addr, "--once", NULL};
	uint16_t port = tnet_free_port();

	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	snprintf(links, sizeof(links), "[tcp \"lab\"]\nlisten = 127.0.0.1:%u\n", port);
	one_device("e2e-tcp", links, args);
}
END_TEST

START_TEST(test_unix)
{
	const char *args[] = {"--unix", NULL, "--once", NULL};
	struct tproc dev = {0};
	struct world w;

	/* one_device() with the socket path known only once the world exists */
	world_init(&w, "e2e-unix", 64 * 1024 + 5);
	args[1] = w.sock;
	world_serve(&w, NULL, "", WORLD_UNIX_LINK);
	world_devsim(&w, &dev, "dev", args);
	world_devsim_exit(&w, &dev, 0);
	ck_assert(world_installed(&w, "dev", "SIM-001"));
	world_gw_wait(&w, "SIM-001: Installed 2.0.0");
	ck_assert_int_eq(world_gw_stop(&w), 0);
	tproc_free(&dev);
	world_free(&w);
}
END_TEST

/* The 204 path: a device on the release gets NO_UPDATE (latest) and no payload is fetched. */
START_TEST(test_no_update)
{
	const char *args[] = {"--unix", NULL, "--once", "--current-version", WORLD_VERSION, NULL};
	struct tproc dev = {0};
	struct world w;
	char *log;

	world_init(&w, "e2e-204", 4096);
	args[1] = w.sock;
	world_serve(&w, NULL, "", WORLD_UNIX_LINK);
	world_devsim(&w, &dev, "dev", args);
	world_devsim_exit(&w, &dev, 0);
	log = tdir_join(w.dir, "dev.log");
	ck_assert_uint_eq(tfile_count(log, "up to date at 2.0.0 (latest)"), 1);
	world_gw_wait(&w, "SIM-001: Up to date with Memfault (memfault-reason: latest)");
	ck_assert_uint_eq(tfile_count(w.mock.log, "GET /cdn/"), 0);
	ck_assert_uint_eq(tfile_count(w.mock.log, "GET /api/v0/releases/latest?"), 1);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	tproc_free(&dev);
	free(log);
	world_free(&w);
}
END_TEST

static Suite *
links_suite(void)
{
	Suite *s = suite_create("e2e-links");
	TCase *tc = tcase_create("links");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_pty);
	tcase_add_test(tc, test_tcp);
	tcase_add_test(tc, test_unix);
	tcase_add_test(tc, test_no_update);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(links_suite());
}
