/* The ladder, in-process: a real Agent on a temp dir (no pool, no Slack,
 * ladder restart-unit:app.service, reboot-local; agentfix.h, with its fake
 * wall clock), the system bus replaced at link time
 * (-Wl,--wrap=sysbus_restart_unit,sysbus_reboot; see tests/meson.build) by
 * a stub the test answers. Rules: a failed step moves to the next, each
 * step is written to the incident (at the loop's wall time) before it is
 * taken, a reboot accepted waits for the machine to go down, also across
 * a restart in the same boot until reboot_timeout from the step has
 * passed, and past the last step the host is quarantined.
 *
 * Then the ladder alone (remedy_new), its owner a fake RemedySink whose
 * saves and barriers the test answers: a step is in the record and saved
 * before it is taken, a refused save refuses the step, a failed step moves
 * to the next, a cancel stops what a save still held. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"
#include "remedy.h"
#include "sysbus.h"
#include "agentfix.h"
#include "testutil.h"

/* ---- the stub bus ---- */

static struct {
        unsigned restarts, reboots;
        char unit[64];
        size_t steps_on_disk;           /* the incident's steps in state.json when the call came */
        sysbus_done_t cb;
        void *userdata;
        const char *state_dir;          /* the whole agent's (the fixture's); NULL for the ladder alone */
} bus;

int __wrap_sysbus_restart_unit(SysBus *b, const char *unit, usec_t timeout, sysbus_done_t cb, void *userdata);
int __wrap_sysbus_reboot(SysBus *b, usec_t timeout, sysbus_done_t cb, void *userdata);

static void bus_called(sysbus_done_t cb, void *userdata) {
        PersistentState disk;

        if (bus.state_dir) { /* the whole agent: what state.json holds */
                assert_int_equal(state_load(bus.state_dir, &disk, NULL, NULL), 0);
                bus.steps_on_disk = disk.incident.n_steps;
                persistent_state_done(&disk);
        }
        bus.cb = cb;
        bus.userdata = userdata;
}

int __wrap_sysbus_restart_unit(SysBus *b, const char *unit, usec_t timeout, sysbus_done_t cb, void *userdata) {
        (void) b, (void) timeout;
        bus.restarts++;
        snprintf(bus.unit, sizeof bus.unit, "%s", unit);
        bus_called(cb, userdata);
        return 0;
}

int __wrap_sysbus_reboot(SysBus *b, usec_t timeout, sysbus_done_t cb, void *userdata) {
        (void) b, (void) timeout;
        bus.reboots++;
        bus_called(cb, userdata);
        return 0;
}

static void bus_answer(int error, const char *detail) {
        sysbus_done_t cb = bus.cb;

        assert_non_null(cb);
        bus.cb = NULL;
        cb(error, detail, bus.userdata);
}

/* ---- the fixture ---- */

static int setup(void **state) {
        AgentFix *f = agentfix_new("restart-unit:app.service, reboot-local");

        memset(&bus, 0, sizeof bus);
        bus.state_dir = f->state_dir;
        agentfix_up(f);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        agentfix_free(*state);
        bus.state_dir = NULL;
        return 0;
}

static bool serving(AgentFix *f) {
        return f->a->state == STATE_SERVING;
}
static bool bus_waiting(AgentFix *f) {
        return bus.cb != NULL;
}
static bool quarantined(AgentFix *f) {
        return f->a->state == STATE_QUARANTINED;
}
static bool checking(AgentFix *f) {
        return f->a->state == STATE_CHECKING;
}

static void to_the_ladder(AgentFix *f) {
        agentfix_run_for(f, serving);
        agent_post_event(f->a, EVENT_BREACH, "cpu 99% for 2s (test)");
        agentfix_run_for(f, bus_waiting);
        assert_int_equal(f->a->state, STATE_REMEDIATING);
}

