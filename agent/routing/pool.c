/* The pool client's membership: our own view of this host, reconciled to
 * Redis over the link (pool_link.c) with the scripts of pool_scripts.c;
 * the heartbeat; budget-checked leaves and their answers; the cached view
 * that status reads. Leave answers go through a defer source, never
 * re-entrantly. */
#include "pool.h"

#include <inttypes.h>

#include "backoff.h"
#include "clock.h"
#include "error.h"
#include "log.h"
#include "pool_link.h"
#include "pool_scripts.h"
#include "poolkeys.h"
#include "random.h"

/* Up to this many members every heartbeat refreshes the full member list;
 * above, only the O(log N) summary, and the list when someone asks
 * (monkeyctl pool): thousands of agents each walking thousands of members
 * every heartbeat would be O(N^2) work for one Redis. */
#define POOL_VIEW_BIG 256
#define POOL_DETAIL_MAX 320

typedef struct LeaveReq LeaveReq;
struct LeaveReq {
        bool force;
        bool peek;      /* a dry run: the budget's answer, nothing taken */
        char *reason;
        pool_leave_handler_t handler;
        void *userdata;
        PoolLeaveResult result;
        char *detail;
        LeaveReq *next;
};

static const char *leave_req_mode(const LeaveReq *r) {
        return r->peek ? POOL_LEAVE_MODE_PEEK : r->force ? POOL_LEAVE_MODE_FORCE : POOL_LEAVE_MODE_BUDGET;
}

typedef struct LeaveQueue {
        LeaveReq *head, *tail;
} LeaveQueue;

/* A leave script in flight. */
typedef struct LeaveCmd {
        Pool *pool;
        const char *mode; /* POOL_LEAVE_MODE_* */
        LeaveReq *req;    /* a caller waits for this leave; NULL: a reconcile */
} LeaveCmd;

struct Pool {
        sd_event *event;
        PoolLink *link;

        /* Copies: the Config is freed on reload. min_serving and
         * max_unavailable are this host's config: only the seed of the
         * pool's own budget, which the scripts read from Redis. */
        char *name, *host, *address, *list_key;
        unsigned min_serving, max_unavailable;
        long long pool_min, pool_max; /* the pool's budget as last seen; -1: not seen yet */
        long long noted_min, noted_max; /* the pool's budget when the journal last heard it differs; -1 */
        unsigned noted_config_min, noted_config_max;
        usec_t lease, heartbeat, out_max;
        PoolKeys keys; /* every key of the pool, this host's own per-host ones */

        /* Our own view of this host. */
        char *state, *reason, *last_checks;
        usec_t since_wall;
        bool desired_serving;
        usec_t left_boottime; /* CLOCK_BOOTTIME when desired_serving last went false; 0: not counted out */
        bool release_wanted;  /* out, and not counted against max_unavailable (pool_release) */
        int member; /* what Redis said last: 1, 0, -1 unknown */

        /* What is in flight on the link's current connection. */
        unsigned membership_in_flight;
        bool heartbeat_in_flight, view_in_flight, freeing;
        bool view_full_pending, members_wanted;
        json_object *members;   /* from the last full view */
        sd_event_source *heartbeat_timer, *answer_defer;

        LeaveQueue waiting, answered;

        /* The cache status reads. */
        json_object *view;
        usec_t view_at; /* CLOCK_MONOTONIC */
        usec_t members_at;
        size_t view_members;

        pool_connection_handler_t on_connection;
        void *on_connection_userdata;
};

static usec_t now_usec(Pool *p, clockid_t clock) {
        return clock_loop_now(p ? p->event : NULL, clock);
}

static bool ready(const Pool *p) {
        return pool_link_state(p->link) == POOL_LINK_READY;
}

/* ---- leave requests and their answers ---- */

static void queue_push(LeaveQueue *q, LeaveReq *r) {
        r->next = NULL;
        if (q->tail)
                q->tail->next = r;
        else
                q->head = r;
        q->tail = r;
}

static LeaveReq *queue_pop(LeaveQueue *q) {
        LeaveReq *r = q->head;

        if (!r)
                return NULL;
        q->head = r->next;
        if (!q->head)
                q->tail = NULL;
        r->next = NULL;
        return r;
}

static void leave_req_free(LeaveReq *r) {
        if (!r)
                return;
        free(r->reason);
        free(r->detail);
        free(r);
}

/* The handler runs later, from the answer defer source. */
static void leave_answer(Pool *p, LeaveReq *r, PoolLeaveResult result, const char *detail) {
        int k;

        if (p->freeing) {
                leave_req_free(r);
                return;
        }
        r->result = result;
        free(r->detail);
        r->detail = detail ? strdup(detail) : NULL;
        queue_push(&p->answered, r);
        k = sd_event_source_set_enabled(p->answer_defer, SD_EVENT_ONESHOT);
        if (k < 0)
                log_error_errno(k, "pool: cannot schedule the leave answer: %m");
}

static int on_answer(sd_event_source *s, void *userdata) {
        Pool *p = userdata;
        LeaveReq *r;

        /* Handlers may call back into the pool, even pool_leave: each
         * request is off the queue before its handler runs. */
        while ((r = queue_pop(&p->answered))) {
                if (r->handler)
                        r->handler(p, r->result, r->detail, r->userdata);
                leave_req_free(r);
        }
        return 0;
}

