/* The schema of the stack's one config file (docs/config.md): a field table per YAML map, what
 * its strings must look like, the checks across keys and the defaults derived from other
 * values. The generic walking and messages are shared/yaml_load.c's. */
#include "shared/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/ipaddr.h"
#include "shared/listen_addr.h"
#include "shared/yaml_load.h"

/* ---- what strings must look like ---- */

/* DNS labels of letters, digits and '-'; a leading "*." is a wildcard, for aliases. */
static bool valid_hostname(const char *s, bool wildcard_ok)
{
    size_t total = strlen(s);
    if (wildcard_ok && strncmp(s, "*.", 2) == 0)
        s += 2;
    if (total == 0 || total > 253)
        return false;
    for (;;) {
        size_t len = 0;
        for (; s[len] && s[len] != '.'; len++) {
            char c = s[len];
            bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
            if (!alnum && c != '-')
                return false;
        }
        if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-')
            return false;
        if (!s[len])
            return true;
        s += len + 1;
    }
}

/* One parser for listen addresses everywhere (shared/listen_addr.c); edge.http and edge.https
 * are TCP only. */
static bool valid_listen(const char *s, bool unix_ok)
{
    listen_addr a;
    return listen_addr_parse(s, &a, NULL, 0) == 0 && (unix_ok || a.kind != LISTEN_ADDR_UNIX);
}

bool config_is_env_assignment(const char *s)
{
    const char *eq = strchr(s, '=');
    if (!eq || eq == s || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (const char *p = s; p < eq; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_'))
            return false;
    return true;
}

bool config_is_mount_prefix(const char *s)
{
    size_t n = strlen(s);
    return n >= 2 && s[0] == '/' && s[n - 1] != '/' && !strpbrk(s, "?# ");
}

/* A dotted Python name: "notes.wsgi", "app". */
static bool dotted_name(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool start = i == 0 || s[i - 1] == '.';
        if (s[i] == '.' ? start || i + 1 == n
                        : !(isalnum((unsigned char)s[i]) || s[i] == '_') ||
                              (start && isdigit((unsigned char)s[i])))
            return false;
    }
    return n > 0;
}

bool config_is_wsgi_app(const char *module)
{
    const char *colon = strchr(module, ':');
    if (!colon || colon == module || !colon[1])
        return false;
    size_t attr_len = strlen(colon + 1);
    if (attr_len > 2 && strcmp(colon + 1 + attr_len - 2, "()") == 0)
        attr_len -= 2; /* a factory, called to make the application */
    return dotted_name(module, (size_t)(colon - module)) && dotted_name(colon + 1, attr_len);
}

static bool host_valid(const char *s, bool in_list)
{
    return valid_hostname(s, in_list); /* aliases may be wildcards */
}

static bool listen_valid(const char *s, bool in_list)
{
    (void)in_list;
    return valid_listen(s, false);
}

static bool addr_valid(const char *s, bool in_list)
{
    (void)in_list;
    return valid_listen(s, true);
}

/* The parser's own words, which the programs binding the address say too. */
static int addr_why_not(const char *s, char *why, size_t len)
{
    listen_addr a;
    return listen_addr_parse(s, &a, why, len);
}

/* "unix:PATH" names a file relative to the config file's directory. */
static const char *addr_path(const char *s)
{
    return strncmp(s, "unix:", 5) == 0 ? s + 5 : NULL;
}

/* The metrics endpoint: its host written out, never every interface (docs/metrics.md). */
static bool metrics_valid(const char *s, bool in_list)
{
    (void)in_list;
    listen_addr a;
    return listen_addr_parse(s, &a, NULL, 0) == 0 && a.kind == LISTEN_ADDR_HOST;
}

static int metrics_why_not(const char *s, char *why, size_t len)
{
    listen_addr a;
    if (listen_addr_parse(s, &a, why, len) < 0)
        return -1;
    if (a.kind == LISTEN_ADDR_UNIX)
        snprintf(why, len, "expected a TCP address like 127.0.0.1:9145, got '%s'", s);
    else
        snprintf(why, len,
                 "'%s' would serve metrics on every interface; name the address, e.g. "
                 "127.0.0.1:9145 (metrics must not be public)",
                 s);
    return -1;
}

static bool url_valid(const char *s, bool in_list)
{
    (void)in_list;
    return (strncmp(s, "https://", 8) == 0 && s[8]) || (strncmp(s, "http://", 7) == 0 && s[7]);
}

static bool env_valid(const char *s, bool in_list)
{
    (void)in_list;
    return config_is_env_assignment(s);
}

static bool mount_valid(const char *s, bool in_list)
{
    (void)in_list;
    return config_is_mount_prefix(s);
}

/* A module is a path, or a WSGI application "pkg.mod:app", which is not. */
static const char *module_path(const char *s)
{
    return config_is_wsgi_app(s) ? NULL : s;
}

static bool cidr_valid(const char *s, bool in_list)
{
    (void)in_list;
    ip_cidr c;
    return ip_cidr_parse(s, &c) == 0;
}

static bool rate_valid(const char *s, bool in_list)
{
    (void)in_list;
    uint32_t r;
    return config_parse_rate(s, &r) == 0;
}

/* A media type to compress: "application/json", "text/" and a star (any subtype), or "+xml" (a
 * structured syntax suffix: image/svg+xml, application/atom+xml). */
static bool media_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || strchr("!#$&-^_.+", s[i])))
            return false;
    return true;
}

static bool media_valid(const char *s, bool in_list)
{
    (void)in_list;
    if (s[0] == '+')
        return media_token(s + 1, strlen(s + 1));
    const char *slash = strchr(s, '/');
    return slash && media_token(s, (size_t)(slash - s)) &&
           (strcmp(slash + 1, "*") == 0 || media_token(slash + 1, strlen(slash + 1)));
}

