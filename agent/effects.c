/* Effects of the state machine's actions, each the thin edge between the
 * machine and one integration. An integration that is not configured (or
 * not in this version: checks) takes the "not configured" path:
 * it logs what it would do and answers the machine at once. */
#include "effects.h"

#include "agent.h"
#include "checks.h"
#include "log.h"
#include "remedy.h"

int effect_pool_join(Agent *a) {
        a->pool_serving = true;
        if (!a->pool) {
                log_info("pool: not configured, joining is a no-op");
                return 0;
        }
        /* Joining is never budget-checked; the pool reconciles until Redis
         * has it, whatever outages come in between. */
        pool_set_state(a->pool, state_to_string(a->state), a->state_reason, true);
        return 0;
}

static void on_budget_answer(Pool *p, PoolLeaveResult r, const char *detail, void *userdata) {
        Agent *a = userdata;
        char reason[320];

        switch (r) {
        case POOL_LEAVE_LEFT:
        case POOL_LEAVE_ALREADY_OUT:
                if (a->state != STATE_OVERLOADED && a->state != STATE_HOLDING) {
                        /* The overload cleared (or an operator stepped in)
                         * while the leave was in flight: our view wins. */
                        if (state_is_in_pool(a->state))
                                (void) effect_pool_join(a);
                        break;
                }
                a->pool_serving = false;
                snprintf(reason, sizeof reason, "left the pool: %s", strna(detail));
                (void) agent_post_event(a, EVENT_BUDGET_GRANTED, reason);
                break;
        case POOL_LEAVE_DENIED:
                snprintf(reason, sizeof reason, "disruption budget: %s", strna(detail));
                (void) agent_post_event(a, EVENT_BUDGET_DENIED, reason);
                break;
        case POOL_LEAVE_UNREACHABLE:
        default:
                if (a->config->pool.on_unreachable == POOL_ON_UNREACHABLE_REMEDIATE) {
                        snprintf(reason, sizeof reason,
                                 "pool unreachable (%s); on_unreachable = remediate, proceeding", strna(detail));
                        a->pool_serving = false;
                        /* Still out in our own view: reconciled when Redis returns. */
                        pool_set_state(p, state_to_string(a->state), reason, false);
                        (void) agent_post_event(a, EVENT_BUDGET_GRANTED, reason);
                } else {
                        snprintf(reason, sizeof reason,
                                 "pool unreachable (%s): not leaving while possibly still routed", strna(detail));
                        (void) agent_post_event(a, EVENT_BUDGET_DENIED, reason);
                }
                break;
        }
}

int effect_pool_request_leave(Agent *a) {
        int r;

        if (!a->pool) {
                log_info("pool: not configured, leaving is granted without a budget check");
                return agent_post_event(a, EVENT_BUDGET_GRANTED, "no pool configured");
        }
        r = pool_leave(a->pool, false, a->state_reason, on_budget_answer, a);
        if (r < 0) {
                log_warning_errno(r, "pool: cannot ask the budget: %m");
                on_budget_answer(a->pool, POOL_LEAVE_UNREACHABLE, "cannot send the request", a);
        }
        return 0;
}

static void on_forced_leave(Pool *p, PoolLeaveResult r, const char *detail, void *userdata) {
        if (r == POOL_LEAVE_UNREACHABLE)
                log_warning("pool: leave not confirmed (%s); will be reconciled when Redis answers", strna(detail));
        else
                log_info("pool: %s (%s)", pool_leave_result_to_string(r), strna(detail));
}

int effect_pool_leave(Agent *a, const char *why) {
        int r;

        a->pool_serving = false;
        if (!a->pool) {
                log_info("pool: not configured, leaving (%s) is a no-op", why);
                return 0;
        }
        /* Maintenance and quarantine leave whatever the budget says: a host
         * that must not serve is worse in the pool than out of it. */
        r = pool_leave(a->pool, true, why, on_forced_leave, a);
        if (r < 0)
                pool_set_state(a->pool, state_to_string(a->state), why, false);
        return 0;
}

static void checks_attempt_start(Agent *a);

static int on_checks_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;

        a->checks_timer = sd_event_source_disable_unref(a->checks_timer);
        checks_attempt_start(a);
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

