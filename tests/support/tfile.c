/* Files for tests (see tfile.h). */
#include "tfile.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void
tfile_write(const char *path, mode_t mode, const void *data, size_t len)
{
	const uint8_t *b = data;
	int fd;

	/* in place (a test may corrupt a file another holds a link to), unless its mode forbids */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EACCES && unlink(path) == 0)
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	while (len > 0) {
		ssize_t n = write(fd, b, len);

		ck_assert_msg(n > 0 || errno == EINTR, "write %s: %s", path, strerror(errno));
		if (n > 0) {
			b += n;
			len -= (size_t)n;
		}
	}
	ck_assert_msg(fchmod(fd, mode) == 0, "chmod %s: %s", path, strerror(errno));
	ck_assert_msg(close(fd) == 0, "close %s: %s", path, strerror(errno));
}

void
tfile_write_str(const char *path, mode_t mode, const char *text)
{
	tfile_write(path, mode, text, strlen(text));
}

void
tfile_template(const char *path, mode_t mode, const char *dir, const char *fmt, ...)
{
	char *text, *t;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&text, fmt, ap);
	va_end(ap);
	ck_assert_int_ge(r, 0);
	t = dir != NULL ? tfile_subst(text, "@DIR@", dir) : text;
	tfile_write_str(path, mode, t);
	if (t != text)
		free(t);
	free(text);
}

char *
tfile_read(const char *path, size_t *len)
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

size_t
tfile_count(const char *path, const char *needle)
{
	char *text = tfile_read(path, NULL), *p;
	size_t n = 0;

	if (text == NULL)
		return 0;
	for (p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	free(text);
	return n;
}

void
tfile_dump(const char *title, const char *path)
{
	size_t len;
	char *text = tfile_read(path, &len);
	const char *start;

	if (text == NULL)
		return;
	start = len > 6000 ? text + len - 6000 : text;
	fprintf(stderr, "---- %s (%s) ----\n%s\n---- end of %s ----\n", title, path, start, title);
	free(text);
}

void
tfile_capture_stderr(const char *path)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);

	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	fflush(stderr);
	ck_assert_int_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	close(fd);
}

char *
tfile_subst(const char *s, const char *from, const char *to)
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
