/* Child processes for tests (see tproc.h). */
#include "tproc.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tclock.h"

#define TPROC_MAX 128

/* The children the atexit handler kills, with the process that started each (a forked test
 * helper that exit()s inherits the handler and must leave its parent's children alone). */
static struct {
	pid_t pid, owner;
} tproc_list[TPROC_MAX];
static bool tproc_atexit_set;

static void
tproc_register(pid_t pid)
{
	size_t i;

	if (!tproc_atexit_set) {
		atexit(tproc_kill_all);
		tproc_atexit_set = true;
	}
	for (i = 0; i < TPROC_MAX && tproc_list[i].pid != 0; i++)
		;
	ck_assert_msg(i < TPROC_MAX, "more than %d child processes at once", TPROC_MAX);
	tproc_list[i].pid = pid;
	tproc_list[i].owner = getpid();
}

static void
tproc_unregister(pid_t pid)
{
	size_t i;

	for (i = 0; i < TPROC_MAX; i++)
		if (tproc_list[i].pid == pid)
			tproc_list[i].pid = 0;
}

void
tproc_kill_all(void)
{
	pid_t self = getpid();
	size_t i;

	for (i = 0; i < TPROC_MAX; i++) {
		if (tproc_list[i].pid <= 0 || tproc_list[i].owner != self)
			continue;
		kill(tproc_list[i].pid, SIGKILL);
		while (waitpid(tproc_list[i].pid, NULL, 0) < 0 && errno == EINTR)
			;
		tproc_list[i].pid = 0;
	}
}

/* An unnamed file under $TMPDIR for one output stream. */
static int
tproc_capture_file(void)
{
	const char *tmp = getenv("TMPDIR");
	char *path;
	int fd;

	if (tmp == NULL || tmp[0] == '\0')
		tmp = "/tmp";
	ck_assert_int_gt(asprintf(&path, "%s/otagw-out-XXXXXX", tmp), 0);
	fd = mkostemp(path, O_CLOEXEC);
	ck_assert_msg(fd >= 0, "mkostemp %s: %s", path, strerror(errno));
	unlink(path);
	free(path);
	return fd;
}

static void
tproc_start(
    struct tproc *p, const char *name, char *const argv[], int out, int err, char *const env[])
{
	pid_t parent = getpid();
	char pid[32];
	size_t i;
	int null;

