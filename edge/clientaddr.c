/* Who the client is. The peer of the connection, unless the peer is a trusted proxy
 * (edge.trusted_proxies): then the PROXY protocol header it sends first (edge.proxy_protocol)
 * names the client for the whole connection, and its X-Forwarded-For for each request, read
 * from the right: the rightmost address that is not itself trusted, as nginx's real_ip with
 * real_ip_recursive. That address is the one the access log, the upstream and the limits see. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "shared/log.h"
#include "edge/proxyproto.h"
#include "edge/req.h"

bool edge_client_trusted(const edge_gen *g, const ip_addr *a)
{
    for (size_t i = 0; i < g->trusted_count; i++)
        if (ip_cidr_contains(&g->trusted[i], a))
            return true;
    return false;
}

/* ---- X-Forwarded-For, per request ---- */

/* The last X-Forwarded-For line: its right end is what the trusted peer itself added. */
static const char *last_xff(const edge_req *r, size_t *len)
{
    const char *found = NULL;
    for (size_t i = 0; i < r->header_count; i++) {
        const http_header *h = &r->headers[i];
        if (h->name.len == 15 && strncasecmp(r->head + h->name.off, "x-forwarded-for", 15) == 0) {
            found = r->head + h->value.off;
            *len = h->value.len;
        }
    }
    return found;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Walk the list from the right while each address is trusted; stop at the first that is not
 * (the client) or at one that is no address (the last good one then stands). */
static void follow_xff(edge_req *r, const char *xff, size_t len)
{
    size_t end = len;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t a = start, b = end;
        while (a < b && is_space(xff[a]))
            a++;
        while (b > a && is_space(xff[b - 1]))
            b--;
        ip_addr addr;
        if (ip_parse(xff + a, b - a, &addr) < 0)
            break;
        r->client_addr = addr;
        r->xff = xff;
        r->xff_kept = b;
        if (!edge_client_trusted(r->gen, &addr) || start == 0)
            break;
        end = start - 1;
    }
}

void edge_client_resolve(edge_req *r)
{
    r->client = r->peer;
    r->xff = NULL;
    r->client_known = ip_parse(r->peer, strlen(r->peer), &r->client_addr) == 0;
    size_t len = 0;
    const char *xff;
    if (!r->client_known || !edge_client_trusted(r->gen, &r->client_addr) ||
        !(xff = last_xff(r, &len)))
        return;
    follow_xff(r, xff, len);
    if (r->xff) {
        ip_format(&r->client_addr, r->client_text, sizeof(r->client_text));
        r->client = r->client_text;
    }
}

/* The upstream hears the client last in X-Forwarded-For, as from any proxy: the trusted list up
 * to the client (the trusted hops after it are the edge's own side of the network), else what
 * the client sent followed by its address. */
void edge_client_forward_headers(const edge_req *r, buf *out)
{
    const char *client = edge_req_client(r);
    size_t len = 0;
    const char *sent = edge_req_header(r, "X-Forwarded-For", &len);
    if (r->xff)
        buf_printf(out, "X-Forwarded-For: %.*s\r\n", (int)r->xff_kept, r->xff);
    else if (sent)
        buf_printf(out, "X-Forwarded-For: %.*s, %s\r\n", (int)len, sent, client);
    else
        buf_printf(out, "X-Forwarded-For: %s\r\n", client);
    buf_printf(out, "X-Real-IP: %s\r\n", client);
}

/* ---- the PROXY header, per connection ---- */

/* A connection whose PROXY header is still on its way. */
typedef struct {
    uv_poll_t poll;
    uv_timer_t timer;
    int handles;
    int fd;
    bool tls;
    struct sockaddr_storage peer;
    uint8_t head[PROXYPROTO_PARSE_MAX];
    size_t have;
    bool parsed; /* the header is complete, but for skip */
    size_t skip; /* version 2 TLVs past what is parsed: read and dropped */
    proxyproto_header header;
} pending;

static int pending_count;
static log_repeat refused_log;

static void on_pending_closed(uv_handle_t *h)
{
    pending *p = h->data;
    if (--p->handles == 0)
        free(p);
}

/* Stop watching; the fd is closed, or handed on to a connection. */
static void pending_end(pending *p, bool close_fd)
{
    uv_poll_stop(&p->poll);
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->poll, on_pending_closed);
    uv_close((uv_handle_t *)&p->timer, on_pending_closed);
    if (close_fd)
        close(p->fd);
    pending_count--;
}

