/* The real otagwd binary: the command line, --check-config on good and bad files (exit codes
 * and output), the shipped example configuration, start-up with a bad file, SIGTERM/SIGINT,
 * and SIGHUP reloads: a broken file keeps the running configuration, a good one is applied. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ck.h"
#include "tdir.h"
#include "tfile.h"
#include "tproc.h"

#define KEY     "0123456789abcdef0123456789abcdef"
#define TIMEOUT 60000 /* ms; generous: the box is shared and sanitizers are slow */

struct env {
	char *dir, *conf, *key;
};

static void
env_init(struct env *e)
{
	e->dir = tdir_new("otagwd");
	e->conf = tdir_join(e->dir, "otagw.conf");
	e->key = tdir_join(e->dir, "key");
	tfile_write_str(e->key, 0600, KEY "\n");
}

static void
env_free(struct env *e)
{
	tdir_rmrf(e->dir);
	free(e->dir);
	free(e->conf);
	free(e->key);
}

/* A configuration serving one unix socket in the test's directory, plus extra lines (in
 * [general] unless they open a section). */
static void
env_conf(struct env *e, const char *general)
{
	tfile_template(e->conf, 0644, e->dir,
	    "[general]\nstate_dir = @DIR@/state\ncache_dir = @DIR@/cache\n%s\n"
	    "[memfault]\nproject_key_file = @DIR@/key\n"
	    "[unix \"sim\"]\nlisten = @DIR@/sim.sock\n"
	    "[dbus]\nbus = none\n" /* never the machine's own bus */,
	    general);
}

START_TEST(test_check_config_ok)
{
	struct tproc p;
	struct env e;

	env_init(&e);
	env_conf(&e, "");
	{
		char *argv[] = {(char *)tproc_prog("OTAGWD"), "--check-config", "-c", e.conf, NULL};

		ck_assert_int_eq(tproc_run(&p, argv, NULL, TIMEOUT), 0);
	}
	ck_assert_str_eq(p.out, "configuration OK\n");
	ck_assert_str_eq(p.err, "");
	tproc_free(&p);
	env_free(&e);
}
END_TEST

START_TEST(test_check_config_errors)
{
	struct tproc p;
	struct env e;
	char *want;

	env_init(&e);
	env_conf(&e, "max_transfers = 0\nlog_level = loud");
	{
		char *argv[] = {(char *)tproc_prog("OTAGWD"), "-c", e.conf, "--check-config", NULL};

		ck_assert_int_eq(tproc_run(&p, argv, NULL, TIMEOUT), 1);
	}
	ck_assert_str_eq(p.out, "");
	want =
	    tfile_subst("@CONF@:4: max_transfers = 0: out of range; use a whole number from 1 to "
			"1024\n@CONF@:5: log_level = loud: unknown level; use err, warn, notice, "
			"info or debug\n",
		"@CONF@", e.conf);
	ck_assert_str_eq(p.err, want);
	free(want);
	tproc_free(&p);

	/* A file that does not exist. */
	unlink(e.conf);
	{
		char *argv[] = {
		    (char *)tproc_prog("OTAGWD"), "--config", e.conf, "--check-config", NULL};

		ck_assert_int_eq(tproc_run(&p, argv, NULL, TIMEOUT), 1);
	}
	want = tfile_subst("@CONF@: cannot open: No such file or directory\n", "@CONF@", e.conf);
	ck_assert_str_eq(p.err, want);
	ck_assert_str_eq(p.out, "");
	free(want);
	tproc_free(&p);
	env_free(&e);
}
END_TEST

/* conf/otagw.conf passes as shipped once the systemd credential holds a key, and without one
 * its only error is the missing key. */
START_TEST(test_example_config)
{
	const char *src = getenv("OTAGW_SOURCE_DIR");
	struct tproc p;
	struct env e;
	char *example, *creds, *cred, *env_creds;

	ck_assert_ptr_nonnull(src);
	env_init(&e);
	example = tdir_join(src, "conf/otagw.conf");
	creds = tdir_join(e.dir, "credentials");
	ck_assert_int_eq(mkdir(creds, 0700), 0);
	cred = tdir_join(creds, "project-key");
	ck_assert_int_gt(asprintf(&env_creds, "CREDENTIALS_DIRECTORY=%s", creds), 0);
	{
		char *argv[] = {
		    (char *)tproc_prog("OTAGWD"), "--check-config", "-c", example, NULL};
		char *env[] = {env_creds, NULL};

		ck_assert_int_eq(tproc_run(&p, argv, env, TIMEOUT), 1);
		ck_assert_msg(strstr(p.err, "project-key: cannot open: No such file") != NULL &&
				  strchr(p.err, '\n') == strrchr(p.err, '\n'),
		    "got: %s", p.err);
		tproc_free(&p);

		tfile_write_str(cred, 0400, KEY "\n");
		ck_assert_int_eq(tproc_run(&p, argv, env, TIMEOUT), 0);
		ck_assert_str_eq(p.out, "configuration OK\n");
		ck_assert_str_eq(p.err, "");
		tproc_free(&p);
	}
	free(env_creds);
	free(cred);
	free(creds);
	free(example);
	env_free(&e);
}
END_TEST

