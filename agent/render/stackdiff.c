#include <inttypes.h>

#include "stackdiff.h"
#include "utf8.h"

/* The summary keeps a stack line readable: the root frame (cut to
 * SHOWN_ROOT bytes) and as many leaf-side frames as fit in SHOWN_MAX. */
#define SHOWN_MAX 160
#define SHOWN_ROOT 48
#define ELLIPSIS "\xe2\x80\xa6" /* "…" */

struct StackDiff {
        uint64_t total_a, total_b;
        size_t n_stacks_a, n_stacks_b;
        StackDiffEntry *frames, *stacks; /* most changed first */
        size_t n_frames, n_stacks;
        size_t *frames_by_name, *stacks_by_name; /* indices, sorted by name, for lookups */
};

/* While building: the entries of one kind and an open-addressing index of
 * them by text. `seen` makes a recursive frame count once per stack. */
typedef struct Builder {
        StackDiffEntry *entries;
        uint64_t *seen;
        size_t n, allocated;
        size_t *slots; /* entry index + 1; 0 is free */
        size_t n_slots; /* a power of two, at most half full */
} Builder;

static void builder_done(Builder *b) {
        for (size_t i = 0; i < b->n; i++)
                free(b->entries[i].name);
        free(b->entries);
        free(b->seen);
        free(b->slots);
        *b = (Builder) {};
}

static uint64_t text_hash(const char *s, size_t len) {
        uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

        for (size_t i = 0; i < len; i++) {
                h ^= (unsigned char) s[i];
                h *= 0x100000001b3ULL;
        }
        return h;
}

static int builder_rehash(Builder *b, size_t n_slots) {
        size_t *slots = calloc(n_slots, sizeof(size_t));

        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < b->n; i++) {
                size_t s = (size_t) text_hash(b->entries[i].name, b->entries[i].len) & (n_slots - 1);

                while (slots[s] != 0)
                        s = (s + 1) & (n_slots - 1);
                slots[s] = i + 1;
        }
        free(b->slots);
        b->slots = slots;
        b->n_slots = n_slots;
        return 0;
}

/* The entry for text[0..len), added with zero counts when new. */
static int builder_get(Builder *b, const char *text, size_t len, size_t *ret) {
        size_t s;
        char *copy;
        int r;

        if ((b->n + 1) * 2 > b->n_slots) {
                if (b->n_slots > SIZE_MAX / 4)
                        return -ENOMEM;
                r = builder_rehash(b, b->n_slots ? b->n_slots * 2 : 64);
                if (r < 0)
                        return r;
        }

        s = (size_t) text_hash(text, len) & (b->n_slots - 1);
        for (; b->slots[s] != 0; s = (s + 1) & (b->n_slots - 1)) {
                const StackDiffEntry *e = &b->entries[b->slots[s] - 1];

                if (e->len == len && memcmp(e->name, text, len) == 0) {
                        *ret = b->slots[s] - 1;
                        return 0;
                }
        }

        if (b->n == b->allocated) {
                size_t a = b->allocated ? b->allocated * 2 : 64;
                StackDiffEntry *e;
                uint64_t *seen;

                if (a > SIZE_MAX / sizeof(StackDiffEntry))
                        return -ENOMEM;
                e = reallocarray(b->entries, a, sizeof(StackDiffEntry));
                if (!e)
                        return -ENOMEM;
                b->entries = e;
                seen = reallocarray(b->seen, a, sizeof(uint64_t));
                if (!seen)
                        return -ENOMEM;
                b->seen = seen;
                b->allocated = a;
        }

        copy = strndup(text, len);
        if (!copy)
                return -ENOMEM;
        b->entries[b->n] = (StackDiffEntry) {
                .name = copy,
                .len = len,
                .kind = frame_kind(text, len, NULL),
        };
        b->seen[b->n] = 0;
        b->slots[s] = b->n + 1;
        *ret = b->n++;
        return 0;
}

/* The counts go into .incl.count_a/.count_b and .self.count_a/.count_b
 * while building; the shares are filled in at the end. */
static uint64_t *incl_count(StackDiffEntry *e, bool side_b) {
        return side_b ? &e->incl.count_b : &e->incl.count_a;
}

static uint64_t *self_count(StackDiffEntry *e, bool side_b) {
        return side_b ? &e->self.count_b : &e->self.count_a;
}

