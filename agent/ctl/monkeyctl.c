/* monkeyctl: the operator's client for monkeyd's control socket. Commands
 * come from one declarative table (any unique prefix selects one, as in
 * relayctl); every way of failing maps to a distinct exit code, so scripts
 * and monitoring can tell "not routed" from "degraded" from "agent
 * unreachable". Under --json every answer, errors included, is one JSON
 * document on stdout carrying "schema" (CONTROL_JSON_SCHEMA). */
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include <fcntl.h>
#include <sys/stat.h>

#include "checks.h"
#include "clock.h"
#include "fileio.h"
#include "flamegraph.h"
#include "folded.h"
#include "jsonutil.h"
#include "poolkeys.h"
#include "control.h"
#include "stackdiff.h"
#include "macro.h"
#include "status_text.h"

#ifndef MONKEY_VERSION
#define MONKEY_VERSION "unknown"
#endif

#define DEFAULT_SOCKET "/run/monkeyd/control.sock"
#define SOCKET_ENV "MONKEY_CONTROL_SOCKET"
#define DEFAULT_TIMEOUT_SEC 5.0
#define MAX_TIMEOUT_SEC 86400.0
/* history of 1000 transitions is ~250 KiB; anything near this is garbage */
#define REPLY_MAX (16u * 1024u * 1024u)

/* The contract with health checks and config management (README, --help). */
enum {
        EXIT_OK = 0,          /* status: routed; others: done */
        EXIT_NOT_OK = 1,      /* status: not routed; others: the agent said no, or it failed */
        EXIT_USAGE = 2,
        EXIT_UNREACHABLE = 3, /* connect failed, timeout, the agent went away, or garbage from it */
        EXIT_DEGRADED = 4,    /* status: routed, but Redis, Slack or state.json is failing */
};

typedef struct Ctl {
        const char *socket_path;
        bool json;
        bool json_lines; /* watch: one JSON document per line, errors included */
        double timeout_sec;
        bool timeout_given;
        unsigned limit; /* 0: the agent's default */
        bool limit_set;
        const char *output; /* incident diff/flame: the SVG's path */
        bool negate;        /* incident diff: A's widths */
        long long min_serving, max_unavailable; /* pool budget: what to set; -1 not given */
} Ctl;

typedef enum VerbArgs {
        VERB_ARGS_NONE,
        VERB_ARGS_WORDS, /* free text, joined with spaces */
        VERB_ARGS_IGNORED,
        VERB_ARGS_LIST, /* positional, checked by the verb */
} VerbArgs;

#define VERB_LOCAL _CONTROL_COMMAND_INVALID /* no request of its own */

typedef struct Verb Verb;

/* One row per verb. The protocol's row for `command` says the rest: who
 * may run it, the argument it sends, where the answer is in the reply. */
struct Verb {
        const char *name;
        const char *synopsis;
        const char *help;
        VerbArgs args;
        bool takes_limit;  /* -n */
        bool takes_output; /* -o, --negate */
        ControlCommand command;
        double timeout_sec; /* the default wait for the answer; 0: DEFAULT_TIMEOUT_SEC */
        /* Fetch then show: the text formatter of the answer (--json passes it
         * through under json_key), the exit code it means (NULL: EXIT_OK),
         * what it is called when it cannot be formatted. */
        int (*format)(json_object *answer, char **ret);
        const char *json_key;
        int (*exit_code)(json_object *answer);
        const char *what;
        int (*run)(Ctl *ctl, const Verb *verb, char **args, size_t n_args);
};

static int status_exit_code(json_object *status);
static int verb_show(Ctl *ctl, const Verb *verb, char **args, size_t n_args);
static int verb_watch(Ctl *ctl, const Verb *verb, char **args, size_t n_args);
static int verb_mutate(Ctl *ctl, const Verb *verb, char **args, size_t n_args);
static int verb_check(Ctl *ctl, const Verb *verb, char **args, size_t n_args);
static int verb_help(Ctl *ctl, const Verb *verb, char **args, size_t n_args);
static int verb_incident(Ctl *ctl, const Verb *verb, char **args, size_t n_args);
static int verb_reload(Ctl *ctl, const Verb *verb, char **args, size_t n_args);
static int verb_pool(Ctl *ctl, const Verb *verb, char **args, size_t n_args);

/* The agent's wait for Slack (20 s), for EC2 and IMDS or each check (60 s). */
#define TIMEOUT_SLACK_SEC 30.0
#define TIMEOUT_AWS_SEC 70.0
#define TIMEOUT_RELOAD_SEC 30.0 /* parsing is quick, but an overloaded host's loop may be slow to get to it */

