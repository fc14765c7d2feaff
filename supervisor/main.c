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

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"socket", required_argument, NULL, 's'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"fast", no_argument, NULL, 'f'},
                                             {NULL, 0, NULL, 0}};
    const char *config_path = CONFIG_DEFAULT_PATH, *socket_path = NULL;
    bool as_json = false, fast = false;
    int opt;
    /* '+' would stop at the subcommand; permuting lets options go before or after it. */
    while ((opt = getopt_long(argc, argv, "c:s:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 's':
            socket_path = optarg;
            break;
        case 'j':
            as_json = true;
            break;
        case 'f':
            fast = true;
            break;
        case 'h':
            usage(stdout);
            return SV_EXIT_OK;
        case 'V':
            puts("supervisor (hearth) " HEARTH_VERSION);
            return SV_EXIT_OK;
        default:
            usage(stderr);
            return SV_EXIT_CONFIG;
        }
    }
    const char *cmd = optind < argc ? argv[optind] : "start";
    int rest = optind < argc ? argc - optind - 1 : 0;
    if (strcmp(cmd, "start") == 0 || strcmp(cmd, "check") == 0) {
        if (rest > 0) {
            usage(stderr);
            return SV_EXIT_CONFIG;
        }
        return cmd[1] == 't' ? sv_start(config_path) : sv_check(config_path);
    }
    if (rest > 1) {
        usage(stderr);
        return SV_EXIT_CONFIG;
    }
    char *args[4] = {(char *)cmd};
    int n = 1;
    if (rest == 1)
        args[n++] = argv[optind + 1];
    if (fast)
        args[n++] = "--fast";
    if (as_json)
        args[n++] = "--json";
    return sv_client(n, args, config_path, socket_path);
}
