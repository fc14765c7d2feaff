/* Command line: `--config FILE` (the stack's YAML) and the flags of the one-site case, both
 * ending up in the same hearth_config so everything after this file sees one shape. Most flags
 * set a config key through the shared layer (shared/cli.c); the site flags belong to the last
 * --server-name. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge/options.h"
#include "shared/cli.h"

static int set_acme_webroot(cli_call *c, const char *arg)
{
    edge_options *o = c->ctx;
    free(o->acme_webroot);
    o->acme_webroot = strdup(arg);
    return o->acme_webroot ? 0 : cli_fail(c, "out of memory");
}

/* The edge's own: how long a stopping worker lets its connections finish. */
static int set_graceful_timeout(cli_call *c, const char *arg)
{
    if (config_parse_duration(arg, &((edge_options *)c->ctx)->graceful_timeout_ms) < 0)
        return cli_fail(c, "expected a duration like 30s, got '%s'", arg);
    return 0;
}

/* A site from flags: its certificates are given as files (or it has none: plain HTTP). */
static int add_site(cli_call *c, const char *name)
{
    if (config_add(c->cfg, "sites", "--server-name", c->err, c->errlen) < 0)
        return -1;
    c->cfg->sites[c->cfg->site_count - 1].tls = SITE_TLS_FILES;
    return cli_set_key(c, "sites.name", name);
}

static int server_name(cli_call *c, const char *arg)
{
    return add_site(c, arg);
}

/* Site flags before any --server-name make an implicit site named localhost. */
static int site_flag(cli_call *c, const char *arg)
{
    if (c->cfg->site_count == 0 && add_site(c, "localhost") < 0)
        return -1;
    return cli_set(c, arg);
}

/* --compress: the site compresses responses (compression's other keys keep their defaults). */
static int compress_flag(cli_call *c, const char *arg)
{
    (void)arg;
    if (c->cfg->site_count == 0 && add_site(c, "localhost") < 0)
        return -1;
    return cli_set_key(c, "sites.compression.enabled", "true");
}

/* A --cert starts a pair; the --key after it completes it (and a --key alone starts one). */
static int cert_or_key(cli_call *c, const char *arg)
{
    bool is_key = strcmp(c->flag->name, "key") == 0;
    if (c->cfg->site_count == 0 && add_site(c, "localhost") < 0)
        return -1;
    config_site *s = &c->cfg->sites[c->cfg->site_count - 1];
    config_cert_pair *last = s->cert_count ? &s->certs[s->cert_count - 1] : NULL;
    if ((!is_key || !last || last->key) &&
        config_add(c->cfg, "sites.tls", c->flag->name, c->err, c->errlen) < 0)
        return -1;
    return cli_set(c, arg);
}

/* --static PREFIX=DIR: one entry of the site's static list, checked as the file's are. */
static int static_dir(cli_call *c, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1])
        return cli_fail(c, "expected PREFIX=DIR like /assets=/srv/www, got '%s'", arg);
    char *prefix = strndup(arg, (size_t)(eq - arg));
    if (!prefix)
        return cli_fail(c, "out of memory");
    int rc = c->cfg->site_count == 0 ? add_site(c, "localhost") : 0;
    if (rc == 0)
        rc = config_add(c->cfg, "sites.static", "--static", c->err, c->errlen);
    if (rc == 0)
        rc = cli_set_key(c, "sites.static.prefix", prefix);
    if (rc == 0)
        rc = cli_set_key(c, "sites.static.root", eq + 1);
    free(prefix);
    return rc < 0 ? -1 : config_check_last(c->cfg, "sites.static", "--static", c->err, c->errlen);
}

