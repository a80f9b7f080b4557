/* state.json: parse/format round trips, strict types, truncation at every
 * byte, atomic save, corrupt files moved aside, boot id files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <time.h>

#include "state.h"

#define BOOT_A "0123abcd-4567-89ef-0123-456789abcdef"

static const char valid_doc[] =
        "{\n"
        "  \"version\": 1,\n"
        "  \"boot_id\": \"" BOOT_A "\",\n"
        "  \"state\": \"DRAINING\",\n"
        "  \"since\": 1763830812000000,\n"
        "  \"reason\": \"cpu 97.2% over 60s >= 90%\",\n"
        "  \"maintenance\": false,\n"
        "  \"maintenance_reason\": null,\n"
        "  \"held\": false,\n"
        "  \"held_reason\": null,\n"
        "  \"remediations\": [ 1763800000000000, 1763830000000000 ],\n"
        "  \"incident\": {\n"
        "    \"id\": \"20261122T170012Z-web-1\",\n"
        "    \"started\": 1763830812000000,\n"
        "    \"left_pool\": 1763830813000000,\n"
        "    \"ended\": 0,\n"
        "    \"reason\": \"cpu 97.2%\",\n"
        "    \"slack_thread\": \"1763830812.000100\",\n"
        "    \"outcome\": null\n"
        "  }\n"
        "}\n";

/* ---- helpers ---- */

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st;
        (void) flag;
        (void) ftw;
        return remove(p);
}

static void rm_rf(const char *p) {
        (void) nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char *make_tmpdir(void) {
        char *d = strdup("/tmp/test-state-XXXXXX");
        assert_non_null(d);
        assert_non_null(mkdtemp(d));
        return d;
}

static char *path_join(const char *a, const char *b) {
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", a, b) >= 0);
        return p;
}

static void write_file(const char *path, const void *data, size_t len) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t) len);
        assert_int_equal(close(fd), 0);
}

static char *read_file(const char *path, size_t *ret_len) {
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        char *buf = malloc(4 * 1024 * 1024);
        assert_non_null(buf);
        size_t n = fread(buf, 1, 4 * 1024 * 1024 - 1, f);
        buf[n] = '\0';
        fclose(f);
        if (ret_len)
                *ret_len = n;
        return buf;
}

static unsigned count_prefix(const char *dir, const char *prefix) {
        DIR *d = opendir(dir);
        struct dirent *de;
        unsigned n = 0;

        assert_non_null(d);
        while ((de = readdir(d)))
                if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
                        n++;
        closedir(d);
        return n;
}

static void fill_full(PersistentState *s) {
        persistent_state_init(s);
        memcpy(s->boot_id, BOOT_A, sizeof(BOOT_A));
        s->state = STATE_QUARANTINED;
        s->since = 1763830812123456ULL;
        s->reason = strdup("gave up: \"3\" remediations in 1h \\ é");
        s->maintenance = true;
        s->maintenance_reason = strdup("kernel upgrade / ops-123");
        s->held = true;
        s->held_reason = strdup("remediation limit reached: 2 in the last 1h");
        persistent_state_add_remediation(s, 100);
        persistent_state_add_remediation(s, 200);
        persistent_state_add_remediation(s, UINT64_MAX - 1);
        s->incident.id = strdup("20261122T170012Z-web-1");
        s->incident.started = 1;
        s->incident.left_pool = 2;
        s->incident.ended = 3;
        s->incident.reason = strdup("cpu 97.2% over 60s >= 90%");
        s->incident.slack_thread = strdup("1763830812.000100");
        s->incident.outcome = strdup("quarantined");
        assert_non_null(s->reason);
        assert_non_null(s->incident.outcome);
}

static void assert_state_equal(const PersistentState *a, const PersistentState *b) {
        assert_string_equal(a->boot_id, b->boot_id);
        assert_int_equal(a->state, b->state);
        assert_true(a->since == b->since);
        assert_true(streq_ptr(a->reason, b->reason));
        assert_int_equal(a->maintenance, b->maintenance);
        assert_true(streq_ptr(a->maintenance_reason, b->maintenance_reason));
        assert_int_equal(a->held, b->held);
        assert_true(streq_ptr(a->held_reason, b->held_reason));
        assert_int_equal(a->n_remediations, b->n_remediations);
        for (size_t i = 0; i < a->n_remediations; i++)
                assert_true(a->remediations[i] == b->remediations[i]);
        assert_true(streq_ptr(a->incident.id, b->incident.id));
        assert_true(a->incident.started == b->incident.started);
        assert_true(a->incident.left_pool == b->incident.left_pool);
        assert_true(a->incident.ended == b->incident.ended);
        assert_true(streq_ptr(a->incident.reason, b->incident.reason));
        assert_true(streq_ptr(a->incident.slack_thread, b->incident.slack_thread));
        assert_true(streq_ptr(a->incident.outcome, b->incident.outcome));
        assert_int_equal(a->incident.n_steps, b->incident.n_steps);
        for (size_t k = 0; k < a->incident.n_steps; k++) {
                assert_string_equal(a->incident.steps[k].step, b->incident.steps[k].step);
                assert_true(a->incident.steps[k].at == b->incident.steps[k].at);
                assert_true(streq_ptr(a->incident.steps[k].result, b->incident.steps[k].result));
        }
}

