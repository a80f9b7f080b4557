/* flamegraph.c: the SVG parsed back with expat (well-formed whatever the
 * names hold), widths and positions from the samples, colours per kind,
 * pruning, the differential colours and widths, determinism. With
 * MONKEY_FLAME_OUT set to a directory, the fixture graphs are left there
 * for tests/unit/data/flame/check-browser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <expat.h>
#include <math.h>

#include "flamegraph.h"

#define DATA_DIR SOURCE_ROOT "/tests/unit/data/flame/"
#define WIDTH 1200
#define XPAD 10
#define FRAME_H 16

typedef struct Frame {
        char *title, *label;
        double x, y, w;
        unsigned r, g, b;
        size_t e;
} Frame;

typedef struct Svg {
        Frame *f;
        size_t n;
        int in;     /* 0, or collecting a frame's 1 title / 2 text */
        int depth;  /* element depth inside #fg-frames, 0 outside */
        char *text; /* all character data of the document */
        size_t text_len;
        char *raw;
} Svg;

static void svg_done(Svg *s) {
        for (size_t i = 0; i < s->n; i++) {
                free(s->f[i].title);
                free(s->f[i].label);
        }
        free(s->f);
        free(s->text);
        free(s->raw);
        *s = (Svg) {};
}

static void append(char **p, const char *s, size_t len) {
        size_t old = *p ? strlen(*p) : 0;

        *p = realloc(*p, old + len + 1);
        assert_non_null(*p);
        memcpy(*p + old, s, len);
        (*p)[old + len] = '\0';
}

static const char *attr(const XML_Char **a, const char *name) {
        for (; a[0]; a += 2)
                if (streq(a[0], name))
                        return a[1];
        return NULL;
}

static void XMLCALL on_start(void *data, const XML_Char *el, const XML_Char **a) {
        Svg *s = data;
        const char *v;

        if (s->depth > 0)
                s->depth++;
        else if (streq(el, "g") && streq_ptr(attr(a, "id"), "fg-frames")) {
                s->depth = 1;
                return;
        }
        if (s->depth == 2 && streq(el, "g")) {
                s->f = realloc(s->f, (s->n + 1) * sizeof(Frame));
                assert_non_null(s->f);
                s->f[s->n] = (Frame) {};
                v = attr(a, "data-e");
                assert_non_null(v);
                s->f[s->n].e = strtoul(v, NULL, 10);
                s->f[s->n].title = strdup("");
                s->f[s->n].label = strdup("");
                s->n++;
        } else if (s->depth == 3 && streq(el, "title"))
                s->in = 1;
        else if (s->depth == 3 && streq(el, "text"))
                s->in = 2;
        else if (s->depth == 3 && streq(el, "rect")) {
                Frame *f = &s->f[s->n - 1];

                f->x = strtod(attr(a, "x"), NULL);
                f->y = strtod(attr(a, "y"), NULL);
                f->w = strtod(attr(a, "width"), NULL);
                assert_int_equal(sscanf(attr(a, "fill"), "rgb(%u,%u,%u)", &f->r, &f->g, &f->b), 3);
        }
}

static void XMLCALL on_end(void *data, const XML_Char *el) {
        Svg *s = data;

        (void) el;
        if (s->depth > 0)
                s->depth--;
        s->in = 0;
}

static void XMLCALL on_chars(void *data, const XML_Char *t, int len) {
        Svg *s = data;

        append(&s->text, t, (size_t) len);
        if (s->in == 1)
                append(&s->f[s->n - 1].title, t, (size_t) len);
        else if (s->in == 2)
                append(&s->f[s->n - 1].label, t, (size_t) len);
}

/* Parses an SVG; fails the test when expat does not accept it. */
static void svg_parse(char *raw, size_t len, Svg *ret) {
        XML_Parser p = XML_ParserCreate(NULL);
        Svg s = { .raw = raw };

        assert_non_null(p);
        XML_SetUserData(p, &s);
        XML_SetElementHandler(p, on_start, on_end);
        XML_SetCharacterDataHandler(p, on_chars);
        if (XML_Parse(p, raw, (int) len, 1) != XML_STATUS_OK) {
                print_error("not well-formed: %s at line %lu\n", XML_ErrorString(XML_GetErrorCode(p)),
                            (unsigned long) XML_GetCurrentLineNumber(p));
                fail();
        }
        XML_ParserFree(p);
        if (!s.text)
                s.text = strdup("");
        *ret = s;
}

