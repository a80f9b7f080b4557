/* The pool at fleet scale, as a real fleet talks to Redis: every simulated
 * agent has its own connection (up to --conns real sockets; beyond that,
 * agents share one, pipelined), all multiplexed by one process on epoll with
 * hiredis's RESP encoder (redisFormatCommandArgv) and reply reader
 * (redisReader), and replays the agent's own Lua scripts (pool_scripts.h)
 * with the agent's own keys (poolkeys.h):
 *   - the whole fleet joins at once (as after a Redis restart);
 *   - heartbeats at the agent's interval for a bounded number of intervals,
 *     each one the lease renewal and the status summary the agent sends;
 *   - the herd: every agent of every pool asks the budget to leave at once;
 *     exactly max_unavailable per pool may be granted, and Redis must hold
 *     exactly that many out: a wrong count exits non-zero.
 * One Redis (--node PORT:PID) or a Cluster (--cluster, several --node): with
 * a cluster, each pool's commands go to the master that owns its hash tag's
 * slot (CRC16, CLUSTER SLOTS). Reports p50/p99 per operation and per shard,
 * ops/s, the Redis processes' CPU (/proc/PID/stat) and memory (INFO memory),
 * as text and as JSON (--json). Every phase is bounded in count and time. */
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "evalsha.h"
#include "macro.h"
#include "pool_scripts.h"
#include "poolkeys.h"

#define MAX_NODES 16
#define CLUSTER_SLOTS 16384
/* Connections opened at once: more would overflow the listen backlog and
 * turn into 1 s SYN retransmits, which would time our backlog, not Redis. */
#define CONNECT_WINDOW 256
/* Source addresses to bind from: 127.0.0.1..16, so the ephemeral port range
 * (about 28,000 ports per source and destination) is never what limits. */
#define SOURCE_ADDRS 16
#define CONNECT_CAP_SEC 60.0
#define BURST_CAP_SEC 60.0
#define OUT_TTL_MS "1800000" /* [pool] out_max, 30 min */
#define GOAL_P99_MS 5.0

typedef enum Op { OP_JOIN, OP_HEARTBEAT, OP_VIEW, OP_LEAVE, _OP_MAX } Op;
static const char *const op_name[_OP_MAX] = {
        [OP_JOIN] = "join",
        [OP_HEARTBEAT] = "heartbeat",
        [OP_VIEW] = "status summary",
        [OP_LEAVE] = "herd leave",
};

typedef struct Samples {
        double *v; /* seconds */
        size_t n, cap;
        unsigned errors;
} Samples;

typedef struct Node {
        int port;
        int pid;    /* for its CPU; 0: unknown */
        bool master; /* owns slots (a single Redis owns them all) */
        unsigned conns, first_conn;
        Samples s[_OP_MAX];
        unsigned long long cpu_ticks0;
} Node;

typedef struct Pending {
        unsigned agent;
        Op op;
        double t0;
} Pending;

typedef struct Conn {
        int fd;
        unsigned node;
        bool connected, writing;
        redisReader *reader;
        char *out;
        size_t out_len, out_off, out_cap;
        Pending *q; /* ring of requests awaiting their reply, in order */
        size_t q_head, q_len, q_cap;
} Conn;

typedef struct Agent {
        unsigned pool, conn;
        bool hb_in_flight, view_in_flight;
        PoolLeaveResult result;
} Agent;

typedef struct Pool {
        char name[16];
        char *k_serving, *k_out, *k_addrs, *k_events, *k_alive, *prefix;
        unsigned node, slot;
        unsigned granted;
} Pool;

typedef struct Memory {
        long long used, clients, dataset, connected;
} Memory;

typedef struct Bench {
        bool cluster;
        unsigned agents, pools, conns_max, intervals, heartbeat_ms, max_unavailable, per_pool;
        Node nodes[MAX_NODES];
        unsigned n_nodes;
        unsigned short slot_owner[CLUSTER_SLOTS];
        char sha[_POOL_SCRIPT_MAX][41];
        Pool *pool;
        Agent *agent;
        Conn *conn;
        unsigned n_conns, masters;
        int epfd;
        size_t in_flight;
        unsigned lease_ms; /* 0: the agent's, 3 heartbeats */
        unsigned skipped; /* heartbeats not sent: the last one still in flight, as the agent does */
        unsigned protocol_errors;
        Memory base; /* the masters' before the fleet connects */
        json_object *json;
} Bench;

static double now_sec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* ---- cluster routing: the key's slot, pure ---- */

/* CRC16-CCITT (XMODEM), as the Redis Cluster specification defines it. */
static uint16_t crc16(const char *buf, size_t len) {
        uint16_t crc = 0;
        for (size_t i = 0; i < len; i++) {
                crc ^= (uint16_t) ((unsigned char) buf[i] << 8);
                for (int b = 0; b < 8; b++)
                        crc = crc & 0x8000 ? (uint16_t) ((crc << 1) ^ 0x1021) : (uint16_t) (crc << 1);
        }
        return crc;
}

/* The slot of a key: its hash tag's (the first "{...}" with something
 * inside), else the whole key's. */
static unsigned keyslot(const char *key) {
        size_t len = strlen(key);
        const char *open = memchr(key, '{', len);
        if (open) {
                const char *close = memchr(open + 1, '}', len - (size_t) (open + 1 - key));
                if (close && close > open + 1)
                        return crc16(open + 1, (size_t) (close - open - 1)) & (CLUSTER_SLOTS - 1);
        }
        return crc16(key, len) & (CLUSTER_SLOTS - 1);
}

/* CLUSTER SLOTS' reply [[start, end, [ip, port, id], replicas...]...] into
 * slot -> node index; every slot must have a known master. */
