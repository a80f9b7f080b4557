/* curl multi on sd-event: curl tells us which sockets to watch and when its
 * next timeout is (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION); we
 * hand readiness back with curl_multi_socket_action() and collect finished
 * transfers with curl_multi_info_read(). Callbacks run after the transfer
 * has been detached from the multi handle, so a callback may submit or
 * cancel freely. */
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <sys/epoll.h>

#include "log.h"

#define HTTP_TIMEOUT_DEFAULT (10 * USEC_PER_SEC)
#define HTTP_CONNECT_TIMEOUT_MAX (5 * USEC_PER_SEC)

struct HttpCall {
        Http *http;
        HttpCall *prev, *next;
        CURL *easy;
        struct curl_slist *headers;
        char *body_copy;            /* curl does not copy POSTFIELDS */
        size_t body_copy_len;
        http_done_t done;
        void *userdata;
        HttpResponse response;
        size_t body_alloc, body_max;
        usec_t started;
};

struct Http {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        HttpCall *calls;
        unsigned n_calls;
        bool in_socket_action; /* curl forbids re-entering it from its own callbacks */
};

static void call_free(HttpCall *c) {
        if (!c)
                return;
        if (c->easy) {
                if (c->http && c->http->multi)
                        curl_multi_remove_handle(c->http->multi, c->easy);
                curl_easy_cleanup(c->easy);
        }
        curl_slist_free_all(c->headers);
        if (c->body_copy)
                explicit_bzero(c->body_copy, c->body_copy_len);
        free(c->body_copy);
        free(c->response.body);
        free(c->response.content_type);
        free(c->response.request_id);
        free(c);
}

static void call_unlink(HttpCall *c) {
        Http *h = c->http;

        if (c->prev)
                c->prev->next = c->next;
        else if (h->calls == c)
                h->calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
        h->n_calls--;
}

static uint32_t epoll_events_for(int what) {
        switch (what) {
        case CURL_POLL_IN:
                return EPOLLIN;
        case CURL_POLL_OUT:
                return EPOLLOUT;
        case CURL_POLL_INOUT:
                return EPOLLIN | EPOLLOUT;
        default:
                return 0;
        }
}

static void process_done(Http *h) {
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(h->multi, &left))) {
                HttpCall *c = NULL;
                usec_t now = 0;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &c) != CURLE_OK || !c)
                        continue;
                c->response.result = msg->data.result;
                (void) curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->response.status);
                {
                        /* connected and about to send: curl stamps pretransfer then */
                        curl_off_t pre = 0;
                        c->response.sent = c->response.status > 0 ||
                                           (curl_easy_getinfo(c->easy, CURLINFO_PRETRANSFER_TIME_T, &pre) == CURLE_OK &&
                                            pre > 0);
                }
                /* A body cut on purpose ends with a write error: that is an answer. */
                if (c->response.result == CURLE_WRITE_ERROR && c->response.truncated && c->response.status > 0)
                        c->response.result = CURLE_OK;
                if (c->response.result != CURLE_OK)
                        (void) curl_easy_getinfo(c->easy, CURLINFO_HTTP_CONNECTCODE, &c->response.proxy_status);
                if (c->response.result != CURLE_OK && c->response.error[0] == '\0')
                        snprintf(c->response.error, sizeof c->response.error, "%s",
                                 curl_easy_strerror(c->response.result));
                if (sd_event_now(h->event, CLOCK_MONOTONIC, &now) >= 0 && now >= c->started)
                        c->response.elapsed = now - c->started;

                curl_multi_remove_handle(h->multi, c->easy);
                call_unlink(c);
                c->done(&c->response, c->userdata);
                call_free(c);
        }
}

static void socket_action(Http *h, curl_socket_t fd, int flags) {
        int running = 0;
        CURLMcode m;

        h->in_socket_action = true;
        m = curl_multi_socket_action(h->multi, fd, flags, &running);
        h->in_socket_action = false;
        if (m != CURLM_OK)
                log_warning("http: curl_multi_socket_action: %s", curl_multi_strerror(m));
        process_done(h);
}

static int io_handler(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Http *h = userdata;
        int flags = 0;

        if (revents & (EPOLLIN | EPOLLHUP))
                flags |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
        if (revents & EPOLLERR)
                flags |= CURL_CSELECT_ERR;
        socket_action(h, fd, flags);
        return 0;
}

