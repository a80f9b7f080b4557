/* The folded-profile table: see folded.h. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>

#include "folded.h"
#include "error.h"

static const char *const frame_kind_table[_FRAME_KIND_MAX] = {
        [FRAME_USER] = "user",       [FRAME_KERNEL] = "kernel",   [FRAME_JIT] = "jit",
        [FRAME_INLINED] = "inlined", [FRAME_UNKNOWN] = "unknown",
};

const char *frame_kind_to_string(FrameKind k) {
        return k >= 0 && k < _FRAME_KIND_MAX ? frame_kind_table[k] : NULL;
}

/* FNV-1a: stacks share long prefixes, so every byte must count. */
static uint64_t stack_hash(const char *s, size_t len) {
        uint64_t h = UINT64_C(14695981039346656037);

        for (size_t i = 0; i < len; i++) {
                h ^= (unsigned char) s[i];
                h *= UINT64_C(1099511628211);
        }
        return h;
}

#define SLOT_EMPTY SIZE_MAX

/* Find the index slot of `stack`: the slot holding it, or the empty slot
 * where it goes. The table is never more than half full. */
static size_t index_slot(const Folded *f, const char *stack, size_t len) {
        size_t mask = f->index_size - 1, i = (size_t) stack_hash(stack, len) & mask;

        for (;;) {
                size_t k = f->index[i];
                if (k == SLOT_EMPTY)
                        return i;
                if (strlen(f->stacks[k].stack) == len && memcmp(f->stacks[k].stack, stack, len) == 0)
                        return i;
                i = (i + 1) & mask;
        }
}

static int index_rebuild(Folded *f, size_t size) {
        size_t *idx = malloc(size * sizeof *idx);

        if (!idx)
                return -ENOMEM;
        for (size_t i = 0; i < size; i++)
                idx[i] = SLOT_EMPTY;
        free(f->index);
        f->index = idx;
        f->index_size = size;
        for (size_t k = 0; k < f->n; k++)
                f->index[index_slot(f, f->stacks[k].stack, strlen(f->stacks[k].stack))] = k;
        return 0;
}

int folded_add(Folded *f, const char *stack, size_t len, uint64_t count) {
        size_t slot;
        int r;

        if (len == 0 || len > FOLDED_STACK_MAX || memchr(stack, '\0', len) || memchr(stack, '\n', len))
                return -EINVAL;
        if (f->total > UINT64_MAX - count)
                return -EOVERFLOW;
        if (!f->index || (f->n + 1) * 2 > f->index_size) {
                size_t size = f->index_size ? f->index_size * 2 : 64;
                if (size < f->index_size || size > SIZE_MAX / sizeof(size_t))
                        return -ENOMEM;
                r = index_rebuild(f, size);
                if (r < 0)
                        return r;
        }
        slot = index_slot(f, stack, len);
        if (f->index[slot] != SLOT_EMPTY) {
                f->stacks[f->index[slot]].count += count; /* cannot wrap: bounded by total */
                f->total += count;
                return 0;
        }
        if (f->n == f->allocated) {
                size_t na = f->allocated ? f->allocated * 2 : 32;
                FoldedStack *ns;
                if (na > SIZE_MAX / sizeof *ns)
                        return -ENOMEM;
                ns = realloc(f->stacks, na * sizeof *ns);
                if (!ns)
                        return -ENOMEM;
                f->stacks = ns;
                f->allocated = na;
        }
        f->stacks[f->n].stack = strndup(stack, len);
        if (!f->stacks[f->n].stack)
                return -ENOMEM;
        f->stacks[f->n].count = count;
        f->index[slot] = f->n++;
        f->total += count;
        return 0;
}

static int stack_cmp(const void *x, const void *y) {
        return strcmp(((const FoldedStack *) x)->stack, ((const FoldedStack *) y)->stack);
}

void folded_sort(Folded *f) {
        if (f->n < 2)
                return;
        qsort(f->stacks, f->n, sizeof *f->stacks, stack_cmp);
        /* The index holds positions: rebuild it in place (same size, so
         * this cannot fail for want of memory). */
        for (size_t i = 0; i < f->index_size; i++)
                f->index[i] = SLOT_EMPTY;
        for (size_t k = 0; k < f->n; k++)
                f->index[index_slot(f, f->stacks[k].stack, strlen(f->stacks[k].stack))] = k;
}

