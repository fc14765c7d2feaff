/* The edge's master, when it runs more than one worker: forks them, forwards signals to them,
 * replaces the ones that die, and speaks sd_notify for them all. A reload goes to each worker
 * in two steps, as messages on its own socket: every worker builds the new sites (prepare),
 * then, once all have, every worker switches to them (commit), and the master reports the
 * reload done once all have switched. Before, READY=1 followed the forwarded SIGHUP at once,
 * and one worker served a certificate that another was still loading. The master has no event
 * loop of its own, so the workers fork from a process without one to inherit. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shared/backoff.h"
#include "shared/clock.h"
#include "shared/log.h"
#include "shared/sdnotify.h"
#include "edge/edge.h"

/* How long a reload may take a worker before the master reports it done without its answer
 * (a worker that hangs must not hold every later signal back for good). */
#define RELOAD_ANSWER_MS 10000

typedef struct {
    pid_t pid;   /* 0 once it has exited */
    int channel; /* the master's end of the worker's socket pair, or -1 */
    bool asked;  /* a reload was sent that it has not answered yet */
} worker_slot;

static worker_slot *workers;
static int worker_count;
/* Sites are loaded when the master starts; a worker forked after a reload loads them again. */
static bool reloaded;

static void spawn_worker(worker_slot *w, const sigset_t *old_mask)
{
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
        log_warn("worker channel: %s (its reloads go by SIGHUP, unconfirmed)", strerror(errno));
        pair[0] = pair[1] = -1;
    }
    pid_t master = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, old_mask, NULL);
        /* A killed master must not leave workers serving behind the next edge's back: they
         * get a graceful stop. The master may have died before the prctl took effect. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != master)
            exit(0);
        for (int i = 0; i < worker_count; i++)
            if (workers[i].channel >= 0)
                close(workers[i].channel);
        if (pair[0] >= 0)
            close(pair[0]);
        edge_limits_set_worker((int)(w - workers));
        exit(edge_worker_run(false, pair[1], reloaded));
    }
    if (pair[1] >= 0)
        close(pair[1]);
    if (pid < 0) {
        log_error("fork: %s", strerror(errno));
        if (pair[0] >= 0)
            close(pair[0]);
        pair[0] = -1;
    }
    *w = (worker_slot){.pid = pid > 0 ? pid : 0, .channel = pair[0]};
}

static void forward(int signum)
{
    for (int i = 0; i < worker_count; i++)
        if (workers[i].pid > 0)
            kill(workers[i].pid, signum);
}

/* Send every worker a reload step; the number asked. One without a channel gets SIGHUP for
 * the first step instead (a whole reload, unconfirmed). */
static int ask_reload(uint32_t step)
{
    int asked = 0;
    for (int i = 0; i < worker_count; i++) {
        worker_slot *w = &workers[i];
        w->asked = false;
        if (w->pid <= 0)
            continue;
        if (w->channel >= 0 &&
            send(w->channel, &step, sizeof(step), MSG_NOSIGNAL) == sizeof(step)) {
            w->asked = true;
            asked++;
        } else if (!(step & 1)) {
            kill(w->pid, SIGHUP);
        }
    }
    return asked;
}

/* One worker's channel has news: its answer to this step (true), a late answer to an earlier
 * one (false), or its end (true: a worker that died answers nothing, and the one started in
 * its place loads the sites anew). */
static bool answered(worker_slot *w, uint32_t step)
{
    uint32_t got;
    ssize_t n = recv(w->channel, &got, sizeof(got), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return false;
    return n != sizeof(got) || got == step;
}

/* One step of a reload on every worker; the number that did not answer by the deadline. */
static int reload_step(uint32_t step, int64_t deadline)
{
    int waiting = ask_reload(step);
    struct pollfd fds[worker_count];
    int slot_of[worker_count];
    while (waiting > 0 && clock_now_ms() < deadline) {
        int n = 0;
        for (int i = 0; i < worker_count; i++)
            if (workers[i].asked) {
                fds[n] = (struct pollfd){.fd = workers[i].channel, .events = POLLIN};
                slot_of[n++] = i;
            }
        int ready = poll(fds, (nfds_t)n, (int)(deadline - clock_now_ms()));
        if (ready < 0 && errno != EINTR)
            break;
        for (int k = 0; k < n && ready > 0; k++) {
            worker_slot *w = &workers[slot_of[k]];
            if (fds[k].revents && answered(w, step)) {
                w->asked = false;
                waiting--;
            }
        }
    }
    return waiting;
}

/* The session-ticket keys are read here, once for all workers (they copy them in their prepare
 * step), from the file that the config being reloaded names. A config the workers will refuse
 * is said by them; the keys then come from the file the running config names. */
static void load_ticket_keys(void)
{
    hearth_config cfg;
    char err[CONFIG_ERR_MAX];
    if (!edge_w.config_path || config_load(&cfg, edge_w.config_path, err, sizeof(err)) < 0) {
        edge_tickets_load(&edge_w.cfg);
        return;
    }
    edge_tickets_load(&cfg);
    config_free(&cfg);
}

/* SIGHUP: every worker reloads, and the reload is done when each has said so. Signals wait
 * meanwhile (they stay blocked), which is the moment a reload takes. */
static void reload_workers(void)
{
    static uint32_t seq;
    seq++;
    reloaded = true;
    load_ticket_keys();
    int64_t deadline = clock_now_ms() + RELOAD_ANSWER_MS;
    int waiting = reload_step(seq << 1, deadline);
    waiting += reload_step(seq << 1 | 1, deadline);
    if (waiting > 0)
        log_warn("reload: %d answer(s) from the workers missing after %d ms; reporting it done",
                 waiting, RELOAD_ANSWER_MS);
}

/* A worker that keeps dying right after its start would make the master spin: past a burst of
 * deaths within a few seconds the master gives up and exits, for its own supervisor to judge. */
#define WORKER_DEATHS_MAX 10
#define WORKER_DEATHS_WINDOW_MS 10000

static bool crash_loop(void)
{
    static crash_window deaths;
    /* without memory to count them, replacing workers could spin: give up as for a loop */
    if (deaths.times == NULL && crash_window_init(&deaths, WORKER_DEATHS_MAX) < 0)
        return true;
    return crash_window_add(&deaths, (uint64_t)clock_now_ms(), WORKER_DEATHS_WINDOW_MS);
}

static bool reap(bool stopping, const sigset_t *old_mask)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < worker_count; i++) {
            worker_slot *w = &workers[i];
            if (w->pid != pid)
                continue;
            w->pid = 0;
            edge_limits_worker_gone(i);
            if (w->channel >= 0)
                close(w->channel);
            w->channel = -1;
            if (stopping)
                continue;
            if (crash_loop()) {
                log_error("workers keep dying (last status %d); giving up", status);
                forward(SIGTERM);
                exit(1);
            }
            log_warn("worker %d exited (status %d); starting another", (int)pid, status);
            spawn_worker(w, old_mask);
        }
    }
    for (int i = 0; i < worker_count; i++)
        if (workers[i].pid > 0)
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
    workers = calloc((size_t)n, sizeof(*workers));
    if (!workers) {
        log_error("out of memory");
        return 1;
    }
    for (int i = 0; i < n; i++)
        workers[i].channel = -1;
    worker_count = n;
    for (int i = 0; i < n; i++)
        spawn_worker(&workers[i], &old);
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
        if (sig == SIGHUP) {
            sd_notify_reloading();
            reload_workers();
            sd_notify_send("READY=1"); /* each worker logs its own outcome */
            continue;
        }
        forward(sig);
    }
}
