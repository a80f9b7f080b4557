#include <inttypes.h>
#include <math.h>

#include "flamegraph.h"
#include "utf8.h"
#include "stackdiff.h"

/* Geometry, in SVG pixels. A frame's label gets as many characters as
 * CHAR_WIDTH * FONT_SIZE each fit in its box, as flamegraph.pl estimates
 * Verdana; the script uses the same rule when it zooms. */
#define FRAME_H 16
#define RECT_H 15
#define FONT_SIZE 12
#define CHAR_WIDTH 0.59
#define XPAD 10
#define TOP_PAD 60    /* title, subtitle, the buttons */
#define BOTTOM_PAD 50 /* details line, legend */
#define LABEL_MIN_CHARS 3

#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

typedef struct Item {
        const char *stack;
        uint64_t a, b;
} Item;

typedef struct Node {
        const char *frame; /* into an Item's stack; "all" for the root */
        size_t len;
        size_t depth; /* root 0 */
        uint64_t a, b;  /* samples in A (the only profile when not a diff) and in B */
        uint64_t start; /* offset along the drawn axis, in samples */
        size_t end;     /* index past the node's subtree (nodes are in preorder) */
} Node;

typedef struct Tree {
        Node *nodes;
        size_t n, allocated;
} Tree;

typedef struct Buf {
        char *p;
        size_t n, allocated;
} Buf;

typedef enum Mode {
        MODE_SINGLE,
        MODE_DIFF,
} Mode;

typedef struct Render {
        Mode mode;
        FILE *out;
        unsigned width;
        double min_width_px;
        bool use_b; /* the drawn widths: B's counts (diff without negate) */
        uint64_t total_a, total_b, total_drawn;
        double scale; /* pixels per sample */
        double max_abs_delta;
        unsigned height;
        Tree tree;
        size_t *visible_before; /* [i]: visible nodes among nodes[0..i) */
        Buf name, label;
} Render;

static void buf_done(Buf *b) {
        free(b->p);
        *b = (Buf) {};
}

static int buf_reserve(Buf *b, size_t more) {
        size_t need, a;
        char *p;

        if (more > SIZE_MAX / 2 - b->n)
                return -ENOMEM;
        need = b->n + more + 1;
        if (need <= b->allocated)
                return 0;
        a = MAX(need, b->allocated * 2);
        a = MAX(a, (size_t) 256);
        p = realloc(b->p, a);
        if (!p)
                return -ENOMEM;
        b->p = p;
        b->allocated = a;
        return 0;
}

static void buf_put(Buf *b, const void *p, size_t len) {
        memcpy(b->p + b->n, p, len);
        b->n += len;
        b->p[b->n] = '\0';
}

/* A UTF-8 sequence at p that XML 1.0 accepts as a character: its length
 * (2..4), or 0 (overlong, surrogate, past U+10FFFF, cut, or U+FFFE/U+FFFF,
 * which XML excludes and expat refuses). */
static size_t xml_utf8_len(const unsigned char *p, size_t left) {
        size_t n = utf8_sequence_len(p, left);

        if (n == 3 && p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf))
                return 0;
        return n;
}

/* b = s[0..len) with every byte XML cannot carry (C0 controls but tab,
 * bytes of invalid UTF-8) as U+FFFD, one per byte, so what a name is
 * made of stays visible. The five markup characters are left for
 * write_escaped(). */
static int sanitize(Buf *b, const char *s, size_t len) {
        const unsigned char *u = (const unsigned char *) s;
        int r;

        b->n = 0;
        if (len > (SIZE_MAX / 2 - 1) / 3)
                return -ENOMEM;
        r = buf_reserve(b, len * 3);
        if (r < 0)
                return r;
        for (size_t i = 0; i < len;) {
                size_t n;

                if (u[i] < 0x80) {
                        if (u[i] < 0x20 && u[i] != '\t')
                                buf_put(b, REPLACEMENT, 3);
                        else
                                buf_put(b, u + i, 1);
                        i++;
                } else if ((n = xml_utf8_len(u + i, len - i)) > 0) {
                        buf_put(b, u + i, n);
                        i += n;
                } else {
                        buf_put(b, REPLACEMENT, 3);
                        i++;
                }
        }
        return 0;
}

/* s: valid UTF-8 from sanitize() or our own constants. */
static void write_escaped(FILE *out, const char *s, size_t len) {
        size_t from = 0;

        for (size_t i = 0; i < len; i++) {
                const char *e;

                switch (s[i]) {
                case '&':
                        e = "&amp;";
                        break;
                case '<':
                        e = "&lt;";
                        break;
                case '>':
                        e = "&gt;";
                        break;
                case '"':
                        e = "&quot;";
                        break;
                case '\'':
                        e = "&apos;";
                        break;
                default:
                        continue;
                }
                fwrite(s + from, 1, i - from, out);
                fputs(e, out);
                from = i + 1;
        }
        fwrite(s + from, 1, len - from, out);
}

