/* The master process (Gunicorn calls it the arbiter): forks workers, watches their
 * heartbeats, replaces the dead, reloads code on HUP without dropping a request, and stops
 * them all on TERM/INT/QUIT. It never loads application code itself. */
#ifndef APPSERVER_ARBITER_H
#define APPSERVER_ARBITER_H

#include "appserver/listen.h"
#include "appserver/options.h"

/* Runs until stopped; returns the process exit status (0, or 1 when no worker could boot). */
int arbiter_run(appserver_opts *opts, listen_set *listeners);

#endif
