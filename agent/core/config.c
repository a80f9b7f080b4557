#include <assert.h>
#include <ctype.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <ini.h>
#include <limits.h>
#include <regex.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>

#include "awsid.h"
#include "config.h"
#include "fileio.h"
#include "log.h"
#include "netaddr.h"
#include "parse.h"
#include "redisurl.h"
#include "secret.h"
#include "sha256.h"
#include "statusset.h"
#include "suggest.h"
#include "utf8.h"

/* A config file is a few hundred lines; anything far larger is a mistake
 * (wrong file), not a config. */
#define CONFIG_SIZE_MAX ((size_t) 1024 * 1024)

#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1)

/* ---- enum tables ---- */

static const char *const remedy_step_table[_REMEDY_STEP_MAX] = {
        [REMEDY_RESTART_UNIT] = "restart-unit",
        [REMEDY_REBOOT_INSTANCE] = "reboot-instance",
        [REMEDY_LOCAL_REBOOT] = "reboot-local",
        [REMEDY_NONE] = "none",
};

const char *remedy_step_to_string(RemedyStep s) {
        if (s < 0 || s >= _REMEDY_STEP_MAX)
                return NULL;
        return remedy_step_table[s];
}

RemedyStep remedy_step_from_string(const char *s) {
        if (!s)
                return _REMEDY_STEP_INVALID;
        if (streq(s, "local-reboot")) /* the name before 0.2 */
                return REMEDY_LOCAL_REBOOT;
        for (size_t i = 0; i < ELEMENTSOF(remedy_step_table); i++)
                if (streq(remedy_step_table[i], s))
                        return (RemedyStep) i;
        return _REMEDY_STEP_INVALID;
}

static const char *const pool_on_unreachable_table[_POOL_ON_UNREACHABLE_MAX] = {
        [POOL_ON_UNREACHABLE_HOLD] = "hold",
        [POOL_ON_UNREACHABLE_REMEDIATE] = "remediate",
};

const char *pool_on_unreachable_to_string(PoolOnUnreachable p) {
        if (p < 0 || p >= _POOL_ON_UNREACHABLE_MAX)
                return NULL;
        return pool_on_unreachable_table[p];
}

PoolOnUnreachable pool_on_unreachable_from_string(const char *s) {
        if (!s)
                return _POOL_ON_UNREACHABLE_INVALID;
        for (size_t i = 0; i < ELEMENTSOF(pool_on_unreachable_table); i++)
                if (streq(pool_on_unreachable_table[i], s))
                        return (PoolOnUnreachable) i;
        return _POOL_ON_UNREACHABLE_INVALID;
}

static const char *const aws_autoscaling_table[_AWS_AUTOSCALING_MAX] = {
        [AWS_AUTOSCALING_OFF] = "off",
        [AWS_AUTOSCALING_STANDBY] = "standby",
};

const char *aws_autoscaling_to_string(AwsAutoscaling a) {
        if (a < 0 || a >= _AWS_AUTOSCALING_MAX)
                return NULL;
        return aws_autoscaling_table[a];
}

AwsAutoscaling aws_autoscaling_from_string(const char *s) {
        if (!s)
                return _AWS_AUTOSCALING_INVALID;
        for (size_t i = 0; i < ELEMENTSOF(aws_autoscaling_table); i++)
                if (streq(aws_autoscaling_table[i], s))
                        return (AwsAutoscaling) i;
        return _AWS_AUTOSCALING_INVALID;
}

static const char *const remedy_budget_table[_REMEDY_BUDGET_MAX] = {
        [REMEDY_BUDGET_POOL] = "pool",
        [REMEDY_BUDGET_NONE] = "none",
};

const char *remedy_budget_to_string(RemedyBudget b) {
        if (b < 0 || b >= _REMEDY_BUDGET_MAX)
                return NULL;
        return remedy_budget_table[b];
}

RemedyBudget remedy_budget_from_string(const char *s) {
        if (!s)
                return _REMEDY_BUDGET_INVALID;
        for (size_t i = 0; i < ELEMENTSOF(remedy_budget_table); i++)
                if (streq(remedy_budget_table[i], s))
                        return (RemedyBudget) i;
        return _REMEDY_BUDGET_INVALID;
}

static const char *const agent_check_from_table[_AGENT_CHECK_FROM_MAX] = {
        [AGENT_CHECK_FROM_CONFIG] = "[proxy] agent_check_address",
        [AGENT_CHECK_FROM_POOL] = "[pool] address",
        [AGENT_CHECK_FROM_PUBLIC_ADDRESS] = "[checks] public_address",
        [AGENT_CHECK_FROM_WILDCARD] = "wildcard",
};

const char *config_listen_fallback(const char *address, AgentCheckFrom from, int r) {
        if (r != -EADDRNOTAVAIL || from == AGENT_CHECK_FROM_CONFIG || from == AGENT_CHECK_FROM_WILDCARD)
                return NULL;
        return netaddr_is_ipv6(address) ? "::" : "0.0.0.0";
}

const char *agent_check_from_to_string(AgentCheckFrom f) {
        if (f < 0 || f >= _AGENT_CHECK_FROM_MAX)
                return NULL;
        return agent_check_from_table[f];
}

const char *config_no_fleet_budget(const Config *c) {
        if (!c || !c->remedy.enabled || c->pool.enabled)
                return NULL;
        if (c->remedy.budget == REMEDY_BUDGET_NONE)
                return "no fleet budget ([remedy] budget = none)";
        return "no fleet budget (a dry run without [pool])";
}

/* ---- small string helpers ---- */

static bool has_space_or_control(const char *s) {
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                if (c <= ' ' || c == 0x7f)
                        return true;
        }
        return false;
}

static bool has_control(const char *s) {
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                if ((c < ' ' && c != '\t') || c == 0x7f)
                        return true;
        }
        return false;
}

/* ---- the table ---- */

typedef struct ConfigItem ConfigItem;

/* Parse `value` into `dest` (inside `c`). On failure returns a negative
 * errno and *ret_reason, the text after "[section] key: ". */
typedef int (*ConfigParser)(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason);

enum {
        ITEM_STRING = 1 << 0,   /* dest is a char * the Config owns */
        ITEM_SECRET = 1 << 1,   /* never quote the value in messages */
        ITEM_REQUIRED = 1 << 2, /* required when its section is present */
        ITEM_LIST = 1 << 3,     /* may be written on several lines, each adding to the list */
};

struct ConfigItem {
        const char *section;
        const char *key;
        ConfigParser parse;
        size_t offset;
        uint64_t min, max;
        const char *def; /* default, parsed like user input; NULL: unset */
        unsigned flags;
};

typedef struct ConfigSection {
        const char *name;
        size_t enabled_offset; /* SIZE_MAX: always on */
} ConfigSection;

_printf_(3, 4) static int reason(char **ret_reason, int r, const char *fmt, ...) {
        va_list ap;
        int k;

        va_start(ap, fmt);
        k = vasprintf(ret_reason, fmt, ap);
        va_end(ap);
        if (k < 0) {
                *ret_reason = NULL;
                return -ENOMEM;
        }
        return r;
}

static const char *shown(const ConfigItem *it, const char *value) {
        return it->flags & ITEM_SECRET ? "<redacted>" : value;
}

static int set_string(void *dest, const char *value) {
        char **p = dest;
        char *s = strdup(value);

        if (!s)
                return -ENOMEM;
        free(*p);
        *p = s;
        return 0;
}

static int range_reason_u64(const ConfigItem *it, const char *value, char **ret_reason) {
        return reason(ret_reason, -ERANGE, "%s is out of range (%" PRIu64 "-%" PRIu64 ")", value, it->min, it->max);
}

static int item_duration(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        char a[32], b[32];
        usec_t u;
        int r;

        r = parse_duration(value, &u);
        if (r == -EINVAL)
                return reason(ret_reason, r, "invalid duration '%s' (use e.g. 500ms, 30s, 5m)", value);
        if (r < 0 || u < it->min || u > it->max)
                return reason(ret_reason, -ERANGE, "%s is out of range (%s-%s)", value,
                              format_duration(a, sizeof a, it->min), format_duration(b, sizeof b, it->max));
        *(usec_t *) dest = u;
        return 0;
}

static int item_percent(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        double v;
        int r;

        r = parse_percent(value, &v);
        if (r == -EINVAL)
                return reason(ret_reason, r, "invalid percentage '%s' (use e.g. 90, 90%% or 87.5%%)", value);
        if (r < 0 || v < (double) it->min || v > (double) it->max)
                return range_reason_u64(it, value, ret_reason);
        *(double *) dest = v;
        return 0;
}

static int item_bool(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        if (parse_bool(value, dest) < 0)
                return reason(ret_reason, -EINVAL, "invalid boolean '%s' (use yes or no)", value);
        return 0;
}

static int item_unsigned(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        uint64_t v;
        int r;

        r = parse_u64_digits(value, &v);
        if (r == -EINVAL)
                return reason(ret_reason, r, "invalid number '%s'", value);
        if (r < 0 || v < it->min || v > it->max || v > UINT_MAX)
                return range_reason_u64(it, value, ret_reason);
        *(unsigned *) dest = (unsigned) v;
        return 0;
}

static int item_size(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        uint64_t v;
        int r;

        r = parse_size(value, &v);
        if (r == -EINVAL)
                return reason(ret_reason, r, "invalid size '%s' (use e.g. 512K, 8M)", value);
        if (r < 0 || v < it->min || v > it->max || v > SIZE_MAX)
                return range_reason_u64(it, value, ret_reason);
        *(size_t *) dest = (size_t) v;
        return 0;
}

