/* The checks runner: see checkrun.h. */
#include "checkrun.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"

/* monkeyctl check: its own Checks, so it never disturbs a series the
 * machine is waiting on. */
typedef struct ManualCheck {
        CheckRun *run;
        Checks *checks;
        uint64_t ticket;
} ManualCheck;

struct CheckRun {
        sd_event *event;
        Http *http;
        Config *config;                 /* a reference */
        const CheckRunSink *sink;
        void *userdata;

        Checks *checks;
        unsigned attempt, attempts;
        unsigned passes, passes_needed;
        sd_event_source *timer;         /* the series' next attempt */
        ManualCheck *manual;            /* monkeyctl check in flight */
        sd_event_source *readiness_timer; /* [checks] every, while SERVING */
        unsigned readiness_fails;
};

int checkrun_new(sd_event *e, Http *http, Config *c, const CheckRunSink *sink, void *userdata, CheckRun **ret,
                 char **ret_error) {
        CheckRun *run = calloc(1, sizeof *run);
        int r;

        if (!run)
                return -ENOMEM;
        run->event = sd_event_ref(e);
        run->http = http;
        run->config = config_ref(c);
        run->sink = sink;
        run->userdata = userdata;
        r = checks_new(e, http, c, &run->checks, ret_error);
        if (r < 0) {
                checkrun_free(run);
                return r;
        }
        *ret = run;
        return 0;
}

static void manual_free(CheckRun *run) {
        if (!run->manual)
                return;
        checks_free(run->manual->checks);
        free(run->manual);
        run->manual = NULL;
}

CheckRun *checkrun_free(CheckRun *run) {
        if (!run)
                return NULL;
        checkrun_cancel(run);
        checkrun_readiness_stop(run);
        manual_free(run);
        checks_free(run->checks);
        config_free(run->config);
        sd_event_unref(run->event);
        free(run);
        return NULL;
}

int checkrun_reconfigure(CheckRun *run, Config *nc, char **ret_error) {
        return checks_reconfigure(run->checks, nc, ret_error);
}

void checkrun_set_config(CheckRun *run, Config *c) {
        config_replace(&run->config, c);
}

/* --- the series that gates a rejoin --- */

static void attempt_start(CheckRun *run);

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        CheckRun *run = userdata;

        run->timer = sd_event_source_disable_unref(run->timer);
        attempt_start(run);
        return 0;
}

/* The first failing check, for the machine's reason and the alert. */
static const CheckResult *first_failure(const CheckReport *r, const char **ret_name) {
        if (r->status.verdict == CHECK_FAIL) {
                *ret_name = "status";
                return &r->status;
        }
        if (r->content.verdict == CHECK_FAIL) {
                *ret_name = "content";
                return &r->content;
        }
        *ret_name = "binding";
        return &r->binding;
}

static void on_series_done(const CheckReport *report, void *userdata) {
        CheckRun *run = userdata;
        CheckReport r = *report;
        const CheckResult *bad;
        const char *name;
        char reason[1200];
        usec_t delay;
        State st;

        r.attempt = run->attempt;
        run->sink->report(run->userdata, &r);
        /* CHECKING after a boot, QUARANTINED while re-checking */
        st = run->sink->state(run->userdata);
        if (st != STATE_CHECKING && st != STATE_QUARANTINED)
                return; /* an operator stepped in meanwhile */
        if (r.ok && ++run->passes < run->passes_needed) {
                /* a quarantined host must pass `rise` times in a row */
                log_info("checks: pass %u of %u in a row", run->passes, run->passes_needed);
                run->attempts++; /* a pass is not a spent attempt */
                if (sd_event_add_time_relative(run->event, &run->timer, CLOCK_MONOTONIC, USEC_PER_SEC, USEC_PER_MSEC,
                                               on_retry, run) >= 0)
                        return;
        }
        if (r.ok) {
                snprintf(reason, sizeof reason, "checks passed (attempt %u): content %s; status %s; binding %s",
                         r.attempt, r.content.detail, r.status.detail, r.binding.detail);
                run->sink->post(run->userdata, EVENT_CHECKS_PASSED, reason);
                return;
        }
        run->passes = 0;
        bad = first_failure(&r, &name);
        if (run->attempt < run->attempts) {
                /* the app may still be starting: 1 s, 2 s, 4 s ... at most 10 s apart */
                delay = USEC_PER_SEC << MIN(run->attempt - 1, 3u);
                delay = MIN(delay, 10 * USEC_PER_SEC);
                log_info("checks: attempt %u of %u failed (%s: %s); again in %llus", r.attempt, run->attempts, name,
                         bad->detail, (unsigned long long) (delay / USEC_PER_SEC));
                if (sd_event_add_time_relative(run->event, &run->timer, CLOCK_MONOTONIC, delay, USEC_PER_MSEC,
                                               on_retry, run) >= 0)
                        return;
        }
        /* no attempt count in the reason: the quarantine alert repeats only
         * when what failed changes */
        log_notice("checks: failed after %u attempt%s", r.attempt, r.attempt == 1 ? "" : "s");
        snprintf(reason, sizeof reason, "%s check failed: %s", name, bad->detail);
        run->sink->post(run->userdata, EVENT_CHECKS_FAILED, reason);
}

