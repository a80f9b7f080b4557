/* The events subscription: see eventsub.h. */
#include <hiredis/async.h>

#include "eventsub.h"
#include "log.h"
#include "redis_event.h"
#include "retry.h"

struct EventSub {
        sd_event *event;
        const RedisUrl *url;
        const char *channel;
        usec_t timeout;
        Problem *problem;
        EventSubChanged changed;
        void *userdata;

        sd_event_source *timer; /* connect + subscribe deadline, or the reconnect */
        redisAsyncContext *ac;
        bool subscribed;
        unsigned failures;
        char *host, *path; /* the server we follow: one of them, or neither before eventsub_follow */
        uint16_t port;
};

static void eventsub_schedule_reconnect(EventSub *s);

static void eventsub_on_disconnect(const redisAsyncContext *ac, int status) {
        EventSub *s = ac->data;

        if (s->ac != ac)
                return;
        /* hiredis frees the context after this returns. */
        s->ac = NULL;
        if (s->subscribed)
                log_warning("Lost the Redis events subscription to %s: %s, reconnecting", s->channel,
                            ac->errstr[0] ? ac->errstr : "closed");
        s->subscribed = false;
        eventsub_schedule_reconnect(s);
}

static void eventsub_on_connect(const redisAsyncContext *ac, int status) {
        EventSub *s = ac->data;

        if (status == REDIS_OK || s->ac != ac)
                return;
        /* hiredis frees a context whose connect failed, without calling the
         * disconnect callback. */
        s->ac = NULL;
        s->subscribed = false;
        problem_report(s->problem, "Cannot subscribe to %s: %s", s->channel, ac->errstr);
        eventsub_schedule_reconnect(s);
}

static void eventsub_on_auth(redisAsyncContext *ac, void *reply, void *privdata) {
        redisReply *rep = reply;
        EventSub *s = privdata;

        if (rep && rep->type == REDIS_REPLY_ERROR) {
                problem_report(s->problem, "Redis AUTH failed on the events connection: %s", rep->str);
                redisAsyncDisconnect(ac);
        }
}

static void eventsub_on_message(redisAsyncContext *ac, void *reply, void *privdata) {
        redisReply *rep = reply;
        EventSub *s = privdata;

        if (!rep || s->ac != ac)
                return; /* NULL: the context is going away */
        if (rep->type == REDIS_REPLY_ERROR) {
                problem_report(s->problem, "SUBSCRIBE %s: %s", s->channel, rep->str);
                redisAsyncDisconnect(ac);
                return;
        }
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 || rep->element[0]->type != REDIS_REPLY_STRING)
                return;
        if (streq(rep->element[0]->str, "subscribe")) {
                log_info("Subscribed to %s", s->channel);
                s->subscribed = true;
                s->failures = 0;
                (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
                /* Whatever happened while we were not listening. */
                s->changed(s->userdata);
                return;
        }
        if (streq(rep->element[0]->str, "message")) {
                if (rep->element[2]->type == REDIS_REPLY_STRING)
                        log_debug("Event: %.300s", rep->element[2]->str);
                s->changed(s->userdata);
        }
}