static int write_text(Render *r, const char *s, size_t len) {
        int k = sanitize(&r->name, s, len);

        if (k < 0)
                return k;
        write_escaped(r->out, r->name.p, r->name.n);
        return 0;
}

/* Fixed-point without printf's %f, whose decimal point follows the locale:
 * an SVG coordinate must say "12.5" whatever LC_NUMERIC is. */
static const char *fixed(char buf[static 32], double v, unsigned decimals) {
        long long scale = decimals == 1 ? 10 : 100;
        long long t = llround(v * (double) scale);
        long long a = t < 0 ? -t : t;

        snprintf(buf, 32, "%s%lld.%0*lld", t < 0 ? "-" : "", a / scale, (int) decimals, a % scale);
        return buf;
}

static size_t utf8_chars(const char *s, size_t len) {
        size_t n = 0;

        for (size_t i = 0; i < len; i++)
                if (((unsigned char) s[i] & 0xc0) != 0x80)
                        n++;
        return n;
}

/* Byte offset of the n-th character of the valid UTF-8 s. */
static size_t utf8_offset(const char *s, size_t len, size_t n) {
        size_t i = 0;

        for (; i < len; i++)
                if (((unsigned char) s[i] & 0xc0) != 0x80) {
                        if (n == 0)
                                break;
                        n--;
                }
        return i;
}

/* The label for a box `w` pixels wide: the whole (sanitized) name, or its
 * head and "..", or nothing when not even LABEL_MIN_CHARS fit. */
static void make_label(Render *r, double w) {
        double fit = (w - 3.0) / (FONT_SIZE * CHAR_WIDTH);
        size_t max = fit < LABEL_MIN_CHARS ? 0 : (size_t) fit, n;

        r->label.n = 0;
        if (max < LABEL_MIN_CHARS)
                return;
        if (utf8_chars(r->name.p, r->name.n) <= max) {
                buf_put(&r->label, r->name.p, r->name.n);
                return;
        }
        n = utf8_offset(r->name.p, r->name.n, max - 2);
        buf_put(&r->label, r->name.p, n);
        buf_put(&r->label, "..", 2);
}

/* Orders stacks frame by frame: a frame sorts before any longer frame it
 * is a prefix of ("b" before "b-x"), so all children of one parent with
 * the same name are adjacent and merge into one box, in bytewise order. */
static int framewise_cmp(const char *a, const char *b) {
        for (size_t i = 0;; i++) {
                unsigned ca = (unsigned char) a[i], cb = (unsigned char) b[i];
                unsigned ka = ca == 0 ? 0 : ca == ';' ? 1 : ca + 2;
                unsigned kb = cb == 0 ? 0 : cb == ';' ? 1 : cb + 2;

                if (ka != kb)
                        return ka < kb ? -1 : 1;
                if (ca == 0)
                        return 0;
        }
}

static int item_cmp(const void *x, const void *y) {
        return framewise_cmp(((const Item *) x)->stack, ((const Item *) y)->stack);
}

static int tree_add_node(Tree *t, const char *frame, size_t len, size_t depth, uint64_t start) {
        if (t->n == t->allocated) {
                size_t a = t->allocated ? t->allocated * 2 : 256;
                Node *n;

                if (a > SIZE_MAX / sizeof(Node))
                        return -ENOMEM;
                n = reallocarray(t->nodes, a, sizeof(Node));
                if (!n)
                        return -ENOMEM;
                t->nodes = n;
                t->allocated = a;
        }
        t->nodes[t->n++] = (Node) {
                .frame = frame,
                .len = len,
                .depth = depth,
                .start = start,
        };
        return 0;
}

/* items must be sorted by framewise_cmp() with equal stacks merged. The
 * nodes come out in preorder, each subtree contiguous. */
