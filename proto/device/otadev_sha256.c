/* SHA-256 (FIPS 180-4), sized for small MCUs: a 16-word rolling message schedule keeps the stack
 * at about 100 bytes, and one compression loop keeps the code near 1 KiB on Cortex-M0+. */
#include "otadev_sha256.h"

#include <string.h>

static const uint32_t otadev_sha256_k[64] = {
    0x428a2f98,
    0x71374491,
    0xb5c0fbcf,
    0xe9b5dba5,
    0x3956c25b,
    0x59f111f1,
    0x923f82a4,
    0xab1c5ed5,
    0xd807aa98,
    0x12835b01,
    0x243185be,
    0x550c7dc3,
    0x72be5d74,
    0x80deb1fe,
    0x9bdc06a7,
    0xc19bf174,
    0xe49b69c1,
    0xefbe4786,
    0x0fc19dc6,
    0x240ca1cc,
    0x2de92c6f,
    0x4a7484aa,
    0x5cb0a9dc,
    0x76f988da,
    0x983e5152,
    0xa831c66d,
    0xb00327c8,
    0xbf597fc7,
    0xc6e00bf3,
    0xd5a79147,
    0x06ca6351,
    0x14292967,
    0x27b70a85,
    0x2e1b2138,
    0x4d2c6dfc,
    0x53380d13,
    0x650a7354,
    0x766a0abb,
    0x81c2c92e,
    0x92722c85,
    0xa2bfe8a1,
    0xa81a664b,
    0xc24b8b70,
    0xc76c51a3,
    0xd192e819,
    0xd6990624,
    0xf40e3585,
    0x106aa070,
    0x19a4c116,
    0x1e376c08,
    0x2748774c,
    0x34b0bcb5,
    0x391c0cb3,
    0x4ed8aa4a,
    0x5b9cca4f,
    0x682e6ff3,
    0x748f82ee,
    0x78a5636f,
    0x84c87814,
    0x8cc70208,
    0x90befffa,
    0xa4506ceb,
    0xbef9a3f7,
    0xc67178f2,
};

static uint32_t
otadev_sha256_ror(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

static void
otadev_sha256_block(otadev_sha256_t *c)
{
	uint32_t w[16], v[8];
	const uint8_t *p = c->buf;
	unsigned i;

	for (i = 0; i < 16; i++, p += 4)
		w[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
	memcpy(v, c->h, sizeof(v));
	for (i = 0; i < 64; i++) {
		uint32_t t1, t2, wi;

		if (i < 16) {
			wi = w[i];
		} else {
			uint32_t a = w[(i + 1) & 15], b = w[(i + 14) & 15];
			uint32_t s0 = otadev_sha256_ror(a, 7) ^ otadev_sha256_ror(a, 18) ^ (a >> 3);
			uint32_t s1 =
			    otadev_sha256_ror(b, 17) ^ otadev_sha256_ror(b, 19) ^ (b >> 10);

			wi = w[i & 15] += s0 + w[(i + 9) & 15] + s1;
		}
		t1 = v[7] +
		     (otadev_sha256_ror(v[4], 6) ^ otadev_sha256_ror(v[4], 11) ^
			 otadev_sha256_ror(v[4], 25)) +
		     ((v[4] & v[5]) ^ (~v[4] & v[6])) + otadev_sha256_k[i] + wi;
		t2 = (otadev_sha256_ror(v[0], 2) ^ otadev_sha256_ror(v[0], 13) ^
			 otadev_sha256_ror(v[0], 22)) +
		     ((v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]));
		/* a..h (v[0..7]) move down one. Spelled out: GCC turns a loop into memmove,
		 * which an MCU would then link for this alone. */
		v[7] = v[6];
		v[6] = v[5];
		v[5] = v[4];
		v[4] = v[3];
		v[3] = v[2];
		v[2] = v[1];
		v[1] = v[0];
		v[4] += t1;
		v[0] = t1 + t2;
	}
	for (i = 0; i < 8; i++)
		c->h[i] += v[i];
}

void
otadev_sha256_init(otadev_sha256_t *c)
{
	static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f,
	    0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

	memcpy(c->h, iv, sizeof(iv));
	c->n = 0;
}

void
otadev_sha256_update(otadev_sha256_t *c, const uint8_t *p, size_t n)
{
	while (n--) {
		c->buf[c->n++ & 63] = *p++;
		if ((c->n & 63) == 0)
			otadev_sha256_block(c);
	}
}

void
otadev_sha256_final(otadev_sha256_t *c, uint8_t out[32])
{
	/* The length in bits as a big-endian u64; images are < 4 GiB, so 35 bits suffice. */
	uint32_t lo = c->n << 3;
	uint8_t len[8] = {0, 0, 0, (uint8_t)(c->n >> 29), (uint8_t)(lo >> 24), (uint8_t)(lo >> 16),
	    (uint8_t)(lo >> 8), (uint8_t)lo};
	uint8_t pad = 0x80;
	unsigned i;

	otadev_sha256_update(c, &pad, 1);
	pad = 0;
	while ((c->n & 63) != 56)
		otadev_sha256_update(c, &pad, 1);
	otadev_sha256_update(c, len, sizeof(len));
	for (i = 0; i < 32; i++)
		out[i] = (uint8_t)(c->h[i / 4] >> (24 - 8 * (i % 4)));
}