static int timer_handler(sd_event_source *src, uint64_t usec, void *userdata) {
        socket_action(userdata, CURL_SOCKET_TIMEOUT, 0);
        return 0;
}

static int socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        Http *h = userp;
        sd_event_source *src = socketp;
        int r;

        if (what == CURL_POLL_REMOVE) {
                if (src) {
                        /* curl may close the fd right after: drop it from epoll now */
                        sd_event_source_disable_unref(src);
                        curl_multi_assign(h->multi, fd, NULL);
                }
                return 0;
        }
        if (src) {
                r = sd_event_source_set_io_events(src, epoll_events_for(what));
                if (r >= 0)
                        r = sd_event_source_set_enabled(src, SD_EVENT_ON);
                if (r < 0)
                        log_warning_errno(r, "http: cannot update socket watch: %m");
                return 0;
        }
        r = sd_event_add_io(h->event, &src, fd, epoll_events_for(what), io_handler, h);
        if (r < 0) {
                log_warning_errno(r, "http: cannot watch socket: %m");
                return -1;
        }
        (void) sd_event_source_set_description(src, "http-socket");
        curl_multi_assign(h->multi, fd, src);
        return 0;
}

static int timer_callback(CURLM *multi, long timeout_ms, void *userp) {
        Http *h = userp;
        uint64_t now;
        int r;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(h->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        r = sd_event_now(h->event, CLOCK_MONOTONIC, &now);
        if (r >= 0)
                r = sd_event_source_set_time(h->timer, now + (usec_t) timeout_ms * USEC_PER_MSEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(h->timer, SD_EVENT_ONESHOT);
        return r < 0 ? -1 : 0;
}

static size_t write_callback(char *data, size_t size, size_t nmemb, void *userdata) {
        HttpCall *c = userdata;
        size_t n = size * nmemb, room, take;

        room = c->body_max - c->response.body_len;
        take = MIN(n, room);
        if (take > 0) {
                if (c->response.body_len + take + 1 > c->body_alloc) {
                        size_t a = MAX(c->response.body_len + take + 1, MIN(c->body_alloc * 2, c->body_max + 1));
                        char *p = realloc(c->response.body, a);
                        if (!p)
                                return 0;
                        c->response.body = p;
                        c->body_alloc = a;
                }
                memcpy(c->response.body + c->response.body_len, data, take);
                c->response.body_len += take;
                c->response.body[c->response.body_len] = '\0';
        }
        if (take < n) {
                /* Keeping less than was sent: stop the transfer, we know enough. */
                c->response.truncated = true;
                return 0;
        }
        return n;
}

static char *header_value_dup(const char *v, size_t len) {
        while (len > 0 && isspace((unsigned char) *v)) {
                v++;
                len--;
        }
        while (len > 0 && isspace((unsigned char) v[len - 1]))
                len--;
        return strndup(v, len);
}

static size_t header_callback(char *data, size_t size, size_t nmemb, void *userdata) {
        HttpCall *c = userdata;
        size_t n = size * nmemb;
        const char *colon = memchr(data, ':', n);
        size_t name_len, vlen;
        const char *v;

        /* A new status line (after 100 Continue, say) starts a new header set. */
        if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
                c->response.retry_after = USEC_INFINITY;
                return n;
        }
        if (!colon)
                return n;
        name_len = (size_t) (colon - data);
        v = colon + 1;
        vlen = n - name_len - 1;

#define HEADER_IS(name) (name_len == strlen(name) && strncasecmp(data, name, name_len) == 0)
        if (HEADER_IS("Retry-After")) {
                _cleanup_(freep) char *value = header_value_dup(v, vlen);
                usec_t delay;
                if (value && http_parse_retry_after(value, time(NULL), &delay) >= 0)
                        c->response.retry_after = delay;
        } else if (HEADER_IS("Content-Type")) {
                free(c->response.content_type);
                c->response.content_type = header_value_dup(v, vlen);
        } else if (HEADER_IS("x-amzn-RequestId") || HEADER_IS("x-amz-request-id") || HEADER_IS("x-slack-req-id")) {
                free(c->response.request_id);
                c->response.request_id = header_value_dup(v, vlen);
        }
#undef HEADER_IS
        return n;
}

int http_new(sd_event *e, Http **ret) {
        _cleanup_(http_freep) Http *h = NULL;
        int r;

        h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->event = sd_event_ref(e);
        /* Safe to repeat: curl counts. Not thread-safe, and we have no threads. */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;
        h->multi = curl_multi_init();
        if (!h->multi)
                return -ENOMEM;
        /* Debian's libcurl resolves in a thread of its own (no c-ares): the
         * loop never waits on DNS. A build without it would block the loop
         * for as long as each lookup takes. */
        if (!(curl_version_info(CURLVERSION_NOW)->features & CURL_VERSION_ASYNCHDNS))
                log_warning("http: libcurl %s has no asynchronous resolver: each host name lookup blocks the "
                            "agent until it ends (use addresses in URLs), ignoring",
                            curl_version_info(CURLVERSION_NOW)->version);
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_callback);
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_callback);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);

        r = sd_event_add_time(e, &h->timer, CLOCK_MONOTONIC, USEC_INFINITY, 1, timer_handler, h);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(h->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(h->timer, "http-timer");
        *ret = TAKE_PTR(h);
        return 0;
}