static int tree_build(Tree *t, const Item *items, size_t n_items, bool use_b) {
        _cleanup_(freep) size_t *path = NULL, *stack = NULL;
        size_t path_allocated = 0, open = 1, top = 0;
        uint64_t cursor = 0;
        int r;

        r = tree_add_node(t, "all", 3, 0, 0);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n_items; i++) {
                const char *p = items[i].stack, *end = p + strlen(p);
                size_t depth = 1;

                t->nodes[0].a += items[i].a;
                t->nodes[0].b += items[i].b;

                for (;; depth++) {
                        const char *semi = memchr(p, ';', (size_t) (end - p));
                        size_t len = (size_t) ((semi ?: end) - p);
                        Node *node;

                        if (depth >= path_allocated) {
                                size_t a = MAX(path_allocated * 2, (size_t) 64);
                                size_t *np = reallocarray(path, a, sizeof(size_t));

                                if (!np)
                                        return -ENOMEM;
                                path = np;
                                path_allocated = a;
                                path[0] = 0;
                        }

                        if (depth < open && t->nodes[path[depth]].len == len &&
                            memcmp(t->nodes[path[depth]].frame, p, len) == 0)
                                node = &t->nodes[path[depth]];
                        else {
                                r = tree_add_node(t, p, len, depth, cursor);
                                if (r < 0)
                                        return r;
                                path[depth] = t->n - 1;
                                open = depth + 1;
                                node = &t->nodes[t->n - 1];
                        }
                        node->a += items[i].a;
                        node->b += items[i].b;

                        if (!semi)
                                break;
                        p = semi + 1;
                }
                /* Deeper nodes of the previous stack are closed now. */
                open = MIN(open, depth + 1);
                cursor += use_b ? items[i].b : items[i].a;
        }

        /* Subtree ends: a node's subtree stops at the next node no deeper. */
        stack = malloc(MAX(t->n, (size_t) 1) * sizeof(size_t));
        if (!stack)
                return -ENOMEM;
        for (size_t j = 0; j < t->n; j++) {
                while (top > 0 && t->nodes[stack[top - 1]].depth >= t->nodes[j].depth)
                        t->nodes[stack[--top]].end = j;
                stack[top++] = j;
        }
        while (top > 0)
                t->nodes[stack[--top]].end = t->n;
        return 0;
}

static uint64_t drawn(const Render *r, const Node *n) {
        return r->use_b ? n->b : n->a;
}

static bool node_visible(const Render *r, const Node *n) {
        uint64_t c = drawn(r, n);

        return c > 0 && (double) c * r->scale >= r->min_width_px;
}

static uint32_t name_hash(const char *s, size_t len) {
        uint32_t h = 2166136261u; /* FNV-1a: stable across runs and hosts */

        for (size_t i = 0; i < len; i++) {
                h ^= (unsigned char) s[i];
                h *= 16777619u;
        }
        return h;
}

typedef struct Rgb {
        unsigned r, g, b;
} Rgb;

static unsigned band(unsigned lo, unsigned span, uint32_t h, unsigned shift) {
        return lo + (unsigned) (((h >> shift) & 0xff) * span / 255);
}

/* One colour band per kind; within it the name picks the shade, so a
 * function keeps its colour from one graph to the next. */
static Rgb kind_colour(FrameKind k, const char *name, size_t len) {
        uint32_t h = name_hash(name, len);
        unsigned v;

        switch (k) {
        case FRAME_KERNEL: /* pale amber: warm like user code, but its own band */
                return (Rgb) { band(220, 30, h, 0), band(155, 40, h, 8), band(80, 40, h, 16) };
        case FRAME_JIT:
                return (Rgb) { band(40, 50, h, 0), band(190, 50, h, 8), band(40, 50, h, 16) };
        case FRAME_INLINED:
                return (Rgb) { band(40, 50, h, 0), band(190, 40, h, 8), band(190, 40, h, 16) };
        case FRAME_UNKNOWN:
                v = band(170, 40, h, 0);
                return (Rgb) { v, v, v };
        default: /* user: flamegraph.pl's "hot", red through orange to yellow */
                return (Rgb) { band(205, 50, h, 0), band(0, 230, h, 8), band(0, 55, h, 16) };
        }
}

/* Red grew, blue shrank, white unchanged; full colour at the largest change drawn. */
static Rgb diff_colour(double delta, double max_abs) {
        double t = max_abs > 0 ? fabs(delta) / max_abs : 0;
        unsigned c = (unsigned) lround(255.0 * (1.0 - MIN(t, 1.0)));

        if (delta > 0)
                return (Rgb) { 255, c, c };
        if (delta < 0)
                return (Rgb) { c, c, 255 };
        return (Rgb) { 255, 255, 255 };
}

