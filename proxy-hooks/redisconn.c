/* monkey-proxy-sync's query connection: see redisconn.h. Ownership:
 *   - c->rc is the query connection; a connection given up is freed at
 *     once (respconn_free is safe inside its own callbacks and then calls
 *     no handler), and every callback checks it is still the one;
 *   - a Query lives from redisconn_query to its callback; c->moving tells
 *     the failures that respconn_free reports that the query goes on,
 *     resent to the node a MOVED named. */
#include <stdarg.h>

#include "log.h"
#include "problem.h"
#include "rediscluster.h"
#include "redisconn.h"
#include "redisreply.h"
#include "respconn.h"

/* MOVED, ASK, TRYAGAIN and CLUSTERDOWN for one query: a slot that keeps
 * moving, or a cluster down for longer, fails the sync, which backs off. */
#define REDIRECTS_MAX 5
#define RETRIES_MAX 5
#define RETRY_STEP_USEC (100 * USEC_PER_MSEC)
#define NODES_MAX 64

typedef struct Query Query;
struct Query {
        RedisConn *conn;
        char **argv;
        size_t *argvlen;
        int argc;
        redisconn_reply_t cb; /* NULL: the connection's own (CLUSTER SLOTS) */
        void *userdata;
        RespConn *on;  /* the connection whose reply it waits for (NULL: none now) */
        RespConn *ask; /* ASK: its own connection to the node named */
        unsigned redirects, retries;
        sd_event_source *retry;
        Query *prev, *next;
};

struct RedisConn {
        sd_event *event;
        RedisConnSettings set;

        RespConn *rc;
        bool up; /* the handshake is done */
        unsigned handshake_pending;
        bool moving, freeing;

        char *host; /* TCP: where the queries go (the master, the slot's node) */
        uint16_t port;
        bool cluster;
        RedisEndpoint nodes[NODES_MAX]; /* cluster: the seeds, then CLUSTER SLOTS' nodes */
        size_t n_nodes, tried;

        RespConn *sentinel_rc;
        size_t sentinel_first, sentinel_k;
        bool sentinel_answered, rechecking;
        char *sentinel_why;

        redisconn_ready_t ready_cb;
        void *ready_userdata;
        sd_event_source *defer;

        Query *queries;
};

static void query_unlink(Query *q) {
        RedisConn *c = q->conn;

        if (q->prev)
                q->prev->next = q->next;
        else if (c->queries == q)
                c->queries = q->next;
        if (q->next)
                q->next->prev = q->prev;
        q->prev = q->next = NULL;
}

static void query_free(Query *q) {
        if (!q)
                return;
        query_unlink(q);
        q->retry = sd_event_source_disable_unref(q->retry);
        q->on = NULL; /* its failure, heard from respconn_free, is not news */
        respconn_free(TAKE_PTR(q->ask));
        for (int i = 0; q->argv && i < q->argc; i++)
                free(q->argv[i]);
        free(q->argv);
        free(q->argvlen);
        free(q);
}

static void on_query_reply(RespConn *rc, const redisReply *r, const char *error, void *userdata);

/* Heard by its owner, then freed. */
static void query_done(Query *q, const redisReply *r, const char *error) {
        redisconn_reply_t cb = q->cb;
        RedisConn *c = q->conn;
        void *userdata = q->userdata;

        query_unlink(q);
        q->cb = NULL;
        query_free(q);
        if (cb)
                cb(c, r, error, userdata);
}

static int query_send(Query *q, RespConn *rc) {
        int r = respconn_command(rc, q->argc, (const char *const *) q->argv, q->argvlen, on_query_reply, q);
        if (r >= 0)
                q->on = rc;
        return r;
}

/* Failed with m (a problem_format(), taken). */
static void query_fail(Query *q, char *m) {
        query_done(q, NULL, m ? m : "out of memory");
        free(m);
}

/* ---- begin: the answer ---- */

static void ready(RedisConn *c, const char *error) {
        redisconn_ready_t cb = TAKE_PTR(c->ready_cb);

        if (cb)
                cb(c, error, c->ready_userdata);
}

/* ready() with m (a problem_format(), taken). */
static void ready_take(RedisConn *c, char *m) {
        ready(c, m ? m : "out of memory");
        free(m);
}

/* ---- the query connection ---- */

static int conn_open(RedisConn *c, const char *host, uint16_t port, const char *path);

