/* appserver: serve C application modules behind the edge, the way Gunicorn serves WSGI apps.
 * main() only wires things up: options, logs, sockets, privileges, pidfile, then the arbiter. */
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "appserver/arbiter.h"
#include "appserver/listen.h"
#include "appserver/module.h"
#include "appserver/options.h"
#include "shared/config.h"
#include "shared/exit_codes.h"
#include "shared/log.h"
#include "shared/pidfile.h"
#include "shared/privs.h"
#include "shared/signals.h"

static int drop_privileges(const appserver_opts *o, const listen_set *ls)
{
    if (!o->user && !o->group)
        return 0;
    uid_t uid;
    gid_t gid;
    char err[256];
    if (privs_lookup(o->user ? o->user : "root", o->group, &uid, &gid, err, sizeof err) != 0) {
        log_error("%s", err);
        return -1;
    }
    /* what we created as root we must still be able to remove at exit (sticky /tmp, /run) */
    listen_chown(ls, uid, gid);
    if (o->pidfile && chown(o->pidfile, uid, gid) != 0)
        log_warn("cannot hand %s to the unprivileged user; it may stay behind", o->pidfile);
    if (privs_drop(uid, gid, err, sizeof err) != 0) {
        log_error("%s", err);
        return -1;
    }
    return 0;
}

static int serve(appserver_opts *o, listen_set *ls)
{
    if (drop_privileges(o, ls) != 0)
        return EXIT_FAIL;
    if (ls->inherited)
        log_info("listening on %zu socket(s) from the supervisor", ls->count);
    for (size_t i = 0; i < o->binds.count && !ls->inherited; i++)
        log_info("listening at %s", o->binds.items[i]);
    return arbiter_run(o, ls);
}

/* --check (like nginx -t): each module loads as a worker would load it; a WSGI application's
 * own module was checked with the config (shared/config.c), only the bridge is loaded here. */
static int check_modules(const appserver_opts *o)
{
    char err[CONFIG_ERR_MAX];
    for (size_t i = 0; i < o->modules.count; i++) {
        if (module_check(o->modules.items[i], err, sizeof err) != 0) {
            log_error("%s", err);
            return EXIT_USAGE;
        }
    }
    log_info("configuration ok: %zu module(s) load", o->modules.count);
    return 0;
}

int main(int argc, char **argv)
{
    appserver_opts opts;
    int rc = options_parse(&opts, argc, argv);
    if (rc != 0) {
        options_free(&opts);
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    }
    log_init("appserver", opts.log_level, opts.log_json);
    if (opts.error_log && log_set_file(opts.error_log) != 0) {
        fprintf(stderr, "appserver: cannot open error log %s\n", opts.error_log);
        options_free(&opts);
        return EXIT_USAGE;
    }
    if (opts.check) {
        rc = check_modules(&opts);
        options_free(&opts);
        return rc;
    }
    signals_ignore_sigpipe();
    listen_set ls;
    char err[CONFIG_ERR_MAX];
    if (listen_open(&ls, &opts.binds, err, sizeof err) != 0) {
        log_error("%s", err);
        options_free(&opts);
        return EXIT_FAIL;
    }
    if (opts.pidfile && pidfile_write(opts.pidfile, err, sizeof err) != 0) {
        log_error("%s", err);
        rc = 1;
    } else {
        rc = serve(&opts, &ls);
        if (opts.pidfile)
            pidfile_remove(opts.pidfile);
    }
    listen_close(&ls, 1);
    options_free(&opts);
    return rc;
}