static const char script[] =
        "\"use strict\";\n"
        "(function () {\n"
        "        var FONT = 12, CHAR = 0.59, MIN_CHARS = 3, HIT = \"rgb(230,0,230)\";\n"
        "        var frames = [], details, unzoomButton, searchButton, matched, searching = null;\n"
        "\n"
        "        /* A title is \"name (details)\": the name is all before the last \" (\". */\n"
        "        function nameOf(title) {\n"
        "                var i = title.lastIndexOf(\" (\");\n"
        "                return i < 0 ? title : title.substring(0, i);\n"
        "        }\n"
        "        function label(name, w) {\n"
        "                var max = Math.floor((w - 3) / (FONT * CHAR)), chars = Array.from(name);\n"
        "                if (max < MIN_CHARS)\n"
        "                        return \"\";\n"
        "                if (chars.length <= max)\n"
        "                        return name;\n"
        "                return chars.slice(0, max - 2).join(\"\") + \"..\";\n"
        "        }\n"
        "        /* The label from the estimate, then shortened further if the font\n"
        "         * the browser picked is wider than the estimate. */\n"
        "        function fit(f, w) {\n"
        "                var s = label(f.name, w), chars, n;\n"
        "                f.text.textContent = s;\n"
        "                if (s === \"\" || f.text.getComputedTextLength() <= w - 3)\n"
        "                        return;\n"
        "                chars = Array.from(f.name);\n"
        "                n = Math.floor(Array.from(s).length * (w - 3) / f.text.getComputedTextLength()) + 1;\n"
        "                for (; n > MIN_CHARS; n--) {\n"
        "                        f.text.textContent = chars.slice(0, n - 2).join(\"\") + \"..\";\n"
        "                        if (f.text.getComputedTextLength() <= w - 3)\n"
        "                                return;\n"
        "                }\n"
        "                f.text.textContent = \"\";\n"
        "        }\n"
        "        function place(f, x, w) {\n"
        "                f.rect.setAttribute(\"x\", x.toFixed(2));\n"
        "                f.rect.setAttribute(\"width\", w.toFixed(2));\n"
        "                f.text.setAttribute(\"x\", (x + 3).toFixed(2));\n"
        "                fit(f, w);\n"
        "        }\n"
        "        function show(f, on) {\n"
        "                if (on)\n"
        "                        f.g.classList.remove(\"fg-hide\");\n"
        "                else\n"
        "                        f.g.classList.add(\"fg-hide\");\n"
        "        }\n"
        "        function unzoom() {\n"
        "                frames.forEach(function (f) {\n"
        "                        show(f, true);\n"
        "                        f.g.classList.remove(\"fg-parent\");\n"
        "                        place(f, f.x, f.w);\n"
        "                });\n"
        "                unzoomButton.classList.add(\"fg-hide\");\n"
        "        }\n"
        "        /* Frames are in preorder and each knows where its subtree ends (e):\n"
        "         * the zoomed frame's subtree widens, its ancestors span the width. */\n"
        "        function zoom(k) {\n"
        "                var f = frames[k], root = frames[0], ratio, i, o;\n"
        "                if (!f || k === 0) {\n"
        "                        unzoom();\n"
        "                        return;\n"
        "                }\n"
        "                ratio = root.w / f.w;\n"
        "                for (i = 0; i < frames.length; i++) {\n"
        "                        o = frames[i];\n"
        "                        if (i >= k && i < f.e) {\n"
        "                                show(o, true);\n"
        "                                o.g.classList.remove(\"fg-parent\");\n"
        "                                place(o, root.x + (o.x - f.x) * ratio, o.w * ratio);\n"
        "                        } else if (i < k && o.e > k) {\n"
        "                                show(o, true);\n"
        "                                o.g.classList.add(\"fg-parent\");\n"
        "                                place(o, root.x, root.w);\n"
        "                        } else\n"
        "                                show(o, false);\n"
        "                }\n"
        "                unzoomButton.classList.remove(\"fg-hide\");\n"
        "        }\n"
        "        function unsearch() {\n"
        "                frames.forEach(function (f) {\n"
        "                        f.rect.setAttribute(\"fill\", f.fill);\n"
        "                });\n"
        "                searching = null;\n"
        "                searchButton.textContent = \"Search\";\n"
        "                matched.textContent = \" \";\n"
        "        }\n"
        "        /* Highlights matching frames; the share counts a match inside\n"
        "         * another match once. */\n"
        "        function search(pattern) {\n"
        "                var re, i, f, covered = 0, sum = 0, count = 0;\n"
        "                try {\n"
        "                        re = new RegExp(pattern);\n"
        "                } catch (e) {\n"
        "                        matched.textContent = \"Bad regular expression: \" + e.message;\n"
        "                        return false;\n"
        "                }\n"
        "                if (frames.length === 0)\n"
        "                        return false;\n"
        "                for (i = 1; i < frames.length; i++) {\n"
        "                        f = frames[i];\n"
        "                        if (!re.test(f.name)) {\n"
        "                                f.rect.setAttribute(\"fill\", f.fill);\n"
        "                                continue;\n"
        "                        }\n"
        "                        f.rect.setAttribute(\"fill\", HIT);\n"
        "                        count++;\n"
        "                        if (i >= covered) {\n"
        "                                sum += f.w;\n"
        "                                covered = f.e;\n"
        "                        }\n"
        "                }\n"
        "                searching = pattern;\n"
        "                searchButton.textContent = \"Reset Search\";\n"
        "                matched.textContent = count === 0 ? \"No match\" :\n"
        "                        \"Matched: \" + (100 * sum / frames[0].w).toFixed(1) + \"% (\" + count + \" frames)\";\n"
        "                return true;\n"
        "        }\n"
        "        function askSearch() {\n"
        "                var p;\n"
        "                if (searching !== null) {\n"
        "                        unsearch();\n"
        "                        return;\n"
        "                }\n"
        "                p = window.prompt(\"Search frames matching (regular expression):\", \"\");\n"
        "                if (p)\n"
        "                        search(p);\n"
        "        }\n"
        "        function init() {\n"
        "                var gs = document.querySelectorAll(\"#fg-frames > g\"), i;\n"
        "                details = document.getElementById(\"fg-details\");\n"
        "                unzoomButton = document.getElementById(\"fg-unzoom\");\n"
        "                searchButton = document.getElementById(\"fg-search\");\n"
        "                matched = document.getElementById(\"fg-matched\");\n"
        "                for (i = 0; i < gs.length; i++)\n"
        "                        (function (k, g) {\n"
        "                                var rect = g.querySelector(\"rect\"), title = g.querySelector(\"title\").textContent;\n"
        "                                var f = {\n"
        "                                        g: g, rect: rect, text: g.querySelector(\"text\"), title: title,\n"
        "                                        name: nameOf(title), fill: rect.getAttribute(\"fill\"),\n"
        "                                        x: parseFloat(rect.getAttribute(\"x\")),\n"
        "                                        w: parseFloat(rect.getAttribute(\"width\")),\n"
        "                                        e: parseInt(g.getAttribute(\"data-e\"), 10)\n"
        "                                };\n"
        "                                frames.push(f);\n"
        "                                fit(f, f.w);\n"
        "                                g.addEventListener(\"click\", function () { zoom(k); });\n"
        "                                g.addEventListener(\"mouseover\", function () { details.textContent = f.title; });\n"
        "                                g.addEventListener(\"mouseout\", function () { details.textContent = \" \"; });\n"
        "                        })(i, gs[i]);\n"
        "                unzoomButton.addEventListener(\"click\", unzoom);\n"
        "                searchButton.addEventListener(\"click\", askSearch);\n"
        "                window.addEventListener(\"keydown\", function (ev) {\n"
        "                        if ((ev.ctrlKey || ev.metaKey) && ev.key === \"f\") {\n"
        "                                ev.preventDefault();\n"
        "                                if (searching !== null)\n"
        "                                        unsearch();\n"
        "                                askSearch();\n"
        "                        } else if (ev.key === \"Escape\") {\n"
        "                                unzoom();\n"
        "                                unsearch();\n"
        "                        }\n"
        "                });\n"
        "                /* For scripts and tests driving the page. */\n"
        "                window.flamegraph = { frames: frames, zoom: zoom, unzoom: unzoom, search: search, unsearch: unsearch };\n"
        "        }\n"
        "        window.addEventListener(\"load\", init);\n"
        "})();\n";