static const yl_kind host_kind = {"a host name like example.com", host_valid, NULL, true, NULL};
static const yl_kind listen_kind = {"a listen address like :443, 0.0.0.0:443 or [::]:443",
                                    listen_valid, NULL, false, addr_why_not};
static const yl_kind addr_kind = {"unix:PATH or HOST:PORT", addr_valid, addr_path, false,
                                  addr_why_not};
static const yl_kind metrics_kind = {"an address like 127.0.0.1:9145", metrics_valid, NULL, false,
                                     metrics_why_not};
static const yl_kind url_kind = {"an http:// or https:// URL", url_valid, NULL, false, NULL};
static const yl_kind env_kind = {"NAME=VALUE", env_valid, NULL, false, NULL};
static const yl_kind mount_kind = {"a path prefix like /app", mount_valid, NULL, false, NULL};
/* A health check's path goes into a request line as written. */
static bool check_path_valid(const char *s, bool in_list)
{
    (void)in_list;
    if (s[0] != '/')
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

static const yl_kind check_path_kind = {"a path like /healthz", check_path_valid, NULL, false,
                                        NULL};
static const yl_kind cidr_kind = {"an address or a CIDR range like 10.0.0.0/8 (no bits set past "
                                  "the prefix)",
                                  cidr_valid, NULL, false, NULL};
static const yl_kind rate_kind = {"a rate like 10r/s or 600r/m (1r/m to 1000000r/s)", rate_valid,
                                  NULL, false, NULL};

static const yl_kind media_kind = {"a media type like application/json, text/* or +json",
                                   media_valid, NULL, true, NULL};
static const yl_kind module_kind = {"a string or a list of strings", NULL, module_path, false,
                                    NULL};

/* ---- the tables ---- */

/* YL_ENUM stores through an int *: the config enums must be int-sized. */
_Static_assert(sizeof(config_tls_mode) == sizeof(int), "enums are int-sized");
_Static_assert(sizeof(config_key_type) == sizeof(int), "enums are int-sized");
_Static_assert(sizeof(config_log_format) == sizeof(int), "enums are int-sized");
_Static_assert(sizeof(config_access_format) == sizeof(int), "enums are int-sized");
_Static_assert(sizeof(config_balance) == sizeof(int), "enums are int-sized");

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const access_formats[] = {"combined", "json", NULL};
static const char *const balances[] = {"round_robin", "least_conn", NULL};
static const char *const key_types[] = {"ec256", "ec384", "rsa2048", "rsa3072", "rsa4096", NULL};
/* Indexed by config_tls_mode; "files" is not written as a name, it is what a cert/key map
 * means, so it is refused as a scalar. */
static const char *const tls_modes[] = {"acme", "files", "internal", "off", NULL};

#define AT(type, member) .offset = offsetof(type, member)
#define STRING(k, t, m, fl, kd, d)                                                                 \
    {                                                                                              \
        .key = k, .type = YL_STRING, .flags = fl, AT(t, m), .kind = kd, .def = d                   \
    }
#define STRINGS(k, t, m, fl, kd, d)                                                                \
    {                                                                                              \
        .key = k, .type = YL_STRINGS, .flags = fl, AT(t, m), .kind = kd, .def = d                  \
    }
#define BOOL(k, t, m, d)                                                                           \
    {                                                                                              \
        .key = k, .type = YL_BOOL, AT(t, m), .def = d                                              \
    }
#define INT(k, t, m, fl, lo, hi, d)                                                                \
    {                                                                                              \
        .key = k, .type = YL_INT, .flags = fl, AT(t, m), .min = lo, .max = hi, .def = d            \
    }
#define DURATION(k, t, m, lo, hi, d)                                                               \
    {                                                                                              \
        .key = k, .type = YL_DURATION, AT(t, m), .min = lo, .max = hi, .def = d                    \
    }
#define SIZE(k, t, m, lo, hi, d)                                                                   \
    {                                                                                              \
        .key = k, .type = YL_SIZE, AT(t, m), .min = lo, .max = hi, .def = d                        \
    }
#define ENUM(k, t, m, n, d)                                                                        \
    {                                                                                              \
        .key = k, .type = YL_ENUM, AT(t, m), .names = n, .def = d                                  \
    }
#define CHOICE(k, t, m, n, d)                                                                      \
    {                                                                                              \
        .key = k, .type = YL_CHOICE, AT(t, m), .names = n, .def = d                                \
    }
#define MAP(k, t, m, s)                                                                            \
    {                                                                                              \
        .key = k, .type = YL_MAP, AT(t, m), .sub = s                                               \
    }
#define LIST(k, t, m, l)                                                                           \
    {                                                                                              \
        .key = k, .type = YL_LIST, AT(t, m), .list = l                                             \
    }
#define END                                                                                        \
    {                                                                                              \
        .key = NULL                                                                                \
    }

/* Levels (docs/edge.md has the measurements): gzip 6, zlib's own default and Apache's (nginx's
 * is 1, a third more bytes on JSON); br 5, the first level smaller than gzip 6 on JSON, HTML and
 * code (4 comes out larger); zstd 3, zstd's default, several times cheaper than gzip 6. */
static const yl_field compression_fields[] = {
    BOOL("enabled", config_compression, enabled, "false"),
    STRINGS("types", config_compression, types, 0, &media_kind,
            "text/* application/json application/javascript application/xml image/svg+xml "
            "+json +xml"),
    SIZE("min_length", config_compression, min_length, 0, INT64_C(1) << 40, "256"),
    INT("gzip_level", config_compression, gzip_level, 0, 1, 9, "6"),
    INT("br_level", config_compression, br_level, 0, 0, 11, "5"),
    INT("zstd_level", config_compression, zstd_level, 0, 1, 19, "3"),
    END,
};

static const yl_field edge_fields[] = {
    INT("workers", config_edge, workers, YL_AUTO, 0, 1024, "auto"),
    STRINGS("http", config_edge, http, 0, &listen_kind, ":80"),
    STRINGS("https", config_edge, https, 0, &listen_kind, ":443"),
    STRING("access_log", config_edge, access_log, YL_NULLABLE | YL_PATH, NULL, NULL),
    ENUM("access_log_format", config_edge, access_log_format, access_formats, "combined"),
    DURATION("header_timeout", config_edge, header_timeout_ms, MS_SECOND, MS_HOUR, "60s"),
    DURATION("keepalive_timeout", config_edge, keepalive_timeout_ms, 0, MS_HOUR, "75s"),
    DURATION("send_timeout", config_edge, send_timeout_ms, MS_SECOND, MS_HOUR, "60s"),
    SIZE("max_body_size", config_edge, max_body_size, 0, INT64_C(1) << 40, "1m"),
    SIZE("max_header_size", config_edge, max_header_size, 1024, 1 << 20, "16k"),
    INT("max_header_count", config_edge, max_header_count, 0, 1, 10000, "100"),
    INT("max_connections", config_edge, max_connections, 0, 1, 1000000, "1024"),
    {.key = "pressure_threshold",
     .type = YL_FRACTION,
     AT(config_edge, pressure_threshold),
     .def = "0.75"},
    DURATION("pressure_header_timeout", config_edge, pressure_header_timeout_ms, 100, MS_HOUR,
             "5s"),
    DURATION("pressure_log_interval", config_edge, pressure_log_interval_ms, MS_SECOND, MS_HOUR,
             "10s"),
    DURATION("proxy_connect_timeout", config_edge, proxy_connect_timeout_ms, 100, MS_HOUR, "60s"),
    DURATION("proxy_read_timeout", config_edge, proxy_read_timeout_ms, MS_SECOND, MS_DAY, "60s"),
    DURATION("upstream_fail_timeout", config_edge, upstream_fail_timeout_ms, 0, MS_HOUR, "10s"),
    INT("h2_max_concurrent_streams", config_edge, h2_max_concurrent_streams, 0, 1, 1000, "128"),
    SIZE("h2_max_header_list_size", config_edge, h2_max_header_list_size, 1024, 1 << 20, "32k"),
    SIZE("h2_max_frame_size", config_edge, h2_max_frame_size, 16384, (1 << 24) - 1, "16k"),
    SIZE("h2_stream_window", config_edge, h2_stream_window, 16384, INT32_MAX, "64k"),
    SIZE("h2_connection_window", config_edge, h2_connection_window, 65535, INT32_MAX, "1m"),
    INT("h2_max_requests", config_edge, h2_max_requests, 0, 1, INT_MAX, "1000"),
    DURATION("h2_idle_timeout", config_edge, h2_idle_timeout_ms, MS_SECOND, MS_HOUR, "3m"),
    MAP("compression", config_edge, compression, compression_fields),
    STRINGS("trusted_proxies", config_edge, trusted_proxies, 0, &cidr_kind, NULL),
    BOOL("proxy_protocol", config_edge, proxy_protocol, "false"),
    INT("max_connections_per_client", config_edge, max_connections_per_client, 0, 0, 65535, "0"),
    INT("client_table_size", config_edge, client_table_size, 0, 1024, 1 << 24, "65536"),
    END,
};

static const yl_field appserver_fields[] = {
    STRINGS("modules", config_appserver, modules, YL_PATH, &module_kind, NULL),
    STRINGS("bind", config_appserver, bind, 0, &addr_kind, NULL), /* derived from run_dir */
    INT("workers", config_appserver, workers, YL_AUTO, 0, 1024, "auto"),
    DURATION("timeout", config_appserver, timeout_ms, MS_SECOND, MS_DAY, "30s"),
    DURATION("graceful_timeout", config_appserver, graceful_timeout_ms, 0, MS_DAY, "30s"),
    DURATION("keepalive_timeout", config_appserver, keepalive_timeout_ms, 0, MS_HOUR, "60s"),
    INT("max_requests", config_appserver, max_requests, 0, 0, INT_MAX, "0"),
    INT("max_requests_jitter", config_appserver, max_requests_jitter, 0, 0, INT_MAX, "0"),
    SIZE("max_body_size", config_appserver, max_body_size, 0, INT64_C(1) << 40,
         NULL), /* derived from edge.max_body_size */
    STRING("access_log", config_appserver, access_log, YL_NULLABLE | YL_PATH, NULL, NULL),
    STRING("chdir", config_appserver, chdir, YL_NULLABLE | YL_PATH, NULL, NULL),
    STRINGS("pythonpath", config_appserver, pythonpath, YL_PATH, NULL, NULL),
    STRING("virtualenv", config_appserver, virtualenv, YL_NULLABLE | YL_PATH, NULL, NULL),
    STRINGS("env", config_appserver, env, 0, &env_kind, NULL),
    STRING("mount", config_appserver, mount, YL_NULLABLE, &mount_kind, NULL),
    END,
};

static const yl_field certd_fields[] = {
    STRING("server", config_certd, server, 0, &url_kind,
           "https://acme-v02.api.letsencrypt.org/directory"),
    STRING("email", config_certd, email, YL_NULLABLE, NULL, NULL),
    BOOL("agree_tos", config_certd, agree_tos, "false"),
    STRING("ca_bundle", config_certd, ca_bundle, YL_NULLABLE | YL_PATH, NULL, NULL),
    STRING("eab_kid", config_certd, eab_kid, YL_NULLABLE, NULL, NULL),
    STRING("eab_hmac_key", config_certd, eab_hmac_key, YL_NULLABLE, NULL, NULL),
    ENUM("key_type", config_certd, key_type, key_types, "ec256"),
    STRING("cert_dir", config_certd, cert_dir, YL_PATH, NULL, NULL), /* derived from state_dir */
    STRING("webroot", config_certd, webroot, YL_PATH, NULL, NULL),   /* derived from state_dir */
    DURATION("check_interval", config_certd, check_interval_ms, MS_SECOND, 7 * MS_DAY, "12h"),
    {.key = "renew_remaining_fraction",
     .type = YL_FRACTION,
     AT(config_certd, renew_remaining_fraction),
     .def = "0.3333"},
    END,
};

static bool prefix_valid(const char *s, bool in_list)
{
    (void)in_list;
    size_t n = strlen(s);
    return n >= 2 && s[0] == '/' && s[n - 1] == '/' && !strstr(s, "//");
}

static const yl_kind prefix_kind = {"a key prefix like /hearth/ (starts and ends with '/')",
                                    prefix_valid, NULL, false, NULL};

static const yl_field cluster_fields[] = {
    STRINGS("etcd", config_cluster, etcd, 0, &url_kind, NULL),
    STRING("prefix", config_cluster, prefix, 0, &prefix_kind, "/hearth/"),
    STRING("ca", config_cluster, ca, YL_NULLABLE | YL_PATH, NULL, NULL),
    STRING("cert", config_cluster, cert, YL_NULLABLE | YL_PATH, NULL, NULL),
    STRING("key", config_cluster, key, YL_NULLABLE | YL_PATH, NULL, NULL),
    STRING("username", config_cluster, username, YL_NULLABLE, NULL, NULL),
    STRING("password_file", config_cluster, password_file, YL_NULLABLE | YL_PATH, NULL, NULL),
    STRING("host", config_cluster, host, YL_NULLABLE, &host_kind, NULL),
    STRING("secret_key_file", config_cluster, secret_key_file, YL_NULLABLE | YL_PATH, NULL, NULL),
    BOOL("plaintext_secrets", config_cluster, plaintext_secrets, "false"),
    DURATION("lock_ttl", config_cluster, lock_ttl_ms, 2 * MS_SECOND, MS_HOUR, "30s"),
    DURATION("challenge_wait", config_cluster, challenge_wait_ms, 0, 10 * MS_MINUTE, "10s"),
    DURATION("timeout", config_cluster, timeout_ms, 100, MS_MINUTE, "5s"),
    END,
};

static const yl_field supervisor_fields[] = {
    DURATION("stop_timeout", config_supervisor, stop_timeout_ms, MS_SECOND, MS_HOUR, "45s"),
    DURATION("restart_delay", config_supervisor, restart_delay_ms, 10, MS_HOUR, "100ms"),
    DURATION("restart_delay_max", config_supervisor, restart_delay_max_ms, 10, MS_DAY, "30s"),
    DURATION("restart_reset", config_supervisor, restart_reset_ms, MS_SECOND, MS_DAY, "30s"),
    INT("max_restarts", config_supervisor, max_restarts, 0, 1, 10000, "5"),
    DURATION("restart_window", config_supervisor, restart_window_ms, MS_SECOND, MS_DAY, "60s"),
    END,
};

static const yl_field cert_pair_fields[] = {
    STRING("cert", config_cert_pair, cert, YL_REQUIRED | YL_PATH, NULL, NULL),
    STRING("key", config_cert_pair, key, YL_REQUIRED | YL_PATH, NULL, NULL),
    END,
};

static const yl_field static_fields[] = {
    STRING("prefix", config_static, prefix, YL_REQUIRED, NULL, NULL),
    STRING("root", config_static, root, YL_REQUIRED | YL_PATH, NULL, NULL),
    STRING("cache_control", config_static, cache_control, YL_NULLABLE, NULL, NULL),
    END,
};

/* HAProxy's rise and fall; nginx Plus's interval. */
static const yl_field health_check_fields[] = {
    STRING("path", config_health_check, path, 0, &check_path_kind, "/"),
    DURATION("interval", config_health_check, interval_ms, 100, MS_HOUR, "5s"),
    DURATION("timeout", config_health_check, timeout_ms, 100, MS_HOUR, "2s"),
    INT("rise", config_health_check, rise, 0, 1, 100, "2"),
    INT("fall", config_health_check, fall, 0, 1, 100, "3"),
    END,
};

static const yl_field limit_fields[] = {
    STRING("prefix", config_limit, prefix, 0, NULL, "/"),
    STRING("rate", config_limit, rate, YL_REQUIRED, &rate_kind, NULL),
    INT("burst", config_limit, burst, 0, 0, 1000000, "0"),
    END,
};

static int check_static(yl_loader *ld, yaml_node_t *node, void *elem, size_t index,
                        const char *path);
static int check_limit(yl_loader *ld, yaml_node_t *node, void *elem, size_t index,
                       const char *path);
static int check_site(yl_loader *ld, yaml_node_t *node, void *elem, size_t index, const char *path);

static const yl_list cert_pair_list = {cert_pair_fields,
                                       sizeof(config_cert_pair),
                                       offsetof(config_site, certs),
                                       offsetof(config_site, cert_count),
                                       NULL,
                                       "{cert, key}"};
static const yl_list static_list = {static_fields,
                                    sizeof(config_static),
                                    offsetof(config_site, statics),
                                    offsetof(config_site, static_count),
                                    check_static,
                                    NULL};

static const yl_list limit_list = {limit_fields,
                                   sizeof(config_limit),
                                   offsetof(config_site, limits),
                                   offsetof(config_site, limit_count),
                                   check_limit,
                                   "{prefix, rate, burst}"};

static const yl_field site_fields[] = {
    STRING("name", config_site, name, YL_REQUIRED, &host_kind, NULL),
    STRINGS("aliases", config_site, aliases, 0, &host_kind, NULL),
    {.key = "tls",
     .type = YL_NAME_OR_LIST,
     AT(config_site, tls),
     .names = tls_modes,
     .list = &cert_pair_list,
     .list_means = SITE_TLS_FILES},
    DURATION("hsts", config_site, hsts_ms, 0, 730 * MS_DAY, "0"),
    LIST("static", config_site, statics, &static_list),
    STRINGS("upstreams", config_site, upstreams, 0, &addr_kind, NULL), /* derived from the bind */
    ENUM("balance", config_site, balance, balances, "round_robin"),
    INT("max_fails", config_site, max_fails, 0, 0, 1000, "1"),
    DURATION("fail_timeout", config_site, fail_timeout_ms, 0, MS_HOUR, "10s"),
    INT("next_upstream_tries", config_site, next_upstream_tries, 0, 0, CONFIG_UPSTREAMS_MAX, "0"),
    MAP("health_check", config_site, health_check, health_check_fields),
    LIST("limits", config_site, limits, &limit_list),
    MAP("compression", config_site, compression, compression_fields), /* derived from edge's */
    END,
};

static const yl_list site_list = {site_fields,
                                  sizeof(config_site),
                                  offsetof(hearth_config, sites),
                                  offsetof(hearth_config, site_count),
                                  check_site,
                                  NULL};

static const yl_field top_fields[] = {
    STRING("user", hearth_config, user, YL_NULLABLE, NULL, NULL),
    STRING("group", hearth_config, group, YL_NULLABLE, NULL, NULL),
    STRING("run_dir", hearth_config, run_dir, YL_PATH, NULL, "/run/hearth"),
    STRING("state_dir", hearth_config, state_dir, YL_PATH, NULL, "/var/lib/hearth"),
    CHOICE("log_level", hearth_config, log_level, log_levels, "info"),
    ENUM("log_format", hearth_config, log_format, log_formats, "text"),
    STRING("metrics", hearth_config, metrics, YL_NULLABLE, &metrics_kind, NULL),
    MAP("edge", hearth_config, edge, edge_fields),
    MAP("appserver", hearth_config, appserver, appserver_fields),
    MAP("certd", hearth_config, certd, certd_fields),
    MAP("supervisor", hearth_config, supervisor, supervisor_fields),
    MAP("cluster", hearth_config, cluster, cluster_fields),
    LIST("sites", hearth_config, sites, &site_list),
    END,
};

/* ---- checks across keys ---- */

static hearth_config *config_of(yl_loader *ld)
{
    return ld->root;
}

/* A URL prefix of a static root or a limit: a clean path, ending in '/' ("/static" means the
 * directory and must not also match "/staticfoo"). */
static int clean_prefix(yl_loader *ld, yaml_node_t *node, char **prefix, const char *path)
{
    yaml_node_t *at = yl_map_get(ld, node, "prefix");
    char kpath[256];
    const char *p = *prefix;
    size_t len = strlen(p);
    yl_child_path(kpath, sizeof(kpath), path, "prefix");
    if (p[0] != '/')
        return yl_fail(ld, at, kpath, "a URL prefix must start with '/', got '%s'",
                       yl_shown(p, (char[64]){0}));
    if (strstr(p, "/../") || strstr(p, "/./") || strstr(p, "//") ||
        (len >= 3 && strcmp(p + len - 3, "/..") == 0) ||
        (len >= 2 && strcmp(p + len - 2, "/.") == 0))
        return yl_fail(ld, at, kpath, "a URL prefix must be a clean path, got '%s'",
                       yl_shown(p, (char[64]){0}));
    if (p[len - 1] != '/') {
        char *slashed = realloc(*prefix, len + 2);
        if (!slashed)
            return yl_fail_nomem(ld, at, kpath);
        memcpy(slashed + len, "/", 2);
        *prefix = slashed;
    }
    return 0;
}

/* The elements of one site's list are contiguous and loaded in order: elem - index * size is
 * the first, and prefix_at the offset of each one's prefix. */
static int unique_prefix(yl_loader *ld, yaml_node_t *node, const char *elem, size_t index,
                         size_t size, size_t prefix_at, const char *path, const char *by)
{
    const char *prefix = *(char *const *)(elem + prefix_at);
    for (size_t i = 0; i < index; i++) {
        const char *prev = *(char *const *)(elem - (index - i) * size + prefix_at);
        if (strcmp(prev, prefix) == 0) {
            char kpath[256];
            yl_child_path(kpath, sizeof(kpath), path, "prefix");
            return yl_fail(ld, yl_map_get(ld, node, "prefix"), kpath, "'%s' is already %s[%zu]",
                           prefix, by, i);
        }
    }
    return 0;
}

static int check_static(yl_loader *ld, yaml_node_t *node, void *elem, size_t index,
                        const char *path)
{
    config_static *st = elem;
    if (clean_prefix(ld, node, &st->prefix, path) < 0)
        return -1;
    return unique_prefix(ld, node, elem, index, sizeof(*st), offsetof(config_static, prefix), path,
                         "served by static");
}

static int check_limit(yl_loader *ld, yaml_node_t *node, void *elem, size_t index, const char *path)
{
    config_limit *l = elem;
    if (clean_prefix(ld, node, &l->prefix, path) < 0)
        return -1;
    return unique_prefix(ld, node, elem, index, sizeof(*l), offsetof(config_limit, prefix), path,
                         "limited by limits");
}

/* Names that no public CA will issue for get a local CA by default, public ones ACME. */
static config_tls_mode default_tls(const char *name)
{
    static const char *const local[] = {".localhost", ".local",    ".test",      ".example",
                                        ".invalid",   ".internal", ".home.arpa", ".lan"};
    size_t len = strlen(name);
    struct in_addr a4;
    if (!strchr(name, '.') || strcmp(name, "localhost") == 0 || inet_pton(AF_INET, name, &a4) == 1)
        return SITE_TLS_INTERNAL;
    for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
        size_t n = strlen(local[i]);
        if (len > n && strcmp(name + len - n, local[i]) == 0)
            return SITE_TLS_INTERNAL;
    }
    return SITE_TLS_ACME;
}

