/* Arbiter main loop: signals, the workers' boot notices and a housekeeping tick all arrive as
 * libuv callbacks, and every decision about workers is made here, in one place. */
#include "appserver/arbiter.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "appserver/metrics.h"
#include "appserver/scoreboard.h"
#include "shared/backoff.h"
#include "shared/log.h"
#include "shared/sdnotify.h"
#include "shared/signals.h"
#include "appserver/worker.h"

#define MAX_WORKERS 256
#define TICK_MS 100
#define STALL_MS 1000         /* a tick this late means the master itself was not running */
#define ABORT_TO_KILL_MS 2000 /* after SIGABRT, how long a timed-out worker gets to die */
#define FAST_STOP_MS 1000
#define BACKOFF_FREE_CRASHES 2
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 10000

typedef enum { W_FREE, W_BOOTING, W_READY, W_STOPPING } worker_state;

typedef struct {
    pid_t pid;
    worker_state state;
    unsigned gen;
    int64_t started_ms;
    int64_t kill_at_ms; /* SIGKILL at this time; 0: none planned */
    bool booted, abort_sent, kill_sent;
    uint64_t seen_requests;
} worker_rec;

/* One generation of module files, held open so that every worker forked for it loads the
 * bytes that were validated, whatever has happened to the paths on disk since. */
typedef struct {
    unsigned id;
    int *fds;
    char **paths; /* as configured when opened: a reload may change the list */
    size_t count;
} module_gen;

typedef struct {
    appserver_opts *opts;
    listen_set *listeners;
    uv_loop_t loop;
    signals_set sigs;
    uv_timer_t tick;
    uv_poll_t notify_poll;
    int notify_rd, notify_wr;
    worker_slot *slots;
    worker_rec w[MAX_WORKERS];
    int target;
    module_gen cur;  /* serving */
    module_gen next; /* being tried by a reload; id 0 when none */
    int next_booted;
    bool ever_booted;
    int crash_streak;
    int64_t next_spawn_ms;
    bool stopping, fast_stop;
    int64_t stop_deadline_ms;
    bool reload_again;      /* a HUP came during a reload: another follows when that one ends */
    unsigned last_gen_id;   /* ids are never reused: a worker of a reload that was given up
                             * must not be taken for one of the next attempt */
    int64_t last_tick_ms;   /* when on_tick last ran */
    int64_t judged_from_ms; /* heartbeats older than this are not held against a worker */
    int exit_code;
} arbiter;

static const int arbiter_signals[] = {SIGTERM, SIGINT,  SIGQUIT,  SIGHUP,  SIGTTIN, SIGTTOU,
                                      SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD, 0};

static void module_gen_close(module_gen *g)
{
    for (size_t i = 0; i < g->count; i++) {
        close(g->fds[i]);
        free(g->paths[i]);
    }
    free(g->fds);
    free(g->paths);
    g->fds = NULL;
    g->paths = NULL;
    g->count = 0;
    g->id = 0;
}

/* Open every module file now; the worker dlopens it through /proc/self/fd. */
static int module_gen_open(module_gen *g, const strlist *paths, unsigned id, char *err,
                           size_t errlen)
{
    g->fds = calloc(paths->count ? paths->count : 1, sizeof *g->fds);
    g->paths = calloc(paths->count ? paths->count : 1, sizeof *g->paths);
    g->count = 0;
    g->id = id;
    if (!g->fds || !g->paths) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < paths->count; i++) {
        int fd = open(paths->items[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            snprintf(err, errlen, "%s: %s", paths->items[i], strerror(errno));
            module_gen_close(g);
            return -1;
        }
        g->paths[g->count] = strdup(paths->items[i]);
        g->fds[g->count++] = fd;
    }
    return 0;
}

static const char *describe_status(int status, char *out, size_t len)
{
    if (WIFSIGNALED(status))
        snprintf(out, len, "killed by %s", strsignal(WTERMSIG(status)));
    else
        snprintf(out, len, "exit status %d", WEXITSTATUS(status));
    return out;
}

static int live_count(const arbiter *a, unsigned gen)
{
    int n = 0;
    for (int i = 0; i < MAX_WORKERS; i++)
        if (a->w[i].state != W_FREE && a->w[i].state != W_STOPPING && a->w[i].gen == gen)
            n++;
    return n;
}

static int any_alive(const arbiter *a)
{
    for (int i = 0; i < MAX_WORKERS; i++)
        if (a->w[i].state != W_FREE)
            return 1;
    return 0;
}