static void assert_fresh(const PersistentState *s) {
        assert_int_equal(s->state, STATE_BOOT);
        assert_string_equal(s->boot_id, "");
        assert_null(s->reason);
        assert_int_equal(s->n_remediations, 0);
        assert_null(s->incident.id);
        assert_false(s->maintenance);
}

/* Parse from an exactly-sized heap copy: ASan sees any read past len. */
static int parse_exact(const char *text, size_t len, PersistentState *ret, char **ret_error) {
        char *copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, text, len);
        int r = state_parse(copy, len, ret, ret_error);
        free(copy);
        return r;
}

/* ---- pure parse/format ---- */

static void test_round_trip_full(void **state) {
        (void) state;
        PersistentState a, b;
        _cleanup_(freep) char *text = NULL, *text2 = NULL, *err = NULL;

        fill_full(&a);
        assert_int_equal(state_format(&a, &text), 0);
        assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
        assert_non_null(strstr(text, "\"state\": \"QUARANTINED\""));
        assert_non_null(strstr(text, "\"version\": 1"));

        assert_int_equal(parse_exact(text, strlen(text), &b, &err), 0);
        assert_null(err);
        assert_state_equal(&a, &b);

        /* Formatting is deterministic: parse → format gives the same text. */
        assert_int_equal(state_format(&b, &text2), 0);
        assert_string_equal(text, text2);

        persistent_state_done(&a);
        persistent_state_done(&b);
        /* done leaves an init'ed struct; done again is harmless */
        assert_fresh(&a);
        persistent_state_done(&a);
        persistent_state_done(NULL);
        persistent_state_init(NULL);
}

static void test_incident_steps(void **state) {
        PersistentState a, b;
        _cleanup_(freep) char *text = NULL, *err = NULL;

        persistent_state_init(&a);
        a.incident.id = strdup("20261122T190000Z-web-1");
        assert_int_equal(incident_step_result(&a.incident, "x"), -ENOENT);
        assert_int_equal(incident_step_add(&a.incident, "restart-unit:app.service", 1000), 0);
        assert_int_equal(incident_step_result(&a.incident, "cpu still 97%"), 0);
        assert_int_equal(incident_step_add(&a.incident, "reboot-instance", 2000), 0);
        a.last_checks = strdup("{\"ok\":true,\"content\":\"pass\"}");
        assert_int_equal(state_format(&a, &text), 0);
        assert_non_null(strstr(text, "\"step\": \"restart-unit:app.service\""));
        assert_int_equal(parse_exact(text, strlen(text), &b, &err), 0);
        assert_state_equal(&a, &b);
        assert_null(b.incident.steps[1].result); /* the reboot never reported back */
        assert_string_equal(b.last_checks, a.last_checks);

        /* full: the oldest goes */
        for (int k = 0; k < INCIDENT_STEPS_MAX; k++)
                assert_int_equal(incident_step_add(&a.incident, "reboot-local", 3000 + (usec_t) k), 0);
        assert_int_equal(a.incident.n_steps, INCIDENT_STEPS_MAX);
        assert_int_equal(a.incident.steps[0].at, 3000);

        /* a bad step is an error naming it */
        persistent_state_done(&b);
        free(err);
        err = NULL;
        static const char bad[] = "{\"version\":1,\"state\":\"SERVING\",\"incident\":{\"id\":\"x\",\"steps\":[{\"at\":1}]}}";
        assert_int_equal(parse_exact(bad, strlen(bad), &b, &err), -EBADMSG);
        assert_non_null(strstr(err, "incident.steps.step"));
        persistent_state_done(&a);
}

/* The reboot intent: written before RebootInstances goes out, read back
 * by a restarted agent; absent when none, a bad boot id refused. */
static void test_reboot_requested(void **state) {
        PersistentState a, b;
        _cleanup_(freep) char *text = NULL, *none = NULL, *err = NULL;

        persistent_state_init(&a);
        assert_int_equal(state_format(&a, &none), 0);
        assert_null(strstr(none, "reboot_requested"));
        a.reboot_requested.at = 1795374237000000ULL;
        a.reboot_requested.boottime = 123456789;
        memcpy(a.reboot_requested.boot_id, BOOT_A, BOOT_ID_LEN + 1);
        assert_int_equal(state_format(&a, &text), 0);
        assert_non_null(strstr(text, "\"reboot_requested\": {"));
        assert_int_equal(parse_exact(text, strlen(text), &b, &err), 0);
        assert_int_equal(b.reboot_requested.at, a.reboot_requested.at);
        assert_int_equal(b.reboot_requested.boottime, 123456789);
        assert_string_equal(b.reboot_requested.boot_id, BOOT_A);
        persistent_state_done(&b);

        static const char bad[] = "{\"version\":1,\"state\":\"REMEDIATING\",\"reboot_requested\":{\"at\":1,"
                                  "\"boottime\":2,\"boot_id\":\"nope\"}}";
        assert_int_equal(parse_exact(bad, strlen(bad), &b, &err), -EBADMSG);
        assert_non_null(strstr(err, "reboot_requested.boot_id"));
        persistent_state_done(&a);
}