static void test_failed_step_moves_to_the_next(void **state) {
        AgentFix *f = *state;
        const Incident *i = &f->a->persist.incident;
        usec_t before = agentfix_now_wall();

        to_the_ladder(f);
        assert_int_equal(bus.restarts, 1);
        assert_string_equal(bus.unit, "app.service");
        /* in state.json before it was taken, at the loop's wall time */
        assert_int_equal(bus.steps_on_disk, 1);
        assert_true(i->steps[0].at >= before && i->steps[0].at <= agentfix_now_wall());

        bus_answer(-EIO, "app.service: restart job failed (test)");
        agentfix_run_for(f, bus_waiting);
        assert_int_equal(bus.reboots, 1);
        assert_int_equal(bus.steps_on_disk, 2);
        assert_int_equal(i->n_steps, 2);
        assert_non_null(strstr(strna(i->steps[0].result), "restart job failed"));

        /* the reboot is accepted: the machine waits for it to go down */
        bus_answer(0, "logind accepted the reboot (test)");
        agentfix_settle(f);
        assert_int_equal(f->a->state, STATE_REMEDIATING);
        assert_true(remedy_is_running(f->a->remedy));
}

static void test_every_step_failed_quarantines(void **state) {
        AgentFix *f = *state;

        to_the_ladder(f);
        bus_answer(-EIO, "app.service: restart job failed (test)");
        agentfix_run_for(f, bus_waiting);
        bus_answer(-EPERM, "logind refused the reboot (test)");
        agentfix_run_for(f, quarantined);
        assert_false(remedy_is_running(f->a->remedy));
        assert_non_null(strstr(strna(f->a->state_reason), "every step of the ladder failed"));
        assert_non_null(strstr(strna(f->a->state_reason), "logind refused"));
        assert_int_equal(bus.restarts, 1);
        assert_int_equal(bus.reboots, 1);
}

/* The reboot-local step accepted, then the agent killed before the
 * machine went down. */
static void reboot_accepted(AgentFix *f) {
        to_the_ladder(f);
        bus_answer(-EIO, "app.service: restart job failed (test)");
        agentfix_run_for(f, bus_waiting);
        bus_answer(0, "logind accepted the reboot (test)");
        agentfix_settle(f); /* saved: the step awaits its reboot */
        assert_true(f->a->persist.incident.steps[1].awaiting_reboot);
}

/* Restarted in the same boot: the accepted reboot is awaited for
 * [remedy] reboot_timeout (10m) from the step, on the guard's clock, out
 * of the pool and without asking again; past it, the step has failed. */
static void test_restart_awaits_the_accepted_reboot(void **state) {
        AgentFix *f = *state;

        reboot_accepted(f);
        agentfix_advance(9 * USEC_PER_MINUTE);
        agentfix_up(f);
        agentfix_run_for(f, checking);
        agentfix_settle(f);
        assert_int_equal(f->a->state, STATE_CHECKING);
        assert_true(remedy_reboot_awaited(f->a->remedy));
        assert_int_equal(bus.reboots, 1);
}

static void test_restart_past_the_reboot_timeout_fails_the_step(void **state) {
        AgentFix *f = *state;
        const IncidentStep *st;

        reboot_accepted(f);
        agentfix_advance(11 * USEC_PER_MINUTE);
        agentfix_up(f);
        agentfix_run_for(f, quarantined);
        assert_false(remedy_reboot_awaited(f->a->remedy));
        assert_non_null(strstr(strna(f->a->state_reason), "the machine was still running"));
        st = &f->a->persist.incident.steps[1];
        assert_non_null(strstr(strna(st->result), "the machine was still running"));
        assert_false(st->awaiting_reboot);
        assert_int_equal(bus.reboots, 1);
}

/* ---- the ladder alone, behind a fake owner ---- */

typedef struct Pending {
        remedy_done_t done;
        void *userdata;
        uint64_t cookie;
} Pending;

static struct {
        PersistentState persist;
        unsigned saves;                 /* saves asked for */
        size_t steps_saved;             /* the record's steps at the last save */
        Pending waiting[4];             /* saves and barriers not answered yet */
        size_t n_waiting;
        Event posted;
        unsigned n_posted;
        unsigned announced;             /* sink->remediating */
} own;