static int render(const Folded *f, const FlameOptions *o, Svg *ret) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        int r;

        assert_non_null(m);
        r = flamegraph_render(f, o, m);
        fclose(m);
        if (r < 0) {
                free(buf);
                return r;
        }
        svg_parse(buf, len, ret);
        return 0;
}

static int render_diff(const Folded *a, const Folded *b, const FlameOptions *o, Svg *ret) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        int r;

        assert_non_null(m);
        r = flamegraph_render_diff(a, b, o, m);
        fclose(m);
        if (r < 0) {
                free(buf);
                return r;
        }
        svg_parse(buf, len, ret);
        return 0;
}

static void add(Folded *f, const char *stack, uint64_t count) {
        assert_int_equal(folded_add(f, stack, strlen(stack), count), 0);
}

/* The frame whose title starts with "name (". */
static const Frame *find(const Svg *s, const char *name) {
        size_t len = strlen(name);

        for (size_t i = 0; i < s->n; i++)
                if (strncmp(s->f[i].title, name, len) == 0 && strncmp(s->f[i].title + len, " (", 2) == 0)
                        return &s->f[i];
        return NULL;
}

static const Frame *get(const Svg *s, const char *name) {
        const Frame *f = find(s, name);

        if (!f) {
                print_error("no frame '%s'\n", name);
                fail();
        }
        return f;
}

static void assert_width(const Frame *f, uint64_t count, uint64_t total) {
        double want = (double) count * (WIDTH - 2 * XPAD) / (double) total;

        if (fabs(f->w - want) > 0.006) {
                print_error("%s: width %.3f, want %.3f\n", f->title, f->w, want);
                fail();
        }
}

/* Every frame inside its parent (the nearest earlier frame whose subtree
 * holds it, one row further down), and as deep as its row says. */
static void assert_nested(const Svg *s) {
        assert_true(s->n > 0);
        assert_int_equal(s->f[0].e, s->n);
        for (size_t k = 1; k < s->n; k++) {
                const Frame *c = &s->f[k], *p = NULL;

                assert_true(c->e > k && c->e <= s->n);
                for (size_t i = k; i-- > 0;)
                        if (s->f[i].e > k) {
                                p = &s->f[i];
                                break;
                        }
                assert_non_null(p);
                assert_true(fabs(c->y + FRAME_H - p->y) < 1e-9);
                if (c->x < p->x - 0.011 || c->x + c->w > p->x + p->w + 0.021) {
                        print_error("%s [%.2f, %.2f] outside %s [%.2f, %.2f]\n", c->title, c->x, c->x + c->w, p->title,
                                    p->x, p->x + p->w);
                        fail();
                }
        }
}

static char *read_fixture(const char *name, size_t *ret_len) {
        FILE *in = fopen(name, "re");
        char *buf = malloc(1 << 20);
        size_t n;

        assert_non_null(in);
        assert_non_null(buf);
        n = fread(buf, 1, 1 << 20, in);
        assert_true(n < 1 << 20);
        fclose(in);
        *ret_len = n;
        return buf;
}

static void load(const char *name, Folded *ret) {
        size_t len;
        char *buf = read_fixture(name, &len);

        assert_int_equal(folded_parse(buf, len, ret, NULL), 0);
        free(buf);
}

