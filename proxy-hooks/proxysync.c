/* monkey-proxy-sync's pure core: see proxysync.h. */
#include "proxysync.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>

#include "error.h"
#include "numparse.h"

#define NAME_MAX_LEN 64
#define SERVERS_STATE_MAX_LINE 4096

bool proxysync_name_is_valid(const char *s) {
        size_t n = 0;

        if (!s)
                return false;
        for (const char *p = s; *p; p++, n++)
                if (!isalnum((unsigned char) *p) && !strchr("._-", *p))
                        return false;
        return n > 0 && n <= NAME_MAX_LEN;
}

/* Strict decimal (numparse.h's grammar) within max. */
static int parse_ulong(const char *s, size_t len, unsigned long max, unsigned long *ret) {
        uint64_t v;
        int r;

        r = parse_u64_decimal(s, len, &v);
        if (r < 0)
                return r;
        if (v > max)
                return -ERANGE;
        *ret = (unsigned long) v;
        return 0;
}

int proxysync_parse_endpoint(const char *s, Endpoint *ret) {
        Endpoint e = {};
        char ip[INET6_ADDRSTRLEN];
        const char *colon, *ip_start, *ip_end;
        unsigned char buf[sizeof(struct in6_addr)];

        if (!s || !ret)
                return -EINVAL;
        if (s[0] == '[') {
                ip_start = s + 1;
                ip_end = strchr(s, ']');
                if (!ip_end || ip_end[1] != ':')
                        return -EINVAL;
                colon = ip_end + 1;
                e.family = AF_INET6;
        } else {
                ip_start = s;
                colon = strchr(s, ':');
                if (!colon || strchr(colon + 1, ':'))
                        return -EINVAL;
                ip_end = colon;
                e.family = AF_INET;
        }
        if ((size_t) (ip_end - ip_start) >= sizeof(ip) || ip_end == ip_start)
                return -EINVAL;
        memcpy(ip, ip_start, (size_t) (ip_end - ip_start));
        ip[ip_end - ip_start] = '\0';
        if (inet_pton(e.family, ip, buf) != 1)
                return -EINVAL;
        if (!inet_ntop(e.family, buf, e.ip, sizeof(e.ip)))
                return -EINVAL;
        if (parse_port_decimal(colon + 1, strlen(colon + 1), &e.port) < 0)
                return -EINVAL;
        *ret = e;
        return 0;
}

const char *proxysync_endpoint_format(const Endpoint *e, char *buf, size_t size) {
        if (e->family == AF_INET6)
                snprintf(buf, size, "[%s]:%u", e->ip, (unsigned) e->port);
        else
                snprintf(buf, size, "%s:%u", e->ip, (unsigned) e->port);
        return buf;
}

int proxysync_endpoint_compare(const Endpoint *a, const Endpoint *b) {
        unsigned char x[sizeof(struct in6_addr)] = {}, y[sizeof(struct in6_addr)] = {};
        int r;

        if (a->family != b->family)
                return a->family < b->family ? -1 : 1;
        /* Numeric order, so 127.0.1.9 sorts before 127.0.1.10. */
        (void) inet_pton(a->family, a->ip, x);
        (void) inet_pton(b->family, b->ip, y);
        r = memcmp(x, y, a->family == AF_INET6 ? 16 : 4);
        if (r != 0)
                return r < 0 ? -1 : 1;
        if (a->port != b->port)
                return a->port < b->port ? -1 : 1;
        return 0;
}

bool proxysync_endpoint_equal(const Endpoint *a, const Endpoint *b) {
        return proxysync_endpoint_compare(a, b) == 0;
}

static int endpoint_cmp_qsort(const void *a, const void *b) {
        return proxysync_endpoint_compare(a, b);
}

