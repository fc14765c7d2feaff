/* The loaded sites: names, TLS contexts, static roots and upstream lists, built from the config
 * in one piece so a reload either takes effect whole or not at all. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared/clock.h"
#include "shared/listen_addr.h"
#include "shared/log.h"
#include "edge/edge.h"

/* Upstreams are written as listen addresses (usually they are the appserver's bind): one
 * parser for both, ":PORT" meaning 127.0.0.1 here. */
static int parse_upstream(edge_upstream *u, const char *spec, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    u->spec = strdup(spec);
    listen_sockaddr target;
    char why[512];
    if (listen_addr_connect_target(spec, &target, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "upstream %s", why);
        return -1;
    }
    u->addr = target.ss;
    u->addrlen = target.len;
    return 0;
}

static int build_upstreams(edge_site *s, const hearth_config *cfg, const config_site *cs, char *err,
                           size_t errlen)
{
    if (cs->upstreams.count > CONFIG_UPSTREAMS_MAX) {
        snprintf(err, errlen, "site %s: %zu upstreams; a site has at most %d", s->name,
                 cs->upstreams.count, CONFIG_UPSTREAMS_MAX);
        return -1;
    }
    s->balance = cs->balance;
    s->max_fails = cs->max_fails;
    s->fail_timeout_ms =
        cs->fail_timeout_set ? cs->fail_timeout_ms : cfg->edge.upstream_fail_timeout_ms;
    s->max_tries =
        cs->next_upstream_tries > 0 ? (size_t)cs->next_upstream_tries : cs->upstreams.count;
    s->check = cs->health_check;
    s->check.path = cs->health_check.path ? strdup(cs->health_check.path) : NULL;
    s->upstreams = calloc(cs->upstreams.count + 1, sizeof(edge_upstream));
    for (size_t i = 0; i < cs->upstreams.count; i++) {
        edge_upstream *u = &s->upstreams[i];
        s->upstream_count = i + 1;
        if (parse_upstream(u, cs->upstreams.items[i], err, errlen) < 0)
            return -1;
        u->site = s;
        u->metrics = edge_metrics_upstream(u->spec);
        u->state_metrics = edge_metrics_upstream_state_series(s->name, u->spec);
    }
    return 0;
}

