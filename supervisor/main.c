/* hearth (the supervisor): runs the hearth stack (edge, appserver, certd) from one config file, and
 * the client subcommands that talk to a running one. Here: the command line only. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/cli.h"
#include "shared/config.h"
#include "supervisor/sv.h"

typedef struct {
    const char *config_path;
    const char *socket_path;
    bool as_json;
    bool fast;
    bool online;
} cli_options;

static const cli_flag supervisor_flags[] = {
    {"config", 'c', "FILE", .help = "the stack's YAML file (default " CONFIG_DEFAULT_PATH ")"},
    {"socket", 's', "PATH", .opts = CLI_CTX_ARG, .field = offsetof(cli_options, socket_path),
     .help = "control socket (default RUN_DIR/supervisor.sock)"},
    {"json", 0, NULL, .opts = CLI_CTX_BOOL, .field = offsetof(cli_options, as_json),
     .help = "status: as JSON"},
    {"fast", 0, NULL, .opts = CLI_CTX_BOOL, .field = offsetof(cli_options, fast),
     .help = "stop: at once, not gracefully"},
    {"online", 0, NULL, .opts = CLI_CTX_BOOL, .field = offsetof(cli_options, online),
     .help = "check: reach the cluster's etcd as well"},
    {.name = NULL},
};

static const cli_spec supervisor_cli = {
    .prog = "hearth",
    .usage = "usage: hearth [start] [-c FILE]      run the stack in the foreground\n"
             "       hearth check [-c FILE]        validate the config (like nginx -t)\n"
             "       hearth check --online         ... and reach the cluster's etcd\n"
             "       hearth status [--json]        per component: state, pid, uptime, ...\n"
             "       hearth reload [NAME]          reload all, or one component\n"
             "       hearth restart NAME           restart one component\n"
             "       hearth stop [--fast]          stop the stack (graceful by default)\n",
    .notes = "signals: HUP reload, TERM graceful stop, INT/QUIT fast stop, USR1 reopen logs\n",
    .flags = supervisor_flags,
    .config_flag = "config",
    .keep_args = true,
};

static int usage_error(const char *what)
{
    fprintf(stderr, "hearth: %s\n", what);
    return EXIT_USAGE;
}

/* status, reload [NAME], restart NAME, stop: one request over the control socket. */
static int run_client(const char *cmd, char **rest, int nrest, const cli_options *o)
{
    if (nrest > 1)
        return usage_error("too many arguments (see --help)");
    char *args[4] = {(char *)cmd};
    int n = 1;
    if (nrest == 1)
        args[n++] = rest[0];
    if (o->fast)
        args[n++] = "--fast";
    if (o->as_json)
        args[n++] = "--json";
    return sv_client(n, args, o->config_path, o->socket_path);
}

int main(int argc, char **argv)
{
    cli_options o = {.config_path = CONFIG_DEFAULT_PATH};
    cli_parsed parsed;
    char err[CONFIG_ERR_MAX];
    /* Options may go before or after the subcommand (getopt permutes). */
    cli_result r = cli_parse(&supervisor_cli, argc, argv, NULL, &o, &parsed, err, sizeof(err));
    if (r != CLI_RUN)
        return r == CLI_DONE ? EXIT_OK : usage_error(err);
    if (parsed.config_path)
        o.config_path = parsed.config_path;
    int first = parsed.first_arg;
    const char *cmd = first < argc ? argv[first] : "start";
    int nrest = first < argc ? argc - first - 1 : 0;
    char **rest = argv + first + 1;
    bool start = strcmp(cmd, "start") == 0, check = strcmp(cmd, "check") == 0;
    if (o.online && !check)
        return usage_error("--online goes with check only");
    if (start || check) {
        if (nrest > 0)
            return usage_error("too many arguments (see --help)");
        return start ? sv_start(o.config_path) : sv_check(o.config_path, o.online);
    }
    return run_client(cmd, rest, nrest, &o);
}
