/* The simulated device's update slot: a file that behaves like NOR flash. Erasing a sector sets
 * its bytes to 0xFF; programming can only clear bits (the file gets old & new), so a byte
 * programmed twice without an erase in between ends up wrong, as on a real part, and is also
 * counted. A fresh slot holds zeros (whatever was there), so writing without erasing first
 * shows up as a hash mismatch. With a sector size of 0 the medium needs no erase (FRAM, a
 * file system) and programming simply overwrites. */
#ifndef OTAGW_DEVSIM_FLASH_H
#define OTAGW_DEVSIM_FLASH_H

#include <stddef.h>
#include <stdint.h>

struct flash;

/* Opens (creating it if needed) the slot file path of slot_size bytes; an existing file of
 * another size is resized. sector_size is 0 or a power of two that divides slot_size. Returns 0
 * and *out, or a negative errno. */
int flash_open(const char *path, uint32_t slot_size, uint32_t sector_size, struct flash **out);

/* Erases the sector starting at offset. 0, -EINVAL (not a sector start, outside the slot, or a
 * medium without erase), or -errno from the file. */
int flash_erase(struct flash *f, uint32_t offset);

/* Programs n bytes at offset (NOR: bits only go from 1 to 0). 0, -EINVAL (outside the slot),
 * or -errno. The bytes are in the file when it returns; flash_sync() makes them durable. */
int flash_program(struct flash *f, uint32_t offset, const uint8_t *data, size_t n);

/* Reads n bytes at offset. 0, -EINVAL (outside the slot) or -errno. */
int flash_read(struct flash *f, uint32_t offset, uint8_t *data, size_t n);

/* Makes everything programmed so far durable (fdatasync). 0 or -errno. */
int flash_sync(struct flash *f);

/* SHA-256 of the first size bytes, computed with OpenSSL: an independent check of what the
 * device library verified with its own portable implementation. 0 or a negative errno. */
int flash_sha256(struct flash *f, uint32_t size, uint8_t out[32]);

/* Copies the first size bytes into fd (for installing the image). 0 or -errno. */
int flash_copy(struct flash *f, uint32_t size, int fd);

/* Bytes programmed a second time without an erase since this process opened the slot (a
 * protocol bug: NOR flash with ECC forbids it). */
uint64_t flash_double_programs(const struct flash *f);

uint32_t flash_slot_size(const struct flash *f);

/* Closes the file. Accepts NULL. */
void flash_close(struct flash *f);

#endif
