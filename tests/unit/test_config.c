/* Unit tests of the config loader: defaults, a file with every key, derived paths, each kind of
 * error with its exact message, and the duration/size syntax. */
#include "shared/config.h"
#include "shared/ipaddr.h"
#include "tests/unit/check.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char *data_path(const char *file, char *out, size_t len)
{
    const char *dir = getenv("HEARTH_TEST_DATA");
    snprintf(out, len, "%s/unit/config/%s", dir ? dir : "tests", file);
    return out;
}

static int load(hearth_config *cfg, const char *yaml, char *err, size_t errlen)
{
    return config_load_string(cfg, yaml, strlen(yaml), "t.yaml", err, errlen);
}

static void check_defaults_of(const hearth_config *c)
{
    CHECK(c->user == NULL);
    CHECK(c->group == NULL);
    CHECK_STR(c->run_dir, "/run/hearth");
    CHECK_STR(c->state_dir, "/var/lib/hearth");
    CHECK_STR(c->log_level, "info");
    CHECK(c->log_format == LOG_FORMAT_TEXT);

    CHECK(c->edge.workers == 0);
    CHECK(c->edge.http.count == 1 && strcmp(c->edge.http.items[0], ":80") == 0);
    CHECK(c->edge.https.count == 1 && strcmp(c->edge.https.items[0], ":443") == 0);
    CHECK(c->edge.access_log == NULL);
    CHECK(c->edge.access_log_format == ACCESS_LOG_COMBINED);
    CHECK(c->edge.header_timeout_ms == 60000);
    CHECK(c->edge.keepalive_timeout_ms == 75000);
    CHECK(c->edge.send_timeout_ms == 60000);
    CHECK(c->edge.max_body_size == 1024 * 1024);
    CHECK(c->edge.max_header_size == 16 * 1024);
    CHECK(c->edge.max_header_count == 100);
    CHECK(c->edge.max_connections == 1024);
    CHECK(c->edge.pressure_threshold == 0.75);
    CHECK(c->edge.pressure_header_timeout_ms == 5000);
    CHECK(c->edge.pressure_log_interval_ms == 10000);
    CHECK(c->edge.proxy_connect_timeout_ms == 60000);
    CHECK(c->edge.proxy_read_timeout_ms == 60000);
    CHECK(c->edge.upstream_fail_timeout_ms == 10000);
    CHECK(c->edge.h2_max_concurrent_streams == 128);
    CHECK(c->edge.h2_max_header_list_size == 32 * 1024);
    CHECK(c->edge.h2_max_frame_size == 16 * 1024);
    CHECK(c->edge.h2_stream_window == 64 * 1024);
    CHECK(c->edge.h2_connection_window == 1024 * 1024);
    CHECK(c->edge.h2_max_requests == 1000);
    CHECK(c->edge.h2_idle_timeout_ms == 180000);

    CHECK(c->appserver.modules.count == 0);
    CHECK(c->appserver.bind.count == 1);
    if (c->appserver.bind.count == 1)
        CHECK_STR(c->appserver.bind.items[0], "unix:/run/hearth/app.sock");
    CHECK(c->appserver.workers == 0);
    CHECK(c->appserver.timeout_ms == 30000);
    CHECK(c->appserver.graceful_timeout_ms == 30000);
    CHECK(c->appserver.keepalive_timeout_ms == 60000);
    CHECK(c->appserver.max_requests == 0);
    CHECK(c->appserver.max_requests_jitter == 0);
    CHECK(c->appserver.max_body_size == 1024 * 1024);
    CHECK(c->appserver.access_log == NULL);

    CHECK_STR(c->certd.server, "https://acme-v02.api.letsencrypt.org/directory");
    CHECK(c->certd.email == NULL);
    CHECK(!c->certd.agree_tos);
    CHECK(c->certd.ca_bundle == NULL);
    CHECK(c->certd.eab_kid == NULL && c->certd.eab_hmac_key == NULL);
    CHECK(c->certd.key_type == KEY_EC256);
    CHECK_STR(c->certd.cert_dir, "/var/lib/hearth/certs");
    CHECK_STR(c->certd.webroot, "/var/lib/hearth/acme");
    CHECK(c->certd.check_interval_ms == 12 * 3600 * 1000);
    CHECK(c->certd.renew_remaining_fraction > 0.333 && c->certd.renew_remaining_fraction < 0.334);

    CHECK(c->supervisor.stop_timeout_ms == 45000);
    CHECK(c->supervisor.restart_delay_ms == 100);
    CHECK(c->supervisor.restart_delay_max_ms == 30000);
    CHECK(c->supervisor.restart_reset_ms == 30000);
    CHECK(c->supervisor.max_restarts == 5);
    CHECK(c->supervisor.restart_window_ms == 60000);

    CHECK(c->sites == NULL && c->site_count == 0);
}

static void test_defaults(void)
{
    hearth_config c;
    char err[256];
    config_defaults(&c);
    check_defaults_of(&c);
    config_free(&c);

    /* an empty file, one of only comments, and a bare "---" are all defaults */
    const char *empties[] = {"", "# nothing\n", "---\n", "---\n...\n", "~\n", "edge:\n"};
    for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
        CHECK_MSG(load(&c, empties[i], err, sizeof(err)) == 0, "%s", err);
        check_defaults_of(&c);
        CHECK_STR(c.path, "t.yaml");
        config_free(&c);
    }
    CHECK(config_load_string(&c, NULL, 0, NULL, err, sizeof(err)) == 0);
    CHECK_STR(c.path, "config");
    config_free(&c);
}

