/* Logging for otagwd and its tools: to the journal (with structured fields) when stderr is
 * connected to it, else to stderr with a timestamp and level. Every line about a device carries
 * its serial (dev_* macros), so an operator can grep or `journalctl OTAGW_DEVICE=SERIAL`. */
#ifndef OTAGW_LOG_H
#define OTAGW_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LEVEL_ERR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_NOTICE,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* Chooses the sink (the journal if $JOURNAL_STREAM names our stderr, or force_journal; else
 * stderr) and the level. ident is the program name; it must outlive logging. */
void log_open(const char *ident, enum log_level level, bool force_journal);

/* Changes the level (SIGHUP reload, -v). */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Switches the sink: the journal (true) or stderr (false), e.g. for LogControl1.LogTarget. */
void log_set_journal(bool journal);
bool log_get_journal(void);

/* Parses "err", "warn", "notice", "info", "debug". Returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);

/* Logs one line. serial may be NULL; err, if non-zero, is a negative errno whose text is
 * appended as ": <strerror>". Returns err, so callers can `return log_...(r, ...)`. */
int log_printf(enum log_level level, const char *serial, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_err(...)              log_printf(LOG_LEVEL_ERR, NULL, 0, __VA_ARGS__)
#define log_warn(...)             log_printf(LOG_LEVEL_WARN, NULL, 0, __VA_ARGS__)
#define log_notice(...)           log_printf(LOG_LEVEL_NOTICE, NULL, 0, __VA_ARGS__)
#define log_info(...)             log_printf(LOG_LEVEL_INFO, NULL, 0, __VA_ARGS__)
#define log_debug(...)            log_printf(LOG_LEVEL_DEBUG, NULL, 0, __VA_ARGS__)
#define log_err_errno(e, ...)     log_printf(LOG_LEVEL_ERR, NULL, (e), __VA_ARGS__)
#define log_warn_errno(e, ...)    log_printf(LOG_LEVEL_WARN, NULL, (e), __VA_ARGS__)
#define dev_err(s, ...)           log_printf(LOG_LEVEL_ERR, (s), 0, __VA_ARGS__)
#define dev_warn(s, ...)          log_printf(LOG_LEVEL_WARN, (s), 0, __VA_ARGS__)
#define dev_notice(s, ...)        log_printf(LOG_LEVEL_NOTICE, (s), 0, __VA_ARGS__)
#define dev_info(s, ...)          log_printf(LOG_LEVEL_INFO, (s), 0, __VA_ARGS__)
#define dev_debug(s, ...)         log_printf(LOG_LEVEL_DEBUG, (s), 0, __VA_ARGS__)
#define dev_warn_errno(s, e, ...) log_printf(LOG_LEVEL_WARN, (s), (e), __VA_ARGS__)

#endif