static void test_round_trip_fresh(void **state) {
        (void) state;
        PersistentState a, b;
        _cleanup_(freep) char *text = NULL;

        persistent_state_init(&a);
        assert_int_equal(state_format(&a, &text), 0);
        assert_non_null(strstr(text, "\"incident\": null"));
        assert_non_null(strstr(text, "\"reason\": null"));
        assert_non_null(strstr(text, "\"boot_id\": \"\""));
        assert_non_null(strstr(text, "\"remediations\": ["));
        assert_non_null(strstr(text, "\"maintenance\": false"));

        assert_int_equal(state_parse(text, strlen(text), &b, NULL), 0);
        assert_fresh(&b);
        assert_state_equal(&a, &b);
        persistent_state_done(&b);
}

static void test_parse_valid_doc(void **state) {
        (void) state;
        PersistentState s;

        assert_int_equal(parse_exact(valid_doc, strlen(valid_doc), &s, NULL), 0);
        assert_string_equal(s.boot_id, BOOT_A);
        assert_int_equal(s.state, STATE_DRAINING);
        assert_true(s.since == 1763830812000000ULL);
        assert_string_equal(s.reason, "cpu 97.2% over 60s >= 90%");
        assert_false(s.maintenance);
        assert_null(s.maintenance_reason);
        assert_int_equal(s.n_remediations, 2);
        assert_true(s.remediations[0] == 1763800000000000ULL);
        assert_true(s.remediations[1] == 1763830000000000ULL);
        assert_string_equal(s.incident.id, "20261122T170012Z-web-1");
        assert_true(s.incident.left_pool == 1763830813000000ULL);
        assert_true(s.incident.ended == 0);
        assert_string_equal(s.incident.slack_thread, "1763830812.000100");
        assert_null(s.incident.outcome);
        persistent_state_done(&s);
}

/* Replace `"key": <value>` in valid_doc (first occurrence at or after
 * `after`) with `"key": <bad>`. */
static char *doc_with(const char *key, const char *bad, const char *after) {
        _cleanup_(freep) char *needle = NULL;
        const char *start = after ? strstr(valid_doc, after) : valid_doc;
        assert_non_null(start);
        assert_true(asprintf(&needle, "\"%s\": ", key) >= 0);
        const char *p = strstr(start, needle);
        assert_non_null(p);
        p += strlen(needle);
        const char *end = p;
        int depth = 0;
        bool in_str = false;
        for (;; end++) {
                char c = *end;
                if (in_str) {
                        if (c == '\\')
                                end++;
                        else if (c == '"')
                                in_str = false;
                        continue;
                }
                if (c == '"')
                        in_str = true;
                else if (c == '[' || c == '{')
                        depth++;
                else if (c == ']' || c == '}') {
                        if (depth == 0)
                                break;
                        depth--;
                } else if ((c == ',' || c == '\n') && depth == 0)
                        break;
        }
        char *out = NULL;
        assert_true(asprintf(&out, "%.*s%s%s", (int) (p - valid_doc), valid_doc, bad, end) >= 0);
        return out;
}

