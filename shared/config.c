/* The config loader: one schema table per YAML map (key, type, place in the structs, bounds,
 * default), walked generically over the libyaml document tree; see docs/config.md. */
#include "shared/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

/* A config file is a few kilobytes; refusing huge inputs keeps a typo'd path (a log file, a
 * disk image) from being slurped into memory. */
#define CONFIG_MAX_FILE_SIZE (4u << 20)

#define MS_SECOND INT64_C(1000)
#define MS_MINUTE (60 * MS_SECOND)
#define MS_HOUR (60 * MS_MINUTE)
#define MS_DAY (24 * MS_HOUR)

enum ftype {
    F_STRING,
    F_BOOL,
    F_INT,
    F_DURATION,
    F_SIZE,
    F_ENUM,     /* stored as an int-sized enum, the index into names */
    F_CHOICE,   /* stored as a string, but only one of names */
    F_STRINGS,  /* config_strings; one scalar counts as a list of one */
    F_FRACTION, /* double, 0 < x < 1 */
    F_MAP,      /* a nested struct described by another field table */
    F_LIST,     /* an array of structs, each a map (see list_spec) */
    F_TLS,      /* a site's tls: a mode name, or cert/key pairs */
};

enum {
    FL_NULLABLE = 1 << 0, /* null (`key: ~` or `key:`) leaves it NULL */
    FL_PATH = 1 << 1,     /* a relative path is taken relative to the config file */
    FL_AUTO = 1 << 2,     /* "auto" is accepted and stored as 0 */
    FL_REQUIRED = 1 << 3,
    FL_LISTEN = 1 << 4, /* a listen address: ":443", "0.0.0.0:443", "[::]:443" */
    FL_ADDR = 1 << 5,   /* a listen address or "unix:PATH" */
    FL_HOST = 1 << 6,   /* a DNS name (stored lowercased) */
    FL_URL = 1 << 7,    /* http:// or https:// */
    FL_MODULE = 1 << 8, /* a module: a path, or a WSGI application "pkg.mod:app" (no path) */
    FL_ENV = 1 << 9,    /* NAME=VALUE, NAME a shell variable name */
    FL_MOUNT = 1 << 10, /* a URL path prefix: "/app", not "/" and no trailing slash */
};

typedef struct field field;
typedef struct loader loader;

typedef struct {
    const field *fields; /* every element is a map of these keys */
    size_t elem_size;
    size_t count_offset; /* the size_t count, relative to the struct holding the array */
    int (*check)(loader *ld, yaml_node_t *node, void *elem, size_t index, const char *path);
} list_spec;

struct field {
    const char *key;
    enum ftype type;
    unsigned flags;
    size_t offset;
    int64_t min, max;         /* F_INT, F_DURATION, F_SIZE */
    const char *const *names; /* F_ENUM, F_CHOICE */
    const field *sub;         /* F_MAP */
    const list_spec *list;    /* F_LIST */
    const char *def;          /* the default as it would be written in YAML; NULL: none */
};

struct loader {
    yaml_document_t *doc; /* NULL while applying defaults */
    const char *name;     /* the file name for messages */
    const char *basedir;  /* relative paths are joined to it; NULL: kept as written */
    hearth_config *cfg;
    char *err;
    size_t errlen;
};

/* ---- the schema ---- */

/* F_ENUM stores through an int *: the config enums must be int-sized. */
_Static_assert(sizeof(config_tls_mode) == sizeof(int), "enums are int-sized");
_Static_assert(sizeof(config_key_type) == sizeof(int), "enums are int-sized");
_Static_assert(sizeof(config_log_format) == sizeof(int), "enums are int-sized");
_Static_assert(sizeof(config_access_format) == sizeof(int), "enums are int-sized");

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const access_formats[] = {"combined", "json", NULL};
static const char *const key_types[] = {"ec256", "ec384", "rsa2048", "rsa3072", "rsa4096", NULL};
/* Indexed by config_tls_mode; "files" is not written as a name, it is what a cert/key map
 * means, so it is refused as a scalar. */
static const char *const tls_modes[] = {"acme", "files", "internal", "off", NULL};

#define AT(type, member) .offset = offsetof(type, member)
#define STRING(k, t, m, fl, d)                                                                     \
    {                                                                                              \
        .key = k, .type = F_STRING, .flags = fl, AT(t, m), .def = d                                \
    }
#define STRINGS(k, t, m, fl, d)                                                                    \
    {                                                                                              \
        .key = k, .type = F_STRINGS, .flags = fl, AT(t, m), .def = d                               \
    }
#define BOOL(k, t, m, d)                                                                           \
    {                                                                                              \
        .key = k, .type = F_BOOL, AT(t, m), .def = d                                               \
    }
#define INT(k, t, m, fl, lo, hi, d)                                                                \
    {                                                                                              \
        .key = k, .type = F_INT, .flags = fl, AT(t, m), .min = lo, .max = hi, .def = d             \
    }
#define DURATION(k, t, m, lo, hi, d)                                                               \
    {                                                                                              \
        .key = k, .type = F_DURATION, AT(t, m), .min = lo, .max = hi, .def = d                     \
    }
#define SIZE(k, t, m, lo, hi, d)                                                                   \
    {                                                                                              \
        .key = k, .type = F_SIZE, AT(t, m), .min = lo, .max = hi, .def = d                         \
    }
#define ENUM(k, t, m, n, d)                                                                        \
    {                                                                                              \
        .key = k, .type = F_ENUM, AT(t, m), .names = n, .def = d                                   \
    }
#define CHOICE(k, t, m, n, d)                                                                      \
    {                                                                                              \
        .key = k, .type = F_CHOICE, AT(t, m), .names = n, .def = d                                 \
    }
#define MAP(k, t, m, s)                                                                            \
    {                                                                                              \
        .key = k, .type = F_MAP, AT(t, m), .sub = s                                                \
    }
#define LIST(k, t, m, l)                                                                           \
    {                                                                                              \
        .key = k, .type = F_LIST, AT(t, m), .list = l                                              \
    }
#define END                                                                                        \
    {                                                                                              \
        .key = NULL                                                                                \
    }

static const field edge_fields[] = {
    INT("workers", config_edge, workers, FL_AUTO, 0, 1024, "auto"),
    STRINGS("http", config_edge, http, FL_LISTEN, ":80"),
    STRINGS("https", config_edge, https, FL_LISTEN, ":443"),
    STRING("access_log", config_edge, access_log, FL_NULLABLE | FL_PATH, NULL),
    ENUM("access_log_format", config_edge, access_log_format, access_formats, "combined"),
    DURATION("header_timeout", config_edge, header_timeout_ms, MS_SECOND, MS_HOUR, "60s"),
    DURATION("keepalive_timeout", config_edge, keepalive_timeout_ms, 0, MS_HOUR, "75s"),
    DURATION("send_timeout", config_edge, send_timeout_ms, MS_SECOND, MS_HOUR, "60s"),
    SIZE("max_body_size", config_edge, max_body_size, 0, INT64_C(1) << 40, "1m"),
    SIZE("max_header_size", config_edge, max_header_size, 1024, 1 << 20, "16k"),
    INT("max_header_count", config_edge, max_header_count, 0, 1, 10000, "100"),
    INT("max_connections", config_edge, max_connections, 0, 1, 1000000, "1024"),
    {.key = "pressure_threshold",
     .type = F_FRACTION,
     AT(config_edge, pressure_threshold),
     .def = "0.75"},
    DURATION("pressure_header_timeout", config_edge, pressure_header_timeout_ms, 100, MS_HOUR,
             "5s"),
    DURATION("pressure_log_interval", config_edge, pressure_log_interval_ms, MS_SECOND, MS_HOUR,
             "10s"),
    DURATION("proxy_connect_timeout", config_edge, proxy_connect_timeout_ms, 100, MS_HOUR, "60s"),
    DURATION("proxy_read_timeout", config_edge, proxy_read_timeout_ms, MS_SECOND, MS_DAY, "60s"),
    DURATION("upstream_fail_timeout", config_edge, upstream_fail_timeout_ms, 0, MS_HOUR, "10s"),
    END,
};