static const char style[] =
        "text { font-family: Verdana, \"DejaVu Sans\", sans-serif; font-size: 12px; fill: #000; }\n"
        ".fg-title { font-size: 17px; }\n"
        ".fg-button { fill: #1a4f8a; cursor: pointer; }\n"
        ".fg-button:hover { text-decoration: underline; }\n"
        "#fg-frames > g { cursor: pointer; }\n"
        "#fg-frames > g:hover rect { stroke: #000; stroke-width: 0.5; }\n"
        "#fg-frames text { pointer-events: none; }\n"
        ".fg-hide { display: none; }\n"
        ".fg-parent rect, .fg-parent text { fill-opacity: 0.5; }\n"
        ".fg-diff rect { stroke: #c8c8c8; stroke-width: 0.5; }\n";

static unsigned image_height(size_t max_depth) {
        return (unsigned) (TOP_PAD + (max_depth + 1) * FRAME_H + BOTTOM_PAD);
}

static int write_header(Render *r, const char *title, const char *subtitle, unsigned height) {
        char b[32];
        int k;

        fprintf(r->out,
                "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
                "<svg version=\"1.1\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%u\" height=\"%u\" "
                "viewBox=\"0 0 %u %u\">\n",
                r->width, height, r->width, height);
        fprintf(r->out,
                "<defs><linearGradient id=\"fg-background\" x1=\"0\" x2=\"0\" y1=\"0\" y2=\"1\">"
                "<stop stop-color=\"#eeeeee\" offset=\"5%%\"/><stop stop-color=\"#eeeeb0\" offset=\"95%%\"/>"
                "</linearGradient></defs>\n");
        fprintf(r->out, "<style type=\"text/css\"><![CDATA[\n%s]]></style>\n", style);
        fprintf(r->out, "<script type=\"text/ecmascript\"><![CDATA[\n%s]]></script>\n", script);
        fprintf(r->out, "<rect x=\"0\" y=\"0\" width=\"%u\" height=\"%u\" fill=\"url(#fg-background)\"/>\n", r->width,
                height);

        fprintf(r->out, "<text class=\"fg-title\" x=\"%s\" y=\"24\" text-anchor=\"middle\">", fixed(b, r->width / 2.0, 1));
        k = write_text(r, title, strlen(title));
        if (k < 0)
                return k;
        fputs("</text>\n", r->out);
        if (!isempty(subtitle)) {
                fprintf(r->out, "<text x=\"%s\" y=\"44\" text-anchor=\"middle\" fill=\"#555\">",
                        fixed(b, r->width / 2.0, 1));
                k = write_text(r, subtitle, strlen(subtitle));
                if (k < 0)
                        return k;
                fputs("</text>\n", r->out);
        }
        fprintf(r->out, "<text id=\"fg-unzoom\" class=\"fg-button fg-hide\" x=\"%d\" y=\"24\">Reset Zoom</text>\n",
                XPAD);
        fprintf(r->out, "<text id=\"fg-search\" class=\"fg-button\" x=\"%d\" y=\"24\" text-anchor=\"end\">Search</text>\n",
                (int) r->width - XPAD);
        fprintf(r->out, "<text id=\"fg-details\" x=\"%d\" y=\"%u\"> </text>\n", XPAD, height - 30);
        fprintf(r->out, "<text id=\"fg-matched\" x=\"%d\" y=\"%u\" text-anchor=\"end\"> </text>\n",
                (int) r->width - XPAD, height - 30);
        return 0;
}