static const Verb verbs[] = {
        { "status", "status [--json]", "state, routing, CPU, pool, checks, last incident, config;\n"
          "                            exit 0 routed, 1 not routed, 4 degraded (see below)",
          VERB_ARGS_NONE, .command = CONTROL_STATUS, .format = status_text_format, .json_key = "status",
          /* judged here from what the agent says, not from its own
           * "routing": the same rule whatever the agent's version */
          .exit_code = status_exit_code, .what = "status", .run = verb_show },
        { "history", "history [--json] [-n N]", "the last N transitions (default 20, at most 1000)",
          VERB_ARGS_NONE, .takes_limit = true, .command = CONTROL_HISTORY, .format = status_text_format_history,
          .json_key = "history", .what = "history", .run = verb_show },
        { "watch", "watch [--json]", "print transitions as they happen, until interrupted\n"
          "                            (exit 3 when the agent goes away)",
          VERB_ARGS_NONE, .command = CONTROL_WATCH, .run = verb_watch },
        { "pool", "pool [--json]", "pool members (state, address, lease) and the disruption budget",
          VERB_ARGS_LIST, .command = CONTROL_POOL, .format = status_text_format_pool, .json_key = "pool",
          .what = "the pool", .run = verb_pool },
        /* help rows: 'pool' runs them */
        { "pool budget", "pool budget [--json]", "the pool's one disruption budget as Redis holds it (who\n"
          "                            set it, when), and whether this host's config differs",
          VERB_ARGS_LIST, .command = CONTROL_POOL_BUDGET },
        { "pool budget --min-serving N --max-unavailable M", "pool budget --min-serving N --max-unavailable M",
          "set it for the whole pool at once (either alone keeps\n"
          "                            the other); audited on the pool's events channel",
          VERB_ARGS_LIST, .command = CONTROL_POOL_BUDGET_SET },
        { "drain", "drain [REASON...]", "leave the pool and stay out (maintenance); again while\n"
          "                            drained: exit 0, \"already drained\"",
          VERB_ARGS_WORDS, .command = CONTROL_DRAIN, .run = verb_mutate },
        { "resume", "resume", "end maintenance or a give-up and return to service; with\n"
          "                            nothing to resume: exit 0, \"already ...\"",
          VERB_ARGS_NONE, .command = CONTROL_RESUME, .run = verb_mutate },
        { "reload", "reload", "have the agent read its config file again and wait for the\n"
          "                            verdict: exit 0 \"reloaded FILE\", or 1 and FILE:LINE: why\n"
          "                            (the running config stays)",
          VERB_ARGS_NONE, .command = CONTROL_RELOAD, .timeout_sec = TIMEOUT_RELOAD_SEC, .run = verb_reload },
        { "test-alert", "test-alert [TEXT...]", "post a test message to Slack through the outbox and print\n"
          "                            what Slack answered (exit 1 if it refused)",
          VERB_ARGS_WORDS, .command = CONTROL_TEST_ALERT, .timeout_sec = TIMEOUT_SLACK_SEC, .run = verb_mutate },
        { "check", "check [--json]", "run the content, status and binding checks now and print\n"
          "                            each result (exit 0 when all pass, 1 otherwise)",
          VERB_ARGS_NONE, .command = CONTROL_CHECK, .timeout_sec = TIMEOUT_AWS_SEC, .run = verb_check },
        { "test-reboot", "test-reboot", "ask EC2 whether this host may reboot itself (DryRun), print\n"
          "                            the verdict (exit 1 if denied or unknown)",
          VERB_ARGS_NONE, .command = CONTROL_TEST_REBOOT, .timeout_sec = TIMEOUT_AWS_SEC, .run = verb_mutate },
        { "stats", "stats [--json]", "latency statistics of the checks (the GET, the binding's\n"
          "                            connect): count, min, mean, sd, p50/p90/p99, max, since\n"
          "                            start and over the last hour",
          VERB_ARGS_NONE, .command = CONTROL_STATS, .format = status_text_format_stats, .json_key = "stats",
          .what = "the statistics", .run = verb_show },
        { "incidents", "incidents [--json]", "the incidents whose evidence is kept, newest first",
          VERB_ARGS_NONE, .command = CONTROL_INCIDENTS, .format = status_text_format_incidents, .json_key = "result",
          .what = "the incidents", .run = verb_show },
        { "incident", "incident ID [--json]", "an incident's evidence: CPU split, load, pressure, top\n"
          "                            processes, the profile's hottest stacks",
          VERB_ARGS_LIST, .takes_output = true, .command = CONTROL_INCIDENT, .format = status_text_format_incident,
          .json_key = "result", .what = "the incident", .run = verb_incident },
        /* help rows: 'incident' runs them */
        { "incident diff", "incident diff A B [--negate] [-o SVG]", "differential flame graph from A to B\n"
          "                            (incident ids or folded files): the frames that changed\n"
          "                            most, and the SVG (default flame-diff.svg); red grew,\n"
          "                            blue shrank; widths of B, or of A with --negate",
          VERB_ARGS_LIST, .takes_output = true, .command = VERB_LOCAL },
        { "incident flame", "incident flame A [-o SVG]", "render an incident's or a folded file's flame graph\n"
          "                            (default flame.svg)",
          VERB_ARGS_LIST, .takes_output = true, .command = VERB_LOCAL },
        { "help", "help", "show this text", VERB_ARGS_IGNORED, .command = VERB_LOCAL, .run = verb_help },
};

/* Who may run a verb, from the protocol's table (not written into each
 * help text, where it could disagree with what the agent enforces): the
 * marks usage()'s footnotes explain; NULL for every local user. */
static const char *verb_access_mark(const Verb *v) {
        if (control_command_is_root_only(v->command))
                return "root only**";
        if (control_command_is_mutating(v->command))
                return "needs privilege*";
        return NULL;
}

static void usage(FILE *f) {
        fputs("Usage: monkeyctl [OPTIONS] COMMAND [ARGS]\n"
              "\n"
              "Show and steer monkeyd, the Doctor Monkey agent, through its control socket.\n"
              "\n"
              "Commands (any unique prefix works, e.g. \"st\" for status):\n",
              f);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                const char *mark = verb_access_mark(&verbs[i]);

                if (strlen(verbs[i].synopsis) < 25)
                        fprintf(f, "  %-26s", verbs[i].synopsis);
                else
                        fprintf(f, "  %s\n  %-26s", verbs[i].synopsis, "");
                fprintf(f, "%s%s%s\n", verbs[i].help, mark ? "; " : "", strempty(mark));
        }
        fputs("\n"
              "Options (also accepted after the command):\n"
              "  -s, --socket PATH   control socket (default " DEFAULT_SOCKET ",\n"
              "                      or $" SOCKET_ENV ")\n"
              "  -j, --json          print JSON for scripts instead of text\n"
              "  -t, --timeout SEC   give up on the agent after SEC seconds (default 5)\n"
              "  -n, --limit N       history: how many transitions to show\n"
              "  -o, --output FILE   incident diff/flame: where the SVG goes\n"
              "      --negate        incident diff: widths of A, so what vanished shows\n"
              "      --min-serving N      pool budget: set min_serving (0-" STRINGIFY(POOLKEYS_MIN_SERVING_MAX) ")\n"
              "      --max-unavailable M  pool budget: set max_unavailable (1-" STRINGIFY(
                      POOLKEYS_MAX_UNAVAILABLE_MAX) ")\n"
              "  -h, --help          show this text\n"
              "  -V, --version       show the version\n"
              "\n"
              "* root, the agent's own user, or a member of the agent's [agent] control_group.\n"
              "** root or the agent's own user (who may SIGHUP it anyway), not the control group.\n"
              "Everything else is open to every local user.\n"
              "\n"
              "Exit status:\n"
              "  0  status: routed (in the pool, or taking traffic without one: SERVING, or\n"
              "     OVERLOADED/HOLDING, which stay in); other commands: done\n"
              "  1  status: not routed (CHECKING, QUARANTINED, MAINTENANCE, DRAINING,\n"
              "     REMEDIATING, BOOT, or out of the pool); others: the agent refused or it failed\n"
              "  2  usage error\n"
              "  3  agent unreachable: no socket, no answer in time, went away, or unreadable\n"
              "  4  status: degraded: routed, but Redis or Slack unreachable, or state.json\n"
              "     cannot be saved\n"
              "With --json, errors too are JSON on stdout: {\"schema\":1,\"error\":{\"exit\":N,\n"
              "\"kind\":\"usage|unreachable|malformed|refused|permission|failed\",\"message\":...}}.\n",
              f);
}

/* An object with "schema" first, then o's members (borrowed), for
 * everything --json prints. */
static json_object *with_schema(json_object *o) {
        json_object *out = json_object_new_object();

        if (!out)
                return NULL;
        json_object_object_add(out, "schema", json_object_new_int(CONTROL_JSON_SCHEMA));
        if (o && json_object_is_type(o, json_type_object)) {
                json_object_object_foreach(o, k, v) {
                        if (!streq(k, "schema"))
                                json_object_object_add(out, k, json_object_get(v));
                }
        }
        return out;
}

