/* Worker lifecycle: boot (load and initialise modules, report to the master), serve, and
 * stop gracefully on TERM or after max-requests. Signals arrive through a signalfd, because
 * handlers inherited from the master's libuv loop must never run in a worker. */
#include "appserver/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "appserver/accesslog.h"
#include "appserver/conn.h"
#include "appserver/module.h"
#include "appserver/settings.h"
#include "shared/log.h"

#define WORKER_BACKLOG 1024

typedef union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} listener;

static worker_ctx ctx;
static const worker_params *params;
static uv_loop_t loop;
static app_module *modules;
static size_t modules_loaded;
static listener *listeners;
static uv_poll_t signal_poll;
static uv_timer_t beat_timer;
static int signal_fd = -1;

static const int worker_signals[] = {SIGTERM, SIGINT,  SIGQUIT, SIGUSR1, SIGUSR2,
                                     SIGHUP,  SIGTTIN, SIGTTOU, SIGWINCH};

/* Called with every signal blocked (the master blocks them around fork). Afterwards only the
 * signals above stay blocked, to be read from the signalfd; the rest act by default. That
 * includes SIGSEGV and SIGABRT, also under a sanitizer: a crashing handler kills its worker
 * with the signal, which is what the master reports (with the route) and counts. */
static int setup_signals(void)
{
    sigset_t mine;
    sigemptyset(&mine);
    for (size_t i = 0; i < sizeof worker_signals / sizeof worker_signals[0]; i++)
        sigaddset(&mine, worker_signals[i]);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP && s != SIGPIPE)
            signal(s, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    signal_fd = signalfd(-1, &mine, SFD_NONBLOCK | SFD_CLOEXEC);
    return sigprocmask(SIG_SETMASK, &mine, NULL) == 0 && signal_fd >= 0 ? 0 : -1;
}

static void notify_master(int event)
{
    worker_notice n = {.slot = params->slot_index, .event = event};
    ssize_t w = write(params->notify_fd, &n, sizeof n);
    (void)w; /* the master also learns of a failed boot from the exit status */
}

static void on_listener_closed(uv_handle_t *h)
{
    (void)h;
}

static void finish(void)
{
    uv_stop(&loop);
}

/* Connections already in the listen queue were made before the stop: they get an answer
 * too, instead of a reset when the last copy of the socket closes. (The master removes a unix
 * socket's path first, so no new ones can join the queue meanwhile.) */
static void drain_backlog(listener *l)
{
    uv_os_fd_t fd;
    if (uv_fileno(&l->handle, &fd) != 0)
        return;
    int c;
    while ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
        conn_adopt(&ctx, c, l->handle.type == UV_TCP);
}

static void begin_stop(void)
{
    if (ctx.stopping)
        return;
    ctx.stopping = true;
    for (size_t i = 0; i < params->listen_count; i++) {
        drain_backlog(&listeners[i]);
        uv_close(&listeners[i].handle, on_listener_closed);
    }
    conn_stop_all(&ctx);
    if (ctx.conn_count == 0)
        finish();
}

static void on_max_requests(void)
{
    log_info("worker %d: served %llu requests (max-requests), restarting", (int)getpid(),
             (unsigned long long)ctx.requests);
    begin_stop();
}

static void reopen_logs(void)
{
    log_reopen();
    if (ctx.access_fd >= 0 && params->opts->access_log) {
        int fd = access_log_open(params->opts->access_log);
        if (fd >= 0) {
            close(ctx.access_fd);
            ctx.access_fd = fd;
        }
    }
}

static void on_signal(uv_poll_t *h, int status, int events)
{
    (void)h;
    (void)status;
    (void)events;
    struct signalfd_siginfo si;
    while (read(signal_fd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGTERM:
            begin_stop();
            break;
        case SIGINT:
        case SIGQUIT:
            _exit(0); /* fast stop: in-flight requests are dropped, as asked */
        case SIGUSR1:
            reopen_logs();
            break;
        default:
            break; /* HUP, TTIN, TTOU are the master's business */
        }
    }
}

static void on_beat(uv_timer_t *t)
{
    (void)t;
    atomic_store(&ctx.slot->beat_ms, scoreboard_now_ms());
    if (getppid() != params->master_pid)
        begin_stop(); /* orphaned: finish what is in flight and go */
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status == 0 && !ctx.stopping)
        conn_accept(&ctx, server);
}

