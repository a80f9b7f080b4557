/* Effects of the state machine's actions, each the thin edge between the
 * machine and one integration. An integration that is not configured (or
 * not in this version: checks) takes the "not configured" path:
 * it logs what it would do and answers the machine at once. */
#include "effects.h"

#include "agent.h"
#include "alerts.h"
#include "aws.h"
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
                agent_post_event(a, EVENT_BUDGET_GRANTED, reason);
                break;
        case POOL_LEAVE_DENIED:
                snprintf(reason, sizeof reason, "disruption budget: %s", strna(detail));
                agent_post_event(a, EVENT_BUDGET_DENIED, reason);
                break;
        case POOL_LEAVE_UNREACHABLE:
        default:
                if (a->config->pool.on_unreachable == POOL_ON_UNREACHABLE_REMEDIATE) {
                        snprintf(reason, sizeof reason,
                                 "pool unreachable (%s); on_unreachable = remediate, proceeding", strna(detail));
                        a->pool_serving = false;
                        /* Still out in our own view: reconciled when Redis returns. */
                        pool_set_state(p, state_to_string(a->state), reason, false);
                        agent_post_event(a, EVENT_BUDGET_GRANTED, reason);
                } else {
                        snprintf(reason, sizeof reason,
                                 "pool unreachable (%s): not leaving while possibly still routed", strna(detail));
                        agent_post_event(a, EVENT_BUDGET_DENIED, reason);
                }
                break;
        }
}

static int request_leave_now(Agent *a) {
        int r;

        if (!a->pool) {
                /* only with [remedy] budget = none: the config refuses a
                 * remediation without a pool otherwise */
                log_notice("no fleet budget ([remedy] budget = none): leaving without asking the other hosts");
                agent_post_event(a, EVENT_BUDGET_GRANTED, "no fleet budget ([remedy] budget = none)");
                return 0;
        }
        r = pool_leave(a->pool, false, a->state_reason, on_budget_answer, a);
        if (r < 0) {
                log_warning_errno(r, "pool: cannot ask the budget: %m");
                on_budget_answer(a->pool, POOL_LEAVE_UNREACHABLE, "cannot send the request", a);
        }
        return 0;
}

/* [remedy] dry_run: the budget's verdict, the ladder told step by step,
 * and back to serving. Nothing here changes routing, the budget or the
 * reboot-loop guard. */
static void dry_run_tell(Agent *a, PoolLeaveResult r, const char *detail) {
        const Config *c = a->config;
        _cleanup_(freep) char *ladder = NULL, *done = NULL;
        const char *verdict;
        size_t len = 0;
        FILE *f;

        if (a->state != STATE_OVERLOADED) {
                /* cleared, or an operator stepped in, while the budget answered */
                log_info("dry run: the budget answered (%s) after the host left OVERLOADED, not telling the ladder",
                         strna(detail));
                return;
        }
        switch (r) {
        case POOL_LEAVE_WOULD_LEAVE:
                verdict = "would leave the pool: the budget allows it";
                break;
        case POOL_LEAVE_DENIED:
                verdict = "would hold in the pool: the budget says no";
                break;
        case POOL_LEAVE_ALREADY_OUT:
                verdict = "not in the pool's serving set: nothing to leave";
                break;
        case POOL_LEAVE_LEFT: /* a peek never takes a slot; were it to, say so */
                verdict = "left the pool (unexpected for a dry run)";
                break;
        case POOL_LEAVE_UNREACHABLE:
        default:
                verdict = c->pool.on_unreachable == POOL_ON_UNREACHABLE_REMEDIATE
                                  ? "cannot ask the budget: the pool is unreachable; on_unreachable = remediate would go on"
                                  : "would hold: the pool is unreachable, so the budget cannot be asked";
                break;
        }

        f = open_memstream(&ladder, &len);
        if (!f) {
                log_oom();
        } else {
                for (size_t i = 0; i < c->remedy.ladder_len; i++) {
                        _cleanup_(freep) char *step = remedy_step_describe(c, i);
                        const char *id = c->remedy.ladder[i] == REMEDY_REBOOT_INSTANCE ? aws_instance_id(a->aws) : NULL;
                        fprintf(f, "%s%zu. %s%s%s", i ? ", " : "", i + 1, strna(step), id ? " " : "", strempty(id));
                }
                fclose(f);
        }
        alerts_dry_run(a, verdict, a->pool ? detail : "no [pool]: no fleet budget to ask", ladder);
        /* The ladder as messages, as a real run would announce each step,
         * but only where a real run would get that far. */
        if (r == POOL_LEAVE_WOULD_LEAVE || !a->pool ||
            (r == POOL_LEAVE_UNREACHABLE && c->pool.on_unreachable == POOL_ON_UNREACHABLE_REMEDIATE))
                for (size_t i = 0; i < c->remedy.ladder_len; i++) {
                        _cleanup_(freep) char *step = remedy_step_describe(c, i), *text = NULL;
                        const char *id = c->remedy.ladder[i] == REMEDY_REBOOT_INSTANCE ? aws_instance_id(a->aws) : NULL;

                        if (asprintf(&text, "%s: DRY RUN: would %s%s%s%s", c->agent.host, strna(step), id ? " " : "",
                                     strempty(id), i > 0 ? " if the step before failed" : "") < 0)
                                text = NULL;
                        alerts_remediating(a, step, text ? text : "DRY RUN", NULL);
                }
        if (asprintf(&done, "DRY RUN: %s; nothing was done", verdict) < 0)
                done = NULL;
        agent_post_event(a, EVENT_DRY_RUN_DONE, done ? done : "DRY RUN: nothing was done");
}

