/* Helpers of the end-to-end tests and the session test: temporary directories, files, payloads
 * and their digests, and child processes (the real otagwd, otagw-devsim, otagw-mockmf,
 * otagw-linkemu) with their output in log files to wait on. Every child dies with the test
 * process (PR_SET_PDEATHSIG) and is reaped, and every temporary directory removed, also when
 * a test fails half-way (an atexit handler). Nothing here asserts timing: waits have generous
 * deadlines and fail the test only when those pass. */
#ifndef OTAGW_TESTS_E2E_H
#define OTAGW_TESTS_E2E_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Generous deadlines: the box is a loaded 2-core machine, the sanitizer build is slow. */
#define E2E_TIMEOUT_MS 90000

/* A fresh directory under $TMPDIR (or /tmp), removed at exit. Returns a malloc'd path. */
char *e2e_tmpdir(const char *tag);

/* Removes dir and everything in it. */
void e2e_rmrf(const char *dir);

/* dir/name, malloc'd. */
char *e2e_path(const char *dir, const char *name);

/* Writes len bytes (or the string if len is 0) to path with exactly mode. */
void e2e_write(const char *path, mode_t mode, const void *data, size_t len);

/* The whole file, NUL-terminated, malloc'd; NULL if it cannot be read. */
char *e2e_read(const char *path, size_t *len);

/* Reproducible firmware-like bytes: runs of zeros and pseudo-random data. */
void e2e_fill(uint8_t *buf, size_t len, uint32_t seed);

/* Lower-case hex SHA-256 of data, or of a file (false if unreadable). */
void e2e_sha256_hex(const void *data, size_t len, char out[65]);
bool e2e_sha256_file(const char *path, char out[65]);

/* Occurrences of needle in the file at path (0 if unreadable). */
size_t e2e_count(const char *path, const char *needle);

/* Monotonic milliseconds. */
uint64_t e2e_now_ms(void);

/* Sleeps ms milliseconds. */
void e2e_sleep_ms(unsigned ms);

/* A free TCP port on 127.0.0.1 (bound and released: good enough for a test). */
uint16_t e2e_free_port(void);

/* The path of a built program from its environment variable (set by CMake). */
const char *e2e_prog(const char *env);

struct e2e_proc {
	pid_t pid;
	char *log; /* stdout and stderr go here */
	char name[32];
	bool exited;
	int status; /* waitpid status once exited */
};

/* Starts argv (argv[0] is the program) with stdout and stderr appended to log, env entries
 * (NAME=VALUE, may be NULL) added to the environment. */
void e2e_spawn(
    struct e2e_proc *p, const char *name, char *const argv[], const char *log, char *const env[]);

/* Waits until the log holds needle at or after *from (then *from moves past it), or the
 * process exits, or timeout_ms passes. Returns whether needle appeared. */
bool e2e_wait_log(struct e2e_proc *p, const char *needle, size_t *from, unsigned timeout_ms);

/* Waits until the log holds needle count times (anywhere), like e2e_wait_log. */
bool e2e_wait_count(struct e2e_proc *p, const char *needle, size_t count, unsigned timeout_ms);

/* True while the process runs (reaps it if it exited). */
bool e2e_running(struct e2e_proc *p);

/* Sends sig and waits up to timeout_ms for the exit, then SIGKILLs. Returns the exit status,
 * or -1 if it died by a signal or had to be killed. */
int e2e_stop(struct e2e_proc *p, int sig, unsigned timeout_ms);

/* Waits up to timeout_ms for the process to exit by itself (else SIGKILL); as e2e_stop. */
int e2e_wait_exit(struct e2e_proc *p, unsigned timeout_ms);

/* Kills (SIGKILL) and reaps if still running, frees the log name. Accepts a zeroed p. */
void e2e_proc_free(struct e2e_proc *p);

/* Prints the tail of a log on stderr (for a failing test's context). */
void e2e_dump(const char *title, const char *path);

#endif
