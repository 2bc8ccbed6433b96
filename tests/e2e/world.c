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
	w->dir = e2e_tmpdir(tag);
	w->size = size;
	e2e_fill(img, size, (uint32_t)size);
	e2e_sha256_hex(img, size, w->sha);
	w->fw = e2e_path(w->dir, "fw.bin");
	e2e_write(w->fw, 0644, img, size);
	free(img);
	w->conf = e2e_path(w->dir, "otagw.conf");
	w->gw_log = e2e_path(w->dir, "otagwd.log");
	{
		char *key = e2e_path(w->dir, "key");

		e2e_write(key, 0600, WORLD_KEY "\n", 0);
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
		p = e2e_path(w->dir, de->d_name);
		e2e_dump(de->d_name, p);
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
	char *info = e2e_path(w->dir, "mock.json"), *log = e2e_path(w->dir, "mockmf.log");
	char *scen = e2e_path(w->dir, "scenario.json"), release[256], payload[600];
	char *argv[16];
	json_error_t err;
	json_t *j = NULL;
	uint64_t end;
	int n = 0;

	snprintf(payload, sizeof(payload), "fw.bin=%s", w->fw);
	snprintf(release, sizeof(release), WORLD_HW ":" WORLD_SWTYPE ":" WORLD_VERSION ":fw.bin");
	argv[n++] = (char *)e2e_prog("OTAGW_MOCKMF");
	argv[n++] = "-k";
	argv[n++] = WORLD_KEY;
	argv[n++] = "-P";
	argv[n++] = payload;
	argv[n++] = "-r";
	argv[n++] = release;
	argv[n++] = "-i";
	argv[n++] = info;
	if (scenario != NULL) {
		e2e_write(scen, 0644, scenario, 0);
		argv[n++] = "-s";
		argv[n++] = scen;
	}
	argv[n] = NULL;
	unlink(info);
	e2e_spawn(&w->mock, "mockmf", argv, log, NULL);
	end = e2e_now_ms() + E2E_TIMEOUT_MS;
	while ((j = json_load_file(info, 0, &err)) == NULL) {
		if (!e2e_running(&w->mock) || e2e_now_ms() > end)
			world_fail(w, "the Memfault stand-in did not start");
		e2e_sleep_ms(20);
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

/* Replaces every "@DIR@" in s with the world's directory. */
static char *
world_subst(struct world *w, const char *s)
{
	size_t dl = strlen(w->dir), n = 0;
	const char *p;
	char *out, *o;

	for (p = s; (p = strstr(p, "@DIR@")) != NULL; p += 5)
		n++;
	out = malloc(strlen(s) + n * dl + 1);
	ck_assert_ptr_nonnull(out);
	for (o = out, p = s; *p != '\0';) {
		if (strncmp(p, "@DIR@", 5) == 0) {
			memcpy(o, w->dir, dl);
			o += dl;
			p += 5;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return out;
}

void
world_config(struct world *w, const char *general, const char *links, const char *base_url)
{
	char *text, *t;

	ck_assert_int_gt(asprintf(&text,
			     "[general]\nstate_dir = @DIR@/state\ncache_dir = @DIR@/cache\n"
			     "cache_max = 64M\n%s\n"
			     "[memfault]\nproject_key_file = @DIR@/key\nbase_url = %s\n"
			     "ca_file = %s\nrequest_timeout = 10s\n\n%s\n",
			     general, base_url != NULL ? base_url : w->base_url, w->ca_file, links),
	    0);
	t = world_subst(w, text);
	e2e_write(w->conf, 0600, t, 0);
	free(t);
	free(text);
}

void
world_gw_start(struct world *w)
{
	char *argv[] = {(char *)e2e_prog("OTAGWD"), "-c", w->conf, "-v", NULL};
	char mark[64];

	/* the log accumulates over restarts: waits start after this run's marker */
	snprintf(mark, sizeof(mark), "==== otagwd run %u ====\n", ++w->gw_runs);
	{
		FILE *f = fopen(w->gw_log, "a");

		ck_assert_ptr_nonnull(f);
		fputs(mark, f);
		fclose(f);
	}
	e2e_spawn(&w->gwd, "otagwd", argv, w->gw_log, NULL);
	if (!e2e_wait_log(&w->gwd, mark, &w->gw_at, E2E_TIMEOUT_MS))
		world_fail(w, "otagwd's log did not start");
	world_gw_wait(w, " ready (");
}

void
world_gw_wait(struct world *w, const char *needle)
{
	char msg[512];

	if (e2e_wait_log(&w->gwd, needle, &w->gw_at, E2E_TIMEOUT_MS))
		return;
	snprintf(msg, sizeof(msg), "otagwd did not log \"%s\"%s", needle,
	    e2e_running(&w->gwd) ? "" : " (it exited)");
	world_fail(w, msg);
}

int
world_gw_stop(struct world *w)
{
	int r = e2e_stop(&w->gwd, SIGTERM, E2E_TIMEOUT_MS);

	e2e_proc_free(&w->gwd);
	return r;
}

void
world_devsim(struct world *w, struct e2e_proc *p, const char *name, const char *const *args)
{
	char *state = e2e_path(w->dir, name), *events, *log, *argv[48];
	size_t n = 0, i;

	ck_assert_int_gt(asprintf(&events, "%s/%s.events", w->dir, name), 0);
	ck_assert_int_gt(asprintf(&log, "%s/%s.log", w->dir, name), 0);
	argv[n++] = (char *)e2e_prog("OTAGW_DEVSIM");
	argv[n++] = "--state-dir";
	argv[n++] = state;
	argv[n++] = "--events";
	argv[n++] = events;
	argv[n++] = "--progress";
	argv[n++] = "plain";
	for (i = 0; args != NULL && args[i] != NULL && n < 46; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	e2e_spawn(p, name, argv, log, NULL);
	free(state);
	free(events);
	free(log);
}

void
world_devsim_exit(struct world *w, struct e2e_proc *p, int want)
{
	int r = e2e_wait_exit(p, E2E_TIMEOUT_MS);
	char msg[128];

	if (r == want)
		return;
	snprintf(msg, sizeof(msg), "%s exited with %d, not %d", p->name, r, want);
	world_fail(w, msg);
}

bool
world_installed(struct world *w, const char *name, const char *serial)
{
	char path[1024], sha[65];

	snprintf(path, sizeof(path), "%s/%s/%s/installed.bin", w->dir, name, serial);
	return e2e_sha256_file(path, sha) && strcmp(sha, w->sha) == 0;
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
		e2e_stop(&w->gwd, SIGTERM, E2E_TIMEOUT_MS);
	e2e_proc_free(&w->gwd);
	if (w->mock.pid > 0)
		e2e_stop(&w->mock, SIGTERM, E2E_TIMEOUT_MS);
	e2e_proc_free(&w->mock);
	e2e_rmrf(w->dir);
	free(w->dir);
	free(w->fw);
	free(w->conf);
	free(w->gw_log);
	memset(w, 0, sizeof(*w));
}