static void eventsub_connect(EventSub *s) {
        redisAsyncContext *ac;
        uint64_t now;
        int r;

        if (!s->host && !s->path)
                return; /* nothing to follow yet */
        ac = s->path ? redisAsyncConnectUnix(s->path) : redisAsyncConnect(s->host, s->port);
        if (!ac) {
                log_oom();
                eventsub_schedule_reconnect(s);
                return;
        }
        if (ac->err) {
                problem_report(s->problem, "Cannot subscribe to %s: %s", s->channel, ac->errstr);
                redisAsyncFree(ac);
                eventsub_schedule_reconnect(s);
                return;
        }
        r = redis_event_attach(ac, s->event);
        if (r < 0) {
                log_error_errno(r, "Cannot watch the Redis events connection: %m");
                redisAsyncFree(ac);
                eventsub_schedule_reconnect(s);
                return;
        }
        ac->data = s;
        s->ac = ac;
        s->subscribed = false;
        redisAsyncSetConnectCallback(ac, eventsub_on_connect);
        redisAsyncSetDisconnectCallback(ac, eventsub_on_disconnect);
        if (s->url && s->url->password) {
                if (s->url->user)
                        redisAsyncCommand(ac, eventsub_on_auth, s, "AUTH %s %s", s->url->user, s->url->password);
                else
                        redisAsyncCommand(ac, eventsub_on_auth, s, "AUTH %s", s->url->password);
        }
        /* Pub/sub ignores SELECT: channels are server-wide. */
        redisAsyncCommand(ac, eventsub_on_message, s, "SUBSCRIBE %s", s->channel);

        /* Connect + subscribe must finish in time; hiredis has no timeouts. */
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) >= 0 &&
            sd_event_source_set_time(s->timer, now + 3 * s->timeout) >= 0)
                (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

static void eventsub_schedule_reconnect(EventSub *s) {
        uint64_t now;

        s->failures++;
        /* Through Sentinel, a lost master may have been replaced: only a
         * sync asks the sentinels, and it then moves us (eventsub_follow).
         * Without this, nothing would sync before --interval. */
        if (s->url && s->url->kind == REDIS_URL_SENTINEL)
                s->changed(s->userdata);
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0)
                return;
        if (sd_event_source_set_time(s->timer, now + retry_backoff(s->failures, RETRY_BACKOFF_MAX_USEC)) >= 0)
                (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

static int eventsub_on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        EventSub *s = userdata;

        if (s->ac) {
                if (s->subscribed)
                        return 0;
                /* Connect or SUBSCRIBE timed out. Freeing a context that never
                 * connected calls no callback: reschedule ourselves. */
                redisAsyncContext *ac = s->ac;
                s->ac = NULL;
                problem_report(s->problem, "Subscribing to %s timed out", s->channel);
                redisAsyncFree(ac);
                eventsub_schedule_reconnect(s);
                return 0;
        }
        eventsub_connect(s);
        return 0;
}

int eventsub_new(sd_event *e, const RedisUrl *url, const char *channel, usec_t timeout, Problem *problem,
                 EventSubChanged changed, void *userdata, EventSub **ret) {
        EventSub *s = calloc(1, sizeof(EventSub));
        int r;

        if (!s)
                return -ENOMEM;
        *s = (EventSub) {
                .event = sd_event_ref(e),
                .url = url,
                .channel = channel,
                .timeout = timeout,
                .problem = problem,
                .changed = changed,
                .userdata = userdata,
        };
        r = sd_event_add_time(e, &s->timer, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_MSEC, eventsub_on_timer, s);
        if (r < 0) {
                eventsub_free(s);
                return r;
        }
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        *ret = s;
        return 0;
}

/* Frees the connection; its disconnect callback finds s->ac gone and
 * schedules nothing. */
static void eventsub_drop(EventSub *s) {
        if (s->ac) {
                redisAsyncContext *ac = s->ac;
                s->ac = NULL;
                redisAsyncFree(ac);
        }
        s->subscribed = false;
}

EventSub *eventsub_free(EventSub *s) {
        if (!s)
                return NULL;
        eventsub_drop(s);
        sd_event_source_disable_unref(s->timer);
        sd_event_unref(s->event);
        free(s->host);
        free(s->path);
        free(s);
        return NULL;
}

int eventsub_follow(EventSub *s, const char *host, uint16_t port, const char *path) {
        char *h = NULL, *p = NULL;

        if (streq_ptr(s->host, host) && streq_ptr(s->path, path) && s->port == port)
                return 0;
        if ((host && !(h = strdup(host))) || (path && !(p = strdup(path)))) {
                free(h);
                return -ENOMEM;
        }
        if (s->host || s->path)
                log_info("The master moved to %s:%u: subscribing to %s there", strna(host), (unsigned) port,
                         s->channel);
        free(s->host);
        free(s->path);
        s->host = h;
        s->path = p;
        s->port = port;
        eventsub_drop(s);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        s->failures = 0;
        eventsub_connect(s);
        return 0;
}
