/* The control socket's server on sd-event (see control_server.h); what
 * the lines say is the protocol's (proto/control.c). Clients are never
 * freed from inside a callback that might be running on their behalf: a
 * dead client is disconnected at once (fd closed, sources dropped) and its
 * struct reaped later from a defer source, so a handler that broadcasts
 * while we are still processing a request cannot pull the client out from
 * under us. */
#include "control_server.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "config.h"
#include "jsonutil.h"
#include "log.h"

typedef struct ControlClient ControlClient;

/* At most `burst` messages per interval; the rest are counted, and the
 * count goes with the next message let through. */
typedef struct RateLimit {
        uint64_t begin; /* CLOCK_MONOTONIC start of the interval, 0: none yet */
        unsigned n, suppressed;
} RateLimit;

#define CONTROL_LOG_INTERVAL_USEC (10 * USEC_PER_SEC)

static bool ratelimit_pass(RateLimit *rl, uint64_t now, unsigned burst, unsigned *ret_suppressed) {
        if (rl->begin == 0 || now >= rl->begin + CONTROL_LOG_INTERVAL_USEC) {
                rl->begin = MAX(now, (uint64_t) 1);
                rl->n = 0;
        }
        if (rl->n >= burst) {
                rl->suppressed++;
                return false;
        }
        rl->n++;
        *ret_suppressed = rl->suppressed;
        rl->suppressed = 0;
        return true;
}

struct ControlClient {
        ControlServer *server;
        ControlClient *prev, *next;

        int fd;
        sd_event_source *io;
        sd_event_source *idle;

        bool have_cred;
        struct ucred cred;
        gid_t *groups;       /* supplementary groups at connect(), fetched when first needed */
        size_t n_groups;
        bool groups_fetched;

        char in[CONTROL_REQUEST_MAX + 1]; /* a full line plus its newline */
        size_t in_len;
        bool read_eof;

        char *out;
        size_t out_start, out_end, out_alloc;

        bool watching;
        uint64_t id;             /* ticket for a deferred answer */
        bool awaiting;           /* a deferred answer is due: read no more meanwhile */
        bool close_when_flushed; /* after an oversize request, or the peer's EOF */
        bool dead;               /* disconnected, waiting for the reaper */
};

struct ControlServer {
        sd_event *event;
        int fd;
        char *path;
        sd_event_source *accept_source;
        sd_event_source *reaper;
        sd_event_source *accept_retry; /* out of fds with no client to free one */
        ControlHandlers handlers;
        void *userdata;
        ControlAccess access;
        char *group_name; /* owned; access.group_name points here */
        /* What any local user can trigger at will is logged sparingly. */
        RateLimit refused_log; /* "too many clients" */
        RateLimit denied_log;  /* "permission denied" */

        ControlClient *clients;
        unsigned n_clients; /* live ones; dead ones wait for the reaper */
        uint64_t next_id;
        bool accept_paused; /* out of fds: resume when a client goes */
};

static size_t client_pending(const ControlClient *c) {
        return c->out_end - c->out_start;
}

static void client_disconnect(ControlClient *c) {
        ControlServer *s = c->server;

        if (c->dead)
                return;
        c->dead = true;
        c->io = sd_event_source_disable_unref(c->io);
        c->idle = sd_event_source_disable_unref(c->idle);
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        free(c->out);
        c->out = NULL;
        c->out_start = c->out_end = c->out_alloc = 0;

        s->n_clients--;
        if (s->accept_paused) {
                s->accept_paused = false;
                (void) sd_event_source_set_enabled(s->accept_source, SD_EVENT_ON);
        }
        if (s->reaper)
                (void) sd_event_source_set_enabled(s->reaper, SD_EVENT_ONESHOT);
}

static void client_free(ControlClient *c) {
        if (!c)
                return;
        if (!c->dead)
                client_disconnect(c);
        if (c->prev)
                c->prev->next = c->next;
        else
                c->server->clients = c->next;
        if (c->next)
                c->next->prev = c->prev;
        free(c->groups);
        free(c);
}

static int reaper_handler(sd_event_source *src, void *userdata) {
        ControlServer *s = userdata;
        ControlClient *next;

        for (ControlClient *c = s->clients; c; c = next) {
                next = c->next;
                if (c->dead)
                        client_free(c);
        }
        return 0;
}

/* What we want to hear about now: input only while we could act on it
 * (backpressure when a client does not read its replies), output only
 * while some is queued. */
