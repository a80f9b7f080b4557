/* One attempt of the three checks: the GET (content and status) and the
 * TCP connect (binding) run side by side on the loop; the report goes out
 * when both have answered. */
#include "checks.h"

#include <math.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "clock.h"
#include "log.h"
#include "numparse.h"
#include "statusset.h"

static const char *const verdict_table[_CHECK_VERDICT_MAX] = {
        [CHECK_PASS] = "pass",
        [CHECK_FAIL] = "fail",
        [CHECK_SKIPPED] = "skipped",
};

const char *check_verdict_to_string(CheckVerdict v) {
        return v >= 0 && v < _CHECK_VERDICT_MAX ? verdict_table[v] : NULL;
}

static bool body_contains(const char *body, size_t len, const char *needle) {
        size_t n = strlen(needle);
        return n == 0 || (len >= n && memmem(body, len, needle, n) != NULL);
}

void checks_evaluate_http(const Config *c, const regex_t *re, CURLcode result, long status, const char *body,
                          size_t len, bool truncated, const char *error, CheckReport *r) {
        const char *expect = c->checks.expect_content;
        char ex[80];

        r->http_status = result == CURLE_OK ? status : 0;
        /* text, not escaped: JSON escapes it once (a \x0a of ours became "\\x0a") */
        checks_excerpt_text(body ? body : "", body ? len : 0, CHECKS_EXCERPT, r->excerpt, sizeof r->excerpt);
        if (result != CURLE_OK) {
                r->status.verdict = r->content.verdict = CHECK_FAIL;
                snprintf(r->status.detail, sizeof r->status.detail, "no answer from %s: %s", c->checks.url,
                         strna(error));
                snprintf(r->content.detail, sizeof r->content.detail, "no body (no answer)");
                return;
        }
        if (status_set_contains(&c->checks.expect_status, (unsigned) status)) {
                r->status.verdict = CHECK_PASS;
                snprintf(r->status.detail, sizeof r->status.detail, "%ld", status);
        } else {
                char want[96] = "";
                size_t o = 0;
                for (size_t i = 0; i < c->checks.expect_status.n && o + 16 < sizeof want; i++) {
                        const StatusRange *sr = &c->checks.expect_status.ranges[i];
                        o += (size_t) snprintf(want + o, sizeof want - o, sr->lo == sr->hi ? "%s%u" : "%s%u-%u",
                                               i ? "," : "", sr->lo, sr->hi);
                }
                r->status.verdict = CHECK_FAIL;
                snprintf(r->status.detail, sizeof r->status.detail, "got %ld, want %s", status, want);
        }

        if (!body || len == 0) {
                r->content.verdict = CHECK_FAIL;
                snprintf(r->content.detail, sizeof r->content.detail, "empty body");
                return;
        }
        checks_excerpt(expect ? expect : "", expect ? strlen(expect) : 0, 60, ex, sizeof ex);
        if (isempty(expect)) {
                r->content.verdict = CHECK_PASS;
                snprintf(r->content.detail, sizeof r->content.detail, "%zu%s bytes (no expect_content)", len,
                         truncated ? "+" : "");
        } else if (re) {
                /* regexec needs a C string: the body is NUL-terminated by http.c */
                bool ok = memchr(body, '\0', len) == NULL && regexec(re, body, 0, NULL, 0) == 0;
                r->content.verdict = ok ? CHECK_PASS : CHECK_FAIL;
                snprintf(r->content.detail, sizeof r->content.detail, "%zu%s bytes %s /%s/", len, truncated ? "+" : "",
                         ok ? "match" : "do not match", ex + 3);
        } else {
                bool ok = body_contains(body, len, expect);
                r->content.verdict = ok ? CHECK_PASS : CHECK_FAIL;
                snprintf(r->content.detail, sizeof r->content.detail, "%zu%s bytes, %s \"%s\"", len,
                         truncated ? "+" : "", ok ? "contain" : "do not contain", ex);
        }
}

static bool in_prefix(const uint8_t *a, const uint8_t *net, const uint8_t *mask, size_t len) {
        for (size_t i = 0; i < len; i++)
                if ((a[i] & mask[i]) != (net[i] & mask[i]))
                        return false;
        return true;
}

/* The kernel treats a loopback interface's whole prefix as local (lo's
 * 127.0.0.1/8 makes 127.0.0.2 bindable), so an address inside it counts as
 * configured; elsewhere only the exact address does. */