#define JSON_OUT_FLAGS (JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE)

/* An object with the schema added, or an array as {"schema":N,KEY:[...]}. */
static void print_json(const char *key, json_object *o) {
        _cleanup_(json_object_putp) json_object *out = NULL;

        if (json_object_is_type(o, json_type_object))
                out = with_schema(o);
        else {
                out = with_schema(NULL);
                if (out)
                        json_object_object_add(out, key, json_object_get(o));
        }
        if (out)
                puts(json_object_to_json_string_ext(out, JSON_OUT_FLAGS));
}

/* Every failure: "monkeyctl: MESSAGE" on stderr for people, and under
 * --json {"schema":N,"error":{"exit":CODE,"kind":KIND,"message":...}} on
 * stdout for scripts. Returns code. */
static int json_error(const Ctl *ctl, int code, const char *kind, const char *message) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *e;

        if (!ctl || !ctl->json)
                return code;
        o = with_schema(NULL);
        e = json_object_new_object();
        if (!o || !e) {
                json_object_put(e);
                return code;
        }
        json_object_object_add(e, "exit", json_object_new_int(code));
        json_object_object_add(e, "kind", json_object_new_string(kind));
        json_object_object_add(e, "message", message ? json_object_new_string(message) : NULL);
        json_object_object_add(o, "error", e);
        puts(json_object_to_json_string_ext(o, ctl->json_lines ? JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE
                                                               : JSON_OUT_FLAGS));
        (void) fflush(stdout);
        return code;
}

static int fail(const Ctl *ctl, int code, const char *kind, const char *format, ...) _printf_(4, 5);
static int fail(const Ctl *ctl, int code, const char *kind, const char *format, ...) {
        _cleanup_(freep) char *m = NULL;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&m, format, ap);
        va_end(ap);
        if (r < 0)
                m = NULL;
        fprintf(stderr, "monkeyctl: %s\n", m ? m : "out of memory");
        return json_error(ctl, code, kind, m);
}

#define usage_error(ctl, ...)                                              \
        ({                                                                 \
                int _c_ = fail((ctl), EXIT_USAGE, "usage", __VA_ARGS__); \
                fputs("Try 'monkeyctl --help'.\n", stderr);                \
                _c_;                                                       \
        })

/* Exact name first, then a unique prefix. */
static const Verb *verb_find(const Ctl *ctl, const char *name) {
        const Verb *found = NULL;
        size_t n = strlen(name), matches = 0;
        _cleanup_(freep) char *list = NULL;
        size_t size = 0;
        FILE *f;

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (verbs[i].run && streq(verbs[i].name, name))
                        return &verbs[i];
        for (size_t i = 0; n > 0 && i < ELEMENTSOF(verbs); i++)
                if (verbs[i].run && strncmp(verbs[i].name, name, n) == 0) {
                        found = &verbs[i];
                        matches++;
                }
        if (matches == 1)
                return found;

        if (matches == 0) {
                usage_error(ctl, "unknown command '%s'", name);
                return NULL;
        }
        f = open_memstream(&list, &size);
        if (f) {
                bool first = true;
                for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                        if (verbs[i].run && strncmp(verbs[i].name, name, n) == 0) {
                                fprintf(f, "%s%s", first ? "" : ", ", verbs[i].name);
                                first = false;
                        }
                if (fclose(f) != 0) {
                        free(list);
                        list = NULL;
                }
        }
        usage_error(ctl, "ambiguous command '%s': matches %s", name, strna(list));
        return NULL;
}

static int64_t now_ms(void) {
        return (int64_t) (clock_now(CLOCK_MONOTONIC) / USEC_PER_MSEC);
}

static int64_t deadline_after(const Ctl *ctl) {
        return now_ms() + (int64_t) ceil(ctl->timeout_sec * 1000.0);
}

/* poll() timeout until `deadline` (-1: none). */
static int poll_timeout(int64_t deadline) {
        int64_t left;

        if (deadline < 0)
                return -1;
        left = deadline - now_ms();
        if (left <= 0)
                return 0;
        return (int) MIN(left, (int64_t) INT32_MAX);
}

static int unreachable(const Ctl *ctl, int error, const char *what) {
        const char *hint = "";

        if (error == ENOENT || error == ECONNREFUSED)
                hint = " (is monkeyd running?)";
        else if (error == EACCES)
                hint = " (no permission on the socket)";
        return fail(ctl, EXIT_UNREACHABLE, "unreachable", "%s %s: %s%s", what, ctl->socket_path, strerror(error),
                    hint);
}

static int garbage(const Ctl *ctl, const char *why) {
        return fail(ctl, EXIT_UNREACHABLE, "malformed", "malformed reply from the agent at %s: %s", ctl->socket_path,
                    why);
}

/* Returns a connected fd, or -errno. A full backlog is EAGAIN on a Unix
 * socket: retried until the deadline. */
static int ctl_connect(const Ctl *ctl, int64_t deadline) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t len = strlen(ctl->socket_path);
        _cleanup_(closep) int fd = -1;

        if (len == 0)
                return -EINVAL;
        if (len >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, ctl->socket_path, len + 1);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        for (;;) {
                if (connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0)
                        return TAKE_FD(fd);
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        return -errno;
                if (poll_timeout(deadline) == 0)
                        return -ETIMEDOUT;
                (void) poll(NULL, 0, 10);
        }
}

static int send_all(int fd, const char *data, size_t len, int64_t deadline) {
        while (len > 0) {
                struct pollfd p = { .fd = fd, .events = POLLOUT };
                ssize_t n;
                int r;

                r = poll(&p, 1, poll_timeout(deadline));
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        return -ETIMEDOUT;
                n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                data += n;
                len -= (size_t) n;
        }
        return 0;
}

typedef struct LineReader {
        char *buf;
        size_t len, alloc;
} LineReader;

static void line_reader_done(LineReader *lr) {
        free(lr->buf);
        *lr = (LineReader) {};
}

/* 1 and *ret: a line. 0: clean EOF. -EPROTO: EOF inside a line. -EINTR: a
 * signal arrived on sig_fd. -ETIMEDOUT, -EMSGSIZE, other -errno. */
