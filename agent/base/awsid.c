#include <ctype.h>
#include <string.h>

#include "awsid.h"
#include "numparse.h"

bool aws_region_is_valid(const char *s) {
        const char *p = s;
        size_t words = 0;

        /* "us-east-1", "us-gov-west-1", "ap-southeast-3": two letters, one
         * or more words, a number. A pattern, not a list: new regions open
         * every year. */
        if (!s || strlen(s) > 32 || !islower((unsigned char) p[0]) || !islower((unsigned char) p[1]) || p[2] != '-')
                return false;
        p += 2;
        while (*p == '-' && islower((unsigned char) p[1])) {
                p++;
                while (islower((unsigned char) *p))
                        p++;
                words++;
        }
        if (words == 0 || *p != '-' || !is_digit(p[1]))
                return false;
        for (p++; is_digit(*p); p++)
                ;
        return *p == '\0';
}

bool aws_instance_id_is_valid(const char *s) {
        size_t n;

        if (!s || strncmp(s, "i-", 2) != 0)
                return false;
        n = strlen(s + 2);
        if (n != 8 && n != 17)
                return false;
        for (const char *p = s + 2; *p; p++)
                if (!is_digit(*p) && !(*p >= 'a' && *p <= 'f'))
                        return false;
        return true;
}

/* The next ':'-separated field of an ARN: [*p, end), *p moved past it. */
static bool arn_field(const char **p, const char **ret_start, size_t *ret_len) {
        const char *end = strchr(*p, ':');

        if (!end)
                return false;
        *ret_start = *p;
        *ret_len = (size_t) (end - *p);
        *p = end + 1;
        return true;
}

bool aws_target_group_arn_parse(const char *s, char *ret_region, size_t size) {
        const char *p = s, *f, *name, *slash;
        char region[33];
        size_t n;

        if (!s || strlen(s) > 256 || strncmp(s, "arn:", 4) != 0)
                return false;
        p += 4;
        /* partition */
        if (!arn_field(&p, &f, &n) || n == 0 || n > 16)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!islower((unsigned char) f[i]) && f[i] != '-')
                        return false;
        if (!arn_field(&p, &f, &n) || n != strlen("elasticloadbalancing") ||
            strncmp(f, "elasticloadbalancing", n) != 0)
                return false;
        if (!arn_field(&p, &f, &n) || n == 0 || n >= sizeof region)
                return false;
        memcpy(region, f, n);
        region[n] = '\0';
        if (!aws_region_is_valid(region))
                return false;
        if (!arn_field(&p, &f, &n) || n != 12)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_digit(f[i]))
                        return false;
        if (strncmp(p, "targetgroup/", 12) != 0)
                return false;
        name = p + 12;
        slash = strchr(name, '/');
        if (!slash)
                return false;
        n = (size_t) (slash - name);
        if (n == 0 || n > 32 || name[0] == '-' || name[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char) name[i]) && name[i] != '-')
                        return false;
        n = strlen(slash + 1);
        if (n != 16)
                return false;
        for (const char *h = slash + 1; *h; h++)
                if (!is_digit(*h) && !(*h >= 'a' && *h <= 'f'))
                        return false;
        if (ret_region) {
                if (strlen(region) >= size)
                        return false;
                memcpy(ret_region, region, strlen(region) + 1);
        }
        return true;
}