static void client_update_events(ControlClient *c) {
        uint32_t events = 0;

        if (c->dead)
                return;
        if (!c->read_eof && !c->awaiting && !c->close_when_flushed && client_pending(c) <= CONTROL_CLIENT_OUTPUT_MAX &&
            c->in_len < sizeof c->in)
                events |= EPOLLIN;
        if (client_pending(c) > 0)
                events |= EPOLLOUT;
        (void) sd_event_source_set_io_events(c->io, events);
}

/* Writes what the socket takes now. Returns -errno when the peer is gone. */
static int client_flush(ControlClient *c) {
        while (client_pending(c) > 0) {
                ssize_t n = send(c->fd, c->out + c->out_start, client_pending(c), MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                break;
                        return -errno;
                }
                c->out_start += (size_t) n;
        }
        if (c->out_start == c->out_end)
                c->out_start = c->out_end = 0;
        return 0;
}

static int client_queue(ControlClient *c, const char *line) {
        size_t len, need;

        if (c->dead)
                return -ENOTCONN;
        if (!line)
                return -ENOMEM;
        len = strlen(line);
        if (c->out_start > 0 && c->out_end + len + 1 > c->out_alloc) {
                memmove(c->out, c->out + c->out_start, client_pending(c));
                c->out_end -= c->out_start;
                c->out_start = 0;
        }
        need = c->out_end + len + 1;
        if (need > c->out_alloc) {
                size_t a = MAX(need, MAX(c->out_alloc * 2, (size_t) 4096));
                char *p = realloc(c->out, a);
                if (!p)
                        return -ENOMEM;
                c->out = p;
                c->out_alloc = a;
        }
        memcpy(c->out + c->out_end, line, len);
        c->out[c->out_end + len] = '\n';
        c->out_end += len + 1;
        return 0;
}

/* Queue, try to send, and decide the client's fate. Never frees. */
static void client_reply(ControlClient *c, char *line) {
        int r;

        r = client_queue(c, line);
        free(line);
        if (r < 0) {
                log_warning_errno(r, "Control client: cannot queue reply, disconnecting: %m");
                client_disconnect(c);
                return;
        }
        r = client_flush(c);
        if (r < 0) {
                log_debug_errno(r, "Control client: write failed, disconnecting: %m");
                client_disconnect(c);
                return;
        }
        if (c->watching && client_pending(c) > CONTROL_CLIENT_OUTPUT_MAX) {
                log_warning("Control client (uid %u) is %zu bytes behind on watch events, dropping it.",
                            c->have_cred ? (unsigned) c->cred.uid : 0u, client_pending(c));
                client_disconnect(c);
                return;
        }
        client_update_events(c);
}

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59 /* Linux 4.13 */
#endif

/* The peer's supplementary groups as they were at connect(). The kernel
 * says how much room it needs (ERANGE): two rounds suffice, a third only
 * if something odd happens. */
static int peer_groups(int fd, gid_t **ret, size_t *ret_n) {
        socklen_t len = 32 * sizeof(gid_t);

        for (unsigned attempt = 0; attempt < 3; attempt++) {
                _cleanup_(freep) gid_t *g = NULL;
                socklen_t want = len;

                /* NGROUPS_MAX is 65536 on Linux */
                if (len > 65536 * sizeof(gid_t))
                        return -E2BIG;
                g = malloc(MAX(len, (socklen_t) sizeof(gid_t)));
                if (!g)
                        return -ENOMEM;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &want) == 0) {
                        *ret_n = want / sizeof(gid_t);
                        *ret = TAKE_PTR(g);
                        return 0;
                }
                if (errno != ERANGE || want <= len)
                        return -errno;
                len = want;
        }
        return -ERANGE;
}

static ControlGrant client_grant(ControlClient *c) {
        const ControlAccess *a = &c->server->access;
        ControlGrant g;

        if (!c->have_cred)
                return CONTROL_GRANT_DENIED;
        g = control_access_check(c->cred.uid, c->cred.gid, NULL, 0, a);
        if (g != CONTROL_GRANT_DENIED || !a->have_group)
                return g;
        /* Only now are the supplementary groups worth a look. */
        if (!c->groups_fetched && c->fd >= 0) {
                int r = peer_groups(c->fd, &c->groups, &c->n_groups);
                if (r < 0) {
                        log_debug_errno(r, "Control client (uid %u): no supplementary groups (SO_PEERGROUPS), "
                                        "treating as not a member: %m", (unsigned) c->cred.uid);
                        c->groups = NULL;
                        c->n_groups = 0;
                }
                c->groups_fetched = true;
        }
        return control_access_check(c->cred.uid, c->cred.gid, c->groups, c->n_groups, a);
}

