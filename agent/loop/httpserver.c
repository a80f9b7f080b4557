/* libmicrohttpd parses, sd-event waits. MHD runs without a thread of its
 * own (MHD_USE_EPOLL, no MHD_USE_INTERNAL_POLLING_THREAD): its epoll fd is
 * one io source here, and MHD_run() is called when that fd is readable or
 * when the timer MHD asks for (connection timeouts, connections with work
 * left over from the last round) fires; MHD_run() never waits on its own.
 *
 * The connection limits are enforced here, in the accept policy, rather
 * than by MHD's own options: MHD checks those before calling us and says
 * nothing, and a refusal must be counted for status. MHD's limit stays set
 * one above ours, as a backstop. */
#include "httpserver.h"

#include <microhttpd.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "macro.h"
#include "netaddr.h"

#define HTTPSERVER_BACKLOG 128
/* Request line and headers together; a health check needs a few hundred
 * bytes. MHD answers 414/431 beyond. */
#define HTTPSERVER_MEMORY_LIMIT (16 * 1024)
/* The longest a timer is set at once (MHD returns "no timeout" as no). */
#define HTTPSERVER_TIMER_MAX_USEC (60 * USEC_PER_SEC)

typedef struct HttpRoute {
        char *path;
        HttpHandler handler;
        void *userdata;
} HttpRoute;

/* An open connection, for the per-address limit. */
typedef struct HttpPeer {
        bool used;
        int family;
        struct in6_addr ip; /* IPv4 in the first 4 bytes */
} HttpPeer;

struct HttpServer {
        sd_event *event;
        sd_event_source *io;
        sd_event_source *timer;
        struct MHD_Daemon *daemon;
        uint16_t port;
        HttpServerLimits limits;

        HttpRoute routes[HTTPSERVER_ROUTES_MAX];
        size_t n_routes;

        HttpPeer *peers; /* limits.connections of them */
        unsigned connections;
        uint64_t requests;
        uint64_t refused;
};

struct HttpRequest {
        struct MHD_Connection *connection;
        const char *method;
        const char *path;
};

const char *httpserver_request_method(const HttpRequest *req) {
        return req->method;
}

const char *httpserver_request_path(const HttpRequest *req) {
        return req->path;
}

const char *httpserver_request_arg(const HttpRequest *req, const char *name) {
        return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, name);
}

const char *httpserver_request_header(const HttpRequest *req, const char *name) {
        return MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
}

static bool peer_of(const struct sockaddr *sa, socklen_t len, HttpPeer *ret) {
        *ret = (HttpPeer) { .used = true };
        if (!sa)
                return false;
        if (sa->sa_family == AF_INET && len >= (socklen_t) sizeof(struct sockaddr_in)) {
                ret->family = AF_INET;
                memcpy(&ret->ip, &((const struct sockaddr_in *) sa)->sin_addr, sizeof(struct in_addr));
                return true;
        }
        if (sa->sa_family == AF_INET6 && len >= (socklen_t) sizeof(struct sockaddr_in6)) {
                ret->family = AF_INET6;
                ret->ip = ((const struct sockaddr_in6 *) sa)->sin6_addr;
                return true;
        }
        return false; /* counted, but not per address */
}

static bool peer_same(const HttpPeer *a, const HttpPeer *b) {
        return a->used && b->used && a->family == b->family && a->family != 0 &&
               memcmp(&a->ip, &b->ip, sizeof a->ip) == 0;
}

static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
        HttpServer *s = cls;
        HttpPeer p;
        unsigned same = 0;

        if (s->connections >= s->limits.connections) {
                s->refused++;
                return MHD_NO;
        }
        if (peer_of(addr, addrlen, &p))
                for (unsigned i = 0; i < s->limits.connections; i++)
                        if (peer_same(&s->peers[i], &p))
                                same++;
        if (same >= s->limits.per_address) {
                s->refused++;
                return MHD_NO;
        }
        return MHD_YES;
}

static void on_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
        HttpServer *s = cls;
        HttpPeer *slot = *socket_context;

        if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
                if (slot)
                        *slot = (HttpPeer) {};
                if (s->connections > 0)
                        s->connections--;
                return;
        }
        s->connections++;
        for (unsigned i = 0; i < s->limits.connections; i++)
                if (!s->peers[i].used) {
                        const union MHD_ConnectionInfo *ci =
                                MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

                        slot = &s->peers[i];
                        (void) peer_of(ci ? ci->client_addr : NULL, sizeof(struct sockaddr_in6), slot);
                        *socket_context = slot;
                        break;
                }
}

