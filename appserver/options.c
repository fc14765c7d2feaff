/* Command line and config file. Flags are Gunicorn's, so a Gunicorn user's muscle memory
 * works; with -c the stack's YAML file supplies the defaults and flags override it. */
#include "appserver/options.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hearth/app.h"
#include "shared/cli.h"
#include "shared/config.h"
#include "shared/log.h"

#define TEXT_(x) #x
#define ABI_TEXT(x) TEXT_(x)

#define SWAP_FIELD(a, b, field)                                                                    \
    do {                                                                                           \
        __typeof__((a)->field) tmp_ = (a)->field;                                                  \
        (a)->field = (b)->field;                                                                   \
        (b)->field = tmp_;                                                                         \
    } while (0)

/* Kept for options_reload(): a reload re-reads the file and re-applies the same flags. */
static int saved_argc;
static char **saved_argv;
static bool reloading;

static void set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? strdup(src) : NULL;
}

static int auto_workers(int n)
{
    if (n > 0)
        return n;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return (int)(cores > 0 ? cores : 1) * 2 + 1;
}

/* The WSGI bridge is a module like any other, installed next to this program. */
static char *bridge_path(void)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return NULL;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    size_t len = strlen(self) + sizeof "/hearth_wsgi.so";
    char *path = malloc(len);
    if (path)
        snprintf(path, len, "%s/hearth_wsgi.so", self);
    return path;
}

/* A "pkg.mod:app" entry becomes the bridge's path; the application is remembered. */
static int resolve_wsgi_app(appserver_opts *o)
{
    for (size_t i = 0; i < o->modules.count; i++) {
        if (!config_is_wsgi_app(o->modules.items[i]))
            continue;
        if (o->wsgi_app) {
            fprintf(stderr, "appserver: two WSGI applications ('%s' and '%s'); run one each\n",
                    o->wsgi_app, o->modules.items[i]);
            return -1;
        }
        char *bridge = bridge_path();
        if (!bridge || access(bridge, R_OK) != 0) {
            fprintf(stderr,
                    "appserver: %s: the WSGI bridge %s is missing (built without "
                    "python3-embed?)\n",
                    o->modules.items[i], bridge ? bridge : "hearth_wsgi.so");
            free(bridge);
            return -1;
        }
        o->wsgi_app = o->modules.items[i];
        o->modules.items[i] = bridge;
    }
    if (o->virtualenv) {
        char cfg[4096];
        snprintf(cfg, sizeof cfg, "%s/pyvenv.cfg", o->virtualenv);
        if (access(cfg, R_OK) != 0) {
            fprintf(stderr, "appserver: --virtualenv %s: not a virtualenv (no pyvenv.cfg)\n",
                    o->virtualenv);
            return -1;
        }
    }
    return 0;
}

/* Flags that are the appserver's own, not settings of the stack's file. */
static int set_pidfile(cli_call *c, const char *arg)
{
    set_str(&((appserver_opts *)c->ctx)->pidfile, arg);
    return 0;
}

static int set_error_log(cli_call *c, const char *arg)
{
    set_str(&((appserver_opts *)c->ctx)->error_log, arg);
    return 0;
}

/* Gunicorn's --pythonpath takes a comma-separated list; repeating the flag works too. */
static int add_pythonpath(cli_call *c, const char *arg)
{
    const char *p = arg;
    while (*p) {
        size_t n = strcspn(p, ",");
        char *dir = strndup(p, n);
        int rc = !dir ? cli_fail(c, "out of memory") : *dir ? cli_set(c, dir) : 0;
        free(dir);
        if (rc != 0)
            return -1;
        p += n + (p[n] == ',');
    }
    return 0;
}

