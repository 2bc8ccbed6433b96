/* Text for people: byte counts, durations, times, and safe reads of property objects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

void
fmt_bytes(char *buf, size_t len, uint64_t n)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	double v = (double)n;
	size_t u = 0;

	if (n < 1024) {
		snprintf(buf, len, "%llu B", (unsigned long long)n);
		return;
	}
	v /= 1024.0;
	while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		u++;
	}
	/* "12.0 MiB" but "512 MiB": three significant digits are plenty */
	if (v < 99.95)
		snprintf(buf, len, "%.1f %s", v, units[u]);
	else
		snprintf(buf, len, "%.0f %s", v, units[u]);
}

void
fmt_duration(char *buf, size_t len, uint64_t s)
{
	if (s > 99 * 3600 + 59 * 60 + 59)
		s = 99 * 3600 + 59 * 60 + 59;
	snprintf(buf, len, "%u:%02u:%02u", (unsigned)(s / 3600), (unsigned)(s / 60 % 60),
	    (unsigned)(s % 60));
}

static void
fmt_local(uint64_t usec, struct tm *tm)
{
	struct timespec ts;
	time_t t;

	if (usec == 0) {
		clock_gettime(CLOCK_REALTIME, &ts);
		t = ts.tv_sec;
	} else {
		t = (time_t)(usec / 1000000u);
	}
	localtime_r(&t, tm);
}

void
fmt_time_minutes(char *buf, size_t len, uint64_t usec)
{
	struct tm tm;

	if (usec == 0) {
		snprintf(buf, len, "never");
		return;
	}
	fmt_local(usec, &tm);
	/* strftime leaves buf undefined when it does not fit: show nothing rather than garbage. */
	if (strftime(buf, len, "%Y-%m-%d %H:%M", &tm) == 0 && len > 0)
		buf[0] = '\0';
}

void
fmt_time_iso(char *buf, size_t len, uint64_t usec)
{
	struct tm tm;
	char zone[8];
	size_t n;

	fmt_local(usec, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	if (n == 0 && len > 0)
		buf[0] = '\0';
	/* %z is "+0100"; ISO 8601 extended format wants "+01:00" */
	if (strftime(zone, sizeof(zone), "%z", &tm) == 5 && n > 0 && n < len)
		snprintf(buf + n, len - n, "%.3s:%.2s", zone, zone + 3);
}

void
fmt_time_clock(char *buf, size_t len)
{
	struct tm tm;

	fmt_local(0, &tm);
	if (strftime(buf, len, "%H:%M:%S", &tm) == 0 && len > 0)
		buf[0] = '\0';
}

const char *
fmt_str(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s != NULL ? s : "";
}

uint64_t
fmt_u64(const json_t *obj, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(obj, key));

	return v > 0 ? (uint64_t)v : 0;
}

double
fmt_real(const json_t *obj, const char *key)
{
	return json_number_value(json_object_get(obj, key));
}

bool
fmt_bool(const json_t *obj, const char *key)
{
	return json_is_true(json_object_get(obj, key));
}

int
fmt_percent(const json_t *dev)
{
	uint64_t done = fmt_u64(dev, "BytesDone"), total = fmt_u64(dev, "BytesTotal");

	if (total == 0)
		return -1;
	if (done >= total)
		return 100;
	return (int)(done * 100 / total);
}

int
fmt_print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);

	if (s == NULL) {
		fprintf(stderr, "otagwctl: out of memory\n");
		return CTL_EXIT_FAILURE;
	}
	printf("%s\n", s);
	free(s);
	return CTL_EXIT_OK;
}

int
fmt_table_add(struct fmt_table *t, const char *const *cells)
{
	char **row;
	size_t i;

	if (t->n == t->max) {
		size_t max = t->max ? t->max * 2 : 16;
		char ***rows = realloc(t->rows, max * sizeof(*rows));

		if (rows == NULL)
			return -1;
		t->rows = rows;
		t->max = max;
	}
	row = calloc(t->ncols, sizeof(*row));
	if (row == NULL)
		return -1;
	for (i = 0; i < t->ncols; i++) {
		row[i] = strdup(cells[i] != NULL ? cells[i] : "");
		if (row[i] == NULL) {
			while (i-- > 0)
				free(row[i]);
			free(row);
			return -1;
		}
	}
	t->rows[t->n++] = row;
	return 0;
}

void
fmt_table_print(struct fmt_table *t, FILE *f)
{
	size_t w[FMT_TABLE_MAX_COLS] = {0}, r, i, len;

	for (r = 0; r < t->n; r++)
		for (i = 0; i < t->ncols && i < FMT_TABLE_MAX_COLS; i++) {
			len = strlen(t->rows[r][i]);
			if (len > w[i])
				w[i] = len;
		}
	for (r = 0; r < t->n; r++) {
		for (i = 0; i < t->ncols && i < FMT_TABLE_MAX_COLS; i++) {
			if (i + 1 == t->ncols)
				fprintf(f, "%s\n", t->rows[r][i]);
			else
				fprintf(f, "%-*s  ", (int)w[i], t->rows[r][i]);
		}
	}
}

void
fmt_table_free(struct fmt_table *t)
{
	size_t r, i;

	for (r = 0; r < t->n; r++) {
		for (i = 0; i < t->ncols; i++)
			free(t->rows[r][i]);
		free(t->rows[r]);
	}
	free(t->rows);
	memset(t, 0, sizeof(*t));
}

void
fmt_cut(char *buf, size_t len, const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n <= max || max < 4)
		snprintf(buf, len, "%.*s", (int)max, s);
	else
		snprintf(buf, len, "%.*s...", (int)(max - 3), s);
}
