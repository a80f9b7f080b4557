/* monkey-proxy-sync: makes one proxy follow one Doctor Monkey pool. It
 * reads the routable set from Redis (members of monkey:{P}:serving whose
 * owner still holds a lease) and either drives HAProxy's runtime API over
 * server-template slots or renders an nginx upstream file and reloads nginx.
 * It resyncs fully on start, on every event published on monkey:{P}:events,
 * on every reconnect, after the soonest lease expiry and periodically.
 *
 * I/O model. The events subscription is hiredis async on sd-event, so the
 * daemon always hears events and signals. A sync itself uses blocking I/O
 * with a deadline on every step (Redis: connect and socket timeouts;
 * HAProxy: poll with the time left; the reload command: waited for with a
 * deadline, then killed). That is a choice, not a shortcut: a sync is this
 * daemon's only work, nothing else waits on it, and events that arrive
 * meanwhile stay in the socket and trigger the next sync. Worst case a
 * sync takes about 5 x --timeout plus --reload-timeout. Name resolution of
 * a Redis host name is the resolver's (use an address to avoid it).
 *
 * Fail static: when Redis or the proxy cannot be reached the proxy keeps
 * what it has; and an empty routable set does not replace a non-empty one
 * unless --allow-empty (a flushed or restarted Redis must not drain the
 * site before the agents have registered again). A routed server that
 * Redis does not know at all (no owner in the addrs hash: Redis restarted
 * empty or was flushed) stays routed for --settle while the agents
 * register again one by one; a server whose owner Redis knows (in addrs,
 * or the agent's lease is live) and that is not routable is drained at
 * once. */
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "fileio.h"
#include "log.h"
#include "parse.h"
#include "poolkeys.h"
#include "proxysync.h"
#include "redis_event.h"
#include "redisurl.h"
#include "secret.h"

#define PROG "monkey-proxy-sync"
#define HAPROXY_ANSWER_MAX (4U * 1024U * 1024U)
#define NGINX_FILE_MAX (1024U * 1024U)
#define BACKOFF_MIN_USEC (100 * USEC_PER_MSEC)
#define BACKOFF_MAX_USEC (5 * USEC_PER_SEC)
/* Events come in bursts (a leave is several writes): one sync for all. */
#define COALESCE_USEC (10 * USEC_PER_MSEC)
/* Run just after the soonest lease has expired, not just before. */
#define LEASE_SLACK_USEC (50 * USEC_PER_MSEC)

extern char **environ;

typedef enum Target {
        TARGET_NONE,
        TARGET_HAPROXY,
        TARGET_NGINX,
} Target;

typedef struct Options {
        RedisUrl redis;
        char *pool;
        Target target;
        const char *haproxy_socket, *backend, *prefix;
        const char *nginx_file, *nginx_reload, *upstream, *server_args;
        usec_t interval, timeout, reload_timeout, drain_grace, settle;
        bool once, allow_empty;
} Options;

typedef struct Sync Sync;

/* Who owned an endpoint when Redis last said so: after a Redis restart the
 * addrs hash is empty, and this tells an agent that is alive but out of the
 * pool (its lease is back, it did not rejoin) from one not back yet. */
typedef struct KnownOwner {
        Endpoint endpoint;
        char host[65];
} KnownOwner;
#define KNOWN_OWNERS_MAX 65536

struct Sync {
        Options *opt;
        sd_event *event;
        sd_event_source *sig_term, *sig_int, *sig_hup;
        sd_event_source *sync_timer;
        sd_event_source *sub_timer;

        redisContext *query;
        redisAsyncContext *sub;
        bool subscribed;
        unsigned sub_failures;

        char *k_serving, *k_lease_prefix, *k_addrs, *k_events;

        unsigned sync_failures;
        bool notified_ready;
        bool reload_pending; /* nginx: the file on disk is newer than what nginx loaded */
        bool force_reload;   /* SIGHUP */
        bool holding_empty;
        usec_t forgotten_since; /* routed servers Redis does not know (restarted?) since */
        bool forgotten_expired; /* ... and --settle is over: said so once */
        KnownOwner *known;
        size_t n_known, cap_known;
        char *last_error;
        uint64_t syncs;
};

static void *mfree(void *p) {
        free(p);
        return NULL;
}

static usec_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

static struct timeval usec_to_timeval(usec_t u) {
        return (struct timeval) { .tv_sec = (time_t) (u / USEC_PER_SEC), .tv_usec = (suseconds_t) (u % USEC_PER_SEC) };
}

/* Capped exponential backoff with +-25% jitter, so a fleet of syncers does
 * not reconnect in lockstep after a Redis restart. */
static usec_t backoff(unsigned failures, usec_t cap) {
        usec_t d = BACKOFF_MIN_USEC;
        for (unsigned i = 1; i < failures && d < cap; i++)
                d *= 2;
        d = MIN(d, cap);
        usec_t j = d / 4;
        if (j > 0)
                d = d - j + (usec_t) random() % (2 * j + 1);
        return d;
}

/* Warnings once per distinct problem; repeats go to debug. */
static void sync_problem(Sync *s, int r, const char *format, ...) _printf_(3, 4);
static void sync_problem(Sync *s, int r, const char *format, ...) {
        va_list ap;
        char *m = NULL;

        va_start(ap, format);
        if (vasprintf(&m, format, ap) < 0)
                m = NULL;
        va_end(ap);
        if (!m) {
                log_oom();
                return;
        }
        if (streq_ptr(m, s->last_error))
                log_debug("%s (again)", m);
        else
                log_warning("%s", m);
        free(s->last_error);
        s->last_error = m;
        (void) r;
}

static void sync_recovered(Sync *s) {
        if (s->last_error) {
                log_info("Recovered: in sync again");
                free(s->last_error);
                s->last_error = NULL;
        }
}

/* --- Redis query connection (blocking, every step bounded) ---------------- */

static void query_drop(Sync *s) {
        if (s->query) {
                redisFree(s->query);
                s->query = NULL;
        }
}

static void reply_freep(redisReply **r) {
        if (*r)
                freeReplyObject(*r);
}