Http *http_free(Http *h) {
        if (!h)
                return NULL;
        while (h->calls) {
                HttpCall *c = h->calls;
                call_unlink(c);
                call_free(c);
        }
        if (h->multi) {
                curl_multi_cleanup(h->multi);
                curl_global_cleanup();
        }
        sd_event_source_disable_unref(h->timer);
        sd_event_unref(h->event);
        free(h);
        return NULL;
}

unsigned http_n_calls(const Http *h) {
        return h ? h->n_calls : 0;
}

static long usec_to_ms(usec_t u) {
        return (long) MAX((usec_t) 1, u / USEC_PER_MSEC);
}

static int call_setup(HttpCall *c, const HttpRequest *req) {
        CURL *e = c->easy;
        usec_t timeout = req->timeout > 0 ? req->timeout : HTTP_TIMEOUT_DEFAULT;
        usec_t connect = req->connect_timeout > 0 ? req->connect_timeout : MIN(timeout, HTTP_CONNECT_TIMEOUT_MAX);
        const char *method = req->method ? req->method : "GET";
        CURLcode cr = CURLE_OK;

#define SET(opt, val)                                            \
        do {                                                     \
                if (cr == CURLE_OK)                              \
                        cr = curl_easy_setopt(e, opt, val);      \
        } while (0)
        SET(CURLOPT_URL, req->url);
        SET(CURLOPT_PRIVATE, c);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_TIMEOUT_MS, usec_to_ms(timeout));
        SET(CURLOPT_CONNECTTIMEOUT_MS, usec_to_ms(connect));
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        SET(CURLOPT_PROTOCOLS_STR, "http,https");
        SET(CURLOPT_USERAGENT, "monkeyd/" MONKEY_VERSION);
        SET(CURLOPT_WRITEFUNCTION, write_callback);
        SET(CURLOPT_WRITEDATA, c);
        SET(CURLOPT_HEADERFUNCTION, header_callback);
        SET(CURLOPT_HEADERDATA, c);
        SET(CURLOPT_ERRORBUFFER, c->response.error);
        /* A silent peer on an established connection must not hold a call
         * past its timeout, and a dead kept-alive connection must be found. */
        SET(CURLOPT_TCP_KEEPALIVE, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
        /* A call that ends (its timeout, a cancel) while the name is still
         * being resolved would otherwise join the resolver's thread: the
         * whole loop stalls until getaddrinfo() gives up, seconds with a DNS
         * server that does not answer (the fault matrix's slack/dns cell).
         * The thread cleans up after itself when it returns. */
        SET(CURLOPT_QUICK_EXIT, 1L);
#endif
        /* Ask DNS again for every new connection: curl would otherwise
         * keep a name's address for 60 s, whatever its TTL, and after a
         * failover that moves the name (an ElastiCache-style endpoint, a
         * load balancer's) post to the dead address for that long. A
         * lookup per connection is nothing at our rate of calls. */
        SET(CURLOPT_DNS_CACHE_TIMEOUT, 0L);
        if (req->use_env_proxy) {
                HttpEnvProxy ep;
                http_env_proxy(req->url, http_getenv, &ep);
                /* Our decision, set explicitly: curl reading the environment
                 * again would skip HTTP_PROXY, and its own no_proxy reading
                 * is turned off by a set (empty) CURLOPT_NOPROXY. */
                SET(CURLOPT_PROXY, ep.use);
                SET(CURLOPT_NOPROXY, "");
        } else
                /* "" turns off curl's own reading of http_proxy & co. */
                SET(CURLOPT_PROXY, "");
        if (streq(method, "POST")) {
                SET(CURLOPT_POST, 1L);
                SET(CURLOPT_POSTFIELDSIZE, (long) c->body_copy_len);
                SET(CURLOPT_POSTFIELDS, c->body_copy ? c->body_copy : "");
        } else if (streq(method, "PUT")) {
                SET(CURLOPT_CUSTOMREQUEST, "PUT");
                SET(CURLOPT_POSTFIELDSIZE, (long) c->body_copy_len);
                SET(CURLOPT_POSTFIELDS, c->body_copy ? c->body_copy : "");
        } else if (!streq(method, "GET"))
                SET(CURLOPT_CUSTOMREQUEST, method);
        if (c->headers)
                SET(CURLOPT_HTTPHEADER, c->headers);
        if (req->aws_sigv4) {
                SET(CURLOPT_AWS_SIGV4, req->aws_sigv4);
                SET(CURLOPT_USERPWD, req->userpwd);
        }
#undef SET
        return cr == CURLE_OK ? 0 : -EINVAL;
}

