/* The appserver's settings: Gunicorn's flags, or the appserver section of the stack's YAML
 * file (-c), flags winning over the file. */
#ifndef APPSERVER_OPTIONS_H
#define APPSERVER_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/strlist.h"

typedef struct {
    strlist modules;
    strlist binds; /* "unix:PATH" or "HOST:PORT" */
    int workers;
    int64_t timeout_ms;
    int64_t graceful_timeout_ms;
    int64_t keepalive_ms;
    int max_requests; /* 0: never recycle */
    int max_requests_jitter;
    uint64_t max_body;
    char *pidfile;
    char *access_log; /* NULL: off; "-": stdout */
    char *error_log;  /* NULL or "-": stderr */
    int log_level;    /* shared/log.h level */
    bool log_json;
    char *user, *group;
    char *config_path;
    /* a WSGI application: its "pkg.mod:app" (its entry in modules is the bridge's path) */
    char *wsgi_app;
    char *chdir; /* the workers change to it before loading modules */
    strlist pythonpath;
    char *virtualenv;
    strlist env; /* NAME=VALUE, set in the workers */
    char *mount;
    bool check; /* --check: load the modules to see they would load, then exit */
} appserver_opts;

/* Parse argv into opts (loading -c FILE first). 0 ok, 1 printed help/version (exit 0),
 * -1 usage or config error already printed (exit 2). */
int options_parse(appserver_opts *opts, int argc, char **argv);
/* Re-read the config file on HUP: modules and worker count may change. -1 on error, message
 * logged, opts unchanged. */
int options_reload(appserver_opts *opts);
void options_free(appserver_opts *opts);

#endif
