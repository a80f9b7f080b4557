/* monkey-proxy-sync's command line: see options.h. */
#include <getopt.h>
#include <stdarg.h>

#include "log.h"
#include "options.h"
#include "parse.h"
#include "proxysync.h"
#include "respconn.h"
#include "secret.h"

static void options_help(void) {
        printf("Usage: " PROG " --pool NAME [--redis URL] TARGET [OPTIONS]\n"
               "\n"
               "Makes a proxy follow a Doctor Monkey pool: routes to members of\n"
               "monkey:{NAME}:serving whose agent still holds a lease.\n"
               "\n"
               "Targets (exactly one):\n"
               "  --haproxy-socket PATH --backend NAME [--server-prefix P] [--drain-grace DUR]\n"
               "        HAProxy runtime API (stats socket 'level admin'); the backend has\n"
               "        'server-template P 1-N 127.0.0.1:1 disabled' slots (default P: s).\n"
               "        Leavers are drained, then put in maint after the grace (default 10s).\n"
               "  --nginx-upstream FILE [--nginx-reload CMD] [--upstream NAME] [--server-args ARGS]\n"
               "        writes 'upstream NAME { server ip:port ARGS; ... }' atomically (NAME\n"
               "        defaults to the pool name) and runs CMD with /bin/sh when it changed.\n"
               "\n"
               "Options:\n"
               "  --redis URL             redis://[USER:PASSWORD@]HOST[:PORT][/DB], unix:///PATH[?db=DB]\n"
               "                          or sentinel://[USER:PASSWORD@]H[:P][,H[:P]...]/MASTER[/DB]\n"
               "                          (the master the sentinels name, followed across a\n"
               "                          failover), as monkeyd's [pool] redis\n"
               "                          (default redis://127.0.0.1:6379). rediss:// and\n"
               "                          rediss-sentinel:// are the same over TLS (1.2 at least).\n"
               "                          Several HOST[:PORT] in redis(s)://: a Redis Cluster's\n"
               "                          seeds (MOVED and ASK are followed). Host names are looked\n"
               "                          up off the loop on every connect (IPv6 too)\n"
               "  --password-file FILE    Redis password (first line), instead of the URL; an\n"
               "                          absolute path to a file of ours or root's, no symlink,\n"
               "                          no group/other access (chmod 600). With\n"
               "                          redis://USER@HOST the word is the ACL user\n"
               "  --tls-ca-file FILE      the CAs that sign the server's certificate (PEM;\n"
               "                          default: the system's store)\n"
               "  --tls-cert-file FILE    a client certificate (PEM chain), with --tls-key-file\n"
               "  --tls-key-file FILE     its key, by the --password-file rules\n"
               "  --tls-server-name NAME  the name the server's certificate must carry, also\n"
               "                          sent as SNI (default: the host connected to)\n"
               "  --interval DUR          periodic full resync (default 5s)\n"
               "  --timeout DUR           per Redis/HAProxy exchange (default 1s)\n"
               "  --reload-timeout DUR    the reload command is killed after this (default 10s)\n"
               "  --allow-empty           apply an empty pool (default: keep the last servers)\n"
               "  --settle DUR            a routed server that Redis does not know at all (Redis\n"
               "                          restarted empty or flushed) stays routed this long while\n"
               "                          the agents register again (default 15s, the agents'\n"
               "                          default lease; 0: remove at once)\n"
               "  --once                  sync once and exit (0 in sync, 1 not)\n"
               "  --log-level LEVEL       error, warning, notice, info (default), debug\n"
               "  --version, -h --help\n"
               "\n"
               "Durations as in monkeyd.conf: 500ms, 5s, 1m30s (a day at most).\n"
               "Exit status 2 on usage errors.\n");
}

static int options_usage(const char *format, ...) _printf_(1, 2);
static int options_usage(const char *format, ...) {
        va_list ap;

        fputs(PROG ": ", stderr);
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputs(" (see --help)\n", stderr);
        return -EINVAL;
}

void options_done(Options *o) {
        redis_url_done(&o->redis);
        SSL_CTX_free(o->tls);
        o->tls = NULL;
}

/* monkeyd's [pool] tls_* rules: read now, so a bad CA or key is a usage
 * error at start and never a surprise at a reconnect. */
static int options_read_tls(Options *o) {
        _cleanup_(freep) char *tls_error = NULL;
        int r;

        if (!o->redis.tls) {
                if (o->tls_ca_file || o->tls_cert_file || o->tls_key_file || o->tls_server_name)
                        return options_usage("--tls-ca-file, --tls-cert-file, --tls-key-file and --tls-server-name "
                                             "go with rediss:// or rediss-sentinel://");
                return 0;
        }
        if (!o->tls_cert_file != !o->tls_key_file)
                return options_usage("--tls-cert-file and --tls-key-file go together");
        r = respconn_tls_new(o->tls_ca_file, o->tls_cert_file, o->tls_key_file, &o->tls, &tls_error);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                fprintf(stderr, PROG ": TLS: %s\n", tls_error ? tls_error : strerror(-r));
                return -EINVAL;
        }
        return 0;
}

