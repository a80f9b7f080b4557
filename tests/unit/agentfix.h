/* A monkeyd on a temp dir for the tests that run a whole Agent in-process
 * (test_agent.c, test_remedy.c): its boot id, a /proc/stat whose counters
 * never move (every sample is skipped: the tests post the events), and a
 * config without pool or Slack, with the ladder given. */
#pragma once

#include "testutil.h"

#define AGENTFIX_BOOT_ID "6f1c2e4a-8b3d-4c5e-9f70-1a2b3c4d5e6f"

/* Returns the config file's path (malloc'ed); state_dir is dir/state. */
static inline char *agentfix_write(const char *dir, const char *ladder) {
        char *text = NULL, *path;

        free(write_file(dir, "boot_id", AGENTFIX_BOOT_ID "\n", 0644));
        free(write_file(dir, "stat", "cpu  100 0 100 1000 0 0 0 0 0 0\ncpu0 100 0 100 1000 0 0 0 0 0 0\n", 0644));
        assert_true(asprintf(&text,
                             "[agent]\nhost = test-1\nstate_dir = %s/state\ncontrol_socket = %s/control.sock\n"
                             "proc_stat = %s/stat\nboot_id = %s/boot_id\n\n"
                             "[cpu]\nthreshold = 90\nclear_below = 50\nwindow = 2s\ninterval = 1s\n\n"
                             "[remedy]\nladder = %s\nbudget = none\nmax_per_window = 2\nwindow = 1h\n",
                             dir, dir, dir, dir, ladder) >= 0);
        path = write_file(dir, "monkeyd.conf", text, 0644);
        free(text);
        return path;
}
