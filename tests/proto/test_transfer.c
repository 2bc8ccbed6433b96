/* Whole transfers between the device library and a gateway peer built on the sender, over a
 * simulated stream link and a packet link: clean runs, lost, corrupted, duplicated and
 * out-of-window frames, explicit rewinds, erase stalls, a dropped link, a device reboot, and the
 * decline, hash mismatch, no-update and error outcomes. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ck.h"
#include "sim.h"

static struct sim sim;

static void
base_opts(struct sim_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->baud = 921600;
	o->latency_ms = 1;
	o->seed = 7;
	o->size = 64 * 1024;
	o->max_payload = 1024;
	o->window = 4;
	o->max_stall_ms = 500;
	o->sector_size = 4096;
	o->persist_interval = 8192;
}

static void
packet_opts(struct sim_opts *o)
{
	base_opts(o);
	o->packet = 1;
	o->packet_rate = 100000;
	o->latency_ms = 10;
	o->max_payload = 239; /* ATT_MTU 247 - 3 (ATT header) - 5 (DATA header) */
	o->window = 8;
}

static void
assert_success(const struct sim *s)
{
	ck_assert_int_eq(s->gw_results >= 1, 1);
	ck_assert_int_eq(s->gw_result_status, MSG_STATUS_OK);
	ck_assert_uint_eq(s->gw_result_bytes, s->o.size);
	ck_assert_int_ge(s->dev_done, 1);
	ck_assert_int_eq(s->dev_last_status, MSG_STATUS_OK);
	ck_assert_mem_eq(s->flash, s->image, s->o.size);
	ck_assert_int_eq(s->flash_double_program, 0);
	ck_assert_int_eq(s->gw_bad_msgs, 0);
	ck_assert_uint_eq(s->stored.offset, s->o.size);
}

START_TEST(clean_stream)
{
	struct sim_opts o;

	base_opts(&o);
	sim_init(&sim, &o);
	sim_run(&sim, 0, 60);
	assert_success(&sim);
	ck_assert_uint_eq(sim.total_rewinds, 0);
	ck_assert_uint_eq(sim.total_timeouts, 0);
	ck_assert_uint_eq(sim.total_resent, 0);
	ck_assert_int_eq(sim.erases, 16);
	ck_assert_int_eq(sim.hellos, 1);
	sim_free(&sim);
}
END_TEST

START_TEST(clean_packet)
{
	struct sim_opts o;

	packet_opts(&o);
	sim_init(&sim, &o);
	sim_run(&sim, 0, 60);
	assert_success(&sim);
	ck_assert_uint_eq(sim.total_rewinds, 0);
	ck_assert_uint_eq(sim.total_resent, 0);
	sim_free(&sim);
}
END_TEST

/* A lost frame is noticed by the next one and re-requested at once: no timeout. */
START_TEST(lost_frames_rewind)
{
	struct sim_opts o;
	static const uint32_t drops[] = {3, 20, 40};

	base_opts(&o);
	sim_init(&sim, &o);
	memcpy(sim.drop, drops, sizeof(drops));
	sim_run(&sim, 0, 60);
	assert_success(&sim);
	ck_assert_uint_eq(sim.total_rewinds, 3);
	ck_assert_uint_eq(sim.total_timeouts, 0);
	ck_assert_uint_gt(sim.total_resent, 0);
	sim_free(&sim);
}
END_TEST

/* When every frame in flight is lost (here the last two), no later frame reveals the gap: the
 * gateway's retransmission timeout does. */
START_TEST(tail_loss_times_out)
{
	struct sim_opts o;
	static const uint32_t drops[] = {63, 64};

	base_opts(&o);
	sim_init(&sim, &o);
	memcpy(sim.drop, drops, sizeof(drops));
	sim_run(&sim, 0, 60);
	assert_success(&sim);
	ck_assert_uint_eq(sim.total_rewinds, 0);
	ck_assert_uint_eq(sim.total_timeouts, 1);
	ck_assert_uint_eq(sim.total_resent, 2048);
	sim_free(&sim);
}
END_TEST

START_TEST(corrupted_frames_rewind)
{
	struct sim_opts o;
	static const uint32_t bad[] = {2, 15, 30};

	base_opts(&o);
	sim_init(&sim, &o);
	memcpy(sim.corrupt, bad, sizeof(bad));
	sim_run(&sim, 0, 60);
	assert_success(&sim);
	ck_assert_uint_eq(sim.total_rewinds, 3);
	ck_assert_uint_eq(sim.total_timeouts, 0);
	sim_free(&sim);
}
END_TEST