static void check_good_top(const hearth_config *c)
{
    CHECK_STR(c->user, "hearth");
    CHECK_STR(c->group, "www-data");
    CHECK_STR(c->run_dir, "/tmp/hearth-run");
    CHECK_STR(c->state_dir, "/tmp/hearth-state");
    CHECK_STR(c->log_level, "debug");
    CHECK(c->log_format == LOG_FORMAT_JSON);

    const config_edge *e = &c->edge;
    CHECK(e->workers == 4);
    CHECK(e->http.count == 2);
    CHECK_STR(e->http.items[0], ":8080");
    CHECK_STR(e->http.items[1], "[::]:8080");
    CHECK(e->https.count == 1);
    CHECK_STR(e->https.items[0], "127.0.0.1:8443");
    CHECK_STR(e->access_log, "/var/log/hearth/access.log");
    CHECK(e->access_log_format == ACCESS_LOG_JSON);
    CHECK(e->header_timeout_ms == 10000);
    CHECK(e->keepalive_timeout_ms == 300000);
    CHECK(e->send_timeout_ms == 30000);
    CHECK(e->max_body_size == 64u << 20);
    CHECK(e->max_header_size == 32u << 10);
    CHECK(e->max_header_count == 50);
    CHECK(e->max_connections == 10000);
    CHECK(e->proxy_connect_timeout_ms == 500);
    CHECK(e->proxy_read_timeout_ms == 120000);
    CHECK(e->upstream_fail_timeout_ms == 0);
}

static void check_good_components(const hearth_config *c, const char *dir)
{
    char path[PATH_MAX + 32];
    const config_appserver *a = &c->appserver;
    CHECK(a->modules.count == 2);
    CHECK_STR(a->modules.items[0], "/usr/lib/hearth/site.so");
    snprintf(path, sizeof(path), "%s/modules/extra.so", dir);
    CHECK_STR(a->modules.items[1], dir[0] ? path : "modules/extra.so");
    CHECK(a->bind.count == 2);
    CHECK_STR(a->bind.items[0], "unix:/tmp/app.sock");
    CHECK_STR(a->bind.items[1], "127.0.0.1:8000");
    CHECK(a->workers == 3);
    CHECK(a->timeout_ms == 45000);
    CHECK(a->graceful_timeout_ms == 60000);
    CHECK(a->keepalive_timeout_ms == 5000);
    CHECK(a->max_requests == 1000);
    CHECK(a->max_requests_jitter == 50);
    CHECK(a->max_body_size == UINT64_C(2) << 30);
    CHECK_STR(a->access_log, "-"); /* stdout, never made a path */

    const config_certd *d = &c->certd;
    CHECK_STR(d->server, "https://localhost:14000/dir");
    CHECK_STR(d->email, "admin@example.com");
    CHECK(d->agree_tos);
    snprintf(path, sizeof(path), "%s/pebble.minica.pem", dir);
    CHECK_STR(d->ca_bundle, dir[0] ? path : "pebble.minica.pem");
    CHECK_STR(d->eab_kid, "kid-1");
    CHECK_STR(d->eab_hmac_key, "c2VjcmV0");
    CHECK(d->key_type == KEY_RSA4096);
    CHECK_STR(d->cert_dir, "/srv/certs");
    CHECK_STR(d->webroot, "/srv/acme");
    CHECK(d->check_interval_ms == 3600000);
    CHECK(d->renew_remaining_fraction == 0.5);

    const config_supervisor *s = &c->supervisor;
    CHECK(s->stop_timeout_ms == 20000);
    CHECK(s->restart_delay_ms == 250);
    CHECK(s->restart_delay_max_ms == 60000);
    CHECK(s->restart_reset_ms == 120000);
    CHECK(s->max_restarts == 10);
    CHECK(s->restart_window_ms == 300000);
}

static void check_good_sites(const hearth_config *c, const char *dir)
{
    char path[PATH_MAX + 32];
    CHECK(c->site_count == 3);
    if (c->site_count != 3)
        return;
    const config_site *s = &c->sites[0];
    CHECK_STR(s->name, "example.com"); /* lowercased */
    CHECK(s->aliases.count == 2);
    CHECK_STR(s->aliases.items[1], "*.static.example.com");
    CHECK(s->tls == SITE_TLS_FILES);
    CHECK(s->cert_count == 2);
    CHECK_STR(s->certs[0].cert, "/etc/ssl/ec.pem");
    CHECK_STR(s->certs[1].key, "/etc/ssl/rsa.key");
    CHECK(s->hsts_ms == INT64_C(365) * 86400 * 1000);
    CHECK(s->static_count == 2);
    CHECK_STR(s->statics[0].prefix, "/static/");
    CHECK_STR(s->statics[0].root, "/srv/www/static");
    CHECK_STR(s->statics[0].cache_control, "public, max-age=3600");
    CHECK_STR(s->statics[1].prefix, "/media/");
    snprintf(path, sizeof(path), "%s/media", dir);
    CHECK_STR(s->statics[1].root, dir[0] ? path : "media");
    CHECK(s->statics[1].cache_control == NULL);
    CHECK(s->upstreams.count == 2);
    CHECK_STR(s->upstreams.items[1], "10.0.0.2:8000");
    CHECK(s->line == 60);

    s = &c->sites[1];
    CHECK_STR(s->name, "app.localhost");
    CHECK(s->aliases.count == 1);
    CHECK_STR(s->aliases.items[0], "other.localhost");
    CHECK(s->tls == SITE_TLS_OFF);
    CHECK(s->cert_count == 0 && s->static_count == 0 && s->hsts_ms == 0);
    CHECK(s->upstreams.count == 2); /* the appserver's binds */
    CHECK_STR(s->upstreams.items[0], "unix:/tmp/app.sock");

    s = &c->sites[2];
    CHECK(s->tls == SITE_TLS_ACME); /* a public name */
    snprintf(path, sizeof(path), "unix:%s/run/shop.sock", dir);
    CHECK(s->upstreams.count == 1);
    CHECK_STR(s->upstreams.items[0], dir[0] ? path : "unix:run/shop.sock");
    CHECK(s->line == 75);
}

