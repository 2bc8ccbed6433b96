/* The payload store at run time: downloads (partial, resume, commit), verification, serving,
 * eviction under a cap, pins, purge, discard and argument checking. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dbtest.h"

#define KB 1000

static struct dbtest t;

static void
setup(void)
{
	dbtest_init(&t);
}

static void
teardown(void)
{
	dbtest_done(&t);
}

/* Adds len bytes made from seed; hex receives the key. */
static void
add(unsigned seed, size_t len, char hex[STORE_SHA256_HEX + 1])
{
	dbtest_add_seed(t.s, seed, len, hex);
}

static bool
present(const char *hex)
{
	struct store_artifact a;

	return store_artifact_get(t.s, hex, &a) == 0;
}

START_TEST(commit_verify_serve)
{
	char hex[STORE_SHA256_HEX + 1], path[512];
	uint8_t buf[5000], back[5000];
	struct store_artifact a;
	uint64_t size = 0, bytes = 0, count = 0;
	struct stat st;
	int fd = -1;

	dbtest_open(&t, 0);
	tdata_fill(buf, sizeof(buf), 1);
	dbtest_add(t.s, buf, sizeof(buf), hex);

	ck_assert_int_eq(store_artifact_get(t.s, hex, &a), 0);
	ck_assert_str_eq(a.sha256, hex);
	ck_assert_int_eq(a.state, STORE_STATE_COMPLETE);
	ck_assert_uint_eq(a.size, sizeof(buf));
	ck_assert_uint_eq(a.bytes_present, sizeof(buf));
	ck_assert_int_eq(a.artifact_id, 63);
	ck_assert_str_eq(a.version, "1.0.0");
	ck_assert_str_eq(a.md5, "");
	ck_assert_uint_eq(a.pins, 0);
	ck_assert(a.verified);
	ck_assert_int_gt(a.created, 0);

	/* The blob is read-only and the partial is gone. */
	dbtest_blob_path(&t, hex, path, sizeof(path));
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0444);
	dbtest_part_path(&t, hex, path, sizeof(path));
	ck_assert(!dbtest_exists(path));

	ck_assert_int_eq(store_blob_verify(t.s, hex), 0);
	ck_assert_int_eq(store_blob_open(t.s, hex, &fd, &size), 0);
	ck_assert_uint_eq(size, sizeof(buf));
	ck_assert_int_eq(pread(fd, back, sizeof(back), 0), (ssize_t)sizeof(back));
	ck_assert_mem_eq(back, buf, sizeof(buf));
	/* Read-only for the session: writes through this fd fail. */
	ck_assert_int_lt(write(fd, buf, 1), 0);
	close(fd);

	ck_assert_int_eq(store_usage(t.s, &bytes, &count), 0);
	ck_assert_uint_eq(bytes, sizeof(buf));
	ck_assert_uint_eq(count, 1);
	/* Upper-case keys name the same artifact. */
	for (char *p = hex; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	ck_assert_int_eq(store_artifact_get(t.s, hex, &a), 0);
}
END_TEST

START_TEST(wrong_digest_refused)
{
	char hex[STORE_SHA256_HEX + 1], path[512];
	uint8_t buf[3000], digest[STORE_SHA256_LEN];
	struct store_partial_meta m;
	struct store_artifact a;
	uint64_t present, size;
	int fd, bfd;

	dbtest_open(&t, 0);
	tdata_fill(buf, sizeof(buf), 2);
	tdata_sha256(buf, sizeof(buf), digest, hex);
	dbtest_meta(&m, hex, sizeof(buf));
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &present), 0);
	buf[100] ^= 1; /* the bytes that arrived are not the artifact's */
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	tdata_sha256(buf, sizeof(buf), digest, NULL);
	ck_assert_int_eq(store_commit(t.s, hex, fd, digest), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(store_errmsg(t.s), hex));

	/* Nothing is left to serve, and no file remains. */
	ck_assert_int_eq(store_artifact_get(t.s, hex, &a), -ENOENT);
	ck_assert_int_eq(store_blob_open(t.s, hex, &bfd, &size), -ENOENT);
	dbtest_blob_path(&t, hex, path, sizeof(path));
	ck_assert(!dbtest_exists(path));
	dbtest_part_path(&t, hex, path, sizeof(path));
	ck_assert(!dbtest_exists(path));
}
END_TEST