static int item_port(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        uint64_t v;
        int r;

        r = parse_u64_digits(value, &v);
        if (r == -EINVAL)
                return reason(ret_reason, r, "invalid port '%s'", value);
        if (r < 0 || v < it->min || v > it->max || v > UINT16_MAX)
                return range_reason_u64(it, value, ret_reason);
        *(uint16_t *) dest = (uint16_t) v;
        return 0;
}

/* One token: host names, channels, keys, units, tokens. */
static int item_word(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        if (has_space_or_control(value))
                return reason(ret_reason, -EINVAL, "'%s' must not contain blanks", shown(it, value));
        return set_string(dest, value);
}

/* A group allowed on the control socket: a number is a gid as it stands
 * (it need not have a name: LDAP, containers); a name is checked for shape
 * here and looked up by config_load(), since parsing does no I/O. */
static int item_group(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        uint64_t v;
        size_t len = strlen(value);
        int r;

        if (is_digit(value[0])) {
                r = parse_u64_digits(value, &v);
                if (r == -EINVAL)
                        return reason(ret_reason, r, "invalid group '%s' (a group name or a numeric gid)", value);
                /* (gid_t) -1 means "no group" to the kernel's calls */
                if (r < 0 || v >= (uint64_t) (gid_t) -1)
                        return reason(ret_reason, -ERANGE, "gid %s is out of range (0-%u)", value,
                                      (unsigned) ((gid_t) -1 - 1));
                c->agent.control_gid = (gid_t) v;
                c->agent.control_gid_set = true;
                return set_string(dest, value);
        }
        if (len > it->max)
                return reason(ret_reason, -ERANGE, "group name is too long (%zu characters, at most %" PRIu64 ")", len,
                              it->max);
        for (size_t i = 0; i < len; i++)
                if (!isalnum((unsigned char) value[i]) && !strchr("._-@", value[i]) &&
                    !(value[i] == '$' && i == len - 1))
                        return reason(ret_reason, -EINVAL,
                                      "invalid group name '%s' (letters, digits, '.', '_', '-', '@'; or a numeric gid)",
                                      value);
        if (value[0] == '-' || value[0] == '.')
                return reason(ret_reason, -EINVAL, "invalid group name '%s' (must not start with '%c')", value, value[0]);
        c->agent.control_gid_set = false;
        return set_string(dest, value);
}

/* Names that end up inside Redis keys or AWS identifiers: a brace in a pool
 * name would break the {P} cluster hash tag, a colon the key layout. */
static int item_name(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        for (const char *p = value; *p; p++)
                if (!isalnum((unsigned char) *p) && !strchr("._-", *p))
                        return reason(ret_reason, -EINVAL, "invalid name '%s' (use letters, digits, '.', '_' and '-')",
                                      value);
        return set_string(dest, value);
}

static int item_content(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        if (has_control(value))
                return reason(ret_reason, -EINVAL, "control characters are not allowed");
        if (strncmp(value, "re:", 3) == 0) {
                regex_t re;
                int k = regcomp(&re, value + 3, REG_EXTENDED | REG_NOSUB);
                if (k != 0) {
                        char err[128];
                        regerror(k, &re, err, sizeof err);
                        return reason(ret_reason, -EINVAL, "invalid regular expression '%s': %s", value + 3, err);
                }
                regfree(&re);
        }
        return set_string(dest, value);
}

static int item_path(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        size_t max = it->max > 0 ? (size_t) it->max : PATH_MAX - 1;

        if (value[0] != '/' || has_control(value))
                return reason(ret_reason, -EINVAL, "'%s' is not an absolute path", value);
        if (strlen(value) > max)
                return reason(ret_reason, -ERANGE, "path is too long (%zu characters, at most %zu)", strlen(value), max);
        return set_string(dest, value);
}

/* The path part of a URL as a client sends it: no query, no fragment, no
 * percent-encoding (the server compares it with the decoded path). */
static int item_http_path(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        if (value[0] != '/')
                return reason(ret_reason, -EINVAL, "'%s' must start with '/' (e.g. /health)", shown(it, value));
        if (strlen(value) > (size_t) it->max)
                return reason(ret_reason, -ERANGE, "path is too long (%zu characters, at most %u)", strlen(value),
                              (unsigned) it->max);
        for (const char *p = value; *p; p++)
                if (*p <= ' ' || *p >= 0x7f || strchr("?#%", *p))
                        return reason(ret_reason, -EINVAL,
                                      "'%s' must be a plain URL path: printable ASCII without blanks, '?', '#' or '%%'",
                                      shown(it, value));
        return set_string(dest, value);
}

static bool port_valid(const char *s, size_t n) {
        uint16_t port;

        return parse_port_decimal(s, n, &port) >= 0;
}

/* "host:port", "[v6]:port": `n` bytes of s. */
static bool hostport_valid(const char *s, size_t n, bool port_required) {
        const char *colon;

        if (n == 0)
                return false;
        if (s[0] == '[') {
                const char *close = memchr(s, ']', n);
                char ip[INET6_ADDRSTRLEN];
                struct in6_addr a6;
                size_t iplen;

                if (!close)
                        return false;
                iplen = (size_t) (close - s - 1);
                if (iplen == 0 || iplen >= sizeof ip)
                        return false;
                memcpy(ip, s + 1, iplen);
                ip[iplen] = '\0';
                if (inet_pton(AF_INET6, ip, &a6) != 1)
                        return false;
                colon = close + 1;
                if (colon == s + n)
                        return !port_required;
                return *colon == ':' && port_valid(colon + 1, (size_t) (s + n - colon - 1));
        }
        colon = NULL;
        for (size_t i = n; i > 0; i--)
                if (s[i - 1] == ':') {
                        colon = s + i - 1;
                        break;
                }
        if (!colon)
                return !port_required;
        if (colon == s || memchr(s, ':', (size_t) (colon - s)))
                return false; /* empty host, or a bare IPv6 address without brackets */
        return port_valid(colon + 1, (size_t) (s + n - colon - 1));
}

/* A host name as DNS has them (letters, digits, '.', '-', '_'), an IPv4
 * literal (the same characters), or a bracketed IPv6 literal: `n` bytes. */
static bool url_host_valid(const char *s, size_t n) {
        if (n == 0)
                return false;
        if (s[0] == '[')
                return true; /* hostport_valid() parses the literal */
        for (size_t i = 0; i < n && s[i] != ':'; i++)
                if (!isalnum((unsigned char) s[i]) && !strchr(".-_", s[i]))
                        return false;
        return s[0] != ':';
}

/* http(s)://[USERINFO@]HOST[:PORT][/PATH][?QUERY][#FRAGMENT]: what curl
 * would take, checked here so a typo is a file:line at start, not an HTTP
 * error at the worst moment. */
static bool http_url_valid(const char *value) {
        const char *auth, *end, *at;

        if (strncmp(value, "http://", 7) == 0)
                auth = value + 7;
        else if (strncmp(value, "https://", 8) == 0)
                auth = value + 8;
        else
                return false;
        if (has_space_or_control(value))
                return false;
        end = auth + strcspn(auth, "/?#");
        at = memrchr(auth, '@', (size_t) (end - auth));
        if (at)
                auth = at + 1;
        return url_host_valid(auth, (size_t) (end - auth)) && hostport_valid(auth, (size_t) (end - auth), false);
}

static int item_url(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        if (!http_url_valid(value))
                return reason(ret_reason, -EINVAL, "invalid URL '%s' (use http://HOST/... or https://HOST/...)",
                              shown(it, value));
        return set_string(dest, value);
}

static int item_hostport(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        if (has_space_or_control(value) || !hostport_valid(value, strlen(value), true))
                return reason(ret_reason, -EINVAL, "invalid address '%s' (use HOST:PORT, e.g. 127.0.1.5:8080 or [::1]:8080)",
                              value);
        return set_string(dest, value);
}

static int item_ipaddr(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        struct in6_addr a;

        if (inet_pton(AF_INET, value, &a) != 1 && inet_pton(AF_INET6, value, &a) != 1)
                return reason(ret_reason, -EINVAL, "invalid IP address '%s'", value);
        return set_string(dest, value);
}

/* The DB number after the last '/', if any ("" or "/" alone mean 0). */
/* redisurl.h's grammar: what the pool connection will parse, the config
 * check accepts, and nothing else. */
static int item_redis_url(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        _cleanup_(redis_url_done) RedisUrl u = {};
        bool ok;
        int r;

        r = redis_url_parse(value, &u, NULL);
        if (r == -ENOMEM)
                return r;
        ok = r >= 0;
        if (!ok) {
                /* The URL helps find the typo; only its password is secret. */
                _cleanup_(freep) char *redacted = redis_url_redact(value);

                if (!redacted)
                        return -ENOMEM;
                return reason(ret_reason, -EINVAL,
                              "invalid URL '%s' (use redis[s]://[USER:PASSWORD@]HOST[:PORT][/DB], unix:///PATH or "
                              "sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB])",
                              redacted);
        }
        return set_string(dest, value);
}

static int item_region(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        if (!aws_region_is_valid(value))
                return reason(ret_reason, -EINVAL,
                              "invalid region '%s' (the AWS form, e.g. us-east-1, eu-central-1 or us-gov-west-1)", value);
        return set_string(dest, value);
}

static int item_instance_id(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        if (!aws_instance_id_is_valid(value))
                return reason(ret_reason, -EINVAL, "invalid instance id '%s' (" AWS_INSTANCE_ID_FORM ")", value);
        return set_string(dest, value);
}

static int item_autoscaling(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        AwsAutoscaling a = aws_autoscaling_from_string(value);

        if (a < 0)
                return reason(ret_reason, -EINVAL, "invalid value '%s' (use standby or off)", value);
        *(AwsAutoscaling *) dest = a;
        return 0;
}