static void client_rearm_idle(ControlClient *c) {
        uint64_t now;

        if (c->dead || !c->idle)
                return;
        if (c->watching || c->awaiting) {
                /* a deferred answer has its own deadline, in the agent */
                (void) sd_event_source_set_enabled(c->idle, SD_EVENT_OFF);
                return;
        }
        if (sd_event_now(c->server->event, CLOCK_MONOTONIC, &now) < 0)
                return;
        (void) sd_event_source_set_time(c->idle, now + CONTROL_CLIENT_IDLE_USEC);
        (void) sd_event_source_set_enabled(c->idle, SD_EVENT_ONESHOT);
}

/* NULL: the peer may go on; else the refusal to send. Only commands the
 * table marks mutating are checked. */
static char *check_privilege(ControlClient *c, const ControlCommandInfo *info) {
        const char *name = info->name;
        ControlGrant g;

        if (!info->mutating)
                return NULL;
        g = client_grant(c);
        if (g == CONTROL_GRANT_DENIED || (info->root_only && g == CONTROL_GRANT_GROUP)) {
                const ControlAccess *acc = &c->server->access;
                _cleanup_(freep) char *denied =
                        info->root_only ? control_root_only_message(name, c->have_cred, c->cred.uid, acc)
                                        : control_access_denied_message(name, c->have_cred, c->cred.uid, acc);
                uint64_t now = 0;
                unsigned more;

                (void) sd_event_now(c->server->event, CLOCK_MONOTONIC, &now);
                if (!ratelimit_pass(&c->server->denied_log, now, 5, &more))
                        ;
                else if (more == 0)
                        log_notice("Control: refused '%s' from unprivileged peer (uid %ld, pid %ld).", name,
                                   c->have_cred ? (long) c->cred.uid : -1L, c->have_cred ? (long) c->cred.pid : -1L);
                else
                        log_notice("Control: refused '%s' from unprivileged peer (uid %ld, pid %ld); %u "
                                   "refusals before it not logged.",
                                   name, c->have_cred ? (long) c->cred.uid : -1L,
                                   c->have_cred ? (long) c->cred.pid : -1L, more);
                return control_reply_error(denied ? denied : "permission denied");
        }
        if (g == CONTROL_GRANT_GROUP)
                /* worth a line: access that only the group grants */
                log_info("Control: '%s' from uid %u (pid %ld), allowed as a member of %s%s (gid %u).", name,
                         (unsigned) c->cred.uid, (long) c->cred.pid,
                         c->server->access.group_name ? "group " : "the control group",
                         strempty(c->server->access.group_name), (unsigned) c->server->access.group);
        return NULL;
}

static char *not_supported(const char *name) {
        char buf[160];

        snprintf(buf, sizeof buf, "'%s' is not supported by this agent", name);
        return control_reply_error(buf);
}

/* An object or array answer under the command's reply key; NULL from the
 * handler is `unavailable`, or the handler's own message. */
static char *reply_answer(const ControlCommandInfo *info, json_object *o, const char *message,
                          const char *unavailable) {
        _cleanup_(json_object_putp) json_object *answer = o;

        if (!answer)
                return control_reply_error(message ? message : unavailable);
        return control_reply_object(info->reply_key, answer);
}

/* What a mutating handler's (r, message) become. */
static char *reply_outcome(const ControlCommandInfo *info, int r, const char *message) {
        char buf[160];

        if (r < 0) {
                if (message)
                        return control_reply_error(message);
                snprintf(buf, sizeof buf, "%s failed: %s", info->name, strerror(-r));
                return control_reply_error(buf);
        }
        return control_reply_message(message ? message : "ok");
}

/* Each command's call into the agent, one per row of the protocol's table:
 * the reply line, or NULL when the answer comes later (deferred rows). */
typedef char *(*ServeFn)(ControlClient *c, const ControlCommandInfo *info, const ControlRequest *req);

#define CONTROL_NO_POOL "no [pool] configured"

static char *serve_status(ControlClient *c, const ControlCommandInfo *info, const ControlRequest *req) {
        const ControlHandlers *h = &c->server->handlers;

        if (!h->status)
                return not_supported(info->name);
        return reply_answer(info, h->status(c->server->userdata), NULL, "status unavailable");
}

static char *serve_history(ControlClient *c, const ControlCommandInfo *info, const ControlRequest *req) {
        const ControlHandlers *h = &c->server->handlers;

        if (!h->history)
                return not_supported(info->name);
        return reply_answer(info, h->history(c->server->userdata, req->limit > 0 ? req->limit : CONTROL_LIMIT_DEFAULT),
                            NULL, "history unavailable");
}

