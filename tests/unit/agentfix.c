/* The shared fixture of the in-process agent tests (agentfix.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentfix.h"
#include "clock.h"
#include "testutil.h"

/* ---- the fake clock ---- */

static usec_t skew = AGENTFIX_SKEW;

int __real_sd_event_now(sd_event *e, clockid_t clock, uint64_t *usec);
int __wrap_sd_event_now(sd_event *e, clockid_t clock, uint64_t *usec);
int __wrap_sd_event_now(sd_event *e, clockid_t clock, uint64_t *usec) {
        int r = __real_sd_event_now(e, clock, usec);

        if (r >= 0 && (clock == CLOCK_REALTIME || clock == CLOCK_BOOTTIME))
                *usec += skew;
        return r;
}

usec_t agentfix_now_wall(void) {
        return clock_now(CLOCK_REALTIME) + skew;
}

void agentfix_advance(usec_t d) {
        skew += d;
}

/* ---- the agent on a temp dir ---- */

char *agentfix_write(const char *dir, const char *ladder) {
        char *text = NULL, *path;

        free(write_file(dir, "boot_id", AGENTFIX_BOOT_ID "\n", 0644));
        free(write_file(dir, "stat", "cpu  100 0 100 1000 0 0 0 0 0 0\ncpu0 100 0 100 1000 0 0 0 0 0 0\n", 0644));
        assert_true(asprintf(&text,
                             "[agent]\nhost = test-1\nstate_dir = %s/state\ncontrol_socket = %s/control.sock\n"
                             "proc_stat = %s/stat\nboot_id = %s/boot_id\n\n"
                             "[cpu]\nthreshold = 90\nclear_below = 50\nwindow = 2s\ninterval = 1s\n\n"
                             "[remedy]\nladder = %s\nbudget = none\nmax_per_window = 2\nwindow = 1h\n",
                             dir, dir, dir, dir, ladder) >= 0);
        path = write_file(dir, "monkeyd.conf", text, 0644);
        free(text);
        return path;
}

AgentFix *agentfix_new(const char *ladder) {
        AgentFix *f = calloc(1, sizeof *f);

        assert_non_null(f);
        skew = AGENTFIX_SKEW;
        f->dir = tmp_dir();
        f->config = agentfix_write(f->dir, ladder);
        assert_true(asprintf(&f->state_dir, "%s/state", f->dir) >= 0);
        return f;
}

void agentfix_free(AgentFix *f) {
        agent_free(f->a);
        rm_rf(f->dir);
        free(f->dir);
        free(f->config);
        free(f->state_dir);
        free(f);
}

void agentfix_up(AgentFix *f) {
        _cleanup_(freep) char *err = NULL;

        f->a = agent_free(f->a);
        assert_int_equal(agent_new(f->config, &f->a, &err), 0);
        assert_int_equal(agent_start(f->a), 0);
}

void agentfix_run_for(AgentFix *f, bool (*done)(AgentFix *f)) {
        for (unsigned i = 0; i < 300 && !done(f); i++)
                assert_true(sd_event_run(f->a->event, 10 * USEC_PER_MSEC) >= 0);
        assert_true(done(f));
}

void agentfix_settle(AgentFix *f) {
        for (unsigned i = 0; i < 20; i++)
                assert_true(sd_event_run(f->a->event, 5 * USEC_PER_MSEC) >= 0);
}

void agentfix_run_until(AgentFix *f, State want) {
        for (unsigned i = 0; i < 200; i++) {
                assert_true(sd_event_run(f->a->event, 10 * USEC_PER_MSEC) >= 0);
                if (f->a->state == want && !sd_event_source_get_enabled(f->a->queue_defer, NULL))
                        break;
        }
        agentfix_settle(f);
        assert_string_equal(state_to_string(f->a->state), state_to_string(want));
}
