/* See testutil.h. */
#include "testutil.h"

#include "hex.h"

#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/evp.h>

int
t_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static void
t_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

static void
t_run(
    struct event_base *base, const bool *flag, const size_t *count, size_t want, unsigned timeout_s)
{
	bool expired = false;
	struct timeval tv = {(time_t)timeout_s, 0};
	struct event *deadline = evtimer_new(base, t_deadline_cb, &expired);

	ck_assert_ptr_nonnull(deadline);
	evtimer_add(deadline, &tv);
	while (!expired && !(flag != NULL ? *flag : *count >= want))
		event_base_loop(base, EVLOOP_ONCE);
	event_free(deadline);
	ck_assert_msg(!expired, "nothing happened within %u s", timeout_s);
}

void
t_run_until(struct event_base *base, const bool *flag, unsigned timeout_s)
{
	t_run(base, flag, NULL, 0, timeout_s);
}

void
t_run_until_count(struct event_base *base, const size_t *count, size_t want, unsigned timeout_s)
{
	t_run(base, NULL, count, want, timeout_s);
}

void
t_run_for(struct event_base *base, unsigned ms)
{
	bool expired = false;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	struct event *deadline = evtimer_new(base, t_deadline_cb, &expired);

	ck_assert_ptr_nonnull(deadline);
	evtimer_add(deadline, &tv);
	while (!expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(deadline);
}

char *
t_mkdtemp(const char *tag)
{
	const char *tmp = getenv("TMPDIR");
	char *path;

	ck_assert_int_ge(asprintf(&path, "%s/otagw-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag), 0);
	ck_assert_ptr_nonnull(mkdtemp(path));
	return path;
}

static int
t_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void
t_rmtree(const char *path)
{
	if (path != NULL)
		nftw(path, t_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void
t_fill(uint8_t *buf, size_t len, uint32_t seed)
{
	uint32_t x = seed != 0 ? seed : 0x12345678u;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (uint8_t)(x >> 24);
	}
}

void
t_sha256_hex(const void *data, size_t len, char *out)
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	ck_assert_int_eq(EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL), 1);
	hex_encode(md, mdlen, out);
}

char *
t_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;

	if (f == NULL)
		return NULL;
	for (;;) {
		size_t got;

		if (cap - n < 4096) {
			char *p = realloc(buf, cap + 65536);

			ck_assert_ptr_nonnull(p);
			buf = p;
			cap += 65536;
		}
		got = fread(buf + n, 1, cap - n - 1, f);
		if (got == 0)
			break;
		n += got;
	}
	fclose(f);
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}
