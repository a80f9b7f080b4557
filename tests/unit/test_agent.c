/* The agent's actions, in-process: a real Agent on a temp dir (no pool, no
 * Slack, ladder restart-unit:app.service; agentfix.h, with its fake wall
 * clock), its loop run here, and the integrations it acts through
 * replaced at link time (-Wl,--wrap, see tests/meson.build) by recorders:
 * remedy_run, remedy_cancel, remedy_is_running (the ladder the agent
 * sees), alerts_notify, alerts_restored, and state_save_queued (which can
 * be told to aim at a directory that is not there, so the writer refuses).
 *
 * Rules: the remediation is counted (at the loop's wall time) and saved
 * before it runs; a save that fails refuses it; the reboot-loop guard
 * refuses one past max_per_window in the window and allows it again once
 * the window has passed; an operator drain cancels the ladder; the back
 * message is not repeated when the outbox already holds it after a
 * restart. */
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
        usec_t disk_last_at;            /* and the time of its last remediation */
        bool fail_saves;                /* state_save_queued aims at a missing directory */
        bool outbox_has_back;           /* what outbox_restored answers */
        const char *state_dir;
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
        rec.disk_last_at = disk.n_remediations > 0 ? disk.remediations[disk.n_remediations - 1] : 0;
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

static int setup(void **state) {
        AgentFix *f = agentfix_new("restart-unit:app.service");

        memset(&rec, 0, sizeof rec);
        rec.state_dir = f->state_dir;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        agentfix_free(*state);
        return 0;
}

/* SERVING, then an overload: no pool, so the leave is granted at once,
 * the drain has no grace, and the machine reaches the ladder. */
static void overload(AgentFix *f) {
        agentfix_run_until(f, STATE_SERVING);
        agent_post_event(f->a, EVENT_BREACH, "cpu 99% for 2s (test)");
}

static void test_remediation_saved_before_it_runs(void **state) {
        AgentFix *f = *state;
        usec_t before;

        agentfix_up(f);
        overload(f);
        before = agentfix_now_wall();
        agentfix_run_until(f, STATE_REMEDIATING);
        assert_int_equal(rec.runs, 1);
        /* state.json held the count when the ladder started, at the
         * loop's wall time: what the guard counts */
        assert_int_equal(rec.disk_remediations, 1);
        assert_int_equal(f->a->persist.n_remediations, 1);
        assert_int_equal(rec.disk_last_at, f->a->persist.remediations[0]);
        assert_true(rec.disk_last_at >= before && rec.disk_last_at <= agentfix_now_wall());
        assert_int_equal(rec.notices[NOTICE_BREACH], 0); /* the breach goes through alerts_breach */
}

static void test_failed_save_refuses_the_remediation(void **state) {
        AgentFix *f = *state;

        agentfix_up(f);
        agentfix_run_until(f, STATE_SERVING);
        rec.fail_saves = true;
        agent_post_event(f->a, EVENT_BREACH, "cpu 99% for 2s (test)");
        agentfix_run_until(f, STATE_QUARANTINED);
        assert_int_equal(rec.runs, 0);
        /* not counted: it did not happen */
        assert_int_equal(f->a->persist.n_remediations, 0);
        assert_non_null(f->a->state_reason);
        assert_non_null(strstr(f->a->state_reason, "cannot record the remediation"));
}

/* One remediation through to SERVING again: the ladder (recorded, not
 * run) says it worked, the checks (none) pass. */
static void remediate(AgentFix *f) {
        unsigned runs = rec.runs;

        overload(f);
        agentfix_run_until(f, STATE_REMEDIATING);
        assert_int_equal(rec.runs, runs + 1);
        rec.running = false;
        agent_post_event(f->a, EVENT_REMEDY_DONE, "the ladder worked (test)");
        agentfix_run_until(f, STATE_SERVING);
}

/* An overload while max_per_window (2) remediations are in the window
 * (1h): given up, out until an operator resumes. */
static void refused(AgentFix *f) {
        unsigned runs = rec.runs;

        overload(f);
        agentfix_run_until(f, STATE_QUARANTINED);
        assert_int_equal(rec.runs, runs);
        assert_true(f->a->persist.held);
        assert_non_null(strstr(strna(f->a->state_reason), "remediation limit reached"));
        agent_post_event(f->a, EVENT_RESUME, "operator resume (test)");
        agentfix_run_until(f, STATE_SERVING);
}

static void test_guard_refuses_at_the_limit_until_the_window_passed(void **state) {
        AgentFix *f = *state;

        agentfix_up(f);
        remediate(f);
        remediate(f);
        assert_int_equal(f->a->persist.n_remediations, 2);
        refused(f);
        /* still inside the window, on the fake clock */
        agentfix_advance(USEC_PER_HOUR - USEC_PER_MINUTE);
        refused(f);
        /* both remediations are now older than the window: allowed */
        agentfix_advance(2 * USEC_PER_MINUTE);
        overload(f);
        agentfix_run_until(f, STATE_REMEDIATING);
        assert_int_equal(rec.runs, 3);
        assert_int_equal(f->a->persist.n_remediations, 3);
}

static void test_operator_drain_cancels_the_ladder(void **state) {
        AgentFix *f = *state;

        agentfix_up(f);
        overload(f);
        agentfix_run_until(f, STATE_REMEDIATING);
        assert_int_equal(rec.runs, 1);
        assert_true(rec.running);
        agent_post_event(f->a, EVENT_MAINTENANCE, "operator drain (test)");
        agentfix_run_until(f, STATE_MAINTENANCE);
        assert_int_equal(rec.cancels, 1);
        assert_false(rec.running);
}

/* Killed after the ladder, before the rejoin: the next start rejoins and
 * closes the incident; the back message goes out once. */
static void back_after_restart(AgentFix *f, bool already_spooled) {
        agentfix_up(f);
        overload(f);
        agentfix_run_until(f, STATE_REMEDIATING);
        assert_non_null(f->a->persist.incident.id);
        f->a = agent_free(f->a); /* "killed": state.json says REMEDIATING, the incident is open */

        rec.outbox_has_back = already_spooled;
        agentfix_up(f);
        /* same boot, no reboot was asked for: checks (none) pass, rejoin */
        agentfix_run_until(f, STATE_SERVING);
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
                cmocka_unit_test_setup_teardown(test_guard_refuses_at_the_limit_until_the_window_passed, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_operator_drain_cancels_the_ladder, setup, teardown),
                cmocka_unit_test_setup_teardown(test_back_message_not_repeated_after_restart, setup, teardown),
                cmocka_unit_test_setup_teardown(test_back_message_sent_once, setup, teardown),
        };

        log_max_level = LOG_WARNING;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
