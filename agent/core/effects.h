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
#include "notify.h"

typedef struct Agent Agent;

/* Pool: join serving; budget-checked leave (posts BUDGET_GRANTED or
 * BUDGET_DENIED); unconditional leave for maintenance and quarantine. */
int effect_pool_join(Agent *a);
int effect_pool_request_leave(Agent *a);
int effect_pool_leave(Agent *a, const char *why);
/* [remedy] dry_run on a breach: ask the budget without taking a slot,
 * tell the ladder, answer EVENT_DRY_RUN_DONE. */
int effect_dry_run(Agent *a);

/* Checks: posts CHECKS_PASSED or CHECKS_FAILED. patient: the app may be
 * starting (after a boot or a remediation): all [checks] attempts, with
 * backoff; otherwise one attempt (a quarantined host re-checking). */
int effect_checks_run(Agent *a, bool patient);
void effect_checks_cancel(Agent *a);
/* monkeyctl check: one attempt now, answered to `ticket` with the report. */
int effect_checks_manual(Agent *a, uint64_t ticket, char **ret_message);
void effect_checks_manual_free(Agent *a);
/* Readiness while SERVING: a check every [checks] every; `fall` failures
 * in a row ask the budget to leave and post CHECKS_FAILED (QUARANTINED). */
void effect_readiness_start(Agent *a);
void effect_readiness_stop(Agent *a);

/* Remediation ladder step: posts REMEDY_DONE (no reboot happened: the
 * unit was restarted, or dry run) or REMEDY_FAILED. A reboot that works
 * posts nothing: the next thing that happens is a new boot. */
int effect_remediate(Agent *a);