static void local_address_apply(CheckRun *run, Checks *k) {
        const char *addr = run->sink->local_address(run->userdata);

        if (addr)
                (void) checks_set_local_address(k, addr);
}

static void attempt_start(CheckRun *run) {
        int r;

        local_address_apply(run, run->checks);
        run->attempt++;
        r = checks_run(run->checks, on_series_done, run);
        if (r < 0) {
                char reason[160];
                snprintf(reason, sizeof reason, "cannot run the checks: %s", strerror(-r));
                run->sink->post(run->userdata, EVENT_CHECKS_FAILED, reason);
        }
}

void checkrun_cancel(CheckRun *run) {
        run->timer = sd_event_source_disable_unref(run->timer);
        checks_cancel(run->checks);
}

void checkrun_cancel_in_flight(CheckRun *run) {
        checks_cancel(run->checks);
}

void checkrun_series(CheckRun *run, bool patient) {
        checkrun_cancel(run);
        run->attempt = 0;
        run->passes = 0;
        /* after a boot the app gets all its attempts; a quarantined host
         * re-checks once per retry of the machine, and rejoins only after
         * `rise` passes in a row */
        run->attempts = patient ? run->config->checks.attempts : 1;
        run->passes_needed = patient ? 1 : run->config->checks.rise;
        attempt_start(run);
}

/* --- monkeyctl check --- */

static void on_manual_check(const CheckReport *r, void *userdata) {
        ManualCheck *m = userdata;
        CheckRun *run = m->run;

        run->sink->manual_done(run->userdata, m->ticket, r);
        manual_free(run);
}

int checkrun_manual(CheckRun *run, uint64_t ticket, char **ret_message) {
        ManualCheck *m;
        int r;

        if (run->manual) {
                *ret_message = strdup("a check is already running; try again");
                return -EBUSY;
        }
        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->run = run;
        m->ticket = ticket;
        r = checks_new(run->event, run->http, run->config, &m->checks, ret_message);
        if (r >= 0) {
                const char *addr = run->sink->local_address(run->userdata);
                if (addr)
                        r = checks_set_local_address(m->checks, addr);
        }
        if (r >= 0)
                r = checks_run(m->checks, on_manual_check, m);
        if (r < 0) {
                checks_free(m->checks);
                free(m);
                return r;
        }
        run->manual = m;
        return 0;
}

/* --- readiness while serving ([checks] every, fall) --- */

static void on_readiness_done(const CheckReport *report, void *userdata) {
        CheckRun *run = userdata;
        const CheckResult *bad;
        const char *name;
        char reason[1200];

        run->sink->report(run->userdata, report);
        if (run->sink->state(run->userdata) != STATE_SERVING)
                return;
        if (report->ok) {
                if (run->readiness_fails > 0)
                        log_info("checks: readiness passes again after %u failure(s)", run->readiness_fails);
                run->readiness_fails = 0;
                checkrun_readiness_rearm(run);
                return;
        }
        bad = first_failure(report, &name);
        run->readiness_fails++;
        log_warning("checks: readiness %s check failed (%u of %u in a row): %s", name, run->readiness_fails,
                    run->config->checks.fall, bad->detail);
        if (run->readiness_fails < run->config->checks.fall) {
                checkrun_readiness_rearm(run);
                return;
        }
        snprintf(reason, sizeof reason, "%s check failed %u times in a row while serving: %s", name,
                 run->readiness_fails, bad->detail);
        run->readiness_fails = 0;
        run->sink->readiness_failed(run->userdata, reason);
}

static int on_readiness_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CheckRun *run = userdata;

        run->readiness_timer = sd_event_source_disable_unref(run->readiness_timer);
        if (run->sink->state(run->userdata) != STATE_SERVING)
                return 0; /* re-armed when the host serves again */
        if (checks_run(run->checks, on_readiness_done, run) < 0)
                checkrun_readiness_rearm(run);
        return 0;
}

void checkrun_readiness_rearm(CheckRun *run) {
        run->readiness_timer = sd_event_source_disable_unref(run->readiness_timer);
        if (run->config->checks.every == 0 || run->sink->state(run->userdata) != STATE_SERVING)
                return;
        if (sd_event_add_time_relative(run->event, &run->readiness_timer, CLOCK_MONOTONIC, run->config->checks.every,
                                       USEC_PER_MSEC * 10, on_readiness_timer, run) < 0)
                log_warning("checks: cannot schedule the readiness check");
}

void checkrun_readiness_start(CheckRun *run) {
        run->readiness_fails = 0;
        checkrun_readiness_rearm(run);
}

void checkrun_readiness_stop(CheckRun *run) {
        run->readiness_timer = sd_event_source_disable_unref(run->readiness_timer);
}