static uint64_t jittered_max_requests(const appserver_opts *o)
{
    if (o->max_requests <= 0)
        return 0;
    /* jitter spreads the restarts so that workers started together do not all recycle at once */
    int jitter = o->max_requests_jitter > 0 ? rand() % (o->max_requests_jitter + 1) : 0;
    return (uint64_t)o->max_requests + (uint64_t)jitter;
}

static int spawn(arbiter *a, const module_gen *g)
{
    int slot = -1;
    for (int i = 0; i < MAX_WORKERS && slot < 0; i++)
        if (a->w[i].state == W_FREE)
            slot = i;
    if (slot < 0) {
        log_error("no free worker slot (at most %d workers)", MAX_WORKERS);
        return -1;
    }
    memset(&a->slots[slot], 0, sizeof a->slots[slot]);
    /* the heartbeat starts now: the timeout covers booting too, but not the time before it */
    atomic_store(&a->slots[slot].beat_ms, scoreboard_now_ms());
    worker_params wp = {
        .opts = a->opts,
        .listen_fds = a->listeners->fds,
        .listen_count = a->listeners->count,
        .module_paths = g->paths,
        .module_fds = g->fds,
        .module_count = g->count,
        .slot = &a->slots[slot],
        .slot_index = slot,
        .notify_fd = a->notify_wr,
        .max_requests = jittered_max_requests(a->opts),
        .master_pid = getpid(),
    };
    /* Block everything across fork: a signal must not run the master's libuv handler in the
     * child, where it would write into the master's own signal pipe. */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        close(a->notify_rd);
        worker_main(&wp);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        log_error("fork: %s", strerror(errno));
        return -1;
    }
    a->w[slot] = (worker_rec){
        .pid = pid, .state = W_BOOTING, .gen = g->id, .started_ms = scoreboard_now_ms()};
    log_debug("worker %d forked (generation %u, slot %d)", (int)pid, g->id, slot);
    return 0;
}

static void signal_worker(arbiter *a, int i, int sig)
{
    if (a->w[i].state != W_FREE)
        kill(a->w[i].pid, sig);
}

/* TERM: finish in-flight requests, then exit; SIGKILL after the graceful timeout. */
static void retire(arbiter *a, int i)
{
    if (a->w[i].state == W_FREE || a->w[i].state == W_STOPPING)
        return;
    a->w[i].state = W_STOPPING;
    a->w[i].kill_at_ms = scoreboard_now_ms() + a->opts->graceful_timeout_ms;
    signal_worker(a, i, SIGTERM);
}

/* The first crashes in a row fork again at once (a stray crash costs nothing); past them the
 * wait doubles from BACKOFF_FIRST_MS. */
static int64_t backoff_ms(int streak)
{
    if (streak <= BACKOFF_FREE_CRASHES)
        return 0;
    return backoff_delay_ms(BACKOFF_FIRST_MS, BACKOFF_MAX_MS,
                            (unsigned)(streak - BACKOFF_FREE_CRASHES - 1));
}

/* Bring the serving generation to the target count: fork the missing (unless backing off),
 * retire the oldest extras. */
static void maintain(arbiter *a)
{
    if (a->stopping)
        return;
    int live = live_count(a, a->cur.id);
    while (live > a->target) {
        int oldest = -1;
        for (int i = 0; i < MAX_WORKERS; i++)
            if (a->w[i].state != W_FREE && a->w[i].state != W_STOPPING &&
                a->w[i].gen == a->cur.id &&
                (oldest < 0 || a->w[i].started_ms < a->w[oldest].started_ms))
                oldest = i;
        retire(a, oldest);
        live--;
    }
    int64_t now = scoreboard_now_ms();
    while (live < a->target && now >= a->next_spawn_ms) {
        if (spawn(a, &a->cur) != 0)
            break;
        live++;
    }
}

static void stop_all(arbiter *a, bool fast)
{
    if (a->stopping && (!fast || a->fast_stop))
        return;
    a->stopping = true;
    a->fast_stop = fast;
    a->stop_deadline_ms =
        scoreboard_now_ms() + (fast ? FAST_STOP_MS : a->opts->graceful_timeout_ms);
    log_info("%s stop: %s", fast ? "fast" : "graceful",
             fast ? "workers exit now" : "workers finish their requests");
    sd_notify_send("STOPPING=1");
    listen_unlink(a->listeners); /* no new clients; the queued ones are drained by the workers */
    for (int i = 0; i < MAX_WORKERS; i++) {
        if (a->w[i].state == W_FREE)
            continue;
        a->w[i].state = W_STOPPING;
        signal_worker(a, i, fast ? SIGQUIT : SIGTERM);
    }
    if (!any_alive(a))
        uv_stop(&a->loop);
}