static void target_groups_free(TargetGroupRef *t, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(t[i].arn);
        free(t);
}

/* ARN[:PORT], separated by commas and/or blanks. The ARN's own fields are
 * ':'-separated but its last ("targetgroup/NAME/ID") holds none, so a
 * ':' followed by digits alone at the end is the port. A line holds two
 * ARNs at most (inih's 200 characters): each further target_groups line
 * adds to the list. */
static int item_target_groups(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        TargetGroupRef *t = c->aws.target_groups;
        size_t n0 = c->aws.n_target_groups, n = n0;
        const char *p = value;
        int r = 0;

        if (!t) {
                t = calloc(CONFIG_TARGET_GROUPS_MAX, sizeof *t);
                if (!t)
                        return -ENOMEM;
        }

        for (;;) {
                const char *start, *colon;
                size_t len;
                char item[300];
                unsigned port = 0;

                while (*p == ',' || is_blank(*p))
                        p++;
                if (!*p)
                        break;
                start = p;
                p += strcspn(p, ", \t");
                len = (size_t) (p - start);
                if (len >= sizeof item) {
                        r = reason(ret_reason, -EINVAL, "'%.64s...' is too long for a target group ARN", start);
                        goto fail;
                }
                memcpy(item, start, len);
                item[len] = '\0';
                colon = strrchr(item, ':');
                if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
                        uint16_t p16;

                        if (parse_port_decimal(colon + 1, strlen(colon + 1), &p16) < 0) {
                                r = reason(ret_reason, -EINVAL, "invalid port in '%s' (1-65535)", item);
                                goto fail;
                        }
                        port = p16;
                        item[colon - item] = '\0';
                }
                if (!aws_target_group_arn_parse(item, NULL, 0)) {
                        r = reason(ret_reason, -EINVAL, "invalid target group '%.*s' (" AWS_TARGET_GROUP_ARN_FORM
                                   ", then :PORT if the instance is registered on a port of its own)",
                                   (int) len, start);
                        goto fail;
                }
                for (size_t i = 0; i < n; i++)
                        if (streq(t[i].arn, item) && t[i].port == port) {
                                r = reason(ret_reason, -EINVAL, "target group '%.*s' is listed twice", (int) len,
                                           start);
                                goto fail;
                        }
                if (n >= CONFIG_TARGET_GROUPS_MAX) {
                        r = reason(ret_reason, -EINVAL, "more than %d target groups", CONFIG_TARGET_GROUPS_MAX);
                        goto fail;
                }
                t[n].arn = strdup(item);
                if (!t[n].arn) {
                        r = -ENOMEM;
                        goto fail;
                }
                t[n++].port = port;
        }
        if (n == n0) {
                r = reason(ret_reason, -EINVAL, "no target group in '%s' (write ARN[:PORT], ...)", value);
                goto fail;
        }
        c->aws.target_groups = t;
        c->aws.n_target_groups = n;
        return 0;
fail:
        for (size_t i = n0; i < n; i++) {
                free(t[i].arn);
                t[i].arn = NULL;
        }
        if (!c->aws.target_groups)
                free(t);
        return r;
}

static int item_log_level(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        int l = log_level_from_string(value);

        if (l < 0)
                return reason(ret_reason, -EINVAL, "invalid log level '%s' (use error, warning, notice, info or debug)",
                              value);
        *(int *) dest = l;
        return 0;
}

static int item_on_unreachable(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        PoolOnUnreachable p = pool_on_unreachable_from_string(value);

        if (p < 0)
                return reason(ret_reason, -EINVAL, "invalid value '%s' (use hold or remediate)", value);
        *(PoolOnUnreachable *) dest = p;
        return 0;
}

static int item_budget(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        RemedyBudget b = remedy_budget_from_string(value);

        if (b < 0)
                return reason(ret_reason, -EINVAL, "invalid value '%s' (use pool or none)", value);
        *(RemedyBudget *) dest = b;
        return 0;
}

static int item_status_set(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        int r = status_set_parse(value, dest);

        if (r == -ERANGE)
                return reason(ret_reason, r, "status code out of range in '%s' (100-599)", value);
        if (r == -E2BIG)
                return reason(ret_reason, r, "too many ranges in '%s' (at most %d)", value, STATUS_SET_MAX);
        if (r < 0)
                return reason(ret_reason, r, "invalid status set '%s' (use e.g. 200 or 200-299,301)", value);
        return 0;
}

/* A systemd unit name: what unit_name_is_valid() would take, roughly. */
static bool unit_name_ok(const char *s, size_t len) {
        if (len == 0 || len > 255)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!(isalnum((unsigned char) s[i]) || strchr(":_.@-\\", s[i])))
                        return false;
        return memchr(s, '.', len) != NULL;
}

static int item_unit(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        if (!unit_name_ok(value, strlen(value)))
                return reason(ret_reason, -EINVAL, "'%s' is not a unit name (e.g. app.service)", value);
        return set_string(dest, value);
}

static int item_ladder(const ConfigItem *it, const char *value, Config *c, void *dest, char **ret_reason) {
        RemedyStep ladder[REMEDY_LADDER_MAX];
        char *units[REMEDY_LADDER_MAX] = {};
        size_t n = 0;
        const char *p = value;
        int r = 0;

        for (;;) {
                const char *start = skip_blank(p), *end = strchrnul(start, ','), *colon;
                size_t len = (size_t) (end - start), name_len;
                char name[32] = "";
                RemedyStep s;

                while (len > 0 && is_blank(start[len - 1]))
                        len--;
                if (len == 0) {
                        r = reason(ret_reason, -EINVAL, "empty step in '%s'", value);
                        goto fail;
                }
                colon = memchr(start, ':', len);
                name_len = colon ? (size_t) (colon - start) : len;
                if (name_len >= sizeof name)
                        s = _REMEDY_STEP_INVALID;
                else {
                        memcpy(name, start, name_len);
                        name[name_len] = '\0';
                        s = remedy_step_from_string(name);
                }
                if (s < 0) {
                        r = reason(ret_reason, -EINVAL,
                                   "unknown step '%.*s' (use restart-unit:UNIT, reboot-instance, reboot-local or none)",
                                   (int) MIN(len, (size_t) 64), start);
                        goto fail;
                }
                if (n >= REMEDY_LADDER_MAX) {
                        r = reason(ret_reason, -EINVAL, "more than %d steps", REMEDY_LADDER_MAX);
                        goto fail;
                }
                if (colon) {
                        size_t ulen = len - name_len - 1;
                        if (s != REMEDY_RESTART_UNIT) {
                                r = reason(ret_reason, -EINVAL, "step '%s' takes no argument", name);
                                goto fail;
                        }
                        if (!unit_name_ok(colon + 1, ulen)) {
                                r = reason(ret_reason, -EINVAL, "'%.*s' is not a unit name (e.g. app.service)",
                                           (int) MIN(ulen, (size_t) 64), colon + 1);
                                goto fail;
                        }
                        units[n] = strndup(colon + 1, ulen);
                        if (!units[n]) {
                                r = -ENOMEM;
                                goto fail;
                        }
                }
                for (size_t i = 0; i < n; i++)
                        if (ladder[i] == s && streq_ptr(units[i], units[n])) {
                                r = reason(ret_reason, -EINVAL, "step '%.*s' is listed twice", (int) MIN(len, (size_t) 64),
                                           start);
                                goto fail;
                        }
                ladder[n++] = s;
                if (!*end)
                        break;
                p = end + 1;
        }
        for (size_t i = 0; i < REMEDY_LADDER_MAX; i++)
                free(c->remedy.ladder_unit[i]);
        memcpy(c->remedy.ladder, ladder, n * sizeof ladder[0]);
        memcpy(c->remedy.ladder_unit, units, sizeof units);
        c->remedy.ladder_len = n;
        return 0;
fail:
        for (size_t i = 0; i < REMEDY_LADDER_MAX; i++)
                free(units[i]);
        return r;
}

#define ITEM(sec, k, parser, field, mn, mx, d, fl)                                                          \
        {                                                                                                   \
                .section = sec, .key = k, .parse = parser, .offset = offsetof(Config, field), .min = mn,  \
                .max = mx, .def = d, .flags = fl,                                                           \
        }

#define MS USEC_PER_MSEC
#define SEC USEC_PER_SEC
#define MINUTE USEC_PER_MINUTE
#define HOUR USEC_PER_HOUR
#define DAY USEC_PER_DAY
#define S ITEM_STRING
#define SECRET ITEM_SECRET
#define REQ ITEM_REQUIRED

static const ConfigSection config_sections[] = {
        { "agent", SIZE_MAX },
        { "cpu", SIZE_MAX },
        { "pool", offsetof(Config, pool.enabled) },
        { "slack", offsetof(Config, slack.enabled) },
        { "aws", offsetof(Config, aws.enabled) },
        { "checks", offsetof(Config, checks.enabled) },
        { "remedy", offsetof(Config, remedy.enabled) },
        { "proxy", offsetof(Config, proxy.enabled) },
        { "evidence", SIZE_MAX },
        { "metrics", offsetof(Config, metrics.enabled) },
};

/* Every key, its type, bounds and default. conf/monkeyd.conf documents the
 * same list; the unit test loads it, so the two cannot drift apart. */
