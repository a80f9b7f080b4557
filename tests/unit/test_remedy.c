/* The ladder, in-process: a real Agent on a temp dir (no pool, no Slack,
 * ladder restart-unit:app.service, reboot-local), the system bus replaced
 * at link time (-Wl,--wrap=sysbus_restart_unit,sysbus_reboot; see
 * tests/meson.build) by a stub the test answers. Rules: a failed step moves
 * to the next, each step is written to the incident before it is taken,
 * a reboot accepted waits for the machine to go down, and past the last
 * step the host is quarantined. */
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
#include "log.h"
#include "remedy.h"
#include "sysbus.h"
#include "agentfix.h"

/* ---- the stub bus ---- */

static struct {
        unsigned restarts, reboots;
        char unit[64];
        size_t steps_on_disk;           /* the incident's steps in state.json when the call came */
        sysbus_done_t cb;
        void *userdata;
        char *state_dir;
} bus;

int __wrap_sysbus_restart_unit(SysBus *b, const char *unit, usec_t timeout, sysbus_done_t cb, void *userdata);
int __wrap_sysbus_reboot(SysBus *b, usec_t timeout, sysbus_done_t cb, void *userdata);

static void bus_called(sysbus_done_t cb, void *userdata) {
        PersistentState disk;

        assert_int_equal(state_load(bus.state_dir, &disk, NULL, NULL), 0);
        bus.steps_on_disk = disk.incident.n_steps;
        persistent_state_done(&disk);
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

typedef struct Fix {
        char *dir;
        char *config;
        Agent *a;
} Fix;

static int setup(void **state) {
        Fix *f = calloc(1, sizeof *f);
        _cleanup_(freep) char *err = NULL;

        assert_non_null(f);
        free(bus.state_dir);
        memset(&bus, 0, sizeof bus);
        f->dir = tmp_dir();
        f->config = agentfix_write(f->dir, "restart-unit:app.service, reboot-local");
        assert_true(asprintf(&bus.state_dir, "%s/state", f->dir) >= 0);
        assert_int_equal(agent_new(f->config, &f->a, &err), 0);
        assert_int_equal(agent_start(f->a), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fix *f = *state;

        agent_free(f->a);
        rm_rf(f->dir);
        free(f->dir);
        free(f->config);
        free(bus.state_dir);
        bus.state_dir = NULL;
        free(f);
        return 0;
}

/* Run the loop until `done` or a bounded wait passed. */
static void run_for(Fix *f, bool (*done)(Fix *f)) {
        for (unsigned i = 0; i < 300 && !done(f); i++)
                assert_true(sd_event_run(f->a->event, 10 * USEC_PER_MSEC) >= 0);
        assert_true(done(f));
}

static bool serving(Fix *f) {
        return f->a->state == STATE_SERVING;
}
static bool bus_waiting(Fix *f) {
        return bus.cb != NULL;
}
static bool quarantined(Fix *f) {
        return f->a->state == STATE_QUARANTINED;
}

static void to_the_ladder(Fix *f) {
        run_for(f, serving);
        agent_post_event(f->a, EVENT_BREACH, "cpu 99% for 2s (test)");
        run_for(f, bus_waiting);
        assert_int_equal(f->a->state, STATE_REMEDIATING);
}

static void test_failed_step_moves_to_the_next(void **state) {
        Fix *f = *state;
        const Incident *i = &f->a->persist.incident;

        to_the_ladder(f);
        assert_int_equal(bus.restarts, 1);
        assert_string_equal(bus.unit, "app.service");
        /* in state.json before it was taken */
        assert_int_equal(bus.steps_on_disk, 1);

        bus_answer(-EIO, "app.service: restart job failed (test)");
        run_for(f, bus_waiting);
        assert_int_equal(bus.reboots, 1);
        assert_int_equal(bus.steps_on_disk, 2);
        assert_int_equal(i->n_steps, 2);
        assert_non_null(strstr(strna(i->steps[0].result), "restart job failed"));

        /* the reboot is accepted: the machine waits for it to go down */
        bus_answer(0, "logind accepted the reboot (test)");
        for (unsigned k = 0; k < 20; k++)
                assert_true(sd_event_run(f->a->event, 5 * USEC_PER_MSEC) >= 0);
        assert_int_equal(f->a->state, STATE_REMEDIATING);
        assert_true(remedy_is_running(f->a->remedy));
}

static void test_every_step_failed_quarantines(void **state) {
        Fix *f = *state;

        to_the_ladder(f);
        bus_answer(-EIO, "app.service: restart job failed (test)");
        run_for(f, bus_waiting);
        bus_answer(-EPERM, "logind refused the reboot (test)");
        run_for(f, quarantined);
        assert_false(remedy_is_running(f->a->remedy));
        assert_non_null(strstr(strna(f->a->state_reason), "every step of the ladder failed"));
        assert_non_null(strstr(strna(f->a->state_reason), "logind refused"));
        assert_int_equal(bus.restarts, 1);
        assert_int_equal(bus.reboots, 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_failed_step_moves_to_the_next, setup, teardown),
                cmocka_unit_test_setup_teardown(test_every_step_failed_quarantines, setup, teardown),
        };

        log_max_level = LOG_WARNING;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
