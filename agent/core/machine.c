/* The state machine as data: string tables, the transition table and the
 * pure step function. Nothing here does I/O or reads a clock. */
#include "machine.h"

static const char *const state_table[_STATE_MAX] = {
        [STATE_BOOT] = "BOOT",
        [STATE_CHECKING] = "CHECKING",
        [STATE_SERVING] = "SERVING",
        [STATE_OVERLOADED] = "OVERLOADED",
        [STATE_HOLDING] = "HOLDING",
        [STATE_DRAINING] = "DRAINING",
        [STATE_REMEDIATING] = "REMEDIATING",
        [STATE_QUARANTINED] = "QUARANTINED",
        [STATE_MAINTENANCE] = "MAINTENANCE",
};

static const char *const event_table[_EVENT_MAX] = {
        [EVENT_START] = "start",
        [EVENT_RESTORE_MAINTENANCE] = "restore-maintenance",
        [EVENT_CHECKS_PASSED] = "checks-passed",
        [EVENT_CHECKS_FAILED] = "checks-failed",
        [EVENT_BREACH] = "breach",
        [EVENT_CLEARED] = "cleared",
        [EVENT_BUDGET_GRANTED] = "budget-granted",
        [EVENT_BUDGET_DENIED] = "budget-denied",
        [EVENT_RETRY] = "retry",
        [EVENT_DRAINED] = "drained",
        [EVENT_DETACH_FAILED] = "detach-failed",
        [EVENT_REMEDY_DONE] = "remedy-done",
        [EVENT_REMEDY_FAILED] = "remedy-failed",
        [EVENT_MAINTENANCE] = "maintenance",
        [EVENT_RESUME] = "resume",
        [EVENT_RESTORE_HOLD] = "restore-hold",
        [EVENT_DRY_RUN_DONE] = "dry-run-done",
};

static const char *const action_table[_ACTION_MAX] = {
        [ACTION_NONE] = "none",
        [ACTION_RUN_CHECKS] = "run-checks",
        [ACTION_POOL_JOIN] = "pool-join",
        [ACTION_REQUEST_LEAVE] = "request-leave",
        [ACTION_ALERT_BREACH] = "alert-breach",
        [ACTION_HOLD] = "hold",
        [ACTION_NOTE_CLEARED] = "note-cleared",
        [ACTION_START_DRAIN] = "start-drain",
        [ACTION_REMEDIATE] = "remediate",
        [ACTION_QUARANTINE] = "quarantine",
        [ACTION_GIVE_UP] = "give-up",
        [ACTION_ENTER_MAINTENANCE] = "enter-maintenance",
        [ACTION_DRY_RUN] = "dry-run",
        [ACTION_NOTE_DRY_RUN] = "note-dry-run",
        [ACTION_WAIT_COOL] = "wait-cool",
};

static const char *const guard_table[_GUARD_MAX] = {
        [GUARD_NONE] = "none",
        [GUARD_REMEDY_ENABLED] = "remedy-enabled",
        [GUARD_REMEDY_DISABLED] = "remedy-disabled",
        [GUARD_REMEDY_ALLOWED] = "remedy-allowed",
        [GUARD_REMEDY_EXHAUSTED] = "remedy-exhausted",
        [GUARD_REMEDY_DRY_RUN] = "remedy-dry-run",
        [GUARD_REJOIN_ALLOWED] = "rejoin-allowed",
        [GUARD_REJOIN_HOT] = "rejoin-hot",
};

#define T(f, e, g, t, a) { STATE_##f, EVENT_##e, GUARD_##g, STATE_##t, ACTION_##a }

/* Order matters only between rows with the same (from, event): the first
 * whose guard holds wins. Guards on one (from, event) are kept disjoint so
 * the order never decides anything (a unit test checks that). */