static void test_good_file(void)
{
    hearth_config c;
    char err[512], path[PATH_MAX], dir[PATH_MAX];
    data_path("good.yaml", path, sizeof(path));
    CHECK_MSG(config_load(&c, path, err, sizeof(err)) == 0, "%s", err);
    CHECK_STR(c.path, path);
    /* relative paths follow the file, wherever the reader's cwd is */
    CHECK(realpath(data_path("", dir, sizeof(dir)), dir) != NULL);
    check_good_top(&c);
    check_good_components(&c, dir);
    check_good_sites(&c, dir);
    config_free(&c);
    config_free(&c); /* freeing twice is harmless: it zeroes */
}

/* The same text from memory keeps relative paths as written. */
static void test_good_string(void)
{
    char path[PATH_MAX], err[512];
    FILE *f = fopen(data_path("good.yaml", path, sizeof(path)), "rb");
    static char text[8192];
    size_t n = f ? fread(text, 1, sizeof(text), f) : 0;
    hearth_config c;
    if (f)
        fclose(f);
    CHECK(n > 0);
    CHECK_MSG(config_load_string(&c, text, n, "good.yaml", err, sizeof(err)) == 0, "%s", err);
    check_good_components(&c, "");
    check_good_sites(&c, "");
    config_free(&c);
}

/* Several upstreams: balance, passive and active checks, and their defaults. */
static void test_upstream_keys(void)
{
    hearth_config c;
    char err[256];
    const char *yaml = "edge: {upstream_fail_timeout: 30s}\n"
                       "sites:\n"
                       "  - name: a.org\n"
                       "    upstreams: ['10.0.0.1:80', '10.0.0.2:80']\n"
                       "    balance: least_conn\n"
                       "    max_fails: 3\n"
                       "    fail_timeout: 5s\n"
                       "    next_upstream_tries: 1\n"
                       "    health_check: {path: /healthz, interval: 1s}\n"
                       "  - name: b.org\n";
    CHECK_MSG(load(&c, yaml, err, sizeof(err)) == 0, "%s", err);
    const config_site *a = &c.sites[0], *b = &c.sites[1];
    CHECK(a->balance == BALANCE_LEAST_CONN && a->max_fails == 3 && a->next_upstream_tries == 1);
    CHECK(a->fail_timeout_set && a->fail_timeout_ms == 5000);
    CHECK(a->health_check.enabled && a->health_check.interval_ms == 1000);
    CHECK_STR(a->health_check.path, "/healthz");
    CHECK(a->health_check.timeout_ms == 2000 && a->health_check.rise == 2 &&
          a->health_check.fall == 3);
    /* nginx's defaults; fail_timeout is the edge's unless the site sets it; no active checks */
    CHECK(b->balance == BALANCE_ROUND_ROBIN && b->max_fails == 1 && b->next_upstream_tries == 0);
    CHECK(!b->fail_timeout_set && c.edge.upstream_fail_timeout_ms == 30000);
    CHECK(!b->health_check.enabled);
    config_free(&c);
    /* at most CONFIG_UPSTREAMS_MAX: a request's tries are a bit set */
    char many[4096] = "sites:\n  - name: a.org\n    upstreams: [";
    for (int i = 0; i <= CONFIG_UPSTREAMS_MAX; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s':%d'", i ? ", " : "",
                 1000 + i);
    strcat(many, "]\n");
    CHECK(load(&c, many, err, sizeof(err)) == -1);
    CHECK_MSG(strstr(err, "65 upstreams; a site has at most 64") != NULL, "%s", err);
}

static void test_derived(void)
{
    hearth_config c;
    char err[256];
    /* state_dir after certd and run_dir after sites: order in the file does not matter */
    const char *yaml = "certd: {email: a@b.c}\n"
                       "sites: [{name: example.org}, {name: dev.localhost, upstreams: []}]\n"
                       "state_dir: /srv/state\n"
                       "run_dir: /srv/run\n"
                       "edge: {max_body_size: 10m}\n";
    CHECK_MSG(load(&c, yaml, err, sizeof(err)) == 0, "%s", err);
    CHECK_STR(c.certd.cert_dir, "/srv/state/certs");
    CHECK_STR(c.certd.webroot, "/srv/state/acme");
    CHECK(c.appserver.bind.count == 1);
    CHECK_STR(c.appserver.bind.items[0], "unix:/srv/run/app.sock");
    CHECK(c.appserver.max_body_size == 10u << 20);
    CHECK(c.site_count == 2);
    CHECK(c.sites[0].upstreams.count == 1);
    CHECK_STR(c.sites[0].upstreams.items[0], "unix:/srv/run/app.sock");
    CHECK(c.sites[0].tls == SITE_TLS_ACME);
    CHECK(c.sites[1].upstreams.count == 0); /* explicitly none: a static-only site */
    CHECK(c.sites[1].tls == SITE_TLS_INTERNAL);
    config_free(&c);

    /* the default TLS mode follows the name: no public CA issues for these */
    const char *local[] = {"localhost", "a.localhost", "box", "10.0.0.1", "x.test", "nas.lan"};
    for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "sites: [{name: '%s'}]\n", local[i]);
        CHECK_MSG(load(&c, buf, err, sizeof(err)) == 0, "%s", err);
        CHECK_MSG(c.site_count == 1 && c.sites[0].tls == SITE_TLS_INTERNAL, "%s", local[i]);
        config_free(&c);
    }
    /* one map alone for a list of maps, one scalar for a list of strings */
    CHECK(load(&c, "sites: {name: a.org, tls: {cert: c, key: k}, static: {prefix: /, root: /w}}",
               err, sizeof(err)) == 0);
    CHECK(c.site_count == 1 && c.sites[0].cert_count == 1 && c.sites[0].static_count == 1);
    CHECK_STR(c.sites[0].statics[0].prefix, "/");
    config_free(&c);
    /* a WSGI application is a module name, never a path; the stdlib's json is found */
    CHECK_MSG(load(&c,
                   "appserver: {modules: [json:loads, /x.so], env: [A=1, 'B_2=x y'], "
                   "mount: /app, pythonpath: [/p1, /p2]}",
                   err, sizeof(err)) == 0,
              "%s", err);
    CHECK_STR(c.appserver.modules.items[0], "json:loads");
    CHECK(c.appserver.env.count == 2 && c.appserver.pythonpath.count == 2);
    CHECK_STR(c.appserver.env.items[1], "B_2=x y");
    CHECK_STR(c.appserver.mount, "/app");
    CHECK(config_is_wsgi_app("notes.wsgi:app") && config_is_wsgi_app("notes:create_app()"));
    CHECK(!config_is_wsgi_app("/srv/app.so") && !config_is_wsgi_app("a:") &&
          !config_is_wsgi_app(".a:b") && !config_is_wsgi_app("c:/x.so"));
    config_free(&c);
    CHECK(load(&c, "edge: {http: ~, workers: auto}\nuser: ~\n", err, sizeof(err)) == 0);
    CHECK(c.edge.http.count == 0 && c.edge.https.count == 1 && c.user == NULL);
    config_free(&c);
}