static RespConnOptions conn_options(const RedisConn *c, const char *host, uint16_t port, const char *path) {
        return (RespConnOptions) {
                .host = path ? NULL : host,
                .port = port,
                .path = path,
                .tls = path ? NULL : c->set.tls,
                .tls_server_name = c->set.tls_server_name,
                .connect_timeout = c->set.timeout,
                .reply_timeout = c->set.timeout,
        };
}

void redisconn_drop(RedisConn *c) {
        c->up = false;
        c->handshake_pending = 0;
        respconn_free(TAKE_PTR(c->rc));
}

/* The cluster's next node to try, not the one just tried. */
static bool next_node(RedisConn *c) {
        while (c->tried < c->n_nodes) {
                const RedisEndpoint *n = &c->nodes[c->tried++];
                if (streq_ptr(n->host, c->host) && n->port == c->port)
                        continue;
                log_info("Redis Cluster: trying node %s:%u", n->host, (unsigned) n->port);
                return conn_open(c, n->host, n->port, NULL) >= 0;
        }
        return false;
}

static void on_closed(RespConn *rc, const char *error, void *userdata) {
        RedisConn *c = userdata;
        bool was_up = c->up;

        if (rc != c->rc)
                return;
        c->rc = NULL;
        c->up = false;
        respconn_free(rc);
        if (!was_up && c->cluster && c->ready_cb) {
                log_debug("%s", error);
                if (next_node(c))
                        return;
        }
        if (c->ready_cb)
                ready_take(c, problem_format("Cannot reach Redis: %s", error));
        else
                log_debug("Redis query connection lost: %s", error);
}

/* The connection given up; the begin under way hears m (a
 * problem_format(), taken). */
static void conn_failed(RedisConn *c, char *m) {
        redisconn_drop(c);
        ready_take(c, m);
}

static void on_handshake_reply(RespConn *rc, const redisReply *r, const char *error, void *userdata) {
        RedisConn *c = userdata;
        const char *role = NULL;
        int k;

        if (rc != c->rc || !r)
                return; /* closed: on_closed says why */
        if (redisreply_error(r)) {
                conn_failed(c, problem_format("Redis %s refused the handshake (AUTH, SELECT): %s",
                                              respconn_peer(rc), redisreply_error(r)));
                return;
        }
        if (r->type == REDIS_REPLY_ARRAY) { /* ROLE */
                k = redisreply_role(r, &role);
                if (k < 0) {
                        conn_failed(c, problem_format("Redis %s: unexpected reply to ROLE", respconn_peer(rc)));
                        return;
                }
                if (k == 0) {
                        conn_failed(c, problem_format("Redis %s is not the master (role %s); asking the sentinels "
                                                      "again", respconn_peer(rc), role));
                        return;
                }
        }
        if (c->handshake_pending > 0 && --c->handshake_pending == 0) {
                c->up = true;
                ready(c, NULL);
        }
}

static int handshake_send(RedisConn *c, int argc, const char *const *argv) {
        int r = respconn_command(c->rc, argc, argv, NULL, on_handshake_reply, c);
        if (r >= 0)
                c->handshake_pending++;
        return r;
}

/* AUTH (user and password: an ACL user), ROLE through Sentinel, SELECT:
 * queued before anything else, answered in order. */
static int conn_open(RedisConn *c, const char *host, uint16_t port, const char *path) {
        const RedisUrl *u = c->set.url;
        RespConnOptions o = conn_options(c, host, port, path);
        RespConnHandlers h = { .closed = on_closed, .userdata = c };
        _cleanup_(freep) char *err = NULL;
        char db[16];
        int r;

        redisconn_drop(c);
        if (host && !streq_ptr(host, c->host)) {
                char *d = strdup(host);
                if (!d)
                        return -ENOMEM;
                free(c->host);
                c->host = d;
        }
        c->port = port;
        r = respconn_new(c->event, &o, &h, &c->rc, &err);
        if (r < 0) {
                log_error("Cannot connect to Redis: %s", err ? err : strerror(-r));
                return r;
        }
        if (u->password) {
                const char *auth_user[] = { "AUTH", u->user, u->password };
                const char *auth[] = { "AUTH", u->password };
                r = u->user ? handshake_send(c, 3, auth_user) : handshake_send(c, 2, auth);
        }
        if (r >= 0 && u->kind == REDIS_URL_SENTINEL)
                r = handshake_send(c, 1, (const char *const[]) { "ROLE" });
        if (r >= 0 && u->db > 0) {
                snprintf(db, sizeof db, "%u", u->db);
                r = handshake_send(c, 2, (const char *const[]) { "SELECT", db });
        }
        if (r >= 0 && c->handshake_pending == 0)
                /* Nothing to ask first: PING, so that "ready" means the
                 * server answered (and the TLS handshake passed). */
                r = handshake_send(c, 1, (const char *const[]) { "PING" });
        if (r < 0)
                redisconn_drop(c);
        return r;
}