static const ConfigItem config_items[] = {
        ITEM("agent", "host", item_word, agent.host, 0, 0, NULL, S),
        ITEM("agent", "state_dir", item_path, agent.state_dir, 0, 0, "/var/lib/monkeyd", S),
        ITEM("agent", "control_socket", item_path, agent.control_socket, 0, SUN_PATH_MAX, "/run/monkeyd/control.sock", S),
        ITEM("agent", "proc_stat", item_path, agent.proc_stat, 0, 0, "/proc/stat", S),
        ITEM("agent", "boot_id", item_path, agent.boot_id, 0, 0, "/proc/sys/kernel/random/boot_id", S),
        ITEM("agent", "log_level", item_log_level, agent.log_level, 0, 0, "info", 0),
        ITEM("agent", "control_group", item_group, agent.control_group, 0, 64, NULL, S),

        ITEM("cpu", "threshold", item_percent, cpu.threshold, 1, 100, "90", 0),
        ITEM("cpu", "window", item_duration, cpu.window, 10 * MS, DAY, "60s", 0),
        ITEM("cpu", "interval", item_duration, cpu.interval, 10 * MS, HOUR, "1s", 0),
        ITEM("cpu", "clear_below", item_percent, cpu.clear_below, 0, 100, "70", 0),
        ITEM("cpu", "jitter", item_duration, cpu.jitter, 0, HOUR, "0", 0),

        ITEM("pool", "redis", item_redis_url, pool.redis, 0, 0, NULL, S | SECRET | REQ),
        ITEM("pool", "password_file", item_path, pool.password_file, 0, 0, NULL, S),
        ITEM("pool", "tls_ca_file", item_path, pool.tls_ca_file, 0, 0, NULL, S),
        ITEM("pool", "tls_cert_file", item_path, pool.tls_cert_file, 0, 0, NULL, S),
        ITEM("pool", "tls_key_file", item_path, pool.tls_key_file, 0, 0, NULL, S),
        ITEM("pool", "tls_server_name", item_word, pool.tls_server_name, 0, 0, NULL, S),
        ITEM("pool", "name", item_name, pool.name, 0, 0, NULL, S | REQ),
        ITEM("pool", "address", item_hostport, pool.address, 0, 0, NULL, S | REQ),
        ITEM("pool", "min_serving", item_unsigned, pool.min_serving, 0, 100000, "1", 0),
        ITEM("pool", "max_unavailable", item_unsigned, pool.max_unavailable, 1, 100000, "1", 0),
        ITEM("pool", "list_key", item_word, pool.list_key, 0, 0, NULL, S),
        ITEM("pool", "drain", item_duration, pool.drain, 0, HOUR, "10s", 0),
        ITEM("pool", "lease", item_duration, pool.lease, 100 * MS, HOUR, "15s", 0),
        ITEM("pool", "heartbeat", item_duration, pool.heartbeat, 100 * MS, HOUR, "5s", 0),
        ITEM("pool", "on_unreachable", item_on_unreachable, pool.on_unreachable, 0, 0, "hold", 0),
        ITEM("pool", "out_max", item_duration, pool.out_max, SEC, 7 * DAY, "30m", 0),

        ITEM("slack", "webhook_url", item_url, slack.webhook_url, 0, 0, NULL, S | SECRET),
        ITEM("slack", "token", item_word, slack.token, 0, 0, NULL, S | SECRET),
        ITEM("slack", "token_file", item_path, slack.token_file, 0, 0, NULL, S),
        ITEM("slack", "channel", item_word, slack.channel, 0, 0, NULL, S),
        ITEM("slack", "webhook_url_file", item_path, slack.webhook_url_file, 0, 0, NULL, S),
        ITEM("slack", "api_url", item_url, slack.api_url, 0, 0, "https://slack.com/api", S),
        ITEM("slack", "timeout", item_duration, slack.timeout, 100 * MS, 2 * MINUTE, "10s", 0),
        ITEM("slack", "remind", item_duration, slack.remind, MINUTE, 7 * DAY, "1h", 0),
        ITEM("slack", "outbox_max", item_unsigned, slack.outbox_max, 10, 1000000, "1000", 0),
        ITEM("slack", "outbox_max_bytes", item_size, slack.outbox_max_bytes, 64 * 1024, 1ULL << 30, "8M", 0),

        ITEM("aws", "region", item_region, aws.region, 0, 0, NULL, S),
        ITEM("aws", "instance_id", item_instance_id, aws.instance_id, 0, 0, NULL, S),
        ITEM("aws", "endpoint_url", item_url, aws.endpoint_url, 0, 0, NULL, S),
        ITEM("aws", "imds_url", item_url, aws.imds_url, 0, 0, "http://169.254.169.254", S),
        ITEM("aws", "profile", item_word, aws.profile, 0, 0, NULL, S),
        ITEM("aws", "credentials_file", item_path, aws.credentials_file, 0, 0, NULL, S),
        ITEM("aws", "target_groups", item_target_groups, aws.target_groups, 0, 0, NULL, ITEM_LIST),
        ITEM("aws", "deregistration_timeout", item_duration, aws.deregistration_timeout, SEC, 2 * HOUR, "330s", 0),
        ITEM("aws", "registration_timeout", item_duration, aws.registration_timeout, SEC, 2 * HOUR, "300s", 0),
        ITEM("aws", "autoscaling", item_autoscaling, aws.autoscaling, 0, 0, "off", 0),
        ITEM("aws", "elb_endpoint_url", item_url, aws.elb_endpoint_url, 0, 0, NULL, S),
        ITEM("aws", "autoscaling_endpoint_url", item_url, aws.autoscaling_endpoint_url, 0, 0, NULL, S),

        ITEM("checks", "url", item_url, checks.url, 0, 0, NULL, S | REQ),
        ITEM("checks", "expect_status", item_status_set, checks.expect_status, 0, 0, "200-299", 0),
        ITEM("checks", "expect_content", item_content, checks.expect_content, 0, 0, NULL, S),
        ITEM("checks", "public_address", item_hostport, checks.public_address, 0, 0, NULL, S),
        ITEM("checks", "local_address", item_ipaddr, checks.local_address, 0, 0, NULL, S),
        ITEM("checks", "attempts", item_unsigned, checks.attempts, 1, 100000, "30", 0),
        ITEM("checks", "timeout", item_duration, checks.timeout, 10 * MS, 5 * MINUTE, "2s", 0),
        ITEM("checks", "every", item_duration, checks.every, 0, DAY, "0", 0),
        ITEM("checks", "rise", item_unsigned, checks.rise, 1, 1000, "2", 0),
        ITEM("checks", "fall", item_unsigned, checks.fall, 1, 1000, "3", 0),

        ITEM("remedy", "ladder", item_ladder, remedy.ladder, 0, 0, "reboot-instance", 0),
        ITEM("remedy", "max_per_window", item_unsigned, remedy.max_per_window, 1, 1000, "2", 0),
        ITEM("remedy", "window", item_duration, remedy.window, SEC, 30 * DAY, "1h", 0),
        ITEM("remedy", "dry_run", item_bool, remedy.dry_run, 0, 0, "no", 0),
        ITEM("remedy", "unit", item_unit, remedy.unit, 0, 0, NULL, S),
        ITEM("remedy", "settle", item_duration, remedy.settle, SEC, HOUR, "60s", 0),
        ITEM("remedy", "reboot_timeout", item_duration, remedy.reboot_timeout, 30 * SEC, HOUR, "10m", 0),
        ITEM("remedy", "step_timeout", item_duration, remedy.step_timeout, SEC, HOUR, "120s", 0),
        ITEM("remedy", "grace", item_duration, remedy.grace, 0, DAY, "10m", 0),
        ITEM("remedy", "budget", item_budget, remedy.budget, 0, 0, "pool", 0),

        /* one of agent_check_port and health_port: check_proxy() */
        ITEM("proxy", "agent_check_port", item_port, proxy.agent_check_port, 1, 65535, NULL, 0),
        /* default: derived in config_finalize() from [pool] / [checks] */
        ITEM("proxy", "agent_check_address", item_ipaddr, proxy.agent_check_address, 0, 0, NULL, S),
        ITEM("proxy", "health_port", item_port, proxy.health_port, 1, 65535, NULL, 0),
        /* default: derived as agent_check_address is */
        ITEM("proxy", "health_address", item_ipaddr, proxy.health_address, 0, 0, NULL, S),
        ITEM("proxy", "health_path", item_http_path, proxy.health_path, 0, 255, "/", S),

        ITEM("evidence", "profile", item_duration, evidence.profile, 0, 5 * MINUTE, "0", 0),
        ITEM("evidence", "frequency", item_unsigned, evidence.frequency, 1, 10000, "99", 0),
        ITEM("evidence", "perf", item_path, evidence.perf, 0, 0, "/usr/bin/perf", S),
        ITEM("evidence", "keep", item_unsigned, evidence.keep, 1, 10000, "20", 0),

        ITEM("metrics", "listen", item_hostport, metrics.listen, 0, 0, NULL, S),
        ITEM("metrics", "textfile", item_path, metrics.textfile, 0, 0, NULL, S),
        ITEM("metrics", "interval", item_duration, metrics.interval, 1 * SEC, HOUR, "15s", 0),
        ITEM("evidence", "max_bytes", item_size, evidence.max_bytes, 1024 * 1024, 1ULL << 40, "256M", 0),
};

#undef MS
#undef SEC
#undef MINUTE
#undef HOUR
#undef DAY
#undef S
#undef SECRET
#undef REQ

static void *item_dest(const ConfigItem *it, Config *c) {
        return (uint8_t *) c + it->offset;
}

static ssize_t section_index(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(config_sections); i++)
                if (streq(config_sections[i].name, name))
                        return (ssize_t) i;
        return -1;
}

static ssize_t item_index(const char *section, const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++)
                if (streq(config_items[i].section, section) && streq(config_items[i].key, key))
                        return (ssize_t) i;
        return -1;
}

