/* End to end, the daemon's life: Memfault becomes unreachable (a new device gets ERROR with a
 * retry hint while the daemon keeps serving the others from its answer cache and payload
 * cache); SIGHUP with a broken file keeps running, a good one adds a link without touching the
 * others; SIGTERM in the middle of the download and again in the middle of the transfer, each
 * followed by a restart, resumes both where they were. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ck.h"
#include "history.h"
#include "world.h"

START_TEST(test_upstream_unreachable)
{
	const char *a_args[] = {"--unix", NULL, "--serial", "A-1", "--once", NULL};
	const char *d_decline[] = {"--unix", NULL, "--serial", "D-1", "--once", "--decline", NULL};
	const char *d_args[] = {"--unix", NULL, "--serial", "D-1", "--once", NULL};
	const char *b_args[] = {"--unix", NULL, "--serial", "B-1", "--once", NULL};
	struct tproc a = {0}, d = {0}, b = {0};
	struct world w;
	char *b_log, *a_log;

	world_init(&w, "e2e-down", 64 * 1024 + 1);
	a_args[1] = d_decline[1] = d_args[1] = b_args[1] = w.sock;
	b_log = tdir_join(w.dir, "b.log");
	a_log = tdir_join(w.dir, "a.log");
	world_serve(&w, NULL, "", WORLD_UNIX_LINK);

	/* While Memfault answers: A updates; D is offered the release and declines it (its
	 * answer and the payload stay cached). */
	world_devsim(&w, &a, "a", a_args);
	world_devsim_exit(&w, &a, 0);
	tproc_free(&a);
	ck_assert(world_installed(&w, "a", "A-1"));
	world_devsim(&w, &d, "d", d_decline);
	world_devsim_exit(&w, &d, 1);
	tproc_free(&d);
	world_gw_wait(&w, "D-1: Device refused 2.0.0: DECLINED");

	/* Memfault goes away. */
	ck_assert_int_eq(tproc_stop(&w.mock, SIGTERM, E2E_TIMEOUT_MS), 0);

	/* A new device gets ERROR UPSTREAM_UNAVAILABLE with a retry hint. */
	world_devsim(&w, &b, "b", b_args);
	world_devsim_exit(&w, &b, 1);
	tproc_free(&b);
	ck_assert_uint_eq(tfile_count(b_log, "gateway error upstream-unavailable"), 1);
	ck_assert_uint_eq(tfile_count(b_log, "(retry after 0 s)"), 0);
	world_gw_wait(&w, "B-1: Cannot connect to ");

	/* The daemon keeps serving the others: A is told it is up to date from the cached
	 * answer, and D now takes the release, served whole from the cache. */
	world_devsim(&w, &a, "a", a_args);
	world_devsim_exit(&w, &a, 0);
	tproc_free(&a);
	ck_assert_uint_eq(tfile_count(a_log, "up to date at 2.0.0 (latest)"), 2);
	world_devsim(&w, &d, "d", d_args);
	tproc_wait_exit(&d, E2E_TIMEOUT_MS); /* 1: after its install Memfault is still away */
	tproc_free(&d);
	ck_assert(world_installed(&w, "d", "D-1"));
	world_gw_wait(&w, "D-1: Installed 2.0.0");
	ck_assert(tproc_running(&w.gwd));
	ck_assert_int_eq(world_gw_stop(&w), 0);
	free(a_log);
	free(b_log);
	world_free(&w);
}
END_TEST

