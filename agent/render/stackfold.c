#include "stackfold.h"

/* What a sample looks like (perf 6.1, `perf script` after `perf record -a -g`):
 *
 *     swapper     0 [000] 34089.067985:   10101010 cpu-clock:pppH:
 *     \tffffffff821f236b pv_native_safe_halt+0xb ([kernel.kallsyms])
 *     \t           f786a __GI___fstatat64+0xa (/usr/lib/x86_64-linux-gnu/libc.so.6)
 *     (blank line)
 *
 * The header is "comm tid [cpu] time: period event:" by default and
 * "comm pid/tid ..." with -F comm,pid,tid,...; the comm may hold spaces and
 * digits. Frames come leaf first. Without -g there are no frame lines:
 * the comm is right-aligned (leading spaces) and the one sampled frame
 * follows the event on the header line. */

/* Frames kept besides the comm, which is a frame of the folded stack too. */
#define FRAMES_MAX (FOLDED_DEPTH_MAX - 1)
/* The longest annotation, "_[k]". */
#define ANNOTATION_MAX 4
#define FRAME_MAX (STACKFOLD_FRAME_NAME_MAX + ANNOTATION_MAX)
/* Frame names live in an arena: the kept ones fit in FOLDED_STACK_MAX, a
 * new one in FRAME_MAX, so compacting always makes room. */
#define ARENA_SIZE (FOLDED_STACK_MAX + FRAME_MAX)
#define EVENT_MAX 256
/* A pid is one of the first few tokens: perf comms are at most 15 bytes. */
#define PID_TOKEN_MAX 32

typedef struct FrameRef {
        uint32_t offset, len;
} FrameRef;

struct StackFolder {
        StackFoldOptions options;
        StackFoldStats stats;
        Folded table;
        int error; /* sticky -ENOMEM */
        bool finished;

        /* The line being assembled across feeds. */
        char *line;
        size_t line_len;
        bool skipping; /* inside a line longer than STACKFOLD_LINE_MAX: drop up to its newline */

        /* The first event seen; samples of others are left out. */
        char event[EVENT_MAX];
        size_t event_len;

        /* The sample being read. */
        bool in_sample, skip_sample, truncated, idle_task, leaf_idle;
        size_t n_seen; /* frames seen, kept or not */
        char comm[STACKFOLD_COMM_MAX + 24];
        size_t comm_len;

        /* Its frames, leaf first: a ring of the root-most ones that fit. */
        char *arena;
        size_t arena_used;
        FrameRef *frames;
        size_t first, n, bytes; /* bytes: sum of kept frame lengths + 1 each for ';' */

        char *out; /* the joined stack, FOLDED_STACK_MAX + 1 */
        char *name; /* scratch for one frame name, FRAME_MAX */
};

