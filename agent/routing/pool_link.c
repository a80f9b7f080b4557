/* The pool's connection to Redis: see pool_link.h. Each connection is a
 * RespConn (respconn.c: its own socket, TLS, host names off the loop), so:
 *   - a Conn forgets its connection (rc = NULL) when it gives it up, and
 *     every callback checks that its connection is still the Conn's;
 *   - a connection given up is "doomed" and freed by a defer source, on a
 *     clean stack; until then a reply it still reads is heard (late);
 *   - every command is a Cmd with its own timeout timer, freed by its reply
 *     callback, which respconn calls with NULL when the connection closes. */
#include "pool_link.h"

#include <assert.h>
#include <stdarg.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "random.h"
#include "rediscluster.h"
#include "redisreply.h"
#include "redisurl.h"
#include "respconn.h"
#include "secret.h"

#define POOL_COMMAND_TIMEOUT_USEC (2 * USEC_PER_SEC)
#define POOL_CONNECT_TIMEOUT_USEC (2 * USEC_PER_SEC)
#define DOOMED_MAX 16
/* Redis Cluster: how long a command may wait for its slot (TRYAGAIN while
 * the slot moves, CLUSTERDOWN while a replica takes over, MOVED while we
 * connect to the new owner) before its owner hears it failed; how often
 * the waiting ones are tried again; how many redirections one command may
 * follow (a MOVED ping-pong between two nodes that disagree ends). */
#define CLUSTER_PATIENCE_USEC (5 * USEC_PER_SEC)
#define CLUSTER_RETRY_USEC (50 * USEC_PER_MSEC)
#define CLUSTER_REDIRECTS_MAX 16

typedef enum ConnKind {
        CONN_MAIN,
        CONN_SENTINEL,
        CONN_ASK, /* Redis Cluster: the node an ASK sent a command to, while the pool's slot moves */
} ConnKind;

/* One connection: the main one, the sentinel's or the ASK target's. */
typedef struct Conn {
        PoolLink *link;
        ConnKind kind;
        RespConn *rc; /* NULL once given up */
        char *peer;   /* for messages */
        char *host;   /* what it connects to (TCP), to tell a redirection to it */
        uint16_t port;
} Conn;

typedef enum CmdKind {
        CMD_AUTH,
        CMD_SELECT,
        CMD_ROLE,       /* handshake through Sentinel: is this the master? */
        CMD_ROLE_CHECK, /* the same, with each heartbeat: follows failover */
        CMD_SCRIPT_LOAD,
        CMD_SENTINEL_MASTER,
        CMD_ASKING,        /* before a command an ASK redirected */
        CMD_CLUSTER_SLOTS, /* after connecting to a cluster: the nodes to fall back on */
        CMD_OWNER, /* the owner's: a script (EVALSHA, EVAL after NOSCRIPT) or a plain command */
} CmdKind;

typedef struct Cmd Cmd;
struct Cmd {
        PoolLink *link;
        Conn *conn;
        RespConn *rc; /* the connection it went out on */
        CmdKind kind;
        PoolScript script; /* CMD_OWNER: _POOL_SCRIPT_INVALID for a plain command */
        const char *what;  /* CMD_OWNER: the name for messages (static) */
        bool evaled;       /* NOSCRIPT fallback already used */
        unsigned index;    /* SCRIPT LOAD: which script */
        unsigned flags;    /* POOL_LINK_* */
        pool_link_reply_t handler;
        void *userdata;
        char **argv;
        size_t *argvlen;
        int argc;
        sd_event_source *timer;
        unsigned redirects; /* Redis Cluster: MOVED/ASK/TRYAGAIN followed */
        usec_t give_up_at;  /* CLOCK_MONOTONIC: the owner hears a failure after this */
        char *waiting_for;  /* parked: the cluster's last word ("TRYAGAIN ...") */
        Cmd *prev, *next;
};

struct PoolLink {
        sd_event *event;
        PoolLinkSettings settings;
        char *label;
        PoolLinkHandlers handlers;

        PoolLinkState state;
        Conn main, sentinel;
        size_t sentinel_next, sentinel_tried;
        char *master_host;
        uint16_t master_port;
        unsigned attempt, handshake_pending;
        bool ever_ready, freeing;
        bool degraded; /* connected, but Redis refuses our scripts (NOPERM, OOM...): last_error says why */
        char *refused; /* the refusal last logged while degraded */
        char sha[_POOL_SCRIPT_MAX][41];
        char *last_error, *logged_error;
        usec_t lost_at; /* CLOCK_MONOTONIC, 0 while fine */
        sd_event_source *retry_timer, *reaper;
        RespConn *doomed[DOOMED_MAX]; /* given up, freed by the reaper */
        size_t n_doomed;

        /* Redis Cluster, learned from the first MOVED (or TRYAGAIN,
         * CLUSTERDOWN): the node that serves the pool's slot, the nodes
         * CLUSTER SLOTS named (fallbacks when that node is gone), the ASK
         * target's connection, and the commands parked until their slot
         * can take them. switching: the main connection is moving to the
         * slot's new owner; the owner never heard "broken". */
        bool cluster, switching, node_fresh;
        unsigned slot;
        char *node_host;
        uint16_t node_port;
        RedisEndpoint *known;
        size_t n_known, candidate_next;
        Conn ask;
        RespConn *retired; /* the main connection before a switch, until its replies are in */
        Cmd **parked;
        size_t n_parked;
        sd_event_source *park_timer;

        Cmd *cmds;
};

static void set_error_v(PoolLink *l, const char *format, va_list ap) _printf_(2, 0);
static void set_error_v(PoolLink *l, const char *format, va_list ap) {
        char *m = NULL;

        if (vasprintf(&m, format, ap) < 0 || !m)
                return; /* out of memory: keep the previous error */
        free(l->last_error);
        l->last_error = m;
}

static void set_error(PoolLink *l, const char *format, ...) _printf_(2, 3);
static void set_error(PoolLink *l, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        set_error_v(l, format, ap);
        va_end(ap);
}

const char *pool_link_error(const PoolLink *l, const char *fallback) {
        return l && l->last_error ? l->last_error : fallback;
}

static const char *error_or(const PoolLink *l, const char *fallback) {
        return pool_link_error(l, fallback);
}

/* ---- settings ---- */

static void free_wiped(char *s) {
        if (s)
                explicit_bzero(s, strlen(s));
        free(s);
}

void pool_link_settings_done(PoolLinkSettings *s) {
        free_wiped(s->url_text);
        free(s->url_shown);
        free(s->password_file);
        free_wiped(s->password);
        redis_url_done(&s->url);
        SSL_CTX_free(s->tls);
        free(s->tls_files);
        free(s->tls_server_name);
        *s = (PoolLinkSettings) {};
}

