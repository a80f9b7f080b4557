/* Capture, on its own (no agent): a recording sink, and the profile worker
 * replaced at link time (-Wl,--wrap=profile_start,profile_running,
 * profile_free; see tests/meson.build) by a fake the test finishes when it
 * wants. Rules: the profile holds the drain until it is in, then releases
 * it once; without a profile nothing is held; one summary per incident. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture.h"
#include "incidents.h"
#include "jsonutil.h"
#include "log.h"
#include "profile.h"
#include "testutil.h"

#define INCIDENT "20261207T013621Z-test-1"

/* ---- the fake profile worker ---- */

static struct {
        unsigned starts;
        bool running;
        profile_done_t done;
        void *userdata;
} fake;

static char fake_profile; /* its address stands for the Profile */

int __wrap_profile_start(sd_event *e, const ProfileRequest *req, profile_done_t done, void *userdata, Profile **ret);
bool __wrap_profile_running(const Profile *p);
Profile *__wrap_profile_free(Profile *p);

int __wrap_profile_start(sd_event *e, const ProfileRequest *req, profile_done_t done, void *userdata, Profile **ret) {
        (void) e, (void) req;
        fake.starts++;
        fake.running = true;
        fake.done = done;
        fake.userdata = userdata;
        *ret = (Profile *) &fake_profile;
        return 0;
}

bool __wrap_profile_running(const Profile *p) {
        return p == (const Profile *) &fake_profile && fake.running;
}

Profile *__wrap_profile_free(Profile *p) {
        if (p == (Profile *) &fake_profile)
                fake.running = false;
        return NULL;
}

static void fake_finish(void) {
        _cleanup_(json_object_putp) json_object *result = json_tokener_parse("{\"state\":\"done\",\"folded\":10}");

        assert_true(fake.running);
        fake.running = false;
        fake.done((Profile *) &fake_profile, result, NULL, fake.userdata);
}

/* ---- the recording sink ---- */

static struct {
        unsigned profiles, released;
        char incident[64];
} sink;

static void sink_profile(void *userdata, const char *incident, const char *text, const char *detail) {
        (void) userdata, (void) text, (void) detail;
        sink.profiles++;
        snprintf(sink.incident, sizeof sink.incident, "%s", incident);
}

static void sink_released(void *userdata) {
        (void) userdata;
        sink.released++;
}

static const CaptureSink recording_sink = { .profile = sink_profile, .drain_released = sink_released };

/* ---- the fixture ---- */

typedef struct Fix {
        char *dir;
        sd_event *e;
        Writer *w;
        Config *c;
        Capture *cap;
} Fix;

static Fix *fix_new(const char *evidence) {
        Fix *f = calloc(1, sizeof *f);
        _cleanup_(freep) char *text = NULL, *path = NULL, *err = NULL;

        assert_non_null(f);
        memset(&fake, 0, sizeof fake);
        memset(&sink, 0, sizeof sink);
        f->dir = tmp_dir();
        assert_true(asprintf(&text,
                             "[agent]\nhost = test-1\nstate_dir = %s\ncontrol_socket = %s/control.sock\n\n"
                             "[evidence]\n%s\n",
                             f->dir, f->dir, evidence) >= 0);
        path = write_file(f->dir, "monkeyd.conf", text, 0644);
        assert_int_equal(config_load(path, &f->c, &err), 0);
        assert_int_equal(sd_event_new(&f->e), 0);
        assert_int_equal(writer_new(f->e, &f->w), 0);
        assert_int_equal(capture_new(f->e, f->c, f->w, "/bin/true", &recording_sink, NULL, &f->cap), 0);
        return f;
}

static void fix_free(Fix *f) {
        capture_free(f->cap);
        writer_stop(f->w);
        writer_free(f->w);
        config_free(f->c);
        sd_event_unref(f->e);
        rm_rf(f->dir);
        free(f->dir);
        free(f);
}

static void breach(Fix *f, char **ret_pressure) {
        CpuSample counters = {};
        CaptureBreach b = {
                .id = INCIDENT,
                .reason = "cpu 99% (test)",
                .started = "2026-12-07T01:36:21Z",
                .top = json_object_new_array(),
                .counters = &counters,
        };

        capture_breach(f->cap, &b, ret_pressure);
}

static void test_profile_holds_the_drain(void **state) {
        Fix *f = fix_new("profile = 10s");
        _cleanup_(freep) char *pressure = NULL, *line = NULL;

        (void) state;
        breach(f, &pressure);
        assert_int_equal(fake.starts, 1);
        line = capture_breach_line(f->cap, INCIDENT);
        assert_non_null(line);
        assert_non_null(strstr(line, "a CPU profile is being taken"));

        /* the drain grace ends while the profile runs: held, nothing posted */
        assert_true(capture_hold_drain(f->cap));
        assert_true(capture_hold_drain(f->cap));
        assert_int_equal(sink.released, 0);

        /* the profile is in: its result goes to the thread, the drain once */
        fake_finish();
        assert_int_equal(sink.profiles, 1);
        assert_string_equal(sink.incident, INCIDENT);
        assert_int_equal(sink.released, 1);
        assert_false(capture_hold_drain(f->cap));
        fix_free(f);
}

static void test_no_profile_holds_nothing(void **state) {
        Fix *f = fix_new("profile = 0");
        _cleanup_(freep) char *pressure = NULL;

        (void) state;
        breach(f, &pressure);
        assert_int_equal(fake.starts, 0);
        assert_false(capture_hold_drain(f->cap));
        assert_int_equal(sink.released, 0);
        fix_free(f);
}

/* A profile that ends without the drain having waited releases nothing. */
static void test_profile_done_before_the_drain(void **state) {
        Fix *f = fix_new("profile = 10s");
        _cleanup_(freep) char *pressure = NULL;

        (void) state;
        breach(f, &pressure);
        fake_finish();
        assert_int_equal(sink.profiles, 1);
        assert_int_equal(sink.released, 0);
        assert_false(capture_hold_drain(f->cap));
        fix_free(f);
}

/* HOLDING re-asks announce the breach again: one summary, one profile. */
static void test_one_summary_per_incident(void **state) {
        Fix *f = fix_new("profile = 10s");
        _cleanup_(freep) char *p1 = NULL, *p2 = NULL;

        (void) state;
        breach(f, &p1);
        breach(f, &p2);
        assert_int_equal(fake.starts, 1);
        assert_null(p2);
        fake_finish();
        fix_free(f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_profile_holds_the_drain),
                cmocka_unit_test(test_no_profile_holds_nothing),
                cmocka_unit_test(test_profile_done_before_the_drain),
                cmocka_unit_test(test_one_summary_per_incident),
        };

        log_max_level = LOG_WARNING;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