START_TEST(wrong_size_refused)
{
	char hex[STORE_SHA256_HEX + 1], path[512];
	uint8_t buf[3000], digest[STORE_SHA256_LEN];
	struct store_partial_meta m;
	struct store_artifact a;
	uint64_t present;
	int fd;

	dbtest_open(&t, 0);
	tdata_fill(buf, sizeof(buf), 3);
	tdata_sha256(buf, sizeof(buf), digest, hex);
	dbtest_meta(&m, hex, sizeof(buf));
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &present), 0);
	ck_assert_int_eq(pwrite(fd, buf, 2000, 0), 2000); /* truncated body */
	ck_assert_int_eq(store_commit(t.s, hex, fd, digest), -EBADMSG);
	ck_assert_int_eq(store_artifact_get(t.s, hex, &a), -ENOENT);
	dbtest_part_path(&t, hex, path, sizeof(path));
	ck_assert(!dbtest_exists(path));
}
END_TEST

START_TEST(corrupt_blob_never_served)
{
	char hex[STORE_SHA256_HEX + 1], path[512];
	struct store_artifact a;
	uint64_t size;
	uint8_t x = 0x55;
	int fd;

	dbtest_open(&t, 0);
	add(4, 70000, hex); /* more than one 64 KiB hashing chunk */
	dbtest_blob_path(&t, hex, path, sizeof(path));
	/* Flip one byte behind the store's back, same length. */
	chmod(path, 0644);
	fd = open(path, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, &x, 1, 66000), 1);
	close(fd);

	ck_assert_int_eq(store_blob_verify(t.s, hex), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(store_errmsg(t.s), "corrupt"));
	ck_assert_int_eq(store_artifact_get(t.s, hex, &a), -ENOENT);
	ck_assert_int_eq(store_blob_open(t.s, hex, &fd, &size), -ENOENT);
	ck_assert(!dbtest_exists(path));
}
END_TEST

START_TEST(blob_changed_or_vanished)
{
	char a_hex[STORE_SHA256_HEX + 1], b_hex[STORE_SHA256_HEX + 1], path[512];
	struct store_artifact a;
	uint64_t size;
	int fd;

	dbtest_open(&t, 0);
	add(5, 1000, a_hex);
	add(6, 1000, b_hex);

	/* Truncated behind our back: removed, never served. */
	dbtest_blob_path(&t, a_hex, path, sizeof(path));
	ck_assert_int_eq(truncate(path, 10), 0);
	ck_assert_int_eq(store_blob_open(t.s, a_hex, &fd, &size), -EBADMSG);
	ck_assert_int_eq(store_artifact_get(t.s, a_hex, &a), -ENOENT);
	ck_assert(!dbtest_exists(path));

	/* Deleted behind our back: forgotten. */
	dbtest_blob_path(&t, b_hex, path, sizeof(path));
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(store_blob_open(t.s, b_hex, &fd, &size), -ENOENT);
	ck_assert_int_eq(store_artifact_get(t.s, b_hex, &a), -ENOENT);
	ck_assert_int_eq(store_blob_verify(t.s, b_hex), -ENOENT);
}
END_TEST

START_TEST(eviction_lru)
{
	char h[5][STORE_SHA256_HEX + 1];
	uint64_t size, bytes, count;
	int fd;

	dbtest_open(&t, 3 * KB);
	add(10, KB, h[0]);
	add(11, KB, h[1]);
	add(12, KB, h[2]);
	/* Serving A makes it the most recently used: B is now the oldest. */
	ck_assert_int_eq(store_blob_open(t.s, h[0], &fd, &size), 0);
	close(fd);
	add(13, KB, h[3]);
	ck_assert(present(h[0]));
	ck_assert(!present(h[1]));
	ck_assert(present(h[2]));
	ck_assert(present(h[3]));
	add(14, KB, h[4]);
	ck_assert(present(h[0]));
	ck_assert(!present(h[2]));
	ck_assert(present(h[3]));
	ck_assert(present(h[4]));
	ck_assert_int_eq(store_usage(t.s, &bytes, &count), 0);
	ck_assert_uint_eq(bytes, 3 * KB);
	ck_assert_uint_eq(count, 3);

	/* A smaller cap evicts down to it, oldest first (A was used before D and E). */
	ck_assert_int_eq(store_set_max_bytes(t.s, 2 * KB), 0);
	ck_assert(!present(h[0]));
	ck_assert(present(h[3]));
	ck_assert(present(h[4]));
}
END_TEST

