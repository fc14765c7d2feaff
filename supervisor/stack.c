/* The stack as a whole: which components run, readiness reported to systemd once all are up,
 * reload, the ordered graceful stop (edge first so it drains, then appserver, then certd) and
 * the fast stop, and the signals that drive them. */
#include "supervisor/sv.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "shared/log.h"
#include "shared/sdnotify.h"
#include "shared/signals.h"

static const int stop_order[CHILD_COUNT] = {CHILD_EDGE, CHILD_APPSERVER, CHILD_CERTD};

sv_child *stack_child_by_name(supervisor *sv, const char *name)
{
    for (int i = 0; i < CHILD_COUNT; i++)
        if (name != NULL && strcmp(sv->children[i].name, name) == 0)
            return &sv->children[i];
    return NULL;
}

sv_child *stack_child_requested(supervisor *sv, const char *name, char *err, size_t errlen)
{
    sv_child *c = stack_child_by_name(sv, name);
    if (c == NULL)
        snprintf(err, errlen, "no such component '%s' (edge, appserver or certd)", name);
    else if (!c->enabled)
        snprintf(err, errlen, "%s is not enabled by the config", name);
    return c != NULL && c->enabled ? c : NULL;
}

sv_child *stack_child_by_pid(supervisor *sv, pid_t pid)
{
    for (int i = 0; i < CHILD_COUNT; i++)
        if (pid > 0 && sv->children[i].pid == pid)
            return &sv->children[i];
    return NULL;
}

/* The components a config gives something to do; the edge always runs. */
void stack_wanted(const hearth_config *cfg, bool wanted[CHILD_COUNT])
{
    bool wants_certd = false;
    for (size_t i = 0; i < cfg->site_count; i++)
        if (cfg->sites[i].tls == SITE_TLS_ACME || cfg->sites[i].tls == SITE_TLS_INTERNAL)
            wants_certd = true;
    wanted[CHILD_EDGE] = true;
    wanted[CHILD_APPSERVER] = cfg->appserver.modules.count > 0;
    wanted[CHILD_CERTD] = wants_certd;
}

void stack_enable(supervisor *sv)
{
    bool wanted[CHILD_COUNT];
    stack_wanted(&sv->cfg, wanted);
    for (int i = 0; i < CHILD_COUNT; i++)
        sv->children[i].enabled = wanted[i];
}

static void send_status(supervisor *sv)
{
    char status[256] = "STATUS=";
    for (int i = 0; i < CHILD_COUNT; i++) {
        const sv_child *c = &sv->children[stop_order[i]];
        if (!c->enabled)
            continue;
        size_t used = strlen(status);
        snprintf(status + used, sizeof(status) - used, "%s%s %s", used > 7 ? ", " : "", c->name,
                 child_state_name(c->state));
    }
    sd_notify_send(status);
}

/* Ready means every enabled component runs: with one FATAL, systemd would otherwise call the
 * service active while part of it (maybe the whole site) is down. */
static void check_ready(supervisor *sv)
{
    if (sv->told_ready || sv->state != STACK_RUNNING)
        return;
    for (int i = 0; i < CHILD_COUNT; i++) {
        const sv_child *c = &sv->children[i];
        if (c->enabled && c->state != CHILD_RUNNING)
            return;
    }
    sv->told_ready = true;
    log_info("stack ready");
    sd_notify_send("READY=1");
}

static void on_done_timer(uv_timer_t *t)
{
    supervisor *sv = t->data;
    log_info("all components stopped");
    signals_close(sv->signals);
    for (int i = 0; i < CHILD_COUNT; i++) {
        uv_close((uv_handle_t *)&sv->children[i].timer, NULL);
        leftovers_close(&sv->children[i]);
    }
    uv_close((uv_handle_t *)&sv->done_timer, NULL);
    notify_close(sv);
    control_server_close(sv);
    metrics_server_close(sv);
    output_close_all();
}

/* Everything is down: tear down on the next loop turn, after the replies already queued. */
static void finish(supervisor *sv)
{
    if (sv->state == STACK_DONE)
        return;
    sv->state = STACK_DONE;
    uv_timer_start(&sv->done_timer, on_done_timer, 0, 0);
}

static bool all_down(supervisor *sv)
{
    for (int i = 0; i < CHILD_COUNT; i++)
        if (!child_is_down(&sv->children[i]))
            return false;
    return true;
}

