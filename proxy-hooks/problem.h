/* What monkey-proxy-sync says when something fails: a warning once per
 * distinct problem (repeats go to debug), and one "Recovered" when a sync
 * works again. Owns the text of the last problem. */
#pragma once

#include "macro.h"

typedef struct Problem {
        char *last;
} Problem;

void problem_report(Problem *p, const char *format, ...) _printf_(2, 3);
/* A message, formatted, for a callback that reports it: NULL when out of
 * memory. The one formatter of the query connection and the routable set. */
char *problem_format(const char *format, ...) _printf_(1, 2);
void problem_recovered(Problem *p);
void problem_done(Problem *p);
