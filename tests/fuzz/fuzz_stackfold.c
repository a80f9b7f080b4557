/* perf script text (stackfold_feed, stackfold_finish) and the folded text
 * it becomes (folded_write, folded_parse): perf prints whatever names a
 * process, a JIT or a module gives its symbols and comms, and the daemon
 * reads it from a pipe in pieces. The first byte picks the options and
 * where the input is cut in two chunks; the rest is the text. */
#include "fuzz.h"
#include "stackfold.h"

static void check_table(const Folded *t, const StackFoldStats *st) {
        uint64_t total = 0;

        FUZZ_CHECK(st->folded + st->idle + st->other_event <= st->samples);
        FUZZ_CHECK(st->truncated <= st->folded);
        for (size_t i = 0; i < t->n; i++) {
                const char *s = t->stacks[i].stack;
                size_t len = strlen(s), depth = 1;

                FUZZ_CHECK(len > 0 && len <= FOLDED_STACK_MAX);
                FUZZ_CHECK(!strchr(s, '\n'));
                for (const char *p = s; (p = strchr(p, ';')); p++)
                        depth++;
                FUZZ_CHECK(depth <= FOLDED_DEPTH_MAX);
                /* sorted bytewise, each stack once */
                FUZZ_CHECK(i == 0 || strcmp(t->stacks[i - 1].stack, s) < 0);
                FUZZ_CHECK(t->stacks[i].count > 0);
                total += t->stacks[i].count;
        }
        FUZZ_CHECK(total == t->total);
        FUZZ_CHECK(t->total == st->folded);
}

/* What is written parses back as the same table. */
static void check_round_trip(const Folded *t) {
        _cleanup_(folded_done) Folded back = FOLDED_INIT;
        _cleanup_(freep) char *buf = NULL, *error = NULL;
        size_t size = 0;
        FILE *m;
        int r;

        m = open_memstream(&buf, &size);
        if (!m)
                abort();
        FUZZ_CHECK(folded_write(t, m) == 0);
        FUZZ_CHECK(fclose(m) == 0);

        r = folded_parse(buf, size, &back, &error);
        if (r == -ENOMEM)
                return;
        if (r < 0)
                fprintf(stderr, "%s\n", strna(error));
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(back.n == t->n && back.total == t->total);
        for (size_t i = 0; i < t->n; i++) {
                FUZZ_CHECK(streq(back.stacks[i].stack, t->stacks[i].stack));
                FUZZ_CHECK(back.stacks[i].count == t->stacks[i].count);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(stackfold_freep) StackFolder *f = NULL;
        _cleanup_(folded_done) Folded t = FOLDED_INIT;
        StackFoldOptions o = {};
        StackFoldStats st;
        const char *text;
        size_t len, cut;
        int r;

        if (size == 0)
                return 0;
        o.include_idle = data[0] & 0x01;
        o.include_pid = data[0] & 0x02;
        text = (const char *) data + 1;
        len = size - 1;
        /* the cut: anywhere, in 64 steps over the input */
        cut = len * (size_t) (data[0] >> 2) / 63;

        if (stackfold_new(&o, &f) < 0)
                return 0;
        /* Not NUL-terminated, as read() gives it; each chunk where it lies. */
        r = stackfold_feed(f, text, cut);
        if (r == -ENOMEM)
                return 0;
        FUZZ_CHECK(r == 0);
        r = stackfold_feed(f, text + cut, len - cut);
        if (r == -ENOMEM)
                return 0;
        FUZZ_CHECK(r == 0);
        r = stackfold_finish(f, &t, &st);
        if (r == -ENOMEM)
                return 0;
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(stackfold_feed(f, "x\n", 2) == -ESTALE);

        check_table(&t, &st);
        check_round_trip(&t);
        return 0;
}