static const cli_flag appserver_flags[] = {
    {"bind", 'b', "ADDR", "appserver.bind", .opts = CLI_REPLACE,
     .help = "unix:PATH or HOST:PORT (repeatable; default 127.0.0.1:8000)"},
    {"workers", 'w', "N", "appserver.workers",
     .help = "worker processes (default 1; 0: 2 x cores + 1)"},
    {"timeout", 't', "DUR", "appserver.timeout", .help = "kill a worker silent this long (30s)"},
    {"config", 'c', "FILE", .help = "the stack's YAML file (section appserver); flags override it"},
    {"graceful-timeout", 0, "DUR", "appserver.graceful_timeout",
     .help = "time to finish requests on stop/reload (30s)"},
    {"keep-alive", 0, "DUR", "appserver.keepalive_timeout",
     .help = "idle keep-alive connections closed after (60s)"},
    {"max-requests", 0, "N", "appserver.max_requests",
     .help = "replace a worker after N requests (0: never)"},
    {"max-requests-jitter", 0, "N", "appserver.max_requests_jitter",
     .help = "add 0..N at random per worker"},
    {"max-body-size", 0, "SIZE", "appserver.max_body_size", .help = "larger bodies get 413 (1m)"},
    {"pid", 0, "FILE", .fn = set_pidfile, .help = "write the master's pid here"},
    {"access-logfile", 0, "FILE", "appserver.access_log",
     .help = "access log, combined format ('-': stdout)"},
    {"error-logfile", 0, "FILE", .fn = set_error_log, .help = "error log (default stderr)"},
    {"log-level", 0, "LEVEL", "log_level", .fn = cli_log_level,
     .help = "debug, info, warn, error (default info)"},
    {"log-json", 0, NULL, "log_format", "json", .help = "error log as JSON lines"},
    {"user", 0, "USER", "user", .help = "drop privileges to USER after binding"},
    {"group", 0, "GROUP", "group", .help = "and to GROUP"},
    {"chdir", 0, "DIR", "appserver.chdir",
     .help = "change to DIR before loading (default: here; with -c, the file's directory)"},
    {"pythonpath", 0, "DIR", "appserver.pythonpath", .fn = add_pythonpath,
     .help = "put DIR on sys.path (repeatable, or DIR1,DIR2)"},
    {"virtualenv", 0, "DIR", "appserver.virtualenv",
     .help = "use the venv in DIR (made by python3 -m venv)"},
    {"env", 0, "NAME=VALUE", "appserver.env",
     .help = "set in the workers' environment (repeatable)"},
    {"mount", 0, "/PREFIX", "appserver.mount",
     .help = "the WSGI application's SCRIPT_NAME; other paths get 404"},
    {"check", 0, NULL, .opts = CLI_CTX_BOOL, .field = offsetof(appserver_opts, check),
     .help = "load each module to check it (init not run), then exit"},
    {.name = NULL},
};

/* Run without -c: Gunicorn's defaults, not the stack's (one worker, a local TCP port). */
static void standalone(hearth_config *cfg)
{
    cfg->appserver.workers = 1;
    strlist_clear(&cfg->appserver.bind);
    strlist_add(&cfg->appserver.bind, "127.0.0.1:8000");
}

static const cli_spec appserver_cli = {
    .prog = "appserver",
    .usage = "usage: appserver [flags] APP...\n"
             "APP: a C module (a path ending in .so), or a Python WSGI application as\n"
             "pkg.module:callable or pkg.module:factory() (at most one)\n",
    .notes =
        "Durations: 30 (seconds), 500ms, 2m. Signals: HUP reload, TERM graceful stop, INT/QUIT\n"
        "fast stop, TTIN/TTOU one worker more/less, USR1 reopen logs.\n",
    .version_extra =
        "module ABI " ABI_TEXT(HEARTH_APP_ABI_VERSION) "." ABI_TEXT(HEARTH_APP_ABI_MINOR),
    .flags = appserver_flags,
    .config_flag = "config",
    .args_key = "appserver.modules",
    .standalone = standalone,
};

