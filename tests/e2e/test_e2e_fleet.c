/* Twenty simulated devices on one release at once, through the real otagwd: Memfault is asked
 * once per device, the payload is downloaded exactly once (the stand-in's log shows one GET of
 * it), the transfer slots (max_transfers = 4) make the others wait their turn and call them
 * back, and every device ends with the release in its flash, verified, installed and confirmed
 * in the daemon's history. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ck.h"
#include "history.h"
#include "world.h"

#define N_DEVICES 20

START_TEST(test_twenty_devices)
{
	const char *args[] = {"--unix", NULL, "--count", "20", "--serial", "RACK-%02d", "--once",
	    "--timeout", "200", NULL};
	struct tproc dev = {0};
	struct world w;
	char serial[16];
	uint64_t bytes[4];
	int results[4], i;

	world_init(&w, "e2e-fleet", 64 * 1024 + 99);
	args[1] = w.sock;
	world_serve(&w, NULL, "max_transfers = 4",
	    "[unix \"rack\"]\nlisten = @DIR@/sim.sock\nmax_connections = 32\n");
	world_devsim(&w, &dev, "rack", args);
	world_devsim_exit(&w, &dev, 0);
	for (i = 1; i <= N_DEVICES; i++) {
		snprintf(serial, sizeof(serial), "RACK-%02d", i);
		ck_assert_msg(
		    world_installed(&w, "rack", serial), "%s has no verified image", serial);
	}
	/* one download, however many devices */
	ck_assert_uint_eq(tfile_count(w.mock.log, "GET /cdn/fw.bin?"), 1);
	ck_assert_uint_eq(tfile_count(w.gw_log, ": Installed 2.0.0"), N_DEVICES);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	for (i = 1; i <= N_DEVICES; i++) {
		snprintf(serial, sizeof(serial), "RACK-%02d", i);
		ck_assert_uint_eq(world_history(&w, serial, results, bytes, NULL, 4), 1);
		ck_assert_int_eq(results[0], HISTORY_RESULT_INSTALLED);
		ck_assert_uint_eq(bytes[0], w.size);
	}
	tproc_free(&dev);
	world_free(&w);
}
END_TEST

static Suite *
fleet_suite(void)
{
	Suite *s = suite_create("e2e-fleet");
	TCase *tc = tcase_create("fleet");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_twenty_devices);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(fleet_suite());
}
