/* The narrow interface between the state machine's actions and the
 * integrations: one call per effect. Each effect answers asynchronously by
 * posting an Event to the agent (never by re-entering the machine), so an
 * integration that is slow or not configured looks the same to agent.c.
 *
 * While an integration is not configured its effect is a logged no-op that
 * still answers (no pool: leaving is granted at once; no checks: they
 * pass), so the machine moves end to end and dry runs work. */
#pragma once

#include "machine.h"

typedef struct Agent Agent;

typedef enum Notice {
        NOTICE_BREACH,       /* overload confirmed; what we do next */
        NOTICE_HOLDING,      /* budget said no; staying in the pool */
        NOTICE_CLEARED,      /* overload cleared before we left */
        NOTICE_REMEDIATING,  /* about to run a ladder step */
        NOTICE_BACK,         /* checks passed after remediation, rejoined */
        NOTICE_QUARANTINED,  /* checks failed, staying out */
        NOTICE_GAVE_UP,      /* remediation limit reached */
        NOTICE_MAINTENANCE,  /* operator drain / resume */
        _NOTICE_MAX,
        _NOTICE_INVALID = -EINVAL,
} Notice;

const char *notice_to_string(Notice n);

/* Pool: join serving; budget-checked leave (posts BUDGET_GRANTED or
 * BUDGET_DENIED); unconditional leave for maintenance and quarantine. */
int effect_pool_join(Agent *a);
int effect_pool_request_leave(Agent *a);
int effect_pool_leave(Agent *a, const char *why);

/* Checks: posts CHECKS_PASSED or CHECKS_FAILED. */
int effect_checks_run(Agent *a);

/* Remediation ladder step: posts REMEDY_DONE (no reboot happened: the
 * unit was restarted, or dry run) or REMEDY_FAILED. A reboot that works
 * posts nothing: the next thing that happens is a new boot. */
int effect_remediate(Agent *a);

/* Slack (later: outbox). Never fails the caller: delivery is the
 * integration's problem. */
void effect_notify(Agent *a, Notice n, const char *text);
