/* Our own flame graph renderer: a folded profile (or two, for a
 * differential) as one self-contained interactive SVG, in the spirit of
 * Brendan Gregg's flamegraph.pl but written here. The stacks merge into a
 * tree drawn root at the bottom, siblings in bytewise name order, widths
 * proportional to samples; embedded JS zooms on click, searches by regex
 * and shows a details line. The output is well-formed XML whatever the
 * frame names hold, and the same input always gives the same bytes. */
#pragma once

#include "folded.h"

#define FLAME_WIDTH_DEFAULT 1200u
#define FLAME_WIDTH_MIN 200u
#define FLAME_WIDTH_MAX 100000u
#define FLAME_MIN_WIDTH_PX_DEFAULT 0.1

typedef struct FlameOptions {
        const char *title;    /* NULL: "Flame Graph" / "Differential Flame Graph" */
        const char *subtitle; /* NULL: none */
        unsigned width;       /* pixels; 0: FLAME_WIDTH_DEFAULT */
        /* Frames narrower than this are left out (their samples still count
         * in the parent's width); 0: FLAME_MIN_WIDTH_PX_DEFAULT. */
        double min_width_px;
        /* Differential only: boxes take A's widths instead of B's, so what
         * vanished from B shows (as -100%) and what is new does not. */
        bool negate;
} FlameOptions;

/* The SVG of one profile (NULL options: the defaults). Colours by frame
 * kind: user warm (red to yellow, hue from the name), kernel pale amber,
 * JIT green, inlined aqua, unknown grey. An empty profile gives a valid
 * SVG saying "no samples". -EINVAL on NULL profile/out or an option out
 * of range (width outside FLAME_WIDTH_MIN..MAX, min_width_px negative or
 * not finite), -ENOMEM, -EIO on a write error. */
int flamegraph_render(const Folded *profile, const FlameOptions *o, FILE *out);

/* The differential SVG from A (before) to B (after): B's widths (A's with
 * negate), each box coloured by the change of ITS inclusive share of its
 * own profile (stackdiff_share): red grew, blue shrank, white unchanged,
 * saturation |delta| over the largest |delta| drawn. Titles give both
 * shares, the change in points and relative ("new", "-100%"). Errors as
 * flamegraph_render(). */
int flamegraph_render_diff(const Folded *a, const Folded *b, const FlameOptions *o, FILE *out);