/* Graceful stop: one component at a time, each to its end (or SIGKILL) before the next. */
static void advance_stop(supervisor *sv)
{
    if (sv->advancing)
        return;
    sv->advancing = true;
    while (sv->stop_index < CHILD_COUNT) {
        sv_child *c = &sv->children[stop_order[sv->stop_index]];
        if (c->state == CHILD_STOPPING)
            break;
        bool was_down = child_is_down(c);
        child_event_post(c, EV_STOP); /* also cancels a pending backoff restart */
        if (!was_down && c->state == CHILD_STOPPING)
            break;
        sv->stop_index++;
    }
    sv->advancing = false;
    if (sv->stop_index == CHILD_COUNT && all_down(sv))
        finish(sv);
}

/* Nobody will accept on a FATAL component's sockets. The appserver's are closed, so the edge
 * answers 502 at once instead of waiting; the edge's stay open: a refused connection looks
 * like a site that is gone for good, and a restart must find the same sockets. */
static void announce_fatal(supervisor *sv, sv_child *c)
{
    if (c->id != CHILD_EDGE) {
        listeners_shut(sv, c->id);
        return;
    }
    log_error("edge is FATAL: THE SITE IS DOWN. Its listening sockets stay open, so connections "
              "wait unanswered; fix what it said above, then `hearth reload` or `hearth "
              "restart edge`");
}

void stack_child_changed(supervisor *sv, sv_child *c)
{
    send_status(sv);
    if (c->state == CHILD_FATAL)
        announce_fatal(sv, c);
    if (sv->state == STACK_RUNNING) {
        check_ready(sv);
    } else if (sv->state == STACK_STOPPING) {
        if (sv->fast_stop) {
            if (all_down(sv))
                finish(sv);
        } else {
            advance_stop(sv);
        }
    }
}

void stack_stop(supervisor *sv, bool fast)
{
    if (sv->state == STACK_DONE || (sv->state == STACK_STOPPING && (sv->fast_stop || !fast)))
        return;
    if (sv->state == STACK_RUNNING)
        sd_notify_send("STOPPING=1");
    log_info("%s stop", fast ? "fast" : "graceful");
    sv->state = STACK_STOPPING;
    if (fast) {
        sv->fast_stop = true;
        for (int i = 0; i < CHILD_COUNT; i++)
            child_event_post(&sv->children[i], EV_FASTSTOP);
        if (all_down(sv))
            finish(sv);
    } else {
        sv->stop_index = 0;
        advance_stop(sv);
    }
}

void stack_start_all(supervisor *sv)
{
    for (int i = 0; i < CHILD_COUNT; i++)
        if (sv->children[i].enabled)
            child_event_post(&sv->children[i], EV_START);
    check_ready(sv);
}

