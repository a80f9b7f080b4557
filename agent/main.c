/* monkeyd: argument handling and wiring only. */
#include <getopt.h>

#include "agent.h"
#include "config.h"
#include "log.h"

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