START_TEST(pins_block_eviction)
{
	char h[5][STORE_SHA256_HEX + 1];
	struct store_partial_meta m;
	uint8_t buf[KB];
	uint64_t present_bytes;
	int fd;

	dbtest_open(&t, 3 * KB);
	add(20, KB, h[0]);
	add(21, KB, h[1]);
	add(22, KB, h[2]);
	ck_assert_int_eq(store_pin(t.s, h[0]), 0);
	ck_assert_int_eq(store_pin(t.s, h[1]), 0);
	add(23, KB, h[3]); /* A is oldest but pinned: C goes */
	ck_assert(present(h[0]));
	ck_assert(present(h[1]));
	ck_assert(!present(h[2]));
	ck_assert_int_eq(store_pin(t.s, h[3]), 0);

	/* Everything is pinned: a new download does not fit. */
	tdata_fill(buf, sizeof(buf), 24);
	tdata_sha256(buf, sizeof(buf), NULL, h[4]);
	dbtest_meta(&m, h[4], sizeof(buf));
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &present_bytes), -ENOSPC);
	ck_assert_ptr_nonnull(strstr(store_errmsg(t.s), "cache_max"));
	ck_assert(!present(h[4]));

	/* A pinned artifact cannot be discarded either. */
	ck_assert_int_eq(store_discard(t.s, h[0]), -EBUSY);

	ck_assert_int_eq(store_unpin(t.s, h[0]), 0);
	add(24, KB, h[4]);
	ck_assert(!present(h[0]));
	ck_assert(present(h[1]));
	ck_assert(present(h[3]));
	ck_assert(present(h[4]));
	ck_assert_int_eq(store_unpin(t.s, h[1]), 0);
	ck_assert_int_eq(store_unpin(t.s, h[3]), 0);
}
END_TEST

START_TEST(pin_unpin_balance)
{
	char h[STORE_SHA256_HEX + 1], unknown[STORE_SHA256_HEX + 1];
	struct store_artifact a;

	dbtest_open(&t, 0);
	add(30, 100, h);
	memset(unknown, 'a', STORE_SHA256_HEX);
	unknown[STORE_SHA256_HEX] = '\0';
	ck_assert_int_eq(store_pin(t.s, unknown), -ENOENT);
	ck_assert_int_eq(store_unpin(t.s, unknown), -ENOENT);
	ck_assert_int_eq(store_unpin(t.s, h), -EINVAL);
	ck_assert_int_eq(store_pin(t.s, h), 0);
	ck_assert_int_eq(store_pin(t.s, h), 0);
	ck_assert_int_eq(store_artifact_get(t.s, h, &a), 0);
	ck_assert_uint_eq(a.pins, 2);
	ck_assert_int_eq(store_unpin(t.s, h), 0);
	ck_assert_int_eq(store_unpin(t.s, h), 0);
	ck_assert_int_eq(store_unpin(t.s, h), -EINVAL);
}
END_TEST

START_TEST(purge_spares_pinned)
{
	char h[3][STORE_SHA256_HEX + 1], path[512];
	uint64_t bytes = 0, count = 0;

	dbtest_open(&t, 0);
	add(40, 100, h[0]);
	add(41, 200, h[1]);
	add(42, 300, h[2]);
	ck_assert_int_eq(store_pin(t.s, h[1]), 0);
	ck_assert_int_eq(store_purge(t.s, &bytes, &count), 0);
	ck_assert_uint_eq(bytes, 400);
	ck_assert_uint_eq(count, 2);
	ck_assert(!present(h[0]));
	ck_assert(present(h[1]));
	ck_assert(!present(h[2]));
	dbtest_blob_path(&t, h[0], path, sizeof(path));
	ck_assert(!dbtest_exists(path));
	dbtest_blob_path(&t, h[1], path, sizeof(path));
	ck_assert(dbtest_exists(path));

	ck_assert_int_eq(store_unpin(t.s, h[1]), 0);
	ck_assert_int_eq(store_purge(t.s, NULL, &count), 0);
	ck_assert_uint_eq(count, 1);
	ck_assert_int_eq(store_usage(t.s, &bytes, &count), 0);
	ck_assert_uint_eq(bytes, 0);
	ck_assert_uint_eq(count, 0);
}
END_TEST

