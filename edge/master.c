/* The edge's master, when it runs more than one worker: forks them, forwards signals to them,
 * replaces the ones that die, and speaks sd_notify for them all. It has no event loop of its
 * own, so the workers fork from a process without one to inherit. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shared/log.h"
#include "shared/sdnotify.h"
#include "edge/edge.h"

static pid_t *children;
static int child_count;

static pid_t spawn_worker(const sigset_t *old_mask)
{
    pid_t master = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, old_mask, NULL);
        /* A killed master must not leave workers serving behind the next edge's back: they
         * get a graceful stop. The master may have died before the prctl took effect. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != master)
            exit(0);
        exit(edge_worker_run(false));
    }
    if (pid < 0)
        log_error("fork: %s", strerror(errno));
    return pid;
}

static void forward(int signum)
{
    for (int i = 0; i < child_count; i++)
        if (children[i] > 0)
            kill(children[i], signum);
}

/* A worker that keeps dying right after its start would make the master spin: past a burst of
 * deaths within a few seconds the master gives up and exits, for its own supervisor to judge. */
static bool crash_loop(void)
{
    static time_t window_start;
    static int deaths;
    time_t now = time(NULL);
    if (now - window_start > 10) {
        window_start = now;
        deaths = 0;
    }
    return ++deaths > 10;
}

static bool reap(bool stopping, const sigset_t *old_mask)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < child_count; i++) {
            if (children[i] != pid)
                continue;
            children[i] = 0;
            if (stopping)
                continue;
            if (crash_loop()) {
                log_error("workers keep dying (last status %d); giving up", status);
                forward(SIGTERM);
                exit(1);
            }
            log_warn("worker %d exited (status %d); starting another", (int)pid, status);
            children[i] = spawn_worker(old_mask);
        }
    }
    for (int i = 0; i < child_count; i++)
        if (children[i] > 0)
            return true;
    return false;
}

/* No libuv here: the master only waits for signals, so sigwaitinfo is the whole loop. */
int edge_master_run(int n)
{
    sigset_t set, old;
    sigemptyset(&set);
    int sigs[] = {SIGHUP, SIGUSR1, SIGTERM, SIGINT, SIGQUIT, SIGCHLD};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(&set, sigs[i]);
    sigprocmask(SIG_BLOCK, &set, &old);
    children = calloc((size_t)n, sizeof(pid_t));
    child_count = n;
    for (int i = 0; i < n; i++)
        children[i] = spawn_worker(&old);
    sd_notify_send("READY=1");
    bool stopping = false;
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        if (sig < 0)
            continue;
        if (sig == SIGCHLD) {
            if (!reap(stopping, &old) && stopping)
                return 0;
            continue;
        }
        if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) {
            stopping = true;
            sd_notify_send("STOPPING=1");
        }
        if (sig == SIGHUP)
            sd_notify_reloading();
        forward(sig);
        if (sig == SIGHUP)
            sd_notify_send("READY=1"); /* each worker logs its own outcome */
    }
}
