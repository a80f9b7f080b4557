/* HAProxy agent-check: a TCP listener that answers each connection with one
 * line of HAProxy's agent protocol computed from the agent's state, then
 * closes. HAProxy polls it every agent-inter, so it stops sending new
 * requests within one interval of a leave, even with Redis down.
 *   SERVING, OVERLOADED, HOLDING      -> "up ready"
 *   DRAINING                          -> "drain"
 *   everything else (BOOT, CHECKING, REMEDIATING, QUARANTINED, MAINTENANCE)
 *                                     -> "maint"
 * "ready" (not just "up") is what clears a drain in HAProxy 2.6. */
#pragma once

#include <systemd/sd-event.h>

#include "machine.h"

typedef struct AgentCheck AgentCheck;

/* Pure: the reply line for a state, with "\n". */
const char *agentcheck_word(State s);

/* Listens on address:port (IPv4 or IPv6 literal). state_of() is asked for
 * the current state on every connection. */
int agentcheck_new(sd_event *e, const char *address, uint16_t port, State (*state_of)(void *userdata),
                   void *userdata, AgentCheck **ret);
AgentCheck *agentcheck_free(AgentCheck *a);
static inline void agentcheck_freep(AgentCheck **a) {
        agentcheck_free(*a);
}
/* The bound port (useful when port 0 was asked for). */
uint16_t agentcheck_port(const AgentCheck *a);