static void on_dry_run_budget(Pool *p, PoolLeaveResult r, const char *detail, void *userdata) {
        dry_run_tell(userdata, r, detail);
}

int effect_dry_run(Agent *a) {
        int r;

        if (!a->pool) {
                dry_run_tell(a, POOL_LEAVE_WOULD_LEAVE, NULL);
                return 0;
        }
        r = pool_leave_peek(a->pool, a->state_reason, on_dry_run_budget, a);
        if (r < 0) {
                log_warning_errno(r, "pool: cannot ask the budget for the dry run: %m");
                dry_run_tell(a, POOL_LEAVE_UNREACHABLE, "cannot send the request");
        }
        return 0;
}

/* What announces the leave (the breach alert, the incident's summary)
 * is on disk: now ask, unless the overload went meanwhile or a newer ask
 * took over. */
static void on_leave_announced(void *userdata, uint64_t gen, int error) {
        Agent *a = userdata;

        if (a->stopping || gen != a->leave_gen || (a->state != STATE_OVERLOADED && a->state != STATE_HOLDING))
                return;
        (void) request_leave_now(a);
}

int effect_pool_request_leave(Agent *a) {
        /* write-ahead: the alert spooled for this leave is durable first */
        if (agent_after_writes(a, on_leave_announced, ++a->leave_gen) < 0)
                return request_leave_now(a);
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

/* The report in status, Redis (the host's hash) and state.json. */
static void checks_report_keep(Agent *a, const CheckReport *r) {
        const char *text;

        json_object_put(a->last_checks);
        a->last_checks = check_report_json(r);
        if (!a->last_checks)
                return;
        text = json_object_to_json_string_ext(a->last_checks, JSON_C_TO_STRING_PLAIN);
        if (a->pool)
                pool_set_last_checks(a->pool, text);
        free(a->persist.last_checks);
        a->persist.last_checks = strdup(text); /* saved with the next transition */
}

static void on_checks_done(const CheckReport *report, void *userdata) {
        Agent *a = userdata;
        CheckReport r = *report;
        const CheckResult *bad;
        const char *name;
        char reason[1200];
        usec_t delay;

        r.attempt = a->checks_attempt;
        checks_report_keep(a, &r);
        /* CHECKING after a boot, QUARANTINED while re-checking */
        if (a->state != STATE_CHECKING && a->state != STATE_QUARANTINED)
                return; /* an operator stepped in meanwhile */
        if (r.ok && ++a->checks_passes < a->checks_passes_needed) {
                /* a quarantined host must pass `rise` times in a row */
                log_info("checks: pass %u of %u in a row", a->checks_passes, a->checks_passes_needed);
                a->checks_attempts++; /* a pass is not a spent attempt */
                if (sd_event_add_time_relative(a->event, &a->checks_timer, CLOCK_MONOTONIC, USEC_PER_SEC,
                                               USEC_PER_MSEC, on_checks_retry, a) >= 0)
                        return;
        }
        if (r.ok) {
                snprintf(reason, sizeof reason, "checks passed (attempt %u): content %s; status %s; binding %s",
                         r.attempt, r.content.detail, r.status.detail, r.binding.detail);
                agent_post_event(a, EVENT_CHECKS_PASSED, reason);
                return;
        }
        a->checks_passes = 0;
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
        agent_post_event(a, EVENT_CHECKS_FAILED, reason);
}

static void checks_attempt_start(Agent *a) {
        int r;

        /* the private address from IMDS, once known, when the config names none */
        if (a->aws && aws_local_ipv4(a->aws))
                (void) checks_set_local_address(a->checks, aws_local_ipv4(a->aws));
        a->checks_attempt++;
        r = checks_run(a->checks, on_checks_done, a);
        if (r < 0) {
                char reason[160];
                snprintf(reason, sizeof reason, "cannot run the checks: %s", strerror(-r));
                agent_post_event(a, EVENT_CHECKS_FAILED, reason);
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
        if (r >= 0 && a->aws && aws_local_ipv4(a->aws))
                r = checks_set_local_address(m->checks, aws_local_ipv4(a->aws));
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
                agent_post_event(a, EVENT_CHECKS_PASSED, "no checks configured");
                return 0;
        }
        effect_checks_cancel(a);
        a->checks_attempt = 0;
        a->checks_passes = 0;
        /* after a boot the app gets all its attempts; a quarantined host
         * re-checks once per retry of the machine, and rejoins only after
         * `rise` passes in a row */
        a->checks_attempts = patient ? a->config->checks.attempts : 1;
        a->checks_passes_needed = patient ? 1 : a->config->checks.rise;
        checks_attempt_start(a);
        return 0;
}

/* --- readiness while serving ([checks] every, fall) --- */

static void readiness_arm(Agent *a);

static void on_readiness_leave(Pool *p, PoolLeaveResult r, const char *detail, void *userdata) {
        Agent *a = userdata;
        char reason[600];

        if (a->state != STATE_SERVING)
                return;
        if (r == POOL_LEAVE_LEFT || r == POOL_LEAVE_ALREADY_OUT) {
                a->pool_serving = false;
                snprintf(reason, sizeof reason, "%s", strna(a->readiness_reason));
                agent_post_event(a, EVENT_CHECKS_FAILED, reason);
                return;
        }
        /* a whole fleet failing its checks at once (a shared dependency
         * down) must not drain the whole fleet */
        snprintf(reason, sizeof reason, "%s; but the disruption budget keeps it in the pool (%s)",
                 strna(a->readiness_reason), strna(detail));
        alerts_quarantined(a, reason);
        readiness_arm(a);
}

static void on_readiness_done(const CheckReport *report, void *userdata) {
        Agent *a = userdata;
        const CheckResult *bad;
        const char *name;
        char reason[1200];
        int k;

        checks_report_keep(a, report);
        if (a->state != STATE_SERVING)
                return;
        if (report->ok) {
                if (a->readiness_fails > 0)
                        log_info("checks: readiness passes again after %u failure(s)", a->readiness_fails);
                a->readiness_fails = 0;
                readiness_arm(a);
                return;
        }
        bad = first_failure(report, &name);
        a->readiness_fails++;
        log_warning("checks: readiness %s check failed (%u of %u in a row): %s", name, a->readiness_fails,
                    a->config->checks.fall, bad->detail);
        if (a->readiness_fails < a->config->checks.fall) {
                readiness_arm(a);
                return;
        }
        snprintf(reason, sizeof reason, "%s check failed %u times in a row while serving: %s", name,
                 a->readiness_fails, bad->detail);
        free(a->readiness_reason);
        a->readiness_reason = strdup(reason);
        a->readiness_fails = 0;
        if (!a->pool) {
                agent_post_event(a, EVENT_CHECKS_FAILED, reason);
                return;
        }
        k = pool_leave(a->pool, false, reason, on_readiness_leave, a);
        if (k < 0)
                on_readiness_leave(a->pool, POOL_LEAVE_UNREACHABLE, "cannot ask the budget", a);
}

static int on_readiness_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Agent *a = userdata;

        a->readiness_timer = sd_event_source_disable_unref(a->readiness_timer);
        if (a->state != STATE_SERVING || !a->checks)
                return 0; /* re-armed when the host serves again */
        if (checks_run(a->checks, on_readiness_done, a) < 0)
                readiness_arm(a);
        return 0;
}

static void readiness_arm(Agent *a) {
        a->readiness_timer = sd_event_source_disable_unref(a->readiness_timer);
        if (!a->checks || a->config->checks.every == 0 || a->state != STATE_SERVING)
                return;
        if (sd_event_add_time_relative(a->event, &a->readiness_timer, CLOCK_MONOTONIC, a->config->checks.every,
                                       USEC_PER_MSEC * 10, on_readiness_timer, a) < 0)
                log_warning("checks: cannot schedule the readiness check");
}

void effect_readiness_start(Agent *a) {
        a->readiness_fails = 0;
        readiness_arm(a);
}

void effect_readiness_stop(Agent *a) {
        a->readiness_timer = sd_event_source_disable_unref(a->readiness_timer);
        free(a->readiness_reason);
        a->readiness_reason = NULL;
}

int effect_remediate(Agent *a) {
        return remedy_run(a);
}
