/* Config: the INI file (libinih) turned into a validated Config through one
 * table of {section, key, parser, offset, min, max}. Parsing is pure: it
 * takes the text and the file name and does no other I/O, so a SIGHUP
 * reload can parse into a new Config and swap only when it is valid.
 *
 * A missing section means that integration is off (`enabled == false`),
 * and status reports it as "not configured". */
#pragma once

#include <netinet/in.h>
#include <sys/types.h>

#include "macro.h"
#include "statusset.h"

typedef enum RemedyStep {
        REMEDY_RESTART_UNIT,     /* restart the app's systemd unit */
        REMEDY_REBOOT_INSTANCE,  /* EC2 RebootInstances */
        REMEDY_LOCAL_REBOOT,     /* logind reboot of this machine ("reboot-local") */
        REMEDY_NONE,             /* nothing: the host leaves, drains, is checked and rejoins (a rehearsal) */
        _REMEDY_STEP_MAX,
        _REMEDY_STEP_INVALID = -EINVAL,
} RemedyStep;

const char *remedy_step_to_string(RemedyStep s);
RemedyStep remedy_step_from_string(const char *s);

typedef enum PoolOnUnreachable {
        POOL_ON_UNREACHABLE_HOLD,      /* default: never reboot while maybe routed */
        POOL_ON_UNREACHABLE_REMEDIATE, /* explicit opt-in */
        _POOL_ON_UNREACHABLE_MAX,
        _POOL_ON_UNREACHABLE_INVALID = -EINVAL,
} PoolOnUnreachable;

const char *pool_on_unreachable_to_string(PoolOnUnreachable p);
PoolOnUnreachable pool_on_unreachable_from_string(const char *s);

/* Who limits how many hosts remediate at once. */
typedef enum RemedyBudget {
        REMEDY_BUDGET_POOL, /* default: the [pool]'s disruption budget (Redis, atomic) */
        REMEDY_BUDGET_NONE, /* explicit opt-out: each host decides alone ("no fleet budget") */
        _REMEDY_BUDGET_MAX,
        _REMEDY_BUDGET_INVALID = -EINVAL,
} RemedyBudget;

const char *remedy_budget_to_string(RemedyBudget b);
RemedyBudget remedy_budget_from_string(const char *s);

/* What [aws] autoscaling does around a remediation. */
typedef enum AwsAutoscaling {
        AWS_AUTOSCALING_OFF,     /* default: the group is not told */
        AWS_AUTOSCALING_STANDBY, /* EnterStandby before, ExitStandby after */
        _AWS_AUTOSCALING_MAX,
        _AWS_AUTOSCALING_INVALID = -EINVAL,
} AwsAutoscaling;

const char *aws_autoscaling_to_string(AwsAutoscaling a);
AwsAutoscaling aws_autoscaling_from_string(const char *s);

/* One of [aws] target_groups: this instance is a target of it. */
typedef struct TargetGroupRef {
        char *arn;     /* arn:PARTITION:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID */
        unsigned port; /* 0: the group's own port */
} TargetGroupRef;

#define CONFIG_TARGET_GROUPS_MAX 16

/* Where [proxy] agent_check_address came from when it was not written. */
typedef enum AgentCheckFrom {
        AGENT_CHECK_FROM_CONFIG,         /* [proxy] agent_check_address */
        AGENT_CHECK_FROM_POOL,           /* the IP of [pool] address */
        AGENT_CHECK_FROM_PUBLIC_ADDRESS, /* the IP of [checks] public_address */
        AGENT_CHECK_FROM_WILDCARD,       /* neither is an IP literal: 0.0.0.0 */
        _AGENT_CHECK_FROM_MAX,
        _AGENT_CHECK_FROM_INVALID = -EINVAL,
} AgentCheckFrom;

const char *agent_check_from_to_string(AgentCheckFrom f);

/* Where a listener on a derived address listens instead when binding it
 * failed with r: -EADDRNOTAVAIL for an address from [pool] or [checks]
 * that is not on this host (NAT, an elastic IP: the connections for it
 * arrive on some local one) gives the wildcard of its family; anything
 * else (a written address, another error) NULL: no retry. Pure. */
const char *config_listen_fallback(const char *address, AgentCheckFrom from, int r);

#define REMEDY_LADDER_MAX 8