static int read_line(LineReader *lr, int fd, int sig_fd, int64_t deadline, char **ret) {
        for (;;) {
                struct pollfd p[2] = {
                        { .fd = fd, .events = POLLIN },
                        { .fd = sig_fd, .events = POLLIN },
                };
                char *nl = lr->len > 0 ? memchr(lr->buf, '\n', lr->len) : NULL;
                ssize_t n;
                int r;

                if (nl) {
                        size_t l = (size_t) (nl - lr->buf);
                        char *line = strndup(lr->buf, l);
                        if (!line)
                                return -ENOMEM;
                        memmove(lr->buf, nl + 1, lr->len - l - 1);
                        lr->len -= l + 1;
                        *ret = line;
                        return 1;
                }
                if (lr->len >= REPLY_MAX)
                        return -EMSGSIZE;

                r = poll(p, sig_fd >= 0 ? 2 : 1, poll_timeout(deadline));
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        return -ETIMEDOUT;
                if (sig_fd >= 0 && (p[1].revents & POLLIN))
                        return -EINTR;
                if (p[0].revents == 0)
                        continue;

                if (lr->alloc - lr->len < 4096) {
                        size_t a = MAX(lr->alloc * 2, (size_t) 65536);
                        char *b = realloc(lr->buf, a);
                        if (!b)
                                return -ENOMEM;
                        lr->buf = b;
                        lr->alloc = a;
                }
                n = recv(fd, lr->buf + lr->len, lr->alloc - lr->len, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return lr->len > 0 ? -EPROTO : 0;
                lr->len += (size_t) n;
        }
}

/* A line from the agent: a JSON object of our protocol version. */
static int parse_line(const char *line, json_object **ret, const char **ret_why) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_tokener *tok;
        json_object *v;
        size_t len = strlen(line), end;
        enum json_tokener_error jerr;

        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        o = json_tokener_parse_ex(tok, line, (int) MIN(len, (size_t) INT32_MAX));
        jerr = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        if (!o || jerr != json_tokener_success || len > INT32_MAX) {
                *ret_why = "not JSON";
                return -EBADMSG;
        }
        for (; end < len; end++)
                if (!strchr(" \t\r", line[end])) {
                        *ret_why = "trailing garbage after the JSON object";
                        return -EBADMSG;
                }
        if (!json_object_is_type(o, json_type_object)) {
                *ret_why = "not a JSON object";
                return -EBADMSG;
        }
        if (!json_object_object_get_ex(o, "version", &v) || !json_object_is_type(v, json_type_int)) {
                *ret_why = "no protocol version";
                return -EBADMSG;
        }
        if (json_object_get_int64(v) != CONTROL_PROTOCOL_VERSION) {
                *ret_why = "unsupported protocol version";
                return -EBADMSG;
        }
        *ret = TAKE_PTR(o);
        return 0;
}

/* The transport's failures, told apart for the operator. */
static int read_failure(const Ctl *ctl, int r) {
        switch (r) {
        case 0:
                return fail(ctl, EXIT_UNREACHABLE, "unreachable",
                            "the agent at %s closed the connection without replying", ctl->socket_path);
        case -EPROTO:
                return fail(ctl, EXIT_UNREACHABLE, "unreachable",
                            "truncated reply from the agent at %s (connection closed mid-line)", ctl->socket_path);
        case -ETIMEDOUT:
                return fail(ctl, EXIT_UNREACHABLE, "unreachable", "no reply from the agent at %s within %gs: %s",
                            ctl->socket_path, ctl->timeout_sec, strerror(ETIMEDOUT));
        case -EMSGSIZE:
                return garbage(ctl, "reply too large");
        default:
                return unreachable(ctl, -r, "cannot read from the agent at");
        }
}

static bool too_many(json_object *reply) {
        json_object *v;

        return json_object_object_get_ex(reply, "error", &v) && json_object_is_type(v, json_type_string) &&
               streq(json_object_get_string(v), CONTROL_ERROR_TOO_MANY);
}

static int refused_for_now(const Ctl *ctl) {
        return fail(ctl, EXIT_UNREACHABLE, "unreachable", "the agent at %s has no room for another client: %s",
                    ctl->socket_path, CONTROL_ERROR_TOO_MANY);
}

/* Connects, sends `req`, reads one reply. On success returns EXIT_OK with
 * the reply (a version-checked object with a boolean "ok") and, when
 * ret_fd is given, the open connection and its reader for more lines. Any
 * other return is an exit code, already explained on stderr. */
static int ctl_call(const Ctl *ctl, const ControlRequest *req, json_object **ret_reply, int *ret_fd,
                    LineReader *ret_reader) {
        _cleanup_(closep) int fd = -1;
        _cleanup_(freep) char *request = NULL, *framed = NULL, *line = NULL;
        _cleanup_(json_object_putp) json_object *reply = NULL;
        LineReader lr = {};
        int64_t deadline = deadline_after(ctl);
        const char *why = NULL;
        json_object *ok;
        int r;

        r = control_request_format(req, &request);
        if (r == -E2BIG)
                return usage_error(ctl, "reason too long (at most %d bytes)", CONTROL_REASON_MAX);
        if (r < 0)
                return usage_error(ctl, "cannot format request: %s", strerror(-r));
        if (asprintf(&framed, "%s\n", request) < 0)
                return fail(ctl, EXIT_UNREACHABLE, "failed", "out of memory");

        fd = ctl_connect(ctl, deadline);
        if (fd == -ETIMEDOUT)
                return fail(ctl, EXIT_UNREACHABLE, "unreachable", "cannot connect to the agent at %s within %gs: %s",
                            ctl->socket_path, ctl->timeout_sec, strerror(ETIMEDOUT));
        if (fd < 0)
                return unreachable(ctl, -fd, "cannot connect to the agent at");

        r = send_all(fd, framed, strlen(framed), deadline);
        if (r == -ETIMEDOUT)
                return read_failure(ctl, r);
        if (r < 0) {
                /* A full agent says why, then closes before our request is
                 * in: its line is still there to read. */
                int k = read_line(&lr, fd, -1, deadline, &line);
                line_reader_done(&lr);
                if (k > 0 && parse_line(line, &reply, &why) >= 0 && too_many(reply))
                        return refused_for_now(ctl);
                return unreachable(ctl, -r, "cannot send to the agent at");
        }

        r = read_line(&lr, fd, -1, deadline, &line);
        if (r <= 0) {
                line_reader_done(&lr);
                return read_failure(ctl, r);
        }
        r = parse_line(line, &reply, &why);
        if (r < 0) {
                line_reader_done(&lr);
                return garbage(ctl, why ? why : strerror(-r));
        }
        if (!json_object_object_get_ex(reply, "ok", &ok) || !json_object_is_type(ok, json_type_boolean)) {
                line_reader_done(&lr);
                return garbage(ctl, "no \"ok\" in the reply");
        }
        /* Not a refusal of the command: the agent could not take us at all
         * (status must not exit 1, "not serving", for that). */
        if (too_many(reply)) {
                line_reader_done(&lr);
                return refused_for_now(ctl);
        }

        *ret_reply = TAKE_PTR(reply);
        if (ret_fd) {
                *ret_fd = TAKE_FD(fd);
                *ret_reader = lr;
        } else
                line_reader_done(&lr);
        return EXIT_OK;
}

/* ok:false replies: the agent's own words. */
static const char *reply_error(json_object *reply) {
        json_object *v;

        if (json_object_object_get_ex(reply, "error", &v) && json_object_is_type(v, json_type_string))
                return json_object_get_string(v);
        return "unknown error";
}