static void write_swatch(Render *r, unsigned *x, unsigned y, Rgb c, const char *what) {
        fprintf(r->out,
                "<rect x=\"%u\" y=\"%u\" width=\"12\" height=\"12\" rx=\"2\" ry=\"2\" fill=\"rgb(%u,%u,%u)\" "
                "stroke=\"#888\" stroke-width=\"0.5\"/><text x=\"%u\" y=\"%u\">%s</text>\n",
                *x, y - 10, c.r, c.g, c.b, *x + 16, y, what);
        *x += 22 + (unsigned) strlen(what) * 7;
}

static void write_legend(Render *r, unsigned height) {
        unsigned x = XPAD, y = height - 10;
        char b[32];

        fputs("<g id=\"fg-legend\">\n", r->out);
        if (r->mode == MODE_SINGLE) {
                /* A representative of each band: the shade of the kind's own name. */
                static const struct {
                        FrameKind kind;
                        const char *label;
                } kinds[] = {
                        { FRAME_USER, "user" },       { FRAME_KERNEL, "kernel" },   { FRAME_JIT, "JIT" },
                        { FRAME_INLINED, "inlined" }, { FRAME_UNKNOWN, "unknown" },
                };

                for (size_t i = 0; i < ELEMENTSOF(kinds); i++)
                        write_swatch(r, &x, y, kind_colour(kinds[i].kind, kinds[i].label, strlen(kinds[i].label)),
                                     kinds[i].label);
        } else {
                write_swatch(r, &x, y, (Rgb) { 255, 0, 0 }, "share grew");
                write_swatch(r, &x, y, (Rgb) { 255, 255, 255 }, "unchanged");
                write_swatch(r, &x, y, (Rgb) { 0, 0, 255 }, "share shrank");
                fprintf(r->out, "<text x=\"%u\" y=\"%u\">(full colour: %s pts; widths from %s)</text>\n", x, y,
                        fixed(b, r->max_abs_delta, 2), r->use_b ? "B" : "A");
        }
        fputs("</g>\n", r->out);
}

