/* Temporary directories for tests, under $TMPDIR, which ck_main() points at a directory of the
 * run's own and removes when the run ends: a test that fails half-way (check's forked test
 * process _exit()s on a failed assertion, running neither the test's cleanup nor atexit
 * handlers), times out or crashes leaves nothing behind. A process that ends normally (a test
 * that returns without removing its directory, a CK_FORK=no run) removes what it made at exit,
 * after killing its children (tproc.h). OTAGW_TEST_KEEP=1 keeps everything for a look. */
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
