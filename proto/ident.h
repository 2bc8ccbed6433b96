/* Device identity rules shared by the wire protocol, the daemon and the store: what a valid
 * device_serial, hardware_version, software_type and version string is, and their bounds.
 * Portable C99, no OS calls. */
#ifndef OTAGW_IDENT_H
#define OTAGW_IDENT_H

#include <stdbool.h>
#include <stddef.h>

/* Bounds in bytes (no terminating NUL). They are chosen so the largest HELLO fits one BLE
 * packet of 244 bytes (ATT MTU 247); docs/PROTOCOL.md gives the arithmetic. */
#define IDENT_SERIAL_MAX  64
#define IDENT_HW_MAX      32
#define IDENT_SWTYPE_MAX  32
#define IDENT_VERSION_MAX 64

/* True if s[0..len) is a Memfault device serial: 1..IDENT_SERIAL_MAX bytes of [-a-zA-Z0-9_]. */
bool ident_serial_valid(const char *s, size_t len);

/* True if s[0..len) is 1..max bytes of printable ASCII (0x20..0x7e). Used for hardware_version,
 * software_type and versions, which Memfault allows to hold spaces and "+/:()[]". */
bool ident_text_valid(const char *s, size_t len, size_t max);

#endif