static int slots_decode(Bench *b, const redisReply *r) {
        for (unsigned s = 0; s < CLUSTER_SLOTS; s++)
                b->slot_owner[s] = USHRT_MAX;
        if (!r || r->type != REDIS_REPLY_ARRAY)
                return -EBADMSG;
        for (size_t i = 0; i < r->elements; i++) {
                const redisReply *e = r->element[i];
                if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
                    e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY ||
                    e->element[2]->elements < 2 || e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
                        return -EBADMSG;
                long long lo = e->element[0]->integer, hi = e->element[1]->integer;
                long long port = e->element[2]->element[1]->integer;
                unsigned n;
                for (n = 0; n < b->n_nodes && b->nodes[n].port != port; n++)
                        ;
                if (n == b->n_nodes || lo < 0 || hi >= CLUSTER_SLOTS || lo > hi)
                        return -EBADMSG;
                b->nodes[n].master = true;
                for (long long s = lo; s <= hi; s++)
                        b->slot_owner[s] = (unsigned short) n;
        }
        for (unsigned s = 0; s < CLUSTER_SLOTS; s++)
                if (b->slot_owner[s] == USHRT_MAX)
                        return -ENOENT;
        return 0;
}

/* ---- samples ---- */

static int samples_add(Samples *s, double v) {
        if (s->n == s->cap) {
                size_t cap = s->cap ? 2 * s->cap : 4096;
                double *nv = realloc(s->v, cap * sizeof *nv);
                if (!nv)
                        return -ENOMEM;
                s->v = nv;
                s->cap = cap;
        }
        s->v[s->n++] = v;
        return 0;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

/* Sorts in place; milliseconds. */
static double samples_pct_ms(Samples *s, double pct) {
        if (s->n == 0)
                return NAN;
        qsort(s->v, s->n, sizeof *s->v, cmp_double);
        return s->v[(size_t) floor(pct * (double) (s->n - 1))] * 1e3;
}

static void phase_reset(Bench *b) {
        for (unsigned n = 0; n < b->n_nodes; n++)
                for (int o = 0; o < _OP_MAX; o++)
                        b->nodes[n].s[o].n = 0, b->nodes[n].s[o].errors = 0;
}

/* ---- Redis processes: CPU and memory ---- */

static unsigned long long proc_cpu_ticks(int pid) {
        char path[64], buf[1024];
        unsigned long long ut = 0, st = 0;
        FILE *f;

        if (pid <= 0)
                return 0;
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        /* utime and stime are fields 14 and 15; the name (2) may hold spaces */
        char *p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
                return 0;
        return ut + st;
}

static redisContext *admin_connect(int port) {
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, (struct timeval) { 5, 0 });
        if (!c || c->err) {
                fprintf(stderr, "fleet_bench: cannot connect to 127.0.0.1:%d: %s\n", port, c ? c->errstr : "out of memory");
                if (c)
                        redisFree(c);
                return NULL;
        }
        redisSetTimeout(c, (struct timeval) { 30, 0 });
        return c;
}

static long long info_field(const char *info, const char *field) {
        size_t len = strlen(field);
        for (const char *p = info; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
                if (strncmp(p, field, len) == 0 && p[len] == ':')
                        return strtoll(p + len + 1, NULL, 10);
        return -1;
}

static int node_memory(const Node *n, Memory *ret) {
        redisContext *c = admin_connect(n->port);
        redisReply *r;

        if (!c)
                return -ECONNREFUSED;
        r = redisCommand(c, "INFO memory");
        if (r && r->type == REDIS_REPLY_STRING) {
                ret->used = info_field(r->str, "used_memory");
                ret->clients = info_field(r->str, "mem_clients_normal");
                ret->dataset = info_field(r->str, "used_memory_dataset");
        }
        freeReplyObject(r);
        r = redisCommand(c, "INFO clients");
        if (r && r->type == REDIS_REPLY_STRING)
                ret->connected = info_field(r->str, "connected_clients");
        freeReplyObject(r);
        redisFree(c);
        return ret->used >= 0 ? 0 : -EBADMSG;
}

/* The masters' sum: a replica holds a copy, per host we count the masters. */
static int masters_memory(const Bench *b, Memory *ret) {
        *ret = (Memory) {};
        for (unsigned n = 0; n < b->n_nodes; n++) {
                Memory m = { -1, -1, -1, -1 };
                if (!b->nodes[n].master)
                        continue;
                int r = node_memory(&b->nodes[n], &m);
                if (r < 0)
                        return r;
                ret->used += m.used;
                ret->clients += m.clients;
                ret->dataset += m.dataset;
                ret->connected += m.connected;
        }
        return 0;
}

/* ---- the connections ---- */

static int conn_want_write(Bench *b, unsigned i, bool on) {
        Conn *c = &b->conn[i];
        struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u64 = i };

        if (c->writing == on)
                return 0;
        c->writing = on;
        return epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0 ? -errno : 0;
}

static int conn_flush(Bench *b, unsigned i) {
        Conn *c = &b->conn[i];

        while (c->connected && c->out_off < c->out_len) {
                ssize_t k = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN)
                        return conn_want_write(b, i, true);
                if (k < 0)
                        return -errno;
                c->out_off += (size_t) k;
        }
        if (c->out_off == c->out_len)
                c->out_off = c->out_len = 0;
        return conn_want_write(b, i, false);
}

/* Queues one command for agent's connection and writes it now (another
 * agent's command on the same connection does not wait for it). */
static int conn_send(Bench *b, unsigned agent, Op op, int argc, const char **argv) {
        Conn *c = &b->conn[b->agent[agent].conn];
        char *cmd = NULL;
        int len = redisFormatCommandArgv(&cmd, argc, argv, NULL);

        if (len < 0)
                return -ENOMEM;
        if (c->out_len + (size_t) len > c->out_cap) {
                size_t cap = MAX(2 * c->out_cap, c->out_len + (size_t) len + 4096);
                char *nb = realloc(c->out, cap);
                if (!nb) {
                        redisFreeCommand(cmd);
                        return -ENOMEM;
                }
                c->out = nb;
                c->out_cap = cap;
        }
        memcpy(c->out + c->out_len, cmd, (size_t) len);
        c->out_len += (size_t) len;
        redisFreeCommand(cmd);
        if (c->q_len == c->q_cap) {
                size_t cap = c->q_cap ? 2 * c->q_cap : 4;
                Pending *nq = malloc(cap * sizeof *nq);
                if (!nq)
                        return -ENOMEM;
                for (size_t k = 0; k < c->q_len; k++)
                        nq[k] = c->q[(c->q_head + k) % c->q_cap];
                free(c->q);
                c->q = nq;
                c->q_cap = cap;
                c->q_head = 0;
        }
        c->q[(c->q_head + c->q_len++) % c->q_cap] = (Pending) { .agent = agent, .op = op, .t0 = now_sec() };
        b->in_flight++;
        return conn_flush(b, b->agent[agent].conn);
}

