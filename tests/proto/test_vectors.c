/* The spec's test vectors (docs/PROTOCOL.md, between the vectors:begin/end markers) agree with
 * the code: the block is exactly what the vector table generates, and every vector parsed from
 * the spec decodes and re-encodes byte for byte, as a message and as a frame.
 * "test_vectors --print" prints the block to paste into the spec after a deliberate change. */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ck.h"
#include "frame.h"
#include "msg.h"
#include "vectors.h"

#define BEGIN_MARK   "<!-- vectors:begin -->\n"
#define END_MARK     "<!-- vectors:end -->"
#define HEX_PER_LINE 16

struct text {
	char *s;
	size_t len, cap;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
text_add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = t->s ? vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap) : 0;
		va_end(ap);
		if (n < 0)
			exit(2);
		if (t->s && (size_t)n < t->cap - t->len)
			break;
		t->cap = t->cap * 2 + (size_t)n + 64;
		t->s = realloc(t->s, t->cap);
		if (!t->s)
			exit(2);
	}
	t->len += (size_t)n;
}

static void
text_hex(struct text *t, const char *label, const uint8_t *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (i % HEX_PER_LINE == 0)
			text_add(t, "%s%-6s", i ? "\n" : "", i ? "" : label);
		text_add(t, " %02x", b[i]);
	}
	text_add(t, "\n");
}

/* The block the spec must contain, generated from the vector table. Returns the name of a
 * vector that does not encode, or NULL. (No check assertions: --print runs outside a runner.) */
static const char *
generate(struct text *t)
{
	static uint8_t m[FRAME_MSG_MAX], f[FRAME_ENCODED_MAX(FRAME_MSG_MAX)];
	size_t i;

	text_add(t, "```text\n");
	for (i = 0; i < vectors_count; i++) {
		const struct vector *v = &vectors[i];
		size_t n = vector_encode(v, m, sizeof(m)), fn;

		fn = n ? frame_encode(m, n, f, sizeof(f)) : 0;
		if (fn == 0)
			return v->name;
		text_add(t, "%s%s: %s (%zu byte%s)\n", i ? "\n" : "", v->name, v->what, n,
		    n == 1 ? "" : "s");
		text_hex(t, v->raw ? "raw" : "msg", m, n);
		text_hex(t, "frame", f, fn);
	}
	text_add(t, "```\n");
	return NULL;
}