static void fail_waiting(Pool *p) {
        LeaveReq *r;

        while ((r = queue_pop(&p->waiting)))
                leave_answer(p, r, POOL_LEAVE_UNREACHABLE, pool_link_error(p->link, "connection failed"));
}

static LeaveCmd *leave_cmd_free(LeaveCmd *lc) {
        if (lc)
                leave_req_free(lc->req);
        free(lc);
        return NULL;
}

static void leave_cmd_freep(LeaveCmd **lc) {
        leave_cmd_free(*lc);
}

/* ---- what we send ---- */

static const char *nonnull(const char *s) {
        return s ? s : "";
}

static void sent_or_log(int r, const char *what) {
        if (r < 0 && r != -ENOMEM) /* out of memory is logged by the link */
                log_debug("pool: cannot send %s, ignoring", what);
}

static void membership_done(Pool *p, bool current) {
        if (current && p->membership_in_flight > 0)
                p->membership_in_flight--;
}

static void on_join_reply(PoolLink *l, const char *what, const redisReply *r, const char *detail, bool current,
                          void *userdata);
static void on_leave_reply(PoolLink *l, const char *what, const redisReply *r, const char *detail, bool current,
                           void *userdata);
static void on_heartbeat_reply(PoolLink *l, const char *what, const redisReply *r, const char *detail,
                               bool current, void *userdata);
static void on_view_reply(PoolLink *l, const char *what, const redisReply *r, const char *detail, bool current,
                          void *userdata);
static void on_plain_reply(PoolLink *l, const char *what, const redisReply *r, const char *detail, bool current,
                           void *userdata);

/* Script s with its KEYS from the one builder (pool_script_keys()), so
 * what each script declares cannot drift from what it touches. */
static int send_script(Pool *p, PoolScript s, size_t n_args, const char *const *args, unsigned flags,
                       pool_link_reply_t h, void *userdata) {
        const char *keys[POOL_SCRIPT_KEYS_MAX];
        int n = pool_script_keys(s, &p->keys, p->list_key, keys);

        if (n < 0)
                return n;
        return pool_link_script(p->link, s, (size_t) n, keys, n_args, args, flags, h, userdata);
}

static void send_state(Pool *p) {
        _cleanup_(freep) char *ev = NULL;
        char since[32];
        PoolEvent e = {
                .type = "state", .pool = p->name, .host = p->host, .addr = p->address,
                .state = p->state ? p->state : "unknown", .reason = p->reason, .forced = -1,
                .at = now_usec(p, CLOCK_REALTIME),
        };

        ev = pool_event_json(&e);
        format_iso8601(since, sizeof since, p->since_wall ? p->since_wall : e.at);
        const char *args[] = { p->address, e.state, since, nonnull(p->reason), MONKEY_VERSION, ev ? ev : "{}" };
        sent_or_log(send_script(p, POOL_SCRIPT_STATE, ELEMENTSOF(args), args, 0, on_plain_reply, p), "the state");
}

static void send_checks(Pool *p) {
        const char *argv[] = { "HSET", p->keys.key[POOL_KEY_HOST], "last_checks", nonnull(p->last_checks) };

        sent_or_log(pool_link_command(p->link, "HSET last_checks", ELEMENTSOF(argv), argv, on_plain_reply, p),
                    "the last checks");
}

static void send_view(Pool *p) {
        bool full = p->view_members <= POOL_VIEW_BIG || p->members_wanted;
        char seed_min[16], seed_max[16];
        const char *args[] = { p->keys.key[POOL_KEY_PREFIX], full ? "full" : "summary", seed_min, seed_max, p->host };

        snprintf(seed_min, sizeof seed_min, "%u", p->min_serving);
        snprintf(seed_max, sizeof seed_max, "%u", p->max_unavailable);

        if (send_script(p, POOL_SCRIPT_VIEW, ELEMENTSOF(args), args, 0, on_view_reply, p) >= 0) {
                p->view_in_flight = true;
                p->view_full_pending = full;
                if (full)
                        p->members_wanted = false;
        }
}

static void send_join(Pool *p) {
        _cleanup_(freep) char *ev = NULL;
        PoolEvent e = {
                .type = "join", .pool = p->name, .host = p->host, .addr = p->address, .reason = p->reason,
                .forced = -1, .at = now_usec(p, CLOCK_REALTIME),
        };
        int r;

        ev = pool_event_json(&e);
        const char *args[] = { p->address, p->host, ev ? ev : "{}" };
        r = send_script(p, POOL_SCRIPT_JOIN, ELEMENTSOF(args), args, 0, on_join_reply, p);
        if (r >= 0)
                p->membership_in_flight++;
        sent_or_log(r, "the join");
}