/* ---- the agent's scripts: one function per script, keys and arguments as
 * agent/routing/pool.c sends them ---- */

static void agent_names(unsigned agent, char host[static 16], char addr[static 32]) {
        snprintf(host, 16, "h%06u", agent);
        /* 127.x.y.z:8080: loopback-shaped, never dialled */
        snprintf(addr, 32, "127.%u.%u.%u:8080", (agent >> 16) & 255, (agent >> 8) & 255, (agent & 255) + 1);
}

/* The script with its KEYS as monkeyd builds them (pool_script_keys()). */
static int script_send(Bench *b, unsigned agent, Op op, PoolScript s, const char *host, int nargs,
                       const char **args) {
        const Pool *p = &b->pool[b->agent[agent].pool];
        _cleanup_(poolkeys_done) PoolKeys keys = {};
        const char *k[POOL_SCRIPT_KEYS_MAX], *argv[3 + POOL_SCRIPT_KEYS_MAX + 16];
        char nk[16];
        int n, argc;

        if (poolkeys_new(p->name, host, &keys) < 0)
                return -ENOMEM;
        n = pool_script_keys(s, &keys, NULL, k);
        if (n < 0)
                return n;
        argc = evalsha_argv(b->sha[s], n, k, nargs, args, nk, argv, ELEMENTSOF(argv));
        return argc < 0 ? argc : conn_send(b, agent, op, argc, argv);
}

static int send_join(Bench *b, unsigned agent) {
        char host[16], addr[32];

        agent_names(agent, host, addr);
        const char *args[] = { addr, host, "{\"type\":\"join\"}" };
        return script_send(b, agent, OP_JOIN, POOL_SCRIPT_JOIN, host, ELEMENTSOF(args), args);
}

static int send_heartbeat(Bench *b, unsigned agent) {
        char host[16], addr[32], lease[24];

        agent_names(agent, host, addr);
        /* [pool] lease: 3 heartbeats (15 s at the default 5 s); the herd's
         * reset takes a long one */
        snprintf(lease, sizeof lease, "%u", b->lease_ms ? b->lease_ms : 3 * b->heartbeat_ms);
        const char *args[] = { lease, addr, host };
        return script_send(b, agent, OP_HEARTBEAT, POOL_SCRIPT_HEARTBEAT, host, ELEMENTSOF(args), args);
}

/* The summary each heartbeat sends for a pool above 256 members. */
static int send_view(Bench *b, unsigned agent) {
        const Pool *p = &b->pool[b->agent[agent].pool];
        char host[16], addr[32], seed_max[16];

        agent_names(agent, host, addr);
        snprintf(seed_max, sizeof seed_max, "%u", b->max_unavailable);
        const char *args[] = { p->prefix, "summary", "1", seed_max, host };
        return script_send(b, agent, OP_VIEW, POOL_SCRIPT_VIEW, host, ELEMENTSOF(args), args);
}

/* A budget-checked leave, as send_leave(): min_serving 1, out_max 30 min,
 * asking TTL 3 heartbeats, not yet out (-1). */
static int send_leave(Bench *b, unsigned agent) {
        const Pool *p = &b->pool[b->agent[agent].pool];
        char host[16], addr[32], maxu[16], asking[24];

        agent_names(agent, host, addr);
        snprintf(maxu, sizeof maxu, "%u", b->max_unavailable);
        snprintf(asking, sizeof asking, "%u", 3 * b->heartbeat_ms);
        const char *args[] = { addr, host, "1", maxu, OUT_TTL_MS, POOL_LEAVE_MODE_BUDGET, "{\"type\":\"leave\"}",
                               p->prefix, "overload", asking, "-1" };
        return script_send(b, agent, OP_LEAVE, POOL_SCRIPT_LEAVE, host, ELEMENTSOF(args), args);
}

/* ---- replies ---- */

static int on_reply(Bench *b, Conn *c, redisReply *r) {
        Pending pd;
        Agent *a;
        bool error = r->type == REDIS_REPLY_ERROR;

        if (c->q_len == 0) {
                b->protocol_errors++;
                return -EPROTO;
        }
        pd = c->q[c->q_head];
        c->q_head = (c->q_head + 1) % c->q_cap;
        c->q_len--;
        b->in_flight--;
        a = &b->agent[pd.agent];
        if (pd.op == OP_HEARTBEAT)
                a->hb_in_flight = false;
        if (pd.op == OP_VIEW)
                a->view_in_flight = false;
        if (pd.op == OP_LEAVE && !error) {
                PoolLeaveReply lr = {};
                if (pool_leave_reply_decode(r, &lr) == 0) {
                        a->result = lr.result;
                        if (lr.result == POOL_LEAVE_LEFT)
                                b->pool[a->pool].granted++;
                } else
                        error = true;
                pool_leave_reply_done(&lr);
        }
        Samples *s = &b->nodes[c->node].s[pd.op];
        if (error) {
                if (s->errors++ < 3)
                        fprintf(stderr, "fleet_bench: %s: %s\n", op_name[pd.op],
                                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        }
        return samples_add(s, now_sec() - pd.t0);
}

static int conn_read(Bench *b, unsigned i) {
        Conn *c = &b->conn[i];
        char buf[65536];

        for (;;) {
                ssize_t k = read(c->fd, buf, sizeof buf);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN)
                        break;
                if (k < 0)
                        return -errno;
                if (k == 0) {
                        fprintf(stderr, "fleet_bench: Redis on port %d closed a connection\n", b->nodes[c->node].port);
                        return -ECONNRESET;
                }
                if (redisReaderFeed(c->reader, buf, (size_t) k) != REDIS_OK)
                        return -ENOMEM;
                if ((size_t) k < sizeof buf)
                        break;
        }
        for (;;) {
                void *reply = NULL;
                if (redisReaderGetReply(c->reader, &reply) != REDIS_OK)
                        return -EBADMSG;
                if (!reply)
                        return 0;
                int r = on_reply(b, c, reply);
                freeReplyObject(reply);
                if (r < 0)
                        return r;
        }
}