static const Transition transitions[] = {
        T(BOOT,        START,               NONE,             CHECKING,    RUN_CHECKS),
        T(BOOT,        RESTORE_MAINTENANCE, NONE,             MAINTENANCE, ENTER_MAINTENANCE),
        /* A give-up outlives agent restarts and reboots: only resume ends it. */
        T(BOOT,        RESTORE_HOLD,        NONE,             QUARANTINED, GIVE_UP),

        T(CHECKING,    CHECKS_PASSED,       NONE,             SERVING,     POOL_JOIN),
        T(CHECKING,    CHECKS_FAILED,       NONE,             QUARANTINED, QUARANTINE),

        T(SERVING,     BREACH,              REMEDY_ENABLED,   OVERLOADED,  REQUEST_LEAVE),
        T(SERVING,     BREACH,              REMEDY_DISABLED,  OVERLOADED,  ALERT_BREACH),
        /* A dry run changes neither routing nor the reboot-loop guard: it
         * asks the budget without taking a slot, tells the ladder, and is
         * back to SERVING as soon as that is said. */
        T(SERVING,     BREACH,              REMEDY_DRY_RUN,   OVERLOADED,  DRY_RUN),
        T(OVERLOADED,  DRY_RUN_DONE,        NONE,             SERVING,     NOTE_DRY_RUN),
        /* Periodic readiness checks keep running while serving. */
        T(SERVING,     CHECKS_FAILED,       NONE,             QUARANTINED, QUARANTINE),

        T(OVERLOADED,  BUDGET_GRANTED,      NONE,             DRAINING,    START_DRAIN),
        T(OVERLOADED,  BUDGET_DENIED,       NONE,             HOLDING,     HOLD),
        T(OVERLOADED,  CLEARED,             NONE,             SERVING,     NOTE_CLEARED),

        T(HOLDING,     BUDGET_GRANTED,      NONE,             DRAINING,    START_DRAIN),
        T(HOLDING,     BUDGET_DENIED,       NONE,             HOLDING,     HOLD),
        T(HOLDING,     RETRY,               NONE,             HOLDING,     REQUEST_LEAVE),
        T(HOLDING,     CLEARED,             NONE,             SERVING,     NOTE_CLEARED),

        T(DRAINING,    DRAINED,             REMEDY_ALLOWED,   REMEDIATING, REMEDIATE),
        T(DRAINING,    DRAINED,             REMEDY_EXHAUSTED, QUARANTINED, GIVE_UP),
        /* Target groups or Auto Scaling could not confirm we are out:
         * the host may still take requests, so no remediation; the
         * quarantine's re-checks bring it back. */
        T(DRAINING,    DETACH_FAILED,       NONE,             QUARANTINED, QUARANTINE),

        T(REMEDIATING, REMEDY_DONE,         NONE,             CHECKING,    RUN_CHECKS),
        T(REMEDIATING, REMEDY_FAILED,       NONE,             QUARANTINED, QUARANTINE),

        T(QUARANTINED, RETRY,               NONE,             QUARANTINED, RUN_CHECKS),
        /* After a failed remediation passing checks are not enough: a host
         * still hot would breach again at once and rerun the whole ladder. */
        T(QUARANTINED, CHECKS_PASSED,       REJOIN_ALLOWED,   SERVING,     POOL_JOIN),
        T(QUARANTINED, CHECKS_PASSED,       REJOIN_HOT,       QUARANTINED, WAIT_COOL),
        T(QUARANTINED, CHECKS_FAILED,       NONE,             QUARANTINED, QUARANTINE),
        /* The operator clears a give-up: no automatic retry does. */
        T(QUARANTINED, RESUME,              NONE,             CHECKING,    RUN_CHECKS),

        /* An operator drain wins over anything the agent is doing. BOOT is
         * left out: at start-up it arrives as restore-maintenance. */
        T(CHECKING,    MAINTENANCE,         NONE,             MAINTENANCE, ENTER_MAINTENANCE),
        T(SERVING,     MAINTENANCE,         NONE,             MAINTENANCE, ENTER_MAINTENANCE),
        T(OVERLOADED,  MAINTENANCE,         NONE,             MAINTENANCE, ENTER_MAINTENANCE),
        T(HOLDING,     MAINTENANCE,         NONE,             MAINTENANCE, ENTER_MAINTENANCE),
        T(DRAINING,    MAINTENANCE,         NONE,             MAINTENANCE, ENTER_MAINTENANCE),
        T(REMEDIATING, MAINTENANCE,         NONE,             MAINTENANCE, ENTER_MAINTENANCE),
        T(QUARANTINED, MAINTENANCE,         NONE,             MAINTENANCE, ENTER_MAINTENANCE),

        T(MAINTENANCE, RESUME,              NONE,             CHECKING,    RUN_CHECKS),
};