START_TEST(test_sighup)
{
	char addr[32], links[256];
	const char *args[] = {"--tcp", addr, "--once", NULL};
	uint16_t port = tnet_free_port();
	struct tproc dev = {0};
	struct world w;

	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	world_init(&w, "e2e-hup", 32 * 1024 + 3);
	world_serve(&w, NULL, "", WORLD_UNIX_LINK);

	/* a broken file: every error reported, the running configuration kept */
	world_config(&w, "max_transfers = lots", WORLD_UNIX_LINK, NULL);
	ck_assert_int_eq(kill(w.gwd.pid, SIGHUP), 0);
	world_gw_wait(&w, "max_transfers = lots: not a number");
	world_gw_wait(&w, "keeping the running configuration");
	ck_assert(tproc_running(&w.gwd));

	/* a good one adds a TCP link and leaves the unix one alone */
	snprintf(links, sizeof(links), "%s[tcp \"lab\"]\nlisten = 127.0.0.1:%u\n", WORLD_UNIX_LINK,
	    port);
	world_config(&w, "", links, NULL);
	ck_assert_int_eq(kill(w.gwd.pid, SIGHUP), 0);
	world_gw_wait(&w, "Link lab added");
	world_gw_wait(&w, "Link lab: listening on tcp:127.0.0.1:");
	world_gw_wait(&w, "Reloaded configuration from");
	ck_assert_uint_eq(tfile_count(w.gw_log, "Link sim changed"), 0);
	ck_assert_uint_eq(tfile_count(w.gw_log, "Link sim removed"), 0);
	world_devsim(&w, &dev, "dev", args);
	world_devsim_exit(&w, &dev, 0);
	ck_assert(world_installed(&w, "dev", "SIM-001"));

	/* changing its settings re-opens it, and only it */
	snprintf(links, sizeof(links),
	    "%s[tcp \"lab\"]\nlisten = 127.0.0.1:%u\nmax_connections = 3\n", WORLD_UNIX_LINK, port);
	world_config(&w, "", links, NULL);
	ck_assert_int_eq(kill(w.gwd.pid, SIGHUP), 0);
	world_gw_wait(&w, "Link lab changed; re-opening it");
	world_gw_wait(&w, "Link lab: listening on tcp:127.0.0.1:");
	ck_assert_uint_eq(tfile_count(w.gw_log, "Link sim changed"), 0);

	/* and removing it closes it */
	world_config(&w, "", WORLD_UNIX_LINK, NULL);
	ck_assert_int_eq(kill(w.gwd.pid, SIGHUP), 0);
	world_gw_wait(&w, "Link lab removed");
	ck_assert_int_eq(world_gw_stop(&w), 0);
	tproc_free(&dev);
	world_free(&w);
}
END_TEST