static char *serve_pool(ControlClient *c, const ControlCommandInfo *info, const ControlRequest *req) {
        const ControlHandlers *h = &c->server->handlers;
        _cleanup_(json_object_putp) json_object *st = NULL;
        json_object *pool = NULL, *configured = NULL;

        if (h->pool)
                return reply_answer(info, h->pool(c->server->userdata), NULL, CONTROL_NO_POOL);
        /* Older wiring: the same object, from the status. */
        if (!h->status)
                return not_supported(info->name);
        st = h->status(c->server->userdata);
        if (!st || !json_object_object_get_ex(st, "pool", &pool) || !json_object_is_type(pool, json_type_object))
                return control_reply_error(CONTROL_NO_POOL);
        if (!json_object_object_get_ex(pool, "configured", &configured) || !json_object_get_boolean(configured))
                return control_reply_error(CONTROL_NO_POOL);
        return control_reply_object(info->reply_key, pool);
}

/* incidents and incident come as a pair: one without the other is neither */
static char *serve_incidents(ControlClient *c, const ControlCommandInfo *info, const ControlRequest *req) {
        const ControlHandlers *h = &c->server->handlers;
        _cleanup_(freep) char *message = NULL;
        json_object *o;

        if (!h->incidents || !h->incident)
                return not_supported("incidents");
        o = req->command == CONTROL_INCIDENTS ? h->incidents(c->server->userdata, &message)
                                              : h->incident(c->server->userdata, req->id, &message);
        return reply_answer(info, o, message, "incidents unavailable");
}

static char *serve_stats(ControlClient *c, const ControlCommandInfo *info, const ControlRequest *req) {
        const ControlHandlers *h = &c->server->handlers;

        if (!h->stats)
                return not_supported("stats");
        return reply_answer(info, h->stats(c->server->userdata), NULL, "statistics unavailable");
}

static char *serve_watch(ControlClient *c, const ControlCommandInfo *info, const ControlRequest *req) {
        json_object *o;

        c->watching = true;
        client_rearm_idle(c);
        o = json_object_new_boolean(true);
        if (!o)
                return NULL;
        return reply_answer(info, o, NULL, NULL);
}

static char *serve_drain(ControlClient *c, const ControlCommandInfo *info, const ControlRequest *req) {
        const ControlHandlers *h = &c->server->handlers;
        _cleanup_(freep) char *message = NULL;
        int r;

        if (!h->drain)
                return not_supported(info->name);
        r = h->drain(c->server->userdata, req->reason, &message);
        return reply_outcome(info, r, message);
}

static char *serve_resume(ControlClient *c, const ControlCommandInfo *info, const ControlRequest *req) {
        const ControlHandlers *h = &c->server->handlers;
        _cleanup_(freep) char *message = NULL;
        int r;

        if (!h->resume)
                return not_supported(info->name);
        r = h->resume(c->server->userdata, &message);
        return reply_outcome(info, r, message);
}

static char *serve_reload(ControlClient *c, const ControlCommandInfo *info, const ControlRequest *req) {
        const ControlHandlers *h = &c->server->handlers;
        _cleanup_(freep) char *message = NULL;
        int r;

        if (!h->reload)
                return not_supported(info->name);
        r = h->reload(c->server->userdata, &message);
        return reply_outcome(info, r, message);
}

/* test-alert, test-reboot, check: started now, answered by control_server_answer() */
static char *serve_deferred(ControlClient *c, const ControlCommandInfo *info, const ControlRequest *req) {
        const ControlHandlers *h = &c->server->handlers;
        int (*handler)(void *, uint64_t, const char *, char **) = req->command == CONTROL_TEST_ALERT ? h->test_alert
                                                                  : req->command == CONTROL_TEST_REBOOT
                                                                          ? h->test_reboot
                                                                          : h->check;
        _cleanup_(freep) char *message = NULL;
        int r;

        if (!handler)
                return not_supported(info->name);
        r = handler(c->server->userdata, c->id, req->reason, &message);
        if (r >= 0) {
                c->awaiting = true;
                client_rearm_idle(c);
                return NULL;
        }
        return reply_outcome(info, r, message);
}

/* pool-budget, pool-budget-set: Redis answers, so later; the peer goes
 * along for the audit of a set. */
