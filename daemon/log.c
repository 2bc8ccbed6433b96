/* Log sink selection and formatting (see log.h). */
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

static const char *log_ident = "otagw";
static enum log_level log_level = LOG_LEVEL_INFO;
static bool log_journal;

static const char *const log_names[] = {
    [LOG_LEVEL_ERR] = "err",
    [LOG_LEVEL_WARN] = "warn",
    [LOG_LEVEL_NOTICE] = "notice",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_DEBUG] = "debug",
};

/* systemd sets JOURNAL_STREAM=dev:ino when stderr is a journal stream; only then is structured
 * logging both possible and what the operator reads. */
static bool
log_stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char *end;

	/* strtoull, not sscanf: overflow and trailing junk must mean "not the journal". */
	if (e == NULL || !isdigit((unsigned char)e[0]))
		return false;
	errno = 0;
	dev = strtoull(e, &end, 10);
	if (*end != ':' || !isdigit((unsigned char)end[1]))
		return false;
	ino = strtoull(end + 1, &end, 10);
	if (*end != '\0' || errno != 0)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void
log_open(const char *ident, enum log_level level, bool force_journal)
{
	if (ident != NULL)
		log_ident = ident;
	log_level = level;
	log_journal = force_journal || log_stderr_is_journal();
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

enum log_level
log_get_level(void)
{
	return log_level;
}

void
log_set_journal(bool journal)
{
	log_journal = journal;
}

bool
log_get_journal(void)
{
	return log_journal;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	size_t i;

	for (i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
		if (strcmp(s, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

static int
log_syslog_priority(enum log_level level)
{
	switch (level) {
	case LOG_LEVEL_ERR:
		return LOG_ERR;
	case LOG_LEVEL_WARN:
		return LOG_WARNING;
	case LOG_LEVEL_NOTICE:
		return LOG_NOTICE;
	case LOG_LEVEL_INFO:
		return LOG_INFO;
	case LOG_LEVEL_DEBUG:
		return LOG_DEBUG;
	}
	return LOG_INFO;
}

int
log_printf(enum log_level level, const char *serial, int err, const char *fmt, ...)
{
	char msg[1024];
	int saved = errno;
	size_t n;
	va_list ap;

	if (level > log_level)
		return err;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = strlen(msg);
	if (err != 0 && n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - n, ": %s", strerror(err < 0 ? -err : err));

	if (log_journal) {
		if (serial != NULL)
			sd_journal_send("MESSAGE=%s: %s", serial, msg, "PRIORITY=%d",
			    log_syslog_priority(level), "OTAGW_DEVICE=%s", serial,
			    "SYSLOG_IDENTIFIER=%s", log_ident, NULL);
		else
			sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d",
			    log_syslog_priority(level), "SYSLOG_IDENTIFIER=%s", log_ident, NULL);
	} else {
		struct timespec ts;
		struct tm tm;
		char when[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		if (strftime(when, sizeof(when), "%H:%M:%S", &tm) == 0)
			when[0] = '\0';
		fprintf(stderr, "%s.%03ld %s %s: %s%s%s\n", when, ts.tv_nsec / 1000000L, log_ident,
		    log_names[level], serial != NULL ? serial : "", serial != NULL ? ": " : "",
		    msg);
	}
	errno = saved;
	return err;
}
