/* A folded CPU profile: one line per distinct call stack, root first,
 * "frame;frame;frame COUNT", as Brendan Gregg's stackcollapse tools write
 * them and flamegraph.pl reads them, so our files work with theirs. Each
 * frame keeps its kind as flamegraph.pl's annotations do: "_[k]" kernel,
 * "_[j]" JIT, "_[i]" inlined; a frame without one is user code, or
 * "[unknown]"-style when its name is a bracketed placeholder. This module
 * owns the table (merging equal stacks), the text format both ways, and
 * the kind of a frame; the folder (stackfold.c), the renderer
 * (flamegraph.c) and the differential maths (stackdiff.c) share it. */
#pragma once

#include "macro.h"

/* Longest stack line kept (bytes, frames joined by ';'); a longer one is
 * cut at a frame boundary from the leaf end, keeping the root. */
#define FOLDED_STACK_MAX (64 * 1024)
/* Deepest stack kept, in frames; deeper ones keep their root-most frames. */
#define FOLDED_DEPTH_MAX 1024

typedef enum FrameKind {
        FRAME_USER,    /* no annotation: native user code */
        FRAME_KERNEL,  /* "_[k]" */
        FRAME_JIT,     /* "_[j]": a perf-PID.map or jitdump symbol */
        FRAME_INLINED, /* "_[i]" */
        FRAME_UNKNOWN, /* "[unknown]", "[libfoo.so]" (no symbol, only the object), "" */
        _FRAME_KIND_MAX,
} FrameKind;

const char *frame_kind_to_string(FrameKind k); /* "user", "kernel", "jit", "inlined", "unknown" */

typedef struct FoldedStack {
        char *stack;    /* "root;...;leaf", annotations included, NUL-terminated */
        uint64_t count; /* samples */
} FoldedStack;

typedef struct Folded {
        FoldedStack *stacks; /* insertion order until folded_sort() */
        size_t n, allocated;
        uint64_t total;      /* sum of counts */
        /* private: open-addressing index of stacks by text */
        size_t *index;
        size_t index_size;
} Folded;

#define FOLDED_INIT ((Folded) {})

/* Add `count` samples to `stack` (len bytes, need not be NUL-terminated),
 * merging with an equal stack already there. -EINVAL on an empty stack,
 * a NUL or newline inside it, or len > FOLDED_STACK_MAX; -EOVERFLOW when
 * the count or the total would wrap; -ENOMEM. */
int folded_add(Folded *f, const char *stack, size_t len, uint64_t count);

/* Sort stacks by their text (bytewise), as flamegraph.pl expects its
 * input: siblings end up adjacent and merge into one box. */
void folded_sort(Folded *f);

/* Pure: parse folded text ("stack count" per line, the count after the
 * LAST space; blank lines ignored; a final line without '\n' accepted).
 * Equal stacks on several lines are summed. On a malformed line:
 * -EBADMSG and *ret_error = "line N: what" (malloc'ed; ret_error may be
 * NULL). ret is only written on success (it must be FOLDED_INIT or done). */
int folded_parse(const char *buf, size_t len, Folded *ret, char **ret_error);

/* Write "stack count\n" for every stack in the table's current order. */
int folded_write(const Folded *f, FILE *out);

/* The n stacks with the most samples, most first, ties by stack text;
 * pointers into f (valid until f changes). *ret_n <= n. */
int folded_top(const Folded *f, size_t n, const FoldedStack **ret, size_t *ret_n);

/* The kind of one frame (len bytes of a stack between ';'), and the length
 * of its name without the annotation. */
FrameKind frame_kind(const char *frame, size_t len, size_t *ret_name_len);

void folded_done(Folded *f); /* frees everything, leaves FOLDED_INIT */
