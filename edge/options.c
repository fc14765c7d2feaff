/* Command line: `--config FILE` (the stack's YAML) and the flags of the one-site case, both
 * ending up in the same hearth_config so everything after this file sees one shape. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge/options.h"

enum {
    OPT_HTTP = 256,
    OPT_HTTPS,
    OPT_SERVER_NAME,
    OPT_ALIAS,
    OPT_CERT,
    OPT_KEY,
    OPT_STATIC,
    OPT_CACHE_CONTROL,
    OPT_UPSTREAM,
    OPT_HSTS,
    OPT_ACME_WEBROOT,
    OPT_ACCESS_LOG,
    OPT_ACCESS_LOG_FORMAT,
    OPT_WORKERS,
    OPT_HEADER_TIMEOUT,
    OPT_KEEPALIVE_TIMEOUT,
    OPT_SEND_TIMEOUT,
    OPT_PROXY_CONNECT_TIMEOUT,
    OPT_PROXY_READ_TIMEOUT,
    OPT_UPSTREAM_FAIL_TIMEOUT,
    OPT_GRACEFUL_TIMEOUT,
    OPT_MAX_BODY_SIZE,
    OPT_MAX_HEADER_SIZE,
    OPT_MAX_HEADER_COUNT,
    OPT_MAX_CONNECTIONS,
    OPT_PRESSURE_THRESHOLD,
    OPT_PRESSURE_HEADER_TIMEOUT,
    OPT_PRESSURE_LOG_INTERVAL,
    OPT_LOG_LEVEL,
    OPT_CONFIG,
    OPT_HELP,
    OPT_CHECK,
};

static const struct option long_opts[] = {
    {"http", required_argument, NULL, OPT_HTTP},
    {"https", required_argument, NULL, OPT_HTTPS},
    {"server-name", required_argument, NULL, OPT_SERVER_NAME},
    {"alias", required_argument, NULL, OPT_ALIAS},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"static", required_argument, NULL, OPT_STATIC},
    {"cache-control", required_argument, NULL, OPT_CACHE_CONTROL},
    {"upstream", required_argument, NULL, OPT_UPSTREAM},
    {"hsts", required_argument, NULL, OPT_HSTS},
    {"acme-webroot", required_argument, NULL, OPT_ACME_WEBROOT},
    {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
    {"access-log-format", required_argument, NULL, OPT_ACCESS_LOG_FORMAT},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
    {"keepalive-timeout", required_argument, NULL, OPT_KEEPALIVE_TIMEOUT},
    {"send-timeout", required_argument, NULL, OPT_SEND_TIMEOUT},
    {"proxy-connect-timeout", required_argument, NULL, OPT_PROXY_CONNECT_TIMEOUT},
    {"proxy-read-timeout", required_argument, NULL, OPT_PROXY_READ_TIMEOUT},
    {"upstream-fail-timeout", required_argument, NULL, OPT_UPSTREAM_FAIL_TIMEOUT},
    {"graceful-timeout", required_argument, NULL, OPT_GRACEFUL_TIMEOUT},
    {"max-body-size", required_argument, NULL, OPT_MAX_BODY_SIZE},
    {"max-header-size", required_argument, NULL, OPT_MAX_HEADER_SIZE},
    {"max-header-count", required_argument, NULL, OPT_MAX_HEADER_COUNT},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"pressure-threshold", required_argument, NULL, OPT_PRESSURE_THRESHOLD},
    {"pressure-header-timeout", required_argument, NULL, OPT_PRESSURE_HEADER_TIMEOUT},
    {"pressure-log-interval", required_argument, NULL, OPT_PRESSURE_LOG_INTERVAL},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"help", no_argument, NULL, OPT_HELP},
    {"check", no_argument, NULL, OPT_CHECK},
    {NULL, 0, NULL, 0},
};

void edge_usage(FILE *f)
{
    fputs("usage: edge --config FILE [--check]   (--check: validate, like nginx -t)\n"
          "       edge [--http ADDR]... [--https ADDR]... [--server-name NAME [--alias NAME]...\n"
          "            --cert FILE --key FILE [--cert FILE --key FILE] [--static PREFIX=DIR\n"
          "            [--cache-control VALUE]]... [--upstream unix:PATH|HOST:PORT]...\n"
          "            [--hsts DURATION]]... [--acme-webroot DIR] [--access-log FILE]\n"
          "            [--access-log-format combined|json] [--workers N|auto]\n"
          "            [--header-timeout D] [--keepalive-timeout D] [--send-timeout D]\n"
          "            [--proxy-connect-timeout D] [--proxy-read-timeout D]\n"
          "            [--upstream-fail-timeout D] [--graceful-timeout D]\n"
          "            [--max-body-size SIZE] [--max-header-size SIZE] [--max-header-count N]\n"
          "            [--max-connections N] [--pressure-threshold FRACTION]\n"
          "            [--pressure-header-timeout D] [--pressure-log-interval D]\n"
          "            [--log-level LEVEL]\n"
          "Each --server-name starts a site; the site flags after it belong to it.\n"
          "Durations: 500ms, 10s, 5m; sizes: 512, 64k, 1m.\n",
          f);
}

static config_site *site_add(hearth_config *cfg, const char *name)
{
    config_site *sites = realloc(cfg->sites, (cfg->site_count + 1) * sizeof(*sites));
    if (!sites)
        return NULL;
    cfg->sites = sites;
    config_site *s = &sites[cfg->site_count++];
    memset(s, 0, sizeof(*s));
    s->name = strdup(name);
    s->tls = SITE_TLS_FILES;
    return s;
}

/* Site flags before any --server-name make an implicit site named localhost. */
static config_site *cur_site(edge_options *o)
{
    if (o->cfg.site_count == 0)
        return site_add(&o->cfg, "localhost");
    return &o->cfg.sites[o->cfg.site_count - 1];
}