static const field appserver_fields[] = {
    STRINGS("modules", config_appserver, modules, FL_PATH | FL_MODULE, NULL),
    STRINGS("bind", config_appserver, bind, FL_ADDR, NULL), /* derived from run_dir */
    INT("workers", config_appserver, workers, FL_AUTO, 0, 1024, "auto"),
    DURATION("timeout", config_appserver, timeout_ms, MS_SECOND, MS_DAY, "30s"),
    DURATION("graceful_timeout", config_appserver, graceful_timeout_ms, 0, MS_DAY, "30s"),
    DURATION("keepalive_timeout", config_appserver, keepalive_timeout_ms, 0, MS_HOUR, "60s"),
    INT("max_requests", config_appserver, max_requests, 0, 0, INT_MAX, "0"),
    INT("max_requests_jitter", config_appserver, max_requests_jitter, 0, 0, INT_MAX, "0"),
    SIZE("max_body_size", config_appserver, max_body_size, 0, INT64_C(1) << 40,
         NULL), /* derived from edge.max_body_size */
    STRING("access_log", config_appserver, access_log, FL_NULLABLE | FL_PATH, NULL),
    STRING("chdir", config_appserver, chdir, FL_NULLABLE | FL_PATH, NULL),
    STRINGS("pythonpath", config_appserver, pythonpath, FL_PATH, NULL),
    STRING("virtualenv", config_appserver, virtualenv, FL_NULLABLE | FL_PATH, NULL),
    STRINGS("env", config_appserver, env, FL_ENV, NULL),
    STRING("mount", config_appserver, mount, FL_NULLABLE | FL_MOUNT, NULL),
    END,
};

static const field certd_fields[] = {
    STRING("server", config_certd, server, FL_URL,
           "https://acme-v02.api.letsencrypt.org/directory"),
    STRING("email", config_certd, email, FL_NULLABLE, NULL),
    BOOL("agree_tos", config_certd, agree_tos, "false"),
    STRING("ca_bundle", config_certd, ca_bundle, FL_NULLABLE | FL_PATH, NULL),
    STRING("eab_kid", config_certd, eab_kid, FL_NULLABLE, NULL),
    STRING("eab_hmac_key", config_certd, eab_hmac_key, FL_NULLABLE, NULL),
    ENUM("key_type", config_certd, key_type, key_types, "ec256"),
    STRING("cert_dir", config_certd, cert_dir, FL_PATH, NULL), /* derived from state_dir */
    STRING("webroot", config_certd, webroot, FL_PATH, NULL),   /* derived from state_dir */
    DURATION("check_interval", config_certd, check_interval_ms, MS_MINUTE, 7 * MS_DAY, "12h"),
    {.key = "renew_remaining_fraction",
     .type = F_FRACTION,
     AT(config_certd, renew_remaining_fraction),
     .def = "0.3333"},
    END,
};

static const field supervisor_fields[] = {
    DURATION("stop_timeout", config_supervisor, stop_timeout_ms, MS_SECOND, MS_HOUR, "45s"),
    DURATION("restart_delay", config_supervisor, restart_delay_ms, 10, MS_HOUR, "100ms"),
    DURATION("restart_delay_max", config_supervisor, restart_delay_max_ms, 10, MS_DAY, "30s"),
    DURATION("restart_reset", config_supervisor, restart_reset_ms, MS_SECOND, MS_DAY, "30s"),
    INT("max_restarts", config_supervisor, max_restarts, 0, 1, 10000, "5"),
    DURATION("restart_window", config_supervisor, restart_window_ms, MS_SECOND, MS_DAY, "60s"),
    END,
};

static const field cert_pair_fields[] = {
    STRING("cert", config_cert_pair, cert, FL_REQUIRED | FL_PATH, NULL),
    STRING("key", config_cert_pair, key, FL_REQUIRED | FL_PATH, NULL),
    END,
};

static const field static_fields[] = {
    STRING("prefix", config_static, prefix, FL_REQUIRED, NULL),
    STRING("root", config_static, root, FL_REQUIRED | FL_PATH, NULL),
    STRING("cache_control", config_static, cache_control, FL_NULLABLE, NULL),
    END,
};

static int check_static(loader *ld, yaml_node_t *node, void *elem, size_t index, const char *path);
static int check_site(loader *ld, yaml_node_t *node, void *elem, size_t index, const char *path);

static const list_spec cert_pair_list = {cert_pair_fields, sizeof(config_cert_pair),
                                         offsetof(config_site, cert_count), NULL};
static const list_spec static_list = {static_fields, sizeof(config_static),
                                      offsetof(config_site, static_count), check_static};

static const field site_fields[] = {
    STRING("name", config_site, name, FL_REQUIRED | FL_HOST, NULL),
    STRINGS("aliases", config_site, aliases, FL_HOST, NULL),
    {.key = "tls", .type = F_TLS, AT(config_site, tls), .list = &cert_pair_list},
    DURATION("hsts", config_site, hsts_ms, 0, 730 * MS_DAY, "0"),
    LIST("static", config_site, statics, &static_list),
    STRINGS("upstreams", config_site, upstreams, FL_ADDR, NULL), /* derived from the bind */
    END,
};

static const list_spec site_list = {site_fields, sizeof(config_site),
                                    offsetof(hearth_config, site_count), check_site};

static const field top_fields[] = {
    STRING("user", hearth_config, user, FL_NULLABLE, NULL),
    STRING("group", hearth_config, group, FL_NULLABLE, NULL),
    STRING("run_dir", hearth_config, run_dir, FL_PATH, "/run/hearth"),
    STRING("state_dir", hearth_config, state_dir, FL_PATH, "/var/lib/hearth"),
    CHOICE("log_level", hearth_config, log_level, log_levels, "info"),
    ENUM("log_format", hearth_config, log_format, log_formats, "text"),
    STRING("metrics", hearth_config, metrics, FL_NULLABLE | FL_LISTEN, NULL),
    MAP("edge", hearth_config, edge, edge_fields),
    MAP("appserver", hearth_config, appserver, appserver_fields),
    MAP("certd", hearth_config, certd, certd_fields),
    MAP("supervisor", hearth_config, supervisor, supervisor_fields),
    LIST("sites", hearth_config, sites, &site_list),
    END,
};