static bool same_string(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Take a validated config: new restart settings, components switched on or off. */
static void adopt_config(supervisor *sv, hearth_config *next, sv_reload_report *r)
{
    if (!strlist_equal(&sv->cfg.edge.http, &next->edge.http) ||
        !strlist_equal(&sv->cfg.edge.https, &next->edge.https))
        log_warn("edge.http/edge.https changed: the listening sockets stay as they are until the "
                 "supervisor restarts");
    if (strcmp(sv->cfg.run_dir, next->run_dir) != 0 || !same_string(sv->cfg.user, next->user) ||
        !same_string(sv->cfg.group, next->group))
        log_warn("run_dir, user or group changed: they take effect when the supervisor restarts");
    if (!same_string(sv->cfg.metrics, next->metrics))
        log_warn("metrics changed: it takes effect when the supervisor restarts");
    bool limits_changed = sv->cfg.supervisor.max_restarts != next->supervisor.max_restarts;
    config_free(&sv->cfg);
    sv->cfg = *next;
    bool was_enabled[CHILD_COUNT];
    for (int i = 0; i < CHILD_COUNT; i++)
        was_enabled[i] = sv->children[i].enabled;
    stack_enable(sv);
    for (int i = 0; i < CHILD_COUNT; i++) {
        sv_child *c = &sv->children[i];
        char *outcome = r->outcome[i];
        if (limits_changed)
            policy_reset(&c->policy, &sv->cfg.supervisor);
        if (c->enabled && !was_enabled[i]) {
            child_event_post(c, EV_START);
            snprintf(outcome, sizeof(r->outcome[i]), "started (the config now enables it)");
        } else if (!c->enabled && was_enabled[i]) {
            child_event_post(c, EV_STOP);
            snprintf(outcome, sizeof(r->outcome[i]), "stopped (the config gives it nothing to do)");
        }
    }
}

/* Before READY=1 a component may not handle SIGHUP yet, and SIGHUP's default is to
 * terminate: it gets the signal once it is ready. A FATAL one gets a fresh start instead. */
void stack_signal_reload(supervisor *sv, sv_child *c, char *outcome, size_t len)
{
    if (!c->enabled || sv->state != STACK_RUNNING) {
        snprintf(outcome, len, "not running");
        return;
    }
    switch (c->state) {
    case CHILD_RUNNING:
        child_signal(c, SIGHUP);
        snprintf(outcome, len, "reloaded (SIGHUP)");
        break;
    case CHILD_STARTING:
        c->reload_pending = true;
        snprintf(outcome, len, "reloads once it is ready");
        break;
    case CHILD_FATAL:
        child_event_post(c, EV_RESTART);
        snprintf(outcome, len, "restarted (it was FATAL)");
        break;
    case CHILD_BACKOFF:
        snprintf(outcome, len, "restarts with it (waiting to restart)");
        break;
    case CHILD_STOPPING:
    case CHILD_STOPPED:
        snprintf(outcome, len, "not running");
        break;
    }
}

/* Nothing changed: say for each component whether it was the one that refused. */
static void report_refusal(supervisor *sv, const sv_verdict v[CHILD_COUNT], sv_reload_report *r)
{
    for (int i = 0; i < CHILD_COUNT; i++) {
        if (v[i].checked && !v[i].ok)
            snprintf(r->outcome[i], sizeof(r->outcome[i]), "refused: %s", v[i].detail);
        else if (sv->children[i].enabled)
            snprintf(r->outcome[i], sizeof(r->outcome[i]), "unchanged");
    }
}

static void log_report(supervisor *sv, const sv_reload_report *r)
{
    for (int i = 0; i < CHILD_COUNT; i++)
        if (r->outcome[i][0] != '\0')
            log_info("reload: %s: %s", sv->children[i].name, r->outcome[i]);
}

/* All or nothing, like nginx: the config is validated by the supervisor and by every component
 * that would run it before any of them sees it; if one refuses, none changes. */
int stack_reload(supervisor *sv, const char *name, sv_reload_report *report, char *err,
                 size_t errlen)
{
    memset(report, 0, sizeof(*report));
    if (sv->state != STACK_RUNNING) {
        snprintf(err, errlen, "the supervisor is stopping");
        return -1;
    }
    sv_child *only = NULL;
    if (name != NULL && (only = stack_child_requested(sv, name, err, errlen)) == NULL)
        return -1;
    hearth_config next;
    sv_verdict v[CHILD_COUNT];
    if (verify_adopt_file(sv, &next, v, err, errlen) < 0) {
        report_refusal(sv, v, report);
        log_error("reload refused, nothing changed: %s", err);
        return -1;
    }
    /* Before the first READY=1, a READY=1 here would tell systemd too early. */
    if (sv->told_ready)
        sd_notify_reloading();
    adopt_config(sv, &next, report);
    for (int i = 0; i < CHILD_COUNT; i++) {
        sv_child *c = &sv->children[i];
        if (report->outcome[i][0] == '\0' && c->enabled && (only == NULL || only == c))
            stack_signal_reload(sv, c, report->outcome[i], sizeof(report->outcome[i]));
    }
    log_report(sv, report);
    if (sv->told_ready)
        sd_notify_send("READY=1");
    return 0;
}

void stack_reopen_logs(supervisor *sv)
{
    if (log_reopen() < 0)
        log_error("reopening the log file: %s", strerror(errno));
    for (int i = 0; i < CHILD_COUNT; i++) {
        sv_child *c = &sv->children[i];
        /* Not before READY=1, for the reason stack_signal_reload() gives; it has fresh files
         * anyway. */
        if (c->state == CHILD_RUNNING)
            child_signal(c, SIGUSR1);
    }
}

static void reap(supervisor *sv)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        sv_child *c = stack_child_by_pid(sv, pid);
        if (c != NULL)
            child_exited(c, status);
    }
}

static void on_signal(int signum, void *data)
{
    supervisor *sv = data;
    char err[1024];
    sv_reload_report report;
    switch (signum) {
    case SIGCHLD:
        reap(sv);
        break;
    case SIGHUP:
        log_info("SIGHUP: reloading");
        stack_reload(sv, NULL, &report, err, sizeof(err));
        break;
    case SIGTERM:
        stack_stop(sv, false);
        break;
    case SIGINT:
    case SIGQUIT:
        stack_stop(sv, true);
        break;
    case SIGUSR1:
        stack_reopen_logs(sv);
        break;
    default:
        break;
    }
}

int stack_watch_signals(supervisor *sv)
{
    static const int watched[] = {SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, 0};
    sv->signals = calloc(1, sizeof(signals_set));
    if (sv->signals == NULL)
        return -1;
    return signals_watch(sv->signals, sv->loop, watched, on_signal, sv);
}