START_TEST(packet_loss)
{
	struct sim_opts o;
	static const uint32_t drops[] = {3, 30};

	packet_opts(&o);
	sim_init(&sim, &o);
	memcpy(sim.drop, drops, sizeof(drops));
	sim_run(&sim, 0, 60);
	assert_success(&sim);
	ck_assert_uint_eq(sim.total_rewinds, 2);
	sim_free(&sim);

	/* Random loss both ways, ACKs and the last frames included: timeouts recover it. */
	packet_opts(&o);
	o.packet_loss = 0.02;
	o.seed = 99;
	sim_init(&sim, &o);
	sim_run(&sim, 0, 300);
	assert_success(&sim);
	ck_assert_uint_gt(sim.total_rewinds, 0);
	sim_free(&sim);
}
END_TEST

START_TEST(bit_errors)
{
	struct sim_opts o;

	base_opts(&o);
	o.ber = 1e-5;
	o.size = 256 * 1024;
	sim_init(&sim, &o);
	sim_run(&sim, 0, 600);
	assert_success(&sim);
	ck_assert_uint_gt(sim.total_rewinds, 5);
	sim_free(&sim);
}
END_TEST

/* The device asks to re-fetch from an earlier offset (say its port found bad flash). */
START_TEST(explicit_rewind)
{
	struct sim_opts o;

	base_opts(&o);
	sim_init(&sim, &o);
	ck_assert_int_eq(sim_run(&sim, 40000, 60), 1);
	ck_assert_int_eq(otadev_rewind(&sim.dev, 10000, (uint32_t)(sim.t / 1000)), 0);
	/* Rounded down to the sector, and the stored state no longer claims more. */
	ck_assert_uint_eq(sim.stored.offset, 8192);
	ck_assert_int_eq(
	    otadev_rewind(&sim.dev, 50000, (uint32_t)(sim.t / 1000)), OTADEV_ERR_STATE);
	sim_run(&sim, 0, 60);
	assert_success(&sim);
	ck_assert_uint_eq(sim.total_rewinds, 1);
	ck_assert_uint_ge(sim.total_resent, 40000 - 8192);
	sim_free(&sim);
}
END_TEST

/* Each sector erase stalls the device for 300 ms. It pauses the gateway (limit == offset) and
 * the gateway waits up to max_stall_ms: no timeout, nothing resent. */
START_TEST(erase_stall_pauses)
{
	struct sim_opts o;

	base_opts(&o);
	o.erase_ms = 300;
	o.max_stall_ms = 500;
	sim_init(&sim, &o);
	sim_run(&sim, 0, 120);
	assert_success(&sim);
	ck_assert_int_eq(sim.erases, 16);
	ck_assert_uint_eq(sim.total_timeouts, 0);
	ck_assert_uint_eq(sim.total_resent, 0);
	sim_free(&sim);
}
END_TEST

/* The link drops and the gateway forgets the session. The device notices the silence, says
 * HELLO again with its partial image, and continues exactly where it was. */
START_TEST(dropped_link)
{
	struct sim_opts o;
	uint32_t have;

	base_opts(&o);
	sim_init(&sim, &o);
	ck_assert_int_eq(sim_run(&sim, 30000, 60), 1);
	sim_cut(&sim, 5000);
	sim_gateway_restart(&sim, 0);
	have = sim.dev_written;
	sim_run(&sim, 0, 120);
	assert_success(&sim);
	ck_assert_int_ge(sim.dev_aborted, 1);
	ck_assert_int_ge(sim.hellos_resume, 1);
	ck_assert_uint_eq(sim.last_hello_resume_offset, have);
	ck_assert_uint_eq(sim.first_ack_offset, have);
	sim_free(&sim);
}
END_TEST

/* Same, but the restarted gateway solicits a HELLO as soon as the link is back. */
START_TEST(dropped_link_solicit)
{
	struct sim_opts o;
	uint32_t have;

	base_opts(&o);
	sim_init(&sim, &o);
	ck_assert_int_eq(sim_run(&sim, 30000, 60), 1);
	sim_cut(&sim, 500);
	sim_gateway_restart(&sim, 0);
	have = sim.dev_written;
	sim_run(&sim, 0, sim.t / 1e6 + 0.6);
	sim_gateway_restart(&sim, 1);
	sim_run(&sim, 0, 120);
	assert_success(&sim);
	ck_assert_int_eq(sim.dev_aborted, 0);
	ck_assert_uint_eq(sim.first_ack_offset, have);
	sim_free(&sim);
}
END_TEST

/* The device reboots mid-transfer: it resumes from its stored state, at the start of the sector
 * holding the stored offset (that sector is erased again, never programmed twice). */
