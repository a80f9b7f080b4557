/* An HTTP listener on the event loop: one libmicrohttpd daemon in its
 * epoll mode without a thread of its own (sd-event watches MHD's epoll fd
 * and a timer from MHD_get_timeout(), re-armed after every MHD_run()), on
 * one address:port, with routes registered by path. Answers GET and HEAD
 * only, takes no request body, bounds connections in all and per client
 * address, drops idle and slow clients after a timeout. Every answer says
 * Cache-Control: no-store. Shared by whatever serves small, computed pages:
 * the health endpoint (healthendpoint.h), metrics. */
#pragma once

#include <stdint.h>
#include <sys/socket.h>

#include <systemd/sd-event.h>

typedef struct HttpServer HttpServer;
typedef struct HttpRequest HttpRequest;

typedef struct HttpServerLimits {
        unsigned connections; /* open at once, in all; 0: HTTPSERVER_CONNECTIONS */
        unsigned per_address; /* from one client address; 0: HTTPSERVER_PER_ADDRESS */
        unsigned timeout_sec; /* a connection silent this long is closed; 0: HTTPSERVER_TIMEOUT_SEC */
} HttpServerLimits;

#define HTTPSERVER_CONNECTIONS 256
#define HTTPSERVER_PER_ADDRESS 32
#define HTTPSERVER_TIMEOUT_SEC 10
#define HTTPSERVER_ROUTES_MAX 8

/* What a handler answers. body is malloc'd and taken by the server (NULL:
 * empty); content_type is a static string (NULL: text/plain). HEAD gets
 * the same headers and no body, without the handler knowing. */
typedef struct HttpReply {
        unsigned status;
        const char *content_type;
        char *body;
        size_t body_len;
} HttpReply;

/* 0, or a negative errno: the client then gets 500. */
typedef int (*HttpHandler)(const HttpRequest *req, void *userdata, HttpReply *reply);

/* The request a handler looks at: "GET" or "HEAD", the decoded path
 * without the query, a query argument, a header (case-insensitive);
 * NULL when absent. Valid during the handler's call only. */
const char *httpserver_request_method(const HttpRequest *req);
const char *httpserver_request_path(const HttpRequest *req);
const char *httpserver_request_arg(const HttpRequest *req, const char *name);
const char *httpserver_request_header(const HttpRequest *req, const char *name);

/* Listens on address:port (an IPv4 or IPv6 literal, "[::1]" too; port 0
 * picks a free one). address NULL: no listening socket, connections come
 * only from httpserver_add_connection() (tests, fuzzing). limits may be
 * NULL. Negative errno: -EINVAL for an address that is not an IP literal,
 * -EADDRINUSE, -EADDRNOTAVAIL (not an address of this host), ... */
int httpserver_new(sd_event *e, const char *address, uint16_t port, const HttpServerLimits *limits,
                   HttpServer **ret);
HttpServer *httpserver_free(HttpServer *s);
static inline void httpserver_freep(HttpServer **s) {
        httpserver_free(*s);
}

/* path is matched exactly ("/" is only "/"); -EEXIST when taken,
 * -ENOSPC past HTTPSERVER_ROUTES_MAX. Anything else is answered 404. */
int httpserver_add_route(HttpServer *s, const char *path, HttpHandler handler, void *userdata);

/* Hands a connected socket to the server as if it had been accepted from
 * peer (the server takes fd, even on failure). */
int httpserver_add_connection(HttpServer *s, int fd, const struct sockaddr *peer, socklen_t peer_len);

/* One round of work now (what the loop does on every wakeup): for tests
 * and fuzzing that do not run the loop. */
int httpserver_dispatch(HttpServer *s);

uint16_t httpserver_port(const HttpServer *s);

typedef struct HttpServerStats {
        unsigned connections; /* open now */
        uint64_t requests;    /* answered, whatever the status */
        uint64_t refused;     /* connections closed at once: over a limit */
} HttpServerStats;
void httpserver_stats(const HttpServer *s, HttpServerStats *ret);
