/* HAProxy's runtime API: see haproxy.h. */
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <systemd/sd-daemon.h>

#include "haproxy.h"
#include "clock.h"
#include "error.h"
#include "log.h"
#include "retry.h"

#define HAPROXY_ANSWER_MAX (4U * 1024U * 1024U)

struct Haproxy {
        const Options *opt;
        bool holding_empty;
};

int haproxy_new(const Options *o, Haproxy **ret) {
        Haproxy *h = calloc(1, sizeof(Haproxy));

        if (!h)
                return -ENOMEM;
        h->opt = o;
        *ret = h;
        return 0;
}

Haproxy *haproxy_free(Haproxy *h) {
        free(h);
        return NULL;
}

/* One command per connection: HAProxy answers and closes, so a reply is
 * "everything until EOF", and a wedged connection cannot poison the next
 * command. The whole exchange shares one deadline. */
static int haproxy_command(const Options *o, const char *cmd, char **ret_answer) {
        _cleanup_(closep) int fd = -1;
        _cleanup_(freep) char *line = NULL, *buf = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        usec_t deadline = clock_now(CLOCK_MONOTONIC) + o->timeout;
        size_t len, off = 0, size = 0, used = 0;

        if (strlen(o->haproxy_socket) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, o->haproxy_socket, strlen(o->haproxy_socket) + 1);
        if (asprintf(&line, "%s\n", cmd) < 0)
                return -ENOMEM;
        len = strlen(line);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        /* A full backlog is EAGAIN on a unix socket: try again next sync. */
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return negative_errno();

        for (;;) {
                usec_t now = clock_now(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd p = { .fd = fd, .events = off < len ? POLLOUT : POLLIN };
                int k = poll(&p, 1, (int) ((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        return -ETIMEDOUT;
                if (off < len) {
                        ssize_t w = send(fd, line + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (w < 0) {
                                if (errno == EAGAIN || errno == EINTR)
                                        continue;
                                return negative_errno();
                        }
                        off += (size_t) w;
                        continue;
                }
                if (size - used < 4096) {
                        if (size >= HAPROXY_ANSWER_MAX)
                                return -EFBIG;
                        size_t ns = size ? size * 2 : 8192;
                        char *t = realloc(buf, ns + 1);
                        if (!t)
                                return -ENOMEM;
                        buf = t;
                        size = ns;
                }
                ssize_t rd = recv(fd, buf + used, size - used, MSG_DONTWAIT);
                if (rd < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (rd == 0)
                        break;
                used += (size_t) rd;
        }
        if (!buf) {
                buf = strdup("");
                if (!buf)
                        return -ENOMEM;
        } else
                buf[used] = '\0';
        *ret_answer = TAKE_PTR(buf);
        return 0;
}

static bool haproxy_answer_is_empty(const char *a) {
        return strspn(a, " \r\n\t") == strlen(a);
}

/* Applies the plan; returns 0, or the first failure (the rest of the plan
 * waits for the next sync: HAProxy is re-read each time). */
int haproxy_apply(Haproxy *s, Endpoint **wantp, size_t *n_wantp, ProxysyncKeepFn keep, void *keep_data,
                  usec_t *ret_due, char **ret_error) {
        const Options *o = s->opt;
        _cleanup_(freep) char *state = NULL, *perr = NULL;
        _cleanup_(freep) Slot *slots = NULL;
        _cleanup_(proxysync_plan_done) SlotPlan plan = {};
        _cleanup_(freep) char *cmd = NULL;
        size_t n_slots = 0, ready = 0, draining = 0;
        unsigned long grace = (unsigned long) (o->drain_grace / USEC_PER_SEC);
        usec_t forgotten_due = USEC_INFINITY;
        char ep[ENDPOINT_STRLEN];
        int r;

        r = asprintf(&cmd, "show servers state %s", o->backend);
        if (r < 0)
                return -ENOMEM;
        r = haproxy_command(o, cmd, &state);
        if (r < 0) {
                if (asprintf(ret_error, "HAProxy runtime API %s: %s", o->haproxy_socket, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        r = proxysync_parse_servers_state(state, o->backend, o->prefix, &slots, &n_slots, &perr);
        if (r < 0) {
                if (asprintf(ret_error, "HAProxy backend %s: %s", o->backend, perr ? perr : strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        if (n_slots == 0) {
                if (asprintf(ret_error, "HAProxy backend %s has no servers named %s1, %s2...: add "
                             "'server-template %s 1-N 127.0.0.1:1 disabled'", o->backend, o->prefix, o->prefix,
                             o->prefix) < 0)
                        *ret_error = NULL;
                return -ENOENT;
        }

        {
                _cleanup_(freep) Endpoint *routed = calloc(n_slots + 1, sizeof(Endpoint));
                size_t n_routed = 0;
                usec_t due_forgotten = USEC_INFINITY;

                if (!routed)
                        return -ENOMEM;
                for (size_t i = 0; i < n_slots; i++)
                        if (slots[i].mode == SLOT_READY && slots[i].has_endpoint)
                                routed[n_routed++] = slots[i].endpoint;
                r = keep(keep_data, routed, n_routed, wantp, n_wantp, &due_forgotten, ret_error);
                if (r < 0)
                        return r;
                forgotten_due = due_forgotten;
        }
        const Endpoint *want = *wantp;
        size_t n_want = *n_wantp;

        for (size_t i = 0; i < n_slots; i++)
                if (slots[i].mode == SLOT_READY)
                        ready++;
        if (n_want == 0 && ready > 0 && !o->allow_empty) {
                if (!s->holding_empty)
                        log_warning("Pool %s has no routable member: keeping the %zu ready servers of %s "
                                    "(--allow-empty applies an empty pool)", o->pool, ready, o->backend);
                s->holding_empty = true;
                *ret_due = o->interval;
                return 0;
        }
        s->holding_empty = false;

        r = proxysync_plan(slots, n_slots, want, n_want, grace, &plan);
        if (r < 0)
                return r;
        for (size_t i = 0; i < plan.n_ops; i++) {
                const SlotOp *op = &plan.ops[i];
                const Slot *sl = &slots[op->slot];
                _cleanup_(freep) char *line = NULL, *answer = NULL;
                char shown[200];
                bool ok;

                r = proxysync_op_command(o->backend, slots, n_slots, op, &line);
                if (r < 0)
                        return r;
                r = haproxy_command(o, line, &answer);
                if (r < 0) {
                        if (asprintf(ret_error, "HAProxy '%s': %s", line, strerror(-r)) < 0)
                                *ret_error = NULL;
                        return r;
                }
                /* `addr` always answers a sentence; `state` answers nothing
                 * when it worked. */
                ok = op->kind == SLOT_OP_ADDR ? (strstr(answer, "changed") || strstr(answer, "no need to change"))
                                              : haproxy_answer_is_empty(answer);
                if (!ok) {
                        error_excerpt(answer, strcspn(answer, "\n"), shown, sizeof(shown));
                        if (asprintf(ret_error, "HAProxy refused '%s': %s", line, shown) < 0)
                                *ret_error = NULL;
                        return -EREMOTEIO;
                }
                switch (op->kind) {
                case SLOT_OP_ADDR:
                        log_info("%s/%s: now %s", o->backend, sl->name, proxysync_endpoint_format(&op->endpoint, ep, sizeof(ep)));
                        break;
                case SLOT_OP_READY:
                        log_info("%s/%s: ready (was %s)", o->backend, sl->name, proxysync_slot_mode_to_string(sl->mode));
                        break;
                case SLOT_OP_DRAIN:
                        log_info("%s/%s: %s left the pool, draining", o->backend, sl->name,
                                 sl->has_endpoint ? proxysync_endpoint_format(&sl->endpoint, ep, sizeof(ep)) : "-");
                        break;
                case SLOT_OP_MAINT:
                        log_info("%s/%s: drained for %lus, now maint", o->backend, sl->name, sl->since_change_sec);
                        break;
                default:
                        break;
                }
        }
        if (plan.unplaced > 0)
                log_warning("%zu routable members of pool %s have no free slot in %s: raise N in "
                            "'server-template %s 1-N'", plan.unplaced, o->pool, o->backend, o->prefix);

        /* Come back when the oldest drain is due for maint. A slot drained by
         * this very plan starts at 0 s; one that a plan op makes ready or
         * maint is not draining any more. */
        usec_t due = MIN(o->interval, forgotten_due);
        for (size_t i = 0; i < n_slots; i++) {
                bool has_op = false, drains_now = false;
                unsigned long since;

                for (size_t k = 0; k < plan.n_ops; k++)
                        if (plan.ops[k].slot == i) {
                                has_op = true;
                                drains_now |= plan.ops[k].kind == SLOT_OP_DRAIN;
                        }
                if (drains_now)
                        since = 0;
                else if (slots[i].mode == SLOT_DRAIN && !has_op)
                        since = slots[i].since_change_sec;
                else
                        continue;
                draining++;
                usec_t left = since >= grace ? 0 : (usec_t) (grace - since) * USEC_PER_SEC;
                due = MIN(due, left + USEC_PER_SEC);
        }
        *ret_due = due;
        (void) sd_notifyf(false, "STATUS=pool %s: %zu routable, %s: %zu ready, %zu draining%s", o->pool, n_want,
                          o->backend, plan.routed, draining, plan.unplaced ? ", SLOTS EXHAUSTED" : "");
        return 0;
}
