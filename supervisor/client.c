/* The client subcommands (`status`, `reload`, `restart`, `stop`): one request over the control
 * socket, the reply printed for a person (or as JSON with --json). */
#include "supervisor/sv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/control.h"

#define REPLY_TIMEOUT_MS 10000

static void format_uptime(json_t *ms, char *out, size_t len)
{
    if (!json_is_integer(ms)) {
        snprintf(out, len, "-");
        return;
    }
    long long s = json_integer_value(ms) / 1000;
    if (s < 60)
        snprintf(out, len, "%llds", s);
    else if (s < 3600)
        snprintf(out, len, "%lldm%llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, len, "%lldh%lldm", s / 3600, s / 60 % 60);
    else
        snprintf(out, len, "%lldd%lldh", s / 86400, s / 3600 % 24);
}

static void print_status(json_t *reply)
{
    printf("supervisor pid %lld, %s, config %s\n",
           (long long)json_integer_value(json_object_get(reply, "pid")),
           json_string_value(json_object_get(reply, "state")),
           json_string_value(json_object_get(reply, "config")));
    printf("%-10s %-9s %-8s %-8s %-8s %s\n", "COMPONENT", "STATE", "PID", "UPTIME", "RESTARTS",
           "LAST EXIT");
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(reply, "components"), i, c)
    {
        char pid[16] = "-", uptime[32];
        json_t *jpid = json_object_get(c, "pid");
        if (json_is_integer(jpid))
            snprintf(pid, sizeof(pid), "%lld", (long long)json_integer_value(jpid));
        format_uptime(json_object_get(c, "uptime_ms"), uptime, sizeof(uptime));
        const char *last = json_string_value(json_object_get(c, "last_exit"));
        printf("%-10s %-9s %-8s %-8s %-8lld %s\n", json_string_value(json_object_get(c, "name")),
               json_string_value(json_object_get(c, "state")), pid, uptime,
               (long long)json_integer_value(json_object_get(c, "restarts")), last ? last : "-");
    }
}

/* A config that no longer loads must not stop `reload` from reaching the supervisor (which then
 * says what is wrong): take a top-level "run_dir:" line as it stands. */
static char *scan_run_dir(const char *config_path)
{
    FILE *f = fopen(config_path, "r");
    if (f == NULL)
        return NULL;
    char line[1024], *found = NULL;
    while (found == NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "run_dir:", 8) != 0)
            continue;
        char *v = line + 8;
        v += strspn(v, " \t\"'");
        size_t n = strcspn(v, " \t\"'#\r\n");
        v[n] = '\0';
        if (n > 0)
            found = strdup(v);
    }
    fclose(f);
    return found;
}

/* Where the socket is: --socket, else run_dir of the config (defaults when it won't load). */
static char *socket_path(const char *config_path, const char *socket_arg, int64_t *stop_ms)
{
    *stop_ms = 30000;
    if (socket_arg != NULL)
        return strdup(socket_arg);
    hearth_config cfg;
    char err[CONFIG_ERR_MAX], path[256];
    char *run_dir = NULL;
    if (config_load(&cfg, config_path, err, sizeof(err)) < 0) {
        config_defaults(&cfg);
        run_dir = scan_run_dir(config_path);
    }
    *stop_ms = cfg.supervisor.stop_timeout_ms;
    int rc = control_socket_path(run_dir ? run_dir : cfg.run_dir, path, sizeof(path));
    free(run_dir);
    config_free(&cfg);
    return rc < 0 ? NULL : strdup(path);
}

static json_t *build_request(int argc, char **argv, char *err, size_t errlen)
{
    const char *cmd = argv[0];
    const char *name = argc > 1 ? argv[1] : NULL;
    if (strcmp(cmd, "restart") == 0 && name == NULL) {
        snprintf(err, errlen, "usage: hearth restart NAME");
        return NULL;
    }
    if (strcmp(cmd, "status") != 0 && strcmp(cmd, "reload") != 0 && strcmp(cmd, "restart") != 0 &&
        strcmp(cmd, "stop") != 0) {
        snprintf(err, errlen, "unknown command '%s'", cmd);
        return NULL;
    }
    json_t *req = json_pack("{s:s}", "cmd", cmd);
    if (name != NULL && strcmp(cmd, "stop") == 0 && strcmp(name, "--fast") == 0)
        json_object_set_new(req, "fast", json_true());
    else if (name != NULL && strcmp(cmd, "status") != 0 && strcmp(cmd, "stop") != 0)
        json_object_set_new(req, "name", json_string(name));
    return req;
}

/* A reload's word on each component: "edge: reloaded (SIGHUP)", "appserver: refused: ...". */
static void print_outcomes(json_t *reply, FILE *out)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(reply, "components"), i, c)
    {
        const char *outcome = json_string_value(json_object_get(c, "outcome"));
        if (outcome != NULL)
            fprintf(out, "%s: %s\n", json_string_value(json_object_get(c, "name")), outcome);
    }
}

static int show_reply(const char *cmd, json_t *reply, bool as_json)
{
    bool ok = json_is_true(json_object_get(reply, "ok"));
    bool reload = strcmp(cmd, "reload") == 0;
    if (as_json) {
        char *text = json_dumps(reply, JSON_INDENT(2));
        if (text != NULL)
            puts(text);
        free(text);
    } else if (!ok) {
        fprintf(stderr, "supervisor: %s: %s\n", cmd,
                json_string_value(json_object_get(reply, "error")));
        if (reload)
            print_outcomes(reply, stderr);
    } else if (strcmp(cmd, "status") == 0) {
        print_status(reply);
    } else if (reload) {
        print_outcomes(reply, stdout);
    }
    return ok ? EXIT_OK : EXIT_FAIL;
}

int sv_client(int argc, char **argv, const char *config_path, const char *socket_arg)
{
    bool as_json = false;
    int n = 0;
    char *args[3] = {NULL, NULL, NULL};
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = true;
        else if (n < 3)
            args[n++] = argv[i];
    }
    char err[512];
    if (n == 0) {
        fprintf(stderr, "supervisor: no command\n");
        return EXIT_USAGE;
    }
    json_t *req = build_request(n, args, err, sizeof(err));
    if (req == NULL) {
        fprintf(stderr, "supervisor: %s\n", err);
        return EXIT_USAGE;
    }
    int64_t stop_ms;
    char *path = socket_path(config_path, socket_arg, &stop_ms);
    if (path == NULL)
        snprintf(err, sizeof(err), "run_dir too long for a socket path");
    int fd = path ? control_connect(path, err, sizeof(err)) : -1;
    free(path);
    json_t *reply = fd >= 0 ? control_call(fd, req, REPLY_TIMEOUT_MS, err, sizeof(err)) : NULL;
    json_decref(req);
    if (reply == NULL) {
        fprintf(stderr, "supervisor: %s: %s\n", args[0], err);
        if (fd >= 0)
            close(fd);
        return EXIT_FAIL;
    }
    int code = show_reply(args[0], reply, as_json);
    /* `stop` returns once the supervisor is gone: each component gets stop_timeout, in turn. */
    if (code == EXIT_OK && strcmp(args[0], "stop") == 0 &&
        control_wait_closed(fd, (int)(stop_ms * CHILD_COUNT + 5000)) < 0) {
        fprintf(stderr, "supervisor: stop: still running after the stop timeouts\n");
        code = EXIT_FAIL;
    }
    json_decref(reply);
    close(fd);
    return code;
}