static size_t item_index_by_offset(size_t offset) {
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++)
                if (config_items[i].offset == offset)
                        return i;
        abort(); /* a programming error in this file, caught by any test */
}

/* ---- parsing ---- */

typedef struct ParseContext {
        const char *path;
        const char *pos;   /* the reader's cursor in the text */
        unsigned line;     /* of the line the reader handed out last */
        char section[32];  /* the reader's current section, for its own messages */
        Config *config;
        unsigned item_line[ELEMENTSOF(config_items)];
        unsigned section_line[ELEMENTSOF(config_sections)];
        bool failed;
        int error_code;
        unsigned error_line;
        char *error; /* may be NULL after failed when out of memory */
} ParseContext;

_printf_(4, 5) static void ctx_fail(ParseContext *ctx, unsigned line, int code, const char *fmt, ...) {
        _cleanup_(freep) char *msg = NULL;
        va_list ap;
        int k;

        if (ctx->failed)
                return; /* the first error is the one to fix */
        ctx->failed = true;
        ctx->error_line = line;
        ctx->error_code = code;

        va_start(ap, fmt);
        k = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (k < 0 || asprintf(&ctx->error, "%s:%u: %s", ctx->path, line, msg) < 0) {
                msg = NULL;
                ctx->error = NULL;
                ctx->error_code = -ENOMEM;
        }
}

static void ctx_fail_oom(ParseContext *ctx) {
        ctx_fail(ctx, ctx->line, -ENOMEM, "out of memory");
}

static void ctx_reset_error(ParseContext *ctx) {
        ctx->failed = false;
        free(ctx->error);
        ctx->error = NULL;
}

static void section_header(ParseContext *ctx, char *line) {
        const char *names[ELEMENTSOF(config_sections)];
        const ConfigSection *sec;
        char *end, *rest;
        const char *hint;
        ssize_t i;

        end = strchr(line, ']');
        if (!end) {
                ctx_fail(ctx, ctx->line, -EINVAL, "missing ']' in section header");
                return;
        }
        *end = '\0';
        rest = end + 1;
        while (*rest && isspace((unsigned char) *rest))
                rest++;
        if (*rest && *rest != '#' && *rest != ';') {
                ctx_fail(ctx, ctx->line, -EINVAL, "unexpected text after [%s]", line + 1);
                return;
        }

        i = section_index(line + 1);
        if (i < 0) {
                for (size_t k = 0; k < ELEMENTSOF(config_sections); k++)
                        names[k] = config_sections[k].name;
                hint = suggest_nearest(line + 1, names, ELEMENTSOF(names));
                if (hint)
                        ctx_fail(ctx, ctx->line, -EINVAL, "unknown section [%s], did you mean [%s]?", line + 1, hint);
                else
                        ctx_fail(ctx, ctx->line, -EINVAL, "unknown section [%s]", line + 1);
                return;
        }
        if (ctx->section_line[i] > 0) {
                ctx_fail(ctx, ctx->line, -EINVAL, "duplicate section [%s] (first at line %u)", line + 1,
                         ctx->section_line[i]);
                return;
        }
        ctx->section_line[i] = ctx->line;
        snprintf(ctx->section, sizeof ctx->section, "%s", config_sections[i].name);
        sec = &config_sections[i];
        if (sec->enabled_offset != SIZE_MAX)
                *(bool *) ((uint8_t *) ctx->config + sec->enabled_offset) = true;
        *end = ']'; /* hand the line on to inih unchanged */
}

/* The key of a "key = value" line in [start, eol), if it looks like one of
 * ours; for messages about lines inih never gets to see. */
static bool line_key(const char *start, const char *eol, char *buf, size_t size) {
        const char *p = start;
        size_t n;

        while (p < eol && (islower((unsigned char) *p) || *p == '_'))
                p++;
        n = (size_t) (p - start);
        if (n == 0 || n >= size)
                return false;
        while (p < eol && is_blank(*p))
                p++;
        if (p == eol || (*p != '=' && *p != ':'))
                return false;
        memcpy(buf, start, n);
        buf[n] = '\0';
        return true;
}

/* Feeds inih one line at a time, so the handler knows the line number
 * (Debian's inih is built without INI_HANDLER_LINENO). It also sees section
 * headers, which inih does not report for a section without keys. */
static char *config_reader(char *buf, int num, void *stream) {
        ParseContext *ctx = stream;
        const char *start = ctx->pos, *eol;
        size_t len;

        if (ctx->failed || !*start)
                return NULL;

        eol = strchrnul(start, '\n');
        ctx->pos = *eol ? eol + 1 : eol;
        ctx->line++;

        if (ctx->line == 1 && strncmp(start, "\xEF\xBB\xBF", 3) == 0)
                start += 3;
        /* inih treats an indented line as the continuation of the previous
         * value; an indented key is far more likely meant as a key. */
        while (start < eol && is_blank(*start))
                start++;

        len = (size_t) (ctx->pos - start);
        if (num < 3 || len >= (size_t) num) {
                char key[64];

                /* inih would silently split the line in two. Name the key
                 * when there is one: that is what the reader looks for. */
                if (line_key(start, eol, key, sizeof key) && ctx->section[0])
                        ctx_fail(ctx, ctx->line, -EINVAL, "[%s] %s: line is too long (at most %d characters)",
                                 ctx->section, key, MAX(num - 2, 0));
                else
                        ctx_fail(ctx, ctx->line, -EINVAL, "line is too long (at most %d characters)", MAX(num - 2, 0));
                return NULL;
        }
        /* Comments may be in any encoding; what is parsed must be UTF-8. */
        if (*start != '#' && *start != ';' && !utf8_is_valid(start, (size_t) (eol - start))) {
                char key[64];

                if (line_key(start, eol, key, sizeof key) && ctx->section[0])
                        ctx_fail(ctx, ctx->line, -EINVAL, "[%s] %s: invalid UTF-8 (the file must be UTF-8 text)",
                                 ctx->section, key);
                else
                        ctx_fail(ctx, ctx->line, -EINVAL, "invalid UTF-8 (the file must be UTF-8 text)");
                return NULL;
        }
        memcpy(buf, start, len);
        buf[len] = '\0';

        if (buf[0] == '[') {
                section_header(ctx, buf);
                if (ctx->failed)
                        return NULL;
        }
        return buf;
}

static const char *section_of_key(const char *key) {
        const char *found = NULL;

        for (size_t i = 0; i < ELEMENTSOF(config_items); i++)
                if (streq(config_items[i].key, key)) {
                        if (found && !streq(found, config_items[i].section))
                                return NULL; /* ambiguous, e.g. "window" */
                        found = config_items[i].section;
                }
        return found;
}

static void unknown_key(ParseContext *ctx, const char *section, const char *name) {
        const char *names[ELEMENTSOF(config_items)], *hint, *other;
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(config_items); i++)
                if (streq(config_items[i].section, section))
                        names[n++] = config_items[i].key;
        /* A key put in the wrong section is a likelier story than a typo. */
        other = section_of_key(name);
        if (other) {
                ctx_fail(ctx, ctx->line, -EINVAL, "unknown key '%s' in [%s], it belongs in [%s]", name, section, other);
                return;
        }
        hint = suggest_nearest(name, names, n);
        if (hint)
                ctx_fail(ctx, ctx->line, -EINVAL, "unknown key '%s' in [%s], did you mean '%s'?", name, section, hint);
        else
                ctx_fail(ctx, ctx->line, -EINVAL, "unknown key '%s' in [%s]", name, section);
}

static int config_handler(void *user, const char *section, const char *name, const char *value) {
        ParseContext *ctx = user;
        _cleanup_(freep) char *why = NULL;
        const ConfigItem *it;
        ssize_t i;
        int r;

        /* Always 1: inih's return value then reports syntax errors only,
         * and ours are in ctx with their message. */
        if (ctx->failed)
                return 1;

        if (isempty(section)) {
                const char *other = section_of_key(name);
                if (other)
                        ctx_fail(ctx, ctx->line, -EINVAL, "key '%s' outside of any section, put it under [%s]", name,
                                 other);
                else
                        ctx_fail(ctx, ctx->line, -EINVAL, "key '%s' outside of any section", name);
                return 1;
        }
        if (section_index(section) < 0) {
                /* The reader refuses unknown headers; reaching here means
                 * inih read a header differently than we did. */
                ctx_fail(ctx, ctx->line, -EINVAL, "unknown section [%s]", section);
                return 1;
        }
        if (isempty(name)) {
                ctx_fail(ctx, ctx->line, -EINVAL, "missing key name before '='");
                return 1;
        }
        i = item_index(section, name);
        if (i < 0) {
                unknown_key(ctx, section, name);
                return 1;
        }
        if (ctx->item_line[i] > 0 && !(config_items[i].flags & ITEM_LIST)) {
                ctx_fail(ctx, ctx->line, -EINVAL, "duplicate key '%s' in [%s] (first set at line %u)", name, section,
                         ctx->item_line[i]);
                return 1;
        }
        ctx->item_line[i] = ctx->line;
        it = &config_items[i];

        if (isempty(value)) {
                ctx_fail(ctx, ctx->line, -EINVAL, "[%s] %s: empty value", section, name);
                return 1;
        }

        r = it->parse(it, value, ctx->config, item_dest(it, ctx->config), &why);
        if (r == -ENOMEM || (r < 0 && !why))
                ctx_fail_oom(ctx);
        else if (r < 0)
                /* inih only knows ';' as an inline comment: say so when a
                 * '#' comment is what made the value bad. */
                ctx_fail(ctx, ctx->line, -EINVAL, "[%s] %s: %s%s", section, name, why,
                         strstr(value, " #") ? " ('#' starts a comment only at the start of a line)" : "");
        return 1;
}