#undef T

static bool guard_holds(Guard g, const FsmInputs *in) {
        switch (g) {
        case GUARD_NONE:
                return true;
        case GUARD_REMEDY_ENABLED:
                return in->remedy_enabled && !in->dry_run;
        case GUARD_REMEDY_DRY_RUN:
                return in->remedy_enabled && in->dry_run;
        case GUARD_REJOIN_ALLOWED:
                return in->rejoin_allowed;
        case GUARD_REJOIN_HOT:
                return !in->rejoin_allowed;
        case GUARD_REMEDY_DISABLED:
                return !in->remedy_enabled;
        case GUARD_REMEDY_ALLOWED:
                return in->remedy_allowed;
        case GUARD_REMEDY_EXHAUSTED:
                return !in->remedy_allowed;
        default:
                return false;
        }
}

int fsm_step(State from, Event event, const FsmInputs *in, Transition *ret) {
        if (from < 0 || from >= _STATE_MAX || event < 0 || event >= _EVENT_MAX || !in || !ret)
                return -EINVAL;

        for (size_t i = 0; i < ELEMENTSOF(transitions); i++) {
                const Transition *t = &transitions[i];

                if (t->from != from || t->event != event)
                        continue;
                if (!guard_holds(t->guard, in))
                        continue;

                *ret = *t;
                return 0;
        }

        return -ENOENT;
}

const Transition *fsm_table(size_t *ret_n) {
        if (ret_n)
                *ret_n = ELEMENTSOF(transitions);
        return transitions;
}

bool state_is_in_pool(State s) {
        return s == STATE_SERVING || s == STATE_OVERLOADED || s == STATE_HOLDING;
}

Traffic state_traffic(State s) {
        if (state_is_in_pool(s))
                return TRAFFIC_SEND;
        if (s == STATE_DRAINING)
                return TRAFFIC_DRAIN;
        /* an unknown state must never look routable */
        return TRAFFIC_STOP;
}

static const char *table_to_string(const char *const *table, size_t n, int i) {
        if (i < 0 || (size_t) i >= n)
                return NULL;
        return table[i];
}

static int table_from_string(const char *const *table, size_t n, const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (table[i] && streq(table[i], s))
                        return (int) i;
        return -EINVAL;
}

const char *state_to_string(State s) {
        return table_to_string(state_table, ELEMENTSOF(state_table), s);
}

State state_from_string(const char *s) {
        return (State) table_from_string(state_table, ELEMENTSOF(state_table), s);
}

const char *event_to_string(Event e) {
        return table_to_string(event_table, ELEMENTSOF(event_table), e);
}

Event event_from_string(const char *s) {
        return (Event) table_from_string(event_table, ELEMENTSOF(event_table), s);
}

const char *action_to_string(Action a) {
        return table_to_string(action_table, ELEMENTSOF(action_table), a);
}

const char *guard_to_string(Guard g) {
        return table_to_string(guard_table, ELEMENTSOF(guard_table), g);
}

unsigned remedy_count_in_window(const usec_t *times, size_t n, usec_t now, usec_t window) {
        unsigned count = 0;

        if (!times)
                return 0;

        for (size_t i = 0; i < n; i++) {
                /* now < window: the window reaches before the epoch, so every
                 * time is inside; compare without subtracting to not wrap.
                 * A time after `now` means the wall clock stepped back (NTP
                 * fixing a bad RTC, a restored snapshot); counting it keeps the
                 * guard closed, dropping it could let a host with a bad clock
                 * reboot itself in a loop. */
                if (now < window || times[i] > now - window)
                        count++;
        }

        return count;
}