static void on_checks_done(const CheckReport *report, void *userdata) {
        Agent *a = userdata;
        CheckReport r = *report;
        const CheckResult *bad;
        const char *name;
        char reason[1200];
        usec_t delay;

        r.attempt = a->checks_attempt;
        json_object_put(a->last_checks);
        a->last_checks = check_report_json(&r);
        if (a->pool && a->last_checks)
                pool_set_last_checks(a->pool, json_object_to_json_string_ext(a->last_checks, JSON_C_TO_STRING_PLAIN));
        if (a->state != STATE_CHECKING)
                return; /* an operator stepped in meanwhile */
        if (r.ok) {
                snprintf(reason, sizeof reason, "checks passed (attempt %u): content %s; status %s; binding %s",
                         r.attempt, r.content.detail, r.status.detail, r.binding.detail);
                (void) agent_post_event(a, EVENT_CHECKS_PASSED, reason);
                return;
        }
        bad = first_failure(&r, &name);
        if (a->checks_attempt < a->checks_attempts) {
                /* the app may still be starting: 1 s, 2 s, 4 s ... at most 10 s apart */
                delay = USEC_PER_SEC << MIN(a->checks_attempt - 1, 3u);
                delay = MIN(delay, 10 * USEC_PER_SEC);
                log_info("checks: attempt %u of %u failed (%s: %s); again in %llus", r.attempt, a->checks_attempts, name,
                         bad->detail, (unsigned long long) (delay / USEC_PER_SEC));
                if (sd_event_add_time_relative(a->event, &a->checks_timer, CLOCK_MONOTONIC, delay, USEC_PER_MSEC,
                                               on_checks_retry, a) >= 0)
                        return;
        }
        /* no attempt count in the reason: the quarantine alert repeats only
         * when what failed changes */
        log_notice("checks: failed after %u attempt%s", r.attempt, r.attempt == 1 ? "" : "s");
        snprintf(reason, sizeof reason, "%s check failed: %s", name, bad->detail);
        (void) agent_post_event(a, EVENT_CHECKS_FAILED, reason);
}

static void checks_attempt_start(Agent *a) {
        int r;

        a->checks_attempt++;
        r = checks_run(a->checks, on_checks_done, a);
        if (r < 0) {
                char reason[160];
                snprintf(reason, sizeof reason, "cannot run the checks: %s", strerror(-r));
                (void) agent_post_event(a, EVENT_CHECKS_FAILED, reason);
        }
}

/* monkeyctl check: its own Checks, so it never disturbs a series the
 * machine is waiting on. */
struct ManualCheck {
        Agent *agent;
        Checks *checks;
        uint64_t ticket;
};
typedef struct ManualCheck ManualCheck;

void effect_checks_manual_free(Agent *a) {
        if (!a->manual_check)
                return;
        checks_free(a->manual_check->checks);
        free(a->manual_check);
        a->manual_check = NULL;
}

static void on_manual_check(const CheckReport *r, void *userdata) {
        ManualCheck *m = userdata;
        _cleanup_(json_object_putp) json_object *o = check_report_json(r);

        control_server_answer(m->agent->control, m->ticket, r->ok, r->ok ? "all checks pass" : "a check failed", o);
        effect_checks_manual_free(m->agent);
}

int effect_checks_manual(Agent *a, uint64_t ticket, char **ret_message) {
        ManualCheck *m;
        int r;

        if (!a->config->checks.enabled) {
                *ret_message = strdup("no [checks] configured");
                return -ENOTCONN;
        }
        if (a->manual_check) {
                *ret_message = strdup("a check is already running; try again");
                return -EBUSY;
        }
        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->agent = a;
        m->ticket = ticket;
        r = checks_new(a->event, a->http, a->config, &m->checks, ret_message);
        if (r >= 0)
                r = checks_run(m->checks, on_manual_check, m);
        if (r < 0) {
                checks_free(m->checks);
                free(m);
                return r;
        }
        a->manual_check = m;
        return 0;
}

void effect_checks_cancel(Agent *a) {
        a->checks_timer = sd_event_source_disable_unref(a->checks_timer);
        if (a->checks)
                checks_cancel(a->checks);
}

int effect_checks_run(Agent *a, bool patient) {
        if (!a->checks) {
                log_info("checks: not configured, passing");
                return agent_post_event(a, EVENT_CHECKS_PASSED, "no checks configured");
        }
        effect_checks_cancel(a);
        a->checks_attempt = 0;
        /* after a boot the app gets all its attempts; a quarantined host
         * re-checks once per retry of the machine */
        a->checks_attempts = patient ? a->config->checks.attempts : 1;
        checks_attempt_start(a);
        return 0;
}

int effect_remediate(Agent *a) {
        return remedy_run(a);
}