static void test_field_type_errors(void **state) {
        (void) state;
        static const struct {
                const char *key, *bad, *after, *field;
        } cases[] = {
                { "version", "\"1\"", NULL, "version" },
                { "version", "1.0", NULL, "version" },
                { "version", "null", NULL, "version" },
                { "version", "0", NULL, "version" },
                { "version", "2", NULL, "version" },
                { "boot_id", "5", NULL, "boot_id" },
                { "boot_id", "\"0123abcd\"", NULL, "boot_id" },
                { "boot_id", "\"0123abcd-4567-89ef-0123-456789abcdeg\"", NULL, "boot_id" },
                { "boot_id", "\"0123abcd-4567-89ef-0123-456789abcdef0\"", NULL, "boot_id" },
                { "boot_id", "\"0123abcd04567-89ef-0123-456789abcdef\"", NULL, "boot_id" },
                { "state", "3", NULL, "state" },
                { "state", "\"serving\"", NULL, "state" },
                { "state", "\"NOPE\"", NULL, "state" },
                { "state", "null", NULL, "state" },
                { "state", "\"SERVING\\u0000X\"", NULL, "state" },
                { "since", "\"1763830812000000\"", NULL, "since" },
                { "since", "1.5", NULL, "since" },
                { "since", "-1", NULL, "since" },
                { "since", "true", NULL, "since" },
                { "since", "[]", NULL, "since" },
                { "reason", "5", NULL, "reason" },
                { "reason", "false", NULL, "reason" },
                { "reason", "{}", NULL, "reason" },
                { "reason", "\"a\\u0000b\"", NULL, "reason" },
                { "maintenance", "\"false\"", NULL, "maintenance" },
                { "maintenance", "0", NULL, "maintenance" },
                { "maintenance_reason", "1", NULL, "maintenance_reason" },
                { "held", "\"true\"", NULL, "held" },
                { "held", "1", NULL, "held" },
                { "held_reason", "[]", NULL, "held_reason" },
                { "remediations", "\"x\"", NULL, "remediations" },
                { "remediations", "{}", NULL, "remediations" },
                { "remediations", "[ 1, \"2\" ]", NULL, "remediations" },
                { "remediations", "[ -1 ]", NULL, "remediations" },
                { "remediations", "[ 1.5 ]", NULL, "remediations" },
                { "remediations", "[ null ]", NULL, "remediations" },
                { "incident", "5", NULL, "incident" },
                { "incident", "\"x\"", NULL, "incident" },
                { "incident", "[]", NULL, "incident" },
                { "id", "5", "\"incident\"", "incident.id" },
                { "started", "\"1\"", "\"incident\"", "incident.started" },
                { "left_pool", "-5", "\"incident\"", "incident.left_pool" },
                { "ended", "false", "\"incident\"", "incident.ended" },
                { "reason", "7", "\"incident\"", "incident.reason" },
                { "slack_thread", "1763830812.000100", "\"incident\"", "incident.slack_thread" },
                { "outcome", "[]", "\"incident\"", "incident.outcome" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(freep) char *doc = doc_with(cases[i].key, cases[i].bad, cases[i].after);
                _cleanup_(freep) char *err = NULL;
                PersistentState s = { .state = 99 };

                int r = parse_exact(doc, strlen(doc), &s, &err);
                if (r != -EBADMSG)
                        print_error("case %zu (%s = %s): r=%d\n%s\n", i, cases[i].field, cases[i].bad, r, doc);
                assert_int_equal(r, -EBADMSG);
                assert_non_null(err);
                /* The message starts with the field's dotted name. */
                if (strncmp(err, cases[i].field, strlen(cases[i].field)) != 0 ||
                    err[strlen(cases[i].field)] != ':')
                        print_error("case %zu: error \"%s\" does not name %s\n", i, err, cases[i].field);
                assert_true(strncmp(err, cases[i].field, strlen(cases[i].field)) == 0);
                assert_int_equal(err[strlen(cases[i].field)], ':');
                /* ret untouched on failure */
                assert_int_equal(s.state, 99);
        }

        /* Sanity of the test helper: replacing with a good value parses. */
        _cleanup_(freep) char *ok = doc_with("since", "42", NULL);
        PersistentState s;
        assert_int_equal(state_parse(ok, strlen(ok), &s, NULL), 0);
        assert_true(s.since == 42);
        persistent_state_done(&s);

        /* Without an error out-parameter, still -EBADMSG. */
        _cleanup_(freep) char *bad = doc_with("since", "\"x\"", NULL);
        assert_int_equal(state_parse(bad, strlen(bad), &s, NULL), -EBADMSG);
}

static void test_missing_and_null_fields(void **state) {
        (void) state;
        PersistentState s;
        _cleanup_(freep) char *err = NULL;

        /* Only version and state are required. */
        static const char minimal[] = "{\"version\":1,\"state\":\"SERVING\"}";
        assert_int_equal(state_parse(minimal, strlen(minimal), &s, NULL), 0);
        assert_int_equal(s.state, STATE_SERVING);
        assert_string_equal(s.boot_id, "");
        assert_int_equal(s.n_remediations, 0);
        assert_null(s.incident.id);
        persistent_state_done(&s);

        static const char nulls[] =
                "{\"version\":1,\"state\":\"SERVING\",\"boot_id\":null,\"reason\":null,"
                "\"maintenance\":null,\"remediations\":null,\"incident\":null,\"since\":null}";
        assert_int_equal(state_parse(nulls, strlen(nulls), &s, NULL), 0);
        assert_int_equal(s.state, STATE_SERVING);
        persistent_state_done(&s);

        static const char no_version[] = "{\"state\":\"SERVING\"}";
        assert_int_equal(state_parse(no_version, strlen(no_version), &s, &err), -EBADMSG);
        assert_string_equal(err, "version: missing");
        free(err);
        err = NULL;

        static const char no_state[] = "{\"version\":1}";
        assert_int_equal(state_parse(no_state, strlen(no_state), &s, &err), -EBADMSG);
        assert_string_equal(err, "state: missing");

        /* "" boot id is allowed */
        static const char empty_boot[] = "{\"version\":1,\"state\":\"BOOT\",\"boot_id\":\"\"}";
        assert_int_equal(state_parse(empty_boot, strlen(empty_boot), &s, NULL), 0);
        assert_string_equal(s.boot_id, "");
        persistent_state_done(&s);
}

static void test_root_and_syntax(void **state) {
        (void) state;
        static const char *const bad[] = {
                "[]", "1", "null", "\"x\"", "true", "", " ", "{", "}",
                "{\"version\":1,\"state\":\"BOOT\"} x",
                "{\"version\":1,\"state\":\"BOOT\"}{}",
                "{\"version\":1,\"state\":\"BOOT\",}",
                "{'version':1,'state':'BOOT'}",
                "{\"version\":1,\"state\":\"BOOT\"} /* c */",
        };
        PersistentState s = { .state = 99 };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(freep) char *err = NULL;
                int r = parse_exact(bad[i], strlen(bad[i]), &s, &err);
                if (r != -EBADMSG)
                        print_error("\"%s\" gave %d\n", bad[i], r);
                assert_int_equal(r, -EBADMSG);
                assert_non_null(err);
                assert_int_equal(s.state, 99);
        }

        /* Trailing whitespace is fine. */
        static const char ws[] = "{\"version\":1,\"state\":\"BOOT\"}  \n\t\r\n";
        assert_int_equal(parse_exact(ws, strlen(ws), &s, NULL), 0);
        persistent_state_done(&s);

        /* A NUL right after the document, inside len, is garbage. */
        static const char nul[] = "{\"version\":1,\"state\":\"BOOT\"}\0";
        s.state = 99;
        assert_int_equal(parse_exact(nul, sizeof(nul), &s, NULL), -EBADMSG);
        static const char nul_mid[] = "{\"version\":1,\0\"state\":\"BOOT\"}";
        assert_int_equal(parse_exact(nul_mid, sizeof(nul_mid) - 1, &s, NULL), -EBADMSG);
        assert_int_equal(s.state, 99);

        /* Only the first len bytes count: a valid doc cut short fails even
         * though the bytes after len would complete it. */
        assert_int_equal(state_parse(valid_doc, strlen(valid_doc) - 3, &s, NULL), -EBADMSG);

        assert_int_equal(state_parse(NULL, 5, &s, NULL), -EINVAL);
        assert_int_equal(state_parse(valid_doc, strlen(valid_doc), NULL, NULL), -EINVAL);
}