/* Bytes of the partial download in the cache, or 0. */
static uint64_t
partial_bytes(struct world *w)
{
	char path[1024];
	struct stat st;

	snprintf(path, sizeof(path), "%s/cache/partial/%s.part", w->dir, w->sha);
	return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* The highest "progress" offset in a devsim's events. */
static uint64_t
device_progress(const char *events)
{
	char *text = tfile_read(events, NULL), *p;
	uint64_t best = 0, v;

	if (text == NULL)
		return 0;
	for (p = text; (p = strstr(p, "\"event\":\"progress\",\"offset\":")) != NULL; p++) {
		v = strtoull(p + strlen("\"event\":\"progress\",\"offset\":"), NULL, 10);
		if (v > best)
			best = v;
	}
	free(text);
	return best;
}

START_TEST(test_sigterm_restart)
{
	/* the CDN drips the payload the first time, so the daemon is stopped mid-download */
	static const char scenario[] =
	    "{\"responses\": [{\"path\": \"/cdn/fw.bin\", \"drip_ms\": 50, \"drip_bytes\": 8192}]}";
	const char *args[] = {"--unix", NULL, "--once", "--write-us-per-kib", "3000", NULL};
	struct tproc dev = {0};
	uint64_t bytes[4], end;
	char reasons[4][256], *events, *text, *at;
	int results[4];
	long long resumed;
	struct world w;

	world_init(&w, "e2e-term", 384 * 1024 + 11);
	events = tdir_join(w.dir, "dev.events");
	args[1] = w.sock;
	world_serve(&w, scenario, "", WORLD_UNIX_LINK);
	world_devsim(&w, &dev, "dev", args);

	/* 1. SIGTERM while the payload is downloading: the partial file stays */
	end = tclock_ms() + E2E_TIMEOUT_MS;
	while (partial_bytes(&w) < 64 * 1024) {
		if (tclock_ms() > end)
			world_fail(&w, "the download did not start");
		tclock_sleep_ms(10);
	}
	ck_assert_int_eq(world_gw_stop(&w), 0);
	ck_assert_uint_gt(partial_bytes(&w), 0);
	ck_assert_uint_lt(partial_bytes(&w), w.size);
	ck_assert_uint_eq(tfile_count(w.gw_log, "otagwd info: Stopped"), 1);

	/* restarted, it resumes the download with a Range request, then sends the image */
	world_gw_start(&w);
	world_gw_wait(&w, "Resuming the download of 2.0.0");
	ck_assert(tproc_wait_count(&w.mock, "Range: bytes=", 1, E2E_TIMEOUT_MS));
	ck_assert_uint_eq(tfile_count(w.mock.log, "-> 206"), 1);
	world_gw_wait(&w, "SIM-001: Offering 2.0.0");

	/* 2. SIGTERM in the middle of the transfer: the history records where it stopped */
	end = tclock_ms() + E2E_TIMEOUT_MS;
	while (device_progress(events) < 96 * 1024) {
		if (tclock_ms() > end || !tproc_running(&dev))
			world_fail(&w, "the transfer did not get going");
		tclock_sleep_ms(10);
	}
	ck_assert_int_eq(world_gw_stop(&w), 0);
	ck_assert_uint_eq(world_history(&w, "SIM-001", results, bytes, reasons, 4), 1);
	ck_assert_int_eq(results[0], HISTORY_RESULT_ABORTED);
	ck_assert_msg(strncmp(reasons[0], "otagwd stopped at ", 18) == 0, "%s", reasons[0]);
	ck_assert_uint_gt(bytes[0], 0);

	/* restarted, the device resumes where it was */
	world_gw_start(&w);
	world_devsim_exit(&w, &dev, 0);
	ck_assert(world_installed(&w, "dev", "SIM-001"));
	world_gw_wait(&w, "SIM-001: Installed 2.0.0");
	text = tfile_read(w.gw_log, NULL);
	at = strstr(text, "Resuming 2.0.0 at ");
	ck_assert_ptr_nonnull(at);
	resumed = strtoll(at + strlen("Resuming 2.0.0 at "), NULL, 10);
	ck_assert_int_ge(resumed, (long long)bytes[0]);
	free(text);
	/* one payload download in all: the first, cut, and its resumption */
	ck_assert_uint_eq(tfile_count(w.mock.log, "GET /cdn/fw.bin?"), 2);
	ck_assert_int_eq(world_gw_stop(&w), 0);
	ck_assert_uint_eq(world_history(&w, "SIM-001", results, bytes, reasons, 4), 2);
	ck_assert_int_eq(results[0], HISTORY_RESULT_INSTALLED);
	tproc_free(&dev);
	free(events);
	world_free(&w);
}
END_TEST

/* What cannot work is refused at start with a message that names it, and exit status 1. */
START_TEST(test_start_failures)
{
	struct world w;
	char *log;

	world_init(&w, "e2e-fail", 1024);
	world_mock(&w, NULL);
	log = tdir_join(w.dir, "otagwd.log");

	/* a state directory whose parent does not exist */
	{
		char *bad = tdir_join(w.dir, "missing/state");
		char general[512];

		snprintf(general, sizeof(general), "state_dir = %s", bad);
		world_config(&w, "", WORLD_UNIX_LINK, NULL);
		/* world_config() writes state_dir itself; a second state_dir is a config error,
		 * so rewrite the file with the bad one */
		{
			char *text = tfile_read(w.conf, NULL), *at = strstr(text, "state_dir = "),
			     *nl;
			char *fixed;

			ck_assert_ptr_nonnull(at);
			nl = strchr(at, '\n');
			ck_assert_int_gt(
			    asprintf(&fixed, "%.*s%s%s", (int)(at - text), text, general, nl), 0);
			tfile_write_str(w.conf, 0600, fixed);
			free(fixed);
			free(text);
		}
		{
			char *argv[] = {(char *)tproc_prog("OTAGWD"), "-c", w.conf, NULL};

			tproc_spawn_log(&w.gwd, "otagwd", argv, log, NULL);
		}
		ck_assert_int_eq(tproc_wait_exit(&w.gwd, E2E_TIMEOUT_MS), 1);
		tproc_free(&w.gwd);
		ck_assert_uint_eq(tfile_count(log, "Failed to open the payload store"), 1);
		ck_assert_uint_ge(tfile_count(log, bad), 1);
		ck_assert_uint_eq(tfile_count(log, "Failed to start store, exiting"), 1);
		free(bad);
	}

	/* a [uart] that is no serial device */
	world_config(&w, "", "[uart \"bad\"]\ndevice = /dev/null\n", NULL);
	{
		char *argv[] = {(char *)tproc_prog("OTAGWD"), "-c", w.conf, NULL};

		tproc_spawn_log(&w.gwd, "otagwd", argv, log, NULL);
	}
	ck_assert_int_eq(tproc_wait_exit(&w.gwd, E2E_TIMEOUT_MS), 1);
	tproc_free(&w.gwd);
	ck_assert_uint_eq(tfile_count(log, "Failed to open link bad: /dev/null: "), 1);
	ck_assert_uint_eq(tfile_count(log, "Failed to start links, exiting"), 1);
	free(log);
	world_free(&w);
}
END_TEST

static Suite *
ops_suite(void)
{
	Suite *s = suite_create("e2e-ops");
	TCase *tc = tcase_create("ops");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_upstream_unreachable);
	tcase_add_test(tc, test_sighup);
	tcase_add_test(tc, test_sigterm_restart);
	tcase_add_test(tc, test_start_failures);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(ops_suite());
}
