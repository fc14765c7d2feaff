/* An edge worker: one libuv loop serving the listeners, and its signals: HUP reloads the sites
 * (a new generation, swapped in whole or not at all), USR1 reopens the logs, TERM drains the
 * connections and stops, INT and QUIT stop at once. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "shared/log.h"
#include "shared/sdnotify.h"
#include "shared/signals.h"
#include "edge/edge.h"

edge_worker edge_w;
static signals_set worker_signals;
static uv_timer_t grace_timer;
/* A worker of a master leaves sd_notify to it: only the main pid may speak by default. */
static bool speaks_for_itself;
/* The master's reload requests come here and the answers go back (-1 alone). */
static int master_channel = -1;
static uv_poll_t master_poll;

uint64_t edge_now_ms(void)
{
    return uv_now(edge_w.loop);
}

void edge_maybe_exit(void)
{
    if (edge_w.draining && edge_w.conn_count == 0)
        uv_stop(edge_w.loop);
}

void edge_worker_set_limits(edge_worker *w)
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

/* A reload in two steps, so that the workers of a master, each building at its own pace, switch
 * at nearly the same moment: prepare builds the new generation aside, commit swaps it in. */
static struct {
    edge_gen *gen;     /* built, not yet serving; NULL when the reload was refused */
    hearth_config cfg; /* the config file it came from */
    bool has_cfg;
} prepared;

static void drop_prepared(void)
{
    if (prepared.gen)
        edge_gen_unref(prepared.gen);
    if (prepared.has_cfg)
        config_free(&prepared.cfg);
    memset(&prepared, 0, sizeof(prepared));
}

/* A new generation from the config file (or the same flags, re-reading the certificate
 * files). Any failure leaves the running generation untouched. */
static void prepare_gen(void)
{
    char err[CONFIG_ERR_MAX];
    drop_prepared();
    const hearth_config *cfg = &edge_w.cfg;
    if (edge_w.config_path) {
        if (config_load(&prepared.cfg, edge_w.config_path, err, sizeof(err)) < 0) {
            log_error("reload refused, keeping the running configuration: %s", err);
            return;
        }
        prepared.has_cfg = true;
        cfg = &prepared.cfg;
    }
    prepared.gen = edge_gen_build(cfg, edge_w.gen, err, sizeof(err));
    if (!prepared.gen) {
        log_error("reload refused, keeping the running configuration: %s", err);
        drop_prepared();
    }
}

/* The ticket keys change with the sites, whatever became of them: a lone worker reads the
 * keys file itself, a master's worker takes what the master read for all of them. */
static void reload_prepare(void)
{
    prepare_gen();
    if (speaks_for_itself)
        edge_tickets_load(prepared.has_cfg ? &prepared.cfg : &edge_w.cfg);
    edge_tickets_prepare();
}

static void commit_gen(void)
{
    if (!prepared.gen)
        return;
    if (prepared.has_cfg) {
        /* Listening addresses need a restart; everything else takes effect now. */
        config_edge keep = edge_w.cfg.edge;
        edge_w.cfg.edge = prepared.cfg.edge;
        prepared.cfg.edge = keep;
        edge_worker_set_limits(&edge_w);
    }
    edge_gen *old = edge_w.gen;
    edge_w.gen = prepared.gen;
    prepared.gen = NULL;
    edge_tls_set_gen(edge_w.gen);
    edge_upstreams_serve(old, edge_w.gen);
    edge_gen_unref(old);
    drop_prepared();
    edge_conn_reloaded(&edge_w);
    log_info("reloaded: %zu site(s)", edge_w.gen->site_count);
}

static void reload_commit(void)
{
    edge_tickets_commit();
    commit_gen();
}

/* SIGHUP to this worker itself. */
static void reload(void)
{
    reload_prepare();
    reload_commit();
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
    uv_timer_start(&grace_timer, on_grace_timeout, (uint64_t)edge_w.graceful_timeout_ms, 0);
    uv_unref((uv_handle_t *)&grace_timer);
    edge_maybe_exit();
}

/* The master's reload, one step per message (its lowest bit: 0 prepare, 1 commit). The answer,
 * once the step is done, lets the master go on, and report the reload done after the commits:
 * every worker then serves what it built (or keeps what it had, when the reload was refused). */
static void on_master(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    uint32_t step;
    ssize_t n = recv(master_channel, &step, sizeof(step), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n != sizeof(step)) {
        uv_poll_stop(h); /* the master is gone; its death signal stops this worker */
        return;
    }
    if (step & 1)
        reload_commit();
    else
        reload_prepare();
    if (send(master_channel, &step, sizeof(step), MSG_NOSIGNAL) < 0)
        log_warn("answering the master's reload: %s", strerror(errno));
}

static void watch_master(int channel)
{
    master_channel = channel;
    if (channel < 0)
        return;
    uv_poll_init(edge_w.loop, &master_poll, channel);
    uv_poll_start(&master_poll, UV_READABLE, on_master);
    uv_unref((uv_handle_t *)&master_poll); /* a draining worker stops all the same */
}

static void on_signal(int signum, void *data)
{
    (void)data;
    switch (signum) {
    case SIGHUP:
        if (speaks_for_itself)
            sd_notify_reloading();
        reload();
        if (speaks_for_itself)
            sd_notify_send("READY=1");
        break;
    case SIGUSR1:
        edge_access_reopen(&edge_w);
        log_reopen();
        break;
    case SIGTERM:
        if (speaks_for_itself)
            sd_notify_send("STOPPING=1");
        stop_graceful();
        break;
    default: /* INT, QUIT: fast stop */
        _exit(0);
    }
}

int edge_worker_run(bool alone, int channel, bool reload_first)
{
    speaks_for_itself = alone;
    edge_w.loop = uv_default_loop();
    static const int sigs[] = {SIGHUP, SIGUSR1, SIGTERM, SIGINT, SIGQUIT, 0};
    signals_watch(&worker_signals, edge_w.loop, sigs, on_signal, NULL);
    if (reload_first)
        reload();
    edge_upstreams_serve(NULL, edge_w.gen);
    watch_master(channel);
    edge_slots_init(&edge_w);
    edge_memory_init(&edge_w);
    edge_listeners_start(&edge_w);
    uv_run(edge_w.loop, UV_RUN_DEFAULT);
    return 0;
}
