/* Warnings once per distinct problem: see problem.h. */
#include <stdarg.h>

#include "log.h"
#include "problem.h"

static char *problem_vformat(const char *format, va_list ap) _printf_(1, 0);
static char *problem_vformat(const char *format, va_list ap) {
        char *m = NULL;

        return vasprintf(&m, format, ap) < 0 ? NULL : m;
}

void problem_report(Problem *p, const char *format, ...) {
        va_list ap;
        char *m;

        va_start(ap, format);
        m = problem_vformat(format, ap);
        va_end(ap);
        if (!m) {
                log_oom();
                return;
        }
        if (streq_ptr(m, p->last))
                log_debug("%s (again)", m);
        else
                log_warning("%s", m);
        free(p->last);
        p->last = m;
}

char *problem_format(const char *format, ...) {
        va_list ap;
        char *m;

        va_start(ap, format);
        m = problem_vformat(format, ap);
        va_end(ap);
        return m;
}

void problem_recovered(Problem *p) {
        if (p->last) {
                log_info("Recovered: in sync again");
                free(p->last);
                p->last = NULL;
        }
}

void problem_done(Problem *p) {
        free(p->last);
        p->last = NULL;
}
