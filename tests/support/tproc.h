/* Child processes for tests: the real programs (otagwd, otagw-devsim, otagw-mockmf,
 * otagw-linkemu, otagwctl, busctl, dbus-daemon) started with their output in files, waited on
 * by what they print, stopped by signal, and never left behind. A child stays in the test's
 * process group, which check (in its default fork mode) kills after every test however the
 * test ended: passed, failed an assertion, timed out or crashed; grandchildren go with it. A
 * child also dies with the test process (PR_SET_PDEATHSIG), and one still running when that
 * process exits normally is killed and reaped by an atexit handler. Nothing here asserts
 * timing: waits have deadlines given by the caller and report whether they were met. */
#ifndef OTAGW_TESTS_TPROC_H
#define OTAGW_TESTS_TPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct tproc {
	pid_t pid;
	char name[32]; /* for messages */
	bool exited;
	int status; /* from waitpid, once exited */
	char *log;  /* the file stdout and stderr are appended to (tproc_spawn_log), or NULL */
	int out_fd, err_fd; /* what is read: the log, or two unnamed files; -1 if none */
	char *out, *err;    /* output read so far, NUL-terminated; a log is all in out */
	size_t out_len, err_len;
};

/* Starts argv[0] (a path, or a name looked up in PATH) with argv, stdin on /dev/null, stdout and
 * stderr captured apart in unnamed temporary files, and env (NAME=VALUE strings, may be NULL)
 * added to the environment; "WATCHDOG_PID=self" becomes the child's own pid. Fails the test if
 * it cannot fork; a program that cannot be run exits 127 with the reason on its stderr. */
void tproc_spawn(struct tproc *p, char *const argv[], char *const env[]);

/* As tproc_spawn(), with stdout and stderr appended to the file log (made if missing: a log may
 * collect several runs); name is for messages. */
void tproc_spawn_log(
    struct tproc *p, const char *name, char *const argv[], const char *log, char *const env[]);

/* Reads what the child wrote since the last read into p->out and p->err. */
void tproc_read(struct tproc *p);

/* Waits until stdout (tproc_spawn_log: the log) holds needle at or after *from (then *from moves
 * just past it; from may be NULL: anywhere), or the child exits, or timeout_ms passes. Returns
 * whether needle appeared. */
bool tproc_wait_out(struct tproc *p, const char *needle, size_t *from, unsigned timeout_ms);

/* tproc_wait_out() on stderr. */
bool tproc_wait_err(struct tproc *p, const char *needle, size_t *from, unsigned timeout_ms);

/* Waits until stdout (or the log) holds needle count times, as tproc_wait_out(). */
bool tproc_wait_count(struct tproc *p, const char *needle, size_t count, unsigned timeout_ms);

/* True while the child runs (reaps it once it has exited). */
bool tproc_running(struct tproc *p);

/* Waits up to timeout_ms for the child to exit by itself, then SIGKILLs it; reads its output.
 * Returns the exit status, or -1 if it died by a signal or had to be killed. */
int tproc_wait_exit(struct tproc *p, unsigned timeout_ms);

/* Sends sig (if it still runs) and waits as tproc_wait_exit(). */
int tproc_stop(struct tproc *p, int sig, unsigned timeout_ms);

/* tproc_spawn() and tproc_wait_exit(): runs argv to completion. */
int tproc_run(struct tproc *p, char *const argv[], char *const env[], unsigned timeout_ms);

/* Kills (SIGKILL) and reaps the child if it still runs, closes and frees everything and zeroes
 * p. Accepts a zeroed p. */
void tproc_free(struct tproc *p);

/* Kills and reaps every child this process started that still runs (the atexit path). */
void tproc_kill_all(void);

/* The path of a built program from its environment variable (CMake sets it for the test);
 * fails the test if it is not set. */
const char *tproc_prog(const char *env);

#endif
