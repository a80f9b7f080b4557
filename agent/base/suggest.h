/* "Did you mean": the nearest of a few known words to one that was
 * mistyped (the config's unknown sections and keys). Pure: no I/O. */
#pragma once

#include "macro.h"

/* Levenshtein distance, case not counted; SIZE_MAX when out of memory. */
size_t suggest_distance(const char *a, const char *b);

/* The nearest of `n` candidates when the typo is small (at most 3 edits,
 * and fewer than the word's length), else NULL. */
const char *suggest_nearest(const char *word, const char *const *candidates, size_t n);