struct bad {
    const char *yaml;
    const char *message;
};

static const struct bad bad_values[] = {
    {"edge:\n  header_timeout: abc\n",
     "t.yaml:2:19: key 'edge.header_timeout': expected a duration like 10s, got 'abc'"},
    {"edge:\n  header_timeout: 2h\n",
     "t.yaml:2:19: key 'edge.header_timeout': expected a duration from 1s to 1h, got '2h'"},
    {"edge:\n  header_timeout: 99999999999999999999s\n",
     "t.yaml:2:19: key 'edge.header_timeout': expected a duration from 1s to 1h, got "
     "'99999999999999999999s'"},
    {"edge:\n  header_timeout:\n", "t.yaml:2:18: key 'edge.header_timeout': expected a duration "
                                   "like 10s, got nothing"},
    {"edge: {header_timeout: [1s]}",
     "t.yaml:1:24: key 'edge.header_timeout': expected a duration like 10s, got a list"},
    {"edge:\n  max_body_size: 12q\n",
     "t.yaml:2:18: key 'edge.max_body_size': expected a size like 64k, got '12q'"},
    {"edge:\n  max_header_size: 2m\n",
     "t.yaml:2:20: key 'edge.max_header_size': expected a size from 1k to 1m, got '2m'"},
    {"edge:\n  h2_max_frame_size: 8k\n",
     "t.yaml:2:22: key 'edge.h2_max_frame_size': expected a size from 16k to 16777215, got '8k'"},
    {"edge:\n  max_body_size: 99999999999g\n",
     "t.yaml:2:18: key 'edge.max_body_size': expected a size from 0 to 1024g, got "
     "'99999999999g'"},
    {"edge:\n  workers: -1\n",
     "t.yaml:2:12: key 'edge.workers': expected auto or an integer from 0 to 1024, got '-1'"},
    {"edge:\n  max_header_count: 0\n",
     "t.yaml:2:21: key 'edge.max_header_count': expected an integer from 1 to 10000, got '0'"},
    {"appserver: {max_requests: 99999999999999999999999}",
     "t.yaml:1:27: key 'appserver.max_requests': expected an integer from 0 to 2147483647, got "
     "'99999999999999999999999'"},
    {"certd: {agree_tos: yes}",
     "t.yaml:1:20: key 'certd.agree_tos': expected true or false, got 'yes'"},
    {"log_format: xml\n", "t.yaml:1:13: key 'log_format': expected one of text, json, got 'xml'"},
    {"log_level: verbose\n", "t.yaml:1:12: key 'log_level': expected one of debug, info, warn, "
                             "error, got 'verbose'"},
    {"certd: {key_type: rsa1024}", "t.yaml:1:19: key 'certd.key_type': expected one of ec256, "
                                   "ec384, rsa2048, rsa3072, rsa4096, got 'rsa1024'"},
    {"certd: {renew_remaining_fraction: 1}", "t.yaml:1:35: key 'certd.renew_remaining_fraction': "
                                             "expected a number between 0 and 1 like 0.33, got "
                                             "'1'"},
    {"certd: {renew_remaining_fraction: nan}",
     "t.yaml:1:35: key 'certd.renew_remaining_fraction': expected a number between 0 and 1 like "
     "0.33, got 'nan'"},
    {"certd: {server: ftp://x}",
     "t.yaml:1:17: key 'certd.server': expected an http:// or https:// URL, got 'ftp://x'"},
    {"run_dir: {a: 1}", "t.yaml:1:10: key 'run_dir': expected a string, got a map"},
    {"run_dir: ''", "t.yaml:1:10: key 'run_dir': expected a string, got nothing"},
    {"user: \"a\\0b\"", "t.yaml:1:7: key 'user': a NUL byte is not allowed in a value"},
    {"edge: fast", "t.yaml:1:7: key 'edge': expected a map, got 'fast'"},
    {"edge: {http: [':80', '1.2.3.4:99999']}",
     "t.yaml:1:22: key 'edge.http[1]': address '1.2.3.4:99999': the port must be a number from 1 "
     "to 65535"},
    {"edge: {https: '::1:443'}", "t.yaml:1:15: key 'edge.https': address '::1:443': an IPv6 "
                                 "address needs brackets, as in [::1]:443"},
    {"edge: {https: 'unix:/x.sock'}", "t.yaml:1:15: key 'edge.https': expected a listen address "
                                      "like :443, 0.0.0.0:443 or [::]:443, got 'unix:/x.sock'"},
    {"edge: {http: [{a: 1}]}", "t.yaml:1:15: key 'edge.http[0]': expected a listen address like "
                               ":443, 0.0.0.0:443 or [::]:443, got a map"},
    {"edge: {http: {a: 1}}", "t.yaml:1:14: key 'edge.http': expected a listen address like :443, "
                             "0.0.0.0:443 or [::]:443, got a map"},
    {"appserver: {bind: 'unix:'}",
     "t.yaml:1:19: key 'appserver.bind': address 'unix:': a unix socket needs a path after "
     "'unix:'"},
    {"appserver: {modules: [a.so, '']}",
     "t.yaml:1:29: key 'appserver.modules[1]': expected a string or a list of strings, got "
     "nothing"},
    {"appserver: {modules: [nosuchmod_xyz:app]}",
     "t.yaml:1:22: key 'appserver.modules': WSGI application 'nosuchmod_xyz:app': no module "
     "'nosuchmod_xyz' in the config file's directory (appserver.chdir), appserver.pythonpath, "
     "the virtualenv or the system's Python"},
    {"appserver: {modules: ['json:a', 'os:b']}",
     "t.yaml:1:22: key 'appserver.modules': names two WSGI applications ('json:a' and 'os:b'); "
     "an appserver runs one"},
    {"appserver: {env: [1A=b]}", "t.yaml:1:19: key 'appserver.env[0]': expected NAME=VALUE, got "
                                 "'1A=b'"},
    {"appserver: {mount: /app/}",
     "t.yaml:1:20: key 'appserver.mount': expected a path prefix like /app, got '/app/'"},
    {"appserver: {virtualenv: /nonexistent}",
     "t.yaml:1:25: key 'appserver.virtualenv': /nonexistent is not a virtualenv (no pyvenv.cfg)"},
};