static unsigned line_of(const ParseContext *ctx, size_t offset) {
        return ctx->item_line[item_index_by_offset(offset)];
}

static unsigned section_line_of(const ParseContext *ctx, const char *section) {
        ssize_t i = section_index(section);
        return i >= 0 ? ctx->section_line[i] : 0;
}

/* Where a rule about two keys is reported: the later of the two, or the
 * section header when both are defaults. */
static unsigned later_line(const ParseContext *ctx, const char *section, size_t a, size_t b) {
        unsigned l = MAX(line_of(ctx, a), line_of(ctx, b));
        return l > 0 ? l : section_line_of(ctx, section);
}

#define OFF(field) offsetof(Config, field)

static void check_required(ParseContext *ctx) {
        for (size_t s = 0; s < ELEMENTSOF(config_sections) && !ctx->failed; s++) {
                char missing[256] = "";
                size_t n = 0, off = 0;

                if (ctx->section_line[s] == 0)
                        continue;
                for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                        const ConfigItem *it = &config_items[i];
                        int k;

                        if (!(it->flags & ITEM_REQUIRED) || !streq(it->section, config_sections[s].name) ||
                            ctx->item_line[i] > 0)
                                continue;
                        k = snprintf(missing + off, sizeof missing - off, "%s'%s'", n > 0 ? ", " : "", it->key);
                        if (k > 0 && (size_t) k < sizeof missing - off)
                                off += (size_t) k;
                        n++;
                }
                if (n > 0)
                        ctx_fail(ctx, ctx->section_line[s], -EINVAL, "[%s] missing required key%s %s",
                                 config_sections[s].name, n > 1 ? "s" : "", missing);
        }
}

static void check_slack(ParseContext *ctx) {
        const Config *c = ctx->config;
        unsigned sl = section_line_of(ctx, "slack");
        bool webhook = c->slack.webhook_url || c->slack.webhook_url_file;

        if (!c->slack.enabled)
                return;
        if (c->slack.webhook_url && c->slack.webhook_url_file) {
                ctx_fail(ctx, later_line(ctx, "slack", OFF(slack.webhook_url), OFF(slack.webhook_url_file)), -EINVAL,
                         "[slack] use either webhook_url or webhook_url_file, not both");
                return;
        }
        if (webhook) {
                size_t w = c->slack.webhook_url ? OFF(slack.webhook_url) : OFF(slack.webhook_url_file);
                if (c->slack.token || c->slack.token_file)
                        ctx_fail(ctx, later_line(ctx, "slack", w, c->slack.token ? OFF(slack.token) : OFF(slack.token_file)),
                                 -EINVAL, "[slack] use either %s or %s, not both",
                                 c->slack.webhook_url ? "webhook_url" : "webhook_url_file",
                                 c->slack.token ? "token" : "token_file");
                return;
        }
        if (c->slack.token && c->slack.token_file) {
                ctx_fail(ctx, later_line(ctx, "slack", OFF(slack.token), OFF(slack.token_file)), -EINVAL,
                         "[slack] use either token or token_file, not both");
                return;
        }
        if (!c->slack.token && !c->slack.token_file) {
                ctx_fail(ctx, sl, -EINVAL,
                         "[slack] needs webhook_url (or webhook_url_file), or channel with token or token_file");
                return;
        }
        if (!c->slack.channel)
                ctx_fail(ctx, sl, -EINVAL, "[slack] missing required key 'channel' (needed with %s)",
                         c->slack.token ? "token" : "token_file");
}

static void check_cross(ParseContext *ctx) {
        const Config *c = ctx->config;
        char a[32], b[32];

        if (c->cpu.clear_below >= c->cpu.threshold)
                ctx_fail(ctx, later_line(ctx, "cpu", OFF(cpu.clear_below), OFF(cpu.threshold)), -EINVAL,
                         "[cpu] clear_below (%g) must be below threshold (%g)", c->cpu.clear_below, c->cpu.threshold);
        if (c->cpu.interval > c->cpu.window)
                ctx_fail(ctx, later_line(ctx, "cpu", OFF(cpu.interval), OFF(cpu.window)), -EINVAL,
                         "[cpu] interval (%s) must not be longer than window (%s)",
                         format_duration(a, sizeof a, c->cpu.interval), format_duration(b, sizeof b, c->cpu.window));
        if (c->cpu.jitter > 0 && c->cpu.jitter >= c->cpu.interval)
                ctx_fail(ctx, later_line(ctx, "cpu", OFF(cpu.jitter), OFF(cpu.interval)), -EINVAL,
                         "[cpu] jitter (%s) must be shorter than interval (%s)",
                         format_duration(a, sizeof a, c->cpu.jitter), format_duration(b, sizeof b, c->cpu.interval));

        if (c->pool.heartbeat >= c->pool.lease)
                ctx_fail(ctx, later_line(ctx, "pool", OFF(pool.heartbeat), OFF(pool.lease)), -EINVAL,
                         "[pool] heartbeat (%s) must be shorter than lease (%s)",
                         format_duration(a, sizeof a, c->pool.heartbeat), format_duration(b, sizeof b, c->pool.lease));
        if (c->pool.enabled && !!c->pool.tls_cert_file != !!c->pool.tls_key_file)
                ctx_fail(ctx, later_line(ctx, "pool", OFF(pool.tls_cert_file), OFF(pool.tls_key_file)), -EINVAL,
                         "[pool] tls_cert_file and tls_key_file go together (a client certificate and its key)");
        if (c->pool.enabled && c->pool.redis && strncmp(c->pool.redis, "rediss://", 9) != 0 &&
            strncmp(c->pool.redis, "rediss-sentinel://", 18) != 0 &&
            (c->pool.tls_ca_file || c->pool.tls_cert_file || c->pool.tls_key_file || c->pool.tls_server_name))
                ctx_fail(ctx,
                         later_line(ctx, "pool", OFF(pool.redis),
                                    c->pool.tls_ca_file       ? OFF(pool.tls_ca_file)
                                    : c->pool.tls_cert_file   ? OFF(pool.tls_cert_file)
                                    : c->pool.tls_key_file    ? OFF(pool.tls_key_file)
                                                              : OFF(pool.tls_server_name)),
                         -EINVAL, "[pool] tls_* keys need a rediss:// or rediss-sentinel:// URL in redis");
        /* The table's bound already says so; this stays in case the bound
         * is ever relaxed: 0 would let no host ever leave the pool. */
        if (c->pool.max_unavailable < 1)
                ctx_fail(ctx, later_line(ctx, "pool", OFF(pool.max_unavailable), OFF(pool.max_unavailable)), -EINVAL,
                         "[pool] max_unavailable must be at least 1");

        if (c->remedy.ladder_len == 0)
                ctx_fail(ctx, later_line(ctx, "remedy", OFF(remedy.ladder), OFF(remedy.ladder)), -EINVAL,
                         "[remedy] ladder must not be empty");
        for (size_t i = 0; i < c->remedy.ladder_len; i++)
                if (c->remedy.ladder[i] == REMEDY_RESTART_UNIT && !c->remedy.ladder_unit[i] && !c->remedy.unit)
                        ctx_fail(ctx, later_line(ctx, "remedy", OFF(remedy.ladder), OFF(remedy.unit)), -EINVAL,
                                 "[remedy] ladder has restart-unit but no unit is set (write restart-unit:NAME, or "
                                 "set unit)");
}

/* A target group lives in one region, and the instance must be in it to
 * be its target: every ARN names the same region, and [aws] region when
 * set. Without it the region comes from IMDS at start, and the AWS
 * client compares it there. */
static void check_aws(ParseContext *ctx) {
        const Config *c = ctx->config;
        unsigned line = later_line(ctx, "aws", OFF(aws.target_groups), OFF(aws.region));
        char first[33] = "";

        for (size_t i = 0; i < c->aws.n_target_groups; i++) {
                char region[33];

                if (!aws_target_group_arn_parse(c->aws.target_groups[i].arn, region, sizeof region)) {
                        ctx_fail(ctx, line, -EINVAL, "[aws] target_groups: '%s' is not a target group ARN",
                                 c->aws.target_groups[i].arn);
                        return;
                }
                if (c->aws.region && !streq(region, c->aws.region)) {
                        ctx_fail(ctx, line, -EINVAL,
                                 "[aws] target_groups: '%s' is in region %s, but [aws] region is %s (an instance can "
                                 "only be a target of a group in its own region)",
                                 c->aws.target_groups[i].arn, region, c->aws.region);
                        return;
                }
                if (first[0] && !streq(region, first)) {
                        ctx_fail(ctx, line, -EINVAL,
                                 "[aws] target_groups: '%s' is in region %s, '%s' in %s (an instance can only be a "
                                 "target of groups in its own region)",
                                 c->aws.target_groups[0].arn, first, c->aws.target_groups[i].arn, region);
                        return;
                }
                memcpy(first, region, sizeof first);
        }
}

bool config_aws_needs_identity(const Config *c) {
        bool reboot_instance = false;

        for (size_t i = 0; c->remedy.enabled && i < c->remedy.ladder_len; i++)
                if (c->remedy.ladder[i] == REMEDY_REBOOT_INSTANCE)
                        reboot_instance = true;
        return c->aws.enabled &&
               (reboot_instance || c->aws.n_target_groups > 0 || c->aws.autoscaling == AWS_AUTOSCALING_STANDBY);
}

