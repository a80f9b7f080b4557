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
#include "netaddr.h"

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

        /* for status; set by agentcheck_new_from_config() only */
        char *address;     /* bound */
        const char *from;  /* static: where the address came from */
        char *proxy_address;
        AgentCheckReach reach;
        char *warning;
        char *note;
};

static const char *const word_table[_TRAFFIC_MAX] = {
        [TRAFFIC_SEND] = "up ready\n",
        [TRAFFIC_DRAIN] = "drain\n",
        [TRAFFIC_STOP] = "maint\n",
};

const char *agentcheck_word(State s) {
        return word_table[state_traffic(s)];
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
        int r;

        if (!e || !state_of || !ret)
                return -EINVAL;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->fd = -1;
        a->event = sd_event_ref(e);
        a->state_of = state_of;
        a->userdata = userdata;

        a->fd = netaddr_listen(address, port, AGENTCHECK_BACKLOG, &a->port);
        if (a->fd < 0)
                return a->fd;

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
        free(a->address);
        free(a->proxy_address);
        free(a->warning);
        free(a->note);
        free(a);
        return NULL;
}

uint16_t agentcheck_port(const AgentCheck *a) {
        return a ? a->port : 0;
}

/* Family and bytes of an IP literal ("[::1]" too). */
static int ip_parse(const char *s, int *ret_family, struct in6_addr *ret) {
        struct sockaddr_storage ss;
        socklen_t sl;

        if (isempty(s) || netaddr_parse(s, 0, &ss, &sl) < 0)
                return -EINVAL;
        *ret = (struct in6_addr) {};
        *ret_family = ss.ss_family;
        if (ss.ss_family == AF_INET)
                memcpy(ret, &((struct sockaddr_in *) &ss)->sin_addr, sizeof(struct in_addr));
        else
                *ret = ((struct sockaddr_in6 *) &ss)->sin6_addr;
        return 0;
}

AgentCheckReach agentcheck_reachable(const char *listen_ip, const char *proxy_ip) {
        struct in6_addr l, p;
        int lf, pf;

        if (ip_parse(proxy_ip, &pf, &p) < 0)
                return AGENTCHECK_REACH_UNKNOWN;
        if (ip_parse(listen_ip, &lf, &l) < 0 || lf != pf)
                return AGENTCHECK_REACH_NO; /* an IPv6 listener is V6ONLY */
        if (memcmp(&l, &p, sizeof l) == 0)
                return AGENTCHECK_REACH_YES;
        /* the wildcard of the family takes every address of this host */
        if (lf == AF_INET ? ((struct in_addr *) &l)->s_addr == htonl(INADDR_ANY) : IN6_IS_ADDR_UNSPECIFIED(&l))
                return AGENTCHECK_REACH_YES;
        return AGENTCHECK_REACH_NO;
}

int agentcheck_new_from_config(sd_event *e, const Config *c, State (*state_of)(void *userdata), void *userdata,
                               AgentCheck **ret) {
        _cleanup_(agentcheck_freep) AgentCheck *a = NULL;
        const char *address = c->proxy.agent_check_address, *proxy = c->proxy.proxy_address;
        AgentCheckFrom from = c->proxy.agent_check_from;
        bool fell_back = false;
        int r;

        if (!e || !c || !ret)
                return -EINVAL;
        if (!address) {
                address = "0.0.0.0";
                from = AGENT_CHECK_FROM_WILDCARD;
        }
        r = agentcheck_new(e, address, c->proxy.agent_check_port, state_of, userdata, &a);
        if (config_listen_fallback(address, from, r)) {
                log_warning("agent-check: %s (from %s) is not an address of this host, listening on all addresses "
                            "instead",
                            address, agent_check_from_to_string(from));
                address = config_listen_fallback(address, from, r);
                fell_back = true;
                r = agentcheck_new(e, address, c->proxy.agent_check_port, state_of, userdata, &a);
        }
        if (r < 0)
                return r;

        a->address = strdup(address);
        a->proxy_address = proxy ? strdup(proxy) : NULL;
        if (!a->address || (proxy && !a->proxy_address))
                return -ENOMEM;
        a->from = fell_back ? "wildcard: the derived address is not on this host" : agent_check_from_to_string(from);
        a->reach = agentcheck_reachable(a->address, proxy);

        switch (a->reach) {
        case AGENTCHECK_REACH_NO:
                /* Said at start and in status, not at every poll: HAProxy
                 * itself never says that its agent connection is refused. */
                if (asprintf(&a->warning,
                             "HAProxy connects agent-check to the server's own address %s (from %s), but the "
                             "listener is on %s port %u: a drain never reaches HAProxy unless its server line sets "
                             "agent-addr %s; set [proxy] agent_check_address = %s, or remove it",
                             proxy, agent_check_from_to_string(c->proxy.proxy_address_from), a->address, (unsigned) a->port, a->address, proxy) < 0)
                        return -ENOMEM;
                log_warning("agent-check: %s", a->warning);
                break;
        case AGENTCHECK_REACH_UNKNOWN:
                if (asprintf(&a->note,
                             "the address HAProxy connects to is not known here ([pool] address is %s): listening on "
                             "%s port %u; make sure HAProxy's server line (or its agent-addr) reaches it",
                             c->pool.address ? "not an IP literal" : "not set", a->address, (unsigned) a->port) < 0)
                        return -ENOMEM;
                log_notice("agent-check: %s", a->note);
                break;
        case AGENTCHECK_REACH_YES:
                log_info("agent-check: listening on %s port %u (from %s)", a->address, (unsigned) a->port, a->from);
                break;
        }

        *ret = TAKE_PTR(a);
        return 0;
}

const char *agentcheck_warning(const AgentCheck *a) {
        return a ? a->warning : NULL;
}

static json_object *string_or_null(const char *s) {
        return s ? json_object_new_string(s) : NULL;
}

json_object *agentcheck_status_json(const AgentCheck *a) {
        json_object *o;

        if (!a)
                return NULL;
        o = json_object_new_object();
        if (!o)
                return NULL;
        json_object_object_add(o, "address", string_or_null(a->address));
        json_object_object_add(o, "port", json_object_new_int(a->port));
        json_object_object_add(o, "from", string_or_null(a->from));
        json_object_object_add(o, "proxies_connect_to", string_or_null(a->proxy_address));
        json_object_object_add(o, "reachable", a->reach == AGENTCHECK_REACH_UNKNOWN
                                                       ? NULL
                                                       : json_object_new_boolean(a->reach == AGENTCHECK_REACH_YES));
        json_object_object_add(o, "warning", string_or_null(a->warning));
        json_object_object_add(o, "note", string_or_null(a->note));
        return o;
}
