/* monkey-proxy-sync's command line: the Options it runs with, parsed and
 * checked (durations, the Redis URL, the password file and the TLS files
 * by monkeyd's own rules), with --help and the usage errors. Owns
 * Options.redis and Options.tls (freed by options_done); the other strings
 * point into argv. */
#pragma once

#include <openssl/ssl.h>

#include "macro.h"
#include "redisurl.h"

#define PROG "monkey-proxy-sync"

typedef enum Target {
        TARGET_NONE,
        TARGET_HAPROXY,
        TARGET_NGINX,
} Target;

typedef struct Options {
        RedisUrl redis;
        /* rediss://: the client context (CA, client certificate and key,
         * read at start), and the name the server's certificate must carry */
        SSL_CTX *tls;
        const char *tls_ca_file, *tls_cert_file, *tls_key_file, *tls_server_name;
        char *pool;
        Target target;
        const char *haproxy_socket, *backend, *prefix;
        const char *nginx_file, *nginx_reload, *upstream, *server_args;
        usec_t interval, timeout, reload_timeout, drain_grace, settle;
        bool once, allow_empty;
        int log_level; /* -1: the default */
} Options;

/* Fills *ret from argv. 0: run with it. -ECANCELED: --help or --version
 * was printed (exit 0). -EINVAL: a usage error, already said on stderr
 * (exit 2). -ENOMEM. On failure *ret holds nothing to free. */
int options_parse(int argc, char *argv[], Options *ret);
/* Frees what options_parse allocated (the password wiped); takes a zeroed
 * Options. */
void options_done(Options *o);
