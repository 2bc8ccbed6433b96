/* Files for tests: writing them with an exact mode, configuration templates with the test's
 * directory filled in, reading them back whole, counting what a log says, and printing the end
 * of a log when a test fails. Write failures fail the test; reads report them. */
#ifndef OTAGW_TESTS_TFILE_H
#define OTAGW_TESTS_TFILE_H

#include <stddef.h>
#include <sys/types.h>

/* Writes len bytes of data to path (truncated in place if it exists) and gives it exactly mode
 * (umask does not apply). */
void tfile_write(const char *path, mode_t mode, const void *data, size_t len);

/* tfile_write() of a string. */
void tfile_write_str(const char *path, mode_t mode, const char *text);

/* Formats fmt (printf), replaces every "@DIR@" in the result with dir (if not NULL) and writes
 * it as tfile_write_str(): how tests write otagw.conf and friends. */
void tfile_template(const char *path, mode_t mode, const char *dir, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The whole file, NUL-terminated (len, if not NULL, excludes the NUL), malloc'd; NULL if it
 * cannot be read. */
char *tfile_read(const char *path, size_t *len);

/* Occurrences of needle in the file at path (0 if it cannot be read). */
size_t tfile_count(const char *path, const char *needle);

/* Prints the last few KiB of the file on stderr between markers naming title (the context of a
 * failing test). Nothing if it cannot be read. */
void tfile_dump(const char *title, const char *path);

/* Sends this process's stderr to the file at path (made or truncated, mode 0600): where the
 * daemon code under test logs, for the test to read back. */
void tfile_capture_stderr(const char *path);

/* A malloc'd copy of s with every from replaced by to. */
char *tfile_subst(const char *s, const char *from, const char *to);

#endif