/* The k-th name of a site (0: name, then aliases) and the node it was written at. */
static const char *site_name(yl_loader *ld, yaml_node_t *node, const config_site *site, size_t k,
                             yaml_node_t **at)
{
    yaml_node_t *aliases;
    if (k == 0) {
        *at = node ? yl_map_get(ld, node, "name") : NULL;
        return site->name;
    }
    aliases = node ? yl_map_get(ld, node, "aliases") : NULL;
    *at = aliases;
    if (aliases && aliases->type == YAML_SEQUENCE_NODE)
        *at = yl_node_at(ld, aliases->data.sequence.items.start[k - 1]);
    return site->aliases.items[k - 1];
}

static int check_site_names(yl_loader *ld, yaml_node_t *node, config_site *site, size_t index,
                            const char *path)
{
    config_site *sites = config_of(ld)->sites;
    for (size_t k = 0; k <= site->aliases.count; k++) {
        yaml_node_t *at;
        const char *name = site_name(ld, node, site, k, &at);
        char kpath[300];
        if (k == 0)
            snprintf(kpath, sizeof(kpath), "%s.name", path);
        else
            snprintf(kpath, sizeof(kpath), "%s.aliases[%zu]", path, k - 1);
        if (name[0] == '*' && site->tls == SITE_TLS_ACME)
            return yl_fail(ld, at, kpath,
                           "ACME HTTP-01 cannot issue '%s': a wildcard needs tls: {cert, key} or "
                           "tls: internal",
                           name);
        for (size_t s = 0; s <= index; s++) {
            size_t upto = s == index ? k : sites[s].aliases.count + 1;
            for (size_t j = 0; j < upto; j++) {
                yaml_node_t *unused;
                if (strcmp(site_name(ld, NULL, &sites[s], j, &unused), name) == 0)
                    return yl_fail(ld, at, kpath, "'%s' is already served by sites[%zu]", name, s);
            }
        }
    }
    return 0;
}