static void test_truncated_every_offset(void **state) {
        (void) state;
        const size_t len = strlen(valid_doc);
        const char *last_brace = strrchr(valid_doc, '}');
        const size_t complete = (size_t) (last_brace - valid_doc) + 1;
        unsigned ok = 0;

        for (size_t i = 0; i < len; i++) {
                PersistentState s = { .state = 99 };
                char *err = NULL;
                int r = parse_exact(valid_doc, i, &s, &err);

                if (i < complete) {
                        if (r != -EBADMSG)
                                print_error("prefix of %zu bytes: r=%d\n", i, r);
                        assert_int_equal(r, -EBADMSG);
                        assert_non_null(err);
                        assert_int_equal(s.state, 99);
                } else {
                        assert_int_equal(r, 0);
                        assert_null(err);
                        assert_int_equal(s.state, STATE_DRAINING);
                        persistent_state_done(&s);
                        ok++;
                }
                free(err);
        }
        assert_int_equal(ok, len - complete);
}

static void test_version_2_refused(void **state) {
        (void) state;
        _cleanup_(freep) char *doc = doc_with("version", "2", NULL);
        _cleanup_(freep) char *err = NULL;
        PersistentState s;

        assert_int_equal(state_parse(doc, strlen(doc), &s, &err), -EBADMSG);
        assert_non_null(strstr(err, "version"));
        assert_non_null(strstr(err, "newer"));
}

static void test_unknown_fields_ignored(void **state) {
        (void) state;
        PersistentState s;
        static const char doc[] =
                "{\"future\":{\"a\":[1,2,{\"b\":null}]},\"version\":1,\"state\":\"HOLDING\","
                "\"incident\":{\"id\":\"x\",\"severity\":\"high\",\"nested\":[[]]},\"zzz\":\"SERVING\"}";

        assert_int_equal(parse_exact(doc, strlen(doc), &s, NULL), 0);
        assert_int_equal(s.state, STATE_HOLDING);
        assert_string_equal(s.incident.id, "x");
        persistent_state_done(&s);
}

