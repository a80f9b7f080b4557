/* monkeyd: argument handling and wiring only. */
#include <getopt.h>
#include <sys/prctl.h>

#include "config.h"
#include "log.h"
#include "monkeyd.h"
#include "profile.h"

static void help(void) {
        printf("Usage: monkeyd --config FILE\n"
               "       monkeyd --check-config FILE\n"
               "\n"
               "Host watchdog: leaves the pool when the CPU stays overloaded, remediates,\n"
               "checks the service after the boot and rejoins.\n"
               "\n"
               "  -c, --config FILE        run with this config (foreground; systemd supervises)\n"
               "      --check-config FILE  validate FILE; exit 0, or 2 with FILE:LINE: message\n"
               "      --version            print the version\n"
               "  -h, --help               this help\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", required_argument, NULL, 'C' },
                { "version", no_argument, NULL, 'V' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *config = NULL, *check = NULL;
        int c;

        /* Secrets (the Slack token, AWS keys, IMDS role credentials, the
         * Redis password, an inline secret in the config text) live in this
         * process's memory from the config load on: no core dump may carry
         * them, and no process of the same uid may ptrace or read
         * /proc/PID/mem or environ. Set before anything is read, so there
         * is no window. monkeyctl holds no secret and stays dumpable. */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
                fprintf(stderr, "monkeyd: cannot make the process non-dumpable: %m\n");
                return 1;
        }

        /* Not in --help: the agent starts it for an incident's profile. */
        if (argc > 1 && streq(argv[1], "--profile-worker")) {
                /* nothing of the agent's (sockets, the Redis link) goes on into perf */
                (void) close_range(3, ~0U, 0);
                return profile_worker_main(argc - 1, argv + 1);
        }

        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0)
                switch (c) {
                case 'c': config = optarg; break;
                case 'C': check = optarg; break;
                case 'V': printf("monkeyd %s\n", MONKEY_VERSION); return 0;
                case 'h': help(); return 0;
                default: return 2;
                }
        if (optind < argc) {
                fprintf(stderr, "monkeyd: unexpected argument '%s'\n", argv[optind]);
                return 2;
        }

        if (check) {
                _cleanup_(config_freep) Config *cfg = NULL;
                _cleanup_(freep) char *err = NULL;
                if (config_load(check, &cfg, &err) < 0) {
                        fprintf(stderr, "%s\n", err ? err : "invalid config");
                        return 2;
                }
                printf("%s: ok\n", check);
                return 0;
        }
        if (!config) {
                fprintf(stderr, "monkeyd: --config FILE is required (see --help)\n");
                return 2;
        }

        log_setup(LOG_TARGET_AUTO);

        _cleanup_(agent_freep) Agent *a = NULL;
        _cleanup_(freep) char *err = NULL;
        int r = agent_new(config, &a, &err);
        if (r < 0) {
                if (err) {
                        log_error("%s", err);
                        return 2; /* bad config: restarting will not help */
                }
                return 1;
        }
        r = agent_run(a);
        return r < 0 ? 1 : 0;
}