static int redis_connect_sync(const Options *o, redisContext **ret, char **ret_error) {
        struct timeval tv = usec_to_timeval(o->timeout);
        redisContext *c;

        c = o->redis.path ? redisConnectUnixWithTimeout(o->redis.path, tv)
                          : redisConnectWithTimeout(o->redis.server.host, o->redis.server.port, tv);
        if (!c)
                return -ENOMEM;
        if (c->err) {
                if (asprintf(ret_error, "Cannot connect to Redis: %s", c->errstr) < 0)
                        *ret_error = NULL;
                redisFree(c);
                return -ECONNREFUSED;
        }
        if (redisSetTimeout(c, tv) != REDIS_OK) {
                redisFree(c);
                return -EIO;
        }
        if (!o->redis.path)
                (void) redisEnableKeepAlive(c);
        if (o->redis.password) {
                _cleanup_(reply_freep) redisReply *rep = o->redis.user
                        ? redisCommand(c, "AUTH %s %s", o->redis.user, o->redis.password)
                        : redisCommand(c, "AUTH %s", o->redis.password);
                if (!rep || rep->type == REDIS_REPLY_ERROR) {
                        if (asprintf(ret_error, "Redis AUTH failed: %s", rep ? rep->str : c->errstr) < 0)
                                *ret_error = NULL;
                        redisFree(c);
                        return -EACCES;
                }
        }
        if (o->redis.db > 0) {
                _cleanup_(reply_freep) redisReply *rep = redisCommand(c, "SELECT %u", o->redis.db);
                if (!rep || rep->type == REDIS_REPLY_ERROR) {
                        if (asprintf(ret_error, "Redis SELECT %u failed: %s", o->redis.db, rep ? rep->str : c->errstr) < 0)
                                *ret_error = NULL;
                        redisFree(c);
                        return -EIO;
                }
        }
        *ret = c;
        return 0;
}

static int query_get_reply(Sync *s, redisReply **ret, char **ret_error) {
        void *v = NULL;

        if (redisGetReply(s->query, &v) != REDIS_OK || !v) {
                if (asprintf(ret_error, "Redis query failed: %s", s->query->errstr[0] ? s->query->errstr : "no reply") < 0)
                        *ret_error = NULL;
                /* After a timeout a hiredis sync context is unusable. */
                query_drop(s);
                return -EIO;
        }
        *ret = v;
        return 0;
}

