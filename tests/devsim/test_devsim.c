/* otagw-devsim, the real program, against the in-process test gateway (gwpeer) over a pty or a
 * unix socket, plus one simulated device driven in-process over a SOCK_SEQPACKET socketpair (the
 * packet-link seam BLE will use): a full update with the reboot into the new version, a reboot
 * mid-transfer that resumes from the persisted state, an image larger than the slot, flash
 * stalls with a receive-ring overrun, several devices in one process, and the command line. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "ck.h"
#include "device.h"
#include "gwpeer.h"
#include "report.h"
#include "tdata.h"
#include "tdir.h"
#include "tfile.h"
#include "tproc.h"

#define RUN_MS 90000

static char *dir;

static void
setup(void)
{
	dir = tdir_new("devsim");
}

static void
teardown(void)
{
	tdir_rmrf(dir);
	free(dir);
}

/* A firmware-like image (erased blocks among pseudo-random bytes), malloc'd. */
static uint8_t *
make_image(uint32_t size, uint32_t seed)
{
	uint8_t *p = malloc(size);

	ck_assert_ptr_nonnull(p);
	tdata_image(p, size, seed);
	return p;
}

/* Waits for path to appear (devsim creates the pty symlink once running). */
static void
wait_for_path(const char *path)
{
	int i;

	for (i = 0; i < 1000; i++) {
		if (access(path, F_OK) == 0)
			return;
		usleep(10000);
	}
	ck_abort_msg("%s did not appear", path);
}

static int
open_slave(const char *path)
{
	int fd;

	wait_for_path(path);
	fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	return fd;
}

/* True once the child has exited (without reaping it: tproc_wait_exit() does). */
static bool
child_exited(void *arg)
{
	struct tproc *p = arg;
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	return waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid;
}

/* The whole file; fails the test if it cannot be read. */
static char *
read_file(const char *path, size_t *len)
{
	char *text = tfile_read(path, len);

	ck_assert_msg(text != NULL, "read %s: %s", path, strerror(errno));
	return text;
}

/* What the devsim run by run_pty() wrote to its events file; free() it. */
static char *
read_events(void)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/events.jsonl", dir);
	return read_file(path, NULL);
}

/* The events file holds a line with this event name and every needle in it. */
static bool
has_event(const char *events, const char *name, const char *needle)
{
	char key[64];
	const char *line = events;

	snprintf(key, sizeof(key), "\"event\":\"%s\"", name);
	while (line && *line) {
		const char *end = strchr(line, '\n');
		size_t n = end ? (size_t)(end - line) : strlen(line);
		char *copy = strndup(line, n);
		bool hit = strstr(copy, key) && (!needle || strstr(copy, needle));

		free(copy);
		if (hit)
			return true;
		line = end ? end + 1 : NULL;
	}
	return false;
}

static void
assert_installed(
    const char *state, const char *serial, const uint8_t *image, uint32_t size, const char *version)
{
	char path[PATH_MAX], *got, needle[128];
	size_t len;

	snprintf(path, sizeof(path), "%s/%s/installed.bin", state, serial);
	got = read_file(path, &len);
	ck_assert_uint_eq(len, size);
	ck_assert_msg(memcmp(got, image, size) == 0, "installed.bin differs from the image");
	free(got);
	snprintf(path, sizeof(path), "%s/%s/device.json", state, serial);
	got = read_file(path, NULL);
	snprintf(needle, sizeof(needle), "\"current_version\": \"%s\"", version);
	ck_assert_msg(strstr(got, needle), "device.json: %s", got);
	free(got);
	snprintf(path, sizeof(path), "%s/%s/resume.json", state, serial);
	ck_assert_msg(access(path, F_OK) < 0, "resume.json left behind after the install");
}