static void test_widths_and_titles(void **state) {
        Folded f = FOLDED_INIT;
        Svg s;

        (void) state;
        add(&f, "main;b;d", 100);
        add(&f, "other", 400);
        add(&f, "main;a", 300);
        add(&f, "main;b;c", 200);
        assert_int_equal(render(&f, NULL, &s), 0);

        assert_int_equal(s.n, 7);
        assert_string_equal(s.f[0].title, "all (1000 samples, 100.00%)");
        assert_true(fabs(s.f[0].x - XPAD) < 1e-9);
        assert_width(&s.f[0], 1000, 1000);
        assert_width(get(&s, "main"), 600, 1000);
        assert_width(get(&s, "a"), 300, 1000);
        assert_width(get(&s, "b"), 300, 1000);
        assert_width(get(&s, "c"), 200, 1000);
        assert_width(get(&s, "d"), 100, 1000);
        assert_width(get(&s, "other"), 400, 1000);
        assert_string_equal(get(&s, "main")->title, "main (600 samples, 60.00%)");
        assert_string_equal(get(&s, "d")->title, "d (100 samples, 10.00%)");
        assert_nested(&s);

        /* Root at the bottom, one row per level; siblings in name order, abutting. */
        assert_true(get(&s, "main")->y == s.f[0].y - FRAME_H);
        assert_true(get(&s, "c")->y == s.f[0].y - 3 * FRAME_H);
        assert_true(get(&s, "a")->x < get(&s, "b")->x);
        assert_true(fabs(get(&s, "a")->x + get(&s, "a")->w - get(&s, "b")->x) < 0.011);
        assert_true(get(&s, "c")->x < get(&s, "d")->x);
        assert_true(get(&s, "main")->x < get(&s, "other")->x);
        assert_true(fabs(get(&s, "other")->x + get(&s, "other")->w - (WIDTH - XPAD)) < 0.011);

        /* Labels: whole when they fit. */
        assert_string_equal(get(&s, "main")->label, "main");
        svg_done(&s);
        folded_done(&f);
}

static void test_merge_and_order(void **state) {
        Folded f = FOLDED_INIT;
        Svg s;

        (void) state;
        /* Bytewise sorting of whole lines would put "b-x" between "b" and
         * "b;c" and split "b" in two; frame by frame it is one box. */
        add(&f, "r;b;c", 10);
        add(&f, "r;b-x", 5);
        add(&f, "r;b", 7);
        add(&f, "r;B", 1);
        assert_int_equal(render(&f, NULL, &s), 0);
        assert_int_equal(s.n, 6); /* all r B b b-x c */
        assert_string_equal(s.f[2].title, "B (1 sample, 4.35%)");
        assert_string_equal(s.f[3].title, "b (17 samples, 73.91%)");
        assert_string_equal(s.f[4].title, "c (10 samples, 43.48%)");
        assert_string_equal(s.f[5].title, "b-x (5 samples, 21.74%)");
        assert_true(s.f[2].x < s.f[3].x && s.f[3].x < s.f[5].x);
        assert_nested(&s);
        svg_done(&s);
        folded_done(&f);
}

static void test_fixture_nested(void **state) {
        Folded f = FOLDED_INIT;
        Svg s;

        (void) state;
        load(DATA_DIR "sample-a.folded", &f);
        assert_int_equal(render(&f, NULL, &s), 0);
        assert_nested(&s);
        /* A recursive frame is a box per level. */
        assert_width(get(&s, "php_json_encode_zval"), 600, f.total);
        assert_width(get(&s, "swapper"), 900, f.total);
        assert_width(get(&s, "intel_idle"), 900, f.total); /* "_[k]" is the colour, not the name */
        assert_width(get(&s, "php-fpm"), 1760, f.total);
        assert_width(get(&s, "JIT$App\\Http\\Kernel::handle"), 400, f.total);
        svg_done(&s);
        folded_done(&f);
}