/* ---- messages ---- */

static void *member(void *base, size_t offset)
{
    return (char *)base + offset;
}

/* One message, "FILE:LINE:COL: key 'a.b': what". The column is libyaml's, 1-based. */
static int fail(loader *ld, const yaml_node_t *node, const char *path, const char *fmt, ...)
{
    if (!ld->err || ld->errlen == 0)
        return -1;
    size_t used = 0;
    int n;
    if (node)
        n = snprintf(ld->err, ld->errlen, "%s:%zu:%zu: ", ld->name, node->start_mark.line + 1,
                     node->start_mark.column + 1);
    else
        n = snprintf(ld->err, ld->errlen, "%s: ", ld->name);
    used = n > 0 ? (size_t)n : 0;
    if (path && *path && used < ld->errlen) {
        n = snprintf(ld->err + used, ld->errlen - used, "key '%s': ", path);
        used += n > 0 ? (size_t)n : 0;
    }
    if (used < ld->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ld->err + used, ld->errlen - used, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* The offending value as shown in messages: bounded, with control bytes made visible. */
static const char *shown(const char *text, char out[64])
{
    size_t i = 0;
    for (; text[i] && i < 60; i++)
        out[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? '?' : text[i];
    if (text[i])
        memcpy(out + 57, "...", 3);
    out[i] = '\0';
    return out;
}

static const char *node_kind(const yaml_node_t *node)
{
    return node->type == YAML_MAPPING_NODE ? "a map" : "a list";
}

static void format_duration(int64_t ms, char *out, size_t len)
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {{MS_DAY, "d"}, {MS_HOUR, "h"}, {MS_MINUTE, "m"}, {MS_SECOND, "s"}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(out, len, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
            return;
        }
    }
    snprintf(out, len, "%lld%s", (long long)ms, ms == 0 ? "" : "ms");
}

static void format_size(uint64_t bytes, char *out, size_t len)
{
    static const char units[] = "gmk";
    for (int i = 0; i < 3; i++) {
        int shift = 10 * (3 - i);
        if (bytes != 0 && bytes % (UINT64_C(1) << shift) == 0) {
            snprintf(out, len, "%llu%c", (unsigned long long)(bytes >> shift), units[i]);
            return;
        }
    }
    snprintf(out, len, "%llu", (unsigned long long)bytes);
}

static void format_names(const char *const *names, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; names[i] && used < len; i++) {
        if (names == tls_modes && i == SITE_TLS_FILES)
            continue;
        int n = snprintf(out + used, len - used, "%s%s", used ? ", " : "", names[i]);
        used += n > 0 ? (size_t)n : 0;
    }
}

/* What a field wants, for "expected ..., got ..." messages. */
static const char *describe(const field *f, char *out, size_t len)
{
    char list[128];
    switch (f->type) {
    case F_STRING:
    case F_STRINGS:
        if (f->flags & FL_HOST)
            return "a host name like example.com";
        if (f->flags & FL_LISTEN)
            return "a listen address like :443, 0.0.0.0:443 or [::]:443";
        if (f->flags & FL_ADDR)
            return "unix:PATH or HOST:PORT";
        if (f->flags & FL_URL)
            return "an http:// or https:// URL";
        if (f->flags & FL_ENV)
            return "NAME=VALUE";
        if (f->flags & FL_MOUNT)
            return "a path prefix like /app";
        return f->type == F_STRINGS ? "a string or a list of strings" : "a string";
    case F_BOOL:
        return "true or false";
    case F_INT:
        snprintf(out, len, "%san integer from %lld to %lld", f->flags & FL_AUTO ? "auto or " : "",
                 (long long)f->min, (long long)f->max);
        return out;
    case F_DURATION:
        return "a duration like 10s";
    case F_SIZE:
        return "a size like 64k";
    case F_ENUM:
    case F_CHOICE:
    case F_TLS:
        format_names(f->names ? f->names : tls_modes, list, sizeof(list));
        snprintf(out, len, "one of %s%s", list, f->type == F_TLS ? " or {cert, key}" : "");
        return out;
    case F_FRACTION:
        return "a number between 0 and 1 like 0.33";
    case F_MAP:
        return "a map";
    case F_LIST:
        return "a list of maps";
    }
    return "something else";
}

static int fail_expected(loader *ld, const yaml_node_t *node, const field *f, const char *path,
                         const char *text)
{
    char buf[160], q[64];
    const char *want = describe(f, buf, sizeof(buf));
    if (!text)
        return fail(ld, node, path, "expected %s, got %s", want, node ? node_kind(node) : "?");
    if (!*text)
        return fail(ld, node, path, "expected %s, got nothing", want);
    return fail(ld, node, path, "expected %s, got '%s'", want, shown(text, q));
}

static int fail_range(loader *ld, const yaml_node_t *node, const field *f, const char *path,
                      const char *text)
{
    char lo[32], hi[32], q[64];
    const char *kind = f->type == F_DURATION ? "a duration" : "a size";
    if (f->type == F_DURATION) {
        format_duration(f->min, lo, sizeof(lo));
        format_duration(f->max, hi, sizeof(hi));
    } else {
        format_size((uint64_t)f->min, lo, sizeof(lo));
        format_size((uint64_t)f->max, hi, sizeof(hi));
    }
    return fail(ld, node, path, "expected %s from %s to %s, got '%s'", kind, lo, hi,
                shown(text, q));
}

static int fail_nomem(loader *ld, const yaml_node_t *node, const char *path)
{
    return fail(ld, node, path, "out of memory");
}

/* ---- scalar syntax ---- */

/* 0, or -1 for bad syntax, or -2 for a number too large: the caller words them differently. */
static int parse_number(const char **s, uint64_t *out)
{
    const char *p = *s;
    uint64_t n = 0;
    bool overflow = false;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (n > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            n = n * 10 + d;
    }
    *s = p;
    *out = n;
    return overflow ? -2 : 0;
}

static int duration_parse(const char *text, int64_t *ms)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"", MS_SECOND},  {"ms", 1},      {"s", MS_SECOND},
                 {"m", MS_MINUTE}, {"h", MS_HOUR}, {"d", MS_DAY}};
    uint64_t n;
    int rc = parse_number(&text, &n);
    if (rc == -1)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(text, units[i].unit) == 0) {
            if (rc == -2 || n > (uint64_t)(INT64_MAX / units[i].ms))
                return -2;
            *ms = (int64_t)n * units[i].ms;
            return 0;
        }
    }
    return -1;
}

static int size_parse(const char *text, uint64_t *bytes)
{
    uint64_t n;
    int rc = parse_number(&text, &n), shift;
    if (rc == -1)
        return -1;
    /* k, m, g, t in either case; *text | 32 lower-cases a letter */
    static const char units[] = "kmgt";
    const char *unit = *text ? strchr(units, *text | 32) : NULL;
    if (*text && (!unit || text[1]))
        return -1;
    shift = unit ? 10 * (int)(unit - units + 1) : 0;
    if (rc == -2 || n > (UINT64_MAX >> shift))
        return -2;
    *bytes = n << shift;
    return 0;
}

