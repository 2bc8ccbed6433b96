/* The simulated device's non-volatile memory besides the slot, as files in its directory:
 * device.json (the version it runs and the image that version came from), resume.json (the
 * device library's resume state) and installed.bin (the image it runs). Every file is replaced
 * atomically (temp file, fsync, rename, fsync of the directory), so a devsim killed at any
 * moment restarts with the old or the new state, never a mix, as the device library's
 * persist_save contract demands. */
#ifndef OTAGW_DEVSIM_STATE_H
#define OTAGW_DEVSIM_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ident.h"
#include "otadev.h"

struct flash;

struct state_device {
	char current_version[IDENT_VERSION_MAX + 1];
	bool has_image; /* an image was installed over the link: sha256 and size are set */
	uint8_t sha256[PROTO_SHA256_LEN];
	uint32_t size;
};

/* Reads dir/device.json. Returns 0, -ENOENT if there is none (a factory-fresh device), or
 * another negative errno with err saying what is wrong with the file. */
int state_load_device(const char *dir, struct state_device *st, char *err, size_t errlen);

/* Replaces dir/device.json. 0 or -errno. */
int state_save_device(const char *dir, const struct state_device *st);

/* Reads dir/resume.json into *st. Returns 0, -ENOENT if there is none, or another negative
 * errno with err saying what is wrong (a corrupt state is then best discarded). */
int state_load_resume(const char *dir, otadev_resume_t *st, char *err, size_t errlen);

/* Replaces dir/resume.json. 0 or -errno. */
int state_save_resume(const char *dir, const otadev_resume_t *st);

/* Removes dir/resume.json (after an install: nothing is partial any more). 0 or -errno. */
int state_clear_resume(const char *dir);

/* Replaces dir/installed.bin with the first size bytes of the slot. 0 or -errno. */
int state_install(const char *dir, struct flash *f, uint32_t size);

#endif
