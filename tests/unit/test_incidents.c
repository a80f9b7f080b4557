/* incidents.c: the /proc/loadavg and /proc/pressure/cpu parsers, incident
 * ids, the retention rule, listing and pruning a real directory; and the
 * text monkeyctl prints for incidents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>

#include "incidents.h"
#include "status_text.h"

/* Parsers get a copy sized exactly, so ASan catches any read past it. */
static char *exact_copy(const char *text, size_t *ret_len) {
        size_t len = strlen(text);
        char *copy = malloc(len ?: 1);

        assert_non_null(copy);
        memcpy(copy, text, len);
        *ret_len = len;
        return copy;
}

static int loadavg_n(const char *text, LoadAvg *ret) {
        size_t len;
        char *copy = exact_copy(text, &len);
        int r = loadavg_parse(copy, len, ret);

        free(copy);
        return r;
}

static int psi_n(const char *text, Psi *ret) {
        size_t len;
        char *copy = exact_copy(text, &len);
        int r = psi_parse(copy, len, ret);

        free(copy);
        return r;
}

static void test_loadavg(void **state) {
        LoadAvg l = { .avg1 = -1 };
        static const char *const bad[] = {
                "", "0.52 0.58 0.59 3/812 12345", /* no newline: cut */
                "0.52 0.58\n", "0.52 0.58 0.59\n", "0.52 0.58 0.59 3812 1\n", "0.52 0.58 0.59 /812 1\n",
                "-1 0.58 0.59 3/812 1\n", "0.52 x 0.59 3/812 1\n", "0.52 0.58 0.59 3/ 1\n", "1e3 0 0 1/1 1\n",
                "0.52 0.58 0.59 99999999999999999999/1 1\n",
        };

        assert_int_equal(loadavg_n("0.52 0.58 0.59 3/812 12345\n", &l), 0);
        assert_true(l.avg1 == 0.52 && l.avg5 == 0.58 && l.avg15 == 0.59);
        assert_int_equal(l.running, 3);
        assert_int_equal(l.total, 812);
        assert_int_equal(loadavg_n("12.00 3.5 0 1/1 1\n", &l), 0);
        assert_true(l.avg1 == 12.0 && l.avg5 == 3.5 && l.avg15 == 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                LoadAvg keep = { .avg1 = 42 };
                if (loadavg_n(bad[i], &keep) != -EBADMSG) {
                        print_error("accepted: '%s'\n", bad[i]);
                        fail();
                }
                assert_true(keep.avg1 == 42); /* ret untouched on error */
        }
}

static void test_psi(void **state) {
        Psi p;
        static const char *const bad[] = {
                "",
                "some avg10=1.00 avg60=2.00 avg300=3.00 total=4", /* cut */
                "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", /* no "some" */
                "some avg10=1.00 avg60=2.00 total=4\n",
                "some avg10=1.00 avg60=2.00 avg300=3.00 total=4 extra=1\n",
                "some avg10=x avg60=2.00 avg300=3.00 total=4\n",
                "some avg60=2.00 avg10=1.00 avg300=3.00 total=4\n",
                "some avg10=1.00 avg60=2.00 avg300=3.00 total=-4\n",
                "some avg10=1.00 avg60=2.00 avg300=3.00 total=4\nsome avg10=1.00 avg60=2.00 avg300=3.00 total=4\n",
                "other avg10=1.00 avg60=2.00 avg300=3.00 total=4\n",
        };

        assert_int_equal(psi_n("some avg10=63.20 avg60=20.10 avg300=5.00 total=123456789\n", &p), 0);
        assert_true(p.some.avg10 == 63.2 && p.some.avg60 == 20.1 && p.some.avg300 == 5.0);
        assert_int_equal(p.some.total_usec, 123456789);
        assert_false(p.has_full);
        assert_int_equal(psi_n("some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n"
                               "full avg10=0.50 avg60=0.00 avg300=0.00 total=7\n",
                               &p),
                         0);
        assert_true(p.has_full && p.full.avg10 == 0.5 && p.full.total_usec == 7);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (psi_n(bad[i], &p) != -EBADMSG) {
                        print_error("accepted: '%s'\n", bad[i]);
                        fail();
                }
}