/* ---- Sentinel ---- */

static void sentinel_ask(RedisConn *c);

static void role_checked(RedisConn *c, const redisReply *r, const char *error, void *userdata) {
        const char *role = NULL;

        if (!r) {
                ready(c, error);
                return;
        }
        if (redisreply_role(r, &role) != 1) {
                log_debug("Redis %s:%u is not the master (role %s); asking the sentinels again", strna(c->host),
                          (unsigned) c->port, strna(role));
                redisconn_drop(c);
                sentinel_ask(c);
                return;
        }
        ready(c, NULL);
}

static void master_known(RedisConn *c) {
        if (c->rechecking && c->rc && c->up) {
                /* The same master: is it still one? */
                Query *q = calloc(1, sizeof *q);
                if (!q || !(q->argv = calloc(1, sizeof(char *))) || !(q->argvlen = calloc(1, sizeof(size_t))) ||
                    !(q->argv[0] = strdup("ROLE"))) {
                        if (q) {
                                q->conn = c;
                                query_free(q);
                        }
                        ready(c, "out of memory");
                        return;
                }
                q->conn = c;
                q->argc = 1;
                q->argvlen[0] = 4;
                q->cb = role_checked;
                q->next = c->queries;
                if (c->queries)
                        c->queries->prev = q;
                c->queries = q;
                if (query_send(q, c->rc) < 0) {
                        query_free(q);
                        conn_failed(c, problem_format("Cannot send ROLE to Redis %s:%u", strna(c->host),
                                                      (unsigned) c->port));
                }
                return;
        }
        if (conn_open(c, c->host, c->port, NULL) < 0)
                ready_take(c, problem_format("Cannot connect to the Redis master %s:%u", strna(c->host),
                                             (unsigned) c->port));
}

static void sentinel_next(RedisConn *c, const char *why) {
        const RedisUrl *u = c->set.url;

        log_debug("%s", why);
        free(c->sentinel_why);
        c->sentinel_why = strdup(why);
        if (++c->sentinel_k < u->n_sentinels) {
                sentinel_ask(c);
                return;
        }
        if (c->rechecking && c->rc && c->up) {
                log_debug("No sentinel answered; keeping master %s:%u while it says so", strna(c->host),
                          (unsigned) c->port);
                master_known(c);
                return;
        }
        ready_take(c, problem_format("No sentinel gave the address of master '%s' (last: %s)", u->master,
                                     strna(c->sentinel_why)));
}

static void on_sentinel_reply(RespConn *rc, const redisReply *r, const char *error, void *userdata) {
        RedisConn *c = userdata;
        const RedisUrl *u = c->set.url;
        size_t i = (c->sentinel_first + c->sentinel_k) % u->n_sentinels;
        _cleanup_(freep) char *host = NULL, *why = NULL, *line = NULL;
        uint16_t port = 0;
        int k;

        if (rc != c->sentinel_rc)
                return;
        c->sentinel_rc = NULL;
        respconn_free(rc);
        if (!r) {
                sentinel_next(c, error ? error : "closed");
                return;
        }
        k = redisreply_sentinel_master(r, u->master, &host, &port, &why);
        if (k < 0) {
                if (asprintf(&line, "sentinel %s:%u: %s", u->sentinels[i].host, (unsigned) u->sentinels[i].port,
                             strna(why)) < 0)
                        line = NULL;
                sentinel_next(c, line ? line : "out of memory");
                return;
        }
        if (!streq_ptr(c->host, host) || c->port != port) {
                log_info("Sentinel %s:%u: master '%s' is at %s:%u", u->sentinels[i].host,
                         (unsigned) u->sentinels[i].port, u->master, host, (unsigned) port);
                /* Another master: the kept connection is to the old one. */
                redisconn_drop(c);
                free(c->host);
                c->host = TAKE_PTR(host);
                c->port = port;
        }
        c->sentinel_first = i;
        c->sentinel_answered = true;
        master_known(c);
}