static bool is_space(char c) {
        return c == ' ' || c == '\t';
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

static bool is_xdigit(char c) {
        return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool all_digits(const char *s, size_t n) {
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_digit(s[i]))
                        return false;
        return true;
}

static bool has_prefix(const char *s, size_t n, const char *prefix) {
        size_t k = strlen(prefix);

        return n >= k && memcmp(s, prefix, k) == 0;
}

static bool has_suffix(const char *s, size_t n, const char *suffix) {
        size_t k = strlen(suffix);

        return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static bool equals(const char *s, size_t n, const char *word) {
        return n == strlen(word) && memcmp(s, word, n) == 0;
}

static bool contains(const char *s, size_t n, const char *word) {
        size_t k = strlen(word);

        for (size_t i = 0; i + k <= n; i++)
                if (memcmp(s + i, word, k) == 0)
                        return true;
        return false;
}

/* The next token of [*p, end): spaces and tabs separate them. */
static bool next_token(const char **p, const char *end, const char **ret, size_t *ret_len) {
        const char *s = *p, *e;

        while (s < end && is_space(*s))
                s++;
        if (s == end)
                return false;
        for (e = s; e < end && !is_space(*e); e++)
                ;
        *ret = s;
        *ret_len = (size_t) (e - s);
        *p = e;
        return true;
}

/* "123" or "123/456" (pid/tid), each at most 10 digits. */
static bool is_pid_token(const char *s, size_t n, size_t *ret_pid_len) {
        const char *slash = memchr(s, '/', n);
        size_t a = slash ? (size_t) (slash - s) : n;

        if (a > 10 || !all_digits(s, a))
                return false;
        if (slash && (n - a - 1 > 10 || !all_digits(slash + 1, n - a - 1)))
                return false;
        *ret_pid_len = a;
        return true;
}

static bool is_cpu_token(const char *s, size_t n) {
        return n >= 3 && s[0] == '[' && s[n - 1] == ']' && all_digits(s + 1, n - 2);
}

/* "34089.067985:" */
static bool is_time_token(const char *s, size_t n) {
        const char *dot;

        if (n < 2 || s[n - 1] != ':')
                return false;
        dot = memchr(s, '.', n - 1);
        if (!dot)
                return all_digits(s, n - 1);
        return all_digits(s, (size_t) (dot - s)) && all_digits(dot + 1, (size_t) (s + n - 1 - dot - 1));
}

/* The idle task idling, rather than doing an interrupt's work on its
 * stack: its leaf frame is one of the idle loops or halts. */
static bool is_idle_function(const char *s, size_t n) {
        return contains(s, n, "idle") || contains(s, n, "safe_halt") || contains(s, n, "xen_hypercall_sched_op") ||
               contains(s, n, "mwait");
}

static bool dso_is_kernel(const char *d, size_t n) {
        static const char *const user_brackets[] = {
                "vdso", "vsyscall", "vvar", "heap", "stack", "anon", "unknown", "uprobes", "JIT",
        };
        const char *base = d;

        if (has_prefix(d, n, "[kernel.") || has_prefix(d, n, "[guest.kernel."))
                return true;
        for (size_t i = n; i > 0; i--)
                if (d[i - 1] == '/') {
                        base = d + i;
                        break;
                }
        n -= (size_t) (base - d);
        if (has_prefix(base, n, "vmlinux") || has_suffix(base, n, ".ko") || contains(base, n, ".ko."))
                return true;
        /* A module as perf names it: "[ext4]", "[nf_tables]". */
        if (base == d && n >= 3 && d[0] == '[' && d[n - 1] == ']') {
                for (size_t i = 0; i < ELEMENTSOF(user_brackets); i++)
                        if (has_prefix(d + 1, n - 2, user_brackets[i]))
                                return false;
                for (size_t i = 1; i < n - 1; i++)
                        if (!(is_digit(d[i]) || (d[i] >= 'a' && d[i] <= 'z') || (d[i] >= 'A' && d[i] <= 'Z') ||
                              d[i] == '_' || d[i] == '-' || d[i] == '.'))
                                return false;
                return true;
        }
        return false;
}

static bool dso_is_jit(const char *d, size_t n) {
        const char *base = d;

        if (has_prefix(d, n, "[JIT] tid "))
                return true;
        for (size_t i = n; i > 0; i--)
                if (d[i - 1] == '/') {
                        base = d + i;
                        break;
                }
        n -= (size_t) (base - d);
        /* perf-PID.map (perf's map convention), jitted-PID-N.so (perf inject --jit) */
        if (has_prefix(base, n, "perf-") && has_suffix(base, n, ".map") && n > 9 && all_digits(base + 5, n - 9))
                return true;
        return has_prefix(base, n, "jitted-") && has_suffix(base, n, ".so");
}

/* Append s to the name scratch at *len, as the folded format can carry it:
 * ';' separates frames, so it becomes ':'; control bytes (newlines, NULs)
 * become '?'. Cut at STACKFOLD_FRAME_NAME_MAX on a UTF-8 boundary; false
 * when cut. */
static bool name_append(char *name, size_t *len, size_t max, const char *s, size_t n) {
        bool whole = true;

        if (*len + n > max) {
                n = max - *len;
                /* do not split a multibyte character */
                while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80)
                        n--;
                whole = false;
        }
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];

                name[(*len)++] = c == ';' ? ':' : (c < 0x20 || c == 0x7f) ? '?' : (char) c;
        }
        return whole;
}

static void sample_reset(StackFolder *f) {
        f->in_sample = f->skip_sample = f->truncated = f->idle_task = f->leaf_idle = false;
        f->n_seen = 0;
        f->comm_len = 0;
        f->first = f->n = f->bytes = 0;
        f->arena_used = 0;
}

/* Keep the frame (a root-ward one: frames come leaf first), dropping
 * leaf-most ones until the stack fits the table's bounds. */