int config_parse_duration(const char *text, int64_t *ms)
{
    return text && duration_parse(text, ms) == 0 ? 0 : -1;
}

int config_parse_size(const char *text, uint64_t *bytes)
{
    return text && size_parse(text, bytes) == 0 ? 0 : -1;
}

static bool valid_port(const char *p)
{
    uint64_t n;
    return parse_number(&p, &n) == 0 && *p == '\0' && n >= 1 && n <= 65535;
}

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

/* ":443", "443", "*:443", "0.0.0.0:443", "localhost:8080", "[::]:443". */
static bool valid_listen(const char *s)
{
    char host[64];
    const char *colon;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        struct in6_addr a6;
        if (!close || (size_t)(close - s - 1) >= sizeof(host) || close[1] != ':')
            return false;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        return inet_pton(AF_INET6, host, &a6) == 1 && valid_port(close + 2);
    }
    colon = strrchr(s, ':');
    if (!colon)
        return valid_port(s);
    if ((size_t)(colon - s) >= sizeof(host) || memchr(s, ':', (size_t)(colon - s)))
        return false; /* an IPv6 address needs brackets, so the port is not ambiguous */
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    if (!valid_port(colon + 1))
        return false;
    return !host[0] || strcmp(host, "*") == 0 || valid_hostname(host, false);
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

static bool valid_string(const field *f, const char *s)
{
    if (f->flags & FL_ENV)
        return config_is_env_assignment(s);
    if (f->flags & FL_MOUNT)
        return config_is_mount_prefix(s);
    if (f->flags & FL_HOST)
        return valid_hostname(s, f->type == F_STRINGS);
    if (f->flags & FL_LISTEN)
        return valid_listen(s);
    if (f->flags & FL_ADDR)
        return strncmp(s, "unix:", 5) == 0 ? s[5] != '\0' : valid_listen(s);
    if (f->flags & FL_URL)
        return (strncmp(s, "https://", 8) == 0 && s[8]) || (strncmp(s, "http://", 7) == 0 && s[7]);
    return true;
}

/* ---- storing values ---- */

static void strings_free(config_strings *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

/* The string as stored: host names lowercased, relative paths joined to the config's dir. */
static char *stored_string(loader *ld, const field *f, const char *text)
{
    char *out;
    const char *scheme = (f->flags & FL_ADDR) && strncmp(text, "unix:", 5) == 0 ? "unix:" : "";
    const char *file = text + strlen(scheme);
    bool is_path =
        ((f->flags & FL_PATH) || *scheme) && !((f->flags & FL_MODULE) && config_is_wsgi_app(text));
    if (is_path && ld->basedir && file[0] != '/' && strcmp(file, "-") != 0) {
        size_t dirlen = strlen(ld->basedir), len = 5 + dirlen + 1 + strlen(file) + 1;
        bool slash = dirlen > 0 && ld->basedir[dirlen - 1] == '/';
        out = malloc(len);
        if (out)
            snprintf(out, len, "%s%s%s%s", scheme, ld->basedir, slash ? "" : "/", file);
        return out;
    }
    out = strdup(text);
    if (out && (f->flags & FL_HOST))
        for (char *p = out; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    return out;
}

static int index_of(const char *const *names, const char *text)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], text) == 0)
            return i;
    return -1;
}

static int set_int(loader *ld, const yaml_node_t *node, const field *f, void *dst, const char *path,
                   const char *text)
{
    uint64_t n;
    const char *p = text;
    if ((f->flags & FL_AUTO) && strcmp(text, "auto") == 0) {
        *(int *)dst = 0;
        return 0;
    }
    int rc = parse_number(&p, &n);
    if (rc == -1 || *p || rc == -2 || n < (uint64_t)f->min || n > (uint64_t)f->max)
        return fail_expected(ld, node, f, path, text);
    *(int *)dst = (int)n;
    return 0;
}

static int set_duration(loader *ld, const yaml_node_t *node, const field *f, void *dst,
                        const char *path, const char *text)
{
    int64_t ms;
    int rc = duration_parse(text, &ms);
    if (rc == -1)
        return fail_expected(ld, node, f, path, text);
    if (rc == -2 || ms < f->min || ms > f->max)
        return fail_range(ld, node, f, path, text);
    *(int64_t *)dst = ms;
    return 0;
}

static int set_size(loader *ld, const yaml_node_t *node, const field *f, void *dst,
                    const char *path, const char *text)
{
    uint64_t bytes;
    int rc = size_parse(text, &bytes);
    if (rc == -1)
        return fail_expected(ld, node, f, path, text);
    if (rc == -2 || bytes < (uint64_t)f->min || bytes > (uint64_t)f->max)
        return fail_range(ld, node, f, path, text);
    *(uint64_t *)dst = bytes;
    return 0;
}

static int set_fraction(loader *ld, const yaml_node_t *node, const field *f, void *dst,
                        const char *path, const char *text)
{
    char *end;
    double x;
    /* strtod alone would also take "inf", "nan", hex and leading blanks */
    if (!((text[0] >= '0' && text[0] <= '9') || text[0] == '.') || strchr(text, 'x') ||
        strchr(text, 'X'))
        return fail_expected(ld, node, f, path, text);
    errno = 0;
    x = strtod(text, &end);
    if (*end || errno || !(x > 0.0 && x < 1.0))
        return fail_expected(ld, node, f, path, text);
    *(double *)dst = x;
    return 0;
}

static int set_string(loader *ld, const yaml_node_t *node, const field *f, void *dst,
                      const char *path, const char *text)
{
    char **slot = dst, *copy;
    if (f->type == F_CHOICE && index_of(f->names, text) < 0)
        return fail_expected(ld, node, f, path, text);
    if (!valid_string(f, text))
        return fail_expected(ld, node, f, path, text);
    copy = stored_string(ld, f, text);
    if (!copy)
        return fail_nomem(ld, node, path);
    free(*slot);
    *slot = copy;
    return 0;
}

/* One scalar into its field; text is "" for null. node is NULL for defaults. */
static int set_scalar(loader *ld, const yaml_node_t *node, const field *f, void *base,
                      const char *path, const char *text, bool null)
{
    void *dst = member(base, f->offset);
    int i;
    if (null && f->type == F_STRING && (f->flags & FL_NULLABLE)) {
        free(*(char **)dst);
        *(char **)dst = NULL;
        return 0;
    }
    if (null || !*text)
        return fail_expected(ld, node, f, path, "");
    switch (f->type) {
    case F_STRING:
    case F_CHOICE:
        return set_string(ld, node, f, dst, path, text);
    case F_BOOL:
        if (strcmp(text, "true") != 0 && strcmp(text, "false") != 0)
            return fail_expected(ld, node, f, path, text);
        *(bool *)dst = text[0] == 't';
        return 0;
    case F_INT:
        return set_int(ld, node, f, dst, path, text);
    case F_DURATION:
        return set_duration(ld, node, f, dst, path, text);
    case F_SIZE:
        return set_size(ld, node, f, dst, path, text);
    case F_ENUM:
        if ((i = index_of(f->names, text)) < 0)
            return fail_expected(ld, node, f, path, text);
        *(int *)dst = i; /* the config enums are int-sized: they start at 0 and are small */
        return 0;
    case F_FRACTION:
        return set_fraction(ld, node, f, dst, path, text);
    default:
        return fail_expected(ld, node, f, path, text);
    }
}