static char *serve_pool_budget(ControlClient *c, const ControlCommandInfo *info, const ControlRequest *req) {
        const ControlHandlers *h = &c->server->handlers;
        _cleanup_(freep) char *message = NULL;
        ControlPeer peer = {
                .known = c->have_cred, .uid = c->cred.uid, .gid = c->cred.gid, .pid = c->cred.pid,
        };
        int r;

        if (!h->pool_budget)
                return not_supported(info->name);
        r = h->pool_budget(c->server->userdata, c->id, req, &peer, &message);
        if (r >= 0) {
                c->awaiting = true;
                client_rearm_idle(c);
                return NULL;
        }
        return reply_outcome(info, r, message);
}

static const ServeFn serve_table[_CONTROL_COMMAND_MAX] = {
        [CONTROL_STATUS] = serve_status,
        [CONTROL_HISTORY] = serve_history,
        [CONTROL_WATCH] = serve_watch,
        [CONTROL_DRAIN] = serve_drain,
        [CONTROL_RESUME] = serve_resume,
        [CONTROL_POOL] = serve_pool,
        [CONTROL_TEST_ALERT] = serve_deferred,
        [CONTROL_TEST_REBOOT] = serve_deferred,
        [CONTROL_CHECK] = serve_deferred,
        [CONTROL_INCIDENTS] = serve_incidents,
        [CONTROL_INCIDENT] = serve_incidents,
        [CONTROL_STATS] = serve_stats,
        [CONTROL_RELOAD] = serve_reload,
        [CONTROL_POOL_BUDGET] = serve_pool_budget,
        [CONTROL_POOL_BUDGET_SET] = serve_pool_budget,
};

static char *handle_request(ControlClient *c, const ControlRequest *req) {
        const ControlCommandInfo *info = control_command_info(req->command);
        char *refused;

        if (!info || !serve_table[req->command])
                return control_reply_error("unknown command");
        refused = check_privilege(c, info);
        if (refused)
                return refused;
        return serve_table[req->command](c, info, req);
}

static void client_handle_line(ControlClient *c, const char *line, size_t len) {
        ControlRequest req = {};
        _cleanup_(freep) char *error = NULL;
        int r;

        if (len > 0 && line[len - 1] == '\r') /* tolerate CRLF from socat/nc users */
                len--;
        if (len == 0)
                return;

        r = control_request_parse(line, len, &req, &error);
        if (r < 0) {
                log_debug("Control: bad request: %s", error ? error : strerror(-r));
                client_reply(c, control_reply_error(error ? error : "cannot parse request"));
                return;
        }
        {
                char *reply = handle_request(c, &req);
                if (reply || !c->awaiting)
                        client_reply(c, reply);
        }
        control_request_done(&req);
}

/* Runs every complete line in the buffer, in order, while the client keeps
 * up with its replies. */
static void client_process_input(ControlClient *c) {
        size_t start = 0;

        while (!c->dead && !c->awaiting && !c->close_when_flushed && client_pending(c) <= CONTROL_CLIENT_OUTPUT_MAX) {
                char *nl = memchr(c->in + start, '\n', c->in_len - start);
                size_t len;

                if (!nl)
                        break;
                len = (size_t) (nl - (c->in + start));
                client_handle_line(c, c->in + start, len);
                start += len + 1;
        }
        if (c->dead)
                return;
        if (start > 0) {
                memmove(c->in, c->in + start, c->in_len - start);
                c->in_len -= start;
        }

        if (c->awaiting || c->close_when_flushed || client_pending(c) > CONTROL_CLIENT_OUTPUT_MAX)
                return;
        if (c->in_len == sizeof c->in && !memchr(c->in, '\n', c->in_len)) {
                c->in_len = 0;
                c->close_when_flushed = true;
                client_reply(c, control_reply_error(CONTROL_ERROR_TOO_LARGE));
                return;
        }
        if (c->read_eof && c->in_len > 0 && !memchr(c->in, '\n', c->in_len)) {
                /* `printf '{...}' | nc -U`: the last request may lack its newline */
                size_t len = c->in_len;
                c->in_len = 0;
                client_handle_line(c, c->in, len);
        }
}

static void client_finish_if_done(ControlClient *c) {
        if (c->dead)
                return;
        if (client_pending(c) > 0)
                return;
        if (c->close_when_flushed) {
                client_disconnect(c);
                return;
        }
        /* The peer will send nothing more: close once it has everything,
         * unless it watches (a watcher may half-close its sending side). */
        if (c->read_eof && !c->watching && !c->awaiting && c->in_len == 0)
                client_disconnect(c);
}

