/* SHA-256 for otadev's verify pass: a small portable implementation (FIPS 180-4). A port with a
 * hardware hash engine replaces it: define OTADEV_SHA256_PORT_HEADER as a header that provides
 * otadev_sha256_t and the three functions below, and do not build otadev_sha256.c. */
#ifndef OTAGW_OTADEV_SHA256_H
#define OTAGW_OTADEV_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef OTADEV_SHA256_PORT_HEADER
#include OTADEV_SHA256_PORT_HEADER
#else
typedef struct otadev_sha256 {
	uint32_t h[8];
	uint32_t n; /* bytes hashed so far (images are < 4 GiB) */
	uint8_t buf[64];
} otadev_sha256_t;

/* Starts a digest. */
void otadev_sha256_init(otadev_sha256_t *c);
/* Adds p[0..n). */
void otadev_sha256_update(otadev_sha256_t *c, const uint8_t *p, size_t n);
/* Writes the 32-byte digest to out; c must be re-initialised before reuse. */
void otadev_sha256_final(otadev_sha256_t *c, uint8_t out[32]);
#endif

#endif
