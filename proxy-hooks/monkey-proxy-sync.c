/* monkey-proxy-sync: makes one proxy follow one Doctor Monkey pool. It
 * reads the routable set from Redis (members of monkey:{P}:serving whose
 * owner still holds a lease) and either drives HAProxy's runtime API over
 * server-template slots or renders an nginx upstream file and reloads nginx.
 * It resyncs fully on start, on every event published on monkey:{P}:events,
 * on every reconnect, after the soonest lease expiry and periodically.
 *
 * I/O model. Redis is all on sd-event: the query connection and the
 * events subscription are RespConns (agent/loop/respconn.c: TLS, host
 * names looked up off the loop on every connect, every step bounded by
 * --timeout), so a sync's Redis part is a chain of callbacks (begin, read
 * the routable set, maybe ask about servers the proxy routes) and the
 * daemon hears events and signals throughout. Applying the set to the
 * proxy stays blocking with a deadline on every step (HAProxy: poll with
 * the time left; the reload command: waited for with a deadline, then
 * killed): a local socket or command, and this daemon's only work. An
 * event that arrives during a sync asks for one more right after it.
 *
 * With a sentinel:// URL the master is the one the sentinels name; a
 * sync that finds it moved (a failover: the sentinel's +switch-master,
 * watched, starts one at once) follows it and moves the subscription
 * there, which resyncs again. In a Redis Cluster the query connection
 * follows the pool's slot (MOVED); the subscription stays on any node
 * that is up, since every node hears every PUBLISH.
 *
 * Fail static: when Redis or the proxy cannot be reached the proxy keeps
 * what it has; and an empty routable set does not replace a non-empty one
 * unless --allow-empty (a flushed or restarted Redis must not drain the
 * site before the agents have registered again). A routed server that
 * Redis does not know at all (no owner in the addrs hash: Redis restarted
 * empty or was flushed) stays routed for --settle while the agents
 * register again one by one; a server whose owner Redis knows (in addrs,
 * or the agent's lease is live) and that is not routable is drained at
 * once.
 *
 * This file owns the Sync object (the loop, its timers and signals, the
 * pool's key names) and main; the modules: options.c (the command line),
 * redisconn.c (the query connection, Sentinel, Cluster), routable.c (the routable
 * set), eventsub.c (the events subscription), haproxy.c and nginx.c (the
 * writers), proxysync.c (the pure core), problem.c and retry.c. */
#include <signal.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "eventsub.h"
#include "haproxy.h"
#include "log.h"
#include "nginx.h"
#include "options.h"
#include "poolkeys.h"
#include "problem.h"
#include "redisconn.h"
#include "retry.h"
#include "routable.h"

/* Events come in bursts (a leave is several writes): one sync for all. */
#define COALESCE_USEC (10 * USEC_PER_MSEC)

typedef struct Sync {
        Options *opt;
        sd_event *event;
        sd_event_source *sig_term, *sig_int, *sig_hup;
        sd_event_source *sync_timer;

        RedisConn *conn;
        RedisConnSettings redis;
        Routable *routable;
        EventSub *sub;
        EventSub *watch; /* sentinel://: +switch-master on the sentinel that answered */
        Haproxy *haproxy; /* one of these two, per --haproxy-socket or --nginx-upstream */
        Nginx *nginx;

        char *k_serving, *k_lease_prefix, *k_addrs, *k_events;

        unsigned sync_failures;
        bool notified_ready;
        /* the sync under way */
        bool busy, again; /* again: asked for during it */
        bool reused, retried; /* a kept connection, and its one fresh try */
        unsigned fetches;
        Endpoint *want;
        size_t n_want;
        usec_t next;
        Problem problem;
        uint64_t syncs;
} Sync;

static void request_sync(Sync *s);

static void *mfree(void *p) {
        free(p);
        return NULL;
}

/* A sentinel:// master may have moved: the subscription goes where the
 * query connection went, the watch to the sentinel that said so. In a
 * cluster it stays where it is while it lives. */