/* The settings as the rest of the appserver takes them. */
static void from_config(appserver_opts *o, const hearth_config *cfg, const char *path)
{
    const config_appserver *a = &cfg->appserver;
    strlist_copy(&o->modules, &a->modules);
    strlist_copy(&o->binds, &a->bind);
    o->workers = auto_workers(a->workers);
    o->timeout_ms = a->timeout_ms;
    o->graceful_timeout_ms = a->graceful_timeout_ms;
    o->keepalive_ms = a->keepalive_timeout_ms;
    o->max_requests = a->max_requests;
    o->max_requests_jitter = a->max_requests_jitter;
    o->max_body = a->max_body_size;
    set_str(&o->access_log, a->access_log);
    set_str(&o->user, cfg->user);
    set_str(&o->group, cfg->group);
    o->log_level = log_level_parse(cfg->log_level); /* the schema allows only known names */
    o->log_json = cfg->log_format == LOG_FORMAT_JSON;
    set_str(&o->config_path, path);
    set_str(&o->chdir, a->chdir);
    strlist_copy(&o->pythonpath, &a->pythonpath);
    set_str(&o->virtualenv, a->virtualenv);
    strlist_copy(&o->env, &a->env);
    set_str(&o->mount, a->mount);
}

int options_parse(appserver_opts *o, int argc, char **argv)
{
    hearth_config cfg;
    cli_parsed parsed;
    char err[CONFIG_ERR_MAX];
    saved_argc = argc;
    saved_argv = argv;
    memset(o, 0, sizeof(*o));
    cli_result r = cli_parse(&appserver_cli, argc, argv, &cfg, o, &parsed, err, sizeof(err));
    if (r == CLI_ERROR && reloading)
        log_error("%s", err); /* into the error log the running server writes */
    else if (r == CLI_ERROR)
        fprintf(stderr, "appserver: %s\n", err);
    if (r != CLI_RUN)
        return r == CLI_DONE ? 1 : -1;
    from_config(o, &cfg, parsed.config_path);
    config_free(&cfg);
    if (o->modules.count == 0) {
        fprintf(stderr, "appserver: no module to load (see --help)\n");
        return -1;
    }
    return resolve_wsgi_app(o);
}

int options_reload(appserver_opts *o)
{
    appserver_opts fresh;
    reloading = true;
    int rc = options_parse(&fresh, saved_argc, saved_argv);
    reloading = false;
    if (rc != 0) {
        options_free(&fresh);
        log_error("reload refused: config not reloaded (see the message above); nothing "
                  "changed");
        return -1;
    }
    strlist_clear(&o->modules);
    o->modules = fresh.modules;
    fresh.modules = (strlist){0};
    /* a reload may point the application elsewhere: the next workers take it all */
    SWAP_FIELD(o, &fresh, wsgi_app);
    SWAP_FIELD(o, &fresh, chdir);
    SWAP_FIELD(o, &fresh, pythonpath);
    SWAP_FIELD(o, &fresh, virtualenv);
    SWAP_FIELD(o, &fresh, env);
    SWAP_FIELD(o, &fresh, mount);
    o->workers = fresh.workers;
    o->max_requests = fresh.max_requests;
    o->max_requests_jitter = fresh.max_requests_jitter;
    o->timeout_ms = fresh.timeout_ms;
    o->graceful_timeout_ms = fresh.graceful_timeout_ms;
    options_free(&fresh);
    return 0;
}

void options_free(appserver_opts *o)
{
    strlist_clear(&o->modules);
    strlist_clear(&o->binds);
    free(o->pidfile);
    free(o->access_log);
    free(o->error_log);
    free(o->user);
    free(o->group);
    free(o->config_path);
    free(o->wsgi_app);
    free(o->chdir);
    strlist_clear(&o->pythonpath);
    free(o->virtualenv);
    strlist_clear(&o->env);
    free(o->mount);
    memset(o, 0, sizeof *o);
}
