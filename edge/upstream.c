/* Which upstream a request goes to, and whether each is up: round-robin or least-connections
 * over the upstreams that are up, passive checks (nginx's max_fails and fail_timeout) on what
 * the proxy sees, and the one timer per worker that runs the active checks (health.c) and ends
 * the fail_timeouts. Each worker keeps its own view, as nginx's workers do without a shared
 * zone: it routes by what it saw itself, and needs no lock or shared memory to do so. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "shared/log.h"
#include "edge/edge.h"

static uv_timer_t tick;
static bool tick_ready;
static edge_gen *serving; /* the generation whose checks run */

/* One upstream has nowhere to send its requests instead: as nginx does with a single server,
 * failures never take it out (they would only turn a restart's blip into fail_timeout of 502s). */
static bool passive_on(const edge_site *s)
{
    return s->max_fails > 0 && s->fail_timeout_ms > 0 && s->upstream_count > 1;
}

/* Bring u->down up to date, reporting a change; a fail_timeout that ended says so here. */
static void refresh(edge_upstream *u, uint64_t now)
{
    bool expired = u->failed_until_ms != 0 && u->failed_until_ms <= now;
    if (expired)
        u->failed_until_ms = 0;
    bool down = u->check_down || u->failed_until_ms != 0;
    if (down == u->down)
        return;
    if (expired && !down)
        log_info("upstream %s: its fail_timeout is over; back in rotation", u->spec);
    u->down = down;
    edge_metrics_upstream_state(u, true);
}

static void run_due(void);

edge_upstream *edge_upstream_pick(edge_site *s, uint64_t tried)
{
    uint64_t now = edge_now_ms();
    size_t n = s->upstream_count, live = 0;
    if ((size_t)__builtin_popcountll(tried) >= s->max_tries)
        return NULL;
    edge_upstream *best = NULL;
    size_t best_i = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = (s->rr_next + k) % n;
        edge_upstream *u = &s->upstreams[i];
        refresh(u, now);
        if (u->down)
            continue;
        live++;
        if (tried & (UINT64_C(1) << i))
            continue;
        if (!best || u->busy < best->busy) {
            best = u;
            best_i = i;
        }
        if (s->balance == BALANCE_ROUND_ROBIN)
            break;
    }
    if (best) {
        s->rr_next = best_i + 1; /* least_conn too: a tie goes round */
        return best;
    }
    if (live == 0)
        log_repeated(&s->all_down_log, now, HLOG_WARN,
                     "site %s: all %zu upstream(s) are down; answering 502", s->name, n);
    return NULL;
}

int edge_upstream_connect(const edge_upstream *u)
{
    int fd = socket(u->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)&u->addr, u->addrlen) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

void edge_upstream_failed(edge_upstream *u, const char *why)
{
    edge_site *s = u->site;
    uint64_t now = edge_now_ms();
    edge_metrics_upstream_failed(u);
    if (!passive_on(s) || u->failed_until_ms > now) {
        /* never taken out, or out already (this request was on it when it went) */
        log_repeated(&u->fail_log, now, HLOG_WARN, "upstream %s failed: %s", u->spec, why);
        return;
    }
    if (u->fails == 0 || now - u->fail_window_ms >= (uint64_t)s->fail_timeout_ms) {
        u->fails = 0;
        u->fail_window_ms = now;
    }
    if (++u->fails < s->max_fails) {
        log_repeated(&u->fail_log, now, HLOG_WARN,
                     "upstream %s failed: %s (%d of max_fails %d within fail_timeout)", u->spec,
                     why, u->fails, s->max_fails);
        return;
    }
    u->fails = 0;
    u->failed_until_ms = now + (uint64_t)s->fail_timeout_ms;
    /* A change of state is said each time: it comes at most once per fail_timeout. */
    log_warn("upstream %s failed: %s; skipping it for %lld ms", u->spec, why,
             (long long)s->fail_timeout_ms);
    refresh(u, now);
    run_due(); /* wake when the fail_timeout ends, to say it is back */
}

