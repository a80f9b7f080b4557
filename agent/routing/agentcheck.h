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

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "config.h"
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

/* Whether HAProxy, connecting to proxy_ip (the server's own address), meets
 * a listener bound to listen_ip. Pure. */
typedef enum AgentCheckReach {
        AGENTCHECK_REACH_YES,
        AGENTCHECK_REACH_NO,
        AGENTCHECK_REACH_UNKNOWN, /* proxy_ip unknown: [pool] address is a name, or no [pool]/[checks] */
} AgentCheckReach;
AgentCheckReach agentcheck_reachable(const char *listen_ip, const char *proxy_ip);

/* The listener of the [proxy] section: on agent_check_address (by default
 * the IP of [pool] address, see config.h). A default that is not an
 * address of this host (EADDRNOTAVAIL: a NAT'd address) falls back to the
 * wildcard. Warns (log and status) when proxies, connecting to the
 * server's own address, cannot reach it; notes when that cannot be told.
 * Keeps no pointer into c. */
int agentcheck_new_from_config(sd_event *e, const Config *c, State (*state_of)(void *userdata), void *userdata,
                               AgentCheck **ret);
/* Why drains may not reach HAProxy, or NULL. */
const char *agentcheck_warning(const AgentCheck *a);
/* {"address", "port", "from", "proxies_connect_to", "reachable", "warning", "note"}; JSON null for NULL. */
json_object *agentcheck_status_json(const AgentCheck *a);
