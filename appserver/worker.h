/* A worker process: loads the modules, then serves HTTP/1.1 on the inherited listening
 * sockets with one libuv loop, calling handlers synchronously (like Gunicorn's sync worker,
 * but with many keep-alive connections per worker). */
#ifndef APPSERVER_WORKER_H
#define APPSERVER_WORKER_H

#include <stdint.h>
#include <sys/types.h>

#include "appserver/options.h"
#include "appserver/scoreboard.h"

typedef struct {
    const appserver_opts *opts;
    const int *listen_fds;
    size_t listen_count;
    char *const *module_paths; /* for messages */
    const int *module_fds;     /* opened by the master: load exactly what it validated */
    size_t module_count;
    worker_slot *slot;
    int slot_index;
    int notify_fd;         /* write end of the master's notify pipe */
    uint64_t max_requests; /* with jitter applied; 0: never */
    pid_t master_pid;
} worker_params;

/* Runs in the forked child; never returns. Exit 0: stopped; 3: refused to boot. */
_Noreturn void worker_main(const worker_params *wp);

#define WORKER_EXIT_BOOT_FAILED 3

#endif
