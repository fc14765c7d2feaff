/* The edge's metrics (docs/metrics.md): requests, bytes and durations per site, connections, TLS
 * handshakes and upstream timings, counted in shared/metrics' region by one-line hooks in the
 * places where these things happen. Each worker counts in a shard of its own, so a request
 * costs a few uncontended atomic adds; with metrics off every hook is one test of a NULL. */
#include <string.h>

#include "shared/metrics.h"
#include "edge/edge.h"
#include "edge/req.h"

/* Sites and upstreams past these are counted together as "other": the file has a fixed size. */
#define SITES_MAX 32
#define UPSTREAMS_MAX 16
#define STATES_MAX 32 /* a site's upstream: its up gauge and transitions */
enum { SITE_NONE, SITE_OTHER, SITE_FIRST };
enum { UPSTREAM_OTHER, UPSTREAM_FIRST };
enum { STATE_OTHER, STATE_FIRST };

/* Milliseconds, from the event loop's clock; exposed as seconds. */
static const uint64_t bounds_ms[] = {1,   5,    10,   25,   50,    100,   250,
                                     500, 1000, 2500, 5000, 10000, 30000, 60000};

typedef struct {
    char name[256];
    metric_ref requests[5]; /* by status class, 1xx to 5xx */
    metric_ref bytes, duration;
    metric_ref proxy_502, proxy_504, retries;
    metric_ref limited;
} site_refs;

typedef struct {
    char spec[256];
    metric_ref connect, header, failures;
} upstream_refs;

typedef struct {
    char site[256], spec[256];
    metric_ref up, to_down, to_up;
} state_refs;

static metrics_region *region;
static bool claimed;
static struct {
    int requests, bytes, duration, proxy_errors, retries, connect, header, failures, up, moves,
        limited;
} fam;
static metric_ref open_conns, accepted, tls_full, tls_resumed, tls_failed, limited_conns;
static site_refs sites[SITE_FIRST + SITES_MAX];
static int site_count;
static upstream_refs upstreams[UPSTREAM_FIRST + UPSTREAMS_MAX];
static int upstream_count;
static state_refs states[STATE_FIRST + STATES_MAX];
static int state_count;

/* Workers fork from a master that counts nothing: each takes its shard on its first count. */
static bool counting(void)
{
    if (region == NULL)
        return false;
    if (!claimed) {
        metrics_claim_shard(region);
        claimed = true;
    }
    return true;
}

static void make_site(site_refs *s, const char *name)
{
    static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    snprintf(s->name, sizeof(s->name), "%s", name);
    for (int k = 0; k < 5; k++)
        s->requests[k] = metrics_series(region, fam.requests, (const char *[]){name, classes[k]});
    s->bytes = metrics_series(region, fam.bytes, (const char *[]){name});
    s->duration = metrics_series(region, fam.duration, (const char *[]){name});
    s->proxy_502 = metrics_series(region, fam.proxy_errors, (const char *[]){name, "502"});
    s->proxy_504 = metrics_series(region, fam.proxy_errors, (const char *[]){name, "504"});
    s->retries = metrics_series(region, fam.retries, (const char *[]){name});
    s->limited = metrics_series(region, fam.limited, (const char *[]){name});
}

static void make_upstream(upstream_refs *u, const char *spec)
{
    snprintf(u->spec, sizeof(u->spec), "%s", spec);
    u->connect = metrics_series(region, fam.connect, (const char *[]){spec});
    u->header = metrics_series(region, fam.header, (const char *[]){spec});
    u->failures = metrics_series(region, fam.failures, (const char *[]){spec});
}

static void make_state(state_refs *st, const char *site, const char *spec)
{
    snprintf(st->site, sizeof(st->site), "%s", site);
    snprintf(st->spec, sizeof(st->spec), "%s", spec);
    /* the ones counted together as "other" share no gauge: no one worker could set it, and a
     * constant 0 would look like an upstream down */
    st->up = st == &states[STATE_OTHER]
                 ? METRIC_NONE
                 : metrics_series(region, fam.up, (const char *[]){site, spec});
    st->to_down = metrics_series(region, fam.moves, (const char *[]){site, spec, "down"});
    st->to_up = metrics_series(region, fam.moves, (const char *[]){site, spec, "up"});
}