static void test_escaping(void **state) {
        Folded f = FOLDED_INIT;
        FlameOptions o = { .title = "<x & \"y\">", .subtitle = "it's" };
        const Frame *fr;
        Svg s;

        (void) state;
        add(&f, "main;a<b>&\"c'", 10);
        add(&f, "main;bad\xff\xfe tail", 10);
        add(&f, "main;ctl\x01\x1f""end", 10);
        add(&f, "main;nonchar\xef\xbf\xbf!", 10);
        add(&f, "main;cut\xe2\x82", 10);
        add(&f, "main;surrogate\xed\xa0\x80", 10);
        add(&f, "main;ok \xc3\xa9\xe2\x82\xac\xf0\x9f\x94\xa5", 10);
        assert_int_equal(render(&f, &o, &s), 0); /* expat accepted it */

        assert_non_null(strstr(s.text, "<x & \"y\">"));
        assert_non_null(strstr(s.text, "it's"));
        assert_non_null(strstr(s.raw, "a&lt;b&gt;&amp;&quot;c&apos;"));
        assert_string_equal(get(&s, "a<b>&\"c'")->title, "a<b>&\"c' (10 samples, 14.29%)");
        assert_string_equal(get(&s, "a<b>&\"c'")->label, "a<b>&\"c'");
        get(&s, "bad\xef\xbf\xbd\xef\xbf\xbd tail");
        get(&s, "ctl\xef\xbf\xbd\xef\xbf\xbd""end");
        get(&s, "nonchar\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!");
        get(&s, "cut\xef\xbf\xbd\xef\xbf\xbd");
        get(&s, "surrogate\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
        fr = get(&s, "ok \xc3\xa9\xe2\x82\xac\xf0\x9f\x94\xa5"); /* valid UTF-8 stays */
        assert_non_null(fr);
        assert_null(strstr(s.raw, "\xff"));
        assert_nested(&s);
        svg_done(&s);
        folded_done(&f);
}

static void test_labels_cut(void **state) {
        Folded f = FOLDED_INIT;
        Svg s;

        (void) state;
        /* 1180 px for 1000 samples: 30 samples are 35.4 px, 4 chars at 7.08;
         * 10 samples are 11.8 px, not even 3 chars. */
        add(&f, "main;abcdefghij", 30);
        add(&f, "main;klmnopqrst", 10);
        add(&f, "main;\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 30);
        add(&f, "other", 930);
        assert_int_equal(render(&f, NULL, &s), 0);
        assert_string_equal(get(&s, "abcdefghij")->label, "ab..");
        assert_string_equal(get(&s, "klmnopqrst")->label, "");
        /* Cut by characters, never inside one. */
        assert_string_equal(get(&s, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9")->label, "\xc3\xa9\xc3\xa9..");
        svg_done(&s);
        folded_done(&f);
}

typedef enum Band {
        WARM,
        AMBER,
        GREEN,
        AQUA,
        GREY,
} Band;

static void assert_band(const Frame *f, Band band) {
        bool ok = false;

        switch (band) {
        case WARM: /* red..yellow, strongly saturated */
                ok = f->r >= 205 && f->g <= 230 && f->b <= 55;
                break;
        case AMBER:
                ok = f->r >= 220 && f->g >= 155 && f->g <= 195 && f->b >= 80 && f->b <= 120;
                break;
        case GREEN:
                ok = f->g >= 190 && f->r <= 90 && f->b <= 90;
                break;
        case AQUA:
                ok = f->g >= 190 && f->b >= 190 && f->r <= 90;
                break;
        case GREY:
                ok = f->r == f->g && f->g == f->b && f->r >= 170 && f->r <= 210;
                break;
        }
        if (!ok) {
                print_error("%s: rgb(%u,%u,%u) not in band %d\n", f->title, f->r, f->g, f->b, band);
                fail();
        }
}

static void test_colours_by_kind(void **state) {
        Folded f = FOLDED_INIT, g = FOLDED_INIT;
        const char *users[] = { "main", "malloc", "zend_execute", "deflate", "x", "memcpy" };
        Svg s, t;

        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(users); i++) {
                char stack[64];

                snprintf(stack, sizeof(stack), "root;%s", users[i]);
                add(&f, stack, 10);
        }
        add(&f, "root;sys_read_[k]", 10);
        add(&f, "root;tcp_sendmsg_[k]", 10);
        add(&f, "root;Interp::run_[j]", 10);
        add(&f, "root;inl_helper_[i]", 10);
        add(&f, "root;[unknown]", 10);
        add(&f, "root;[libc.so.6]", 10);
        assert_int_equal(render(&f, NULL, &s), 0);

        for (size_t i = 0; i < ELEMENTSOF(users); i++)
                assert_band(get(&s, users[i]), WARM);
        assert_band(get(&s, "sys_read"), AMBER);
        assert_band(get(&s, "tcp_sendmsg"), AMBER);
        assert_band(get(&s, "Interp::run"), GREEN);
        assert_band(get(&s, "inl_helper"), AQUA);
        assert_band(get(&s, "[unknown]"), GREY);
        assert_band(get(&s, "[libc.so.6]"), GREY);
        /* The name picks the shade: not all one colour. */
        assert_true(get(&s, "main")->g != get(&s, "malloc")->g || get(&s, "main")->r != get(&s, "malloc")->r);
        /* The legend names every kind. */
        assert_non_null(strstr(s.text, "user"));
        assert_non_null(strstr(s.text, "kernel"));
        assert_non_null(strstr(s.text, "JIT"));
        assert_non_null(strstr(s.text, "inlined"));
        assert_non_null(strstr(s.text, "unknown"));

        /* Stable: the same name keeps its colour elsewhere in another graph. */
        add(&g, "other;deeper;main", 5);
        add(&g, "zzz", 500);
        assert_int_equal(render(&g, NULL, &t), 0);
        assert_int_equal(get(&t, "main")->r, get(&s, "main")->r);
        assert_int_equal(get(&t, "main")->g, get(&s, "main")->g);
        assert_int_equal(get(&t, "main")->b, get(&s, "main")->b);
        svg_done(&s);
        svg_done(&t);
        folded_done(&f);
        folded_done(&g);
}

static void test_min_width(void **state) {
        Folded f = FOLDED_INIT;
        FlameOptions o = { .min_width_px = 0.001 };
        Svg s;

        (void) state;
        /* 1 of 100000 samples is 0.0118 px: under the default 0.1. */
        add(&f, "main;big", 99999);
        add(&f, "main;tiny;deeper", 1);
        assert_int_equal(render(&f, NULL, &s), 0);
        assert_null(find(&s, "tiny"));
        assert_null(find(&s, "deeper"));
        assert_int_equal(s.n, 3);
        assert_width(get(&s, "main"), 100000, 100000); /* its samples still count */
        assert_string_equal(get(&s, "main")->title, "main (100000 samples, 100.00%)");
        assert_nested(&s);
        svg_done(&s);

        assert_int_equal(render(&f, &o, &s), 0);
        assert_non_null(find(&s, "tiny"));
        assert_non_null(find(&s, "deeper"));
        assert_nested(&s);
        svg_done(&s);

        /* A wider threshold prunes more; widths do not change. */
        o.min_width_px = 1000;
        assert_int_equal(render(&f, &o, &s), 0);
        assert_int_equal(s.n, 3);
        o.min_width_px = 1200;
        svg_done(&s);
        assert_int_equal(render(&f, &o, &s), 0);
        assert_int_equal(s.n, 1); /* "all" stays */
        svg_done(&s);
        folded_done(&f);
}

static void test_empty(void **state) {
        Folded e = FOLDED_INIT, f = FOLDED_INIT;
        Svg s;

        (void) state;
        assert_int_equal(render(&e, NULL, &s), 0);
        assert_int_equal(s.n, 0);
        assert_non_null(strstr(s.text, "no samples"));
        svg_done(&s);

        add(&f, "main;x", 3);
        assert_int_equal(render_diff(&e, &e, NULL, &s), 0);
        assert_non_null(strstr(s.text, "no samples"));
        svg_done(&s);
        assert_int_equal(render_diff(&f, &e, NULL, &s), 0); /* widths from an empty B */
        assert_int_equal(s.n, 0);
        assert_non_null(strstr(s.text, "no samples in B"));
        svg_done(&s);

        /* An empty A: everything is new, drawn at B's widths, all red. */
        assert_int_equal(render_diff(&e, &f, NULL, &s), 0);
        assert_int_equal(s.n, 3);
        assert_non_null(strstr(get(&s, "x")->title, "new"));
        assert_int_equal(get(&s, "x")->r, 255);
        assert_true(get(&s, "x")->g < 255);
        svg_done(&s);
        folded_done(&f);
}

static void test_bad_input(void **state) {
        Folded f = FOLDED_INIT;
        FILE *full;

        (void) state;
        add(&f, "main", 1);
        assert_int_equal(flamegraph_render(NULL, NULL, stdout), -EINVAL);
        assert_int_equal(flamegraph_render(&f, NULL, NULL), -EINVAL);
        assert_int_equal(flamegraph_render(&f, &(FlameOptions) { .width = 50 }, stdout), -EINVAL);
        assert_int_equal(flamegraph_render(&f, &(FlameOptions) { .width = 1000000 }, stdout), -EINVAL);
        assert_int_equal(flamegraph_render(&f, &(FlameOptions) { .min_width_px = -1 }, stdout), -EINVAL);
        assert_int_equal(flamegraph_render(&f, &(FlameOptions) { .min_width_px = NAN }, stdout), -EINVAL);
        assert_int_equal(flamegraph_render_diff(&f, NULL, NULL, stdout), -EINVAL);
        assert_int_equal(flamegraph_render_diff(&f, &f, &(FlameOptions) { .width = 10 }, stdout), -EINVAL);

        full = fopen("/dev/full", "we");
        if (full) {
                assert_int_equal(flamegraph_render(&f, NULL, full), -EIO);
                fclose(full);
        }
        folded_done(&f);
}

static char *render_bytes(const Folded *a, const Folded *b, const FlameOptions *o, size_t *ret_len) {
        char *buf = NULL;
        FILE *m = open_memstream(&buf, ret_len);

        assert_non_null(m);
        assert_int_equal(b ? flamegraph_render_diff(a, b, o, m) : flamegraph_render(a, o, m), 0);
        fclose(m);
        return buf;
}

static void test_deterministic(void **state) {
        Folded a = FOLDED_INIT, b = FOLDED_INIT, c = FOLDED_INIT;
        char *x, *y, *z;
        size_t nx, ny, nz;

        (void) state;
        load(DATA_DIR "sample-a.folded", &a);
        load(DATA_DIR "sample-b.folded", &b);
        /* The same stacks added in reverse order. */
        for (size_t i = a.n; i-- > 0;)
                add(&c, a.stacks[i].stack, a.stacks[i].count);

        x = render_bytes(&a, NULL, NULL, &nx);
        y = render_bytes(&a, NULL, NULL, &ny);
        z = render_bytes(&c, NULL, NULL, &nz);
        assert_int_equal(nx, ny);
        assert_memory_equal(x, y, nx);
        assert_int_equal(nx, nz);
        assert_memory_equal(x, z, nx);
        free(x);
        free(y);
        free(z);

        x = render_bytes(&a, &b, NULL, &nx);
        y = render_bytes(&c, &b, NULL, &ny);
        assert_int_equal(nx, ny);
        assert_memory_equal(x, y, nx);
        free(x);
        free(y);
        folded_done(&a);
        folded_done(&b);
        folded_done(&c);
}

static void test_diff_widths_colours(void **state) {
        Folded a = FOLDED_INIT, b = FOLDED_INIT;
        const Frame *fr;
        Svg s;

        (void) state;
        /* A 200 samples, B 2000: grew's share 25% -> 50%, shrank's 50% ->
         * 25%, same's 25% -> 25% (10x the samples, the same share). */
        add(&a, "main;grew", 50);
        add(&a, "main;shrank", 100);
        add(&a, "main;same", 50);
        add(&b, "main;grew", 1000);
        add(&b, "main;shrank", 500);
        add(&b, "main;same", 500);
        assert_int_equal(render_diff(&a, &b, NULL, &s), 0);
        assert_nested(&s);
        assert_width(get(&s, "grew"), 1000, 2000);
        assert_width(get(&s, "shrank"), 500, 2000);

        fr = get(&s, "grew"); /* the largest change: full red */
        assert_int_equal(fr->r, 255);
        assert_int_equal(fr->g, 0);
        assert_int_equal(fr->b, 0);
        assert_string_equal(fr->title, "grew (A: 50 samples 25.00%, B: 1000 samples 50.00%, +25.00 pts, +100%)");
        fr = get(&s, "shrank");
        assert_int_equal(fr->r, 0);
        assert_int_equal(fr->g, 0);
        assert_int_equal(fr->b, 255);
        assert_non_null(strstr(fr->title, "-25.00 pts, -50%"));
        fr = get(&s, "same");
        assert_int_equal(fr->r, 255);
        assert_int_equal(fr->g, 255);
        assert_int_equal(fr->b, 255);
        fr = get(&s, "main"); /* 100% in both */
        assert_int_equal(fr->g, 255);
        assert_non_null(strstr(s.f[0].title, "A: 200 samples, B: 2000 samples"));
        svg_done(&s);

        /* A smaller change is paler, in proportion. */
        folded_done(&b);
        add(&b, "main;grew", 600);    /* 30% */
        add(&b, "main;shrank", 1000); /* 50% */
        add(&b, "main;same", 400);    /* 20% */
        assert_int_equal(render_diff(&a, &b, NULL, &s), 0);
        fr = get(&s, "grew"); /* +5 of the largest 5 */
        assert_int_equal(fr->r, 255);
        assert_int_equal(fr->g, 0);
        fr = get(&s, "same"); /* -5 */
        assert_int_equal(fr->b, 255);
        assert_int_equal(fr->r, 0);
        fr = get(&s, "shrank"); /* 0: white */
        assert_int_equal(fr->r + fr->g + fr->b, 3 * 255);
        svg_done(&s);
        folded_done(&a);
        folded_done(&b);
}

static void test_diff_negate(void **state) {
        Folded a = FOLDED_INIT, b = FOLDED_INIT;
        FlameOptions o = { .negate = true };
        const Frame *fr;
        Svg s;

        (void) state;
        add(&a, "main;x", 100);
        add(&a, "main;gone", 100);
        add(&b, "main;x", 300);
        add(&b, "main;fresh", 100);

        /* B's widths: "gone" has none, "fresh" is new. */
        assert_int_equal(render_diff(&a, &b, NULL, &s), 0);
        assert_null(find(&s, "gone"));
        assert_width(get(&s, "x"), 300, 400);
        assert_width(get(&s, "fresh"), 100, 400);
        fr = get(&s, "fresh");
        assert_string_equal(fr->title, "fresh (A: 0 samples 0.00%, B: 100 samples 25.00%, +25.00 pts, new)");
        assert_int_equal(fr->r, 255);
        svg_done(&s);

        /* A's widths: "gone" shows, at -100%, blue; "fresh" has none. */
        assert_int_equal(render_diff(&a, &b, &o, &s), 0);
        assert_null(find(&s, "fresh"));
        assert_width(get(&s, "x"), 100, 200);
        assert_width(get(&s, "gone"), 100, 200);
        fr = get(&s, "gone");
        assert_string_equal(fr->title, "gone (A: 100 samples 50.00%, B: 0 samples 0.00%, -50.00 pts, -100%)");
        assert_int_equal(fr->b, 255);
        assert_int_equal(fr->r, 0);
        /* x: 50% -> 75%, grew, red, even though drawn at A's width. */
        fr = get(&s, "x");
        assert_int_equal(fr->r, 255);
        assert_true(fr->g < 255);
        assert_nested(&s);
        assert_non_null(strstr(s.text, "widths from A"));
        svg_done(&s);
        folded_done(&a);
        folded_done(&b);
}

/* Leaves the fixture graphs for the browser check. */
static void test_write_samples(void **state) {
        const char *dir = getenv("MONKEY_FLAME_OUT");
        Folded a = FOLDED_INIT, b = FOLDED_INIT;
        const struct {
                const char *file;
                bool diff, negate;
        } outs[] = {
                { "sample.svg", false, false },
                { "diff.svg", true, false },
                { "diff-negate.svg", true, true },
        };

        (void) state;
        if (!dir)
                skip();
        load(DATA_DIR "sample-a.folded", &a);
        load(DATA_DIR "sample-b.folded", &b);
        for (size_t i = 0; i < ELEMENTSOF(outs); i++) {
                FlameOptions o = {
                        .title = outs[i].diff ? "php-fpm after the deploy" : "web-1: nginx + php-fpm",
                        .subtitle = outs[i].diff ? "A: before, B: after" : "perf record -F 99 -a -g, 40 s",
                        .negate = outs[i].negate,
                };
                char path[4096];
                FILE *out;

                snprintf(path, sizeof(path), "%s/%s", dir, outs[i].file);
                out = fopen(path, "we");
                assert_non_null(out);
                assert_int_equal(outs[i].diff ? flamegraph_render_diff(&a, &b, &o, out) : flamegraph_render(&a, &o, out),
                                 0);
                assert_int_equal(fclose(out), 0);
        }
        folded_done(&a);
        folded_done(&b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_widths_and_titles),
                cmocka_unit_test(test_merge_and_order),
                cmocka_unit_test(test_fixture_nested),
                cmocka_unit_test(test_escaping),
                cmocka_unit_test(test_labels_cut),
                cmocka_unit_test(test_colours_by_kind),
                cmocka_unit_test(test_min_width),
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_bad_input),
                cmocka_unit_test(test_deterministic),
                cmocka_unit_test(test_diff_widths_colours),
                cmocka_unit_test(test_diff_negate),
                cmocka_unit_test(test_write_samples),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
