/* Fleet-scale cost of the pool: N simulated agents (default 10,000) against
 * one redis-server, replaying the agent's own Lua scripts (pool_scripts.h)
 * from C concurrent clients, as many agents' heartbeats and budget checks
 * would arrive. Prints one Markdown row per operation: ops/s, p50, p99.
 * Bounded: a fixed number of operations per phase and a wall-clock cap. */
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <time.h>

#include "macro.h"
#include "pool_scripts.h"

#define PHASE_CAP_SEC 60.0

typedef struct Bench {
        const char *host;
        int port;
        unsigned agents, clients, ops;
        char sha[_POOL_SCRIPT_MAX][41];
        char *k_serving, *k_out, *k_addrs, *k_events, *prefix;
} Bench;

typedef enum Op { OP_HEARTBEAT, OP_LEAVE, OP_JOIN, OP_VIEW, OP_VIEW_FULL, _OP_MAX } Op;
static const char *const op_name[_OP_MAX] = {
        "heartbeat (lease renewal)", "budget-checked leave", "join",
        "status summary (each heartbeat)", "member list (monkeyctl pool)",
};

typedef struct Worker {
        const Bench *b;
        unsigned id;
        Op op;
        unsigned n;          /* operations to run */
        double *lat;         /* seconds, n entries */
        unsigned done, failed;
        unsigned granted;
} Worker;

static double now_sec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static void host_name(unsigned i, char *buf, size_t size) {
        snprintf(buf, size, "h%05u", i);
}

static void host_addr(unsigned i, char *buf, size_t size) {
        /* 127.x.y.z:8080: loopback-shaped, never dialled. */
        snprintf(buf, size, "127.%u.%u.%u:8080", (i >> 16) & 255, (i >> 8) & 255, (i & 255) + 1);
}

static redisReply *run_script(redisContext *c, const Bench *b, PoolScript s, int nkeys, const char **keys,
                              int nargs, const char **args) {
        const char *argv[24];
        size_t argc = 0;
        char nk[16];

        snprintf(nk, sizeof nk, "%d", nkeys);
        argv[argc++] = "EVALSHA";
        argv[argc++] = b->sha[s];
        argv[argc++] = nk;
        for (int i = 0; i < nkeys; i++)
                argv[argc++] = keys[i];
        for (int i = 0; i < nargs; i++)
                argv[argc++] = args[i];
        return redisCommandArgv(c, (int) argc, argv, NULL);
}

static bool op_run(redisContext *c, const Bench *b, Op op, unsigned agent, bool *ret_granted) {
        char host[16], addr[32], hostkey[64], leasekey[64];
        _cleanup_(freep) char *hk = NULL, *lk = NULL;
        redisReply *r = NULL;
        bool ok;

        host_name(agent, host, sizeof host);
        host_addr(agent, addr, sizeof addr);
        snprintf(hostkey, sizeof hostkey, "host:%s", host);
        snprintf(leasekey, sizeof leasekey, "lease:%s", host);
        hk = pool_key("bench", hostkey);
        lk = pool_key("bench", leasekey);
        if (!hk || !lk)
                return false;

        switch (op) {
        case OP_HEARTBEAT: {
                const char *keys[] = { lk, hk, b->k_serving };
                const char *args[] = { "15000", addr };
                r = run_script(c, b, POOL_SCRIPT_HEARTBEAT, 3, keys, 2, args);
                break;
        }
        case OP_JOIN: {
                const char *keys[] = { b->k_serving, b->k_out, hk, b->k_addrs, b->k_events };
                const char *args[] = { addr, host, "{\"type\":\"join\"}" };
                r = run_script(c, b, POOL_SCRIPT_JOIN, 5, keys, 3, args);
                break;
        }
        case OP_LEAVE: {
                const char *keys[] = { b->k_serving, b->k_out, hk, b->k_addrs, b->k_events };
                const char *args[] = { addr, host, "1", "1", "1800000", POOL_LEAVE_MODE_BUDGET,
                                       "{\"type\":\"leave\"}", b->prefix, "bench", "15000" };
                r = run_script(c, b, POOL_SCRIPT_LEAVE, 5, keys, 10, args);
                break;
        }
        case OP_VIEW:
        case OP_VIEW_FULL: {
                const char *keys[] = { b->k_serving, b->k_out, b->k_addrs };
                const char *args[] = { b->prefix, op == OP_VIEW_FULL ? "full" : "summary" };
                r = run_script(c, b, POOL_SCRIPT_VIEW, 3, keys, 2, args);
                break;
        }
        default:
                return false;
        }
        ok = r && r->type != REDIS_REPLY_ERROR;
        if (ok && op == OP_LEAVE && ret_granted) {
                PoolLeaveReply lr = {};
                *ret_granted = pool_leave_reply_decode(r, &lr) == 0 && lr.result == POOL_LEAVE_LEFT;
                pool_leave_reply_done(&lr);
        }
        if (r && r->type == REDIS_REPLY_ERROR)
                fprintf(stderr, "pool_bench: %s: %s\n", op_name[op], r->str);
        freeReplyObject(r);
        return ok;
}

