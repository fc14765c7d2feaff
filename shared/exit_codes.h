/* Exit codes every hearth program uses (docs/architecture.md). The supervisor reads a child's:
 * EXIT_USAGE means restarting cannot help, so it does not restart it. */
#ifndef HEARTH_EXIT_CODES_H
#define HEARTH_EXIT_CODES_H

enum {
    EXIT_OK = 0,      /* done */
    EXIT_FAIL = 1,    /* a runtime failure: a restart or a retry may succeed */
    EXIT_USAGE = 2,   /* bad flags or a bad config file: the same start fails the same way */
    EXIT_NOTHING = 3, /* certd: every certificate is still good, nothing was done */
};

#endif
