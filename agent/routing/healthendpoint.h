/* The HTTP health endpoint of [proxy] health_port: what a load balancer's
 * HTTP health check (an AWS ALB or NLB target group, anything that speaks
 * HTTP) asks. GET or HEAD on health_path answers
 *   200 while the host should receive traffic (SERVING, OVERLOADED, HOLDING)
 *   503 otherwise (DRAINING, CHECKING, REMEDIATING, QUARANTINED, MAINTENANCE, BOOT)
 * from state_traffic(), the decision HAProxy's agent-check answers from
 * too. The body is one line, "serving\n" or "draining: REASON\n"; with
 * ?format=json, {"state", "reason", "traffic"}. Owns the HttpServer it
 * listens with (httpserver.h); other pages may be added to it. */
#pragma once

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "httpserver.h"
#include "machine.h"

typedef struct HealthEndpoint HealthEndpoint;

/* The state and why (NULL or "" when nothing is said), asked on every
 * request. The reason is copied before the callback is asked again. */
typedef State (*HealthStateOf)(void *userdata, const char **ret_reason);

/* Pure: the status and the body of an answer. json: the JSON form. The
 * reason is cut short and stripped of control characters. */
unsigned healthendpoint_status(State s);
int healthendpoint_body(State s, const char *reason, bool json, char **ret_body, size_t *ret_len);

/* Answers on path of server, which it takes (and frees, even on failure). */
int healthendpoint_new(HttpServer *server, const char *path, HealthStateOf state_of, void *userdata,
                       HealthEndpoint **ret);

/* The listener of [proxy] health_port on health_address (derived as the
 * agent-check's is, see config.h; a derived address that is not on this
 * host falls back to the wildcard of its family). Negative errno, logged
 * with the address and port. Keeps no pointer into c. */
int healthendpoint_new_from_config(sd_event *e, const Config *c, HealthStateOf state_of, void *userdata,
                                   HealthEndpoint **ret);
HealthEndpoint *healthendpoint_free(HealthEndpoint *h);
static inline void healthendpoint_freep(HealthEndpoint **h) {
        healthendpoint_free(*h);
}

HttpServer *healthendpoint_server(const HealthEndpoint *h);
uint16_t healthendpoint_port(const HealthEndpoint *h);

/* {"address", "port", "path", "from", "connections", "requests", "refused"}. */
json_object *healthendpoint_status_json(const HealthEndpoint *h);
