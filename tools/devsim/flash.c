/* flash: the slot file with NOR semantics (see flash.h). Double programming is detected per
 * sector from the end of what was programmed since its erase: the device library writes each
 * sector in increasing order, so a write that starts below that end programs bytes twice. */
#include "flash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#define FLASH_IO_CHUNK 4096

struct flash {
	int fd;
	uint32_t slot_size, sector_size;
	uint32_t *prog_end; /* per sector: end of what was programmed since the last erase */
	uint64_t double_programs;
};

static int
flash_pread(struct flash *f, uint8_t *buf, size_t n, uint32_t offset)
{
	while (n > 0) {
		ssize_t r = pread(f->fd, buf, n, offset);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0) {
			memset(buf, 0, n); /* beyond the end of a sparse file */
			return 0;
		}
		buf += r;
		n -= (size_t)r;
		offset += (uint32_t)r;
	}
	return 0;
}

static int
flash_pwrite(struct flash *f, const uint8_t *buf, size_t n, uint32_t offset)
{
	while (n > 0) {
		ssize_t r = pwrite(f->fd, buf, n, offset);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		buf += r;
		n -= (size_t)r;
		offset += (uint32_t)r;
	}
	return 0;
}

static int
flash_in_slot(const struct flash *f, uint32_t offset, size_t n)
{
	return offset <= f->slot_size && n <= f->slot_size - offset;
}

int
flash_open(const char *path, uint32_t slot_size, uint32_t sector_size, struct flash **out)
{
	struct flash *f;
	struct stat st;
	int r;

	if (slot_size == 0 ||
	    (sector_size && ((sector_size & (sector_size - 1)) || slot_size % sector_size)))
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fd = -1;
	f->slot_size = slot_size;
	f->sector_size = sector_size;
	if (sector_size) {
		f->prog_end = calloc(slot_size / sector_size, sizeof(*f->prog_end));
		if (!f->prog_end) {
			free(f);
			return -ENOMEM;
		}
	}
	f->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (f->fd < 0 || fstat(f->fd, &st) < 0 ||
	    (st.st_size != (off_t)slot_size && ftruncate(f->fd, (off_t)slot_size) < 0)) {
		r = -errno;
		flash_close(f);
		return r;
	}
	/* What this process did not erase may hold anything: count double programs only in
	 * sectors erased since, by treating the rest as fully programmed. */
	if (sector_size) {
		uint32_t i;

		for (i = 0; i < slot_size / sector_size; i++)
			f->prog_end[i] = (i + 1) * sector_size;
	}
	*out = f;
	return 0;
}

int
flash_erase(struct flash *f, uint32_t offset)
{
	uint8_t ff[FLASH_IO_CHUNK];
	uint32_t done;
	int r;

	if (!f->sector_size || offset % f->sector_size || !flash_in_slot(f, offset, f->sector_size))
		return -EINVAL;
	memset(ff, 0xff, sizeof(ff));
	for (done = 0; done < f->sector_size; done += FLASH_IO_CHUNK) {
		uint32_t n =
		    f->sector_size - done < FLASH_IO_CHUNK ? f->sector_size - done : FLASH_IO_CHUNK;

		r = flash_pwrite(f, ff, n, offset + done);
		if (r < 0)
			return r;
	}
	f->prog_end[offset / f->sector_size] = offset;
	return 0;
}

int
flash_program(struct flash *f, uint32_t offset, const uint8_t *data, size_t n)
{
	uint8_t cur[FLASH_IO_CHUNK];
	size_t done = 0;
	int r;

	if (!flash_in_slot(f, offset, n))
		return -EINVAL;
	if (!f->sector_size)
		return flash_pwrite(f, data, n, offset);
	while (done < n) {
		uint32_t at = offset + (uint32_t)done;
		uint32_t sec = at / f->sector_size;
		size_t k = n - done, i;

		if (k > sizeof(cur))
			k = sizeof(cur);
		if (k > (sec + 1) * f->sector_size - at)
			k = (sec + 1) * f->sector_size - at;
		if (at < f->prog_end[sec])
			f->double_programs += f->prog_end[sec] - at < k ? f->prog_end[sec] - at : k;
		r = flash_pread(f, cur, k, at);
		if (r < 0)
			return r;
		for (i = 0; i < k; i++)
			cur[i] &= data[done + i];
		r = flash_pwrite(f, cur, k, at);
		if (r < 0)
			return r;
		if (at + k > f->prog_end[sec])
			f->prog_end[sec] = at + (uint32_t)k;
		done += k;
	}
	return 0;
}

int
flash_read(struct flash *f, uint32_t offset, uint8_t *data, size_t n)
{
	if (!flash_in_slot(f, offset, n))
		return -EINVAL;
	return flash_pread(f, data, n, offset);
}

int
flash_sync(struct flash *f)
{
	return fdatasync(f->fd) < 0 ? -errno : 0;
}

int
flash_sha256(struct flash *f, uint32_t size, uint8_t out[32])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t buf[FLASH_IO_CHUNK];
	uint32_t done;
	int r = 0;

	if (!ctx)
		return -ENOMEM;
	if (!flash_in_slot(f, 0, size)) {
		r = -EINVAL;
		goto out;
	}
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		r = -EIO;
		goto out;
	}
	for (done = 0; done < size && r == 0; done += sizeof(buf)) {
		size_t n = size - done < sizeof(buf) ? size - done : sizeof(buf);

		r = flash_pread(f, buf, n, done);
		if (r == 0 && EVP_DigestUpdate(ctx, buf, n) != 1)
			r = -EIO;
	}
	if (r == 0 && EVP_DigestFinal_ex(ctx, out, NULL) != 1)
		r = -EIO;
out:
	EVP_MD_CTX_free(ctx);
	return r;
}

int
flash_copy(struct flash *f, uint32_t size, int fd)
{
	uint8_t buf[FLASH_IO_CHUNK];
	uint32_t done;

	if (!flash_in_slot(f, 0, size))
		return -EINVAL;
	for (done = 0; done < size; done += sizeof(buf)) {
		size_t n = size - done < sizeof(buf) ? size - done : sizeof(buf), k = 0;
		int r = flash_pread(f, buf, n, done);

		if (r < 0)
			return r;
		while (k < n) {
			ssize_t w = write(fd, buf + k, n - k);

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return -errno;
			k += (size_t)w;
		}
	}
	return 0;
}

uint64_t
flash_double_programs(const struct flash *f)
{
	return f->double_programs;
}

uint32_t
flash_slot_size(const struct flash *f)
{
	return f->slot_size;
}

void
flash_close(struct flash *f)
{
	if (!f)
		return;
	if (f->fd >= 0)
		close(f->fd);
	free(f->prog_end);
	free(f);
}