static void own_post(void *userdata, Event e, const char *reason) {
        own.posted = e;
        own.n_posted++;
}

static int own_wait(remedy_done_t done, void *done_userdata, uint64_t cookie) {
        if (!done)
                return 0;
        assert_true(own.n_waiting < ELEMENTSOF(own.waiting));
        own.waiting[own.n_waiting++] = (Pending) { done, done_userdata, cookie };
        return 0;
}

/* The owner writes its record; the ladder only reads it. */
static void own_record_step(void *userdata, const char *step, usec_t at) {
        assert_int_equal(incident_step_add(&own.persist.incident, step, at), 0);
}
static void own_record_step_result(void *userdata, const char *result) {
        assert_int_equal(incident_step_result(&own.persist.incident, result), 0);
}
static void own_record_reboot_awaited(void *userdata, bool awaited) {
        Incident *i = &own.persist.incident;

        if (awaited)
                i->steps[i->n_steps - 1].awaiting_reboot = true;
        else
                for (size_t k = 0; k < i->n_steps; k++)
                        i->steps[k].awaiting_reboot = false;
}
static void own_record_reboot_requested(void *userdata, usec_t at, usec_t boottime) {
        own.persist.reboot_requested.at = at;
        own.persist.reboot_requested.boottime = boottime;
        snprintf(own.persist.reboot_requested.boot_id, sizeof own.persist.reboot_requested.boot_id, "%s",
                 AGENTFIX_BOOT_ID);
}
static void own_clear_reboot_requested(void *userdata) {
        own.persist.reboot_requested.at = 0;
}

static int own_save(void *userdata, remedy_done_t done, void *done_userdata, uint64_t cookie) {
        own.saves++;
        own.steps_saved = own.persist.incident.n_steps;
        return own_wait(done, done_userdata, cookie);
}

static int own_after_writes(void *userdata, remedy_done_t done, void *done_userdata, uint64_t cookie) {
        return own_wait(done, done_userdata, cookie);
}

/* The oldest save or barrier ends with `error`. */
static void own_answer(int error) {
        Pending p;

        assert_true(own.n_waiting > 0);
        p = own.waiting[0];
        memmove(own.waiting, own.waiting + 1, --own.n_waiting * sizeof own.waiting[0]);
        p.done(p.userdata, p.cookie, error);
}

static usec_t own_now(void *userdata) {
        return 1000 * USEC_PER_SEC;
}
static double own_cpu_busy(void *userdata) {
        return NAN;
}
static bool own_stopping(void *userdata) {
        return false;
}
static bool own_release_slot(void *userdata) {
        return false;
}
static void own_remediating(void *userdata, const char *step, const char *text, const char *after) {
        own.announced++;
}
static void own_step_result(void *userdata, const char *text, const char *request_id) {
}
static void own_permission(void *userdata, const char *text, const char *detail) {
}
static void own_test_answer(void *userdata, uint64_t ticket, bool ok, const char *message) {
}

static const RemedySink own_sink = {
        .post = own_post,
        .record_step = own_record_step,
        .record_step_result = own_record_step_result,
        .record_reboot_awaited = own_record_reboot_awaited,
        .record_reboot_requested = own_record_reboot_requested,
        .clear_reboot_requested = own_clear_reboot_requested,
        .save = own_save,
        .after_writes = own_after_writes,
        .now_wall = own_now,
        .now_guard = own_now,
        .cpu_busy = own_cpu_busy,
        .stopping = own_stopping,
        .release_slot = own_release_slot,
        .remediating = own_remediating,
        .step_result = own_step_result,
        .permission = own_permission,
        .test_answer = own_test_answer,
};

typedef struct Alone {
        char *dir;
        sd_event *event;
        Config *config;
        Remedy *remedy;
} Alone;

