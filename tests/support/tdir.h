/* Temporary directories for tests. Every directory made here is removed when the test process
 * exits, also when a failing assertion ends it half-way (check runs each test in a forked child
 * that exit()s on failure): an atexit handler first kills the children still running (see
 * tproc.h), then removes the directories. OTAGW_TEST_KEEP=1 keeps them for a look afterwards. */
#ifndef OTAGW_TESTS_TDIR_H
#define OTAGW_TESTS_TDIR_H

#include <stdbool.h>

/* Makes $TMPDIR/otagw-<tag>-XXXXXX (or under /tmp) and registers it for removal at exit.
 * Returns the malloc'd path (the caller frees it); fails the test if it cannot. */
char *tdir_new(const char *tag);

/* dir/name, malloc'd; fails the test if out of memory. */
char *tdir_join(const char *dir, const char *name);

/* Removes path and everything below it, making directories writable and readable first (tests
 * take permissions away on purpose). A directory made by tdir_new() is then no longer removed at
 * exit; with tdir_keep() it stays where it is instead. Accepts NULL. Best effort: a failure is
 * reported on stderr, not fatal. */
void tdir_rmrf(const char *path);

/* Whether OTAGW_TEST_KEEP (or the older OTAGW_E2E_KEEP) asks to keep temporary directories. */
bool tdir_keep(void);

#endif