/* Takes req (may be NULL: a reconcile nobody waits for). */
static void send_leave(Pool *p, const char *mode, LeaveReq *req) {
        _cleanup_(freep) char *ev = NULL;
        char min_serving[16], max_unavailable[16], ttl[32], asking[32], out_for[32];
        const char *reason = req && req->reason ? req->reason : p->reason;
        usec_t now_boot = now_usec(p, CLOCK_BOOTTIME);
        PoolEvent e = {
                .type = "leave", .pool = p->name, .host = p->host, .addr = p->address, .reason = reason,
                .forced = !streq(mode, POOL_LEAVE_MODE_BUDGET), .at = now_usec(p, CLOCK_REALTIME),
        };
        LeaveCmd *lc;

        ev = pool_event_json(&e);
        snprintf(min_serving, sizeof min_serving, "%u", p->min_serving);
        snprintf(max_unavailable, sizeof max_unavailable, "%u", p->max_unavailable);
        snprintf(ttl, sizeof ttl, "%llu", (unsigned long long) (p->out_max / USEC_PER_MSEC));
        /* A held host re-asks about every heartbeat: three missed asks and
         * it no longer holds a place in the queue. */
        snprintf(asking, sizeof asking, "%llu", (unsigned long long) (3 * p->heartbeat / USEC_PER_MSEC));
        /* How long we have been out, not when we left: Redis compares it
         * with its own TIME, and an agent whose wall clock is off must not
         * shorten or stretch its count in the budget. -1: not counted. */
        if (p->desired_serving || p->left_boottime == 0)
                snprintf(out_for, sizeof out_for, "-1");
        else
                snprintf(out_for, sizeof out_for, "%llu",
                         (unsigned long long) ((now_boot - MIN(p->left_boottime, now_boot)) / USEC_PER_MSEC));
        lc = calloc(1, sizeof *lc);
        if (!lc) {
                log_oom();
                if (req)
                        leave_answer(p, req, POOL_LEAVE_UNREACHABLE, "out of memory");
                return;
        }
        *lc = (LeaveCmd) { .pool = p, .mode = mode, .req = req };
        const char *args[] = { p->address, p->host, min_serving, max_unavailable, ttl, mode, ev ? ev : "{}",
                               p->keys.key[POOL_KEY_PREFIX], nonnull(reason), asking, out_for };
        /* On failure the request is answered "unreachable" (or "out of memory"). */
        if (send_script(p, POOL_SCRIPT_LEAVE, ELEMENTSOF(args), args, POOL_LINK_LATE_REPLY, on_leave_reply, lc) >= 0)
                p->membership_in_flight++;
}

static void send_heartbeat(Pool *p) {
        char lease[32];
        const char *args[] = { lease, p->address, p->host };

        if (!ready(p))
                return;
        if (!p->heartbeat_in_flight) {
                snprintf(lease, sizeof lease, "%llu", (unsigned long long) (p->lease / USEC_PER_MSEC));
                if (send_script(p, POOL_SCRIPT_HEARTBEAT, ELEMENTSOF(args), args, 0, on_heartbeat_reply, p) >= 0)
                        p->heartbeat_in_flight = true;
        }
        if (!p->view_in_flight)
                send_view(p);
        pool_link_check_role(p->link);
}

/* Redis to our own view of our membership. Every step is idempotent, so a
 * duplicate (say, a heartbeat that crossed a join) costs one round trip. */
static void pool_reconcile(Pool *p) {
        if (!ready(p))
                return;
        if (p->desired_serving && p->member != 1)
                send_join(p);
        else if (!p->desired_serving && p->release_wanted)
                /* each reconnect: whatever counted us again in between is undone */
                send_leave(p, POOL_LEAVE_MODE_RELEASE, NULL);
        else if (!p->desired_serving && p->member != 0)
                send_leave(p, POOL_LEAVE_MODE_RECONCILE, NULL);
}

/* ---- what comes back ---- */

/* The state script and the last checks: only a refusal matters. */
static void on_plain_reply(PoolLink *l, const char *what, const redisReply *r, const char *detail, bool current,
                           void *userdata) {
        if (r && r->type == REDIS_REPLY_ERROR)
                pool_link_refused(l, what, r);
}

static void on_join_reply(PoolLink *l, const char *what, const redisReply *r, const char *detail, bool current,
                          void *userdata) {
        Pool *p = userdata;
        long long added, n;

        membership_done(p, current);
        if (!r)
                return;
        if (r->type == REDIS_REPLY_ERROR) {
                pool_link_refused(l, what, r);
                return;
        }
        if (pool_join_reply_decode(r, &added, &n) < 0) {
                log_warning("pool: unexpected reply to join, ignoring");
                return;
        }
        p->member = 1;
        if (added)
                log_info("pool: joined %s as %s (%lld serving)", p->name, p->address, n);
        else
                log_debug("pool: already in %s as %s (%lld serving)", p->name, p->address, n);
        if (!p->view_in_flight && ready(p))
                send_view(p);
}

/* The pool's budget, as a script just said it. An agent whose config
 * disagrees works under the pool's and says so once in the journal (again
 * only when either side changes), never on every heartbeat. */