static const HttpRoute *route_find(const HttpServer *s, const char *path) {
        for (size_t i = 0; i < s->n_routes; i++)
                if (streq(s->routes[i].path, path))
                        return &s->routes[i];
        return NULL;
}

/* A health check sends none; reading one would only cost memory. */
static bool request_has_body(struct MHD_Connection *connection) {
        const char *cl = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

        if (MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
                return true;
        return cl && strspn(cl, "0") != strlen(cl);
}

static void reply_text(HttpReply *reply, unsigned status, const char *text) {
        reply->status = status;
        reply->content_type = NULL;
        reply->body = strdup(text);
        reply->body_len = reply->body ? strlen(text) : 0;
}

static enum MHD_Result respond(struct MHD_Connection *connection, HttpReply *reply, bool allow) {
        struct MHD_Response *resp;
        enum MHD_Result ok;

        if (reply->body)
                resp = MHD_create_response_from_buffer(reply->body_len, reply->body, MHD_RESPMEM_MUST_FREE);
        else
                resp = MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
        if (!resp) {
                free(reply->body);
                return MHD_NO; /* MHD closes the connection */
        }
        reply->body = NULL; /* the response's now */
        if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                    reply->content_type ? reply->content_type : "text/plain; charset=utf-8") != MHD_YES ||
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
            (allow && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD") != MHD_YES)) {
                MHD_destroy_response(resp);
                return MHD_NO;
        }
        ok = MHD_queue_response(connection, reply->status, resp);
        MHD_destroy_response(resp);
        return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
        HttpServer *s = cls;
        HttpRequest req = { .connection = connection, .method = method, .path = url };
        HttpReply reply = {};
        const HttpRoute *route;
        bool allow = false;
        int r;

        if (*con_cls) {
                /* Answered at the headers already: MHD discards a body
                 * after an early answer, but say it is taken anyway. */
                *upload_data_size = 0;
                return MHD_YES;
        }
        *con_cls = s;
        s->requests++;

        route = url ? route_find(s, url) : NULL;
        if (request_has_body(connection))
                reply_text(&reply, MHD_HTTP_CONTENT_TOO_LARGE, "no request body is accepted here\n");
        else if (!route)
                reply_text(&reply, MHD_HTTP_NOT_FOUND, "not found\n");
        else if (!streq_ptr(method, MHD_HTTP_METHOD_GET) && !streq_ptr(method, MHD_HTTP_METHOD_HEAD)) {
                reply_text(&reply, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
                allow = true;
        } else {
                r = route->handler(&req, route->userdata, &reply);
                if (r < 0 || reply.status < 100 || reply.status > 599) {
                        log_debug_errno(r, "http: the handler of %s failed: %m", route->path);
                        free(reply.body);
                        reply_text(&reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
                }
        }
        return respond(connection, &reply, allow);
}

static void timer_arm(HttpServer *s) {
        MHD_UNSIGNED_LONG_LONG ms;
        usec_t delay;
        int r;

        if (MHD_get_timeout(s->daemon, &ms) != MHD_YES) {
                (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
                return;
        }
        delay = ms >= HTTPSERVER_TIMER_MAX_USEC / USEC_PER_MSEC ? HTTPSERVER_TIMER_MAX_USEC : ms * USEC_PER_MSEC;
        r = sd_event_source_set_time(s->timer, clock_now(CLOCK_MONOTONIC) + delay);
        if (r >= 0)
                r = sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "http: cannot arm the timer: %m, ignoring");
}

int httpserver_dispatch(HttpServer *s) {
        enum MHD_Result ok;

        if (!s)
                return -EINVAL;
        ok = MHD_run(s->daemon);
        timer_arm(s);
        return ok == MHD_YES ? 0 : -EIO;
}

static int on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        (void) httpserver_dispatch(userdata);
        return 0;
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        (void) httpserver_dispatch(userdata);
        return 0;
}

int httpserver_new(sd_event *e, const char *address, uint16_t port, const HttpServerLimits *limits,
                   HttpServer **ret) {
        _cleanup_(httpserver_freep) HttpServer *s = NULL;
        _cleanup_(closep) int fd = -1;
        const union MHD_DaemonInfo *info;
        unsigned flags = MHD_USE_EPOLL;
        int r;

        if (!e || !ret)
                return -EINVAL;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(e);
        s->limits = limits ? *limits : (HttpServerLimits) {};
        if (s->limits.connections == 0)
                s->limits.connections = HTTPSERVER_CONNECTIONS;
        if (s->limits.per_address == 0)
                s->limits.per_address = HTTPSERVER_PER_ADDRESS;
        if (s->limits.timeout_sec == 0)
                s->limits.timeout_sec = HTTPSERVER_TIMEOUT_SEC;
        s->peers = calloc(s->limits.connections, sizeof(*s->peers));
        if (!s->peers)
                return -ENOMEM;

        if (address) {
                /* Our own socket: its errno tells what went wrong, where
                 * MHD_start_daemon() only says NULL. */
                fd = netaddr_listen(address, port, HTTPSERVER_BACKLOG, &s->port);
                if (fd < 0)
                        return fd;
        } else
                flags |= MHD_USE_NO_LISTEN_SOCKET;

        /* MHD_OPTION_ARRAY's first entry: our socket, or nothing */
        struct MHD_OptionItem listen_opt[] = {
                { address ? MHD_OPTION_LISTEN_SOCKET : MHD_OPTION_END, fd, NULL },
                { MHD_OPTION_END, 0, NULL },
        };
        s->daemon = MHD_start_daemon(flags, 0, on_accept, s, on_request, s,
                                     MHD_OPTION_ARRAY, listen_opt,
                                     MHD_OPTION_CONNECTION_LIMIT, (unsigned) (s->limits.connections + 1),
                                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) s->limits.timeout_sec,
                                     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) HTTPSERVER_MEMORY_LIMIT,
                                     MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                                     MHD_OPTION_END);
        if (!s->daemon)
                return -ENOMEM; /* MHD says no more; with our socket bound, its resources are what is left */
        TAKE_FD(fd); /* MHD_stop_daemon() closes it */

        info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info || info->epoll_fd < 0)
                return -EIO;
        r = sd_event_add_io(e, &s->io, info->epoll_fd, EPOLLIN, on_io, s);
        if (r < 0)
                return r;
        r = sd_event_add_time(e, &s->timer, CLOCK_MONOTONIC, UINT64_MAX, USEC_PER_MSEC, on_timer, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(s->io, "http-server");
        (void) sd_event_source_set_description(s->timer, "http-server-timer");

        *ret = TAKE_PTR(s);
        return 0;
}

