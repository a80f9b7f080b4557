/* The agent's actions, in-process: a real Agent on a temp dir (no pool, no
 * Slack, ladder restart-unit:app.service), its loop run here, and the
 * integrations it acts through replaced at link time (-Wl,--wrap, see
 * tests/meson.build) by recorders: remedy_run, remedy_cancel,
 * remedy_is_running (the ladder the agent sees), alerts_notify, alerts_restored, and state_save_queued (which can be
 * told to aim at a directory that is not there, so the writer refuses).
 *
 * Rules: the remediation is counted and saved before it runs; a save that
 * fails refuses it; an operator drain cancels the ladder; the back message
 * is not repeated when the outbox already holds it after a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "alerts.h"
#include "log.h"
#include "remedy.h"
#include "agentfix.h"

/* ---- the recorders ---- */

static struct {
        unsigned runs, cancels;
        bool running;                   /* what remedy_is_running answers */
        unsigned notices[_NOTICE_MAX];
        size_t disk_remediations;       /* state.json's count when the ladder started */
        bool fail_saves;                /* state_save_queued aims at a missing directory */
        bool outbox_has_back;           /* what outbox_restored answers */
        char *state_dir;
} rec;

/* the linker's names for the real functions and their stand-ins */
int __wrap_state_save_queued(Writer *w, const char *state_dir, const PersistentState *s, const WriterDone *done,
                             size_t n_done);
int __wrap_remedy_run(Remedy *r);
void __wrap_remedy_cancel(Remedy *r);
bool __wrap_remedy_is_running(Remedy *r);
void __wrap_alerts_notify(Alerts *a, Notice n, const char *text, const char *reason);
bool __wrap_alerts_restored(Alerts *a, Notice n, const char *incident);
int __real_state_save_queued(Writer *w, const char *state_dir, const PersistentState *s, const WriterDone *done,
                             size_t n_done);
int __wrap_state_save_queued(Writer *w, const char *state_dir, const PersistentState *s, const WriterDone *done,
                             size_t n_done) {
        /* the writer thread answers ENOENT, as a refusing disk would */
        return __real_state_save_queued(w, rec.fail_saves ? "/nonexistent/monkey-test" : state_dir, s, done, n_done);
}

int __wrap_remedy_run(Remedy *r) {
        PersistentState disk;

        rec.runs++;
        assert_int_equal(state_load(rec.state_dir, &disk, NULL, NULL), 0);
        rec.disk_remediations = disk.n_remediations;
        persistent_state_done(&disk);
        rec.running = true; /* the step is under way */
        return 0;
}

void __wrap_remedy_cancel(Remedy *r) {
        rec.cancels++;
        rec.running = false;
}

bool __wrap_remedy_is_running(Remedy *r) {
        return rec.running;
}

void __wrap_alerts_notify(Alerts *a, Notice n, const char *text, const char *reason) {
        (void) a, (void) text, (void) reason;
        assert_true(n >= 0 && n < _NOTICE_MAX);
        rec.notices[n]++;
}

bool __wrap_alerts_restored(Alerts *a, Notice n, const char *incident) {
        (void) a, (void) incident;
        return rec.outbox_has_back && n == NOTICE_BACK;
}

/* ---- the fixture ---- */

typedef struct Fix {
        char *dir;
        char *config;
        Agent *a;
} Fix;

static int setup(void **state) {
        Fix *f = calloc(1, sizeof *f);
        _cleanup_(freep) char *sd = NULL;

        assert_non_null(f);
        memset(&rec, 0, sizeof rec);
        f->dir = tmp_dir();
        f->config = agentfix_write(f->dir, "restart-unit:app.service");
        assert_true(asprintf(&sd, "%s/state", f->dir) >= 0);
        rec.state_dir = TAKE_PTR(sd);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fix *f = *state;

        agent_free(f->a);
        rm_rf(f->dir);
        free(f->dir);
        free(f->config);
        free(rec.state_dir);
        free(f);
        return 0;
}

static void agent_up(Fix *f) {
        _cleanup_(freep) char *err = NULL;

        f->a = agent_free(f->a);
        assert_int_equal(agent_new(f->config, &f->a, &err), 0);
        assert_int_equal(agent_start(f->a), 0);
}

