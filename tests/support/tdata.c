/* Test payloads and digests (see tdata.h). */
#include "tdata.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "tfile.h"

static uint32_t
tdata_next(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static uint32_t
tdata_seed(uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;

	return x != 0 ? x : 1; /* xorshift never leaves 0 */
}

void
tdata_fill(uint8_t *buf, size_t len, uint32_t seed)
{
	uint32_t x = tdata_seed(seed);
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)(tdata_next(&x) >> 24);
}

void
tdata_image(uint8_t *buf, size_t len, uint32_t seed)
{
	uint32_t x = tdata_seed(seed);
	size_t i;

	for (i = 0; i < len; i++) {
		uint8_t b = (uint8_t)(tdata_next(&x) >> 24);

		buf[i] = (i / 256) % 4 == 3 ? 0xff : b;
	}
}

void
tdata_sha256(const void *data, size_t len, uint8_t digest[32], char hex[65])
{
	uint8_t md[32];
	unsigned int n = 0;
	size_t i;

	ck_assert_int_eq(EVP_Digest(data, len, md, &n, EVP_sha256(), NULL), 1);
	ck_assert_uint_eq(n, sizeof(md));
	if (digest != NULL)
		memcpy(digest, md, sizeof(md));
	if (hex != NULL) {
		for (i = 0; i < sizeof(md); i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
	}
}

bool
tdata_sha256_file(const char *path, char hex[65])
{
	size_t len;
	char *data = tfile_read(path, &len);

	if (data == NULL)
		return false;
	tdata_sha256(data, len, NULL, hex);
	free(data);
	return true;
}