static const struct bad bad_structure[] = {
    {"edge:\n  header_timeot: 10s\n",
     "t.yaml:2:3: key 'edge.header_timeot': unknown key, did you mean 'header_timeout'?"},
    {"edge:\n  timeout: 10s\n",
     "t.yaml:2:3: key 'edge.timeout': unknown key (known keys here: workers, http, https, "
     "access_log, access_log_format, header_timeout, keepalive_timeout, send_timeout, "
     "max_body_size, max_header_size, max_header_count, max_connections, pressure_threshold, "
     "pressure_header_timeout, pressure_log_interval, proxy_connect_timeout, proxy_read_timeout, "
     "upstream_fail_timeout, h2_max_concurrent_streams, h2_max_header_list_size, "
     "h2_max_frame_size, h2_stream_window, h2_connection_window, h2_max_requests, "
     "h2_idle_timeout, compression, trusted_proxies, proxy_protocol, "
     "max_connections_per_client, client_table_size)"},
    {"sites:\n  - name: a.org\n    upstream: [x:1]\n",
     "t.yaml:3:5: key 'sites[0].upstream': unknown key, did you mean 'upstreams'?"},
    {"edg: {}\n", "t.yaml:1:1: key 'edg': unknown key, did you mean 'edge'?"},
    {"edge:\n  workers: 2\n  http: ':80'\n  workers: 3\n",
     "t.yaml:4:3: key 'edge.workers': duplicate key (first given at line 2)"},
    {"? [a]\n: 1\n", "t.yaml:1:3: a key must be a plain string, got a list"},
    {"- a\n- b\n", "t.yaml:1:1: the top level must be a map of keys, got a list"},
    {"hello\n", "t.yaml:1:1: the top level must be a map of keys, got 'hello'"},
    {"edge: {}\n---\nedge: {}\n", "t.yaml:3:1: only one YAML document is allowed in a config file"},
    {"edge:\n  workers: [1\n",
     "t.yaml:3:1: bad YAML: did not find expected ',' or ']' (while parsing a flow sequence at "
     "line 2, column 12)"},
    {"a: b: c\n", "t.yaml:1:5: bad YAML: mapping values are not allowed in this context"},
    {"edge:\n\tworkers: 1\n",
     "t.yaml:2:1: bad YAML: found character that cannot start any token (while scanning for the "
     "next token at line 2, column 1)"},
    {"user: \"\xff\"\n", "t.yaml:1:8: bad YAML: invalid leading UTF-8 octet"},
    {"x: *nope\n", "t.yaml:1:4: bad YAML: found undefined alias"},
};

