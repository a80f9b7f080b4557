/* The routable set and the servers Redis forgot: see routable.h. */
#include <stdarg.h>

#include "clock.h"
#include "log.h"
#include "problem.h"
#include "redisreply.h"
#include "retry.h"
#include "routable.h"

static void *mfree(void *p) {
        free(p);
        return NULL;
}

/* Who owned an endpoint when Redis last said so: after a Redis restart the
 * addrs hash is empty, and this tells an agent that is alive but out of the
 * pool (its lease is back, it did not rejoin) from one not back yet. */
typedef struct KnownOwner {
        Endpoint endpoint;
        char host[65];
} KnownOwner;
#define KNOWN_OWNERS_MAX 65536

/* Redis's word on a server the proxy routes and the pool does not:
 * whether Redis knows it (an owner in addrs, or the lease of the owner we
 * remember is live), fetched for routable_keep_forgotten. */
typedef struct Routable Routable;
typedef struct Verdict {
        Routable *s;
        Endpoint endpoint;
        bool known;
} Verdict;

/* One PTTL in flight: which member's owner it is for. */
typedef struct PttlAsk {
        Routable *s;
        size_t i;
} PttlAsk;

struct Routable {
        RedisConn *conn;
        RoutableKeys keys;
        const char *pool;
        usec_t settle;
        usec_t forgotten_since; /* routed servers Redis does not know (restarted?) since */
        bool forgotten_expired; /* ... and --settle is over: said so once */
        KnownOwner *known;
        size_t n_known, cap_known;

        /* the read under way */
        routable_read_t read_done;
        void *read_userdata;
        char **mv, **ov; /* members and their owners */
        long long *pttl;
        PttlAsk *asks;
        size_t n, pending;
        int read_r;
        char *read_error;

        /* what keep_forgotten asked, and what Redis said */
        Endpoint *need;
        size_t n_need;
        Verdict *verdicts;
        size_t n_verdicts;
        routable_fetched_t fetch_done;
        void *fetch_userdata;
        redisReply *fetch_owners; /* the HMGET, kept while the EXISTS come back */
        size_t fetch_pending;
        int fetch_r;
        char *fetch_error;
};

int routable_new(RedisConn *conn, const RoutableKeys *keys, const char *pool, usec_t settle, Routable **ret) {
        Routable *r = calloc(1, sizeof(Routable));

        if (!r)
                return -ENOMEM;
        r->conn = conn;
        r->keys = *keys;
        r->pool = pool;
        r->settle = settle;
        *ret = r;
        return 0;
}

static void routable_strv_free(char **v, size_t n);

static void routable_read_reset(Routable *s) {
        routable_strv_free(TAKE_PTR(s->mv), s->n);
        routable_strv_free(TAKE_PTR(s->ov), s->n);
        s->pttl = mfree(s->pttl);
        s->asks = mfree(s->asks);
        s->read_error = mfree(s->read_error);
        s->n = s->pending = 0;
        s->read_r = 0;
        s->read_done = NULL;
}

Routable *routable_free(Routable *r) {
        if (!r)
                return NULL;
        routable_read_reset(r);
        free(r->known);
        free(r->need);
        free(r->verdicts);
        free(r->fetch_error);
        if (r->fetch_owners)
                freeReplyObject(r->fetch_owners);
        free(r);
        return NULL;
}