	snprintf(p->name, sizeof(p->name), "%s", name);
	p->out = calloc(1, 1);
	p->err = calloc(1, 1);
	ck_assert(p->out != NULL && p->err != NULL);
	fflush(NULL); /* nothing buffered twice */
	p->pid = fork();
	ck_assert_msg(p->pid >= 0, "fork: %s", strerror(errno));
	if (p->pid == 0) {
		/* die with the test, whatever ends it */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		dup2(out, STDOUT_FILENO);
		dup2(err, STDERR_FILENO);
		for (i = 0; env != NULL && env[i] != NULL; i++) {
			if (strcmp(env[i], "WATCHDOG_PID=self") == 0) {
				snprintf(pid, sizeof(pid), "%d", (int)getpid());
				setenv("WATCHDOG_PID", pid, 1);
			} else {
				putenv(env[i]);
			}
		}
		execvp(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	tproc_register(p->pid);
}

void
tproc_spawn(struct tproc *p, char *const argv[], char *const env[])
{
	const char *slash = strrchr(argv[0], '/');

	memset(p, 0, sizeof(*p));
	p->out_fd = tproc_capture_file();
	p->err_fd = tproc_capture_file();
	tproc_start(p, slash != NULL ? slash + 1 : argv[0], argv, p->out_fd, p->err_fd, env);
}

void
tproc_spawn_log(
    struct tproc *p, const char *name, char *const argv[], const char *log, char *const env[])
{
	memset(p, 0, sizeof(*p));
	p->log = strdup(log);
	ck_assert_ptr_nonnull(p->log);
	/* O_APPEND: the child's writes go to the end whatever the offset; the test reads with
	 * pread from the start, earlier runs included */
	p->out_fd = open(log, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	ck_assert_msg(p->out_fd >= 0, "open %s: %s", log, strerror(errno));
	p->err_fd = -1;
	tproc_start(p, name, argv, p->out_fd, p->out_fd, env);
}

/* Appends what fd holds past *len to *buf. */
static void
tproc_read_fd(int fd, char **buf, size_t *len)
{
	char tmp[16384], *b;
	ssize_t n;

	if (fd < 0)
		return;
	while ((n = pread(fd, tmp, sizeof(tmp), (off_t)*len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		b = realloc(*buf, *len + (size_t)n + 1);
		ck_assert_ptr_nonnull(b);
		memcpy(b + *len, tmp, (size_t)n);
		*len += (size_t)n;
		b[*len] = '\0';
		*buf = b;
	}
}

void
tproc_read(struct tproc *p)
{
	tproc_read_fd(p->out_fd, &p->out, &p->out_len);
	tproc_read_fd(p->err_fd, &p->err, &p->err_len);
}

bool
tproc_running(struct tproc *p)
{
	if (p->pid <= 0 || p->exited)
		return false;
	if (waitpid(p->pid, &p->status, WNOHANG) == p->pid) {
		p->exited = true;
		tproc_unregister(p->pid);
		return false;
	}
	return true;
}

/* Finds needle in text (of len bytes) at or after *from, moving *from past it. */
static bool
tproc_find(const char *text, size_t len, const char *needle, size_t *from)
{
	size_t zero = 0;
	const char *hit;

	if (from == NULL)
		from = &zero;
	if (text == NULL || *from > len || (hit = strstr(text + *from, needle)) == NULL)
		return false;
	*from = (size_t)(hit - text) + strlen(needle);
	return true;
}

static size_t
tproc_count(const char *text, const char *needle)
{
	size_t n = 0;

	while (text != NULL && (text = strstr(text, needle)) != NULL) {
		n++;
		text += strlen(needle);
	}
	return n;
}

/* Polls stdout (or stderr) until it holds needle (count times, or at or after *from if count
 * is 0), the child exits or the deadline passes. */
static bool
tproc_wait(
    struct tproc *p, bool err, const char *needle, size_t *from, size_t count, unsigned timeout_ms)
{
	uint64_t end = tclock_ms() + timeout_ms;
	bool exited = false;

	for (;;) {
		tproc_read(p);
		if (count > 0 ? tproc_count(err ? p->err : p->out, needle) >= count
			      : tproc_find(err ? p->err : p->out, err ? p->err_len : p->out_len,
				    needle, from))
			return true;
		/* after the exit, one more read for what it wrote last; then give up */
		if (exited || tclock_ms() >= end)
			return false;
		exited = !tproc_running(p);
		if (!exited)
			tclock_sleep_ms(20);
	}
}

bool
tproc_wait_out(struct tproc *p, const char *needle, size_t *from, unsigned timeout_ms)
{
	return tproc_wait(p, false, needle, from, 0, timeout_ms);
}

bool
tproc_wait_err(struct tproc *p, const char *needle, size_t *from, unsigned timeout_ms)
{
	return tproc_wait(p, true, needle, from, 0, timeout_ms);
}

bool
tproc_wait_count(struct tproc *p, const char *needle, size_t count, unsigned timeout_ms)
{
	return tproc_wait(p, false, needle, NULL, count > 0 ? count : 1, timeout_ms);
}

int
tproc_wait_exit(struct tproc *p, unsigned timeout_ms)
{
	uint64_t end = tclock_ms() + timeout_ms;
	int r = 0;

	while (tproc_running(p)) {
		if (tclock_ms() >= end) {
			kill(p->pid, SIGKILL);
			while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR)
				;
			p->exited = true;
			tproc_unregister(p->pid);
			r = -1;
			break;
		}
		tclock_sleep_ms(10);
	}
	tproc_read(p);
	if (r < 0 || p->pid <= 0 || !WIFEXITED(p->status))
		return -1;
	return WEXITSTATUS(p->status);
}

int
tproc_stop(struct tproc *p, int sig, unsigned timeout_ms)
{
	if (tproc_running(p))
		kill(p->pid, sig);
	return tproc_wait_exit(p, timeout_ms);
}

int
tproc_run(struct tproc *p, char *const argv[], char *const env[], unsigned timeout_ms)
{
	tproc_spawn(p, argv, env);
	return tproc_wait_exit(p, timeout_ms);
}

void
tproc_free(struct tproc *p)
{
	if (p->pid > 0) {
		if (tproc_running(p)) {
			kill(p->pid, SIGKILL);
			while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR)
				;
			tproc_unregister(p->pid);
		}
		if (p->out_fd >= 0)
			close(p->out_fd);
		if (p->err_fd >= 0)
			close(p->err_fd);
	}
	free(p->out);
	free(p->err);
	free(p->log);
	memset(p, 0, sizeof(*p));
}

const char *
tproc_prog(const char *env)
{
	const char *p = getenv(env);

	ck_assert_msg(
	    p != NULL && p[0] != '\0', "$%s is not set (run the test through ctest)", env);
	return p;
}
