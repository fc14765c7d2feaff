/* edge: the TLS front (nginx's part). Parses options, builds the sites, opens the listeners and
 * drops privileges, then runs one worker itself (worker.c) or a master that forks N of them
 * (master.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/exit_codes.h"
#include "shared/log.h"
#include "shared/privs.h"
#include "shared/sdnotify.h"
#include "shared/signals.h"
#include "edge/edge.h"
#include "edge/options.h"

static edge_options opts;

static int open_acme_dir(edge_worker *w)
{
    w->acme_fd = -1;
    if (!opts.acme_webroot)
        return 0;
    w->acme_fd = open(opts.acme_webroot, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (w->acme_fd < 0)
        log_warn("acme webroot %s: %s (challenges will get 404)", opts.acme_webroot,
                 strerror(errno));
    return 0;
}

static int worker_count(void)
{
    if (edge_w.cfg.edge.workers > 0)
        return edge_w.cfg.edge.workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int https_port(void)
{
    if (edge_w.cfg.edge.https.count == 0)
        return 0;
    const char *a = edge_w.cfg.edge.https.items[0];
    const char *colon = strrchr(a, ':');
    return atoi(colon ? colon + 1 : a);
}

/* Started as root (ports below 1024 without the supervisor): once the sockets are bound, the
 * process that parses the internet's bytes keeps no privilege. Certificates and roots must then
 * be readable by that user, for reloads too, which is how certd writes them. */
static int drop_privileges(void)
{
    char err[256];
    uid_t uid;
    gid_t gid;
    if (!edge_w.cfg.user || geteuid() != 0)
        return 0;
    if (privs_lookup(edge_w.cfg.user, edge_w.cfg.group, &uid, &gid, err, sizeof(err)) < 0 ||
        privs_drop(uid, gid, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return 1;
    }
    log_info("running as user %s", edge_w.cfg.user);
    return 0;
}

static void init_log(void)
{
    int lvl = log_level_parse(edge_w.cfg.log_level ? edge_w.cfg.log_level : "info");
    log_init("edge", lvl < 0 ? HLOG_INFO : (log_level)lvl,
             edge_w.cfg.log_format == LOG_FORMAT_JSON);
}

/* The sites as a start builds them: certificates, keys and their pairing, static roots. */
static int build_sites(void)
{
    char err[CONFIG_ERR_MAX];
    edge_w.gen = edge_gen_build(&edge_w.cfg, NULL, err, sizeof(err));
    if (!edge_w.gen) {
        log_error("%s", err);
        return EXIT_USAGE;
    }
    return 0;
}

/* --check (like nginx -t): fail exactly where a start would fail on the config, serve nothing.
 * The supervisor runs it before it starts or reloads the edge with a config. */
static int check_config(void)
{
    init_log();
    int rc = build_sites();
    if (rc == 0)
        log_info("configuration ok");
    return rc;
}

static int setup(void)
{
    char err[CONFIG_ERR_MAX];
    init_log();
    signals_ignore_sigpipe();
    edge_worker_set_limits(&edge_w);
    open_acme_dir(&edge_w);
    edge_w.https_port = https_port();
    edge_metrics_open(worker_count());
    if (edge_limits_open(worker_count(), edge_w.cfg.edge.client_table_size) < 0)
        return 1;
    if (edge_tickets_open(opts.ticket_keys) < 0)
        return 1;
    edge_tickets_load(&edge_w.cfg);
    edge_tickets_prepare();
    edge_tickets_commit();
    int rc = build_sites();
    if (rc != 0)
        return rc;
    edge_tls_set_gen(edge_w.gen);
    if (edge_access_open(&edge_w, edge_w.cfg.edge.access_log,
                         edge_w.cfg.edge.access_log_format == ACCESS_LOG_JSON) < 0) {
        log_error("access log %s: %s", edge_w.cfg.edge.access_log, strerror(errno));
        return 1;
    }
    if (edge_listeners_open(&edge_w, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return 1;
    }
    return drop_privileges();
}

int main(int argc, char **argv)
{
    char err[CONFIG_ERR_MAX];
    if (edge_options_parse(&opts, argc, argv, err, sizeof(err)) < 0) {
        fprintf(stderr, "edge: %s\n", err);
        return EXIT_USAGE;
    }
    if (opts.help)
        return EXIT_OK;
    edge_w.cfg = opts.cfg;
    edge_w.config_path = opts.config_path;
    edge_w.graceful_timeout_ms = opts.graceful_timeout_ms;
    if (opts.check)
        return check_config();
    int rc = setup();
    if (rc != 0)
        return rc;
    int n = worker_count();
    log_info("listening on %zu socket(s), %d worker(s), %zu site(s)", edge_w.listener_count, n,
             edge_w.gen->site_count);
    if (n == 1) {
        sd_notify_send("READY=1");
        return edge_worker_run(true, -1, false);
    }
    return edge_master_run(n);
}
