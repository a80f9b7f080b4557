#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "suggest.h"

/* Suggest a near word only when the typo is small compared to the word. */
#define SUGGEST_DISTANCE_MAX 3

size_t suggest_distance(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b), result;
        _cleanup_(freep) size_t *row = NULL;

        row = malloc((lb + 1) * sizeof(size_t));
        if (!row)
                return SIZE_MAX;
        for (size_t j = 0; j <= lb; j++)
                row[j] = j;
        for (size_t i = 1; i <= la; i++) {
                size_t diag = row[0];
                row[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t up = row[j];
                        size_t cost = tolower((unsigned char) a[i - 1]) == tolower((unsigned char) b[j - 1]) ? 0 : 1;
                        row[j] = MIN(MIN(row[j] + 1, row[j - 1] + 1), diag + cost);
                        diag = up;
                }
        }
        result = row[lb];
        return result;
}

const char *suggest_nearest(const char *word, const char *const *candidates, size_t n) {
        const char *best = NULL;
        size_t best_d = SIZE_MAX;

        for (size_t i = 0; i < n; i++) {
                size_t d = suggest_distance(word, candidates[i]);
                if (d < best_d) {
                        best_d = d;
                        best = candidates[i];
                }
        }
        if (best_d > SUGGEST_DISTANCE_MAX || best_d >= strlen(word))
                return NULL;
        return best;
}