static int write_node(Render *r, const Node *n, bool root) {
        uint64_t c = drawn(r, n);
        double x = XPAD + (double) n->start * r->scale, w = (double) c * r->scale;
        unsigned y = r->height - BOTTOM_PAD - (unsigned) (n->depth + 1) * FRAME_H;
        size_t name_len = n->len;
        FrameKind kind = root ? FRAME_USER : frame_kind(n->frame, n->len, &name_len);
        StackDiffShare s;
        Rgb colour;
        char b1[32], b2[32], b3[32], rel[32];
        int k;

        /* The annotation is shown as the colour, not as text, as flamegraph.pl does. */
        k = sanitize(&r->name, n->frame, name_len);
        if (k < 0)
                return k;
        k = buf_reserve(&r->label, r->name.n + 2);
        if (k < 0)
                return k;
        r->label.n = 0;

        fprintf(r->out, "<g data-e=\"%zu\"><title>", r->visible_before[n->end]);
        write_escaped(r->out, r->name.p, r->name.n);
        stackdiff_share(n->a, r->total_a, n->b, r->total_b, &s);
        if (r->mode == MODE_SINGLE) {
                colour = kind_colour(kind, r->name.p, r->name.n);
                fprintf(r->out, " (%" PRIu64 " %s, %s%%)", c, c == 1 ? "sample" : "samples",
                        fixed(b1, 100.0 * (double) c / (double) r->total_drawn, 2));
        } else if (root) {
                /* Both shares are 100% unless a profile is empty. */
                colour = diff_colour(s.delta, r->max_abs_delta);
                fprintf(r->out, " (A: %" PRIu64 " samples, B: %" PRIu64 " samples)", r->total_a, r->total_b);
        } else {
                colour = diff_colour(s.delta, r->max_abs_delta);
                stackdiff_format_relative(&s, rel, sizeof(rel));
                fprintf(r->out, " (A: %" PRIu64 " %s %s%%, B: %" PRIu64 " %s %s%%, %s%s pts, %s)", n->a,
                        n->a == 1 ? "sample" : "samples", fixed(b1, s.share_a, 2), n->b,
                        n->b == 1 ? "sample" : "samples", fixed(b2, s.share_b, 2), s.delta >= 0 ? "+" : "",
                        fixed(b3, s.delta, 2), rel);
        }
        fputs("</title>", r->out);

        fprintf(r->out, "<rect x=\"%s\" y=\"%u\" width=\"%s\" height=\"%d\" rx=\"2\" ry=\"2\" fill=\"rgb(%u,%u,%u)\"/>",
                fixed(b1, x, 2), y, fixed(b2, w, 2), RECT_H, colour.r, colour.g, colour.b);
        make_label(r, w);
        fprintf(r->out, "<text x=\"%s\" y=\"%u\">", fixed(b1, x + 3, 2), y + 11);
        write_escaped(r->out, r->label.p, r->label.n);
        fputs("</text></g>\n", r->out);
        return 0;
}

static void render_done(Render *r) {
        free(r->tree.nodes);
        free(r->visible_before);
        buf_done(&r->name);
        buf_done(&r->label);
}

static int render_init(Render *r, Mode mode, const FlameOptions *o, FILE *out) {
        static const FlameOptions defaults = {};

        if (!out)
                return -EINVAL;
        o = o ?: &defaults;
        if (o->width != 0 && (o->width < FLAME_WIDTH_MIN || o->width > FLAME_WIDTH_MAX))
                return -EINVAL;
        if (!isfinite(o->min_width_px) || o->min_width_px < 0)
                return -EINVAL;

        *r = (Render) {
                .mode = mode,
                .out = out,
                .width = o->width ?: FLAME_WIDTH_DEFAULT,
                .min_width_px = o->min_width_px > 0 ? o->min_width_px : FLAME_MIN_WIDTH_PX_DEFAULT,
                .use_b = mode == MODE_DIFF && !o->negate,
        };
        /* The label buffer is written with buf_put() only after a reserve. */
        return buf_reserve(&r->label, 0);
}

static int render_finish(Render *r) {
        if (fflush(r->out) != 0 || ferror(r->out))
                return -EIO;
        return 0;
}

static int render_empty(Render *r, const char *title, const char *subtitle, const char *what) {
        char b[32];
        int k;

        r->height = image_height(1);
        k = write_header(r, title, subtitle, r->height);
        if (k < 0)
                return k;
        fprintf(r->out, "<text x=\"%s\" y=\"%u\" text-anchor=\"middle\" font-size=\"17\">%s</text>\n",
                fixed(b, r->width / 2.0, 1), TOP_PAD + FRAME_H, what);
        fputs("<g id=\"fg-frames\">\n</g>\n", r->out);
        write_legend(r, r->height);
        fputs("</svg>\n", r->out);
        return render_finish(r);
}