static const struct bad bad_sites[] = {
    {"sites:\n  - aliases: [a.org]\n",
     "t.yaml:2:5: key 'sites[0].name': missing, and it has no default"},
    {"sites: [example.com]", "t.yaml:1:9: key 'sites[0]': expected a map, got 'example.com'"},
    {"sites: example.com", "t.yaml:1:8: key 'sites': expected a list of maps, got 'example.com'"},
    {"sites: [[a]]", "t.yaml:1:9: key 'sites[0]': expected a map, got a list"},
    {"sites:\n  - name: a_b.org\n",
     "t.yaml:2:11: key 'sites[0].name': expected a host name like example.com, got 'a_b.org'"},
    {"sites:\n  - name: '*.a.org'\n",
     "t.yaml:2:11: key 'sites[0].name': expected a host name like example.com, got '*.a.org'"},
    {"sites:\n  - name: a.org\n  - name: A.org\n",
     "t.yaml:3:11: key 'sites[1].name': 'a.org' is already served by sites[0]"},
    {"sites:\n  - name: a.org\n    aliases: [b.org, a.org]\n",
     "t.yaml:3:22: key 'sites[0].aliases[1]': 'a.org' is already served by sites[0]"},
    {"sites:\n  - name: a.org\n    aliases: '*.a.org'\n",
     "t.yaml:3:14: key 'sites[0].aliases[0]': ACME HTTP-01 cannot issue '*.a.org': a wildcard "
     "needs tls: {cert, key} or tls: internal"},
    {"sites:\n  - name: a.org\n    tls: letsencrypt\n",
     "t.yaml:3:10: key 'sites[0].tls': expected one of acme, internal, off or {cert, key}, got "
     "'letsencrypt'"},
    {"sites:\n  - name: a.org\n    tls: files\n",
     "t.yaml:3:10: key 'sites[0].tls': expected one of acme, internal, off or {cert, key}, got "
     "'files'"},
    {"sites:\n  - name: a.org\n    tls: {cert: /c.pem}\n",
     "t.yaml:3:10: key 'sites[0].tls.key': missing, and it has no default"},
    {"sites:\n  - name: a.org\n    tls:\n      - {cert: /c.pem, key: /k.pem}\n      - {key: "
     "/k2.pem}\n",
     "t.yaml:5:9: key 'sites[0].tls[1].cert': missing, and it has no default"},
    {"sites:\n  - name: a.org\n    tls: []\n",
     "t.yaml:3:10: key 'sites[0].tls': expected at least one {cert, key}, got an empty list"},
    {"sites:\n  - name: a.org\n    tls: {cert: /c, key: /k, chain: /x}\n",
     "t.yaml:3:30: key 'sites[0].tls.chain': unknown key (known keys here: cert, key)"},
    {"sites:\n  - name: a.org\n    static:\n      - {prefix: static, root: /srv}\n",
     "t.yaml:4:18: key 'sites[0].static[0].prefix': a URL prefix must start with '/', got "
     "'static'"},
    {"sites:\n  - name: a.org\n    static:\n      - {prefix: /a/../b, root: /srv}\n",
     "t.yaml:4:18: key 'sites[0].static[0].prefix': a URL prefix must be a clean path, got "
     "'/a/../b'"},
    {"sites:\n  - name: a.org\n    static:\n      - {prefix: /s, root: /a}\n      - {prefix: /s/, "
     "root: /b}\n",
     "t.yaml:5:18: key 'sites[0].static[1].prefix': '/s/' is already served by static[0]"},
    {"sites:\n  - name: a.org\n    static:\n      - {prefix: /s/., root: /a}\n",
     "t.yaml:4:18: key 'sites[0].static[0].prefix': a URL prefix must be a clean path, got "
     "'/s/.'"},
    {"sites:\n  - name: a.org\n    static:\n      - {prefix: /s}\n",
     "t.yaml:4:9: key 'sites[0].static[0].root': missing, and it has no default"},
    {"sites:\n  - name: a.org\n    upstreams: [localhost]\n",
     "t.yaml:3:17: key 'sites[0].upstreams[0]': address 'localhost': expected unix:PATH, "
     "HOST:PORT, [IPV6]:PORT or :PORT"},
    {"sites:\n  - name: a.org\n    balance: random\n",
     "t.yaml:3:14: key 'sites[0].balance': expected one of round_robin, least_conn, got 'random'"},
    {"sites:\n  - name: a.org\n    health_check: {path: healthz}\n",
     "t.yaml:3:26: key 'sites[0].health_check.path': expected a path like /healthz, got "
     "'healthz'"},
    {"sites:\n  - name: a.org\n    health_check: {rise: 0}\n",
     "t.yaml:3:26: key 'sites[0].health_check.rise': expected an integer from 1 to 100, got '0'"},
    {"certd:\n  eab_kid: k\n", "t.yaml:2:12: key 'certd.eab_kid': needs certd.eab_hmac_key as "
                               "well"},
    {"supervisor:\n  restart_delay: 1m\n  restart_delay_max: 10s\n",
     "t.yaml:2:18: key 'supervisor.restart_delay': is longer than supervisor.restart_delay_max"},
    {"edge:\n  http: []\n  https: []\n",
     "t.yaml:2:3: key 'edge': needs at least one address in http or https"},
    {"edge:\n  trusted_proxies: [10.0.0.1/8]\n",
     "t.yaml:2:21: key 'edge.trusted_proxies[0]': expected an address or a CIDR range like "
     "10.0.0.0/8 (no bits set past the prefix), got '10.0.0.1/8'"},
    {"sites:\n  - name: a.org\n    limits: [{rate: 10r/h}]\n",
     "t.yaml:3:21: key 'sites[0].limits[0].rate': expected a rate like 10r/s or 600r/m (1r/m to "
     "1000000r/s), got '10r/h'"},
    {"sites:\n  - name: a.org\n    limits: [{burst: 5}]\n",
     "t.yaml:3:14: key 'sites[0].limits[0].rate': missing, and it has no default"},
    {"sites:\n  - name: a.org\n    limits: [{rate: 1r/s}, {prefix: /, rate: 2r/s}]\n",
     "t.yaml:3:37: key 'sites[0].limits[1].prefix': '/' is already limited by limits[0]"},
};

static void check_bad(const struct bad *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        hearth_config c;
        char err[CONFIG_ERR_MAX];
        memset(&c, 0x5a, sizeof(c)); /* the loader must not read what was there */
        CHECK_MSG(load(&c, cases[i].yaml, err, sizeof(err)) == -1, "accepted: %s", cases[i].yaml);
        CHECK_STR(err, cases[i].message);
        /* on error cfg is already freed and zeroed */
        CHECK(c.path == NULL && c.run_dir == NULL && c.sites == NULL && c.edge.http.items == NULL);
        config_free(&c);
    }
}

static void test_errors(void)
{
    check_bad(bad_values, sizeof(bad_values) / sizeof(bad_values[0]));
    check_bad(bad_structure, sizeof(bad_structure) / sizeof(bad_structure[0]));
    check_bad(bad_sites, sizeof(bad_sites) / sizeof(bad_sites[0]));
}

