/* monkey-proxy-sync's ear on the pool: SUBSCRIBE to the events channel
 * with hiredis async on sd-event, connect and subscribe bounded by a
 * timer, reconnected with backoff when lost, and moved when the master
 * moves (eventsub_follow). Every message, and every (re)subscription,
 * calls `changed`: the caller resyncs fully; so does each lost
 * subscription of a sentinel:// URL, since the resync asks the sentinels
 * where the master went. Owns the async connection,
 * its timer and the address it follows; the event loop, the URL (for
 * AUTH), the channel name and the Problem are the caller's. It also
 * watches a sentinel's +switch-master (no URL: no AUTH). */
#pragma once

#include <systemd/sd-event.h>

#include "problem.h"
#include "redisurl.h"

typedef struct EventSub EventSub;

typedef void (*EventSubChanged)(void *userdata);

/* timeout: connect + SUBSCRIBE must be done within 3 x timeout. Nothing
 * is connected before eventsub_follow names the server. url: AUTH with
 * its user and password, and whether it is sentinel:// (NULL: neither). */
int eventsub_new(sd_event *e, const RedisUrl *url, const char *channel, usec_t timeout, Problem *problem,
                 EventSubChanged changed, void *userdata, EventSub **ret);
EventSub *eventsub_free(EventSub *s);

/* Subscribe on this server (host:port, or the unix socket path): the same
 * one keeps the subscription as it is; another drops it and subscribes
 * there (a Sentinel failover moved the master). */
int eventsub_follow(EventSub *s, const char *host, uint16_t port, const char *path);