static int alone_setup(void **state) {
        Alone *l = calloc(1, sizeof *l);
        _cleanup_(freep) char *err = NULL, *path = NULL;

        assert_non_null(l);
        memset(&bus, 0, sizeof bus);
        memset(&own, 0, sizeof own);
        l->dir = tmp_dir();
        path = agentfix_write(l->dir, "restart-unit:app.service, reboot-local");
        assert_int_equal(config_load(path, &l->config, &err), 0);
        assert_int_equal(sd_event_new(&l->event), 0);
        assert_int_equal(remedy_new(l->event, NULL, l->config, &own.persist, AGENTFIX_BOOT_ID, &own_sink, NULL,
                                    &l->remedy, &err),
                         0);
        *state = l;
        return 0;
}

static int alone_teardown(void **state) {
        Alone *l = *state;

        remedy_free(l->remedy);
        config_free(l->config);
        sd_event_unref(l->event);
        persistent_state_done(&own.persist);
        rm_rf(l->dir);
        free(l->dir);
        free(l);
        return 0;
}

static void test_alone_step_saved_before_taken(void **state) {
        Alone *l = *state;
        const Incident *i = &own.persist.incident;

        assert_int_equal(remedy_run(l->remedy), 0);
        assert_true(remedy_is_running(l->remedy));
        /* in the record and saved, not announced nor taken yet */
        assert_int_equal(i->n_steps, 1);
        assert_string_equal(i->steps[0].step, "restart-unit:app.service");
        assert_int_equal(own.steps_saved, 1);
        assert_int_equal(own.announced, 0);
        assert_int_equal(bus.restarts, 0);
        own_answer(0); /* on disk: announced, not taken until the alert is */
        assert_int_equal(own.announced, 1);
        assert_int_equal(bus.restarts, 0);
        own_answer(0);
        assert_int_equal(bus.restarts, 1);
        assert_string_equal(bus.unit, "app.service");

        /* a failed step moves to the next, which is saved before it is taken */
        bus_answer(-EIO, "app.service: restart job failed (test)");
        assert_int_equal(i->n_steps, 2);
        assert_non_null(strstr(strna(i->steps[0].result), "restart job failed"));
        assert_int_equal(own.steps_saved, 2);
        assert_int_equal(bus.reboots, 0);
        own_answer(0);
        own_answer(0);
        assert_int_equal(bus.reboots, 1);
        assert_int_equal(own.n_posted, 0);
}

static void test_alone_refused_save_refuses_the_step(void **state) {
        Alone *l = *state;

        assert_int_equal(remedy_run(l->remedy), 0);
        own_answer(-EIO);
        assert_int_equal(bus.restarts, 0);
        assert_int_equal(own.announced, 0);
        assert_int_equal(own.n_posted, 1);
        assert_int_equal(own.posted, EVENT_REMEDY_FAILED);
        assert_false(remedy_is_running(l->remedy));
        assert_non_null(strstr(strna(own.persist.incident.steps[0].result), "not taking it"));
}

static void test_alone_cancel_stops_the_ladder(void **state) {
        Alone *l = *state;

        assert_int_equal(remedy_run(l->remedy), 0);
        remedy_cancel(l->remedy); /* an operator drain while the step is saved */
        assert_false(remedy_is_running(l->remedy));
        own_answer(0);
        assert_int_equal(own.n_waiting, 0);
        assert_int_equal(own.announced, 0);
        assert_int_equal(bus.restarts, 0);
        assert_int_equal(own.n_posted, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_alone_step_saved_before_taken, alone_setup, alone_teardown),
                cmocka_unit_test_setup_teardown(test_alone_refused_save_refuses_the_step, alone_setup,
                                                alone_teardown),
                cmocka_unit_test_setup_teardown(test_alone_cancel_stops_the_ladder, alone_setup, alone_teardown),
                cmocka_unit_test_setup_teardown(test_failed_step_moves_to_the_next, setup, teardown),
                cmocka_unit_test_setup_teardown(test_every_step_failed_quarantines, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_awaits_the_accepted_reboot, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_past_the_reboot_timeout_fails_the_step, setup,
                                                teardown),
        };

        log_max_level = LOG_WARNING;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
