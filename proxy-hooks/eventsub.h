/* monkey-proxy-sync's ear on the pool: SUBSCRIBE to the events channel
 * over a RespConn on sd-event (TLS, host names looked up off the loop, as
 * the query connection), connect and subscribe bounded by a timer,
 * reconnected with backoff when lost, and moved when the master moves
 * (eventsub_follow). Every message, and every (re)subscription, calls
 * `changed`: the caller resyncs fully; so does each lost subscription of
 * a sentinel:// URL or a cluster, since the resync asks where the master
 * or the slot went. Owns the connection, its timer and the address it
 * follows; the event loop, the URL (for AUTH), the TLS context, the
 * channel name and the Problem are the caller's. It also watches a
 * sentinel's +switch-master (no AUTH). */
#pragma once

#include <systemd/sd-event.h>

#include "problem.h"
#include "redisconn.h"
#include "redisurl.h"

typedef struct EventSub EventSub;

typedef void (*EventSubChanged)(void *userdata);

/* settings: the URL (AUTH with its user and password, and whether it is
 * sentinel://), TLS and the timeout: connect + SUBSCRIBE must be done
 * within 3 x timeout. auth false: no AUTH (a sentinel). Nothing is
 * connected before eventsub_follow names the server. */
int eventsub_new(sd_event *e, const RedisConnSettings *settings, bool auth, const char *channel, Problem *problem,
                 EventSubChanged changed, void *userdata, EventSub **ret);
EventSub *eventsub_free(EventSub *s);

/* Subscribe on this server (host:port, or the unix socket path): the same
 * one keeps the subscription as it is; another drops it and subscribes
 * there (a Sentinel failover moved the master). lazy: a live subscription
 * stays where it is and the server is only where the next reconnect goes
 * (a Redis Cluster: every node hears every PUBLISH). */
int eventsub_follow(EventSub *s, const char *host, uint16_t port, const char *path, bool lazy);
