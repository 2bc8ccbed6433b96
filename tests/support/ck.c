/* The shared test runner (see ck.h). */
#include "ck.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tdir.h"

/* Makes the run's own temporary directory and points TMPDIR at it; returns it (malloc'd), or
 * NULL if it cannot (the tests then use TMPDIR as it is). */
static char *
ck_run_dir(void)
{
	const char *tmp = getenv("TMPDIR");
	char *dir;

	if (tmp == NULL || tmp[0] == '\0')
		tmp = "/tmp";
	if (asprintf(&dir, "%s/otagw-%s-XXXXXX", tmp, program_invocation_short_name) < 0)
		return NULL;
	if (mkdtemp(dir) == NULL) {
		fprintf(stderr, "mkdtemp %s: %s; using %s\n", dir, strerror(errno), tmp);
		free(dir);
		return NULL;
	}
	/* Tests run programs as another user (tests/systemd/run-as.sh) in directories they open
	 * up themselves; this one must let them through. */
	chmod(dir, 0711);
	setenv("TMPDIR", dir, 1);
	return dir;
}

/* Names on stderr what the tests left in dir: each test removes what it made, so anything here
 * is a leak to fix (the run's removal below hides it otherwise). */
static void
ck_report_leftovers(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	while (d != NULL && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		fprintf(stderr, "%s %s", n++ == 0 ? "left behind by the tests:" : ",", de->d_name);
	}
	if (n > 0)
		fprintf(stderr, " (in %s)\n", dir);
	if (d != NULL)
		closedir(d);
}

int
ck_main(Suite *suite)
{
	char *saved = getenv("TMPDIR") != NULL ? strdup(getenv("TMPDIR")) : NULL;
	char *dir = ck_run_dir();
	SRunner *sr = srunner_create(suite);
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (dir != NULL) {
		/* every test process has exited and check has killed its process group */
		ck_report_leftovers(dir);
		if (tdir_keep())
			fprintf(stderr, "keeping %s\n", dir);
		else
			tdir_rmrf(dir);
		free(dir);
	}
	if (saved != NULL)
		setenv("TMPDIR", saved, 1);
	else
		unsetenv("TMPDIR");
	free(saved);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