static int check_site(yl_loader *ld, yaml_node_t *node, void *elem, size_t index, const char *path)
{
    config_site *site = elem;
    site->line = (int)node->start_mark.line + 1;
    if (!yl_map_has(ld, node, "tls"))
        site->tls = default_tls(site->name);
    site->health_check.enabled = yl_map_has(ld, node, "health_check");
    site->fail_timeout_set = yl_map_has(ld, node, "fail_timeout");
    if (site->upstreams.count > CONFIG_UPSTREAMS_MAX) {
        char kpath[300];
        yl_child_path(kpath, sizeof(kpath), path, "upstreams");
        return yl_fail(ld, yl_map_get(ld, node, "upstreams"), kpath,
                       "%zu upstreams; a site has at most %d", site->upstreams.count,
                       CONFIG_UPSTREAMS_MAX);
    }
    return check_site_names(ld, node, site, index, path);
}

static char *joined(const char *dir, const char *tail)
{
    size_t len = strlen(dir) + strlen(tail) + 1;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "%s%s", dir, tail);
    return out;
}

static bool has_wsgi_app(const config_appserver *a)
{
    for (size_t i = 0; i < a->modules.count; i++)
        if (config_is_wsgi_app(a->modules.items[i]))
            return true;
    return false;
}

/* A site's compression keys that its file entry does not set are the edge's. */
static int inherit_compression(yl_loader *ld, yaml_node_t *site, config_compression *c,
                               const config_compression *edge)
{
    yaml_node_t *own = site ? yl_map_get(ld, site, "compression") : NULL;
    for (const yl_field *f = compression_fields; f->key; f++) {
        if (own && yl_map_has(ld, own, f->key))
            continue;
        void *dst = (char *)c + f->offset;
        const void *src = (const char *)edge + f->offset;
        if (f->type == YL_STRINGS) {
            strlist_clear(dst);
            if (strlist_copy(dst, src) < 0)
                return yl_fail_nomem(ld, NULL, "sites.compression");
        } else {
            memcpy(dst, src,
                   f->type == YL_BOOL  ? sizeof(bool)
                   : f->type == YL_INT ? sizeof(int)
                                       : sizeof(uint64_t));
        }
    }
    return 0;
}

