/* End to end over an emulated serial line (otagw-linkemu between the daemon's UART and the
 * device's tty, at 921600 baud 8N1): the link cut mid-transfer (both ends hung up, as a USB
 * unplug) resumes where the device was, without the gateway resending a byte the device had
 * acknowledged; bit errors on the line still give a verified image; and a device that reboots
 * mid-transfer resumes from the state it persisted. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ck.h"
#include "history.h"
#include "world.h"

#define LINE_BAUD "921600"

/* Starts otagw-linkemu between DIR/gw.tty and DIR/dev.tty with extra options. */
static void
linkemu_start(struct world *w, struct tproc *p, const char *const *opts)
{
	char *gw = tdir_join(w->dir, "gw.tty"), *dev = tdir_join(w->dir, "dev.tty");
	char *log = tdir_join(w->dir, "linkemu.log"), *argv[24];
	uint64_t end = tclock_ms() + E2E_TIMEOUT_MS;
	struct stat st;
	size_t n = 0, i;

	argv[n++] = (char *)tproc_prog("OTAGW_LINKEMU");
	argv[n++] = "-b";
	argv[n++] = LINE_BAUD;
	for (i = 0; opts[i] != NULL && n < 20; i++)
		argv[n++] = (char *)opts[i];
	argv[n++] = gw;
	argv[n++] = dev;
	argv[n] = NULL;
	tproc_spawn_log(p, "linkemu", argv, log, NULL);
	while (stat(gw, &st) < 0 || stat(dev, &st) < 0) {
		if (!tproc_running(p) || tclock_ms() > end)
			world_fail(w, "otagw-linkemu did not start");
		tclock_sleep_ms(10);
	}
	free(gw);
	free(dev);
	free(log);
}

static const char uart_link[] = "[uart \"line\"]\ndevice = @DIR@/gw.tty\nbaud = " LINE_BAUD "\n";

/* The number after key in the first line of path that holds both match and key; -1 if none. */
static long long
event_number(const char *path, const char *match, const char *key)
{
	char *text = tfile_read(path, NULL), *line, *save = NULL, *at;
	long long v = -1;

	if (text == NULL)
		return -1;
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (strstr(line, match) != NULL && (at = strstr(line, key)) != NULL) {
			v = strtoll(at + strlen(key), NULL, 10);
			break;
		}
	}
	free(text);
	return v;
}

/* The offset in the daemon's "Resuming 2.0.0 at N" line, or -1. */
static long long
resumed_at(struct world *w)
{
	return event_number(w->gw_log, "Resuming 2.0.0 at ", "Resuming 2.0.0 at ");
}

START_TEST(test_link_cut)
{
	const char *emu[] = {"--drop-at-byte", "60000", "--drop-for", "400", NULL};
	const char *args[] = {"--tty", NULL, "--once", "--check-interval", "0", NULL};
	struct tproc emu_p = {0}, dev = {0};
	char reasons[4][256], *tty, *events;
	uint64_t bytes[4];
	int results[4];
	long long at, hello_at;
	struct world w;

	world_init(&w, "e2e-cut", 160 * 1024 + 3);
	tty = tdir_join(w.dir, "dev.tty");
	events = tdir_join(w.dir, "dev.events");
	args[1] = tty;
	world_mock(&w, NULL);
	linkemu_start(&w, &emu_p, emu);
	world_config(&w, "", uart_link, NULL);
	world_gw_start(&w);
	world_devsim(&w, &dev, "dev", args);
	world_devsim_exit(&w, &dev, 0);
	ck_assert(world_installed(&w, "dev", "SIM-001"));
	world_gw_wait(&w, "SIM-001: Disconnected at ");
	world_gw_wait(&w, "SIM-001: Resuming 2.0.0 at ");
	world_gw_wait(&w, "SIM-001: Installed 2.0.0");
	at = resumed_at(&w);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	ck_assert_int_eq(tproc_stop(&emu_p, SIGTERM, E2E_TIMEOUT_MS), 0);
	ck_assert_uint_ge(tfile_count(emu_p.log, "drops=1"), 1);

	/* newest first: the resumed transfer, installed; the cut one, aborted at A bytes */
	ck_assert_uint_eq(world_history(&w, "SIM-001", results, bytes, reasons, 4), 2);
	ck_assert_int_eq(results[0], HISTORY_RESULT_INSTALLED);
	ck_assert_int_eq(results[1], HISTORY_RESULT_ABORTED);
	ck_assert_msg(strncmp(reasons[1], "Disconnected at ", 16) == 0, "%s", reasons[1]);
	/* the second transfer started where the device was: at or after every byte it had
	 * acknowledged before the cut, and exactly where its HELLO said it would resume */
	ck_assert_int_gt(at, 0);
	ck_assert_int_ge(at, (long long)bytes[1]);
	hello_at = event_number(events, "\"event\":\"hello\"", "\"resume_offset\":");
	ck_assert_int_eq(hello_at, at);
	tproc_free(&dev);
	tproc_free(&emu_p);
	free(tty);
	free(events);
	world_free(&w);
}
END_TEST

