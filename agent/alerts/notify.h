/* What we tell the team: each Notice composed into a Slack message from
 * plain facts (pure, so every message is unit-tested), and the gate that
 * turns a condition that persists (holding, quarantined, Redis down) into
 * one alert, reminders at an interval, and one recovery message. */
#pragma once

#include "evidence.h"
#include "macro.h"

typedef enum Notice {
        NOTICE_BREACH,           /* overload confirmed; what we do next (opens the thread) */
        NOTICE_HOLDING,          /* budget said no; staying in the pool */
        NOTICE_CLEARED,          /* overload cleared before we left */
        NOTICE_REMEDIATING,      /* about to run a ladder step */
        NOTICE_BACK,             /* checks passed after remediation, rejoined */
        NOTICE_QUARANTINED,      /* checks failed, staying out */
        NOTICE_GAVE_UP,          /* remediation limit reached */
        NOTICE_MAINTENANCE,      /* operator drain / resume */
        NOTICE_POOL_DOWN,        /* Redis unreachable for a while */
        NOTICE_POOL_UP,          /* ... and back */
        NOTICE_TEST,             /* monkeyctl test-alert */
        NOTICE_PERMISSION,       /* the EC2 self-test says the reboot is denied */
        NOTICE_GRACE,            /* overloaded again right after a reboot: not acting yet */
        NOTICE_PROFILE,          /* the incident's CPU profile: its hottest stacks, or why there is none */
        NOTICE_DRY_RUN,          /* [remedy] dry_run: what the budget says and what the ladder would do */
        _NOTICE_MAX,
        _NOTICE_INVALID = -EINVAL,
} Notice;

const char *notice_to_string(Notice n);

#define NOTICE_TOP_MAX 5

typedef struct NoticeFacts {
        Notice kind;
        const char *host, *pool, *incident, *instance_id;
        const char *reason;            /* the transition's reason, raw */
        const char *next;              /* what the agent does next, raw */
        double cpu_now, cpu_window, threshold; /* percent; < 0 when unknown */
        usec_t window;
        const ProcTop *top;
        size_t n_top;
        bool top_since_start;          /* no baseline: lifetime shares */
        const char *step;              /* ladder step */
        const char *request_id;        /* AWS request id of the step */
        bool unanswered;               /* the step's request was never answered: it may have worked */
        bool dry_run;
        const char *checks;            /* one line per check, "✓ content: ..." */
        usec_t downtime;               /* left the pool -> rejoined, 0 unknown */
        unsigned reminder;             /* 0: first alert; n: n-th reminder */
        usec_t ongoing;                /* how long the condition has lasted, for reminders */
        bool recovered;                /* the condition ended (POOL_UP, ...) */
        const char *pressure;          /* breach: load, CPU pressure, steal in one line */
        const char *evidence;          /* breach: where the evidence is ("monkeyctl incident ID") */
        const char *detail;            /* profile: the hottest stacks, preformatted */
        const char *no_fleet_budget;   /* remediation without [pool]: config_no_fleet_budget(), else NULL */
} NoticeFacts;

/* Pure: the Slack payload (Block Kit + fallback text) for these facts. */
int notice_payload(const NoticeFacts *f, char **ret);

/* Preformatted top-processes table for messages and status. */
int notice_top_table(const ProcTop *top, size_t n, bool since_start, char **ret);

typedef struct AlertGate {
        bool active;
        usec_t first_at, last_at;      /* CLOCK_MONOTONIC */
        unsigned reminders;
} AlertGate;

/* The condition holds at `now`: true when an alert is due (the first one,
 * or `remind` after the last). */
bool alert_gate_raise(AlertGate *g, usec_t now, usec_t remind);
/* The condition ended: true when it had been alerted (send a recovery). */
bool alert_gate_clear(AlertGate *g);
