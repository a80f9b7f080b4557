/* The agent's state machine as data: State and Event enums with string
 * tables, one static transition table {from, event, guard, to, action},
 * and a pure fsm_step(). Actions are names here; agent.c runs them. */
#pragma once

#include "macro.h"

typedef enum State {
        STATE_BOOT,
        STATE_CHECKING,
        STATE_SERVING,
        STATE_OVERLOADED,
        STATE_HOLDING,
        STATE_DRAINING,
        STATE_REMEDIATING,
        STATE_QUARANTINED,
        STATE_MAINTENANCE,   /* operator drain: out of the pool until resumed */
        _STATE_MAX,
        _STATE_INVALID = -EINVAL,
} State;

typedef enum Event {
        EVENT_START,           /* agent started (new boot or restart) */
        EVENT_RESTORE_MAINTENANCE, /* started, and state.json says an operator drained us */
        EVENT_CHECKS_PASSED,
        EVENT_CHECKS_FAILED,
        EVENT_BREACH,          /* detector: sustained overload */
        EVENT_CLEARED,         /* detector: below clear_below */
        EVENT_BUDGET_GRANTED,  /* pool: we left serving (or no pool configured) */
        EVENT_BUDGET_DENIED,   /* pool: budget says no, or pool unreachable */
        EVENT_RETRY,           /* a retry timer fired (budget re-ask, quarantine re-check) */
        EVENT_DRAINED,         /* drain grace over, evidence saved */
        EVENT_REMEDY_DONE,     /* a step that does not reboot finished (restart-unit, dry run) */
        EVENT_REMEDY_FAILED,   /* every step of the ladder failed */
        EVENT_MAINTENANCE,     /* monkeyctl drain */
        EVENT_RESUME,          /* monkeyctl resume */
        EVENT_RESTORE_HOLD,    /* started, and state.json says we gave up: stay out until resume */
        EVENT_DRY_RUN_DONE,    /* [remedy] dry_run: the budget asked, the ladder told, nothing done */
        EVENT_DETACH_FAILED,   /* the load balancer's drain could not be confirmed: never reboot routed */
        _EVENT_MAX,
        _EVENT_INVALID = -EINVAL,
} Event;

typedef enum Action {
        ACTION_NONE,
        ACTION_RUN_CHECKS,      /* run content/status/binding checks, report */
        ACTION_POOL_JOIN,       /* register and join serving (budget does not apply) */
        ACTION_REQUEST_LEAVE,   /* budget-checked leave; answers GRANTED/DENIED */
        ACTION_ALERT_BREACH,    /* observe-only mode: alert, stay in the pool */
        ACTION_HOLD,            /* alert (damped), schedule a budget re-ask */
        ACTION_NOTE_CLEARED,    /* the overload cleared before we left */
        ACTION_START_DRAIN,     /* capture evidence, start the drain grace timer */
        ACTION_REMEDIATE,       /* run the ladder's next step */
        ACTION_QUARANTINE,      /* stay out of the pool, alert, schedule a re-check */
        ACTION_GIVE_UP,         /* remediation limit reached: stay out, alert, no retry */
        ACTION_ENTER_MAINTENANCE, /* leave the pool unconditionally, stay out */
        ACTION_DRY_RUN,         /* alert, ask the budget without taking a slot, tell the ladder; stay in */
        ACTION_NOTE_DRY_RUN,    /* the dry run is told: back to serving, nothing changed */
        ACTION_WAIT_COOL,       /* checks pass but the CPU is not yet cool: stay out, re-check later */
        _ACTION_MAX,
        _ACTION_INVALID = -EINVAL,
} Action;

typedef enum Guard {
        GUARD_NONE,
        GUARD_REMEDY_ENABLED,   /* [remedy] configured, not a dry run: act on a breach */
        GUARD_REMEDY_DISABLED,  /* no [remedy]: observe and alert only */
        GUARD_REMEDY_ALLOWED,   /* under max_per_window */
        GUARD_REMEDY_EXHAUSTED, /* max_per_window reached */
        GUARD_REMEDY_DRY_RUN,   /* [remedy] dry_run = yes: say what would be done, do nothing */
        GUARD_REJOIN_ALLOWED,   /* no failed remediation to recover from, or the CPU stayed cool a window */
        GUARD_REJOIN_HOT,       /* a remediation failed and the CPU has not stayed cool a whole window */
        _GUARD_MAX,
        _GUARD_INVALID = -EINVAL,
} Guard;

/* What the guards look at: facts, computed by the caller before stepping. */
typedef struct FsmInputs {
        bool remedy_enabled;
        bool remedy_allowed;
        bool dry_run;           /* [remedy] dry_run (meaningful with remedy_enabled) */
        bool rejoin_allowed;    /* see GUARD_REJOIN_ALLOWED */
} FsmInputs;

typedef struct Transition {
        State from;
        Event event;
        Guard guard;
        State to;
        Action action;
} Transition;

/* Returns 0 and fills *ret with the first matching row whose guard holds;
 * -ENOENT when the event means nothing in that state (the caller logs it
 * and ignores it); -EINVAL for out-of-range arguments. */
int fsm_step(State from, Event event, const FsmInputs *in, Transition *ret);

/* The whole table, for tests and `monkeyctl` documentation. */
const Transition *fsm_table(size_t *ret_n);

/* True when the host is (or is about to be) routed: SERVING, OVERLOADED, HOLDING. */
bool state_is_in_pool(State s);

/* What a load balancer asking this host should do with traffic. The one
 * decision every health answer is made from (HAProxy's agent-check, the
 * HTTP health endpoint), so they can never disagree. */
typedef enum Traffic {
        TRAFFIC_SEND,  /* SERVING, OVERLOADED, HOLDING */
        TRAFFIC_DRAIN, /* DRAINING: finish what is in flight, send nothing new */
        TRAFFIC_STOP,  /* every other state, and any unknown one */
        _TRAFFIC_MAX,
        _TRAFFIC_INVALID = -EINVAL,
} Traffic;

/* Pure. */
Traffic state_traffic(State s);

const char *state_to_string(State s);   /* "SERVING" */
State state_from_string(const char *s);
const char *event_to_string(Event e);   /* "breach" */
Event event_from_string(const char *s);
const char *action_to_string(Action a);
const char *guard_to_string(Guard g);

/* Remediation guard: how many of the remediation times in `times` (wall
 * clock, usec) fall within (now - window, now]. Pure. */
unsigned remedy_count_in_window(const usec_t *times, size_t n, usec_t now, usec_t window);