/* Values that default to other values are filled once everything is read, so that they
 * follow a changed run_dir or state_dir wherever in the file it was set. */
static int derive(yl_loader *ld, yaml_node_t *root)
{
    hearth_config *cfg = config_of(ld);
    yaml_node_t *app = yl_map_get(ld, root, "appserver");
    yaml_node_t *sites = yl_map_get(ld, root, "sites");
    if (!yl_map_has(ld, app, "bind") && cfg->run_dir) {
        char *sock = joined(cfg->run_dir, "/app.sock");
        char *bind = sock ? joined("unix:", sock) : NULL;
        int rc = bind ? strlist_add(&cfg->appserver.bind, bind) : -1;
        free(sock);
        free(bind);
        if (rc < 0)
            return yl_fail_nomem(ld, NULL, "appserver.bind");
    }
    if (!yl_map_has(ld, app, "max_body_size"))
        cfg->appserver.max_body_size = cfg->edge.max_body_size;
    if (!cfg->appserver.chdir && ld->basedir && has_wsgi_app(&cfg->appserver) &&
        !(cfg->appserver.chdir = strdup(ld->basedir)))
        return yl_fail_nomem(ld, NULL, "appserver.chdir");
    if (!cfg->certd.cert_dir && cfg->state_dir &&
        !(cfg->certd.cert_dir = joined(cfg->state_dir, "/certs")))
        return yl_fail_nomem(ld, NULL, "certd.cert_dir");
    if (!cfg->certd.webroot && cfg->state_dir &&
        !(cfg->certd.webroot = joined(cfg->state_dir, "/acme")))
        return yl_fail_nomem(ld, NULL, "certd.webroot");
    for (size_t i = 0; i < cfg->site_count; i++) {
        yaml_node_t *site = sites && sites->type == YAML_SEQUENCE_NODE
                                ? yl_node_at(ld, sites->data.sequence.items.start[i])
                                : sites;
        if (!yl_map_has(ld, site, "upstreams") &&
            strlist_copy(&cfg->sites[i].upstreams, &cfg->appserver.bind) < 0)
            return yl_fail_nomem(ld, NULL, "sites.upstreams");
        if (inherit_compression(ld, site, &cfg->sites[i].compression, &cfg->edge.compression) < 0)
            return -1;
    }
    return 0;
}