static int add_cert(config_site *s, const char *file, bool is_key)
{
    /* A --cert starts a pair; the --key after it completes it. */
    if (!is_key || s->cert_count == 0 || s->certs[s->cert_count - 1].key) {
        config_cert_pair *c = realloc(s->certs, (s->cert_count + 1) * sizeof(*c));
        if (!c)
            return -1;
        s->certs = c;
        memset(&c[s->cert_count], 0, sizeof(*c));
        s->cert_count++;
    }
    config_cert_pair *p = &s->certs[s->cert_count - 1];
    char **slot = is_key ? &p->key : &p->cert;
    if (*slot)
        return -1;
    *slot = strdup(file);
    return 0;
}

static int add_static(config_site *s, const char *spec)
{
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || spec[0] != '/' || !eq[1])
        return -1;
    config_static *st = realloc(s->statics, (s->static_count + 1) * sizeof(*st));
    if (!st)
        return -1;
    s->statics = st;
    config_static *n = &st[s->static_count++];
    memset(n, 0, sizeof(*n));
    size_t pl = (size_t)(eq - spec);
    n->prefix = malloc(pl + 2);
    memcpy(n->prefix, spec, pl);
    if (spec[pl - 1] != '/')
        n->prefix[pl++] = '/';
    n->prefix[pl] = 0;
    n->root = strdup(eq + 1);
    return 0;
}

static int duration(const char *v, int64_t *out)
{
    return config_parse_duration(v, out);
}

static int set_int(const char *v, int *out, int min)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < min || n > 10000000)
        return -1;
    *out = (int)n;
    return 0;
}

/* As the config file takes it: strictly between 0 and 1. */
static int set_fraction(const char *v, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !(x > 0 && x < 1))
        return -1;
    *out = x;
    return 0;
}

static int site_opt(edge_options *o, int opt, const char *arg)
{
    config_site *s = opt == OPT_SERVER_NAME ? site_add(&o->cfg, arg) : cur_site(o);
    if (!s)
        return -1;
    switch (opt) {
    case OPT_SERVER_NAME:
        return 0;
    case OPT_ALIAS:
        return strlist_add(&s->aliases, arg);
    case OPT_CERT:
    case OPT_KEY:
        return add_cert(s, arg, opt == OPT_KEY);
    case OPT_STATIC:
        return add_static(s, arg);
    case OPT_CACHE_CONTROL:
        if (s->static_count == 0)
            return -1;
        free(s->statics[s->static_count - 1].cache_control);
        s->statics[s->static_count - 1].cache_control = strdup(arg);
        return 0;
    case OPT_UPSTREAM:
        return strlist_add(&s->upstreams, arg);
    case OPT_HSTS:
        return duration(arg, &s->hsts_ms);
    }
    return -1;
}