int proxysync_routable(char *const *members, char *const *owners, const long long *pttl_ms, size_t n,
                       Endpoint **ret, size_t *ret_n, long long *ret_min_pttl_ms, size_t *ret_skipped) {
        _cleanup_(freep) Endpoint *eps = NULL;
        size_t k = 0, skipped = 0, m = 0;
        long long min_pttl = -1;

        if (!ret || !ret_n || (n > 0 && (!members || !owners || !pttl_ms)))
                return -EINVAL;
        eps = calloc(n > 0 ? n : 1, sizeof(Endpoint));
        if (!eps)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                /* No owner: nobody renews a lease for it, so nobody vouches for it. */
                if (!members[i] || isempty(owners[i]) || pttl_ms[i] == -2 || pttl_ms[i] < -2 ||
                    proxysync_parse_endpoint(members[i], &eps[k]) < 0) {
                        skipped++;
                        continue;
                }
                if (pttl_ms[i] >= 0 && (min_pttl < 0 || pttl_ms[i] < min_pttl))
                        min_pttl = pttl_ms[i];
                k++;
        }
        if (k > 1)
                qsort(eps, k, sizeof(Endpoint), endpoint_cmp_qsort);
        for (size_t i = 0; i < k; i++)
                if (m == 0 || !proxysync_endpoint_equal(&eps[m - 1], &eps[i]))
                        eps[m++] = eps[i];
        *ret = TAKE_PTR(eps);
        *ret_n = m;
        if (ret_min_pttl_ms)
                *ret_min_pttl_ms = min_pttl;
        if (ret_skipped)
                *ret_skipped = skipped;
        return 0;
}

static const char *const slot_mode_table[_SLOT_MODE_MAX] = {
        [SLOT_READY] = "ready",
        [SLOT_DRAIN] = "drain",
        [SLOT_MAINT] = "maint",
};

const char *proxysync_slot_mode_to_string(SlotMode m) {
        if (m < 0 || m >= _SLOT_MODE_MAX)
                return NULL;
        return slot_mode_table[m];
}

SlotMode proxysync_slot_mode_from_admin(unsigned long admin_state) {
        if (admin_state & HAPROXY_ADMF_MAINT)
                return SLOT_MAINT;
        if (admin_state & HAPROXY_ADMF_DRAIN)
                return SLOT_DRAIN;
        return SLOT_READY;
}

/* Splits one line on blanks into at most max fields (in place). */
static size_t split_fields(char *line, char **fields, size_t max) {
        size_t n = 0;
        char *save = NULL;

        for (char *t = strtok_r(line, " \t", &save); t && n < max; t = strtok_r(NULL, " \t", &save))
                fields[n++] = t;
        return n;
}

enum {
        COL_BE_NAME,
        COL_SRV_NAME,
        COL_SRV_ADDR,
        COL_SRV_ADMIN_STATE,
        COL_SRV_SINCE,
        COL_SRV_PORT,
        _COL_MAX,
};

static const char *const column_names[_COL_MAX] = {
        [COL_BE_NAME] = "be_name",
        [COL_SRV_NAME] = "srv_name",
        [COL_SRV_ADDR] = "srv_addr",
        [COL_SRV_ADMIN_STATE] = "srv_admin_state",
        [COL_SRV_SINCE] = "srv_time_since_last_change",
        [COL_SRV_PORT] = "srv_port",
};

static int slot_cmp(const void *a, const void *b) {
        const Slot *x = a, *y = b;
        return x->index < y->index ? -1 : x->index > y->index;
}

/* "s12" with prefix "s" -> 12; anything else is not one of our slots. */
static bool slot_index(const char *name, const char *prefix, unsigned long *ret) {
        size_t pl = strlen(prefix);

        if (strncmp(name, prefix, pl) != 0)
                return false;
        return parse_ulong(name + pl, strlen(name + pl), UINT_MAX, ret) == 0;
}