static void test_remediations_keep_newest(void **state) {
        (void) state;
        PersistentState s;
        char *doc = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&doc, &size);

        assert_non_null(f);
        /* 40 entries, unsorted: 1..40 interleaved from both ends. */
        fputs("{\"version\":1,\"state\":\"BOOT\",\"remediations\":[", f);
        for (int i = 0; i < 40; i++)
                fprintf(f, "%s%d", i ? "," : "", i % 2 ? 40 - i / 2 : 1 + i / 2);
        fputs("]}", f);
        assert_int_equal(fclose(f), 0);

        assert_int_equal(state_parse(doc, size, &s, NULL), 0);
        free(doc);
        assert_int_equal(s.n_remediations, STATE_REMEDIATIONS_MAX);
        for (size_t i = 0; i < STATE_REMEDIATIONS_MAX; i++)
                assert_true(s.remediations[i] == 40 - STATE_REMEDIATIONS_MAX + 1 + i);

        /* Adding when full drops the oldest. */
        persistent_state_add_remediation(&s, 1000);
        assert_int_equal(s.n_remediations, STATE_REMEDIATIONS_MAX);
        assert_true(s.remediations[0] == 40 - STATE_REMEDIATIONS_MAX + 2);
        assert_true(s.remediations[STATE_REMEDIATIONS_MAX - 1] == 1000);
        persistent_state_done(&s);

        persistent_state_init(&s);
        persistent_state_add_remediation(&s, 5);
        assert_int_equal(s.n_remediations, 1);
        assert_true(s.remediations[0] == 5);
        persistent_state_add_remediation(NULL, 5);
}

static void test_format_refuses_invalid(void **state) {
        (void) state;
        PersistentState s;
        char *text = (char *) 0x1;

        persistent_state_init(&s);
        s.state = _STATE_MAX;
        assert_int_equal(state_format(&s, &text), -EINVAL);
        s.state = STATE_SERVING;
        memcpy(s.boot_id, "not-a-boot-id", 14);
        assert_int_equal(state_format(&s, &text), -EINVAL);
        s.boot_id[0] = '\0';
        s.n_remediations = STATE_REMEDIATIONS_MAX + 1;
        assert_int_equal(state_format(&s, &text), -EINVAL);
        assert_ptr_equal(text, (char *) 0x1);
        assert_int_equal(state_format(NULL, &text), -EINVAL);
}

/* ---- load/save ---- */

static void test_save_load(void **state) {
        (void) state;
        char *dir = make_tmpdir();
        _cleanup_(freep) char *path = path_join(dir, "state.json");
        char *moved = (char *) 0x1;
        PersistentState a, b;
        struct stat st;

        /* Missing file: fresh state, nothing moved. */
        assert_int_equal(state_load(dir, &b, &moved, NULL), 0);
        assert_null(moved);
        assert_fresh(&b);

        fill_full(&a);
        mode_t old = umask(0);  /* a careless umask must not widen the file */
        int r = state_save(dir, &a);
        umask(old);
        assert_int_equal(r, 0);

        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(count_prefix(dir, "state.json.tmp-"), 0);

        assert_int_equal(state_load(dir, &b, &moved, NULL), 0);
        assert_null(moved);
        assert_state_equal(&a, &b);
        persistent_state_done(&b);

        /* Overwrite with a different state: replaced, still 0600, no temp. */
        a.state = STATE_SERVING;
        free(a.reason);
        a.reason = NULL;
        assert_int_equal(state_save(dir, &a), 0);
        assert_int_equal(state_load(dir, &b, NULL, NULL), 0);
        assert_int_equal(b.state, STATE_SERVING);
        assert_null(b.reason);
        persistent_state_done(&b);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(count_prefix(dir, "state.json.tmp-"), 0);
        assert_int_equal(count_prefix(dir, ""), 3); /* ".", "..", state.json */

        persistent_state_done(&a);
        rm_rf(dir);
        free(dir);
}

static void check_moved_aside(const char *content, size_t len) {
        char *dir = make_tmpdir();
        _cleanup_(freep) char *path = path_join(dir, "state.json");
        _cleanup_(freep) char *moved = NULL, *prefix = NULL;
        PersistentState s;
        time_t before = time(NULL);

        write_file(path, content, len);
        assert_int_equal(state_load(dir, &s, &moved, NULL), 0);
        assert_fresh(&s);
        assert_non_null(moved);

        assert_true(asprintf(&prefix, "%s.corrupt-", path) >= 0);
        assert_true(strncmp(moved, prefix, strlen(prefix)) == 0);
        long long secs = strtoll(moved + strlen(prefix), NULL, 10);
        assert_true(secs >= (long long) before && secs <= (long long) time(NULL));

        /* Old name gone, content preserved under the new one. */
        assert_int_equal(access(path, F_OK), -1);
        size_t got_len;
        char *got = read_file(moved, &got_len);
        assert_int_equal(got_len, len);
        assert_memory_equal(got, content, len);
        free(got);

        /* The next load finds nothing and starts fresh without moving. */
        free(moved);
        moved = NULL;
        assert_int_equal(state_load(dir, &s, &moved, NULL), 0);
        assert_null(moved);

        rm_rf(dir);
        free(dir);
}