static void begin_reload(arbiter *a);

static void reload_if_asked_again(arbiter *a)
{
    if (!a->reload_again)
        return;
    a->reload_again = false;
    begin_reload(a);
}

static void abort_reload(arbiter *a, const char *why)
{
    if (!a->next.id)
        return;
    log_error("reload failed: %s; still serving generation %u with the modules loaded before", why,
              a->cur.id);
    appserver_metrics_reload(false);
    for (int i = 0; i < MAX_WORKERS; i++)
        if (a->w[i].state != W_FREE && a->w[i].gen == a->next.id)
            retire(a, i);
    module_gen_close(&a->next);
    sd_notify_send("READY=1");
    reload_if_asked_again(a);
}

static void commit_reload(arbiter *a)
{
    unsigned old = a->cur.id;
    for (int i = 0; i < MAX_WORKERS; i++)
        if (a->w[i].state != W_FREE && a->w[i].gen != a->next.id)
            retire(a, i);
    module_gen_close(&a->cur);
    a->cur = a->next;
    a->next = (module_gen){0};
    a->crash_streak = 0;
    log_info("reload complete: generation %u serving, generation %u finishing its requests",
             a->cur.id, old);
    appserver_metrics_reload(true);
    sd_notify_send("READY=1");
    reload_if_asked_again(a);
}

static void begin_reload(arbiter *a)
{
    if (a->stopping)
        return;
    if (a->next.id) {
        /* files may have changed since this reload read them: what the HUP asks for is what is
         * on disk now, so it is not dropped */
        log_info("reload already in progress; another follows when it ends");
        a->reload_again = true;
        return;
    }
    sd_notify_reloading();
    /* a config that does not load is not half-applied: nothing changes, as with nginx -s reload */
    if (a->opts->config_path) {
        if (options_reload(a->opts) != 0) {
            appserver_metrics_reload(false);
            sd_notify_send("READY=1");
            return;
        }
        a->target = a->opts->workers;
    }
    char err[512];
    unsigned id = ++a->last_gen_id;
    if (module_gen_open(&a->next, &a->opts->modules, id, err, sizeof err) != 0) {
        log_error("reload failed: %s; still serving generation %u", err, a->cur.id);
        appserver_metrics_reload(false);
        sd_notify_send("READY=1");
        return;
    }
    a->next_booted = 0;
    log_info("reload: starting %d workers of generation %u", a->target, id);
    for (int i = 0; i < a->target; i++) {
        if (spawn(a, &a->next) != 0) {
            abort_reload(a, "could not fork the new workers");
            return;
        }
    }
}

static void on_booted(arbiter *a, int i)
{
    worker_rec *w = &a->w[i];
    if (w->state != W_BOOTING)
        return;
    w->state = W_READY;
    w->booted = true;
    if (w->gen == a->next.id && a->next.id) {
        if (++a->next_booted >= a->target)
            commit_reload(a);
    } else if (!a->ever_booted && w->gen == a->cur.id) {
        a->ever_booted = true;
        log_info("serving (%d workers, generation %u)", a->target, a->cur.id);
        sd_notify_send("READY=1");
    }
}

static void on_notify(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    arbiter *a = h->data;
    worker_notice n[64];
    ssize_t got;
    while ((got = read(a->notify_rd, n, sizeof n)) > 0) {
        for (size_t k = 0; k < (size_t)got / sizeof n[0]; k++) {
            int i = n[k].slot;
            if (i < 0 || i >= MAX_WORKERS)
                continue;
            if (n[k].event == NOTIFY_BOOTED)
                on_booted(a, i);
            else if (n[k].event == NOTIFY_BOOT_FAILED && a->w[i].gen == a->next.id && a->next.id)
                abort_reload(a, a->slots[i].boot_error);
        }
    }
}

static void boot_failed(arbiter *a, int i, int status)
{
    worker_rec *w = &a->w[i];
    char how[64];
    const char *why = a->slots[i].boot_error[0] ? a->slots[i].boot_error
                                                : describe_status(status, how, sizeof how);
    if (a->next.id && w->gen == a->next.id) {
        char msg[700];
        snprintf(msg, sizeof msg, "a new worker died while loading the modules (%s)", why);
        abort_reload(a, msg);
    } else if (w->gen != a->cur.id) {
        /* a candidate of a reload already given up: nothing more to say */
    } else if (!a->ever_booted) {
        log_error("worker %d failed to boot: %s; giving up", (int)w->pid, why);
        a->exit_code = 1;
        stop_all(a, true);
    } else {
        log_error("worker %d failed to boot: %s", (int)w->pid, why);
        a->crash_streak++;
    }
}