int proxysync_parse_servers_state(const char *text, const char *backend, const char *prefix, Slot **ret,
                                  size_t *ret_n, char **ret_error) {
        _cleanup_(freep) Slot *slots = NULL;
        _cleanup_(freep) char *copy = NULL;
        size_t n = 0, cap = 0, col[_COL_MAX];
        char *save = NULL, *line;
        bool have_header = false;
        char shown[128];

        if (!text || !backend || !prefix || !ret || !ret_n)
                return -EINVAL;
        for (size_t c = 0; c < _COL_MAX; c++)
                col[c] = SIZE_MAX;

        error_excerpt(text, strcspn(text, "\n"), shown, sizeof(shown));
        if (!streq(shown, "1"))
                return error_set(ret_error, -EBADMSG, "not a servers-state table (format 1): '%s'", shown);
        copy = strdup(text);
        if (!copy)
                return -ENOMEM;
        line = strtok_r(copy, "\n", &save); /* the "1" */
        while ((line = strtok_r(NULL, "\n", &save))) {
                char *f[64];
                size_t nf;

                if (strlen(line) > SERVERS_STATE_MAX_LINE)
                        return error_set(ret_error, -EBADMSG, "servers-state line too long");
                if (line[0] == '#') {
                        nf = split_fields(line + 1, f, ELEMENTSOF(f));
                        for (size_t i = 0; i < nf; i++)
                                for (size_t c = 0; c < _COL_MAX; c++)
                                        if (streq(f[i], column_names[c]))
                                                col[c] = i;
                        for (size_t c = 0; c < _COL_MAX; c++)
                                if (col[c] == SIZE_MAX)
                                        return error_set(ret_error, -EBADMSG, "servers-state header has no %s",
                                                         column_names[c]);
                        have_header = true;
                        continue;
                }
                if (!have_header)
                        return error_set(ret_error, -EBADMSG, "servers-state table without a header");
                nf = split_fields(line, f, ELEMENTSOF(f));
                if (nf == 0)
                        continue;
                for (size_t c = 0; c < _COL_MAX; c++)
                        if (col[c] >= nf)
                                return error_set(ret_error, -EBADMSG, "servers-state line with %zu fields", nf);
                if (!streq(f[col[COL_BE_NAME]], backend))
                        continue;

                Slot s = {};
                unsigned long admin;
                uint16_t port;
                if (!slot_index(f[col[COL_SRV_NAME]], prefix, &s.index))
                        continue;
                if (strlen(f[col[COL_SRV_NAME]]) >= sizeof(s.name))
                        continue;
                memcpy(s.name, f[col[COL_SRV_NAME]], strlen(f[col[COL_SRV_NAME]]) + 1);
                if (parse_ulong(f[col[COL_SRV_ADMIN_STATE]], strlen(f[col[COL_SRV_ADMIN_STATE]]), UINT_MAX, &admin) < 0)
                        return error_set(ret_error, -EBADMSG, "bad srv_admin_state '%s'", f[col[COL_SRV_ADMIN_STATE]]);
                s.mode = proxysync_slot_mode_from_admin(admin);
                if (parse_ulong(f[col[COL_SRV_SINCE]], strlen(f[col[COL_SRV_SINCE]]), ULONG_MAX, &s.since_change_sec) < 0)
                        s.since_change_sec = 0;
                /* "-" or an unresolved name: the slot has no usable address yet. */
                if (parse_port_decimal(f[col[COL_SRV_PORT]], strlen(f[col[COL_SRV_PORT]]), &port) == 0) {
                        unsigned char b[sizeof(struct in6_addr)];
                        const char *ip = f[col[COL_SRV_ADDR]];
                        int fam = strchr(ip, ':') ? AF_INET6 : AF_INET;
                        if (inet_pton(fam, ip, b) == 1 && inet_ntop(fam, b, s.endpoint.ip, sizeof(s.endpoint.ip))) {
                                s.endpoint.family = fam;
                                s.endpoint.port = port;
                                s.has_endpoint = true;
                        }
                }
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        Slot *t = reallocarray(slots, ncap, sizeof(Slot));
                        if (!t)
                                return -ENOMEM;
                        slots = t;
                        cap = ncap;
                }
                slots[n++] = s;
        }
        if (!have_header)
                return error_set(ret_error, -EBADMSG, "servers-state table without a header");
        if (n > 1)
                qsort(slots, n, sizeof(Slot), slot_cmp);
        *ret = TAKE_PTR(slots);
        *ret_n = n;
        return 0;
}

void proxysync_plan_done(SlotPlan *p) {
        if (!p)
                return;
        free(p->ops);
        *p = (SlotPlan) {};
}

static void plan_push(SlotPlan *p, size_t slot, SlotOpKind kind, const Endpoint *e) {
        /* ops has room for 2 per slot: at most one join pair or one leave op each. */
        p->ops[p->n_ops++] = (SlotOp) { .slot = slot, .kind = kind, .endpoint = e ? *e : (Endpoint) {} };
}