/* Runs devsim on a pty against one gwpeer until devsim exits; returns its exit status. */
static int
run_pty(struct gwpeer *g, const struct gwpeer_opts *go, const char *const *extra, struct tproc *p)
{
	char tty[PATH_MAX], state[PATH_MAX], events[PATH_MAX];
	const char *argv[40];
	struct gwpeer *peers[1] = {g};
	int n = 0, i;

	snprintf(tty, sizeof(tty), "%s/dev.tty", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(events, sizeof(events), "%s/events.jsonl", dir);
	argv[n++] = tproc_prog("OTAGW_DEVSIM");
	argv[n++] = "--pty";
	argv[n++] = tty;
	argv[n++] = "--state-dir";
	argv[n++] = state;
	argv[n++] = "--events";
	argv[n++] = events;
	argv[n++] = "--progress";
	argv[n++] = "plain";
	argv[n++] = "--serial";
	argv[n++] = "T-1";
	argv[n++] = "--once";
	argv[n++] = "--timeout";
	argv[n++] = "80";
	for (i = 0; extra && extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	tproc_spawn(p, (char *const *)argv, NULL);
	gwpeer_init(g, open_slave(tty), go);
	gwpeer_run(peers, 1, child_exited, p, RUN_MS);
	return tproc_wait_exit(p, 10000);
}

START_TEST(test_full_update)
{
	const uint32_t size = 200 * 1024 + 77;
	uint8_t *image = make_image(size, 1);
	struct gwpeer_opts go = {image, size, "1.1.0", false, 0, 0};
	const char *extra[] = {"--current-version", "1.0.0", "--erase-ms", "2", NULL};
	struct tproc p;
	struct gwpeer g;
	char path[PATH_MAX], *events;
	int code = run_pty(&g, &go, extra, &p);

	ck_assert_msg(code == 0, "devsim exited %d: %s%s", code, p.out, p.err);
	ck_assert_int_eq(g.result_status, MSG_STATUS_OK);
	ck_assert_msg(g.confirmed, "no HELLO with the new version after DONE");
	ck_assert_str_eq(g.serial, "T-1");
	ck_assert_str_eq(g.last_version, "1.1.0");
	ck_assert_uint_eq(g.first_request_offset, 0);
	snprintf(path, sizeof(path), "%s/state", dir);
	assert_installed(path, "T-1", image, size, "1.1.0");
	events = read_events();
	ck_assert(has_event(events, "offer", "\"version\":\"1.1.0\""));
	ck_assert(has_event(events, "verify", "\"match\":true"));
	ck_assert(has_event(events, "verify", "\"double_programs\":0"));
	ck_assert(has_event(events, "transfer", "\"size\":204877"));
	ck_assert(has_event(events, "result", "\"status\":\"ok\""));
	ck_assert(has_event(events, "reboot", "\"reason\":\"install\""));
	ck_assert(has_event(events, "up-to-date", "\"version\":\"1.1.0\""));
	ck_assert(has_event(events, "summary", "\"outcome\":\"up-to-date\""));
	ck_assert_msg(strstr(p.out, "100%"), "no progress lines: %s", p.out);
	ck_assert_msg(strstr(p.out, "OpenSSL agrees"), "%s", p.out);
	free(events);
	gwpeer_close(&g);
	tproc_free(&p);

	/* Restarted, the device runs what it installed and is up to date at once. */
	{
		const char *again[] = {"--current-version", "1.0.0", NULL};

		code = run_pty(&g, &go, again, &p);
		ck_assert_msg(code == 0, "devsim exited %d: %s%s", code, p.out, p.err);
		ck_assert_uint_eq(g.data_frames, 0);
		ck_assert_str_eq(g.last_version, "1.1.0");
		gwpeer_close(&g);
		tproc_free(&p);
	}
	free(image);
}
END_TEST

START_TEST(test_reboot_resumes)
{
	const uint32_t size = 300 * 1024;
	uint8_t *image = make_image(size, 2);
	struct gwpeer_opts go = {image, size, "2.0.0", false, 0, 0};
	const char *extra[] = {"--reboot-at-byte", "150000", "--sector-size", "4K", NULL};
	struct tproc p;
	struct gwpeer g;
	char path[PATH_MAX], *events;
	int code = run_pty(&g, &go, extra, &p);

	ck_assert_msg(code == 0, "devsim exited %d: %s%s", code, p.out, p.err);
	ck_assert_int_eq(g.result_status, MSG_STATUS_OK);
	/* The HELLO after the reboot names the partial image: persisted every 16 KiB and
	 * rounded down to a sector, so at most 16 KiB + 4 KiB behind. */
	ck_assert_uint_ge(g.hellos_resume, 1);
	ck_assert_uint_le(g.last_resume_offset, 150000 + 1024);
	ck_assert_uint_ge(g.last_resume_offset, 150000 - 16384 - 4096);
	ck_assert_uint_eq(g.last_resume_offset % 4096, 0);
	ck_assert_uint_eq(g.first_request_offset, g.last_resume_offset);
	/* Nothing like a second full transfer: only the re-fetched part is sent twice. */
	ck_assert_uint_lt(g.data_bytes, (uint64_t)size + 16384 + 4096 + 8192);
	snprintf(path, sizeof(path), "%s/state", dir);
	assert_installed(path, "T-1", image, size, "2.0.0");
	events = read_events();
	ck_assert(has_event(events, "reboot", "\"reason\":\"reboot-at-byte\""));
	ck_assert(has_event(events, "hello", "\"resume_offset\""));
	ck_assert(has_event(events, "verify", "\"match\":true"));
	ck_assert(has_event(events, "verify", "\"double_programs\":0"));
	free(events);
	gwpeer_close(&g);
	tproc_free(&p);
	free(image);
}
END_TEST

START_TEST(test_image_larger_than_slot)
{
	const uint32_t size = 100 * 1024;
	uint8_t *image = make_image(size, 3);
	struct gwpeer_opts go = {image, size, "3.0.0", false, 0, 0};
	const char *extra[] = {"--slot-size", "64K", NULL};
	struct tproc p;
	struct gwpeer g;
	int code = run_pty(&g, &go, extra, &p);

	ck_assert_int_eq(code, 1);
	ck_assert_int_eq(g.result_status, MSG_STATUS_NO_SPACE);
	ck_assert_uint_eq(g.data_frames, 0);
	ck_assert_msg(strstr(p.err, "update to 3.0.0 refused: the image (102400 bytes) is larger "
				    "than the slot (65536 bytes"),
	    "stderr: %s", p.err);
	gwpeer_close(&g);
	tproc_free(&p);
	free(image);
}
END_TEST

/* While a sector "erases" the device runs nothing: it pauses the gateway first, its next ACK
 * waits for the erase, and what arrives meanwhile beyond its ring is lost and recovered. */
START_TEST(test_stall_and_overrun)
{
	const uint32_t size = 32 * 1024;
	uint8_t *image = make_image(size, 4);
	/* 16 duplicate frames of 256 bytes (4.3 KB) on the first pause: more than the device's
	 * 4 x 1040-byte ring holds. */
	struct gwpeer_opts go = {image, size, "1.2.0", false, 16, 256};
	const char *extra[] = {"--erase-ms", "150", "--sector-size", "4096", NULL};
	struct tproc p;
	struct gwpeer g;
	char path[PATH_MAX], *events;
	uint32_t elapsed;
	int code = run_pty(&g, &go, extra, &p);

	ck_assert_msg(code == 0, "devsim exited %d: %s%s", code, p.out, p.err);
	ck_assert_int_eq(g.result_status, MSG_STATUS_OK);
	/* A pause per sector, and the transfer cannot beat its eight erases. */
	ck_assert_uint_ge(g.pause_acks, 8);
	elapsed = g.result_ms - g.first_pause_ms;
	ck_assert_uint_ge(elapsed, 7 * 150);
	events = read_events();
	ck_assert_msg(has_event(events, "overrun", NULL), "no overrun: %s", events);
	ck_assert(has_event(events, "verify", "\"match\":true"));
	ck_assert(has_event(events, "transfer", "\"pauses\":"));
	free(events);
	snprintf(path, sizeof(path), "%s/state", dir);
	assert_installed(path, "T-1", image, size, "1.2.0");
	gwpeer_close(&g);
	tproc_free(&p);
	free(image);
}
END_TEST

struct many {
	struct gwpeer *g[3];
	struct tproc *p;
};

static bool
many_done(void *arg)
{
	struct many *m = arg;

	return child_exited(m->p);
}

/* Three devices in one process, each its own unix connection, started before the gateway
 * listens: they retry until it does. */
START_TEST(test_count_unix)
{
	const uint32_t size = 64 * 1024;
	uint8_t *image = make_image(size, 5);
	struct gwpeer_opts go = {image, size, "1.0.1", false, 0, 0};
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char sock[PATH_MAX], state[PATH_MAX];
	struct gwpeer g[3];
	struct tproc p;
	struct many m = {{&g[0], &g[1], &g[2]}, &p};
	int lfd, i, code;
	const char *argv[] = {tproc_prog("OTAGW_DEVSIM"), "--unix", sock, "--count", "3",
	    "--serial", "RACK-%02d", "--state-dir", state, "--once", "--timeout", "80",
	    "--progress", "plain", NULL};

	snprintf(sock, sizeof(sock), "%s/gw.sock", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	tproc_spawn(&p, (char *const *)argv, NULL);
	/* each device has found no gateway at least once */
	ck_assert(tproc_wait_count(&p, ": No such file or directory", 3, RUN_MS));
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(lfd, 0);
	ck_assert_uint_lt(strlen(sock), sizeof(sun.sun_path));
	memcpy(sun.sun_path, sock, strlen(sock) + 1);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ck_assert_int_eq(listen(lfd, 8), 0);
	for (i = 0; i < 3; i++) {
		int fd = accept(lfd, NULL, NULL);

		ck_assert_int_ge(fd, 0);
		gwpeer_init(&g[i], fd, &go);
	}
	close(lfd);
	gwpeer_run(m.g, 3, many_done, &m, RUN_MS);
	code = tproc_wait_exit(&p, 10000);
	ck_assert_msg(code == 0, "devsim exited %d: %s%s", code, p.out, p.err);
	for (i = 0; i < 3; i++) {
		char serial[16];

		snprintf(serial, sizeof(serial), "RACK-%02d", i + 1);
		ck_assert_int_eq(g[i].result_status, MSG_STATUS_OK);
		ck_assert(g[i].confirmed);
		assert_installed(state, serial, image, size, "1.0.1");
		gwpeer_close(&g[i]);
	}
	/* Each connection carried a different device. */
	ck_assert_str_ne(g[0].serial, g[1].serial);
	ck_assert_str_ne(g[1].serial, g[2].serial);
	ck_assert_str_ne(g[0].serial, g[2].serial);
	tproc_free(&p);
	free(image);
}
END_TEST

/* --- in-process: the packet-link seam ---------------------------------------------------- */

struct inproc {
	struct event_base *base;
	bool finished, ok;
};

static void
inproc_finish(struct device *d, bool ok, const char *reason, void *arg)
{
	struct inproc *ip = arg;

	(void)d;
	(void)reason;
	ip->finished = true;
	ip->ok = ok;
}

START_TEST(test_packet_link)
{
	const uint32_t size = 48 * 1024 + 5;
	uint8_t *image = make_image(size, 6);
	struct gwpeer_opts go = {image, size, "4.0.0", true, 0, 0};
	struct device_options opt = {
	    .serial = "BLE-1",
	    .hardware_version = "evt",
	    .software_type = "main",
	    .factory_version = "3.9.9",
	    .max_payload = 239, /* ATT_MTU 247 */
	    .window = 8,
	    .slot_size = 128 * 1024,
	    .sector_size = 4096,
	    .once = true,
	};
	struct inproc ip = {0};
	struct report *rep;
	struct device *dev;
	struct gwpeer g;
	char err[512];
	int sv[2];
	uint32_t start;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	snprintf(opt.dir, sizeof(opt.dir), "%s/BLE-1", dir);
	ip.base = event_base_new();
	ck_assert_ptr_nonnull(ip.base);
	ck_assert_int_eq(report_new(ip.base, NULL, REPORT_MODE_QUIET, &rep, err, sizeof(err)), 0);
	ck_assert_msg(device_new_fd(ip.base, &opt, sv[0], true, rep, inproc_finish, &ip, &dev, err,
			  sizeof(err)) == 0,
	    "%s", err);
	gwpeer_init(&g, sv[1], &go);
	start = gwpeer_now_ms();
	while (!ip.finished && gwpeer_now_ms() - start < RUN_MS) {
		event_base_loop(ip.base, EVLOOP_NONBLOCK);
		gwpeer_step(&g);
		usleep(1000);
	}
	ck_assert(ip.finished && ip.ok);
	ck_assert_int_eq(g.result_status, MSG_STATUS_OK);
	ck_assert(g.confirmed);
	ck_assert_uint_eq(g.bad_msgs, 0);
	assert_installed(dir, "BLE-1", image, size, "4.0.0");
	device_free(dev);
	report_free(rep);
	event_base_free(ip.base);
	gwpeer_close(&g);
	free(image);
}
END_TEST

/* --- the command line ---------------------------------------------------------------------- */

START_TEST(test_help)
{
	const char *argv[] = {tproc_prog("OTAGW_DEVSIM"), "--help", NULL};
	const char *opts[] = {"--pty", "--tty", "--tcp", "--unix", "--serial", "--hardware-version",
	    "--software-type", "--current-version", "--max-payload", "--window", "--max-stall-ms",
	    "--delta", "--state-dir", "--erase-ms", "--sector-size", "--write-us-per-kib",
	    "--reboot-at-byte", "--once", "--count", "--events", NULL};
	struct tproc p;
	int i;

	ck_assert_int_eq(tproc_run(&p, (char *const *)argv, NULL, 60000), 0);
	ck_assert(strstr(p.out, "Usage: otagw-devsim"));
	for (i = 0; opts[i]; i++)
		ck_assert_msg(strstr(p.out, opts[i]), "--help does not mention %s", opts[i]);
	tproc_free(&p);
}
END_TEST

static const struct {
	const char *args[8];
	int code;
	const char *says;
} bad_args[] = {
    {{NULL}, 2, "exactly one link"},
    {{"--pty", "/tmp/x", "--unix", "/tmp/y", NULL}, 2, "exactly one link"},
    {{"--pty", "P", "--window", "0", NULL}, 2, "--window"},
    {{"--pty", "P", "--max-payload", "5000", NULL}, 2, "--max-payload"},
    {{"--pty", "P", "--count", "3", "--serial", "FIXED", NULL}, 2, "%d"},
    {{"--pty", "P", "--serial", "bad serial", NULL}, 2, "not a valid serial"},
    {{"--pty", "P", "--sector-size", "3000", NULL}, 2, "power of two"},
    {{"--tcp", "localhost", NULL}, 2, "HOST:PORT"},
    {{"--pty", "P", "--baud", "9600", NULL}, 2, "--tty only"},
    {{"--pty", "P", "--progress", "loud", NULL}, 2, "--progress"},
    {{"--pty", "P", "--hardware-version", "", NULL}, 2, "--hardware-version"},
    {{"--tty", "/dev/null", NULL}, 1, "/dev/null"},
    {{"--pty", "FILE", NULL}, 1, "not a symlink"},
};

START_TEST(test_bad_args)
{
	const char *argv[16];
	char file[PATH_MAX], state[PATH_MAX];
	struct tproc p;
	int n = 0, i;

	snprintf(file, sizeof(file), "%s/file", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	tfile_write_str(file, 0644, "not a tty\n");
	argv[n++] = tproc_prog("OTAGW_DEVSIM");
	argv[n++] = "--state-dir";
	argv[n++] = state;
	for (i = 0; bad_args[_i].args[i]; i++)
		argv[n++] = strcmp(bad_args[_i].args[i], "FILE") == 0 ? file
			    : strcmp(bad_args[_i].args[i], "P") == 0  ? "/nonexistent/p"
								      : bad_args[_i].args[i];
	argv[n] = NULL;
	ck_assert_int_eq(tproc_run(&p, (char *const *)argv, NULL, 60000), bad_args[_i].code);
	ck_assert_msg(strstr(p.err, bad_args[_i].says), "case %d: stderr lacks '%s': %s", _i,
	    bad_args[_i].says, p.err);
	tproc_free(&p);
}
END_TEST

static Suite *
devsim_suite(void)
{
	Suite *s = suite_create("devsim");
	TCase *tc = tcase_create("update");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, test_full_update);
	tcase_add_test(tc, test_reboot_resumes);
	tcase_add_test(tc, test_image_larger_than_slot);
	tcase_add_test(tc, test_stall_and_overrun);
	tcase_add_test(tc, test_count_unix);
	tcase_add_test(tc, test_packet_link);
	suite_add_tcase(s, tc);
	tc = tcase_create("cli");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_help);
	tcase_add_loop_test(tc, test_bad_args, 0, sizeof(bad_args) / sizeof(bad_args[0]));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(devsim_suite());
}