bool checks_address_configured(const char *addr, const struct ifaddrs *list) {
        struct in_addr v4;
        struct in6_addr v6;
        bool is4 = inet_pton(AF_INET, addr, &v4) == 1, is6 = !is4 && inet_pton(AF_INET6, addr, &v6) == 1;

        for (const struct ifaddrs *i = list; i && (is4 || is6); i = i->ifa_next) {
                const struct sockaddr *sa = i->ifa_addr, *nm = i->ifa_netmask;
                bool loop = (i->ifa_flags & IFF_LOOPBACK) && nm && nm->sa_family == (sa ? sa->sa_family : -1);
                const uint8_t *have, *mask, *want;
                size_t len;

                if (!sa)
                        continue;
                if (is4 && sa->sa_family == AF_INET) {
                        have = (const uint8_t *) &((const struct sockaddr_in *) sa)->sin_addr;
                        mask = loop ? (const uint8_t *) &((const struct sockaddr_in *) nm)->sin_addr : NULL;
                        want = (const uint8_t *) &v4;
                        len = sizeof v4;
                } else if (is6 && sa->sa_family == AF_INET6) {
                        have = (const uint8_t *) &((const struct sockaddr_in6 *) sa)->sin6_addr;
                        mask = loop ? (const uint8_t *) &((const struct sockaddr_in6 *) nm)->sin6_addr : NULL;
                        want = (const uint8_t *) &v6;
                        len = sizeof v6;
                } else
                        continue;
                if (memcmp(have, want, len) == 0 || (mask && in_prefix(want, have, mask, len)))
                        return true;
        }
        return false;
}

json_object *check_report_json(const CheckReport *r) {
        json_object *o = json_object_new_object(), *d = json_object_new_object();
        char at[32];

        if (!o || !d) {
                json_object_put(o);
                json_object_put(d);
                return NULL;
        }
        json_object_object_add(o, "content", json_object_new_string(check_verdict_to_string(r->content.verdict)));
        json_object_object_add(o, "status", json_object_new_string(check_verdict_to_string(r->status.verdict)));
        json_object_object_add(o, "binding", json_object_new_string(check_verdict_to_string(r->binding.verdict)));
        json_object_object_add(o, "ok", json_object_new_boolean(r->ok));
        json_object_object_add(o, "at", json_object_new_string(format_iso8601(at, sizeof at, r->at)));
        json_object_object_add(d, "content", json_object_new_string(r->content.detail));
        json_object_object_add(d, "status", json_object_new_string(r->status.detail));
        json_object_object_add(d, "binding", json_object_new_string(r->binding.detail));
        json_object_object_add(o, "detail", d);
        json_object_object_add(o, "http_status", r->http_status ? json_object_new_int64(r->http_status) : NULL);
        json_object_object_add(o, "body_excerpt", json_object_new_string(r->excerpt));
        json_object_object_add(o, "attempt", json_object_new_int((int) r->attempt));
        return o;
}

/* --- the runner ------------------------------------------------------------ */

struct Checks {
        sd_event *event;
        Http *http;
        /* A reference of our own (config_ref): a reload hands us the new
         * config through checks_reconfigure() and drops the agent's
         * reference to the old one while a run may still be reading it. */
        Config *config;
        regex_t re;
        bool have_re;
        char *url, *public_address, *local_address;
        bool local_from_imds;   /* local_address came from IMDS, not [checks] */

        bool running, http_done, tcp_done;
        usec_t started;         /* CLOCK_MONOTONIC, for the durations */
        HttpCall *call;
        int fd;
        sd_event_source *io, *timer;
        CheckReport report;
        checks_done_t cb;
        void *userdata;
};

/* What a Checks takes from a config, built apart so that a reload either
 * applies all of it or none. */
typedef struct ChecksSettings {
        regex_t re;
        bool have_re;
        char *url, *public_address, *local_address;
} ChecksSettings;

static void checks_settings_done(ChecksSettings *s) {
        if (s->have_re)
                regfree(&s->re);
        free(s->url);
        free(s->public_address);
        free(s->local_address);
        *s = (ChecksSettings) {};
}

static int checks_settings_load(const Config *c, ChecksSettings *ret, char **ret_error) {
        ChecksSettings s = {};

        s.url = strdup(strempty(c->checks.url));
        s.public_address = c->checks.public_address ? strdup(c->checks.public_address) : NULL;
        s.local_address = c->checks.local_address ? strdup(c->checks.local_address) : NULL;
        if (!s.url || (c->checks.public_address && !s.public_address) ||
            (c->checks.local_address && !s.local_address)) {
                checks_settings_done(&s);
                return -ENOMEM;
        }
        if (c->checks.expect_content && strncmp(c->checks.expect_content, "re:", 3) == 0) {
                if (regcomp(&s.re, c->checks.expect_content + 3, REG_EXTENDED | REG_NOSUB | REG_NEWLINE) != 0) {
                        if (ret_error)
                                *ret_error = strdup("[checks] expect_content: invalid regular expression");
                        checks_settings_done(&s);
                        return -EINVAL;
                }
                s.have_re = true;
        }
        *ret = s;
        return 0;
}