static void test_id_valid(void **state) {
        char longest[INCIDENT_ID_MAX + 2];

        assert_true(incident_id_valid("20261122T170012Z-web-1"));
        assert_true(incident_id_valid("a.b_c-D9"));
        assert_false(incident_id_valid(NULL));
        assert_false(incident_id_valid(""));
        assert_false(incident_id_valid("."));
        assert_false(incident_id_valid(".."));
        assert_false(incident_id_valid(".hidden"));
        assert_false(incident_id_valid("../etc"));
        assert_false(incident_id_valid("a/b"));
        assert_false(incident_id_valid("a b"));
        assert_false(incident_id_valid("caf\xc3\xa9"));
        memset(longest, 'a', sizeof longest);
        longest[INCIDENT_ID_MAX] = '\0';
        assert_true(incident_id_valid(longest));
        longest[INCIDENT_ID_MAX] = 'a';
        longest[INCIDENT_ID_MAX + 1] = '\0';
        assert_false(incident_id_valid(longest));
}

static void test_retention(void **state) {
        IncidentEntry e[5] = {
                { "20260101T000000Z-h", 100 }, { "20260102T000000Z-h", 100 }, { "20260103T000000Z-h", 5000 },
                { "20260104T000000Z-h", 100 }, { "20260105T000000Z-h", 100 },
        };
        bool rm[5];

        /* by count: the oldest go first */
        assert_int_equal(incidents_retention(e, 5, 3, UINT64_MAX, NULL, rm), 2);
        assert_true(rm[0] && rm[1] && !rm[2] && !rm[3] && !rm[4]);
        /* within both: nothing */
        assert_int_equal(incidents_retention(e, 5, 10, 1000000, NULL, rm), 0);
        /* by bytes: oldest first until the rest fit (5400 -> the big third one must go too) */
        assert_int_equal(incidents_retention(e, 5, 10, 1000, NULL, rm), 3);
        assert_true(rm[0] && rm[1] && rm[2] && !rm[3] && !rm[4]);
        /* the current incident is never removed, even when it is the oldest */
        assert_int_equal(incidents_retention(e, 5, 1, UINT64_MAX, "20260101T000000Z-h", rm), 3);
        assert_true(!rm[0] && rm[1] && rm[2] && rm[3] && !rm[4]);
        /* the newest always stays, whatever the budget */
        assert_int_equal(incidents_retention(e, 5, 1, 0, NULL, rm), 4);
        assert_true(rm[0] && rm[1] && rm[2] && rm[3] && !rm[4]);
        assert_int_equal(incidents_retention(e, 1, 1, 0, NULL, rm), 0);
        assert_false(rm[0]);
        assert_int_equal(incidents_retention(e, 0, 1, 0, NULL, rm), 0);
}