static void client_read(ControlClient *c) {
        while (!c->dead && !c->read_eof && !c->close_when_flushed && c->in_len < sizeof c->in) {
                ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                break;
                        log_debug_errno(errno, "Control client: read failed, disconnecting: %m");
                        client_disconnect(c);
                        return;
                }
                if (n == 0) {
                        c->read_eof = true;
                        break;
                }
                c->in_len += (size_t) n;
                client_rearm_idle(c);
                /* handle lines as they complete so an oversize one is judged alone */
                client_process_input(c);
        }
        if (!c->dead)
                client_process_input(c);
}

static int client_io_handler(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        ControlClient *c = userdata;

        if (c->dead)
                return 0;

        if (revents & EPOLLOUT) {
                int r = client_flush(c);
                if (r < 0) {
                        log_debug_errno(r, "Control client: write failed, disconnecting: %m");
                        client_disconnect(c);
                        return 0;
                }
                /* Room again: lines held back for backpressure may run now. */
                client_process_input(c);
        }
        if (!c->dead && (revents & EPOLLIN))
                client_read(c);
        if (!c->dead && (revents & (EPOLLHUP | EPOLLERR))) {
                /* both directions are gone: nobody will read what is queued */
                if (!(revents & EPOLLIN) || c->read_eof) {
                        client_disconnect(c);
                        return 0;
                }
        }
        if (c->dead)
                return 0;
        client_finish_if_done(c);
        client_update_events(c);
        return 0;
}

static int client_idle_handler(sd_event_source *src, uint64_t usec, void *userdata) {
        ControlClient *c = userdata;

        if (c->dead || c->watching)
                return 0;
        log_debug("Control client idle for %llus, closing.",
                  (unsigned long long) (CONTROL_CLIENT_IDLE_USEC / USEC_PER_SEC));
        client_disconnect(c);
        return 0;
}

/* A flood of connections from any local user must not flood the log too:
 * one line, then at most one every 10 s saying how many more. */
static void refuse_log(ControlServer *s) {
        uint64_t now = 0;
        unsigned more;

        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (!ratelimit_pass(&s->refused_log, now, 1, &more))
                return;
        if (more > 0)
                log_warning("Control: %u clients connected, refusing new ones (%u more refused since the last "
                            "message).", s->n_clients, more);
        else
                log_warning("Control: %u clients connected, refusing new ones.", s->n_clients);
}

/* Best effort: the socket is fresh, its buffer empty, so one small line fits. */
static void reject_client(int fd, const char *message) {
        _cleanup_(freep) char *line = control_reply_error(message);
        _cleanup_(freep) char *framed = NULL;

        if (line && asprintf(&framed, "%s\n", line) >= 0)
                (void) send(fd, framed, strlen(framed), MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
}

static int client_new(ControlServer *s, int fd) {
        ControlClient *c;
        socklen_t sl = sizeof(struct ucred);
        uint64_t now;
        int r;

        c = calloc(1, sizeof *c);
        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        c->server = s;
        c->fd = fd;
        c->id = ++s->next_id;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &sl) == 0 && sl == sizeof(struct ucred))
                c->have_cred = true;
        else
                log_debug_errno(errno, "Control client: no peer credentials, treating as unprivileged: %m");

        /* linked first so every failure below goes through client_free */
        c->next = s->clients;
        if (s->clients)
                s->clients->prev = c;
        s->clients = c;
        s->n_clients++;

        r = sd_event_add_io(s->event, &c->io, fd, EPOLLIN, client_io_handler, c);
        if (r < 0)
                goto fail;
        r = sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                goto fail;
        r = sd_event_add_time(s->event, &c->idle, CLOCK_MONOTONIC, now + CONTROL_CLIENT_IDLE_USEC,
                              USEC_PER_SEC / 10, client_idle_handler, c);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(c->io, "control-client");
        return 0;

fail:
        client_free(c);
        return r;
}

static int accept_retry_handler(sd_event_source *src, uint64_t usec, void *userdata) {
        ControlServer *s = userdata;

        s->accept_paused = false;
        (void) sd_event_source_set_enabled(s->accept_source, SD_EVENT_ON);
        return 0;
}

/* accept is level-triggered: out of fds, it would spin. Resume when a
 * client leaves or after a second, whichever comes first. */
static void accept_pause(ControlServer *s) {
        uint64_t now;
        int r;

        s->accept_paused = true;
        (void) sd_event_source_set_enabled(s->accept_source, SD_EVENT_OFF);
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0)
                return;
        if (!s->accept_retry) {
                r = sd_event_add_time(s->event, &s->accept_retry, CLOCK_MONOTONIC, now + USEC_PER_SEC,
                                      USEC_PER_SEC / 10, accept_retry_handler, s);
                if (r < 0) {
                        /* better a busy loop than a deaf socket */
                        accept_retry_handler(NULL, 0, s);
                        return;
                }
        } else {
                (void) sd_event_source_set_time(s->accept_retry, now + USEC_PER_SEC);
                (void) sd_event_source_set_enabled(s->accept_retry, SD_EVENT_ONESHOT);
        }
}