/* Move s into k (k's old settings end up in s, for the caller to drop). */
static void checks_settings_swap(Checks *k, ChecksSettings *s) {
        ChecksSettings old = { .have_re = k->have_re, .url = k->url, .public_address = k->public_address,
                               .local_address = k->local_address };

        if (k->have_re)
                old.re = k->re;
        k->have_re = s->have_re;
        if (s->have_re)
                k->re = s->re;
        k->url = s->url;
        k->public_address = s->public_address;
        k->local_address = s->local_address;
        *s = old;
}

int checks_new(sd_event *e, Http *http, Config *c, Checks **ret, char **ret_error) {
        ChecksSettings s = {};
        Checks *k;
        int r;

        r = checks_settings_load(c, &s, ret_error);
        if (r < 0)
                return r;
        k = calloc(1, sizeof *k);
        if (!k) {
                checks_settings_done(&s);
                return -ENOMEM;
        }
        k->fd = -1;
        k->event = sd_event_ref(e);
        k->http = http;
        k->config = config_ref(c);
        checks_settings_swap(k, &s);
        *ret = k;
        return 0;
}

int checks_reconfigure(Checks *k, Config *c, char **ret_error) {
        ChecksSettings s = {};
        int r;

        if (!k || !c)
                return -EINVAL;
        r = checks_settings_load(c, &s, ret_error);
        if (r < 0)
                return r;
        /* An address IMDS gave us stays unless [checks] now names one. */
        if (!s.local_address && k->local_from_imds && k->local_address) {
                s.local_address = strdup(k->local_address);
                if (!s.local_address) {
                        checks_settings_done(&s);
                        return -ENOMEM;
                }
        } else
                k->local_from_imds = false;
        /* A run in flight finishes under the new settings: its request was
         * already handed to curl (which copied the URL), and every later
         * read (the verdicts, the binding's detail) now sees one config. */
        checks_settings_swap(k, &s);
        checks_settings_done(&s);
        config_free(k->config);
        k->config = config_ref(c);
        return 0;
}

static void tcp_clear(Checks *k) {
        k->io = sd_event_source_disable_unref(k->io);
        if (k->fd >= 0)
                close(k->fd);
        k->fd = -1;
}

void checks_cancel(Checks *k) {
        if (!k)
                return;
        http_cancel(k->call);
        k->call = NULL;
        tcp_clear(k);
        k->timer = sd_event_source_disable_unref(k->timer);
        k->running = false;
}

Checks *checks_free(Checks *k) {
        if (!k)
                return NULL;
        checks_cancel(k);
        if (k->have_re)
                regfree(&k->re);
        free(k->url);
        free(k->public_address);
        free(k->local_address);
        config_free(k->config);
        sd_event_unref(k->event);
        free(k);
        return NULL;
}

int checks_set_local_address(Checks *k, const char *addr) {
        char *s;

        if (k->config->checks.local_address)
                return 0; /* the config wins */
        s = addr ? strdup(addr) : NULL;
        if (addr && !s)
                return -ENOMEM;
        free(k->local_address);
        k->local_address = s;
        k->local_from_imds = s != NULL;
        return 0;
}

static void local_address_check(Checks *k, char *buf, size_t size, bool *ok) {
        struct ifaddrs *ifa = NULL;

        if (!k->local_address) {
                *ok = true;
                buf[0] = '\0';
                return;
        }
        if (getifaddrs(&ifa) < 0) {
                *ok = false;
                snprintf(buf, size, "; cannot list interfaces: %s", strerror(errno));
                return;
        }
        *ok = checks_address_configured(k->local_address, ifa);
        freeifaddrs(ifa);
        snprintf(buf, size, "; %s %s on an interface", k->local_address, *ok ? "is" : "is NOT");
}

static void maybe_finish(Checks *k) {
        checks_done_t cb = k->cb;
        void *userdata = k->userdata;
        CheckReport r;

        if (!k->http_done || !k->tcp_done)
                return;
        k->timer = sd_event_source_disable_unref(k->timer);
        k->running = false;
        k->report.ok = k->report.content.verdict != CHECK_FAIL && k->report.status.verdict != CHECK_FAIL &&
                       k->report.binding.verdict != CHECK_FAIL;
        r = k->report;
        cb(&r, userdata);
}