static void crashed(arbiter *a, int i, int status)
{
    worker_rec *w = &a->w[i];
    worker_slot *s = &a->slots[i];
    char how[64];
    describe_status(status, how, sizeof how);
    if (atomic_load(&s->busy))
        log_error("worker %d %s while serving route %.*s (request %.*s)", (int)w->pid, how,
                  SCOREBOARD_TEXT, s->route, SCOREBOARD_TEXT, s->request);
    else
        log_error("worker %d %s outside any request", (int)w->pid, how);
    a->crash_streak++;
}

/* Why a worker the master did not retire went, for the metrics; NULL when it was retired. */
static const char *restart_reason(const worker_rec *w, bool clean)
{
    if (w->abort_sent)
        return "timeout";
    if (w->state == W_STOPPING)
        return NULL;
    return clean ? "max_requests" : "crash";
}

static void worker_exited(arbiter *a, int i, int status)
{
    worker_rec *w = &a->w[i];
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (restart_reason(w, clean) != NULL && !a->stopping)
        appserver_metrics_restart(restart_reason(w, clean));
    if (!w->booted && !clean)
        boot_failed(a, i, status);
    else if (!clean && !w->abort_sent && !(w->kill_sent && w->state == W_STOPPING))
        crashed(a, i, status);
    else if (w->abort_sent)
        a->crash_streak++;
    else
        log_debug("worker %d exited", (int)w->pid);
    /* a new worker lost before the switch: the reload cannot complete with the set it has */
    if (a->next.id && w->gen == a->next.id && w->booted && w->state != W_STOPPING)
        abort_reload(a, "a new worker died before the switch");
    *w = (worker_rec){0};
    int64_t delay = backoff_ms(a->crash_streak);
    if (delay > 0 && !a->stopping) {
        a->next_spawn_ms = scoreboard_now_ms() + delay;
        log_warn("workers crashed %d times in a row; waiting %lld ms before forking again",
                 a->crash_streak, (long long)delay);
    }
}

static void reap(arbiter *a)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < MAX_WORKERS; i++) {
            if (a->w[i].state != W_FREE && a->w[i].pid == pid) {
                worker_exited(a, i, status);
                break;
            }
        }
    }
    if (a->stopping && !any_alive(a))
        uv_stop(&a->loop);
    else
        maintain(a);
}

static void check_timeout(arbiter *a, int i, int64_t now)
{
    worker_rec *w = &a->w[i];
    worker_slot *s = &a->slots[i];
    if (w->abort_sent)
        return;
    int64_t beat = atomic_load(&s->beat_ms);
    int64_t silent = now - (beat > a->judged_from_ms ? beat : a->judged_from_ms);
    if (silent <= a->opts->timeout_ms)
        return;
    if (atomic_load(&s->busy))
        log_error("worker %d timed out (no heartbeat for %lld ms) while serving route %.*s "
                  "(request %.*s); sending SIGABRT",
                  (int)w->pid, (long long)silent, SCOREBOARD_TEXT, s->route, SCOREBOARD_TEXT,
                  s->request);
    else
        log_error("worker %d timed out (no heartbeat for %lld ms) %s; sending SIGABRT", (int)w->pid,
                  (long long)silent,
                  w->state == W_BOOTING ? "while loading the modules" : "outside any request");
    kill(w->pid, SIGABRT);
    appserver_metrics_timeout();
    w->abort_sent = true;
    w->kill_at_ms = now + ABORT_TO_KILL_MS;
}

/* A master that did not run for a while (SIGSTOP, a suspended machine, starvation) saw no
 * heartbeat in that time either: that silence is its own, not the workers'. They get a full
 * timeout from now; one that is really stuck is still caught then. */
static void forgive_own_pause(arbiter *a, int64_t now)
{
    int64_t gap = now - a->last_tick_ms;
    if (gap > STALL_MS) {
        log_warn("the master did not run for %lld ms (stopped?); worker heartbeats are judged "
                 "from now",
                 (long long)gap);
        a->judged_from_ms = now;
    }
    a->last_tick_ms = now;
}