static int add_profile(const Folded *f, bool side_b, Builder *frames, Builder *stacks, uint64_t *serial) {
        for (size_t i = 0; i < f->n; i++) {
                const char *s = f->stacks[i].stack;
                uint64_t count = f->stacks[i].count;
                size_t len = strlen(s), k, leaf = SIZE_MAX;
                int r;

                r = builder_get(stacks, s, len, &k);
                if (r < 0)
                        return r;
                *incl_count(&stacks->entries[k], side_b) += count;

                /* A fresh stamp per stack: a frame met twice in it (recursion) counts once. */
                (*serial)++;
                for (const char *p = s, *end = s + len;;) {
                        const char *semi = memchr(p, ';', (size_t) (end - p));
                        const char *stop = semi ?: end;

                        r = builder_get(frames, p, (size_t) (stop - p), &k);
                        if (r < 0)
                                return r;
                        if (frames->seen[k] != *serial) {
                                frames->seen[k] = *serial;
                                *incl_count(&frames->entries[k], side_b) += count;
                        }
                        leaf = k;
                        if (!semi)
                                break;
                        p = semi + 1;
                }
                *self_count(&frames->entries[leaf], side_b) += count;
        }
        return 0;
}

static double share_of(uint64_t count, uint64_t total) {
        if (total == 0)
                return 0.0;
        /* The ratio first: equal ratios of exact integers round to the same
         * double, so a stack with the same share in both is exactly unchanged. */
        return 100.0 * ((double) count / (double) total);
}

void stackdiff_share(uint64_t count_a, uint64_t total_a, uint64_t count_b, uint64_t total_b, StackDiffShare *ret) {
        StackDiffShare s = {
                .count_a = count_a,
                .count_b = count_b,
                .share_a = share_of(count_a, total_a),
                .share_b = share_of(count_b, total_b),
        };

        s.delta = s.share_b - s.share_a;
        if (count_a == 0 && count_b == 0)
                s.relative = 0.0;
        else if (count_a == 0) {
                s.relative = INFINITY;
                s.is_new = true;
        } else if (count_b == 0) {
                s.relative = -100.0;
                s.vanished = true;
        } else
                s.relative = 100.0 * s.delta / s.share_a;
        *ret = s;
}

void stackdiff_format_relative(const StackDiffShare *s, char *buf, size_t size) {
        if (s->is_new)
                snprintf(buf, size, "new");
        else if (s->vanished)
                snprintf(buf, size, "-100%%");
        else if (fabs(s->relative) < 0.05)
                snprintf(buf, size, "0%%");
        else if (fabs(s->relative) < 10.0)
                snprintf(buf, size, "%+.1f%%", s->relative);
        else
                snprintf(buf, size, "%+.0f%%", s->relative);
}

static int entry_cmp_change(const void *x, const void *y) {
        const StackDiffEntry *a = x, *b = y;
        double da = fabs(a->incl.delta), db = fabs(b->incl.delta);
        int c;

        if (da != db)
                return da > db ? -1 : 1;
        c = memcmp(a->name, b->name, MIN(a->len, b->len));
        if (c != 0)
                return c;
        return a->len < b->len ? -1 : a->len > b->len;
}

static int index_cmp_name(const void *x, const void *y, void *entries) {
        const StackDiffEntry *e = entries;

        return strcmp(e[*(const size_t *) x].name, e[*(const size_t *) y].name);
}

/* Shares, order, the by-name index; hands the entries over to ret_*. */
static int builder_finish(Builder *b, uint64_t total_a, uint64_t total_b, bool frames, StackDiffEntry **ret_entries,
                          size_t **ret_by_name) {
        size_t *by_name;

        for (size_t i = 0; i < b->n; i++) {
                StackDiffEntry *e = &b->entries[i];

                stackdiff_share(e->incl.count_a, total_a, e->incl.count_b, total_b, &e->incl);
                if (frames)
                        stackdiff_share(e->self.count_a, total_a, e->self.count_b, total_b, &e->self);
                else
                        e->self = e->incl;
        }
        if (b->n > 0)
                qsort(b->entries, b->n, sizeof(StackDiffEntry), entry_cmp_change);

        by_name = malloc(MAX(b->n, (size_t) 1) * sizeof(size_t));
        if (!by_name)
                return -ENOMEM;
        for (size_t i = 0; i < b->n; i++)
                by_name[i] = i;
        if (b->n > 0)
                qsort_r(by_name, b->n, sizeof(size_t), index_cmp_name, b->entries);

        *ret_entries = TAKE_PTR(b->entries);
        *ret_by_name = by_name;
        b->n = b->allocated = 0;
        return 0;
}

