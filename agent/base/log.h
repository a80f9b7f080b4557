/* Logging: journald with structured fields when stderr is the journal
 * (JOURNAL_STREAM), plain "LEVEL: message" lines on stderr otherwise.
 * The level is the only mutable global of the agent. */
#pragma once

#include <syslog.h>

#include "macro.h"

extern int log_max_level;

/* Decide the target once at start: journal if JOURNAL_STREAM names our
 * stderr, stderr otherwise. Tests may force one. */
typedef enum LogTarget {
        LOG_TARGET_AUTO,
        LOG_TARGET_STDERR,
        LOG_TARGET_JOURNAL,
} LogTarget;

void log_setup(LogTarget target);
LogTarget log_get_target(void);
int log_level_from_string(const char *s);

/* Returns -abs(error) when error != 0, 0 otherwise, so callers can write
 * `return log_error_errno(r, "...: %m")`. %m prints strerror(error). */
int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) _printf_(6, 7);

/* Structured record: extra journald fields ("KEY=value", NULL-terminated)
 * go with the message; on stderr only the message is printed. */
int log_struct_internal(int level, const char *const *fields, const char *format, ...) _printf_(3, 4);

#define log_full_errno(level, error, ...) \
        log_internal((level), (error), __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_full(level, ...) log_full_errno((level), 0, __VA_ARGS__)

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, (e), __VA_ARGS__)

#define log_oom() log_error_errno(ENOMEM, "Out of memory.")
