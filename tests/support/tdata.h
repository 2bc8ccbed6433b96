/* Test data: reproducible payloads and firmware-like images made from a seed, and their SHA-256
 * the way otagw names artifacts (lower-case hex). */
#ifndef OTAGW_TESTS_TDATA_H
#define OTAGW_TESTS_TDATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fills buf with pseudo-random bytes (xorshift32) that depend only on seed: the same seed, the
 * same bytes; different seeds, different payloads. */
void tdata_fill(uint8_t *buf, size_t len, uint32_t seed);

/* tdata_fill() with every fourth 256-byte block erased (0xff), as a firmware image has. */
void tdata_image(uint8_t *buf, size_t len, uint32_t seed);

/* SHA-256 of data: binary into digest and lower-case hex into hex, each if not NULL. */
void tdata_sha256(const void *data, size_t len, uint8_t digest[32], char hex[65]);

/* Lower-case hex SHA-256 of the file at path; false if it cannot be read. */
bool tdata_sha256_file(const char *path, char hex[65]);

#endif