static void write_file(const char *dir, const char *id, const char *name, size_t size) {
        char path[512];
        int fd;

        snprintf(path, sizeof path, "%s/incidents/%s", dir, id);
        (void) mkdir(path, 0700);
        snprintf(path, sizeof path, "%s/incidents/%s/%s", dir, id, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        for (size_t i = 0; i < size; i++)
                assert_int_equal(write(fd, "x", 1), 1);
        close(fd);
}

static void test_list_and_prune(void **state) {
        char dir[] = "/tmp/monkey-incidents-XXXXXX", path[512];
        IncidentEntry *e = NULL;
        size_t n = 0, removed = 0;
        char *text = NULL, *p = NULL;
        size_t len;

        assert_non_null(mkdtemp(dir));
        /* no incidents directory yet */
        assert_int_equal(incidents_list(dir, &e, &n), 0);
        assert_int_equal(n, 0);
        free(e);

        assert_int_equal(incident_write(dir, "20260103T000000Z-h", INCIDENT_SUMMARY, "{\"a\":1}", 7), 0);
        write_file(dir, "20260101T000000Z-h", "summary.json", 10);
        write_file(dir, "20260102T000000Z-h", "stacks.folded", 300);
        write_file(dir, "20260102T000000Z-h", "summary.json", 20);
        write_file(dir, ".not-an-incident", "x", 1);
        snprintf(path, sizeof path, "%s/incidents/stray-file", dir);
        close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));

        assert_int_equal(incidents_list(dir, &e, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(e[0].id, "20260101T000000Z-h");
        assert_int_equal(e[0].bytes, 10);
        assert_string_equal(e[1].id, "20260102T000000Z-h");
        assert_int_equal(e[1].bytes, 320);
        assert_string_equal(e[2].id, "20260103T000000Z-h");
        assert_int_equal(e[2].bytes, 7);
        free(e);

        assert_int_equal(incident_read(dir, "20260103T000000Z-h", INCIDENT_SUMMARY, 100, &text, &len), 0);
        assert_string_equal(text, "{\"a\":1}");
        free(text);
        assert_int_equal(incident_read(dir, "20260103T000000Z-h", INCIDENT_SUMMARY, 3, &text, &len), -EFBIG);
        assert_int_equal(incident_read(dir, "../incidents", INCIDENT_SUMMARY, 100, &text, &len), -EINVAL);
        assert_int_equal(incident_read(dir, "20260103T000000Z-h", "../x", 100, &text, &len), -EINVAL);
        assert_int_equal(incident_read(dir, "20260109T000000Z-h", INCIDENT_SUMMARY, 100, &text, &len), -ENOENT);
        assert_int_equal(incident_dir_path(dir, "a/b", &p), -EINVAL);

        /* keep 2, bytes 100: the 320-byte one and the oldest go, the current (oldest kept) stays */
        assert_int_equal(incidents_prune(dir, 2, 100, "20260101T000000Z-h", &removed), 0);
        assert_int_equal(removed, 1);
        assert_int_equal(incidents_list(dir, &e, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(e[0].id, "20260101T000000Z-h");
        assert_string_equal(e[1].id, "20260103T000000Z-h");
        free(e);
        snprintf(path, sizeof path, "%s/incidents/20260102T000000Z-h", dir);
        assert_int_equal(access(path, F_OK), -1);
        /* what is not an incident is left alone */
        snprintf(path, sizeof path, "%s/incidents/.not-an-incident/x", dir);
        assert_int_equal(access(path, F_OK), 0);

        assert_int_equal(incidents_prune(dir, 1, UINT64_MAX, NULL, &removed), 0);
        assert_int_equal(removed, 1);
        assert_int_equal(incidents_list(dir, &e, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(e[0].id, "20260103T000000Z-h");
        free(e);

        snprintf(path, sizeof path, "rm -rf '%s'", dir);
        assert_int_equal(system(path), 0);
}

static void test_text_incidents(void **state) {
        json_object *o = json_tokener_parse(
                "{\"dir\":\"/var/lib/monkeyd/incidents\",\"bytes\":49152,\"incidents\":["
                "{\"id\":\"20261123T024501Z-web-1\",\"bytes\":49152,\"started\":\"2026-11-23T02:45:01Z\","
                "\"reason\":\"cpu 97%\",\"top_command\":\"python3 burn.py\\u001b[31m\",\"profile\":\"done\"},"
                "{\"id\":\"20261122T010000Z-web-1\",\"error\":\"incident x: not JSON\"},"
                "\"garbage\"]}");
        json_object *empty = json_tokener_parse("{\"dir\":\"/d\",\"incidents\":[]}");
        char *text = NULL;

        assert_non_null(o);
        assert_int_equal(status_text_format_incidents(o, &text), 0);
        assert_non_null(strstr(text, "INCIDENT"));
        assert_non_null(strstr(text, "20261123T024501Z-web-1"));
        assert_non_null(strstr(text, "2026-11-23 02:45:01 UTC"));
        assert_non_null(strstr(text, "48 KiB"));
        assert_non_null(strstr(text, "python3 burn.py?[31m")); /* no escape reaches the terminal */
        assert_null(strchr(text, '\x1b'));
        assert_non_null(strstr(text, "incident x: not JSON"));
        assert_non_null(strstr(text, "3 incident(s), 48 KiB in /var/lib/monkeyd/incidents"));
        free(text);
        assert_int_equal(status_text_format_incidents(empty, &text), 0);
        assert_string_equal(text, "no incidents kept in /d\n");
        free(text);
        assert_int_equal(status_text_format_incidents(NULL, &text), 0);
        free(text);
        json_object_put(o);
        json_object_put(empty);
}

static void test_text_incident(void **state) {
        json_object *o = json_tokener_parse(
                "{\"id\":\"I1\",\"host\":\"web-1\",\"started\":\"2026-11-23T02:45:01Z\",\"reason\":\"cpu 97%\","
                "\"cpus\":2,\"window_sec\":60,"
                "\"cpu_window\":{\"busy_pct\":97.1,\"user_pct\":90.2,\"system_pct\":6.9,\"irq_pct\":0,"
                "\"iowait_pct\":0,\"steal_pct\":1.5},"
                "\"loadavg\":{\"1m\":2.31,\"5m\":1.1,\"15m\":0.52,\"runnable\":3,\"tasks\":412},"
                "\"psi\":{\"some\":{\"avg10\":63.2,\"avg60\":20.1,\"avg300\":5,\"total_usec\":1}},"
                "\"top\":[{\"pid\":123,\"command\":\"burner 60\",\"cpu_pct\":98,\"rss_kb\":1124},"
                "{\"pid\":7,\"command\":\"cc1\",\"cpu_pct\":5,\"rss_kb\":10,\"new_in_window\":true}],"
                "\"profile\":{\"state\":\"done\",\"folded\":593,\"idle\":12,\"stacks\":13,"
                "\"top_stacks\":[{\"stack\":\"burner;main;burn_inner\",\"samples\":191,\"pct\":32.2}]},"
                "\"dir\":\"/var/lib/monkeyd/incidents/I1\",\"files\":[\"summary.json\",\"flame.svg\"]}");
        json_object *skipped = json_tokener_parse(
                "{\"id\":\"I2\",\"psi\":{\"unavailable\":\"No such file or directory\"},"
                "\"profile\":{\"state\":\"skipped\",\"reason\":\"perf may not profile\"}}");
        char *text = NULL;

        assert_non_null(o);
        assert_int_equal(status_text_format_incident(o, &text), 0);
        assert_non_null(strstr(text, "cpu window  busy 97.1% (user 90.2%, system 6.9%, irq 0.0%), iowait 0.0%, steal 1.5%; 2 CPUs; window 1m"));
        assert_non_null(strstr(text, "load        2.31 1.10 0.52 (3 runnable of 412 tasks)"));
        assert_non_null(strstr(text, "pressure    cpu some 63.20% (10s), 20.10% (60s), 5.00% (300s)"));
        assert_non_null(strstr(text, "      123    98.0    1.1 MiB  burner 60\n"));
        assert_non_null(strstr(text, "        7     5.0     10 KiB  cc1  (started in the window)\n"));
        assert_non_null(strstr(text, "done: 593 samples in 13 distinct stacks (12 idle left out)"));
        assert_non_null(strstr(text, " 32.2%  burner;main;burn_inner"));
        assert_non_null(strstr(text, "summary.json flame.svg"));
        free(text);
        assert_int_equal(status_text_format_incident(skipped, &text), 0);
        assert_non_null(strstr(text, "unavailable: No such file or directory"));
        assert_non_null(strstr(text, "skipped: perf may not profile"));
        assert_non_null(strstr(text, "not measured"));
        free(text);
        json_object_put(o);
        json_object_put(skipped);
}

static void test_status_evidence_line(void **state) {
        json_object *st = json_tokener_parse(
                "{\"last_incident\":{\"id\":\"I1\",\"reason\":\"cpu\",\"outcome\":null},"
                "\"evidence\":{\"last_incident\":\"I1\",\"profile\":\"10s\",\"profiling\":true}}");
        char *text = NULL;

        assert_int_equal(status_text_format(st, &text), 0);
        assert_non_null(strstr(text, "evidence    monkeyctl incident I1; profile 10s (profiling now)\n"));
        free(text);
        json_object_object_add(json_object_object_get(st, "evidence"), "profiling", json_object_new_boolean(false));
        json_object_object_add(json_object_object_get(st, "evidence"), "last_profile", json_object_new_string("skipped"));
        json_object_object_add(json_object_object_get(st, "evidence"), "error", json_object_new_string("No space left on device"));
        assert_int_equal(status_text_format(st, &text), 0);
        assert_non_null(strstr(text, "profile 10s (last: skipped); cannot write it: No space left on device\n"));
        free(text);
        json_object_object_del(json_object_object_get(st, "evidence"), "last_incident");
        assert_int_equal(status_text_format(st, &text), 0);
        assert_null(strstr(text, "evidence "));
        free(text);
        json_object_put(st);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_loadavg),        cmocka_unit_test(test_psi),
                cmocka_unit_test(test_id_valid),       cmocka_unit_test(test_retention),
                cmocka_unit_test(test_list_and_prune), cmocka_unit_test(test_text_incidents),
                cmocka_unit_test(test_text_incident),  cmocka_unit_test(test_status_evidence_line),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