/* One round of the loop: waits at most timeout_ms. */
static int loop_once(Bench *b, int timeout_ms) {
        struct epoll_event ev[512];
        int n = epoll_wait(b->epfd, ev, ELEMENTSOF(ev), timeout_ms);

        if (n < 0)
                return errno == EINTR ? 0 : -errno;
        for (int k = 0; k < n; k++) {
                unsigned i = (unsigned) ev[k].data.u64;
                int r = 0;
                if (ev[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                        r = conn_read(b, i);
                if (r >= 0 && (ev[k].events & EPOLLOUT))
                        r = conn_flush(b, i);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Waits for every reply, bounded. */
static int drain(Bench *b, double until) {
        while (b->in_flight > 0) {
                if (now_sec() > until) {
                        fprintf(stderr, "fleet_bench: %zu replies still missing at the phase's time cap\n", b->in_flight);
                        return -ETIMEDOUT;
                }
                int r = loop_once(b, 100);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int fd_nonblock_socket(unsigned i) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
        struct sockaddr_in src = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001u + i % SOURCE_ADDRS) };

        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* the port is chosen at connect(), per destination: more room */
        (void) setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *) &src, sizeof src) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* Opens every connection, CONNECT_WINDOW at a time. */
static int connect_all(Bench *b) {
        unsigned next = 0, done = 0, connecting = 0;
        double t0 = now_sec();

        while (done < b->n_conns) {
                while (next < b->n_conns && connecting < CONNECT_WINDOW) {
                        Conn *c = &b->conn[next];
                        struct sockaddr_in dst = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001u),
                                                   .sin_port = htons((uint16_t) b->nodes[c->node].port) };
                        struct epoll_event ev = { .events = EPOLLOUT, .data.u64 = next };
                        c->fd = fd_nonblock_socket(next);
                        if (c->fd < 0) {
                                fprintf(stderr, "fleet_bench: socket %u: %s\n", next, strerror(-c->fd));
                                return c->fd;
                        }
                        if (connect(c->fd, (struct sockaddr *) &dst, sizeof dst) < 0 && errno != EINPROGRESS) {
                                fprintf(stderr, "fleet_bench: connect %u: %m\n", next);
                                return -errno;
                        }
                        if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
                                return -errno;
                        c->writing = true;
                        next++;
                        connecting++;
                }
                struct epoll_event ev[512];
                int n = epoll_wait(b->epfd, ev, ELEMENTSOF(ev), 100);
                if (n < 0 && errno != EINTR)
                        return -errno;
                for (int k = 0; k < n; k++) {
                        unsigned i = (unsigned) ev[k].data.u64;
                        Conn *c = &b->conn[i];
                        int err = 0;
                        socklen_t len = sizeof err;
                        if (c->connected)
                                continue;
                        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
                                fprintf(stderr, "fleet_bench: connection %u to port %d: %s\n", i,
                                        b->nodes[c->node].port, strerror(err ? err : errno));
                                return -(err ? err : errno);
                        }
                        c->connected = true;
                        c->writing = true; /* so the next call switches EPOLLOUT off */
                        int r = conn_want_write(b, i, false);
                        if (r < 0)
                                return r;
                        connecting--;
                        done++;
                }
                if (now_sec() - t0 > CONNECT_CAP_SEC) {
                        fprintf(stderr, "fleet_bench: %u of %u connections after %.0f s: giving up\n", done, b->n_conns,
                                CONNECT_CAP_SEC);
                        return -ETIMEDOUT;
                }
        }
        return 0;
}

/* ---- reporting ---- */

static json_object *op_stats(Bench *b, Op op, double elapsed, bool per_node) {
        Samples all = {};
        json_object *o = json_object_new_object();
        json_object *nodes = json_object_new_array();
        unsigned errors = 0;

        for (unsigned n = 0; n < b->n_nodes; n++) {
                Samples *s = &b->nodes[n].s[op];
                if (!b->nodes[n].master)
                        continue;
                for (size_t k = 0; k < s->n; k++)
                        (void) samples_add(&all, s->v[k]);
                errors += s->errors;
                if (per_node) {
                        json_object *j = json_object_new_object();
                        json_object_object_add(j, "port", json_object_new_int(b->nodes[n].port));
                        json_object_object_add(j, "ops", json_object_new_int64((int64_t) s->n));
                        json_object_object_add(j, "ops_s", json_object_new_double(round(s->n / elapsed)));
                        json_object_object_add(j, "p50_ms", json_object_new_double(samples_pct_ms(s, 0.50)));
                        json_object_object_add(j, "p99_ms", json_object_new_double(samples_pct_ms(s, 0.99)));
                        json_object_array_add(nodes, j);
                }
        }
        json_object_object_add(o, "op", json_object_new_string(op_name[op]));
        json_object_object_add(o, "ops", json_object_new_int64((int64_t) all.n));
        json_object_object_add(o, "ops_s", json_object_new_double(round(all.n / elapsed)));
        json_object_object_add(o, "p50_ms", json_object_new_double(samples_pct_ms(&all, 0.50)));
        json_object_object_add(o, "p99_ms", json_object_new_double(samples_pct_ms(&all, 0.99)));
        json_object_object_add(o, "max_ms", json_object_new_double(samples_pct_ms(&all, 1.0)));
        json_object_object_add(o, "errors", json_object_new_int((int) errors));
        json_object_object_add(o, "nodes", nodes);
        printf("  %-16s %8zu ops %8.0f ops/s  p50 %7.3f ms  p99 %7.3f ms  max %7.1f ms  errors %u\n", op_name[op],
               all.n, all.n / elapsed, samples_pct_ms(&all, 0.50), samples_pct_ms(&all, 0.99),
               samples_pct_ms(&all, 1.0), errors);
        free(all.v);
        return o;
}