static void refuse(pending *p, const char *why)
{
    char peer[64];
    ip_addr a;
    if (ip_from_sockaddr((struct sockaddr *)&p->peer, &a) == 0)
        ip_format(&a, peer, sizeof(peer));
    else
        snprintf(peer, sizeof(peer), "?");
    log_repeated(&refused_log, edge_now_ms(), HLOG_WARN, "%s: PROXY protocol header %s; closed",
                 peer, why);
    pending_end(p, true);
}

static void start_conn(pending *p)
{
    int fd = p->fd;
    bool tls = p->tls;
    struct sockaddr_storage who = p->header.has_addr ? p->header.src : p->peer;
    pending_end(p, edge_w.draining);
    if (!edge_w.draining)
        edge_conn_accept(&edge_w, fd, tls, (struct sockaddr *)&who);
}

/* Peek, parse, then take exactly the header's bytes: what follows (HTTP, or a TLS hello) stays
 * in the socket for the connection. A header not yet complete is taken whole, so a slow
 * balancer never makes the poll spin on bytes left unread. */
static int read_header(pending *p)
{
    ssize_t n = recv(p->fd, p->head + p->have, sizeof(p->head) - p->have, MSG_PEEK);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        return -1;
    if (n < 0)
        return 0;
    proxyproto_result r = proxyproto_parse(p->head, p->have + (size_t)n, &p->header);
    if (r == PROXYPROTO_BAD)
        return -2;
    size_t take = (size_t)n;
    if (r == PROXYPROTO_DONE && p->header.len < p->have + (size_t)n)
        take = p->header.len - p->have;
    ssize_t got = recv(p->fd, p->head + p->have, take, 0);
    if (got < 0)
        return -1;
    p->have += (size_t)got;
    if (r == PROXYPROTO_MORE)
        return 0;
    p->parsed = true;
    p->skip = p->header.len > p->have ? p->header.len - p->have : 0;
    return 1;
}

static int skip_tlvs(pending *p)
{
    uint8_t scratch[4096];
    while (p->skip > 0) {
        ssize_t n = recv(p->fd, scratch, p->skip < sizeof(scratch) ? p->skip : sizeof(scratch), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return -1;
        if (n < 0)
            return 0;
        p->skip -= (size_t)n;
    }
    return 1;
}

static void on_pending_io(uv_poll_t *h, int status, int events)
{
    (void)events;
    pending *p = h->data;
    int rc = status < 0 ? -1 : 0;
    if (rc == 0 && !p->parsed)
        rc = read_header(p);
    if (p->parsed && rc >= 0)
        rc = skip_tlvs(p);
    if (rc == -2)
        refuse(p, "malformed");
    else if (rc == -1)
        pending_end(p, true);
    else if (rc == 1)
        start_conn(p);
}

static void on_pending_timeout(uv_timer_t *t)
{
    refuse(t->data, "incomplete within header_timeout");
}

static void read_proxy_header(edge_worker *w, int fd, bool tls, const struct sockaddr_storage *ss)
{
    pending *p = calloc(1, sizeof(*p));
    if (!p || pending_count >= w->cfg.edge.max_connections) {
        free(p);
        close(fd);
        return;
    }
    pending_count++;
    p->fd = fd;
    p->tls = tls;
    p->peer = *ss;
    uv_poll_init(w->loop, &p->poll, fd);
    uv_timer_init(w->loop, &p->timer);
    p->poll.data = p->timer.data = p;
    p->handles = 2;
    uv_poll_start(&p->poll, UV_READABLE, on_pending_io);
    uv_timer_start(&p->timer, on_pending_timeout, (uint64_t)w->cfg.edge.header_timeout_ms, 0);
}

void edge_client_accept(edge_worker *w, int fd, bool tls, const struct sockaddr *peer)
{
    ip_addr a;
    if (w->cfg.edge.proxy_protocol && ip_from_sockaddr(peer, &a) == 0 &&
        edge_client_trusted(w->gen, &a)) {
        struct sockaddr_storage ss = {0};
        memcpy(&ss, peer,
               peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in));
        read_proxy_header(w, fd, tls, &ss);
        return;
    }
    edge_conn_accept(w, fd, tls, peer);
}