/* ---- the document ---- */

static yaml_node_t *node_at(loader *ld, int index)
{
    return yaml_document_get_node(ld->doc, index);
}

static bool is_null(const yaml_node_t *node)
{
    const char *v;
    if (!node)
        return true;
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    v = (const char *)node->data.scalar.value;
    return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

/* The text of a scalar, or NULL after reporting an embedded NUL (C strings cannot hold it). */
static const char *scalar_text(loader *ld, const yaml_node_t *node, const char *path)
{
    const char *v = (const char *)node->data.scalar.value;
    if (strlen(v) != node->data.scalar.length) {
        fail(ld, node, path, "a NUL byte is not allowed in a value");
        return NULL;
    }
    return v;
}

static yaml_node_t *map_get(loader *ld, const yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_at(ld, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
            return node_at(ld, p->value);
    }
    return NULL;
}

static bool map_has(loader *ld, const yaml_node_t *map, const char *key)
{
    return map_get(ld, map, key) != NULL;
}

/* Key paths for messages, "sites[0].static[1].root"; an absurdly deep or long one is cut. */
static void child_path(char *out, size_t len, const char *parent, const char *key)
{
    if (snprintf(out, len, "%s%s%s", parent, *parent ? "." : "", key) >= (int)len)
        out[len - 1] = '\0';
}

static void index_path(char *out, size_t len, const char *parent, size_t index)
{
    if (snprintf(out, len, "%s[%zu]", parent, index) >= (int)len)
        out[len - 1] = '\0';
}

static void apply_defaults(loader *ld, const field *fields, void *base);
static void free_fields(const field *fields, void *base);
static int load_map(loader *ld, yaml_node_t *map, const field *fields, void *base,
                    const char *path);

static int add_string(loader *ld, const yaml_node_t *node, const field *f, config_strings *list,
                      const char *path)
{
    const char *text;
    if (node->type != YAML_SCALAR_NODE)
        return fail_expected(ld, node, f, path, NULL);
    if (!(text = scalar_text(ld, node, path)))
        return -1;
    if (is_null(node) || !*text || !valid_string(f, text))
        return fail_expected(ld, node, f, path, is_null(node) ? "" : text);
    char *copy = stored_string(ld, f, text);
    if (!copy)
        return fail_nomem(ld, node, path);
    list->items[list->count++] = copy;
    return 0;
}

/* A list of strings; one scalar is a list of one, null an empty list. */
static int load_strings(loader *ld, yaml_node_t *node, const field *f, void *base, const char *path)
{
    config_strings *list = member(base, f->offset);
    size_t n = 1;
    strings_free(list);
    if (is_null(node))
        return 0;
    if (node->type == YAML_MAPPING_NODE)
        return fail_expected(ld, node, f, path, NULL);
    if (node->type == YAML_SEQUENCE_NODE)
        n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (n == 0)
        return 0;
    if (!(list->items = calloc(n, sizeof(char *))))
        return fail_nomem(ld, node, path);
    if (node->type == YAML_SCALAR_NODE)
        return add_string(ld, node, f, list, path);
    for (size_t i = 0; i < n; i++) {
        char item[256];
        index_path(item, sizeof(item), path, i);
        if (add_string(ld, node_at(ld, node->data.sequence.items.start[i]), f, list, item) < 0)
            return -1;
    }
    return 0;
}

static void list_free(const list_spec *spec, void *base, size_t offset)
{
    char **array = member(base, offset);
    size_t *count = member(base, spec->count_offset);
    for (size_t i = 0; i < *count; i++)
        free_fields(spec->fields, *array + i * spec->elem_size);
    free(*array);
    *array = NULL;
    *count = 0;
}

/* A list of maps into an array of structs; one map alone is a list of one. */
static int load_list(loader *ld, yaml_node_t *node, const list_spec *spec, void *base,
                     size_t offset, const char *path)
{
    char **array = member(base, offset);
    size_t *count = member(base, spec->count_offset), n = 1;
    yaml_node_item_t *items = NULL;
    list_free(spec, base, offset);
    if (is_null(node))
        return 0;
    if (node->type == YAML_SCALAR_NODE)
        return fail(ld, node, path, "expected a list of maps, got '%s'",
                    shown((char *)node->data.scalar.value, (char[64]){0}));
    if (node->type == YAML_SEQUENCE_NODE) {
        items = node->data.sequence.items.start;
        n = (size_t)(node->data.sequence.items.top - items);
    }
    if (n == 0)
        return 0;
    /* Zeroed elements are safe to free, so the array is owned by base from here on: an error
     * half way leaves nothing for the caller to track. */
    if (!(*array = calloc(n, spec->elem_size)))
        return fail_nomem(ld, node, path);
    *count = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = items ? node_at(ld, items[i]) : node;
        void *elem = *array + i * spec->elem_size;
        char ipath[256];
        if (items)
            index_path(ipath, sizeof(ipath), path, i);
        else
            snprintf(ipath, sizeof(ipath), "%s", path); /* one map alone: no index to show */
        if (item->type != YAML_MAPPING_NODE) {
            if (item->type == YAML_SCALAR_NODE)
                return fail(ld, item, ipath, "expected a map, got '%s'",
                            shown((char *)item->data.scalar.value, (char[64]){0}));
            return fail(ld, item, ipath, "expected a map, got a list");
        }
        apply_defaults(ld, spec->fields, elem);
        if (load_map(ld, item, spec->fields, elem, ipath) < 0)
            return -1;
        if (spec->check && spec->check(ld, item, elem, i, ipath) < 0)
            return -1;
    }
    return 0;
}

/* tls: acme | internal | off | {cert, key} | [{cert, key}, ...] */
static int load_tls(loader *ld, yaml_node_t *node, const field *f, void *base, const char *path)
{
    config_site *site = base;
    int mode;
    if (node->type == YAML_SCALAR_NODE) {
        const char *text = scalar_text(ld, node, path);
        if (!text)
            return -1;
        mode = index_of(tls_modes, text);
        if (mode < 0 || mode == SITE_TLS_FILES)
            return fail_expected(ld, node, f, path, text);
        list_free(f->list, base, offsetof(config_site, certs));
        site->tls = (config_tls_mode)mode;
        return 0;
    }
    if (load_list(ld, node, f->list, base, offsetof(config_site, certs), path) < 0)
        return -1;
    if (site->cert_count == 0)
        return fail(ld, node, path, "expected at least one {cert, key}, got an empty list");
    site->tls = SITE_TLS_FILES;
    return 0;
}