int proxysync_plan(const Slot *slots, size_t n_slots, const Endpoint *want, size_t n_want,
                   unsigned long drain_grace_sec, SlotPlan *ret) {
        _cleanup_(proxysync_plan_done) SlotPlan p = {};
        _cleanup_(freep) bool *used = NULL, *placed = NULL;

        if (!ret || (n_slots > 0 && !slots) || (n_want > 0 && !want))
                return -EINVAL;
        p.ops = calloc(2 * n_slots + 1, sizeof(SlotOp));
        used = calloc(n_slots + 1, sizeof(bool));
        placed = calloc(n_want + 1, sizeof(bool));
        if (!p.ops || !used || !placed)
                return -ENOMEM;

        /* Pass 1-3: a wanted endpoint stays on (or returns to) the slot that
         * already has it, preferring one that is ready, then drained, then
         * in maint: the fewest changes, and no flapping between slots. */
        for (SlotMode pass = SLOT_READY; pass <= SLOT_MAINT; pass++)
                for (size_t w = 0; w < n_want; w++) {
                        if (placed[w])
                                continue;
                        for (size_t s = 0; s < n_slots; s++) {
                                if (used[s] || slots[s].mode != pass || !slots[s].has_endpoint ||
                                    !proxysync_endpoint_equal(&slots[s].endpoint, &want[w]))
                                        continue;
                                used[s] = placed[w] = true;
                                if (pass != SLOT_READY)
                                        plan_push(&p, s, SLOT_OP_READY, NULL);
                                break;
                        }
                }
        /* Pass 4: newcomers take the lowest free maint slot. A drained slot
         * is not free: requests may still be finishing on its old host. */
        for (size_t w = 0; w < n_want; w++) {
                if (placed[w])
                        continue;
                for (size_t s = 0; s < n_slots; s++) {
                        if (used[s] || slots[s].mode != SLOT_MAINT)
                                continue;
                        used[s] = placed[w] = true;
                        plan_push(&p, s, SLOT_OP_ADDR, &want[w]);
                        plan_push(&p, s, SLOT_OP_READY, NULL);
                        break;
                }
                if (!placed[w])
                        p.unplaced++;
        }
        p.routed = 0;
        for (size_t s = 0; s < n_slots; s++)
                if (used[s])
                        p.routed++;
        /* Leaves after joins, so capacity is added before it is taken away. */
        for (size_t s = 0; s < n_slots; s++) {
                if (used[s])
                        continue;
                if (slots[s].mode == SLOT_READY)
                        plan_push(&p, s, SLOT_OP_DRAIN, NULL);
                else if (slots[s].mode == SLOT_DRAIN && slots[s].since_change_sec >= drain_grace_sec)
                        plan_push(&p, s, SLOT_OP_MAINT, NULL);
        }
        *ret = p;
        p = (SlotPlan) {};
        return 0;
}