/* Every master's ops/s, p99 (all operations of the phase) and CPU. */
static json_object *shard_stats(Bench *b, double elapsed) {
        json_object *arr = json_object_new_array();

        for (unsigned n = 0; n < b->n_nodes; n++) {
                Node *nd = &b->nodes[n];
                Samples all = {};
                unsigned long long ticks = proc_cpu_ticks(nd->pid) - nd->cpu_ticks0;
                double cpu = nd->pid ? 100.0 * (double) ticks / (double) sysconf(_SC_CLK_TCK) / elapsed : NAN;
                json_object *j = json_object_new_object();

                for (int o = 0; o < _OP_MAX; o++)
                        for (size_t k = 0; k < nd->s[o].n; k++)
                                (void) samples_add(&all, nd->s[o].v[k]);
                json_object_object_add(j, "port", json_object_new_int(nd->port));
                json_object_object_add(j, "master", json_object_new_boolean(nd->master));
                json_object_object_add(j, "connections", json_object_new_int((int) nd->conns));
                json_object_object_add(j, "ops_s", json_object_new_double(round(all.n / elapsed)));
                json_object_object_add(j, "p50_ms", json_object_new_double(samples_pct_ms(&all, 0.50)));
                json_object_object_add(j, "p99_ms", json_object_new_double(samples_pct_ms(&all, 0.99)));
                json_object_object_add(j, "cpu_pct", json_object_new_double(cpu));
                printf("  node :%d %-7s %6u conns %8.0f ops/s  p99 %7.3f ms  Redis CPU %5.1f %% of a core\n",
                       nd->port, nd->master ? "master" : "replica", nd->conns, all.n / elapsed,
                       samples_pct_ms(&all, 0.99), cpu);
                json_object_array_add(arr, j);
                free(all.v);
        }
        return arr;
}

static void cpu_mark(Bench *b) {
        for (unsigned n = 0; n < b->n_nodes; n++)
                b->nodes[n].cpu_ticks0 = proc_cpu_ticks(b->nodes[n].pid);
}

static double self_cpu_sec(void) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return (double) ru.ru_utime.tv_sec + (double) ru.ru_stime.tv_sec +
               ((double) ru.ru_utime.tv_usec + (double) ru.ru_stime.tv_usec) / 1e6;
}

static json_object *phase_json(Bench *b, const char *name, double elapsed, double self_cpu, const Op *ops, size_t n_ops) {
        json_object *j = json_object_new_object(), *arr = json_object_new_array();

        printf("%s: %.2f s, the bench itself %.0f %% of a core\n", name, elapsed, 100.0 * self_cpu / elapsed);
        json_object_object_add(j, "seconds", json_object_new_double(elapsed));
        json_object_object_add(j, "bench_cpu_pct", json_object_new_double(100.0 * self_cpu / elapsed));
        for (size_t k = 0; k < n_ops; k++)
                json_object_array_add(arr, op_stats(b, ops[k], elapsed, b->cluster));
        json_object_object_add(j, "ops", arr);
        json_object_object_add(j, "shards", shard_stats(b, elapsed));
        return j;
}

/* ---- the phases ---- */

static int phase_join(Bench *b) {
        double t0 = now_sec(), c0 = self_cpu_sec();
        int r;

        phase_reset(b);
        cpu_mark(b);
        for (unsigned a = 0; a < b->agents; a++) {
                r = send_join(b, a);
                if (r < 0)
                        return r;
        }
        r = drain(b, t0 + BURST_CAP_SEC);
        if (r < 0)
                return r;
        const Op ops[] = { OP_JOIN };
        json_object_object_add(b->json, "join",
                               phase_json(b, "join, the whole fleet at once", now_sec() - t0, self_cpu_sec() - c0, ops, 1));
        return 0;
}

/* The order agents beat in: a fixed permutation, so a pool's agents are
 * spread over the interval as independent timers would be. */
static unsigned beat_order(const Bench *b, unsigned j) {
        unsigned stride = 7919; /* a prime */
        if (b->agents % stride == 0)
                stride = 1;
        return (unsigned) (((unsigned long long) j * stride) % b->agents);
}

static int phase_heartbeats(Bench *b) {
        unsigned long long total = (unsigned long long) b->agents * b->intervals, next = 0;
        double t0 = now_sec(), c0 = self_cpu_sec(), step = b->heartbeat_ms / 1e3 / b->agents;
        double cap = t0 + b->intervals * b->heartbeat_ms / 1e3 + BURST_CAP_SEC;
        int r;

        phase_reset(b);
        cpu_mark(b);
        b->skipped = 0;
        while (next < total) {
                double now = now_sec();
                if (now > cap)
                        return -ETIMEDOUT;
                for (; next < total && t0 + (double) next * step <= now; next++) {
                        unsigned a = beat_order(b, (unsigned) (next % b->agents));
                        /* as send_heartbeat(): nothing new while the last one is out */
                        if (b->agent[a].hb_in_flight)
                                b->skipped++;
                        else {
                                r = send_heartbeat(b, a);
                                if (r < 0)
                                        return r;
                                b->agent[a].hb_in_flight = true;
                        }
                        if (!b->agent[a].view_in_flight) {
                                r = send_view(b, a);
                                if (r < 0)
                                        return r;
                                b->agent[a].view_in_flight = true;
                        }
                }
                double wait = next < total ? t0 + (double) next * step - now_sec() : 0;
                r = loop_once(b, wait > 0 ? (int) ceil(wait * 1e3) : 0);
                if (r < 0)
                        return r;
        }
        r = drain(b, cap);
        if (r < 0)
                return r;
        double elapsed = now_sec() - t0;
        const Op ops[] = { OP_HEARTBEAT, OP_VIEW };
        char name[96];
        snprintf(name, sizeof name, "heartbeats, %u intervals of %u ms", b->intervals, b->heartbeat_ms);
        json_object *j = phase_json(b, name, elapsed, self_cpu_sec() - c0, ops, ELEMENTSOF(ops));
        json_object_object_add(j, "skipped", json_object_new_int((int) b->skipped));
        json_object_object_add(b->json, "heartbeats", j);

        /* Memory with the fleet connected and registered, less what the
         * masters held before the first agent connected. */
        Memory m = {};
        r = masters_memory(b, &m);
        if (r < 0)
                return r;
        long long used = m.used - b->base.used, clients = m.clients - b->base.clients;
        long long dataset = m.dataset - b->base.dataset;
        json_object *mem = json_object_new_object();
        json_object_object_add(mem, "used_memory", json_object_new_int64(m.used));
        json_object_object_add(mem, "used_memory_before", json_object_new_int64(b->base.used));
        json_object_object_add(mem, "mem_clients_normal", json_object_new_int64(m.clients));
        json_object_object_add(mem, "used_memory_dataset", json_object_new_int64(m.dataset));
        json_object_object_add(mem, "connected_clients", json_object_new_int64(m.connected));
        json_object_object_add(mem, "bytes_per_agent", json_object_new_double(round((double) used / b->agents)));
        json_object_object_add(mem, "client_bytes_per_agent", json_object_new_double(round((double) clients / b->agents)));
        json_object_object_add(mem, "dataset_bytes_per_agent", json_object_new_double(round((double) dataset / b->agents)));
        json_object_object_add(b->json, "memory", mem);
        printf("memory (masters): used_memory %.1f MB (%.1f MB before the fleet) for %u agents: %.0f bytes per "
               "agent, of which clients %.0f, dataset %.0f; %lld clients connected\n",
               m.used / 1048576.0, b->base.used / 1048576.0, b->agents, (double) used / b->agents,
               (double) clients / b->agents, (double) dataset / b->agents, m.connected);
        return 0;
}