static void sync_follow_master(Sync *s) {
        const char *host = NULL, *path = NULL;
        uint16_t port = 0;
        bool cluster = false;

        if (s->sub && redisconn_master(s->conn, &host, &port, &path, &cluster) >= 0 &&
            eventsub_follow(s->sub, host, port, path, cluster) < 0)
                log_oom();
        if (s->watch && redisconn_sentinel(s->conn, &host, &port) >= 0 &&
            eventsub_follow(s->watch, host, port, NULL, false) < 0)
                log_oom();
}

static void arm_sync(Sync *s, usec_t delay);

/* Every sync ends here, once. */
static void sync_done(Sync *s, int r, const char *error) {
        usec_t next;

        s->busy = false;
        s->want = mfree(s->want);
        s->n_want = 0;
        if (r < 0) {
                problem_report(&s->problem, "%s", error ? error : strerror(-r));
                s->sync_failures++;
                next = retry_backoff(s->sync_failures, MIN(RETRY_BACKOFF_MAX_USEC, s->opt->interval));
        } else {
                problem_recovered(&s->problem);
                s->sync_failures = 0;
                next = s->next;
        }
        if (s->opt->once) {
                (void) sd_event_exit(s->event, r < 0 ? 1 : 0);
                return;
        }
        if (!s->notified_ready) {
                /* Ready after the first attempt, whatever it gave: a unit that
                 * waits for us must not hang while Redis is down. */
                (void) sd_notify(false, "READY=1");
                s->notified_ready = true;
        }
        if (s->again) {
                s->again = false;
                next = 0;
        }
        arm_sync(s, MAX(next, COALESCE_USEC));
}

static void on_fetched(Routable *rt, int r, const char *error, void *userdata);

/* The proxy made to match s->want (blocking, each step bounded). */
static void sync_apply(Sync *s) {
        _cleanup_(freep) char *err = NULL;
        usec_t due = USEC_INFINITY;
        int r;

        if (s->haproxy)
                r = haproxy_apply(s->haproxy, &s->want, &s->n_want, routable_keep_forgotten, s->routable, &due, &err);
        else
                r = nginx_apply(s->nginx, &s->want, &s->n_want, routable_keep_forgotten, s->routable, &due, &err);
        /* The proxy routes servers the pool does not: Redis is asked about
         * them first (the writer changed nothing), then the writer again. */
        if (r == -EAGAIN && routable_wants_fetch(s->routable) && s->fetches++ < 3) {
                r = routable_fetch(s->routable, on_fetched, s);
                if (r >= 0)
                        return;
        }
        if (r < 0) {
                sync_done(s, r, err);
                return;
        }
        if (due != USEC_INFINITY)
                s->next = MIN(s->next, due);
        sync_done(s, 0, NULL);
}

static void on_fetched(Routable *rt, int r, const char *error, void *userdata) {
        Sync *s = userdata;

        if (r < 0) {
                sync_done(s, r, error);
                return;
        }
        sync_apply(s);
}

static void sync_begin(Sync *s);

static void on_read(Routable *rt, int r, Endpoint *eps, size_t n, long long min_pttl, size_t skipped,
                    const char *error, void *userdata) {
        Sync *s = userdata;

        if (r == -EIO && s->reused && !s->retried) {
                /* A kept connection can be stale (Redis restarted since the
                 * last sync): one fresh try before calling it a failure. */
                log_debug("%s: reconnecting", strna(error));
                s->retried = true;
                redisconn_drop(s->conn);
                sync_begin(s);
                return;
        }
        if (r < 0) {
                sync_done(s, r, error);
                return;
        }
        free(s->want);
        s->want = eps;
        s->n_want = n;
        sync_follow_master(s);
        log_debug("Pool %s: %zu routable, %zu in serving without a live lease", s->opt->pool, n, skipped);
        s->next = s->opt->interval;
        if (min_pttl >= 0)
                s->next = MIN(s->next, (usec_t) min_pttl * USEC_PER_MSEC + RETRY_SLACK_USEC);
        sync_apply(s);
}