static int agent_refused(const Ctl *ctl, const char *command, json_object *reply) {
        const char *err = reply_error(reply);

        return fail(ctl, EXIT_NOT_OK, strncmp(err, "permission denied", 17) == 0 ? "permission" : "refused", "%s: %s",
                    command, err);
}

static bool reply_ok(json_object *reply) {
        json_object *v;
        return json_object_object_get_ex(reply, "ok", &v) && json_object_get_boolean(v);
}

static int finish_output(int code) {
        if (fflush(stdout) != 0 || ferror(stdout)) {
                /* stdout is what failed: stderr only */
                fprintf(stderr, "monkeyctl: cannot write output: %s\n", strerror(errno));
                return code == EXIT_OK ? EXIT_NOT_OK : code;
        }
        return code;
}

/* The "fetch" half of fetch-then-show: one request whose reply carries
 * its answer where the protocol's table says, of the shape it says. The
 * answer is borrowed from *reply; any other return is the exit code when
 * the agent refused or answered garbage. `id`: incident's. */
static int fetch(Ctl *ctl, ControlCommand command, const char *id, json_object **reply, json_object **ret) {
        const ControlCommandInfo *info = control_command_info(command);
        json_type type = info->reply == CONTROL_REPLY_ARRAY ? json_type_array : json_type_object;
        ControlRequest req = {
                .version = CONTROL_PROTOCOL_VERSION,
                .command = command,
                .limit = (info->args & CONTROL_ARG_LIMIT) ? ctl->limit : 0,
                .id = (info->args & CONTROL_ARG_ID) ? (char *) id : NULL,
        };
        char why[96];
        int r;

        if (req.id && strlen(req.id) > CONTROL_ID_MAX)
                return usage_error(ctl, "%s id too long (at most %d bytes)", info->name, CONTROL_ID_MAX);
        r = ctl_call(ctl, &req, reply, NULL, NULL);
        if (r != EXIT_OK)
                return r;
        if (!reply_ok(*reply))
                return agent_refused(ctl, info->name, *reply);
        if (!json_object_object_get_ex(*reply, info->reply_key, ret) || !json_object_is_type(*ret, type)) {
                snprintf(why, sizeof why, "no \"%s\" %s in the reply", info->reply_key,
                         type == json_type_array ? "array" : "object");
                return garbage(ctl, why);
        }
        return EXIT_OK;
}

static int status_exit_code(json_object *status) {
        switch (control_status_verdict(status, NULL)) {
        case CONTROL_VERDICT_ROUTED:
                return EXIT_OK;
        case CONTROL_VERDICT_DEGRADED:
                return EXIT_DEGRADED;
        default:
                return EXIT_NOT_OK;
        }
}

/* The "show" half: the answer as JSON under the verb's key with --json,
 * else as its formatter's text; the exit code is the verb's mapping. */
static int show(Ctl *ctl, const Verb *verb, json_object *o) {
        _cleanup_(freep) char *text = NULL;
        int exit_code = verb->exit_code ? verb->exit_code(o) : EXIT_OK;
        int r;

        if (ctl->json) {
                print_json(verb->json_key, o);
                return finish_output(exit_code);
        }
        r = verb->format(o, &text);
        if (r < 0)
                return fail(ctl, EXIT_NOT_OK, "failed", "cannot format %s: %s", verb->what, strerror(-r));
        fputs(text, stdout);
        return finish_output(exit_code);
}

/* status, history, pool, incidents, and incident ID (args[0]). */
static int fetch_show(Ctl *ctl, const Verb *verb, const char *id) {
        _cleanup_(json_object_putp) json_object *reply = NULL;
        json_object *answer;
        int r;

        r = fetch(ctl, verb->command, id, &reply, &answer);
        if (r != EXIT_OK)
                return r;
        return show(ctl, verb, answer);
}

static int verb_show(Ctl *ctl, const Verb *verb, char **args, size_t n_args) {
        return fetch_show(ctl, verb, NULL);
}

static int verb_watch(Ctl *ctl, const Verb *verb, char **args, size_t n_args) {
        _cleanup_(json_object_putp) json_object *reply = NULL;
        _cleanup_(closep) int fd = -1, sig_fd = -1;
        ControlRequest req = { .version = CONTROL_PROTOCOL_VERSION, .command = CONTROL_WATCH };
        LineReader lr = {};
        sigset_t mask;
        int r, code = EXIT_OK;

        ctl->json_lines = true;
        /* Signals become readable events next to the socket: no handler, no global flag. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return fail(ctl, EXIT_NOT_OK, "failed", "cannot block signals: %s", strerror(errno));
        sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (sig_fd < 0)
                return fail(ctl, EXIT_NOT_OK, "failed", "signalfd: %s", strerror(errno));

        r = ctl_call(ctl, &req, &reply, &fd, &lr);
        if (r != EXIT_OK)
                return r;
        if (!reply_ok(reply)) {
                line_reader_done(&lr);
                return agent_refused(ctl, "watch", reply);
        }

        for (;;) {
                _cleanup_(freep) char *line = NULL, *text = NULL;
                _cleanup_(json_object_putp) json_object *msg = NULL;
                const char *why = NULL;
                json_object *event;

                r = read_line(&lr, fd, sig_fd, -1, &line);
                if (r == -EINTR)
                        break; /* ^C or SIGTERM: the watcher ends it, a normal end */
                if (r == 0 || r == -EPROTO || r == -ECONNRESET) {
                        /* A supervisor running `watch` must learn that the
                         * stream is over: the agent stopped or crashed. */
                        (void) fflush(stdout);
                        code = fail(ctl, EXIT_UNREACHABLE, "unreachable",
                                    "the agent at %s went away (connection closed): no more transitions",
                                    ctl->socket_path);
                        break;
                }
                if (r < 0) {
                        (void) fflush(stdout);
                        code = read_failure(ctl, r);
                        break;
                }
                if (parse_line(line, &msg, &why) < 0) {
                        code = garbage(ctl, why ? why : "unreadable event");
                        break;
                }
                /* newer agents may send other kinds of lines: skip what we do not know */
                if (!json_object_object_get_ex(msg, "event", &event) || !json_object_is_type(event, json_type_object))
                        continue;
                if (ctl->json) {
                        /* one line per event, as the agent sent it, with the schema */
                        _cleanup_(json_object_putp) json_object *out = with_schema(msg);
                        if (!out) {
                                code = EXIT_NOT_OK;
                                break;
                        }
                        puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN |
                                                                         JSON_C_TO_STRING_NOSLASHESCAPE));
                } else {
                        if (status_text_format_event(event, &text) < 0) {
                                code = EXIT_NOT_OK;
                                break;
                        }
                        puts(text);
                }
                if (fflush(stdout) != 0) {
                        code = EXIT_NOT_OK;
                        break;
                }
        }
        line_reader_done(&lr);
        return finish_output(code);
}