int folded_parse(const char *buf, size_t len, Folded *ret, char **ret_error) {
        _cleanup_(folded_done) Folded f = FOLDED_INIT;
        size_t line = 0;
        const char *p = buf, *end = buf + len;
        int r;

        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t) (end - p)), *e = eol ? eol : end, *sp;
                uint64_t count = 0;

                line++;
                if (e > p && e[-1] == '\r')
                        e--;
                if (e == p) {
                        p = eol ? eol + 1 : end;
                        continue;
                }
                if (memchr(p, '\0', (size_t) (e - p)))
                        return error_set(ret_error, -EBADMSG, "line %zu: NUL byte", line);
                sp = NULL;
                for (const char *q = e; q > p; q--)
                        if (q[-1] == ' ') {
                                sp = q - 1;
                                break;
                        }
                if (!sp || sp == p)
                        return error_set(ret_error, -EBADMSG, "line %zu: expected \"stack count\"", line);
                if (sp + 1 == e)
                        return error_set(ret_error, -EBADMSG, "line %zu: missing count after the stack", line);
                for (const char *q = sp + 1; q < e; q++) {
                        if (*q < '0' || *q > '9')
                                return error_set(ret_error, -EBADMSG, "line %zu: count is not a whole number", line);
                        if (count > (UINT64_MAX - (uint64_t) (*q - '0')) / 10)
                                return error_set(ret_error, -EBADMSG, "line %zu: count too large", line);
                        count = count * 10 + (uint64_t) (*q - '0');
                }
                if ((size_t) (sp - p) > FOLDED_STACK_MAX)
                        return error_set(ret_error, -EBADMSG, "line %zu: stack longer than 64 KiB", line);
                r = folded_add(&f, p, (size_t) (sp - p), count);
                if (r == -EOVERFLOW)
                        return error_set(ret_error, -EBADMSG, "line %zu: total samples too large", line);
                if (r < 0)
                        return r;
                p = eol ? eol + 1 : end;
        }
        *ret = f;
        f = FOLDED_INIT;
        return 0;
}

int folded_write(const Folded *f, FILE *out) {
        for (size_t k = 0; k < f->n; k++)
                if (fprintf(out, "%s %" PRIu64 "\n", f->stacks[k].stack, f->stacks[k].count) < 0)
                        return -EIO;
        return 0;
}

static int top_cmp(const void *x, const void *y) {
        const FoldedStack *a = *(const FoldedStack *const *) x, *b = *(const FoldedStack *const *) y;

        if (a->count != b->count)
                return a->count > b->count ? -1 : 1;
        return strcmp(a->stack, b->stack);
}

int folded_top(const Folded *f, size_t n, const FoldedStack **ret, size_t *ret_n) {
        _cleanup_(freep) const FoldedStack **all = NULL;
        size_t k;

        if (f->n == 0 || n == 0) {
                *ret_n = 0;
                return 0;
        }
        all = malloc(f->n * sizeof *all);
        if (!all)
                return -ENOMEM;
        for (k = 0; k < f->n; k++)
                all[k] = &f->stacks[k];
        qsort(all, f->n, sizeof *all, top_cmp);
        for (k = 0; k < n && k < f->n; k++)
                ret[k] = all[k];
        *ret_n = k;
        return 0;
}

static bool has_suffix(const char *s, size_t len, const char *suffix, size_t *ret_stem) {
        size_t l = strlen(suffix);

        if (len < l || memcmp(s + len - l, suffix, l) != 0)
                return false;
        *ret_stem = len - l;
        return true;
}

FrameKind frame_kind(const char *frame, size_t len, size_t *ret_name_len) {
        size_t stem = len;
        FrameKind k = FRAME_USER;

        if (has_suffix(frame, len, "_[k]", &stem))
                k = FRAME_KERNEL;
        else if (has_suffix(frame, len, "_[j]", &stem))
                k = FRAME_JIT;
        else if (has_suffix(frame, len, "_[i]", &stem))
                k = FRAME_INLINED;
        else if (len == 0 || (frame[0] == '[' && frame[len - 1] == ']'))
                /* "[unknown]", or only the object it ran in: "[libc.so.6]" */
                k = FRAME_UNKNOWN;
        if (ret_name_len)
                *ret_name_len = stem;
        return k;
}

void folded_done(Folded *f) {
        for (size_t k = 0; k < f->n; k++)
                free(f->stacks[k].stack);
        free(f->stacks);
        free(f->index);
        *f = FOLDED_INIT;
}
