/* Fleet-scale cost of the pool: N simulated agents (default 10,000) against
 * one redis-server, replaying the agent's own Lua scripts (pool_scripts.h)
 * from C concurrent clients, as many agents' heartbeats and budget checks
 * would arrive. Prints one Markdown row per operation: ops/s, p50, p99.
 * Last comes the herd: the whole fleet asks the budget to leave at once and
 * exactly max_unavailable may be granted; a wrong count exits non-zero.
 * Bounded: a fixed number of operations per phase and a wall-clock cap. */
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <time.h>

#include "evalsha.h"
#include "macro.h"
#include "pool_scripts.h"
#include "poolkeys.h"

#define PHASE_CAP_SEC 60.0

typedef struct Bench {
        const char *host;
        int port;
        unsigned agents, clients, ops;
        unsigned max_unavailable; /* the herd's budget */
        char sha[_POOL_SCRIPT_MAX][41];
        char *k_serving, *k_out, *k_alive, *k_waiting, *k_budget, *k_asking, *prefix;
} Bench;

typedef enum Op { OP_HEARTBEAT, OP_LEAVE, OP_JOIN, OP_VIEW, OP_VIEW_FULL, OP_HERD_LEAVE, _OP_MAX } Op;
static const char *const op_name[_OP_MAX] = {
        "heartbeat (lease renewal)", "budget-checked leave", "join",
        "status summary (each heartbeat)", "member list (monkeyctl pool)", "herd leave",
};

/* The asking TTL the agent passes with the default 5 s heartbeat (3 x). */
#define ASKING_TTL_MS "15000"
/* Setup's and the herd's lease: outlives every phase, so no lease expires
 * mid-run and the alive count stays the fleet. */
#define LONG_LEASE_MS "600000"
/* How long the herd's clients may take to connect before it is called off. */
#define HERD_START_SEC 30

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

/* The script with its KEYS as monkeyd builds them (pool_script_keys()). */
static int script_argv(const Bench *b, PoolScript s, const PoolKeys *keys, int nargs, const char **args,
                       const char *argv[static 3 + POOL_SCRIPT_KEYS_MAX + 16], char nk[static 16]) {
        const char *k[POOL_SCRIPT_KEYS_MAX];
        int n = pool_script_keys(s, keys, NULL, k);

        if (n < 0)
                return -EINVAL;
        return evalsha_argv(b->sha[s], n, k, nargs, args, nk, argv, 3 + POOL_SCRIPT_KEYS_MAX + 16);
}

static redisReply *run_script(redisContext *c, const Bench *b, PoolScript s, const PoolKeys *keys, int nargs,
                              const char **args) {
        const char *argv[3 + POOL_SCRIPT_KEYS_MAX + 16];
        char nk[16];
        int argc = script_argv(b, s, keys, nargs, args, argv, nk);

        return argc < 0 ? NULL : redisCommandArgv(c, argc, argv, NULL);
}

/* ret_result: the leave's answer (OP_LEAVE, OP_HERD_LEAVE); _POOL_LEAVE_RESULT_INVALID
 * when there is none. */