static void on_begun(RedisConn *c, const char *error, void *userdata) {
        Sync *s = userdata;
        int r;

        if (error) {
                sync_done(s, -EIO, error);
                return;
        }
        r = routable_read(s->routable, on_read, s);
        if (r < 0)
                sync_done(s, r, "Redis query failed: not connected");
}

static void sync_begin(Sync *s) {
        int r;

        s->reused = redisconn_is_kept(s->conn);
        r = redisconn_begin(s->conn, on_begun, s);
        if (r < 0)
                sync_done(s, r, "Cannot start the Redis connection");
}

/* One full sync, from the loop: Redis (callbacks), then the proxy. */
static void sync_start(Sync *s) {
        if (s->busy) {
                s->again = true;
                return;
        }
        s->busy = true;
        s->syncs++;
        s->retried = false;
        s->fetches = 0;
        sync_begin(s);
}

static void arm_sync(Sync *s, usec_t delay) {
        uint64_t now;
        int r;

        r = sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                goto fail;
        r = sd_event_source_set_time(s->sync_timer, now + delay);
        if (r < 0)
                goto fail;
        r = sd_event_source_set_enabled(s->sync_timer, SD_EVENT_ONESHOT);
        if (r < 0)
                goto fail;
        return;
fail:
        log_error_errno(r, "Cannot arm the sync timer: %m");
        (void) sd_event_exit(s->event, 1);
}

static void request_sync(Sync *s) {
        uint64_t now, when = 0;

        /* Never postpone one already due sooner. */
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) >= 0 &&
            sd_event_source_get_time(s->sync_timer, &when) >= 0) {
                int on = SD_EVENT_OFF;
                (void) sd_event_source_get_enabled(s->sync_timer, &on);
                if (on != SD_EVENT_OFF && when <= now + COALESCE_USEC)
                        return;
        }
        arm_sync(s, COALESCE_USEC);
}

/* A message on the events channel, or a (re)subscription. */
static void on_pool_event(void *userdata) {
        request_sync(userdata);
}

static int on_sync_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        sync_start(userdata);
        return 0;
}

static int on_signal(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata) {
        Sync *s = userdata;

        if (si->ssi_signo == SIGHUP) {
                log_info("SIGHUP: full resync%s", s->opt->target == TARGET_NGINX ? " and nginx reload" : "");
                if (s->nginx)
                        nginx_request_reload(s->nginx);
                request_sync(s);
                return 0;
        }
        log_info("Exiting on %s", strsignal((int) si->ssi_signo));
        return sd_event_exit(s->event, 0);
}

static Sync *sync_free(Sync *s) {
        if (!s)
                return NULL;
        eventsub_free(s->sub);
        eventsub_free(s->watch);
        haproxy_free(s->haproxy);
        nginx_free(s->nginx);
        /* The connection first: it drops its callbacks, which point into
         * the routable set's read. */
        redisconn_free(s->conn);
        routable_free(s->routable);
        free(s->want);
        sd_event_source_disable_unref(s->sync_timer);
        sd_event_source_disable_unref(s->sig_term);
        sd_event_source_disable_unref(s->sig_int);
        sd_event_source_disable_unref(s->sig_hup);
        sd_event_unref(s->event);
        free(s->k_serving);
        free(s->k_lease_prefix);
        free(s->k_addrs);
        free(s->k_events);
        problem_done(&s->problem);
        free(s);
        return NULL;
}

static void sync_freep(Sync **s) {
        sync_free(*s);
}

