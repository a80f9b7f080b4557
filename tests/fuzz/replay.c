/* Runs a fuzz target's LLVMFuzzerTestOneInput() over files, without
 * libFuzzer: the committed corpora (crashes found once included) replay as
 * ordinary tests in every build, gcc and sanitizers alike.
 *
 *   replay_NAME [--prefixes] PATH...
 *
 * A PATH is a file or a directory (its regular files, in name order; not
 * recursive). Each input is copied into a buffer of exactly its size, so
 * ASan sees a read one byte past it. --prefixes also runs every prefix
 * of each input (cut reads and truncated files are what the agent meets
 * most; at most 4096 evenly spread cuts per file). Fails when no input
 * was found: an empty corpus proves nothing. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "fuzz.h"

#define REPLAY_FILE_MAX (4 * 1024 * 1024)
#define REPLAY_CUTS_MAX 4096

/* The first `cut` bytes, in a buffer of exactly that size (malloc(0)
 * may be NULL, and libFuzzer never passes NULL). */
static int run_cut(const char *buf, size_t cut) {
        uint8_t *exact = malloc(MAX(cut, (size_t) 1));

        if (!exact)
                return -ENOMEM;
        memcpy(exact, buf, cut);
        LLVMFuzzerTestOneInput(exact, cut);
        free(exact);
        return 0;
}

static int run_one(const char *path, bool prefixes) {
        _cleanup_(freep) char *buf = NULL;
        _cleanup_(closep) int fd = -1;
        size_t len = 0;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
                return -errno;
        }
        r = read_full_fd(fd, REPLAY_FILE_MAX, &buf, &len);
        if (r < 0) {
                fprintf(stderr, "replay: %s: %s\n", path, strerror(-r));
                return r;
        }
        if (prefixes) {
                size_t step = MAX(len / REPLAY_CUTS_MAX, (size_t) 1);

                for (size_t cut = 0; cut < len; cut += step) {
                        r = run_cut(buf, cut);
                        if (r < 0)
                                return r;
                }
        }
        return run_cut(buf, len);
}

static int compare_names(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int run_dir(const char *dir, bool prefixes, unsigned *n_run) {
        _cleanup_(strv_freep) char **names = NULL;
        size_t n = 0, alloc = 0;
        struct dirent *de;
        DIR *d;
        int r = 0;

        d = opendir(dir);
        if (!d) {
                fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
                return -errno;
        }
        while ((de = readdir(d))) {
                char **grown;

                if (de->d_name[0] == '.')
                        continue;
                if (n + 2 > alloc) {
                        alloc = MAX(alloc * 2, (size_t) 16);
                        grown = realloc(names, alloc * sizeof *names);
                        if (!grown) {
                                r = -ENOMEM;
                                break;
                        }
                        names = grown;
                }
                if (asprintf(&names[n], "%s/%s", dir, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                names[++n] = NULL;
        }
        closedir(d);
        if (r < 0)
                return r;
        if (n == 0)
                return 0;
        qsort(names, n, sizeof *names, compare_names);
        for (size_t i = 0; i < n; i++) {
                struct stat st;

                if (stat(names[i], &st) < 0 || !S_ISREG(st.st_mode))
                        continue;
                r = run_one(names[i], prefixes);
                if (r < 0)
                        return r;
                (*n_run)++;
        }
        return 0;
}

int main(int argc, char *argv[]) {
        bool prefixes = false;
        unsigned n_run = 0;
        int r;

        for (int i = 1; i < argc; i++) {
                struct stat st;

                if (streq(argv[i], "--prefixes")) {
                        prefixes = true;
                        continue;
                }
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
                        return EXIT_FAILURE;
                }
                if (S_ISDIR(st.st_mode))
                        r = run_dir(argv[i], prefixes, &n_run);
                else {
                        r = run_one(argv[i], prefixes);
                        n_run += r >= 0;
                }
                if (r < 0)
                        return EXIT_FAILURE;
        }
        if (n_run == 0) {
                fprintf(stderr, "replay: no inputs\n");
                return EXIT_FAILURE;
        }
        printf("replay: %u inputs%s, no crash\n", n_run, prefixes ? " and their prefixes" : "");
        return EXIT_SUCCESS;
}