static void frame_push(StackFolder *f, const char *name, size_t len) {
        size_t slot;

        while (f->n > 0 && (f->n + 1 > FRAMES_MAX || f->comm_len + f->bytes + len + 1 > FOLDED_STACK_MAX)) {
                f->bytes -= f->frames[f->first].len + 1;
                f->first = (f->first + 1) % FRAMES_MAX;
                f->n--;
                f->truncated = true;
        }
        if (f->n == 0)
                f->arena_used = 0;
        else if (f->arena_used + len > ARENA_SIZE) {
                /* Compact: the kept frames are contiguous from the oldest one. */
                size_t start = f->frames[f->first].offset, live = f->arena_used - start;

                memmove(f->arena, f->arena + start, live);
                for (size_t i = 0; i < f->n; i++)
                        f->frames[(f->first + i) % FRAMES_MAX].offset -= (uint32_t) start;
                f->arena_used = live;
        }

        memcpy(f->arena + f->arena_used, name, len);
        slot = (f->first + f->n) % FRAMES_MAX;
        f->frames[slot] = (FrameRef) { .offset = (uint32_t) f->arena_used, .len = (uint32_t) len };
        f->arena_used += len;
        f->n++;
        f->bytes += len + 1;
}

/* One frame, "ADDR SYM+0xOFF (DSO)" without the leading whitespace; the
 * DSO (and the symbol) may be missing. false when it is not a frame. */
static bool frame_parse(StackFolder *f, const char *p, size_t n) {
        const char *addr, *end = p + n, *sym, *sym_end, *dso = NULL;
        size_t addr_len, dso_len = 0, len = 0;
        uint64_t address = 0;
        const char *annotation = "";
        bool whole = true;

        if (!next_token(&p, end, &addr, &addr_len) || addr_len > 16)
                return false;
        for (size_t i = 0; i < addr_len; i++) {
                if (!is_xdigit(addr[i]))
                        return false;
                address = address << 4 |
                          (uint64_t) (is_digit(addr[i]) ? addr[i] - '0' : (addr[i] | 0x20) - 'a' + 10);
        }

        while (p < end && is_space(*p))
                p++;
        sym = p;
        sym_end = end;

        /* The DSO is the last parenthesised group, itself maybe holding
         * one: "(/memfd:x (deleted))". A symbol's own parentheses
         * ("foo(int)") do not follow a space. */
        if (sym_end > sym && sym_end[-1] == ')') {
                size_t depth = 0;

                for (const char *q = sym_end; q > sym; q--) {
                        if (q[-1] == ')')
                                depth++;
                        else if (q[-1] == '(' && --depth == 0) {
                                if (q - 1 > sym && is_space(q[-2])) {
                                        dso = q;
                                        dso_len = (size_t) (sym_end - 1 - q);
                                        sym_end = q - 2;
                                        while (sym_end > sym && is_space(sym_end[-1]))
                                                sym_end--;
                                }
                                break;
                        }
                }
        }

        /* "+0x1f": where in the symbol, which would split one function into many. */
        for (const char *q = sym_end; q > sym; q--)
                if (!is_xdigit(q[-1])) {
                        if (q < sym_end && q - sym >= 3 && q[-1] == 'x' && q[-2] == '0' && q[-3] == '+')
                                sym_end = q - 3;
                        break;
                }

        if (sym == sym_end || equals(sym, (size_t) (sym_end - sym), "[unknown]")) {
                /* No symbol: name the object it is in, when perf knows it. */
                const char *base = dso;
                size_t base_len = dso_len;

                if (!dso || dso_len == 0 || equals(dso, dso_len, "[unknown]") || equals(dso, dso_len, "inlined")) {
                        base = "[unknown]";
                        base_len = strlen(base);
                }
                if (has_suffix(base, base_len, " (deleted)"))
                        base_len -= 10;
                for (size_t i = base_len; i > 0; i--)
                        if (base[i - 1] == '/') {
                                base_len -= i;
                                base += i;
                                break;
                        }
                if (base_len >= 2 && base[0] == '[' && base[base_len - 1] == ']')
                        whole = name_append(f->name, &len, STACKFOLD_FRAME_NAME_MAX, base, base_len);
                else {
                        name_append(f->name, &len, FRAME_MAX, "[", 1);
                        whole = name_append(f->name, &len, STACKFOLD_FRAME_NAME_MAX, base, base_len);
                        name_append(f->name, &len, FRAME_MAX, "]", 1);
                }
        } else {
                if (dso && equals(dso, dso_len, "inlined"))
                        annotation = "_[i]";
                else if (dso && dso_is_jit(dso, dso_len))
                        annotation = "_[j]";
                else if (dso && dso_is_kernel(dso, dso_len))
                        annotation = "_[k]";
                else if ((!dso || equals(dso, dso_len, "[unknown]")) && address >= UINT64_C(0x8000000000000000))
                        annotation = "_[k]";
                whole = name_append(f->name, &len, STACKFOLD_FRAME_NAME_MAX, sym, (size_t) (sym_end - sym));
                name_append(f->name, &len, FRAME_MAX, annotation, strlen(annotation));
        }

        if (!whole)
                f->truncated = true;
        if (f->n_seen++ == 0)
                f->leaf_idle = is_idle_function(sym, (size_t) (sym_end - sym));
        frame_push(f, f->name, len);
        return true;
}