/* Whether dir holds the top-level package or module of a dotted name (name[0, len)). */
static bool holds_python_module(const char *dir, const char *name, size_t len)
{
    static const char *const forms[] = {"%s/%.*s/__init__.py", "%s/%.*s.py", "%s/%.*s", NULL};
    char path[PATH_MAX];
    for (size_t i = 0; forms[i]; i++) {
        snprintf(path, sizeof(path), forms[i], dir, (int)len, name);
        if (access(path, R_OK) == 0)
            return true; /* a bare directory is a namespace package */
    }
    return false;
}

/* The directories the workers' Python will search, as far as a check can know them. */
static bool python_can_find(const config_appserver *a, const char *basedir, const char *module)
{
    static const char *const system_dirs[] = {"/usr/lib/python3/dist-packages",
                                              "/usr/local/lib/python3.11/dist-packages",
                                              "/usr/lib/python3.11", NULL};
    size_t len = strcspn(module, ".:");
    if (holds_python_module(a->chdir ? a->chdir : basedir ? basedir : ".", module, len))
        return true;
    for (size_t i = 0; i < a->pythonpath.count; i++)
        if (holds_python_module(a->pythonpath.items[i], module, len))
            return true;
    char site[PATH_MAX];
    snprintf(site, sizeof(site), "%s/lib/python3.11/site-packages",
             a->virtualenv ? a->virtualenv : "");
    if (a->virtualenv && holds_python_module(site, module, len))
        return true;
    for (size_t i = 0; system_dirs[i]; i++)
        if (holds_python_module(system_dirs[i], module, len))
            return true;
    return false;
}

