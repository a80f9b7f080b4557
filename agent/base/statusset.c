#include "numparse.h"
#include "parse.h"
#include "statusset.h"

static int status_code_read(const char **p, unsigned *ret) {
        unsigned v = 0;
        const char *q = *p;

        if (!is_digit(*q))
                return -EINVAL;
        for (; is_digit(*q); q++)
                v = MIN(v * 10 + (unsigned) (*q - '0'), 100000u); /* saturate: only the range matters */
        *p = q;
        *ret = v;
        return 0;
}

int status_set_parse(const char *s, StatusSet *ret) {
        StatusSet set = {};
        const char *p = s;

        if (!s)
                return -EINVAL;
        for (;;) {
                unsigned lo, hi;

                p = skip_blank(p);
                if (status_code_read(&p, &lo) < 0)
                        return -EINVAL;
                p = skip_blank(p);
                if (*p == '-') {
                        p = skip_blank(p + 1);
                        if (status_code_read(&p, &hi) < 0)
                                return -EINVAL;
                        p = skip_blank(p);
                } else
                        hi = lo;
                if (*p && *p != ',')
                        return -EINVAL;
                if (lo < 100 || hi > 599 || hi < 100 || lo > 599)
                        return -ERANGE;
                if (lo > hi)
                        return -EINVAL;
                if (set.n >= STATUS_SET_MAX)
                        return -E2BIG;
                set.ranges[set.n++] = (StatusRange) { lo, hi };
                if (!*p)
                        break;
                p++; /* ',' */
        }
        *ret = set;
        return 0;
}

bool status_set_contains(const StatusSet *s, unsigned code) {
        if (!s)
                return false;
        for (size_t i = 0; i < s->n && i < STATUS_SET_MAX; i++)
                if (code >= s->ranges[i].lo && code <= s->ranges[i].hi)
                        return true;
        return false;
}