static int sample_flush(StackFolder *f) {
        size_t len = 0;
        int r;

        if (!f->in_sample)
                return 0;
        if (f->skip_sample) {
                sample_reset(f);
                return 0;
        }
        if (!f->options.include_idle && f->idle_task && (f->n_seen == 0 || f->leaf_idle)) {
                f->stats.idle++;
                sample_reset(f);
                return 0;
        }

        memcpy(f->out, f->comm, f->comm_len);
        len = f->comm_len;
        for (size_t i = f->n, unknown = 0; i > 0; i--) {
                const FrameRef *fr = &f->frames[(f->first + i - 1) % FRAMES_MAX];
                bool is_unknown = equals(f->arena + fr->offset, fr->len, "[unknown]");

                /* A frame-pointer walk through code built without them
                 * reads garbage: runs of [unknown], 100 deep at times. One
                 * box says as much, and the graph keeps its height. */
                if (is_unknown && unknown++ > 0)
                        continue;
                if (!is_unknown)
                        unknown = 0;
                f->out[len++] = ';';
                memcpy(f->out + len, f->arena + fr->offset, fr->len);
                len += fr->len;
        }

        r = folded_add(&f->table, f->out, len, 1);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                /* Cannot happen with the names cleaned above; if it does, the sample is lost, not the profile. */
                f->stats.malformed++;
        else {
                f->stats.folded++;
                if (f->truncated)
                        f->stats.truncated++;
        }
        sample_reset(f);
        return 0;
}

/* A sample header: 1, or 0 when the line is not one. A line that starts in
 * column 0 needs only a pid after the comm (as stackcollapse-perf); an
 * indented one (perf right-aligns the comm without -g) a pid followed by
 * what perf prints after it, so a frame line never passes for one. */
static int header_parse(StackFolder *f, const char *line, size_t n) {
        const char *end = line + n, *p = line, *tok, *comm, *comm_end = NULL, *pid = NULL, *after = NULL;
        size_t tok_len, pid_len = 0, fallback_pid_len = 0;
        const char *fallback_comm_end = NULL, *fallback_pid = NULL, *fallback_after = NULL;
        bool indented = is_space(line[0]);
        const char *event = NULL;
        size_t event_len = 0;
        const char *prev_end;
        int r;

        if (!next_token(&p, end, &comm, &tok_len))
                return 0;
        prev_end = p;

        for (unsigned i = 1; i < PID_TOKEN_MAX && next_token(&p, end, &tok, &tok_len); i++) {
                const char *q = p, *nt;
                size_t nt_len, pl;

                if (!is_pid_token(tok, tok_len, &pl)) {
                        prev_end = p;
                        continue;
                }
                if (!fallback_pid) {
                        fallback_pid = tok;
                        fallback_pid_len = pl;
                        fallback_comm_end = prev_end;
                        fallback_after = p;
                }
                if (!next_token(&q, end, &nt, &nt_len) || is_cpu_token(nt, nt_len) || nt[nt_len - 1] == ':') {
                        pid = tok;
                        pid_len = pl;
                        comm_end = prev_end;
                        after = p;
                        break;
                }
                prev_end = p;
        }
        if (!pid) {
                if (indented || !fallback_pid)
                        return 0;
                pid = fallback_pid;
                pid_len = fallback_pid_len;
                comm_end = fallback_comm_end;
                after = fallback_after;
        }

        /* What follows the pid: [cpu] time: period event: */
        p = after;
        while (next_token(&p, end, &tok, &tok_len)) {
                if (is_cpu_token(tok, tok_len) || is_time_token(tok, tok_len) || all_digits(tok, tok_len))
                        continue;
                if (tok[tok_len - 1] == ':') {
                        event = tok;
                        event_len = tok_len;
                }
                break;
        }

        r = sample_flush(f);
        if (r < 0)
                return r;
        f->in_sample = true;
        f->stats.samples++;

        if (event && event_len <= EVENT_MAX) {
                if (f->event_len == 0) {
                        memcpy(f->event, event, event_len);
                        f->event_len = event_len;
                } else if (event_len != f->event_len || memcmp(event, f->event, event_len) != 0) {
                        f->stats.other_event++;
                        f->skip_sample = true;
                        return 1;
                }
        }

        f->idle_task = pid_len == 1 && pid[0] == '0';
        if (!name_append(f->comm, &f->comm_len, STACKFOLD_COMM_MAX, comm, (size_t) (comm_end - comm)))
                f->truncated = true;
        if (f->options.include_pid) {
                name_append(f->comm, &f->comm_len, sizeof f->comm, "-", 1);
                name_append(f->comm, &f->comm_len, sizeof f->comm, pid, pid_len);
        }

        /* Without -g, the sampled frame follows the event on this line. */
        if (event) {
                p = event + event_len;
                while (p < end && is_space(*p))
                        p++;
                if (p < end && is_xdigit(*p))
                        (void) frame_parse(f, p, (size_t) (end - p));
        }
        return 1;
}