/* Each sentinel in turn, the one that answered last first. */
static void sentinel_ask(RedisConn *c) {
        const RedisUrl *u = c->set.url;
        size_t i = (c->sentinel_first + c->sentinel_k) % u->n_sentinels;
        RespConnOptions o = conn_options(c, u->sentinels[i].host, u->sentinels[i].port, NULL);
        const char *argv[] = { "SENTINEL", "get-master-addr-by-name", u->master };
        _cleanup_(freep) char *err = NULL;
        char line[300];
        int r;

        r = respconn_new(c->event, &o, &(RespConnHandlers) { .userdata = c }, &c->sentinel_rc, &err);
        if (r >= 0)
                r = respconn_command(c->sentinel_rc, 3, argv, NULL, on_sentinel_reply, c);
        if (r < 0) {
                respconn_free(TAKE_PTR(c->sentinel_rc));
                snprintf(line, sizeof line, "sentinel %s:%u: %s", u->sentinels[i].host, (unsigned) u->sentinels[i].port,
                         err ? err : strerror(-r));
                sentinel_next(c, line);
        }
}

/* ---- begin ---- */

static int on_defer(sd_event_source *s, void *userdata) {
        RedisConn *c = userdata;

        c->defer = sd_event_source_disable_unref(c->defer);
        if (c->rc && c->up)
                ready(c, NULL);
        else if (!c->rc)
                ready(c, "Cannot connect to Redis (out of memory?)");
        return 0;
}

static int begin_later(RedisConn *c) {
        if (c->defer)
                return 0;
        return sd_event_add_defer(c->event, &c->defer, on_defer, c);
}

int redisconn_begin(RedisConn *c, redisconn_ready_t cb, void *userdata) {
        const RedisUrl *u = c->set.url;

        if (c->ready_cb)
                return -EBUSY;
        c->ready_cb = cb;
        c->ready_userdata = userdata;
        if (u->kind == REDIS_URL_SENTINEL && !(c->rc && !c->up)) {
                /* Kept or not, the sentinels say where the master is now;
                 * the answer comes from the loop (respconn never calls
                 * back from inside). */
                c->rechecking = c->rc && c->up;
                c->sentinel_k = 0;
                sentinel_ask(c);
                return 0;
        }
        if (c->rc)
                /* Kept (or a MOVED's connection still on its way): ready
                 * now, or when its handshake is done. */
                return c->up ? begin_later(c) : 0;
        c->tried = 0;
        if (u->kind == REDIS_URL_UNIX)
                return conn_open(c, NULL, 0, u->path) < 0 ? begin_later(c) : 0;
        if (conn_open(c, c->host ? c->host : u->server.host, c->host ? c->port : u->server.port, NULL) < 0)
                return begin_later(c);
        return 0;
}

/* ---- queries ---- */

static void on_slots(RedisConn *c, const redisReply *r, const char *error, void *userdata) {
        RedisEndpoint *nodes = NULL;
        size_t n = 0;

        if (!r || redisreply_error(r) || redis_cluster_slot_nodes(r, &nodes, &n) < 0)
                return; /* only fallbacks: the seeds still are */
        for (size_t i = 0; i < n; i++) {
                bool known = false;
                for (size_t k = 0; k < c->n_nodes && !known; k++)
                        known = streq(c->nodes[k].host, nodes[i].host) && c->nodes[k].port == nodes[i].port;
                if (known || c->n_nodes == NODES_MAX)
                        continue;
                c->nodes[c->n_nodes].host = TAKE_PTR(nodes[i].host);
                c->nodes[c->n_nodes++].port = nodes[i].port;
        }
        redis_cluster_nodes_free(nodes, n);
}

