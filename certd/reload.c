/* Telling the edge, after a real change only: HEARTH_RELOAD=edge to the supervisor, SIGHUP to
 * --reload-pidfile, --deploy-hook through /bin/sh (bounded, default signal handling). */
#include "certd/certd.h"

#include <errno.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shared/log.h"
#include "shared/pidfile.h"
#include "shared/sdnotify.h"

#define HOOK_TIMEOUT_MS 60000

extern char **environ;

static int signal_pidfile(const char *path)
{
    pid_t pid = pidfile_read(path);
    if (pid <= 0) {
        log_error("%s: no running process to reload", path);
        return -1;
    }
    if (kill(pid, SIGHUP) < 0) {
        log_error("SIGHUP to %ld: %s", (long)pid, strerror(errno));
        return -1;
    }
    log_info("sent SIGHUP to %ld (%s)", (long)pid, path);
    return 0;
}

static int wait_child(pid_t pid, const char *cmd)
{
    int64_t end = wait_now_ms() + HOOK_TIMEOUT_MS;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            return -1;
        if (wait_now_ms() > end || wait_stop_requested()) {
            log_error("deploy hook '%s' still running; killing it", cmd);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    log_error("deploy hook '%s' failed (status %d)", cmd, status);
    return -1;
}

static int run_hook(const char *cmd)
{
    posix_spawnattr_t attr;
    sigset_t empty, deflt;
    sigemptyset(&empty);
    sigemptyset(&deflt);
    sigaddset(&deflt, SIGTERM);
    sigaddset(&deflt, SIGINT);
    sigaddset(&deflt, SIGHUP);
    sigaddset(&deflt, SIGPIPE);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &deflt);
    char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    pid_t pid;
    int err = posix_spawn(&pid, "/bin/sh", NULL, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    if (err) {
        log_error("deploy hook '%s': %s", cmd, strerror(err));
        return -1;
    }
    int rc = wait_child(pid, cmd);
    if (rc == 0)
        log_info("deploy hook '%s' done", cmd);
    return rc;
}

/* The supervisor reads its children's sd_notify datagrams; this one asks it to reload the edge
 * (certd runs unprivileged and does not use the control socket). 1: not supervised. */
static int ask_supervisor(void)
{
    int rc = sd_notify_send("HEARTH_RELOAD=edge");
    if (rc == 0)
        log_info("asked the supervisor to reload the edge");
    else if (rc < 0)
        log_error("HEARTH_RELOAD=edge to $NOTIFY_SOCKET: %s", strerror(errno));
    return rc;
}

int reload_after_change(const certd_opts *o)
{
    int rc = ask_supervisor() < 0 ? -1 : 0;
    if (o->reload_pidfile && signal_pidfile(o->reload_pidfile) < 0)
        rc = -1;
    if (o->deploy_hook && run_hook(o->deploy_hook) < 0)
        rc = -1;
    return rc;
}