static void pool_budget_seen(Pool *p, long long pool_min, long long pool_max) {
        const char *differs;

        if (pool_min < 0 || pool_max < 1)
                return;
        if (p->pool_min >= 0 && (p->pool_min != pool_min || p->pool_max != pool_max))
                log_notice("pool: %s's budget is now min_serving %lld, max_unavailable %lld (was %lld, %lld)",
                           p->name, pool_min, pool_max, p->pool_min, p->pool_max);
        p->pool_min = pool_min;
        p->pool_max = pool_max;
        differs = pool_budget_differs(pool_min, pool_max, p->min_serving, p->max_unavailable);
        if (isempty(differs)) {
                if (p->noted_min >= 0)
                        log_info("pool: this host's config agrees with %s's budget again (min_serving %lld, "
                                 "max_unavailable %lld)",
                                 p->name, pool_min, pool_max);
                p->noted_min = p->noted_max = -1;
                return;
        }
        if (p->noted_min == pool_min && p->noted_max == pool_max && p->noted_config_min == p->min_serving &&
            p->noted_config_max == p->max_unavailable)
                return;
        log_warning("pool: %s's budget is min_serving %lld, max_unavailable %lld; this host's config says "
                    "min_serving %u, max_unavailable %u (%s differs): working under the pool's budget, ignoring "
                    "the config's (monkeyctl pool budget shows and sets it)",
                    p->name, pool_min, pool_max, p->min_serving, p->max_unavailable, differs);
        p->noted_min = pool_min;
        p->noted_max = pool_max;
        p->noted_config_min = p->min_serving;
        p->noted_config_max = p->max_unavailable;
}

static void on_leave_reply(PoolLink *l, const char *what, const redisReply *r, const char *detail_failed,
                           bool current, void *userdata) {
        _cleanup_(leave_cmd_freep) LeaveCmd *lc = userdata;
        _cleanup_(pool_leave_reply_done) PoolLeaveReply v = {};
        Pool *p = lc->pool;
        char detail[POOL_DETAIL_MAX];
        int k;

        membership_done(p, current);
        if (!r) {
                if (lc->req)
                        leave_answer(p, TAKE_PTR(lc->req), POOL_LEAVE_UNREACHABLE, detail_failed);
                return;
        }
        k = pool_leave_reply_decode(r, &v);
        if (k >= 0)
                pool_budget_seen(p, v.min_serving, v.max_unavailable);
        if (k >= 0 && streq_ptr(lc->mode, POOL_LEAVE_MODE_PEEK)) {
                /* a dry run changes nothing here either */
                if (lc->req)
                        leave_answer(p, TAKE_PTR(lc->req), v.result, v.detail);
                return;
        }
        if (k < 0) {
                if (k == -EIO)
                        snprintf(detail, sizeof detail, "redis error: %s", strna(v.detail));
                else
                        snprintf(detail, sizeof detail, "unexpected reply from Redis");
                log_warning("pool: leave (%s): %s", strna(lc->mode), detail);
                if (lc->req)
                        leave_answer(p, TAKE_PTR(lc->req), POOL_LEAVE_UNREACHABLE, detail);
                if (k == -EIO)
                        pool_link_refused(l, what, r);
                return;
        }

        switch (v.result) {
        case POOL_LEAVE_LEFT:
                log_notice("pool: left %s (%s): %s", p->name, strna(lc->mode), strna(v.detail));
                __attribute__((fallthrough));
        case POOL_LEAVE_ALREADY_OUT:
                p->member = 0;
                if (lc->req && p->desired_serving) {
                        p->desired_serving = false;
                        p->left_boottime = now_usec(p, CLOCK_BOOTTIME);
                        p->release_wanted = false;
                }
                break;
        case POOL_LEAVE_DENIED:
                p->member = 1;
                log_info("pool: leaving %s denied: %s", p->name, strna(v.detail));
                break;
        default:
                break;
        }
        if (lc->req)
                leave_answer(p, TAKE_PTR(lc->req), v.result, v.detail);
        if (!p->view_in_flight && ready(p))
                send_view(p);
}

static void on_heartbeat_reply(PoolLink *l, const char *what, const redisReply *r, const char *detail,
                               bool current, void *userdata) {
        Pool *p = userdata;
        int member;

        if (current)
                p->heartbeat_in_flight = false;
        if (!r)
                return;
        if (r->type == REDIS_REPLY_ERROR) {
                pool_link_refused(l, what, r);
                return;
        }
        member = pool_heartbeat_reply_decode(r);
        if (member < 0) {
                log_warning("pool: unexpected reply to the heartbeat, ignoring");
                return;
        }
        if (pool_link_accepted(l))
                log_info("pool: Redis runs our scripts again");
        p->member = member;
        if (p->membership_in_flight == 0 && p->member != (int) p->desired_serving) {
                log_notice("pool: Redis has %s %s serving, our own view says %s; reconciling", p->address,
                           p->member ? "in" : "not in", p->desired_serving ? "serving" : "out");
                /* whatever lost our membership (FLUSHALL, a restore) lost our host hash too */
                send_state(p);
                if (p->last_checks)
                        send_checks(p);
                pool_reconcile(p);
        }
}