HttpServer *httpserver_free(HttpServer *s) {
        if (!s)
                return NULL;
        sd_event_source_disable_unref(s->io);
        sd_event_source_disable_unref(s->timer);
        /* closes every connection (notified, so the peers go too) and the
         * listening socket */
        if (s->daemon)
                MHD_stop_daemon(s->daemon);
        for (size_t i = 0; i < s->n_routes; i++)
                free(s->routes[i].path);
        free(s->peers);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

int httpserver_add_route(HttpServer *s, const char *path, HttpHandler handler, void *userdata) {
        char *p;

        if (!s || !path || path[0] != '/' || !handler)
                return -EINVAL;
        if (route_find(s, path))
                return -EEXIST;
        if (s->n_routes >= HTTPSERVER_ROUTES_MAX)
                return -ENOSPC;
        p = strdup(path);
        if (!p)
                return -ENOMEM;
        s->routes[s->n_routes++] = (HttpRoute) { .path = p, .handler = handler, .userdata = userdata };
        return 0;
}

int httpserver_add_connection(HttpServer *s, int fd, const struct sockaddr *peer, socklen_t peer_len) {
        if (!s || fd < 0) {
                if (fd >= 0)
                        close(fd);
                return -EINVAL;
        }
        /* MHD closes fd when it refuses it */
        if (MHD_add_connection(s->daemon, fd, peer, peer_len) != MHD_YES)
                return -ECONNREFUSED;
        timer_arm(s);
        return 0;
}

uint16_t httpserver_port(const HttpServer *s) {
        return s ? s->port : 0;
}

void httpserver_stats(const HttpServer *s, HttpServerStats *ret) {
        *ret = (HttpServerStats) {};
        if (!s)
                return;
        ret->connections = s->connections;
        ret->requests = s->requests;
        ret->refused = s->refused;
}
