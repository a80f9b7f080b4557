/* Folded profiles as `monkeyctl incident diff/flame` reads them from any
 * file it is given: folded_parse, then the differential maths and both
 * flame graphs on what parsed. The input's first half is profile A, the
 * whole of it B. Every SVG must be well-formed XML (expat), whatever the
 * frame names hold, and every share a number in [0, 100]. */
#include <expat.h>
#include <math.h>

#include "flamegraph.h"
#include "folded.h"
#include "fuzz.h"
#include "stackdiff.h"

static void check_xml(const char *svg, size_t len) {
        XML_Parser p = XML_ParserCreate("UTF-8");

        FUZZ_CHECK(p);
        FUZZ_CHECK(XML_Parse(p, svg, (int) len, 1) == XML_STATUS_OK);
        XML_ParserFree(p);
}

typedef int (*render_t)(const Folded *a, const Folded *b, const FlameOptions *o, FILE *out);

static int one(const Folded *a, const Folded *b, const FlameOptions *o, FILE *out) {
        (void) b;
        return flamegraph_render(a, o, out);
}

static void render(render_t fn, const Folded *a, const Folded *b, bool negate) {
        FlameOptions o = { .title = "fuzz <&>", .negate = negate, .width = 400 };
        char *svg = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&svg, &len);
        int r;

        FUZZ_CHECK(f);
        r = fn(a, b, &o, f);
        FUZZ_CHECK(fclose(f) == 0);
        FUZZ_CHECK(r == 0 || r == -ENOMEM);
        if (r == 0)
                check_xml(svg, len);
        free(svg);
}

static void check_share(const StackDiffShare *s) {
        FUZZ_CHECK(s->share_a >= 0 && s->share_a <= 100.0 + 1e-9);
        FUZZ_CHECK(s->share_b >= 0 && s->share_b <= 100.0 + 1e-9);
        FUZZ_CHECK(!s->vanished || s->relative == -100.0);
        FUZZ_CHECK(!s->is_new || isinf(s->relative));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(folded_done) Folded a = FOLDED_INIT, b = FOLDED_INIT;
        _cleanup_(stackdiff_freep) StackDiff *d = NULL;
        _cleanup_(freep) char *error = NULL, *sink = NULL;
        const StackDiffEntry *e;
        size_t n, sink_len = 0, half = size / 2;
        FILE *f;
        int r;

        /* the first half must end at a line for A to be a profile of its own */
        while (half > 0 && data[half - 1] != '\n')
                half--;
        r = folded_parse((const char *) data, half, &a, &error);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -ENOMEM);
                FUZZ_CHECK(r != -EBADMSG || (error && !strchr(error, '\n')));
                return 0;
        }
        free(error);
        error = NULL;
        r = folded_parse((const char *) data, size, &b, &error);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -ENOMEM);
                return 0;
        }
        r = stackdiff_compute(&a, &b, &d);
        FUZZ_CHECK(r == 0 || r == -ENOMEM);
        if (r < 0)
                return 0;
        e = stackdiff_frames(d, &n);
        for (size_t i = 0; i < n; i++) {
                check_share(&e[i].incl);
                check_share(&e[i].self);
        }
        e = stackdiff_stacks(d, &n);
        for (size_t i = 0; i < n; i++)
                check_share(&e[i].incl);
        f = open_memstream(&sink, &sink_len);
        FUZZ_CHECK(f);
        r = stackdiff_summary(d, 10, f);
        FUZZ_CHECK(fclose(f) == 0);
        FUZZ_CHECK(r == 0 || r == -ENOMEM);
        render(one, &b, NULL, false);
        render(flamegraph_render_diff, &a, &b, false);
        render(flamegraph_render_diff, &a, &b, true);
        return 0;
}
