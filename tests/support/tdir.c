/* Temporary directories removed at exit (see tdir.h). */
#include "tdir.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tproc.h"

#define TDIR_MAX 64

/* What the atexit handler removes, with the process that made each: a child forked by a test
 * that calls exit() inherits the handler and the list, and must not remove its parent's
 * directories. */
static struct {
	char *path;
	pid_t owner;
} tdir_list[TDIR_MAX];
static bool tdir_atexit_set;

static void tdir_remove_tree(const char *path);

bool
tdir_keep(void)
{
	const char *k = getenv("OTAGW_TEST_KEEP");

	if (k == NULL || k[0] == '\0')
		k = getenv("OTAGW_E2E_KEEP");
	return k != NULL && k[0] != '\0' && strcmp(k, "0") != 0;
}

static void
tdir_cleanup(void)
{
	pid_t self = getpid();
	size_t i;

	/* the children write into these directories: they go first */
	tproc_kill_all();
	for (i = 0; i < TDIR_MAX; i++) {
		if (tdir_list[i].path == NULL || tdir_list[i].owner != self)
			continue;
		if (tdir_keep())
			fprintf(stderr, "keeping %s\n", tdir_list[i].path);
		else
			tdir_remove_tree(tdir_list[i].path);
		free(tdir_list[i].path);
		tdir_list[i].path = NULL;
	}
}

char *
tdir_new(const char *tag)
{
	const char *tmp = getenv("TMPDIR");
	char *path;
	size_t i;

	if (!tdir_atexit_set) {
		atexit(tdir_cleanup);
		tdir_atexit_set = true;
	}
	if (tmp == NULL || tmp[0] == '\0')
		tmp = "/tmp";
	ck_assert_int_gt(asprintf(&path, "%s/otagw-%s-XXXXXX", tmp, tag), 0);
	ck_assert_msg(mkdtemp(path) != NULL, "mkdtemp %s: %s", path, strerror(errno));
	for (i = 0; i < TDIR_MAX && tdir_list[i].path != NULL; i++)
		;
	ck_assert_msg(i < TDIR_MAX, "more than %d temporary directories", TDIR_MAX);
	tdir_list[i].path = strdup(path);
	ck_assert_ptr_nonnull(tdir_list[i].path);
	tdir_list[i].owner = getpid();
	return path;
}

char *
tdir_join(const char *dir, const char *name)
{
	char *p;

	ck_assert_int_gt(asprintf(&p, "%s/%s", dir, name), 0);
	return p;
}

static void
tdir_remove_tree(const char *path)
{
	struct dirent *de;
	struct stat st;
	char *p;
	DIR *d;

	if (lstat(path, &st) < 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		/* a test may have taken read, write or search permission away */
		chmod(path, 0700);
		d = opendir(path);
		while (d != NULL && (de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (asprintf(&p, "%s/%s", path, de->d_name) < 0)
				continue;
			tdir_remove_tree(p);
			free(p);
		}
		if (d != NULL)
			closedir(d);
	}
	if (remove(path) < 0 && errno != ENOENT)
		fprintf(stderr, "cannot remove %s: %s\n", path, strerror(errno));
}

void
tdir_rmrf(const char *path)
{
	size_t i;

	if (path == NULL)
		return;
	for (i = 0; i < TDIR_MAX; i++) {
		if (tdir_list[i].path != NULL && strcmp(tdir_list[i].path, path) == 0) {
			if (tdir_keep()) {
				/* for a look after the run: OTAGW_TEST_KEEP=1 ctest -R ... */
				fprintf(stderr, "keeping %s\n", path);
				return;
			}
			free(tdir_list[i].path);
			tdir_list[i].path = NULL;
		}
	}
	tdir_remove_tree(path);
}
