#include "netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"

int netaddr_parse(const char *address, uint16_t port, struct sockaddr_storage *ret, socklen_t *ret_len) {
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

bool netaddr_is_ipv6(const char *address) {
        struct sockaddr_storage ss;
        socklen_t sl;

        return !isempty(address) && netaddr_parse(address, 0, &ss, &sl) >= 0 && ss.ss_family == AF_INET6;
}

int netaddr_listen(const char *address, uint16_t port, int backlog, uint16_t *ret_port) {
        _cleanup_(closep) int fd = -1;
        struct sockaddr_storage ss;
        socklen_t sl;
        int r, one = 1;

        r = netaddr_parse(address, port, &ss, &sl);
        if (r < 0)
                return r;
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                return negative_errno();
        if (ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
                return negative_errno();
        if (bind(fd, (struct sockaddr *) &ss, sl) < 0)
                return negative_errno();
        if (listen(fd, backlog) < 0)
                return negative_errno();

        sl = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *) &ss, &sl) < 0)
                return negative_errno();
        if (ret_port)
                *ret_port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *) &ss)->sin_port
                                                          : ((struct sockaddr_in6 *) &ss)->sin6_port);
        return TAKE_FD(fd);
}