int pool_link_settings_load(const Config *c, PoolLinkSettings *ret, char **ret_error) {
        _cleanup_(pool_link_settings_done) PoolLinkSettings s = {};
        _cleanup_(freep) char *err = NULL;
        int r;

        r = redis_url_parse(c->pool.redis, &s.url, &err);
        if (r < 0) {
                if (ret_error && err && asprintf(ret_error, "%s: [pool] redis: %s", strna(c->path), err) < 0)
                        *ret_error = NULL;
                return r;
        }
        s.url_text = strdup(c->pool.redis);
        s.url_shown = redis_url_redact(c->pool.redis);
        if (!s.url_text || !s.url_shown)
                return -ENOMEM;
        if (c->pool.password_file) {
                s.password_file = strdup(c->pool.password_file);
                if (!s.password_file)
                        return -ENOMEM;
                r = secret_file_read(c->pool.password_file, &s.password, &err);
                if (r < 0) {
                        if (ret_error &&
                            asprintf(ret_error, "[pool] password_file: %s", err ? err : strerror(-r)) < 0)
                                *ret_error = NULL;
                        return r;
                }
                /* redis://monkey@host with a password file: the ACL user */
                if (s.url.bare_userinfo && !s.url.user) {
                        s.url.user = TAKE_PTR(s.url.password);
                        s.url.bare_userinfo = false;
                }
        } else if (s.url.password) {
                s.password = strdup(s.url.password);
                if (!s.password)
                        return -ENOMEM;
        }
        if (s.url.tls) {
                /* Read now: a bad CA or key fails the start or the reload,
                 * never a reconnect hours later. */
                r = respconn_tls_new(c->pool.tls_ca_file, c->pool.tls_cert_file, c->pool.tls_key_file, &s.tls, &err);
                if (r < 0) {
                        if (ret_error && asprintf(ret_error, "[pool] tls: %s", err ? err : strerror(-r)) < 0)
                                *ret_error = NULL;
                        return r;
                }
                if (asprintf(&s.tls_files, "%s\n%s\n%s", strna(c->pool.tls_ca_file), strna(c->pool.tls_cert_file),
                             strna(c->pool.tls_key_file)) < 0)
                        return -ENOMEM;
                s.tls_server_name = c->pool.tls_server_name ? strdup(c->pool.tls_server_name) : NULL;
                if (c->pool.tls_server_name && !s.tls_server_name)
                        return -ENOMEM;
        }
        *ret = s;
        s = (PoolLinkSettings) {};
        return 0;
}

bool pool_link_swap_settings(PoolLink *l, PoolLinkSettings *s) {
        PoolLinkSettings old = l->settings;
        bool changed = !streq_ptr(s->url_text, old.url_text) || !streq_ptr(s->password, old.password) ||
                       !streq_ptr(s->tls_files, old.tls_files) || !streq_ptr(s->tls_server_name, old.tls_server_name);

        l->settings = *s;
        *s = old;
        return changed;
}

const char *pool_link_url_shown(const PoolLink *l) {
        return l->settings.url_shown;
}

/* ---- connections we gave up on ---- */

static int on_reap(sd_event_source *s, void *userdata) {
        PoolLink *l = userdata;

        /* Out of every connection callback here: freeing runs the pending
         * callbacks with NULL replies, which only fail their commands. */
        while (l->n_doomed > 0)
                respconn_free(l->doomed[--l->n_doomed]);
        return 0;
}

static void doom(PoolLink *l, RespConn *rc) {
        int r;

        if (l->n_doomed == DOOMED_MAX) /* cannot happen: one per reconnect, reaped each loop */
                on_reap(NULL, l);
        l->doomed[l->n_doomed++] = rc;
        r = sd_event_source_set_enabled(l->reaper, SD_EVENT_ONESHOT);
        /* ESTALE: the loop is exiting (SIGTERM); pool_link_free reaps it. */
        if (r < 0 && r != -ESTALE)
                log_error_errno(r, "pool: cannot schedule closing a Redis connection: %m");
}

/* ---- commands ---- */

static void cmd_unlink(Cmd *c) {
        PoolLink *l = c->link;

        if (!l)
                return;
        if (c->prev)
                c->prev->next = c->next;
        else if (l->cmds == c)
                l->cmds = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
}

static Cmd *cmd_free(Cmd *c) {
        if (!c)
                return NULL;
        c->timer = sd_event_source_disable_unref(c->timer);
        cmd_unlink(c);
        for (int i = 0; i < c->argc; i++) {
                if (c->kind == CMD_AUTH && c->argv[i])
                        explicit_bzero(c->argv[i], c->argvlen[i]);
                free(c->argv[i]);
        }
        free(c->argv);
        free(c->argvlen);
        free(c->waiting_for);
        free(c);
        return NULL;
}

static Cmd *cmd_new(PoolLink *l, Conn *conn, CmdKind kind, int argc) {
        Cmd *c = calloc(1, sizeof *c);

        if (!c)
                return NULL;
        c->link = l;
        c->conn = conn;
        c->kind = kind;
        c->script = _POOL_SCRIPT_INVALID;
        c->argc = argc;
        c->argv = calloc((size_t) argc, sizeof *c->argv);
        c->argvlen = calloc((size_t) argc, sizeof *c->argvlen);
        if (!c->argv || !c->argvlen) {
                c->link = NULL;
                return cmd_free(c);
        }
        return c;
}

static int cmd_set(Cmd *c, int i, const char *s) {
        char *d;

        if (!s)
                s = "";
        d = strdup(s);
        if (!d)
                return -ENOMEM;
        free(c->argv[i]);
        c->argv[i] = d;
        c->argvlen[i] = strlen(d);
        return 0;
}

static int cmd_setf(Cmd *c, int i, const char *format, ...) _printf_(3, 4);
static int cmd_setf(Cmd *c, int i, const char *format, ...) {
        va_list ap;
        char *d = NULL;
        int r;

        va_start(ap, format);
        r = vasprintf(&d, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        free(c->argv[i]);
        c->argv[i] = d;
        c->argvlen[i] = (size_t) r;
        return 0;
}

static const char *cmd_name(const Cmd *c) {
        switch (c->kind) {
        case CMD_AUTH:
                return "AUTH";
        case CMD_SELECT:
                return "SELECT";
        case CMD_ROLE:
        case CMD_ROLE_CHECK:
                return "ROLE";
        case CMD_SCRIPT_LOAD:
                return "SCRIPT LOAD";
        case CMD_SENTINEL_MASTER:
                return "SENTINEL get-master-addr-by-name";
        case CMD_ASKING:
                return "ASKING";
        case CMD_CLUSTER_SLOTS:
                return "CLUSTER SLOTS";
        case CMD_OWNER:
                return c->what;
        }
        return "?";
}

static void conn_close(Conn *conn);
static void conn_lost(Conn *conn, const RespConn *rc, const char *why);
static int conn_connect(Conn *conn, const char *host, uint16_t port, const char *path);
static void link_broken(PoolLink *l);
static void connect_start(PoolLink *l);
static void sentinel_query(PoolLink *l);
static void handshake_start(PoolLink *l);
static void link_fail(PoolLink *l, const char *format, ...) _printf_(2, 3);
static void sentinel_failed(PoolLink *l, const char *format, ...) _printf_(2, 3);
static void on_reply(RespConn *rc, const redisReply *r, const char *error, void *userdata);
static void park(Cmd *c);
static void retired_check(PoolLink *l);

/* A command that will get no reply: its owner hears so. */
static void cmd_fail(Cmd *c, const char *detail) {
        if (c->handler)
                c->handler(c->link, cmd_name(c), NULL, detail, c->rc && c->conn->rc == c->rc, c->userdata);
        cmd_free(c);
}

static int on_cmd_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Cmd *c = userdata;
        PoolLink *l = c->link;
        char why[160];

        c->timer = sd_event_source_disable_unref(c->timer);
        snprintf(why, sizeof why, "no reply to %s from %s within %llums", cmd_name(c), strna(c->conn->peer),
                 (unsigned long long) (POOL_COMMAND_TIMEOUT_USEC / USEC_PER_MSEC));
        /* A connection that let one command time out is presumed dead:
         * the rest of its replies would come late or never. */
        if (c->rc && c->rc == l->retired) {
                log_debug("pool: %s; giving up the slot's old node", why);
                doom(l, TAKE_PTR(l->retired)); /* its commands fail as it closes */
                return 0;
        }
        if (c->conn->rc != c->rc)
                return 0;
        if (c->conn->kind == CONN_MAIN)
                link_fail(l, "%s", why);
        else if (c->conn->kind == CONN_ASK) {
                log_debug("pool: %s; closing that connection", why);
                conn_close(c->conn); /* its commands fail as it closes */
        } else
                sentinel_failed(l, "%s", why);
        return 0;
}

