/* CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, init and xorout 0xFFFFFFFF,
 * check("123456789") = 0xE3069283. It guards every stream-link frame. A 16-entry table keeps
 * the MCU flash cost at 64 bytes. Portable C99. */
#ifndef OTAGW_CRC32C_H
#define OTAGW_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#include "attr.h"

/* Returns the CRC-32C of the bytes already covered by crc (0 for none) followed by p[0..n).
 * Chains like zlib's crc32(): crc32c(crc32c(0, a, na), b, nb) == crc32c(0, a || b, na + nb). */
PROTO_MUST_CHECK uint32_t crc32c(uint32_t crc, const uint8_t *p, size_t n);

#endif