static int mutate_print(Ctl *ctl, json_object *reply) {
        json_object *v;

        if (ctl->json)
                print_json("reply", reply);
        else if (json_object_object_get_ex(reply, "message", &v) && json_object_is_type(v, json_type_string))
                puts(json_object_get_string(v));
        return finish_output(EXIT_OK);
}

/* drain, resume, test-alert, test-reboot: the same exchange, a message back. */
static int mutate(Ctl *ctl, ControlCommand command, const char *reason) {
        _cleanup_(json_object_putp) json_object *reply = NULL;
        ControlRequest req = { .version = CONTROL_PROTOCOL_VERSION, .command = command, .reason = (char *) reason };
        int r;

        r = ctl_call(ctl, &req, &reply, NULL, NULL);
        if (r != EXIT_OK)
                return r;
        if (!reply_ok(reply))
                return agent_refused(ctl, control_command_to_string(command), reply);
        return mutate_print(ctl, reply);
}

/* For config management and ExecReload=: the agent's verdict on the file.
 * A refusal's first line on stderr is the agent's "FILE:LINE: message" as
 * is, the form editors and CI logs jump to. */
static int verb_reload(Ctl *ctl, const Verb *verb, char **args, size_t n_args) {
        _cleanup_(json_object_putp) json_object *reply = NULL;
        ControlRequest req = { .version = CONTROL_PROTOCOL_VERSION, .command = CONTROL_RELOAD };
        const char *err;
        int r;

        r = ctl_call(ctl, &req, &reply, NULL, NULL);
        if (r != EXIT_OK)
                return r;
        if (reply_ok(reply))
                return mutate_print(ctl, reply);
        err = reply_error(reply);
        if (strncmp(err, "permission denied", 17) == 0)
                return agent_refused(ctl, "reload", reply);
        fprintf(stderr, "%s\nmonkeyctl: reload refused; the agent keeps running its previous config\n", err);
        return json_error(ctl, EXIT_NOT_OK, "refused", err);
}

/* The words after a verb as one text (drain's reason, a test alert). */
static int join_words(const Ctl *ctl, char **args, size_t n_args, char **ret) {
        _cleanup_(freep) char *text = NULL;
        size_t len = 0, pos = 0;

        for (size_t i = 0; i < n_args; i++)
                len += strlen(args[i]) + 1;
        if (len > 0) {
                text = malloc(len);
                if (!text)
                        return fail(ctl, EXIT_NOT_OK, "failed", "out of memory");
                for (size_t i = 0; i < n_args; i++) {
                        size_t l = strlen(args[i]);
                        memcpy(text + pos, args[i], l);
                        pos += l;
                        text[pos++] = i + 1 < n_args ? ' ' : '\0';
                }
                if (strlen(text) > CONTROL_REASON_MAX)
                        return usage_error(ctl, "text too long (%zu bytes, at most %d)", strlen(text),
                                           CONTROL_REASON_MAX);
        }
        *ret = TAKE_PTR(text);
        return EXIT_OK;
}

/* The verb's words, if it takes any, are the request's reason. */
static int verb_mutate(Ctl *ctl, const Verb *verb, char **args, size_t n_args) {
        _cleanup_(freep) char *text = NULL;
        int r;

        if (verb->args == VERB_ARGS_WORDS) {
                r = join_words(ctl, args, n_args, &text);
                if (r != EXIT_OK)
                        return r;
        }
        return mutate(ctl, verb->command, isempty(text) ? NULL : text);
}

static int verb_check(Ctl *ctl, const Verb *verb, char **args, size_t n_args) {
        static const char *const names[] = { "content", "status", "binding" };
        _cleanup_(json_object_putp) json_object *reply = NULL;
        ControlRequest req = { .version = CONTROL_PROTOCOL_VERSION, .command = CONTROL_CHECK };
        json_object *result, *detail = NULL, *v;
        int r;

        r = ctl_call(ctl, &req, &reply, NULL, NULL);
        if (r != EXIT_OK)
                return r;
        if (!json_object_object_get_ex(reply, "result", &result) || !json_object_is_type(result, json_type_object))
                return reply_ok(reply) ? garbage(ctl, "no \"result\" in the reply")
                                       : agent_refused(ctl, "check", reply);
        if (ctl->json) {
                print_json("result", result);
                return finish_output(reply_ok(reply) ? EXIT_OK : EXIT_NOT_OK);
        }
        json_object_object_get_ex(result, "detail", &detail);
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                const char *verdict = json_object_object_get_ex(result, names[i], &v) ? json_object_get_string(v) : "?";
                printf("%-8s %-7s %s\n", names[i], verdict,
                       detail && json_object_object_get_ex(detail, names[i], &v) ? json_object_get_string(v) : "");
        }
        if (!reply_ok(reply) && json_object_object_get_ex(result, "body_excerpt", &v) &&
            json_object_get_string_len(v) > 0) {
                /* the body's own text: escaped for the terminal here, once */
                char body[(CHECKS_EXCERPT * 3 + 4) * 4 + 8];
                checks_excerpt(json_object_get_string(v), (size_t) json_object_get_string_len(v), sizeof body, body,
                               sizeof body);
                printf("%-8s %-7s %s\n", "body", "", body);
        }
        return finish_output(reply_ok(reply) ? EXIT_OK : EXIT_NOT_OK);
}

#define FOLDED_FILE_MAX (512u * 1024u * 1024u)

/* A profile named on the command line: a folded file (a path, or a name
 * that exists), or an incident id whose stacks.folded the agent's
 * directory holds. *ret_label names it in the output. */