START_TEST(test_cli)
{
	struct tproc p;

	{
		char *argv[] = {(char *)tproc_prog("OTAGWD"), "--version", NULL};

		ck_assert_int_eq(tproc_run(&p, argv, NULL, TIMEOUT), 0);
		ck_assert_str_eq(p.out, "otagwd " OTAGW_VERSION "\n");
		tproc_free(&p);
	}
	{
		char *argv[] = {(char *)tproc_prog("OTAGWD"), "--help", NULL};

		ck_assert_int_eq(tproc_run(&p, argv, NULL, TIMEOUT), 0);
		ck_assert_ptr_eq(strstr(p.out, "Usage: otagwd [-c PATH] [--check-config] [-v]... "
					       "[--version] [--help]\n"),
		    p.out);
		ck_assert_ptr_nonnull(strstr(p.out, "/etc/otagw/otagw.conf"));
		tproc_free(&p);
	}
	{
		char *argv[] = {(char *)tproc_prog("OTAGWD"), "--bogus", NULL};

		ck_assert_int_eq(tproc_run(&p, argv, NULL, TIMEOUT), 2);
		ck_assert_ptr_nonnull(strstr(p.err, "Try 'otagwd --help'."));
		tproc_free(&p);
	}
	{
		char *argv[] = {(char *)tproc_prog("OTAGWD"), "-c", NULL};

		ck_assert_int_eq(tproc_run(&p, argv, NULL, TIMEOUT), 2);
		tproc_free(&p);
	}
	{
		char *argv[] = {(char *)tproc_prog("OTAGWD"), "extra", NULL};

		ck_assert_int_eq(tproc_run(&p, argv, NULL, TIMEOUT), 2);
		ck_assert_ptr_nonnull(strstr(p.err, "unexpected argument 'extra'"));
		tproc_free(&p);
	}
}
END_TEST

START_TEST(test_start_bad_config)
{
	struct tproc p;
	struct env e;
	char *want;

	env_init(&e);
	env_conf(&e, "cache_max = lots");
	{
		char *argv[] = {(char *)tproc_prog("OTAGWD"), "-c", e.conf, NULL};

		ck_assert_int_eq(tproc_run(&p, argv, NULL, TIMEOUT), 78);
	}
	want = tfile_subst("@CONF@:4: cache_max = lots: not a size", "@CONF@", e.conf);
	ck_assert_ptr_nonnull(strstr(p.err, want));
	free(want);
	ck_assert_ptr_nonnull(strstr(p.err, "Failed to load the configuration"));
	tproc_free(&p);
	env_free(&e);
}
END_TEST

/* SIGTERM and SIGINT stop cleanly with status 0 (and, in the sanitizer build, no leak). */
START_TEST(test_stop_signals)
{
	static const int sigs[] = {SIGTERM, SIGINT};
	const char *name[] = {"SIGTERM", "SIGINT"};
	struct tproc p;
	struct env e;
	char line[64];
	size_t i;

	env_init(&e);
	env_conf(&e, "");
	for (i = 0; i < 2; i++) {
		char *argv[] = {(char *)tproc_prog("OTAGWD"), "-c", e.conf, NULL};

		tproc_spawn(&p, argv, NULL);
		ck_assert(tproc_wait_err(&p, "ready", NULL, TIMEOUT));
		ck_assert_int_eq(kill(p.pid, sigs[i]), 0);
		ck_assert_int_eq(tproc_wait_exit(&p, TIMEOUT), 0);
		snprintf(line, sizeof(line), "Received %s, stopping", name[i]);
		ck_assert_ptr_nonnull(strstr(p.err, line));
		ck_assert_ptr_nonnull(strstr(p.err, "Stopped"));
		tproc_free(&p);
	}
	env_free(&e);
}
END_TEST