int http_submit(Http *h, const HttpRequest *req, http_done_t done, void *userdata, HttpCall **ret_call) {
        HttpCall *c;
        CURLMcode m;
        uint64_t now = 0;
        int r;

        if (!h || !req || !req->url || !done)
                return -EINVAL;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->http = h;
        c->done = done;
        c->userdata = userdata;
        c->response.retry_after = USEC_INFINITY;
        c->body_max = req->body_max > 0 ? req->body_max : HTTP_BODY_MAX_DEFAULT;
        c->response.body = calloc(1, 1);
        c->body_alloc = 1;
        c->easy = curl_easy_init();
        if (!c->response.body || !c->easy) {
                r = -ENOMEM;
                goto fail;
        }
        if (req->body) {
                c->body_copy = malloc(req->body_len + 1);
                if (!c->body_copy) {
                        r = -ENOMEM;
                        goto fail;
                }
                memcpy(c->body_copy, req->body, req->body_len);
                c->body_copy[req->body_len] = '\0';
                c->body_copy_len = req->body_len;
        }
        for (const char *const *i = req->headers; i && *i; i++) {
                struct curl_slist *l = curl_slist_append(c->headers, *i);
                if (!l) {
                        r = -ENOMEM;
                        goto fail;
                }
                c->headers = l;
        }
        r = call_setup(c, req);
        if (r < 0)
                goto fail;

        (void) sd_event_now(h->event, CLOCK_MONOTONIC, &now);
        c->started = now;
        c->next = h->calls;
        if (h->calls)
                h->calls->prev = c;
        h->calls = c;
        h->n_calls++;

        /* May call timer_callback, never our done callback: completion is
         * only collected from the loop's handlers. */
        m = curl_multi_add_handle(h->multi, c->easy);
        if (m != CURLM_OK) {
                call_unlink(c);
                r = -EIO;
                goto fail;
        }
        if (ret_call)
                *ret_call = c;
        return 0;
fail:
        c->http = NULL; /* not in the multi handle */
        call_free(c);
        return r;
}

void http_cancel(HttpCall *c) {
        if (!c)
                return;
        call_unlink(c);
        call_free(c);
}

int http_parse_retry_after(const char *value, time_t now, usec_t *ret) {
        const char *p = value;
        uint64_t secs = 0;
        time_t when;

        if (isempty(value))
                return -EINVAL;
        if (isdigit((unsigned char) *p)) {
                for (; isdigit((unsigned char) *p); p++) {
                        if (secs > UINT64_MAX / 10 / USEC_PER_SEC)
                                return -EINVAL;
                        secs = secs * 10 + (uint64_t) (*p - '0');
                }
                if (*p != '\0')
                        return -EINVAL;
                *ret = secs * USEC_PER_SEC;
                return 0;
        }
        when = curl_getdate(value, NULL);
        if (when < 0)
                return -EINVAL;
        *ret = when > now ? (usec_t) (when - now) * USEC_PER_SEC : 0;
        return 0;
}

