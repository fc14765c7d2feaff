/* One component's life as an explicit state x event table (in the manner of s6): every
 * change of state happens in child_event_post(), so the restart rules live in one place. */
#include "supervisor/sv.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "shared/log.h"
#include "shared/signals.h"

/* No fallback for a component that never sends READY=1 (it stays "starting"), but say so. */
#define READY_WARN_MS 30000

static const char *const state_names[] = {
    [CHILD_STOPPED] = "stopped", [CHILD_STARTING] = "starting", [CHILD_RUNNING] = "running",
    [CHILD_BACKOFF] = "backoff", [CHILD_STOPPING] = "stopping", [CHILD_FATAL] = "fatal",
};

const char *child_state_name(child_state s)
{
    return state_names[s];
}

bool child_is_down(const sv_child *c)
{
    return c->state == CHILD_STOPPED || c->state == CHILD_FATAL || c->state == CHILD_BACKOFF;
}

void child_describe_status(int status, char *out, size_t len)
{
    if (WIFEXITED(status))
        snprintf(out, len, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, len, "signal %d (%s)", WTERMSIG(status), signals_name(WTERMSIG(status)));
    else
        snprintf(out, len, "status %d", status);
}

void child_init(sv_child *c, supervisor *sv, int id, const char *name)
{
    memset(c, 0, sizeof(*c));
    c->id = id;
    c->name = name;
    c->sv = sv;
    c->state = CHILD_STOPPED;
    uv_timer_init(sv->loop, &c->timer);
    c->timer.data = c;
    leftovers_init(c);
}

void child_free(sv_child *c)
{
    policy_free(&c->policy);
    free(c->path);
    c->path = NULL;
}

static void set_state(sv_child *c, child_state s)
{
    if (c->state == s)
        return;
    log_debug("%s: %s -> %s", c->name, state_names[c->state], state_names[s]);
    c->state = s;
    stack_child_changed(c->sv, c);
}

static void on_timer(uv_timer_t *t)
{
    child_event_post(t->data, EV_TIMER);
}

static void arm_timer(sv_child *c, int64_t ms)
{
    uv_timer_start(&c->timer, on_timer, ms > 0 ? (uint64_t)ms : 0, 0);
}

void child_signal(sv_child *c, int signum)
{
    if (c->pid <= 0)
        return;
    if (kill(c->pid, signum) < 0 && errno != ESRCH)
        log_warn("%s: kill(%d, %s): %s", c->name, (int)c->pid, signals_name(signum),
                 strerror(errno));
}

/* Spawn, or treat a failed spawn like a crash so the backoff still applies. */
static void start(sv_child *c)
{
    uv_timer_stop(&c->timer);
    uv_update_time(c->sv->loop);
    c->started_ms = uv_now(c->sv->loop);
    c->restart_after_stop = false;
    c->reload_pending = false; /* a fresh process reads the config anyway */
    char err[512];
    pid_t pid = -1;
    if (listeners_reopen(c->sv, c->id, err, sizeof(err)) < 0)
        log_error("%s: cannot start: %s", c->name, err);
    else
        pid = spawn_child(c->sv, c);
    if (pid < 0) {
        c->pid = 0;
        c->has_exited = true;
        c->last_status = EXIT_FAILURE << 8;
        set_state(c, CHILD_STARTING);
        child_event_post(c, EV_EXIT);
        return;
    }
    c->pid = pid;
    log_info("%s: started, pid %d", c->name, (int)pid);
    arm_timer(c, READY_WARN_MS);
    set_state(c, CHILD_STARTING);
}

static void begin_stop(sv_child *c, int signum)
{
    c->stop_signal = signum;
    child_signal(c, signum);
    arm_timer(c, c->sv->cfg.supervisor.stop_timeout_ms);
    set_state(c, CHILD_STOPPING);
}

/* An exit nobody asked for: back off and restart, or give up. */
static void crashed(sv_child *c)
{
    char how[64];
    child_describe_status(c->last_status, how, sizeof(how));
    uint64_t now = uv_now(c->sv->loop);
    uint64_t uptime = now - c->started_ms;
    if (WIFEXITED(c->last_status) && WEXITSTATUS(c->last_status) == EXIT_USAGE) {
        log_error("%s: exited with a usage/config error (%s); not restarting: FATAL", c->name, how);
        set_state(c, CHILD_FATAL);
        return;
    }
    int64_t delay = policy_on_crash(&c->policy, &c->sv->cfg.supervisor, now, uptime);
    if (delay == POLICY_FATAL) {
        log_error("%s: %s; more than %d restarts within %lldms: FATAL (`hearth restart %s` "
                  "tries again)",
                  c->name, how, c->sv->cfg.supervisor.max_restarts,
                  (long long)c->sv->cfg.supervisor.restart_window_ms, c->name);
        set_state(c, CHILD_FATAL);
        return;
    }
    log_warn("%s: %s after %llums; restarting in %lldms", c->name, how, (unsigned long long)uptime,
             (long long)delay);
    c->restarts++;
    arm_timer(c, delay);
    set_state(c, CHILD_BACKOFF);
}

