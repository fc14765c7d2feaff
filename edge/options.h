/* The edge's command line, parsed into a hearth_config (see options.c). */
#ifndef HEARTH_EDGE_OPTIONS_H
#define HEARTH_EDGE_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/config.h"
#include "shared/exit_codes.h"
#include "shared/log.h"

typedef struct {
    hearth_config cfg;
    char *config_path;       /* --config, or NULL when flags alone describe the site */
    char *acme_webroot;      /* --acme-webroot, or certd.webroot from the file */
    const char *ticket_keys; /* --ticket-keys (in argv), or NULL: from the config (tickets.c) */
    int64_t graceful_timeout_ms;
    bool help;  /* --help or --version was printed: exit 0 */
    bool check; /* --check: validate and exit */
} edge_options;

/* 0 on success; -1 with a message in err (a usage or config error: exit EXIT_USAGE). */
int edge_options_parse(edge_options *o, int argc, char **argv, char *err, size_t errlen);
void edge_options_free(edge_options *o);

#endif