static int profile_load(Ctl *ctl, const char *arg, Folded *ret, char **ret_label) {
        _cleanup_(json_object_putp) json_object *reply = NULL;
        _cleanup_(freep) char *path = NULL, *text = NULL, *err = NULL;
        _cleanup_(closep) int fd = -1;
        json_object *inc, *v;
        struct stat st;
        size_t len;
        int r;

        if (strchr(arg, '/') || stat(arg, &st) == 0) {
                path = strdup(arg);
                if (!path)
                        return EXIT_NOT_OK;
        } else {
                const char *state = NULL, *why = NULL;

                r = fetch(ctl, CONTROL_INCIDENT, arg, &reply, &inc);
                if (r != EXIT_OK)
                        return r;
                if (!json_object_object_get_ex(inc, "dir", &v) || !json_object_is_type(v, json_type_string))
                        return garbage(ctl, "no \"dir\" in the incident");
                if (asprintf(&path, "%s/stacks.folded", json_object_get_string(v)) < 0)
                        return EXIT_NOT_OK;
                if (json_object_object_get_ex(inc, "profile", &v)) {
                        json_object *x;
                        if (json_object_object_get_ex(v, "state", &x))
                                state = json_object_get_string(x);
                        if (json_object_object_get_ex(v, "reason", &x))
                                why = json_object_get_string(x);
                }
                if (access(path, F_OK) < 0 && errno == ENOENT)
                        return fail(ctl, EXIT_NOT_OK, "failed", "incident %s has no profile (%s%s%s)", arg,
                                    strna(state), why ? ": " : "", strempty(why));
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
                return fail(ctl, EXIT_NOT_OK, "failed", "%s: %s%s", path, strerror(errno),
                            errno == EACCES ? " (the agent's state directory is root's: try sudo)" : "");
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return fail(ctl, EXIT_NOT_OK, "failed", "%s: not a regular file", path);
        r = read_full_fd(fd, FOLDED_FILE_MAX, &text, &len);
        if (r < 0)
                return fail(ctl, EXIT_NOT_OK, "failed", "%s: %s", path,
                            r == -EFBIG ? "larger than 512 MiB, not a profile this tool reads" : strerror(-r));
        r = folded_parse(text, len, ret, &err);
        if (r < 0)
                return fail(ctl, EXIT_NOT_OK, "failed", "%s: %s", path, err ? err : strerror(-r));
        *ret_label = TAKE_PTR(path);
        return EXIT_OK;
}

typedef struct SvgJob {
        const Folded *a, *b; /* b NULL: one profile */
        const FlameOptions *o;
} SvgJob;

/* The SVG goes to a temporary file beside the target, renamed over it
 * when whole: a failed render leaves no half graph behind. */
static int svg_write(const char *target, const SvgJob *job) {
        _cleanup_(freep) char *buf = NULL;
        size_t size = 0;
        FILE *f;
        int r;

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        r = job->b ? flamegraph_render_diff(job->a, job->b, job->o, f) : flamegraph_render(job->a, job->o, f);
        if (fclose(f) != 0 && r >= 0)
                r = -ENOMEM;
        if (r < 0)
                return r;
        return write_file_atomic_path(target, buf, size, 0644, WRITE_ATOMIC_NO_SYNC);
}

static int incident_diff(Ctl *ctl, const char *arg_a, const char *arg_b) {
        _cleanup_(folded_done) Folded a = FOLDED_INIT, b = FOLDED_INIT;
        _cleanup_(freep) char *label_a = NULL, *label_b = NULL, *title = NULL;
        _cleanup_(stackdiff_freep) StackDiff *d = NULL;
        const char *out = ctl->output ? ctl->output : "flame-diff.svg";
        FlameOptions o = { .negate = ctl->negate };
        SvgJob job = { .a = &a, .b = &b, .o = &o };
        int r;

        r = profile_load(ctl, arg_a, &a, &label_a);
        if (r != EXIT_OK)
                return r;
        r = profile_load(ctl, arg_b, &b, &label_b);
        if (r != EXIT_OK)
                return r;
        r = stackdiff_compute(&a, &b, &d);
        if (r < 0)
                return fail(ctl, EXIT_NOT_OK, "failed", "cannot compare the profiles: %s", strerror(-r));
        printf("A: %s\nB: %s\n\n", label_a, label_b);
        r = stackdiff_summary(d, 10, stdout);
        if (r < 0)
                return fail(ctl, EXIT_NOT_OK, "failed", "cannot write the summary: %s", strerror(-r));
        if (asprintf(&title, "Differential flame graph: %s -> %s%s", arg_a, arg_b,
                     ctl->negate ? " (widths of A)" : "") < 0)
                return EXIT_NOT_OK;
        o.title = title;
        o.subtitle = "red grew, blue shrank: the change of each frame's share of its own profile's samples";
        r = svg_write(out, &job);
        if (r < 0)
                return fail(ctl, EXIT_NOT_OK, "failed", "%s: %s", out, strerror(-r));
        printf("\ndifferential flame graph: %s (widths of %s; open it in a browser)\n", out, ctl->negate ? "A" : "B");
        return finish_output(EXIT_OK);
}

static int incident_flame(Ctl *ctl, const char *arg) {
        _cleanup_(folded_done) Folded a = FOLDED_INIT;
        _cleanup_(freep) char *label = NULL, *title = NULL;
        const char *out = ctl->output ? ctl->output : "flame.svg";
        FlameOptions o = {};
        SvgJob job = { .a = &a, .o = &o };
        int r;

        r = profile_load(ctl, arg, &a, &label);
        if (r != EXIT_OK)
                return r;
        if (asprintf(&title, "Flame graph: %s", arg) < 0)
                return EXIT_NOT_OK;
        o.title = title;
        r = svg_write(out, &job);
        if (r < 0)
                return fail(ctl, EXIT_NOT_OK, "failed", "%s: %s", out, strerror(-r));
        printf("flame graph of %s (%" PRIu64 " samples, %zu stacks): %s\n", label, a.total, a.n, out);
        return finish_output(EXIT_OK);
}

static int verb_incident(Ctl *ctl, const Verb *verb, char **args, size_t n_args) {
        if (n_args >= 1 && streq(args[0], "diff")) {
                if (n_args != 3)
                        return usage_error(ctl, "'incident diff' takes two profiles: incident ids or folded files");
                return incident_diff(ctl, args[1], args[2]);
        }
        if (n_args >= 1 && streq(args[0], "flame")) {
                if (n_args != 2)
                        return usage_error(ctl, "'incident flame' takes one profile: an incident id or a folded file");
                return incident_flame(ctl, args[1]);
        }
        if (n_args != 1)
                return usage_error(ctl, "'incident' takes one incident id (see 'monkeyctl incidents'), or diff A B, "
                                   "or flame A");
        if (ctl->output || ctl->negate)
                return usage_error(ctl, "-o/--output and --negate only go with 'incident diff' and 'incident flame'");
        return fetch_show(ctl, verb, args[0]);
}

/* `pool`, `pool budget` (shown, read from Redis now) and `pool budget
 * --min-serving N --max-unavailable M` (set, for the whole pool). */
static int verb_pool(Ctl *ctl, const Verb *verb, char **args, size_t n_args) {
        _cleanup_(json_object_putp) json_object *reply = NULL;
        _cleanup_(freep) char *text = NULL;
        bool set = ctl->min_serving >= 0 || ctl->max_unavailable >= 0;
        ControlRequest req = {
                .version = CONTROL_PROTOCOL_VERSION,
                .command = set ? CONTROL_POOL_BUDGET_SET : CONTROL_POOL_BUDGET,
                .has_min_serving = ctl->min_serving >= 0,
                .min_serving = (unsigned) MAX(ctl->min_serving, 0LL),
                .has_max_unavailable = ctl->max_unavailable >= 0,
                .max_unavailable = (unsigned) MAX(ctl->max_unavailable, 0LL),
        };
        json_object *result;
        int r;

        if (n_args == 0) {
                if (set)
                        return usage_error(ctl, "--min-serving and --max-unavailable only go with 'pool budget'");
                return fetch_show(ctl, verb, NULL);
        }
        if (!streq(args[0], "budget") || n_args > 1)
                return usage_error(ctl, "'pool' takes nothing, or 'budget' [--min-serving N] [--max-unavailable M] "
                                   "(got '%s')", args[n_args > 1 && streq(args[0], "budget") ? 1 : 0]);
        r = ctl_call(ctl, &req, &reply, NULL, NULL);
        if (r != EXIT_OK)
                return r;
        if (!json_object_object_get_ex(reply, "result", &result) || !json_object_is_type(result, json_type_object))
                return reply_ok(reply) ? garbage(ctl, "no \"result\" in the reply")
                                       : agent_refused(ctl, control_command_to_string(req.command), reply);
        if (ctl->json)
                print_json("result", result);
        else {
                r = status_text_format_budget(result, &text);
                if (r < 0)
                        return fail(ctl, EXIT_NOT_OK, "failed", "cannot format the budget: %s", strerror(-r));
                fputs(text, stdout);
        }
        return finish_output(EXIT_OK);
}

/* A budget number on the command line: digits only, in the bounds the
 * config takes. */
static int parse_budget(const char *s, long long min, long long max, long long *ret) {
        char *end = NULL;
        unsigned long long v;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || v < (unsigned long long) min || v > (unsigned long long) max)
                return -ERANGE;
        *ret = (long long) v;
        return 0;
}