static void test_corrupt_moved_aside(void **state) {
        (void) state;
        static const char garbage[] = "this is not json\n";
        check_moved_aside(garbage, strlen(garbage));

        /* truncated on disk */
        check_moved_aside(valid_doc, strlen(valid_doc) / 2);

        /* valid JSON with a type error */
        static const char typed[] = "{\"version\":1,\"state\":\"BOOT\",\"since\":\"x\"}";
        check_moved_aside(typed, strlen(typed));

        /* version 2: not ours to read */
        static const char v2[] = "{\"version\":2,\"state\":\"BOOT\"}";
        check_moved_aside(v2, strlen(v2));

        /* empty file */
        check_moved_aside("", 0);

        /* binary */
        static const char bin[] = { 0, 1, 2, (char) 0xff, '{', 0 };
        check_moved_aside(bin, sizeof(bin));
}

static void test_oversized_moved_aside(void **state) {
        (void) state;
        /* Valid JSON, but padded past 1 MiB: refused before parsing. */
        size_t len = 1024 * 1024 + 64;
        char *big = malloc(len);
        assert_non_null(big);
        static const char doc[] = "{\"version\":1,\"state\":\"SERVING\"}";
        memset(big, ' ', len);
        memcpy(big, doc, strlen(doc));
        check_moved_aside(big, len);

        /* Exactly 1 MiB still loads. */
        char *dir = make_tmpdir();
        _cleanup_(freep) char *path = path_join(dir, "state.json");
        _cleanup_(freep) char *moved = NULL;
        PersistentState s;
        write_file(path, big, 1024 * 1024);
        assert_int_equal(state_load(dir, &s, &moved, NULL), 0);
        assert_null(moved);
        assert_int_equal(s.state, STATE_SERVING);
        persistent_state_done(&s);
        rm_rf(dir);
        free(dir);
        free(big);
}

static void test_corrupt_name_taken(void **state) {
        (void) state;
        char *dir = make_tmpdir();
        _cleanup_(freep) char *path = path_join(dir, "state.json");
        _cleanup_(freep) char *moved = NULL;
        PersistentState s;
        time_t t0 = time(NULL);

        /* Occupy the names for the next few seconds, so the load must pick
         * a "-N" suffix and must not clobber any of them. */
        for (int k = 0; k < 3; k++) {
                _cleanup_(freep) char *p = NULL;
                assert_true(asprintf(&p, "%s.corrupt-%lld", path, (long long) t0 + k) >= 0);
                write_file(p, "old", 3);
        }
        write_file(path, "garbage", 7);

        assert_int_equal(state_load(dir, &s, &moved, NULL), 0);
        assert_non_null(moved);
        assert_int_equal(strcmp(moved + strlen(moved) - 2, "-1"), 0);

        for (int k = 0; k < 3; k++) {
                _cleanup_(freep) char *p = NULL;
                assert_true(asprintf(&p, "%s.corrupt-%lld", path, (long long) t0 + k) >= 0);
                char *c = read_file(p, NULL);
                assert_string_equal(c, "old");
                free(c);
        }
        char *c = read_file(moved, NULL);
        assert_string_equal(c, "garbage");
        free(c);

        rm_rf(dir);
        free(dir);
}

static void test_load_not_regular(void **state) {
        (void) state;
        char *dir = make_tmpdir();
        _cleanup_(freep) char *path = path_join(dir, "state.json");
        PersistentState s = { .state = 99 };
        char *moved = (char *) 0x1;

        assert_int_equal(mkdir(path, 0700), 0);
        assert_true(state_load(dir, &s, &moved, NULL) < 0);
        assert_int_equal(s.state, 99);
        assert_ptr_equal(moved, (char *) 0x1);
        /* not moved aside: it is not a corrupt file, it is a misconfiguration */
        assert_int_equal(access(path, F_OK), 0);

        rm_rf(dir);
        free(dir);
}

static void test_failed_save_keeps_old(void **state) {
        (void) state;
        char *dir = make_tmpdir();
        _cleanup_(freep) char *path = path_join(dir, "state.json");
        PersistentState a, b;

        fill_full(&a);
        assert_int_equal(state_save(dir, &a), 0);
        size_t old_len;
        char *old = read_file(path, &old_len);

        /* state_dir is a regular file: no temp file can be created in it. */
        b = a;
        b.state = STATE_SERVING;
        assert_true(state_save(path, &b) < 0);

        size_t now_len;
        char *now = read_file(path, &now_len);
        assert_int_equal(now_len, old_len);
        assert_memory_equal(now, old, old_len);
        free(now);
        assert_int_equal(count_prefix(dir, "state.json.tmp-"), 0);

        /* Missing state dir. */
        _cleanup_(freep) char *missing = path_join(dir, "nope");
        assert_int_equal(state_save(missing, &b), -ENOENT);
        assert_int_equal(count_prefix(dir, "state.json.tmp-"), 0);

        persistent_state_done(&a);
        free(old);
        rm_rf(dir);
        free(dir);
}

