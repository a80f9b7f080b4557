/* Effects of the state machine's actions. This version implements none of
 * the integrations yet (pool, Slack, EC2, checks arrive with their own
 * modules); each effect here is the "not configured" path: it logs what it
 * would do and answers the machine at once, so the cycle still runs. */
#include "effects.h"

#include "agent.h"
#include "log.h"

static const char *const notice_table[_NOTICE_MAX] = {
        [NOTICE_BREACH] = "breach",           [NOTICE_HOLDING] = "holding",
        [NOTICE_CLEARED] = "cleared",         [NOTICE_REMEDIATING] = "remediating",
        [NOTICE_BACK] = "back",               [NOTICE_QUARANTINED] = "quarantined",
        [NOTICE_GAVE_UP] = "gave-up",         [NOTICE_MAINTENANCE] = "maintenance",
};

const char *notice_to_string(Notice n) {
        return n >= 0 && n < _NOTICE_MAX ? notice_table[n] : NULL;
}

int effect_pool_join(Agent *a) {
        a->pool_serving = true;
        if (!a->config->pool.enabled)
                log_info("pool: not configured, joining is a no-op");
        return 0;
}

int effect_pool_request_leave(Agent *a) {
        if (!a->config->pool.enabled) {
                log_info("pool: not configured, leaving is granted without a budget check");
                return agent_post_event(a, EVENT_BUDGET_GRANTED, "no pool configured");
        }
        /* A configured pool that this version cannot talk to is the
         * "unreachable" case: never remediate while maybe still routed. */
        if (a->config->pool.on_unreachable == POOL_ON_UNREACHABLE_REMEDIATE)
                return agent_post_event(a, EVENT_BUDGET_GRANTED,
                                        "pool unreachable; on_unreachable = remediate");
        return agent_post_event(a, EVENT_BUDGET_DENIED, "pool unreachable: not leaving while possibly routed");
}

int effect_pool_leave(Agent *a, const char *why) {
        a->pool_serving = false;
        if (!a->config->pool.enabled)
                log_info("pool: not configured, leaving (%s) is a no-op", why);
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
        const Config *c = a->config;
        const char *step = remedy_step_to_string(c->remedy.ladder[0]);
        char reason[160];

        if (c->remedy.dry_run) {
                snprintf(reason, sizeof reason, "dry run: would %s", step);
                log_notice("remedy: %s", reason);
                return agent_post_event(a, EVENT_REMEDY_DONE, reason);
        }
        snprintf(reason, sizeof reason, "%s is not available in this version", step);
        log_error("remedy: %s", reason);
        return agent_post_event(a, EVENT_REMEDY_FAILED, reason);
}

void effect_notify(Agent *a, Notice n, const char *text) {
        /* Slack is not wired yet: the journal is the alert channel. */
        log_notice("alert (%s)%s: %s", notice_to_string(n), a->config->slack.enabled ? "" : " [slack not configured]",
                   text);
}