static void strv_free_n(char **v, size_t n) {
        if (!v)
                return;
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

/* The routable set, per proxysync_routable(). */
static void remember_owner(Sync *s, const char *member, const char *host) {
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

static const char *known_owner(const Sync *s, const Endpoint *e) {
        for (size_t i = 0; i < s->n_known; i++)
                if (proxysync_endpoint_equal(&s->known[i].endpoint, e))
                        return s->known[i].host;
        return NULL;
}

static int redis_read_routable(Sync *s, Endpoint **ret, size_t *ret_n, long long *ret_min_pttl, size_t *ret_skipped,
                               char **ret_error) {
        _cleanup_(reply_freep) redisReply *members = NULL, *owners = NULL;
        _cleanup_(freep) const char **argv = NULL;
        _cleanup_(freep) long long *pttl = NULL;
        char **mv = NULL, **ov = NULL;
        size_t n;
        int r;

        if (!s->query) {
                r = redis_connect_sync(s->opt, &s->query, ret_error);
                if (r < 0)
                        return r;
        }
        if (redisAppendCommand(s->query, "SMEMBERS %s", s->k_serving) != REDIS_OK)
                return -ENOMEM;
        r = query_get_reply(s, &members, ret_error);
        if (r < 0)
                return r;
        if (members->type != REDIS_REPLY_ARRAY) {
                if (asprintf(ret_error, "SMEMBERS %s: %s", s->k_serving,
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
                argv[1] = s->k_addrs;
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
                if (redisAppendCommandArgv(s->query, (int) (n + 2), argv, NULL) != REDIS_OK) {
                        r = -ENOMEM;
                        goto finish;
                }
                r = query_get_reply(s, &owners, ret_error);
                if (r < 0)
                        goto finish;
                if (owners->type != REDIS_REPLY_ARRAY || owners->elements != n) {
                        if (asprintf(ret_error, "HMGET %s: %s", s->k_addrs,
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
                        if (redisAppendCommand(s->query, "PTTL %s%s", s->k_lease_prefix, e->str) != REDIS_OK) {
                                r = -ENOMEM;
                                goto finish;
                        }
                        asked++;
                }
                for (size_t i = 0; i < n && asked > 0; i++) {
                        _cleanup_(reply_freep) redisReply *t = NULL;
                        if (!ov[i])
                                continue;
                        r = query_get_reply(s, &t, ret_error);
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
                        remember_owner(s, mv[i], ov[i]);
        r = proxysync_routable(mv, ov, pttl, n, ret, ret_n, ret_min_pttl, ret_skipped);
finish:
        strv_free_n(mv, n);
        strv_free_n(ov, n);
        return r;
}

/* --- HAProxy runtime API ---------------------------------------------------- */

/* One command per connection: HAProxy answers and closes, so a reply is
 * "everything until EOF", and a wedged connection cannot poison the next
 * command. The whole exchange shares one deadline. */
static int haproxy_command(const Options *o, const char *cmd, char **ret_answer) {
        _cleanup_(closep) int fd = -1;
        _cleanup_(freep) char *line = NULL, *buf = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        usec_t deadline = now_usec() + o->timeout;
        size_t len, off = 0, size = 0, used = 0;

        if (strlen(o->haproxy_socket) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, o->haproxy_socket, strlen(o->haproxy_socket) + 1);
        if (asprintf(&line, "%s\n", cmd) < 0)
                return -ENOMEM;
        len = strlen(line);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        /* A full backlog is EAGAIN on a unix socket: try again next sync. */
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return negative_errno();

        for (;;) {
                usec_t now = now_usec();
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd p = { .fd = fd, .events = off < len ? POLLOUT : POLLIN };
                int k = poll(&p, 1, (int) ((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        return -ETIMEDOUT;
                if (off < len) {
                        ssize_t w = send(fd, line + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (w < 0) {
                                if (errno == EAGAIN || errno == EINTR)
                                        continue;
                                return negative_errno();
                        }
                        off += (size_t) w;
                        continue;
                }
                if (size - used < 4096) {
                        if (size >= HAPROXY_ANSWER_MAX)
                                return -EFBIG;
                        size_t ns = size ? size * 2 : 8192;
                        char *t = realloc(buf, ns + 1);
                        if (!t)
                                return -ENOMEM;
                        buf = t;
                        size = ns;
                }
                ssize_t rd = recv(fd, buf + used, size - used, MSG_DONTWAIT);
                if (rd < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (rd == 0)
                        break;
                used += (size_t) rd;
        }
        if (!buf) {
                buf = strdup("");
                if (!buf)
                        return -ENOMEM;
        } else
                buf[used] = '\0';
        *ret_answer = TAKE_PTR(buf);
        return 0;
}

static bool answer_is_empty(const char *a) {
        return strspn(a, " \r\n\t") == strlen(a);
}

static void answer_first_line(const char *a, char *buf, size_t size) {
        size_t n = strcspn(a, "\n");
        n = MIN(n, size - 1);
        memcpy(buf, a, n);
        buf[n] = '\0';
}

/* Redis restarted empty (or was flushed): the agents register again one
 * by one, a heartbeat apart. Draining everyone not back yet would pile the
 * whole site on the first few. So a routed server that Redis does not
 * know at all (no owner in addrs) is kept in `*want` until --settle has
 * passed since such servers were first seen; a server Redis knows and that
 * is not routable left on purpose (or lost its lease) and goes at once.
 * *want is replaced by a new array when servers are kept. */
static int keep_forgotten(Sync *s, const Endpoint *routed, size_t n_routed, Endpoint **want, size_t *n_want,
                          usec_t *ret_due, char **ret_error) {
        const Options *o = s->opt;
        _cleanup_(freep) Endpoint *gone = NULL, *unknown = NULL;
        _cleanup_(freep) const char **argv = NULL;
        _cleanup_(freep) char *strs = NULL;
        _cleanup_(reply_freep) redisReply *owners = NULL;
        size_t n_gone = 0, n_unknown = 0;
        usec_t now = now_usec();
        int r;

        r = proxysync_missing(routed, n_routed, *want, *n_want, &gone, &n_gone);
        if (r < 0)
                return r;
        if (n_gone == 0 || o->settle == 0 || !s->query) {
                s->forgotten_since = 0;
                return 0;
        }
        argv = calloc(n_gone + 2, sizeof(char *));
        strs = calloc(n_gone, ENDPOINT_STRLEN);
        unknown = calloc(n_gone, sizeof(Endpoint));
        if (!argv || !strs || !unknown)
                return -ENOMEM;
        argv[0] = "HMGET";
        argv[1] = s->k_addrs;
        for (size_t i = 0; i < n_gone; i++)
                argv[i + 2] = proxysync_endpoint_format(&gone[i], strs + i * ENDPOINT_STRLEN, ENDPOINT_STRLEN);
        if (redisAppendCommandArgv(s->query, (int) (n_gone + 2), argv, NULL) != REDIS_OK)
                return -ENOMEM;
        r = query_get_reply(s, &owners, ret_error);
        if (r < 0)
                return r;
        if (owners->type != REDIS_REPLY_ARRAY || owners->elements != n_gone) {
                if (asprintf(ret_error, "HMGET %s: %s", s->k_addrs,
                             owners->type == REDIS_REPLY_ERROR ? owners->str : "unexpected reply") < 0)
                        *ret_error = NULL;
                return -EBADMSG;
        }
        /* Not in addrs: left on purpose (the leave removes it) or forgotten
         * by Redis. An owner we remember whose lease is live is an agent
         * that is back and out of the pool on purpose. */
        for (size_t i = 0; i < n_gone; i++) {
                const char *host = owners->element[i]->type == REDIS_REPLY_NIL ? known_owner(s, &gone[i]) : NULL;
                if (host && redisAppendCommand(s->query, "EXISTS %s%s", s->k_lease_prefix, host) != REDIS_OK) {
                        query_drop(s); /* replies to what was appended would confuse the next sync */
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < n_gone; i++) {
                bool alive = false;

                if (owners->element[i]->type != REDIS_REPLY_NIL)
                        continue;
                if (known_owner(s, &gone[i])) {
                        _cleanup_(reply_freep) redisReply *t = NULL;
                        r = query_get_reply(s, &t, ret_error);
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
                            n_unknown, o->pool, strs, n_gone > 1 ? ", ..." : "", (double) o->settle / USEC_PER_SEC);
        }
        if (now - s->forgotten_since >= o->settle) {
                if (!s->forgotten_expired)
                        log_warning("%zu server(s) still unknown to Redis after %.1fs: removing them", n_unknown,
                                    (double) o->settle / USEC_PER_SEC);
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
        *ret_due = MIN(*ret_due, s->forgotten_since + o->settle - now + LEASE_SLACK_USEC);
        return 0;
}

/* Applies the plan; returns 0, or the first failure (the rest of the plan
 * waits for the next sync: HAProxy is re-read each time). */
static int haproxy_apply(Sync *s, Endpoint **wantp, size_t *n_wantp, usec_t *ret_due, char **ret_error) {
        const Options *o = s->opt;
        _cleanup_(freep) char *state = NULL, *perr = NULL;
        _cleanup_(freep) Slot *slots = NULL;
        _cleanup_(proxysync_plan_done) SlotPlan plan = {};
        _cleanup_(freep) char *cmd = NULL;
        size_t n_slots = 0, ready = 0, draining = 0;
        unsigned long grace = (unsigned long) (o->drain_grace / USEC_PER_SEC);
        usec_t forgotten_due = USEC_INFINITY;
        char ep[ENDPOINT_STRLEN];
        int r;

        r = asprintf(&cmd, "show servers state %s", o->backend);
        if (r < 0)
                return -ENOMEM;
        r = haproxy_command(o, cmd, &state);
        if (r < 0) {
                if (asprintf(ret_error, "HAProxy runtime API %s: %s", o->haproxy_socket, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        r = proxysync_parse_servers_state(state, o->backend, o->prefix, &slots, &n_slots, &perr);
        if (r < 0) {
                if (asprintf(ret_error, "HAProxy backend %s: %s", o->backend, perr ? perr : strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        if (n_slots == 0) {
                if (asprintf(ret_error, "HAProxy backend %s has no servers named %s1, %s2...: add "
                             "'server-template %s 1-N 127.0.0.1:1 disabled'", o->backend, o->prefix, o->prefix,
                             o->prefix) < 0)
                        *ret_error = NULL;
                return -ENOENT;
        }

        {
                _cleanup_(freep) Endpoint *routed = calloc(n_slots + 1, sizeof(Endpoint));
                size_t n_routed = 0;
                usec_t due_forgotten = USEC_INFINITY;

                if (!routed)
                        return -ENOMEM;
                for (size_t i = 0; i < n_slots; i++)
                        if (slots[i].mode == SLOT_READY && slots[i].has_endpoint)
                                routed[n_routed++] = slots[i].endpoint;
                r = keep_forgotten(s, routed, n_routed, wantp, n_wantp, &due_forgotten, ret_error);
                if (r < 0)
                        return r;
                forgotten_due = due_forgotten;
        }
        const Endpoint *want = *wantp;
        size_t n_want = *n_wantp;

        for (size_t i = 0; i < n_slots; i++)
                if (slots[i].mode == SLOT_READY)
                        ready++;
        if (n_want == 0 && ready > 0 && !o->allow_empty) {
                if (!s->holding_empty)
                        log_warning("Pool %s has no routable member: keeping the %zu ready servers of %s "
                                    "(--allow-empty applies an empty pool)", o->pool, ready, o->backend);
                s->holding_empty = true;
                *ret_due = o->interval;
                return 0;
        }
        s->holding_empty = false;

        r = proxysync_plan(slots, n_slots, want, n_want, grace, &plan);
        if (r < 0)
                return r;
        for (size_t i = 0; i < plan.n_ops; i++) {
                const SlotOp *op = &plan.ops[i];
                const Slot *sl = &slots[op->slot];
                _cleanup_(freep) char *line = NULL, *answer = NULL;
                char shown[200];
                bool ok;

                r = proxysync_op_command(o->backend, slots, n_slots, op, &line);
                if (r < 0)
                        return r;
                r = haproxy_command(o, line, &answer);
                if (r < 0) {
                        if (asprintf(ret_error, "HAProxy '%s': %s", line, strerror(-r)) < 0)
                                *ret_error = NULL;
                        return r;
                }
                /* `addr` always answers a sentence; `state` answers nothing
                 * when it worked. */
                ok = op->kind == SLOT_OP_ADDR ? (strstr(answer, "changed") || strstr(answer, "no need to change"))
                                              : answer_is_empty(answer);
                if (!ok) {
                        answer_first_line(answer, shown, sizeof(shown));
                        if (asprintf(ret_error, "HAProxy refused '%s': %s", line, shown) < 0)
                                *ret_error = NULL;
                        return -EREMOTEIO;
                }
                switch (op->kind) {
                case SLOT_OP_ADDR:
                        log_info("%s/%s: now %s", o->backend, sl->name, proxysync_endpoint_format(&op->endpoint, ep, sizeof(ep)));
                        break;
                case SLOT_OP_READY:
                        log_info("%s/%s: ready (was %s)", o->backend, sl->name, proxysync_slot_mode_to_string(sl->mode));
                        break;
                case SLOT_OP_DRAIN:
                        log_info("%s/%s: %s left the pool, draining", o->backend, sl->name,
                                 sl->has_endpoint ? proxysync_endpoint_format(&sl->endpoint, ep, sizeof(ep)) : "-");
                        break;
                case SLOT_OP_MAINT:
                        log_info("%s/%s: drained for %lus, now maint", o->backend, sl->name, sl->since_change_sec);
                        break;
                default:
                        break;
                }
        }
        if (plan.unplaced > 0)
                log_warning("%zu routable members of pool %s have no free slot in %s: raise N in "
                            "'server-template %s 1-N'", plan.unplaced, o->pool, o->backend, o->prefix);

        /* Come back when the oldest drain is due for maint. A slot drained by
         * this very plan starts at 0 s; one that a plan op makes ready or
         * maint is not draining any more. */
        usec_t due = MIN(o->interval, forgotten_due);
        for (size_t i = 0; i < n_slots; i++) {
                bool has_op = false, drains_now = false;
                unsigned long since;

                for (size_t k = 0; k < plan.n_ops; k++)
                        if (plan.ops[k].slot == i) {
                                has_op = true;
                                drains_now |= plan.ops[k].kind == SLOT_OP_DRAIN;
                        }
                if (drains_now)
                        since = 0;
                else if (slots[i].mode == SLOT_DRAIN && !has_op)
                        since = slots[i].since_change_sec;
                else
                        continue;
                draining++;
                usec_t left = since >= grace ? 0 : (usec_t) (grace - since) * USEC_PER_SEC;
                due = MIN(due, left + USEC_PER_SEC);
        }
        *ret_due = due;
        (void) sd_notifyf(false, "STATUS=pool %s: %zu routable, %s: %zu ready, %zu draining%s", o->pool, n_want,
                          o->backend, plan.routed, draining, plan.unplaced ? ", SLOTS EXHAUSTED" : "");
        return 0;
}

/* --- nginx upstream file ---------------------------------------------------- */

/* Refuses a file of `max` bytes or more. */
static int read_small_file(const char *path, size_t max, char **ret) {
        _cleanup_(closep) int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        size_t len;

        if (fd < 0)
                return negative_errno();
        /* read_full_fd refuses more than its max; we refuse max itself. */
        return read_full_fd(fd, max - 1, ret, &len);
}

/* Temp file in the same directory, fsync, rename, fsync the directory: nginx
 * (and a crash) sees the old file or the new one, never half of one. */
static int write_atomic(const char *path, const char *text) {
        _cleanup_(freep) char *tmp = NULL, *dir = NULL;
        _cleanup_(closep) int fd = -1, dfd = -1;
        size_t len = strlen(text), off = 0;
        char *slash;
        int r;

        if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        while (off < len) {
                ssize_t k = write(fd, text + off, len - off);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = negative_errno();
                        goto fail;
                }
                off += (size_t) k;
        }
        if (fchmod(fd, 0644) < 0 || fsync(fd) < 0) {
                r = negative_errno();
                goto fail;
        }
        if (rename(tmp, path) < 0) {
                r = negative_errno();
                goto fail;
        }
        dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (slash == dir)
                slash[1] = '\0';
        else if (slash)
                *slash = '\0';
        dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0)
                (void) fsync(dfd);
        return 0;
fail:
        (void) unlink(tmp);
        return r;
}

/* /bin/sh -c CMD with stdin from /dev/null, waited for at most `timeout`,
 * then killed. Returns 0 on exit status 0. */
static int run_reload(const char *command, usec_t timeout, char **ret_error) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none;
        pid_t pid;
        int r, status;
        char *argv[] = { (char *) "/bin/sh", (char *) "-c", (char *) command, NULL };
        usec_t deadline = now_usec() + timeout;

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawnattr_init(&attr);
        /* We block signals for sd-event; the child must not inherit that. */
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
        r = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (r != 0) {
                if (asprintf(ret_error, "Cannot run the reload command: %s", strerror(r)) < 0)
                        *ret_error = NULL;
                return -r;
        }
        for (;;) {
                pid_t k = waitpid(pid, &status, WNOHANG);
                if (k == pid)
                        break;
                if (k < 0 && errno != EINTR) {
                        r = negative_errno();
                        if (asprintf(ret_error, "Cannot wait for the reload command: %s", strerror(-r)) < 0)
                                *ret_error = NULL;
                        return r;
                }
                if (now_usec() >= deadline) {
                        (void) kill(pid, SIGKILL);
                        (void) waitpid(pid, &status, 0);
                        if (asprintf(ret_error, "The reload command '%s' did not finish in time: killed", command) < 0)
                                *ret_error = NULL;
                        return -ETIMEDOUT;
                }
                (void) usleep(5000);
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                if (asprintf(ret_error, "The reload command '%s' failed (%s %d)", command,
                             WIFEXITED(status) ? "exit status" : "signal",
                             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status)) < 0)
                        *ret_error = NULL;
                return -EIO;
        }
        return 0;
}

static int nginx_apply(Sync *s, Endpoint **wantp, size_t *n_wantp, usec_t *ret_due, char **ret_error) {
        const Options *o = s->opt;
        _cleanup_(freep) char *text = NULL, *old = NULL;
        _cleanup_(freep) Endpoint *routed = NULL;
        size_t n_routed = 0;
        int r;

        r = read_small_file(o->nginx_file, NGINX_FILE_MAX, &old);
        if (r < 0 && r != -ENOENT) {
                if (asprintf(ret_error, "Cannot read %s: %s", o->nginx_file, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        if (old) {
                r = proxysync_nginx_servers(old, &routed, &n_routed);
                if (r < 0)
                        return r;
                r = keep_forgotten(s, routed, n_routed, wantp, n_wantp, ret_due, ret_error);
                if (r < 0)
                        return r;
        }
        const Endpoint *want = *wantp;
        size_t n_want = *n_wantp;

        if (n_want == 0 && !o->allow_empty && old && proxysync_nginx_has_servers(old)) {
                if (!s->holding_empty)
                        log_warning("Pool %s has no routable member: keeping %s as it is "
                                    "(--allow-empty applies an empty pool)", o->pool, o->nginx_file);
                s->holding_empty = true;
                return 0;
        }
        s->holding_empty = false;
        r = proxysync_render_nginx(o->pool, o->upstream, want, n_want, o->server_args, &text);
        if (r < 0)
                return r;
        if (!old || !streq(old, text)) {
                r = write_atomic(o->nginx_file, text);
                if (r < 0) {
                        if (asprintf(ret_error, "Cannot write %s: %s", o->nginx_file, strerror(-r)) < 0)
                                *ret_error = NULL;
                        return r;
                }
                log_info("Wrote %s: %zu servers", o->nginx_file, n_want);
                s->reload_pending = true;
        }
        if (s->force_reload)
                s->reload_pending = true;
        if (s->reload_pending && o->nginx_reload) {
                r = run_reload(o->nginx_reload, o->reload_timeout, ret_error);
                if (r < 0)
                        return r;
                log_info("Reloaded nginx: %s", o->nginx_reload);
        }
        s->reload_pending = false;
        s->force_reload = false;
        (void) sd_notifyf(false, "STATUS=pool %s: %zu routable, %s up to date", o->pool, n_want, o->nginx_file);
        return 0;
}

/* One full sync. ret_next: when to run again if nothing else asks. */
static int sync_once(Sync *s, usec_t *ret_next) {
        _cleanup_(freep) Endpoint *want = NULL;
        _cleanup_(freep) char *err = NULL;
        size_t n = 0, skipped = 0;
        long long min_pttl = -1;
        usec_t next = s->opt->interval, due = USEC_INFINITY;
        int r;

        s->syncs++;
        bool reused = s->query != NULL;
        r = redis_read_routable(s, &want, &n, &min_pttl, &skipped, &err);
        if (r == -EIO && reused) {
                /* A kept connection can be stale (Redis restarted since the
                 * last sync): one fresh try before calling it a failure. */
                log_debug("%s: reconnecting", strna(err));
                err = mfree(err);
                r = redis_read_routable(s, &want, &n, &min_pttl, &skipped, &err);
        }
        if (r < 0) {
                sync_problem(s, r, "%s", err ? err : strerror(-r));
                return r;
        }
        log_debug("Pool %s: %zu routable, %zu in serving without a live lease", s->opt->pool, n, skipped);
        if (min_pttl >= 0)
                next = MIN(next, (usec_t) min_pttl * USEC_PER_MSEC + LEASE_SLACK_USEC);

        if (s->opt->target == TARGET_HAPROXY)
                r = haproxy_apply(s, &want, &n, &due, &err);
        else
                r = nginx_apply(s, &want, &n, &due, &err);
        if (r < 0) {
                sync_problem(s, r, "%s", err ? err : strerror(-r));
                return r;
        }
        if (due != USEC_INFINITY)
                next = MIN(next, due);
        sync_recovered(s);
        *ret_next = next;
        return 0;
}

/* --- the loop ----------------------------------------------------------- */

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

static int on_sync_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Sync *s = userdata;
        usec_t next = 0;
        int r;

        r = sync_once(s, &next);
        if (r < 0) {
                s->sync_failures++;
                next = backoff(s->sync_failures, MIN(BACKOFF_MAX_USEC, s->opt->interval));
        } else
                s->sync_failures = 0;
        if (!s->notified_ready) {
                /* Ready after the first attempt, whatever it gave: a unit that
                 * waits for us must not hang while Redis is down. */
                (void) sd_notify(false, "READY=1");
                s->notified_ready = true;
        }
        arm_sync(s, MAX(next, COALESCE_USEC));
        return 0;
}

static void sub_schedule_reconnect(Sync *s);

static void on_sub_disconnect(const redisAsyncContext *ac, int status) {
        Sync *s = ac->data;

        if (s->sub != ac)
                return;
        /* hiredis frees the context after this returns. */
        s->sub = NULL;
        if (s->subscribed)
                log_warning("Lost the Redis events subscription: %s, reconnecting", ac->errstr[0] ? ac->errstr : "closed");
        s->subscribed = false;
        sub_schedule_reconnect(s);
}

static void on_sub_connect(const redisAsyncContext *ac, int status) {
        Sync *s = ac->data;

        if (status == REDIS_OK || s->sub != ac)
                return;
        /* hiredis frees a context whose connect failed, without calling the
         * disconnect callback. */
        s->sub = NULL;
        s->subscribed = false;
        sync_problem(s, -ECONNREFUSED, "Cannot subscribe to %s: %s", s->k_events, ac->errstr);
        sub_schedule_reconnect(s);
}

static void on_auth(redisAsyncContext *ac, void *reply, void *privdata) {
        redisReply *rep = reply;
        Sync *s = privdata;

        if (rep && rep->type == REDIS_REPLY_ERROR) {
                sync_problem(s, -EACCES, "Redis AUTH failed on the events connection: %s", rep->str);
                redisAsyncDisconnect(ac);
        }
}

static void on_sub_message(redisAsyncContext *ac, void *reply, void *privdata) {
        redisReply *rep = reply;
        Sync *s = privdata;

        if (!rep || s->sub != ac)
                return; /* NULL: the context is going away */
        if (rep->type == REDIS_REPLY_ERROR) {
                sync_problem(s, -EIO, "SUBSCRIBE %s: %s", s->k_events, rep->str);
                redisAsyncDisconnect(ac);
                return;
        }
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 || rep->element[0]->type != REDIS_REPLY_STRING)
                return;
        if (streq(rep->element[0]->str, "subscribe")) {
                log_info("Subscribed to %s", s->k_events);
                s->subscribed = true;
                s->sub_failures = 0;
                (void) sd_event_source_set_enabled(s->sub_timer, SD_EVENT_OFF);
                /* Whatever happened while we were not listening. */
                request_sync(s);
                return;
        }
        if (streq(rep->element[0]->str, "message")) {
                if (rep->element[2]->type == REDIS_REPLY_STRING)
                        log_debug("Event: %.300s", rep->element[2]->str);
                request_sync(s);
        }
}

static void sub_connect(Sync *s) {
        const Options *o = s->opt;
        redisAsyncContext *ac;
        uint64_t now;
        int r;

        ac = o->redis.path ? redisAsyncConnectUnix(o->redis.path)
                           : redisAsyncConnect(o->redis.server.host, o->redis.server.port);
        if (!ac) {
                log_oom();
                sub_schedule_reconnect(s);
                return;
        }
        if (ac->err) {
                sync_problem(s, -ECONNREFUSED, "Cannot subscribe to %s: %s", s->k_events, ac->errstr);
                redisAsyncFree(ac);
                sub_schedule_reconnect(s);
                return;
        }
        r = redis_event_attach(ac, s->event);
        if (r < 0) {
                log_error_errno(r, "Cannot watch the Redis events connection: %m");
                redisAsyncFree(ac);
                sub_schedule_reconnect(s);
                return;
        }
        ac->data = s;
        s->sub = ac;
        s->subscribed = false;
        redisAsyncSetConnectCallback(ac, on_sub_connect);
        redisAsyncSetDisconnectCallback(ac, on_sub_disconnect);
        if (o->redis.password) {
                if (o->redis.user)
                        redisAsyncCommand(ac, on_auth, s, "AUTH %s %s", o->redis.user, o->redis.password);
                else
                        redisAsyncCommand(ac, on_auth, s, "AUTH %s", o->redis.password);
        }
        /* Pub/sub ignores SELECT: channels are server-wide. */
        redisAsyncCommand(ac, on_sub_message, s, "SUBSCRIBE %s", s->k_events);

        /* Connect + subscribe must finish in time; hiredis has no timeouts. */
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) >= 0 &&
            sd_event_source_set_time(s->sub_timer, now + 3 * o->timeout) >= 0)
                (void) sd_event_source_set_enabled(s->sub_timer, SD_EVENT_ONESHOT);
}

static void sub_schedule_reconnect(Sync *s) {
        uint64_t now;

        s->sub_failures++;
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0)
                return;
        if (sd_event_source_set_time(s->sub_timer, now + backoff(s->sub_failures, BACKOFF_MAX_USEC)) >= 0)
                (void) sd_event_source_set_enabled(s->sub_timer, SD_EVENT_ONESHOT);
}

static int on_sub_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Sync *s = userdata;

        if (s->sub) {
                if (s->subscribed)
                        return 0;
                /* Connect or SUBSCRIBE timed out. Freeing a context that never
                 * connected calls no callback: reschedule ourselves. */
                redisAsyncContext *ac = s->sub;
                s->sub = NULL;
                sync_problem(s, -ETIMEDOUT, "Subscribing to %s timed out", s->k_events);
                redisAsyncFree(ac);
                sub_schedule_reconnect(s);
                return 0;
        }
        sub_connect(s);
        return 0;
}

static int on_signal(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata) {
        Sync *s = userdata;

        if (si->ssi_signo == SIGHUP) {
                log_info("SIGHUP: full resync%s", s->opt->target == TARGET_NGINX ? " and nginx reload" : "");
                s->force_reload = true;
                request_sync(s);
                return 0;
        }
        log_info("Exiting on %s", strsignal((int) si->ssi_signo));
        return sd_event_exit(s->event, 0);
}

static Sync *sync_free(Sync *s) {
        if (!s)
                return NULL;
        free(s->known);
        if (s->sub) {
                redisAsyncContext *ac = s->sub;
                s->sub = NULL;
                redisAsyncFree(ac);
        }
        query_drop(s);
        sd_event_source_disable_unref(s->sync_timer);
        sd_event_source_disable_unref(s->sub_timer);
        sd_event_source_disable_unref(s->sig_term);
        sd_event_source_disable_unref(s->sig_int);
        sd_event_source_disable_unref(s->sig_hup);
        sd_event_unref(s->event);
        free(s->k_serving);
        free(s->k_lease_prefix);
        free(s->k_addrs);
        free(s->k_events);
        free(s->last_error);
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
        *ret = TAKE_PTR(s);
        return 0;
}

static int sync_run(Sync *s) {
        sigset_t mask;
        int r;

        r = sd_event_new(&s->event);
        if (r < 0)
                return log_error_errno(r, "Cannot create the event loop: %m");
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
        r = sd_event_add_time(s->event, &s->sub_timer, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_MSEC, on_sub_timer, s);
        if (r < 0)
                return log_error_errno(r, "Cannot add the subscriber timer: %m");
        (void) sd_event_source_set_enabled(s->sub_timer, SD_EVENT_OFF);

        sub_connect(s);
        arm_sync(s, 0);
        log_info(PROG " %s: pool %s -> %s %s", MONKEY_VERSION, s->opt->pool,
                 s->opt->target == TARGET_HAPROXY ? "HAProxy backend" : "nginx upstream file",
                 s->opt->target == TARGET_HAPROXY ? s->opt->backend : s->opt->nginx_file);
        r = sd_event_loop(s->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return r;
}

/* --- command line ---------------------------------------------------------- */

static void help(void) {
        printf("Usage: " PROG " --pool NAME [--redis URL] TARGET [OPTIONS]\n"
               "\n"
               "Makes a proxy follow a Doctor Monkey pool: routes to members of\n"
               "monkey:{NAME}:serving whose agent still holds a lease.\n"
               "\n"
               "Targets (exactly one):\n"
               "  --haproxy-socket PATH --backend NAME [--server-prefix P] [--drain-grace DUR]\n"
               "        HAProxy runtime API (stats socket 'level admin'); the backend has\n"
               "        'server-template P 1-N 127.0.0.1:1 disabled' slots (default P: s).\n"
               "        Leavers are drained, then put in maint after the grace (default 10s).\n"
               "  --nginx-upstream FILE [--nginx-reload CMD] [--upstream NAME] [--server-args ARGS]\n"
               "        writes 'upstream NAME { server ip:port ARGS; ... }' atomically (NAME\n"
               "        defaults to the pool name) and runs CMD with /bin/sh when it changed.\n"
               "\n"
               "Options:\n"
               "  --redis URL             redis://[USER:PASSWORD@]HOST[:PORT][/DB] or unix:///PATH[?db=DB],\n"
               "                          as monkeyd's [pool] redis\n"
               "                          (default redis://127.0.0.1:6379)\n"
               "  --password-file FILE    Redis password (first line), instead of the URL; an\n"
               "                          absolute path to a file of ours or root's, no symlink,\n"
               "                          no group/other access (chmod 600)\n"
               "  --interval DUR          periodic full resync (default 5s)\n"
               "  --timeout DUR           per Redis/HAProxy exchange (default 1s)\n"
               "  --reload-timeout DUR    the reload command is killed after this (default 10s)\n"
               "  --allow-empty           apply an empty pool (default: keep the last servers)\n"
               "  --settle DUR            a routed server that Redis does not know at all (Redis\n"
               "                          restarted empty or flushed) stays routed this long while\n"
               "                          the agents register again (default 15s, the agents'\n"
               "                          default lease; 0: remove at once)\n"
               "  --once                  sync once and exit (0 in sync, 1 not)\n"
               "  --log-level LEVEL       error, warning, notice, info (default), debug\n"
               "  --version, -h --help\n"
               "\n"
               "Durations as in monkeyd.conf: 500ms, 5s, 1m30s (a day at most).\n"
               "Exit status 2 on usage errors.\n");
}

static int usage(const char *format, ...) _printf_(1, 2);
static int usage(const char *format, ...) {
        va_list ap;

        fputs(PROG ": ", stderr);
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputs(" (see --help)\n", stderr);
        return 2;
}

static void options_done(Options *o) {
        redis_url_done(&o->redis);
}

enum {
        ARG_REDIS = 0x100,
        ARG_PASSWORD_FILE,
        ARG_POOL,
        ARG_HAPROXY_SOCKET,
        ARG_BACKEND,
        ARG_SERVER_PREFIX,
        ARG_DRAIN_GRACE,
        ARG_SETTLE,
        ARG_NGINX_UPSTREAM,
        ARG_NGINX_RELOAD,
        ARG_UPSTREAM,
        ARG_SERVER_ARGS,
        ARG_INTERVAL,
        ARG_TIMEOUT,
        ARG_RELOAD_TIMEOUT,
        ARG_ALLOW_EMPTY,
        ARG_ONCE,
        ARG_LOG_LEVEL,
        ARG_VERSION,
};

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "redis", required_argument, NULL, ARG_REDIS },
                { "password-file", required_argument, NULL, ARG_PASSWORD_FILE },
                { "pool", required_argument, NULL, ARG_POOL },
                { "haproxy-socket", required_argument, NULL, ARG_HAPROXY_SOCKET },
                { "backend", required_argument, NULL, ARG_BACKEND },
                { "server-prefix", required_argument, NULL, ARG_SERVER_PREFIX },
                { "drain-grace", required_argument, NULL, ARG_DRAIN_GRACE },
                { "settle", required_argument, NULL, ARG_SETTLE },
                { "nginx-upstream", required_argument, NULL, ARG_NGINX_UPSTREAM },
                { "nginx-reload", required_argument, NULL, ARG_NGINX_RELOAD },
                { "upstream", required_argument, NULL, ARG_UPSTREAM },
                { "server-args", required_argument, NULL, ARG_SERVER_ARGS },
                { "interval", required_argument, NULL, ARG_INTERVAL },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                { "reload-timeout", required_argument, NULL, ARG_RELOAD_TIMEOUT },
                { "allow-empty", no_argument, NULL, ARG_ALLOW_EMPTY },
                { "once", no_argument, NULL, ARG_ONCE },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "version", no_argument, NULL, ARG_VERSION },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(options_done) Options o = {
                .prefix = "s",
                .interval = 5 * USEC_PER_SEC,
                .timeout = USEC_PER_SEC,
                .reload_timeout = 10 * USEC_PER_SEC,
                .drain_grace = 10 * USEC_PER_SEC,
                .settle = 15 * USEC_PER_SEC,
        };
        _cleanup_(sync_freep) Sync *s = NULL;
        const char *redis_url = "redis://127.0.0.1:6379", *password_file = NULL;
        _cleanup_(freep) char *url_error = NULL, *secret_error = NULL;
        int c, r, level = -1;
        usec_t *dur;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case ARG_REDIS: redis_url = optarg; break;
                case ARG_PASSWORD_FILE: password_file = optarg; break;
                case ARG_POOL: o.pool = optarg; break;
                case ARG_HAPROXY_SOCKET: o.haproxy_socket = optarg; break;
                case ARG_BACKEND: o.backend = optarg; break;
                case ARG_SERVER_PREFIX: o.prefix = optarg; break;
                case ARG_NGINX_UPSTREAM: o.nginx_file = optarg; break;
                case ARG_NGINX_RELOAD: o.nginx_reload = optarg; break;
                case ARG_UPSTREAM: o.upstream = optarg; break;
                case ARG_SERVER_ARGS: o.server_args = optarg; break;
                case ARG_ALLOW_EMPTY: o.allow_empty = true; break;
                case ARG_ONCE: o.once = true; break;
                case ARG_DRAIN_GRACE:
                case ARG_SETTLE:
                case ARG_INTERVAL:
                case ARG_TIMEOUT:
                case ARG_RELOAD_TIMEOUT:
                        dur = c == ARG_DRAIN_GRACE ? &o.drain_grace
                            : c == ARG_SETTLE      ? &o.settle
                            : c == ARG_INTERVAL    ? &o.interval
                            : c == ARG_TIMEOUT     ? &o.timeout
                                                   : &o.reload_timeout;
                        /* monkeyd's grammar ("1m30s"); a day at most, as
                         * none of these is useful longer. */
                        if (parse_duration(optarg, dur) < 0 || *dur > USEC_PER_DAY) {
                                const char *name = "?";
                                for (size_t i = 0; options[i].name; i++)
                                        if (options[i].val == c)
                                                name = options[i].name;
                                return usage("invalid duration '%s' for --%s", optarg, name);
                        }
                        break;
                case ARG_LOG_LEVEL:
                        level = log_level_from_string(optarg);
                        if (level < 0)
                                return usage("invalid log level '%s'", optarg);
                        break;
                case ARG_VERSION: printf(PROG " %s\n", MONKEY_VERSION); return 0;
                case 'h': help(); return 0;
                default: return 2;
                }
        if (optind < argc)
                return usage("unexpected argument '%s'", argv[optind]);

        if (!o.pool)
                return usage("--pool NAME is required");
        if (!proxysync_name_is_valid(o.pool))
                return usage("invalid pool name '%s' (letters, digits, '.', '_', '-')", o.pool);
        /* monkeyd's grammar, so a URL copied from its [pool] redis means
         * the same socket and DB here. */
        r = redis_url_parse(redis_url, &o.redis, &url_error);
        if (r == -ENOMEM)
                return log_oom(), 1;
        if (r < 0)
                return usage("%s", url_error ? url_error : "invalid --redis URL");
        if (o.redis.kind == REDIS_URL_SENTINEL)
                return usage("--redis: sentinel:// is not supported, give the master's redis:// URL");
        if (o.haproxy_socket && o.nginx_file)
                return usage("--haproxy-socket and --nginx-upstream exclude each other");
        if (o.haproxy_socket) {
                o.target = TARGET_HAPROXY;
                if (!o.backend)
                        return usage("--haproxy-socket needs --backend NAME");
                if (!proxysync_name_is_valid(o.backend) || !proxysync_name_is_valid(o.prefix))
                        return usage("invalid --backend or --server-prefix (letters, digits, '.', '_', '-')");
                if (o.nginx_reload || o.upstream || o.server_args)
                        return usage("--nginx-reload, --upstream and --server-args go with --nginx-upstream");
        } else if (o.nginx_file) {
                o.target = TARGET_NGINX;
                if (!o.upstream)
                        o.upstream = o.pool;
                if (!proxysync_name_is_valid(o.upstream))
                        return usage("invalid --upstream name '%s'", o.upstream);
                if (!proxysync_server_args_are_valid(o.server_args))
                        return usage("--server-args may not hold ';', braces, '#', quotes, '$' or control characters");
                if (o.backend)
                        return usage("--backend goes with --haproxy-socket");
        } else
                return usage("a target is required: --haproxy-socket PATH --backend NAME, or --nginx-upstream FILE");
        if (o.interval < 100 * USEC_PER_MSEC || o.timeout < 10 * USEC_PER_MSEC || o.reload_timeout < 10 * USEC_PER_MSEC)
                return usage("--interval must be at least 100ms, --timeout and --reload-timeout at least 10ms");
        if (password_file) {
                /* "redis://syncer@host" with a password file: the word names the user. */
                if (o.redis.password && o.redis.bare_userinfo) {
                        o.redis.user = o.redis.password;
                        o.redis.password = NULL;
                }
                if (o.redis.password)
                        return usage("give the Redis password in the URL or in --password-file, not both");
                /* monkeyd's rules for its own password_file: a password
                 * others can read is refused, not used. */
                r = secret_file_read(password_file, &o.redis.password, &secret_error);
                if (r < 0) {
                        fprintf(stderr, PROG ": --password-file: %s\n", secret_error ? secret_error : strerror(-r));
                        return 2;
                }
        }

        log_setup(LOG_TARGET_AUTO);
        if (level >= 0)
                log_max_level = level;
        srandom((unsigned) (now_usec() ^ (usec_t) getpid()));

        r = sync_new(&o, &s);
        if (r < 0)
                return log_oom(), 1;
        if (o.once) {
                usec_t next;
                r = sync_once(s, &next);
                return r < 0 ? 1 : 0;
        }
        r = sync_run(s);
        return r != 0 ? 1 : 0;
}
