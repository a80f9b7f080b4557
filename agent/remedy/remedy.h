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
 * dry_run walks the same decisions and says what it would do.
 *
 * It owns the ladder's run (position, timers, the AWS client, the bus
 * link) and never sees the agent. state.json's record (PersistentState)
 * is its owner's alone: the ladder reads it through a const pointer and
 * changes it only by asking the owner (a RemedySink) to record a step, a
 * step's result, an awaited or requested reboot; it asks the owner to
 * save it, to post events, and to tell the alerts. */
#pragma once

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "awsroute.h"
#include "config.h"
#include "http.h"
#include "machine.h"
#include "macro.h"
#include "state.h"

typedef struct Remedy Remedy;

/* done(userdata, cookie, error) of a save or a barrier, on the loop. */
typedef void (*remedy_done_t)(void *userdata, uint64_t cookie, int error);

/* What the ladder asks of its owner (agent.c). The owner keeps
 * state.json's record (PersistentState) and is its one writer: the
 * incident's steps and reboot_requested change through the record_*
 * calls, each in memory only until a save. */
typedef struct RemedySink {
        /* Queue an event for the machine; cannot fail. */
        void (*post)(void *userdata, Event e, const char *reason);
        /* A ladder step `step` taken at wall time `at`, written down
         * (saved) before it is taken. */
        void (*record_step)(void *userdata, const char *step, usec_t at);
        /* The last step's result; it no longer awaits a reboot. */
        void (*record_step_result)(void *userdata, const char *result);
        /* true: the reboot the last step asked for was accepted (or may
         * have been) and should come; false: no step awaits one (a new
         * boot came). */
        void (*record_reboot_awaited)(void *userdata, bool awaited);
        /* A RebootInstances that EC2 may act on, in this boot: at (wall
         * clock) and boottime (CLOCK_BOOTTIME) of the call. Cleared when
         * it never went out, EC2 said no, or it was an earlier boot's. */
        void (*record_reboot_requested)(void *userdata, usec_t at, usec_t boottime);
        void (*clear_reboot_requested)(void *userdata);
        /* Save state.json: queued on the writer, off the loop, after every
         * durable write queued before; with done, done(done_userdata,
         * cookie, error) on the loop once this save is on disk (0) or the
         * disk refused it: "record it, then act". A refusal is logged and
         * shown in status by the owner. < 0: not queued, done will not
         * run. */
        int (*save)(void *userdata, remedy_done_t done, void *done_userdata, uint64_t cookie);
        /* done(done_userdata, cookie, 0) once every durable write queued so
         * far has ended. < 0: not queued. */
        int (*after_writes)(void *userdata, remedy_done_t done, void *done_userdata, uint64_t cookie);
        /* Realtime, and the reboot-loop guard's wall clock (agent.h). */
        usec_t (*now_wall)(void *userdata);
        usec_t (*now_guard)(void *userdata);
        /* The last CPU busy percentage; NAN when none is known. */
        double (*cpu_busy)(void *userdata);
        /* SIGTERM: completions that come now act no more. */
        bool (*stopping)(void *userdata);
        /* Give the fleet budget's slot back; false without a pool. */
        bool (*release_slot)(void *userdata);
        /* Alerts: a step announced, a step's result, a notice
         * (NOTICE_PERMISSION). */
        void (*remediating)(void *userdata, const char *step, const char *text, const char *after);
        void (*step_result)(void *userdata, const char *text, const char *request_id);
        void (*permission)(void *userdata, const char *text, const char *detail);
        /* The Auto Scaling group we put the instance in standby in (NULL:
         * none any more), in memory until the next save
         * (PersistentState.standby_group). */
        void (*record_standby)(void *userdata, const char *group);
        /* A step of the way out of or back into the load balancer (may be
         * NULL): "deregistered", "drained", "healthy", ... */
        void (*route_step)(void *userdata, const char *step, const char *detail);
        /* monkeyctl test-reboot's verdict for `ticket`. */
        void (*test_answer)(void *userdata, uint64_t ticket, bool ok, const char *message);
} RemedySink;

/* AWS (when the ladder has reboot-instance and [aws] is there) and the
 * system bus. `c` is referenced (remedy_set_config() follows a reload);
 * `http`, `persist` (the owner's record, read here, written through the
 * sink) and `sink` must outlive it. `boot_id` is this boot's. A
 * credentials file that cannot be used fails the start. */
int remedy_new(sd_event *e, Http *http, Config *c, const PersistentState *persist, const char *boot_id,
               const RemedySink *sink, void *userdata, Remedy **ret, char **ret_error);
Remedy *remedy_free(Remedy *r);
/* After the agent is running: IMDS identity and the DryRun self-test. */
void remedy_start(Remedy *r);
/* A reload: rebuild the AWS client (and the D-Bus link) when [aws] or the
 * ladder changed, between remediations only. `nc` is the new config,
 * the Remedy's still the running one until remedy_set_config(). */
int remedy_reconfigure(Remedy *r, const Config *nc);
void remedy_set_config(Remedy *r, Config *c);

/* Run the ladder from its first step (the machine is in REMEDIATING). */
int remedy_run(Remedy *r);
/* Restarted in the same boot after a reboot step was accepted (the
 * incident's last step awaits it; the machine is in CHECKING, out of the
 * pool): wait for the rest of reboot_timeout, counted from the step,
 * without asking again. Overdue: the step failed, CHECKS_FAILED
 * (QUARANTINED: alert, re-check later). -ENOENT when no reboot is due. */
int remedy_await_reboot(Remedy *r);
/* At start, from state.json: true when a reboot asked for in this boot
 * may still come (accepted, or RebootInstances in flight when the agent
 * died), with *ret_why saying which; the machine then waits in CHECKING
 * (remedy_await_reboot). Forgets what an earlier boot asked for. */
bool remedy_reboot_due(Remedy *r, bool new_boot, char *ret_why, size_t size);
/* The machine left REMEDIATING another way (operator drain): stop. */
void remedy_cancel(Remedy *r);
/* A ladder runs; a reboot asked for before a restart is awaited. */
bool remedy_is_running(Remedy *r);
bool remedy_reboot_awaited(Remedy *r);
/* The instance id and private address from IMDS; NULL when not known or
 * there is no AWS client. */
const char *remedy_instance_id(Remedy *r);
const char *remedy_local_ipv4(Remedy *r);

/* The host's place behind AWS load balancers (awsroute.h), when [aws]
 * has target groups or Auto Scaling standby: remedy_routes() says so;
 * the others answer -ENOENT without. The route's client and Aws are the
 * ladder's; it is rebuilt on a reload only while no detach or attach
 * runs. */
bool remedy_routes(Remedy *r);
int remedy_detach(Remedy *r, awsroute_done_t cb, void *userdata);
int remedy_attach(Remedy *r, awsroute_done_t cb, void *userdata);
void remedy_detach_quietly(Remedy *r);
void remedy_attach_quietly(Remedy *r);
void remedy_route_cancel(Remedy *r);
bool remedy_route_still_in_service(Remedy *r);

/* monkeyctl test-reboot: the DryRun self-test, answered to `ticket`. */
int remedy_test_reboot(Remedy *r, uint64_t ticket, char **ret_message);

/* {"ladder":[...],"step":N,"running":bool,"aws":{...}} */
json_object *remedy_status_json(Remedy *r);

/* The ladder step as written in the config: "restart-unit:app.service". */
char *remedy_step_describe(const Config *c, size_t i);
