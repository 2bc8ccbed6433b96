/* The main() of every check-based test: runs a suite the way ctest expects and leaves nothing
 * behind, however its tests end. */
#ifndef OTAGW_TESTS_CK_H
#define OTAGW_TESTS_CK_H

#include <check.h>

/* Runs every test of suite (taking it over) and returns EXIT_SUCCESS if none failed, else
 * EXIT_FAILURE. check's environment variables apply: CK_VERBOSITY, CK_FORK, CK_RUN_SUITE,
 * CK_RUN_CASE, CK_INCLUDE_TAGS, CK_EXCLUDE_TAGS, CK_DEFAULT_TIMEOUT, CK_TIMEOUT_MULTIPLIER and
 * the CK_*_LOG_FILE_NAME logs. TMPDIR points, for the run, at a fresh directory of its own
 * ($TMPDIR/otagw-<program>-XXXXXX), removed at the end with whatever a test that failed, timed
 * out or crashed could not remove (named on stderr first; OTAGW_TEST_KEEP=1 keeps it all). */
int ck_main(Suite *suite);

#endif