static void on_view_reply(PoolLink *l, const char *what, const redisReply *r, const char *detail, bool current,
                          void *userdata) {
        Pool *p = userdata;
        json_object *v = NULL, *members;

        if (current)
                p->view_in_flight = false;
        if (!r)
                return;
        if (r->type == REDIS_REPLY_ERROR) {
                pool_link_refused(l, what, r);
                return;
        }
        if (pool_view_decode(r, p->address, &v) < 0) {
                log_warning("pool: unexpected reply to the view, ignoring");
                return;
        }
        json_object_put(p->view);
        p->view = v;
        p->view_at = now_usec(p, CLOCK_MONOTONIC);
        {
                json_object *b = NULL, *x = NULL, *seeded = NULL;

                if (json_object_object_get_ex(v, "budget_seeded", &seeded) && json_object_get_boolean(seeded))
                        log_notice("pool: %s had no budget: seeded it from this host's config (min_serving %u, "
                                   "max_unavailable %u)",
                                   p->name, p->min_serving, p->max_unavailable);
                if (json_object_object_get_ex(v, "pool_budget", &b) && b &&
                    json_object_object_get_ex(b, "min_serving", &x)) {
                        long long m = json_object_get_int64(x);
                        if (json_object_object_get_ex(b, "max_unavailable", &x))
                                pool_budget_seen(p, m, json_object_get_int64(x));
                }
        }
        if (p->view_full_pending && json_object_object_get_ex(v, "members", &members)) {
                json_object_put(p->members);
                p->members = json_object_get(members);
                p->members_at = p->view_at;
        }
        /* The count decides the next view's kind, whichever this was. */
        json_object *count = NULL;
        p->view_members = json_object_object_get_ex(v, "serving_count", &count)
                                  ? (size_t) MAX(json_object_get_int64(count), (int64_t) 0)
                                  : 0;
}

/* ---- the link's ups and downs ---- */

/* Whoever waits hears "unreachable"; whatever was in flight is gone. */
static void on_link_broken(PoolLink *l, void *userdata) {
        Pool *p = userdata;

        if (p->on_connection)
                p->on_connection(p, false, pool_link_error(l, "connection lost"), p->on_connection_userdata);
        p->heartbeat_in_flight = p->view_in_flight = false;
        p->membership_in_flight = 0;
        p->member = -1;
        fail_waiting(p);
}

static void on_link_ready(PoolLink *l, void *userdata) {
        Pool *p = userdata;
        LeaveReq *r;

        p->member = -1;
        if (p->on_connection)
                p->on_connection(p, true, NULL, p->on_connection_userdata);

        /* Our own view first, then the lease, then membership. */
        send_state(p);
        if (p->last_checks)
                send_checks(p);
        send_heartbeat(p);
        pool_reconcile(p);
        while (ready(p) && (r = queue_pop(&p->waiting)))
                send_leave(p, leave_req_mode(r), r);
}

/* ---- heartbeat ---- */

static int on_heartbeat(sd_event_source *s, uint64_t usec, void *userdata);

