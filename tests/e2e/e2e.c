/* Test helpers (see e2e.h). */
#include "e2e.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define E2E_MAX_DIRS  16
#define E2E_MAX_PROCS 64

/* What the atexit handler cleans up when a failing assertion ends the test process. */
static char *e2e_dirs[E2E_MAX_DIRS];
static struct e2e_proc *e2e_procs[E2E_MAX_PROCS];
static bool e2e_atexit_set;

static void
e2e_cleanup(void)
{
	size_t i;

	for (i = 0; i < E2E_MAX_PROCS; i++) {
		if (e2e_procs[i] != NULL && e2e_procs[i]->pid > 0 && !e2e_procs[i]->exited) {
			kill(e2e_procs[i]->pid, SIGKILL);
			waitpid(e2e_procs[i]->pid, NULL, 0);
		}
		e2e_procs[i] = NULL;
	}
	for (i = 0; i < E2E_MAX_DIRS; i++) {
		if (e2e_dirs[i] != NULL)
			e2e_rmrf(e2e_dirs[i]);
		free(e2e_dirs[i]);
		e2e_dirs[i] = NULL;
	}
}

static void
e2e_arm_cleanup(void)
{
	if (!e2e_atexit_set) {
		atexit(e2e_cleanup);
		e2e_atexit_set = true;
	}
}

char *
e2e_tmpdir(const char *tag)
{
	const char *tmp = getenv("TMPDIR");
	char *path;
	size_t i;

	e2e_arm_cleanup();
	ck_assert_int_gt(asprintf(&path, "%s/otagw-%s-XXXXXX",
			     tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp", tag),
	    0);
	ck_assert_ptr_nonnull(mkdtemp(path));
	for (i = 0; i < E2E_MAX_DIRS; i++) {
		if (e2e_dirs[i] == NULL) {
			e2e_dirs[i] = strdup(path);
			break;
		}
	}
	return path;
}

void
e2e_rmrf(const char *dir)
{
	struct dirent *de;
	struct stat st;
	char *p;
	DIR *d;

	if (dir == NULL)
		return;
	if (getenv("OTAGW_E2E_KEEP") != NULL && strstr(dir, "/otagw-") != NULL &&
	    strchr(strstr(dir, "/otagw-") + 1, '/') == NULL) {
		/* for a look after the run: OTAGW_E2E_KEEP=1 ctest -R ... */
		fprintf(stderr, "keeping %s\n", dir);
		return;
	}
	d = opendir(dir);
	if (d != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (asprintf(&p, "%s/%s", dir, de->d_name) < 0)
				continue;
			if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
				chmod(p, 0700);
				e2e_rmrf(p);
			} else {
				unlink(p);
			}
			free(p);
		}
		closedir(d);
	}
	rmdir(dir);
}

char *
e2e_path(const char *dir, const char *name)
{
	char *p;

	ck_assert_int_gt(asprintf(&p, "%s/%s", dir, name), 0);
	return p;
}

void
e2e_write(const char *path, mode_t mode, const void *data, size_t len)
{
	const uint8_t *b = data;
	int fd;

	if (len == 0)
		len = strlen(data);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	ck_assert_int_eq(fchmod(fd, mode), 0);
	while (len > 0) {
		ssize_t n = write(fd, b, len);

		ck_assert_msg(n > 0 || errno == EINTR, "%s: %s", path, strerror(errno));
		if (n > 0) {
			b += n;
			len -= (size_t)n;
		}
	}
	ck_assert_int_eq(close(fd), 0);
}

