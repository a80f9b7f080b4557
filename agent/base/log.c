#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

int log_max_level = LOG_INFO;

static LogTarget log_target = LOG_TARGET_STDERR;

static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        if ((unsigned long long) st.st_dev != dev || (unsigned long long) st.st_ino != ino)
                return false;
        /* sd_journal_sendv() reports success even when nothing listens on
         * the socket: without journald, stderr is the only place a line
         * is not lost. */
        return access("/run/systemd/journal/socket", W_OK) == 0;
}

void log_setup(LogTarget target) {
        if (target == LOG_TARGET_AUTO)
                target = stderr_is_journal() ? LOG_TARGET_JOURNAL : LOG_TARGET_STDERR;
        log_target = target;
}

LogTarget log_get_target(void) {
        return log_target;
}

int log_level_from_string(const char *s) {
        static const char *const names[] = {
                [LOG_ERR] = "error",     [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
                [LOG_INFO] = "info",     [LOG_DEBUG] = "debug",
        };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (names[i] && streq(names[i], s))
                        return (int) i;
        return -EINVAL;
}

static const char *level_name(int level) {
        switch (level) {
        case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: case LOG_ERR: return "error";
        case LOG_WARNING: return "warning";
        case LOG_NOTICE: return "notice";
        case LOG_INFO: return "info";
        default: return "debug";
        }
}

/* One message is one line on stderr: a newline or an escape sequence that
 * came from outside (a drain reason, an HTTP error body, a Redis error)
 * must not forge a line of its own or repaint the terminal. */
static const char *escape_controls(const char *msg, char *buf, size_t size) {
        size_t n = 0;

        if (!strpbrk(msg, "\x01\x02\x03\x04\x05\x06\x07\x08\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14"
                          "\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f"))
                return msg;
        for (const char *p = msg; *p && n + 5 < size; p++) {
                unsigned char c = (unsigned char) *p;

                if (c == '\n') {
                        buf[n++] = '\\';
                        buf[n++] = 'n';
                } else if ((c < 0x20 && c != '\t') || c == 0x7f)
                        n += (size_t) snprintf(buf + n, size - n, "\\x%02x", c);
                else
                        buf[n++] = (char) c;
        }
        buf[n] = '\0';
        return buf;
}

static void log_write(int level, const char *const *fields, const char *file, int line,
                      const char *func, const char *msg) {
        if (log_target == LOG_TARGET_JOURNAL) {
                /* Up to 16 caller fields plus ours; extra fields are dropped
                 * rather than risking an overflow. */
                struct iovec iov[24];
                char prio[32], code_file[256], code_line[32], code_func[128];
                size_t n = 0;
                _cleanup_(freep) char *m = NULL;

                if (asprintf(&m, "MESSAGE=%s", msg) < 0)
                        return;
                snprintf(prio, sizeof prio, "PRIORITY=%d", level);
                iov[n++] = (struct iovec) { m, strlen(m) };
                iov[n++] = (struct iovec) { prio, strlen(prio) };
                iov[n++] = (struct iovec) { (char *) "SYSLOG_IDENTIFIER=monkeyd", 25 };
                if (file) {
                        snprintf(code_file, sizeof code_file, "CODE_FILE=%s", file);
                        snprintf(code_line, sizeof code_line, "CODE_LINE=%d", line);
                        snprintf(code_func, sizeof code_func, "CODE_FUNC=%s", func);
                        iov[n++] = (struct iovec) { code_file, strlen(code_file) };
                        iov[n++] = (struct iovec) { code_line, strlen(code_line) };
                        iov[n++] = (struct iovec) { code_func, strlen(code_func) };
                }
                for (size_t i = 0; fields && fields[i] && n < ELEMENTSOF(iov); i++)
                        iov[n++] = (struct iovec) { (char *) fields[i], strlen(fields[i]) };
                if (sd_journal_sendv(iov, (int) n) >= 0)
                        return;
                /* journald gone: fall through so the line is not lost. */
        }
        {
                char escaped[4 * 2048 + 8];
                fprintf(stderr, "%s: %s\n", level_name(level), escape_controls(msg, escaped, sizeof escaped));
        }
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) {
        int saved = errno;
        char buf[2048];
        va_list ap;

        if (error < 0)
                error = -error;
        if ((level & LOG_PRIMASK) > log_max_level)
                return -error;

        errno = error; /* so %m prints the error we were given */
        va_start(ap, format);
        vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);
        log_write(level, NULL, file, line, func, buf);
        errno = saved;
        return -error;
}

int log_struct_internal(int level, const char *const *fields, const char *format, ...) {
        char buf[2048];
        va_list ap;

        if ((level & LOG_PRIMASK) > log_max_level)
                return 0;
        va_start(ap, format);
        vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);
        log_write(level, fields, NULL, 0, NULL, buf);
        return 0;
}
