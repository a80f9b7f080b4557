/* The escalation ladder: [remedy] ladder, one step after another until
 * one works. restart-unit:NAME restarts the unit over the system bus,
 * then gives the load [remedy] settle to fall below clear_below;
 * reboot-instance reboots through EC2; reboot-local asks logind. A step
 * is written to state.json (the incident's steps) and announced before it
 * is taken. A reboot that works answers nothing: the next thing is a new
 * boot; one that does not happen within [remedy] reboot_timeout, or a
 * step that fails, moves to the next step. Past the last step the machine
 * hears REMEDY_FAILED (QUARANTINED: out of the pool, alert).
 *
 * dry_run walks the same decisions and says what it would do. */
#pragma once

#include <json-c/json.h>

#include "macro.h"

typedef struct Agent Agent;
typedef struct Config Config;

/* AWS (when the ladder has reboot-instance and [aws] is there) and the
 * system bus. A credentials file that cannot be used fails the start. */
int remedy_setup(Agent *a, char **ret_error);
void remedy_free(Agent *a);
/* After the agent is running: IMDS identity and the DryRun self-test. */
void remedy_start(Agent *a);
/* A reload: rebuild the AWS client (and the D-Bus link) when [aws] or the
 * ladder changed, between remediations only. `nc` is the new config,
 * a->config still the running one. */
int remedy_reconfigure(Agent *a, const Config *nc);

/* Run the ladder from its first step (the machine is in REMEDIATING). */
int remedy_run(Agent *a);
/* Restarted in the same boot after a reboot step was accepted (the
 * incident's last step awaits it; the machine is in CHECKING, out of the
 * pool): wait for the rest of reboot_timeout, counted from the step,
 * without asking again. Overdue: the step failed, CHECKS_FAILED
 * (QUARANTINED: alert, re-check later). -ENOENT when no reboot is due. */
int remedy_await_reboot(Agent *a);
/* At start, from state.json: true when a reboot asked for in this boot
 * may still come (accepted, or RebootInstances in flight when the agent
 * died), with *ret_why saying which; the machine then waits in CHECKING
 * (remedy_await_reboot). Forgets what an earlier boot asked for. */
bool remedy_reboot_due(Agent *a, char *ret_why, size_t size);
/* The machine left REMEDIATING another way (operator drain): stop. */
void remedy_cancel(Agent *a);

/* monkeyctl test-reboot: the DryRun self-test, answered to `ticket`. */
int remedy_test_reboot(Agent *a, uint64_t ticket, char **ret_message);

/* {"ladder":[...],"step":N,"running":bool,"aws":{...}} */
json_object *remedy_status_json(Agent *a);

/* The ladder step as written in the config: "restart-unit:app.service". */
char *remedy_step_describe(const Config *c, size_t i);
