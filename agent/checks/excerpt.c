/* Quoting what an app answered: as text for JSON, escaped for a terminal
 * or Slack. Pure; apart from the checks runner so that monkeyctl, which
 * prints a quote, does not link the HTTP client. */
#include "excerpt.h"

#include <stdio.h>

#include "utf8.h"

void checks_excerpt(const char *body, size_t len, size_t max, char *buf, size_t size) {
        size_t o = 0;

        if (size == 0)
                return;
        for (size_t i = 0; i < len && i < max && o + 5 < size; i++) {
                unsigned char ch = (unsigned char) body[i];
                if (ch >= 0x20 && ch < 0x7f && ch != '\\')
                        buf[o++] = (char) ch;
                else
                        o += (size_t) snprintf(buf + o, size - o, "\\x%02x", ch);
        }
        if (len > max && o + 4 < size) {
                memcpy(buf + o, "...", 3);
                o += 3;
        }
        buf[o] = '\0';
}

/* Bytes of the character at p worth keeping as text, 0 when it is not. */
static size_t text_char_len(const unsigned char *p, size_t left) {
        if (p[0] >= 0x80)
                return utf8_printable_len(p, left);
        return (p[0] >= 0x20 && p[0] != 0x7f) || p[0] == '\n' || p[0] == '\t' || p[0] == '\r';
}

void checks_excerpt_text(const char *body, size_t len, size_t max, char *buf, size_t size) {
        static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
        const unsigned char *p = (const unsigned char *) body;
        size_t o = 0, i = 0, end = MIN(len, max);

        if (size == 0)
                return;
        while (i < end) {
                size_t n = text_char_len(p + i, len - i);

                if (n > 0 && i + n > end)
                        break; /* a character cut by max: stop before it */
                if (o + MAX(n, sizeof replacement - 1) + 4 > size)
                        break;
                if (n == 0) {
                        memcpy(buf + o, replacement, sizeof replacement - 1);
                        o += sizeof replacement - 1;
                        i++;
                } else {
                        memcpy(buf + o, p + i, n);
                        o += n;
                        i += n;
                }
        }
        if (i < len && o + 4 <= size) {
                memcpy(buf + o, "...", 3);
                o += 3;
        }
        buf[o] = '\0';
}