static int verb_help(Ctl *ctl, const Verb *verb, char **args, size_t n_args) {
        usage(stdout);
        return finish_output(EXIT_OK);
}

static int parse_timeout(const char *s, double *ret) {
        char *end = NULL;
        double d;

        errno = 0;
        d = strtod(s, &end);
        if (errno != 0 || end == s || *end != '\0' || !isfinite(d) || d <= 0 || d > MAX_TIMEOUT_SEC)
                return -EINVAL;
        *ret = d;
        return 0;
}

static int parse_limit(const char *s, unsigned *ret) {
        char *end = NULL;
        unsigned long v;

        if (*s == '-' || *s == '+' || *s == ' ')
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || v < 1 || v > CONTROL_LIMIT_MAX)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },
                { "timeout", required_argument, NULL, 't' },
                { "limit", required_argument, NULL, 'n' },
                { "output", required_argument, NULL, 'o' },
                { "negate", no_argument, NULL, 'N' },
                { "min-serving", required_argument, NULL, 'M' },
                { "max-unavailable", required_argument, NULL, 'U' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        const char *env = getenv(SOCKET_ENV);
        Ctl ctl = {
                .socket_path = isempty(env) ? DEFAULT_SOCKET : env,
                .timeout_sec = DEFAULT_TIMEOUT_SEC,
                .min_serving = -1,
                .max_unavailable = -1,
        };
        const Verb *verb;
        int c;

        /* A usage error under --json is JSON too, even when it comes
         * before getopt reaches the --json. */
        for (int i = 1; i < argc && !streq(argv[i], "--"); i++)
                if (streq(argv[i], "--json") || streq(argv[i], "-j"))
                        ctl.json = true;

        /* GNU getopt permutes: options may follow the command ("status
         * --json"). Its own messages are off: ours go to JSON as well. */
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":s:jt:n:o:hV", options, NULL)) >= 0) {
                switch (c) {
                case 's':
                        if (isempty(optarg))
                                return usage_error(&ctl, "--socket needs a path");
                        ctl.socket_path = optarg;
                        break;
                case 'j':
                        ctl.json = true;
                        break;
                case 't':
                        ctl.timeout_given = true;
                        if (parse_timeout(optarg, &ctl.timeout_sec) < 0)
                                return usage_error(&ctl, "invalid timeout '%s' (seconds, > 0, at most %.0f)", optarg,
                                                   MAX_TIMEOUT_SEC);
                        break;
                case 'n':
                        if (parse_limit(optarg, &ctl.limit) < 0)
                                return usage_error(&ctl, "invalid count '%s' (1..%d)", optarg, CONTROL_LIMIT_MAX);
                        ctl.limit_set = true;
                        break;
                case 'o':
                        if (isempty(optarg))
                                return usage_error(&ctl, "--output needs a path");
                        ctl.output = optarg;
                        break;
                case 'N':
                        ctl.negate = true;
                        break;
                case 'M':
                        if (parse_budget(optarg, 0, POOLKEYS_MIN_SERVING_MAX, &ctl.min_serving) < 0)
                                return usage_error(&ctl, "invalid --min-serving '%s' (a whole number, 0-%d)", optarg,
                                                   POOLKEYS_MIN_SERVING_MAX);
                        break;
                case 'U':
                        if (parse_budget(optarg, POOLKEYS_MAX_UNAVAILABLE_MIN, POOLKEYS_MAX_UNAVAILABLE_MAX,
                                         &ctl.max_unavailable) < 0)
                                return usage_error(&ctl, "invalid --max-unavailable '%s' (a whole number, %d-%d%s)",
                                                   optarg, POOLKEYS_MAX_UNAVAILABLE_MIN, POOLKEYS_MAX_UNAVAILABLE_MAX,
                                                   streq(optarg, "0") ? "; 0 would let no host ever leave the pool"
                                                                      : "");
                        break;
                case 'h':
                        usage(stdout);
                        return finish_output(EXIT_OK);
                case 'V':
                        puts("monkeyctl " MONKEY_VERSION);
                        return finish_output(EXIT_OK);
                case ':':
                        if (strncmp(argv[optind - 1], "--", 2) != 0)
                                return usage_error(&ctl, "option '-%c' needs an argument", optopt);
                        return usage_error(&ctl, "option '%s' needs an argument", argv[optind - 1]);
                default:
                        if (optopt)
                                return usage_error(&ctl, "invalid option '-%c'", optopt);
                        return usage_error(&ctl, "unrecognized option '%s'", argv[optind - 1]);
                }
        }

        if (optind >= argc) {
                if (!ctl.json)
                        usage(stderr);
                return usage_error(&ctl, "no command given");
        }
        verb = verb_find(&ctl, argv[optind]);
        if (!verb)
                return EXIT_USAGE;
        optind++;

        if (verb->args == VERB_ARGS_NONE && optind < argc)
                return usage_error(&ctl, "'%s' takes no arguments (got '%s')", verb->name, argv[optind]);
        if (ctl.limit_set && !verb->takes_limit)
                return usage_error(&ctl, "-n/--limit only goes with 'history'");
        if ((ctl.min_serving >= 0 || ctl.max_unavailable >= 0) && verb->command != CONTROL_POOL)
                return usage_error(&ctl, "--min-serving and --max-unavailable only go with 'pool budget'");
        if ((ctl.output || ctl.negate) && !verb->takes_output)
                return usage_error(&ctl, "-o/--output and --negate only go with 'incident diff' and 'incident flame'");
        if (!ctl.timeout_given && verb->timeout_sec > 0)
                ctl.timeout_sec = verb->timeout_sec;

        return verb->run(&ctl, verb, argv + optind, (size_t) (argc - optind));
}