static void test_file_errors(void)
{
    hearth_config c;
    char err[512], path[PATH_MAX], want[PATH_MAX + 128];
    CHECK(config_load(&c, "/nonexistent/hearth.yaml", err, sizeof(err)) == -1);
    CHECK_STR(err, "/nonexistent/hearth.yaml: No such file or directory");
    CHECK(c.path == NULL);

    data_path("", path, sizeof(path));
    CHECK(config_load(&c, path, err, sizeof(err)) == -1);
    snprintf(want, sizeof(want), "%s: Is a directory", path);
    CHECK_STR(err, want);

    data_path("bad_site.yaml", path, sizeof(path));
    CHECK(config_load(&c, path, err, sizeof(err)) == -1);
    snprintf(want, sizeof(want),
             "%s:6:9: key 'sites[1].aliases[1]': 'example.com' is already "
             "served by sites[0]",
             path);
    CHECK_STR(err, want);

    data_path("syntax.yaml", path, sizeof(path));
    CHECK(config_load(&c, path, err, sizeof(err)) == -1);
    snprintf(want, sizeof(want),
             "%s:3:1: bad YAML: did not find expected ',' or ']' (while "
             "parsing a flow sequence at line 2, column 12)",
             path);
    CHECK_STR(err, want);

    /* a short or missing buffer truncates the message, nothing more */
    char tiny[8];
    CHECK(load(&c, "edge: 1", tiny, sizeof(tiny)) == -1);
    CHECK_STR(tiny, "t.yaml:");
    CHECK(load(&c, "edge: 1", NULL, 0) == -1);
}

static void test_duration_size(void)
{
    int64_t ms = -7;
    uint64_t bytes = 7;
    CHECK(config_parse_duration("500ms", &ms) == 0 && ms == 500);
    CHECK(config_parse_duration("10s", &ms) == 0 && ms == 10000);
    CHECK(config_parse_duration("10", &ms) == 0 && ms == 10000);
    CHECK(config_parse_duration("0", &ms) == 0 && ms == 0);
    CHECK(config_parse_duration("5m", &ms) == 0 && ms == 300000);
    CHECK(config_parse_duration("12h", &ms) == 0 && ms == 43200000);
    CHECK(config_parse_duration("90d", &ms) == 0 && ms == INT64_C(90) * 86400000);
    CHECK(config_parse_duration("9223372036854775807ms", &ms) == 0 && ms == INT64_MAX);
    ms = 1;
    CHECK(config_parse_duration("9223372036854775808ms", &ms) == -1 && ms == 1);
    CHECK(config_parse_duration("106751991167301d", &ms) == -1);
    CHECK(config_parse_duration("18446744073709551616", &ms) == -1);
    const char *bad_durations[] = {"",   "s",    "-1s",   "+1s",  " 1s", "1s ", "1.5s",
                                   "1S", "1sec", "1h30m", "0x10", "1 s", "ms"};
    for (size_t i = 0; i < sizeof(bad_durations) / sizeof(bad_durations[0]); i++)
        CHECK_MSG(config_parse_duration(bad_durations[i], &ms) == -1, "'%s'", bad_durations[i]);
    CHECK(config_parse_duration(NULL, &ms) == -1);

    CHECK(config_parse_size("512", &bytes) == 0 && bytes == 512);
    CHECK(config_parse_size("64k", &bytes) == 0 && bytes == 65536);
    CHECK(config_parse_size("64K", &bytes) == 0 && bytes == 65536);
    CHECK(config_parse_size("1m", &bytes) == 0 && bytes == 1048576);
    CHECK(config_parse_size("2g", &bytes) == 0 && bytes == UINT64_C(2147483648));
    CHECK(config_parse_size("0", &bytes) == 0 && bytes == 0);
    CHECK(config_parse_size("18446744073709551615", &bytes) == 0 && bytes == UINT64_MAX);
    CHECK(config_parse_size("18446744073709551616", &bytes) == -1);
    CHECK(config_parse_size("17179869184g", &bytes) == -1);
    CHECK(config_parse_size("17179869183g", &bytes) == 0 && bytes == UINT64_C(17179869183) << 30);
    const char *bad_sizes[] = {"", "k", "-1", "1.5m", "1kb", "1 k", "1x", "0x10", " 1"};
    for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++)
        CHECK_MSG(config_parse_size(bad_sizes[i], &bytes) == -1, "'%s'", bad_sizes[i]);
}

/* Rates as nginx writes them, and the trusted ranges the edge matches clients against. */
static void test_rates_and_ranges(void)
{
    uint32_t r = 7;
    CHECK(config_parse_rate("10r/s", &r) == 0 && r == 10000);
    CHECK(config_parse_rate("30r/m", &r) == 0 && r == 500);
    CHECK(config_parse_rate("1r/m", &r) == 0 && r == 16);
    CHECK(config_parse_rate("1000000r/s", &r) == 0 && r == 1000000000u);
    const char *bad_rates[] = {"",
                               "0r/s",
                               "10",
                               "10r",
                               "10r/h",
                               "1000001r/s",
                               "-1r/s",
                               " 1r/s",
                               "1.5r/s",
                               "10r/s ",
                               "99999999999999999999r/s"};
    for (size_t i = 0; i < sizeof(bad_rates) / sizeof(bad_rates[0]); i++)
        CHECK_MSG(config_parse_rate(bad_rates[i], &r) == -1, "'%s'", bad_rates[i]);

    ip_cidr c;
    ip_addr a;
    CHECK(ip_cidr_parse("10.0.0.0/8", &c) == 0 && c.bits == 104);
    CHECK(ip_parse("10.200.3.4", 10, &a) == 0 && ip_cidr_contains(&c, &a));
    CHECK(ip_parse("11.0.0.1", 8, &a) == 0 && !ip_cidr_contains(&c, &a));
    CHECK(ip_cidr_parse("127.0.0.1", &c) == 0 && c.bits == 128);
    CHECK(ip_parse("127.0.0.2", 9, &a) == 0 && !ip_cidr_contains(&c, &a));
    CHECK(ip_cidr_parse("2001:db8::/32", &c) == 0 && c.bits == 32);
    CHECK(ip_parse("2001:db8:1::5", 13, &a) == 0 && ip_cidr_contains(&c, &a));
    CHECK(ip_parse("10.0.0.1", 8, &a) == 0 && !ip_cidr_contains(&c, &a));
    CHECK(ip_cidr_parse("0.0.0.0/0", &c) == 0 && ip_cidr_contains(&c, &a));
    const char *bad_ranges[] = {"",        "10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1",
                                "::1/129", "host/8",     "10.0.0.0/8 "};
    for (size_t i = 0; i < sizeof(bad_ranges) / sizeof(bad_ranges[0]); i++)
        CHECK_MSG(ip_cidr_parse(bad_ranges[i], &c) == -1, "'%s'", bad_ranges[i]);
    char text[64];
    CHECK(ip_parse("::ffff:192.0.2.9", 16, &a) == 0);
    ip_format(&a, text, sizeof(text));
    CHECK_STR(text, "192.0.2.9");
}