bool config_aws_equal(const Config *x, const Config *y) {
        if (x->aws.enabled != y->aws.enabled || !streq_ptr(x->aws.region, y->aws.region) ||
            !streq_ptr(x->aws.instance_id, y->aws.instance_id) || !streq_ptr(x->aws.endpoint_url, y->aws.endpoint_url) ||
            !streq_ptr(x->aws.imds_url, y->aws.imds_url) || !streq_ptr(x->aws.profile, y->aws.profile) ||
            !streq_ptr(x->aws.credentials_file, y->aws.credentials_file) ||
            x->aws.n_target_groups != y->aws.n_target_groups ||
            x->aws.deregistration_timeout != y->aws.deregistration_timeout ||
            x->aws.registration_timeout != y->aws.registration_timeout || x->aws.autoscaling != y->aws.autoscaling ||
            !streq_ptr(x->aws.elb_endpoint_url, y->aws.elb_endpoint_url) ||
            !streq_ptr(x->aws.autoscaling_endpoint_url, y->aws.autoscaling_endpoint_url))
                return false;
        for (size_t i = 0; i < x->aws.n_target_groups; i++)
                if (!streq(x->aws.target_groups[i].arn, y->aws.target_groups[i].arn) ||
                    x->aws.target_groups[i].port != y->aws.target_groups[i].port)
                        return false;
        return true;
}

/* Remediation without a fleet-wide budget must be asked for in writing: a
 * load spike on the whole fleet would otherwise reboot every host at once.
 * A dry run takes no slot and changes nothing, so it needs no budget. */
static void check_budget(ParseContext *ctx) {
        const Config *c = ctx->config;
        unsigned line = later_line(ctx, "remedy", OFF(remedy.budget), OFF(remedy.budget));

        if (!c->remedy.enabled)
                return;
        if (c->remedy.budget == REMEDY_BUDGET_NONE && c->pool.enabled)
                ctx_fail(ctx, line, -EINVAL,
                         "[remedy] budget = none contradicts [pool] (line %u): with a pool every leave is checked "
                         "against min_serving and max_unavailable; remove budget = none (raise max_unavailable to "
                         "let more hosts out at once)",
                         section_line_of(ctx, "pool"));
        else if (c->remedy.budget == REMEDY_BUDGET_POOL && !c->pool.enabled && !c->remedy.dry_run)
                ctx_fail(ctx, line, -EINVAL,
                         "[remedy] without [pool]: no fleet budget limits how many hosts remediate at once, so an "
                         "overload of the whole fleet would reboot every host; add a [pool] section, or write "
                         "budget = none in [remedy] to accept that");
}

/* The IP of "HOST:PORT" / "[V6]:PORT" into buf, when HOST is an IP literal. */
static bool hostport_ip(const char *hp, char *buf, size_t size) {
        const char *start = hp, *end;
        struct in6_addr a;
        size_t n;

        if (!hp)
                return false;
        if (*hp == '[') {
                start = hp + 1;
                end = strchr(start, ']');
        } else
                end = strrchr(hp, ':');
        if (!end)
                return false;
        n = (size_t) (end - start);
        if (n == 0 || n >= size)
                return false;
        memcpy(buf, start, n);
        buf[n] = '\0';
        return inet_pton(AF_INET, buf, &a) == 1 || inet_pton(AF_INET6, buf, &a) == 1;
}

/* HAProxy's agent-check connects to the server's own address (unless its
 * server line says agent-addr): a listener on 127.0.0.1 behind a server on
 * another address is never reached, and HAProxy ignores that silently. So
 * the default is the address proxies route to. A load balancer's HTTP
 * health check does the same, so the health endpoint shares the default. */
static void derive_listen_address(ParseContext *ctx, const char *ip, AgentCheckFrom from, char **address,
                                  AgentCheckFrom *ret_from) {
        if (*address) {
                *ret_from = AGENT_CHECK_FROM_CONFIG;
                return;
        }
        *ret_from = from;
        *address = strdup(from == AGENT_CHECK_FROM_WILDCARD ? "0.0.0.0" : ip);
        if (!*address)
                ctx_fail_oom(ctx);
}

static void derive_proxy_addresses(ParseContext *ctx) {
        Config *c = ctx->config;
        char ip[INET6_ADDRSTRLEN];
        AgentCheckFrom from = AGENT_CHECK_FROM_WILDCARD;

        if (hostport_ip(c->pool.address, ip, sizeof ip))
                from = AGENT_CHECK_FROM_POOL;
        else if (hostport_ip(c->checks.public_address, ip, sizeof ip))
                from = AGENT_CHECK_FROM_PUBLIC_ADDRESS;
        if (from != AGENT_CHECK_FROM_WILDCARD) {
                c->proxy.proxy_address = strdup(ip);
                c->proxy.proxy_address_from = from;
                if (!c->proxy.proxy_address) {
                        ctx_fail_oom(ctx);
                        return;
                }
        }
        derive_listen_address(ctx, ip, from, &c->proxy.agent_check_address, &c->proxy.agent_check_from);
        derive_listen_address(ctx, ip, from, &c->proxy.health_address, &c->proxy.health_from);
}

/* A deployment behind an ALB has no HAProxy: either listener makes the
 * section useful, none makes it a mistake. */
static void check_proxy(ParseContext *ctx) {
        const Config *c = ctx->config;

        if (c->proxy.enabled && c->proxy.agent_check_port == 0 && c->proxy.health_port == 0)
                ctx_fail(ctx, section_line_of(ctx, "proxy"), -EINVAL,
                         "[proxy] needs agent_check_port (HAProxy's agent-check), health_port (an HTTP health "
                         "check, e.g. an AWS load balancer's), or both");
        else if (c->proxy.enabled && c->proxy.agent_check_port == c->proxy.health_port)
                ctx_fail(ctx, later_line(ctx, "proxy", OFF(proxy.agent_check_port), OFF(proxy.health_port)), -EINVAL,
                         "[proxy] agent_check_port and health_port must differ (%u is both)",
                         (unsigned) c->proxy.health_port);
}

/* Metrics must go somewhere: their own listener, the health endpoint's,
 * or a textfile. */
static void check_metrics(ParseContext *ctx) {
        const Config *c = ctx->config;

        if (c->metrics.enabled && !c->metrics.listen && !c->metrics.textfile && c->proxy.health_port == 0)
                ctx_fail(ctx, section_line_of(ctx, "metrics"), -EINVAL,
                         "[metrics] needs listen (ADDR:PORT), textfile (for node_exporter), or [proxy] health_port "
                         "(GET /metrics on the health endpoint)");
}

static void config_finalize(ParseContext *ctx) {
        Config *c = ctx->config;

        check_required(ctx);
        check_slack(ctx);
        check_cross(ctx);
        check_budget(ctx);
        check_aws(ctx);
        if (ctx->failed)
                return;

        if (!c->agent.host) {
                char h[HOST_NAME_MAX + 1] = "";

                if (gethostname(h, sizeof h - 1) < 0 || !*h) {
                        ctx_fail(ctx, section_line_of(ctx, "agent"), -EINVAL,
                                 "[agent] host: cannot determine the host name, set it");
                        return;
                }
                c->agent.host = strdup(h);
                if (!c->agent.host) {
                        ctx_fail_oom(ctx);
                        return;
                }
        }
        if (!c->checks.public_address && c->pool.address) {
                c->checks.public_address = strdup(c->pool.address);
                if (!c->checks.public_address) {
                        ctx_fail_oom(ctx);
                        return;
                }
        }
        derive_proxy_addresses(ctx);
        check_proxy(ctx);
        check_metrics(ctx);
}

#undef OFF

static int config_new_defaults(Config **ret) {
        _cleanup_(config_freep) Config *c = NULL;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->n_ref = 1;
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *it = &config_items[i];
                _cleanup_(freep) char *why = NULL;
                int r;

                if (!it->def)
                        continue;
                r = it->parse(it, it->def, c, item_dest(it, c), &why);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        /* A bad default is a bug here; any test catches it. */
                        log_error("[%s] %s: bad built-in default: %s", it->section, it->key, strna(why));
                        return -EINVAL;
                }
        }
        *ret = TAKE_PTR(c);
        return 0;
}

/* As config_parse_string(), and on success, when ret_lines is given, the
 * line each item was set on (0: default), indexed like config_items. */
static int config_parse_lines(const char *text, const char *path, Config **ret_config, char **ret_error,
                              unsigned *ret_lines) {
        _cleanup_(config_freep) Config *c = NULL;
        ParseContext ctx = {};
        int r;

        if (!path)
                path = "(config)";
        if (!text)
                return -EINVAL;

        r = config_new_defaults(&c);
        if (r < 0)
                return r;
        c->path = strdup(path);
        if (!c->path)
                return -ENOMEM;

        ctx.path = path;
        ctx.pos = text;
        ctx.config = c;

        r = ini_parse_stream(config_reader, &ctx, config_handler, &ctx);
        if (r < 0)
                ctx_fail_oom(&ctx);
        else if (r > 0 && (!ctx.failed || (unsigned) r < ctx.error_line)) {
                ctx_reset_error(&ctx);
                ctx_fail(&ctx, (unsigned) r, -EINVAL, "syntax error, expected [section], key = value or a comment");
        }
        if (!ctx.failed)
                config_finalize(&ctx);

        if (ctx.failed) {
                if (ret_error)
                        *ret_error = TAKE_PTR(ctx.error);
                free(ctx.error);
                return ctx.error_code < 0 ? ctx.error_code : -EINVAL;
        }
        if (ret_lines)
                memcpy(ret_lines, ctx.item_line, sizeof ctx.item_line);
        *ret_config = TAKE_PTR(c);
        return 0;
}