START_TEST(test_bit_errors)
{
	const char *emu[] = {"--ber", "2e-5", "--seed", "11", NULL};
	const char *args[] = {"--tty", NULL, "--once", "--check-interval", "0", NULL};
	struct tproc emu_p = {0}, dev = {0};
	struct world w;
	char *tty, *events;
	long long flipped;

	world_init(&w, "e2e-ber", 128 * 1024 + 1);
	tty = tdir_join(w.dir, "dev.tty");
	events = tdir_join(w.dir, "dev.events");
	args[1] = tty;
	world_mock(&w, NULL);
	linkemu_start(&w, &emu_p, emu);
	world_config(&w, "", uart_link, NULL);
	world_gw_start(&w);
	world_devsim(&w, &dev, "dev", args);
	world_devsim_exit(&w, &dev, 0);
	/* every damaged frame was dropped and sent again: the image verified */
	ck_assert(world_installed(&w, "dev", "SIM-001"));
	world_gw_wait(&w, "SIM-001: Installed 2.0.0");
	ck_assert_int_eq(world_gw_stop(&w), 0);
	ck_assert_int_eq(tproc_stop(&emu_p, SIGTERM, E2E_TIMEOUT_MS), 0);
	flipped = event_number(emu_p.log, "linkemu:", " flipped=");
	ck_assert_int_gt(flipped, 0);
	ck_assert_int_gt(event_number(events, "\"event\":\"transfer\"", "\"bad_frames\":") +
			     event_number(events, "\"event\":\"transfer\"", "\"rewinds\":"),
	    0);
	tproc_free(&dev);
	tproc_free(&emu_p);
	free(tty);
	free(events);
	world_free(&w);
}
END_TEST

START_TEST(test_reboot_mid_transfer)
{
	const char *args[] = {"--unix", NULL, "--once", "--reboot-at-byte", "40000", NULL};
	struct tproc dev = {0};
	struct world w;
	char *events;
	long long at;

	world_init(&w, "e2e-reboot", 128 * 1024 + 7);
	events = tdir_join(w.dir, "dev.events");
	args[1] = w.sock;
	world_serve(&w, NULL, "", WORLD_UNIX_LINK);
	world_devsim(&w, &dev, "dev", args);
	world_devsim_exit(&w, &dev, 0);
	ck_assert(world_installed(&w, "dev", "SIM-001"));
	ck_assert_uint_ge(tfile_count(events, "\"event\":\"reboot\""), 1);
	world_gw_wait(&w, "SIM-001: Resuming 2.0.0 at ");
	world_gw_wait(&w, "SIM-001: Installed 2.0.0");
	/* it resumed from its persisted state: past 0, not past where it rebooted */
	at = resumed_at(&w);
	ck_assert_int_gt(at, 0);
	ck_assert_int_le(at, 40000);
	ck_assert_int_eq(event_number(events, "\"resume_offset\":", "\"resume_offset\":"), at);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	tproc_free(&dev);
	free(events);
	world_free(&w);
}
END_TEST

static Suite *
reliability_suite(void)
{
	Suite *s = suite_create("e2e-reliability");
	TCase *tc = tcase_create("reliability");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_link_cut);
	tcase_add_test(tc, test_bit_errors);
	tcase_add_test(tc, test_reboot_mid_transfer);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(reliability_suite());
}