/* Takes c in all cases. Returns 0, or a negative errno after failing c. */
static int cmd_send(Cmd *c) {
        PoolLink *l = c->link;
        Conn *conn = c->conn;
        int r;

        if (c->kind == CMD_OWNER && !c->give_up_at)
                c->give_up_at = clock_loop_now(l->event, CLOCK_MONOTONIC) + CLUSTER_PATIENCE_USEC;
        /* Moving to the pool's slot's new owner: its handshake first. */
        if (c->kind == CMD_OWNER && conn == &l->main && l->switching) {
                park(c);
                return 0;
        }
        if (!conn->rc) {
                cmd_fail(c, error_or(l, "not connected"));
                return -ENOTCONN;
        }
        r = sd_event_add_time_relative(l->event, &c->timer, CLOCK_MONOTONIC, POOL_COMMAND_TIMEOUT_USEC,
                                       USEC_PER_MSEC, on_cmd_timeout, c);
        if (r < 0) {
                cmd_fail(c, "cannot arm the command timer");
                return r;
        }
        c->rc = conn->rc;
        r = respconn_command(conn->rc, c->argc, (const char *const *) c->argv, c->argvlen, on_reply, c);
        if (r < 0) {
                cmd_fail(c, "cannot queue the command");
                return r;
        }
        c->prev = NULL;
        c->next = l->cmds;
        if (l->cmds)
                l->cmds->prev = c;
        l->cmds = c;
        return 0;
}

/* Heard "out of memory" when c is NULL. */
static int owner_send(PoolLink *l, Cmd *c, const char *what, pool_link_reply_t h, void *userdata) {
        if (!c) {
                log_oom();
                if (h)
                        h(l, what, NULL, "out of memory", false, userdata);
                return -ENOMEM;
        }
        return cmd_send(c);
}

int pool_link_script(PoolLink *l, PoolScript s, size_t n_keys, const char *const *keys, size_t n_args,
                     const char *const *args, unsigned flags, pool_link_reply_t h, void *userdata) {
        size_t real_keys = 0;
        Cmd *c;
        int i = 0;

        assert(s >= 0 && s < _POOL_SCRIPT_MAX);
        for (size_t k = 0; k < n_keys; k++)
                if (keys[k])
                        real_keys++;
        c = cmd_new(l, &l->main, CMD_OWNER, (int) (3 + real_keys + n_args));
        if (c) {
                c->script = s;
                c->what = pool_script_to_string(s);
                c->flags = flags;
                c->handler = h;
                c->userdata = userdata;
                if (cmd_set(c, i++, l->sha[s][0] ? "EVALSHA" : "EVAL") < 0 ||
                    cmd_set(c, i++, l->sha[s][0] ? l->sha[s] : pool_script_text[s]) < 0 ||
                    cmd_setf(c, i++, "%zu", real_keys) < 0)
                        goto fail;
                c->evaled = !l->sha[s][0];
                for (size_t k = 0; k < n_keys; k++)
                        if (keys[k] && cmd_set(c, i++, keys[k]) < 0)
                                goto fail;
                for (size_t k = 0; k < n_args; k++)
                        if (cmd_set(c, i++, args[k]) < 0)
                                goto fail;
        }
        return owner_send(l, c, pool_script_to_string(s), h, userdata);
fail:
        c->link = NULL;
        return owner_send(l, cmd_free(c), pool_script_to_string(s), h, userdata);
}

int pool_link_command(PoolLink *l, const char *what, size_t argc, const char *const *argv, pool_link_reply_t h,
                      void *userdata) {
        Cmd *c = cmd_new(l, &l->main, CMD_OWNER, (int) argc);

        if (c) {
                c->what = what;
                c->handler = h;
                c->userdata = userdata;
                for (size_t i = 0; i < argc; i++)
                        if (cmd_set(c, (int) i, argv[i]) < 0) {
                                c->link = NULL;
                                c = cmd_free(c);
                                break;
                        }
        }
        return owner_send(l, c, what, h, userdata);
}

static Cmd *simple_cmd(PoolLink *l, Conn *conn, CmdKind kind, const char *a0, const char *a1, const char *a2) {
        int argc = a2 ? 3 : a1 ? 2 : 1;
        Cmd *c = cmd_new(l, conn, kind, argc);

        if (!c)
                return NULL;
        if (cmd_set(c, 0, a0) < 0 || (a1 && cmd_set(c, 1, a1) < 0) || (a2 && cmd_set(c, 2, a2) < 0)) {
                c->link = NULL;
                return cmd_free(c);
        }
        return c;
}

void pool_link_check_role(PoolLink *l) {
        Cmd *c;

        if (l->settings.url.kind != REDIS_URL_SENTINEL)
                return;
        c = simple_cmd(l, &l->main, CMD_ROLE_CHECK, "ROLE", NULL, NULL);
        if (!c) {
                log_oom();
                return;
        }
        if (cmd_send(c) < 0)
                log_debug("pool: cannot send ROLE, ignoring");
}

/* ---- what comes back ---- */

void pool_link_refused(PoolLink *l, const char *what, const redisReply *r) {
        if (pool_reply_needs_reconnect(r)) {
                link_fail(l, "%s: %s: %s", strna(l->main.peer), what, r->str);
                return;
        }
        /* Connected, yet refused (an ACL without our scripts, OOM): our lease
         * is not renewed, the budget cannot answer. Status must say so, not
         * "connected"; the next heartbeat that works clears it. */
        if (!l->degraded || !streq_ptr(l->refused, r->str))
                log_warning("pool: %s failed: %s", what, strna(r->str));
        else
                log_debug("pool: %s failed: %s", what, strna(r->str));
        set_error(l, "%s: %s failed: %s", strna(l->main.peer), what, strna(r->str));
        free(l->refused);
        l->refused = r->str ? strdup(r->str) : NULL;
        l->degraded = true;
}

