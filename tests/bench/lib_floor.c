/* lib_floor: what the mandated libraries alone cost in memory. It links
 * exactly what monkeyd links (libsystemd, json-c, libinih, hiredis, libcurl,
 * expat, libm: the agent_deps of the top meson.build), calls into each so
 * --as-needed keeps them mapped, initialises them the way monkeyd does, then
 * idles in an sd_event loop that wakes once a second. Its VmHWM and RssAnon
 * are the floor monkeyd cannot go below without dropping a library.
 *
 *   lib_floor [--seconds S] [--link-only]
 *
 * --seconds defaults to 30. --link-only maps the libraries but skips their
 * initialisation (only the sd_event loop runs): the difference to a full
 * run is what initialising them costs, the rest is what mapping and
 * relocating them costs (their .data/.bss/GOT pages are anonymous memory).
 *
 * What is initialised, mirroring agent/:
 *   libcurl   curl_global_init(CURL_GLOBAL_DEFAULT), one multi handle with
 *             socket/timer callbacks set (http.c http_new), one easy handle
 *             with a URL set (http.c, per call; kept here for the whole run)
 *   hiredis   redisConnectNonBlock(127.0.0.1, 1) (pool.c uses the async API
 *             on top of the same context; port 1 refuses, nothing is sent)
 *   json-c    an object built, serialised, parsed back, freed
 *   libinih   ini_parse_string on a two-line config (config.c parses a stream)
 *   expat     a parser created, fed a tiny document, freed (ec2.c)
 *   libsystemd sd_event_new, SIGTERM/SIGINT as event sources, one 1 s timer
 *   libm      round() (agent.c)
 *
 * Ends with one JSON line on stdout with its own VmHWM/VmRSS/RssAnon (kB). */
#include <curl/curl.h>
#include <errno.h>
#include <expat.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <ini.h>
#include <json-c/json.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#define SECONDS_MAX 3600UL
#define USEC_PER_SEC 1000000ULL

typedef struct Floor {
        unsigned long ticks, seconds;
} Floor;

static int curl_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
        return 0;
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp) {
        return 0;
}

static int ini_cb(void *user, const char *section, const char *name, const char *value) {
        (*(unsigned *) user)++;
        return 1;
}