static void define_families(void)
{
    size_t nb = sizeof(bounds_ms) / sizeof(bounds_ms[0]);
    fam.requests =
        metrics_family(region, "hearth_edge_requests_total", METRIC_COUNTER,
                       "Requests answered, by site and status class.", "site,code", NULL, 0, 1);
    fam.bytes = metrics_family(region, "hearth_edge_response_body_bytes_total", METRIC_COUNTER,
                               "Response body bytes sent, by site.", "site", NULL, 0, 1);
    fam.duration = metrics_family(region, "hearth_edge_request_duration_seconds", METRIC_HISTOGRAM,
                                  "From the first byte of a request to the end of its response.",
                                  "site", bounds_ms, nb, 1000);
    fam.proxy_errors = metrics_family(
        region, "hearth_edge_proxy_errors_total", METRIC_COUNTER,
        "Requests the proxy answered itself: 502 no usable upstream answer, 504 upstream timeout.",
        "site,code", NULL, 0, 1);
    fam.retries = metrics_family(
        region, "hearth_edge_proxy_retries_total", METRIC_COUNTER,
        "Requests sent to another upstream (or a fresh connection) after a try failed unanswered.",
        "site", NULL, 0, 1);
    fam.up = metrics_family(
        region, "hearth_edge_upstream_up", METRIC_GAUGE,
        "Edge workers that send traffic to the upstream (each checks for itself): all of them "
        "when it is up, 0 when every worker has it down.",
        "site,upstream", NULL, 0, 1);
    fam.moves = metrics_family(region, "hearth_edge_upstream_transitions_total", METRIC_COUNTER,
                               "Upstream state changes seen by the edge workers, by new state.",
                               "site,upstream,to", NULL, 0, 1);
    fam.connect =
        metrics_family(region, "hearth_edge_upstream_connect_duration_seconds", METRIC_HISTOGRAM,
                       "Time to connect to an upstream.", "upstream", bounds_ms, nb, 1000);
    fam.header =
        metrics_family(region, "hearth_edge_upstream_header_duration_seconds", METRIC_HISTOGRAM,
                       "From handing a request to an upstream connection to its response head.",
                       "upstream", bounds_ms, nb, 1000);
    fam.failures = metrics_family(
        region, "hearth_edge_upstream_failures_total", METRIC_COUNTER,
        "Upstream connections that failed before an answer; the upstream is skipped a while.",
        "upstream", NULL, 0, 1);
    fam.limited = metrics_family(region, "hearth_edge_limited_requests_total", METRIC_COUNTER,
                                 "Requests answered 429 for being over a site's rate limit.",
                                 "site", NULL, 0, 1);
    int conn_limited = metrics_family(
        region, "hearth_edge_limited_connections_total", METRIC_COUNTER,
        "Connections closed at accept for max_connections_per_client.", "", NULL, 0, 1);
    limited_conns = metrics_series(region, conn_limited, (const char *[]){NULL});
    int open = metrics_family(region, "hearth_edge_open_connections", METRIC_GAUGE,
                              "Client connections open now.", "", NULL, 0, 1);
    int conns = metrics_family(region, "hearth_edge_connections_total", METRIC_COUNTER,
                               "Client connections accepted.", "", NULL, 0, 1);
    int tls = metrics_family(region, "hearth_edge_tls_handshakes_total", METRIC_COUNTER,
                             "TLS handshakes completed, full or resumed (session ticket).",
                             "session", NULL, 0, 1);
    int tls_fail = metrics_family(
        region, "hearth_edge_tls_handshake_failures_total", METRIC_COUNTER,
        "TLS handshakes begun by a client and not completed (refused, broken or abandoned).", "",
        NULL, 0, 1);
    open_conns = metrics_series(region, open, (const char *[]){NULL});
    accepted = metrics_series(region, conns, (const char *[]){NULL});
    tls_full = metrics_series(region, tls, (const char *[]){"full"});
    tls_resumed = metrics_series(region, tls, (const char *[]){"resumed"});
    tls_failed = metrics_series(region, tls_fail, (const char *[]){NULL});
}

void edge_metrics_open(int workers)
{
    /* a shard per worker, one for a replacement starting before the dead one is reaped */
    region = metrics_create_env("edge", (size_t)workers + 2);
    if (region == NULL)
        return;
    define_families();
    make_site(&sites[SITE_NONE], "_");
    make_site(&sites[SITE_OTHER], "other");
    make_upstream(&upstreams[UPSTREAM_OTHER], "other");
    make_state(&states[STATE_OTHER], "other", "other");
    site_count = SITE_FIRST;
    upstream_count = UPSTREAM_FIRST;
    state_count = STATE_FIRST;
}

int edge_metrics_site(const char *name)
{
    if (region == NULL)
        return SITE_NONE;
    for (int i = SITE_FIRST; i < site_count; i++)
        if (strcmp(sites[i].name, name) == 0)
            return i;
    if (site_count == SITE_FIRST + SITES_MAX || strlen(name) >= sizeof(sites[0].name))
        return SITE_OTHER;
    make_site(&sites[site_count], name);
    return sites[site_count].requests[0].cell < 0 ? SITE_OTHER : site_count++;
}

