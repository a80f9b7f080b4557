/* The events subscription: see eventsub.h. The RespConn is freed at once
 * when given up (safe inside its own callbacks, and then it calls no
 * handler); every callback checks that its connection is still ours. */
#include "eventsub.h"
#include "log.h"
#include "redisreply.h"
#include "respconn.h"
#include "retry.h"

struct EventSub {
        sd_event *event;
        RedisConnSettings set;
        bool auth;
        const char *channel;
        Problem *problem;
        EventSubChanged changed;
        void *userdata;

        sd_event_source *timer; /* connect + subscribe deadline, or the reconnect */
        RespConn *rc;
        bool subscribed;
        unsigned failures;
        char *host, *path; /* the server we follow: one of them, or neither before eventsub_follow */
        uint16_t port;
};

static void eventsub_schedule_reconnect(EventSub *s);

/* Given up: freed now; no handler of it runs after this. */
static void eventsub_drop(EventSub *s) {
        respconn_free(TAKE_PTR(s->rc));
        s->subscribed = false;
}

static void eventsub_lost(EventSub *s, const char *why) {
        if (s->subscribed)
                log_warning("Lost the Redis events subscription to %s: %s, reconnecting", s->channel, why);
        else
                problem_report(s->problem, "Cannot subscribe to %s: %s", s->channel, why);
        eventsub_drop(s);
        eventsub_schedule_reconnect(s);
}

static void eventsub_on_closed(RespConn *rc, const char *error, void *userdata) {
        EventSub *s = userdata;

        if (rc != s->rc)
                return;
        eventsub_lost(s, error);
}

static void eventsub_on_auth(RespConn *rc, const redisReply *r, const char *error, void *userdata) {
        EventSub *s = userdata;

        if (rc != s->rc || !r || !redisreply_error(r))
                return;
        problem_report(s->problem, "Redis AUTH failed on the events connection: %s", redisreply_error(r));
        eventsub_drop(s);
        eventsub_schedule_reconnect(s);
}

static void eventsub_on_subscribed(RespConn *rc, const redisReply *r, const char *error, void *userdata) {
        EventSub *s = userdata;

        if (rc != s->rc || !r)
                return; /* closed: eventsub_on_closed says why */
        if (redisreply_error(r)) {
                problem_report(s->problem, "SUBSCRIBE %s: %s", s->channel, redisreply_error(r));
                eventsub_drop(s);
                eventsub_schedule_reconnect(s);
                return;
        }
        log_info("Subscribed to %s", s->channel);
        s->subscribed = true;
        s->failures = 0;
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        /* Whatever happened while we were not listening. */
        s->changed(s->userdata);
}

static void eventsub_on_push(RespConn *rc, const redisReply *r, void *userdata) {
        EventSub *s = userdata;

        if (rc != s->rc || r->type != REDIS_REPLY_ARRAY || r->elements < 3 || !redisreply_is_string(r->element[0]) ||
            !streq(r->element[0]->str, "message"))
                return;
        if (redisreply_is_string(r->element[2]))
                log_debug("Event: %.300s", r->element[2]->str);
        s->changed(s->userdata);
}

static void eventsub_connect(EventSub *s) {
        const RedisUrl *u = s->set.url;
        RespConnOptions o = {
                .host = s->path ? NULL : s->host,
                .port = s->port,
                .path = s->path,
                .tls = s->path ? NULL : s->set.tls,
                .tls_server_name = s->set.tls_server_name,
                .connect_timeout = s->set.timeout,
                .reply_timeout = s->set.timeout,
        };
        RespConnHandlers h = { .closed = eventsub_on_closed, .push = eventsub_on_push, .userdata = s };
        _cleanup_(freep) char *err = NULL;
        int r;

        if (!s->host && !s->path)
                return; /* nothing to follow yet */
        r = respconn_new(s->event, &o, &h, &s->rc, &err);
        if (r < 0) {
                problem_report(s->problem, "Cannot subscribe to %s: %s", s->channel, err ? err : strerror(-r));
                eventsub_schedule_reconnect(s);
                return;
        }
        s->subscribed = false;
        if (s->auth && u->password) {
                const char *auth_user[] = { "AUTH", u->user, u->password };
                const char *auth[] = { "AUTH", u->password };
                r = u->user ? respconn_command(s->rc, 3, auth_user, NULL, eventsub_on_auth, s)
                            : respconn_command(s->rc, 2, auth, NULL, eventsub_on_auth, s);
        }
        /* Pub/sub ignores SELECT: channels are server-wide. */
        if (r >= 0)
                r = respconn_command(s->rc, 2, (const char *const[]) { "SUBSCRIBE", s->channel }, NULL,
                                     eventsub_on_subscribed, s);
        if (r < 0) {
                eventsub_lost(s, "out of memory");
                return;
        }
        /* Connect + subscribe must finish in time, even if each step
         * takes just under its own timeout. */
        (void) sd_event_source_set_time_relative(s->timer, 3 * s->set.timeout);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

static void eventsub_schedule_reconnect(EventSub *s) {
        s->failures++;
        /* Through Sentinel, a lost master may have been replaced: only a
         * sync asks the sentinels, and it then moves us (eventsub_follow).
         * Without this, nothing would sync before --interval. The same in
         * a cluster: a sync finds where the slot went. */
        if (s->auth && (s->set.url->kind == REDIS_URL_SENTINEL || s->set.url->n_seeds > 1))
                s->changed(s->userdata);
        if (sd_event_source_set_time_relative(s->timer, retry_backoff(s->failures, RETRY_BACKOFF_MAX_USEC)) >= 0)
                (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

static int eventsub_on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        EventSub *s = userdata;

        if (s->rc) {
                if (s->subscribed)
                        return 0;
                problem_report(s->problem, "Subscribing to %s timed out", s->channel);
                eventsub_drop(s);
                eventsub_schedule_reconnect(s);
                return 0;
        }
        eventsub_connect(s);
        return 0;
}

int eventsub_new(sd_event *e, const RedisConnSettings *settings, bool auth, const char *channel, Problem *problem,
                 EventSubChanged changed, void *userdata, EventSub **ret) {
        EventSub *s = calloc(1, sizeof(EventSub));
        int r;

        if (!s)
                return -ENOMEM;
        *s = (EventSub) {
                .event = sd_event_ref(e),
                .set = *settings,
                .auth = auth,
                .channel = channel,
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

int eventsub_follow(EventSub *s, const char *host, uint16_t port, const char *path, bool lazy) {
        char *h = NULL, *p = NULL;

        if (streq_ptr(s->host, host) && streq_ptr(s->path, path) && s->port == port)
                return 0;
        if ((host && !(h = strdup(host))) || (path && !(p = strdup(path)))) {
                free(h);
                return -ENOMEM;
        }
        bool moved = s->host || s->path;
        free(s->host);
        free(s->path);
        s->host = h;
        s->path = p;
        s->port = port;
        if (lazy && (s->rc || moved))
                return 0; /* kept where it is; a reconnect goes to the new place */
        if (moved)
                log_info("The master moved to %s:%u: subscribing to %s there", strna(host), (unsigned) port,
                         s->channel);
        eventsub_drop(s);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        s->failures = 0;
        eventsub_connect(s);
        return 0;
}