static void xml_start(void *user, const XML_Char *name, const XML_Char **attrs) {
        (*(unsigned *) user)++;
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Floor *f = userdata;
        int r;

        if (++f->ticks >= f->seconds)
                return sd_event_exit(sd_event_source_get_event(s), 0);
        r = sd_event_source_set_time(s, usec + USEC_PER_SEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return r;
}

static void self_memory(unsigned long *hwm, unsigned long *rss, unsigned long *anon) {
        char line[256];
        FILE *f = fopen("/proc/self/status", "re");

        *hwm = *rss = *anon = 0;
        if (!f)
                return;
        while (fgets(line, sizeof line, f)) {
                if (strncmp(line, "VmHWM:", 6) == 0)
                        *hwm = strtoul(line + 6, NULL, 10);
                else if (strncmp(line, "VmRSS:", 6) == 0)
                        *rss = strtoul(line + 6, NULL, 10);
                else if (strncmp(line, "RssAnon:", 8) == 0)
                        *anon = strtoul(line + 8, NULL, 10);
        }
        fclose(f);
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "seconds", required_argument, NULL, 's' },
                { "link-only", no_argument, NULL, 'l' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        Floor fl = { .seconds = 30 };
        sd_event *e = NULL;
        sd_event_source *timer = NULL, *sig_term = NULL, *sig_int = NULL;
        CURLM *multi = NULL;
        CURL *easy = NULL;
        redisContext *redis = NULL;
        XML_Parser xml = NULL;
        json_object *o = NULL, *back = NULL;
        unsigned ini_items = 0, xml_elems = 0;
        unsigned long hwm, rss, anon;
        volatile double half = 2.5;
        sigset_t mask;
        char *end = NULL;
        bool link_only = false;
        int c, r, ret = 1;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 's':
                        errno = 0;
                        fl.seconds = strtoul(optarg, &end, 10);
                        if (errno != 0 || !end || *end != '\0' || optarg[0] == '-' || fl.seconds == 0 ||
                            fl.seconds > SECONDS_MAX) {
                                fprintf(stderr, "lib_floor: bad --seconds '%s'\n", optarg);
                                return 2;
                        }
                        break;
                case 'l': link_only = true; break;
                case 'h': printf("Usage: lib_floor [--seconds S] [--link-only]\n"); return 0;
                default: return 2;
                }
        if (optind < argc) {
                fprintf(stderr, "Usage: lib_floor [--seconds S] [--link-only]\n");
                return 2;
        }
        if (link_only)
                goto loop;

        /* libcurl, as http_new() and http_call() set it up */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                fprintf(stderr, "lib_floor: curl_global_init failed\n");
                return 1;
        }
        multi = curl_multi_init();
        easy = curl_easy_init();
        if (!multi || !easy) {
                fprintf(stderr, "lib_floor: cannot create curl handles\n");
                goto fail;
        }
        curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
        curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
        curl_easy_setopt(easy, CURLOPT_URL, "http://127.0.0.1:1/");
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);

        /* hiredis: a non-blocking connect that 127.0.0.1:1 refuses */
        redis = redisConnectNonBlock("127.0.0.1", 1);
        if (!redis) {
                fprintf(stderr, "lib_floor: cannot allocate a redis context\n");
                goto fail;
        }

        /* json-c */
        o = json_object_new_object();
        json_object_object_add(o, "state", json_object_new_string("SERVING"));
        json_object_object_add(o, "busy", json_object_new_double(round(half)));
        back = json_tokener_parse(json_object_to_json_string(o));
        if (!back) {
                fprintf(stderr, "lib_floor: json-c round trip failed\n");
                goto fail;
        }

        /* libinih */
        if (ini_parse_string("[cpu]\nthreshold = 90\n", ini_cb, &ini_items) != 0 || ini_items != 1) {
                fprintf(stderr, "lib_floor: inih parse failed\n");
                goto fail;
        }

        /* expat */
        xml = XML_ParserCreate(NULL);
        if (!xml) {
                fprintf(stderr, "lib_floor: cannot create an XML parser\n");
                goto fail;
        }
        XML_SetUserData(xml, &xml_elems);
        XML_SetElementHandler(xml, xml_start, NULL);
        if (XML_Parse(xml, "<a><b/></a>", 11, 1) != XML_STATUS_OK || xml_elems != 2) {
                fprintf(stderr, "lib_floor: expat parse failed\n");
                goto fail;
        }
        XML_ParserFree(xml);
        xml = NULL;

loop:
        /* libsystemd: the loop monkeyd runs in */
        r = sd_event_new(&e);
        if (r < 0) {
                fprintf(stderr, "lib_floor: sd_event_new: %s\n", strerror(-r));
                goto fail;
        }
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
                fprintf(stderr, "lib_floor: sigprocmask: %s\n", strerror(errno));
                goto fail;
        }
        r = sd_event_add_signal(e, &sig_term, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(e, &sig_int, SIGINT, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_time_relative(e, &timer, CLOCK_BOOTTIME, USEC_PER_SEC, 0, on_tick, &fl);
        if (r >= 0)
                r = sd_event_loop(e);
        if (r < 0) {
                fprintf(stderr, "lib_floor: event loop: %s\n", strerror(-r));
                goto fail;
        }

        self_memory(&hwm, &rss, &anon);
        printf("{\"ticks\": %lu, \"link_only\": %s, \"vmhwm_kb\": %lu, \"vmrss_kb\": %lu, \"rssanon_kb\": %lu}\n",
               fl.ticks, link_only ? "true" : "false", hwm, rss, anon);
        ret = 0;
fail:
        sd_event_source_disable_unref(timer);
        sd_event_source_disable_unref(sig_term);
        sd_event_source_disable_unref(sig_int);
        sd_event_unref(e);
        if (xml)
                XML_ParserFree(xml);
        json_object_put(back);
        json_object_put(o);
        if (redis)
                redisFree(redis);
        if (easy)
                curl_easy_cleanup(easy);
        if (multi)
                curl_multi_cleanup(multi);
        if (!link_only)
                curl_global_cleanup();
        return ret;
}