static int open_listener(listener *l, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    int rc;
    if (ss.ss_family == AF_UNIX)
        rc = uv_pipe_init(&loop, &l->pipe, 0) || uv_pipe_open(&l->pipe, fd);
    else
        rc = uv_tcp_init(&loop, &l->tcp) || uv_tcp_open(&l->tcp, fd);
    return rc || uv_listen(&l->stream, WORKER_BACKLOG, on_connection) ? -1 : 0;
}

static int load_modules(char *err, size_t errlen)
{
    modules = calloc(params->module_count, sizeof *modules);
    if (!modules) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    router_init(&ctx.routes);
    if (settings_apply(params->opts, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < params->module_count; i++) {
        char open_path[64];
        snprintf(open_path, sizeof open_path, "/proc/self/fd/%d", params->module_fds[i]);
        if (module_load(&modules[i], params->module_paths[i], open_path, err, errlen) != 0 ||
            router_add_module(&ctx.routes, &modules[i], err, errlen) != 0)
            return -1;
        const hearth_module *d = modules[i].desc;
        if (d->abi_version >> 16 >= 1 && (d->flags & HEARTH_MODULE_STREAMS_BODY))
            ctx.streaming = true;
    }
    for (size_t i = 0; i < params->module_count; i++) {
        if (module_init(&modules[i], err, errlen) != 0)
            return -1;
        modules_loaded = i + 1;
    }
    return 0;
}

static void fini_modules(void)
{
    for (size_t i = modules_loaded; i > 0; i--)
        module_fini(&modules[i - 1]);
    modules_loaded = 0;
}

static int start_serving(char *err, size_t errlen)
{
    listeners = calloc(params->listen_count, sizeof *listeners);
    if (!listeners || uv_loop_init(&loop) != 0) {
        snprintf(err, errlen, "cannot set up the event loop");
        return -1;
    }
    ctx.loop = &loop;
    for (size_t i = 0; i < params->listen_count; i++) {
        if (open_listener(&listeners[i], params->listen_fds[i]) != 0) {
            snprintf(err, errlen, "cannot listen on inherited socket %d", params->listen_fds[i]);
            return -1;
        }
    }
    uv_poll_init(&loop, &signal_poll, signal_fd);
    uv_poll_start(&signal_poll, UV_READABLE, on_signal);
    uv_timer_init(&loop, &beat_timer);
    int64_t every = params->opts->timeout_ms / 4;
    every = every < 50 ? 50 : every > 1000 ? 1000 : every;
    uv_timer_start(&beat_timer, on_beat, (uint64_t)every, (uint64_t)every);
    return 0;
}

static void init_ctx(void)
{
    const appserver_opts *o = params->opts;
    memset(&ctx, 0, sizeof ctx);
    http_limits_default(&ctx.limits);
    ctx.limits.max_body = o->max_body;
    ctx.keepalive_ms = o->keepalive_ms;
    ctx.request_timeout_ms = o->timeout_ms > 10000 ? o->timeout_ms : 10000;
    ctx.slot = params->slot;
    ctx.max_requests = params->max_requests;
    ctx.on_idle = finish;
    ctx.on_max_requests = on_max_requests;
    ctx.access_fd = o->access_log ? access_log_open(o->access_log) : -1;
    arena_init(&ctx.arena);
    response_init(&ctx.res);
}

_Noreturn void worker_main(const worker_params *wp)
{
    params = wp;
    char err[600] = "";
    /* the master going away must not leave workers behind */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (setup_signals() != 0 || getppid() != wp->master_pid)
        _exit(1);
    init_ctx();
    atomic_store(&ctx.slot->beat_ms, scoreboard_now_ms());
    if (load_modules(err, sizeof err) != 0 || start_serving(err, sizeof err) != 0) {
        log_error("worker %d: refusing to start: %s", (int)getpid(), err);
        snprintf(wp->slot->boot_error, sizeof wp->slot->boot_error, "%s", err);
        fini_modules();
        notify_master(NOTIFY_BOOT_FAILED);
        _exit(WORKER_EXIT_BOOT_FAILED);
    }
    log_debug("worker %d: serving", (int)getpid());
    notify_master(NOTIFY_BOOTED);
    uv_run(&loop, UV_RUN_DEFAULT);
    fini_modules();
    log_debug("worker %d: stopped after %llu requests", (int)getpid(),
              (unsigned long long)ctx.requests);
    _exit(0);
}
