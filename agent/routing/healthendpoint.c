/* The health endpoint: a route on an HttpServer answering from the
 * agent's state. The answer is computed per request from the current state
 * (no cache to go stale), which costs a lookup and a short string. */
#include "healthendpoint.h"

#include <ctype.h>
#include <stdio.h>

#include "jsonutil.h"
#include "log.h"

/* Enough for "operator: maintenance window" or "cpu 97% for 60s"; the
 * endpoint is unauthenticated, so no more of the reason than that. */
#define HEALTH_REASON_MAX 120

struct HealthEndpoint {
        HttpServer *server;
        HealthStateOf state_of;
        void *userdata;

        /* for status */
        char *address;
        char *path;
        const char *from; /* static */
};

static const char *const traffic_table[_TRAFFIC_MAX] = {
        [TRAFFIC_SEND] = "send",
        [TRAFFIC_DRAIN] = "drain",
        [TRAFFIC_STOP] = "stop",
};

unsigned healthendpoint_status(State s) {
        return state_traffic(s) == TRAFFIC_SEND ? 200 : 503;
}

/* Printable ASCII only, at most HEALTH_REASON_MAX bytes: a reason may hold
 * an operator's words, and the answer must stay one line. */
static void reason_clean(const char *reason, char *buf, size_t size) {
        size_t n = 0;

        for (const char *p = reason ? reason : ""; *p && n + 1 < size; p++)
                buf[n++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
        buf[n] = '\0';
}

int healthendpoint_body(State s, const char *reason, bool json, char **ret_body, size_t *ret_len) {
        char why[HEALTH_REASON_MAX + 1], name[32];
        const char *state = state_to_string(s);
        char *body = NULL;
        int k;

        if (!ret_body || !ret_len)
                return -EINVAL;
        if (!state)
                state = "UNKNOWN";
        reason_clean(reason, why, sizeof why);

        if (json) {
                _cleanup_(json_object_putp) json_object *o = json_object_new_object();
                const char *text;

                if (!o)
                        return -ENOMEM;
                if (json_object_object_add(o, "state", json_object_new_string(state)) < 0 ||
                    json_object_object_add(o, "reason", *why ? json_object_new_string(why) : NULL) < 0 ||
                    json_object_object_add(o, "traffic", json_object_new_string(traffic_table[state_traffic(s)])) < 0)
                        return -ENOMEM;
                text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
                if (!text)
                        return -ENOMEM;
                k = asprintf(&body, "%s\n", text);
        } else {
                size_t i;

                for (i = 0; state[i] && i + 1 < sizeof name; i++)
                        name[i] = (char) tolower((unsigned char) state[i]);
                name[i] = '\0';
                k = asprintf(&body, "%s%s%s\n", name, *why ? ": " : "", why);
        }
        if (k < 0)
                return -ENOMEM;
        *ret_body = body;
        *ret_len = (size_t) k;
        return 0;
}

static int on_health(const HttpRequest *req, void *userdata, HttpReply *reply) {
        const HealthEndpoint *h = userdata;
        const char *reason = NULL, *format = httpserver_request_arg(req, "format");
        bool json = streq_ptr(format, "json");
        State s = h->state_of(h->userdata, &reason);
        int r;

        r = healthendpoint_body(s, reason, json, &reply->body, &reply->body_len);
        if (r < 0)
                return r;
        reply->status = healthendpoint_status(s);
        reply->content_type = json ? "application/json" : "text/plain; charset=utf-8";
        return 0;
}

int healthendpoint_new(HttpServer *server, const char *path, HealthStateOf state_of, void *userdata,
                       HealthEndpoint **ret) {
        _cleanup_(httpserver_freep) HttpServer *taken = server;
        _cleanup_(healthendpoint_freep) HealthEndpoint *h = NULL;
        int r;

        if (!server || !state_of || !ret)
                return -EINVAL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->server = TAKE_PTR(taken);
        h->state_of = state_of;
        h->userdata = userdata;
        h->path = strdup(isempty(path) ? "/" : path);
        if (!h->path)
                return -ENOMEM;
        r = httpserver_add_route(h->server, h->path, on_health, h);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(h);
        return 0;
}

HealthEndpoint *healthendpoint_free(HealthEndpoint *h) {
        if (!h)
                return NULL;
        httpserver_free(h->server);
        free(h->address);
        free(h->path);
        free(h);
        return NULL;
}

int healthendpoint_new_from_config(sd_event *e, const Config *c, HealthStateOf state_of, void *userdata,
                                   HealthEndpoint **ret) {
        _cleanup_(healthendpoint_freep) HealthEndpoint *h = NULL;
        HttpServer *server = NULL;
        const char *address = c->proxy.health_address;
        AgentCheckFrom from = c->proxy.health_from;
        bool fell_back = false;
        int r;

        if (!e || !c || !ret || !address)
                return -EINVAL;
        r = httpserver_new(e, address, c->proxy.health_port, NULL, &server);
        if (config_listen_fallback(address, from, r)) {
                log_warning("health: %s (from %s) is not an address of this host, listening on all addresses instead",
                            address, agent_check_from_to_string(from));
                address = config_listen_fallback(address, from, r);
                fell_back = true;
                r = httpserver_new(e, address, c->proxy.health_port, NULL, &server);
        }
        if (r < 0)
                return log_error_errno(r, "health: cannot listen for HTTP health checks on %s port %u: %m", address,
                                       (unsigned) c->proxy.health_port);
        r = healthendpoint_new(server, c->proxy.health_path, state_of, userdata, &h);
        if (r < 0)
                return log_error_errno(r, "health: cannot serve %s: %m", strna(c->proxy.health_path));
        h->address = strdup(address);
        if (!h->address)
                return -ENOMEM;
        h->from = fell_back                            ? "wildcard: the derived address is not on this host"
                  : from == AGENT_CHECK_FROM_CONFIG ? "[proxy] health_address"
                                                    : agent_check_from_to_string(from);
        log_info("health: answering HTTP health checks on %s port %u path %s (from %s)", h->address,
                 (unsigned) httpserver_port(h->server), h->path, h->from);
        *ret = TAKE_PTR(h);
        return 0;
}

HttpServer *healthendpoint_server(const HealthEndpoint *h) {
        return h ? h->server : NULL;
}

uint16_t healthendpoint_port(const HealthEndpoint *h) {
        return h ? httpserver_port(h->server) : 0;
}

json_object *healthendpoint_status_json(const HealthEndpoint *h) {
        HttpServerStats st;
        json_object *o;

        if (!h)
                return NULL;
        o = json_object_new_object();
        if (!o)
                return NULL;
        httpserver_stats(h->server, &st);
        json_object_object_add(o, "address", h->address ? json_object_new_string(h->address) : NULL);
        json_object_object_add(o, "port", json_object_new_int(httpserver_port(h->server)));
        json_object_object_add(o, "path", json_object_new_string(h->path));
        json_object_object_add(o, "from", h->from ? json_object_new_string(h->from) : NULL);
        json_object_object_add(o, "connections", json_object_new_int64(st.connections));
        json_object_object_add(o, "requests", json_object_new_int64((int64_t) st.requests));
        json_object_object_add(o, "refused", json_object_new_int64((int64_t) st.refused));
        return o;
}
