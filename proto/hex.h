/* Lower-case hex encoding of byte strings (SHA-256 digests in file names, logs and JSON).
 * Portable C99, no OS calls: part of proto/ so the gateway, the store and tools share it. */
#ifndef OTAGW_HEX_H
#define OTAGW_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes 2*len lower-case hex digits and a NUL to out, which must hold 2*len+1 bytes. */
void hex_encode(const uint8_t *in, size_t len, char *out);

/* Parses exactly 2*len hex digits (either case) from in into out. Returns 0, or -1 if in is not
 * exactly 2*len hex digits long (out is then unspecified). */
int hex_decode(const char *in, uint8_t *out, size_t len);

#endif