const char *http_describe_failure(const HttpResponse *r, char *buf, size_t size) {
        char t[32];

        switch (r->result) {
        case CURLE_OK:
                snprintf(buf, size, "HTTP %ld", r->status);
                break;
        case CURLE_OPERATION_TIMEDOUT:
                snprintf(t, sizeof t, "%.1fs", (double) r->elapsed / USEC_PER_SEC);
                /* which phase ran out tells DNS trouble from a silent peer */
                if (strncmp(r->error, "Resolving timed out", 19) == 0)
                        snprintf(buf, size, "timeout resolving the host after %s", t);
                else if (strncmp(r->error, "Connection timed out", 20) == 0)
                        snprintf(buf, size, "timeout connecting after %s", t);
                else
                        snprintf(buf, size, "timeout after %s", t);
                break;
        case CURLE_COULDNT_CONNECT:
                snprintf(buf, size, "connection refused or unreachable");
                break;
        case CURLE_COULDNT_RESOLVE_HOST:
                snprintf(buf, size, "cannot resolve host");
                break;
        case CURLE_COULDNT_RESOLVE_PROXY:
                snprintf(buf, size, "cannot resolve the proxy");
                break;
        case CURLE_GOT_NOTHING:
                snprintf(buf, size, "empty reply (connection closed)");
                break;
        default:
                if (r->proxy_status >= 300) {
                        /* the proxy refused the tunnel: say so, or a 407 or 502
                         * would read as a fault of Slack or AWS */
                        snprintf(buf, size, "the proxy answered CONNECT with HTTP %ld", r->proxy_status);
                        break;
                }
                /* curl's text may quote the URL: keep only the code's own words. */
                snprintf(buf, size, "%s", curl_easy_strerror(r->result));
                break;
        }
        return buf;
}

const char *http_getenv(const char *name) {
        return getenv(name);
}

static const char *first_set(http_getenv_t lookup, const char *lower, const char *upper, const char **ret_var) {
        const char *v = lookup(lower);

        *ret_var = lower;
        if (!v) {
                v = lookup(upper);
                *ret_var = upper;
        }
        if (!v)
                *ret_var = NULL;
        return v;
}

/* The host of a URL as curl parses it (an IPv6 address in brackets):
 * NULL when curl cannot parse it (then no_proxy cannot name it). */
static char *url_host(const char *url) {
        CURLU *u = curl_url();
        char *host = NULL, *out = NULL;

        if (u && url && curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
                out = strdup(host);
        curl_free(host);
        curl_url_cleanup(u);
        return out;
}

void http_env_proxy(const char *url, http_getenv_t lookup, HttpEnvProxy *ret) {
        bool https = url && strncasecmp(url, "https://", 8) == 0;
        const char *var = NULL;

        *ret = (HttpEnvProxy) { .use = "" };
        ret->proxy = https ? first_set(lookup, "https_proxy", "HTTPS_PROXY", &var)
                           : first_set(lookup, "http_proxy", "HTTP_PROXY", &var);
        if (!ret->proxy)
                ret->proxy = first_set(lookup, "all_proxy", "ALL_PROXY", &var);
        ret->proxy_var = var;
        ret->no_proxy = first_set(lookup, "no_proxy", "NO_PROXY", &ret->no_proxy_var);
        if (isempty(ret->proxy))
                return;
        if (!isempty(ret->no_proxy)) {
                _cleanup_(freep) char *host = url_host(url);
                ret->exempt = host && http_no_proxy_match(ret->no_proxy, host);
        }
        if (!ret->exempt)
                ret->use = ret->proxy;
}

/* An IPv4 or IPv6 address in network order; its family, or 0 when `s` is no address. */
static int parse_ip(const char *s, size_t len, unsigned char addr[static 16]) {
        char buf[INET6_ADDRSTRLEN + 2];

        if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
                s++;
                len -= 2;
        }
        if (len == 0 || len >= sizeof buf)
                return 0;
        memcpy(buf, s, len);
        buf[len] = '\0';
        if (inet_pton(AF_INET, buf, addr) == 1)
                return AF_INET;
        if (inet_pton(AF_INET6, buf, addr) == 1)
                return AF_INET6;
        return 0;
}