static int line_process(StackFolder *f, const char *p, size_t n) {
        while (n > 0 && (is_space(p[n - 1]) || p[n - 1] == '\r'))
                n--;
        if (n == 0)
                return sample_flush(f);
        if (p[0] == '#')
                return 0; /* perf script --header */

        if (p[0] != '\t') {
                int r = header_parse(f, p, n);

                if (r != 0)
                        return MIN(r, 0);
        }

        while (n > 0 && is_space(*p))
                p++, n--;
        if (!f->in_sample || n == 0) {
                f->stats.malformed++;
                return 0;
        }
        if (f->skip_sample)
                return 0;
        if (!frame_parse(f, p, n))
                f->stats.malformed++;
        return 0;
}

int stackfold_new(const StackFoldOptions *o, StackFolder **ret) {
        StackFolder *f;

        if (!ret)
                return -EINVAL;
        f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        if (o)
                f->options = *o;
        f->table = FOLDED_INIT;
        f->line = malloc(STACKFOLD_LINE_MAX);
        f->arena = malloc(ARENA_SIZE);
        f->frames = calloc(FRAMES_MAX, sizeof *f->frames);
        f->out = malloc(FOLDED_STACK_MAX + 1);
        f->name = malloc(FRAME_MAX);
        if (!f->line || !f->arena || !f->frames || !f->out || !f->name) {
                stackfold_free(f);
                return -ENOMEM;
        }
        *ret = f;
        return 0;
}

int stackfold_feed(StackFolder *f, const char *buf, size_t len) {
        if (!f || (!buf && len > 0))
                return -EINVAL;
        if (f->finished)
                return -ESTALE;
        if (f->error < 0)
                return f->error;

        while (len > 0) {
                const char *nl = memchr(buf, '\n', len);
                size_t seg = nl ? (size_t) (nl - buf) : len;

                if (f->skipping) {
                        if (!nl)
                                return 0;
                        f->skipping = false;
                } else if (!nl) {
                        if (f->line_len + seg > STACKFOLD_LINE_MAX) {
                                /* too long already: drop it as it comes */
                                f->stats.malformed++;
                                f->skipping = true;
                                f->line_len = 0;
                                return 0;
                        }
                        memcpy(f->line + f->line_len, buf, seg);
                        f->line_len += seg;
                        return 0;
                } else if (f->line_len + seg > STACKFOLD_LINE_MAX) {
                        f->stats.malformed++;
                        f->line_len = 0;
                } else if (f->line_len == 0)
                        f->error = line_process(f, buf, seg);
                else {
                        memcpy(f->line + f->line_len, buf, seg);
                        f->error = line_process(f, f->line, f->line_len + seg);
                        f->line_len = 0;
                }
                if (f->error < 0)
                        return f->error;
                buf += seg + 1;
                len -= seg + 1;
        }
        return 0;
}

int stackfold_finish(StackFolder *f, Folded *ret, StackFoldStats *ret_stats) {
        int r;

        if (!f || !ret)
                return -EINVAL;
        if (f->finished)
                return -ESTALE;
        if (f->error < 0)
                return f->error;

        if (f->line_len > 0 && !f->skipping) {
                r = line_process(f, f->line, f->line_len);
                if (r < 0)
                        return (f->error = r);
        }
        f->line_len = 0;
        f->skipping = false;
        r = sample_flush(f);
        if (r < 0)
                return (f->error = r);

        folded_sort(&f->table);
        *ret = f->table;
        f->table = FOLDED_INIT;
        if (ret_stats)
                *ret_stats = f->stats;
        f->finished = true;
        return 0;
}

StackFolder *stackfold_free(StackFolder *f) {
        if (!f)
                return NULL;
        folded_done(&f->table);
        free(f->line);
        free(f->arena);
        free(f->frames);
        free(f->out);
        free(f->name);
        free(f);
        return NULL;
}
