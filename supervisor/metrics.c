/* The metrics endpoint (config `metrics`): a small HTTP/1.1 server on a listener of its own that
 * answers GET /metrics with the whole stack in Prometheus' text format, version 0.0.4: the
 * supervisor's view of each component, then what each running component counted in its file
 * under RUN_DIR/metrics (shared/metrics.h). One request per connection; it is for a scraper on
 * the same machine, never for the public (docs/metrics.md). */
#include "supervisor/sv.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/http_parser.h"
#include "shared/log.h"
#include "shared/metrics.h"

#define CLIENTS_MAX 16
#define CLIENT_HEAD_MAX 8192
#define CLIENT_HEADERS_MAX 32
#define CLIENT_TIMEOUT_MS 10000

typedef struct {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write;
    int handles_open;
    bool answered;
    supervisor *sv;
    buf out;
    http_parser parser;
    http_header headers[CLIENT_HEADERS_MAX];
    size_t len;
    char in[CLIENT_HEAD_MAX];
} metrics_client;

static int client_count;

/* Components in stop order, as `hearth status` lists them. */
static const int shown[CHILD_COUNT] = {CHILD_EDGE, CHILD_APPSERVER, CHILD_CERTD};

/* ---- what is served ---- */

static void own_family(buf *out, const char *name, const char *type, const char *help)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The supervisor's own series: state and restarts of each enabled component. */
static void gather_own(supervisor *sv, buf *out)
{
    own_family(out, "hearth_component_up", "gauge",
               "1 while the component runs and has said it is ready (READY=1).");
    for (int i = 0; i < CHILD_COUNT; i++) {
        const sv_child *c = &sv->children[shown[i]];
        if (c->enabled)
            buf_printf(out, "hearth_component_up{component=\"%s\"} %d\n", c->name,
                       c->state == CHILD_RUNNING);
    }
    own_family(out, "hearth_component_state", "gauge",
               "The component's state in the supervisor: 1 for the state it is in, 0 for others.");
    for (int i = 0; i < CHILD_COUNT; i++) {
        const sv_child *c = &sv->children[shown[i]];
        for (int s = CHILD_STOPPED; c->enabled && s <= CHILD_FATAL; s++)
            buf_printf(out, "hearth_component_state{component=\"%s\",state=\"%s\"} %d\n", c->name,
                       child_state_name((child_state)s), c->state == (child_state)s);
    }
    own_family(out, "hearth_component_restarts_total", "counter",
               "Unexpected exits the supervisor answered with a restart (an explicit restart of a "
               "stopped or fatal component starts it over at 0).");
    for (int i = 0; i < CHILD_COUNT; i++) {
        const sv_child *c = &sv->children[shown[i]];
        if (c->enabled)
            buf_printf(out, "hearth_component_restarts_total{component=\"%s\"} %d\n", c->name,
                       c->restarts);
    }
}

void metrics_gather(supervisor *sv, buf *out)
{
    gather_own(sv, out);
    for (int i = 0; i < CHILD_COUNT; i++) {
        const sv_child *c = &sv->children[shown[i]];
        if (!c->enabled || c->pid <= 0)
            continue; /* a dead component's gauges would say what is no longer true */
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s.shm", sv->metrics_dir, c->name);
        if (metrics_render_file(path, out) < 0)
            log_debug("metrics: nothing to read in %s yet", path);
    }
}

/* ---- the HTTP side ---- */

static void on_client_closed(uv_handle_t *h)
{
    metrics_client *cl = h->data;
    if (--cl->handles_open > 0)
        return;
    buf_free(&cl->out);
    free(cl);
    client_count--;
}

static void client_close(metrics_client *cl)
{
    if (uv_is_closing((uv_handle_t *)&cl->tcp))
        return;
    uv_timer_stop(&cl->timer);
    uv_close((uv_handle_t *)&cl->tcp, on_client_closed);
    uv_close((uv_handle_t *)&cl->timer, on_client_closed);
}

static void on_timeout(uv_timer_t *t)
{
    client_close(t->data);
}

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    client_close(req->data);
}

static void respond(metrics_client *cl, int status, const char *reason, const char *extra,
                    const buf *body, bool head_only)
{
    size_t len = body ? buf_used(body) : 0;
    buf_printf(&cl->out,
               "HTTP/1.1 %d %s\r\nServer: hearth\r\n%sContent-Length: %zu\r\n"
               "Connection: close\r\n\r\n",
               status, reason, extra, len);
    if (body && !head_only)
        buf_append(&cl->out, buf_head(body), len);
    cl->answered = true;
    uv_read_stop((uv_stream_t *)&cl->tcp);
    uv_buf_t b = uv_buf_init(buf_head(&cl->out), (unsigned)buf_used(&cl->out));
    cl->write.data = cl;
    if (uv_write(&cl->write, (uv_stream_t *)&cl->tcp, &b, 1, on_written) < 0)
        client_close(cl);
}