void edge_upstream_checked(edge_upstream *u, bool passed, const char *why)
{
    const config_health_check *c = &u->site->check;
    uint64_t now = edge_now_ms();
    if (passed) {
        u->check_fails = 0;
        u->check_passes += u->check_passes < c->rise;
    } else {
        u->check_passes = 0;
        u->check_fails += u->check_fails < c->fall;
        log_debug("upstream %s: health check failed: %s", u->spec, why);
    }
    if (!u->check_down && u->check_fails >= c->fall) {
        u->check_down = true;
        log_warn("upstream %s failed %d health check(s) in a row (%s); no traffic until it passes "
                 "%d",
                 u->spec, c->fall, why, c->rise);
    } else if (u->check_down && u->check_passes >= c->rise) {
        u->check_down = false;
        log_info("upstream %s passed %d health check(s) in a row; %s", u->spec, c->rise,
                 u->failed_until_ms > now ? "still out until its fail_timeout ends"
                                          : "back in rotation");
    }
    refresh(u, now);
}

/* ---- the worker's timer: checks that are due, fail_timeouts that end ---- */

static void on_tick(uv_timer_t *t)
{
    (void)t;
    run_due();
}

static uint64_t run_due_site(edge_site *s, uint64_t now, uint64_t next)
{
    for (size_t i = 0; i < s->upstream_count; i++) {
        edge_upstream *u = &s->upstreams[i];
        refresh(u, now);
        if (u->failed_until_ms != 0 && u->failed_until_ms < next)
            next = u->failed_until_ms;
        if (!s->check.enabled)
            continue;
        /* a check still running when the next is due delays it: one at a time */
        if (!u->probe && u->check_due_ms <= now) {
            u->check_due_ms = now + (uint64_t)s->check.interval_ms;
            edge_health_probe(u);
        }
        if (u->check_due_ms < next)
            next = u->check_due_ms;
    }
    return next;
}

static void run_due(void)
{
    if (!tick_ready || !serving)
        return;
    uint64_t now = edge_now_ms(), next = UINT64_MAX;
    for (size_t i = 0; i < serving->site_count; i++)
        next = run_due_site(&serving->sites[i], now, next);
    if (next == UINT64_MAX)
        uv_timer_stop(&tick);
    else
        uv_timer_start(&tick, on_tick, next > now ? next - now : 1, 0);
}

static edge_upstream *find_upstream(edge_gen *g, const char *site, const char *spec)
{
    for (size_t i = 0; g && i < g->site_count; i++) {
        if (strcmp(g->sites[i].name, site) != 0)
            continue;
        for (size_t j = 0; j < g->sites[i].upstream_count; j++)
            if (strcmp(g->sites[i].upstreams[j].spec, spec) == 0)
                return &g->sites[i].upstreams[j];
    }
    return NULL;
}

/* A reload keeps what this worker knows of an upstream it still proxies to: a dead one stays
 * out rather than getting traffic again until it fails anew. */
static void carry_over(edge_upstream *u, const edge_upstream *was)
{
    u->down = was->down;
    u->fails = was->fails;
    u->fail_window_ms = was->fail_window_ms;
    u->failed_until_ms = passive_on(u->site) ? was->failed_until_ms : 0;
    if (u->site->check.enabled && was->site->check.enabled) {
        u->check_down = was->check_down;
        u->check_passes = was->check_passes;
        u->check_fails = was->check_fails;
    }
}

void edge_upstreams_serve(edge_gen *old, edge_gen *now)
{
    if (!tick_ready) {
        uv_timer_init(edge_w.loop, &tick);
        uv_unref((uv_handle_t *)&tick); /* a draining worker stops all the same */
        tick_ready = true;
    }
    for (size_t i = 0; old && old != now && i < old->site_count; i++)
        for (size_t j = 0; j < old->sites[i].upstream_count; j++)
            edge_health_cancel(&old->sites[i].upstreams[j]);
    uint64_t t = edge_now_ms();
    for (size_t i = 0; i < now->site_count; i++) {
        edge_site *s = &now->sites[i];
        for (size_t j = 0; j < s->upstream_count; j++) {
            edge_upstream *u = &s->upstreams[j];
            const edge_upstream *was = old != now ? find_upstream(old, s->name, u->spec) : NULL;
            if (was)
                carry_over(u, was);
            bool before = u->down;
            refresh(u, t);
            if (before == u->down)
                edge_metrics_upstream_state(u, false); /* this worker's gauge, as it is now */
        }
    }
    serving = now;
    run_due();
}
