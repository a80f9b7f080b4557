/* Human text for status and transition objects. Every accessor here
 * tolerates a missing key, JSON null or a value of the wrong type, so what
 * an older or newer agent sends can never crash the client: unknowns print
 * as "?". */
#include "status_text.h"

#include <inttypes.h>
#include <math.h>
#include <time.h>

#define LABEL_WIDTH 12
#define UNKNOWN "?"

/* Latest time we agree to print: 9999-12-31 23:59:59 UTC. */
#define TIME_MAX_UNIX 253402300799.0
/* Beyond ~3000 years a duration is garbage, and the integer math stays safe. */
#define DURATION_MAX_SEC 1e11

static json_object *field(json_object *o, const char *key) {
        json_object *v = NULL;

        if (!o || !json_object_is_type(o, json_type_object))
                return NULL;
        if (!json_object_object_get_ex(o, key, &v))
                return NULL;
        return v;
}

static bool has_field(json_object *o, const char *key) {
        return o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, NULL);
}

static const char *str_field(json_object *o, const char *key) {
        json_object *v = field(o, key);

        if (!v || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static bool num_field(json_object *o, const char *key, double *ret) {
        json_object *v = field(o, key);
        double d;

        if (!v || !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
                return false;
        d = json_object_get_double(v);
        if (!isfinite(d))
                return false;
        *ret = d;
        return true;
}

/* -1 unknown, 0 false, 1 true */
static int bool_field(json_object *o, const char *key) {
        json_object *v = field(o, key);

        if (!v || !json_object_is_type(v, json_type_boolean))
                return -1;
        return json_object_get_boolean(v) ? 1 : 0;
}

/* Text from the agent may hold newlines or escape sequences: one status
 * line must stay one line, and a terminal must not be steered. */
static void put_sane(FILE *f, const char *s) {
        if (!s) {
                fputs(UNKNOWN, f);
                return;
        }
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                fputc(c < 0x20 || c == 0x7f ? '?' : c, f);
        }
}

static void put_label(FILE *f, const char *label) {
        fprintf(f, "%-*s", LABEL_WIDTH, label);
}

const char *status_text_duration(double sec, char *buf, size_t size) {
        static const struct {
                const char *suffix;
                uint64_t sec;
        } units[] = {
                { "d", 86400 }, { "h", 3600 }, { "m", 60 }, { "s", 1 },
        };
        uint64_t total, comp[ELEMENTSOF(units)];
        size_t n = 0, first = ELEMENTSOF(units), last = 0;

        if (!buf || size == 0)
                return buf;
        if (!isfinite(sec) || sec < 0 || sec > DURATION_MAX_SEC) {
                snprintf(buf, size, UNKNOWN);
                return buf;
        }
        if (sec > 0 && sec < 1) {
                snprintf(buf, size, "%ums", (unsigned) (sec * 1000.0));
                return buf;
        }
        total = (uint64_t) sec;
        /* from the largest non-zero unit down to the smallest non-zero one: 12m3s, 1h, 1h0m5s */
        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                comp[i] = (i == 0 ? total : total % units[i - 1].sec) / units[i].sec;
                if (comp[i] == 0)
                        continue;
                if (first == ELEMENTSOF(units))
                        first = i;
                last = i;
        }
        if (first == ELEMENTSOF(units)) {
                snprintf(buf, size, "0s");
                return buf;
        }
        buf[0] = '\0';
        for (size_t i = first; i <= last && n < size; i++) {
                int w = snprintf(buf + n, size - n, "%" PRIu64 "%s", comp[i], units[i].suffix);
                if (w < 0)
                        break;
                n += (size_t) w;
        }
        return buf;
}

static bool all_digits(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

const char *status_text_time(const char *iso, char *buf, size_t size) {
        size_t n = 0;
        const char *p;

        if (!buf || size == 0)
                return buf;
        if (!iso) {
                snprintf(buf, size, UNKNOWN);
                return buf;
        }
        /* YYYY-MM-DDTHH:MM:SS[.fff](Z|+00:00) */
        if (strlen(iso) >= 20 && all_digits(iso, 4) && iso[4] == '-' && all_digits(iso + 5, 2) && iso[7] == '-' &&
            all_digits(iso + 8, 2) && (iso[10] == 'T' || iso[10] == ' ') && all_digits(iso + 11, 2) &&
            iso[13] == ':' && all_digits(iso + 14, 2) && iso[16] == ':' && all_digits(iso + 17, 2)) {
                p = iso + 19;
                if (*p == '.') {
                        p++;
                        while (*p >= '0' && *p <= '9')
                                p++;
                }
                if (streq(p, "Z") || streq(p, "+00:00")) {
                        snprintf(buf, size, "%.10s %.8s UTC", iso, iso + 11);
                        return buf;
                }
        }
        for (p = iso; *p && n + 1 < size; p++) {
                unsigned char c = (unsigned char) *p;
                buf[n++] = c < 0x20 || c == 0x7f ? '?' : (char) c;
        }
        buf[n] = '\0';
        return buf;
}

static const char *time_from_unix(double t, char *buf, size_t size) {
        struct tm tm;
        time_t tt;

        if (!isfinite(t) || t < 0 || t > TIME_MAX_UNIX) {
                snprintf(buf, size, UNKNOWN);
                return buf;
        }
        tt = (time_t) t;
        if (!gmtime_r(&tt, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
                snprintf(buf, size, UNKNOWN);
        return buf;
}

/* A time that may come as ISO text, or as seconds under `unix_key`. */
static const char *time_field(json_object *o, const char *key, const char *unix_key, char *buf, size_t size) {
        const char *s = str_field(o, key);
        double t;

        if (s)
                return status_text_time(s, buf, size);
        if (unix_key && num_field(o, unix_key, &t))
                return time_from_unix(t, buf, size);
        snprintf(buf, size, UNKNOWN);
        return buf;
}

static void put_pct(FILE *f, json_object *o, const char *key, int decimals) {
        double v;

        if (!num_field(o, key, &v)) {
                fputs(UNKNOWN, f);
                return;
        }
        /* a configured 90 reads better than 90.0, a measured 12.3 keeps its decimal */
        if (decimals < 0)
                decimals = v == floor(v) ? 0 : 1;
        fprintf(f, "%.*f%%", decimals, v);
}

static void put_duration_field(FILE *f, json_object *o, const char *key) {
        char buf[64];
        double v;

        fputs(num_field(o, key, &v) ? status_text_duration(v, buf, sizeof buf) : UNKNOWN, f);
}

static void put_count(FILE *f, json_object *o, const char *key) {
        double v;

        if (num_field(o, key, &v) && v >= 0 && v < 1e15)
                fprintf(f, "%.0f", floor(v));
        else
                fputs(UNKNOWN, f);
}

static void format_host(FILE *f, json_object *st) {
        put_label(f, "host");
        put_sane(f, str_field(st, "host"));
        fputs(" (pid ", f);
        put_count(f, st, "pid");
        fputs(")\n", f);
}

static void format_state(FILE *f, json_object *st) {
        const char *state = str_field(st, "state"), *reason = str_field(st, "reason");
        char buf[64];

        put_label(f, "state");
        put_sane(f, state);
        fputs(" for ", f);
        put_duration_field(f, st, "for_sec");
        fprintf(f, " (since %s)", time_field(st, "since", "since_unix", buf, sizeof buf));
        if (!isempty(reason)) {
                fputs("  -- ", f);
                put_sane(f, reason);
        }
        if (bool_field(st, "maintenance") == 1 && !streq_ptr(state, "MAINTENANCE")) {
                fputs("  [maintenance", f);
                if (!isempty(str_field(st, "maintenance_reason"))) {
                        fputs(": ", f);
                        put_sane(f, str_field(st, "maintenance_reason"));
                }
                fputs("]", f);
        }
        fputc('\n', f);
}

/* routing     DEGRADED: Redis: unreachable (connection refused)
 * the verdict behind monkeyctl status's exit code */
static void format_routing(FILE *f, json_object *st) {
        json_object *rt = field(st, "routing");
        const char *verdict = str_field(rt, "verdict"), *why = str_field(rt, "why");

        if (!rt)
                return; /* an older agent */
        put_label(f, "routing");
        fputs(streq_ptr(verdict, "degraded") ? "DEGRADED" : verdict ? verdict : UNKNOWN, f);
        if (!isempty(why)) {
                fputs(": ", f);
                put_sane(f, why);
        }
        fputc('\n', f);
}

/* config      /etc/monkeyd/monkeyd.conf sha256 3f2a...
 * reload      2026-11-22 17:00:00 UTC (monkeyctl): REFUSED, still running the file above: FILE:LINE: ... */
static void format_config(FILE *f, json_object *st) {
        json_object *rl = field(st, "last_reload");
        char buf[64];

        if (!has_field(st, "config_sha256"))
                return; /* an older agent */
        put_label(f, "config");
        put_sane(f, str_field(st, "config"));
        if (str_field(st, "config_sha256")) {
                fputs(" sha256 ", f);
                put_sane(f, str_field(st, "config_sha256"));
        } else
                fputs(" (no sha256 shown: the file holds a secret inline)", f);
        fputc('\n', f);
        put_label(f, "reload");
        if (!rl || !json_object_is_type(rl, json_type_object)) {
                fputs("none since the agent started\n", f);
                return;
        }
        fputs(time_field(rl, "at", "at_unix", buf, sizeof buf), f);
        if (str_field(rl, "via")) {
                fputs(" (", f);
                put_sane(f, str_field(rl, "via"));
                fputc(')', f);
        }
        if (bool_field(rl, "ok") == 1)
                fputs(": ok", f);
        else {
                fputs(": REFUSED, still running the config above: ", f);
                put_sane(f, str_field(rl, "result"));
        }
        fputc('\n', f);
}

static void format_cpu(FILE *f, json_object *st) {
        json_object *cpu = field(st, "cpu");
        const char *err;

        put_label(f, "cpu");
        if (!cpu || !json_object_is_type(cpu, json_type_object)) {
                fputs(UNKNOWN "\n", f);
                return;
        }
        put_pct(f, cpu, "busy_pct", 1);
        fputs(" now, ", f);
        put_pct(f, cpu, "window_pct", 1);
        fputs(" over ", f);
        put_duration_field(f, cpu, "window_sec");
        fputs(", threshold ", f);
        put_pct(f, cpu, "threshold_pct", -1);
        fputs(" (clear below ", f);
        put_pct(f, cpu, "clear_below_pct", -1);
        fputs(")  user ", f);
        put_pct(f, cpu, "user_pct", 0);
        fputs(" sys ", f);
        put_pct(f, cpu, "system_pct", 0);
        fputs(" iowait ", f);
        put_pct(f, cpu, "iowait_pct", 0);
        fputs(" steal ", f);
        put_pct(f, cpu, "steal_pct", 0);
        if (bool_field(cpu, "breached") == 1) {
                fputs("  BREACHED for ", f);
                put_duration_field(f, cpu, "run_sec");
        }
        err = str_field(cpu, "last_error");
        if (!isempty(err)) {
                fputs("  (last error: ", f);
                put_sane(f, err);
                fputs(")", f);
        }
        fputc('\n', f);
}

static int memstream_finish(FILE *f, char **buf, char **ret);

static size_t array_len(json_object *o, const char *key) {
        json_object *a = field(o, key);

        return a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

static bool has_array(json_object *o, const char *key) {
        json_object *a = field(o, key);

        return a && json_object_is_type(a, json_type_array);
}

/* intro, then the rules this host's config disagrees on; nothing when none. */
static void put_differs(FILE *f, json_object *budget, const char *intro) {
        json_object *differs = field(budget, "config_differs");
        size_t n = differs && json_object_is_type(differs, json_type_array) ? json_object_array_length(differs) : 0;

        for (size_t i = 0; i < n; i++) {
                json_object *r = json_object_array_get_idx(differs, i);
                fputs(i == 0 ? intro : ", ", f);
                put_sane(f, r && json_object_is_type(r, json_type_string) ? json_object_get_string(r) : NULL);
        }
}

static void format_pool(FILE *f, json_object *st) {
        json_object *pool = field(st, "pool"), *budget;
        const char *status;
        int serving;

        put_label(f, "pool");
        switch (bool_field(pool, "configured")) {
        case 0:
                fputs("not configured\n", f);
                return;
        case -1:
                fputs(UNKNOWN "\n", f);
                return;
        }
        put_sane(f, str_field(pool, "name"));
        status = str_field(pool, "status");
        if (streq_ptr(status, "unreachable")) {
                fputs(": unreachable", f);
                if (!isempty(str_field(pool, "last_error"))) {
                        fputs(" (last error: ", f);
                        put_sane(f, str_field(pool, "last_error"));
                        fputs(")", f);
                }
                fputc('\n', f);
                return;
        }
        serving = bool_field(pool, "serving");
        fputs(serving == 1 ? ": serving (" : serving == 0 ? ": not serving (" : ": ? (", f);
        put_count(f, pool, "serving_count");
        budget = field(pool, "budget");
        if (has_array(pool, "members") && budget && json_object_is_type(budget, json_type_object)) {
                fprintf(f, " of %zu serving, budget: ", array_len(pool, "members"));
                if (has_array(budget, "out"))
                        fprintf(f, "%zu", array_len(budget, "out"));
                else
                        fputs(UNKNOWN, f);
                fputs(" out of max ", f);
                put_count(f, budget, "max_unavailable");
                fputs(")", f);
                put_differs(f, budget, "; the pool's budget, this host's config differs: ");
        } else
                fputs(" serving)", f);
        if (!isempty(status) && !streq(status, "connected")) {
                fputs("  [", f);
                put_sane(f, status);
                fputs("]", f);
        }
        fputc('\n', f);
}

/* "min_serving 1, max_unavailable 3", or with old "min_serving 1 -> 1, ...". */
static void put_budget_numbers(FILE *f, json_object *old, json_object *b) {
        static const char *const keys[] = { "min_serving", "max_unavailable" };

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                fprintf(f, "%s%s ", i > 0 ? ", " : "", keys[i]);
                if (old) {
                        put_count(f, old, keys[i]);
                        fputs(" -> ", f);
                }
                put_count(f, b, keys[i]);
        }
}

/* Whose budget applies and whether this host's config agrees: a line
 * only when there is something to say. */
static void put_budget_source(FILE *f, json_object *budget) {
        json_object *config = field(budget, "config"), *differs = field(budget, "config_differs");

        if (streq_ptr(str_field(budget, "source"), "config")) {
                put_label(f, "");
                fputs("(this host's config: the pool's own budget not read from Redis yet)\n", f);
                return;
        }
        if (!differs || !json_object_is_type(differs, json_type_array) || json_object_array_length(differs) == 0 ||
            !config)
                return;
        put_label(f, "");
        fputs("the pool's budget applies; this host's config says ", f);
        put_budget_numbers(f, NULL, config);
        put_differs(f, budget, " (differs: ");
        fputs(")\n", f);
}

int status_text_format_budget(json_object *b, char **ret) {
        json_object *old = field(b, "old");
        char *buf = NULL, when[64];
        size_t size = 0;
        FILE *f = ret ? open_memstream(&buf, &size) : NULL;

        if (!f)
                return ret ? -ENOMEM : -EINVAL;
        put_label(f, "pool");
        put_sane(f, str_field(b, "pool"));
        fputc('\n', f);
        put_label(f, "budget");
        if (!has_field(b, "min_serving") || !field(b, "min_serving")) {
                fputs("none yet (the first agent to connect seeds it from its config)\n", f);
        } else {
                put_budget_numbers(f, old && json_object_is_type(old, json_type_object) ? old : NULL, b);
                fputc('\n', f);
                put_label(f, "written");
                put_sane(f, str_field(b, "how") ? str_field(b, "how") : UNKNOWN);
                fputs(" by ", f);
                put_sane(f, str_field(b, "by") ? str_field(b, "by") : UNKNOWN);
                fputs(" at ", f);
                fputs(time_field(b, "at", NULL, when, sizeof when), f);
                fputc('\n', f);
        }
        put_budget_source(f, b);
        return memstream_finish(f, &buf, ret);
}

/* Milliseconds as "2.5s", "120ms"; "-" when unknown. */
static void put_ms_field(FILE *f, json_object *o, const char *key) {
        double v;

        if (!num_field(o, key, &v) || v < 0 || v > DURATION_MAX_SEC * 1000.0) {
                fputs("-", f);
                return;
        }
        if (v < 1000)
                fprintf(f, "%.0fms", v);
        else if (v < 60000)
                fprintf(f, "%.1fs", v / 1000.0);
        else {
                char buf[64];
                fputs(status_text_duration(v / 1000.0, buf, sizeof buf), f);
        }
}

/* A column of at most `width` characters, sanitized, padded. */
static void put_cell(FILE *f, const char *s, int width) {
        int n = 0;

        if (!s)
                s = "-";
        for (; *s && n < width; s++, n++) {
                unsigned char c = (unsigned char) *s;
                fputc(c < 0x20 || c == 0x7f ? '?' : c, f);
        }
        for (; n < width + 2; n++)
                fputc(' ', f);
}

int status_text_format_pool(json_object *pool, char **ret) {
        json_object *budget = field(pool, "budget"), *members = field(pool, "members"), *out;
        char *buf = NULL;
        size_t size = 0, n;
        double age;
        FILE *f;

        if (!ret)
                return -EINVAL;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;

        put_label(f, "pool");
        put_sane(f, str_field(pool, "name"));
        fputs(" (", f);
        put_sane(f, str_field(pool, "status"));
        fputs(", ", f);
        put_sane(f, str_field(pool, "redis"));
        if (str_field(pool, "master")) {
                fputs(", master ", f);
                put_sane(f, str_field(pool, "master"));
        }
        {
                json_object *cluster = NULL;

                if (json_object_object_get_ex(pool, "cluster", &cluster) && str_field(cluster, "node")) {
                        fputs(", cluster node ", f);
                        put_sane(f, str_field(cluster, "node"));
                }
        }
        fputs(")\n", f);
        if (!isempty(str_field(pool, "last_error"))) {
                put_label(f, "last error");
                put_sane(f, str_field(pool, "last_error"));
                fputc('\n', f);
        }

        put_label(f, "this host");
        put_sane(f, str_field(pool, "host"));
        fputc(' ', f);
        put_sane(f, str_field(pool, "address"));
        fputs(bool_field(pool, "serving") == 1 ? ": serving" : bool_field(pool, "serving") == 0 ? ": out" : ": ?", f);
        fputc('\n', f);

        put_label(f, "budget");
        put_budget_numbers(f, NULL, budget);
        fputs(": ", f);
        put_count(f, budget, "serving_alive");
        fputs(" serving alive, ", f);
        out = field(budget, "out");
        if (out && json_object_is_type(out, json_type_array)) {
                n = json_object_array_length(out);
                fprintf(f, "%zu out", n);
                for (size_t i = 0; i < n; i++) {
                        json_object *h = json_object_array_get_idx(out, i);
                        fputs(i == 0 ? " (" : ", ", f);
                        put_sane(f, h && json_object_is_type(h, json_type_string) ? json_object_get_string(h) : NULL);
                        if (i + 1 == n)
                                fputc(')', f);
                }
        } else
                fputs(UNKNOWN " out", f);
        fputc('\n', f);
        put_budget_source(f, budget);

        put_label(f, "members");
        if (!members || !json_object_is_type(members, json_type_array)) {
                fputs(UNKNOWN "\n", f);
                return memstream_finish(f, &buf, ret);
        }
        n = json_object_array_length(members);
        fprintf(f, "%zu", n);
        if (num_field(pool, "view_age_sec", &age)) {
                char d[64];
                fprintf(f, " (as seen %s ago)", status_text_duration(age, d, sizeof d));
        } else
                fputs(" (no view from Redis yet)", f);
        fputc('\n', f);
        if (n > 0) {
                fputs("  ", f);
                put_cell(f, "HOST", 20);
                put_cell(f, "ADDRESS", 22);
                put_cell(f, "STATE", 12);
                put_cell(f, "SERVING", 7);
                put_cell(f, "LEASE LEFT", 10);
                fputs("LEASE AGE\n", f);
        }
        for (size_t i = 0; i < n; i++) {
                json_object *m = json_object_array_get_idx(members, i);
                int sv = bool_field(m, "serving");

                fputs("  ", f);
                put_cell(f, str_field(m, "host"), 20);
                put_cell(f, str_field(m, "addr"), 22);
                put_cell(f, str_field(m, "state"), 12);
                put_cell(f, sv == 1 ? "yes" : sv == 0 ? "out" : "?", 7);
                /* PTTL: null when the lease is gone, -1 for a key without expiry */
                if (field(m, "lease_ttl_ms")) {
                        char cell[32];
                        double v;

                        if (!num_field(m, "lease_ttl_ms", &v) || v >= 1e12)
                                snprintf(cell, sizeof cell, UNKNOWN);
                        else if (v < 0)
                                snprintf(cell, sizeof cell, "no expiry");
                        else if (v < 1000)
                                snprintf(cell, sizeof cell, "%.0fms", v);
                        else
                                snprintf(cell, sizeof cell, "%.1fs", v / 1000.0);
                        put_cell(f, cell, 10);
                } else
                        put_cell(f, "expired", 10);
                put_ms_field(f, m, "heartbeat_age_ms");
                fputc('\n', f);
        }
        return memstream_finish(f, &buf, ret);
}

static const char *check_mark(json_object *checks, const char *key) {
        const char *s = str_field(checks, key);

        if (!s)
                return UNKNOWN;
        if (streq(s, "pass"))
                return "\u2713";
        if (streq(s, "fail"))
                return "\u2717";
        if (streq(s, "not run"))
                return "-";
        return UNKNOWN;
}

static void format_checks(FILE *f, json_object *st) {
        static const char *const names[] = { "content", "status", "binding" };
        json_object *checks = field(st, "last_checks");
        const char *detail;
        bool any_run = false;
        char buf[64];

        put_label(f, "checks");
        if (!has_field(st, "last_checks") || (checks && !json_object_is_type(checks, json_type_object))) {
                fputs(UNKNOWN "\n", f);
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (!streq_ptr(str_field(checks, names[i]), "not run"))
                        any_run = true;
        if (!checks || (!any_run && !str_field(checks, "at"))) {
                fputs("not run\n", f);
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                fprintf(f, "%s %s  ", names[i], check_mark(checks, names[i]));
        fprintf(f, "at %s", time_field(checks, "at", NULL, buf, sizeof buf));
        detail = str_field(checks, "detail");
        if (!isempty(detail)) {
                fputs("  (", f);
                put_sane(f, detail);
                fputs(")", f);
        }
        fputc('\n', f);
}

/* "evidence    monkeyctl incident ID; profile 10s (profiling now)" */
static void format_evidence(FILE *f, json_object *ev) {
        if (!str_field(ev, "last_incident"))
                return;
        put_label(f, "evidence");
        fputs("monkeyctl incident ", f);
        put_sane(f, str_field(ev, "last_incident"));
        fputs("; profile ", f);
        put_sane(f, str_field(ev, "profile"));
        if (bool_field(ev, "profiling") == 1)
                fputs(" (profiling now)", f);
        else if (str_field(ev, "last_profile")) {
                fputs(" (last: ", f);
                put_sane(f, str_field(ev, "last_profile"));
                fputc(')', f);
        }
        if (str_field(ev, "error")) {
                fputs("; cannot write it: ", f);
                put_sane(f, str_field(ev, "error"));
        }
        fputc('\n', f);
}

static void format_incident(FILE *f, json_object *st) {
        json_object *inc = field(st, "last_incident");
        char buf[64];

        put_label(f, "incident");
        if (!has_field(st, "last_incident") || (inc && !json_object_is_type(inc, json_type_object))) {
                fputs(UNKNOWN "\n", f);
                return;
        }
        if (!inc) {
                fputs("none\n", f);
                return;
        }
        put_sane(f, str_field(inc, "id"));
        fputc(' ', f);
        put_sane(f, str_field(inc, "reason"));
        fputs(" -> ", f);
        if (has_field(inc, "outcome") && !field(inc, "outcome"))
                fputs("in progress", f);
        else
                put_sane(f, str_field(inc, "outcome"));
        if (str_field(inc, "started"))
                fprintf(f, "  (started %s)", time_field(inc, "started", NULL, buf, sizeof buf));
        fputc('\n', f);
        format_evidence(f, field(st, "evidence"));
}

/* "aws         i-0abc in us-east-1, credentials instance-role (role x): reboot permitted" */
static void format_aws(FILE *f, json_object *aws) {
        json_object *cred = field(aws, "credentials");
        const char *perm = str_field(aws, "permission");

        put_label(f, "aws");
        put_sane(f, str_field(aws, "instance_id") ? str_field(aws, "instance_id") : "instance ?");
        fputs(" in ", f);
        put_sane(f, str_field(aws, "region"));
        fputs(", credentials ", f);
        put_sane(f, str_field(cred, "source"));
        if (str_field(cred, "origin")) {
                fputs(" (", f);
                put_sane(f, str_field(cred, "origin"));
                fputc(')', f);
        }
        fputs(": reboot ", f);
        put_sane(f, perm);
        fputc('\n', f);
        if (str_field(aws, "last_error") || (perm && !streq(perm, "permitted") && str_field(aws, "permission_detail"))) {
                put_label(f, "");
                put_sane(f, str_field(aws, "last_error") ? str_field(aws, "last_error")
                                                         : str_field(aws, "permission_detail"));
                fputc('\n', f);
        }
}

/* "lb          target group web healthy; Auto Scaling standby (web-asg InService)"
 *  "            doing: waiting for the targets to drain (12s)" / "last error: ..." */
static void format_route(FILE *f, json_object *route) {
        json_object *tgs = field(route, "target_groups"), *asg = field(route, "autoscaling");
        size_t n = tgs && json_object_is_type(tgs, json_type_array) ? json_object_array_length(tgs) : 0;
        double secs;

        put_label(f, "lb");
        for (size_t i = 0; i < n; i++) {
                json_object *t = json_object_array_get_idx(tgs, i);
                const char *arn = str_field(t, "arn"), *name = arn ? strstr(arn, ":targetgroup/") : NULL;
                size_t len;

                fputs(i == 0 ? "target group " : ", ", f);
                if (name) {
                        name += strlen(":targetgroup/");
                        len = strcspn(name, "/");
                        /* the name as people call it; put_sane prints it whole */
                        char *short_name = strndup(name, len);
                        put_sane(f, short_name);
                        free(short_name);
                } else
                        put_sane(f, arn);
                fputc(' ', f);
                put_sane(f, str_field(t, "state"));
        }
        if (streq_ptr(str_field(asg, "mode"), "standby")) {
                fputs(n > 0 ? "; " : "", f);
                fputs("Auto Scaling standby", f);
                if (str_field(asg, "group")) {
                        fputs(" (", f);
                        put_sane(f, str_field(asg, "group"));
                        fputc(' ', f);
                        put_sane(f, str_field(asg, "lifecycle"));
                        fputc(')', f);
                }
        }
        fputc('\n', f);
        if (str_field(route, "doing")) {
                char d[32];

                put_label(f, "");
                fputs("doing: ", f);
                put_sane(f, str_field(route, "doing"));
                if (num_field(route, "for_seconds", &secs))
                        fprintf(f, " (%s)", status_text_duration(secs, d, sizeof d));
                fputc('\n', f);
        }
        if (str_field(route, "last_error")) {
                put_label(f, "");
                fputs("last error: ", f);
                put_sane(f, str_field(route, "last_error"));
                fputc('\n', f);
        }
}

static void format_remedy(FILE *f, json_object *st) {
        json_object *remedy = field(st, "remedy"), *ladder = field(remedy, "ladder"), *aws = field(remedy, "aws");
        const char *mode = str_field(remedy, "mode");
        double grace;

        put_label(f, "remedy");
        put_sane(f, mode);
        if (streq_ptr(mode, "enabled")) {
                fputs(" (", f);
                put_count(f, remedy, "count_in_window");
                fputs(" of ", f);
                put_count(f, remedy, "max_per_window");
                fputs(" in ", f);
                put_duration_field(f, remedy, "window_sec");
                fputs(")", f);
        }
        if (ladder && json_object_is_type(ladder, json_type_array) && json_object_array_length(ladder) > 0) {
                fputs("  ladder ", f);
                for (size_t i = 0; i < json_object_array_length(ladder); i++) {
                        json_object *step = json_object_array_get_idx(ladder, i);
                        if (i > 0)
                                fputs(" -> ", f);
                        put_sane(f, json_object_is_type(step, json_type_string) ? json_object_get_string(step) : NULL);
                }
        }
        if (num_field(remedy, "grace_left_sec", &grace) && grace > 0) {
                char d[32];
                fprintf(f, "  post-boot grace %s left", status_text_duration(grace, d, sizeof d));
        }
        fputc('\n', f);
        if (str_field(remedy, "budget_note")) {
                put_label(f, "");
                put_sane(f, str_field(remedy, "budget_note"));
                fputc('\n', f);
        }
        if (aws && json_object_is_type(aws, json_type_object))
                format_aws(f, aws);
        if (field(remedy, "route") && json_object_is_type(field(remedy, "route"), json_type_object))
                format_route(f, field(remedy, "route"));
}

/* proxy       agent-check on 127.0.0.3 port 5555 (from [pool] address)
 *             WARNING: HAProxy connects agent-check to ... */
static void format_agent_check(FILE *f, json_object *st) {
        json_object *ac = field(st, "agent_check");

        if (!ac || !json_object_is_type(ac, json_type_object))
                return; /* no [proxy], or an older agent */
        put_label(f, "proxy");
        fputs("agent-check on ", f);
        put_sane(f, str_field(ac, "address"));
        fputs(" port ", f);
        put_count(f, ac, "port");
        fputs(" (from ", f);
        put_sane(f, str_field(ac, "from"));
        fputs(")\n", f);
        if (str_field(ac, "warning")) {
                put_label(f, "");
                fputs("WARNING: ", f);
                put_sane(f, str_field(ac, "warning"));
                fputc('\n', f);
        } else if (str_field(ac, "note")) {
                put_label(f, "");
                fputs("note: ", f);
                put_sane(f, str_field(ac, "note"));
                fputc('\n', f);
        }
}

/* health      HTTP on 127.0.0.3 port 8080 path / (from [pool] address): 2 connections, 310 requests, 0 refused */
static void format_health(FILE *f, json_object *st) {
        json_object *h = field(st, "health");

        if (!h || !json_object_is_type(h, json_type_object))
                return; /* no [proxy] health_port, or an older agent */
        put_label(f, "health");
        fputs("HTTP on ", f);
        put_sane(f, str_field(h, "address"));
        fputs(" port ", f);
        put_count(f, h, "port");
        fputs(" path ", f);
        put_sane(f, str_field(h, "path"));
        fputs(" (from ", f);
        put_sane(f, str_field(h, "from"));
        fputs("): ", f);
        put_count(f, h, "connections");
        fputs(" connections, ", f);
        put_count(f, h, "requests");
        fputs(" requests, ", f);
        put_count(f, h, "refused");
        fputs(" refused\n", f);
}

/* slack  bot-token #incidents: 2 waiting (next try in 4s), 17 delivered
 *        PAUSED: Slack: invalid_auth (HTTP 200): check [slack] settings */
static void format_slack(FILE *f, json_object *st) {
        json_object *sl = field(st, "slack"), *ob;
        const char *err;
        double v;

        if (!sl)
                return; /* an older agent: say nothing rather than guess */
        put_label(f, "slack");
        if (bool_field(sl, "configured") != 1) {
                fputs("not configured\n", f);
                return;
        }
        put_sane(f, str_field(sl, "mode"));
        if (str_field(sl, "channel")) {
                fputc(' ', f);
                put_sane(f, str_field(sl, "channel"));
        }
        ob = field(sl, "outbox");
        fputs(": ", f);
        put_count(f, ob, "pending");
        fputs(" waiting", f);
        if (num_field(ob, "next_attempt_in_ms", &v) && v > 0) {
                char d[32];
                fprintf(f, " (next try in %s)", status_text_duration(v / 1000.0, d, sizeof d));
        }
        fputs(", ", f);
        put_count(f, ob, "delivered");
        fputs(" delivered", f);
        if (num_field(ob, "dropped", &v) && v > 0) {
                fputs(", ", f);
                put_count(f, ob, "dropped");
                fputs(" dropped", f);
        }
        if (num_field(ob, "dead", &v) && v > 0) {
                fputs(", ", f);
                put_count(f, ob, "dead");
                fputs(" rejected (outbox/dead/)", f);
        }
        fputc('\n', f);
        err = str_field(ob, "last_error");
        if (err) {
                put_label(f, "");
                fputs(bool_field(ob, "paused") == 1 ? "PAUSED: " : "last error: ", f);
                put_sane(f, err);
                fputc('\n', f);
        }
}

static int memstream_finish(FILE *f, char **buf, char **ret) {
        bool failed = ferror(f);

        /* fclose publishes the final buffer, even on error: always free it then */
        if (fclose(f) != 0 || failed) {
                free(*buf);
                *buf = NULL;
                return -ENOMEM;
        }
        *ret = TAKE_PTR(*buf);
        return 0;
}

int status_text_format(json_object *status, char **ret) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        if (!ret)
                return -EINVAL;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;

        format_host(f, status);
        format_state(f, status);
        format_routing(f, status);
        format_cpu(f, status);
        format_pool(f, status);
        format_checks(f, status);
        format_incident(f, status);
        format_remedy(f, status);
        format_agent_check(f, status);
        format_health(f, status);
        format_slack(f, status);
        format_config(f, status);

        return memstream_finish(f, &buf, ret);
}

int status_text_format_event(json_object *event, char **ret) {
        const char *reason;
        char *buf = NULL;
        size_t size = 0;
        char tbuf[64];
        FILE *f;

        if (!ret)
                return -EINVAL;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;

        fputs(time_field(event, "at", "at_unix", tbuf, sizeof tbuf), f);
        fputs("  ", f);
        put_sane(f, str_field(event, "from"));
        fputs(" -> ", f);
        put_sane(f, str_field(event, "to"));
        fputs("  ", f);
        put_sane(f, str_field(event, "event"));
        reason = str_field(event, "reason");
        if (!isempty(reason)) {
                fputs("  ", f);
                put_sane(f, reason);
        }

        return memstream_finish(f, &buf, ret);
}

int status_text_format_history(json_object *history, char **ret) {
        char *buf = NULL;
        size_t size = 0, n;
        FILE *f;

        if (!ret)
                return -EINVAL;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        n = history && json_object_is_type(history, json_type_array) ? json_object_array_length(history) : 0;
        if (n == 0)
                fputs("no transitions recorded\n", f);
        for (size_t i = 0; i < n; i++) {
                _cleanup_(freep) char *line = NULL;
                int r = status_text_format_event(json_object_array_get_idx(history, i), &line);

                if (r < 0) {
                        fclose(f);
                        free(buf);
                        return r;
                }
                fprintf(f, "%s\n", line);
        }
        return memstream_finish(f, &buf, ret);
}

static const char *bytes_text(double b, char *buf, size_t size) {
        if (b >= 1024.0 * 1024 * 1024)
                snprintf(buf, size, "%.1f GiB", b / (1024.0 * 1024 * 1024));
        else if (b >= 1024.0 * 1024)
                snprintf(buf, size, "%.1f MiB", b / (1024.0 * 1024));
        else if (b >= 1024)
                snprintf(buf, size, "%.0f KiB", b / 1024);
        else
                snprintf(buf, size, "%.0f B", b);
        return buf;
}

int status_text_format_incidents(json_object *o, char **ret) {
        json_object *list = field(o, "incidents");
        char *buf = NULL, t[64], b[32];
        size_t size = 0, n;
        double bytes;
        FILE *f;

        if (!ret)
                return -EINVAL;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        n = list && json_object_is_type(list, json_type_array) ? json_object_array_length(list) : 0;
        if (n == 0) {
                fputs("no incidents kept in ", f);
                put_sane(f, str_field(o, "dir"));
                fputc('\n', f);
                return memstream_finish(f, &buf, ret);
        }
        fprintf(f, "%-42s%-25s%-11s%9s  %s\n", "INCIDENT", "STARTED", "PROFILE", "SIZE", "TOP PROCESS");
        for (size_t i = 0; i < n; i++) {
                json_object *row = json_object_array_get_idx(list, i);

                put_cell(f, str_field(row, "id"), 40);
                put_cell(f, str_field(row, "started") ? status_text_time(str_field(row, "started"), t, sizeof t) : "?",
                         23);
                put_cell(f, str_field(row, "profile"), 9);
                fprintf(f, " %9s  ", num_field(row, "bytes", &bytes) ? bytes_text(bytes, b, sizeof b) : UNKNOWN);
                if (str_field(row, "error"))
                        put_sane(f, str_field(row, "error"));
                else
                        put_cell(f, str_field(row, "top_command"), 60);
                fputc('\n', f);
        }
        fprintf(f, "%zu incident(s), %s in ", n,
                num_field(o, "bytes", &bytes) ? bytes_text(bytes, b, sizeof b) : UNKNOWN);
        put_sane(f, str_field(o, "dir"));
        fputc('\n', f);
        return memstream_finish(f, &buf, ret);
}

int status_text_format_incident(json_object *o, char **ret) {
        json_object *cpu = field(o, "cpu_window"), *load = field(o, "loadavg"), *psi = field(o, "psi"),
                    *top = field(o, "top"), *prof = field(o, "profile"), *files = field(o, "files"), *v;
        char *buf = NULL, t[64], d[32];
        size_t size = 0;
        double x, y, z;
        FILE *f;

        if (!ret)
                return -EINVAL;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;

        put_label(f, "incident");
        put_sane(f, str_field(o, "id"));
        fputs(" on ", f);
        put_sane(f, str_field(o, "host"));
        fputc('\n', f);
        put_label(f, "started");
        put_sane(f, str_field(o, "started") ? status_text_time(str_field(o, "started"), t, sizeof t) : NULL);
        fputc('\n', f);
        put_label(f, "reason");
        put_sane(f, str_field(o, "reason"));
        fputc('\n', f);

        put_label(f, "cpu window");
        if (cpu && json_object_is_type(cpu, json_type_object)) {
                fputs("busy ", f);
                put_pct(f, cpu, "busy_pct", 1);
                fputs(" (user ", f);
                put_pct(f, cpu, "user_pct", 1);
                fputs(", system ", f);
                put_pct(f, cpu, "system_pct", 1);
                fputs(", irq ", f);
                put_pct(f, cpu, "irq_pct", 1);
                fputs("), iowait ", f);
                put_pct(f, cpu, "iowait_pct", 1);
                fputs(", steal ", f);
                put_pct(f, cpu, "steal_pct", 1);
        } else
                fputs("not measured (no sample at the start of the window)", f);
        if (num_field(o, "cpus", &x))
                fprintf(f, "; %.0f CPUs", x);
        if (num_field(o, "window_sec", &y))
                fprintf(f, "; window %s", status_text_duration(y, d, sizeof d));
        fputc('\n', f);

        put_label(f, "load");
        if (num_field(load, "1m", &x) && num_field(load, "5m", &y) && num_field(load, "15m", &z)) {
                double r = 0, tasks = 0;
                fprintf(f, "%.2f %.2f %.2f", x, y, z);
                if (num_field(load, "runnable", &r) && num_field(load, "tasks", &tasks))
                        fprintf(f, " (%.0f runnable of %.0f tasks)", r, tasks);
        } else
                fputs(UNKNOWN, f);
        fputc('\n', f);

        put_label(f, "pressure");
        v = field(psi, "some");
        if (v && num_field(v, "avg10", &x) && num_field(v, "avg60", &y) && num_field(v, "avg300", &z))
                fprintf(f, "cpu some %.2f%% (10s), %.2f%% (60s), %.2f%% (300s)", x, y, z);
        else if (str_field(psi, "unavailable")) {
                fputs("unavailable: ", f);
                put_sane(f, str_field(psi, "unavailable"));
        } else
                fputs(UNKNOWN, f);
        fputc('\n', f);

        fprintf(f, "top processes by CPU over the window%s:\n",
                bool_field(o, "top_since_start") == 1 ? " (share since process start: no baseline)" : "");
        if (top && json_object_is_type(top, json_type_array) && json_object_array_length(top) > 0) {
                fprintf(f, "  %7s  %6s  %9s  %s\n", "PID", "%CPU", "RSS", "COMMAND");
                for (size_t i = 0; i < json_object_array_length(top); i++) {
                        json_object *p = json_object_array_get_idx(top, i);
                        double pid = 0, pct = 0, rss = 0;
                        char b[32];
                        (void) num_field(p, "pid", &pid);
                        (void) num_field(p, "cpu_pct", &pct);
                        (void) num_field(p, "rss_kb", &rss);
                        fprintf(f, "  %7.0f  %6.1f  %9s  ", pid, pct, bytes_text(rss * 1024, b, sizeof b));
                        put_sane(f, str_field(p, "command"));
                        fputs(bool_field(p, "new_in_window") == 1 ? "  (started in the window)\n" : "\n", f);
                }
        } else
                fputs("  none used any CPU, or /proc could not be read\n", f);

        put_label(f, "profile");
        put_sane(f, str_field(prof, "state"));
        if (str_field(prof, "reason")) {
                fputs(": ", f);
                put_sane(f, str_field(prof, "reason"));
        } else if (num_field(prof, "folded", &x)) {
                double idle = 0, stacks = 0;
                (void) num_field(prof, "idle", &idle);
                (void) num_field(prof, "stacks", &stacks);
                fprintf(f, ": %.0f samples in %.0f distinct stacks (%.0f idle left out)%s", x, stacks, idle,
                        bool_field(prof, "partial") == 1 ? ", partial (perf script ran out of time)" : "");
        }
        fputc('\n', f);
        v = field(prof, "top_stacks");
        if (v && json_object_is_type(v, json_type_array) && json_object_array_length(v) > 0) {
                fputs("hottest stacks:\n", f);
                for (size_t i = 0; i < json_object_array_length(v); i++) {
                        json_object *s = json_object_array_get_idx(v, i);
                        fputs("  ", f);
                        if (num_field(s, "pct", &x))
                                fprintf(f, "%5.1f%%  ", x);
                        put_sane(f, str_field(s, "stack"));
                        fputc('\n', f);
                }
        }
        put_label(f, "directory");
        put_sane(f, str_field(o, "dir"));
        fputc('\n', f);
        if (files && json_object_is_type(files, json_type_array)) {
                put_label(f, "files");
                for (size_t i = 0; i < json_object_array_length(files); i++) {
                        if (i > 0)
                                fputc(' ', f);
                        put_sane(f, json_object_get_string(json_object_array_get_idx(files, i)));
                }
                fputc('\n', f);
        }
        return memstream_finish(f, &buf, ret);
}

/* "1.2ms", "340µs" would need UTF-8 columns: plain ms below a second, s above */
static void put_seconds_cell(FILE *f, json_object *o, const char *key) {
        double v;
        char cell[32];

        if (!num_field(o, key, &v))
                snprintf(cell, sizeof cell, "-");
        else if (v < 1.0)
                snprintf(cell, sizeof cell, "%.2fms", v * 1000.0);
        else
                snprintf(cell, sizeof cell, "%.3fs", v);
        fprintf(f, " %9s", cell);
}

int status_text_format_stats(json_object *o, char **ret) {
        json_object *checks = field(o, "checks");
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        if (!ret)
                return -EINVAL;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        fprintf(f, "%-17s%-12s%8s %9s %9s %9s %9s %9s %9s %9s\n", "SERIES", "WINDOW", "COUNT", "MIN", "MEAN", "SD",
                "P50", "P90", "P99", "MAX");
        if (checks && json_object_is_type(checks, json_type_object)) {
                json_object_object_foreach(checks, name, series) {
                        static const char *const windows[] = { "since_start", "last_hour" };

                        for (size_t w = 0; w < 2; w++) {
                                json_object *s = field(series, windows[w]);
                                double n = 0;
                                char label[40];

                                snprintf(label, sizeof label, "check %s", name);
                                put_cell(f, label, 15);
                                fprintf(f, "%-12s", w == 0 ? "since start" : "last hour");
                                (void) num_field(s, "count", &n);
                                fprintf(f, "%8.0f", n);
                                put_seconds_cell(f, s, "min");
                                put_seconds_cell(f, s, "mean");
                                put_seconds_cell(f, s, "stddev");
                                put_seconds_cell(f, s, "p50");
                                put_seconds_cell(f, s, "p90");
                                put_seconds_cell(f, s, "p99");
                                put_seconds_cell(f, s, "max");
                                fputc('\n', f);
                        }
                }
        }
        return memstream_finish(f, &buf, ret);
}