int stackdiff_compute(const Folded *a, const Folded *b, StackDiff **ret) {
        Builder frames = {}, stacks = {};
        StackDiff *d = NULL;
        uint64_t serial = 0;
        size_t n_frames, n_stacks;
        int r;

        if (!a || !b || !ret)
                return -EINVAL;

        r = add_profile(a, false, &frames, &stacks, &serial);
        if (r < 0)
                goto fail;
        r = add_profile(b, true, &frames, &stacks, &serial);
        if (r < 0)
                goto fail;

        d = calloc(1, sizeof(StackDiff));
        if (!d) {
                r = -ENOMEM;
                goto fail;
        }
        d->total_a = a->total;
        d->total_b = b->total;
        d->n_stacks_a = a->n;
        d->n_stacks_b = b->n;

        n_frames = frames.n;
        r = builder_finish(&frames, a->total, b->total, true, &d->frames, &d->frames_by_name);
        if (r < 0)
                goto fail;
        d->n_frames = n_frames;

        n_stacks = stacks.n;
        r = builder_finish(&stacks, a->total, b->total, false, &d->stacks, &d->stacks_by_name);
        if (r < 0)
                goto fail;
        d->n_stacks = n_stacks;

        builder_done(&frames);
        builder_done(&stacks);
        *ret = d;
        return 0;

fail:
        builder_done(&frames);
        builder_done(&stacks);
        stackdiff_free(d);
        return r;
}

static void entries_free(StackDiffEntry *e, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(e[i].name);
        free(e);
}

StackDiff *stackdiff_free(StackDiff *d) {
        if (!d)
                return NULL;
        entries_free(d->frames, d->n_frames);
        entries_free(d->stacks, d->n_stacks);
        free(d->frames_by_name);
        free(d->stacks_by_name);
        free(d);
        return NULL;
}

uint64_t stackdiff_total_a(const StackDiff *d) {
        return d->total_a;
}

uint64_t stackdiff_total_b(const StackDiff *d) {
        return d->total_b;
}

const StackDiffEntry *stackdiff_frames(const StackDiff *d, size_t *ret_n) {
        *ret_n = d->n_frames;
        return d->frames;
}

const StackDiffEntry *stackdiff_stacks(const StackDiff *d, size_t *ret_n) {
        *ret_n = d->n_stacks;
        return d->stacks;
}

