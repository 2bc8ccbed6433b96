/* The device library's portable SHA-256 against OpenSSL: every length around the block and
 * padding boundaries, a megabyte, and any split of the input across updates. */
#include <check.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "ck.h"
#include "tdata.h"
#include "otadev_sha256.h"

static uint8_t data[1 << 20];

static void
check_len(size_t n, size_t chunk)
{
	uint8_t want[32], got[32];
	otadev_sha256_t c;
	size_t off;

	SHA256(data, n, want);
	otadev_sha256_init(&c);
	for (off = 0; off < n; off += chunk)
		otadev_sha256_update(&c, data + off, n - off < chunk ? n - off : chunk);
	otadev_sha256_final(&c, got);
	ck_assert_msg(memcmp(want, got, 32) == 0, "length %zu in chunks of %zu", n, chunk);
}

START_TEST(lengths)
{
	size_t n;

	tdata_fill(data, sizeof(data), 1);
	for (n = 0; n <= 300; n++)
		check_len(n, n ? n : 1);
	check_len(sizeof(data), sizeof(data));
	check_len(sizeof(data) - 1, 4096);
}
END_TEST

START_TEST(splits)
{
	static const size_t chunks[] = {1, 3, 55, 56, 63, 64, 65, 127, 1000};
	size_t i;

	tdata_fill(data, sizeof(data), 1);
	for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++)
		check_len(10007, chunks[i]);
}
END_TEST

START_TEST(known_answer)
{
	static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41,
	    0x40, 0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
	    0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
	otadev_sha256_t c;
	uint8_t got[32];

	otadev_sha256_init(&c);
	otadev_sha256_update(&c, (const uint8_t *)"abc", 3);
	otadev_sha256_final(&c, got);
	ck_assert_mem_eq(got, abc, 32);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("sha256");
	TCase *tc = tcase_create("sha256");

	tcase_add_test(tc, known_answer);
	tcase_add_test(tc, lengths);
	tcase_add_test(tc, splits);
	suite_add_tcase(s, tc);
	return ck_main(s);
}
