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
