/* The checks runner: drives the app's checks for the state machine. It
 * owns the series that gates a rejoin (after a boot or a remediation all
 * [checks] attempts with backoff; a quarantined host once per retry, and
 * `rise` passes in a row), readiness while serving (a check every [checks]
 * every; `fall` failures in a row are reported), and `monkeyctl check`
 * (its own Checks, so it never disturbs a series the machine waits on).
 *
 * It never sees the agent: verdicts, reports and answers go out through a
 * CheckRunSink, as events that are only ever queued. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "checks.h"
#include "config.h"
#include "http.h"
#include "machine.h"

typedef struct CheckRun CheckRun;

typedef struct CheckRunSink {
        /* The machine's state now: a report that comes back after the
         * machine moved on (an operator stepped in) decides nothing. */
        State (*state)(void *userdata);
        /* A series' verdict: EVENT_CHECKS_PASSED or EVENT_CHECKS_FAILED. */
        void (*post)(void *userdata, Event e, const char *reason);
        /* Every report, of a series or of readiness: status, Redis, state.json. */
        void (*report)(void *userdata, const CheckReport *r);
        /* Readiness failed `fall` times in a row while serving. The sink
         * leaves the pool (or not: checkrun_readiness_rearm()). */
        void (*readiness_failed)(void *userdata, const char *reason);
        /* monkeyctl check: the report for `ticket`. */
        void (*manual_done)(void *userdata, uint64_t ticket, const CheckReport *r);
        /* The private address from IMDS, once known, when the config names
         * none; NULL: not known. */
        const char *(*local_address)(void *userdata);
} CheckRunSink;

/* `c` is referenced (checkrun_set_config() follows a reload); `http` and
 * `sink` must outlive the runner. A bad [checks] section: < 0 with
 * *ret_error saying why. */
int checkrun_new(sd_event *e, Http *http, Config *c, const CheckRunSink *sink, void *userdata, CheckRun **ret,
                 char **ret_error);
CheckRun *checkrun_free(CheckRun *run);
/* Validate and apply a new [checks] section, all or nothing. */
int checkrun_reconfigure(CheckRun *run, Config *nc, char **ret_error);
/* After the reload's swap: attempts, rise, every, fall from here on. */
void checkrun_set_config(CheckRun *run, Config *c);

/* A series; patient: the app may be starting (all attempts, with
 * backoff), otherwise one attempt and `rise` passes in a row. */
void checkrun_series(CheckRun *run, bool patient);
/* Stop the series (its retry timer and a check in flight). */
void checkrun_cancel(CheckRun *run);
/* A check in flight, of a series or of readiness, is dropped. */
void checkrun_cancel_in_flight(CheckRun *run);

/* Readiness while serving. */
void checkrun_readiness_start(CheckRun *run);
void checkrun_readiness_rearm(CheckRun *run);
void checkrun_readiness_stop(CheckRun *run);

/* monkeyctl check: one attempt now, answered through the sink. */
int checkrun_manual(CheckRun *run, uint64_t ticket, char **ret_message);
