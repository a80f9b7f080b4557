/* Quoting an app's answer: the excerpt kept as text in the check report
 * and its escaped form for a terminal or a Slack message. Pure. */
#pragma once

#include "macro.h"

/* Pure: the first `max` bytes of a body, printable ASCII kept, anything
 * else as \xNN, for an alert that quotes what the app answered. */
void checks_excerpt(const char *body, size_t len, size_t max, char *buf, size_t size);
/* Pure: the first `max` bytes of a body as text for JSON, not escaped:
 * valid UTF-8 (newlines and tabs included) kept, a byte that is not, or
 * another control character, as U+FFFD; "..." when cut. JSON escapes it
 * once, and whoever shows it escapes it for its medium (checks_excerpt for
 * a terminal or Slack). size >= max * 3 + 4 holds any body. */
void checks_excerpt_text(const char *body, size_t len, size_t max, char *buf, size_t size);