static int open_root(edge_static_root *r, const config_static *st, char *err, size_t errlen)
{
    r->prefix = strdup(st->prefix);
    r->prefix_len = strlen(st->prefix);
    r->cache_control = st->cache_control ? strdup(st->cache_control) : NULL;
    r->root_fd = open(st->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (r->root_fd < 0) {
        snprintf(err, errlen, "static root '%s': %s", st->root, strerror(errno));
        return -1;
    }
    return 0;
}

/* tls: acme and internal take their certificate from certd's store; without an HTTPS listener
 * there is nothing to serve it on, and the site is plain HTTP like tls: off. */
static bool managed_tls(const hearth_config *cfg, const config_site *cs)
{
    return (cs->tls == SITE_TLS_ACME || cs->tls == SITE_TLS_INTERNAL) &&
           cfg->edge.https.count > 0 && cfg->certd.cert_dir;
}

/* CERT_DIR/NAME is a symlink certd switches with one rename(): resolving it once reads both
 * files from one version, so a switch between the two opens cannot pair a new chain with an old
 * key (and the key is checked against the chain anyway). */
static SSL_CTX *load_managed(const char *link, const char *name, char *err, size_t errlen)
{
    char dir[PATH_MAX], chain[PATH_MAX + 16], key[PATH_MAX + 16];
    if (!realpath(link, dir)) {
        snprintf(err, errlen, "certificate '%s': %s", link, strerror(errno));
        return NULL;
    }
    snprintf(chain, sizeof(chain), "%s/fullchain.pem", dir);
    snprintf(key, sizeof(key), "%s/privkey.pem", dir);
    config_cert_pair pair = {.cert = chain, .key = key};
    config_site one = {.name = (char *)name, .certs = &pair, .cert_count = 1};
    return edge_tls_ctx_new(&one, err, errlen);
}

static SSL_CTX *running_ctx(const edge_gen *prev, const char *name)
{
    for (size_t i = 0; prev && i < prev->site_count; i++)
        if (strcmp(prev->sites[i].name, name) == 0)
            return prev->sites[i].ctx;
    return NULL;
}

/* A managed certificate that does not load never stops the edge: the plain listener must go on
 * serving challenges, or certd could never fix it. The running certificate stays if there is
 * one; otherwise the site waits for certd. */
static void build_managed(edge_site *s, const hearth_config *cfg, const config_site *cs,
                          const edge_gen *prev)
{
    char why[PATH_MAX + 256], link[PATH_MAX];
    snprintf(link, sizeof(link), "%s/%s", cfg->certd.cert_dir, cs->name);
    s->ctx = load_managed(link, s->name, why, sizeof(why));
    if (s->ctx)
        return;
    SSL_CTX *old = running_ctx(prev, s->name);
    if (old) {
        log_error("site '%s': %s; keeping the running certificate", s->name, why);
        SSL_CTX_up_ref(old);
        s->ctx = old;
        return;
    }
    s->tls_pending = true;
    s->pending_link = strdup(link);
    log_info("site '%s': no certificate yet (%s); HTTPS for it waits for certd", s->name, why);
}

/* A pending site looks for its certificate itself instead of waiting for the reload certd asks
 * for: workers reload one after the other, and in between one would serve the new certificate
 * while another still refused the name. With this, every worker serves the certificate from
 * the moment it is in certd's store. Looking is one stat() while the store has nothing; a
 * certificate there that does not load is tried again at most every PENDING_RETRY_MS. */
#define PENDING_RETRY_MS 1000

bool edge_site_tls_pending(edge_site *s)
{
    struct stat st;
    if (!s->tls_pending || stat(s->pending_link, &st) < 0)
        return s->tls_pending;
    int64_t now = clock_now_ms();
    if (s->pending_tried_ms != 0 && now - s->pending_tried_ms < PENDING_RETRY_MS)
        return true;
    s->pending_tried_ms = now;
    char why[PATH_MAX + 256];
    s->ctx = load_managed(s->pending_link, s->name, why, sizeof(why));
    if (!s->ctx)
        return true;
    s->tls_pending = false;
    log_info("site '%s': certificate found in certd's store; serving HTTPS", s->name);
    return false;
}

static int build_site(edge_site *s, const hearth_config *cfg, const config_site *cs,
                      const edge_gen *prev, char *err, size_t errlen)
{
    s->name = strdup(cs->name ? cs->name : "localhost");
    s->metrics = edge_metrics_site(s->name);
    s->alias_count = cs->aliases.count;
    s->aliases = calloc(cs->aliases.count + 1, sizeof(char *));
    for (size_t i = 0; i < cs->aliases.count; i++)
        s->aliases[i] = strdup(cs->aliases.items[i]);
    if (cs->hsts_ms > 0) {
        char v[96];
        snprintf(v, sizeof(v), "max-age=%lld; includeSubDomains", (long long)(cs->hsts_ms / 1000));
        s->hsts = strdup(v);
    }
    s->compression = cs->compression;
    s->compression.types = (strlist){0}; /* the site's own copy: the config goes at a reload */
    if (strlist_copy(&s->compression.types, &cs->compression.types) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->statics = calloc(cs->static_count + 1, sizeof(edge_static_root));
    for (size_t i = 0; i < cs->static_count; i++) {
        s->statics[i].root_fd = -1;
        s->static_count = i + 1;
        if (open_root(&s->statics[i], &cs->statics[i], err, errlen) < 0)
            return -1;
    }
    if (build_upstreams(s, cfg, cs, err, errlen) < 0)
        return -1;
    if (edge_limits_build_site(s, cs, err, errlen) < 0)
        return -1;
    if (managed_tls(cfg, cs)) {
        build_managed(s, cfg, cs, prev);
    } else if (cs->tls != SITE_TLS_OFF && cs->cert_count > 0) {
        s->ctx = edge_tls_ctx_new(cs, err, errlen);
        if (!s->ctx)
            return -1;
    }
    return 0;
}

static void free_site(edge_site *s)
{
    free(s->name);
    for (size_t i = 0; i < s->alias_count; i++)
        free(s->aliases[i]);
    free(s->aliases);
    free(s->hsts);
    strlist_clear(&s->compression.types);
    for (size_t i = 0; i < s->static_count; i++) {
        free(s->statics[i].prefix);
        free(s->statics[i].cache_control);
        if (s->statics[i].root_fd >= 0)
            close(s->statics[i].root_fd);
    }
    free(s->statics);
    for (size_t i = 0; i < s->upstream_count; i++)
        free(s->upstreams[i].spec);
    free(s->upstreams);
    free(s->check.path);
    free(s->pending_link);
    edge_limits_free_site(s);
    SSL_CTX_free(s->ctx);
}

edge_gen *edge_gen_build(const hearth_config *cfg, const edge_gen *prev, char *err, size_t errlen)
{
    edge_gen *g = calloc(1, sizeof(*g));
    g->refs = 1;
    g->trusted = calloc(cfg->edge.trusted_proxies.count + 1, sizeof(ip_cidr));
    for (size_t i = 0; i < cfg->edge.trusted_proxies.count; i++)
        if (ip_cidr_parse(cfg->edge.trusted_proxies.items[i], &g->trusted[g->trusted_count]) == 0)
            g->trusted_count++; /* the loader checked them */
    g->sites = calloc(cfg->site_count + 1, sizeof(edge_site));
    for (size_t i = 0; i < cfg->site_count; i++) {
        g->site_count = i + 1;
        if (build_site(&g->sites[i], cfg, &cfg->sites[i], prev, err, errlen) < 0) {
            edge_gen_unref(g);
            return NULL;
        }
        if (!g->default_ctx)
            g->default_ctx = g->sites[i].ctx;
    }
    /* Sites still waiting for certd: HTTPS connections are accepted and their handshakes fail
     * with an alert, rather than being closed unanswered. */
    if (!g->default_ctx)
        g->default_ctx = g->bare_ctx = edge_tls_ctx_bare();
    return g;
}

void edge_gen_ref(edge_gen *g)
{
    g->refs++;
}

void edge_gen_unref(edge_gen *g)
{
    if (!g || --g->refs > 0)
        return;
    edge_proxy_close_pools(g);
    for (size_t i = 0; i < g->site_count; i++)
        free_site(&g->sites[i]);
    free(g->sites);
    free(g->trusted);
    SSL_CTX_free(g->bare_ctx);
    free(g);
}

static bool name_eq(const char *name, const char *host, size_t len)
{
    return strlen(name) == len && strncasecmp(name, host, len) == 0;
}

edge_site *edge_gen_find_site(edge_gen *g, const char *host, size_t len)
{
    if (g->site_count == 0)
        return NULL;
    /* Host may carry a port; names never do. */
    const char *colon = memchr(host, ':', len);
    if (colon && host[0] != '[')
        len = (size_t)(colon - host);
    for (size_t i = 0; i < g->site_count; i++) {
        edge_site *s = &g->sites[i];
        if (name_eq(s->name, host, len))
            return s;
        for (size_t j = 0; j < s->alias_count; j++)
            if (name_eq(s->aliases[j], host, len))
                return s;
    }
    return NULL;
}