static int load_value(loader *ld, yaml_node_t *node, const field *f, void *base, const char *path)
{
    const char *text;
    switch (f->type) {
    case F_MAP:
        if (is_null(node))
            return 0;
        if (node->type != YAML_MAPPING_NODE)
            return fail_expected(ld, node, f, path,
                                 node->type == YAML_SCALAR_NODE ? (char *)node->data.scalar.value
                                                                : NULL);
        return load_map(ld, node, f->sub, member(base, f->offset), path);
    case F_LIST:
        return load_list(ld, node, f->list, base, f->offset, path);
    case F_TLS:
        return load_tls(ld, node, f, base, path);
    case F_STRINGS:
        return load_strings(ld, node, f, base, path);
    default:
        if (node->type != YAML_SCALAR_NODE)
            return fail_expected(ld, node, f, path, NULL);
        if (!(text = scalar_text(ld, node, path)))
            return -1;
        return set_scalar(ld, node, f, base, path, text, is_null(node));
    }
}

/* ---- unknown keys: suggest the nearest known ones ---- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t lb = strlen(b), row[64];
    if (lb >= sizeof(row) / sizeof(row[0]))
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; a[i - 1]; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = diag + ((a[i - 1] | 32) == (b[j - 1] | 32) ? 0 : 1);
            size_t best = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
            row[j] = cost < best ? cost : best;
            diag = up;
        }
    }
    return row[lb];
}

static int fail_unknown(loader *ld, const yaml_node_t *node, const field *fields, const char *path,
                        const char *key)
{
    char near[192] = "", all[512] = "";
    size_t nlen = 0, alen = 0, found = 0;
    size_t limit = strlen(key) <= 4 ? 1 : strlen(key) <= 8 ? 2 : 3;
    for (const field *f = fields; f->key; f++) {
        int n = snprintf(all + alen, sizeof(all) - alen, "%s%s", alen ? ", " : "", f->key);
        alen += n > 0 && (size_t)n < sizeof(all) - alen ? (size_t)n : 0;
        if (strlen(key) > 40 || edit_distance(key, f->key) > limit || found == 3)
            continue;
        n = snprintf(near + nlen, sizeof(near) - nlen, "%s'%s'", found ? " or " : "", f->key);
        nlen += n > 0 && (size_t)n < sizeof(near) - nlen ? (size_t)n : 0;
        found++;
    }
    if (found)
        return fail(ld, node, path, "unknown key, did you mean %s?", near);
    return fail(ld, node, path, "unknown key (known keys here: %s)", all);
}

static const field *find_field(const field *fields, const char *key)
{
    for (const field *f = fields; f->key; f++)
        if (strcmp(f->key, key) == 0)
            return f;
    return NULL;
}

static int check_key(loader *ld, yaml_node_t *map, yaml_node_pair_t *pair, const field *fields,
                     const char *path, const field **out)
{
    yaml_node_t *k = node_at(ld, pair->key);
    const char *key;
    *out = NULL;
    if (k->type != YAML_SCALAR_NODE)
        return fail(ld, k, path, "a key must be a plain string, got %s", node_kind(k));
    if (!(key = scalar_text(ld, k, path)))
        return -1;
    char kpath[256];
    child_path(kpath, sizeof(kpath), path, key);
    if (!(*out = find_field(fields, key)))
        return fail_unknown(ld, k, fields, kpath, key);
    /* only known keys get here, so this quadratic scan is over a handful of pairs */
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < pair; p++) {
        yaml_node_t *prev = node_at(ld, p->key);
        if (strcmp((char *)prev->data.scalar.value, key) == 0)
            return fail(ld, k, kpath, "duplicate key (first given at line %zu)",
                        prev->start_mark.line + 1);
    }
    return 0;
}

static int load_map(loader *ld, yaml_node_t *map, const field *fields, void *base, const char *path)
{
    char kpath[256];
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const field *f;
        if (check_key(ld, map, p, fields, path, &f) < 0)
            return -1;
        child_path(kpath, sizeof(kpath), path, f->key);
        if (load_value(ld, node_at(ld, p->value), f, base, kpath) < 0)
            return -1;
    }
    for (const field *f = fields; f->key; f++) {
        if ((f->flags & FL_REQUIRED) && !map_has(ld, map, f->key)) {
            child_path(kpath, sizeof(kpath), path, f->key);
            return fail(ld, map, kpath, "missing, and it has no default");
        }
    }
    return 0;
}

/* ---- defaults and freeing, walking the same tables ---- */

static void apply_defaults(loader *ld, const field *fields, void *base)
{
    for (const field *f = fields; f->key; f++) {
        if (f->type == F_MAP) {
            apply_defaults(ld, f->sub, member(base, f->offset));
        } else if (f->def && f->type == F_STRINGS) {
            config_strings *list = member(base, f->offset);
            strings_free(list);
            if ((list->items = calloc(1, sizeof(char *))) && (list->items[0] = strdup(f->def)))
                list->count = 1;
        } else if (f->def) {
            /* Defaults are ours and valid (the tests load them), so this cannot fail but for
             * memory; the caller then finds NULL strings. */
            set_scalar(ld, NULL, f, base, f->key, f->def, false);
        }
    }
}

static void free_fields(const field *fields, void *base)
{
    for (const field *f = fields; f->key; f++) {
        void *p = member(base, f->offset);
        switch (f->type) {
        case F_STRING:
        case F_CHOICE:
            free(*(char **)p);
            *(char **)p = NULL;
            break;
        case F_STRINGS:
            strings_free(p);
            break;
        case F_MAP:
            free_fields(f->sub, p);
            break;
        case F_LIST:
            list_free(f->list, base, f->offset);
            break;
        case F_TLS:
            list_free(f->list, base, offsetof(config_site, certs));
            break;
        default:
            break;
        }
    }
}

/* ---- checks across keys ---- */