/* items: sorted and merged. Builds the tree, prunes, writes the SVG. */
static int render_items(Render *r, Item *items, size_t n_items, const char *title, const char *subtitle) {
        size_t max_depth = 0;
        int k;

        r->total_drawn = r->use_b ? r->total_b : r->total_a;
        if (r->total_drawn == 0)
                return render_empty(r, title, subtitle,
                                    r->mode == MODE_SINGLE                ? "no samples"
                                    : r->total_a == 0 && r->total_b == 0 ? "no samples in A or B"
                                    : r->use_b                            ? "no samples in B"
                                                                          : "no samples in A");
        r->scale = (double) (r->width - 2 * XPAD) / (double) r->total_drawn;

        k = tree_build(&r->tree, items, n_items, r->use_b);
        if (k < 0)
                return k;

        r->visible_before = malloc((r->tree.n + 1) * sizeof(size_t));
        if (!r->visible_before)
                return -ENOMEM;
        r->visible_before[0] = 0;
        for (size_t i = 0; i < r->tree.n; i++) {
                const Node *n = &r->tree.nodes[i];
                bool v = i == 0 || node_visible(r, n);

                r->visible_before[i + 1] = r->visible_before[i] + v;
                if (!v)
                        continue;
                max_depth = MAX(max_depth, n->depth);
                if (r->mode == MODE_DIFF) {
                        StackDiffShare s;

                        stackdiff_share(n->a, r->total_a, n->b, r->total_b, &s);
                        r->max_abs_delta = MAX(r->max_abs_delta, fabs(s.delta));
                }
        }

        r->height = image_height(max_depth);
        k = write_header(r, title, subtitle, r->height);
        if (k < 0)
                return k;
        fprintf(r->out, "<g id=\"fg-frames\"%s>\n", r->mode == MODE_DIFF ? " class=\"fg-diff\"" : "");
        for (size_t i = 0; i < r->tree.n; i++) {
                /* A pruned node's subtree is no wider: skip it whole. */
                if (i > 0 && !node_visible(r, &r->tree.nodes[i])) {
                        i = r->tree.nodes[i].end - 1;
                        continue;
                }
                k = write_node(r, &r->tree.nodes[i], i == 0);
                if (k < 0)
                        return k;
        }
        fputs("</g>\n", r->out);
        write_legend(r, r->height);
        fputs("</svg>\n", r->out);
        return render_finish(r);
}

int flamegraph_render(const Folded *profile, const FlameOptions *o, FILE *out) {
        _cleanup_(freep) Item *items = NULL;
        Render r = {};
        int k;

        if (!profile)
                return -EINVAL;
        k = render_init(&r, MODE_SINGLE, o, out);
        if (k < 0) {
                render_done(&r);
                return k;
        }
        r.total_a = profile->total;

        items = malloc(MAX(profile->n, (size_t) 1) * sizeof(Item));
        if (!items) {
                render_done(&r);
                return -ENOMEM;
        }
        for (size_t i = 0; i < profile->n; i++)
                items[i] = (Item) { profile->stacks[i].stack, profile->stacks[i].count, 0 };
        if (profile->n > 0)
                qsort(items, profile->n, sizeof(Item), item_cmp);

        k = render_items(&r, items, profile->n, (o && o->title) ? o->title : "Flame Graph", o ? o->subtitle : NULL);
        render_done(&r);
        return k;
}

int flamegraph_render_diff(const Folded *a, const Folded *b, const FlameOptions *o, FILE *out) {
        _cleanup_(freep) Item *items = NULL;
        size_t n = 0;
        Render r = {};
        int k;

        if (!a || !b)
                return -EINVAL;
        if (a->n > SIZE_MAX / sizeof(Item) / 2 || b->n > SIZE_MAX / sizeof(Item) / 2)
                return -ENOMEM;
        k = render_init(&r, MODE_DIFF, o, out);
        if (k < 0) {
                render_done(&r);
                return k;
        }
        r.total_a = a->total;
        r.total_b = b->total;

        items = malloc(MAX(a->n + b->n, (size_t) 1) * sizeof(Item));
        if (!items) {
                render_done(&r);
                return -ENOMEM;
        }
        for (size_t i = 0; i < a->n; i++)
                items[n++] = (Item) { a->stacks[i].stack, a->stacks[i].count, 0 };
        for (size_t i = 0; i < b->n; i++)
                items[n++] = (Item) { b->stacks[i].stack, 0, b->stacks[i].count };
        if (n > 0)
                qsort(items, n, sizeof(Item), item_cmp);

        /* The same stack from both profiles: one item with both counts. */
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
                if (m > 0 && streq(items[m - 1].stack, items[i].stack)) {
                        items[m - 1].a += items[i].a;
                        items[m - 1].b += items[i].b;
                } else
                        items[m++] = items[i];
        }

        k = render_items(&r, items, m, (o && o->title) ? o->title : "Differential Flame Graph",
                         o ? o->subtitle : NULL);
        render_done(&r);
        return k;
}
