/* The nginx upstream file and its reload: see nginx.h. */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <systemd/sd-daemon.h>

#include "clock.h"
#include "fileio.h"
#include "log.h"
#include "nginx.h"
#include "retry.h"

#define NGINX_FILE_MAX (1024U * 1024U)

extern char **environ;

struct Nginx {
        const Options *opt;
        bool reload_pending; /* the file on disk is newer than what nginx loaded */
        bool force_reload;   /* SIGHUP */
        bool holding_empty;
};

int nginx_new(const Options *o, Nginx **ret) {
        Nginx *n = calloc(1, sizeof(Nginx));

        if (!n)
                return -ENOMEM;
        n->opt = o;
        *ret = n;
        return 0;
}

Nginx *nginx_free(Nginx *n) {
        free(n);
        return NULL;
}

void nginx_request_reload(Nginx *n) {
        n->force_reload = true;
}


/* /bin/sh -c CMD with stdin from /dev/null, waited for at most `timeout`,
 * then killed. Returns 0 on exit status 0. */
static int nginx_run_reload(const char *command, usec_t timeout, char **ret_error) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none;
        pid_t pid;
        int r, status;
        char *argv[] = { (char *) "/bin/sh", (char *) "-c", (char *) command, NULL };
        usec_t deadline = clock_now(CLOCK_MONOTONIC) + timeout;

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawnattr_init(&attr);
        /* We block signals for sd-event; the child must not inherit that. */
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
        r = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (r != 0) {
                if (asprintf(ret_error, "Cannot run the reload command: %s", strerror(r)) < 0)
                        *ret_error = NULL;
                return -r;
        }
        for (;;) {
                pid_t k = waitpid(pid, &status, WNOHANG);
                if (k == pid)
                        break;
                if (k < 0 && errno != EINTR) {
                        r = negative_errno();
                        if (asprintf(ret_error, "Cannot wait for the reload command: %s", strerror(-r)) < 0)
                                *ret_error = NULL;
                        return r;
                }
                if (clock_now(CLOCK_MONOTONIC) >= deadline) {
                        (void) kill(pid, SIGKILL);
                        (void) waitpid(pid, &status, 0);
                        if (asprintf(ret_error, "The reload command '%s' did not finish in time: killed", command) < 0)
                                *ret_error = NULL;
                        return -ETIMEDOUT;
                }
                (void) usleep(5000);
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                if (asprintf(ret_error, "The reload command '%s' failed (%s %d)", command,
                             WIFEXITED(status) ? "exit status" : "signal",
                             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status)) < 0)
                        *ret_error = NULL;
                return -EIO;
        }
        return 0;
}

int nginx_apply(Nginx *s, Endpoint **wantp, size_t *n_wantp, ProxysyncKeepFn keep, void *keep_data, usec_t *ret_due,
                char **ret_error) {
        const Options *o = s->opt;
        _cleanup_(freep) char *text = NULL, *old = NULL;
        _cleanup_(freep) Endpoint *routed = NULL;
        size_t n_routed = 0;
        int r;

        /* read_full_file() refuses more than its max; we refuse NGINX_FILE_MAX itself. */
        r = read_full_file(o->nginx_file, NGINX_FILE_MAX - 1, &old, NULL);
        if (r < 0 && r != -ENOENT) {
                if (asprintf(ret_error, "Cannot read %s: %s", o->nginx_file, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        if (old) {
                r = proxysync_nginx_servers(old, &routed, &n_routed);
                if (r < 0)
                        return r;
                r = keep(keep_data, routed, n_routed, wantp, n_wantp, ret_due, ret_error);
                if (r < 0)
                        return r;
        }
        const Endpoint *want = *wantp;
        size_t n_want = *n_wantp;

        if (n_want == 0 && !o->allow_empty && old && proxysync_nginx_has_servers(old)) {
                if (!s->holding_empty)
                        log_warning("Pool %s has no routable member: keeping %s as it is "
                                    "(--allow-empty applies an empty pool)", o->pool, o->nginx_file);
                s->holding_empty = true;
                return 0;
        }
        s->holding_empty = false;
        r = proxysync_render_nginx(o->pool, o->upstream, want, n_want, o->server_args, &text);
        if (r < 0)
                return r;
        if (!old || !streq(old, text)) {
                /* nginx (and a crash) sees the old file or the new one, never half */
                r = write_file_atomic_path(o->nginx_file, text, strlen(text), 0644, 0);
                if (r < 0) {
                        if (asprintf(ret_error, "Cannot write %s: %s", o->nginx_file, strerror(-r)) < 0)
                                *ret_error = NULL;
                        return r;
                }
                log_info("Wrote %s: %zu servers", o->nginx_file, n_want);
                s->reload_pending = true;
        }
        if (s->force_reload)
                s->reload_pending = true;
        if (s->reload_pending && o->nginx_reload) {
                r = nginx_run_reload(o->nginx_reload, o->reload_timeout, ret_error);
                if (r < 0)
                        return r;
                log_info("Reloaded nginx: %s", o->nginx_reload);
        }
        s->reload_pending = false;
        s->force_reload = false;
        (void) sd_notifyf(false, "STATUS=pool %s: %zu routable, %s up to date", o->pool, n_want, o->nginx_file);
        return 0;
}