static char *
read_spec(size_t *len)
{
	const char *dir = getenv("OTAGW_SOURCE_DIR");
	char path[4096];
	FILE *fp;
	char *buf;
	long n;

	ck_assert_msg(dir != NULL, "OTAGW_SOURCE_DIR is not set (run through ctest)");
	snprintf(path, sizeof(path), "%s/docs/PROTOCOL.md", dir);
	fp = fopen(path, "rb");
	ck_assert_msg(fp != NULL, "cannot open %s", path);
	ck_assert_int_eq(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	ck_assert_int_gt(n, 0);
	rewind(fp);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
	buf[n] = '\0';
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

/* The text between the markers. */
static char *
spec_block(char *spec)
{
	char *b = strstr(spec, BEGIN_MARK), *e;

	ck_assert_msg(b != NULL, "docs/PROTOCOL.md has no %s", "vectors:begin marker");
	b += strlen(BEGIN_MARK);
	e = strstr(b, END_MARK);
	ck_assert_msg(e != NULL, "docs/PROTOCOL.md has no %s", "vectors:end marker");
	*e = '\0';
	return b;
}

START_TEST(spec_block_is_generated_from_the_table)
{
	struct text t = {NULL, 0, 0};
	size_t len;
	char *spec = read_spec(&len), *block = spec_block(spec);

	const char *bad = generate(&t);

	ck_assert_msg(bad == NULL, "vector %s does not encode", bad);
	ck_assert_msg(strcmp(block, t.s) == 0,
	    "docs/PROTOCOL.md vectors differ from the code; regenerate with test_vectors --print");
	free(t.s);
	free(spec);
}
END_TEST

/* Parses hex bytes from the lines of one label ("msg", "raw" or "frame") and its
 * continuation lines. Returns the number of bytes. */
static size_t
parse_hex(const char **pp, const char *label, uint8_t *out, size_t cap)
{
	const char *p = *pp;
	size_t n = 0;

	ck_assert_msg(strncmp(p, label, strlen(label)) == 0, "expected %s at: %.20s", label, p);
	p += strlen(label);
	for (;;) {
		unsigned v;
		int used;

		while (*p == ' ')
			p++;
		if (*p == '\n') {
			if (p[1] != ' ')
				break;
			p++;
			continue;
		}
		ck_assert_int_eq(sscanf(p, "%2x%n", &v, &used), 1);
		ck_assert_uint_lt(n, cap);
		out[n++] = (uint8_t)v;
		p += used;
	}
	*pp = p + 1;
	return n;
}

START_TEST(spec_vectors_round_trip)
{
	static uint8_t m[FRAME_MSG_MAX], f[FRAME_ENCODED_MAX(FRAME_MSG_MAX)], re[FRAME_MSG_MAX],
	    buf[FRAME_MSG_MAX + FRAME_CRC_LEN], fe[FRAME_ENCODED_MAX(FRAME_MSG_MAX)];
	size_t len, count = 0;
	char *spec = read_spec(&len), *block = spec_block(spec);
	const char *p = block + strlen("```text\n");

	while (strncmp(p, "```", 3) != 0) {
		const char *nl = strchr(p, '\n');
		int raw;
		size_t n, fn, used, dlen, k;
		struct frame_decoder d;
		const uint8_t *dm;
		struct msg msg;

		ck_assert_ptr_nonnull(nl);
		p = nl + 1; /* the name line */
		raw = strncmp(p, "raw", 3) == 0;
		n = parse_hex(&p, raw ? "raw" : "msg", m, sizeof(m));
		fn = parse_hex(&p, "frame", f, sizeof(f));
		if (*p == '\n')
			p++;
		count++;
		if (!raw) {
			/* Decoded and re-encoded from the decoded struct: the same bytes. */
			ck_assert_int_eq(msg_decode(m, n, &msg), MSG_OK);
			ck_assert_uint_eq(msg.type, m[0]);
			k = vector_encode_msg(&msg, re, sizeof(re));
			ck_assert_uint_eq(k, n);
			ck_assert_mem_eq(re, m, n);
		}
		/* The frame is what frame_encode() makes, and deframes to the message. */
		ck_assert_uint_eq(frame_encode(m, n, fe, sizeof(fe)), fn);
		ck_assert_mem_eq(fe, f, fn);
		frame_decoder_init(&d, buf, sizeof(buf));
		ck_assert_int_eq(frame_decoder_feed(&d, f, fn, &used, &dm, &dlen), FRAME_MSG);
		ck_assert_uint_eq(used, fn);
		ck_assert_uint_eq(dlen, n);
		ck_assert_mem_eq(dm, m, n);
	}
	ck_assert_uint_eq(count, vectors_count);
	free(spec);
}
END_TEST

/* Every message type has a vector, and the largest HELLO is exactly MSG_HELLO_MAX bytes. */
START_TEST(vectors_cover_every_message)
{
	static const uint8_t types[] = {MSG_HELLO, MSG_ACK, MSG_RESULT, MSG_OFFER, MSG_NO_UPDATE,
	    MSG_ERROR, MSG_DATA, MSG_DONE, MSG_SOLICIT};
	uint8_t m[MSG_CONTROL_MAX + 16];
	size_t i, j;

	for (i = 0; i < sizeof(types); i++) {
		int found = 0;

		for (j = 0; j < vectors_count; j++)
			found |= !vectors[j].raw && vectors[j].m.type == types[i];
		ck_assert_msg(found, "no vector for type 0x%02x", types[i]);
	}
	for (j = 0; j < vectors_count; j++)
		if (strcmp(vectors[j].name, "hello-max") == 0)
			ck_assert_uint_eq(vector_encode(&vectors[j], m, sizeof(m)), MSG_HELLO_MAX);
}
END_TEST

int
main(int argc, char **argv)
{
	Suite *s;
	TCase *tc;

	if (argc > 1 && strcmp(argv[1], "--print") == 0) {
		struct text t = {NULL, 0, 0};

		const char *bad = generate(&t);

		if (bad) {
			fprintf(stderr, "test_vectors: vector %s does not encode\n", bad);
			return 1;
		}
		fputs(BEGIN_MARK, stdout);
		fputs(t.s, stdout);
		puts(END_MARK);
		free(t.s);
		return 0;
	}
	s = suite_create("vectors");
	tc = tcase_create("vectors");
	tcase_add_test(tc, spec_block_is_generated_from_the_table);
	tcase_add_test(tc, spec_vectors_round_trip);
	tcase_add_test(tc, vectors_cover_every_message);
	suite_add_tcase(s, tc);
	return ck_main(s);
}
