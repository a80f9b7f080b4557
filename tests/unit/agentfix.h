/* A monkeyd on a temp dir for the tests that run a whole Agent in-process
 * (test_agent.c, test_remedy.c; agentfix.c is linked into both): its
 * boot id, a /proc/stat whose counters never move (every sample is
 * skipped: the tests post the events), a config without pool or Slack,
 * with the ladder given, and the loop run here with bounded waits.
 *
 * The clock is fake where the rules read wall time: agentfix.c stands in
 * for sd_event_now (-Wl,--wrap=sd_event_now, tests/meson.build), so the
 * loop's CLOCK_REALTIME and CLOCK_BOOTTIME (the incident's and the
 * remediations' times, the reboot-loop guard, a reboot's timeout) run
 * ahead of the real ones, and agentfix_advance() moves both on without
 * waiting. CLOCK_MONOTONIC and the timers stay real: they only step the
 * loop, and the waits for them are short. */
#pragma once

#include <stdbool.h>

#include "agent.h"

#define AGENTFIX_BOOT_ID "6f1c2e4a-8b3d-4c5e-9f70-1a2b3c4d5e6f"
/* How far ahead the fake clock starts: what it wrote is told from what
 * a real clock would have. */
#define AGENTFIX_SKEW (10 * USEC_PER_DAY)

typedef struct AgentFix {
        char *dir;
        char *config;           /* dir/monkeyd.conf */
        char *state_dir;        /* dir/state */
        Agent *a;               /* NULL until agentfix_up() */
} AgentFix;

/* Writes dir's files; returns the config file's path (malloc'ed). */
char *agentfix_write(const char *dir, const char *ladder);

/* A temp dir with the config for `ladder`, the fake clock reset; no agent
 * yet. agentfix_free() frees the agent too and removes the dir. */
AgentFix *agentfix_new(const char *ladder);
void agentfix_free(AgentFix *f);

/* A new agent on f's config, started: the first, or a restart in the same
 * boot (the previous one is freed first, as if killed). */
void agentfix_up(AgentFix *f);

/* Run the loop until done(f), or fail after a bounded wait. */
void agentfix_run_for(AgentFix *f, bool (*done)(AgentFix *f));
/* Run the loop until the machine is in `want` with no event queued, then
 * a little more for what the last step queued (the writer's answers);
 * fail after a bounded wait. */
void agentfix_run_until(AgentFix *f, State want);
/* A few short turns of the loop. */
void agentfix_settle(AgentFix *f);

/* The fake clock: what the loop reads as CLOCK_REALTIME now, and moving
 * it and CLOCK_BOOTTIME on by `d`. */
usec_t agentfix_now_wall(void);
void agentfix_advance(usec_t d);