int edge_metrics_upstream(const char *spec)
{
    if (region == NULL)
        return UPSTREAM_OTHER;
    for (int i = UPSTREAM_FIRST; i < upstream_count; i++)
        if (strcmp(upstreams[i].spec, spec) == 0)
            return i;
    if (upstream_count == UPSTREAM_FIRST + UPSTREAMS_MAX ||
        strlen(spec) >= sizeof(upstreams[0].spec))
        return UPSTREAM_OTHER;
    make_upstream(&upstreams[upstream_count], spec);
    return upstreams[upstream_count].connect.cell < 0 ? UPSTREAM_OTHER : upstream_count++;
}

int edge_metrics_upstream_state_series(const char *site, const char *spec)
{
    if (region == NULL)
        return STATE_OTHER;
    for (int i = STATE_FIRST; i < state_count; i++)
        if (strcmp(states[i].site, site) == 0 && strcmp(states[i].spec, spec) == 0)
            return i;
    if (state_count == STATE_FIRST + STATES_MAX || strlen(site) >= sizeof(states[0].site) ||
        strlen(spec) >= sizeof(states[0].spec))
        return STATE_OTHER;
    make_state(&states[state_count], site, spec);
    return states[state_count].to_up.cell < 0 ? STATE_OTHER : state_count++;
}

static const site_refs *site_of(const edge_site *s)
{
    return s && s->metrics >= 0 && s->metrics < site_count ? &sites[s->metrics] : &sites[SITE_NONE];
}

static const upstream_refs *upstream_of(const edge_upstream *u)
{
    return u->metrics >= 0 && u->metrics < upstream_count ? &upstreams[u->metrics]
                                                          : &upstreams[UPSTREAM_OTHER];
}

void edge_metrics_request(const edge_req *r)
{
    if (r->status < 100 || r->status > 599 || !counting())
        return;
    const site_refs *s = site_of(r->site);
    uint64_t now = edge_now_ms();
    metrics_add(region, s->requests[r->status / 100 - 1], 1);
    metrics_add(region, s->bytes, r->body_sent);
    metrics_observe(region, s->duration, now > r->started_ms ? now - r->started_ms : 0);
}

void edge_metrics_conn_opened(void)
{
    if (!counting())
        return;
    metrics_add(region, open_conns, 1);
    metrics_add(region, accepted, 1);
}

void edge_metrics_conn_closed(const SSL *ssl)
{
    if (!counting())
        return;
    metrics_sub(region, open_conns, 1);
    /* A client that connected and left without sending a byte (a browser's spare
     * preconnect) began no handshake. */
    if (ssl && !SSL_is_init_finished(ssl) && BIO_number_read(SSL_get_rbio(ssl)) > 0)
        metrics_add(region, tls_failed, 1);
}

void edge_metrics_tls_info(const SSL *ssl, int where, int ret)
{
    (void)ret;
    if ((where & SSL_CB_HANDSHAKE_DONE) && counting())
        metrics_add(region, SSL_session_reused(ssl) ? tls_resumed : tls_full, 1);
}

void edge_metrics_upstream_connected(const edge_upstream *u, uint64_t ms)
{
    if (counting())
        metrics_observe(region, upstream_of(u)->connect, ms);
}

void edge_metrics_upstream_header(const edge_upstream *u, uint64_t ms)
{
    if (counting())
        metrics_observe(region, upstream_of(u)->header, ms);
}

void edge_metrics_upstream_failed(const edge_upstream *u)
{
    if (counting())
        metrics_add(region, upstream_of(u)->failures, 1);
}

void edge_metrics_proxy_error(const edge_req *r, int status)
{
    if (!counting())
        return;
    const site_refs *s = site_of(r->site);
    metrics_add(region, status == 504 ? s->proxy_504 : s->proxy_502, 1);
}

void edge_metrics_proxy_retry(const edge_req *r)
{
    if (counting())
        metrics_add(region, site_of(r->site)->retries, 1);
}

void edge_metrics_upstream_state(const edge_upstream *u, bool changed)
{
    if (!counting())
        return;
    const state_refs *st = u->state_metrics >= 0 && u->state_metrics < state_count
                               ? &states[u->state_metrics]
                               : &states[STATE_OTHER];
    metrics_set(region, st->up, u->down ? 0 : 1);
    if (changed)
        metrics_add(region, u->down ? st->to_down : st->to_up, 1);
}

void edge_metrics_limited_request(const edge_req *r)
{
    if (counting())
        metrics_add(region, site_of(r->site)->limited, 1);
}

void edge_metrics_limited_conn(void)
{
    if (counting())
        metrics_add(region, limited_conns, 1);
}
