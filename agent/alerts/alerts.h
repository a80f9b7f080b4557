/* The agent's alert pipeline: what the machine's actions announce becomes
 * facts (CPU, top processes, pool budget, incident), a Slack message, and
 * a record in the write-ahead outbox, delivered by the Slack client.
 * Conditions that persist (holding, quarantined, Redis down) go through an
 * AlertGate: one alert, reminders at [slack] remind, one recovery.
 *
 * Without [slack] the journal is the only channel: every notice is logged
 * either way.
 *
 * Alerts owns the Slack client, the outbox, the gates, the top processes
 * of the last breach and the test alerts in flight. It reads the incident
 * but never writes it, and never sees the agent: the facts it needs from
 * the host and the thread Slack opened go through an AlertsSink. */
#pragma once

#include <hiredis/hiredis.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "http.h"
#include "notify.h"
#include "state.h"
#include "writer.h"

typedef struct Alerts Alerts;

/* What the host looks like now, for a message's facts. */
typedef struct AlertsFacts {
        double cpu_now;                 /* -1: no sample yet */
        double cpu_window;              /* NAN: no window yet */
        const char *instance_id;        /* from IMDS, NULL: the config's */
        bool pool;                      /* a pool client runs */
        int64_t serving;                /* the pool's serving count, -1: unknown (only when asked) */
        /* The budget that applies: the pool's own (kept in Redis) once read,
         * else the config's; max_unavailable 0: not said, the config's. */
        unsigned min_serving, max_unavailable;
} AlertsFacts;

typedef struct AlertsSink {
        /* serving: also the pool's serving count (a status read). */
        void (*facts)(void *userdata, bool serving, AlertsFacts *ret);
        /* The last checks' report (status JSON), NULL: not run. */
        json_object *(*last_checks)(void *userdata);
        /* Slack opened `incident`'s thread at `ts`: keep it (state.json),
         * it must outlive the reboot that comes next. */
        void (*thread)(void *userdata, const char *incident, const char *ts);
        /* monkeyctl test-alert: the answer for `ticket`. */
        void (*test_answer)(void *userdata, uint64_t ticket, bool ok, const char *message, json_object *extra);
        /* The fleet thread's Redis commands, to the pool (argv[0] is the
         * command): the answer comes back through alerts_fleet_reply()
         * with the same `what`. < 0: not sent, and no answer comes. */
        int (*redis)(void *userdata, const char *what, size_t argc, const char *const *argv);
} AlertsSink;

/* Slack client and outbox when [slack] is there (reads secret files: a
 * refused one fails the start with *ret_error naming the file). Loads the
 * incident's thread. `c` is referenced; http, w, incident and sink must
 * outlive the Alerts. */
int alerts_new(sd_event *e, Config *c, Http *http, Writer *w, const Incident *incident, const AlertsSink *sink,
               void *userdata, Alerts **ret, char **ret_error);
Alerts *alerts_free(Alerts *a);
static inline void alerts_freep(Alerts **a) {
        alerts_free(*a);
}
/* Before a new config is swapped in: a new Slack client when [slack]
 * changed, new outbox bounds, dead letters requeued. < 0 keeps the old
 * config (a bad secret file, say). */
int alerts_reload(Alerts *a, const Config *nc, char **ret_error);
/* After the reload's swap. */
void alerts_set_config(Alerts *a, Config *c);

/* Log `text` and, with Slack, spool the message for `n` (reason: the
 * transition's reason). Never fails the caller. Not for NOTICE_BREACH:
 * see alerts_breach(). */
void alerts_notify(Alerts *a, Notice n, const char *text, const char *reason);
/* At breach, first: rank the processes that burned the hot run (the
 * incident's summary and the breach alert both show them). */
void alerts_rank_top(Alerts *a);
/* The breach alert, once the caller captured the evidence (capture.h):
 * pressure and evidence are lines for the message, NULL when none. */
void alerts_breach(Alerts *a, const char *text, const char *reason, const char *pressure, const char *evidence);
/* The outbox already holds a message of kind `n` for `incident` from
 * before this start (spooled, then killed before it was recorded). */
bool alerts_restored(Alerts *a, Notice n, const char *incident);
/* Stopping: true when Slack is answering a message right now; done()
 * runs once it answered. */
bool alerts_quiesce(Alerts *a, void (*done)(void *userdata), void *userdata);

/* A ladder step about to be taken (after: why the previous one failed). */
void alerts_remediating(Alerts *a, const char *step, const char *text, const char *after);
/* [remedy] dry_run: the budget's verdict ("would leave the pool"), its
 * detail, and the whole ladder in one line; each step follows through
 * alerts_remediating(). */
void alerts_dry_run(Alerts *a, const char *verdict, const char *budget, const char *ladder);
/* A step's result worth telling (EC2 accepted the reboot: request id). An
 * empty request id: EC2 never answered, so it may have taken the reboot. */
void alerts_step_result(Alerts *a, const char *text, const char *request_id);
/* Overloaded during the post-boot grace: once per grace period. */
void alerts_grace(Alerts *a, const char *reason, usec_t left);

/* The breach alert just spooled announces a budget-checked leave: its
 * messages wait for alerts_verdict() (a few seconds at most), so that a
 * host the budget holds replies in the pool's fleet thread instead of
 * opening a thread of its own. */
void alerts_await_verdict(Alerts *a);
/* The budget's answer: budget_spent (the host holds because the pool's
 * budget is spent) joins the fleet thread (fleetthread.h); anything else
 * (left, or Redis unreachable) sends the breach as it was spooled. */
void alerts_verdict(Alerts *a, bool budget_spent);
/* The answer to a command sent through AlertsSink.redis (r NULL: none). */
void alerts_fleet_reply(Alerts *a, const char *what, const redisReply *r, const char *detail);

/* Conditions that persist. */
void alerts_holding(Alerts *a, const char *reason);       /* each budget denial */
void alerts_holding_over(Alerts *a, const char *how);     /* left the pool after holding */
void alerts_holding_reset(Alerts *a);                     /* the overload cleared: no message of its own */
void alerts_quarantined(Alerts *a, const char *reason);   /* each failed (re)check */
/* True when a quarantine had been alerted: its end deserves a message. */
bool alerts_quarantine_over(Alerts *a);
/* The pool's link to Redis: down for longer than a failover alerts. */
void alerts_pool_connection(Alerts *a, bool connected, const char *detail);

/* Each CPU sample: keeps a /proc snapshot from the start of the hot run
 * (hot: a run over the threshold started, or the detector breached), so
 * the breach alert can say which processes burned the window. */
void alerts_on_sample(Alerts *a, bool hot);

/* monkeyctl test-alert: answers `ticket` through the sink when Slack answered. */
int alerts_test(Alerts *a, uint64_t ticket, const char *text, char **ret_message);

/* "slack" in status: mode, channel, outbox; never a secret. */
json_object *alerts_status_json(Alerts *a);
/* The incident's profile result, as a reply in that incident's thread. */
void alerts_profile(Alerts *a, const char *incident, const char *text, const char *detail);

/* "evidence" in status: the top processes of the last breach. */
json_object *alerts_evidence_json(Alerts *a);
/* Whether the top processes of the last breach were all there at the start of its run. */
bool alerts_top_since_start(Alerts *a);