typedef struct Config {
        unsigned n_ref; /* config_ref()/config_free(): see below */
        char *path; /* the file this was read from, for messages */
        char sha256[65]; /* config_load(): of the exact text parsed, as sha256sum prints it; "" when
                          * the file holds a secret inline (status is world-readable), or not from a file */

        struct {
                char *host;           /* default: gethostname() at load time */
                char *state_dir;      /* default /var/lib/monkeyd */
                char *control_socket; /* default /run/monkeyd/control.sock */
                char *proc_stat;      /* default /proc/stat */
                char *boot_id;        /* default /proc/sys/kernel/random/boot_id */
                int log_level;        /* LOG_INFO by default */
                /* Members of this group may run the mutating control
                 * commands too. The name as written (NULL: not set); the
                 * gid is resolved by config_load() (getgrnam_r), or by the
                 * parser when a number was written. */
                char *control_group;
                gid_t control_gid;
                bool control_gid_set;
        } agent;

        struct {
                double threshold;   /* percent busy, (0, 100] */
                usec_t window;      /* how long busy must stay >= threshold */
                usec_t interval;    /* sampling interval */
                double clear_below; /* percent; < threshold */
                usec_t jitter;      /* random spread added to each interval's start */
        } cpu;

        struct {
                bool enabled;
                char *redis;          /* redis://[user:pass@]host:port/db | unix:///path |
                                       * sentinel://[user:pass@]h1:p1,h2:p2/master[/db] */
                char *password_file;  /* secret, refused if group/world readable */
                char *tls_ca_file;    /* rediss://: the CA certificates (PEM); NULL: the system store */
                char *tls_cert_file;  /* rediss://: a client certificate (chain, PEM), with tls_key_file */
                char *tls_key_file;   /* its key: secret, refused if group/world readable */
                char *tls_server_name; /* the name the server's certificate carries, when not the URL's host */
                char *name;           /* pool name P, used as monkey:{P}:... */
                char *address;        /* advertised ip:port */
                unsigned min_serving;
                unsigned max_unavailable;
                char *list_key;       /* optional LIST mirror for list-based proxies */
                usec_t drain;         /* grace for in-flight requests, default 10s */
                usec_t lease;         /* lease TTL, default 15s */
                usec_t heartbeat;     /* lease renewal, default 5s */
                PoolOnUnreachable on_unreachable;
                usec_t out_max;       /* a host that left counts as out this long at most, default 30m */
        } pool;

        struct {
                bool enabled;
                char *webhook_url;
                char *token;          /* inline token: the config file must then be 0600 */
                char *token_file;
                char *channel;
                char *webhook_url_file; /* secret file holding the webhook URL */
                char *api_url;        /* default https://slack.com/api */
                usec_t timeout;       /* per request, default 10s */
                usec_t remind;        /* repeated conditions alert again after this, default 1h */
                unsigned outbox_max;  /* spooled messages kept at most, default 1000 */
                size_t outbox_max_bytes; /* and bytes, default 8M */
        } slack;

        struct {
                bool enabled;
                char *region;
                char *instance_id;
                char *endpoint_url;
                char *imds_url;       /* default http://169.254.169.254 */
                char *profile;
                char *credentials_file;
                TargetGroupRef *target_groups; /* ARN[:PORT], ... in the order written */
                size_t n_target_groups;
                usec_t deregistration_timeout; /* until the target is unused (or gone), default 330s */
                usec_t registration_timeout;   /* until it is healthy again, default 300s */
                AwsAutoscaling autoscaling;    /* default off */
                char *elb_endpoint_url;        /* default https://elasticloadbalancing.REGION.amazonaws.com/ */
                char *autoscaling_endpoint_url; /* default https://autoscaling.REGION.amazonaws.com/ */
        } aws;

        struct {
                bool enabled;
                char *url;
                StatusSet expect_status; /* default 200-299 */
                char *expect_content;    /* substring, or "re:" + POSIX ERE */
                char *public_address;    /* default: pool address */
                char *local_address;     /* the host's private address; default: IMDS local-ipv4, if any */
                unsigned attempts;       /* default 30 */
                usec_t timeout;          /* per attempt, default 2s */
                usec_t every;            /* periodic readiness while serving, 0 = off */
                unsigned rise, fall;
        } checks;

        struct {
                bool enabled;
                RemedyStep ladder[REMEDY_LADDER_MAX];
                char *ladder_unit[REMEDY_LADDER_MAX]; /* restart-unit:NAME, else NULL ([remedy] unit) */
                size_t ladder_len;
                unsigned max_per_window; /* default 2 */
                usec_t window;           /* default 1h */
                bool dry_run;
                char *unit;              /* unit for a bare restart-unit */
                usec_t settle;           /* after restart-unit, the load must fall within this, default 60s */
                usec_t reboot_timeout;   /* still up this long after a reboot call: next step, default 10m */
                usec_t step_timeout;     /* a step that has no answer (IMDS, EC2, D-Bus) this long: failed, default 120s */
                usec_t grace;            /* after a reboot we caused, breaches wait this long, default 10m */
                RemedyBudget budget;     /* default pool; "none" must be written to run without [pool] */
        } remedy;

        struct {
                bool enabled;
                uint16_t agent_check_port; /* 0: no HAProxy agent-check listener */
                /* Default: the IP of [pool] address (HAProxy's agent-check
                 * connects to the server's own address), else of [checks]
                 * public_address, else 0.0.0.0; agent_check_from says which. */
                char *agent_check_address;
                AgentCheckFrom agent_check_from;
                /* The HTTP health endpoint (healthendpoint.h); at least one
                 * of the two ports is set when the section is there. */
                uint16_t health_port; /* 0: off */
                char *health_address; /* default derived as agent_check_address is */
                AgentCheckFrom health_from; /* CONFIG: [proxy] health_address */
                char *health_path;    /* default "/" */
                /* The IP proxies know this host by (the same sources, never
                 * the written agent_check_address), NULL when unknown: what
                 * the listener must be reachable on. */
                char *proxy_address;
                AgentCheckFrom proxy_address_from; /* POOL or PUBLIC_ADDRESS, when known */
        } proxy;

        /* Prometheus metrics (metrics.h): GET /metrics on the health
         * endpoint's listener, or on `listen`; and/or a textfile for
         * node_exporter, rewritten every `interval`. */
        struct {
                bool enabled;
                char *listen;            /* ADDR:PORT of its own listener; NULL: the health endpoint's */
                char *textfile;          /* NULL: none */
                usec_t interval;         /* the textfile's, default 15s */
        } metrics;

        /* Always on: the summary of every incident is written; only the
         * perf profile is opt-in (profile > 0). */
        struct {
                usec_t profile;          /* perf record this long at breach, 0 = off (default) */
                unsigned frequency;      /* perf record -F, default 99 */
                char *perf;              /* the perf binary, default /usr/bin/perf */
                unsigned keep;           /* incidents kept, default 20 */
                size_t max_bytes;        /* and bytes in state_dir/incidents, default 256M */
        } evidence;
} Config;

