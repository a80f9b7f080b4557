/* The differential maths between two folded profiles A (before) and B
 * (after): every whole stack and every frame name with its share of ITS
 * OWN profile's samples in each, the change in percentage points and
 * relative to A, and a text summary of what changed most. Pure: no I/O
 * but the FILE the summary is written to. The flame graph renderer uses
 * the same share rule (stackdiff_share) so its titles agree with this. */
#pragma once

#include <math.h>

#include "folded.h"

typedef struct StackDiffShare {
        uint64_t count_a, count_b;
        double share_a, share_b; /* percent of that profile's total; 0 when the total is 0 */
        double delta;            /* share_b - share_a, percentage points */
        /* delta / share_a in percent: exactly -100 for what vanished from B,
         * +INFINITY for what is new in B (flagged is_new), 0 when absent
         * from both. */
        double relative;
        bool is_new;   /* count_a == 0 and count_b > 0 (an empty A makes everything new) */
        bool vanished; /* count_a > 0 and count_b == 0 */
} StackDiffShare;

/* Pure: the shares of `count_a` of `total_a` and `count_b` of `total_b`.
 * Each count is divided by its own total, so 10 of 100 and 100 of 1000
 * are the same share, exactly (delta 0). */
void stackdiff_share(uint64_t count_a, uint64_t total_a, uint64_t count_b, uint64_t total_b, StackDiffShare *ret);

/* "new", "-100%", "+45%", "-3.5%", "0%": the relative column as people read it. */
void stackdiff_format_relative(const StackDiffShare *s, char *buf, size_t size);

typedef struct StackDiffEntry {
        char *name; /* a frame, annotation ("_[k]"…) included, or a whole stack; NUL-terminated */
        size_t len;
        FrameKind kind; /* frames only (a stack: its leaf's kind) */
        /* A frame: inclusive, counted once per stack even when the stack
         * recurses through it. A stack: its own samples. */
        StackDiffShare incl;
        /* A frame: its samples as the leaf (self). A stack: equal to incl. */
        StackDiffShare self;
} StackDiffEntry;

typedef struct StackDiff StackDiff;

/* Compare a and b (either may be empty; neither is changed). Frames and
 * stacks are ordered by |delta| (inclusive), largest first, ties by name
 * bytewise. -EINVAL on NULL, -ENOMEM. ret only written on success. */
int stackdiff_compute(const Folded *a, const Folded *b, StackDiff **ret);
StackDiff *stackdiff_free(StackDiff *d); /* takes NULL, returns NULL */
static inline void stackdiff_freep(StackDiff **d) {
        stackdiff_free(*d);
}

uint64_t stackdiff_total_a(const StackDiff *d);
uint64_t stackdiff_total_b(const StackDiff *d);

/* Every frame name / stack seen in either profile, most changed first;
 * valid until stackdiff_free(). */
const StackDiffEntry *stackdiff_frames(const StackDiff *d, size_t *ret_n);
const StackDiffEntry *stackdiff_stacks(const StackDiff *d, size_t *ret_n);

/* One frame (annotation included) or whole stack by its exact text; NULL when in neither profile. */
const StackDiffEntry *stackdiff_find_frame(const StackDiff *d, const char *name);
const StackDiffEntry *stackdiff_find_stack(const StackDiff *d, const char *stack);

/* A text table: both totals, the `top` frames whose inclusive share
 * changed most (share A, share B, delta pts, relative, self delta), then
 * the `top` stacks that changed most. Names are escaped for a terminal
 * (control bytes and invalid UTF-8 as \xNN) and long stacks shortened in
 * the middle. Empty profiles are said so in words. -EIO on a write error. */
int stackdiff_summary(const StackDiff *d, size_t top, FILE *out);