/* At the limit, some of the clients counted may have hung up already: a
 * burst that connects, writes and closes fills the table before the loop
 * gets to their EOF, which waits behind this accept. Do for them now what
 * the loop would do next (read, answer, see EOF or EPIPE), then count
 * again. Returns how many slots that freed. */
static unsigned collect_hangups(ControlServer *s) {
        unsigned before = s->n_clients;

        for (ControlClient *c = s->clients; c; c = c->next) {
                if (c->dead || c->awaiting || client_pending(c) > CONTROL_CLIENT_OUTPUT_MAX)
                        continue;
                if (!c->read_eof && !c->close_when_flushed)
                        client_read(c);
                /* an answer queued for a peer that is gone fails here, not later */
                if (!c->dead && client_pending(c) > 0 && client_flush(c) < 0)
                        client_disconnect(c);
                if (c->dead)
                        continue;
                client_finish_if_done(c);
                client_update_events(c);
        }
        return before - s->n_clients;
}

static int accept_handler(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        ControlServer *s = userdata;
        bool may_collect = true;

        /* bounded, so a flood of connections cannot starve the rest of the loop */
        for (unsigned i = 0; i < 2 * CONTROL_CLIENTS_MAX; i++) {
                int cfd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                int r;

                if (cfd < 0) {
                        switch (errno) {
                        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
                        case EWOULDBLOCK:
#endif
                                return 0;
                        case EINTR:
                        case ECONNABORTED:
                        case EPROTO:
                        case EPERM:
                                continue;
                        case EMFILE:
                        case ENFILE:
                        case ENOBUFS:
                        case ENOMEM:
                                /* level-triggered: without a pause we would spin */
                                log_warning_errno(errno, "Control: cannot accept, pausing: %m");
                                accept_pause(s);
                                return 0;
                        default:
                                log_warning_errno(errno, "Control: accept failed, ignoring: %m");
                                return 0;
                        }
                }

                /* again after every pass that freed a slot: a burst of hang-ups
                 * longer than the table still waits in the backlog */
                if (s->n_clients >= CONTROL_CLIENTS_MAX - CONTROL_CLIENTS_RESERVED && may_collect)
                        may_collect = collect_hangups(s) > 0;
                if (s->n_clients >= CONTROL_CLIENTS_MAX - CONTROL_CLIENTS_RESERVED) {
                        struct ucred cred;
                        socklen_t sl = sizeof cred;
                        bool privileged = false;

                        /* The last few slots are kept for whoever may drain:
                         * anyone else holding connections open must not lock
                         * the operator out. Supplementary groups are not
                         * fetched for this: uid and primary gid only. */
                        if (s->n_clients < CONTROL_CLIENTS_MAX &&
                            getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &sl) == 0 && sl == sizeof cred)
                                privileged = control_access_check(cred.uid, cred.gid, NULL, 0, &s->access) !=
                                             CONTROL_GRANT_DENIED;
                        if (!privileged) {
                                refuse_log(s);
                                reject_client(cfd, CONTROL_ERROR_TOO_MANY);
                                continue;
                        }
                }
                r = client_new(s, cfd);
                if (r < 0)
                        log_warning_errno(r, "Control: cannot set up client, ignoring: %m");
        }
        return 0;
}

/* A leftover socket file from a dead agent answers ECONNREFUSED; a live
 * agent accepts (or its backlog is full: EAGAIN). */
static int socket_path_is_stale(const struct sockaddr_un *sa, socklen_t salen) {
        _cleanup_(closep) int fd = -1;
        struct stat st;

        if (lstat(sa->sun_path, &st) < 0)
                return errno == ENOENT ? 1 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *) sa, salen) == 0)
                return 0;
        if (errno == ECONNREFUSED || errno == ENOENT)
                return 1;
        if (errno == EAGAIN || errno == EINPROGRESS)
                return 0;
        return -errno;
}

