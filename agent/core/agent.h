/* The Agent: one context that owns the sd-event loop, the config and every
 * sub-object (CPU reader, detector, persistent state, control server).
 * It turns samples and integration answers into Events, steps the pure
 * state machine, records and persists each transition, and runs the
 * transition's action.
 *
 * Private to agent.c (and the unit tests that drive it): main.c sees only
 * monkeyd.h's opaque handle, the sub-objects only what their constructors
 * and sinks hand them. */
#pragma once

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "agentcheck.h"
#include "clock.h"
#include "jsonutil.h"
#include "evidence.h"
#include "healthendpoint.h"
#include "http.h"
#include "notify.h"
#include "outbox.h"
#include "slack.h"
#include "config.h"
#include "control_server.h"
#include "cpu.h"
#include "detector.h"
#include "eventq.h"
#include "machine.h"
#include "monkeyd.h"
#include "pool.h"
#include "state.h"
#include "ticker.h"

#define AGENT_HISTORY_MAX 200

/* On SIGTERM, how long to wait for Slack's answer to a message in flight. */
#define AGENT_STOP_GRACE_USEC (2 * USEC_PER_SEC)

struct Agent {
        sd_event *event;
        Config *config;
        char *config_path;

        /* CPU sampling */
        CpuReader *cpu;
        Ticker *sampler;
        CpuSample cpu_prev;
        usec_t cpu_prev_at;         /* CLOCK_BOOTTIME, 0 when no baseline */
        CpuInterval cpu_last;       /* percentages computed when status asks */
        double cpu_last_busy;
        bool cpu_have_usage;
        uint64_t cpu_samples, cpu_skipped;
        char *cpu_last_error;       /* shown in status; logged once per streak */
        bool cpu_error_logged;
        Detector detector;

        /* The machine */
        State state;
        usec_t state_since_mono;    /* CLOCK_MONOTONIC */
        usec_t state_since_wall;    /* CLOCK_REALTIME */
        char *state_reason;
        EventQueue queue;
        sd_event_source *queue_defer;

        /* Timers owned by actions */
        sd_event_source *retry_timer;   /* budget re-ask, quarantine re-check */
        sd_event_source *drain_timer;
        unsigned retry_attempt;         /* for backoff */

        /* Persistence */
        Writer *writer;                 /* every durable write, off the loop (writer.h) */
        PersistentState persist;
        int persist_error;              /* the last save's error, 0 when it worked */
        usec_t persist_failing_since;   /* wall clock of the first failed save in a row, 0 = saving */
        uint64_t persist_failures;      /* failed saves in a row */
        char boot_id[BOOT_ID_LEN + 1];
        bool new_boot;

        /* Integrations (NULL when not configured) */
        Pool *pool;
        AgentCheck *agent_check;
        HealthEndpoint *health;         /* [proxy] health_port */
        /* Prometheus metrics: the counters always, served when [metrics] says */
        struct Metrics *metrics;
        struct HttpServer *metrics_server;   /* [metrics] listen; NULL: on the health endpoint's */
        struct HttpServer *metrics_on;       /* the listener /metrics was added to */
        sd_event_source *metrics_timer;      /* [metrics] textfile */
        bool redis_connected;

        Http *http;                     /* Slack, AWS and the checks share it; freed after them */
        struct Alerts *alerts;          /* the alert pipeline: Slack, outbox, gates */

        /* Incident evidence: summary, profile, the drain it holds */
        struct Capture *capture;

        /* Remediation: the ladder, AWS and the system bus */
        struct Remedy *remedy;
        uint64_t leave_gen;             /* tells the budget request waiting on the breach alert from a stale one */
        usec_t grace_until;             /* CLOCK_MONOTONIC; breaches only alert before it */
        bool rejoin_needs_cool;         /* the ladder failed: rejoin only after a cool window */
        bool dry_run_told;              /* this overload's dry run is told; cleared when it clears */
        bool grace_alerted;

        /* Checks (NULL without [checks]) */
        struct CheckRun *checkrun;
        char *readiness_reason;             /* why readiness asked to leave the pool */

        /* Results shown in status */
        json_object *last_checks;   /* NULL until checks ran */
        bool pool_serving;          /* our own view of membership */

        /* Behind AWS load balancers (remedy_routes()): the drain waits for
         * the targets to drain, the join for them to be healthy. */
        bool route_attached;        /* attached since the last detach (or nothing was to do) */
        bool route_detaching;       /* EVENT_DRAINED waits for it */
        bool route_attaching;       /* the join waits; routers are told "up" meanwhile */
        bool drain_grace_over;      /* the drain timer fired (or there was none) */
        Event route_join_event;     /* the event the join waits to replay */
        char *route_join_reason;

        /* History ring of transition objects (json) */
        json_object *history[AGENT_HISTORY_MAX];
        size_t history_len, history_head;
        struct HistoryFile *history_file; /* state_dir/history.jsonl; NULL when it cannot be opened */

        /* The last reload's outcome, for status (agent_reload_recorded) */
        usec_t reload_at;               /* CLOCK_REALTIME, 0: none since start */
        int reload_result;              /* 0, or agent_reload()'s negative errno */
        char *reload_error;             /* what it said, NULL when it worked */
        const char *reload_via;         /* "SIGHUP" or "monkeyctl" */

        ControlServer *control;
        sd_event_source *sig_term, *sig_int, *sig_hup;
        sd_event_source *stop_deadline; /* SIGTERM: the Slack answer we still wait for */
        bool stopping;
};

/* agent_run() without the loop: sampling, the pool, the machine's first
 * event queued. The caller (a test) then runs a->event itself. */
int agent_start(Agent *a);

/* Queue an event for the machine; processed from a defer source, never
 * re-entrantly, in the order posted. `reason` is copied. Cannot fail: see
 * eventq.h. */
void agent_post_event(Agent *a, Event e, const char *reason);

/* Parse the config file again and swap it in only if it is valid. Returns
 * 0 when the new file runs, or a negative errno when it was refused (the
 * running config stays) with *ret_error = "FILE:LINE: message" (or another
 * reason naming what was refused) when ret_error is not NULL. */
int agent_reload(Agent *a, char **ret_error);

/* Status object (STATUS schema in README). New reference. */
json_object *agent_status_json(Agent *a);
