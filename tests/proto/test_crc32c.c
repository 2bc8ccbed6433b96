/* CRC-32C against the published check value and the RFC 3720 (iSCSI) appendix B.4 vectors. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "ck.h"
#include "crc32c.h"

START_TEST(check_value)
{
	const char *s = "123456789";

	ck_assert_uint_eq(crc32c(0, (const uint8_t *)s, strlen(s)), 0xe3069283u);
	ck_assert_uint_eq(crc32c(0, NULL, 0), 0);
}
END_TEST

START_TEST(rfc3720_vectors)
{
	uint8_t b[32];
	size_t i;

	memset(b, 0, sizeof(b));
	ck_assert_uint_eq(crc32c(0, b, sizeof(b)), 0x8a9136aau);
	memset(b, 0xff, sizeof(b));
	ck_assert_uint_eq(crc32c(0, b, sizeof(b)), 0x62a8ab43u);
	for (i = 0; i < sizeof(b); i++)
		b[i] = (uint8_t)i;
	ck_assert_uint_eq(crc32c(0, b, sizeof(b)), 0x46dd794eu);
	for (i = 0; i < sizeof(b); i++)
		b[i] = (uint8_t)(31 - i);
	ck_assert_uint_eq(crc32c(0, b, sizeof(b)), 0x113fdb5cu);
}
END_TEST

START_TEST(chaining)
{
	const uint8_t *s = (const uint8_t *)"123456789";
	size_t split;

	for (split = 0; split <= 9; split++)
		ck_assert_uint_eq(crc32c(crc32c(0, s, split), s + split, 9 - split), 0xe3069283u);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("crc32c");
	TCase *tc = tcase_create("crc32c");

	tcase_add_test(tc, check_value);
	tcase_add_test(tc, rfc3720_vectors);
	tcase_add_test(tc, chaining);
	suite_add_tcase(s, tc);
	return ck_main(s);
}