static int bind_socket(int fd, const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t len = strlen(path);
        socklen_t salen;
        int r;

        if (len >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, len + 1);
        salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len + 1);

        for (unsigned attempt = 0;; attempt++) {
                if (bind(fd, (struct sockaddr *) &sa, salen) == 0)
                        return 0;
                if (errno != EADDRINUSE || attempt > 0)
                        return -errno;

                r = socket_path_is_stale(&sa, salen);
                if (r < 0)
                        return r == -EEXIST ? log_error_errno(r, "Control socket %s exists and is not a socket.", path) : r;
                if (r == 0)
                        return log_error_errno(EADDRINUSE, "Control socket %s is in use by a live process.", path);
                log_info("Control socket %s is stale, replacing it.", path);
                if (unlink(path) < 0 && errno != ENOENT)
                        return -errno;
        }
}

int control_server_new(sd_event *e, const char *path, const ControlHandlers *h, void *userdata,
                       ControlServer **ret) {
        ControlServer *s;
        int r;

        if (!e || isempty(path) || !h || !ret)
                return -EINVAL;
        if (strlen(path) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                return -ENAMETOOLONG;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->fd = -1;
        s->event = sd_event_ref(e);
        s->handlers = *h;
        s->userdata = userdata;
        s->access.owner = geteuid();
        s->access.group = (gid_t) -1;

        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s->fd < 0) {
                r = -errno;
                goto fail;
        }
        r = bind_socket(s->fd, path);
        if (r < 0)
                goto fail;
        /* from here on, free() unlinks the path: it is ours */
        s->path = strdup(path);
        if (!s->path) {
                (void) unlink(path);
                r = -ENOMEM;
                goto fail;
        }
        /* the umask must not narrow it: status is for everyone, SO_PEERCRED guards the rest */
        if (chmod(path, 0666) < 0) {
                r = -errno;
                goto fail;
        }
        if (listen(s->fd, SOMAXCONN) < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(e, &s->accept_source, s->fd, EPOLLIN, accept_handler, s);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(s->accept_source, "control-accept");
        r = sd_event_add_defer(e, &s->reaper, reaper_handler, s);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(s->reaper, SD_EVENT_OFF);
        (void) sd_event_source_set_description(s->reaper, "control-reaper");

        *ret = s;
        return 0;

fail:
        control_server_free(s);
        return r;
}

ControlServer *control_server_free(ControlServer *s) {
        if (!s)
                return NULL;
        while (s->clients)
                client_free(s->clients);
        s->accept_source = sd_event_source_disable_unref(s->accept_source);
        s->reaper = sd_event_source_disable_unref(s->reaper);
        s->accept_retry = sd_event_source_disable_unref(s->accept_retry);
        if (s->fd >= 0)
                close(s->fd);
        if (s->path) {
                (void) unlink(s->path);
                free(s->path);
        }
        free(s->group_name);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

void control_server_answer(ControlServer *s, uint64_t ticket, bool ok, const char *message, json_object *extra) {
        ControlClient *c;

        for (c = s ? s->clients : NULL; c; c = c->next)
                if (c->id == ticket && !c->dead && c->awaiting)
                        break;
        if (!c)
                return; /* gone meanwhile */
        c->awaiting = false;
        client_reply(c, control_reply_result(ok, message, extra));
        client_rearm_idle(c);
        client_process_input(c);
        client_finish_if_done(c);
}

int control_server_set_group(ControlServer *s, bool have_group, gid_t group, const char *name) {
        char *copy = NULL;

        if (!s)
                return -EINVAL;
        if (have_group && name) {
                copy = strdup(name);
                if (!copy)
                        return -ENOMEM;
        }
        free(s->group_name);
        s->group_name = copy;
        s->access.have_group = have_group;
        s->access.group = have_group ? group : (gid_t) -1;
        s->access.group_name = copy;
        return 0;
}

int control_server_apply_config(ControlServer *s, const Config *c) {
        const char *name;

        if (!s || !c)
                return -EINVAL;
        if (!c->agent.control_group || !c->agent.control_gid_set)
                return control_server_set_group(s, false, 0, NULL);
        /* a number is a gid as written: no name to show */
        name = c->agent.control_group;
        if (strspn(name, "0123456789") == strlen(name))
                name = NULL;
        return control_server_set_group(s, true, c->agent.control_gid, name);
}

void control_server_broadcast(ControlServer *s, json_object *event) {
        _cleanup_(freep) char *line = NULL;

        if (!s || !event)
                return;
        line = control_event_line(event);
        if (!line) {
                log_oom();
                return;
        }
        for (ControlClient *c = s->clients; c; c = c->next)
                if (c->watching && !c->dead)
                        client_reply(c, strdup(line));
}

unsigned control_server_n_clients(const ControlServer *s) {
        return s ? s->n_clients : 0;
}