/* At most one WSGI application, and its top-level module where the workers will look. */
static int check_wsgi_app(yl_loader *ld, yaml_node_t *root)
{
    const config_appserver *a = &config_of(ld)->appserver;
    yaml_node_t *node = yl_map_get(ld, yl_map_get(ld, root, "appserver"), "modules");
    const char *app = NULL;
    for (size_t i = 0; i < a->modules.count; i++) {
        if (!config_is_wsgi_app(a->modules.items[i]))
            continue;
        if (app)
            return yl_fail(ld, node, "appserver.modules",
                           "names two WSGI applications ('%s' and '%s'); an appserver runs one",
                           app, a->modules.items[i]);
        app = a->modules.items[i];
        if (!python_can_find(a, ld->basedir, app))
            return yl_fail(ld, node, "appserver.modules",
                           "WSGI application '%s': no module '%.*s' in %s, appserver.pythonpath, "
                           "the virtualenv or the system's Python",
                           app, (int)strcspn(app, ".:"), app,
                           a->chdir ? a->chdir : "the config file's directory (appserver.chdir)");
    }
    if (a->virtualenv) {
        char cfgfile[PATH_MAX];
        snprintf(cfgfile, sizeof(cfgfile), "%s/pyvenv.cfg", a->virtualenv);
        if (access(cfgfile, R_OK) != 0)
            return yl_fail(ld, yl_map_get(ld, yl_map_get(ld, root, "appserver"), "virtualenv"),
                           "appserver.virtualenv", "%s is not a virtualenv (no pyvenv.cfg)",
                           a->virtualenv);
    }
    return 0;
}

/* The keys of a cluster map that only mean something together. */
static int check_cluster(yl_loader *ld, yaml_node_t *node, const config_cluster *c)
{
    if (!node)
        return 0;
    if (c->etcd.count == 0)
        return yl_fail(ld, node, "cluster", "needs at least one etcd endpoint in cluster.etcd");
    if (!c->cert != !c->key) {
        const char *given = c->cert ? "cert" : "key";
        char kpath[64];
        snprintf(kpath, sizeof(kpath), "cluster.%s", given);
        return yl_fail(ld, yl_map_get(ld, node, given), kpath, "needs cluster.%s as well",
                       c->cert ? "key" : "cert");
    }
    if (!c->username != !c->password_file)
        return yl_fail(ld, node, "cluster", "username and password_file go together");
    if (!c->secret_key_file && !c->plaintext_secrets)
        return yl_fail(ld, node, "cluster",
                       "needs secret_key_file (a file of 32 random bytes, the same on every host, "
                       "that encrypts the private keys stored in etcd), or plaintext_secrets: "
                       "true to store them unencrypted");
    if (c->secret_key_file && c->plaintext_secrets)
        return yl_fail(ld, yl_map_get(ld, node, "plaintext_secrets"), "cluster.plaintext_secrets",
                       "contradicts cluster.secret_key_file: keep one of them");
    return 0;
}