/* NULL while a fleet-wide budget limits remediation (or there is none to
 * limit: observe only); else what status and every remediation alert say,
 * starting with "no fleet budget". */
const char *config_no_fleet_budget(const Config *c);

/* Whether the agent needs this instance's identity (region, instance id,
 * role credentials from IMDS): [aws] with reboot-instance in [remedy]'s
 * ladder, target groups, or autoscaling = standby. */
bool config_aws_needs_identity(const Config *c);

/* Whether two configs' [aws] sections say the same, key by key: a reload
 * that changes one rebuilds the AWS clients. */
bool config_aws_equal(const Config *x, const Config *y);

/* Parse INI text. `path` names the file in messages. On failure returns a
 * negative errno (-EINVAL for bad content) and *ret_error holds one line
 * "PATH:LINE: message" (LINE is 0 for whole-file problems such as a
 * missing required key, where the section's line is used when known).
 * ret_config is only written on success. */
int config_parse_string(const char *text, const char *path, Config **ret_config, char **ret_error);

/* Read the file and parse it. Refuses files that hold an inline secret
 * (slack token, pool password in the URL) while group/world readable,
 * resolves [agent] control_group to a gid (an unknown group is an error
 * naming its line), and checks every secret file the config names
 * (token_file, webhook_url_file, password_file, credentials_file) by the
 * reader's own rule (secret_file_check()), naming the key's line. Run by
 * an unprivileged user, a file it may not open is judged by lstat(), and
 * one it may not even see is left to the start with a log_warning(); so is
 * a systemd credential outside the service. */
int config_load(const char *path, Config **ret_config, char **ret_error);

/* A Config is immutable once loaded and reference-counted: an object that
 * keeps one beyond a call (the checks, a manual check in flight) takes a
 * reference, so a reload that swaps the agent's config can never free
 * what a running check still reads. config_free() drops one reference
 * and frees on the last; both take NULL. */
Config *config_ref(Config *c);
Config *config_free(Config *c);
static inline void config_freep(Config **c) {
        config_free(*c);
}
/* A holder's reference moves to `c` (after a reload's swap). */
static inline void config_replace(Config **slot, Config *c) {
        Config *old = *slot;

        *slot = config_ref(c);
        config_free(old);
}
