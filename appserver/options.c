/* Command line and config file. Flags are Gunicorn's, so a Gunicorn user's muscle memory
 * works; with -c the stack's YAML file supplies the defaults and flags override it. */
#include "appserver/options.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/config.h"
#include "hearth/app.h"
#include "shared/log.h"

enum {
    OPT_GRACEFUL = 256,
    OPT_KEEPALIVE,
    OPT_MAX_REQUESTS,
    OPT_JITTER,
    OPT_MAX_BODY,
    OPT_PID,
    OPT_ACCESS_LOG,
    OPT_ERROR_LOG,
    OPT_LOG_LEVEL,
    OPT_LOG_JSON,
    OPT_USER,
    OPT_GROUP,
    OPT_CHDIR,
    OPT_PYTHONPATH,
    OPT_VIRTUALENV,
    OPT_ENV,
    OPT_MOUNT,
    OPT_CHECK,
};

static const struct option long_opts[] = {
    {"bind", required_argument, NULL, 'b'},
    {"workers", required_argument, NULL, 'w'},
    {"timeout", required_argument, NULL, 't'},
    {"config", required_argument, NULL, 'c'},
    {"graceful-timeout", required_argument, NULL, OPT_GRACEFUL},
    {"keep-alive", required_argument, NULL, OPT_KEEPALIVE},
    {"max-requests", required_argument, NULL, OPT_MAX_REQUESTS},
    {"max-requests-jitter", required_argument, NULL, OPT_JITTER},
    {"max-body-size", required_argument, NULL, OPT_MAX_BODY},
    {"pid", required_argument, NULL, OPT_PID},
    {"access-logfile", required_argument, NULL, OPT_ACCESS_LOG},
    {"error-logfile", required_argument, NULL, OPT_ERROR_LOG},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-json", no_argument, NULL, OPT_LOG_JSON},
    {"user", required_argument, NULL, OPT_USER},
    {"group", required_argument, NULL, OPT_GROUP},
    {"chdir", required_argument, NULL, OPT_CHDIR},
    {"pythonpath", required_argument, NULL, OPT_PYTHONPATH},
    {"virtualenv", required_argument, NULL, OPT_VIRTUALENV},
    {"env", required_argument, NULL, OPT_ENV},
    {"mount", required_argument, NULL, OPT_MOUNT},
    {"check", no_argument, NULL, OPT_CHECK},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static const char usage_text[] =
    "usage: appserver [options] APP...\n"
    "APP: a C module (a path ending in .so), or a Python WSGI application as\n"
    "pkg.module:callable or pkg.module:factory() (at most one)\n"
    "  -b, --bind ADDR             unix:PATH or HOST:PORT (repeatable; default 127.0.0.1:8000)\n"
    "  -w, --workers N             worker processes (default 1; 0: 2 x cores + 1)\n"
    "  -t, --timeout DUR           kill a worker silent this long (default 30s)\n"
    "      --graceful-timeout DUR  time to finish requests on stop/reload (default 30s)\n"
    "      --keep-alive DUR        idle keep-alive connections closed after (default 60s)\n"
    "      --max-requests N        replace a worker after N requests (default 0: never)\n"
    "      --max-requests-jitter N add 0..N at random per worker\n"
    "      --max-body-size SIZE    larger bodies get 413 (default 1m)\n"
    "      --pid FILE              write the master's pid here\n"
    "      --access-logfile FILE   access log, combined format ('-': stdout)\n"
    "      --error-logfile FILE    error log (default stderr)\n"
    "      --log-level LEVEL       debug, info, warn, error (default info)\n"
    "      --log-json              error log as JSON lines\n"
    "      --user USER, --group GROUP  drop privileges after binding\n"
    "  -c, --config FILE           the stack's YAML file (section appserver)\n"
    "      --chdir DIR             change to DIR before loading (default: here; with -c, the\n"
    "                              config file's directory)\n"
    "      --pythonpath DIR        put DIR on sys.path (repeatable, or DIR1,DIR2)\n"
    "      --virtualenv DIR        use the venv in DIR (made by python3 -m venv)\n"
    "      --env NAME=VALUE        set in the workers' environment (repeatable)\n"
    "      --mount /PREFIX         the WSGI application's SCRIPT_NAME; other paths get 404\n"
    "      --check                 load each module to check it (init not run), then exit\n"
    "Durations: 30 (seconds), 500ms, 2m. Signals: HUP reload, TERM graceful stop, INT/QUIT\n"
    "fast stop, TTIN/TTOU one worker more/less, USR1 reopen logs.\n";

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

static void defaults(appserver_opts *o)
{
    hearth_config cfg;
    config_defaults(&cfg);
    memset(o, 0, sizeof *o);
    o->workers = 1;
    o->timeout_ms = cfg.appserver.timeout_ms;
    o->graceful_timeout_ms = cfg.appserver.graceful_timeout_ms;
    o->keepalive_ms = cfg.appserver.keepalive_timeout_ms;
    o->max_body = cfg.appserver.max_body_size;
    o->log_level = LOG_INFO;
    config_free(&cfg);
}

static int from_config(appserver_opts *o, const char *path)
{
    hearth_config cfg;
    char err[512];
    if (config_load(&cfg, path, err, sizeof err) != 0) {
        if (reloading)
            log_error("%s", err); /* into the error log the running server writes */
        else
            fprintf(stderr, "appserver: %s\n", err);
        return -1;
    }
    const config_appserver *a = &cfg.appserver;
    for (size_t i = 0; i < a->modules.count; i++)
        strlist_add(&o->modules, a->modules.items[i]);
    for (size_t i = 0; i < a->bind.count; i++)
        strlist_add(&o->binds, a->bind.items[i]);
    o->workers = a->workers;
    o->timeout_ms = a->timeout_ms;
    o->graceful_timeout_ms = a->graceful_timeout_ms;
    o->keepalive_ms = a->keepalive_timeout_ms;
    o->max_requests = a->max_requests;
    o->max_requests_jitter = a->max_requests_jitter;
    o->max_body = a->max_body_size;
    set_str(&o->access_log, a->access_log);
    set_str(&o->user, cfg.user);
    set_str(&o->group, cfg.group);
    int level = cfg.log_level ? log_level_parse(cfg.log_level) : -1;
    o->log_level = level >= 0 ? level : LOG_INFO;
    o->log_json = cfg.log_format == LOG_FORMAT_JSON;
    set_str(&o->config_path, path);
    set_str(&o->chdir, a->chdir);
    for (size_t i = 0; i < a->pythonpath.count; i++)
        strlist_add(&o->pythonpath, a->pythonpath.items[i]);
    set_str(&o->virtualenv, a->virtualenv);
    for (size_t i = 0; i < a->env.count; i++)
        strlist_add(&o->env, a->env.items[i]);
    set_str(&o->mount, a->mount);
    config_free(&cfg);
    return 0;
}

static int parse_int(const char *flag, const char *text, int min, int *out)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || v < min || v > 1000000000) {
        fprintf(stderr, "appserver: %s: not a number >= %d: '%s'\n", flag, min, text);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_duration(const char *flag, const char *text, int64_t *out)
{
    if (config_parse_duration(text, out) != 0) {
        fprintf(stderr, "appserver: %s: not a duration: '%s'\n", flag, text);
        return -1;
    }
    return 0;
}

/* The -c file is read before the other flags, wherever it stands, so flags override it. */
static const char *find_config(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
        else if (strcmp(argv[i], "--") == 0)
            break;
    }
    return path;
}