bool pool_link_accepted(PoolLink *l) {
        bool was = l->degraded;

        l->degraded = false;
        return was;
}

static void link_ready(PoolLink *l);

static void handshake_reply(PoolLink *l, Cmd *c, const redisReply *r) {
        const char *role = NULL;
        int k;

        if (redisreply_error(r)) {
                link_fail(l, "%s: %s failed: %s", strna(c->conn->peer), cmd_name(c), redisreply_error(r));
                return;
        }
        if (c->kind == CMD_ROLE) {
                k = redisreply_role(r, &role);
                if (k < 0) {
                        link_fail(l, "%s: unexpected reply to ROLE", strna(c->conn->peer));
                        return;
                }
                if (k == 0) {
                        link_fail(l, "%s is not the master (role %s); asking the sentinels again",
                                  strna(c->conn->peer), strna(role));
                        return;
                }
        }
        if (c->kind == CMD_SCRIPT_LOAD &&
            (c->index >= _POOL_SCRIPT_MAX || pool_script_load_reply_decode(r, l->sha[c->index]) < 0)) {
                link_fail(l, "%s: unexpected reply to SCRIPT LOAD", strna(c->conn->peer));
                return;
        }
        if (l->handshake_pending > 0 && --l->handshake_pending == 0)
                link_ready(l);
}

static void on_switch_master(RespConn *rc, const redisReply *r, void *userdata) {
        Conn *conn = userdata;
        PoolLink *l = conn->link;
        PoolSwitchMaster m;

        if (conn->kind != CONN_SENTINEL || l->freeing || conn->rc != rc)
                return; /* the watch is going away with its connection */
        if (pool_switch_master_decode(r, l->settings.url.master, &m) <= 0)
                return;
        log_notice("pool: sentinel %s: master '%s' switched from %s:%u to %s:%u", strna(conn->peer),
                   l->settings.url.master, m.old_ip, m.old_port, m.new_ip, m.new_port);
        l->attempt = 0;
        link_fail(l, "sentinel %s: master '%s' moved to %s:%u", strna(conn->peer), l->settings.url.master,
                  m.new_ip, m.new_port);
}

/* Keep the sentinel connection that answered, subscribed to
 * +switch-master, so a failover is followed as soon as it is decided.
 * A lost watch only costs that speed: the ROLE check of each heartbeat
 * and any error on the old master still send us back to the sentinels. */
static void sentinel_watch(PoolLink *l) {
        static const char *const subscribe[] = {"SUBSCRIBE", "+switch-master"};
        Conn *conn = &l->sentinel;

        if (!conn->rc)
                return;
        /* The confirmation needs no answer; the messages come to on_switch_master. */
        if (respconn_command(conn->rc, 2, subscribe, NULL, NULL, NULL) < 0) {
                log_debug("pool: cannot watch sentinel %s for failovers, ignoring", strna(conn->peer));
                conn_close(conn);
        }
}

static void sentinel_reply(PoolLink *l, const redisReply *r) {
        _cleanup_(freep) char *host = NULL, *why = NULL;
        uint16_t port = 0;

        if (redisreply_sentinel_master(r, l->settings.url.master, &host, &port, &why) < 0) {
                sentinel_failed(l, "%s", why ? why : "out of memory");
                return;
        }
        if (!streq_ptr(l->master_host, host) || l->master_port != port)
                log_info("pool: sentinel %s: master '%s' is at %s:%u", strna(l->sentinel.peer),
                         l->settings.url.master, host, (unsigned) port);
        sentinel_watch(l);
        free(l->master_host);
        l->master_host = TAKE_PTR(host);
        l->master_port = port;
        l->state = POOL_LINK_CONNECTING;
        if (conn_connect(&l->main, l->master_host, l->master_port, NULL) < 0)
                link_broken(l);
}

/* ---- Redis Cluster ---- */

/* The owner's command waits for its slot: tried again by the park timer
 * (TRYAGAIN, CLUSTERDOWN), or when the main connection reached the slot's
 * new owner (MOVED). A command the cluster redirected was not run, so
 * sending it again can never apply it twice. */
static void park(Cmd *c) {
        PoolLink *l = c->link;
        Cmd **grown;
        int r;

        c->timer = sd_event_source_disable_unref(c->timer);
        cmd_unlink(c);
        c->rc = NULL;
        grown = reallocarray(l->parked, l->n_parked + 1, sizeof *grown);
        if (!grown) {
                cmd_fail(c, "out of memory");
                return;
        }
        l->parked = grown;
        l->parked[l->n_parked++] = c;
        r = sd_event_source_set_enabled(l->park_timer, SD_EVENT_ON);
        if (r < 0)
                log_debug_errno(r, "pool: cannot arm the cluster retry timer: %m");
}

/* Every parked command fails (the link is broken or going away). */
static void parked_fail(PoolLink *l, const char *detail) {
        while (l->n_parked > 0) {
                Cmd *c = l->parked[--l->n_parked];
                cmd_fail(c, c->waiting_for ? c->waiting_for : detail);
        }
}

static int on_park_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        PoolLink *l = userdata;
        usec_t now = clock_loop_now(l->event, CLOCK_MONOTONIC);
        Cmd **batch = l->parked;
        size_t n = l->n_parked;
        int r;

        r = sd_event_source_set_time_relative(s, CLUSTER_RETRY_USEC);
        if (r < 0)
                log_debug_errno(r, "pool: cannot re-arm the cluster retry timer: %m");
        /* Sending may park again (or the owner may send more from its
         * handler): take the batch first. */
        l->parked = NULL;
        l->n_parked = 0;
        for (size_t i = 0; i < n; i++) {
                Cmd *c = batch[i];

                if (now >= c->give_up_at) {
                        _cleanup_(freep) char *why = NULL;
                        if (asprintf(&why, "%s: the pool's slot was not served within %llus (%s)",
                                     strna(l->main.peer), (unsigned long long) (CLUSTER_PATIENCE_USEC / USEC_PER_SEC),
                                     strna(c->waiting_for)) < 0)
                                why = NULL;
                        cmd_fail(c, why ? why : "the pool's slot was not served in time");
                } else if (l->state != POOL_LINK_READY || l->switching) {
                        /* not yet: back in the queue */
                        Cmd **grown = reallocarray(l->parked, l->n_parked + 1, sizeof *grown);
                        if (!grown) {
                                cmd_fail(c, "out of memory");
                                continue;
                        }
                        l->parked = grown;
                        l->parked[l->n_parked++] = c;
                } else {
                        c->conn = &l->main;
                        (void) cmd_send(c); /* on failure the owner heard it */
                }
        }
        free(batch);
        if (l->n_parked == 0) {
                r = sd_event_source_set_enabled(s, SD_EVENT_OFF);
                if (r < 0)
                        log_debug_errno(r, "pool: cannot stop the cluster retry timer: %m");
        }
        return 0;
}