static int sync_new(Options *o, Sync **ret) {
        _cleanup_(sync_freep) Sync *s = calloc(1, sizeof(Sync));

        if (!s)
                return -ENOMEM;
        s->opt = o;
        if (poolkeys_key(o->pool, POOL_KEY_SERVING, NULL, &s->k_serving) < 0 ||
            poolkeys_key(o->pool, POOL_KEY_LEASE, "", &s->k_lease_prefix) < 0 ||
            poolkeys_key(o->pool, POOL_KEY_ADDRS, NULL, &s->k_addrs) < 0 ||
            poolkeys_key(o->pool, POOL_KEY_EVENTS, NULL, &s->k_events) < 0)
                return -ENOMEM;
        RoutableKeys keys = { .serving = s->k_serving, .lease_prefix = s->k_lease_prefix, .addrs = s->k_addrs };
        s->redis = (RedisConnSettings) {
                .url = &o->redis,
                .tls = o->tls,
                .tls_server_name = o->tls_server_name,
                .timeout = o->timeout,
        };
        if (sd_event_new(&s->event) < 0 || redisconn_new(s->event, &s->redis, &s->conn) < 0 ||
            routable_new(s->conn, &keys, o->pool, o->settle, &s->routable) < 0)
                return -ENOMEM;
        if (o->target == TARGET_HAPROXY ? haproxy_new(o, &s->haproxy) < 0 : nginx_new(o, &s->nginx) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(s);
        return 0;
}

static int sync_run(Sync *s) {
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(negative_errno(), "Cannot block signals: %m");
        if ((r = sd_event_add_signal(s->event, &s->sig_term, SIGTERM, on_signal, s)) < 0 ||
            (r = sd_event_add_signal(s->event, &s->sig_int, SIGINT, on_signal, s)) < 0 ||
            (r = sd_event_add_signal(s->event, &s->sig_hup, SIGHUP, on_signal, s)) < 0)
                return log_error_errno(r, "Cannot watch signals: %m");
        (void) sd_event_set_watchdog(s->event, true);

        r = sd_event_add_time(s->event, &s->sync_timer, CLOCK_MONOTONIC, 0, 1, on_sync_timer, s);
        if (r < 0)
                return log_error_errno(r, "Cannot add the sync timer: %m");
        if (s->opt->once) {
                /* One sync, on the loop, then out: its exit status is the loop's. */
                arm_sync(s, 0);
                return sd_event_loop(s->event);
        }
        r = eventsub_new(s->event, &s->redis, true, s->k_events, &s->problem, on_pool_event, s, &s->sub);
        if (r < 0)
                return log_error_errno(r, "Cannot add the subscriber: %m");
        /* A failover is decided on the sentinels: +switch-master says so
         * at once, and the sync it starts asks them where the master is. */
        if (s->opt->redis.kind == REDIS_URL_SENTINEL) {
                r = eventsub_new(s->event, &s->redis, false, "+switch-master", &s->problem, on_pool_event, s,
                                 &s->watch);
                if (r < 0)
                        return log_error_errno(r, "Cannot add the sentinel watch: %m");
        }

        /* Through Sentinel, the first sync finds the master to subscribe on. */
        sync_follow_master(s);
        arm_sync(s, 0);
        log_info(PROG " %s: pool %s -> %s %s", MONKEY_VERSION, s->opt->pool,
                 s->opt->target == TARGET_HAPROXY ? "HAProxy backend" : "nginx upstream file",
                 s->opt->target == TARGET_HAPROXY ? s->opt->backend : s->opt->nginx_file);
        r = sd_event_loop(s->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return r;
}

int main(int argc, char *argv[]) {
        _cleanup_(options_done) Options o = {};
        _cleanup_(sync_freep) Sync *s = NULL;
        int r;

        r = options_parse(argc, argv, &o);
        if (r == -ECANCELED)
                return 0;
        if (r == -ENOMEM)
                return log_oom(), 1;
        if (r < 0)
                return 2;

        log_setup(LOG_TARGET_AUTO);
        if (o.log_level >= 0)
                log_max_level = o.log_level;

        r = sync_new(&o, &s);
        if (r < 0)
                return log_oom(), 1;
        r = sync_run(s);
        return r != 0 ? 1 : 0;
}
