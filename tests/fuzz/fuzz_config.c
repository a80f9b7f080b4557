/* The config file: config_parse_string() on INI text, and the typed value
 * parsers behind its table on the same bytes as one value. */
#include "awsid.h"
#include "config.h"
#include "redisurl.h"
#include "fuzz.h"
#include "parse.h"
#include "statusset.h"

/* A value the config would take: format_duration() writes what
 * parse_duration() reads back as the same duration. */
static void typed_parsers(const char *s) {
        StatusSet set;
        usec_t u, u2;
        uint64_t size;
        double pct;
        bool b;

        if (parse_duration(s, &u) >= 0) {
                char buf[64];

                FUZZ_CHECK(u != USEC_INFINITY);
                format_duration(buf, sizeof buf, u);
                FUZZ_CHECK(parse_duration(buf, &u2) >= 0 && u2 == u);
        }
        if (parse_percent(s, &pct) >= 0)
                FUZZ_CHECK(pct >= 0.0 && pct <= 100.0);
        (void) parse_bool(s, &b);
        (void) aws_region_is_valid(s);
        (void) aws_instance_id_is_valid(s);
        {
                /* a message quotes the URL as written, or with its user
                 * info hidden up to the same host part */
                _cleanup_(freep) char *red = redis_url_redact(s);
                const char *at = strrchr(s, '@');

                FUZZ_CHECK(red);
                FUZZ_CHECK(streq(red, s) || (at && strstr(red, "<redacted>") &&
                                             streq(red + strlen(red) - strlen(at), at)));
        }
        (void) parse_size(s, &size);
        if (status_set_parse(s, &set) >= 0) {
                FUZZ_CHECK(set.n > 0 && set.n <= STATUS_SET_MAX);
                for (size_t i = 0; i < set.n; i++) {
                        FUZZ_CHECK(set.ranges[i].lo >= 100 && set.ranges[i].lo <= set.ranges[i].hi &&
                                   set.ranges[i].hi <= 599);
                        FUZZ_CHECK(status_set_contains(&set, set.ranges[i].lo));
                }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(freep) char *text = NULL, *error = NULL;
        _cleanup_(config_freep) Config *c = NULL;
        int r;

        /* The daemon reads at most this much (config_load); inih's lines are
         * 200 bytes, so bigger inputs only cost time. */
        if (size > 64 * 1024)
                return 0;
        text = fuzz_strndup(data, size);

        r = config_parse_string(text, "fuzz.conf", &c, &error);
        if (r >= 0) {
                FUZZ_CHECK(c && c->path);
                FUZZ_CHECK(c->cpu.clear_below < c->cpu.threshold);
                FUZZ_CHECK(c->remedy.ladder_len <= REMEDY_LADDER_MAX);
                for (size_t i = 0; i < c->remedy.ladder_len; i++)
                        FUZZ_CHECK(remedy_step_to_string(c->remedy.ladder[i]));
                FUZZ_CHECK(pool_on_unreachable_to_string(c->pool.on_unreachable));
        } else {
                FUZZ_CHECK(!c);
                /* -EINVAL always says where and why ("PATH:LINE: message") */
                if (r == -EINVAL)
                        FUZZ_CHECK(error && strncmp(error, "fuzz.conf:", 10) == 0 && !strchr(error, '\n'));
        }

        /* One value as a key would hold it: a line, no longer than inih's. */
        if (size < 200 && !memchr(text, '\n', size))
                typed_parsers(text);
        return 0;
}
