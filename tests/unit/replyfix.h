/* Hand-built hiredis replies for the tests of the reply decoders
 * (test_redisreply.c, test_pool.c): each built as hiredis would hand it
 * over, freed with rep_free(), which frees the elements too. Include after
 * cmocka.h. Header-only. */
#pragma once

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static inline redisReply *rep_str(const char *s) {
        redisReply *r = calloc(1, sizeof *r);
        assert_non_null(r);
        r->type = REDIS_REPLY_STRING;
        r->str = strdup(s);
        assert_non_null(r->str);
        r->len = strlen(s);
        return r;
}

static inline redisReply *rep_err(const char *s) {
        redisReply *r = rep_str(s);
        r->type = REDIS_REPLY_ERROR;
        return r;
}

static inline redisReply *rep_int(long long v) {
        redisReply *r = calloc(1, sizeof *r);
        assert_non_null(r);
        r->type = REDIS_REPLY_INTEGER;
        r->integer = v;
        return r;
}

static inline redisReply *rep_nil(void) {
        redisReply *r = calloc(1, sizeof *r);
        assert_non_null(r);
        r->type = REDIS_REPLY_NIL;
        return r;
}

/* NULL-terminated list of elements. */
static inline redisReply *rep_arr(redisReply *first, ...) {
        redisReply *r = calloc(1, sizeof *r), *e;
        va_list ap;

        assert_non_null(r);
        r->type = REDIS_REPLY_ARRAY;
        r->element = calloc(32, sizeof *r->element);
        assert_non_null(r->element);
        va_start(ap, first);
        for (e = first; e; e = va_arg(ap, redisReply *)) {
                assert_true(r->elements < 32);
                r->element[r->elements++] = e;
        }
        va_end(ap);
        return r;
}

static inline void rep_free(redisReply *r) {
        if (!r)
                return;
        for (size_t i = 0; i < r->elements; i++)
                rep_free(r->element[i]);
        free(r->element);
        free(r->str);
        free(r);
}