static bool conn_at(const Conn *conn, const char *host, uint16_t port) {
        return conn->rc && conn->port == port && streq_ptr(conn->host, host);
}

/* The main connection moves to the node that serves the pool's slot now;
 * the owner's commands park until its handshake is done. */
static void cluster_switch(PoolLink *l) {
        l->switching = true;
        /* The old connection stays until its replies are in: a command it
         * ran before the slot moved is answered, one it refused comes back
         * with MOVED and is sent again. */
        if (l->retired)
                doom(l, l->retired);
        l->retired = TAKE_PTR(l->main.rc);
        retired_check(l);
        if (conn_connect(&l->main, l->node_host, l->node_port, NULL) < 0)
                link_fail(l, "%s", error_or(l, "cannot connect to the pool's slot's node"));
}

static void cluster_learn(PoolLink *l, unsigned slot, const char *host, uint16_t port, const char *why) {
        char *copy;

        if (!l->cluster)
                log_info("pool: Redis Cluster: the pool's slot %u is served by %s%s%s:%u (%s)", slot,
                         strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", (unsigned) port, why);
        else if (!streq_ptr(l->node_host, host) || l->node_port != port)
                log_notice("pool: Redis Cluster: the pool's slot %u moved to %s%s%s:%u (%s)", slot,
                           strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", (unsigned) port, why);
        l->cluster = true;
        l->slot = slot;
        if (streq_ptr(l->node_host, host) && l->node_port == port)
                return;
        copy = strdup(host);
        if (!copy)
                return; /* out of memory: the next MOVED says it again */
        free(l->node_host);
        l->node_host = copy;
        l->node_port = port;
        l->node_fresh = true;
}

/* ASK: this one command goes to the slot's importing node, after ASKING,
 * on a connection of its own (kept while the slot moves). The script's
 * text goes with it (EVAL): that node may not have it cached, and a
 * NOSCRIPT retry would need another ASKING. */
static void ask_send(PoolLink *l, Cmd *c, const char *host, uint16_t port) {
        const char *password = l->settings.password, *user = l->settings.url.user;
        Conn *ask = &l->ask;
        Cmd *asking;

        if (!conn_at(ask, host, port)) {
                if (conn_connect(ask, host, port, NULL) < 0) {
                        cmd_fail(c, error_or(l, "cannot connect to the node an ASK named"));
                        return;
                }
                if (password) {
                        Cmd *auth = user ? simple_cmd(l, ask, CMD_AUTH, "AUTH", user, password)
                                         : simple_cmd(l, ask, CMD_AUTH, "AUTH", password, NULL);
                        if (!auth || cmd_send(auth) < 0) {
                                cmd_fail(c, "cannot authenticate to the node an ASK named");
                                return;
                        }
                }
        }
        if (c->script >= 0 && !c->evaled) {
                c->evaled = true;
                if (cmd_set(c, 0, "EVAL") < 0 || cmd_set(c, 1, pool_script_text[c->script]) < 0) {
                        cmd_fail(c, "out of memory");
                        return;
                }
        }
        asking = simple_cmd(l, ask, CMD_ASKING, "ASKING", NULL, NULL);
        if (!asking || cmd_send(asking) < 0) {
                cmd_fail(c, "cannot send ASKING");
                return;
        }
        c->conn = ask;
        (void) cmd_send(c); /* on failure the owner heard it */
}

/* The cluster answered one of the owner's commands with a redirection or
 * "not now": it was not run. Takes c. */
static void cluster_redirect(PoolLink *l, Cmd *c, const Conn *conn, const RedisClusterRedirect *rd) {
        const char *host = rd->host ? rd->host : conn->host;
        const char *text = c->waiting_for;

        if (++c->redirects > CLUSTER_REDIRECTS_MAX) {
                _cleanup_(freep) char *why = NULL;
                if (asprintf(&why, "%s: %s: more than %u cluster redirections (last: %s)", strna(conn->peer),
                             cmd_name(c), CLUSTER_REDIRECTS_MAX, strna(text)) < 0)
                        why = NULL;
                cmd_fail(c, why ? why : "too many cluster redirections");
                return;
        }
        if (rd->verdict == REDIS_CLUSTER_TRYAGAIN || rd->verdict == REDIS_CLUSTER_DOWN) {
                if (!l->cluster)
                        log_info("pool: Redis Cluster: %s answered %s", strna(conn->peer), strna(text));
                l->cluster = true;
                park(c);
                return;
        }
        if (!host) {
                cmd_fail(c, "a cluster redirection without a node to go to");
                return;
        }
        if (rd->verdict == REDIS_CLUSTER_ASK) {
                l->cluster = true;
                log_debug("pool: Redis Cluster: slot %u is moving; %s goes to %s:%u after ASKING", rd->slot,
                          cmd_name(c), host, (unsigned) rd->port);
                ask_send(l, c, host, rd->port);
                return;
        }
        /* MOVED: the slot has a new owner; everything goes there now. */
        cluster_learn(l, rd->slot, host, rd->port, "MOVED");
        park(c);
        if (l->state == POOL_LINK_READY && !l->switching && !conn_at(&l->main, l->node_host, l->node_port))
                cluster_switch(l);
}

/* CLUSTER SLOTS after connecting to a cluster: the nodes to fall back on
 * when the slot's node goes, and whether the map agrees with where we
 * are. Refused (an ACL without it) or malformed: only the fallbacks are
 * missing; the seeds remain. */
static void cluster_slots_reply(PoolLink *l, const Conn *conn, const redisReply *r) {
        RedisEndpoint *nodes = NULL;
        _cleanup_(freep) char *host = NULL;
        size_t n = 0;
        uint16_t port;
        int k;

        k = redis_cluster_slot_nodes(r, &nodes, &n);
        if (k < 0) {
                log_debug("pool: %s: CLUSTER SLOTS: %s", strna(conn->peer),
                          redisreply_error(r) ? redisreply_error(r) : "unexpected reply");
                return;
        }
        redis_cluster_nodes_free(l->known, l->n_known);
        l->known = nodes;
        l->n_known = n;
        if (redis_cluster_slot_owner(r, l->slot, &host, &port) < 0)
                return;
        if (!host && conn->host)
                host = strdup(conn->host);
        if (!host)
                return;
        cluster_learn(l, l->slot, host, port, "CLUSTER SLOTS");
        if (!conn_at(&l->main, host, port) && l->state == POOL_LINK_READY && !l->switching)
                cluster_switch(l);
}

/* Where the next connection goes: the slot's node when a MOVED (or the
 * map) just named it, else the URL's seeds and the nodes the map named,
 * in turn, so a node that is gone for good costs one attempt. */
static void connect_target(PoolLink *l, const char **ret_host, uint16_t *ret_port) {
        const RedisUrl *url = &l->settings.url;
        size_t n = url->n_seeds + l->n_known, i;

        if (l->cluster && l->node_host && l->node_fresh) {
                l->node_fresh = false;
                *ret_host = l->node_host;
                *ret_port = l->node_port;
                return;
        }
        if (n == 0) {
                *ret_host = url->server.host;
                *ret_port = url->server.port;
                return;
        }
        i = l->candidate_next++ % n;
        if (i < url->n_seeds) {
                *ret_host = url->seeds[i].host;
                *ret_port = url->seeds[i].port;
        } else {
                *ret_host = l->known[i - url->n_seeds].host;
                *ret_port = l->known[i - url->n_seeds].port;
        }
}

/* The retired connection goes once no command waits on it. */
static void retired_check(PoolLink *l) {
        if (!l->retired)
                return;
        for (Cmd *c = l->cmds; c; c = c->next)
                if (c->rc == l->retired)
                        return;
        doom(l, TAKE_PTR(l->retired));
}

static void on_reply(RespConn *rc, const redisReply *r, const char *error, void *userdata) {
        Cmd *c = userdata;
        PoolLink *l = c->link;
        Conn *conn = c->conn;

        c->timer = sd_event_source_disable_unref(c->timer);
        cmd_unlink(c);

        if (!r) {
                /* The connection closed: freed by our reaper, or lost, in
                 * which case we hear it first here (the owner hears
                 * "broken" before the failures, as the contract says). */
                if (!l->freeing && conn->rc == rc)
                        conn_lost(conn, rc, error ? error : "connection closed");
                if (rc == l->retired) {
                        doom(l, TAKE_PTR(l->retired)); /* closed: its other commands fail too */
                        cmd_fail(c, "the connection to the slot's old node closed");
                        return;
                }
                cmd_fail(c, error_or(l, "connection lost"));
                return;
        }
        /* The slot's old node answers what it ran before the slot moved
         * (what it refused comes back with MOVED, below): still current. */
        bool current = conn->rc == rc || (rc && rc == l->retired);
        if (rc == l->retired)
                retired_check(l);
        if (c->kind == CMD_OWNER && redisreply_error(r) && !l->freeing) {
                RedisClusterRedirect rd;

                /* Not run, wherever it came from (a connection given up
                 * too): it goes where the cluster says. */
                if (redis_cluster_redirect_parse(redisreply_error(r), &rd) == 0 && rd.verdict != REDIS_CLUSTER_NONE) {
                        free(c->waiting_for);
                        c->waiting_for = strdup(redisreply_error(r));
                        cluster_redirect(l, c, conn, &rd);
                        redis_cluster_redirect_done(&rd);
                        return;
                }
        }
        if (!current && !(c->flags & POOL_LINK_LATE_REPLY)) {
                /* A late reply on a connection we gave up on: stale. */
                cmd_fail(c, error_or(l, "connection given up"));
                return;
        }

        if (c->kind == CMD_OWNER && c->script >= 0 && !c->evaled && pool_reply_is_noscript(r)) {
                /* The script cache was flushed: send the text; EVAL caches it
                 * again. To the owner the command is still the same one in
                 * flight. */
                c->evaled = true;
                if (cmd_set(c, 0, "EVAL") < 0 || cmd_set(c, 1, pool_script_text[c->script]) < 0) {
                        cmd_fail(c, "out of memory");
                        return;
                }
                (void) cmd_send(c); /* on failure the owner heard it */
                return;
        }

        if (conn->kind == CONN_ASK && c->kind != CMD_OWNER) {
                /* AUTH, ASKING: a refusal fails the command behind it too */
                if (redisreply_error(r)) {
                        log_debug("pool: %s: %s failed: %s; closing that connection", strna(conn->peer), cmd_name(c),
                                  redisreply_error(r));
                        conn_close(&l->ask);
                }
                cmd_free(c);
                return;
        }

        switch (c->kind) {
        case CMD_ASKING:
                break;
        case CMD_CLUSTER_SLOTS:
                cluster_slots_reply(l, conn, r);
                break;
        case CMD_AUTH:
        case CMD_SELECT:
        case CMD_ROLE:
        case CMD_SCRIPT_LOAD:
                handshake_reply(l, c, r);
                break;
        case CMD_ROLE_CHECK: {
                const char *role = NULL;
                if (redisreply_role(r, &role) == 0)
                        link_fail(l, "%s is no longer the master (role %s); asking the sentinels again",
                                  strna(conn->peer), strna(role));
                break;
        }
        case CMD_SENTINEL_MASTER:
                sentinel_reply(l, r);
                break;
        case CMD_OWNER:
                if (c->handler)
                        c->handler(l, cmd_name(c), r, NULL, current, c->userdata);
                break;
        }
        cmd_free(c);
}

/* ---- connections ---- */

static void conn_close(Conn *conn) {
        RespConn *rc = TAKE_PTR(conn->rc);

        if (rc)
                doom(conn->link, rc);
}

/* respconn's errors name the peer first: the sentinel's messages name it
 * their own way. */
static const char *conn_reason(const Conn *conn, const char *why) {
        size_t n = conn->peer ? strlen(conn->peer) : 0;

        if (n > 0 && strncmp(why, conn->peer, n) == 0 && why[n] == ':' && why[n + 1] == ' ')
                return why + n + 2;
        return why;
}

/* The connection failed or closed (why names the peer). */
static void conn_lost(Conn *conn, const RespConn *rc, const char *why) {
        PoolLink *l = conn->link;

        if (l->freeing || conn->rc != rc)
                return;
        conn_close(conn);
        if (conn->kind == CONN_MAIN) {
                set_error(l, "%s", why);
                link_broken(l);
        } else if (conn->kind == CONN_ASK)
                log_debug("pool: %s", why); /* its commands fail as it closes */
        else
                sentinel_failed(l, "%s", conn_reason(conn, why));
}

static void on_connect(RespConn *rc, void *userdata) {
        Conn *conn = userdata;

        if (conn->link->freeing || conn->rc != rc)
                return;
        if (conn->kind == CONN_SENTINEL)
                sentinel_query(conn->link);
        else if (conn->kind == CONN_MAIN)
                handshake_start(conn->link);
        /* CONN_ASK: AUTH, ASKING and the command were queued already */
}

static void on_closed(RespConn *rc, const char *error, void *userdata) {
        conn_lost(userdata, rc, error);
}

/* Host names are looked up off the loop, again on each connect (respconn). */
static int conn_connect(Conn *conn, const char *host, uint16_t port, const char *path) {
        PoolLink *l = conn->link;
        const RespConnHandlers handlers = {
                .connected = on_connect,
                .closed = on_closed,
                .push = on_switch_master,
                .userdata = conn,
        };
        const RespConnOptions options = {
                .host = host,
                .port = port,
                .path = path,
                .tls = path ? NULL : l->settings.tls,
                .tls_server_name = l->settings.tls_server_name,
                .resolve_timeout = POOL_CONNECT_TIMEOUT_USEC,
                .connect_timeout = POOL_CONNECT_TIMEOUT_USEC,
        };
        _cleanup_(freep) char *error = NULL;
        int r;

        conn_close(conn);
        free(conn->peer);
        conn->peer = NULL;
        free(conn->host);
        conn->host = NULL;
        conn->port = port;
        if (path)
                conn->peer = strdup(path);
        else {
                /* never NULL here; said so for gcc -O3, which follows a
                 * Unix socket's NULL host into this branch when inlining */
                const char *h = host ? host : "";

                conn->host = strdup(h);
                if (!conn->host)
                        return -ENOMEM;
                if (asprintf(&conn->peer, strchr(h, ':') ? "[%s]:%u" : "%s:%u", h, (unsigned) port) < 0)
                        conn->peer = NULL;
        }
        if (!conn->peer)
                return -ENOMEM;

        r = respconn_new(l->event, &options, &handlers, &conn->rc, &error);
        if (r < 0) {
                set_error(l, "%s: %s", conn->peer, error ? error : strerror(-r));
                return r;
        }
        return 0;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        PoolLink *l = userdata;

        l->retry_timer = sd_event_source_disable_unref(l->retry_timer);
        connect_start(l);
        return 0;
}

static void retry_schedule(PoolLink *l) {
        usec_t d = pool_backoff_delay(l->attempt, random_u64());
        int r;

        if (l->attempt < 64)
                l->attempt++;
        l->retry_timer = sd_event_source_disable_unref(l->retry_timer);
        r = sd_event_add_time_relative(l->event, &l->retry_timer, CLOCK_MONOTONIC, d, USEC_PER_MSEC, on_retry, l);
        if (r < 0)
                log_error_errno(r, "pool: cannot schedule a reconnect: %m");
}

/* The main connection is gone (given up or lost): say so once, tell the
 * owner, try again later. Commands still on the old context fail when it
 * is freed. */
static void link_broken(PoolLink *l) {
        bool was_ready = l->state == POOL_LINK_READY;

        conn_close(&l->sentinel); /* a watch of the master we just lost */
        conn_close(&l->ask);
        if (l->retired)
                doom(l, TAKE_PTR(l->retired));
        l->state = POOL_LINK_WAITING;
        l->switching = false;
        if (l->handlers.broken && !l->freeing)
                l->handlers.broken(l, l->handlers.userdata);
        parked_fail(l, error_or(l, "connection lost"));
        l->handshake_pending = 0;
        l->degraded = false;
        if (was_ready) {
                l->lost_at = clock_loop_now(l->event, CLOCK_MONOTONIC);
                log_warning("pool: lost Redis: %s; reconnecting", error_or(l, "?"));
        } else if (!streq_ptr(l->logged_error, l->last_error))
                log_warning("pool: cannot reach Redis: %s; retrying with backoff", error_or(l, "?"));
        else
                log_debug("pool: cannot reach Redis: %s; retrying", error_or(l, "?"));
        free(l->logged_error);
        l->logged_error = l->last_error ? strdup(l->last_error) : NULL;
        retry_schedule(l);
}

static void link_fail(PoolLink *l, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        set_error_v(l, format, ap);
        va_end(ap);
        conn_close(&l->sentinel);
        conn_close(&l->main);
        link_broken(l);
}

static void sentinel_ask(PoolLink *l) {
        const RedisUrl *url = &l->settings.url;
        size_t n = url->n_sentinels;

        while (l->sentinel_tried < n) {
                const RedisEndpoint *ep = &url->sentinels[l->sentinel_next % n];

                l->sentinel_next = (l->sentinel_next + 1) % n;
                l->sentinel_tried++;
                l->state = POOL_LINK_DISCOVERING;
                if (conn_connect(&l->sentinel, ep->host, ep->port, NULL) >= 0)
                        return;
        }
        set_error(l, "no sentinel gave the address of master '%s' (last: %s)", url->master, error_or(l, "?"));
        link_broken(l);
}

static void sentinel_failed(PoolLink *l, const char *format, ...) {
        va_list ap;
        char *m = NULL;

        va_start(ap, format);
        if (vasprintf(&m, format, ap) < 0)
                m = NULL;
        va_end(ap);
        if (l->state != POOL_LINK_DISCOVERING) {
                /* the failover watch, not the discovery */
                log_debug("pool: sentinel %s: %s; no longer watching for failovers", strna(l->sentinel.peer),
                          strna(m));
                free(m);
                conn_close(&l->sentinel);
                return;
        }
        set_error(l, "sentinel %s: %s", strna(l->sentinel.peer), strna(m));
        free(m);
        log_debug("pool: %s", error_or(l, "?"));
        conn_close(&l->sentinel);
        sentinel_ask(l);
}

static void sentinel_query(PoolLink *l) {
        Cmd *c = simple_cmd(l, &l->sentinel, CMD_SENTINEL_MASTER, "SENTINEL", "get-master-addr-by-name",
                            l->settings.url.master);

        if (!c) {
                sentinel_failed(l, "out of memory");
                return;
        }
        if (cmd_send(c) < 0)
                sentinel_failed(l, "cannot send the query");
}

static void connect_start(PoolLink *l) {
        const RedisUrl *url = &l->settings.url;
        int r;

        if (url->kind == REDIS_URL_SENTINEL) {
                l->sentinel_tried = 0;
                sentinel_ask(l);
                return;
        }
        l->state = POOL_LINK_CONNECTING;
        if (url->kind == REDIS_URL_UNIX)
                r = conn_connect(&l->main, NULL, 0, url->path);
        else {
                const char *host;
                uint16_t port;

                connect_target(l, &host, &port);
                r = conn_connect(&l->main, host, port, NULL);
        }
        if (r < 0)
                link_broken(l);
}

static bool handshake_send(PoolLink *l, Cmd *c) {
        if (!c) {
                link_fail(l, "out of memory");
                return false;
        }
        if (cmd_send(c) < 0) {
                link_fail(l, "%s: cannot send the handshake", strna(l->main.peer));
                return false;
        }
        l->handshake_pending++;
        return true;
}

/* Pipelined: AUTH, SELECT, ROLE (Sentinel), SCRIPT LOAD each script. */
static void handshake_start(PoolLink *l) {
        const RedisUrl *url = &l->settings.url;
        const char *password = l->settings.password;
        char db[16];

        l->handshake_pending = 0;
        if (password) {
                Cmd *c = url->user ? simple_cmd(l, &l->main, CMD_AUTH, "AUTH", url->user, password)
                                   : simple_cmd(l, &l->main, CMD_AUTH, "AUTH", password, NULL);
                if (!handshake_send(l, c))
                        return;
        }
        if (url->db > 0) {
                snprintf(db, sizeof db, "%u", url->db);
                if (!handshake_send(l, simple_cmd(l, &l->main, CMD_SELECT, "SELECT", db, NULL)))
                        return;
        }
        if (url->kind == REDIS_URL_SENTINEL &&
            !handshake_send(l, simple_cmd(l, &l->main, CMD_ROLE, "ROLE", NULL, NULL)))
                return;
        for (unsigned i = 0; i < _POOL_SCRIPT_MAX; i++) {
                Cmd *c = simple_cmd(l, &l->main, CMD_SCRIPT_LOAD, "SCRIPT", "LOAD", pool_script_text[i]);
                if (c)
                        c->index = i;
                if (!handshake_send(l, c))
                        return;
        }
}

/* In a cluster: ask for the map (fallback nodes), never holding up the
 * owner's commands. */
static void cluster_slots_ask(PoolLink *l) {
        Cmd *c;

        if (!l->cluster)
                return;
        if (conn_at(&l->main, l->node_host, l->node_port))
                l->node_fresh = true; /* after a blip, straight back here */
        c = simple_cmd(l, &l->main, CMD_CLUSTER_SLOTS, "CLUSTER", "SLOTS", NULL);
        if (!c || cmd_send(c) < 0)
                log_debug("pool: cannot ask for the cluster's slots, ignoring");
}

static void link_ready(PoolLink *l) {
        char took[64] = "";

        if (l->switching) {
                /* Moved to the slot's new owner: the owner's commands that
                 * waited go now; to the owner the link never broke. */
                l->switching = false;
                l->attempt = 0;
                log_info("pool: Redis Cluster: connected to %s, which serves the pool's slot %u", strna(l->main.peer),
                         l->slot);
                cluster_slots_ask(l);
                if (l->n_parked > 0)
                        on_park_timer(l->park_timer, 0, l);
                return;
        }
        l->state = POOL_LINK_READY;
        /* In a cluster, only the slot's own node ends the backoff: while a
         * failover is pending the others name a node that is gone, and
         * going there at once, again and again, helps no one. */
        if (!l->cluster || conn_at(&l->main, l->node_host, l->node_port))
                l->attempt = 0;
        l->degraded = false;
        if (l->lost_at)
                snprintf(took, sizeof took, " after %.1fs",
                         (double) (clock_loop_now(l->event, CLOCK_MONOTONIC) - l->lost_at) / USEC_PER_SEC);
        log_info("pool: connected to Redis %s%s (%s)%s", strna(l->main.peer),
                 l->settings.url.kind == REDIS_URL_SENTINEL ? " via sentinel" : "", strna(l->label), took);
        l->lost_at = 0;
        l->ever_ready = true;
        free(l->logged_error);
        l->logged_error = NULL;
        cluster_slots_ask(l);
        if (l->handlers.ready)
                l->handlers.ready(l, l->handlers.userdata);
}

/* ---- life cycle ---- */

int pool_link_new(sd_event *e, PoolLinkSettings *s, const char *label, const PoolLinkHandlers *h, PoolLink **ret) {
        _cleanup_(freep) PoolLink *l = NULL;
        int r;

        if (!e || !s || !ret)
                return -EINVAL;
        l = calloc(1, sizeof *l);
        if (!l)
                return -ENOMEM;
        l->label = label ? strdup(label) : NULL;
        if (label && !l->label)
                return -ENOMEM;
        r = sd_event_add_defer(e, &l->reaper, on_reap, l);
        if (r >= 0)
                r = sd_event_source_set_enabled(l->reaper, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_time_relative(e, &l->park_timer, CLOCK_MONOTONIC, CLUSTER_RETRY_USEC,
                                               10 * USEC_PER_MSEC, on_park_timer, l);
        if (r >= 0)
                r = sd_event_source_set_enabled(l->park_timer, SD_EVENT_OFF);
        if (r < 0) {
                sd_event_source_disable_unref(l->reaper);
                sd_event_source_disable_unref(l->park_timer);
                free(l->label);
                return r;
        }
        l->event = sd_event_ref(e);
        l->main = (Conn) { .link = l, .kind = CONN_MAIN };
        l->sentinel = (Conn) { .link = l, .kind = CONN_SENTINEL };
        l->ask = (Conn) { .link = l, .kind = CONN_ASK };
        if (h)
                l->handlers = *h;
        l->settings = *s;
        *s = (PoolLinkSettings) {};
        *ret = TAKE_PTR(l);
        return 0;
}

PoolLink *pool_link_free(PoolLink *l) {
        if (!l)
                return NULL;
        /* From here on callbacks neither answer nor reconnect. */
        l->freeing = true;
        conn_close(&l->sentinel);
        conn_close(&l->main);
        conn_close(&l->ask);
        if (l->retired)
                doom(l, TAKE_PTR(l->retired));
        on_reap(NULL, l);
        while (l->cmds) /* only ever unsent ones: sent ones died with their context */
                cmd_fail(l->cmds, "the pool client is going away");
        parked_fail(l, "the pool client is going away");
        free(l->parked);

        sd_event_source_disable_unref(l->retry_timer);
        sd_event_source_disable_unref(l->reaper);
        sd_event_source_disable_unref(l->park_timer);
        free(l->main.peer);
        free(l->main.host);
        free(l->sentinel.peer);
        free(l->sentinel.host);
        free(l->ask.peer);
        free(l->ask.host);
        free(l->node_host);
        redis_cluster_nodes_free(l->known, l->n_known);
        pool_link_settings_done(&l->settings);
        free(l->label);
        free(l->master_host);
        free(l->last_error);
        free(l->logged_error);
        free(l->refused);
        sd_event_unref(l->event);
        free(l);
        return NULL;
}

void pool_link_start(PoolLink *l) {
        if (l->state == POOL_LINK_IDLE)
                connect_start(l);
}

void pool_link_reconnect(PoolLink *l) {
        if (l->state == POOL_LINK_IDLE)
                return;
        log_info("pool: Redis settings changed, reconnecting to %s", l->settings.url_shown);
        l->attempt = 0;
        free(l->master_host);
        l->master_host = NULL;
        /* another URL may be another cluster, or none */
        l->cluster = false;
        free(l->node_host);
        l->node_host = NULL;
        redis_cluster_nodes_free(l->known, l->n_known);
        l->known = NULL;
        l->n_known = 0;
        link_fail(l, "reconnecting with new settings");
}

/* ---- status ---- */

PoolLinkState pool_link_state(const PoolLink *l) {
        return l->state;
}

const char *pool_link_status(const PoolLink *l) {
        switch (l->state) {
        case POOL_LINK_IDLE:
                return "starting";
        case POOL_LINK_WAITING:
                return "unreachable";
        case POOL_LINK_DISCOVERING:
                return "discovering";
        case POOL_LINK_CONNECTING:
                return l->ever_ready ? "reconnecting" : "connecting";
        case POOL_LINK_READY:
                return l->degraded ? "degraded" : "connected";
        }
        return "?";
}

bool pool_link_master(const PoolLink *l, char *buf, size_t size) {
        if (l->settings.url.kind != REDIS_URL_SENTINEL || !l->master_host)
                return false;
        snprintf(buf, size, strchr(l->master_host, ':') ? "[%s]:%u" : "%s:%u", l->master_host,
                 (unsigned) l->master_port);
        return true;
}

bool pool_link_cluster_node(const PoolLink *l, char *buf, size_t size, unsigned *ret_slot) {
        if (!l->cluster || !l->node_host)
                return false;
        snprintf(buf, size, strchr(l->node_host, ':') ? "[%s]:%u" : "%s:%u", l->node_host, (unsigned) l->node_port);
        *ret_slot = l->slot;
        return true;
}