/* Counts what Redis holds for one pool. */
static int pool_counts(const Bench *b, const Pool *p, long long *serving, long long *out, long long *alive) {
        redisContext *c = admin_connect(b->nodes[p->node].port);
        redisReply *r;

        if (!c)
                return -ECONNREFUSED;
        redisAppendCommand(c, "SCARD %s", p->k_serving);
        redisAppendCommand(c, "ZCARD %s", p->k_out);
        redisAppendCommand(c, "ZCARD %s", p->k_alive);
        long long *v[] = { serving, out, alive };
        for (size_t k = 0; k < ELEMENTSOF(v); k++) {
                r = NULL;
                *v[k] = redisGetReply(c, (void **) &r) == REDIS_OK && r && r->type == REDIS_REPLY_INTEGER ? r->integer
                                                                                                        : -1;
                freeReplyObject(r);
        }
        redisFree(c);
        return 0;
}

static int phase_herd(Bench *b) {
        unsigned expected = MIN(b->max_unavailable, b->per_pool - 1); /* min_serving 1 keeps one */
        unsigned wrong = 0, granted = 0, answered = 0;
        double t0, c0, elapsed;
        int r;

        /* Every agent renews its lease first, a long one: a heartbeat phase
         * that fell behind (Redis or this machine saturated: its skipped
         * count says so) must not change the herd's count. Not timed. */
        b->lease_ms = 600000;
        for (unsigned a = 0; a < b->agents; a++) {
                r = send_heartbeat(b, a);
                if (r < 0)
                        return r;
        }
        b->lease_ms = 0;
        r = drain(b, now_sec() + BURST_CAP_SEC);
        if (r < 0)
                return r;
        /* Before: every agent serving and alive, none out in any pool. */
        for (unsigned i = 0; i < b->pools; i++) {
                long long serving, out, alive;
                r = pool_counts(b, &b->pool[i], &serving, &out, &alive);
                if (r < 0)
                        return r;
                if (serving != b->per_pool || out != 0 || alive != b->per_pool) {
                        fprintf(stderr, "fleet_bench: before the herd, pool %s has %lld serving, %lld out, %lld alive\n",
                                b->pool[i].name, serving, out, alive);
                        return -EIO;
                }
                b->pool[i].granted = 0;
        }
        for (unsigned a = 0; a < b->agents; a++)
                b->agent[a].result = _POOL_LEAVE_RESULT_INVALID;

        phase_reset(b);
        cpu_mark(b);
        t0 = now_sec();
        c0 = self_cpu_sec();
        for (unsigned a = 0; a < b->agents; a++) {
                r = send_leave(b, a);
                if (r < 0)
                        return r;
        }
        double sent = now_sec() - t0;
        r = drain(b, t0 + BURST_CAP_SEC);
        elapsed = now_sec() - t0;
        if (r < 0)
                return r;
        const Op ops[] = { OP_LEAVE };
        char name[128];
        snprintf(name, sizeof name, "herd, all %u agents of %u pools ask at once", b->agents, b->pools);
        json_object *j = phase_json(b, name, elapsed, self_cpu_sec() - c0, ops, 1);
        json_object_object_add(j, "all_sent_ms", json_object_new_double(sent * 1e3));
        json_object_object_add(j, "all_answered_ms", json_object_new_double(elapsed * 1e3));

        /* Count twice: the answers the agents got, and what Redis holds. */
        for (unsigned a = 0; a < b->agents; a++)
                answered += b->agent[a].result != _POOL_LEAVE_RESULT_INVALID;
        for (unsigned i = 0; i < b->pools; i++) {
                const Pool *p = &b->pool[i];
                long long serving, out, alive;
                r = pool_counts(b, p, &serving, &out, &alive);
                if (r < 0)
                        return r;
                granted += p->granted;
                if (p->granted != expected || out != expected || serving != b->per_pool - expected) {
                        if (wrong++ < 5)
                                fprintf(stderr, "fleet_bench: pool %s granted %u (expected %u), Redis holds %lld out, "
                                        "%lld serving\n", p->name, p->granted, expected, out, serving);
                }
        }
        bool right = wrong == 0 && answered == b->agents;
        json_object_object_add(j, "expected_per_pool", json_object_new_int((int) expected));
        json_object_object_add(j, "granted", json_object_new_int((int) granted));
        json_object_object_add(j, "pools_wrong", json_object_new_int((int) wrong));
        json_object_object_add(j, "answered", json_object_new_int((int) answered));
        json_object_object_add(j, "right", json_object_new_boolean(right));
        json_object_object_add(b->json, "herd", j);
        printf("herd: granted %u in %u pools (expected %u per pool, max_unavailable %u): %s; %u of %u answered, "
               "%u pools wrong; all sent in %.0f ms, all answered in %.0f ms\n",
               granted, b->pools, expected, b->max_unavailable, right ? "OK" : "WRONG", answered, b->agents, wrong,
               sent * 1e3, elapsed * 1e3);
        return right ? 0 : -EIO;
}

