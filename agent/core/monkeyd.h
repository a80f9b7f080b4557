/* The daemon as main.c sees it: an opaque Agent to create from a config
 * file, run until SIGTERM, and free. What is inside (the loop, the config,
 * the sub-objects it owns) is agent.c's alone (agent.h). */
#pragma once

typedef struct Agent Agent;

/* Load the config (a bad one is an error: the caller exits 2), open the
 * state, wire the loop. Nothing has happened to the pool yet. */
int agent_new(const char *config_path, Agent **ret, char **ret_error);
Agent *agent_free(Agent *a);
static inline void agent_freep(Agent **a) {
        agent_free(*a);
}

/* Run until SIGTERM/SIGINT. Returns 0 on a clean stop. */
int agent_run(Agent *a);
