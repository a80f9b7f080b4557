/* HAProxy agent-check listener. Each connection gets one line and a close,
 * all from the event loop: the accept socket is non-blocking, the reply is
 * a few bytes written with MSG_DONTWAIT into an empty send buffer, and a
 * wakeup accepts a bounded number of connections so a flood of checkers
 * cannot starve the rest of the agent. */
#include "agentcheck.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "log.h"

/* Connections handled per wakeup; the rest wait for the next one (the
 * listen socket stays readable, so sd-event comes straight back). */
#define AGENTCHECK_ACCEPT_BURST 32
#define AGENTCHECK_BACKLOG 128
/* After EMFILE/ENFILE the pending connection cannot be taken off the queue,
 * so the socket stays readable: pause instead of spinning. */
#define AGENTCHECK_PAUSE_USEC (100 * USEC_PER_MSEC)

struct AgentCheck {
        sd_event *event;
        sd_event_source *io;
        sd_event_source *pause;
        int fd;
        uint16_t port;
        State (*state_of)(void *userdata);
        void *userdata;
};

static const char *const word_table[_STATE_MAX] = {
        [STATE_BOOT] = "maint\n",
        [STATE_CHECKING] = "maint\n",
        [STATE_SERVING] = "up ready\n",
        [STATE_OVERLOADED] = "up ready\n",
        [STATE_HOLDING] = "up ready\n",
        [STATE_DRAINING] = "drain\n",
        [STATE_REMEDIATING] = "maint\n",
        [STATE_QUARANTINED] = "maint\n",
        [STATE_MAINTENANCE] = "maint\n",
};

const char *agentcheck_word(State s) {
        /* An unknown state must never look routable. */
        if (s < 0 || s >= _STATE_MAX || !word_table[s])
                return "maint\n";
        return word_table[s];
}

/* Accepts "127.0.0.1", "::1" and "[::1]". */
static int parse_address(const char *address, uint16_t port, struct sockaddr_storage *ret, socklen_t *ret_len) {
        struct sockaddr_storage ss = {};
        char buf[INET6_ADDRSTRLEN + 2];
        const char *a = isempty(address) ? "127.0.0.1" : address;
        size_t n = strlen(a);

        if (n >= 2 && a[0] == '[' && a[n - 1] == ']') {
                if (n - 2 >= sizeof(buf))
                        return -EINVAL;
                memcpy(buf, a + 1, n - 2);
                buf[n - 2] = '\0';
                a = buf;
        }

        struct sockaddr_in *in4 = (struct sockaddr_in *) &ss;
        if (inet_pton(AF_INET, a, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons(port);
                *ret = ss;
                *ret_len = sizeof(struct sockaddr_in);
                return 0;
        }
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
        if (inet_pton(AF_INET6, a, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(port);
                *ret = ss;
                *ret_len = sizeof(struct sockaddr_in6);
                return 0;
        }
        return -EINVAL;
}

static void answer(AgentCheck *a, int cfd) {
        const char *w = agentcheck_word(a->state_of(a->userdata));
        char sink[512];
        ssize_t n;

        n = send(cfd, w, strlen(w), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0)
                log_debug_errno(negative_errno(), "agent-check: cannot answer: %m, ignoring");
        /* HAProxy may send an agent-send string. Unread input at close turns
         * the FIN into a RST, which can make the peer drop our reply: read
         * what has arrived, then close half-way first. */
        while (recv(cfd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
                ;
        (void) shutdown(cfd, SHUT_WR);
}

static int on_pause_end(sd_event_source *s, uint64_t usec, void *userdata) {
        AgentCheck *a = userdata;

        (void) sd_event_source_set_enabled(a->io, SD_EVENT_ON);
        return 0;
}

static void pause_accepting(AgentCheck *a) {
        uint64_t now;
        int r;

        r = sd_event_now(a->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return;
        if (a->pause) {
                r = sd_event_source_set_time(a->pause, now + AGENTCHECK_PAUSE_USEC);
                if (r >= 0)
                        r = sd_event_source_set_enabled(a->pause, SD_EVENT_ONESHOT);
        } else
                r = sd_event_add_time(a->event, &a->pause, CLOCK_MONOTONIC, now + AGENTCHECK_PAUSE_USEC,
                                      USEC_PER_MSEC, on_pause_end, a);
        if (r < 0) {
                log_warning_errno(r, "agent-check: cannot arm the pause timer: %m, ignoring");
                return;
        }
        (void) sd_event_source_set_enabled(a->io, SD_EVENT_OFF);
}

static int on_listen(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        AgentCheck *a = userdata;

        for (unsigned i = 0; i < AGENTCHECK_ACCEPT_BURST; i++) {
                _cleanup_(closep) int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        int r = negative_errno();
                        if (r == -EAGAIN || r == -EWOULDBLOCK)
                                return 0;
                        if (r == -EINTR || r == -ECONNABORTED || r == -EPROTO)
                                continue;
                        if (r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM) {
                                log_warning_errno(r, "agent-check: cannot accept: %m, pausing");
                                pause_accepting(a);
                                return 0;
                        }
                        log_warning_errno(r, "agent-check: accept failed: %m, ignoring");
                        return 0;
                }
                answer(a, cfd);
        }
        return 0;
}

int agentcheck_new(sd_event *e, const char *address, uint16_t port, State (*state_of)(void *userdata),
                   void *userdata, AgentCheck **ret) {
        _cleanup_(agentcheck_freep) AgentCheck *a = NULL;
        struct sockaddr_storage ss;
        socklen_t sl;
        int r, one = 1;

        if (!e || !state_of || !ret)
                return -EINVAL;
        r = parse_address(address, port, &ss, &sl);
        if (r < 0)
                return r;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->fd = -1;
        a->event = sd_event_ref(e);
        a->state_of = state_of;
        a->userdata = userdata;

        a->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (a->fd < 0)
                return negative_errno();
        if (setsockopt(a->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                return negative_errno();
        if (ss.ss_family == AF_INET6 && setsockopt(a->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
                return negative_errno();
        if (bind(a->fd, (struct sockaddr *) &ss, sl) < 0)
                return negative_errno();
        if (listen(a->fd, AGENTCHECK_BACKLOG) < 0)
                return negative_errno();

        sl = sizeof(ss);
        if (getsockname(a->fd, (struct sockaddr *) &ss, &sl) < 0)
                return negative_errno();
        a->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *) &ss)->sin_port
                                                 : ((struct sockaddr_in6 *) &ss)->sin6_port);

        r = sd_event_add_io(e, &a->io, a->fd, EPOLLIN, on_listen, a);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(a->io, "agent-check");

        *ret = TAKE_PTR(a);
        return 0;
}

AgentCheck *agentcheck_free(AgentCheck *a) {
        if (!a)
                return NULL;
        sd_event_source_disable_unref(a->io);
        sd_event_source_disable_unref(a->pause);
        if (a->fd >= 0)
                close(a->fd);
        sd_event_unref(a->event);
        free(a);
        return NULL;
}

uint16_t agentcheck_port(const AgentCheck *a) {
        return a ? a->port : 0;
}