static const cli_flag edge_flags[] = {
    {"config", 0, "FILE", .help = "the stack's YAML file; the flags below override it"},
    {"check", 0, NULL, .opts = CLI_CTX_BOOL, .field = offsetof(edge_options, check),
     .help = "validate the configuration and exit (nginx -t)"},
    {"http", 0, "ADDR", "edge.http", .opts = CLI_REPLACE,
     .help = "plain-HTTP address (repeatable)"},
    {"https", 0, "ADDR", "edge.https", .opts = CLI_REPLACE, .help = "TLS address (repeatable)"},
    {"server-name", 0, "NAME", .fn = server_name, .help = "start a site; site flags follow it"},
    {"alias", 0, "NAME", "sites.aliases", .fn = site_flag, .help = "site: a further name"},
    {"cert", 0, "FILE", "sites.tls.cert", .fn = cert_or_key, .help = "site: PEM chain"},
    {"key", 0, "FILE", "sites.tls.key", .fn = cert_or_key, .help = "site: its PEM key"},
    {"static", 0, "PREFIX=DIR", .fn = static_dir, .help = "site: serve DIR's files at PREFIX"},
    {"cache-control", 0, "VALUE", "sites.static.cache_control", .fn = site_flag,
     .help = "site: Cache-Control of the last --static"},
    {"upstream", 0, "ADDR", "sites.upstreams", .fn = site_flag,
     .help = "site: unix:PATH or HOST:PORT to proxy to"},
    {"hsts", 0, "DURATION", "sites.hsts", .fn = site_flag,
     .help = "site: Strict-Transport-Security"},
    {"compress", 0, NULL, .fn = compress_flag, .help = "site: compress responses (zstd, br, gzip)"},
    {"acme-webroot", 0, "DIR", .fn = set_acme_webroot,
     .help = "serve DIR/.well-known/acme-challenge (default: certd.webroot of --config)"},
    {"ticket-keys", 0, "FILE", .opts = CLI_CTX_ARG, .field = offsetof(edge_options, ticket_keys),
     .help = "shared ticket keys (cluster: STATE_DIR/cluster/ticket-keys.json)"},
    {"access-log", 0, "FILE", "edge.access_log", .help = "access log ('-': stdout)"},
    {"access-log-format", 0, "FORMAT", "edge.access_log_format", .help = "combined or json"},
    {"workers", 0, "N|auto", "edge.workers", .help = "worker processes"},
    {"header-timeout", 0, "D", "edge.header_timeout", .help = "whole request head within"},
    {"keepalive-timeout", 0, "D", "edge.keepalive_timeout", .help = "idle connections closed"},
    {"send-timeout", 0, "D", "edge.send_timeout", .help = "a client reading nothing closed"},
    {"proxy-connect-timeout", 0, "D", "edge.proxy_connect_timeout", .help = "upstream connect"},
    {"proxy-read-timeout", 0, "D", "edge.proxy_read_timeout", .help = "upstream silent"},
    {"upstream-fail-timeout", 0, "D", "edge.upstream_fail_timeout",
     .help = "a failed upstream is skipped"},
    {"graceful-timeout", 0, "D", .fn = set_graceful_timeout,
     .help = "time to finish requests on stop (default 30s)"},
    {"max-body-size", 0, "SIZE", "edge.max_body_size", .help = "413 past it (0: no limit)"},
    {"max-header-size", 0, "SIZE", "edge.max_header_size", .help = "431 past it"},
    {"max-header-count", 0, "N", "edge.max_header_count", .help = "431 past it"},
    {"max-connections", 0, "N", "edge.max_connections", .help = "per worker"},
    {"pressure-threshold", 0, "FRACTION", "edge.pressure_threshold",
     .help = "of max-connections: short head timeout"},
    {"pressure-header-timeout", 0, "D", "edge.pressure_header_timeout",
     .help = "the head timeout under pressure"},
    {"pressure-log-interval", 0, "D", "edge.pressure_log_interval",
     .help = "shedding summarised this often"},
    {"h2-max-concurrent-streams", 0, "N", "edge.h2_max_concurrent_streams",
     .help = "HTTP/2 streams open at once per connection"},
    {"h2-max-header-list-size", 0, "SIZE", "edge.h2_max_header_list_size",
     .help = "HTTP/2 request fields; 431 past it"},
    {"h2-max-frame-size", 0, "SIZE", "edge.h2_max_frame_size", .help = "HTTP/2 frames taken"},
    {"h2-stream-window", 0, "SIZE", "edge.h2_stream_window",
     .help = "HTTP/2 request body sent ahead, per stream"},
    {"h2-connection-window", 0, "SIZE", "edge.h2_connection_window", .help = "... per connection"},
    {"h2-max-requests", 0, "N", "edge.h2_max_requests",
     .help = "HTTP/2 streams per connection, then GOAWAY"},
    {"h2-idle-timeout", 0, "D", "edge.h2_idle_timeout",
     .help = "an HTTP/2 connection with no stream closed"},
    {"log-level", 0, "LEVEL", "log_level", .fn = cli_log_level, .help = "debug, info, warn, error"},
    {.name = NULL},
};