/* ---- set-up ---- */

static int setup_redis(Bench *b) {
        for (unsigned n = 0; n < b->n_nodes; n++) {
                redisContext *c = admin_connect(b->nodes[n].port);
                redisReply *r;
                if (!c)
                        return -ECONNREFUSED;
                if (b->cluster && n == 0) {
                        r = redisCommand(c, "CLUSTER SLOTS");
                        int k = slots_decode(b, r);
                        freeReplyObject(r);
                        if (k < 0) {
                                fprintf(stderr, "fleet_bench: CLUSTER SLOTS does not cover every slot with a node "
                                                "given: %s\n", strerror(-k));
                                redisFree(c);
                                return k;
                        }
                } else if (!b->cluster) {
                        b->nodes[n].master = true;
                        for (unsigned s = 0; s < CLUSTER_SLOTS; s++)
                                b->slot_owner[s] = (unsigned short) n;
                }
                redisFree(c);
        }
        for (unsigned n = 0; n < b->n_nodes; n++) {
                redisContext *c;
                if (!b->nodes[n].master)
                        continue;
                c = admin_connect(b->nodes[n].port);
                if (!c)
                        return -ECONNREFUSED;
                freeReplyObject(redisCommand(c, "FLUSHALL"));
                for (int s = 0; s < _POOL_SCRIPT_MAX; s++) {
                        redisReply *r = redisCommand(c, "SCRIPT LOAD %s", pool_script_text[s]);
                        int k = pool_script_load_reply_decode(r, b->sha[s]);
                        freeReplyObject(r);
                        if (k < 0) {
                                fprintf(stderr, "fleet_bench: SCRIPT LOAD %s on port %d failed\n",
                                        pool_script_to_string(s), b->nodes[n].port);
                                redisFree(c);
                                return k;
                        }
                }
                redisFree(c);
        }
        /* Pools on their slots' masters; our keyslot() checked against Redis's. */
        for (unsigned i = 0; i < b->pools; i++) {
                Pool *p = &b->pool[i];
                if (b->cluster) {
                        redisContext *c = admin_connect(b->nodes[0].port);
                        redisReply *r = c ? redisCommand(c, "CLUSTER KEYSLOT %s", p->k_serving) : NULL;
                        long long slot = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
                        freeReplyObject(r);
                        if (c)
                                redisFree(c);
                        if (slot != (long long) p->slot) {
                                fprintf(stderr, "fleet_bench: keyslot(%s) = %u, Redis says %lld\n", p->k_serving,
                                        p->slot, slot);
                                return -EBADMSG;
                        }
                }
                p->node = b->slot_owner[p->slot];
        }
        /* Connections: each master gets its share of --conns, in proportion
         * to the agents whose pools it owns; an agent uses one of its
         * master's, so with conns >= agents each agent has its own. */
        unsigned agents_on[MAX_NODES] = {};
        for (unsigned i = 0; i < b->pools; i++)
                agents_on[b->pool[i].node] += b->per_pool;
        b->n_conns = 0;
        for (unsigned n = 0; n < b->n_nodes; n++) {
                Node *nd = &b->nodes[n];
                nd->first_conn = b->n_conns;
                nd->conns = agents_on[n] == 0 ? 0
                                              : MAX(1u, (unsigned) ((unsigned long long) b->conns_max * agents_on[n] /
                                                                    b->agents));
                nd->conns = MIN(nd->conns, agents_on[n]);
                b->n_conns += nd->conns;
        }
        b->conn = calloc(b->n_conns, sizeof *b->conn);
        if (!b->conn)
                return -ENOMEM;
        for (unsigned n = 0; n < b->n_nodes; n++)
                for (unsigned k = 0; k < b->nodes[n].conns; k++) {
                        Conn *c = &b->conn[b->nodes[n].first_conn + k];
                        c->fd = -1;
                        c->node = n;
                        c->reader = redisReaderCreate();
                        if (!c->reader)
                                return -ENOMEM;
                }
        unsigned seen[MAX_NODES] = {};
        for (unsigned a = 0; a < b->agents; a++) {
                Agent *ag = &b->agent[a];
                Node *nd = &b->nodes[b->pool[ag->pool].node];
                ag->conn = nd->first_conn + seen[b->pool[ag->pool].node]++ % nd->conns;
        }
        b->masters = 0;
        for (unsigned n = 0; n < b->n_nodes; n++)
                b->masters += b->nodes[n].master;
        printf("%u agents in %u pools over %u connections to %u master(s)\n", b->agents, b->pools, b->n_conns,
               b->masters);
        return 0;
}

static int raise_nofile(unsigned need) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        if (rl.rlim_cur < need) {
                fprintf(stderr, "fleet_bench: %u connections need %u file descriptors, the hard limit is %llu: "
                                "ask for fewer with --conns\n", need - 64, need, (unsigned long long) rl.rlim_cur);
                return -EMFILE;
        }
        return 0;
}

static void bench_free(Bench *b) {
        for (unsigned i = 0; b->conn && i < b->n_conns; i++) {
                if (b->conn[i].fd >= 0)
                        close(b->conn[i].fd);
                if (b->conn[i].reader)
                        redisReaderFree(b->conn[i].reader);
                free(b->conn[i].out);
                free(b->conn[i].q);
        }
        for (unsigned i = 0; b->pool && i < b->pools; i++) {
                Pool *p = &b->pool[i];
                free(p->k_serving), free(p->k_out), free(p->k_addrs), free(p->k_events), free(p->k_alive);
                free(p->prefix);
        }
        for (unsigned n = 0; n < b->n_nodes; n++)
                for (int o = 0; o < _OP_MAX; o++)
                        free(b->nodes[n].s[o].v);
        free(b->conn);
        free(b->pool);
        free(b->agent);
        if (b->epfd >= 0)
                close(b->epfd);
        json_object_put(b->json);
}

static int usage(void) {
        fprintf(stderr, "usage: fleet_bench --node PORT[:PID]... [--cluster] [--agents N] [--pools P] [--conns C]\n"
                        "                   [--intervals K] [--heartbeat-ms MS] [--max-unavailable M] [--json FILE]\n");
        return 2;
}