static int edge_opt(edge_options *o, int opt, const char *arg)
{
    config_edge *e = &o->cfg.edge;
    uint64_t size;
    switch (opt) {
    case OPT_HTTP:
    case OPT_HTTPS: {
        strlist *l = opt == OPT_HTTP ? &e->http : &e->https;
        bool *cleared = opt == OPT_HTTP ? &o->http_given : &o->https_given;
        if (!*cleared)
            strlist_clear(l);
        *cleared = true;
        return strlist_add(l, arg);
    }
    case OPT_ACCESS_LOG:
        free(e->access_log);
        e->access_log = strdup(arg);
        return 0;
    case OPT_ACCESS_LOG_FORMAT:
        if (strcmp(arg, "json") == 0)
            e->access_log_format = ACCESS_LOG_JSON;
        else if (strcmp(arg, "combined") == 0)
            e->access_log_format = ACCESS_LOG_COMBINED;
        else
            return -1;
        return 0;
    case OPT_WORKERS:
        if (strcmp(arg, "auto") == 0) {
            e->workers = 0;
            return 0;
        }
        return set_int(arg, &e->workers, 1);
    case OPT_HEADER_TIMEOUT:
        return duration(arg, &e->header_timeout_ms);
    case OPT_KEEPALIVE_TIMEOUT:
        return duration(arg, &e->keepalive_timeout_ms);
    case OPT_SEND_TIMEOUT:
        return duration(arg, &e->send_timeout_ms);
    case OPT_PROXY_CONNECT_TIMEOUT:
        return duration(arg, &e->proxy_connect_timeout_ms);
    case OPT_PROXY_READ_TIMEOUT:
        return duration(arg, &e->proxy_read_timeout_ms);
    case OPT_UPSTREAM_FAIL_TIMEOUT:
        return duration(arg, &e->upstream_fail_timeout_ms);
    case OPT_GRACEFUL_TIMEOUT:
        return duration(arg, &o->graceful_timeout_ms);
    case OPT_MAX_BODY_SIZE:
        return config_parse_size(arg, &e->max_body_size);
    case OPT_MAX_HEADER_SIZE:
        if (config_parse_size(arg, &size) < 0 || size < 256 || size > (1u << 20))
            return -1;
        e->max_header_size = size;
        return 0;
    case OPT_MAX_HEADER_COUNT:
        return set_int(arg, &e->max_header_count, 1);
    case OPT_MAX_CONNECTIONS:
        return set_int(arg, &e->max_connections, 1);
    case OPT_PRESSURE_THRESHOLD:
        return set_fraction(arg, &e->pressure_threshold);
    case OPT_PRESSURE_HEADER_TIMEOUT:
        return duration(arg, &e->pressure_header_timeout_ms);
    case OPT_PRESSURE_LOG_INTERVAL:
        return duration(arg, &e->pressure_log_interval_ms);
    case OPT_ACME_WEBROOT:
        free(o->acme_webroot);
        o->acme_webroot = strdup(arg);
        return 0;
    case OPT_LOG_LEVEL:
        free(o->cfg.log_level);
        o->cfg.log_level = strdup(arg);
        return log_level_parse(arg) < 0 ? -1 : 0;
    }
    return site_opt(o, opt, arg);
}

static const char *find_config(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0)
            return argv[i] + 9;
    }
    return NULL;
}

static int check_sites(edge_options *o, char *err, size_t errlen)
{
    for (size_t i = 0; i < o->cfg.site_count; i++) {
        config_site *s = &o->cfg.sites[i];
        if (s->cert_count == 0 && !o->cfg_from_file)
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
            bool managed = o->cfg_from_file && (t == SITE_TLS_ACME || t == SITE_TLS_INTERNAL);
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
    memset(o, 0, sizeof(*o));
    o->graceful_timeout_ms = 30000;
    const char *path = find_config(argc, argv);
    if (path) {
        if (config_load(&o->cfg, path, err, errlen) < 0)
            return -1;
        o->config_path = strdup(path);
        o->cfg_from_file = true;
        o->acme_webroot = o->cfg.certd.webroot ? strdup(o->cfg.certd.webroot) : NULL;
    } else {
        config_defaults(&o->cfg);
    }
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        if (opt == OPT_HELP || opt == 'h') {
            o->help = true;
            return 0;
        }
        if (opt == OPT_CONFIG)
            continue;
        if (opt == OPT_CHECK) {
            o->check = true;
            continue;
        }
        if (opt == '?' || edge_opt(o, opt, optarg) < 0) {
            if (opt != '?')
                snprintf(err, errlen, "bad value '%s' for --%s", optarg,
                         long_opts[opt - OPT_HTTP].name);
            else
                snprintf(err, errlen, "unknown option (see --help)");
            return -1;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
        return -1;
    }
    if (!path && !o->http_given && !o->https_given) {
        snprintf(err, errlen, "give --http and/or --https (or --config)");
        return -1;
    }
    if (!o->http_given && !path)
        strlist_clear(&o->cfg.edge.http);
    if (!o->https_given && !path)
        strlist_clear(&o->cfg.edge.https);
    return check_sites(o, err, errlen);
}

void edge_options_free(edge_options *o)
{
    config_free(&o->cfg);
    free(o->config_path);
    free(o->acme_webroot);
}