char *
e2e_read(const char *path, size_t *len)
{
	char *buf = NULL, *b;
	size_t n = 0, cap = 0;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	for (;;) {
		if (cap - n < 65536) {
			cap = cap * 2 + 65536;
			b = realloc(buf, cap + 1);
			if (b == NULL) {
				free(buf);
				close(fd);
				return NULL;
			}
			buf = b;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}

void
e2e_fill(uint8_t *buf, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		/* a quarter of the 256-byte blocks are erased flash */
		buf[i] = (i / 256) % 4 == 3 ? 0xff : (uint8_t)(x >> 7);
	}
}

void
e2e_sha256_hex(const void *data, size_t len, char out[65])
{
	uint8_t md[32];
	unsigned int n = 0;
	size_t i;

	ck_assert_int_eq(EVP_Digest(data, len, md, &n, EVP_sha256(), NULL), 1);
	for (i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

bool
e2e_sha256_file(const char *path, char out[65])
{
	size_t len;
	char *data = e2e_read(path, &len);

	if (data == NULL)
		return false;
	e2e_sha256_hex(data, len, out);
	free(data);
	return true;
}

size_t
e2e_count(const char *path, const char *needle)
{
	char *text = e2e_read(path, NULL), *p;
	size_t n = 0;

	if (text == NULL)
		return 0;
	for (p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	free(text);
	return n;
}

uint64_t
e2e_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
e2e_sleep_ms(unsigned ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

uint16_t
e2e_free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

const char *
e2e_prog(const char *env)
{
	const char *p = getenv(env);

	ck_assert_msg(p != NULL && p[0] != '\0', "$%s is not set (run through ctest)", env);
	return p;
}

void
e2e_spawn(
    struct e2e_proc *p, const char *name, char *const argv[], const char *log, char *const env[])
{
	pid_t parent = getpid();
	size_t i;
	int fd;

	e2e_arm_cleanup();
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->log = strdup(log);
	ck_assert_ptr_nonnull(p->log);
	fflush(NULL);
	p->pid = fork();
	ck_assert_int_ge(p->pid, 0);
	if (p->pid == 0) {
		/* die with the test, whatever ends it */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd < 0)
			_exit(127);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd >= 0)
			dup2(fd, STDIN_FILENO);
		for (i = 0; env != NULL && env[i] != NULL; i++)
			putenv(env[i]);
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	for (i = 0; i < E2E_MAX_PROCS; i++) {
		if (e2e_procs[i] == NULL || e2e_procs[i] == p) {
			e2e_procs[i] = p;
			break;
		}
	}
}

bool
e2e_running(struct e2e_proc *p)
{
	if (p->pid <= 0 || p->exited)
		return false;
	if (waitpid(p->pid, &p->status, WNOHANG) == p->pid) {
		p->exited = true;
		return false;
	}
	return true;
}

static bool
e2e_find_from(const char *path, const char *needle, size_t *from)
{
	size_t len;
	char *text = e2e_read(path, &len), *hit;
	bool found = false;

	if (text == NULL)
		return false;
	if (*from <= len && (hit = strstr(text + *from, needle)) != NULL) {
		*from = (size_t)(hit - text) + strlen(needle);
		found = true;
	}
	free(text);
	return found;
}

bool
e2e_wait_log(struct e2e_proc *p, const char *needle, size_t *from, unsigned timeout_ms)
{
	uint64_t end = e2e_now_ms() + timeout_ms;
	size_t zero = 0;

	if (from == NULL)
		from = &zero;
	for (;;) {
		if (e2e_find_from(p->log, needle, from))
			return true;
		if (!e2e_running(p))
			return e2e_find_from(p->log, needle, from);
		if (e2e_now_ms() >= end)
			return false;
		e2e_sleep_ms(20);
	}
}

bool
e2e_wait_count(struct e2e_proc *p, const char *needle, size_t count, unsigned timeout_ms)
{
	uint64_t end = e2e_now_ms() + timeout_ms;

	for (;;) {
		if (e2e_count(p->log, needle) >= count)
			return true;
		if (!e2e_running(p))
			return e2e_count(p->log, needle) >= count;
		if (e2e_now_ms() >= end)
			return false;
		e2e_sleep_ms(20);
	}
}

int
e2e_wait_exit(struct e2e_proc *p, unsigned timeout_ms)
{
	uint64_t end = e2e_now_ms() + timeout_ms;

	while (e2e_running(p)) {
		if (e2e_now_ms() >= end) {
			kill(p->pid, SIGKILL);
			waitpid(p->pid, &p->status, 0);
			p->exited = true;
			return -1;
		}
		e2e_sleep_ms(10);
	}
	if (p->pid <= 0)
		return -1;
	return WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
}

int
e2e_stop(struct e2e_proc *p, int sig, unsigned timeout_ms)
{
	if (e2e_running(p))
		kill(p->pid, sig);
	return e2e_wait_exit(p, timeout_ms);
}

void
e2e_proc_free(struct e2e_proc *p)
{
	size_t i;

	if (e2e_running(p)) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, &p->status, 0);
		p->exited = true;
	}
	for (i = 0; i < E2E_MAX_PROCS; i++)
		if (e2e_procs[i] == p)
			e2e_procs[i] = NULL;
	free(p->log);
	p->log = NULL;
}

void
e2e_dump(const char *title, const char *path)
{
	size_t len;
	char *text = e2e_read(path, &len);
	const char *start;

	if (text == NULL)
		return;
	start = len > 6000 ? text + len - 6000 : text;
	fprintf(stderr, "---- %s (%s) ----\n%s\n---- end of %s ----\n", title, path, start, title);
	free(text);
}