START_TEST(discard)
{
	char h[STORE_SHA256_HEX + 1], p[STORE_SHA256_HEX + 1], path[512];
	struct store_partial_meta m;
	uint8_t buf[500];
	uint64_t present_bytes;
	int fd;

	dbtest_open(&t, 0);
	add(50, 100, h);
	ck_assert_int_eq(store_discard(t.s, h), 0);
	ck_assert(!present(h));
	dbtest_blob_path(&t, h, path, sizeof(path));
	ck_assert(!dbtest_exists(path));
	ck_assert_int_eq(store_discard(t.s, h), -ENOENT);

	/* A partial held by a download is pinned; once closed it can be discarded. */
	tdata_fill(buf, sizeof(buf), 51);
	tdata_sha256(buf, sizeof(buf), NULL, p);
	dbtest_meta(&m, p, sizeof(buf));
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &present_bytes), 0);
	ck_assert_int_eq(pwrite(fd, buf, 100, 0), 100);
	ck_assert_int_eq(store_discard(t.s, p), -EBUSY);
	ck_assert_int_eq(store_partial_close(t.s, p, fd), 0);
	ck_assert_int_eq(store_discard(t.s, p), 0);
	dbtest_part_path(&t, p, path, sizeof(path));
	ck_assert(!dbtest_exists(path));
}
END_TEST

START_TEST(too_big_for_cache)
{
	char h[STORE_SHA256_HEX + 1];
	struct store_partial_meta m;
	uint64_t present_bytes = 7;
	int fd = -7;

	dbtest_open(&t, 1000);
	memset(h, 'b', STORE_SHA256_HEX);
	h[STORE_SHA256_HEX] = '\0';
	dbtest_meta(&m, h, 1001);
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &present_bytes), -EFBIG);
	ck_assert_ptr_nonnull(strstr(store_errmsg(t.s), "cache_max=1000"));
	/* Output parameters are untouched on failure. */
	ck_assert_int_eq(fd, -7);
	ck_assert_uint_eq(present_bytes, 7);
	ck_assert(!present(h));
}
END_TEST

START_TEST(partial_resume_bookkeeping)
{
	char h[STORE_SHA256_HEX + 1], path[512];
	uint8_t buf[10000], digest[STORE_SHA256_LEN];
	struct store_partial_meta m;
	struct store_artifact a;
	uint64_t got = 99, bytes;
	int fd, fd2;

	dbtest_open(&t, 0);
	tdata_fill(buf, sizeof(buf), 60);
	tdata_sha256(buf, sizeof(buf), digest, h);
	dbtest_meta(&m, h, sizeof(buf));
	m.md5 = "0123456789ABCDEF0123456789abcdef";
	m.is_delta = true;

	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &got), 0);
	ck_assert_uint_eq(got, 0);
	ck_assert_int_eq(store_artifact_get(t.s, h, &a), 0);
	ck_assert_int_eq(a.state, STORE_STATE_PARTIAL);
	ck_assert_uint_eq(a.pins, 1);
	ck_assert(a.is_delta);
	ck_assert_str_eq(a.md5, "0123456789ABCDEF0123456789abcdef");
	ck_assert_str_eq(a.url, m.url);
	ck_assert_int_eq(a.url_fetched, 1700000000);
	/* A second download of the same artifact is refused while this one runs. */
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd2, &got), -EBUSY);

	ck_assert_int_eq(pwrite(fd, buf, 4000, 0), 4000);
	ck_assert_int_eq(store_partial_progress(t.s, h, 4000), 0);
	ck_assert_int_eq(store_partial_progress(t.s, h, sizeof(buf) + 1), -EINVAL);
	ck_assert_int_eq(store_artifact_get(t.s, h, &a), 0);
	ck_assert_uint_eq(a.bytes_present, 4000);
	ck_assert_int_eq(store_usage(t.s, &bytes, NULL), 0);
	ck_assert_uint_eq(bytes, 4000);

	/* Interrupted after 6000 bytes; progress was last recorded at 4000. */
	ck_assert_int_eq(pwrite(fd, buf + 4000, 2000, 4000), 2000);
	ck_assert_int_eq(store_partial_close(t.s, h, fd), 0);
	ck_assert_int_eq(store_artifact_get(t.s, h, &a), 0);
	ck_assert_uint_eq(a.bytes_present, 6000);
	ck_assert_uint_eq(a.pins, 0);

	/* Resume with a fresh URL: the file length says where to continue. */
	m.url = "https://cdn.example/fresh";
	m.url_fetched = 1700003600;
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &got), 0);
	ck_assert_uint_eq(got, 6000);
	ck_assert_int_eq(store_artifact_get(t.s, h, &a), 0);
	ck_assert_str_eq(a.url, "https://cdn.example/fresh");
	ck_assert_int_eq(a.url_fetched, 1700003600);
	ck_assert_int_eq(
	    store_partial_set_url(t.s, h, "https://cdn.example/fresher", 1700007200), 0);
	ck_assert_int_eq(store_artifact_get(t.s, h, &a), 0);
	ck_assert_str_eq(a.url, "https://cdn.example/fresher");
	ck_assert_int_eq(a.url_fetched, 1700007200);

	/* The server ignored Range: start over from 0 through the same fd. */
	ck_assert_int_eq(store_partial_restart(t.s, h), 0);
	dbtest_part_path(&t, h, path, sizeof(path));
	ck_assert_int_eq(dbtest_file_len(path), 0);
	ck_assert_int_eq(store_artifact_get(t.s, h, &a), 0);
	ck_assert_uint_eq(a.bytes_present, 0);
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	ck_assert_int_eq(store_commit(t.s, h, fd, digest), 0);
	ck_assert_int_eq(store_artifact_get(t.s, h, &a), 0);
	ck_assert_int_eq(a.state, STORE_STATE_COMPLETE);
	ck_assert_uint_eq(a.pins, 0);
	ck_assert_uint_eq(a.bytes_present, sizeof(buf));

	/* Complete now: no second download, and the partial-only calls say so. */
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &got), -EEXIST);
	ck_assert_int_eq(store_partial_progress(t.s, h, 1), -ENOENT);
	ck_assert_int_eq(store_partial_restart(t.s, h), -ENOENT);
	ck_assert_int_eq(store_partial_set_url(t.s, h, "https://x", 1), -ENOENT);
}
END_TEST