static void on_tick(uv_timer_t *t)
{
    arbiter *a = t->data;
    int64_t now = scoreboard_now_ms();
    int busy = 0, idle = 0;
    forgive_own_pause(a, now);
    for (int i = 0; i < MAX_WORKERS; i++) {
        worker_rec *w = &a->w[i];
        if (w->state == W_FREE)
            continue;
        if (w->state == W_READY && atomic_load(&a->slots[i].busy))
            busy++;
        else if (w->state == W_READY)
            idle++;
        check_timeout(a, i, now);
        bool deadline = w->kill_at_ms && now >= w->kill_at_ms;
        if ((deadline || (a->stopping && now >= a->stop_deadline_ms)) && !w->kill_sent) {
            if (!w->abort_sent)
                log_warn("worker %d did not stop in time; SIGKILL", (int)w->pid);
            kill(w->pid, SIGKILL);
            w->kill_sent = true;
        }
        uint64_t served = atomic_load(&a->slots[i].requests);
        if (served > w->seen_requests) {
            w->seen_requests = served;
            a->crash_streak = 0; /* requests complete: not a crash loop */
        }
    }
    appserver_metrics_workers(busy, idle);
    maintain(a);
}

static void on_signal(int sig, void *data)
{
    arbiter *a = data;
    switch (sig) {
    case SIGCHLD:
        reap(a);
        break;
    case SIGTERM:
        stop_all(a, false);
        break;
    case SIGINT:
    case SIGQUIT:
        stop_all(a, true);
        break;
    case SIGHUP:
        begin_reload(a);
        break;
    case SIGTTIN:
        if (a->target < MAX_WORKERS / 2)
            a->target++;
        log_info("TTIN: %d workers", a->target);
        maintain(a);
        break;
    case SIGTTOU:
        if (a->target > 1)
            a->target--;
        log_info("TTOU: %d workers", a->target);
        maintain(a);
        break;
    case SIGUSR1:
        log_reopen();
        for (int i = 0; i < MAX_WORKERS; i++)
            signal_worker(a, i, SIGUSR1);
        break;
    default:
        break;
    }
}

static int setup(arbiter *a, char *err, size_t errlen)
{
    int pipefd[2];
    if (uv_loop_init(&a->loop) != 0 || pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "cannot set up the event loop: %s", strerror(errno));
        return -1;
    }
    a->notify_rd = pipefd[0];
    a->notify_wr = pipefd[1];
    a->slots = scoreboard_create(MAX_WORKERS);
    if (!a->slots) {
        snprintf(err, errlen, "cannot map the scoreboard: %s", strerror(errno));
        return -1;
    }
    appserver_metrics_open();
    a->last_gen_id = 1;
    if (module_gen_open(&a->cur, &a->opts->modules, a->last_gen_id, err, errlen) != 0)
        return -1;
    if (signals_watch(&a->sigs, &a->loop, arbiter_signals, on_signal, a) != 0) {
        snprintf(err, errlen, "cannot watch signals");
        return -1;
    }
    uv_poll_init(&a->loop, &a->notify_poll, a->notify_rd);
    a->notify_poll.data = a;
    uv_poll_start(&a->notify_poll, UV_READABLE, on_notify);
    uv_timer_init(&a->loop, &a->tick);
    a->tick.data = a;
    a->last_tick_ms = scoreboard_now_ms();
    uv_timer_start(&a->tick, on_tick, TICK_MS, TICK_MS);
    return 0;
}

static void teardown(arbiter *a)
{
    signals_close(&a->sigs);
    uv_close((uv_handle_t *)&a->notify_poll, NULL);
    uv_close((uv_handle_t *)&a->tick, NULL);
    uv_run(&a->loop, UV_RUN_NOWAIT);
    uv_loop_close(&a->loop);
    close(a->notify_rd);
    close(a->notify_wr);
    module_gen_close(&a->cur);
    module_gen_close(&a->next);
    scoreboard_destroy(a->slots, MAX_WORKERS);
}

int arbiter_run(appserver_opts *opts, listen_set *listeners)
{
    static arbiter a; /* large (the worker table); one per process */
    memset(&a, 0, sizeof a);
    a.opts = opts;
    a.listeners = listeners;
    a.target = opts->workers;
    a.notify_rd = a.notify_wr = -1;
    char err[600];
    if (setup(&a, err, sizeof err) != 0) {
        log_error("%s", err);
        return 1;
    }
    srand((unsigned)getpid() ^ (unsigned)scoreboard_now_ms());
    log_info("starting %d workers for %zu module(s)", a.target, opts->modules.count);
    maintain(&a);
    uv_run(&a.loop, UV_RUN_DEFAULT);
    log_info("stopped");
    teardown(&a);
    return a.exit_code;
}
