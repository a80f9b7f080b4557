/* The transition history on disk: state_dir/history.jsonl, one transition
 * object per line, oldest first, so `monkeyctl history` survives an agent
 * restart and a reboot. The ring itself lives in the Agent (agent.c); this
 * module owns the file: loading it at start, appending a line per
 * transition, and keeping it bounded by rewriting it with only the ring's
 * entries once it holds HISTORY_FILE_SLACK times as many lines.
 *
 * Lines are written with plain write(2), no fsync: history is for people,
 * a power cut that loses its last lines costs nothing the agent relies on
 * (what must survive a reboot is in state.json, written durably), and an
 * fsync on a loaded disk would stall the event loop for hundreds of ms. */
#pragma once

#include <json-c/json.h>

#include "macro.h"

#define HISTORY_FILE "history.jsonl"
#define HISTORY_FILE_SLACK 2          /* rewrite at this many times the ring's size */
#define HISTORY_FILE_READ_MAX (4u << 20) /* only the file's tail is read */
#define HISTORY_LINE_MAX 16384        /* a longer line is not one of ours */

/* Pure: the last `max` transition objects of `text` (JSON lines, oldest
 * first) into ret[0..*ret_n), oldest first, new references. Lines that are
 * not one JSON object of at most HISTORY_LINE_MAX bytes (a line torn by a
 * crash, garbage) are skipped and counted in *ret_skipped; a first line
 * without its start (the tail of a big file) is skipped when `partial`. */
int history_parse(const char *text, size_t len, bool partial, size_t max, json_object **ret, size_t *ret_n,
                  size_t *ret_skipped);

/* Pure: o as one line, '\n' included. Returns 0 or -ENOMEM/-E2BIG. */
int history_format_line(json_object *o, char **ret, size_t *ret_len);

typedef struct HistoryFile HistoryFile;

/* Opens dir/history.jsonl (created 0600 when missing), loads its last
 * `max` entries into ret (as history_parse) and rewrites it with just
 * those, so a torn last line is not glued to the next one. A file that
 * cannot be read is logged and started afresh: history is never a reason
 * not to start. */
int history_file_open(const char *dir, size_t max, json_object **ret, size_t *ret_n, HistoryFile **ret_file);
/* Appends o. Returns 1 when the file has grown to HISTORY_FILE_SLACK times
 * `max` lines and the caller should history_file_rewrite() it, 0, or a
 * negative errno (logged once per streak of failures; the entry stays in
 * memory). */
int history_file_append(HistoryFile *f, json_object *o);
/* Replaces the file with entries[0..n), oldest first: NAME.tmp, rename. */
int history_file_rewrite(HistoryFile *f, json_object *const *entries, size_t n);
HistoryFile *history_file_free(HistoryFile *f);