enum {
        ARG_REDIS = 0x100,
        ARG_PASSWORD_FILE,
        ARG_POOL,
        ARG_HAPROXY_SOCKET,
        ARG_BACKEND,
        ARG_SERVER_PREFIX,
        ARG_DRAIN_GRACE,
        ARG_SETTLE,
        ARG_NGINX_UPSTREAM,
        ARG_NGINX_RELOAD,
        ARG_UPSTREAM,
        ARG_SERVER_ARGS,
        ARG_INTERVAL,
        ARG_TIMEOUT,
        ARG_RELOAD_TIMEOUT,
        ARG_ALLOW_EMPTY,
        ARG_ONCE,
        ARG_LOG_LEVEL,
        ARG_VERSION,
        ARG_TLS_CA_FILE,
        ARG_TLS_CERT_FILE,
        ARG_TLS_KEY_FILE,
        ARG_TLS_SERVER_NAME,
};

static const struct option options_table[] = {
        { "redis", required_argument, NULL, ARG_REDIS },
        { "password-file", required_argument, NULL, ARG_PASSWORD_FILE },
        { "pool", required_argument, NULL, ARG_POOL },
        { "haproxy-socket", required_argument, NULL, ARG_HAPROXY_SOCKET },
        { "backend", required_argument, NULL, ARG_BACKEND },
        { "server-prefix", required_argument, NULL, ARG_SERVER_PREFIX },
        { "drain-grace", required_argument, NULL, ARG_DRAIN_GRACE },
        { "settle", required_argument, NULL, ARG_SETTLE },
        { "nginx-upstream", required_argument, NULL, ARG_NGINX_UPSTREAM },
        { "nginx-reload", required_argument, NULL, ARG_NGINX_RELOAD },
        { "upstream", required_argument, NULL, ARG_UPSTREAM },
        { "server-args", required_argument, NULL, ARG_SERVER_ARGS },
        { "interval", required_argument, NULL, ARG_INTERVAL },
        { "timeout", required_argument, NULL, ARG_TIMEOUT },
        { "reload-timeout", required_argument, NULL, ARG_RELOAD_TIMEOUT },
        { "allow-empty", no_argument, NULL, ARG_ALLOW_EMPTY },
        { "once", no_argument, NULL, ARG_ONCE },
        { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
        { "version", no_argument, NULL, ARG_VERSION },
        { "tls-ca-file", required_argument, NULL, ARG_TLS_CA_FILE },
        { "tls-cert-file", required_argument, NULL, ARG_TLS_CERT_FILE },
        { "tls-key-file", required_argument, NULL, ARG_TLS_KEY_FILE },
        { "tls-server-name", required_argument, NULL, ARG_TLS_SERVER_NAME },
        { "help", no_argument, NULL, 'h' },
        {},
};

static usec_t *options_duration(Options *o, int c) {
        switch (c) {
        case ARG_DRAIN_GRACE: return &o->drain_grace;
        case ARG_SETTLE: return &o->settle;
        case ARG_INTERVAL: return &o->interval;
        case ARG_TIMEOUT: return &o->timeout;
        case ARG_RELOAD_TIMEOUT: return &o->reload_timeout;
        default: return NULL;
        }
}

static const char *options_name(int c) {
        for (size_t i = 0; options_table[i].name; i++)
                if (options_table[i].val == c)
                        return options_table[i].name;
        return "?";
}

/* The words of argv into *o, each checked alone. */
static int options_read(int argc, char *argv[], Options *o, const char **ret_url, const char **ret_password_file) {
        int c;

        while ((c = getopt_long(argc, argv, "h", options_table, NULL)) >= 0) {
                usec_t *dur = options_duration(o, c);

                if (dur) {
                        /* monkeyd's grammar ("1m30s"); a day at most, as
                         * none of these is useful longer. */
                        if (parse_duration(optarg, dur) < 0 || *dur > USEC_PER_DAY)
                                return options_usage("invalid duration '%s' for --%s", optarg, options_name(c));
                        continue;
                }
                switch (c) {
                case ARG_REDIS: *ret_url = optarg; break;
                case ARG_PASSWORD_FILE: *ret_password_file = optarg; break;
                case ARG_POOL: o->pool = optarg; break;
                case ARG_HAPROXY_SOCKET: o->haproxy_socket = optarg; break;
                case ARG_BACKEND: o->backend = optarg; break;
                case ARG_SERVER_PREFIX: o->prefix = optarg; break;
                case ARG_NGINX_UPSTREAM: o->nginx_file = optarg; break;
                case ARG_NGINX_RELOAD: o->nginx_reload = optarg; break;
                case ARG_UPSTREAM: o->upstream = optarg; break;
                case ARG_SERVER_ARGS: o->server_args = optarg; break;
                case ARG_ALLOW_EMPTY: o->allow_empty = true; break;
                case ARG_TLS_CA_FILE: o->tls_ca_file = optarg; break;
                case ARG_TLS_CERT_FILE: o->tls_cert_file = optarg; break;
                case ARG_TLS_KEY_FILE: o->tls_key_file = optarg; break;
                case ARG_TLS_SERVER_NAME: o->tls_server_name = optarg; break;
                case ARG_ONCE: o->once = true; break;
                case ARG_LOG_LEVEL:
                        o->log_level = log_level_from_string(optarg);
                        if (o->log_level < 0)
                                return options_usage("invalid log level '%s'", optarg);
                        break;
                case ARG_VERSION: printf(PROG " %s\n", MONKEY_VERSION); return -ECANCELED;
                case 'h': options_help(); return -ECANCELED;
                default: return -EINVAL;
                }
        }
        if (optind < argc)
                return options_usage("unexpected argument '%s'", argv[optind]);
        return 0;
}

/* Exactly one target, with only its own options. */
static int options_check_target(Options *o) {
        if (o->haproxy_socket && o->nginx_file)
                return options_usage("--haproxy-socket and --nginx-upstream exclude each other");
        if (o->haproxy_socket) {
                o->target = TARGET_HAPROXY;
                if (!o->backend)
                        return options_usage("--haproxy-socket needs --backend NAME");
                if (!proxysync_name_is_valid(o->backend) || !proxysync_name_is_valid(o->prefix))
                        return options_usage("invalid --backend or --server-prefix (letters, digits, '.', '_', '-')");
                if (o->nginx_reload || o->upstream || o->server_args)
                        return options_usage("--nginx-reload, --upstream and --server-args go with --nginx-upstream");
                return 0;
        }
        if (o->nginx_file) {
                o->target = TARGET_NGINX;
                if (!o->upstream)
                        o->upstream = o->pool;
                if (!proxysync_name_is_valid(o->upstream))
                        return options_usage("invalid --upstream name '%s'", o->upstream);
                if (!proxysync_server_args_are_valid(o->server_args))
                        return options_usage("--server-args may not hold ';', braces, '#', quotes, '$' or control characters");
                if (o->backend)
                        return options_usage("--backend goes with --haproxy-socket");
                return 0;
        }
        return options_usage("a target is required: --haproxy-socket PATH --backend NAME, or --nginx-upstream FILE");
}

/* monkeyd's rules for its own password_file: a password others can read
 * is refused, not used. */
static int options_read_password(Options *o, const char *password_file) {
        _cleanup_(freep) char *secret_error = NULL;
        int r;

        /* "redis://syncer@host" with a password file: the word names the user. */
        if (o->redis.password && o->redis.bare_userinfo) {
                o->redis.user = o->redis.password;
                o->redis.password = NULL;
        }
        if (o->redis.password)
                return options_usage("give the Redis password in the URL or in --password-file, not both");
        r = secret_file_read(password_file, &o->redis.password, &secret_error);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                fprintf(stderr, PROG ": --password-file: %s\n", secret_error ? secret_error : strerror(-r));
                return -EINVAL;
        }
        return 0;
}