static const StackDiffEntry *find(const StackDiffEntry *entries, const size_t *by_name, size_t n, const char *name) {
        size_t lo = 0, hi = n;

        if (!name)
                return NULL;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(entries[by_name[mid]].name, name);

                if (c == 0)
                        return &entries[by_name[mid]];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

const StackDiffEntry *stackdiff_find_frame(const StackDiff *d, const char *name) {
        return find(d->frames, d->frames_by_name, d->n_frames, name);
}

const StackDiffEntry *stackdiff_find_stack(const StackDiff *d, const char *stack) {
        return find(d->stacks, d->stacks_by_name, d->n_stacks, stack);
}


/* s escaped for a terminal into a new string: printable ASCII and valid
 * UTF-8 as they are, any other byte as \xNN. */
static char *escape_text(const char *s, size_t len) {
        static const char hex[] = "0123456789abcdef";
        const unsigned char *u = (const unsigned char *) s;
        char *out = malloc(len * 4 + 1);
        size_t k = 0;

        if (!out)
                return NULL;
        for (size_t i = 0; i < len;) {
                size_t n;

                if (u[i] >= 0x20 && u[i] < 0x7f) {
                        out[k++] = (char) u[i++];
                } else if (u[i] >= 0x80 && (n = utf8_printable_len(u + i, len - i)) > 0) {
                        memcpy(out + k, u + i, n);
                        k += n;
                        i += n;
                } else {
                        out[k++] = '\\';
                        out[k++] = 'x';
                        out[k++] = hex[u[i] >> 4];
                        out[k++] = hex[u[i] & 0xf];
                        i++;
                }
        }
        out[k] = '\0';
        return out;
}

/* Back from `at` to the start of a UTF-8 character of the valid string s. */
static size_t char_start(const char *s, size_t at) {
        while (at > 0 && ((unsigned char) s[at] & 0xc0) == 0x80)
                at--;
        return at;
}

/* Writes an escaped stack, its middle left out when it is long: the root
 * says which program, the leaf end where the time went. */
static int write_stack(const char *stack, size_t len, FILE *out) {
        _cleanup_(freep) char *e = escape_text(stack, len);
        size_t n, head, tail_from, room;
        const char *semi;
        bool root_cut;

        if (!e)
                return -ENOMEM;
        n = strlen(e);
        if (n <= SHOWN_MAX) {
                fputs(e, out);
                return 0;
        }

        semi = memchr(e, ';', n);
        head = semi ? (size_t) (semi - e) : n;
        root_cut = head > SHOWN_ROOT;
        if (root_cut)
                head = char_start(e, SHOWN_ROOT);
        room = SHOWN_MAX - head;

        /* The longest run of whole leaf-side frames that fits, else the
         * last `room` bytes on a character boundary. */
        tail_from = n - room;
        for (size_t i = tail_from; i < n; i++)
                if (e[i] == ';') {
                        tail_from = i;
                        break;
                }
        if (e[tail_from] != ';')
                tail_from = char_start(e, n - room);

        fwrite(e, 1, head, out);
        fputs(root_cut ? ELLIPSIS : ";" ELLIPSIS, out);
        fputs(e + tail_from, out);
        return 0;
}

static int write_row(const StackDiffEntry *e, bool with_self, bool is_stack, FILE *out) {
        char rel[32];

        stackdiff_format_relative(&e->incl, rel, sizeof(rel));
        fprintf(out, "%8.2f%% %8.2f%% %+10.2f %8s", e->incl.share_a, e->incl.share_b, e->incl.delta, rel);
        if (with_self)
                fprintf(out, " %+10.2f", e->self.delta);
        fputs("  ", out);
        if (is_stack) {
                int r = write_stack(e->name, e->len, out);
                if (r < 0)
                        return r;
        } else {
                _cleanup_(freep) char *name = escape_text(e->name, e->len);

                if (!name)
                        return -ENOMEM;
                fputs(name, out);
        }
        fputc('\n', out);
        return 0;
}

int stackdiff_summary(const StackDiff *d, size_t top, FILE *out) {
        size_t nf, ns;
        int r;

        if (!d || !out)
                return -EINVAL;
        nf = MIN(top, d->n_frames);
        ns = MIN(top, d->n_stacks);

        fprintf(out, "Profile A: %" PRIu64 " samples in %zu stacks; profile B: %" PRIu64 " samples in %zu stacks.\n",
                d->total_a, d->n_stacks_a, d->total_b, d->n_stacks_b);
        if (d->total_a == 0 && d->total_b == 0)
                fputs("Both profiles are empty: nothing to compare.\n", out);
        else {
                if (d->total_a == 0)
                        fputs("Profile A is empty: everything in B is new.\n", out);
                else if (d->total_b == 0)
                        fputs("Profile B is empty: everything in A vanished (-100%).\n", out);
                fputs("Shares are of each profile's own total; delta in percentage points (B - A).\n", out);

                fprintf(out, "\nFrames whose inclusive share changed most (%zu of %zu):\n", nf, d->n_frames);
                fprintf(out, "%9s %9s %10s %8s %10s  %s\n", "share A", "share B", "delta pts", "change", "self delta",
                        "frame");
                for (size_t i = 0; i < nf; i++) {
                        r = write_row(&d->frames[i], true, false, out);
                        if (r < 0)
                                return r;
                }

                fprintf(out, "\nStacks that changed most (%zu of %zu):\n", ns, d->n_stacks);
                fprintf(out, "%9s %9s %10s %8s  %s\n", "share A", "share B", "delta pts", "change", "stack");
                for (size_t i = 0; i < ns; i++) {
                        r = write_row(&d->stacks[i], false, true, out);
                        if (r < 0)
                                return r;
                }
        }

        if (fflush(out) != 0 || ferror(out))
                return -EIO;
        return 0;
}
