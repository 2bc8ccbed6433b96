/* The end-to-end world (see world.h). */
#include "world.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "db.h"
#include "history.h"

void
world_init(struct world *w, const char *tag, size_t size)
{
	uint8_t *img = malloc(size);

	memset(w, 0, sizeof(*w));
	ck_assert_ptr_nonnull(img);
	w->dir = tdir_new(tag);
	w->sock = tdir_join(w->dir, "sim.sock");
	w->size = size;
	tdata_image(img, size, (uint32_t)size);
	tdata_sha256(img, size, NULL, w->sha);
	w->fw = tdir_join(w->dir, "fw.bin");
	tfile_write(w->fw, 0644, img, size);
	free(img);
	w->conf = tdir_join(w->dir, "otagw.conf");
	w->gw_log = tdir_join(w->dir, "otagwd.log");
	{
		char *key = tdir_join(w->dir, "key");

		tfile_write_str(key, 0600, WORLD_KEY "\n");
		free(key);
	}
}

static void
world_dump_all(struct world *w)
{
	struct dirent *de;
	DIR *d = opendir(w->dir);

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		char *p;

		if (n < 5 || strcmp(de->d_name + n - 4, ".log") != 0)
			continue;
		p = tdir_join(w->dir, de->d_name);
		tfile_dump(de->d_name, p);
		free(p);
	}
	closedir(d);
}

void
world_fail(struct world *w, const char *msg)
{
	world_dump_all(w);
	ck_abort_msg("%s", msg);
	abort(); /* not reached */
}

void
world_mock(struct world *w, const char *scenario)
{
	char *info = tdir_join(w->dir, "mock.json"), *log = tdir_join(w->dir, "mockmf.log");
	char *scen = tdir_join(w->dir, "scenario.json"), release[256], payload[600];
	char *argv[16];
	json_error_t err;
	json_t *j = NULL;
	uint64_t end;
	int n = 0;

	snprintf(payload, sizeof(payload), "fw.bin=%s", w->fw);
	snprintf(release, sizeof(release), WORLD_HW ":" WORLD_SWTYPE ":" WORLD_VERSION ":fw.bin");
	argv[n++] = (char *)tproc_prog("OTAGW_MOCKMF");
	argv[n++] = "-k";
	argv[n++] = WORLD_KEY;
	argv[n++] = "-P";
	argv[n++] = payload;
	argv[n++] = "-r";
	argv[n++] = release;
	argv[n++] = "-i";
	argv[n++] = info;
	if (scenario != NULL) {
		tfile_write_str(scen, 0644, scenario);
		argv[n++] = "-s";
		argv[n++] = scen;
	}
	argv[n] = NULL;
	unlink(info);
	tproc_spawn_log(&w->mock, "mockmf", argv, log, NULL);
	end = tclock_ms() + E2E_TIMEOUT_MS;
	while ((j = json_load_file(info, 0, &err)) == NULL) {
		if (!tproc_running(&w->mock) || tclock_ms() > end)
			world_fail(w, "the Memfault stand-in did not start");
		tclock_sleep_ms(20);
	}
	snprintf(w->base_url, sizeof(w->base_url), "%s",
	    json_string_value(json_object_get(j, "base_url")));
	snprintf(
	    w->ca_file, sizeof(w->ca_file), "%s", json_string_value(json_object_get(j, "ca_file")));
	json_decref(j);
	free(info);
	free(log);
	free(scen);
}

void
world_config(struct world *w, const char *general, const char *links, const char *base_url)
{
	/* Tests talk only to buses they start: without a [dbus] section of the test's own, otagwd
	 * must not reach for the machine's system bus. */
	tfile_template(w->conf, 0600, w->dir,
	    "[general]\nstate_dir = @DIR@/state\ncache_dir = @DIR@/cache\n"
	    "cache_max = 64M\n%s\n"
	    "[memfault]\nproject_key_file = @DIR@/key\nbase_url = %s\n"
	    "ca_file = %s\nrequest_timeout = 10s\n\n%s\n%s",
	    general, base_url != NULL ? base_url : w->base_url, w->ca_file, links,
	    strstr(links, "[dbus]") == NULL ? "[dbus]\nbus = none\n" : "");
}

void
world_serve(struct world *w, const char *scenario, const char *general, const char *links)
{
	world_mock(w, scenario);
	world_config(w, general, links, NULL);
	world_gw_start(w);
}