static int check_static(loader *ld, yaml_node_t *node, void *elem, size_t index, const char *path)
{
    config_static *st = elem;
    yaml_node_t *at = map_get(ld, node, "prefix");
    char kpath[256];
    size_t len = strlen(st->prefix);
    child_path(kpath, sizeof(kpath), path, "prefix");
    if (st->prefix[0] != '/')
        return fail(ld, at, kpath, "a URL prefix must start with '/', got '%s'",
                    shown(st->prefix, (char[64]){0}));
    if (strstr(st->prefix, "/../") || strstr(st->prefix, "/./") || strstr(st->prefix, "//") ||
        (len >= 3 && strcmp(st->prefix + len - 3, "/..") == 0) ||
        (len >= 2 && strcmp(st->prefix + len - 2, "/.") == 0))
        return fail(ld, at, kpath, "a URL prefix must be a clean path, got '%s'",
                    shown(st->prefix, (char[64]){0}));
    if (st->prefix[len - 1] != '/') {
        /* "/static" means the directory: it must not also match "/staticfoo" */
        char *slashed = realloc(st->prefix, len + 2);
        if (!slashed)
            return fail_nomem(ld, at, kpath);
        memcpy(slashed + len, "/", 2);
        st->prefix = slashed;
    }
    /* the elements of one site's list are contiguous and loaded in order */
    for (const config_static *prev = st - index; prev < st; prev++)
        if (strcmp(prev->prefix, st->prefix) == 0)
            return fail(ld, at, kpath, "'%s' is already served by static[%zu]", st->prefix,
                        (size_t)(prev - (st - index)));
    return 0;
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
static const char *site_name(loader *ld, yaml_node_t *node, const config_site *site, size_t k,
                             yaml_node_t **at)
{
    yaml_node_t *aliases;
    if (k == 0) {
        *at = node ? map_get(ld, node, "name") : NULL;
        return site->name;
    }
    aliases = node ? map_get(ld, node, "aliases") : NULL;
    *at = aliases;
    if (aliases && aliases->type == YAML_SEQUENCE_NODE)
        *at = node_at(ld, aliases->data.sequence.items.start[k - 1]);
    return site->aliases.items[k - 1];
}

static int check_site_names(loader *ld, yaml_node_t *node, config_site *site, size_t index,
                            const char *path)
{
    config_site *sites = ld->cfg->sites;
    for (size_t k = 0; k <= site->aliases.count; k++) {
        yaml_node_t *at;
        const char *name = site_name(ld, node, site, k, &at);
        char kpath[300];
        if (k == 0)
            snprintf(kpath, sizeof(kpath), "%s.name", path);
        else
            snprintf(kpath, sizeof(kpath), "%s.aliases[%zu]", path, k - 1);
        if (name[0] == '*' && site->tls == SITE_TLS_ACME)
            return fail(ld, at, kpath,
                        "ACME HTTP-01 cannot issue '%s': a wildcard needs tls: {cert, key} or "
                        "tls: internal",
                        name);
        for (size_t s = 0; s <= index; s++) {
            size_t upto = s == index ? k : sites[s].aliases.count + 1;
            for (size_t j = 0; j < upto; j++) {
                yaml_node_t *unused;
                if (strcmp(site_name(ld, NULL, &sites[s], j, &unused), name) == 0)
                    return fail(ld, at, kpath, "'%s' is already served by sites[%zu]", name, s);
            }
        }
    }
    return 0;
}

static int check_site(loader *ld, yaml_node_t *node, void *elem, size_t index, const char *path)
{
    config_site *site = elem;
    site->line = (int)node->start_mark.line + 1;
    if (!map_has(ld, node, "tls"))
        site->tls = default_tls(site->name);
    return check_site_names(ld, node, site, index, path);
}

static int strings_copy(config_strings *dst, const config_strings *src)
{
    if (src->count == 0)
        return 0;
    if (!(dst->items = calloc(src->count, sizeof(char *))))
        return -1;
    for (; dst->count < src->count; dst->count++)
        if (!(dst->items[dst->count] = strdup(src->items[dst->count])))
            return -1;
    return 0;
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

/* Values that default to other values are filled once everything is read, so that they
 * follow a changed run_dir or state_dir wherever in the file it was set. */
static int derive(loader *ld, yaml_node_t *root)
{
    hearth_config *cfg = ld->cfg;
    yaml_node_t *app = map_get(ld, root, "appserver");
    yaml_node_t *sites = map_get(ld, root, "sites");
    if (!map_has(ld, app, "bind") && cfg->run_dir) {
        if (!(cfg->appserver.bind.items = calloc(1, sizeof(char *))))
            return fail_nomem(ld, NULL, "appserver.bind");
        char *sock = joined(cfg->run_dir, "/app.sock");
        char *bind = sock ? joined("unix:", sock) : NULL;
        free(sock);
        if (!bind)
            return fail_nomem(ld, NULL, "appserver.bind");
        cfg->appserver.bind.items[cfg->appserver.bind.count++] = bind;
    }
    if (!map_has(ld, app, "max_body_size"))
        cfg->appserver.max_body_size = cfg->edge.max_body_size;
    if (!cfg->appserver.chdir && ld->basedir && has_wsgi_app(&cfg->appserver) &&
        !(cfg->appserver.chdir = strdup(ld->basedir)))
        return fail_nomem(ld, NULL, "appserver.chdir");
    if (!cfg->certd.cert_dir && cfg->state_dir &&
        !(cfg->certd.cert_dir = joined(cfg->state_dir, "/certs")))
        return fail_nomem(ld, NULL, "certd.cert_dir");
    if (!cfg->certd.webroot && cfg->state_dir &&
        !(cfg->certd.webroot = joined(cfg->state_dir, "/acme")))
        return fail_nomem(ld, NULL, "certd.webroot");
    for (size_t i = 0; i < cfg->site_count; i++) {
        yaml_node_t *site = sites && sites->type == YAML_SEQUENCE_NODE
                                ? node_at(ld, sites->data.sequence.items.start[i])
                                : sites;
        if (!map_has(ld, site, "upstreams") &&
            strings_copy(&cfg->sites[i].upstreams, &cfg->appserver.bind) < 0)
            return fail_nomem(ld, NULL, "sites.upstreams");
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
static int check_wsgi_app(loader *ld, yaml_node_t *root)
{
    const config_appserver *a = &ld->cfg->appserver;
    yaml_node_t *node = map_get(ld, map_get(ld, root, "appserver"), "modules");
    const char *app = NULL;
    for (size_t i = 0; i < a->modules.count; i++) {
        if (!config_is_wsgi_app(a->modules.items[i]))
            continue;
        if (app)
            return fail(ld, node, "appserver.modules",
                        "names two WSGI applications ('%s' and '%s'); an appserver runs one", app,
                        a->modules.items[i]);
        app = a->modules.items[i];
        if (!python_can_find(a, ld->basedir, app))
            return fail(ld, node, "appserver.modules",
                        "WSGI application '%s': no module '%.*s' in %s, appserver.pythonpath, "
                        "the virtualenv or the system's Python",
                        app, (int)strcspn(app, ".:"), app,
                        a->chdir ? a->chdir : "the config file's directory (appserver.chdir)");
    }
    if (a->virtualenv) {
        char cfgfile[PATH_MAX];
        snprintf(cfgfile, sizeof(cfgfile), "%s/pyvenv.cfg", a->virtualenv);
        if (access(cfgfile, R_OK) != 0)
            return fail(ld, map_get(ld, map_get(ld, root, "appserver"), "virtualenv"),
                        "appserver.virtualenv", "%s is not a virtualenv (no pyvenv.cfg)",
                        a->virtualenv);
    }
    return 0;
}

/* "127.0.0.1:9145" or "[::1]:9145", not ":9145", "9145" or "*:9145": every interface. */
static bool names_host(const char *listen)
{
    const char *colon = strrchr(listen, ':');
    return listen[0] == '[' || (colon && colon != listen && strncmp(listen, "*:", 2) != 0);
}

static int check_across(loader *ld, yaml_node_t *root)
{
    if (check_wsgi_app(ld, root) != 0)
        return -1;
    hearth_config *cfg = ld->cfg;
    yaml_node_t *certd = map_get(ld, root, "certd"), *sup = map_get(ld, root, "supervisor");
    yaml_node_t *edge = map_get(ld, root, "edge");
    if (!cfg->certd.eab_kid != !cfg->certd.eab_hmac_key) {
        const char *given = cfg->certd.eab_kid ? "eab_kid" : "eab_hmac_key";
        const char *other = cfg->certd.eab_kid ? "eab_hmac_key" : "eab_kid";
        char kpath[64];
        snprintf(kpath, sizeof(kpath), "certd.%s", given);
        return fail(ld, map_get(ld, certd, given), kpath, "needs certd.%s as well", other);
    }
    if (cfg->supervisor.restart_delay_ms > cfg->supervisor.restart_delay_max_ms)
        return fail(ld, map_get(ld, sup, "restart_delay"), "supervisor.restart_delay",
                    "is longer than supervisor.restart_delay_max");
    if (cfg->metrics && !names_host(cfg->metrics))
        return fail(ld, map_get(ld, root, "metrics"), "metrics",
                    "'%s' would serve metrics on every interface; name the address, e.g. "
                    "127.0.0.1:9145 (metrics must not be public)",
                    cfg->metrics);
    if (cfg->edge.http.count == 0 && cfg->edge.https.count == 0)
        return fail(ld, edge, "edge", "needs at least one address in http or https");
    return 0;
}

/* ---- entry points ---- */

void config_defaults(hearth_config *cfg)
{
    loader ld = {.name = "defaults", .cfg = cfg};
    memset(cfg, 0, sizeof(*cfg));
    apply_defaults(&ld, top_fields, cfg);
    derive(&ld, NULL);
}

void config_free(hearth_config *cfg)
{
    if (!cfg)
        return;
    free_fields(top_fields, cfg);
    free(cfg->path);
    memset(cfg, 0, sizeof(*cfg));
}

/* libyaml's reader errors carry a byte offset rather than a mark. */
static void offset_to_mark(const char *text, size_t len, size_t offset, yaml_mark_t *mark)
{
    mark->line = 0;
    mark->column = 0;
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            mark->line++;
            mark->column = 0;
        } else {
            mark->column++;
        }
    }
}

static int fail_syntax(loader *ld, yaml_parser_t *parser, const char *yaml, size_t len)
{
    yaml_node_t at = {0};
    const char *problem = parser->problem ? parser->problem : "cannot parse";
    if (parser->error == YAML_MEMORY_ERROR)
        return fail(ld, NULL, NULL, "out of memory");
    if (parser->error == YAML_READER_ERROR)
        offset_to_mark(yaml, len, parser->problem_offset, &at.start_mark);
    else
        at.start_mark = parser->problem_mark;
    if (parser->context)
        return fail(ld, &at, NULL, "bad YAML: %s (%s at line %zu, column %zu)", problem,
                    parser->context, parser->context_mark.line + 1,
                    parser->context_mark.column + 1);
    return fail(ld, &at, NULL, "bad YAML: %s", problem);
}

/* Parses one document; a second one in the same file is an error, not silently ignored. */
static int parse_document(loader *ld, const char *yaml, size_t len, yaml_document_t *doc)
{
    yaml_parser_t parser;
    yaml_document_t next;
    int rc = 0;
    if (!yaml_parser_initialize(&parser))
        return fail(ld, NULL, NULL, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, doc)) {
        rc = fail_syntax(ld, &parser, yaml, len);
        yaml_parser_delete(&parser);
        return rc;
    }
    if (!yaml_parser_load(&parser, &next)) {
        rc = fail_syntax(ld, &parser, yaml, len);
    } else {
        yaml_node_t *root = yaml_document_get_root_node(&next);
        if (root)
            rc = fail(ld, root, NULL, "only one YAML document is allowed in a config file");
        yaml_document_delete(&next);
    }
    if (rc < 0)
        yaml_document_delete(doc);
    yaml_parser_delete(&parser);
    return rc;
}

static int load_root(loader *ld, yaml_node_t *root)
{
    if (root && !is_null(root) && root->type != YAML_MAPPING_NODE) {
        if (root->type == YAML_SCALAR_NODE)
            return fail(ld, root, NULL, "the top level must be a map of keys, got '%s'",
                        shown((char *)root->data.scalar.value, (char[64]){0}));
        return fail(ld, root, NULL, "the top level must be a map of keys, got a list");
    }
    if (root && root->type == YAML_MAPPING_NODE && load_map(ld, root, top_fields, ld->cfg, "") < 0)
        return -1;
    if (derive(ld, root) < 0)
        return -1;
    return check_across(ld, root);
}

static int load_text(hearth_config *cfg, const char *yaml, size_t len, const char *name,
                     const char *basedir, char *err, size_t errlen)
{
    yaml_document_t doc;
    loader ld = {.doc = &doc,
                 .name = name ? name : "config",
                 .basedir = basedir,
                 .cfg = cfg,
                 .err = err,
                 .errlen = errlen};
    int rc;
    if (err && errlen)
        err[0] = '\0';
    memset(cfg, 0, sizeof(*cfg));
    apply_defaults(&ld, top_fields, cfg);
    if (!(cfg->path = strdup(ld.name)) || parse_document(&ld, yaml, len, &doc) < 0) {
        if (!cfg->path)
            fail(&ld, NULL, NULL, "out of memory");
        config_free(cfg);
        return -1;
    }
    rc = load_root(&ld, yaml_document_get_root_node(&doc));
    yaml_document_delete(&doc);
    if (rc < 0)
        config_free(cfg);
    return rc;
}

int config_load_string(hearth_config *cfg, const char *yaml, size_t len, const char *name,
                       char *err, size_t errlen)
{
    return load_text(cfg, yaml ? yaml : "", yaml ? len : 0, name, NULL, err, errlen);
}

/* Reads the whole file; -1 with errno set (EFBIG for a file too large to be a config). */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 4096, used = 0;
    char *buf = NULL;
    if (!f)
        return NULL;
    for (;;) {
        char *grown;
        if (used == cap || !buf) {
            cap = buf ? cap * 2 : cap;
            if (cap > CONFIG_MAX_FILE_SIZE + 1)
                cap = CONFIG_MAX_FILE_SIZE + 1;
            if (!(grown = realloc(buf, cap)))
                break;
            buf = grown;
        }
        size_t n = fread(buf + used, 1, cap - used, f);
        used += n;
        if (used > CONFIG_MAX_FILE_SIZE) {
            errno = EFBIG;
            break;
        }
        if (n == 0) {
            if (ferror(f))
                break;
            fclose(f);
            *len = used;
            return buf;
        }
    }
    int saved = errno;
    free(buf);
    fclose(f);
    errno = saved ? saved : EIO;
    return NULL;
}

/* Relative paths in the file (unix: socket paths too) are relative to the file's directory, not to
 * the cwd: the supervisor, the edge and certd all read the same file, each from its own cwd. An
 * origin that is gone (the supervisor's copy outlives an edit) still names its directory. */
static char *config_dir(const char *path)
{
    char *real = realpath(path, NULL), *slash;
    if (!real && path[0] == '/')
        real = strdup(path);
    if (!real)
        return NULL;
    slash = strrchr(real, '/');
    if (slash == real)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    return real;
}

char *config_read_file(const char *path, size_t *len)
{
    return read_file(path, len);
}

int config_load_text(hearth_config *cfg, const char *yaml, size_t len, const char *origin,
                     char *err, size_t errlen)
{
    char *dir = config_dir(origin);
    int rc = load_text(cfg, yaml, len, origin, dir, err, errlen);
    free(dir);
    return rc;
}

int config_load(hearth_config *cfg, const char *path, char *err, size_t errlen)
{
    size_t len = 0;
    if (!path)
        path = CONFIG_DEFAULT_PATH;
    char *text = read_file(path, &len);
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
