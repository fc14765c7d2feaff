/* Connection slots under pressure. A full worker used to stop accepting, so newcomers waited in
 * the kernel's backlog (or timed out) behind connections doing nothing useful. Now it sheds the
 * connection cheapest to lose for each newcomer: an idle keep-alive one, else the one that has
 * waited longest for its request head (what a slowloris connection looks like, and a normal
 * client's never does for long). Past pressure_threshold, heads also get a shorter timeout, and
 * what was shed is summarised in the log once per pressure_log_interval. */
#include "shared/log.h"
#include "edge/http1.h"

/* How often waiting heads are held to the shorter timeout while slots run low: well under any
 * sensible pressure_header_timeout, rare enough to cost nothing. */
#define PRESSURE_SWEEP_MS 250

typedef struct {
    edge_conn *first, *last;
} wait_queue;

/* One worker per process, so one set of queues per process. */
static wait_queue queues[EDGE_WAIT__COUNT];
static uv_timer_t sweep_timer, log_timer;
/* Counted since the last log line. */
static struct {
    unsigned long idle, heads, timed_out, none_free;
} shed;

void edge_slots_init(edge_worker *w)
{
    uv_timer_init(w->loop, &sweep_timer);
    uv_timer_init(w->loop, &log_timer);
    /* Neither keeps a draining worker alive. */
    uv_unref((uv_handle_t *)&sweep_timer);
    uv_unref((uv_handle_t *)&log_timer);
}

static void unlink_waiting(edge_conn *c)
{
    wait_queue *q = &queues[c->wait];
    if (c->wait == EDGE_WAIT_NONE)
        return;
    if (c->wait_prev)
        c->wait_prev->wait_next = c->wait_next;
    else
        q->first = c->wait_next;
    if (c->wait_next)
        c->wait_next->wait_prev = c->wait_prev;
    else
        q->last = c->wait_prev;
    c->wait_next = c->wait_prev = NULL;
    c->wait = EDGE_WAIT_NONE;
}

void edge_slots_wait(edge_conn *c, edge_wait what)
{
    unlink_waiting(c);
    wait_queue *q = &queues[what];
    c->wait = what;
    c->wait_since_ms = edge_now_ms();
    c->wait_prev = q->last;
    if (q->last)
        q->last->wait_next = c;
    else
        q->first = c;
    q->last = c;
    /* A full worker that had nothing to shed can make room again. */
    if (edge_w.conn_count >= edge_w.cfg.edge.max_connections)
        edge_listeners_pause(&edge_w, false);
}

void edge_slots_busy(edge_conn *c)
{
    unlink_waiting(c);
}

static void on_log(uv_timer_t *t)
{
    if (!shed.idle && !shed.heads && !shed.timed_out && !shed.none_free) {
        uv_timer_stop(t); /* the episode is over; the next one is logged from its start */
        return;
    }
    const config_edge *e = &edge_w.cfg.edge;
    log_warn("connection slots: %d of max_connections %d open; in the last %lld s shed %lu idle "
             "keep-alive and %lu unfinished request heads for newcomers, closed %lu heads at "
             "pressure_header_timeout (%lld ms), found every slot busy %lu times",
             edge_w.conn_count, e->max_connections, (long long)(e->pressure_log_interval_ms / 1000),
             shed.idle, shed.heads, shed.timed_out, (long long)e->pressure_header_timeout_ms,
             shed.none_free);
    shed.idle = shed.heads = shed.timed_out = shed.none_free = 0;
}

/* One line per interval with the counts, not one per connection: under attack that would be
 * thousands a second. */
static void count(unsigned long *what)
{
    ++*what;
    if (!uv_is_active((uv_handle_t *)&log_timer)) {
        uint64_t every = (uint64_t)edge_w.cfg.edge.pressure_log_interval_ms;
        uv_timer_start(&log_timer, on_log, every, every);
    }
}

bool edge_slots_can_shed(void)
{
    return queues[EDGE_WAIT_IDLE].first || queues[EDGE_WAIT_HEAD].first;
}

void edge_slots_shed_one(void)
{
    edge_conn *c = queues[EDGE_WAIT_IDLE].first;
    if (c) {
        count(&shed.idle);
    } else if ((c = queues[EDGE_WAIT_HEAD].first)) {
        count(&shed.heads);
    } else {
        return;
    }
    log_debug("%s: closed to make room for a new connection", c->peer);
    edge_conn_close(c);
}

void edge_slots_none_free(void)
{
    count(&shed.none_free);
}

static bool under_pressure(void)
{
    const config_edge *e = &edge_w.cfg.edge;
    return edge_w.conn_count >= e->pressure_threshold * e->max_connections;
}

/* The queue is in waiting order, so only its front is ever looked at. */
static void on_sweep(uv_timer_t *t)
{
    if (!under_pressure()) {
        uv_timer_stop(t);
        return;
    }
    uint64_t now = edge_now_ms();
    uint64_t limit = (uint64_t)edge_w.cfg.edge.pressure_header_timeout_ms;
    edge_conn *c;
    while ((c = queues[EDGE_WAIT_HEAD].first) && now - c->wait_since_ms >= limit) {
        count(&shed.timed_out);
        log_debug("%s: request head not complete within the pressure header timeout", c->peer);
        edge_conn_close(c);
    }
}

void edge_slots_accepted(void)
{
    if (under_pressure() && !uv_is_active((uv_handle_t *)&sweep_timer))
        uv_timer_start(&sweep_timer, on_sweep, PRESSURE_SWEEP_MS, PRESSURE_SWEEP_MS);
}