START_TEST(reboot_resumes)
{
	struct sim_opts o;
	uint32_t stored, resume;

	base_opts(&o);
	o.persist_interval = 6000;
	sim_init(&sim, &o);
	ck_assert_int_eq(sim_run(&sim, 30000, 60), 1);
	stored = sim.stored.offset;
	ck_assert_uint_gt(stored, 0);
	ck_assert_uint_le(stored, sim.dev_written);
	resume = stored - stored % o.sector_size;
	sim_reboot(&sim);
	sim_run(&sim, 0, 120);
	assert_success(&sim);
	ck_assert_int_ge(sim.hellos_resume, 1);
	ck_assert_uint_eq(sim.last_hello_resume_offset, resume);
	ck_assert_uint_eq(sim.first_ack_offset, resume);
	sim_free(&sim);
}
END_TEST

/* Duplicated frames and frames outside the granted window are not written. */
START_TEST(duplicates_and_out_of_window)
{
	struct sim_opts o;
	static const uint32_t dups[] = {2, 3, 9, 30};

	base_opts(&o);
	sim_init(&sim, &o);
	memcpy(sim.dup, dups, sizeof(dups));
	sim.out_of_window = 1;
	sim_run(&sim, 0, 60);
	ck_assert_int_eq(sim.out_of_window, 2);
	assert_success(&sim);
	ck_assert_uint_eq(sim.total_timeouts, 0);
	sim_free(&sim);
}
END_TEST

START_TEST(decline)
{
	struct sim_opts o;

	base_opts(&o);
	o.decline = 1;
	sim_init(&sim, &o);
	sim_run(&sim, 0, 60);
	ck_assert_int_eq(sim.gw_result_status, MSG_STATUS_DECLINED);
	ck_assert_int_eq(sim.dev_done, 1);
	ck_assert_int_eq(sim.dev_offers, 1);
	ck_assert_uint_eq(sim.data_frames, 0);
	ck_assert_uint_eq(sim.dev_written, 0);
	ck_assert_int_eq(sim.erases, 0);
	ck_assert_int_eq(sim.have_stored, 0);
	sim_free(&sim);
}
END_TEST

START_TEST(hash_mismatch)
{
	struct sim_opts o;

	base_opts(&o);
	o.wrong_sha = 1;
	sim_init(&sim, &o);
	sim_run(&sim, 0, 60);
	ck_assert_int_eq(sim.gw_result_status, MSG_STATUS_HASH_MISMATCH);
	ck_assert_uint_eq(sim.gw_result_bytes, o.size);
	ck_assert_int_eq(sim.dev_done, 1);
	/* Nothing stored is trusted any more: the next attempt starts from 0. */
	ck_assert_uint_eq(sim.stored.offset, 0);
	sim_free(&sim);
}
END_TEST

START_TEST(no_update_and_error)
{
	struct sim_opts o;

	base_opts(&o);
	o.no_update = 1;
	sim_init(&sim, &o);
	sim_run(&sim, 0, 60);
	ck_assert_int_eq(sim.dev_no_update, 1);
	ck_assert_uint_eq(sim.data_frames, 0);
	sim_free(&sim);

	/* ERROR with retry_after 30 s: the device waits that long between HELLOs. */
	base_opts(&o);
	o.gateway_error = 1;
	sim_init(&sim, &o);
	sim_run(&sim, 0, 65);
	ck_assert_int_eq(sim.hellos, 3);
	ck_assert_int_eq(sim.dev_errors, 3);
	sim_free(&sim);
}
END_TEST

/* A device that holds the whole image but never got DONE is offered it again: it verifies what
 * it has and reports without fetching a byte. */
START_TEST(complete_image_reverified)
{
	struct sim_opts o;
	uint32_t frames;

	base_opts(&o);
	sim_init(&sim, &o);
	sim_run(&sim, 0, 60);
	assert_success(&sim);
	frames = sim.data_frames;
	sim_reboot(&sim);
	sim.dev_done = 0;
	sim_run(&sim, 0, 60);
	assert_success(&sim);
	ck_assert_int_eq(sim.gw_results, 2);
	ck_assert_uint_eq(sim.data_frames, frames);
	sim_free(&sim);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("transfer");
	TCase *tc = tcase_create("transfer");

	tcase_add_test(tc, clean_stream);
	tcase_add_test(tc, clean_packet);
	tcase_add_test(tc, lost_frames_rewind);
	tcase_add_test(tc, tail_loss_times_out);
	tcase_add_test(tc, corrupted_frames_rewind);
	tcase_add_test(tc, packet_loss);
	tcase_add_test(tc, bit_errors);
	tcase_add_test(tc, explicit_rewind);
	tcase_add_test(tc, erase_stall_pauses);
	tcase_add_test(tc, dropped_link);
	tcase_add_test(tc, dropped_link_solicit);
	tcase_add_test(tc, reboot_resumes);
	tcase_add_test(tc, duplicates_and_out_of_window);
	tcase_add_test(tc, decline);
	tcase_add_test(tc, hash_mismatch);
	tcase_add_test(tc, no_update_and_error);
	tcase_add_test(tc, complete_image_reverified);
	suite_add_tcase(s, tc);
	return ck_main(s);
}
