/* Incident evidence on disk, kept past the reboot: state_dir/incidents/ID/
 * holds summary.json (written at breach, before any remediation) and, when
 * a profile was taken, stacks.folded and flame.svg. This module owns that
 * layout, the pure parsers of /proc/loadavg and /proc/pressure/cpu that
 * the summary quotes, listing, and retention (a count and a byte budget,
 * oldest first). It knows nothing of the Agent. */
#pragma once

#include <json-c/json.h>

#include "macro.h"
#include "writer.h"

#define INCIDENT_SUMMARY "summary.json"
#define INCIDENT_FOLDED "stacks.folded"
#define INCIDENT_FLAME "flame.svg"
#define INCIDENT_ID_MAX 128

typedef struct LoadAvg {
        double avg1, avg5, avg15;
        uint64_t running, total; /* runnable and all scheduling entities */
} LoadAvg;

/* Pure: "0.52 0.58 0.59 3/812 12345\n". -EBADMSG otherwise. */
int loadavg_parse(const char *buf, size_t len, LoadAvg *ret);

typedef struct PsiLine {
        double avg10, avg60, avg300; /* percent of time stalled */
        uint64_t total_usec;
} PsiLine;

typedef struct Psi {
        PsiLine some, full;
        bool has_full; /* "full" for CPU appeared in 5.13 */
} Psi;

/* Pure: /proc/pressure/cpu, "some avg10=1.23 avg60=... avg300=... total=N"
 * and optionally a "full" line. -EBADMSG otherwise. */
int psi_parse(const char *buf, size_t len, Psi *ret);

/* An id names a directory: [A-Za-z0-9._-], not starting with '.', at most
 * INCIDENT_ID_MAX. Everything that builds a path from a request checks it. */
bool incident_id_valid(const char *id);

/* state_dir/incidents/ID, created (with the parents it needs, 0700) when
 * missing; *ret is the path. */
int incident_dir_make(const char *state_dir, const char *id, char **ret);
/* state_dir/incidents/ID, or -EINVAL for an invalid id. No I/O. */
int incident_dir_path(const char *state_dir, const char *id, char **ret);

/* Write one file of an incident atomically (temp, fsync, rename). */
int incident_write(const char *state_dir, const char *id, const char *name, const char *data, size_t len);
/* The same, its directory made now and the write queued on `w` (off the
 * loop, in order with every other durable write); done (may be NULL)
 * learns how it went. */
int incident_write_queued(Writer *w, const char *state_dir, const char *id, const char *name, const char *data,
                          size_t len, const WriterDone *done);
/* Read one file of an incident, at most max bytes (-EFBIG beyond). */
int incident_read(const char *state_dir, const char *id, const char *name, size_t max, char **ret, size_t *ret_len);

typedef struct IncidentEntry {
        char id[INCIDENT_ID_MAX + 1];
        uint64_t bytes; /* of its regular files */
} IncidentEntry;

/* The incidents on disk, oldest first (ids start with their UTC start
 * time, so their order is the order in time). Entries that are not
 * directories or whose names are not ids are left out. No directory yet:
 * 0 entries. */
int incidents_list(const char *state_dir, IncidentEntry **ret, size_t *ret_n);

/* Pure: mark for removal, oldest first, until at most `keep` remain and
 * their bytes fit max_bytes. The entry named `current` (may be NULL) is
 * never marked, nor the newest one: the evidence just captured outlives
 * any budget. Returns how many are marked. */
size_t incidents_retention(const IncidentEntry *e, size_t n, unsigned keep, uint64_t max_bytes, const char *current,
                           bool *ret_remove);

/* incidents_list + incidents_retention + remove the marked directories.
 * *ret_removed (may be NULL) counts them. */
int incidents_prune(const char *state_dir, unsigned keep, uint64_t max_bytes, const char *current, size_t *ret_removed);