static void binding_done(Checks *k, int error) {
        char local[160];
        bool local_ok;

        tcp_clear(k);
        if (error != EINVAL && error != ETIMEDOUT) /* tried, and it answered */
                k->report.binding_seconds = (double) (clock_now(CLOCK_MONOTONIC) - k->started) / USEC_PER_SEC;
        local_address_check(k, local, sizeof local, &local_ok);
        if (error == 0 && local_ok) {
                k->report.binding.verdict = CHECK_PASS;
                snprintf(k->report.binding.detail, sizeof k->report.binding.detail, "%s accepts connections%s",
                         k->public_address, local);
        } else {
                k->report.binding.verdict = CHECK_FAIL;
                snprintf(k->report.binding.detail, sizeof k->report.binding.detail, "%s: %s%s", k->public_address,
                         error ? strerror(error) : "accepts connections", local);
        }
        k->tcp_done = true;
        maybe_finish(k);
}

static int on_connect(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Checks *k = userdata;
        int err = 0;
        socklen_t l = sizeof err;

        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                err = errno;
        binding_done(k, err);
        return 0;
}

/* HOST:PORT or [V6]:PORT, numeric only: a DNS lookup would block the loop. */
static int parse_hostport(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len) {
        char host[INET6_ADDRSTRLEN + 2];
        const char *colon, *h = s;
        size_t hl;
        uint16_t port;
        struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM }, *ai = NULL;

        if (!s)
                return -EINVAL;
        colon = strrchr(s, ':');
        if (!colon)
                return -EINVAL;
        hl = (size_t) (colon - s);
        if (*h == '[' && hl >= 2 && h[hl - 1] == ']') {
                h++;
                hl -= 2;
        }
        if (hl == 0 || hl >= sizeof host)
                return -EINVAL;
        memcpy(host, h, hl);
        host[hl] = '\0';
        if (parse_port_decimal(colon + 1, strlen(colon + 1), &port) < 0)
                return -EINVAL;
        if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || !ai)
                return -EINVAL;
        memcpy(ret, ai->ai_addr, ai->ai_addrlen);
        *ret_len = ai->ai_addrlen;
        freeaddrinfo(ai);
        return 0;
}

static void binding_start(Checks *k) {
        struct sockaddr_storage ss;
        socklen_t sl = 0;
        int r;

        if (!k->public_address) {
                char local[160];
                bool ok;
                local_address_check(k, local, sizeof local, &ok);
                k->report.binding.verdict = !k->local_address ? CHECK_SKIPPED : ok ? CHECK_PASS : CHECK_FAIL;
                snprintf(k->report.binding.detail, sizeof k->report.binding.detail, "no public address to try%s",
                         local);
                k->tcp_done = true;
                return;
        }
        if (parse_hostport(k->public_address, &ss, &sl) < 0) {
                binding_done(k, EINVAL);
                return;
        }
        k->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (k->fd < 0) {
                binding_done(k, errno);
                return;
        }
        if (connect(k->fd, (struct sockaddr *) &ss, sl) < 0 && errno != EINPROGRESS) {
                binding_done(k, errno);
                return;
        }
        r = sd_event_add_io(k->event, &k->io, k->fd, EPOLLOUT, on_connect, k);
        if (r < 0)
                binding_done(k, -r);
}

static void on_http(const HttpResponse *resp, void *userdata) {
        Checks *k = userdata;
        char why[128];

        k->call = NULL;
        k->report.http_seconds = (double) (clock_now(CLOCK_MONOTONIC) - k->started) / USEC_PER_SEC;
        checks_evaluate_http(k->config, k->have_re ? &k->re : NULL, resp->result, resp->status, resp->body,
                             resp->body_len, resp->truncated, http_describe_failure(resp, why, sizeof why), &k->report);
        k->http_done = true;
        maybe_finish(k);
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Checks *k = userdata;

        k->timer = sd_event_source_disable_unref(k->timer);
        if (!k->tcp_done)
                binding_done(k, ETIMEDOUT);
        return 0;
}

int checks_run(Checks *k, checks_done_t cb, void *userdata) {
        HttpRequest req = {
                .method = "GET",
                .url = k->url,
                .timeout = k->config->checks.timeout,
                .body_max = CHECKS_BODY_MAX,
        };
        int r;

        if (k->running)
                return -EBUSY;
        k->report = (CheckReport) {
                .at = clock_now(CLOCK_REALTIME) / USEC_PER_SEC * USEC_PER_SEC,
                .http_seconds = NAN,
                .binding_seconds = NAN,
        };
        k->started = clock_now(CLOCK_MONOTONIC);
        k->cb = cb;
        k->userdata = userdata;
        k->http_done = k->tcp_done = false;
        k->running = true;
        r = sd_event_add_time_relative(k->event, &k->timer, CLOCK_MONOTONIC, k->config->checks.timeout, USEC_PER_MSEC,
                                       on_timeout, k);
        if (r >= 0)
                r = http_submit(k->http, &req, on_http, k, &k->call);
        if (r < 0) {
                checks_cancel(k);
                return r;
        }
        binding_start(k);
        return 0;
}
