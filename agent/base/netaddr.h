/* IP literals as the listeners take them ("127.0.0.1", "::1", "[::1]") and
 * the listening TCP socket made from one. Owns no state. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* An IPv4 or IPv6 literal (brackets allowed) and a port into *ret; NULL or
 * "" mean 127.0.0.1. -EINVAL when it is not an IP literal. */
int netaddr_parse(const char *address, uint16_t port, struct sockaddr_storage *ret, socklen_t *ret_len);

/* True for an IPv6 literal. */
bool netaddr_is_ipv6(const char *address);

/* A non-blocking, close-on-exec TCP socket listening on address:port (an
 * IPv6 one is V6ONLY, so "::" and "0.0.0.0" can be had apart); the fd, or
 * a negative errno (-EINVAL: not an IP literal, -EADDRINUSE,
 * -EADDRNOTAVAIL: not an address of this host, ...). *ret_port: the bound
 * port (useful when 0 was asked for). */
int netaddr_listen(const char *address, uint16_t port, int backlog, uint16_t *ret_port);