/* Run the loop until the machine is in `want` (and the writer answered
 * what it was given), or fail after a bounded wait. */
static void run_until(Fix *f, State want) {
        for (unsigned i = 0; i < 200; i++) {
                assert_true(sd_event_run(f->a->event, 10 * USEC_PER_MSEC) >= 0);
                if (f->a->state == want && !sd_event_source_get_enabled(f->a->queue_defer, NULL))
                        break;
        }
        for (unsigned i = 0; i < 20; i++) /* what the last step queued */
                assert_true(sd_event_run(f->a->event, 5 * USEC_PER_MSEC) >= 0);
        assert_string_equal(state_to_string(f->a->state), state_to_string(want));
}

/* SERVING, then an overload: no pool, so the leave is granted at once,
 * the drain has no grace, and the machine reaches the ladder. */
static void overload(Fix *f) {
        run_until(f, STATE_SERVING);
        agent_post_event(f->a, EVENT_BREACH, "cpu 99% for 2s (test)");
}

static void test_remediation_saved_before_it_runs(void **state) {
        Fix *f = *state;

        agent_up(f);
        overload(f);
        run_until(f, STATE_REMEDIATING);
        assert_int_equal(rec.runs, 1);
        /* state.json held the count when the ladder started */
        assert_int_equal(rec.disk_remediations, 1);
        assert_int_equal(f->a->persist.n_remediations, 1);
        assert_int_equal(rec.notices[NOTICE_BREACH], 0); /* the breach goes through alerts_breach */
}

static void test_failed_save_refuses_the_remediation(void **state) {
        Fix *f = *state;

        agent_up(f);
        run_until(f, STATE_SERVING);
        rec.fail_saves = true;
        agent_post_event(f->a, EVENT_BREACH, "cpu 99% for 2s (test)");
        run_until(f, STATE_QUARANTINED);
        assert_int_equal(rec.runs, 0);
        /* not counted: it did not happen */
        assert_int_equal(f->a->persist.n_remediations, 0);
        assert_non_null(f->a->state_reason);
        assert_non_null(strstr(f->a->state_reason, "cannot record the remediation"));
}

static void test_operator_drain_cancels_the_ladder(void **state) {
        Fix *f = *state;

        agent_up(f);
        overload(f);
        run_until(f, STATE_REMEDIATING);
        assert_int_equal(rec.runs, 1);
        assert_true(rec.running);
        agent_post_event(f->a, EVENT_MAINTENANCE, "operator drain (test)");
        run_until(f, STATE_MAINTENANCE);
        assert_int_equal(rec.cancels, 1);
        assert_false(rec.running);
}

/* Killed after the ladder, before the rejoin: the next start rejoins and
 * closes the incident; the back message goes out once. */
static void back_after_restart(Fix *f, bool already_spooled) {
        agent_up(f);
        overload(f);
        run_until(f, STATE_REMEDIATING);
        assert_non_null(f->a->persist.incident.id);
        f->a = agent_free(f->a); /* "killed": state.json says REMEDIATING, the incident is open */

        rec.outbox_has_back = already_spooled;
        agent_up(f);
        /* same boot, no reboot was asked for: checks (none) pass, rejoin */
        run_until(f, STATE_SERVING);
        assert_int_not_equal(f->a->persist.incident.ended, 0);
        assert_int_equal(rec.notices[NOTICE_BACK], already_spooled ? 0 : 1);
}

static void test_back_message_not_repeated_after_restart(void **state) {
        back_after_restart(*state, true);
}

static void test_back_message_sent_once(void **state) {
        back_after_restart(*state, false);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_remediation_saved_before_it_runs, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_save_refuses_the_remediation, setup, teardown),
                cmocka_unit_test_setup_teardown(test_operator_drain_cancels_the_ladder, setup, teardown),
                cmocka_unit_test_setup_teardown(test_back_message_not_repeated_after_restart, setup, teardown),
                cmocka_unit_test_setup_teardown(test_back_message_sent_once, setup, teardown),
        };

        log_max_level = LOG_WARNING;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
