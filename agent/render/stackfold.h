/* The perf-script stack folder: turns the text `perf script` prints for a
 * `perf record -g` capture into a folded profile (folded.h), one
 * "comm;root;...;leaf" stack per distinct call chain, as Brendan Gregg's
 * stackcollapse-perf.pl does. It owns the parsing of sample headers and
 * frame lines, the naming and kind of each frame, the idle filter, and
 * the bounds: a hostile or broken perf output costs at most a few hundred
 * KiB and is counted, never trusted. Input comes in chunks of any size, as
 * read() gives it from perf's pipe. */
#pragma once

#include "folded.h"
#include "macro.h"

/* Longest input line kept; a longer one is skipped (counted malformed)
 * without ever being buffered whole. */
#define STACKFOLD_LINE_MAX (64 * 1024)
/* Longest frame and comm names kept (bytes, cut at a UTF-8 boundary), so
 * a comm and any one frame always fit in FOLDED_STACK_MAX together. */
#define STACKFOLD_FRAME_NAME_MAX (8 * 1024)
#define STACKFOLD_COMM_MAX 256

typedef struct StackFoldOptions {
        bool include_idle; /* keep the idle task's samples (pid 0 idling); default: counted in stats, left out */
        bool include_pid;  /* root frame "comm-PID" instead of "comm" (the TID where perf prints only that) */
} StackFoldOptions;

typedef struct StackFoldStats {
        uint64_t samples;     /* samples seen (headers) */
        uint64_t folded;      /* samples that went into the table */
        uint64_t idle;        /* idle samples left out */
        uint64_t other_event; /* samples of another event than the first one seen, left out */
        uint64_t malformed;   /* lines that did not parse, skipped */
        uint64_t truncated;   /* folded samples cut at FOLDED_DEPTH_MAX / FOLDED_STACK_MAX or a name cut */
} StackFoldStats;

typedef struct StackFolder StackFolder;

/* o: NULL for the defaults (all false). -ENOMEM. */
int stackfold_new(const StackFoldOptions *o, StackFolder **ret);

/* Feed perf script output in chunks of any size: a line may span chunks.
 * Malformed input is counted, not an error. -ENOMEM (sticky: every later
 * call fails too), -ESTALE after stackfold_finish(), -EINVAL on NULL. */
int stackfold_feed(StackFolder *f, const char *buf, size_t len);

/* End of input: takes the last line even without its newline, flushes the
 * last sample, and moves the table out, sorted with folded_sort(). *ret
 * must be FOLDED_INIT or folded_done(); ret_stats may be NULL. Both are
 * only written on success. Once only: later calls return -ESTALE. */
int stackfold_finish(StackFolder *f, Folded *ret, StackFoldStats *ret_stats);

StackFolder *stackfold_free(StackFolder *f); /* takes NULL, returns NULL */
static inline void stackfold_freep(StackFolder **f) {
        stackfold_free(*f);
}
