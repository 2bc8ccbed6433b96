/* Writes the fuzzers' seed corpora from the spec's test vectors: corpus/seeds/<target>/ with one
 * file per input, and an empty corpus/run/<target>/ for what the fuzzer finds. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "frame.h"
#include "vectors.h"

static int
mkdirs(const char *base, const char *a, const char *b)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s", base);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		return -1;
	snprintf(path, sizeof(path), "%s/%s", base, a);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		return -1;
	snprintf(path, sizeof(path), "%s/%s/%s", base, a, b);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

static int
put(const char *base, const char *target, const char *name, const uint8_t *b, size_t n)
{
	char path[4096];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/seeds/%s/%s", base, target, name);
	fp = fopen(path, "wb");
	if (!fp || fwrite(b, 1, n, fp) != n || fclose(fp) != 0) {
		fprintf(stderr, "fuzz_seeds: cannot write %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Appends one fuzz_otadev record: op, length, bytes. */
static size_t
record(uint8_t *out, size_t k, uint8_t op, const uint8_t *b, size_t n)
{
	out[k++] = op;
	out[k++] = (uint8_t)n;
	if (n > 0)
		memcpy(out + k, b, n);
	return k + n;
}

int
main(int argc, char **argv)
{
	static const char *targets[] = {"fuzz_frame", "fuzz_msg", "fuzz_otadev"};
	static uint8_t m[FRAME_MSG_MAX], f[FRAME_ENCODED_MAX(FRAME_MSG_MAX)], all[1 << 16];
	static uint8_t script[4096];
	size_t i, nall = 0, k = 1;
	const char *base;

	if (argc != 2) {
		fprintf(stderr, "usage: fuzz_seeds CORPUS_DIR\n");
		return 2;
	}
	base = argv[1];
	for (i = 0; i < 3; i++)
		if (mkdirs(base, "seeds", targets[i]) || mkdirs(base, "run", targets[i])) {
			fprintf(
			    stderr, "fuzz_seeds: cannot create %s: %s\n", base, strerror(errno));
			return 1;
		}
	script[0] = 0x02; /* stream link, erasable flash */
	for (i = 0; i < vectors_count; i++) {
		size_t n = vector_encode(&vectors[i], m, sizeof(m));
		size_t fn = frame_encode(m, n, f, sizeof(f));

		if (n == 0 || fn == 0)
			return 1;
		if (put(base, "fuzz_msg", vectors[i].name, m, n) ||
		    put(base, "fuzz_frame", vectors[i].name, f, fn))
			return 1;
		if (nall + fn < sizeof(all)) {
			memcpy(all + nall, f, fn);
			nall += fn;
		}
		/* The device script: every gateway-to-device vector, then a poll. */
		if (!vectors[i].raw && (vectors[i].m.type & 0x80) && fn < 256 &&
		    k + 2 + fn + 3 < sizeof(script)) {
			k = record(script, k, 0, f, fn);
			k = record(script, k, 1, (const uint8_t *)"\x0a", 1);
		}
	}
	if (put(base, "fuzz_frame", "all", all, nall) ||
	    put(base, "fuzz_otadev", "vectors", script, k))
		return 1;
	/* A transfer from the start: OFFER of 3000 bytes, DATA at 0, polls. */
	{
		static const uint8_t sha[32];
		struct msg_offer o = {1, 0, 3000, sha, 200, {"2.0.0", 5}};
		uint8_t d[MSG_DATA_HEADER + 200];

		k = 1;
		k = record(script, k, 2, NULL, 0);
		k = record(script, k, 0, f,
		    frame_encode(m, msg_encode_offer(&o, m, sizeof(m)), f, sizeof(f)));
		memset(d, 0x5a, sizeof(d));
		msg_encode_data_header(0, d);
		k = record(script, k, 0, f, frame_encode(d, sizeof(d), f, sizeof(f)));
		msg_encode_data_header(200, d);
		k = record(script, k, 0, f, frame_encode(d, sizeof(d), f, sizeof(f)));
		k = record(script, k, 1, (const uint8_t *)"\x20", 1);
		if (put(base, "fuzz_otadev", "transfer", script, k))
			return 1;
	}
	return 0;
}