void
world_gw_start(struct world *w)
{
	char *argv[] = {(char *)tproc_prog("OTAGWD"), "-c", w->conf, "-v", NULL};
	char mark[64];

	/* the log accumulates over restarts: waits start after this run's marker */
	snprintf(mark, sizeof(mark), "==== otagwd run %u ====\n", ++w->gw_runs);
	{
		FILE *f = fopen(w->gw_log, "a");

		ck_assert_ptr_nonnull(f);
		fputs(mark, f);
		fclose(f);
	}
	tproc_spawn_log(&w->gwd, "otagwd", argv, w->gw_log, NULL);
	if (!tproc_wait_out(&w->gwd, mark, &w->gw_at, E2E_TIMEOUT_MS))
		world_fail(w, "otagwd's log did not start");
	world_gw_wait(w, " ready (");
}

void
world_gw_wait(struct world *w, const char *needle)
{
	char msg[512];

	if (tproc_wait_out(&w->gwd, needle, &w->gw_at, E2E_TIMEOUT_MS))
		return;
	snprintf(msg, sizeof(msg), "otagwd did not log \"%s\"%s", needle,
	    tproc_running(&w->gwd) ? "" : " (it exited)");
	world_fail(w, msg);
}

int
world_gw_stop(struct world *w)
{
	int r = tproc_stop(&w->gwd, SIGTERM, E2E_TIMEOUT_MS);

	tproc_free(&w->gwd);
	return r;
}

void
world_devsim(struct world *w, struct tproc *p, const char *name, const char *const *args)
{
	char *state = tdir_join(w->dir, name), *events, *log, *argv[48];
	size_t n = 0, i;

	ck_assert_int_gt(asprintf(&events, "%s/%s.events", w->dir, name), 0);
	ck_assert_int_gt(asprintf(&log, "%s/%s.log", w->dir, name), 0);
	argv[n++] = (char *)tproc_prog("OTAGW_DEVSIM");
	argv[n++] = "--state-dir";
	argv[n++] = state;
	argv[n++] = "--events";
	argv[n++] = events;
	argv[n++] = "--progress";
	argv[n++] = "plain";
	for (i = 0; args != NULL && args[i] != NULL && n < 46; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	tproc_spawn_log(p, name, argv, log, NULL);
	free(state);
	free(events);
	free(log);
}

void
world_devsim_exit(struct world *w, struct tproc *p, int want)
{
	int r = tproc_wait_exit(p, E2E_TIMEOUT_MS);
	char msg[128];

	if (r == want)
		return;
	snprintf(msg, sizeof(msg), "%s exited with %d, not %d", p->name, r, want);
	world_fail(w, msg);
}

void
world_device_once(struct world *w, const char *name, const char *serial, const char *const *extra)
{
	const char *args[24] = {"--unix", w->sock, "--serial", serial, "--once"};
	struct tproc p = {0};
	size_t n = 5, i;

	for (i = 0; extra != NULL && extra[i] != NULL && n < 23; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	world_devsim(w, &p, name, args);
	world_devsim_exit(w, &p, 0);
	tproc_free(&p);
}

bool
world_installed(struct world *w, const char *name, const char *serial)
{
	char path[1024], sha[65];

	snprintf(path, sizeof(path), "%s/%s/%s/installed.bin", w->dir, name, serial);
	return tdata_sha256_file(path, sha) && strcmp(sha, w->sha) == 0;
}

size_t
world_history(struct world *w, const char *serial, int *results, uint64_t *bytes,
    char reasons[][256], size_t max)
{
	char *path, err[512];
	struct history_entry *h = NULL;
	struct db *db;
	size_t n = 0, i;

	ck_assert_int_gt(asprintf(&path, "%s/state/otagw.db", w->dir), 0);
	ck_assert_msg(db_open(path, &db, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(history_list(db, serial, max, &h, &n), 0);
	for (i = 0; i < n; i++) {
		results[i] = (int)h[i].result;
		bytes[i] = h[i].bytes;
		if (reasons != NULL)
			snprintf(reasons[i], 256, "%s", h[i].reason);
	}
	ck_assert_int_eq(db_integrity_check(db), 0);
	free(h);
	db_free(db);
	free(path);
	return n;
}

void
world_free(struct world *w)
{
	if (w->gwd.pid > 0)
		tproc_stop(&w->gwd, SIGTERM, E2E_TIMEOUT_MS);
	tproc_free(&w->gwd);
	if (w->mock.pid > 0)
		tproc_stop(&w->mock, SIGTERM, E2E_TIMEOUT_MS);
	tproc_free(&w->mock);
	tdir_rmrf(w->dir);
	free(w->dir);
	free(w->sock);
	free(w->fw);
	free(w->conf);
	free(w->gw_log);
	memset(w, 0, sizeof(*w));
}
