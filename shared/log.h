/* Leveled logging to stderr (or a file), as text lines or JSON lines. One logger per process;
 * the component name goes in every line so the supervisor's merged output stays readable. */
#ifndef HEARTH_LOG_H
#define HEARTH_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum { HLOG_DEBUG, HLOG_INFO, HLOG_WARN, HLOG_ERROR } log_level;

/* component: "edge", "appserver", ... ; json: write JSON lines instead of text. */
void log_init(const char *component, log_level level, bool json);
void log_set_level(log_level level);
log_level log_get_level(void);
/* "debug", "info", "warn"/"warning", "error" -> level; -1 when unknown. */
int log_level_parse(const char *name);
/* level -> its name as the config file writes it ("warn"). */
const char *log_level_name(log_level level);

/* Send log lines to path (append) instead of stderr; NULL or "-" means stderr. Reopened by
 * log_reopen() (USR1, logrotate). Returns -1 with errno set when the file cannot be opened. */
int log_set_file(const char *path);
int log_reopen(void);
/* The descriptor log lines go to (stderr or the log file), for writers outside this API. */
int log_fd_get(void);

void log_msg(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(log_level level, const char *fmt, va_list ap);

/* A line that can repeat as fast as requests arrive (an upstream down, accept failing) is
 * summarised, not written each time: the first is logged, the next ones within
 * LOG_REPEAT_INTERVAL_MS are counted, and the first one after that is logged with the count.
 * One log_repeat per place and subject (per upstream, say), zeroed before use; now_ms is the
 * caller's clock. Lines of one kind with different details (an upstream's broken answers) may
 * share one. A count still held when the repeats stop is never written: the line before it
 * already said what is going on. */
#define LOG_REPEAT_INTERVAL_MS 10000

typedef struct {
    uint64_t last_ms;   /* when the last line was written */
    unsigned long held; /* lines not written since */
    bool logged;        /* a line was ever written */
} log_repeat;

void log_repeated(log_repeat *r, uint64_t now_ms, log_level level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_debug(...) log_msg(HLOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(HLOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(HLOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(HLOG_ERROR, __VA_ARGS__)

#endif
