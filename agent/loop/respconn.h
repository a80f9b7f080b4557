/* One asynchronous RESP connection on sd-event that owns its socket: the
 * host name looked up off the loop (on every connect, so a DNS change is
 * followed; IPv4 and IPv6, each address tried in order), a non-blocking
 * connect over TCP or a Unix socket, optional TLS (OpenSSL, TLS 1.2 at
 * least, the peer's certificate and name checked), commands out in order
 * and their replies back in the same order, pub/sub messages to one
 * handler; a timeout for each step; one line that says what went wrong.
 * hiredis is used for RESP only (redisFormatCommandArgv, redisReader).
 * Nothing here blocks the loop. It never reconnects by itself: its owner
 * decides when (backoff, Sentinel) and makes a new one. */
#pragma once

#include <hiredis/hiredis.h>
#include <openssl/ssl.h>
#include <systemd/sd-event.h>

#include "macro.h"

typedef struct RespConn RespConn;

/* Host-name lookups (worker threads) a process runs at once, those given
 * up on included; past it a connect fails at once ("… earlier lookups
 * still wait for the DNS server"). */
#define RESPCONN_LOOKUPS_MAX 8u

/* A TLS client context: the CA file (NULL: the system's store), and an
 * optional client certificate (chain, PEM) with its key, the key read
 * under the secret-file rules (secret.c). Read in full here, so a bad file
 * is a config error and never a surprise at reconnect. */
int respconn_tls_new(const char *ca_file, const char *cert_file, const char *key_file, SSL_CTX **ret,
                     char **ret_error);

typedef struct RespConnOptions {
        const char *host; /* TCP: a name, or an IPv4/IPv6 literal (no brackets) */
        uint16_t port;
        const char *path; /* a Unix socket instead of host:port */
        SSL_CTX *tls;     /* NULL: plain; else referenced for the connection's life */
        /* The name the certificate must carry (and SNI): NULL for host. */
        const char *tls_server_name;
        usec_t resolve_timeout; /* 0: 5 s */
        usec_t connect_timeout; /* each address, TLS handshake included; 0: 5 s */
        /* The oldest command's reply must come within this; the connection
         * is closed otherwise. 0: no limit (the owner keeps its own). */
        usec_t reply_timeout;
} RespConnOptions;

typedef struct RespConnHandlers {
        /* Connected (and the TLS handshake done): commands go out now.
         * Commands queued earlier are already on their way. */
        void (*connected)(RespConn *c, void *userdata);
        /* The connection failed or is gone; error is one line naming the
         * peer and the reason. Every pending reply was heard as a failure
         * first. Called at most once; never from respconn_free(). */
        void (*closed)(RespConn *c, const char *error, void *userdata);
        /* A pub/sub "message" or "pmessage" array. */
        void (*push)(RespConn *c, const redisReply *r, void *userdata);
        void *userdata;
} RespConnHandlers;

/* The reply to one command, heard exactly once: r NULL when none will
 * come (error says why). r is freed after the call. */
typedef void (*respconn_reply_t)(RespConn *c, const redisReply *r, const char *error, void *userdata);

/* Starts connecting from the next loop iteration (no handler is ever
 * called from inside this call); the options are copied. Returns 0, or a
 * negative errno with *ret_error when nothing could start (never an
 * unreachable peer: that is heard through closed). */
int respconn_new(sd_event *e, const RespConnOptions *o, const RespConnHandlers *h, RespConn **ret,
                 char **ret_error);
/* Closes; pending replies are heard as failures ("connection closed")
 * first. Safe from inside any of its callbacks. Takes NULL, returns NULL. */
RespConn *respconn_free(RespConn *c);

/* Queue one command (argv[0] its name; argvlen NULL: C strings). Sent as
 * soon as the connection is up. Returns 0, or a negative errno (then cb
 * is not called): -ENOTCONN once closed. */
int respconn_command(RespConn *c, int argc, const char *const *argv, const size_t *argvlen, respconn_reply_t cb,
                     void *userdata);

bool respconn_is_connected(const RespConn *c);
/* The peer for messages: "host:port", "[v6]:port" or the socket path. */
const char *respconn_peer(const RespConn *c);
/* The address connected to (or being tried), numeric; "" before one. */
const char *respconn_address(const RespConn *c);
/* The last error, NULL when none. */
const char *respconn_error(const RespConn *c);