static int check_across(yl_loader *ld, yaml_node_t *root)
{
    if (check_wsgi_app(ld, root) != 0)
        return -1;
    hearth_config *cfg = config_of(ld);
    yaml_node_t *certd = yl_map_get(ld, root, "certd"), *sup = yl_map_get(ld, root, "supervisor");
    yaml_node_t *edge = yl_map_get(ld, root, "edge");
    if (!cfg->certd.eab_kid != !cfg->certd.eab_hmac_key) {
        const char *given = cfg->certd.eab_kid ? "eab_kid" : "eab_hmac_key";
        const char *other = cfg->certd.eab_kid ? "eab_hmac_key" : "eab_kid";
        char kpath[64];
        snprintf(kpath, sizeof(kpath), "certd.%s", given);
        return yl_fail(ld, yl_map_get(ld, certd, given), kpath, "needs certd.%s as well", other);
    }
    if (cfg->supervisor.restart_delay_ms > cfg->supervisor.restart_delay_max_ms)
        return yl_fail(ld, yl_map_get(ld, sup, "restart_delay"), "supervisor.restart_delay",
                       "is longer than supervisor.restart_delay_max");
    if (cfg->edge.http.count == 0 && cfg->edge.https.count == 0)
        return yl_fail(ld, edge, "edge", "needs at least one address in http or https");
    return check_cluster(ld, yl_map_get(ld, root, "cluster"), &cfg->cluster);
}

/* ---- single keys, for command-line flags ---- */

int config_set(hearth_config *cfg, const char *key, const char *text, const char *who, char *err,
               size_t errlen)
{
    yl_loader ld = {.name = who, .root = cfg, .err = err, .errlen = errlen};
    return yl_set(&ld, top_fields, key, text);
}

int config_clear(hearth_config *cfg, const char *key)
{
    yl_loader ld = {.name = key, .root = cfg};
    return yl_clear(&ld, top_fields, key);
}

int config_add(hearth_config *cfg, const char *key, const char *who, char *err, size_t errlen)
{
    yl_loader ld = {.name = who, .root = cfg, .err = err, .errlen = errlen};
    return yl_add(&ld, top_fields, key);
}

int config_check_last(hearth_config *cfg, const char *key, const char *who, char *err,
                      size_t errlen)
{
    yl_loader ld = {.name = who, .root = cfg, .err = err, .errlen = errlen};
    return yl_check_last(&ld, top_fields, key);
}

/* ---- entry points ---- */

void config_defaults(hearth_config *cfg)
{
    yl_loader ld = {.name = "defaults", .root = cfg};
    memset(cfg, 0, sizeof(*cfg));
    yl_apply_defaults(&ld, top_fields, cfg);
    derive(&ld, NULL);
}

void config_free(hearth_config *cfg)
{
    if (!cfg)
        return;
    yl_free_fields(top_fields, cfg);
    free(cfg->path);
    memset(cfg, 0, sizeof(*cfg));
}

static int finish(yl_loader *ld, yaml_node_t *root)
{
    if (derive(ld, root) < 0)
        return -1;
    return check_across(ld, root);
}

static int load_text(hearth_config *cfg, const char *yaml, size_t len, const char *name,
                     const char *basedir, char *err, size_t errlen)
{
    yl_loader ld = {.name = name ? name : "config",
                    .basedir = basedir,
                    .root = cfg,
                    .err = err,
                    .errlen = errlen};
    if (err && errlen)
        err[0] = '\0';
    memset(cfg, 0, sizeof(*cfg));
    yl_apply_defaults(&ld, top_fields, cfg);
    if (!(cfg->path = strdup(ld.name))) {
        yl_fail_nomem(&ld, NULL, NULL);
        config_free(cfg);
        return -1;
    }
    int rc = yl_load(&ld, yaml, len, top_fields, finish);
    if (rc < 0)
        config_free(cfg);
    return rc;
}

int config_load_string(hearth_config *cfg, const char *yaml, size_t len, const char *name,
                       char *err, size_t errlen)
{
    return load_text(cfg, yaml ? yaml : "", yaml ? len : 0, name, NULL, err, errlen);
}

char *config_read_file(const char *path, size_t *len)
{
    return yl_read_file(path, len);
}

int config_load_text(hearth_config *cfg, const char *yaml, size_t len, const char *origin,
                     char *err, size_t errlen)
{
    char *dir = yl_dir_of(origin);
    int rc = load_text(cfg, yaml, len, origin, dir, err, errlen);
    free(dir);
    return rc;
}

int config_load(hearth_config *cfg, const char *path, char *err, size_t errlen)
{
    size_t len = 0;
    if (!path)
        path = CONFIG_DEFAULT_PATH;
    char *text = yl_read_file(path, &len);
    if (!text) {
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        memset(cfg, 0, sizeof(*cfg));
        return -1;
    }
    const char *origin = getenv(CONFIG_ORIGIN_ENV);
    int rc =
        config_load_text(cfg, text, len, origin && origin[0] == '/' ? origin : path, err, errlen);
    free(text);
    return rc;
}

int config_parse_duration(const char *text, int64_t *ms)
{
    return text && yl_parse_duration(text, ms) == 0 ? 0 : -1;
}

int config_parse_size(const char *text, uint64_t *bytes)
{
    return text && yl_parse_size(text, bytes) == 0 ? 0 : -1;
}

int config_parse_rate(const char *text, uint32_t *milli_per_s)
{
    if (!text || text[0] < '1' || text[0] > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long n = strtoul(text, &end, 10);
    if (errno || n > 1000000)
        return -1;
    if (strcmp(end, "r/s") == 0)
        *milli_per_s = (uint32_t)(n * 1000);
    else if (strcmp(end, "r/m") == 0)
        *milli_per_s = (uint32_t)(n * 1000 / 60);
    else
        return -1;
    return *milli_per_s > 0 ? 0 : -1;
}
