/* The state machine: every (state, event) pair against a matrix written out
 * here by hand, the string tables, the guards, the remediation window. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "machine.h"

/* Which input a cell's outcome depends on. */
typedef enum Dep {
        DEP_NONE,
        DEP_MODE,    /* remedy_enabled, then dry_run: to_false when disabled, to_dry on a dry run */
        DEP_ALLOWED, /* FsmInputs.remedy_allowed */
        DEP_REJOIN,  /* FsmInputs.rejoin_allowed */
} Dep;

typedef struct Cell {
        bool ok;        /* false: -ENOENT */
        State to;       /* when the input is true (or always, with DEP_NONE) */
        Action action;
        Dep dep;
        State to_false; /* when the input is false */
        Action action_false;
        State to_dry;   /* DEP_MODE: remedy enabled with dry_run */
        Action action_dry;
} Cell;

#define __ { .ok = false }
#define C(t, a) { .ok = true, .to = STATE_##t, .action = ACTION_##a, .dep = DEP_NONE }
#define G(d, t, a, tf, af)                                                       \
        { .ok = true, .to = STATE_##t, .action = ACTION_##a, .dep = DEP_##d,     \
          .to_false = STATE_##tf, .action_false = ACTION_##af }
#define M(t, a, tf, af, td, ad)                                                  \
        { .ok = true, .to = STATE_##t, .action = ACTION_##a, .dep = DEP_MODE,    \
          .to_false = STATE_##tf, .action_false = ACTION_##af,                   \
          .to_dry = STATE_##td, .action_dry = ACTION_##ad }

/* Written from the design, not from the table: a change to machine.c must
 * be made here as well, on purpose. */
static const Cell expected[_STATE_MAX][_EVENT_MAX] = {
        [STATE_BOOT] = {
                [EVENT_START] = C(CHECKING, RUN_CHECKS),
                [EVENT_RESTORE_MAINTENANCE] = C(MAINTENANCE, ENTER_MAINTENANCE),
                [EVENT_RESTORE_HOLD] = C(QUARANTINED, GIVE_UP),
        },
        [STATE_CHECKING] = {
                [EVENT_CHECKS_PASSED] = C(SERVING, POOL_JOIN),
                [EVENT_CHECKS_FAILED] = C(QUARANTINED, QUARANTINE),
                [EVENT_MAINTENANCE] = C(MAINTENANCE, ENTER_MAINTENANCE),
        },
        [STATE_SERVING] = {
                [EVENT_CHECKS_FAILED] = C(QUARANTINED, QUARANTINE),
                [EVENT_BREACH] = M(OVERLOADED, REQUEST_LEAVE, OVERLOADED, ALERT_BREACH, OVERLOADED, DRY_RUN),
                [EVENT_MAINTENANCE] = C(MAINTENANCE, ENTER_MAINTENANCE),
        },
        [STATE_OVERLOADED] = {
                [EVENT_CLEARED] = C(SERVING, NOTE_CLEARED),
                [EVENT_BUDGET_GRANTED] = C(DRAINING, START_DRAIN),
                [EVENT_BUDGET_DENIED] = C(HOLDING, HOLD),
                [EVENT_MAINTENANCE] = C(MAINTENANCE, ENTER_MAINTENANCE),
                [EVENT_DRY_RUN_DONE] = C(SERVING, NOTE_DRY_RUN),
        },
        [STATE_HOLDING] = {
                [EVENT_CLEARED] = C(SERVING, NOTE_CLEARED),
                [EVENT_BUDGET_GRANTED] = C(DRAINING, START_DRAIN),
                [EVENT_BUDGET_DENIED] = C(HOLDING, HOLD),
                [EVENT_RETRY] = C(HOLDING, REQUEST_LEAVE),
                [EVENT_MAINTENANCE] = C(MAINTENANCE, ENTER_MAINTENANCE),
        },
        [STATE_DRAINING] = {
                [EVENT_DRAINED] = G(ALLOWED, REMEDIATING, REMEDIATE, QUARANTINED, GIVE_UP),
                [EVENT_DETACH_FAILED] = C(QUARANTINED, QUARANTINE),
                [EVENT_MAINTENANCE] = C(MAINTENANCE, ENTER_MAINTENANCE),
        },
        [STATE_REMEDIATING] = {
                [EVENT_REMEDY_DONE] = C(CHECKING, RUN_CHECKS),
                [EVENT_REMEDY_FAILED] = C(QUARANTINED, QUARANTINE),
                [EVENT_MAINTENANCE] = C(MAINTENANCE, ENTER_MAINTENANCE),
        },
        [STATE_QUARANTINED] = {
                [EVENT_CHECKS_PASSED] = G(REJOIN, SERVING, POOL_JOIN, QUARANTINED, WAIT_COOL),
                [EVENT_CHECKS_FAILED] = C(QUARANTINED, QUARANTINE),
                [EVENT_RETRY] = C(QUARANTINED, RUN_CHECKS),
                [EVENT_MAINTENANCE] = C(MAINTENANCE, ENTER_MAINTENANCE),
                [EVENT_RESUME] = C(CHECKING, RUN_CHECKS),
        },
        [STATE_MAINTENANCE] = {
                [EVENT_RESUME] = C(CHECKING, RUN_CHECKS),
        },
};

#undef __
#undef C
#undef G
#undef M

static void test_every_pair(void **state) {
        (void) state;
        unsigned checked = 0, transitions = 0;

        for (int s = 0; s < _STATE_MAX; s++)
                for (int e = 0; e < _EVENT_MAX; e++)
                        for (int combo = 0; combo < 16; combo++) {
                                FsmInputs in = {
                                        .remedy_enabled = combo & 1,
                                        .remedy_allowed = combo & 2,
                                        .dry_run = combo & 4,
                                        .rejoin_allowed = combo & 8,
                                };
                                const Cell *c = &expected[s][e];
                                Transition t = {
                                        .from = 99, .event = 99, .guard = 99, .to = 99, .action = 99,
                                };
                                int r = fsm_step((State) s, (Event) e, &in, &t);

                                checked++;
                                if (!c->ok) {
                                        if (r != -ENOENT)
                                                print_error("%s + %s: expected -ENOENT, got %d\n",
                                                            state_to_string(s), event_to_string(e), r);
                                        assert_int_equal(r, -ENOENT);
                                        /* ret_ untouched on failure */
                                        assert_int_equal(t.to, 99);
                                        assert_int_equal(t.action, 99);
                                        continue;
                                }

                                bool input = c->dep == DEP_MODE      ? in.remedy_enabled :
                                             c->dep == DEP_ALLOWED   ? in.remedy_allowed :
                                             c->dep == DEP_REJOIN    ? in.rejoin_allowed : true;
                                bool dry = c->dep == DEP_MODE && in.remedy_enabled && in.dry_run;
                                State want_to = dry ? c->to_dry : input ? c->to : c->to_false;
                                Action want_action = dry ? c->action_dry : input ? c->action : c->action_false;

                                if (r != 0 || t.to != want_to || t.action != want_action)
                                        print_error("%s + %s (enabled=%d allowed=%d): got r=%d %s/%s, want %s/%s\n",
                                                    state_to_string(s), event_to_string(e),
                                                    in.remedy_enabled, in.remedy_allowed, r,
                                                    strna(state_to_string(t.to)), strna(action_to_string(t.action)),
                                                    state_to_string(want_to), action_to_string(want_action));
                                assert_int_equal(r, 0);
                                assert_int_equal(t.from, s);
                                assert_int_equal(t.event, e);
                                assert_int_equal(t.to, want_to);
                                assert_int_equal(t.action, want_action);
                                transitions++;
                        }

        assert_int_equal(checked, _STATE_MAX * _EVENT_MAX * 16);
        /* 31 cells with a transition, each tried with 16 input combinations. */
        assert_int_equal(transitions, 31 * 16);
}

static void test_guards_reported(void **state) {
        (void) state;
        Transition t;

        assert_int_equal(fsm_step(STATE_SERVING, EVENT_BREACH, &(FsmInputs) { .remedy_enabled = true }, &t), 0);
        assert_int_equal(t.guard, GUARD_REMEDY_ENABLED);
        assert_int_equal(fsm_step(STATE_SERVING, EVENT_BREACH, &(FsmInputs) { .remedy_enabled = false }, &t), 0);
        assert_int_equal(t.guard, GUARD_REMEDY_DISABLED);
        /* a dry run never asks to leave: it only peeks at the budget */
        assert_int_equal(fsm_step(STATE_SERVING, EVENT_BREACH, &(FsmInputs) { .remedy_enabled = true, .dry_run = true }, &t), 0);
        assert_int_equal(t.guard, GUARD_REMEDY_DRY_RUN);
        assert_int_equal(t.action, ACTION_DRY_RUN);
        assert_int_equal(t.to, STATE_OVERLOADED);
        assert_int_equal(fsm_step(STATE_SERVING, EVENT_BREACH, &(FsmInputs) { .dry_run = true }, &t), 0);
        assert_int_equal(t.guard, GUARD_REMEDY_DISABLED);
        /* after a failed ladder, passing checks alone do not let a hot host back in */
        assert_int_equal(fsm_step(STATE_QUARANTINED, EVENT_CHECKS_PASSED, &(FsmInputs) { .rejoin_allowed = false }, &t), 0);
        assert_int_equal(t.guard, GUARD_REJOIN_HOT);
        assert_int_equal(t.to, STATE_QUARANTINED);
        assert_int_equal(fsm_step(STATE_QUARANTINED, EVENT_CHECKS_PASSED, &(FsmInputs) { .rejoin_allowed = true }, &t), 0);
        assert_int_equal(t.guard, GUARD_REJOIN_ALLOWED);
        assert_int_equal(t.to, STATE_SERVING);
        assert_int_equal(fsm_step(STATE_DRAINING, EVENT_DRAINED, &(FsmInputs) { .remedy_allowed = true }, &t), 0);
        assert_int_equal(t.guard, GUARD_REMEDY_ALLOWED);
        assert_int_equal(fsm_step(STATE_DRAINING, EVENT_DRAINED, &(FsmInputs) { .remedy_allowed = false }, &t), 0);
        assert_int_equal(t.guard, GUARD_REMEDY_EXHAUSTED);
        assert_int_equal(fsm_step(STATE_BOOT, EVENT_START, &(FsmInputs) {}, &t), 0);
        assert_int_equal(t.guard, GUARD_NONE);
}

static void test_einval(void **state) {
        (void) state;
        FsmInputs in = {};
        Transition t = { .to = 77 };

        assert_int_equal(fsm_step((State) -1, EVENT_START, &in, &t), -EINVAL);
        assert_int_equal(fsm_step(_STATE_MAX, EVENT_START, &in, &t), -EINVAL);
        assert_int_equal(fsm_step(_STATE_INVALID, EVENT_START, &in, &t), -EINVAL);
        assert_int_equal(fsm_step(STATE_BOOT, (Event) -1, &in, &t), -EINVAL);
        assert_int_equal(fsm_step(STATE_BOOT, _EVENT_MAX, &in, &t), -EINVAL);
        assert_int_equal(fsm_step(STATE_BOOT, _EVENT_INVALID, &in, &t), -EINVAL);
        assert_int_equal(fsm_step(STATE_BOOT, EVENT_START, NULL, &t), -EINVAL);
        assert_int_equal(fsm_step(STATE_BOOT, EVENT_START, &in, NULL), -EINVAL);
        assert_int_equal(t.to, 77);
}

static bool guards_overlap(Guard a, Guard b) {
        if (a == GUARD_NONE || b == GUARD_NONE || a == b)
                return true;
        if ((a == GUARD_REMEDY_ENABLED && b == GUARD_REMEDY_DISABLED) ||
            (a == GUARD_REMEDY_DISABLED && b == GUARD_REMEDY_ENABLED))
                return false;
        if ((a == GUARD_REMEDY_ALLOWED && b == GUARD_REMEDY_EXHAUSTED) ||
            (a == GUARD_REMEDY_EXHAUSTED && b == GUARD_REMEDY_ALLOWED))
                return false;
        /* enabled (not dry), disabled and dry run split one fact three ways */
        if ((a == GUARD_REMEDY_DRY_RUN && (b == GUARD_REMEDY_ENABLED || b == GUARD_REMEDY_DISABLED)) ||
            (b == GUARD_REMEDY_DRY_RUN && (a == GUARD_REMEDY_ENABLED || a == GUARD_REMEDY_DISABLED)))
                return false;
        if ((a == GUARD_REJOIN_ALLOWED && b == GUARD_REJOIN_HOT) || (a == GUARD_REJOIN_HOT && b == GUARD_REJOIN_ALLOWED))
                return false;
        /* enabled/disabled vs allowed/exhausted: independent facts, both can hold */
        return true;
}

static void test_table_unambiguous(void **state) {
        (void) state;
        size_t n = 0;
        const Transition *tab = fsm_table(&n);

        assert_non_null(tab);
        assert_true(n > 0);

        for (size_t i = 0; i < n; i++) {
                assert_true(tab[i].from >= 0 && tab[i].from < _STATE_MAX);
                assert_true(tab[i].to >= 0 && tab[i].to < _STATE_MAX);
                assert_true(tab[i].event >= 0 && tab[i].event < _EVENT_MAX);
                assert_true(tab[i].guard >= 0 && tab[i].guard < _GUARD_MAX);
                assert_true(tab[i].action > ACTION_NONE && tab[i].action < _ACTION_MAX);

                for (size_t j = i + 1; j < n; j++) {
                        if (tab[i].from != tab[j].from || tab[i].event != tab[j].event)
                                continue;
                        if (guards_overlap(tab[i].guard, tab[j].guard))
                                print_error("rows %zu and %zu: %s + %s with guards %s / %s overlap\n", i, j,
                                            state_to_string(tab[i].from), event_to_string(tab[i].event),
                                            guard_to_string(tab[i].guard), guard_to_string(tab[j].guard));
                        assert_false(guards_overlap(tab[i].guard, tab[j].guard));
                }
        }

        /* Self-check of the checker: it must catch what it is meant to catch. */
        assert_true(guards_overlap(GUARD_NONE, GUARD_REMEDY_ENABLED));
        assert_true(guards_overlap(GUARD_REMEDY_ENABLED, GUARD_REMEDY_ENABLED));
        assert_true(guards_overlap(GUARD_REMEDY_ENABLED, GUARD_REMEDY_ALLOWED));
        assert_false(guards_overlap(GUARD_REMEDY_ALLOWED, GUARD_REMEDY_EXHAUSTED));
}

static void test_table_matches_walk(void **state) {
        (void) state;
        size_t n = 0;
        const Transition *tab = fsm_table(&n);

        /* Every row is reachable through fsm_step (no row shadowed by an
         * earlier one), with the inputs its guard needs. */
        for (size_t i = 0; i < n; i++) {
                FsmInputs in = {
                        .remedy_enabled = tab[i].guard != GUARD_REMEDY_DISABLED,
                        .remedy_allowed = tab[i].guard != GUARD_REMEDY_EXHAUSTED,
                        .dry_run = tab[i].guard == GUARD_REMEDY_DRY_RUN,
                        .rejoin_allowed = tab[i].guard != GUARD_REJOIN_HOT,
                };
                Transition t;

                assert_int_equal(fsm_step(tab[i].from, tab[i].event, &in, &t), 0);
                assert_int_equal(t.to, tab[i].to);
                assert_int_equal(t.action, tab[i].action);
                assert_int_equal(t.guard, tab[i].guard);
        }

        assert_non_null(fsm_table(NULL));
}

static void test_every_state_reachable(void **state) {
        (void) state;
        size_t n = 0;
        const Transition *tab = fsm_table(&n);
        bool seen[_STATE_MAX] = { [STATE_BOOT] = true };

        for (bool changed = true; changed;) {
                changed = false;
                for (size_t i = 0; i < n; i++)
                        if (seen[tab[i].from] && !seen[tab[i].to]) {
                                seen[tab[i].to] = true;
                                changed = true;
                        }
        }

        for (int s = 0; s < _STATE_MAX; s++)
                assert_true(seen[s]);
}

static void test_strings(void **state) {
        (void) state;
        static const char *const states[] = {
                "BOOT", "CHECKING", "SERVING", "OVERLOADED", "HOLDING",
                "DRAINING", "REMEDIATING", "QUARANTINED", "MAINTENANCE",
        };
        static const char *const events[] = {
                "start", "restore-maintenance", "checks-passed", "checks-failed", "breach",
                "cleared", "budget-granted", "budget-denied", "retry", "drained",
                "remedy-done", "remedy-failed", "maintenance", "resume", "restore-hold",
                "dry-run-done", "detach-failed",
        };
        static const char *const actions[] = {
                "none", "run-checks", "pool-join", "request-leave", "alert-breach", "hold",
                "note-cleared", "start-drain", "remediate", "quarantine", "give-up",
                "enter-maintenance", "dry-run", "note-dry-run", "wait-cool",
        };
        static const char *const guards[] = {
                "none", "remedy-enabled", "remedy-disabled", "remedy-allowed", "remedy-exhausted",
                "remedy-dry-run", "rejoin-allowed", "rejoin-hot",
        };

        assert_int_equal(ELEMENTSOF(states), _STATE_MAX);
        assert_int_equal(ELEMENTSOF(events), _EVENT_MAX);
        assert_int_equal(ELEMENTSOF(actions), _ACTION_MAX);
        assert_int_equal(ELEMENTSOF(guards), _GUARD_MAX);

        for (int i = 0; i < _STATE_MAX; i++) {
                assert_string_equal(state_to_string(i), states[i]);
                assert_int_equal(state_from_string(states[i]), i);
        }
        for (int i = 0; i < _EVENT_MAX; i++) {
                assert_string_equal(event_to_string(i), events[i]);
                assert_int_equal(event_from_string(events[i]), i);
        }
        for (int i = 0; i < _ACTION_MAX; i++)
                assert_string_equal(action_to_string(i), actions[i]);
        for (int i = 0; i < _GUARD_MAX; i++)
                assert_string_equal(guard_to_string(i), guards[i]);

        assert_null(state_to_string(_STATE_MAX));
        assert_null(state_to_string((State) -1));
        assert_null(event_to_string(_EVENT_MAX));
        assert_null(event_to_string(_EVENT_INVALID));
        assert_null(action_to_string(_ACTION_MAX));
        assert_null(action_to_string((Action) -1));
        assert_null(guard_to_string(_GUARD_MAX));
        assert_null(guard_to_string((Guard) -1));

        assert_int_equal(state_from_string(NULL), -EINVAL);
        assert_int_equal(state_from_string(""), -EINVAL);
        assert_int_equal(state_from_string("serving"), -EINVAL);
        assert_int_equal(state_from_string("SERVING "), -EINVAL);
        assert_int_equal(event_from_string(NULL), -EINVAL);
        assert_int_equal(event_from_string("BREACH"), -EINVAL);
        assert_int_equal(event_from_string("checks_passed"), -EINVAL);
        assert_int_equal(event_from_string("nope"), -EINVAL);
}

static void test_in_pool(void **state) {
        (void) state;
        for (int s = 0; s < _STATE_MAX; s++) {
                bool want = s == STATE_SERVING || s == STATE_OVERLOADED || s == STATE_HOLDING;
                assert_int_equal(state_is_in_pool(s), want);
        }
        assert_false(state_is_in_pool(_STATE_MAX));
        assert_false(state_is_in_pool(_STATE_INVALID));
}

static void test_remedy_window(void **state) {
        (void) state;
        const usec_t W = 3600 * USEC_PER_SEC;
        const usec_t now = 100000 * USEC_PER_SEC;

        /* Boundary: exactly now - window is outside, one usec later inside,
         * now itself inside. */
        usec_t t1[] = { now - W, now - W + 1, now };
        assert_int_equal(remedy_count_in_window(t1, ELEMENTSOF(t1), now, W), 2);

        /* Old ones drop out. */
        usec_t t2[] = { 1, now - 2 * W, now - W - 1 };
        assert_int_equal(remedy_count_in_window(t2, ELEMENTSOF(t2), now, W), 0);

        /* Future times (wall clock stepped back) count. */
        usec_t t3[] = { now + 1, now + 10 * W, now - 5 };
        assert_int_equal(remedy_count_in_window(t3, ELEMENTSOF(t3), now, W), 3);

        /* Window reaching before the epoch: no wrap-around, all counted. */
        usec_t t4[] = { 0, 5, 10 };
        assert_int_equal(remedy_count_in_window(t4, ELEMENTSOF(t4), 10, W), 3);
        /* now == window: boundary is 0, so 0 is outside. */
        assert_int_equal(remedy_count_in_window(t4, ELEMENTSOF(t4), 10, 10), 2);

        /* Zero window: (now, now] is empty; only future times remain. */
        assert_int_equal(remedy_count_in_window(t3, ELEMENTSOF(t3), now, 0), 2);

        /* Infinite window: everything. */
        assert_int_equal(remedy_count_in_window(t2, ELEMENTSOF(t2), now, USEC_INFINITY), 3);

        /* Empty. */
        assert_int_equal(remedy_count_in_window(t1, 0, now, W), 0);
        assert_int_equal(remedy_count_in_window(NULL, 0, now, W), 0);
        assert_int_equal(remedy_count_in_window(NULL, 5, now, W), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_pair),
                cmocka_unit_test(test_guards_reported),
                cmocka_unit_test(test_einval),
                cmocka_unit_test(test_table_unambiguous),
                cmocka_unit_test(test_table_matches_walk),
                cmocka_unit_test(test_every_state_reachable),
                cmocka_unit_test(test_strings),
                cmocka_unit_test(test_in_pool),
                cmocka_unit_test(test_remedy_window),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