static int options_parse_all(int argc, char *argv[], Options *o) {
        const char *redis_url = "redis://127.0.0.1:6379", *password_file = NULL;
        _cleanup_(freep) char *url_error = NULL;
        int r;

        r = options_read(argc, argv, o, &redis_url, &password_file);
        if (r < 0)
                return r;
        if (!o->pool)
                return options_usage("--pool NAME is required");
        if (!proxysync_name_is_valid(o->pool))
                return options_usage("invalid pool name '%s' (letters, digits, '.', '_', '-')", o->pool);
        /* monkeyd's grammar, so a URL copied from its [pool] redis means
         * the same socket, DB and sentinels here. */
        r = redis_url_parse(redis_url, &o->redis, &url_error);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return options_usage("%s", url_error ? url_error : "invalid --redis URL");
        r = options_read_tls(o);
        if (r < 0)
                return r;
        r = options_check_target(o);
        if (r < 0)
                return r;
        if (o->interval < 100 * USEC_PER_MSEC || o->timeout < 10 * USEC_PER_MSEC ||
            o->reload_timeout < 10 * USEC_PER_MSEC)
                return options_usage("--interval must be at least 100ms, --timeout and --reload-timeout at least 10ms");
        if (password_file)
                return options_read_password(o, password_file);
        return 0;
}

int options_parse(int argc, char *argv[], Options *ret) {
        Options o = {
                .prefix = "s",
                .interval = 5 * USEC_PER_SEC,
                .timeout = USEC_PER_SEC,
                .reload_timeout = 10 * USEC_PER_SEC,
                .drain_grace = 10 * USEC_PER_SEC,
                .settle = 15 * USEC_PER_SEC,
                .log_level = -1,
        };
        int r;

        r = options_parse_all(argc, argv, &o);
        if (r < 0) {
                options_done(&o);
                return r;
        }
        *ret = o;
        return 0;
}