static redisContext *bench_connect(const Bench *b) {
        struct timeval tv = { 5, 0 };
        redisContext *c = redisConnectWithTimeout(b->host, b->port, tv);
        if (!c || c->err) {
                fprintf(stderr, "pool_bench: cannot connect to %s:%d: %s\n", b->host, b->port,
                        c ? c->errstr : "out of memory");
                if (c)
                        redisFree(c);
                return NULL;
        }
        redisSetTimeout(c, tv);
        return c;
}

static void *worker_main(void *userdata) {
        Worker *w = userdata;
        redisContext *c = bench_connect(w->b);
        uint64_t seed = 0x9e3779b97f4a7c15ULL * (w->id + 1);
        double t_end = now_sec() + PHASE_CAP_SEC;

        if (!c) {
                w->failed = w->n;
                return NULL;
        }
        for (unsigned i = 0; i < w->n && now_sec() < t_end; i++) {
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                unsigned agent = (unsigned) ((seed >> 33) % w->b->agents);
                bool granted = false;
                double t0 = now_sec();

                if (!op_run(c, w->b, w->op, agent, &granted))
                        w->failed++;
                w->lat[w->done++] = now_sec() - t0;
                /* A granted leave rejoins at once, so the budget stays busy
                 * with exactly the contention a fleet would create. */
                if (granted) {
                        w->granted++;
                        (void) op_run(c, w->b, OP_JOIN, agent, NULL);
                }
        }
        redisFree(c);
        return NULL;
}

static int phase(const Bench *b, Op op, unsigned total) {
        unsigned per = MAX(total / b->clients, 1u), done = 0, failed = 0, granted = 0;
        Worker *w = calloc(b->clients, sizeof *w);
        pthread_t *th = calloc(b->clients, sizeof *th);
        double *all = calloc((size_t) per * b->clients, sizeof *all);
        double t0, elapsed;
        int r = 0;

        if (!w || !th || !all) {
                r = -ENOMEM;
                goto finish;
        }
        unsigned started = 0;
        t0 = now_sec();
        for (; started < b->clients; started++) {
                w[started] = (Worker) { .b = b, .id = started, .op = op, .n = per,
                                        .lat = all + (size_t) started * per };
                if (pthread_create(&th[started], NULL, worker_main, &w[started]) != 0) {
                        r = -EAGAIN;
                        break;
                }
        }
        for (unsigned i = 0; i < started; i++)
                pthread_join(th[i], NULL);
        if (r < 0)
                goto finish;
        elapsed = now_sec() - t0;

        /* Compact the latencies of the operations actually done. */
        size_t n = 0;
        for (unsigned i = 0; i < b->clients; i++) {
                memmove(all + n, w[i].lat, w[i].done * sizeof *all);
                n += w[i].done;
                done += w[i].done;
                failed += w[i].failed;
                granted += w[i].granted;
        }
        qsort(all, n, sizeof *all, cmp_double);
        if (n == 0) {
                r = -EIO;
                goto finish;
        }
        printf("| %s | %u | %.0f | %.3f | %.3f | %u |\n", op_name[op], done, done / elapsed,
               all[(size_t) floor(0.50 * (double) (n - 1))] * 1e3, all[(size_t) floor(0.99 * (double) (n - 1))] * 1e3,
               failed);
        if (op == OP_LEAVE)
                printf("|  ↳ leaves granted by the budget (then rejoined) | %u | | | | |\n", granted);
        fflush(stdout);
        if (failed)
                r = -EIO;
finish:
        free(w);
        free(th);
        free(all);
        return r;
}

