/* Test helpers (see testutil.h). Failures here are test bugs or a broken machine: they stop
 * the test with ck_abort_msg. */
#include "testutil.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

char *
tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *dir;

	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	ck_assert_int_gt(asprintf(&dir, "%s/otagw-test-XXXXXX", base), 0);
	ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir, strerror(errno));
	return dir;
}

static int
tu_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void
tu_rmrf(const char *dir)
{
	if (dir != NULL)
		nftw(dir, tu_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *
tu_path(const char *dir, const char *name)
{
	char *p;

	ck_assert_int_gt(asprintf(&p, "%s/%s", dir, name), 0);
	return p;
}

void
tu_write(const char *path, mode_t mode, const char *text)
{
	size_t len = strlen(text);
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	ck_assert_int_eq(fchmod(fd, mode), 0);
	ck_assert_int_eq(close(fd), 0);
}

char *
tu_subst(const char *s, const char *from, const char *to)
{
	size_t nf = strlen(from), nt = strlen(to), n = 0;
	const char *q;
	char *out, *o;

	for (q = s; (q = strstr(q, from)) != NULL; q += nf)
		n++;
	out = malloc(strlen(s) + n * nt + 1);
	ck_assert_ptr_nonnull(out);
	for (o = out; (q = strstr(s, from)) != NULL; s = q + nf) {
		memcpy(o, s, (size_t)(q - s));
		o += q - s;
		memcpy(o, to, nt);
		o += nt;
	}
	strcpy(o, s);
	return out;
}

const char *
tu_otagwd(void)
{
	const char *b = getenv("OTAGWD");

	ck_assert_msg(b != NULL, "$OTAGWD is not set (run the test through ctest)");
	return b;
}

void
tu_spawn(struct tu_proc *p, char *const argv[], char *const env[])
{
	int out[2], err[2];
	char pid[32];
	size_t i;

	memset(p, 0, sizeof(*p));
	ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
	p->pid = fork();
	ck_assert_int_ge(p->pid, 0);
	if (p->pid == 0) {
		dup2(out[1], STDOUT_FILENO);
		dup2(err[1], STDERR_FILENO);
		for (i = 0; env != NULL && env[i] != NULL; i++) {
			if (strcmp(env[i], "WATCHDOG_PID=self") == 0) {
				snprintf(pid, sizeof(pid), "%d", (int)getpid());
				setenv("WATCHDOG_PID", pid, 1);
			} else {
				putenv(env[i]);
			}
		}
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	p->out_fd = out[0];
	p->err_fd = err[0];
	p->out = calloc(1, 1);
	p->err = calloc(1, 1);
	ck_assert_ptr_nonnull(p->out);
	ck_assert_ptr_nonnull(p->err);
}

static long long
tu_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends what one fd has; closes it at EOF. */
static void
tu_drain(int *fd, char **buf, size_t *len)
{
	char tmp[4096];
	ssize_t n = read(*fd, tmp, sizeof(tmp));
	char *b;

	if (n <= 0) {
		if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
			close(*fd);
			*fd = -1;
		}
		return;
	}
	b = realloc(*buf, *len + (size_t)n + 1);
	ck_assert_ptr_nonnull(b);
	memcpy(b + *len, tmp, (size_t)n);
	*len += (size_t)n;
	b[*len] = '\0';
	*buf = b;
}

/* Waits up to ms for output and reads it. Returns false once both pipes are closed. */
static bool
tu_read_some(struct tu_proc *p, int ms)
{
	struct pollfd pfd[2] = {
	    {.fd = p->out_fd, .events = POLLIN}, {.fd = p->err_fd, .events = POLLIN}};

	if (p->out_fd < 0 && p->err_fd < 0)
		return false;
	if (poll(pfd, 2, ms) <= 0)
		return true;
	if (pfd[0].revents != 0)
		tu_drain(&p->out_fd, &p->out, &p->out_len);
	if (pfd[1].revents != 0)
		tu_drain(&p->err_fd, &p->err, &p->err_len);
	return true;
}

size_t
tu_wait_stderr(struct tu_proc *p, const char *needle, size_t from, int timeout_ms)
{
	long long end = tu_now_ms() + timeout_ms;
	const char *hit;

	for (;;) {
		if (from <= p->err_len && (hit = strstr(p->err + from, needle)) != NULL)
			return (size_t)(hit - p->err) + strlen(needle);
		if (tu_now_ms() >= end || !tu_read_some(p, 100))
			return 0;
	}
}

int
tu_wait_exit(struct tu_proc *p, int timeout_ms)
{
	long long end = tu_now_ms() + timeout_ms;

	while (tu_read_some(p, 100) && tu_now_ms() < end)
		;
	while (!p->exited) {
		pid_t r = waitpid(p->pid, &p->status, WNOHANG);

		if (r == p->pid) {
			p->exited = true;
			break;
		}
		if (tu_now_ms() >= end) {
			kill(p->pid, SIGKILL);
			waitpid(p->pid, &p->status, 0);
			p->exited = true;
			return -1;
		}
		usleep(10000);
	}
	return WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
}

void
tu_proc_free(struct tu_proc *p)
{
	if (p->pid > 0 && !p->exited) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, &p->status, 0);
		p->exited = true;
	}
	if (p->out_fd >= 0)
		close(p->out_fd);
	if (p->err_fd >= 0)
		close(p->err_fd);
	free(p->out);
	free(p->err);
	p->out = p->err = NULL;
}

int
tu_run(struct tu_proc *p, char *const argv[], char *const env[])
{
	tu_spawn(p, argv, env);
	return tu_wait_exit(p, 60000);
}
