/* The control socket: a Unix stream socket speaking the control protocol
 * (proto/control.h) to local clients. At most CONTROL_CLIENTS_MAX clients at
 * once, the last CONTROL_CLIENTS_RESERVED of them for privileged peers
 * only, so a local user holding connections open cannot lock the operator
 * out. Mutating commands need a privileged peer (SO_PEERCRED, and
 * SO_PEERGROUPS for the supplementary groups, as they were at connect());
 * everything else is open to every local user. `watch` turns the
 * connection into a stream of transition events. */
#pragma once

#include <json-c/json.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "control.h"
#include "macro.h"

#define CONTROL_CLIENTS_MAX 32
#define CONTROL_CLIENTS_RESERVED 4 /* of CONTROL_CLIENTS_MAX, for privileged peers */
#define CONTROL_CLIENT_OUTPUT_MAX (256 * 1024) /* a watcher this far behind is dropped */
#define CONTROL_CLIENT_IDLE_USEC (10 * USEC_PER_SEC) /* non-watch clients */

/* Who asked, as the kernel says (SO_PEERCRED): for an audit trail. */
typedef struct ControlPeer {
        bool known;
        uid_t uid;
        gid_t gid;
        pid_t pid;
} ControlPeer;

/* What the agent answers with. Each returns a new json_object reference,
 * or, for mutating calls, 0 / negative errno and a message for the reply. */
typedef struct ControlHandlers {
        json_object *(*status)(void *userdata);
        json_object *(*history)(void *userdata, unsigned limit);
        int (*drain)(void *userdata, const char *reason, char **ret_message);
        int (*resume)(void *userdata, char **ret_message);
        /* The pool's members and budget; NULL when no [pool] is configured.
         * Optional: without it, "pool" answers with the status' "pool". */
        json_object *(*pool)(void *userdata);
        /* Answered later: return 0 and call control_server_answer(ticket)
         * once (the client reads nothing else meanwhile), or < 0 with
         * *ret_message to answer now with an error. */
        int (*test_alert)(void *userdata, uint64_t ticket, const char *text, char **ret_message);
        /* The same for the EC2 DryRun self-test. */
        int (*test_reboot)(void *userdata, uint64_t ticket, const char *text, char **ret_message);
        /* The three checks, now; the report goes in the answer's "result". */
        int (*check)(void *userdata, uint64_t ticket, const char *text, char **ret_message);
        /* The incidents kept on disk, and one incident's summary. */
        json_object *(*incidents)(void *userdata, char **ret_message);
        json_object *(*incident)(void *userdata, const char *id, char **ret_message);
        /* Parse the config file again and swap it in if valid: 0 with
         * "reloaded FILE", or < 0 with the reason ("FILE:LINE: message"). */
        int (*reload)(void *userdata, char **ret_message);
        /* pool-budget and pool-budget-set (req says which and the numbers):
         * answered later, like test_alert; the peer is for the audit. */
        int (*pool_budget)(void *userdata, uint64_t ticket, const ControlRequest *req, const ControlPeer *peer,
                           char **ret_message);
        /* monkeyctl stats: the latency statistics (metrics_stats_json). */
        json_object *(*stats)(void *userdata);
} ControlHandlers;

typedef struct ControlServer ControlServer;

/* Binds `path` (an existing stale socket is replaced, a live one is
 * -EADDRINUSE), mode 0666: anyone may read status, only privileged peers
 * may change anything. Starts with no control group. */
int control_server_new(sd_event *e, const char *path, const ControlHandlers *h, void *userdata,
                       ControlServer **ret);
/* Closes every client and unlinks the socket. Takes NULL, returns NULL. */
ControlServer *control_server_free(ControlServer *s);
static inline void control_server_freep(ControlServer **s) {
        control_server_free(*s);
}
/* Members of `group` (named `name`, may be NULL) may run the mutating
 * commands too; have_group false: only root and the agent's euid. Applies
 * to requests from now on, on connections old and new. */
int control_server_set_group(ControlServer *s, bool have_group, gid_t group, const char *name);
/* The same from a loaded config ([agent] control_group, resolved by
 * config_load()): at start, and again on reload to grant or revoke. */
struct Config;
int control_server_apply_config(ControlServer *s, const struct Config *c);
/* Send {"version":1,"event":EVENT} to every watcher; event is borrowed. */
void control_server_broadcast(ControlServer *s, json_object *event);
unsigned control_server_n_clients(const ControlServer *s);
/* The deferred answer for `ticket`: a reply object {"ok":ok,"message":...}
 * plus `extra` (borrowed, may be NULL) under "result". A client that has
 * gone meanwhile is skipped. */
void control_server_answer(ControlServer *s, uint64_t ticket, bool ok, const char *message, json_object *extra);
