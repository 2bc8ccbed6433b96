/* The efficiency table of docs/PROTOCOL.md: goodput the sender reaches against otadev in the
 * byte-clock simulation, at 115200 and 921600 baud, 0 and 4 ms one-way latency, and bit error
 * rates 0, 1e-6 and 1e-5, for a device advertising 1 KiB payloads and a window of 4. It prints
 * the figures and asserts only that every transfer completes correctly: speed is measured on a
 * real line by bench/, never asserted by a unit test. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ck.h"
#include "sim.h"

struct row {
	uint32_t baud;
	double latency_ms;
	double ber;
};

static const struct row rows[] = {
    {115200, 0, 0},
    {115200, 0, 1e-6},
    {115200, 0, 1e-5},
    {115200, 4, 0},
    {115200, 4, 1e-6},
    {115200, 4, 1e-5},
    {921600, 0, 0},
    {921600, 0, 1e-6},
    {921600, 0, 1e-5},
    {921600, 4, 0},
    {921600, 4, 1e-6},
    {921600, 4, 1e-5},
};

#define SEEDS 3
#define IMAGE (512 * 1024)

static struct sim sim;

START_TEST(efficiency)
{
	const struct row *r = &rows[_i];
	double sum = 0, resent = 0;
	uint32_t rewinds = 0, timeouts = 0, payload_min = 65535, payload_max = 0;
	int runs = r->ber > 0 ? SEEDS : 1, k;

	for (k = 0; k < runs; k++) {
		struct sim_opts o;

		memset(&o, 0, sizeof(o));
		o.baud = r->baud;
		o.latency_ms = r->latency_ms;
		o.ber = r->ber;
		o.seed = 1000 + (uint32_t)k * 77 + (uint32_t)_i;
		o.size = IMAGE;
		o.max_payload = 1024;
		o.window = 4;
		o.max_stall_ms = 100;
		o.persist_interval = 16384;
		sim_init(&sim, &o);
		sim_run(&sim, 0, 3600);
		ck_assert_int_eq(sim.gw_result_status, MSG_STATUS_OK);
		ck_assert_mem_eq(sim.flash, sim.image, IMAGE);
		sum += sim_efficiency(&sim);
		resent += (double)sim.total_resent / IMAGE;
		rewinds += sim.total_rewinds;
		timeouts += sim.total_timeouts;
		if (sim.last_stats.payload < payload_min)
			payload_min = sim.last_stats.payload;
		if (sim.last_stats.payload > payload_max)
			payload_max = sim.last_stats.payload;
		sim_free(&sim);
	}
	printf("| %6u | %2.0f ms | %-5g | %5.1f %% | %4u..%-4u | %5.1f | %5.1f | %5.2f %% |\n",
	    r->baud, r->latency_ms, r->ber, 100.0 * sum / runs, payload_min, payload_max,
	    (double)rewinds / runs, (double)timeouts / runs, 100.0 * resent / runs);
	fflush(stdout);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("efficiency");
	TCase *tc = tcase_create("efficiency");

	printf("512 KiB image, device max_payload 1024, window 4; mean of %d seeds with errors\n"
	       "|   baud | latency | BER   | goodput | payload end | rewinds | RTOs | resent |\n",
	    SEEDS);
	fflush(stdout);
	tcase_add_loop_test(tc, efficiency, 0, (int)(sizeof(rows) / sizeof(rows[0])));
	suite_add_tcase(s, tc);
	/* one process: the rows print in order (CK_FORK=yes still forks) */
	setenv("CK_FORK", "no", 0);
	return ck_main(s);
}