static bool op_run(redisContext *c, const Bench *b, Op op, unsigned agent, PoolLeaveResult *ret_result) {
        _cleanup_(poolkeys_done) PoolKeys keys = {};
        char host[16], addr[32], maxu[16];
        redisReply *r = NULL;
        bool ok;

        host_name(agent, host, sizeof host);
        host_addr(agent, addr, sizeof addr);
        if (ret_result)
                *ret_result = _POOL_LEAVE_RESULT_INVALID;
        if (poolkeys_new("bench", host, &keys) < 0)
                return false;

        switch (op) {
        case OP_HEARTBEAT: {
                const char *args[] = { "15000", addr, host };
                r = run_script(c, b, POOL_SCRIPT_HEARTBEAT, &keys, 3, args);
                break;
        }
        case OP_JOIN: {
                const char *args[] = { addr, host, "{\"type\":\"join\"}" };
                r = run_script(c, b, POOL_SCRIPT_JOIN, &keys, 3, args);
                break;
        }
        case OP_LEAVE:
        case OP_HERD_LEAVE: {
                /* As send_leave(): no list key; min_serving 1; out_max 30
                 * min; asking TTL 3 heartbeats. */
                snprintf(maxu, sizeof maxu, "%u", op == OP_HERD_LEAVE ? b->max_unavailable : 1u);
                const char *args[] = { addr, host, "1", maxu, "1800000", POOL_LEAVE_MODE_BUDGET,
                                       "{\"type\":\"leave\"}", b->prefix, "bench", ASKING_TTL_MS };
                r = run_script(c, b, POOL_SCRIPT_LEAVE, &keys, 10, args);
                break;
        }
        case OP_VIEW:
        case OP_VIEW_FULL: {
                const char *args[] = { b->prefix, op == OP_VIEW_FULL ? "full" : "summary" };
                r = run_script(c, b, POOL_SCRIPT_VIEW, &keys, 2, args);
                break;
        }
        default:
                return false;
        }
        ok = r && r->type != REDIS_REPLY_ERROR;
        if (ok && (op == OP_LEAVE || op == OP_HERD_LEAVE) && ret_result) {
                PoolLeaveReply lr = {};
                if (pool_leave_reply_decode(r, &lr) == 0)
                        *ret_result = lr.result;
                else
                        ok = false;
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
                PoolLeaveResult result = _POOL_LEAVE_RESULT_INVALID;
                double t0 = now_sec();

                if (!op_run(c, w->b, w->op, agent, &result))
                        w->failed++;
                w->lat[w->done++] = now_sec() - t0;
                /* A granted leave rejoins at once, so the budget stays busy
                 * with exactly the contention a fleet would create. */
                if (result == POOL_LEAVE_LEFT) {
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

/* Pipelined: every agent joins and takes a long lease, which also puts it
 * back in the alive index. With reset, first drops each agent's "asking"
 * mark, so no earlier phase leaves it holding a place in the leave queue. */
static int fleet_join(redisContext *c, const Bench *b, bool reset) {
        unsigned pending = 0;
        redisReply *r;

        for (unsigned i = 0; i < b->agents; i++) {
                char host[16], addr[32];
                host_name(i, host, sizeof host);
                host_addr(i, addr, sizeof addr);
                _cleanup_(poolkeys_done) PoolKeys keys = {};
                const char *join_args[] = { addr, host, "{\"type\":\"join\"}" };
                const char *beat_args[] = { LONG_LEASE_MS, addr, host };
                const char *argv[3 + POOL_SCRIPT_KEYS_MAX + 16];
                char nk[16];
                int argc;

                if (poolkeys_new("bench", host, &keys) < 0)
                        return -ENOMEM;
                if (reset) {
                        /* what the leave script still writes for agents from before the asking ZSET */
                        redisAppendCommand(c, "DEL %s", keys.key[POOL_KEY_ASKING_HOST]);
                        pending++;
                }
                argc = script_argv(b, POOL_SCRIPT_JOIN, &keys, 3, join_args, argv, nk);
                if (argc < 0)
                        return argc;
                redisAppendCommandArgv(c, argc, argv, NULL);
                argc = script_argv(b, POOL_SCRIPT_HEARTBEAT, &keys, 3, beat_args, argv, nk);
                if (argc < 0)
                        return argc;
                redisAppendCommandArgv(c, argc, argv, NULL);
                pending += 2;
                if (pending >= 1000 || i + 1 == b->agents) {
                        for (; pending > 0; pending--) {
                                r = NULL;
                                if (redisGetReply(c, (void **) &r) != REDIS_OK || !r ||
                                    r->type == REDIS_REPLY_ERROR) {
                                        fprintf(stderr, "pool_bench: registering failed: %s\n",
                                                r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
                                        freeReplyObject(r);
                                        return -EIO;
                                }
                                freeReplyObject(r);
                        }
                }
        }
        return 0;
}

static long long redis_int(redisContext *c, const char *cmd, const char *key) {
        redisReply *r = redisCommand(c, "%s %s", cmd, key);
        long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;

        freeReplyObject(r);
        return v;
}

static int setup(Bench *b) {
        redisContext *c = bench_connect(b);
        redisReply *r;
        int k;

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
        /* Register the fleet: every agent joins and takes a lease. */
        k = fleet_join(c, b, false);
        if (k >= 0)
                printf("registered: %lld agents serving in one pool\n", redis_int(c, "SCARD", b->k_serving));
        redisFree(c);
        return k;
}

/* ---- the herd: the whole fleet asks to leave at once ---- */

typedef struct Herd {
        const Bench *b;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned ready; /* clients connected (or given up) */
        bool go, abort;
} Herd;

typedef struct HerdWorker {
        Herd *h;
        unsigned id;
        double *lat;
        unsigned done, failed;
        unsigned result[_POOL_LEAVE_RESULT_MAX];
} HerdWorker;

static void deadline_in(struct timespec *ts, int sec) {
        clock_gettime(CLOCK_REALTIME, ts);
        ts->tv_sec += sec;
}

/* Every agent is SERVING, nothing is out, nobody queues, every lease is
 * live: whatever the earlier phases left (granted leaves rejoined, denied
 * askers still holding the first-come queue for ASKING_TTL_MS, leases of
 * the heartbeat phase that run out mid-run) must not change the count. */
static int herd_reset(const Bench *b) {
        redisContext *c = bench_connect(b);
        long long serving, out, alive, waiting;
        redisReply *r;
        int k;

        if (!c)
                return -ECONNREFUSED;
        /* A phase whose clients gave up (the member list with hundreds of
         * clients runs past their 5 s timeout) leaves Redis a backlog of
         * scripts still to run: wait it out, bounded, before timing anything. */
        redisSetTimeout(c, (struct timeval) { (time_t) PHASE_CAP_SEC, 0 });
        r = redisCommand(c, "PING");
        k = r && r->type == REDIS_REPLY_STATUS ? 0 : -ETIMEDOUT;
        freeReplyObject(r);
        if (k < 0)
                fprintf(stderr, "pool_bench: herd reset: Redis did not answer within %.0f s: %s\n", PHASE_CAP_SEC,
                        c->err ? c->errstr : "bad reply");
        redisSetTimeout(c, (struct timeval) { 5, 0 });
        if (k >= 0) {
                /* the pool's budget too: the leave phase's first ask seeded
                 * max_unavailable 1, and the scripts read the pool's budget,
                 * not the asker's; the herd's first ask seeds the herd's */
                r = redisCommand(c, "DEL %s %s %s %s", b->k_out, b->k_waiting, b->k_budget, b->k_asking);
                k = r && r->type == REDIS_REPLY_INTEGER ? 0 : -EIO;
                if (k < 0)
                        fprintf(stderr, "pool_bench: herd reset: DEL failed: %s\n",
                                r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
                freeReplyObject(r);
        }
        if (k >= 0)
                k = fleet_join(c, b, true);
        serving = redis_int(c, "SCARD", b->k_serving);
        out = redis_int(c, "ZCARD", b->k_out);
        alive = redis_int(c, "ZCARD", b->k_alive);
        waiting = redis_int(c, "ZCARD", b->k_waiting);
        redisFree(c);
        if (k >= 0 && (serving != b->agents || out != 0 || alive != b->agents || waiting != 0)) {
                fprintf(stderr, "pool_bench: herd reset left %lld serving, %lld out, %lld alive, %lld waiting\n",
                        serving, out, alive, waiting);
                k = -EIO;
        }
        return k;
}

static void *herd_main(void *userdata) {
        HerdWorker *w = userdata;
        Herd *h = w->h;
        const Bench *b = h->b;
        redisContext *c = bench_connect(b);
        struct timespec until;
        bool go;

        /* Connect first, then start together: the herd is one burst, not
         * clients trickling in as they connect. */
        deadline_in(&until, HERD_START_SEC + 5);
        pthread_mutex_lock(&h->lock);
        h->ready++;
        pthread_cond_broadcast(&h->cond);
        while (!h->go && !h->abort)
                if (pthread_cond_timedwait(&h->cond, &h->lock, &until) == ETIMEDOUT)
                        break;
        go = h->go && !h->abort;
        pthread_mutex_unlock(&h->lock);

        if (c && go) {
                double t_end = now_sec() + PHASE_CAP_SEC;
                /* Client id asks for agents id, id + C, id + 2C...: each agent once. */
                for (unsigned agent = w->id; agent < b->agents && now_sec() < t_end; agent += b->clients) {
                        PoolLeaveResult result = _POOL_LEAVE_RESULT_INVALID;
                        double t0 = now_sec();

                        if (!op_run(c, b, OP_HERD_LEAVE, agent, &result))
                                w->failed++;
                        w->lat[w->done++] = now_sec() - t0;
                        if (result >= 0 && result < _POOL_LEAVE_RESULT_MAX)
                                w->result[result]++;
                }
        }
        if (c)
                redisFree(c);
        return NULL;
}

static int herd(const Bench *b) {
        unsigned per = (b->agents + b->clients - 1) / b->clients, started = 0;
        unsigned done = 0, failed = 0, result[_POOL_LEAVE_RESULT_MAX] = {};
        unsigned expected = MIN(b->max_unavailable, b->agents - 1); /* min_serving 1 keeps one */
        Herd h = { .b = b, .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
        HerdWorker *w = calloc(b->clients, sizeof *w);
        pthread_t *th = calloc(b->clients, sizeof *th);
        double *all = calloc((size_t) per * b->clients, sizeof *all);
        struct timespec until;
        long long out = -1, serving = -1;
        double t0 = 0, elapsed;
        bool right;
        int r;

        if (!w || !th || !all) {
                r = -ENOMEM;
                goto finish;
        }
        r = herd_reset(b);
        if (r < 0)
                goto finish;

        for (; started < b->clients; started++) {
                w[started] = (HerdWorker) { .h = &h, .id = started, .lat = all + (size_t) started * per };
                if (pthread_create(&th[started], NULL, herd_main, &w[started]) != 0) {
                        r = -EAGAIN;
                        break;
                }
        }
        deadline_in(&until, HERD_START_SEC);
        pthread_mutex_lock(&h.lock);
        while (r >= 0 && h.ready < started)
                if (pthread_cond_timedwait(&h.cond, &h.lock, &until) == ETIMEDOUT) {
                        r = -ETIMEDOUT;
                        break;
                }
        if (r >= 0)
                h.go = true;
        else
                h.abort = true;
        t0 = now_sec();
        pthread_cond_broadcast(&h.cond);
        pthread_mutex_unlock(&h.lock);
        for (unsigned i = 0; i < started; i++)
                pthread_join(th[i], NULL);
        elapsed = now_sec() - t0;
        if (r < 0) {
                fprintf(stderr, "pool_bench: the herd could not start: %s\n", strerror(-r));
                goto finish;
        }

        size_t n = 0;
        for (unsigned i = 0; i < b->clients; i++) {
                memmove(all + n, w[i].lat, w[i].done * sizeof *all);
                n += w[i].done;
                done += w[i].done;
                failed += w[i].failed;
                for (int k = 0; k < _POOL_LEAVE_RESULT_MAX; k++)
                        result[k] += w[i].result[k];
        }
        /* An agent that never got to ask (a client that could not connect,
         * the phase cap) is an error too: the herd is every agent. */
        failed += b->agents - done;
        qsort(all, n, sizeof *all, cmp_double);
        printf("| herd: all %u ask to leave at once (max_unavailable %u) | %u | %.0f | %.3f | %.3f | %u |\n", b->agents,
               b->max_unavailable, done, elapsed > 0 ? done / elapsed : 0.0,
               n ? all[(size_t) floor(0.50 * (double) (n - 1))] * 1e3 : 0.0,
               n ? all[(size_t) floor(0.99 * (double) (n - 1))] * 1e3 : 0.0, failed);

        /* Count twice: the answers the agents got, and what Redis holds. */
        redisContext *c = bench_connect(b);
        if (c) {
                out = redis_int(c, "ZCARD", b->k_out);
                serving = redis_int(c, "SCARD", b->k_serving);
                redisFree(c);
        }
        right = failed == 0 && result[POOL_LEAVE_LEFT] == expected && out == (long long) expected &&
                serving == (long long) (b->agents - expected);
        printf("herd: granted %u of %u (max_unavailable %u): %s; %u denied, %u already out, %u errors; "
               "Redis holds %lld out, %lld serving; all answered in %.0f ms\n",
               result[POOL_LEAVE_LEFT], b->agents, b->max_unavailable, right ? "OK" : "WRONG",
               result[POOL_LEAVE_DENIED], result[POOL_LEAVE_ALREADY_OUT], failed, out, serving, elapsed * 1e3);
        if (expected != b->max_unavailable)
                printf("herd: (min_serving 1 keeps one of %u agents serving: %u may leave)\n", b->agents, expected);
        fflush(stdout);
        if (!right)
                r = -EIO;
finish:
        free(w);
        free(th);
        free(all);
        return r;
}

int main(int argc, char *argv[]) {
        Bench b = { .host = "127.0.0.1", .port = 6379, .agents = 10000, .clients = 8, .ops = 50000,
                  .max_unavailable = 10 };
        int r;

        for (int i = 1; i < argc; i++) {
                char *end = NULL;
                unsigned long v = 0;
                if (i + 1 < argc)
                        v = strtoul(argv[i + 1], &end, 10);
                if (i + 1 >= argc || !end || *end || v == 0 || v > 1000000) {
                        fprintf(stderr, "usage: pool_bench [--port P] [--agents N] [--clients C] [--ops N] "
                                        "[--max-unavailable M]\n");
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
                else if (streq(argv[i], "--max-unavailable") && v <= 100000) /* the agent's config range */
                        b.max_unavailable = (unsigned) v;
                else {
                        fprintf(stderr, "pool_bench: unknown option '%s'\n", argv[i]);
                        return 2;
                }
                i++;
        }

        if (poolkeys_key("bench", POOL_KEY_SERVING, NULL, &b.k_serving) < 0 ||
            poolkeys_key("bench", POOL_KEY_OUT, NULL, &b.k_out) < 0 ||
            poolkeys_key("bench", POOL_KEY_ASKING, NULL, &b.k_asking) < 0 ||  /* who still asks */
            poolkeys_key("bench", POOL_KEY_ALIVE, NULL, &b.k_alive) < 0 ||     /* the scripts' alive index */
            poolkeys_key("bench", POOL_KEY_WAITING, NULL, &b.k_waiting) < 0 || /* the leave script's queue */
            poolkeys_key("bench", POOL_KEY_BUDGET, NULL, &b.k_budget) < 0 ||   /* the pool's one budget */
            poolkeys_key("bench", POOL_KEY_PREFIX, NULL, &b.prefix) < 0)
                return 1;
        if (b.agents < 2) {
                fprintf(stderr, "pool_bench: the herd needs at least 2 agents (min_serving 1 keeps one)\n");
                return 2;
        }

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
                /* The herd resets the pool and checks a count: worth its
                 * answer even when a timing phase above failed. */
                int k = herd(&b);
                if (r >= 0)
                        r = k;
        }
        free(b.k_serving);
        free(b.k_out);
        free(b.k_asking);
        free(b.k_alive);
        free(b.k_waiting);
        free(b.k_budget);
        free(b.prefix);
        return r < 0 ? 1 : 0;
}