START_TEST(commit_needs_its_own_fd)
{
	char h[STORE_SHA256_HEX + 1];
	uint8_t buf[1000], digest[STORE_SHA256_LEN];
	struct store_partial_meta m;
	struct store_artifact a;
	uint64_t got;
	int fd, other;

	dbtest_open(&t, 0);
	tdata_fill(buf, sizeof(buf), 70);
	tdata_sha256(buf, sizeof(buf), digest, h);
	dbtest_meta(&m, h, sizeof(buf));
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &got), 0);
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	other = open("/dev/null", O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(other, 0);
	ck_assert_int_eq(store_commit(t.s, h, other, digest), -EINVAL);
	/* The partial survives (and its pin is released), so a retry can finish it. */
	ck_assert_int_eq(store_artifact_get(t.s, h, &a), 0);
	ck_assert_int_eq(a.state, STORE_STATE_PARTIAL);
	ck_assert_uint_eq(a.pins, 0);
	close(fd);
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &got), 0);
	ck_assert_uint_eq(got, sizeof(buf));
	ck_assert_int_eq(store_commit(t.s, h, fd, digest), 0);
}
END_TEST

START_TEST(partial_vanished_before_commit)
{
	char h[STORE_SHA256_HEX + 1], path[512];
	uint8_t buf[1000], digest[STORE_SHA256_LEN];
	struct store_partial_meta m;
	struct store_artifact a;
	uint64_t got;
	int fd;

	dbtest_open(&t, 0);
	tdata_fill(buf, sizeof(buf), 71);
	tdata_sha256(buf, sizeof(buf), digest, h);
	dbtest_meta(&m, h, sizeof(buf));
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &got), 0);
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	dbtest_part_path(&t, h, path, sizeof(path));
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(store_commit(t.s, h, fd, digest), -ENOENT);
	ck_assert_ptr_nonnull(strstr(store_errmsg(t.s), "vanished"));
	ck_assert_int_eq(store_artifact_get(t.s, h, &a), -ENOENT);
	dbtest_blob_path(&t, h, path, sizeof(path));
	ck_assert(!dbtest_exists(path));
}
END_TEST

