/* The routable set and the servers Redis forgot: see routable.h. */
#include "clock.h"
#include "log.h"
#include "retry.h"
#include "routable.h"

/* Who owned an endpoint when Redis last said so: after a Redis restart the
 * addrs hash is empty, and this tells an agent that is alive but out of the
 * pool (its lease is back, it did not rejoin) from one not back yet. */
typedef struct KnownOwner {
        Endpoint endpoint;
        char host[65];
} KnownOwner;
#define KNOWN_OWNERS_MAX 65536

struct Routable {
        RedisConn *conn;
        RoutableKeys keys;
        const char *pool;
        usec_t settle;
        usec_t forgotten_since; /* routed servers Redis does not know (restarted?) since */
        bool forgotten_expired; /* ... and --settle is over: said so once */
        KnownOwner *known;
        size_t n_known, cap_known;
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

Routable *routable_free(Routable *r) {
        if (!r)
                return NULL;
        free(r->known);
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

int routable_read(Routable *s, Endpoint **ret, size_t *ret_n, long long *ret_min_pttl, size_t *ret_skipped,
                  char **ret_error) {
        _cleanup_(redis_reply_freep) redisReply *members = NULL, *owners = NULL;
        _cleanup_(freep) const char **argv = NULL;
        _cleanup_(freep) long long *pttl = NULL;
        char **mv = NULL, **ov = NULL;
        size_t n;
        int r;

        redisContext *q = NULL;

        r = redisconn_get(s->conn, &q, ret_error);
        if (r < 0)
                return r;
        if (redisAppendCommand(q, "SMEMBERS %s", s->keys.serving) != REDIS_OK)
                return -ENOMEM;
        r = redisconn_reply(s->conn, &members, ret_error);
        if (r < 0)
                return r;
        if (members->type != REDIS_REPLY_ARRAY) {
                if (asprintf(ret_error, "SMEMBERS %s: %s", s->keys.serving,
                             members->type == REDIS_REPLY_ERROR ? members->str : "not a set") < 0)
                        *ret_error = NULL;
                return -EBADMSG;
        }
        n = members->elements;
        if (n > 0) {
                argv = calloc(n + 2, sizeof(char *));
                pttl = calloc(n, sizeof(long long));
                mv = calloc(n + 1, sizeof(char *));
                ov = calloc(n + 1, sizeof(char *));
                if (!argv || !pttl || !mv || !ov) {
                        r = -ENOMEM;
                        goto finish;
                }
                argv[0] = "HMGET";
                argv[1] = s->keys.addrs;
                for (size_t i = 0; i < n; i++) {
                        redisReply *e = members->element[i];
                        if (e->type != REDIS_REPLY_STRING) {
                                r = -EBADMSG;
                                goto finish;
                        }
                        argv[i + 2] = e->str;
                        mv[i] = strdup(e->str);
                        if (!mv[i]) {
                                r = -ENOMEM;
                                goto finish;
                        }
                }
                if (redisAppendCommandArgv(q, (int) (n + 2), argv, NULL) != REDIS_OK) {
                        r = -ENOMEM;
                        goto finish;
                }
                r = redisconn_reply(s->conn, &owners, ret_error);
                if (r < 0)
                        goto finish;
                if (owners->type != REDIS_REPLY_ARRAY || owners->elements != n) {
                        if (asprintf(ret_error, "HMGET %s: %s", s->keys.addrs,
                                     owners->type == REDIS_REPLY_ERROR ? owners->str : "unexpected reply") < 0)
                                *ret_error = NULL;
                        r = -EBADMSG;
                        goto finish;
                }
                /* One round trip for every lease. */
                size_t asked = 0;
                for (size_t i = 0; i < n; i++) {
                        redisReply *e = owners->element[i];
                        pttl[i] = -2;
                        if (e->type != REDIS_REPLY_STRING || !proxysync_name_is_valid(e->str))
                                continue;
                        ov[i] = strdup(e->str);
                        if (!ov[i]) {
                                r = -ENOMEM;
                                goto finish;
                        }
                        if (redisAppendCommand(q, "PTTL %s%s", s->keys.lease_prefix, e->str) != REDIS_OK) {
                                r = -ENOMEM;
                                goto finish;
                        }
                        asked++;
                }
                for (size_t i = 0; i < n && asked > 0; i++) {
                        _cleanup_(redis_reply_freep) redisReply *t = NULL;
                        if (!ov[i])
                                continue;
                        r = redisconn_reply(s->conn, &t, ret_error);
                        if (r < 0)
                                goto finish;
                        if (t->type != REDIS_REPLY_INTEGER) {
                                if (asprintf(ret_error, "PTTL: %s", t->type == REDIS_REPLY_ERROR ? t->str : "not an integer") < 0)
                                        *ret_error = NULL;
                                r = -EBADMSG;
                                goto finish;
                        }
                        pttl[i] = t->integer;
                        asked--;
                }
        }
        for (size_t i = 0; i < n; i++)
                if (ov[i])
                        routable_remember_owner(s, mv[i], ov[i]);
        r = proxysync_routable(mv, ov, pttl, n, ret, ret_n, ret_min_pttl, ret_skipped);
finish:
        routable_strv_free(mv, n);
        routable_strv_free(ov, n);
        return r;
}

int routable_keep_forgotten(void *userdata, const Endpoint *routed, size_t n_routed, Endpoint **want,
                            size_t *n_want, usec_t *ret_due, char **ret_error) {
        Routable *s = userdata;
        redisContext *q = NULL;
        _cleanup_(freep) Endpoint *gone = NULL, *unknown = NULL;
        _cleanup_(freep) const char **argv = NULL;
        _cleanup_(freep) char *strs = NULL;
        _cleanup_(redis_reply_freep) redisReply *owners = NULL;
        size_t n_gone = 0, n_unknown = 0;
        usec_t now = clock_now(CLOCK_MONOTONIC);
        int r;

        r = proxysync_missing(routed, n_routed, *want, *n_want, &gone, &n_gone);
        if (r < 0)
                return r;
        q = redisconn_current(s->conn);
        if (n_gone == 0 || s->settle == 0 || !q) {
                s->forgotten_since = 0;
                return 0;
        }
        argv = calloc(n_gone + 2, sizeof(char *));
        strs = calloc(n_gone, ENDPOINT_STRLEN);
        unknown = calloc(n_gone, sizeof(Endpoint));
        if (!argv || !strs || !unknown)
                return -ENOMEM;
        argv[0] = "HMGET";
        argv[1] = s->keys.addrs;
        for (size_t i = 0; i < n_gone; i++)
                argv[i + 2] = proxysync_endpoint_format(&gone[i], strs + i * ENDPOINT_STRLEN, ENDPOINT_STRLEN);
        if (redisAppendCommandArgv(q, (int) (n_gone + 2), argv, NULL) != REDIS_OK)
                return -ENOMEM;
        r = redisconn_reply(s->conn, &owners, ret_error);
        if (r < 0)
                return r;
        if (owners->type != REDIS_REPLY_ARRAY || owners->elements != n_gone) {
                if (asprintf(ret_error, "HMGET %s: %s", s->keys.addrs,
                             owners->type == REDIS_REPLY_ERROR ? owners->str : "unexpected reply") < 0)
                        *ret_error = NULL;
                return -EBADMSG;
        }
        /* Not in addrs: left on purpose (the leave removes it) or forgotten
         * by Redis. An owner we remember whose lease is live is an agent
         * that is back and out of the pool on purpose. */
        for (size_t i = 0; i < n_gone; i++) {
                const char *host = owners->element[i]->type == REDIS_REPLY_NIL ? routable_known_owner(s, &gone[i]) : NULL;
                if (host && redisAppendCommand(q, "EXISTS %s%s", s->keys.lease_prefix, host) != REDIS_OK) {
                        redisconn_drop(s->conn); /* replies to what was appended would confuse the next sync */
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < n_gone; i++) {
                bool alive = false;

                if (owners->element[i]->type != REDIS_REPLY_NIL)
                        continue;
                if (routable_known_owner(s, &gone[i])) {
                        _cleanup_(redis_reply_freep) redisReply *t = NULL;
                        r = redisconn_reply(s->conn, &t, ret_error);
                        if (r < 0)
                                return r;
                        alive = t->type == REDIS_REPLY_INTEGER && t->integer == 1;
                }
                if (!alive)
                        unknown[n_unknown++] = gone[i];
        }
        if (n_unknown == 0) {
                s->forgotten_since = 0;
                return 0;
        }
        if (s->forgotten_since == 0) {
                s->forgotten_since = now;
                s->forgotten_expired = false;
                log_warning("Redis does not know %zu routed server(s) of pool %s (%s%s): restarted or flushed? "
                            "Keeping them routed for up to %.1fs while the agents register again",
                            n_unknown, s->pool, strs, n_gone > 1 ? ", ..." : "", (double) s->settle / USEC_PER_SEC);
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