static Query *query_new(RedisConn *c, int argc, const char *const *argv, const size_t *argvlen,
                        redisconn_reply_t cb, void *userdata) {
        Query *q = calloc(1, sizeof *q);

        if (!q)
                return NULL;
        q->conn = c;
        q->cb = cb;
        q->userdata = userdata;
        q->argv = calloc((size_t) argc, sizeof(char *));
        q->argvlen = calloc((size_t) argc, sizeof(size_t));
        if (!q->argv || !q->argvlen) {
                query_free(q);
                return NULL;
        }
        q->argc = argc;
        for (int i = 0; i < argc; i++) {
                size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
                q->argv[i] = malloc(n + 1);
                if (!q->argv[i]) {
                        query_free(q);
                        return NULL;
                }
                memcpy(q->argv[i], argv[i], n);
                q->argv[i][n] = 0;
                q->argvlen[i] = n;
        }
        q->next = c->queries;
        if (c->queries)
                c->queries->prev = q;
        c->queries = q;
        return q;
}

/* MOVED: the slot is on host:port now. The connection goes there, and
 * every query waiting on it follows (only reads come through here). */
static void move_to(RedisConn *c, const char *host, uint16_t port) {
        RespConn *old = c->rc;

        log_info("Redis Cluster: the pool's slot is on %s:%u: moving the query connection there", host,
                 (unsigned) port);
        c->cluster = true;
        c->moving = true;
        c->rc = NULL;
        c->up = false;
        respconn_free(old); /* the queries on it hear "closed": moving keeps them */
        c->moving = false;
        /* Without a connection (out of memory) every query left fails:
         * none may wait for a reply that will never come. */
        Query *slots = conn_open(c, host, port, NULL) < 0 ? NULL :
                query_new(c, 2, (const char *const[]) { "CLUSTER", "SLOTS" }, NULL, on_slots, NULL);
        for (Query *q = c->queries, *next; q; q = next) {
                next = q->next;
                if (q == slots || q->on || q->ask || q->retry)
                        continue;
                if (!c->rc || query_send(q, c->rc) < 0)
                        query_fail(q, problem_format("Cannot resend a query to Redis %s:%u", host, (unsigned) port));
        }
        if (slots && query_send(slots, c->rc) < 0)
                query_free(slots);
}

static void on_ask_closed(RespConn *rc, const char *error, void *userdata) {
        /* The command's own reply said it first (NULL): nothing to add. */
}

/* ASK: ASKING, then this one command, on the node named. */
static void ask_at(Query *q, const char *host, uint16_t port) {
        RedisConn *c = q->conn;
        const RedisUrl *u = c->set.url;
        RespConnOptions o = conn_options(c, host, port, NULL);
        _cleanup_(freep) char *err = NULL;
        int r;

        respconn_free(TAKE_PTR(q->ask));
        r = respconn_new(c->event, &o, &(RespConnHandlers) { .closed = on_ask_closed, .userdata = q }, &q->ask, &err);
        if (r >= 0 && u->password) {
                const char *auth_user[] = { "AUTH", u->user, u->password };
                const char *auth[] = { "AUTH", u->password };
                r = u->user ? respconn_command(q->ask, 3, auth_user, NULL, NULL, NULL)
                            : respconn_command(q->ask, 2, auth, NULL, NULL, NULL);
        }
        if (r >= 0)
                r = respconn_command(q->ask, 1, (const char *const[]) { "ASKING" }, NULL, NULL, NULL);
        if (r >= 0)
                r = query_send(q, q->ask);
        if (r < 0)
                query_fail(q, problem_format("Cannot ask Redis %s:%u (ASK): %s", host, (unsigned) port,
                                             err ? err : strerror(-r)));
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Query *q = userdata;
        RedisConn *c = q->conn;

        q->retry = sd_event_source_disable_unref(q->retry);
        if (!c->rc || query_send(q, c->rc) < 0)
                query_fail(q, problem_format("Redis query connection lost while the slot was unavailable"));
        return 0;
}

