/* edge: the TLS front (nginx's part). Parses options, opens the listeners, then runs one libuv
 * loop per process: alone with one worker, or as a small master that forks N workers, forwards
 * signals to them and replaces the ones that die. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shared/log.h"
#include "shared/privs.h"
#include "shared/sdnotify.h"
#include "shared/signals.h"
#include "edge/edge.h"
#include "edge/options.h"

edge_worker edge_w;
static edge_options opts;
static signals_set worker_signals;
/* Workers of a master leave sd_notify to it: only the main pid may speak by default. */
static bool in_master_mode;
static uv_timer_t grace_timer;

uint64_t edge_now_ms(void)
{
    return uv_now(edge_w.loop);
}

void edge_maybe_exit(void)
{
    if (edge_w.draining && edge_w.conn_count == 0)
        uv_stop(edge_w.loop);
}

static void set_limits(edge_worker *w)
{
    http_limits_default(&w->limits);
    w->limits.max_header_bytes = w->cfg.edge.max_header_size;
    w->limits.max_header_count = (size_t)w->cfg.edge.max_header_count;
    if (w->limits.max_header_count > EDGE_MAX_HEADERS)
        w->limits.max_header_count = EDGE_MAX_HEADERS;
    if (w->limits.max_request_line > w->cfg.edge.max_header_size)
        w->limits.max_request_line = w->cfg.edge.max_header_size;
    w->limits.max_body = w->cfg.edge.max_body_size;
}