START_TEST(bad_arguments)
{
	char h[STORE_SHA256_HEX + 1];
	struct store_partial_meta m;
	struct store_artifact a;
	uint64_t got;
	char longurl[STORE_URL_MAX + 2];
	int fd;

	dbtest_open(&t, 0);
	ck_assert_int_eq(store_artifact_get(t.s, "abc", &a), -EINVAL);
	ck_assert_int_eq(store_artifact_get(t.s, NULL, &a), -EINVAL);
	memset(h, 'g', STORE_SHA256_HEX);
	h[STORE_SHA256_HEX] = '\0';
	ck_assert_int_eq(store_pin(t.s, h), -EINVAL);
	memset(h, 'c', STORE_SHA256_HEX);
	dbtest_meta(&m, h, 100);

	m.size = 0;
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &got), -EINVAL);
	m.size = 100;
	m.version = "bad\nversion";
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &got), -EINVAL);
	m.version = "1.0.0";
	m.md5 = "xyz";
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &got), -EINVAL);
	m.md5 = NULL;
	memset(longurl, 'u', sizeof(longurl) - 1);
	longurl[sizeof(longurl) - 1] = '\0';
	m.url = longurl;
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &got), -EINVAL);
	m.url = "";
	ck_assert_int_eq(store_partial_open(t.s, &m, &fd, &got), -EINVAL);
	ck_assert(!present(h));
}
END_TEST

struct walk {
	int n;
	char keys[8][STORE_SHA256_HEX + 1];
	int stop_at;
	struct store *s;
};

static int
walk_cb(const struct store_artifact *a, void *arg)
{
	struct walk *w = arg;
	uint64_t size;
	int fd;

	memcpy(w->keys[w->n++], a->sha256, sizeof(w->keys[0]));
	/* Using an artifact during the walk moves it last; the walk still visits it once. */
	if (store_blob_open(w->s, a->sha256, &fd, &size) == 0)
		close(fd);
	return w->n == w->stop_at ? 42 : 0;
}

START_TEST(foreach_in_lru_order)
{
	char h[3][STORE_SHA256_HEX + 1];
	struct walk w = {.stop_at = -1};
	uint64_t size;
	int fd;

	dbtest_open(&t, 0);
	add(80, 10, h[0]);
	add(81, 10, h[1]);
	add(82, 10, h[2]);
	ck_assert_int_eq(store_blob_open(t.s, h[0], &fd, &size), 0);
	close(fd);
	w.s = t.s;
	ck_assert_int_eq(store_foreach_artifact(t.s, walk_cb, &w), 0);
	ck_assert_int_eq(w.n, 3);
	ck_assert_str_eq(w.keys[0], h[1]);
	ck_assert_str_eq(w.keys[1], h[2]);
	ck_assert_str_eq(w.keys[2], h[0]);

	memset(&w, 0, sizeof(w));
	w.s = t.s;
	w.stop_at = 2;
	ck_assert_int_eq(store_foreach_artifact(t.s, walk_cb, &w), 42);
	ck_assert_int_eq(w.n, 2);
}
END_TEST

START_TEST(second_process_locked_out)
{
	struct store *other = NULL;
	char err[STORE_ERRMSG_MAX] = "";

	dbtest_open(&t, 0);
	ck_assert_int_eq(dbtest_try_open(&t, 0, &other, err, sizeof(err)), -EBUSY);
	ck_assert_ptr_null(other);
	ck_assert_ptr_nonnull(strstr(err, t.cache));
}
END_TEST

static Suite *
store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, commit_verify_serve);
	tcase_add_test(tc, wrong_digest_refused);
	tcase_add_test(tc, wrong_size_refused);
	tcase_add_test(tc, corrupt_blob_never_served);
	tcase_add_test(tc, blob_changed_or_vanished);
	tcase_add_test(tc, eviction_lru);
	tcase_add_test(tc, pins_block_eviction);
	tcase_add_test(tc, pin_unpin_balance);
	tcase_add_test(tc, purge_spares_pinned);
	tcase_add_test(tc, discard);
	tcase_add_test(tc, too_big_for_cache);
	tcase_add_test(tc, partial_resume_bookkeeping);
	tcase_add_test(tc, commit_needs_its_own_fd);
	tcase_add_test(tc, partial_vanished_before_commit);
	tcase_add_test(tc, bad_arguments);
	tcase_add_test(tc, foreach_in_lru_order);
	tcase_add_test(tc, second_process_locked_out);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(store_suite());
}