/* Gunicorn's --pythonpath takes a comma-separated list; repeating the flag works too. */
static int add_pythonpath(appserver_opts *o, const char *arg)
{
    const char *p = arg;
    while (*p) {
        size_t n = strcspn(p, ",");
        char *dir = strndup(p, n);
        int rc = dir && *dir ? strlist_add(&o->pythonpath, dir) : 0;
        free(dir);
        if (rc != 0)
            return -1;
        p += n + (p[n] == ',');
    }
    return 0;
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

static int apply_flag(appserver_opts *o, int c, const char *arg, bool *binds_from_cli)
{
    uint64_t size;
    switch (c) {
    case 'b':
        if (!*binds_from_cli)
            strlist_clear(&o->binds); /* flags replace the file's list, not add to it */
        *binds_from_cli = true;
        return strlist_add(&o->binds, arg);
    case 'w':
        return parse_int("--workers", arg, 0, &o->workers);
    case 't':
        return parse_duration("--timeout", arg, &o->timeout_ms);
    case 'c':
        return 0;
    case OPT_GRACEFUL:
        return parse_duration("--graceful-timeout", arg, &o->graceful_timeout_ms);
    case OPT_KEEPALIVE:
        return parse_duration("--keep-alive", arg, &o->keepalive_ms);
    case OPT_MAX_REQUESTS:
        return parse_int("--max-requests", arg, 0, &o->max_requests);
    case OPT_JITTER:
        return parse_int("--max-requests-jitter", arg, 0, &o->max_requests_jitter);
    case OPT_MAX_BODY:
        if (config_parse_size(arg, &size) != 0) {
            fprintf(stderr, "appserver: --max-body-size: not a size: '%s'\n", arg);
            return -1;
        }
        o->max_body = size;
        return 0;
    case OPT_PID:
        set_str(&o->pidfile, arg);
        return 0;
    case OPT_ACCESS_LOG:
        set_str(&o->access_log, arg);
        return 0;
    case OPT_ERROR_LOG:
        set_str(&o->error_log, arg);
        return 0;
    case OPT_LOG_LEVEL:
        if ((o->log_level = log_level_parse(arg)) < 0) {
            fprintf(stderr, "appserver: --log-level: unknown level '%s'\n", arg);
            return -1;
        }
        return 0;
    case OPT_LOG_JSON:
        o->log_json = true;
        return 0;
    case OPT_USER:
        set_str(&o->user, arg);
        return 0;
    case OPT_GROUP:
        set_str(&o->group, arg);
        return 0;
    case OPT_CHDIR:
        set_str(&o->chdir, arg);
        return 0;
    case OPT_PYTHONPATH:
        return add_pythonpath(o, arg);
    case OPT_VIRTUALENV:
        set_str(&o->virtualenv, arg);
        return 0;
    case OPT_ENV:
        if (!config_is_env_assignment(arg)) {
            fprintf(stderr, "appserver: --env: expected NAME=VALUE, got '%s'\n", arg);
            return -1;
        }
        return strlist_add(&o->env, arg);
    case OPT_CHECK:
        o->check = true;
        return 0;
    case OPT_MOUNT:
        if (!config_is_mount_prefix(arg)) {
            fprintf(stderr, "appserver: --mount: expected a path prefix like /app, got '%s'\n",
                    arg);
            return -1;
        }
        set_str(&o->mount, arg);
        return 0;
    default:
        return -1;
    }
}

int options_parse(appserver_opts *o, int argc, char **argv)
{
    saved_argc = argc;
    saved_argv = argv;
    defaults(o);
    const char *cfg = find_config(argc, argv);
    if (cfg && from_config(o, cfg) != 0)
        return -1;
    bool binds_from_cli = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "b:w:t:c:hV", long_opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage_text, stdout);
            return 1;
        }
        if (c == 'V') {
            printf("appserver (hearth) module ABI %d\n", HEARTH_APP_ABI_VERSION);
            return 1;
        }
        if (c == '?' || apply_flag(o, c, optarg, &binds_from_cli) != 0) {
            fputs(usage_text, stderr);
            return -1;
        }
    }
    if (optind < argc)
        strlist_clear(&o->modules); /* modules named on the command line replace the file's */
    for (int i = optind; i < argc; i++)
        strlist_add(&o->modules, argv[i]);
    if (o->binds.count == 0)
        strlist_add(&o->binds, "127.0.0.1:8000");
    o->workers = auto_workers(o->workers);
    if (o->modules.count == 0) {
        fprintf(stderr, "appserver: no module to load\n%s", usage_text);
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