int main(int argc, char *argv[]) {
        Bench b = { .agents = 10000, .pools = 1, .intervals = 3, .heartbeat_ms = 5000, .max_unavailable = 10,
                    .epfd = -1 };
        const char *json_path = NULL;
        int r;

        for (int i = 1; i < argc; i++) {
                char *end = NULL;
                unsigned long v = 0;
                if (streq(argv[i], "--cluster")) {
                        b.cluster = true;
                        continue;
                }
                if (i + 1 >= argc)
                        return usage();
                if (streq(argv[i], "--json")) {
                        json_path = argv[++i];
                        continue;
                }
                if (streq(argv[i], "--node")) {
                        int port = 0, pid = 0;
                        if (b.n_nodes == MAX_NODES || sscanf(argv[i + 1], "%d:%d", &port, &pid) < 1 || port <= 0 ||
                            port > 65535)
                                return usage();
                        b.nodes[b.n_nodes++] = (Node) { .port = port, .pid = pid };
                        i++;
                        continue;
                }
                v = strtoul(argv[i + 1], &end, 10);
                if (!end || *end || v == 0 || v > 1000000)
                        return usage();
                if (streq(argv[i], "--agents"))
                        b.agents = (unsigned) v;
                else if (streq(argv[i], "--pools"))
                        b.pools = (unsigned) v;
                else if (streq(argv[i], "--conns"))
                        b.conns_max = (unsigned) v;
                else if (streq(argv[i], "--intervals") && v <= 100)
                        b.intervals = (unsigned) v;
                else if (streq(argv[i], "--heartbeat-ms") && v <= 60000)
                        b.heartbeat_ms = (unsigned) v;
                else if (streq(argv[i], "--max-unavailable") && v <= POOLKEYS_MAX_UNAVAILABLE_MAX)
                        b.max_unavailable = (unsigned) v;
                else
                        return usage();
                i++;
        }
        if (b.n_nodes == 0 || b.pools > b.agents || b.agents % b.pools != 0 || b.agents / b.pools < 2) {
                fprintf(stderr, "fleet_bench: need a --node, and --agents a multiple of --pools with 2 or more per pool\n");
                return 2;
        }
        b.per_pool = b.agents / b.pools;
        if (b.conns_max == 0 || b.conns_max > b.agents)
                b.conns_max = b.agents;

        b.json = json_object_new_object();
        b.pool = calloc(b.pools, sizeof *b.pool);
        b.agent = calloc(b.agents, sizeof *b.agent);
        if (!b.json || !b.pool || !b.agent) {
                r = -ENOMEM;
                goto finish;
        }
        for (unsigned i = 0; i < b.pools; i++) {
                Pool *p = &b.pool[i];
                snprintf(p->name, sizeof p->name, b.pools == 1 ? "bench" : "p%03u", i);
                if (poolkeys_key(p->name, POOL_KEY_SERVING, NULL, &p->k_serving) < 0 ||
                    poolkeys_key(p->name, POOL_KEY_OUT, NULL, &p->k_out) < 0 ||
                    poolkeys_key(p->name, POOL_KEY_ADDRS, NULL, &p->k_addrs) < 0 ||
                    poolkeys_key(p->name, POOL_KEY_EVENTS, NULL, &p->k_events) < 0 ||
                    poolkeys_key(p->name, POOL_KEY_ALIVE, NULL, &p->k_alive) < 0 ||
                    poolkeys_key(p->name, POOL_KEY_PREFIX, NULL, &p->prefix) < 0) {
                        r = -ENOMEM;
                        goto finish;
                }
                p->slot = keyslot(p->k_serving);
        }
        for (unsigned a = 0; a < b.agents; a++)
                b.agent[a].pool = a / b.per_pool;

        r = setup_redis(&b);
        if (r < 0)
                goto finish;
        r = raise_nofile(b.n_conns + 64);
        if (r < 0)
                goto finish;
        b.epfd = epoll_create1(EPOLL_CLOEXEC);
        if (b.epfd < 0) {
                r = -errno;
                goto finish;
        }
        r = masters_memory(&b, &b.base);
        if (r < 0)
                goto finish;
        double t0 = now_sec();
        r = connect_all(&b);
        if (r < 0)
                goto finish;
        printf("connected %u sockets in %.2f s\n", b.n_conns, now_sec() - t0);

        json_object *shape = json_object_new_object();
        json_object_object_add(shape, "agents", json_object_new_int((int) b.agents));
        json_object_object_add(shape, "pools", json_object_new_int((int) b.pools));
        json_object_object_add(shape, "connections", json_object_new_int((int) b.n_conns));
        json_object_object_add(shape, "masters", json_object_new_int((int) b.masters));
        json_object_object_add(shape, "nodes", json_object_new_int((int) b.n_nodes));
        json_object_object_add(shape, "cluster", json_object_new_boolean(b.cluster));
        json_object_object_add(shape, "heartbeat_ms", json_object_new_int((int) b.heartbeat_ms));
        json_object_object_add(shape, "intervals", json_object_new_int((int) b.intervals));
        json_object_object_add(shape, "max_unavailable", json_object_new_int((int) b.max_unavailable));
        json_object_object_add(shape, "goal_p99_ms", json_object_new_double(GOAL_P99_MS));
        json_object_object_add(shape, "connect_s", json_object_new_double(now_sec() - t0));
        /* The machine is shared: how busy it was, next to the figures. */
        double load[3] = {};
        if (getloadavg(load, 3) == 3)
                json_object_object_add(shape, "loadavg_1m", json_object_new_double(load[0]));
        json_object_object_add(b.json, "shape", shape);

        r = phase_join(&b);
        if (r >= 0)
                r = phase_heartbeats(&b);
        if (r >= 0)
                r = phase_herd(&b);
finish:
        if (r < 0)
                fprintf(stderr, "fleet_bench: failed: %s\n", strerror(-r));
        json_object_object_add(b.json, "ok", json_object_new_boolean(r >= 0));
        if (json_path && b.json &&
            json_object_to_file_ext(json_path, b.json, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE) < 0) {
                fprintf(stderr, "fleet_bench: cannot write %s\n", json_path);
                r = -EIO;
        }
        bench_free(&b);
        return r < 0 ? 1 : 0;
}
