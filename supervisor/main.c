/* supervisor: runs the hearth stack (edge, appserver, certd) from one config file, and the
 * client subcommands that talk to a running one. Here: the command line only. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/config.h"
#include "supervisor/sv.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: supervisor [start] [-c FILE]      run the stack in the foreground\n"
                 "       supervisor check [-c FILE]        validate the config (like nginx -t)\n"
                 "       supervisor status [--json]        per component: state, pid, uptime, ...\n"
                 "       supervisor reload [NAME]          reload all, or one component\n"
                 "       supervisor restart NAME           restart one component\n"
                 "       supervisor stop [--fast]          stop the stack (graceful by default)\n"
                 "options: -c, --config FILE (default " CONFIG_DEFAULT_PATH ")\n"
                 "         -s, --socket PATH  control socket (default RUN_DIR/supervisor.sock)\n"
                 "signals: HUP reload, TERM graceful stop, INT/QUIT fast stop, USR1 reopen logs\n");
}

typedef struct {
    const char *config_path;
    const char *socket_path;
    bool as_json;
    bool fast;
} cli_options;

/* Options may go before or after the subcommand (getopt permutes). -1: exit with *code. */
static int parse_options(int argc, char **argv, cli_options *o, int *code)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"socket", required_argument, NULL, 's'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"fast", no_argument, NULL, 'f'},
                                             {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "c:s:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            o->config_path = optarg;
            break;
        case 's':
            o->socket_path = optarg;
            break;
        case 'j':
            o->as_json = true;
            break;
        case 'f':
            o->fast = true;
            break;
        case 'h':
            usage(stdout);
            *code = EXIT_OK;
            return -1;
        case 'V':
            puts("supervisor (hearth) " HEARTH_VERSION);
            *code = EXIT_OK;
            return -1;
        default:
            usage(stderr);
            *code = EXIT_USAGE;
            return -1;
        }
    }
    return 0;
}

/* status, reload [NAME], restart NAME, stop: one request over the control socket. */
static int run_client(const char *cmd, char **rest, int nrest, const cli_options *o)
{
    if (nrest > 1) {
        usage(stderr);
        return EXIT_USAGE;
    }
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
    int code;
    if (parse_options(argc, argv, &o, &code) < 0)
        return code;
    const char *cmd = optind < argc ? argv[optind] : "start";
    int nrest = optind < argc ? argc - optind - 1 : 0;
    char **rest = argv + optind + 1;
    bool start = strcmp(cmd, "start") == 0;
    if (start || strcmp(cmd, "check") == 0) {
        if (nrest > 0) {
            usage(stderr);
            return EXIT_USAGE;
        }
        return start ? sv_start(o.config_path) : sv_check(o.config_path);
    }
    return run_client(cmd, rest, nrest, &o);
}
