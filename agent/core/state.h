/* What must survive a reboot: state_dir/state.json, written atomically
 * (temp file, fsync, rename, fsync dir), and the boot id that tells a new
 * boot from an agent restart. Parsing and formatting are pure (json-c);
 * a corrupt or truncated file is moved aside, never fatal. */
#pragma once

#include "machine.h"
#include "macro.h"
#include "writer.h"

#define BOOT_ID_LEN 36 /* 8-4-4-4-12 hex with dashes */
#define STATE_REMEDIATIONS_MAX 32
#define STATE_FILE_VERSION 1

#define INCIDENT_STEPS_MAX 8

/* A ladder step, written down before it is taken. */
typedef struct IncidentStep {
        char *step;           /* "restart-unit:app.service", "reboot-instance", "reboot-local" */
        usec_t at;            /* wall clock */
        char *result;         /* NULL until it ended (a reboot that happened never ends here) */
        bool awaiting_reboot; /* the reboot it asked for was accepted; the machine should go down */
} IncidentStep;

typedef struct Incident {
        char *id;             /* "20261122T170012Z-web-1", NULL when none */
        usec_t started;       /* wall clock */
        usec_t left_pool;     /* wall clock, 0 when we never left */
        usec_t ended;         /* 0 while open */
        char *reason;         /* "cpu 97.2% over 60s >= 90%" */
        char *slack_thread;   /* Slack parent ts, kept across the reboot */
        char *outcome;        /* "rejoined", "quarantined", ... NULL while open */
        IncidentStep steps[INCIDENT_STEPS_MAX];
        size_t n_steps;
} Incident;

/* Free everything an incident holds, leaving it empty. */
void incident_clear(Incident *i);
/* Record a step as taken now; the oldest goes when full. */
int incident_step_add(Incident *i, const char *step, usec_t at);
/* Set the result of the last step; it is no longer awaiting a reboot. */
int incident_step_result(Incident *i, const char *result);
/* The last step, if it asked for a reboot that was accepted and has not
 * happened yet in the boot state.json was written in; NULL otherwise. */
const IncidentStep *incident_reboot_awaited(const Incident *i);

typedef struct PersistentState {
        char boot_id[BOOT_ID_LEN + 1]; /* boot id seen when last written, "" when unknown */
        State state;                   /* last state, for restart in the same boot */
        usec_t since;                  /* wall clock of entering `state` */
        char *reason;                  /* why we are in `state` */
        bool maintenance;              /* operator drain in force */
        char *maintenance_reason;
        bool held;                     /* gave up (remediation limit): out until resume */
        char *held_reason;
        usec_t remediations[STATE_REMEDIATIONS_MAX]; /* wall clock, oldest first */
        size_t n_remediations;
        Incident incident;             /* the last incident, open or closed */
        char *last_checks;             /* the last check report (JSON text), shown again after a restart */
        /* The Auto Scaling group we put this instance in standby in
         * (EnterStandby), NULL = none: written before the call, so a
         * restart or the reboot's new boot takes it out again
         * (ExitStandby), and never one an operator put there. */
        char *standby_group;
        /* The wall clock and CLOCK_BOOTTIME read together at the first
         * start in boot `boot_id` (0 = none): with it, a wall clock that
         * steps while this boot runs does not move the reboot-loop guard. */
        usec_t anchor_wall, anchor_boottime;
        /* A RebootInstances that EC2 may have acted on: written before it
         * is sent, kept while it is in flight, accepted or unanswered,
         * dropped when EC2 said no. A restart in the same boot waits for
         * the reboot and never sends a second one in that boot. at: wall
         * clock (for humans), 0 = none; boottime: CLOCK_BOOTTIME then. */
        struct {
                usec_t at, boottime;
                char boot_id[BOOT_ID_LEN + 1];
        } reboot_requested;
} PersistentState;

void persistent_state_init(PersistentState *s);  /* zero + state BOOT */
void persistent_state_done(PersistentState *s);  /* frees members, leaves an init'ed struct */

/* Record a remediation at `now`, dropping the oldest when full. */
void persistent_state_add_remediation(PersistentState *s, usec_t now);

/* Pure. Returns 0, or -EBADMSG with *ret_error naming the field. Unknown
 * fields are ignored (forward compatible); a newer "version" is refused.
 * ret is only written on success. */
int state_parse(const char *buf, size_t len, PersistentState *ret, char **ret_error);
/* Pure. Returns a malloc'ed JSON text ending in "\n". */
int state_format(const PersistentState *s, char **ret);

/* Load state_dir/state.json. Missing file: 0 with a fresh state and
 * *ret_moved_aside NULL. Corrupt file: renamed to
 * state.json.corrupt-<unix-seconds>, 0 with a fresh state and
 * *ret_moved_aside set to the new path (the caller warns). I/O errors
 * other than ENOENT are returned. Nothing is logged: *ret_why (when not
 * NULL) says what was wrong with the file, if that is known, for the
 * caller's one message. */
int state_load(const char *state_dir, PersistentState *ret, char **ret_moved_aside, char **ret_why);
/* A write cut short (SIGKILL, power loss between the temp file and the
 * rename) leaves state.json.tmp-XXXXXX behind; nothing else would ever
 * remove it. Call before the first save (no write of ours is in
 * progress): returns how many were removed. */
int state_remove_stale_temps(const char *state_dir);
/* Atomic write: state.json.tmp-XXXXXX, fsync, rename, fsync dir. On any
 * error the old file stays intact and the temp file is removed. */
int state_save(const char *state_dir, const PersistentState *s);
/* The same save queued on the writer (writer.h): off the loop, in order
 * with every other durable write; `done` learns the write's error. < 0
 * only when it could not be formatted or queued. */
int state_save_queued(Writer *w, const char *state_dir, const PersistentState *s, const WriterDone *done,
                      size_t n_done);

/* Read a boot id file (/proc/sys/kernel/random/boot_id or a test's file):
 * 36 chars of hex and dashes, trailing newline allowed. -EBADMSG otherwise. */
int boot_id_read(const char *path, char ret[BOOT_ID_LEN + 1]);
