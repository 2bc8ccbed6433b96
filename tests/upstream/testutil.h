/* Shared pieces of the upstream tests: running the one event loop until something happened
 * (with a generous deadline, never a timing assertion), temporary directories, and payloads. */
#ifndef OTAGW_TESTUTIL_H
#define OTAGW_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <check.h>

struct event_base;

/* Runs every test of s (forked, as check does by default) and returns the exit status for
 * main(): EXIT_SUCCESS when none failed. */
int t_run_suite(Suite *s);

/* Runs base until *flag is true; fails the test if that takes longer than timeout_s. */
void t_run_until(struct event_base *base, const bool *flag, unsigned timeout_s);

/* Runs base until *count reaches want; fails the test after timeout_s. */
void t_run_until_count(
    struct event_base *base, const size_t *count, size_t want, unsigned timeout_s);

/* Runs base for about ms milliseconds (to let things that must NOT happen have a chance). */
void t_run_for(struct event_base *base, unsigned ms);

/* Makes a fresh directory under $TMPDIR (or /tmp) and returns it (static storage per call
 * site is not kept: the caller frees the result). t_rmtree removes it recursively. */
char *t_mkdtemp(const char *tag);
void t_rmtree(const char *path);

/* Fills buf with reproducible pseudo-random bytes. */
void t_fill(uint8_t *buf, size_t len, uint32_t seed);

/* Lower-case hex SHA-256 of data into out (65 bytes). */
void t_sha256_hex(const void *data, size_t len, char *out);

/* Reads a whole file (NUL-terminated) or returns NULL. */
char *t_read_file(const char *path, size_t *len);

#endif
