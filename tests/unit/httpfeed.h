/* Feeds bytes to an HttpServer through a socketpair, as a client that
 * sends them all, closes its sending half and reads until the server
 * closes: for the unit test and the fuzz target, which do not run the
 * loop. Bounded: at most HTTPFEED_ROUNDS rounds of the server's work. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpserver.h"

#define HTTPFEED_ROUNDS 2000

/* The answer's bytes into out (NUL-terminated, cut at size - 1); returns
 * how many were read, or a negative errno (-ECONNREFUSED: not taken). */
static inline ssize_t httpfeed(HttpServer *s, const void *req, size_t len, char *out, size_t size) {
        struct sockaddr_in peer = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        size_t got = 0, sent = 0;
        bool shut = false;
        int fds[2], r;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0)
                return -errno;
        r = httpserver_add_connection(s, fds[0], (struct sockaddr *) &peer, sizeof peer);
        if (r < 0) {
                close(fds[1]);
                return r;
        }
        for (unsigned i = 0; i < HTTPFEED_ROUNDS; i++) {
                char buf[4096];
                ssize_t n;

                /* The close comes a round after the last bytes, as its own
                 * event: MHD's epoll is edge-triggered, and a FIN read in
                 * the same wakeup as the data is only seen at the timeout. */
                if (sent == len && !shut) {
                        (void) shutdown(fds[1], SHUT_WR);
                        shut = true;
                } else if (sent < len) {
                        n = send(fds[1], (const char *) req + sent, len - sent, MSG_NOSIGNAL);
                        if (n > 0)
                                sent += (size_t) n;
                        else if (n < 0 && errno != EAGAIN)
                                sent = len; /* the server closed: stop sending */
                }
                (void) httpserver_dispatch(s);
                n = recv(fds[1], buf, sizeof buf, 0);
                if (n == 0 || (n < 0 && errno != EAGAIN))
                        break; /* closed by the server */
                if (n > 0 && size > 0) {
                        size_t k = (size_t) n < size - 1 - got ? (size_t) n : size - 1 - got;
                        memcpy(out + got, buf, k);
                        got += k;
                }
                if (n < 0)
                        (void) poll(&(struct pollfd) { .fd = fds[1], .events = POLLIN }, 1, 1);
        }
        close(fds[1]);
        (void) httpserver_dispatch(s); /* the server sees the close */
        if (size > 0)
                out[got] = '\0';
        return (ssize_t) got;
}