int config_parse_string(const char *text, const char *path, Config **ret_config, char **ret_error) {
        return config_parse_lines(text, path, ret_config, ret_error, NULL);
}

Config *config_ref(Config *c) {
        if (c) {
                assert(c->n_ref > 0);
                c->n_ref++;
        }
        return c;
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        assert(c->n_ref > 0);
        if (--c->n_ref > 0)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *it = &config_items[i];
                char **s;

                if (!(it->flags & ITEM_STRING))
                        continue;
                s = item_dest(it, c);
                if (*s && (it->flags & ITEM_SECRET))
                        explicit_bzero(*s, strlen(*s));
                free(*s);
        }
        for (size_t i = 0; i < REMEDY_LADDER_MAX; i++)
                free(c->remedy.ladder_unit[i]);
        target_groups_free(c->aws.target_groups, c->aws.n_target_groups);
        free(c->proxy.proxy_address);
        free(c->path);
        free(c);
        return NULL;
}

/* ---- files ---- */

static int read_all(int fd, size_t max, Buffer *ret) {
        return read_full_fd(fd, max, &ret->data, &ret->size);
}

static bool redis_url_has_password(const char *url) {
        const char *auth, *end;

        if (url && strncmp(url, "redis://", 8) == 0)
                auth = url + 8;
        else if (url && strncmp(url, "sentinel://", 11) == 0)
                auth = url + 11;
        else
                return false;
        end = strchrnul(auth, '/');
        /* Any user info counts: clients differ on whether "redis://x@host"
         * names a user or a password. */
        return memchr(auth, '@', (size_t) (end - auth)) != NULL;
}

/* getgrnam_r, with a buffer that grows on ERANGE (large LDAP groups). */
static int group_resolve(const char *name, gid_t *ret) {
        size_t size = 4096;

        for (;;) {
                _cleanup_(freep) char *buf = malloc(size);
                struct group g, *found = NULL;
                int k;

                if (!buf)
                        return -ENOMEM;
                k = getgrnam_r(name, &g, buf, size, &found);
                if (k == 0) {
                        if (!found)
                                return -ENOENT;
                        *ret = g.gr_gid;
                        return 0;
                }
                if (k != ERANGE)
                        /* glibc reports "not found" as ENOENT and friends on some NSS backends */
                        return k == ENOENT || k == ESRCH || k == EBADF || k == EPERM ? -ENOENT : -k;
                if (size >= 16 * 1024 * 1024)
                        return -ERANGE;
                size *= 2;
        }
}

/* A systemd credential (LoadCredential=) exists only while the service
 * runs: checked when the agent starts (CREDENTIALS_DIRECTORY is set then),
 * not by an operator's --check-config from a shell. */
static bool credential_absent_outside_service(const char *path) {
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        size_t n;

        if (strncmp(path, "/run/credentials/", 17) != 0)
                return false;
        if (isempty(dir))
                return true;
        n = strlen(dir);
        return !(strncmp(path, dir, n) == 0 && path[n] == '/');
}

/* Every secret file the config names passes the rule that the reader
 * applies at start (secret_file_check()): it exists, is a regular file, not
 * a symlink, has no group/other access and is owned by root or by us. So
 * --check-config, start and reload all refuse a missing token file with
 * FILE:LINE, not the first alert hours later.
 *
 * Run by an unprivileged user (a CI lint, an operator without sudo), the
 * open fails with EACCES on a root-only file: then the same rule is applied
 * to lstat()'s answer, which needs no read access; when even that is denied
 * (a 0700 directory), the file is left to the start-up check with a warning,
 * rather than failing a config that is right. */
static int check_secret_files(const Config *c, const unsigned *lines, char **ret_error) {
        static const size_t offsets[] = {
                offsetof(Config, pool.password_file),
                offsetof(Config, pool.tls_key_file),
                offsetof(Config, slack.token_file),
                offsetof(Config, slack.webhook_url_file),
                offsetof(Config, aws.credentials_file),
        };

        for (size_t i = 0; i < ELEMENTSOF(offsets); i++) {
                size_t k = item_index_by_offset(offsets[i]);
                const ConfigItem *it = &config_items[k];
                const char *file = *(char *const *) ((const uint8_t *) c + offsets[i]);
                _cleanup_(freep) char *why = NULL;
                struct stat st;
                int r;

                if (!file)
                        continue;
                r = secret_file_check(file, &why);
                if (r == -ENOENT && credential_absent_outside_service(file)) {
                        log_warning("%s:%u: [%s] %s: %s is a systemd credential, present only while the service "
                                    "runs: checked when the agent starts",
                                    c->path, lines[k], it->section, it->key, file);
                        continue;
                }
                if (r == -EACCES && geteuid() != 0) {
                        free(TAKE_PTR(why));
                        if (lstat(file, &st) >= 0)
                                r = secret_file_verdict(file, &st, &why);
                        else if (errno != EACCES)
                                r = error_set(&why, negative_errno(), "%s: cannot stat: %m", file);
                        else {
                                log_warning("%s:%u: [%s] %s: cannot check %s as uid %u (permission denied): it is "
                                            "checked when the agent starts",
                                            c->path, lines[k], it->section, it->key, file, (unsigned) geteuid());
                                continue;
                        }
                }
                if (r < 0 && !why)
                        return r;
                if (r < 0)
                        return error_set(ret_error, r, "%s:%u: [%s] %s: %s", c->path, lines[k], it->section, it->key,
                                          why);
        }
        return 0;
}

int config_load(const char *path, Config **ret_config, char **ret_error) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(buffer_wipe) Buffer text = {};
        _cleanup_(closep) int fd = -1;
        const char *secret = NULL, *instead = NULL;
        unsigned lines[ELEMENTSOF(config_items)], line = 0;
        struct stat st;
        int r;

        if (!path)
                return -EINVAL;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return error_set(ret_error, negative_errno(), "%s: cannot read: %m", path);
        if (fstat(fd, &st) < 0)
                return error_set(ret_error, negative_errno(), "%s: cannot read: %m", path);
        if (!S_ISREG(st.st_mode))
                return error_set(ret_error, -EINVAL, "%s: cannot read: not a regular file", path);
        /* A root daemon must not run what others may rewrite: whoever
         * writes this file picks what runs as root, and who may drain
         * (control_group). */
        if (st.st_mode & (S_IWGRP | S_IWOTH))
                return error_set(ret_error, -EPERM, "%s: is writable by %s (mode %04o); chmod go-w it", path,
                                  st.st_mode & S_IWOTH ? "others" : "its group", (unsigned) (st.st_mode & 07777));
        if (st.st_uid != 0 && st.st_uid != geteuid())
                return error_set(ret_error, -EPERM, "%s: owned by uid %u, expected root or uid %u (the agent's)", path,
                                  (unsigned) st.st_uid, (unsigned) geteuid());

        r = read_all(fd, CONFIG_SIZE_MAX, &text);
        if (r == -EFBIG)
                return error_set(ret_error, r, "%s: cannot read: larger than %zu bytes, not a config file", path,
                                  CONFIG_SIZE_MAX);
        if (r < 0) {
                errno = -r;
                return error_set(ret_error, r, "%s: cannot read: %m", path);
        }
        if (strlen(text.data) != text.size) {
                /* Where: an editor shows the file, not its bytes. */
                unsigned nul_line = 1;
                for (const char *q = text.data; *q; q++)
                        nul_line += *q == '\n';
                return error_set(ret_error, -EINVAL, "%s:%u: holds a NUL byte, not a text file", path, nul_line);
        }

        r = config_parse_lines(text.data, path, &c, ret_error, lines);
        if (r < 0)
                return r;
        if (c->agent.control_group && !c->agent.control_gid_set) {
                unsigned gline = lines[item_index_by_offset(offsetof(Config, agent.control_group))];

                r = group_resolve(c->agent.control_group, &c->agent.control_gid);
                if (r == -ENOENT)
                        return error_set(ret_error, -EINVAL,
                                          "%s:%u: [agent] control_group: no such group '%s' (create it with groupadd, "
                                          "or give a numeric gid)",
                                          path, gline, c->agent.control_group);
                if (r < 0) {
                        errno = -r;
                        return error_set(ret_error, r, "%s:%u: [agent] control_group: cannot look up group '%s': %m",
                                          path, gline, c->agent.control_group);
                }
                c->agent.control_gid_set = true;
        }

        if (c->slack.token) {
                secret = "[slack] token";
                instead = "token_file";
                line = lines[item_index_by_offset(offsetof(Config, slack.token))];
        } else if (c->slack.webhook_url) {
                secret = "[slack] webhook_url";
                instead = "webhook_url_file";
                line = lines[item_index_by_offset(offsetof(Config, slack.webhook_url))];
        } else if (redis_url_has_password(c->pool.redis)) {
                secret = "[pool] redis password";
                instead = "password_file";
                line = lines[item_index_by_offset(offsetof(Config, pool.redis))];
        }
        if (secret && (st.st_mode & (S_IRGRP | S_IROTH)))
                return error_set(ret_error, -EPERM,
                                  "%s:%u: file holds a secret (%s) but is readable by group/others (mode %04o); "
                                  "chmod 600 it or use %s",
                                  path, line, secret, (unsigned) (st.st_mode & 07777), instead);

        r = check_secret_files(c, lines, ret_error);
        if (r < 0)
                return r;

        /* What status shows, to compare with `sha256sum` of the file on
         * disk. Not for a file with a secret in it: status is open to every
         * local user, and the hash of a known layout would let one guess a
         * weak password offline. */
        if (!secret)
                (void) sha256_hex(text.data, text.size, c->sha256);

        *ret_config = TAKE_PTR(c);
        return 0;
}