static void heartbeat_arm(Pool *p) {
        /* ±10%: a fleet restarted together does not renew in lockstep. */
        usec_t d = jitter_spread(p->heartbeat, 10, random_u64());
        int r;

        if (!p->heartbeat_timer) {
                r = sd_event_add_time_relative(p->event, &p->heartbeat_timer, CLOCK_BOOTTIME, d, USEC_PER_MSEC,
                                               on_heartbeat, p);
        } else {
                r = sd_event_source_set_time_relative(p->heartbeat_timer, d);
                if (r >= 0)
                        r = sd_event_source_set_enabled(p->heartbeat_timer, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_error_errno(r, "pool: cannot arm the heartbeat: %m");
}

static int on_heartbeat(sd_event_source *s, uint64_t usec, void *userdata) {
        Pool *p = userdata;

        send_heartbeat(p);
        heartbeat_arm(p);
        return 0;
}

/* ---- life cycle ---- */

/* What a reload may change of the connection: the link's settings and the
 * list key (a new one reconnects, so the join mirrors into it). */
static int pool_settings_load(const Config *c, PoolLinkSettings *ret, char **ret_list_key, char **ret_error) {
        _cleanup_(pool_link_settings_done) PoolLinkSettings s = {};
        _cleanup_(freep) char *list_key = NULL;
        int r;

        if (!c->pool.redis || !c->pool.name || !c->pool.address) {
                if (ret_error)
                        *ret_error = strdup("[pool] needs redis, name and address");
                return -EINVAL;
        }
        r = pool_link_settings_load(c, &s, ret_error);
        if (r < 0)
                return r;
        if (c->pool.list_key) {
                list_key = strdup(c->pool.list_key);
                if (!list_key)
                        return -ENOMEM;
        }
        *ret = s;
        s = (PoolLinkSettings) {};
        *ret_list_key = TAKE_PTR(list_key);
        return 0;
}

static void pool_numbers_load(Pool *p, const Config *c) {
        p->min_serving = c->pool.min_serving;
        p->max_unavailable = c->pool.max_unavailable;
        p->lease = c->pool.lease;
        p->heartbeat = c->pool.heartbeat;
        p->out_max = c->pool.out_max > 0 ? c->pool.out_max : 30 * USEC_PER_MINUTE;
}

int pool_new(sd_event *e, const Config *c, Pool **ret, char **ret_error) {
        _cleanup_(pool_freep) Pool *p = NULL;
        _cleanup_(pool_link_settings_done) PoolLinkSettings s = {};
        _cleanup_(freep) char *label = NULL;
        int r;

        if (!e || !c || !ret)
                return -EINVAL;
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->event = sd_event_ref(e);
        p->member = -1;
        p->pool_min = p->pool_max = p->noted_min = p->noted_max = -1;

        r = pool_settings_load(c, &s, &p->list_key, ret_error);
        if (r < 0)
                return r;
        pool_numbers_load(p, c);

        p->name = strdup(c->pool.name);
        p->address = strdup(c->pool.address);
        p->host = strdup(c->agent.host ? c->agent.host : "unknown");
        if (!p->name || !p->address || !p->host)
                return -ENOMEM;
        r = poolkeys_new(p->name, p->host, &p->keys);
        if (r < 0)
                return r;

        if (asprintf(&label, "pool %s, %s", p->name, p->address) < 0) {
                label = NULL;
                return -ENOMEM;
        }
        r = pool_link_new(e, &s, label,
                          &(const PoolLinkHandlers) { .ready = on_link_ready, .broken = on_link_broken, .userdata = p },
                          &p->link);
        if (r < 0)
                return r;

        r = sd_event_add_defer(e, &p->answer_defer, on_answer, p);
        if (r >= 0)
                r = sd_event_source_set_enabled(p->answer_defer, SD_EVENT_OFF);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(p);
        return 0;
}

Pool *pool_free(Pool *p) {
        LeaveReq *r;

        if (!p)
                return NULL;
        /* From here on callbacks neither answer nor reconnect. */
        p->freeing = true;
        p->link = pool_link_free(p->link);
        while ((r = queue_pop(&p->waiting)))
                leave_req_free(r);
        while ((r = queue_pop(&p->answered)))
                leave_req_free(r);

        sd_event_source_disable_unref(p->heartbeat_timer);
        sd_event_source_disable_unref(p->answer_defer);
        json_object_put(p->view);
        json_object_put(p->members);

        free(p->list_key);
        free(p->name);
        free(p->host);
        free(p->address);
        poolkeys_done(&p->keys);
        free(p->state);
        free(p->reason);
        free(p->last_checks);
        sd_event_unref(p->event);
        free(p);
        return NULL;
}

int pool_start(Pool *p) {
        if (!p)
                return -EINVAL;
        if (pool_link_state(p->link) != POOL_LINK_IDLE)
                return 0;
        log_info("pool: joining pool %s as %s (%s) through %s", p->name, p->address, p->host,
                 pool_link_url_shown(p->link));
        heartbeat_arm(p);
        pool_link_start(p->link);
        return 0;
}

static int replace_string(char **dst, const char *src) {
        char *d = NULL;

        if (streq_ptr(*dst, src))
                return 0;
        if (src) {
                d = strdup(src);
                if (!d)
                        return -ENOMEM;
        }
        free(*dst);
        *dst = d;
        return 1;
}

void pool_set_state(Pool *p, const char *state, const char *reason, bool serving) {
        bool state_changed = false, desired_changed;
        int r;

        if (!p)
                return;
        if (!streq_ptr(p->state, state)) {
                p->since_wall = now_usec(p, CLOCK_REALTIME);
                state_changed = true;
        }
        r = replace_string(&p->state, state);
        if (r < 0)
                log_oom();
        r = replace_string(&p->reason, reason);
        if (r < 0)
                log_oom();
        else if (r > 0)
                state_changed = true;
        desired_changed = p->desired_serving != serving;
        if (desired_changed) {
                p->left_boottime = serving ? 0 : now_usec(p, CLOCK_BOOTTIME);
                p->release_wanted = false;
        }
        p->desired_serving = serving;

        if (!ready(p))
                return; /* sent on (re)connect */
        if (state_changed)
                send_state(p);
        if (desired_changed)
                pool_reconcile(p);
}

static int leave_request(Pool *p, bool force, bool peek, const char *reason, pool_leave_handler_t h,
                         void *userdata) {
        LeaveReq *r;

        if (!p)
                return -EINVAL;
        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->force = force;
        r->peek = peek;
        r->handler = h;
        r->userdata = userdata;
        r->reason = reason ? strdup(reason) : NULL;
        if (reason && !r->reason) {
                free(r);
                return -ENOMEM;
        }

        switch (pool_link_state(p->link)) {
        case POOL_LINK_READY:
                send_leave(p, leave_req_mode(r), r);
                break;
        case POOL_LINK_CONNECTING:
        case POOL_LINK_DISCOVERING:
                /* Answered when the handshake ends, one way or the other:
                 * every step of it has a timeout. */
                queue_push(&p->waiting, r);
                break;
        case POOL_LINK_IDLE:
                leave_answer(p, r, POOL_LEAVE_UNREACHABLE, "the pool client is not started");
                break;
        case POOL_LINK_WAITING:
        default:
                leave_answer(p, r, POOL_LEAVE_UNREACHABLE, pool_link_error(p->link, "not connected"));
                break;
        }
        return 0;
}

void pool_release(Pool *p) {
        if (!p || p->desired_serving)
                return;
        if (!p->release_wanted)
                log_notice("pool: %s stays out of %s but no longer counts against max_unavailable", p->host, p->name);
        p->release_wanted = true;
        p->left_boottime = 0; /* a Redis that lost the pool must not count us again either */
        if (ready(p))
                send_leave(p, POOL_LEAVE_MODE_RELEASE, NULL);
}

int pool_leave(Pool *p, bool force, const char *reason, pool_leave_handler_t h, void *userdata) {
        return leave_request(p, force, false, reason, h, userdata);
}

int pool_leave_peek(Pool *p, const char *reason, pool_leave_handler_t h, void *userdata) {
        return leave_request(p, false, true, reason, h, userdata);
}

void pool_set_last_checks(Pool *p, const char *json) {
        int r;

        if (!p)
                return;
        r = replace_string(&p->last_checks, json);
        if (r < 0)
                log_oom();
        if (r > 0 && p->last_checks && ready(p))
                send_checks(p);
}

int pool_reconfigure(Pool *p, const Config *c) {
        _cleanup_(pool_link_settings_done) PoolLinkSettings s = {};
        _cleanup_(freep) char *err = NULL, *list_key = NULL;
        bool reconnect;
        usec_t old_heartbeat;
        int r;

        if (!p || !c || !c->pool.enabled)
                return -EINVAL;
        old_heartbeat = p->heartbeat;
        r = pool_settings_load(c, &s, &list_key, &err);
        if (r < 0) {
                log_warning("pool: new settings refused: %s", err ? err : strerror(-r));
                return r;
        }
        if (!streq_ptr(c->pool.name, p->name) || !streq_ptr(c->pool.address, p->address) ||
            !streq_ptr(c->agent.host, p->host))
                log_warning("pool: a new pool name, address or host takes effect at the next restart, ignoring "
                            "(still %s as %s, host %s)",
                            p->name, p->address, p->host);

        reconnect = !streq_ptr(list_key, p->list_key);
        reconnect = pool_link_swap_settings(p->link, &s) || reconnect;
        free(p->list_key);
        p->list_key = TAKE_PTR(list_key);
        pool_numbers_load(p, c);
        if (p->heartbeat != old_heartbeat && p->heartbeat_timer)
                heartbeat_arm(p);

        if (reconnect)
                pool_link_reconnect(p->link);
        return 0;
}

void pool_set_connection_handler(Pool *p, pool_connection_handler_t h, void *userdata) {
        p->on_connection = h;
        p->on_connection_userdata = userdata;
}

/* ---- the pool's budget, shown and set ---- */

typedef struct BudgetCmd {
        Pool *pool;
        bool set;
        bool sending; /* inside pool_link_script: a failure is the caller's to return */
        bool failed_while_sending;
        pool_budget_handler_t handler;
        uint64_t ticket;
        void *userdata;
} BudgetCmd;

static void on_budget_reply(PoolLink *l, const char *what, const redisReply *r, const char *detail, bool current,
                            void *userdata) {
        BudgetCmd *bc = userdata;
        _cleanup_(pool_budget_done) PoolBudget b = {};
        _cleanup_(freep) char *error = NULL;
        Pool *p = bc->pool;
        int k;

        if (bc->sending) {
                bc->failed_while_sending = true;
                return;
        }
        if (!r)
                k = error_set(&error, -EHOSTUNREACH, "no answer from Redis: %s", strna(detail));
        else
                k = pool_budget_reply_decode(r, &b, &error);
        if (k == -EBADMSG)
                k = error_set(&error, k, "unexpected reply from Redis to the budget script");
        if (k >= 0 && !p->freeing) {
                pool_budget_seen(p, b.min_serving, b.max_unavailable);
                if (bc->set)
                        log_notice("pool: %s's budget set by %s: min_serving %lld -> %lld, max_unavailable %lld -> "
                                   "%lld%s",
                                   p->name, strna(b.by), b.old_min_serving, b.min_serving, b.old_max_unavailable,
                                   b.max_unavailable, b.changed ? "" : " (unchanged)");
        } else if (k < 0 && bc->set)
                log_warning("pool: setting %s's budget failed: %s", p->name, strna(error));
        if (bc->handler && !p->freeing)
                bc->handler(p, k, k >= 0 ? &b : NULL, error, bc->ticket, bc->userdata);
        free(bc);
}

int pool_budget(Pool *p, const PoolBudgetChange *change, pool_budget_handler_t h, uint64_t ticket, void *userdata,
                char **ret_error) {
        PoolBudgetArgs args = {};
        _cleanup_(freep) BudgetCmd *bc = NULL;
        char at[32];
        int r;

        if (!p)
                return -EINVAL;
        format_iso8601(at, sizeof at, now_usec(p, CLOCK_REALTIME));
        r = pool_budget_args(change, p->min_serving, p->max_unavailable, p->name, p->host, at, &args, ret_error);
        if (r < 0)
                return r;
        if (!ready(p))
                return error_set(ret_error, -ENOTCONN, "Redis is not connected (%s)",
                                 pool_link_error(p->link, pool_link_status(p->link)));
        bc = calloc(1, sizeof *bc);
        if (!bc)
                return -ENOMEM;
        *bc = (BudgetCmd) { .pool = p, .set = !!change, .sending = true, .handler = h, .ticket = ticket,
                           .userdata = userdata };
        if (change)
                log_info("pool: %s asks to set %s's budget (min_serving %s, max_unavailable %s)", args.by, p->name,
                         isempty(args.new_min) ? "kept" : args.new_min, isempty(args.new_max) ? "kept" : args.new_max);
        r = send_script(p, POOL_SCRIPT_BUDGET, POOL_BUDGET_ARGC, args.argv, 0, on_budget_reply, bc);
        if (r < 0 || bc->failed_while_sending)
                return error_set(ret_error, r < 0 ? r : -EIO, "cannot send the budget script to Redis");
        bc->sending = false;
        TAKE_PTR(bc);
        return 0;
}

/* ---- status ---- */

void pool_budget_effective(const Pool *p, unsigned *ret_min_serving, unsigned *ret_max_unavailable) {
        bool seen = p && p->pool_min >= 0;

        *ret_min_serving = !p ? 0 : seen ? (unsigned) p->pool_min : p->min_serving;
        *ret_max_unavailable = !p ? 0 : seen ? (unsigned) p->pool_max : p->max_unavailable;
}

static json_object *view_get(const Pool *p, const char *key) {
        json_object *v = NULL;

        if (!p->view || !json_object_object_get_ex(p->view, key, &v))
                return NULL;
        return json_object_get(v);
}

void pool_request_members(Pool *p) {
        usec_t now;

        if (!p || p->view_members <= POOL_VIEW_BIG)
                return; /* small pools refresh the list every heartbeat */
        now = now_usec(p, CLOCK_MONOTONIC);
        if (p->members && now - p->members_at < USEC_PER_SEC)
                return;
        p->members_wanted = true;
        if (!p->view_in_flight && ready(p))
                send_view(p);
}

json_object *pool_status_json(Pool *p) {
        json_object *o, *budget;
        const char *last_error;
        char master[300];
        usec_t now = now_usec(p, CLOCK_MONOTONIC);

        if (!p)
                return NULL;
        o = json_object_new_object();
        budget = json_object_new_object();
        if (!o || !budget) {
                json_object_put(o);
                json_object_put(budget);
                return NULL;
        }
        json_object_object_add(o, "configured", json_object_new_boolean(true));
        json_object_object_add(o, "name", json_object_new_string(p->name));
        json_object_object_add(o, "address", json_object_new_string(p->address));
        json_object_object_add(o, "host", json_object_new_string(p->host));
        json_object_object_add(o, "redis", json_object_new_string(pool_link_url_shown(p->link)));
        json_object_object_add(o, "master",
                               pool_link_master(p->link, master, sizeof master) ? json_object_new_string(master)
                                                                                : NULL);
        {
                unsigned slot = 0;
                bool cluster = pool_link_cluster_node(p->link, master, sizeof master, &slot);
                json_object *cl = cluster ? json_object_new_object() : NULL;

                if (cl) {
                        json_object_object_add(cl, "node", json_object_new_string(master));
                        json_object_object_add(cl, "slot", json_object_new_int((int) slot));
                }
                json_object_object_add(o, "cluster", cl);
        }
        json_object_object_add(o, "connected", json_object_new_boolean(ready(p)));
        json_object_object_add(o, "status", json_object_new_string(pool_link_status(p->link)));
        json_object_object_add(o, "serving", json_object_new_boolean(p->desired_serving));
        json_object_object_add(o, "member", p->member < 0 ? NULL : json_object_new_boolean(p->member));
        json_object_object_add(o, "serving_count", view_get(p, "serving_count"));
        last_error = pool_link_error(p->link, NULL);
        json_object_object_add(o, "last_error", last_error ? json_object_new_string(last_error) : NULL);

        /* What the scripts enforce: the pool's own budget once seen, this
         * host's config (its seed) until then. */
        {
                bool seen = p->pool_min >= 0;
                const char *differs = pool_budget_differs(p->pool_min, p->pool_max, p->min_serving,
                                                          p->max_unavailable);
                json_object *config = json_object_new_object(), *rules = json_object_new_array();

                json_object_object_add(budget, "min_serving",
                                       json_object_new_int64(seen ? p->pool_min : (int64_t) p->min_serving));
                json_object_object_add(budget, "max_unavailable",
                                       json_object_new_int64(seen ? p->pool_max : (int64_t) p->max_unavailable));
                json_object_object_add(budget, "source", json_object_new_string(seen ? "pool" : "config"));
                if (config) {
                        json_object_object_add(config, "min_serving", json_object_new_int64(p->min_serving));
                        json_object_object_add(config, "max_unavailable", json_object_new_int64(p->max_unavailable));
                }
                json_object_object_add(budget, "config", config);
                if (rules) {
                        if (strstr(differs, "min_serving"))
                                json_object_array_add(rules, json_object_new_string("min_serving"));
                        if (strstr(differs, "max_unavailable"))
                                json_object_array_add(rules, json_object_new_string("max_unavailable"));
                }
                json_object_object_add(budget, "config_differs", rules);
        }
        json_object_object_add(budget, "serving_alive", view_get(p, "serving_alive"));
        json_object_object_add(budget, "out", p->view ? view_get(p, "out") : json_object_new_array());
        json_object_object_add(budget, "out_max_sec", json_object_new_double((double) p->out_max / USEC_PER_SEC));
        json_object_object_add(o, "budget", budget);

        json_object_object_add(o, "members", p->members ? json_object_get(p->members) : json_object_new_array());
        json_object_object_add(o, "members_age_sec", p->members ? json_object_new_double(
                                                                       (double) (now - p->members_at) / USEC_PER_SEC)
                                                                 : NULL);
        json_object_object_add(o, "view_age_sec",
                               p->view ? json_object_new_double((double) (now - p->view_at) / USEC_PER_SEC) : NULL);
        json_object_object_add(o, "lease_sec", json_object_new_double((double) p->lease / USEC_PER_SEC));
        json_object_object_add(o, "heartbeat_sec", json_object_new_double((double) p->heartbeat / USEC_PER_SEC));
        return o;
}

int pool_command(Pool *p, const char *what, size_t argc, const char *const *argv, pool_link_reply_t h,
                 void *userdata) {
        return pool_link_command(p->link, what, argc, argv, h, userdata);
}