static void on_stopped(sv_child *c)
{
    uv_timer_stop(&c->timer);
    char how[64];
    child_describe_status(c->last_status, how, sizeof(how));
    log_info("%s: stopped (%s)", c->name, how);
    if (c->restart_after_stop && c->sv->state == STACK_RUNNING) {
        start(c);
        return;
    }
    set_state(c, CHILD_STOPPED);
}

/* STARTING and RUNNING share everything but READY. */
static void event_live(sv_child *c, child_event ev)
{
    switch (ev) {
    case EV_READY:
        if (c->state == CHILD_STARTING) {
            uv_timer_stop(&c->timer);
            log_info("%s: ready", c->name);
            set_state(c, CHILD_RUNNING);
            if (c->reload_pending) {
                log_info("%s: reload (SIGHUP), asked for while it was starting", c->name);
                child_signal(c, SIGHUP);
            }
        }
        c->reload_pending = false;
        break;
    case EV_EXIT:
        c->pid = 0;
        uv_timer_stop(&c->timer);
        crashed(c);
        break;
    case EV_STOP:
        begin_stop(c, SIGTERM);
        break;
    case EV_FASTSTOP:
        begin_stop(c, SIGINT);
        break;
    case EV_RESTART:
        begin_stop(c, SIGTERM);
        c->restart_after_stop = true;
        break;
    case EV_TIMER:
        if (c->state == CHILD_STARTING)
            log_warn("%s: no READY=1 on NOTIFY_SOCKET after %ds; still waiting (the stack is "
                     "not ready until it comes)",
                     c->name, READY_WARN_MS / 1000);
        break;
    case EV_START:
        break;
    }
}

static void event_stopping(sv_child *c, child_event ev)
{
    switch (ev) {
    case EV_EXIT:
        c->pid = 0;
        on_stopped(c);
        break;
    case EV_TIMER:
        log_warn("%s: still running %lldms after %s; sending SIGKILL", c->name,
                 (long long)c->sv->cfg.supervisor.stop_timeout_ms, signals_name(c->stop_signal));
        child_signal(c, SIGKILL);
        break;
    case EV_FASTSTOP:
        /* A fast stop overtakes a graceful one in progress. */
        if (c->stop_signal != SIGINT) {
            c->stop_signal = SIGINT;
            child_signal(c, SIGINT);
        }
        c->restart_after_stop = false;
        break;
    case EV_STOP:
        c->restart_after_stop = false;
        break;
    case EV_RESTART:
        c->restart_after_stop = true;
        break;
    case EV_START:
    case EV_READY:
        break;
    }
}

/* STOPPED, BACKOFF and FATAL: nothing runs. */
static void event_down(sv_child *c, child_event ev)
{
    switch (ev) {
    case EV_START:
        if (c->state == CHILD_STOPPED)
            start(c);
        break;
    case EV_TIMER:
        if (c->state == CHILD_BACKOFF)
            start(c);
        break;
    case EV_RESTART:
        /* An explicit restart starts a clean history (docs/supervisor.md): the crash window
         * and the count that status shows. */
        if (c->state == CHILD_FATAL || c->state == CHILD_STOPPED) {
            policy_reset(&c->policy, &c->sv->cfg.supervisor);
            c->restarts = 0;
        }
        start(c);
        break;
    case EV_STOP:
    case EV_FASTSTOP:
        uv_timer_stop(&c->timer);
        if (c->state == CHILD_BACKOFF)
            set_state(c, CHILD_STOPPED);
        break;
    case EV_READY:
    case EV_EXIT:
        break;
    }
}

void child_event_post(sv_child *c, child_event ev)
{
    switch (c->state) {
    case CHILD_STARTING:
    case CHILD_RUNNING:
        event_live(c, ev);
        break;
    case CHILD_STOPPING:
        event_stopping(c, ev);
        break;
    case CHILD_STOPPED:
    case CHILD_BACKOFF:
    case CHILD_FATAL:
        event_down(c, ev);
        break;
    }
}

void child_exited(sv_child *c, int status)
{
    pid_t pgid = c->pid; /* each child leads its own session and process group */
    c->last_status = status;
    c->has_exited = true;
    leftovers_drain(c, pgid);
    child_event_post(c, EV_EXIT);
}