START_TEST(test_sighup)
{
	char *argv[] = {(char *)tproc_prog("OTAGWD"), "-c", NULL, NULL};
	struct tproc p;
	struct env e;
	size_t at, mark;
	char *want;

	env_init(&e);
	argv[2] = e.conf;
	env_conf(&e, "log_level = info");
	tproc_spawn(&p, argv, NULL);
	at = 0;
	ck_assert(tproc_wait_err(&p, "ready", &at, TIMEOUT));
	ck_assert_ptr_null(strstr(p.err, " debug: ")); /* info: no debug lines */

	/* A broken file (that would also turn on debug logging) is refused with every error. */
	env_conf(&e, "log_level = debug\nmax_transfers = many\n[nope]");
	ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
	ck_assert(tproc_wait_err(&p, "keeping the running configuration", &at, TIMEOUT));
	want = tfile_subst("@CONF@:5: max_transfers = many: not a number", "@CONF@", e.conf);
	ck_assert_ptr_nonnull(strstr(p.err, want));
	free(want);
	want = tfile_subst("@CONF@:6: unknown section [nope]", "@CONF@", e.conf);
	ck_assert_ptr_nonnull(strstr(p.err, want));
	free(want);
	ck_assert_ptr_nonnull(strstr(p.err, "(2 errors)"));

	/* Still running, still at info: a second reload logs no debug line. */
	mark = at;
	ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
	ck_assert(tproc_wait_err(&p, "keeping the running configuration", &at, TIMEOUT));
	ck_assert_ptr_null(strstr(p.err + mark, " debug: "));
	ck_assert_ptr_null(strstr(p.err, "Reloaded"));

	/* A good file is applied: debug logging, new limits, shown in the debug summary. */
	env_conf(&e, "log_level = debug\nmax_transfers = 5");
	ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
	ck_assert(tproc_wait_err(&p, "Reloaded configuration from", &at, TIMEOUT));
	ck_assert(tproc_wait_err(&p, "max_transfers 5,", &at, TIMEOUT));

	/* Settings that need a restart keep their running value, with a warning. */
	tfile_template(e.conf, 0644, e.dir,
	    "[general]\nstate_dir = @DIR@/elsewhere\n"
	    "cache_dir = @DIR@/cache\nlog_level = warn\n"
	    "[memfault]\nproject_key_file = @DIR@/key\n"
	    "[unix \"sim\"]\nlisten = @DIR@/sim.sock\n"
	    "[dbus]\nbus = none\n" /* never the machine's own bus */);
	ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
	want =
	    tfile_subst("state_dir changed to @DIR@/elsewhere: restart otagwd to apply it; still "
			"using @DIR@/state",
		"@DIR@", e.dir);
	ck_assert(tproc_wait_err(&p, want, &at, TIMEOUT));
	free(want);
	mark = at;

	/* log_level = warn took effect: the next (broken) reload shows its error but no info
	 * line, and the one before it logged no "Reloaded" at info. */
	env_conf(&e, "bogus = 1");
	ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
	ck_assert(tproc_wait_err(&p, "keeping the running configuration", &at, TIMEOUT));
	ck_assert_ptr_null(strstr(p.err + mark, "Reloaded"));
	ck_assert_ptr_null(strstr(p.err + mark, "Received SIGHUP"));

	ck_assert_int_eq(kill(p.pid, SIGTERM), 0);
	ck_assert_int_eq(tproc_wait_exit(&p, TIMEOUT), 0);
	tproc_free(&p);
	env_free(&e);
}
END_TEST

/* -v logs debug whatever log_level says. */
START_TEST(test_verbose)
{
	char *argv[] = {(char *)tproc_prog("OTAGWD"), "-c", NULL, "-v", "-v", NULL};
	struct tproc p;
	struct env e;
	size_t at;

	env_init(&e);
	argv[2] = e.conf;
	env_conf(&e, "log_level = err");
	tproc_spawn(&p, argv, NULL);
	at = 0;
	ck_assert(tproc_wait_err(&p, "Link sim: unix listen on", &at, TIMEOUT));
	ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
	ck_assert(tproc_wait_err(&p, "Reading configuration", &at, TIMEOUT));
	ck_assert_int_eq(kill(p.pid, SIGTERM), 0);
	ck_assert_int_eq(tproc_wait_exit(&p, TIMEOUT), 0);
	tproc_free(&p);
	env_free(&e);
}
END_TEST

static Suite *
otagwd_suite(void)
{
	Suite *s = suite_create("otagwd");
	TCase *tc = tcase_create("otagwd");

	tcase_add_test(tc, test_check_config_ok);
	tcase_add_test(tc, test_check_config_errors);
	tcase_add_test(tc, test_example_config);
	tcase_add_test(tc, test_cli);
	tcase_add_test(tc, test_start_bad_config);
	tcase_add_test(tc, test_stop_signals);
	tcase_add_test(tc, test_sighup);
	tcase_add_test(tc, test_verbose);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(otagwd_suite());
}
