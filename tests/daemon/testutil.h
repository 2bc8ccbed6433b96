/* Helpers for the daemon tests: private temp directories, files written with an exact mode,
 * and the real otagwd binary run as a child with its stdout and stderr captured. */
#ifndef OTAGW_TESTS_DAEMON_TESTUTIL_H
#define OTAGW_TESTS_DAEMON_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Creates a fresh directory under $TMPDIR (or /tmp). Returns a malloc'd path; aborts the test
 * on failure. */
char *tu_tmpdir(void);

/* Removes dir and everything in it. Accepts NULL. Frees nothing. */
void tu_rmrf(const char *dir);

/* dir/name, malloc'd. */
char *tu_path(const char *dir, const char *name);

/* Writes text to path with exactly this mode (umask does not apply). */
void tu_write(const char *path, mode_t mode, const char *text);

/* A copy of s with every "from" replaced by "to", malloc'd. */
char *tu_subst(const char *s, const char *from, const char *to);

/* The otagwd binary under test ($OTAGWD, set by CMake). */
const char *tu_otagwd(void);

struct tu_proc {
	pid_t pid;
	int out_fd, err_fd;
	char *out, *err; /* everything read so far, NUL-terminated */
	size_t out_len, err_len;
	int status; /* from waitpid, once exited */
	bool exited;
};

/* Starts argv[0] with argv, its stdout and stderr on pipes, with env (NAME=VALUE strings,
 * NULL-terminated, may be NULL) added to the environment. "WATCHDOG_PID=self" becomes the
 * child's own pid. */
void tu_spawn(struct tu_proc *p, char *const argv[], char *const env[]);

/* Reads the child's output until its stderr contains needle at or after offset from, or
 * timeout_ms passes. Returns the offset just past the match, or 0 on timeout or EOF. */
size_t tu_wait_stderr(struct tu_proc *p, const char *needle, size_t from, int timeout_ms);

/* Reads output until the child exits (killing it with SIGKILL after timeout_ms). Returns its
 * exit status, or -1 if it was killed by a signal (or the timeout). */
int tu_wait_exit(struct tu_proc *p, int timeout_ms);

/* Kills the child if still running, reaps it, and frees the buffers. */
void tu_proc_free(struct tu_proc *p);

/* Runs argv to completion (timeout 60 s) and returns its exit status; p keeps the output. */
int tu_run(struct tu_proc *p, char *const argv[], char *const env[]);

#endif