static void on_query_reply(RespConn *rc, const redisReply *r, const char *error, void *userdata) {
        Query *q = userdata;
        RedisConn *c = q->conn;
        RedisClusterRedirect d = {};
        const char *e;

        if (q->on != rc)
                return;
        q->on = NULL;
        if (q->ask == rc) {
                q->ask = NULL;
                respconn_free(rc);
        }
        if (c->freeing) {
                query_free(q);
                return;
        }
        if (!r) {
                if (c->moving)
                        return; /* resent by move_to */
                query_done(q, NULL, error ? error : "connection closed");
                return;
        }
        e = redisreply_error(r);
        if (!e || redis_cluster_redirect_parse(e, &d) < 0 || d.verdict == REDIS_CLUSTER_NONE) {
                query_done(q, r, NULL);
                return;
        }
        switch (d.verdict) {
        case REDIS_CLUSTER_MOVED:
        case REDIS_CLUSTER_ASK:
                if (++q->redirects > REDIRECTS_MAX) {
                        query_done(q, r, NULL);
                        break;
                }
                if (d.verdict == REDIS_CLUSTER_ASK)
                        ask_at(q, d.host ? d.host : c->host, d.port);
                else if (rc == c->rc)
                        move_to(c, d.host ? d.host : c->host, d.port);
                else if (!c->rc || query_send(q, c->rc) < 0) /* from an ASK node: the main one knows */
                        query_fail(q, problem_format("Redis query connection lost after %s", e));
                break;
        case REDIS_CLUSTER_TRYAGAIN:
        case REDIS_CLUSTER_DOWN:
                if (++q->retries > RETRIES_MAX ||
                    sd_event_add_time_relative(c->event, &q->retry, CLOCK_MONOTONIC, RETRY_STEP_USEC * q->retries,
                                               USEC_PER_MSEC, on_retry, q) < 0) {
                        query_done(q, r, NULL);
                        break;
                }
                log_debug("Redis: %s: trying again", e);
                break;
        default:
                query_done(q, r, NULL);
        }
        redis_cluster_redirect_done(&d);
}

int redisconn_query(RedisConn *c, int argc, const char *const *argv, const size_t *argvlen, redisconn_reply_t cb,
                    void *userdata) {
        Query *q;
        int r;

        if (!c->rc || !c->up)
                return -ENOTCONN;
        q = query_new(c, argc, argv, argvlen, cb, userdata);
        if (!q)
                return -ENOMEM;
        r = query_send(q, c->rc);
        if (r < 0)
                query_free(q);
        return r;
}

/* ---- the rest ---- */

int redisconn_new(sd_event *e, const RedisConnSettings *settings, RedisConn **ret) {
        const RedisUrl *u = settings->url;
        RedisConn *c = calloc(1, sizeof *c);

        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);
        c->set = *settings;
        c->cluster = u->kind == REDIS_URL_TCP && u->n_seeds > 1;
        if (u->kind == REDIS_URL_TCP)
                for (size_t i = 0; i < u->n_seeds && i < NODES_MAX; i++) {
                        c->nodes[i].host = strdup(u->seeds[i].host);
                        c->nodes[i].port = u->seeds[i].port;
                        if (!c->nodes[i].host) {
                                redisconn_free(c);
                                return -ENOMEM;
                        }
                        c->n_nodes++;
                }
        *ret = c;
        return 0;
}

RedisConn *redisconn_free(RedisConn *c) {
        if (!c)
                return NULL;
        c->freeing = true;
        c->ready_cb = NULL;
        redisconn_drop(c);
        respconn_free(TAKE_PTR(c->sentinel_rc));
        while (c->queries)
                query_free(c->queries);
        c->defer = sd_event_source_disable_unref(c->defer);
        for (size_t i = 0; i < c->n_nodes; i++)
                free(c->nodes[i].host);
        free(c->host);
        free(c->sentinel_why);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

bool redisconn_is_kept(const RedisConn *c) {
        return c->rc && c->up;
}

int redisconn_master(const RedisConn *c, const char **ret_host, uint16_t *ret_port, const char **ret_path,
                     bool *ret_cluster) {
        const RedisUrl *u = c->set.url;

        *ret_host = NULL;
        *ret_path = NULL;
        *ret_port = 0;
        *ret_cluster = c->cluster;
        switch (u->kind) {
        case REDIS_URL_UNIX:
                *ret_path = u->path;
                return 0;
        case REDIS_URL_TCP:
                *ret_host = c->host ? c->host : u->server.host;
                *ret_port = c->host ? c->port : u->server.port;
                return 0;
        case REDIS_URL_SENTINEL:
                if (!c->host || !c->sentinel_answered)
                        return -ENOENT;
                *ret_host = c->host;
                *ret_port = c->port;
                return 0;
        }
        return -EINVAL;
}

int redisconn_sentinel(const RedisConn *c, const char **ret_host, uint16_t *ret_port) {
        const RedisEndpoint *e;

        if (c->set.url->kind != REDIS_URL_SENTINEL || !c->sentinel_answered)
                return -ENOENT;
        e = &c->set.url->sentinels[c->sentinel_first];
        *ret_host = e->host;
        *ret_port = e->port;
        return 0;
}