int proxysync_op_command(const char *backend, const Slot *slots, size_t n_slots, const SlotOp *op, char **ret) {
        char *s = NULL;
        int r;

        if (!backend || !slots || !op || !ret || op->slot >= n_slots)
                return -EINVAL;
        switch (op->kind) {
        case SLOT_OP_ADDR:
                r = asprintf(&s, "set server %s/%s addr %s port %u", backend, slots[op->slot].name, op->endpoint.ip,
                             (unsigned) op->endpoint.port);
                break;
        case SLOT_OP_READY:
        case SLOT_OP_DRAIN:
        case SLOT_OP_MAINT:
                r = asprintf(&s, "set server %s/%s state %s", backend, slots[op->slot].name,
                             op->kind == SLOT_OP_READY   ? "ready"
                             : op->kind == SLOT_OP_DRAIN ? "drain"
                                                         : "maint");
                break;
        default:
                return -EINVAL;
        }
        if (r < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

bool proxysync_server_args_are_valid(const char *s) {
        if (!s)
                return true;
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f || strchr(";{}#\"'$\\", *s))
                        return false;
        return true;
}

int proxysync_render_nginx(const char *pool, const char *upstream, const Endpoint *eps, size_t n,
                           const char *server_args, char **ret) {
        _cleanup_(freep) char *buf = NULL;
        size_t size = 0;
        FILE *f;
        char ep[ENDPOINT_STRLEN];
        bool args = !isempty(server_args);

        if (!pool || !upstream || !ret || (n > 0 && !eps) || !proxysync_name_is_valid(upstream) ||
            !proxysync_server_args_are_valid(server_args))
                return -EINVAL;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        fprintf(f, "# Written by monkey-proxy-sync from pool %s: do not edit, it is rewritten.\n", pool);
        fprintf(f, "upstream %s {\n", upstream);
        for (size_t i = 0; i < n; i++)
                fprintf(f, "    server %s%s%s;\n", proxysync_endpoint_format(&eps[i], ep, sizeof(ep)), args ? " " : "",
                        args ? server_args : "");
        if (n == 0)
                /* An upstream needs a server; a down one keeps the file valid
                 * and makes nginx answer 502 rather than refuse to load. */
                fputs("    server 127.0.0.1:1 down;  # the pool has no routable member\n", f);
        fputs("}\n", f);
        if (fclose(f) != 0)
                return -ENOMEM;
        *ret = TAKE_PTR(buf);
        return 0;
}

/* A `server` line [q, eol) with the word "down" before its ';'. */
static bool server_line_down(const char *q, const char *eol) {
        const char *semi = memchr(q, ';', (size_t) (eol - q));
        const char *end = semi ? semi : eol;

        for (const char *w = q + 7; w + 4 <= end; w++)
                if (strncmp(w, "down", 4) == 0 && (w[-1] == ' ' || w[-1] == '\t') &&
                    (w + 4 == end || w[4] == ' ' || w[4] == '\t'))
                        return true;
        return false;
}

bool proxysync_nginx_has_servers(const char *text) {
        const char *p = text;

        if (!text)
                return false;
        while (*p) {
                const char *eol = strchrnul(p, '\n');
                const char *q = p;
                while (q < eol && (*q == ' ' || *q == '\t'))
                        q++;
                if ((size_t) (eol - q) > 7 && strncmp(q, "server ", 7) == 0 && !server_line_down(q, eol))
                        return true;
                p = *eol ? eol + 1 : eol;
        }
        return false;
}

int proxysync_nginx_servers(const char *text, Endpoint **ret, size_t *ret_n) {
        _cleanup_(freep) Endpoint *eps = NULL;
        size_t n = 0, cap = 0;
        const char *p = text;

        while (p && *p) {
                const char *eol = strchrnul(p, '\n');
                const char *q = p;
                while (q < eol && (*q == ' ' || *q == '\t'))
                        q++;
                if ((size_t) (eol - q) > 7 && strncmp(q, "server ", 7) == 0) {
                        char word[ENDPOINT_STRLEN + 8], line[512];
                        size_t len = MIN((size_t) (eol - q), sizeof line - 1);
                        Endpoint e;

                        memcpy(line, q, len);
                        line[len] = '\0';
                        line[strcspn(line, ";")] = '\0';
                        /* our own lines: "server IP:PORT ARGS"; a down one is not routed */
                        const char *w = line + 7 + strspn(line + 7, " \t");
                        size_t wl = strcspn(w, " \t");

                        if (wl > 0 && wl < sizeof word) {
                                memcpy(word, w, wl);
                                word[wl] = '\0';
                        } else
                                word[0] = '\0';
                        if (word[0] && proxysync_parse_endpoint(word, &e) >= 0 && !server_line_down(line, line + strlen(line))) {
                                if (n == cap) {
                                        Endpoint *m = reallocarray(eps, cap ? cap * 2 : 8, sizeof(Endpoint));
                                        if (!m)
                                                return -ENOMEM;
                                        eps = m;
                                        cap = cap ? cap * 2 : 8;
                                }
                                eps[n++] = e;
                        }
                }
                p = *eol ? eol + 1 : eol;
        }
        *ret = TAKE_PTR(eps);
        *ret_n = n;
        return 0;
}

int proxysync_missing(const Endpoint *have, size_t n_have, const Endpoint *want, size_t n_want, Endpoint **ret,
                      size_t *ret_n) {
        _cleanup_(freep) Endpoint *out = NULL;
        size_t n = 0;

        out = calloc(n_have + 1, sizeof(Endpoint));
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n_have; i++) {
                bool found = false;
                for (size_t k = 0; k < n_want && !found; k++)
                        found = proxysync_endpoint_equal(&have[i], &want[k]);
                for (size_t k = 0; k < n && !found; k++)
                        found = proxysync_endpoint_equal(&have[i], &out[k]);
                if (!found)
                        out[n++] = have[i];
        }
        *ret = TAKE_PTR(out);
        *ret_n = n;
        return 0;
}