static int setup(Bench *b) {
        redisContext *c = bench_connect(b);
        redisReply *r;
        unsigned pending = 0;

        if (!c)
                return -ECONNREFUSED;
        r = redisCommand(c, "FLUSHDB");
        freeReplyObject(r);
        for (int s = 0; s < _POOL_SCRIPT_MAX; s++) {
                r = redisCommand(c, "SCRIPT LOAD %s", pool_script_text[s]);
                if (!r || r->type != REDIS_REPLY_STRING || r->len != 40) {
                        fprintf(stderr, "pool_bench: SCRIPT LOAD %s failed: %s\n", pool_script_to_string(s),
                                r && r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
                        freeReplyObject(r);
                        redisFree(c);
                        return -EIO;
                }
                memcpy(b->sha[s], r->str, 41);
                freeReplyObject(r);
        }
        /* Register the fleet: every agent joins and takes a lease (pipelined). */
        for (unsigned i = 0; i < b->agents; i++) {
                char host[16], addr[32], hostkey[64], leasekey[64];
                host_name(i, host, sizeof host);
                host_addr(i, addr, sizeof addr);
                snprintf(hostkey, sizeof hostkey, "host:%s", host);
                snprintf(leasekey, sizeof leasekey, "lease:%s", host);
                _cleanup_(freep) char *hk = pool_key("bench", hostkey), *lk = pool_key("bench", leasekey);
                redisAppendCommand(c, "EVALSHA %s 5 %s %s %s %s %s %s %s %s", b->sha[POOL_SCRIPT_JOIN], b->k_serving,
                                   b->k_out, hk, b->k_addrs, b->k_events, addr, host, "{\"type\":\"join\"}");
                redisAppendCommand(c, "EVALSHA %s 3 %s %s %s %s %s", b->sha[POOL_SCRIPT_HEARTBEAT], lk, hk,
                                   b->k_serving, "600000", addr);
                pending += 2;
                if (pending >= 1000 || i + 1 == b->agents) {
                        for (; pending > 0; pending--) {
                                if (redisGetReply(c, (void **) &r) != REDIS_OK || !r ||
                                    r->type == REDIS_REPLY_ERROR) {
                                        fprintf(stderr, "pool_bench: registering failed: %s\n",
                                                r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
                                        freeReplyObject(r);
                                        redisFree(c);
                                        return -EIO;
                                }
                                freeReplyObject(r);
                        }
                }
        }
        r = redisCommand(c, "SCARD %s", b->k_serving);
        printf("registered: %lld agents serving in one pool\n", r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1);
        freeReplyObject(r);
        redisFree(c);
        return 0;
}

int main(int argc, char *argv[]) {
        Bench b = { .host = "127.0.0.1", .port = 6379, .agents = 10000, .clients = 8, .ops = 50000 };
        int r;

        for (int i = 1; i < argc; i++) {
                char *end = NULL;
                unsigned long v = 0;
                if (i + 1 < argc)
                        v = strtoul(argv[i + 1], &end, 10);
                if (i + 1 >= argc || !end || *end || v == 0 || v > 1000000) {
                        fprintf(stderr, "usage: pool_bench [--port P] [--agents N] [--clients C] [--ops N]\n");
                        return 2;
                }
                if (streq(argv[i], "--port") && v < 65536)
                        b.port = (int) v;
                else if (streq(argv[i], "--agents"))
                        b.agents = (unsigned) v;
                else if (streq(argv[i], "--clients") && v <= 256)
                        b.clients = (unsigned) v;
                else if (streq(argv[i], "--ops"))
                        b.ops = (unsigned) v;
                else {
                        fprintf(stderr, "pool_bench: unknown option '%s'\n", argv[i]);
                        return 2;
                }
                i++;
        }

        b.k_serving = pool_key("bench", "serving");
        b.k_out = pool_key("bench", "out");
        b.k_addrs = pool_key("bench", "addrs");
        b.k_events = pool_key("bench", "events");
        b.prefix = pool_key("bench", "");
        if (!b.k_serving || !b.k_out || !b.k_addrs || !b.k_events || !b.prefix)
                return 1;

        r = setup(&b);
        if (r >= 0) {
                printf("\n| operation (%u agents, %u clients) | ops | ops/s | p50 ms | p99 ms | errors |\n", b.agents,
                       b.clients);
                printf("| --- | --- | --- | --- | --- | --- |\n");
                r = phase(&b, OP_HEARTBEAT, b.ops);
                if (r >= 0)
                        r = phase(&b, OP_LEAVE, b.ops / 10);
                if (r >= 0)
                        r = phase(&b, OP_VIEW, b.ops / 10);
                if (r >= 0)
                        r = phase(&b, OP_VIEW_FULL, MAX(b.ops / 1000, b.clients));
        }
        free(b.k_serving);
        free(b.k_out);
        free(b.k_addrs);
        free(b.k_events);
        free(b.prefix);
        return r < 0 ? 1 : 0;
}
