/* The agent's alert pipeline: what the machine's actions announce becomes
 * facts (CPU, top processes, pool budget, incident), a Slack message, and
 * a record in the write-ahead outbox, delivered by the Slack client.
 * Conditions that persist (holding, quarantined, Redis down) go through an
 * AlertGate: one alert, reminders at [slack] remind, one recovery.
 *
 * Without [slack] the journal is the only channel: every notice is logged
 * either way. */
#pragma once

#include <json-c/json.h>

#include "notify.h"

typedef struct Agent Agent;
typedef struct Config Config;

/* Slack client and outbox (reads secret files: a refused one fails the
 * start with *ret_error naming the file). Loads the incident's thread. */
int alerts_start(Agent *a, char **ret_error);
void alerts_free(Agent *a);
/* Before a new config is swapped in: a new Slack client when [slack]
 * changed, new outbox bounds, dead letters requeued. < 0 keeps the old
 * config (a bad secret file, say). */
int alerts_reload(Agent *a, const Config *nc, char **ret_error);

/* Log `text` and, with Slack, spool the message for `n` (reason: the
 * transition's reason). Never fails the caller. Not for NOTICE_BREACH:
 * see alerts_breach(). */
void alerts_notify(Agent *a, Notice n, const char *text, const char *reason);
/* At breach, first: rank the processes that burned the hot run (the
 * incident's summary and the breach alert both show them). */
void alerts_rank_top(Agent *a);
/* The breach alert, once the caller captured the evidence (capture.h):
 * pressure and evidence are lines for the message, NULL when none. */
void alerts_breach(Agent *a, const char *text, const char *reason, const char *pressure, const char *evidence);

/* A ladder step about to be taken (after: why the previous one failed). */
void alerts_remediating(Agent *a, const char *step, const char *text, const char *after);
/* [remedy] dry_run: the budget's verdict ("would leave the pool"), its
 * detail, and the whole ladder in one line; each step follows through
 * alerts_remediating(). */
void alerts_dry_run(Agent *a, const char *verdict, const char *budget, const char *ladder);
/* A step's result worth telling (EC2 accepted the reboot: request id). An
 * empty request id: EC2 never answered, so it may have taken the reboot. */
void alerts_step_result(Agent *a, const char *text, const char *request_id);
/* Overloaded during the post-boot grace: once per grace period. */
void alerts_grace(Agent *a, const char *reason, usec_t left);

/* Conditions that persist. */
void alerts_holding(Agent *a, const char *reason);       /* each budget denial */
void alerts_holding_over(Agent *a, const char *how);     /* left the pool after holding */
void alerts_quarantined(Agent *a, const char *reason);   /* each failed (re)check */
/* True when a quarantine had been alerted: its end deserves a message. */
bool alerts_quarantine_over(Agent *a);

/* Each CPU sample: keeps a /proc snapshot from the start of the hot run,
 * so the breach alert can say which processes burned the window. */
void alerts_on_sample(Agent *a);

/* monkeyctl test-alert: answers `ticket` when Slack answered. */
int alerts_test(Agent *a, uint64_t ticket, const char *text, char **ret_message);

/* "slack" in status: mode, channel, outbox; never a secret. */
json_object *alerts_status_json(Agent *a);
/* The incident's profile result, as a reply in that incident's thread. */
void alerts_profile(Agent *a, const char *incident, const char *text, const char *detail);

/* "evidence" in status: the top processes of the last breach. */
json_object *alerts_evidence_json(Agent *a);