static bool prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits) {
        unsigned bytes = bits / 8, rest = bits % 8;

        if (memcmp(a, b, bytes) != 0)
                return false;
        return rest == 0 || ((a[bytes] ^ b[bytes]) & (0xffU << (8 - rest)) & 0xffU) == 0;
}

static bool entry_matches(const char *e, size_t elen, const char *host, size_t hlen) {
        unsigned char hip[16], eip[16];
        int hfam = parse_ip(host, hlen, hip);

        if (elen == 1 && e[0] == '*')
                return true;
        if (hfam != 0) {
                const char *slash = memchr(e, '/', elen);
                unsigned bits = hfam == AF_INET ? 32 : 128, max = bits;

                if (slash) {
                        const char *p = slash + 1;
                        if (p == e + elen || elen - (size_t) (p - e) > 3)
                                return false;
                        bits = 0;
                        for (; p < e + elen; p++) {
                                if (*p < '0' || *p > '9')
                                        return false;
                                bits = bits * 10 + (unsigned) (*p - '0');
                        }
                        if (bits > max)
                                return false;
                        elen = (size_t) (slash - e);
                }
                return parse_ip(e, elen, eip) == hfam && prefix_equal(hip, eip, bits);
        }
        /* a name: itself or a subdomain of it; "*.corp" as Go and Java
         * write it is ".corp" */
        if (elen > 2 && e[0] == '*' && e[1] == '.') {
                e++;
                elen--;
        }
        while (elen > 0 && e[0] == '.') {
                e++;
                elen--;
        }
        while (elen > 0 && e[elen - 1] == '.')
                elen--;
        if (elen == 0 || elen > hlen)
                return false;
        if (strncasecmp(host + hlen - elen, e, elen) != 0)
                return false;
        return elen == hlen || host[hlen - elen - 1] == '.';
}

bool http_no_proxy_match(const char *no_proxy, const char *host) {
        size_t hlen;

        if (isempty(no_proxy) || isempty(host))
                return false;
        hlen = strlen(host);
        if (hlen > 0 && host[hlen - 1] == '.' && host[0] != '[')
                hlen--;
        for (const char *p = no_proxy; *p;) {
                size_t n;

                p += strspn(p, ", \t");
                n = strcspn(p, ", \t");
                if (n > 0 && entry_matches(p, n, host, hlen))
                        return true;
                p += n;
        }
        return false;
}

const char *http_proxy_display(const char *proxy, char *buf, size_t size) {
        CURLU *u = curl_url();
        _cleanup_(freep) char *with_scheme = NULL;
        char *scheme = NULL, *host = NULL, *port = NULL;

        /* Rebuilt from its parts, so that a user, a password or anything
         * else the operator put in the URL never reaches a log. curl takes
         * "proxy.corp:3128" without a scheme as http:// (CURLU_DEFAULT_SCHEME
         * would say https). */
        if (proxy && !strstr(proxy, "://") && asprintf(&with_scheme, "http://%s", proxy) < 0)
                with_scheme = NULL; /* then shown "(unparsable)" */
        if (u && proxy &&
            curl_url_set(u, CURLUPART_URL, with_scheme ? with_scheme : proxy, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
                (void) curl_url_get(u, CURLUPART_PORT, &port, 0); /* absent: the scheme's own */
                snprintf(buf, size, "%s://%s%s%s", scheme, host, port ? ":" : "", strempty(port));
        } else
                snprintf(buf, size, "(unparsable)");
        curl_free(scheme);
        curl_free(host);
        curl_free(port);
        curl_url_cleanup(u);
        return buf;
}

const char *http_env_proxy_describe(const char *url, http_getenv_t lookup, char *buf, size_t size) {
        HttpEnvProxy ep;
        char shown[256];

        http_env_proxy(url, lookup, &ep);
        if (isempty(ep.proxy))
                return NULL;
        if (ep.exempt) {
                _cleanup_(freep) char *host = url_host(url);
                snprintf(buf, size, "direct (%s names %s)", ep.no_proxy_var, strna(host));
        } else
                snprintf(buf, size, "through the proxy %s (%s)", http_proxy_display(ep.proxy, shown, sizeof shown),
                         ep.proxy_var);
        return buf;
}
