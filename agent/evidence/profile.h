/* The optional CPU profile of an incident. A worker process, monkeyd
 * itself started again with --profile-worker, runs `perf record -a -g` for
 * the configured time, `perf script`, folds the stacks (stackfold.c) and
 * renders the flame graph (flamegraph.c) into the incident's directory,
 * then writes result.json. Parsing perf's output and drawing the graph
 * take seconds of CPU on a big host and must never block the agent's
 * loop nor crash the agent: they happen in that process. The agent side
 * (Profile) only starts it, bounds it with a deadline that kills its whole
 * process group, and reads result.json when it exits. */
#pragma once

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "macro.h"

#define PROFILE_RESULT "result.json"
#define PROFILE_LOG "profile.log"
#define PROFILE_TOP_STACKS 5
/* perf script may take this long to fold a capture; what it printed by
 * then is kept, flagged partial. */
#define PROFILE_FOLD_TIMEOUT (60 * USEC_PER_SEC)
/* perf record may take this long past the capture to write its file. */
#define PROFILE_RECORD_GRACE (20 * USEC_PER_SEC)

typedef struct ProfileRequest {
        const char *self_exe;  /* monkeyd's own binary */
        const char *dir;       /* the incident's directory */
        const char *title;     /* "web-1: incident 2026...": shown in the graph */
        const char *perf;      /* the perf binary */
        usec_t duration;
        unsigned frequency;
} ProfileRequest;

typedef struct Profile Profile;

/* result: result.json as the worker wrote it ("state": "done", "skipped"
 * or "failed", and its figures), or NULL when the worker died or ran out
 * of time; error then says what happened. Called once. */
typedef void (*profile_done_t)(Profile *p, json_object *result, const char *error, void *userdata);

/* Start the worker now. The deadline is duration + record grace + fold
 * time + 30 s. */
int profile_start(sd_event *e, const ProfileRequest *req, profile_done_t done, void *userdata, Profile **ret);
/* Kills the worker's process group if it still runs; takes NULL. */
Profile *profile_free(Profile *p);
static inline void profile_freep(Profile **p) {
        profile_free(*p);
}
bool profile_running(const Profile *p);
/* CLOCK_MONOTONIC by which the worker is killed. */
usec_t profile_deadline(const Profile *p);

/* The worker: monkeyd --profile-worker DIR SECONDS FREQUENCY PERF TITLE.
 * Returns the process exit status: 0 once result.json says what happened
 * (a skipped or failed profile included), 1 when even that could not be
 * written, 2 on bad arguments. */
int profile_worker_main(int argc, char **argv);

/* Pure: the reason to give for a perf failure, from what perf printed on
 * stderr and how it exited. Sets *ret_permission when it was refused for
 * want of privileges (the profile is then "skipped", not "failed"). */
const char *profile_perf_failure(const char *log, size_t len, bool *ret_permission, char *buf, size_t size);
