/* A set of HTTP status codes as [checks] expect_status writes it: "200",
 * "200-299,301". The config parses it and the checks ask it; neither owns
 * the grammar, so it lives here. Pure: no I/O. */
#pragma once

#include "macro.h"

typedef struct StatusRange {
        unsigned lo, hi;
} StatusRange;

#define STATUS_SET_MAX 16
typedef struct StatusSet {
        StatusRange ranges[STATUS_SET_MAX];
        size_t n;
} StatusSet;

/* Codes and ranges are 100-599 (-ERANGE), at most STATUS_SET_MAX of them
 * (-E2BIG), anything else is -EINVAL. ret is only written on success. */
int status_set_parse(const char *s, StatusSet *ret);
bool status_set_contains(const StatusSet *s, unsigned code);