static void routable_strv_free(char **v, size_t n) {
        if (!v)
                return;
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

static void routable_remember_owner(Routable *s, const char *member, const char *host) {
        Endpoint e;

        if (proxysync_parse_endpoint(member, &e) < 0 || strlen(host) >= sizeof s->known[0].host)
                return;
        for (size_t i = 0; i < s->n_known; i++)
                if (proxysync_endpoint_equal(&s->known[i].endpoint, &e)) {
                        snprintf(s->known[i].host, sizeof s->known[i].host, "%s", host);
                        return;
                }
        if (s->n_known == KNOWN_OWNERS_MAX)
                s->n_known = 0; /* a fleet this size rotates: forget, do not grow */
        if (s->n_known == s->cap_known) {
                size_t cap = s->cap_known ? s->cap_known * 2 : 16;
                KnownOwner *k = reallocarray(s->known, cap, sizeof(KnownOwner));
                if (!k)
                        return; /* only a hint: without it the server waits out --settle */
                s->known = k;
                s->cap_known = cap;
        }
        s->known[s->n_known].endpoint = e;
        snprintf(s->known[s->n_known].host, sizeof s->known[s->n_known].host, "%s", host);
        s->n_known++;
}

static const char *routable_known_owner(const Routable *s, const Endpoint *e) {
        for (size_t i = 0; i < s->n_known; i++)
                if (proxysync_endpoint_equal(&s->known[i].endpoint, e))
                        return s->known[i].host;
        return NULL;
}

/* The first failure is the one that says why: m (a problem_format(),
 * taken) goes to *error unless one is there. */
static void fail_once(int *result, char **error, int r, char *m) {
        if (*result < 0) {
                free(m);
                return;
        }
        *result = m ? r : -ENOMEM;
        *error = m;
}

#define read_fail(s, r, ...) fail_once(&(s)->read_r, &(s)->read_error, (r), problem_format(__VA_ARGS__))
#define fetch_fail(s, r, ...) fail_once(&(s)->fetch_r, &(s)->fetch_error, (r), problem_format(__VA_ARGS__))

/* The HMGET of n owners: 0, -EIO (no reply), -EBADMSG. */
static int hmget_check(const redisReply *r, size_t n) {
        if (!r)
                return -EIO;
        return r->type == REDIS_REPLY_ARRAY && r->elements == n ? 0 : -EBADMSG;
}

static void read_finish(Routable *s) {
        routable_read_t done = s->read_done;
        void *userdata = s->read_userdata;
        _cleanup_(freep) char *error = NULL;
        Endpoint *eps = NULL;
        size_t n_eps = 0, skipped = 0;
        long long min_pttl = -1;
        int r = s->read_r;

        if (r >= 0) {
                for (size_t i = 0; i < s->n; i++)
                        if (s->ov[i])
                                routable_remember_owner(s, s->mv[i], s->ov[i]);
                r = proxysync_routable(s->mv, s->ov, s->pttl, s->n, &eps, &n_eps, &min_pttl, &skipped);
        }
        error = TAKE_PTR(s->read_error);
        routable_read_reset(s);
        if (done)
                done(s, r, eps, n_eps, min_pttl, skipped, r < 0 ? (error ? error : strerror(-r)) : NULL, userdata);
        else
                free(eps);
}

static void on_pttl(RedisConn *c, const redisReply *r, const char *error, void *userdata) {
        PttlAsk *a = userdata;
        Routable *s = a->s;

        if (!r)
                read_fail(s, -EIO, "Redis query failed: %s", error);
        else if (r->type != REDIS_REPLY_INTEGER)
                read_fail(s, -EBADMSG, "PTTL: %s", r->type == REDIS_REPLY_ERROR ? r->str : "not an integer");
        else
                s->pttl[a->i] = r->integer;
        if (--s->pending == 0)
                read_finish(s);
}

static void on_owners(RedisConn *c, const redisReply *r, const char *error, void *userdata) {
        Routable *s = userdata;
        char *argv[2];
        int k;

        k = hmget_check(r, s->n);
        if (k < 0) {
                read_fail(s, k, "HMGET %s: %s", s->keys.addrs,
                          error ? error : redisreply_error(r) ? r->str : "unexpected reply");
                read_finish(s);
                return;
        }
        /* One round trip for every lease. */
        for (size_t i = 0; i < s->n; i++) {
                const redisReply *e = r->element[i];
                _cleanup_(freep) char *key = NULL;

                if (e->type != REDIS_REPLY_STRING || !proxysync_name_is_valid(e->str))
                        continue;
                s->ov[i] = strdup(e->str);
                if (!s->ov[i] || asprintf(&key, "%s%s", s->keys.lease_prefix, e->str) < 0) {
                        read_fail(s, -ENOMEM, "out of memory");
                        break;
                }
                argv[0] = (char *) "PTTL";
                argv[1] = key;
                s->asks[i] = (PttlAsk) { .s = s, .i = i };
                k = redisconn_query(s->conn, 2, (const char *const *) argv, NULL, on_pttl, &s->asks[i]);
                if (k < 0) {
                        read_fail(s, k, "Redis query failed: %s", strerror(-k));
                        break;
                }
                s->pending++;
        }
        if (s->pending == 0)
                read_finish(s);
}

static void on_members(RedisConn *c, const redisReply *r, const char *error, void *userdata) {
        Routable *s = userdata;
        _cleanup_(freep) const char **argv = NULL;
        size_t n;
        int k;

        if (!r) {
                read_fail(s, -EIO, "Redis query failed: %s", error);
                read_finish(s);
                return;
        }
        if (r->type != REDIS_REPLY_ARRAY) {
                read_fail(s, -EBADMSG, "SMEMBERS %s: %s", s->keys.serving,
                          r->type == REDIS_REPLY_ERROR ? r->str : "not a set");
                read_finish(s);
                return;
        }
        n = r->elements;
        if (n == 0) {
                read_finish(s);
                return;
        }
        argv = calloc(n + 2, sizeof(char *));
        s->pttl = calloc(n, sizeof(long long));
        s->asks = calloc(n, sizeof(PttlAsk));
        s->mv = calloc(n + 1, sizeof(char *));
        s->ov = calloc(n + 1, sizeof(char *));
        s->n = n;
        if (!argv || !s->pttl || !s->asks || !s->mv || !s->ov) {
                read_fail(s, -ENOMEM, "out of memory");
                read_finish(s);
                return;
        }
        argv[0] = "HMGET";
        argv[1] = s->keys.addrs;
        for (size_t i = 0; i < n; i++) {
                const redisReply *e = r->element[i];
                s->pttl[i] = -2;
                if (e->type != REDIS_REPLY_STRING) {
                        read_fail(s, -EBADMSG, "SMEMBERS %s: not a set of strings", s->keys.serving);
                        read_finish(s);
                        return;
                }
                argv[i + 2] = e->str;
                s->mv[i] = strdup(e->str);
                if (!s->mv[i]) {
                        read_fail(s, -ENOMEM, "out of memory");
                        read_finish(s);
                        return;
                }
        }
        k = redisconn_query(s->conn, (int) (n + 2), argv, NULL, on_owners, s);
        if (k < 0) {
                read_fail(s, k, "Redis query failed: %s", strerror(-k));
                read_finish(s);
        }
}

int routable_read(Routable *s, routable_read_t done, void *userdata) {
        const char *argv[] = { "SMEMBERS", s->keys.serving };
        int r;

        if (s->read_done)
                return -EBUSY;
        /* A new sync: what the proxy routes is asked about anew. */
        s->verdicts = mfree(s->verdicts);
        s->n_verdicts = 0;
        s->need = mfree(s->need);
        s->n_need = 0;
        r = redisconn_query(s->conn, 2, argv, NULL, on_members, s);
        if (r < 0)
                return r;
        s->read_done = done;
        s->read_userdata = userdata;
        return 0;
}

/* ---- what Redis knows of servers the proxy routes and the pool does not ---- */

bool routable_wants_fetch(const Routable *s) {
        return s->n_need > 0;
}

static void fetch_finish(Routable *s) {
        routable_fetched_t done = TAKE_PTR(s->fetch_done);
        _cleanup_(freep) char *error = TAKE_PTR(s->fetch_error);
        int r = s->fetch_r;

        if (s->fetch_owners)
                freeReplyObject(TAKE_PTR(s->fetch_owners));
        s->need = mfree(s->need);
        s->n_need = 0;
        if (done)
                done(s, r, r < 0 ? (error ? error : strerror(-r)) : NULL, s->fetch_userdata);
}

static void on_exists(RedisConn *c, const redisReply *r, const char *error, void *userdata) {
        Verdict *v = userdata;
        Routable *s = v->s;

        if (!r)
                fetch_fail(s, -EIO, "Redis query failed: %s", error);
        else
                v->known = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        if (--s->fetch_pending == 0)
                fetch_finish(s);
}

static void on_fetch_owners(RedisConn *c, const redisReply *r, const char *error, void *userdata) {
        Routable *s = userdata;
        int k;

        k = hmget_check(r, s->n_need);
        if (k < 0) {
                fetch_fail(s, k, "HMGET %s: %s", s->keys.addrs,
                          error ? error : redisreply_error(r) ? r->str : "unexpected reply");
                fetch_finish(s);
                return;
        }
        s->verdicts = calloc(s->n_need, sizeof(Verdict));
        if (!s->verdicts) {
                fetch_fail(s, -ENOMEM, "out of memory");
                fetch_finish(s);
                return;
        }
        s->n_verdicts = s->n_need;
        /* Not in addrs: left on purpose (the leave removes it) or forgotten
         * by Redis. An owner we remember whose lease is live is an agent
         * that is back and out of the pool on purpose. */
        for (size_t i = 0; i < s->n_need; i++) {
                Verdict *v = &s->verdicts[i];
                const char *host;
                _cleanup_(freep) char *key = NULL;

                v->s = s;
                v->endpoint = s->need[i];
                v->known = r->element[i]->type != REDIS_REPLY_NIL;
                host = v->known ? NULL : routable_known_owner(s, &s->need[i]);
                if (!host)
                        continue;
                if (asprintf(&key, "%s%s", s->keys.lease_prefix, host) < 0) {
                        fetch_fail(s, -ENOMEM, "out of memory");
                        break;
                }
                k = redisconn_query(s->conn, 2, (const char *const[]) { "EXISTS", key }, NULL, on_exists, v);
                if (k < 0) {
                        fetch_fail(s, k, "Redis query failed: %s", strerror(-k));
                        break;
                }
                s->fetch_pending++;
        }
        if (s->fetch_pending == 0)
                fetch_finish(s);
}

int routable_fetch(Routable *s, routable_fetched_t done, void *userdata) {
        _cleanup_(freep) const char **argv = NULL;
        _cleanup_(freep) char *strs = NULL;
        int r;

        if (s->fetch_done || s->n_need == 0)
                return -EBUSY;
        argv = calloc(s->n_need + 2, sizeof(char *));
        strs = calloc(s->n_need, ENDPOINT_STRLEN);
        if (!argv || !strs)
                return -ENOMEM;
        argv[0] = "HMGET";
        argv[1] = s->keys.addrs;
        for (size_t i = 0; i < s->n_need; i++)
                argv[i + 2] = proxysync_endpoint_format(&s->need[i], strs + i * ENDPOINT_STRLEN, ENDPOINT_STRLEN);
        s->verdicts = mfree(s->verdicts);
        s->n_verdicts = 0;
        s->fetch_r = 0;
        s->fetch_pending = 0;
        r = redisconn_query(s->conn, (int) (s->n_need + 2), argv, NULL, on_fetch_owners, s);
        if (r < 0)
                return r;
        s->fetch_done = done;
        s->fetch_userdata = userdata;
        return 0;
}

static const Verdict *routable_verdict(const Routable *s, const Endpoint *e) {
        for (size_t i = 0; i < s->n_verdicts; i++)
                if (proxysync_endpoint_equal(&s->verdicts[i].endpoint, e))
                        return &s->verdicts[i];
        return NULL;
}

int routable_keep_forgotten(void *userdata, const Endpoint *routed, size_t n_routed, Endpoint **want,
                            size_t *n_want, usec_t *ret_due, char **ret_error) {
        Routable *s = userdata;
        _cleanup_(freep) Endpoint *gone = NULL, *unknown = NULL;
        char first[ENDPOINT_STRLEN] = "";
        size_t n_gone = 0, n_unknown = 0;
        usec_t now = clock_now(CLOCK_MONOTONIC);
        int r;

        r = proxysync_missing(routed, n_routed, *want, *n_want, &gone, &n_gone);
        if (r < 0)
                return r;
        if (n_gone == 0 || s->settle == 0 || !redisconn_is_kept(s->conn)) {
                s->forgotten_since = 0;
                return 0;
        }
        for (size_t i = 0; i < n_gone; i++)
                if (!routable_verdict(s, &gone[i])) {
                        /* Ask Redis first; the writer changes nothing meanwhile. */
                        free(s->need);
                        s->need = TAKE_PTR(gone);
                        s->n_need = n_gone;
                        if (asprintf(ret_error, "asking Redis about %zu server(s) the proxy routes", n_gone) < 0)
                                *ret_error = NULL;
                        return -EAGAIN;
                }
        unknown = calloc(n_gone, sizeof(Endpoint));
        if (!unknown)
                return -ENOMEM;
        for (size_t i = 0; i < n_gone; i++)
                if (!routable_verdict(s, &gone[i])->known)
                        unknown[n_unknown++] = gone[i];
        if (n_unknown == 0) {
                s->forgotten_since = 0;
                return 0;
        }
        proxysync_endpoint_format(&unknown[0], first, sizeof first);
        if (s->forgotten_since == 0) {
                s->forgotten_since = now;
                s->forgotten_expired = false;
                log_warning("Redis does not know %zu routed server(s) of pool %s (%s%s): restarted or flushed? "
                            "Keeping them routed for up to %.1fs while the agents register again",
                            n_unknown, s->pool, first, n_unknown > 1 ? ", ..." : "", (double) s->settle / USEC_PER_SEC);
        }
        if (now - s->forgotten_since >= s->settle) {
                if (!s->forgotten_expired)
                        log_warning("%zu server(s) still unknown to Redis after %.1fs: removing them", n_unknown,
                                    (double) s->settle / USEC_PER_SEC);
                s->forgotten_expired = true;
                return 0;
        }
        Endpoint *w = reallocarray(NULL, *n_want + n_unknown, sizeof(Endpoint));
        if (!w)
                return -ENOMEM;
        if (*n_want > 0)
                memcpy(w, *want, *n_want * sizeof(Endpoint));
        memcpy(w + *n_want, unknown, n_unknown * sizeof(Endpoint));
        free(*want);
        *want = w;
        *n_want += n_unknown;
        *ret_due = MIN(*ret_due, s->forgotten_since + s->settle - now + RETRY_SLACK_USEC);
        return 0;
}