/* A pathological but valid document: aliases are followed, deep nesting is refused cleanly. */
static void test_hostile(void)
{
    hearth_config c;
    char err[512];
    const char *aliased = "x-paths: &p [/a.so, /b.so]\n";
    CHECK(load(&c, aliased, err, sizeof(err)) == -1); /* unknown key, no extension keys */
    const char *reuse = "appserver: {modules: &m [/a.so, /b.so]}\n"
                        "sites: [{name: a.org, upstreams: [unix:/x]}]\n";
    CHECK_MSG(load(&c, reuse, err, sizeof(err)) == 0, "%s", err);
    config_free(&c);

    static char deep[40000];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof(deep), "edge: ");
    while (n < 20000)
        deep[n++] = '[';
    deep[n] = '\0';
    CHECK(load(&c, deep, err, sizeof(err)) == -1);
}

static size_t read_whole(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, len - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return n;
}

/* The shipped example and the reference's complete example must stay loadable. */
static void test_examples(void)
{
    static char text[131072];
    char path[PATH_MAX], err[512];
    hearth_config c;
    const char *dir = getenv("HEARTH_TEST_DATA");
    snprintf(path, sizeof(path), "%s/../examples/hearth.yaml", dir ? dir : "tests");
    CHECK_MSG(config_load(&c, path, err, sizeof(err)) == 0, "%s", err);
    CHECK(c.site_count == 1 && c.sites[0].tls == SITE_TLS_ACME);
    CHECK(c.edge.max_body_size == 10u << 20 && c.appserver.max_body_size == 10u << 20);
    config_free(&c);

    snprintf(path, sizeof(path), "%s/../docs/config.md", dir ? dir : "tests");
    CHECK(read_whole(path, text, sizeof(text)) > 0);
    char *start = strstr(text, "```yaml\n"), *end = start ? strstr(start + 8, "```") : NULL;
    CHECK(start && end);
    if (!start || !end)
        return;
    start += 8;
    CHECK_MSG(config_load_string(&c, start, (size_t)(end - start), "config.md", err, sizeof(err)) ==
                  0,
              "%s", err);
    CHECK(c.site_count == 2 && c.sites[1].cert_count == 2);
    config_free(&c);
}

/* Single keys, as command-line flags set them: the file's parsing, bounds and messages. */
static void test_set_keys(void)
{
    hearth_config c;
    char err[256];
    config_defaults(&c);
    CHECK(config_set(&c, "edge.max_header_size", "32k", "--h", err, sizeof(err)) == 0);
    CHECK(c.edge.max_header_size == 32u << 10);
    CHECK(config_set(&c, "edge.max_header_size", "256", "--h", err, sizeof(err)) == -1);
    CHECK_STR(err, "--h: expected a size from 1k to 1m, got '256'");
    CHECK(c.edge.max_header_size == 32u << 10);
    CHECK(config_set(&c, "edge.workers", "auto", "-w", err, sizeof(err)) == 0 &&
          c.edge.workers == 0);
    CHECK(config_clear(&c, "edge.http") == 0 && c.edge.http.count == 0);
    CHECK(config_set(&c, "edge.http", ":8080", "--http", err, sizeof(err)) == 0);
    CHECK(config_set(&c, "edge.http", "[::]:8080", "--http", err, sizeof(err)) == 0);
    CHECK(c.edge.http.count == 2 && strcmp(c.edge.http.items[1], "[::]:8080") == 0);
    /* a list of maps on the way stands for its last element */
    CHECK(config_set(&c, "sites.hsts", "1d", "--hsts", err, sizeof(err)) == -1);
    CHECK_STR(err, "--hsts: comes after a 'sites' entry, and there is none yet");
    CHECK(config_add(&c, "sites", "--server-name", err, sizeof(err)) == 0 && c.site_count == 1);
    CHECK(config_set(&c, "sites.name", "Example.COM", "--server-name", err, sizeof(err)) == 0);
    CHECK_STR(c.sites[0].name, "example.com");
    CHECK(config_add(&c, "sites.static", "--static", err, sizeof(err)) == 0);
    CHECK(config_set(&c, "sites.static.prefix", "/assets", "--static", err, sizeof(err)) == 0);
    CHECK(config_set(&c, "sites.static.root", "www", "--static", err, sizeof(err)) == 0);
    CHECK(config_check_last(&c, "sites.static", "--static", err, sizeof(err)) == 0);
    CHECK_STR(c.sites[0].statics[0].prefix, "/assets/");
    CHECK_STR(c.sites[0].statics[0].root, "www"); /* no file: kept as written */
    CHECK(config_set(&c, "no.such", "1", "--x", err, sizeof(err)) == -1);
    CHECK_STR(err, "--x: no config key 'no.such'");
    config_free(&c);
}

int main(void)
{
    test_defaults();
    test_good_file();
    test_good_string();
    test_derived();
    test_upstream_keys();
    test_errors();
    test_file_errors();
    test_duration_size();
    test_rates_and_ranges();
    test_hostile();
    test_examples();
    test_set_keys();
    return check_summary("config");
}