static void test_failed_rename_removes_temp(void **state) {
        (void) state;
        char *dir = make_tmpdir();
        _cleanup_(freep) char *path = path_join(dir, "state.json");
        _cleanup_(freep) char *inner = path_join(path, "keep");
        PersistentState a;

        /* state.json is a non-empty directory: the temp file is written,
         * then rename() fails; the temp must be gone and the directory
         * untouched. */
        assert_int_equal(mkdir(path, 0700), 0);
        write_file(inner, "x", 1);

        persistent_state_init(&a);
        a.state = STATE_SERVING;
        assert_true(state_save(dir, &a) < 0);
        assert_int_equal(count_prefix(dir, "state.json.tmp-"), 0);
        assert_int_equal(access(inner, F_OK), 0);

        /* A state that cannot be formatted touches nothing. */
        a.state = _STATE_MAX;
        assert_int_equal(state_save(dir, &a), -EINVAL);
        assert_int_equal(count_prefix(dir, "state.json.tmp-"), 0);

        rm_rf(dir);
        free(dir);
}

/* ---- boot id ---- */

static void test_boot_id(void **state) {
        (void) state;
        char *dir = make_tmpdir();
        _cleanup_(freep) char *p = path_join(dir, "boot_id");
        char id[BOOT_ID_LEN + 1];
        static const struct {
                const char *content;
                int want;
        } cases[] = {
                { BOOT_A "\n", 0 },
                { BOOT_A, 0 },
                { "0123ABCD-4567-89EF-0123-456789ABCDEF\n", 0 },
                { "", -EBADMSG },
                { "\n", -EBADMSG },
                { "0123abcd-4567-89ef-0123-456789abcde\n", -EBADMSG },      /* short */
                { "0123abcd-4567-89ef-0123-456789abcdefa\n", -EBADMSG },    /* long */
                { "0123abcd-4567-89ef-0123-456789abcdeg\n", -EBADMSG },     /* non-hex */
                { "0123abcd 4567-89ef-0123-456789abcdef\n", -EBADMSG },     /* no dash */
                { "0123abcd4567-89ef-0123-456789abcdef-\n", -EBADMSG },     /* dash misplaced */
                { BOOT_A "\n\n", -EBADMSG },
                { BOOT_A " ", -EBADMSG },
                { BOOT_A "\r\n", -EBADMSG },
                { " " BOOT_A, -EBADMSG },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                write_file(p, cases[i].content, strlen(cases[i].content));
                memset(id, 'Z', sizeof(id));
                int r = boot_id_read(p, id);
                if (r != cases[i].want)
                        print_error("case %zu \"%s\": r=%d\n", i, cases[i].content, r);
                assert_int_equal(r, cases[i].want);
                if (r == 0) {
                        assert_int_equal(strlen(id), BOOT_ID_LEN);
                        assert_memory_equal(id, cases[i].content, BOOT_ID_LEN);
                } else
                        assert_int_equal(id[0], 'Z'); /* untouched */
        }

        _cleanup_(freep) char *missing = path_join(dir, "missing");
        assert_int_equal(boot_id_read(missing, id), -ENOENT);

        /* The real one, when there is one. */
        if (access("/proc/sys/kernel/random/boot_id", R_OK) == 0) {
                assert_int_equal(boot_id_read("/proc/sys/kernel/random/boot_id", id), 0);
                assert_int_equal(strlen(id), BOOT_ID_LEN);
        }

        rm_rf(dir);
        free(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip_full),
                cmocka_unit_test(test_incident_steps),
                cmocka_unit_test(test_reboot_requested),
                cmocka_unit_test(test_round_trip_fresh),
                cmocka_unit_test(test_parse_valid_doc),
                cmocka_unit_test(test_field_type_errors),
                cmocka_unit_test(test_missing_and_null_fields),
                cmocka_unit_test(test_root_and_syntax),
                cmocka_unit_test(test_truncated_every_offset),
                cmocka_unit_test(test_version_2_refused),
                cmocka_unit_test(test_unknown_fields_ignored),
                cmocka_unit_test(test_remediations_keep_newest),
                cmocka_unit_test(test_format_refuses_invalid),
                cmocka_unit_test(test_save_load),
                cmocka_unit_test(test_corrupt_moved_aside),
                cmocka_unit_test(test_oversized_moved_aside),
                cmocka_unit_test(test_corrupt_name_taken),
                cmocka_unit_test(test_load_not_regular),
                cmocka_unit_test(test_failed_save_keeps_old),
                cmocka_unit_test(test_failed_rename_removes_temp),
                cmocka_unit_test(test_boot_id),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
