/* Effects of the state machine's actions, each the thin edge between the
 * machine and one integration. An integration that is not configured (or
 * not in this version: checks) takes the "not configured" path:
 * it logs what it would do and answers the machine at once. */
#include "effects.h"

#include "agent.h"
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

int effect_checks_run(Agent *a) {
        if (!a->config->checks.enabled)
                log_info("checks: not configured, passing");
        else
                log_warning("checks: [checks] is configured but this version does not run checks yet, passing");
        return agent_post_event(a, EVENT_CHECKS_PASSED,
                                a->config->checks.enabled ? "checks not run by this version" : "no checks configured");
}

int effect_remediate(Agent *a) {
        return remedy_run(a);
}