/* Run from flags alone, the edge listens only where told. */
static void standalone(hearth_config *cfg)
{
    strlist_clear(&cfg->edge.http);
    strlist_clear(&cfg->edge.https);
}

static const cli_spec edge_cli = {
    .prog = "edge",
    .usage = "usage: edge --config FILE [--check] [flags]\n"
             "       edge [--http ADDR]... [--https ADDR]... [--server-name NAME [site flags]]...\n"
             "            [flags]\n",
    .notes = "Each --server-name starts a site; the site flags after it belong to it (before any,\n"
             "they make a site named localhost). Durations: 500ms, 10s, 5m; sizes: 512, 64k, 1m.\n",
    .flags = edge_flags,
    .config_flag = "config",
    .standalone = standalone,
};

static int check_sites(edge_options *o, char *err, size_t errlen)
{
    for (size_t i = 0; i < o->cfg.site_count; i++) {
        config_site *s = &o->cfg.sites[i];
        if (s->cert_count == 0 && !o->config_path)
            s->tls = SITE_TLS_OFF;
        for (size_t j = 0; j < s->cert_count; j++) {
            if (!s->certs[j].cert || !s->certs[j].key) {
                snprintf(err, errlen, "site '%s': --cert and --key go in pairs", s->name);
                return -1;
            }
        }
    }
    if (o->cfg.edge.https.count > 0) {
        bool any = false;
        for (size_t i = 0; i < o->cfg.site_count; i++) {
            config_tls_mode t = o->cfg.sites[i].tls;
            /* certd's certificates may not exist yet: the edge starts and waits for them. */
            bool managed = o->config_path && (t == SITE_TLS_ACME || t == SITE_TLS_INTERNAL);
            any |= o->cfg.sites[i].cert_count > 0 || managed;
        }
        if (!any) {
            snprintf(err, errlen, "--https needs a certificate: give --cert and --key");
            return -1;
        }
    }
    return 0;
}

int edge_options_parse(edge_options *o, int argc, char **argv, char *err, size_t errlen)
{
    cli_parsed parsed;
    memset(o, 0, sizeof(*o));
    o->graceful_timeout_ms = 30000;
    cli_result r = cli_parse(&edge_cli, argc, argv, &o->cfg, o, &parsed, err, errlen);
    o->help = r == CLI_DONE;
    if (r != CLI_RUN)
        return r == CLI_DONE ? 0 : -1;
    if (parsed.config_path) {
        o->config_path = strdup(parsed.config_path);
        if (!o->acme_webroot && o->cfg.certd.webroot)
            o->acme_webroot = strdup(o->cfg.certd.webroot);
    } else if (o->cfg.edge.http.count == 0 && o->cfg.edge.https.count == 0) {
        snprintf(err, errlen, "give --http and/or --https (or --config)");
        return -1;
    }
    return check_sites(o, err, errlen);
}

void edge_options_free(edge_options *o)
{
    config_free(&o->cfg);
    free(o->config_path);
    free(o->acme_webroot);
}