static void respond_text(metrics_client *cl, int status, const char *reason, const char *extra,
                         const char *text)
{
    buf body;
    buf_init(&body, 0);
    buf_append_str(&body, text);
    respond(cl, status, reason, extra, &body, false);
    buf_free(&body);
}

static void answer(metrics_client *cl)
{
    const http_parser *p = &cl->parser;
    bool get = http_span_eq(cl->in, p->method, "GET"),
         head = http_span_eq(cl->in, p->method, "HEAD");
    const char *target = cl->in + p->target.off;
    size_t tlen = p->target.len;
    bool path_ok =
        tlen >= 8 && memcmp(target, "/metrics", 8) == 0 && (tlen == 8 || target[8] == '?');
    if (!path_ok) {
        respond_text(cl, 404, "Not Found", "Content-Type: text/plain\r\n",
                     "not found: the metrics are at /metrics\n");
    } else if (!get && !head) {
        respond_text(cl, 405, "Method Not Allowed",
                     "Allow: GET, HEAD\r\nContent-Type: text/plain\r\n", "GET or HEAD only\n");
    } else {
        buf body;
        buf_init(&body, 0);
        metrics_gather(cl->sv, &body);
        respond(cl, 200, "OK", "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n", &body,
                head);
        buf_free(&body);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    metrics_client *cl = h->data;
    b->base = cl->in + cl->len;
    b->len = sizeof(cl->in) - cl->len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    metrics_client *cl = s->data;
    if (n < 0) {
        client_close(cl);
        return;
    }
    if (cl->answered)
        return;
    cl->len += (size_t)n;
    http_parse_result r = http_parse_head(&cl->parser, cl->in, cl->len);
    if (r == HTTP_PARSE_DONE)
        answer(cl);
    else if (r == HTTP_PARSE_ERROR || cl->len == sizeof(cl->in))
        respond_text(cl, 400, "Bad Request", "Content-Type: text/plain\r\n", "bad request\n");
}

static void on_connection(uv_stream_t *server, int status)
{
    supervisor *sv = server->data;
    metrics_client *cl = status < 0 ? NULL : calloc(1, sizeof(*cl));
    if (cl == NULL)
        return;
    uv_tcp_init(sv->loop, &cl->tcp);
    uv_timer_init(sv->loop, &cl->timer);
    cl->tcp.data = cl->timer.data = cl;
    cl->handles_open = 2;
    cl->sv = sv;
    buf_init(&cl->out, 0);
    client_count++;
    if (uv_accept(server, (uv_stream_t *)&cl->tcp) < 0 || client_count > CLIENTS_MAX) {
        client_close(cl);
        return;
    }
    http_limits limits;
    http_limits_default(&limits);
    limits.max_header_bytes = CLIENT_HEAD_MAX;
    http_parser_init(&cl->parser, HTTP_KIND_REQUEST, &limits, cl->headers, CLIENT_HEADERS_MAX);
    uv_timer_start(&cl->timer, on_timeout, CLIENT_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&cl->tcp, on_alloc, on_read);
}

/* An address other than loopback is taken as written, with a reminder of what it exposes. */
static void warn_unless_loopback(supervisor *sv)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(sv->metrics_fd, (struct sockaddr *)&ss, &len) < 0)
        return;
    bool loopback = ss.ss_family == AF_INET
                        ? (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127
                        : IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
    if (!loopback)
        log_warn("metrics on %s: not a loopback address; the endpoint has no authentication, so "
                 "make sure only the scraper can reach it",
                 sv->cfg.metrics);
}

int metrics_server_open(supervisor *sv, char *err, size_t errlen)
{
    char why[256];
    sv->metrics_fd = -1;
    if (sv->cfg.metrics == NULL)
        return 0;
    sv->metrics_fd = listeners_bind_tcp(sv->cfg.metrics, why, sizeof(why));
    if (sv->metrics_fd < 0) {
        snprintf(err, errlen, "%s: key 'metrics': %s: %s", sv->cfg.path, sv->cfg.metrics, why);
        return -1;
    }
    uv_tcp_init(sv->loop, &sv->metrics_tcp);
    sv->metrics_tcp.data = sv;
    sv->metrics_listening = true;
    if (uv_tcp_open(&sv->metrics_tcp, sv->metrics_fd) < 0 ||
        uv_listen((uv_stream_t *)&sv->metrics_tcp, CLIENTS_MAX, on_connection) < 0) {
        snprintf(err, errlen, "metrics %s: cannot listen", sv->cfg.metrics);
        return -1;
    }
    log_info("metrics on http://%s/metrics", sv->cfg.metrics);
    warn_unless_loopback(sv);
    return 0;
}

void metrics_server_close(supervisor *sv)
{
    if (!sv->metrics_listening)
        return;
    sv->metrics_listening = false;
    uv_close((uv_handle_t *)&sv->metrics_tcp, NULL); /* closes metrics_fd too */
}