static int open_acme_dir(edge_worker *w)
{
    w->acme_fd = -1;
    if (!opts.acme_webroot)
        return 0;
    w->acme_fd = open(opts.acme_webroot, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (w->acme_fd < 0)
        log_warn("acme webroot %s: %s (challenges will get 404)", opts.acme_webroot,
                 strerror(errno));
    return 0;
}

/* SIGHUP: a new generation from the config file (or the same flags, re-reading the
 * certificate files). Any failure leaves the running generation untouched. */
static void reload(void)
{
    char err[512];
    hearth_config fresh;
    hearth_config *cfg = &edge_w.cfg;
    if (opts.config_path) {
        if (config_load(&fresh, opts.config_path, err, sizeof(err)) < 0) {
            log_error("reload refused, keeping the running configuration: %s", err);
            return;
        }
        cfg = &fresh;
    }
    edge_gen *g = edge_gen_build(cfg, edge_w.gen, err, sizeof(err));
    if (!g) {
        log_error("reload refused, keeping the running configuration: %s", err);
        if (cfg == &fresh)
            config_free(&fresh);
        return;
    }
    if (cfg == &fresh) {
        /* Listening addresses need a restart; everything else takes effect now. */
        config_edge keep = edge_w.cfg.edge;
        edge_w.cfg.edge = fresh.edge;
        fresh.edge = keep;
        config_free(&fresh);
        set_limits(&edge_w);
    }
    edge_gen *old = edge_w.gen;
    edge_w.gen = g;
    edge_tls_set_gen(g);
    edge_gen_unref(old);
    log_info("reloaded: %zu site(s)", g->site_count);
}

static void on_grace_timeout(uv_timer_t *t)
{
    (void)t;
    log_warn("graceful stop timed out with %d connection(s) open", edge_w.conn_count);
    uv_stop(edge_w.loop);
}

static void stop_graceful(void)
{
    if (edge_w.draining)
        return;
    edge_listeners_close(&edge_w);
    edge_w.draining = true;
    edge_conn_drain_idle(&edge_w);
    uv_timer_init(edge_w.loop, &grace_timer);
    uv_timer_start(&grace_timer, on_grace_timeout, (uint64_t)opts.graceful_timeout_ms, 0);
    uv_unref((uv_handle_t *)&grace_timer);
    edge_maybe_exit();
}

static void on_signal(int signum, void *data)
{
    (void)data;
    switch (signum) {
    case SIGHUP:
        if (!in_master_mode)
            sd_notify_reloading();
        reload();
        if (!in_master_mode)
            sd_notify_send("READY=1");
        break;
    case SIGUSR1:
        edge_access_reopen(&edge_w);
        log_reopen();
        break;
    case SIGTERM:
        if (!in_master_mode)
            sd_notify_send("STOPPING=1");
        stop_graceful();
        break;
    default: /* INT, QUIT: fast stop */
        _exit(0);
    }
}

static int run_worker(void)
{
    edge_w.loop = uv_default_loop();
    static const int sigs[] = {SIGHUP, SIGUSR1, SIGTERM, SIGINT, SIGQUIT, 0};
    signals_watch(&worker_signals, edge_w.loop, sigs, on_signal, NULL);
    edge_slots_init(&edge_w);
    edge_memory_init(&edge_w);
    edge_listeners_start(&edge_w);
    uv_run(edge_w.loop, UV_RUN_DEFAULT);
    return 0;
}

/* ---- master ---- */

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
        exit(run_worker());
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

/* No libuv here: the master only waits for signals, so sigwaitinfo is the whole loop and the
 * workers fork from a process without an event loop to inherit. */
static int run_master(int n)
{
    sigset_t set, old;
    sigemptyset(&set);
    int sigs[] = {SIGHUP, SIGUSR1, SIGTERM, SIGINT, SIGQUIT, SIGCHLD};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(&set, sigs[i]);
    sigprocmask(SIG_BLOCK, &set, &old);
    in_master_mode = true;
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

static int worker_count(void)
{
    if (edge_w.cfg.edge.workers > 0)
        return edge_w.cfg.edge.workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int https_port(void)
{
    if (edge_w.cfg.edge.https.count == 0)
        return 0;
    const char *a = edge_w.cfg.edge.https.items[0];
    const char *colon = strrchr(a, ':');
    return atoi(colon ? colon + 1 : a);
}

/* Started as root (ports below 1024 without the supervisor): once the sockets are bound, the
 * process that parses the internet's bytes keeps no privilege. Certificates and roots must then
 * be readable by that user, for reloads too, which is how certd writes them. */
static int drop_privileges(void)
{
    char err[256];
    uid_t uid;
    gid_t gid;
    if (!edge_w.cfg.user || geteuid() != 0)
        return 0;
    if (privs_lookup(edge_w.cfg.user, edge_w.cfg.group, &uid, &gid, err, sizeof(err)) < 0 ||
        privs_drop(uid, gid, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return 1;
    }
    log_info("running as user %s", edge_w.cfg.user);
    return 0;
}

static void init_log(void)
{
    int lvl = log_level_parse(edge_w.cfg.log_level ? edge_w.cfg.log_level : "info");
    log_init("edge", lvl < 0 ? LOG_INFO : (log_level)lvl, edge_w.cfg.log_format == LOG_FORMAT_JSON);
}

/* The sites as a start builds them: certificates, keys and their pairing, static roots. */
static int build_sites(void)
{
    char err[512];
    edge_tls_init_ticket_secret();
    edge_w.gen = edge_gen_build(&edge_w.cfg, NULL, err, sizeof(err));
    if (!edge_w.gen) {
        log_error("%s", err);
        return 2;
    }
    return 0;
}

/* --check (like nginx -t): fail exactly where a start would fail on the config, serve nothing.
 * The supervisor runs it before it starts or reloads the edge with a config. */
static int check_config(void)
{
    init_log();
    int rc = build_sites();
    if (rc == 0)
        log_info("configuration ok");
    return rc;
}

static int setup(void)
{
    char err[512];
    init_log();
    signals_ignore_sigpipe();
    set_limits(&edge_w);
    open_acme_dir(&edge_w);
    edge_w.https_port = https_port();
    edge_metrics_open(worker_count());
    int rc = build_sites();
    if (rc != 0)
        return rc;
    edge_tls_set_gen(edge_w.gen);
    if (edge_access_open(&edge_w, edge_w.cfg.edge.access_log,
                         edge_w.cfg.edge.access_log_format == ACCESS_LOG_JSON) < 0) {
        log_error("access log %s: %s", edge_w.cfg.edge.access_log, strerror(errno));
        return 1;
    }
    if (edge_listeners_open(&edge_w, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return 1;
    }
    return drop_privileges();
}

int main(int argc, char **argv)
{
    char err[512];
    if (edge_options_parse(&opts, argc, argv, err, sizeof(err)) < 0) {
        fprintf(stderr, "edge: %s\n", err);
        return 2;
    }
    if (opts.help) {
        edge_usage(stdout);
        return 0;
    }
    edge_w.cfg = opts.cfg;
    edge_w.config_path = opts.config_path;
    if (opts.check)
        return check_config();
    int rc = setup();
    if (rc != 0)
        return rc;
    int n = worker_count();
    log_info("listening on %zu socket(s), %d worker(s), %zu site(s)", edge_w.listener_count, n,
             edge_w.gen->site_count);
    if (n == 1) {
        sd_notify_send("READY=1");
        return run_worker();
    }
    return run_master(n);
}
