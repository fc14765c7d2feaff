/* `hearth start` and `hearth check`: validate the config, prepare the directories,
 * bind the listening sockets as root, open the notify and control sockets, then run the
 * children until a stop. Anything wrong before the first child starts exits 2 (config) or 1. */
#include "supervisor/sv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared/log.h"
#include "shared/pidfile.h"
#include "shared/privs.h"
#include "shared/sdnotify.h"
#include "shared/signals.h"

static const char *const child_names[CHILD_COUNT] = {
    [CHILD_APPSERVER] = "appserver", [CHILD_EDGE] = "edge", [CHILD_CERTD] = "certd"};

static int load_config(const char *path, hearth_config *cfg)
{
    char err[1024];
    if (access(path, R_OK) < 0) {
        fprintf(stderr, "supervisor: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (config_load(cfg, path, err, sizeof(err)) < 0) {
        fprintf(stderr, "supervisor: %s\n", err);
        memset(cfg, 0, sizeof(*cfg)); /* freed by config_load; keep teardown's free harmless */
        return -1;
    }
    if (sv_validate(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "supervisor: %s\n", err);
        config_free(cfg);
        memset(cfg, 0, sizeof(*cfg));
        return -1;
    }
    return 0;
}

/* mkdir -p, then the owner and mode we want even when it existed (as systemd's
 * StateDirectory= does). owned: the children's user owns it; else only its group is theirs.
 * Nothing is changed when all is right already, so no capability is needed then. */
static int make_dir(supervisor *sv, const char *path, mode_t mode, bool owned, char *err,
                    size_t errlen)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "%s: path too long", path);
        return -1;
    }
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(tmp, saved == '\0' ? (mode & 0777) : 0755) < 0 && errno != EEXIST) {
            snprintf(err, errlen, "mkdir %.512s: %s", tmp, strerror(errno));
            return -1;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    struct stat st;
    if (stat(path, &st) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    uid_t uid = owned ? sv->uid : st.st_uid;
    if (sv->drop_privs && (st.st_uid != uid || st.st_gid != sv->gid) &&
        chown(path, uid, sv->gid) < 0) {
        snprintf(err, errlen, "chown %s: %s", path, strerror(errno));
        return -1;
    }
    if ((st.st_mode & 07777) != mode && chmod(path, mode) < 0) {
        snprintf(err, errlen, "chmod %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int resolve_user(supervisor *sv, char *err, size_t errlen)
{
    if (sv->cfg.user == NULL)
        return 0;
    if (privs_lookup(sv->cfg.user, sv->cfg.group, &sv->uid, &sv->gid, err, errlen) < 0)
        return -1;
    if (getuid() == sv->uid && geteuid() == sv->uid)
        return 0; /* already that user: nothing to drop */
    if (geteuid() != 0) {
        snprintf(err, errlen,
                 "%s: key 'user': running as uid %u, cannot become '%s' (start as "
                 "root, or remove 'user')",
                 sv->cfg.path, (unsigned)geteuid(), sv->cfg.user);
        return -1;
    }
    sv->drop_privs = true;
    return 0;
}

static int locate_children(supervisor *sv, char *err, size_t errlen)
{
    for (int i = 0; i < CHILD_COUNT; i++) {
        sv_child *c = &sv->children[i];
        if (c->enabled && sv_locate(c->name, &c->path, err, errlen) < 0)
            return -1;
        /* The edge is the site: giving up on it for crashing would take the site down. */
        if (policy_init(&c->policy, &sv->cfg.supervisor, i == CHILD_EDGE) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* Everything before the first child: any failure here means nothing was started. */
static int prepare(supervisor *sv, int *code, char *err, size_t errlen)
{
    char path[PATH_MAX];
    *code = EXIT_USAGE;
    if (resolve_user(sv, err, errlen) < 0)
        return -1;
    stack_enable(sv);
    *code = EXIT_FAIL;
    if (locate_children(sv, err, errlen) < 0)
        return -1;
    /* certd's directories too: the edge serves the webroot even before certd first runs. */
    /* run_dir holds the supervisor's own sockets and pidfile: when the children are another
     * user, they share it through the group, and the sticky bit keeps our files ours. */
    mode_t run_mode = sv->drop_privs ? 01770 : 0750;
    if (make_dir(sv, sv->cfg.run_dir, run_mode, false, err, errlen) < 0 ||
        make_dir(sv, sv->cfg.state_dir, 0750, true, err, errlen) < 0 ||
        make_dir(sv, sv->cfg.certd.cert_dir, 0750, true, err, errlen) < 0 ||
        make_dir(sv, sv->cfg.certd.webroot, 0750, true, err, errlen) < 0)
        return -1;
    if (sv->cfg.metrics != NULL) {
        snprintf(path, sizeof(path), "%s/metrics", sv->cfg.run_dir);
        sv->metrics_dir = strdup(path); /* run_dir may change in a reloaded config */
        if (sv->metrics_dir == NULL || make_dir(sv, path, 0750, true, err, errlen) < 0)
            return -1;
    }
    char pidfile[PATH_MAX];
    snprintf(pidfile, sizeof(pidfile), "%s/supervisor.pid", sv->cfg.run_dir);
    snprintf(path, sizeof(path), "%s/validated.yaml", sv->cfg.run_dir);
    sv->copy_path = strdup(path); /* run_dir may change in a reloaded config */
    if (pidfile_write(pidfile, err, errlen) < 0)
        return -1;
    sv->pidfile_path = strdup(pidfile); /* run_dir may change in a reloaded config */
    *code = EXIT_USAGE;                 /* an address in use or not ours is a config matter */
    if (listeners_open(sv, err, errlen) < 0 || metrics_server_open(sv, err, errlen) < 0)
        return -1;
    *code = EXIT_FAIL;
    sv->devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (sv->devnull_fd < 0) {
        snprintf(err, errlen, "/dev/null: %s", strerror(errno));
        return -1;
    }
    if (notify_open(sv, err, errlen) < 0 || control_server_open(sv, err, errlen) < 0)
        return -1;
    /* Orphans of a component (its workers, after a SIGKILL) come to us to be reaped. */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    if (stack_watch_signals(sv) < 0) {
        snprintf(err, errlen, "cannot watch signals");
        return -1;
    }
    return 0;
}

/* The first validated copy, what the components will run: the file is read once more, and
 * that read is what the components check and what the copy is made of. */
static int validate_first(supervisor *sv, char *err, size_t errlen)
{
    hearth_config cfg;
    sv_verdict v[CHILD_COUNT];
    if (verify_adopt_file(sv, &cfg, v, err, errlen) < 0)
        return -1;
    config_free(&sv->cfg);
    sv->cfg = cfg;
    return 0;
}

static void init(supervisor *sv, uv_loop_t *loop)
{
    memset(sv, 0, sizeof(*sv));
    sv->loop = loop;
    sv->notify_fd = -1;
    sv->devnull_fd = -1;
    sv->metrics_fd = -1;
    for (int i = 0; i < CHILD_COUNT; i++)
        child_init(&sv->children[i], sv, i, child_names[i]);
    uv_timer_init(loop, &sv->done_timer);
    sv->done_timer.data = sv;
}

/* After an early failure the handles were never closed by the stop path: close them all. */
static void close_all_handles(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void teardown(supervisor *sv)
{
    if (sv->state != STACK_DONE) {
        notify_close(sv);
        control_server_close(sv);
        metrics_server_close(sv);
        output_close_all();
        if (sv->signals != NULL)
            signals_close(sv->signals);
        uv_walk(sv->loop, close_all_handles, NULL);
    }
    uv_run(sv->loop, UV_RUN_DEFAULT);
    uv_loop_close(sv->loop);
    for (int i = 0; i < CHILD_COUNT; i++)
        child_free(&sv->children[i]);
    listeners_close(sv);
    if (sv->notify_fd >= 0)
        close(sv->notify_fd);
    if (sv->devnull_fd >= 0)
        close(sv->devnull_fd);
    if (sv->copy_path != NULL)
        unlink(sv->copy_path);
    free(sv->copy_path);
    if (sv->pidfile_path != NULL)
        pidfile_remove(sv->pidfile_path);
    free(sv->pidfile_path);
    free(sv->signals);
    free(sv->notify_path);
    free(sv->control_path);
    free(sv->metrics_dir);
    free(sv->config_path);
    if (sv->cfg_loaded)
        config_free(&sv->cfg);
}

static void init_logging(const hearth_config *cfg)
{
    int level = cfg->log_level ? log_level_parse(cfg->log_level) : HLOG_INFO;
    log_init("supervisor", level < 0 ? HLOG_INFO : (log_level)level,
             cfg->log_format == LOG_FORMAT_JSON);
    output_set_json(cfg->log_format == LOG_FORMAT_JSON);
}

int sv_start(const char *config_path)
{
    uv_loop_t loop;
    supervisor sv;
    uv_loop_init(&loop);
    init(&sv, &loop);
    signals_ignore_sigpipe();
    int code = EXIT_USAGE;
    char err[1024];
    sv.config_path = realpath(config_path, NULL);
    if (sv.config_path == NULL) {
        fprintf(stderr, "supervisor: %s: %s\n", config_path, strerror(errno));
    } else if (load_config(sv.config_path, &sv.cfg) == 0) {
        sv.cfg_loaded = true;
        init_logging(&sv.cfg);
        if (prepare(&sv, &code, err, sizeof(err)) < 0) {
            log_error("%s; nothing started", err);
        } else if (validate_first(&sv, err, sizeof(err)) < 0) {
            code = EXIT_USAGE;
            log_error("%s; nothing started", err);
        } else {
            stack_start_all(&sv);
            uv_run(&loop, UV_RUN_DEFAULT);
            code = EXIT_OK;
        }
    }
    teardown(&sv);
    return code;
}

/* What each component says of the file, as the user it would run as when we can become it. */
static int check_components(supervisor *sv, const char *path)
{
    char err[512];
    if (geteuid() == 0 && resolve_user(sv, err, sizeof(err)) < 0) {
        fprintf(stderr, "supervisor: %s\n", err);
        return EXIT_USAGE;
    }
    sv->devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    sv_verdict v[CHILD_COUNT];
    int rc = verify_components(sv, &sv->cfg, path, NULL, v);
    for (int i = 0; i < CHILD_COUNT; i++) {
        if (v[i].checked && v[i].ok)
            printf("supervisor: %s: ok\n", sv->children[i].name);
        else if (v[i].checked)
            fprintf(stderr, "supervisor: %s refuses it: %s\n", sv->children[i].name, v[i].detail);
    }
    return rc < 0 ? EXIT_USAGE : EXIT_OK;
}

/* Like nginx -t, and knowing what start knows: the loader, our checks, each component's; then,
 * online, the cluster's etcd (online.c). */
int sv_check(const char *config_path, bool online)
{
    uv_loop_t loop;
    supervisor sv;
    uv_loop_init(&loop);
    init(&sv, &loop);
    int code = EXIT_USAGE;
    if (load_config(config_path, &sv.cfg) == 0) {
        sv.cfg_loaded = true;
        code = check_components(&sv, config_path);
    }
    if (code == EXIT_OK)
        printf("supervisor: %s: configuration is ok\n", config_path);
    else
        fprintf(stderr, "supervisor: configuration test failed\n");
    if (code == EXIT_OK && online) {
        fflush(stdout);
        code = sv_check_online(&sv.cfg);
    }
    teardown(&sv);
    return code;
}
